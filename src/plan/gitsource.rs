//! What a `GitSource` reconcile does and reports (pure): whether to poll and whether to force
//! a re-apply of an unchanged revision ([`start`]), and, from what the pass found, the status,
//! health and next requeue ([`decide`]). The controller (`controller::gitsource`) carries it
//! out with the GitOps engine ([`crate::gitops`]).

use std::time::Duration;

use serde_json::{Value, json};

use crate::api::conditions::Health;
use crate::api::gitsource::{GitSource, Inventory};

/// Reason of `Ready=False` after a pass whose requests partly failed (retried soon).
pub const APPLY_FAILED: &str = "ReconciliationFailed";
/// Wait before retrying a pass whose requests failed (30 s).
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// How a reconcile starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// `spec.suspend`: nothing is polled or applied; only the generation and a
    /// `requestedAt` are acknowledged ([`suspended`]).
    Suspended {
        /// The `reconcile.fluxcd.io/requestedAt` value, if any.
        requested_at: Option<String>,
    },
    /// Poll the source.
    Poll {
        /// The revision not to apply again (`None`: apply whatever comes).
        since: Option<String>,
        /// The `reconcile.fluxcd.io/requestedAt` value to record as handled.
        requested_at: Option<String>,
    },
}

/// How a GitSource starts its reconcile: a new generation, a new `requestedAt` or a last pass
/// with failed requests apply the current revision again; otherwise an unchanged revision is
/// skipped.
pub fn start(gs: &GitSource) -> Start {
    let requested_at = gs
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::gitops::REQUESTED_AT_ANNOTATION))
        .cloned();
    if gs.spec.suspend {
        return Start::Suspended { requested_at };
    }
    let status = gs.status.clone().unwrap_or_default();
    let new_request = requested_at.is_some() && requested_at != status.last_handled_reconcile_at;
    let new_generation = status.observed_generation != gs.metadata.generation;
    let last_failed = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.reason == APPLY_FAILED);
    let since = if new_request || new_generation || last_failed {
        None
    } else {
        status.last_attempted_revision.clone()
    };
    Start::Poll {
        since,
        requested_at,
    }
}

/// What a pass found.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The spec or its Secrets are unusable (`field`, `message`).
    InvalidSettings {
        /// The field at fault (`spec.secretRef`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Fetching or rendering failed; `transient` when retrying may help.
    FetchFailed {
        /// The error.
        message: String,
        /// Whether retrying later may help.
        transient: bool,
    },
    /// The revision was applied already.
    Unchanged {
        /// The revision.
        revision: String,
    },
    /// A revision was applied.
    Applied {
        /// The revision.
        revision: String,
        /// Its digest.
        digest: String,
        /// One line of counts.
        summary: String,
        /// Invalid manifests, one line each.
        invalid: Vec<String>,
        /// Failed requests, one line each.
        failed: Vec<String>,
        /// The inventory after the pass.
        inventory: Inventory,
    },
}

/// What to write and when to come back.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The status fields to write (conditions and `observedGeneration` are the caller's).
    pub status: Value,
    /// The health to fold into the conditions.
    pub health: Health,
    /// When to reconcile again.
    pub requeue: Duration,
    /// An event to publish: `(warning, reason, note)`.
    pub event: Option<(bool, String, String)>,
}

/// Decides the status after a pass; `interval` is the GitSource's, `now` RFC 3339.
pub fn decide(
    gs: &GitSource,
    outcome: &Outcome,
    requested_at: Option<&str>,
    interval: Duration,
    now: &str,
) -> Decision {
    let status = gs.status.clone().unwrap_or_default();
    let mut fields = json!({});
    if let Some(r) = requested_at {
        fields["lastHandledReconcileAt"] = json!(r);
    }
    match outcome {
        Outcome::InvalidSettings { field, message } => Decision {
            status: fields,
            health: Health::Stalled {
                reason: "InvalidSpec".into(),
                message: format!("{field}: {message}"),
            },
            requeue: interval,
            event: Some((true, "InvalidSpec".into(), format!("{field}: {message}"))),
        },
        Outcome::FetchFailed { message, transient } => Decision {
            status: fields,
            health: if *transient {
                Health::NotReady {
                    reason: "FetchFailed".into(),
                    message: message.clone(),
                }
            } else {
                Health::Stalled {
                    reason: "FetchFailed".into(),
                    message: message.clone(),
                }
            },
            requeue: if *transient {
                RETRY_AFTER.min(interval)
            } else {
                interval
            },
            event: Some((true, "FetchFailed".into(), message.clone())),
        },
        Outcome::Unchanged { revision } => {
            // Keep whatever the last applied pass concluded.
            let health = current_health(gs).unwrap_or_else(|| Health::Ready {
                reason: "ReconciliationSucceeded".into(),
                message: format!("Applied revision: {revision}"),
            });
            Decision {
                status: fields,
                health,
                requeue: interval,
                event: None,
            }
        }
        Outcome::Applied {
            revision,
            digest,
            summary,
            invalid,
            failed,
            inventory,
        } => {
            let new_artifact = status.artifact.as_ref().map(|a| a.revision.as_str())
                != Some(revision.as_str())
                || status.artifact.as_ref().map(|a| a.digest.as_str()) != Some(digest.as_str());
            let updated = if new_artifact {
                now.to_string()
            } else {
                status
                    .artifact
                    .as_ref()
                    .map(|a| a.last_update_time.clone())
                    .unwrap_or_else(|| now.to_string())
            };
            fields["artifact"] =
                json!({"revision": revision, "digest": digest, "lastUpdateTime": updated});
            fields["inventory"] = serde_json::to_value(inventory).unwrap_or_default();
            fields["lastAttemptedRevision"] = json!(revision);
            let clean = invalid.is_empty() && failed.is_empty();
            if clean {
                fields["lastAppliedRevision"] = json!(revision);
            }
            let (health, requeue, event) = if !failed.is_empty() {
                let message = format!("revision {revision}: {summary}: {}", failed.join("; "));
                (
                    Health::NotReady {
                        reason: APPLY_FAILED.into(),
                        message: message.clone(),
                    },
                    RETRY_AFTER.min(interval),
                    Some((true, APPLY_FAILED.to_string(), message)),
                )
            } else if !invalid.is_empty() {
                let message = format!(
                    "revision {revision}: {} invalid manifest(s): {}",
                    invalid.len(),
                    invalid.join("; ")
                );
                (
                    Health::Stalled {
                        reason: crate::gitops::INVALID_MANIFEST.into(),
                        message: message.clone(),
                    },
                    interval,
                    Some((true, crate::gitops::INVALID_MANIFEST.to_string(), message)),
                )
            } else {
                let message = format!("Applied revision: {revision}: {summary}");
                (
                    Health::Ready {
                        reason: "ReconciliationSucceeded".into(),
                        message: message.clone(),
                    },
                    interval,
                    new_artifact.then(|| (false, "ReconciliationSucceeded".to_string(), message)),
                )
            };
            Decision {
                status: fields,
                health,
                requeue,
                event,
            }
        }
    }
}

/// What a suspended GitSource writes: nothing when its status already shows this generation
/// and request; otherwise the acknowledgement (`observedGeneration`, `lastHandledReconcileAt`)
/// with its health unchanged (`Ready=False`, reason `Suspended`, when it never had any).
pub fn suspended(gs: &GitSource, requested_at: Option<&str>) -> Option<Decision> {
    let status = gs.status.clone().unwrap_or_default();
    let seen_generation = status.observed_generation == gs.metadata.generation;
    let seen_request =
        requested_at.is_none_or(|r| status.last_handled_reconcile_at.as_deref() == Some(r));
    if seen_generation && seen_request {
        return None;
    }
    let mut fields = json!({});
    if let Some(r) = requested_at {
        fields["lastHandledReconcileAt"] = json!(r);
    }
    Some(Decision {
        status: fields,
        health: current_health(gs).unwrap_or_else(|| Health::NotReady {
            reason: "Suspended".into(),
            message: "reconciliation is suspended".into(),
        }),
        requeue: Duration::ZERO,
        event: None,
    })
}

/// The health the conditions show now, if they show any.
fn current_health(gs: &GitSource) -> Option<Health> {
    let conds = &gs.status.as_ref()?.conditions;
    let ready = conds.iter().find(|c| c.type_ == "Ready")?;
    let stalled = conds
        .iter()
        .any(|c| c.type_ == "Stalled" && c.status == "True");
    Some(if ready.status == "True" {
        Health::Ready {
            reason: ready.reason.clone(),
            message: ready.message.clone(),
        }
    } else if stalled {
        Health::Stalled {
            reason: ready.reason.clone(),
            message: ready.message.clone(),
        }
    } else {
        Health::NotReady {
            reason: ready.reason.clone(),
            message: ready.message.clone(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::gitsource::{GitSourceSpec, GitSourceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn gs(generation: i64, status: Option<GitSourceStatus>) -> GitSource {
        let mut g = GitSource::new(
            "apps",
            GitSourceSpec {
                url: "https://example.com/r.git".into(),
                prune: true,
                ..Default::default()
            },
        );
        g.metadata.generation = Some(generation);
        g.status = status;
        g
    }

    fn cond(type_: &str, status: &str, reason: &str) -> Condition {
        serde_json::from_value(json!({"type": type_, "status": status, "reason": reason,
            "message": "m", "lastTransitionTime": "2026-12-06T00:00:00Z"}))
        .unwrap()
    }

    #[test]
    fn unchanged_revisions_are_skipped_unless_something_asks_again() {
        let done = GitSourceStatus {
            observed_generation: Some(1),
            last_attempted_revision: Some("main@sha1:aa".into()),
            conditions: vec![cond("Ready", "True", "ReconciliationSucceeded")],
            ..Default::default()
        };
        let poll = |since: Option<&str>, req: Option<&str>| Start::Poll {
            since: since.map(str::to_string),
            requested_at: req.map(str::to_string),
        };
        assert_eq!(
            start(&gs(1, Some(done.clone()))),
            poll(Some("main@sha1:aa"), None)
        );
        // A new generation (the path changed, say) applies again.
        assert_eq!(start(&gs(2, Some(done.clone()))), poll(None, None));
        // `flux reconcile`-style request, once.
        let mut g = gs(1, Some(done.clone()));
        g.metadata.annotations = Some(
            [(
                crate::gitops::REQUESTED_AT_ANNOTATION.to_string(),
                "t1".to_string(),
            )]
            .into(),
        );
        assert_eq!(start(&g), poll(None, Some("t1")));
        g.status.as_mut().unwrap().last_handled_reconcile_at = Some("t1".into());
        assert_eq!(start(&g), poll(Some("main@sha1:aa"), Some("t1")));
        // Failed requests last time: retried.
        let mut failed = done.clone();
        failed.conditions = vec![cond("Ready", "False", APPLY_FAILED)];
        assert_eq!(start(&gs(1, Some(failed))), poll(None, None));
        let mut paused = gs(1, Some(done));
        paused.spec.suspend = true;
        assert_eq!(start(&paused), Start::Suspended { requested_at: None });
        // Suspended: the generation and a request are acknowledged once, the health kept.
        assert_eq!(suspended(&paused, None), None);
        let ack = suspended(&paused, Some("t2")).expect("acknowledged");
        assert_eq!(ack.status["lastHandledReconcileAt"], "t2");
        assert!(matches!(ack.health, Health::Ready { .. }));
        paused.metadata.generation = Some(2);
        assert!(suspended(&paused, None).is_some());
    }

    #[test]
    fn applied_passes_report_ready_stalled_or_retry() {
        let g = gs(1, None);
        let applied = |invalid: Vec<String>, failed: Vec<String>| Outcome::Applied {
            revision: "main@sha1:bb".into(),
            digest: "sha256:cc".into(),
            summary: "applied 2".into(),
            invalid,
            failed,
            inventory: Inventory::default(),
        };
        let hour = Duration::from_secs(3600);
        let ok = decide(&g, &applied(vec![], vec![]), Some("t1"), hour, "NOW");
        assert!(matches!(ok.health, Health::Ready { .. }));
        assert_eq!(ok.status["lastAppliedRevision"], "main@sha1:bb");
        assert_eq!(ok.status["artifact"]["lastUpdateTime"], "NOW");
        assert_eq!(ok.status["lastHandledReconcileAt"], "t1");
        assert_eq!(ok.requeue, hour);
        assert!(ok.event.is_some());

        let bad = decide(
            &g,
            &applied(vec!["Schedule t/x: spec.cronn".into()], vec![]),
            None,
            hour,
            "NOW",
        );
        match &bad.health {
            Health::Stalled { reason, message } => {
                assert_eq!(reason, "InvalidManifest");
                assert!(message.contains("spec.cronn"), "{message}");
            }
            h => panic!("{h:?}"),
        }
        assert!(bad.status.get("lastAppliedRevision").is_none());
        assert_eq!(bad.status["lastAttemptedRevision"], "main@sha1:bb");

        let retry = decide(
            &g,
            &applied(vec![], vec!["applying x: 503".into()]),
            None,
            hour,
            "NOW",
        );
        assert!(matches!(&retry.health, Health::NotReady { reason, .. } if reason == APPLY_FAILED));
        assert_eq!(retry.requeue, RETRY_AFTER);
    }

    #[test]
    fn fetch_failures_and_bad_settings() {
        let g = gs(1, None);
        let m = Duration::from_secs(60);
        let t = decide(
            &g,
            &Outcome::FetchFailed {
                message: "timeout".into(),
                transient: true,
            },
            None,
            m,
            "NOW",
        );
        assert!(matches!(t.health, Health::NotReady { .. }));
        assert_eq!(t.requeue, RETRY_AFTER);
        let p = decide(
            &g,
            &Outcome::FetchFailed {
                message: "path".into(),
                transient: false,
            },
            None,
            m,
            "NOW",
        );
        assert!(matches!(p.health, Health::Stalled { .. }));
        let s = decide(
            &g,
            &Outcome::InvalidSettings {
                field: "spec.secretRef".into(),
                message: "no Secret".into(),
            },
            None,
            m,
            "NOW",
        );
        assert!(
            matches!(&s.health, Health::Stalled { message, .. } if message.starts_with("spec.secretRef"))
        );
        // An unchanged revision keeps the last conclusion.
        let mut stalled = gs(
            1,
            Some(GitSourceStatus {
                conditions: vec![
                    cond("Ready", "False", "InvalidManifest"),
                    cond("Stalled", "True", "InvalidManifest"),
                ],
                ..Default::default()
            }),
        );
        stalled.metadata.generation = Some(1);
        let u = decide(
            &stalled,
            &Outcome::Unchanged {
                revision: "main@sha1:bb".into(),
            },
            None,
            m,
            "NOW",
        );
        assert!(matches!(u.health, Health::Stalled { .. }));
    }
}
