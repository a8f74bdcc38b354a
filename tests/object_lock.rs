//! Immutable backups with S3 Object Lock, against a real MinIO bucket created with Object Lock:
//! the corpus backed up with `--object-lock compliance` and a short TTL; every file of the backup
//! is retained until the backup expires; the store refuses to delete any of its versions with
//! the same credentials, and an overwrite only adds a version beside the locked one;
//! `backup delete` refuses, naming the end of the retention, and deletes every version once it
//! has ended; the backup restores into a second cluster whole. A controller whose Location has
//! `objectLock` writes locked backups, and its expiry waits (`Retained`) while a retention
//! outlasts the TTL, then deletes.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::Api;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};
use sha2::Digest;
use support::*;
use tidemark::api::tidemark::Backup;
use tidemark::store::{LockMode, Retention, S3Api, Store};

const BUCKET: &str = "locked";
const NS: &str = "tidemark";

fn api(store: &Store) -> &S3Api {
    store
        .s3_api()
        .expect("an S3 location has the S3 API client")
}

/// `(key, version id)` of every version (not delete markers) under `prefix`.
async fn versions(s3: &S3Api, prefix: &str) -> Vec<(String, String)> {
    s3.list_versions(prefix)
        .await
        .unwrap()
        .into_iter()
        .filter(|v| !v.delete_marker)
        .map(|v| (v.key, v.version_id))
        .collect()
}

fn record_expiration(record: &[u8]) -> DateTime<Utc> {
    let v: Value = serde_json::from_slice(record).unwrap();
    DateTime::parse_from_rfc3339(v["status"]["expiration"].as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_backups_cannot_be_deleted_before_they_expire() {
    let a = Cluster::up(&unique("lock-a")).await;
    let b = Cluster::up(&unique("lock-b")).await;
    let minio = Minio::up(&unique("lock"));
    let (accepted, _) = load_corpus(&a.client).await;
    let admin = minio.tidemark_store(BUCKET, "");
    api(&admin).create_bucket(true).await.unwrap();
    assert!(admin.bucket_locked().await.unwrap());
    let (ka, kb) = (
        a.kubeconfig.to_str().unwrap().to_string(),
        b.kubeconfig.to_str().unwrap().to_string(),
    );
    let (env_a, env_b) = (minio.env_with(&ka), minio.env_with(&kb));
    let url = format!("s3://{BUCKET}/lock");

    // A Location without Object Lock asking for it is refused before anything is written.
    let out = tidemark(
        &[
            "backup",
            "create",
            "nolock",
            "--location",
            &minio.url("lock"),
            "--object-lock",
            "compliance",
        ],
        &env_a,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("has no Object Lock configuration"),
        "{}",
        show(&out)
    );

    let out = tidemark(
        &[
            "backup",
            "create",
            "sealed",
            "--location",
            &url,
            "--object-lock",
            "compliance",
            "--ttl",
            "75s",
        ],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));
    let s3 = api(&admin);
    let files = versions(s3, "lock/backups/sealed/").await;
    assert!(files.len() >= 5, "{files:?}");
    let record = admin
        .get(&StorePath::from("lock/backups/sealed/velero-backup.json"))
        .await
        .unwrap();
    let expiration = record_expiration(&record);
    // Every file, the record included, is retained in COMPLIANCE mode until the expiration.
    for (key, version) in &files {
        let r = s3.retention(key, Some(version)).await.unwrap();
        assert_eq!(
            r,
            Some(Retention {
                mode: LockMode::Compliance,
                retain_until: expiration
                    .with_nanosecond_zero()
                    .expect("whole seconds are valid"),
            }),
            "{key}"
        );
    }
    let out = tidemark(
        &["backup", "describe", "sealed", "--location", &url],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains("Object Lock:  COMPLIANCE, retained until"),
        "{}",
        show(&out)
    );

    // It restores into a second cluster whole.
    let out = tidemark(
        &[
            "restore",
            "create",
            "back",
            "--from-backup",
            "sealed",
            "--location",
            &url,
        ],
        &env_b,
    );
    assert!(out.status.success(), "{}", show(&out));
    let problems = compare_clusters(&a.client, &b.client, &accepted, &BTreeMap::new()).await;
    assert!(problems.is_empty(), "{problems:#?}");

    // The same credentials cannot delete any version of it.
    for (key, version) in &files {
        // AWS answers AccessDenied, MinIO "Object is WORM protected".
        let e = s3.delete_version(key, version).await.unwrap_err();
        assert!(
            e.to_string().contains("AccessDenied") || e.to_string().contains("WORM protected"),
            "{key}: {e}"
        );
    }
    assert_eq!(versions(s3, "lock/backups/sealed/").await, files);
    // An overwrite adds a version; the locked one stays, byte for byte, and still retained.
    let tarball = StorePath::from("lock/backups/sealed/sealed.tar.gz");
    let plain = minio_store(&minio);
    let before = sha(&plain.get(&tarball).await.unwrap().bytes().await.unwrap());
    plain
        .put(&tarball, bytes::Bytes::from_static(b"junk").into())
        .await
        .unwrap();
    let (_, locked_version) = files
        .iter()
        .find(|(k, _)| k.ends_with("sealed.tar.gz"))
        .unwrap();
    let original = plain
        .get_opts(
            &tarball,
            object_store::GetOptions {
                version: Some(locked_version.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha(&original), before);
    assert!(
        s3.delete_version(tarball.as_ref(), locked_version)
            .await
            .is_err()
    );

    // backup delete refuses, says until when, and deletes nothing.
    let out = tidemark(
        &[
            "backup",
            "delete",
            "sealed",
            "--location",
            &url,
            "--confirm",
        ],
        &env_a,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        show(&out).contains("is under S3 Object Lock (COMPLIANCE) until"),
        "{}",
        show(&out)
    );
    let after_refusal = versions(s3, "lock/backups/sealed/").await;
    assert_eq!(after_refusal.len(), files.len() + 1, "{after_refusal:?}");

    // Once the retention has ended: deleted, every version.
    wait_for("the retention to end", Duration::from_secs(120), || async {
        (Utc::now() > expiration).then_some(())
    })
    .await;
    let out = tidemark(
        &[
            "backup",
            "delete",
            "sealed",
            "--location",
            &url,
            "--confirm",
        ],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        s3.list_versions("lock/backups/sealed/")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_locks_backups_and_its_expiry_waits_for_the_retention() {
    let a = Cluster::up(&unique("lock-ctl")).await;
    let minio = Minio::up(&unique("lock-ctl"));
    let admin = minio.tidemark_store(BUCKET, "");
    api(&admin).create_bucket(true).await.unwrap();
    install_crds(&a.client).await;
    apply_docs(
        &a.client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "prices", "namespace": "shop"},
                   "data": {"apple": "1"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": NS},
                   "stringData": {"cloud": minio.credentials_file()}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location", "metadata": {"name": "default", "namespace": NS},
                   "spec": {"provider": "s3", "bucket": BUCKET, "prefix": "ctl", "default": true,
                            "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"], "s3ForcePathStyle": "true"},
                            "credential": {"name": "s3-credentials", "key": "cloud"},
                            "objectLock": {"mode": "Governance"},
                            "syncPeriod": "0", "validationPeriod": "2s"}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "nightly", "namespace": NS},
                   "spec": {"template": {"includedNamespaces": ["shop"], "ttl": "20s"}}}),
        ],
    )
    .await;
    let server = Server::start(&a.kubeconfig, NS, &[]);
    let backups: Api<Backup> = Api::namespaced(a.client.clone(), NS);
    wait_for(
        "the controller's locked backup",
        Duration::from_secs(90),
        || async {
            let b = backups.get("nightly").await.ok()?;
            (b.status?.phase.as_deref() == Some("Completed")).then_some(())
        },
    )
    .await;
    let s3 = api(&admin);
    let files = versions(s3, "ctl/backups/nightly/").await;
    assert!(!files.is_empty());
    for (key, version) in &files {
        let r = s3.retention(key, Some(version)).await.unwrap().unwrap();
        assert_eq!(r.mode, LockMode::Governance, "{key}");
    }
    // A retention longer than the TTL (a bucket default, a legal requirement): extended here.
    let until = (Utc::now() + chrono::Duration::seconds(45))
        .with_nanosecond_zero()
        .unwrap();
    for (key, _) in &files {
        s3.put_retention(
            key,
            Retention {
                mode: LockMode::Governance,
                retain_until: until,
            },
        )
        .await
        .unwrap();
    }
    // Expiry waits, saying why, and the backup stays Completed (still restorable).
    let message = wait_for(
        "expiry waiting for the retention",
        Duration::from_secs(60),
        || async {
            let b = backups.get("nightly").await.ok()?;
            let s = b.status?;
            let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.reason == "Retained").then(|| (s.phase, ready.message.clone()))
        },
    )
    .await;
    assert_eq!(message.0.as_deref(), Some("Completed"));
    assert!(
        message
            .1
            .contains("under S3 Object Lock (GOVERNANCE) until"),
        "{}",
        message.1
    );
    assert!(!versions(s3, "ctl/backups/nightly/").await.is_empty());
    // Then it is deleted, every version.
    wait_for(
        "the backup deleted after its retention",
        Duration::from_secs(120),
        || async {
            backups
                .get_opt("nightly")
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    assert!(
        s3.list_versions("ctl/backups/nightly/")
            .await
            .unwrap()
            .is_empty()
    );
    drop(server);
}

/// object_store's plain S3 client of the locked bucket (what anyone holding the credentials
/// could use).
fn minio_store(minio: &Minio) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_endpoint(&minio.env["AWS_ENDPOINT_URL"])
        .with_region(&minio.env["AWS_REGION"])
        .with_access_key_id(&minio.env["AWS_ACCESS_KEY_ID"])
        .with_secret_access_key(&minio.env["AWS_SECRET_ACCESS_KEY"])
        .with_allow_http(true)
        .build()
        .unwrap()
}

fn sha(b: &[u8]) -> Vec<u8> {
    sha2::Sha256::digest(b).to_vec()
}

trait WholeSeconds: Sized {
    fn with_nanosecond_zero(self) -> Option<Self>;
}

impl WholeSeconds for DateTime<Utc> {
    fn with_nanosecond_zero(self) -> Option<Self> {
        chrono::Timelike::with_nanosecond(&self, 0)
    }
}
