//! The controller reading its manifests from Git through the `GitSource` kind (DESIGN §6), end
//! to end on real clusters, a real MinIO and local Git repositories, with the controller running
//! as a local process under the ServiceAccount tidemark ships (its token, not an admin's):
//!
//! `gitsource_applies_prunes_by_inventory_and_reports` — with only the namespace Role the
//! controller ships (no ClusterRole: pruning must not LIST cluster-wide):
//! 1. apply: a BackupPolicy and a Schedule from `main`; the GitSource shows the revision, the
//!    artifact digest, the inventory and `Ready=True` (also in `kubectl get gitsources`);
//! 2. update: a changed Schedule is configured;
//! 3. rename: the old Schedule is pruned by the inventory, the new one created; a BackupPolicy
//!    and a Schedule of the same kinds created by hand in the same namespace survive;
//! 4. an invalid manifest: the GitSource and the object are `Stalled`, naming the field; the
//!    object keeps its last applied spec; fixed, both recover;
//! 5. a missing credentials Secret: `Stalled`, naming `spec.secretRef`;
//! 6. suspend: a new revision is not applied until the GitSource is resumed;
//! 7. delete: its finalizer prunes what its inventory holds, and nothing else.
//!
//! `gitsource_previews_a_branch_and_restores_a_merged_plan_once` — under the whole shipped
//! RBAC: a RestorePlan on a branch is previewed by `tidemark plan` and left alone by the
//! controller; merged, it restores once; later revisions do not restore again. Also: the
//! deprecated `source:` section of the configuration file still applies (with a deprecation
//! line in the log), and a typo in it is refused naming the field.
//!
//! Every step is triggered with Flux's `reconcile.fluxcd.io/requestedAt` annotation and waited
//! for through `status.lastHandledReconcileAt` (the GitSources' interval is an hour), so
//! "nothing happened" is asserted only after the controller says it handled the request.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::*;
use tidemark::api::conditions::{KStatus, kstatus};
use tidemark::api::gitsource::GitSource;
use tidemark::api::tidemark::{BackupPolicy, Location, Restore, RestorePlan, Schedule};

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

/// A GitSource following `main` of `url` at `path`, checked hourly (steps trigger it).
fn git_source(name: &str, url: &str, path: &str) -> Value {
    json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "GitSource",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"url": url, "ref": {"branch": "main"}, "path": path, "interval": "1h"}})
}

/// Asks for a reconcile now (as `flux reconcile` does) and waits until the controller has
/// handled it; returns the GitSource as it was then.
async fn reconcile_now(api: &Api<GitSource>, name: &str, token: &str) -> GitSource {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}}),
        ),
    )
    .await
    .unwrap();
    let what = format!("the controller to handle reconcile request {token}");
    wait_for(&what, Duration::from_secs(90), || async {
        let g = api.get(name).await.ok()?;
        (g.status.as_ref()?.last_handled_reconcile_at.as_deref() == Some(token)).then_some(g)
    })
    .await
}

/// Merges `spec` into the GitSource `platform` and waits until the controller has observed
/// the new generation.
async fn spec_change(api: &Api<GitSource>, spec: Value) {
    let generation = api
        .patch(
            "platform",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap()
        .metadata
        .generation;
    wait_for(
        &format!("the controller to observe generation {generation:?}"),
        Duration::from_secs(90),
        || async {
            let g = api.get("platform").await.ok()?;
            (g.status?.observed_generation == generation).then_some(())
        },
    )
    .await;
}

fn condition<'a>(
    gs: &'a GitSource,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    gs.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn inventory_ids(gs: &GitSource) -> Vec<String> {
    gs.status
        .as_ref()
        .and_then(|s| s.inventory.as_ref())
        .map(|i| i.entries.iter().map(|e| e.id.clone()).collect())
        .unwrap_or_default()
}

fn policy(name: &str) -> String {
    format!(
        "apiVersion: tidemark.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: {name}\n\
         spec:\n  template:\n    includedNamespaces: [app]\n"
    )
}

fn schedule(name: &str, cron: &str, extra: &str) -> String {
    format!(
        "apiVersion: tidemark.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: {name}\n\
         spec:\n  schedule: \"{cron}\"\n  policy: apps\n{extra}"
    )
}

/// Applies the shipped install's namespace, CRDs, ServiceAccount, Role and RoleBinding only
/// (no ClusterRole): the controller can then do nothing outside its namespace. The node
/// agent's namespace comes along (it holds nothing the controller may use).
async fn apply_namespace_rbac_only(client: &Client) {
    apply_shipped(client, |kind| {
        matches!(
            kind,
            "Namespace" | "CustomResourceDefinition" | "ServiceAccount" | "Role" | "RoleBinding"
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitsource_applies_prunes_by_inventory_and_reports() {
    let cluster = Cluster::up(&unique("gitsrc")).await;
    let c = cluster.client.clone();
    apply_namespace_rbac_only(&c).await;
    let work = tempfile::tempdir().unwrap();
    let sa_kc = work.path().join("tidemark.kubeconfig");
    service_account_kubeconfig(&c, &cluster.kubeconfig, NS, "tidemark", &sa_kc).await;
    // The premise: the controller's account cannot list tidemark's kinds cluster-wide.
    let sa_client = Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&sa_kc).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    let everywhere: Api<Schedule> = Api::all(sa_client);
    match everywhere.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("a cluster-wide LIST must be forbidden: {other:?}"),
    }

    // Objects of the same kinds, created by hand beside what Git will hold.
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "BackupPolicy",
                   "metadata": {"name": "manual", "namespace": NS},
                   "spec": {"template": {"includedNamespaces": ["app"]}}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Schedule",
                   "metadata": {"name": "manual", "namespace": NS},
                   "spec": {"schedule": "0 5 * * *", "policy": "manual"}}),
        ],
    )
    .await;

    let repo = work.path().join("platform");
    let c1 = git_commit(
        &repo,
        &[
            ("clusters/prod/policy.yaml", Some(&policy("apps"))),
            (
                "clusters/prod/schedule.yaml",
                Some(&schedule("nightly", "0 2 * * *", "")),
            ),
        ],
        "one",
    );
    let url = format!("file://{}", repo.display());
    let server = Server::start(&sa_kc, NS, &[]);
    let sources: Api<GitSource> = Api::namespaced(c.clone(), NS);
    let schedules: Api<Schedule> = Api::namespaced(c.clone(), NS);
    let policies: Api<BackupPolicy> = Api::namespaced(c.clone(), NS);
    apply_docs(&c, &[git_source("platform", &url, "clusters/prod")]).await;

    // 1. Applied: revision, artifact, inventory, Ready.
    let gs = wait_for(
        "the first revision applied",
        Duration::from_secs(90),
        || async {
            let g = sources.get("platform").await.ok()?;
            (g.status.as_ref()?.last_applied_revision.as_deref()? == format!("main@sha1:{c1}"))
                .then_some(g)
        },
    )
    .await;
    let status = gs.status.clone().unwrap();
    let artifact = status.artifact.clone().expect("artifact");
    assert_eq!(artifact.revision, format!("main@sha1:{c1}"));
    assert!(artifact.digest.starts_with("sha256:"), "{artifact:?}");
    assert_eq!(status.last_attempted_revision, status.last_applied_revision);
    assert_eq!(
        inventory_ids(&gs),
        vec![
            "tidemark_apps_tidemark.dev_BackupPolicy",
            "tidemark_nightly_tidemark.dev_Schedule"
        ]
    );
    assert_eq!(
        condition(&gs, "Ready").unwrap().status,
        "True",
        "{}",
        server.log()
    );
    assert_eq!(
        kstatus(&serde_json::to_value(&gs).unwrap()),
        KStatus::Current
    );
    let nightly = schedules.get("nightly").await.unwrap();
    assert_eq!(
        nightly.annotations().get("tidemark.dev/revision"),
        Some(&format!("main@sha1:{c1}"))
    );
    let table = kubectl(&cluster.kubeconfig, &["get", "gitsources", "-n", NS]);
    assert!(
        table.contains("platform")
            && table.contains(&format!("main@sha1:{c1}"))
            && table.contains("True"),
        "{table}"
    );

    // 2. Updated.
    let c2 = git_commit(
        &repo,
        &[(
            "clusters/prod/schedule.yaml",
            Some(&schedule("nightly", "0 3 * * *", "")),
        )],
        "two",
    );
    let gs = reconcile_now(&sources, "platform", "2").await;
    assert_eq!(
        gs.status.as_ref().unwrap().last_applied_revision,
        Some(format!("main@sha1:{c2}"))
    );
    assert_eq!(
        schedules.get("nightly").await.unwrap().spec.schedule,
        "0 3 * * *"
    );

    // 3. Renamed: the old one pruned by the inventory; nothing else touched.
    let c3 = git_commit(
        &repo,
        &[
            ("clusters/prod/schedule.yaml", None),
            (
                "clusters/prod/nightly-v2.yaml",
                Some(&schedule("nightly-v2", "0 3 * * *", "")),
            ),
        ],
        "three",
    );
    let gs = reconcile_now(&sources, "platform", "3").await;
    assert_eq!(
        gs.status.as_ref().unwrap().last_applied_revision,
        Some(format!("main@sha1:{c3}")),
        "{}",
        server.log()
    );
    wait_for(
        "the renamed Schedule's old object gone",
        Duration::from_secs(30),
        || async {
            schedules
                .get_opt("nightly")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(schedules.get_opt("nightly-v2").await.unwrap().is_some());
    assert!(
        schedules.get_opt("manual").await.unwrap().is_some(),
        "a hand-made Schedule was pruned"
    );
    assert!(
        policies.get_opt("manual").await.unwrap().is_some(),
        "a hand-made BackupPolicy was pruned"
    );
    assert_eq!(
        inventory_ids(&gs),
        vec![
            "tidemark_apps_tidemark.dev_BackupPolicy",
            "tidemark_nightly-v2_tidemark.dev_Schedule"
        ]
    );

    // 4. Invalid: the GitSource and the object are Stalled, naming the field.
    let c4 = git_commit(
        &repo,
        &[(
            "clusters/prod/nightly-v2.yaml",
            Some(&schedule("nightly-v2", "0 4 * * *", "  cronn: nope\n")),
        )],
        "four: a typo",
    );
    let gs = reconcile_now(&sources, "platform", "4").await;
    let st = gs.status.clone().unwrap();
    assert_eq!(st.last_attempted_revision, Some(format!("main@sha1:{c4}")));
    assert_eq!(st.last_applied_revision, Some(format!("main@sha1:{c3}")));
    let stalled = condition(&gs, "Stalled").expect("GitSource Stalled");
    assert_eq!(stalled.status, "True");
    assert_eq!(stalled.reason, "InvalidManifest");
    assert!(
        stalled.message.contains("spec.cronn"),
        "{}",
        stalled.message
    );
    assert_eq!(
        kstatus(&serde_json::to_value(&gs).unwrap()),
        KStatus::Failed
    );
    let v2 = schedules.get("nightly-v2").await.unwrap();
    assert_eq!(
        v2.spec.schedule, "0 3 * * *",
        "the last applied spec is kept"
    );
    let conds = v2.status.clone().unwrap_or_default().conditions;
    let obj_stalled = conds
        .iter()
        .find(|c| c.type_ == "Stalled")
        .expect("object Stalled");
    assert_eq!(obj_stalled.reason, "InvalidManifest");
    assert!(
        obj_stalled.message.contains("spec.cronn"),
        "{}",
        obj_stalled.message
    );
    // The Schedule controller's own status writes keep it Stalled until Git is fixed: a
    // harmless spec change (a new generation) makes it reconcile and write its status.
    let generation = schedules
        .patch(
            "nightly-v2",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"skipImmediately": true}})),
        )
        .await
        .unwrap()
        .metadata
        .generation;
    let v2 = wait_for(
        "the Schedule controller to observe the new generation",
        Duration::from_secs(60),
        || async {
            let s = schedules.get("nightly-v2").await.ok()?;
            (s.status.as_ref()?.observed_generation == generation).then_some(s)
        },
    )
    .await;
    let conds = v2.status.clone().unwrap_or_default().conditions;
    assert!(
        conds
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True" && c.reason == "InvalidManifest"),
        "{conds:?}"
    );
    // Fixed.
    let c5 = git_commit(
        &repo,
        &[(
            "clusters/prod/nightly-v2.yaml",
            Some(&schedule("nightly-v2", "0 4 * * *", "")),
        )],
        "five: fixed",
    );
    let gs = reconcile_now(&sources, "platform", "5").await;
    assert_eq!(
        gs.status.as_ref().unwrap().last_applied_revision,
        Some(format!("main@sha1:{c5}"))
    );
    assert_eq!(condition(&gs, "Ready").unwrap().status, "True");
    assert!(condition(&gs, "Stalled").is_none_or(|c| c.status != "True"));
    let v2 = schedules.get("nightly-v2").await.unwrap();
    assert_eq!(v2.spec.schedule, "0 4 * * *");
    assert!(
        !v2.status
            .clone()
            .unwrap_or_default()
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.reason == "InvalidManifest"),
        "{:?}",
        v2.status
    );

    // 5. Credentials that are not there: Stalled, naming the field.
    sources
        .patch(
            "platform",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secretRef": {"name": "git-credentials"}}})),
        )
        .await
        .unwrap();
    let gs = reconcile_now(&sources, "platform", "6").await;
    let stalled = condition(&gs, "Stalled").expect("Stalled");
    assert!(
        stalled.message.contains("spec.secretRef"),
        "{}",
        stalled.message
    );
    assert!(
        stalled.message.contains("git-credentials"),
        "{}",
        stalled.message
    );
    spec_change(&sources, json!({"secretRef": null})).await;

    // 6. Suspended: a new revision waits.
    spec_change(&sources, json!({"suspend": true})).await;
    let c7 = git_commit(
        &repo,
        &[("clusters/prod/later.yaml", Some(&policy("later")))],
        "seven",
    );
    let gs = reconcile_now(&sources, "platform", "7").await;
    assert_eq!(
        gs.status.as_ref().unwrap().last_attempted_revision,
        Some(format!("main@sha1:{c5}"))
    );
    assert!(
        policies.get_opt("later").await.unwrap().is_none(),
        "applied while suspended"
    );
    sources
        .patch(
            "platform",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    wait_for(
        "the resumed GitSource applying the new revision",
        Duration::from_secs(90),
        || async {
            let g = sources.get("platform").await.ok()?;
            (g.status?.last_applied_revision? == format!("main@sha1:{c7}")).then_some(())
        },
    )
    .await;
    assert!(policies.get_opt("later").await.unwrap().is_some());
    assert!(schedules.get_opt("manual").await.unwrap().is_some());

    // 7. Deleted (prune: true): its finalizer prunes its inventory, and only that.
    let gs = sources.get("platform").await.unwrap();
    assert!(
        gs.finalizers()
            .iter()
            .any(|f| f == "tidemark.dev/gitsource-prune"),
        "{:?}",
        gs.metadata.finalizers
    );
    sources
        .delete("platform", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the GitSource gone", Duration::from_secs(60), || async {
        sources
            .get_opt("platform")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    for name in ["apps", "later"] {
        assert!(
            policies.get_opt(name).await.unwrap().is_none(),
            "{name} not pruned"
        );
    }
    assert!(schedules.get_opt("nightly-v2").await.unwrap().is_none());
    assert!(policies.get_opt("manual").await.unwrap().is_some());
    assert!(schedules.get_opt("manual").await.unwrap().is_some());
    drop(server);
}

/// `tidemark_reconcile_total{kind}` from the server's /metrics (0 before the first).
async fn reconciles(server: &Server, kind: &str) -> u64 {
    let body = reqwest::get(format!("http://127.0.0.1:{}/metrics", server.metrics_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("tidemark_reconcile_total{{kind=\"{kind}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0)
}

/// Makes a controller reconcile `kind`/`name` (a label change triggers it) and waits until a
/// reconcile of that kind started after the change (exact when `name` is the only object of
/// its kind).
async fn reconciled_after_touch<K>(api: &Api<K>, kind: &str, name: &str, server: &Server)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let before = reconciles(server, kind).await;
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"touched": before.to_string()}}})),
    )
    .await
    .unwrap();
    wait_for(
        &format!("a {kind} reconcile after touching {name}"),
        Duration::from_secs(60),
        || async { (reconciles(server, kind).await > before).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitsource_previews_a_branch_and_restores_a_merged_plan_once() {
    let cluster = Cluster::up(&unique("gitctl")).await;
    let minio = Minio::up(&unique("gitctl-minio"));
    let c = cluster.client.clone();
    apply_shipped_rbac(&c).await;
    let creds = minio.credentials_file();
    apply_docs(
        &c,
        &[
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
    let sa_kc = tmp.path().join("tidemark.kubeconfig");
    service_account_kubeconfig(&c, &cluster.kubeconfig, NS, "tidemark", &sa_kc).await;

    // The deprecated configuration file: a typo is refused at start-up, naming the field...
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
    // ...and a valid one still applies, with a deprecation line in the log.
    let config = tmp.path().join("config.yaml");
    let cache = tmp.path().join("cache");
    std::fs::write(
        &config,
        format!(
            "source:\n  kind: git\n  url: {repo_url}\n  ref: main\n  path: clusters/prod\n  \
             interval: 1h\n  cacheDir: {}\n",
            cache.display()
        ),
    )
    .unwrap();
    let mut legacy = Server::start(
        &cluster.kubeconfig,
        NS,
        &["--config", &config.to_string_lossy()],
    );
    let rev = wait_for(
        "the Location from the configuration file",
        Duration::from_secs(60),
        || async { revision_of(&c, "default").await },
    )
    .await;
    assert_eq!(rev, format!("main@sha1:{first}"), "{}", legacy.log());
    assert!(legacy.log().contains("deprecated"), "{}", legacy.log());
    legacy.kill();

    // A GitSource manifest run once from a shell (`tidemark reconcile --once -f`): the same
    // engine, its revision and inventory kept in a ConfigMap record.
    let manifest = tmp.path().join("gitsource.yaml");
    std::fs::write(
        &manifest,
        serde_yaml::to_string(&git_source("from-cli", &repo_url, "clusters/prod")).unwrap(),
    )
    .unwrap();
    let out = tidemark(
        &[
            "reconcile",
            "--once",
            "-f",
            &manifest.to_string_lossy(),
            "--cache-dir",
            &cache.to_string_lossy(),
        ],
        &[("KUBECONFIG", &kubeconfig)],
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("revision main@sha1:{first}: applied 1")),
        "{}",
        show(&out)
    );
    let id = tidemark::source::stable_id(&["gitsource", NS, "from-cli"]);
    let records: Api<ConfigMap> = Api::namespaced(c.clone(), NS);
    let record = records.get(&format!("tidemark-gitops-{id}")).await.unwrap();
    let data = record.data.unwrap_or_default();
    assert_eq!(data["revision"], format!("main@sha1:{first}"));
    assert!(
        data["inventory"].contains("tidemark_default_tidemark.dev_Location"),
        "{data:?}"
    );

    // The GitSource, under the shipped RBAC.
    let server = Server::start(&sa_kc, NS, &[]);
    let sources: Api<GitSource> = Api::namespaced(c.clone(), NS);
    apply_docs(&c, &[git_source("platform", &repo_url, "clusters/prod")]).await;
    wait_for("the GitSource Ready", Duration::from_secs(90), || async {
        let g = sources.get("platform").await.ok()?;
        (g.status.as_ref()?.last_applied_revision.as_deref()? == format!("main@sha1:{first}"))
            .then_some(())
    })
    .await;
    let locations: Api<Location> = Api::namespaced(c.clone(), NS);
    wait_for("the Location Ready", Duration::from_secs(60), || async {
        let l = locations.get("default").await.ok()?;
        let v = serde_json::to_value(&l).unwrap();
        (kstatus(&v) == KStatus::Current).then_some(())
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
    // Unmerged: the controller, following `main`, handled a reconcile and applied nothing.
    let gs = reconcile_now(&sources, "platform", "1").await;
    assert_eq!(
        gs.status.unwrap().last_attempted_revision,
        Some(format!("main@sha1:{first}"))
    );
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
    let gs = reconcile_now(&sources, "platform", "2").await;
    assert_eq!(
        gs.status.unwrap().last_applied_revision,
        Some(format!("main@sha1:{merged}")),
        "{}",
        server.log()
    );
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
    // not run again, even once the RestorePlan controller has seen the new revision.
    cms.delete("extra", &DeleteParams::default()).await.unwrap();
    let later = git_commit(
        &repo,
        &[("clusters/prod/README.md", Some("prod\n"))],
        "docs",
    );
    let gs = reconcile_now(&sources, "platform", "3").await;
    assert_eq!(
        gs.status.unwrap().last_applied_revision,
        Some(format!("main@sha1:{later}"))
    );
    reconciled_after_touch(&plans, "RestorePlan", "restore-app", &server).await;
    assert_eq!(plan_restores(&c).await.len(), 1, "{}", server.log());
    assert!(cms.get_opt("extra").await.unwrap().is_none());
    let p = plans.get("restore-app").await.unwrap();
    assert_eq!(
        p.annotations().get("tidemark.dev/revision"),
        Some(&format!("main@sha1:{later}"))
    );
    assert_eq!(p.status.unwrap().restore_name, done.restore_name);
}
