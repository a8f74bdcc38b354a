//! CSI snapshots and file-system backup of CSI volumes (issue 7), on a real node with real CSI
//! (issue 14): `scripts/testenv node up` (kubelet, containerd, runc) and `scripts/testenv csi
//! up` (external-provisioner, snapshot-controller and csi-snapshotter built at their upstream
//! versions, with the project's hostpath test driver — the one stand-in, see
//! `support::Csi`). Apps write to claims the provisioner made and the kubelet mounted; tidemark
//! snapshots them through the real snapshot controller, keeps the storage snapshots when it
//! removes the snapshot objects, restores claims from them (in place and into a mapped
//! namespace) and deletes them with the backup or on expiry. A claim opted in by Velero's
//! annotation goes through the node agent instead, which reads the CSI mount under the real
//! kubelet root. `tidemark server` and `tidemark node-agent` run under the shipped
//! ServiceAccounts' tokens.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use support::*;

fn snap_resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "snapshot.storage.k8s.io",
        "v1",
        kind,
    ))
}

/// The snapshot objects of `kind` now in the cluster (all namespaces).
async fn snapshot_objects(client: &Client, kind: &str) -> Vec<DynamicObject> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &snap_resource(kind));
    api.list(&ListParams::default()).await.unwrap().items
}

fn claim(ns: &str, name: &str, class: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                    "resources": {"requests": {"storage": "100Mi"}}}})
}

/// A busybox app writing 8 MiB of random bytes and a text file into each claim it mounts
/// (unless the file is already there: a restored app finds its data).
fn app(ns: &str, name: &str, image: &str, claims: &[&str], annotations: Value) -> Value {
    let volumes: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
        .collect();
    let mounts: Vec<Value> = claims
        .iter()
        .map(|c| json!({"name": c, "mountPath": format!("/vol/{c}")}))
        .collect();
    let script = "for d in /vol/*; do [ -s $d/blob ] || { dd if=/dev/urandom of=$d/blob bs=1M count=8 2>/dev/null; echo \"$(hostname) wrote $d\" > $d/notes.txt; }; done; exec sleep 86400";
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns, "annotations": annotations},
           "spec": {"terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": image, "imagePullPolicy": "Never",
                                    "command": ["sh", "-c", script],
                                    "volumeMounts": mounts}],
                    "volumes": volumes}})
}

/// `sha256sum` of the files the app wrote in `/vol/<claim>`, read inside its container.
fn sums(kubeconfig: &Path, ns: &str, pod: &str, claim: &str) -> String {
    pod_exec(
        kubeconfig,
        ns,
        pod,
        "app",
        &format!("cd /vol/{claim} && sha256sum blob notes.txt"),
    )
}

/// The app's checksums of `/vol/<claim>` once it has written its files there.
async fn written_sums(kubeconfig: &Path, ns: &str, pod: &str, claim: &str) -> String {
    wait_for(
        &format!("{ns}/{pod}'s data in {claim}"),
        Duration::from_secs(30),
        || {
            let kc = kubeconfig.to_path_buf();
            let check = format!("cat /vol/{claim}/notes.txt >/dev/null 2>&1 && echo yes || true");
            async move {
                let s = pod_exec(&kc, ns, pod, "app", &check);
                (s.trim() == "yes").then(|| sums(&kc, ns, pod, claim))
            }
        },
    )
    .await
}

fn gunzip_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn csi_snapshots_and_fs_backup_of_running_apps_restored_on_the_node() {
    let a = Cluster::up(&unique("csi-a")).await;
    let node = Node::up(&a);
    let csi = Csi::up(&a);
    let c = a.client.clone();
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("location")).unwrap();
    let loc = format!("file://{}", work.path().join("location").display());
    let password_file = work.path().join("repository-password");
    std::fs::write(&password_file, "csi test password\n").unwrap();

    let agent_kc = node_agent_kubeconfig(&a, work.path()).await;
    let bb = node.image_busybox.as_str();
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "annot"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "noclass"}}),
            // A second class of the same driver, skipped by the volume policy.
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                   "metadata": {"name": "slow"}, "provisioner": csi.driver,
                   "volumeBindingMode": "WaitForFirstConsumer"}),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "volume-policy", "namespace": "tidemark"},
                   "data": {"policy.yaml": "version: v1\nvolumePolicies:\n- conditions:\n    storageClass: [slow]\n  action:\n    type: skip\n"}}),
            claim("app", "data", &csi.storage_class),
            claim("app", "logs", "slow"),
            claim("annot", "files", &csi.storage_class),
            // Velero's pre hook flushes the app before its claim is snapshotted: the marker
            // it writes must be in the snapshot.
            app(
                "app",
                "db-0",
                bb,
                &["data", "logs"],
                json!({"pre.hook.backup.velero.io/command":
                           r#"["/bin/sh", "-c", "sync && echo flushed > /vol/data/pre-hook.txt"]"#,
                       "pre.hook.backup.velero.io/on-error": "Fail",
                       "post.hook.backup.velero.io/command": r#"["/bin/sh", "-c", "echo thawed"]"#}),
            ),
            app("annot", "web-0", bb, &["files"], json!({"backup.velero.io/backup-volumes": "files"})),
            // A claim of a driver without a labelled VolumeSnapshotClass (a static PV): its
            // snapshot cannot be taken.
            json!({"apiVersion": "v1", "kind": "PersistentVolume",
                   "metadata": {"name": "pv-noclass"},
                   "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                            "csi": {"driver": "unknown.csi.test", "volumeHandle": "vol-x"},
                            "claimRef": {"namespace": "noclass", "name": "data"}}}),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "data", "namespace": "noclass"},
                   "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "",
                            "volumeName": "pv-noclass", "resources": {"requests": {"storage": "1Gi"}}}}),
        ],
    )
    .await;
    wait_pod_ready(&c, "app", "db-0", Duration::from_secs(120)).await;
    wait_pod_ready(&c, "annot", "web-0", Duration::from_secs(120)).await;
    let data_sums = written_sums(&a.kubeconfig, "app", "db-0", "data").await;
    let files_sums = written_sums(&a.kubeconfig, "annot", "web-0", "files").await;
    let env = [("KUBECONFIG", a.kubeconfig.to_str().unwrap())];

    // --- Backup of `app` by CSI snapshot: `data` snapshotted, `logs` skipped by the policy.
    let started = std::time::Instant::now();
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
            "2m",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("Completed"), "{}", show(&out));
    eprintln!(
        "CSI snapshot backup of a running app (8 MiB claim): {:?}",
        started.elapsed()
    );
    let folder = work.path().join("location/backups/snap1");
    let info = gunzip_json(&folder.join("snap1-volumeinfo.json.gz"));
    let info = info.as_array().unwrap();
    let data = info.iter().find(|v| v["pvcName"] == "data").unwrap();
    assert_eq!(data["backupMethod"], "CSISnapshot", "{data:#}");
    assert_eq!(data["result"], "succeeded", "{data:#}");
    assert_eq!(data["csiSnapshotInfo"]["driver"], csi.driver.as_str());
    let handle = data["csiSnapshotInfo"]["snapshotHandle"]
        .as_str()
        .unwrap()
        .to_string();
    let logs = info.iter().find(|v| v["pvcName"] == "logs").unwrap();
    assert_eq!(logs["skipped"], true, "{logs:#}");
    // The storage snapshot was taken by the driver, through the real snapshot controller and
    // sidecar, and kept: tidemark removed the snapshot objects but retained the content first.
    assert!(csi.snapshot_dir(&handle).is_dir(), "{:?}", csi.snapshots());
    wait_for(
        "the backup's snapshot objects removed",
        Duration::from_secs(60),
        || {
            let c = c.clone();
            async move {
                (snapshot_objects(&c, "VolumeSnapshot").await.is_empty()
                    && snapshot_objects(&c, "VolumeSnapshotContent")
                        .await
                        .is_empty())
                .then_some(())
            }
        },
    )
    .await;
    assert!(csi.snapshot_dir(&handle).is_dir(), "{:?}", csi.snapshots());
    let vscs = gunzip_json(&folder.join("snap1-csi-volumesnapshotcontents.json.gz"));
    assert_eq!(vscs[0]["status"]["snapshotHandle"], handle.as_str());
    assert_eq!(vscs[0]["spec"]["deletionPolicy"], "Retain");
    let record: Value =
        serde_json::from_slice(&std::fs::read(folder.join("velero-backup.json")).unwrap()).unwrap();
    assert_eq!(
        record["status"]["hookStatus"]["hooksAttempted"], 2,
        "{record:#}"
    );
    assert_eq!(record["status"]["csiVolumeSnapshotsAttempted"], 1);
    assert_eq!(record["status"]["csiVolumeSnapshotsCompleted"], 1);

    // --- Backup of `annot`: the annotated CSI claim goes to the node agent, which reads the
    // kubelet's CSI mount of the running pod.
    let agent = NodeAgent::start(&agent_kc, &node, &password_file, &[]);
    let pw = password_file.to_str().unwrap();
    let fs_env = [
        ("KUBECONFIG", a.kubeconfig.to_str().unwrap()),
        ("TIDEMARK_REPO_PASSWORD_FILE", pw),
        (
            "TIDEMARK_RESTORE_HELPER_IMAGE",
            node.image_tidemark.as_str(),
        ),
    ];
    let out = tidemark(
        &[
            "backup",
            "create",
            "fsb1",
            "--include-namespaces",
            "annot",
            "--location",
            &loc,
        ],
        &fs_env,
    );
    assert!(
        out.status.success(),
        "{}\nagent:\n{}",
        show(&out),
        agent.log()
    );
    let info = gunzip_json(
        &work
            .path()
            .join("location/backups/fsb1/fsb1-volumeinfo.json.gz"),
    );
    let files = info
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["pvcName"] == "files")
        .unwrap();
    assert_eq!(files["backupMethod"], "PodVolumeBackup", "{files:#}");
    assert_eq!(files["pvbInfo"]["podName"], "web-0");
    let pvbs: Api<tidemark::api::podvolume::PodVolumeBackup> =
        Api::namespaced(c.clone(), "tidemark");
    let pvb = pvbs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let path = pvb.status.and_then(|s| s.path).unwrap_or_default();
    assert!(
        path.contains("kubernetes.io~csi") && path.ends_with("/mount"),
        "{path}"
    );

    // --- A volume that cannot be snapshotted is a backup error (PartiallyFailed, exit 2).
    let out = tidemark(
        &[
            "backup",
            "create",
            "fail1",
            "--include-namespaces",
            "noclass",
            "--location",
            &loc,
            "--csi-snapshot-timeout",
            "30s",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stdout(&out).contains("PartiallyFailed"), "{}", show(&out));

    // --- The incident: both namespaces gone, with their claims and volumes.
    kubectl(
        &a.kubeconfig,
        &[
            "delete",
            "namespace",
            "app",
            "annot",
            "--wait=true",
            "--timeout=120s",
        ],
    );

    // --- Restore in place and into a mapped namespace: each claim is provisioned from the
    // retained snapshot by the real provisioner and driver; the apps find their data.
    for (restore, ns, mapping) in [
        ("r1", "app", None),
        ("r2", "app-copy", Some("app:app-copy")),
    ] {
        let started = std::time::Instant::now();
        let mut args = vec![
            "restore",
            "create",
            restore,
            "--from-backup",
            "snap1",
            "--location",
            &loc,
        ];
        if let Some(m) = mapping {
            args.extend(["--namespace-mappings", m]);
        }
        let out = tidemark(&args, &env);
        assert!(out.status.success(), "{}", show(&out));
        assert!(stdout(&out).contains("Completed"), "{}", show(&out));
        wait_pod_ready(&c, ns, "db-0", Duration::from_secs(120)).await;
        eprintln!(
            "CSI restore {restore} into {ns}, app Ready: {:?}",
            started.elapsed()
        );
        assert_eq!(sums(&a.kubeconfig, ns, "db-0", "data"), data_sums);
        assert_eq!(
            pod_exec(
                &a.kubeconfig,
                ns,
                "db-0",
                "app",
                "cat /vol/data/pre-hook.txt"
            ),
            "flushed\n",
            "the pre hook ran before the snapshot"
        );
        let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            Api::namespaced(c.clone(), ns);
        let restored = serde_json::to_value(claims.get("data").await.unwrap()).unwrap();
        assert_eq!(
            restored["spec"]["dataSource"]["kind"], "VolumeSnapshot",
            "{restored:#}"
        );
        // The skipped claim comes back empty, provisioned anew.
        let logs = serde_json::to_value(claims.get("logs").await.unwrap()).unwrap();
        assert!(logs["spec"].get("dataSource").is_none(), "{logs:#}");
    }

    // --- Restore the file-system backup: the wait init container holds the pod until the
    // agent has written into the new CSI volume.
    let out = tidemark(
        &[
            "restore",
            "create",
            "r3",
            "--from-backup",
            "fsb1",
            "--location",
            &loc,
        ],
        &fs_env,
    );
    assert!(
        out.status.success(),
        "{}\nagent:\n{}",
        show(&out),
        agent.log()
    );
    wait_pod_ready(&c, "annot", "web-0", Duration::from_secs(120)).await;
    assert_eq!(sums(&a.kubeconfig, "annot", "web-0", "files"), files_sums);

    // --- Deleting the backup deletes the storage snapshot, through the real sidecar.
    let out = tidemark(
        &["backup", "delete", "snap1", "--confirm", "--location", &loc],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(!folder.exists(), "backup folder removed");
    wait_for(
        "the storage snapshot deleted",
        Duration::from_secs(60),
        || {
            let dir = csi.snapshot_dir(&handle);
            async move { (!dir.exists()).then_some(()) }
        },
    )
    .await;
    // The deletion content tidemark made for it went with the storage snapshot (the restored
    // claims' own snapshot objects stay, as Velero leaves them).
    let left: Vec<String> = snapshot_objects(&c, "VolumeSnapshotContent")
        .await
        .iter()
        .map(|o| o.name_any())
        .filter(|n| n.starts_with("tidemark-delete"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(agent);
    drop(csi);
    drop(node);
}

/// The controller, under the shipped ServiceAccount's token: a Backup with a TTL takes the
/// snapshot of a claim (Immediate binding: no pod needed), and when the TTL has passed,
/// expiry deletes the storage snapshot with the backup — the snapshot deletes the shipped RBAC
/// must allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn controller_backup_snapshots_and_expiry_deletes_them() {
    let cluster = Cluster::up(&unique("csi-ctl")).await;
    let csi = Csi::up(&cluster);
    let minio = Minio::up(&unique("csi-ctl-minio"));
    let c = cluster.client.clone();
    apply_shipped_rbac(&c).await;
    let creds = minio.credentials_file();
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": "tidemark"},
                   "stringData": {"cloud": creds}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location", "metadata": {"name": "default", "namespace": "tidemark"},
                   "spec": {"provider": "s3", "bucket": minio.bucket(), "prefix": "csi", "default": true,
                            "accessMode": "ReadWrite",
                            "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"], "s3ForcePathStyle": "true"},
                            "credential": {"name": "s3-credentials", "key": "cloud"},
                            "syncPeriod": "3s", "validationPeriod": "3s"}}),
            claim("app", "data", &csi.storage_class_immediate),
        ],
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let sa_kc = work.path().join("tidemark.kubeconfig");
    service_account_kubeconfig(&c, &cluster.kubeconfig, "tidemark", "tidemark", &sa_kc).await;
    let server = Server::start(&sa_kc, "tidemark", &[]);
    let backups: Api<tidemark::api::tidemark::Backup> = Api::namespaced(c.clone(), "tidemark");
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup",
                 "metadata": {"name": "short", "namespace": "tidemark"},
                 "spec": {"template": {"includedNamespaces": ["app"], "ttl": "20s",
                                       "volumes": {"csiSnapshotTimeout": "2m"}}}}),
        ],
    )
    .await;
    wait_for(
        "backup short Completed",
        Duration::from_secs(120),
        || async {
            let b = serde_json::to_value(backups.get("short").await.ok()?).ok()?;
            (b["status"]["phase"] == "Completed").then_some(())
        },
    )
    .await;
    let snapshots = csi.snapshots();
    assert_eq!(
        snapshots.len(),
        1,
        "one storage snapshot: {snapshots:?}\n{}",
        server.log()
    );

    // TTL: the record goes, and the storage snapshot is deleted through a `Delete` content.
    wait_for("backup short expired", Duration::from_secs(120), || async {
        backups.get_opt("short").await.ok()?.is_none().then_some(())
    })
    .await;
    wait_for(
        "the storage snapshot deleted",
        Duration::from_secs(60),
        || async { csi.snapshots().is_empty().then_some(()) },
    )
    .await;
    assert!(!server.log().contains("forbidden"), "{}", server.log());
    drop(server);
}

/// Waits until a running backup has taken its one storage snapshot, written its intent record
/// into `folder` and removed the snapshot objects (its content retained).
async fn wait_retained(c: &Client, csi: &Csi, folder: &Path) {
    wait_for(
        "the snapshot retained, its intent recorded and its objects removed",
        Duration::from_secs(120),
        || {
            let (c, folder, taken) = (c.clone(), folder.to_path_buf(), csi.snapshots());
            async move {
                let intents = std::fs::read_dir(&folder)
                    .ok()?
                    .flatten()
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with("tidemark-csi-intent-")
                    })
                    .count();
                let objects = snapshot_objects(&c, "VolumeSnapshot").await.len()
                    + snapshot_objects(&c, "VolumeSnapshotContent").await.len();
                (intents == 1 && taken.len() == 1 && objects == 0).then_some(())
            }
        },
    )
    .await;
}

/// Crash safety (issue 15): the controller is killed (SIGKILL) while a backup's post hook runs —
/// after the storage snapshot was taken, its intent record written, its content retained and
/// its snapshot objects removed, before any volume record exists. The next controller marks the
/// backup Failed, deletes the storage snapshot through the intent record, then removes the
/// folder: no storage snapshot is orphaned.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_controller_killed_after_the_snapshot_leaves_no_orphan() {
    let a = Cluster::up(&unique("csi-kill")).await;
    let node = Node::up(&a);
    let csi = Csi::up(&a);
    let c = a.client.clone();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("location");
    std::fs::create_dir_all(&dir).unwrap();
    apply_shipped_rbac(&c).await;
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
            claim("app", "data", &csi.storage_class),
            // The post hook holds the backup after its volume phase.
            app(
                "app",
                "db-0",
                &node.image_busybox,
                &["data"],
                json!({"post.hook.backup.velero.io/command": r#"["/bin/sh", "-c", "sleep 300"]"#,
                       "post.hook.backup.velero.io/timeout": "10m"}),
            ),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location",
                   "metadata": {"name": "local", "namespace": "tidemark"},
                   "spec": {"provider": "filesystem", "bucket": dir.display().to_string(),
                            "default": true, "accessMode": "ReadWrite"}}),
        ],
    )
    .await;
    wait_pod_ready(&c, "app", "db-0", Duration::from_secs(120)).await;
    let sa_kc = work.path().join("tidemark.kubeconfig");
    service_account_kubeconfig(&c, &a.kubeconfig, "tidemark", "tidemark", &sa_kc).await;
    let mut first = Server::start(&sa_kc, "tidemark", &[]);
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup",
                 "metadata": {"name": "crash1", "namespace": "tidemark"},
                 "spec": {"template": {"includedNamespaces": ["app"]}}}),
        ],
    )
    .await;
    let folder = dir.join("backups/crash1");
    wait_retained(&c, &csi, &folder).await;
    assert!(!folder.join("velero-backup.json").exists());
    first.kill();

    let second = Server::start(&sa_kc, "tidemark", &[]);
    let backups: Api<tidemark::api::tidemark::Backup> = Api::namespaced(c.clone(), "tidemark");
    wait_for("backup crash1 Failed", Duration::from_secs(120), || async {
        let b = serde_json::to_value(backups.get("crash1").await.ok()?).ok()?;
        (b["status"]["phase"] == "Failed").then_some(())
    })
    .await;
    wait_for(
        "the storage snapshot deleted",
        Duration::from_secs(120),
        || async { csi.snapshots().is_empty().then_some(()) },
    )
    .await;
    wait_for(
        "the partial folder removed",
        Duration::from_secs(60),
        || {
            let folder = folder.clone();
            async move { (!folder.exists()).then_some(()) }
        },
    )
    .await;
    assert!(!second.log().contains("forbidden"), "{}", second.log());
    drop(second);
    drop(csi);
    drop(node);
}

/// Crash safety in direct mode (issue 15): `tidemark backup create` is killed (SIGKILL) while
/// its post hook runs, after the storage snapshot was retained; `tidemark recover` then deletes
/// the storage snapshot through its intent record and removes the partial folder, leaving a
/// complete backup of the same location alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_direct_backup_is_recovered_by_tidemark_recover() {
    let a = Cluster::up(&unique("csi-rec")).await;
    let node = Node::up(&a);
    let csi = Csi::up(&a);
    let c = a.client.clone();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("location");
    std::fs::create_dir_all(&dir).unwrap();
    let loc = format!("file://{}", dir.display());
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "settings", "namespace": "other"}, "data": {"k": "v"}}),
            claim("app", "data", &csi.storage_class),
            app(
                "app",
                "db-0",
                &node.image_busybox,
                &["data"],
                json!({"post.hook.backup.velero.io/command": r#"["/bin/sh", "-c", "sleep 300"]"#,
                       "post.hook.backup.velero.io/timeout": "10m"}),
            ),
        ],
    )
    .await;
    wait_pod_ready(&c, "app", "db-0", Duration::from_secs(120)).await;
    let kc = a.kubeconfig.to_str().unwrap();
    let env = [("KUBECONFIG", kc)];
    let out = tidemark(
        &[
            "backup",
            "create",
            "ok1",
            "--include-namespaces",
            "other",
            "--location",
            &loc,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));

    let mut run = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args([
            "backup",
            "create",
            "crash2",
            "--include-namespaces",
            "app",
            "--location",
            &loc,
        ])
        .env("KUBECONFIG", kc)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let folder = dir.join("backups/crash2");
    wait_retained(&c, &csi, &folder).await;
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(!folder.join("velero-backup.json").exists());

    // A fresh partial backup is left alone by default (it may still be running).
    let out = tidemark(&["recover", "--location", &loc], &env);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("crash2: left alone"),
        "{}",
        show(&out)
    );
    let out = tidemark(
        &[
            "recover",
            "--location",
            &loc,
            "--older-than",
            "0s",
            "--dry-run",
        ],
        &env,
    );
    assert!(
        stdout(&out).contains("crash2: would be removed"),
        "{}",
        show(&out)
    );
    assert_eq!(csi.snapshots().len(), 1);

    let out = tidemark(&["recover", "--location", &loc, "--older-than", "0s"], &env);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("crash2: removed (1 storage snapshot(s) deleted)"),
        "{}",
        show(&out)
    );
    assert!(csi.snapshots().is_empty(), "{:?}", csi.snapshots());
    assert!(!folder.exists());
    assert!(
        dir.join("backups/ok1/velero-backup.json").is_file(),
        "a complete backup stays"
    );
    drop(csi);
    drop(node);
}
