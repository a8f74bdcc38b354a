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

mod backup;
mod delete;
mod intent;
mod records;
mod restore;

pub use backup::{CsiBackupRequest, back_up_snapshots, choose_class, skipped_infos};
pub use delete::{delete_for_backup, delete_snapshots, has_snapshots, snapshots_to_delete};
pub use intent::{INTENT_PREFIX, read_intents};
pub use records::{
    CsiBackupOutcome, CsiSnapshotInfo, SnapshotRef, VolumeInfo, read_snapshots, read_volume_info,
    write_records,
};
pub use restore::{CsiRestorer, point_claim_at};

use intent::write_intent;

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

fn label_true(o: &DynamicObject, key: &str) -> bool {
    o.labels().get(key).is_some_and(|v| v == "true")
}

/// Parses a `restoreSize` (an integer of bytes, or a quantity string) into bytes.
fn size_bytes(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => crate::volumes::policy::parse_quantity(s)
            .ok()
            .and_then(|m| i64::try_from(m / 1000).ok()),
        _ => None,
    }
}

/// Creates `o`; an object of that name that already exists counts as created.
pub(super) async fn create_or_keep(
    api: &Api<DynamicObject>,
    o: &DynamicObject,
) -> Result<(), kube::Error> {
    match api.create(&PostParams::default(), o).await {
        Ok(_) => Ok(()),
        Err(e) if crate::cluster::is_already_exists(&e) => Ok(()),
        Err(e) => Err(e),
    }
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
