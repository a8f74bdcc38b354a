//! Choosing the method for each pod volume (and each claim no pod mounts).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Volume};

use super::policy::VolumeFacts;
use super::{
    BACKUP_VOLUMES_ANNOTATION, BACKUP_VOLUMES_EXCLUDES_ANNOTATION, VolumeChoice, VolumeMethod,
    VolumeSettings,
};

/// Volume sources whose content comes from the cluster's own state (or the host), never copied.
fn never_copied(v: &Volume) -> Option<&'static str> {
    if v.host_path.is_some() {
        Some("hostPath volumes are never copied")
    } else if v.secret.is_some() {
        Some("secret volumes are never copied (the Secret is backed up)")
    } else if v.config_map.is_some() {
        Some("configMap volumes are never copied (the ConfigMap is backed up)")
    } else if v.projected.is_some() {
        Some("projected volumes are never copied")
    } else if v.downward_api.is_some() {
        Some("downwardAPI volumes are never copied")
    } else if v.image.is_some() {
        Some("image volumes are never copied")
    } else if v.name.starts_with("default-token") {
        Some("service account token volumes are never copied")
    } else {
        None
    }
}

fn annotation_list(pod: &Pod, key: &str) -> Vec<String> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether Velero's legacy (flag + annotation) rules pick file-system backup for the volume,
/// with the reason; `Err(reason)` when the volume was opted out.
fn legacy_fs(pod: &Pod, volume: &str, settings: &VolumeSettings) -> Result<Option<String>, String> {
    if settings.default_volumes_to_fs_backup {
        if annotation_list(pod, BACKUP_VOLUMES_EXCLUDES_ANNOTATION)
            .iter()
            .any(|v| v == volume)
        {
            return Err(format!(
                "pod annotation {BACKUP_VOLUMES_EXCLUDES_ANNOTATION}"
            ));
        }
        Ok(Some("--default-volumes-to-fs-backup".into()))
    } else if annotation_list(pod, BACKUP_VOLUMES_ANNOTATION)
        .iter()
        .any(|v| v == volume)
    {
        Ok(Some(format!("pod annotation {BACKUP_VOLUMES_ANNOTATION}")))
    } else {
        Ok(None)
    }
}

fn is_csi(pv: Option<&PersistentVolume>) -> bool {
    pv.and_then(|p| p.spec.as_ref())
        .is_some_and(|s| s.csi.is_some())
}

/// The claim a pod volume uses: `persistentVolumeClaim.claimName`, or `<pod>-<volume>` for a
/// generic ephemeral volume.
fn claim_name(pod: &str, v: &Volume) -> Option<String> {
    if let Some(c) = &v.persistent_volume_claim {
        Some(c.claim_name.clone())
    } else {
        v.ephemeral.as_ref().map(|_| format!("{pod}-{}", v.name))
    }
}

/// Decides, for every volume of every pod (and every claim no pod mounts), how its data is
/// backed up. Pure; the caller passes the pods, claims and PersistentVolumes of the backup's
/// scope (after its namespace/label filters).
///
/// Precedence, as Velero (1.14+) documents it:
/// 1. hostPath, secret, configMap, projected, downwardAPI (and image, service-account token)
///    volumes are always [`VolumeMethod::Skip`].
/// 2. The first matching volume policy ([`VolumeSettings::policy`]) decides; the reason is
///    `volume policy volumePolicies[i]`. Claims are matched on the facts of their bound PV and
///    the claim's labels/phase, other volumes on their inline source.
/// 3. File-system backup when the pod opts the volume in (`backup.velero.io/backup-volumes`) or,
///    with `--default-volumes-to-fs-backup`, unless it opts it out
///    (`backup.velero.io/backup-volumes-excludes`; the opt-in list is then ignored).
/// 4. Otherwise a claim is snapshotted unless `--snapshot-volumes=false`; any other volume is
///    skipped.
///
/// A snapshot needs a bound claim whose PV is a CSI volume: otherwise the choice becomes
/// [`VolumeMethod::Skip`] with the reason. One claim mounted by several pods is backed up once:
/// the first pod (input order) keeps the method, the others get `Skip` with a reason naming it;
/// if one pod's volume goes to file-system backup, the claim is not also snapshotted (unless a
/// policy said snapshot). Claims that no pod mounts get a choice with empty `pod`, `pod_uid` and
/// `volume` (they can only be snapshotted or skipped).
#[must_use]
pub fn select(
    pods: &[Pod],
    pvcs: &[PersistentVolumeClaim],
    pvs: &[PersistentVolume],
    settings: &VolumeSettings,
) -> Vec<VolumeChoice> {
    let pvc_of = |ns: &str, name: &str| {
        pvcs.iter().find(|c| {
            c.metadata.namespace.as_deref() == Some(ns) && c.metadata.name.as_deref() == Some(name)
        })
    };
    let pv_of = |pvc: Option<&PersistentVolumeClaim>| {
        let name = pvc?.spec.as_ref()?.volume_name.as_deref()?;
        pvs.iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
    };
    // (choice, chosen by policy)
    let mut out: Vec<(VolumeChoice, bool)> = Vec::new();
    let mut mounted: HashSet<(String, String)> = HashSet::new();

    for pod in pods {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(spec) = &pod.spec else { continue };
        for v in spec.volumes.iter().flatten() {
            let claim = claim_name(&name, v);
            let pvc = claim.as_deref().and_then(|c| pvc_of(&ns, c));
            let pv = pv_of(pvc);
            if let Some(c) = &claim {
                mounted.insert((ns.clone(), c.clone()));
            }
            let (method, reason, by_policy) = decide(pod, v, claim.as_deref(), pvc, pv, settings);
            out.push((
                VolumeChoice {
                    namespace: ns.clone(),
                    pod: name.clone(),
                    pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
                    node_name: spec.node_name.clone(),
                    volume: v.name.clone(),
                    pvc: claim,
                    pv: pv.and_then(|p| p.metadata.name.clone()),
                    method,
                    reason,
                },
                by_policy,
            ));
        }
    }

    // One backup per claim: file-system backup wins over a default snapshot; the first pod wins.
    let mut fs_claims: BTreeMap<(String, String), String> = BTreeMap::new();
    for (c, _) in &out {
        if c.method == VolumeMethod::FsBackup
            && let Some(p) = &c.pvc
        {
            fs_claims
                .entry((c.namespace.clone(), p.clone()))
                .or_insert_with(|| c.pod.clone());
        }
    }
    let mut taken: HashSet<(String, String)> = HashSet::new();
    for (c, by_policy) in &mut out {
        let Some(p) = c.pvc.clone() else { continue };
        let key = (c.namespace.clone(), p);
        if c.method == VolumeMethod::Snapshot
            && !*by_policy
            && let Some(fs_pod) = fs_claims.get(&key)
        {
            c.method = VolumeMethod::Skip;
            c.reason = format!("claim backed up by file system with pod {}/{fs_pod}", key.0);
            continue;
        }
        if c.method != VolumeMethod::Skip && !taken.insert(key.clone()) {
            c.reason = format!(
                "claim already backed up ({}) with another pod; {}",
                c.method, c.reason
            );
            c.method = VolumeMethod::Skip;
        }
    }

    // Claims no pod mounts: snapshot or skip.
    for pvc in pvcs {
        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        let claim = pvc.metadata.name.clone().unwrap_or_default();
        if mounted.contains(&(ns.clone(), claim.clone())) {
            continue;
        }
        let pv = pv_of(Some(pvc));
        let policy = settings
            .policy
            .as_ref()
            .and_then(|p| p.first_match(&VolumeFacts::of_claim(Some(pvc), pv)));
        let (mut method, mut reason) = match policy {
            Some((i, p)) => (p.action, format!("volume policy volumePolicies[{i}]")),
            None if settings.snapshot_volumes == Some(false) => (
                VolumeMethod::Skip,
                "snapshots disabled (--snapshot-volumes=false)".to_string(),
            ),
            None => (
                VolumeMethod::Snapshot,
                "snapshot volumes (default)".to_string(),
            ),
        };
        if method == VolumeMethod::FsBackup {
            method = VolumeMethod::Skip;
            reason = format!("{reason}: fs-backup needs a pod mounting the claim; none does");
        }
        if method == VolumeMethod::Snapshot {
            (method, reason) = snapshot_possible(pv, reason);
        }
        out.push((
            VolumeChoice {
                namespace: ns,
                pod: String::new(),
                pod_uid: String::new(),
                node_name: None,
                volume: String::new(),
                pvc: Some(claim),
                pv: pv.and_then(|p| p.metadata.name.clone()),
                method,
                reason,
            },
            policy.is_some(),
        ));
    }
    out.into_iter().map(|(c, _)| c).collect()
}

/// A snapshot needs a bound claim with a CSI PV; otherwise `Skip` with the reason.
fn snapshot_possible(pv: Option<&PersistentVolume>, reason: String) -> (VolumeMethod, String) {
    match pv {
        None => (
            VolumeMethod::Skip,
            format!("{reason}: claim is not bound, nothing to snapshot"),
        ),
        Some(p) if !is_csi(Some(p)) => (
            VolumeMethod::Skip,
            format!(
                "{reason}: PV {} is not a CSI volume, no snapshot support (use fs-backup)",
                p.metadata.name.as_deref().unwrap_or_default()
            ),
        ),
        Some(_) => (VolumeMethod::Snapshot, reason),
    }
}

fn decide(
    pod: &Pod,
    v: &Volume,
    claim: Option<&str>,
    pvc: Option<&PersistentVolumeClaim>,
    pv: Option<&PersistentVolume>,
    settings: &VolumeSettings,
) -> (VolumeMethod, String, bool) {
    if let Some(r) = never_copied(v) {
        return (VolumeMethod::Skip, r.to_string(), false);
    }
    if let Some(policies) = &settings.policy {
        let facts = if claim.is_some() {
            VolumeFacts::of_claim(pvc, pv)
        } else {
            VolumeFacts::of_pod_volume(v)
        };
        if let Some((i, p)) = policies.first_match(&facts) {
            let reason = format!("volume policy volumePolicies[{i}]");
            return match p.action {
                VolumeMethod::Snapshot if claim.is_none() => (
                    VolumeMethod::Skip,
                    format!("{reason}: only persistent volume claims can be snapshotted"),
                    true,
                ),
                VolumeMethod::Snapshot => {
                    let (m, r) = snapshot_possible(pv, reason);
                    (m, r, true)
                }
                m => (m, reason, true),
            };
        }
    }
    let opted_out = match legacy_fs(pod, &v.name, settings) {
        Ok(Some(reason)) => return (VolumeMethod::FsBackup, reason, false),
        Ok(None) => None,
        Err(reason) => Some(reason),
    };
    if claim.is_none() {
        let reason = opted_out.map_or_else(
            || "not selected for fs-backup (no opt-in annotation)".to_string(),
            |r| format!("opted out by {r}"),
        );
        return (VolumeMethod::Skip, reason, false);
    }
    if settings.snapshot_volumes == Some(false) {
        return (
            VolumeMethod::Skip,
            "snapshots disabled (--snapshot-volumes=false)".into(),
            false,
        );
    }
    let reason = match opted_out {
        Some(r) => format!("snapshot volumes (default; fs-backup opted out by {r})"),
        None => "snapshot volumes (default)".into(),
    };
    let (m, r) = snapshot_possible(pv, reason);
    (m, r, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volumes::policy::VolumePolicies;
    use serde_json::json;

    fn pod(name: &str, annotations: serde_json::Value, volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "app", "uid": format!("uid-{name}"),
                         "annotations": annotations},
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}],
                     "volumes": volumes}
        }))
        .unwrap()
    }

    fn pvc(
        name: &str,
        pv: Option<&str>,
        sc: &str,
        labels: serde_json::Value,
    ) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "app", "labels": labels},
            "spec": {"volumeName": pv, "storageClassName": sc},
            "status": {"phase": if pv.is_some() {"Bound"} else {"Pending"}}
        }))
        .unwrap()
    }

    fn csi_pv(name: &str, sc: &str, size: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "storageClassName": sc,
                     "csi": {"driver": "csi.test", "volumeHandle": format!("h-{name}")}}
        }))
        .unwrap()
    }

    fn nfs_pv(name: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "nfs": {"server": "nfs.local", "path": "/x"}}
        }))
        .unwrap()
    }

    fn claim_vol(name: &str, claim: &str) -> serde_json::Value {
        json!({"name": name, "persistentVolumeClaim": {"claimName": claim}})
    }

    fn methods(c: &[VolumeChoice]) -> Vec<(String, String, VolumeMethod)> {
        c.iter()
            .map(|c| (c.pod.clone(), c.volume.clone(), c.method))
            .collect()
    }

    fn find<'a>(c: &'a [VolumeChoice], pod: &str, vol: &str) -> &'a VolumeChoice {
        c.iter()
            .find(|c| c.pod == pod && c.volume == vol)
            .unwrap_or_else(|| panic!("no choice for {pod}/{vol}: {c:#?}"))
    }

    fn all_kinds() -> serde_json::Value {
        json!([
            {"name": "host", "hostPath": {"path": "/etc"}},
            {"name": "sec", "secret": {"secretName": "s"}},
            {"name": "cm", "configMap": {"name": "c"}},
            {"name": "proj", "projected": {"sources": []}},
            {"name": "down", "downwardAPI": {"items": []}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
        ])
    }

    #[test]
    fn defaults_snapshot_claims_and_skip_the_rest() {
        let pods = [pod("p", json!({}), all_kinds())];
        let c = select(
            &pods,
            &[pvc("data", Some("pv1"), "fast", json!({}))],
            &[csi_pv("pv1", "fast", "1Gi")],
            &VolumeSettings::default(),
        );
        let data = find(&c, "p", "data");
        assert_eq!(data.method, VolumeMethod::Snapshot);
        assert_eq!(data.pvc.as_deref(), Some("data"));
        assert_eq!(data.pv.as_deref(), Some("pv1"));
        assert_eq!(data.pod_uid, "uid-p");
        assert_eq!(data.node_name.as_deref(), Some("node-1"));
        for v in ["host", "sec", "cm", "proj", "down", "scratch"] {
            assert_eq!(find(&c, "p", v).method, VolumeMethod::Skip, "{v}");
        }
        assert_eq!(c.len(), 7);
    }

    #[test]
    fn never_copied_even_when_asked() {
        let pods = [pod(
            "p",
            json!({BACKUP_VOLUMES_ANNOTATION: "host,sec,cm,proj,down,scratch"}),
            all_kinds(),
        )];
        let settings = VolumeSettings {
            default_volumes_to_fs_backup: false,
            policy: Some(
                VolumePolicies::parse(
                    "version: v1\nvolumePolicies:\n- conditions: {volumeTypes: [hostPath, secret]}\n  action: {type: fs-backup}\n",
                )
                .unwrap(),
            ),
            ..VolumeSettings::default()
        };
        let c = select(&pods, &[], &[], &settings);
        for v in ["host", "sec", "cm", "proj", "down"] {
            let x = find(&c, "p", v);
            assert_eq!(x.method, VolumeMethod::Skip, "{v}");
            assert!(x.reason.contains("never copied"), "{}", x.reason);
        }
        assert_eq!(find(&c, "p", "scratch").method, VolumeMethod::FsBackup);
        let with_default = VolumeSettings {
            default_volumes_to_fs_backup: true,
            ..VolumeSettings::default()
        };
        let c = select(&pods, &[], &[], &with_default);
        for v in ["host", "sec", "cm", "proj", "down"] {
            assert_eq!(find(&c, "p", v).method, VolumeMethod::Skip, "{v}");
        }
    }

    #[test]
    fn opt_in_annotation() {
        let pods = [pod(
            "p",
            json!({BACKUP_VOLUMES_ANNOTATION: " scratch , data"}),
            json!([{"name": "scratch", "emptyDir": {}}, claim_vol("data", "data"),
                   claim_vol("other", "other"), {"name": "tmp", "emptyDir": {}}]),
        )];
        let c = select(
            &pods,
            &[
                pvc("data", Some("pv1"), "", json!({})),
                pvc("other", Some("pv2"), "", json!({})),
            ],
            &[csi_pv("pv1", "", "1Gi"), csi_pv("pv2", "", "1Gi")],
            &VolumeSettings::default(),
        );
        assert_eq!(
            methods(&c),
            vec![
                ("p".into(), "scratch".into(), VolumeMethod::FsBackup),
                ("p".into(), "data".into(), VolumeMethod::FsBackup),
                ("p".into(), "other".into(), VolumeMethod::Snapshot),
                ("p".into(), "tmp".into(), VolumeMethod::Skip),
            ]
        );
        assert_eq!(
            find(&c, "p", "data").reason,
            format!("pod annotation {BACKUP_VOLUMES_ANNOTATION}")
        );
    }

    #[test]
    fn opt_out_annotation_with_default_fs_backup() {
        let pods = [pod(
            "p",
            json!({BACKUP_VOLUMES_EXCLUDES_ANNOTATION: "data,tmp",
                   BACKUP_VOLUMES_ANNOTATION: "ignored"}),
            json!([{"name": "scratch", "emptyDir": {}}, claim_vol("data", "data"),
                   {"name": "tmp", "emptyDir": {}}]),
        )];
        let settings = VolumeSettings {
            default_volumes_to_fs_backup: true,
            ..VolumeSettings::default()
        };
        let c = select(
            &pods,
            &[pvc("data", Some("pv1"), "", json!({}))],
            &[csi_pv("pv1", "", "1Gi")],
            &settings,
        );
        assert_eq!(find(&c, "p", "scratch").method, VolumeMethod::FsBackup);
        let data = find(&c, "p", "data");
        assert_eq!(data.method, VolumeMethod::Snapshot);
        assert!(data.reason.contains(BACKUP_VOLUMES_EXCLUDES_ANNOTATION));
        assert_eq!(find(&c, "p", "tmp").method, VolumeMethod::Skip);
    }

    #[test]
    fn snapshot_volumes_false() {
        let pods = [pod("p", json!({}), json!([claim_vol("data", "data")]))];
        let settings = VolumeSettings {
            snapshot_volumes: Some(false),
            ..VolumeSettings::default()
        };
        let pvcs = [pvc("data", Some("pv1"), "", json!({}))];
        let pvs = [csi_pv("pv1", "", "1Gi")];
        let c = select(&pods, &pvcs, &pvs, &settings);
        assert_eq!(find(&c, "p", "data").method, VolumeMethod::Skip);
        // A policy's snapshot action still takes a snapshot.
        let settings = VolumeSettings {
            policy: Some(
                VolumePolicies::parse(
                    "version: v1\nvolumePolicies:\n- conditions: {csi: {driver: csi.test}}\n  action: {type: snapshot}\n",
                )
                .unwrap(),
            ),
            ..settings
        };
        let c = select(&pods, &pvcs, &pvs, &settings);
        let data = find(&c, "p", "data");
        assert_eq!(data.method, VolumeMethod::Snapshot);
        assert_eq!(data.reason, "volume policy volumePolicies[0]");
    }

    #[test]
    fn policy_wins_over_annotations_and_flags() {
        let pods = [pod(
            "p",
            json!({BACKUP_VOLUMES_ANNOTATION: "gold,silver,scratch"}),
            json!([claim_vol("gold", "gold"), claim_vol("silver", "silver"),
                   {"name": "scratch", "emptyDir": {}}, claim_vol("bronze", "bronze")]),
        )];
        let pvcs = [
            pvc("gold", Some("pv-g"), "gold", json!({})),
            pvc("silver", Some("pv-s"), "silver", json!({"env": "prod"})),
            pvc("bronze", Some("pv-b"), "bronze", json!({})),
        ];
        let pvs = [
            csi_pv("pv-g", "gold", "10Gi"),
            csi_pv("pv-s", "silver", "1Gi"),
            csi_pv("pv-b", "bronze", "1Gi"),
        ];
        let settings = VolumeSettings {
            policy: Some(
                VolumePolicies::parse(
                    "version: v1\nvolumePolicies:\n\
                     - conditions: {storageClass: [gold]}\n  action: {type: snapshot}\n\
                     - conditions: {pvcLabels: {env: prod}}\n  action: {type: skip}\n\
                     - conditions: {volumeTypes: [emptyDir]}\n  action: {type: skip}\n\
                     - conditions: {capacity: \"0,2Gi\", storageClass: [bronze]}\n  action: {type: fs-backup}\n",
                )
                .unwrap(),
            ),
            ..VolumeSettings::default()
        };
        let c = select(&pods, &pvcs, &pvs, &settings);
        assert_eq!(find(&c, "p", "gold").method, VolumeMethod::Snapshot);
        assert_eq!(
            find(&c, "p", "gold").reason,
            "volume policy volumePolicies[0]"
        );
        assert_eq!(find(&c, "p", "silver").method, VolumeMethod::Skip);
        assert_eq!(find(&c, "p", "scratch").method, VolumeMethod::Skip);
        assert_eq!(find(&c, "p", "bronze").method, VolumeMethod::FsBackup);
        assert_eq!(
            find(&c, "p", "bronze").reason,
            "volume policy volumePolicies[3]"
        );
    }

    #[test]
    fn snapshot_needs_bound_csi_claim() {
        let pods = [pod(
            "p",
            json!({}),
            json!([
                claim_vol("nfs", "nfs"),
                claim_vol("pending", "pending"),
                claim_vol("missing", "missing")
            ]),
        )];
        let c = select(
            &pods,
            &[
                pvc("nfs", Some("pv-n"), "", json!({})),
                pvc("pending", None, "", json!({})),
            ],
            &[nfs_pv("pv-n")],
            &VolumeSettings::default(),
        );
        let nfs = find(&c, "p", "nfs");
        assert_eq!(nfs.method, VolumeMethod::Skip);
        assert!(nfs.reason.contains("not a CSI volume"), "{}", nfs.reason);
        assert!(find(&c, "p", "pending").reason.contains("not bound"));
        assert_eq!(find(&c, "p", "missing").method, VolumeMethod::Skip);
    }

    #[test]
    fn shared_claim_is_backed_up_once() {
        let pods = [
            pod("a", json!({}), json!([claim_vol("d", "shared")])),
            pod(
                "b",
                json!({BACKUP_VOLUMES_ANNOTATION: "d"}),
                json!([claim_vol("d", "shared")]),
            ),
            pod(
                "c",
                json!({BACKUP_VOLUMES_ANNOTATION: "d"}),
                json!([claim_vol("d", "shared")]),
            ),
        ];
        let c = select(
            &pods,
            &[pvc("shared", Some("pv"), "", json!({}))],
            &[csi_pv("pv", "", "1Gi")],
            &VolumeSettings::default(),
        );
        assert_eq!(find(&c, "a", "d").method, VolumeMethod::Skip);
        assert!(
            find(&c, "a", "d")
                .reason
                .contains("file system with pod app/b")
        );
        assert_eq!(find(&c, "b", "d").method, VolumeMethod::FsBackup);
        assert_eq!(find(&c, "c", "d").method, VolumeMethod::Skip);
        let snap_only = [
            pod("a", json!({}), json!([claim_vol("d", "shared")])),
            pod("b", json!({}), json!([claim_vol("d", "shared")])),
        ];
        let c = select(
            &snap_only,
            &[pvc("shared", Some("pv"), "", json!({}))],
            &[csi_pv("pv", "", "1Gi")],
            &VolumeSettings::default(),
        );
        assert_eq!(
            c.iter()
                .filter(|c| c.method == VolumeMethod::Snapshot)
                .count(),
            1
        );
    }

    #[test]
    fn unmounted_claims_and_ephemeral_volumes() {
        let pods = [pod(
            "p",
            json!({}),
            json!([{"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]),
        )];
        let pvcs = [
            pvc("p-eph", Some("pv-e"), "", json!({})),
            pvc("lonely", Some("pv-l"), "", json!({})),
        ];
        let pvs = [csi_pv("pv-e", "", "1Gi"), csi_pv("pv-l", "", "1Gi")];
        let c = select(&pods, &pvcs, &pvs, &VolumeSettings::default());
        let eph = find(&c, "p", "eph");
        assert_eq!(eph.pvc.as_deref(), Some("p-eph"));
        assert_eq!(eph.method, VolumeMethod::Snapshot);
        let lonely = find(&c, "", "");
        assert_eq!(lonely.pvc.as_deref(), Some("lonely"));
        assert_eq!(lonely.method, VolumeMethod::Snapshot);
        assert_eq!(c.len(), 2);
        let fs_policy = VolumeSettings {
            policy: Some(
                VolumePolicies::parse(
                    "version: v1\nvolumePolicies:\n- conditions: {}\n  action: {type: fs-backup}\n",
                )
                .unwrap(),
            ),
            ..VolumeSettings::default()
        };
        let c = select(&pods, &pvcs, &pvs, &fs_policy);
        assert_eq!(find(&c, "", "").method, VolumeMethod::Skip);
        assert_eq!(find(&c, "p", "eph").method, VolumeMethod::FsBackup);
    }
}
