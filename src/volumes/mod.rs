//! Persistent volume data: choosing a method per pod volume, CSI snapshots, file-system backup.
//!
//! A backup takes the *objects* through the backup engine ([`crate::backup`]); this module takes
//! the *data* of the pods' volumes, as Velero does (DESIGN §7):
//!
//! - [`select`] decides, per volume of each backed-up pod, whether its data is skipped,
//!   snapshotted through CSI, or copied file by file by the node agent ([`VolumeMethod`]). The
//!   decision follows Velero's precedence: a matching volume policy ([`policy`], the YAML in the
//!   ConfigMap named by `--resource-policies-configmap`) wins; then the pod annotations
//!   `backup.velero.io/backup-volumes` (opt-in) / `backup.velero.io/backup-volumes-excludes`
//!   (opt-out, with `--default-volumes-to-fs-backup`); then `--snapshot-volumes`.
//! - `csi` takes `snapshot.storage.k8s.io/v1` VolumeSnapshots of the PVCs chosen for
//!   [`VolumeMethod::Snapshot`] and pre-provisions them again on restore.
//! - `fs`, `agent`, `podvolume`: file-system backup into restic repositories (`rustic_core`).
//!
//! The decision types here ([`VolumeChoice`], [`VolumeSettings`]) are shared by both methods.

pub mod agent;
pub mod csi;
pub mod fs;
pub mod phase;
pub mod podvolume;
pub mod policy;
pub mod report;
mod select;
mod settings;
pub mod snapshot_class;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use select::select;
pub use settings::{apply_template, configmap_ref, record_spec, template_of};

/// Velero's pod annotation listing the volumes to back up by file system (opt-in), comma-separated.
pub const BACKUP_VOLUMES_ANNOTATION: &str = "backup.velero.io/backup-volumes";
/// Velero's pod annotation listing the volumes *not* to back up by file system when
/// `--default-volumes-to-fs-backup` is set (opt-out), comma-separated.
pub const BACKUP_VOLUMES_EXCLUDES_ANNOTATION: &str = "backup.velero.io/backup-volumes-excludes";
/// Velero's default for `--csi-snapshot-timeout`: 10 minutes.
pub const DEFAULT_CSI_SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Reads a gzipped JSON list side file of a backup or restore (`<name>-volumeinfo.json.gz`,
/// `<name>-podvolumebackups.json.gz`, …): `None` when the file is absent; Velero's `null` (a nil
/// Go slice) reads as an empty list.
///
/// # Errors
/// [`VolumesError::Record`] naming the file when it cannot be read, is not gzip or is not a JSON
/// list of `T`.
pub(crate) async fn read_gz_list<T: serde::de::DeserializeOwned>(
    store: &crate::store::Store,
    path: &object_store::path::Path,
) -> Result<Option<Vec<T>>, VolumesError> {
    let bad = |reason: String| VolumesError::Record {
        what: path.to_string(),
        reason,
    };
    let bytes = match store.get(path).await {
        Ok(b) => b,
        Err(crate::store::StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let text = crate::report::gunzip(&bytes).map_err(|e| bad(format!("not gzip: {e}")))?;
    let list: Option<Vec<T>> = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    Ok(Some(list.unwrap_or_default()))
}

/// Writes a volume record file of a backup or restore.
///
/// # Errors
/// [`VolumesError::Record`] naming the file when the store refuses it.
pub(crate) async fn put_record(
    store: &crate::store::Store,
    path: &object_store::path::Path,
    body: bytes::Bytes,
) -> Result<(), VolumesError> {
    store
        .put(path, body, false)
        .await
        .map_err(|e| VolumesError::Record {
            what: path.to_string(),
            reason: e.to_string(),
        })
}

/// Errors of the volume phase (policies, snapshots, file-system backup).
#[derive(Debug, thiserror::Error)]
pub enum VolumesError {
    /// A volume policy document is not valid; `field` is the path of the field at fault
    /// (`volumePolicies[1].conditions.capacity`).
    #[error("volume policy: {field}: {reason}")]
    Policy {
        /// Path of the field at fault inside the document.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The ConfigMap named by `--resource-policies-configmap` is missing or unusable.
    #[error("resource policies ConfigMap {namespace}/{name}: {reason}")]
    PolicyConfigMap {
        /// Namespace of the ConfigMap.
        namespace: String,
        /// Name of the ConfigMap.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A Kubernetes API call failed; `what` names the object and the operation.
    #[error("{what}: {source}")]
    Kube {
        /// The operation and object (`create VolumeSnapshot ns/name`).
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A snapshot did not become ready within the timeout or failed.
    #[error("{what}: {reason}")]
    Snapshot {
        /// The object (`VolumeSnapshot ns/name`).
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A record in the backup folder could not be read or written.
    #[error("{what}: {reason}")]
    Record {
        /// The record (file name).
        what: String,
        /// Why.
        reason: String,
    },
}

/// How one pod volume's data is backed up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VolumeMethod {
    /// The data is not backed up (the objects still are).
    Skip,
    /// A CSI VolumeSnapshot of the PVC.
    Snapshot,
    /// A file-system copy by the node agent into the namespace's restic repository.
    FsBackup,
}

impl VolumeMethod {
    /// The name Velero's volume policies use for this method: `skip`, `snapshot`, `fs-backup`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Snapshot => "snapshot",
            Self::FsBackup => "fs-backup",
        }
    }
}

impl std::fmt::Display for VolumeMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The decision for one volume of one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeChoice {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The pod's `metadata.uid` (the kubelet's volume directory is `pods/<uid>/volumes/...`).
    pub pod_uid: String,
    /// `spec.nodeName` of the pod, when scheduled.
    pub node_name: Option<String>,
    /// The pod's volume name (`spec.volumes[].name`).
    pub volume: String,
    /// The claim name, for `persistentVolumeClaim` volumes (and generic ephemeral volumes,
    /// whose claim is `<pod>-<volume>`).
    pub pvc: Option<String>,
    /// The bound PersistentVolume's name, when the claim is bound.
    pub pv: Option<String>,
    /// The chosen method.
    pub method: VolumeMethod,
    /// Why, for logs and `describe --details`: `volume policy #2`, `pod annotation
    /// backup.velero.io/backup-volumes`, `hostPath volumes are never copied`, ...
    pub reason: String,
}

/// Volume settings of a backup (CLI flags / BackupPolicy `volumes:`).
#[derive(Clone, Debug)]
pub struct VolumeSettings {
    /// `--snapshot-volumes`: `None` = not set (snapshots are taken), `Some(false)` = no snapshots
    /// unless a volume policy asks for one.
    pub snapshot_volumes: Option<bool>,
    /// `--default-volumes-to-fs-backup`: every pod volume is copied by file system unless the
    /// pod's opt-out annotation lists it.
    pub default_volumes_to_fs_backup: bool,
    /// `--csi-snapshot-timeout`: how long to wait for a VolumeSnapshot to become ready.
    pub csi_snapshot_timeout: Duration,
    /// The parsed volume policies (`--resource-policies-configmap`), if any.
    pub policy: Option<policy::VolumePolicies>,
}

impl Default for VolumeSettings {
    fn default() -> Self {
        Self {
            snapshot_volumes: None,
            default_volumes_to_fs_backup: false,
            csi_snapshot_timeout: DEFAULT_CSI_SNAPSHOT_TIMEOUT,
            policy: None,
        }
    }
}
