//! Reporting a run: Velero-shaped results (warnings and errors per namespace) and the
//! gzip-compressed run log stored beside each backup and restore.

mod log;
mod results;
pub mod status;

pub use log::RunLog;
pub use results::{ResultSet, Results};

/// Serializes `value` as JSON into a gzip stream (the `*.json.gz` / `-results.gz` side files).
pub fn gzip_json<T: serde::Serialize>(value: &T) -> bytes::Bytes {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Serializing plain data into a Vec cannot fail; an empty stream would be reported on read.
    let _ = serde_json::to_writer(&mut gz, value);
    bytes::Bytes::from(gz.finish().unwrap_or_default())
}
