//! Client-side encryption (age) against real components: the corpus and a known Secret backed
//! up to MinIO with a key made by the real `age-keygen`; no object of the backup folder but
//! `velero-backup.json` holds the Secret's value; the real `age -d` decrypts the tarball to a
//! Velero-layout tar; tidemark restores it into a second cluster whole; a wrong or missing key
//! fails before anything is created; a controller with an encrypted Location writes encrypted
//! backups too.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use futures::TryStreamExt;
use kube::api::Api;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};
use support::*;
use tidemark::api::tidemark::Backup;

const SECRET_VALUE: &str = "tidemark-known-secret-value-4Q7Z9";
const NS: &str = "tidemark";

fn age_keygen(path: &Path) -> String {
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(path)
        .output()
        .expect("age-keygen (Debian package age; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "Public key: age1..." on stderr.
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("Public key: "))
        .expect("age-keygen prints the public key")
        .trim()
        .to_string()
}

/// Every object of a backup folder, raw as stored.
async fn folder(s3: &impl ObjectStore, prefix: &str, backup: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = StorePath::from(format!("{prefix}/backups/{backup}"));
    let metas: Vec<_> = s3.list(Some(&dir)).try_collect().await.unwrap();
    let mut out = BTreeMap::new();
    for m in metas {
        let bytes = s3.get(&m.location).await.unwrap().bytes().await.unwrap();
        out.insert(m.location.filename().unwrap().to_string(), bytes.to_vec());
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The folder holds nothing readable but `velero-backup.json`: every other object is an age
/// file without the Secret's value, plain or base64.
fn assert_sealed(files: &BTreeMap<String, Vec<u8>>, backup: &str) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE);
    assert!(
        files.contains_key(&format!("{backup}.tar.gz")),
        "{:?}",
        files.keys()
    );
    for (name, bytes) in files {
        if name == "velero-backup.json" {
            let record: Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(
                record["metadata"]["annotations"]["tidemark.dev/encryption"], "age",
                "{record:#}"
            );
            continue;
        }
        assert!(
            bytes.starts_with(b"age-encryption.org/v1\n"),
            "{name} is not an age file"
        );
        assert!(
            !contains(bytes, SECRET_VALUE.as_bytes()),
            "{name} leaks the secret"
        );
        assert!(
            !contains(bytes, b64.as_bytes()),
            "{name} leaks the secret (base64)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_backups_leak_nothing_and_restore_with_the_key_only() {
    let a = Cluster::up(&unique("enc-a")).await;
    let b = Cluster::up(&unique("enc-b")).await;
    let minio = Minio::up(&unique("enc"));
    let (accepted, _) = load_corpus(&a.client).await;
    apply_docs(
        &a.client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vault"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "vault"},
                   "stringData": {"password": SECRET_VALUE}}),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.txt");
    let public = age_keygen(&key);
    let wrong = dir.path().join("wrong.txt");
    age_keygen(&wrong);
    let (ka, kb) = (
        a.kubeconfig.to_str().unwrap().to_string(),
        b.kubeconfig.to_str().unwrap().to_string(),
    );
    let (env_a, env_b) = (minio.env_with(&ka), minio.env_with(&kb));
    let url = minio.url("enc");
    let key_s = key.to_str().unwrap();

    let out = tidemark(
        &[
            "backup",
            "create",
            "sealed",
            "--location",
            &url,
            "--encryption-key-file",
            key_s,
        ],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));
    let s3 = minio.object_store();
    let files = folder(&s3, "enc", "sealed").await;
    assert_sealed(&files, "sealed");

    // The plain age command decrypts the tarball into Velero's layout.
    let sealed_tar = dir.path().join("sealed.tar.gz.age");
    std::fs::write(&sealed_tar, &files["sealed.tar.gz"]).unwrap();
    let out = Command::new("age")
        .args(["-d", "-i", key_s])
        .arg(&sealed_tar)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut tar = tar::Archive::new(flate2::read::MultiGzDecoder::new(&out.stdout[..]));
    let mut found_secret = false;
    let mut paths = Vec::new();
    for e in tar.entries().unwrap() {
        let mut e = e.unwrap();
        let p = e.path().unwrap().display().to_string();
        if p == "resources/secrets/namespaces/vault/db.json" {
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            let v: Value = serde_json::from_str(&s).unwrap();
            let want = base64::engine::general_purpose::STANDARD.encode(SECRET_VALUE);
            assert_eq!(v["data"]["password"], want.as_str());
            found_secret = true;
        }
        paths.push(p);
    }
    assert!(paths.contains(&"metadata/version".to_string()), "{paths:?}");
    assert!(found_secret, "the Secret is not in the decrypted archive");

    // describe says it is encrypted, and to whom.
    let out = tidemark(
        &[
            "backup",
            "describe",
            "sealed",
            "--location",
            &url,
            "--encryption-key-file",
            key_s,
        ],
        &env_a,
    );
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        show(&out).contains(&format!(
            "Encryption:  age, to {public} (Velero cannot read"
        )),
        "{}",
        show(&out)
    );

    // No key, or the wrong one: a clear error, and nothing is created.
    let out = tidemark(
        &[
            "restore",
            "create",
            "nokey",
            "--from-backup",
            "sealed",
            "--location",
            &url,
            "--namespace-mappings",
            "vault:vault-nokey",
        ],
        &env_b,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(show(&out).contains("is encrypted (age)"), "{}", show(&out));
    let out = tidemark(
        &[
            "restore",
            "create",
            "wrongkey",
            "--from-backup",
            "sealed",
            "--location",
            &url,
            "--namespace-mappings",
            "vault:vault-wrong",
            "--encryption-key-file",
            wrong.to_str().unwrap(),
        ],
        &env_b,
    );
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(show(&out).contains("cannot decrypt"), "{}", show(&out));
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(b.client.clone());
    for ns in ["vault-nokey", "vault-wrong", "vault"] {
        assert!(
            namespaces.get_opt(ns).await.unwrap().is_none(),
            "{ns} was created"
        );
    }

    // With the key: the whole corpus and the Secret come back.
    let out = tidemark(
        &[
            "restore",
            "create",
            "unsealed",
            "--from-backup",
            "sealed",
            "--location",
            &url,
            "--encryption-key-file",
            key_s,
        ],
        &env_b,
    );
    assert!(out.status.success(), "{}", show(&out));
    let problems = compare_clusters(&a.client, &b.client, &accepted, &BTreeMap::new()).await;
    assert!(problems.is_empty(), "{problems:#?}");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(b.client.clone(), "vault");
    let db = secrets.get("db").await.unwrap();
    assert_eq!(&db.data.unwrap()["password"].0[..], SECRET_VALUE.as_bytes());
    // The restore's own files are sealed too.
    let restore_dir = StorePath::from("enc/restores/unsealed");
    let metas: Vec<_> = s3.list(Some(&restore_dir)).try_collect().await.unwrap();
    assert!(!metas.is_empty());
    for m in metas {
        let bytes = s3.get(&m.location).await.unwrap().bytes().await.unwrap();
        assert!(
            bytes.starts_with(b"age-encryption.org/v1\n"),
            "{} is plain",
            m.location
        );
    }

    // A controller whose Location has spec.encryption writes encrypted backups.
    install_crds(&a.client).await;
    apply_docs(
        &a.client,
        &[
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": NS},
                   "stringData": {"cloud": minio.credentials_file()}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "backup-key", "namespace": NS},
                   "stringData": {"identity": std::fs::read_to_string(&key).unwrap()}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location", "metadata": {"name": "default", "namespace": NS},
                   "spec": {"provider": "s3", "bucket": minio.bucket(), "prefix": "enc", "default": true,
                            "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"], "s3ForcePathStyle": "true"},
                            "credential": {"name": "s3-credentials", "key": "cloud"},
                            "encryption": {"secretName": "backup-key"},
                            "syncPeriod": "2s", "validationPeriod": "2s"}}),
            json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup", "metadata": {"name": "by-controller", "namespace": NS},
                   "spec": {"template": {"includedNamespaces": ["vault"]}}}),
        ],
    )
    .await;
    let server = Server::start(&a.kubeconfig, NS, &[]);
    let backups: Api<Backup> = Api::namespaced(a.client.clone(), NS);
    wait_for(
        "the controller's encrypted backup",
        Duration::from_secs(90),
        || async {
            let b = backups.get("by-controller").await.ok()?;
            (b.status?.phase.as_deref() == Some("Completed")).then_some(())
        },
    )
    .await;
    assert_sealed(&folder(&s3, "enc", "by-controller").await, "by-controller");
    // The synced record of the direct-mode backup: the controller reads the encrypted bucket.
    wait_for(
        "the direct-mode backup synced",
        Duration::from_secs(60),
        || async {
            let b = backups.get("sealed").await.ok()?;
            (b.status?.phase.as_deref() == Some("Completed")).then_some(())
        },
    )
    .await;
    drop(server);
}
