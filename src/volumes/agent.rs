//! The node agent (`tidemark node-agent --node-name N`): one per node (a DaemonSet), it carries
//! out the [`PodVolumeBackup`]s and [`PodVolumeRestore`]s of the pods on its node.
//!
//! - A PodVolumeBackup whose `spec.node` is this node and whose phase is empty or `New`: the
//!   agent finds the volume's directory under the kubelet root ([`find_volume_dir`]), backs it
//!   up into the namespace's restic repository ([`super::fs`]), and writes `InProgress` with
//!   progress every few seconds, then `Completed` with the snapshot id (or `Failed` with the
//!   reason).
//! - A PodVolumeRestore whose pod is scheduled on this node: the agent waits for the new pod's
//!   volume directory (the kubelet creates it before the init containers run), restores the
//!   snapshot into it, then writes the done marker [`done_marker`] that the pod's
//!   `tidemark-restore-wait` init container waits for, releasing the pod.
//!
//! The kubelet lays volumes out as `<root>/pods/<pod uid>/volumes/<plugin>/<name>` with plugin
//! `kubernetes.io~empty-dir`, `kubernetes.io~nfs`, `kubernetes.io~local-volume`, ... and name
//! the pod's volume name (inline volumes) or the PersistentVolume's name (claims); CSI volumes
//! (`kubernetes.io~csi/<pv or volume>/mount`) keep their data in the `mount` subdirectory.
//! Records of its node left `InProgress` by an agent that stopped are marked `Failed` when it
//! starts again.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use super::fs::{FsError, RepoPassword, ResticRepo, SnapshotTags, TransferProgress};
use crate::api::podvolume::{
    PodVolumeBackup, PodVolumeBackupStatus, PodVolumeRestore, PodVolumeRestoreStatus,
    VolumeProgress, phase,
};
use crate::store::{LocationUrl, Store};

/// The directory, inside each restored volume, holding done markers (Velero uses `.velero`).
pub const DONE_MARKER_DIR: &str = ".tidemark";
/// Field manager of the agent's writes.
pub const AGENT_FIELD_MANAGER: &str = "tidemark-node-agent";

/// The done marker of a restore in a volume directory: `<dir>/.tidemark/<restore uid>`.
pub fn done_marker(volume_dir: &Path, restore_uid: &str) -> PathBuf {
    volume_dir.join(DONE_MARKER_DIR).join(restore_uid)
}

/// Errors of the node agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A Kubernetes request failed.
    #[error("{what}: {source}")]
    Kube {
        /// The request (`get Pod ns/name`).
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// The volume directory was not found under the kubelet root.
    #[error(
        "volume {volume} of pod {pod}: no directory under {root}/pods/{uid}/volumes/*/ named {names}"
    )]
    NoVolumeDir {
        /// `namespace/name` of the pod.
        pod: String,
        /// The pod's UID.
        uid: String,
        /// The volume name.
        volume: String,
        /// The kubelet root.
        root: String,
        /// The names looked for.
        names: String,
    },
    /// The record is not usable (bad location URL, missing pod UID...).
    #[error("{record}: {field}: {reason}")]
    Invalid {
        /// `PodVolumeBackup ns/name`.
        record: String,
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The restic side failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Waiting for a directory ran out of time.
    #[error("{0}")]
    Timeout(String),
}

/// Settings of the agent (`tidemark node-agent` flags).
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This node's name; only records of pods on it are handled.
    pub node_name: String,
    /// The kubelet's root directory as seen by the agent (`/var/lib/kubelet`, a hostPath mount).
    pub kubelet_root: PathBuf,
    /// Namespace of the records (the tidemark namespace).
    pub namespace: String,
    /// The restic repositories' password.
    pub password: RepoPassword,
    /// How long a restore waits for the new pod's volume directory.
    pub dir_timeout: Duration,
    /// How often progress is written to the record.
    pub progress_interval: Duration,
}

/// The directory names a volume may have under `pods/<uid>/volumes/<plugin>/`: the PV's name
/// (claims; first) and the pod's volume name.
pub fn candidate_names(volume: &str, pv: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(pv) = pv.filter(|p| !p.is_empty()) {
        out.push(pv.to_string());
    }
    if !out.iter().any(|n| n == volume) {
        out.push(volume.to_string());
    }
    out
}

/// Where the data of a volume directory is: `mount/` inside CSI volume directories, the
/// directory itself for every other plugin.
pub fn data_dir(plugin: &str, dir: &Path) -> PathBuf {
    if plugin == "kubernetes.io~csi" {
        dir.join("mount")
    } else {
        dir.to_path_buf()
    }
}

/// Finds a pod volume's data directory under the kubelet root:
/// `<root>/pods/<uid>/volumes/<plugin>/<name>[/mount]` for the first plugin directory holding
/// one of [`candidate_names`]. `None` when absent (yet).
pub fn find_volume_dir(root: &Path, uid: &str, volume: &str, pv: Option<&str>) -> Option<PathBuf> {
    let volumes = root.join("pods").join(uid).join("volumes");
    let mut plugins: Vec<_> = std::fs::read_dir(&volumes)
        .ok()?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    plugins.sort();
    for name in candidate_names(volume, pv) {
        for plugin in &plugins {
            let dir = volumes.join(plugin).join(&name);
            if dir.is_dir() {
                let data = data_dir(plugin, &dir);
                if data.is_dir() {
                    return Some(data);
                }
            }
        }
    }
    None
}

/// The PV bound to a pod volume, when it is a claim (`None` for inline volumes or an unbound
/// claim).
async fn pv_of(client: &Client, pod: &Pod, volume: &str) -> Result<Option<String>, AgentError> {
    let ns = pod.namespace().unwrap_or_default();
    let claim = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .and_then(|vs| vs.iter().find(|v| v.name == volume))
        .and_then(|v| {
            v.persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone())
        });
    let Some(claim) = claim else {
        return Ok(None);
    };
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let pvc = pvcs
        .get_opt(&claim)
        .await
        .map_err(|source| AgentError::Kube {
            what: format!("get PersistentVolumeClaim {ns}/{claim}"),
            source,
        })?;
    Ok(pvc.and_then(|c| c.spec.and_then(|s| s.volume_name)))
}

struct Ctx {
    client: Client,
    config: AgentConfig,
    /// Records being worked on or finished by this process (`pvb/<name>`, `pvr/<name>`): the
    /// controller's cache may still show an older phase of a record just written.
    taken: Mutex<BTreeSet<String>>,
}

impl Ctx {
    /// Takes a record for this process; `false` when it was already taken.
    fn take(&self, key: &str) -> bool {
        self.taken
            .lock()
            .is_ok_and(|mut t| t.insert(key.to_string()))
    }
}

fn open_store(url: &str, record: &str) -> Result<Store, AgentError> {
    let url: LocationUrl = url.parse().map_err(|e| AgentError::Invalid {
        record: record.to_string(),
        field: "spec.locationUrl",
        reason: format!("{e}"),
    })?;
    Ok(Store::open(&url, false)?)
}

async fn patch_pvb(
    api: &Api<PodVolumeBackup>,
    name: &str,
    status: &PodVolumeBackupStatus,
) -> Result<(), kube::Error> {
    let body = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
}

async fn patch_pvr(
    api: &Api<PodVolumeRestore>,
    name: &str,
    status: &PodVolumeRestoreStatus,
) -> Result<(), kube::Error> {
    let body = serde_json::json!({ "status": status });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .map(|_| ())
}

fn progress_of(p: &TransferProgress) -> VolumeProgress {
    let (done, total) = p.bytes();
    VolumeProgress {
        total_bytes: Some(i64::try_from(total.max(done)).unwrap_or(i64::MAX)),
        bytes_done: Some(i64::try_from(done).unwrap_or(i64::MAX)),
    }
}

/// Runs `work` (one restic transfer) on a blocking thread, handing it a fresh progress counter,
/// the repositories' password and the runtime handle, while writing the progress every
/// `progress_interval` with `write`.
async fn with_progress<T, W, Fut>(
    ctx: &Ctx,
    work: impl FnOnce(Arc<TransferProgress>, RepoPassword, tokio::runtime::Handle) -> T + Send + 'static,
    mut write: W,
) -> T
where
    T: Send + 'static,
    W: FnMut(VolumeProgress) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let progress = Arc::new(TransferProgress::default());
    let (p2, password, handle) = (
        progress.clone(),
        ctx.config.password.clone(),
        tokio::runtime::Handle::current(),
    );
    let mut task = tokio::task::spawn_blocking(move || work(p2, password, handle));
    let mut tick = tokio::time::interval(ctx.config.progress_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            r = &mut task => {
                return r.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            }
            _ = tick.tick() => write(progress_of(&progress)).await,
        }
    }
}

async fn backup_one(ctx: &Ctx, pvb: &PodVolumeBackup) -> Result<PodVolumeBackupStatus, AgentError> {
    let record = format!(
        "PodVolumeBackup {}/{}",
        ctx.config.namespace,
        pvb.name_any()
    );
    let spec = &pvb.spec;
    let ns = spec.pod.namespace.clone().unwrap_or_default();
    let pod_name = spec.pod.name.clone().unwrap_or_default();
    let uid = spec
        .pod
        .uid
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| AgentError::Invalid {
            record: record.clone(),
            field: "spec.pod.uid",
            reason: "missing".into(),
        })?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pv = match pods.get_opt(&pod_name).await {
        Ok(Some(pod)) => pv_of(&ctx.client, &pod, &spec.volume).await?,
        Ok(None) => None,
        Err(source) => {
            return Err(AgentError::Kube {
                what: format!("get Pod {ns}/{pod_name}"),
                source,
            });
        }
    };
    let root = &ctx.config.kubelet_root;
    let dir = find_volume_dir(root, &uid, &spec.volume, pv.as_deref()).ok_or_else(|| {
        AgentError::NoVolumeDir {
            pod: format!("{ns}/{pod_name}"),
            uid: uid.clone(),
            volume: spec.volume.clone(),
            root: root.display().to_string(),
            names: candidate_names(&spec.volume, pv.as_deref()).join(" or "),
        }
    })?;
    let store = open_store(&spec.location_url, &record)?;
    let tags = SnapshotTags {
        backup: spec.tags.get("backup").cloned().unwrap_or_default(),
        namespace: ns.clone(),
        pod: pod_name.clone(),
        pod_uid: uid.clone(),
        volume: spec.volume.clone(),
    };
    let api: Api<PodVolumeBackup> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let name = pvb.name_any();
    let started = crate::report::object_status::now_rfc3339();
    let mut status = PodVolumeBackupStatus {
        phase: Some(phase::IN_PROGRESS.into()),
        path: Some(dir.display().to_string()),
        start_timestamp: Some(started),
        ..Default::default()
    };
    patch_pvb(&api, &name, &status)
        .await
        .map_err(|source| AgentError::Kube {
            what: format!("update {record}"),
            source,
        })?;
    tracing::info!(record, dir = %dir.display(), "backing up pod volume");
    let (dir2, ns2) = (dir.clone(), ns.clone());
    let summary = with_progress(
        ctx,
        move |progress, pw, handle| {
            let repo = ResticRepo::open_or_init(&store, &ns2, &pw, handle, progress)?;
            repo.backup_dir(&dir2, &tags)
        },
        |p| {
            let s = PodVolumeBackupStatus {
                progress: Some(p),
                ..status.clone()
            };
            let (api, name) = (api.clone(), name.clone());
            async move {
                let _ = patch_pvb(&api, &name, &s).await;
            }
        },
    )
    .await?;
    status.phase = Some(phase::COMPLETED.into());
    status.snapshot_id = Some(summary.snapshot_id);
    status.completion_timestamp = Some(crate::report::object_status::now_rfc3339());
    status.progress = Some(VolumeProgress {
        total_bytes: Some(i64::try_from(summary.total_bytes).unwrap_or(i64::MAX)),
        bytes_done: Some(i64::try_from(summary.total_bytes).unwrap_or(i64::MAX)),
    });
    status.total_files = Some(i64::try_from(summary.total_files).unwrap_or(i64::MAX));
    Ok(status)
}

async fn restore_one(
    ctx: &Ctx,
    pvr: &PodVolumeRestore,
    pod: &Pod,
) -> Result<PodVolumeRestoreStatus, AgentError> {
    let record = format!(
        "PodVolumeRestore {}/{}",
        ctx.config.namespace,
        pvr.name_any()
    );
    let spec = &pvr.spec;
    let uid = pod.uid().unwrap_or_default();
    let ns = pod.namespace().unwrap_or_default();
    let restore_uid = pvr
        .labels()
        .get(crate::api::podvolume::RESTORE_NAME_LABEL)
        .cloned()
        .unwrap_or_default();
    let restore_uid = pvr
        .annotations()
        .get(RESTORE_UID_ANNOTATION)
        .cloned()
        .unwrap_or(restore_uid);
    let api: Api<PodVolumeRestore> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let name = pvr.name_any();
    let mut status = PodVolumeRestoreStatus {
        phase: Some(phase::IN_PROGRESS.into()),
        start_timestamp: Some(crate::report::object_status::now_rfc3339()),
        ..Default::default()
    };
    patch_pvr(&api, &name, &status)
        .await
        .map_err(|source| AgentError::Kube {
            what: format!("update {record}"),
            source,
        })?;
    // The kubelet makes the volume directory before the init containers start.
    let deadline = tokio::time::Instant::now() + ctx.config.dir_timeout;
    let dir = loop {
        let pv = pv_of(&ctx.client, pod, &spec.volume).await?;
        if let Some(d) =
            find_volume_dir(&ctx.config.kubelet_root, &uid, &spec.volume, pv.as_deref())
        {
            break d;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(AgentError::Timeout(format!(
                "{record}: the volume directory of {}/{} (uid {uid}) volume {} did not appear under {} within {:?}",
                ns,
                pod.name_any(),
                spec.volume,
                ctx.config.kubelet_root.display(),
                ctx.config.dir_timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let store = open_store(&spec.location_url, &record)?;
    tracing::info!(record, dir = %dir.display(), "restoring pod volume");
    let (dir2, src_ns, snap) = (
        dir.clone(),
        spec.source_namespace.clone(),
        spec.snapshot_id.clone(),
    );
    let summary = with_progress(
        ctx,
        move |progress, pw, handle| {
            let repo = ResticRepo::open(&store, &src_ns, &pw, handle, progress)?;
            repo.restore(&snap, &dir2)
        },
        |p| {
            let s = PodVolumeRestoreStatus {
                progress: Some(p),
                ..status.clone()
            };
            let (api, name) = (api.clone(), name.clone());
            async move {
                let _ = patch_pvr(&api, &name, &s).await;
            }
        },
    )
    .await?;
    let marker = done_marker(&dir, &restore_uid);
    let write_marker = || -> std::io::Result<()> {
        std::fs::create_dir_all(marker.parent().unwrap_or(&dir))?;
        std::fs::write(&marker, b"")
    };
    write_marker().map_err(|e| FsError::Path {
        path: marker.display().to_string(),
        message: e.to_string(),
    })?;
    status.phase = Some(phase::COMPLETED.into());
    status.completion_timestamp = Some(crate::report::object_status::now_rfc3339());
    status.progress = Some(VolumeProgress {
        total_bytes: Some(i64::try_from(summary.total_bytes).unwrap_or(i64::MAX)),
        bytes_done: Some(i64::try_from(summary.total_bytes).unwrap_or(i64::MAX)),
    });
    status.total_files = Some(i64::try_from(summary.total_files).unwrap_or(i64::MAX));
    Ok(status)
}

/// Annotation on PodVolumeRestores carrying the restore's UID (the done marker's file name).
pub const RESTORE_UID_ANNOTATION: &str = "tidemark.dev/restore-uid";

fn key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

async fn reconcile_pvb(pvb: Arc<PodVolumeBackup>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    if pvb.spec.node != ctx.config.node_name {
        return Ok(Action::await_change());
    }
    let name = pvb.name_any();
    let api: Api<PodVolumeBackup> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let phase = pvb.status.as_ref().and_then(|s| s.phase.as_deref());
    if !matches!(phase, None | Some(phase::NEW)) || !ctx.take(&key("pvb", &name)) {
        return Ok(Action::await_change());
    }
    let result = backup_one(&ctx, &pvb).await;
    let status = match result {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("PodVolumeBackup {name}: {e}");
            PodVolumeBackupStatus {
                phase: Some(phase::FAILED.into()),
                message: Some(e.to_string()),
                completion_timestamp: Some(crate::report::object_status::now_rfc3339()),
                ..pvb.status.clone().unwrap_or_default()
            }
        }
    };
    patch_pvb(&api, &name, &status).await?;
    Ok(Action::await_change())
}

async fn reconcile_pvr(pvr: Arc<PodVolumeRestore>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    let phase = pvr.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase::is_done(phase) {
        return Ok(Action::await_change());
    }
    let ns = pvr.spec.pod.namespace.clone().unwrap_or_default();
    let pod_name = pvr.spec.pod.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(pod) = pods.get_opt(&pod_name).await? else {
        return Ok(Action::requeue(Duration::from_secs(5)));
    };
    match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
        Some(n) if n == ctx.config.node_name => {}
        // Not scheduled yet: look again soon.
        None => return Ok(Action::requeue(Duration::from_secs(2))),
        Some(_) => return Ok(Action::await_change()),
    }
    let name = pvr.name_any();
    let api: Api<PodVolumeRestore> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    if phase == Some(phase::IN_PROGRESS) || !ctx.take(&key("pvr", &name)) {
        return Ok(Action::await_change());
    }
    let status = match restore_one(&ctx, &pvr, &pod).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("PodVolumeRestore {name}: {e}");
            PodVolumeRestoreStatus {
                phase: Some(phase::FAILED.into()),
                message: Some(e.to_string()),
                completion_timestamp: Some(crate::report::object_status::now_rfc3339()),
                ..pvr.status.clone().unwrap_or_default()
            }
        }
    };
    patch_pvr(&api, &name, &status).await?;
    Ok(Action::await_change())
}

fn error_policy<K>(_o: Arc<K>, err: &kube::Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!("node agent reconcile failed: {err}");
    Action::requeue(Duration::from_secs(5))
}

/// At start-up: records of this node left `InProgress` by an agent that stopped are marked
/// `Failed` (their copy was cut short; the engine reports it).
async fn recover(client: &Client, config: &AgentConfig) -> Result<(), AgentError> {
    let kube_err = |what: &str| {
        let what = format!("{what} in {}", config.namespace);
        move |source| AgentError::Kube { what, source }
    };
    let now = crate::report::object_status::now_rfc3339();
    let pvbs: Api<PodVolumeBackup> = Api::namespaced(client.clone(), &config.namespace);
    for r in pvbs
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list PodVolumeBackups"))?
    {
        let mut s = r.status.clone().unwrap_or_default();
        if r.spec.node == config.node_name && s.phase.as_deref() == Some(phase::IN_PROGRESS) {
            s.phase = Some(phase::FAILED.into());
            s.message = Some("the node agent stopped while backing up this volume".into());
            s.completion_timestamp = Some(now.clone());
            patch_pvb(&pvbs, &r.name_any(), &s)
                .await
                .map_err(kube_err("update PodVolumeBackup"))?;
        }
    }
    let pvrs: Api<PodVolumeRestore> = Api::namespaced(client.clone(), &config.namespace);
    for r in pvrs
        .list(&ListParams::default())
        .await
        .map_err(kube_err("list PodVolumeRestores"))?
    {
        let mut s = r.status.clone().unwrap_or_default();
        if s.phase.as_deref() != Some(phase::IN_PROGRESS) {
            continue;
        }
        let ns = r.spec.pod.namespace.clone().unwrap_or_default();
        let pod_name = r.spec.pod.name.clone().unwrap_or_default();
        let on_this_node = Api::<Pod>::namespaced(client.clone(), &ns)
            .get_opt(&pod_name)
            .await
            .ok()
            .flatten()
            .and_then(|p| p.spec.and_then(|s| s.node_name))
            .is_some_and(|n| n == config.node_name);
        if on_this_node {
            s.phase = Some(phase::FAILED.into());
            s.message = Some("the node agent stopped while restoring this volume".into());
            s.completion_timestamp = Some(now.clone());
            patch_pvr(&pvrs, &r.name_any(), &s)
                .await
                .map_err(kube_err("update PodVolumeRestore"))?;
        }
    }
    Ok(())
}

/// Runs the agent until the process stops: one controller for PodVolumeBackups, one for
/// PodVolumeRestores, in `config.namespace`.
///
/// # Errors
/// [`AgentError::Kube`] when the record kinds cannot be listed at start-up (CRDs missing, no
/// permission).
pub async fn run(client: Client, config: AgentConfig) -> Result<(), AgentError> {
    let pvbs: Api<PodVolumeBackup> = Api::namespaced(client.clone(), &config.namespace);
    let pvrs: Api<PodVolumeRestore> = Api::namespaced(client.clone(), &config.namespace);
    for (what, r) in [
        (
            "PodVolumeBackups",
            pvbs.list(&ListParams::default().limit(1)).await.map(|_| ()),
        ),
        (
            "PodVolumeRestores",
            pvrs.list(&ListParams::default().limit(1)).await.map(|_| ()),
        ),
    ] {
        r.map_err(|source| AgentError::Kube {
            what: format!("list {what} in {}", config.namespace),
            source,
        })?;
    }
    recover(&client, &config).await?;
    tracing::info!(node = %config.node_name, root = %config.kubelet_root.display(), "node agent started");
    let ctx = Arc::new(Ctx {
        client,
        config,
        taken: Mutex::new(BTreeSet::new()),
    });
    let backups = Controller::new(pvbs, watcher::Config::default())
        .run(reconcile_pvb, error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let restores = Controller::new(pvrs, watcher::Config::default())
        .run(reconcile_pvr, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    futures::join!(backups, restores);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_put_the_pv_first_and_never_twice() {
        assert_eq!(
            candidate_names("data", Some("pvc-123")),
            ["pvc-123", "data"]
        );
        assert_eq!(candidate_names("data", None), ["data"]);
        assert_eq!(candidate_names("data", Some("data")), ["data"]);
        assert_eq!(candidate_names("data", Some("")), ["data"]);
    }

    #[test]
    fn csi_data_is_in_mount() {
        assert_eq!(
            data_dir(
                "kubernetes.io~csi",
                Path::new("/k/pods/u/volumes/kubernetes.io~csi/pv1")
            ),
            PathBuf::from("/k/pods/u/volumes/kubernetes.io~csi/pv1/mount")
        );
        assert_eq!(
            data_dir("kubernetes.io~empty-dir", Path::new("/x/cache")),
            PathBuf::from("/x/cache")
        );
    }

    #[test]
    fn volume_directories_are_found_per_plugin() {
        let root = tempfile::tempdir().unwrap();
        let vols = root.path().join("pods/uid-1/volumes");
        std::fs::create_dir_all(vols.join("kubernetes.io~empty-dir/cache")).unwrap();
        std::fs::create_dir_all(vols.join("kubernetes.io~csi/pvc-9/mount")).unwrap();
        std::fs::create_dir_all(vols.join("kubernetes.io~nfs/share")).unwrap();
        std::fs::create_dir_all(vols.join("kubernetes.io~csi/inline")).unwrap();
        let r = root.path();
        assert_eq!(
            find_volume_dir(r, "uid-1", "cache", None),
            Some(vols.join("kubernetes.io~empty-dir/cache"))
        );
        assert_eq!(
            find_volume_dir(r, "uid-1", "data", Some("pvc-9")),
            Some(vols.join("kubernetes.io~csi/pvc-9/mount"))
        );
        assert_eq!(
            find_volume_dir(r, "uid-1", "share", None),
            Some(vols.join("kubernetes.io~nfs/share"))
        );
        // A CSI directory without its mount is not ready.
        assert_eq!(find_volume_dir(r, "uid-1", "inline", None), None);
        assert_eq!(find_volume_dir(r, "uid-1", "missing", None), None);
        assert_eq!(find_volume_dir(r, "uid-2", "cache", None), None);
    }

    #[test]
    fn done_marker_lives_in_the_volume() {
        assert_eq!(
            done_marker(Path::new("/v"), "abc"),
            PathBuf::from("/v/.tidemark/abc")
        );
    }
}
