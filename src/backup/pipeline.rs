//! The streaming archive pipeline of a backup:
//!
//! ```text
//! listers (async, many) ─► bounded item channel ─► archive thread (tar + one gzip pass)
//!        ─► bounded chunk channel ─► uploader task (multipart, PART_CONCURRENCY parts in flight)
//! ```
//! Every stage is bounded, so memory does not grow with the cluster: at most
//! [`ITEM_QUEUE`] items, [`CHUNK_QUEUE`] chunks of [`CHUNK_BYTES`] and the uploader's parts are
//! held at once. The sha256 and size of the compressed stream are computed on the way.

use std::io::Write;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::archive::{ArchiveError, ArchiveWriter, ItemKey};
use crate::store::{StoreError, Upload};

/// Items waiting for the archive thread.
pub const ITEM_QUEUE: usize = 512;
/// Compressed chunks waiting for the uploader.
pub const CHUNK_QUEUE: usize = 4;
/// Size of a compressed chunk handed to the uploader, in bytes.
pub const CHUNK_BYTES: usize = 1 << 20;

/// One object ready for the archive.
pub struct ArchiveItem {
    /// Where it goes.
    pub key: ItemKey,
    /// Its JSON.
    pub json: Vec<u8>,
}

/// What the pipeline produced.
#[derive(Debug)]
pub struct ArchiveSummary {
    /// sha256 of the compressed archive, hex.
    pub sha256: String,
    /// Size of the compressed archive, bytes.
    pub bytes: u64,
    /// Items written.
    pub items: u64,
}

/// Errors of the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Writing the archive failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Uploading failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A pipeline stage stopped unexpectedly.
    #[error("archive pipeline stopped: {0}")]
    Stopped(String),
}

struct ChunkSink {
    buf: BytesMut,
    tx: mpsc::Sender<Bytes>,
    hasher: Sha256,
    bytes: u64,
}

impl ChunkSink {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("upload stopped"))
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK_BYTES {
            self.flush_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running pipeline: send items with [`Pipeline::sender`], then call [`Pipeline::finish`].
pub struct Pipeline {
    items: mpsc::Sender<ArchiveItem>,
    writer: tokio::task::JoinHandle<Result<ArchiveSummary, ArchiveError>>,
    uploader: tokio::task::JoinHandle<Result<Upload, StoreError>>,
}

impl Pipeline {
    /// Starts the archive thread and the uploader on `upload`.
    pub fn start(mut upload: Upload, mtime_unix: u64) -> Self {
        let (item_tx, mut item_rx) = mpsc::channel::<ArchiveItem>(ITEM_QUEUE);
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Bytes>(CHUNK_QUEUE);
        let writer = tokio::task::spawn_blocking(move || {
            let sink = ChunkSink {
                buf: BytesMut::with_capacity(CHUNK_BYTES + 64 * 1024),
                tx: chunk_tx,
                hasher: Sha256::new(),
                bytes: 0,
            };
            let mut w = ArchiveWriter::new(sink, mtime_unix)?;
            while let Some(item) = item_rx.blocking_recv() {
                w.add_item(&item.key, &item.json)?;
            }
            let items = w.items();
            let mut sink = w.finish()?;
            sink.flush_chunk()?;
            Ok(ArchiveSummary {
                sha256: hex::encode(sink.hasher.finalize()),
                bytes: sink.bytes,
                items,
            })
        });
        let uploader = tokio::spawn(async move {
            while let Some(chunk) = chunk_rx.recv().await {
                upload.write(chunk).await?;
            }
            Ok(upload)
        });
        Self {
            items: item_tx,
            writer,
            uploader,
        }
    }

    /// A sender for items; sending fails once the pipeline has stopped (e.g. the upload failed).
    pub fn sender(&self) -> mpsc::Sender<ArchiveItem> {
        self.items.clone()
    }

    /// Closes the item stream, waits for the archive to be written and the upload to complete.
    /// All item senders must have been dropped.
    ///
    /// # Errors
    /// The first failure of either stage; the upload is aborted then (no object is left).
    pub async fn finish(self) -> Result<ArchiveSummary, PipelineError> {
        drop(self.items);
        let written = self
            .writer
            .await
            .map_err(|e| PipelineError::Stopped(e.to_string()))?;
        let upload = self
            .uploader
            .await
            .map_err(|e| PipelineError::Stopped(e.to_string()))?;
        match (written, upload) {
            (Ok(summary), Ok(upload)) => {
                upload.finish().await?;
                Ok(summary)
            }
            (_, Err(e)) => Err(e.into()),
            (Err(e), Ok(upload)) => {
                upload.abort().await;
                Err(e.into())
            }
        }
    }
}
