//! BackupPolicy controller: validates each policy (filters, selectors, TTL, location) and reports
//! `Ready` or `Stalled` with the field at fault. Policies do nothing by themselves; Schedules and
//! Backups use them.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use super::stores::{self, LocationProblem};
use super::{Context, apply_status};
use crate::api::conditions::Health;
use crate::api::tidemark::BackupPolicy;

async fn reconcile(p: Arc<BackupPolicy>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let api: Api<BackupPolicy> = ctx.api();
    let existing = p.status.clone().unwrap_or_default().conditions;
    let t = &p.spec.template;
    let health = match stores::find(&ctx, t.location.as_deref()).await {
        Err(LocationProblem::Kube(e)) => return Err(e),
        Err(e) => Health::Stalled {
            reason: "LocationNotFound".into(),
            message: format!("spec.template.location: {e}"),
        },
        Ok(loc) => {
            match super::requests::backup_request(&p.name_any(), &ctx.namespace, t, &loc.name_any())
            {
                Err(m) => Health::Stalled {
                    reason: "InvalidSpec".into(),
                    message: m,
                },
                Ok(_) => Health::Ready {
                    reason: "Valid".into(),
                    message: format!("backs up to location {}", loc.name_any()),
                },
            }
        }
    };
    let requeue = matches!(health, Health::Stalled { .. });
    apply_status(&api, p.as_ref(), &existing, json!({}), &health).await?;
    // A missing Location may appear later: look again now and then.
    Ok(if requeue {
        Action::requeue(std::time::Duration::from_secs(30))
    } else {
        Action::await_change()
    })
}

/// Runs the BackupPolicy controller.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<BackupPolicy> = ctx.api();
    let controller = Controller::new(api, watcher::Config::default());
    super::errors::drive(controller, ctx, reconcile).await;
}
