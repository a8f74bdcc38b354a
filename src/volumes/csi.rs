//! CSI snapshots (`snapshot.storage.k8s.io/v1`), the way Velero 1.14+ takes and restores them.
//!
//! **Backup** ([`back_up_snapshots`]): for each claim chosen [`VolumeMethod::Snapshot`], a
//! VolumeSnapshot is created in the claim's namespace (label `velero.io/backup-name`) with the
//! class Velero would pick: the claim's annotation `velero.io/csi-volumesnapshot-class`, else
//! the Backup's annotation `velero.io/csi-volumesnapshot-class_<driver>`, else the one
//! VolumeSnapshotClass of the PV's driver labelled `velero.io/csi-volumesnapshot-class: "true"`.
//! Once `status.readyToUse` (within `--csi-snapshot-timeout`), the bound VolumeSnapshotContent's
//! `status.snapshotHandle` and `restoreSize` are read, its `deletionPolicy` is set to `Retain`
//! and both objects are deleted from the cluster: the storage snapshot stays, described by the
//! backup's records ([`write_records`]: `<name>-csi-volumesnapshots.json.gz`,
//! `<name>-csi-volumesnapshotcontents.json.gz`, `<name>-csi-volumesnapshotclasses.json.gz`,
//! `<name>-volumeinfo.json.gz`, Velero's file names and shapes).
//!
//! **Restore** ([`CsiRestorer`]): for a claim that had a snapshot, a VolumeSnapshotContent is
//! pre-provisioned from the handle (`deletionPolicy: Retain`, bound to a new VolumeSnapshot in
//! the target namespace), the VolumeSnapshot is created, and the claim gets `dataSource` (and
//! `dataSourceRef`) pointing at it instead of `volumeName`; its PV is not restored.
//!
//! **Crash safety**: before a content is retained, the snapshot's handle is written to the
//! backup's folder as an intent record ([`INTENT_PREFIX`], [`read_intents`]); a run that stops
//! after that point leaves a reference to every storage snapshot it kept, and the clean-up of
//! an interrupted backup (the controller's start-up, direct mode's failure path) deletes them
//! before it removes the folder — and keeps the folder when it cannot.
//!
//! **Deletion** ([`delete_snapshots`]): each recorded handle (volume records and intent
//! records) gets a VolumeSnapshotContent with `deletionPolicy: Delete`, bound to a
//! VolumeSnapshot that never exists and marked as being deleted, which is then deleted, so the
//! CSI driver's snapshotter deletes the storage snapshot.
//!
//! Failures are per volume: they are returned as `(namespace, message)` errors (the backup
//! becomes `PartiallyFailed`), never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{VolumeChoice, VolumeMethod, VolumesError};
use crate::report::gzip_json;
use crate::store::Store;

/// The API group of CSI snapshots.
pub const GROUP: &str = "snapshot.storage.k8s.io";
/// Label marking the VolumeSnapshotClass Velero uses for a driver (value `"true"`); also the
/// claim annotation naming a class explicitly.
pub const CLASS_LABEL: &str = "velero.io/csi-volumesnapshot-class";
/// Prefix of the Backup annotation naming a class per driver (`..._<driver>`).
pub const BACKUP_CLASS_ANNOTATION_PREFIX: &str = "velero.io/csi-volumesnapshot-class_";
/// Label with the backup's name on the snapshot objects.
pub const BACKUP_NAME_LABEL: &str = "velero.io/backup-name";
/// Label with the restore's name on restored snapshot objects.
pub const RESTORE_NAME_LABEL: &str = "velero.io/restore-name";
/// Velero's `backupMethod` for CSI snapshots in `<name>-volumeinfo.json.gz`.
pub const METHOD_CSI: &str = "CSISnapshot";

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(GROUP, "v1", kind))
}

/// `VolumeSnapshot`, `VolumeSnapshotContent`, `VolumeSnapshotClass`.
fn snapshots_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource("VolumeSnapshot"))
}
fn contents_api(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource("VolumeSnapshotContent"))
}
fn classes_api(client: &Client) -> Api<DynamicObject> {
    Api::all_with(client.clone(), &resource("VolumeSnapshotClass"))
}

/// A stable object name `<prefix>-<claim>-<hash>` (at most 63 characters).
/// The external snapshotter's annotation marking a VolumeSnapshotContent whose storage snapshot
/// is to be deleted with it (`snapshot.storage.kubernetes.io/volumesnapshot-being-deleted`,
/// kubernetes-csi/external-snapshotter `pkg/utils`).
pub const SNAPSHOT_BEING_DELETED_ANNOTATION: &str =
    "snapshot.storage.kubernetes.io/volumesnapshot-being-deleted";

/// A UUID-shaped identifier derived from `name` (the same name gives the same value).
fn uid_of(name: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(&sha2::Sha256::digest(name.as_bytes())[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn object_name(prefix: &str, claim: &str, key: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(&sha2::Sha256::digest(key.as_bytes())[..5]);
    let room = 63 - prefix.len() - h.len() - 2;
    let c: String = claim.chars().take(room).collect();
    format!("{prefix}-{}-{h}", c.trim_end_matches(['-', '.']))
}

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

/// What [`back_up_snapshots`] needs besides the choices.
#[derive(Clone, Debug)]
pub struct CsiBackupRequest {
    /// The backup's name.
    pub backup: String,
    /// The Backup record's annotations (`velero.io/csi-volumesnapshot-class_<driver>`).
    pub backup_annotations: BTreeMap<String, String>,
    /// How long each snapshot may take to become ready.
    pub timeout: Duration,
    /// Snapshots taken at once.
    pub concurrency: usize,
    /// Where the intent records go (the backup's store): each snapshot's handle is written
    /// there ([`INTENT_PREFIX`]) before its content is retained, so that a run that stops
    /// half way leaves a reference to every storage snapshot it kept. `None`: no records (and
    /// no snapshot is retained without one: use only where nothing can be interrupted).
    pub store: Option<Store>,
}

/// File name prefix of the intent records in a backup's folder:
/// `tidemark-csi-intent-<VolumeSnapshotContent name>.json`, one [`SnapshotRef`] each (JSON).
/// tidemark's own files; Velero ignores them.
pub const INTENT_PREFIX: &str = "tidemark-csi-intent-";

/// Writes the intent record of a snapshot about to be retained.
async fn write_intent(
    store: &Store,
    backup: &str,
    vsc_name: &str,
    r: &SnapshotRef,
) -> Result<(), VolumesError> {
    let path = store
        .layout()
        .backup_file(backup, &format!("{INTENT_PREFIX}{vsc_name}.json"));
    let body = serde_json::to_vec(r).unwrap_or_default();
    super::put_record(store, &path, bytes::Bytes::from(body)).await
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

fn label_true(o: &DynamicObject, key: &str) -> bool {
    o.labels().get(key).is_some_and(|v| v == "true")
}

/// Picks the VolumeSnapshotClass for `driver` as Velero does (see the module doc).
///
/// # Errors
/// A message naming the annotation or the missing/ambiguous label.
pub fn choose_class<'a>(
    classes: &'a [DynamicObject],
    driver: &str,
    pvc: &PersistentVolumeClaim,
    backup_annotations: &BTreeMap<String, String>,
) -> Result<&'a DynamicObject, String> {
    let driver_of = |c: &DynamicObject| {
        c.data
            .get("driver")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let by_name = |name: &str, from: &str| -> Result<&'a DynamicObject, String> {
        let c = classes
            .iter()
            .find(|c| c.name_any() == name)
            .ok_or_else(|| {
                format!("{from} names VolumeSnapshotClass {name:?}, which does not exist")
            })?;
        if driver_of(c).as_deref() != Some(driver) {
            return Err(format!(
                "{from} names VolumeSnapshotClass {name:?}, which is for driver {:?}, not {driver:?}",
                driver_of(c).unwrap_or_default()
            ));
        }
        Ok(c)
    };
    if let Some(name) = pvc.annotations().get(CLASS_LABEL).filter(|s| !s.is_empty()) {
        return by_name(name, &format!("claim annotation {CLASS_LABEL}"));
    }
    let key = format!("{BACKUP_CLASS_ANNOTATION_PREFIX}{driver}");
    if let Some(name) = backup_annotations.get(&key).filter(|s| !s.is_empty()) {
        return by_name(name, &format!("backup annotation {key}"));
    }
    let labelled: Vec<&DynamicObject> = classes
        .iter()
        .filter(|c| driver_of(c).as_deref() == Some(driver) && label_true(c, CLASS_LABEL))
        .collect();
    match labelled.as_slice() {
        [one] => Ok(one),
        [] => Err(format!(
            "no VolumeSnapshotClass for driver {driver:?} has the label {CLASS_LABEL}=true"
        )),
        many => Err(format!(
            "more than one VolumeSnapshotClass for driver {driver:?} has the label {CLASS_LABEL}=true: {}",
            many.iter()
                .map(|c| c.name_any())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Parses a `restoreSize` (an integer of bytes, or a quantity string) into bytes.
fn size_bytes(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => super::policy::parse_quantity(s)
            .ok()
            .and_then(|m| i64::try_from(m / 1000).ok()),
        _ => None,
    }
}

/// Takes a CSI snapshot of every claim chosen [`VolumeMethod::Snapshot`] (once per claim).
/// Never fails as a whole: per-volume failures are in [`CsiBackupOutcome::errors`].
pub async fn back_up_snapshots(
    client: &Client,
    req: &CsiBackupRequest,
    choices: &[VolumeChoice],
    pvcs: &[PersistentVolumeClaim],
    pvs: &[PersistentVolume],
) -> CsiBackupOutcome {
    let mut out = CsiBackupOutcome::default();
    let mut seen = BTreeSet::new();
    let wanted: Vec<&VolumeChoice> = choices
        .iter()
        .filter(|c| c.method == VolumeMethod::Snapshot)
        .filter(|c| seen.insert((c.namespace.clone(), c.pvc.clone())))
        .collect();
    if wanted.is_empty() {
        return out;
    }
    out.attempted = wanted.len();
    let classes = match classes_api(client).list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            for c in &wanted {
                let msg = format!(
                    "CSI snapshot of claim {}/{}: cannot list VolumeSnapshotClasses \
                     (are the snapshot.storage.k8s.io CRDs installed?): {e}",
                    c.namespace,
                    c.pvc.as_deref().unwrap_or_default()
                );
                out.infos.push(failed_info(c, None, None, &msg));
                out.errors.push((c.namespace.clone(), msg));
            }
            return out;
        }
    };
    // Boxed as `Send` futures: the compiler cannot prove it for the borrowing closures of a
    // plain `stream::iter(..).map(async ..)` inside the controller's reconcile future.
    let jobs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = SnapResult> + Send + '_>>> =
        wanted
            .iter()
            .map(|c| {
                Box::pin(snapshot_one(client, req, c, pvcs, pvs, &classes))
                    as std::pin::Pin<Box<dyn std::future::Future<Output = SnapResult> + Send>>
            })
            .collect();
    let results: Vec<SnapResult> = futures::stream::iter(jobs)
        .buffer_unordered(req.concurrency.max(1))
        .collect()
        .await;
    let mut used_classes = BTreeSet::new();
    for r in results {
        match r {
            SnapResult::Ok {
                info,
                vs,
                vsc,
                class,
            } => {
                out.completed += 1;
                if used_classes.insert(class.name_any()) {
                    out.classes
                        .push(serde_json::to_value(&class).unwrap_or_default());
                }
                out.infos.push(*info);
                out.snapshots.push(vs);
                out.contents.push(vsc);
            }
            SnapResult::Failed {
                info,
                namespace,
                message,
            } => {
                out.infos.push(*info);
                out.errors.push((namespace, message));
            }
        }
    }
    out.infos
        .sort_by(|a, b| (&a.pvc_namespace, &a.pvc_name).cmp(&(&b.pvc_namespace, &b.pvc_name)));
    out
}

enum SnapResult {
    Ok {
        info: Box<VolumeInfo>,
        vs: Value,
        vsc: Value,
        class: Box<DynamicObject>,
    },
    Failed {
        info: Box<VolumeInfo>,
        namespace: String,
        message: String,
    },
}

fn failed_info(
    c: &VolumeChoice,
    started: Option<DateTime<Utc>>,
    driver: Option<&str>,
    msg: &str,
) -> VolumeInfo {
    VolumeInfo {
        pvc_name: c.pvc.clone().unwrap_or_default(),
        pvc_namespace: c.namespace.clone(),
        pv_name: c.pv.clone().unwrap_or_default(),
        backup_method: METHOD_CSI.into(),
        preserve_local_snapshot: true,
        start_timestamp: started,
        completion_timestamp: Some(Utc::now()),
        result: "failed".into(),
        csi_snapshot_info: driver.map(|d| CsiSnapshotInfo {
            driver: d.into(),
            ..CsiSnapshotInfo::default()
        }),
        error: Some(msg.into()),
        ..VolumeInfo::default()
    }
}

async fn snapshot_one(
    client: &Client,
    req: &CsiBackupRequest,
    c: &VolumeChoice,
    pvcs: &[PersistentVolumeClaim],
    pvs: &[PersistentVolume],
    classes: &[DynamicObject],
) -> SnapResult {
    let started = Utc::now();
    let claim = c.pvc.clone().unwrap_or_default();
    let what = format!("CSI snapshot of claim {}/{claim}", c.namespace);
    let fail = |driver: Option<&str>, reason: String| {
        let message = format!("{what}: {reason}");
        SnapResult::Failed {
            info: Box::new(failed_info(c, Some(started), driver, &message)),
            namespace: c.namespace.clone(),
            message,
        }
    };
    let Some(pvc) = pvcs.iter().find(|p| {
        p.metadata.namespace.as_deref() == Some(c.namespace.as_str()) && p.name_any() == claim
    }) else {
        return fail(None, "claim not found".into());
    };
    let Some(pv) = pvs.iter().find(|p| Some(p.name_any()) == c.pv) else {
        return fail(None, "claim is not bound to a PersistentVolume".into());
    };
    let Some(driver) = pv
        .spec
        .as_ref()
        .and_then(|s| s.csi.as_ref())
        .map(|c| c.driver.clone())
    else {
        return fail(None, format!("PV {} is not a CSI volume", pv.name_any()));
    };
    let class = match choose_class(classes, &driver, pvc, &req.backup_annotations) {
        Ok(c) => c.clone(),
        Err(e) => return fail(Some(&driver), e),
    };
    match take(client, req, c, &claim, &driver, &class, started).await {
        Ok((info, vs, vsc)) => SnapResult::Ok {
            info: Box::new(VolumeInfo {
                pv_info: Some(json!({
                    "reclaimPolicy": pv.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.clone()).unwrap_or_default(),
                    "labels": pv.metadata.labels.clone().unwrap_or_default(),
                })),
                ..info
            }),
            vs,
            vsc,
            class: Box::new(class),
        },
        Err(e) => fail(Some(&driver), e),
    }
}

/// Creates the VolumeSnapshot, waits for it, retains and releases the content.
async fn take(
    client: &Client,
    req: &CsiBackupRequest,
    c: &VolumeChoice,
    claim: &str,
    driver: &str,
    class: &DynamicObject,
    started: DateTime<Utc>,
) -> Result<(VolumeInfo, Value, Value), String> {
    let vs_api = snapshots_api(client, &c.namespace);
    let vs_name = object_name(
        "tidemark",
        claim,
        &format!("{}/{}/{claim}", req.backup, c.namespace),
    );
    let mut vs = DynamicObject::new(&vs_name, &resource("VolumeSnapshot")).within(&c.namespace);
    vs.metadata.labels = Some([(BACKUP_NAME_LABEL.to_string(), req.backup.clone())].into());
    vs.data = json!({"spec": {
        "volumeSnapshotClassName": class.name_any(),
        "source": {"persistentVolumeClaimName": claim},
    }});
    vs_api
        .create(&PostParams::default(), &vs)
        .await
        .map_err(|e| format!("create VolumeSnapshot {}/{vs_name}: {e}", c.namespace))?;
    let deadline = Instant::now() + req.timeout;
    let ready = loop {
        match vs_api.get(&vs_name).await {
            Ok(o) => {
                let status = o.data.get("status");
                if status
                    .and_then(|s| s.get("readyToUse"))
                    .and_then(Value::as_bool)
                    == Some(true)
                    && status
                        .and_then(|s| s.get("boundVolumeSnapshotContentName"))
                        .and_then(Value::as_str)
                        .is_some()
                {
                    break o;
                }
                if let Some(msg) = status
                    .and_then(|s| s.pointer("/error/message"))
                    .and_then(Value::as_str)
                {
                    let _ = vs_api.delete(&vs_name, &DeleteParams::default()).await;
                    return Err(format!(
                        "VolumeSnapshot {}/{vs_name} failed: {msg}",
                        c.namespace
                    ));
                }
            }
            Err(e) => tracing::debug!("get VolumeSnapshot {}/{vs_name}: {e}", c.namespace),
        }
        if Instant::now() >= deadline {
            let _ = vs_api.delete(&vs_name, &DeleteParams::default()).await;
            return Err(format!(
                "VolumeSnapshot {}/{vs_name} not ready within {} (--csi-snapshot-timeout)",
                c.namespace,
                humantime::format_duration(req.timeout)
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let vsc_name = ready
        .data
        .pointer("/status/boundVolumeSnapshotContentName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let vsc_api = contents_api(client);
    let vsc = vsc_api
        .get(&vsc_name)
        .await
        .map_err(|e| format!("get VolumeSnapshotContent {vsc_name}: {e}"))?;
    let Some(handle) = vsc
        .data
        .pointer("/status/snapshotHandle")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(format!(
            "VolumeSnapshotContent {vsc_name} has no status.snapshotHandle"
        ));
    };
    let size = size_bytes(vsc.data.pointer("/status/restoreSize"))
        .or_else(|| size_bytes(ready.data.pointer("/status/restoreSize")))
        .unwrap_or(0);
    // The intent record first: once the content is retained, this record is the only way back
    // to the storage snapshot if the run stops before its volume records are written. Without
    // it the snapshot is not retained (deleting the VolumeSnapshot deletes it).
    let intent = SnapshotRef {
        namespace: c.namespace.clone(),
        pvc: claim.into(),
        pv: c.pv.clone().unwrap_or_default(),
        handle: handle.clone(),
        driver: driver.into(),
        size,
        class: class.name_any(),
        vs_name: vs_name.clone(),
    };
    let Some(store) = &req.store else {
        let _ = vs_api.delete(&vs_name, &DeleteParams::default()).await;
        return Err("no store for the snapshot's intent record: not retained".into());
    };
    if let Err(e) = write_intent(store, &req.backup, &vsc_name, &intent).await {
        let _ = vs_api.delete(&vs_name, &DeleteParams::default()).await;
        return Err(format!("snapshot {handle} not retained: {e}"));
    }
    // Retain: deleting the VolumeSnapshot (now) and the content (below) keeps the storage.
    let patch = json!({
        "metadata": {"labels": {BACKUP_NAME_LABEL: req.backup}},
        "spec": {"deletionPolicy": "Retain"},
    });
    let vsc = vsc_api
        .patch(&vsc_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            format!("set deletionPolicy Retain on VolumeSnapshotContent {vsc_name}: {e}")
        })?;
    let vs_json = serde_json::to_value(&ready).unwrap_or_default();
    let vsc_json = serde_json::to_value(&vsc).unwrap_or_default();
    if let Err(e) = vs_api.delete(&vs_name, &DeleteParams::default()).await {
        tracing::warn!("delete VolumeSnapshot {}/{vs_name}: {e}", c.namespace);
    }
    if let Err(e) = vsc_api.delete(&vsc_name, &DeleteParams::default()).await {
        tracing::warn!("delete VolumeSnapshotContent {vsc_name}: {e}");
    }
    let info = VolumeInfo {
        pvc_name: claim.into(),
        pvc_namespace: c.namespace.clone(),
        pv_name: c.pv.clone().unwrap_or_default(),
        backup_method: METHOD_CSI.into(),
        preserve_local_snapshot: true,
        start_timestamp: Some(started),
        completion_timestamp: Some(Utc::now()),
        result: "succeeded".into(),
        csi_snapshot_info: Some(CsiSnapshotInfo {
            snapshot_handle: handle,
            size,
            driver: driver.into(),
            vsc_name,
            ready_to_use: Some(true),
            volume_snapshot_class: class.name_any(),
            vs_name,
            ..CsiSnapshotInfo::default()
        }),
        ..VolumeInfo::default()
    };
    Ok((info, vs_json, vsc_json))
}

/// The `volumeinfo` entries of skipped volumes (Velero lists skipped PVs with the reason).
#[must_use]
pub fn skipped_infos(choices: &[VolumeChoice]) -> Vec<VolumeInfo> {
    let mut seen = BTreeSet::new();
    choices
        .iter()
        .filter(|c| c.method == VolumeMethod::Skip && c.pv.is_some())
        .filter(|c| seen.insert((c.namespace.clone(), c.pvc.clone())))
        .map(|c| VolumeInfo {
            pvc_name: c.pvc.clone().unwrap_or_default(),
            pvc_namespace: c.namespace.clone(),
            pv_name: c.pv.clone().unwrap_or_default(),
            skipped: true,
            skipped_reason: c.reason.clone(),
            ..VolumeInfo::default()
        })
        .collect()
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
        super::put_record(store, &path, body).await?;
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
        super::read_gz_list(store, &store.layout().backup_volume_info(backup))
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
    let vss: Vec<Value> = super::read_gz_list(store, &l.backup_csi_volume_snapshots(backup))
        .await?
        .unwrap_or_default();
    let vscs: Vec<Value> =
        super::read_gz_list(store, &l.backup_csi_volume_snapshot_contents(backup))
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

/// The restore engine's side of CSI snapshots for one run.
pub struct CsiRestorer {
    client: Client,
    restore: String,
    /// (source namespace, claim) → snapshot.
    snapshots: BTreeMap<(String, String), SnapshotRef>,
    /// What was done, as Velero's `RestoreVolumeInfo` entries.
    restored: std::sync::Mutex<Vec<Value>>,
}

impl CsiRestorer {
    /// Loads the backup's snapshots (`None` when it has none).
    ///
    /// # Errors
    /// [`VolumesError::Record`] when a record file cannot be read.
    pub async fn load(
        client: &Client,
        store: &Store,
        backup: &str,
        restore: &str,
    ) -> Result<Option<Self>, VolumesError> {
        let snaps = read_snapshots(store, backup).await?;
        if snaps.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self {
            client: client.clone(),
            restore: restore.into(),
            restored: std::sync::Mutex::default(),
            snapshots: snaps
                .into_iter()
                .map(|s| ((s.namespace.clone(), s.pvc.clone()), s))
                .collect(),
        }))
    }

    /// PersistentVolumes not to restore: the claim is provisioned from its snapshot instead.
    #[must_use]
    pub fn snapshot_pvs(&self) -> BTreeSet<String> {
        self.snapshots
            .values()
            .map(|s| s.pv.clone())
            .filter(|p| !p.is_empty())
            .collect()
    }

    /// For a claim with a snapshot: creates the VolumeSnapshotContent and VolumeSnapshot in
    /// `target_ns` and points `pvc` (the object about to be created) at it. Returns `Ok(false)`
    /// for a claim without a snapshot.
    ///
    /// # Errors
    /// A message naming the object that could not be created.
    pub async fn prepare_claim(
        &self,
        source_ns: &str,
        name: &str,
        target_ns: &str,
        pvc: &mut Value,
    ) -> Result<bool, String> {
        let Some(s) = self
            .snapshots
            .get(&(source_ns.to_string(), name.to_string()))
        else {
            return Ok(false);
        };
        let result = self.provision(s, name, target_ns, pvc).await;
        let info = json!({
            "pvcName": name,
            "pvcNamespace": target_ns,
            "restoreMethod": METHOD_CSI,
            "snapshotDataMoved": false,
            "csiSnapshotInfo": {"snapshotHandle": s.handle, "size": s.size, "driver": s.driver,
                                "vscName": result.as_ref().map(|(_, c)| c.clone()).unwrap_or_default()},
            "vsName": result.as_ref().map(|(v, _)| v.clone()).unwrap_or_default(),
            "sourceNamespace": source_ns,
            "result": if result.is_ok() { "succeeded" } else { "failed" },
            "error": result.as_ref().err(),
        });
        if let Ok(mut r) = self.restored.lock() {
            r.push(info);
        }
        result.map(|_| true)
    }

    /// The `restore-<name>-volumeinfo.json.gz` entries (Velero's `RestoreVolumeInfo` fields plus
    /// tidemark's `vsName`, `sourceNamespace`, `result`, `error`).
    #[must_use]
    pub fn volume_infos(&self) -> Vec<Value> {
        self.restored.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Creates the content and snapshot; returns their names.
    async fn provision(
        &self,
        s: &SnapshotRef,
        name: &str,
        target_ns: &str,
        pvc: &mut Value,
    ) -> Result<(String, String), String> {
        let key = format!("{}/{target_ns}/{name}", self.restore);
        let vs_name = object_name("tidemark", name, &key);
        let vsc_name = object_name("tidemark-vsc", name, &key);
        let labels = json!({RESTORE_NAME_LABEL: self.restore});
        let mut vsc = DynamicObject::new(&vsc_name, &resource("VolumeSnapshotContent"));
        vsc.data = json!({"spec": {
            "deletionPolicy": "Retain",
            "driver": s.driver,
            "source": {"snapshotHandle": s.handle},
            "volumeSnapshotRef": {
                "apiVersion": format!("{GROUP}/v1"),
                "kind": "VolumeSnapshot",
                "namespace": target_ns,
                "name": vs_name,
            },
        }});
        if !s.class.is_empty() {
            vsc.data["spec"]["volumeSnapshotClassName"] = json!(s.class);
        }
        vsc.metadata.labels = serde_json::from_value(labels.clone()).ok();
        create_or_keep(&contents_api(&self.client), &vsc)
            .await
            .map_err(|e| format!("create VolumeSnapshotContent {vsc_name}: {e}"))?;
        let mut vs = DynamicObject::new(&vs_name, &resource("VolumeSnapshot")).within(target_ns);
        vs.data = json!({"spec": {"source": {"volumeSnapshotContentName": vsc_name}}});
        if !s.class.is_empty() {
            vs.data["spec"]["volumeSnapshotClassName"] = json!(s.class);
        }
        vs.metadata.labels = serde_json::from_value(labels).ok();
        create_or_keep(&snapshots_api(&self.client, target_ns), &vs)
            .await
            .map_err(|e| format!("create VolumeSnapshot {target_ns}/{vs_name}: {e}"))?;
        point_claim_at(pvc, &vs_name, s.size);
        Ok((vs_name, vsc_name))
    }
}

async fn create_or_keep(api: &Api<DynamicObject>, o: &DynamicObject) -> Result<(), kube::Error> {
    match api.create(&PostParams::default(), o).await {
        Ok(_) => Ok(()),
        Err(e) if crate::cluster::is_already_exists(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Points a claim object at a VolumeSnapshot: `dataSource` and `dataSourceRef` set, `volumeName`
/// and binding annotations dropped, the storage request raised to the snapshot's size.
pub fn point_claim_at(pvc: &mut Value, vs_name: &str, size: i64) {
    let source = json!({"apiGroup": GROUP, "kind": "VolumeSnapshot", "name": vs_name});
    if !pvc.get("spec").is_some_and(Value::is_object) {
        pvc["spec"] = json!({});
    }
    let spec = &mut pvc["spec"];
    spec["dataSource"] = source.clone();
    spec["dataSourceRef"] = source;
    if let Some(m) = spec.as_object_mut() {
        m.remove("volumeName");
    }
    if let Some(a) = pvc
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for k in [
            "pv.kubernetes.io/bind-completed",
            "pv.kubernetes.io/bound-by-controller",
            "volume.kubernetes.io/selected-node",
        ] {
            a.remove(k);
        }
    }
    if size > 0 {
        let current = pvc
            .pointer("/spec/resources/requests/storage")
            .and_then(Value::as_str)
            .and_then(|q| super::policy::parse_quantity(q).ok())
            .map(|m| m / 1000);
        if current.is_none_or(|c| c < size as u128) {
            pvc["spec"]["resources"]["requests"]["storage"] = json!(size.to_string());
        }
    }
}

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
    let (n, errors) = delete_snapshots(client, store, backup, super::phase::DELETE_WAIT)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn intent_records_are_read_back_and_merged_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&crate::store::LocationUrl::filesystem(dir.path()), false).unwrap();
        let snap = |handle: &str| SnapshotRef {
            namespace: "app".into(),
            pvc: "data".into(),
            pv: "pv-1".into(),
            handle: handle.into(),
            driver: "hostpath.csi.test".into(),
            size: 1024,
            class: "fast".into(),
            vs_name: "tidemark-data-1".into(),
        };
        assert!(read_intents(&store, "b1").await.unwrap().is_empty());
        write_intent(&store, "b1", "vsc-b", &snap("snap-b"))
            .await
            .unwrap();
        write_intent(&store, "b1", "vsc-a", &snap("snap-a"))
            .await
            .unwrap();
        // Another file of the folder is not an intent.
        store
            .put(
                &store.layout().backup_file("b1", "b1-logs.gz"),
                bytes::Bytes::from_static(b"x"),
                false,
            )
            .await
            .unwrap();
        let read = read_intents(&store, "b1").await.unwrap();
        assert_eq!(read, vec![snap("snap-a"), snap("snap-b")]);
        // A run that stopped before its volume records: the intents are what is deleted.
        let all = snapshots_to_delete(&store, "b1").await.unwrap();
        assert_eq!(all.len(), 2);
        // A broken record is an error, never "nothing to delete".
        store
            .put(
                &store
                    .layout()
                    .backup_file("b1", &format!("{INTENT_PREFIX}vsc-c.json")),
                bytes::Bytes::from_static(b"{"),
                false,
            )
            .await
            .unwrap();
        assert!(read_intents(&store, "b1").await.is_err());
    }

    fn class(name: &str, driver: &str, labelled: bool) -> DynamicObject {
        let mut c = DynamicObject::new(name, &resource("VolumeSnapshotClass"));
        c.data = json!({"driver": driver, "deletionPolicy": "Delete"});
        if labelled {
            c.metadata.labels = Some([(CLASS_LABEL.to_string(), "true".to_string())].into());
        }
        c
    }

    fn pvc(annotation: Option<&str>) -> PersistentVolumeClaim {
        let mut p = PersistentVolumeClaim::default();
        if let Some(a) = annotation {
            p.metadata.annotations = Some([(CLASS_LABEL.to_string(), a.to_string())].into());
        }
        p
    }

    #[test]
    fn class_choice_follows_velero() {
        let classes = [
            class("a", "d1", true),
            class("b", "d1", false),
            class("c", "d2", true),
            class("e", "d2", true),
        ];
        let none = BTreeMap::new();
        assert_eq!(
            choose_class(&classes, "d1", &pvc(None), &none)
                .unwrap()
                .name_any(),
            "a"
        );
        assert_eq!(
            choose_class(&classes, "d1", &pvc(Some("b")), &none)
                .unwrap()
                .name_any(),
            "b"
        );
        let e = choose_class(&classes, "d1", &pvc(Some("c")), &none).unwrap_err();
        assert!(e.contains("for driver \"d2\""), "{e}");
        let e = choose_class(&classes, "d1", &pvc(Some("zz")), &none).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let e = choose_class(&classes, "d2", &pvc(None), &none).unwrap_err();
        assert!(e.contains("more than one"), "{e}");
        let ann = BTreeMap::from([(
            format!("{BACKUP_CLASS_ANNOTATION_PREFIX}d2"),
            "e".to_string(),
        )]);
        assert_eq!(
            choose_class(&classes, "d2", &pvc(None), &ann)
                .unwrap()
                .name_any(),
            "e"
        );
        let e = choose_class(&classes, "d3", &pvc(None), &none).unwrap_err();
        assert!(e.contains("no VolumeSnapshotClass"), "{e}");
    }

    #[test]
    fn claim_points_at_snapshot() {
        let mut pvc = json!({
            "metadata": {"name": "data", "annotations": {"pv.kubernetes.io/bind-completed": "yes", "keep": "1"}},
            "spec": {"volumeName": "pv1", "resources": {"requests": {"storage": "1Gi"}}}
        });
        point_claim_at(&mut pvc, "vs1", 2 << 30);
        assert_eq!(
            pvc["spec"]["dataSource"],
            json!({"apiGroup": GROUP, "kind": "VolumeSnapshot", "name": "vs1"})
        );
        assert_eq!(pvc["spec"]["dataSourceRef"], pvc["spec"]["dataSource"]);
        assert!(pvc["spec"].get("volumeName").is_none());
        assert!(
            pvc["metadata"]["annotations"]
                .get("pv.kubernetes.io/bind-completed")
                .is_none()
        );
        assert_eq!(pvc["metadata"]["annotations"]["keep"], "1");
        assert_eq!(
            pvc["spec"]["resources"]["requests"]["storage"],
            json!((2i64 << 30).to_string())
        );
        let mut big = json!({"spec": {"resources": {"requests": {"storage": "10Gi"}}}});
        point_claim_at(&mut big, "vs1", 1 << 30);
        assert_eq!(big["spec"]["resources"]["requests"]["storage"], "10Gi");
    }

    #[test]
    fn names_are_bounded_and_stable() {
        let n = object_name("tidemark", &"x".repeat(100), "k");
        assert!(n.len() <= 63, "{n}");
        assert_eq!(n, object_name("tidemark", &"x".repeat(100), "k"));
        assert_ne!(n, object_name("tidemark", &"x".repeat(100), "k2"));
        assert_eq!(size_bytes(Some(&json!("1Gi"))), Some(1 << 30));
        assert_eq!(size_bytes(Some(&json!(42))), Some(42));
    }

    #[test]
    fn volume_info_has_velero_keys() {
        let i = VolumeInfo {
            pvc_name: "p".into(),
            backup_method: METHOD_CSI.into(),
            result: "succeeded".into(),
            csi_snapshot_info: Some(CsiSnapshotInfo {
                snapshot_handle: "h".into(),
                size: 5,
                driver: "d".into(),
                vsc_name: "c".into(),
                ready_to_use: Some(true),
                ..CsiSnapshotInfo::default()
            }),
            ..VolumeInfo::default()
        };
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["backupMethod"], "CSISnapshot");
        assert_eq!(v["csiSnapshotInfo"]["snapshotHandle"], "h");
        assert_eq!(v["csiSnapshotInfo"]["vscName"], "c");
        assert_eq!(v["csiSnapshotInfo"]["ReadyToUse"], true);
        assert_eq!(v["snapshotDataMoved"], false);
        let back: VolumeInfo = serde_json::from_value(v).unwrap();
        assert_eq!(back, i);
    }
}
