//! Permanent API failures said on the object (issue 15): a controller under the shipped RBAC,
//! forbidden a request its reconcile needs, makes the object `Stalled` with the API server's
//! reason and message, and clears it once the reconcile succeeds again. Its own test binary: it
//! changes the shipped RBAC of its cluster while the controller runs.

mod support;

use std::time::Duration;

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::*;
use tidemark::api::conditions::{KStatus, kstatus};
use tidemark::api::tidemark::{Backup, Schedule};

const NS: &str = "tidemark";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_api_failures_make_the_object_stalled() {
    use k8s_openapi::api::rbac::v1::Role;
    let cluster = Cluster::up(&unique("ctl-stalled")).await;
    let minio = Minio::up(&unique("ctl-stalled"));
    let c = cluster.client.clone();
    apply_shipped_rbac(&c).await;
    setup(&c, &minio, "stalled", false).await;
    let roles: Api<Role> = Api::namespaced(c.clone(), NS);
    let original = roles.get("tidemark-controller").await.unwrap();
    let mut reduced = original.clone();
    for rule in reduced.rules.iter_mut().flatten() {
        if rule.resources.iter().flatten().any(|r| r == "backups") {
            rule.verbs.retain(|v| v != "create");
        }
    }
    roles
        .replace("tidemark-controller", &PostParams::default(), &reduced)
        .await
        .unwrap();
    // The restore role may create any kind (restores do): unbound meanwhile.
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let bindings: Api<ClusterRoleBinding> = Api::all(c.clone());
    let restore_binding = bindings.get("tidemark-restore").await.unwrap();
    bindings
        .delete("tidemark-restore", &DeleteParams::default())
        .await
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let sa_kc = work.path().join("tidemark.kubeconfig");
    service_account_kubeconfig(&c, &cluster.kubeconfig, NS, "tidemark", &sa_kc).await;
    let server = Server::start(&sa_kc, NS, &[]);
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "app", "namespace": NS},
                   "spec": {"template": {"includedNamespaces": ["app"]}}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Schedule", "metadata": {"name": "blocked", "namespace": NS},
                   "spec": {"schedule": "0 * * * *", "policy": "app"}}),
        ],
    )
    .await;
    let schedules: Api<Schedule> = Api::namespaced(c.clone(), NS);
    let stalled = |s: &Schedule| -> Option<Value> {
        let v = serde_json::to_value(s).ok()?;
        v["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Stalled" && c["status"] == "True")
            .cloned()
    };
    let condition = wait_for(
        "the Schedule Stalled by a forbidden create",
        Duration::from_secs(90),
        || async { stalled(&schedules.get("blocked").await.ok()?) },
    )
    .await;
    assert_eq!(condition["reason"], "Forbidden", "{condition}");
    assert!(
        condition["message"].as_str().unwrap().contains("forbidden"),
        "{condition}"
    );
    // kstatus (what Flux's health checks compute) says Failed.
    let s = schedules.get("blocked").await.unwrap();
    assert_eq!(kstatus(&serde_json::to_value(&s).unwrap()), KStatus::Failed);

    // The permission back, and a change to the Schedule: reconciled, the condition removed.
    let mut back = roles.get("tidemark-controller").await.unwrap();
    back.rules = original.rules.clone();
    roles
        .replace("tidemark-controller", &PostParams::default(), &back)
        .await
        .unwrap();
    let mut binding = restore_binding.clone();
    binding.metadata.resource_version = None;
    binding.metadata.uid = None;
    binding.metadata.creation_timestamp = None;
    binding.metadata.managed_fields = None;
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    schedules
        .patch(
            "blocked",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"schedule": "30 * * * *"}})),
        )
        .await
        .unwrap();
    let backups: Api<Backup> = Api::namespaced(c.clone(), NS);
    wait_for(
        "the Schedule's backup started and Stalled gone",
        Duration::from_secs(90),
        || async {
            let s = schedules.get("blocked").await.ok()?;
            let started = !schedule_backups(&backups, "blocked").await.is_empty();
            (started && stalled(&s).is_none()).then_some(())
        },
    )
    .await;
    drop(server);
}
