//! Listing objects: paginated LISTs (server-side `limit`/`continue`) of many resources at once
//! under the run's QPS budget, each object filtered and handed to the archive pipeline as it
//! arrives.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::TypeMeta;
use kube::{Client, ResourceExt};
use tokio::sync::mpsc;

use super::filter::object_excluded;
use super::pipeline::ArchiveItem;
use crate::archive::ItemKey;
use crate::cluster::{Budget, ServedResource, describe};
use crate::report::Results;

/// Live counters of a backup, read by progress displays.
#[derive(Debug, Default)]
pub struct Progress {
    /// Resources (group-resources) to list.
    pub resources_total: AtomicU64,
    /// Resources fully listed.
    pub resources_done: AtomicU64,
    /// Items written to the archive.
    pub items: AtomicU64,
}

/// What listing found beyond the items themselves: the resource list, the namespaces that had
/// items, and the references that pull related cluster-scoped objects in (auto mode).
#[derive(Debug, Default)]
pub struct Collected {
    /// `"<apiVersion>/<Kind>"` (Velero's key, e.g. `apps/v1/Deployment`) → `ns/name` or `name`.
    pub resource_list: BTreeMap<String, Vec<String>>,
    /// Namespaces that had at least one item.
    pub namespaces_with_items: BTreeSet<String>,
    /// PersistentVolume names referenced by backed-up PVCs.
    pub referenced_pvs: BTreeSet<String>,
    /// Group-resources of backed-up custom resources (CRD names are `<plural>.<group>`).
    pub custom_group_resources: BTreeSet<String>,
    /// Warnings and errors.
    pub results: Results,
}

/// Shared context of the listers.
#[derive(Clone)]
pub struct Lister {
    /// The cluster.
    pub client: Client,
    /// QPS budget.
    pub budget: Budget,
    /// Page size of each LIST (`limit`).
    pub page_size: u32,
    /// Server-side label selector.
    pub label_selector: Option<String>,
    /// The filter (for client-side `--or-selector` matching).
    pub filter: Arc<super::BackupFilter>,
    /// `--ordered-resources`: resource → `ns/name,...` written first, in that order.
    pub ordered: Arc<BTreeMap<String, String>>,
    /// Namespaces whose objects are taken (active, matching, not excluded).
    pub namespaces: Arc<BTreeSet<String>>,
    /// List namespaced resources namespace by namespace (few, literally named namespaces)
    /// instead of cluster-wide.
    pub per_namespace: bool,
    /// Where items go.
    pub out: mpsc::Sender<ArchiveItem>,
    /// Counters.
    pub progress: Arc<Progress>,
    /// Accumulated findings.
    pub collected: Arc<Mutex<Collected>>,
    /// Group-resources served by CRDs (to pull CRDs in, in auto mode).
    pub crd_group_resources: Arc<BTreeSet<String>>,
}

/// Why listing stopped early for everyone.
#[derive(Debug, thiserror::Error)]
#[error("the archive pipeline stopped")]
pub struct PipelineClosed;

impl Lister {
    /// Lists every matching object of `r`, page by page, sending each to the pipeline.
    /// Request failures are recorded as errors in the results and do not stop other resources.
    ///
    /// # Errors
    /// [`PipelineClosed`] when the archive pipeline has stopped (then the backup fails).
    pub async fn list_resource(&self, r: &ServedResource) -> Result<(), PipelineClosed> {
        let ar = r.api_resource();
        let order = self
            .ordered
            .iter()
            .find(|(res, _)| r.matches_name(res))
            .map(|(_, list)| list.as_str());
        let mut held: Vec<DynamicObject> = Vec::new();
        let scopes: Vec<Option<String>> = if r.namespaced && self.per_namespace {
            self.namespaces.iter().cloned().map(Some).collect()
        } else {
            vec![None]
        };
        for ns in scopes {
            let api: Api<DynamicObject> = match &ns {
                Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                None => Api::all_with(self.client.clone(), &ar),
            };
            let mut token: Option<String> = None;
            loop {
                let mut lp = ListParams::default().limit(self.page_size);
                if let Some(sel) = &self.label_selector {
                    lp = lp.labels(sel);
                }
                if let Some(t) = &token {
                    lp = lp.continue_token(t);
                }
                self.budget.acquire().await;
                let page = match api.list(&lp).await {
                    Ok(p) => p,
                    Err(e) => {
                        let msg = format!("listing {}: {}", r.group_resource(), describe(&e));
                        let mut c = self.collected.lock().expect("collected lock");
                        c.results.errors.add(ns.as_deref(), msg);
                        break;
                    }
                };
                for obj in page.items {
                    if order.is_some() {
                        held.push(obj);
                    } else {
                        self.take(r, obj, false).await?;
                    }
                }
                token = page.metadata.continue_.filter(|t| !t.is_empty());
                if token.is_none() {
                    break;
                }
            }
        }
        if let Some(list) = order {
            // Named objects first, in the given order; the rest after, as listed.
            held.sort_by_key(|o| {
                super::filter::order_position(list, o.metadata.namespace.as_deref(), &o.name_any())
            });
            for obj in held {
                self.take(r, obj, false).await?;
            }
        }
        self.progress.resources_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Fetches one object by name (related cluster-scoped items) and takes it if it exists.
    ///
    /// # Errors
    /// [`PipelineClosed`].
    pub async fn fetch_one(&self, r: &ServedResource, name: &str) -> Result<(), PipelineClosed> {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &r.api_resource());
        self.budget.acquire().await;
        match api.get_opt(name).await {
            Ok(Some(obj)) => self.take(r, obj, true).await,
            Ok(None) => Ok(()),
            Err(e) => {
                let msg = format!("getting {} {name}: {}", r.group_resource(), describe(&e));
                self.collected
                    .lock()
                    .expect("collected lock")
                    .results
                    .errors
                    .add(None, msg);
                Ok(())
            }
        }
    }

    /// Filters one object and sends it to the archive. `related` objects (pulled in by an
    /// included object) bypass the label selectors.
    async fn take(
        &self,
        r: &ServedResource,
        mut obj: DynamicObject,
        related: bool,
    ) -> Result<(), PipelineClosed> {
        if object_excluded(&obj.metadata) {
            return Ok(());
        }
        if !related && !self.filter.or_selectors.is_empty() {
            let labels = obj.metadata.labels.clone().unwrap_or_default();
            if !self.filter.labels_match(&labels) {
                return Ok(());
            }
        }
        let namespace = obj.metadata.namespace.clone().filter(|n| !n.is_empty());
        if let Some(ns) = &namespace
            && !self.namespaces.contains(ns)
        {
            return Ok(());
        }
        // Namespace objects follow the namespace filter too.
        if r.group.is_empty()
            && r.resource == "namespaces"
            && !self.namespaces.contains(&obj.name_any())
        {
            return Ok(());
        }
        let name = obj.name_any();
        // List items of built-in types come without apiVersion/kind: set them.
        obj.types = Some(TypeMeta {
            api_version: r.api_version(),
            kind: r.kind.clone(),
        });
        let json = match serde_json::to_vec(&obj) {
            Ok(j) => j,
            Err(e) => {
                let mut c = self.collected.lock().expect("collected lock");
                c.results.errors.add(
                    namespace.as_deref(),
                    format!("encoding {} {name}: {e}", r.group_resource()),
                );
                return Ok(());
            }
        };
        {
            let mut c = self.collected.lock().expect("collected lock");
            let key = format!("{}/{}", r.api_version(), r.kind);
            let entry = match &namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name.clone(),
            };
            c.resource_list.entry(key).or_default().push(entry);
            if let Some(ns) = &namespace {
                c.namespaces_with_items.insert(ns.clone());
            }
            if r.group.is_empty()
                && r.resource == "persistentvolumeclaims"
                && let Some(pv) = obj
                    .data
                    .pointer("/spec/volumeName")
                    .and_then(|v| v.as_str())
                    .filter(|v| !v.is_empty())
            {
                c.referenced_pvs.insert(pv.to_string());
            }
            let gr = r.group_resource();
            if self.crd_group_resources.contains(&gr) {
                c.custom_group_resources.insert(gr);
            }
        }
        let item = ArchiveItem {
            key: ItemKey {
                group_resource: r.group_resource(),
                version: r.version.clone(),
                namespace,
                name,
            },
            json,
        };
        self.out.send(item).await.map_err(|_| PipelineClosed)?;
        self.progress.items.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
