//! Maintenance of the restic repositories of pod volume data: every
//! `TIDEMARK_REPO_MAINTENANCE_PERIOD` (Go-style duration, default `168h`, Velero's default
//! maintenance frequency for restic repositories) the controller prunes every namespace
//! repository (`<prefix>/restic/<ns>/`) of every ReadWrite Location in its namespace, freeing
//! the data of snapshots that expiry forgot. Needs the repository password
//! (`TIDEMARK_REPO_PASSWORD_FILE`); without it the loop does nothing.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::ListParams;

use super::Context;
use crate::api::tidemark::{AccessMode, Location};
use crate::volumes::fs::RepoPassword;
use crate::volumes::podvolume::{PodVolumeSettings, prune_all};

/// Default period between two maintenance runs: one week.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

/// The maintenance period from `TIDEMARK_REPO_MAINTENANCE_PERIOD` (default one week; an
/// invalid value is logged and the default kept).
fn period() -> Duration {
    match std::env::var("TIDEMARK_REPO_MAINTENANCE_PERIOD") {
        Ok(v) => crate::plan::expiry::duration(v.trim()).unwrap_or_else(|e| {
            tracing::warn!("TIDEMARK_REPO_MAINTENANCE_PERIOD {v:?}: {e}; using 168h");
            DEFAULT_PERIOD
        }),
        Err(_) => DEFAULT_PERIOD,
    }
}

/// One maintenance pass over the Locations of the controller's namespace.
async fn pass(ctx: &Context, password: &RepoPassword) {
    let locations = match ctx.api::<Location>().list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            tracing::warn!("repository maintenance: list Locations: {e}");
            return;
        }
    };
    for loc in locations {
        if loc.spec.access_mode == AccessMode::ReadOnly {
            continue;
        }
        let name = loc.name_any();
        let store = match super::store_for_in(&ctx.client, &ctx.namespace, &loc).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(location = %name, "repository maintenance: {e}");
                continue;
            }
        };
        match prune_all(&store, password).await {
            Ok(pruned) if pruned.is_empty() => {}
            Ok(pruned) => {
                tracing::info!(location = %name, repositories = %pruned.join(","), "pruned");
            }
            Err(e) => tracing::warn!(location = %name, "repository maintenance: {e}"),
        }
    }
}

/// Runs maintenance passes forever (first one after one period).
pub async fn run(ctx: Arc<Context>) {
    let Some(file) = PodVolumeSettings::from_env().password_file else {
        tracing::info!("no TIDEMARK_REPO_PASSWORD_FILE: restic repository maintenance is off");
        return;
    };
    let every = period();
    loop {
        tokio::time::sleep(every).await;
        match RepoPassword::from_file(&file) {
            Ok(pw) => pass(&ctx, &pw).await,
            Err(e) => tracing::warn!("repository maintenance: {e}"),
        }
    }
}
