//! Backup hooks: the pre and post `exec` hooks of the pods a backup takes (see the module doc of
//! [`super`] for where they come from and what a failure does).
//!
//! The backup engine builds one [`BackupHookRunner`] per run and hands it to the volume phase
//! ([`crate::volumes::phase`]), which calls [`BackupHookRunner::run_pre`] with the pods it listed
//! before choosing and taking any volume, and [`BackupHookRunner::run_post`] once every snapshot
//! and file-system backup has ended, with the pods whose pre hooks did not fail.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;

use super::annotations::{self, BackupPhase};
use super::exec::{PodExec, run_hook};
use super::outcome::{self, HookOutcome, HookPhase};
use super::spec::{BackupHooks, CompiledBackupSpec, HookErrorMode, InvalidHook, PlannedExec};
use super::{HookError, pod_key, resolve_container};
use crate::report::RunLog;

/// Pods whose hooks run at once by default.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// One hook a pod will run: planned, or invalid (it fails without running).
pub type PodHook = Result<PlannedExec, InvalidHook>;

/// One pod's outcomes, and its key when a `Fail` hook failed in it.
type PodRun = (Vec<HookOutcome>, Option<(String, String)>);

/// What one phase (pre or post) of a backup's hooks did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhaseReport {
    /// One outcome per hook of every pod, pods in the order given, hooks in their order.
    pub outcomes: Vec<HookOutcome>,
    /// Pods (`(namespace, name)`) in which a hook with `onError: Fail` failed: after the pre
    /// phase, those whose item fails (not archived, volumes not taken, no post hooks).
    pub failed_pods: BTreeSet<(String, String)>,
}

/// Runs a backup's hooks in its pods.
pub struct BackupHookRunner {
    executor: Arc<dyn PodExec>,
    specs: Vec<CompiledBackupSpec>,
    concurrency: usize,
    log: Option<Arc<RunLog>>,
}

impl std::fmt::Debug for BackupHookRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupHookRunner")
            .field("hook_sets", &self.specs.len())
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl BackupHookRunner {
    /// A runner for the spec hooks `hooks` (annotations need nothing), running commands with
    /// `executor` ([`super::ApiExecutor`] in a real backup).
    ///
    /// # Errors
    /// [`HookError::Spec`] when the spec is invalid (fields named from `hooks.`).
    pub fn new(executor: Arc<dyn PodExec>, hooks: &BackupHooks) -> Result<Self, HookError> {
        Ok(Self {
            executor,
            specs: hooks.compile("hooks")?,
            concurrency: DEFAULT_CONCURRENCY,
            log: None,
        })
    }

    /// Runs the hooks of at most `n` pods at once (at least 1).
    #[must_use]
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Logs every hook (and its command's output) in the run's log.
    #[must_use]
    pub fn with_log(mut self, log: Arc<RunLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// The hooks `pod` runs in `phase` (`Pre` or `Post`), in order: its annotation hook if it
    /// has one (then no spec hook of that phase), else the spec hooks of every hook set that
    /// applies to it. Pure.
    #[must_use]
    pub fn hooks_for(&self, pod: &Pod, phase: HookPhase) -> Vec<PodHook> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let annotated = pod.metadata.annotations.clone().unwrap_or_default();
        let which = if phase == HookPhase::Post {
            BackupPhase::Post
        } else {
            BackupPhase::Pre
        };
        if let Some(h) = annotations::backup_hook(&pod_key(ns, name), &annotated, which) {
            return vec![h];
        }
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.specs
            .iter()
            .filter(|s| s.selector.applies_to_pod(ns, &labels))
            .flat_map(|s| {
                if which == BackupPhase::Post {
                    &s.post
                } else {
                    &s.pre
                }
            })
            .cloned()
            .map(Ok)
            .collect()
    }

    /// Runs the pre hooks of `pods`.
    pub async fn run_pre(&self, pods: &[Pod]) -> PhaseReport {
        self.run(pods, HookPhase::Pre).await
    }

    /// Runs the post hooks of `pods` (give the pods whose pre hooks did not fail).
    pub async fn run_post(&self, pods: &[Pod]) -> PhaseReport {
        self.run(pods, HookPhase::Post).await
    }

    async fn run(&self, pods: &[Pod], phase: HookPhase) -> PhaseReport {
        // Indices, not references: the closure then has no higher-ranked lifetime, which the
        // controller's `Send` futures need.
        let per_pod: Vec<PodRun> = futures::stream::iter(0..pods.len())
            .map(|i| async move {
                let pod = &pods[i];
                let hooks = self.hooks_for(pod, phase);
                if hooks.is_empty() {
                    return (Vec::new(), None);
                }
                let (outcomes, failed) = run_pod_hooks(
                    self.executor.as_ref(),
                    self.log.as_deref(),
                    pod,
                    phase,
                    hooks,
                )
                .await;
                let key = failed.then(|| {
                    (
                        pod.metadata.namespace.clone().unwrap_or_default(),
                        pod.metadata.name.clone().unwrap_or_default(),
                    )
                });
                (outcomes, key)
            })
            .buffered(self.concurrency)
            .collect()
            .await;
        let mut report = PhaseReport::default();
        for (outcomes, failed) in per_pod {
            report.outcomes.extend(outcomes);
            report.failed_pods.extend(failed);
        }
        report
    }
}

/// Runs one pod's hooks of a phase, in order: `(outcomes, failed)`, `failed` when a hook with
/// `onError: Fail` failed (the hooks after it are `Skipped`). A pod that is not `Running` runs
/// none (all `Skipped`, not failed).
pub async fn run_pod_hooks(
    executor: &dyn PodExec,
    log: Option<&RunLog>,
    pod: &Pod,
    phase: HookPhase,
    hooks: Vec<PodHook>,
) -> (Vec<HookOutcome>, bool) {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let pod_phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Unknown");
    let mut outcomes = Vec::with_capacity(hooks.len());
    let mut stop: Option<String> = None;
    if pod_phase != "Running" {
        stop = Some(format!("the pod is not running (phase {pod_phase})"));
    }
    let running = stop.is_none();
    let record = |o: HookOutcome, outcomes: &mut Vec<HookOutcome>| {
        if let Some(log) = log {
            outcome::log(log, &o);
        }
        outcomes.push(o);
    };
    for hook in hooks {
        let planned = match hook {
            Err(invalid) => {
                if let Some(reason) = &stop {
                    let skipped = HookOutcome {
                        result: super::HookResult::Skipped,
                        error: Some(reason.clone()),
                        ..outcome::invalid(ns, name, phase, &invalid)
                    };
                    record(skipped, &mut outcomes);
                    continue;
                }
                record(outcome::invalid(ns, name, phase, &invalid), &mut outcomes);
                if invalid.on_error == HookErrorMode::Fail {
                    stop = Some(fail_stop(&invalid.name));
                }
                continue;
            }
            Ok(p) => p,
        };
        if let Some(reason) = &stop {
            record(
                outcome::skipped(ns, name, phase, &planned, reason.clone()),
                &mut outcomes,
            );
            continue;
        }
        let container = match resolve_container(pod, planned.container.as_deref(), true) {
            Ok(c) => c,
            Err(e) => {
                record(
                    outcome::failed(ns, name, phase, &planned, e.to_string()),
                    &mut outcomes,
                );
                if planned.on_error == HookErrorMode::Fail {
                    stop = Some(fail_stop(&planned.name));
                }
                continue;
            }
        };
        let o = run_hook(executor, log, ns, name, &container, &planned, phase).await;
        if o.failed() && planned.on_error == HookErrorMode::Fail {
            stop = Some(fail_stop(&planned.name));
        }
        outcomes.push(o);
    }
    let failed = running
        && outcomes
            .iter()
            .any(|o| o.failed() && o.on_error == HookErrorMode::Fail);
    (outcomes, failed)
}

/// Why the hooks after a failed `Fail` hook are skipped.
fn fail_stop(name: &str) -> String {
    format!("not run: hook {name:?} failed earlier with onError Fail")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::hooks::annotations::{
        POST_BACKUP_COMMAND, PRE_BACKUP_COMMAND, PRE_BACKUP_CONTAINER, PRE_BACKUP_ON_ERROR,
        PRE_BACKUP_TIMEOUT,
    };
    use crate::hooks::exec::{ExecOutput, ExecRequest};
    use crate::hooks::{HookResult, HookSource};
    use serde_json::json;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A fake executor: answers by command (`exit:N` exits N, `timeout` times out, `error`
    /// fails the request, anything else exits 0) and records every request.
    #[derive(Default)]
    pub(crate) struct FakeExec {
        pub(crate) calls: Mutex<Vec<ExecRequest>>,
    }

    #[async_trait::async_trait]
    impl PodExec for FakeExec {
        async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, HookError> {
            self.calls.lock().unwrap().push(req.clone());
            let pod = format!("{}/{}", req.namespace, req.pod);
            match req.command.last().map(String::as_str) {
                Some("timeout") => Err(HookError::TimedOut {
                    pod,
                    container: req.container.clone(),
                    after: crate::hooks::go_duration(req.timeout),
                }),
                Some("error") => Err(HookError::Exec {
                    pod,
                    container: req.container.clone(),
                    reason: "forbidden".into(),
                }),
                Some(c) if c.starts_with("exit:") => Ok(ExecOutput {
                    exit_code: c[5..].parse().unwrap(),
                    stderr: "boom".into(),
                    ..Default::default()
                }),
                _ => Ok(ExecOutput {
                    stdout: "ok".into(),
                    ..Default::default()
                }),
            }
        }
    }

    pub(crate) fn pod(
        ns: &str,
        name: &str,
        phase: &str,
        labels: serde_json::Value,
        annotations: serde_json::Value,
    ) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name, "labels": labels, "annotations": annotations},
            "spec": {
                "containers": [{"name": "app"}, {"name": "sidecar"}],
                "initContainers": [{"name": "proxy", "restartPolicy": "Always"}, {"name": "setup"}]
            },
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    fn spec(v: serde_json::Value) -> BackupHooks {
        serde_json::from_value(v).unwrap()
    }

    fn runner(exec: Arc<FakeExec>, hooks: serde_json::Value) -> BackupHookRunner {
        BackupHookRunner::new(exec, &spec(hooks)).unwrap()
    }

    #[test]
    fn spec_hooks_are_selected_by_namespace_resource_and_labels() {
        let r = runner(
            Arc::default(),
            json!({"resources": [
                {"name": "db", "includedNamespaces": ["db-*"], "labelSelector": {"matchLabels": {"app": "pg"}},
                 "pre": [{"exec": {"command": ["a"]}}, {"exec": {"command": ["b"]}}],
                 "post": [{"exec": {"command": ["c"]}}]},
                {"name": "all", "pre": [{"exec": {"command": ["d"]}}]},
                {"name": "not-pods", "includedResources": ["deployments"], "pre": [{"exec": {"command": ["e"]}}]},
                {"name": "excluded", "excludedNamespaces": ["db-*"], "pre": [{"exec": {"command": ["f"]}}]}
            ]}),
        );
        let cmds = |p: &Pod, phase| -> Vec<String> {
            r.hooks_for(p, phase)
                .into_iter()
                .map(|h| h.unwrap().command.join(" "))
                .collect()
        };
        let pg = pod(
            "db-prod",
            "pg-0",
            "Running",
            json!({"app": "pg"}),
            json!({}),
        );
        assert_eq!(cmds(&pg, HookPhase::Pre), ["a", "b", "d"]);
        assert_eq!(cmds(&pg, HookPhase::Post), ["c"]);
        let other = pod(
            "db-prod",
            "cache",
            "Running",
            json!({"app": "redis"}),
            json!({}),
        );
        assert_eq!(cmds(&other, HookPhase::Pre), ["d"]);
        let web = pod("web", "w", "Running", json!({"app": "pg"}), json!({}));
        assert_eq!(cmds(&web, HookPhase::Pre), ["d", "f"]);
        assert!(cmds(&web, HookPhase::Post).is_empty());
    }

    #[test]
    fn annotations_take_precedence_per_phase() {
        let r = runner(
            Arc::default(),
            json!({"resources": [{"name": "s", "pre": [{"exec": {"command": ["spec-pre"]}}],
                                  "post": [{"exec": {"command": ["spec-post"]}}]}]}),
        );
        let p = pod(
            "a",
            "p",
            "Running",
            json!({}),
            json!({PRE_BACKUP_COMMAND: "ann-pre"}),
        );
        let pre = r.hooks_for(&p, HookPhase::Pre);
        assert_eq!(pre.len(), 1);
        let h = pre[0].clone().unwrap();
        assert_eq!(h.command, ["ann-pre"]);
        assert_eq!(h.source, HookSource::Annotation);
        // No post annotation: the spec's post hooks run.
        let post = r.hooks_for(&p, HookPhase::Post);
        assert_eq!(post[0].clone().unwrap().command, ["spec-post"]);
    }

    #[tokio::test]
    async fn outcomes_follow_on_error() {
        let exec = Arc::new(FakeExec::default());
        let r = runner(
            exec.clone(),
            json!({"resources": [{"name": "s", "pre": [
                {"exec": {"command": ["exit:2"]}},
                {"exec": {"command": ["timeout"], "onError": "Fail", "timeout": "5s"}},
                {"exec": {"command": ["never"]}}
            ]}]}),
        );
        let p = pod("a", "p", "Running", json!({}), json!({}));
        let report = r.run_pre(std::slice::from_ref(&p)).await;
        let results: Vec<HookResult> = report.outcomes.iter().map(|o| o.result).collect();
        assert_eq!(
            results,
            [HookResult::Failed, HookResult::Failed, HookResult::Skipped]
        );
        assert_eq!(report.outcomes[0].exit_code, Some(2));
        assert!(
            report.outcomes[0]
                .error
                .as_deref()
                .unwrap()
                .contains("exited with code 2; stderr: boom")
        );
        assert!(
            report.outcomes[1]
                .error
                .as_deref()
                .unwrap()
                .contains("timed out after 5s")
        );
        assert_eq!(report.outcomes[0].container, "app");
        assert!(report.failed_pods.contains(&("a".into(), "p".into())));
        let calls = exec.calls.lock().unwrap();
        assert_eq!(calls.len(), 2, "the hook after the Fail hook does not run");
        assert_eq!(calls[1].timeout, Duration::from_secs(5));
        assert_eq!(
            crate::hooks::HookStatus::of(&report.outcomes).hooks_attempted,
            2
        );
    }

    #[tokio::test]
    async fn continue_failures_do_not_fail_the_pod() {
        let exec = Arc::new(FakeExec::default());
        let r = runner(
            exec.clone(),
            json!({"resources": [{"name": "s", "pre": [
                {"exec": {"command": ["error"]}},
                {"exec": {"command": ["fine"], "container": "sidecar"}},
                {"exec": {"command": ["fine"], "container": "proxy"}}
            ]}]}),
        );
        let p = pod("a", "p", "Running", json!({}), json!({}));
        let report = r.run_pre(&[p]).await;
        let results: Vec<HookResult> = report.outcomes.iter().map(|o| o.result).collect();
        assert_eq!(
            results,
            [
                HookResult::Failed,
                HookResult::Succeeded,
                HookResult::Succeeded
            ]
        );
        assert!(report.failed_pods.is_empty());
        assert_eq!(
            report.outcomes[2].container, "proxy",
            "restartable sidecars are allowed"
        );
    }

    #[tokio::test]
    async fn missing_containers_and_bad_annotations_fail_without_running() {
        let exec = Arc::new(FakeExec::default());
        let r = runner(exec.clone(), json!({}));
        let p = pod(
            "a",
            "p",
            "Running",
            json!({}),
            json!({PRE_BACKUP_COMMAND: "x", PRE_BACKUP_CONTAINER: "setup", PRE_BACKUP_ON_ERROR: "Fail"}),
        );
        let report = r.run_pre(&[p]).await;
        assert_eq!(report.outcomes[0].result, HookResult::Failed);
        let e = report.outcomes[0].error.clone().unwrap();
        assert!(
            e.contains("no container \"setup\"") && e.contains("app, sidecar"),
            "{e}"
        );
        assert_eq!(report.failed_pods.len(), 1);
        let q = pod(
            "a",
            "q",
            "Running",
            json!({}),
            json!({PRE_BACKUP_COMMAND: "x", PRE_BACKUP_TIMEOUT: "forever"}),
        );
        let report = r.run_pre(&[q]).await;
        assert_eq!(report.outcomes[0].result, HookResult::Failed);
        assert!(
            report.outcomes[0]
                .error
                .as_deref()
                .unwrap()
                .contains(PRE_BACKUP_TIMEOUT)
        );
        assert!(
            report.failed_pods.is_empty(),
            "on-error defaults to Continue"
        );
        assert!(exec.calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn pods_not_running_are_skipped() {
        let exec = Arc::new(FakeExec::default());
        let r = runner(exec.clone(), json!({}));
        let p = pod(
            "a",
            "p",
            "Pending",
            json!({}),
            json!({POST_BACKUP_COMMAND: "x", "post.hook.backup.velero.io/on-error": "Fail"}),
        );
        let report = r.run_post(&[p]).await;
        assert_eq!(report.outcomes.len(), 1);
        assert_eq!(report.outcomes[0].result, HookResult::Skipped);
        assert!(
            report.outcomes[0]
                .error
                .as_deref()
                .unwrap()
                .contains("Pending")
        );
        assert!(report.failed_pods.is_empty());
        assert!(exec.calls.lock().unwrap().is_empty());
        assert_eq!(
            crate::hooks::HookStatus::of(&report.outcomes).hooks_attempted,
            0
        );
    }

    #[tokio::test]
    async fn many_pods_keep_their_order() {
        let exec = Arc::new(FakeExec::default());
        let r = runner(
            exec.clone(),
            json!({"resources": [{"name": "s", "pre": [{"exec": {"command": ["x"]}}]}]}),
        )
        .with_concurrency(3);
        let pods: Vec<Pod> = (0..10)
            .map(|i| pod("a", &format!("p{i}"), "Running", json!({}), json!({})))
            .collect();
        let report = r.run_pre(&pods).await;
        let names: Vec<&str> = report.outcomes.iter().map(|o| o.pod.as_str()).collect();
        assert_eq!(names, (0..10).map(|i| format!("p{i}")).collect::<Vec<_>>());
        assert_eq!(exec.calls.lock().unwrap().len(), 10);
    }
}
