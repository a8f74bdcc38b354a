//! Restore controller: runs new Restore records with the restore engine and reports Velero's
//! phases and counters.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;

use super::location::{self, LocationProblem};
use super::progress::{PROGRESS_INTERVAL, ProgressWriter, restore_progress};
use super::{Context, PLAN_HASH_LABEL, PLAN_LABEL, apply_status, now_rfc3339};
use crate::api::conditions::Health;
use crate::api::tidemark::{Restore, RestoreSpecTemplate};
use crate::cluster::selector::LabelMatcher;
use crate::restore::{self, ExistingPolicy, RestoreRequest};
use crate::store::Store;

/// Builds an engine request from a template (the backup resolved already); errors name the
/// field at fault.
///
/// # Errors
/// A `spec.template.<field>: <reason>` message.
pub async fn request_from_template(
    ctx: &Context,
    name: &str,
    backup: &str,
    t: &RestoreSpecTemplate,
    labels: BTreeMap<String, String>,
) -> Result<RestoreRequest, String> {
    request_from_template_in(&ctx.client, &ctx.namespace, name, backup, t, labels).await
}

/// `request_from_template` without a controller [`Context`]: the `resourceModifier`
/// ConfigMap is read from `namespace` (the records' namespace) with `client`. Reads only.
///
/// # Errors
/// A `spec.template.<field>: <reason>` message.
pub async fn request_from_template_in(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    backup: &str,
    t: &RestoreSpecTemplate,
    labels: BTreeMap<String, String>,
) -> Result<RestoreRequest, String> {
    let selector = match &t.label_selector {
        Some(ls) => Some(
            LabelMatcher::new(ls)
                .map_err(|e| format!("spec.template.labelSelector: {e}"))?
                .to_query(),
        ),
        None => None,
    };
    let mut or_selectors = Vec::new();
    for (i, ls) in t.or_label_selectors.iter().enumerate() {
        or_selectors.push(
            LabelMatcher::new(ls)
                .map_err(|e| format!("spec.template.orLabelSelectors[{i}]: {e}"))?
                .to_query(),
        );
    }
    let existing_policy = match t.existing_resource_policy.as_deref() {
        None | Some("none") => ExistingPolicy::None,
        Some("update") => ExistingPolicy::Update,
        Some(other) => {
            return Err(format!(
                "spec.template.existingResourcePolicy: {other:?} is not none or update"
            ));
        }
    };
    let modifiers = match &t.resource_modifier {
        None => None,
        Some(cm) => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let found = api
                .get_opt(cm)
                .await
                .map_err(|e| format!("spec.template.resourceModifier: {e}"))?
                .ok_or_else(|| {
                    format!(
                        "spec.template.resourceModifier: ConfigMap {cm} not found in {namespace}"
                    )
                })?;
            Some(Arc::new(
                restore::modifiers::ResourceModifiers::from_config_map_data(
                    &found.data.unwrap_or_default(),
                )
                .map_err(|e| format!("spec.template.resourceModifier: ConfigMap {cm}: {e}"))?,
            ))
        }
    };
    for (src, dst) in &t.namespace_mapping {
        restore::parse_mappings(&format!("{src}:{dst}"))
            .map_err(|e| format!("spec.template.namespaceMapping: {e}"))?;
    }
    let hooks = t.hooks.clone().unwrap_or_default();
    hooks
        .validate("spec.template.hooks")
        .map_err(|e| e.to_string())?;
    Ok(RestoreRequest {
        name: name.into(),
        record_namespace: namespace.to_string(),
        backup: backup.into(),
        include_namespaces: t.included_namespaces.clone(),
        exclude_namespaces: t.excluded_namespaces.clone(),
        include_resources: t.included_resources.clone(),
        exclude_resources: t.excluded_resources.clone(),
        include_cluster_resources: t.include_cluster_resources,
        namespace_mappings: t.namespace_mapping.clone(),
        selector,
        or_selectors,
        existing_policy,
        preserve_node_ports: t.preserve_node_ports.unwrap_or(false),
        restore_pvs: t.restore_p_vs,
        status_include: t
            .restore_status
            .clone()
            .unwrap_or_default()
            .included_resources,
        status_exclude: t
            .restore_status
            .clone()
            .unwrap_or_default()
            .excluded_resources,
        modifiers,
        labels,
        hooks,
        no_hooks: false,
    })
}

/// Resolves which backup a template restores (a name, or the latest of a schedule).
///
/// # Errors
/// A message naming the field.
pub async fn resolve_backup(store: &Store, t: &RestoreSpecTemplate) -> Result<String, String> {
    match (&t.backup_name, &t.schedule_name) {
        (Some(b), None) => Ok(b.clone()),
        (None, Some(s)) => restore::latest_of_schedule(store, s, false)
            .await
            .map_err(|e| format!("spec.template.scheduleName: {e}")),
        _ => Err("spec.template: exactly one of backupName and scheduleName must be set".into()),
    }
}

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
    let (_, store) = match location::open(&ctx, r.spec.template.location.as_deref()).await {
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
    let backup = match resolve_backup(&store, &r.spec.template).await {
        Ok(b) => b,
        Err(m) => return fail(&api, &r, "FailedValidation", "BackupNotFound", m).await,
    };
    let labels: BTreeMap<String, String> = r
        .labels()
        .iter()
        .filter(|(k, _)| k.as_str() == PLAN_LABEL || k.as_str() == PLAN_HASH_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let req = match request_from_template(&ctx, &name, &backup, &r.spec.template, labels).await {
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
    Controller::new(api, watcher::Config::default())
        .run(
            |o, c| super::errors::reconciled(o, c, reconcile),
            super::errors::error_policy,
            ctx,
        )
        .for_each(|_| futures::future::ready(()))
        .await;
}
