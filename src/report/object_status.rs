//! The status tidemark writes on its own objects: server-side apply of the status subresource
//! under a fixed field manager ([`FIELD_MANAGER`]), the rest of the status kept
//! ([`status_over`]), the health folded into kstatus conditions with `observedGeneration`.
//! Shared by every controller and the GitOps engine.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::conditions::{self, Health};

/// The field manager of every write the controller makes, except the `status.progress` of
/// running Backup and Restore records (`tidemark-controller-progress`).
pub const FIELD_MANAGER: &str = "tidemark-controller";

/// Condition reason of an object whose manifest in its Git source is invalid: the GitOps engine
/// sets `Stalled=True` with it, and [`apply_status`] keeps it until the engine lifts it.
pub const INVALID_MANIFEST: &str = "InvalidManifest";

/// Whether a condition (its `type`, `status`, `reason`) is the GitOps engine's stall of an
/// invalid manifest: `Stalled=True`, reason [`INVALID_MANIFEST`].
pub fn is_invalid_manifest_stall(type_: &str, status: &str, reason: &str) -> bool {
    type_ == "Stalled" && status == "True" && reason == INVALID_MANIFEST
}

/// [`is_invalid_manifest_stall`] of a [`Condition`].
pub fn invalid_manifest_stall(c: &Condition) -> bool {
    is_invalid_manifest_stall(&c.type_, &c.status, &c.reason)
}

/// Now as a `metav1.Time`.
pub fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// RFC 3339 of now, seconds precision.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `update`'s top-level fields over the fields of `current` (an object's status as last read):
/// the whole status to apply. Server-side apply takes an apply as the complete intent of its field
/// manager, so a status written with only the fields that changed (an expiry held back writes
/// just its `phase`) would otherwise remove the timestamps and counters written before. A field
/// is cleared by giving it as `null`. Conditions and `observedGeneration` are left to the caller.
pub fn status_over(
    current: Option<&serde_json::Value>,
    update: serde_json::Value,
) -> serde_json::Value {
    let mut merged = match current {
        Some(serde_json::Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    merged.remove("conditions");
    merged.remove("observedGeneration");
    if let serde_json::Value::Object(u) = update {
        merged.extend(u);
    }
    serde_json::Value::Object(merged)
}

/// Writes `status` (a JSON object) of `obj` with server-side apply, over the rest of `obj`'s
/// current status ([`status_over`]). `health` is folded into `status.conditions` (existing
/// conditions keep their transition times) and `observedGeneration` is set.
pub async fn apply_status<K>(
    api: &Api<K>,
    obj: &K,
    existing: &[Condition],
    status: serde_json::Value,
    health: &Health,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let current = serde_json::to_value(obj).ok();
    let mut status = status_over(current.as_ref().and_then(|o| o.get("status")), status);
    let generation = obj.meta().generation;
    // A manifest the GitOps engine found invalid keeps its object Stalled (reason
    // `InvalidManifest`, set by the engine) until it is fixed in Git, whatever the controllers
    // conclude from the last valid spec; the engine lifts the condition itself.
    let invalid = existing
        .iter()
        .find(|c| invalid_manifest_stall(c))
        .map(|c| c.message.clone());
    let overridden;
    let health = match invalid {
        Some(message) => {
            overridden = Health::Stalled {
                reason: INVALID_MANIFEST.into(),
                message,
            };
            &overridden
        }
        _ => health,
    };
    let mut conds = existing.to_vec();
    conditions::apply(&mut conds, health, generation, &now_time());
    status["observedGeneration"] = serde_json::json!(generation);
    status["conditions"] = serde_json::to_value(&conds).unwrap_or_default();
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_partial_status_keeps_what_was_written_before() {
        let current = json!({"phase": "Completed", "startTimestamp": "2026-12-06T07:00:00Z",
            "itemsBackedUp": 12, "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "True"}]});
        let merged = status_over(
            Some(&current),
            json!({"phase": "Completed",
            "failureReason": "expiry blocked"}),
        );
        assert_eq!(
            merged,
            json!({"phase": "Completed", "startTimestamp": "2026-12-06T07:00:00Z",
                "itemsBackedUp": 12, "failureReason": "expiry blocked"})
        );
    }

    #[test]
    fn null_clears_and_a_missing_status_starts_empty() {
        let current = json!({"phase": "Unavailable", "message": "no bucket"});
        assert_eq!(
            status_over(
                Some(&current),
                json!({"phase": "Available", "message": null})
            ),
            json!({"phase": "Available", "message": null})
        );
        assert_eq!(
            status_over(None, json!({"phase": "New"})),
            json!({"phase": "New"})
        );
    }
}
