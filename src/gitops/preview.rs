//! The preview of a revision (DESIGN §6, `tidemark plan`): what it would do in the current
//! cluster — which Schedules would back up now and when they run next (and what their
//! retention would delete), which Backup records have expired (and whether a ReadOnly Location
//! blocks their expiry), and for each RestorePlan the objects its restore would create, update,
//! skip or conflict with — so restores are reviewed before merge. The decisions are the
//! planner's (`plan::schedule`, `plan::retention`, `plan::expiry`, `plan::restore_plan`), on the
//! same observation the controller makes ([`ScheduleObserved::of`]).
//!
//! Read only: the cluster is only read (Locations, Secrets, Schedules, Backup records,
//! RestorePlans, the objects a restore would touch), the store is only listed and read.
//! Locations come from the cluster and from the revision itself; when both define one of the
//! same name, the revision's wins (it is what the cluster will run with once the revision is
//! applied).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, SecondsFormat, Utc};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::GitopsError;
use crate::api::tidemark::{AccessMode, Backup, BackupPolicy, Location, RestorePlan, Schedule};
use crate::api::velero::SCHEDULE_NAME_LABEL;
use crate::cluster::is_not_found;
use crate::controller::{resolve_backup, restore_request_in, retention_candidates, store_for_in};
use crate::plan::expiry::{BackupDecision, decide_backup};
use crate::plan::restore_plan::{restore_name, spec_hash};
use crate::plan::schedule::{CronSchedule, ScheduleDecision, ScheduleObserved, decide};
use crate::plan::sync::SYNCED_ANNOTATION;
use crate::restore;
use crate::source::{InvalidManifest, Kind, Manifest, Rendered, manifests};
use crate::store::Store;

/// The whole plan, as printed with `-o json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PlanDocument {
    pub(crate) revision: String,
    pub(crate) source: String,
    pub(crate) schedules: Vec<SchedulePlan>,
    pub(crate) expiring: Vec<ExpiringBackup>,
    pub(crate) restore_plans: Vec<RestorePlanPreview>,
    pub(crate) invalid: Vec<InvalidEntry>,
}

/// What one Schedule of the revision would do now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SchedulePlan {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) schedule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) time_zone: Option<String>,
    /// `RunNow`, `Wait`, `Paused`, `Blocked` or `Invalid`.
    pub(crate) action: &'static str,
    pub(crate) would_run_now: bool,
    /// The backup that would be created now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) backup_name: Option<String>,
    pub(crate) next_run: Option<String>,
    pub(crate) last_backup: Option<String>,
    /// Backup records of this schedule in the cluster.
    pub(crate) records: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Backups its retention would delete now (newest first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) retention_deletes: Vec<String>,
    /// Backups its retention keeps, with the rules that keep each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) retention_keeps: Vec<RetainedBackup>,
}

/// A backup a Schedule's retention keeps.
#[derive(Debug, Serialize)]
pub(crate) struct RetainedBackup {
    pub(crate) name: String,
    /// `keepLast`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`.
    pub(crate) rules: Vec<&'static str>,
}

/// A Backup record whose TTL has passed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExpiringBackup {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) location: Option<String>,
    pub(crate) phase: Option<String>,
    pub(crate) expiration: String,
    /// Expiry cannot delete it (a ReadOnly or missing Location).
    pub(crate) blocked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// The preview of one RestorePlan of the revision.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestorePlanPreview {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) backup: Option<String>,
    pub(crate) location: Option<String>,
    pub(crate) spec_hash: String,
    pub(crate) already_ran: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) restore_name: Option<String>,
    pub(crate) create: Vec<String>,
    pub(crate) update: Vec<String>,
    pub(crate) skip: usize,
    pub(crate) conflict: Vec<String>,
    /// Objects that could not be checked, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) unchecked: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

/// An invalid manifest.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InvalidEntry {
    pub(crate) kind: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) origin: String,
    pub(crate) message: String,
}

impl From<&InvalidManifest> for InvalidEntry {
    fn from(i: &InvalidManifest) -> Self {
        InvalidEntry {
            kind: i.kind.clone(),
            namespace: i.namespace.clone(),
            name: i.name.clone(),
            origin: i.origin.clone(),
            message: i.message.clone(),
        }
    }
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Lists `K` in `namespace`; nothing when the kind is not served (CRDs not installed).
async fn list_or_empty<K>(
    client: &Client,
    namespace: &str,
    lp: &ListParams,
) -> Result<Vec<K>, GitopsError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.list(lp).await {
        Ok(l) => Ok(l.items),
        Err(e) if is_not_found(&e) => Ok(Vec::new()),
        Err(e) => Err(GitopsError::kube(
            format!("listing {} in namespace {namespace}", K::plural(&())),
            e,
        )),
    }
}

/// One object of `K`, `None` when absent or the kind is not served.
async fn get_or_none<K>(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<K>, GitopsError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(o) => Ok(o),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(GitopsError::kube(
            format!("reading {} {namespace}/{name}", K::kind(&())),
            e,
        )),
    }
}

/// A Location as the revision would leave it, and where its definition comes from.
#[derive(Clone, Debug)]
pub(crate) struct KnownLocation {
    pub(crate) location: Location,
    pub(crate) from_revision: bool,
}

/// The Locations of each namespace: the cluster's, overridden by the revision's.
pub(crate) struct Locations<'a> {
    pub(crate) client: &'a Client,
    pub(crate) revision: BTreeMap<(String, String), Location>,
    pub(crate) cache: BTreeMap<String, BTreeMap<String, KnownLocation>>,
}

impl<'a> Locations<'a> {
    fn new(client: &'a Client, manifests: &[&Manifest]) -> Locations<'a> {
        let revision = manifests
            .iter()
            .filter(|m| m.kind == Kind::Location)
            .filter_map(|m| {
                let loc: Location = serde_json::from_value(m.object.clone()).ok()?;
                Some(((m.namespace.clone(), m.name.clone()), loc))
            })
            .collect();
        Locations {
            client,
            revision,
            cache: BTreeMap::new(),
        }
    }

    async fn of(
        &mut self,
        namespace: &str,
    ) -> Result<&BTreeMap<String, KnownLocation>, GitopsError> {
        if !self.cache.contains_key(namespace) {
            let mut all: BTreeMap<String, KnownLocation> =
                list_or_empty::<Location>(self.client, namespace, &ListParams::default())
                    .await?
                    .into_iter()
                    .map(|l| {
                        (
                            l.name_any(),
                            KnownLocation {
                                location: l,
                                from_revision: false,
                            },
                        )
                    })
                    .collect();
            for ((ns, name), l) in &self.revision {
                if ns == namespace {
                    all.insert(
                        name.clone(),
                        KnownLocation {
                            location: l.clone(),
                            from_revision: true,
                        },
                    );
                }
            }
            self.cache.insert(namespace.to_string(), all);
        }
        Ok(&self.cache[namespace])
    }

    /// The Location named `name`, or the default one (as the controller chooses it).
    async fn find(
        &mut self,
        namespace: &str,
        name: Option<&str>,
    ) -> Result<Result<KnownLocation, String>, GitopsError> {
        let all = self.of(namespace).await?;
        Ok(match name {
            Some(n) => all.get(n).cloned().ok_or_else(|| {
                format!("Location {n:?} not found in namespace {namespace} (nor in the revision)")
            }),
            // A BTreeMap iterates by name: the first default by name, like the controller.
            None => all
                .values()
                .find(|l| l.location.spec.default)
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "no default Location in namespace {namespace} (set spec.default: true on one)"
                    )
                }),
        })
    }

    /// Opens the store of a Location (credentials from its namespace's Secret).
    async fn open(&self, namespace: &str, l: &KnownLocation) -> Result<Store, String> {
        store_for_in(self.client, namespace, &l.location)
            .await
            .map_err(|e| format!("Location {}: {e}", l.location.name_any()))
    }
}

async fn plan_schedule(
    client: &Client,
    locations: &mut Locations<'_>,
    policies: &BTreeMap<(String, String), BackupPolicy>,
    m: &Manifest,
    now: DateTime<Utc>,
) -> Result<SchedulePlan, GitopsError> {
    let s: Schedule =
        serde_json::from_value(m.object.clone()).map_err(|e| GitopsError::Settings {
            field: format!("{} ({})", m.describe(), m.origin),
            message: e.to_string(),
        })?;
    let mut out = SchedulePlan {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        schedule: s.spec.schedule.clone(),
        time_zone: s.spec.time_zone.clone(),
        action: "Invalid",
        would_run_now: false,
        backup_name: None,
        next_run: None,
        last_backup: None,
        records: 0,
        reason: None,
        error: None,
        retention_deletes: Vec::new(),
        retention_keeps: Vec::new(),
    };
    let cron = match CronSchedule::parse(&s.spec.schedule, s.spec.time_zone.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            out.error = Some(e.to_string());
            return Ok(out);
        }
    };
    let live: Option<Schedule> = get_or_none(client, &m.namespace, &m.name).await?;
    let records: Vec<Backup> = list_or_empty(
        client,
        &m.namespace,
        &ListParams::default().labels(&format!("{SCHEDULE_NAME_LABEL}={}", m.name)),
    )
    .await?;
    out.records = records.len();
    // The policy the Schedule names: the revision's, else the cluster's.
    let policy: Option<BackupPolicy> = match &s.spec.policy {
        Some(p) => match policies.get(&(m.namespace.clone(), p.clone())) {
            Some(pol) => Some(pol.clone()),
            None => get_or_none(client, &m.namespace, p).await?,
        },
        None => None,
    };
    let retention = s
        .spec
        .retention
        .clone()
        .or_else(|| policy.as_ref().and_then(|p| p.spec.retention.clone()));
    if let Some(r) = &retention {
        if let Err(e) = crate::plan::retention::validate("spec.retention", r) {
            out.error = Some(e);
            return Ok(out);
        }
        let named = s
            .spec
            .template
            .as_ref()
            .or(policy.as_ref().map(|p| &p.spec.template))
            .and_then(|t| t.location.clone());
        match locations.find(&m.namespace, named.as_deref()).await? {
            Ok(l) => {
                let candidates = retention_candidates(&records, &l.location.name_any());
                let d = crate::plan::retention::decide(&candidates, r, cron.time_zone());
                out.retention_deletes = d.delete;
                out.retention_keeps = d
                    .keep
                    .into_iter()
                    .map(|(name, rules)| RetainedBackup { name, rules })
                    .collect();
            }
            Err(why) => out.reason = Some(format!("retention not evaluated: {why}")),
        }
    }
    // The revision's spec over what the cluster holds of the Schedule (its status, its
    // creation time; a Schedule the revision creates is created now).
    let mut view = s.clone();
    if let Some(l) = &live {
        view.status = l.status.clone();
        view.metadata.creation_timestamp = l.metadata.creation_timestamp.clone();
    }
    let observed = ScheduleObserved::of(&view, &records, now);
    out.last_backup = observed.last_backup.map(rfc);
    match decide(&m.name, &cron, &observed, now) {
        ScheduleDecision::Paused => {
            out.action = "Paused";
            out.reason = Some("spec.paused: no backups are started".into());
        }
        ScheduleDecision::RunNow {
            backup_name, next, ..
        } => {
            out.action = "RunNow";
            out.would_run_now = true;
            out.backup_name = Some(backup_name);
            out.next_run = next.map(rfc);
        }
        ScheduleDecision::Wait { next } => {
            out.action = "Wait";
            out.next_run = next.map(rfc);
        }
        ScheduleDecision::Blocked { reason, next } => {
            out.action = "Blocked";
            out.reason = Some(reason);
            out.next_run = next.map(rfc);
        }
    }
    Ok(out)
}

async fn expiring(
    client: &Client,
    locations: &mut Locations<'_>,
    namespaces: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> Result<Vec<ExpiringBackup>, GitopsError> {
    let mut out = Vec::new();
    for ns in namespaces {
        let mut records: Vec<Backup> = list_or_empty(client, ns, &ListParams::default()).await?;
        records.sort_by_key(|b| b.name_any());
        for b in records {
            let status = b.status.clone().unwrap_or_default();
            // The controller's own decision (records not finished never expire).
            let Some(expiration) = parse_time(status.expiration.as_deref()) else {
                continue;
            };
            let decision = decide_backup(
                status.phase.as_deref(),
                b.annotations().contains_key(SYNCED_ANNOTATION),
                b.metadata.deletion_timestamp.is_some(),
                Some(expiration),
                now,
            );
            if decision != BackupDecision::Expire {
                continue;
            }
            let named = b.spec.template.location.clone();
            let (location, blocked, reason) = match locations.find(ns, named.as_deref()).await? {
                Err(why) => (named, true, Some(format!("expiry blocked: {why}"))),
                Ok(l) if l.location.spec.access_mode == AccessMode::ReadOnly => (
                    Some(l.location.name_any()),
                    true,
                    Some(format!(
                        "expiry blocked: Location {} is ReadOnly{}: nothing is deleted from it",
                        l.location.name_any(),
                        if l.from_revision {
                            " (in the revision)"
                        } else {
                            ""
                        }
                    )),
                ),
                Ok(l) => (Some(l.location.name_any()), false, None),
            };
            out.push(ExpiringBackup {
                name: b.name_any(),
                namespace: ns.clone(),
                location,
                phase: status.phase.clone(),
                expiration: rfc(expiration),
                blocked,
                reason,
            });
        }
    }
    Ok(out)
}

async fn preview_restore_plan(
    client: &Client,
    locations: &mut Locations<'_>,
    m: &Manifest,
    settings: &restore::Settings,
) -> Result<RestorePlanPreview, GitopsError> {
    let p: RestorePlan =
        serde_json::from_value(m.object.clone()).map_err(|e| GitopsError::Settings {
            field: format!("{} ({})", m.describe(), m.origin),
            message: e.to_string(),
        })?;
    let t = &p.spec.template;
    let hash = spec_hash(t);
    let mut out = RestorePlanPreview {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        backup: t.backup_name.clone(),
        location: t.location.clone(),
        spec_hash: hash.clone(),
        ..Default::default()
    };
    let live: Option<RestorePlan> = get_or_none(client, &m.namespace, &m.name).await?;
    if let Some(st) = live.and_then(|l| l.status)
        && st.spec_hash.as_deref() == Some(hash.as_str())
    {
        out.already_ran = true;
        out.restore_name = st.restore_name;
        return Ok(out);
    }
    let loc = match locations.find(&m.namespace, t.location.as_deref()).await? {
        Ok(l) => l,
        Err(e) => {
            out.error = Some(format!("spec.template.location: {e}"));
            return Ok(out);
        }
    };
    out.location = Some(loc.location.name_any());
    let store = match locations.open(&m.namespace, &loc).await {
        Ok(s) => s,
        Err(e) => {
            out.error = Some(format!("spec.template.location: {e}"));
            return Ok(out);
        }
    };
    let backup = match resolve_backup(&store, t).await {
        Ok(b) => b,
        Err(e) => {
            out.error = Some(e);
            return Ok(out);
        }
    };
    out.backup = Some(backup.clone());
    let rname = restore_name(&m.name, &hash);
    let req =
        match restore_request_in(client, &m.namespace, &rname, &backup, t, BTreeMap::new()).await {
            Ok(r) => r,
            Err(e) => {
                out.error = Some(e);
                return Ok(out);
            }
        };
    match restore::dry_run(client, &store, &req, settings).await {
        Ok(pv) => {
            out.skip = pv.skip.len() + pv.skipped_by_rule as usize;
            out.create = pv.create;
            out.update = pv.update;
            out.conflict = pv.conflict;
            out.unchecked = pv.errors;
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    Ok(out)
}

impl PlanDocument {
    /// Whether the revision could not be planned completely: an invalid manifest, a Schedule
    /// whose cron or time zone is invalid, or a RestorePlan that cannot be previewed.
    pub(crate) fn incomplete(&self) -> bool {
        !self.invalid.is_empty()
            || self.schedules.iter().any(|s| s.error.is_some())
            || self.restore_plans.iter().any(|p| p.error.is_some())
    }
}

/// Previews `rendered` (the documents of `revision`, read from `source`) against the cluster;
/// `namespace` is that of manifests naming none and of the Backup records checked for expiry.
///
/// # Errors
/// [`GitopsError::Kube`] when the cluster cannot be read; [`GitopsError::Settings`] naming a
/// manifest that does not decode.
pub(crate) async fn preview(
    client: &Client,
    revision: String,
    source: String,
    rendered: &Rendered,
    namespace: &str,
    settings: &restore::Settings,
) -> Result<PlanDocument, GitopsError> {
    let parsed = manifests::parse(&rendered.documents, namespace);
    let valid: Vec<&Manifest> = parsed.iter().filter_map(|r| r.as_ref().ok()).collect();
    let invalid: Vec<InvalidEntry> = parsed
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(InvalidEntry::from)
        .collect();
    let now = Utc::now();
    let mut locations = Locations::new(client, &valid);
    let policies: BTreeMap<(String, String), BackupPolicy> = valid
        .iter()
        .filter(|m| m.kind == Kind::BackupPolicy)
        .filter_map(|m| {
            let p: BackupPolicy = serde_json::from_value(m.object.clone()).ok()?;
            Some(((m.namespace.clone(), m.name.clone()), p))
        })
        .collect();
    let mut schedules = Vec::new();
    for m in valid.iter().filter(|m| m.kind == Kind::Schedule) {
        schedules.push(plan_schedule(client, &mut locations, &policies, m, now).await?);
    }
    // Records live in the controller's namespace: `namespace`, and any the revision uses.
    let namespaces: BTreeSet<String> = std::iter::once(namespace.to_string())
        .chain(valid.iter().map(|m| m.namespace.clone()))
        .collect();
    let expiring = expiring(client, &mut locations, &namespaces, now).await?;
    let mut restore_plans = Vec::new();
    for m in valid.iter().filter(|m| m.kind == Kind::RestorePlan) {
        restore_plans.push(preview_restore_plan(client, &mut locations, m, settings).await?);
    }
    Ok(PlanDocument {
        revision,
        source,
        schedules,
        expiring,
        restore_plans,
        invalid,
    })
}
