//! Backup controller: runs new Backup records with the backup engine, reports Velero's phases and
//! counters, and expires backups whose TTL has passed (deleting the store folder, the restores
//! made from it, then the record; refused on a read-only or unavailable location).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use super::progress::{PROGRESS_INTERVAL, ProgressWriter, backup_final_progress, backup_progress};
use super::stores::{self, LocationProblem};
use super::{Context, FIELD_MANAGER, LOCATION_LABEL, SYNCED_ANNOTATION, apply_status, now_rfc3339};
use crate::api::conditions::Health;
use crate::api::tidemark::{Backup, Restore};
use crate::api::velero;
use crate::backup::delete::DeleteError;
use crate::backup::{self};
use crate::store::Store;

fn phase(b: &Backup) -> Option<&str> {
    b.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn schedule_of(b: &Backup) -> String {
    b.spec.schedule.clone().unwrap_or_default()
}

async fn fail(
    api: &Api<Backup>,
    b: &Backup,
    phase: &str,
    reason: &str,
    message: String,
) -> Result<Action, kube::Error> {
    let existing = b.status.clone().unwrap_or_default().conditions;
    apply_status(
        api,
        b,
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

async fn start(b: Arc<Backup>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let api: Api<Backup> = ctx.api();
    let name = b.name_any();
    let sched = schedule_of(&b);
    let (loc, store) = match stores::open(&ctx, b.spec.template.location.as_deref()).await {
        Ok(x) => x,
        Err(LocationProblem::Kube(e)) => return Err(e),
        Err(e) => {
            return fail(
                &api,
                &b,
                "FailedValidation",
                "LocationNotFound",
                format!("spec.template.location: {e}"),
            )
            .await;
        }
    };
    let loc_name = loc.name_any();
    if store.is_read_only() {
        return fail(&api, &b, "FailedValidation", "LocationReadOnly",
            format!("spec.template.location: Location {loc_name} is ReadOnly; backups cannot be written to it")).await;
    }
    let mut req =
        match super::requests::backup_request(&name, &ctx.namespace, &b.spec.template, &loc_name) {
            Ok(r) => r,
            Err(m) => return fail(&api, &b, "FailedValidation", "InvalidSpec", m).await,
        };
    let template_says = b
        .spec
        .template
        .volumes
        .as_ref()
        .and_then(|v| v.default_volumes_to_fs_backup);
    if template_says.is_none() {
        req.volumes.default_volumes_to_fs_backup = ctx.default_volumes_to_fs_backup;
    }
    let mut labels: BTreeMap<String, String> =
        crate::plan::labels::inheritable_labels(&b.labels().clone());
    labels.insert(LOCATION_LABEL.into(), loc_name.clone());
    labels.insert(velero::STORAGE_LOCATION_LABEL.into(), loc_name.clone());
    if !sched.is_empty() {
        labels.insert(velero::SCHEDULE_NAME_LABEL.into(), sched.clone());
    }
    req.labels = labels.clone();
    // The record carries its location so sync and expiry find it.
    api.patch_metadata(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(json!({"apiVersion": "tidemark.dev/v1alpha1", "kind": "Backup", "metadata": {"labels": {LOCATION_LABEL: loc_name, velero::STORAGE_LOCATION_LABEL: loc_name}}})),
    )
    .await?;
    let existing = b.status.clone().unwrap_or_default().conditions;
    let started = now_rfc3339();
    apply_status(
        &api,
        b.as_ref(),
        &existing,
        json!({"phase": "InProgress", "startTimestamp": started}),
        &Health::Reconciling {
            reason: "InProgress".into(),
            message: format!("backing up to location {loc_name}"),
        },
    )
    .await?;
    ctx.metrics.backup_total.with_label_values(&[&sched]).inc();
    ctx.event(
        b.as_ref(),
        false,
        "BackupStarted",
        format!("backing up to location {loc_name}"),
    )
    .await;
    let settings = backup::Settings {
        page_size: 500,
        concurrency: ctx.concurrency,
        budget: ctx.budget.clone(),
    };
    let progress = Arc::new(backup::Progress::default());
    let writer = ProgressWriter::start(api.clone(), name.clone(), PROGRESS_INTERVAL, {
        let progress = progress.clone();
        move || backup_progress(&progress)
    });
    let result = backup::run(&ctx.client, &store, &req, &settings, &progress).await;
    // No progress write after this point: the final status below carries the final progress.
    writer.stop().await;
    let b = api.get(&name).await?;
    let existing = b.status.clone().unwrap_or_default().conditions;
    match result {
        Ok(out) => {
            let phase = out.record.phase().to_string();
            ctx.metrics
                .backup_duration
                .with_label_values(&[&sched])
                .observe(out.duration.as_secs_f64());
            ctx.metrics
                .backup_items
                .with_label_values(&[&sched])
                .set(out.meta.items as f64);
            let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            };
            let status = json!({
                "phase": phase,
                "startTimestamp": started,
                "completionTimestamp": ts(out.record.status.completion_timestamp),
                "expiration": ts(out.record.status.expiration),
                "itemsBackedUp": out.meta.items,
                "progress": backup_final_progress(out.meta.items),
                "warnings": out.results.warnings.len(),
                "errors": out.results.errors.len(),
                "archiveBytes": out.meta.archive_bytes,
                "hookStatus": crate::hooks::HookStatus::of(&out.hooks),
            });
            let health = if phase == "Completed" {
                ctx.metrics
                    .backup_success
                    .with_label_values(&[&sched])
                    .inc();
                ctx.metrics
                    .backup_last_success
                    .with_label_values(&[&sched])
                    .set(chrono::Utc::now().timestamp() as f64);
                Health::Ready {
                    reason: "Completed".into(),
                    message: format!("{} items backed up", out.meta.items),
                }
            } else {
                ctx.metrics
                    .backup_partial
                    .with_label_values(&[&sched])
                    .inc();
                let first = out
                    .results
                    .errors
                    .velero
                    .first()
                    .or(out.results.errors.cluster.first())
                    .or_else(|| out.results.errors.namespaces.values().flatten().next())
                    .cloned()
                    .unwrap_or_default();
                Health::Stalled {
                    reason: "PartiallyFailed".into(),
                    message: format!("{} errors; first: {first}", out.results.errors.len()),
                }
            };
            let warning = phase != "Completed";
            ctx.event(
                &b,
                warning,
                &phase,
                format!(
                    "backup {phase}: {} items, {} errors",
                    out.meta.items,
                    out.results.errors.len()
                ),
            )
            .await;
            apply_status(&api, &b, &existing, status, &health).await?;
            if let Some(v) = &b.spec.verify {
                drill(&ctx, &api, &name, &sched, &store, v).await?;
            }
            Ok(Action::requeue(Duration::from_secs(60)))
        }
        Err(e) => {
            ctx.metrics
                .backup_failure
                .with_label_values(&[&sched])
                .inc();
            fail(&api, &b, "Failed", "BackupFailed", e.to_string()).await
        }
    }
}

/// The `Verified` condition (`True` when the drill found every object, else `False` with the
/// first missing ones), beside kstatus' conditions.
fn verified_condition(
    existing: &[Condition],
    verified: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Vec<Condition> {
    let status = if verified { "True" } else { "False" };
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| c.type_ != "Verified")
        .cloned()
        .collect();
    let previous = existing.iter().find(|c| c.type_ == "Verified");
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now())
        }
    };
    out.push(Condition {
        type_: "Verified".into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time,
    });
    out
}

/// The cluster a restore drill runs in: the controller's own, or the one of
/// `spec.verify.kubeconfigSecretRef`.
struct DrillCluster {
    /// Its client.
    client: kube::Client,
    /// The request budget of the drill's requests to it.
    budget: crate::cluster::Budget,
    /// `Secret <ns>/<name> key "<key>"` for a cluster given by a kubeconfig Secret; `None`
    /// for the controller's own.
    secret: Option<String>,
}

/// The drill's cluster for `v`: the controller's own, or a client made from the kubeconfig in
/// `spec.verify.kubeconfigSecretRef` (read from the controller's namespace; its budget chosen as
/// the controller's was: the server's `--client-qps`/`--client-burst`, else none where that
/// cluster has API Priority and Fairness), checked to answer.
///
/// # Errors
/// A message naming `spec.verify.kubeconfigSecretRef` and the Secret and key (never their
/// content): the Secret or key missing or unreadable, not a kubeconfig, or the cluster not
/// answering.
async fn drill_cluster(
    ctx: &Context,
    v: &crate::api::tidemark::VerifySpec,
) -> Result<DrillCluster, String> {
    let Some(r) = &v.kubeconfig_secret_ref else {
        return Ok(DrillCluster {
            client: ctx.client.clone(),
            budget: ctx.budget.clone(),
            secret: None,
        });
    };
    let field = "spec.verify.kubeconfigSecretRef";
    let secret = format!("Secret {}/{} key {:?}", ctx.namespace, r.name, r.key);
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let found = api.get_opt(&r.name).await.map_err(|e| {
        format!(
            "{field}: cannot read Secret {}/{}: {}",
            ctx.namespace,
            r.name,
            crate::cluster::describe(&e)
        )
    })?;
    let found = found.ok_or_else(|| {
        format!(
            "{field}: Secret {} not found in namespace {}",
            r.name, ctx.namespace
        )
    })?;
    let bytes = found
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .ok_or_else(|| {
            format!(
                "{field}: Secret {}/{} has no key {:?}",
                ctx.namespace, r.name, r.key
            )
        })?;
    let text = std::str::from_utf8(&bytes.0)
        .map_err(|_| format!("{field}: {secret} is not text (a kubeconfig is YAML)"))?;
    let client = crate::cluster::connect_kubeconfig(text, None)
        .await
        .map_err(|e| format!("{field}: {secret}: {e}"))?;
    client.apiserver_version().await.map_err(|e| {
        format!(
            "{field}: the cluster of {secret} does not answer: {}",
            crate::cluster::describe(&e)
        )
    })?;
    let budget = crate::cluster::Budget::choose(&client, ctx.client_qps, ctx.client_burst)
        .await
        .map_err(|e| format!("{field}: {secret}: {e}"))?;
    Ok(DrillCluster {
        client,
        budget,
        secret: Some(secret),
    })
}

/// Runs a completed backup's restore drill ([`crate::restore::verify`]) — in the controller's
/// cluster, or in the one of `spec.verify.kubeconfigSecretRef` — and records the result:
/// `status.verification`, the `Verified` condition, an event and
/// `tidemark_backup_verification_total`. A drill that cannot run is `Verified=False` with the
/// reason (`InvalidVerifySpec` for an empty prefix in the controller's own cluster,
/// `DrillClusterUnavailable` when the drill cluster's kubeconfig Secret cannot be used,
/// `DrillFailed` when the drill itself fails); the backup itself stays as it is.
///
/// # Errors
/// The API error of the status write.
async fn drill(
    ctx: &Context,
    api: &Api<Backup>,
    name: &str,
    schedule: &str,
    store: &Store,
    v: &crate::api::tidemark::VerifySpec,
) -> Result<(), kube::Error> {
    use crate::restore::verify;
    let namespace_prefix = v
        .namespace_prefix
        .clone()
        .unwrap_or_else(|| "drill-".into());
    let separate_cluster = v.kubeconfig_secret_ref.is_some();
    let outcome = match verify::check_namespace_prefix(&namespace_prefix, separate_cluster) {
        Err(e) => Err((
            "InvalidVerifySpec",
            format!("spec.verify.namespacePrefix: {e}"),
        )),
        Ok(()) => match drill_cluster(ctx, v).await {
            Err(message) => Err(("DrillClusterUnavailable", message)),
            Ok(cluster) => {
                let settings = crate::restore::Settings {
                    concurrency: ctx.concurrency,
                    max_concurrency: ctx.max_concurrency,
                    budget: cluster.budget.clone(),
                    wait_timeout: Duration::from_secs(120),
                    pod_volumes: crate::volumes::podvolume::PodVolumeSettings::from_env(),
                };
                let req = verify::VerifyRequest {
                    backup: name.to_string(),
                    restore_name: format!("{}-verify", crate::plan::fit_name(name, 56)),
                    record_namespace: ctx.namespace.clone(),
                    namespace_prefix,
                    keep: false,
                    separate_cluster,
                };
                verify::verify(
                    &cluster.client,
                    store,
                    &req,
                    &settings,
                    &crate::restore::Counters::default(),
                )
                .await
                .map(|o| (o, cluster.secret.clone()))
                .map_err(|e| {
                    let place = match &cluster.secret {
                        Some(s) => format!("in the cluster of {s}: "),
                        None => String::new(),
                    };
                    ("DrillFailed", format!("{place}{e}"))
                })
            }
        },
    };
    let b = api.get(name).await?;
    let st = b.status.clone().unwrap_or_default();
    let health = match st.phase.as_deref() {
        Some("Completed") => Health::Ready {
            reason: "Completed".into(),
            message: format!("{} items backed up", st.items_backed_up.unwrap_or(0)),
        },
        _ => Health::Stalled {
            reason: "PartiallyFailed".into(),
            message: "the backup is PartiallyFailed".into(),
        },
    };
    let (verified, reason, message, verification, result) = match outcome {
        Ok((o, secret)) => {
            let first = |v: &[String]| v.iter().take(20).cloned().collect::<Vec<_>>();
            let ok = o.verified();
            (
                ok,
                if ok {
                    "RestoreDrill"
                } else {
                    "ObjectsNotRestored"
                },
                match secret {
                    Some(s) => format!("{} (in the cluster of {s})", o.summary()),
                    None => o.summary(),
                },
                Some(crate::api::tidemark::VerificationStatus {
                    verified: ok,
                    equal: o.verified as i64,
                    missing: first(&o.missing),
                    different: first(&o.different),
                    completion_timestamp: Some(now_rfc3339()),
                }),
                if ok { "verified" } else { "not_verified" },
            )
        }
        Err((reason, message)) => (false, reason, message, None, "failed"),
    };
    ctx.metrics
        .backup_verification
        .with_label_values(&[schedule, result])
        .inc();
    ctx.event(&b, !verified, "Verified", message.clone()).await;
    let conditions = verified_condition(
        &st.conditions,
        verified,
        reason,
        message,
        b.metadata.generation,
    );
    let mut status = json!({});
    if let Some(v) = verification {
        status["verification"] = json!(v);
    }
    apply_status(api, &b, &conditions, status, &health).await
}

/// Leaves an expired backup in place, `NotReady` with `reason` and `message` (its phase kept),
/// and retries after `retry_secs` seconds.
async fn keep_expired(
    api: &Api<Backup>,
    b: &Backup,
    existing: &[Condition],
    keep: serde_json::Value,
    reason: &str,
    message: String,
    retry_secs: u64,
) -> Result<Action, kube::Error> {
    apply_status(
        api,
        b,
        existing,
        keep,
        &Health::NotReady {
            reason: reason.into(),
            message,
        },
    )
    .await?;
    Ok(Action::requeue(Duration::from_secs(retry_secs)))
}

/// Expires a backup: store folder, its restores, then the record.
async fn expire(b: &Backup, ctx: &Context) -> Result<Action, kube::Error> {
    let api: Api<Backup> = ctx.api();
    let name = b.name_any();
    let existing = b.status.clone().unwrap_or_default().conditions;
    let keep = json!({"phase": phase(b)});
    let (loc, store): (_, Store) =
        match stores::open(ctx, b.spec.template.location.as_deref()).await {
            Ok(x) => x,
            Err(LocationProblem::Kube(e)) => return Err(e),
            Err(e) => {
                return keep_expired(
                    &api,
                    b,
                    &existing,
                    keep,
                    "ExpiryBlocked",
                    format!("expired, but cannot be deleted: {e}"),
                    300,
                )
                .await;
            }
        };
    if store.is_read_only() {
        return keep_expired(
            &api,
            b,
            &existing,
            keep,
            "ExpiryBlocked",
            format!(
                "expired, but Location {} is ReadOnly: nothing is deleted from it",
                loc.name_any()
            ),
            300,
        )
        .await;
    }
    if let Err(e) = store.check().await {
        return keep_expired(
            &api,
            b,
            &existing,
            keep,
            "ExpiryBlocked",
            format!(
                "expired, but Location {} is unavailable: {e}",
                loc.name_any()
            ),
            60,
        )
        .await;
    }
    // A backup under S3 Object Lock stays as it is (restorable) until its retention ends.
    match crate::backup::delete::check_retention(&store, &name).await {
        Ok(()) => {}
        Err(DeleteError::Retained {
            mode,
            until,
            until_time,
            ..
        }) => {
            let wait = (until_time - chrono::Utc::now())
                .to_std()
                .unwrap_or_default()
                .as_secs()
                .clamp(1, 3600)
                + 1;
            return keep_expired(
                &api,
                b,
                &existing,
                keep,
                "Retained",
                format!(
                    "expired, but under S3 Object Lock ({mode}) until {until}: deleted after that"
                ),
                wait,
            )
            .await;
        }
        Err(e) => {
            return keep_expired(
                &api,
                b,
                &existing,
                keep,
                "ExpiryBlocked",
                format!("expired, but its retention cannot be read: {e}"),
                60,
            )
            .await;
        }
    }
    // Record first goes Deleting so nothing else starts from it (a Schedule's retention has
    // already set it, with its own reason).
    if phase(b) != Some("Deleting") {
        apply_status(
            &api,
            b,
            &existing,
            json!({"phase": "Deleting"}),
            &Health::Reconciling {
                reason: "Expired".into(),
                message: "TTL passed; deleting".into(),
            },
        )
        .await?;
    }
    // The Restores made from it; their store folders go with the backup.
    let restores: Api<Restore> = ctx.api();
    for r in restores.list(&ListParams::default()).await? {
        if r.spec.template.backup_name.as_deref() == Some(name.as_str()) {
            let _ = restores
                .delete(&r.name_any(), &DeleteParams::default())
                .await;
        }
    }
    match crate::backup::delete::delete_backup(
        Some(&ctx.client),
        &store,
        &name,
        &b.namespace().unwrap_or_default(),
        &crate::volumes::podvolume::PodVolumeSettings::from_env(),
    )
    .await
    {
        Ok(d) => {
            for w in &d.warnings {
                tracing::warn!(backup = %name, "{w}");
            }
            tracing::info!(
                backup = %name,
                objects = d.objects,
                csi_snapshots = d.csi_snapshots,
                restic_snapshots = d.restic_snapshots,
                "deleted from the location"
            );
        }
        Err(e @ (DeleteError::Retained { .. } | DeleteError::CsiSnapshots { .. })) => {
            return keep_expired(
                &api,
                b,
                &existing,
                keep,
                "ExpiryBlocked",
                format!("expired, but not deleted: {e}"),
                60,
            )
            .await;
        }
        Err(e) => {
            return keep_expired(&api, b, &existing, keep, "ExpiryFailed", e.to_string(), 60).await;
        }
    }
    api.delete(&name, &DeleteParams::default()).await?;
    ctx.metrics
        .backup_expired
        .with_label_values(&[&loc.name_any()])
        .inc();
    tracing::info!(backup = %name, "expired and deleted");
    Ok(Action::await_change())
}

async fn reconcile(b: Arc<Backup>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    use crate::plan::expiry::{BackupDecision, decide_backup};
    let expiration = b
        .status
        .as_ref()
        .and_then(|s| s.expiration.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let now = chrono::Utc::now();
    match decide_backup(
        phase(&b),
        b.annotations().contains_key(SYNCED_ANNOTATION),
        b.metadata.deletion_timestamp.is_some(),
        expiration,
        now,
    ) {
        BackupDecision::Start => start(b, ctx).await,
        BackupDecision::AwaitSync => Ok(Action::requeue(Duration::from_secs(5))),
        BackupDecision::Wait => Ok(Action::await_change()),
        BackupDecision::Expire => expire(&b, &ctx).await,
        BackupDecision::ExpireAt(t) => Ok(Action::requeue(
            (t - now)
                .to_std()
                .unwrap_or_default()
                .min(Duration::from_secs(3600))
                + Duration::from_secs(1),
        )),
    }
}

/// Runs the Backup controller.
pub async fn run(ctx: Arc<Context>) {
    let api: Api<Backup> = ctx.api();
    let controller = Controller::new(api, watcher::Config::default());
    super::errors::drive(controller, ctx, reconcile).await;
}
