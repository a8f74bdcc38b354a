//! The controller reading its manifests from Git (`tidemark server --config` with a `source:`
//! section, DESIGN §6), end to end on a real cluster, MinIO and a local Git repository:
//!
//! 1. `main` holds a Location; the controller applies it (revision annotation `main@sha1:…`).
//! 2. A RestorePlan is committed on a branch: `tidemark plan --ref <branch>` previews it (one
//!    ConfigMap to create) while the controller, following `main`, leaves it alone.
//! 3. The branch is merged: the controller applies the plan, which restores once.
//! 4. Later revisions of `main` (the plan unchanged) do not restore again, even though the
//!    restored object was deleted since.
//!
//! Also: a configuration file with an unknown field is refused at start-up, naming the field.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::*;
use tidemark::api::tidemark::{Location, Restore, RestorePlan};

const NS: &str = "tidemark";
const PREFIX: &str = "gitops-ctl";

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=tester",
            "-c",
            "user.email=tester@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", show(&out));
}

fn head(dir: &Path) -> String {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn revision_of(client: &Client, name: &str) -> Option<String> {
    let api: Api<Location> = Api::namespaced(client.clone(), NS);
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.annotations().get("tidemark.dev/revision").cloned())
}

async fn plan_restores(client: &Client) -> Vec<Restore> {
    let api: Api<Restore> = Api::namespaced(client.clone(), NS);
    api.list(&ListParams::default().labels("tidemark.dev/restore-plan=restore-app"))
        .await
        .unwrap()
        .items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_follows_git_and_runs_a_merged_restore_plan_once() {
    let cluster = Cluster::up(&unique("gitctl")).await;
    let minio = Minio::up(&unique("gitctl-minio"));
    let c = cluster.client.clone();
    install_crds(&c).await;
    let creds = minio.credentials_file();
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "app"}, "data": {"mode": "blue"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra", "namespace": "app"}, "data": {"keep": "me"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": NS},
                   "stringData": {"cloud": creds}}),
        ],
    )
    .await;

    // A backup of `app`, taken in direct mode into the Location's prefix; then `extra` is lost.
    let kubeconfig = cluster.kubeconfig.to_string_lossy().to_string();
    let env = minio.env_with(&kubeconfig);
    let url = minio.url(PREFIX);
    let out = tidemark(
        &[
            "backup",
            "create",
            "b1",
            "--include-namespaces",
            "app",
            "--location",
            &url,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "app");
    cms.delete("extra", &DeleteParams::default()).await.unwrap();
    wait_for("extra deleted", Duration::from_secs(30), || async {
        cms.get_opt("extra").await.unwrap().is_none().then_some(())
    })
    .await;

    // `main`: the Location.
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("platform");
    let location = json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location",
        "metadata": {"name": "default"},
        "spec": {"provider": "s3", "bucket": minio.bucket(), "prefix": PREFIX, "default": true,
                 "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"],
                            "s3ForcePathStyle": "true"},
                 "credential": {"name": "s3-credentials", "key": "cloud"}}});
    let first = git_commit(
        &repo,
        &[("clusters/prod/location.yaml", Some(&location.to_string()))],
        "location",
    );
    let repo_url = format!("file://{}", repo.display());

    // A configuration with a typo is refused at start-up, naming the field.
    let bad = tmp.path().join("bad.yaml");
    std::fs::write(
        &bad,
        format!("source:\n  kind: git\n  url: {repo_url}\n  intervall: 2s\n"),
    )
    .unwrap();
    let out = tidemark(
        &["server", "--config", &bad.to_string_lossy()],
        &[("KUBECONFIG", &kubeconfig)],
    );
    assert!(!out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("intervall"),
        "{}",
        show(&out)
    );

    // The controller, following `main` every 2 s.
    let config = tmp.path().join("config.yaml");
    let cache = tmp.path().join("cache");
    std::fs::write(
        &config,
        format!(
            "source:\n  kind: git\n  url: {repo_url}\n  ref: main\n  path: clusters/prod\n  \
             interval: 2s\n  cacheDir: {}\n",
            cache.display()
        ),
    )
    .unwrap();
    let server = Server::start(
        &cluster.kubeconfig,
        NS,
        &["--config", &config.to_string_lossy()],
    );
    let rev = wait_for(
        "the Location from main",
        Duration::from_secs(60),
        || async { revision_of(&c, "default").await },
    )
    .await;
    assert_eq!(rev, format!("main@sha1:{first}"), "{}", server.log());
    let locations: Api<Location> = Api::namespaced(c.clone(), NS);
    wait_for("the Location Ready", Duration::from_secs(60), || async {
        let l = locations.get("default").await.ok()?;
        let v = serde_json::to_value(&l).unwrap();
        (tidemark::api::conditions::kstatus(&v) == tidemark::api::conditions::KStatus::Current)
            .then_some(())
    })
    .await;

    // A pull request: the RestorePlan on a branch.
    let plan = "apiVersion: tidemark.dev/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: restore-app\n\
                spec:\n  template:\n    backupName: b1\n    includedNamespaces: [app]\n";
    git(&repo, &["checkout", "-q", "-b", "restore-app"]);
    std::fs::write(repo.join("clusters/prod/restore.yaml"), plan).unwrap();
    git(&repo, &["add", "clusters/prod/restore.yaml"]);
    git(&repo, &["commit", "-q", "-m", "restore app"]);
    let branch_head = head(&repo);
    git(&repo, &["checkout", "-q", "main"]);

    // The review: `tidemark plan` on the branch shows the restore's preview.
    let plan_cache = tmp.path().join("plan-cache").to_string_lossy().to_string();
    let out = tidemark(
        &[
            "plan",
            "--source",
            "git",
            "--url",
            &repo_url,
            "--ref",
            "restore-app",
            "--path",
            "clusters/prod",
            "--cache-dir",
            &plan_cache,
            "-o",
            "json",
        ],
        &[("KUBECONFIG", &kubeconfig)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let preview: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        preview["revision"],
        format!("restore-app@sha1:{branch_head}"),
        "{preview}"
    );
    let p = &preview["restorePlans"][0];
    assert_eq!(p["name"], "restore-app", "{preview}");
    assert_eq!(p["alreadyRan"], false, "{p}");
    assert_eq!(p["create"], json!(["configmaps app/extra"]), "{p}");
    assert_eq!(p["conflict"], json!([]), "{p}");
    // Unmerged: the controller (on `main`) has not applied it, nothing was restored.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let plans: Api<RestorePlan> = Api::namespaced(c.clone(), NS);
    assert!(plans.get_opt("restore-app").await.unwrap().is_none());
    assert!(cms.get_opt("extra").await.unwrap().is_none());

    // Merged: applied from `main`, restored once.
    git(
        &repo,
        &[
            "merge",
            "-q",
            "--no-ff",
            "-m",
            "Merge restore-app",
            "restore-app",
        ],
    );
    let merged = head(&repo);
    wait_for(
        "the restored ConfigMap",
        Duration::from_secs(120),
        || async { cms.get_opt("extra").await.unwrap() },
    )
    .await;
    let applied = plans.get("restore-app").await.unwrap();
    assert_eq!(
        applied.annotations().get("tidemark.dev/revision"),
        Some(&format!("main@sha1:{merged}"))
    );
    let done = wait_for(
        "the plan's restore Completed",
        Duration::from_secs(60),
        || async {
            let p = plans.get("restore-app").await.ok()?;
            let s = p.status?;
            (s.phase.as_deref() == Some("Completed")).then_some(s)
        },
    )
    .await;
    assert!(done.restore_name.is_some(), "{done:?}");
    assert_eq!(plan_restores(&c).await.len(), 1);

    // The restored object is lost again and `main` moves on: the plan is unchanged, so it does
    // not run again.
    cms.delete("extra", &DeleteParams::default()).await.unwrap();
    let later = git_commit(
        &repo,
        &[("clusters/prod/README.md", Some("prod\n"))],
        "docs",
    );
    wait_for("the later revision", Duration::from_secs(60), || async {
        (revision_of(&c, "default").await? == format!("main@sha1:{later}")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(plan_restores(&c).await.len(), 1, "{}", server.log());
    assert!(cms.get_opt("extra").await.unwrap().is_none());
    let p = plans.get("restore-app").await.unwrap();
    assert_eq!(
        p.annotations().get("tidemark.dev/revision"),
        Some(&format!("main@sha1:{later}"))
    );
    assert_eq!(p.status.unwrap().restore_name, done.restore_name);
}
