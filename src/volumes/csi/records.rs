//! The backup's CSI records in Velero's file names and shapes (`volumeinfo`, the
//! VolumeSnapshot, VolumeSnapshotContent and VolumeSnapshotClass lists), and reading them back.

use super::*;

/// One CSI snapshot of a backup: what `<name>-volumeinfo.json.gz` says about it (Velero's
/// `BackupVolumeInfo`, CSI fields) plus the objects as they were.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeInfo {
    /// The claim's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pvc_name: String,
    /// The claim's namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pvc_namespace: String,
    /// The PV's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pv_name: String,
    /// `CSISnapshot`, `PodVolumeBackup` (empty for a skipped volume).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub backup_method: String,
    /// Always false (tidemark does not move snapshot data).
    #[serde(default)]
    pub snapshot_data_moved: bool,
    /// Whether the local snapshot is kept (true for CSI snapshots).
    #[serde(default)]
    pub preserve_local_snapshot: bool,
    /// Whether the volume's data was skipped.
    #[serde(default)]
    pub skipped: bool,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub skipped_reason: String,
    /// When the snapshot was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<DateTime<Utc>>,
    /// When it became ready (or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<DateTime<Utc>>,
    /// `succeeded` or `failed`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub result: String,
    /// The CSI details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_snapshot_info: Option<CsiSnapshotInfo>,
    /// File-system backup details (Velero's `pvbInfo`), kept as read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvb_info: Option<Value>,
    /// PV details (`reclaimPolicy`, `labels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv_info: Option<Value>,
    /// tidemark: the error of a failed volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Fields tidemark does not interpret, kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Velero's `CSISnapshotInfo`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CsiSnapshotInfo {
    /// The storage system's snapshot id (`status.snapshotHandle` of the content).
    pub snapshot_handle: String,
    /// Size in bytes (`restoreSize`).
    #[serde(default)]
    pub size: i64,
    /// The CSI driver.
    pub driver: String,
    /// The VolumeSnapshotContent's name at backup time.
    #[serde(default)]
    pub vsc_name: String,
    /// Velero's async operation id (unused, empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operation_id: String,
    /// `status.readyToUse` of the snapshot (Velero writes this key capitalised).
    #[serde(
        rename = "ReadyToUse",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ready_to_use: Option<bool>,
    /// tidemark: the VolumeSnapshotClass used.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub volume_snapshot_class: String,
    /// tidemark: the VolumeSnapshot's name at backup time.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vs_name: String,
}

/// The CSI step's outcome for a backup.
#[derive(Clone, Debug, Default)]
pub struct CsiBackupOutcome {
    /// One entry per snapshotted claim (succeeded or failed).
    pub infos: Vec<VolumeInfo>,
    /// The VolumeSnapshots as last read (ready ones).
    pub snapshots: Vec<Value>,
    /// The VolumeSnapshotContents as last read (ready ones, `deletionPolicy: Retain`).
    pub contents: Vec<Value>,
    /// The classes used.
    pub classes: Vec<Value>,
    /// Snapshots attempted.
    pub attempted: usize,
    /// Snapshots completed.
    pub completed: usize,
    /// Failures as `(namespace, message)`.
    pub errors: Vec<(String, String)>,
}

/// Writes the CSI records of a backup into its folder (Velero's names; each a gzipped JSON
/// list): `-csi-volumesnapshots`, `-csi-volumesnapshotcontents`, `-csi-volumesnapshotclasses`
/// and `-volumeinfo` (the given entries: CSI, skipped, and any others the caller adds).
///
/// # Errors
/// [`VolumesError::Record`] naming the file that could not be written.
pub async fn write_records(
    store: &Store,
    backup: &str,
    out: &CsiBackupOutcome,
    volume_infos: &[VolumeInfo],
) -> Result<(), VolumesError> {
    let l = store.layout();
    let files = [
        (
            l.backup_csi_volume_snapshots(backup),
            gzip_json(&out.snapshots),
        ),
        (
            l.backup_csi_volume_snapshot_contents(backup),
            gzip_json(&out.contents),
        ),
        (
            l.backup_csi_volume_snapshot_classes(backup),
            gzip_json(&out.classes),
        ),
        (l.backup_volume_info(backup), gzip_json(&volume_infos)),
    ];
    for (path, body) in files {
        crate::volumes::put_record(store, &path, body).await?;
    }
    Ok(())
}

/// Reads a backup's volume information (`<name>-volumeinfo.json.gz`; `[]` when absent).
///
/// # Errors
/// [`VolumesError::Record`] when the file exists but cannot be read.
pub async fn read_volume_info(
    store: &Store,
    backup: &str,
) -> Result<Vec<VolumeInfo>, VolumesError> {
    Ok(
        crate::volumes::read_gz_list(store, &store.layout().backup_volume_info(backup))
            .await?
            .unwrap_or_default(),
    )
}

/// A snapshot to restore from or to delete: from `volumeinfo`, or, for backups without it
/// (older Velero), from the VolumeSnapshot and VolumeSnapshotContent lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRef {
    /// The claim's namespace at backup time.
    pub namespace: String,
    /// The claim's name.
    pub pvc: String,
    /// The PV's name at backup time.
    pub pv: String,
    /// The storage snapshot id.
    pub handle: String,
    /// The CSI driver.
    pub driver: String,
    /// Size in bytes (0 = unknown).
    pub size: i64,
    /// The VolumeSnapshotClass at backup time (may be empty).
    pub class: String,
    /// The VolumeSnapshot's name at backup time.
    pub vs_name: String,
}

/// The completed CSI snapshots of a backup.
///
/// # Errors
/// [`VolumesError::Record`] when a record file exists but cannot be read.
pub async fn read_snapshots(store: &Store, backup: &str) -> Result<Vec<SnapshotRef>, VolumesError> {
    let infos = read_volume_info(store, backup).await?;
    let mut out: Vec<SnapshotRef> = infos
        .iter()
        .filter(|i| i.backup_method == METHOD_CSI && i.result == "succeeded")
        .filter_map(|i| {
            let c = i.csi_snapshot_info.as_ref()?;
            (!c.snapshot_handle.is_empty()).then(|| SnapshotRef {
                namespace: i.pvc_namespace.clone(),
                pvc: i.pvc_name.clone(),
                pv: i.pv_name.clone(),
                handle: c.snapshot_handle.clone(),
                driver: c.driver.clone(),
                size: c.size,
                class: c.volume_snapshot_class.clone(),
                vs_name: c.vs_name.clone(),
            })
        })
        .collect();
    if !out.is_empty() || !infos.is_empty() {
        return Ok(out);
    }
    // No volumeinfo: pair the VolumeSnapshots with their contents.
    let l = store.layout();
    let vss: Vec<Value> =
        crate::volumes::read_gz_list(store, &l.backup_csi_volume_snapshots(backup))
            .await?
            .unwrap_or_default();
    let vscs: Vec<Value> =
        crate::volumes::read_gz_list(store, &l.backup_csi_volume_snapshot_contents(backup))
            .await?
            .unwrap_or_default();
    for vs in &vss {
        let s = |p: &str| {
            vs.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let bound = s("/status/boundVolumeSnapshotContentName");
        let Some(vsc) = vscs
            .iter()
            .find(|c| c.pointer("/metadata/name").and_then(Value::as_str) == Some(bound.as_str()))
        else {
            continue;
        };
        let Some(handle) = vsc
            .pointer("/status/snapshotHandle")
            .and_then(Value::as_str)
        else {
            continue;
        };
        out.push(SnapshotRef {
            namespace: s("/metadata/namespace"),
            pvc: s("/spec/source/persistentVolumeClaimName"),
            pv: String::new(),
            handle: handle.into(),
            driver: vsc
                .pointer("/spec/driver")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            size: size_bytes(vsc.pointer("/status/restoreSize"))
                .or_else(|| size_bytes(vs.pointer("/status/restoreSize")))
                .unwrap_or(0),
            class: s("/spec/volumeSnapshotClassName"),
            vs_name: s("/metadata/name"),
        });
    }
    Ok(out)
}
