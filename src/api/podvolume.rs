//! The records of file-system volume backup: [`PodVolumeBackup`] and [`PodVolumeRestore`]
//! (`tidemark.dev/v1alpha1`, namespaced, created in the tidemark namespace by the backup and
//! restore engines, carried out by the node agent of the pod's node).
//!
//! Names and fields mirror Velero's `velero.io/v1` PodVolumeBackup / PodVolumeRestore (Velero's
//! `pkg/apis/velero/v1/pod_volume_backup_types.go` and `pod_volume_restore_types.go`): `node`,
//! `pod`, `volume`, `backupStorageLocation`, `repoIdentifier`, `uploaderType`, `tags`,
//! `snapshotID`, status `phase`, `path`, `message`, timestamps and `progress`
//! (`totalBytes`/`bytesDone`). tidemark adds `locationUrl` (the store the agent opens; never
//! credentials) and file counts. The backup folder's `<name>-podvolumebackups.json.gz` holds
//! the finished records re-labelled as `velero.io/v1` objects, so Velero can read it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Label carrying the backup name on PodVolumeBackups (Velero's).
pub const BACKUP_NAME_LABEL: &str = "velero.io/backup-name";
/// Label carrying the restore name on PodVolumeRestores (Velero's).
pub const RESTORE_NAME_LABEL: &str = "velero.io/restore-name";
/// Label carrying the pod UID on both records (Velero's).
pub const POD_UID_LABEL: &str = "velero.io/pod-uid";
/// The uploader tidemark uses (Velero's `uploaderType` value for restic repositories).
pub const UPLOADER_RESTIC: &str = "restic";

/// Phases shared by both records (Velero's names).
pub mod phase {
    /// Created, not yet picked up by an agent.
    pub const NEW: &str = "New";
    /// The agent is copying data.
    pub const IN_PROGRESS: &str = "InProgress";
    /// Done.
    pub const COMPLETED: &str = "Completed";
    /// Failed; `status.message` says why.
    pub const FAILED: &str = "Failed";

    /// Whether a phase is final.
    pub fn is_done(phase: Option<&str>) -> bool {
        matches!(phase, Some(COMPLETED | FAILED))
    }
}

/// Bytes done out of the total (Velero's `DataMoveOperationProgress`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeProgress {
    /// Bytes to copy (known after the agent's scan).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<i64>,
    /// Bytes copied so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<i64>,
}

/// One pod volume to copy into the namespace's restic repository.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tidemark.dev",
    version = "v1alpha1",
    kind = "PodVolumeBackup",
    namespaced,
    status = "PodVolumeBackupStatus",
    shortname = "tmpvb",
    category = "tidemark",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"Pod","type":"string","jsonPath":".spec.pod.name"}"#,
    printcolumn = r#"{"name":"Volume","type":"string","jsonPath":".spec.volume"}"#,
    printcolumn = r#"{"name":"Bytes Done","type":"integer","jsonPath":".status.progress.bytesDone"}"#,
    printcolumn = r#"{"name":"Total Bytes","type":"integer","jsonPath":".status.progress.totalBytes"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PodVolumeBackupSpec {
    /// The node the pod runs on; only that node's agent acts.
    pub node: String,
    /// The pod (kind `Pod`, namespace, name, uid).
    pub pod: ObjectReference,
    /// The pod's volume name (`spec.volumes[].name`).
    pub volume: String,
    /// Name of the Location.
    pub backup_storage_location: String,
    /// The store URL of the Location (no credentials: the agent has its own).
    pub location_url: String,
    /// The restic repository, as the `restic` CLI names it (`s3:<endpoint>/<bucket>/<prefix>/restic/<ns>`
    /// or a local path).
    pub repo_identifier: String,
    /// Always `restic`.
    #[serde(default)]
    pub uploader_type: String,
    /// Tags written on the snapshot (`backup`, `ns`, `pod`, `pod-uid`, `volume`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Observed state of a [`PodVolumeBackup`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodVolumeBackupStatus {
    /// `New`, `InProgress`, `Completed`, `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The directory read on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The restic snapshot id (64 hex digits).
    #[serde(
        default,
        rename = "snapshotID",
        skip_serializing_if = "Option::is_none"
    )]
    pub snapshot_id: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Start (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// Completion (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<String>,
    /// Bytes done / total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<VolumeProgress>,
    /// Files read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_files: Option<i64>,
}

/// One snapshot to write into a restored pod's volume.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tidemark.dev",
    version = "v1alpha1",
    kind = "PodVolumeRestore",
    namespaced,
    status = "PodVolumeRestoreStatus",
    shortname = "tmpvr",
    category = "tidemark",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Pod","type":"string","jsonPath":".spec.pod.name"}"#,
    printcolumn = r#"{"name":"Volume","type":"string","jsonPath":".spec.volume"}"#,
    printcolumn = r#"{"name":"Bytes Done","type":"integer","jsonPath":".status.progress.bytesDone"}"#,
    printcolumn = r#"{"name":"Total Bytes","type":"integer","jsonPath":".status.progress.totalBytes"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PodVolumeRestoreSpec {
    /// The restored pod (kind `Pod`, namespace, name, uid). The agent of the pod's node acts.
    pub pod: ObjectReference,
    /// The pod's volume name.
    pub volume: String,
    /// Name of the Location.
    pub backup_storage_location: String,
    /// The store URL of the Location (no credentials).
    pub location_url: String,
    /// The restic repository (as in [`PodVolumeBackupSpec::repo_identifier`]).
    pub repo_identifier: String,
    /// Always `restic`.
    #[serde(default)]
    pub uploader_type: String,
    /// The snapshot to restore.
    #[serde(rename = "snapshotID")]
    pub snapshot_id: String,
    /// The namespace the data was backed up from (its repository is read).
    pub source_namespace: String,
}

/// Observed state of a [`PodVolumeRestore`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodVolumeRestoreStatus {
    /// `New`, `InProgress`, `Completed`, `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Start (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// Completion (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<String>,
    /// Bytes done / total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<VolumeProgress>,
    /// Files written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_files: Option<i64>,
}
