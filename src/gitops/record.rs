//! The record of a source that has no `GitSource` object (`tidemark reconcile`'s flags, the
//! server configuration file's deprecated `source:` section): the ConfigMap
//! `tidemark-gitops-<source id>` in the source's namespace, holding what a GitSource keeps in
//! its status — the last revision reconciled, the last one attempted and the inventory.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::inventory::{ObjectRef, from_inventory, to_inventory};
use super::{FIELD_MANAGER, GitopsError, Report, SOURCE_LABEL};
use crate::api::gitsource::Inventory;
use crate::source::Revision;

/// What a previous pass left: the revision not to reconcile again and the inventory to prune
/// from.
#[derive(Clone, Debug, Default)]
pub struct Previous {
    /// The last revision reconciled without a failed request (`None`: reconcile whatever comes).
    pub revision: Option<Revision>,
    /// Invalid manifests of that revision.
    pub invalid: usize,
    /// The objects applied so far; `None` when no inventory was ever recorded (nothing is
    /// pruned then: the first inventory is recorded by this pass).
    pub inventory: Option<BTreeSet<ObjectRef>>,
}

/// The record's name for the source `id`.
pub fn record_name(id: &str) -> String {
    format!("tidemark-gitops-{id}")
}

/// Reads the record of source `id` in `namespace`.
///
/// # Errors
/// [`GitopsError::Kube`]: the GET failed.
pub async fn read(client: &Client, namespace: &str, id: &str) -> Result<Previous, GitopsError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api.get_opt(&record_name(id)).await.map_err(|e| {
        GitopsError::kube(
            format!("reading the source record in namespace {namespace}"),
            e,
        )
    })?;
    let Some(cm) = cm else {
        return Ok(Previous::default());
    };
    let data = cm.data.unwrap_or_default();
    Ok(Previous {
        revision: data.get("revision").and_then(|r| r.parse().ok()),
        invalid: data
            .get("invalid")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        inventory: data
            .get("inventory")
            .and_then(|i| serde_json::from_str::<Inventory>(i).ok())
            .map(|i| from_inventory(&i)),
    })
}

/// Writes the record after a pass: the inventory and the attempted revision always; the
/// reconciled `revision` only when every request went through (so failures are retried).
///
/// # Errors
/// [`GitopsError::Kube`]: the apply failed.
pub async fn write(
    client: &Client,
    namespace: &str,
    id: &str,
    source: &str,
    previous: &Previous,
    report: &Report,
) -> Result<(), GitopsError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let name = record_name(id);
    let reconciled = if report.failed.is_empty() {
        Some(report.revision.to_string())
    } else {
        previous.revision.as_ref().map(Revision::to_string)
    };
    let inventory = serde_json::to_string(&to_inventory(&report.inventory)).unwrap_or_default();
    let mut data = json!({
        "source": source,
        "attemptedRevision": report.revision.to_string(),
        "reconciledAt": crate::report::object_status::now_rfc3339(),
        "applied": report.applied().to_string(),
        "pruned": report.pruned.len().to_string(),
        "invalid": report.invalid.len().to_string(),
        "inventory": inventory,
    });
    if let Some(r) = reconciled {
        data["revision"] = json!(r);
    }
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {SOURCE_LABEL: id, "app.kubernetes.io/managed-by": "tidemark"},
        },
        "data": data,
    });
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map(|_| ())
    .map_err(|e| GitopsError::kube(format!("writing the source record {namespace}/{name}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::stable_id;

    #[test]
    fn record_names_fit() {
        let id = stable_id(&["git", "https://example.com/r.git", "main", ".", "tidemark"]);
        assert!(id.len() <= 63);
        assert!(record_name(&id).len() <= 63);
    }
}
