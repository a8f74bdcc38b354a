//! `status.progress` of controller-run backups and restores (issue 17) on a real cluster and
//! MinIO: while a restore runs, `tidemark server` writes Velero's `progress` (`totalItems`,
//! `itemsRestored`) every 5 s under its own field manager, without disturbing the phase,
//! timestamps and conditions; the final status carries the final counts; a backup ends with
//! `progress` equal to `itemsBackedUp`.
//!
//! The restore is made to last long enough (a few thousand ConfigMaps under a client-side cap
//! of 150 requests per second: well over two progress periods) that progress writes fall
//! inside it; every version of the Restore object is watched, so no intermediate write can be
//! missed by polling.

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use support::*;
use tidemark::api::tidemark::{Backup, Location, Restore};

const NS: &str = "tidemark";
const SOURCE: &str = "bulk";
/// ConfigMaps to restore: at 150 creates/s about 15 s of creates.
const CONFIGMAPS: usize = 2_200;
/// The server's client-side cap (requests per second).
const QPS: &str = "150";

async fn setup(client: &Client, minio: &Minio) {
    install_crds(client).await;
    apply_docs(
        client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SOURCE}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": NS},
                   "stringData": {"cloud": minio.credentials_file()}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location", "metadata": {"name": "default", "namespace": NS},
                   "spec": {"provider": "s3", "bucket": minio.bucket(), "prefix": "progress", "default": true,
                            "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"], "s3ForcePathStyle": "true"},
                            "credential": {"name": "s3-credentials", "key": "cloud"}}}),
        ],
    )
    .await;
    // The ConfigMaps, 32 creates at a time.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), SOURCE);
    futures::stream::iter(0..CONFIGMAPS)
        .map(|i| {
            let cms = cms.clone();
            async move {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("cm-{i:05}")),
                        ..Default::default()
                    },
                    data: Some([("i".to_string(), i.to_string())].into()),
                    ..Default::default()
                };
                cms.create(&PostParams::default(), &cm)
                    .await
                    .unwrap_or_else(|e| panic!("create cm-{i:05}: {e}"));
            }
        })
        .buffer_unordered(32)
        .collect::<()>()
        .await;
}

fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

fn int(v: &Value, pointer: &str) -> i64 {
    at(v, pointer)
        .as_i64()
        .unwrap_or_else(|| panic!("{pointer} is not an integer in {v:#}"))
}

fn condition_status(v: &Value, kind: &str) -> Option<String> {
    at(v, "/status/conditions")
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_progress_is_written_while_it_runs_and_final_at_the_end() {
    let cluster = Cluster::up(&unique("progress")).await;
    let minio = Minio::up(&unique("progress-minio"));
    let c = cluster.client.clone();
    setup(&c, &minio).await;
    let server = Server::start(
        &cluster.kubeconfig,
        NS,
        &["--client-qps", QPS, "--client-burst", "10"],
    );
    let locations: Api<Location> = Api::namespaced(c.clone(), NS);
    wait_for("Location Available", Duration::from_secs(60), || async {
        let l = serde_json::to_value(locations.get("default").await.ok()?).ok()?;
        (at(&l, "/status/phase") == "Available").then_some(())
    })
    .await;

    // A backup ends with its progress equal to its item count.
    let backups: Api<Backup> = Api::namespaced(c.clone(), NS);
    apply_docs(
        &c,
        &[json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup", "metadata": {"name": SOURCE, "namespace": NS},
                 "spec": {"template": {"includedNamespaces": [SOURCE]}}})],
    )
    .await;
    let b = wait_for("backup Completed", Duration::from_secs(60), || async {
        let b = serde_json::to_value(backups.get(SOURCE).await.ok()?).ok()?;
        match at(&b, "/status/phase").as_str() {
            Some("Completed") => Some(b),
            Some("Failed" | "PartiallyFailed" | "FailedValidation") => {
                panic!("backup ended {b:#}\n{}", server.log())
            }
            _ => None,
        }
    })
    .await;
    let items = int(&b, "/status/itemsBackedUp");
    assert!(items > CONFIGMAPS as i64, "{b:#}");
    assert_eq!(
        at(&b, "/status/progress"),
        &json!({"totalItems": items, "itemsBackedUp": items}),
        "{b:#}"
    );

    // Every version of the Restore, from before it exists until it ends.
    let restores: Api<Restore> = Api::namespaced(c.clone(), NS);
    let name = "bulk-copy";
    let mut versions = watcher(
        restores.clone(),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
    )
    .applied_objects()
    .boxed();
    let started = Instant::now();
    apply_docs(
        &c,
        &[json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Restore", "metadata": {"name": name, "namespace": NS},
                 "spec": {"template": {"backupName": SOURCE, "namespaceMapping": {SOURCE: "bulk-restored"}}}})],
    )
    .await;
    let mut seen: Vec<Value> = Vec::new();
    let last = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(r) = versions.try_next().await.expect("watch") {
            let v = serde_json::to_value(&r).unwrap();
            // A re-listed watch repeats the current version.
            if seen.last().map(|p| at(p, "/metadata/resourceVersion"))
                == Some(at(&v, "/metadata/resourceVersion"))
            {
                continue;
            }
            seen.push(v.clone());
            if matches!(
                at(&v, "/status/phase").as_str(),
                Some("Completed" | "PartiallyFailed" | "Failed" | "FailedValidation")
            ) {
                return v;
            }
        }
        panic!("the watch ended");
    })
    .await
    .unwrap_or_else(|_| panic!("the restore did not end in 120 s\n{}", server.log()));
    let elapsed = started.elapsed();

    // The final status: Completed, progress equal to the totals and to the counters.
    assert_eq!(at(&last, "/status/phase"), "Completed", "{last:#}");
    let total = int(&last, "/status/progress/totalItems");
    assert_eq!(
        int(&last, "/status/progress/itemsRestored"),
        total,
        "{last:#}"
    );
    let counted = int(&last, "/status/created")
        + int(&last, "/status/updated")
        + int(&last, "/status/skipped");
    assert_eq!(counted, total, "{last:#}");
    assert!(
        int(&last, "/status/created") >= CONFIGMAPS as i64,
        "{last:#}"
    );

    // Progress written while the restore ran: part of the items done, under phase InProgress,
    // with the phase, start time and Reconciling condition of `apply_status` left in place.
    let running: Vec<&Value> = seen
        .iter()
        .filter(|v| at(v, "/status/phase") == "InProgress" && !at(v, "/status/progress").is_null())
        .collect();
    let partial: Vec<(i64, i64)> = running
        .iter()
        .map(|v| {
            (
                int(v, "/status/progress/itemsRestored"),
                int(v, "/status/progress/totalItems"),
            )
        })
        .filter(|&(done, total)| done > 0 && done < total)
        .collect();
    assert!(
        !partial.is_empty(),
        "no progress written while the restore ran ({elapsed:?}); versions seen:\n{seen:#?}"
    );
    eprintln!("restore ended after {elapsed:?}; progress written while it ran: {partial:?}");
    for v in &running {
        assert!(!at(v, "/status/startTimestamp").is_null(), "{v:#}");
        assert_eq!(
            condition_status(v, "Reconciling").as_deref(),
            Some("True"),
            "{v:#}"
        );
        assert_eq!(int(v, "/status/progress/totalItems"), total, "{v:#}");
    }
    // Never backwards.
    let done: Vec<i64> = seen
        .iter()
        .filter(|v| !at(v, "/status/progress").is_null())
        .map(|v| int(v, "/status/progress/itemsRestored"))
        .collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    // Not flooding the API server: one write per 5 s at most, plus the last state at the end.
    let writes = running.len() as u64;
    assert!(
        writes <= elapsed.as_secs() / 5 + 2,
        "{writes} progress writes in {elapsed:?}"
    );

    // The progress writes are server-side applies of status.progress alone, under their own
    // field manager.
    let progress_fields: Vec<&Value> = at(&last, "/metadata/managedFields")
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["manager"] == tidemark::controller::PROGRESS_FIELD_MANAGER)
        .collect();
    assert_eq!(progress_fields.len(), 1, "{last:#}");
    let m = progress_fields[0];
    assert_eq!(m["operation"], "Apply", "{m:#}");
    assert_eq!(m["subresource"], "status", "{m:#}");
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().filter(|k| *k != ".").cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(keys(&m["fieldsV1"]), ["f:status"], "{m:#}");
    assert_eq!(keys(&m["fieldsV1"]["f:status"]), ["f:progress"], "{m:#}");
    assert_eq!(
        keys(&m["fieldsV1"]["f:status"]["f:progress"]),
        ["f:itemsRestored", "f:totalItems"],
        "{m:#}"
    );
}
