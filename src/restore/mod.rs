//! The restore engine (DESIGN §5): fetch and validate the archive (checksum, paths, sizes)
//! before anything is created, then create the objects tier by tier in priority order,
//! concurrently within a tier under the QPS budget, and report per-namespace results.
//!
//! Plan-then-apply: [`plan`] turns the extracted archive and the request into an ordered list of
//! prepared objects (pure, no cluster access); [`run`] applies it.

mod apply;
pub mod modifiers;
pub mod order;
pub mod pacing;
mod plan;
mod preview;
pub mod transform;
pub mod verify;

use apply::{Applier, ResourceTally};
pub use plan::{PlannedItem, RestorePlan, plan};

pub use preview::{Preview, preview};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::Value;

use crate::api::velero::{self, Backup, Restore, RestoreProgress, TidemarkBackupMeta};
use crate::archive::{ArchiveError, ArchiveIndex, ExtractLimits, IndexedItem, Spool, SpoolRef};
use crate::backup::{Patterns, validate_name};
use crate::cluster::selector::{self, LabelMatcher, SelectorError};
use crate::cluster::{Budget, describe, is_already_exists, is_not_found};
use crate::report::{Results, RunLog, gzip_json};
use crate::store::{Store, StoreError, layout};
use transform::{Disposition, TransformContext};

/// Field manager used for updates made by restores.
pub const FIELD_MANAGER: &str = "tidemark";

/// Errors that fail a restore before or outside the per-object work.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The restore name is invalid.
    #[error("restore name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The backup is not in the location.
    #[error("backup {name:?} not found in location {location}")]
    BackupNotFound {
        /// The backup name.
        name: String,
        /// The location.
        location: String,
    },
    /// The backup's record is unreadable or the backup did not complete.
    #[error("backup {name:?}: {reason}")]
    BackupUnusable {
        /// The backup name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The archive is corrupt, hostile or does not match its checksum; nothing was restored.
    #[error("backup {name:?}: archive rejected, nothing was restored: {source}")]
    Archive {
        /// The backup name.
        name: String,
        /// What is wrong with it.
        #[source]
        source: ArchiveError,
    },
    /// A filter option is invalid.
    #[error(transparent)]
    Filter(#[from] crate::backup::FilterError),
    /// The selector is invalid.
    #[error("--selector: {0}")]
    Selector(#[from] SelectorError),
    /// The resource modifiers could not be read or parsed.
    #[error("resource modifiers: {0}")]
    Modifiers(String),
    /// An invalid `--namespace-mappings` entry.
    #[error("--namespace-mappings: {0}")]
    Mapping(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hook spec (`hooks`) is invalid; nothing was restored.
    #[error(transparent)]
    Hooks(#[from] crate::hooks::HookError),
    /// A restore drill that would touch live objects ([`verify::check_namespace_prefix`]);
    /// nothing was restored.
    #[error("restore drill refused: {0}")]
    DrillRefused(String),
}

/// What to do with objects that already exist (Velero's `existingResourcePolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExistingPolicy {
    /// Leave them; warn when they differ from the backup.
    #[default]
    None,
    /// Patch them to match the backup.
    Update,
}

/// What to restore: the options of `velero restore create`.
#[derive(Clone, Debug, Default)]
pub struct RestoreRequest {
    /// Restore name.
    pub name: String,
    /// Namespace the record belongs to.
    pub record_namespace: String,
    /// The backup to restore.
    pub backup: String,
    /// Source namespace globs to include.
    pub include_namespaces: Vec<String>,
    /// Source namespace globs to exclude.
    pub exclude_namespaces: Vec<String>,
    /// Resources to include (`deployments`, `deployments.apps`).
    pub include_resources: Vec<String>,
    /// Resources to exclude.
    pub exclude_resources: Vec<String>,
    /// `true`/`false`/auto.
    pub include_cluster_resources: Option<bool>,
    /// Source namespace → target namespace.
    pub namespace_mappings: BTreeMap<String, String>,
    /// Label selector string.
    pub selector: Option<String>,
    /// `--or-selector`: objects matching any of these selectors.
    pub or_selectors: Vec<String>,
    /// Policy for existing objects.
    pub existing_policy: ExistingPolicy,
    /// Keep Service nodePorts.
    pub preserve_node_ports: bool,
    /// Velero's `restorePVs` (`--restore-volumes`, default true). `false`: PersistentVolumes are
    /// not restored and PVCs lose their `volumeName`, so the target provisions new volumes.
    pub restore_pvs: Option<bool>,
    /// Resources whose `status` is restored too (`*` = all; Velero's
    /// `restoreStatus.includedResources`).
    pub status_include: Vec<String>,
    /// Resources whose `status` is never restored.
    pub status_exclude: Vec<String>,
    /// Resource modifiers applied to every object last (Velero's
    /// `--resource-modifier-configmap`).
    pub modifiers: Option<std::sync::Arc<modifiers::ResourceModifiers>>,
    /// Labels put on the Restore record (e.g. the RestorePlan and spec hash that caused it).
    pub labels: BTreeMap<String, String>,
    /// Velero's restore hooks (`hooks.resources[]`); pod annotation hooks need nothing here.
    pub hooks: crate::hooks::RestoreHooks,
    /// Run no hooks at all, neither the spec's nor the pods' annotations (restore drills: their
    /// scratch copies must not run the workload's restore commands).
    pub no_hooks: bool,
}

/// Parses `src:dst,src2:dst2`.
///
/// # Errors
/// [`RestoreError::Mapping`] naming the bad entry.
pub fn parse_mappings(s: &str) -> Result<BTreeMap<String, String>, RestoreError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part
            .split_once(':')
            .ok_or_else(|| RestoreError::Mapping(format!("{part:?} is not src:dst")))?;
        let (a, b) = (a.trim(), b.trim());
        for n in [a, b] {
            validate_name(n).map_err(|r| RestoreError::Mapping(format!("{n:?}: {r}")))?;
        }
        if out.insert(a.to_string(), b.to_string()).is_some() {
            return Err(RestoreError::Mapping(format!("{a:?} is mapped twice")));
        }
    }
    Ok(out)
}

/// Counters of a running restore.
#[derive(Debug, Default)]
pub struct Counters {
    /// Items in the plan.
    pub total: AtomicU64,
    /// Created.
    pub created: AtomicU64,
    /// Patched (`update` policy).
    pub updated: AtomicU64,
    /// Existing and left alone (equal, or differing under `none`), or skipped by rule.
    pub skipped: AtomicU64,
    /// Failed.
    pub failed: AtomicU64,
}

impl Counters {
    /// Items processed so far — created, updated, skipped or failed, as Velero counts
    /// `itemsRestored` — never above the total (a failure reported after a create, e.g. of a pod
    /// volume, counts twice).
    pub fn processed(&self) -> u64 {
        [&self.created, &self.updated, &self.skipped, &self.failed]
            .into_iter()
            .map(|c| c.load(Ordering::Relaxed))
            .fold(0u64, u64::saturating_add)
            .min(self.total.load(Ordering::Relaxed))
    }
}

/// The outcome of a restore.
#[derive(Debug)]
pub struct RestoreOutcome {
    /// The record (phase, counters).
    pub record: Restore,
    /// Objects created.
    pub created: u64,
    /// Objects patched.
    pub updated: u64,
    /// Objects skipped.
    pub skipped: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Warnings and errors by namespace.
    pub results: Results,
    /// Wall-clock duration.
    pub duration: Duration,
    /// The outcome of every restore hook (also in `tidemark-hooks.json.gz`).
    pub hooks: Vec<crate::hooks::HookOutcome>,
}

/// Settings of a restore run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Objects created at once within a tier to start with; the number then adapts to the API
    /// server's capacity ([`pacing`]) up to `max_concurrency`.
    pub concurrency: usize,
    /// The most objects created at once (`concurrency` = `max_concurrency`: a fixed number).
    pub max_concurrency: usize,
    /// Client-side request budget.
    pub budget: Budget,
    /// How long to wait for CRDs to become Established and terminating namespaces to go.
    pub wait_timeout: Duration,
    /// File-system volume restore: the wait init container's image and the timeout.
    pub pod_volumes: crate::volumes::podvolume::PodVolumeSettings,
}

/// Reads a backup's record from the store.
///
/// # Errors
/// [`RestoreError::BackupNotFound`], [`RestoreError::BackupUnusable`] or
/// [`RestoreError::Store`].
pub async fn read_backup(store: &Store, name: &str) -> Result<Backup, RestoreError> {
    let path = store
        .layout()
        .backup_file(name, layout::BACKUP_METADATA_FILE);
    let bytes = match store.get(&path).await {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => {
            return Err(RestoreError::BackupNotFound {
                name: name.into(),
                location: store.url().to_string(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&bytes).map_err(|e| RestoreError::BackupUnusable {
        name: name.into(),
        reason: format!("{}: {e}", layout::BACKUP_METADATA_FILE),
    })
}

/// The newest backup (by start time) made by `schedule` (label `velero.io/schedule-name`) in
/// phase `Completed`, or also `PartiallyFailed` with `allow_partial`.
///
/// # Errors
/// [`RestoreError::BackupNotFound`] when there is none; store errors.
pub async fn latest_of_schedule(
    store: &Store,
    schedule: &str,
    allow_partial: bool,
) -> Result<String, RestoreError> {
    let mut best: Option<(chrono::DateTime<Utc>, String)> = None;
    for name in store.list_backups().await? {
        let b = read_backup(store, &name).await?;
        let of_schedule = b
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(velero::SCHEDULE_NAME_LABEL))
            .is_some_and(|s| s == schedule);
        let phase_ok =
            b.phase() == "Completed" || (allow_partial && b.phase() == "PartiallyFailed");
        if of_schedule && phase_ok {
            let started = b.status.start_timestamp.unwrap_or_default();
            if best.as_ref().is_none_or(|(t, _)| started > *t) {
                best = Some((started, name));
            }
        }
    }
    best.map(|(_, n)| n)
        .ok_or_else(|| RestoreError::BackupNotFound {
            name: format!(
                "latest Completed{} backup of schedule {schedule}",
                if allow_partial {
                    " or PartiallyFailed"
                } else {
                    ""
                }
            ),
            location: store.url().to_string(),
        })
}

/// Downloads and validates a backup's archive into a temporary directory.
///
/// # Errors
/// [`RestoreError::Archive`] (corrupt, hostile, checksum mismatch) or [`RestoreError::Store`].
pub async fn fetch_archive(store: &Store, name: &str) -> Result<ArchiveIndex, RestoreError> {
    let meta_path = store
        .layout()
        .backup_file(name, layout::TIDEMARK_BACKUP_FILE);
    let expected = match store.get(&meta_path).await {
        Ok(b) => serde_json::from_slice::<TidemarkBackupMeta>(&b)
            .ok()
            .map(|m| m.archive_sha256),
        Err(StoreError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let stream = store
        .get_stream(&store.layout().backup_archive(name))
        .await?;
    let reader = tokio_util::io::StreamReader::new(stream);
    let name_owned = name.to_string();
    tokio::task::spawn_blocking(move || {
        let sync = tokio_util::io::SyncIoBridge::new(reader);
        crate::archive::extract(sync, ExtractLimits::default(), expected.as_deref())
    })
    .await
    .map_err(|e| RestoreError::Archive {
        name: name_owned.clone(),
        source: ArchiveError::Io(std::io::Error::other(e.to_string())),
    })?
    .map_err(|source| RestoreError::Archive {
        name: name_owned,
        source,
    })
}

/// Computes what a restore would do, without writing anything (cluster or store): fetches and
/// validates the archive, plans, and checks every item against the target.
///
/// # Errors
/// As [`run`] before any object is touched.
pub async fn dry_run(
    client: &Client,
    store: &Store,
    req: &RestoreRequest,
    settings: &Settings,
) -> Result<Preview, RestoreError> {
    store.check().await?;
    let backup = read_backup(store, &req.backup).await?;
    usable(&backup, &req.backup)?;
    let index = fetch_archive(store, &req.backup).await?;
    let planned = plan(&index, req)?;
    Ok(preview(
        client,
        &planned,
        req.existing_policy,
        &settings.budget,
        settings.concurrency,
    )
    .await)
}

fn usable(backup: &Backup, name: &str) -> Result<(), RestoreError> {
    if matches!(backup.phase(), "Completed" | "PartiallyFailed") {
        Ok(())
    } else {
        Err(RestoreError::BackupUnusable {
            name: name.to_string(),
            reason: format!(
                "phase is {:?}; only Completed or PartiallyFailed backups can be restored",
                backup.phase()
            ),
        })
    }
}

/// Runs a restore from `store` into the cluster.
///
/// # Errors
/// [`RestoreError`] when the restore cannot start (missing backup, bad archive, invalid
/// options); per-object failures are in the outcome (phase `PartiallyFailed`).
pub async fn run(
    client: &Client,
    store: &Store,
    req: &RestoreRequest,
    settings: &Settings,
    counters: &Counters,
) -> Result<RestoreOutcome, RestoreError> {
    let started = Instant::now();
    let start_time = Utc::now();
    validate_name(&req.name).map_err(|reason| RestoreError::InvalidName {
        name: req.name.clone(),
        reason,
    })?;
    let log = std::sync::Arc::new(RunLog::new(
        "restore",
        &format!("{}/{}", req.record_namespace, req.name),
    ));
    // Checked before anything is read or written.
    let hooks = if req.no_hooks {
        None
    } else {
        Some(
            crate::hooks::RestoreHookRunner::new(
                std::sync::Arc::new(crate::hooks::ApiExecutor::new(client.clone())),
                std::sync::Arc::new(crate::hooks::ApiPodWatch::new(client.clone())),
                &req.hooks,
                crate::hooks::RestoreHookSettings {
                    volume_wait_timeout: settings.pod_volumes.timeout,
                    ..Default::default()
                },
            )?
            .with_log(log.clone()),
        )
    };
    store.check().await?;
    let backup = read_backup(store, &req.backup).await?;
    usable(&backup, &req.backup)?;
    log.info(&format!(
        "Restoring backup {} from {}",
        req.backup,
        store.url()
    ));
    let index = fetch_archive(store, &req.backup).await?;
    log.info(&format!(
        "Archive verified: {} items, sha256 {}",
        index.len(),
        index.sha256
    ));
    let mut planned = plan(&index, req)?;
    for pv in &planned.reprovisioned {
        log.info(&format!(
            "persistentvolumes {pv}: not restored: its reclaim policy is Delete, so its claim is \
             provisioned anew (from its snapshot or pod volume backup if it has one)"
        ));
    }
    // CSI snapshots: claims that had one are provisioned from it (VolumeSnapshotContent +
    // VolumeSnapshot pre-provisioned, `dataSource` set); their PersistentVolumes are not restored.
    let csi =
        match crate::volumes::csi::CsiRestorer::load(client, store, &req.backup, &req.name).await {
            Ok(c) => c,
            Err(e) => {
                log.error(&e.to_string());
                planned.results.errors.add_general(e.to_string());
                None
            }
        };
    if let Some(c) = &csi {
        let pvs = c.snapshot_pvs();
        for tier in &mut planned.tiers {
            tier.retain(|it| {
                let skip = it.group_resource == "persistentvolumes" && pvs.contains(&it.name);
                if skip {
                    planned.skipped += 1;
                    planned.results.warnings.add(
                        None,
                        format!(
                            "persistentvolumes {}: not restored: its claim is provisioned from \
                             its CSI snapshot",
                            it.name
                        ),
                    );
                }
                !skip
            });
        }
        planned.context.restored_pvs.retain(|p| !pvs.contains(p));
    }
    let total: u64 = planned.tiers.iter().map(|t| t.len() as u64).sum::<u64>() + planned.skipped;
    counters.total.store(total, Ordering::Relaxed);
    counters
        .skipped
        .fetch_add(planned.skipped, Ordering::Relaxed);
    let results = Mutex::new(std::mem::take(&mut planned.results));
    // File-system backed-up pod volumes: restored pods get the wait init container and, once
    // created, one PodVolumeRestore per volume (carried out by the node agents).
    let pod_volumes = match crate::volumes::podvolume::PodVolumeRestorer::load(
        client,
        store,
        &req.backup,
        crate::volumes::podvolume::RestoreVolumesRequest {
            restore: req.name.clone(),
            record_namespace: req.record_namespace.clone(),
        },
        settings.pod_volumes.clone(),
    )
    .await
    {
        Ok(p) => (!p.is_empty()).then_some(p),
        Err(e) => {
            log.error(&e.to_string());
            results
                .lock()
                .expect("results lock")
                .errors
                .add_general(e.to_string());
            None
        }
    };
    let resource_list: Mutex<BTreeMap<String, Vec<String>>> = Mutex::new(BTreeMap::new());
    let tallies: Mutex<BTreeMap<String, ResourceTally>> = Mutex::new(BTreeMap::new());
    let pacer = pacing::CreatePacer::new(settings.concurrency, settings.max_concurrency);
    let throttled_before = crate::cluster::api_stats().throttled();
    log.info(&format!(
        "Client-side rate limit: {}; creates in flight: from {} up to {}, adapted to the API \
         server's capacity",
        settings.budget.describe(),
        pacer.limit(),
        settings.max_concurrency.max(1)
    ));
    let applier = Applier {
        pacer: &pacer,
        client,
        plan: &planned,
        budget: &settings.budget,
        policy: req.existing_policy,
        counters,
        results: &results,
        resource_list: &resource_list,
        log: &log,
        pod_volumes: pod_volumes.as_ref(),
        csi: csi.as_ref(),
        tallies: &tallies,
        hooks: hooks.as_ref(),
    };
    let mut namespaces_ready = false;
    for tier in &planned.tiers {
        let first = tier
            .first()
            .map(|i| i.group_resource.clone())
            .unwrap_or_default();
        let needs_namespaces = tier.iter().any(|i| i.namespace.is_some());
        if needs_namespaces && !namespaces_ready {
            applier
                .ensure_namespaces(
                    &planned.namespaces,
                    settings.wait_timeout,
                    &req.backup,
                    &req.name,
                )
                .await;
            namespaces_ready = true;
        }
        // Futures are made as slots free up: a tier of 100,000 objects must not hold 100,000
        // unstarted request futures (kilobytes each) at once.
        // Indices, not references: the closure then has no higher-ranked lifetime, which the
        // controller's `Send` futures need.
        futures::stream::iter(0..tier.len())
            .map(|i| applier.apply(&tier[i]))
            .buffer_unordered(settings.max_concurrency.max(1))
            .for_each(|()| async {})
            .await;
        if first == "customresourcedefinitions.apiextensions.k8s.io" {
            applier
                .wait_crds_established(tier, settings.wait_timeout)
                .await;
        }
    }
    if let Some(pv) = &pod_volumes {
        let (done, errors) = pv.finish().await;
        log.info(&format!("Pod volumes restored: {done}"));
        for (ns, msg) in errors {
            applier.error(Some(ns.as_str()), msg);
        }
    }
    // The restored pods' exec hooks: each pod's task waits for its containers (bounded).
    let hook_outcomes = match &hooks {
        Some(h) => h.finish().await,
        None => Vec::new(),
    };
    let hook_status = crate::hooks::HookStatus::of(&hook_outcomes);
    if !hook_outcomes.is_empty() {
        log.info(&format!(
            "Restore hooks: {} attempted, {} failed",
            hook_status.hooks_attempted, hook_status.hooks_failed
        ));
    }
    log.info(&format!(
        "Creates in flight: peaked at {}, ended at {}; the API server throttled {} requests (429, \
         retried with backoff), {} overload signals",
        pacer.peak(),
        pacer.limit(),
        crate::cluster::api_stats().throttled() - throttled_before,
        pacer.overload_signals()
    ));
    // One line per resource, in the order the restore started them (Velero's log has one per
    // resource too).
    let mut tallies: Vec<(String, ResourceTally)> = tallies
        .into_inner()
        .expect("tallies lock")
        .into_iter()
        .collect();
    tallies.sort_by_key(|(_, t)| t.span.map(|(a, _)| a));
    for (resource, tally) in &tallies {
        log.info(&tally.line(resource));
    }
    let mut results = results.into_inner().expect("results lock");
    crate::hooks::outcome::record(&hook_outcomes, &mut results);
    let resource_list = resource_list.into_inner().expect("resource list lock");
    let failed = counters.failed.load(Ordering::Relaxed);
    let created = counters.created.load(Ordering::Relaxed);
    let updated = counters.updated.load(Ordering::Relaxed);
    let skipped = counters.skipped.load(Ordering::Relaxed);
    let phase = if results.errors.is_empty() && failed == 0 {
        "Completed"
    } else {
        "PartiallyFailed"
    };
    log.info(&format!(
        "Restore {phase}: {created} created, {updated} updated, {skipped} skipped, {failed} failed"
    ));
    let mut record = Restore::new(&req.name, &req.record_namespace, &req.backup);
    if !req.labels.is_empty() {
        record.metadata.labels = Some(req.labels.clone());
    }
    record.spec.included_namespaces = req.include_namespaces.clone();
    record.spec.excluded_namespaces = req.exclude_namespaces.clone();
    record.spec.included_resources = req.include_resources.clone();
    record.spec.excluded_resources = req.exclude_resources.clone();
    record.spec.namespace_mapping = req.namespace_mappings.clone();
    record.spec.label_selector = match req.selector.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => Some(selector::parse(s)?),
        None => None,
    };
    record.spec.existing_resource_policy = match req.existing_policy {
        ExistingPolicy::None => None,
        ExistingPolicy::Update => Some("update".into()),
    };
    record.spec.hooks = req.hooks.clone();
    record.status = velero::RestoreStatus {
        phase: Some(phase.into()),
        start_timestamp: Some(start_time),
        completion_timestamp: Some(Utc::now()),
        warnings: results.warnings.len() as u64,
        errors: results.errors.len() as u64,
        failure_reason: None,
        progress: Some(RestoreProgress {
            total_items: total,
            items_restored: counters.processed(),
        }),
        // Velero's `hookStatus` (counters at 0 are omitted, as Velero does).
        extra: BTreeMap::from([("hookStatus".to_string(), hook_status.to_json())]),
    };
    if !store.is_read_only() {
        let l = store.layout();
        let files: Vec<(object_store::path::Path, Bytes, bool)> = vec![
            (l.restore_results(&req.name), gzip_json(&results), false),
            (
                l.restore_resource_list(&req.name),
                gzip_json(&resource_list),
                false,
            ),
            (l.restore_logs(&req.name), Bytes::from(log.finish()), false),
            (
                l.restore_file(&req.name, layout::RESTORE_RECORD_FILE),
                Bytes::from(serde_json::to_vec_pretty(&record).unwrap_or_default()),
                true,
            ),
        ];
        crate::hooks::outcome::write_restore(store, &req.name, &hook_outcomes).await?;
        // Restored CSI claims (only when the backup had snapshots).
        if let Some(c) = &csi {
            store
                .put(
                    &l.restore_volume_info(&req.name),
                    gzip_json(&c.volume_infos()),
                    false,
                )
                .await?;
        }
        for (path, data, create_only) in files {
            store.put(&path, data, create_only).await?;
        }
    }
    Ok(RestoreOutcome {
        record,
        created,
        updated,
        skipped,
        failed,
        results,
        duration: started.elapsed(),
        hooks: hook_outcomes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::{ArchiveWriter, ItemKey};
    use serde_json::json;

    fn index(items: &[(&str, Option<&str>, &str, Value)]) -> ArchiveIndex {
        let mut w = ArchiveWriter::new(Vec::new(), 0).unwrap();
        for (gr, ns, name, obj) in items {
            w.add_item(
                &ItemKey {
                    group_resource: gr.to_string(),
                    version: "v1".into(),
                    namespace: ns.map(str::to_string),
                    name: name.to_string(),
                },
                &serde_json::to_vec(obj).unwrap(),
            )
            .unwrap();
        }
        let bytes = w.finish().unwrap();
        crate::archive::extract(&bytes[..], ExtractLimits::default(), None).unwrap()
    }

    fn sample() -> ArchiveIndex {
        index(&[
            (
                "namespaces",
                None,
                "web",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}}),
            ),
            (
                "namespaces",
                None,
                "ops",
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ops"}}),
            ),
            (
                "configmaps",
                Some("web"),
                "a",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "web", "labels": {"app": "x"}}}),
            ),
            (
                "configmaps",
                Some("ops"),
                "b",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "ops"}}),
            ),
            (
                "pods",
                Some("web"),
                "done",
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "done", "namespace": "web"}, "status": {"phase": "Succeeded"}}),
            ),
            (
                "deployments.apps",
                Some("web"),
                "d",
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "web"}}),
            ),
            (
                "customresourcedefinitions.apiextensions.k8s.io",
                None,
                "w.example.com",
                json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "w.example.com"}}),
            ),
            (
                "storageclasses.storage.k8s.io",
                None,
                "fast",
                json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "fast"}}),
            ),
            (
                "nodes",
                None,
                "n1",
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}),
            ),
        ])
    }

    fn names(p: &RestorePlan) -> Vec<Vec<String>> {
        p.tiers
            .iter()
            .map(|t| {
                t.iter()
                    .map(|i| format!("{}/{}", i.group_resource, i.name))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn full_plan_is_ordered_and_skips_by_rule() {
        let req = RestoreRequest {
            name: "r".into(),
            backup: "b".into(),
            ..Default::default()
        };
        let idx = sample();
        let p = plan(&idx, &req).unwrap();
        assert_eq!(
            names(&p),
            vec![
                vec!["customresourcedefinitions.apiextensions.k8s.io/w.example.com"],
                vec!["namespaces/ops", "namespaces/web"],
                vec!["storageclasses.storage.k8s.io/fast"],
                vec!["configmaps/b", "configmaps/a"],
                vec!["deployments.apps/d"],
            ]
        );
        assert_eq!(p.skipped, 1);
        assert_eq!(p.namespaces, ["ops".to_string(), "web".to_string()].into());
        let d = &p.tiers[4][0];
        assert_eq!(d.api_resource.group, "apps");
        assert_eq!(d.api_resource.plural, "deployments");
        let (object, status) = p.materialize(d).unwrap();
        assert_eq!(object["metadata"]["labels"]["velero.io/restore-name"], "r");
        assert!(status.is_none());
    }

    #[test]
    fn volumes_with_delete_reclaim_policy_are_provisioned_anew() {
        let pv = |name: &str, policy: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
                   "spec": {"persistentVolumeReclaimPolicy": policy,
                            "claimRef": {"namespace": "web", "name": name}}})
        };
        let claim = |name: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": name, "namespace": "web"},
                   "spec": {"volumeName": name}})
        };
        let idx = index(&[
            ("persistentvolumes", None, "gone", pv("gone", "Delete")),
            ("persistentvolumes", None, "kept", pv("kept", "Retain")),
            ("persistentvolumeclaims", Some("web"), "gone", claim("gone")),
            ("persistentvolumeclaims", Some("web"), "kept", claim("kept")),
        ]);
        let req = RestoreRequest {
            name: "r".into(),
            backup: "b".into(),
            ..Default::default()
        };
        let p = plan(&idx, &req).unwrap();
        assert_eq!(p.reprovisioned, ["gone"]);
        assert_eq!(p.skipped, 1);
        let all: Vec<String> = names(&p).concat();
        assert!(
            all.contains(&"persistentvolumes/kept".to_string()),
            "{all:?}"
        );
        assert!(
            !all.contains(&"persistentvolumes/gone".to_string()),
            "{all:?}"
        );
        // The claim of the volume provisioned anew loses its volumeName; the other keeps it.
        let claims: Vec<&PlannedItem> = p
            .tiers
            .iter()
            .flatten()
            .filter(|i| i.group_resource == "persistentvolumeclaims")
            .collect();
        for c in claims {
            let (obj, _) = p.materialize(c).unwrap();
            let expected = if c.name == "kept" {
                json!("kept")
            } else {
                Value::Null
            };
            assert_eq!(obj["spec"]["volumeName"], expected, "{obj}");
        }
    }

    #[test]
    fn namespace_filter_and_mapping() {
        let req = RestoreRequest {
            name: "r".into(),
            backup: "b".into(),
            include_namespaces: vec!["web".into()],
            namespace_mappings: [("web".to_string(), "web-copy".to_string())].into(),
            ..Default::default()
        };
        let p = plan(&sample(), &req).unwrap();
        assert_eq!(
            names(&p),
            vec![
                vec!["customresourcedefinitions.apiextensions.k8s.io/w.example.com"],
                vec!["namespaces/web-copy"],
                vec!["configmaps/a"],
                vec!["deployments.apps/d"],
            ]
        );
        assert_eq!(p.tiers[2][0].namespace.as_deref(), Some("web-copy"));
        assert_eq!(p.namespaces, ["web-copy".to_string()].into());
    }

    #[test]
    fn selector_and_resource_filters() {
        let req = RestoreRequest {
            name: "r".into(),
            backup: "b".into(),
            selector: Some("app=x".into()),
            include_resources: vec!["configmaps".into(), "namespaces".into()],
            ..Default::default()
        };
        let p = plan(&sample(), &req).unwrap();
        assert_eq!(
            names(&p),
            vec![
                vec!["namespaces/ops", "namespaces/web"],
                vec!["configmaps/a"]
            ]
        );
        let excl = RestoreRequest {
            name: "r".into(),
            backup: "b".into(),
            exclude_resources: vec![
                "deployments.apps".into(),
                "crd".into(),
                "customresourcedefinitions".into(),
            ],
            include_cluster_resources: Some(false),
            ..Default::default()
        };
        let p = plan(&sample(), &excl).unwrap();
        let flat: Vec<String> = names(&p).concat();
        assert!(!flat.iter().any(|n| n.starts_with("deployments")));
        assert!(!flat.iter().any(|n| n.starts_with("storageclasses")));
        assert!(
            !flat
                .iter()
                .any(|n| n.starts_with("customresourcedefinitions"))
        );
    }

    #[test]
    fn mappings_parse() {
        let m = parse_mappings("a:b, c:d").unwrap();
        assert_eq!(m["a"], "b");
        assert_eq!(m["c"], "d");
        for bad in ["a", "a:B", "a:b,a:c", ":b"] {
            assert!(parse_mappings(bad).is_err(), "{bad}");
        }
    }
}
