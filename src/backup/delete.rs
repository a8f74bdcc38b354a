//! Deleting a backup from its location: the one executor behind `tidemark backup delete`
//! (direct mode) and the Backup controller's expiry and deletion.
//!
//! In order: refuse on a read-only location; refuse, before anything is deleted, while any of
//! the backup's objects is under S3 Object Lock retention ([`Store::folder_retention`]);
//! delete its CSI snapshots (kept, with the backup, when they cannot be: its records are their
//! only reference); remove the restores made from it; forget its pod volume snapshots in the
//! restic repository; then the record (`velero-backup.json`) and the rest of the folder, so a
//! half-deleted folder never looks like a backup.

use chrono::Utc;
use kube::Client;

use crate::store::{LockMode, Store, StoreError, layout};
use crate::volumes::podvolume::{PodVolumeSettings, forget_on_expiry};

/// Why a backup was not deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// An object of the backup is still retained by S3 Object Lock; nothing was deleted.
    #[error(
        "backup {backup} is under S3 Object Lock ({mode}) until {until}: nothing was deleted; it \
         can be deleted after that"
    )]
    Retained {
        /// The backup.
        backup: String,
        /// The retention mode.
        mode: LockMode,
        /// When the last retention ends (RFC 3339).
        until: String,
        /// The same instant, to wait for.
        until_time: chrono::DateTime<Utc>,
    },
    /// Its CSI snapshots could not all be deleted; the backup is kept (its records are their
    /// only reference).
    #[error("backup {backup} kept: its CSI snapshots were not deleted: {message}")]
    CsiSnapshots {
        /// The backup.
        backup: String,
        /// What failed.
        message: String,
    },
    /// The store refused or failed (a read-only location, an unreachable store).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a deletion removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// Objects removed from the backup's folder (record included).
    pub objects: usize,
    /// CSI snapshots deleted.
    pub csi_snapshots: usize,
    /// Restic snapshots of pod volumes forgotten.
    pub restic_snapshots: usize,
    /// Restores (store folders) made from the backup that were removed.
    pub restores: Vec<String>,
    /// What could not be cleaned but does not keep the backup (pod volume data left in the
    /// repository, a restore folder that was not removed).
    pub warnings: Vec<String>,
}

/// Refuses while any object of backup `name` is under S3 Object Lock retention.
///
/// # Errors
/// [`DeleteError::Retained`] naming when the last retention ends; [`DeleteError::Store`] when
/// the store cannot say (never taken as "not retained").
pub async fn check_retention(store: &Store, name: &str) -> Result<(), DeleteError> {
    let dir = store.layout().backup_dir(name);
    match store.folder_retention(&dir, Utc::now()).await? {
        None => Ok(()),
        Some((_, r)) => Err(DeleteError::Retained {
            backup: name.to_string(),
            mode: r.mode,
            until: r
                .retain_until
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            until_time: r.retain_until,
        }),
    }
}

/// Deletes backup `name` from `store` (see the module doc). `client` is needed only for a
/// backup with CSI snapshots; `record_namespace` is where PodVolumeBackup records live (empty
/// in direct mode).
///
/// # Errors
/// [`DeleteError::Retained`] (nothing deleted), [`DeleteError::CsiSnapshots`] (backup kept),
/// [`DeleteError::Store`] (read-only location, or the store failed; the record is deleted
/// before the rest, so a backup is either whole or invisible).
pub async fn delete_backup(
    client: Option<&Client>,
    store: &Store,
    name: &str,
    record_namespace: &str,
    pod_volumes: &PodVolumeSettings,
) -> Result<Deleted, DeleteError> {
    let dir = store.layout().backup_dir(name);
    let record = store
        .layout()
        .backup_file(name, layout::BACKUP_METADATA_FILE);
    if store.is_read_only() {
        return Err(StoreError::ReadOnly {
            location: store.url().to_string(),
            operation: "delete",
            path: dir.to_string(),
        }
        .into());
    }
    check_retention(store, name).await?;
    let mut out = Deleted {
        csi_snapshots: crate::volumes::csi::delete_for_backup(client, store, name)
            .await
            .map_err(|message| DeleteError::CsiSnapshots {
                backup: name.to_string(),
                message,
            })?,
        ..Default::default()
    };
    for r in store.list_restores().await? {
        let path = store.layout().restore_file(&r, layout::RESTORE_RECORD_FILE);
        let made_from_it = store
            .get(&path)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice::<crate::api::velero::Restore>(&b).ok())
            .is_some_and(|rec| rec.spec.backup_name == name);
        if made_from_it {
            match store.delete_folder(&store.layout().restore_dir(&r)).await {
                Ok(_) => out.restores.push(r),
                Err(e) => out.warnings.push(format!("restore {r} not removed: {e}")),
            }
        }
    }
    match forget_on_expiry(client, record_namespace, store, name, pod_volumes).await {
        Ok(n) => out.restic_snapshots = n,
        Err(e) => out.warnings.push(e.to_string()),
    }
    if store.bucket_locked().await? {
        // Every version, records first.
        out.objects = store.delete_folder(&dir).await?;
    } else {
        store.delete(&record).await?;
        out.objects = store.delete_folder(&dir).await? + 1;
    }
    Ok(out)
}
