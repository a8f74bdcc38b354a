//! File-system backup of pod volumes into restic repositories, written with `rustic_core`.
//!
//! One repository per namespace lives in the Location at `<prefix>/restic/<namespace>/` (DESIGN
//! §4, Velero's layout), in the restic repository format (restic's `doc/design.rst`), so the
//! plain `restic` CLI can open it (`restic -r s3:<endpoint>/<bucket>/<prefix>/restic/<ns>`).
//! Every format detail (keys, config, packs, index, snapshots, encryption) is `rustic_core`'s;
//! this module only maps the repository's files onto the Location's object store
//! ([`StoreBackend`], which goes through [`Store`] and so keeps its read-only guard and its TLS
//! choice) and drives rustic's commands:
//!
//! - [`ResticRepo::open_or_init`]: open the namespace's repository, creating it on first use
//!   (backups); [`ResticRepo::open`]: open it only if it exists (restore, forget, prune);
//! - [`ResticRepo::backup_dir`]: one directory → one snapshot, tagged with the backup, namespace,
//!   pod and volume ([`SnapshotTags`]);
//! - [`ResticRepo::restore`]: one snapshot → a directory;
//! - [`ResticRepo::forget_backup`]: forget the snapshots of an expired backup;
//! - [`ResticRepo::prune`]: drop the data no snapshot references (maintenance).
//!
//! All calls block (rustic is synchronous): run them on a blocking thread
//! (`tokio::task::spawn_blocking`) of a multi-threaded runtime; the backend enters the runtime
//! through a [`tokio::runtime::Handle`].

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::path::Path;
use rustic_core::{
    BackupOptions, BytesList, ConfigOptions, Credentials, ErrorKind, FileType, Id, KeyOptions,
    LocalDestination, LsOptions, PathList, Progress, ProgressBars, ProgressType, PruneOptions,
    ReadBackend, RepositoryBackends, RepositoryOptions, RestoreOptions, RusticError,
    RusticProgress, RusticResult, SnapshotOptions, WriteBackend,
};
use tokio::runtime::Handle;

use crate::store::{Store, StoreError};

/// Errors of the restic side of file-system backup. Messages name the repository (location and
/// namespace), never the password.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The repository password could not be read.
    #[error("repository password: {0}")]
    Password(String),
    /// A rustic operation failed on a repository.
    #[error("restic repository {repo}: {operation}: {message}")]
    Restic {
        /// `<location>/restic/<namespace>`.
        repo: String,
        /// What was being done (`open`, `init`, `backup`, `restore`, `forget`, `prune`).
        operation: &'static str,
        /// rustic's message.
        message: String,
    },
    /// No snapshot with this id in the repository.
    #[error("restic repository {repo}: no snapshot {id}")]
    NoSnapshot {
        /// `<location>/restic/<namespace>`.
        repo: String,
        /// The snapshot id asked for.
        id: String,
    },
    /// A local path was unusable (missing source directory, destination not creatable...).
    #[error("{path}: {message}")]
    Path {
        /// The local path.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// The password of the restic repositories (Velero keeps it in the Secret
/// `velero-repo-credentials`, key `repository-password`; tidemark reads it from a file, the mounted
/// Secret). Never printed: `Debug` is redacted.
#[derive(Clone)]
pub struct RepoPassword(String);

impl fmt::Debug for RepoPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RepoPassword([redacted])")
    }
}

impl RepoPassword {
    /// A password given as text (trailing newline removed).
    ///
    /// # Errors
    /// [`FsError::Password`] when it is empty.
    pub fn new(text: &str) -> Result<Self, FsError> {
        let p = text.trim_end_matches(['\n', '\r']);
        if p.is_empty() {
            return Err(FsError::Password("the password is empty".into()));
        }
        Ok(Self(p.to_string()))
    }

    /// Reads the password from a file (a mounted Secret key).
    ///
    /// # Errors
    /// [`FsError::Password`] naming the file (never its content).
    pub fn from_file(path: &FsPath) -> Result<Self, FsError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FsError::Password(format!("{}: {e}", path.display())))?;
        Self::new(&text).map_err(|_| FsError::Password(format!("{}: empty", path.display())))
    }

    fn credentials(&self) -> Credentials {
        Credentials::password(&self.0)
    }
}

/// What identifies a pod volume's snapshot, stored as restic tags (`backup=<name>`,
/// `ns=<namespace>`, `pod=<pod>`, `pod-uid=<uid>`, `volume=<volume>`, as Velero tags them), with
/// host `tidemark` and path `/<namespace>/<pod>/<volume>` (paths as shown by `restic snapshots`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotTags {
    /// The Backup's name.
    pub backup: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// The pod's volume name.
    pub volume: String,
}

/// The host name recorded in every snapshot tidemark writes.
pub const SNAPSHOT_HOST: &str = "tidemark";

impl SnapshotTags {
    /// The tags as restic `key=value` strings, in a fixed order.
    pub fn tags(&self) -> Vec<String> {
        vec![
            format!("backup={}", self.backup),
            format!("ns={}", self.namespace),
            format!("pod={}", self.pod),
            format!("pod-uid={}", self.pod_uid),
            format!("volume={}", self.volume),
        ]
    }

    /// The snapshot's path: `/<namespace>/<pod>/<volume>`.
    pub fn snapshot_path(&self) -> PathBuf {
        PathBuf::from(format!("/{}/{}/{}", self.namespace, self.pod, self.volume))
    }
}

/// Progress of one backup or restore: bytes and files done and in total (bytes; `0` while
/// unknown). Shared between the rustic worker threads and whoever reports it.
#[derive(Debug, Default)]
pub struct TransferProgress {
    /// Bytes done.
    pub bytes_done: AtomicU64,
    /// Bytes in total (known after rustic's scan).
    pub bytes_total: AtomicU64,
    /// Files done (set at the end).
    pub files_done: AtomicU64,
}

impl TransferProgress {
    /// `(bytes_done, bytes_total)`.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.bytes_done.load(Ordering::Relaxed),
            self.bytes_total.load(Ordering::Relaxed),
        )
    }
}

/// rustic progress bars feeding a [`TransferProgress`] (only byte counters count).
#[derive(Clone, Debug)]
struct Bars(Arc<TransferProgress>);

#[derive(Debug)]
struct ByteBar(Arc<TransferProgress>);

impl RusticProgress for ByteBar {
    fn is_hidden(&self) -> bool {
        false
    }
    fn set_length(&self, len: u64) {
        self.0.bytes_total.store(len, Ordering::Relaxed);
    }
    fn set_title(&self, _title: &str) {}
    fn inc(&self, inc: u64) {
        self.0.bytes_done.fetch_add(inc, Ordering::Relaxed);
    }
    fn finish(&self) {}
}

impl ProgressBars for Bars {
    fn progress(&self, progress_type: ProgressType, _prefix: &str) -> Progress {
        match progress_type {
            ProgressType::Bytes => Progress::new(ByteBar(self.0.clone())),
            _ => Progress::hidden(),
        }
    }
}

/// Result of backing up one directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// The restic snapshot id (64 hex digits).
    pub snapshot_id: String,
    /// Bytes of file content read.
    pub total_bytes: u64,
    /// Files read.
    pub total_files: u64,
    /// Bytes newly added to the repository (before compression).
    pub bytes_added: u64,
}

/// Result of restoring one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Bytes of file content in the snapshot.
    pub total_bytes: u64,
    /// Files in the snapshot.
    pub total_files: u64,
}

/// The path of a namespace's repository in a location: `<prefix>/restic/<namespace>`.
pub fn repo_dir(store: &Store, namespace: &str) -> Path {
    store.layout().restic_repo(namespace)
}

/// A rustic backend over the Location's object store: restic's files at their restic paths
/// (`config`, `keys/<id>`, `snapshots/<id>`, `index/<id>`, `data/<id[0..2]>/<id>`) under
/// [`repo_dir`]. Blocking calls run the async store on `handle`.
#[derive(Clone, Debug)]
pub struct StoreBackend {
    store: Store,
    base: Path,
    handle: Handle,
}

impl StoreBackend {
    /// A backend for `namespace`'s repository in `store`.
    pub fn new(store: Store, namespace: &str, handle: Handle) -> Self {
        let base = repo_dir(&store, namespace);
        Self {
            store,
            base,
            handle,
        }
    }

    fn path(&self, tpe: FileType, id: &Id) -> Path {
        let hex = id.to_hex();
        let hex = hex.as_str();
        match tpe {
            FileType::Config => self.base.clone().join("config"),
            FileType::Pack => self.base.clone().join("data").join(&hex[0..2]).join(hex),
            other => self.base.clone().join(other.dirname()).join(hex),
        }
    }

    fn fail(&self, what: &'static str, e: StoreError) -> Box<RusticError> {
        RusticError::with_source(ErrorKind::Backend, "object store {what} failed", e)
            .attach_context("what", what)
    }
}

impl ReadBackend for StoreBackend {
    fn location(&self) -> String {
        format!("{}/{}", self.store.url(), self.base)
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        if tpe == FileType::Config {
            let dir = self.base.clone();
            let all = self
                .handle
                .block_on(self.store.list_sizes(&dir))
                .map_err(|e| self.fail("list", e))?;
            let config = self.path(FileType::Config, &Id::default());
            return Ok(all
                .into_iter()
                .filter(|(p, _)| *p == config)
                .map(|(_, s)| (Id::default(), u32::try_from(s).unwrap_or(u32::MAX)))
                .collect());
        }
        let dir = self.base.clone().join(tpe.dirname());
        let all = self
            .handle
            .block_on(self.store.list_sizes(&dir))
            .map_err(|e| self.fail("list", e))?;
        Ok(all
            .into_iter()
            .filter_map(|(p, size)| {
                let id = p.filename()?.parse::<Id>().ok()?;
                Some((id, u32::try_from(size).ok()?))
            })
            .collect())
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        let p = self.path(tpe, id);
        self.handle
            .block_on(self.store.get(&p))
            .map_err(|e| self.fail("get", e))
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        let p = self.path(tpe, id);
        let start = u64::from(offset);
        self.handle
            .block_on(self.store.get_range(&p, start..start + u64::from(length)))
            .map_err(|e| self.fail("get", e))
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.path(tpe, id).to_string()
    }
}

impl WriteBackend for StoreBackend {
    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        _cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        let p = self.path(tpe, id);
        let parts = content.into_vec();
        let data = if parts.len() == 1 {
            parts.into_iter().next().unwrap_or_default()
        } else {
            let mut buf = Vec::with_capacity(parts.iter().map(Bytes::len).sum());
            for b in parts {
                buf.extend_from_slice(&b);
            }
            Bytes::from(buf)
        };
        self.handle
            .block_on(self.store.put(&p, data, false))
            .map_err(|e| self.fail("put", e))
    }

    fn remove(&self, tpe: FileType, id: &Id, _cacheable: bool) -> RusticResult<()> {
        let p = self.path(tpe, id);
        match self.handle.block_on(self.store.delete(&p)) {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.fail("delete", e)),
        }
    }
}

/// An open restic repository of one namespace.
pub struct ResticRepo {
    repo: rustic_core::Repository<rustic_core::OpenStatus>,
    name: String,
    progress: Arc<TransferProgress>,
}

impl fmt::Debug for ResticRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResticRepo")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ResticRepo {
    /// Opens `namespace`'s repository in `store`, initialising it (restic format version 2,
    /// rustic's defaults) when it holds no `config` yet: for backups. Blocking.
    ///
    /// # Errors
    /// [`FsError::Restic`]: unreachable store, wrong password, read-only location on first use.
    pub fn open_or_init(
        store: &Store,
        namespace: &str,
        password: &RepoPassword,
        handle: Handle,
        progress: Arc<TransferProgress>,
    ) -> Result<Self, FsError> {
        Self::connect(store, namespace, password, handle, progress, true)
    }

    /// Opens `namespace`'s existing repository in `store`, never creating one: for restores,
    /// forgetting and pruning, which must not write a new repository into a Location. Blocking.
    ///
    /// # Errors
    /// [`FsError::Restic`]: no repository there, unreachable store, wrong password.
    pub fn open(
        store: &Store,
        namespace: &str,
        password: &RepoPassword,
        handle: Handle,
        progress: Arc<TransferProgress>,
    ) -> Result<Self, FsError> {
        Self::connect(store, namespace, password, handle, progress, false)
    }

    fn connect(
        store: &Store,
        namespace: &str,
        password: &RepoPassword,
        handle: Handle,
        progress: Arc<TransferProgress>,
        create: bool,
    ) -> Result<Self, FsError> {
        let be = StoreBackend::new(store.clone(), namespace, handle);
        let name = be.location();
        let err = |operation, e: Box<RusticError>| FsError::Restic {
            repo: name.clone(),
            operation,
            message: e.to_string(),
        };
        let backends = RepositoryBackends::new(Arc::new(be), None);
        let opts = RepositoryOptions::default();
        let repo =
            rustic_core::Repository::new_with_progress(&opts, &backends, Bars(progress.clone()))
                .map_err(|e| err("open", e))?;
        let creds = password.credentials();
        let exists = repo.config_id().map_err(|e| err("open", e))?.is_some();
        let repo = if exists {
            repo.open(&creds).map_err(|e| err("open", e))?
        } else if create {
            tracing::info!(repository = %name, "initialising restic repository");
            repo.init(&creds, &KeyOptions::default(), &ConfigOptions::default())
                .map_err(|e| err("init", e))?
        } else {
            return Err(FsError::Restic {
                repo: name.clone(),
                operation: "open",
                message: "no repository here (no config file)".into(),
            });
        };
        Ok(Self {
            repo,
            name,
            progress,
        })
    }

    /// The repository's location, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, operation: &'static str, e: &RusticError) -> FsError {
        FsError::Restic {
            repo: self.name.clone(),
            operation,
            message: e.to_string(),
        }
    }

    /// Backs up directory `dir` (its content, recursively: files, symlinks, permissions,
    /// ownership, sparse files) as one snapshot tagged with `tags`. Blocking; progress in bytes
    /// goes to the repository's [`TransferProgress`].
    ///
    /// # Errors
    /// [`FsError::Path`] when `dir` is not a directory, [`FsError::Restic`] on failure.
    pub fn backup_dir(self, dir: &FsPath, tags: &SnapshotTags) -> Result<BackupSummary, FsError> {
        if !dir.is_dir() {
            return Err(FsError::Path {
                path: dir.display().to_string(),
                message: "not a directory".into(),
            });
        }
        let repo = self.repo.to_indexed_ids().map_err(|e| FsError::Restic {
            repo: self.name.clone(),
            operation: "backup",
            message: e.to_string(),
        })?;
        let mut snap_opts = SnapshotOptions::default().host(SNAPSHOT_HOST.to_string());
        for t in tags.tags() {
            snap_opts = snap_opts.add_tags(&t).map_err(|e| FsError::Restic {
                repo: self.name.clone(),
                operation: "backup",
                message: e.to_string(),
            })?;
        }
        let restic_err = |e: Box<RusticError>| FsError::Restic {
            repo: self.name.clone(),
            operation: "backup",
            message: e.to_string(),
        };
        let snap = snap_opts.to_snapshot().map_err(restic_err)?;
        let source = PathList::from_iter([dir.to_path_buf()])
            .sanitize()
            .map_err(|e| FsError::Path {
                path: dir.display().to_string(),
                message: e.to_string(),
            })?;
        let opts = BackupOptions::default().as_path(Some(tags.snapshot_path()));
        let snap = repo.backup(&opts, &source, snap).map_err(restic_err)?;
        let summary = snap.summary.clone().unwrap_or_default();
        self.progress
            .files_done
            .store(summary.total_files_processed, Ordering::Relaxed);
        Ok(BackupSummary {
            snapshot_id: snap.id.to_hex().as_str().to_string(),
            total_bytes: summary.total_bytes_processed,
            total_files: summary.total_files_processed,
            bytes_added: summary.data_added,
        })
    }

    /// Restores snapshot `snapshot_id` (full or abbreviated hex) into directory `dest` (created
    /// if missing): the snapshot's single backed-up directory becomes `dest`'s content. Files
    /// already in `dest` that the snapshot does not hold are kept. Blocking.
    ///
    /// # Errors
    /// [`FsError::NoSnapshot`], [`FsError::Path`] or [`FsError::Restic`].
    pub fn restore(self, snapshot_id: &str, dest: &FsPath) -> Result<RestoreSummary, FsError> {
        let restic_err = |e: Box<RusticError>| FsError::Restic {
            repo: self.name.clone(),
            operation: "restore",
            message: e.to_string(),
        };
        let snaps = self
            .repo
            .get_snapshots(&[snapshot_id])
            .map_err(|_| FsError::NoSnapshot {
                repo: self.name.clone(),
                id: snapshot_id.to_string(),
            })?;
        let snap = snaps
            .into_iter()
            .next()
            .ok_or_else(|| FsError::NoSnapshot {
                repo: self.name.clone(),
                id: snapshot_id.to_string(),
            })?;
        let repo = self.repo.to_indexed().map_err(restic_err)?;
        let path = snap
            .paths
            .iter()
            .next()
            .cloned()
            .unwrap_or_else(|| "/".to_string());
        let node = repo
            .node_from_snapshot_and_path(&snap, &path)
            .map_err(restic_err)?;
        std::fs::create_dir_all(dest).map_err(|e| FsError::Path {
            path: dest.display().to_string(),
            message: e.to_string(),
        })?;
        let dest_str = format!("{}/", dest.display());
        let local = LocalDestination::new(&dest_str, true, false).map_err(restic_err)?;
        let ls = repo.ls(&node, &LsOptions::default()).map_err(restic_err)?;
        let mut opts = RestoreOptions::default();
        // Holes stay holes (zero runs are not written). rustic_core does not export the type of
        // this option, but it is `Deserialize`: its `ByContent` value is set by name.
        opts.sparse = serde_json::from_value(serde_json::json!("ByContent")).ok();
        let plan = repo
            .prepare_restore(&opts, ls.clone(), &local, false)
            .map_err(restic_err)?;
        repo.restore(plan, &opts, ls, &local).map_err(restic_err)?;
        let summary = snap.summary.unwrap_or_default();
        self.progress
            .files_done
            .store(summary.total_files_processed, Ordering::Relaxed);
        Ok(RestoreSummary {
            total_bytes: summary.total_bytes_processed,
            total_files: summary.total_files_processed,
        })
    }

    /// Forgets (deletes the snapshot files of) every snapshot tagged `backup=<backup>`; the data
    /// stays until [`ResticRepo::prune`]. Returns how many were forgotten. Blocking.
    ///
    /// # Errors
    /// [`FsError::Restic`].
    pub fn forget_backup(&self, backup: &str) -> Result<usize, FsError> {
        let tag = format!("backup={backup}");
        let snaps = self
            .repo
            .get_all_snapshots()
            .map_err(|e| self.err("forget", &e))?;
        let ids: Vec<_> = snaps
            .into_iter()
            .filter(|s| s.tags.contains(&tag))
            .map(|s| s.id)
            .collect();
        if !ids.is_empty() {
            self.repo
                .delete_snapshots(&ids)
                .map_err(|e| self.err("forget", &e))?;
        }
        Ok(ids.len())
    }

    /// Snapshot ids (64 hex digits) with their tags, for listings and tests. Blocking.
    ///
    /// # Errors
    /// [`FsError::Restic`].
    pub fn snapshots(&self) -> Result<Vec<(String, Vec<String>)>, FsError> {
        let snaps = self
            .repo
            .get_all_snapshots()
            .map_err(|e| self.err("snapshots", &e))?;
        Ok(snaps
            .into_iter()
            .map(|s| {
                (
                    s.id.to_hex().as_str().to_string(),
                    s.tags.iter().cloned().collect(),
                )
            })
            .collect())
    }

    /// Removes the data no snapshot references any more (rustic's prune with its defaults:
    /// partly used packs are repacked; unused packs are marked for deletion and deleted by a
    /// later prune once marked for 23 hours, so a backup writing at the same time never loses
    /// a pack it relies on). Blocking.
    ///
    /// # Errors
    /// [`FsError::Restic`].
    pub fn prune(&self) -> Result<(), FsError> {
        let opts = PruneOptions::default();
        let plan = self
            .repo
            .prune_plan(&opts)
            .map_err(|e| self.err("prune", &e))?;
        self.repo
            .prune(&opts, plan)
            .map_err(|e| self.err("prune", &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocationUrl;

    fn tags() -> SnapshotTags {
        SnapshotTags {
            backup: "b1".into(),
            namespace: "shop".into(),
            pod: "db-0".into(),
            pod_uid: "1234".into(),
            volume: "data".into(),
        }
    }

    #[test]
    fn tags_and_path_identify_the_volume() {
        let t = tags();
        assert_eq!(
            t.tags(),
            [
                "backup=b1",
                "ns=shop",
                "pod=db-0",
                "pod-uid=1234",
                "volume=data"
            ]
        );
        assert_eq!(t.snapshot_path(), PathBuf::from("/shop/db-0/data"));
    }

    #[test]
    fn password_is_never_printed_and_never_empty() {
        let p = RepoPassword::new("s3cret\n").unwrap();
        assert_eq!(format!("{p:?}"), "RepoPassword([redacted])");
        assert!(RepoPassword::new("\n").is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backup_restore_forget_prune_round_trip_on_a_directory_location() {
        let bucket = tempfile::tempdir().unwrap();
        let store = Store::open(&LocationUrl::filesystem(bucket.path()), false).unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.txt"), b"hello").unwrap();
        std::fs::create_dir(src.path().join("sub")).unwrap();
        std::fs::write(src.path().join("sub/b.bin"), vec![7u8; 300_000]).unwrap();
        std::os::unix::fs::symlink("a.txt", src.path().join("link")).unwrap();
        let pw = RepoPassword::new("pw").unwrap();
        let handle = Handle::current();
        let (s2, src_path, pw2, h2) = (
            store.clone(),
            src.path().to_path_buf(),
            pw.clone(),
            handle.clone(),
        );
        let summary = tokio::task::spawn_blocking(move || {
            let progress = Arc::new(TransferProgress::default());
            let repo = ResticRepo::open_or_init(&s2, "shop", &pw2, h2, progress.clone())?;
            let s = repo.backup_dir(&src_path, &tags())?;
            assert!(progress.bytes().0 >= 300_005);
            Ok::<_, FsError>(s)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(summary.snapshot_id.len(), 64);
        // Two files and a symlink.
        assert_eq!(summary.total_files, 3);
        assert_eq!(summary.total_bytes, 300_005);
        assert!(bucket.path().join("restic/shop/config").is_file());

        let dest = tempfile::tempdir().unwrap();
        let (s2, dest_path, pw2, h2, id) = (
            store.clone(),
            dest.path().join("out"),
            pw.clone(),
            handle.clone(),
            summary.snapshot_id.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let progress = Arc::new(TransferProgress::default());
            let repo = ResticRepo::open_or_init(&s2, "shop", &pw2, h2, progress)?;
            repo.restore(&id[..8], &dest_path)
        })
        .await
        .unwrap()
        .unwrap();
        let out = dest.path().join("out");
        assert_eq!(std::fs::read(out.join("a.txt")).unwrap(), b"hello");
        assert_eq!(
            std::fs::read(out.join("sub/b.bin")).unwrap(),
            vec![7u8; 300_000]
        );
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            PathBuf::from("a.txt")
        );

        let wrong = RepoPassword::new("nope").unwrap();
        let (s2, h2) = (store.clone(), handle.clone());
        let e = tokio::task::spawn_blocking(move || {
            ResticRepo::open_or_init(&s2, "shop", &wrong, h2, Arc::default()).map(|_| ())
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(!e.to_string().contains("nope"), "{e}");

        // Opening (restore, forget, prune) never creates a repository.
        let (s2, pw2, h2) = (store.clone(), pw.clone(), handle.clone());
        let e = tokio::task::spawn_blocking(move || {
            ResticRepo::open(&s2, "other", &pw2, h2, Arc::default()).map(|_| ())
        })
        .await
        .unwrap()
        .unwrap_err();
        assert!(e.to_string().contains("no repository"), "{e}");
        assert!(!bucket.path().join("restic/other").exists());

        let n = tokio::task::spawn_blocking(move || {
            let repo = ResticRepo::open_or_init(&store, "shop", &pw, handle, Arc::default())?;
            let n = repo.forget_backup("b1")?;
            assert!(repo.snapshots()?.is_empty());
            repo.prune()?;
            Ok::<_, FsError>(n)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(n, 1);
        // Prune is two-phase (rustic's default, safe with agents writing at the same time):
        // unused packs are marked now and deleted by a prune 23 hours later or more.
    }
}
