//! The backup engine (DESIGN §3): discover, resolve filters, list everything concurrently with
//! pagination under the QPS budget, stream into the Velero-compatible archive and the archive
//! into the store, then write the side files and the metadata file last.
//!
//! A backup exists only once its `velero-backup.json` is in the store; if anything fails before
//! that, what was written is removed, so a crash or an error never leaves something that looks
//! complete.

mod collect;
pub mod delete;
pub mod filter;
mod pipeline;
pub mod raw;
pub mod recover;

pub use collect::Progress;
pub use filter::{BackupFilter, FilterError, Patterns, ResourceFilter, ResourcePlan};
pub use pipeline::{ArchiveSummary, PipelineError};

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::api::velero::{self, Backup, BackupProgress, TidemarkBackupMeta};
use crate::cluster::selector::{self, SelectorError};
use crate::cluster::{Budget, ClusterError, ServedResource, discover};
use crate::report::{Results, RunLog, gzip_json};
use crate::store::{Store, StoreError, layout};

/// Errors that fail a backup as a whole.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The backup name is not a valid object name.
    #[error("backup name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A backup of that name already exists in the location; nothing was written.
    #[error("backup {name:?} already exists in location {location}; nothing was overwritten")]
    AlreadyExists {
        /// The name.
        name: String,
        /// The location.
        location: String,
    },
    /// Files of an earlier run of that name, which did not finish, are in the location (no
    /// record); nothing was written.
    #[error(
        "backup {name:?} was started before in location {location} and did not finish{started}: \
         its files are there without a record; remove them with `tidemark recover` (or \
         `tidemark backup delete {name} --confirm`), or choose another name"
    )]
    Interrupted {
        /// The name.
        name: String,
        /// The location.
        location: String,
        /// ` (started <time> on <host>)` from the run marker, or empty.
        started: String,
    },
    /// A filter option is invalid.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The label selector is invalid.
    #[error("--selector: {0}")]
    Selector(#[from] SelectorError),
    /// The cluster could not be read.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing or uploading the archive failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The volume phase could not start (unusable volume policy, pods/claims not listable).
    #[error(transparent)]
    Volumes(#[from] crate::volumes::VolumesError),
    /// The hook spec (`hooks`) is invalid; nothing was run.
    #[error(transparent)]
    Hooks(#[from] crate::hooks::HookError),
}

/// What to back up: the options of `velero backup create` / a BackupPolicy.
#[derive(Clone, Debug)]
pub struct BackupRequest {
    /// Backup name (a Kubernetes object name).
    pub name: String,
    /// Namespace the record belongs to (`tidemark`, like Velero's `velero`).
    pub record_namespace: String,
    /// Name of the location (recorded in the `velero.io/storage-location` label).
    pub location_name: String,
    /// Namespace globs to include (empty or `*` = all).
    pub include_namespaces: Vec<String>,
    /// Namespace globs to exclude.
    pub exclude_namespaces: Vec<String>,
    /// Resources to include (kubectl-style names).
    pub include_resources: Vec<String>,
    /// Resources to exclude.
    pub exclude_resources: Vec<String>,
    /// `true`/`false`/auto (`None`).
    pub include_cluster_resources: Option<bool>,
    /// Also back up Events (never restored), as Velero does.
    pub include_events: bool,
    /// Scoped filter: cluster-scoped resources to include.
    pub include_cluster_scoped: Vec<String>,
    /// Scoped filter: cluster-scoped resources to exclude.
    pub exclude_cluster_scoped: Vec<String>,
    /// Scoped filter: namespace-scoped resources to include.
    pub include_namespace_scoped: Vec<String>,
    /// Scoped filter: namespace-scoped resources to exclude.
    pub exclude_namespace_scoped: Vec<String>,
    /// Label selector string (`app=web`).
    pub selector: Option<String>,
    /// `--or-selector`: objects matching any of these selectors.
    pub or_selectors: Vec<String>,
    /// Resource → `ns/name,...` backed up first, in that order (`spec.orderedResources`).
    pub ordered_resources: BTreeMap<String, String>,
    /// Time to live.
    pub ttl: Duration,
    /// Labels put on the Backup record.
    pub labels: BTreeMap<String, String>,
    /// Annotations put on the Backup record.
    pub annotations: BTreeMap<String, String>,
    /// How volume data is backed up (flags / `spec.template.volumes`); `volumes.policy` is
    /// filled from [`BackupRequest::resource_policy_configmap`] when the backup runs.
    pub volumes: crate::volumes::VolumeSettings,
    /// `--resource-policies-configmap`: a ConfigMap in `record_namespace` holding volume policies.
    pub resource_policy_configmap: Option<String>,
    /// Velero's spec hooks (`spec.template.hooks`); pod annotation hooks need nothing here.
    pub hooks: crate::hooks::BackupHooks,
}

/// How hard to drive the API server.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Objects per LIST page (`limit`).
    pub page_size: u32,
    /// Resources listed at once.
    pub concurrency: usize,
    /// Client-side request budget.
    pub budget: Budget,
}

/// The result of a backup that reached the store.
#[derive(Debug)]
pub struct BackupOutcome {
    /// The record written as `velero-backup.json`.
    pub record: Backup,
    /// tidemark's metadata (archive checksum and size).
    pub meta: TidemarkBackupMeta,
    /// Warnings and errors.
    pub results: Results,
    /// Wall-clock duration.
    pub duration: Duration,
    /// The outcome of every pre and post hook (also in `tidemark-hooks.json.gz`).
    pub hooks: Vec<crate::hooks::HookOutcome>,
}

/// Default TTL of a backup: 30 days (Velero's default, `720h`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(720 * 3600);

/// Checks a backup or restore name: a DNS-1123 subdomain of at most 63 characters (it also
/// becomes a label value).
///
/// # Errors
/// A reason string.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 63 {
        return Err("must be 1 to 63 characters".into());
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ends_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok || !ends_ok {
        return Err(
            "must consist of lower case alphanumeric characters, '-' or '.', and start and end \
             with an alphanumeric character"
                .into(),
        );
    }
    Ok(())
}

impl BackupRequest {
    /// A request for `name` with Velero's defaults (everything, TTL 720h).
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            record_namespace: "tidemark".into(),
            location_name: "default".into(),
            include_namespaces: Vec::new(),
            exclude_namespaces: Vec::new(),
            include_resources: Vec::new(),
            exclude_resources: Vec::new(),
            include_cluster_resources: None,
            include_events: false,
            include_cluster_scoped: Vec::new(),
            exclude_cluster_scoped: Vec::new(),
            include_namespace_scoped: Vec::new(),
            exclude_namespace_scoped: Vec::new(),
            selector: None,
            or_selectors: Vec::new(),
            ordered_resources: BTreeMap::new(),
            ttl: DEFAULT_TTL,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            volumes: crate::volumes::VolumeSettings::default(),
            resource_policy_configmap: None,
            hooks: crate::hooks::BackupHooks::default(),
        }
    }

    /// Resolves the options into a filter.
    ///
    /// # Errors
    /// [`BackupError::Filter`] or [`BackupError::Selector`].
    pub fn filter(&self) -> Result<BackupFilter, BackupError> {
        let selector = self.selector.as_deref().filter(|s| !s.trim().is_empty());
        if selector.is_some() && !self.or_selectors.is_empty() {
            return Err(FilterError::Conflict("--selector", "--or-selector").into());
        }
        let label_selector = match selector {
            Some(s) => Some(selector::LabelMatcher::new(&selector::parse(s)?)?.to_query()),
            None => None,
        };
        let or_selectors = self
            .or_selectors
            .iter()
            .map(|s| selector::LabelMatcher::new(&selector::parse(s)?))
            .collect::<Result<Vec<_>, _>>()?;
        let scoped = !(self.include_cluster_scoped.is_empty()
            && self.exclude_cluster_scoped.is_empty()
            && self.include_namespace_scoped.is_empty()
            && self.exclude_namespace_scoped.is_empty());
        let classic = !(self.include_resources.is_empty()
            && self.exclude_resources.is_empty()
            && self.include_cluster_resources.is_none());
        if scoped && classic {
            return Err(FilterError::Conflict(
                "--include-resources/--exclude-resources/--include-cluster-resources",
                "the scoped filters (--include/exclude-cluster-scoped-resources, \
                 --include/exclude-namespace-scoped-resources)",
            )
            .into());
        }
        let resources = if scoped {
            ResourceFilter::Scoped {
                include_cluster: self.include_cluster_scoped.clone(),
                exclude_cluster: self.exclude_cluster_scoped.clone(),
                include_namespaced: self.include_namespace_scoped.clone(),
                exclude_namespaced: self.exclude_namespace_scoped.clone(),
            }
        } else {
            ResourceFilter::Classic {
                include: self.include_resources.clone(),
                exclude: self.exclude_resources.clone(),
                include_cluster_resources: self.include_cluster_resources,
            }
        };
        Ok(BackupFilter {
            namespaces: Patterns::new(
                "--include-namespaces/--exclude-namespaces",
                &self.include_namespaces,
                &self.exclude_namespaces,
            )?,
            resources,
            label_selector,
            or_selectors,
            include_events: self.include_events,
        })
    }

    /// The Velero Backup record for this request, before it runs (phase `New`): what
    /// `backup create -o yaml` prints.
    ///
    /// # Errors
    /// [`BackupError::Selector`] for an invalid selector.
    pub fn record(&self) -> Result<Backup, BackupError> {
        let mut b = Backup::new(&self.name, &self.record_namespace);
        let mut labels = self.labels.clone();
        labels.insert(
            velero::STORAGE_LOCATION_LABEL.into(),
            self.location_name.clone(),
        );
        b.metadata.labels = Some(labels);
        if !self.annotations.is_empty() {
            b.metadata.annotations = Some(self.annotations.clone());
        }
        b.spec.included_namespaces = if self.include_namespaces.is_empty() {
            vec!["*".into()]
        } else {
            self.include_namespaces.clone()
        };
        b.spec.excluded_namespaces = self.exclude_namespaces.clone();
        b.spec.included_resources = self.include_resources.clone();
        b.spec.excluded_resources = self.exclude_resources.clone();
        b.spec.include_cluster_resources = self.include_cluster_resources;
        b.spec.included_cluster_scoped_resources = self.include_cluster_scoped.clone();
        b.spec.excluded_cluster_scoped_resources = self.exclude_cluster_scoped.clone();
        b.spec.included_namespace_scoped_resources = self.include_namespace_scoped.clone();
        b.spec.excluded_namespace_scoped_resources = self.exclude_namespace_scoped.clone();
        b.spec.or_label_selectors = self
            .or_selectors
            .iter()
            .map(|s| selector::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        b.spec.ordered_resources = self.ordered_resources.clone();
        b.spec.label_selector = match self.selector.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(s) => Some(selector::parse(s)?),
            None => None,
        };
        b.spec.ttl = Some(velero::go_duration(self.ttl));
        b.spec.storage_location = Some(self.location_name.clone());
        crate::volumes::record_spec(
            &mut b.spec,
            &self.volumes,
            self.resource_policy_configmap.as_deref(),
        );
        // Fields Velero always writes, with the values that say what tidemark does: the spec's
        // hooks (`{}` without any), no labels for backups made from this spec (Velero's
        // `spec.metadata`, used by schedule templates), no movement of snapshot data.
        for (key, value) in [
            (
                "hooks",
                serde_json::to_value(&self.hooks).unwrap_or_else(|_| serde_json::json!({})),
            ),
            ("metadata", serde_json::json!({})),
            ("snapshotMoveData", serde_json::json!(false)),
        ] {
            b.spec.extra.insert(key.into(), value);
        }
        b.status.phase = Some("New".into());
        Ok(b)
    }
}

/// Velero's source-cluster version annotations on the backup record, from the API server's
/// `/version` (`gitVersion`, `major`, `minor`), as Velero's backup controller writes them.
fn source_cluster_version(record: &mut Backup, v: &k8s_openapi::apimachinery::pkg::version::Info) {
    let annotations = record
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    for (key, value) in [
        (
            velero::SOURCE_CLUSTER_GIT_VERSION_ANNOTATION,
            &v.git_version,
        ),
        (velero::SOURCE_CLUSTER_MAJOR_VERSION_ANNOTATION, &v.major),
        (velero::SOURCE_CLUSTER_MINOR_VERSION_ANNOTATION, &v.minor),
    ] {
        annotations.insert(key.to_string(), value.clone());
    }
}

/// Annotation saying a backup's files (all but `velero-backup.json`) are encrypted: `age`.
pub const ENCRYPTION_ANNOTATION: &str = "tidemark.dev/encryption";
/// Annotation with the recipients a backup was encrypted to (public keys only, comma-separated;
/// `passphrase (scrypt)` for a passphrase).
pub const ENCRYPTION_RECIPIENTS_ANNOTATION: &str = "tidemark.dev/encryption-recipients";

/// Annotation saying a backup is locked with S3 Object Lock: the mode (`GOVERNANCE`,
/// `COMPLIANCE`).
pub const OBJECT_LOCK_ANNOTATION: &str = "tidemark.dev/object-lock";
/// Annotation with the end of a locked backup's retention (RFC 3339): no file of the backup can
/// be deleted before.
pub const RETAIN_UNTIL_ANNOTATION: &str = "tidemark.dev/retain-until";

/// Records on the backup that its files are age-encrypted, and to whom.
fn encryption_annotations(record: &mut Backup, keys: &crate::store::Encryption) {
    let annotations = record
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(ENCRYPTION_ANNOTATION.into(), "age".into());
    annotations.insert(
        ENCRYPTION_RECIPIENTS_ANNOTATION.into(),
        keys.recipients().join(","),
    );
}

/// Runs a backup into `store`.
///
/// # Errors
/// [`BackupError`]: invalid request, existing backup, unreachable cluster or store, or a failed
/// upload (after which nothing of this backup remains in the store). Per-object and per-group
/// failures do not fail the backup: they are in the outcome's results and make it
/// `PartiallyFailed`.
pub async fn run(
    client: &Client,
    store: &Store,
    req: &BackupRequest,
    settings: &Settings,
    progress: &Arc<Progress>,
) -> Result<BackupOutcome, BackupError> {
    let started = Instant::now();
    let start_time = Utc::now();
    validate_name(&req.name).map_err(|reason| BackupError::InvalidName {
        name: req.name.clone(),
        reason,
    })?;
    let filter = req.filter()?;
    let mut record = req.record()?;
    let log = Arc::new(RunLog::new(
        "backup",
        &format!("{}/{}", req.record_namespace, req.name),
    ));
    let hooks = crate::hooks::BackupHookRunner::new(
        Arc::new(crate::hooks::ApiExecutor::new(client.clone())),
        &req.hooks,
    )?
    .with_concurrency(settings.concurrency)
    .with_log(log.clone());

    let layout = store.layout();
    // The store's checks and the start of the archive upload run while the cluster is
    // discovered: both are round trips the backup would otherwise wait for one after another.
    let prepare_store = async {
        store.check().await?;
        if store.folder_exists(&layout.backup_dir(&req.name)).await? {
            return Err(existing(store, &req.name).await);
        }
        // The folder's first file, before the archive's upload starts: a run stopped from here
        // on is found by the recovery sweep whatever it left.
        let marker = serde_json::json!({
            "startTimestamp": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "host": run_host(),
            "pid": std::process::id(),
            "tidemarkVersion": env!("CARGO_PKG_VERSION"),
        });
        match store
            .put(
                &layout.backup_file(&req.name, layout::RUN_MARKER_FILE),
                Bytes::from(marker.to_string()),
                true,
            )
            .await
        {
            Ok(()) => {}
            // Another run of that name started in between.
            Err(StoreError::AlreadyExists { .. }) => return Err(existing(store, &req.name).await),
            Err(e) => return Err(e.into()),
        }
        Ok(store.upload(&layout.backup_archive(&req.name)).await?)
    };
    let inspect_cluster = async {
        let (discovered, namespaces, version) = tokio::join!(
            discover(client, &settings.budget),
            // Namespaces taking part: matching the filter, active, not labelled for exclusion.
            included_namespaces(client, &settings.budget, &filter),
            async {
                settings.budget.acquire().await;
                client.apiserver_version().await
            }
        );
        match version {
            Ok(v) => source_cluster_version(&mut record, &v),
            Err(e) => log.warn(&format!(
                "the API server's version could not be read (the record lacks Velero's \
                 source-cluster version annotations): {}",
                crate::cluster::describe(&e)
            )),
        }
        Ok::<_, BackupError>((discovered?, namespaces?))
    };
    let (upload, inspected) = tokio::join!(prepare_store, inspect_cluster);
    let upload = upload?;
    log.info(&format!(
        "Starting backup to {}; client-side rate limit: {}",
        store.url(),
        settings.budget.describe()
    ));
    let (discovered, namespaces) = match inspected {
        Ok(found) => found,
        Err(e) => {
            upload.abort().await;
            // Only the run marker was written: nothing of this run stays.
            cleanup(client, store, &req.name).await;
            return Err(e);
        }
    };
    let mut results = Results::default();
    for g in &discovered.failed_groups {
        log.error(&format!("API group {g}"));
        results.errors.add_general(format!("API group {g}"));
    }

    // Volume data (CSI snapshots, file-system backup): before the listing, so the snapshot
    // objects made and removed here never enter the archive.
    let takes = |gr: &str| {
        discovered
            .by_group_resource(gr)
            .is_some_and(|r| filter.plan(r) == ResourcePlan::ListAll)
    };
    let volume_phase = crate::volumes::phase::PhaseRequest {
        backup: &req.name,
        record_namespace: &req.record_namespace,
        location_name: &req.location_name,
        annotations: &req.annotations,
        settings: &req.volumes,
        policy_configmap: req.resource_policy_configmap.as_deref(),
        namespaces: &namespaces,
        label_selector: filter.label_selector.as_deref(),
        or_selectors: &filter.or_selectors,
        take_pods: takes("pods"),
        take_claims: takes("persistentvolumeclaims"),
        concurrency: settings.concurrency,
        budget: &settings.budget,
        hooks: Some(&hooks),
    };
    let volumes = match crate::volumes::phase::run(client, store, &volume_phase).await {
        Ok(v) => v,
        Err(e) => {
            upload.abort().await;
            cleanup(client, store, &req.name).await;
            return Err(e.into());
        }
    };
    for (ns, msg) in &volumes.errors {
        log.error(msg);
        results
            .errors
            .add(Some(ns.as_str()).filter(|n| !n.is_empty()), msg.clone());
    }
    // Failed hooks: `onError: Fail` as errors, `Continue` as warnings (each hook was logged as
    // it ended).
    crate::hooks::outcome::record(&volumes.hooks, &mut results);

    let mut listed: Vec<&ServedResource> = Vec::new();
    let mut related: BTreeMap<String, &ServedResource> = BTreeMap::new();
    for r in &discovered.resources {
        match filter.plan(r) {
            ResourcePlan::ListAll => listed.push(r),
            ResourcePlan::RelatedOnly => {
                related.insert(r.group_resource(), r);
            }
            ResourcePlan::Skip => {}
        }
    }
    let crd_group_resources: BTreeSet<String> =
        if related.contains_key("customresourcedefinitions.apiextensions.k8s.io") {
            crd_names(client, &settings.budget)
                .await
                .unwrap_or_default()
        } else {
            BTreeSet::new()
        };

    progress
        .resources_total
        .store(listed.len() as u64, Ordering::Relaxed);
    let pipeline = pipeline::Pipeline::start(upload, start_time.timestamp().max(0) as u64);
    let collected = Arc::new(Mutex::new(collect::Collected::default()));
    let lister = collect::Lister {
        client: client.clone(),
        budget: settings.budget.clone(),
        page_size: settings.page_size,
        label_selector: filter.label_selector.clone(),
        filter: Arc::new(filter.clone()),
        ordered: Arc::new(req.ordered_resources.clone()),
        namespaces: Arc::new(namespaces),
        per_namespace: filter.namespaces.literal_includes().is_some(),
        out: pipeline.sender(),
        progress: progress.clone(),
        collected: collected.clone(),
        crd_group_resources: Arc::new(crd_group_resources),
        log: log.clone(),
        skip_pods: Arc::new(volumes.hook_failed_pods.clone()),
    };
    // Each resource is listed by its own task, so parsing runs on every core; tasks are spawned
    // as slots free up, so at most `concurrency` resources are listed at once.
    let owned: Vec<ServedResource> = listed.iter().map(|r| (*r).clone()).collect();
    let listing: Result<Vec<()>, pipeline::Closed> = futures::stream::iter(owned)
        .map(|r| {
            let lister = lister.clone();
            tokio::spawn(async move { lister.list_resource(&r).await })
        })
        .buffer_unordered(settings.concurrency.max(1))
        .map(|joined| joined.unwrap_or(Err(pipeline::Closed)))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect();

    // Related cluster-scoped objects (auto mode): namespaces of items, PVs of PVCs, CRDs of CRs.
    let mut related_ok = listing.map(|_| ());
    if related_ok.is_ok() {
        let (pvs, crds, nss) = {
            let c = collected.lock().expect("collected lock");
            let taken_ns: BTreeSet<String> = c
                .resource_list
                .get("v1/Namespace")
                .map(|v| v.iter().cloned().collect())
                .unwrap_or_default();
            let nss: Vec<String> = c
                .namespaces_with_items
                .iter()
                .filter(|n| !taken_ns.contains(*n))
                .cloned()
                .collect();
            (
                c.referenced_pvs.iter().cloned().collect::<Vec<_>>(),
                c.custom_group_resources.iter().cloned().collect::<Vec<_>>(),
                nss,
            )
        };
        let ns_res = discovered.by_group_resource("namespaces");
        let pv_res = related.get("persistentvolumes").copied();
        let crd_res = related
            .get("customresourcedefinitions.apiextensions.k8s.io")
            .copied();
        let mut jobs: Vec<(&ServedResource, String)> = Vec::new();
        if let Some(r) = ns_res
            && filter.plan(r) != ResourcePlan::Skip
        {
            jobs.extend(nss.into_iter().map(|n| (r, n)));
        }
        if let Some(r) = pv_res {
            jobs.extend(pvs.into_iter().map(|n| (r, n)));
        }
        if let Some(r) = crd_res {
            jobs.extend(crds.into_iter().map(|n| (r, n)));
        }
        related_ok = futures::stream::iter(
            jobs.iter()
                .map(|(r, n)| lister.fetch_one(r, n))
                .collect::<Vec<_>>(),
        )
        .buffer_unordered(settings.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(|_| ());
    }
    drop(lister);

    let summary = match (related_ok, pipeline.finish().await) {
        (Ok(()), Ok(s)) => s,
        (_, Err(e)) => {
            cleanup(client, store, &req.name).await;
            return Err(e.into());
        }
        (Err(_), Ok(_)) => {
            cleanup(client, store, &req.name).await;
            return Err(PipelineError::Stopped("listing stopped early".into()).into());
        }
    };

    let collected = std::mem::take(&mut *collected.lock().expect("collected lock"));
    results.merge(collected.results);
    let errors = results.errors.len() as u64;
    let warnings = results.warnings.len() as u64;
    let phase = if errors > 0 {
        "PartiallyFailed"
    } else {
        "Completed"
    };
    // One line per resource backed up, as Velero's log has, in the resource list's order, with
    // how long its listing took (objects pulled in afterwards, such as the namespaces of items,
    // have no listing of their own).
    for (resource, items) in &collected.resource_list {
        let took = collected
            .listed_in
            .get(resource)
            .map(|d| format!(", listed in {}", crate::report::text::duration(*d)))
            .unwrap_or_default();
        log.info(&format!(
            "Backed up {} item{} of resource {resource}{took}",
            items.len(),
            if items.len() == 1 { "" } else { "s" }
        ));
    }
    log.info(&format!(
        "Backed up {} items, {} bytes compressed, phase {phase}",
        summary.items, summary.bytes
    ));
    let completion = Utc::now();
    if let Some(keys) = store.encryption() {
        encryption_annotations(&mut record, keys);
    }
    // The record was made when the backup started (Velero's is created just before).
    record.metadata.creation_timestamp =
        k8s_openapi::jiff::Timestamp::from_second(start_time.timestamp())
            .ok()
            .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time);
    record.status = velero::BackupStatus {
        version: Some(1),
        format_version: Some(crate::archive::FORMAT_VERSION.into()),
        expiration: chrono::Duration::from_std(req.ttl)
            .ok()
            .map(|ttl| start_time + ttl),
        phase: Some(phase.into()),
        start_timestamp: Some(start_time),
        completion_timestamp: Some(completion),
        warnings: Some(warnings),
        errors: Some(errors),
        failure_reason: None,
        progress: Some(BackupProgress {
            total_items: summary.items,
            items_backed_up: summary.items,
        }),
        // Velero's `hookStatus` (counters at 0 are omitted, as Velero does).
        extra: BTreeMap::from([(
            "hookStatus".to_string(),
            crate::hooks::HookStatus::of(&volumes.hooks).to_json(),
        )]),
    };
    if let Some(r) = store.retention_until(record.status.expiration) {
        let annotations = record
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.insert(OBJECT_LOCK_ANNOTATION.into(), r.mode.as_s3().into());
        annotations.insert(
            RETAIN_UNTIL_ANNOTATION.into(),
            r.retain_until
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    if volumes.csi_attempted > 0 {
        record.status.extra.insert(
            "csiVolumeSnapshotsAttempted".into(),
            volumes.csi_attempted.into(),
        );
        record.status.extra.insert(
            "csiVolumeSnapshotsCompleted".into(),
            volumes.csi_completed.into(),
        );
    }
    let meta = TidemarkBackupMeta {
        archive_sha256: summary.sha256.clone(),
        archive_bytes: summary.bytes,
        items: summary.items,
        tidemark_version: env!("CARGO_PKG_VERSION").into(),
        revision: None,
    };
    let written = write_side_files(
        store,
        &req.name,
        &SideFiles {
            record: &record,
            meta: &meta,
            results: &results,
            resource_list: &collected.resource_list,
            log: &log,
            volumes: &volumes,
        },
    )
    .await;
    if let Err(e) = written {
        cleanup(client, store, &req.name).await;
        return Err(e.into());
    }
    Ok(BackupOutcome {
        record,
        meta,
        results,
        duration: started.elapsed(),
        hooks: volumes.hooks,
    })
}

/// What goes into a backup's folder besides the archive.
struct SideFiles<'a> {
    /// `velero-backup.json`.
    record: &'a Backup,
    /// `tidemark-backup.json`.
    meta: &'a TidemarkBackupMeta,
    /// `<name>-results.gz`.
    results: &'a Results,
    /// `<name>-resource-list.json.gz`.
    resource_list: &'a BTreeMap<String, Vec<String>>,
    /// `<name>-logs.gz`.
    log: &'a RunLog,
    /// What the volume phase wrote itself.
    volumes: &'a crate::volumes::phase::PhaseOutcome,
}

/// Velero's empty volume files, as Velero 1.18 writes them for a backup without volume data
/// (`persistBackup`: `encode.ToJSONGzip` of nil lists, `null`, and of initialised empty ones,
/// `[]`). tidemark writes the same, so that a folder has every file a Velero-written one has:
/// `-volumesnapshots` (Velero-native snapshots: tidemark takes none), `-itemoperations`
/// (asynchronous plugin operations: tidemark runs none), and, when the volume phase wrote no
/// records, `-podvolumebackups` and `-volumeinfo`.
fn empty_volume_files(
    name: &str,
    layout: &layout::Layout,
    volumes: &crate::volumes::phase::PhaseOutcome,
) -> Vec<(object_store::path::Path, Bytes)> {
    let mut files = vec![
        (
            layout.backup_volume_snapshots(name),
            gzip_json(&serde_json::Value::Null),
        ),
        (
            layout.backup_item_operations(name),
            gzip_json(&serde_json::json!([])),
        ),
    ];
    if !volumes.wrote_pod_volume_backups {
        files.push((
            layout.backup_pod_volume_backups(name),
            gzip_json(&serde_json::Value::Null),
        ));
    }
    if !volumes.wrote_volume_info {
        files.push((
            layout.backup_volume_info(name),
            gzip_json(&serde_json::json!([])),
        ));
    }
    files
}

async fn write_side_files(
    store: &Store,
    name: &str,
    files: &SideFiles<'_>,
) -> Result<(), StoreError> {
    let SideFiles {
        record,
        meta,
        results,
        resource_list,
        log,
        volumes,
    } = files;
    let layout = store.layout();
    let meta_json = serde_json::to_vec_pretty(meta).unwrap_or_default();
    let mut logs = log.finish();
    if logs.is_empty() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = gz.write_all(b"");
        logs = gz.finish().unwrap_or_default();
    }
    // The side files at once; the record only after all of them.
    let (list_path, results_path, meta_path, logs_path) = (
        layout.backup_resource_list(name),
        layout.backup_results(name),
        layout.backup_file(name, layout::TIDEMARK_BACKUP_FILE),
        layout.backup_logs(name),
    );
    let empties = futures::future::try_join_all(
        empty_volume_files(name, layout, volumes)
            .into_iter()
            .map(|(path, body)| async move { store.put(&path, body, false).await }),
    );
    tokio::try_join!(
        store.put(&list_path, gzip_json(resource_list), false),
        store.put(&results_path, gzip_json(results), false),
        store.put(&meta_path, Bytes::from(meta_json), false),
        store.put(&logs_path, Bytes::from(logs), false),
        empties,
        crate::hooks::outcome::write_backup(store, name, &volumes.hooks),
    )?;
    // On an Object Lock location every file is retained until the backup expires, before the
    // record exists; the record is written with the same retention.
    let retention = store.retention_until(record.status.expiration);
    if let Some(r) = retention {
        store
            .retain_folder(&layout.backup_dir(name), layout::BACKUP_METADATA_FILE, r)
            .await?;
    }
    // Last: the record. Its presence is what makes the backup exist.
    let record_json = serde_json::to_vec_pretty(record).unwrap_or_default();
    store
        .put_record(
            &layout.backup_file(name, layout::BACKUP_METADATA_FILE),
            Bytes::from(record_json),
            retention,
        )
        .await
}

/// The error for a backup name whose folder exists: a complete backup, or an interrupted run
/// (no record), with its start from the run marker when readable.
async fn existing(store: &Store, name: &str) -> BackupError {
    let layout = store.layout();
    let location = store.url().to_string();
    match store
        .get(&layout.backup_file(name, layout::BACKUP_METADATA_FILE))
        .await
    {
        Err(StoreError::NotFound { .. }) => {
            let started = store
                .get(&layout.backup_file(name, layout::RUN_MARKER_FILE))
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .map(|m| {
                    format!(
                        " (started {} on {})",
                        m["startTimestamp"].as_str().unwrap_or("?"),
                        m["host"].as_str().unwrap_or("?")
                    )
                })
                .unwrap_or_default();
            BackupError::Interrupted {
                name: name.to_string(),
                location,
                started,
            }
        }
        _ => BackupError::AlreadyExists {
            name: name.to_string(),
            location,
        },
    }
}

/// Who runs the backup, for the run marker: the pod (`$POD_NAME`) or the host name.
fn run_host() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|p| !p.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_default()
}

async fn cleanup(client: &Client, store: &Store, name: &str) {
    // Storage snapshots taken by the volume phase first, then the folder (kept when they
    // cannot all be deleted: it holds their only references).
    if let recover::Cleanup::Kept(why) = recover::clean_up(Some(client), store, name).await {
        tracing::warn!(backup = name, "the partial backup is kept: {why}");
    }
}

async fn included_namespaces(
    client: &Client,
    budget: &Budget,
    filter: &BackupFilter,
) -> Result<BTreeSet<String>, ClusterError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let mut out = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(500);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        budget.acquire().await;
        let page = api.list(&lp).await.map_err(|e| ClusterError::Request {
            what: "listing namespaces".into(),
            source: e,
        })?;
        for ns in page.items {
            let name = ns.name_any();
            let active = ns
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_none_or(|p| p != "Terminating");
            if active && filter.namespaces.matches(&name) && !filter::object_excluded(&ns.metadata)
            {
                out.insert(name);
            }
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    Ok(out)
}

async fn crd_names(client: &Client, budget: &Budget) -> Result<BTreeSet<String>, ClusterError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    budget.acquire().await;
    let list = api
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| ClusterError::Request {
            what: "listing CustomResourceDefinitions".into(),
            source: e,
        })?;
    Ok(list.items.into_iter().map(|c| c.name_any()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("nightly-2026.11.21").is_ok());
        for bad in ["", "Upper", "-x", "x-", "a_b", &"a".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conflicting_options_are_refused() {
        let mut r = BackupRequest::new("b");
        r.include_resources = vec!["pods".into()];
        r.include_cluster_scoped = vec!["storageclasses".into()];
        assert!(matches!(
            r.filter(),
            Err(BackupError::Filter(FilterError::Conflict(..)))
        ));
        let mut r = BackupRequest::new("b");
        r.selector = Some("a=b".into());
        r.or_selectors = vec!["c=d".into()];
        let e = r.filter().unwrap_err().to_string();
        assert!(e.contains("--or-selector"), "{e}");
        let mut r = BackupRequest::new("b");
        r.or_selectors = vec!["c=d".into(), "e in (f)".into()];
        assert_eq!(r.filter().unwrap().or_selectors.len(), 2);
        assert_eq!(r.record().unwrap().spec.or_label_selectors.len(), 2);
    }

    #[test]
    fn record_reflects_request() {
        let mut r = BackupRequest::new("b1");
        r.include_namespaces = vec!["web".into()];
        r.selector = Some("app=web".into());
        r.ttl = Duration::from_secs(3600);
        let b = r.record().unwrap();
        assert_eq!(b.spec.included_namespaces, vec!["web"]);
        assert_eq!(b.spec.ttl.as_deref(), Some("1h0m0s"));
        assert_eq!(
            b.spec.label_selector.unwrap().match_labels.unwrap()["app"],
            "web"
        );
        assert_eq!(
            b.metadata.labels.unwrap()[velero::STORAGE_LOCATION_LABEL],
            "default"
        );
        let all = BackupRequest::new("b2").record().unwrap();
        assert_eq!(all.spec.included_namespaces, vec!["*"]);
        // Velero's always-present fields, with tidemark's true values.
        let spec = serde_json::to_value(&all.spec).unwrap();
        assert_eq!(spec["hooks"], serde_json::json!({}));
        assert_eq!(spec["metadata"], serde_json::json!({}));
        assert_eq!(spec["snapshotMoveData"], false);
        assert_eq!(spec["defaultVolumesToFsBackup"], false);
    }

    #[test]
    fn spec_hooks_round_trip_through_velero_backup_json() {
        let mut r = BackupRequest::new("b");
        r.hooks = serde_json::from_value(serde_json::json!({"resources": [{
            "name": "freeze",
            "includedNamespaces": ["db"],
            "labelSelector": {"matchLabels": {"app": "pg"}},
            "pre": [{"exec": {"container": "pg", "command": ["/sbin/fsfreeze", "--freeze", "/data"],
                              "onError": "Fail", "timeout": "1m"}}],
            "post": [{"exec": {"container": "pg", "command": ["/sbin/fsfreeze", "--unfreeze", "/data"]}}]
        }]}))
        .unwrap();
        let record = r.record().unwrap();
        // Velero's field names and shape, in the record's spec.
        let json = serde_json::to_string_pretty(&record).unwrap();
        let back: Backup = serde_json::from_str(&json).unwrap();
        let spec = serde_json::to_value(&back.spec).unwrap();
        assert_eq!(
            spec["hooks"]["resources"][0]["pre"][0]["exec"]["onError"],
            "Fail"
        );
        assert_eq!(
            spec["hooks"]["resources"][0]["pre"][0]["exec"]["timeout"],
            "1m"
        );
        let hooks: crate::hooks::BackupHooks =
            serde_json::from_value(spec["hooks"].clone()).unwrap();
        assert_eq!(hooks, r.hooks);
        assert_eq!(back, record);
    }

    #[test]
    fn folders_get_velero_s_empty_volume_files() {
        let layout = layout::Layout::new("p");
        let names = |v: &crate::volumes::phase::PhaseOutcome| -> Vec<(String, String)> {
            empty_volume_files("b", &layout, v)
                .into_iter()
                .map(|(path, gz)| {
                    let mut json = String::new();
                    std::io::Read::read_to_string(
                        &mut flate2::read::GzDecoder::new(&gz[..]),
                        &mut json,
                    )
                    .unwrap();
                    (path.to_string(), json)
                })
                .collect()
        };
        let none = crate::volumes::phase::PhaseOutcome::default();
        assert_eq!(
            names(&none),
            [
                ("p/backups/b/b-volumesnapshots.json.gz", "null"),
                ("p/backups/b/b-itemoperations.json.gz", "[]"),
                ("p/backups/b/b-podvolumebackups.json.gz", "null"),
                ("p/backups/b/b-volumeinfo.json.gz", "[]"),
            ]
            .map(|(p, j)| (p.to_string(), j.to_string()))
        );
        // What the volume phase wrote is not overwritten.
        let wrote = crate::volumes::phase::PhaseOutcome {
            wrote_pod_volume_backups: true,
            wrote_volume_info: true,
            ..Default::default()
        };
        assert_eq!(names(&wrote).len(), 2);
    }
}
