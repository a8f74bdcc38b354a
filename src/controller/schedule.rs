//! Schedule controller: creates a Backup record when a cron slot is due (Velero's naming
//! `<schedule>-YYYYMMDDhhmmss`), never while one of the schedule's backups is still running, and
//! at most one after downtime (no catch-up storm). Decisions come from the pure planner
//! ([`crate::plan::schedule`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::stores::{self, LocationProblem};
use super::{Context, apply_status};
use crate::api::conditions::Health;
use crate::api::tidemark::{
    Backup, BackupPolicy, BackupSpec, BackupSpecTemplate, Retention, Schedule,
};
use crate::api::velero;
use crate::plan::retention::Candidate;
use crate::plan::schedule::{CronSchedule, ScheduleDecision, ScheduleObserved, decide};

fn rfc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn parse(t: Option<&str>) -> Option<chrono::DateTime<chrono::Utc>> {
    t.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

async fn stalled(
    api: &Api<Schedule>,
    s: &Schedule,
    reason: &str,
    message: String,
    requeue: Option<Duration>,
) -> Result<Action, kube::Error> {
    let st = s.status.clone().unwrap_or_default();
    apply_status(api, s, &st.conditions,
        json!({"phase": "FailedValidation", "lastBackup": st.last_backup, "lastBackupName": st.last_backup_name}),
        &Health::Stalled { reason: reason.into(), message }).await?;
    Ok(requeue
        .map(Action::requeue)
        .unwrap_or_else(Action::await_change))
}

async fn reconcile(s: Arc<Schedule>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let api: Api<Schedule> = ctx.api();
    let name = s.name_any();
    let st = s.status.clone().unwrap_or_default();
    let cron = match CronSchedule::parse(&s.spec.schedule, s.spec.time_zone.as_deref()) {
        Ok(c) => c,
        Err(e) => return stalled(&api, &s, "InvalidSchedule", e.to_string(), None).await,
    };
    let (template, policy_retention): (BackupSpecTemplate, Option<Retention>) =
        match (&s.spec.policy, &s.spec.template) {
            (Some(p), None) => {
                let policies: Api<BackupPolicy> = ctx.api();
                match policies.get_opt(p).await? {
                    Some(pol) => (pol.spec.template, pol.spec.retention),
                    None => {
                        return stalled(
                            &api,
                            &s,
                            "PolicyNotFound",
                            format!(
                                "spec.policy: BackupPolicy {p} not found in namespace {}",
                                ctx.namespace
                            ),
                            Some(Duration::from_secs(30)),
                        )
                        .await;
                    }
                }
            }
            (None, Some(t)) => (t.clone(), None),
            _ => {
                return stalled(
                    &api,
                    &s,
                    "InvalidSpec",
                    "spec: exactly one of policy and template must be set".into(),
                    None,
                )
                .await;
            }
        };
    let loc = match stores::find(&ctx, template.location.as_deref()).await {
        Ok(l) => l,
        Err(LocationProblem::Kube(e)) => return Err(e),
        Err(e) => {
            return stalled(
                &api,
                &s,
                "LocationNotFound",
                format!("spec.template.location: {e}"),
                Some(Duration::from_secs(30)),
            )
            .await;
        }
    };
    if let Err(m) =
        super::requests::backup_request(&name, &ctx.namespace, &template, &loc.name_any())
    {
        return stalled(&api, &s, "InvalidSpec", m, None).await;
    }
    let retention = match (&s.spec.retention, &policy_retention) {
        (Some(r), _) => Some((r, "spec.retention")),
        (None, Some(r)) => Some((r, "the BackupPolicy's spec.retention")),
        (None, None) => None,
    };
    if let Some((r, field)) = retention
        && let Err(m) = crate::plan::retention::validate(field, r)
    {
        return stalled(&api, &s, "InvalidSpec", m, None).await;
    }
    let backups: Api<Backup> = ctx.api();
    let mine = match ctx.caches.backups_of_schedule(&name) {
        Some(cached) => cached,
        None => {
            backups
                .list(
                    &ListParams::default()
                        .labels(&format!("{}={name}", velero::SCHEDULE_NAME_LABEL)),
                )
                .await?
                .items
        }
    };
    // Retention applies while paused too: it keeps backups, it does not make them.
    if let Some((r, _)) = retention {
        apply_retention(&backups, &mine, r, &cron, &name, &loc.name_any()).await?;
    }
    let now = chrono::Utc::now();
    let observed = ScheduleObserved::of(&s, &mine, now);
    let (status, health, requeue) = match decide(&name, &cron, &observed, now) {
        ScheduleDecision::Paused => {
            apply_status(
                &api,
                s.as_ref(),
                &st.conditions,
                json!({"phase": "Paused", "lastBackup": st.last_backup,
                       "lastBackupName": st.last_backup_name, "nextRun": null}),
                &Health::Ready {
                    reason: "Paused".into(),
                    message: "paused: no backups are started".into(),
                },
            )
            .await?;
            return Ok(Action::await_change());
        }
        ScheduleDecision::RunNow {
            backup_name,
            slot,
            next,
        } => {
            let mut labels: BTreeMap<String, String> =
                crate::plan::labels::inheritable_labels(&s.labels().clone());
            labels.insert(velero::SCHEDULE_NAME_LABEL.into(), name.clone());
            let mut rec = Backup::new(
                &backup_name,
                BackupSpec {
                    template: template.clone(),
                    policy: s.spec.policy.clone(),
                    schedule: Some(name.clone()),
                    verify: s.spec.verify.clone(),
                },
            );
            rec.metadata.namespace = Some(ctx.namespace.clone());
            rec.metadata.labels = Some(labels);
            let annotations =
                crate::plan::labels::inheritable_annotations(&s.annotations().clone());
            if !annotations.is_empty() {
                rec.metadata.annotations = Some(annotations);
            }
            if s.spec.use_owner_references_in_backup {
                rec.metadata.owner_references = Some(vec![OwnerReference {
                    api_version: Schedule::api_version(&()).into(),
                    kind: Schedule::kind(&()).into(),
                    name: name.clone(),
                    uid: s.uid().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(false),
                }]);
            }
            match backups.create(&PostParams::default(), &rec).await {
                Ok(_) => {
                    tracing::info!(schedule = %name, backup = %backup_name, "started scheduled backup")
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
            (
                json!({"phase": "Enabled", "lastBackup": rfc(slot), "lastBackupName": backup_name, "nextRun": next.map(rfc)}),
                Health::Ready {
                    reason: "Scheduled".into(),
                    message: format!("started backup {backup_name}"),
                },
                next,
            )
        }
        ScheduleDecision::Wait { next } => (
            json!({"phase": "Enabled", "lastBackup": st.last_backup, "lastBackupName": st.last_backup_name, "nextRun": next.map(rfc)}),
            Health::Ready {
                reason: "Scheduled".into(),
                message: next
                    .map(|n| format!("next backup at {}", rfc(n)))
                    .unwrap_or_else(|| "no future slot".into()),
            },
            next,
        ),
        ScheduleDecision::Blocked { reason, next } => (
            json!({"phase": "Enabled", "lastBackup": st.last_backup, "lastBackupName": st.last_backup_name, "nextRun": next.map(rfc)}),
            Health::Ready {
                reason: "Waiting".into(),
                message: reason,
            },
            Some(now + chrono::Duration::seconds(10)),
        ),
    };
    apply_status(&api, s.as_ref(), &st.conditions, status, &health).await?;
    let wait = requeue
        .map(|t| (t - chrono::Utc::now()).to_std().unwrap_or_default())
        .unwrap_or(Duration::from_secs(3600));
    Ok(Action::requeue(wait.clamp(
        Duration::from_millis(500),
        Duration::from_secs(3600),
    )))
}

/// The Schedule's `Completed` backups in its Location that its retention does not keep: each
/// goes `Deleting`, which the Backup controller carries out as for an expired backup (store
/// folder, restores, snapshots, then the record). Backups in other phases or Locations are left
/// alone.
///
/// # Errors
/// The API error of a status write (the reconcile is retried).
async fn apply_retention(
    backups: &Api<Backup>,
    mine: &[Backup],
    r: &Retention,
    cron: &CronSchedule,
    schedule: &str,
    location: &str,
) -> Result<(), kube::Error> {
    let candidates: Vec<Candidate> = retention_candidates(mine, location);
    let decision = crate::plan::retention::decide(&candidates, r, cron.time_zone());
    for name in &decision.delete {
        let Some(b) = mine.iter().find(|b| &b.name_any() == name) else {
            continue;
        };
        let existing = b.status.clone().unwrap_or_default().conditions;
        apply_status(
            backups,
            b,
            &existing,
            json!({"phase": "Deleting"}),
            &Health::Reconciling {
                reason: "Retention".into(),
                message: format!("not kept by Schedule {schedule}'s retention; deleting"),
            },
        )
        .await?;
        tracing::info!(schedule, backup = %name, "not kept by the retention; deleting");
    }
    Ok(())
}

/// The backups retention judges: `Completed`, in `location`, not being deleted, with a start
/// time.
pub fn retention_candidates(mine: &[Backup], location: &str) -> Vec<Candidate> {
    mine.iter()
        .filter(|b| {
            b.metadata.deletion_timestamp.is_none()
                && b.labels().get(super::LOCATION_LABEL).map(String::as_str) == Some(location)
                && b.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Completed")
        })
        .filter_map(|b| {
            Some(Candidate {
                name: b.name_any(),
                started: parse(b.status.as_ref()?.start_timestamp.as_deref())?,
            })
        })
        .collect()
}

/// Runs the Schedule controller (also woken by changes to the schedule's Backup records).
pub async fn run(ctx: Arc<Context>) {
    let api: Api<Schedule> = ctx.api();
    let backups: Api<Backup> = ctx.api();
    let controller = Controller::new(api, watcher::Config::default()).watches(
        backups,
        watcher::Config::default(),
        |b: Backup| {
            b.labels().get(velero::SCHEDULE_NAME_LABEL).map(|s| {
                kube::runtime::reflector::ObjectRef::new(s)
                    .within(b.namespace().as_deref().unwrap_or_default())
            })
        },
    );
    super::errors::drive(controller, ctx, reconcile).await;
}
