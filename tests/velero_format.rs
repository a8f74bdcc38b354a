//! Velero on-disk format compatibility (DESIGN §4), against a real kube-apiserver.
//!
//! 1. `velero_written_backups_are_listed_and_restored`: backup folders built byte by byte the way
//!    Velero writes them — one as Velero 1.13 does (format 1.1.0, every side file it uploads), one
//!    as Velero 1.1 did (format "1", `null` for unset lists, no preferred-version tree) — are
//!    listed by `tidemark backup get` and restored by `tidemark restore create` into a real
//!    cluster; every object is checked.
//! 2. `tidemark_written_backup_follows_velero_format`: `tidemark backup create` of a real cluster
//!    is checked file by file against Velero's format, and its tarball is read again with Go's
//!    `compress/gzip` and `archive/tar` (`tests/support/velero_tar_reader.go`), the readers
//!    Velero's extractor uses: same entries, same bytes, same gzip members (also for a tarball of
//!    several members).
//!
//! Velero facts relied on (source: github.com/vmware-tanzu/velero; the format page is
//! <https://velero.io/docs/main/output-file-format/>):
//! - `pkg/persistence/object_store_layout.go`: the file names in `backups/<name>/` and
//!   `restores/<name>/`, and the only top-level folders a location may hold (`backups restores
//!   restic kopia metadata plugins`; `IsValid` in `object_store.go` rejects any other).
//! - `pkg/backup/backup.go` (`writeBackupVersion`): `metadata/version` is the first entry and holds
//!   `"1.1.0\n"` (Velero ≤ 1.3: `"1\n"`); entries are regular files of mode 0755 and no directory
//!   entries are written.
//! - `pkg/backup/item_backupper.go` (`getFileForArchive`, `resourceKey`) and
//!   `pkg/archive/filesystem.go`: item paths `resources/<resource>[.<group>]/[<version>-preferredversion/]
//!   {namespaces/<ns>,cluster}/<name>.json`, the item as compact JSON, written under both trees;
//!   with `EnableAPIGroupVersions` other versions go to `resources/<gr>/<version>/...`.
//! - `pkg/archive/extractor.go`: Velero creates each entry's parent folders with the entry's own
//!   mode, so item entries must be executable (0755) for the extracted tree to be traversable.
//! - `pkg/backup/backed_up_items_map.go` (`ResourceMap`): the resource list maps
//!   `<group/version>/<Kind>` to sorted `ns/name` (or `name`) entries.
//! - `pkg/util/results/result.go`: results are `{"warnings": R, "errors": R}` with
//!   `R = {velero?: [..], cluster?: [..], namespaces?: {ns: [..]}}`.
//! - `pkg/util/encode/encode.go` (`ToJSONGzip`): side files are gzip of `json.Encoder` output
//!   (JSON plus a newline; a nil list is `null`).
//! - `pkg/controller/backup_controller.go` (`prepareBackupRequest`, `persistBackup`) and
//!   `pkg/apis/velero/v1/backup_types.go`: what `velero-backup.json` holds (storage-location
//!   label, source-cluster annotations, `hooks: {}`, `metadata: {}`, timeouts, status version 1,
//!   formatVersion `1.1.0`, expiration = TTL after the start).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, FixedOffset};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, Node, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::discovery::{Discovery, Scope};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use support::*;

/// One cluster at a time: the machine is small and shared.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The top-level folders Velero accepts under a location's prefix.
const VELERO_TOP_LEVEL: &[&str] = &[
    "backups", "restores", "restic", "kopia", "metadata", "plugins",
];

// ---------------------------------------------------------------------------------------------
// Byte-level helpers

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn gunzip(data: &[u8], what: &str) -> Vec<u8> {
    assert!(
        data.starts_with(&[0x1f, 0x8b]),
        "{what} is not gzip (magic bytes missing)"
    );
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{what}: bad gzip: {e}"));
    out
}

/// A side file the way Velero's `encode.ToJSONGzip` writes it: `json.Encoder` output (compact
/// JSON and a newline), gzip-compressed.
fn json_gz(v: &Value) -> Vec<u8> {
    let mut s = serde_json::to_vec(v).unwrap();
    s.push(b'\n');
    gzip(&s)
}

/// Writes `s` into a raw header name field, cut to the field's size (Go's "best effort" name).
fn set_raw_name(h: &mut tar::Header, s: &str) {
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}

/// One PAX extended-header record, `"<len> <key>=<value>\n"`, `<len>` counting itself.
fn pax_record(key: &str, value: &str) -> String {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while len.to_string().len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}")
}

/// A tarball the way Velero writes one with Go's `archive/tar`: regular-file entries only (no
/// directory entries), mode 0755, uid/gid 0, ustar headers (the long path split into prefix and
/// name when it fits), and a PAX extended header carrying the path when it does not fit ustar
/// (a name component over 100 bytes); gzip.
fn velero_tarball(entries: &[(String, Vec<u8>)], mtime: u64) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (path, data) in entries {
        let mut h = tar::Header::new_ustar();
        if h.set_path(path).is_err() {
            // Go: a typeflag 'x' entry named `<dir>/PaxHeaders.0/<file>` (cut to 100 bytes)
            // holding `path=`, then the real header with the path cut to 100 bytes.
            let (dir, file) = path.rsplit_once('/').unwrap();
            let record = pax_record("path", path);
            let mut x = tar::Header::new_ustar();
            set_raw_name(&mut x, &format!("{dir}/PaxHeaders.0/{file}"));
            x.set_size(record.len() as u64);
            x.set_mode(0);
            x.set_mtime(0);
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_cksum();
            b.append(&x, record.as_bytes()).unwrap();
            set_raw_name(&mut h, path);
        }
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// One tar entry as read back.
struct TarEntry {
    path: String,
    mode: u32,
    kind: tar::EntryType,
    data: Vec<u8>,
}

fn read_tarball(bytes: &[u8]) -> Vec<TarEntry> {
    let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(bytes));
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_str().unwrap().to_string();
            let mode = e.header().mode().unwrap();
            let kind = e.header().entry_type();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            TarEntry {
                path,
                mode,
                kind,
                data,
            }
        })
        .collect()
}

/// The gzip members of `gz`, each decoded on its own by a single-member decoder.
fn gzip_members(gz: &[u8]) -> usize {
    let mut rest = gz;
    let mut n = 0;
    while !rest.is_empty() {
        let mut d = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut d, &mut std::io::sink()).expect("a whole gzip member");
        rest = d.into_inner();
        n += 1;
    }
    n
}

/// The lines [`read_tarball_with_go`] prints, from what the Rust readers saw.
fn entry_lines(entries: &[TarEntry], tarball: &[u8]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            format!(
                "{}\t{:o}\t{}\t{}\t{}",
                e.path,
                e.mode,
                e.kind.as_byte(),
                e.data.len(),
                hex::encode(Sha256::digest(&e.data))
            )
        })
        .chain(std::iter::once(format!(
            "members {}",
            gzip_members(tarball)
        )))
        .collect()
}

/// A tarball of several gzip members (tidemark starts a member every 2 MiB of tar), written by
/// tidemark's archive writer: Go's readers, as Velero's extractor uses them, read every member
/// and see the same entries as tidemark's reader. Items alternate between JSON that compresses
/// well (the second, libdeflate pass) and random payloads (ISA-L only).
#[test]
fn multi_member_tarball_reads_in_go_as_in_tidemark() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = tidemark::archive::ArchiveWriter::new(Vec::new(), 1_779_156_012).unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..3_000u32 {
        let payload: String = if i % 2 == 0 {
            format!("value-{i} ").repeat(40)
        } else {
            (0..400)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{:02x}", x as u8)
                })
                .collect()
        };
        let key = tidemark::archive::ItemKey {
            group_resource: "configmaps".into(),
            version: "v1".into(),
            namespace: Some(format!("ns-{}", i % 7)),
            name: format!("cm-{i}"),
        };
        let json = serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": key.name, "namespace": key.namespace},
            "data": {"payload": payload}
        }))
        .unwrap();
        w.add_item(&key, &json).unwrap();
    }
    let tarball = w.finish().unwrap();
    let members = gzip_members(&tarball);
    assert!(
        members >= 2,
        "{members} gzip member(s): the test needs several"
    );
    let path = dir.path().join("multi.tar.gz");
    std::fs::write(&path, &tarball).unwrap();
    let entries = read_tarball(&tarball);
    assert_eq!(entries.len(), 1 + 2 * 3_000);
    assert_eq!(read_tarball_with_go(&path), entry_lines(&entries, &tarball));
}

/// What Go's `compress/gzip` and `archive/tar` (the readers Velero's `pkg/archive/extractor.go`
/// uses) see in `tarball`: one line per entry and the gzip member count, from
/// `tests/support/velero_tar_reader.go` run with the Go toolchain the test environment builds
/// with ([`testenv_go`]).
fn read_tarball_with_go(tarball: &Path) -> Vec<String> {
    let go = testenv_go();
    let program = repo().join("tests/support/velero_tar_reader.go");
    let out = std::process::Command::new(&go)
        .arg("run")
        .arg(&program)
        .arg(tarball)
        .env("GOTOOLCHAIN", "local")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", go.display()));
    assert!(
        out.status.success(),
        "Go could not read the tarball: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Seconds of a Go `time.Duration` string made of hours, minutes and seconds (`720h0m0s`).
fn go_duration_secs(s: &str) -> i64 {
    let mut total = 0;
    let mut num = String::new();
    for c in s.chars() {
        match c {
            '0'..='9' => num.push(c),
            'h' | 'm' | 's' => {
                let n: i64 = num.parse().unwrap_or_else(|_| panic!("bad duration {s:?}"));
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                num.clear();
            }
            _ => panic!("bad duration {s:?}"),
        }
    }
    assert!(num.is_empty(), "bad duration {s:?}");
    total
}

fn time(v: &Value, what: &str) -> DateTime<FixedOffset> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{what} {s:?}: {e}"))
}

fn list_dir(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect()
}

/// Asserts Velero's top-level rule: only known folders (and no files) under the prefix.
fn assert_only_velero_top_level(location: &Path) {
    for entry in std::fs::read_dir(location).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        assert!(
            entry.file_type().unwrap().is_dir() && VELERO_TOP_LEVEL.contains(&name.as_str()),
            "{name:?} at the top of the location: Velero's BackupStore.IsValid would reject it"
        );
    }
}

/// Asserts the shape of Velero's `results.Result` pair.
fn assert_results_shape(v: &Value, what: &str) {
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object"));
    let keys: BTreeSet<&str> = o.keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["errors", "warnings"]), "{what}: {v}");
    let strings = |x: &Value, w: &str| {
        let a = x
            .as_array()
            .unwrap_or_else(|| panic!("{what}: {w} not a list: {x}"));
        assert!(a.iter().all(Value::is_string), "{what}: {w}: {x}");
    };
    for (sev, r) in o {
        let r = r
            .as_object()
            .unwrap_or_else(|| panic!("{what}: {sev} is not an object"));
        for (k, x) in r {
            match k.as_str() {
                "velero" | "cluster" => strings(x, k),
                "namespaces" => {
                    for (ns, msgs) in x.as_object().unwrap_or_else(|| panic!("{what}: {x}")) {
                        strings(msgs, ns);
                    }
                }
                other => panic!("{what}: unknown key {sev}.{other}"),
            }
        }
    }
}

fn results_count(r: &Value) -> usize {
    let arr = |x: Option<&Value>| x.and_then(Value::as_array).map_or(0, Vec::len);
    arr(r.get("velero"))
        + arr(r.get("cluster"))
        + r.get("namespaces")
            .and_then(Value::as_object)
            .map_or(0, |m| m.values().map(|v| arr(Some(v))).sum())
}

// ---------------------------------------------------------------------------------------------
// Backups as Velero writes them

/// One backed-up object: its group-resource folder name and the object as Velero stores it.
struct VeleroItem {
    group_resource: &'static str,
    object: Value,
    /// Other API versions of the same object (EnableAPIGroupVersions), `(version, object)`.
    other_versions: Vec<(&'static str, Value)>,
}

impl VeleroItem {
    fn new(group_resource: &'static str, object: Value) -> Self {
        Self {
            group_resource,
            object,
            other_versions: Vec::new(),
        }
    }

    fn namespace(&self) -> Option<&str> {
        self.object.pointer("/metadata/namespace")?.as_str()
    }

    fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap()
    }

    fn version(&self) -> &str {
        let av = self.object["apiVersion"].as_str().unwrap();
        av.rsplit_once('/').map_or(av, |(_, v)| v)
    }

    fn path(&self, version_dir: Option<&str>) -> String {
        let scope = match self.namespace() {
            Some(ns) => format!("namespaces/{ns}"),
            None => "cluster".to_string(),
        };
        match version_dir {
            None => format!(
                "resources/{}/{scope}/{}.json",
                self.group_resource,
                self.name()
            ),
            Some(v) => format!(
                "resources/{}/{v}/{scope}/{}.json",
                self.group_resource,
                self.name()
            ),
        }
    }

    fn resource_key(&self) -> String {
        format!(
            "{}/{}",
            self.object["apiVersion"].as_str().unwrap(),
            self.object["kind"].as_str().unwrap()
        )
    }

    fn list_entry(&self) -> String {
        match self.namespace() {
            Some(ns) => format!("{ns}/{}", self.name()),
            None => self.name().to_string(),
        }
    }
}

/// The tar entries Velero writes for `items`: `metadata/version` first, then per item the plain
/// path and the preferred-version path (and other versions when given), compact JSON.
fn velero_entries(
    version_file: &str,
    items: &[VeleroItem],
    preferred_tree: bool,
) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![(
        "metadata/version".to_string(),
        version_file.as_bytes().to_vec(),
    )];
    for it in items {
        let bytes = serde_json::to_vec(&it.object).unwrap();
        out.push((it.path(None), bytes.clone()));
        if preferred_tree {
            let dir = format!("{}-preferredversion", it.version());
            out.push((it.path(Some(&dir)), bytes));
        }
        for (v, obj) in &it.other_versions {
            out.push((it.path(Some(v)), serde_json::to_vec(obj).unwrap()));
        }
    }
    out
}

/// `<group/version>/<Kind>` → sorted entries, as Velero's `ResourceMap`.
fn velero_resource_list(items: &[VeleroItem]) -> Value {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for it in items {
        m.entry(it.resource_key())
            .or_default()
            .push(it.list_entry());
    }
    for v in m.values_mut() {
        v.sort();
    }
    serde_json::to_value(m).unwrap()
}

fn managed(manager: &str, api_version: &str, time: &str, fields: Value) -> Value {
    json!([{
        "manager": manager,
        "operation": "Update",
        "apiVersion": api_version,
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields
    }])
}

const VELERO_BACKUP: &str = "daily-20260519020012";
const SHOP_CREATED: &str = "2026-04-02T09:14:51Z";
const BACKUP_START: &str = "2026-05-19T02:00:12Z";
const BACKUP_DONE: &str = "2026-05-19T02:00:19Z";
const OLD_CLUSTER_IP: &str = "10.96.14.7";
/// 119 characters: `resources/configmaps/namespaces/shop/<name>.json` fits no ustar header.
const LONG_NAME: &str = "checkout-service.payment-gateway.fraud-detection.canary-rollout.eu-west-1.blue-green.feature-flags.generated-2026-05-19";

fn uid(n: u32) -> String {
    format!("6f1d3c2a-9b4e-4c1f-8a7d-{n:012x}")
}

/// The objects of a namespace backup (`shop`) as Velero 1.13 stores them: full server
/// representation (uid, resourceVersion, creationTimestamp, managedFields, status).
fn shop_items() -> Vec<VeleroItem> {
    let t = SHOP_CREATED;
    let last_applied = r#"{"apiVersion":"v1","data":{"APP_MODE":"production"},"kind":"ConfigMap","metadata":{"annotations":{},"labels":{"app":"shop"},"name":"app-config","namespace":"shop"}}"#;
    let mut hpa = VeleroItem::new(
        "horizontalpodautoscalers.autoscaling",
        json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {
                "name": "web", "namespace": "shop", "uid": uid(11), "resourceVersion": "88410",
                "creationTimestamp": t, "labels": {"app": "shop"},
                "managedFields": managed("kubectl-create", "autoscaling/v2", t,
                    json!({"f:spec": {"f:maxReplicas": {}, "f:minReplicas": {}}}))
            },
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2,
                "maxReplicas": 6,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 70}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 120, "selectPolicy": "Max",
                    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}}
            },
            "status": {"currentReplicas": 2, "desiredReplicas": 2,
                "currentMetrics": null, "conditions": []}
        }),
    );
    // With EnableAPIGroupVersions Velero also stores the other served versions; the v1 form
    // cannot express `behavior`, so restoring it instead of the preferred one would show.
    hpa.other_versions.push((
        "v1",
        json!({
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "shop", "uid": uid(11),
                "resourceVersion": "88410", "creationTimestamp": t, "labels": {"app": "shop"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 70},
            "status": {"currentReplicas": 2, "desiredReplicas": 2}
        }),
    ));
    vec![
        VeleroItem::new(
            "namespaces",
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": "shop", "uid": uid(1), "resourceVersion": "1203", "creationTimestamp": t,
                    "labels": {"kubernetes.io/metadata.name": "shop", "team": "payments"},
                    "managedFields": managed("kubectl-create", "v1", t,
                        json!({"f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/metadata.name": {}, "f:team": {}}}}))
                },
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"}
            }),
        ),
        VeleroItem::new(
            "configmaps",
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "app-config", "namespace": "shop", "uid": uid(2), "resourceVersion": "1290",
                    "creationTimestamp": t, "labels": {"app": "shop"},
                    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
                    "managedFields": managed("kubectl-client-side-apply", "v1", t,
                        json!({"f:data": {".": {}, "f:APP_MODE": {}, "f:settings.yaml": {}}}))
                },
                "data": {"APP_MODE": "production", "settings.yaml": "cache:\n  ttl: 300\n"}
            }),
        ),
        // A name whose path needs a PAX header in Velero's tarball.
        VeleroItem::new(
            "configmaps",
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": LONG_NAME, "namespace": "shop", "uid": uid(15), "resourceVersion": "1295",
                    "creationTimestamp": t, "labels": {"app": "shop"}
                },
                "data": {"enabled": "true"}
            }),
        ),
        VeleroItem::new(
            "configmaps",
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": "kube-root-ca.crt", "namespace": "shop", "uid": uid(3),
                    "resourceVersion": "1204", "creationTimestamp": t,
                    "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."},
                    "managedFields": managed("kube-controller-manager", "v1", t, json!({"f:data": {".": {}, "f:ca.crt": {}}}))
                },
                "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2Vy\n-----END CERTIFICATE-----\n"}
            }),
        ),
        VeleroItem::new(
            "secrets",
            json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": "db-credentials", "namespace": "shop", "uid": uid(4), "resourceVersion": "1301",
                    "creationTimestamp": t, "labels": {"app": "shop"},
                    "managedFields": managed("kubectl-create", "v1", t, json!({"f:data": {".": {}, "f:password": {}, "f:url": {}, "f:username": {}}, "f:type": {}}))
                },
                "type": "Opaque",
                "data": {
                    "username": "c2hvcA==",
                    "password": "czNjcjN0LXBAc3M=",
                    "url": "cG9zdGdyZXM6Ly9kYi5zaG9wLnN2Yzo1NDMyL29yZGVycw=="
                }
            }),
        ),
        VeleroItem::new(
            "services",
            json!({
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": "web", "namespace": "shop", "uid": uid(5), "resourceVersion": "1340",
                    "creationTimestamp": t, "labels": {"app": "shop"},
                    "managedFields": managed("kubectl-create", "v1", t, json!({"f:spec": {"f:ports": {}, "f:selector": {}}}))
                },
                "spec": {
                    "clusterIP": OLD_CLUSTER_IP,
                    "clusterIPs": [OLD_CLUSTER_IP],
                    "internalTrafficPolicy": "Cluster",
                    "ipFamilies": ["IPv4"],
                    "ipFamilyPolicy": "SingleStack",
                    "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
                    "selector": {"app": "shop", "tier": "web"},
                    "sessionAffinity": "None",
                    "type": "ClusterIP"
                },
                "status": {"loadBalancer": {}}
            }),
        ),
        VeleroItem::new(
            "deployments.apps",
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "web", "namespace": "shop", "uid": uid(6), "resourceVersion": "90102",
                    "generation": 3, "creationTimestamp": t, "labels": {"app": "shop"},
                    "annotations": {"deployment.kubernetes.io/revision": "3"},
                    "managedFields": managed("kubectl-client-side-apply", "apps/v1", t, json!({"f:spec": {"f:replicas": {}, "f:template": {}}}))
                },
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "shop", "tier": "web"}},
                    "template": {
                        "metadata": {"creationTimestamp": null, "labels": {"app": "shop", "tier": "web"}},
                        "spec": {
                            "serviceAccountName": "shop-app",
                            "serviceAccount": "shop-app",
                            "containers": [{
                                "name": "web",
                                "image": "registry.example.com/shop/web:2.4.1",
                                "imagePullPolicy": "IfNotPresent",
                                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                "envFrom": [{"configMapRef": {"name": "app-config"}}],
                                "resources": {},
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File"
                            }],
                            "dnsPolicy": "ClusterFirst",
                            "restartPolicy": "Always",
                            "schedulerName": "default-scheduler",
                            "securityContext": {},
                            "terminationGracePeriodSeconds": 30
                        }
                    },
                    "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                    "revisionHistoryLimit": 10,
                    "progressDeadlineSeconds": 600
                },
                "status": {
                    "observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                    "availableReplicas": 2,
                    "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability.",
                        "lastUpdateTime": t, "lastTransitionTime": t}]
                }
            }),
        ),
        hpa,
        VeleroItem::new(
            "serviceaccounts",
            json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": "shop", "uid": uid(7),
                    "resourceVersion": "1205", "creationTimestamp": t}
            }),
        ),
        VeleroItem::new(
            "serviceaccounts",
            json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "shop-app", "namespace": "shop", "uid": uid(8),
                    "resourceVersion": "1310", "creationTimestamp": t, "labels": {"app": "shop"}},
                "automountServiceAccountToken": false
            }),
        ),
        VeleroItem::new(
            "rolebindings.rbac.authorization.k8s.io",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "shop-app-reader", "namespace": "shop", "uid": uid(9),
                    "resourceVersion": "1320", "creationTimestamp": t, "labels": {"app": "shop"}},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "shop-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "shop-app", "namespace": "shop"}]
            }),
        ),
        VeleroItem::new(
            "events",
            json!({
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "web-7d9c6b5f4-x2x9q.17f1c2a0b3c4d5e6", "namespace": "shop",
                    "uid": uid(10), "resourceVersion": "90110", "creationTimestamp": BACKUP_START},
                "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "web-7d9c6b5f4-x2x9q",
                    "apiVersion": "v1", "uid": uid(12)},
                "reason": "Pulled", "message": "Container image already present on machine",
                "source": {"component": "kubelet", "host": "ip-10-0-1-23.ec2.internal"},
                "firstTimestamp": BACKUP_START, "lastTimestamp": BACKUP_START, "count": 1,
                "type": "Normal", "reportingComponent": "kubelet", "reportingInstance": "ip-10-0-1-23.ec2.internal"
            }),
        ),
        // Cluster-scoped (includeClusterResources: true). A real backup would also hold every
        // other cluster-scoped object; these stand for them.
        VeleroItem::new(
            "clusterroles.rbac.authorization.k8s.io",
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "shop-reader", "uid": uid(13), "resourceVersion": "1100",
                    "creationTimestamp": t, "labels": {"app": "shop"}},
                "rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"],
                    "verbs": ["get", "list", "watch"]}]
            }),
        ),
        VeleroItem::new(
            "nodes",
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": "ip-10-0-1-23.ec2.internal", "uid": uid(14),
                    "resourceVersion": "90001", "creationTimestamp": "2026-03-01T00:00:00Z",
                    "labels": {"kubernetes.io/hostname": "ip-10-0-1-23.ec2.internal"}},
                "spec": {"providerID": "aws:///eu-west-1a/i-0abc"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]}
            }),
        ),
    ]
}

fn logrus_lines(subject: &str, msgs: &[&str]) -> Vec<u8> {
    let mut s = String::new();
    for m in msgs {
        s.push_str(&format!(
            "time=\"{BACKUP_START}\" level=info msg=\"{m}\" {subject} logSource=\"pkg/backup/backup.go:431\"\n"
        ));
    }
    s.into_bytes()
}

/// Writes `backups/<VELERO_BACKUP>/` as Velero 1.13 uploads it (format 1.1.0). Returns the items.
fn write_velero_1_13_backup(location: &Path) -> Vec<VeleroItem> {
    let name = VELERO_BACKUP;
    let dir = location.join("backups").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let items = shop_items();
    let n = items.len();
    let record = json!({
        "kind": "Backup",
        "apiVersion": "velero.io/v1",
        "metadata": {
            "name": name,
            "namespace": "velero",
            "uid": "3e0b6f1a-2c4d-4e5f-9a8b-7c6d5e4f3a2b",
            "resourceVersion": "90213",
            "generation": 6,
            "creationTimestamp": BACKUP_START,
            "labels": {"velero.io/schedule-name": "daily", "velero.io/storage-location": "default"},
            "annotations": {
                "velero.io/resource-timeout": "10m0s",
                "velero.io/source-cluster-k8s-gitversion": "v1.29.4",
                "velero.io/source-cluster-k8s-major-version": "1",
                "velero.io/source-cluster-k8s-minor-version": "29"
            },
            "managedFields": managed("velero-server", "velero.io/v1", BACKUP_DONE, json!({
                "f:metadata": {"f:annotations": {".": {}, "f:velero.io/resource-timeout": {}},
                    "f:labels": {".": {}, "f:velero.io/schedule-name": {}, "f:velero.io/storage-location": {}}},
                "f:spec": {".": {}, "f:csiSnapshotTimeout": {}, "f:defaultVolumesToFsBackup": {},
                    "f:hooks": {}, "f:includedNamespaces": {}, "f:itemOperationTimeout": {},
                    "f:metadata": {}, "f:storageLocation": {}, "f:ttl": {}},
                "f:status": {".": {}, "f:completionTimestamp": {}, "f:expiration": {},
                    "f:formatVersion": {}, "f:phase": {}, "f:progress": {".": {}, "f:itemsBackedUp": {},
                    "f:totalItems": {}}, "f:startTimestamp": {}, "f:version": {}}
            }))
        },
        "spec": {
            "metadata": {},
            "includedNamespaces": ["shop"],
            "includeClusterResources": true,
            "ttl": "720h0m0s",
            "hooks": {},
            "storageLocation": "default",
            "volumeSnapshotLocations": ["default"],
            "defaultVolumesToFsBackup": false,
            "csiSnapshotTimeout": "10m0s",
            "itemOperationTimeout": "4h0m0s",
            "snapshotMoveData": false
        },
        "status": {
            "version": 1,
            "formatVersion": "1.1.0",
            "expiration": "2026-06-18T02:00:12Z",
            "phase": "Completed",
            "startTimestamp": BACKUP_START,
            "completionTimestamp": BACKUP_DONE,
            "progress": {"totalItems": n, "itemsBackedUp": n},
            "hookStatus": {}
        }
    });
    let put = |file: &str, data: &[u8]| std::fs::write(dir.join(file), data).unwrap();
    put(
        "velero-backup.json",
        &serde_json::to_vec_pretty(&record).unwrap(),
    );
    let mtime = time(&json!(BACKUP_START), "start").timestamp() as u64;
    put(
        &format!("{name}.tar.gz"),
        &velero_tarball(&velero_entries("1.1.0\n", &items, true), mtime),
    );
    put(
        &format!("{name}-logs.gz"),
        &gzip(&logrus_lines(
            &format!("backup=velero/{name}"),
            &[
                "Setting up backup temp file",
                "Starting backup",
                &format!("Backed up a total of {n} items"),
            ],
        )),
    );
    put(
        &format!("{name}-resource-list.json.gz"),
        &json_gz(&velero_resource_list(&items)),
    );
    put(
        &format!("{name}-results.gz"),
        &json_gz(&json!({"errors": {}, "warnings": {}})),
    );
    // Velero's nil lists encode as `null`, its initialised empty ones as `[]`.
    for (suffix, v) in [
        ("volumesnapshots.json.gz", Value::Null),
        ("podvolumebackups.json.gz", Value::Null),
        ("itemoperations.json.gz", json!([])),
        ("csi-volumesnapshots.json.gz", Value::Null),
        ("csi-volumesnapshotcontents.json.gz", Value::Null),
        ("csi-volumesnapshotclasses.json.gz", Value::Null),
        ("volumeinfo.json.gz", json!([])),
    ] {
        put(&format!("{name}-{suffix}"), &json_gz(&v));
    }
    items
}

const LEGACY_BACKUP: &str = "legacy-v11";

/// Writes `backups/<LEGACY_BACKUP>/` as Velero 1.1 uploaded it: no `formatVersion`, unset
/// lists as `null`, `metadata/version` = "1\n", no preferred-version tree, no results file.
fn write_velero_1_1_backup(location: &Path) -> Vec<VeleroItem> {
    let name = LEGACY_BACKUP;
    let dir = location.join("backups").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let t = "2019-09-01T10:00:00Z";
    let items = vec![
        VeleroItem::new(
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "legacy", "selfLink": "/api/v1/namespaces/legacy", "uid": uid(21),
                    "resourceVersion": "512", "creationTimestamp": t},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        ),
        VeleroItem::new(
            "configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "namespace": "legacy",
                    "selfLink": "/api/v1/namespaces/legacy/configmaps/settings", "uid": uid(22),
                    "resourceVersion": "530", "creationTimestamp": t, "labels": {"app": "legacy"}},
                "data": {"mode": "classic"}}),
        ),
    ];
    let record = json!({
        "kind": "Backup",
        "apiVersion": "velero.io/v1",
        "metadata": {
            "name": name, "namespace": "velero",
            "selfLink": format!("/apis/velero.io/v1/namespaces/velero/backups/{name}"),
            "uid": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "resourceVersion": "7781", "generation": 1,
            "creationTimestamp": t,
            "labels": {"velero.io/storage-location": "default"}
        },
        "spec": {
            "includedNamespaces": ["legacy"],
            "excludedNamespaces": null,
            "includedResources": null,
            "excludedResources": null,
            "labelSelector": null,
            "ttl": "720h0m0s",
            "includeClusterResources": null,
            "hooks": {"resources": null},
            "storageLocation": "default",
            "volumeSnapshotLocations": null
        },
        "status": {
            "version": 1,
            "expiration": "2019-10-01T10:00:00Z",
            "phase": "Completed",
            "validationErrors": null,
            "startTimestamp": t,
            "completionTimestamp": "2019-09-01T10:00:03Z",
            "volumeSnapshotsAttempted": 0,
            "volumeSnapshotsCompleted": 0,
            "warnings": 0,
            "errors": 0
        }
    });
    let put = |file: &str, data: &[u8]| std::fs::write(dir.join(file), data).unwrap();
    put(
        "velero-backup.json",
        &serde_json::to_vec_pretty(&record).unwrap(),
    );
    put(
        &format!("{name}.tar.gz"),
        &velero_tarball(&velero_entries("1\n", &items, false), 1_567_332_000),
    );
    put(
        &format!("{name}-logs.gz"),
        &gzip(&logrus_lines(
            &format!("backup=velero/{name}"),
            &["Starting backup"],
        )),
    );
    put(
        &format!("{name}-resource-list.json.gz"),
        &json_gz(&velero_resource_list(&items)),
    );
    put(
        &format!("{name}-volumesnapshots.json.gz"),
        &json_gz(&Value::Null),
    );
    put(
        &format!("{name}-podvolumebackups.json.gz"),
        &json_gz(&Value::Null),
    );
    items
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn labels_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> BTreeMap<String, String> {
    meta.labels.clone().unwrap_or_default()
}

/// The restored object carries the restore labels, a fresh uid and fresh server metadata.
fn assert_restored_meta(
    what: &str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    backup: &str,
    restore: &str,
    original: &Value,
) {
    let labels = labels_of(meta);
    assert_eq!(
        labels.get("velero.io/backup-name").map(String::as_str),
        Some(backup),
        "{what}: {labels:?}"
    );
    assert_eq!(
        labels.get("velero.io/restore-name").map(String::as_str),
        Some(restore),
        "{what}: {labels:?}"
    );
    if let Some(orig) = original
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
    {
        for (k, v) in orig {
            assert_eq!(
                labels.get(k).map(String::as_str),
                v.as_str(),
                "{what}: label {k}"
            );
        }
    }
    let old_uid = original["metadata"]["uid"].as_str().unwrap();
    assert_ne!(meta.uid.as_deref(), Some(old_uid), "{what}: uid left over");
    assert!(meta.uid.is_some(), "{what}: no uid");
    let created = meta.creation_timestamp.as_ref().expect("creationTimestamp");
    let old_created = time(
        &original["metadata"]["creationTimestamp"],
        "creationTimestamp",
    );
    assert_ne!(
        created.0.as_second(),
        old_created.timestamp(),
        "{what}: creationTimestamp left over"
    );
    for mf in meta.managed_fields.iter().flatten() {
        assert_ne!(
            mf.manager.as_deref(),
            Some("kubectl-client-side-apply"),
            "{what}: managedFields left over"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Reading what Velero writes

/// The hand-built Velero tarball itself, without a cluster: ustar entries, PAX headers for the
/// paths ustar cannot hold, and tidemark's extractor indexing every item once.
#[test]
fn velero_style_tarball_is_indexed_by_tidemark() {
    let items = shop_items();
    let bytes = velero_tarball(&velero_entries("1.1.0\n", &items, true), 1_779_156_012);
    let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(&bytes[..]));
    let raw: Vec<(tar::EntryType, bool)> = ar
        .entries()
        .unwrap()
        .raw(true)
        .map(|e| {
            let e = e.unwrap();
            (e.header().entry_type(), e.header().as_ustar().is_some())
        })
        .collect();
    assert!(raw.iter().all(|(_, ustar)| *ustar), "not all ustar headers");
    let pax = raw
        .iter()
        .filter(|(k, _)| *k == tar::EntryType::XHeader)
        .count();
    assert_eq!(pax, 2, "the long name needs a PAX header in both trees");
    let paths: Vec<String> = read_tarball(&bytes).into_iter().map(|e| e.path).collect();
    assert!(paths.contains(&format!(
        "resources/configmaps/namespaces/shop/{LONG_NAME}.json"
    )));

    let idx = tidemark::archive::extract(
        &bytes[..],
        tidemark::archive::ExtractLimits::default(),
        None,
    )
    .expect("tidemark reads the Velero tarball");
    assert_eq!(idx.version, "1.1.0");
    assert_eq!(idx.len(), items.len());
    for it in &items {
        let found = idx.items[it.group_resource]
            .iter()
            .find(|i| i.name == it.name() && i.namespace.as_deref() == it.namespace())
            .unwrap_or_else(|| panic!("{} {} not indexed", it.group_resource, it.name()));
        let obj: Value = serde_json::from_slice(&idx.read(found).unwrap()).unwrap();
        assert_eq!(obj, it.object, "{} {}", it.group_resource, it.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velero_written_backups_are_listed_and_restored() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let started = Instant::now();
    let loc = tempfile::tempdir().unwrap();
    let url = format!("file://{}", loc.path().display());
    let items = write_velero_1_13_backup(loc.path());
    let legacy_items = write_velero_1_1_backup(loc.path());
    let velero_files = list_dir(&loc.path().join("backups").join(VELERO_BACKUP));
    assert!(!velero_files.contains("tidemark-backup.json"));

    // Listing needs no cluster.
    let out = tidemark(&["backup", "get", "-o", "json", "--location", &url], &[]);
    assert!(out.status.success(), "{}", show(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed: BTreeMap<&str, &Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["metadata"]["name"].as_str().unwrap(), b))
        .collect();
    assert_eq!(
        listed.keys().copied().collect::<Vec<_>>(),
        vec![VELERO_BACKUP, LEGACY_BACKUP],
        "{}",
        show(&out)
    );
    let b = listed[VELERO_BACKUP];
    assert_eq!(b["apiVersion"], "velero.io/v1");
    assert_eq!(b["kind"], "Backup");
    assert_eq!(b["status"]["phase"], "Completed");
    assert_eq!(b["status"]["formatVersion"], "1.1.0");
    assert_eq!(b["status"]["progress"]["itemsBackedUp"], items.len());
    assert_eq!(b["metadata"]["labels"]["velero.io/schedule-name"], "daily");
    // Fields tidemark does not model are kept as Velero wrote them.
    assert_eq!(b["spec"]["csiSnapshotTimeout"], "10m0s");
    assert_eq!(b["spec"]["itemOperationTimeout"], "4h0m0s");
    assert_eq!(b["spec"]["hooks"], json!({}));
    assert_eq!(b["status"]["hookStatus"], json!({}));
    assert_eq!(listed[LEGACY_BACKUP]["status"]["phase"], "Completed");
    let out = tidemark(&["backup", "get", "--location", &url], &[]);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with(VELERO_BACKUP) && l.contains("Completed")),
        "{}",
        show(&out)
    );

    let cluster = Cluster::up(&unique("vf-read")).await;
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let env = [("KUBECONFIG", kc.as_str())];
    let client = cluster.client.clone();

    let out = tidemark(
        &[
            "restore",
            "create",
            "r1",
            "--from-backup",
            VELERO_BACKUP,
            "--location",
            &url,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("Restore \"r1\" Completed"),
        "{}",
        show(&out)
    );
    eprintln!("{}", stdout(&out).trim_end());
    check_shop_restored(&client, &items, "r1").await;

    // The restore's own files, with Velero's names; the backup folder is left as Velero wrote it.
    let rdir = loc.path().join("restores/r1");
    let rfiles = list_dir(&rdir);
    for f in [
        "restore-r1-logs.gz",
        "restore-r1-results.gz",
        "restore-r1-resource-list.json.gz",
    ] {
        assert!(rfiles.contains(f), "{f} missing in {rfiles:?}");
    }
    let results: Value = serde_json::from_slice(&gunzip(
        &std::fs::read(rdir.join("restore-r1-results.gz")).unwrap(),
        "restore results",
    ))
    .unwrap();
    assert_results_shape(&results, "restore results");
    assert_eq!(results_count(&results["errors"]), 0, "{results}");
    let rlist: BTreeMap<String, Vec<String>> = serde_json::from_slice(&gunzip(
        &std::fs::read(rdir.join("restore-r1-resource-list.json.gz")).unwrap(),
        "restore resource list",
    ))
    .unwrap();
    // The restore's log: one line per resource with what happened to its items and how long.
    let rlogs = String::from_utf8(gunzip(
        &std::fs::read(rdir.join("restore-r1-logs.gz")).unwrap(),
        "restore logs",
    ))
    .unwrap();
    for (resource, kind) in [
        ("configmaps", "v1/ConfigMap"),
        ("deployments.apps", "apps/v1/Deployment"),
    ] {
        let n = rlist[kind].len();
        let line = format!("msg=\"Restored resource {resource}: {n} created in ");
        assert_eq!(
            rlogs.lines().filter(|l| l.contains(&line)).count(),
            1,
            "no single {line:?} in the restore log:\n{rlogs}"
        );
    }
    assert!(
        rlist["v1/ConfigMap"].contains(&"shop/app-config".to_string()),
        "{rlist:?}"
    );
    assert!(
        rlist["apps/v1/Deployment"].contains(&"shop/web".to_string()),
        "{rlist:?}"
    );
    assert!(!rlist.contains_key("v1/Event"), "{rlist:?}");
    assert!(!rlist.contains_key("v1/Node"), "{rlist:?}");
    assert_eq!(
        list_dir(&loc.path().join("backups").join(VELERO_BACKUP)),
        velero_files,
        "the restore changed the Velero backup's folder"
    );

    // The Velero 1.1 backup (format "1", nulls in velero-backup.json) restores too.
    let out = tidemark(
        &[
            "restore",
            "create",
            "r2",
            "--from-backup",
            LEGACY_BACKUP,
            "--location",
            &url,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("Restore \"r2\" Completed"),
        "{}",
        show(&out)
    );
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "legacy")
        .get("settings")
        .await
        .expect("legacy/settings restored");
    assert_eq!(cm.data.unwrap()["mode"], "classic");
    assert_restored_meta(
        "legacy/settings",
        &cm.metadata,
        LEGACY_BACKUP,
        "r2",
        &legacy_items[1].object,
    );
    let ns = Api::<Namespace>::all(client.clone())
        .get("legacy")
        .await
        .unwrap();
    assert_restored_meta(
        "namespace legacy",
        &ns.metadata,
        LEGACY_BACKUP,
        "r2",
        &legacy_items[0].object,
    );

    assert_only_velero_top_level(loc.path());
    eprintln!(
        "velero_written_backups_are_listed_and_restored: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn find<'a>(items: &'a [VeleroItem], gr: &str, name: &str) -> &'a Value {
    &items
        .iter()
        .find(|i| i.group_resource == gr && i.name() == name)
        .unwrap_or_else(|| panic!("no {gr} {name} in the backup"))
        .object
}

async fn check_shop_restored(client: &Client, items: &[VeleroItem], restore: &str) {
    let b = VELERO_BACKUP;
    let ns = Api::<Namespace>::all(client.clone())
        .get("shop")
        .await
        .expect("namespace shop");
    assert_restored_meta(
        "namespace shop",
        &ns.metadata,
        b,
        restore,
        find(items, "namespaces", "shop"),
    );

    let cm = Api::<ConfigMap>::namespaced(client.clone(), "shop")
        .get("app-config")
        .await
        .expect("configmap");
    let orig = find(items, "configmaps", "app-config");
    assert_restored_meta("configmap app-config", &cm.metadata, b, restore, orig);
    assert_eq!(
        serde_json::to_value(cm.data.unwrap()).unwrap(),
        orig["data"],
        "configmap data"
    );
    assert_eq!(
        cm.metadata.annotations.unwrap()["kubectl.kubernetes.io/last-applied-configuration"],
        orig["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    );

    let long = Api::<ConfigMap>::namespaced(client.clone(), "shop")
        .get(LONG_NAME)
        .await
        .expect("the long-named configmap (PAX path in the tarball)");
    assert_restored_meta(
        "long-named configmap",
        &long.metadata,
        b,
        restore,
        find(items, "configmaps", LONG_NAME),
    );
    assert_eq!(long.data.unwrap()["enabled"], "true");

    // The root CA ConfigMap is the target cluster's own, never the backup's.
    if let Some(ca) = Api::<ConfigMap>::namespaced(client.clone(), "shop")
        .get_opt("kube-root-ca.crt")
        .await
        .unwrap()
    {
        assert!(
            !labels_of(&ca.metadata).contains_key("velero.io/restore-name"),
            "kube-root-ca.crt was restored from the backup"
        );
    }

    let secret = Api::<Secret>::namespaced(client.clone(), "shop")
        .get("db-credentials")
        .await
        .expect("secret");
    assert_restored_meta(
        "secret",
        &secret.metadata,
        b,
        restore,
        find(items, "secrets", "db-credentials"),
    );
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let data = secret.data.unwrap();
    assert_eq!(data["username"].0, b"shop");
    assert_eq!(data["password"].0, b"s3cr3t-p@ss");
    assert_eq!(data["url"].0, b"postgres://db.shop.svc:5432/orders");

    let svc = Api::<Service>::namespaced(client.clone(), "shop")
        .get("web")
        .await
        .expect("service");
    assert_restored_meta(
        "service",
        &svc.metadata,
        b,
        restore,
        find(items, "services", "web"),
    );
    let spec = svc.spec.unwrap();
    let ip = spec.cluster_ip.clone().expect("a clusterIP");
    assert_ne!(ip, OLD_CLUSTER_IP, "the backup's clusterIP was kept");
    assert!(
        ip.starts_with("10.0.0."),
        "{ip} not from this cluster's range"
    );
    assert_eq!(spec.cluster_ips.unwrap(), vec![ip]);
    let port = &spec.ports.unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.port),
        (Some("http"), 80),
        "{port:?}"
    );
    assert_eq!(
        serde_json::to_value(&port.target_port).unwrap(),
        json!(8080)
    );
    assert_eq!(
        serde_json::to_value(spec.selector.unwrap()).unwrap(),
        json!({"app": "shop", "tier": "web"})
    );

    let dep = Api::<Deployment>::namespaced(client.clone(), "shop")
        .get("web")
        .await
        .expect("deployment");
    let orig = find(items, "deployments.apps", "web");
    assert_restored_meta("deployment", &dep.metadata, b, restore, orig);
    let dspec = serde_json::to_value(dep.spec.unwrap()).unwrap();
    assert_eq!(dspec["replicas"], 2);
    assert_eq!(dspec["selector"], orig["spec"]["selector"]);
    assert_eq!(
        dspec["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/shop/web:2.4.1"
    );
    assert_eq!(
        dspec["template"]["spec"]["containers"][0]["envFrom"],
        orig["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    );
    assert_eq!(dspec["template"]["spec"]["serviceAccountName"], "shop-app");
    assert_ne!(
        dep.metadata.generation,
        Some(3),
        "generation left over from the backup"
    );

    let hpa = Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), "shop")
        .get("web")
        .await
        .expect("hpa");
    assert_restored_meta(
        "hpa",
        &hpa.metadata,
        b,
        restore,
        find(items, "horizontalpodautoscalers.autoscaling", "web"),
    );
    let hspec = serde_json::to_value(&hpa.spec).unwrap();
    assert_eq!(hspec["maxReplicas"], 6);
    assert_eq!(
        hspec["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    assert_eq!(
        hspec["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 120,
        "the HPA was not restored from its preferred (v2) copy: {hspec}"
    );

    let sa = Api::<ServiceAccount>::namespaced(client.clone(), "shop")
        .get("shop-app")
        .await
        .expect("service account");
    assert_restored_meta(
        "service account",
        &sa.metadata,
        b,
        restore,
        find(items, "serviceaccounts", "shop-app"),
    );
    assert_eq!(sa.automount_service_account_token, Some(false));
    Api::<ServiceAccount>::namespaced(client.clone(), "shop")
        .get("default")
        .await
        .expect("default service account");

    let rb = Api::<RoleBinding>::namespaced(client.clone(), "shop")
        .get("shop-app-reader")
        .await
        .expect("rolebinding");
    let orig = find(
        items,
        "rolebindings.rbac.authorization.k8s.io",
        "shop-app-reader",
    );
    assert_restored_meta("rolebinding", &rb.metadata, b, restore, orig);
    assert_eq!(serde_json::to_value(&rb.role_ref).unwrap(), orig["roleRef"]);
    assert_eq!(
        serde_json::to_value(&rb.subjects).unwrap(),
        orig["subjects"]
    );

    let cr = Api::<ClusterRole>::all(client.clone())
        .get("shop-reader")
        .await
        .expect("clusterrole");
    let orig = find(
        items,
        "clusterroles.rbac.authorization.k8s.io",
        "shop-reader",
    );
    assert_restored_meta("clusterrole", &cr.metadata, b, restore, orig);
    assert_eq!(serde_json::to_value(&cr.rules).unwrap(), orig["rules"]);

    // Never restored: events and nodes.
    let ev = find(items, "events", "web-7d9c6b5f4-x2x9q.17f1c2a0b3c4d5e6");
    assert!(
        Api::<Event>::namespaced(client.clone(), "shop")
            .get_opt(ev["metadata"]["name"].as_str().unwrap())
            .await
            .unwrap()
            .is_none(),
        "an Event was restored"
    );
    assert!(
        Api::<Node>::all(client.clone())
            .get_opt("ip-10-0-1-23.ec2.internal")
            .await
            .unwrap()
            .is_none(),
        "a Node was restored"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. What tidemark writes

async fn create_catalog(client: &Client) {
    let pp = PostParams::default();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "catalog"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&pp, &ns)
        .await
        .unwrap();
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "catalog-config", "labels": {"app": "catalog"}},
        "data": {"PAGE_SIZE": "50"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "catalog")
        .create(&pp, &cm)
        .await
        .unwrap();
    let long: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": LONG_NAME},
        "data": {"enabled": "false"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), "catalog")
        .create(&pp, &long)
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "catalog-db", "labels": {"app": "catalog"}},
        "type": "Opaque",
        "stringData": {"password": "hunter2"}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "catalog")
        .create(&pp, &secret)
        .await
        .unwrap();
    let dep: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "catalog-api", "labels": {"app": "catalog"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "catalog"}},
            "template": {
                "metadata": {"labels": {"app": "catalog"}},
                "spec": {"containers": [{"name": "api", "image": "registry.example.com/catalog:1.0"}]}
            }
        }
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), "catalog")
        .create(&pp, &dep)
        .await
        .unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "catalog-api", "labels": {"app": "catalog"}},
        "spec": {"selector": {"app": "catalog"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), "catalog")
        .create(&pp, &svc)
        .await
        .unwrap();
}

/// What discovery says about one resource: `(group, plural)` → per version `(kind, namespaced)`,
/// plus the group's preferred version.
struct Served {
    versions: BTreeMap<String, (String, bool)>,
    preferred: String,
}

async fn served_resources(client: &Client) -> BTreeMap<(String, String), Served> {
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut out: BTreeMap<(String, String), Served> = BTreeMap::new();
    for g in discovery.groups() {
        for v in g.versions() {
            for (ar, caps) in g.versioned_resources(v) {
                let e = out
                    .entry((ar.group.clone(), ar.plural.clone()))
                    .or_insert_with(|| Served {
                        versions: BTreeMap::new(),
                        preferred: g.preferred_version_or_latest().to_string(),
                    });
                e.versions.insert(
                    ar.version.clone(),
                    (ar.kind.clone(), caps.scope == Scope::Namespaced),
                );
            }
        }
    }
    out
}

/// An item's identity in the archive: group-resource, namespace, name.
type ItemId = (String, Option<String>, String);

/// One item path of the grammar, parsed.
#[derive(Debug)]
struct ItemPath {
    group_resource: String,
    preferred_version: Option<String>,
    namespace: Option<String>,
    name: String,
}

fn parse_item_path(path: &str) -> ItemPath {
    fn bad(path: &str) -> ! {
        panic!("{path:?} does not follow Velero's resources path grammar")
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 4 || parts[0] != "resources" || parts[1].is_empty() {
        bad(path);
    }
    let (preferred_version, rest): (Option<String>, &[&str]) = match parts[2] {
        "namespaces" | "cluster" => (None, &parts[2..]),
        v => match v.strip_suffix("-preferredversion") {
            Some(ver) if !ver.is_empty() => (Some(ver.to_string()), &parts[3..]),
            _ => bad(path),
        },
    };
    let (namespace, file): (Option<String>, &str) = match rest {
        ["cluster", file] => (None, file),
        ["namespaces", ns, file] if !ns.is_empty() => (Some(ns.to_string()), file),
        _ => bad(path),
    };
    let name = file
        .strip_suffix(".json")
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| bad(path));
    ItemPath {
        group_resource: parts[1].to_string(),
        preferred_version,
        namespace,
        name: name.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tidemark_written_backup_follows_velero_format() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let started = Instant::now();
    let cluster = Cluster::up(&unique("vf-write")).await;
    let client = cluster.client.clone();
    create_catalog(&client).await;
    let loc = tempfile::tempdir().unwrap();
    let url = format!("file://{}", loc.path().display());
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    // Debug level for the run log only: a line per item as well.
    let out = tidemark(
        &[
            "backup",
            "create",
            "b1",
            "--location",
            &url,
            "--log-level",
            "warn,tidemark::report::log=debug",
        ],
        &[("KUBECONFIG", kc.as_str())],
    );
    assert!(out.status.success(), "{}", show(&out));
    eprintln!("{}", stdout(&out).trim_end());

    // Layout: Velero's file names (every file Velero 1.18 writes for a backup without volume
    // data, tests/velero_real.rs), plus tidemark's own metadata file; Velero's top-level rule.
    assert_only_velero_top_level(loc.path());
    assert_eq!(
        list_dir(&loc.path().join("backups")),
        BTreeSet::from(["b1".to_string()])
    );
    let dir = loc.path().join("backups/b1");
    let files = list_dir(&dir);
    let expected: BTreeSet<String> = [
        "velero-backup.json",
        "b1.tar.gz",
        "b1-logs.gz",
        "b1-resource-list.json.gz",
        "b1-results.gz",
        "b1-volumesnapshots.json.gz",
        "b1-itemoperations.json.gz",
        "b1-podvolumebackups.json.gz",
        "b1-volumeinfo.json.gz",
        "tidemark-backup.json",
        "tidemark-run.json",
    ]
    .map(String::from)
    .into();
    assert_eq!(files, expected);
    // Velero's empty values: nil lists encode as `null`, initialised empty ones as `[]`.
    for (suffix, empty) in [
        ("volumesnapshots.json.gz", Value::Null),
        ("itemoperations.json.gz", json!([])),
        ("podvolumebackups.json.gz", Value::Null),
        ("volumeinfo.json.gz", json!([])),
    ] {
        let f = format!("b1-{suffix}");
        let v: Value = serde_json::from_slice(&gunzip(&std::fs::read(dir.join(&f)).unwrap(), &f))
            .unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(v, empty, "{f}");
    }
    for f in &files {
        assert!(dir.join(f).is_file(), "{f} is not a file");
    }
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();

    // The tarball.
    let tarball = read("b1.tar.gz");
    let entries = read_tarball(&tarball);
    assert_eq!(
        entries[0].path, "metadata/version",
        "Velero writes metadata/version first"
    );
    assert_eq!(entries[0].data, b"1.1.0\n");
    // Go's readers, as Velero's extractor uses them, see the same entries, byte for byte, in the
    // same gzip members, whose CRC-32 and size trailers they accept.
    let go_saw = read_tarball_with_go(&dir.join("b1.tar.gz"));
    assert_eq!(
        go_saw,
        entry_lines(&entries, &tarball),
        "Go's gzip+tar readers disagree"
    );
    let mut seen_paths = BTreeSet::new();
    let served = served_resources(&client).await;
    // (group_resource, namespace, name) -> [plain bytes, preferred-version bytes]
    let mut trees: BTreeMap<ItemId, [Option<Vec<u8>>; 2]> = BTreeMap::new();
    for e in &entries {
        assert!(
            seen_paths.insert(e.path.clone()),
            "{} appears twice",
            e.path
        );
        assert_eq!(
            e.kind,
            tar::EntryType::Regular,
            "{}: not a regular file",
            e.path
        );
        assert_eq!(
            e.mode & 0o777,
            0o755,
            "{}: mode {:o}; Velero's extractor makes parent folders with this mode",
            e.path,
            e.mode
        );
        if e.path == "metadata/version" {
            continue;
        }
        let p = parse_item_path(&e.path);
        let obj: Value = serde_json::from_slice(&e.data)
            .unwrap_or_else(|err| panic!("{}: not JSON: {err}", e.path));
        let api_version = obj["apiVersion"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no apiVersion", e.path));
        let kind = obj["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no kind", e.path));
        assert_eq!(obj["metadata"]["name"], p.name.as_str(), "{}", e.path);
        assert_eq!(
            obj["metadata"]["namespace"].as_str(),
            p.namespace.as_deref(),
            "{}",
            e.path
        );
        // `<resource>.<group>` matches the item's apiVersion; the core group has no suffix.
        let (plural, group) = p
            .group_resource
            .split_once('.')
            .unwrap_or((&p.group_resource, ""));
        let (av_group, av_version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        assert_eq!(group, av_group, "{}: apiVersion {api_version}", e.path);
        let s = served
            .get(&(group.to_string(), plural.to_string()))
            .unwrap_or_else(|| panic!("{}: {plural} in {group:?} is not served", e.path));
        let (served_kind, namespaced) = s
            .versions
            .get(av_version)
            .unwrap_or_else(|| panic!("{}: {api_version} does not serve {plural}", e.path));
        assert_eq!(served_kind, kind, "{}", e.path);
        assert_eq!(
            *namespaced,
            p.namespace.is_some(),
            "{}: wrong scope folder",
            e.path
        );
        if let Some(v) = &p.preferred_version {
            assert_eq!(v, av_version, "{}: item is {api_version}", e.path);
            if s.versions.contains_key(&s.preferred) {
                assert_eq!(
                    v, &s.preferred,
                    "{}: not the group's preferred version",
                    e.path
                );
            }
        }
        let slot = trees
            .entry((
                p.group_resource.clone(),
                p.namespace.clone(),
                p.name.clone(),
            ))
            .or_default();
        slot[usize::from(p.preferred_version.is_some())] = Some(e.data.clone());
    }
    for ((gr, ns, name), [plain, preferred]) in &trees {
        assert!(
            plain.is_some(),
            "{gr} {ns:?}/{name}: missing from the plain tree"
        );
        assert_eq!(
            plain, preferred,
            "{gr} {ns:?}/{name}: the preferred-version copy differs or is missing"
        );
    }
    let item_count = trees.len() as u64;
    for (gr, ns, name) in [
        ("namespaces", None, "catalog"),
        ("configmaps", Some("catalog"), "catalog-config"),
        ("configmaps", Some("catalog"), LONG_NAME),
        ("secrets", Some("catalog"), "catalog-db"),
        ("deployments.apps", Some("catalog"), "catalog-api"),
        ("services", Some("catalog"), "catalog-api"),
    ] {
        assert!(
            trees.contains_key(&(gr.to_string(), ns.map(str::to_string), name.to_string())),
            "{gr} {ns:?}/{name} not in the backup"
        );
    }

    // velero-backup.json.
    let record: Value = serde_json::from_slice(&read("velero-backup.json")).unwrap();
    assert_eq!(record["apiVersion"], "velero.io/v1");
    assert_eq!(record["kind"], "Backup");
    assert_eq!(record["metadata"]["name"], "b1");
    let location_name = record["spec"]["storageLocation"]
        .as_str()
        .expect("spec.storageLocation");
    assert_eq!(
        record["metadata"]["labels"]["velero.io/storage-location"],
        location_name
    );
    assert_eq!(record["spec"]["includedNamespaces"], json!(["*"]));
    // Velero's source-cluster version annotations, equal to the API server's /version.
    let version = client.apiserver_version().await.unwrap();
    let annotations = &record["metadata"]["annotations"];
    assert_eq!(
        annotations["velero.io/source-cluster-k8s-gitversion"],
        version.git_version.as_str()
    );
    assert_eq!(
        annotations["velero.io/source-cluster-k8s-major-version"],
        version.major.as_str()
    );
    assert_eq!(
        annotations["velero.io/source-cluster-k8s-minor-version"],
        version.minor.as_str()
    );
    let st = &record["status"];
    assert_eq!(st["version"], 1);
    assert_eq!(st["formatVersion"], "1.1.0");
    assert_eq!(st["phase"], "Completed");
    let ttl = go_duration_secs(record["spec"]["ttl"].as_str().expect("spec.ttl"));
    assert_eq!(ttl, 720 * 3600);
    let start = time(&st["startTimestamp"], "startTimestamp");
    let done = time(&st["completionTimestamp"], "completionTimestamp");
    let expiration = time(&st["expiration"], "expiration");
    assert!(start <= done);
    assert_eq!(
        expiration - start,
        chrono::Duration::seconds(ttl),
        "expiration is not start + ttl"
    );
    assert_eq!(st["progress"]["totalItems"], item_count, "{st}");
    assert_eq!(st["progress"]["itemsBackedUp"], item_count, "{st}");

    // The resource list: exactly the archive's items, keyed `<apiVersion>/<Kind>`.
    let rlist: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&gunzip(&read("b1-resource-list.json.gz"), "resource list"))
            .expect("resource list is {string: [string]}");
    let mut from_archive: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &entries {
        if e.path == "metadata/version" || parse_item_path(&e.path).preferred_version.is_some() {
            continue;
        }
        let obj: Value = serde_json::from_slice(&e.data).unwrap();
        let key = format!(
            "{}/{}",
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap()
        );
        let entry = match obj["metadata"]["namespace"].as_str() {
            Some(ns) => format!("{ns}/{}", obj["metadata"]["name"].as_str().unwrap()),
            None => obj["metadata"]["name"].as_str().unwrap().to_string(),
        };
        from_archive.entry(key).or_default().insert(entry);
    }
    let mut listed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, v) in &rlist {
        let parts: Vec<&str> = k.split('/').collect();
        assert!(
            (parts.len() == 2 || parts.len() == 3) && parts.iter().all(|p| !p.is_empty()),
            "resource list key {k:?} is not <group/version>/<Kind>"
        );
        let set: BTreeSet<String> = v.iter().cloned().collect();
        assert_eq!(set.len(), v.len(), "{k}: duplicate entries");
        listed.insert(k.clone(), set);
    }
    assert_eq!(listed, from_archive, "resource list and archive disagree");
    assert!(rlist["v1/ConfigMap"].contains(&"catalog/catalog-config".to_string()));
    assert!(rlist["apps/v1/Deployment"].contains(&"catalog/catalog-api".to_string()));
    assert!(rlist["v1/Namespace"].contains(&"catalog".to_string()));
    let unsorted: Vec<&String> = rlist
        .iter()
        .filter(|(_, v)| v.windows(2).any(|w| w[0] > w[1]))
        .map(|(k, _)| k)
        .collect();
    assert!(
        unsorted.is_empty(),
        "Velero sorts each list; unsorted: {unsorted:?}"
    );

    // Results: Velero's shape, counts matching the record.
    let results: Value =
        serde_json::from_slice(&gunzip(&read("b1-results.gz"), "results")).unwrap();
    assert_results_shape(&results, "backup results");
    assert_eq!(
        results_count(&results["warnings"]) as u64,
        st["warnings"].as_u64().unwrap_or(0)
    );
    assert_eq!(
        results_count(&results["errors"]) as u64,
        st["errors"].as_u64().unwrap_or(0)
    );

    // Logs: gzip-compressed logrus text lines.
    let logs = String::from_utf8(gunzip(&read("b1-logs.gz"), "logs")).expect("UTF-8 logs");
    assert!(logs.ends_with('\n'), "{logs}");
    assert!(logs.lines().count() >= 2, "{logs}");
    // One line per resource in the resource list, naming it and its item count.
    let resources: BTreeMap<String, Vec<String>> =
        serde_json::from_slice(&gunzip(&read("b1-resource-list.json.gz"), "resource list"))
            .unwrap();
    assert!(!resources.is_empty());
    // Listed resources also say how long their listing took.
    for (resource, items) in &resources {
        let n = items.len();
        let wanted = format!(
            "Backed up {n} item{} of resource {resource}",
            if n == 1 { "" } else { "s" }
        );
        let lines: Vec<&str> = logs
            .lines()
            .filter(|l| {
                l.contains(&format!("{wanted}\""))
                    || (l.contains(&format!("{wanted}, listed in ")) && l.contains("s\""))
            })
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "no single line {wanted:?} in the log:\n{logs}"
        );
        // At debug level, a line per item.
        for item in items {
            let line = format!("level=debug msg=\"Backed up item {resource} {item}\"");
            assert!(logs.contains(&line), "no {line:?} in the log:\n{logs}");
        }
    }
    assert!(
        logs.contains(", listed in "),
        "no listing durations in the log:\n{logs}"
    );
    for l in logs.lines() {
        assert!(
            l.starts_with("time=\"") && l.contains(" level=") && l.contains(" msg=\""),
            "not a logrus text line: {l:?}"
        );
    }

    // tidemark's metadata: the archive's real digest and size.
    let meta: Value = serde_json::from_slice(&read("tidemark-backup.json")).unwrap();
    assert_eq!(
        meta["archiveSha256"].as_str().unwrap(),
        hex::encode(Sha256::digest(&tarball))
    );
    assert_eq!(meta["archiveBytes"], tarball.len() as u64);
    assert_eq!(meta["items"], item_count);

    eprintln!(
        "tidemark_written_backup_follows_velero_format: {item_count} items, {} tar entries, {:.1}s",
        entries.len(),
        started.elapsed().as_secs_f64()
    );
}
