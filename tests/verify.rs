//! `tidemark backup verify` — a restore drill against the real API server: a backup's
//! namespaces restored into `drill-<ns>` by the restore engine, every object compared with the
//! archive, the scratch namespaces deleted; a backup holding an object the cluster's admission
//! refuses (a real ValidatingAdmissionPolicy) is reported NOT verified, naming that object.
//! Drills into a second cluster: from the CLI (`--into-kubeconfig`) and from the controller
//! (`spec.verify.kubeconfigSecretRef`, under the shipped RBAC), with the restored objects seen
//! in that cluster and never in the first, and a Secret that cannot be used reported by name.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use serde_json::json;
use support::*;

/// Waits (up to a minute) until namespace `name` is gone.
async fn namespace_gone(namespaces: &Api<Namespace>, name: &str) {
    wait_for(
        &format!("namespace {name} gone"),
        Duration::from_secs(60),
        || async { namespaces.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_verify_a_backup_and_name_what_does_not_come_back() {
    let cluster = Cluster::up(&unique("verify")).await;
    let client = cluster.client.clone();
    apply_docs(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"}, "data": {"mode": "blue"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"}, "stringData": {"password": "x"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "shop-api", "namespace": "shop"}}),
        ],
    )
    .await;
    let location = tempfile::tempdir().unwrap();
    let url = format!("file://{}", location.path().display());
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let env = [("KUBECONFIG", kc.as_str())];
    let out = tidemark(
        &[
            "backup",
            "create",
            "clean",
            "--include-namespaces",
            "shop",
            "--location",
            &url,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));

    let out = tidemark(&["backup", "verify", "clean", "--location", &url], &env);
    let said = show(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Backup \"clean\" verified:"), "{said}");
    assert!(
        said.contains("scratch namespaces drill-shop, deleted"),
        "{said}"
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespace_gone(&namespaces, "drill-shop").await;
    // The source namespace was never touched.
    assert!(namespaces.get_opt("shop").await.unwrap().is_some());

    // An object the cluster refuses in drill namespaces (as another cluster's admission
    // might): the drill says which.
    apply_docs(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "blocked", "namespace": "shop"}, "data": {"k": "v"}}),
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
                   "metadata": {"name": "no-blocked-in-drills"},
                   "spec": {"failurePolicy": "Fail",
                            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                                    "operations": ["CREATE"], "resources": ["configmaps"]}]},
                            "validations": [{"expression": "!(object.metadata.name == 'blocked' && request.namespace.startsWith('drill-'))",
                                             "message": "blocked in drill namespaces"}]}}),
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
                   "metadata": {"name": "no-blocked-in-drills"},
                   "spec": {"policyName": "no-blocked-in-drills", "validationActions": ["Deny"]}}),
        ],
    )
    .await;
    let out = tidemark(
        &[
            "backup",
            "create",
            "flawed",
            "--include-namespaces",
            "shop",
            "--location",
            &url,
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    // The policy takes effect asynchronously: the drill is retried until the refusal shows.
    let said = wait_for(
        "the drill to meet the admission policy",
        Duration::from_secs(60),
        || {
            let url = url.clone();
            async move {
                let out = tidemark(&["backup", "verify", "flawed", "--location", &url], &env);
                (out.status.code() == Some(2)).then(|| show(&out))
            }
        },
    )
    .await;
    assert!(said.contains("Backup \"flawed\" NOT verified:"), "{said}");
    assert!(
        said.contains("1 missing (configmaps drill-shop/blocked)"),
        "{said}"
    );
    assert!(
        said.contains("Missing:\n  configmaps drill-shop/blocked"),
        "{said}"
    );
    namespace_gone(&namespaces, "drill-shop").await;
}

/// The controller's drill: a Backup with `spec.verify` is restored into scratch namespaces once
/// it completes; the result is its `Verified` condition, `status.verification` and a metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_with_verify_gets_a_verified_condition() {
    let cluster = Cluster::up(&unique("verify-ctl")).await;
    let client = cluster.client.clone();
    install_crds(&client).await;
    let location = tempfile::tempdir().unwrap();
    apply_docs(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tidemark"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"}, "data": {"mode": "blue"}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location", "metadata": {"name": "default", "namespace": "tidemark"},
                   "spec": {"provider": "filesystem", "bucket": location.path().to_str().unwrap(), "default": true}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "proven", "namespace": "tidemark"},
                   "spec": {"template": {"includedNamespaces": ["shop"]}, "verify": {"namespacePrefix": "ctl-drill-"}}}),
        ],
    )
    .await;
    let server = Server::start(&cluster.kubeconfig, "tidemark", &[]);
    let backups: Api<tidemark::api::tidemark::Backup> = Api::namespaced(client.clone(), "tidemark");
    let b = wait_for(
        "the Verified condition",
        Duration::from_secs(120),
        || async {
            let b = backups.get("proven").await.ok()?;
            let st = b.status.clone()?;
            st.conditions
                .iter()
                .any(|c| c.type_ == "Verified")
                .then_some(b)
        },
    )
    .await;
    let st = b.status.unwrap();
    let verified = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Verified")
        .unwrap();
    assert_eq!(verified.status, "True", "{verified:?}\n{}", server.log());
    assert_eq!(st.phase.as_deref(), Some("Completed"));
    let v = st.verification.expect("status.verification");
    assert!(v.verified && v.equal >= 2, "{v:?}");
    assert!(v.missing.is_empty() && v.different.is_empty());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespace_gone(&namespaces, "ctl-drill-shop").await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", server.metrics_port))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tidemark_backup_verification_total{result=\"verified\",schedule=\"\"} 1"),
        "{metrics}"
    );
}

/// Applies a namespace `shop` with a few objects of different kinds to `client`.
async fn shop(client: &kube::Client) {
    apply_docs(
        client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"}, "data": {"mode": "blue"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"}, "stringData": {"password": "x"}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "shop-api", "namespace": "shop"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"},
                   "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
        ],
    )
    .await;
}

/// Names of the namespaces of `client`'s cluster that start with `prefix`.
async fn namespaces_starting(client: &kube::Client, prefix: &str) -> Vec<String> {
    let api: Api<Namespace> = Api::all(client.clone());
    api.list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// `tidemark backup verify --into-kubeconfig`: the drill restores into the cluster that file
/// describes (objects there with --keep, none in the backup's own cluster), the current
/// kubeconfig is not even read, an empty prefix is allowed there (and with `--into-context`)
/// but not onto a namespace that cluster already has, and refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drills_into_another_cluster() {
    let a = Cluster::up(&unique("verify-into-a")).await;
    let b = Cluster::up(&unique("verify-into-b")).await;
    shop(&a.client).await;
    let location = tempfile::tempdir().unwrap();
    let url = format!("file://{}", location.path().display());
    let a_kc = a.kubeconfig.to_str().unwrap().to_string();
    let out = tidemark(
        &[
            "backup",
            "create",
            "shop",
            "--include-namespaces",
            "shop",
            "--location",
            &url,
        ],
        &[("KUBECONFIG", a_kc.as_str())],
    );
    assert!(out.status.success(), "{}", show(&out));

    // The current kubeconfig names no usable cluster: only the drill cluster is talked to.
    let nowhere = [("KUBECONFIG", "/nonexistent/kubeconfig")];
    let b_kc = b.kubeconfig.to_str().unwrap();
    let out = tidemark(
        &[
            "backup",
            "verify",
            "shop",
            "--location",
            &url,
            "--into-kubeconfig",
            b_kc,
            "--keep",
        ],
        &nowhere,
    );
    let said = show(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("Backup \"shop\" verified:"), "{said}");
    assert!(
        said.contains("scratch namespaces drill-shop, kept"),
        "{said}"
    );
    assert!(
        said.contains(&format!("The drill ran in the cluster of {b_kc}.")),
        "{said}"
    );
    // Kept: the objects are in cluster B's scratch namespace...
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(b.client.clone(), "drill-shop");
    let settings = cms.get("settings").await.expect("drill-shop/settings in B");
    assert_eq!(
        settings.data.unwrap().get("mode").map(String::as_str),
        Some("blue")
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(b.client.clone(), "drill-shop");
    assert!(secrets.get_opt("db").await.unwrap().is_some());
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
        Api::namespaced(b.client.clone(), "drill-shop");
    assert!(deployments.get_opt("web").await.unwrap().is_some());
    // ...and cluster A has no drill namespace at all.
    assert_eq!(
        namespaces_starting(&a.client, "drill-").await,
        Vec::<String>::new()
    );

    // In another cluster the prefix may be empty: the backup's own namespace names, there.
    let context = format!("tidemark-{}", b.name);
    let out = tidemark(
        &[
            "backup",
            "verify",
            "shop",
            "--location",
            &url,
            "--into-kubeconfig",
            b_kc,
            "--into-context",
            &context,
            "--namespace-prefix",
            "",
        ],
        &nowhere,
    );
    let said = show(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("scratch namespaces shop, deleted"), "{said}");
    let b_namespaces: Api<Namespace> = Api::all(b.client.clone());
    namespace_gone(&b_namespaces, "shop").await;
    // ...but never into a namespace the drill cluster already has (it would be deleted after).
    apply_docs(
        &b.client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "standby", "namespace": "shop"}}),
        ],
    )
    .await;
    let out = tidemark(
        &[
            "backup",
            "verify",
            "shop",
            "--location",
            &url,
            "--into-kubeconfig",
            b_kc,
            "--namespace-prefix",
            "",
        ],
        &nowhere,
    );
    let said = show(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("namespace shop already exists in the drill cluster"),
        "{said}"
    );
    let standby: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(b.client.clone(), "shop");
    assert!(standby.get_opt("standby").await.unwrap().is_some());
    assert!(standby.get_opt("settings").await.unwrap().is_none());

    // Here it may not: it would restore over the live namespace.
    let out = tidemark(
        &[
            "backup",
            "verify",
            "shop",
            "--location",
            &url,
            "--namespace-prefix",
            "",
        ],
        &[("KUBECONFIG", a_kc.as_str())],
    );
    let said = show(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("--namespace-prefix"), "{said}");
    assert!(
        said.contains("only for a drill in another cluster"),
        "{said}"
    );
    let live: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(a.client.clone(), "shop");
    let live = live.get("settings").await.unwrap();
    assert!(
        !live
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("velero.io/restore-name"),
        "the live object was restored over"
    );
}

/// The controller drills `spec.verify.kubeconfigSecretRef`'s cluster under the shipped RBAC:
/// Verified=True with counts, the objects restored there (empty prefix: under their own
/// namespace names) and deleted again, the controller's cluster untouched; a missing key and a
/// value that is no kubeconfig are Verified=False naming the Secret and key, never quoting it;
/// an empty prefix without a kubeconfig is refused by the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_drills_into_the_cluster_of_a_kubeconfig_secret() {
    let a = Cluster::up(&unique("verify-sec-a")).await;
    let b = Cluster::up(&unique("verify-sec-b")).await;
    apply_shipped_rbac(&a.client).await;
    shop(&a.client).await;
    let location = tempfile::tempdir().unwrap();
    let garbage = "not: [a kubeconfig";
    apply_docs(
        &a.client,
        &[
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "drill-cluster", "namespace": "tidemark"},
                   "stringData": {"kubeconfig": std::fs::read_to_string(&b.kubeconfig).unwrap()}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "broken", "namespace": "tidemark"},
                   "stringData": {"kubeconfig": garbage}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location", "metadata": {"name": "default", "namespace": "tidemark"},
                   "spec": {"provider": "filesystem", "bucket": location.path().to_str().unwrap(), "default": true}}),
        ],
    )
    .await;
    let backups: Api<tidemark::api::tidemark::Backup> =
        Api::namespaced(a.client.clone(), "tidemark");
    let backup = |name: &str, verify: serde_json::Value| -> tidemark::api::tidemark::Backup {
        serde_json::from_value(
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup",
            "metadata": {"name": name, "namespace": "tidemark"},
            "spec": {"template": {"includedNamespaces": ["shop"]}, "verify": verify}}),
        )
        .unwrap()
    };
    // An empty prefix in the controller's own cluster is refused before anything runs.
    let refused = backups
        .create(
            &Default::default(),
            &backup("over-live", json!({"namespacePrefix": ""})),
        )
        .await
        .expect_err("an empty prefix without a kubeconfig");
    assert!(
        refused.to_string().contains("spec.verify.namespacePrefix"),
        "{refused}"
    );

    let work = tempfile::tempdir().unwrap();
    let sa_kc = work.path().join("tidemark.kubeconfig");
    service_account_kubeconfig(&a.client, &a.kubeconfig, "tidemark", "tidemark", &sa_kc).await;
    let server = Server::start(&sa_kc, "tidemark", &[]);
    for (name, verify) in [
        (
            "proven",
            json!({"namespacePrefix": "", "kubeconfigSecretRef": {"name": "drill-cluster", "key": "kubeconfig"}}),
        ),
        (
            "misaimed",
            json!({"kubeconfigSecretRef": {"name": "drill-cluster", "key": "kube-config"}}),
        ),
        (
            "garbled",
            json!({"kubeconfigSecretRef": {"name": "broken", "key": "kubeconfig"}}),
        ),
    ] {
        backups
            .create(&Default::default(), &backup(name, verify))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
    }
    let verified = |name: &'static str| {
        let backups = backups.clone();
        async move {
            wait_for(
                &format!("the Verified condition of {name}"),
                Duration::from_secs(120),
                || async {
                    let b = backups.get(name).await.ok()?;
                    let c = b
                        .status
                        .as_ref()?
                        .conditions
                        .iter()
                        .find(|c| c.type_ == "Verified")?
                        .clone();
                    Some((b, c))
                },
            )
            .await
        }
    };

    let (proven, c) = verified("proven").await;
    assert_eq!(c.status, "True", "{c:?}\n{}", server.log());
    assert_eq!(c.reason, "RestoreDrill");
    assert!(
        c.message
            .contains("(in the cluster of Secret tidemark/drill-cluster key \"kubeconfig\")"),
        "{c:?}"
    );
    let st = proven.status.unwrap();
    assert_eq!(st.phase.as_deref(), Some("Completed"));
    let v = st.verification.expect("status.verification");
    assert!(v.verified && v.equal >= 4, "{v:?}");
    // The scratch namespace (here `shop` itself) was made and deleted in cluster B...
    let b_namespaces: Api<Namespace> = Api::all(b.client.clone());
    namespace_gone(&b_namespaces, "shop").await;
    // ...while cluster A's live `shop` was never restored over.
    let live: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(a.client.clone(), "shop");
    let live = live.get("settings").await.unwrap();
    assert!(
        !live
            .metadata
            .labels
            .unwrap_or_default()
            .contains_key("velero.io/restore-name"),
        "the live object was restored over"
    );

    let (_, c) = verified("misaimed").await;
    assert_eq!(c.status, "False", "{c:?}");
    assert_eq!(c.reason, "DrillClusterUnavailable");
    assert!(
        c.message.contains("spec.verify.kubeconfigSecretRef")
            && c.message
                .contains("Secret tidemark/drill-cluster has no key \"kube-config\""),
        "{c:?}"
    );

    let (_, c) = verified("garbled").await;
    assert_eq!(c.status, "False", "{c:?}");
    assert_eq!(c.reason, "DrillClusterUnavailable");
    assert!(
        c.message
            .contains("Secret tidemark/broken key \"kubeconfig\": kubeconfig: not a kubeconfig"),
        "{c:?}"
    );
    assert!(
        !c.message.contains(garbage),
        "the Secret's value is quoted: {c:?}"
    );
    drop(server);
}
