//! What records inherit from the policies and schedules that caused them (DESIGN §6).
//!
//! A Backup record created for a Schedule copies the Schedule's (or policy's) labels and
//! annotations so users can select and annotate runs, but never the metadata GitOps tools use to
//! track what they manage. A record carrying an Argo CD tracking label/annotation looks like an
//! out-of-sync resource of that Application and is pruned; Flux's labels make kustomize-controller
//! or helm-controller garbage-collect it. Records are created by tidemark and are not in Git.
//!
//! Dropped labels:
//! - `app.kubernetes.io/instance`: Argo CD's default tracking label for label-based tracking (the
//!   default method before Argo CD 3.0, still selectable as `label` or `annotation+label`). tidemark
//!   cannot tell which tracking method an Argo CD instance uses, so it never copies this label.
//! - anything under `argocd.argoproj.io/` (e.g. `argocd.argoproj.io/instance`, the usual custom
//!   `application.instanceLabelKey`) or a subdomain of it;
//! - anything under `fluxcd.io/` or a subdomain of it: `kustomize.toolkit.fluxcd.io/name`,
//!   `kustomize.toolkit.fluxcd.io/namespace`, `helm.toolkit.fluxcd.io/name`, every other
//!   `*.toolkit.fluxcd.io/` key, and Flux v1's `fluxcd.io/` keys.
//!
//! Dropped annotations:
//! - anything under `argocd.argoproj.io/` or a subdomain of it (`tracking-id`, `sync-options`,
//!   `compare-options`, `sync-wave`, `hook`, `installation-id`, `link.argocd.argoproj.io/…`);
//! - `kubectl.kubernetes.io/last-applied-configuration` (it describes the policy, not the record);
//! - anything under `fluxcd.io/` or a subdomain of it (`kustomize.toolkit.fluxcd.io/ssa`,
//!   `…/prune`, `…/reconcile`, `reconcile.fluxcd.io/requestedAt`…).

use std::collections::BTreeMap;

/// Argo CD's default tracking label (label-based tracking).
const ARGO_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Argo CD's key domain.
const ARGO_DOMAIN: &str = "argocd.argoproj.io";
/// Flux's key domain (v2 uses `*.toolkit.fluxcd.io`, v1 used `fluxcd.io`).
const FLUX_DOMAIN: &str = "fluxcd.io";
/// kubectl's client-side-apply record.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The prefix (DNS subdomain) of a `prefix/name` key, if it has one.
fn key_domain(key: &str) -> Option<&str> {
    key.split_once('/').map(|(domain, _)| domain)
}

/// Whether `domain` is `root` or a subdomain of it.
fn in_domain(domain: &str, root: &str) -> bool {
    domain == root
        || domain
            .strip_suffix(root)
            .is_some_and(|head| head.ends_with('.'))
}

/// Whether the key belongs to Argo CD or Flux.
fn gitops_domain(key: &str) -> bool {
    key_domain(key).is_some_and(|d| in_domain(d, ARGO_DOMAIN) || in_domain(d, FLUX_DOMAIN))
}

/// Labels to copy onto a Backup record: all of `labels` except GitOps tracking labels
/// (`app.kubernetes.io/instance`, `argocd.argoproj.io/*`, `fluxcd.io/*`, `*.toolkit.fluxcd.io/*`;
/// see the module documentation for why).
pub fn inheritable_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(k, _)| k.as_str() != ARGO_INSTANCE_LABEL && !gitops_domain(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Annotations to copy onto a Backup record: all of `a` except Argo CD's (`argocd.argoproj.io/*`),
/// Flux's (`fluxcd.io/*`, `*.toolkit.fluxcd.io/*`) and
/// `kubectl.kubernetes.io/last-applied-configuration`.
pub fn inheritable_annotations(a: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    a.iter()
        .filter(|(k, _)| k.as_str() != LAST_APPLIED && !gitops_domain(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn labels_drop_argo_and_flux_tracking() {
        let labels = map(&[
            ("app", "web"),
            ("team", "payments"),
            ("app.kubernetes.io/name", "tidemark"),
            ("app.kubernetes.io/part-of", "backups"),
            ("app.kubernetes.io/instance", "prod-backups"),
            ("argocd.argoproj.io/instance", "prod-backups"),
            ("kustomize.toolkit.fluxcd.io/name", "infra"),
            ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
            ("helm.toolkit.fluxcd.io/name", "tidemark"),
            ("helm.toolkit.fluxcd.io/namespace", "flux-system"),
            ("image.toolkit.fluxcd.io/whatever", "x"),
            ("fluxcd.io/sync-gc-mark", "sha256.abc"),
        ]);
        assert_eq!(
            inheritable_labels(&labels),
            map(&[
                ("app", "web"),
                ("app.kubernetes.io/name", "tidemark"),
                ("app.kubernetes.io/part-of", "backups"),
                ("team", "payments"),
            ])
        );
    }

    #[test]
    fn lookalike_domains_are_kept() {
        let labels = map(&[
            ("notfluxcd.io/x", "1"),
            ("fluxcd.io.example.com/x", "2"),
            ("example.com/argocd.argoproj.io", "3"),
            ("myargocd.argoproj.io/x", "4"),
            ("toolkit.fluxcd.io", "5"), // no prefix: a plain name
        ]);
        assert_eq!(inheritable_labels(&labels), labels);
        assert_eq!(inheritable_annotations(&labels), labels);
    }

    #[test]
    fn annotations_drop_argo_flux_and_last_applied() {
        let annotations = map(&[
            ("description", "nightly"),
            ("tidemark.dev/owner", "sre"),
            (
                "argocd.argoproj.io/tracking-id",
                "app:tidemark.dev/BackupPolicy:ns/p",
            ),
            ("argocd.argoproj.io/sync-options", "Prune=false"),
            ("argocd.argoproj.io/compare-options", "IgnoreExtraneous"),
            ("argocd.argoproj.io/sync-wave", "2"),
            ("link.argocd.argoproj.io/external-link", "https://x"),
            ("kubectl.kubernetes.io/last-applied-configuration", "{}"),
            ("kubectl.kubernetes.io/restartedAt", "2024-01-01T00:00:00Z"),
            ("kustomize.toolkit.fluxcd.io/ssa", "Merge"),
            ("kustomize.toolkit.fluxcd.io/prune", "disabled"),
            ("reconcile.fluxcd.io/requestedAt", "now"),
            // A label key as an annotation is not special.
            ("app.kubernetes.io/instance", "x"),
        ]);
        assert_eq!(
            inheritable_annotations(&annotations),
            map(&[
                ("app.kubernetes.io/instance", "x"),
                ("description", "nightly"),
                ("kubectl.kubernetes.io/restartedAt", "2024-01-01T00:00:00Z"),
                ("tidemark.dev/owner", "sre"),
            ])
        );
    }

    #[test]
    fn empty_maps_stay_empty() {
        assert!(inheritable_labels(&BTreeMap::new()).is_empty());
        assert!(inheritable_annotations(&BTreeMap::new()).is_empty());
    }
}
