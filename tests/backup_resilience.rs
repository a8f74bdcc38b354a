//! A backup survives a broken cluster (issue 3): an APIService whose backend is down and
//! resources the identity may not list are recorded as errors, the rest is backed up, and the
//! backup ends `PartiallyFailed`; a backup killed mid-upload leaves no `velero-backup.json`; a
//! continue token that expires mid-listing (`410 Gone`) lists that resource again.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::*;

fn results(location: &std::path::Path, backup: &str) -> Value {
    let f = std::fs::File::open(location.join(format!("backups/{backup}/{backup}-results.gz")))
        .unwrap();
    serde_json::from_reader(flate2::read::GzDecoder::new(f)).unwrap()
}

fn items(location: &std::path::Path, backup: &str) -> Vec<String> {
    let f =
        std::fs::File::open(location.join(format!("backups/{backup}/{backup}.tar.gz"))).unwrap();
    let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(f));
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_api_service_and_forbidden_lists_make_a_partially_failed_backup() {
    let cluster = Cluster::up(&unique("broken")).await;
    let client = cluster.client.clone();
    apply_docs(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "app"}, "data": {"k": "v"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "app"}, "stringData": {"k": "v"}}),
            // An aggregated API whose backend Service does not exist.
            json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                   "metadata": {"name": "v1beta1.broken.example.com"},
                   "spec": {"group": "broken.example.com", "version": "v1beta1",
                            "service": {"namespace": "app", "name": "nowhere", "port": 443},
                            "insecureSkipTLSVerify": true, "groupPriorityMinimum": 1000, "versionPriority": 15}}),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let loc = format!("file://{}", dir.path().display());
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();

    // The aggregator needs a moment to notice the backend is missing; retry until it reports it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempt = 0;
    let name = loop {
        attempt += 1;
        let name = format!("broken-{attempt}");
        let out = tidemark(
            &["backup", "create", &name, "--location", &loc],
            &[("KUBECONFIG", &kc)],
        );
        if out.status.code() == Some(2) {
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("PartiallyFailed"),
                "{}",
                show(&out)
            );
            break name;
        }
        assert!(out.status.success(), "{}", show(&out));
        assert!(
            Instant::now() < deadline,
            "the broken APIService was never reported: {}",
            show(&out)
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let r = results(dir.path(), &name);
    assert!(
        r["errors"]["velero"]
            .to_string()
            .contains("broken.example.com/v1beta1"),
        "{r}"
    );
    let record: Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join(format!("backups/{name}/velero-backup.json")),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(record["status"]["phase"], "PartiallyFailed");
    assert!(record["status"]["errors"].as_u64().unwrap() >= 1);
    let all = items(dir.path(), &name);
    assert!(
        all.contains(&"resources/configmaps/namespaces/app/c.json".to_string()),
        "the rest must be backed up"
    );
    assert!(all.contains(&"resources/secrets/namespaces/app/s.json".to_string()));

    // An identity that may list config maps and namespaces but nothing else.
    apply_docs(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "narrow", "namespace": "app"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "narrow"},
                   "rules": [{"apiGroups": [""], "resources": ["configmaps", "namespaces"], "verbs": ["get", "list"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "narrow"},
                   "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": "app"}],
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "narrow"}}),
        ],
    )
    .await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "app");
    let tr = sas
        .create_token_request(
            "narrow",
            &PostParams::default(),
            &TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let token = tr.status.unwrap().token.expect("token");
    let admin: Value =
        serde_yaml::from_str(&std::fs::read_to_string(&cluster.kubeconfig).unwrap()).unwrap();
    let narrow = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "narrow",
        "clusters": admin["clusters"].clone(),
        "contexts": [{"name": "narrow", "context": {"cluster": admin["clusters"][0]["name"].clone(), "user": "narrow"}}],
        "users": [{"name": "narrow", "user": {"token": token}}],
    });
    let narrow_kc = dir.path().join("narrow.kubeconfig");
    std::fs::write(&narrow_kc, serde_yaml::to_string(&narrow).unwrap()).unwrap();
    let out = tidemark(
        &[
            "backup",
            "create",
            "narrow",
            "--include-namespaces",
            "app",
            "--location",
            &loc,
        ],
        &[("KUBECONFIG", narrow_kc.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(&token),
        "token leaked"
    );
    let r = results(dir.path(), "narrow");
    assert!(r["errors"].to_string().contains("listing secrets"), "{r}");
    assert!(r["errors"].to_string().contains("forbidden"), "{r}");
    let all = items(dir.path(), "narrow");
    assert!(
        all.contains(&"resources/configmaps/namespaces/app/c.json".to_string()),
        "{all:?}"
    );
    assert!(!all.iter().any(|p| p.contains("secrets")), "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_killed_mid_upload_leaves_no_record() {
    let cluster = Cluster::up(&unique("crash")).await;
    let minio = Minio::up(&unique("crash-minio"));
    let client = cluster.client.clone();
    apply_docs(
        &client,
        &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bulk"}})],
    )
    .await;
    // ~2,000 config maps of 4 KiB: enough for a slow, QPS-limited backup to be interrupted.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bulk");
    let payload = "x".repeat(4096);
    futures::future::join_all((0..2000).map(|i| {
        let cms = cms.clone();
        let payload = payload.clone();
        async move {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(format!("cm-{i:05}"));
            cm.data = Some([("payload".to_string(), payload)].into());
            cms.create(&PostParams::default(), &cm).await.unwrap();
        }
    }))
    .await;

    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let s3 = minio.url("crash");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args([
            "backup",
            "create",
            "interrupted",
            "--location",
            &s3,
            "--include-namespaces",
            "bulk",
            "--page-size",
            "20",
            "--client-qps",
            "10",
            "--client-burst",
            "1",
        ])
        .env("KUBECONFIG", &kc)
        .envs(minio.env.iter())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the backup finished before it could be killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let env = minio.env_with(&kc);
    let out = tidemark(&["backup", "get", "-o", "json", "--location", &s3], &env);
    assert!(out.status.success(), "{}", show(&out));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["items"], json!([]), "a killed backup is listed");
    let out = tidemark(
        &["backup", "describe", "interrupted", "--location", &s3],
        &env,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    // The name is not reused silently: the re-run says what the killed one left and how to
    // remove it; after `tidemark recover` (nothing left of the run, unfinished uploads
    // included) it runs.
    let again = [
        "backup",
        "create",
        "interrupted",
        "--location",
        &s3,
        "--include-namespaces",
        "bulk",
    ];
    let out = tidemark(&again, &env);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("was started before") && show(&out).contains("tidemark recover"),
        "{}",
        show(&out)
    );
    let out = tidemark(&["recover", "--location", &s3, "--older-than", "0s"], &env);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains("interrupted: removed"),
        "{}",
        show(&out)
    );
    let out = tidemark(
        &[
            "backup",
            "create",
            "interrupted",
            "--location",
            &s3,
            "--include-namespaces",
            "bulk",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let n: u64 = text
        .split(" items")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no item count in {text}"));
    assert!(n >= 2000, "{text}");
}

/// etcd's current revision, through its JSON gateway on `port`.
async fn etcd_revision(http: &reqwest::Client, port: &str) -> u64 {
    let body = http
        .post(format!("http://127.0.0.1:{port}/v3/kv/range"))
        .body(r#"{"key":"AA=="}"#)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    v["header"]["revision"].as_str().unwrap().parse().unwrap()
}

/// A continue token that expires mid-listing — the API server's watch cache is off, so every
/// page comes from etcd, and the test compacts etcd while the backup pages through one object
/// at a time — restarts that resource's listing, not the backup: it completes, and every object
/// is in the archive exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_continue_tokens_restart_the_listing_not_the_backup() {
    let cluster = Cluster::up_with_apiserver_args(&unique("gone"), "--watch-cache=false").await;
    let client = cluster.client.clone();
    const N: usize = 300;
    let mut docs =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "many"}})];
    for i in 0..N {
        docs.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": format!("cm-{i:03}"), "namespace": "many"},
                         "data": {"i": i.to_string()}}));
    }
    docs.push(json!({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "bump", "namespace": "default"}, "data": {"n": "0"}}));
    apply_docs(&client, &docs).await;
    let ports =
        std::fs::read_to_string(cluster.kubeconfig.parent().unwrap().join("ports")).unwrap();
    let etcd_port = ports
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_PORT="))
        .expect("ETCD_PORT in the cluster's ports file")
        .trim_matches('"')
        .to_string();

    // Compact etcd a few times while the backup runs (a write, then compaction at the new
    // revision, so every continue token older than it expires): no more often than the lister
    // restarts a listing (5), as production's compaction every few minutes is.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let compactor = {
        let stop = stop.clone();
        let client = client.clone();
        let port = etcd_port.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let cms: Api<ConfigMap> = Api::namespaced(client, "default");
            let mut compactions = 0u32;
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && compactions < 5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                n += 1;
                let _ = cms
                    .patch(
                        "bump",
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(json!({"data": {"n": n.to_string()}})),
                    )
                    .await;
                let rev = etcd_revision(&http, &port).await;
                let done = http
                    .post(format!("http://127.0.0.1:{port}/v3/kv/compaction"))
                    .body(format!(r#"{{"revision":"{rev}"}}"#))
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                compactions += u32::from(done);
            }
            compactions
        })
    };
    let location = tempfile::tempdir().unwrap();
    let url = format!("file://{}", location.path().display());
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        tidemark(
            &[
                "backup",
                "create",
                "gone",
                "--include-namespaces",
                "many",
                "--include-resources",
                "configmaps",
                "--page-size",
                "1",
                "--location",
                &url,
            ],
            &[("KUBECONFIG", kc.as_str())],
        )
    })
    .await
    .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let compactions = compactor.await.unwrap();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Completed"),
        "{}",
        show(&out)
    );
    // The fault really happened (else this test proves nothing).
    let log = {
        let f = std::fs::File::open(location.path().join("backups/gone/gone-logs.gz")).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(f), &mut s).unwrap();
        s
    };
    let relists = log.matches("continue token expired").count();
    assert!(
        relists > 0,
        "no continue token expired during the backup ({compactions} compactions); log:\n{log}"
    );
    let paths = items(location.path(), "gone");
    let primary: Vec<&String> = paths
        .iter()
        .filter(|p| p.starts_with("resources/configmaps/namespaces/many/"))
        .collect();
    let unique: std::collections::BTreeSet<&&String> = primary.iter().collect();
    assert_eq!(unique.len(), primary.len(), "duplicates in the archive");
    // The N objects plus the namespace's kube-root-ca.crt.
    assert_eq!(primary.len(), N + 1, "{primary:?}");
    eprintln!("expired continue tokens: {relists} relists over {compactions} compactions");
}

/// A run killed during its archive's multipart upload leaves its run marker and the upload's
/// parts (stored, and billed, until aborted): `tidemark recover` finds the folder by its marker,
/// aborts the upload (`ListMultipartUploads`, by exact key as MinIO requires) and removes the
/// folder; a complete backup beside it is left alone. The interrupted run is written here by the
/// test, object by object as tidemark writes them: killing a real run inside its first 5 MiB part
/// cannot be timed reliably.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_aborts_the_multipart_uploads_an_interrupted_run_left() {
    use object_store::ObjectStoreExt;
    let minio = Minio::up(&unique("pending"));
    let s3 = minio.object_store();
    // A complete backup (a record), and an interrupted one: its run marker and a pending upload.
    for f in [
        "p/backups/done/velero-backup.json",
        "p/backups/ghost/tidemark-run.json",
    ] {
        s3.put(
            &object_store::path::Path::from(f),
            bytes::Bytes::from_static(b"{}").into(),
        )
        .await
        .unwrap();
    }
    let mut upload = s3
        .put_multipart(&object_store::path::Path::from(
            "p/backups/ghost/ghost.tar.gz",
        ))
        .await
        .unwrap();
    upload
        .put_part(vec![7u8; 5 * 1024 * 1024].into())
        .await
        .unwrap();
    std::mem::drop(upload);
    let store = minio.tidemark_store(minio.bucket(), "p");
    let api = store.s3_api().unwrap();
    let archive = "p/backups/ghost/ghost.tar.gz";
    let pending = api.list_pending_uploads(archive).await.unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].key, "p/backups/ghost/ghost.tar.gz");

    // No cluster is needed for a backup without snapshots.
    let env: Vec<(&str, &str)> = minio
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("KUBECONFIG", "/nonexistent")])
        .collect();
    let loc = minio.url("p");
    let out = tidemark(
        &[
            "recover",
            "--location",
            &loc,
            "--dry-run",
            "--older-than",
            "0s",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains("ghost: would be removed"),
        "{}",
        show(&out)
    );
    assert_eq!(api.list_pending_uploads(archive).await.unwrap().len(), 1);
    let out = tidemark(&["recover", "--location", &loc, "--older-than", "0s"], &env);
    assert!(out.status.success(), "{}", show(&out));
    assert!(show(&out).contains("ghost: removed"), "{}", show(&out));
    assert!(!show(&out).contains("done"), "{}", show(&out));
    assert!(api.list_pending_uploads(archive).await.unwrap().is_empty());
    assert!(
        s3.head(&object_store::path::Path::from(
            "p/backups/ghost/tidemark-run.json"
        ))
        .await
        .is_err()
    );
    assert!(
        s3.head(&object_store::path::Path::from(
            "p/backups/done/velero-backup.json"
        ))
        .await
        .is_ok()
    );
}
