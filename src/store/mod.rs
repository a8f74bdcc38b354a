//! Object storage: opening a location from its URL, the Velero-compatible bucket layout
//! (`<prefix>/backups/<name>/…`, `<prefix>/restores/<name>/…`, DESIGN §4), streaming multipart
//! uploads, listings, and the read-only guard.
//!
//! The store is the source of truth for backups: a backup exists exactly when its
//! `velero-backup.json` is present. Every write goes through [`Store`], which refuses writes on a
//! read-only location before any request is sent.

pub mod encryption;
mod gcs;
pub mod layout;
mod location;
mod object_lock;
pub mod s3_api;

pub use encryption::{Encryption, EncryptionError};
pub use layout::Layout;
pub use location::{AccessMode, LocationUrl, Provider, Secrets};
pub use s3_api::{LockMode, Retention, S3Api};

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};

/// Errors of the object-store layer. Messages name the location (never its credentials).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The location URL could not be understood.
    #[error("location {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (credentials are never part of it).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A filesystem location whose directory does not exist.
    #[error("location {url}: directory {dir} does not exist")]
    MissingDirectory {
        /// The location URL.
        url: String,
        /// The directory that is missing.
        dir: String,
    },
    /// The location refused or failed a request (unreachable, bad credentials, no bucket...).
    #[error("location {location}: {operation} {path}: {message}")]
    Request {
        /// The location URL.
        location: String,
        /// What was attempted (`list`, `get`, `put`, `delete`).
        operation: &'static str,
        /// The object path involved.
        path: String,
        /// The store's error, with credentials stripped.
        message: String,
    },
    /// The object does not exist.
    #[error("location {location}: {path} not found")]
    NotFound {
        /// The location URL.
        location: String,
        /// The missing object path.
        path: String,
    },
    /// A create-only write found the object already present; nothing was overwritten.
    #[error("location {location}: {path} already exists; refusing to overwrite it")]
    AlreadyExists {
        /// The location URL.
        location: String,
        /// The existing object path.
        path: String,
    },
    /// An object could not be encrypted or decrypted (a missing or wrong key).
    #[error(transparent)]
    Encryption(#[from] EncryptionError),
    /// A delete was refused before anything was deleted: an object version is under S3 Object
    /// Lock retention.
    #[error(
        "location {location}: {path} is under S3 Object Lock ({mode}) until {until}; it can be \
         deleted after that"
    )]
    Retained {
        /// The location URL.
        location: String,
        /// The retained object.
        path: String,
        /// The retention mode.
        mode: LockMode,
        /// The end of the retention (RFC 3339).
        until: String,
    },
    /// The location asks for Object Lock but its bucket cannot lock objects.
    #[error(
        "location {location}: Object Lock ({mode}) is asked for, but bucket {bucket} has no Object \
         Lock configuration (create the bucket with Object Lock enabled)"
    )]
    NoObjectLock {
        /// The location URL.
        location: String,
        /// The bucket.
        bucket: String,
        /// The mode asked for.
        mode: LockMode,
    },
    /// A write was attempted on a `ReadOnly` location; nothing was sent.
    #[error("location {location} is read-only: refusing to {operation} {path}")]
    ReadOnly {
        /// The location URL.
        location: String,
        /// The refused operation.
        operation: &'static str,
        /// The object path.
        path: String,
    },
}

/// An opened location: an object store plus the prefix under which the Velero layout lives.
///
/// Cloning is cheap (the inner store is shared).
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    url: LocationUrl,
    layout: Layout,
    part_size: usize,
    /// The location's keys: objects are written encrypted and read decrypted
    /// ([`encryption`]).
    encryption: Option<Arc<Encryption>>,
    /// S3 locations: the APIs object_store lacks (Object Lock, versions, pending uploads).
    s3: Option<S3Api>,
    /// The retention mode backups are locked with ([`Store::with_object_lock`]).
    object_lock: Option<LockMode>,
    /// Whether the bucket has Object Lock (and so versioning) on, asked once.
    bucket_locked: Arc<tokio::sync::OnceCell<bool>>,
}

/// Size of one multipart part, in bytes: S3's minimum for all parts but the last (5 MiB), so
/// that the part still open when the stream ends — uploaded only then, before the upload can
/// complete — is as small as it can be. With S3's limit of 10,000 parts an archive can reach
/// 48.8 GiB, several times what etcd's largest database (8 GiB) holds. Azure locations may set
/// their own (`blockSizeInBytes`, [`LocationUrl::part_size`]); an object no larger than one
/// part is written with a single request instead.
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// Number of parts uploaded concurrently by [`Upload`].
pub const PART_CONCURRENCY: usize = 4;

impl Store {
    /// Opens a location. Filesystem locations must exist unless `create_dir` is set (used for
    /// the embedded default). Provider settings come from the URL's query (Velero's config
    /// keys: S3's `region`, `s3Url`, ...; Azure's `storageAccount`, ...; GCS's
    /// `storeEndpoint`, ...), credentials from the environment (see [`LocationUrl`]).
    ///
    /// No request is sent: use [`Store::check`] to validate reachability.
    ///
    /// # Errors
    /// [`StoreError::MissingDirectory`], or [`StoreError::InvalidUrl`] when the store cannot be
    /// configured.
    pub fn open(url: &LocationUrl, create_dir: bool) -> Result<Self, StoreError> {
        let (inner, s3) = url.build_with_api(create_dir, None)?;
        Ok(Self {
            s3,
            ..Self::from_parts(inner, url.clone())
        })
    }

    /// Opens a location with credentials and trust from a Secret (controller mode).
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_with(url: &LocationUrl, secrets: &Secrets) -> Result<Self, StoreError> {
        let (inner, s3) = url.build_with_api(false, Some(secrets))?;
        Ok(Self {
            s3,
            ..Self::from_parts(inner, url.clone())
        })
    }

    /// Top-level folders under the prefix that Velero's layout does not allow (a location must
    /// hold only `backups/ restores/ restic/ kopia/ metadata/ plugins/`).
    ///
    /// # Errors
    /// [`StoreError::Request`].
    pub async fn unknown_top_level_dirs(&self) -> Result<Vec<String>, StoreError> {
        let root = self.layout.root();
        let listing = self
            .inner
            .list_with_delimiter(root.as_ref())
            .await
            .map_err(|e| self.err("list", root.as_ref().unwrap_or(&Path::default()), e))?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|d| !layout::TOP_LEVEL_DIRS.contains(&d.as_str()))
            .collect())
    }

    /// Wraps an existing object store (used by tests and by other providers).
    pub fn from_parts(inner: Arc<dyn ObjectStore>, url: LocationUrl) -> Self {
        let layout = Layout::new(url.prefix());
        let part_size = url.part_size();
        Self {
            inner,
            url,
            layout,
            part_size,
            encryption: None,
            s3: None,
            object_lock: None,
            bucket_locked: Arc::new(tokio::sync::OnceCell::new()),
        }
    }

    /// The same location with client-side encryption ([`encryption`]): what is written under
    /// `backups/` and `restores/` (but `velero-backup.json`) is encrypted to `keys`' recipients,
    /// and encrypted objects are read with its identities.
    pub fn with_encryption(mut self, keys: Arc<Encryption>) -> Self {
        self.encryption = Some(keys);
        self
    }

    /// The location's keys, when it encrypts.
    pub fn encryption(&self) -> Option<&Encryption> {
        self.encryption.as_deref()
    }

    /// Whether `path` is written encrypted here.
    fn encrypts(&self, path: &Path) -> bool {
        if self.encryption.is_none() {
            return false;
        }
        let full = path.as_ref();
        let relative = match self.layout.root() {
            Some(root) => full
                .strip_prefix(root.as_ref())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(full),
            None => full,
        };
        Encryption::applies_to(relative)
    }

    /// The location URL (without credentials), for messages.
    pub fn url(&self) -> &LocationUrl {
        &self.url
    }

    /// The bucket layout of this location.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Whether the location is read-only.
    pub fn is_read_only(&self) -> bool {
        self.url.access_mode() == AccessMode::ReadOnly
    }

    fn err(&self, operation: &'static str, path: &Path, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::NotFound {
                location: self.url.to_string(),
                path: path.to_string(),
            },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => StoreError::AlreadyExists {
                location: self.url.to_string(),
                path: path.to_string(),
            },
            other => StoreError::Request {
                location: self.url.to_string(),
                operation,
                path: path.to_string(),
                message: sanitize(&other.to_string()),
            },
        }
    }

    fn guard(&self, operation: &'static str, path: &Path) -> Result<(), StoreError> {
        if self.is_read_only() {
            return Err(StoreError::ReadOnly {
                location: self.url.to_string(),
                operation,
                path: path.to_string(),
            });
        }
        Ok(())
    }

    /// Validates that the location answers: lists the prefix once.
    ///
    /// # Errors
    /// [`StoreError::Request`] when the store is unreachable, the bucket is missing or the
    /// credentials are refused; [`StoreError::NoObjectLock`] when the location locks backups
    /// but the bucket cannot.
    pub async fn check(&self) -> Result<(), StoreError> {
        let prefix = self.layout.root();
        self.inner
            .list_with_delimiter(prefix.as_ref())
            .await
            .map(|_| ())
            .map_err(|e| self.err("list", prefix.as_ref().unwrap_or(&Path::default()), e))?;
        self.check_object_lock().await
    }

    /// Names of the backups the location holds (folders with a `velero-backup.json`), sorted.
    ///
    /// # Errors
    /// [`StoreError::Request`] on a failed listing.
    pub async fn list_backups(&self) -> Result<Vec<String>, StoreError> {
        self.list_folders_with(&self.layout.backups_dir(), layout::BACKUP_METADATA_FILE)
            .await
    }

    /// Names of the restores recorded in the location (folders with tidemark's restore record).
    ///
    /// # Errors
    /// [`StoreError::Request`] on a failed listing.
    pub async fn list_restores(&self) -> Result<Vec<String>, StoreError> {
        self.list_folders_with(&self.layout.restores_dir(), layout::RESTORE_RECORD_FILE)
            .await
    }

    async fn list_folders_with(&self, dir: &Path, marker: &str) -> Result<Vec<String>, StoreError> {
        let listing = self
            .inner
            .list_with_delimiter(Some(dir))
            .await
            .map_err(|e| self.err("list", dir, e));
        let listing = match listing {
            Ok(l) => l,
            Err(StoreError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let names: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        let checks = futures::stream::iter(names.into_iter().map(|name| async move {
            let file = dir.clone().join(name.as_str()).join(marker);
            match self.inner.head(&file).await {
                Ok(_) => Ok(Some(name)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.err("get", &file, e)),
            }
        }))
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
        let mut out: Vec<String> = checks.into_iter().flatten().collect();
        out.sort();
        Ok(out)
    }

    /// The backup folders without a `velero-backup.json` — what an interrupted run left, objects
    /// or, on S3, unfinished multipart uploads — each with the time its newest object was
    /// written or upload started (`None` when unknown), sorted by name.
    ///
    /// # Errors
    /// [`StoreError::Request`] on a failed listing or read: a store that cannot say is never
    /// taken to hold no partial backup, nor a complete backup for a partial one.
    pub async fn list_partial_backups(
        &self,
    ) -> Result<Vec<(String, Option<chrono::DateTime<chrono::Utc>>)>, StoreError> {
        let dir = self.layout.backups_dir();
        let listing = match self.inner.list_with_delimiter(Some(&dir)).await {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", &dir, e)),
        };
        let mut out = Vec::new();
        for folder in &listing.common_prefixes {
            let Some(name) = folder.filename().map(str::to_string) else {
                continue;
            };
            let marker = folder.clone().join(layout::BACKUP_METADATA_FILE);
            match self.inner.head(&marker).await {
                Ok(_) => continue,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("get", &marker, e)),
            }
            let metas: Vec<object_store::ObjectMeta> = self
                .inner
                .list(Some(folder))
                .try_collect()
                .await
                .map_err(|e| self.err("list", folder, e))?;
            out.push((name, metas.iter().map(|m| m.last_modified).max()));
        }
        // A run stopped during its first multipart upload leaves no object, only the upload.
        if let Some(api) = &self.s3 {
            let prefix = format!("{}/", dir.as_ref());
            for u in api.list_pending_uploads(&prefix).await? {
                let Some(name) = u
                    .key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.split('/').next())
                else {
                    continue;
                };
                match out.iter_mut().find(|(n, _)| n == name) {
                    Some((_, newest)) => *newest = (*newest).max(u.initiated),
                    None => {
                        let marker = dir.clone().join(name).join(layout::BACKUP_METADATA_FILE);
                        match self.inner.head(&marker).await {
                            Ok(_) => {}
                            Err(object_store::Error::NotFound { .. }) => {
                                out.push((name.to_string(), u.initiated))
                            }
                            Err(e) => return Err(self.err("get", &marker, e)),
                        }
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Whether anything at all exists under a folder (e.g. a backup's folder).
    ///
    /// # Errors
    /// [`StoreError::Request`] on a failed listing.
    pub async fn folder_exists(&self, dir: &Path) -> Result<bool, StoreError> {
        let mut s = self.inner.list(Some(dir));
        match s.next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(object_store::Error::NotFound { .. })) => Ok(false),
            Some(Err(e)) => Err(self.err("list", dir, e)),
        }
    }

    /// Reads a whole (small) object.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or [`StoreError::Request`].
    pub async fn get(&self, path: &Path) -> Result<Bytes, StoreError> {
        let r = self
            .inner
            .get(path)
            .await
            .map_err(|e| self.err("get", path, e))?;
        let bytes = r.bytes().await.map_err(|e| self.err("get", path, e))?;
        Ok(Encryption::open(
            self.encryption.as_deref(),
            path.as_ref(),
            bytes,
        )?)
    }

    /// Every object under `dir` (recursively) with its size in bytes; an absent folder lists as
    /// empty. Used by the restic repositories of pod volumes (`src/volumes/fs.rs`).
    ///
    /// # Errors
    /// [`StoreError::Request`] on a failed listing.
    pub async fn list_sizes(&self, dir: &Path) -> Result<Vec<(Path, u64)>, StoreError> {
        let mut out = Vec::new();
        let mut s = self.inner.list(Some(dir));
        while let Some(item) = s.next().await {
            match item {
                Ok(meta) => out.push((meta.location, meta.size)),
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(self.err("list", dir, e)),
            }
        }
        Ok(out)
    }

    /// Reads the byte range `range` (offsets in bytes, end exclusive) of an object.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or [`StoreError::Request`].
    pub async fn get_range(
        &self,
        path: &Path,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StoreError> {
        self.inner
            .get_range(path, range)
            .await
            .map_err(|e| self.err("get", path, e))
    }

    /// Opens an object as a stream of byte chunks (for archives: never read whole).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or [`StoreError::Request`]; chunk errors arrive in the stream.
    pub async fn get_stream(
        &self,
        path: &Path,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>, StoreError>
    {
        let r = self
            .inner
            .get(path)
            .await
            .map_err(|e| self.err("get", path, e))?;
        let loc = self.url.to_string();
        let mut stream = r
            .into_stream()
            .map_err(move |e| {
                std::io::Error::other(format!("location {loc}: {}", sanitize(&e.to_string())))
            })
            .boxed();
        // Enough of the start to tell an age file from a plain one.
        let mut head: Vec<Bytes> = Vec::new();
        let mut seen = 0;
        while seen < encryption::AGE_HEADER.len() {
            match stream.next().await {
                Some(Ok(c)) => {
                    seen += c.len();
                    head.push(c);
                }
                Some(Err(e)) => return Ok(futures::stream::once(async { Err(e) }).boxed()),
                None => break,
            }
        }
        let start: Vec<u8> = head
            .iter()
            .flat_map(|c| c.iter().copied())
            .take(32)
            .collect();
        let rest = futures::stream::iter(head.into_iter().map(Ok)).chain(stream);
        if !start.starts_with(encryption::AGE_HEADER) {
            return Ok(rest.boxed());
        }
        let keys = self
            .encryption
            .clone()
            .ok_or_else(|| EncryptionError::NoKey(path.to_string()))?;
        Ok(decrypt_stream(keys, path.to_string(), rest.boxed()))
    }

    /// Writes a small object. With `create_only`, an existing object is never overwritten
    /// ([`StoreError::AlreadyExists`]).
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`], [`StoreError::AlreadyExists`] or [`StoreError::Request`].
    pub async fn put(&self, path: &Path, data: Bytes, create_only: bool) -> Result<(), StoreError> {
        self.guard("write", path)?;
        let data = match &self.encryption {
            Some(keys) if self.encrypts(path) => keys.encrypt(path.as_ref(), &data)?,
            _ => data,
        };
        let mode = if create_only {
            PutMode::Create
        } else {
            PutMode::Overwrite
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        self.inner
            .put_opts(path, PutPayload::from_bytes(data), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.err("put", path, e))
    }

    /// Starts a streaming upload of `path`: chunks are held until they exceed one part
    /// ([`PART_SIZE`], or the location's own); a larger object becomes a multipart upload
    /// with [`PART_CONCURRENCY`] parts in flight (memory stays bounded whatever the object's
    /// size), a smaller one is written with one request when the upload finishes.
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`] (nothing is sent).
    pub async fn upload(&self, path: &Path) -> Result<Upload, StoreError> {
        self.guard("write", path)?;
        let encrypting = match &self.encryption {
            Some(keys) if self.encrypts(path) => Some(keys.stream(path.as_ref())?),
            _ => None,
        };
        Ok(Upload {
            store: self.clone(),
            path: path.clone(),
            state: UploadState::Held {
                chunks: Vec::new(),
                len: 0,
            },
            encrypting,
        })
    }

    /// Deletes one object (absent is fine).
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`] or [`StoreError::Request`].
    pub async fn delete(&self, path: &Path) -> Result<(), StoreError> {
        self.guard("delete", path)?;
        match self.inner.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", path, e)),
        }
    }

    /// Deletes every object under a folder. Returns how many objects were deleted. On a bucket
    /// with S3 Object Lock every version goes, and only once none is retained any more
    /// ([`Store::folder_retention`]).
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`], [`StoreError::Retained`] (nothing deleted) or
    /// [`StoreError::Request`].
    pub async fn delete_folder(&self, dir: &Path) -> Result<usize, StoreError> {
        self.guard("delete", dir)?;
        if self.bucket_locked().await? {
            return self.delete_versions(dir).await;
        }
        let paths: Vec<Path> = self
            .inner
            .list(Some(dir))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .or_else(|e| match e {
                object_store::Error::NotFound { .. } => Ok(Vec::new()),
                e => Err(self.err("list", dir, e)),
            })?;
        let n = paths.len();
        for p in paths {
            match self.inner.delete(&p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete", &p, e)),
            }
        }
        Ok(n)
    }
}

/// A streaming upload in progress. Call [`Upload::finish`] to complete it or
/// [`Upload::abort`] to discard it; a dropped upload leaves no object behind.
pub struct Upload {
    store: Store,
    path: Path,
    state: UploadState,
    /// The encryptor the chunks go through first, on an encrypting location.
    encrypting: Option<encryption::EncryptingStream>,
}

enum UploadState {
    /// No more than one part so far, held in memory, nothing sent.
    Held { chunks: Vec<Bytes>, len: usize },
    /// A multipart upload.
    Parts(WriteMultipart),
}

impl Upload {
    /// Queues a chunk, waiting while [`PART_CONCURRENCY`] parts are already in flight. The
    /// multipart upload starts once the chunks exceed one part.
    ///
    /// # Errors
    /// [`StoreError::Request`] when starting the upload or a part upload failed.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let chunk = match &mut self.encrypting {
            Some(enc) => enc.push(&chunk)?,
            None => chunk,
        };
        if chunk.is_empty() {
            return Ok(());
        }
        self.write_sealed(chunk).await
    }

    /// Queues a chunk as it is to be stored.
    async fn write_sealed(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let Upload {
            store, path, state, ..
        } = self;
        let err = |e| store.err("put", path, e);
        match state {
            UploadState::Held { chunks, len } => {
                *len += chunk.len();
                chunks.push(chunk);
                if *len <= store.part_size {
                    return Ok(());
                }
                let held = std::mem::take(chunks);
                let mp = store.inner.put_multipart(path).await.map_err(err)?;
                let mut writer = WriteMultipart::new_with_chunk_size(mp, store.part_size);
                for c in held {
                    writer
                        .wait_for_capacity(PART_CONCURRENCY)
                        .await
                        .map_err(err)?;
                    writer.put(c);
                }
                *state = UploadState::Parts(writer);
            }
            UploadState::Parts(writer) => {
                writer
                    .wait_for_capacity(PART_CONCURRENCY)
                    .await
                    .map_err(err)?;
                writer.put(chunk);
            }
        }
        Ok(())
    }

    /// Completes the upload: the object becomes visible only now.
    ///
    /// # Errors
    /// [`StoreError::Request`].
    pub async fn finish(mut self) -> Result<(), StoreError> {
        if let Some(mut enc) = self.encrypting.take() {
            let tail = enc.finish()?;
            if !tail.is_empty() {
                self.write_sealed(tail).await?;
            }
        }
        let Upload {
            store, path, state, ..
        } = self;
        let done = match state {
            UploadState::Held { chunks, .. } => store
                .inner
                .put_opts(&path, chunks.into_iter().collect(), PutOptions::default())
                .await
                .map(|_| ()),
            UploadState::Parts(writer) => writer.finish().await.map(|_| ()),
        };
        done.map_err(|e| store.err("put", &path, e))
    }

    /// Discards the upload and its parts.
    pub async fn abort(self) {
        if let UploadState::Parts(writer) = self.state {
            let _ = writer.abort().await;
        }
    }
}

/// The plaintext of an age-encrypted byte stream: decrypted on a blocking thread (age's reader
/// is synchronous) and handed back in chunks of up to 256 KiB, two in flight. A wrong key or a
/// corrupt file is the stream's first (and only) error.
fn decrypt_stream(
    keys: Arc<Encryption>,
    path: String,
    input: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
) -> futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>> {
    use std::io::Read;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    let reader = tokio_util::io::StreamReader::new(input);
    tokio::task::spawn_blocking(move || {
        let sync = tokio_util::io::SyncIoBridge::new(reader);
        let mut plain = match keys.decrypting_reader(&path, sync) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                return;
            }
        };
        let mut buf = vec![0u8; 256 << 10];
        loop {
            match plain.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx
                        .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(format!(
                        "{path}: cannot decrypt: {e}"
                    ))));
                    break;
                }
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed()
}

/// Strips anything that looks like a credential from a store error message (signatures,
/// access keys in query strings, GCS upload session ids, which grant writes without a token) so
/// messages can be logged and written to status.
pub fn sanitize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for word in message.split_inclusive(|c: char| c.is_whitespace() || c == '&' || c == '?') {
        let lower = word.to_ascii_lowercase();
        if lower.contains("signature=")
            || lower.contains("credential=")
            || lower.contains("upload_id=")
            || lower.contains("x-amz-security-token")
            || lower.contains("secret")
        {
            out.push_str("[redacted]");
            if word.ends_with(char::is_whitespace) {
                out.push(' ');
            }
        } else {
            out.push_str(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_removes_signatures() {
        let m = "request failed: https://h/b?X-Amz-Credential=AKIA/x&X-Amz-Signature=abc def";
        let s = sanitize(m);
        assert!(!s.contains("AKIA"), "{s}");
        assert!(!s.contains("abc"), "{s}");
        assert!(s.contains("request failed"));
        let gcs =
            sanitize("PUT http://h/upload/storage/v1/b/b/o?uploadType=resumable&upload_id=XYZ");
        assert!(!gcs.contains("XYZ"), "{gcs}");
    }

    #[tokio::test]
    async fn read_only_location_refuses_writes_before_sending() {
        let dir = tempfile::tempdir().unwrap();
        let url: LocationUrl = format!("file://{}?accessMode=ReadOnly", dir.path().display())
            .parse()
            .unwrap();
        let store = Store::open(&url, false).unwrap();
        let p = store
            .layout()
            .backup_file("b", layout::BACKUP_METADATA_FILE);
        let err = store
            .put(&p, Bytes::from_static(b"{}"), true)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
        assert!(store.upload(&p).await.is_err());
        assert!(
            store
                .delete_folder(&store.layout().backup_dir("b"))
                .await
                .is_err()
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn create_only_put_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let url: LocationUrl = format!("file://{}", dir.path().display()).parse().unwrap();
        let store = Store::open(&url, false).unwrap();
        let p = store
            .layout()
            .backup_file("b", layout::BACKUP_METADATA_FILE);
        store
            .put(&p, Bytes::from_static(b"one"), true)
            .await
            .unwrap();
        let err = store
            .put(&p, Bytes::from_static(b"two"), true)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
        assert_eq!(&store.get(&p).await.unwrap()[..], b"one");
        assert_eq!(store.list_backups().await.unwrap(), vec!["b".to_string()]);
    }

    #[tokio::test]
    async fn uploads_larger_than_a_part_stream_in_parts() {
        let dir = tempfile::tempdir().unwrap();
        let url: LocationUrl = format!("file://{}", dir.path().display()).parse().unwrap();
        let store = Store::open(&url, false).unwrap();
        let p = store.layout().backup_file("b", "b.tar.gz");
        let mut up = store.upload(&p).await.unwrap();
        let mut want = Vec::new();
        for i in 0..23u8 {
            let chunk = vec![i; 512 * 1024 + usize::from(i)];
            want.extend_from_slice(&chunk);
            up.write(Bytes::from(chunk)).await.unwrap();
        }
        assert!(want.len() > 2 * PART_SIZE);
        assert!(matches!(up.state, UploadState::Parts(_)));
        assert!(matches!(
            store.get(&p).await,
            Err(StoreError::NotFound { .. })
        ));
        up.finish().await.unwrap();
        assert_eq!(store.get(&p).await.unwrap(), want);
    }

    #[tokio::test]
    async fn multipart_upload_is_invisible_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let url: LocationUrl = format!("file://{}", dir.path().display()).parse().unwrap();
        let store = Store::open(&url, false).unwrap();
        let p = store.layout().backup_file("b", "b.tar.gz");
        let mut up = store.upload(&p).await.unwrap();
        up.write(Bytes::from(vec![7u8; 100])).await.unwrap();
        assert!(matches!(
            store.get(&p).await,
            Err(StoreError::NotFound { .. })
        ));
        up.finish().await.unwrap();
        assert_eq!(store.get(&p).await.unwrap().len(), 100);
    }
}
