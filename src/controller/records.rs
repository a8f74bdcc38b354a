//! Backup records and what the store holds of them, for the controllers that need both: the
//! status a stored `velero-backup.json` gives a record (store sync, start-up recovery), whether
//! a record left `InProgress` by a restart completed after all, and removing what an
//! interrupted run left.

use kube::ResourceExt;
use serde_json::json;

use super::Context;
use super::stores;
use crate::api::conditions::Health;
use crate::api::tidemark::Backup;
use crate::api::velero;

/// The status of a Backup whose record is `v` (a `velero-backup.json` read from the store), and
/// its health: `Ready` with `reason` when `Completed`, `Stalled` otherwise; `message` says where
/// the record came from. Used by the store sync and by the start-up recovery of a backup that
/// completed just before a restart.
pub fn status_from_record(
    v: &velero::Backup,
    reason: &str,
    message: &str,
) -> (serde_json::Value, Health) {
    let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    let status = json!({
        "phase": v.status.phase.clone().unwrap_or_else(|| "Completed".into()),
        "startTimestamp": ts(v.status.start_timestamp),
        "completionTimestamp": ts(v.status.completion_timestamp),
        "expiration": ts(v.status.expiration),
        "itemsBackedUp": v.status.progress.as_ref().map(|p| p.items_backed_up),
        "progress": v.status.progress.as_ref().map(|p| crate::api::tidemark::BackupProgress {
            total_items: i64::try_from(p.total_items).unwrap_or(i64::MAX),
            items_backed_up: i64::try_from(p.items_backed_up).unwrap_or(i64::MAX),
        }),
        "warnings": v.status.warnings,
        "errors": v.status.errors,
    });
    let health = match v.phase() {
        "Completed" => Health::Ready {
            reason: reason.into(),
            message: message.into(),
        },
        p => Health::Stalled {
            reason: reason.into(),
            message: format!("{message} in phase {p}"),
        },
    };
    (status, health)
}

/// The record of a Backup left `InProgress` by a restart, when its run got as far as writing it
/// (the store has its `velero-backup.json`): the backup completed, only its status was not
/// written. `None` when there is none, or the store cannot say.
pub async fn stored_record(ctx: &Context, b: &Backup) -> Option<velero::Backup> {
    let (_, store) = stores::open(ctx, b.spec.template.location.as_deref())
        .await
        .ok()?;
    crate::restore::read_backup(&store, &b.name_any())
        .await
        .ok()
}

/// Removes whatever an interrupted run left in the store (never a complete backup).
pub async fn remove_partial(ctx: &Context, b: &Backup) {
    let Ok((_, store)) = stores::open(ctx, b.spec.template.location.as_deref()).await else {
        return;
    };
    let name = b.name_any();
    // Only a folder without its record is partial. A record that exists, or a store that
    // cannot say (unreachable, refusing), keeps everything: a flaky read must never delete a
    // backup that completed just before the crash.
    match crate::restore::read_backup(&store, &name).await {
        Err(crate::restore::RestoreError::BackupNotFound { .. }) => {}
        Ok(_) | Err(crate::restore::RestoreError::BackupUnusable { .. }) => return,
        Err(e) => {
            tracing::warn!(
                backup = %name,
                "cannot tell whether the interrupted backup completed; its files are kept: {e}"
            );
            return;
        }
    }
    // Storage snapshots the run retained (its intent records) go first; the folder, which holds
    // the only references to them, only once they are gone.
    match crate::backup::recover::clean_up(Some(&ctx.client), &store, &name).await {
        crate::backup::recover::Cleanup::Removed { snapshots } if snapshots > 0 => {
            tracing::info!(backup = %name, "deleted {snapshots} storage snapshot(s) of the interrupted backup");
        }
        crate::backup::recover::Cleanup::Kept(why) => {
            tracing::warn!(backup = %name, "the interrupted backup's files are kept: {why}");
        }
        _ => {}
    }
}
