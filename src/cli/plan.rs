//! `tidemark plan`: what a revision (a pull request's head, a directory) would do in the
//! current cluster (DESIGN §6, plan preview) — which Schedules would back up now and when they
//! run next, which Backup records have expired (and whether a ReadOnly Location blocks their
//! expiry), and for each RestorePlan the objects its restore would create, update, skip or
//! conflict with — so restores are reviewed before merge.
//!
//! Read only: the cluster is only read (Locations, Secrets, Schedules, Backup records,
//! RestorePlans, the objects a restore would touch), the store is only listed and read; the only
//! thing written is the local Git cache of `--source git`. Locations come from the cluster and
//! from the revision itself; when both define one of the same name, the revision's wins (it is
//! what the cluster will run with once the revision is applied).
//!
//! Exit codes: 0; 1 when the revision cannot be planned completely — an invalid manifest, a
//! Schedule whose cron or time zone is invalid, or a RestorePlan that cannot be previewed (its
//! Location or backup is missing, its spec is invalid).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::reconcile::{SourceArgs, read_once};
use super::{ClientArgs, OutputFormat};
use crate::api::tidemark::{AccessMode, Backup, BackupPolicy, Location, RestorePlan, Schedule};
use crate::api::velero::SCHEDULE_NAME_LABEL;
use crate::cluster::{self, Target, is_not_found};
use crate::controller::{resolve_backup, restore_request_in, retention_candidates, store_for_in};
use crate::plan::expiry::expired;
use crate::plan::restore_plan::{restore_name, spec_hash};
use crate::plan::schedule::{CronSchedule, ScheduleDecision, ScheduleObserved, decide};
use crate::report::text::{columns, indent};
use crate::restore;
use crate::source::{InvalidManifest, Kind, Manifest, manifests};
use crate::store::Store;

/// Options of `tidemark plan`.
#[derive(Args, Debug)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    from: SourceArgs,
    /// Namespace of manifests that name none, and of the Backup records checked for expiry.
    #[arg(
        short = 'n',
        long,
        env = "TIDEMARK_NAMESPACE",
        default_value = "tidemark"
    )]
    namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    #[command(flatten)]
    client: ClientArgs,
}

/// The whole plan, as printed with `-o json`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PlanDocument {
    revision: String,
    source: String,
    schedules: Vec<SchedulePlan>,
    expiring: Vec<ExpiringBackup>,
    restore_plans: Vec<RestorePlanPreview>,
    invalid: Vec<InvalidEntry>,
}

/// What one Schedule of the revision would do now.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SchedulePlan {
    name: String,
    namespace: String,
    schedule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    time_zone: Option<String>,
    /// `RunNow`, `Wait`, `Paused`, `Blocked` or `Invalid`.
    action: &'static str,
    would_run_now: bool,
    /// The backup that would be created now.
    #[serde(skip_serializing_if = "Option::is_none")]
    backup_name: Option<String>,
    next_run: Option<String>,
    last_backup: Option<String>,
    /// Backup records of this schedule in the cluster.
    records: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Backups its retention would delete now (newest first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    retention_deletes: Vec<String>,
    /// Backups its retention keeps, with the rules that keep each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    retention_keeps: Vec<RetainedBackup>,
}

/// A backup a Schedule's retention keeps.
#[derive(Debug, Serialize)]
struct RetainedBackup {
    name: String,
    /// `keepLast`, `hourly`, `daily`, `weekly`, `monthly`, `yearly`.
    rules: Vec<&'static str>,
}

/// A Backup record whose TTL has passed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ExpiringBackup {
    name: String,
    namespace: String,
    location: Option<String>,
    phase: Option<String>,
    expiration: String,
    /// Expiry cannot delete it (a ReadOnly or missing Location).
    blocked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The preview of one RestorePlan of the revision.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct RestorePlanPreview {
    name: String,
    namespace: String,
    backup: Option<String>,
    location: Option<String>,
    spec_hash: String,
    already_ran: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    restore_name: Option<String>,
    create: Vec<String>,
    update: Vec<String>,
    skip: usize,
    conflict: Vec<String>,
    /// Objects that could not be checked, with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unchecked: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// An invalid manifest.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InvalidEntry {
    kind: String,
    namespace: Option<String>,
    name: Option<String>,
    origin: String,
    message: String,
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
async fn list_or_empty<K>(client: &Client, namespace: &str, lp: &ListParams) -> Result<Vec<K>>
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
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "listing {} in namespace {namespace}",
            K::plural(&())
        ))),
    }
}

/// One object of `K`, `None` when absent or the kind is not served.
async fn get_or_none<K>(client: &Client, namespace: &str, name: &str) -> Result<Option<K>>
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
        Err(e) => {
            Err(anyhow::Error::new(e)
                .context(format!("reading {} {namespace}/{name}", K::kind(&()))))
        }
    }
}

/// A Location as the revision would leave it, and where its definition comes from.
#[derive(Clone, Debug)]
struct KnownLocation {
    location: Location,
    from_revision: bool,
}

/// The Locations of each namespace: the cluster's, overridden by the revision's.
struct Locations<'a> {
    client: &'a Client,
    revision: BTreeMap<(String, String), Location>,
    cache: BTreeMap<String, BTreeMap<String, KnownLocation>>,
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

    async fn of(&mut self, namespace: &str) -> Result<&BTreeMap<String, KnownLocation>> {
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
    ) -> Result<Result<KnownLocation, String>> {
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
) -> Result<SchedulePlan> {
    let s: Schedule = serde_json::from_value(m.object.clone())
        .with_context(|| format!("{} ({})", m.describe(), m.origin))?;
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
) -> Result<Vec<ExpiringBackup>> {
    let mut out = Vec::new();
    for ns in namespaces {
        let mut records: Vec<Backup> = list_or_empty(client, ns, &ListParams::default()).await?;
        records.sort_by_key(|b| b.name_any());
        for b in records {
            let status = b.status.clone().unwrap_or_default();
            // Records the controller has not finished never expire (as in the controller).
            if matches!(
                status.phase.as_deref(),
                None | Some("New") | Some("InProgress") | Some("FailedValidation")
            ) {
                continue;
            }
            let Some(expiration) = parse_time(status.expiration.as_deref()) else {
                continue;
            };
            if !expired(Some(expiration), now) {
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
) -> Result<RestorePlanPreview> {
    let p: RestorePlan = serde_json::from_value(m.object.clone())
        .with_context(|| format!("{} ({})", m.describe(), m.origin))?;
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

/// Runs `tidemark plan`.
pub(crate) async fn run(target: &Target, args: PlanArgs) -> Result<ExitCode> {
    let (revision, rendered, source) = read_once(&args.from.to_config()).await?;
    let parsed = manifests::parse(&rendered.documents, &args.namespace);
    let valid: Vec<&Manifest> = parsed.iter().filter_map(|r| r.as_ref().ok()).collect();
    let invalid: Vec<InvalidEntry> = parsed
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(InvalidEntry::from)
        .collect();
    let client = cluster::connect(target).await?;
    let settings = args
        .client
        .restore_settings(&client, std::time::Duration::from_secs(120))
        .await?;
    let now = Utc::now();
    let mut locations = Locations::new(&client, &valid);

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
        schedules.push(plan_schedule(&client, &mut locations, &policies, m, now).await?);
    }
    // Records live in the controller's namespace: `-n`, and any namespace the revision uses.
    let namespaces: BTreeSet<String> = std::iter::once(args.namespace.clone())
        .chain(valid.iter().map(|m| m.namespace.clone()))
        .collect();
    let expiring = expiring(&client, &mut locations, &namespaces, now).await?;
    let mut restore_plans = Vec::new();
    for m in valid.iter().filter(|m| m.kind == Kind::RestorePlan) {
        restore_plans.push(preview_restore_plan(&client, &mut locations, m, &settings).await?);
    }

    let doc = PlanDocument {
        revision: revision.to_string(),
        source,
        schedules,
        expiring,
        restore_plans,
        invalid,
    };
    match args.output {
        OutputFormat::Json => super::output::print_value(&doc, false)?,
        OutputFormat::Yaml => super::output::print_value(&doc, true)?,
        OutputFormat::Table => print!("{}", render_table(&doc)),
    }
    let incomplete = !doc.invalid.is_empty()
        || doc.schedules.iter().any(|s| s.error.is_some())
        || doc.restore_plans.iter().any(|p| p.error.is_some());
    Ok(if incomplete {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn or_dash(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

/// The plan as readable text: one section per kind of change.
fn render_table(doc: &PlanDocument) -> String {
    let mut o = format!("Plan of revision {} ({})\n", doc.revision, doc.source);

    o += "\nSchedules:\n";
    if doc.schedules.is_empty() {
        o += "  none in the revision\n";
    } else {
        let rows: Vec<Vec<String>> = doc
            .schedules
            .iter()
            .map(|s| {
                let action = match s.action {
                    "RunNow" => format!("backs up now: {}", or_dash(&s.backup_name)),
                    "Wait" => "waits".into(),
                    "Paused" => "paused".into(),
                    "Blocked" => format!("blocked: {}", or_dash(&s.reason)),
                    _ => format!("invalid: {}", or_dash(&s.error)),
                };
                vec![
                    format!("{}/{}", s.namespace, s.name),
                    match &s.time_zone {
                        Some(tz) => format!("{} ({tz})", s.schedule),
                        None => s.schedule.clone(),
                    },
                    or_dash(&s.last_backup),
                    or_dash(&s.next_run),
                    action,
                ]
            })
            .collect();
        o += &indent(&columns(
            &["NAME", "SCHEDULE", "LAST BACKUP", "NEXT RUN", "NOW"],
            &rows,
        ));
    }

    let retained: Vec<&SchedulePlan> = doc
        .schedules
        .iter()
        .filter(|s| !s.retention_deletes.is_empty() || !s.retention_keeps.is_empty())
        .collect();
    if !retained.is_empty() {
        o += "\nRetention (backups each Schedule keeps, and deletes now):\n";
        let mut rows = Vec::new();
        for s in retained {
            for k in &s.retention_keeps {
                rows.push(vec![
                    format!("{}/{}", s.namespace, k.name),
                    s.name.clone(),
                    format!("kept ({})", k.rules.join(", ")),
                ]);
            }
            for d in &s.retention_deletes {
                rows.push(vec![
                    format!("{}/{d}", s.namespace),
                    s.name.clone(),
                    "deleted from the store".into(),
                ]);
            }
        }
        o += &indent(&columns(&["BACKUP", "SCHEDULE", "RETENTION"], &rows));
    }

    o += "\nBackups that would expire now:\n";
    if doc.expiring.is_empty() {
        o += "  none\n";
    } else {
        let rows: Vec<Vec<String>> = doc
            .expiring
            .iter()
            .map(|b| {
                vec![
                    format!("{}/{}", b.namespace, b.name),
                    or_dash(&b.location),
                    b.expiration.clone(),
                    if b.blocked {
                        or_dash(&b.reason)
                    } else {
                        "deleted from the store".into()
                    },
                ]
            })
            .collect();
        o += &indent(&columns(&["NAME", "LOCATION", "EXPIRED", "EXPIRY"], &rows));
    }

    o += "\nRestorePlans:\n";
    if doc.restore_plans.is_empty() {
        o += "  none in the revision\n";
    }
    for p in &doc.restore_plans {
        let head = format!("  {}/{}", p.namespace, p.name);
        if p.already_ran {
            o += &format!(
                "{head}: already ran (spec {}{}); nothing to do\n",
                p.spec_hash,
                p.restore_name
                    .as_ref()
                    .map(|r| format!(", restore {r}"))
                    .unwrap_or_default()
            );
            continue;
        }
        if let Some(e) = &p.error {
            o += &format!("{head}: cannot preview: {e}\n");
            continue;
        }
        o += &format!(
            "{head}: restore of backup {} from Location {}: {} to create, {} to update, {} unchanged, {} conflicts{}\n",
            or_dash(&p.backup),
            or_dash(&p.location),
            p.create.len(),
            p.update.len(),
            p.skip,
            p.conflict.len(),
            if p.unchecked.is_empty() {
                String::new()
            } else {
                format!(", {} unchecked", p.unchecked.len())
            }
        );
        for (what, items) in [
            ("create", &p.create),
            ("update", &p.update),
            ("conflict", &p.conflict),
            ("unchecked", &p.unchecked),
        ] {
            for i in items {
                o += &format!("    {what:<9} {i}\n");
            }
        }
    }

    if !doc.invalid.is_empty() {
        o += "\nInvalid manifests:\n";
        for i in &doc.invalid {
            o += &format!(
                "  {} {}/{} ({}): {}\n",
                i.kind,
                i.namespace.as_deref().unwrap_or("?"),
                i.name.as_deref().unwrap_or("?"),
                i.origin,
                i.message
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_sections_read() {
        let doc = PlanDocument {
            revision: "main@sha1:0123456789abcdef0123456789abcdef01234567".into(),
            source: "dir /x".into(),
            schedules: vec![SchedulePlan {
                name: "nightly".into(),
                namespace: "tidemark".into(),
                schedule: "0 2 * * *".into(),
                time_zone: None,
                action: "RunNow",
                would_run_now: true,
                backup_name: Some("nightly-20250101000000".into()),
                next_run: Some("2025-01-01T02:00:00Z".into()),
                last_backup: None,
                records: 3,
                reason: None,
                error: None,
                retention_deletes: vec!["nightly-20240101000000".into()],
                retention_keeps: vec![RetainedBackup {
                    name: "nightly-20241231000000".into(),
                    rules: vec!["keepLast", "daily"],
                }],
            }],
            expiring: vec![ExpiringBackup {
                name: "old".into(),
                namespace: "tidemark".into(),
                location: Some("dr".into()),
                phase: Some("Completed".into()),
                expiration: "2024-01-01T00:00:00Z".into(),
                blocked: true,
                reason: Some("expiry blocked: Location dr is ReadOnly".into()),
            }],
            restore_plans: vec![RestorePlanPreview {
                name: "app".into(),
                namespace: "tidemark".into(),
                backup: Some("b1".into()),
                location: Some("default".into()),
                create: vec!["configmaps app/gone".into()],
                conflict: vec!["configmaps app/settings".into()],
                skip: 2,
                ..Default::default()
            }],
            invalid: vec![],
        };
        let t = render_table(&doc);
        assert!(t.contains("backs up now: nightly-20250101000000"), "{t}");
        assert!(
            t.contains("tidemark/nightly-20241231000000  nightly   kept (keepLast, daily)"),
            "{t}"
        );
        assert!(
            t.contains("tidemark/nightly-20240101000000  nightly   deleted from the store"),
            "{t}"
        );
        assert!(t.contains("expiry blocked: Location dr is ReadOnly"), "{t}");
        assert!(
            t.contains("1 to create, 0 to update, 2 unchanged, 1 conflicts"),
            "{t}"
        );
        assert!(t.contains("    create    configmaps app/gone\n"), "{t}");
        let v = serde_json::to_value(&doc).unwrap();
        assert_eq!(v["restorePlans"][0]["alreadyRan"], false);
        assert_eq!(v["restorePlans"][0]["skip"], 2);
        assert_eq!(v["schedules"][0]["wouldRunNow"], true);
        let tbl = columns(&["A", "B"], &[vec!["long-value".into(), "x".into()]]);
        assert_eq!(tbl, "A           B\nlong-value  x\n");
    }
}
