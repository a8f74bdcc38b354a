//! The `velero.io/v1` Backup and Restore shapes as stored in a bucket (`velero-backup.json`),
//! plus tidemark's side files.
//!
//! Source: Velero's API reference (`pkg/apis/velero/v1/backup_types.go`,
//! `restore_types.go`), format 1.1.0. Only the fields tidemark uses are typed; unknown fields
//! written by Velero are kept in `extra` so nothing is lost on a read-modify-write.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

/// `apiVersion` of Velero's records.
pub const API_VERSION: &str = "velero.io/v1";
/// Label Velero puts on backups naming their storage location.
pub const STORAGE_LOCATION_LABEL: &str = "velero.io/storage-location";
/// Label Velero puts on restored objects naming the backup.
pub const BACKUP_NAME_LABEL: &str = "velero.io/backup-name";
/// Label Velero puts on restored objects naming the restore.
pub const RESTORE_NAME_LABEL: &str = "velero.io/restore-name";
/// Label Velero puts on backups made by a schedule.
pub const SCHEDULE_NAME_LABEL: &str = "velero.io/schedule-name";
/// Objects and namespaces carrying this label set to `true` are never backed up.
pub const EXCLUDE_LABEL: &str = "velero.io/exclude-from-backup";
/// Annotation of a backup record: the source cluster's Kubernetes version (`v1.36.3`). This and
/// the two below are Velero's (`pkg/apis/velero/v1/labels_annotations.go`); Velero's restore
/// compares them with the target cluster's version.
pub const SOURCE_CLUSTER_GIT_VERSION_ANNOTATION: &str = "velero.io/source-cluster-k8s-gitversion";
/// Annotation of a backup record: the source cluster's major version (`1`).
pub const SOURCE_CLUSTER_MAJOR_VERSION_ANNOTATION: &str =
    "velero.io/source-cluster-k8s-major-version";
/// Annotation of a backup record: the source cluster's minor version (`36`).
pub const SOURCE_CLUSTER_MINOR_VERSION_ANNOTATION: &str =
    "velero.io/source-cluster-k8s-minor-version";

/// Reads `null` as the empty value: Velero 1.0 to 1.3 wrote unset lists and maps as `null`
/// (`"excludedNamespaces": null`) because their fields had no `omitempty`.
fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A Velero Backup record (`kind: Backup`, `apiVersion: velero.io/v1`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    /// Always `velero.io/v1`.
    pub api_version: String,
    /// Always `Backup`.
    pub kind: String,
    /// Name, namespace (`velero` in Velero's install, `tidemark` in tidemark's), labels.
    pub metadata: ObjectMeta,
    /// What was asked for.
    #[serde(default)]
    pub spec: BackupSpec,
    /// What happened.
    #[serde(default)]
    pub status: BackupStatus,
}

/// Velero's BackupSpec (the fields tidemark sets or reads).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// Namespace globs to include (`*` = all).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub included_namespaces: Vec<String>,
    /// Namespace globs to exclude.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_namespaces: Vec<String>,
    /// Resources to include (`*` = all).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub included_resources: Vec<String>,
    /// Resources to exclude.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_resources: Vec<String>,
    /// `true`, `false`, or absent (auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    /// Scoped filter: cluster-scoped resources to include (`*` = all).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub included_cluster_scoped_resources: Vec<String>,
    /// Scoped filter: cluster-scoped resources to exclude.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_cluster_scoped_resources: Vec<String>,
    /// Scoped filter: namespace-scoped resources to include (`*` = all).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub included_namespace_scoped_resources: Vec<String>,
    /// Scoped filter: namespace-scoped resources to exclude.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_namespace_scoped_resources: Vec<String>,
    /// Objects must match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Objects must match one of these selectors.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub or_label_selectors: Vec<LabelSelector>,
    /// Time to live, as a Go duration (`720h0m0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Name of the storage location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    /// Whether to snapshot volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<bool>,
    /// Map of `resource` to `ns/name` lists backed up first, in that order.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub ordered_resources: BTreeMap<String, String>,
    /// Fields tidemark does not interpret, kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Velero's BackupStatus.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// Backup format major version (1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Backup format version (`1.1.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format_version: Option<String>,
    /// When the backup may be garbage-collected (start + TTL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<DateTime<Utc>>,
    /// `New`, `InProgress`, `Completed`, `PartiallyFailed`, `Failed`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When the backup started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<DateTime<Utc>>,
    /// When the backup finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<DateTime<Utc>>,
    /// Number of warnings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<u64>,
    /// Number of errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    /// Why the backup failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Item counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<BackupProgress>,
    /// Fields tidemark does not interpret, kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Velero's BackupProgress.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupProgress {
    /// Items found to back up.
    #[serde(default)]
    pub total_items: u64,
    /// Items written to the archive.
    #[serde(default)]
    pub items_backed_up: u64,
}

impl Backup {
    /// A new record named `name`.
    pub fn new(name: &str, namespace: &str) -> Self {
        Self {
            api_version: API_VERSION.into(),
            kind: "Backup".into(),
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// The record's name (empty if unset).
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// The phase, `""` if unset.
    pub fn phase(&self) -> &str {
        self.status.phase.as_deref().unwrap_or_default()
    }
}

/// tidemark's own metadata stored beside `velero-backup.json` (Velero ignores it).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TidemarkBackupMeta {
    /// sha256 of `<name>.tar.gz`, hex.
    pub archive_sha256: String,
    /// Size of `<name>.tar.gz`, bytes.
    pub archive_bytes: u64,
    /// Items in the archive.
    pub items: u64,
    /// The tidemark version that wrote it.
    pub tidemark_version: String,
    /// The Git revision of the policy that caused it (`main@sha1:<hex>`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
}

/// tidemark's Restore record, shaped like a `velero.io/v1` Restore, stored in the restore folder.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Restore {
    /// Always `velero.io/v1`.
    pub api_version: String,
    /// Always `Restore`.
    pub kind: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// What was asked for.
    #[serde(default)]
    pub spec: RestoreSpec,
    /// What happened.
    #[serde(default)]
    pub status: RestoreStatus,
}

/// Velero's RestoreSpec (the fields tidemark uses).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// The backup restored from.
    pub backup_name: String,
    /// Namespace globs to include.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub included_namespaces: Vec<String>,
    /// Namespace globs to exclude.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_namespaces: Vec<String>,
    /// Resources to include.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub included_resources: Vec<String>,
    /// Resources to exclude.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_resources: Vec<String>,
    /// Source namespace → target namespace.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub namespace_mapping: BTreeMap<String, String>,
    /// Objects must match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// `none` or `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_resource_policy: Option<String>,
    /// Velero's restore hooks (`resources[]`), as the restore was asked to run them.
    #[serde(default, skip_serializing_if = "crate::hooks::RestoreHooks::is_empty")]
    pub hooks: crate::hooks::RestoreHooks,
}

/// Velero's RestoreStatus.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// `InProgress`, `Completed`, `PartiallyFailed`, `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When the restore started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<DateTime<Utc>>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<DateTime<Utc>>,
    /// Number of warnings.
    #[serde(default)]
    pub warnings: u64,
    /// Number of errors.
    #[serde(default)]
    pub errors: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Item counters (`totalItems`, `itemsRestored`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RestoreProgress>,
    /// Fields tidemark does not interpret, kept as read.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Velero's RestoreProgress.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreProgress {
    /// Items considered.
    #[serde(default)]
    pub total_items: u64,
    /// Items created or updated.
    #[serde(default)]
    pub items_restored: u64,
}

impl Restore {
    /// A new record named `name` restoring `backup`.
    pub fn new(name: &str, namespace: &str, backup: &str) -> Self {
        Self {
            api_version: API_VERSION.into(),
            kind: "Restore".into(),
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            spec: RestoreSpec {
                backup_name: backup.into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

/// Formats a duration as Go's `time.Duration.String()` does for whole seconds (`720h0m0s`),
/// the form Velero stores TTLs in.
pub fn go_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_matches_velero_ttl_form() {
        assert_eq!(
            go_duration(std::time::Duration::from_secs(720 * 3600)),
            "720h0m0s"
        );
        assert_eq!(go_duration(std::time::Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(std::time::Duration::from_secs(5)), "5s");
    }

    #[test]
    fn velero_1_0_backup_with_null_fields_parses() {
        // Velero 1.0 to 1.3 had no `omitempty` on these fields and wrote them as null.
        let json = r#"{"kind":"Backup","apiVersion":"velero.io/v1","metadata":{"name":"old",
          "namespace":"velero","creationTimestamp":"2020-01-01T00:00:00Z"},
          "spec":{"includedNamespaces":["*"],"excludedNamespaces":null,"includedResources":null,
          "excludedResources":null,"labelSelector":null,"ttl":"720h0m0s",
          "includeClusterResources":null,"hooks":{"resources":null},"storageLocation":"default",
          "volumeSnapshotLocations":null},
          "status":{"version":1,"expiration":"2020-01-31T00:00:00Z","phase":"Completed",
          "validationErrors":null,"startTimestamp":"2020-01-01T00:00:00Z",
          "completionTimestamp":"2020-01-01T00:00:09Z","volumeSnapshotsAttempted":0,
          "volumeSnapshotsCompleted":0,"warnings":0,"errors":0}}"#;
        let b: Backup = serde_json::from_str(json).unwrap();
        assert_eq!(b.phase(), "Completed");
        assert_eq!(b.spec.included_namespaces, vec!["*"]);
        assert!(b.spec.excluded_namespaces.is_empty());
        assert!(b.spec.label_selector.is_none());
        assert_eq!(b.status.format_version, None);
    }

    #[test]
    fn velero_written_backup_parses_and_keeps_unknown_fields() {
        let json = r#"{"kind":"Backup","apiVersion":"velero.io/v1","metadata":{"name":"nightly",
          "namespace":"velero","labels":{"velero.io/storage-location":"default"}},
          "spec":{"includedNamespaces":["*"],"ttl":"720h0m0s","storageLocation":"default",
          "hooks":{},"defaultVolumesToFsBackup":false,"csiSnapshotTimeout":"10m0s"},
          "status":{"version":1,"formatVersion":"1.1.0","expiration":"2026-12-01T00:00:00Z",
          "phase":"Completed","startTimestamp":"2026-11-01T00:00:00Z",
          "completionTimestamp":"2026-11-01T00:01:00Z","progress":{"totalItems":10,"itemsBackedUp":10},
          "hookStatus":{}}}"#;
        let b: Backup = serde_json::from_str(json).unwrap();
        assert_eq!(b.name(), "nightly");
        assert_eq!(b.phase(), "Completed");
        assert_eq!(b.spec.ttl.as_deref(), Some("720h0m0s"));
        assert!(b.spec.extra.contains_key("csiSnapshotTimeout"));
        let again = serde_json::to_value(&b).unwrap();
        assert_eq!(again["status"]["hookStatus"], serde_json::json!({}));
        assert_eq!(again["status"]["progress"]["itemsBackedUp"], 10);
    }
}
