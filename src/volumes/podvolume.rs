//! The engine side of file-system volume backup: the backup engine creates one
//! [`PodVolumeBackup`] per volume chosen [`VolumeMethod::FsBackup`] and waits for the node
//! agents ([`back_up_volumes`]); the backup folder gets `<name>-podvolumebackups.json.gz`
//! (Velero's file: a gzipped JSON list of `velero.io/v1` PodVolumeBackups). The restore engine
//! reads that file ([`read_records`]), gives each restored pod with backed-up volumes the
//! `tidemark-restore-wait` init container ([`add_restore_wait`]) and, once the pod exists, one
//! [`PodVolumeRestore`] per volume ([`create_restores`]), then waits for them
//! ([`wait_restores`]). Expiry forgets the backup's snapshots ([`forget_backup`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::fs::{RepoPassword, ResticRepo};
use super::{VolumeChoice, VolumeMethod, VolumesError};
use crate::api::podvolume::{
    BACKUP_NAME_LABEL, POD_UID_LABEL, PodVolumeBackup, PodVolumeBackupSpec, PodVolumeBackupStatus,
    PodVolumeRestore, PodVolumeRestoreSpec, RESTORE_NAME_LABEL, UPLOADER_RESTIC, phase,
};
use crate::store::{Provider, Store};

/// Name of the init container added to restored pods.
pub const RESTORE_WAIT_CONTAINER: &str = "tidemark-restore-wait";
/// Where the init container mounts each volume: `/restores/<volume>`.
pub const RESTORE_MOUNT_ROOT: &str = "/restores";
/// Default image of the init container (tidemark's own image, `tidemark restore-wait`).
pub const DEFAULT_RESTORE_HELPER_IMAGE: &str =
    concat!("ghcr.io/tidemark/tidemark:", env!("CARGO_PKG_VERSION"));
/// Velero's default `--pod-volume-operation-timeout`: 4 hours.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

/// Settings of pod volume backup and restore, from the environment of the process (the same
/// variables in the CLI, the controller Deployment and tests):
/// `TIDEMARK_RESTORE_HELPER_IMAGE`, `TIDEMARK_POD_VOLUME_TIMEOUT` (Go-style duration, `4h`),
/// `TIDEMARK_REPO_PASSWORD_FILE` (needed only to forget snapshots on expiry).
#[derive(Clone, Debug)]
pub struct PodVolumeSettings {
    /// Image of the `tidemark-restore-wait` init container.
    pub restore_helper_image: String,
    /// How long a backup or restore waits for its pod volume records.
    pub timeout: Duration,
    /// The repositories' password file.
    pub password_file: Option<PathBuf>,
}

impl Default for PodVolumeSettings {
    fn default() -> Self {
        Self {
            restore_helper_image: DEFAULT_RESTORE_HELPER_IMAGE.into(),
            timeout: DEFAULT_TIMEOUT,
            password_file: None,
        }
    }
}

impl PodVolumeSettings {
    /// Reads the settings from the environment (see the type's doc); unset or invalid values
    /// keep their defaults (an invalid timeout is logged).
    pub fn from_env() -> Self {
        let mut s = Self::default();
        if let Ok(img) = std::env::var("TIDEMARK_RESTORE_HELPER_IMAGE")
            && !img.trim().is_empty()
        {
            s.restore_helper_image = img.trim().to_string();
        }
        if let Ok(t) = std::env::var("TIDEMARK_POD_VOLUME_TIMEOUT") {
            match crate::plan::expiry::duration(t.trim()) {
                Ok(d) => s.timeout = d,
                Err(e) => tracing::warn!("TIDEMARK_POD_VOLUME_TIMEOUT {t:?}: {e}; using 4h"),
            }
        }
        s.password_file = std::env::var_os("TIDEMARK_REPO_PASSWORD_FILE").map(PathBuf::from);
        s
    }
}

/// The restic repository of `namespace` as the `restic` CLI names it (and Velero records it):
/// `s3:<endpoint>/<bucket>/<prefix>/restic/<ns>` (endpoint: the location's `s3Url`, else
/// `$AWS_ENDPOINT_URL`, else `s3.amazonaws.com`), `azure:<container>:/<prefix>/restic/<ns>`,
/// `gs:<bucket>:/<prefix>/restic/<ns>`, or the directory for filesystem locations.
pub fn repo_identifier(store: &Store, namespace: &str) -> String {
    let url = store.url();
    let dir = store.layout().restic_repo(namespace);
    match url.provider() {
        Provider::Filesystem => format!("{}/{}", url.bucket().trim_end_matches('/'), dir),
        Provider::S3 => {
            let endpoint = url
                .config()
                .get("s3Url")
                .map(|u| u.trim_end_matches('/').to_string())
                .or_else(|| {
                    std::env::var("AWS_ENDPOINT_URL")
                        .ok()
                        .map(|u| u.trim_end_matches('/').to_string())
                })
                .unwrap_or_else(|| "s3.amazonaws.com".into());
            format!("s3:{endpoint}/{}/{dir}", url.bucket())
        }
        Provider::Azure => format!("azure:{}:/{dir}", url.bucket()),
        Provider::Gcp => format!("gs:{}:/{dir}", url.bucket()),
    }
}

/// What the backup engine passes to [`back_up_volumes`].
#[derive(Clone, Debug)]
pub struct BackupVolumesRequest {
    /// The backup's name.
    pub backup: String,
    /// Namespace of the records (tidemark's).
    pub record_namespace: String,
    /// The Location's name.
    pub location_name: String,
    /// How long to wait for the agents.
    pub timeout: Duration,
}

/// The outcome of the file-system volume step of a backup.
#[derive(Clone, Debug, Default)]
pub struct BackupVolumesOutcome {
    /// Every record, finished or not, as last read.
    pub records: Vec<PodVolumeBackup>,
    /// `Completed` records.
    pub completed: usize,
    /// Failures, each with the pod's namespace: `(namespace, message)`.
    pub errors: Vec<(String, String)>,
}

/// The record name of a volume's backup: `<backup>-<hash of namespace/pod/volume>` (stable, a
/// valid object name for any input).
pub fn record_name(backup: &str, namespace: &str, pod: &str, volume: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{namespace}/{pod}/{volume}").as_bytes());
    let suffix = hex::encode(&h[..5]);
    let base: String = backup.chars().take(63 - 11).collect();
    format!("{}-{suffix}", base.trim_end_matches(['-', '.']))
}

/// The PodVolumeBackup for one chosen volume (`None` when the volume is not `FsBackup`).
pub fn backup_record(
    choice: &VolumeChoice,
    req: &BackupVolumesRequest,
    store: &Store,
) -> Option<PodVolumeBackup> {
    if choice.method != VolumeMethod::FsBackup {
        return None;
    }
    let name = record_name(&req.backup, &choice.namespace, &choice.pod, &choice.volume);
    let tags: BTreeMap<String, String> = [
        ("backup", req.backup.as_str()),
        ("ns", choice.namespace.as_str()),
        ("pod", choice.pod.as_str()),
        ("pod-uid", choice.pod_uid.as_str()),
        ("volume", choice.volume.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut pvb = PodVolumeBackup::new(
        &name,
        PodVolumeBackupSpec {
            node: choice.node_name.clone().unwrap_or_default(),
            pod: ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some(choice.namespace.clone()),
                name: Some(choice.pod.clone()),
                uid: Some(choice.pod_uid.clone()),
                ..Default::default()
            },
            volume: choice.volume.clone(),
            backup_storage_location: req.location_name.clone(),
            location_url: store.url().to_string_with_config(),
            repo_identifier: repo_identifier(store, &choice.namespace),
            uploader_type: UPLOADER_RESTIC.into(),
            tags,
        },
    );
    pvb.metadata.namespace = Some(req.record_namespace.clone());
    pvb.metadata.labels = Some(
        [
            (BACKUP_NAME_LABEL.to_string(), req.backup.clone()),
            (POD_UID_LABEL.to_string(), choice.pod_uid.clone()),
        ]
        .into(),
    );
    Some(pvb)
}

/// Creates a PodVolumeBackup for each volume chosen `FsBackup`, waits (up to `req.timeout`) for
/// the node agents to finish them, and writes `<backup>-podvolumebackups.json.gz` into the
/// backup folder. Volumes of unscheduled pods, records not created, failed or unfinished at the
/// timeout are errors of the outcome (the backup becomes `PartiallyFailed`), not of the call.
///
/// # Errors
/// [`VolumesError::Record`] when the records file cannot be written.
pub async fn back_up_volumes(
    client: &Client,
    store: &Store,
    req: &BackupVolumesRequest,
    choices: &[VolumeChoice],
) -> Result<BackupVolumesOutcome, VolumesError> {
    let mut out = BackupVolumesOutcome::default();
    let api: Api<PodVolumeBackup> = Api::namespaced(client.clone(), &req.record_namespace);
    let mut names = Vec::new();
    for choice in choices {
        let Some(pvb) = backup_record(choice, req, store) else {
            continue;
        };
        let what = format!(
            "pod volume {}/{} volume {}",
            choice.namespace, choice.pod, choice.volume
        );
        if choice.node_name.as_deref().unwrap_or_default().is_empty() {
            out.errors.push((
                choice.namespace.clone(),
                format!("{what}: the pod is not scheduled on a node; its data is not backed up"),
            ));
            continue;
        }
        match api.create(&PostParams::default(), &pvb).await {
            Ok(_) => names.push((pvb.name_any(), choice.namespace.clone(), what)),
            Err(e) => out.errors.push((
                choice.namespace.clone(),
                format!("{what}: create PodVolumeBackup: {e}"),
            )),
        }
    }
    if names.is_empty() && out.errors.is_empty() {
        return Ok(out);
    }
    let deadline = tokio::time::Instant::now() + req.timeout;
    let lp = ListParams::default().labels(&format!("{BACKUP_NAME_LABEL}={}", req.backup));
    let wanted: Vec<&str> = names.iter().map(|(n, _, _)| n.as_str()).collect();
    let records = wait_done(
        &api,
        &lp,
        &wanted,
        deadline,
        &format!("PodVolumeBackups of {}", req.backup),
    )
    .await;
    for (name, ns, what) in &names {
        let status = records.get(name).and_then(|r| r.status.clone());
        match status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some(phase::COMPLETED) => out.completed += 1,
            Some(phase::FAILED) => out.errors.push((
                ns.clone(),
                format!(
                    "{what}: {}",
                    status
                        .and_then(|s| s.message)
                        .unwrap_or_else(|| "failed".into())
                ),
            )),
            _ => out.errors.push((
                ns.clone(),
                format!(
                    "{what}: not finished within {} (is the node agent running on its node?)",
                    humantime::format_duration(req.timeout)
                ),
            )),
        }
    }
    out.records = names
        .iter()
        .filter_map(|(n, _, _)| records.get(n).cloned())
        .collect();
    if !store.is_read_only() {
        let path = store.layout().backup_pod_volume_backups(&req.backup);
        let body = crate::report::gzip_json(&velero_records(&out.records));
        super::put_record(store, &path, body).await?;
    }
    Ok(out)
}

/// The records as Velero's `velero.io/v1` PodVolumeBackup objects (same field names; tidemark's
/// extra fields are kept, Velero ignores them).
pub fn velero_records(records: &[PodVolumeBackup]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["apiVersion"] = "velero.io/v1".into();
            v["kind"] = "PodVolumeBackup".into();
            if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                for k in ["managedFields", "resourceVersion", "generation"] {
                    m.remove(k);
                }
            }
            v
        })
        .collect()
}

/// Reads the PodVolumeBackups of a backup from its folder (`[]` when the backup has none, or
/// when the file holds `null`, as Velero writes it for a backup without pod volumes).
/// Records of either API group (tidemark's or Velero's) are accepted.
///
/// # Errors
/// [`VolumesError::Record`] when the file exists but is not a gzipped JSON list of records.
pub async fn read_records(
    store: &Store,
    backup: &str,
) -> Result<Vec<PodVolumeBackup>, VolumesError> {
    let path = store.layout().backup_pod_volume_backups(backup);
    let bad = |reason: String| VolumesError::Record {
        what: path.to_string(),
        reason,
    };
    // Absent, or Velero's `null`: no records.
    let items: Option<Vec<Value>> = super::read_gz_list(store, &path).await?;
    items
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            v["apiVersion"] = "tidemark.dev/v1alpha1".into();
            serde_json::from_value(v).map_err(|e| bad(format!("[{i}]: {e}")))
        })
        .collect()
}

/// The completed backups of a source pod's volumes: volume name → record.
pub fn volumes_of_pod<'a>(
    records: &'a [PodVolumeBackup],
    namespace: &str,
    pod: &str,
) -> BTreeMap<String, &'a PodVolumeBackup> {
    records
        .iter()
        .filter(|r| {
            r.spec.pod.namespace.as_deref() == Some(namespace)
                && r.spec.pod.name.as_deref() == Some(pod)
                && r.status.as_ref().and_then(|s| s.phase.as_deref()) == Some(phase::COMPLETED)
                && r.status
                    .as_ref()
                    .and_then(|s| s.snapshot_id.as_deref())
                    .is_some_and(|s| !s.is_empty())
        })
        .map(|r| (r.spec.volume.clone(), r))
        .collect()
}

/// Adds the `tidemark-restore-wait` init container (first) to a pod object (JSON) for
/// `volumes`: it mounts each at `/restores/<volume>` and runs `tidemark restore-wait` until every
/// volume holds the done marker `.tidemark/<marker>` (written by the node agent after the data).
/// Volumes the pod does not declare are ignored; an existing container of that name is replaced.
pub fn add_restore_wait(pod: &mut Value, volumes: &[String], image: &str, marker: &str) {
    let declared: Vec<String> = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let vols: Vec<&String> = volumes.iter().filter(|v| declared.contains(v)).collect();
    if vols.is_empty() {
        return;
    }
    let mounts: Vec<Value> = vols
        .iter()
        .map(|v| serde_json::json!({"name": v, "mountPath": format!("{RESTORE_MOUNT_ROOT}/{v}")}))
        .collect();
    let mut args = vec![
        "restore-wait".to_string(),
        "--marker".to_string(),
        marker.to_string(),
    ];
    for v in &vols {
        args.push(format!("{RESTORE_MOUNT_ROOT}/{v}"));
    }
    let container = serde_json::json!({
        "name": RESTORE_WAIT_CONTAINER,
        "image": image,
        "args": args,
        "volumeMounts": mounts,
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"}
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]}
        }
    });
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let inits = spec
        .entry("initContainers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !inits.is_array() {
        *inits = Value::Array(Vec::new());
    }
    if let Some(list) = inits.as_array_mut() {
        list.retain(|c| c.get("name").and_then(Value::as_str) != Some(RESTORE_WAIT_CONTAINER));
        list.insert(0, container);
    }
}

/// What [`create_restores`] needs besides the pod.
#[derive(Clone, Debug)]
pub struct RestoreVolumesRequest {
    /// The restore's name (also the done marker's name).
    pub restore: String,
    /// Namespace of the records.
    pub record_namespace: String,
}

/// Creates one PodVolumeRestore per backed-up volume of a just-created pod (`pod` is the object
/// the API server returned: it carries the new UID). Returns the record names; failures are
/// `(namespace, message)` errors.
pub async fn create_restores(
    client: &Client,
    req: &RestoreVolumesRequest,
    pod: &kube::api::DynamicObject,
    volumes: &BTreeMap<String, &PodVolumeBackup>,
) -> (Vec<String>, Vec<(String, String)>) {
    let api: Api<PodVolumeRestore> = Api::namespaced(client.clone(), &req.record_namespace);
    let ns = pod.namespace().unwrap_or_default();
    let uid = pod.uid().unwrap_or_default();
    let mut names = Vec::new();
    let mut errors = Vec::new();
    for (volume, pvb) in volumes {
        let name = record_name(&req.restore, &ns, &pod.name_any(), volume);
        let snapshot = pvb
            .status
            .as_ref()
            .and_then(|s: &PodVolumeBackupStatus| s.snapshot_id.clone())
            .unwrap_or_default();
        let pvr = PodVolumeRestore {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(req.record_namespace.clone()),
                labels: Some(
                    [
                        (RESTORE_NAME_LABEL.to_string(), req.restore.clone()),
                        (POD_UID_LABEL.to_string(), uid.clone()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            spec: PodVolumeRestoreSpec {
                pod: ObjectReference {
                    kind: Some("Pod".into()),
                    namespace: Some(ns.clone()),
                    name: Some(pod.name_any()),
                    uid: Some(uid.clone()),
                    ..Default::default()
                },
                volume: volume.clone(),
                backup_storage_location: pvb.spec.backup_storage_location.clone(),
                location_url: pvb.spec.location_url.clone(),
                repo_identifier: pvb.spec.repo_identifier.clone(),
                uploader_type: UPLOADER_RESTIC.into(),
                snapshot_id: snapshot,
                source_namespace: pvb.spec.pod.namespace.clone().unwrap_or_default(),
            },
            status: None,
        };
        match api.create(&PostParams::default(), &pvr).await {
            Ok(_) => names.push(name),
            Err(e) => errors.push((
                ns.clone(),
                format!(
                    "pod volume {ns}/{} volume {volume}: create PodVolumeRestore: {e}",
                    pod.name_any()
                ),
            )),
        }
    }
    (names, errors)
}

/// A pod volume record's phase (PodVolumeBackup, PodVolumeRestore).
trait Phased {
    fn phase(&self) -> Option<&str>;
}

impl Phased for PodVolumeBackup {
    fn phase(&self) -> Option<&str> {
        self.status.as_ref().and_then(|s| s.phase.as_deref())
    }
}

impl Phased for PodVolumeRestore {
    fn phase(&self) -> Option<&str> {
        self.status.as_ref().and_then(|s| s.phase.as_deref())
    }
}

/// Lists the records `lp` selects every 500 ms until each of `names` is done or `deadline`
/// passes; returns the last seen records by name. A failed list is logged (`what`) and retried.
async fn wait_done<K>(
    api: &Api<K>,
    lp: &ListParams,
    names: &[&str],
    deadline: tokio::time::Instant,
    what: &str,
) -> BTreeMap<String, K>
where
    K: Phased + kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut records: BTreeMap<String, K> = BTreeMap::new();
    loop {
        match api.list(lp).await {
            Ok(list) => {
                for r in list.items {
                    records.insert(r.name_any(), r);
                }
            }
            Err(e) => tracing::warn!("list {what}: {e}"),
        }
        let pending = names
            .iter()
            .any(|n| !phase::is_done(records.get(*n).and_then(Phased::phase)));
        if !pending || tokio::time::Instant::now() >= deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits (up to `timeout`) for a restore's PodVolumeRestores; returns `(completed, errors)` with
/// errors as `(namespace, message)`.
pub async fn wait_restores(
    client: &Client,
    req: &RestoreVolumesRequest,
    names: &[String],
    timeout: Duration,
) -> (usize, Vec<(String, String)>) {
    if names.is_empty() {
        return (0, Vec::new());
    }
    let api: Api<PodVolumeRestore> = Api::namespaced(client.clone(), &req.record_namespace);
    let lp = ListParams::default().labels(&format!("{RESTORE_NAME_LABEL}={}", req.restore));
    let deadline = tokio::time::Instant::now() + timeout;
    let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
    let records = wait_done(
        &api,
        &lp,
        &wanted,
        deadline,
        &format!("PodVolumeRestores of {}", req.restore),
    )
    .await;
    let mut completed = 0;
    let mut errors = Vec::new();
    for n in names {
        let r = records.get(n);
        let ns = r
            .and_then(|r| r.spec.pod.namespace.clone())
            .unwrap_or_default();
        let what = r
            .map(|r| {
                format!(
                    "pod volume {ns}/{} volume {}",
                    r.spec.pod.name.as_deref().unwrap_or_default(),
                    r.spec.volume
                )
            })
            .unwrap_or_else(|| format!("PodVolumeRestore {n}"));
        let status = r.and_then(|r| r.status.clone());
        match status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some(phase::COMPLETED) => completed += 1,
            Some(phase::FAILED) => errors.push((
                ns,
                format!(
                    "{what}: {}",
                    status
                        .and_then(|s| s.message)
                        .unwrap_or_else(|| "failed".into())
                ),
            )),
            _ => errors.push((
                ns,
                format!(
                    "{what}: not finished within {}",
                    humantime::format_duration(timeout)
                ),
            )),
        }
    }
    (completed, errors)
}

/// Forgets the restic snapshots of an expired backup in every namespace repository its records
/// name, then deletes its PodVolumeBackup records from the cluster (when `client` is given).
/// Returns how many snapshots were forgotten. Data is freed by the next [`prune_all`].
///
/// # Errors
/// [`VolumesError::Record`] when the records cannot be read or a repository refuses.
pub async fn forget_backup(
    client: Option<&Client>,
    record_namespace: &str,
    store: &Store,
    backup: &str,
    password: &RepoPassword,
) -> Result<usize, VolumesError> {
    let records = read_records(store, backup).await?;
    let mut namespaces: Vec<String> = records
        .iter()
        .filter_map(|r| r.spec.pod.namespace.clone())
        .collect();
    namespaces.sort();
    namespaces.dedup();
    let mut forgotten = 0;
    for ns in namespaces {
        let (store, pw, b, handle) = (
            store.clone(),
            password.clone(),
            backup.to_string(),
            tokio::runtime::Handle::current(),
        );
        let ns2 = ns.clone();
        let n = tokio::task::spawn_blocking(move || {
            let repo = ResticRepo::open(&store, &ns2, &pw, handle, Arc::default())?;
            repo.forget_backup(&b)
        })
        .await
        .map_err(|e| VolumesError::Record {
            what: format!("restic/{ns}"),
            reason: e.to_string(),
        })?
        .map_err(|e| VolumesError::Record {
            what: format!("restic/{ns}"),
            reason: e.to_string(),
        })?;
        forgotten += n;
    }
    if let Some(client) = client {
        let api: Api<PodVolumeBackup> = Api::namespaced(client.clone(), record_namespace);
        let lp = ListParams::default().labels(&format!("{BACKUP_NAME_LABEL}={backup}"));
        if let Err(e) = api.delete_collection(&DeleteParams::default(), &lp).await {
            tracing::warn!("delete PodVolumeBackups of {backup}: {e}");
        }
    }
    Ok(forgotten)
}

/// Expiry's step for pod volume data: when the backup has PodVolumeBackups, forgets their
/// snapshots with the password from `settings` (`TIDEMARK_REPO_PASSWORD_FILE`) and deletes the
/// records. Returns how many snapshots were forgotten (`0` for a backup without volumes).
///
/// # Errors
/// [`VolumesError::Record`]: no password configured while snapshots exist, unreadable
/// password, or a repository that refuses.
pub async fn forget_on_expiry(
    client: Option<&Client>,
    record_namespace: &str,
    store: &Store,
    backup: &str,
    settings: &PodVolumeSettings,
) -> Result<usize, VolumesError> {
    if read_records(store, backup).await?.is_empty() {
        return Ok(0);
    }
    let file = settings
        .password_file
        .as_deref()
        .ok_or_else(|| VolumesError::Record {
            what: format!("restic snapshots of backup {backup}"),
            reason: "not forgotten: no repository password (set TIDEMARK_REPO_PASSWORD_FILE)"
                .into(),
        })?;
    let password = RepoPassword::from_file(file).map_err(|e| VolumesError::Record {
        what: format!("restic snapshots of backup {backup}"),
        reason: e.to_string(),
    })?;
    forget_backup(client, record_namespace, store, backup, &password).await
}

/// Prunes every namespace repository of a location (maintenance): lists `<prefix>/restic/*`.
/// Returns the namespaces pruned.
///
/// # Errors
/// [`VolumesError::Record`] naming the repository that failed.
pub async fn prune_all(
    store: &Store,
    password: &RepoPassword,
) -> Result<Vec<String>, VolumesError> {
    let root = store.layout().restic_dir();
    let files = store
        .list_sizes(&root)
        .await
        .map_err(|e| VolumesError::Record {
            what: root.to_string(),
            reason: e.to_string(),
        })?;
    let mut namespaces: Vec<String> = files
        .iter()
        .filter(|(p, _)| p.filename() == Some("config"))
        .filter_map(|(p, _)| {
            let parts: Vec<_> = p.parts().collect();
            parts
                .len()
                .checked_sub(2)
                .map(|i| parts[i].as_ref().to_string())
        })
        .collect();
    namespaces.sort();
    namespaces.dedup();
    for ns in &namespaces {
        let (store, pw, handle, ns2) = (
            store.clone(),
            password.clone(),
            tokio::runtime::Handle::current(),
            ns.clone(),
        );
        tokio::task::spawn_blocking(move || {
            ResticRepo::open(&store, &ns2, &pw, handle, Arc::default())?.prune()
        })
        .await
        .map_err(|e| VolumesError::Record {
            what: format!("restic/{ns}"),
            reason: e.to_string(),
        })?
        .map_err(|e| VolumesError::Record {
            what: format!("restic/{ns}"),
            reason: e.to_string(),
        })?;
    }
    Ok(namespaces)
}

/// The restore engine's side of pod volume restore for one run: the backup's completed
/// PodVolumeBackups, the records created so far, and the settings.
pub struct PodVolumeRestorer {
    client: Client,
    records: Vec<PodVolumeBackup>,
    req: RestoreVolumesRequest,
    settings: PodVolumeSettings,
    created: std::sync::Mutex<Vec<String>>,
}

impl std::fmt::Debug for PodVolumeRestorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodVolumeRestorer")
            .field("records", &self.records.len())
            .field("req", &self.req)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PodVolumeRestorer {
    /// Reads the backup's records (none: the restorer does nothing).
    ///
    /// # Errors
    /// [`VolumesError::Record`] when the records file is unreadable.
    pub async fn load(
        client: &Client,
        store: &Store,
        backup: &str,
        req: RestoreVolumesRequest,
        settings: PodVolumeSettings,
    ) -> Result<Self, VolumesError> {
        Ok(Self {
            client: client.clone(),
            records: read_records(store, backup).await?,
            req,
            settings,
            created: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Whether the backup has any file-system backed-up volume.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Before a pod is created: adds the wait init container when the source pod
    /// (`source_namespace/name`) had backed-up volumes. Returns whether it did.
    pub fn prepare_pod(&self, source_namespace: &str, name: &str, pod: &mut Value) -> bool {
        let vols = volumes_of_pod(&self.records, source_namespace, name);
        if vols.is_empty() {
            return false;
        }
        let names: Vec<String> = vols.keys().cloned().collect();
        add_restore_wait(
            pod,
            &names,
            &self.settings.restore_helper_image,
            &self.req.restore,
        );
        true
    }

    /// After the pod was created (`created` as returned by the API server): one
    /// PodVolumeRestore per backed-up volume. Returns `(namespace, message)` errors.
    pub async fn pod_created(
        &self,
        source_namespace: &str,
        name: &str,
        created: &kube::api::DynamicObject,
    ) -> Vec<(String, String)> {
        let vols = volumes_of_pod(&self.records, source_namespace, name);
        if vols.is_empty() {
            return Vec::new();
        }
        let (names, errors) = create_restores(&self.client, &self.req, created, &vols).await;
        if let Ok(mut c) = self.created.lock() {
            c.extend(names);
        }
        errors
    }

    /// Waits for every PodVolumeRestore created (up to the settings' timeout): `(completed,
    /// errors)`.
    pub async fn finish(&self) -> (usize, Vec<(String, String)>) {
        let names = self.created.lock().map(|c| c.clone()).unwrap_or_default();
        wait_restores(&self.client, &self.req, &names, self.settings.timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocationUrl;

    fn choice(method: VolumeMethod) -> VolumeChoice {
        VolumeChoice {
            namespace: "shop".into(),
            pod: "db-0".into(),
            pod_uid: "uid-1".into(),
            node_name: Some("node-a".into()),
            volume: "data".into(),
            pvc: None,
            pv: None,
            method,
            reason: "test".into(),
        }
    }

    fn req() -> BackupVolumesRequest {
        BackupVolumesRequest {
            backup: "nightly".into(),
            record_namespace: "tidemark".into(),
            location_name: "default".into(),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn record_names_are_stable_valid_and_distinct() {
        let a = record_name("nightly", "shop", "db-0", "data");
        assert_eq!(a, record_name("nightly", "shop", "db-0", "data"));
        assert_ne!(a, record_name("nightly", "shop", "db-0", "logs"));
        assert!(a.starts_with("nightly-") && a.len() == "nightly-".len() + 10);
        let long = record_name(&"x".repeat(63), "a", "b", "c");
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn repo_identifiers_are_what_restic_expects() {
        let s3: LocationUrl = "s3://bkt/cluster-a?s3Url=http://minio:9000&region=x"
            .parse()
            .unwrap();
        let store = Store::open(&s3, false).unwrap();
        assert_eq!(
            repo_identifier(&store, "shop"),
            "s3:http://minio:9000/bkt/cluster-a/restic/shop"
        );
        let az: LocationUrl =
            "azure://backups/cluster-a?storageAccount=acct1&storageAccountKeyEnvVar=K"
                .parse()
                .unwrap();
        let creds = crate::store::Secrets::from_azure_credentials_file("K=a2V5\n").unwrap();
        let store = Store::open_with(&az, &creds).unwrap();
        assert_eq!(
            repo_identifier(&store, "shop"),
            "azure:backups:/cluster-a/restic/shop"
        );
        let gs: LocationUrl = "gs://bkt/cluster-a".parse().unwrap();
        let store = Store::from_parts(
            std::sync::Arc::new(object_store::memory::InMemory::new()),
            gs,
        );
        assert_eq!(
            repo_identifier(&store, "shop"),
            "gs:bkt:/cluster-a/restic/shop"
        );
        let dir = tempfile::tempdir().unwrap();
        let fs = Store::open(&LocationUrl::filesystem(dir.path()), false).unwrap();
        assert_eq!(
            repo_identifier(&fs, "shop"),
            format!("{}/restic/shop", dir.path().display())
        );
    }

    #[test]
    fn only_fs_backup_volumes_get_records_with_velero_fields() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&LocationUrl::filesystem(dir.path()), false).unwrap();
        assert!(backup_record(&choice(VolumeMethod::Skip), &req(), &store).is_none());
        assert!(backup_record(&choice(VolumeMethod::Snapshot), &req(), &store).is_none());
        let pvb = backup_record(&choice(VolumeMethod::FsBackup), &req(), &store).unwrap();
        assert_eq!(pvb.spec.node, "node-a");
        assert_eq!(pvb.spec.pod.uid.as_deref(), Some("uid-1"));
        assert_eq!(pvb.spec.tags["backup"], "nightly");
        assert_eq!(pvb.labels()[BACKUP_NAME_LABEL], "nightly");
        assert_eq!(pvb.metadata.namespace.as_deref(), Some("tidemark"));
        let v = &velero_records(&[pvb])[0];
        assert_eq!(v["apiVersion"], "velero.io/v1");
        assert_eq!(v["spec"]["backupStorageLocation"], "default");
        assert_eq!(v["spec"]["uploaderType"], "restic");
        assert_eq!(v["spec"]["pod"]["kind"], "Pod");
    }

    #[tokio::test]
    async fn records_round_trip_through_the_backup_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&LocationUrl::filesystem(dir.path()), false).unwrap();
        assert!(read_records(&store, "nightly").await.unwrap().is_empty());
        let mut pvb = backup_record(&choice(VolumeMethod::FsBackup), &req(), &store).unwrap();
        pvb.status = Some(PodVolumeBackupStatus {
            phase: Some(phase::COMPLETED.into()),
            snapshot_id: Some("ab".repeat(32)),
            ..Default::default()
        });
        let path = store.layout().backup_pod_volume_backups("nightly");
        store
            .put(
                &path,
                crate::report::gzip_json(&velero_records(&[pvb.clone()])),
                false,
            )
            .await
            .unwrap();
        let back = read_records(&store, "nightly").await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].spec, pvb.spec);
        let vols = volumes_of_pod(&back, "shop", "db-0");
        assert_eq!(vols.keys().collect::<Vec<_>>(), ["data"]);
        assert!(volumes_of_pod(&back, "shop", "other").is_empty());
        store
            .put(&path, bytes::Bytes::from_static(b"junk"), false)
            .await
            .unwrap();
        let e = read_records(&store, "nightly").await.unwrap_err();
        assert!(e.to_string().contains("podvolumebackups.json.gz"), "{e}");
        // Velero's file for a backup without pod volumes.
        store
            .put(&path, crate::report::gzip_json(&Value::Null), false)
            .await
            .unwrap();
        assert!(read_records(&store, "nightly").await.unwrap().is_empty());
    }

    #[test]
    fn restore_wait_init_container_mounts_declared_volumes_only() {
        let mut pod = serde_json::json!({
            "spec": {
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "c"}}],
                "initContainers": [{"name": "setup", "image": "busybox"}],
                "containers": [{"name": "app", "image": "app"}]
            }
        });
        add_restore_wait(&mut pod, &["data".into(), "gone".into()], "img:1", "r1");
        let inits = pod["spec"]["initContainers"].as_array().unwrap();
        assert_eq!(inits.len(), 2);
        assert_eq!(inits[0]["name"], RESTORE_WAIT_CONTAINER);
        assert_eq!(inits[0]["image"], "img:1");
        assert_eq!(
            inits[0]["args"],
            serde_json::json!(["restore-wait", "--marker", "r1", "/restores/data"])
        );
        assert_eq!(inits[0]["volumeMounts"][0]["mountPath"], "/restores/data");
        assert_eq!(inits[1]["name"], "setup");
        // Idempotent.
        add_restore_wait(&mut pod, &["data".into()], "img:1", "r1");
        assert_eq!(pod["spec"]["initContainers"].as_array().unwrap().len(), 2);
        // Nothing declared: unchanged.
        let mut bare = serde_json::json!({"spec": {"containers": []}});
        add_restore_wait(&mut bare, &["data".into()], "img:1", "r1");
        assert!(bare["spec"].get("initContainers").is_none());
    }
}
