//! Location URLs: `file:///dir[?accessMode=ReadOnly]` and
//! `s3://bucket[/prefix][?region=..&s3Url=..&s3ForcePathStyle=true&insecureSkipTLSVerify=true]`.
//!
//! S3 query keys are Velero's BackupStorageLocation `config` keys for the AWS plugin. Credentials
//! never appear in a URL: they come from the standard `AWS_*` environment variables (or, in the
//! controller, from a Secret).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;

use super::StoreError;

/// The kind of object store behind a location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provider {
    /// A local directory.
    Filesystem,
    /// Amazon S3 or an S3-compatible store (MinIO, Ceph RGW...).
    S3,
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
    /// Bucket (S3) or absolute directory (filesystem).
    bucket: String,
    prefix: String,
    config: BTreeMap<String, String>,
    access_mode: AccessMode,
}

/// Credentials and trust for a location, read from a Secret or a file (never from a URL).
#[derive(Clone, Default)]
pub struct Secrets {
    /// S3 access key id and secret access key.
    pub aws_credentials: Option<(String, String)>,
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
            .field("ca_cert_pem", &self.ca_cert_pem.is_some())
            .finish()
    }
}

impl Secrets {
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
                ca_cert_pem: None,
            }),
            _ => Err(format!(
                "profile [{want}] needs aws_access_key_id and aws_secret_access_key"
            )),
        }
    }
}

impl LocationUrl {
    /// An S3 location.
    pub fn s3(
        bucket: &str,
        prefix: &str,
        config: BTreeMap<String, String>,
        mode: AccessMode,
    ) -> Self {
        Self {
            provider: Provider::S3,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            config,
            access_mode: mode,
        }
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

    /// The bucket (S3) or absolute directory (filesystem).
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The provider config (`region`, `s3Url`, ...), as parsed from the query and `with_config`.
    pub fn config(&self) -> &BTreeMap<String, String> {
        &self.config
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

    pub(crate) fn build(
        &self,
        create_dir: bool,
        secrets: Option<&Secrets>,
    ) -> Result<Arc<dyn ObjectStore>, StoreError> {
        match self.provider {
            Provider::Filesystem => {
                let dir = std::path::Path::new(&self.bucket);
                if !dir.is_dir() {
                    if create_dir && self.access_mode == AccessMode::ReadWrite {
                        std::fs::create_dir_all(dir).map_err(|e| StoreError::InvalidUrl {
                            url: self.to_string(),
                            reason: format!("cannot create directory {}: {e}", dir.display()),
                        })?;
                    } else {
                        return Err(StoreError::MissingDirectory {
                            url: self.to_string(),
                            dir: dir.display().to_string(),
                        });
                    }
                }
                let fs = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| StoreError::InvalidUrl {
                        url: self.to_string(),
                        reason: e.to_string(),
                    })?
                    .with_automatic_cleanup(true);
                Ok(Arc::new(fs))
            }
            Provider::S3 => {
                let mut b = AmazonS3Builder::from_env().with_bucket_name(&self.bucket);
                if let Some(sec) = secrets {
                    if let Some((id, key)) = &sec.aws_credentials {
                        b = b.with_access_key_id(id).with_secret_access_key(key);
                    }
                    if let Some(pem) = &sec.ca_cert_pem {
                        let cert =
                            object_store::Certificate::from_pem(pem.as_bytes()).map_err(|e| {
                                StoreError::InvalidUrl {
                                    url: self.to_string(),
                                    reason: format!("caCert: {e}"),
                                }
                            })?;
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
                            return Err(StoreError::InvalidUrl {
                                url: self.to_string(),
                                reason: format!(
                                    "unknown config key {other:?} (known: region, s3Url, \
                                     s3ForcePathStyle, insecureSkipTLSVerify, allowHttp)"
                                ),
                            });
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
                let s3 = b.build().map_err(|e| StoreError::InvalidUrl {
                    url: self.to_string(),
                    reason: super::sanitize(&e.to_string()),
                })?;
                Ok(Arc::new(s3))
            }
        }
    }
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

/// The store client's timeouts and retries, set explicitly rather than left to object_store's
/// defaults (30 s per request, which a slow link could hit for an archive part).
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
    .with_retry(object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: std::time::Duration::from_millis(100),
            max_backoff: std::time::Duration::from_secs(15),
            base: 2.0,
        },
        max_retries: MAX_RETRIES,
        retry_timeout: RETRY_WINDOW,
    })
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
                "credentials must not be part of the URL; use AWS_* variables or a Secret",
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
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad("missing bucket: use s3://bucket/prefix"))?;
                Ok(Self {
                    provider: Provider::S3,
                    bucket: bucket.to_string(),
                    prefix: url.path().trim_matches('/').to_string(),
                    config,
                    access_mode,
                })
            }
            other => Err(bad(&format!(
                "unsupported scheme {other:?}: use file:///dir or s3://bucket/prefix"
            ))),
        }
    }
}

impl fmt::Display for LocationUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.provider {
            Provider::Filesystem => write!(f, "file://{}", self.bucket)?,
            Provider::S3 => {
                write!(f, "s3://{}", self.bucket)?;
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

    #[test]
    fn missing_directory_is_an_error() {
        let u: LocationUrl = "file:///nonexistent/tidemark/dir".parse().unwrap();
        assert!(matches!(
            u.build(false, None),
            Err(StoreError::MissingDirectory { .. })
        ));
    }
}
