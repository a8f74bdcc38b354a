//! The streaming archive pipeline of a backup:
//!
//! ```text
//! listers (async, many) ─► item batches (≤ QUEUE_BYTES) ─► archive thread (tar + one gzip pass)
//!        ─► bounded chunk channel ─► uploader task (multipart, PART_CONCURRENCY parts in flight)
//! ```
//! Listers hand over one batch per LIST page (one channel message and at most one wake-up of the
//! archive thread per page, not per object). Every stage is bounded, so memory does not grow with
//! the cluster: at most [`QUEUE_BYTES`] of queued item JSON (a batch larger than that waits until
//! the queue is empty), [`CHUNK_QUEUE`] chunks of [`CHUNK_BYTES`] and the uploader's parts are
//! held at once. The sha256 and size of the compressed stream are computed on the way.

use std::io::Write;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::raw::ItemJson;
use crate::archive::{ArchiveError, ArchiveWriter, ItemKey};
use crate::store::{StoreError, Upload};

/// Bytes of item JSON queued for the archive thread at most (8 MiB: a few LIST pages).
pub const QUEUE_BYTES: usize = 8 << 20;
/// Batches queued for the archive thread at most (whatever their size).
const BATCH_QUEUE: usize = 64;
/// Compressed chunks waiting for the uploader.
pub const CHUNK_QUEUE: usize = 4;
/// Size of a compressed chunk handed to the uploader, in bytes.
pub const CHUNK_BYTES: usize = 1 << 20;

/// One object ready for the archive.
pub struct ArchiveItem {
    /// Where it goes.
    pub key: ItemKey,
    /// Its JSON.
    pub json: ItemJson,
}

/// A batch on its way to the archive thread, holding its share of [`QUEUE_BYTES`].
struct Batch {
    items: Vec<ArchiveItem>,
    _queued: OwnedSemaphorePermit,
}

/// Hands batches of items to the archive thread within the queue's byte budget. Cloned by every
/// lister.
#[derive(Clone)]
pub struct ItemSender {
    tx: mpsc::Sender<Batch>,
    queue: Arc<Semaphore>,
}

/// The archive pipeline has stopped (its thread ended, e.g. because the upload failed).
#[derive(Debug, thiserror::Error)]
#[error("the archive pipeline stopped")]
pub struct Closed;

impl ItemSender {
    /// Queues `items` (nothing when empty), waiting while the queue holds [`QUEUE_BYTES`].
    ///
    /// # Errors
    /// [`Closed`] when the pipeline has stopped.
    pub async fn send(&self, items: Vec<ArchiveItem>) -> Result<(), Closed> {
        if items.is_empty() {
            return Ok(());
        }
        let bytes: usize = items.iter().map(|i| i.json.len()).sum();
        // At least one permit, at most all: an oversized batch waits for an empty queue.
        let permits = bytes.clamp(1, QUEUE_BYTES) as u32;
        let queued = self
            .queue
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| Closed)?;
        self.tx
            .send(Batch {
                items,
                _queued: queued,
            })
            .await
            .map_err(|_| Closed)
    }
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
    items: ItemSender,
    writer: tokio::task::JoinHandle<Result<ArchiveSummary, ArchiveError>>,
    uploader: tokio::task::JoinHandle<Result<Upload, StoreError>>,
}

impl Pipeline {
    /// Starts the archive thread and the uploader on `upload`.
    pub fn start(mut upload: Upload, mtime_unix: u64) -> Self {
        let (item_tx, mut item_rx) = mpsc::channel::<Batch>(BATCH_QUEUE);
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Bytes>(CHUNK_QUEUE);
        let writer = tokio::task::spawn_blocking(move || {
            let sink = ChunkSink {
                buf: BytesMut::with_capacity(CHUNK_BYTES + 64 * 1024),
                tx: chunk_tx,
                hasher: Sha256::new(),
                bytes: 0,
            };
            let mut w = ArchiveWriter::new(sink, mtime_unix)?;
            while let Some(batch) = item_rx.blocking_recv() {
                for item in &batch.items {
                    w.add_item_parts(&item.key, &item.json.head, &item.json.body)?;
                }
                // Dropping the batch returns its bytes to the queue.
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
            items: ItemSender {
                tx: item_tx,
                queue: Arc::new(Semaphore::new(QUEUE_BYTES)),
            },
            writer,
            uploader,
        }
    }

    /// A sender for items; sending fails once the pipeline has stopped (e.g. the upload failed).
    pub fn sender(&self) -> ItemSender {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(bytes: usize) -> ArchiveItem {
        ArchiveItem {
            key: ItemKey {
                group_resource: "configmaps".into(),
                version: "v1".into(),
                namespace: Some("a".into()),
                name: "c".into(),
            },
            json: ItemJson {
                head: Bytes::new(),
                body: Bytes::from(vec![b' '; bytes]),
            },
        }
    }

    #[tokio::test]
    async fn queued_bytes_are_bounded_and_oversized_batches_still_pass() {
        let (tx, mut rx) = mpsc::channel(BATCH_QUEUE);
        let sender = ItemSender {
            tx,
            queue: Arc::new(Semaphore::new(QUEUE_BYTES)),
        };
        // Larger than the whole queue: takes all of it rather than waiting forever.
        sender.send(vec![item(QUEUE_BYTES + 1)]).await.unwrap();
        assert_eq!(sender.queue.available_permits(), 0);
        // The next batch waits until the first has been written (dropped).
        let second = tokio::spawn({
            let sender = sender.clone();
            async move { sender.send(vec![item(10), item(20)]).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!second.is_finished());
        let first = rx.recv().await.unwrap();
        assert_eq!(first.items.len(), 1);
        drop(first);
        second.await.unwrap().unwrap();
        assert_eq!(sender.queue.available_permits(), QUEUE_BYTES - 30);
        // Empty batches are not sent; a stopped pipeline is reported.
        sender.send(Vec::new()).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().items.len(), 2);
        drop(rx);
        assert!(sender.send(vec![item(1)]).await.is_err());
    }
}
