//! Which pods a spec hook set applies to: Velero's `ResourceHookSelector` (namespaces, resources,
//! label selector), for pods only.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::HookError;
use crate::backup::Patterns;
use crate::cluster::selector::LabelMatcher;

/// A compiled hook selector.
#[derive(Clone, Debug)]
pub(crate) struct HookSelector {
    namespaces: Patterns,
    pods_included: bool,
    labels: Option<LabelMatcher>,
}

/// Whether a resource name in a hook's resource list names pods (Velero resolves the names
/// through discovery: `pods`, its singular `pod` and short name `po`, any case, or `*`).
fn names_pods(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    matches!(n.as_str(), "*" | "pods" | "pod" | "po")
}

impl HookSelector {
    /// Compiles a hook set's selection; `field` is the hook set's path in errors.
    ///
    /// # Errors
    /// [`HookError::Spec`] for an invalid namespace glob or label selector.
    pub(crate) fn new(
        field: &str,
        included_namespaces: &[String],
        excluded_namespaces: &[String],
        included_resources: &[String],
        excluded_resources: &[String],
        label_selector: Option<&LabelSelector>,
    ) -> Result<Self, HookError> {
        let namespaces =
            Patterns::new("namespaces", included_namespaces, &[]).map_err(|e| HookError::Spec {
                field: format!("{field}.includedNamespaces"),
                reason: e.to_string(),
            })?;
        // Checked on their own, so the error names the right field.
        Patterns::new("namespaces", &[], excluded_namespaces).map_err(|e| HookError::Spec {
            field: format!("{field}.excludedNamespaces"),
            reason: e.to_string(),
        })?;
        let namespaces = if excluded_namespaces.is_empty() {
            namespaces
        } else {
            Patterns::new("namespaces", included_namespaces, excluded_namespaces).map_err(|e| {
                HookError::Spec {
                    field: format!("{field}.excludedNamespaces"),
                    reason: e.to_string(),
                }
            })?
        };
        let included = included_resources
            .iter()
            .filter(|r| !r.trim().is_empty())
            .collect::<Vec<_>>();
        let pods_included = (included.is_empty() || included.iter().any(|r| names_pods(r)))
            && !excluded_resources.iter().any(|r| names_pods(r));
        let labels = label_selector
            .map(LabelMatcher::new)
            .transpose()
            .map_err(|e| HookError::Spec {
                field: format!("{field}.labelSelector"),
                reason: e.to_string(),
            })?;
        Ok(Self {
            namespaces,
            pods_included,
            labels,
        })
    }

    /// Whether the hook set applies to a pod in `namespace` with `labels`.
    pub(crate) fn applies_to_pod(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> bool {
        self.pods_included
            && self.namespaces.matches(namespace)
            && self.labels.as_ref().is_none_or(|m| m.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::selector::parse;

    fn sel(
        inc: &[&str],
        exc: &[&str],
        rin: &[&str],
        rex: &[&str],
        ls: Option<&str>,
    ) -> HookSelector {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let ls = ls.map(|l| parse(l).unwrap());
        HookSelector::new("h", &s(inc), &s(exc), &s(rin), &s(rex), ls.as_ref()).unwrap()
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn namespaces_resources_and_labels() {
        let none = labels(&[]);
        let all = sel(&[], &[], &[], &[], None);
        assert!(all.applies_to_pod("any", &none));
        let ns = sel(&["db-*"], &["db-test"], &[], &[], None);
        assert!(ns.applies_to_pod("db-prod", &none));
        assert!(!ns.applies_to_pod("db-test", &none));
        assert!(!ns.applies_to_pod("web", &none));
        let star = sel(&["*"], &["kube-system"], &[], &[], None);
        assert!(star.applies_to_pod("web", &none));
        assert!(!star.applies_to_pod("kube-system", &none));
        for r in ["pods", "Pod", "po", "*"] {
            assert!(
                sel(&[], &[], &[r], &[], None).applies_to_pod("a", &none),
                "{r}"
            );
            assert!(
                !sel(&[], &[], &[], &[r], None).applies_to_pod("a", &none),
                "{r}"
            );
        }
        assert!(!sel(&[], &[], &["deployments"], &[], None).applies_to_pod("a", &none));
        assert!(sel(&[], &[], &[], &["deployments"], None).applies_to_pod("a", &none));
        let l = sel(&[], &[], &[], &[], Some("app=pg,tier in (db)"));
        assert!(l.applies_to_pod("a", &labels(&[("app", "pg"), ("tier", "db")])));
        assert!(!l.applies_to_pod("a", &labels(&[("app", "pg")])));
    }

    #[test]
    fn bad_globs_name_their_field() {
        let e = HookSelector::new("h", &[], &["[".into()], &[], &[], None).unwrap_err();
        assert!(
            matches!(&e, HookError::Spec { field, .. } if field == "h.excludedNamespaces"),
            "{e}"
        );
    }
}
