//! tidemark's own API, group `tidemark.dev`, version `v1alpha1` (DESIGN §2).
//!
//! Authored in Git (desired state): [`Location`], [`BackupPolicy`], [`Schedule`],
//! [`RestorePlan`]. Created by tidemark (records): [`Backup`] and [`Restore`], one per run, with
//! Velero's phases and counters. Every status carries `observedGeneration` and `conditions`
//! (`metav1.Condition`, list-map keyed by `type`) so kstatus, Flux and Argo CD judge health
//! right; see [`super::conditions`].
//!
//! Durations (`ttl`, `syncPeriod`, `validationPeriod`) are Go-style strings (`720h`, `1m30s`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group.
pub const GROUP: &str = "tidemark.dev";
/// The API version.
pub const VERSION: &str = "v1alpha1";

/// Object-store provider of a [`Location`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// A directory on the controller's filesystem (`bucket` is the absolute path).
    Filesystem,
    /// Amazon S3 or an S3-compatible store (Velero's `velero.io/aws`).
    #[default]
    S3,
    /// Azure Blob Storage (Velero's `velero.io/azure`): `bucket` is the blob container,
    /// `config.storageAccount` its storage account.
    Azure,
    /// Google Cloud Storage (Velero's `velero.io/gcp`).
    Gcp,
}

/// Whether a location may be written (Velero's `accessMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AccessMode {
    /// Backups are written, deleted and expired.
    #[default]
    ReadWrite,
    /// Sync and restore only: nothing is ever written or deleted.
    ReadOnly,
}

/// A key of a Secret in the controller's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key within the Secret. What its value holds depends on the field referring to it: for a
    /// restore drill's `kubeconfigSecretRef`, a kubeconfig; for a Location's `credential`, the
    /// provider's credentials file, as in Velero: for S3 an AWS shared-credentials file
    /// (`[default]` with `aws_access_key_id` and `aws_secret_access_key`); for Azure
    /// `KEY=VALUE` lines (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
    /// `AZURE_CLOUD_NAME`, the storage account key under the name
    /// `config.storageAccountKeyEnvVar` gives); for GCS a service-account key (JSON).
    pub key: String,
}

/// An object store where backups live.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tidemark.dev",
    version = "v1alpha1",
    kind = "Location",
    namespaced,
    status = "LocationStatus",
    shortname = "loc",
    category = "tidemark",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Bucket","type":"string","jsonPath":".spec.bucket"}"#,
    printcolumn = r#"{"name":"Access","type":"string","jsonPath":".spec.accessMode"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Default","type":"boolean","jsonPath":".spec.default"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LocationSpec {
    /// The provider.
    #[serde(default)]
    pub provider: Provider,
    /// Bucket name (S3, GCS), blob container (Azure) or absolute directory (filesystem).
    #[x_kube(validation = Rule::new("self != ''").message("bucket must not be empty"))]
    pub bucket: String,
    /// Prefix inside the bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Provider settings, Velero's keys: S3 `region`, `s3Url`, `s3ForcePathStyle`,
    /// `insecureSkipTLSVerify`, `profile`, `checksumAlgorithm` (any algorithm sends SHA-256
    /// checksums; set for `objectLock`); Azure `storageAccount` (required),
    /// `storageAccountKeyEnvVar`, `useAAD`, `storageAccountURI`, `activeDirectoryAuthorityURI`,
    /// `blockSizeInBytes`, `resourceGroup`, `subscriptionId`; GCS `storeEndpoint`,
    /// `universeDomain`, `serviceAccount`. Unknown keys, and keys tidemark cannot honour, make
    /// the Location Stalled with a message naming them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Credentials, from a Secret in the controller's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SecretKeyRef>,
    /// PEM bundle to trust for the store's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
    /// `ReadWrite` (default) or `ReadOnly`.
    #[serde(default)]
    pub access_mode: AccessMode,
    /// The location used when a policy names none (at most one should be default).
    #[serde(default)]
    pub default: bool,
    /// How often to sync records from the store (`1m`; `0` disables). Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_period: Option<String>,
    /// How often to validate the store (`1m`; `0` disables). Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_period: Option<String>,
    /// Client-side encryption of the backups written here (age format); off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<LocationEncryption>,
    /// Immutable backups with S3 Object Lock (S3 locations on a bucket created with Object Lock
    /// enabled); off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<LocationObjectLock>,
}

/// S3 Object Lock for a Location's backups: every file of a backup is written once and retained
/// until the backup's expiration (its TTL), so neither a stolen store credential nor a
/// compromised cluster can delete or replace it before then. Expiry of a backup that is still
/// retained waits (condition `ExpiryBlocked`, reason `Retained`) and `backup delete` says until
/// when. The bucket must have been created with Object Lock (which turns versioning on): the
/// Location is `Unavailable` otherwise. Deleting a backup deletes all its object versions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocationObjectLock {
    /// `Governance` (default: users granted `s3:BypassGovernanceRetention` may still remove a
    /// retention) or `Compliance` (nobody can, the account's root user included).
    #[serde(default)]
    pub mode: ObjectLockMode,
}

/// S3 Object Lock's retention modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ObjectLockMode {
    /// S3's `GOVERNANCE`.
    #[default]
    Governance,
    /// S3's `COMPLIANCE`.
    Compliance,
}

impl From<ObjectLockMode> for crate::store::LockMode {
    fn from(m: ObjectLockMode) -> Self {
        match m {
            ObjectLockMode::Governance => crate::store::LockMode::Governance,
            ObjectLockMode::Compliance => crate::store::LockMode::Compliance,
        }
    }
}

/// Client-side encryption of a Location's backups in the age format
/// (<https://age-encryption.org/v1>): every file but `velero-backup.json` is encrypted, so a
/// leaked bucket leaks no Secret, and the plain `age` command decrypts them. Velero cannot read
/// encrypted backups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocationEncryption {
    /// A Secret in the controller's namespace holding the key: key `identity` (age X25519
    /// identities, `AGE-SECRET-KEY-1...` one per line, as `age-keygen` writes them: backups are
    /// encrypted to their public keys and decrypted with any of them) or key `passphrase`.
    /// Other keys are ignored here; the same Secret may hold the restic repositories' password
    /// of pod volume data under key `repository-password` (Velero's key name), used when the
    /// controller is installed with `tidemark install --repo-password-secret <this Secret>`
    /// (Helm: `repository.existingSecret`).
    pub secret_name: String,
    /// More recipients (`age1...` public keys) every backup is also encrypted to: a key being
    /// rotated in, or an escrow key kept elsewhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

/// Observed state of a [`Location`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocationStatus {
    /// `Available` or `Unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Last successful validation (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_validation_time: Option<String>,
    /// Last successful sync (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_time: Option<String>,
    /// Sanitised reason when unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// What to back up and how: the options of `velero backup create`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!(has(self.labelSelector) && has(self.orLabelSelectors) && size(self.orLabelSelectors) > 0)"
).message("labelSelector and orLabelSelectors cannot be used together"))]
#[x_kube(validation = Rule::new(
    "!((has(self.includedResources) || has(self.excludedResources) || has(self.includeClusterResources)) && \
     (has(self.includedClusterScopedResources) || has(self.excludedClusterScopedResources) || \
      has(self.includedNamespaceScopedResources) || has(self.excludedNamespaceScopedResources)))"
).message("includedResources/excludedResources/includeClusterResources cannot be mixed with the scoped resource filters"))]
pub struct BackupSpecTemplate {
    /// Namespace globs to include (default all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespace globs to exclude.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Resources to include (old style).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources to exclude (old style).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// `true`, `false`, or unset (auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    /// Scoped filter: cluster-scoped resources to include.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_cluster_scoped_resources: Vec<String>,
    /// Scoped filter: cluster-scoped resources to exclude.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_cluster_scoped_resources: Vec<String>,
    /// Scoped filter: namespace-scoped resources to include.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespace_scoped_resources: Vec<String>,
    /// Scoped filter: namespace-scoped resources to exclude.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespace_scoped_resources: Vec<String>,
    /// Objects must match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Objects must match one of these selectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub or_label_selectors: Vec<LabelSelector>,
    /// Resource → `ns/name,...` backed up first, in that order.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ordered_resources: BTreeMap<String, String>,
    /// Location name (default: the default Location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Time to live (`720h`; default 720h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// How the data of persistent volumes is backed up (default: CSI snapshots of claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<VolumesTemplate>,
    /// Also back up Events (`events`, `events.events.k8s.io`) of the included namespaces, as
    /// Velero does, for forensics (default false). They are never restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_events: Option<bool>,
    /// Velero's backup hooks (`resources[]`: pods selected by namespace, resource and labels,
    /// `pre`/`post` exec hooks run around the backup of their volumes). Pod annotations
    /// (`pre.hook.backup.velero.io/…`) need nothing here; a pod's annotation hook replaces these.
    /// See the README's Hooks section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<crate::hooks::BackupHooks>,
}

/// Volume data settings of a backup (`spec.template.volumes`), after `velero backup create`'s
/// `--snapshot-volumes`, `--default-volumes-to-fs-backup`, `--csi-snapshot-timeout` and
/// `--resource-policies-configmap`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumesTemplate {
    /// Take CSI snapshots of claims (unset = yes; `false` = only where a volume policy says
    /// `snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_volumes: Option<bool>,
    /// Copy every pod volume by file system unless the pod opts it out
    /// (`backup.velero.io/backup-volumes-excludes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_fs_backup: Option<bool>,
    /// How long to wait for each VolumeSnapshot to become ready (Go duration, default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csi_snapshot_timeout: Option<String>,
    /// Name of a ConfigMap in the policy's namespace holding Velero volume policies (one data
    /// entry, `version: v1` + `volumePolicies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_policy: Option<String>,
}

/// A reusable backup definition.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tidemark.dev",
    version = "v1alpha1",
    kind = "BackupPolicy",
    namespaced,
    status = "PolicyStatus",
    shortname = "bp",
    category = "tidemark",
    printcolumn = r#"{"name":"Location","type":"string","jsonPath":".spec.template.location"}"#,
    printcolumn = r#"{"name":"TTL","type":"string","jsonPath":".spec.template.ttl"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicySpec {
    /// What to back up.
    pub template: BackupSpecTemplate,
    /// Which of the backups of the Schedules using this policy to keep (grandfather-father-son);
    /// a Schedule's own `retention` replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// Grandfather-father-son retention of a Schedule's backups, as restic's `forget --keep-*`:
/// the newest `keepLast` backups, plus the newest backup of each of the last `hourly` hours,
/// `daily` days, `weekly` ISO weeks, `monthly` months and `yearly` years that have a backup,
/// periods read in the Schedule's time zone. A backup kept by any rule is kept; the Schedule's
/// other `Completed` backups in its Location are deleted as an expired backup is. Backups in
/// other phases are left to their TTL, which still bounds every backup. Counts are numbers of
/// backups (`keepLast`) or periods; an unset or 0 rule keeps nothing by itself, and at least one
/// rule must keep something.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retention {
    /// The newest N backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// The newest backup of each of the last N hours with backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hourly: Option<u32>,
    /// The newest backup of each of the last N days with backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    /// The newest backup of each of the last N ISO weeks (Monday to Sunday) with backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    /// The newest backup of each of the last N months with backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
    /// The newest backup of each of the last N years with backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yearly: Option<u32>,
}

/// Observed state of a [`BackupPolicy`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// When to back up: a cron schedule of a policy (or an inline template, as in Velero).
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "tidemark.dev",
    version = "v1alpha1",
    kind = "Schedule",
    namespaced,
    status = "ScheduleStatus",
    shortname = "sched",
    category = "tidemark",
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Paused","type":"boolean","jsonPath":".spec.paused"}"#,
    printcolumn = r#"{"name":"Last Backup","type":"date","jsonPath":".status.lastBackup"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.policy) != has(self.template)")
    .message("exactly one of policy and template must be set"))]
pub struct ScheduleSpec {
    /// A cron expression (5 fields, or 6 with seconds; `@daily` etc.), as Velero accepts.
    #[x_kube(validation = Rule::new("self != ''").message("schedule must not be empty"))]
    pub schedule: String,
    /// IANA time zone the schedule is read in (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Name of a BackupPolicy in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// An inline backup definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<BackupSpecTemplate>,
    /// No backups while paused.
    #[serde(default)]
    pub paused: bool,
    /// Do not back up right away when the schedule is created or unpaused.
    #[serde(default)]
    pub skip_immediately: bool,
    /// Give the schedule's backups an owner reference to it.
    #[serde(default)]
    pub use_owner_references_in_backup: bool,
    /// Which of its backups to keep (grandfather-father-son); replaces the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Prove each of its backups restores (a restore drill once it completes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
}

/// Observed state of a [`Schedule`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// `Enabled`, `Paused` or `FailedValidation` (Velero's phases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// When the last backup was started (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<String>,
    /// Name of the last backup started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup_name: Option<String>,
    /// When the next backup is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Resources whose status is restored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatusSpec {
    /// Resources whose status is restored (`*` for all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources whose status is never restored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
}

/// What to restore: the options of `velero restore create`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.backupName) != has(self.scheduleName)")
    .message("exactly one of backupName and scheduleName must be set"))]
pub struct RestoreSpecTemplate {
    /// The backup to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_name: Option<String>,
    /// Restore the latest Completed backup of this schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_name: Option<String>,
    /// Location to read from (default: the default Location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Namespace globs to restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    /// Namespace globs not to restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Resources to restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    /// Resources not to restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    /// `true`, `false`, or unset (auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_cluster_resources: Option<bool>,
    /// Source namespace → target namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_mapping: BTreeMap<String, String>,
    /// Objects must match this selector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Objects must match one of these selectors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub or_label_selectors: Vec<LabelSelector>,
    /// `none` (default) or `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 'none' || self == 'update'")
        .message("existingResourcePolicy must be none or update"))]
    pub existing_resource_policy: Option<String>,
    /// Restore PersistentVolumes (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_p_vs: Option<bool>,
    /// Keep Service nodePorts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_node_ports: Option<bool>,
    /// Resources whose status is restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_status: Option<RestoreStatusSpec>,
    /// Name of a ConfigMap (controller namespace) holding resource modifiers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_modifier: Option<String>,
    /// Velero's restore hooks (`resources[]`: pods selected by target namespace, resource and
    /// labels; `postHooks[]` adding init containers or running exec hooks once the restored
    /// container is up). Pod annotations (`init.hook.restore.velero.io/…`,
    /// `post.hook.restore.velero.io/…`) need nothing here. See the README's Hooks section.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<crate::hooks::RestoreHooks>,
}

/// A reviewed restore: runs once per distinct spec.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tidemark.dev",
    version = "v1alpha1",
    kind = "RestorePlan",
    namespaced,
    status = "RestorePlanStatus",
    shortname = "rp",
    category = "tidemark",
    printcolumn = r#"{"name":"Backup","type":"string","jsonPath":".spec.template.backupName"}"#,
    printcolumn = r#"{"name":"Restore","type":"string","jsonPath":".status.restoreName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RestorePlanSpec {
    /// What to restore.
    pub template: RestoreSpecTemplate,
}

/// Preview counts of a restore plan.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewCounts {
    /// Objects that would be created.
    pub create: i64,
    /// Objects that would be updated.
    pub update: i64,
    /// Objects already equal.
    pub skip: i64,
    /// Objects that exist and differ (left unchanged under `none`).
    pub conflict: i64,
}

/// Observed state of a [`RestorePlan`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestorePlanStatus {
    /// Hash of the spec that ran (a plan runs once per distinct spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_hash: Option<String>,
    /// The Restore record created for that spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_name: Option<String>,
    /// The Restore's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// What the restore would do (before it ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<PreviewCounts>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A backup run (created by tidemark, or by a user to ask for one).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tidemark.dev",
    version = "v1alpha1",
    kind = "Backup",
    namespaced,
    status = "BackupStatus",
    shortname = "tmbackup",
    category = "tidemark",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Errors","type":"integer","jsonPath":".status.errors"}"#,
    printcolumn = r#"{"name":"Warnings","type":"integer","jsonPath":".status.warnings"}"#,
    printcolumn = r#"{"name":"Items","type":"integer","jsonPath":".status.progress.itemsBackedUp"}"#,
    printcolumn = r#"{"name":"Created","type":"date","jsonPath":".status.startTimestamp"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".status.expiration"}"#,
    printcolumn = r#"{"name":"Location","type":"string","jsonPath":".spec.template.location"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    /// What to back up.
    #[serde(default)]
    pub template: BackupSpecTemplate,
    /// The policy it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The schedule that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Prove the backup restores once it completes: a restore drill ([`VerifySpec`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifySpec>,
}

/// A restore drill run right after a backup completes: its namespaced objects are restored by
/// the restore engine into scratch namespaces (`<namespacePrefix><namespace>`), compared with
/// the archive, and the scratch namespaces deleted. The result is the Backup's `Verified`
/// condition and `status.verification`. The drill runs in the controller's own cluster, or in
/// another one (`kubeconfigSecretRef`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.namespacePrefix) || self.namespacePrefix != '' || has(self.kubeconfigSecretRef)"
).message(
    "an empty namespacePrefix is allowed only with kubeconfigSecretRef (a drill in another \
     cluster): in the controller's cluster it would restore over the live namespaces"
).field_path(".namespacePrefix"))]
pub struct VerifySpec {
    /// Prefix of the scratch namespaces (default `drill-`; give schedules whose backups share
    /// namespaces different prefixes, so their drills never meet). It may be empty (`""`, the
    /// backup's own namespace names) only with `kubeconfigSecretRef`: in the controller's own
    /// cluster that would restore over the live namespaces, and the drill is refused. Even in
    /// another cluster, an empty prefix refuses namespaces that cluster already has (they
    /// would be deleted after the drill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_prefix: Option<String>,
    /// Run the drill in another cluster (a disaster-recovery or staging cluster) instead of the
    /// controller's own: a Secret in the controller's namespace whose key holds a kubeconfig
    /// (YAML, as `kubectl config view --minify --flatten` prints it: certificates and keys
    /// inline, since the controller has no files of that cluster; its current context is
    /// used). The drill's restore, its comparison with the archive and the deletion of the
    /// scratch namespaces all run in that cluster with that kubeconfig's credentials, which
    /// need to create and delete namespaces and create and read the backup's kinds there.
    /// The drill's restore record (log, results) is written to the backup's Location as any
    /// restore's; the outcome is on this Backup as usual. A missing Secret or key, a kubeconfig
    /// that does not parse, or a cluster that cannot be reached makes the Backup
    /// `Verified=False` with a message naming the Secret and key (never their content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<SecretKeyRef>,
}

/// The outcome of a Backup's restore drill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// Every object came back equal to the archive.
    pub verified: bool,
    /// Objects restored and equal.
    pub equal: i64,
    /// Objects that did not come back (the first 20, `resource namespace/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Objects that came back different (the first 20).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub different: Vec<String>,
    /// When the drill ended (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<String>,
}

/// Observed state of a [`Backup`] (Velero's BackupStatus fields plus conditions).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    /// `New`, `InProgress`, `Completed`, `PartiallyFailed`, `Failed`, `FailedValidation`,
    /// `Deleting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Start (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// Completion (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<String>,
    /// Expiry (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    /// Items backed up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_backed_up: Option<i64>,
    /// Item counters, updated while the backup runs (every 5 s at most, when they changed) and
    /// final once it ends: Velero's `status.progress` (velero.io/v1 Backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<BackupProgress>,
    /// Warnings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<i64>,
    /// Errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Archive size, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_bytes: Option<i64>,
    /// Git revision of the policy that caused it (`main@sha1:<hex>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The restore drill's outcome, when the Backup asked for one (`spec.verify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationStatus>,
    /// Velero's hook counters (`hooksAttempted`, `hooksFailed`) of the backup's pre and post
    /// hooks; each hook's outcome is in `tidemark backup describe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_status: Option<crate::hooks::HookStatus>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Item counters of a backup: Velero's `BackupProgress` (velero.io/v1 Backup `status.progress`,
/// same field names).
///
/// tidemark streams each object into the archive as it is listed, so it does not know the total
/// before the end: while the backup runs, `totalItems` is the number of items listed so far and
/// equals `itemsBackedUp`; once it ends both are the exact count of items in the archive
/// (`status.itemsBackedUp`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupProgress {
    /// Items to back up: those listed so far while the backup runs, all of them at the end.
    #[serde(default)]
    pub total_items: i64,
    /// Items written to the archive so far.
    #[serde(default)]
    pub items_backed_up: i64,
}

/// Item counters of a restore: Velero's `RestoreProgress` (velero.io/v1 Restore
/// `status.progress`, same field names).
///
/// `totalItems` is known once the backup has been read and the restore planned (before anything
/// is created); `itemsRestored` counts, as Velero does, every item processed so far — created,
/// updated, left as it was (existing, or skipped by rule) or failed — so it equals `totalItems`
/// when the restore ends. `status.created`, `updated` and `skipped` tell them apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreProgress {
    /// Items in the restore plan.
    #[serde(default)]
    pub total_items: i64,
    /// Items processed so far (created, updated, skipped or failed).
    #[serde(default)]
    pub items_restored: i64,
}

/// A restore run.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "tidemark.dev",
    version = "v1alpha1",
    kind = "Restore",
    namespaced,
    status = "RestoreStatus",
    shortname = "tmrestore",
    category = "tidemark",
    printcolumn = r#"{"name":"Backup","type":"string","jsonPath":".spec.template.backupName"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Errors","type":"integer","jsonPath":".status.errors"}"#,
    printcolumn = r#"{"name":"Warnings","type":"integer","jsonPath":".status.warnings"}"#,
    printcolumn = r#"{"name":"Items Restored","type":"integer","jsonPath":".status.progress.itemsRestored"}"#,
    printcolumn = r#"{"name":"Total Items","type":"integer","jsonPath":".status.progress.totalItems"}"#,
    printcolumn = r#"{"name":"Created","type":"date","jsonPath":".status.startTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    /// What to restore.
    pub template: RestoreSpecTemplate,
    /// The plan it came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
}

/// Observed state of a [`Restore`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    /// `New`, `InProgress`, `Completed`, `PartiallyFailed`, `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Start (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// Completion (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<String>,
    /// Objects created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Objects updated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
    /// Objects skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<i64>,
    /// Item counters, updated while the restore runs (every 5 s at most, when they changed) and
    /// final once it ends: Velero's `status.progress` (velero.io/v1 Restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RestoreProgress>,
    /// Warnings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<i64>,
    /// Errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Velero's hook counters (`hooksAttempted`, `hooksFailed`) of the restore's exec hooks;
    /// each hook's outcome is in `tidemark restore describe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook_status: Option<crate::hooks::HookStatus>,
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Every CRD of the API, in apply order.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![
        Location::crd(),
        BackupPolicy::crd(),
        Schedule::crd(),
        RestorePlan::crd(),
        Backup::crd(),
        Restore::crd(),
        super::gitsource::GitSource::crd(),
        super::podvolume::PodVolumeBackup::crd(),
        super::podvolume::PodVolumeRestore::crd(),
    ]
}

/// The CRDs as one multi-document YAML stream (the content of `crds/tidemark.dev.yaml`).
///
/// # Errors
/// Serialization errors (none in practice).
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out =
        String::from("# Generated by `tidemark crds` from src/api/tidemark.rs; do not edit.\n");
    for c in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&c)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_have_status_columns_short_names_and_rules() {
        let all = crds();
        assert_eq!(all.len(), 9);
        for c in &all {
            let v = &c.spec.versions[0];
            assert!(
                v.subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some(),
                "{}",
                c.spec.names.kind
            );
            assert!(
                !v.additional_printer_columns
                    .as_deref()
                    .unwrap_or_default()
                    .is_empty()
            );
            assert!(
                c.spec
                    .names
                    .short_names
                    .as_ref()
                    .is_some_and(|s| !s.is_empty())
            );
            assert_eq!(c.spec.group, GROUP);
        }
        let yaml = crds_yaml().unwrap();
        assert!(yaml.contains("x-kubernetes-validations"));
        assert!(yaml.contains("exactly one of policy and template must be set"));
        assert!(yaml.contains("x-kubernetes-list-map-keys"));
    }

    #[test]
    fn crd_yaml_in_the_repository_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/tidemark.dev.yaml");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == crds_yaml().unwrap(),
            "crds/tidemark.dev.yaml is stale: run `cargo run -- crds > crds/tidemark.dev.yaml`"
        );
    }
}
