//! `tidemark install` / `uninstall` on a real cluster, and the embedded manifests kept equal to
//! `kubectl kustomize kustomize/base`.

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_applies_the_base_and_uninstall_removes_it() {
    let cluster = Cluster::up(&unique("install")).await;
    // The embedded manifests are the rendered base.
    let rendered = std::process::Command::new(testenv_kubectl())
        .args(["kustomize", repo().join("kustomize/base").to_str().unwrap()])
        .output()
        .expect("kubectl kustomize");
    assert!(
        rendered.status.success(),
        "{}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let on_disk = std::fs::read_to_string(repo().join("kustomize/install.yaml")).unwrap();
    assert!(
        String::from_utf8_lossy(&rendered.stdout) == on_disk,
        "kustomize/install.yaml is stale: run `kubectl kustomize kustomize/base > kustomize/install.yaml`"
    );

    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let env = [("KUBECONFIG", kc.as_str())];
    let out = tidemark(
        &["install", "--namespace", "backup-system", "--dry-run"],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("namespace: backup-system"));
    let out = tidemark(
        &[
            "install",
            "--namespace",
            "backup-system",
            "--image",
            "registry.local/tidemark:test",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    let deps: Api<Deployment> = Api::namespaced(cluster.client.clone(), "backup-system");
    let d = deps.get("tidemark").await.unwrap();
    assert_eq!(
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("registry.local/tidemark:test")
    );
    let crbs: Api<ClusterRoleBinding> = Api::all(cluster.client.clone());
    let bound: Vec<_> = crbs
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|b| {
            b.subjects
                .iter()
                .flatten()
                .any(|s| s.namespace.as_deref() == Some("backup-system"))
        })
        .collect();
    assert!(
        !bound.is_empty(),
        "cluster role bindings must point at the chosen namespace"
    );
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    assert!(
        crds.get_opt("schedules.tidemark.dev")
            .await
            .unwrap()
            .is_some()
    );
    // Installing again is idempotent (server-side apply).
    let out = tidemark(
        &[
            "install",
            "--namespace",
            "backup-system",
            "--image",
            "registry.local/tidemark:test",
        ],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));

    let out = tidemark(&["uninstall", "--namespace", "backup-system"], &env);
    assert_eq!(
        out.status.code(),
        Some(1),
        "uninstall without --confirm must refuse"
    );
    let out = tidemark(
        &["uninstall", "--namespace", "backup-system", "--confirm"],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(deps.get_opt("tidemark").await.unwrap().is_none());
    wait_for(
        "CRDs removed",
        std::time::Duration::from_secs(30),
        || async {
            crds.get_opt("schedules.tidemark.dev")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
}
