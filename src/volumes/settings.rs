//! Volume settings between their three forms: CLI flags / `BackupRequest`, the tidemark
//! `spec.template.volumes` block, and Velero's Backup record fields.

use serde_json::json;

use super::{DEFAULT_CSI_SNAPSHOT_TIMEOUT, VolumeSettings};
use crate::api::tidemark::VolumesTemplate;
use crate::api::velero::{self, BackupSpec};
use crate::backup::BackupRequest;

/// Velero's `spec.resourcePolicy.kind` for a ConfigMap.
pub const RESOURCE_POLICY_KIND: &str = "configmap";

/// Writes the volume settings into a Velero Backup spec, with Velero's field names:
/// `snapshotVolumes` (absent: auto), `defaultVolumesToFsBackup` (always, as Velero's backup
/// controller resolves it), `csiSnapshotTimeout` (Go duration) and
/// `resourcePolicy: {kind: configmap, name}`.
pub fn record_spec(spec: &mut BackupSpec, v: &VolumeSettings, configmap: Option<&str>) {
    spec.snapshot_volumes = v.snapshot_volumes;
    spec.extra.insert(
        "defaultVolumesToFsBackup".into(),
        json!(v.default_volumes_to_fs_backup),
    );
    spec.extra.insert(
        "csiSnapshotTimeout".into(),
        json!(velero::go_duration(v.csi_snapshot_timeout)),
    );
    if let Some(name) = configmap {
        let name = name.rsplit('/').next().unwrap_or(name);
        spec.extra.insert(
            "resourcePolicy".into(),
            json!({"kind": RESOURCE_POLICY_KIND, "name": name}),
        );
    }
}

/// Applies `spec.template.volumes` to an engine request.
///
/// # Errors
/// `spec.template.volumes.csiSnapshotTimeout: ...` for a malformed duration.
pub fn apply_template(req: &mut BackupRequest, t: &VolumesTemplate) -> Result<(), String> {
    req.volumes.snapshot_volumes = t.snapshot_volumes;
    req.volumes.default_volumes_to_fs_backup = t.default_volumes_to_fs_backup.unwrap_or(false);
    if let Some(d) = &t.csi_snapshot_timeout {
        req.volumes.csi_snapshot_timeout =
            crate::plan::expiry::parse_duration("spec.template.volumes.csiSnapshotTimeout", d)
                .map_err(|e| e.to_string())?;
    }
    req.resource_policy_configmap = t.resource_policy.clone().filter(|s| !s.is_empty());
    Ok(())
}

/// The `spec.template.volumes` block for a request (`None` when every setting is the default).
#[must_use]
pub fn template_of(req: &BackupRequest) -> Option<VolumesTemplate> {
    let v = &req.volumes;
    let t = VolumesTemplate {
        snapshot_volumes: v.snapshot_volumes,
        default_volumes_to_fs_backup: v.default_volumes_to_fs_backup.then_some(true),
        csi_snapshot_timeout: (v.csi_snapshot_timeout != DEFAULT_CSI_SNAPSHOT_TIMEOUT)
            .then(|| velero::go_duration(v.csi_snapshot_timeout)),
        resource_policy: req.resource_policy_configmap.clone(),
    };
    (t != VolumesTemplate::default()).then_some(t)
}

/// The namespace and name of the policy ConfigMap: `ns/name`, or `name` in `default_ns`.
#[must_use]
pub fn configmap_ref<'a>(value: &'a str, default_ns: &'a str) -> (&'a str, &'a str) {
    value.split_once('/').unwrap_or((default_ns, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn template_round_trip_and_record_fields() {
        let mut req = BackupRequest::new("b");
        assert_eq!(template_of(&req), None);
        let rec = req.record().unwrap();
        assert_eq!(rec.spec.extra["defaultVolumesToFsBackup"], json!(false));
        let t = VolumesTemplate {
            snapshot_volumes: Some(false),
            default_volumes_to_fs_backup: Some(true),
            csi_snapshot_timeout: Some("2m".into()),
            resource_policy: Some("pols".into()),
        };
        apply_template(&mut req, &t).unwrap();
        assert_eq!(req.volumes.csi_snapshot_timeout, Duration::from_secs(120));
        assert!(req.volumes.default_volumes_to_fs_backup);
        let back = template_of(&req).unwrap();
        assert_eq!(back.csi_snapshot_timeout.as_deref(), Some("2m0s"));
        assert_eq!(back.resource_policy.as_deref(), Some("pols"));
        let rec = req.record().unwrap();
        assert_eq!(rec.spec.snapshot_volumes, Some(false));
        assert_eq!(rec.spec.extra["defaultVolumesToFsBackup"], json!(true));
        assert_eq!(rec.spec.extra["csiSnapshotTimeout"], json!("2m0s"));
        assert_eq!(
            rec.spec.extra["resourcePolicy"],
            json!({"kind": "configmap", "name": "pols"})
        );
        let bad = VolumesTemplate {
            csi_snapshot_timeout: Some("soon".into()),
            ..VolumesTemplate::default()
        };
        let e = apply_template(&mut req, &bad).unwrap_err();
        assert!(
            e.contains("spec.template.volumes.csiSnapshotTimeout"),
            "{e}"
        );
        assert_eq!(configmap_ref("a/b", "t"), ("a", "b"));
        assert_eq!(configmap_ref("b", "t"), ("t", "b"));
    }
}
