//! Location URLs and the object-store clients behind them.
//!
//! | URL | provider |
//! |---|---|
//! | `file:///dir` | a local directory |
//! | `s3://bucket[/prefix][?region=..&s3Url=..&s3ForcePathStyle=true&insecureSkipTLSVerify=true]` | S3 and S3-compatible stores |
//! | `azure://container[/prefix]?storageAccount=..[&storageAccountKeyEnvVar=..][&useAAD=true]...` | Azure Blob Storage |
//! | `gs://bucket[/prefix][?storeEndpoint=..]` | Google Cloud Storage |
//!
//! Every URL may end in `accessMode=ReadOnly`. The other query keys are the `config` keys of
//! Velero's BackupStorageLocation for the matching plugin (velero-plugin-for-aws,
//! velero-plugin-for-microsoft-azure, velero-plugin-for-gcp); a key tidemark cannot honour is an
//! error naming it, never ignored.
//!
//! Credentials never appear in a URL. In the controller they come from the Location's Secret,
//! holding the provider's credentials file in Velero's format (see [`Secrets`]); in direct mode
//! from the environment: `AWS_*` variables for S3; for Azure the file named by
//! `$AZURE_CREDENTIALS_FILE`, else the process environment read as that file; for GCS a
//! service-account key in `$GOOGLE_SERVICE_ACCOUNT_KEY` (JSON) or the file named by
//! `$GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server (GKE Workload Identity).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;

use super::StoreError;

/// The kind of object store behind a location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// A local directory.
    Filesystem,
    /// Amazon S3 or an S3-compatible store (MinIO, Ceph RGW...).
    S3,
    /// Azure Blob Storage (Velero's `velero.io/azure`): the bucket is a blob container of the
    /// storage account named by the `storageAccount` config key.
    Azure,
    /// Google Cloud Storage (Velero's `velero.io/gcp`).
    Gcp,
}

impl From<crate::api::tidemark::Provider> for Provider {
    fn from(p: crate::api::tidemark::Provider) -> Self {
        use crate::api::tidemark::Provider as P;
        match p {
            P::Filesystem => Provider::Filesystem,
            P::S3 => Provider::S3,
            P::Azure => Provider::Azure,
            P::Gcp => Provider::Gcp,
        }
    }
}

/// Whether tidemark may write to a location (Velero's `accessMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AccessMode {
    /// Backups may be written, deleted and expired.
    #[default]
    ReadWrite,
    /// Sync and restore only: nothing is ever written or deleted.
    ReadOnly,
}

/// A parsed location URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocationUrl {
    provider: Provider,
    /// Bucket (S3, GCS), container (Azure) or absolute directory (filesystem).
    bucket: String,
    prefix: String,
    config: BTreeMap<String, String>,
    access_mode: AccessMode,
}

/// Credentials and trust for a location, read from a Secret or a file (never from a URL).
///
/// Each provider's credentials file is Velero's: an AWS shared-credentials file for S3
/// ([`Secrets::from_aws_credentials_file`]), an env-style `KEY=VALUE` file for Azure
/// ([`Secrets::from_azure_credentials_file`]), a service-account key (JSON) for GCS
/// ([`Secrets::from_gcp_credentials_file`]).
#[derive(Clone, Default)]
pub struct Secrets {
    /// S3 access key id and secret access key.
    pub aws_credentials: Option<(String, String)>,
    /// Azure: the variables of the credentials file (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`, `AZURE_CLOUD_NAME`, the storage account key under the name that
    /// the `storageAccountKeyEnvVar` config key gives, ...).
    pub azure_credentials: Option<BTreeMap<String, String>>,
    /// GCS: a service-account key, the JSON document Google issues (`"type":
    /// "service_account"`).
    pub gcp_service_account_key: Option<String>,
    /// PEM bundle to trust for the store's TLS certificate.
    pub ca_cert_pem: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field(
                "aws_credentials",
                &self.aws_credentials.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "azure_credentials",
                &self
                    .azure_credentials
                    .as_ref()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            )
            .field(
                "gcp_service_account_key",
                &self.gcp_service_account_key.as_ref().map(|_| "[redacted]"),
            )
            .field("ca_cert_pem", &self.ca_cert_pem.is_some())
            .finish()
    }
}

impl Secrets {
    /// Reads `provider`'s credentials file in Velero's format (`profile` picks the section of
    /// an AWS file).
    ///
    /// # Errors
    /// A message naming what is missing or malformed (never a value); the filesystem provider
    /// takes no credentials.
    pub fn from_credentials_file(
        provider: Provider,
        text: &str,
        profile: Option<&str>,
    ) -> Result<Self, String> {
        match provider {
            Provider::S3 => Self::from_aws_credentials_file(text, profile),
            Provider::Azure => Self::from_azure_credentials_file(text),
            Provider::Gcp => Self::from_gcp_credentials_file(text),
            Provider::Filesystem => Err("the filesystem provider takes no credentials".into()),
        }
    }

    /// Reads an AWS shared-credentials file (`[default]` with `aws_access_key_id` and
    /// `aws_secret_access_key`, Velero's `credentials-velero` format); `profile` defaults to
    /// `default`.
    ///
    /// # Errors
    /// A message naming the missing key (never the values).
    pub fn from_aws_credentials_file(text: &str, profile: Option<&str>) -> Result<Self, String> {
        let want = profile.unwrap_or("default");
        let mut section = String::new();
        let (mut id, mut key) = (None, None);
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.trim().trim_start_matches("profile ").to_string();
                continue;
            }
            if section != want {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "aws_access_key_id" => id = Some(v.trim().to_string()),
                    "aws_secret_access_key" => key = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        match (id, key) {
            (Some(id), Some(key)) => Ok(Self {
                aws_credentials: Some((id, key)),
                ..Self::default()
            }),
            _ => Err(format!(
                "profile [{want}] needs aws_access_key_id and aws_secret_access_key"
            )),
        }
    }

    /// Reads Velero's Azure credentials file: `KEY=VALUE` lines as godotenv reads them
    /// (`#` comments, an optional `export `, values optionally in single or double quotes).
    /// Which variables are used depends on the location's config: see [`LocationUrl`]'s Azure
    /// keys.
    ///
    /// # Errors
    /// The number of a line that is not `KEY=VALUE` (never its content).
    pub fn from_azure_credentials_file(text: &str) -> Result<Self, String> {
        Ok(Self {
            azure_credentials: Some(parse_env_file(text)?),
            ..Self::default()
        })
    }

    /// Reads Velero's GCP credentials file: a service-account key as Google issues it (JSON
    /// with `"type": "service_account"`, `client_email`, `private_key_id`, `private_key`).
    ///
    /// # Errors
    /// Not JSON, another credential type (Workload Identity Federation's `external_account`,
    /// a user's `authorized_user`), or a missing field, named.
    pub fn from_gcp_credentials_file(text: &str) -> Result<Self, String> {
        check_service_account_key(text)?;
        Ok(Self {
            gcp_service_account_key: Some(text.to_string()),
            ..Self::default()
        })
    }

    /// The credentials as environment variables, the form in which a process that opens the
    /// location from its URL alone (the node agent) reads them: `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` for S3, every variable of the Azure file as it is, and
    /// `GOOGLE_SERVICE_ACCOUNT_KEY` (the JSON key) for GCS.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some((id, key)) = &self.aws_credentials {
            out.push(("AWS_ACCESS_KEY_ID".to_string(), id.clone()));
            out.push(("AWS_SECRET_ACCESS_KEY".to_string(), key.clone()));
        }
        if let Some(vars) = &self.azure_credentials {
            out.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        if let Some(key) = &self.gcp_service_account_key {
            out.push(("GOOGLE_SERVICE_ACCOUNT_KEY".to_string(), key.clone()));
        }
        out
    }
}

/// Parses an env-style file as godotenv does for Velero's Azure credentials: blank lines and
/// `#` comments skipped, `export ` allowed, `KEY=VALUE` with the value trimmed, unquoted values
/// cut at ` #`, single-quoted values taken as they are, double-quoted ones with `\n`, `\"` and
/// `\\` escapes.
fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let bad = || format!("line {}: expected KEY=VALUE", i + 1);
        let (k, v) = line.split_once('=').ok_or_else(bad)?;
        let k = k.trim();
        let key_ok = k
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !key_ok {
            return Err(bad());
        }
        let v = v.trim();
        let value = if let Some(inner) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
            inner.to_string()
        } else if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
            let mut s = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c == '\\' {
                    match chars.next() {
                        Some('n') => s.push('\n'),
                        Some('r') => s.push('\r'),
                        Some(other) => s.push(other),
                        None => s.push('\\'),
                    }
                } else {
                    s.push(c);
                }
            }
            s
        } else {
            v.split(" #").next().unwrap_or_default().trim().to_string()
        };
        out.insert(k.to_string(), value);
    }
    Ok(out)
}

/// Checks a GCS service-account key (JSON) for what the client needs.
fn check_service_account_key(text: &str) -> Result<(), String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a service-account key (JSON): {e}"))?;
    match v.get("type").and_then(|t| t.as_str()) {
        Some("service_account") | None => {}
        Some("external_account") => {
            return Err(
                "credentials of type external_account (Workload Identity Federation) \
                        are not supported: give a service-account key, or no credential to use \
                        the metadata server (GKE Workload Identity)"
                    .into(),
            );
        }
        Some(other) => {
            return Err(format!(
                "credentials of type {other:?} are not supported: give a service-account key \
                 (\"type\": \"service_account\")"
            ));
        }
    }
    for field in ["client_email", "private_key_id", "private_key"] {
        if !v.get(field).is_some_and(|f| f.is_string()) {
            return Err(format!("the service-account key has no {field}"));
        }
    }
    Ok(())
}

/// Go's `strconv.ParseBool`, which Velero's plugins use for boolean config values.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The Azure config keys tidemark reads (Velero's `velero.io/azure` BackupStorageLocation keys).
const AZURE_KEYS: &str = "storageAccount, storageAccountKeyEnvVar, useAAD, storageAccountURI, \
                          activeDirectoryAuthorityURI, blockSizeInBytes, resourceGroup, \
                          subscriptionId";
/// Google Cloud Storage's endpoint.
const GCS_BASE_URL: &str = "https://storage.googleapis.com";

/// The GCS config keys tidemark reads (Velero's `velero.io/gcp` keys).
const GCP_KEYS: &str = "storeEndpoint, universeDomain, serviceAccount";

/// Smallest and largest `blockSizeInBytes` (1 MiB, 100 MiB: Velero's default). Up to
/// [`super::PART_CONCURRENCY`] blocks are held in memory at once.
pub const AZURE_BLOCK_SIZE_RANGE: std::ops::RangeInclusive<usize> = (1 << 20)..=(100 << 20);

/// An Azure location's settings, from its config keys.
struct AzureSettings {
    account: String,
    key_env_var: Option<String>,
    use_aad: bool,
    endpoint: Option<String>,
    authority: Option<String>,
}

/// A GCS location's settings, from its config keys.
struct GcpSettings {
    base_url: Option<String>,
}

/// Where a GCS client gets its credentials.
enum GcpCredentials {
    /// A service-account key (JSON).
    Key(String),
    /// A user's application-default credentials file (`gcloud auth application-default
    /// login`), direct mode only.
    AuthorizedUserFile(String),
    /// The well-known application-default file, else the metadata server.
    Default,
}

impl LocationUrl {
    /// A location in `provider`'s store: `bucket` is the bucket (S3, GCS), the container
    /// (Azure) or the absolute directory (filesystem, which `prefix` is appended to); `config`
    /// holds Velero's config keys for the provider, checked when the store is opened.
    pub fn new(
        provider: Provider,
        bucket: &str,
        prefix: &str,
        config: BTreeMap<String, String>,
        mode: AccessMode,
    ) -> Self {
        let prefix = prefix.trim_matches('/');
        match provider {
            Provider::Filesystem => Self {
                config,
                ..Self::filesystem(&std::path::Path::new(bucket).join(prefix))
            }
            .with_access_mode(mode),
            _ => Self {
                provider,
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                config,
                access_mode: mode,
            },
        }
    }

    /// An S3 location.
    pub fn s3(
        bucket: &str,
        prefix: &str,
        config: BTreeMap<String, String>,
        mode: AccessMode,
    ) -> Self {
        Self::new(Provider::S3, bucket, prefix, config, mode)
    }

    /// A filesystem location rooted at `dir`.
    pub fn filesystem(dir: &std::path::Path) -> Self {
        Self {
            provider: Provider::Filesystem,
            bucket: dir.display().to_string(),
            prefix: String::new(),
            config: BTreeMap::new(),
            access_mode: AccessMode::ReadWrite,
        }
    }

    /// The provider.
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The prefix inside the bucket (`""` at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The access mode.
    pub fn access_mode(&self) -> AccessMode {
        self.access_mode
    }

    /// The bucket (S3, GCS), container (Azure) or absolute directory (filesystem).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The provider config (`region`, `s3Url`, `storageAccount`, ...), as parsed from the
    /// query and `with_config`.
    pub fn config(&self) -> &BTreeMap<String, String> {
        &self.config
    }

    /// Size in bytes of one part of a multipart upload: Azure's `blockSizeInBytes` when set,
    /// else [`super::PART_SIZE`].
    pub fn part_size(&self) -> usize {
        match self.provider {
            Provider::Azure => self
                .config
                .get("blockSizeInBytes")
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| AZURE_BLOCK_SIZE_RANGE.contains(n))
                .unwrap_or(super::PART_SIZE),
            _ => super::PART_SIZE,
        }
    }

    /// The URL with its provider config in the query (`s3://b/p?region=..&s3Url=..`), which
    /// parses back to an equal [`LocationUrl`]; never holds credentials. Handed to node agents.
    pub fn to_string_with_config(&self) -> String {
        let mut s = self.to_string();
        let mut pairs = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.config {
            pairs.append_pair(k, v);
        }
        let q = pairs.finish();
        if !q.is_empty() {
            s.push(if s.contains('?') { '&' } else { '?' });
            s.push_str(&q);
        }
        s
    }

    /// Returns a copy with the access mode set.
    pub fn with_access_mode(mut self, mode: AccessMode) -> Self {
        self.access_mode = mode;
        self
    }

    /// Returns a copy with extra provider config (`key=value`, Velero's `--config`), overriding
    /// the URL's query.
    pub fn with_config(mut self, extra: &BTreeMap<String, String>) -> Self {
        for (k, v) in extra {
            self.config.insert(k.clone(), v.clone());
        }
        self
    }

    fn invalid(&self, reason: impl Into<String>) -> StoreError {
        StoreError::InvalidUrl {
            url: self.to_string(),
            reason: reason.into(),
        }
    }

    /// Checks the provider config alone (keys known, values well-formed, required keys
    /// present), without credentials: what can be refused before a store is opened.
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] naming the key.
    pub fn check_config(&self) -> Result<(), StoreError> {
        match self.provider {
            Provider::Filesystem => self.check_no_config(),
            Provider::S3 => self.build_s3(None).map(|_| ()),
            Provider::Azure => self.azure_settings().map(|_| ()),
            Provider::Gcp => self.gcp_settings().map(|_| ()),
        }
    }

    fn check_no_config(&self) -> Result<(), StoreError> {
        match self.config.keys().next() {
            None => Ok(()),
            Some(k) => Err(self.invalid(format!(
                "unknown config key {k:?}: filesystem locations take no config"
            ))),
        }
    }

    pub(crate) fn build(
        &self,
        create_dir: bool,
        secrets: Option<&Secrets>,
    ) -> Result<Arc<dyn ObjectStore>, StoreError> {
        match self.provider {
            Provider::Filesystem => {
                self.check_no_config()?;
                let dir = std::path::Path::new(&self.bucket);
                if !dir.is_dir() {
                    if create_dir && self.access_mode == AccessMode::ReadWrite {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            self.invalid(format!("cannot create directory {}: {e}", dir.display()))
                        })?;
                    } else {
                        return Err(StoreError::MissingDirectory {
                            url: self.to_string(),
                            dir: dir.display().to_string(),
                        });
                    }
                }
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| self.invalid(e.to_string()))?
                    .with_automatic_cleanup(true);
                Ok(Arc::new(fs))
            }
            Provider::S3 => Ok(Arc::new(self.build_s3(secrets)?)),
            Provider::Azure => self.build_azure(secrets),
            Provider::Gcp => self.build_gcp(secrets),
        }
    }

    /// The client options of every provider: [`client_options`], plus plain HTTP when the
    /// endpoint says so and the Secret's CA bundle.
    fn options(
        &self,
        endpoint: Option<&str>,
        secrets: Option<&Secrets>,
    ) -> Result<object_store::ClientOptions, StoreError> {
        let mut opts = client_options();
        if endpoint.is_some_and(|e| e.starts_with("http://")) {
            opts = opts.with_allow_http(true);
        }
        if let Some(pem) = secrets.and_then(|s| s.ca_cert_pem.as_ref()) {
            let cert = object_store::Certificate::from_pem(pem.as_bytes())
                .map_err(|e| self.invalid(format!("caCert: {e}")))?;
            opts = opts.with_root_certificate(cert);
        }
        Ok(opts)
    }

    fn build_s3(
        &self,
        secrets: Option<&Secrets>,
    ) -> Result<object_store::aws::AmazonS3, StoreError> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&self.bucket);
        if let Some(sec) = secrets {
            if let Some((id, key)) = &sec.aws_credentials {
                b = b.with_access_key_id(id).with_secret_access_key(key);
            }
            if let Some(pem) = &sec.ca_cert_pem {
                let cert = object_store::Certificate::from_pem(pem.as_bytes())
                    .map_err(|e| self.invalid(format!("caCert: {e}")))?;
                b = b.with_client_options(
                    object_store::ClientOptions::new().with_root_certificate(cert),
                );
            }
        }
        for (k, v) in &self.config {
            b = match k.as_str() {
                "region" => b.with_region(v),
                "s3Url" | "endpoint" => b.with_endpoint(v),
                "s3ForcePathStyle" => b.with_virtual_hosted_style_request(v != "true"),
                "insecureSkipTLSVerify" => b.with_config(
                    AmazonS3ConfigKey::Client(
                        object_store::ClientConfigKey::AllowInvalidCertificates,
                    ),
                    v,
                ),
                "allowHttp" => b.with_allow_http(v == "true"),
                other => {
                    return Err(self.invalid(format!(
                        "unknown config key {other:?} (known: region, s3Url, \
                         s3ForcePathStyle, insecureSkipTLSVerify, allowHttp)"
                    )));
                }
            };
        }
        b = with_network_limits(b);
        // An http:// endpoint given explicitly implies plain HTTP is intended.
        if let Some(ep) = self.config.get("s3Url").or(self.config.get("endpoint"))
            && ep.starts_with("http://")
        {
            b = b.with_allow_http(true);
        }
        b.build()
            .map_err(|e| self.invalid(super::sanitize(&e.to_string())))
    }

    /// Reads the Azure config keys.
    fn azure_settings(&self) -> Result<AzureSettings, StoreError> {
        let mut s = AzureSettings {
            account: String::new(),
            key_env_var: None,
            use_aad: false,
            endpoint: None,
            authority: None,
        };
        for (k, v) in &self.config {
            let v = v.trim();
            match k.as_str() {
                "storageAccount" => {
                    let ok = (3..=24).contains(&v.len())
                        && v.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                    if !ok {
                        return Err(self.invalid(format!(
                            "storageAccount {v:?}: a storage account name is 3-24 lowercase \
                             letters and digits"
                        )));
                    }
                    s.account = v.to_string();
                }
                "storageAccountKeyEnvVar" => {
                    if v.is_empty() {
                        return Err(self.invalid("storageAccountKeyEnvVar is empty"));
                    }
                    s.key_env_var = Some(v.to_string());
                }
                "useAAD" => {
                    s.use_aad = go_bool(v).ok_or_else(|| {
                        self.invalid(format!("useAAD {v:?} is not a boolean (true or false)"))
                    })?;
                }
                "storageAccountURI" => {
                    let uri = if v.contains("://") {
                        v.to_string()
                    } else {
                        format!("https://{v}")
                    };
                    let parsed = url::Url::parse(&uri)
                        .map_err(|e| self.invalid(format!("storageAccountURI {v:?}: {e}")))?;
                    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                        return Err(
                            self.invalid(format!("storageAccountURI {v:?}: not an http(s) URL"))
                        );
                    }
                    s.endpoint = Some(uri.trim_end_matches('/').to_string());
                }
                "activeDirectoryAuthorityURI" => {
                    if !(v.starts_with("https://") || v.starts_with("http://")) {
                        return Err(self.invalid(format!(
                            "activeDirectoryAuthorityURI {v:?}: needs an http(s):// scheme"
                        )));
                    }
                    s.authority = Some(v.to_string());
                }
                "blockSizeInBytes" => {
                    let ok = v
                        .parse::<usize>()
                        .is_ok_and(|n| AZURE_BLOCK_SIZE_RANGE.contains(&n));
                    if !ok {
                        return Err(self.invalid(format!(
                            "blockSizeInBytes {v:?}: a number of bytes from {} (1 MiB) to {} \
                             (100 MiB)",
                            AZURE_BLOCK_SIZE_RANGE.start(),
                            AZURE_BLOCK_SIZE_RANGE.end()
                        )));
                    }
                }
                // Velero reads these to fetch the account key or the account's endpoint from
                // Azure Resource Manager; tidemark reads neither from there (see build_azure).
                "resourceGroup" => {
                    let ok = !v.is_empty()
                        && v.chars().count() <= 90
                        && !v.ends_with('.')
                        && v.chars()
                            .all(|c| c.is_alphanumeric() || "_-.()".contains(c));
                    if !ok {
                        return Err(self.invalid(format!(
                            "resourceGroup {v:?}: not an Azure resource group name"
                        )));
                    }
                }
                "subscriptionId" => {
                    if !is_guid(v) {
                        return Err(self.invalid(format!(
                            "subscriptionId {v:?}: not a subscription id (a GUID)"
                        )));
                    }
                }
                "apiVersion" => {
                    return Err(self.invalid(
                        "config key \"apiVersion\" is not supported: tidemark's Azure client \
                         sends its own storage API version",
                    ));
                }
                other => {
                    return Err(self.invalid(format!(
                        "unknown config key {other:?} (known: {AZURE_KEYS})"
                    )));
                }
            }
        }
        if s.account.is_empty() {
            return Err(self.invalid("storageAccount is required for Azure locations"));
        }
        Ok(s)
    }

    fn build_azure(&self, secrets: Option<&Secrets>) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let s = self.azure_settings()?;
        let creds = match secrets.and_then(|s| s.azure_credentials.clone()) {
            Some(c) => c,
            None => azure_env_credentials().map_err(|e| self.invalid(e))?,
        };
        let get = |k: &str| creds.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        // The cloud: the blob endpoint's domain and the Active Directory authority.
        let cloud = get("AZURE_CLOUD_NAME")
            .unwrap_or_default()
            .to_ascii_uppercase();
        let (suffix, default_authority) = match cloud.as_str() {
            "" | "AZURECLOUD" | "AZUREPUBLICCLOUD" => (
                Some("blob.core.windows.net"),
                Some("https://login.microsoftonline.com"),
            ),
            "AZURECHINACLOUD" => (
                Some("blob.core.chinacloudapi.cn"),
                Some("https://login.chinacloudapi.cn"),
            ),
            "AZUREUSGOVERNMENT" | "AZUREUSGOVERNMENTCLOUD" => (
                Some("blob.core.usgovcloudapi.net"),
                Some("https://login.microsoftonline.us"),
            ),
            _ => (None, None),
        };
        let endpoint = match (&s.endpoint, suffix) {
            (Some(e), _) => e.clone(),
            (None, Some(suffix)) => format!("https://{}.{suffix}", s.account),
            (None, None) => {
                return Err(self.invalid(format!(
                    "AZURE_CLOUD_NAME {:?} is not one of AzurePublicCloud, AzureChinaCloud, \
                     AzureUSGovernmentCloud: for another cloud set storageAccountURI (and \
                     activeDirectoryAuthorityURI with useAAD); tidemark does not read cloud \
                     settings from Azure Resource Manager",
                    get("AZURE_CLOUD_NAME").unwrap_or_default()
                )));
            }
        };
        let mut b = MicrosoftAzureBuilder::new()
            .with_account(&s.account)
            .with_container_name(&self.bucket)
            .with_endpoint(endpoint.clone());
        if let Some(var) = &s.key_env_var {
            // Velero's first way: the storage account key, from the credentials.
            let key = get(var).ok_or_else(|| {
                self.invalid(format!(
                    "storageAccountKeyEnvVar is {var:?}, but the credentials have no {var}"
                ))
            })?;
            b = b.with_access_key(key).with_credential_type("access_key");
        } else if s.use_aad {
            // Velero's second way: an Azure AD token for the account's data plane.
            let authority = s
                .authority
                .clone()
                .or_else(|| default_authority.map(str::to_string));
            let authority = match authority {
                Some(a) => a,
                None => {
                    return Err(self.invalid(
                        "useAAD in a cloud other than AzurePublicCloud, AzureChinaCloud or \
                         AzureUSGovernmentCloud needs activeDirectoryAuthorityURI",
                    ));
                }
            };
            if let Some(secret) = get("AZURE_CLIENT_SECRET") {
                let (Some(tenant), Some(client)) = (get("AZURE_TENANT_ID"), get("AZURE_CLIENT_ID"))
                else {
                    return Err(self.invalid(
                        "AZURE_CLIENT_SECRET needs AZURE_TENANT_ID and AZURE_CLIENT_ID in the \
                         credentials",
                    ));
                };
                b = b
                    .with_client_id(client)
                    .with_client_secret(secret)
                    .with_tenant_id(tenant)
                    .with_authority_host(authority)
                    .with_credential_type("client_secret");
            } else if get("AZURE_CLIENT_CERTIFICATE").is_some()
                || get("AZURE_CLIENT_CERTIFICATE_PATH").is_some()
            {
                return Err(self.invalid(
                    "client certificate credentials (AZURE_CLIENT_CERTIFICATE, \
                     AZURE_CLIENT_CERTIFICATE_PATH) are not supported: use AZURE_CLIENT_SECRET, \
                     workload identity, managed identity or storageAccountKeyEnvVar",
                ));
            } else if get("AZURE_USERNAME").is_some() {
                return Err(self.invalid(
                    "username/password credentials (AZURE_USERNAME) are not supported: use \
                     AZURE_CLIENT_SECRET, workload identity, managed identity or \
                     storageAccountKeyEnvVar",
                ));
            } else if let Some(token_file) = env_nonempty("AZURE_FEDERATED_TOKEN_FILE") {
                // Workload identity: the webhook sets these in the pod's environment.
                let client = env_nonempty("AZURE_CLIENT_ID")
                    .or_else(|| get("AZURE_CLIENT_ID").map(str::to_string));
                let tenant = env_nonempty("AZURE_TENANT_ID")
                    .or_else(|| get("AZURE_TENANT_ID").map(str::to_string));
                let (Some(client), Some(tenant)) = (client, tenant) else {
                    return Err(self.invalid(
                        "workload identity (AZURE_FEDERATED_TOKEN_FILE) needs AZURE_CLIENT_ID \
                         and AZURE_TENANT_ID",
                    ));
                };
                let authority = s
                    .authority
                    .clone()
                    .or_else(|| env_nonempty("AZURE_AUTHORITY_HOST"))
                    .unwrap_or(authority);
                b = b
                    .with_client_id(client)
                    .with_tenant_id(tenant)
                    .with_federated_token_file(token_file)
                    .with_authority_host(authority)
                    .with_credential_type("workload_identity");
            } else {
                // Managed identity, optionally a user-assigned one by client id.
                if let Some(client) = get("AZURE_CLIENT_ID") {
                    b = b.with_client_id(client);
                }
                b = b.with_credential_type("managed_identity");
            }
        } else {
            return Err(self.invalid(
                "give storageAccountKeyEnvVar (the credentials variable holding the storage \
                 account key) or useAAD=true: Velero's third way, fetching the account key \
                 through Azure Resource Manager with resourceGroup and subscriptionId, is not \
                 supported",
            ));
        }
        let opts = self.options(Some(&endpoint), secrets)?;
        b = b.with_client_options(opts).with_retry(retry_config());
        let store = b
            .build()
            .map_err(|e| self.invalid(super::sanitize(&e.to_string())))?;
        Ok(Arc::new(store))
    }

    /// Reads the GCS config keys.
    fn gcp_settings(&self) -> Result<GcpSettings, StoreError> {
        let mut base_url = None;
        let mut universe = None;
        for (k, v) in &self.config {
            let v = v.trim();
            match k.as_str() {
                "storeEndpoint" => {
                    let parsed = url::Url::parse(v)
                        .map_err(|e| self.invalid(format!("storeEndpoint {v:?}: {e}")))?;
                    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                        return Err(
                            self.invalid(format!("storeEndpoint {v:?}: not an http(s) URL"))
                        );
                    }
                    // Go's client takes the JSON API's root (`.../storage/v1/`); the client
                    // here wants the host's root.
                    let root = v.trim_end_matches('/');
                    let root = root.strip_suffix("/storage/v1").unwrap_or(root);
                    base_url = Some(root.trim_end_matches('/').to_string());
                }
                "universeDomain" => {
                    let ok = !v.is_empty()
                        && v.split('.').all(|l| {
                            !l.is_empty()
                                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        });
                    if !ok {
                        return Err(
                            self.invalid(format!("universeDomain {v:?}: not a domain name"))
                        );
                    }
                    universe = Some(format!("https://storage.{v}"));
                }
                // Velero signs download URLs as this account under Workload Identity; tidemark
                // downloads through its own client and signs no URLs.
                "serviceAccount" => {
                    if !v.contains('@') {
                        return Err(self.invalid(format!(
                            "serviceAccount {v:?}: not a service account's email address"
                        )));
                    }
                }
                "kmsKeyName" => {
                    return Err(self.invalid(
                        "config key \"kmsKeyName\" is not supported: tidemark's GCS client cannot \
                         name a KMS key per object; set the key as the bucket's default \
                         encryption key, which GCS applies to every object written",
                    ));
                }
                other => {
                    return Err(
                        self.invalid(format!("unknown config key {other:?} (known: {GCP_KEYS})"))
                    );
                }
            }
        }
        Ok(GcpSettings {
            base_url: base_url.or(universe),
        })
    }

    fn build_gcp(&self, secrets: Option<&Secrets>) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let s = self.gcp_settings()?;
        let creds = match secrets.and_then(|s| s.gcp_service_account_key.clone()) {
            Some(key) => GcpCredentials::Key(key),
            None => gcp_env_credentials().map_err(|e| self.invalid(e))?,
        };
        let mut b = GoogleCloudStorageBuilder::new().with_bucket_name(&self.bucket);
        b = match creds {
            GcpCredentials::Key(key) => {
                check_service_account_key(&key).map_err(|e| self.invalid(e))?;
                b.with_service_account_key(key)
            }
            GcpCredentials::AuthorizedUserFile(path) => b.with_application_credentials(path),
            GcpCredentials::Default => b,
        };
        if let Some(url) = &s.base_url {
            b = b.with_base_url(url);
        }
        let opts = self.options(s.base_url.as_deref(), secrets)?;
        let http = object_store::client::HttpConnector::connect(
            &object_store::client::ReqwestConnector::default(),
            &opts,
        )
        .map_err(|e| self.invalid(super::sanitize(&e.to_string())))?;
        b = b.with_client_options(opts).with_retry(retry_config());
        let store = b
            .build()
            .map_err(|e| self.invalid(super::sanitize(&e.to_string())))?;
        let base_url = s.base_url.as_deref().unwrap_or(GCS_BASE_URL);
        Ok(Arc::new(super::gcs::Gcs::new(
            store,
            http,
            base_url,
            &self.bucket,
        )))
    }
}

/// A GUID, `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in hex digits.
fn is_guid(v: &str) -> bool {
    let groups: Vec<&str> = v.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Azure credentials in direct mode: the file `$AZURE_CREDENTIALS_FILE` names (Velero's
/// variable), else the process environment read as that file.
fn azure_env_credentials() -> Result<BTreeMap<String, String>, String> {
    match std::env::var_os("AZURE_CREDENTIALS_FILE") {
        Some(path) if !path.is_empty() => {
            let shown = std::path::Path::new(&path).display().to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("AZURE_CREDENTIALS_FILE {shown}: {e}"))?;
            parse_env_file(&text).map_err(|e| format!("AZURE_CREDENTIALS_FILE {shown}: {e}"))
        }
        _ => Ok(std::env::vars().collect()),
    }
}

/// GCS credentials in direct mode: `$GOOGLE_SERVICE_ACCOUNT_KEY` (the key's JSON), else the file
/// `$GOOGLE_APPLICATION_CREDENTIALS` names (a service-account key, or a user's
/// application-default credentials), else the defaults.
fn gcp_env_credentials() -> Result<GcpCredentials, String> {
    if let Some(key) = env_nonempty("GOOGLE_SERVICE_ACCOUNT_KEY") {
        check_service_account_key(&key).map_err(|e| format!("GOOGLE_SERVICE_ACCOUNT_KEY: {e}"))?;
        return Ok(GcpCredentials::Key(key));
    }
    if let Some(path) = env_nonempty("GOOGLE_APPLICATION_CREDENTIALS") {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("GOOGLE_APPLICATION_CREDENTIALS {path}: {e}"))?;
        let kind = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string));
        if kind.as_deref() == Some("authorized_user") {
            return Ok(GcpCredentials::AuthorizedUserFile(path));
        }
        check_service_account_key(&text)
            .map_err(|e| format!("GOOGLE_APPLICATION_CREDENTIALS {path}: {e}"))?;
        return Ok(GcpCredentials::Key(text));
    }
    Ok(GcpCredentials::Default)
}

/// Connecting to the store may take this long (10 s).
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A response may pause this long between two reads before the request fails (60 s): a stalled
/// connection is noticed even while a large object streams.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// One request, body included, may take this long (15 min): a 5 MiB part or a ranged read of an
/// archive at well under 1 MB/s fits; object_store resumes a failed download with a range request.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// Retries of a failed request (connection errors, 5xx, 429, timeouts): at most this many, with
/// exponential backoff from 100 ms to 15 s, within [`RETRY_WINDOW`].
pub const MAX_RETRIES: usize = 10;
/// The time within which a request is retried (3 min).
pub const RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(3 * 60);

/// The retries of every provider's client ([`MAX_RETRIES`] within [`RETRY_WINDOW`]).
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_WINDOW,
    }
}

/// The timeouts of the Azure and GCS clients ([`CONNECT_TIMEOUT`], [`READ_TIMEOUT`],
/// [`REQUEST_TIMEOUT`]), set explicitly rather than left to object_store's defaults (30 s per
/// request, which a slow link could hit for an archive part).
fn client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_read_timeout(READ_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
}

/// The S3 client's timeouts and retries: the same as [`client_options`] and [`retry_config`],
/// set key by key so that the `AWS_*` environment's client settings (`AWS_ALLOW_HTTP`) stay.
fn with_network_limits(b: AmazonS3Builder) -> AmazonS3Builder {
    use object_store::ClientConfigKey as K;
    let secs = |d: std::time::Duration| format!("{}s", d.as_secs());
    b.with_config(
        AmazonS3ConfigKey::Client(K::ConnectTimeout),
        secs(CONNECT_TIMEOUT),
    )
    .with_config(
        AmazonS3ConfigKey::Client(K::ReadTimeout),
        secs(READ_TIMEOUT),
    )
    .with_config(AmazonS3ConfigKey::Client(K::Timeout), secs(REQUEST_TIMEOUT))
    .with_retry(retry_config())
}

impl FromStr for LocationUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| StoreError::InvalidUrl {
            url: s.to_string(),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(s).map_err(|e| bad(&e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials must not be part of the URL; use the provider's environment \
                 variables or a Secret",
            ));
        }
        let mut config = BTreeMap::new();
        let mut access_mode = AccessMode::ReadWrite;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "accessMode" => {
                    access_mode = match v.as_ref() {
                        "ReadWrite" => AccessMode::ReadWrite,
                        "ReadOnly" => AccessMode::ReadOnly,
                        _ => return Err(bad("accessMode must be ReadWrite or ReadOnly")),
                    }
                }
                _ => {
                    config.insert(k.into_owned(), v.into_owned());
                }
            }
        }
        let bucket_location = |provider: Provider, scheme: &str, what: &str| {
            let bucket = url
                .host_str()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad(&format!("missing {what}: use {scheme}://{what}/prefix")))?;
            Ok(Self {
                provider,
                bucket: bucket.to_string(),
                prefix: url.path().trim_matches('/').to_string(),
                config: config.clone(),
                access_mode,
            })
        };
        match url.scheme() {
            "file" => {
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(bad("file URLs take no host: use file:///absolute/dir"));
                }
                if !config.is_empty() {
                    return Err(bad("file locations take no config besides accessMode"));
                }
                let path = url
                    .to_file_path()
                    .map_err(|_| bad("not an absolute directory path"))?;
                Ok(Self {
                    provider: Provider::Filesystem,
                    bucket: path.display().to_string(),
                    prefix: String::new(),
                    config,
                    access_mode,
                })
            }
            "s3" => bucket_location(Provider::S3, "s3", "bucket"),
            "azure" => bucket_location(Provider::Azure, "azure", "container"),
            "gs" => bucket_location(Provider::Gcp, "gs", "bucket"),
            other => Err(bad(&format!(
                "unsupported scheme {other:?}: use file:///dir, s3://bucket/prefix, \
                 azure://container/prefix?storageAccount=NAME or gs://bucket/prefix"
            ))),
        }
    }
}

impl fmt::Display for LocationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.provider {
            Provider::Filesystem => None,
            Provider::S3 => Some("s3"),
            Provider::Azure => Some("azure"),
            Provider::Gcp => Some("gs"),
        };
        match scheme {
            None => write!(f, "file://{}", self.bucket)?,
            Some(scheme) => {
                write!(f, "{scheme}://{}", self.bucket)?;
                if !self.prefix.is_empty() {
                    write!(f, "/{}", self.prefix)?;
                }
            }
        }
        if self.access_mode == AccessMode::ReadOnly {
            write!(f, "?accessMode=ReadOnly")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_requests_have_explicit_timeouts() {
        use object_store::ClientConfigKey as K;
        let b = with_network_limits(AmazonS3Builder::new());
        let get = |k| b.get_config_value(&AmazonS3ConfigKey::Client(k));
        assert_eq!(get(K::ConnectTimeout).as_deref(), Some("10s"));
        assert_eq!(get(K::ReadTimeout).as_deref(), Some("60s"));
        assert_eq!(get(K::Timeout).as_deref(), Some("900s"));
        // Azure and GCS clients get the same options (shown in humantime's format).
        let o = client_options();
        assert_eq!(
            o.get_config_value(&K::ConnectTimeout).as_deref(),
            Some("10s")
        );
        assert_eq!(o.get_config_value(&K::ReadTimeout).as_deref(), Some("1m"));
        assert_eq!(o.get_config_value(&K::Timeout).as_deref(), Some("15m"));
        assert_eq!(retry_config().max_retries, MAX_RETRIES);
        assert_eq!(retry_config().retry_timeout, RETRY_WINDOW);
    }

    #[test]
    fn parses_s3_with_prefix_and_config() {
        let u: LocationUrl =
            "s3://bkt/a/b?region=eu-west-1&s3ForcePathStyle=true&accessMode=ReadOnly"
                .parse()
                .unwrap();
        assert_eq!(u.provider(), Provider::S3);
        assert_eq!(u.prefix(), "a/b");
        assert_eq!(u.access_mode(), AccessMode::ReadOnly);
        assert_eq!(u.to_string(), "s3://bkt/a/b?accessMode=ReadOnly");
    }

    #[test]
    fn parses_azure_and_gcs() {
        let u: LocationUrl = "azure://backups/cluster-a?storageAccount=acct1&useAAD=true"
            .parse()
            .unwrap();
        assert_eq!(u.provider(), Provider::Azure);
        assert_eq!(u.bucket(), "backups");
        assert_eq!(u.prefix(), "cluster-a");
        assert_eq!(u.config()["storageAccount"], "acct1");
        assert_eq!(u.to_string(), "azure://backups/cluster-a");
        let back: LocationUrl = u.to_string_with_config().parse().unwrap();
        assert_eq!(back, u);
        let g: LocationUrl = "gs://bkt/p/q?accessMode=ReadOnly".parse().unwrap();
        assert_eq!(g.provider(), Provider::Gcp);
        assert_eq!(g.prefix(), "p/q");
        assert_eq!(g.to_string(), "gs://bkt/p/q?accessMode=ReadOnly");
    }

    #[test]
    fn parses_file() {
        let u: LocationUrl = "file:///tmp/x".parse().unwrap();
        assert_eq!(u.provider(), Provider::Filesystem);
        assert_eq!(u.to_string(), "file:///tmp/x");
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "ftp://x/y",
            "s3:///nobucket",
            "s3://user:pw@bkt/p",
            "azure://acct:key@container/p",
            "azure:///p",
            "gs:///p",
            "file://host/dir",
            "file:///d?accessMode=Sometimes",
            "not a url",
        ] {
            assert!(
                bad.parse::<LocationUrl>().is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn unknown_s3_config_key_is_an_error() {
        let u: LocationUrl = "s3://bkt?colour=blue".parse().unwrap();
        let e = u.build(false, None).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }

    fn azure(query: &str, creds: &str) -> Result<Arc<dyn ObjectStore>, String> {
        let u: LocationUrl = format!("azure://c/p?{query}").parse().unwrap();
        let s = Secrets::from_azure_credentials_file(creds)?;
        u.build(false, Some(&s)).map_err(|e| e.to_string())
    }

    const KEY: &str = "AZURE_STORAGE_ACCOUNT_ACCESS_KEY=YWJjZGVmZ2hpams=\n";

    #[test]
    fn azure_config_keys_are_checked_by_name() {
        let base = "storageAccount=acct1&storageAccountKeyEnvVar=AZURE_STORAGE_ACCOUNT_ACCESS_KEY";
        assert!(azure(base, KEY).is_ok());
        // Velero's keys: accepted with valid values.
        let full = format!(
            "{base}&resourceGroup=my-rg_1.(x)&subscriptionId=0b1f6471-1bf0-4dda-aec3-111122223333\
             &storageAccountURI=acct1.blob.core.windows.net&blockSizeInBytes=4194304"
        );
        assert!(azure(&full, KEY).is_ok());
        for (query, names) in [
            (format!("{base}&colour=blue"), "colour"),
            (format!("{base}&apiVersion=2020-01-01"), "apiVersion"),
            (format!("{base}&subscriptionId=nope"), "subscriptionId"),
            (format!("{base}&resourceGroup=bad."), "resourceGroup"),
            (format!("{base}&blockSizeInBytes=10"), "blockSizeInBytes"),
            (format!("{base}&useAAD=maybe"), "useAAD"),
            ("storageAccountKeyEnvVar=K".to_string(), "storageAccount"),
            (
                "storageAccount=Has_Capitals&storageAccountKeyEnvVar=K".to_string(),
                "storageAccount",
            ),
        ] {
            let e = azure(&query, KEY).unwrap_err();
            assert!(e.contains(names), "{query}: {e}");
        }
    }

    #[test]
    fn azure_credentials_follow_velero_order() {
        // The key variable must be in the credentials.
        let e = azure(
            "storageAccount=acct1&storageAccountKeyEnvVar=MY_KEY",
            "AZURE_CLOUD_NAME=AzurePublicCloud\n",
        )
        .unwrap_err();
        assert!(e.contains("MY_KEY"), "{e}");
        // A service principal with useAAD.
        let sp = "AZURE_TENANT_ID=t\nAZURE_CLIENT_ID=c\nAZURE_CLIENT_SECRET=s\n";
        assert!(azure("storageAccount=acct1&useAAD=true", sp).is_ok());
        let e = azure(
            "storageAccount=acct1&useAAD=true",
            "AZURE_CLIENT_SECRET=s\n",
        )
        .unwrap_err();
        assert!(e.contains("AZURE_TENANT_ID"), "{e}");
        // Certificates are named as unsupported.
        let e = azure(
            "storageAccount=acct1&useAAD=true",
            "AZURE_TENANT_ID=t\nAZURE_CLIENT_ID=c\nAZURE_CLIENT_CERTIFICATE_PATH=/c.pem\n",
        )
        .unwrap_err();
        assert!(e.contains("AZURE_CLIENT_CERTIFICATE"), "{e}");
        // Neither a key nor AAD: Velero would call Resource Manager; refused with the reason.
        let e = azure(
            "storageAccount=acct1&resourceGroup=rg&subscriptionId=0b1f6471-1bf0-4dda-aec3-111122223333",
            sp,
        )
        .unwrap_err();
        assert!(e.contains("Resource Manager"), "{e}");
        // An unknown cloud needs an explicit endpoint.
        let e = azure(
            "storageAccount=acct1&storageAccountKeyEnvVar=AZURE_STORAGE_ACCOUNT_ACCESS_KEY",
            &format!("{KEY}AZURE_CLOUD_NAME=AzureStackCloud\n"),
        )
        .unwrap_err();
        assert!(e.contains("storageAccountURI"), "{e}");
        assert!(
            azure(
                "storageAccount=acct1&storageAccountKeyEnvVar=AZURE_STORAGE_ACCOUNT_ACCESS_KEY\
                 &storageAccountURI=https://acct1.blob.local.azurestack.external",
                &format!("{KEY}AZURE_CLOUD_NAME=AzureStackCloud\n"),
            )
            .is_ok()
        );
    }

    #[test]
    fn azure_block_size_sets_the_part_size() {
        let u: LocationUrl = "azure://c?storageAccount=a1b&blockSizeInBytes=8388608"
            .parse()
            .unwrap();
        assert_eq!(u.part_size(), 8 << 20);
        let s3: LocationUrl = "s3://b".parse().unwrap();
        assert_eq!(s3.part_size(), super::super::PART_SIZE);
    }

    #[test]
    fn env_file_reads_like_godotenv() {
        let m = parse_env_file(
            "# comment\n\nexport AZURE_TENANT_ID = t1 \nAZURE_CLIENT_SECRET=\"a\\\"b#c\"\n\
             AZURE_CLIENT_ID='x y'\nAZURE_CLOUD_NAME=AzurePublicCloud # trailing\r\nEMPTY=\n",
        )
        .unwrap();
        assert_eq!(m["AZURE_TENANT_ID"], "t1");
        assert_eq!(m["AZURE_CLIENT_SECRET"], "a\"b#c");
        assert_eq!(m["AZURE_CLIENT_ID"], "x y");
        assert_eq!(m["AZURE_CLOUD_NAME"], "AzurePublicCloud");
        assert_eq!(m["EMPTY"], "");
        let e = parse_env_file("A=1\nsecret-without-equals\n").unwrap_err();
        assert_eq!(e, "line 2: expected KEY=VALUE");
    }

    fn sa_key(kind: &str) -> String {
        serde_json::json!({
            "type": kind, "project_id": "p", "private_key_id": "k1",
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
            "client_email": "velero@p.iam.gserviceaccount.com", "client_id": "1"
        })
        .to_string()
    }

    #[test]
    fn gcp_credentials_and_config() {
        assert!(Secrets::from_gcp_credentials_file(&sa_key("service_account")).is_ok());
        let e = Secrets::from_gcp_credentials_file(&sa_key("external_account")).unwrap_err();
        assert!(e.contains("external_account"), "{e}");
        let e = Secrets::from_gcp_credentials_file("{\"type\": \"service_account\"}").unwrap_err();
        assert!(e.contains("client_email"), "{e}");
        assert!(Secrets::from_gcp_credentials_file("[default]").is_err());
        for (query, name) in [
            (
                "kmsKeyName=projects/p/locations/l/keyRings/r/cryptoKeys/k",
                "kmsKeyName",
            ),
            ("colour=blue", "colour"),
            ("serviceAccount=nobody", "serviceAccount"),
            ("storeEndpoint=ftp://x", "storeEndpoint"),
        ] {
            let u: LocationUrl = format!("gs://b/p?{query}").parse().unwrap();
            let e = u.check_config().unwrap_err().to_string();
            assert!(e.contains(name), "{query}: {e}");
        }
        let u: LocationUrl = "gs://b?storeEndpoint=http://127.0.0.1:4443/storage/v1/&\
                              serviceAccount=velero@p.iam.gserviceaccount.com"
            .parse()
            .unwrap();
        assert_eq!(
            u.gcp_settings().ok().and_then(|s| s.base_url).as_deref(),
            Some("http://127.0.0.1:4443")
        );
    }

    #[test]
    fn credentials_become_environment_variables() {
        let s = Secrets::from_azure_credentials_file("AZURE_TENANT_ID=t\nMY_KEY=k\n").unwrap();
        assert_eq!(
            s.env_vars(),
            vec![
                ("AZURE_TENANT_ID".to_string(), "t".to_string()),
                ("MY_KEY".to_string(), "k".to_string())
            ]
        );
        let g = Secrets::from_gcp_credentials_file(&sa_key("service_account")).unwrap();
        assert_eq!(g.env_vars()[0].0, "GOOGLE_SERVICE_ACCOUNT_KEY");
        let dbg = format!("{g:?} {s:?}");
        assert!(!dbg.contains("PRIVATE KEY") && !dbg.contains("=k"), "{dbg}");
    }

    #[test]
    fn filesystem_takes_no_config() {
        let dir = tempfile::tempdir().unwrap();
        let u = LocationUrl::filesystem(dir.path())
            .with_config(&BTreeMap::from([("region".into(), "x".into())]));
        let e = u
            .build(false, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("region"), "{e}");
    }

    #[test]
    fn missing_directory_is_an_error() {
        let u: LocationUrl = "file:///nonexistent/tidemark/dir".parse().unwrap();
        assert!(matches!(
            u.build(false, None),
            Err(StoreError::MissingDirectory { .. })
        ));
    }
}
