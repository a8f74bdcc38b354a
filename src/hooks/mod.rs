//! Velero's hooks (DESIGN §7): commands run in the containers of pods around their backup, and
//! init containers and commands added to pods when they are restored.
//!
//! Source: Velero's documentation ("Backup Hooks", "Restore Hooks", the Backup and Restore API
//! types) and its `internal/hook` package; the field and annotation names are Velero's, so a pod
//! annotated for Velero, or a Backup/Restore spec written for Velero, behaves the same here.
//!
//! # Backup hooks ([`backup`])
//!
//! - **Where they come from**: the pod annotations `pre.hook.backup.velero.io/{container,command,
//!   on-error,timeout}` and `post.hook.backup.velero.io/…` ([`annotations`]; Velero's unphased
//!   `hook.backup.velero.io/…` keys count as pre hooks), or the backup spec's
//!   `hooks.resources[]` ([`spec::BackupHooks`]: namespace, resource and label selection, `pre`
//!   and `post` lists of `exec` hooks). A pod with the annotation hook of a phase runs that hook
//!   only: the spec's hooks of that phase are not run for it (Velero's precedence).
//! - **When**: the pre hooks of every pod the backup takes run before the volume phase
//!   ([`crate::volumes::phase`]) snapshots or copies any volume; the post hooks run once the
//!   whole phase is over (CSI snapshots taken, file-system backups finished). Pods run their
//!   hooks concurrently (bounded), the hooks of one pod one after another, in order.
//! - **Which pods**: the pods the backup takes (its namespaces and selectors) that are `Running`;
//!   hooks of other pods are recorded as skipped (Velero's executor, too, does not run them in
//!   finished pods).
//! - **Failures**: a hook fails when its command exits non-zero, it times out (default 30 s,
//!   Go duration), its container does not exist, the exec request fails, or its annotations are
//!   invalid. `onError: Fail` (spec) / `on-error: Fail` (annotation) stops the pod's remaining
//!   hooks of that phase and fails the pod's item as Velero does: an error naming the pod,
//!   container, hook and reason (the backup ends `PartiallyFailed`); after a failed *pre* hook
//!   the pod is not written to the archive and its volumes are not backed up, and its post
//!   hooks do not run. `Continue` (the default, as in Velero's code; its documentation says
//!   `Fail`) records a warning and goes on.
//!
//! # Restore hooks ([`restore`])
//!
//! - **init**: init containers added to each restored pod, from the annotations
//!   `init.hook.restore.velero.io/{container-image,container-name,command}` or the restore spec's
//!   `hooks.resources[].postHooks[].init.initContainers[]` (full container objects). They go
//!   after tidemark's own `tidemark-restore-wait` init container (which waits for the pod's
//!   file-system restored volumes) and before the pod's own init containers, as Velero places
//!   them after its `restore-wait`. The kubelet runs them; tidemark records them (`init`, result
//!   `Added`) and does not count them in `hookStatus`, as Velero does not.
//! - **exec**: commands run in a restored pod once its container is running (or ready with
//!   `waitForReady`), from the annotations `post.hook.restore.velero.io/{container,command,
//!   on-error,exec-timeout,wait-timeout,wait-for-ready}` or the spec's `postHooks[].exec`.
//!   Each restored pod with exec hooks is watched after it is created, concurrently across pods
//!   (bounded); the restore waits for every pod's hooks before it ends. Velero waits for the
//!   container without limit when no wait timeout is given; tidemark bounds the wait
//!   ([`restore::DEFAULT_WAIT_TIMEOUT`], or the pod volume timeout for a pod whose volumes are
//!   restored by file system, since its containers start only after the data is back).
//!
//! # Results
//!
//! Every hook's outcome ([`outcome::HookOutcome`]: pod, container, source, name, phase, exit
//! code, duration, error) is logged in the run's log and stored beside the run's other files
//! (`tidemark-hooks.json.gz` in the backup's or restore's folder: tidemark's own file, which
//! Velero ignores); failures are also warnings or
//! errors of the run's results (Velero's `-results.gz` shape, so Velero still reads it). The
//! counters `hooksAttempted`/`hooksFailed` ([`outcome::HookStatus`]) go into the Velero records'
//! and tidemark's Backup/Restore `status.hookStatus`. `tidemark backup describe` and
//! `restore describe` show both.
//!
//! # Differences from Velero, on purpose
//!
//! - Invalid annotation values (an unparsable timeout, an unknown `on-error`, a command that
//!   starts with `[` but is not a JSON array of strings) are errors naming the pod and the
//!   annotation; Velero logs a warning and falls back to its defaults. An invalid hook fails
//!   like a hook whose command failed (with its `on-error` if that one is valid, else `Fail`).
//! - A hook that never ran because an earlier `Fail` hook of the same pod failed is recorded as
//!   `Skipped` and not counted in `hooksAttempted`.
//! - A restore exec hook that fails with `Continue` is a warning (as for backup hooks); Velero
//!   makes every failed restore hook an error.
//!
//! The I/O is behind two small traits ([`exec::PodExec`] runs a command in a container,
//! [`restore::PodWatch`] waits for a container to come up), so the decisions are unit-tested
//! without an API server; [`exec::ApiExecutor`] and [`restore::ApiPodWatch`] are the real ones
//! (the API server's `pods/exec` subresource over WebSocket, and a watch of the pod). Every call
//! has a timeout.

pub mod annotations;
pub mod backup;
pub mod exec;
pub mod outcome;
pub mod restore;
mod select;
pub mod spec;

pub use backup::{BackupHookRunner, PhaseReport};
pub use exec::{ApiExecutor, ExecOutput, ExecRequest, PodExec};
pub use outcome::{HookOutcome, HookPhase, HookResult, HookSource, HookStatus};
pub use restore::{ApiPodWatch, PodWatch, RestoreHookRunner, RestoreHookSettings};
pub use spec::{BackupHooks, HookErrorMode, RestoreHooks};

/// The name Velero gives hooks that come from pod annotations (`<from-annotation>`).
pub const FROM_ANNOTATION: &str = "<from-annotation>";

/// Errors of hooks: invalid annotations or specs, and why a hook did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// A hook annotation of a pod has an invalid value.
    #[error("pod {pod}: annotation {annotation}: {reason}")]
    Annotation {
        /// The pod, `namespace/name`.
        pod: String,
        /// The annotation key (`pre.hook.backup.velero.io/timeout`).
        annotation: String,
        /// What is wrong with its value.
        reason: String,
    },
    /// A hook spec (`hooks.resources[]` of a Backup or Restore spec) is invalid.
    #[error("{field}: {reason}")]
    Spec {
        /// Path of the field at fault (`spec.template.hooks.resources[0].pre[1].exec.timeout`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The hook's container is not one of the pod's containers.
    #[error("pod {pod}: no container {container:?} (containers: {available})")]
    NoSuchContainer {
        /// The pod, `namespace/name`.
        pod: String,
        /// The container the hook names.
        container: String,
        /// The pod's containers, comma-separated.
        available: String,
    },
    /// The pod has no containers at all (no default container for a hook).
    #[error("pod {pod} has no containers")]
    NoContainers {
        /// The pod, `namespace/name`.
        pod: String,
    },
    /// The exec request failed (connection, authorization, the API server's refusal).
    #[error("pod {pod} container {container}: exec failed: {reason}")]
    Exec {
        /// The pod, `namespace/name`.
        pod: String,
        /// The container.
        container: String,
        /// Why (the API server's message when it gave one).
        reason: String,
    },
    /// The command ran and exited with a non-zero code.
    #[error("pod {pod} container {container}: command exited with code {code}{stderr}")]
    ExitCode {
        /// The pod, `namespace/name`.
        pod: String,
        /// The container.
        container: String,
        /// The exit code.
        code: i32,
        /// `; stderr: …` (its end, at most 512 bytes), or empty.
        stderr: String,
    },
    /// The command did not finish within the hook's timeout (it may still run in the
    /// container: the API gives no way to stop it, as Velero notes).
    #[error("pod {pod} container {container}: timed out after {after}")]
    TimedOut {
        /// The pod, `namespace/name`.
        pod: String,
        /// The container.
        container: String,
        /// The timeout, as a Go duration (`30s`).
        after: String,
    },
    /// A restored pod's container did not come up for its exec hooks.
    #[error("pod {pod}: {reason}")]
    Wait {
        /// The pod, `namespace/name`.
        pod: String,
        /// Why (not running after the wait timeout, the pod finished or was deleted).
        reason: String,
    },
}

/// A pod's `namespace/name`.
pub(crate) fn pod_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// A duration for hook messages, as Go prints it (`30s`, `1m30s`, `1.5s`), to the millisecond
/// under a minute and to the second above.
pub(crate) fn go_duration(d: std::time::Duration) -> String {
    let ms = (d.as_micros() + 500) / 1000;
    if ms.is_multiple_of(1000) || ms >= 60_000 {
        let secs = u64::try_from((ms + 500) / 1000).unwrap_or(u64::MAX);
        crate::api::velero::go_duration(std::time::Duration::from_secs(secs))
    } else {
        let frac = format!("{:03}", ms % 1000);
        format!("{}.{}s", ms / 1000, frac.trim_end_matches('0'))
    }
}

/// The container a hook runs in: `wanted`, which must be one of the pod's containers (or, with
/// `sidecars`, an init container with `restartPolicy: Always`, as Velero's executor allows), or
/// else the pod's first container.
///
/// # Errors
/// [`HookError::NoSuchContainer`] or [`HookError::NoContainers`].
pub(crate) fn resolve_container(
    pod: &k8s_openapi::api::core::v1::Pod,
    wanted: Option<&str>,
    sidecars: bool,
) -> Result<String, HookError> {
    let key = pod_key(
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
    );
    let spec = pod.spec.as_ref();
    let containers: Vec<&str> = spec
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let Some(wanted) = wanted else {
        return containers
            .first()
            .map(|c| c.to_string())
            .ok_or(HookError::NoContainers { pod: key });
    };
    let sidecar = sidecars
        && spec
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|inits| {
                inits
                    .iter()
                    .any(|c| c.name == wanted && c.restart_policy.as_deref() == Some("Always"))
            });
    if containers.contains(&wanted) || sidecar {
        Ok(wanted.to_string())
    } else {
        Err(HookError::NoSuchContainer {
            pod: key,
            container: wanted.to_string(),
            available: containers.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(super::go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(super::go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(super::go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(
            super::go_duration(Duration::from_nanos(2_999_978_808)),
            "3s"
        );
        assert_eq!(super::go_duration(Duration::from_millis(250)), "0.25s");
    }
}
