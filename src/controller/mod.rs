//! The in-cluster reconciler (`tidemark server`): kube-runtime controllers for Location,
//! BackupPolicy, Schedule, RestorePlan, Backup, Restore and GitSource in one namespace (`tidemark` by
//! default), sharing the engines with direct mode.
//!
//! Start-up: serve `/metrics`, `/healthz`, `/readyz`; optionally win a Lease (leader election);
//! mark records left `InProgress` by a crash `Failed`; then run every controller. Status is
//! written with server-side apply under the field manager [`FIELD_MANAGER`]; the progress of a
//! running backup or restore every [`PROGRESS_INTERVAL`] under [`PROGRESS_FIELD_MANAGER`].

mod backup;
mod cache;
pub mod errors;
mod gitsource;
mod leader;
mod location;
mod maintenance;
mod metrics;
mod policy;
mod progress;
mod records;
mod requests;
mod restore;
mod restoreplan;
mod schedule;
mod stores;

pub use leader::LEASE_NAME;
pub use metrics::Metrics;
pub use progress::{PROGRESS_FIELD_MANAGER, PROGRESS_INTERVAL};
pub use requests::{resolve_backup, restore_request_in};
pub use schedule::retention_candidates;
pub use stores::{LocationProblem, store_for_in};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};

use crate::api::conditions::Health;
use crate::api::tidemark::{Backup, Restore};
use crate::cluster::Budget;

pub use crate::report::object_status::{
    FIELD_MANAGER, apply_status, now_rfc3339, now_time, status_over,
};
/// Label on records naming their location.
pub const LOCATION_LABEL: &str = "tidemark.dev/location";
/// Label on Restore records naming the RestorePlan that created them.
pub const PLAN_LABEL: &str = "tidemark.dev/restore-plan";
/// Label on Restore records carrying the RestorePlan spec hash.
pub const PLAN_HASH_LABEL: &str = "tidemark.dev/spec-hash";
pub use crate::plan::sync::SYNCED_ANNOTATION;

/// Errors of the controller.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A Kubernetes request failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// The HTTP server could not start.
    #[error("cannot serve {what} on {address}: {source}")]
    Serve {
        /// metrics or health.
        what: &'static str,
        /// The address.
        address: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Leadership was lost; the process must stop so another replica takes over.
    #[error("leader election: {0}")]
    Leadership(String),
    /// A setting is invalid.
    #[error("{0}")]
    Config(String),
}

/// Server settings (`tidemark server` flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespace watched and where records live.
    pub namespace: String,
    /// `/metrics` address.
    pub metrics_address: SocketAddr,
    /// `/healthz` and `/readyz` address.
    pub health_address: SocketAddr,
    /// Take a Lease before reconciling.
    pub leader_elect: bool,
    /// This replica's identity in the Lease (pod name).
    pub identity: String,
    /// Client-side cap on requests per second of engine runs; `None` (with `burst` `None`):
    /// none where the API server has API Priority and Fairness, else 100 ([`Budget::choose`]).
    pub qps: Option<f32>,
    /// Burst above the cap.
    pub burst: Option<u32>,
    /// Concurrency of engine runs (resources listed / objects created at once to start with).
    pub concurrency: usize,
    /// The most objects a restore creates at once.
    pub max_concurrency: usize,
    /// Back up every pod volume by file system when a Backup's template does not say
    /// (`volumes.defaultVolumesToFsBackup` unset): Velero's server flag of the same name.
    pub default_volumes_to_fs_backup: bool,
}

/// State shared by the controllers.
pub struct Context {
    /// The cluster.
    pub client: Client,
    /// Namespace of the records.
    pub namespace: String,
    /// Metrics.
    pub metrics: Metrics,
    /// Request budget shared by engine runs.
    pub budget: Budget,
    /// The server's `--client-qps` ([`Config::qps`]), for clients of other clusters (restore
    /// drills into a cluster given by a kubeconfig Secret), whose budget is chosen as
    /// [`Context::budget`] was.
    pub client_qps: Option<f32>,
    /// The server's `--client-burst` ([`Config::burst`]), likewise.
    pub client_burst: Option<u32>,
    /// Engine concurrency.
    pub concurrency: usize,
    /// The most objects a restore creates at once.
    pub max_concurrency: usize,
    /// Set once the controllers run (readiness).
    pub ready: AtomicBool,
    /// The server's `--default-volumes-to-fs-backup`.
    pub default_volumes_to_fs_backup: bool,
    /// Consecutive reconcile failures per object (their retry backoff).
    pub failures: errors::Failures,
    /// Publishes Kubernetes events on transitions.
    pub recorder: kube::runtime::events::Recorder,
    /// Reflector caches of the Backup records and Locations.
    pub caches: cache::Caches,
}

impl Context {
    /// Publishes an event about `obj` (`Normal`, or `Warning` when `warning`); failures to
    /// publish are logged, never fatal.
    pub async fn event<K>(&self, obj: &K, warning: bool, reason: &str, note: String)
    where
        K: Resource<DynamicType = ()>,
    {
        use kube::runtime::events::{Event, EventType};
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::debug!("event not published: {e}");
        }
    }

    /// A typed API in the controller's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
}

/// Marks Backup and Restore records left `InProgress` by a previous process `Failed` — but a
/// Backup whose record the store holds completed, and gets its status from that record.
async fn recover(ctx: &Context) -> Result<(), ControllerError> {
    let backups: Api<Backup> = ctx.api();
    for b in backups.list(&ListParams::default()).await? {
        if b.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("InProgress") {
            let existing = b.status.clone().unwrap_or_default().conditions;
            // The run wrote its record before the restart: it completed, only its status was
            // not written.
            if let Some(record) = records::stored_record(ctx, &b).await {
                let (status, health) = records::status_from_record(
                    &record,
                    "Recovered",
                    "the backup completed before the controller restarted",
                );
                apply_status(&backups, &b, &existing, status, &health).await?;
                tracing::info!(backup = %b.name_any(), "completed before a restart: status recovered from the store");
                continue;
            }
            apply_status(
                &backups,
                &b,
                &existing,
                serde_json::json!({"phase": "Failed", "failureReason": "the controller restarted while the backup was running",
                                   "completionTimestamp": now_rfc3339()}),
                &Health::Stalled {
                    reason: "ControllerRestarted".into(),
                    message: "the controller restarted while the backup was running; nothing of it was kept".into(),
                },
            )
            .await?;
            // Whatever the interrupted run uploaded has no record: remove it.
            records::remove_partial(ctx, &b).await;
            tracing::warn!(backup = %b.name_any(), "marked Failed: interrupted by a restart");
        }
    }
    let restores: Api<Restore> = ctx.api();
    for r in restores.list(&ListParams::default()).await? {
        if r.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("InProgress") {
            let existing = r.status.clone().unwrap_or_default().conditions;
            apply_status(
                &restores,
                &r,
                &existing,
                serde_json::json!({"phase": "Failed", "failureReason": "the controller restarted while the restore was running",
                                   "completionTimestamp": now_rfc3339()}),
                &Health::Stalled {
                    reason: "ControllerRestarted".into(),
                    message: "the controller restarted while the restore was running".into(),
                },
            )
            .await?;
            tracing::warn!(restore = %r.name_any(), "marked Failed: interrupted by a restart");
        }
    }
    Ok(())
}

async fn serve_health(ctx: Arc<Context>, address: SocketAddr) -> Result<(), ControllerError> {
    use axum::routing::get;
    let ready_ctx = ctx.clone();
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ctx = ready_ctx.clone();
                async move {
                    if ctx.ready.load(Ordering::Relaxed) {
                        (axum::http::StatusCode::OK, "ok")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ControllerError::Serve {
            what: "health",
            address,
            source,
        })?;
    axum::serve(listener, app)
        .await
        .map_err(|source| ControllerError::Serve {
            what: "health",
            address,
            source,
        })
}

async fn serve_metrics(ctx: Arc<Context>, address: SocketAddr) -> Result<(), ControllerError> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let ctx = ctx.clone();
            async move { ctx.metrics.render() }
        }),
    );
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| ControllerError::Serve {
            what: "metrics",
            address,
            source,
        })?;
    axum::serve(listener, app)
        .await
        .map_err(|source| ControllerError::Serve {
            what: "metrics",
            address,
            source,
        })
}

/// Runs the controller until an error stops it (or leadership is lost).
///
/// # Errors
/// [`ControllerError`] from the servers, leader election or the start-up recovery.
pub async fn run(client: Client, config: Config) -> Result<(), ControllerError> {
    run_with(client, config, std::future::pending()).await
}

/// [`run`], with `alongside` (e.g. a Git source's reconcile loop) run by the leader next to the
/// controllers: it starts once leadership is held and stops with them.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    client: Client,
    config: Config,
    alongside: impl std::future::Future<Output = ()>,
) -> Result<(), ControllerError> {
    let budget = Budget::choose(&client, config.qps, config.burst)
        .await
        .map_err(|e| ControllerError::Config(e.to_string()))?;
    tracing::info!("client-side rate limit: {}", budget.describe());
    let (caches, fill_caches) = cache::Caches::start(&client, &config.namespace);
    let ctx = Arc::new(Context {
        client: client.clone(),
        namespace: config.namespace.clone(),
        metrics: Metrics::new(),
        budget,
        client_qps: config.qps,
        client_burst: config.burst,
        concurrency: config.concurrency.max(1),
        max_concurrency: config.max_concurrency.max(1),
        ready: AtomicBool::new(false),
        default_volumes_to_fs_backup: config.default_volumes_to_fs_backup,
        failures: errors::Failures::default(),
        recorder: kube::runtime::events::Recorder::new(
            client.clone(),
            kube::runtime::events::Reporter {
                controller: "tidemark".into(),
                instance: Some(config.identity.clone()),
            },
        ),
        caches,
    });
    let health = tokio::spawn(serve_health(ctx.clone(), config.health_address));
    let metrics = tokio::spawn(serve_metrics(ctx.clone(), config.metrics_address));
    // A standby replica is healthy and ready too; only the leader reconciles.
    ctx.ready.store(true, Ordering::Relaxed);
    let (lease, took_over_from) = if config.leader_elect {
        let won = leader::acquire(&client, &config.namespace, &config.identity).await?;
        (Some(won.holder), won.took_over_from)
    } else {
        (None, None)
    };
    let controllers = async {
        // The previous holder stopped renewing at least a lease duration ago by our clock; give
        // whatever it may still be finishing (it stops as soon as it cannot renew) one more
        // before its unfinished records are marked Failed and their partial files removed.
        if let Some(previous) = &took_over_from {
            tracing::info!(
                previous = %previous,
                "took the lease over: recovering its unfinished records in {:?}",
                leader::LEASE_DURATION
            );
            tokio::time::sleep(leader::LEASE_DURATION).await;
        }
        recover(&ctx).await?;
        tracing::info!(namespace = %config.namespace, "tidemark controller running");
        tokio::join!(
            location::run(ctx.clone()),
            policy::run(ctx.clone()),
            schedule::run(ctx.clone()),
            backup::run(ctx.clone()),
            restore::run(ctx.clone()),
            restoreplan::run(ctx.clone()),
            gitsource::run(ctx.clone()),
            maintenance::run(ctx.clone()),
            alongside,
            fill_caches,
        );
        Ok::<(), ControllerError>(())
    };
    let lost = async {
        match lease {
            Some(l) => l.hold().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = controllers => r,
        e = lost => Err(e),
        r = health => r.unwrap_or_else(|e| Err(ControllerError::Config(e.to_string()))),
        r = metrics => r.unwrap_or_else(|e| Err(ControllerError::Config(e.to_string()))),
    }
}
