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
    /// Two options that cannot be used together.
    #[error("{0} cannot be used together with {1}")]
    Conflict(&'static str, &'static str),
    /// An `--ordered-resources` value that is not `resource=ns/name,...;resource2=...`.
    #[error("--ordered-resources: {0}")]
    BadOrder(String),
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

/// Group-resources that are never backed up or restored (Velero's list plus tidemark's own);
/// [`EVENT_RESOURCES`] only unless [`BackupFilter::include_events`].
pub const NEVER_BACKED_UP: &[&str] = &["nodes", "events", "events.events.k8s.io"];

/// The group-resources of Events: backed up on request (never restored).
pub const EVENT_RESOURCES: &[&str] = &["events", "events.events.k8s.io"];

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

/// The resource filters: Velero's old style (`--include-resources`, `--exclude-resources`,
/// `--include-cluster-resources`) or the scoped style (`--include/exclude-cluster-scoped-resources`,
/// `--include/exclude-namespace-scoped-resources`); the two cannot be mixed.
#[derive(Clone, Debug)]
pub enum ResourceFilter {
    /// The old style.
    Classic {
        /// Resources to include (kubectl-style names; empty or `*` = all).
        include: Vec<String>,
        /// Resources to exclude.
        exclude: Vec<String>,
        /// `Some(true)`: all cluster-scoped resources; `Some(false)`: none; `None` (auto): all
        /// when every namespace is included, else only those related to included objects.
        include_cluster_resources: Option<bool>,
    },
    /// The scoped style.
    Scoped {
        /// Cluster-scoped resources to include (`*` = all; empty = auto).
        include_cluster: Vec<String>,
        /// Cluster-scoped resources to exclude (`*` = all).
        exclude_cluster: Vec<String>,
        /// Namespace-scoped resources to include (empty or `*` = all).
        include_namespaced: Vec<String>,
        /// Namespace-scoped resources to exclude (`*` = all).
        exclude_namespaced: Vec<String>,
    },
}

impl Default for ResourceFilter {
    fn default() -> Self {
        Self::Classic {
            include: Vec::new(),
            exclude: Vec::new(),
            include_cluster_resources: None,
        }
    }
}

fn any_matches(names: &[String], r: &ServedResource) -> bool {
    names.iter().any(|n| n == "*" || r.matches_name(n))
}

/// Everything that decides what a backup takes.
#[derive(Clone, Debug)]
pub struct BackupFilter {
    /// Namespaces.
    pub namespaces: Patterns,
    /// Resources.
    pub resources: ResourceFilter,
    /// A label selector in Kubernetes' string form (`app=web,tier!=db`), applied server-side.
    pub label_selector: Option<String>,
    /// `--or-selector`: objects matching any of these are taken (applied client-side).
    pub or_selectors: Vec<crate::cluster::selector::LabelMatcher>,
    /// Events are backed up (otherwise never).
    pub include_events: bool,
}

impl Default for BackupFilter {
    fn default() -> Self {
        Self {
            namespaces: Patterns::all(),
            resources: ResourceFilter::default(),
            label_selector: None,
            or_selectors: Vec::new(),
            include_events: false,
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
    fn selects_labels(&self) -> bool {
        self.label_selector.is_some() || !self.or_selectors.is_empty()
    }

    /// Whether the backup is of the whole cluster (every namespace, no label selection), which
    /// makes `auto` take every cluster-scoped resource.
    pub fn whole_cluster(&self) -> bool {
        self.namespaces.is_all() && !self.selects_labels()
    }

    /// Whether `labels` pass the `--or-selector` filter (always true without one).
    pub fn labels_match(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        self.or_selectors.is_empty() || self.or_selectors.iter().any(|m| m.matches(labels))
    }

    /// Decides how `r` takes part in the backup.
    pub fn plan(&self, r: &ServedResource) -> ResourcePlan {
        let gr = r.group_resource();
        let asked_for = self.include_events && EVENT_RESOURCES.contains(&gr.as_str());
        if (NEVER_BACKED_UP.contains(&gr.as_str()) && !asked_for)
            || RECORD_GROUPS.contains(&r.group.as_str())
            || !r.supports("list")
            || !r.supports("create")
        {
            return ResourcePlan::Skip;
        }
        let is_namespace_kind = gr == "namespaces";
        match &self.resources {
            ResourceFilter::Classic {
                include,
                exclude,
                include_cluster_resources,
            } => {
                let selected = (include.is_empty() || any_matches(include, r))
                    && !exclude.iter().any(|n| r.matches_name(n));
                if !selected {
                    return ResourcePlan::Skip;
                }
                if r.namespaced {
                    return ResourcePlan::ListAll;
                }
                if is_namespace_kind {
                    // Namespace objects follow the namespace filter, not the cluster switch.
                    return if *include_cluster_resources == Some(false) {
                        ResourcePlan::RelatedOnly
                    } else {
                        ResourcePlan::ListAll
                    };
                }
                match include_cluster_resources {
                    Some(true) => ResourcePlan::ListAll,
                    Some(false) => ResourcePlan::Skip,
                    None if self.whole_cluster() => ResourcePlan::ListAll,
                    None => ResourcePlan::RelatedOnly,
                }
            }
            ResourceFilter::Scoped {
                include_cluster,
                exclude_cluster,
                include_namespaced,
                exclude_namespaced,
            } => {
                if r.namespaced {
                    let excluded = any_matches(exclude_namespaced, r);
                    let included =
                        include_namespaced.is_empty() || any_matches(include_namespaced, r);
                    return if included && !excluded {
                        ResourcePlan::ListAll
                    } else {
                        ResourcePlan::Skip
                    };
                }
                if is_namespace_kind {
                    return ResourcePlan::ListAll;
                }
                if any_matches(exclude_cluster, r) {
                    return ResourcePlan::Skip;
                }
                let all_namespaced =
                    include_namespaced.is_empty() || include_namespaced.iter().any(|n| n == "*");
                if any_matches(include_cluster, r)
                    || (include_cluster.is_empty()
                        && exclude_cluster.is_empty()
                        && all_namespaced
                        && exclude_namespaced.is_empty()
                        && self.whole_cluster())
                {
                    ResourcePlan::ListAll
                } else {
                    ResourcePlan::RelatedOnly
                }
            }
        }
    }
}

/// Whether an object must be skipped whatever the filters: being deleted, or labelled
/// `velero.io/exclude-from-backup=true`.
pub fn object_excluded(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    excluded(meta.deletion_timestamp.is_some(), meta.labels.as_ref())
}

/// [`object_excluded`] on the two fields it reads: whether `metadata.deletionTimestamp` is set,
/// and `metadata.labels`.
pub fn excluded(
    deleting: bool,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    deleting
        || labels
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

    fn classic(inc: &[&str], exc: &[&str], cluster: Option<bool>) -> ResourceFilter {
        ResourceFilter::Classic {
            include: s(inc),
            exclude: s(exc),
            include_cluster_resources: cluster,
        }
    }

    fn scoped(ic: &[&str], ec: &[&str], inn: &[&str], en: &[&str]) -> ResourceFilter {
        ResourceFilter::Scoped {
            include_cluster: s(ic),
            exclude_cluster: s(ec),
            include_namespaced: s(inn),
            exclude_namespaced: s(en),
        }
    }

    #[test]
    fn scoped_filters() {
        let pv = res("", "persistentvolumes", "PersistentVolume", false);
        let sc = res("storage.k8s.io", "storageclasses", "StorageClass", false);
        let cm = res("", "configmaps", "ConfigMap", true);
        let dep = res("apps", "deployments", "Deployment", true);
        let ns = res("", "namespaces", "Namespace", false);
        let only_sc = BackupFilter {
            resources: scoped(&["storageclasses"], &[], &[], &[]),
            ..Default::default()
        };
        assert_eq!(only_sc.plan(&sc), ResourcePlan::ListAll);
        assert_eq!(only_sc.plan(&pv), ResourcePlan::RelatedOnly);
        assert_eq!(only_sc.plan(&cm), ResourcePlan::ListAll);
        assert_eq!(only_sc.plan(&ns), ResourcePlan::ListAll);
        let no_cluster = BackupFilter {
            resources: scoped(&[], &["*"], &["deployments.apps"], &[]),
            ..Default::default()
        };
        assert_eq!(no_cluster.plan(&pv), ResourcePlan::Skip);
        assert_eq!(no_cluster.plan(&sc), ResourcePlan::Skip);
        assert_eq!(no_cluster.plan(&dep), ResourcePlan::ListAll);
        assert_eq!(no_cluster.plan(&cm), ResourcePlan::Skip);
        let everything = BackupFilter {
            resources: scoped(&[], &[], &[], &["configmaps"]),
            ..Default::default()
        };
        assert_eq!(everything.plan(&cm), ResourcePlan::Skip);
        assert_eq!(everything.plan(&dep), ResourcePlan::ListAll);
        // Excluding a namespaced kind makes the backup partial: cluster-scoped go auto.
        assert_eq!(everything.plan(&pv), ResourcePlan::RelatedOnly);
        let full = BackupFilter {
            resources: scoped(&[], &[], &["*"], &[]),
            ..Default::default()
        };
        assert_eq!(full.plan(&pv), ResourcePlan::ListAll);
    }

    #[test]
    fn or_selectors_match_any() {
        use crate::cluster::selector::{LabelMatcher, parse};
        let f = BackupFilter {
            or_selectors: vec![
                LabelMatcher::new(&parse("app=a").unwrap()).unwrap(),
                LabelMatcher::new(&parse("tier in (db)").unwrap()).unwrap(),
            ],
            ..Default::default()
        };
        let l = |k: &str, v: &str| [(k.to_string(), v.to_string())].into();
        assert!(f.labels_match(&l("app", "a")));
        assert!(f.labels_match(&l("tier", "db")));
        assert!(!f.labels_match(&l("app", "b")));
        assert!(!f.whole_cluster());
        assert!(BackupFilter::default().labels_match(&l("x", "y")));
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
    fn events_only_when_asked_for_and_nodes_never() {
        let f = BackupFilter {
            include_events: true,
            ..BackupFilter::default()
        };
        assert_eq!(
            f.plan(&res("", "events", "Event", true)),
            ResourcePlan::ListAll
        );
        assert_eq!(
            f.plan(&res("events.k8s.io", "events", "Event", true)),
            ResourcePlan::ListAll
        );
        assert_eq!(f.plan(&res("", "nodes", "Node", false)), ResourcePlan::Skip);
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
        let selected = BackupFilter {
            label_selector: Some("app=web".into()),
            ..Default::default()
        };
        assert_eq!(selected.plan(&pv), ResourcePlan::RelatedOnly);
        assert_eq!(filtered.plan(&pv), ResourcePlan::RelatedOnly);
        assert_eq!(filtered.plan(&ns), ResourcePlan::ListAll);
        let off = BackupFilter {
            resources: classic(&[], &[], Some(false)),
            ..Default::default()
        };
        assert_eq!(off.plan(&pv), ResourcePlan::Skip);
        let on = BackupFilter {
            resources: classic(&[], &[], Some(true)),
            namespaces: Patterns::new("n", &s(&["web"]), &[]).unwrap(),
            ..Default::default()
        };
        assert_eq!(on.plan(&pv), ResourcePlan::ListAll);
    }

    #[test]
    fn resource_include_exclude() {
        let f = BackupFilter {
            resources: classic(&["deployments.apps", "cm"], &[], None),
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
            resources: classic(&[], &["secrets"], None),
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

/// Parses Velero's `--ordered-resources` value: `pods=ns1/pod1,ns1/pod2;persistentvolumes=pv4,pv8`
/// into resource → `ns/name,...` (the shape of `spec.orderedResources`).
///
/// # Errors
/// [`FilterError::BadOrder`].
pub fn parse_ordered_resources(
    s: &str,
) -> Result<std::collections::BTreeMap<String, String>, FilterError> {
    let mut out = std::collections::BTreeMap::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (res, names) = part.split_once('=').ok_or_else(|| {
            FilterError::BadOrder(format!("{part:?} is not resource=name1,name2"))
        })?;
        let names: Vec<&str> = names
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if res.trim().is_empty() || names.is_empty() {
            return Err(FilterError::BadOrder(format!(
                "{part:?} names no resource or no objects"
            )));
        }
        out.insert(res.trim().to_string(), names.join(","));
    }
    Ok(out)
}

/// The position of `ns/name` (or `name`) in an ordered list (`ns/name,...`), `usize::MAX` if absent.
pub fn order_position(list: &str, namespace: Option<&str>, name: &str) -> usize {
    let key = match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    };
    list.split(',').position(|e| e == key).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn ordered_resources_parse_and_position() {
        let m = parse_ordered_resources("pods=ns1/p1,ns1/p2; persistentvolumes=pv4,pv8").unwrap();
        assert_eq!(m["pods"], "ns1/p1,ns1/p2");
        assert_eq!(m["persistentvolumes"], "pv4,pv8");
        assert_eq!(order_position(&m["pods"], Some("ns1"), "p2"), 1);
        assert_eq!(order_position(&m["persistentvolumes"], None, "pv4"), 0);
        assert_eq!(order_position(&m["pods"], Some("ns2"), "p1"), usize::MAX);
        for bad in ["pods", "=a", "pods="] {
            assert!(parse_ordered_resources(bad).is_err(), "{bad}");
        }
    }
}
