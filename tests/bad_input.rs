//! Bad input gives a clear error and a non-zero exit, and nothing already stored is lost:
//! missing locations, refused credentials, an existing backup name, a missing backup, a corrupt
//! archive, invalid names, an unreachable cluster and a read-only location.

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ListParams, PostParams};
use sha2::{Digest, Sha256};
use support::*;

/// Every file under `dir` with the sha256 of its content.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, hex::encode(Sha256::digest(std::fs::read(&p).unwrap())));
            }
        }
    }
    out
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_fails_clearly_and_loses_nothing() {
    let cluster = Cluster::up(&unique("bad")).await;
    let minio = Minio::up(&unique("bad-minio"));
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let env: Vec<(&str, &str)> = vec![("KUBECONFIG", &kc)];

    // Something to back up.
    let nss: Api<Namespace> = Api::all(cluster.client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("app".into());
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), "app");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("settings".into());
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    cms.create(&PostParams::default(), &cm).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());

    // A directory location that does not exist.
    let out = tidemark(
        &[
            "backup",
            "create",
            "b0",
            "--location",
            "file:///nonexistent/tidemark-loc",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("does not exist"), "{}", show(&out));
    assert!(!Path::new("/nonexistent/tidemark-loc").exists());

    // An S3 bucket that does not exist, and refused credentials.
    let s3_env = minio.env_with(&kc);
    let out = tidemark(
        &[
            "backup",
            "create",
            "b0",
            "--location",
            "s3://no-such-bucket/x",
        ],
        &s3_env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("no-such-bucket"), "{}", show(&out));
    let mut wrong_key = s3_env.clone();
    wrong_key.retain(|(k, _)| *k != "AWS_SECRET_ACCESS_KEY");
    wrong_key.push(("AWS_SECRET_ACCESS_KEY", "definitely-wrong-secret"));
    let s3 = minio.url("bad");
    let out = tidemark(&["backup", "create", "b0", "--location", &s3], &wrong_key);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("location s3://"), "{}", show(&out));
    assert!(
        !err.contains("definitely-wrong-secret"),
        "secret leaked: {err}"
    );
    // With the right credentials the bucket is still empty under that prefix.
    let out = tidemark(&["backup", "get", "-o", "json", "--location", &s3], &s3_env);
    assert!(out.status.success(), "{}", show(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);

    // An existing backup name is refused and nothing is overwritten.
    let out = tidemark(&["backup", "create", "b1", "--location", &url], &env);
    assert!(out.status.success(), "{}", show(&out));
    let before = snapshot(dir.path());
    assert!(
        before.contains_key("backups/b1/velero-backup.json"),
        "{before:?}"
    );
    let out = tidemark(&["backup", "create", "b1", "--location", &url], &env);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("already exists"), "{}", show(&out));
    assert_eq!(snapshot(dir.path()), before);

    // Invalid names.
    let out = tidemark(&["backup", "create", "Bad_Name", "--location", &url], &env);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("Bad_Name"), "{}", show(&out));
    let out = tidemark(
        &[
            "restore",
            "create",
            "r",
            "--from-backup",
            "b1",
            "--location",
            &url,
            "--namespace-mappings",
            "app",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("--namespace-mappings"),
        "{}",
        show(&out)
    );

    // A restore from a missing backup.
    let out = tidemark(
        &[
            "restore",
            "create",
            "r0",
            "--from-backup",
            "nope",
            "--location",
            &url,
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stderr(&out).contains("\"nope\" not found"),
        "{}",
        show(&out)
    );

    // A corrupt archive: refused before anything is created; the stored files stay.
    let out = tidemark(&["backup", "create", "b2", "--location", &url], &env);
    assert!(out.status.success(), "{}", show(&out));
    let tarball = dir.path().join("backups/b2/b2.tar.gz");
    let mut bytes = std::fs::read(&tarball).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&tarball, &bytes).unwrap();
    cms.delete("settings", &Default::default()).await.unwrap();
    let stored = snapshot(dir.path());
    let out = tidemark(
        &[
            "restore",
            "create",
            "r2",
            "--from-backup",
            "b2",
            "--location",
            &url,
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("archive rejected"), "{}", show(&out));
    let restored = cms
        .list(&ListParams::default().labels("velero.io/restore-name=r2"))
        .await
        .unwrap();
    assert!(
        restored.items.is_empty(),
        "objects were created from a corrupt archive"
    );
    assert!(cms.get_opt("settings").await.unwrap().is_none());
    assert_eq!(snapshot(dir.path()), stored, "the store changed");

    // Garbage that is not even gzip.
    std::fs::write(&tarball, b"not an archive").unwrap();
    let out = tidemark(
        &[
            "restore",
            "create",
            "r3",
            "--from-backup",
            "b2",
            "--location",
            &url,
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("archive rejected"), "{}", show(&out));

    // An unreachable cluster: clear error, nothing written.
    let dead = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        dead.path(),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
         contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: x\n",
    )
    .unwrap();
    let before = snapshot(dir.path());
    let out = tidemark(
        &["backup", "create", "b3", "--location", &url],
        &[("KUBECONFIG", dead.path().to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("discovery"), "{}", show(&out));
    assert_eq!(snapshot(dir.path()), before);

    // A read-only location is never written.
    let ro = format!("{url}?accessMode=ReadOnly");
    let out = tidemark(&["backup", "create", "b4", "--location", &ro], &env);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stderr(&out).contains("read-only"), "{}", show(&out));
    // ...but it can be restored from, without writing restore files into it.
    let out = tidemark(
        &[
            "restore",
            "create",
            "r4",
            "--from-backup",
            "b1",
            "--location",
            &ro,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(cms.get_opt("settings").await.unwrap().is_some());
    assert_eq!(snapshot(dir.path()), before);
}
