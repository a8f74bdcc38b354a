//! The volume phase of a backup: list the pods, claims and PVs in the backup's scope, run the
//! pods' pre hooks ([`crate::hooks`]), choose a method per volume ([`super::select`]), then take
//! the CSI snapshots ([`super::csi`]) and the file-system backups ([`super::podvolume`]) at the
//! same time, record the outcome (`<name>-volumeinfo.json.gz` and the CSI files; the pod volume
//! step writes its own file), and run the pods' post hooks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;

use super::csi::{self, CsiBackupOutcome, CsiBackupRequest, VolumeInfo};
use super::policy::VolumePolicies;
use super::{VolumeChoice, VolumeMethod, VolumeSettings, VolumesError, configmap_ref, podvolume};
use crate::cluster::Budget;
use crate::cluster::selector::LabelMatcher;
use crate::store::Store;

/// What the backup engine passes to [`run`].
pub struct PhaseRequest<'a> {
    /// The backup's name.
    pub backup: &'a str,
    /// Namespace of tidemark's records (and of a policy ConfigMap given by name only).
    pub record_namespace: &'a str,
    /// The Location's name.
    pub location_name: &'a str,
    /// The Backup record's annotations.
    pub annotations: &'a BTreeMap<String, String>,
    /// The volume settings (flags / template).
    pub settings: &'a VolumeSettings,
    /// `--resource-policies-configmap` (`name` or `namespace/name`).
    pub policy_configmap: Option<&'a str>,
    /// The namespaces taking part.
    pub namespaces: &'a BTreeSet<String>,
    /// Server-side label selector of the backup.
    pub label_selector: Option<&'a str>,
    /// Client-side `--or-selector` matchers.
    pub or_selectors: &'a [LabelMatcher],
    /// Whether pods are backed up at all (their volumes are only copied if so).
    pub take_pods: bool,
    /// Whether claims are backed up at all (they are only snapshotted if so).
    pub take_claims: bool,
    /// Snapshots taken at once.
    pub concurrency: usize,
    /// The API request budget.
    pub budget: &'a Budget,
    /// The backup's hooks: pre hooks run in the listed pods before any volume is chosen or
    /// taken, post hooks once every snapshot and file-system backup has ended ([`crate::hooks`]).
    pub hooks: Option<&'a crate::hooks::BackupHookRunner>,
}

/// What the phase did.
#[derive(Debug, Default)]
pub struct PhaseOutcome {
    /// The decision per volume.
    pub choices: Vec<VolumeChoice>,
    /// The CSI step's counters (`attempted`, `completed`).
    pub csi_attempted: usize,
    /// Snapshots that became ready.
    pub csi_completed: usize,
    /// File-system backups completed.
    pub fs_completed: usize,
    /// File-system backups attempted.
    pub fs_attempted: usize,
    /// Per-volume failures as `(namespace, message)`: backup errors (`PartiallyFailed`).
    pub errors: Vec<(String, String)>,
    /// Whether this phase wrote `<name>-podvolumebackups.json.gz` (file-system backups ran).
    pub wrote_pod_volume_backups: bool,
    /// Whether this phase wrote `<name>-volumeinfo.json.gz` and the `-csi-*` lists (some
    /// volume's choice is worth a line).
    pub wrote_volume_info: bool,
    /// The outcome of every pre and post hook that was due, pre hooks first.
    pub hooks: Vec<crate::hooks::HookOutcome>,
    /// Pods (`(namespace, name)`) whose pre hook with `onError: Fail` failed: their volumes
    /// were not taken and they are not to be archived.
    pub hook_failed_pods: BTreeSet<(String, String)>,
}

/// Reads and parses the policy ConfigMap (`name` in `default_ns`, or `namespace/name`).
///
/// # Errors
/// [`VolumesError::PolicyConfigMap`] when it is missing, unreadable or not a valid policy.
pub async fn load_policy(
    client: &Client,
    value: &str,
    default_ns: &str,
) -> Result<VolumePolicies, VolumesError> {
    let (ns, name) = configmap_ref(value, default_ns);
    let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| VolumesError::PolicyConfigMap {
            namespace: ns.into(),
            name: name.into(),
            reason: format!("cannot be read: {e}"),
        })?;
    VolumePolicies::from_configmap(&cm)
}

/// Namespaces listed one by one (instead of one cluster-wide LIST) up to this many: a backup of
/// a few namespaces then needs no cluster-wide read permission and reads no other namespace.
const PER_NAMESPACE_LISTS: usize = 16;

/// The APIs to list a namespaced `K` in `namespaces` with: one per namespace when there are
/// few, else one cluster-wide (the caller filters).
fn namespaced_apis<K>(client: &Client, namespaces: &BTreeSet<String>) -> Vec<Api<K>>
where
    K: Resource<DynamicType = ()>,
    K::Scope: kube::core::NamespaceScope,
{
    if namespaces.len() <= PER_NAMESPACE_LISTS {
        namespaces
            .iter()
            .map(|ns| Api::all(client.clone()).constrain(ns))
            .collect()
    } else {
        vec![Api::all(client.clone())]
    }
}

/// Lists everything `apis` reach, page by page under the budget.
async fn list_in<K>(
    apis: Vec<Api<K>>,
    budget: &Budget,
    selector: Option<&str>,
    what: &str,
) -> Result<Vec<K>, VolumesError>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    for api in apis {
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(500);
            if let Some(s) = selector {
                lp = lp.labels(s);
            }
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            budget.acquire().await;
            let page = api.list(&lp).await.map_err(|source| VolumesError::Kube {
                what: format!("list {what}"),
                source,
            })?;
            out.extend(page.items);
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
    }
    Ok(out)
}

/// [`list_in`], with a failure (e.g. a forbidden list) recorded as a backup error instead of
/// failing the backup: the volumes it would have found are not taken.
async fn list_or_record<K>(
    apis: Vec<Api<K>>,
    budget: &Budget,
    selector: Option<&str>,
    what: &str,
    errors: &mut Vec<(String, String)>,
) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match list_in::<K>(apis, budget, selector, what).await {
        Ok(items) => items,
        Err(e) => {
            errors.push((
                String::new(),
                format!("volume data: {e}; the volumes it would find are not backed up"),
            ));
            Vec::new()
        }
    }
}

/// The namespaced `K` of the backup's namespaces that its selectors take ([`in_scope`]).
async fn list_in_scope<K>(
    client: &Client,
    req: &PhaseRequest<'_>,
    what: &str,
    errors: &mut Vec<(String, String)>,
) -> Vec<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::Scope: kube::core::NamespaceScope,
{
    let apis = namespaced_apis(client, req.namespaces);
    list_or_record::<K>(apis, req.budget, req.label_selector, what, errors)
        .await
        .into_iter()
        .filter(|o| in_scope(o, req))
        .collect()
}

fn in_scope<K: Resource>(o: &K, req: &PhaseRequest<'_>) -> bool {
    let meta = o.meta();
    let ns_ok = meta
        .namespace
        .as_ref()
        .is_some_and(|n| req.namespaces.contains(n));
    let labels = meta.labels.clone().unwrap_or_default();
    let or_ok = req.or_selectors.is_empty() || req.or_selectors.iter().any(|m| m.matches(&labels));
    ns_ok && or_ok && !crate::backup::filter::object_excluded(meta)
}

/// Runs the volume phase.
///
/// # Errors
/// [`VolumesError::PolicyConfigMap`] / [`VolumesError::Policy`] for an unusable policy (the
/// backup fails before anything is taken). Pods, claims or PVs that cannot be listed (e.g.
/// forbidden) and per-volume failures are in [`PhaseOutcome::errors`] (`PartiallyFailed`).
pub async fn run(
    client: &Client,
    store: &Store,
    req: &PhaseRequest<'_>,
) -> Result<PhaseOutcome, VolumesError> {
    let mut settings = req.settings.clone();
    if let Some(cm) = req.policy_configmap.filter(|s| !s.is_empty()) {
        settings.policy = Some(load_policy(client, cm, req.record_namespace).await?);
    }
    if req.namespaces.is_empty() || !(req.take_pods || req.take_claims) {
        return Ok(PhaseOutcome::default());
    }
    // Pods and claims at once (they sit on the backup's critical path).
    let mut list_errors: Vec<(String, String)> = Vec::new();
    let mut claim_errors: Vec<(String, String)> = Vec::new();
    let (pods, pvcs): (Vec<Pod>, Vec<PersistentVolumeClaim>) = tokio::join!(
        async {
            if req.take_pods {
                list_in_scope(client, req, "pods", &mut list_errors).await
            } else {
                Vec::new()
            }
        },
        async {
            if req.take_claims {
                list_in_scope(client, req, "persistentvolumeclaims", &mut claim_errors).await
            } else {
                Vec::new()
            }
        }
    );
    list_errors.extend(claim_errors);
    // A pod's claims are taken with it even if the selector leaves them out (Velero backs up
    // a pod's PVCs as additional items).
    let mut claims = pvcs;
    if req.take_pods && req.label_selector.is_some() {
        let wanted: BTreeSet<(String, String)> = pods
            .iter()
            .flat_map(|p| {
                let ns = p.namespace().unwrap_or_default();
                p.spec
                    .iter()
                    .flat_map(|s| s.volumes.iter().flatten())
                    .filter_map(move |v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .map(|c| (ns.clone(), c.claim_name.clone()))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let have: BTreeSet<(String, String)> = claims
            .iter()
            .map(|c| (c.namespace().unwrap_or_default(), c.name_any()))
            .collect();
        for (ns, name) in wanted.difference(&have) {
            req.budget.acquire().await;
            if let Ok(Some(c)) = Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                .get_opt(name)
                .await
            {
                claims.push(c);
            }
        }
    }
    let pvs: Vec<PersistentVolume> = if claims.is_empty() {
        Vec::new()
    } else {
        list_or_record::<PersistentVolume>(
            vec![Api::all(client.clone())],
            req.budget,
            None,
            "persistentvolumes",
            &mut list_errors,
        )
        .await
    };
    // Pre hooks, before any volume is chosen or taken (Velero runs them before the pod's item
    // and its volumes are backed up).
    let mut hook_outcomes = Vec::new();
    let mut hook_failed_pods = BTreeSet::new();
    if let Some(h) = req.hooks {
        let pre = h.run_pre(&pods).await;
        hook_outcomes = pre.outcomes;
        hook_failed_pods = pre.failed_pods;
    }
    let mut choices = super::select(&pods, &claims, &pvs, &settings);
    for c in &mut choices {
        if hook_failed_pods.contains(&(c.namespace.clone(), c.pod.clone())) {
            c.method = VolumeMethod::Skip;
            c.reason =
                "a pre hook with onError Fail failed: the pod's volumes are not backed up".into();
        }
    }

    let csi_req = CsiBackupRequest {
        backup: req.backup.into(),
        backup_annotations: req.annotations.clone(),
        timeout: settings.csi_snapshot_timeout,
        concurrency: req.concurrency,
        store: Some(store.clone()),
    };
    let fs_req = podvolume::BackupVolumesRequest {
        backup: req.backup.into(),
        record_namespace: req.record_namespace.into(),
        location_name: req.location_name.into(),
        timeout: podvolume::PodVolumeSettings::from_env().timeout,
    };
    let wants_fs = choices.iter().any(|c| c.method == VolumeMethod::FsBackup);
    let (csi_out, fs_out) = tokio::join!(
        csi::back_up_snapshots(client, &csi_req, &choices, &claims, &pvs),
        async {
            if wants_fs {
                Some(podvolume::back_up_volumes(client, store, &fs_req, &choices).await)
            } else {
                None
            }
        }
    );
    list_errors.extend(csi_out.errors.iter().cloned());
    let mut out = PhaseOutcome {
        csi_attempted: csi_out.attempted,
        csi_completed: csi_out.completed,
        errors: list_errors,
        ..PhaseOutcome::default()
    };
    let mut infos: Vec<VolumeInfo> = csi_out.infos.clone();
    infos.extend(csi::skipped_infos(&choices));
    match fs_out {
        Some(Ok(fs)) => {
            // `back_up_volumes` wrote the records when it returned them.
            out.wrote_pod_volume_backups = !store.is_read_only();
            out.fs_attempted = choices
                .iter()
                .filter(|c| c.method == VolumeMethod::FsBackup)
                .count();
            out.fs_completed = fs.completed;
            out.errors.extend(fs.errors.iter().cloned());
            for r in podvolume::velero_records(&fs.records) {
                infos.push(pvb_info(&r, &choices));
            }
        }
        Some(Err(e)) => out.errors.push((String::new(), e.to_string())),
        None => {}
    }
    match write(store, req.backup, &csi_out, &infos, &choices).await {
        Ok(wrote) => out.wrote_volume_info = wrote,
        Err(e) => out.errors.push((String::new(), e.to_string())),
    }
    // Post hooks, once every snapshot and file-system backup has ended, in the pods whose pre
    // hooks did not fail.
    if let Some(h) = req.hooks {
        let post_pods: Vec<Pod> = pods
            .into_iter()
            .filter(|p| {
                !hook_failed_pods.contains(&(p.namespace().unwrap_or_default(), p.name_any()))
            })
            .collect();
        hook_outcomes.extend(h.run_post(&post_pods).await.outcomes);
    }
    out.hooks = hook_outcomes;
    out.hook_failed_pods = hook_failed_pods;
    out.choices = choices;
    Ok(out)
}

/// Writes the volume records; `Ok(false)` when there was nothing to write.
async fn write(
    store: &Store,
    backup: &str,
    csi_out: &CsiBackupOutcome,
    infos: &[VolumeInfo],
    choices: &[VolumeChoice],
) -> Result<bool, VolumesError> {
    // Nothing to record when no volume holds data worth a line (only configMap, secret,
    // projected... volumes, or none): the folder then has exactly the files of a backup
    // without volume data (the backup writes Velero's empty `-volumeinfo.json.gz`).
    let any = !infos.is_empty() || choices.iter().any(|c| c.method != VolumeMethod::Skip);
    if store.is_read_only() || !any {
        return Ok(false);
    }
    let path = store
        .layout()
        .backup_file(backup, super::report::VOLUMES_FILE);
    let body = serde_json::to_vec_pretty(choices).unwrap_or_default();
    super::put_record(store, &path, body.into()).await?;
    csi::write_records(store, backup, csi_out, infos).await?;
    Ok(true)
}

/// A `volumeinfo` entry for a PodVolumeBackup (Velero's `pvbInfo`).
fn pvb_info(r: &Value, choices: &[VolumeChoice]) -> VolumeInfo {
    let s = |p: &str| {
        r.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (ns, pod, volume) = (
        s("/spec/pod/namespace"),
        s("/spec/pod/name"),
        s("/spec/volume"),
    );
    let choice = choices
        .iter()
        .find(|c| c.namespace == ns && c.pod == pod && c.volume == volume);
    let phase = s("/status/phase");
    let ts = |p: &str| {
        r.pointer(p)
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    VolumeInfo {
        pvc_name: choice.and_then(|c| c.pvc.clone()).unwrap_or_default(),
        pvc_namespace: if choice.and_then(|c| c.pvc.as_ref()).is_some() {
            ns.clone()
        } else {
            String::new()
        },
        pv_name: choice.and_then(|c| c.pv.clone()).unwrap_or_default(),
        backup_method: "PodVolumeBackup".into(),
        start_timestamp: ts("/status/startTimestamp"),
        completion_timestamp: ts("/status/completionTimestamp"),
        result: if phase == "Completed" {
            "succeeded"
        } else {
            "failed"
        }
        .into(),
        pvb_info: Some(serde_json::json!({
            "snapshotHandle": s("/status/snapshotID"),
            "size": r.pointer("/status/progress/totalBytes").and_then(Value::as_i64).unwrap_or(0),
            "uploaderType": s("/spec/uploaderType"),
            "volumeName": volume,
            "podName": pod,
            "podNamespace": ns,
            "nodeName": s("/spec/node"),
            "Phase": phase,
        })),
        ..VolumeInfo::default()
    }
}

/// How long expiry waits for a deletion VolumeSnapshotContent to be taken up by the driver.
pub const DELETE_WAIT: Duration = Duration::from_secs(30);
