//! Applying a restore's planned items to the cluster, one by one: create (sent again after a
//! transient failure), or reconcile with what exists (Velero's existing-resource policy), the
//! status subresource, the namespaces and CRDs first, and the tallies and results of the run.
//! The plan is [`super::plan`]; the run that drives this is [`super::run`].

use super::*;

pub(super) struct Applier<'a> {
    pub(super) client: &'a Client,
    pub(super) pacer: &'a pacing::CreatePacer,
    pub(super) plan: &'a RestorePlan,
    pub(super) budget: &'a Budget,
    pub(super) policy: ExistingPolicy,
    pub(super) counters: &'a Counters,
    pub(super) results: &'a Mutex<Results>,
    pub(super) resource_list: &'a Mutex<BTreeMap<String, Vec<String>>>,
    pub(super) log: &'a RunLog,
    pub(super) pod_volumes: Option<&'a crate::volumes::podvolume::PodVolumeRestorer>,
    pub(super) csi: Option<&'a crate::volumes::csi::CsiRestorer>,
    pub(super) tallies: &'a Mutex<BTreeMap<String, ResourceTally>>,
    pub(super) hooks: Option<&'a crate::hooks::RestoreHookRunner>,
}

/// What happened to the items of one resource, for the log's line per resource.
#[derive(Debug, Default)]
pub(super) struct ResourceTally {
    created: u64,
    updated: u64,
    skipped: u64,
    failed: u64,
    /// When its first item was started and its last one finished.
    pub(super) span: Option<(Instant, Instant)>,
}

/// An item's outcome.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    Created,
    Updated,
    Skipped,
    Failed,
}

impl ResourceTally {
    /// `Restored resource pods: 3 created, 1 skipped in 0.4s`.
    pub(super) fn line(&self, resource: &str) -> String {
        let parts: Vec<String> = [
            (self.created, "created"),
            (self.updated, "updated"),
            (self.skipped, "skipped"),
            (self.failed, "failed"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        let took = self
            .span
            .map(|(a, b)| format!(" in {}", crate::report::text::duration(b - a)))
            .unwrap_or_default();
        format!("Restored resource {resource}: {}{took}", parts.join(", "))
    }
}

impl Applier<'_> {
    /// Counts an item's outcome (the run's counters and its resource's tally); a line per item
    /// at debug level.
    fn count(&self, item: &PlannedItem, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Created => &self.counters.created,
            Outcome::Updated => &self.counters.updated,
            Outcome::Skipped => &self.counters.skipped,
            Outcome::Failed => &self.counters.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        {
            let mut t = self.tallies.lock().expect("tallies lock");
            let t = t.entry(item.group_resource.clone()).or_default();
            match outcome {
                Outcome::Created => t.created += 1,
                Outcome::Updated => t.updated += 1,
                Outcome::Skipped => t.skipped += 1,
                Outcome::Failed => t.failed += 1,
            }
        }
        if self.log.debug_enabled() {
            let at = match &item.namespace {
                Some(ns) => format!("{ns}/{}", item.name),
                None => item.name.clone(),
            };
            self.log.debug(&format!(
                "Restored item {} {at}: {}",
                item.group_resource,
                format!("{outcome:?}").to_lowercase()
            ));
        }
    }

    /// An item that failed: the error in the results and the log, counted as failed.
    fn fail(&self, item: &PlannedItem, msg: String) {
        self.log.error(&msg);
        self.results
            .lock()
            .expect("results lock")
            .errors
            .add(item.namespace.as_deref(), msg);
        self.count(item, Outcome::Failed);
    }

    /// Applies one item, timing it into its resource's tally.
    pub(super) async fn apply(&self, item: &PlannedItem) {
        let started = Instant::now();
        self.apply_item(item).await;
        let finished = Instant::now();
        let mut t = self.tallies.lock().expect("tallies lock");
        let t = t.entry(item.group_resource.clone()).or_default();
        t.span = Some(match t.span {
            Some((a, b)) => (a.min(started), b.max(finished)),
            None => (started, finished),
        });
    }

    fn api(&self, item: &PlannedItem) -> Api<DynamicObject> {
        match &item.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &*item.api_resource),
            None => Api::all_with(self.client.clone(), &*item.api_resource),
        }
    }

    fn warn(&self, ns: Option<&str>, msg: String) {
        self.log.warn(&msg);
        self.results
            .lock()
            .expect("results lock")
            .warnings
            .add(ns, msg);
    }

    pub(super) fn error(&self, ns: Option<&str>, msg: String) {
        self.log.error(&msg);
        self.results
            .lock()
            .expect("results lock")
            .errors
            .add(ns, msg);
        self.counters.failed.fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, item: &PlannedItem) {
        let key = format!(
            "{}/{}",
            item.api_resource.api_version, item.api_resource.kind
        );
        let entry = match &item.namespace {
            Some(ns) => format!("{ns}/{}", item.name),
            None => item.name.clone(),
        };
        self.resource_list
            .lock()
            .expect("resource list lock")
            .entry(key)
            .or_default()
            .push(entry);
    }

    async fn apply_item(&self, item: &PlannedItem) {
        let ns = item.namespace.as_deref();
        let what = format!("{} {}", item.group_resource, item.name);
        let (mut object, status) = match self.plan.materialize(item) {
            Ok(x) => x,
            Err(e) => return self.fail(item, format!("{what}: {e}")),
        };
        let source_ns = item.source_namespace.as_deref().or(ns).unwrap_or_default();
        let pod_volumes = self.pod_volumes.filter(|pv| {
            item.group_resource == "pods" && pv.prepare_pod(source_ns, &item.name, &mut object)
        });
        // Init hooks: after the `tidemark-restore-wait` init container, before the pod's own.
        let hooks = self.hooks.filter(|_| item.group_resource == "pods");
        let init_hooks = hooks
            .map(|h| h.prepare_pod(&mut object))
            .unwrap_or_default();
        if let Some(csi) = self
            .csi
            .filter(|_| item.group_resource == "persistentvolumeclaims")
            && let Err(e) = csi
                .prepare_claim(source_ns, &item.name, ns.unwrap_or_default(), &mut object)
                .await
        {
            return self.fail(item, format!("{what}: {e}"));
        }
        let obj: DynamicObject = match serde_json::from_value(object.clone()) {
            Ok(o) => o,
            Err(e) => return self.fail(item, format!("{what}: invalid object: {e}")),
        };
        let api = self.api(item);
        // A create whose connection failed or was cut, or that the server refused as busy after
        // the client's own retries, is sent again; if the first one did arrive, the next answers
        // AlreadyExists and the object is reconciled as an existing one.
        let mut delays = create_backoff();
        let created = loop {
            self.budget.acquire().await;
            let slot = self.pacer.start().await;
            let created = api.create(&PostParams::default(), &obj).await;
            self.pacer.finish(slot, pacing::Answer::of(&created)).await;
            match &created {
                Err(e) if crate::cluster::is_transient(e) => match delays.next() {
                    Some(d) => tokio::time::sleep(d).await,
                    None => break created,
                },
                _ => break created,
            }
        };
        match created {
            Ok(created) => {
                self.count(item, Outcome::Created);
                self.record(item);
                if let Some(pv) = pod_volumes {
                    for (ns, msg) in pv.pod_created(source_ns, &item.name, &created).await {
                        self.error(Some(ns.as_str()), msg);
                    }
                }
                // Exec hooks: a task waits for the pod's containers and runs them.
                if let Some(h) = hooks
                    && let Ok(v) = serde_json::to_value(&created)
                {
                    h.pod_created(&v, pod_volumes.is_some(), init_hooks);
                }
                self.restore_status(item, status.as_ref(), &api, &what)
                    .await;
            }
            Err(e) if is_already_exists(&e) => {
                self.reconcile_existing(item, &object, status.as_ref(), &api, &what)
                    .await
            }
            Err(e) => self.fail(item, format!("{what}: {}", describe(&e))),
        }
    }

    /// Writes the backed-up status through the status subresource, when asked for.
    async fn restore_status(
        &self,
        item: &PlannedItem,
        status: Option<&Value>,
        api: &Api<DynamicObject>,
        what: &str,
    ) {
        let Some(status) = status else { return };
        self.budget.acquire().await;
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let body = serde_json::json!({ "status": status });
        if let Err(e) = api
            .patch_status(&item.name, &pp, &Patch::Merge(&body))
            .await
        {
            self.warn(
                item.namespace.as_deref(),
                format!("{what}: status not restored: {}", describe(&e)),
            );
        }
    }

    async fn reconcile_existing(
        &self,
        item: &PlannedItem,
        object: &Value,
        status: Option<&Value>,
        api: &Api<DynamicObject>,
        what: &str,
    ) {
        let ns = item.namespace.as_deref();
        let mut delays = create_backoff();
        let existing = loop {
            self.budget.acquire().await;
            let got = api.get(&item.name).await;
            match &got {
                Err(e) if crate::cluster::is_transient(e) => match delays.next() {
                    Some(d) => tokio::time::sleep(d).await,
                    None => break got,
                },
                _ => break got,
            }
        };
        let existing = match existing {
            Ok(o) => o,
            Err(e) => {
                return self.fail(
                    item,
                    format!("{what}: exists but cannot be read: {}", describe(&e)),
                );
            }
        };
        let existing = serde_json::to_value(&existing).unwrap_or(Value::Null);
        if transform::is_subset(object, &existing) {
            self.count(item, Outcome::Skipped);
            return;
        }
        match self.policy {
            ExistingPolicy::None => {
                self.count(item, Outcome::Skipped);
                self.warn(
                    ns,
                    format!("{what}: already exists and differs from the backup; left unchanged"),
                );
            }
            ExistingPolicy::Update => {
                self.budget.acquire().await;
                let pp = PatchParams {
                    field_manager: Some(FIELD_MANAGER.into()),
                    ..Default::default()
                };
                match api.patch(&item.name, &pp, &Patch::Merge(object)).await {
                    Ok(_) => {
                        self.count(item, Outcome::Updated);
                        self.record(item);
                        self.restore_status(item, status, api, what).await;
                    }
                    Err(e) => self.fail(item, format!("{what}: update failed: {}", describe(&e))),
                }
            }
        }
    }

    /// Makes sure every target namespace exists: waits for terminating ones to go, creates
    /// missing ones (labelled like restored objects).
    pub(super) async fn ensure_namespaces(
        &self,
        namespaces: &BTreeSet<String>,
        timeout: Duration,
        backup: &str,
        restore: &str,
    ) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let jobs = namespaces.iter().cloned().map(|ns| {
            let api = api.clone();
            async move {
                let ns = ns.as_str();
                let deadline = Instant::now() + timeout;
                loop {
                    self.budget.acquire().await;
                    match api.get_opt(ns).await {
                        Ok(Some(n)) => {
                            let terminating = n.metadata.deletion_timestamp.is_some()
                                || n.status.as_ref().and_then(|s| s.phase.as_deref())
                                    == Some("Terminating");
                            if !terminating {
                                return;
                            }
                            if Instant::now() > deadline {
                                return self.error(
                                    Some(ns),
                                    format!(
                                        "namespace {ns} is still terminating after {timeout:?}"
                                    ),
                                );
                            }
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        Ok(None) => {
                            let mut n = Namespace::default();
                            n.metadata.name = Some(ns.to_string());
                            n.metadata.labels = Some(
                                [
                                    (velero::BACKUP_NAME_LABEL.to_string(), backup.to_string()),
                                    (velero::RESTORE_NAME_LABEL.to_string(), restore.to_string()),
                                ]
                                .into(),
                            );
                            self.budget.acquire().await;
                            match api.create(&PostParams::default(), &n).await {
                                Ok(_) => return,
                                Err(e) if is_already_exists(&e) => continue,
                                Err(e) => {
                                    return self.error(
                                        Some(ns),
                                        format!("creating namespace {ns}: {}", describe(&e)),
                                    );
                                }
                            }
                        }
                        Err(e) => {
                            return self.error(
                                Some(ns),
                                format!("reading namespace {ns}: {}", describe(&e)),
                            );
                        }
                    }
                }
            }
        });
        futures::stream::iter(jobs)
            .buffer_unordered(16)
            .for_each(|()| async {})
            .await;
    }

    /// Waits until every CRD of the tier reports `Established=True`.
    pub(super) async fn wait_crds_established(&self, tier: &[PlannedItem], timeout: Duration) {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let deadline = Instant::now() + timeout;
        for item in tier {
            loop {
                self.budget.acquire().await;
                let established = match api.get(&item.name).await {
                    Ok(crd) => crd
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True"),
                    Err(e) if is_not_found(&e) => break, // failed to create: already reported
                    Err(_) => false,
                };
                if established {
                    break;
                }
                if Instant::now() > deadline {
                    self.warn(
                        None,
                        format!(
                            "CustomResourceDefinition {} not Established after {timeout:?}",
                            item.name
                        ),
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The waits between attempts of a create, or of the read of an object that exists, that failed
/// transiently: five more attempts, 200 ms doubling to 5 s, with jitter.
fn create_backoff() -> impl Iterator<Item = std::time::Duration> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(200))
        .with_max_delay(std::time::Duration::from_secs(5))
        .with_max_times(5)
        .with_jitter()
        .build()
}
