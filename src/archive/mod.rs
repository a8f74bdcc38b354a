//! The Velero-compatible backup tarball (format 1.1.0, DESIGN §4): writing it in one streaming
//! pass, and extracting it with validation before anything is restored.
//!
//! Layout inside the gzip-compressed tar (source: Velero's `pkg/archive` and
//! `pkg/backup/item_backupper.go`, documented in Velero's "Output file format" page):
//!
//! ```text
//! metadata/version                                                 "1.1.0"
//! resources/<resource>.<group>/namespaces/<ns>/<name>.json
//! resources/<resource>.<group>/cluster/<name>.json
//! resources/<resource>.<group>/<version>-preferredversion/namespaces/<ns>/<name>.json
//! ```
//! The core group has no `.<group>` suffix (`resources/pods/...`).

mod extract;
mod gzip;

pub use extract::{ArchiveIndex, ExtractLimits, IndexedItem, Spool, SpoolRef, extract};

use gzip::Gzip;

use std::io::Write;

/// The archive format version written to `metadata/version`.
pub const FORMAT_VERSION: &str = "1.1.0";

/// Errors reading or writing archives.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// An I/O error while streaming (including a failed download or upload underneath).
    #[error("archive I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An entry that must never be extracted (traversal, links, devices, unknown top folder).
    #[error("archive entry {path:?} refused: {reason}")]
    HostileEntry {
        /// The entry path as stored.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A size limit was exceeded (an entry, the total, or the entry count).
    #[error("archive exceeds limit: {0}")]
    TooLarge(String),
    /// The archive's sha256 does not match the one recorded at backup time.
    #[error("archive checksum mismatch: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        /// The recorded digest (hex).
        expected: String,
        /// The digest of what was read (hex).
        actual: String,
    },
    /// The archive lacks `metadata/version` or has an unsupported major version.
    #[error("archive format: {0}")]
    Format(String),
}

/// Where an item goes in the archive: its group-resource (`deployments.apps`, `pods`), the
/// version it was read at, its namespace (`None` for cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemKey {
    /// `<resource>.<group>`, or `<resource>` for the core group.
    pub group_resource: String,
    /// The API version the item was read at (`v1`, `v1beta1`).
    pub version: String,
    /// The namespace, `None` when cluster-scoped.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

impl ItemKey {
    /// `<resource>.<group>`, or `<resource>` when `group` is empty (the core group).
    pub fn group_resource(resource: &str, group: &str) -> String {
        if group.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}.{group}")
        }
    }

    fn scope_path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("namespaces/{ns}/{}.json", self.name),
            None => format!("cluster/{}.json", self.name),
        }
    }

    /// `resources/<gr>/namespaces/<ns>/<name>.json` or `resources/<gr>/cluster/<name>.json`.
    pub fn path(&self) -> String {
        format!("resources/{}/{}", self.group_resource, self.scope_path())
    }

    /// `resources/<gr>/<version>-preferredversion/...`, the same item under its preferred
    /// version.
    pub fn preferred_path(&self) -> String {
        format!(
            "resources/{}/{}-preferredversion/{}",
            self.group_resource,
            self.version,
            self.scope_path()
        )
    }
}

/// Writes a backup tarball in one pass: tar entries into a gzip stream into `W`, its 2 MiB members
/// compressed on threads of their own (as many as the CPUs, 1 to 4) while the next is gathered.
///
/// `W` is normally a channel-backed writer feeding a multipart upload, so nothing is held whole.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<Gzip<W>>,
    mtime: u64,
    items: u64,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive and writes `metadata/version`.
    ///
    /// # Errors
    /// [`ArchiveError::Io`] from the underlying writer.
    pub fn new(out: W, mtime_unix: u64) -> Result<Self, ArchiveError> {
        let mut tar = tar::Builder::new(Gzip::new(out, gzip::default_threads()));
        tar.mode(tar::HeaderMode::Deterministic);
        let mut me = Self {
            tar,
            mtime: mtime_unix,
            items: 0,
        };
        // Velero writes the version followed by a newline (`pkg/backup/backup.go`,
        // writeBackupVersion).
        me.append("metadata/version", format!("{FORMAT_VERSION}\n").as_bytes())?;
        Ok(me)
    }

    fn append(&mut self, path: &str, data: &[u8]) -> Result<(), ArchiveError> {
        self.append_parts(path, &[], data)
    }

    /// One regular entry whose content is `head` followed by `body`.
    fn append_parts(&mut self, path: &str, head: &[u8], body: &[u8]) -> Result<(), ArchiveError> {
        let mut h = tar::Header::new_gnu();
        h.set_size((head.len() + body.len()) as u64);
        h.set_mode(0o755);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        self.tar
            .append_data(&mut h, path, std::io::Read::chain(head, body))?;
        Ok(())
    }

    /// Adds one item (its JSON), under both the plain and the preferred-version path.
    ///
    /// # Errors
    /// [`ArchiveError::Io`] from the underlying writer.
    pub fn add_item(&mut self, key: &ItemKey, json: &[u8]) -> Result<(), ArchiveError> {
        self.add_item_parts(key, &[], json)
    }

    /// Adds one item whose JSON is `head` followed by `body` (e.g. a spliced-in
    /// `{"apiVersion":…,"kind":…,` and the rest of the object as the API server sent it), under
    /// both paths, without joining the two in memory.
    ///
    /// # Errors
    /// [`ArchiveError::Io`] from the underlying writer.
    pub fn add_item_parts(
        &mut self,
        key: &ItemKey,
        head: &[u8],
        body: &[u8],
    ) -> Result<(), ArchiveError> {
        self.append_parts(&key.path(), head, body)?;
        self.append_parts(&key.preferred_path(), head, body)?;
        self.items += 1;
        Ok(())
    }

    /// Number of items added so far.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Finishes the tar and the gzip stream and returns the underlying writer.
    ///
    /// # Errors
    /// [`ArchiveError::Io`] from the underlying writer.
    pub fn finish(self) -> Result<W, ArchiveError> {
        let gz = self.tar.into_inner()?;
        Ok(gz.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_paths_follow_velero_format() {
        let k = ItemKey {
            group_resource: ItemKey::group_resource("deployments", "apps"),
            version: "v1".into(),
            namespace: Some("web".into()),
            name: "nginx".into(),
        };
        assert_eq!(
            k.path(),
            "resources/deployments.apps/namespaces/web/nginx.json"
        );
        assert_eq!(
            k.preferred_path(),
            "resources/deployments.apps/v1-preferredversion/namespaces/web/nginx.json"
        );
        let c = ItemKey {
            group_resource: ItemKey::group_resource("namespaces", ""),
            version: "v1".into(),
            namespace: None,
            name: "web".into(),
        };
        assert_eq!(c.path(), "resources/namespaces/cluster/web.json");
        assert_eq!(
            c.preferred_path(),
            "resources/namespaces/v1-preferredversion/cluster/web.json"
        );
    }

    #[test]
    fn written_archive_lists_version_and_both_trees() {
        let mut w = ArchiveWriter::new(Vec::new(), 0).unwrap();
        let k = ItemKey {
            group_resource: "configmaps".into(),
            version: "v1".into(),
            namespace: Some("a".into()),
            name: "c".into(),
        };
        w.add_item(&k, br#"{"kind":"ConfigMap"}"#).unwrap();
        let bytes = w.finish().unwrap();
        let mut ar = tar::Archive::new(flate2::read::MultiGzDecoder::new(&bytes[..]));
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            vec![
                "metadata/version",
                "resources/configmaps/namespaces/a/c.json",
                "resources/configmaps/v1-preferredversion/namespaces/a/c.json"
            ]
        );
    }
}
