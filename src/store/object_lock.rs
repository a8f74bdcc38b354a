//! Immutable backups on S3 Object Lock: what the [`Store`] does on a bucket created with Object
//! Lock (which S3 and MinIO only allow on new buckets, and which turns versioning on).
//!
//! - **Writes.** A Location with an Object Lock mode writes a backup as usual, once (every file
//!   is created, never rewritten), then gives every file of the backup folder a retention until
//!   the backup's expiration ([`Store::retain_folder`]), and writes `velero-backup.json` last with
//!   the same retention in the same request ([`Store::put_record`]). A backup that exists is
//!   therefore locked whole; a run interrupted before its record leaves files that may be locked
//!   too, and are then removed once their retention ends.
//! - **Deletes.** On a locked bucket, deleting a folder ([`Store::delete_folder`]) means
//!   deleting every version and delete marker under it (a plain `DELETE` would only hide the
//!   objects behind a delete marker). Retention is checked first, for every version: if any is
//!   still retained nothing is deleted and the answer is [`StoreError::Retained`], naming the
//!   object and when it can be deleted.
//! - **Without a mode**, a locked bucket is still deleted from by version and its retention still
//!   respected (whoever locked the objects); a bucket without Object Lock, or a store that does
//!   not let tidemark read the bucket's lock configuration (Velero's IAM policy does not grant
//!   `s3:GetBucketObjectLockConfiguration`), is deleted from as before.
//!
//! Only S3 locations have Object Lock; the other providers answer "not locked".

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;

use super::{LockMode, Retention, S3Api, Store, StoreError};

/// Requests in flight when retaining or deleting a folder's objects.
const CONCURRENCY: usize = 8;

impl Store {
    /// The same location, locking every backup written to it with `mode` until the backup's
    /// expiration (see the module doc). The bucket must have Object Lock: [`Store::check`] says
    /// so otherwise.
    pub fn with_object_lock(mut self, mode: LockMode) -> Self {
        self.object_lock = Some(mode);
        self
    }

    /// The Object Lock mode backups are written with, when the location has one.
    pub fn object_lock(&self) -> Option<LockMode> {
        self.object_lock
    }

    /// The client of the S3 APIs object_store lacks, for S3 locations.
    pub fn s3_api(&self) -> Option<&S3Api> {
        self.s3.as_ref()
    }

    /// Whether the bucket has Object Lock on (asked once per opened store; `false` for other
    /// providers). When the store refuses to say (access denied) and no mode is configured,
    /// the bucket is taken as unlocked.
    ///
    /// # Errors
    /// [`StoreError::Request`] when the store cannot be asked, or refuses while a mode is
    /// configured.
    pub async fn bucket_locked(&self) -> Result<bool, StoreError> {
        let Some(api) = &self.s3 else {
            return Ok(false);
        };
        let locked = self
            .bucket_locked
            .get_or_try_init(|| async {
                match api.object_lock_enabled().await {
                    Ok(b) => Ok(b),
                    Err(StoreError::Request { message, .. })
                        if self.object_lock.is_none() && message.contains("AccessDenied") =>
                    {
                        tracing::debug!(
                            location = %self.url,
                            "the bucket's Object Lock configuration cannot be read; taken as unlocked"
                        );
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        Ok(*locked)
    }

    /// With an Object Lock mode configured: checks that the bucket can lock objects.
    ///
    /// # Errors
    /// [`StoreError::NoObjectLock`], or [`StoreError::Request`] when the store cannot say.
    pub(super) async fn check_object_lock(&self) -> Result<(), StoreError> {
        let Some(mode) = self.object_lock else {
            return Ok(());
        };
        if self.bucket_locked().await? {
            return Ok(());
        }
        Err(StoreError::NoObjectLock {
            location: self.url.to_string(),
            bucket: self.url.bucket().to_string(),
            mode,
        })
    }

    /// The retention a backup expiring at `expiration` is written with here: the configured
    /// mode until then; `None` without a mode, or without an expiration still to come (the
    /// bucket's default retention, if any, still applies).
    pub fn retention_until(&self, expiration: Option<DateTime<Utc>>) -> Option<Retention> {
        Some(Retention {
            mode: self.object_lock?,
            retain_until: expiration.filter(|e| *e > Utc::now())?,
        })
    }

    /// Gives every object under `dir` but those named `except` the `retention`. Returns how many
    /// objects were retained.
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`], [`StoreError::Request`], or [`StoreError::NoObjectLock`] on a
    /// location without the S3 APIs.
    pub async fn retain_folder(
        &self,
        dir: &Path,
        except: &str,
        retention: Retention,
    ) -> Result<usize, StoreError> {
        self.guard("lock", dir)?;
        let api = self.api_for_lock(retention.mode)?;
        let paths: Vec<Path> = self
            .inner
            .list(Some(dir))
            .map_ok(|m| m.location)
            .try_filter(|p| futures::future::ready(p.filename() != Some(except)))
            .try_collect()
            .await
            .map_err(|e| self.err("list", dir, e))?;
        let n = paths.len();
        futures::stream::iter(
            paths
                .into_iter()
                .map(|p| async move { api.put_retention(p.as_ref(), retention).await }),
        )
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(n)
    }

    /// Writes a backup's or restore's record (never encrypted, never overwritten): with a
    /// `retention`, in one request that carries it; otherwise as [`Store::put`] with
    /// `create_only`.
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`], [`StoreError::AlreadyExists`], [`StoreError::Request`].
    pub async fn put_record(
        &self,
        path: &Path,
        data: bytes::Bytes,
        retention: Option<Retention>,
    ) -> Result<(), StoreError> {
        let Some(retention) = retention else {
            return self.put(path, data, true).await;
        };
        self.guard("write", path)?;
        let api = self.api_for_lock(retention.mode)?;
        api.put_retained(path.as_ref(), data, retention).await
    }

    /// Of the object versions under `dir`, the one retained longest, if its retention has not
    /// ended at `now`: `(key, retention)`. `None` on an unlocked bucket.
    ///
    /// # Errors
    /// [`StoreError::Request`] when a listing or a retention cannot be read: a store that
    /// cannot say is never taken to hold nothing retained.
    pub async fn folder_retention(
        &self,
        dir: &Path,
        now: DateTime<Utc>,
    ) -> Result<Option<(String, Retention)>, StoreError> {
        if !self.bucket_locked().await? {
            return Ok(None);
        }
        let Some(api) = &self.s3 else {
            return Ok(None);
        };
        let versions = api.list_versions(&folder_prefix(dir)).await?;
        let retentions: Vec<(String, Option<Retention>)> =
            futures::stream::iter(versions.into_iter().filter(|v| !v.delete_marker).map(
                |v| async move {
                    let r = api.retention(&v.key, Some(&v.version_id)).await?;
                    Ok::<_, StoreError>((v.key, r))
                },
            ))
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        Ok(retentions
            .into_iter()
            .filter_map(|(k, r)| r.map(|r| (k, r)))
            .filter(|(_, r)| r.retain_until > now)
            .max_by_key(|(_, r)| r.retain_until))
    }

    /// Deletes every version and delete marker under `dir` of a locked bucket, after checking
    /// that none is still retained; records (`velero-backup.json`, the restore record) go
    /// first, so a half-deleted folder never looks whole. Returns how many objects (keys) were
    /// removed.
    ///
    /// # Errors
    /// [`StoreError::Retained`] (nothing deleted), [`StoreError::Request`].
    pub(super) async fn delete_versions(&self, dir: &Path) -> Result<usize, StoreError> {
        let Some(api) = &self.s3 else {
            return Ok(0);
        };
        if let Some((key, r)) = self.folder_retention(dir, Utc::now()).await? {
            return Err(StoreError::Retained {
                location: self.url.to_string(),
                path: key,
                mode: r.mode,
                until: r
                    .retain_until
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            });
        }
        let mut versions = api.list_versions(&folder_prefix(dir)).await?;
        let is_record = |k: &str| {
            k.ends_with(super::layout::BACKUP_METADATA_FILE)
                || k.ends_with(super::layout::RESTORE_RECORD_FILE)
        };
        versions.sort_by_key(|v| !is_record(&v.key));
        let keys: std::collections::BTreeSet<String> = versions
            .iter()
            .filter(|v| !v.delete_marker)
            .map(|v| v.key.clone())
            .collect();
        let (records, rest): (Vec<_>, Vec<_>) =
            versions.into_iter().partition(|v| is_record(&v.key));
        for batch in [records, rest] {
            futures::stream::iter(
                batch
                    .into_iter()
                    .map(|v| async move { api.delete_version(&v.key, &v.version_id).await }),
            )
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        }
        Ok(keys.len())
    }

    /// Aborts the multipart uploads in progress under `dir` and of the objects `keys` (what an
    /// interrupted run left; their parts are stored, and billed, until then): S3 lists them by
    /// prefix, MinIO only by exact key, so callers name the objects they stream. Returns how
    /// many were aborted; other providers have none to list (Azure's uncommitted blocks and
    /// GCS's resumable sessions expire on their own).
    ///
    /// # Errors
    /// [`StoreError::ReadOnly`], [`StoreError::Request`].
    pub async fn abort_pending_uploads(
        &self,
        dir: &Path,
        keys: &[Path],
    ) -> Result<usize, StoreError> {
        self.guard("abort uploads", dir)?;
        let Some(api) = &self.s3 else {
            return Ok(0);
        };
        let mut pending = api.list_pending_uploads(&folder_prefix(dir)).await?;
        for k in keys {
            pending.extend(api.list_pending_uploads(k.as_ref()).await?);
        }
        pending.sort_by(|a, b| a.upload_id.cmp(&b.upload_id));
        pending.dedup_by(|a, b| a.upload_id == b.upload_id);
        let n = pending.len();
        for u in pending {
            api.abort_upload(&u.key, &u.upload_id).await?;
        }
        Ok(n)
    }

    fn api_for_lock(&self, mode: LockMode) -> Result<&S3Api, StoreError> {
        self.s3.as_ref().ok_or_else(|| StoreError::NoObjectLock {
            location: self.url.to_string(),
            bucket: self.url.bucket().to_string(),
            mode,
        })
    }
}

/// The listing prefix of a folder: its path and a slash, so that `b1/` never matches `b10/`.
fn folder_prefix(dir: &Path) -> String {
    let p = dir.as_ref();
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_prefixes_end_in_a_slash() {
        assert_eq!(folder_prefix(&Path::from("p/backups/b1")), "p/backups/b1/");
        assert_eq!(folder_prefix(&Path::default()), "");
    }

    #[tokio::test]
    async fn filesystem_locations_have_no_object_lock() {
        let dir = tempfile::tempdir().unwrap();
        let url: super::super::LocationUrl =
            format!("file://{}", dir.path().display()).parse().unwrap();
        let store = Store::open(&url, false).unwrap();
        assert!(!store.bucket_locked().await.unwrap());
        let later = Utc::now() + chrono::Duration::hours(1);
        assert_eq!(store.retention_until(Some(later)), None);
        let locked = store.clone().with_object_lock(LockMode::Governance);
        assert_eq!(
            locked.retention_until(Some(later)).map(|r| r.retain_until),
            Some(later)
        );
        assert_eq!(locked.retention_until(Some(Utc::now())), None);
        let e = locked.check_object_lock().await.unwrap_err();
        assert!(matches!(e, StoreError::NoObjectLock { .. }), "{e}");
        let e = locked
            .put_record(
                &Path::from("backups/b/velero-backup.json"),
                bytes::Bytes::from_static(b"{}"),
                locked.retention_until(Some(later)),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NoObjectLock { .. }), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
