//! GitSource controller (leader only): for each `GitSource` in the controller's namespace,
//! reads its Secrets, runs one GitOps pass ([`crate::gitops::Reconciler`]: fetch, apply the
//! revision as one change set, prune by the inventory in its status), and writes what the
//! planner ([`crate::plan::gitsource`]) decides: `artifact`, `inventory`,
//! `lastAppliedRevision`, `lastAttemptedRevision`, kstatus conditions, events. Commit statuses
//! are posted in the background. It requeues after `spec.interval`; a spec change or Flux's
//! `reconcile.fluxcd.io/requestedAt` annotation reconciles at once.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;

use super::{Context, apply_status, now_rfc3339};
use crate::api::gitsource::GitSource;
use crate::gitops::inventory::{from_inventory, to_inventory};
use crate::gitops::record::Previous;
use crate::gitops::source::{DEFAULT_INTERVAL, Settings};
use crate::gitops::{GitopsError, Pass, Reconciler, credentials};
use crate::plan::gitsource::{Outcome, Start, decide, start, suspended};

/// The finalizer that prunes a deleted GitSource's inventory (Flux's garbage collection).
pub const FINALIZER: &str = "tidemark.dev/gitsource-prune";

/// Runs one reconcile under the finalizer protocol (kube-runtime's `finalizer`): the finalizer
/// is added first; on deletion the inventory is pruned (when `spec.prune` and not suspended)
/// before it is removed.
async fn reconcile(gs: Arc<GitSource>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    use kube::runtime::finalizer::{Error as FinalizerError, Event, finalizer};
    let api: Api<GitSource> = ctx.api();
    finalizer(&api, FINALIZER, gs, |event| async {
        match event {
            Event::Apply(gs) => apply(gs, ctx.clone()).await,
            Event::Cleanup(gs) => cleanup(gs, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| match e {
        FinalizerError::ApplyFailed(e)
        | FinalizerError::CleanupFailed(e)
        | FinalizerError::AddFinalizer(e)
        | FinalizerError::RemoveFinalizer(e) => e,
        other => kube::Error::Service(Box::new(other)),
    })
}

/// A deleted GitSource: deletes what its inventory holds (dependents first; objects another
/// source took over are left), unless `spec.prune` is off or it is suspended.
async fn cleanup(gs: Arc<GitSource>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let inventory = gs
        .status
        .as_ref()
        .and_then(|s| s.inventory.as_ref())
        .map(from_inventory)
        .unwrap_or_default();
    if !gs.spec.prune || gs.spec.suspend || inventory.is_empty() {
        return Ok(Action::await_change());
    }
    let id = Settings::id_of(&gs);
    let order = crate::gitops::inventory::to_prune(&inventory, &Default::default());
    let pruned = crate::gitops::prune::prune(&ctx.client, &id, &order).await;
    tracing::info!(
        gitsource = %gs.name_any(),
        pruned = pruned.deleted.len(),
        "deleted: pruned its inventory"
    );
    if let Some(first) = pruned.failed.first() {
        // Kept (with the finalizer) until every object is gone; retried with backoff.
        return Err(kube::Error::Service(first.clone().into()));
    }
    Ok(Action::await_change())
}

/// A GitSource that exists: one pass, its status written.
async fn apply(gs: Arc<GitSource>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let api: Api<GitSource> = ctx.api();
    let (since, requested_at) = match start(&gs) {
        Start::Suspended { requested_at } => {
            if let Some(d) = suspended(&gs, requested_at.as_deref()) {
                apply_status(&api, &gs, &own_conditions(&gs), d.status, &d.health).await?;
            }
            return Ok(Action::await_change());
        }
        Start::Poll {
            since,
            requested_at,
        } => (since, requested_at),
    };
    let status = gs.status.clone().unwrap_or_default();
    // An invalid interval is reported by the settings below; the requeue falls back.
    let interval = Settings::interval_of(&gs).unwrap_or(DEFAULT_INTERVAL);
    let cache_root = crate::source::git::default_cache_root();
    let settings = match credentials::read(&ctx.client, &gs, &cache_root).await {
        Ok((creds, token)) => Settings::from_git_source(&gs, creds, token, None),
        Err(e) => Err(e),
    };
    let outcome = match settings.and_then(Reconciler::new) {
        Err(GitopsError::Settings { field, message }) => {
            (Outcome::InvalidSettings { field, message }, None)
        }
        Err(GitopsError::Kube { source, .. }) => return Err(source),
        Err(e) => (
            Outcome::FetchFailed {
                message: e.to_string(),
                transient: e.is_transient(),
            },
            None,
        ),
        Ok(reconciler) => {
            let previous = Previous {
                revision: since.as_deref().and_then(|s| s.parse().ok()),
                invalid: 0,
                inventory: status.inventory.as_ref().map(from_inventory),
            };
            match reconciler.pass(&ctx.client, &previous, false).await {
                Err(e) => (
                    Outcome::FetchFailed {
                        message: e.to_string(),
                        transient: e.is_transient(),
                    },
                    None,
                ),
                Ok(pass) => match &pass {
                    Pass::Unchanged { revision, .. } => (
                        Outcome::Unchanged {
                            revision: revision.to_string(),
                        },
                        None,
                    ),
                    Pass::Applied { report, digest, .. } => {
                        let outcome = Outcome::Applied {
                            revision: report.revision.to_string(),
                            digest: digest.clone(),
                            summary: report.summary(),
                            invalid: report.invalid.iter().map(|(i, _)| i.to_string()).collect(),
                            failed: report.failed.clone(),
                            inventory: to_inventory(&report.inventory),
                        };
                        tracing::info!(
                            gitsource = %gs.name_any(),
                            revision = %report.revision,
                            "{}",
                            report.summary()
                        );
                        (outcome, Some((reconciler, pass)))
                    }
                },
            }
        }
    };
    let (outcome, applied) = outcome;
    let decision = decide(
        &gs,
        &outcome,
        requested_at.as_deref(),
        interval,
        &now_rfc3339(),
    );
    apply_status(
        &api,
        &gs,
        &own_conditions(&gs),
        decision.status,
        &decision.health,
    )
    .await?;
    if let Some((warning, reason, note)) = decision.event {
        ctx.event(gs.as_ref(), warning, &reason, note).await;
    }
    if let Some((reconciler, pass)) = applied {
        // Waits for the applied objects to settle (up to the status timeout): not in the way
        // of the next reconcile.
        let client = ctx.client.clone();
        tokio::spawn(async move { reconciler.post_statuses(&client, &pass).await });
    }
    Ok(Action::requeue(decision.requeue))
}

/// The GitSource's conditions, without a `Stalled` of reason `InvalidManifest`: on a
/// GitSource the planner decides that one afresh each pass (on the objects it applies, the
/// controllers keep it: [`apply_status`]).
fn own_conditions(
    gs: &GitSource,
) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let mut conditions = gs.status.clone().unwrap_or_default().conditions;
    conditions.retain(|c| !crate::report::object_status::invalid_manifest_stall(c));
    conditions
}

/// Runs the GitSource controller.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<GitSource> = ctx.api();
    let controller = Controller::new(api, watcher::Config::default());
    super::errors::drive(controller, ctx, reconcile).await;
}
