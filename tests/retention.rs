//! Grandfather-father-son retention of a Schedule's backups, end to end on a real API server and
//! MinIO: backups already in the store (written by tidemark, dated back, synced in as Velero's
//! would be) and the Schedule's own backups every few seconds; `tidemark plan` shows what the
//! retention would delete before anything is; the controller then keeps exactly the backups the
//! rules keep — in the cluster and in the store — and deletes the rest.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use kube::api::{Api, ListParams, Patch, PatchParams};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};
use support::*;
use tidemark::api::tidemark::{Backup, Schedule};

const NS: &str = "tidemark";
const SCHEDULE: &str = "nightly";

/// The backup folders under `prefix/backups/` that hold a `velero-backup.json`.
async fn stored(s: &impl ObjectStore, prefix: &str) -> BTreeSet<String> {
    let listed = s
        .list_with_delimiter(Some(&StorePath::from(format!("{prefix}/backups"))))
        .await
        .unwrap();
    let mut out = BTreeSet::new();
    for dir in listed.common_prefixes {
        let name = dir.filename().unwrap().to_string();
        let meta = StorePath::from(format!("{prefix}/backups/{name}/velero-backup.json"));
        if s.head(&meta).await.is_ok() {
            out.insert(name);
        }
    }
    out
}

/// The rules, written again independently of `tidemark::plan::retention` (integer hours since
/// the epoch in UTC): keep the `keep_last` newest, and the newest of each of the `hourly` newest
/// hours that have backups.
fn expected(
    all: &BTreeMap<String, DateTime<Utc>>,
    keep_last: usize,
    hourly: usize,
) -> BTreeSet<String> {
    let mut newest_first: Vec<(&String, &DateTime<Utc>)> = all.iter().collect();
    newest_first.sort_by(|a, b| b.1.cmp(a.1).then_with(|| b.0.cmp(a.0)));
    let mut keep: BTreeSet<String> = newest_first
        .iter()
        .take(keep_last)
        .map(|(n, _)| (*n).clone())
        .collect();
    let mut hours_seen = Vec::new();
    for (n, t) in &newest_first {
        let hour = t.timestamp().div_euclid(3600);
        if hours_seen.last() != Some(&hour) {
            if hours_seen.len() == hourly {
                break;
            }
            hours_seen.push(hour);
            keep.insert((*n).clone());
        }
    }
    keep
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_retention_keeps_exactly_what_its_rules_keep() {
    let cluster = Cluster::up(&unique("retention")).await;
    let minio = Minio::up(&unique("retention"));
    let client = cluster.client.clone();
    let prefix = unique("gfs");
    install_crds(&client).await;
    apply_docs(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "app"}, "data": {"mode": "blue"}}),
        ],
    )
    .await;
    let kc = cluster.kubeconfig.to_str().unwrap().to_string();
    let env = minio.env_with(&kc);
    let url = minio.url(&prefix);

    // Backups already in the store, dated back: two in one hour 5 hours ago, one 3 hours ago,
    // one a day ago (times relative to the start of this hour, so their hours are known).
    let hour = Utc
        .timestamp_opt(Utc::now().timestamp().div_euclid(3600) * 3600, 0)
        .unwrap();
    let old: BTreeMap<String, DateTime<Utc>> = [
        ("nightly-old-a", hour - chrono::Duration::minutes(290)),
        ("nightly-old-b", hour - chrono::Duration::minutes(280)),
        ("nightly-old-c", hour - chrono::Duration::minutes(150)),
        ("nightly-old-d", hour - chrono::Duration::hours(26)),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_string(), t))
    .collect();
    let s3 = minio.object_store();
    for (name, started) in &old {
        let out = tidemark(
            &[
                "backup",
                "create",
                name,
                "--include-namespaces",
                "app",
                "--labels",
                &format!("velero.io/schedule-name={SCHEDULE}"),
                "--location",
                &url,
            ],
            &env,
        );
        assert!(out.status.success(), "{}", show(&out));
        let path = StorePath::from(format!("{prefix}/backups/{name}/velero-backup.json"));
        let mut record: Value =
            serde_json::from_slice(&s3.get(&path).await.unwrap().bytes().await.unwrap()).unwrap();
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        record["status"]["startTimestamp"] = json!(at(*started));
        record["status"]["completionTimestamp"] =
            json!(at(*started + chrono::Duration::minutes(1)));
        s3.put(&path, serde_json::to_vec(&record).unwrap().into())
            .await
            .unwrap();
    }

    // The controller syncs them in as the Schedule's backups.
    let creds = minio.credentials_file();
    let location = json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location",
        "metadata": {"name": "default", "namespace": NS},
        "spec": {"provider": "s3", "bucket": minio.bucket(), "prefix": prefix, "default": true,
                 "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"], "s3ForcePathStyle": "true"},
                 "credential": {"name": "s3-credentials", "key": "cloud"},
                 "syncPeriod": "2s", "validationPeriod": "2s"}});
    apply_docs(
        &client,
        &[
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": NS},
                   "stringData": {"cloud": creds}}),
            location.clone(),
        ],
    )
    .await;
    let server = Server::start(&cluster.kubeconfig, NS, &[]);
    let backups: Api<Backup> = Api::namespaced(client.clone(), NS);
    wait_for(
        "the old backups synced in as records",
        Duration::from_secs(60),
        || async {
            let l = backups.list(&ListParams::default()).await.ok()?;
            let done = l
                .items
                .iter()
                .filter(|b| b.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Completed"))
                .count();
            (done == old.len()).then_some(())
        },
    )
    .await;

    // Before the Schedule exists, `tidemark plan` shows what its retention would do.
    let schedule = json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Schedule",
        "metadata": {"name": SCHEDULE, "namespace": NS},
        "spec": {"schedule": "@every 4s", "template": {"includedNamespaces": ["app"]},
                 "retention": {"keepLast": 2, "hourly": 3}}});
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("schedule.yaml"),
        serde_yaml::to_string(&schedule).unwrap(),
    )
    .unwrap();
    let dir_s = dir.path().to_str().unwrap().to_string();
    let out = tidemark(
        &["plan", "--source", "dir", "--path", &dir_s, "-o", "json"],
        &env,
    );
    assert!(out.status.success(), "{}", show(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let sched = &plan["schedules"][0];
    assert_eq!(
        sched["retentionDeletes"],
        json!(["nightly-old-a"]),
        "{plan:#}"
    );
    let kept: BTreeSet<&str> = sched["retentionKeeps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        BTreeSet::from(["nightly-old-b", "nightly-old-c", "nightly-old-d"])
    );
    let out = tidemark(&["plan", "--source", "dir", "--path", &dir_s], &env);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        table.contains("tidemark/nightly-old-a") && table.contains("deleted from the store"),
        "{table}"
    );
    // Nothing was deleted by planning.
    assert_eq!(stored(&s3, &prefix).await.len(), old.len());

    // The Schedule runs; every backup seen is remembered with its start time.
    apply_docs(&client, &[schedule]).await;
    let seen: BTreeMap<String, DateTime<Utc>> = old.clone();
    let scheduled = |seen: &BTreeMap<String, DateTime<Utc>>| {
        seen.keys()
            .filter(|n| !n.starts_with("nightly-old-"))
            .count()
    };
    let seen_so_far = std::sync::Arc::new(std::sync::Mutex::new(seen));
    wait_for(
        "the schedule to make 4 backups",
        Duration::from_secs(120),
        || {
            let backups = backups.clone();
            let seen = seen_so_far.clone();
            async move {
                for b in backups.list(&ListParams::default()).await.ok()? {
                    let st = b.status.clone().unwrap_or_default();
                    if st.phase.as_deref() == Some("Completed")
                        && let Some(t) = st
                            .start_timestamp
                            .as_deref()
                            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    {
                        seen.lock()
                            .unwrap()
                            .insert(b.metadata.name.clone().unwrap(), t.with_timezone(&Utc));
                    }
                }
                (scheduled(&seen.lock().unwrap()) >= 4).then_some(())
            }
        },
    )
    .await;
    let mut seen = std::mem::take(&mut *seen_so_far.lock().unwrap());
    // Pause it (retention still applies) and let the deletions finish.
    let schedules: Api<Schedule> = Api::namespaced(client.clone(), NS);
    schedules
        .patch(
            SCHEDULE,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"paused": true}})),
        )
        .await
        .unwrap();
    // A backup started before the pause may still complete: wait until none is running, then
    // take the final set of backups.
    wait_for(
        "no backup of the schedule running",
        Duration::from_secs(60),
        || async {
            let l = backups.list(&ListParams::default()).await.ok()?;
            l.items
                .iter()
                .all(|b| {
                    matches!(
                        b.status.as_ref().and_then(|s| s.phase.as_deref()),
                        Some("Completed") | Some("Deleting")
                    )
                })
                .then_some(())
        },
    )
    .await;
    for b in backups.list(&ListParams::default()).await.unwrap() {
        let st = b.status.clone().unwrap_or_default();
        if let Some(t) = st
            .start_timestamp
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        {
            seen.insert(b.metadata.name.clone().unwrap(), t.with_timezone(&Utc));
        }
    }
    let want = expected(&seen, 2, 3);
    assert!(want.contains("nightly-old-c") && !want.contains("nightly-old-a"));
    // Exactly those, in the cluster and in the store.
    let (records, in_store) = wait_for(
        "the store and the records to hold exactly what the retention keeps",
        Duration::from_secs(60),
        || async {
            let records: BTreeSet<String> = backups
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter_map(|b| b.metadata.name)
                .collect();
            let in_store = stored(&s3, &prefix).await;
            (records == want && in_store == want).then_some((records, in_store))
        },
    )
    .await;
    assert_eq!(records, in_store);
    let deleted: Vec<&String> = seen.keys().filter(|n| !want.contains(*n)).collect();
    assert!(deleted.len() >= 3, "deleted {deleted:?} of {seen:?}");
    eprintln!(
        "retention: kept {want:?}, deleted {deleted:?}; server log has {} lines",
        server.log().lines().count()
    );
}
