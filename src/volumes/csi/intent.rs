//! Intent records: a snapshot's handle written to the backup's folder before its content is
//! retained, so that an interrupted run never orphans a storage snapshot.

use super::*;

/// File name prefix of the intent records in a backup's folder:
/// `tidemark-csi-intent-<VolumeSnapshotContent name>.json`, one [`SnapshotRef`] each (JSON).
/// tidemark's own files; Velero ignores them.
pub const INTENT_PREFIX: &str = "tidemark-csi-intent-";

/// Writes the intent record of a snapshot about to be retained.
pub(super) async fn write_intent(
    store: &Store,
    backup: &str,
    vsc_name: &str,
    r: &SnapshotRef,
) -> Result<(), VolumesError> {
    let path = store
        .layout()
        .backup_file(backup, &format!("{INTENT_PREFIX}{vsc_name}.json"));
    let body = serde_json::to_vec(r).unwrap_or_default();
    crate::volumes::put_record(store, &path, bytes::Bytes::from(body)).await
}

/// The intent records of a backup's folder: every storage snapshot a run of it retained, even
/// one that stopped before writing its volume records.
///
/// # Errors
/// [`VolumesError::Record`] when the folder cannot be listed or a record cannot be read. A
/// listing failure is an error, never "no snapshots": the caller must then keep the folder.
pub async fn read_intents(store: &Store, backup: &str) -> Result<Vec<SnapshotRef>, VolumesError> {
    let dir = store.layout().backup_dir(backup);
    let listed = store
        .list_sizes(&dir)
        .await
        .map_err(|e| VolumesError::Record {
            what: format!("{dir}/{INTENT_PREFIX}*"),
            reason: e.to_string(),
        })?;
    let mut out = Vec::new();
    for (path, _) in listed {
        if !path
            .filename()
            .is_some_and(|f| f.starts_with(INTENT_PREFIX) && f.ends_with(".json"))
        {
            continue;
        }
        let bytes = store.get(&path).await.map_err(|e| VolumesError::Record {
            what: path.to_string(),
            reason: e.to_string(),
        })?;
        let r: SnapshotRef = serde_json::from_slice(&bytes).map_err(|e| VolumesError::Record {
            what: path.to_string(),
            reason: e.to_string(),
        })?;
        out.push(r);
    }
    out.sort_by(|a, b| a.handle.cmp(&b.handle));
    Ok(out)
}
