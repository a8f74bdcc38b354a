//! Google Cloud Storage: object_store's GCS client for reads, listings and deletes, with object
//! writes through the JSON API's upload endpoint instead of the XML API's `PUT` and multipart
//! uploads that client uses.
//!
//! The JSON API is what Velero's GCP plugin writes with (Google's Go client: media uploads, and
//! resumable uploads for large objects), and the one fake-gcs-server — the emulator the tests run
//! against — implements: it has neither the XML API's object `PUT` nor its multipart uploads.
//! Source: Google's "Perform a single-request upload" and "Perform resumable uploads" (JSON API)
//! documentation.
//!
//! - Objects up to one part: one `POST /upload/storage/v1/b/<bucket>/o?uploadType=media&name=..`
//!   (`ifGenerationMatch=0` for create-only writes: 412 when the object exists).
//! - Larger objects: a resumable session (`uploadType=resumable`), then the parts in order, each a
//!   `PUT <session>` with `Content-Range: bytes a-b/*` (answered 308), the last one with the total
//!   size. Parts are multiples of 256 KiB as GCS requires ([`super::PART_SIZE`] is); each part is
//!   sent once the one before has been accepted.
//!
//! Requests carry the client's bearer token (none with `disable_oauth` keys) and are retried like
//! the other clients' ([`super::location::MAX_RETRIES`] within [`super::location::RETRY_WINDOW`]).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::FutureExt;
use futures::stream::BoxStream;
use http::{Method, StatusCode};
use object_store::client::{HttpClient, HttpRequest, HttpRequestBody, HttpResponse};
use object_store::gcp::GoogleCloudStorage;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use tokio::sync::Mutex;

const STORE: &str = "GCS";

/// A GCS bucket: object_store's client plus JSON API uploads.
#[derive(Debug, Clone)]
pub(crate) struct Gcs {
    inner: Arc<GoogleCloudStorage>,
    http: HttpClient,
    /// `https://storage.googleapis.com`, or the configured endpoint.
    base_url: String,
    bucket: String,
}

impl Gcs {
    /// Wraps `inner` (built for `bucket` at `base_url`); `http` is a client with the location's
    /// client options.
    pub(crate) fn new(
        inner: GoogleCloudStorage,
        http: HttpClient,
        base_url: &str,
        bucket: &str,
    ) -> Self {
        Self {
            inner: Arc::new(inner),
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            bucket: bucket.to_string(),
        }
    }

    /// The upload endpoint with `uploadType` and the object's name.
    fn upload_url(&self, upload_type: &str, location: &Path, extra: &str) -> String {
        format!(
            "{}/upload/storage/v1/b/{}/o?uploadType={upload_type}&name={}{extra}",
            self.base_url,
            utf8_percent_encode(&self.bucket, NON_ALPHANUMERIC),
            utf8_percent_encode(location.as_ref(), NON_ALPHANUMERIC)
        )
    }

    /// Sends the request `make` builds (with the bearer token), retrying connection failures,
    /// 408, 429 and 5xx answers.
    async fn send(
        &self,
        location: &Path,
        make: &(dyn Fn() -> http::request::Builder + Send + Sync),
        body: &Bytes,
    ) -> object_store::Result<HttpResponse> {
        let token = self.inner.credentials().get_credential().await?;
        let started = std::time::Instant::now();
        let mut backoff = std::time::Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let mut req = make();
            if !token.bearer.is_empty() {
                req = req.header(
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", token.bearer),
                );
            }
            let req: HttpRequest = req
                .header(http::header::CONTENT_LENGTH, body.len())
                .body(HttpRequestBody::from(body.clone()))
                .map_err(|e| generic(format!("building a request: {e}")))?;
            let retry = match self.http.execute(req).await {
                Ok(resp) => {
                    let s = resp.status();
                    if s.is_success() || s == StatusCode::PERMANENT_REDIRECT {
                        return Ok(resp);
                    }
                    let transient = s == StatusCode::REQUEST_TIMEOUT
                        || s == StatusCode::TOO_MANY_REQUESTS
                        || s.is_server_error();
                    if !transient {
                        return Err(status_error(location, resp).await);
                    }
                    status_error(location, resp).await
                }
                Err(e) => generic(format!("request failed: {e}")),
            };
            attempt += 1;
            if attempt > super::location::MAX_RETRIES
                || started.elapsed() + backoff > super::location::RETRY_WINDOW
            {
                return Err(retry);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(15));
        }
    }
}

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: message.into(),
    }
}

/// The error for a non-success answer, with the service's message.
async fn status_error(location: &Path, resp: HttpResponse) -> object_store::Error {
    let status = resp.status();
    let body = resp.into_body().bytes().await.unwrap_or_default();
    let message = format!(
        "{status}: {}",
        String::from_utf8_lossy(&body[..body.len().min(512)]).trim()
    );
    let path = location.to_string();
    match status {
        StatusCode::NOT_FOUND => object_store::Error::NotFound {
            path,
            source: message.into(),
        },
        StatusCode::PRECONDITION_FAILED => object_store::Error::Precondition {
            path,
            source: message.into(),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => object_store::Error::PermissionDenied {
            path,
            source: message.into(),
        },
        _ => generic(message),
    }
}

/// The `etag` and `generation` of the object resource an upload answers with.
async fn put_result(resp: HttpResponse) -> object_store::Result<PutResult> {
    let body = resp
        .into_body()
        .bytes()
        .await
        .map_err(|e| generic(format!("reading the upload's answer: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |k: &str| match &v[k] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Ok(PutResult {
        e_tag: text("etag"),
        version: text("generation"),
        extensions: Default::default(),
    })
}

impl fmt::Display for Gcs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoogleCloudStorage({})", self.bucket)
    }
}

#[async_trait]
impl ObjectStore for Gcs {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let condition = match &opts.mode {
            PutMode::Overwrite => String::new(),
            PutMode::Create => "&ifGenerationMatch=0".to_string(),
            PutMode::Update(v) => match &v.version {
                Some(g) => format!("&ifGenerationMatch={g}"),
                None => {
                    return Err(generic(
                        "an update needs the object's generation".to_string(),
                    ));
                }
            },
        };
        let url = self.upload_url("media", location, &condition);
        let body: Bytes = payload.into();
        let make = || {
            http::Request::builder()
                .method(Method::POST)
                .uri(&url)
                .header(http::header::CONTENT_TYPE, "application/octet-stream")
        };
        match self.send(location, &make, &body).await {
            Ok(resp) => put_result(resp).await,
            Err(object_store::Error::Precondition { path, source })
                if matches!(opts.mode, PutMode::Create) =>
            {
                Err(object_store::Error::AlreadyExists { path, source })
            }
            Err(e) => Err(e),
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let url = self.upload_url("resumable", location, "");
        let make = || {
            http::Request::builder()
                .method(Method::POST)
                .uri(&url)
                .header("x-upload-content-type", "application/octet-stream")
        };
        let resp = self.send(location, &make, &Bytes::new()).await?;
        let session = resp
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| generic("the resumable upload's answer has no Location".into()))?
            .to_string();
        Ok(Box::new(Resumable {
            store: self.clone(),
            location: location.clone(),
            session,
            state: Arc::new(Mutex::new(Sent {
                offset: 0,
                pending: None,
                failed: None,
            })),
            previous: None,
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// What a resumable session has been sent.
#[derive(Debug)]
struct Sent {
    /// Bytes the service has accepted.
    offset: u64,
    /// The latest part, held back: only [`MultipartUpload::complete`] knows it is the last, and
    /// the last one is sent with the total size.
    pending: Option<Bytes>,
    /// The first failure; later parts and completion report it.
    failed: Option<String>,
}

/// A resumable upload session.
#[derive(Debug)]
struct Resumable {
    store: Gcs,
    location: Path,
    session: String,
    state: Arc<Mutex<Sent>>,
    /// The previous part's future: each part waits for it, so parts reach the session in order.
    previous: Option<futures::future::Shared<futures::future::BoxFuture<'static, ()>>>,
}

impl Resumable {
    /// Sends `chunk` at the session's offset, with the total size when it is the last one.
    async fn send_chunk(
        store: &Gcs,
        location: &Path,
        session: &str,
        offset: u64,
        chunk: &Bytes,
        total: Option<u64>,
    ) -> object_store::Result<HttpResponse> {
        let len = chunk.len() as u64;
        let range = match (total, len) {
            (Some(t), 0) => format!("bytes */{t}"),
            (Some(t), _) => format!("bytes {offset}-{}/{t}", offset + len - 1),
            (None, _) => format!("bytes {offset}-{}/*", offset + len - 1),
        };
        let make = || {
            http::Request::builder()
                .method(Method::PUT)
                .uri(session)
                .header(http::header::CONTENT_RANGE, range.as_str())
        };
        store.send(location, &make, chunk).await
    }
}

#[async_trait]
impl MultipartUpload for Resumable {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (store, location, session) = (
            self.store.clone(),
            self.location.clone(),
            self.session.clone(),
        );
        let state = self.state.clone();
        let previous = self.previous.take();
        let part: Bytes = data.into();
        let sent = async move {
            if let Some(p) = previous {
                p.await;
            }
            let mut st = state.lock().await;
            if let Some(e) = &st.failed {
                return Err(e.clone());
            }
            // The part before this one is not the last: send it now.
            if let Some(prev) = st.pending.replace(part) {
                match Self::send_chunk(&store, &location, &session, st.offset, &prev, None).await {
                    Ok(_) => st.offset += prev.len() as u64,
                    Err(e) => {
                        st.failed = Some(e.to_string());
                        return Err(e.to_string());
                    }
                }
            }
            Ok(())
        }
        .boxed()
        .shared();
        self.previous = Some(sent.clone().map(|_| ()).boxed().shared());
        async move { sent.await.map_err(generic) }.boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if let Some(p) = self.previous.take() {
            p.await;
        }
        let mut st = self.state.lock().await;
        if let Some(e) = &st.failed {
            return Err(generic(e.clone()));
        }
        let last = st.pending.take().unwrap_or_default();
        let total = st.offset + last.len() as u64;
        let resp = Self::send_chunk(
            &self.store,
            &self.location,
            &self.session,
            st.offset,
            &last,
            Some(total),
        )
        .await?;
        if resp.status() == StatusCode::PERMANENT_REDIRECT {
            return Err(generic(format!(
                "the resumable upload of {} is incomplete after its last part",
                self.location
            )));
        }
        st.offset = total;
        put_result(resp).await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let make = || {
            http::Request::builder()
                .method(Method::DELETE)
                .uri(&self.session)
        };
        // GCS answers 499 to a cancelled session: done either way.
        match self.store.send(&self.location, &make, &Bytes::new()).await {
            Ok(_) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) if e.to_string().starts_with("Generic GCS error: 499") => Ok(()),
            Err(e) => Err(e),
        }
    }
}
