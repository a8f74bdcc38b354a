//! Validating extraction of a backup tarball into a private spool file.
//!
//! Every entry is checked before a byte is written: only regular files and directories, only
//! relative paths made of plain components under `metadata/` or `resources/`, bounded entry size,
//! total size (which also caps gzip bombs) and entry count. The sha256 of the compressed stream is
//! computed on the way and compared with the recorded one; the caller restores nothing unless
//! [`extract`] returns `Ok`.
//!
//! Items are appended to one anonymous temporary file (unlinked at once, gone when the last
//! handle closes) and indexed by offset and length: no file per item, and the index costs a few
//! dozen bytes per item whatever the item's size.

use std::collections::BTreeMap;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{ArchiveError, FORMAT_VERSION};

/// Limits applied while extracting.
#[derive(Clone, Copy, Debug)]
pub struct ExtractLimits {
    /// Largest single entry, in bytes (default 64 MiB; etcd stores objects up to ~1.5 MiB).
    pub max_entry_bytes: u64,
    /// Largest total of decompressed entry data, in bytes (default 16 GiB).
    pub max_total_bytes: u64,
    /// Most entries (default 20 million).
    pub max_entries: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        Self {
            max_entry_bytes: 64 << 20,
            max_total_bytes: 16 << 30,
            max_entries: 20_000_000,
        }
    }
}

/// One item found in the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedItem {
    /// Namespace, `None` when cluster-scoped.
    pub namespace: Option<String>,
    /// Object name (the file name without `.json`).
    pub name: String,
    /// Where the item's JSON is in the spool.
    pub at: SpoolRef,
}

/// The place of one item's bytes in a [`Spool`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolRef {
    /// Offset in the spool file, bytes.
    pub offset: u64,
    /// Length, bytes.
    pub len: u64,
}

/// The extracted items' bytes: one anonymous temporary file, read by offset (positional reads,
/// so many tasks can read at once). Removed when the last handle is dropped.
#[derive(Debug)]
pub struct Spool {
    file: std::fs::File,
}

impl Spool {
    /// Reads one item's bytes.
    ///
    /// # Errors
    /// The I/O error of the read.
    pub fn read(&self, at: SpoolRef) -> io::Result<Vec<u8>> {
        let len = usize::try_from(at.len).map_err(io::Error::other)?;
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, at.offset)?;
        Ok(buf)
    }
}

/// An extracted, validated archive. The items' bytes live as long as the [`Spool`] does.
#[derive(Debug)]
pub struct ArchiveIndex {
    /// The items' bytes.
    pub spool: Arc<Spool>,
    /// The content of `metadata/version`.
    pub version: String,
    /// Items by group-resource (`deployments.apps`), in archive order within each.
    pub items: BTreeMap<String, Vec<IndexedItem>>,
    /// sha256 (hex) of the compressed archive as read.
    pub sha256: String,
    /// Size of the compressed archive as read, in bytes.
    pub compressed_bytes: u64,
}

impl ArchiveIndex {
    /// Reads one item's JSON bytes.
    ///
    /// # Errors
    /// The I/O error of the read.
    pub fn read(&self, item: &IndexedItem) -> io::Result<Vec<u8>> {
        self.spool.read(item.at)
    }

    /// Total number of items.
    pub fn len(&self) -> usize {
        self.items.values().map(Vec::len).sum()
    }

    /// Whether the archive holds no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Caps the decompressed stream: a gzip bomb fails here instead of filling the disk.
struct CappedReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "decompressed archive exceeds the total size limit",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

enum Tree {
    Plain,
    Preferred,
    OtherVersion,
}

struct ParsedPath {
    group_resource: String,
    tree: Tree,
    namespace: Option<String>,
    name: String,
}

fn hostile(path: &str, reason: &str) -> ArchiveError {
    ArchiveError::HostileEntry {
        path: path.to_string(),
        reason: reason.to_string(),
    }
}

/// Splits a validated entry path into plain components.
fn components(raw: &Path, shown: &str) -> Result<Vec<String>, ArchiveError> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(s) => {
                let s = s
                    .to_str()
                    .ok_or_else(|| hostile(shown, "path is not UTF-8"))?;
                out.push(s.to_string());
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(hostile(shown, "path contains '..'")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(hostile(shown, "absolute path"));
            }
        }
    }
    if out.is_empty() {
        return Err(hostile(shown, "empty path"));
    }
    Ok(out)
}

fn parse_resource_path(parts: &[String], shown: &str) -> Result<ParsedPath, ArchiveError> {
    // parts[0] == "resources"
    let bad = || hostile(shown, "not a resources/<group-resource>/... item path");
    let gr = parts.get(1).ok_or_else(bad)?.clone();
    let (tree, rest) = match parts.get(2).map(String::as_str) {
        Some("namespaces") | Some("cluster") => (Tree::Plain, &parts[2..]),
        Some(v) if v.ends_with("-preferredversion") => (Tree::Preferred, &parts[3..]),
        Some(_) => (Tree::OtherVersion, &parts[3..]),
        None => return Err(bad()),
    };
    let (namespace, file) = match rest {
        [scope, file] if scope == "cluster" => (None, file),
        [scope, ns, file] if scope == "namespaces" => (Some(ns.clone()), file),
        _ => return Err(bad()),
    };
    let name = file
        .strip_suffix(".json")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| hostile(shown, "item file must be <name>.json"))?;
    Ok(ParsedPath {
        group_resource: gr,
        tree,
        namespace,
        name: name.to_string(),
    })
}

/// Extracts and validates a gzip-compressed backup tarball read from `raw`.
///
/// `expected_sha256` (hex), when known, is compared with the digest of everything read from
/// `raw`; on mismatch the extraction is discarded. The whole of `raw` is consumed.
///
/// # Errors
/// [`ArchiveError::HostileEntry`], [`ArchiveError::TooLarge`], [`ArchiveError::Format`],
/// [`ArchiveError::ChecksumMismatch`] or [`ArchiveError::Io`].
pub fn extract<R: Read>(
    raw: R,
    limits: ExtractLimits,
    expected_sha256: Option<&str>,
) -> Result<ArchiveIndex, ArchiveError> {
    let spool_file = tempfile::tempfile()?;
    let mut spool = CountingWriter {
        inner: BufWriter::with_capacity(1 << 20, spool_file.try_clone()?),
        written: 0,
    };
    let mut hashing = HashingReader {
        inner: raw,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut version = None;
    let mut items: BTreeMap<String, Vec<IndexedItem>> = BTreeMap::new();
    // (group_resource, namespace, name) -> (index in items, from plain tree)
    let mut seen: BTreeMap<(String, Option<String>, String), (usize, bool)> = BTreeMap::new();
    {
        // Every gzip member: tidemark writes one per 2 MiB of tar, Velero one in all.
        let gz = flate2::read::MultiGzDecoder::new(&mut hashing);
        let capped = CappedReader {
            inner: gz,
            left: limits.max_total_bytes,
        };
        let mut ar = tar::Archive::new(capped);
        let mut count = 0u64;
        let entries = ar.entries().map_err(map_cap)?;
        for entry in entries {
            let mut entry = entry.map_err(map_cap)?;
            count += 1;
            if count > limits.max_entries {
                return Err(ArchiveError::TooLarge(format!(
                    "more than {} entries",
                    limits.max_entries
                )));
            }
            let raw_path = entry.path().map_err(map_cap)?.into_owned();
            let shown = raw_path.display().to_string();
            let kind = entry.header().entry_type();
            if kind.is_dir() {
                components(&raw_path, &shown)?;
                continue;
            }
            if !kind.is_file() {
                return Err(hostile(
                    &shown,
                    "only regular files and directories are allowed",
                ));
            }
            let size = entry.header().size().map_err(map_cap)?;
            if size > limits.max_entry_bytes {
                return Err(ArchiveError::TooLarge(format!(
                    "entry {shown:?} has {size} bytes (limit {})",
                    limits.max_entry_bytes
                )));
            }
            let parts = components(&raw_path, &shown)?;
            match parts[0].as_str() {
                "metadata" => {
                    if parts.len() == 2 && parts[1] == "version" {
                        let mut s = String::new();
                        (&mut entry)
                            .take(limits.max_entry_bytes)
                            .read_to_string(&mut s)
                            .map_err(map_cap)?;
                        version = Some(s.trim().to_string());
                    }
                }
                "resources" => {
                    let p = parse_resource_path(&parts, &shown)?;
                    if matches!(p.tree, Tree::OtherVersion) {
                        continue;
                    }
                    let plain = matches!(p.tree, Tree::Plain);
                    let key = (
                        p.group_resource.clone(),
                        p.namespace.clone(),
                        p.name.clone(),
                    );
                    let existing = seen.get(&key).copied();
                    if let Some((_, true)) = existing
                        && !plain
                    {
                        continue; // the plain copy wins
                    }
                    let offset = spool.written;
                    io::copy(&mut (&mut entry).take(limits.max_entry_bytes), &mut spool)
                        .map_err(map_cap)?;
                    let at = SpoolRef {
                        offset,
                        len: spool.written - offset,
                    };
                    match existing {
                        Some((idx, _)) => {
                            // The plain copy replaces the preferred-version one read before.
                            if let Some(item) = items
                                .get_mut(&p.group_resource)
                                .and_then(|l| l.get_mut(idx))
                            {
                                item.at = at;
                            }
                            seen.insert(key, (idx, plain));
                        }
                        None => {
                            let list = items.entry(p.group_resource.clone()).or_default();
                            seen.insert(key, (list.len(), plain));
                            list.push(IndexedItem {
                                namespace: p.namespace,
                                name: p.name,
                                at,
                            });
                        }
                    }
                }
                _ => return Err(hostile(&shown, "unknown top-level folder")),
            }
        }
    }
    spool.inner.flush()?;
    // Consume whatever follows the tar end (gzip trailer, padding) so the digest covers it all.
    io::copy(&mut hashing, &mut io::sink())?;
    let sha256 = hex::encode(hashing.hasher.finalize());
    if let Some(expected) = expected_sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(ArchiveError::ChecksumMismatch {
            expected: expected.to_string(),
            actual: sha256,
        });
    }
    let version = version.ok_or_else(|| ArchiveError::Format("missing metadata/version".into()))?;
    // Velero 1.0 to 1.3 wrote the bare major version ("1\n"); 1.4 and later write "1.1.0\n".
    if version != "1" && !version.starts_with("1.") {
        return Err(ArchiveError::Format(format!(
            "unsupported format version {version:?} (this build reads 1.x, writes {FORMAT_VERSION})"
        )));
    }
    Ok(ArchiveIndex {
        spool: Arc::new(Spool { file: spool_file }),
        version,
        items,
        sha256,
        compressed_bytes: hashing.bytes,
    })
}

/// A writer that counts what went through it (the spool's next offset).
struct CountingWriter<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn map_cap(e: io::Error) -> ArchiveError {
    if e.kind() == io::ErrorKind::InvalidData && e.to_string().contains("size limit") {
        ArchiveError::TooLarge(e.to_string())
    } else {
        ArchiveError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ArchiveWriter, ItemKey};
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn cm(ns: &str, name: &str) -> ItemKey {
        ItemKey {
            group_resource: "configmaps".into(),
            version: "v1".into(),
            namespace: Some(ns.into()),
            name: name.into(),
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = ArchiveWriter::new(Vec::new(), 0).unwrap();
        w.add_item(&cm("a", "one"), br#"{"n":1}"#).unwrap();
        w.add_item(&cm("b", "two"), br#"{"n":2}"#).unwrap();
        w.add_item(
            &ItemKey {
                group_resource: "namespaces".into(),
                version: "v1".into(),
                namespace: None,
                name: "a".into(),
            },
            br#"{"n":3}"#,
        )
        .unwrap();
        w.finish().unwrap()
    }

    /// Builds a tar.gz by hand with raw headers, so hostile names reach the reader unchanged.
    fn raw_archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut gz = GzEncoder::new(&mut out, Compression::fast());
            for (name, kind, data) in entries {
                let mut h = tar::Header::new_old();
                {
                    let raw = h.as_old_mut();
                    raw.name[..name.len()].copy_from_slice(name.as_bytes());
                }
                h.set_size(data.len() as u64);
                h.set_entry_type(*kind);
                h.set_mode(0o644);
                h.set_cksum();
                gz.write_all(h.as_bytes()).unwrap();
                gz.write_all(data).unwrap();
                let pad = (512 - data.len() % 512) % 512;
                gz.write_all(&vec![0u8; pad]).unwrap();
            }
            gz.write_all(&[0u8; 1024]).unwrap();
            gz.finish().unwrap();
        }
        out
    }

    #[test]
    fn round_trip_indexes_every_item_once() {
        let bytes = sample();
        let idx = extract(&bytes[..], ExtractLimits::default(), None).unwrap();
        assert_eq!(idx.version, "1.1.0");
        assert_eq!(idx.len(), 3);
        let cms = &idx.items["configmaps"];
        assert_eq!(cms[0].namespace.as_deref(), Some("a"));
        assert_eq!(idx.read(&cms[1]).unwrap(), br#"{"n":2}"#);
        assert_eq!(idx.read(&cms[0]).unwrap(), br#"{"n":1}"#);
        assert_eq!(idx.items["namespaces"][0].namespace, None);
        assert_eq!(idx.compressed_bytes, bytes.len() as u64);
    }

    #[test]
    fn checksum_is_verified() {
        let bytes = sample();
        let good = hex::encode(Sha256::digest(&bytes));
        assert!(extract(&bytes[..], ExtractLimits::default(), Some(&good)).is_ok());
        let err = extract(&bytes[..], ExtractLimits::default(), Some(&"0".repeat(64))).unwrap_err();
        assert!(
            matches!(err, ArchiveError::ChecksumMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn traversal_is_refused() {
        let a = raw_archive(&[
            ("metadata/version", tar::EntryType::Regular, b"1.1.0"),
            (
                "resources/../../etc/passwd.json",
                tar::EntryType::Regular,
                b"x",
            ),
        ]);
        let err = extract(&a[..], ExtractLimits::default(), None).unwrap_err();
        assert!(matches!(err, ArchiveError::HostileEntry { .. }), "{err}");
    }

    #[test]
    fn absolute_paths_links_and_unknown_folders_are_refused() {
        for (name, kind) in [
            ("/resources/pods/cluster/x.json", tar::EntryType::Regular),
            ("resources/pods/cluster/x.json", tar::EntryType::Symlink),
            ("resources/pods/cluster/x.json", tar::EntryType::Link),
            ("etc/cron.d/x", tar::EntryType::Regular),
            ("resources/pods/cluster/x.yaml", tar::EntryType::Regular),
        ] {
            let a = raw_archive(&[
                ("metadata/version", tar::EntryType::Regular, b"1.1.0"),
                (name, kind, b"{}"),
            ]);
            let err = extract(&a[..], ExtractLimits::default(), None).unwrap_err();
            assert!(
                matches!(err, ArchiveError::HostileEntry { .. }),
                "{name} {kind:?}: {err}"
            );
        }
    }

    #[test]
    fn oversized_entry_and_gzip_bomb_are_refused() {
        let big = vec![b' '; 4096];
        let a = raw_archive(&[
            ("metadata/version", tar::EntryType::Regular, b"1.1.0"),
            (
                "resources/pods/cluster/x.json",
                tar::EntryType::Regular,
                &big,
            ),
        ]);
        let limits = ExtractLimits {
            max_entry_bytes: 1024,
            ..Default::default()
        };
        let err = extract(&a[..], limits, None).unwrap_err();
        assert!(matches!(err, ArchiveError::TooLarge(_)), "{err}");
        let limits = ExtractLimits {
            max_total_bytes: 2048,
            ..Default::default()
        };
        let err = extract(&a[..], limits, None).unwrap_err();
        assert!(matches!(err, ArchiveError::TooLarge(_)), "{err}");
    }

    #[test]
    fn garbage_and_missing_version_are_errors() {
        assert!(extract(&b"not gzip at all"[..], ExtractLimits::default(), None).is_err());
        let a = raw_archive(&[(
            "resources/pods/cluster/x.json",
            tar::EntryType::Regular,
            b"{}",
        )]);
        let err = extract(&a[..], ExtractLimits::default(), None).unwrap_err();
        assert!(matches!(err, ArchiveError::Format(_)), "{err}");
    }

    #[test]
    fn velero_format_1_archives_are_read() {
        // Velero 1.0 to 1.3 wrote `metadata/version` as "1\n" and no preferred-version tree.
        let a = raw_archive(&[
            ("metadata/version", tar::EntryType::Regular, b"1\n"),
            (
                "resources/configmaps/namespaces/x/c.json",
                tar::EntryType::Regular,
                b"{}",
            ),
        ]);
        let idx = extract(&a[..], ExtractLimits::default(), None).unwrap();
        assert_eq!(idx.version, "1");
        assert_eq!(idx.items["configmaps"].len(), 1);
        for bad in [&b"2.0.0\n"[..], b"10.0.0", b"1x"] {
            let a = raw_archive(&[("metadata/version", tar::EntryType::Regular, bad)]);
            let err = extract(&a[..], ExtractLimits::default(), None).unwrap_err();
            assert!(matches!(err, ArchiveError::Format(_)), "{err}");
        }
    }

    #[test]
    fn preferred_version_tree_is_a_fallback() {
        let a = raw_archive(&[
            ("metadata/version", tar::EntryType::Regular, b"1.1.0"),
            (
                "resources/widgets.example.com/v2-preferredversion/namespaces/x/w.json",
                tar::EntryType::Regular,
                b"{\"v\":2}",
            ),
        ]);
        let idx = extract(&a[..], ExtractLimits::default(), None).unwrap();
        assert_eq!(idx.items["widgets.example.com"].len(), 1);
        assert_eq!(
            idx.read(&idx.items["widgets.example.com"][0]).unwrap(),
            b"{\"v\":2}"
        );
        // Both trees, the preferred-version copy first: the plain copy wins.
        let b = raw_archive(&[
            ("metadata/version", tar::EntryType::Regular, b"1.1.0"),
            (
                "resources/widgets.example.com/v2-preferredversion/namespaces/x/w.json",
                tar::EntryType::Regular,
                b"{\"v\":2}",
            ),
            (
                "resources/widgets.example.com/namespaces/x/w.json",
                tar::EntryType::Regular,
                b"{\"v\":1}",
            ),
        ]);
        let idx = extract(&b[..], ExtractLimits::default(), None).unwrap();
        assert_eq!(idx.items["widgets.example.com"].len(), 1);
        assert_eq!(
            idx.read(&idx.items["widgets.example.com"][0]).unwrap(),
            b"{\"v\":1}"
        );
    }
}
