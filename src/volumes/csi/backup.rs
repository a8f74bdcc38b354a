//! Taking the snapshots of a backup: the VolumeSnapshotClass choice, the VolumeSnapshot, its
//! content retained behind an intent record, the objects removed.

use super::*;

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
