//! Commit statuses from `tidemark reconcile` (issue 6): for each commit, one status per object,
//! context `tidemark/<kind>/<name>`: pending when applied, then success once the controller
//! reports the object Ready; an invalid manifest gets a failure at once. The forge here is a
//! local server speaking GitHub's commit-status API (the full contract of each forge is checked
//! in tests/commit_status.rs).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use support::*;

type Posted = Arc<Mutex<Vec<(String, Value)>>>;

async fn fake_github() -> (u16, Posted) {
    let posted: Posted = Arc::default();
    let app = axum::Router::new()
        .route(
            "/repos/{owner}/{repo}/statuses/{sha}",
            axum::routing::post(
                |State(p): State<Posted>,
                 UrlPath((o, r, sha)): UrlPath<(String, String, String)>,
                 h: HeaderMap,
                 body: String| async move {
                    assert_eq!((o.as_str(), r.as_str()), ("org", "backups"));
                    assert_eq!(h.get("authorization").unwrap(), "Bearer forge-token");
                    let body: Value = serde_json::from_str(&body).unwrap();
                    p.lock().unwrap().push((sha, body));
                    (
                        axum::http::StatusCode::CREATED,
                        json!({"id": 1}).to_string(),
                    )
                },
            ),
        )
        .with_state(posted.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, posted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_posts_one_status_per_object_and_revision() {
    let cluster = Cluster::up(&unique("statuses")).await;
    let c = cluster.client.clone();
    install_crds(&c).await;
    apply_docs(
        &c,
        &[json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tidemark"}})],
    )
    .await;
    let store_dir = tempfile::tempdir().unwrap();
    let repo_dir = tempfile::tempdir().unwrap();
    let location = format!(
        "apiVersion: tidemark.dev/v1alpha1\nkind: Location\nmetadata:\n  name: local\nspec:\n  provider: filesystem\n  bucket: {}\n  default: true\n",
        store_dir.path().display()
    );
    let policy = "apiVersion: tidemark.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: daily\nspec:\n  template:\n    includedNamespaces: [default]\n";
    let broken = "apiVersion: tidemark.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: broken\nspec:\n  schedule: \"0 1 * * *\"\n  policy: daily\n  colour: blue\n";
    let sha = git_commit(
        repo_dir.path(),
        &[
            ("location.yaml", Some(location.as_str())),
            ("policy.yaml", Some(policy)),
            ("broken.yaml", Some(broken)),
        ],
        "policies",
    );

    let _server = Server::start(&cluster.kubeconfig, "tidemark", &[]);
    let (port, posted) = fake_github().await;
    let cache = tempfile::tempdir().unwrap();
    let url = format!("file://{}", repo_dir.path().display());
    let forge_url = format!("http://127.0.0.1:{port}");
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let out = tidemark(
        &[
            "reconcile",
            "--source",
            "git",
            "--url",
            &url,
            "--once",
            "--cache-dir",
            cache.path().to_str().unwrap(),
            "--forge",
            "github",
            "--forge-url",
            &forge_url,
            "--forge-repository",
            "org/backups",
            "--status-timeout",
            "60s",
        ],
        &[("KUBECONFIG", &kc), ("TIDEMARK_FORGE_TOKEN", "forge-token")],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "an invalid manifest makes --once fail: {}",
        show(&out)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("forge-token"),
        "token leaked"
    );
    let posted = posted.lock().unwrap().clone();
    let states = |ctx: &str| -> Vec<String> {
        posted
            .iter()
            .filter(|(s, b)| s == &sha && b["context"] == ctx)
            .map(|(_, b)| b["state"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        states("tidemark/Location/local"),
        vec!["pending", "success"],
        "{posted:?}"
    );
    assert_eq!(
        states("tidemark/BackupPolicy/daily"),
        vec!["pending", "success"],
        "{posted:?}"
    );
    assert_eq!(
        states("tidemark/Schedule/broken"),
        vec!["failure"],
        "{posted:?}"
    );
    let failure = posted
        .iter()
        .find(|(_, b)| b["context"] == "tidemark/Schedule/broken")
        .unwrap();
    assert!(
        failure.1["description"]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{failure:?}"
    );
    assert!(posted.iter().all(|(s, _)| s == &sha));
    tokio::time::sleep(Duration::from_millis(10)).await;
}
