//! Running a command in a container: the API server's `pods/exec` subresource over WebSocket
//! (kube's `Api::<Pod>::exec`), as Velero's `podexec` does over SPDY.
//!
//! [`PodExec`] is the seam the hook runners use; [`ApiExecutor`] is the real one. A call:
//! - asks for stdout and stderr (no stdin, no TTY) and reads both at once, keeping at most
//!   `output_limit` bytes of each (the rest is read and dropped, so the command never blocks on
//!   a full pipe);
//! - takes the exit code from the status message the API server sends on the stream's status
//!   channel (`Success`: 0; `NonZeroExitCode`: the code in its `ExitCode` cause);
//! - is bounded by the hook's timeout from the first byte of the request to the status. When it
//!   runs out, the connection is closed; the command may go on in the container (the exec API
//!   has no way to stop it), as with Velero.
//!
//! RBAC: `create` on `pods/exec` (and `get`, which WebSocket upgrades are authorized as).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Client;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::HookError;

/// Default most bytes of stdout and of stderr kept per command: 64 KiB.
pub const DEFAULT_OUTPUT_LIMIT: usize = 64 * 1024;

/// One command to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecRequest {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
    /// The container (resolved: never empty).
    pub container: String,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The most the whole call may take (connection, command, status).
    pub timeout: Duration,
}

/// What a command did: its exit code and its output.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// The exit code (0: success).
    pub exit_code: i32,
    /// Standard output (at most the executor's limit, lossy UTF-8).
    pub stdout: String,
    /// Standard error (at most the executor's limit, lossy UTF-8).
    pub stderr: String,
    /// Whether either stream was cut at the limit.
    pub truncated: bool,
    /// How long the call took.
    pub duration: Duration,
}

/// Runs commands in containers. Implemented by [`ApiExecutor`]; tests put a fake in its place.
#[async_trait::async_trait]
pub trait PodExec: Send + Sync {
    /// Runs `req` and returns its exit code and output (a non-zero exit code is not an error
    /// here: the caller decides).
    ///
    /// # Errors
    /// [`HookError::TimedOut`] when `req.timeout` runs out; [`HookError::Exec`] when the
    /// request fails or the API server reports an error other than the exit code.
    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, HookError>;
}

/// Runs commands through the API server (`pods/exec`).
#[derive(Clone)]
pub struct ApiExecutor {
    client: Client,
    output_limit: usize,
}

impl std::fmt::Debug for ApiExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiExecutor")
            .field("output_limit", &self.output_limit)
            .finish_non_exhaustive()
    }
}

impl ApiExecutor {
    /// An executor on `client`, keeping [`DEFAULT_OUTPUT_LIMIT`] bytes of each stream.
    #[must_use]
    pub fn new(client: Client) -> Self {
        Self {
            client,
            output_limit: DEFAULT_OUTPUT_LIMIT,
        }
    }

    /// The same, keeping at most `bytes` of each stream.
    #[must_use]
    pub fn with_output_limit(mut self, bytes: usize) -> Self {
        self.output_limit = bytes;
        self
    }
}

/// Reads a stream to its end, keeping the first `limit` bytes; `(kept, truncated)`.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut r) = reader else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; 8192];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

/// The exit code in the status the API server sends when the command ends.
///
/// # Errors
/// The reason when there is no status or it reports another failure (container not found,
/// command not found in the image…).
pub fn exit_code(status: Option<&Status>) -> Result<i32, String> {
    let Some(s) = status else {
        return Err("the exec stream ended without an exit status".into());
    };
    if s.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if s.reason.as_deref() == Some("NonZeroExitCode") {
        let code = s
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|c| {
                c.iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
                    .and_then(|c| c.message.as_deref())
            })
            .and_then(|m| m.trim().parse::<i32>().ok());
        return code.ok_or_else(|| {
            format!(
                "non-zero exit without a code: {}",
                s.message.as_deref().unwrap_or_default()
            )
        });
    }
    Err(s
        .message
        .clone()
        .filter(|m| !m.is_empty())
        .or_else(|| s.reason.clone())
        .unwrap_or_else(|| "the command failed without a message".into()))
}

#[async_trait::async_trait]
impl PodExec for ApiExecutor {
    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, HookError> {
        let started = Instant::now();
        let pod = super::pod_key(&req.namespace, &req.pod);
        let fail = |reason: String| HookError::Exec {
            pod: pod.clone(),
            container: req.container.clone(),
            reason,
        };
        let run = async {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &req.namespace);
            let params = AttachParams::default()
                .container(req.container.clone())
                .stdin(false)
                .stdout(true)
                .stderr(true);
            let mut process = api
                .exec(&req.pod, req.command.clone(), &params)
                .await
                .map_err(|e| fail(crate::cluster::describe(&e)))?;
            let status = process.take_status();
            let ((stdout, cut_out), (stderr, cut_err)) = tokio::join!(
                read_capped(process.stdout(), self.output_limit),
                read_capped(process.stderr(), self.output_limit)
            );
            let status = match status {
                Some(s) => s.await,
                None => None,
            };
            // The streams are at their end: the connection is closed by now.
            let _ = process.join().await;
            let code = exit_code(status.as_ref()).map_err(fail)?;
            Ok(ExecOutput {
                exit_code: code,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
                truncated: cut_out || cut_err,
                duration: started.elapsed(),
            })
        };
        match tokio::time::timeout(req.timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(HookError::TimedOut {
                pod: pod.clone(),
                container: req.container.clone(),
                after: super::go_duration(req.timeout),
            }),
        }
    }
}

/// The end of a command's stderr for an error message: `; stderr: …` (its last 512 bytes), or
/// empty.
fn stderr_tail(stderr: &str) -> String {
    let t = stderr.trim();
    if t.is_empty() {
        return String::new();
    }
    let mut start = t.len().saturating_sub(512);
    while !t.is_char_boundary(start) {
        start += 1;
    }
    format!("; stderr: {}", &t[start..])
}

/// Runs one planned hook in `container` of a pod and returns its outcome (`phase` as given),
/// logging it and the command's output when `log` is set. A non-zero exit code, a timeout or an
/// exec error is a `Failed` outcome.
pub(crate) async fn run_hook(
    executor: &dyn PodExec,
    log: Option<&crate::report::RunLog>,
    namespace: &str,
    pod: &str,
    container: &str,
    hook: &super::spec::PlannedExec,
    phase: super::HookPhase,
) -> super::HookOutcome {
    let mut o = super::outcome::planned(namespace, pod, phase, hook);
    o.container = container.to_string();
    let req = ExecRequest {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: container.to_string(),
        command: hook.command.clone(),
        timeout: hook.timeout,
    };
    let started = Instant::now();
    let ran = executor.exec(&req).await;
    o.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut output = None;
    match ran {
        Ok(out) => {
            o.exit_code = Some(out.exit_code);
            if out.exit_code == 0 {
                o.result = super::HookResult::Succeeded;
            } else {
                o.result = super::HookResult::Failed;
                o.error = Some(
                    HookError::ExitCode {
                        pod: super::pod_key(namespace, pod),
                        container: container.to_string(),
                        code: out.exit_code,
                        stderr: stderr_tail(&out.stderr),
                    }
                    .to_string(),
                );
            }
            output = Some(out);
        }
        Err(e) => {
            o.result = super::HookResult::Failed;
            o.error = Some(e.to_string());
        }
    }
    if let Some(log) = log {
        super::outcome::log(log, &o);
        if let Some(out) = &output {
            super::outcome::log_output(log, &o, &out.stdout, &out.stderr);
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{StatusCause, StatusDetails};

    fn status(kind: &str, reason: Option<&str>, code: Option<&str>, message: &str) -> Status {
        Status {
            status: Some(kind.into()),
            reason: reason.map(str::to_string),
            message: Some(message.into()),
            details: code.map(|c| StatusDetails {
                causes: Some(vec![StatusCause {
                    reason: Some("ExitCode".into()),
                    message: Some(c.into()),
                    field: None,
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn exit_codes_from_the_status_channel() {
        assert_eq!(exit_code(Some(&status("Success", None, None, ""))), Ok(0));
        assert_eq!(
            exit_code(Some(&status(
                "Failure",
                Some("NonZeroExitCode"),
                Some("3"),
                "command terminated with non-zero exit code: exit status 3"
            ))),
            Ok(3)
        );
        let e = exit_code(Some(&status(
            "Failure",
            Some("InternalError"),
            None,
            "exec: \"nope\": executable file not found in $PATH",
        )))
        .unwrap_err();
        assert!(e.contains("executable file not found"), "{e}");
        assert!(exit_code(None).is_err());
        assert!(exit_code(Some(&status("Failure", Some("NonZeroExitCode"), None, "x"))).is_err());
    }

    #[tokio::test]
    async fn output_is_capped_and_drained() {
        let data = vec![b'a'; 20_000];
        let (kept, cut) = read_capped(Some(&data[..]), 1000).await;
        assert_eq!(kept.len(), 1000);
        assert!(cut);
        let (kept, cut) = read_capped(Some(&b"short"[..]), 1000).await;
        assert_eq!(kept, b"short");
        assert!(!cut);
        let (kept, cut) = read_capped(None::<&[u8]>, 10).await;
        assert!(kept.is_empty() && !cut);
    }
}
