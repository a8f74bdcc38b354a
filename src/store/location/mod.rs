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
use object_store::local::LocalFileSystem;

use super::StoreError;
use super::s3_api::S3Api;

mod azure;
mod credentials;
mod gcp;

pub use azure::AZURE_BLOCK_SIZE_RANGE;
pub use credentials::Secrets;

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

/// Go's `strconv.ParseBool`, which Velero's plugins use for boolean config values.
fn go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
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

    /// The same location sending the upload checksums S3 Object Lock requires (SHA-256, the
    /// `checksumAlgorithm` config key), unless the config already chose.
    pub fn with_object_lock_checksums(mut self) -> Self {
        self.config
            .entry("checksumAlgorithm".into())
            .or_insert_with(|| "SHA256".into());
        self
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

    /// The object-store client of the location, plus, for S3, the client of the S3 APIs
    /// object_store lacks ([`S3Api`]), signing with the same credentials.
    pub(crate) fn build_with_api(
        &self,
        create_dir: bool,
        secrets: Option<&Secrets>,
    ) -> Result<(Arc<dyn ObjectStore>, Option<S3Api>), StoreError> {
        let store: Arc<dyn ObjectStore> = match self.provider {
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
                Arc::new(fs)
            }
            Provider::S3 => {
                let (store, api) = self.build_s3(secrets)?;
                return Ok((Arc::new(store), Some(api)));
            }
            Provider::Azure => self.build_azure(secrets)?,
            Provider::Gcp => self.build_gcp(secrets)?,
        };
        Ok((store, None))
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
    ) -> Result<(object_store::aws::AmazonS3, S3Api), StoreError> {
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
                // Velero's key (velero-plugin-for-aws): "" sends no checksum; any algorithm it
                // names makes tidemark send SHA-256 checksums (`x-amz-checksum-sha256`), the one
                // object_store computes, which also meets Object Lock's checksum requirement.
                "checksumAlgorithm" => match v.to_ascii_uppercase().as_str() {
                    "" => b,
                    "CRC32" | "CRC32C" | "SHA1" | "SHA256" => {
                        b.with_checksum_algorithm(object_store::aws::Checksum::SHA256)
                    }
                    _ => {
                        return Err(self.invalid(format!(
                            "checksumAlgorithm {v:?}: one of \"\", CRC32, CRC32C, SHA1, SHA256"
                        )));
                    }
                },
                other => {
                    return Err(self.invalid(format!(
                        "unknown config key {other:?} (known: region, s3Url, \
                         s3ForcePathStyle, insecureSkipTLSVerify, allowHttp, checksumAlgorithm)"
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
        // The same endpoint, region, style and trust for the APIs object_store lacks.
        let region = b
            .get_config_value(&AmazonS3ConfigKey::Region)
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = b
            .get_config_value(&AmazonS3ConfigKey::S3Endpoint)
            .or_else(|| b.get_config_value(&AmazonS3ConfigKey::Endpoint))
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let virtual_hosted = b
            .get_config_value(&AmazonS3ConfigKey::VirtualHostedStyleRequest)
            .is_some_and(|v| v == "true");
        let insecure = self
            .config
            .get("insecureSkipTLSVerify")
            .and_then(|v| go_bool(v))
            .unwrap_or(false);
        let s3 = b
            .build()
            .map_err(|e| self.invalid(super::sanitize(&e.to_string())))?;
        let api = S3Api::new(
            &self.to_string(),
            &endpoint,
            &self.bucket,
            &region,
            !virtual_hosted,
            s3.credentials().clone(),
            secrets.and_then(|s| s.ca_cert_pem.as_deref()),
            insecure,
        )?;
        Ok((s3, api))
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
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
/// exponential backoff from 500 ms to 15 s, within [`RETRY_WINDOW`]. object_store draws each
/// wait at random between the first and twice the previous one, so the first wait bounds them
/// all from below: with 500 ms, ten retries outlast a store that restarts for 5 s (with 100 ms
/// they were seen spent in 2 s, tests/faults.rs).
pub const MAX_RETRIES: usize = 10;
/// The time within which a request is retried (3 min).
pub const RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(3 * 60);

/// The retries of every provider's client ([`MAX_RETRIES`] within [`RETRY_WINDOW`]).
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(500),
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
    use super::credentials::parse_env_file;
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
        let e = u.build_with_api(false, None).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }

    fn azure(query: &str, creds: &str) -> Result<Arc<dyn ObjectStore>, String> {
        let u: LocationUrl = format!("azure://c/p?{query}").parse().unwrap();
        let s = Secrets::from_azure_credentials_file(creds)?;
        u.build_with_api(false, Some(&s))
            .map(|(store, _)| store)
            .map_err(|e| e.to_string())
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
            .build_with_api(false, None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("region"), "{e}");
    }

    #[test]
    fn missing_directory_is_an_error() {
        let u: LocationUrl = "file:///nonexistent/tidemark/dir".parse().unwrap();
        assert!(matches!(
            u.build_with_api(false, None),
            Err(StoreError::MissingDirectory { .. })
        ));
    }
}
