//! Restore hooks: init containers added to restored pods, and exec hooks run in them once their
//! container is up (see the module doc of [`super`]).
//!
//! The restore engine builds one [`RestoreHookRunner`] per run. For each pod it creates it calls
//! [`RestoreHookRunner::prepare_pod`] on the object just before the create (after tidemark's own
//! `tidemark-restore-wait` init container was added), then [`RestoreHookRunner::pod_created`]
//! with the object the API server returned; the latter starts a task that waits for the pod's
//! containers ([`PodWatch`]) and runs its exec hooks ([`PodExec`]). Tasks run concurrently, at
//! most [`RestoreHookSettings::concurrency`] at a time; [`RestoreHookRunner::finish`] waits for
//! all of them and returns every outcome. Every wait is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::Api;
use serde_json::Value;

use super::annotations;
use super::exec::{PodExec, run_hook};
use super::outcome::{self, HookOutcome, HookPhase, HookResult};
use super::spec::{
    CompiledRestoreSpec, HookErrorMode, InvalidHook, PlannedInit, RestoreExec, RestoreHooks,
};
use super::{HookError, pod_key, resolve_container};
use crate::report::RunLog;
use crate::volumes::podvolume::RESTORE_WAIT_CONTAINER;

/// How long a restore exec hook waits for its container when neither its annotation nor its
/// spec says: 10 minutes (Velero waits without limit).
pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(600);
/// Restored pods whose exec hooks are waited for and run at once, by default.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// Settings of a restore's hooks.
#[derive(Clone, Debug)]
pub struct RestoreHookSettings {
    /// Pods whose exec hooks are handled at once (waiting and running), at least 1.
    pub concurrency: usize,
    /// How long an exec hook without a wait timeout waits for its container.
    pub wait_timeout: Duration,
    /// The same, for a pod whose volumes are restored by file system (its containers start
    /// only once the data is back): by default the pod volume timeout (4 h).
    pub volume_wait_timeout: Duration,
}

impl Default for RestoreHookSettings {
    fn default() -> Self {
        Self {
            concurrency: DEFAULT_CONCURRENCY,
            wait_timeout: DEFAULT_WAIT_TIMEOUT,
            volume_wait_timeout: crate::volumes::podvolume::DEFAULT_TIMEOUT,
        }
    }
}

/// Where a container stands, for exec hooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Running (or Ready, when asked for): hooks can run.
    Up,
    /// Not running (or not Ready) yet: keep waiting.
    NotYet,
    /// The pod ended (`Succeeded` or `Failed`): the hooks will never run.
    PodFinished(String),
}

/// Where `container` of `pod` stands: up once it is running, or ready with `ready` (Velero's
/// `isContainerUp`).
#[must_use]
pub fn container_state(pod: &Pod, container: &str, ready: bool) -> ContainerState {
    let status = pod.status.as_ref();
    if let Some(phase) = status
        .and_then(|s| s.phase.as_deref())
        .filter(|p| matches!(*p, "Succeeded" | "Failed"))
    {
        return ContainerState::PodFinished(phase.to_string());
    }
    let up = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == container))
        .is_some_and(|c| {
            if ready {
                c.ready
            } else {
                c.state.as_ref().is_some_and(|s| s.running.is_some())
            }
        });
    if up {
        ContainerState::Up
    } else {
        ContainerState::NotYet
    }
}

/// Waits for a restored pod's container to come up. Implemented by [`ApiPodWatch`]; tests put a
/// fake in its place.
#[async_trait::async_trait]
pub trait PodWatch: Send + Sync {
    /// Waits until `container` of pod `namespace/pod` is running (ready with `ready`), at most
    /// `timeout`.
    ///
    /// # Errors
    /// Why it did not come up: the timeout ran out, the pod ended or was deleted.
    async fn wait_until_up(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        ready: bool,
        timeout: Duration,
    ) -> Result<(), String>;
}

/// Waits by watching the pod (a watch on its name, re-established by kube's watcher when it
/// breaks).
#[derive(Clone)]
pub struct ApiPodWatch {
    client: Client,
}

impl std::fmt::Debug for ApiPodWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiPodWatch").finish_non_exhaustive()
    }
}

impl ApiPodWatch {
    /// A watcher on `client` (needs `get`, `list` and `watch` on pods).
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

#[async_trait::async_trait]
impl PodWatch for ApiPodWatch {
    async fn wait_until_up(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        ready: bool,
        timeout: Duration,
    ) -> Result<(), String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let stream = kube::runtime::watcher::watch_object(api, pod);
        let mut stream = std::pin::pin!(stream);
        let mut last_error: Option<String> = None;
        let waited = tokio::time::timeout(timeout, async {
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Some(p)) => match container_state(&p, container, ready) {
                        ContainerState::Up => return Ok(()),
                        ContainerState::PodFinished(phase) => {
                            return Err(format!(
                                "the pod entered phase {phase} before its hooks ran"
                            ));
                        }
                        ContainerState::NotYet => {}
                    },
                    Ok(None) => return Err("the pod was deleted before its hooks ran".into()),
                    Err(e) => {
                        last_error = Some(e.to_string());
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
            Err("the watch of the pod ended".to_string())
        })
        .await;
        match waited {
            Ok(r) => r,
            Err(_) => Err(format!(
                "container {container} was not {} within {}{}",
                if ready { "ready" } else { "running" },
                super::go_duration(timeout),
                last_error
                    .map(|e| format!(" (last watch error: {e})"))
                    .unwrap_or_default()
            )),
        }
    }
}

/// One exec hook a restored pod will run: planned, or invalid (it fails without running).
pub type PodExecHook = Result<RestoreExec, InvalidHook>;

/// Runs a restore's hooks.
pub struct RestoreHookRunner {
    executor: Arc<dyn PodExec>,
    watch: Arc<dyn PodWatch>,
    specs: Vec<CompiledRestoreSpec>,
    settings: RestoreHookSettings,
    log: Option<Arc<RunLog>>,
    limit: Arc<tokio::sync::Semaphore>,
    tasks: Mutex<tokio::task::JoinSet<Vec<HookOutcome>>>,
    done: Mutex<Vec<HookOutcome>>,
}

impl std::fmt::Debug for RestoreHookRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreHookRunner")
            .field("hook_sets", &self.specs.len())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The metadata of a pod object (JSON), default when unreadable.
fn meta_of(pod: &Value) -> ObjectMeta {
    pod.get("metadata")
        .and_then(|m| serde_json::from_value(m.clone()).ok())
        .unwrap_or_default()
}

/// Inserts init containers into a pod object: after tidemark's `tidemark-restore-wait` when it
/// is the first one, before the pod's own (Velero's order). A container whose name the pod
/// already has is not added; the skipped names are returned.
pub fn insert_init_containers(pod: &mut Value, add: &[Value]) -> Vec<String> {
    let name_of = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return add.iter().map(name_of).collect();
    };
    let inits = spec
        .entry("initContainers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !inits.is_array() {
        *inits = Value::Array(Vec::new());
    }
    let Some(list) = inits.as_array_mut() else {
        return Vec::new();
    };
    let mut names: BTreeSet<String> = list.iter().map(name_of).collect();
    let mut at = usize::from(
        list.first()
            .is_some_and(|c| name_of(c) == RESTORE_WAIT_CONTAINER),
    );
    let mut skipped = Vec::new();
    for c in add {
        let n = name_of(c);
        if !names.insert(n.clone()) {
            skipped.push(n);
            continue;
        }
        list.insert(at, c.clone());
        at += 1;
    }
    skipped
}

impl RestoreHookRunner {
    /// A runner for the spec hooks `hooks` (annotations need nothing), running commands with
    /// `executor` and waiting for containers with `watch` ([`super::ApiExecutor`] and
    /// [`ApiPodWatch`] in a real restore).
    ///
    /// # Errors
    /// [`HookError::Spec`] when the spec is invalid (fields named from `hooks.`).
    pub fn new(
        executor: Arc<dyn PodExec>,
        watch: Arc<dyn PodWatch>,
        hooks: &RestoreHooks,
        settings: RestoreHookSettings,
    ) -> Result<Self, HookError> {
        let concurrency = settings.concurrency.max(1);
        Ok(Self {
            executor,
            watch,
            specs: hooks.compile("hooks")?,
            settings,
            log: None,
            limit: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            tasks: Mutex::new(tokio::task::JoinSet::new()),
            done: Mutex::new(Vec::new()),
        })
    }

    /// Logs every hook (and its command's output) in the run's log.
    #[must_use]
    pub fn with_log(mut self, log: Arc<RunLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// The spec hook sets that apply to a pod in `namespace` with `labels`.
    fn applicable<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a BTreeMap<String, String>,
    ) -> impl Iterator<Item = &'a CompiledRestoreSpec> + 'a {
        self.specs
            .iter()
            .filter(move |s| s.selector.applies_to_pod(namespace, labels))
    }

    /// The init containers a pod object (about to be created; its `metadata.namespace` is the
    /// target namespace) gets: its annotation init hook if it has one (then no spec init hook),
    /// else those of every spec hook set that applies to it, in order. Pure.
    #[must_use]
    pub fn init_containers_for(&self, pod: &Value) -> Vec<Result<PlannedInit, HookError>> {
        let meta = meta_of(pod);
        let ns = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let annotated = meta.annotations.clone().unwrap_or_default();
        if let Some(h) = annotations::restore_init_container(&pod_key(&ns, &name), &annotated) {
            return vec![h];
        }
        let labels = meta.labels.clone().unwrap_or_default();
        self.applicable(&ns, &labels)
            .flat_map(|s| s.init.iter().cloned().map(Ok))
            .collect()
    }

    /// The exec hooks a restored pod runs: its annotation hook if it has one (then no spec exec
    /// hook), else those of every spec hook set that applies to it, in order. Pure.
    #[must_use]
    pub fn exec_hooks_for(&self, pod: &Pod) -> Vec<PodExecHook> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let annotated = pod.metadata.annotations.clone().unwrap_or_default();
        if let Some(h) = annotations::restore_exec_hook(&pod_key(&ns, &name), &annotated) {
            return vec![h];
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.applicable(&ns, &labels)
            .flat_map(|s| s.exec.iter().cloned().map(Ok))
            .collect()
    }

    /// Before a pod is created: adds its init hooks' containers to the object
    /// ([`insert_init_containers`]) and returns their outcomes (`Added`; `Failed` for an invalid
    /// annotation, `Skipped` for a name the pod already has). Give them to
    /// [`RestoreHookRunner::pod_created`] once the pod is created (a pod that already existed
    /// was not restored: its outcomes are dropped).
    pub fn prepare_pod(&self, pod: &mut Value) -> Vec<HookOutcome> {
        let planned = self.init_containers_for(pod);
        if planned.is_empty() {
            return Vec::new();
        }
        let meta = meta_of(pod);
        let ns = meta.namespace.unwrap_or_default();
        let name = meta.name.unwrap_or_default();
        let ok: Vec<&PlannedInit> = planned.iter().filter_map(|p| p.as_ref().ok()).collect();
        let containers: Vec<Value> = ok.iter().map(|p| p.container.clone()).collect();
        let skipped = insert_init_containers(pod, &containers);
        let mut outcomes = Vec::with_capacity(planned.len());
        for p in &planned {
            let o = match p {
                Ok(init) => {
                    let mut o = HookOutcome {
                        namespace: ns.clone(),
                        pod: name.clone(),
                        container: init.container_name().to_string(),
                        source: init.source,
                        name: init.name.clone(),
                        index: init.index,
                        phase: HookPhase::Init,
                        command: init.command(),
                        on_error: HookErrorMode::Continue,
                        result: HookResult::Added,
                        exit_code: None,
                        duration_ms: 0,
                        error: None,
                    };
                    if skipped.iter().any(|s| s == init.container_name()) {
                        o.result = HookResult::Skipped;
                        o.error = Some(format!(
                            "the pod already has an init container named {:?}",
                            init.container_name()
                        ));
                    }
                    o
                }
                Err(e) => HookOutcome {
                    namespace: ns.clone(),
                    pod: name.clone(),
                    container: String::new(),
                    source: super::HookSource::Annotation,
                    name: super::FROM_ANNOTATION.into(),
                    index: 0,
                    phase: HookPhase::Init,
                    command: Vec::new(),
                    // The init container the pod asks for is missing: an error of the restore.
                    on_error: HookErrorMode::Fail,
                    result: HookResult::Failed,
                    exit_code: None,
                    duration_ms: 0,
                    error: Some(e.to_string()),
                },
            };
            outcomes.push(o);
        }
        outcomes
    }

    /// After a pod was created (`created`: the object the API server returned): records (and
    /// logs) the outcomes of its init hooks (`init`, from [`RestoreHookRunner::prepare_pod`]) and
    /// starts the task that waits for its containers and runs its exec hooks, if it has any.
    /// `volumes_restored`: its volumes are restored by file system (the default wait is then
    /// the longer one).
    pub fn pod_created(&self, created: &Value, volumes_restored: bool, init: Vec<HookOutcome>) {
        if !init.is_empty() {
            if let Some(log) = &self.log {
                for o in &init {
                    outcome::log(log, o);
                }
            }
            if let Ok(mut done) = self.done.lock() {
                done.extend(init);
            }
        }
        let pod: Pod = match serde_json::from_value(created.clone()) {
            Ok(p) => p,
            Err(e) => {
                if let Some(log) = &self.log {
                    log.warn(&format!(
                        "restored pod unreadable, its exec hooks do not run: {e}"
                    ));
                }
                return;
            }
        };
        let hooks = self.exec_hooks_for(&pod);
        if hooks.is_empty() {
            return;
        }
        let default_wait = if volumes_restored {
            self.settings.volume_wait_timeout
        } else {
            self.settings.wait_timeout
        };
        let (executor, watch, log, limit) = (
            self.executor.clone(),
            self.watch.clone(),
            self.log.clone(),
            self.limit.clone(),
        );
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.spawn(async move {
                // The semaphore is never closed; without a permit the hooks still run.
                let _permit = limit.acquire_owned().await.ok();
                run_exec_hooks(
                    executor.as_ref(),
                    watch.as_ref(),
                    log.as_deref(),
                    &pod,
                    hooks,
                    default_wait,
                )
                .await
            });
        }
    }

    /// Waits for every pod's exec hooks and returns all outcomes (init and exec), ordered by
    /// namespace, pod, phase (init first) and position.
    pub async fn finish(&self) -> Vec<HookOutcome> {
        let mut tasks = self
            .tasks
            .lock()
            .map(|mut t| std::mem::take(&mut *t))
            .unwrap_or_default();
        let mut out = self
            .done
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(outcomes) => out.extend(outcomes),
                Err(e) => {
                    if let Some(log) = &self.log {
                        log.error(&format!("a restore hook task ended abnormally: {e}"));
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.namespace, &a.pod, a.phase != HookPhase::Init).cmp(&(
                &b.namespace,
                &b.pod,
                b.phase != HookPhase::Init,
            ))
        });
        out
    }
}

/// Runs a restored pod's exec hooks: groups them by container (each container waited for at
/// most the longest wait timeout of its hooks, counted from the start, the groups at once),
/// runs each group's hooks in order once its container is up. A hook whose own wait timeout
/// passed before its container came up fails without running; after a failed `Fail` hook the
/// pod's hooks not yet started are `Skipped`.
pub async fn run_exec_hooks(
    executor: &dyn PodExec,
    watch: &dyn PodWatch,
    log: Option<&RunLog>,
    pod: &Pod,
    hooks: Vec<PodExecHook>,
    default_wait: Duration,
) -> Vec<HookOutcome> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let started = Instant::now();
    let stop: Mutex<Option<String>> = Mutex::new(None);
    let stopped = || stop.lock().ok().and_then(|s| s.clone());
    let fail_stop = |hook: &str| {
        if let Ok(mut s) = stop.lock()
            && s.is_none()
        {
            *s = Some(format!(
                "not run: hook {hook:?} failed earlier with onError Fail"
            ));
        }
    };
    let note = |o: &HookOutcome| {
        if let Some(log) = log {
            outcome::log(log, o);
        }
    };
    let mut early: Vec<HookOutcome> = Vec::new();
    let mut groups: Vec<(String, Vec<RestoreExec>)> = Vec::new();
    for h in hooks {
        match h {
            Err(invalid) => {
                let o = outcome::invalid(&ns, &name, HookPhase::Exec, &invalid);
                note(&o);
                early.push(o);
                if invalid.on_error == HookErrorMode::Fail {
                    fail_stop(&invalid.name);
                }
            }
            Ok(h) => match resolve_container(pod, h.hook.container.as_deref(), false) {
                Ok(c) => match groups.iter_mut().find(|(g, _)| *g == c) {
                    Some((_, list)) => list.push(h),
                    None => groups.push((c, vec![h])),
                },
                Err(e) => {
                    let o = outcome::failed(&ns, &name, HookPhase::Exec, &h.hook, e.to_string());
                    note(&o);
                    early.push(o);
                    if h.hook.on_error == HookErrorMode::Fail {
                        fail_stop(&h.hook.name);
                    }
                }
            },
        }
    }
    let run_group = |container: String, hooks: Vec<RestoreExec>| {
        let (ns, name) = (&ns, &name);
        let (stopped, fail_stop, note) = (&stopped, &fail_stop, &note);
        async move {
            let mut outcomes = Vec::with_capacity(hooks.len());
            if let Some(reason) = stopped() {
                for h in &hooks {
                    let o = outcome::skipped(ns, name, HookPhase::Exec, &h.hook, reason.clone());
                    note(&o);
                    outcomes.push(o);
                }
                return outcomes;
            }
            let wait_of = |h: &RestoreExec| h.wait_timeout.unwrap_or(default_wait);
            let longest = hooks.iter().map(wait_of).max().unwrap_or(default_wait);
            let ready = hooks.iter().any(|h| h.wait_for_ready);
            let up = watch
                .wait_until_up(
                    ns,
                    name,
                    &container,
                    ready,
                    longest.saturating_sub(started.elapsed()),
                )
                .await;
            for h in &hooks {
                let mut planned = h.hook.clone();
                planned.container = Some(container.clone());
                if let Some(reason) = stopped() {
                    let o = outcome::skipped(ns, name, HookPhase::Exec, &planned, reason);
                    note(&o);
                    outcomes.push(o);
                    continue;
                }
                let failure = match &up {
                    Err(reason) => Some(reason.clone()),
                    Ok(()) if started.elapsed() > wait_of(h) => Some(format!(
                        "container {container} was not up within the hook's wait timeout {}",
                        super::go_duration(wait_of(h))
                    )),
                    Ok(()) => None,
                };
                let o = match failure {
                    Some(reason) => {
                        let o = outcome::failed(
                            ns,
                            name,
                            HookPhase::Exec,
                            &planned,
                            HookError::Wait {
                                pod: pod_key(ns, name),
                                reason,
                            }
                            .to_string(),
                        );
                        note(&o);
                        o
                    }
                    None => {
                        run_hook(
                            executor,
                            log,
                            ns,
                            name,
                            &container,
                            &planned,
                            HookPhase::Exec,
                        )
                        .await
                    }
                };
                if o.failed() && planned.on_error == HookErrorMode::Fail {
                    fail_stop(&planned.name);
                }
                outcomes.push(o);
            }
            outcomes
        }
    };
    let ran = futures::future::join_all(groups.into_iter().map(|(c, hs)| run_group(c, hs))).await;
    early.extend(ran.into_iter().flatten());
    early
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::annotations::{
        INIT_COMMAND, INIT_IMAGE, INIT_NAME, RESTORE_COMMAND, RESTORE_CONTAINER, RESTORE_ON_ERROR,
        RESTORE_WAIT_FOR_READY, RESTORE_WAIT_TIMEOUT,
    };
    use crate::hooks::backup::tests::FakeExec;
    use serde_json::json;

    /// A fake watch: containers named in `up` come up at once; others never (the wait fails
    /// with the timeout it was given). Records `(container, ready, timeout)`.
    #[derive(Default)]
    struct FakeWatch {
        up: Vec<&'static str>,
        calls: Mutex<Vec<(String, bool, Duration)>>,
    }

    #[async_trait::async_trait]
    impl PodWatch for FakeWatch {
        async fn wait_until_up(
            &self,
            _namespace: &str,
            _pod: &str,
            container: &str,
            ready: bool,
            timeout: Duration,
        ) -> Result<(), String> {
            self.calls
                .lock()
                .unwrap()
                .push((container.to_string(), ready, timeout));
            if self.up.contains(&container) {
                Ok(())
            } else {
                Err(format!(
                    "container {container} was not running within {timeout:?}"
                ))
            }
        }
    }

    fn runner(hooks: Value, exec: Arc<FakeExec>, watch: Arc<FakeWatch>) -> RestoreHookRunner {
        let hooks: RestoreHooks = serde_json::from_value(hooks).unwrap();
        RestoreHookRunner::new(exec, watch, &hooks, RestoreHookSettings::default()).unwrap()
    }

    fn pod_json(ns: &str, labels: Value, annotations: Value, inits: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": "db-0", "labels": labels, "annotations": annotations},
            "spec": {"containers": [{"name": "db"}, {"name": "exporter"}], "initContainers": inits}
        })
    }

    fn init_names(pod: &Value) -> Vec<String> {
        pod["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn init_containers_go_after_restore_wait_and_before_the_pods_own() {
        let mut p = pod_json(
            "shop",
            json!({}),
            json!({}),
            json!([{"name": RESTORE_WAIT_CONTAINER}, {"name": "migrate"}]),
        );
        let skipped = insert_init_containers(
            &mut p,
            &[
                json!({"name": "seed-a"}),
                json!({"name": "seed-b"}),
                json!({"name": "migrate"}),
            ],
        );
        assert_eq!(
            init_names(&p),
            [RESTORE_WAIT_CONTAINER, "seed-a", "seed-b", "migrate"]
        );
        assert_eq!(skipped, ["migrate"]);
        let mut bare = json!({"spec": {"containers": [{"name": "a"}]}});
        insert_init_containers(&mut bare, &[json!({"name": "seed"})]);
        assert_eq!(init_names(&bare), ["seed"]);
        let mut own = pod_json("shop", json!({}), json!({}), json!([{"name": "migrate"}]));
        insert_init_containers(&mut own, &[json!({"name": "seed"})]);
        assert_eq!(init_names(&own), ["seed", "migrate"]);
    }

    #[test]
    fn init_hooks_from_spec_annotations_take_precedence() {
        let r = runner(
            json!({"resources": [
                {"name": "seeders", "includedNamespaces": ["shop"], "labelSelector": {"matchLabels": {"app": "db"}},
                 "postHooks": [{"init": {"initContainers": [
                     {"name": "seed", "image": "busybox", "command": ["sh", "-c", "true"]}]}}]},
                {"name": "elsewhere", "includedNamespaces": ["other"],
                 "postHooks": [{"init": {"initContainers": [
                     {"name": "no", "image": "busybox", "command": ["true"]}]}}]}
            ]}),
            Arc::default(),
            Arc::default(),
        );
        let mut p = pod_json(
            "shop",
            json!({"app": "db"}),
            json!({}),
            json!([{"name": RESTORE_WAIT_CONTAINER}, {"name": "own"}]),
        );
        let out = r.prepare_pod(&mut p);
        assert_eq!(init_names(&p), [RESTORE_WAIT_CONTAINER, "seed", "own"]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].result, HookResult::Added);
        assert_eq!(out[0].name, "seeders");
        assert_eq!(out[0].command, ["sh", "-c", "true"]);
        assert!(
            !out[0].attempted(),
            "init hooks are not counted, as in Velero"
        );
        let mut q = pod_json(
            "shop",
            json!({"app": "db"}),
            json!({INIT_IMAGE: "alpine", INIT_NAME: "prep", INIT_COMMAND: r#"["/bin/ash","-c","date"]"#}),
            json!([]),
        );
        let out = r.prepare_pod(&mut q);
        assert_eq!(init_names(&q), ["prep"]);
        assert_eq!(out[0].source, crate::hooks::HookSource::Annotation);
        assert_eq!(q["spec"]["initContainers"][0]["image"], "alpine");
        let mut bad = pod_json(
            "shop",
            json!({}),
            json!({INIT_IMAGE: "a", INIT_NAME: "NO"}),
            json!([]),
        );
        let out = r.prepare_pod(&mut bad);
        assert_eq!(out[0].result, HookResult::Failed);
        assert!(out[0].error.as_deref().unwrap().contains(INIT_NAME));
        assert!(init_names(&bad).is_empty());
        let mut none = pod_json("web", json!({"app": "db"}), json!({}), json!([]));
        assert!(r.prepare_pod(&mut none).is_empty());
    }

    fn created(annotations: Value, labels: Value) -> Pod {
        serde_json::from_value(pod_json("shop", labels, annotations, json!([]))).unwrap()
    }

    #[tokio::test]
    async fn exec_hooks_wait_then_run_in_order() {
        let exec = Arc::new(FakeExec::default());
        let watch = Arc::new(FakeWatch {
            up: vec!["db", "exporter"],
            ..Default::default()
        });
        let r = runner(
            json!({"resources": [{"name": "load", "postHooks": [
                {"exec": {"command": ["first"], "waitTimeout": "1m"}},
                {"exec": {"command": ["second"], "container": "exporter", "waitForReady": true}},
                {"exec": {"command": ["exit:1"]}},
                {"exec": {"command": ["fourth"]}}
            ]}]}),
            exec.clone(),
            watch.clone(),
        );
        let pod = created(json!({}), json!({}));
        let hooks = r.exec_hooks_for(&pod);
        assert_eq!(hooks.len(), 4);
        let out = run_exec_hooks(
            exec.as_ref(),
            watch.as_ref(),
            None,
            &pod,
            hooks,
            DEFAULT_WAIT_TIMEOUT,
        )
        .await;
        let got: Vec<(String, HookResult)> = out
            .iter()
            .map(|o| (o.command.join(" "), o.result))
            .collect();
        assert_eq!(
            got,
            [
                ("first".to_string(), HookResult::Succeeded),
                ("exit:1".to_string(), HookResult::Failed),
                ("fourth".to_string(), HookResult::Succeeded),
                ("second".to_string(), HookResult::Succeeded),
            ]
        );
        assert!(out.iter().all(|o| o.phase == HookPhase::Exec));
        assert_eq!(out[0].container, "db");
        let calls = watch.calls.lock().unwrap().clone();
        // One wait per container: the db group waits up to the default (its longest), the
        // exporter group for Ready.
        assert_eq!(calls.len(), 2);
        let db = calls.iter().find(|c| c.0 == "db").unwrap();
        assert!(!db.1 && db.2 > Duration::from_secs(590), "{db:?}");
        let ex = calls.iter().find(|c| c.0 == "exporter").unwrap();
        assert!(ex.1);
        assert_eq!(exec.calls.lock().unwrap().len(), 4);
        let status = crate::hooks::HookStatus::of(&out);
        assert_eq!((status.hooks_attempted, status.hooks_failed), (4, 1));
    }

    #[tokio::test]
    async fn a_container_that_never_comes_up_fails_its_hooks() {
        let exec = Arc::new(FakeExec::default());
        let watch = Arc::new(FakeWatch::default());
        let r = runner(json!({}), exec.clone(), watch.clone());
        let pod = created(
            json!({RESTORE_COMMAND: "/bin/load", RESTORE_CONTAINER: "db", RESTORE_WAIT_TIMEOUT: "2m",
                   RESTORE_WAIT_FOR_READY: "true", RESTORE_ON_ERROR: "Fail"}),
            json!({}),
        );
        let out = run_exec_hooks(
            exec.as_ref(),
            watch.as_ref(),
            None,
            &pod,
            r.exec_hooks_for(&pod),
            DEFAULT_WAIT_TIMEOUT,
        )
        .await;
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].result, HookResult::Failed);
        assert_eq!(out[0].on_error, HookErrorMode::Fail);
        let e = out[0].error.clone().unwrap();
        assert!(e.contains("shop/db-0") && e.contains("not running"), "{e}");
        let calls = watch.calls.lock().unwrap().clone();
        assert!(calls[0].1, "wait-for-ready");
        assert!(calls[0].2 <= Duration::from_secs(120) && calls[0].2 > Duration::from_secs(110));
        assert!(exec.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn fail_stops_the_pods_remaining_hooks_and_bad_containers_fail() {
        let exec = Arc::new(FakeExec::default());
        let watch = Arc::new(FakeWatch {
            up: vec!["db"],
            ..Default::default()
        });
        let r = runner(
            json!({"resources": [{"name": "s", "postHooks": [
                {"exec": {"command": ["exit:7"], "onError": "Fail"}},
                {"exec": {"command": ["after"]}},
                {"exec": {"command": ["x"], "container": "ghost"}}
            ]}]}),
            exec.clone(),
            watch.clone(),
        );
        let pod = created(json!({}), json!({}));
        let out = run_exec_hooks(
            exec.as_ref(),
            watch.as_ref(),
            None,
            &pod,
            r.exec_hooks_for(&pod),
            DEFAULT_WAIT_TIMEOUT,
        )
        .await;
        let got: Vec<HookResult> = out.iter().map(|o| o.result).collect();
        assert_eq!(
            got,
            [HookResult::Failed, HookResult::Failed, HookResult::Skipped]
        );
        assert!(
            out[0]
                .error
                .as_deref()
                .unwrap()
                .contains("no container \"ghost\"")
        );
        assert_eq!(out[1].exit_code, Some(7));
        assert!(out[2].error.as_deref().unwrap().contains("onError Fail"));
        assert_eq!(exec.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_runner_spawns_per_pod_and_finish_collects() {
        let exec = Arc::new(FakeExec::default());
        let watch = Arc::new(FakeWatch {
            up: vec!["db"],
            ..Default::default()
        });
        let r = runner(
            json!({"resources": [{"name": "s", "postHooks": [
                {"init": {"initContainers": [{"name": "seed", "image": "i", "command": ["c"]}]}},
                {"exec": {"command": ["load"]}}
            ]}]}),
            exec.clone(),
            watch.clone(),
        );
        let mut obj = pod_json("shop", json!({}), json!({}), json!([]));
        let init = r.prepare_pod(&mut obj);
        r.pod_created(&obj, true, init);
        let mut other = obj.clone();
        other["metadata"]["name"] = json!("db-1");
        r.pod_created(&other, false, Vec::new());
        // Annotation exec hooks replace the spec's.
        let mut annotated = obj.clone();
        annotated["metadata"]["name"] = json!("db-2");
        annotated["metadata"]["annotations"] = json!({RESTORE_COMMAND: r#"["/bin/own"]"#});
        r.pod_created(&annotated, false, Vec::new());
        let out = r.finish().await;
        let got: Vec<(String, HookPhase, String)> = out
            .iter()
            .map(|o| (o.pod.clone(), o.phase, o.command.join(" ")))
            .collect();
        assert_eq!(
            got,
            [
                ("db-0".to_string(), HookPhase::Init, "c".to_string()),
                ("db-0".to_string(), HookPhase::Exec, "load".to_string()),
                ("db-1".to_string(), HookPhase::Exec, "load".to_string()),
                ("db-2".to_string(), HookPhase::Exec, "/bin/own".to_string()),
            ]
        );
        let waits: Vec<Duration> = watch.calls.lock().unwrap().iter().map(|c| c.2).collect();
        assert!(
            waits.iter().any(|w| *w > DEFAULT_WAIT_TIMEOUT),
            "pods with restored volumes wait longer: {waits:?}"
        );
        assert!(r.finish().await.is_empty());
    }

    #[test]
    fn container_states() {
        let pod = |phase: &str, statuses: Value| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "p"},
                "status": {"phase": phase, "containerStatuses": statuses}
            }))
            .unwrap()
        };
        let running = pod(
            "Running",
            json!([{"name": "db", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                    "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]),
        );
        assert_eq!(container_state(&running, "db", false), ContainerState::Up);
        assert_eq!(
            container_state(&running, "db", true),
            ContainerState::NotYet
        );
        assert_eq!(
            container_state(&running, "other", false),
            ContainerState::NotYet
        );
        let waiting = pod(
            "Pending",
            json!([{"name": "db", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                    "state": {"waiting": {"reason": "PodInitializing"}}}]),
        );
        assert_eq!(
            container_state(&waiting, "db", false),
            ContainerState::NotYet
        );
        assert_eq!(
            container_state(&pod("Failed", json!([])), "db", false),
            ContainerState::PodFinished("Failed".into())
        );
    }
}
