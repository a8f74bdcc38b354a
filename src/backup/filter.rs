//! Backup selection: which resources, namespaces and objects a backup takes.
//!
//! Follows Velero's rules (`velero backup create` flags): namespace include/exclude globs,
//! resource include/exclude by kubectl-style names, `includeClusterResources` true/false/auto,
//! and the objects that are never backed up.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::api::velero::EXCLUDE_LABEL;
use crate::cluster::ServedResource;

/// Errors building a filter from user input.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A namespace pattern is not a valid glob.
    #[error("{field}: invalid pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The option or field (`--include-namespaces`).
        field: &'static str,
        /// The pattern.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// Group-resources that are never backed up or restored (Velero's list plus tidemark's own).
pub const NEVER_BACKED_UP: &[&str] = &["nodes", "events", "events.events.k8s.io"];

/// API groups whose objects are tool records, never backed up.
pub const RECORD_GROUPS: &[&str] = &["velero.io", "tidemark.dev"];

/// A set of include/exclude glob patterns (`*` or empty includes = everything).
#[derive(Clone, Debug)]
pub struct Patterns {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    literal_includes: Option<Vec<String>>,
}

fn globset(field: &'static str, pats: &[String]) -> Result<Option<GlobSet>, FilterError> {
    if pats.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in pats {
        let g = Glob::new(p).map_err(|e| FilterError::BadPattern {
            field,
            pattern: p.clone(),
            reason: e.kind().to_string(),
        })?;
        b.add(g);
    }
    b.build().map(Some).map_err(|e| FilterError::BadPattern {
        field,
        pattern: pats.join(","),
        reason: e.to_string(),
    })
}

impl Patterns {
    /// Builds from include and exclude lists; `field` names the option in errors.
    ///
    /// # Errors
    /// [`FilterError::BadPattern`] for an invalid glob.
    pub fn new(
        field: &'static str,
        include: &[String],
        exclude: &[String],
    ) -> Result<Self, FilterError> {
        let include: Vec<String> = include.iter().filter(|s| !s.is_empty()).cloned().collect();
        let all = include.is_empty() || include.iter().any(|p| p == "*");
        let literal_includes = (!all && include.iter().all(|p| !p.contains(['*', '?', '[', '{'])))
            .then(|| include.clone());
        Ok(Self {
            include: if all { None } else { globset(field, &include)? },
            exclude: globset(field, exclude)?,
            literal_includes,
        })
    }

    /// Everything.
    pub fn all() -> Self {
        Self {
            include: None,
            exclude: None,
            literal_includes: None,
        }
    }

    /// Whether `name` is selected.
    pub fn matches(&self, name: &str) -> bool {
        let inc = self.include.as_ref().is_none_or(|g| g.is_match(name));
        let exc = self.exclude.as_ref().is_some_and(|g| g.is_match(name));
        inc && !exc
    }

    /// Whether nothing is filtered out.
    pub fn is_all(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    /// The included names when they are all literal (no globs): lets callers list per namespace.
    pub fn literal_includes(&self) -> Option<&[String]> {
        self.literal_includes.as_deref()
    }
}

/// Everything that decides what a backup takes.
#[derive(Clone, Debug)]
pub struct BackupFilter {
    /// Namespaces.
    pub namespaces: Patterns,
    /// Resources to include (kubectl-style names; empty or `*` = all).
    pub include_resources: Vec<String>,
    /// Resources to exclude.
    pub exclude_resources: Vec<String>,
    /// `Some(true)`: all cluster-scoped resources; `Some(false)`: none; `None` (auto): all when
    /// every namespace is included, else only those related to included objects.
    pub include_cluster_resources: Option<bool>,
    /// A label selector in Kubernetes' string form (`app=web,tier!=db`), applied server-side.
    pub label_selector: Option<String>,
}

impl Default for BackupFilter {
    fn default() -> Self {
        Self {
            namespaces: Patterns::all(),
            include_resources: Vec::new(),
            exclude_resources: Vec::new(),
            include_cluster_resources: None,
            label_selector: None,
        }
    }
}

/// How a resource takes part in a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourcePlan {
    /// Not backed up.
    Skip,
    /// Every (matching) object is listed.
    ListAll,
    /// Only objects related to included namespaced items are fetched (auto mode).
    RelatedOnly,
}

impl BackupFilter {
    fn resource_selected(&self, r: &ServedResource) -> bool {
        let included = self.include_resources.is_empty()
            || self
                .include_resources
                .iter()
                .any(|n| n == "*" || r.matches_name(n));
        let excluded = self.exclude_resources.iter().any(|n| r.matches_name(n));
        included && !excluded
    }

    /// Whether cluster-scoped resources are taken whole (true, or auto with all namespaces).
    pub fn all_cluster_resources(&self) -> bool {
        match self.include_cluster_resources {
            Some(b) => b,
            None => self.namespaces.is_all() && self.label_selector.is_none(),
        }
    }

    /// Decides how `r` takes part in the backup.
    pub fn plan(&self, r: &ServedResource) -> ResourcePlan {
        let gr = r.group_resource();
        if NEVER_BACKED_UP.contains(&gr.as_str())
            || RECORD_GROUPS.contains(&r.group.as_str())
            || !r.supports("list")
            || !r.supports("create")
            || !self.resource_selected(r)
        {
            return ResourcePlan::Skip;
        }
        if r.namespaced || gr == "namespaces" {
            // Namespace objects follow the namespace filter, not the cluster-resource switch.
            return if gr == "namespaces" && self.include_cluster_resources == Some(false) {
                ResourcePlan::RelatedOnly
            } else {
                ResourcePlan::ListAll
            };
        }
        if self.all_cluster_resources() {
            ResourcePlan::ListAll
        } else if self.include_cluster_resources.is_none() {
            ResourcePlan::RelatedOnly
        } else {
            ResourcePlan::Skip
        }
    }
}

/// Whether an object must be skipped whatever the filters: being deleted, or labelled
/// `velero.io/exclude-from-backup=true`.
pub fn object_excluded(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
        || meta
            .labels
            .as_ref()
            .and_then(|l| l.get(EXCLUDE_LABEL))
            .is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &str, resource: &str, kind: &str, namespaced: bool) -> ServedResource {
        ServedResource {
            group: group.into(),
            version: "v1".into(),
            resource: resource.into(),
            kind: kind.into(),
            singular: String::new(),
            short_names: vec![],
            namespaced,
            verbs: vec!["list".into(), "create".into(), "get".into()],
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn namespace_globs() {
        let p = Patterns::new(
            "--include-namespaces",
            &s(&["team-*", "web"]),
            &s(&["team-b"]),
        )
        .unwrap();
        assert!(p.matches("team-a"));
        assert!(p.matches("web"));
        assert!(!p.matches("team-b"));
        assert!(!p.matches("kube-system"));
        assert!(!p.is_all());
        assert!(p.literal_includes().is_none());
        let lit = Patterns::new("--include-namespaces", &s(&["a", "b"]), &[]).unwrap();
        assert_eq!(lit.literal_includes().unwrap(), &s(&["a", "b"])[..]);
        let all = Patterns::new("--include-namespaces", &s(&["*"]), &[]).unwrap();
        assert!(all.is_all());
        assert!(Patterns::new("--include-namespaces", &s(&["[oops"]), &[]).is_err());
    }

    #[test]
    fn records_nodes_and_events_are_never_backed_up() {
        let f = BackupFilter::default();
        assert_eq!(f.plan(&res("", "nodes", "Node", false)), ResourcePlan::Skip);
        assert_eq!(
            f.plan(&res("", "events", "Event", true)),
            ResourcePlan::Skip
        );
        assert_eq!(
            f.plan(&res("events.k8s.io", "events", "Event", true)),
            ResourcePlan::Skip
        );
        assert_eq!(
            f.plan(&res("velero.io", "backups", "Backup", true)),
            ResourcePlan::Skip
        );
        assert_eq!(
            f.plan(&res("tidemark.dev", "backups", "Backup", true)),
            ResourcePlan::Skip
        );
        assert_eq!(
            f.plan(&res("", "configmaps", "ConfigMap", true)),
            ResourcePlan::ListAll
        );
    }

    #[test]
    fn cluster_resources_auto_mode() {
        let pv = res("", "persistentvolumes", "PersistentVolume", false);
        let ns = res("", "namespaces", "Namespace", false);
        let all = BackupFilter::default();
        assert_eq!(all.plan(&pv), ResourcePlan::ListAll);
        let filtered = BackupFilter {
            namespaces: Patterns::new("n", &s(&["web"]), &[]).unwrap(),
            ..Default::default()
        };
        assert_eq!(filtered.plan(&pv), ResourcePlan::RelatedOnly);
        assert_eq!(filtered.plan(&ns), ResourcePlan::ListAll);
        let off = BackupFilter {
            include_cluster_resources: Some(false),
            ..Default::default()
        };
        assert_eq!(off.plan(&pv), ResourcePlan::Skip);
        let on = BackupFilter {
            include_cluster_resources: Some(true),
            namespaces: Patterns::new("n", &s(&["web"]), &[]).unwrap(),
            ..Default::default()
        };
        assert_eq!(on.plan(&pv), ResourcePlan::ListAll);
    }

    #[test]
    fn resource_include_exclude() {
        let f = BackupFilter {
            include_resources: s(&["deployments.apps", "cm"]),
            ..Default::default()
        };
        let mut cm = res("", "configmaps", "ConfigMap", true);
        cm.short_names = vec!["cm".into()];
        assert_eq!(f.plan(&cm), ResourcePlan::ListAll);
        assert_eq!(
            f.plan(&res("apps", "deployments", "Deployment", true)),
            ResourcePlan::ListAll
        );
        assert_eq!(
            f.plan(&res("", "secrets", "Secret", true)),
            ResourcePlan::Skip
        );
        let g = BackupFilter {
            exclude_resources: s(&["secrets"]),
            ..Default::default()
        };
        assert_eq!(
            g.plan(&res("", "secrets", "Secret", true)),
            ResourcePlan::Skip
        );
    }

    #[test]
    fn excluded_objects() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
        let mut m = ObjectMeta::default();
        assert!(!object_excluded(&m));
        m.labels = Some([(EXCLUDE_LABEL.to_string(), "true".to_string())].into());
        assert!(object_excluded(&m));
        let d = ObjectMeta {
            deletion_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..Default::default()
        };
        assert!(object_excluded(&d));
    }
}
