//! File-system backup of pod volumes (issue 7) on real clusters and MinIO, with the node agent
//! as a process and the test playing the missing kubelet and scheduler: a pod bound to a test
//! node has its volume directory laid out under a temporary kubelet root with files of
//! assorted sizes (empty, 1 byte, sparse, 100 MB, many small files, symlinks, permissions);
//! `tidemark backup create` makes a PodVolumeBackup that the agent carries out into
//! `<prefix>/restic/<ns>/`; the plain `restic` CLI lists the snapshot, checks the repository
//! and restores the same bytes; `tidemark restore create` into a second cluster gives the
//! restored pod the wait init container and a PodVolumeRestore, and the agent there writes
//! identical data into the new pod's volume directory (made by the test, as the kubelet would)
//! with the done marker; deleting the backup forgets the snapshot and `tidemark repo prune`
//! leaves a repository that `restic check` accepts.

mod support;

use std::collections::BTreeMap;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::*;
use tidemark::api::podvolume::{PodVolumeBackup, PodVolumeRestore};

const NS: &str = "tidemark";
const NODE: &str = "vol-node-1";
const PASSWORD: &str = "correct horse battery staple";

/// A running `tidemark node-agent`, killed on drop.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn start(kubeconfig: &Path, root: &Path, password_file: &Path, minio: &Minio) -> Agent {
        let log = std::env::temp_dir().join(format!("{}.log", unique("tidemark-node-agent")));
        let file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
        cmd.args([
            "node-agent",
            "--node-name",
            NODE,
            "--namespace",
            NS,
            "--kubelet-root",
            root.to_str().unwrap(),
            "--repo-password-file",
            password_file.to_str().unwrap(),
            "--progress-interval",
            "1s",
            "--log-level",
            "info",
        ])
        .env("KUBECONFIG", kubeconfig)
        .stdout(file.try_clone().unwrap())
        .stderr(file);
        for (k, v) in &minio.env {
            cmd.env(k, v);
        }
        Agent {
            child: cmd.spawn().expect("start node agent"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The emptyDir directory of `volume` of the pod with `uid`, as the kubelet lays it out.
fn volume_dir(root: &Path, uid: &str, volume: &str) -> PathBuf {
    root.join("pods")
        .join(uid)
        .join("volumes/kubernetes.io~empty-dir")
        .join(volume)
}

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

async fn setup(client: &Client) {
    install_crds(client).await;
    apply_docs(
        client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE}}),
        ],
    )
    .await;
}

fn pod_manifest() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "db-0", "namespace": "shop",
                     "annotations": {"backup.velero.io/backup-volumes": "data"}},
        "spec": {
            "nodeName": NODE,
            "containers": [{"name": "db", "image": "registry.invalid/db:1",
                            "volumeMounts": [{"name": "data", "mountPath": "/data"},
                                             {"name": "scratch", "mountPath": "/scratch"},
                                             {"name": "cfg", "mountPath": "/cfg"}]}],
            "volumes": [{"name": "data", "emptyDir": {}},
                        {"name": "scratch", "emptyDir": {}},
                        {"name": "cfg", "configMap": {"name": "cfg"}}]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pod_volume_backed_up_read_by_restic_and_restored_into_a_second_cluster() {
    assert!(
        Command::new("restic").arg("version").output().is_ok(),
        "the restic CLI is needed: apt-get install -y restic"
    );
    let a = Cluster::up(&unique("vfs-a")).await;
    let b = Cluster::up(&unique("vfs-b")).await;
    let minio = Minio::up(&unique("vfs-minio"));
    let work = tempfile::tempdir().unwrap();
    let password_file = work.path().join("repository-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let root_a = work.path().join("kubelet-a");
    let root_b = work.path().join("kubelet-b");

    setup(&a.client).await;
    setup(&b.client).await;
    apply_docs(
        &a.client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"}, "data": {"k": "v"}}),
        ],
    )
    .await;
    let pods_a: Api<Pod> = Api::namespaced(a.client.clone(), "shop");
    let pod: Pod = serde_json::from_value(pod_manifest()).unwrap();
    let pod = pods_a.create(&PostParams::default(), &pod).await.unwrap();
    let uid = pod.uid().unwrap();
    let source = volume_dir(&root_a, &uid, "data");
    fill(&source);
    // The other emptyDir exists too but is not chosen (no annotation for it).
    std::fs::create_dir_all(volume_dir(&root_a, &uid, "scratch")).unwrap();
    std::fs::write(volume_dir(&root_a, &uid, "scratch").join("tmp"), b"t").unwrap();
    let expected = tree(&source);

    let agent_a = Agent::start(&a.kubeconfig, &root_a, &password_file, &minio);
    let s3 = minio.url("cluster-a");
    let pw = password_file.to_str().unwrap();
    let agent_env = [
        ("TIDEMARK_REPO_PASSWORD_FILE", pw),
        ("TIDEMARK_POD_VOLUME_TIMEOUT", "5m"),
        (
            "TIDEMARK_RESTORE_HELPER_IMAGE",
            "registry.invalid/tidemark:test",
        ),
    ];
    let (ka, kb) = (
        a.kubeconfig.to_str().unwrap(),
        b.kubeconfig.to_str().unwrap(),
    );
    let mut env_a = minio.env_with(ka);
    env_a.extend(agent_env);
    let mut env_b = minio.env_with(kb);
    env_b.extend(agent_env);

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
        agent_a.log()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Completed"),
        "{}",
        show(&out)
    );
    eprintln!("backup with pod volume: {:?}", started.elapsed());
    let pvbs: Api<PodVolumeBackup> = Api::namespaced(a.client.clone(), NS);
    let list = pvbs.list(&Default::default()).await.unwrap().items;
    assert_eq!(list.len(), 1, "{list:?}");
    let pvb = &list[0];
    assert_eq!(pvb.spec.volume, "data");
    assert_eq!(pvb.spec.node, NODE);
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

    // The backup folder holds the record as Velero's PodVolumeBackup.
    let bucket = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(minio.bucket())
        .with_endpoint(&minio.env["AWS_ENDPOINT_URL"])
        .with_region(&minio.env["AWS_REGION"])
        .with_access_key_id(&minio.env["AWS_ACCESS_KEY_ID"])
        .with_secret_access_key(&minio.env["AWS_SECRET_ACCESS_KEY"])
        .with_allow_http(true)
        .build()
        .unwrap();
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

    // Restore into cluster B: the agent there writes into the new pod's directory.
    let agent_b = Agent::start(&b.kubeconfig, &root_b, &password_file, &minio);
    let mut restore = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    restore.args([
        "restore",
        "create",
        "vr1",
        "--from-backup",
        "vb1",
        "--location",
        &s3,
    ]);
    for (k, v) in &env_b {
        restore.env(k, v);
    }
    let restore = restore
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pods_b: Api<Pod> = Api::namespaced(b.client.clone(), "shop");
    let new_pod = wait_for("the restored pod", Duration::from_secs(120), || {
        let pods_b = pods_b.clone();
        async move { pods_b.get_opt("db-0").await.ok().flatten() }
    })
    .await;
    let new_uid = new_pod.uid().unwrap();
    assert_ne!(new_uid, uid);
    let spec = new_pod.spec.clone().unwrap();
    let inits = spec.init_containers.clone().unwrap_or_default();
    assert_eq!(inits[0].name, "tidemark-restore-wait", "{inits:?}");
    assert_eq!(
        inits[0].image.as_deref(),
        Some("registry.invalid/tidemark:test")
    );
    assert_eq!(
        inits[0].args.clone().unwrap(),
        ["restore-wait", "--marker", "vr1", "/restores/data"]
    );
    // Play the scheduler (bind to the test node) and the kubelet (make the volume directory).
    let binding = json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "db-0", "namespace": "shop"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
    pods_b
        .create_subresource::<Value, Value>("binding", "db-0", &PostParams::default(), &binding)
        .await
        .expect("bind the restored pod to the test node");
    let target = volume_dir(&root_b, &new_uid, "data");
    std::fs::create_dir_all(&target).unwrap();
    let out = tokio::task::spawn_blocking(move || restore.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nagent:\n{}",
        show(&out),
        agent_b.log()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Completed"),
        "{}",
        show(&out)
    );
    let pvrs: Api<PodVolumeRestore> = Api::namespaced(b.client.clone(), NS);
    let list = pvrs.list(&Default::default()).await.unwrap().items;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].spec.snapshot_id, snapshot_id);
    assert_eq!(list[0].spec.pod.uid.as_deref(), Some(new_uid.as_str()));
    assert_eq!(
        list[0].status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Completed")
    );
    assert_eq!(tree(&target), expected);
    assert!(
        target.join(".tidemark/vr1").is_file(),
        "done marker missing"
    );
    // The sparse file stays sparse.
    let m = std::fs::metadata(target.join("sparse.img")).unwrap();
    assert!(
        m.blocks() * 512 < SPARSE_LEN / 2,
        "sparse.img takes {} blocks",
        m.blocks()
    );

    // The wait init container's command returns once the marker is there.
    let out = tidemark(
        &["restore-wait", "--marker", "vr1", target.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", show(&out));

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
    drop(agent_a);
    drop(agent_b);
}
