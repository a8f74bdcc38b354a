//! The S3 APIs that object_store does not offer, for S3 locations: S3 Object Lock (the bucket's
//! lock configuration, an object's retention, writes that carry a retention), object versions
//! (a locked bucket is versioned: deleting a backup means deleting its versions) and multipart
//! uploads in progress (listing and aborting what an interrupted run left).
//!
//! Requests are presigned with AWS Signature Version 4 by rusty-s3 (sans-IO) with the same
//! credentials object_store resolved for the location (static keys, profile, web identity,
//! instance metadata), sent with reqwest (connect timeout [`CONNECT_TIMEOUT`], whole request
//! [`REQUEST_TIMEOUT`]), retried with exponential backoff on connection errors, 429 and 5xx, and
//! answered in S3's XML, parsed with quick-xml. Formats follow the Amazon S3 API reference:
//! `GetObjectLockConfiguration`, `PutObjectRetention`, `GetObjectRetention`, `PutObject` with
//! `x-amz-object-lock-*` headers, `ListObjectVersions`, `DeleteObject` with `versionId`,
//! `ListMultipartUploads`, `AbortMultipartUpload`, `CreateBucket` with
//! `x-amz-bucket-object-lock-enabled` (<https://docs.aws.amazon.com/AmazonS3/latest/API/>).

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use md5::Digest as _;
use object_store::aws::AwsCredentialProvider;
use reqwest::StatusCode;
use serde::Deserialize;

use super::StoreError;

/// Connecting to the store may take this long (10 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One request of this module may take this long, body included (60 s): they are all small.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a presigned request stays valid (5 min: it is sent at once).
const PRESIGN_SECONDS: u64 = 300;
/// Attempts of a request that failed transiently (connection error, 429, 5xx).
const ATTEMPTS: usize = 6;

/// S3 Object Lock's retention modes (`x-amz-object-lock-mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockMode {
    /// Users with `s3:BypassGovernanceRetention` may still shorten or remove the retention.
    Governance,
    /// Nobody, the account's root user included, can delete the object version before its
    /// retention ends.
    Compliance,
}

impl LockMode {
    /// The mode as S3 writes it (`GOVERNANCE`, `COMPLIANCE`).
    pub fn as_s3(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// Reads S3's spelling, or the Kubernetes-style `Governance`/`Compliance` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "GOVERNANCE" => Some(LockMode::Governance),
            "COMPLIANCE" => Some(LockMode::Compliance),
            _ => None,
        }
    }
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_s3())
    }
}

/// An object version's retention: it cannot be deleted (nor its retention shortened, in
/// [`LockMode::Compliance`]) before `retain_until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// The mode.
    pub mode: LockMode,
    /// The end of the retention (S3 keeps whole seconds).
    pub retain_until: DateTime<Utc>,
}

/// One version of an object, or a delete marker, in a versioned bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectVersion {
    /// The object's key (the full path in the bucket).
    pub key: String,
    /// The version id (`null` for a version written before versioning was enabled).
    pub version_id: String,
    /// A delete marker rather than data.
    pub delete_marker: bool,
}

/// A multipart upload that was started and neither completed nor aborted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingUpload {
    /// The key being uploaded.
    pub key: String,
    /// The upload id.
    pub upload_id: String,
    /// When the upload was started.
    pub initiated: Option<DateTime<Utc>>,
}

/// A client of one bucket for the S3 APIs object_store lacks (see the module doc). Cloning is
/// cheap.
#[derive(Clone)]
pub struct S3Api {
    bucket: Arc<rusty_s3::Bucket>,
    credentials: AwsCredentialProvider,
    http: reqwest::Client,
    /// The location URL (without credentials), for messages.
    location: String,
}

impl std::fmt::Debug for S3Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Api")
            .field("bucket", &self.bucket.name())
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// What a request needs besides the method and the key.
#[derive(Default)]
struct Req<'a> {
    /// Query parameters (sorted here before signing).
    query: Vec<(&'a str, String)>,
    /// Headers, lowercase names (signed).
    headers: Vec<(&'a str, String)>,
    body: Option<Bytes>,
}

/// An answer: status and body.
struct Answer {
    status: StatusCode,
    body: Bytes,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorXml {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LockConfigurationXml {
    #[serde(default)]
    object_lock_enabled: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetentionXml {
    mode: String,
    retain_until_date: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionsXml {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_version_id_marker: Option<String>,
    #[serde(default, rename = "$value")]
    entries: Vec<VersionEntryXml>,
}

#[derive(Deserialize)]
enum VersionEntryXml {
    Version(VersionXml),
    DeleteMarker(VersionXml),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionXml {
    key: String,
    version_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadsXml {
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_key_marker: Option<String>,
    #[serde(default)]
    next_upload_id_marker: Option<String>,
    #[serde(default)]
    upload: Vec<UploadXml>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadXml {
    key: String,
    upload_id: String,
    #[serde(default)]
    initiated: Option<String>,
}

impl S3Api {
    /// A client of `bucket` at `endpoint` (`https://s3.<region>.amazonaws.com` for AWS),
    /// path-style or virtual-hosted, signing with `credentials`; `ca_cert_pem` is trusted
    /// besides the system roots, `insecure` skips TLS verification (the location's
    /// `insecureSkipTLSVerify`).
    ///
    /// # Errors
    /// [`StoreError::InvalidUrl`] for an endpoint that is not an http(s) URL, a bad CA bundle
    /// or an unusable bucket name.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        location: &str,
        endpoint: &str,
        bucket: &str,
        region: &str,
        path_style: bool,
        credentials: AwsCredentialProvider,
        ca_cert_pem: Option<&str>,
        insecure: bool,
    ) -> Result<Self, StoreError> {
        let invalid = |reason: String| StoreError::InvalidUrl {
            url: location.to_string(),
            reason,
        };
        let endpoint: url::Url = endpoint
            .parse()
            .map_err(|e| invalid(format!("endpoint {endpoint:?}: {e}")))?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(invalid(format!(
                "endpoint {endpoint}: only http and https are supported"
            )));
        }
        let style = if path_style {
            rusty_s3::UrlStyle::Path
        } else {
            rusty_s3::UrlStyle::VirtualHost
        };
        let bucket = rusty_s3::Bucket::new(endpoint, style, bucket.to_string(), region.to_string())
            .map_err(|e| invalid(format!("bucket {bucket:?}: {e}")))?;
        let mut http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .danger_accept_invalid_certs(insecure);
        if let Some(pem) = ca_cert_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| invalid(format!("caCert: {e}")))?
            {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .build()
            .map_err(|e| invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            bucket: Arc::new(bucket),
            credentials,
            http,
            location: location.to_string(),
        })
    }

    fn request_error(&self, operation: &'static str, key: &str, message: String) -> StoreError {
        StoreError::Request {
            location: self.location.clone(),
            operation,
            path: key.to_string(),
            message: super::sanitize(&message),
        }
    }

    /// Sends one presigned request, retrying transient failures; any answer that is not a
    /// transient failure is returned, whatever its status.
    async fn send(
        &self,
        operation: &'static str,
        method: rusty_s3::Method,
        key: &str,
        req: &Req<'_>,
    ) -> Result<Answer, StoreError> {
        let attempt =
            || async {
                let credential = self.credentials.get_credential().await.map_err(|e| {
                    Transient::No(self.request_error(operation, key, e.to_string()))
                })?;
                let mut query: Vec<(&str, &str)> =
                    req.query.iter().map(|(k, v)| (*k, v.as_str())).collect();
                query.sort();
                let mut headers: Vec<(&str, &str)> =
                    req.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                headers.sort();
                let url = rusty_s3::signing::sign(
                    &jiff::Timestamp::now(),
                    method,
                    self.bucket.object_url(key),
                    &credential.key_id,
                    &credential.secret_key,
                    credential.token.as_deref(),
                    self.bucket.region(),
                    PRESIGN_SECONDS,
                    query.iter().copied(),
                    headers.iter().copied(),
                );
                let m = match method {
                    rusty_s3::Method::Get => reqwest::Method::GET,
                    rusty_s3::Method::Head => reqwest::Method::HEAD,
                    rusty_s3::Method::Put => reqwest::Method::PUT,
                    rusty_s3::Method::Post => reqwest::Method::POST,
                    rusty_s3::Method::Delete => reqwest::Method::DELETE,
                };
                let mut r = self.http.request(m, url);
                for (k, v) in &headers {
                    r = r.header(*k, *v);
                }
                if let Some(b) = &req.body {
                    r = r.body(b.clone());
                }
                let resp = r.send().await.map_err(|e| {
                    Transient::Yes(self.request_error(operation, key, e.to_string()))
                })?;
                let status = resp.status();
                let body = resp.bytes().await.map_err(|e| {
                    Transient::Yes(self.request_error(operation, key, e.to_string()))
                })?;
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    return Err(Transient::Yes(self.request_error(
                        operation,
                        key,
                        format!("HTTP {status}: {}", error_text(&body)),
                    )));
                }
                Ok(Answer { status, body })
            };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(ATTEMPTS - 1)
                    .with_jitter(),
            )
            .when(|e| matches!(e, Transient::Yes(_)))
            .await
            .map_err(Transient::into_inner)
    }

    /// An answer that is not 2xx, as a [`StoreError`] (404 as [`StoreError::NotFound`]).
    fn refused(&self, operation: &'static str, key: &str, a: &Answer) -> StoreError {
        if a.status == StatusCode::NOT_FOUND {
            return StoreError::NotFound {
                location: self.location.clone(),
                path: key.to_string(),
            };
        }
        self.request_error(
            operation,
            key,
            format!("HTTP {}: {}", a.status, error_text(&a.body)),
        )
    }

    /// Whether the bucket has S3 Object Lock enabled (`GetObjectLockConfiguration`); a bucket
    /// without a lock configuration answers `false`.
    ///
    /// # Errors
    /// [`StoreError::Request`] when the store cannot say (unreachable, access denied).
    pub async fn object_lock_enabled(&self) -> Result<bool, StoreError> {
        let req = Req {
            query: vec![("object-lock", String::new())],
            ..Default::default()
        };
        let a = self
            .send(
                "get object lock configuration",
                rusty_s3::Method::Get,
                "",
                &req,
            )
            .await?;
        if a.status.is_success() {
            let c: LockConfigurationXml = parse(&a.body)
                .map_err(|e| self.request_error("get object lock configuration", "", e))?;
            return Ok(c.object_lock_enabled.as_deref() == Some("Enabled"));
        }
        let code = error_code(&a.body);
        if a.status == StatusCode::NOT_FOUND && code != "NoSuchBucket" {
            return Ok(false);
        }
        Err(self.refused("get object lock configuration", "", &a))
    }

    /// Writes a small object with a retention, only if no object is at `key` yet
    /// (`If-None-Match: *`), with the `Content-MD5` that Object Lock requires.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] when an object is there; [`StoreError::Request`].
    pub async fn put_retained(
        &self,
        key: &str,
        data: Bytes,
        retention: Retention,
    ) -> Result<(), StoreError> {
        let req = Req {
            headers: vec![
                ("content-md5", content_md5(&data)),
                ("if-none-match", "*".into()),
                ("x-amz-object-lock-mode", retention.mode.as_s3().into()),
                (
                    "x-amz-object-lock-retain-until-date",
                    s3_time(retention.retain_until),
                ),
            ],
            body: Some(data),
            ..Default::default()
        };
        let a = self.send("put", rusty_s3::Method::Put, key, &req).await?;
        if a.status.is_success() {
            return Ok(());
        }
        if a.status == StatusCode::PRECONDITION_FAILED || a.status == StatusCode::CONFLICT {
            return Err(StoreError::AlreadyExists {
                location: self.location.clone(),
                path: key.to_string(),
            });
        }
        Err(self.refused("put", key, &a))
    }

    /// Sets the retention of the current version of `key` (`PutObjectRetention`). A version
    /// already retained at least as long, and in the same mode, is left as it is (S3 refuses to
    /// shorten a retention, and the bucket's default retention may have set a longer one).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or [`StoreError::Request`].
    pub async fn put_retention(&self, key: &str, retention: Retention) -> Result<(), StoreError> {
        let body = Bytes::from(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            retention.mode.as_s3(),
            s3_time(retention.retain_until)
        ));
        let req = Req {
            query: vec![("retention", String::new())],
            headers: vec![("content-md5", content_md5(&body))],
            body: Some(body),
        };
        let a = self
            .send("put retention", rusty_s3::Method::Put, key, &req)
            .await?;
        if a.status.is_success() {
            return Ok(());
        }
        if let Ok(Some(now)) = self.retention(key, None).await
            && now.mode == retention.mode
            && now.retain_until >= retention.retain_until
        {
            return Ok(());
        }
        Err(self.refused("put retention", key, &a))
    }

    /// The retention of a version of `key` (the current one when `version_id` is `None`), or
    /// `None` when it has none.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for a missing object; [`StoreError::Request`].
    pub async fn retention(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<Retention>, StoreError> {
        let mut query = vec![("retention", String::new())];
        if let Some(v) = version_id {
            query.push(("versionId", v.to_string()));
        }
        let req = Req {
            query,
            ..Default::default()
        };
        let a = self
            .send("get retention", rusty_s3::Method::Get, key, &req)
            .await?;
        if a.status.is_success() {
            let r: RetentionXml =
                parse(&a.body).map_err(|e| self.request_error("get retention", key, e))?;
            let mode = LockMode::parse(&r.mode).ok_or_else(|| {
                self.request_error(
                    "get retention",
                    key,
                    format!("unknown retention mode {:?}", r.mode),
                )
            })?;
            let until = DateTime::parse_from_rfc3339(&r.retain_until_date)
                .map_err(|e| {
                    self.request_error(
                        "get retention",
                        key,
                        format!("RetainUntilDate {:?}: {e}", r.retain_until_date),
                    )
                })?
                .with_timezone(&Utc);
            return Ok(Some(Retention {
                mode,
                retain_until: until,
            }));
        }
        let code = error_code(&a.body);
        if code == "NoSuchObjectLockConfiguration" || code == "ObjectLockConfigurationNotFoundError"
        {
            return Ok(None);
        }
        Err(self.refused("get retention", key, &a))
    }

    /// Every version and delete marker under `prefix` (`ListObjectVersions`, all pages).
    ///
    /// # Errors
    /// [`StoreError::Request`].
    pub async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, StoreError> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![("versions", String::new()), ("prefix", prefix.to_string())];
            if let Some((k, v)) = &markers {
                query.push(("key-marker", k.clone()));
                query.push(("version-id-marker", v.clone()));
            }
            let req = Req {
                query,
                ..Default::default()
            };
            let a = self
                .send("list versions", rusty_s3::Method::Get, "", &req)
                .await?;
            if !a.status.is_success() {
                return Err(self.refused("list versions", prefix, &a));
            }
            let page: VersionsXml =
                parse(&a.body).map_err(|e| self.request_error("list versions", prefix, e))?;
            for e in page.entries {
                match e {
                    VersionEntryXml::Version(v) => out.push(ObjectVersion {
                        key: v.key,
                        version_id: v.version_id,
                        delete_marker: false,
                    }),
                    VersionEntryXml::DeleteMarker(v) => out.push(ObjectVersion {
                        key: v.key,
                        version_id: v.version_id,
                        delete_marker: true,
                    }),
                    VersionEntryXml::Other => {}
                }
            }
            match (page.is_truncated, page.next_key_marker) {
                (true, Some(k)) => {
                    markers = Some((k, page.next_version_id_marker.unwrap_or_default()))
                }
                _ => return Ok(out),
            }
        }
    }

    /// Deletes one version (or delete marker) of `key` for good. A version under retention is
    /// refused by the store.
    ///
    /// # Errors
    /// [`StoreError::Request`] (an absent version is fine).
    pub async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), StoreError> {
        let req = Req {
            query: vec![("versionId", version_id.to_string())],
            ..Default::default()
        };
        let a = self
            .send("delete version", rusty_s3::Method::Delete, key, &req)
            .await?;
        if a.status.is_success() || a.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.refused("delete version", key, &a))
    }

    /// The multipart uploads in progress under `prefix` (`ListMultipartUploads`, all pages).
    ///
    /// # Errors
    /// [`StoreError::Request`].
    pub async fn list_pending_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<PendingUpload>, StoreError> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut query = vec![("uploads", String::new()), ("prefix", prefix.to_string())];
            if let Some((k, u)) = &markers {
                query.push(("key-marker", k.clone()));
                query.push(("upload-id-marker", u.clone()));
            }
            let req = Req {
                query,
                ..Default::default()
            };
            let a = self
                .send("list multipart uploads", rusty_s3::Method::Get, "", &req)
                .await?;
            if !a.status.is_success() {
                return Err(self.refused("list multipart uploads", prefix, &a));
            }
            let page: UploadsXml = parse(&a.body)
                .map_err(|e| self.request_error("list multipart uploads", prefix, e))?;
            out.extend(page.upload.into_iter().map(|u| {
                PendingUpload {
                    key: u.key,
                    upload_id: u.upload_id,
                    initiated: u
                        .initiated
                        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                        .map(|t| t.with_timezone(&Utc)),
                }
            }));
            match (page.is_truncated, page.next_key_marker) {
                (true, Some(k)) => {
                    markers = Some((k, page.next_upload_id_marker.unwrap_or_default()))
                }
                _ => return Ok(out),
            }
        }
    }

    /// Aborts a multipart upload, freeing its parts (an unknown upload is fine).
    ///
    /// # Errors
    /// [`StoreError::Request`].
    pub async fn abort_upload(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        let req = Req {
            query: vec![("uploadId", upload_id.to_string())],
            ..Default::default()
        };
        let a = self
            .send(
                "abort multipart upload",
                rusty_s3::Method::Delete,
                key,
                &req,
            )
            .await?;
        if a.status.is_success() || a.status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.refused("abort multipart upload", key, &a))
    }

    /// Creates the bucket, with Object Lock enabled when `object_lock` is set (which also turns
    /// versioning on). A bucket that already exists and is ours is fine.
    ///
    /// # Errors
    /// [`StoreError::Request`].
    pub async fn create_bucket(&self, object_lock: bool) -> Result<(), StoreError> {
        let mut req = Req::default();
        if object_lock {
            req.headers
                .push(("x-amz-bucket-object-lock-enabled", "true".into()));
        }
        let a = self
            .send("create bucket", rusty_s3::Method::Put, "", &req)
            .await?;
        if a.status.is_success() || error_code(&a.body) == "BucketAlreadyOwnedByYou" {
            return Ok(());
        }
        Err(self.refused("create bucket", "", &a))
    }
}

/// A request's failure, and whether it is worth another attempt.
enum Transient {
    Yes(StoreError),
    No(StoreError),
}

impl Transient {
    fn into_inner(self) -> StoreError {
        match self {
            Transient::Yes(e) | Transient::No(e) => e,
        }
    }
}

fn parse<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("answer is not UTF-8: {e}"))?;
    quick_xml::de::from_str(text).map_err(|e| format!("unexpected answer: {e}"))
}

/// S3's error code in an error answer (`AccessDenied`, `NoSuchKey`...), or "".
fn error_code(body: &[u8]) -> String {
    parse::<ErrorXml>(body).map(|e| e.code).unwrap_or_default()
}

/// An error answer as `Code: Message`, or the start of the body.
fn error_text(body: &[u8]) -> String {
    match parse::<ErrorXml>(body) {
        Ok(e) if !e.code.is_empty() => format!("{}: {}", e.code, e.message),
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// Base64 of the body's MD5 (the `Content-MD5` header, RFC 1864).
fn content_md5(body: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// A time as S3's retention dates are written (RFC 3339, UTC, whole seconds).
fn s3_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_listings_in_order_with_delete_markers() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListVersionsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyMarker></KeyMarker><VersionIdMarker></VersionIdMarker><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
<NextKeyMarker>p/b</NextKeyMarker><NextVersionIdMarker>v3</NextVersionIdMarker>
<Version><Key>p/a</Key><VersionId>v1</VersionId><IsLatest>true</IsLatest><Size>3</Size></Version>
<DeleteMarker><Key>p/b</Key><VersionId>v2</VersionId><IsLatest>true</IsLatest></DeleteMarker>
<Version><Key>p/b</Key><VersionId>v3</VersionId><IsLatest>false</IsLatest><Size>3</Size></Version>
</ListVersionsResult>"#;
        let page: VersionsXml = parse(xml).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.next_key_marker.as_deref(), Some("p/b"));
        let kinds: Vec<(String, bool)> = page
            .entries
            .into_iter()
            .filter_map(|e| match e {
                VersionEntryXml::Version(v) => Some((v.version_id, false)),
                VersionEntryXml::DeleteMarker(v) => Some((v.version_id, true)),
                VersionEntryXml::Other => None,
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("v1".into(), false),
                ("v2".into(), true),
                ("v3".into(), false)
            ]
        );
    }

    #[test]
    fn parses_retention_uploads_and_errors() {
        let r: RetentionXml = parse(
            b"<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>2030-01-02T03:04:05Z</RetainUntilDate></Retention>",
        )
        .unwrap();
        assert_eq!(LockMode::parse(&r.mode), Some(LockMode::Compliance));
        let u: UploadsXml = parse(
            b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
              <Upload><Key>k</Key><UploadId>u1</UploadId><Initiated>2026-01-01T00:00:00.000Z</Initiated></Upload>\
              </ListMultipartUploadsResult>",
        )
        .unwrap();
        assert_eq!(u.upload.len(), 1);
        assert_eq!(u.upload[0].upload_id, "u1");
        let none: UploadsXml =
            parse(b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>")
                .unwrap();
        assert!(none.upload.is_empty());
        assert_eq!(
            error_text(b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>"),
            "AccessDenied: no"
        );
        assert_eq!(error_code(b"not xml"), "");
    }

    #[test]
    fn dates_and_digests_are_written_as_s3_wants_them() {
        let t = DateTime::parse_from_rfc3339("2026-12-06T17:00:00.750Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(s3_time(t), "2026-12-06T17:00:00Z");
        // RFC 1321's test vector for "abc", in base64.
        assert_eq!(content_md5(b"abc"), "kAFQmDzST7DWlj99KOF/cg==");
        assert_eq!(LockMode::parse("Governance"), Some(LockMode::Governance));
        assert_eq!(LockMode::parse("weekly"), None);
    }
}
