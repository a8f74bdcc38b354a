//! Velero's volume policies: which volumes are skipped, snapshotted or copied by file system.
//!
//! The format is the YAML a Velero user keeps in the ConfigMap named by
//! `velero backup create --resource-policies-configmap` (Velero docs, "Resource policies"):
//!
//! ```yaml
//! version: v1
//! volumePolicies:
//!   - conditions:
//!       capacity: "10Gi,100Gi"          # min,max; an empty side is unbounded
//!       storageClass: [gp2, standard]
//!       csi: {driver: ebs.csi.aws.com, volumeAttributes: {type: io1}}
//!       nfs: {server: 192.168.1.20, path: /export}
//!       volumeTypes: [emptyDir, nfs]
//!       pvcLabels: {environment: production}
//!       pvcPhase: [Pending, Lost]
//!     action:
//!       type: skip                      # skip | snapshot | fs-backup
//! ```
//!
//! All conditions given in one policy must hold; the first policy whose conditions hold decides
//! (later ones are not consulted); when none holds, the backup's flags and pod annotations decide
//! (see [`super::select`]). Parsing is strict: unknown fields, unknown action types, volume types
//! or phases and malformed capacities are errors naming the field
//! (`volumePolicies[1].conditions.capacity`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Volume};
use serde::Deserialize;

use super::{VolumeMethod, VolumesError};

/// The only document version Velero defines.
pub const VERSION: &str = "v1";

/// The `volumeTypes` values Velero accepts: the names of the volume source fields of a pod
/// volume or PersistentVolume.
pub const VOLUME_TYPES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageos",
    "vsphereVolume",
];

/// The PVC phases `pvcPhase` may name.
pub const PVC_PHASES: &[&str] = &["Pending", "Bound", "Lost"];

/// A parsed, validated volume policy document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumePolicies {
    /// The policies in document order (first match wins).
    pub policies: Vec<VolumePolicy>,
}

/// One entry of `volumePolicies`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumePolicy {
    /// The conditions; all must hold.
    pub conditions: Conditions,
    /// What to do with a matching volume.
    pub action: VolumeMethod,
}

/// The conditions of one policy; `None`/empty = not constrained.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conditions {
    /// `capacity: "min,max"` as byte bounds (in thousandths of a byte, to hold `500m`-style
    /// quantities exactly); `0` = unbounded on that side.
    pub capacity: Option<(u128, u128)>,
    /// `storageClass`: the volume's storage class must be one of these.
    pub storage_class: Vec<String>,
    /// `csi`: the volume must be a CSI volume of this driver, with these attributes.
    pub csi: Option<CsiCondition>,
    /// `nfs`: the volume must be an NFS volume of this server/path (empty = any).
    pub nfs: Option<NfsCondition>,
    /// `volumeTypes`: the volume's source type must be one of these ([`VOLUME_TYPES`]).
    pub volume_types: Vec<String>,
    /// `pvcLabels`: the claim must carry all these labels.
    pub pvc_labels: BTreeMap<String, String>,
    /// `pvcPhase`: the claim's `status.phase` must be one of these ([`PVC_PHASES`]).
    pub pvc_phase: Vec<String>,
}

/// The `csi` condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CsiCondition {
    /// `driver`: the CSI driver name (empty = any CSI volume).
    pub driver: String,
    /// `volumeAttributes`: entries the volume's `csi.volumeAttributes` must contain.
    pub volume_attributes: BTreeMap<String, String>,
}

/// The `nfs` condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NfsCondition {
    /// `server` (empty = any).
    pub server: String,
    /// `path` (empty = any).
    pub path: String,
}

/// What the conditions are checked against: the facts of one pod volume, its claim and its
/// PersistentVolume. Build with [`VolumeFacts::of_pod_volume`] / [`VolumeFacts::of_claim`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeFacts {
    /// Capacity in thousandths of a byte (the PV's `spec.capacity.storage`); `None` = unknown,
    /// compared as 0 as Velero does.
    pub capacity: Option<u128>,
    /// The storage class (PV's `spec.storageClassName`, else the claim's).
    pub storage_class: Option<String>,
    /// The volume source type ([`VOLUME_TYPES`] spelling).
    pub volume_type: Option<&'static str>,
    /// CSI driver and volume attributes, for CSI volumes.
    pub csi: Option<(String, BTreeMap<String, String>)>,
    /// NFS server and path, for NFS volumes.
    pub nfs: Option<(String, String)>,
    /// The claim's labels (`None` = not a claim).
    pub pvc_labels: Option<BTreeMap<String, String>>,
    /// The claim's `status.phase`.
    pub pvc_phase: Option<String>,
}

/// The raw document, decoded strictly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDoc {
    version: String,
    #[serde(default)]
    volume_policies: Vec<RawPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    conditions: Option<RawConditions>,
    action: RawAction,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConditions {
    capacity: Option<String>,
    #[serde(default)]
    storage_class: Vec<String>,
    csi: Option<RawCsi>,
    nfs: Option<RawNfs>,
    #[serde(default)]
    volume_types: Vec<String>,
    #[serde(default)]
    pvc_labels: BTreeMap<String, String>,
    #[serde(default)]
    pvc_phase: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCsi {
    #[serde(default)]
    driver: String,
    #[serde(default)]
    volume_attributes: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNfs {
    #[serde(default)]
    server: String,
    #[serde(default)]
    path: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    #[serde(rename = "type")]
    kind: String,
    /// Velero passes these to plugins; tidemark has none and ignores them.
    #[serde(default)]
    #[allow(dead_code)]
    parameters: Option<serde_yaml::Value>,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> VolumesError {
    VolumesError::Policy {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Parses a Kubernetes quantity (`10Gi`, `500M`, `1.5e3`, `250m`) into thousandths of a unit.
///
/// # Errors
/// A message for a malformed or negative quantity.
pub fn parse_quantity(s: &str) -> Result<u128, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a quantity (e.g. 10Gi, 500M)");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let num = num.strip_prefix('+').unwrap_or(num);
    if num.is_empty() || num.matches('.').count() > 1 || num == "." {
        return Err(bad());
    }
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int}{frac}");
    let mantissa: u128 = digits.parse().map_err(|_| bad())?;
    // value = mantissa * 10^-frac.len() * factor; we return value * 1000.
    let (mul, exp10): (u128, i32) = match suffix {
        "" => (1, 0),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        e if e.starts_with(['e', 'E']) => {
            let x: i32 = e[1..].parse().map_err(|_| bad())?;
            (1, x)
        }
        _ => return Err(bad()),
    };
    let exp = exp10 + 3 - i32::try_from(frac.len()).map_err(|_| bad())?;
    let scaled = mantissa.checked_mul(mul).ok_or_else(bad)?;
    let v = if exp >= 0 {
        10u128
            .checked_pow(exp.unsigned_abs())
            .and_then(|p| scaled.checked_mul(p))
            .ok_or_else(bad)?
    } else {
        let p = 10u128.checked_pow(exp.unsigned_abs()).ok_or_else(bad)?;
        scaled.div_ceil(p)
    };
    Ok(v)
}

fn parse_capacity(field: &str, s: &str) -> Result<Option<(u128, u128)>, VolumesError> {
    let Some((lo, hi)) = s.split_once(',') else {
        return Err(err(
            field,
            format!("{s:?} is not \"min,max\" (e.g. \"10Gi,100Gi\", \"10Gi,\")"),
        ));
    };
    if hi.contains(',') {
        return Err(err(field, format!("{s:?} is not \"min,max\"")));
    }
    let side = |v: &str| -> Result<u128, VolumesError> {
        if v.trim().is_empty() {
            Ok(0)
        } else {
            parse_quantity(v).map_err(|r| err(field, r))
        }
    };
    let (lo, hi) = (side(lo)?, side(hi)?);
    if hi != 0 && lo > hi {
        return Err(err(
            field,
            format!("minimum is larger than maximum in {s:?}"),
        ));
    }
    Ok((lo != 0 || hi != 0).then_some((lo, hi)))
}

impl VolumePolicies {
    /// Parses and validates a volume policy document (YAML or JSON).
    ///
    /// # Errors
    /// [`VolumesError::Policy`] naming the field at fault: a syntax error, an unknown field, a
    /// `version` other than `v1`, a malformed `capacity`, an unknown `volumeTypes` entry or
    /// `pvcPhase`, `csi.volumeAttributes` without `csi.driver`, an unknown `action.type`.
    pub fn parse(text: &str) -> Result<Self, VolumesError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let raw: RawDoc = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." {
                "document".to_string()
            } else {
                path
            };
            err(field, e.into_inner().to_string())
        })?;
        if raw.version != VERSION {
            return Err(err(
                "version",
                format!("{:?} is not supported (only {VERSION:?})", raw.version),
            ));
        }
        let mut policies = Vec::with_capacity(raw.volume_policies.len());
        for (i, p) in raw.volume_policies.into_iter().enumerate() {
            let at = format!("volumePolicies[{i}]");
            let action = match p.action.kind.as_str() {
                "skip" => VolumeMethod::Skip,
                "snapshot" => VolumeMethod::Snapshot,
                "fs-backup" => VolumeMethod::FsBackup,
                other => {
                    return Err(err(
                        format!("{at}.action.type"),
                        format!("{other:?} is not one of skip, snapshot, fs-backup"),
                    ));
                }
            };
            let c = p.conditions.unwrap_or_default();
            let capacity = match &c.capacity {
                Some(s) => parse_capacity(&format!("{at}.conditions.capacity"), s)?,
                None => None,
            };
            for (j, t) in c.volume_types.iter().enumerate() {
                if !VOLUME_TYPES.contains(&t.as_str()) {
                    return Err(err(
                        format!("{at}.conditions.volumeTypes[{j}]"),
                        format!(
                            "{t:?} is not a volume type (one of {})",
                            VOLUME_TYPES.join(", ")
                        ),
                    ));
                }
            }
            for (j, ph) in c.pvc_phase.iter().enumerate() {
                if !PVC_PHASES.contains(&ph.as_str()) {
                    return Err(err(
                        format!("{at}.conditions.pvcPhase[{j}]"),
                        format!("{ph:?} is not one of {}", PVC_PHASES.join(", ")),
                    ));
                }
            }
            if let Some(csi) = &c.csi
                && csi.driver.is_empty()
                && !csi.volume_attributes.is_empty()
            {
                return Err(err(
                    format!("{at}.conditions.csi.driver"),
                    "required when volumeAttributes is given",
                ));
            }
            policies.push(VolumePolicy {
                conditions: Conditions {
                    capacity,
                    storage_class: c.storage_class,
                    csi: c.csi.map(|x| CsiCondition {
                        driver: x.driver,
                        volume_attributes: x.volume_attributes,
                    }),
                    nfs: c.nfs.map(|x| NfsCondition {
                        server: x.server,
                        path: x.path,
                    }),
                    volume_types: c.volume_types,
                    pvc_labels: c.pvc_labels,
                    pvc_phase: c.pvc_phase,
                },
                action,
            });
        }
        Ok(Self { policies })
    }

    /// Reads the document from a ConfigMap: as Velero requires, `data` holds exactly one entry
    /// (any key) whose value is the document.
    ///
    /// # Errors
    /// [`VolumesError::PolicyConfigMap`] when `data` does not hold exactly one entry; the
    /// [`VolumePolicies::parse`] errors, with the ConfigMap named.
    pub fn from_configmap(cm: &ConfigMap) -> Result<Self, VolumesError> {
        let namespace = cm.metadata.namespace.clone().unwrap_or_default();
        let name = cm.metadata.name.clone().unwrap_or_default();
        let data = cm.data.as_ref().filter(|d| d.len() == 1).ok_or_else(|| {
            VolumesError::PolicyConfigMap {
                namespace: namespace.clone(),
                name: name.clone(),
                reason: "data must hold exactly one entry (the policy document)".into(),
            }
        })?;
        let (key, text) = data.iter().next().expect("one entry");
        Self::parse(text).map_err(|e| VolumesError::PolicyConfigMap {
            namespace,
            name,
            reason: format!("data.{key}: {e}"),
        })
    }

    /// The first policy whose conditions all hold for `facts`, with its index.
    #[must_use]
    pub fn first_match(&self, facts: &VolumeFacts) -> Option<(usize, &VolumePolicy)> {
        self.policies
            .iter()
            .enumerate()
            .find(|(_, p)| p.conditions.matches(facts))
    }
}

impl Conditions {
    /// Whether every condition given holds for `v`.
    #[must_use]
    pub fn matches(&self, v: &VolumeFacts) -> bool {
        if let Some((lo, hi)) = self.capacity {
            let cap = v.capacity.unwrap_or(0);
            if cap < lo || (hi != 0 && cap > hi) {
                return false;
            }
        }
        if !self.storage_class.is_empty()
            && !v
                .storage_class
                .as_ref()
                .is_some_and(|sc| self.storage_class.iter().any(|s| s == sc))
        {
            return false;
        }
        if let Some(c) = &self.csi {
            let Some((driver, attrs)) = &v.csi else {
                return false;
            };
            if !c.driver.is_empty() && &c.driver != driver {
                return false;
            }
            if !c
                .volume_attributes
                .iter()
                .all(|(k, want)| attrs.get(k) == Some(want))
            {
                return false;
            }
        }
        if let Some(c) = &self.nfs {
            let Some((server, path)) = &v.nfs else {
                return false;
            };
            if (!c.server.is_empty() && &c.server != server)
                || (!c.path.is_empty() && &c.path != path)
            {
                return false;
            }
        }
        if !self.volume_types.is_empty()
            && !v
                .volume_type
                .is_some_and(|t| self.volume_types.iter().any(|x| x == t))
        {
            return false;
        }
        if !self.pvc_labels.is_empty() {
            let Some(labels) = &v.pvc_labels else {
                return false;
            };
            if !self
                .pvc_labels
                .iter()
                .all(|(k, want)| labels.get(k) == Some(want))
            {
                return false;
            }
        }
        if !self.pvc_phase.is_empty()
            && !v
                .pvc_phase
                .as_ref()
                .is_some_and(|p| self.pvc_phase.iter().any(|x| x == p))
        {
            return false;
        }
        true
    }
}

/// The source type name of a pod volume ([`VOLUME_TYPES`] spelling); `None` for a PVC volume.
#[must_use]
pub fn pod_volume_type(v: &Volume) -> Option<&'static str> {
    let t = [
        (v.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (v.azure_disk.is_some(), "azureDisk"),
        (v.azure_file.is_some(), "azureFile"),
        (v.cephfs.is_some(), "cephfs"),
        (v.cinder.is_some(), "cinder"),
        (v.config_map.is_some(), "configMap"),
        (v.csi.is_some(), "csi"),
        (v.downward_api.is_some(), "downwardAPI"),
        (v.empty_dir.is_some(), "emptyDir"),
        (v.ephemeral.is_some(), "ephemeral"),
        (v.fc.is_some(), "fc"),
        (v.flex_volume.is_some(), "flexVolume"),
        (v.flocker.is_some(), "flocker"),
        (v.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (v.git_repo.is_some(), "gitRepo"),
        (v.glusterfs.is_some(), "glusterfs"),
        (v.host_path.is_some(), "hostPath"),
        (v.image.is_some(), "image"),
        (v.iscsi.is_some(), "iscsi"),
        (v.nfs.is_some(), "nfs"),
        (v.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (v.portworx_volume.is_some(), "portworxVolume"),
        (v.projected.is_some(), "projected"),
        (v.quobyte.is_some(), "quobyte"),
        (v.rbd.is_some(), "rbd"),
        (v.scale_io.is_some(), "scaleIO"),
        (v.secret.is_some(), "secret"),
        (v.storageos.is_some(), "storageos"),
        (v.vsphere_volume.is_some(), "vsphereVolume"),
    ];
    t.into_iter().find(|(set, _)| *set).map(|(_, n)| n)
}

/// The source type name of a PersistentVolume ([`VOLUME_TYPES`] spelling).
#[must_use]
pub fn pv_volume_type(pv: &PersistentVolume) -> Option<&'static str> {
    let s = pv.spec.as_ref()?;
    let t = [
        (s.aws_elastic_block_store.is_some(), "awsElasticBlockStore"),
        (s.azure_disk.is_some(), "azureDisk"),
        (s.azure_file.is_some(), "azureFile"),
        (s.cephfs.is_some(), "cephfs"),
        (s.cinder.is_some(), "cinder"),
        (s.csi.is_some(), "csi"),
        (s.fc.is_some(), "fc"),
        (s.flex_volume.is_some(), "flexVolume"),
        (s.flocker.is_some(), "flocker"),
        (s.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (s.glusterfs.is_some(), "glusterfs"),
        (s.host_path.is_some(), "hostPath"),
        (s.iscsi.is_some(), "iscsi"),
        (s.local.is_some(), "local"),
        (s.nfs.is_some(), "nfs"),
        (s.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (s.portworx_volume.is_some(), "portworxVolume"),
        (s.quobyte.is_some(), "quobyte"),
        (s.rbd.is_some(), "rbd"),
        (s.scale_io.is_some(), "scaleIO"),
        (s.storageos.is_some(), "storageos"),
        (s.vsphere_volume.is_some(), "vsphereVolume"),
    ];
    t.into_iter().find(|(set, _)| *set).map(|(_, n)| n)
}

impl VolumeFacts {
    /// The facts of a pod volume that is not a claim (emptyDir, inline NFS or CSI, ...).
    #[must_use]
    pub fn of_pod_volume(v: &Volume) -> Self {
        Self {
            volume_type: pod_volume_type(v),
            csi: v.csi.as_ref().map(|c| {
                (
                    c.driver.clone(),
                    c.volume_attributes.clone().unwrap_or_default(),
                )
            }),
            nfs: v.nfs.as_ref().map(|n| (n.server.clone(), n.path.clone())),
            ..Self::default()
        }
    }

    /// The facts of a claim and, when bound, its PersistentVolume (capacity, class, source type,
    /// CSI/NFS details come from the PV; labels and phase from the claim; an unbound claim gives
    /// its own `spec.storageClassName`).
    #[must_use]
    pub fn of_claim(pvc: Option<&PersistentVolumeClaim>, pv: Option<&PersistentVolume>) -> Self {
        let mut f = Self {
            pvc_labels: pvc.map(|c| c.metadata.labels.clone().unwrap_or_default()),
            pvc_phase: pvc.and_then(|c| c.status.as_ref()?.phase.clone()),
            storage_class: pvc
                .and_then(|c| c.spec.as_ref()?.storage_class_name.clone())
                .filter(|s| !s.is_empty()),
            ..Self::default()
        };
        if let Some(pv) = pv
            && let Some(s) = &pv.spec
        {
            f.volume_type = pv_volume_type(pv);
            f.capacity = s
                .capacity
                .as_ref()
                .and_then(|c| c.get("storage"))
                .and_then(|q| parse_quantity(&q.0).ok());
            if let Some(sc) = s.storage_class_name.clone().filter(|s| !s.is_empty()) {
                f.storage_class = Some(sc);
            }
            f.csi = s.csi.as_ref().map(|c| {
                (
                    c.driver.clone(),
                    c.volume_attributes.clone().unwrap_or_default(),
                )
            });
            f.nfs = s.nfs.as_ref().map(|n| (n.server.clone(), n.path.clone()));
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u128 = 1 << 30;

    fn one(conditions: &str, action: &str) -> VolumePolicies {
        let doc = format!(
            "version: v1\nvolumePolicies:\n- conditions:\n{}\n  action:\n    type: {action}\n",
            conditions
                .lines()
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        VolumePolicies::parse(&doc).unwrap_or_else(|e| panic!("{doc}\n{e}"))
    }

    fn field_of(e: VolumesError) -> String {
        match e {
            VolumesError::Policy { field, .. } => field,
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("10Gi").unwrap(), 10 * GI * 1000);
        assert_eq!(parse_quantity("1.5Gi").unwrap(), 3 * GI * 500);
        assert_eq!(parse_quantity("500M").unwrap(), 500_000_000_000);
        assert_eq!(parse_quantity("250m").unwrap(), 250);
        assert_eq!(parse_quantity("1e3").unwrap(), 1_000_000);
        assert_eq!(parse_quantity("42").unwrap(), 42_000);
        for bad in ["", "Gi", "1.2.3", "-1Gi", "10Gb", "ten"] {
            assert!(parse_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capacity_condition() {
        let p = one("capacity: \"10Gi,100Gi\"", "skip");
        let with = |g: u128| VolumeFacts {
            capacity: Some(g * GI * 1000),
            ..VolumeFacts::default()
        };
        assert!(p.first_match(&with(10)).is_some());
        assert!(p.first_match(&with(50)).is_some());
        assert!(p.first_match(&with(100)).is_some());
        assert!(p.first_match(&with(101)).is_none());
        assert!(p.first_match(&with(9)).is_none());
        assert!(p.first_match(&VolumeFacts::default()).is_none());
        let open_top = one("capacity: \"10Gi,\"", "skip");
        assert!(open_top.first_match(&with(1000)).is_some());
        assert!(open_top.first_match(&with(1)).is_none());
        let open_bottom = one("capacity: \",5Gi\"", "skip");
        assert!(open_bottom.first_match(&with(1)).is_some());
        assert!(open_bottom.first_match(&with(6)).is_none());
    }

    #[test]
    fn capacity_errors_name_the_field() {
        for bad in ["10Gi", "abc,", "20Gi,10Gi", "1,2,3"] {
            let doc = format!(
                "version: v1\nvolumePolicies:\n- conditions: {{}}\n  action: {{type: skip}}\n- conditions:\n    capacity: \"{bad}\"\n  action: {{type: skip}}\n"
            );
            let e = VolumePolicies::parse(&doc).unwrap_err();
            assert_eq!(
                field_of(e),
                "volumePolicies[1].conditions.capacity",
                "{bad}"
            );
        }
    }

    #[test]
    fn storage_class_condition() {
        let p = one("storageClass: [gp2, standard]", "snapshot");
        let sc = |s: Option<&str>| VolumeFacts {
            storage_class: s.map(str::to_string),
            ..VolumeFacts::default()
        };
        assert!(p.first_match(&sc(Some("standard"))).is_some());
        assert!(p.first_match(&sc(Some("gp3"))).is_none());
        assert!(p.first_match(&sc(None)).is_none());
    }

    #[test]
    fn csi_condition() {
        let p = one(
            "csi:\n  driver: ebs.csi.aws.com\n  volumeAttributes:\n    type: io1",
            "snapshot",
        );
        let csi = |d: &str, attrs: &[(&str, &str)]| VolumeFacts {
            csi: Some((
                d.into(),
                attrs
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            )),
            ..VolumeFacts::default()
        };
        assert!(
            p.first_match(&csi("ebs.csi.aws.com", &[("type", "io1"), ("x", "y")]))
                .is_some()
        );
        assert!(
            p.first_match(&csi("ebs.csi.aws.com", &[("type", "gp2")]))
                .is_none()
        );
        assert!(p.first_match(&csi("ebs.csi.aws.com", &[])).is_none());
        assert!(p.first_match(&csi("other", &[("type", "io1")])).is_none());
        assert!(p.first_match(&VolumeFacts::default()).is_none());
        let any_driver = one("csi: {driver: d}", "skip");
        assert!(any_driver.first_match(&csi("d", &[])).is_some());
        let e = VolumePolicies::parse(
            "version: v1\nvolumePolicies:\n- conditions: {csi: {volumeAttributes: {a: b}}}\n  action: {type: skip}\n",
        )
        .unwrap_err();
        assert_eq!(field_of(e), "volumePolicies[0].conditions.csi.driver");
    }

    #[test]
    fn nfs_condition() {
        let nfs = |s: &str, p: &str| VolumeFacts {
            nfs: Some((s.into(), p.into())),
            ..VolumeFacts::default()
        };
        let both = one("nfs: {server: 10.0.0.1, path: /export}", "skip");
        assert!(both.first_match(&nfs("10.0.0.1", "/export")).is_some());
        assert!(both.first_match(&nfs("10.0.0.1", "/other")).is_none());
        assert!(both.first_match(&nfs("10.0.0.2", "/export")).is_none());
        let server = one("nfs: {server: 10.0.0.1}", "skip");
        assert!(server.first_match(&nfs("10.0.0.1", "/any")).is_some());
        let any = one("nfs: {}", "skip");
        assert!(any.first_match(&nfs("h", "/p")).is_some());
        assert!(any.first_match(&VolumeFacts::default()).is_none());
    }

    #[test]
    fn volume_types_condition() {
        let p = one("volumeTypes: [emptyDir, nfs]", "fs-backup");
        let t = |x: &'static str| VolumeFacts {
            volume_type: Some(x),
            ..VolumeFacts::default()
        };
        assert!(p.first_match(&t("emptyDir")).is_some());
        assert!(p.first_match(&t("nfs")).is_some());
        assert!(p.first_match(&t("csi")).is_none());
        let e = VolumePolicies::parse(
            "version: v1\nvolumePolicies:\n- conditions: {volumeTypes: [csi, tmpfs]}\n  action: {type: skip}\n",
        )
        .unwrap_err();
        assert_eq!(field_of(e), "volumePolicies[0].conditions.volumeTypes[1]");
    }

    #[test]
    fn pvc_labels_condition() {
        let p = one("pvcLabels: {env: prod, tier: db}", "skip");
        let l = |pairs: &[(&str, &str)]| VolumeFacts {
            pvc_labels: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            ..VolumeFacts::default()
        };
        assert!(
            p.first_match(&l(&[("env", "prod"), ("tier", "db"), ("x", "1")]))
                .is_some()
        );
        assert!(p.first_match(&l(&[("env", "prod")])).is_none());
        assert!(
            p.first_match(&l(&[("env", "dev"), ("tier", "db")]))
                .is_none()
        );
        assert!(p.first_match(&VolumeFacts::default()).is_none());
    }

    #[test]
    fn pvc_phase_condition() {
        let p = one("pvcPhase: [Pending, Lost]", "skip");
        let ph = |x: &str| VolumeFacts {
            pvc_phase: Some(x.into()),
            ..VolumeFacts::default()
        };
        assert!(p.first_match(&ph("Pending")).is_some());
        assert!(p.first_match(&ph("Lost")).is_some());
        assert!(p.first_match(&ph("Bound")).is_none());
        assert!(p.first_match(&VolumeFacts::default()).is_none());
        let e = VolumePolicies::parse(
            "version: v1\nvolumePolicies:\n- conditions: {pvcPhase: [Released]}\n  action: {type: skip}\n",
        )
        .unwrap_err();
        assert_eq!(field_of(e), "volumePolicies[0].conditions.pvcPhase[0]");
    }

    #[test]
    fn each_action_and_first_match_wins() {
        let doc = "version: v1\nvolumePolicies:\n\
            - conditions: {storageClass: [a]}\n  action: {type: skip}\n\
            - conditions: {storageClass: [a, b]}\n  action: {type: snapshot}\n\
            - conditions: {}\n  action: {type: fs-backup, parameters: {x: 1}}\n";
        let p = VolumePolicies::parse(doc).unwrap();
        let sc = |s: &str| VolumeFacts {
            storage_class: Some(s.into()),
            ..VolumeFacts::default()
        };
        let m = |f| p.first_match(&f).map(|(i, x)| (i, x.action));
        assert_eq!(m(sc("a")), Some((0, VolumeMethod::Skip)));
        assert_eq!(m(sc("b")), Some((1, VolumeMethod::Snapshot)));
        assert_eq!(m(sc("c")), Some((2, VolumeMethod::FsBackup)));
    }

    #[test]
    fn all_conditions_must_hold() {
        let p = one("storageClass: [a]\nvolumeTypes: [csi]", "skip");
        let f = VolumeFacts {
            storage_class: Some("a".into()),
            volume_type: Some("nfs"),
            ..VolumeFacts::default()
        };
        assert!(p.first_match(&f).is_none());
        let f = VolumeFacts {
            volume_type: Some("csi"),
            ..f
        };
        assert!(p.first_match(&f).is_some());
    }

    #[test]
    fn strict_errors() {
        let cases = [
            ("version: v2\nvolumePolicies: []\n", "version"),
            (
                "version: v1\nvolumePolicies:\n- conditions: {}\n  action: {type: delete}\n",
                "volumePolicies[0].action.type",
            ),
            (
                "version: v1\nvolumePolicies:\n- conditions: {storageclass: [a]}\n  action: {type: skip}\n",
                "volumePolicies[0].conditions.storageclass",
            ),
            (
                "version: v1\nvolumePolicies:\n- conditions: {}\n",
                "volumePolicies[0]",
            ),
            ("version: v1\nvolumePolicy: []\n", "volumePolicy"),
            (
                "version: v1\nvolumePolicies:\n- conditions: {storageClass: a}\n  action: {type: skip}\n",
                "volumePolicies[0].conditions.storageClass",
            ),
        ];
        for (doc, field) in cases {
            let e = VolumePolicies::parse(doc).unwrap_err();
            let msg = e.to_string();
            assert_eq!(field_of(e), field, "{doc} -> {msg}");
        }
    }

    #[test]
    fn from_configmap_needs_one_entry() {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("pol".into());
        cm.metadata.namespace = Some("velero".into());
        assert!(matches!(
            VolumePolicies::from_configmap(&cm),
            Err(VolumesError::PolicyConfigMap { .. })
        ));
        cm.data = Some(BTreeMap::from([(
            "policy.yaml".to_string(),
            "version: v1\nvolumePolicies:\n- conditions: {volumeTypes: [emptyDir]}\n  action: {type: skip}\n".to_string(),
        )]));
        let p = VolumePolicies::from_configmap(&cm).unwrap();
        assert_eq!(p.policies.len(), 1);
        cm.data.as_mut().unwrap().insert(
            "policy.yaml".into(),
            "version: v1\nvolumePolicies: 3\n".into(),
        );
        let e = VolumePolicies::from_configmap(&cm).unwrap_err().to_string();
        assert!(
            e.contains("velero/pol")
                && e.contains("data.policy.yaml")
                && e.contains("volumePolicies"),
            "{e}"
        );
    }
}
