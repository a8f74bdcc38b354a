//! The per-volume table of `backup describe --details` (and the record it reads).
//!
//! Rows come from tidemark's own `tidemark-volumes.json` in the backup folder (the decision per
//! pod volume, [`VolumeChoice`]), joined with Velero's `<name>-volumeinfo.json.gz` (CSI results,
//! sizes, times) and the file-system records (`pvbInfo` entries, else
//! `<name>-podvolumebackups.json.gz`). Backups written by Velero (no tidemark file) get one row
//! per `volumeinfo` entry.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::csi::{self, VolumeInfo};
use super::{VolumeChoice, VolumeMethod, VolumesError};
use crate::report::text;
use crate::store::Store;

/// tidemark's record of the decision per volume, in the backup folder (a JSON list of
/// [`VolumeChoice`]).
pub const VOLUMES_FILE: &str = "tidemark-volumes.json";

/// One row of the table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VolumeRow {
    /// `namespace/pod` (`namespace/-` for a claim no pod mounts).
    pub pod: String,
    /// The pod's volume name (`-` if none).
    pub volume: String,
    /// The claim (`-` if none).
    pub pvc: String,
    /// `snapshot`, `fs-backup`, `skip`.
    pub method: String,
    /// Bytes (snapshot size, or bytes read by the file-system backup).
    pub size: Option<u64>,
    /// Seconds from start to completion.
    pub duration: Option<f64>,
    /// `succeeded`, `failed`, `skipped`, `unknown`.
    pub result: String,
    /// Why skipped, or the error.
    pub detail: String,
}

fn secs(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<f64> {
    Some((b? - a?).num_milliseconds() as f64 / 1000.0)
}

fn ts(v: &Value, p: &str) -> Option<DateTime<Utc>> {
    v.pointer(p)
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A file-system record (Velero PodVolumeBackup JSON) as (size, duration, result, detail).
fn pvb_facts(r: &Value) -> (Option<u64>, Option<f64>, String, String) {
    let phase = r
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let result = match phase {
        "Completed" => "succeeded",
        "Failed" => "failed",
        "" => "unknown",
        _ => "unfinished",
    };
    (
        r.pointer("/status/progress/totalBytes")
            .and_then(Value::as_u64),
        secs(
            ts(r, "/status/startTimestamp"),
            ts(r, "/status/completionTimestamp"),
        ),
        result.into(),
        r.pointer("/status/message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .into(),
    )
}

/// Builds the rows (pure).
#[must_use]
pub fn rows(choices: &[VolumeChoice], infos: &[VolumeInfo], pvbs: &[Value]) -> Vec<VolumeRow> {
    let csi_of: BTreeMap<(&str, &str), &VolumeInfo> = infos
        .iter()
        .filter(|i| i.backup_method == csi::METHOD_CSI)
        .map(|i| ((i.pvc_namespace.as_str(), i.pvc_name.as_str()), i))
        .collect();
    let pvb_of =
        |ns: &str, pod: &str, vol: &str| -> Option<(Option<u64>, Option<f64>, String, String)> {
            if let Some(i) = infos.iter().find(|i| {
                i.pvb_info.as_ref().is_some_and(|p| {
                    p["podNamespace"] == ns && p["podName"] == pod && p["volumeName"] == vol
                })
            }) {
                let p = i.pvb_info.as_ref().expect("checked");
                return Some((
                    p["size"].as_u64(),
                    secs(i.start_timestamp, i.completion_timestamp),
                    if i.result.is_empty() {
                        "unknown".into()
                    } else {
                        i.result.clone()
                    },
                    i.error.clone().unwrap_or_default(),
                ));
            }
            pvbs.iter()
                .find(|r| {
                    r.pointer("/spec/pod/namespace").and_then(Value::as_str) == Some(ns)
                        && r.pointer("/spec/pod/name").and_then(Value::as_str) == Some(pod)
                        && r.pointer("/spec/volume").and_then(Value::as_str) == Some(vol)
                })
                .map(pvb_facts)
        };
    let dash = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    if choices.is_empty() {
        return infos
            .iter()
            .map(|i| {
                let pvb = i.pvb_info.as_ref();
                let s = |k: &str| {
                    pvb.and_then(|p| p[k].as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                VolumeRow {
                    pod: format!(
                        "{}/{}",
                        dash(&s("podNamespace").max(i.pvc_namespace.clone())),
                        dash(&s("podName"))
                    ),
                    volume: dash(&s("volumeName")),
                    pvc: dash(&i.pvc_name),
                    method: match i.backup_method.as_str() {
                        csi::METHOD_CSI => "snapshot".into(),
                        "PodVolumeBackup" => "fs-backup".into(),
                        "" => "skip".into(),
                        m => m.to_string(),
                    },
                    size: i
                        .csi_snapshot_info
                        .as_ref()
                        .and_then(|c| u64::try_from(c.size).ok())
                        .or_else(|| pvb.and_then(|p| p["size"].as_u64())),
                    duration: secs(i.start_timestamp, i.completion_timestamp),
                    result: if i.skipped {
                        "skipped".into()
                    } else if i.result.is_empty() {
                        "unknown".into()
                    } else {
                        i.result.clone()
                    },
                    detail: if i.skipped {
                        i.skipped_reason.clone()
                    } else {
                        i.error.clone().unwrap_or_default()
                    },
                }
            })
            .collect();
    }
    choices
        .iter()
        .map(|c| {
            let mut row = VolumeRow {
                pod: format!("{}/{}", c.namespace, dash(&c.pod)),
                volume: dash(&c.volume),
                pvc: dash(c.pvc.as_deref().unwrap_or_default()),
                method: c.method.to_string(),
                result: "skipped".into(),
                detail: c.reason.clone(),
                ..VolumeRow::default()
            };
            match c.method {
                VolumeMethod::Skip => {}
                VolumeMethod::Snapshot => {
                    let info = c
                        .pvc
                        .as_deref()
                        .and_then(|p| csi_of.get(&(c.namespace.as_str(), p)));
                    match info {
                        Some(i) => {
                            row.size = i
                                .csi_snapshot_info
                                .as_ref()
                                .and_then(|s| u64::try_from(s.size).ok())
                                .filter(|s| *s > 0);
                            row.duration = secs(i.start_timestamp, i.completion_timestamp);
                            row.result = if i.result.is_empty() {
                                "unknown".into()
                            } else {
                                i.result.clone()
                            };
                            row.detail = i.error.clone().unwrap_or_default();
                        }
                        None => row.result = "unknown".into(),
                    }
                }
                VolumeMethod::FsBackup => match pvb_of(&c.namespace, &c.pod, &c.volume) {
                    Some((size, duration, result, detail)) => {
                        row.size = size;
                        row.duration = duration;
                        row.result = result;
                        row.detail = detail;
                    }
                    None => row.result = "unknown".into(),
                },
            }
            row
        })
        .collect()
}

/// Renders the rows as the `Volumes:` section (empty string for no rows).
#[must_use]
pub fn render(rows: &[VolumeRow]) -> String {
    if rows.is_empty() {
        return "Volumes:  <none>\n".into();
    }
    let header = [
        "POD", "VOLUME", "PVC", "METHOD", "SIZE", "DURATION", "RESULT", "DETAIL",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.pod.clone(),
                r.volume.clone(),
                r.pvc.clone(),
                r.method.clone(),
                r.size.map_or_else(|| "-".into(), text::bytes),
                r.duration
                    .map_or_else(|| "-".into(), |d| format!("{d:.1}s")),
                r.result.clone(),
                r.detail.clone(),
            ]
        })
        .collect();
    format!(
        "Volumes:\n{}",
        text::indent(&text::columns(&header, &cells))
    )
}

/// A list side file, or nothing when it is absent or unreadable (describe shows what it can).
async fn read_gz_list(store: &Store, path: &object_store::path::Path) -> Vec<Value> {
    super::read_gz_list(store, path)
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// The `Volumes:` section of a backup (reads its folder).
///
/// # Errors
/// [`VolumesError::Record`] when a volume record exists but cannot be read.
pub async fn describe_backup(store: &Store, backup: &str) -> Result<String, VolumesError> {
    let l = store.layout();
    let choices: Vec<VolumeChoice> = match store.get(&l.backup_file(backup, VOLUMES_FILE)).await {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| VolumesError::Record {
            what: VOLUMES_FILE.into(),
            reason: e.to_string(),
        })?,
        Err(_) => Vec::new(),
    };
    let infos = csi::read_volume_info(store, backup).await?;
    let pvbs = read_gz_list(store, &l.backup_pod_volume_backups(backup)).await;
    Ok(render(&rows(&choices, &infos, &pvbs)))
}

/// Rows of a restore (pure): CSI entries of `restore-<name>-volumeinfo.json.gz` and the
/// file-system records (Velero PodVolumeRestore JSON, if the restore wrote them).
#[must_use]
pub fn restore_rows(infos: &[Value], pvrs: &[Value]) -> Vec<VolumeRow> {
    let s = |v: &Value, p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut out: Vec<VolumeRow> = infos
        .iter()
        .map(|i| VolumeRow {
            pod: format!("{}/-", s(i, "/pvcNamespace")),
            volume: "-".into(),
            pvc: s(i, "/pvcName"),
            method: if s(i, "/restoreMethod") == csi::METHOD_CSI {
                "snapshot".into()
            } else {
                s(i, "/restoreMethod")
            },
            size: i
                .pointer("/csiSnapshotInfo/size")
                .and_then(Value::as_u64)
                .filter(|n| *n > 0),
            duration: None,
            result: match s(i, "/result") {
                r if r.is_empty() => "unknown".into(),
                r => r,
            },
            detail: match s(i, "/error") {
                e if e.is_empty() => format!("from VolumeSnapshot {}", s(i, "/vsName")),
                e => e,
            },
        })
        .collect();
    out.extend(pvrs.iter().map(|r| {
        let (size, duration, result, detail) = pvb_facts(r);
        VolumeRow {
            pod: format!("{}/{}", s(r, "/spec/pod/namespace"), s(r, "/spec/pod/name")),
            volume: s(r, "/spec/volume"),
            pvc: "-".into(),
            method: "fs-backup".into(),
            size,
            duration,
            result,
            detail,
        }
    }));
    out
}

/// The `Volumes:` section of a restore (reads its folder).
pub async fn describe_restore(store: &Store, restore: &str) -> String {
    let l = store.layout();
    let infos = read_gz_list(store, &l.restore_volume_info(restore)).await;
    let pvrs = read_gz_list(
        store,
        &l.restore_file(
            restore,
            &format!("restore-{restore}-podvolumerestores.json.gz"),
        ),
    )
    .await;
    render(&restore_rows(&infos, &pvrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn choice(pod: &str, vol: &str, pvc: Option<&str>, m: VolumeMethod) -> VolumeChoice {
        VolumeChoice {
            namespace: "app".into(),
            pod: pod.into(),
            pod_uid: "u".into(),
            node_name: None,
            volume: vol.into(),
            pvc: pvc.map(str::to_string),
            pv: None,
            method: m,
            reason: "why".into(),
        }
    }

    #[test]
    fn rows_join_choices_with_results_and_render() {
        let t0: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let infos = vec![VolumeInfo {
            pvc_name: "data".into(),
            pvc_namespace: "app".into(),
            backup_method: csi::METHOD_CSI.into(),
            result: "succeeded".into(),
            start_timestamp: Some(t0),
            completion_timestamp: Some(t0 + chrono::Duration::milliseconds(2500)),
            csi_snapshot_info: Some(csi::CsiSnapshotInfo {
                size: 1 << 30,
                ..Default::default()
            }),
            ..Default::default()
        }];
        let pvbs = vec![json!({
            "spec": {"pod": {"namespace": "app", "name": "db-0"}, "volume": "scratch"},
            "status": {"phase": "Completed", "progress": {"totalBytes": 2048},
                       "startTimestamp": "2026-01-01T00:00:00Z",
                       "completionTimestamp": "2026-01-01T00:00:01Z"}})];
        let choices = [
            choice("db-0", "data", Some("data"), VolumeMethod::Snapshot),
            choice("db-0", "scratch", None, VolumeMethod::FsBackup),
            choice("db-0", "cfg", None, VolumeMethod::Skip),
        ];
        let r = rows(&choices, &infos, &pvbs);
        assert_eq!(r[0].size, Some(1 << 30));
        assert_eq!(r[0].duration, Some(2.5));
        assert_eq!(r[0].result, "succeeded");
        assert_eq!(r[1].size, Some(2048));
        assert_eq!(r[1].result, "succeeded");
        assert_eq!(r[2].result, "skipped");
        assert_eq!(r[2].detail, "why");
        let text = render(&r);
        assert!(text.contains("app/db-0  data"), "{text}");
        assert!(text.contains("1.0 GiB"), "{text}");
        assert!(text.contains("2.0 KiB"), "{text}");
        assert!(text.contains("fs-backup"), "{text}");
        let rr = restore_rows(
            &[
                json!({"pvcName": "data", "pvcNamespace": "copy", "restoreMethod": "CSISnapshot",
                     "csiSnapshotInfo": {"size": 1024}, "vsName": "vs1", "result": "succeeded"}),
            ],
            &[],
        );
        assert_eq!(rr[0].pod, "copy/-");
        assert_eq!(rr[0].method, "snapshot");
        assert_eq!(rr[0].detail, "from VolumeSnapshot vs1");
        // A Velero backup: rows from volumeinfo alone.
        let r = rows(&[], &infos, &[]);
        assert_eq!(r[0].method, "snapshot");
        assert_eq!(r[0].pvc, "data");
    }
}
