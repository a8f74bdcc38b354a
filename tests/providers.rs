//! The provider conformance suite (issue 19): the same backup, restore, sync and read-only checks
//! run once per object-store provider, each against a real server started by `scripts/testenv`:
//! S3 on MinIO, Azure Blob Storage on Azurite, Google Cloud Storage on fake-gcs-server, and a
//! directory.
//!
//! Each run: a CLI backup of one namespace into the location (direct mode, credentials from the
//! environment as a user gives them); `backup get`, `describe` and `download`; a restore into a
//! mapped namespace of the real test API server; an object larger than two upload parts written
//! and read back through the store's client; then a second cluster whose controller reads the
//! same bucket through Locations with a credential Secret holding the provider's credentials
//! file in Velero's format: it syncs the backup's record, refuses a backup on the read-only
//! Location without writing anything (the store's listing is compared before and after, for
//! the controller and for the CLI), and writes a backup on a read-write one.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};
use support::*;
use tidemark::api::tidemark::{Backup, Location};
use tidemark::store::{AccessMode, LocationUrl, PART_SIZE, Provider, Secrets, Store};

const NS: &str = "tidemark";
const PREFIX: &str = "conformance";

/// Clusters are the heavy part (an etcd and an API server each): at most two suites, four
/// clusters, at a time.
static CLUSTER_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// One provider's store, as the suite sees it.
struct Fixture {
    /// Its name in messages and instance names.
    name: &'static str,
    /// The Location `provider`.
    provider: &'static str,
    /// Bucket (S3, GCS), container (Azure) or directory (filesystem).
    bucket: String,
    /// The Location's `config` (Velero's keys).
    config: BTreeMap<String, String>,
    /// The credentials file in Velero's format (the Location Secret's content).
    credentials: Option<String>,
    /// Direct-mode location URL for a prefix.
    url: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// Direct-mode environment (credentials as a user gives them), without `KUBECONFIG`.
    env: Vec<(String, String)>,
    /// A client of the store built here, independently of tidemark's location settings, for
    /// listings.
    raw: Arc<dyn ObjectStore>,
    /// Keeps the server running.
    _server: Box<dyn std::any::Any + Send + Sync>,
}

impl Fixture {
    /// Every object under `prefix` with its size.
    async fn list(&self, prefix: &str) -> BTreeSet<String> {
        let p = object_store::path::Path::from(prefix);
        self.raw
            .list(Some(&p))
            .map(|m| {
                let m = m.unwrap_or_else(|e| panic!("{}: list {prefix}: {e}", self.name));
                format!("{} {}", m.location, m.size)
            })
            .collect()
            .await
    }

    /// The direct-mode environment plus `KUBECONFIG`.
    fn env_with<'a>(&'a self, kubeconfig: &'a str) -> Vec<(&'a str, &'a str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("KUBECONFIG", kubeconfig)])
            .collect()
    }

    /// The store as the controller opens it: this config and the credentials file.
    fn store(&self, prefix: &str) -> Store {
        let provider = match self.provider {
            "s3" => Provider::S3,
            "azure" => Provider::Azure,
            "gcp" => Provider::Gcp,
            _ => Provider::Filesystem,
        };
        let url = LocationUrl::new(
            provider,
            &self.bucket,
            prefix,
            self.config.clone(),
            AccessMode::ReadWrite,
        );
        let secrets = match &self.credentials {
            Some(text) => Secrets::from_credentials_file(provider, text, None)
                .unwrap_or_else(|e| panic!("{}: credentials file: {e}", self.name)),
            None => Secrets::default(),
        };
        Store::open_with(&url, &secrets).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// A Location object on this store.
    fn location(&self, name: &str, prefix: &str, access: &str) -> Value {
        let mut spec = json!({
            "provider": self.provider, "bucket": self.bucket, "prefix": prefix,
            "config": self.config, "accessMode": access,
            "syncPeriod": "3s", "validationPeriod": "3s",
        });
        if self.credentials.is_some() {
            spec["credential"] = json!({"name": "cloud-credentials", "key": "cloud"});
        }
        json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location",
               "metadata": {"name": name, "namespace": NS}, "spec": spec})
    }
}

fn minio() -> Fixture {
    let m = Minio::up(&unique("pv-minio"));
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(m.bucket())
        .with_endpoint(&m.env["AWS_ENDPOINT_URL"])
        .with_region(&m.env["AWS_REGION"])
        .with_access_key_id(&m.env["AWS_ACCESS_KEY_ID"])
        .with_secret_access_key(&m.env["AWS_SECRET_ACCESS_KEY"])
        .with_allow_http(true)
        .build()
        .unwrap();
    let config = BTreeMap::from([
        ("region".to_string(), m.env["AWS_REGION"].clone()),
        ("s3Url".to_string(), m.env["AWS_ENDPOINT_URL"].clone()),
        ("s3ForcePathStyle".to_string(), "true".to_string()),
    ]);
    let bucket = m.bucket().to_string();
    let b = bucket.clone();
    Fixture {
        name: "S3 (MinIO)",
        provider: "s3",
        bucket,
        config,
        credentials: Some(m.credentials_file()),
        url: Box::new(move |p| format!("s3://{b}/{p}")),
        env: m.env.clone().into_iter().collect(),
        raw: Arc::new(raw),
        _server: Box::new(m),
    }
}

fn azurite() -> Fixture {
    let a = Azurite::up(&unique("pv-azurite"));
    // A client of its own: the account's path-style endpoint, the account key.
    let raw = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(a.account())
        .with_access_key(a.key())
        .with_container_name(a.container())
        .with_endpoint(a.endpoint().to_string())
        .with_allow_http(true)
        .build()
        .unwrap();
    let mut config = a.config();
    // Velero BackupStorageLocations carry these too; accepted, and checked for their form.
    config.insert("resourceGroup".into(), "velero-backups".into());
    config.insert(
        "subscriptionId".into(),
        "0b1f6471-1bf0-4dda-aec3-111122223333".into(),
    );
    let a2 = Arc::new(a);
    let au = a2.clone();
    Fixture {
        name: "Azure (Azurite)",
        provider: "azure",
        bucket: a2.container().to_string(),
        config,
        credentials: Some(a2.credentials_file()),
        url: Box::new(move |p| au.url(p)),
        env: vec![(AZURE_KEY_VAR.to_string(), a2.key().to_string())],
        raw: Arc::new(raw),
        _server: Box::new(a2),
    }
}

fn fake_gcs() -> Fixture {
    let g = FakeGcs::up(&unique("pv-fakegcs"));
    let raw = object_store::gcp::GoogleCloudStorageBuilder::new()
        .with_bucket_name(g.bucket())
        .with_base_url(g.endpoint())
        .with_service_account_key(g.credentials_file())
        .build()
        .unwrap();
    let g2 = Arc::new(g);
    let gu = g2.clone();
    Fixture {
        name: "GCS (fake-gcs-server)",
        provider: "gcp",
        bucket: g2.bucket().to_string(),
        config: g2.config(),
        credentials: Some(g2.credentials_file()),
        url: Box::new(move |p| gu.url(p)),
        env: vec![(
            "GOOGLE_APPLICATION_CREDENTIALS".to_string(),
            g2.env["GOOGLE_APPLICATION_CREDENTIALS"].clone(),
        )],
        raw: Arc::new(raw),
        _server: Box::new(g2),
    }
}

fn filesystem() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    for p in [PREFIX, "from-b", "multipart"] {
        std::fs::create_dir_all(dir.path().join(p)).unwrap();
    }
    let root = dir.path().display().to_string();
    let r = root.clone();
    let raw = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    Fixture {
        name: "filesystem",
        provider: "filesystem",
        bucket: root,
        config: BTreeMap::new(),
        credentials: None,
        url: Box::new(move |p| format!("file://{r}/{p}")),
        env: Vec::new(),
        raw: Arc::new(raw),
        _server: Box::new(dir),
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn phase(v: &Value) -> Option<&str> {
    v.pointer("/status/phase").and_then(Value::as_str)
}

/// The suite, on one provider's store.
async fn conformance(fx: Fixture) {
    let started = Instant::now();
    let _slot = CLUSTER_SLOTS.acquire().await.unwrap();
    let who = fx.name;
    let a = Cluster::up(&unique(&format!("pv-{}-a", fx.provider))).await;
    let ka = a.kubeconfig.to_str().unwrap();
    apply_docs(
        &a.client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"},
                   "data": {"mode": "blue"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": "shop"},
                   "stringData": {"token": "s3cr3t"}}),
        ],
    )
    .await;
    let url = (fx.url)(PREFIX);
    let env = fx.env_with(ka);

    // A backup through the CLI, with the credentials a user gives it.
    let out = tidemark(
        &[
            "backup",
            "create",
            "b1",
            "--include-namespaces",
            "shop",
            "--location",
            &url,
        ],
        &env,
    );
    assert!(out.status.success(), "{who}: backup create: {}", show(&out));
    assert!(stdout(&out).contains("Completed"), "{who}: {}", show(&out));
    let listing = fx.list(PREFIX).await;
    for file in [
        "velero-backup.json",
        "b1.tar.gz",
        "b1-logs.gz",
        "b1-resource-list.json.gz",
        "b1-results.gz",
    ] {
        let key = format!("{PREFIX}/backups/b1/{file} ");
        assert!(
            listing.iter().any(|l| l.starts_with(&key)),
            "{who}: no {key}in the store: {listing:#?}"
        );
    }

    // get, describe, download.
    let out = tidemark(&["backup", "get", "--location", &url], &env);
    assert!(out.status.success(), "{who}: backup get: {}", show(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("b1 ") && l.contains("Completed")),
        "{who}: {}",
        show(&out)
    );
    let out = tidemark(
        &["backup", "describe", "b1", "--details", "--location", &url],
        &env,
    );
    assert!(
        out.status.success(),
        "{who}: backup describe: {}",
        show(&out)
    );
    let described = stdout(&out);
    assert!(
        described.contains("Phase:  Completed"),
        "{who}: {described}"
    );
    assert!(described.contains("shop/settings"), "{who}: {described}");
    let dl = tempfile::tempdir().unwrap();
    let file = dl.path().join("b1.tar.gz");
    let out = tidemark(
        &[
            "backup",
            "download",
            "b1",
            "-o",
            file.to_str().unwrap(),
            "--location",
            &url,
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{who}: backup download: {}",
        show(&out)
    );
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(
        std::fs::File::open(&file).unwrap(),
    ));
    let members: Vec<String> = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(
        members.contains(&"resources/configmaps/namespaces/shop/settings.json".to_string()),
        "{who}: {members:?}"
    );

    // A restore into a mapped namespace of the API server.
    let out = tidemark(
        &[
            "restore",
            "create",
            "r1",
            "--from-backup",
            "b1",
            "--namespace-mappings",
            "shop:shop-copy",
            "--location",
            &url,
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{who}: restore create: {}",
        show(&out)
    );
    let copy: Api<ConfigMap> = Api::namespaced(a.client.clone(), "shop-copy");
    let cm = copy
        .get("settings")
        .await
        .unwrap_or_else(|e| panic!("{who}: restored ConfigMap: {e}"));
    assert_eq!(cm.data.unwrap()["mode"], "blue", "{who}");
    let out = tidemark(&["restore", "get", "--location", &url], &env);
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("r1 ")),
        "{who}: {}",
        show(&out)
    );

    // An object of more than two parts, through the store's upload, read back by the other
    // client.
    let store = fx.store("multipart");
    let path = store.layout().backup_file("big", "big.tar.gz");
    // The same object from the bucket's root (a filesystem store is rooted at its
    // prefix's directory).
    let raw_path = object_store::path::Path::from("multipart/backups/big/big.tar.gz");
    let mut up = store.upload(&path).await.unwrap();
    let mut want = Vec::with_capacity(2 * PART_SIZE + 4096);
    for i in 0..(2 * PART_SIZE + 4096) / 65536 + 1 {
        let chunk = vec![(i % 251) as u8; 65536];
        want.extend_from_slice(&chunk);
        up.write(bytes::Bytes::from(chunk)).await.unwrap();
    }
    up.finish()
        .await
        .unwrap_or_else(|e| panic!("{who}: multipart upload: {e}"));
    let got = fx
        .raw
        .get(&raw_path)
        .await
        .unwrap_or_else(|e| panic!("{who}: read back {raw_path}: {e}"))
        .bytes()
        .await
        .unwrap();
    assert!(got == want, "{who}: the object read back differs");
    // A create-only write never replaces an object (the backup's metadata is written so).
    let marker = store.layout().backup_file("big", "marker");
    store
        .put(&marker, bytes::Bytes::from_static(b"one"), true)
        .await
        .unwrap_or_else(|e| panic!("{who}: create-only put: {e}"));
    let again = store
        .put(&marker, bytes::Bytes::from_static(b"two"), true)
        .await;
    assert!(
        matches!(
            again,
            Err(tidemark::store::StoreError::AlreadyExists { .. })
        ),
        "{who}: a second create-only put gave {again:?}"
    );
    assert_eq!(&store.get(&marker).await.unwrap()[..], b"one", "{who}");

    // A second cluster: its controller reads the bucket through Locations whose credential
    // Secret holds the provider's credentials file.
    let b = Cluster::up(&unique(&format!("pv-{}-b", fx.provider))).await;
    install_crds(&b.client).await;
    let mut docs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "shop"},
               "data": {"mode": "green"}}),
    ];
    if let Some(creds) = &fx.credentials {
        docs.push(json!({"apiVersion": "v1", "kind": "Secret",
                         "metadata": {"name": "cloud-credentials", "namespace": NS},
                         "stringData": {"cloud": creds}}));
    }
    docs.push(fx.location("shared", PREFIX, "ReadOnly"));
    docs.push(fx.location("own", "from-b", "ReadWrite"));
    apply_docs(&b.client, &docs).await;
    let server = Server::start(&b.kubeconfig, NS, &[]);
    let locations: Api<Location> = Api::namespaced(b.client.clone(), NS);
    for name in ["shared", "own"] {
        wait_for(
            &format!("{who}: Location {name} Available"),
            Duration::from_secs(60),
            || async {
                let l = serde_json::to_value(locations.get(name).await.ok()?).ok()?;
                (phase(&l) == Some("Available")).then_some(())
            },
        )
        .await;
    }
    let backups: Api<Backup> = Api::namespaced(b.client.clone(), NS);
    wait_for(
        &format!("{who}: backup b1 synced into the second cluster"),
        Duration::from_secs(60),
        || async {
            let r = serde_json::to_value(backups.get_opt("b1").await.ok()??).ok()?;
            (phase(&r) == Some("Completed")).then_some(())
        },
    )
    .await;

    // Read-only: the controller refuses a backup and writes nothing...
    let before = fx.list(PREFIX).await;
    apply_docs(
        &b.client,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup",
                 "metadata": {"name": "refused", "namespace": NS},
                 "spec": {"template": {"location": "shared", "includedNamespaces": ["shop"]}}}),
        ],
    )
    .await;
    let refused = wait_for(
        &format!("{who}: backup refused on the read-only Location"),
        Duration::from_secs(60),
        || async {
            let r = serde_json::to_value(backups.get("refused").await.ok()?).ok()?;
            matches!(phase(&r), Some("FailedValidation" | "Failed")).then_some(r)
        },
    )
    .await;
    assert!(refused.to_string().contains("ReadOnly"), "{who}: {refused}");
    assert_eq!(
        fx.list(PREFIX).await,
        before,
        "{who}: the refused backup wrote to the store"
    );
    // ... and so does the CLI, on the same location read-only.
    let read_only = if url.contains('?') {
        format!("{url}&accessMode=ReadOnly")
    } else {
        format!("{url}?accessMode=ReadOnly")
    };
    let out = tidemark(&["backup", "create", "ro1", "--location", &read_only], &env);
    assert!(!out.status.success(), "{who}: {}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{who}: {}",
        show(&out)
    );
    assert_eq!(
        fx.list(PREFIX).await,
        before,
        "{who}: the refused CLI backup wrote to the store"
    );

    // Read-write: the controller writes with the Secret's credentials.
    apply_docs(
        &b.client,
        &[
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup",
                 "metadata": {"name": "from-b", "namespace": NS},
                 "spec": {"template": {"location": "own", "includedNamespaces": ["shop"]}}}),
        ],
    )
    .await;
    wait_for(
        &format!("{who}: backup from-b Completed by the controller"),
        Duration::from_secs(90),
        || async {
            let r = serde_json::to_value(backups.get("from-b").await.ok()?).ok()?;
            (phase(&r) == Some("Completed")).then_some(())
        },
    )
    .await;
    let written = fx.list("from-b").await;
    assert!(
        written
            .iter()
            .any(|l| l.starts_with("from-b/backups/from-b/velero-backup.json ")),
        "{who}: {written:#?}\n{}",
        server.log()
    );
    drop(server);
    eprintln!("{who}: conformance passed in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_on_minio() {
    conformance(minio()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_on_azurite() {
    conformance(azurite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_on_fake_gcs_server() {
    conformance(fake_gcs()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filesystem_directory() {
    conformance(filesystem()).await;
}
