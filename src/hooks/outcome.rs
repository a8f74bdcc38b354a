//! What hooks did: one [`HookOutcome`] per hook, Velero's `hookStatus` counters
//! ([`HookStatus`]), the lines they put in a run's log and results, the table `describe`
//! shows, and the side file that keeps them ([`HOOKS_FILE`] in the backup's or restore's
//! folder; tidemark's own files are named `tidemark-…`, and Velero ignores them).

use serde::{Deserialize, Serialize};

use super::spec::HookErrorMode;
use crate::report::{Results, RunLog};
use crate::store::{Store, StoreError};

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookPhase {
    /// Before the pod's volumes are backed up.
    Pre,
    /// After the backup's volumes are backed up.
    Post,
    /// An init container added to a restored pod.
    Init,
    /// A command run in a restored pod once its container is up.
    Exec,
}

impl HookPhase {
    /// `pre`, `post`, `init`, `exec`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pre => "pre",
            Self::Post => "post",
            Self::Init => "init",
            Self::Exec => "exec",
        }
    }
}

/// Where a hook was declared (Velero's `hookSource` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookSource {
    /// Pod annotations.
    Annotation,
    /// The Backup or Restore spec's `hooks.resources[]`.
    Spec,
}

impl HookSource {
    /// `annotation` or `spec`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Annotation => "annotation",
            Self::Spec => "spec",
        }
    }
}

/// How a hook ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HookResult {
    /// The command exited with code 0.
    Succeeded,
    /// It failed: non-zero exit, timeout, exec error, missing container, invalid declaration,
    /// or (restore) the container never came up.
    Failed,
    /// Not run: the pod was not running, or an earlier hook of the pod with `onError: Fail`
    /// failed. Not counted in `hooksAttempted`.
    Skipped,
    /// An init container added to a restored pod (the kubelet runs it).
    Added,
}

/// The outcome of one hook in one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HookOutcome {
    /// The pod's namespace (the target namespace for restores).
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container the hook ran in (or the init container's name); empty when unknown.
    pub container: String,
    /// Annotation or spec.
    pub source: HookSource,
    /// The spec hook set's name, or `<from-annotation>`.
    pub name: String,
    /// Position in the spec hook set's list (0 for annotations).
    #[serde(default)]
    pub index: usize,
    /// `pre`, `post` (backup), `init`, `exec` (restore).
    pub phase: HookPhase,
    /// The command and its arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// What a failure does.
    pub on_error: HookErrorMode,
    /// How it ended.
    pub result: HookResult,
    /// The command's exit code, when it ran to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// How long it ran, milliseconds (for restore exec hooks: the command only, not the wait).
    #[serde(default)]
    pub duration_ms: u64,
    /// Why it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl HookOutcome {
    /// Whether Velero's `hooksAttempted` counts it: a backup pre/post or restore exec hook that
    /// ran or was tried (succeeded or failed).
    #[must_use]
    pub fn attempted(&self) -> bool {
        self.phase != HookPhase::Init
            && matches!(self.result, HookResult::Succeeded | HookResult::Failed)
    }

    /// Whether it failed.
    #[must_use]
    pub fn failed(&self) -> bool {
        self.result == HookResult::Failed
    }

    /// `pre hook "freeze" (spec) in pod db/pg-0 container pg`.
    #[must_use]
    pub fn describe(&self) -> String {
        let container = if self.container.is_empty() {
            String::new()
        } else {
            format!(" container {}", self.container)
        };
        format!(
            "{} hook {:?} ({}) in pod {}/{}{container}",
            self.phase.as_str(),
            self.name,
            self.source.as_str(),
            self.namespace,
            self.pod
        )
    }

    /// The results message of a failed hook: what it was, why it failed, and what the failure
    /// did (`…; onError Fail: the pod and its volumes are not backed up`).
    #[must_use]
    pub fn message(&self) -> String {
        let consequence = match (self.on_error, self.phase) {
            (HookErrorMode::Fail, HookPhase::Pre) => {
                "onError Fail: the pod and its volumes are not backed up, its post hooks do not run"
            }
            (HookErrorMode::Fail, _) => "onError Fail: the pod's remaining hooks do not run",
            (HookErrorMode::Continue, _) => "onError Continue",
        };
        format!(
            "{} failed: {}; {consequence}",
            self.describe(),
            self.error.as_deref().unwrap_or("unknown error")
        )
    }
}

/// The outcome of a planned exec hook before it runs (`Skipped`, no error yet; the container
/// is the planned one, empty for "the first container").
pub(crate) fn planned(
    namespace: &str,
    pod: &str,
    phase: HookPhase,
    hook: &super::spec::PlannedExec,
) -> HookOutcome {
    HookOutcome {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: hook.container.clone().unwrap_or_default(),
        source: hook.source,
        name: hook.name.clone(),
        index: hook.index,
        phase,
        command: hook.command.clone(),
        on_error: hook.on_error,
        result: HookResult::Skipped,
        exit_code: None,
        duration_ms: 0,
        error: None,
    }
}

/// The outcome of a hook that cannot run (invalid annotations): `Failed`, with the reason.
pub(crate) fn invalid(
    namespace: &str,
    pod: &str,
    phase: HookPhase,
    hook: &super::spec::InvalidHook,
) -> HookOutcome {
    HookOutcome {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: hook.container.clone().unwrap_or_default(),
        source: hook.source,
        name: hook.name.clone(),
        index: 0,
        phase,
        command: Vec::new(),
        on_error: hook.on_error,
        result: HookResult::Failed,
        exit_code: None,
        duration_ms: 0,
        error: Some(hook.error.to_string()),
    }
}

/// `planned` with its result set to `Failed` and the reason.
pub(crate) fn failed(
    namespace: &str,
    pod: &str,
    phase: HookPhase,
    hook: &super::spec::PlannedExec,
    error: String,
) -> HookOutcome {
    HookOutcome {
        result: HookResult::Failed,
        error: Some(error),
        ..planned(namespace, pod, phase, hook)
    }
}

/// `planned` with the reason it was skipped.
pub(crate) fn skipped(
    namespace: &str,
    pod: &str,
    phase: HookPhase,
    hook: &super::spec::PlannedExec,
    reason: String,
) -> HookOutcome {
    HookOutcome {
        error: Some(reason),
        ..planned(namespace, pod, phase, hook)
    }
}

/// Velero's `status.hookStatus` (`hooksAttempted`, `hooksFailed`; zeros left out, as Velero's
/// `omitempty` does).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct HookStatus {
    /// Hooks attempted (backup pre/post and restore exec hooks that ran or were tried).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hooks_attempted: u64,
    /// Hooks that failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hooks_failed: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl HookStatus {
    /// Counts `outcomes` as Velero's hook tracker does ([`HookOutcome::attempted`]).
    #[must_use]
    pub fn of(outcomes: &[HookOutcome]) -> Self {
        let attempted: Vec<&HookOutcome> = outcomes.iter().filter(|o| o.attempted()).collect();
        Self {
            hooks_attempted: attempted.len() as u64,
            hooks_failed: attempted.iter().filter(|o| o.failed()).count() as u64,
        }
    }

    /// The JSON of the Velero records' `status.hookStatus` (`{}` when both are zero).
    #[must_use]
    pub fn to_json(self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({}))
    }

    /// Reads a Velero record's `status.hookStatus` (zeros when absent or unreadable).
    #[must_use]
    pub fn from_json(v: Option<&serde_json::Value>) -> Self {
        v.and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
}

/// The most of a command's output put in the run's log per stream, bytes.
pub const LOG_OUTPUT_LIMIT: usize = 2048;

/// Cuts `s` to at most `limit` bytes on a character boundary, marking the cut.
#[must_use]
pub fn clip(s: &str, limit: usize) -> String {
    if s.len() <= limit {
        return s.to_string();
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes more)", &s[..end], s.len() - end)
}

/// Logs an outcome (one line; failures at error or warning level by `onError`, skips at info).
pub fn log(log: &RunLog, o: &HookOutcome) {
    let took = crate::report::text::duration(std::time::Duration::from_millis(o.duration_ms));
    match o.result {
        HookResult::Succeeded => log.info(&format!(
            "{} succeeded (exit 0) in {took}; command {:?}",
            o.describe(),
            o.command
        )),
        HookResult::Added => log.info(&format!(
            "{}: init container added; command {:?}",
            o.describe(),
            o.command
        )),
        HookResult::Skipped => log.info(&format!(
            "{} skipped: {}",
            o.describe(),
            o.error.as_deref().unwrap_or_default()
        )),
        HookResult::Failed if o.on_error == HookErrorMode::Fail => log.error(&o.message()),
        HookResult::Failed => log.warn(&o.message()),
    }
}

/// Logs a command's output (clipped to [`LOG_OUTPUT_LIMIT`] per stream), as Velero logs a hook's
/// stdout and stderr.
pub fn log_output(log: &RunLog, o: &HookOutcome, stdout: &str, stderr: &str) {
    for (what, text) in [("stdout", stdout), ("stderr", stderr)] {
        if !text.trim().is_empty() {
            log.info(&format!(
                "{} {what}: {}",
                o.describe(),
                clip(text.trim_end(), LOG_OUTPUT_LIMIT)
            ));
        }
    }
}

/// Adds the failed outcomes to a run's results, in their pod's namespace: `onError: Fail` as
/// errors (the run ends `PartiallyFailed`), `Continue` as warnings.
pub fn record(outcomes: &[HookOutcome], results: &mut Results) {
    for o in outcomes.iter().filter(|o| o.failed()) {
        let ns = Some(o.namespace.as_str());
        match o.on_error {
            HookErrorMode::Fail => results.errors.add(ns, o.message()),
            HookErrorMode::Continue => results.warnings.add(ns, o.message()),
        }
    }
}

/// The table `backup describe` / `restore describe` show (`Hooks:  <none>` without hooks).
#[must_use]
pub fn render(outcomes: &[HookOutcome]) -> String {
    if outcomes.is_empty() {
        return "Hooks:  <none>\n".into();
    }
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            vec![
                o.phase.as_str().to_string(),
                format!("{}/{}", o.namespace, o.pod),
                if o.container.is_empty() {
                    "-".into()
                } else {
                    o.container.clone()
                },
                o.name.clone(),
                o.source.as_str().to_string(),
                format!("{:?}", o.result),
                o.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
                crate::report::text::duration(std::time::Duration::from_millis(o.duration_ms)),
                o.error
                    .as_deref()
                    .map_or_else(|| "-".into(), |e| clip(e, 200)),
            ]
        })
        .collect();
    let table = crate::report::text::columns(
        &[
            "PHASE",
            "POD",
            "CONTAINER",
            "HOOK",
            "SOURCE",
            "RESULT",
            "EXIT",
            "DURATION",
            "ERROR",
        ],
        &rows,
    );
    format!("Hooks:\n{}", crate::report::text::indent(&table))
}

/// The file of a backup's or restore's hook outcomes, in its folder: a gzipped JSON list of
/// [`HookOutcome`] (written only when hooks were due).
pub const HOOKS_FILE: &str = "tidemark-hooks.json.gz";

/// Writes a backup's outcomes (nothing when there are none, so a backup without hooks has
/// exactly Velero's files).
///
/// # Errors
/// The store's error.
pub async fn write_backup(
    store: &Store,
    backup: &str,
    outcomes: &[HookOutcome],
) -> Result<(), StoreError> {
    write(
        store,
        &store.layout().backup_file(backup, HOOKS_FILE),
        outcomes,
    )
    .await
}

/// Writes a restore's outcomes (nothing when there are none).
///
/// # Errors
/// The store's error.
pub async fn write_restore(
    store: &Store,
    restore: &str,
    outcomes: &[HookOutcome],
) -> Result<(), StoreError> {
    write(
        store,
        &store.layout().restore_file(restore, HOOKS_FILE),
        outcomes,
    )
    .await
}

async fn write(
    store: &Store,
    path: &object_store::path::Path,
    outcomes: &[HookOutcome],
) -> Result<(), StoreError> {
    if outcomes.is_empty() {
        return Ok(());
    }
    store
        .put(path, crate::report::gzip_json(&outcomes), false)
        .await
}

async fn read(store: &Store, path: &object_store::path::Path) -> Result<Vec<HookOutcome>, String> {
    match store.get(path).await {
        Ok(gz) => {
            let raw = crate::report::gunzip(&gz).map_err(|e| format!("{path}: not gzip: {e}"))?;
            serde_json::from_slice(&raw).map_err(|e| format!("{path}: {e}"))
        }
        Err(StoreError::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

/// Reads a backup's outcomes (empty when the backup ran no hooks).
///
/// # Errors
/// A message naming the file when it cannot be read or parsed.
pub async fn read_backup(store: &Store, backup: &str) -> Result<Vec<HookOutcome>, String> {
    read(store, &store.layout().backup_file(backup, HOOKS_FILE)).await
}

/// Reads a restore's outcomes (empty when the restore ran no hooks).
///
/// # Errors
/// A message naming the file when it cannot be read or parsed.
pub async fn read_restore(store: &Store, restore: &str) -> Result<Vec<HookOutcome>, String> {
    read(store, &store.layout().restore_file(restore, HOOKS_FILE)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn outcome(
        phase: HookPhase,
        result: HookResult,
        mode: HookErrorMode,
    ) -> HookOutcome {
        HookOutcome {
            namespace: "db".into(),
            pod: "pg-0".into(),
            container: "pg".into(),
            source: HookSource::Spec,
            name: "freeze".into(),
            index: 0,
            phase,
            command: vec!["/bin/true".into()],
            on_error: mode,
            result,
            exit_code: None,
            duration_ms: 12,
            error: (result == HookResult::Failed).then(|| "exit code 3".into()),
        }
    }

    #[test]
    fn counters_as_velero_counts() {
        use HookErrorMode::*;
        use HookPhase::*;
        use HookResult::*;
        let all = [
            outcome(Pre, Succeeded, Continue),
            outcome(Pre, Failed, Fail),
            outcome(Post, Skipped, Continue),
            outcome(Init, Added, Continue),
            outcome(Exec, Failed, Continue),
            outcome(Exec, Succeeded, Continue),
        ];
        let s = HookStatus::of(&all);
        assert_eq!(
            s,
            HookStatus {
                hooks_attempted: 4,
                hooks_failed: 2
            }
        );
        assert_eq!(
            s.to_json(),
            serde_json::json!({"hooksAttempted": 4, "hooksFailed": 2})
        );
        assert_eq!(HookStatus::default().to_json(), serde_json::json!({}));
        assert_eq!(
            HookStatus::from_json(Some(&serde_json::json!({"hooksAttempted": 1}))),
            HookStatus {
                hooks_attempted: 1,
                hooks_failed: 0
            }
        );
    }

    #[test]
    fn failures_become_errors_or_warnings() {
        let mut r = Results::default();
        record(
            &[
                outcome(HookPhase::Pre, HookResult::Failed, HookErrorMode::Fail),
                outcome(HookPhase::Post, HookResult::Failed, HookErrorMode::Continue),
                outcome(HookPhase::Post, HookResult::Succeeded, HookErrorMode::Fail),
            ],
            &mut r,
        );
        let e = &r.errors.namespaces["db"];
        assert_eq!(e.len(), 1);
        assert!(
            e[0].contains(
                "pre hook \"freeze\" (spec) in pod db/pg-0 container pg failed: exit code 3"
            ) && e[0].contains("not backed up"),
            "{}",
            e[0]
        );
        assert_eq!(r.warnings.namespaces["db"].len(), 1);
        assert!(r.warnings.namespaces["db"][0].contains("onError Continue"));
    }

    #[tokio::test]
    async fn the_side_file_is_written_only_with_outcomes() {
        let dir = tempfile::tempdir().unwrap();
        let url: crate::store::LocationUrl =
            format!("file://{}", dir.path().display()).parse().unwrap();
        let store = Store::open(&url, false).unwrap();
        write_backup(&store, "b", &[]).await.unwrap();
        assert!(!dir.path().join("backups/b").join(HOOKS_FILE).exists());
        let o = vec![outcome(
            HookPhase::Pre,
            HookResult::Succeeded,
            HookErrorMode::Continue,
        )];
        write_backup(&store, "b", &o).await.unwrap();
        assert!(dir.path().join("backups/b").join(HOOKS_FILE).exists());
        assert_eq!(read_backup(&store, "b").await.unwrap(), o);
        write_restore(&store, "r", &o).await.unwrap();
        assert_eq!(read_restore(&store, "r").await.unwrap(), o);
        assert!(read_restore(&store, "other").await.unwrap().is_empty());
    }

    #[test]
    fn outcomes_serialize_and_render() {
        let o = outcome(HookPhase::Exec, HookResult::Failed, HookErrorMode::Fail);
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v["phase"], "exec");
        assert_eq!(v["source"], "spec");
        assert_eq!(v["result"], "Failed");
        assert_eq!(v["onError"], "Fail");
        let back: HookOutcome = serde_json::from_value(v).unwrap();
        assert_eq!(back, o);
        let t = render(&[o]);
        assert!(t.starts_with("Hooks:\n  PHASE"), "{t}");
        assert!(t.contains("db/pg-0") && t.contains("Failed"), "{t}");
        assert_eq!(render(&[]), "Hooks:  <none>\n");
        assert_eq!(clip("héllo", 2), "h… (5 bytes more)");
    }
}
