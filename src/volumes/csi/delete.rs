//! Deleting a backup's storage snapshots through the external snapshotter.

use super::*;

/// Deletes the storage snapshots of a backup: for each recorded handle, a VolumeSnapshotContent
/// with `deletionPolicy: Delete`, bound to a VolumeSnapshot that never exists and marked as being
/// deleted ([`SNAPSHOT_BEING_DELETED_ANNOTATION`]) is created, given up to `wait` to be seen
/// ready and finalized by the snapshot controller, then deleted, and given up to `wait` more to
/// disappear — which it does once the CSI sidecar has deleted the storage snapshot. Any leftover
/// VolumeSnapshot/Content labelled with the backup's name is deleted too. Returns how many
/// snapshots were deleted.
///
/// # Errors
/// [`VolumesError::Record`] when the records cannot be read. Per-snapshot failures are returned
/// in the second element as messages.
pub async fn delete_snapshots(
    client: &Client,
    store: &Store,
    backup: &str,
    wait: Duration,
) -> Result<(usize, Vec<String>), VolumesError> {
    let snaps = snapshots_to_delete(store, backup).await?;
    let mut done = 0;
    let mut errors = Vec::new();
    let api = contents_api(client);
    for s in &snaps {
        let name = object_name(
            "tidemark-delete",
            &s.pvc,
            &format!("{backup}/{}/{}", s.namespace, s.handle),
        );
        let mut vsc = DynamicObject::new(&name, &resource("VolumeSnapshotContent"));
        vsc.metadata.labels = Some([(BACKUP_NAME_LABEL.to_string(), backup.to_string())].into());
        // The external snapshotter deletes the storage snapshot of a content only when the
        // content is bound (a VolumeSnapshot reference with a UID, which makes the snapshot
        // controller put its bound-protection finalizer on it) and marked as being deleted;
        // an unbound content would simply vanish, leaving the storage snapshot behind. The
        // reference names a VolumeSnapshot that never exists.
        vsc.metadata.annotations = Some(
            [(
                SNAPSHOT_BEING_DELETED_ANNOTATION.to_string(),
                "yes".to_string(),
            )]
            .into(),
        );
        vsc.data = json!({"spec": {
            "deletionPolicy": "Delete",
            "driver": s.driver,
            "source": {"snapshotHandle": s.handle},
            "volumeSnapshotRef": {
                "apiVersion": format!("{GROUP}/v1"),
                "kind": "VolumeSnapshot",
                "namespace": s.namespace,
                "name": name,
                "uid": uid_of(&name),
            },
        }});
        if !s.class.is_empty() {
            vsc.data["spec"]["volumeSnapshotClassName"] = json!(s.class);
        }
        if let Err(e) = create_or_keep(&api, &vsc).await {
            errors.push(format!(
                "snapshot {} of claim {}/{}: create VolumeSnapshotContent {name}: {e}",
                s.handle, s.namespace, s.pvc
            ));
            continue;
        }
        // Ready (the driver found the snapshot) and protected by the snapshot controller's
        // finalizer, so that deleting it goes through the driver.
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match api.get(&name).await {
                Ok(o)
                    if o.data
                        .pointer("/status/readyToUse")
                        .and_then(Value::as_bool)
                        == Some(true)
                        && !o.finalizers().is_empty() =>
                {
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await
            && !crate::cluster::is_not_found(&e)
        {
            errors.push(format!(
                "snapshot {}: delete VolumeSnapshotContent {name}: {e}",
                s.handle
            ));
            continue;
        }
        // Gone once the driver has deleted the storage snapshot.
        let mut gone = false;
        while !gone && Instant::now() < deadline + wait {
            match api.get_opt(&name).await {
                Ok(None) => gone = true,
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
        if gone {
            done += 1;
        } else {
            errors.push(format!(
                "snapshot {} of claim {}/{}: VolumeSnapshotContent {name} still present after {wait:?}: \
                 the CSI driver {} has not deleted the storage snapshot",
                s.handle, s.namespace, s.pvc, s.driver
            ));
        }
    }
    // Leftovers of an interrupted backup.
    let lp = ListParams::default().labels(&format!("{BACKUP_NAME_LABEL}={backup}"));
    if let Ok(list) = Api::<DynamicObject>::all_with(client.clone(), &resource("VolumeSnapshot"))
        .list(&lp)
        .await
    {
        for vs in list.items {
            let ns = vs.namespace().unwrap_or_default();
            let _ = snapshots_api(client, &ns)
                .delete(&vs.name_any(), &DeleteParams::default())
                .await;
        }
    }
    if let Ok(list) = api.list(&lp).await {
        for vsc in list.items {
            let _ = api.delete(&vsc.name_any(), &DeleteParams::default()).await;
        }
    }
    Ok((done, errors))
}

/// Deletion's step for CSI snapshots: deletes the backup's storage snapshots
/// ([`delete_snapshots`]). Returns how many were deleted (`0` for a backup without any).
///
/// # Errors
/// A message when the backup has snapshots but `client` is `None`, the records cannot be read,
/// or a snapshot could not be deleted: the caller must then keep the backup (its records are
/// the only reference to the storage snapshots).
pub async fn delete_for_backup(
    client: Option<&Client>,
    store: &Store,
    backup: &str,
) -> Result<usize, String> {
    let snaps = snapshots_to_delete(store, backup)
        .await
        .map_err(|e| e.to_string())?;
    if snaps.is_empty() {
        return Ok(0);
    }
    let Some(client) = client else {
        return Err(format!(
            "backup {backup:?} has {} CSI snapshot(s); deleting them needs a cluster connection",
            snaps.len()
        ));
    };
    let (n, errors) = delete_snapshots(client, store, backup, crate::volumes::phase::DELETE_WAIT)
        .await
        .map_err(|e| e.to_string())?;
    if errors.is_empty() {
        Ok(n)
    } else {
        Err(errors.join("; "))
    }
}

/// The storage snapshots a backup holds: those of its volume records ([`read_snapshots`]) and
/// those of its intent records ([`read_intents`]: a run that stopped before writing its volume
/// records), each once.
///
/// # Errors
/// [`VolumesError::Record`] when either cannot be read.
pub async fn snapshots_to_delete(
    store: &Store,
    backup: &str,
) -> Result<Vec<SnapshotRef>, VolumesError> {
    let mut snaps = read_snapshots(store, backup).await?;
    for i in read_intents(store, backup).await? {
        if !snaps
            .iter()
            .any(|s| s.handle == i.handle && s.driver == i.driver)
        {
            snaps.push(i);
        }
    }
    Ok(snaps)
}

/// Whether a backup recorded any completed CSI snapshot.
pub async fn has_snapshots(store: &Store, backup: &str) -> bool {
    read_snapshots(store, backup)
        .await
        .is_ok_and(|s| !s.is_empty())
}
