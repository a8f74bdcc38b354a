//! Recovery of interrupted backups: the one clean-up that the controller's start-up, direct
//! mode's failure path and `tidemark recover` share.
//!
//! A backup folder without its `velero-backup.json` is what a run that stopped half way left
//! (the record is always written last). Cleaning it up means, in this order: deleting the
//! storage snapshots the run retained — found through the snapshots' intent records
//! ([`crate::volumes::csi::read_intents`]) and any volume records — then aborting its
//! unfinished S3 multipart uploads, then removing the folder. Files already under S3 Object
//! Lock retention are kept until it ends.
//! When the snapshots cannot all be deleted (no cluster connection, the driver refuses), the
//! folder is kept: it holds the only references to them. A complete backup is never touched.

use std::time::Duration;

use chrono::Utc;
use kube::Client;

use crate::store::{Store, StoreError};

/// Errors of a recovery sweep.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// The store could not list or read the backup folders.
    #[error("listing the location's backups: {0}")]
    Store(#[from] StoreError),
}

/// What happened to one interrupted backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cleanup {
    /// Its storage snapshots (this many) and its folder are gone.
    Removed {
        /// Storage snapshots deleted.
        snapshots: usize,
    },
    /// Kept, with the reason (its snapshots could not be deleted, or the folder not removed).
    Kept(String),
    /// Left alone: written to too recently (it may still be running).
    Recent,
    /// Would be removed (`dry_run`).
    WouldRemove,
}

/// Cleans up one interrupted backup: its storage snapshots first, then its folder. The caller
/// has established that the backup has no record (it is partial).
pub async fn clean_up(client: Option<&Client>, store: &Store, name: &str) -> Cleanup {
    // Files already under S3 Object Lock (a run stopped after locking, before its record) stay
    // until their retention ends; their snapshots with them.
    if let Err(e) = super::delete::check_retention(store, name).await {
        return Cleanup::Kept(e.to_string());
    }
    let snapshots = match crate::volumes::csi::delete_for_backup(client, store, name).await {
        Ok(n) => n,
        Err(e) => {
            return Cleanup::Kept(format!(
                "its storage snapshots could not be deleted, so its files (their only \
                     references) are kept: {e}"
            ));
        }
    };
    // The run's unfinished multipart uploads (S3 keeps, and bills, their parts until aborted).
    let dir = store.layout().backup_dir(name);
    let archive = store.layout().backup_archive(name);
    if let Err(e) = store.abort_pending_uploads(&dir, &[archive]).await {
        return Cleanup::Kept(format!("its unfinished uploads could not be aborted: {e}"));
    }
    match store.delete_folder(&dir).await {
        Ok(_) => Cleanup::Removed { snapshots },
        Err(e) => Cleanup::Kept(format!("its folder could not be removed: {e}")),
    }
}

/// Cleans up every interrupted backup of `store` whose newest file is at least `older_than`
/// old (a younger one may belong to a run still going on, from another process). With
/// `dry_run`, only reports. Returns `(backup, what happened)` sorted by name.
///
/// # Errors
/// [`RecoverError::Store`] when the backups cannot be listed.
pub async fn sweep(
    client: Option<&Client>,
    store: &Store,
    older_than: Duration,
    dry_run: bool,
) -> Result<Vec<(String, Cleanup)>, RecoverError> {
    let now = Utc::now();
    let mut out = Vec::new();
    for (name, newest) in store.list_partial_backups().await? {
        let age = newest
            .map(|t| (now - t).to_std().unwrap_or_default())
            .unwrap_or(Duration::MAX);
        let what = if age < older_than {
            Cleanup::Recent
        } else if dry_run {
            Cleanup::WouldRemove
        } else {
            clean_up(client, store, &name).await
        };
        out.push((name, what));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocationUrl;
    use bytes::Bytes;

    #[tokio::test]
    async fn only_partial_and_old_enough_folders_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&LocationUrl::filesystem(dir.path()), false).unwrap();
        let l = store.layout().clone();
        let put = |p: object_store::path::Path| {
            let store = store.clone();
            async move {
                store
                    .put(&p, Bytes::from_static(b"{}"), false)
                    .await
                    .unwrap()
            }
        };
        put(l.backup_file("done", crate::store::layout::BACKUP_METADATA_FILE)).await;
        put(l.backup_file("done", "done.tar.gz")).await;
        put(l.backup_file("half", "half.tar.gz")).await;
        // Recent: left alone.
        let report = sweep(None, &store, Duration::from_secs(3600), false)
            .await
            .unwrap();
        assert_eq!(report, vec![("half".to_string(), Cleanup::Recent)]);
        let report = sweep(None, &store, Duration::ZERO, true).await.unwrap();
        assert_eq!(report, vec![("half".to_string(), Cleanup::WouldRemove)]);
        assert!(dir.path().join("backups/half/half.tar.gz").exists());
        // Old enough (no snapshots: no cluster needed): removed; the complete backup stays.
        let report = sweep(None, &store, Duration::ZERO, false).await.unwrap();
        assert_eq!(
            report,
            vec![("half".to_string(), Cleanup::Removed { snapshots: 0 })]
        );
        assert!(!dir.path().join("backups/half").exists());
        assert!(dir.path().join("backups/done/done.tar.gz").exists());
    }

    #[tokio::test]
    async fn a_partial_backup_with_snapshots_and_no_cluster_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&LocationUrl::filesystem(dir.path()), false).unwrap();
        let intent = serde_json::json!({"namespace": "app", "pvc": "data", "pv": "pv-1",
            "handle": "snap-1", "driver": "d", "size": 1, "class": "c", "vsName": "v"});
        store
            .put(
                &store.layout().backup_file(
                    "half",
                    &format!("{}vsc-1.json", crate::volumes::csi::INTENT_PREFIX),
                ),
                Bytes::from(intent.to_string()),
                false,
            )
            .await
            .unwrap();
        let report = sweep(None, &store, Duration::ZERO, false).await.unwrap();
        assert!(
            matches!(&report[0].1, Cleanup::Kept(why) if why.contains("cluster connection")),
            "{report:?}"
        );
        assert!(dir.path().join("backups/half").exists());
    }
}
