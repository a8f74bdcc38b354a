//! Restore controller: runs new Restore records with the restore engine and reports Velero's
//! phases and counters.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use super::progress::{PROGRESS_INTERVAL, ProgressWriter, restore_progress};
use super::stores::{self, LocationProblem};
use super::{Context, PLAN_HASH_LABEL, PLAN_LABEL, apply_status, now_rfc3339};
use crate::api::conditions::Health;
use crate::api::tidemark::Restore;
use crate::restore::{self};

async fn fail(
    api: &Api<Restore>,
    r: &Restore,
    phase: &str,
    reason: &str,
    message: String,
) -> Result<Action, kube::Error> {
    let existing = r.status.clone().unwrap_or_default().conditions;
    apply_status(
        api,
        r,
        &existing,
        json!({"phase": phase, "failureReason": message, "completionTimestamp": now_rfc3339()}),
        &Health::Stalled {
            reason: reason.into(),
            message,
        },
    )
    .await?;
    Ok(Action::await_change())
}

async fn reconcile(r: Arc<Restore>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let phase = r.status.as_ref().and_then(|s| s.phase.as_deref());
    if !matches!(phase, None | Some("New")) || r.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let api: Api<Restore> = ctx.api();
    let name = r.name_any();
    let (_, store) = match stores::open(&ctx, r.spec.template.location.as_deref()).await {
        Ok(x) => x,
        Err(LocationProblem::Kube(e)) => return Err(e),
        Err(e) => {
            return fail(
                &api,
                &r,
                "FailedValidation",
                "LocationNotFound",
                format!("spec.template.location: {e}"),
            )
            .await;
        }
    };
    let backup = match super::requests::resolve_backup(&store, &r.spec.template).await {
        Ok(b) => b,
        Err(m) => return fail(&api, &r, "FailedValidation", "BackupNotFound", m).await,
    };
    let labels: BTreeMap<String, String> = r
        .labels()
        .iter()
        .filter(|(k, _)| k.as_str() == PLAN_LABEL || k.as_str() == PLAN_HASH_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let req = match super::requests::restore_request(&ctx, &name, &backup, &r.spec.template, labels)
        .await
    {
        Ok(r) => r,
        Err(m) => return fail(&api, &r, "FailedValidation", "InvalidSpec", m).await,
    };
    let existing = r.status.clone().unwrap_or_default().conditions;
    let started = now_rfc3339();
    apply_status(
        &api,
        r.as_ref(),
        &existing,
        json!({"phase": "InProgress", "startTimestamp": started}),
        &Health::Reconciling {
            reason: "InProgress".into(),
            message: format!("restoring backup {backup}"),
        },
    )
    .await?;
    ctx.metrics.restore_total.with_label_values(&[""]).inc();
    ctx.event(
        r.as_ref(),
        false,
        "RestoreStarted",
        format!("restoring backup {backup}"),
    )
    .await;
    let settings = restore::Settings {
        concurrency: ctx.concurrency,
        max_concurrency: ctx.max_concurrency,
        budget: ctx.budget.clone(),
        wait_timeout: std::time::Duration::from_secs(120),
        pod_volumes: crate::volumes::podvolume::PodVolumeSettings::from_env(),
    };
    let counters = Arc::new(restore::Counters::default());
    let writer = ProgressWriter::start(api.clone(), name.clone(), PROGRESS_INTERVAL, {
        let counters = counters.clone();
        move || restore_progress(&counters)
    });
    let result = restore::run(&ctx.client, &store, &req, &settings, &counters).await;
    // No progress write after this point: the final status below carries the final progress.
    writer.stop().await;
    let progress = restore_progress(&counters);
    let r = api.get(&name).await?;
    let existing = r.status.clone().unwrap_or_default().conditions;
    match result {
        Ok(out) => {
            let phase = out.record.status.phase.clone().unwrap_or_default();
            let status = json!({
                "phase": phase, "startTimestamp": started, "completionTimestamp": now_rfc3339(),
                "created": out.created, "updated": out.updated, "skipped": out.skipped,
                "warnings": out.results.warnings.len(), "errors": out.results.errors.len(),
                "progress": progress,
                "hookStatus": crate::hooks::HookStatus::of(&out.hooks),
            });
            let summary = format!(
                "{} created, {} updated, {} skipped, {} failed",
                out.created, out.updated, out.skipped, out.failed
            );
            let health = if phase == "Completed" {
                ctx.metrics.restore_success.with_label_values(&[""]).inc();
                Health::Ready {
                    reason: "Completed".into(),
                    message: summary,
                }
            } else {
                ctx.metrics.restore_partial.with_label_values(&[""]).inc();
                Health::Stalled {
                    reason: "PartiallyFailed".into(),
                    message: summary,
                }
            };
            ctx.event(&r, phase != "Completed", &phase, format!("restore {phase}"))
                .await;
            apply_status(&api, &r, &existing, status, &health).await?;
            Ok(Action::await_change())
        }
        Err(e) => {
            ctx.metrics.restore_failed.with_label_values(&[""]).inc();
            ctx.event(&r, true, "RestoreFailed", e.to_string()).await;
            fail(&api, &r, "Failed", "RestoreFailed", e.to_string()).await
        }
    }
}

/// Runs the Restore controller.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<Restore> = ctx.api();
    let controller = Controller::new(api, watcher::Config::default());
    super::errors::drive(controller, ctx, reconcile).await;
}
