//! `tidemark plan` (DESIGN §6, plan preview) on a real cluster and MinIO: a revision holding a
//! Schedule, a RestorePlan and a Location (from a directory, then from a local Git repository)
//! is planned against a cluster where a backup's objects have since changed — one ConfigMap
//! edited, one deleted. The plan reports the schedule's immediate first run and next slot, the
//! restore's one create and one conflict, an expired Backup record whose expiry the revision's
//! ReadOnly Location blocks, and invalid manifests (exit 1); and it writes nothing, neither to
//! the cluster (resourceVersions unchanged) nor to the bucket (listing unchanged).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use object_store::ObjectStore;
use serde_json::{Value, json};
use support::*;
use tidemark::api::tidemark::{Backup, Location, Restore, RestorePlan, Schedule};

const NS: &str = "tidemark";
const PREFIX: &str = "plan";

/// Every object key of the bucket with its ETag and last modification.
async fn bucket_listing(minio: &Minio) -> BTreeSet<String> {
    minio
        .object_store()
        .list(None)
        .map(|m| {
            let m = m.unwrap();
            format!("{} {:?} {}", m.location, m.e_tag, m.last_modified)
        })
        .collect()
        .await
}

async fn versions_of<K>(client: &Client, ns: Option<&str>, out: &mut BTreeSet<String>)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    for o in api.list(&ListParams::default()).await.unwrap() {
        if ns.is_some() && o.namespace().as_deref() != ns {
            continue;
        }
        out.insert(format!(
            "{} {}/{} rv={}",
            K::kind(&()),
            o.namespace().unwrap_or_default(),
            o.name_any(),
            o.resource_version().unwrap_or_default()
        ));
    }
}

/// The resourceVersion of every object `tidemark plan` reads (and could be tempted to write).
async fn cluster_snapshot(client: &Client) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    versions_of::<Namespace>(client, None, &mut out).await;
    for ns in [NS, "app"] {
        versions_of::<ConfigMap>(client, Some(ns), &mut out).await;
    }
    versions_of::<Secret>(client, Some(NS), &mut out).await;
    versions_of::<Location>(client, Some(NS), &mut out).await;
    versions_of::<Backup>(client, Some(NS), &mut out).await;
    versions_of::<Restore>(client, Some(NS), &mut out).await;
    versions_of::<Schedule>(client, Some(NS), &mut out).await;
    versions_of::<RestorePlan>(client, Some(NS), &mut out).await;
    out
}

fn location_spec(minio: &Minio, access: &str) -> Value {
    json!({"provider": "s3", "bucket": minio.bucket(), "prefix": PREFIX, "default": true,
           "accessMode": access,
           "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"], "s3ForcePathStyle": "true"},
           "credential": {"name": "s3-credentials", "key": "cloud"}})
}

/// The revision: a Schedule, a RestorePlan, and the cluster's Location made ReadOnly.
fn revision_files(minio: &Minio) -> Vec<(&'static str, String)> {
    let location = json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location",
                          "metadata": {"name": "default"}, "spec": location_spec(minio, "ReadOnly")});
    vec![
        (
            "schedule.yaml",
            "apiVersion: tidemark.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: nightly\nspec:\n  schedule: \"0 3 * * *\"\n  template:\n    includedNamespaces: [app]\n    ttl: 720h\n".to_string(),
        ),
        (
            "restore/plan.yaml",
            "apiVersion: tidemark.dev/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: restore-app\nspec:\n  template:\n    backupName: b1\n    includedNamespaces: [app]\n".to_string(),
        ),
        // JSON is YAML.
        ("location.yaml", location.to_string()),
    ]
}

fn plan_json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(out)))
}

/// The parts of a plan that do not depend on the second it ran.
fn stable(v: &Value) -> Value {
    let schedules: Vec<Value> = v["schedules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| json!([s["name"], s["action"], s["wouldRunNow"], s["records"]]))
        .collect();
    json!({"schedules": schedules, "expiring": v["expiring"], "restorePlans": v["restorePlans"],
           "invalid": v["invalid"]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_previews_a_revision_without_writing() {
    let cluster = Cluster::up(&unique("plan")).await;
    let minio = Minio::up(&unique("plan-minio"));
    let c = cluster.client.clone();
    install_crds(&c).await;
    let creds = minio.credentials_file();
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "app"}, "data": {"mode": "blue"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "extra", "namespace": "app"}, "data": {"keep": "me"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": NS},
                   "stringData": {"cloud": creds}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location", "metadata": {"name": "default", "namespace": NS},
                   "spec": location_spec(&minio, "ReadWrite")}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "old", "namespace": NS},
                   "spec": {"template": {"location": "default", "includedNamespaces": ["app"]}}}),
        ],
    )
    .await;
    // An expired record (as the controller would have left it).
    let backups: Api<Backup> = Api::namespaced(c.clone(), NS);
    backups
        .patch_status(
            "old",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Completed",
                "startTimestamp": "2020-01-01T00:00:00Z", "expiration": "2020-01-31T00:00:00Z"}})),
        )
        .await
        .unwrap();

    // Back up `app` in direct mode into the Location's prefix.
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

    // Since the backup: one ConfigMap changed, the other deleted.
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "app");
    cms.patch(
        "settings",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"mode": "green"}})),
    )
    .await
    .unwrap();
    cms.delete("extra", &DeleteParams::default()).await.unwrap();
    wait_for("extra deleted", Duration::from_secs(30), || async {
        cms.get_opt("extra").await.unwrap().is_none().then_some(())
    })
    .await;

    let before_cluster = cluster_snapshot(&c).await;
    let before_bucket = bucket_listing(&minio).await;
    assert!(
        before_bucket
            .iter()
            .any(|k| k.starts_with("plan/backups/b1/velero-backup.json")),
        "{before_bucket:?}"
    );

    // Only KUBECONFIG: the store's credentials come from the Location's Secret.
    let kenv = [("KUBECONFIG", kubeconfig.as_str())];
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("rev");
    let files = revision_files(&minio);
    for (p, content) in &files {
        let f = dir.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, content).unwrap();
    }
    let dir_s = dir.to_string_lossy().to_string();

    // The table, for people.
    let out = tidemark(&["plan", "--source", "dir", "--path", &dir_s], &kenv);
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tidemark/restore-app: restore of backup b1"),
        "{text}"
    );
    assert!(text.contains("1 to create"), "{text}");
    assert!(text.contains("backs up now: nightly-"), "{text}");
    assert!(text.contains("expiry blocked"), "{text}");

    // JSON, for machines.
    let started = chrono::Utc::now();
    let out = tidemark(
        &["plan", "--source", "dir", "--path", &dir_s, "-o", "json"],
        &kenv,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let from_dir = plan_json(&out);
    eprintln!("{}", serde_json::to_string_pretty(&from_dir).unwrap());
    assert!(
        from_dir["revision"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{from_dir}"
    );

    let sched = &from_dir["schedules"][0];
    assert_eq!(from_dir["schedules"].as_array().unwrap().len(), 1);
    assert_eq!(sched["name"], "nightly");
    assert_eq!(sched["action"], "RunNow", "no records yet: runs at once");
    assert_eq!(sched["wouldRunNow"], true);
    assert_eq!(sched["records"], 0);
    assert!(
        sched["backupName"]
            .as_str()
            .unwrap()
            .starts_with("nightly-"),
        "{sched}"
    );
    let next = chrono::DateTime::parse_from_rfc3339(sched["nextRun"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(
        next > started && next <= started + chrono::Duration::days(1),
        "{next}"
    );
    assert_eq!(next.format("%H:%M:%S").to_string(), "03:00:00");

    let plans = from_dir["restorePlans"].as_array().unwrap();
    assert_eq!(plans.len(), 1, "{from_dir}");
    let p = &plans[0];
    assert_eq!(p["name"], "restore-app");
    assert_eq!(p["backup"], "b1");
    assert_eq!(p["location"], "default");
    assert_eq!(p["alreadyRan"], false);
    assert!(p.get("error").is_none(), "{p}");
    let names = |k: &str| -> Vec<String> {
        p[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("create"), ["configmaps app/extra"], "{p}");
    assert_eq!(names("conflict"), ["configmaps app/settings"], "{p}");
    assert!(names("update").is_empty(), "{p}");

    // The revision's Location (ReadOnly) wins over the cluster's (ReadWrite).
    let exp = from_dir["expiring"].as_array().unwrap();
    assert_eq!(exp.len(), 1, "{from_dir}");
    assert_eq!(exp[0]["name"], "old");
    assert_eq!(exp[0]["blocked"], true);
    assert!(
        exp[0]["reason"].as_str().unwrap().contains("ReadOnly"),
        "{}",
        exp[0]
    );
    assert_eq!(from_dir["invalid"], json!([]));

    // The same content from Git: the same plan, with the commit's revision.
    let repo_dir = tmp.path().join("repo");
    let files: Vec<(&str, Option<&str>)> =
        files.iter().map(|(p, c)| (*p, Some(c.as_str()))).collect();
    let sha = git_commit(&repo_dir, &files, "plan");
    let repo_url = format!("file://{}", repo_dir.display());
    let cache = tmp.path().join("cache").to_string_lossy().to_string();
    let out = tidemark(
        &[
            "plan",
            "--source",
            "git",
            "--url",
            &repo_url,
            "--ref",
            "main",
            "--cache-dir",
            &cache,
            "-o",
            "json",
        ],
        &kenv,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let from_git = plan_json(&out);
    assert_eq!(from_git["revision"], format!("main@sha1:{sha}"));
    assert_eq!(stable(&from_git), stable(&from_dir));

    // An invalid manifest is listed, the rest still planned, and the exit code is 1.
    std::fs::write(
        dir.join("broken.yaml"),
        "apiVersion: tidemark.dev/v1alpha1\nkind: Schedule\nmetadata:\n  name: broken\nspec:\n  schedule: \"@daily\"\n  cronn: x\n  template: {}\n",
    )
    .unwrap();
    let out = tidemark(
        &["plan", "--source", "dir", "--path", &dir_s, "-o", "json"],
        &kenv,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let with_invalid = plan_json(&out);
    let inv = with_invalid["invalid"].as_array().unwrap();
    assert_eq!(inv.len(), 1, "{with_invalid}");
    assert_eq!(inv[0]["name"], "broken");
    assert!(
        inv[0]["message"].as_str().unwrap().contains("cronn"),
        "{}",
        inv[0]
    );
    assert_eq!(with_invalid["restorePlans"], from_dir["restorePlans"]);

    // Nothing was written: not to the cluster, not to the bucket.
    assert_eq!(cluster_snapshot(&c).await, before_cluster);
    assert_eq!(bucket_listing(&minio).await, before_bucket);

    // Once the cluster's RestorePlan records this spec's hash, the plan says it already ran.
    std::fs::remove_file(dir.join("broken.yaml")).unwrap();
    apply_docs(
        &c,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "RestorePlan", "metadata": {"name": "restore-app", "namespace": NS},
                   "spec": {"template": {"backupName": "b1", "includedNamespaces": ["app"]}}}),
        ],
    )
    .await;
    let rps: Api<RestorePlan> = Api::namespaced(c.clone(), NS);
    rps.patch_status(
        "restore-app",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"status": {"specHash": p["specHash"], "restoreName": "restore-app-done"}}),
        ),
    )
    .await
    .unwrap();
    let out = tidemark(
        &["plan", "--source", "dir", "--path", &dir_s, "-o", "json"],
        &kenv,
    );
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let ran = plan_json(&out);
    let p = &ran["restorePlans"][0];
    assert_eq!(p["alreadyRan"], true, "{p}");
    assert_eq!(p["restoreName"], "restore-app-done", "{p}");
    assert_eq!(p["create"], json!([]), "{p}");
}
