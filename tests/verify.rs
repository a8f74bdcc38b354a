//! `tidemark backup verify` — a restore drill against the real API server: a backup's
//! namespaces restored into `drill-<ns>` by the restore engine, every object compared with the
//! archive, the scratch namespaces deleted; a backup holding an object the cluster's admission
//! refuses (a real ValidatingAdmissionPolicy) is reported NOT verified, naming that object.

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
