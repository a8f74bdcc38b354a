//! Listing objects: paginated LISTs (server-side `limit`/`continue`) of many resources at once
//! under the run's QPS budget, each object filtered and handed to the archive pipeline as it
//! arrives, as the API server's bytes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kube::api::{DynamicObject, GetParams, ListParams};
use kube::{Client, Resource};

use super::filter::excluded;
use super::pipeline::{ArchiveItem, Closed, ItemSender};
use super::raw::{RawItem, RawList, TypeHead};
use crate::archive::ItemKey;
use crate::cluster::{Budget, ServedResource, describe, is_not_found};
use crate::report::{Results, RunLog};

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
    /// Resource-list key → how long its listing took, first request to last page archived.
    pub listed_in: BTreeMap<String, Duration>,
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
    pub out: ItemSender,
    /// Counters.
    pub progress: Arc<Progress>,
    /// Accumulated findings.
    pub collected: Arc<Mutex<Collected>>,
    /// Group-resources served by CRDs (to pull CRDs in, in auto mode).
    pub crd_group_resources: Arc<BTreeSet<String>>,
    /// The run's log (a line per item at debug level).
    pub log: Arc<RunLog>,
    /// Pods (`(namespace, name)`) not archived: a pre hook with `onError: Fail` failed in them,
    /// which fails the pod's item as in Velero ([`crate::hooks`]).
    pub skip_pods: Arc<BTreeSet<(String, String)>>,
}

/// How many times one resource's listing is started again after its continue token expired
/// (`410 Gone`) before the error is recorded.
const MAX_RELISTS: u32 = 5;

/// Whether a client error is `410 Gone` (an expired continue token or resource version).
fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 410)
}

/// Attempts of one LIST page whose request failed transiently ([`crate::cluster::is_transient`]:
/// a reset or cut connection, a timeout, 429/5xx after the client's own retries), with
/// exponential backoff from 200 ms to 5 s and jitter.
const PAGE_ATTEMPTS: usize = 6;

/// One LIST request under the budget; the response body as text. A transient failure is tried
/// again ([`PAGE_ATTEMPTS`]): a LIST is idempotent, and the same continue token gives the same
/// page.
async fn fetch_page(
    client: Client,
    budget: Budget,
    url: String,
    lp: ListParams,
) -> Result<String, kube::Error> {
    use backon::{ExponentialBuilder, Retryable};
    let attempt = || async {
        budget.acquire().await;
        let req = kube::core::Request::new(&url)
            .list(&lp)
            .map_err(kube::Error::BuildRequest)?;
        client.request_text(req).await
    };
    attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(std::time::Duration::from_millis(200))
                .with_max_delay(std::time::Duration::from_secs(5))
                .with_max_times(PAGE_ATTEMPTS - 1)
                .with_jitter(),
        )
        .when(crate::cluster::is_transient)
        .notify(|e, after| {
            tracing::debug!(url = %url, "LIST failed ({}); again in {after:?}", crate::cluster::describe(e))
        })
        .await
}

impl Lister {
    /// Lists every matching object of `r`, page by page, sending each page's admitted objects to
    /// the pipeline as one batch. The next page is requested as soon as the current one's
    /// continue token is known, so the API server works while this page is filtered and
    /// archived. Items stay the API server's bytes, shared with the page (see [`super::raw`]).
    /// Request failures are recorded as errors in the results and do not stop other resources.
    ///
    /// # Errors
    /// [`Closed`] when the archive pipeline has stopped (then the backup fails).
    pub async fn list_resource(&self, r: &ServedResource) -> Result<(), Closed> {
        let started = Instant::now();
        let ar = r.api_resource();
        let kind = self.kind_of(r);
        let order = self
            .ordered
            .iter()
            .find(|(res, _)| r.matches_name(res))
            .map(|(_, list)| list.as_str());
        let mut held: Vec<RawItem> = Vec::new();
        let scopes: Vec<Option<String>> = if r.namespaced && self.per_namespace {
            self.namespaces.iter().cloned().map(Some).collect()
        } else {
            vec![None]
        };
        for ns in scopes {
            let url = DynamicObject::url_path(&ar, ns.as_deref());
            let params = |token: Option<String>| {
                let mut lp = ListParams::default().limit(self.page_size);
                if let Some(sel) = &self.label_selector {
                    lp = lp.labels(sel);
                }
                if let Some(t) = &token {
                    lp = lp.continue_token(t);
                }
                lp
            };
            let spawn = |lp: ListParams| {
                tokio::spawn(fetch_page(
                    self.client.clone(),
                    self.budget.clone(),
                    url.clone(),
                    lp,
                ))
            };
            let mut next = Some(spawn(params(None)));
            // Whether the pending request carries a continue token.
            let mut continued = false;
            // Items already taken from this listing, and whether a restart of it may repeat
            // some (then they are skipped).
            let mut taken: HashSet<(Option<String>, String)> = HashSet::new();
            let mut restarts = 0;
            while let Some(pending) = next.take() {
                let failed = |msg: String| {
                    let mut c = self.collected.lock().expect("collected lock");
                    c.results.errors.add(ns.as_deref(), msg);
                };
                let text = match pending.await {
                    Ok(Ok(text)) => text,
                    // An expired continue token (etcd compacted past the listing's snapshot):
                    // list this resource again from a fresh snapshot; what was already taken
                    // is not taken twice. Kubernetes API conventions, "410 Gone" on `continue`.
                    Ok(Err(e)) if is_gone(&e) && continued && restarts < MAX_RELISTS => {
                        restarts += 1;
                        self.log.warn(&format!(
                            "listing {}: continue token expired ({}); listing it again from a fresh snapshot ({restarts} of {MAX_RELISTS})",
                            r.group_resource(),
                            describe(&e)
                        ));
                        continued = false;
                        next = Some(spawn(params(None)));
                        continue;
                    }
                    Ok(Err(e)) => {
                        failed(format!("listing {}: {}", r.group_resource(), describe(&e)));
                        break;
                    }
                    Err(e) => {
                        failed(format!("listing {}: {e}", r.group_resource()));
                        break;
                    }
                };
                let (token, ranges) = match RawList::split(&text) {
                    Ok(split) => split,
                    Err(e) => {
                        failed(format!(
                            "listing {}: undecodable list: {e}",
                            r.group_resource()
                        ));
                        break;
                    }
                };
                continued = token.is_some();
                if let Some(token) = token {
                    next = Some(spawn(params(Some(token))));
                }
                let page = Bytes::from(text);
                let mut batch = Vec::with_capacity(ranges.len());
                for range in ranges {
                    let item = match RawItem::parse(&page, range, &kind.head) {
                        Ok(item) => item,
                        Err(e) => {
                            failed(format!("decoding an item of {}: {e}", r.group_resource()));
                            continue;
                        }
                    };
                    // Only a listing that may be restarted needs to remember what it took.
                    if continued || restarts > 0 {
                        let key = (item.namespace.clone(), item.name.clone());
                        if restarts > 0 && taken.contains(&key) {
                            continue;
                        }
                        taken.insert(key);
                    }
                    if order.is_some() {
                        held.push(item);
                    } else if let Some(item) = self.admit(r, &kind, item, false) {
                        batch.push(item);
                    }
                }
                if let Err(closed) = self.send(batch).await {
                    if let Some(pending) = next {
                        pending.abort();
                    }
                    return Err(closed);
                }
            }
        }
        if let Some(list) = order {
            // Named objects first, in the given order; the rest after, as listed.
            held.sort_by_key(|o| {
                super::filter::order_position(list, o.namespace.as_deref(), &o.name)
            });
            let batch = held
                .into_iter()
                .filter_map(|item| self.admit(r, &kind, item, false))
                .collect();
            self.send(batch).await?;
        }
        self.collected
            .lock()
            .expect("collected lock")
            .listed_in
            .insert(kind.list_key.clone(), started.elapsed());
        self.progress.resources_done.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Sends a batch to the pipeline and counts its items.
    async fn send(&self, batch: Vec<ArchiveItem>) -> Result<(), Closed> {
        let n = batch.len() as u64;
        self.out.send(batch).await?;
        self.progress.items.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }

    /// Fetches one object by name (related cluster-scoped items) and takes it if it exists.
    ///
    /// # Errors
    /// [`Closed`].
    pub async fn fetch_one(&self, r: &ServedResource, name: &str) -> Result<(), Closed> {
        let url = DynamicObject::url_path(&r.api_resource(), None);
        let kind = self.kind_of(r);
        self.budget.acquire().await;
        let got = match kube::core::Request::new(&url).get(name, &GetParams::default()) {
            Ok(req) => self.client.request_text(req).await,
            Err(e) => Err(kube::Error::BuildRequest(e)),
        };
        let failed = |msg: String| {
            self.collected
                .lock()
                .expect("collected lock")
                .results
                .errors
                .add(None, msg);
        };
        match got {
            Ok(text) => {
                let len = text.len();
                match RawItem::parse(&Bytes::from(text), 0..len, &kind.head) {
                    Ok(item) => {
                        let batch = self.admit(r, &kind, item, true).into_iter().collect();
                        self.send(batch).await
                    }
                    Err(e) => {
                        failed(format!("decoding {} {name}: {e}", r.group_resource()));
                        Ok(())
                    }
                }
            }
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => {
                failed(format!(
                    "getting {} {name}: {}",
                    r.group_resource(),
                    describe(&e)
                ));
                Ok(())
            }
        }
    }

    /// What the items of `r` share.
    fn kind_of(&self, r: &ServedResource) -> ResourceKind {
        let api_version = r.api_version();
        let group_resource = r.group_resource();
        ResourceKind {
            head: TypeHead::new(&api_version, &r.kind),
            list_key: format!("{api_version}/{}", r.kind),
            custom: self.crd_group_resources.contains(&group_resource),
            group_resource,
        }
    }

    /// Filters one object and records it (resource list, namespaces, related objects); the
    /// archive item when it is taken. `related` objects (pulled in by an included object) bypass
    /// the label selectors.
    fn admit(
        &self,
        r: &ServedResource,
        kind: &ResourceKind,
        item: RawItem,
        related: bool,
    ) -> Option<ArchiveItem> {
        if excluded(item.deleting, Some(&item.labels)) {
            return None;
        }
        if !related
            && !self.filter.or_selectors.is_empty()
            && !self.filter.labels_match(&item.labels)
        {
            return None;
        }
        let RawItem {
            name,
            namespace,
            volume_name,
            json,
            ..
        } = item;
        if let Some(ns) = &namespace
            && !self.namespaces.contains(ns)
        {
            return None;
        }
        if !self.skip_pods.is_empty()
            && r.group.is_empty()
            && r.resource == "pods"
            && let Some(ns) = &namespace
            && self.skip_pods.contains(&(ns.clone(), name.clone()))
        {
            return None;
        }
        // Namespace objects follow the namespace filter too.
        if r.group.is_empty() && r.resource == "namespaces" && !self.namespaces.contains(&name) {
            return None;
        }
        {
            let mut c = self.collected.lock().expect("collected lock");
            let entry = match &namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name.clone(),
            };
            if self.log.debug_enabled() {
                self.log
                    .debug(&format!("Backed up item {} {entry}", kind.list_key));
            }
            match c.resource_list.get_mut(&kind.list_key) {
                Some(names) => names.push(entry),
                None => {
                    c.resource_list.insert(kind.list_key.clone(), vec![entry]);
                }
            }
            if let Some(ns) = &namespace
                && !c.namespaces_with_items.contains(ns)
            {
                c.namespaces_with_items.insert(ns.clone());
            }
            if r.group.is_empty()
                && r.resource == "persistentvolumeclaims"
                && let Some(pv) = volume_name
            {
                c.referenced_pvs.insert(pv);
            }
            if kind.custom {
                c.custom_group_resources.insert(kind.group_resource.clone());
            }
        }
        Some(ArchiveItem {
            key: ItemKey {
                group_resource: kind.group_resource.clone(),
                version: r.version.clone(),
                namespace,
                name,
            },
            json,
        })
    }
}

/// What every item of one resource shares, computed once per resource: its type head, its key
/// in the resource list, its group-resource.
struct ResourceKind {
    head: TypeHead,
    /// `"<apiVersion>/<Kind>"`, Velero's resource-list key.
    list_key: String,
    group_resource: String,
    /// Served by a CRD (its CRD comes along in auto mode).
    custom: bool,
}
