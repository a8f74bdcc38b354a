//! Restore priority order (DESIGN §5, after Velero's default `--restore-resource-priorities`).
//!
//! Each listed group-resource is its own tier, in this order; everything else forms one tier
//! after them; admission webhook configurations come last so that a webhook whose backend is not
//! running yet cannot block the rest of the restore. Tiers run one after another; items inside a
//! tier are created concurrently.

/// Group-resources restored first, in this order.
pub const PRIORITIES: &[&str] = &[
    "customresourcedefinitions.apiextensions.k8s.io",
    "namespaces",
    "storageclasses.storage.k8s.io",
    "volumesnapshotclasses.snapshot.storage.k8s.io",
    "volumesnapshotcontents.snapshot.storage.k8s.io",
    "volumesnapshots.snapshot.storage.k8s.io",
    "persistentvolumes",
    "persistentvolumeclaims",
    "clusterroles.rbac.authorization.k8s.io",
    "roles.rbac.authorization.k8s.io",
    "serviceaccounts",
    "clusterrolebindings.rbac.authorization.k8s.io",
    "rolebindings.rbac.authorization.k8s.io",
    "secrets",
    "configmaps",
    "limitranges",
    "priorityclasses.scheduling.k8s.io",
    "pods",
    "replicasets.apps",
    "endpoints",
    "services",
];

/// Group-resources restored after everything else.
pub const LAST: &[&str] = &[
    "mutatingwebhookconfigurations.admissionregistration.k8s.io",
    "validatingwebhookconfigurations.admissionregistration.k8s.io",
    "validatingadmissionpolicies.admissionregistration.k8s.io",
    "validatingadmissionpolicybindings.admissionregistration.k8s.io",
];

/// Group-resources never restored: cluster-managed or tool records.
pub const NEVER_RESTORED: &[&str] = &[
    "nodes",
    "events",
    "events.events.k8s.io",
    "volumeattachments.storage.k8s.io",
    "csinodes.storage.k8s.io",
    "csistoragecapacities.storage.k8s.io",
    "componentstatuses",
    // Cluster IP allocations: the target's own allocator creates them for restored Services.
    "ipaddresses.networking.k8s.io",
];

/// API groups never restored (tool records).
pub const NEVER_RESTORED_GROUPS: &[&str] = &["velero.io", "tidemark.dev"];

/// Whether a group-resource may be restored at all.
pub fn restorable(group_resource: &str) -> bool {
    if NEVER_RESTORED.contains(&group_resource) {
        return false;
    }
    let group = group_resource.split_once('.').map(|(_, g)| g).unwrap_or("");
    !NEVER_RESTORED_GROUPS.contains(&group)
}

/// Splits group-resources into ordered tiers.
pub fn tiers<'a>(group_resources: impl IntoIterator<Item = &'a str>) -> Vec<Vec<String>> {
    let all: Vec<&str> = group_resources.into_iter().collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    for p in PRIORITIES {
        if all.contains(p) {
            out.push(vec![p.to_string()]);
        }
    }
    let mut rest: Vec<String> = all
        .iter()
        .filter(|g| !PRIORITIES.contains(g) && !LAST.contains(g))
        .map(|g| g.to_string())
        .collect();
    rest.sort();
    if !rest.is_empty() {
        out.push(rest);
    }
    let last: Vec<String> = LAST
        .iter()
        .filter(|g| all.contains(g))
        .map(|g| g.to_string())
        .collect();
    if !last.is_empty() {
        out.push(last);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_then_namespaces_then_priorities_then_rest_then_webhooks() {
        let t = tiers([
            "deployments.apps",
            "validatingwebhookconfigurations.admissionregistration.k8s.io",
            "services",
            "namespaces",
            "prometheuses.monitoring.coreos.com",
            "customresourcedefinitions.apiextensions.k8s.io",
            "persistentvolumeclaims",
            "persistentvolumes",
            "serviceaccounts",
            "rolebindings.rbac.authorization.k8s.io",
        ]);
        let flat: Vec<&str> = t.iter().map(|tier| tier[0].as_str()).collect();
        assert_eq!(
            flat,
            vec![
                "customresourcedefinitions.apiextensions.k8s.io",
                "namespaces",
                "persistentvolumes",
                "persistentvolumeclaims",
                "serviceaccounts",
                "rolebindings.rbac.authorization.k8s.io",
                "services",
                "deployments.apps",
                "validatingwebhookconfigurations.admissionregistration.k8s.io",
            ]
        );
        assert_eq!(
            t[7],
            vec!["deployments.apps", "prometheuses.monitoring.coreos.com"]
        );
    }

    #[test]
    fn never_restored() {
        assert!(!restorable("nodes"));
        assert!(!restorable("events.events.k8s.io"));
        assert!(!restorable("backups.velero.io"));
        assert!(!restorable("restores.tidemark.dev"));
        assert!(!restorable("volumeattachments.storage.k8s.io"));
        assert!(restorable("pods"));
        assert!(restorable("deployments.apps"));
    }
}
