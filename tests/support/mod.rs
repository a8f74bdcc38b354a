//! Test support: real clusters, MinIO and the Azure and GCS emulators started with
//! `scripts/testenv`, the `tidemark` binary, and the shared corpus (`../shared/corpus`, or
//! `$TIDEMARK_CORPUS`).
//!
//! Every [`Cluster`], [`Minio`], [`Azurite`] and [`FakeGcs`] stops and removes its state when
//! dropped.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use kube::{Client, ResourceExt};
use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the test environment's binaries once per test process (quiet and instant when warm).
fn ensure_built() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let out = Command::new(repo().join("scripts/testenv"))
            .arg("build")
            .output()
            .expect("run scripts/testenv build");
        assert!(
            out.status.success(),
            "scripts/testenv build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

fn testenv(args: &[&str]) -> String {
    testenv_with(args, &[])
}

/// Runs `scripts/testenv` with extra environment variables.
fn testenv_with(args: &[&str], env: &[(&str, &str)]) -> String {
    ensure_built();
    let out = Command::new(repo().join("scripts/testenv"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run scripts/testenv");
    assert!(
        out.status.success(),
        "scripts/testenv {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 exports")
}

/// Parses `export K=V` lines (values optionally single- or double-quoted).
pub fn parse_exports(s: &str) -> BTreeMap<String, String> {
    s.lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .or_else(|| v.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
                .unwrap_or(v);
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// A unique instance name for this test process.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

/// A running kube-apiserver + etcd (+ controller-manager), stopped on drop.
pub struct Cluster {
    /// Instance name.
    pub name: String,
    /// Its kubeconfig.
    pub kubeconfig: PathBuf,
    /// A client for it.
    pub client: Client,
}

impl Cluster {
    /// Starts cluster `name`.
    pub async fn up(name: &str) -> Cluster {
        Cluster::up_with_apiserver_args(name, "").await
    }

    /// Starts cluster `name` with extra kube-apiserver flags (space-separated, e.g.
    /// `--watch-cache=false`; `TIDEMARK_TESTENV_APISERVER_ARGS` of `scripts/testenv`).
    pub async fn up_with_apiserver_args(name: &str, apiserver_args: &str) -> Cluster {
        let exports = testenv_with(
            &["up", name],
            &[("TIDEMARK_TESTENV_APISERVER_ARGS", apiserver_args)],
        );
        // Stop the cluster again if anything below fails.
        let guard = DownGuard(vec!["down".into(), name.into()]);
        let env = parse_exports(&exports);
        let kubeconfig = PathBuf::from(env.get("KUBECONFIG").expect("KUBECONFIG export"));
        let cluster = Cluster::attach(&kubeconfig).await;
        std::mem::forget(guard);
        cluster
    }

    /// Connects to the running testenv cluster whose kubeconfig is `kubeconfig` (its run
    /// directory's `kubeconfig`, e.g. a cluster a benchmark kept with `--keep`). Like one from
    /// [`Cluster::up`], it is stopped when dropped: `std::mem::forget` it to leave it running.
    pub async fn attach(kubeconfig: &Path) -> Cluster {
        let name = kubeconfig
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
            .expect("the kubeconfig sits in the cluster's run directory")
            .to_string();
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        let client = Client::try_from(cfg).expect("client");
        Cluster {
            name,
            kubeconfig: kubeconfig.to_path_buf(),
            client,
        }
    }
}

/// Runs `scripts/testenv <args>` when dropped.
struct DownGuard(Vec<String>);

impl Drop for DownGuard {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/testenv"))
            .args(&self.0)
            .output();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/testenv"))
            .args(["down", &self.name])
            .output();
    }
}

/// A running MinIO with one bucket, stopped on drop.
pub struct Minio {
    /// Instance name.
    pub name: String,
    /// Its `AWS_*` and `TIDEMARK_TEST_BUCKET` variables.
    pub env: BTreeMap<String, String>,
}

impl Minio {
    /// Starts MinIO instance `name`.
    pub fn up(name: &str) -> Minio {
        let env = parse_exports(&testenv(&["minio", "up", name]));
        assert!(env.contains_key("TIDEMARK_TEST_BUCKET"), "{env:?}");
        Minio {
            name: name.to_string(),
            env,
        }
    }

    /// The bucket created for the tests.
    pub fn bucket(&self) -> &str {
        &self.env["TIDEMARK_TEST_BUCKET"]
    }

    /// An `s3://bucket/prefix` location URL.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket())
    }

    /// Its keys as an AWS shared credentials file (a Location credential Secret's content).
    pub fn credentials_file(&self) -> String {
        format!(
            "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            self.env["AWS_ACCESS_KEY_ID"], self.env["AWS_SECRET_ACCESS_KEY"]
        )
    }

    /// A client of its bucket (object_store's S3 client), to look at what the tests wrote.
    pub fn object_store(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(self.bucket())
            .with_endpoint(&self.env["AWS_ENDPOINT_URL"])
            .with_region(&self.env["AWS_REGION"])
            .with_access_key_id(&self.env["AWS_ACCESS_KEY_ID"])
            .with_secret_access_key(&self.env["AWS_SECRET_ACCESS_KEY"])
            .with_allow_http(true)
            .build()
            .unwrap()
    }

    /// Its variables plus `KUBECONFIG`, for [`tidemark`] runs in direct mode.
    pub fn env_with<'a>(&'a self, kubeconfig: &'a str) -> Vec<(&'a str, &'a str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("KUBECONFIG", kubeconfig)])
            .collect()
    }

    /// tidemark's own store of its bucket `bucket` (the test bucket or another one) under
    /// `prefix`, opened with its keys as a Location's Secret would give them: for what only
    /// tidemark's client does (Object Lock, versions, unfinished multipart uploads).
    pub fn tidemark_store(&self, bucket: &str, prefix: &str) -> tidemark::store::Store {
        let url: tidemark::store::LocationUrl = format!(
            "s3://{bucket}/{prefix}?region={}&s3Url={}&s3ForcePathStyle=true",
            self.env["AWS_REGION"], self.env["AWS_ENDPOINT_URL"]
        )
        .parse()
        .unwrap();
        let secrets = tidemark::store::Secrets {
            aws_credentials: Some((
                self.env["AWS_ACCESS_KEY_ID"].clone(),
                self.env["AWS_SECRET_ACCESS_KEY"].clone(),
            )),
            ..Default::default()
        };
        tidemark::store::Store::open_with(&url, &secrets).unwrap()
    }
}

impl Drop for Minio {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/testenv"))
            .args(["minio", "down", &self.name])
            .output();
    }
}

/// The variable holding an Azurite instance's account key (the name Velero's Azure docs use; a
/// Location's `storageAccountKeyEnvVar` names it).
pub const AZURE_KEY_VAR: &str = "AZURE_STORAGE_ACCOUNT_ACCESS_KEY";

/// A running Azurite (Azure Blob Storage emulator) with one container and its own random
/// account and key, stopped on drop.
pub struct Azurite {
    /// Instance name.
    pub name: String,
    /// Its exports: [`AZURE_KEY_VAR`] and `TIDEMARK_TEST_AZURE_{ACCOUNT,ENDPOINT,CONTAINER}`.
    pub env: BTreeMap<String, String>,
}

impl Azurite {
    /// Starts Azurite instance `name`.
    pub fn up(name: &str) -> Azurite {
        let env = parse_exports(&testenv(&["azurite", "up", name]));
        assert!(env.contains_key("TIDEMARK_TEST_AZURE_CONTAINER"), "{env:?}");
        Azurite {
            name: name.to_string(),
            env,
        }
    }

    /// The container created for the tests.
    pub fn container(&self) -> &str {
        &self.env["TIDEMARK_TEST_AZURE_CONTAINER"]
    }

    /// The storage account's name.
    pub fn account(&self) -> &str {
        &self.env["TIDEMARK_TEST_AZURE_ACCOUNT"]
    }

    /// The account's blob endpoint (`http://127.0.0.1:PORT/ACCOUNT`, path style).
    pub fn endpoint(&self) -> &str {
        &self.env["TIDEMARK_TEST_AZURE_ENDPOINT"]
    }

    /// The account key (base64).
    pub fn key(&self) -> &str {
        &self.env[AZURE_KEY_VAR]
    }

    /// A Location's `config`, Velero's Azure keys: the account, the credentials variable
    /// holding its key, the endpoint.
    pub fn config(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("storageAccount".to_string(), self.account().to_string()),
            (
                "storageAccountKeyEnvVar".to_string(),
                AZURE_KEY_VAR.to_string(),
            ),
            ("storageAccountURI".to_string(), self.endpoint().to_string()),
        ])
    }

    /// An `azure://container/prefix?storageAccount=..` location URL (the key comes from the
    /// environment, see [`Azurite::env_with`]).
    pub fn url(&self, prefix: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.config())
            .finish();
        format!("azure://{}/{prefix}?{query}", self.container())
    }

    /// Its key as Velero's Azure credentials file (a Location credential Secret's content).
    pub fn credentials_file(&self) -> String {
        format!(
            "{AZURE_KEY_VAR}={}\nAZURE_CLOUD_NAME=AzurePublicCloud\n",
            self.key()
        )
    }

    /// The key variable plus `KUBECONFIG`, for [`tidemark`] runs in direct mode.
    pub fn env_with<'a>(&'a self, kubeconfig: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![(AZURE_KEY_VAR, self.key()), ("KUBECONFIG", kubeconfig)]
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/testenv"))
            .args(["azurite", "down", &self.name])
            .output();
    }
}

/// A running fake-gcs-server (Google Cloud Storage emulator) with one bucket and a generated
/// service-account key, stopped on drop.
pub struct FakeGcs {
    /// Instance name.
    pub name: String,
    /// Its exports: `GOOGLE_APPLICATION_CREDENTIALS` and
    /// `TIDEMARK_TEST_GCS_{ENDPOINT,BUCKET}`.
    pub env: BTreeMap<String, String>,
}

impl FakeGcs {
    /// Starts fake-gcs-server instance `name`.
    pub fn up(name: &str) -> FakeGcs {
        let env = parse_exports(&testenv(&["fakegcs", "up", name]));
        assert!(env.contains_key("TIDEMARK_TEST_GCS_BUCKET"), "{env:?}");
        FakeGcs {
            name: name.to_string(),
            env,
        }
    }

    /// The bucket created for the tests.
    pub fn bucket(&self) -> &str {
        &self.env["TIDEMARK_TEST_GCS_BUCKET"]
    }

    /// The emulator's endpoint (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> &str {
        &self.env["TIDEMARK_TEST_GCS_ENDPOINT"]
    }

    /// A Location's `config`, Velero's GCP keys: the endpoint.
    pub fn config(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("storeEndpoint".to_string(), self.endpoint().to_string())])
    }

    /// A `gs://bucket/prefix?storeEndpoint=..` location URL.
    pub fn url(&self, prefix: &str) -> String {
        format!(
            "gs://{}/{prefix}?storeEndpoint={}",
            self.bucket(),
            self.endpoint()
        )
    }

    /// The service-account key (JSON), Velero's GCP credentials file.
    pub fn credentials_file(&self) -> String {
        std::fs::read_to_string(&self.env["GOOGLE_APPLICATION_CREDENTIALS"])
            .expect("read the service-account key")
    }

    /// `GOOGLE_APPLICATION_CREDENTIALS` plus `KUBECONFIG`, for [`tidemark`] runs in direct mode.
    pub fn env_with<'a>(&'a self, kubeconfig: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                self.env["GOOGLE_APPLICATION_CREDENTIALS"].as_str(),
            ),
            ("KUBECONFIG", kubeconfig),
        ]
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/testenv"))
            .args(["fakegcs", "down", &self.name])
            .output();
    }
}

/// Runs the `tidemark` binary with `args` and extra environment.
pub fn tidemark(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tidemark")
}

/// Stdout and stderr of a run, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The shared corpus directory.
pub fn corpus_dir() -> PathBuf {
    std::env::var_os("TIDEMARK_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared/corpus"))
}

/// Reads every YAML document of a file as JSON values (empty documents dropped).
pub fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).ok()?;
            (v.is_object() && v.get("kind").is_some()).then_some(v)
        })
        .collect()
}

/// One object the source cluster accepted.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// Its resource.
    pub resource: ApiResource,
    /// Namespace, `None` when cluster-scoped.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

fn api(client: &Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

async fn apply_doc(
    client: &Client,
    discovery: &Discovery,
    doc: &Value,
    default_ns: Option<&str>,
) -> Result<Accepted, String> {
    let obj: DynamicObject = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let tm = obj.types.clone().ok_or("no type")?;
    let (ar, caps) = discovery
        .resolve_typemeta(&tm)
        .ok_or_else(|| format!("{}/{} not served", tm.api_version, tm.kind))?;
    let name = obj.name_any();
    let namespace = match caps.scope {
        Scope::Namespaced => Some(
            obj.metadata
                .namespace
                .clone()
                .or(default_ns.map(str::to_string))
                .ok_or("namespaced object without namespace")?,
        ),
        Scope::Cluster => None,
    };
    let mut body = doc.clone();
    if let Some(ns) = &namespace {
        body["metadata"]["namespace"] = Value::String(ns.clone());
    }
    let pp = PatchParams::apply("corpus-loader").force();
    api(client, &ar, namespace.as_deref())
        .patch(&name, &pp, &Patch::Apply(&body))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Accepted {
        resource: ar,
        namespace,
        name,
    })
}

async fn ensure_namespace(client: &Client, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let body =
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
    api.patch(
        ns,
        &PatchParams::apply("corpus-loader").force(),
        &Patch::Apply(&body),
    )
    .await
    .expect("create namespace");
}

/// Applies the whole corpus (CRDs first, waiting until Established; then each `apps/<dir>`,
/// namespaced objects without a namespace going into `<dir>`) with server-side apply, and
/// returns what the cluster accepted plus the rejections (`file: kind/name: reason`).
pub async fn load_corpus(client: &Client) -> (Vec<Accepted>, Vec<String>) {
    let dir = corpus_dir();
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    let mut discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("discovery");
    let mut crd_files: Vec<PathBuf> = std::fs::read_dir(dir.join("crds"))
        .expect("corpus crds")
        .map(|e| e.unwrap().path())
        .collect();
    crd_files.sort();
    let mut crd_names = Vec::new();
    for f in &crd_files {
        for doc in yaml_docs(f) {
            match apply_doc(client, &discovery, &doc, None).await {
                Ok(a) => {
                    crd_names.push(a.name.clone());
                    accepted.push(a);
                }
                Err(e) => rejected.push(format!("{}: {e}", f.display())),
            }
        }
    }
    wait_established(client, &crd_names).await;
    discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("discovery");
    let mut apps: Vec<PathBuf> = std::fs::read_dir(dir.join("apps"))
        .expect("corpus apps")
        .map(|e| e.unwrap().path())
        .collect();
    apps.sort();
    for app in apps {
        let ns = app.file_name().unwrap().to_string_lossy().to_string();
        let docs = yaml_docs(&app.join("manifests.yaml"));
        ensure_namespace(client, &ns).await;
        // Namespaces first, then any namespace a document names, then the rest.
        let (nss, rest): (Vec<&Value>, Vec<&Value>) =
            docs.iter().partition(|d| d["kind"] == "Namespace");
        for d in nss {
            match apply_doc(client, &discovery, d, None).await {
                Ok(a) => accepted.push(a),
                Err(e) => rejected.push(format!("{ns}: Namespace: {e}")),
            }
        }
        for d in &rest {
            if let Some(n) = d.pointer("/metadata/namespace").and_then(Value::as_str) {
                ensure_namespace(client, n).await;
            }
        }
        accepted.push(Accepted {
            resource: ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
            namespace: None,
            name: ns.clone(),
        });
        for d in rest {
            match apply_doc(client, &discovery, d, Some(&ns)).await {
                Ok(a) => accepted.push(a),
                Err(e) => rejected.push(format!(
                    "{ns}: {}/{}: {e}",
                    d["kind"].as_str().unwrap_or("?"),
                    d.pointer("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                )),
            }
        }
    }
    accepted.sort_by_key(|a| {
        (
            a.resource.plural.clone(),
            a.namespace.clone(),
            a.name.clone(),
        )
    });
    accepted.dedup_by(|a, b| {
        a.resource.plural == b.resource.plural
            && a.resource.group == b.resource.group
            && a.namespace == b.namespace
            && a.name == b.name
    });
    (accepted, rejected)
}

/// Waits until the named CRDs are Established.
pub async fn wait_established(client: &Client, names: &[String]) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for n in names {
        for _ in 0..300 {
            let crd = api.get(n).await.expect("get crd");
            let ok = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Annotations set by controllers, not by users: ignored when comparing clusters.
const CONTROLLER_ANNOTATIONS: &[&str] = &[
    "deployment.kubernetes.io/revision",
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "pv.kubernetes.io/provisioned-by",
    "volume.kubernetes.io/selected-node",
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
];

/// The user-owned content of an object: every top-level field but `metadata` and `status`,
/// plus labels (without the restore labels) and annotations (without controller-set ones);
/// server-assigned fields (Service clusterIP(s) and nodePorts, PVC volumeName) are dropped.
pub fn user_content(obj: &Value) -> Value {
    let mut out = obj.clone();
    let m = out.as_object_mut().expect("object");
    m.remove("status");
    let meta = m.remove("metadata").unwrap_or(Value::Null);
    let mut labels = meta
        .get("labels")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    if let Some(l) = labels.as_object_mut() {
        l.remove("velero.io/backup-name");
        l.remove("velero.io/restore-name");
    }
    let mut annotations = meta
        .get("annotations")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    if let Some(a) = annotations.as_object_mut() {
        for k in CONTROLLER_ANNOTATIONS {
            a.remove(*k);
        }
    }
    m.insert("labels".into(), labels);
    m.insert("annotations".into(), annotations);
    if obj["kind"] == "Service"
        && let Some(spec) = m.get_mut("spec").and_then(Value::as_object_mut)
    {
        {
            if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
            spec.remove("healthCheckNodePort");
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports {
                    if let Some(p) = p.as_object_mut() {
                        p.remove("nodePort");
                    }
                }
            }
        }
    }
    if obj["kind"] == "PersistentVolumeClaim"
        && let Some(spec) = m.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.remove("volumeName");
    }
    if obj["kind"] == "PersistentVolume"
        && let Some(cr) = m
            .get_mut("spec")
            .and_then(|s| s.get_mut("claimRef"))
            .and_then(Value::as_object_mut)
    {
        cr.remove("uid");
        cr.remove("resourceVersion");
    }
    out
}

/// Reads an object from a cluster as JSON (`None` when absent).
pub async fn get_json(client: &Client, a: &Accepted, namespace: Option<&str>) -> Option<Value> {
    let obj = api(client, &a.resource, namespace)
        .get_opt(&a.name)
        .await
        .expect("get object")?;
    let mut v = serde_json::to_value(&obj).expect("json");
    v["apiVersion"] = Value::String(a.resource.api_version.clone());
    v["kind"] = Value::String(a.resource.kind.clone());
    Some(v)
}

/// Compares every accepted object of cluster `a` with cluster `b` (namespaces mapped through
/// `mapping`); returns one line per missing or different object.
pub async fn compare_clusters(
    a: &Client,
    b: &Client,
    objects: &[Accepted],
    mapping: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for o in objects {
        let target_ns = o
            .namespace
            .as_deref()
            .map(|n| mapping.get(n).map(String::as_str).unwrap_or(n));
        let Some(src) = get_json(a, o, o.namespace.as_deref()).await else {
            continue; // deleted in the source since (e.g. by a controller): not comparable
        };
        let what = format!(
            "{}/{} {}/{}",
            o.resource.api_version,
            o.resource.kind,
            target_ns.unwrap_or("-"),
            o.name
        );
        match get_json(b, o, target_ns).await {
            None => problems.push(format!("{what}: missing in target")),
            Some(dst) => {
                let (mut s, d) = (user_content(&src), user_content(&dst));
                if o.resource.kind == "Namespace" {
                    // The mapped namespace carries its own name label.
                    s["labels"]["kubernetes.io/metadata.name"] =
                        d["labels"]["kubernetes.io/metadata.name"].clone();
                }
                if s != d {
                    problems.push(format!("{what}: differs\n  source: {}\n  target: {}", s, d));
                }
            }
        }
    }
    problems
}

/// Applies documents with server-side apply (field manager `fixture`), resolving each kind
/// through discovery (re-run per call, so CRDs applied just before are known).
pub async fn apply_docs(client: &Client, docs: &[Value]) {
    let mut discovery = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("discovery");
    for d in docs {
        let obj: DynamicObject = serde_json::from_value(d.clone()).expect("object");
        let tm = obj.types.clone().expect("apiVersion/kind");
        // A CRD created just before may take a moment to be served: re-discover for up to 30 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let (ar, caps) = loop {
            if let Some(found) = discovery.resolve_typemeta(&tm) {
                break found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}/{} not served",
                tm.api_version,
                tm.kind
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            discovery = Discovery::new(client.clone())
                .run_aggregated()
                .await
                .expect("discovery");
        };
        let api: Api<DynamicObject> = match (&caps.scope, &obj.metadata.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
            _ => Api::all_with(client.clone(), &ar),
        };
        api.patch(
            &obj.name_any(),
            &PatchParams::apply("fixture").force(),
            &Patch::Apply(d),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {d}: {e}"));
    }
}

/// Applies tidemark's generated CRDs and waits until they are Established.
pub async fn install_crds(client: &Client) {
    let docs = yaml_docs(&repo().join("crds/tidemark.dev.yaml"));
    let names: Vec<String> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    apply_docs(client, &docs).await;
    wait_established(client, &names).await;
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `tidemark server`, killed on drop.
pub struct Server {
    /// The process.
    pub child: std::process::Child,
    /// Its metrics port.
    pub metrics_port: u16,
    /// Its `/healthz` and `/readyz` port.
    pub health_port: u16,
    /// Its log file.
    pub log: PathBuf,
}

impl Server {
    /// Starts `tidemark server` for `namespace` against `kubeconfig` with extra args.
    pub fn start(kubeconfig: &Path, namespace: &str, extra: &[&str]) -> Server {
        let metrics_port = free_port();
        let health_port = free_port();
        let log = std::env::temp_dir().join(format!(
            "tidemark-server-{}-{metrics_port}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args([
                "server",
                "--namespace",
                namespace,
                "--metrics-address",
                &format!("127.0.0.1:{metrics_port}"),
                "--health-address",
                &format!("127.0.0.1:{health_port}"),
                "--log-level",
                "info",
            ])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            // Store credentials come from Locations' Secrets, not from the test's environment.
            .env_remove("AZURE_CREDENTIALS_FILE")
            .env_remove(AZURE_KEY_VAR)
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .env_remove("GOOGLE_SERVICE_ACCOUNT_KEY")
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start tidemark server");
        Server {
            child,
            metrics_port,
            health_port,
            log,
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it (SIGKILL) and waits.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 500 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The kubectl that `scripts/testenv build` caches (same release as the API server, with
/// kustomize built in).
pub fn testenv_kubectl() -> PathBuf {
    ensure_built();
    std::env::var_os("TIDEMARK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/tidemark")
        })
        .join("testenv/bin/kubectl")
}

/// The helm CLI that `scripts/testenv build` caches (Helm v4, pinned in
/// `tests/testenv/go/helm`), or `$TIDEMARK_HELM` when set.
pub fn testenv_helm() -> PathBuf {
    if let Some(helm) = std::env::var_os("TIDEMARK_HELM") {
        return PathBuf::from(helm);
    }
    testenv_kubectl().with_file_name("helm")
}

/// The `health-engines` program that `scripts/testenv build` caches (`tests/testenv/go/health`):
/// kstatus of `sigs.k8s.io/cli-utils` and Argo CD's Lua runtime (gopher-lua), one JSON document
/// per line in and out. Panics when it cannot be built (no Go toolchain): nothing is skipped.
pub fn testenv_health_engines() -> PathBuf {
    let bin = testenv_kubectl().with_file_name("health-engines");
    assert!(
        bin.is_file(),
        "{} missing after `scripts/testenv build`",
        bin.display()
    );
    bin
}

/// The go command `scripts/testenv` builds with (`$GO`, `go` on `PATH`, or
/// `/usr/local/go/bin/go`).
pub fn testenv_go() -> PathBuf {
    PathBuf::from(testenv(&["go"]).trim())
}

/// Commits `files` (path, content; `None` deletes) on `main` of the repository at `dir`
/// (created on first use) with `message`, and returns the commit id.
pub fn git_commit(dir: &Path, files: &[(&str, Option<&str>)], message: &str) -> String {
    let repo = git2::Repository::open(dir).unwrap_or_else(|_| {
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head("main");
        git2::Repository::init_opts(dir, &opts).expect("git init")
    });
    let mut index = repo.index().unwrap();
    for (path, content) in files {
        let full = dir.join(path);
        match content {
            Some(c) => {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(&full, c).unwrap();
                index.add_path(Path::new(path)).unwrap();
            }
            None => {
                std::fs::remove_file(&full).unwrap();
                index.remove_path(Path::new(path)).unwrap();
            }
        }
    }
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let sig = git2::Signature::now("tester", "tester@example.com").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
        .unwrap()
        .to_string()
}

/// The real Velero, `velero server` from `github.com/vmware-tanzu/velero` (the same binary is
/// the `velero` client) with `velero-plugin-for-aws`, both built by `scripts/testenv build`,
/// running as a local process against a test cluster and a MinIO bucket. Stopped on drop (its
/// process group: the server and the plugin processes it starts); when the test is panicking,
/// the end of its log is printed first. The log stays in [`Velero::log`].
pub struct Velero {
    /// The namespace it serves, holding its records and the BackupStorageLocation (`velero`).
    pub namespace: String,
    /// The cluster's kubeconfig.
    pub kubeconfig: PathBuf,
    /// Its directory: the server's log, `plugins/` (the AWS plugin), `credentials/cloud` (the
    /// MinIO keys), `home/` (`HOME` of the client and the server), `tmp/` (`TMPDIR`: plugin
    /// sockets and the credential files of locations with a `credential`), `scratch/`.
    pub dir: PathBuf,
    /// The server's log (stdout and stderr).
    pub log: PathBuf,
    child: std::process::Child,
}

/// The AWS plugin's image in the `velero` Deployment that [`Velero::start`] installs (the
/// Deployment is scaled to 0; the plugin runs from `scripts/testenv`'s build of the same release).
pub const VELERO_AWS_PLUGIN_IMAGE: &str = "velero/velero-plugin-for-aws:v1.14.3";

/// The `velero` binary that `scripts/testenv build` caches.
pub fn testenv_velero() -> PathBuf {
    testenv_kubectl().with_file_name("velero")
}

impl Velero {
    /// Installs Velero as `velero install` renders it (`--dry-run -o yaml` with provider `aws`,
    /// the AWS plugin, MinIO's bucket under `prefix` as the default BackupStorageLocation, the
    /// MinIO keys as Secret `cloud-credentials`, no volume snapshot location): its CRDs, the
    /// namespace `velero`, RBAC, the Secret, the location and the `velero` Deployment, scaled to
    /// 0 because its server runs here as a local process instead, with the container's arguments
    /// and environment. Waits until the location is `Available`.
    ///
    /// The Deployment must exist: Velero's restore builds its pod-volume restore action from it
    /// (the image of the restore helper) even when no pod is restored. Outside a pod the server
    /// also needs: `--kubeconfig` and `--namespace`; `--plugin-dir` holding only the plugins
    /// (every executable there is started as one); its metrics on a free loopback port
    /// (`--metrics-address`, default `:8085`) and no profiler (`--profiler-address=`, default
    /// `localhost:6060`), so that several can run on one machine; `TMPDIR`, under which it writes
    /// credential files, and the container's `AWS_SHARED_CREDENTIALS_FILE` pointing at the
    /// Secret's content. The controller-runtime metrics listener (`:8080` by default) is switched
    /// off at build time by `scripts/testenv`. The backup sync period is 10 s, so that each run
    /// of the sync controller (once a minute, fixed in Velero) syncs.
    pub async fn start(cluster: &Cluster, minio: &Minio, prefix: &str) -> Velero {
        let namespace = "velero".to_string();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("velero")
            .join(&cluster.name);
        let _ = std::fs::remove_dir_all(&dir);
        for d in [
            "plugins",
            "home/.config/velero",
            "tmp",
            "scratch",
            "credentials",
        ] {
            std::fs::create_dir_all(dir.join(d)).expect("velero instance directory");
        }
        // The client's config (`velero client config set colorized=false`): plain output.
        std::fs::write(
            dir.join("home/.config/velero/config.json"),
            r#"{"colorized":"false"}"#,
        )
        .expect("velero client config");
        let plugin = testenv_kubectl().with_file_name("velero-plugin-for-aws");
        std::os::unix::fs::symlink(&plugin, dir.join("plugins/velero-plugin-for-aws"))
            .expect("link the AWS plugin");
        let credentials = dir.join("credentials/cloud");
        std::fs::write(&credentials, minio.credentials_file()).expect("credentials file");

        let location_config = format!(
            "region={},s3ForcePathStyle=true,s3Url={}",
            minio.env["AWS_REGION"], minio.env["AWS_ENDPOINT_URL"]
        );
        let kubeconfig = cluster.kubeconfig.to_str().expect("kubeconfig path");
        let out = Command::new(testenv_velero())
            .args([
                "install",
                "--dry-run",
                "-o",
                "yaml",
                "--kubeconfig",
                kubeconfig,
                "--namespace",
                &namespace,
                "--provider",
                "aws",
                "--plugins",
                VELERO_AWS_PLUGIN_IMAGE,
                "--bucket",
                minio.bucket(),
                "--prefix",
                prefix,
                "--backup-location-config",
                &location_config,
                "--secret-file",
                credentials.to_str().expect("credentials path"),
                "--use-volume-snapshots=false",
            ])
            .env("HOME", dir.join("home"))
            .env_remove("KUBECONFIG")
            .output()
            .expect("run velero install");
        assert!(out.status.success(), "velero install: {}", show(&out));
        let list: Value = serde_yaml::from_slice(&out.stdout).expect("velero's install list");
        let items = list["items"].as_array().expect("items").clone();
        let (crds, mut rest): (Vec<Value>, Vec<Value>) = items
            .into_iter()
            .partition(|d| d["kind"] == "CustomResourceDefinition");
        let names: Vec<String> = crds
            .iter()
            .map(|c| {
                c["metadata"]["name"]
                    .as_str()
                    .expect("CRD name")
                    .to_string()
            })
            .collect();
        apply_docs(&cluster.client, &crds).await;
        wait_established(&cluster.client, &names).await;
        let deployment = rest
            .iter_mut()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "velero")
            .expect("velero install renders the velero Deployment");
        deployment["spec"]["replicas"] = 0.into();
        let container = deployment["spec"]["template"]["spec"]["containers"][0].clone();
        // The namespace first, then what lives in it.
        rest.sort_by_key(|d| d["kind"] != "Namespace");
        apply_docs(&cluster.client, &rest).await;

        // The container's command line (`/velero server --features= ...`) and environment, with
        // the paths of this directory.
        let container_args: Vec<String> = container["args"]
            .as_array()
            .expect("container args")
            .iter()
            .map(|a| a.as_str().expect("arg").to_string())
            .collect();
        assert_eq!(container_args.first().map(String::as_str), Some("server"));
        let log = dir.join("velero-server.log");
        let file = std::fs::File::create(&log).expect("velero log");
        let metrics = format!("127.0.0.1:{}", free_port());
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(testenv_velero())
                .args(&container_args)
                .args([
                    "--namespace",
                    &namespace,
                    "--kubeconfig",
                    kubeconfig,
                    "--plugin-dir",
                    dir.join("plugins").to_str().expect("plugin dir"),
                    "--metrics-address",
                    &metrics,
                    "--profiler-address=",
                    "--backup-sync-period",
                    "10s",
                ])
                .env("HOME", dir.join("home"))
                .env("TMPDIR", dir.join("tmp"))
                .env("VELERO_SCRATCH_DIR", dir.join("scratch"))
                .env("VELERO_NAMESPACE", &namespace)
                .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .env_remove("AWS_PROFILE")
                .env_remove("KUBECONFIG")
                .stdin(std::process::Stdio::null())
                .stdout(file.try_clone().expect("log file"))
                .stderr(file)
                .process_group(0)
                .spawn()
                .expect("start velero server")
        };
        let mut velero = Velero {
            namespace,
            kubeconfig: cluster.kubeconfig.clone(),
            dir,
            log,
            child,
        };
        velero.wait_available(&cluster.client).await;
        velero
    }

    /// Waits until the BackupStorageLocation `default` is `Available` (Velero validated the
    /// bucket through the plugin), failing at once if the server exited.
    async fn wait_available(&mut self, client: &Client) {
        let ar = ApiResource {
            group: "velero.io".into(),
            version: "v1".into(),
            api_version: "velero.io/v1".into(),
            kind: "BackupStorageLocation".into(),
            plural: "backupstoragelocations".into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &self.namespace, &ar);
        let child = &mut self.child;
        let log = self.log.display().to_string();
        wait_for(
            &format!("BackupStorageLocation default Available (velero log {log})"),
            Duration::from_secs(180),
            || {
                if let Some(status) = child.try_wait().expect("velero server status") {
                    panic!("velero server exited ({status}); log {log}");
                }
                let api = api.clone();
                async move {
                    let bsl = api.get("default").await.ok()?;
                    (bsl.data["status"]["phase"].as_str() == Some("Available")).then_some(())
                }
            },
        )
        .await;
    }

    /// Runs the `velero` client with `args` against this server's cluster and namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(testenv_velero())
            .args(args)
            .args([
                "--kubeconfig",
                self.kubeconfig.to_str().expect("kubeconfig path"),
                "--namespace",
                &self.namespace,
            ])
            .env("HOME", self.dir.join("home"))
            .env_remove("KUBECONFIG")
            .output()
            .expect("run velero")
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Stops the server's process group (SIGKILL) and reaps the server.
    fn stop(&mut self) {
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(std::process::Stdio::null())
                .status();
        };
        // Its state is the test's, thrown away: the whole group (server and plugin processes)
        // goes at once.
        signal("-KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Velero {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let problems: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("level=error") || l.contains("level=warning"))
                .collect();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "----- velero server log {}: errors and warnings -----\n{}\n----- last lines -----\n{}\n-----",
                self.log.display(),
                problems[problems.len().saturating_sub(40)..].join("\n"),
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
        self.stop();
    }
}

/// Writes to `out` a kubeconfig for the same server as `admin`, authenticated as ServiceAccount
/// `namespace/name` with a fresh TokenRequest token (an hour): what runs with it has exactly
/// that account's RBAC, not the admin's.
pub async fn service_account_kubeconfig(
    client: &Client,
    admin: &Path,
    namespace: &str,
    name: &str,
    out: &Path,
) {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let sas: kube::Api<ServiceAccount> = kube::Api::namespaced(client.clone(), namespace);
    let tr = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let answer = sas
        .create_token_request(name, &Default::default(), &tr)
        .await
        .unwrap_or_else(|e| panic!("token for {namespace}/{name}: {e}"));
    let token = answer
        .status
        .and_then(|s| s.token)
        .expect("a token in the TokenRequest's status");
    let mut kc = kube::config::Kubeconfig::read_from(admin).unwrap();
    for auth in &mut kc.auth_infos {
        auth.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.clone().into()),
            ..Default::default()
        });
    }
    std::fs::write(out, serde_yaml::to_string(&kc).unwrap()).unwrap();
}

/// The test node: this machine made a node of a cluster by `scripts/testenv node up` — the
/// real kubelet and kube-scheduler (the API server's release), Debian's containerd and runc,
/// the CNI bridge — with the test images imported (busybox, and tidemark's own image built
/// from the `tidemark` binary under test). Pods run for real; `kubectl exec` works.
///
/// There is one node per machine: [`Node::up`] takes a machine-wide lock (a `flock` on
/// `<run dir>/.node.lock`) that is held until the node is dropped, so tests that need it run
/// one at a time, across test binaries too. Dropping it stops the node and removes what it
/// left (pods, mounts, cgroups, the bridge, network namespaces).
pub struct Node {
    /// The cluster it is attached to.
    pub cluster: String,
    /// The node's name (this machine's hostname, lowercased).
    pub name: String,
    /// The kubelet's `--root-dir`.
    pub kubelet_root: PathBuf,
    /// The busybox image (`imagePullPolicy: Never` or `IfNotPresent`).
    pub image_busybox: String,
    /// tidemark's image, built from the binary under test (restore helper, node agent).
    pub image_tidemark: String,
    /// All export lines of `scripts/testenv node up`.
    pub env: BTreeMap<String, String>,
    _lock: std::fs::File,
}

/// The run directory of `scripts/testenv` (`TIDEMARK_TESTENV_RUN`, else under the cache).
fn testenv_run_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("TIDEMARK_TESTENV_RUN") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("TIDEMARK_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/tidemark")
        });
    cache.join("testenv/run")
}

impl Node {
    /// Makes this machine a node of `cluster` (waits for the machine-wide node lock first) and
    /// waits until the Node is Ready.
    pub fn up(cluster: &Cluster) -> Node {
        let run = testenv_run_dir();
        std::fs::create_dir_all(&run).unwrap();
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(run.join(".node.lock"))
            .expect("open the node lock");
        lock.lock().expect("take the node lock");
        let exports = testenv_with(
            &["node", "up", &cluster.name],
            &[("TIDEMARK_BINARY", env!("CARGO_BIN_EXE_tidemark"))],
        );
        let env = parse_exports(&exports);
        Node {
            cluster: cluster.name.clone(),
            name: env["TIDEMARK_TEST_NODE"].clone(),
            kubelet_root: PathBuf::from(&env["TIDEMARK_TEST_KUBELET_ROOT"]),
            image_busybox: env["TIDEMARK_TEST_IMAGE_BUSYBOX"].clone(),
            image_tidemark: env
                .get("TIDEMARK_TEST_IMAGE_TIDEMARK")
                .expect("a tidemark image (TIDEMARK_BINARY)")
                .clone(),
            env,
            _lock: lock,
        }
    }

    /// The directory the kubelet made for volume `volume` of the pod with `uid`, of volume
    /// plugin `plugin` (`kubernetes.io~empty-dir`, `kubernetes.io~csi`, ...).
    pub fn volume_dir(&self, uid: &str, plugin: &str, volume: &str) -> PathBuf {
        self.kubelet_root
            .join("pods")
            .join(uid)
            .join("volumes")
            .join(plugin)
            .join(volume)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/testenv"))
            .args(["node", "down", &self.cluster])
            .output();
    }
}

/// Runs `kubectl` (the testenv's, the API server's release) against `kubeconfig`; panics with
/// its output when it fails.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(testenv_kubectl())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl");
    assert!(out.status.success(), "kubectl {args:?}: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command in a pod's container through the API server and the kubelet
/// (`kubectl exec`); returns its standard output.
pub fn pod_exec(
    kubeconfig: &Path,
    namespace: &str,
    pod: &str,
    container: &str,
    script: &str,
) -> String {
    kubectl(
        kubeconfig,
        &[
            "exec", "-n", namespace, pod, "-c", container, "--", "sh", "-c", script,
        ],
    )
}

/// Waits until pod `namespace/name` is Ready (all containers), up to `timeout`; panics with
/// its status when it is not.
pub async fn wait_pod_ready(
    client: &Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> k8s_openapi::api::core::v1::Pod {
    use k8s_openapi::api::core::v1::Pod;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let ready = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    // The pod's watch events, not polling: returns on the event that makes it Ready.
    let watched = kube::runtime::wait::await_condition(pods.clone(), name, ready);
    match tokio::time::timeout(timeout, watched).await {
        Ok(Ok(Some(pod))) => pod,
        outcome => {
            let pod = pods.get_opt(name).await.ok().flatten();
            panic!(
                "pod {namespace}/{name} not Ready after {timeout:?} ({outcome:?}): {}",
                serde_json::to_string_pretty(&pod.map(|p| p.status)).unwrap()
            )
        }
    }
}

/// Applies the RBAC that tidemark ships (`kustomize/install.yaml` and
/// `kustomize/install-node-agent.yaml`: namespaces, CRDs, ServiceAccounts, Roles and bindings;
/// not the Deployment, DaemonSet or Service), so that tests can run `tidemark server` and
/// `tidemark node-agent` as local processes under those ServiceAccounts' tokens
/// ([`service_account_kubeconfig`]).
pub async fn apply_shipped_rbac(client: &Client) {
    apply_shipped(client, |kind| {
        !matches!(kind, "Deployment" | "DaemonSet" | "Service")
    })
    .await;
}

/// Applies the objects of `kustomize/install.yaml` and `kustomize/install-node-agent.yaml`
/// whose kind `keep` accepts, and waits until their CRDs are Established.
pub async fn apply_shipped(client: &Client, keep: impl Fn(&str) -> bool) {
    let mut docs = Vec::new();
    for file in [
        "kustomize/install.yaml",
        "kustomize/install-node-agent.yaml",
    ] {
        docs.extend(
            yaml_docs(&repo().join(file))
                .into_iter()
                .filter(|d| keep(d["kind"].as_str().unwrap_or_default())),
        );
    }
    let crds: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    apply_docs(client, &docs).await;
    wait_established(client, &crds).await;
}

/// Real CSI in a cluster (`scripts/testenv csi up`): the external-provisioner (v5.3.0), the
/// snapshot-controller and csi-snapshotter (v8.7.0) with their VolumeSnapshot CRDs, and the
/// project's small hostpath test driver (`tests/testenv/go/csi-hostpath`, the one stand-in on
/// this path: the upstream hostpath driver is not served by the Go module proxy). Volumes are
/// directories under [`Csi::state_dir`]`/volumes`, snapshots copies under `/snapshots`; with a
/// [`Node`] up, the real kubelet mounts them into pods. Stopped on drop.
pub struct Csi {
    /// The cluster it serves.
    pub cluster: String,
    /// The driver's name.
    pub driver: String,
    /// The StorageClass (`WaitForFirstConsumer`).
    pub storage_class: String,
    /// The StorageClass with `Immediate` binding (no node needed).
    pub storage_class_immediate: String,
    /// The VolumeSnapshotClass (Velero's label, `deletionPolicy: Delete`).
    pub snapshot_class: String,
    /// The driver's state directory (`volumes/<id>`, `snapshots/<id>`).
    pub state_dir: PathBuf,
}

impl Csi {
    /// Starts the CSI components for `cluster` and waits until they serve.
    pub fn up(cluster: &Cluster) -> Csi {
        let env = parse_exports(&testenv(&["csi", "up", &cluster.name]));
        Csi {
            cluster: cluster.name.clone(),
            driver: env["TIDEMARK_TEST_CSI_DRIVER"].clone(),
            storage_class: env["TIDEMARK_TEST_STORAGE_CLASS"].clone(),
            storage_class_immediate: env["TIDEMARK_TEST_STORAGE_CLASS_IMMEDIATE"].clone(),
            snapshot_class: env["TIDEMARK_TEST_SNAPSHOT_CLASS"].clone(),
            state_dir: PathBuf::from(&env["TIDEMARK_TEST_CSI_STATE_DIR"]),
        }
    }

    /// The driver's copy of snapshot `handle`, while it exists.
    pub fn snapshot_dir(&self, handle: &str) -> PathBuf {
        self.state_dir.join("snapshots").join(handle)
    }

    /// The storage snapshots the driver holds now (their handles).
    pub fn snapshots(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.state_dir.join("snapshots"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

impl Drop for Csi {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("scripts/testenv"))
            .args(["csi", "down", &self.cluster])
            .output();
    }
}

/// A running `tidemark node-agent` for the test [`Node`] (a local process, as the DaemonSet's
/// pod would run: the node's name, its kubelet root), killed on drop. Run it with the shipped
/// ServiceAccount's kubeconfig ([`service_account_kubeconfig`] for
/// `tidemark-node-agent/tidemark-node-agent`) so that its calls meet the shipped RBAC.
pub struct NodeAgent {
    child: std::process::Child,
    log: PathBuf,
}

impl NodeAgent {
    /// Starts the agent against `kubeconfig` with the repository password in `password_file`
    /// and extra environment variables (store credentials for S3 locations).
    pub fn start(
        kubeconfig: &Path,
        node: &Node,
        password_file: &Path,
        env: &[(&str, &str)],
    ) -> NodeAgent {
        let log = std::env::temp_dir().join(format!("{}.log", unique("tidemark-node-agent")));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args([
                "node-agent",
                "--node-name",
                &node.name,
                "--namespace",
                "tidemark",
            ])
            .arg("--kubelet-root")
            .arg(&node.kubelet_root)
            .arg("--repo-password-file")
            .arg(password_file)
            .args(["--progress-interval", "1s", "--log-level", "info"])
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().copied())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start tidemark node-agent");
        NodeAgent { child, log }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for NodeAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Applies the shipped RBAC ([`apply_shipped_rbac`]) and writes into `dir` a kubeconfig of the
/// shipped node agent's ServiceAccount (`tidemark-node-agent/tidemark-node-agent`); returns its
/// path, for [`NodeAgent::start`].
pub async fn node_agent_kubeconfig(cluster: &Cluster, dir: &Path) -> PathBuf {
    apply_shipped_rbac(&cluster.client).await;
    let kc = dir.join("node-agent.kubeconfig");
    service_account_kubeconfig(
        &cluster.client,
        &cluster.kubeconfig,
        "tidemark-node-agent",
        "tidemark-node-agent",
        &kc,
    )
    .await;
    kc
}

/// A controller's namespace `tidemark` with a Location `default` on MinIO's bucket under
/// `prefix` (its Secret from MinIO's keys; `ReadOnly` when `read_only`), and a namespace `app`
/// with one ConfigMap to back up.
pub async fn setup(client: &Client, minio: &Minio, prefix: &str, read_only: bool) {
    install_crds(client).await;
    let creds = minio.credentials_file();
    apply_docs(
        client,
        &[
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tidemark"}}),
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "app"}}),
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "app"}, "data": {"mode": "blue"}}),
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": "tidemark"},
                   "stringData": {"cloud": creds}}),
            serde_json::json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Location", "metadata": {"name": "default", "namespace": "tidemark"},
                   "spec": {"provider": "s3", "bucket": minio.bucket(), "prefix": prefix, "default": true,
                            "accessMode": if read_only { "ReadOnly" } else { "ReadWrite" },
                            "config": {"region": minio.env["AWS_REGION"], "s3Url": minio.env["AWS_ENDPOINT_URL"], "s3ForcePathStyle": "true"},
                            "credential": {"name": "s3-credentials", "key": "cloud"},
                            "syncPeriod": "3s", "validationPeriod": "3s"}}),
        ],
    )
    .await;
}

/// The Backups a Schedule started (Velero's schedule-name label).
pub async fn schedule_backups(
    api: &kube::Api<tidemark::api::tidemark::Backup>,
    schedule: &str,
) -> Vec<tidemark::api::tidemark::Backup> {
    api.list(
        &kube::api::ListParams::default().labels(&format!("velero.io/schedule-name={schedule}")),
    )
    .await
    .unwrap()
    .items
}
