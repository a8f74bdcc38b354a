//! The in-cluster reconciler on real clusters and MinIO (issue 5): `tidemark server` runs as a
//! process against a test cluster, reads Locations, BackupPolicies, Schedules and RestorePlans,
//! and converges: scheduled backups run and stop when paused, TTLs remove folders and records,
//! sync brings records back, a read-only second cluster restores without writing, a RestorePlan
//! restores once, a killed controller leaves a Failed record and no half backup, invalid objects
//! end Stalled naming the field, and kstatus judges every kind.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use object_store::ObjectStore;
use serde_json::{Value, json};
use support::*;
use tidemark::api::conditions::{KStatus, kstatus};
use tidemark::api::tidemark::{Backup, BackupPolicy, Location, Restore, RestorePlan, Schedule};

const NS: &str = "tidemark";

/// Every object key under `prefix` with its ETag.
async fn objects(minio: &Minio, prefix: &str) -> BTreeSet<String> {
    let s = minio.object_store();
    let p = object_store::path::Path::from(prefix);
    s.list(Some(&p))
        .map(|m| {
            let m = m.unwrap();
            format!("{} {:?}", m.location, m.e_tag)
        })
        .collect()
        .await
}

async fn exists(minio: &Minio, key: &str) -> bool {
    use object_store::ObjectStoreExt;
    minio
        .object_store()
        .head(&object_store::path::Path::from(key))
        .await
        .is_ok()
}

fn phase_of<K: serde::Serialize>(o: &K) -> Option<String> {
    serde_json::to_value(o)
        .ok()?
        .pointer("/status/phase")?
        .as_str()
        .map(str::to_string)
}

fn json_of<K: serde::Serialize>(o: &K) -> Value {
    serde_json::to_value(o).unwrap()
}

fn condition(v: &Value, t: &str) -> Option<(String, String, String)> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_pause_ttl_and_sync() {
    let cluster = Cluster::up(&unique("ctl-a")).await;
    let minio = Minio::up(&unique("ctl-minio"));
    let c = cluster.client.clone();
    setup(&c, &minio, "ctl", false).await;
    let server = Server::start(&cluster.kubeconfig, NS, &[]);
    let locations: Api<Location> = Api::namespaced(c.clone(), NS);
    wait_for("Location Available", Duration::from_secs(60), || async {
        let l = locations.get("default").await.ok()?;
        (phase_of(&l).as_deref() == Some("Available")).then_some(())
    })
    .await;

    apply_docs(
        &c,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "app", "namespace": NS},
                   "spec": {"template": {"includedNamespaces": ["app"], "ttl": "2m"}}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Schedule",
                   "metadata": {"name": "every-minute", "namespace": NS,
                                "labels": {"team": "ops", "kustomize.toolkit.fluxcd.io/name": "backups"},
                                "annotations": {"argocd.argoproj.io/tracking-id": "backups:tidemark.dev/Schedule:tidemark/every-minute"}},
                   "spec": {"schedule": "* * * * *", "policy": "app"}}),
        ],
    )
    .await;
    let backups: Api<Backup> = Api::namespaced(c.clone(), NS);
    // The first backup runs at once, the second on the next minute.
    let first = wait_for(
        "the first scheduled backup Completed",
        Duration::from_secs(90),
        || async {
            let b = schedule_backups(&backups, "every-minute").await;
            b.iter()
                .find(|b| phase_of(*b).as_deref() == Some("Completed"))
                .cloned()
        },
    )
    .await;
    let first_name = first.name_any();
    assert!(
        first_name.starts_with("every-minute-") && first_name.len() == "every-minute-".len() + 14,
        "{first_name}"
    );
    assert_eq!(first.labels().get("team").map(String::as_str), Some("ops"));
    assert!(
        !first
            .labels()
            .contains_key("kustomize.toolkit.fluxcd.io/name"),
        "Flux tracking label copied"
    );
    assert!(
        !first
            .annotations()
            .contains_key("argocd.argoproj.io/tracking-id"),
        "Argo CD tracking copied"
    );
    assert!(
        exists(
            &minio,
            &format!("ctl/backups/{first_name}/velero-backup.json")
        )
        .await
    );
    let second = wait_for(
        "a second scheduled backup",
        Duration::from_secs(100),
        || async {
            let b = schedule_backups(&backups, "every-minute").await;
            b.iter()
                .find(|b| {
                    b.name_any() != first_name && phase_of(*b).as_deref() == Some("Completed")
                })
                .cloned()
        },
    )
    .await;

    // Paused: no more backups.
    let schedules: Api<Schedule> = Api::namespaced(c.clone(), NS);
    schedules
        .patch(
            "every-minute",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .unwrap();
    wait_for("Schedule Paused", Duration::from_secs(30), || async {
        let s = schedules.get("every-minute").await.ok()?;
        (phase_of(&s).as_deref() == Some("Paused")).then_some(())
    })
    .await;
    let count_when_paused = schedule_backups(&backups, "every-minute").await.len();

    // Sync: a deleted record whose data is in the bucket comes back.
    let second_name = second.name_any();
    backups
        .delete(&second_name, &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the deleted record to come back by sync",
        Duration::from_secs(60),
        || async {
            let b = backups.get_opt(&second_name).await.ok()??;
            (phase_of(&b).as_deref() == Some("Completed")).then_some(())
        },
    )
    .await;

    // TTL (2m): the first backup's folder and record disappear.
    wait_for(
        "the first backup to expire",
        Duration::from_secs(200),
        || async {
            let gone = backups.get_opt(&first_name).await.ok()?.is_none()
                && !exists(
                    &minio,
                    &format!("ctl/backups/{first_name}/velero-backup.json"),
                )
                .await
                && objects(&minio, &format!("ctl/backups/{first_name}"))
                    .await
                    .is_empty();
            gone.then_some(())
        },
    )
    .await;
    let all = schedule_backups(&backups, "every-minute").await;
    let started_after_pause = all.len() + 1 - count_when_paused; // the expired one is gone
    assert!(
        started_after_pause <= 1,
        "backups started while paused: {:?}",
        all.iter().map(|b| b.name_any()).collect::<Vec<_>>()
    );

    // Health as Flux/kstatus read it.
    let l = json_of(&locations.get("default").await.unwrap());
    assert_eq!(kstatus(&l), KStatus::Current, "{l}");
    let s = json_of(&schedules.get("every-minute").await.unwrap());
    assert_eq!(kstatus(&s), KStatus::Current, "{s}");
    let policies: Api<BackupPolicy> = Api::namespaced(c.clone(), NS);
    let p = json_of(&policies.get("app").await.unwrap());
    assert_eq!(kstatus(&p), KStatus::Current, "{p}");
    let b = json_of(&backups.get(&second_name).await.unwrap());
    assert_eq!(kstatus(&b), KStatus::Current, "{b}");

    // Metrics with Velero's names.
    let metrics = reqwest_metrics(server.metrics_port).await;
    assert!(
        metrics.contains("velero_backup_success_total{schedule=\"every-minute\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tidemark_location_available{location=\"default\"} 1"),
        "{metrics}"
    );
    drop(server);
}

/// Fetches /metrics with a plain HTTP/1.0 request.
async fn reqwest_metrics(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_cluster_and_restore_plans() {
    let a = Cluster::up(&unique("ctl-rw")).await;
    let b = Cluster::up(&unique("ctl-ro")).await;
    let minio = Minio::up(&unique("ctl-minio2"));
    setup(&a.client, &minio, "shared", false).await;
    setup(&b.client, &minio, "shared", true).await;
    let _server_a = Server::start(&a.kubeconfig, NS, &[]);
    let backups_a: Api<Backup> = Api::namespaced(a.client.clone(), NS);
    apply_docs(
        &a.client,
        &[json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "manual", "namespace": NS},
                 "spec": {"template": {"includedNamespaces": ["app"], "ttl": "3days"}}})],
    )
    .await;
    let manual = wait_for(
        "backup manual Completed",
        Duration::from_secs(60),
        || async {
            let b = backups_a.get("manual").await.ok()?;
            (phase_of(&b).as_deref() == Some("Completed")).then_some(b)
        },
    )
    .await;
    // A manifest's TTL reads like the command line's (`3days` as well as `72h`).
    let st = json_of(&manual)["status"].clone();
    let at = |f: &str| {
        chrono::DateTime::parse_from_rfc3339(st[f].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("status.{f}: {e}: {st}"))
    };
    let ttl = at("expiration") - at("startTimestamp");
    assert!(
        (ttl - chrono::Duration::hours(72)).num_seconds().abs() < 120,
        "ttl 3days gave an expiration {ttl} after the start: {st}"
    );

    // Cluster B reads the same bucket read-only: it sees, restores, and never writes.
    let before = objects(&minio, "shared").await;
    let server_b = Server::start(&b.kubeconfig, NS, &[]);
    let backups_b: Api<Backup> = Api::namespaced(b.client.clone(), NS);
    wait_for("B syncs backup manual", Duration::from_secs(60), || async {
        let r = backups_b.get_opt("manual").await.ok()??;
        (phase_of(&r).as_deref() == Some("Completed")).then_some(())
    })
    .await;
    let cms_b: Api<ConfigMap> = Api::namespaced(b.client.clone(), "app");
    cms_b
        .delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    let plan = json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "RestorePlan", "metadata": {"name": "bring-back", "namespace": NS},
                      "spec": {"template": {"backupName": "manual", "includedNamespaces": ["app"]}}});
    apply_docs(&b.client, std::slice::from_ref(&plan)).await;
    let plans_b: Api<RestorePlan> = Api::namespaced(b.client.clone(), NS);
    let done = wait_for(
        "restore plan Completed in B",
        Duration::from_secs(90),
        || async {
            let p = plans_b.get("bring-back").await.ok()?;
            (phase_of(&p).as_deref() == Some("Completed")).then_some(p)
        },
    )
    .await;
    let pv = json_of(&done);
    assert_eq!(pv["status"]["preview"]["create"], 1, "{pv}");
    assert_eq!(
        cms_b.get("settings").await.unwrap().data.unwrap()["mode"],
        "blue"
    );
    // Applied again (Argo CD self-heal): no second restore.
    apply_docs(&b.client, std::slice::from_ref(&plan)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let restores_b: Api<Restore> = Api::namespaced(b.client.clone(), NS);
    assert_eq!(
        restores_b
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        objects(&minio, "shared").await,
        before,
        "the read-only cluster wrote to the bucket"
    );
    // Expiry is refused on the read-only location.
    backups_b
        .patch_status(
            "manual",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"expiration": "2000-01-01T00:00:00Z"}})),
        )
        .await
        .unwrap();
    let blocked = wait_for(
        "expiry refused on the read-only location",
        Duration::from_secs(30),
        || async {
            let r = json_of(&backups_b.get("manual").await.ok()?);
            condition(&r, "Ready").filter(|(_, reason, _)| reason == "ExpiryBlocked")
        },
    )
    .await;
    assert!(blocked.2.contains("ReadOnly"), "{blocked:?}");
    // The held-back expiry wrote its phase and condition only: what the record said before
    // (written by the same field manager at import) is still there.
    let held = json_of(&backups_b.get("manual").await.unwrap());
    for field in [
        "startTimestamp",
        "completionTimestamp",
        "itemsBackedUp",
        "progress",
    ] {
        assert!(
            !held["status"][field].is_null(),
            "status.{field} lost when the expiry was held back: {}",
            held["status"]
        );
    }
    assert!(exists(&minio, "shared/backups/manual/velero-backup.json").await);
    assert_eq!(objects(&minio, "shared").await, before);
    drop(server_b);

    // In the read-write cluster, a plan restores once even when re-created (rebuilt cluster):
    // the store remembers the spec hash.
    let cms_a: Api<ConfigMap> = Api::namespaced(a.client.clone(), "app");
    cms_a
        .delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    apply_docs(&a.client, std::slice::from_ref(&plan)).await;
    let plans_a: Api<RestorePlan> = Api::namespaced(a.client.clone(), NS);
    wait_for(
        "restore plan Completed in A",
        Duration::from_secs(90),
        || async {
            let p = plans_a.get("bring-back").await.ok()?;
            (phase_of(&p).as_deref() == Some("Completed")).then_some(())
        },
    )
    .await;
    assert!(cms_a.get_opt("settings").await.unwrap().is_some());
    let restores_a: Api<Restore> = Api::namespaced(a.client.clone(), NS);
    let first_restore = restores_a.list(&ListParams::default()).await.unwrap().items[0].name_any();
    plans_a
        .delete("bring-back", &DeleteParams::default())
        .await
        .unwrap();
    restores_a
        .delete(&first_restore, &DeleteParams::default())
        .await
        .ok();
    cms_a
        .delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    apply_docs(&a.client, std::slice::from_ref(&plan)).await;
    let again = wait_for(
        "re-created plan reports it already ran",
        Duration::from_secs(60),
        || async {
            let p = plans_a.get("bring-back").await.ok()?;
            (phase_of(&p).as_deref() == Some("Completed")).then_some(p)
        },
    )
    .await;
    assert_eq!(json_of(&again)["status"]["restoreName"], first_restore);
    assert!(
        restores_a
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "restored again"
    );
    assert!(
        cms_a.get_opt("settings").await.unwrap().is_none(),
        "restored again"
    );

    // Credentials that stopped working (the store answers 403): the store cannot say whether
    // this spec was restored, so the re-created plan waits instead of restoring again.
    plans_a
        .delete("bring-back", &DeleteParams::default())
        .await
        .unwrap();
    let bad = minio.credentials_file().replace(
        &minio.env["AWS_SECRET_ACCESS_KEY"],
        "not-the-secret-key-any-more",
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(a.client.clone(), NS);
    secrets
        .patch(
            "s3-credentials",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"cloud": bad}})),
        )
        .await
        .unwrap();
    wait_for("the deleted plan gone", Duration::from_secs(30), || async {
        plans_a
            .get_opt("bring-back")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    apply_docs(&a.client, &[plan]).await;
    let waiting = wait_for(
        "the plan to wait for a store it cannot read",
        Duration::from_secs(60),
        || async {
            let p = json_of(&plans_a.get("bring-back").await.ok()?);
            condition(&p, "Ready").filter(|(_, reason, _)| reason == "StoreUnavailable")
        },
    )
    .await;
    assert!(
        waiting.2.contains("nothing is restored until it can"),
        "{waiting:?}"
    );
    // The decision was made without a restore.
    assert!(
        restores_a
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "restored again while the store was unreadable"
    );
    assert!(cms_a.get_opt("settings").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_controller_and_invalid_objects() {
    let cluster = Cluster::up(&unique("ctl-kill")).await;
    let minio = Minio::up(&unique("ctl-minio3"));
    let c = cluster.client.clone();
    setup(&c, &minio, "kill", false).await;
    // Enough objects for a slow backup to be interrupted.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "app");
    let payload = "x".repeat(4096);
    futures::future::join_all((0..1500).map(|i| {
        let cms = cms.clone();
        let payload = payload.clone();
        async move {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(format!("bulk-{i:05}"));
            cm.data = Some([("p".to_string(), payload)].into());
            cms.create(&PostParams::default(), &cm).await.unwrap();
        }
    }))
    .await;
    let mut server = Server::start(
        &cluster.kubeconfig,
        NS,
        &["--client-qps", "8", "--client-burst", "1"],
    );
    let backups: Api<Backup> = Api::namespaced(c.clone(), NS);
    apply_docs(
        &c,
        &[json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "slow", "namespace": NS},
                 "spec": {"template": {"includedNamespaces": ["app"]}}})],
    )
    .await;
    wait_for(
        "backup slow InProgress",
        Duration::from_secs(60),
        || async {
            let b = backups.get("slow").await.ok()?;
            (phase_of(&b).as_deref() == Some("InProgress")).then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.kill();
    let server = Server::start(&cluster.kubeconfig, NS, &[]);
    let failed = wait_for(
        "backup slow Failed after restart",
        Duration::from_secs(60),
        || async {
            let b = backups.get("slow").await.ok()?;
            (phase_of(&b).as_deref() == Some("Failed")).then_some(b)
        },
    )
    .await;
    let f = json_of(&failed);
    assert_eq!(
        condition(&f, "Stalled").map(|c| c.1),
        Some("ControllerRestarted".into()),
        "{f}"
    );
    assert_eq!(kstatus(&f), KStatus::Failed);
    assert!(!exists(&minio, "kill/backups/slow/velero-backup.json").await);
    assert!(
        objects(&minio, "kill/backups/slow").await.is_empty(),
        "half backup left in the store"
    );

    // Invalid objects end Stalled naming the field; the rest keeps working.
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Schedule", "metadata": {"name": "bad-cron", "namespace": NS},
                   "spec": {"schedule": "61 * * * *", "template": {"includedNamespaces": ["app"]}}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "nowhere", "namespace": NS},
                   "spec": {"template": {"location": "does-not-exist"}}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "quick", "namespace": NS},
                   "spec": {"template": {"includedNamespaces": ["app"], "includedResources": ["secrets"]}}}),
        ],
    )
    .await;
    let schedules: Api<Schedule> = Api::namespaced(c.clone(), NS);
    let bad = wait_for("bad cron Stalled", Duration::from_secs(30), || async {
        let s = json_of(&schedules.get("bad-cron").await.ok()?);
        condition(&s, "Stalled").map(|c| (c, s))
    })
    .await;
    assert_eq!(bad.0.1, "InvalidSchedule");
    assert!(bad.0.2.contains("spec.schedule"), "{:?}", bad.0);
    assert_eq!(kstatus(&bad.1), KStatus::Failed);
    let policies: Api<BackupPolicy> = Api::namespaced(c.clone(), NS);
    let nowhere = wait_for(
        "unknown location Stalled",
        Duration::from_secs(30),
        || async { condition(&json_of(&policies.get("nowhere").await.ok()?), "Stalled") },
    )
    .await;
    assert_eq!(nowhere.1, "LocationNotFound");
    assert!(nowhere.2.contains("spec.template.location"), "{nowhere:?}");
    // Both selector kinds: refused by the API server (CEL rule) with the reason.
    let both: Api<kube::api::DynamicObject> = Api::namespaced_with(
        c.clone(),
        NS,
        &kube::api::ApiResource::erase::<BackupPolicy>(&()),
    );
    let err = both
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "BackupPolicy",
                "metadata": {"name": "both", "namespace": NS},
                "spec": {"template": {"labelSelector": {"matchLabels": {"a": "b"}}, "orLabelSelectors": [{"matchLabels": {"c": "d"}}]}}}))
            .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("labelSelector and orLabelSelectors cannot be used together"),
        "{err}"
    );
    wait_for(
        "an unrelated backup still completes",
        Duration::from_secs(60),
        || async {
            let b = backups.get("quick").await.ok()?;
            (phase_of(&b).as_deref() == Some("Completed")).then_some(())
        },
    )
    .await;
    drop(server);
}
