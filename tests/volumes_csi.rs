//! CSI snapshots (issue 7) on real clusters: the snapshot CRDs from the shared corpus installed,
//! a VolumeSnapshotClass with Velero's label for a test driver, a CSI PV bound to a claim used by
//! a pod on a test node. The test plays the external snapshot controller (it binds a
//! VolumeSnapshotContent to each VolumeSnapshot and marks both ready; it marks pre-provisioned
//! contents ready) and records every snapshot object it sees, then checks what tidemark created
//! on backup, on restore into a second cluster, and on deletion of the backup. Also: a volume
//! policy skipping by storage class, and a pod annotation choosing file-system backup (the test
//! plays the node agent for it).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::*;

const DRIVER: &str = "csi.tidemark.test";
const NODE: &str = "test-node-1";
const HANDLE_PREFIX: &str = "snap-handle-";

fn snap_resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "snapshot.storage.k8s.io",
        "v1",
        kind,
    ))
}

/// Every snapshot object event seen: (kind, "apply" | "delete", object).
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// Plays the external snapshot controller and sidecar in one cluster until dropped.
struct FakeSnapshotter {
    seen: Seen,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeSnapshotter {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Watches `kind` (VolumeSnapshot or VolumeSnapshotContent), records every event in `seen`, and
/// plays the external snapshot controller on each applied object.
fn spawn_watch(client: &Client, kind: &'static str, seen: Seen) -> tokio::task::JoinHandle<()> {
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &snap_resource(kind));
    let client = client.clone();
    tokio::spawn(async move {
        let mut stream = watcher(all, watcher::Config::default()).boxed();
        while let Some(ev) = stream.next().await {
            let (what, obj) = match ev {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => ("apply", o),
                Ok(watcher::Event::Delete(o)) => ("delete", o),
                Err(e) => {
                    eprintln!("fake snapshotter: watch: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                _ => continue,
            };
            seen.lock().unwrap().push((
                kind.into(),
                what.into(),
                serde_json::to_value(&obj).unwrap(),
            ));
            if what == "apply" {
                match kind {
                    "VolumeSnapshot" => play_snapshot(&client, &obj).await,
                    _ => play_content(&client, &obj).await,
                }
            }
        }
    })
}

impl FakeSnapshotter {
    fn start(client: &Client) -> FakeSnapshotter {
        let seen: Seen = Arc::default();
        let vs_task = spawn_watch(client, "VolumeSnapshot", seen.clone());
        let vsc_task = spawn_watch(client, "VolumeSnapshotContent", seen.clone());
        FakeSnapshotter {
            seen,
            tasks: vec![vs_task, vsc_task],
        }
    }

    /// Waits (up to 15 s: watch events may arrive after the command returned) for an event.
    async fn wait_event(
        &self,
        what: &str,
        kind: &str,
        pred: impl Fn(&str, &Value) -> bool,
    ) -> Value {
        wait_for(what, Duration::from_secs(15), || {
            let found = self
                .events(kind)
                .into_iter()
                .find(|(e, o)| pred(e, o))
                .map(|(_, o)| o);
            async move { found }
        })
        .await
    }

    /// Waits until the storage snapshot `handle` is deleted the way tidemark does it: a
    /// VolumeSnapshotContent with `deletionPolicy: Delete` for the handle is applied, then that
    /// content is deleted. Returns the applied content.
    async fn wait_handle_deleted(&self, handle: &str) -> Value {
        let deleter = self
            .wait_event(
                "a deleting content for the handle",
                "VolumeSnapshotContent",
                |e, o| {
                    e == "apply"
                        && o["spec"]["source"]["snapshotHandle"] == handle
                        && o["spec"]["deletionPolicy"] == "Delete"
                },
            )
            .await;
        let name = deleter["metadata"]["name"].as_str().unwrap().to_string();
        self.wait_event(
            "the deleting content deleted",
            "VolumeSnapshotContent",
            |e, o| e == "delete" && o["metadata"]["name"] == name.as_str(),
        )
        .await;
        deleter
    }

    fn events(&self, kind: &str) -> Vec<(String, Value)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, _)| k == kind)
            .map(|(_, e, o)| (e.clone(), o.clone()))
            .collect()
    }
}

/// A new dynamic snapshot gets a bound, ready content; a pre-provisioned one gets ready.
async fn play_snapshot(client: &Client, vs: &DynamicObject) {
    let ns = vs.namespace().unwrap_or_default();
    let vs_api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &snap_resource("VolumeSnapshot"));
    let vsc_api: Api<DynamicObject> =
        Api::all_with(client.clone(), &snap_resource("VolumeSnapshotContent"));
    if vs
        .data
        .pointer("/status/readyToUse")
        .and_then(Value::as_bool)
        == Some(true)
        || vs.metadata.deletion_timestamp.is_some()
    {
        return;
    }
    let spec = &vs.data["spec"];
    let content = if let Some(pvc) = spec
        .pointer("/source/persistentVolumeClaimName")
        .and_then(Value::as_str)
    {
        let name = format!("snapcontent-{}", vs.uid().unwrap_or_default());
        let vsc = json!({
            "apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
            "metadata": {"name": name},
            "spec": {
                "deletionPolicy": "Delete",
                "driver": DRIVER,
                "source": {"volumeHandle": format!("vol-{pvc}")},
                "volumeSnapshotClassName": spec["volumeSnapshotClassName"],
                "volumeSnapshotRef": {"kind": "VolumeSnapshot", "namespace": ns, "name": vs.name_any(),
                                       "uid": vs.uid()},
            }
        });
        let obj: DynamicObject = serde_json::from_value(vsc).unwrap();
        if vsc_api.create(&PostParams::default(), &obj).await.is_err() {
            return;
        }
        let _ = vsc_api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "snapshotHandle": format!("{HANDLE_PREFIX}{ns}-{pvc}"),
                    "readyToUse": true,
                    "restoreSize": 1073741824i64,
                    "creationTime": 1700000000000000000i64,
                }})),
            )
            .await;
        name
    } else if let Some(c) = spec
        .pointer("/source/volumeSnapshotContentName")
        .and_then(Value::as_str)
    {
        c.to_string()
    } else {
        return;
    };
    let _ = vs_api
        .patch_status(
            &vs.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "boundVolumeSnapshotContentName": content,
                "readyToUse": true,
                "restoreSize": "1Gi",
            }})),
        )
        .await;
}

/// Pre-provisioned contents (a snapshot handle as source) are marked ready, as the sidecar does.
async fn play_content(client: &Client, vsc: &DynamicObject) {
    let Some(handle) = vsc
        .data
        .pointer("/spec/source/snapshotHandle")
        .and_then(Value::as_str)
    else {
        return;
    };
    if vsc
        .data
        .pointer("/status/readyToUse")
        .and_then(Value::as_bool)
        == Some(true)
        || vsc.metadata.deletion_timestamp.is_some()
    {
        return;
    }
    let api: Api<DynamicObject> =
        Api::all_with(client.clone(), &snap_resource("VolumeSnapshotContent"));
    let _ = api
        .patch_status(
            &vsc.name_any(),
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"snapshotHandle": handle, "readyToUse": true,
                                            "restoreSize": 1073741824i64}}),
            ),
        )
        .await;
}

async fn install_snapshot_crds(client: &Client) {
    let mut names = Vec::new();
    for kind in [
        "volumesnapshotclasses",
        "volumesnapshotcontents",
        "volumesnapshots",
    ] {
        let docs =
            yaml_docs(&corpus_dir().join(format!("crds/snapshot.storage.k8s.io_{kind}.yaml")));
        names.extend(
            docs.iter()
                .map(|d| d["metadata"]["name"].as_str().unwrap().to_string()),
        );
        apply_docs(client, &docs).await;
    }
    wait_established(client, &names).await;
}

fn claim(ns: &str, name: &str, pv: &str, class: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "PersistentVolume",
               "metadata": {"name": pv, "labels": {"tier": "test"}},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Delete", "storageClassName": class,
                        "csi": {"driver": DRIVER, "volumeHandle": format!("vol-{name}")},
                        "claimRef": {"namespace": ns, "name": name}}}),
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": name, "namespace": ns},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                        "volumeName": pv, "resources": {"requests": {"storage": "1Gi"}}}}),
    ]
}

fn pod(ns: &str, name: &str, claims: &[&str], annotations: Value) -> Value {
    let mut volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    volumes.push(json!({"name": "cache", "emptyDir": {}}));
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "annotations": annotations},
           "spec": {"nodeName": NODE,
                    "containers": [{"name": "app", "image": "registry.invalid/app:1"}],
                    "volumes": volumes}})
}

fn gunzip_json(path: &std::path::Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text).unwrap();
    serde_json::from_slice(&text).unwrap()
}

async fn wait_bound(client: &Client, ns: &str, name: &str) {
    let api: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), ns);
    wait_for(
        &format!("claim {ns}/{name} Bound"),
        Duration::from_secs(60),
        || {
            let api = api.clone();
            async move {
                let c = api.get(name).await.ok()?;
                (c.status?.phase.as_deref() == Some("Bound")).then_some(())
            }
        },
    )
    .await;
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn csi_snapshots_backup_restore_and_delete() {
    let a = Cluster::up(&unique("csi-a")).await;
    let b = Cluster::up(&unique("csi-b")).await;
    let dir = tempfile::tempdir().unwrap();
    let loc = format!("file://{}", dir.path().display());
    for c in [&a.client, &b.client] {
        install_crds(c).await;
        install_snapshot_crds(c).await;
        apply_docs(
            c,
            &[
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tidemark"}}),
                json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                       "metadata": {"name": "test-snapclass",
                                    "labels": {"velero.io/csi-volumesnapshot-class": "true"}},
                       "driver": DRIVER, "deletionPolicy": "Delete"}),
                json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
                       "metadata": {"name": "other-driver-class",
                                    "labels": {"velero.io/csi-volumesnapshot-class": "true"}},
                       "driver": "other.csi.test", "deletionPolicy": "Delete"}),
            ],
        )
        .await;
    }
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "annot"}}),
        // The volume policy: claims of storage class `slow` are skipped.
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "volume-policy", "namespace": "tidemark"},
               "data": {"policy.yaml": "version: v1\nvolumePolicies:\n- conditions:\n    storageClass: [slow]\n  action:\n    type: skip\n"}}),
    ];
    docs.extend(claim("app", "data", "pv-app-data", "fast"));
    docs.extend(claim("app", "logs", "pv-app-logs", "slow"));
    docs.extend(claim("annot", "files", "pv-annot-files", "fast"));
    // A claim whose driver has no labelled VolumeSnapshotClass: its snapshot fails.
    docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "noclass"}}));
    let mut orphan = claim("noclass", "data", "pv-noclass-data", "fast");
    orphan[0]["spec"]["csi"]["driver"] = json!("unknown.csi.test");
    docs.extend(orphan);
    docs.push(pod("app", "db-0", &["data", "logs"], json!({})));
    docs.push(pod(
        "annot",
        "web-0",
        &["files"],
        json!({"backup.velero.io/backup-volumes": "files"}),
    ));
    apply_docs(&a.client, &docs).await;
    for (ns, c) in [
        ("app", "data"),
        ("app", "logs"),
        ("annot", "files"),
        ("noclass", "data"),
    ] {
        wait_bound(&a.client, ns, c).await;
    }

    let fake_a = FakeSnapshotter::start(&a.client);
    let ka = a.kubeconfig.to_str().unwrap();
    let kb = b.kubeconfig.to_str().unwrap();
    let env_a = [("KUBECONFIG", ka)];
    let env_b = [("KUBECONFIG", kb)];

    // --- Backup of `app`: `data` snapshotted, `logs` skipped by the policy, emptyDir skipped.
    let out = tidemark(
        &[
            "backup",
            "create",
            "snap1",
            "--include-namespaces",
            "app",
            "--location",
            &loc,
            "--resource-policies-configmap",
            "volume-policy",
            "--csi-snapshot-timeout",
            "1m",
        ],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("Completed"), "{}", show(&out));

    // The VolumeSnapshot tidemark created: in the claim's namespace, the labelled class of the
    // PV's driver, the claim as source, the backup's name as label; deleted again afterwards.
    let vs = fake_a
        .wait_event("a VolumeSnapshot in app", "VolumeSnapshot", |e, o| {
            e == "apply" && o["metadata"]["namespace"] == "app"
        })
        .await;
    let vs_name = vs["metadata"]["name"].as_str().unwrap().to_string();
    assert_eq!(vs["spec"]["source"]["persistentVolumeClaimName"], "data");
    assert_eq!(vs["spec"]["volumeSnapshotClassName"], "test-snapclass");
    assert_eq!(vs["metadata"]["labels"]["velero.io/backup-name"], "snap1");
    fake_a
        .wait_event(
            "the VolumeSnapshot deleted after the backup",
            "VolumeSnapshot",
            |e, o| e == "delete" && o["metadata"]["name"] == vs_name.as_str(),
        )
        .await;
    let vs_events = fake_a.events("VolumeSnapshot");
    assert!(
        vs_events
            .iter()
            .all(|(_, o)| o["spec"]["source"]["persistentVolumeClaimName"] == "data"),
        "the claim of class slow must not be snapshotted: {vs_events:#?}"
    );
    // Its content: deletionPolicy set to Retain (and labelled) before it was released.
    let content_name = format!("snapcontent-{}", vs["metadata"]["uid"].as_str().unwrap());
    fake_a
        .wait_event(
            "the content set to Retain",
            "VolumeSnapshotContent",
            |_, o| {
                o["metadata"]["name"] == content_name.as_str()
                    && o["spec"]["deletionPolicy"] == "Retain"
                    && o["metadata"]["labels"]["velero.io/backup-name"] == "snap1"
            },
        )
        .await;
    let vsc_api: Api<DynamicObject> =
        Api::all_with(a.client.clone(), &snap_resource("VolumeSnapshotContent"));
    assert!(
        vsc_api.get_opt(&content_name).await.unwrap().is_none(),
        "content released"
    );

    // The records, with Velero's file names.
    let folder = dir.path().join("backups/snap1");
    let handle = format!("{HANDLE_PREFIX}app-data");
    let info = gunzip_json(&folder.join("snap1-volumeinfo.json.gz"));
    let infos = info.as_array().unwrap();
    let data = infos
        .iter()
        .find(|i| i["pvcName"] == "data")
        .unwrap_or_else(|| panic!("{info:#}"));
    assert_eq!(data["backupMethod"], "CSISnapshot");
    assert_eq!(data["pvcNamespace"], "app");
    assert_eq!(data["pvName"], "pv-app-data");
    assert_eq!(data["result"], "succeeded");
    assert_eq!(data["csiSnapshotInfo"]["snapshotHandle"], handle.as_str());
    assert_eq!(data["csiSnapshotInfo"]["size"], 1073741824i64);
    assert_eq!(data["csiSnapshotInfo"]["driver"], DRIVER);
    assert_eq!(data["csiSnapshotInfo"]["vscName"], content_name.as_str());
    let logs = infos.iter().find(|i| i["pvcName"] == "logs").unwrap();
    assert_eq!(logs["skipped"], true);
    assert!(
        logs["skippedReason"]
            .as_str()
            .unwrap()
            .contains("volume policy"),
        "{logs}"
    );
    let vss = gunzip_json(&folder.join("snap1-csi-volumesnapshots.json.gz"));
    assert_eq!(vss[0]["metadata"]["name"], vs_name.as_str());
    assert_eq!(vss[0]["status"]["readyToUse"], true);
    let vscs = gunzip_json(&folder.join("snap1-csi-volumesnapshotcontents.json.gz"));
    assert_eq!(vscs[0]["status"]["snapshotHandle"], handle.as_str());
    assert_eq!(vscs[0]["spec"]["deletionPolicy"], "Retain");
    let classes = gunzip_json(&folder.join("snap1-csi-volumesnapshotclasses.json.gz"));
    assert_eq!(classes[0]["metadata"]["name"], "test-snapclass");
    let record = std::fs::read(folder.join("velero-backup.json")).unwrap();
    let record: Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["status"]["csiVolumeSnapshotsAttempted"], 1);
    assert_eq!(record["status"]["csiVolumeSnapshotsCompleted"], 1);
    assert_eq!(record["spec"]["csiSnapshotTimeout"], "1m0s");
    assert_eq!(record["spec"]["resourcePolicy"]["name"], "volume-policy");

    // describe --details lists each volume.
    let out = tidemark(
        &[
            "backup",
            "describe",
            "snap1",
            "--details",
            "--location",
            &loc,
        ],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.contains("app/db-0") && l.contains(" data "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("snapshot") && row.contains("1.0 GiB") && row.contains("succeeded"),
        "{row}"
    );
    let row = text
        .lines()
        .find(|l| l.contains("app/db-0") && l.contains(" logs "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("skip"), "{row}");

    // --- Restore into cluster B, into a mapped namespace.
    let fake_b = FakeSnapshotter::start(&b.client);
    let out = tidemark(
        &[
            "restore",
            "create",
            "r1",
            "--from-backup",
            "snap1",
            "--location",
            &loc,
            "--namespace-mappings",
            "app:app-copy",
        ],
        &env_b,
    );
    assert!(out.status.success(), "{}", show(&out));
    let pvcs: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(b.client.clone(), "app-copy");
    let restored = serde_json::to_value(pvcs.get("data").await.unwrap()).unwrap();
    let source = &restored["spec"]["dataSource"];
    assert_eq!(source["apiGroup"], "snapshot.storage.k8s.io");
    assert_eq!(source["kind"], "VolumeSnapshot");
    let new_vs = source["name"].as_str().unwrap().to_string();
    assert!(restored["spec"].get("volumeName").is_none(), "{restored:#}");
    let vs_b: Api<DynamicObject> = Api::namespaced_with(
        b.client.clone(),
        "app-copy",
        &snap_resource("VolumeSnapshot"),
    );
    let vs = vs_b.get(&new_vs).await.unwrap();
    let new_vsc = vs.data["spec"]["source"]["volumeSnapshotContentName"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(vs.data["spec"]["volumeSnapshotClassName"], "test-snapclass");
    assert_eq!(vs.labels()["velero.io/restore-name"], "r1");
    let vsc_b: Api<DynamicObject> =
        Api::all_with(b.client.clone(), &snap_resource("VolumeSnapshotContent"));
    let vsc = vsc_b.get(&new_vsc).await.unwrap();
    assert_eq!(
        vsc.data["spec"]["source"]["snapshotHandle"],
        handle.as_str()
    );
    assert_eq!(vsc.data["spec"]["driver"], DRIVER);
    assert_eq!(vsc.data["spec"]["deletionPolicy"], "Retain");
    assert_eq!(
        vsc.data["spec"]["volumeSnapshotRef"]["namespace"],
        "app-copy"
    );
    assert_eq!(
        vsc.data["spec"]["volumeSnapshotRef"]["name"],
        new_vs.as_str()
    );
    // The snapshotted claim's PV is not restored (the claim is provisioned from the snapshot);
    // the skipped claim's PV is.
    let pvs_b: Api<k8s_openapi::api::core::v1::PersistentVolume> = Api::all(b.client.clone());
    assert!(pvs_b.get_opt("pv-app-data").await.unwrap().is_none());
    assert!(pvs_b.get_opt("pv-app-logs").await.unwrap().is_some());
    let logs_b = serde_json::to_value(pvcs.get("logs").await.unwrap()).unwrap();
    assert!(logs_b["spec"].get("dataSource").is_none(), "{logs_b:#}");
    let out = tidemark(
        &["restore", "describe", "r1", "--details", "--location", &loc],
        &env_b,
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.contains("app-copy/-") && l.contains(" data "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        row.contains("snapshot") && row.contains("succeeded") && row.contains(&new_vs),
        "{row}"
    );
    drop(fake_b);

    // --- Annotation case: the opted-in claim goes to file-system backup, not a snapshot (the
    // test plays the node agent and completes the PodVolumeBackup).
    let pvb_api: Api<DynamicObject> = Api::namespaced_with(
        a.client.clone(),
        "tidemark",
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "tidemark.dev",
            "v1alpha1",
            "PodVolumeBackup",
        )),
    );
    let agent = tokio::spawn(async move {
        loop {
            if let Ok(list) = pvb_api.list(&Default::default()).await {
                for p in list.items {
                    if p.data.pointer("/status/phase").and_then(Value::as_str) != Some("Completed")
                    {
                        let _ = pvb_api
                            .patch_status(
                                &p.name_any(),
                                &PatchParams::default(),
                                &Patch::Merge(json!({"status": {
                                    "phase": "Completed",
                                    "snapshotID": "ab".repeat(32),
                                    "startTimestamp": "2026-01-01T00:00:00Z",
                                    "completionTimestamp": "2026-01-01T00:00:02Z",
                                    "progress": {"totalBytes": 2048, "bytesDone": 2048},
                                }})),
                            )
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let out = tidemark(
        &[
            "backup",
            "create",
            "annot1",
            "--include-namespaces",
            "annot",
            "--location",
            &loc,
        ],
        &[("KUBECONFIG", ka), ("TIDEMARK_POD_VOLUME_TIMEOUT", "1m")],
    );
    agent.abort();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        !fake_a
            .events("VolumeSnapshot")
            .iter()
            .any(|(_, o)| o["metadata"]["namespace"] == "annot"),
        "the opted-in claim must not be snapshotted"
    );
    let info = gunzip_json(&dir.path().join("backups/annot1/annot1-volumeinfo.json.gz"));
    let files = info
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["pvcName"] == "files")
        .unwrap_or_else(|| panic!("{info:#}"));
    assert_eq!(files["backupMethod"], "PodVolumeBackup");
    assert_eq!(files["pvbInfo"]["podName"], "web-0");
    let out = tidemark(
        &[
            "backup",
            "describe",
            "annot1",
            "--details",
            "--location",
            &loc,
        ],
        &env_a,
    );
    let text = stdout(&out);
    let row = text
        .lines()
        .find(|l| l.contains("annot/web-0") && l.contains(" files "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(row.contains("fs-backup"), "{row}");

    // --- A volume that cannot be snapshotted is a backup error (PartiallyFailed, exit 2), the
    // rest of the backup is kept.
    let out = tidemark(
        &[
            "backup",
            "create",
            "fail1",
            "--include-namespaces",
            "noclass",
            "--location",
            &loc,
        ],
        &env_a,
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("PartiallyFailed"), "{text}");
    assert!(
        text.contains("no VolumeSnapshotClass for driver \"unknown.csi.test\""),
        "{text}"
    );
    let info = gunzip_json(&dir.path().join("backups/fail1/fail1-volumeinfo.json.gz"));
    assert_eq!(info[0]["result"], "failed", "{info:#}");
    assert!(dir.path().join("backups/fail1/fail1.tar.gz").exists());

    // --- Deleting the backup deletes the storage snapshot: a content with deletionPolicy
    // Delete for the recorded handle is created, then deleted.
    let out = tidemark(
        &["backup", "delete", "snap1", "--confirm", "--location", &loc],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(!folder.exists(), "backup folder removed");
    let deleter = fake_a.wait_handle_deleted(&handle).await;
    assert_eq!(deleter["spec"]["driver"], DRIVER);
    assert_eq!(
        deleter["metadata"]["labels"]["velero.io/backup-name"],
        "snap1"
    );
    drop(fake_a);
}

/// The controller: a Backup with `spec.template.volumes` takes the snapshot, and when its TTL has
/// passed, expiry deletes the storage snapshot (a `Delete` content for the handle, then deleted)
/// with the backup.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_backup_snapshots_and_expiry_deletes_them() {
    let cluster = Cluster::up(&unique("csi-ctl")).await;
    let minio = Minio::up(&unique("csi-ctl-minio"));
    let c = cluster.client.clone();
    install_crds(&c).await;
    install_snapshot_crds(&c).await;
    let creds = minio.credentials_file();
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tidemark"}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": "tidemark"},
               "stringData": {"cloud": creds}}),
        json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location", "metadata": {"name": "default", "namespace": "tidemark"},
               "spec": {"provider": "s3", "bucket": minio.bucket(), "prefix": "csi", "default": true,
                        "accessMode": "ReadWrite",
                        "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"], "s3ForcePathStyle": "true"},
                        "credential": {"name": "s3-credentials", "key": "cloud"},
                        "syncPeriod": "3s", "validationPeriod": "3s"}}),
        json!({"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotClass",
               "metadata": {"name": "test-snapclass",
                            "labels": {"velero.io/csi-volumesnapshot-class": "true"}},
               "driver": DRIVER, "deletionPolicy": "Delete"}),
    ];
    docs.extend(claim("app", "data", "pv-app-data", "fast"));
    docs.push(pod("app", "db-0", &["data"], json!({})));
    apply_docs(&c, &docs).await;
    wait_bound(&c, "app", "data").await;
    let fake = FakeSnapshotter::start(&c);
    let server = Server::start(&cluster.kubeconfig, "tidemark", &[]);
    let backups: Api<tidemark::api::tidemark::Backup> = Api::namespaced(c.clone(), "tidemark");
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup",
                 "metadata": {"name": "short", "namespace": "tidemark"},
                 "spec": {"template": {"includedNamespaces": ["app"], "ttl": "20s",
                                       "volumes": {"csiSnapshotTimeout": "1m"}}}}),
        ],
    )
    .await;
    wait_for(
        "backup short Completed",
        Duration::from_secs(90),
        || async {
            let b = serde_json::to_value(backups.get("short").await.ok()?).ok()?;
            (b["status"]["phase"] == "Completed").then_some(())
        },
    )
    .await;
    let vs = fake
        .wait_event(
            "the controller's VolumeSnapshot",
            "VolumeSnapshot",
            |e, o| e == "apply" && o["metadata"]["labels"]["velero.io/backup-name"] == "short",
        )
        .await;
    assert_eq!(vs["spec"]["source"]["persistentVolumeClaimName"], "data");
    let handle = format!("{HANDLE_PREFIX}app-data");

    // TTL: the record goes, and the storage snapshot is deleted through a `Delete` content.
    wait_for("backup short expired", Duration::from_secs(120), || async {
        backups.get_opt("short").await.ok()?.is_none().then_some(())
    })
    .await;
    fake.wait_handle_deleted(&handle).await;
    drop(server);
}
