//! Bucket compatibility against the real Velero (DESIGN §4; issue 19, "record parity").
//!
//! Velero v1.18.3 and velero-plugin-for-aws v1.14.3, built from the Go module proxy by
//! `scripts/testenv build`, run as a local `velero server` ([`support::Velero`]) against a real
//! test cluster and a MinIO bucket; tidemark runs in direct mode against the same bucket and
//! prefix. One test, in steps, so that the cluster, MinIO and Velero start once:
//!
//! 1. Velero backs up namespace `shop` (ConfigMap, Secret, ServiceAccount, Role, RoleBinding,
//!    Service, a Deployment scaled to 0, a CRD and two of its custom resources); tidemark lists
//!    and describes that backup and restores it into `shop-from-velero`: every object equals its
//!    original (user content).
//! 2. tidemark backs up the same namespace into the location's prefix (right after Velero: its
//!    backup sync runs once a minute, and the other steps overlap the wait); Velero's sync picks
//!    it up (`velero backup get`: `Completed`), `velero backup describe --details` and
//!    `velero backup logs` read it, and `velero restore create --namespace-mappings` restores it
//!    into `shop-from-tidemark`: phase `Completed`, no errors, every object equal.
//! 3. Side by side (compared while the sync is due, asserted last): the two backup folders (file
//!    names relative to the folder, the backup name replaced), the field paths of both
//!    `velero-backup.json`, the tarballs' entry paths and item contents, the resource lists, the
//!    results and volume files. tidemark's folder must have every file Velero's has and its
//!    record every field path Velero's has, except the ones listed in [`ALLOWED_MISSING_FIELDS`]
//!    with the reason; Events, which Velero takes and tidemark only on request, are left out of
//!    the comparison. The tables are printed (`--nocapture`).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use object_store::aws::AmazonS3;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};

use support::*;

/// The namespace backed up by both tools.
const SOURCE_NS: &str = "shop";
/// Where tidemark restores Velero's backup.
const FROM_VELERO_NS: &str = "shop-from-velero";
/// Where Velero restores tidemark's backup.
const FROM_TIDEMARK_NS: &str = "shop-from-tidemark";
/// The prefix of Velero's BackupStorageLocation, and of tidemark's location URL.
const PREFIX: &str = "shared";
/// Velero's backup.
const VELERO_BACKUP: &str = "by-velero";
/// tidemark's backup.
const TIDEMARK_BACKUP: &str = "by-tidemark";

/// Field paths of Velero's `velero-backup.json` that tidemark's may lack, with the reason: each
/// would describe something tidemark does not have or do. (Velero's record is the in-cluster
/// Backup object it ran, so its metadata also carries what the API server assigned to that
/// object; a direct-mode tidemark backup has no such object.)
const ALLOWED_MISSING_FIELDS: &[(&str, &str)] = &[
    (
        "metadata.uid",
        "assigned by the API server to Velero's in-cluster Backup object",
    ),
    ("metadata.resourceVersion", "assigned by the API server"),
    ("metadata.generation", "assigned by the API server"),
    (
        "metadata.managedFields",
        "the API server's record of Velero's writes to its object",
    ),
    (
        "metadata.annotations.velero.io/resource-timeout",
        "the Velero server's --resource-timeout handed to backup plugins; tidemark has no plugins",
    ),
    (
        "spec.excludedClusterScopedResources[]",
        "Velero 1.18 excludes VolumeSnapshotContents it did not create; tidemark backs them up",
    ),
    (
        "spec.excludedNamespaceScopedResources[]",
        "Velero 1.18 excludes VolumeSnapshots it did not create; tidemark backs them up",
    ),
    (
        "spec.itemOperationTimeout",
        "the timeout of asynchronous plugin operations; tidemark runs none",
    ),
    (
        "spec.volumeGroupSnapshotLabelKey",
        "the label grouping claims into VolumeGroupSnapshots; tidemark takes none",
    ),
];

/// Resources Velero backs up by default that tidemark takes only with `--include-events`
/// (README: Events are for forensics and never restored).
const EVENT_RESOURCES: &[&str] = &["events", "events.events.k8s.io"];

/// The fixture: a CRD and the objects of namespace `shop`.
fn fixture() -> (Value, Vec<Value>) {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.tidemark.dev"},
        "spec": {
            "group": "example.tidemark.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "size": {"type": "integer"}, "colour": {"type": "string"}}}}}}}]
        }
    });
    let ns = SOURCE_NS;
    let objects = vec![
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"team": "shop"}}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": ns, "labels": {"app": "web"},
                "annotations": {"example.com/owner": "shop-team"}},
            "data": {"currency": "EUR", "motd": "line one\nline two\n"}}),
        json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": ns}, "type": "Opaque",
            "stringData": {"username": "shop", "password": "s3cr3t"}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "worker", "namespace": ns}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "reader", "namespace": ns},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "reader", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": ns}]}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns, "labels": {"app": "web"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"serviceAccountName": "worker", "containers": [{"name": "web",
                        "image": "registry.invalid/shop/web:1.0",
                        "envFrom": [{"configMapRef": {"name": "settings"}}]}]}}}}),
        json!({"apiVersion": "example.tidemark.dev/v1", "kind": "Widget",
            "metadata": {"name": "small", "namespace": ns}, "spec": {"size": 1, "colour": "red"}}),
        json!({"apiVersion": "example.tidemark.dev/v1", "kind": "Widget",
            "metadata": {"name": "large", "namespace": ns},
            "spec": {"size": 100, "colour": "blue"}}),
    ];
    (crd, objects)
}

/// The API resource of a fixture object.
fn resource_of(doc: &Value) -> ApiResource {
    let (api_version, kind) = (
        doc["apiVersion"].as_str().unwrap(),
        doc["kind"].as_str().unwrap(),
    );
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "Namespace" => "namespaces",
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "ServiceAccount" => "serviceaccounts",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "Service" => "services",
        "Deployment" => "deployments",
        "Widget" => "widgets",
        "CustomResourceDefinition" => "customresourcedefinitions",
        other => panic!("no plural for {other}"),
    };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// A `velero.io/v1` resource.
fn velero_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "velero.io".into(),
        version: "v1".into(),
        api_version: "velero.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// The `Accepted` entries of the fixture's namespaced objects (what a restore must recreate).
fn namespaced_objects(objects: &[Value]) -> Vec<Accepted> {
    objects
        .iter()
        .filter(|o| o["kind"] != "Namespace")
        .map(|o| Accepted {
            resource: resource_of(o),
            namespace: Some(SOURCE_NS.into()),
            name: o["metadata"]["name"].as_str().unwrap().into(),
        })
        .collect()
}

/// Checks that every namespaced fixture object was restored into `target` equal to its original
/// (user content; RoleBinding subjects follow the mapping), labelled with the restore's name,
/// and that the target namespace carries the source namespace's labels.
async fn check_restored(client: &Client, objects: &[Value], target: &str, restore: &str) {
    let mut problems = Vec::new();
    for o in namespaced_objects(objects) {
        let src = get_json(client, &o, Some(SOURCE_NS))
            .await
            .expect("fixture object");
        let Some(dst) = get_json(client, &o, Some(target)).await else {
            problems.push(format!("{} {target}/{}: missing", o.resource.kind, o.name));
            continue;
        };
        assert_eq!(
            dst["metadata"]["labels"]["velero.io/restore-name"], restore,
            "{} {target}/{}: restore label",
            o.resource.kind, o.name
        );
        let mut expected = user_content(&src);
        if let Some(subjects) = expected.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                if s["namespace"] == SOURCE_NS {
                    s["namespace"] = target.into();
                }
            }
        }
        let actual = user_content(&dst);
        if expected != actual {
            problems.push(format!(
                "{} {target}/{}: differs\n  original: {expected}\n  restored: {actual}",
                o.resource.kind, o.name
            ));
        }
    }
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let restored_ns = ns.get(target).await.expect("restored namespace");
    assert_eq!(
        restored_ns.metadata.labels.unwrap_or_default().get("team"),
        Some(&"shop".to_string()),
        "the namespace's labels are restored"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A run's stdout.
fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Runs the velero client and asserts success.
fn velero_ok(velero: &Velero, args: &[&str]) -> String {
    let out = velero.cli(args);
    assert!(out.status.success(), "velero {args:?}: {}", show(&out));
    stdout(&out)
}

/// Runs tidemark in direct mode and asserts success.
fn tidemark_ok(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = tidemark(args, env);
    assert!(out.status.success(), "tidemark {args:?}: {}", show(&out));
    stdout(&out)
}

/// A Velero record (`velero.io/v1` `kind` in the server's namespace) as JSON, if it exists.
async fn velero_record(client: &Client, kind: &str, plural: &str, name: &str) -> Option<Value> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "velero", &velero_resource(kind, plural));
    let obj = api.get_opt(name).await.expect("get velero record")?;
    Some(serde_json::to_value(obj).expect("json"))
}

// ---------------------------------------------------------------------------------------------
// The bucket, side by side

/// A client of MinIO's test bucket.
fn bucket(minio: &Minio) -> AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(minio.bucket())
        .with_endpoint(&minio.env["AWS_ENDPOINT_URL"])
        .with_region(&minio.env["AWS_REGION"])
        .with_access_key_id(&minio.env["AWS_ACCESS_KEY_ID"])
        .with_secret_access_key(&minio.env["AWS_SECRET_ACCESS_KEY"])
        .with_allow_http(true)
        .build()
        .expect("S3 client")
}

/// The files of backup `name`'s folder: name relative to the folder with the backup's name
/// replaced by `<backup>`, and content.
async fn backup_folder(s3: &AmazonS3, name: &str) -> BTreeMap<String, Bytes> {
    let dir = format!("{PREFIX}/backups/{name}/");
    let listed: Vec<_> = s3
        .list(Some(&StorePath::from(dir.as_str())))
        .try_collect()
        .await
        .expect("list the backup folder");
    let mut out = BTreeMap::new();
    for meta in listed {
        let rel = meta
            .location
            .as_ref()
            .strip_prefix(&dir)
            .expect("under the folder")
            .replace(name, "<backup>");
        let body = s3
            .get(&meta.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body");
        out.insert(rel, body);
    }
    out
}

/// Decompresses gzip (all members).
fn gunzip(data: &[u8], what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("{what}: bad gzip: {e}"));
    out
}

/// Decompresses and parses a gzipped JSON side file.
fn gunzip_json(data: &[u8], what: &str) -> Value {
    serde_json::from_slice(&gunzip(data, what)).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Every leaf path of a JSON document: `a.b.c`, `[]` for array elements; empty objects and
/// arrays are leaves, and so is `metadata.managedFields`.
fn field_paths(v: &Value) -> BTreeSet<String> {
    fn walk(v: &Value, path: String, out: &mut BTreeSet<String>) {
        // The API server's field-manager records: one leaf (their keys hold dots).
        if path == "metadata.managedFields" {
            out.insert(path);
            return;
        }
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, p, out);
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for v in a {
                    walk(v, format!("{path}[]"), out);
                }
            }
            _ => {
                out.insert(path);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(v, String::new(), &mut out);
    out
}

/// The leaf value at a dotted path (the first array element for `[]`), for the table.
fn value_at(v: &Value, path: &str) -> String {
    let mut cur = v;
    let mut rest = path;
    while !rest.is_empty() {
        // Keys may contain dots (annotation keys): take the longest key that exists.
        let Value::Object(m) = cur else {
            if let (Some(stripped), Value::Array(a)) = (rest.strip_prefix("[]"), cur) {
                cur = a.first().unwrap_or(&Value::Null);
                rest = stripped.strip_prefix('.').unwrap_or(stripped);
                continue;
            }
            break;
        };
        let key = m
            .keys()
            .filter(|k| {
                rest == k.as_str()
                    || rest.starts_with(&format!("{k}."))
                    || rest.starts_with(&format!("{k}[]"))
            })
            .max_by_key(|k| k.len());
        let Some(key) = key else { return "-".into() };
        cur = &m[key];
        rest = &rest[key.len()..];
        rest = rest.strip_prefix('.').unwrap_or(rest);
    }
    let s = cur.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..40])
    } else {
        s
    }
}

/// The tarball's entries: path → bytes.
fn tar_entries(gz: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let raw = gunzip(gz, "tarball");
    let mut out = BTreeMap::new();
    let mut ar = tar::Archive::new(raw.as_slice());
    for e in ar.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        let path = e.path().expect("entry path").to_string_lossy().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("entry data");
        out.insert(path, data);
    }
    out
}

/// The resource of an item path (`resources/<resource>/...`).
fn entry_resource(path: &str) -> &str {
    path.strip_prefix("resources/")
        .and_then(|p| p.split('/').next())
        .unwrap_or("")
}

/// Whether a tarball entry is an Event (see [`EVENT_RESOURCES`]).
fn is_event_entry(path: &str) -> bool {
    EVENT_RESOURCES.contains(&entry_resource(path))
}

/// Whether a resource-list key is an Event's.
fn is_event_kind(gvk: &str) -> bool {
    gvk == "v1/Event" || gvk == "events.k8s.io/v1/Event"
}

/// Prints a three-column presence table (row, in Velero's, in tidemark's).
fn presence_table(title: &str, velero: &BTreeSet<String>, tidemark: &BTreeSet<String>) {
    eprintln!("\n{title}\n{:-<100}", "");
    eprintln!("{:<72} {:>8} {:>9}", "", "Velero", "tidemark");
    for k in velero.union(tidemark) {
        eprintln!(
            "{k:<72} {:>8} {:>9}",
            if velero.contains(k) { "yes" } else { "-" },
            if tidemark.contains(k) { "yes" } else { "-" }
        );
    }
}

/// Compares the two backup folders, printing the tables; returns what tidemark's lacks.
fn side_by_side(
    velero: &BTreeMap<String, Bytes>,
    tidemark: &BTreeMap<String, Bytes>,
) -> Vec<String> {
    let mut missing: Vec<String> = Vec::new();

    // Files.
    let vf: BTreeSet<String> = velero.keys().cloned().collect();
    let tf: BTreeSet<String> = tidemark.keys().cloned().collect();
    presence_table("Files of the backup folder", &vf, &tf);
    for f in vf.difference(&tf) {
        missing.push(format!("file {f}"));
        if f.ends_with(".json.gz") {
            eprintln!(
                "{f} (only Velero's): {}",
                gunzip_json(&velero[f], &format!("Velero's {f}"))
            );
        }
    }
    for f in tf.difference(&vf) {
        assert!(
            f.starts_with("tidemark-"),
            "tidemark writes {f}, which Velero does not and is not tidemark's own file"
        );
    }

    // velero-backup.json: field paths.
    let vrec: Value =
        serde_json::from_slice(&velero["velero-backup.json"]).expect("Velero's record");
    let trec: Value =
        serde_json::from_slice(&tidemark["velero-backup.json"]).expect("tidemark's record");
    let (vp, tp) = (field_paths(&vrec), field_paths(&trec));
    eprintln!("\nvelero-backup.json field paths\n{:-<140}", "");
    eprintln!("{:<64} {:<36} {:<36}", "", "Velero", "tidemark");
    for p in vp.union(&tp) {
        eprintln!(
            "{p:<64} {:<36} {:<36}",
            if vp.contains(p) {
                value_at(&vrec, p)
            } else {
                "-".into()
            },
            if tp.contains(p) {
                value_at(&trec, p)
            } else {
                "-".into()
            },
        );
    }
    let allowed: BTreeMap<&str, &str> = ALLOWED_MISSING_FIELDS.iter().copied().collect();
    for a in allowed.keys() {
        assert!(
            vp.contains(*a) && !tp.contains(*a),
            "ALLOWED_MISSING_FIELDS is stale: {a} is no longer only in Velero's record"
        );
    }
    for p in vp.difference(&tp) {
        match allowed.get(p.as_str()) {
            Some(why) => eprintln!("only in Velero's record, knowingly: {p}: {why}"),
            None => missing.push(format!("velero-backup.json field {p}")),
        }
    }

    // Side files whose content is data: the same JSON (results, volume lists), Events aside.
    for f in vf.intersection(&tf) {
        if !(f.ends_with(".json.gz") || f.ends_with("-results.gz")) {
            continue;
        }
        let (v, t) = (
            gunzip_json(&velero[f], &format!("Velero's {f}")),
            gunzip_json(&tidemark[f], &format!("tidemark's {f}")),
        );
        if f.ends_with("-resource-list.json.gz") {
            let keys = |x: &Value| -> BTreeSet<String> {
                x.as_object()
                    .expect("resource list object")
                    .iter()
                    .flat_map(|(gvk, items)| {
                        items
                            .as_array()
                            .expect("resource list entries")
                            .iter()
                            .map(move |i| format!("{gvk} {}", i.as_str().unwrap_or("?")))
                    })
                    .collect()
            };
            let (vk, tk) = (keys(&v), keys(&t));
            presence_table("Resource list entries", &vk, &tk);
            for k in vk.difference(&tk) {
                if !is_event_kind(k.split(' ').next().unwrap_or("")) {
                    missing.push(format!("resource list entry {k}"));
                }
            }
            for k in tk.difference(&vk) {
                missing.push(format!("resource list entry only in tidemark's: {k}"));
            }
        } else {
            eprintln!("\n{f}\n  Velero:   {v}\n  tidemark: {t}");
            if v != t {
                missing.push(format!("{f}: Velero's {v}, tidemark's {t}"));
            }
        }
    }

    // The tarballs: entry paths, and the same item under the same path.
    let ve = tar_entries(&velero["<backup>.tar.gz"]);
    let te = tar_entries(&tidemark["<backup>.tar.gz"]);
    let (vk, tk): (BTreeSet<String>, BTreeSet<String>) =
        (ve.keys().cloned().collect(), te.keys().cloned().collect());
    presence_table("Tarball entries", &vk, &tk);
    for p in vk.difference(&tk) {
        if !is_event_entry(p) {
            missing.push(format!("tarball entry {p}"));
        }
    }
    for p in tk.difference(&vk) {
        missing.push(format!("tarball entry only in tidemark's: {p}"));
    }
    for p in vk.intersection(&tk) {
        if p == "metadata/version" {
            assert_eq!(ve[p], te[p], "metadata/version");
            continue;
        }
        let (v, t): (Value, Value) = (
            serde_json::from_slice(&ve[p]).expect("Velero's item"),
            serde_json::from_slice(&te[p]).expect("tidemark's item"),
        );
        if user_content(&v) != user_content(&t) {
            missing.push(format!(
                "tarball item {p} differs:\n  Velero:   {}\n  tidemark: {}",
                user_content(&v),
                user_content(&t)
            ));
        }
    }

    for m in &missing {
        eprintln!("MISSING in tidemark's backup: {m}");
    }
    missing
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velero_and_tidemark_read_each_others_backups() {
    let t0 = std::time::Instant::now();
    let cluster = Cluster::up(&unique("vreal")).await;
    let minio = Minio::up(&unique("vreal-minio"));
    let client = cluster.client.clone();
    let (crd, objects) = fixture();
    apply_docs(&client, std::slice::from_ref(&crd)).await;
    wait_established(&client, &["widgets.example.tidemark.dev".to_string()]).await;
    apply_docs(&client, &objects).await;
    let velero = Velero::start(&cluster, &minio, PREFIX).await;
    eprintln!("cluster, MinIO and Velero up in {:?}", t0.elapsed());
    let kubeconfig = cluster.kubeconfig.to_str().unwrap();
    let env = minio.env_with(kubeconfig);
    let location = minio.url(PREFIX);
    // The Deployment's ReplicaSet, which both backups hold.
    wait_for(
        "the Deployment's ReplicaSet",
        Duration::from_secs(60),
        || {
            let client = client.clone();
            async move {
                let rs: Api<k8s_openapi::api::apps::v1::ReplicaSet> =
                    Api::namespaced(client, SOURCE_NS);
                let list = rs.list(&Default::default()).await.ok()?;
                (!list.items.is_empty()).then_some(())
            }
        },
    )
    .await;

    // 1. Velero backs up; tidemark lists, describes and restores that backup.
    let out = velero_ok(
        &velero,
        &[
            "backup",
            "create",
            VELERO_BACKUP,
            "--include-namespaces",
            SOURCE_NS,
            "--wait",
        ],
    );
    eprintln!("{out}");
    let record = velero_record(&client, "Backup", "backups", VELERO_BACKUP)
        .await
        .expect("Velero's Backup");
    assert_eq!(
        record["status"]["phase"], "Completed",
        "Velero's backup: {record:#}"
    );
    // tidemark backs up the same namespace into the same prefix now: Velero's backup sync runs
    // once a minute (`backupSyncReconcilePeriod`), the steps below overlap the wait.
    let out = tidemark_ok(
        &[
            "backup",
            "create",
            TIDEMARK_BACKUP,
            "--include-namespaces",
            SOURCE_NS,
            "--location",
            &location,
        ],
        &env,
    );
    eprintln!("{out}");
    let table = tidemark_ok(&["backup", "get", "--location", &location], &env);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("{VELERO_BACKUP} ")) && l.contains("Completed")),
        "{table}"
    );
    let described = tidemark_ok(
        &[
            "backup",
            "describe",
            VELERO_BACKUP,
            "--details",
            "--location",
            &location,
        ],
        &env,
    );
    eprintln!("{described}");
    assert!(described.contains("Completed"), "{described}");
    assert!(described.contains("shop/settings"), "{described}");
    let out = tidemark_ok(
        &[
            "restore",
            "create",
            "tidemark-from-velero",
            "--from-backup",
            VELERO_BACKUP,
            "--namespace-mappings",
            &format!("{SOURCE_NS}:{FROM_VELERO_NS}"),
            "--location",
            &location,
        ],
        &env,
    );
    eprintln!("{out}");
    assert!(out.contains("Completed"), "{out}");
    check_restored(&client, &objects, FROM_VELERO_NS, "tidemark-from-velero").await;

    // 3. Side by side: the folders, records, tarballs and side files of both backups.
    let s3 = bucket(&minio);
    let missing = side_by_side(
        &backup_folder(&s3, VELERO_BACKUP).await,
        &backup_folder(&s3, TIDEMARK_BACKUP).await,
    );

    // 2. Velero syncs tidemark's backup (made above), describes and restores it.
    let synced = wait_for(
        "Velero's backup sync to create tidemark's backup",
        Duration::from_secs(150),
        || {
            let client = client.clone();
            async move { velero_record(&client, "Backup", "backups", TIDEMARK_BACKUP).await }
        },
    )
    .await;
    assert_eq!(synced["status"]["phase"], "Completed", "{synced:#}");
    let got = velero_ok(&velero, &["backup", "get"]);
    eprintln!("{got}");
    assert!(
        got.lines()
            .any(|l| l.starts_with(&format!("{TIDEMARK_BACKUP} ")) && l.contains("Completed")),
        "{got}"
    );
    let described = velero_ok(
        &velero,
        &["backup", "describe", TIDEMARK_BACKUP, "--details"],
    );
    eprintln!("{described}");
    assert!(described.contains("Phase:  Completed"), "{described}");
    assert!(
        described.contains(&format!("{SOURCE_NS}/settings")),
        "velero describe --details lists the resource list: {described}"
    );
    assert!(
        !described.to_lowercase().contains("error getting"),
        "{described}"
    );
    let logs = velero_ok(&velero, &["backup", "logs", TIDEMARK_BACKUP]);
    assert!(
        !logs.trim().is_empty(),
        "velero backup logs printed nothing"
    );
    let out = velero_ok(
        &velero,
        &[
            "restore",
            "create",
            "velero-from-tidemark",
            "--from-backup",
            TIDEMARK_BACKUP,
            "--namespace-mappings",
            &format!("{SOURCE_NS}:{FROM_TIDEMARK_NS}"),
            "--wait",
        ],
    );
    eprintln!("{out}");
    let restore = velero_record(&client, "Restore", "restores", "velero-from-tidemark")
        .await
        .expect("Velero's Restore");
    let described = velero_ok(
        &velero,
        &["restore", "describe", "velero-from-tidemark", "--details"],
    );
    eprintln!("{described}");
    assert_eq!(restore["status"]["phase"], "Completed", "{restore:#}");
    assert_eq!(
        restore["status"]["errors"].as_u64().unwrap_or(0),
        0,
        "{described}"
    );
    check_restored(&client, &objects, FROM_TIDEMARK_NS, "velero-from-tidemark").await;

    // 3. Side by side (compared above, while Velero's sync was due).
    assert!(
        missing.is_empty(),
        "tidemark's backup lacks what Velero's has:\n{}",
        missing.join("\n")
    );
    eprintln!("done in {:?}", t0.elapsed());
}
