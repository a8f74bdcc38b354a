//! File-system backup of pod volumes (issue 7, on a real node since issue 14): a busybox pod
//! runs on the test node (real kubelet, containerd, runc; `scripts/testenv node up`) with an
//! emptyDir the kubelet made, filled with files of assorted sizes (empty, 1 byte, sparse,
//! 100 MB, many small files, symlinks, permissions) and a file the app writes itself;
//! `tidemark backup create` makes a PodVolumeBackup that the node agent — a local process
//! under the shipped `tidemark-node-agent` ServiceAccount's token, reading the real kubelet
//! root — carries out into `<prefix>/restic/<ns>/`; the plain `restic` CLI lists the
//! snapshot, checks the repository and restores the same bytes. The namespace is deleted and
//! the backup restored twice, in place and into a mapped namespace: each restored pod gets
//! the `tidemark-restore-wait` init container from tidemark's own image, which really runs and
//! holds the pod until the agent has written the data; the pods run again and `kubectl exec`
//! reads back the same checksums. Deleting the backup forgets the snapshot and `tidemark repo
//! prune` leaves a repository that `restic check` accepts.

mod support;

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::*;
use tidemark::api::podvolume::{PodVolumeBackup, PodVolumeRestore};

const NS: &str = "tidemark";
const PASSWORD: &str = "correct horse battery staple";

/// Deterministic pseudo-random bytes (xorshift), so big files do not compress or dedupe away.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

const SPARSE_LEN: u64 = 64 << 20;

/// Fills a volume with the assorted files of the issue.
fn fill(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    std::fs::write(dir.join("one-byte"), b"x").unwrap();
    // 64 MiB with data only at three places.
    let mut f = std::fs::File::create(dir.join("sparse.img")).unwrap();
    f.set_len(SPARSE_LEN).unwrap();
    for (i, off) in [0u64, 20 << 20, SPARSE_LEN - 4096].into_iter().enumerate() {
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(&noise(4096, 7 + i as u64)).unwrap();
    }
    drop(f);
    std::fs::write(dir.join("big.bin"), noise(100 << 20, 42)).unwrap();
    let small = dir.join("small");
    for d in 0..10 {
        let sub = small.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        for i in 0..200 {
            std::fs::write(
                sub.join(format!("f{i}.txt")),
                format!("file {d}/{i}\n").repeat(i % 7),
            )
            .unwrap();
        }
    }
    std::os::unix::fs::symlink("big.bin", dir.join("link-to-big")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", dir.join("dangling")).unwrap();
    std::fs::write(dir.join("secret.key"), b"k").unwrap();
    std::fs::set_permissions(
        dir.join("secret.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(dir.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(dir.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.join("private")).unwrap();
    std::fs::write(dir.join("private/notes"), b"n").unwrap();
    std::fs::set_permissions(dir.join("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// Relative path → (kind and mode, content digest or link target) for every entry under
/// `dir`, skipping the done-marker directory.
fn tree(dir: &Path) -> BTreeMap<String, (String, String)> {
    use sha2::Digest;
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, (String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if rel == ".tidemark" {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mode = format!("{:o}", m.mode() & 0o7777);
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.insert(rel, ("link".into(), t.display().to_string()));
            } else if m.is_dir() {
                out.insert(rel, (format!("dir {mode}"), String::new()));
                walk(base, &p, out);
            } else {
                let data = std::fs::read(&p).unwrap();
                let digest = hex::encode(sha2::Sha256::digest(&data));
                out.insert(
                    rel,
                    (format!("file {mode}"), format!("{} {digest}", data.len())),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn restic(minio: &Minio, repo: &str, password_file: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("restic");
    cmd.arg("-r").arg(repo).args(args);
    cmd.env("RESTIC_PASSWORD_FILE", password_file);
    cmd.env(
        "RESTIC_CACHE_DIR",
        std::env::temp_dir().join("restic-cache-tidemark-tests"),
    );
    for (k, v) in &minio.env {
        cmd.env(k, v);
    }
    cmd.output().expect("run restic (apt-get install restic)")
}

/// The app: a busybox pod that writes a file of its own, with two emptyDirs (only `data` is
/// chosen, by Velero's opt-in annotation) and a ConfigMap volume.
fn pod_manifest(image: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": "shop",
                     "annotations": {"backup.velero.io/backup-volumes": "data"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "db", "image": image, "imagePullPolicy": "Never",
                            "command": ["sh", "-c",
                                        "echo written-by-app > /data/app.txt; exec sleep 3600"],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                             {"name": "scratch", "mountPath": "/scratch"},
                                             {"name": "cfg", "mountPath": "/cfg"}]}],
            "volumes": [{"name": "data", "emptyDir": {}},
                        {"name": "scratch", "emptyDir": {}},
                        {"name": "cfg", "configMap": {"name": "cfg"}}]
        }
    })
}

/// `sha256sum` of every file under the pod's `/data` (the done markers left out), read with
/// `kubectl exec` through the API server and the kubelet.
fn checksums_in_pod(kubeconfig: &Path, namespace: &str) -> String {
    pod_exec(
        kubeconfig,
        namespace,
        "db-0",
        "db",
        "cd /data && find . -type f | grep -v '^./.tidemark/' | sort | xargs sha256sum",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pod_volume_backed_up_read_by_restic_and_restored_on_the_node() {
    assert!(
        Command::new("restic").arg("version").output().is_ok(),
        "the restic CLI is needed: apt-get install -y restic"
    );
    let a = Cluster::up(&unique("vfs-a")).await;
    let node = Node::up(&a);
    let minio = Minio::up(&unique("vfs-minio"));
    let work = tempfile::tempdir().unwrap();
    let password_file = work.path().join("repository-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();

    // tidemark's shipped RBAC; the agent runs under its ServiceAccount's token.
    let agent_kc = node_agent_kubeconfig(&a, work.path()).await;
    apply_docs(
        &a.client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"}, "data": {"k": "v"}}),
        ],
    )
    .await;
    let pods_a: Api<Pod> = Api::namespaced(a.client.clone(), "shop");
    let pod: Pod = serde_json::from_value(pod_manifest(&node.image_busybox)).unwrap();
    pods_a.create(&PostParams::default(), &pod).await.unwrap();
    let pod = wait_pod_ready(&a.client, "shop", "db-0", Duration::from_secs(60)).await;
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some(node.name.as_str()),
        "scheduled by the real scheduler"
    );
    let uid = pod.uid().unwrap();
    // The directory the kubelet made for the pod's emptyDir, filled beside the app's own file.
    let source = node.volume_dir(&uid, "kubernetes.io~empty-dir", "data");
    wait_for("the app's own file", Duration::from_secs(30), || {
        let f = source.join("app.txt");
        async move { f.is_file().then_some(()) }
    })
    .await;
    fill(&source);
    std::fs::write(
        node.volume_dir(&uid, "kubernetes.io~empty-dir", "scratch")
            .join("tmp"),
        b"t",
    )
    .unwrap();
    let expected = tree(&source);
    let expected_sums = checksums_in_pod(&a.kubeconfig, "shop");
    assert!(
        expected_sums.contains("./app.txt") && expected_sums.contains("./big.bin"),
        "{expected_sums}"
    );

    let minio_env: Vec<(&str, &str)> = minio
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let agent = NodeAgent::start(&agent_kc, &node, &password_file, &minio_env);
    let s3 = minio.url("cluster-a");
    let pw = password_file.to_str().unwrap();
    let ka = a.kubeconfig.to_str().unwrap();
    let mut env_a = minio.env_with(ka);
    env_a.extend([
        ("TIDEMARK_REPO_PASSWORD_FILE", pw),
        ("TIDEMARK_POD_VOLUME_TIMEOUT", "5m"),
        (
            "TIDEMARK_RESTORE_HELPER_IMAGE",
            node.image_tidemark.as_str(),
        ),
    ]);

    // Backup: one PodVolumeBackup, carried out by the agent.
    let started = std::time::Instant::now();
    let out = tidemark(
        &[
            "backup",
            "create",
            "vb1",
            "--include-namespaces",
            "shop",
            "--location",
            &s3,
        ],
        &env_a,
    );
    assert!(
        out.status.success(),
        "{}\nagent:\n{}",
        show(&out),
        agent.log()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Completed"),
        "{}",
        show(&out)
    );
    let backup_time = started.elapsed();
    let pvbs: Api<PodVolumeBackup> = Api::namespaced(a.client.clone(), NS);
    let list = pvbs.list(&Default::default()).await.unwrap().items;
    assert_eq!(list.len(), 1, "{list:?}");
    let pvb = &list[0];
    assert_eq!(pvb.spec.volume, "data");
    assert_eq!(pvb.spec.node, node.name);
    assert_eq!(pvb.spec.pod.uid.as_deref(), Some(uid.as_str()));
    let st = pvb.status.clone().unwrap();
    assert_eq!(st.phase.as_deref(), Some("Completed"), "{st:?}");
    let snapshot_id = st.snapshot_id.clone().unwrap();
    assert_eq!(snapshot_id.len(), 64);
    let total: i64 = expected
        .values()
        .filter(|(k, _)| k.starts_with("file"))
        .map(|(_, d)| d.split(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    let progress = st.progress.clone().unwrap();
    assert_eq!(progress.total_bytes, Some(total), "{st:?}");
    assert_eq!(progress.bytes_done, Some(total), "{st:?}");
    assert_eq!(st.path.as_deref(), Some(source.to_str().unwrap()));
    eprintln!(
        "file-system backup of a running pod's volume: {total} bytes in {backup_time:?} ({:.1} MB/s)",
        total as f64 / 1e6 / backup_time.as_secs_f64()
    );

    // The backup folder holds the record as Velero's PodVolumeBackup.
    let bucket = minio.object_store();
    let gz = object_store::ObjectStoreExt::get(
        &bucket,
        &object_store::path::Path::from("cluster-a/backups/vb1/vb1-podvolumebackups.json.gz"),
    )
    .await
    .expect("podvolumebackups.json.gz in the backup folder")
    .bytes()
    .await
    .unwrap();
    let mut json = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut json).unwrap();
    let records: Vec<Value> = serde_json::from_slice(&json).unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["apiVersion"], "velero.io/v1");
    assert_eq!(records[0]["kind"], "PodVolumeBackup");
    assert_eq!(records[0]["status"]["snapshotID"], snapshot_id.as_str());
    assert_eq!(records[0]["spec"]["volume"], "data");

    // The plain restic CLI reads the repository.
    let repo = format!(
        "s3:{}/{}/cluster-a/restic/shop",
        minio.env["AWS_ENDPOINT_URL"],
        minio.bucket()
    );
    assert_eq!(pvb.spec.repo_identifier, repo);
    let out = restic(&minio, &repo, &password_file, &["snapshots", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let snaps: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0]["id"], snapshot_id.as_str());
    assert_eq!(snaps[0]["hostname"], "tidemark");
    let tags: Vec<&str> = snaps[0]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in ["backup=vb1", "ns=shop", "pod=db-0", "volume=data"] {
        assert!(tags.contains(&t), "{tags:?}");
    }
    assert!(
        tags.contains(&format!("pod-uid={uid}").as_str()),
        "{tags:?}"
    );
    let out = restic(&minio, &repo, &password_file, &["check", "--read-data"]);
    assert!(out.status.success(), "{}", show(&out));
    let by_restic = work.path().join("by-restic");
    let out = restic(
        &minio,
        &repo,
        &password_file,
        &[
            "restore",
            &snapshot_id,
            "--target",
            by_restic.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
    // The snapshot's path is /<namespace>/<pod>/<volume>.
    assert_eq!(tree(&by_restic.join("shop/db-0/data")), expected);

    // The incident: the namespace is gone, with the pod and its data.
    kubectl(
        &a.kubeconfig,
        &[
            "delete",
            "namespace",
            "shop",
            "--wait=true",
            "--timeout=120s",
        ],
    );
    assert!(!source.exists(), "the kubelet removed the old pod's volume");

    // Restore in place, then into a mapped namespace: the real scheduler places each pod, the
    // kubelet makes its volume directory, the wait init container (tidemark's image) holds it
    // until the agent has written the data, then the app starts on its restored files.
    for (restore, namespace, extra) in [
        ("vr1", "shop", None),
        ("vr2", "shop-copy", Some("shop:shop-copy")),
    ] {
        let started = std::time::Instant::now();
        let mut args = vec![
            "restore",
            "create",
            restore,
            "--from-backup",
            "vb1",
            "--location",
            &s3,
        ];
        if let Some(m) = extra {
            args.extend(["--namespace-mappings", m]);
        }
        let out = tidemark(&args, &env_a);
        assert!(
            out.status.success(),
            "{}\nagent:\n{}",
            show(&out),
            agent.log()
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Completed"),
            "{}",
            show(&out)
        );
        let pod = wait_pod_ready(&a.client, namespace, "db-0", Duration::from_secs(120)).await;
        eprintln!(
            "restore {restore} of {total} bytes into {namespace}, pod Ready: {:?} ({:.1} MB/s)",
            started.elapsed(),
            total as f64 / 1e6 / started.elapsed().as_secs_f64()
        );
        let new_uid = pod.uid().unwrap();
        assert_ne!(new_uid, uid);
        let spec = pod.spec.clone().unwrap();
        let inits = spec.init_containers.clone().unwrap_or_default();
        assert_eq!(inits[0].name, "tidemark-restore-wait", "{inits:?}");
        assert_eq!(
            inits[0].image.as_deref(),
            Some(node.image_tidemark.as_str())
        );
        assert_eq!(
            inits[0].args.clone().unwrap(),
            ["restore-wait", "--marker", restore, "/restores/data"]
        );
        // The init container ran to completion on the node.
        let init_status = pod
            .status
            .as_ref()
            .unwrap()
            .init_container_statuses
            .clone()
            .unwrap();
        let terminated = init_status[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .unwrap_or_else(|| panic!("{init_status:?}"));
        assert_eq!(terminated.exit_code, 0, "{init_status:?}");

        let pvrs: Api<PodVolumeRestore> = Api::namespaced(a.client.clone(), NS);
        let pvr = pvrs
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|p| p.spec.pod.uid.as_deref() == Some(new_uid.as_str()))
            .expect("a PodVolumeRestore for the new pod");
        assert_eq!(pvr.spec.snapshot_id, snapshot_id);
        assert_eq!(
            pvr.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Completed")
        );

        let target = node.volume_dir(&new_uid, "kubernetes.io~empty-dir", "data");
        assert_eq!(tree(&target), expected);
        // The agent's done marker was consumed: the wait init container saw it, removed it
        // and exited, inside the pod.
        assert!(
            !target.join(".tidemark").exists(),
            "the wait init container left the done marker"
        );
        assert!(agent.log().contains(restore), "{}", agent.log());
        // The sparse file stays sparse.
        let m = std::fs::metadata(target.join("sparse.img")).unwrap();
        assert!(
            m.blocks() * 512 < SPARSE_LEN / 2,
            "sparse.img takes {} blocks",
            m.blocks()
        );
        // What the app sees in its container.
        assert_eq!(checksums_in_pod(&a.kubeconfig, namespace), expected_sums);
    }

    // Deleting the backup forgets its snapshot; prune frees the data; restic still checks.
    let out = tidemark(
        &["backup", "delete", "vb1", "--confirm", "--location", &s3],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 restic snapshot(s) forgotten"),
        "{}",
        show(&out)
    );
    let out = restic(&minio, &repo, &password_file, &["snapshots", "--json"]);
    assert!(out.status.success(), "{}", show(&out));
    let snaps: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(snaps.is_empty(), "{snaps:?}");
    let out = tidemark(&["repo", "prune", "--location", &s3], &env_a);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pruned 1 repositories: shop"),
        "{}",
        show(&out)
    );
    let out = restic(&minio, &repo, &password_file, &["check"]);
    assert!(out.status.success(), "{}", show(&out));
    drop(agent);
    drop(node);
}
