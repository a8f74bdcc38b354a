//! Status conditions as Flux, kstatus and Argo CD read them.
//!
//! Conventions (kstatus, `sigs.k8s.io/cli-utils/pkg/kstatus`, and Flux's "abnormal-true"
//! polarity): `Ready` is always present; `Reconciling=True` while work is under way and
//! `Stalled=True` on a terminal failure, each removed when not True; reasons are CamelCase;
//! every condition carries the `observedGeneration` it describes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Condition type: the object is in its desired state.
pub const READY: &str = "Ready";
/// Condition type: work towards the desired state is under way.
pub const RECONCILING: &str = "Reconciling";
/// Condition type: the controller cannot make progress without a change to the object.
pub const STALLED: &str = "Stalled";

/// The overall state an object is reported in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Desired state reached: `Ready=True`.
    Ready {
        /// CamelCase reason.
        reason: String,
        /// One line for humans.
        message: String,
    },
    /// Working on it: `Ready=False` (reason as given), `Reconciling=True`.
    Reconciling {
        /// CamelCase reason.
        reason: String,
        /// One line for humans.
        message: String,
    },
    /// Terminal failure: `Ready=False`, `Stalled=True`.
    Stalled {
        /// CamelCase reason.
        reason: String,
        /// One line for humans (names the field at fault where there is one).
        message: String,
    },
    /// Not ready, not working on it, not stuck (e.g. a Location that is unreachable and will be
    /// retried): `Ready=False` only.
    NotReady {
        /// CamelCase reason.
        reason: String,
        /// One line for humans.
        message: String,
    },
}

fn set(
    conds: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = now.clone();
        }
        c.status = status.into();
        c.reason = reason.into();
        c.message = message.into();
        c.observed_generation = generation;
    } else {
        conds.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: now.clone(),
        });
    }
}

fn remove(conds: &mut Vec<Condition>, type_: &str) {
    conds.retain(|c| c.type_ != type_);
}

/// Updates `conds` to report `health` for `generation`, keeping `lastTransitionTime` of
/// conditions whose status did not change.
pub fn apply(conds: &mut Vec<Condition>, health: &Health, generation: Option<i64>, now: &Time) {
    match health {
        Health::Ready { reason, message } => {
            set(conds, READY, "True", reason, message, generation, now);
            remove(conds, RECONCILING);
            remove(conds, STALLED);
        }
        Health::Reconciling { reason, message } => {
            set(conds, READY, "False", reason, message, generation, now);
            set(conds, RECONCILING, "True", reason, message, generation, now);
            remove(conds, STALLED);
        }
        Health::Stalled { reason, message } => {
            set(conds, READY, "False", reason, message, generation, now);
            set(conds, STALLED, "True", reason, message, generation, now);
            remove(conds, RECONCILING);
        }
        Health::NotReady { reason, message } => {
            set(conds, READY, "False", reason, message, generation, now);
            remove(conds, RECONCILING);
            remove(conds, STALLED);
        }
    }
}

/// kstatus' computed status of an object (`sigs.k8s.io/cli-utils/pkg/kstatus/status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KStatus {
    /// Reconciled and healthy.
    Current,
    /// Still being worked on.
    InProgress,
    /// Failed.
    Failed,
}

/// Evaluates kstatus' generic rules plus Flux's Ready check on an object's JSON:
/// `observedGeneration` behind `generation` → InProgress; `Stalled=True` → Failed;
/// `Reconciling=True` → InProgress; `Ready` not `True` (False, Unknown, missing) → InProgress
/// (Flux waits for Ready); else Current.
pub fn kstatus(obj: &serde_json::Value) -> KStatus {
    let generation = obj.pointer("/metadata/generation").and_then(|g| g.as_i64());
    let observed = obj
        .pointer("/status/observedGeneration")
        .and_then(|g| g.as_i64());
    if let (Some(g), Some(o)) = (generation, observed)
        && o < g
    {
        return KStatus::InProgress;
    }
    let conds = obj
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .cloned()
        .unwrap_or_default();
    let is = |t: &str, s: &str| conds.iter().any(|c| c["type"] == t && c["status"] == s);
    if is(STALLED, "True") {
        KStatus::Failed
    } else if is(RECONCILING, "True") || !is(READY, "True") {
        KStatus::InProgress
    } else {
        KStatus::Current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())
    }

    #[test]
    fn transitions_keep_and_remove_conditions() {
        let mut c = Vec::new();
        apply(
            &mut c,
            &Health::Reconciling {
                reason: "Progressing".into(),
                message: "m".into(),
            },
            Some(1),
            &t(10),
        );
        assert_eq!(c.len(), 2);
        apply(
            &mut c,
            &Health::Reconciling {
                reason: "Progressing".into(),
                message: "m2".into(),
            },
            Some(1),
            &t(20),
        );
        assert_eq!(
            c.iter()
                .find(|x| x.type_ == READY)
                .unwrap()
                .last_transition_time,
            t(10)
        );
        apply(
            &mut c,
            &Health::Ready {
                reason: "Succeeded".into(),
                message: "ok".into(),
            },
            Some(2),
            &t(30),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, "True");
        assert_eq!(c[0].last_transition_time, t(30));
        assert_eq!(c[0].observed_generation, Some(2));
        apply(
            &mut c,
            &Health::Stalled {
                reason: "InvalidSpec".into(),
                message: "spec.schedule: bad".into(),
            },
            Some(3),
            &t(40),
        );
        assert!(c.iter().any(|x| x.type_ == STALLED && x.status == "True"));
        assert!(!c.iter().any(|x| x.type_ == RECONCILING));
    }

    #[test]
    fn kstatus_rules() {
        let obj = |gen_: i64, obs: i64, conds: serde_json::Value| serde_json::json!({"metadata": {"generation": gen_}, "status": {"observedGeneration": obs, "conditions": conds}});
        let ready = serde_json::json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(kstatus(&obj(1, 1, ready.clone())), KStatus::Current);
        assert_eq!(kstatus(&obj(2, 1, ready)), KStatus::InProgress);
        assert_eq!(
            kstatus(&obj(
                1,
                1,
                serde_json::json!([{"type": "Ready", "status": "False"}, {"type": "Stalled", "status": "True"}])
            )),
            KStatus::Failed
        );
        assert_eq!(
            kstatus(&obj(
                1,
                1,
                serde_json::json!([{"type": "Ready", "status": "False"}, {"type": "Reconciling", "status": "True"}])
            )),
            KStatus::InProgress
        );
        assert_eq!(
            kstatus(&obj(1, 1, serde_json::json!([]))),
            KStatus::InProgress
        );
    }
}
