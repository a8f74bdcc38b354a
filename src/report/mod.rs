//! Reporting: the status of tidemark's objects ([`object_status`]), Velero-shaped results
//! (warnings and errors per namespace), the gzip-compressed run log stored beside each backup
//! and restore, commit statuses, and the
//! plain-text layout ([`text`]) of what is shown to people.

pub mod forge;
mod log;
pub mod object_status;
mod results;
pub mod status;
pub mod text;

pub use log::RunLog;
pub use results::{ResultSet, Results};

/// Largest side file decompressed, in bytes (256 MiB): a gzip bomb stops there (and then fails
/// to parse).
pub const SIDE_FILE_LIMIT: u64 = 256 << 20;

/// Decompresses a gzip side file (logs, results, lists), at most [`SIDE_FILE_LIMIT`] bytes.
///
/// # Errors
/// The I/O error when `gz` is not a gzip stream.
pub fn gunzip(gz: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(SIDE_FILE_LIMIT)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Serializes `value` as JSON into a gzip stream (the `*.json.gz` / `-results.gz` side files).
pub fn gzip_json<T: serde::Serialize>(value: &T) -> bytes::Bytes {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Serializing plain data into a Vec cannot fail; an empty stream would be reported on read.
    let _ = serde_json::to_writer(&mut gz, value);
    bytes::Bytes::from(gz.finish().unwrap_or_default())
}
