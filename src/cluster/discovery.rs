//! Discovery of every resource the API server serves, at each group's preferred version.
//!
//! Uses aggregated discovery (`apidiscovery.k8s.io/v2`, two requests) and falls back to per-group
//! discovery on servers without it. A broken group never fails the run: an APIService whose
//! backend is down (a `Stale` version in aggregated discovery, or an error from its group in the
//! fallback) is reported in [`Discovered::failed_groups`] and the rest is returned.

use futures::StreamExt;
use kube::Client;
use kube::api::ApiResource;

use super::{Budget, ClusterError};

/// One served resource at its group's preferred version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedResource {
    /// API group, `""` for the core group.
    pub group: String,
    /// The most preferred version of its group that serves this resource.
    pub version: String,
    /// Plural resource name (`deployments`).
    pub resource: String,
    /// Kind (`Deployment`).
    pub kind: String,
    /// Singular name (`deployment`), may be empty.
    pub singular: String,
    /// Short names (`deploy`).
    pub short_names: Vec<String>,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Supported verbs (`list`, `create`...).
    pub verbs: Vec<String>,
}

impl ServedResource {
    /// `<resource>.<group>`, or `<resource>` for the core group.
    pub fn group_resource(&self) -> String {
        crate::archive::ItemKey::group_resource(&self.resource, &self.group)
    }

    /// `apiVersion` of objects of this resource (`apps/v1`, `v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The kube-rs dynamic type for this resource.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: self.api_version(),
            kind: self.kind.clone(),
            plural: self.resource.clone(),
        }
    }

    /// Whether `verb` is supported.
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }

    /// Whether `name` designates this resource the way `kubectl` accepts it: plural, singular,
    /// short name or kind (case-insensitive), optionally qualified with `.<group>`.
    pub fn matches_name(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let (base, group) = match name.split_once('.') {
            Some((b, g)) => (b.to_string(), Some(g.to_string())),
            None => (name.clone(), None),
        };
        if let Some(g) = &group
            && g != &self.group
        {
            return false;
        }
        base == self.resource
            || (!self.singular.is_empty() && base == self.singular)
            || base == self.kind.to_ascii_lowercase()
            || self.short_names.iter().any(|s| s == &base)
    }
}

/// The result of discovery.
#[derive(Clone, Debug, Default)]
pub struct Discovered {
    /// Served resources (top-level only, no subresources), sorted by group then resource.
    pub resources: Vec<ServedResource>,
    /// Groups that could not be discovered, with the reason (`metrics.k8s.io/v1beta1: stale`).
    pub failed_groups: Vec<String>,
}

impl Discovered {
    /// Finds the resource for a group-resource string (`deployments.apps`, `pods`).
    pub fn by_group_resource(&self, gr: &str) -> Option<&ServedResource> {
        self.resources.iter().find(|r| r.group_resource() == gr)
    }
}

/// Discovers the served resources.
///
/// # Errors
/// [`ClusterError::Request`] only when even the group list cannot be read (cluster unreachable,
/// credentials refused); broken individual groups are reported in [`Discovered::failed_groups`].
pub async fn discover(client: &Client, budget: &Budget) -> Result<Discovered, ClusterError> {
    // Both documents at once (one round trip, not two); the core one only counts when the
    // server speaks aggregated discovery at all.
    let (apis, core) = tokio::join!(
        async {
            budget.acquire().await;
            client.list_api_groups_aggregated().await
        },
        async {
            budget.acquire().await;
            client.list_core_api_versions_aggregated().await
        }
    );
    let mut out = match apis {
        Ok(apis) => {
            let core = core.map_err(|e| ClusterError::Request {
                what: "discovery of the core group".into(),
                source: e,
            })?;
            let mut d = Discovered::default();
            for g in core.items.into_iter().chain(apis.items) {
                from_aggregated(g, &mut d);
            }
            d
        }
        Err(e) if matches!(&e, kube::Error::Api(s) if s.code == 406 || s.code == 404) => {
            legacy(client, budget).await?
        }
        Err(e) => {
            return Err(ClusterError::Request {
                what: "discovery".into(),
                source: e,
            });
        }
    };
    out.resources
        .sort_by(|a, b| (&a.group, &a.resource).cmp(&(&b.group, &b.resource)));
    Ok(out)
}

fn from_aggregated(g: kube::client::APIGroupDiscovery, out: &mut Discovered) {
    let group = g.metadata.and_then(|m| m.name).unwrap_or_default();
    // Versions are listed in preference order. Like client-go's ServerPreferredResources, each
    // resource is taken at the most preferred version that serves it, so a resource that only
    // exists in an older version (a v1alpha1 kind beside a v1 group) is not missed.
    let mut seen = std::collections::BTreeSet::new();
    for v in g.versions {
        let version = v.version.unwrap_or_default();
        if v.freshness.as_deref() == Some("Stale") {
            let gv = if group.is_empty() {
                version
            } else {
                format!("{group}/{version}")
            };
            out.failed_groups.push(format!(
                "{gv}: discovery is stale (the APIService backend is unavailable)"
            ));
            continue;
        }
        for r in v.resources {
            let Some(resource) = r.resource else { continue };
            if resource.contains('/') || !seen.insert(resource.clone()) {
                continue;
            }
            let kind = r.response_kind.and_then(|k| k.kind).unwrap_or_default();
            out.resources.push(ServedResource {
                group: group.clone(),
                version: version.clone(),
                resource,
                kind,
                singular: r.singular_resource.unwrap_or_default(),
                short_names: r.short_names,
                namespaced: r.scope.as_deref() == Some("Namespaced"),
                verbs: r.verbs,
            });
        }
    }
}

async fn legacy(client: &Client, budget: &Budget) -> Result<Discovered, ClusterError> {
    let groups = client
        .list_api_groups()
        .await
        .map_err(|e| ClusterError::Request {
            what: "discovery".into(),
            source: e,
        })?;
    let mut gvs: Vec<(String, String)> = vec![(String::new(), "v1".into())];
    for g in groups.groups {
        let preferred = g.preferred_version.map(|p| p.version);
        let mut versions: Vec<String> = g.versions.into_iter().map(|v| v.version).collect();
        if let Some(p) = &preferred
            && let Some(i) = versions.iter().position(|v| v == p)
        {
            let p = versions.remove(i);
            versions.insert(0, p);
        }
        gvs.extend(versions.into_iter().map(|v| (g.name.clone(), v)));
    }
    let results: Vec<_> =
        futures::stream::iter(gvs.into_iter().map(|(group, version)| async move {
            budget.acquire().await;
            let res = if group.is_empty() {
                client.list_core_api_resources(&version).await
            } else {
                client
                    .list_api_group_resources(&format!("{group}/{version}"))
                    .await
            };
            (group, version, res)
        }))
        .buffered(8)
        .collect()
        .await;
    let mut out = Discovered::default();
    let mut seen = std::collections::BTreeSet::new();
    for (group, version, res) in results {
        match res {
            Ok(list) => {
                for r in list.resources {
                    if r.name.contains('/') || !seen.insert((group.clone(), r.name.clone())) {
                        continue;
                    }
                    out.resources.push(ServedResource {
                        group: group.clone(),
                        version: version.clone(),
                        resource: r.name,
                        kind: r.kind,
                        singular: r.singular_name,
                        short_names: r.short_names.unwrap_or_default(),
                        namespaced: r.namespaced,
                        verbs: r.verbs,
                    });
                }
            }
            Err(e) => {
                let gv = if group.is_empty() {
                    version
                } else {
                    format!("{group}/{version}")
                };
                out.failed_groups
                    .push(format!("{gv}: {}", super::describe(&e)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy() -> ServedResource {
        ServedResource {
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
            kind: "Deployment".into(),
            singular: "deployment".into(),
            short_names: vec!["deploy".into()],
            namespaced: true,
            verbs: vec!["list".into(), "create".into()],
        }
    }

    #[test]
    fn matches_kubectl_style_names() {
        let d = deploy();
        for n in [
            "deployments",
            "deployment",
            "deploy",
            "Deployment",
            "deployments.apps",
        ] {
            assert!(d.matches_name(n), "{n}");
        }
        for n in ["deployments.extensions", "pods", "dep"] {
            assert!(!d.matches_name(n), "{n}");
        }
        assert_eq!(d.group_resource(), "deployments.apps");
        assert_eq!(d.api_version(), "apps/v1");
    }

    #[test]
    fn resources_only_in_older_versions_are_kept() {
        let json = serde_json::json!({
            "metadata": {"name": "monitoring.coreos.com"},
            "versions": [
                {"version": "v1", "resources": [
                    {"resource": "prometheuses", "responseKind": {"kind": "Prometheus"}, "scope": "Namespaced", "verbs": ["list"]}]},
                {"version": "v1alpha1", "resources": [
                    {"resource": "prometheuses", "responseKind": {"kind": "Prometheus"}, "scope": "Namespaced", "verbs": ["list"]},
                    {"resource": "prometheusagents", "responseKind": {"kind": "PrometheusAgent"}, "scope": "Namespaced", "verbs": ["list"]}]}
            ]
        });
        let g: kube::client::APIGroupDiscovery = serde_json::from_value(json).unwrap();
        let mut d = Discovered::default();
        from_aggregated(g, &mut d);
        let got: Vec<(String, String)> = d
            .resources
            .iter()
            .map(|r| (r.resource.clone(), r.version.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("prometheuses".to_string(), "v1".to_string()),
                ("prometheusagents".to_string(), "v1alpha1".to_string())
            ]
        );
    }

    #[test]
    fn stale_groups_are_reported_not_fatal() {
        let json = serde_json::json!({
            "metadata": {"name": "metrics.k8s.io"},
            "versions": [{"version": "v1beta1", "freshness": "Stale", "resources": []}]
        });
        let g: kube::client::APIGroupDiscovery = serde_json::from_value(json).unwrap();
        let mut d = Discovered::default();
        from_aggregated(g, &mut d);
        assert!(d.resources.is_empty());
        assert_eq!(d.failed_groups.len(), 1);
        assert!(d.failed_groups[0].starts_with("metrics.k8s.io/v1beta1"));
    }
}
