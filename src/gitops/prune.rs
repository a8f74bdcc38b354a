//! Pruning by inventory diff: the objects of the previous inventory that the new revision no
//! longer holds are deleted by name (Flux's kustomize-controller model), so pruning needs only
//! `delete` on tidemark's kinds in the namespaces the source applied to — no cluster-wide LIST.
//! An object whose [`SOURCE_LABEL`] names another source (it was taken over) is left alone.

use kube::Client;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject};

use super::SOURCE_LABEL;
use super::inventory::ObjectRef;
use crate::cluster;

/// What pruning did: the objects deleted, the ones that could not be (kept in the inventory so
/// the next pass tries again), and messages of failures.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Deleted (or already gone).
    pub deleted: Vec<ObjectRef>,
    /// Still there after a failed request.
    pub remaining: Vec<ObjectRef>,
    /// Failures, one line each.
    pub failed: Vec<String>,
}

/// Deletes `objects` (in order) that still carry the source `id`'s label.
pub async fn prune(client: &Client, id: &str, objects: &[ObjectRef]) -> Pruned {
    let mut out = Pruned::default();
    for o in objects {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &o.namespace, &o.kind.api_resource());
        // One GET per pruned object (not per applied one): someone may have taken it over.
        let live = match api.get_opt(&o.name).await {
            Ok(l) => l,
            Err(e) => {
                out.failed.push(format!(
                    "reading {o} to prune it: {}",
                    cluster::describe(&e)
                ));
                out.remaining.push(o.clone());
                continue;
            }
        };
        let Some(live) = live else {
            out.deleted.push(o.clone());
            continue;
        };
        if live.labels().get(SOURCE_LABEL).map(String::as_str) != Some(id) {
            tracing::info!(object = %o, "left the source but another owner took it over: not pruned");
            continue;
        }
        if live.metadata.deletion_timestamp.is_some() {
            out.deleted.push(o.clone());
            continue;
        }
        match api.delete(&o.name, &DeleteParams::default()).await {
            Ok(_) => out.deleted.push(o.clone()),
            Err(e) if cluster::is_not_found(&e) => out.deleted.push(o.clone()),
            Err(e) => {
                out.failed
                    .push(format!("pruning {o}: {}", cluster::describe(&e)));
                out.remaining.push(o.clone());
            }
        }
    }
    out
}
