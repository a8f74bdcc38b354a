//! Applying one revision as a change set: every valid manifest is server-side applied (field
//! manager [`FIELD_MANAGER`], strict field validation, forced), labelled with the source's id
//! and annotated with the revision; each is judged created, configured or unchanged against
//! what one LIST per kind and namespace observed before (no GET per object). Invalid manifests
//! mark their live object `Stalled` (reason [`INVALID_MANIFEST`]); a manifest valid again lifts
//! that.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::inventory::ObjectRef;
use super::{FIELD_MANAGER, INVALID_MANIFEST, REVISION_ANNOTATION, SOURCE_LABEL};
use crate::api::conditions::Health;
use crate::api::tidemark::{BackupPolicy, Location, RestorePlan, Schedule};
use crate::cluster;
use crate::report::object_status::{
    apply_status, invalid_manifest_stall, is_invalid_manifest_stall,
};
use crate::source::{InvalidManifest, Kind, Manifest, Revision};

/// What applying one revision did.
#[derive(Debug)]
pub struct Report {
    /// The revision applied.
    pub revision: Revision,
    /// Objects created (`Kind namespace/name`).
    pub created: Vec<String>,
    /// Objects whose spec, labels or annotations changed.
    pub configured: Vec<String>,
    /// Objects applied without a change.
    pub unchanged: Vec<String>,
    /// Objects deleted because they left the source.
    pub pruned: Vec<String>,
    /// Invalid manifests, and whether their live object was marked `Stalled`.
    pub invalid: Vec<(InvalidManifest, bool)>,
    /// Requests that failed (retried at the next pass).
    pub failed: Vec<String>,
    /// Why pruning did not run, when it did not.
    pub prune_skipped: Option<String>,
    /// The objects this source holds after the pass: its new inventory.
    pub inventory: BTreeSet<ObjectRef>,
}

impl Report {
    /// An empty report of `revision`.
    pub fn new(revision: Revision) -> Report {
        Report {
            revision,
            created: Vec::new(),
            configured: Vec::new(),
            unchanged: Vec::new(),
            pruned: Vec::new(),
            invalid: Vec::new(),
            failed: Vec::new(),
            prune_skipped: None,
            inventory: BTreeSet::new(),
        }
    }

    /// Objects applied (created, configured or unchanged).
    pub fn applied(&self) -> usize {
        self.created.len() + self.configured.len() + self.unchanged.len()
    }

    /// Whether every manifest was valid and every request went through.
    pub fn clean(&self) -> bool {
        self.failed.is_empty() && self.invalid.is_empty()
    }

    /// One line: `applied N (created …, configured …, unchanged …), pruned N, invalid N`.
    pub fn summary(&self) -> String {
        format!(
            "applied {} (created {}, configured {}, unchanged {}), pruned {}, invalid {}{}",
            self.applied(),
            self.created.len(),
            self.configured.len(),
            self.unchanged.len(),
            self.pruned.len(),
            self.invalid.len(),
            if self.failed.is_empty() {
                String::new()
            } else {
                format!(", failed {}", self.failed.len())
            }
        )
    }

    /// The invalid manifests and failures, `; `-separated (for a condition's message).
    pub fn problems(&self) -> String {
        self.invalid
            .iter()
            .map(|(i, _)| i.to_string())
            .chain(self.failed.iter().cloned())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Whether an apply error is the manifest's fault: schema or CEL rule violations (422), strict
/// decoding errors (400), and fields the schema does not declare (the API server answers those
/// with a 500 "failed to create typed patch object" for server-side apply).
pub fn is_invalid(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.code == 422
                || (s.code == 400 && s.reason == "BadRequest")
                || s.message.contains("field not declared in schema")
                || s.message.contains("failed to create typed patch object")
        }
        _ => false,
    }
}

/// Spec, labels and annotations (without the revision annotation): what "configured" compares.
fn user_content(obj: &DynamicObject) -> Value {
    let mut ann = obj.annotations().clone();
    ann.remove(REVISION_ANNOTATION);
    json!({"spec": obj.data.get("spec"), "labels": obj.labels(), "annotations": ann})
}

/// A live object as observed before the change set.
struct Observed {
    /// Its [`user_content`].
    content: Value,
    /// Whether it carries the engine's `InvalidManifest` stall.
    stalled: bool,
}

/// Lifts the engine's `InvalidManifest` stall of `m`'s object (its manifest is valid again):
/// the controller reports the object's health from here. Failures go to the report.
async fn lift_stall(client: &Client, m: &Manifest, report: &mut Report) {
    let health = Health::Reconciling {
        reason: "ManifestApplied".into(),
        message: format!(
            "the manifest at {} is valid and is applied",
            report.revision
        ),
    };
    if let Err(e) = set_health(client, m.kind, &m.namespace, &m.name, &health).await {
        report.failed.push(format!(
            "clearing the {INVALID_MANIFEST} condition of {}: {}",
            m.describe(),
            cluster::describe(&e)
        ));
    }
}

/// What exists of the manifests' kinds in their namespaces: one LIST per kind and namespace.
/// A LIST that fails leaves its objects unobserved (they are then reported "created" or
/// "configured" by what the apply returns).
async fn observe(
    client: &Client,
    manifests: &[Manifest],
    report: &mut Report,
) -> BTreeMap<ObjectRef, Observed> {
    let wanted: BTreeSet<(Kind, &str)> = manifests
        .iter()
        .map(|m| (m.kind, m.namespace.as_str()))
        .collect();
    let mut seen = BTreeMap::new();
    for (kind, ns) in wanted {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), ns, &kind.api_resource());
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                for o in list.items {
                    let observed = Observed {
                        content: user_content(&o),
                        stalled: stalled_by_invalid_manifest(o.data.get("status")),
                    };
                    seen.insert(ObjectRef::new(kind, ns, &o.name_any()), observed);
                }
            }
            Err(e) => report.failed.push(format!(
                "listing {kind}s in {ns}: {}",
                cluster::describe(&e)
            )),
        }
    }
    seen
}

async fn apply_one(
    client: &Client,
    m: &Manifest,
    id: &str,
    revision: &Revision,
) -> Result<DynamicObject, kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &m.namespace, &m.kind.api_resource());
    let mut body = m.object.clone();
    let meta = &mut body["metadata"];
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    meta["labels"][SOURCE_LABEL] = json!(id);
    if !meta["annotations"].is_object() {
        meta["annotations"] = json!({});
    }
    meta["annotations"][REVISION_ANNOTATION] = json!(revision.to_string());
    api.patch(
        &m.name,
        &PatchParams::apply(FIELD_MANAGER)
            .force()
            .validation_strict(),
        &Patch::Apply(&body),
    )
    .await
}

/// Whether the object carries the `Stalled` condition set for invalid manifests.
pub fn stalled_by_invalid_manifest(status: Option<&Value>) -> bool {
    status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                is_invalid_manifest_stall(
                    c["type"].as_str().unwrap_or_default(),
                    c["status"].as_str().unwrap_or_default(),
                    c["reason"].as_str().unwrap_or_default(),
                )
            })
        })
}

/// Folds `health` into an existing object's conditions; `false` when it does not exist. The
/// status fields the controller wrote are kept.
async fn set_health_typed<K>(
    client: &Client,
    namespace: &str,
    name: &str,
    health: &Health,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let mut status = serde_json::to_value(&obj)
        .ok()
        .and_then(|v| v.get("status").cloned())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let mut existing: Vec<Condition> = status
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    // The engine's own stall is the engine's to set, renew or lift (the controllers keep it
    // only while it is there).
    existing.retain(|c| !invalid_manifest_stall(c));
    if let Some(s) = status.as_object_mut() {
        s.remove("conditions");
        s.remove("observedGeneration");
    }
    apply_status(&api, &obj, &existing, status, health).await?;
    Ok(true)
}

/// Folds `health` into the conditions of the live object `kind` `namespace/name`; `false` when
/// it does not exist.
///
/// # Errors
/// The GET or the status write failed.
pub async fn set_health(
    client: &Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    health: &Health,
) -> Result<bool, kube::Error> {
    match kind {
        Kind::Location => set_health_typed::<Location>(client, namespace, name, health).await,
        Kind::BackupPolicy => {
            set_health_typed::<BackupPolicy>(client, namespace, name, health).await
        }
        Kind::Schedule => set_health_typed::<Schedule>(client, namespace, name, health).await,
        Kind::RestorePlan => set_health_typed::<RestorePlan>(client, namespace, name, health).await,
    }
}

/// Marks the existing object of an invalid manifest `Stalled` (reason `InvalidManifest`);
/// `false` when there is no such object.
async fn stall(
    client: &Client,
    invalid: &InvalidManifest,
    revision: &Revision,
) -> Result<bool, kube::Error> {
    let Some((kind, namespace, name)) = invalid.identity() else {
        return Ok(false);
    };
    let health = Health::Stalled {
        reason: INVALID_MANIFEST.into(),
        message: format!(
            "the manifest at {revision} ({}) is invalid and was not applied: {}",
            invalid.origin, invalid.message
        ),
    };
    set_health(client, kind, namespace, name, &health).await
}

/// Applies the valid `manifests` (sorted: Locations first) of `revision` under the source
/// `id`, and marks the live objects of the `invalid` ones `Stalled`. Fills the report's
/// created/configured/unchanged/invalid/failed lists; returns the objects applied.
pub async fn apply_revision(
    client: &Client,
    id: &str,
    mut manifests: Vec<Manifest>,
    mut invalid: Vec<InvalidManifest>,
    report: &mut Report,
) -> BTreeSet<ObjectRef> {
    manifests.sort_by(|a, b| (a.kind, &a.namespace, &a.name).cmp(&(b.kind, &b.namespace, &b.name)));
    let before = observe(client, &manifests, report).await;
    let mut applied = BTreeSet::new();
    for m in &manifests {
        let key = ObjectRef::new(m.kind, &m.namespace, &m.name);
        // Lifted before the spec is applied, so that the controller's reconcile of the new
        // spec already sees the object without the stall (and cannot write it back).
        if before.get(&key).is_some_and(|o| o.stalled) {
            lift_stall(client, m, report).await;
        }
        match apply_one(client, m, id, &report.revision).await {
            Ok(after) => {
                match before.get(&key) {
                    None => report.created.push(m.describe()),
                    Some(b) if b.content != user_content(&after) => {
                        report.configured.push(m.describe())
                    }
                    Some(_) => report.unchanged.push(m.describe()),
                }
                applied.insert(key);
                if stalled_by_invalid_manifest(after.data.get("status")) {
                    lift_stall(client, m, report).await;
                }
            }
            Err(e) if is_invalid(&e) => invalid.push(InvalidManifest {
                kind: m.kind.to_string(),
                name: Some(m.name.clone()),
                namespace: Some(m.namespace.clone()),
                origin: m.origin.clone(),
                message: match &e {
                    kube::Error::Api(s) => s.message.clone(),
                    other => other.to_string(),
                },
            }),
            Err(e) => report.failed.push(format!(
                "applying {}: {}",
                m.describe(),
                cluster::describe(&e)
            )),
        }
    }
    for i in invalid {
        let stalled = match stall(client, &i, &report.revision).await {
            Ok(s) => s,
            Err(e) => {
                report.failed.push(format!(
                    "marking {} Stalled: {}",
                    i.describe(),
                    cluster::describe(&e)
                ));
                false
            }
        };
        report.invalid.push((i, stalled));
    }
    applied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        let mut s: kube::core::Status = serde_json::from_value(json!({})).unwrap();
        s.code = code;
        s.reason = reason.into();
        s.message = message.into();
        kube::Error::Api(Box::new(s))
    }

    #[test]
    fn manifest_errors_are_told_from_request_errors() {
        assert!(is_invalid(&api_error(
            422,
            "Invalid",
            "spec: Invalid value"
        )));
        assert!(is_invalid(&api_error(
            400,
            "BadRequest",
            "strict decoding error"
        )));
        assert!(is_invalid(&api_error(
            500,
            "",
            "failed to create typed patch object (ns/x; Kind=BackupPolicy): .metadata.labelz: \
             field not declared in schema"
        )));
        assert!(!is_invalid(&api_error(
            500,
            "InternalError",
            "etcdserver: timeout"
        )));
        assert!(!is_invalid(&api_error(403, "Forbidden", "no")));
        assert!(!is_invalid(&api_error(
            404,
            "NotFound",
            "namespaces \"x\" not found"
        )));
    }

    #[test]
    fn only_the_invalid_manifest_stall_is_recognised() {
        let stalled = json!({"conditions": [{"type": "Stalled", "status": "True", "reason": "InvalidManifest"}]});
        let other =
            json!({"conditions": [{"type": "Stalled", "status": "True", "reason": "InvalidSpec"}]});
        assert!(stalled_by_invalid_manifest(Some(&stalled)));
        assert!(!stalled_by_invalid_manifest(Some(&other)));
        assert!(!stalled_by_invalid_manifest(None));
    }
}
