//! Restore drills: proving a backup restores before it is needed (`tidemark backup verify`).
//!
//! A drill restores the backup's namespaced objects into scratch namespaces — each source
//! namespace `ns` becomes `<prefix><ns>` — with the restore engine itself (so the same
//! transforms, ordering and admission apply as in an incident), then compares every object the
//! restore meant to create with what the API server now holds, as a restore preview does
//! ([`super::preview`]): equal objects are verified; absent ones (refused by admission, or a
//! kind the cluster does not serve) and different ones are reported by name. The scratch
//! namespaces are deleted afterwards. Cluster-scoped objects are never restored by a drill
//! (they would touch the live cluster's own).
//!
//! The drill runs in whichever cluster its client talks to: the one tidemark works in, or a
//! separate drill cluster (a kubeconfig given for drills). Only in a separate cluster may the
//! prefix be empty, restoring into namespaces of the backup's own names
//! ([`check_namespace_prefix`]).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams};

use super::{Counters, RestoreError, RestoreRequest, Settings};
use crate::store::Store;

/// What to verify.
#[derive(Clone, Debug)]
pub struct VerifyRequest {
    /// The backup.
    pub backup: String,
    /// Name of the drill's restore (its record and files, as any restore's).
    pub restore_name: String,
    /// Namespace the restore record belongs to.
    pub record_namespace: String,
    /// Prefix of the scratch namespaces (`drill-`: `shop` is restored into `drill-shop`).
    pub namespace_prefix: String,
    /// Leave the scratch namespaces for inspection.
    pub keep: bool,
    /// The client talks to a cluster given for drills (a kubeconfig of another cluster), not
    /// the one tidemark otherwise works in: only then may `namespace_prefix` be empty.
    pub separate_cluster: bool,
}

/// The outcome of a drill.
#[derive(Clone, Debug, Default)]
pub struct Verification {
    /// The drill restore's phase (`Completed`, `PartiallyFailed`).
    pub restore_phase: String,
    /// Objects restored and equal to the archive (after the restore's transforms).
    pub verified: usize,
    /// Objects the restore meant to create that are absent (`resource ns/name`).
    pub missing: Vec<String>,
    /// Objects present but different from what the archive says.
    pub different: Vec<String>,
    /// Objects that could not be checked, with the reason.
    pub unchecked: Vec<String>,
    /// The scratch namespaces used.
    pub scratch_namespaces: Vec<String>,
    /// Whether they were deleted.
    pub cleaned_up: bool,
}

impl Verification {
    /// Whether the backup restored whole: nothing missing, different or unchecked.
    pub fn verified(&self) -> bool {
        self.missing.is_empty() && self.different.is_empty() && self.unchecked.is_empty()
    }

    /// `42 objects restored and equal` or `40 equal, 2 missing (configmaps drill-app/a, ...)`.
    pub fn summary(&self) -> String {
        if self.verified() {
            return format!(
                "{} objects restored into scratch namespaces and equal to the archive",
                self.verified
            );
        }
        let first = |v: &[String]| {
            let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 5 {
                s += &format!(", and {} more", v.len() - 5);
            }
            s
        };
        let mut parts = vec![format!("{} equal", self.verified)];
        if !self.missing.is_empty() {
            parts.push(format!(
                "{} missing ({})",
                self.missing.len(),
                first(&self.missing)
            ));
        }
        if !self.different.is_empty() {
            parts.push(format!(
                "{} different ({})",
                self.different.len(),
                first(&self.different)
            ));
        }
        if !self.unchecked.is_empty() {
            parts.push(format!(
                "{} unchecked ({})",
                self.unchecked.len(),
                first(&self.unchecked)
            ));
        }
        parts.join(", ")
    }
}

/// The scratch namespace of `ns`: `<prefix><ns>`, shortened to 63 characters with a hash when
/// longer (as generated names are).
pub fn scratch_namespace(prefix: &str, ns: &str) -> String {
    crate::plan::fit_name(&format!("{prefix}{ns}"), 63)
}

/// Refuses an empty scratch-namespace prefix unless the drill runs in a separate cluster
/// (`separate_cluster`): in the cluster tidemark works in, the backup's own namespace names are
/// the live namespaces, and a drill would restore over them.
///
/// # Errors
/// [`RestoreError::DrillRefused`] saying why; callers name their field or flag before it.
pub fn check_namespace_prefix(prefix: &str, separate_cluster: bool) -> Result<(), RestoreError> {
    if prefix.is_empty() && !separate_cluster {
        return Err(RestoreError::DrillRefused(
            "an empty namespace prefix is allowed only for a drill in another cluster (a \
             kubeconfig given for drills): here the scratch namespaces would be the live ones"
                .into(),
        ));
    }
    Ok(())
}

/// Runs a drill of `req.backup` from `store` (see the module doc). With an empty prefix, the
/// drill refuses to start when a namespace of the backup already exists in the drill cluster
/// (it would be restored into, then deleted).
///
/// # Errors
/// [`RestoreError`] when the drill cannot start (an empty prefix outside a separate cluster or
/// onto existing namespaces, missing or unusable backup, bad archive, a wrong or missing
/// encryption key); objects that do not come back are in the outcome.
pub async fn verify(
    client: &Client,
    store: &Store,
    req: &VerifyRequest,
    settings: &Settings,
    counters: &Counters,
) -> Result<Verification, RestoreError> {
    check_namespace_prefix(&req.namespace_prefix, req.separate_cluster)?;
    // The backup's namespaces, from a plan of the whole archive.
    let index = super::fetch_archive(store, &req.backup).await?;
    let base = RestoreRequest {
        name: req.restore_name.clone(),
        record_namespace: req.record_namespace.clone(),
        backup: req.backup.clone(),
        include_cluster_resources: Some(false),
        // A drill's scratch copies run no hooks (no init containers, no commands).
        no_hooks: true,
        ..Default::default()
    };
    let namespaces: BTreeSet<String> = super::plan(&index, &base)?.namespaces;
    drop(index);
    let mapping: BTreeMap<String, String> = namespaces
        .iter()
        .map(|ns| (ns.clone(), scratch_namespace(&req.namespace_prefix, ns)))
        .collect();
    if req.namespace_prefix.is_empty() {
        // The scratch namespaces carry the backup's own names and are deleted afterwards:
        // never ones the drill cluster already has (a warm standby's, say).
        let api: Api<Namespace> = Api::all(client.clone());
        for ns in mapping.values() {
            settings.budget.acquire().await;
            match api.get_opt(ns).await {
                Ok(None) => {}
                Ok(Some(_)) => {
                    return Err(RestoreError::DrillRefused(format!(
                        "namespace {ns} already exists in the drill cluster: with an empty \
                         prefix the drill restores into the backup's own namespace names and \
                         deletes them afterwards; give a prefix, or remove it first"
                    )));
                }
                Err(e) => {
                    return Err(RestoreError::DrillRefused(format!(
                        "cannot check whether namespace {ns} exists in the drill cluster: {}",
                        crate::cluster::describe(&e)
                    )));
                }
            }
        }
    }
    let drill = RestoreRequest {
        namespace_mappings: mapping.clone(),
        ..base
    };
    let outcome = super::run(client, store, &drill, settings, counters).await?;
    let preview = super::dry_run(client, store, &drill, settings).await?;
    let mut out = Verification {
        restore_phase: outcome.record.status.phase.clone().unwrap_or_default(),
        verified: preview.skip.len(),
        missing: preview.create,
        different: preview.conflict.into_iter().chain(preview.update).collect(),
        unchecked: preview.errors,
        scratch_namespaces: mapping.into_values().collect(),
        cleaned_up: false,
    };
    if !req.keep {
        let api: Api<Namespace> = Api::all(client.clone());
        let mut all = true;
        for ns in &out.scratch_namespaces {
            settings.budget.acquire().await;
            match api.delete(ns, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => {
                    tracing::warn!(namespace = %ns, "scratch namespace not deleted: {e}");
                    all = false;
                }
            }
        }
        out.cleaned_up = all;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_fit_and_summaries_name_objects() {
        assert_eq!(scratch_namespace("drill-", "shop"), "drill-shop");
        let long = scratch_namespace("drill-", &"n".repeat(63));
        assert!(long.len() <= 63 && long.starts_with("drill-nnn"), "{long}");
        let v = Verification {
            verified: 3,
            missing: vec!["configmaps drill-app/blocked".into()],
            ..Default::default()
        };
        assert!(!v.verified());
        assert_eq!(
            v.summary(),
            "3 equal, 1 missing (configmaps drill-app/blocked)"
        );
        let ok = Verification {
            verified: 7,
            ..Default::default()
        };
        assert!(ok.verified());
        assert!(ok.summary().starts_with("7 objects restored"));
    }

    #[test]
    fn an_empty_prefix_only_in_a_separate_cluster() {
        assert!(check_namespace_prefix("drill-", false).is_ok());
        assert!(check_namespace_prefix("drill-", true).is_ok());
        assert!(check_namespace_prefix("", true).is_ok());
        let refused = check_namespace_prefix("", false).unwrap_err().to_string();
        assert!(refused.contains("live ones"), "{refused}");
        assert_eq!(scratch_namespace("", "shop"), "shop");
    }
}
