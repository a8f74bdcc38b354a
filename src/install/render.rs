//! The objects of an installation, rendered from [`InstallOptions`] without touching a cluster:
//! the embedded base (`kustomize/install.yaml`: CRDs, namespace, ServiceAccount, RBAC, the
//! controller Deployment, its metrics Service), optionally the node agent
//! (`kustomize/install-node-agent.yaml`), the store credentials Secret and the default Location,
//! as `velero install` creates them (source: Velero's `pkg/install` and the `velero install`
//! reference, flags of the same names and meanings).
//!
//! Pure: the same options give the same objects, which is what makes `--dry-run -o yaml` equal
//! to what is applied.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::InstallError;
use crate::api::tidemark::{self as api, AccessMode, Provider};

/// The rendered base installation (`kubectl kustomize kustomize/base`, kept current by
/// `tests/install_cli.rs`).
pub const INSTALL_YAML: &str = include_str!("../../kustomize/install.yaml");

/// The rendered node agent (`kubectl kustomize kustomize/node-agent`, kept current by
/// `tests/install_cli.rs`).
pub const NODE_AGENT_YAML: &str = include_str!("../../kustomize/install-node-agent.yaml");

/// The namespace the embedded manifests are written for.
const BASE_NAMESPACE: &str = "tidemark";

/// Name of the store credentials Secret (Velero's name), key [`CREDENTIALS_KEY`].
pub const CREDENTIALS_SECRET: &str = "cloud-credentials";
/// Key of the credentials file in [`CREDENTIALS_SECRET`] (Velero's key).
pub const CREDENTIALS_KEY: &str = "cloud";
/// Name of the Location `install` creates (Velero's `default` backup storage location).
pub const DEFAULT_LOCATION: &str = "default";
/// The restic repositories' password Secret (key [`REPO_PASSWORD_KEY`]), in the controller's and
/// the node agent's namespaces.
pub const REPO_SECRET: &str = "tidemark-repo-credentials";
/// Key of the repositories' password in [`REPO_SECRET`].
pub const REPO_PASSWORD_KEY: &str = "repository-password";
/// The node agent's store credentials as environment variables (S3: `AWS_ACCESS_KEY_ID`/
/// `AWS_SECRET_ACCESS_KEY`; Azure: the credentials file's variables; GCS:
/// `GOOGLE_SERVICE_ACCOUNT_KEY`), in the node agent's namespace.
pub const NODE_AGENT_CREDENTIALS: &str = "tidemark-node-agent-credentials";
/// Label on the objects `install` adds beyond the embedded manifests (Secrets, Location).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "tidemark-install");

/// CPU and memory requests and limits of a container (Kubernetes quantities such as `500m`,
/// `128Mi`); `None` keeps the manifests' value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `resources.requests.cpu`.
    pub cpu_request: Option<String>,
    /// `resources.requests.memory`.
    pub memory_request: Option<String>,
    /// `resources.limits.cpu`.
    pub cpu_limit: Option<String>,
    /// `resources.limits.memory`.
    pub memory_limit: Option<String>,
}

/// The default Location to create (`velero install --provider --bucket --prefix
/// --backup-location-config --cacert`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocationOptions {
    /// The provider.
    pub provider: Provider,
    /// Bucket (S3) or absolute directory on the controller (filesystem).
    pub bucket: String,
    /// Prefix in the bucket.
    pub prefix: Option<String>,
    /// Provider config, Velero's keys (`region`, `s3Url`, `s3ForcePathStyle`, ...).
    pub config: BTreeMap<String, String>,
    /// PEM bundle trusted for the store's TLS certificate.
    pub ca_cert: Option<String>,
}

/// Everything `tidemark install` can be asked for.
#[derive(Clone, Debug)]
pub struct InstallOptions {
    /// Namespace of the controller, its records and its Secrets.
    pub namespace: String,
    /// Image of the controller and the node agent (`None`: the release image).
    pub image: Option<String>,
    /// The default Location (`None`: `--no-default-backup-location`, or no provider given).
    pub location: Option<LocationOptions>,
    /// The credentials file (`--secret-file`: for S3 an AWS shared-credentials file), stored
    /// in [`CREDENTIALS_SECRET`]; `None` with `--no-secret` (workload identity).
    pub credentials_file: Option<String>,
    /// Deploy the node agent DaemonSet (file-system backup of pod volumes).
    pub node_agent: bool,
    /// The restic repositories' password written to new [`REPO_SECRET`]s (node agent only).
    pub repo_password: Option<String>,
    /// A Secret the user manages in `namespace` whose key [`REPO_PASSWORD_KEY`] holds the
    /// restic repositories' password (`--repo-password-secret`), e.g. the Secret of a
    /// Location's `spec.encryption`, so that one Secret holds both the age key and the restic
    /// password. The controller mounts that key alone (not the rest of the Secret) where it
    /// otherwise mounts [`REPO_SECRET`]'s, and no [`REPO_SECRET`] is rendered in `namespace`;
    /// the node agent, in a namespace of its own, still gets a [`REPO_SECRET`] holding
    /// `repo_password` (which the caller reads from this Secret).
    pub repo_password_secret: Option<String>,
    /// Back up every pod volume by file system unless a backup says otherwise (the server's
    /// `--default-volumes-to-fs-backup`).
    pub default_volumes_to_fs_backup: bool,
    /// The controller container's resources.
    pub controller_resources: Resources,
    /// The node agent container's resources.
    pub node_agent_resources: Resources,
    /// Annotations of the controller's ServiceAccount (e.g. IRSA's `eks.amazonaws.com/role-arn`).
    pub sa_annotations: BTreeMap<String, String>,
    /// Annotations of the controller's and node agent's pods.
    pub pod_annotations: BTreeMap<String, String>,
    /// Labels of the controller's and node agent's pods.
    pub pod_labels: BTreeMap<String, String>,
    /// Labels of every object.
    pub labels: BTreeMap<String, String>,
    /// Annotations of every object.
    pub annotations: BTreeMap<String, String>,
}

impl InstallOptions {
    /// The base installation in `namespace`, nothing else.
    pub fn base(namespace: &str) -> Self {
        Self {
            namespace: namespace.into(),
            image: None,
            location: None,
            credentials_file: None,
            node_agent: false,
            repo_password: None,
            repo_password_secret: None,
            default_volumes_to_fs_backup: false,
            controller_resources: Resources::default(),
            node_agent_resources: Resources::default(),
            sa_annotations: BTreeMap::new(),
            pod_annotations: BTreeMap::new(),
            pod_labels: BTreeMap::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// The node agent's namespace: `<namespace>-node-agent` (`tidemark-node-agent` for the
    /// default). It is a namespace of its own because the agent's hostPath volume needs the
    /// `privileged` Pod Security level, which the controller's namespace does not grant.
    pub fn node_agent_namespace(&self) -> String {
        format!("{}-node-agent", self.namespace)
    }
}

/// Renders the installation's objects, in apply order: CRDs and namespaces, then the rest.
///
/// # Errors
/// [`InstallError::Invalid`] for a credentials file the provider cannot use, or a quantity or
/// name Kubernetes would refuse; [`InstallError::Embedded`] if the embedded YAML is broken
/// (tests keep it valid).
pub fn render(o: &InstallOptions) -> Result<Vec<Value>, InstallError> {
    validate(o)?;
    let mut out = Vec::new();
    for mut v in docs(INSTALL_YAML)? {
        retarget(&mut v, &o.namespace, &o.namespace);
        customize_controller(&mut v, o);
        out.push(v);
    }
    if o.node_agent {
        let agent_ns = o.node_agent_namespace();
        for mut v in docs(NODE_AGENT_YAML)? {
            retarget(&mut v, &o.namespace, &agent_ns);
            customize_node_agent(&mut v, o);
            out.push(v);
        }
    }
    if let Some(text) = &o.credentials_file {
        out.push(secret(
            &o.namespace,
            CREDENTIALS_SECRET,
            &[(CREDENTIALS_KEY, text.as_str())],
        ));
        if o.node_agent
            && let Some(loc) = &o.location
            && loc.provider != Provider::Filesystem
        {
            let s = crate::store::Secrets::from_credentials_file(loc.provider.into(), text, None)
                .map_err(|e| InstallError::Invalid(format!("--secret-file: {e}")))?;
            let vars = s.env_vars();
            if !vars.is_empty() {
                let pairs: Vec<(&str, &str)> =
                    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                out.push(secret(
                    &o.node_agent_namespace(),
                    NODE_AGENT_CREDENTIALS,
                    &pairs,
                ));
            }
        }
    }
    if o.node_agent
        && let Some(password) = &o.repo_password
    {
        // With --repo-password-secret the controller's namespace has the user's Secret.
        let namespaces = match o.repo_password_secret {
            Some(_) => vec![o.node_agent_namespace()],
            None => vec![o.namespace.clone(), o.node_agent_namespace()],
        };
        for ns in namespaces {
            out.push(secret(
                &ns,
                REPO_SECRET,
                &[(REPO_PASSWORD_KEY, password.as_str())],
            ));
        }
    }
    if let Some(loc) = &o.location {
        out.push(location(o, loc));
    }
    for v in &mut out {
        let meta = v["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
        merge(meta, "labels", &o.labels);
        merge(meta, "annotations", &o.annotations);
    }
    // CRDs and namespaces first (the rest needs them), otherwise the manifests' order.
    out.sort_by_key(|v| match v["kind"].as_str() {
        Some("CustomResourceDefinition") => 0,
        Some("Namespace") => 1,
        _ => 2,
    });
    Ok(out)
}

/// Every object kind and name `render` can produce for `namespace`, with every option on: what
/// `uninstall` removes (it cannot know which options the installation used).
///
/// # Errors
/// As [`render`].
pub fn everything(namespace: &str) -> Result<Vec<Value>, InstallError> {
    let mut o = InstallOptions::base(namespace);
    o.node_agent = true;
    o.repo_password = Some("-".into());
    o.credentials_file = Some("[default]\naws_access_key_id=-\naws_secret_access_key=-\n".into());
    o.location = Some(LocationOptions {
        provider: Provider::S3,
        bucket: "-".into(),
        prefix: None,
        config: BTreeMap::new(),
        ca_cert: None,
    });
    render(&o)
}

fn docs(yaml: &str) -> Result<Vec<Value>, InstallError> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| InstallError::Embedded(e.to_string()))?;
        if v.is_object() {
            out.push(v);
        }
    }
    Ok(out)
}

/// Kubernetes quantity syntax (`100m`, `1`, `0.5`, `128Mi`, `1G`): a decimal number and an
/// optional suffix (exponents such as `1e3` are not accepted here). Source: `k8s.io/apimachinery/pkg/api/resource` (Quantity).
fn is_quantity(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &s[digits.len()..];
    let (number, suffix) = match suffix {
        "" => (digits, ""),
        _ if suffix.starts_with(['e', 'E']) => return false,
        _ => (digits, suffix),
    };
    let number_ok = !number.is_empty()
        && number.chars().filter(|c| *c == '.').count() <= 1
        && number
            .trim_start_matches(['+', '-'])
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
        && number.chars().any(|c| c.is_ascii_digit());
    let suffix_ok = matches!(
        suffix,
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    );
    number_ok && suffix_ok
}

fn validate(o: &InstallOptions) -> Result<(), InstallError> {
    let bad = |m: String| Err(InstallError::Invalid(m));
    for (who, r) in [
        ("controller", &o.controller_resources),
        ("node agent", &o.node_agent_resources),
    ] {
        for (field, q) in [
            ("cpu request", &r.cpu_request),
            ("memory request", &r.memory_request),
            ("cpu limit", &r.cpu_limit),
            ("memory limit", &r.memory_limit),
        ] {
            if let Some(q) = q
                && !is_quantity(q)
            {
                return bad(format!(
                    "{who} {field} {q:?} is not a Kubernetes quantity (e.g. 500m, 1, 128Mi)"
                ));
            }
        }
    }
    if let Some(loc) = &o.location {
        if loc.bucket.trim().is_empty() {
            return bad("--bucket must not be empty".into());
        }
        if loc.provider != Provider::Filesystem {
            // Unknown config keys and bad values are refused here, before anything is
            // applied; with a credentials file, the store client is built as the controller
            // will build it (without any request).
            let mut config = loc.config.clone();
            if loc.provider == Provider::S3 {
                config.remove("profile");
            }
            let url = crate::store::LocationUrl::new(
                loc.provider.into(),
                &loc.bucket,
                loc.prefix.as_deref().unwrap_or(""),
                config,
                crate::store::AccessMode::ReadWrite,
            );
            url.check_config()
                .map_err(|e| InstallError::Invalid(format!("--backup-location-config: {e}")))?;
            if let Some(text) = &o.credentials_file {
                let secrets = crate::store::Secrets::from_credentials_file(
                    loc.provider.into(),
                    text,
                    loc.config.get("profile").map(String::as_str),
                )
                .map_err(|e| InstallError::Invalid(format!("--secret-file: {e}")))?;
                crate::store::Store::open_with(&url, &secrets)
                    .map_err(|e| InstallError::Invalid(format!("--secret-file: {e}")))?;
            }
        } else if !loc.bucket.starts_with('/') {
            return bad(format!(
                "--bucket {:?}: the filesystem provider takes an absolute directory",
                loc.bucket
            ));
        }
    }
    if let Some(name) = &o.repo_password_secret
        && !is_dns_subdomain(name)
    {
        return bad(format!(
            "--repo-password-secret {name:?} is not a Secret name (lowercase letters, digits, \
             '-' and '.', at most 253 characters)"
        ));
    }
    Ok(())
}

/// A DNS-1123 subdomain, the form of a Secret's name: lowercase alphanumerics, `-` and `.`,
/// starting and ending with an alphanumeric, at most 253 characters.
fn is_dns_subdomain(s: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    s.len() <= 253
        && edge(s.chars().next())
        && edge(s.chars().last())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

/// Moves an object of the embedded manifests from the `tidemark` namespace into the chosen
/// ones: objects and ServiceAccount subjects of the controller into `namespace`, those of the
/// node agent into `agent_ns` (the agent's Role and RoleBinding stay beside the records).
fn retarget(v: &mut Value, namespace: &str, agent_ns: &str) {
    let is_agent_ns = |s: &str| s == format!("{BASE_NAMESPACE}-node-agent");
    let to = |s: &str| {
        if is_agent_ns(s) {
            agent_ns.to_string()
        } else {
            namespace.to_string()
        }
    };
    if v["kind"] == "Namespace" {
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        v["metadata"]["name"] = Value::String(to(&name));
    }
    if let Some(ns) = v.pointer("/metadata/namespace").and_then(Value::as_str) {
        let ns = to(ns);
        v["metadata"]["namespace"] = Value::String(ns);
    }
    if let Some(subjects) = v.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects {
            if let Some(ns) = s.get("namespace").and_then(Value::as_str) {
                let ns = to(ns);
                s["namespace"] = Value::String(ns);
            }
        }
    }
}

fn containers(v: &mut Value) -> impl Iterator<Item = &mut Value> {
    v.pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn merge(meta: &mut Map<String, Value>, field: &str, add: &BTreeMap<String, String>) {
    if add.is_empty() {
        return;
    }
    let map = meta
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(map) = map.as_object_mut() {
        for (k, val) in add {
            map.insert(k.clone(), Value::String(val.clone()));
        }
    }
}

fn set_resources(c: &mut Value, r: &Resources) {
    for (section, key, q) in [
        ("requests", "cpu", &r.cpu_request),
        ("requests", "memory", &r.memory_request),
        ("limits", "cpu", &r.cpu_limit),
        ("limits", "memory", &r.memory_limit),
    ] {
        if let Some(q) = q {
            c["resources"][section][key] = Value::String(q.clone());
        }
    }
}

fn customize_pods(v: &mut Value, o: &InstallOptions, r: &Resources) {
    if let Some(meta) = v
        .pointer_mut("/spec/template/metadata")
        .and_then(Value::as_object_mut)
    {
        merge(meta, "labels", &o.pod_labels);
        merge(meta, "annotations", &o.pod_annotations);
    }
    for c in containers(v) {
        if let Some(img) = &o.image {
            c["image"] = Value::String(img.clone());
        }
        set_resources(c, r);
    }
}

fn customize_controller(v: &mut Value, o: &InstallOptions) {
    match v["kind"].as_str() {
        Some("Deployment") => {
            customize_pods(v, o, &o.controller_resources);
            if let Some(name) = &o.repo_password_secret {
                mount_repo_password_from(v, name);
            }
            if o.default_volumes_to_fs_backup {
                for c in containers(v) {
                    if let Some(args) = c["args"].as_array_mut() {
                        args.push(json!("--default-volumes-to-fs-backup"));
                    }
                }
            }
        }
        Some("ServiceAccount") => {
            if let Some(meta) = v["metadata"].as_object_mut() {
                merge(meta, "annotations", &o.sa_annotations);
            }
        }
        _ => {}
    }
}

/// Points the controller's `repo-credentials` volume (mounted at `/credentials/repo`, read
/// through `TIDEMARK_REPO_PASSWORD_FILE`) at key [`REPO_PASSWORD_KEY`] of Secret `name`, that
/// key alone: the other keys of the Secret (an age identity, say) stay out of the pod's files.
fn mount_repo_password_from(v: &mut Value, name: &str) {
    let volumes = v
        .pointer_mut("/spec/template/spec/volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten();
    for vol in volumes {
        if vol["name"] == "repo-credentials" {
            vol["secret"]["secretName"] = Value::String(name.into());
            vol["secret"]["items"] = json!([{"key": REPO_PASSWORD_KEY, "path": REPO_PASSWORD_KEY}]);
        }
    }
}

fn customize_node_agent(v: &mut Value, o: &InstallOptions) {
    if v["kind"] != "DaemonSet" {
        return;
    }
    customize_pods(v, o, &o.node_agent_resources);
    for c in containers(v) {
        if let Some(args) = c["args"].as_array_mut() {
            for a in args.iter_mut() {
                if a.as_str().is_some_and(|s| s.starts_with("--namespace=")) {
                    *a = Value::String(format!("--namespace={}", o.namespace));
                }
            }
        }
    }
}

fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: Map<String, Value> = data
        .iter()
        .map(|(k, v)| ((*k).to_string(), Value::String(b64.encode(v))))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/part-of": "tidemark",
                MANAGED_BY.0: MANAGED_BY.1,
            },
        },
        "type": "Opaque",
        "data": data,
    })
}

fn location(o: &InstallOptions, loc: &LocationOptions) -> Value {
    let spec = api::LocationSpec {
        provider: loc.provider,
        bucket: loc.bucket.clone(),
        prefix: loc.prefix.clone().filter(|p| !p.is_empty()),
        config: loc.config.clone(),
        credential: o.credentials_file.as_ref().map(|_| api::SecretKeyRef {
            name: CREDENTIALS_SECRET.into(),
            key: CREDENTIALS_KEY.into(),
        }),
        ca_cert: loc.ca_cert.clone(),
        access_mode: AccessMode::ReadWrite,
        default: true,
        sync_period: None,
        validation_period: None,
        encryption: None,
        object_lock: None,
    };
    json!({
        "apiVersion": format!("{}/{}", api::GROUP, api::VERSION),
        "kind": "Location",
        "metadata": {
            "name": DEFAULT_LOCATION,
            "namespace": o.namespace,
            "labels": {
                "app.kubernetes.io/part-of": "tidemark",
                MANAGED_BY.0: MANAGED_BY.1,
            },
        },
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name}"))
    }

    fn s3(o: &mut InstallOptions) {
        o.location = Some(LocationOptions {
            provider: Provider::S3,
            bucket: "backups".into(),
            prefix: Some("cluster-a".into()),
            config: [
                ("region".to_string(), "minio".to_string()),
                ("s3Url".to_string(), "http://minio:9000".to_string()),
            ]
            .into(),
            ca_cert: None,
        });
        o.credentials_file =
            Some("[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n".into());
    }

    #[test]
    fn namespace_and_image_are_rewritten_everywhere() {
        let mut o = InstallOptions::base("backup-system");
        o.image = Some("registry.local/tidemark:dev".into());
        o.node_agent = true;
        o.repo_password = Some("pw".into());
        let docs = render(&o).unwrap();
        let text = serde_json::to_string(&docs).unwrap();
        assert!(!text.contains("\"namespace\":\"tidemark\""), "{text}");
        assert!(!text.contains("--namespace=tidemark\""), "{text}");
        assert_eq!(
            find(&docs, "Namespace", "backup-system")["kind"],
            "Namespace"
        );
        find(&docs, "Namespace", "backup-system-node-agent");
        let ds = find(&docs, "DaemonSet", "tidemark-node-agent");
        assert_eq!(ds["metadata"]["namespace"], "backup-system-node-agent");
        assert_eq!(
            ds["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.local/tidemark:dev"
        );
        let rb = find(&docs, "RoleBinding", "tidemark-node-agent");
        assert_eq!(rb["metadata"]["namespace"], "backup-system");
        assert_eq!(rb["subjects"][0]["namespace"], "backup-system-node-agent");
        assert_eq!(
            docs.iter()
                .filter(|d| d["kind"] == "CustomResourceDefinition")
                .count(),
            9
        );
        // CRDs, then namespaces, then the rest.
        let first_other = docs
            .iter()
            .position(|d| d["kind"] != "CustomResourceDefinition" && d["kind"] != "Namespace")
            .unwrap();
        assert!(docs[first_other..].iter().all(|d| d["kind"] != "Namespace"));
    }

    #[test]
    fn the_repository_password_can_come_from_the_encryption_secret() {
        let mut o = InstallOptions::base("backup-system");
        o.node_agent = true;
        o.repo_password = Some("from-backup-key".into());
        o.repo_password_secret = Some("backup-key".into());
        let docs = render(&o).unwrap();
        let deploy = find(&docs, "Deployment", "tidemark");
        let pod = &deploy["spec"]["template"]["spec"];
        let vol = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "repo-credentials")
            .unwrap();
        // The key alone, from the user's Secret, where the controller reads the password.
        assert_eq!(vol["secret"]["secretName"], "backup-key");
        assert_eq!(
            vol["secret"]["items"],
            json!([{"key": "repository-password", "path": "repository-password"}])
        );
        let c = &pod["containers"][0];
        let mount = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "repo-credentials")
            .unwrap();
        let env = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "TIDEMARK_REPO_PASSWORD_FILE")
            .unwrap();
        assert_eq!(
            env["value"].as_str().unwrap(),
            format!(
                "{}/{REPO_PASSWORD_KEY}",
                mount["mountPath"].as_str().unwrap()
            )
        );
        // No tidemark-repo-credentials beside the user's Secret; the node agent's own copy.
        let repo: Vec<&Value> = docs
            .iter()
            .filter(|d| d["kind"] == "Secret" && d["metadata"]["name"] == REPO_SECRET)
            .collect();
        assert_eq!(repo.len(), 1, "{repo:?}");
        assert_eq!(repo[0]["metadata"]["namespace"], "backup-system-node-agent");
        let pw = base64::engine::general_purpose::STANDARD
            .decode(repo[0]["data"][REPO_PASSWORD_KEY].as_str().unwrap())
            .unwrap();
        assert_eq!(pw, b"from-backup-key");
        let ds = find(&docs, "DaemonSet", "tidemark-node-agent");
        assert!(
            serde_json::to_string(ds)
                .unwrap()
                .contains(&format!("\"secretName\":\"{REPO_SECRET}\""))
        );
        // Without it, both namespaces get tidemark-repo-credentials, mounted whole.
        o.repo_password_secret = None;
        let docs = render(&o).unwrap();
        assert_eq!(
            docs.iter()
                .filter(|d| d["kind"] == "Secret" && d["metadata"]["name"] == REPO_SECRET)
                .count(),
            2
        );
        let deploy = serde_json::to_string(find(&docs, "Deployment", "tidemark")).unwrap();
        assert!(deploy.contains(&format!("\"secretName\":\"{REPO_SECRET}\"")));
        assert!(!deploy.contains("\"items\""));
        o.repo_password_secret = Some("Backup_Key".into());
        let e = render(&o).unwrap_err().to_string();
        assert!(e.contains("--repo-password-secret \"Backup_Key\""), "{e}");
    }

    #[test]
    fn location_and_secret_follow_velero_names() {
        let mut o = InstallOptions::base("tidemark");
        s3(&mut o);
        let docs = render(&o).unwrap();
        let sec = find(&docs, "Secret", CREDENTIALS_SECRET);
        let cloud = base64::engine::general_purpose::STANDARD
            .decode(sec["data"][CREDENTIALS_KEY].as_str().unwrap())
            .unwrap();
        assert!(
            String::from_utf8(cloud)
                .unwrap()
                .contains("aws_access_key_id = AK")
        );
        let loc = find(&docs, "Location", DEFAULT_LOCATION);
        assert_eq!(loc["spec"]["bucket"], "backups");
        assert_eq!(loc["spec"]["prefix"], "cluster-a");
        assert_eq!(loc["spec"]["default"], true);
        assert_eq!(loc["spec"]["config"]["s3Url"], "http://minio:9000");
        assert_eq!(loc["spec"]["credential"]["name"], CREDENTIALS_SECRET);
        assert_eq!(loc["spec"]["credential"]["key"], CREDENTIALS_KEY);
        // No node agent: no agent objects, no repository Secret.
        assert!(!docs.iter().any(|d| d["kind"] == "DaemonSet"));
        assert!(!docs.iter().any(|d| d["metadata"]["name"] == REPO_SECRET));
    }

    #[test]
    fn no_secret_means_no_credential_reference() {
        let mut o = InstallOptions::base("tidemark");
        s3(&mut o);
        o.credentials_file = None;
        o.sa_annotations = [(
            "eks.amazonaws.com/role-arn".to_string(),
            "arn:aws:iam::1:role/backup".to_string(),
        )]
        .into();
        let docs = render(&o).unwrap();
        assert!(!docs.iter().any(|d| d["kind"] == "Secret"));
        let loc = find(&docs, "Location", DEFAULT_LOCATION);
        assert!(loc["spec"].get("credential").is_none());
        let sa = find(&docs, "ServiceAccount", "tidemark");
        assert_eq!(
            sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
            "arn:aws:iam::1:role/backup"
        );
    }

    #[test]
    fn azure_and_gcp_locations_follow_velero_files() {
        let mut o = InstallOptions::base("tidemark");
        o.node_agent = true;
        o.location = Some(LocationOptions {
            provider: Provider::Azure,
            bucket: "velero".into(),
            prefix: None,
            config: [
                ("storageAccount".to_string(), "backups1".to_string()),
                (
                    "storageAccountKeyEnvVar".to_string(),
                    "AZURE_STORAGE_ACCOUNT_ACCESS_KEY".to_string(),
                ),
                ("resourceGroup".to_string(), "rg".to_string()),
            ]
            .into(),
            ca_cert: None,
        });
        o.credentials_file = Some(
            "AZURE_STORAGE_ACCOUNT_ACCESS_KEY=a2V5\nAZURE_CLOUD_NAME=AzurePublicCloud\n".into(),
        );
        let docs = render(&o).unwrap();
        let loc = find(&docs, "Location", DEFAULT_LOCATION);
        assert_eq!(loc["spec"]["provider"], "azure");
        let env = find(&docs, "Secret", NODE_AGENT_CREDENTIALS);
        // The account key "a2V5", base64-encoded as Secret data.
        assert_eq!(env["data"]["AZURE_STORAGE_ACCOUNT_ACCESS_KEY"], "YTJWNQ==");
        // The file lacks the variable the config names: refused before anything is applied.
        o.credentials_file = Some("AZURE_CLOUD_NAME=AzurePublicCloud\n".into());
        let e = render(&o).unwrap_err().to_string();
        assert!(e.contains("AZURE_STORAGE_ACCOUNT_ACCESS_KEY"), "{e}");
        // GCP: a service-account key; other credential types are named as unsupported.
        o.location = Some(LocationOptions {
            provider: Provider::Gcp,
            bucket: "velero".into(),
            prefix: None,
            config: [("kmsKeyName".to_string(), "k".to_string())].into(),
            ca_cert: None,
        });
        o.credentials_file = Some(r#"{"type": "external_account"}"#.into());
        let e = render(&o).unwrap_err().to_string();
        assert!(e.contains("kmsKeyName"), "{e}");
        if let Some(l) = o.location.as_mut() {
            l.config.clear();
        }
        let e = render(&o).unwrap_err().to_string();
        assert!(e.contains("external_account"), "{e}");
    }

    #[test]
    fn node_agent_gets_store_and_repository_secrets() {
        let mut o = InstallOptions::base("tidemark");
        s3(&mut o);
        o.node_agent = true;
        o.repo_password = Some("secret-pw".into());
        let docs = render(&o).unwrap();
        let env = find(&docs, "Secret", NODE_AGENT_CREDENTIALS);
        assert_eq!(env["metadata"]["namespace"], "tidemark-node-agent");
        assert_eq!(env["data"]["AWS_ACCESS_KEY_ID"], "QUs="); // "AK"
        let repos: Vec<_> = docs
            .iter()
            .filter(|d| d["metadata"]["name"] == REPO_SECRET)
            .map(|d| d["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(repos, ["tidemark", "tidemark-node-agent"]);
    }

    #[test]
    fn resources_args_and_pod_metadata_are_set() {
        let mut o = InstallOptions::base("tidemark");
        o.default_volumes_to_fs_backup = true;
        o.controller_resources = Resources {
            cpu_request: Some("500m".into()),
            memory_limit: Some("1Gi".into()),
            ..Resources::default()
        };
        o.pod_labels = [("team".to_string(), "platform".to_string())].into();
        o.labels = [("env".to_string(), "prod".to_string())].into();
        let docs = render(&o).unwrap();
        let d = find(&docs, "Deployment", "tidemark");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["resources"]["requests"]["cpu"], "500m");
        assert_eq!(c["resources"]["requests"]["memory"], "128Mi");
        assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
        assert!(
            c["args"]
                .as_array()
                .unwrap()
                .contains(&json!("--default-volumes-to-fs-backup"))
        );
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"]["team"],
            "platform"
        );
        assert!(
            docs.iter()
                .all(|d| d["metadata"]["labels"]["env"] == "prod")
        );
    }

    #[test]
    fn bad_input_is_refused_before_anything_is_rendered() {
        let mut o = InstallOptions::base("tidemark");
        o.controller_resources.cpu_request = Some("half".into());
        assert!(
            render(&o)
                .unwrap_err()
                .to_string()
                .contains("controller cpu request \"half\"")
        );
        let mut o = InstallOptions::base("tidemark");
        s3(&mut o);
        o.location
            .as_mut()
            .unwrap()
            .config
            .insert("s3Uri".into(), "x".into());
        assert!(render(&o).unwrap_err().to_string().contains("s3Uri"));
        let mut o = InstallOptions::base("tidemark");
        s3(&mut o);
        o.credentials_file = Some("[default]\naws_access_key_id = AK\n".into());
        assert!(
            render(&o)
                .unwrap_err()
                .to_string()
                .contains("--secret-file")
        );
    }

    #[test]
    fn quantities() {
        for ok in ["1", "500m", "0.5", "128Mi", "1Gi", "2G", "100k"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "1.2.3", "12MB", "abc", "1e3x"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn everything_covers_every_option() {
        let all = everything("tidemark").unwrap();
        for (kind, name) in [
            ("DaemonSet", "tidemark-node-agent"),
            ("Secret", CREDENTIALS_SECRET),
            ("Secret", NODE_AGENT_CREDENTIALS),
            ("Secret", REPO_SECRET),
            ("Location", DEFAULT_LOCATION),
            ("Deployment", "tidemark"),
        ] {
            find(&all, kind, name);
        }
    }
}
