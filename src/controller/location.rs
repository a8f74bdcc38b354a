//! Location controller: validates each Location on its `validationPeriod` (the store answers,
//! only Velero's top-level folders exist under the prefix), reports `Available`/`Unavailable`,
//! and syncs records from the store on its `syncPeriod` — the bucket is the source of truth:
//! backups present in the store get a Backup record (also Velero-written ones), records whose
//! data is gone are removed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use super::stores::{self, LocationProblem};
use super::{Context, LOCATION_LABEL, SYNCED_ANNOTATION, apply_status, now_rfc3339};
use crate::api::conditions::Health;
use crate::api::tidemark::{Backup, BackupSpec, BackupSpecTemplate, Location};
use crate::api::velero;
use crate::plan::sync::{RecordView, SyncAction, plan_sync};
use crate::store::Store;

/// Default validation and sync period.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);

fn period(field: &str, value: Option<&str>) -> Result<Duration, LocationProblem> {
    match value {
        None => Ok(DEFAULT_PERIOD),
        Some(v) => {
            crate::plan::expiry::parse_duration(field, v).map_err(|e| LocationProblem::Invalid {
                field: field.into(),
                message: e.to_string(),
            })
        }
    }
}

fn parse_time(s: Option<&str>) -> Option<chrono::DateTime<chrono::Utc>> {
    s.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// One sync pass: import missing records, forget records whose data is gone.
async fn sync(ctx: &Context, loc: &Location, store: &Store) -> Result<(usize, usize), String> {
    let name = loc.name_any();
    let in_store: BTreeSet<String> = store
        .list_backups()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .collect();
    let api: Api<Backup> = ctx.api();
    // Every record (from the cache): each name (a name under another location must not be re-imported
    // here) and this location's records.
    let all = match ctx.caches.backups() {
        Some(cached) => cached,
        None => {
            api.list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
        }
    };
    let all_names: BTreeSet<String> = all.iter().map(|b| b.name_any()).collect();
    // Which records are forgotten is the planner's (`plan::sync`): all of this location's go in.
    let views: Vec<RecordView> = all
        .iter()
        .filter(|b| b.labels().get(LOCATION_LABEL) == Some(&name))
        .map(|b| RecordView {
            name: b.name_any(),
            phase: b.status.as_ref().and_then(|s| s.phase.clone()),
            created: b
                .metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp(t.0.as_second(), 0)),
        })
        .collect();
    let (mut imported, mut forgotten) = (0, 0);
    for action in plan_sync(
        &in_store,
        &views,
        chrono::Utc::now(),
        chrono::Duration::seconds(30),
    ) {
        match action {
            SyncAction::Import(b) if !all_names.contains(&b) => {
                match import(ctx, &name, store, &b).await {
                    Ok(()) => imported += 1,
                    Err(e) => {
                        tracing::warn!(location = %name, backup = %b, "sync: cannot import: {e}")
                    }
                }
            }
            SyncAction::Import(_) => {}
            SyncAction::Forget(b) => match api.delete(&b, &DeleteParams::default()).await {
                Ok(_) => forgotten += 1,
                Err(e) => {
                    tracing::warn!(location = %name, backup = %b, "sync: cannot remove record: {e}")
                }
            },
        }
    }
    Ok((imported, forgotten))
}

/// Creates a Backup record for a backup found in the store.
async fn import(ctx: &Context, location: &str, store: &Store, name: &str) -> Result<(), String> {
    let v = crate::restore::read_backup(store, name)
        .await
        .map_err(|e| e.to_string())?;
    let mut labels = BTreeMap::from([
        (LOCATION_LABEL.to_string(), location.to_string()),
        (
            velero::STORAGE_LOCATION_LABEL.to_string(),
            location.to_string(),
        ),
    ]);
    if let Some(s) = v
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(velero::SCHEDULE_NAME_LABEL))
    {
        labels.insert(velero::SCHEDULE_NAME_LABEL.into(), s.clone());
    }
    let mut rec = Backup::new(
        name,
        BackupSpec {
            template: BackupSpecTemplate {
                included_namespaces: v.spec.included_namespaces.clone(),
                excluded_namespaces: v.spec.excluded_namespaces.clone(),
                included_resources: v.spec.included_resources.clone(),
                excluded_resources: v.spec.excluded_resources.clone(),
                include_cluster_resources: v.spec.include_cluster_resources,
                label_selector: v.spec.label_selector.clone(),
                location: Some(location.to_string()),
                ttl: v.spec.ttl.clone(),
                ..Default::default()
            },
            policy: None,
            schedule: labels.get(velero::SCHEDULE_NAME_LABEL).cloned(),
            verify: None,
        },
    );
    rec.metadata.namespace = Some(ctx.namespace.clone());
    rec.metadata.labels = Some(labels);
    rec.metadata.annotations = Some(BTreeMap::from([(
        SYNCED_ANNOTATION.to_string(),
        "true".to_string(),
    )]));
    let api: Api<Backup> = ctx.api();
    let created = match api.create(&PostParams::default(), &rec).await {
        Ok(c) => c,
        Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let (status, health) = super::records::status_from_record(
        &v,
        "Synced",
        &format!("imported from location {location}"),
    );
    apply_status(&api, &created, &[], status, &health)
        .await
        .map_err(|e| e.to_string())
}

async fn reconcile(loc: Arc<Location>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let api: Api<Location> = ctx.api();
    let name = loc.name_any();
    let status = loc.status.clone().unwrap_or_default();
    let validation = period(
        "spec.validationPeriod",
        loc.spec.validation_period.as_deref(),
    );
    let sync_period = period("spec.syncPeriod", loc.spec.sync_period.as_deref());
    let (validation, sync_period) = match (validation, sync_period) {
        (Ok(v), Ok(s)) => (v, s),
        (Err(e), _) | (_, Err(e)) => {
            apply_status(
                &api,
                loc.as_ref(),
                &status.conditions,
                json!({"phase": "Unavailable", "message": e.to_string()}),
                &Health::Stalled {
                    reason: "InvalidSpec".into(),
                    message: e.to_string(),
                },
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let store = match stores::store_for(&ctx, &loc).await {
        Ok(s) => s,
        Err(e) => {
            ctx.metrics
                .location_available
                .with_label_values(&[&name])
                .set(0.0);
            apply_status(
                &api,
                loc.as_ref(),
                &status.conditions,
                json!({"phase": "Unavailable", "message": e.to_string()}),
                &Health::Stalled {
                    reason: "InvalidSpec".into(),
                    message: e.to_string(),
                },
            )
            .await?;
            return Ok(Action::requeue(std::time::Duration::from_secs(60)));
        }
    };
    let problem = match store.check().await {
        Err(e) => Some(e.to_string()),
        Ok(()) => match store.unknown_top_level_dirs().await {
            Ok(dirs) if dirs.is_empty() => None,
            Ok(dirs) => Some(format!(
                "unknown top-level folder(s) under the prefix: {} (only backups/ restores/ restic/ kopia/ metadata/ plugins/ may exist)",
                dirs.join(", ")
            )),
            Err(e) => Some(e.to_string()),
        },
    };
    if let Some(message) = problem {
        ctx.metrics
            .location_available
            .with_label_values(&[&name])
            .set(0.0);
        apply_status(&api, loc.as_ref(), &status.conditions,
            json!({"phase": "Unavailable", "message": message, "lastSyncedTime": status.last_synced_time}),
            &Health::NotReady { reason: "Unavailable".into(), message: message.clone() }).await?;
        return Ok(Action::requeue(validation.min(DEFAULT_PERIOD)));
    }
    ctx.metrics
        .location_available
        .with_label_values(&[&name])
        .set(1.0);
    let mut last_synced = status.last_synced_time.clone();
    let mut message = format!("location {} is available", store.url());
    let sync_due = !sync_period.is_zero()
        && parse_time(last_synced.as_deref()).is_none_or(|t| {
            chrono::Utc::now() - t >= chrono::Duration::from_std(sync_period).unwrap_or_default()
        });
    if sync_due {
        match sync(&ctx, &loc, &store).await {
            Ok((imported, forgotten)) => {
                last_synced = Some(now_rfc3339());
                if imported + forgotten > 0 {
                    tracing::info!(location = %name, imported, forgotten, "synced records from the store");
                }
                message = format!(
                    "{message}; last sync imported {imported}, removed {forgotten} records"
                );
            }
            Err(e) => message = format!("{message}; sync failed: {e}"),
        }
    }
    apply_status(&api, loc.as_ref(), &status.conditions,
        json!({"phase": "Available", "lastValidationTime": now_rfc3339(), "lastSyncedTime": last_synced, "message": null}),
        &Health::Ready { reason: "Available".into(), message }).await?;
    let next = if sync_period.is_zero() {
        validation
    } else {
        validation.min(sync_period)
    };
    Ok(Action::requeue(if next.is_zero() {
        DEFAULT_PERIOD
    } else {
        next
    }))
}

/// Runs the Location controller.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<Location> = ctx.api();
    let controller = Controller::new(api, watcher::Config::default());
    super::errors::drive(controller, ctx, reconcile).await;
}
