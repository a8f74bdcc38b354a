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

pub use extract::{ArchiveIndex, ExtractLimits, IndexedItem, Spool, SpoolRef, extract};

use std::io::Write;

/// Room above [`MEMBER_INPUT`] in a member's input buffer (256 KiB): the tar builder's writes
/// that cross the boundary land there without a reallocation.
const MEMBER_SLACK: usize = 256 << 10;

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

/// Bytes of tar compressed into each gzip member (2 MiB).
const MEMBER_INPUT: usize = 2 << 20;

/// Bytes at the start of a member that ISA-L compresses first to judge the member (64 KiB).
const PROBE: usize = 64 << 10;

/// The ISA-L compression ratio of the probe (its bytes / their compressed bytes) from which the
/// member is compressed by libdeflate: JSON and text compress this well, and there libdeflate's
/// thorough matcher beats gzip -6 where ISA-L's fast one does not. Below it (random bytes,
/// base64, already compressed data) gzip -6 gains next to nothing over ISA-L, which is three to
/// four times faster there.
const DEFLATE_FROM_RATIO: usize = 3;

/// libdeflate's level: the lowest level whose output was no larger than gzip -6's (Go's default,
/// which Velero's writer uses, and zlib's) on every sample measured (the benchmark's workload,
/// small ConfigMaps, Deployment specs, text, random hex); level 6 was larger than zlib -6 on small
/// ConfigMaps.
const DEFLATE_LEVEL: i32 = 7;

/// The archive's gzip stream: one gzip member (RFC 1952) per [`MEMBER_INPUT`] bytes of tar.
/// RFC 1952 §2.2 lets a gzip file hold several members; Go's `compress/gzip` reader (Velero's
/// extractor), `gunzip` and flate2's `MultiGzDecoder` read them all as one stream.
///
/// Each member is compressed by libdeflate at [`DEFLATE_LEVEL`] (`libdeflater`) when ISA-L's igzip
/// at level 1 (`isal-rs`) compresses its first [`PROBE`] bytes at least [`DEFLATE_FROM_RATIO`]
/// times, else by ISA-L. Measured on the benchmark's 10,000-object tar (89 MB; `cargo bench
/// --bench backup_restore` prints the comparison): ISA-L alone 15.5 MB in 0.07 s, libdeflate
/// level 7 14.2 MB in 0.28 s, Velero's gzip -6 14.4 MB, zlib -6 15.6 MB.
///
/// `flush` does nothing: members end at [`MEMBER_INPUT`] boundaries and in [`Gzip::finish`].
struct Gzip<W: Write> {
    out: W,
    /// Tar bytes of the member being gathered.
    pending: Vec<u8>,
    /// The compressed member.
    packed: Vec<u8>,
    /// Boxed: libdeflate's compressor state is large.
    deflater: Box<libdeflater::Compressor>,
}

impl<W: Write> Gzip<W> {
    /// Starts a gzip stream into `out`.
    fn new(out: W) -> Self {
        Self {
            out,
            pending: Vec::with_capacity(MEMBER_INPUT + MEMBER_SLACK),
            packed: Vec::new(),
            deflater: Box::new(libdeflater::Compressor::new(
                libdeflater::CompressionLvl::new(DEFLATE_LEVEL)
                    .unwrap_or_else(|_| libdeflater::CompressionLvl::default()),
            )),
        }
    }

    /// ISA-L level 1 of `input` into `self.packed`; the compressed length.
    fn isal(&mut self, input: std::ops::Range<usize>) -> std::io::Result<usize> {
        let input = &self.pending[input];
        // Stored blocks are the worst case: 5 bytes per 64 KiB block, plus header and trailer.
        self.packed
            .resize(input.len() + input.len() / 1024 + 1024, 0);
        isal::compress_into(
            input,
            &mut self.packed,
            isal::CompressionLevel::One,
            isal::Codec::Gzip,
        )
        .map_err(|e| std::io::Error::other(format!("gzip (ISA-L): {e}")))
    }

    /// Compresses the gathered bytes into one member and writes it out.
    fn emit(&mut self) -> std::io::Result<()> {
        let len = self.pending.len();
        let probe = len.min(PROBE);
        let probed = self.isal(0..probe)?;
        let size = if probed.saturating_mul(DEFLATE_FROM_RATIO) <= probe {
            self.packed
                .resize(self.deflater.gzip_compress_bound(len), 0);
            self.deflater
                .gzip_compress(&self.pending, &mut self.packed)
                .map_err(|e| std::io::Error::other(format!("gzip (libdeflate): {e:?}")))?
        } else if probe == len {
            probed
        } else {
            self.isal(0..len)?
        };
        self.out.write_all(&self.packed[..size])?;
        self.pending.clear();
        Ok(())
    }

    /// Writes the last member and returns the writer.
    ///
    /// # Errors
    /// An I/O error from the writer or an encoder.
    fn finish(mut self) -> std::io::Result<W> {
        self.emit()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for Gzip<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(data);
        if self.pending.len() >= MEMBER_INPUT {
            self.emit()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes a backup tarball in one pass: tar entries into a gzip stream into `W`.
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
        let mut tar = tar::Builder::new(Gzip::new(out));
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

    /// Counts the gzip members of `gz` and checks each one decodes (single-member decoders).
    fn members(gz: &[u8]) -> usize {
        let mut rest = gz;
        let mut n = 0;
        while !rest.is_empty() {
            let mut d = flate2::bufread::GzDecoder::new(rest);
            std::io::copy(&mut d, &mut std::io::sink()).unwrap();
            let left = d.into_inner();
            assert!(left.len() < rest.len());
            rest = left;
            n += 1;
        }
        n
    }

    #[test]
    fn gzip_members_hold_the_whole_stream_whatever_the_flushes() {
        use std::io::Read;
        // Text that compresses well (libdeflate), and random bytes that do not (ISA-L), across
        // several members.
        let mut data = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(format!("key-{}: {:016x}\n", i % 97, x).as_bytes());
        }
        for _ in 0..400_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        let mut gz = Gzip::new(Vec::new());
        for (i, piece) in data.chunks(70_001).enumerate() {
            gz.write_all(piece).unwrap();
            if i % 3 == 0 {
                gz.flush().unwrap();
            }
        }
        let compressed = gz.finish().unwrap();
        assert_eq!(members(&compressed), data.len().div_ceil(MEMBER_INPUT));
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(&compressed[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back.len(), data.len());
        assert!(back == data);
    }

    #[test]
    fn structured_data_is_no_larger_than_gzip_6() {
        // Many small JSON objects, as a cluster's ConfigMaps: where ISA-L level 1 alone is a
        // quarter larger than gzip -6.
        let mut data = Vec::new();
        for i in 0..20_000u32 {
            data.extend_from_slice(
                format!(
                    r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"cm-{i:05}","namespace":"ns-{}","uid":"{:08x}-77aa-4c1e-9d2b-{:012x}","resourceVersion":"{}"}},"data":{{"key":"value-{i}"}}}}"#,
                    i % 10,
                    i.wrapping_mul(2_654_435_761),
                    u64::from(i).wrapping_mul(0x9e37_79b9_7f4a),
                    1000 + i
                )
                .as_bytes(),
            );
        }
        let mut gz = Gzip::new(Vec::new());
        gz.write_all(&data).unwrap();
        let ours = gz.finish().unwrap().len();
        let mut z6 = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        z6.write_all(&data).unwrap();
        let z6 = z6.finish().unwrap().len();
        let isal_only = isal::compress(&data[..], isal::CompressionLevel::One, isal::Codec::Gzip)
            .unwrap()
            .len();
        assert!(ours <= z6, "ours {ours} bytes, gzip -6 {z6} bytes");
        assert!(
            isal_only > z6,
            "the sample must be one where the second pass matters"
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
