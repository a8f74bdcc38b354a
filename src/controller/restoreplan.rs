//! RestorePlan controller: a reviewed restore that runs once per distinct spec. The spec's hash
//! is recorded in the plan's status and, through the Restore record's labels, in the store
//! (`restores/<name>/tidemark-restore.json`), so re-applying the same manifest (Argo CD
//! self-heal) or re-creating it in a rebuilt cluster does not restore again. Before running, the
//! plan's status shows the preview: objects to create, update, skip or conflict with.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::stores::{self, LocationProblem};
use super::{Context, PLAN_HASH_LABEL, PLAN_LABEL, apply_status};
use crate::api::conditions::Health;
use crate::api::tidemark::{Restore, RestorePlan, RestoreSpec};
use crate::plan::restore_plan::{PlanDecision, decide, restore_name, spec_hash};
use crate::restore;
use crate::store::{Store, StoreError, layout};

/// Hashes already run for `plan`, from the store's restore records: hash → restore name.
async fn ran_in_store(store: &Store, plan: &str) -> Result<BTreeMap<String, String>, StoreError> {
    let mut out = BTreeMap::new();
    // A store that cannot be listed or read says nothing about what ran: that is an error, never
    // "not run" (which would restore again).
    for n in store.list_restores().await? {
        let path = store.layout().restore_file(&n, layout::RESTORE_RECORD_FILE);
        let bytes = match store.get(&path).await {
            Ok(b) => b,
            // A folder without its record: a restore still running, or one that never finished.
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let Ok(rec) = serde_json::from_slice::<crate::api::velero::Restore>(&bytes) else {
            continue;
        };
        let labels = rec.metadata.labels.unwrap_or_default();
        if labels.get(PLAN_LABEL).map(String::as_str) == Some(plan)
            && let Some(h) = labels.get(PLAN_HASH_LABEL)
        {
            out.insert(h.clone(), n);
        }
    }
    Ok(out)
}

/// Reports `health` (with the plan's status so far) and tries again in 30 s: the location,
/// store or backup the plan needs is not there yet.
async fn retry_later(
    api: &Api<RestorePlan>,
    p: &RestorePlan,
    keep: serde_json::Value,
    health: Health,
) -> Result<Action, kube::Error> {
    let conditions = p.status.clone().unwrap_or_default().conditions;
    apply_status(api, p, &conditions, keep, &health).await?;
    Ok(Action::requeue(std::time::Duration::from_secs(30)))
}

fn health_of(phase: Option<&str>, restore: &str) -> Health {
    match phase {
        Some("Completed") => Health::Ready {
            reason: "Restored".into(),
            message: format!("restore {restore} completed"),
        },
        Some("PartiallyFailed") => Health::Stalled {
            reason: "PartiallyFailed".into(),
            message: format!("restore {restore} partially failed"),
        },
        Some("Failed") | Some("FailedValidation") => Health::Stalled {
            reason: "RestoreFailed".into(),
            message: format!("restore {restore} failed"),
        },
        _ => Health::Reconciling {
            reason: "Restoring".into(),
            message: format!("restore {restore} is running"),
        },
    }
}

async fn reconcile(p: Arc<RestorePlan>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let api: Api<RestorePlan> = ctx.api();
    let name = p.name_any();
    let st = p.status.clone().unwrap_or_default();
    let hash = spec_hash(&p.spec.template);
    let keep = json!({"specHash": st.spec_hash, "restoreName": st.restore_name, "phase": st.phase, "preview": st.preview});
    let (_, store) = match stores::open(&ctx, p.spec.template.location.as_deref()).await {
        Ok(x) => x,
        Err(LocationProblem::Kube(e)) => return Err(e),
        Err(e) => {
            return retry_later(
                &api,
                p.as_ref(),
                keep,
                Health::Stalled {
                    reason: "LocationNotFound".into(),
                    message: format!("spec.template.location: {e}"),
                },
            )
            .await;
        }
    };
    let ran = match ran_in_store(&store, &name).await {
        Ok(r) => r,
        Err(e) => {
            return retry_later(
                &api,
                p.as_ref(),
                keep,
                Health::NotReady {
                    reason: "StoreUnavailable".into(),
                    message: format!(
                        "cannot tell whether this spec was restored already (nothing is restored until it can): {e}"
                    ),
                },
            )
            .await;
        }
    };
    let restores: Api<Restore> = ctx.api();
    match decide(
        &hash,
        st.spec_hash.as_deref(),
        st.restore_name.as_deref(),
        &ran,
    ) {
        PlanDecision::AlreadyRan { restore } => {
            let restore = restore
                .or_else(|| ran.get(&hash).cloned())
                .unwrap_or_else(|| restore_name(&name, &hash));
            let phase = match restores.get_opt(&restore).await? {
                Some(r) => r.status.and_then(|s| s.phase),
                // Ran in another (earlier) cluster: the store says so.
                None => Some("Completed".to_string()),
            };
            // The watch cache may not hold the preview written when the restore started yet:
            // read it from the API server rather than write it away.
            let preview = match &st.preview {
                Some(pv) => Some(pv.clone()),
                None => api.get(&name).await?.status.and_then(|s| s.preview),
            };
            apply_status(&api, p.as_ref(), &st.conditions,
                json!({"specHash": hash, "restoreName": restore, "phase": phase, "preview": preview}),
                &health_of(phase.as_deref(), &restore)).await?;
            Ok(Action::await_change())
        }
        PlanDecision::Run => {
            let backup = match super::requests::resolve_backup(&store, &p.spec.template).await {
                Ok(b) => b,
                Err(m) => {
                    return retry_later(
                        &api,
                        p.as_ref(),
                        keep,
                        Health::Stalled {
                            reason: "BackupNotFound".into(),
                            message: m,
                        },
                    )
                    .await;
                }
            };
            let rname = restore_name(&name, &hash);
            let labels = BTreeMap::from([
                (PLAN_LABEL.to_string(), name.clone()),
                (PLAN_HASH_LABEL.to_string(), hash.clone()),
            ]);
            let req = match super::requests::restore_request(
                &ctx,
                &rname,
                &backup,
                &p.spec.template,
                labels.clone(),
            )
            .await
            {
                Ok(r) => r,
                Err(m) => {
                    apply_status(
                        &api,
                        p.as_ref(),
                        &st.conditions,
                        keep,
                        &Health::Stalled {
                            reason: "InvalidSpec".into(),
                            message: m,
                        },
                    )
                    .await?;
                    return Ok(Action::await_change());
                }
            };
            let settings = restore::Settings {
                concurrency: ctx.concurrency,
                max_concurrency: ctx.max_concurrency,
                budget: ctx.budget.clone(),
                wait_timeout: std::time::Duration::from_secs(120),
                pod_volumes: crate::volumes::podvolume::PodVolumeSettings::from_env(),
            };
            let preview = match restore::dry_run(&ctx.client, &store, &req, &settings).await {
                Ok(pv) => json!({"create": pv.create.len(), "update": pv.update.len(),
                                 "skip": pv.skip.len() + pv.skipped_by_rule as usize, "conflict": pv.conflict.len()}),
                Err(e) => {
                    apply_status(
                        &api,
                        p.as_ref(),
                        &st.conditions,
                        keep,
                        &Health::Stalled {
                            reason: "PreviewFailed".into(),
                            message: e.to_string(),
                        },
                    )
                    .await?;
                    return Ok(Action::requeue(std::time::Duration::from_secs(60)));
                }
            };
            let mut template = p.spec.template.clone();
            template.backup_name = Some(backup.clone());
            template.schedule_name = None;
            let mut rec = Restore::new(
                &rname,
                RestoreSpec {
                    template,
                    plan: Some(name.clone()),
                },
            );
            rec.metadata.namespace = Some(ctx.namespace.clone());
            rec.metadata.labels = Some(labels);
            rec.metadata.owner_references = Some(vec![OwnerReference {
                api_version: RestorePlan::api_version(&()).into(),
                kind: RestorePlan::kind(&()).into(),
                name: name.clone(),
                uid: p.uid().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: Some(false),
            }]);
            match restores.create(&PostParams::default(), &rec).await {
                Ok(_) => {
                    tracing::info!(plan = %name, restore = %rname, "restore plan started a restore")
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
            apply_status(
                &api,
                p.as_ref(),
                &st.conditions,
                json!({"specHash": hash, "restoreName": rname, "phase": "New", "preview": preview}),
                &Health::Reconciling {
                    reason: "Restoring".into(),
                    message: format!("restore {rname} of backup {backup} started"),
                },
            )
            .await?;
            Ok(Action::await_change())
        }
    }
}

/// Runs the RestorePlan controller (also woken by its Restore records).
pub async fn run(ctx: Arc<Context>) {
    let api: Api<RestorePlan> = ctx.api();
    let restores: Api<Restore> = ctx.api();
    let controller =
        Controller::new(api, watcher::Config::default()).owns(restores, watcher::Config::default());
    super::errors::drive(controller, ctx, reconcile).await;
}
