//! A restore under the API server's own protection: API Priority and Fairness.
//!
//! Real components only: a real kube-apiserver + etcd (`scripts/testenv`), the `tidemark` binary
//! in direct mode with no flags about speed, and the server's APF configured by the test (a
//! FlowSchema sending tidemark's ServiceAccount to a PriorityLevelConfiguration of the smallest
//! share, no borrowing, rejecting what does not fit). tidemark runs with that ServiceAccount's
//! token (TokenRequest) and a ClusterRole holding only what the restore calls.
//!
//! Proves: tidemark detects APF and sets no client-side cap; the API server answers 429 (its
//! `apiserver_flowcontrol_rejected_requests_total` for the level grows); tidemark backs off,
//! retries and shrinks its creates in flight, and the restore completes with every object
//! created; the API server's other clients keep being served meanwhile.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use support::{Cluster, service_account_kubeconfig, show, unique};

const SA_NAMESPACE: &str = "tidemark-apf";
const SA: &str = "restorer";
const LEVEL: &str = "tidemark-test-tight";
const OBJECTS: usize = 600;

/// Server-side applies `doc` (any kind) as the test's field manager.
async fn apply(client: &Client, doc: serde_json::Value) {
    let obj: DynamicObject = serde_json::from_value(doc).unwrap();
    let gvk = kube::api::GroupVersionKind::try_from(obj.types.as_ref().unwrap()).unwrap();
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
    let api: Api<DynamicObject> = match (&obj.metadata.namespace, caps.scope) {
        (Some(ns), kube::discovery::Scope::Namespaced) => {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        _ => Api::all_with(client.clone(), &ar),
    };
    let name = obj.metadata.name.clone().unwrap();
    api.patch(
        &name,
        &PatchParams::apply("tidemark-test").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// The ServiceAccount, its ClusterRole (what a restore of ConfigMaps calls) and the APF objects.
async fn set_up_identity_and_flow_control(client: &Client) {
    for doc in [
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SA_NAMESPACE}}),
        json!({"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": {"name": SA, "namespace": SA_NAMESPACE}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": "tidemark-test-restorer"},
               "rules": [
                   {"apiGroups": [""], "resources": ["namespaces"],
                    "verbs": ["get", "list", "create"]},
                   {"apiGroups": [""], "resources": ["configmaps", "serviceaccounts"],
                    "verbs": ["get", "list", "create", "patch"]},
                   {"apiGroups": ["apiextensions.k8s.io"],
                    "resources": ["customresourcedefinitions"], "verbs": ["get", "list"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "tidemark-test-restorer"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "tidemark-test-restorer"},
               "subjects": [{"kind": "ServiceAccount", "name": SA,
                             "namespace": SA_NAMESPACE}]}),
        // The smallest share of the server's concurrency (a few seats), nothing borrowed, and
        // requests that do not fit rejected at once with 429.
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1",
               "kind": "PriorityLevelConfiguration", "metadata": {"name": LEVEL},
               "spec": {"type": "Limited", "limited": {
                   "nominalConcurrencyShares": 1, "lendablePercent": 0,
                   "borrowingLimitPercent": 0, "limitResponse": {"type": "Reject"}}}}),
        json!({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
               "metadata": {"name": "tidemark-test-restorer"},
               "spec": {"matchingPrecedence": 100,
                        "priorityLevelConfiguration": {"name": LEVEL},
                        "distinguisherMethod": {"type": "ByUser"},
                        "rules": [{
                            "subjects": [{"kind": "ServiceAccount", "serviceAccount":
                                {"name": SA, "namespace": SA_NAMESPACE}}],
                            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"],
                                "resources": ["*"], "namespaces": ["*"],
                                "clusterScope": true}],
                            "nonResourceRules": [{"verbs": ["*"],
                                "nonResourceURLs": ["*"]}]}]}}),
    ] {
        apply(client, doc).await;
    }
}

/// The client of `kubeconfig`.
async fn client_of(kubeconfig: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

/// The UID of the priority level the server put a request of `client` in (APF's response
/// header), `None` while the request is not classified there.
async fn priority_level_of(client: &Client) -> Option<String> {
    let req = http::Request::get("/api/v1/namespaces/default/configmaps?limit=1")
        .body(kube::client::Body::empty())
        .unwrap();
    let res = client.send(req).await.ok()?;
    res.headers()
        .get(tidemark::cluster::APF_PRIORITY_LEVEL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `apiserver_flowcontrol_rejected_requests_total` summed over `level`'s series.
async fn rejected(client: &Client, level: &str) -> f64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(req).await.unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_flowcontrol_rejected_requests_total{")
                && l.contains(&format!("priority_level=\"{level}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_backs_off_under_api_priority_and_fairness_and_completes() {
    let cluster = Cluster::up(&unique("apf")).await;
    let admin = &cluster.client;
    let dir = tempfile::tempdir().unwrap();
    let location = format!("file://{}", dir.path().join("location").display());
    std::fs::create_dir_all(dir.path().join("location")).unwrap();
    let admin_kc = cluster.kubeconfig.display().to_string();

    // The workload, backed up as admin (no throttling involved).
    apply(
        admin,
        json!({"apiVersion": "v1", "kind": "Namespace",
                        "metadata": {"name": "apf-src"}}),
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "apf-src");
    for i in 0..OBJECTS {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": format!("cm-{i}")},
            "data": {"value": "x".repeat(512 + i % 512)}
        }))
        .unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let out = support::tidemark(
        &[
            "backup",
            "create",
            "b1",
            "--include-namespaces",
            "apf-src",
            "--location",
            &location,
        ],
        &[("KUBECONFIG", admin_kc.as_str())],
    );
    assert!(out.status.success(), "backup: {}", show(&out));

    // tidemark's identity, throttled hard by APF.
    set_up_identity_and_flow_control(admin).await;
    let sa_kc = dir.path().join("restorer.kubeconfig");
    service_account_kubeconfig(admin, &cluster.kubeconfig, SA_NAMESPACE, SA, &sa_kc).await;
    let restorer = client_of(&sa_kc).await;
    let plcs: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk(
                "flowcontrol.apiserver.k8s.io",
                "v1",
                "PriorityLevelConfiguration",
            ),
            "prioritylevelconfigurations",
        ),
    );
    let level_uid = plcs.get(LEVEL).await.unwrap().metadata.uid.unwrap();
    support::wait_for(
        "the API server to classify the ServiceAccount's requests into the test's level",
        Duration::from_secs(30),
        || async {
            (priority_level_of(&restorer).await.as_deref() == Some(&level_uid)).then_some(())
        },
    )
    .await;
    let rejected_before = rejected(admin, LEVEL).await;

    // The restore, with no flags about speed, while another client keeps using the server.
    let sa_kc_s = sa_kc.display().to_string();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args([
            "restore",
            "create",
            "r1",
            "--from-backup",
            "b1",
            "--namespace-mappings",
            "apf-src:apf-dst",
            "--location",
            &location,
        ])
        .env("KUBECONFIG", &sa_kc_s)
        .env("TIDEMARK_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let read_out = tokio::spawn(async move {
        let mut s = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::BufReader::new(stdout), &mut s)
            .await
            .unwrap();
        s
    });
    let read_err = tokio::spawn(async move {
        let mut s = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tokio::io::BufReader::new(stderr), &mut s)
            .await
            .unwrap();
        s
    });
    let started = Instant::now();
    let mut other_ok = 0u32;
    let mut other_slowest = Duration::ZERO;
    let all_ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    // Another client (the admin, not throttled by the test's level) keeps listing, one request
    // after the other, until the restore's process exits.
    let other_client = async {
        loop {
            let t = Instant::now();
            all_ns
                .list(&ListParams::default().limit(1))
                .await
                .expect("another client of the API server is refused during the restore");
            other_slowest = other_slowest.max(t.elapsed());
            other_ok += 1;
        }
    };
    let status = tokio::select! {
        status = tokio::time::timeout(Duration::from_secs(300), child.wait()) => status
            .expect("the restore did not finish in 5 minutes")
            .unwrap(),
        () = other_client => unreachable!("the other client's loop never ends"),
    };
    let took = started.elapsed();
    let stdout = read_out.await.unwrap();
    let stderr = read_err.await.unwrap();
    let both = format!("exit {status:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(status.success(), "restore: {both}");
    assert!(stdout.contains("Completed"), "restore: {both}");

    // The server did throttle it, and tidemark saw and honoured that.
    let rejected_during = rejected(admin, LEVEL).await - rejected_before;
    assert!(
        rejected_during > 0.0,
        "the API server rejected none of the restore's requests: the test proves nothing\n{both}"
    );
    assert!(
        stderr.contains("Priority and Fairness"),
        "no client-side cap expected where the server has APF:\n{stderr}"
    );
    let pacing = stderr
        .lines()
        .find(|l| l.contains("Creates in flight: peaked"))
        .unwrap_or_else(|| panic!("no pacing line in the log:\n{stderr}"));
    assert!(
        !pacing.contains("throttled 0 requests"),
        "tidemark did not see the 429s: {pacing}"
    );

    // Every object is there.
    let restored: Api<ConfigMap> = Api::namespaced(admin.clone(), "apf-dst");
    let names: std::collections::BTreeSet<String> = restored
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .filter(|n| n.starts_with("cm-"))
        .collect();
    assert_eq!(names.len(), OBJECTS, "restored ConfigMaps");

    // The other client was served throughout.
    assert!(other_ok > 0, "the other client made no request");
    assert!(
        other_slowest < Duration::from_secs(5),
        "another client waited {other_slowest:?} for a LIST during the restore"
    );
    eprintln!(
        "restore of {OBJECTS} objects under APF: {took:?}, {rejected_during} requests rejected \
         by the server; {pacing}; other client: {other_ok} LISTs, slowest {other_slowest:?}"
    );
}
