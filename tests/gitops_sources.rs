//! GitOps sources (DESIGN §6) on a real test cluster: `tidemark reconcile` reads tidemark
//! manifests from local Git repositories made with git2 (`file://` URLs) and from a directory,
//! applies them with server-side apply (revision annotation, source label), skips revisions
//! already reconciled, prunes only what it applied, reports invalid manifests (marking existing
//! objects Stalled) while applying the others, and renders kustomize overlays with the pinned
//! kubectl. A second test fetches over Git's smart HTTP protocol (`git http-backend` behind a
//! small CGI bridge) to check shallow fetches and token authentication.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde_json::json;
use support::git_commit as commit;
use support::*;
use tidemark::api::tidemark::{BackupPolicy, Location, Schedule};

const REVISION: &str = "tidemark.dev/revision";
const SOURCE: &str = "tidemark.dev/source";

fn policy(name: &str, ttl: &str) -> String {
    format!(
        "apiVersion: tidemark.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\nspec:\n  template:\n    includedNamespaces: [app]\n    ttl: {ttl}\n"
    )
}

fn schedule(name: &str, cron: &str, extra: &str) -> String {
    format!(
        "apiVersion: tidemark.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: {name}\nspec:\n  schedule: \"{cron}\"\n  policy: daily\n{extra}"
    )
}

/// The test environment's PATH (the pinned kubectl first) for cluster `name`.
fn testenv_path(name: &str) -> String {
    let out = Command::new(repo().join("scripts/testenv"))
        .args(["env", name])
        .output()
        .expect("scripts/testenv env");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_exports(&String::from_utf8_lossy(&out.stdout))
        .remove("PATH")
        .expect("PATH export")
}

struct Env {
    cluster: Cluster,
    path: String,
    cache: PathBuf,
}

impl Env {
    /// Runs `tidemark reconcile <args>` against the cluster.
    fn reconcile(&self, args: &[&str]) -> Output {
        self.reconcile_with_path(args, &self.path)
    }

    fn reconcile_with_path(&self, args: &[&str], path: &str) -> Output {
        let cache = self.cache.to_string_lossy().to_string();
        let mut all = vec!["reconcile", "--cache-dir", &cache];
        all.extend_from_slice(args);
        let kubeconfig = self.cluster.kubeconfig.to_string_lossy().to_string();
        let started = std::time::Instant::now();
        let out = tidemark(&all, &[("KUBECONFIG", &kubeconfig), ("PATH", path)]);
        eprintln!(
            "tidemark {} ({:.1?}):\n{}",
            all.join(" "),
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout)
        );
        out
    }

    fn client(&self) -> Client {
        self.cluster.client.clone()
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn annotation<K: kube::Resource>(o: &K, key: &str) -> String {
    o.annotations().get(key).cloned().unwrap_or_default()
}

fn condition<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

async fn namespaces(client: &Client, names: &[&str]) {
    let docs: Vec<_> = names
        .iter()
        .map(|n| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}))
        .collect();
    apply_docs(client, &docs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_from_git_kustomize_and_directory_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = Cluster::up(&unique("gitops")).await;
    install_crds(&cluster.client).await;
    namespaces(&cluster.client, &["gitops", "gitops-kust", "gitops-dir"]).await;
    let env = Env {
        path: testenv_path(&cluster.name),
        cluster,
        cache: tmp.path().join("cache"),
    };
    git_lifecycle(&env, &tmp.path().join("repo")).await;
    kustomize_overlay(&env, &tmp.path().join("kustomize-repo")).await;
    directory_source(&env, &tmp.path().join("dir")).await;
}

async fn git_lifecycle(env: &Env, origin: &Path) {
    let client = env.client();
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), "gitops");
    let policies: Api<BackupPolicy> = Api::namespaced(client.clone(), "gitops");
    let url = format!("file://{}", origin.display());
    let args = [
        "--source",
        "git",
        "--url",
        url.as_str(),
        "--ref",
        "main",
        "--path",
        "clusters/prod",
        "--once",
        "--namespace",
        "gitops",
    ];

    // 1. A policy and a schedule (plus files that are not tidemark objects) are applied with
    //    the revision annotation and the source label, by the tidemark-gitops field manager.
    let c1 = commit(
        origin,
        &[
            ("clusters/prod/policy.yaml", Some(&policy("daily", "72h"))),
            (
                "clusters/prod/schedule.yaml",
                Some(&schedule("nightly", "0 1 * * *", "")),
            ),
            (
                "clusters/prod/other.yaml",
                Some(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: unrelated\ndata: {a: b}\n",
                ),
            ),
            ("clusters/prod/README.md", Some("# prod\n")),
            (
                "clusters/staging/schedule.yaml",
                Some(&schedule("staging", "0 5 * * *", "")),
            ),
        ],
        "one",
    );
    let out = env.reconcile(&args);
    assert!(out.status.success(), "{}", show(&out));
    let s = stdout(&out);
    assert!(
        s.contains(&format!("revision main@sha1:{c1}: applied 2 (created 2")),
        "{s}"
    );
    assert!(s.contains("created    BackupPolicy gitops/daily"), "{s}");
    assert!(s.contains("created    Schedule gitops/nightly"), "{s}");
    let nightly = schedules.get("nightly").await.unwrap();
    assert_eq!(annotation(&nightly, REVISION), format!("main@sha1:{c1}"));
    let source_id = nightly.labels()[SOURCE].clone();
    assert_eq!(source_id.len(), 20);
    assert!(
        nightly
            .managed_fields()
            .iter()
            .any(|m| m.manager.as_deref() == Some("tidemark-gitops")
                && m.operation.as_deref() == Some("Apply"))
    );
    let daily = policies.get("daily").await.unwrap();
    assert_eq!(annotation(&daily, REVISION), format!("main@sha1:{c1}"));
    assert!(schedules.get_opt("staging").await.unwrap().is_none());
    // Not ours: the ConfigMap of the same directory was ignored.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "gitops");
    assert!(cms.get_opt("unrelated").await.unwrap().is_none());
    // The revision is recorded in the source's ConfigMap.
    let record = cms
        .get(&format!("tidemark-gitops-{source_id}"))
        .await
        .unwrap();
    assert_eq!(record.data.unwrap()["revision"], format!("main@sha1:{c1}"));

    // 2. No new commit: skipped.
    let out = env.reconcile(&args);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains(&format!("revision main@sha1:{c1}: unchanged")),
        "{}",
        show(&out)
    );
    let rv = schedules.get("nightly").await.unwrap().resource_version();
    assert_eq!(rv, nightly.resource_version(), "nothing was written");

    // 3. The cron changes: the schedule is updated, the new revision recorded on both objects.
    let c2 = commit(
        origin,
        &[(
            "clusters/prod/schedule.yaml",
            Some(&schedule("nightly", "0 2 * * *", "")),
        )],
        "two",
    );
    let out = env.reconcile(&args);
    assert!(out.status.success(), "{}", show(&out));
    let s = stdout(&out);
    assert!(s.contains("configured Schedule gitops/nightly"), "{s}");
    assert!(s.contains("unchanged  BackupPolicy gitops/daily"), "{s}");
    let nightly = schedules.get("nightly").await.unwrap();
    assert_eq!(nightly.spec.schedule, "0 2 * * *");
    assert_eq!(annotation(&nightly, REVISION), format!("main@sha1:{c2}"));
    let daily = policies.get("daily").await.unwrap();
    assert_eq!(annotation(&daily, REVISION), format!("main@sha1:{c2}"));

    // 4. Deleted from Git: pruned. A schedule applied by hand (no source label) stays.
    apply_docs(
        &client,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Schedule",
                 "metadata": {"name": "manual", "namespace": "gitops"},
                 "spec": {"schedule": "0 3 * * *", "policy": "daily"}}),
        ],
    )
    .await;
    commit(origin, &[("clusters/prod/schedule.yaml", None)], "three");
    let out = env.reconcile(&args);
    assert!(out.status.success(), "{}", show(&out));
    let s = stdout(&out);
    assert!(s.contains("pruned 1"), "{s}");
    assert!(s.contains("pruned     Schedule gitops/nightly"), "{s}");
    assert!(schedules.get_opt("nightly").await.unwrap().is_none());
    assert!(schedules.get_opt("manual").await.unwrap().is_some());
    assert!(policies.get_opt("daily").await.unwrap().is_some());

    // 5. Back again, then an invalid revision: an unknown field in the schedule (which exists:
    //    Stalled, not pruned, spec kept), a bad enum value in a new Location (reported), a CEL
    //    rule only the API server checks, and a valid change to the policy (applied).
    let c4 = commit(
        origin,
        &[(
            "clusters/prod/schedule.yaml",
            Some(&schedule("nightly", "0 2 * * *", "")),
        )],
        "four",
    );
    let out = env.reconcile(&args);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("created    Schedule gitops/nightly"));
    let c5 = commit(
        origin,
        &[
            (
                "clusters/prod/schedule.yaml",
                Some(&schedule(
                    "nightly",
                    "0 4 * * *",
                    "  cronn: \"0 4 * * *\"\n",
                )),
            ),
            ("clusters/prod/policy.yaml", Some(&policy("daily", "48h"))),
            (
                "clusters/prod/location.yaml",
                Some(
                    "apiVersion: tidemark.dev/v1alpha1\nkind: Location\nmetadata:\n  name: store\nspec:\n  provider: ftp\n  bucket: b\n",
                ),
            ),
            (
                "clusters/prod/both.yaml",
                Some(&schedule("both", "0 6 * * *", "  template:\n    ttl: 1h\n")),
            ),
            (
                "clusters/prod/weekly.yaml",
                Some(
                    &policy("weekly", "24h")
                        .replace("  name: weekly\n", "  name: weekly\n  labelz: {a: b}\n"),
                ),
            ),
        ],
        "five: invalid",
    );
    let out = env.reconcile(&args);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let s = stdout(&out);
    assert!(s.contains(&format!("revision main@sha1:{c5}")), "{s}");
    assert!(s.contains("invalid 4"), "{s}");
    assert!(
        s.contains(
            "invalid    Schedule gitops/nightly (schedule.yaml:1): spec.cronn: unknown field"
        ),
        "{s}"
    );
    assert!(s.contains("marked Stalled"), "{s}");
    assert!(
        s.contains("invalid    Location gitops/store (location.yaml:1): spec.provider: unknown variant `ftp`"),
        "{s}"
    );
    assert!(s.contains("Schedule gitops/both"), "{s}");
    assert!(s.contains("exactly one of policy and template"), "{s}");
    // metadata is checked too (ObjectMeta's fields).
    assert!(s.contains("invalid    BackupPolicy gitops/weekly"), "{s}");
    assert!(s.contains("labelz"), "{s}");
    assert!(s.contains("configured BackupPolicy gitops/daily"), "{s}");
    let daily = policies.get("daily").await.unwrap();
    assert_eq!(daily.spec.template.ttl.as_deref(), Some("48h"));
    assert_eq!(annotation(&daily, REVISION), format!("main@sha1:{c5}"));
    let nightly = schedules.get("nightly").await.unwrap();
    assert_eq!(
        nightly.spec.schedule, "0 2 * * *",
        "the last applied spec is kept"
    );
    assert_eq!(annotation(&nightly, REVISION), format!("main@sha1:{c4}"));
    let conds = nightly.status.clone().unwrap_or_default().conditions;
    let stalled = condition(&conds, "Stalled").expect("Stalled condition");
    assert_eq!(stalled.status, "True");
    assert_eq!(stalled.reason, "InvalidManifest");
    assert!(
        stalled.message.contains("spec.cronn"),
        "{}",
        stalled.message
    );
    assert!(stalled.message.contains(&c5), "{}", stalled.message);
    assert_eq!(condition(&conds, "Ready").unwrap().status, "False");
    let locations: Api<Location> = Api::namespaced(client.clone(), "gitops");
    assert!(locations.get_opt("store").await.unwrap().is_none());
    assert!(schedules.get_opt("both").await.unwrap().is_none());
    // Unchanged since: skipped, and still failing.
    let out = env.reconcile(&args);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("unchanged (already reconciled; 4 invalid"),
        "{}",
        show(&out)
    );

    // 6. Fixed: applied, the InvalidManifest stall is lifted (the controller takes over).
    let c6 = commit(
        origin,
        &[
            (
                "clusters/prod/schedule.yaml",
                Some(&schedule("nightly", "0 4 * * *", "")),
            ),
            ("clusters/prod/location.yaml", None),
            ("clusters/prod/both.yaml", None),
            ("clusters/prod/weekly.yaml", None),
        ],
        "six: fixed",
    );
    let out = env.reconcile(&args);
    assert!(out.status.success(), "{}", show(&out));
    let nightly = schedules.get("nightly").await.unwrap();
    assert_eq!(nightly.spec.schedule, "0 4 * * *");
    assert_eq!(annotation(&nightly, REVISION), format!("main@sha1:{c6}"));
    let conds = nightly.status.clone().unwrap_or_default().conditions;
    assert!(condition(&conds, "Stalled").is_none(), "{conds:?}");
    assert_eq!(condition(&conds, "Reconciling").unwrap().status, "True");

    // 7. A YAML syntax error nothing can be read from: reported, and pruning is skipped.
    commit(
        origin,
        &[
            ("clusters/prod/schedule.yaml", None),
            ("clusters/prod/broken.yaml", Some("spec: [unclosed\n")),
        ],
        "seven",
    );
    let out = env.reconcile(&args);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout(&out).contains("pruning skipped"), "{}", show(&out));
    assert!(schedules.get_opt("nightly").await.unwrap().is_some());
}

async fn kustomize_overlay(env: &Env, origin: &Path) {
    let client = env.client();
    let overlay = "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: gitops-kust
namePrefix: prod-
resources:
- ../../base
patches:
- target:
    kind: Schedule
  patch: |-
    - op: replace
      path: /spec/schedule
      value: \"30 3 * * *\"
    - op: replace
      path: /spec/policy
      value: prod-daily
";
    let sha = commit(
        origin,
        &[
            (
                "base/kustomization.yaml",
                Some("resources:\n- policy.yaml\n- schedule.yaml\n"),
            ),
            ("base/policy.yaml", Some(&policy("daily", "24h"))),
            (
                "base/schedule.yaml",
                Some(&schedule("nightly", "0 1 * * *", "")),
            ),
            ("overlays/prod/kustomization.yaml", Some(overlay)),
        ],
        "kustomize",
    );
    let url = format!("file://{}", origin.display());
    let args = [
        "--url",
        url.as_str(),
        "--path",
        "overlays/prod",
        "--once",
        "-n",
        "default",
    ];
    // Without kustomize or kubectl on PATH: a clear error.
    let empty = origin.with_file_name("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let out = env.reconcile_with_path(&args, &empty.to_string_lossy());
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("neither `kustomize` nor `kubectl` is on PATH"),
        "{}",
        show(&out)
    );
    // With the test environment's kubectl: rendered with `kubectl kustomize`.
    let out = env.reconcile(&args);
    assert!(out.status.success(), "{}", show(&out));
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), "gitops-kust");
    let s = schedules.get("prod-nightly").await.unwrap();
    assert_eq!(s.spec.schedule, "30 3 * * *");
    assert_eq!(s.spec.policy.as_deref(), Some("prod-daily"));
    assert_eq!(annotation(&s, REVISION), format!("main@sha1:{sha}"));
    let policies: Api<BackupPolicy> = Api::namespaced(client.clone(), "gitops-kust");
    assert!(policies.get_opt("prod-daily").await.unwrap().is_some());
    // The record lives in --namespace (default), the objects where kustomize put them.
    let schedules_default: Api<Schedule> = Api::namespaced(client.clone(), "default");
    assert!(
        schedules_default
            .get_opt("prod-nightly")
            .await
            .unwrap()
            .is_none()
    );
}

async fn directory_source(env: &Env, dir: &Path) {
    let client = env.client();
    std::fs::create_dir_all(dir.join("nested")).unwrap();
    std::fs::write(dir.join("policy.yaml"), policy("daily", "24h")).unwrap();
    std::fs::write(
        dir.join("nested/schedules.yml"),
        format!(
            "{}---\n{}",
            schedule("a", "0 1 * * *", ""),
            schedule("b", "0 2 * * *", "")
        ),
    )
    .unwrap();
    let d = dir.to_string_lossy().to_string();
    let args = ["--source", "dir", "--path", d.as_str(), "-n", "gitops-dir"];
    let mut once = args.to_vec();
    once.push("--once");
    let out = env.reconcile(&once);
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        stdout(&out).contains("applied 3 (created 3"),
        "{}",
        show(&out)
    );
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), "gitops-dir");
    let a = schedules.get("a").await.unwrap();
    let rev = annotation(&a, REVISION);
    assert!(rev.starts_with("sha256:") && rev.len() == 7 + 64, "{rev}");
    let out = env.reconcile(&once);
    assert!(out.status.success(), "{}", show(&out));
    assert!(stdout(&out).contains("unchanged"), "{}", show(&out));

    // Watching: a change to a file is applied without waiting for the (long) interval.
    let log = dir.with_file_name("watch.log");
    let cache = env.cache.to_string_lossy().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["reconcile", "--cache-dir", &cache, "--interval", "1h"])
        .args(args)
        .env("KUBECONFIG", &env.cluster.kubeconfig)
        .env("PATH", &env.path)
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
    wait_for(
        "the watcher's first pass",
        Duration::from_secs(30),
        || async {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("unchanged")
                .then_some(())
        },
    )
    .await;
    let started = std::time::Instant::now();
    std::fs::write(
        dir.join("nested/schedules.yml"),
        schedule("a", "0 9 * * *", ""),
    )
    .unwrap();
    wait_for(
        "the change to be applied",
        Duration::from_secs(30),
        || async {
            let a = schedules.get("a").await.ok()?;
            let b_gone = schedules.get_opt("b").await.ok()?.is_none();
            (a.spec.schedule == "0 9 * * *" && b_gone).then_some(())
        },
    )
    .await;
    eprintln!(
        "directory change applied {:.1?} after the write",
        started.elapsed()
    );
    let a = schedules.get("a").await.unwrap();
    assert_ne!(annotation(&a, REVISION), rev);
}

/// Git's smart HTTP protocol: `git http-backend` (CGI) behind a tiny axum server that asks for
/// Basic credentials. Checks that fetches over HTTP are shallow (depth 1), that a token is sent
/// when asked for, and that a wrong token fails with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_http_fetch_is_shallow_and_authenticated() {
    use tidemark::source::{GitAuth, GitSource, GitSpec};
    let backend = Path::new("/usr/lib/git-core/git-http-backend");
    if !backend.exists() {
        eprintln!("skipped: {} is not installed", backend.display());
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("served");
    let origin = root.join("repo");
    let c1 = commit(&origin, &[("p/a.yaml", Some("a: 1\n"))], "one");
    let c2 = commit(&origin, &[("p/a.yaml", Some("a: 2\n"))], "two");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .fallback(cgi::handler)
        .with_state(std::sync::Arc::new((
            root.clone(),
            "s3cret-token".to_string(),
        )));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let spec = |token: &str| GitSpec {
        semver: None,
        commit: None,
        url: format!("http://127.0.0.1:{port}/repo"),
        reference: "main".into(),
        path: "p".into(),
        auth: GitAuth::Token {
            username: "git".into(),
            token: token.into(),
        },
        cache_root: Some(tmp.path().join(format!("cache-{token}"))),
        timeout: tidemark::source::git::FETCH_TIMEOUT,
    };
    let src = GitSource::new(spec("s3cret-token")).unwrap();
    let fetched = tokio::task::spawn_blocking(move || {
        let f = src.fetch(None).map_err(|e| e.to_string());
        (src, f)
    })
    .await
    .unwrap();
    let (src, f) = fetched;
    let f = f.unwrap();
    assert_eq!(f.revision.to_string(), format!("main@sha1:{c2}"));
    assert_eq!(
        std::fs::read_to_string(f.path.join("a.yaml")).unwrap(),
        "a: 2\n"
    );
    drop(f);
    let cache = git2::Repository::open(src.cache_dir().join("repo")).unwrap();
    assert!(cache.is_shallow(), "the fetch was not shallow");
    assert!(
        cache
            .find_commit(git2::Oid::from_str(&c1).unwrap())
            .is_err(),
        "the parent commit was downloaded"
    );

    let bad = GitSource::new(spec("wrong")).unwrap();
    let err = tokio::task::spawn_blocking(move || bad.fetch(None).unwrap_err().to_string())
        .await
        .unwrap();
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(
        !err.contains("wrong"),
        "the token leaked into the error: {err}"
    );
}

/// A minimal CGI bridge to `git http-backend` with Basic authentication.
mod cgi {
    use std::path::PathBuf;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::extract::{Request, State};
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::Response;
    use base64::Engine as _;
    use tokio::io::AsyncWriteExt;

    pub async fn handler(State(state): State<Arc<(PathBuf, String)>>, req: Request) -> Response {
        let (root, token) = state.as_ref();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("git:{token}"))
        );
        if req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
            != Some(expected.as_bytes())
        {
            return Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(header::WWW_AUTHENTICATE, "Basic realm=\"git\"")
                .body(Body::empty())
                .unwrap();
        }
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = axum::body::to_bytes(req.into_body(), 64 << 20)
            .await
            .unwrap();
        let mut child = tokio::process::Command::new("/usr/lib/git-core/git-http-backend")
            .env_clear()
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("REMOTE_USER", "git")
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&body).await.unwrap();
        drop(stdin);
        let out = child.wait_with_output().await.unwrap();
        let raw = out.stdout;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|p| (p, 4))
            .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2)))
            .expect("CGI headers");
        let head = String::from_utf8_lossy(&raw[..split.0]).to_string();
        let mut resp = Response::builder();
        for line in head.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.eq_ignore_ascii_case("status") {
                let code: u16 = v.trim().split(' ').next().unwrap().parse().unwrap();
                resp = resp.status(code);
            } else {
                resp = resp.header(k.trim(), v.trim());
            }
        }
        resp.body(Body::from(raw[split.0 + split.1..].to_vec()))
            .unwrap()
    }
}

/// A Git server that accepts connections and never answers (a stalled server, a black-holed
/// route) does not hold tidemark: the fetch is given up after `--git-timeout`, with an error
/// saying so, and the cache's lock is free again (a second run gets as far and no further). The
/// server is a plain listener of this test: nothing real stalls on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_git_server_is_given_up_after_the_timeout() {
    let cluster = Cluster::up(&unique("git-stall")).await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold every connection, reading nothing, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            held.push(c);
        }
    });
    let cache = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/stalled.git");
    let kubeconfig = cluster.kubeconfig.to_str().unwrap().to_string();
    for run in 0..2 {
        let started = std::time::Instant::now();
        let out = tidemark(
            &[
                "reconcile",
                "--once",
                "--url",
                &url,
                "--git-timeout",
                "2s",
                "--cache-dir",
                cache.path().to_str().unwrap(),
            ],
            &[("KUBECONFIG", &kubeconfig)],
        );
        let took = started.elapsed();
        assert!(!out.status.success(), "run {run}: {}", show(&out));
        assert!(
            show(&out).contains("timed out after 2s"),
            "run {run}: {}",
            show(&out)
        );
        assert!(took < Duration::from_secs(30), "run {run} took {took:?}");
    }
}
