//! Restoring claims from their snapshots: pre-provisioned VolumeSnapshotContents and
//! VolumeSnapshots, and claims pointed at them.

use super::*;

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
            .and_then(|q| crate::volumes::policy::parse_quantity(q).ok())
            .map(|m| m / 1000);
        if current.is_none_or(|c| c < size as u128) {
            pvc["spec"]["resources"]["requests"]["storage"] = json!(size.to_string());
        }
    }
}
