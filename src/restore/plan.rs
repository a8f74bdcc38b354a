//! What of a backup a restore brings back, and in which order: the restore's filters, namespace
//! mappings and resource priorities applied to the archive's index ([`plan`]), each object held
//! as its identity only until it is applied ([`RestorePlan::materialize`]).

use super::*;

/// One object to restore. Only its identity is held in memory; its JSON is read from the
/// extracted archive and transformed when it is applied ([`RestorePlan::materialize`]), so a
/// restore's memory does not grow with the size of the backup.
#[derive(Clone, Debug)]
pub struct PlannedItem {
    /// Its group-resource.
    pub group_resource: String,
    /// The resource to create it with (shared by the items of one kind and version).
    pub api_resource: std::sync::Arc<ApiResource>,
    /// Target namespace (`None` = cluster-scoped).
    pub namespace: Option<String>,
    /// Target name.
    pub name: String,
    /// Namespace in the backup (resource-modifier conditions match on it, as in Velero).
    pub source_namespace: Option<String>,
    /// The extracted item's place in the plan's spool.
    pub at: SpoolRef,
    /// Whether its `status` is restored too (through the status subresource).
    pub restore_status: bool,
}

/// A restore plan: tiers of objects to restore plus what was left out.
#[derive(Debug, Default)]
pub struct RestorePlan {
    /// Ordered tiers.
    pub tiers: Vec<Vec<PlannedItem>>,
    /// Items skipped by rule (finished pods...), with results entries.
    pub skipped: u64,
    /// PersistentVolumes not restored because their reclaim policy is `Delete` (Velero's rule:
    /// such a volume was deleted with its claim, so restoring the object would point at storage
    /// that is gone); their claims lose `volumeName` and are provisioned anew — or from their
    /// CSI snapshot, or filled by their pod volume restore.
    pub reprovisioned: Vec<String>,
    /// Warnings and errors found while planning (unreadable items).
    pub results: Results,
    /// Target namespaces that namespaced items need.
    pub namespaces: BTreeSet<String>,
    /// The transforms' parameters.
    pub context: TransformContext,
    /// Resource modifiers applied last.
    pub modifiers: Option<std::sync::Arc<modifiers::ResourceModifiers>>,
    /// The extracted archive's items (`None` only for an empty default plan).
    pub spool: Option<std::sync::Arc<Spool>>,
}

impl RestorePlan {
    /// Reads an item and applies every transform and the resource modifiers: the object to
    /// create, and its backed-up status when the restore asks for it.
    ///
    /// # Errors
    /// A message when the item cannot be read or a modifier fails.
    pub fn materialize(&self, item: &PlannedItem) -> Result<(Value, Option<Value>), String> {
        let spool = self.spool.as_ref().ok_or("the plan has no archive")?;
        let mut obj: Value = spool
            .read(item.at)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))?;
        let status = if item.restore_status {
            obj.get("status").cloned()
        } else {
            None
        };
        transform::prepare(&item.group_resource, &mut obj, &self.context);
        if let Some(m) = &self.modifiers {
            m.apply(
                &item.group_resource,
                item.source_namespace.as_deref(),
                &mut obj,
            )
            .map_err(|e| format!("resource modifiers: {e}"))?;
        }
        Ok((obj, status))
    }
}

fn api_resource_for(group_resource: &str, obj: &Value) -> Option<ApiResource> {
    let api_version = obj.get("apiVersion")?.as_str()?.to_string();
    let kind = obj.get("kind")?.as_str()?.to_string();
    let (plural, group) = match group_resource.split_once('.') {
        Some((p, g)) => (p.to_string(), g.to_string()),
        None => (group_resource.to_string(), String::new()),
    };
    let version = api_version
        .rsplit_once('/')
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| api_version.clone());
    Some(ApiResource {
        group,
        version,
        api_version,
        kind,
        plural,
    })
}

fn resource_matches(names: &[String], group_resource: &str, kind: &str) -> bool {
    let plural = group_resource
        .split_once('.')
        .map_or(group_resource, |(p, _)| p);
    names.iter().any(|n| {
        let n = n.to_ascii_lowercase();
        n == "*" || n == group_resource || n == plural || n == kind.to_ascii_lowercase()
    })
}

/// Builds the plan from an extracted archive (pure apart from reading the extracted files).
///
/// # Errors
/// [`RestoreError::Filter`] or [`RestoreError::Selector`] for invalid options.
pub fn plan(index: &ArchiveIndex, req: &RestoreRequest) -> Result<RestorePlan, RestoreError> {
    let namespaces = Patterns::new(
        "--include-namespaces/--exclude-namespaces",
        &req.include_namespaces,
        &req.exclude_namespaces,
    )?;
    let matcher = match req.selector.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(s) => Some(LabelMatcher::new(&selector::parse(s)?)?),
        None => None,
    };
    if matcher.is_some() && !req.or_selectors.is_empty() {
        return Err(crate::backup::FilterError::Conflict("--selector", "--or-selector").into());
    }
    let or_matchers = req
        .or_selectors
        .iter()
        .map(|s| LabelMatcher::new(&selector::parse(s)?))
        .collect::<Result<Vec<_>, SelectorError>>()?;
    let all_cluster = req.include_cluster_resources.unwrap_or(namespaces.is_all());
    let mut out = RestorePlan {
        spool: Some(index.spool.clone()),
        ..RestorePlan::default()
    };
    // (group-resource, item, api resource, restore status) — no object kept in memory.
    let mut read: Vec<(String, &IndexedItem, std::sync::Arc<ApiResource>, bool)> = Vec::new();
    let mut api_resources: BTreeMap<(String, String), std::sync::Arc<ApiResource>> =
        BTreeMap::new();
    let mut restored_pvs: BTreeSet<String> = BTreeSet::new();
    for (gr, items) in &index.items {
        if !order::restorable(gr) {
            continue;
        }
        for it in items {
            let obj: Value = match index
                .read(it)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(v) => v,
                Err(e) => {
                    out.results.errors.add(
                        it.namespace.as_deref(),
                        format!("{gr} {}: unreadable item: {e}", it.name),
                    );
                    continue;
                }
            };
            let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
            if (!req.include_resources.is_empty()
                && !resource_matches(&req.include_resources, gr, kind))
                || resource_matches(&req.exclude_resources, gr, kind)
            {
                continue;
            }
            match &it.namespace {
                Some(ns) if !namespaces.matches(ns) => continue,
                None if gr == "namespaces" && !namespaces.matches(&it.name) => continue,
                None if gr != "namespaces"
                    && !all_cluster
                    && req.include_cluster_resources != Some(true) =>
                {
                    // Auto mode with a namespace filter: cluster-scoped items only when related
                    // (PVs claimed from included namespaces; CRDs are always allowed).
                    let claim_ns = obj
                        .pointer("/spec/claimRef/namespace")
                        .and_then(Value::as_str);
                    let related = gr == "customresourcedefinitions.apiextensions.k8s.io"
                        || (gr == "persistentvolumes"
                            && claim_ns.is_some_and(|n| namespaces.matches(n)));
                    if !related || req.include_cluster_resources == Some(false) {
                        continue;
                    }
                }
                _ => {}
            }
            if gr != "namespaces" && (matcher.is_some() || !or_matchers.is_empty()) {
                let labels: BTreeMap<String, String> = obj
                    .pointer("/metadata/labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default();
                let selected = match &matcher {
                    Some(m) => m.matches(&labels),
                    None => or_matchers.iter().any(|m| m.matches(&labels)),
                };
                if !selected {
                    continue;
                }
            }
            if gr == "persistentvolumes" && req.restore_pvs == Some(false) {
                out.skipped += 1;
                out.results.warnings.add(
                    None,
                    format!(
                        "persistentvolumes {}: skipped: --restore-volumes=false",
                        it.name
                    ),
                );
                continue;
            }
            if gr == "persistentvolumes"
                && obj
                    .pointer("/spec/persistentVolumeReclaimPolicy")
                    .and_then(Value::as_str)
                    == Some("Delete")
            {
                out.skipped += 1;
                out.reprovisioned.push(it.name.clone());
                continue;
            }
            if let Disposition::Skip(reason) = transform::disposition(gr, &obj) {
                out.skipped += 1;
                let target = it.namespace.as_deref().map(|n| {
                    req.namespace_mappings
                        .get(n)
                        .map(String::as_str)
                        .unwrap_or(n)
                        .to_string()
                });
                out.results.warnings.add(
                    target.as_deref(),
                    format!("{gr} {}: skipped: {reason}", it.name),
                );
                continue;
            }
            let Some(api_resource) = api_resource_for(gr, &obj) else {
                out.results.errors.add(
                    it.namespace.as_deref(),
                    format!("{gr} {}: item without apiVersion/kind", it.name),
                );
                continue;
            };
            let api_resource = api_resources
                .entry((gr.clone(), api_resource.api_version.clone()))
                .or_insert_with(|| std::sync::Arc::new(api_resource))
                .clone();
            let restore_status = resource_matches(&req.status_include, gr, kind)
                && !resource_matches(&req.status_exclude, gr, kind);
            if gr == "persistentvolumes" {
                restored_pvs.insert(it.name.clone());
            }
            read.push((gr.clone(), it, api_resource, restore_status));
        }
    }
    let ctx = TransformContext {
        backup: req.backup.clone(),
        restore: req.name.clone(),
        namespace_mappings: req.namespace_mappings.clone(),
        preserve_node_ports: req.preserve_node_ports,
        restore_status: false,
        restored_pvs,
    };
    let mut by_gr: BTreeMap<String, Vec<PlannedItem>> = BTreeMap::new();
    for (gr, it, api_resource, restore_status) in read {
        let namespace = it
            .namespace
            .as_deref()
            .map(|n| ctx.map_namespace(n).to_string());
        let name = if gr == "namespaces" {
            ctx.map_namespace(&it.name).to_string()
        } else {
            it.name.clone()
        };
        if let Some(ns) = &namespace {
            out.namespaces.insert(ns.clone());
        }
        by_gr.entry(gr.clone()).or_default().push(PlannedItem {
            group_resource: gr,
            api_resource,
            namespace,
            name,
            source_namespace: it.namespace.clone(),
            at: it.at,
            restore_status,
        });
    }
    for tier in order::tiers(by_gr.keys().map(String::as_str).collect::<Vec<_>>()) {
        let mut items = Vec::new();
        for gr in tier {
            let mut of_gr = by_gr.remove(&gr).unwrap_or_default();
            of_gr.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            items.extend(of_gr);
        }
        out.tiers.push(items);
    }
    out.context = ctx;
    out.modifiers = req.modifiers.clone();
    Ok(out)
}
