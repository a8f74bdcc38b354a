//! The restore preview (`restore create --dry-run`, and later RestorePlan status and
//! `tidemark plan`): what a restore would create, update, skip or conflict with in the target
//! cluster, computed with reads only.

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde::Serialize;

use super::{ExistingPolicy, PlannedItem, RestorePlan, transform};
use crate::cluster::{Budget, describe, is_not_found};

/// The outcome of a preview. Entries are `"<group-resource> <namespace>/<name>"` (or
/// `"<group-resource> <name>"` when cluster-scoped).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// Absent in the target: would be created.
    pub create: Vec<String>,
    /// Present and different, `update` policy: would be patched.
    pub update: Vec<String>,
    /// Present and equal to the backup: nothing to do.
    pub skip: Vec<String>,
    /// Present and different, `none` policy: left unchanged with a warning.
    pub conflict: Vec<String>,
    /// Could not be checked (with the reason).
    pub errors: Vec<String>,
    /// Left out by restore rules (finished pods, completed jobs...).
    pub skipped_by_rule: u64,
}

impl Preview {
    /// One line: `412 to create, 0 to update, 3 unchanged, 2 conflicts`.
    pub fn summary(&self) -> String {
        format!(
            "{} to create, {} to update, {} unchanged, {} conflicts{}",
            self.create.len(),
            self.update.len(),
            self.skip.len() + self.skipped_by_rule as usize,
            self.conflict.len(),
            if self.errors.is_empty() {
                String::new()
            } else {
                format!(", {} unchecked", self.errors.len())
            }
        )
    }
}

enum Verdict {
    Create,
    Update,
    Skip,
    Conflict,
    Error(String),
}

fn label(item: &PlannedItem) -> String {
    match &item.namespace {
        Some(ns) => format!("{} {ns}/{}", item.group_resource, item.name),
        None => format!("{} {}", item.group_resource, item.name),
    }
}

async fn judge(
    client: &Client,
    plan: &RestorePlan,
    budget: &Budget,
    policy: ExistingPolicy,
    item: &PlannedItem,
) -> Verdict {
    let api: Api<DynamicObject> = match &item.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &*item.api_resource),
        None => Api::all_with(client.clone(), &*item.api_resource),
    };
    budget.acquire().await;
    match api.get_opt(&item.name).await {
        Ok(None) => Verdict::Create,
        // The resource itself is not served yet (its CRD is restored first).
        Err(e) if is_not_found(&e) => Verdict::Create,
        Err(e) => Verdict::Error(describe(&e)),
        Ok(Some(existing)) => {
            let existing = serde_json::to_value(&existing).unwrap_or_default();
            let object = match plan.materialize(item) {
                Ok((o, _)) => o,
                Err(e) => return Verdict::Error(e),
            };
            if transform::is_subset(&object, &existing) {
                Verdict::Skip
            } else if policy == ExistingPolicy::Update {
                Verdict::Update
            } else {
                Verdict::Conflict
            }
        }
    }
}

/// Checks every planned item against the target cluster, `concurrency` at a time, under the
/// budget. Never writes.
pub async fn preview(
    client: &Client,
    plan: &RestorePlan,
    policy: ExistingPolicy,
    budget: &Budget,
    concurrency: usize,
) -> Preview {
    let items: Vec<&PlannedItem> = plan.tiers.iter().flatten().collect();
    let verdicts: Vec<(String, Verdict)> =
        futures::stream::iter(
            items
                .into_iter()
                .map(|item| async move {
                    (label(item), judge(client, plan, budget, policy, item).await)
                })
                .collect::<Vec<_>>(),
        )
        .buffered(concurrency.max(1))
        .collect()
        .await;
    let mut p = Preview {
        skipped_by_rule: plan.skipped,
        ..Default::default()
    };
    for (l, v) in verdicts {
        match v {
            Verdict::Create => p.create.push(l),
            Verdict::Update => p.update.push(l),
            Verdict::Skip => p.skip.push(l),
            Verdict::Conflict => p.conflict.push(l),
            Verdict::Error(e) => p.errors.push(format!("{l}: {e}")),
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_like_a_commit_status() {
        let p = Preview {
            create: vec!["a".into(), "b".into()],
            conflict: vec!["c".into()],
            skipped_by_rule: 1,
            ..Default::default()
        };
        assert_eq!(
            p.summary(),
            "2 to create, 0 to update, 1 unchanged, 1 conflicts"
        );
    }
}
