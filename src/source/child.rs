//! Child processes with a deadline: what the sources run that could stall (the kustomize
//! renderer, the network part of a Git fetch). Both pipes are read on threads, so a large output
//! never blocks on a full pipe; a child still running at its deadline is killed (SIGKILL), which
//! also releases whatever it held (sockets, file locks).

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How a child ended.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it wrote to stdout.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Why a child did not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChildError {
    /// It could not be started, or waited for.
    #[error("cannot run it: {0}")]
    Spawn(std::io::Error),
    /// It ran past its deadline and was killed.
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
}

/// Runs `command` with `input` on its stdin, and waits at most `timeout` for it.
///
/// # Errors
/// [`ChildError::Spawn`], or [`ChildError::Timeout`] after killing it.
pub(crate) fn run(
    command: &mut Command,
    input: &[u8],
    timeout: Duration,
) -> Result<Finished, ChildError> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ChildError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_vec();
    let in_thread = std::thread::spawn(move || {
        // A child that exits without reading its input closes the pipe: not an error here.
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ChildError::Timeout(timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                let _ = child.kill();
                return Err(ChildError::Spawn(e));
            }
        }
    };
    let _ = in_thread.join();
    Ok(Finished {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_read_and_stalls_are_killed() {
        let f = run(
            Command::new("sh").args(["-c", "cat; echo oops >&2"]),
            b"hello",
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(f.status.success());
        assert_eq!(f.stdout, b"hello");
        assert_eq!(f.stderr, b"oops\n");
        let started = Instant::now();
        let e = run(
            Command::new("sleep").arg("30"),
            b"",
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(e, ChildError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(e.to_string(), "timed out after 200ms");
    }
}
