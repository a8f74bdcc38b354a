//! Hooks declared by pod annotations (source: Velero's "Backup Hooks" and "Restore Hooks"
//! documentation and `internal/hook/item_hook_handler.go`).
//!
//! A `command` annotation is either a JSON array of strings (`["/bin/sh","-c","sync"]`) or one
//! plain command, run as a single word (`/usr/bin/sync`; it is not split at spaces, as in
//! Velero). Without a `command` annotation a pod has no annotation hook (for init hooks: without
//! a `container-image` annotation). Unlike Velero, which falls back to its defaults with a
//! warning, an invalid value is an error naming the pod and the annotation ([`HookError`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::outcome::HookSource;
use super::spec::{
    DEFAULT_TIMEOUT, HookErrorMode, InvalidHook, PlannedExec, PlannedInit, RestoreExec,
    parse_hook_duration,
};
use super::{FROM_ANNOTATION, HookError};

/// Pre backup hook: the container (default: the pod's first container).
pub const PRE_BACKUP_CONTAINER: &str = "pre.hook.backup.velero.io/container";
/// Pre backup hook: the command (JSON array or one plain command).
pub const PRE_BACKUP_COMMAND: &str = "pre.hook.backup.velero.io/command";
/// Pre backup hook: `Continue` (default) or `Fail`.
pub const PRE_BACKUP_ON_ERROR: &str = "pre.hook.backup.velero.io/on-error";
/// Pre backup hook: a duration, default `30s`.
pub const PRE_BACKUP_TIMEOUT: &str = "pre.hook.backup.velero.io/timeout";
/// Post backup hook: the container (default: the pod's first container).
pub const POST_BACKUP_CONTAINER: &str = "post.hook.backup.velero.io/container";
/// Post backup hook: the command.
pub const POST_BACKUP_COMMAND: &str = "post.hook.backup.velero.io/command";
/// Post backup hook: `Continue` (default) or `Fail`.
pub const POST_BACKUP_ON_ERROR: &str = "post.hook.backup.velero.io/on-error";
/// Post backup hook: a duration, default `30s`.
pub const POST_BACKUP_TIMEOUT: &str = "post.hook.backup.velero.io/timeout";
/// Velero's unphased keys (`hook.backup.velero.io/command` …), read as a pre hook when the pod
/// has no `pre.` command: the prefix of all four.
pub const LEGACY_BACKUP_PREFIX: &str = "hook.backup.velero.io/";

/// Restore exec hook: the container (default: the pod's first container).
pub const RESTORE_CONTAINER: &str = "post.hook.restore.velero.io/container";
/// Restore exec hook: the command.
pub const RESTORE_COMMAND: &str = "post.hook.restore.velero.io/command";
/// Restore exec hook: `Continue` (default) or `Fail`.
pub const RESTORE_ON_ERROR: &str = "post.hook.restore.velero.io/on-error";
/// Restore exec hook: how long the command may run (a duration, default `30s`).
pub const RESTORE_EXEC_TIMEOUT: &str = "post.hook.restore.velero.io/exec-timeout";
/// Restore exec hook: how long to wait for the container (a duration).
pub const RESTORE_WAIT_TIMEOUT: &str = "post.hook.restore.velero.io/wait-timeout";
/// Restore exec hook: wait for Ready rather than Running (`true`/`false`).
pub const RESTORE_WAIT_FOR_READY: &str = "post.hook.restore.velero.io/wait-for-ready";
/// Restore init hook: the init container's image (required for an init hook).
pub const INIT_IMAGE: &str = "init.hook.restore.velero.io/container-image";
/// Restore init hook: the init container's name (default [`DEFAULT_INIT_NAME`]).
pub const INIT_NAME: &str = "init.hook.restore.velero.io/container-name";
/// Restore init hook: the init container's command (default: the image's entrypoint).
pub const INIT_COMMAND: &str = "init.hook.restore.velero.io/command";

/// Name of an annotation init container without `container-name` (Velero generates
/// `velero-restore-init-<random>`; a fixed name keeps restores repeatable).
pub const DEFAULT_INIT_NAME: &str = "tidemark-restore-init";

/// Parses a `command` annotation: a JSON array of strings, or one plain command.
///
/// # Errors
/// The reason: empty, or starting with `[` without being a non-empty JSON array of strings.
pub fn parse_command(value: &str) -> Result<Vec<String>, String> {
    let v = value.trim();
    if v.is_empty() {
        return Err("empty command".into());
    }
    if v.starts_with('[') {
        let cmd: Vec<String> = serde_json::from_str(v)
            .map_err(|e| format!("not a JSON array of strings ({e}): {v}"))?;
        if cmd.first().is_none_or(|c| c.trim().is_empty()) {
            return Err("the JSON array must start with the command".into());
        }
        return Ok(cmd);
    }
    Ok(vec![v.to_string()])
}

/// Parses an `on-error` annotation: `Continue` or `Fail` (any case).
///
/// # Errors
/// The reason, naming the valid values.
pub fn parse_on_error(value: &str) -> Result<HookErrorMode, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "continue" => Ok(HookErrorMode::Continue),
        "fail" => Ok(HookErrorMode::Fail),
        _ => Err(format!("{value:?} is not Continue or Fail")),
    }
}

/// Parses a boolean annotation as Go's `strconv.ParseBool` does (`true`, `1`, `t`, `false`, …).
///
/// # Errors
/// The reason.
pub fn parse_bool(value: &str) -> Result<bool, String> {
    match value.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(format!("{other:?} is not true or false")),
    }
}

/// Checks a container name: a DNS-1123 label (lower-case letters, digits and `-`, at most 63
/// characters, starting and ending with a letter or digit).
///
/// # Errors
/// The reason.
pub fn check_container_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid container name (lower-case letters, digits and '-', at \
             most 63 characters, starting and ending with a letter or digit)"
        ))
    }
}

/// Which backup hook of a pod's annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupPhase {
    /// `pre.hook.backup.velero.io/…` (or Velero's unphased keys).
    Pre,
    /// `post.hook.backup.velero.io/…`.
    Post,
}

fn get<'a>(annotations: &'a BTreeMap<String, String>, key: &str) -> Option<&'a str> {
    annotations.get(key).map(String::as_str)
}

/// The four keys of a backup hook: (container, command, on-error, timeout).
fn backup_keys(phase: BackupPhase, legacy: bool) -> [String; 4] {
    let prefix = match (phase, legacy) {
        (_, true) => LEGACY_BACKUP_PREFIX.to_string(),
        (BackupPhase::Pre, false) => format!("pre.{LEGACY_BACKUP_PREFIX}"),
        (BackupPhase::Post, false) => format!("post.{LEGACY_BACKUP_PREFIX}"),
    };
    ["container", "command", "on-error", "timeout"].map(|k| format!("{prefix}{k}"))
}

/// The backup hook a pod's annotations declare for `phase`, if any: `None` without a `command`
/// annotation (for pre hooks: neither `pre.hook.backup.velero.io/command` nor Velero's unphased
/// `hook.backup.velero.io/command`); `Some(Err)` when a value is invalid. `pod` is
/// `namespace/name`, for errors.
#[must_use]
pub fn backup_hook(
    pod: &str,
    annotations: &BTreeMap<String, String>,
    phase: BackupPhase,
) -> Option<Result<PlannedExec, InvalidHook>> {
    let mut keys = backup_keys(phase, false);
    if phase == BackupPhase::Pre && get(annotations, &keys[1]).is_none_or(|c| c.trim().is_empty()) {
        keys = backup_keys(phase, true);
    }
    let [k_container, k_command, k_on_error, k_timeout] = &keys;
    let command = get(annotations, k_command).filter(|c| !c.trim().is_empty())?;
    let container = get(annotations, k_container)
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let bad = |annotation: &str, reason: String| HookError::Annotation {
        pod: pod.to_string(),
        annotation: annotation.to_string(),
        reason,
    };
    let on_error = get(annotations, k_on_error).map(parse_on_error);
    let invalid = |error: HookError, on_error: &Option<Result<HookErrorMode, String>>| {
        Some(Err(InvalidHook {
            source: HookSource::Annotation,
            name: FROM_ANNOTATION.into(),
            container: container.clone(),
            on_error: match on_error {
                Some(Ok(m)) => *m,
                None => HookErrorMode::Continue,
                Some(Err(_)) => HookErrorMode::Fail,
            },
            error,
        }))
    };
    if let Some(Err(reason)) = &on_error {
        return invalid(bad(k_on_error, reason.clone()), &on_error);
    }
    let command = match parse_command(command) {
        Ok(c) => c,
        Err(reason) => return invalid(bad(k_command, reason), &on_error),
    };
    let timeout = match get(annotations, k_timeout)
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        None => DEFAULT_TIMEOUT,
        Some(t) => match parse_hook_duration(t) {
            Ok(d) if d.is_zero() => DEFAULT_TIMEOUT,
            Ok(d) => d,
            Err(reason) => return invalid(bad(k_timeout, reason), &on_error),
        },
    };
    Some(Ok(PlannedExec {
        source: HookSource::Annotation,
        name: FROM_ANNOTATION.into(),
        index: 0,
        container,
        command,
        on_error: on_error.and_then(Result::ok).unwrap_or_default(),
        timeout,
    }))
}

/// The restore exec hook a pod's annotations declare, if any (`None` without
/// `post.hook.restore.velero.io/command`; `Some(Err)` when a value is invalid). `pod` is
/// `namespace/name`, for errors.
#[must_use]
pub fn restore_exec_hook(
    pod: &str,
    annotations: &BTreeMap<String, String>,
) -> Option<Result<RestoreExec, InvalidHook>> {
    let command = get(annotations, RESTORE_COMMAND).filter(|c| !c.trim().is_empty())?;
    let container = get(annotations, RESTORE_CONTAINER)
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let on_error = get(annotations, RESTORE_ON_ERROR).map(parse_on_error);
    let effective = match &on_error {
        Some(Ok(m)) => *m,
        None => HookErrorMode::Continue,
        Some(Err(_)) => HookErrorMode::Fail,
    };
    let invalid = |annotation: &str, reason: String| {
        Some(Err(InvalidHook {
            source: HookSource::Annotation,
            name: FROM_ANNOTATION.into(),
            container: container.clone(),
            on_error: effective,
            error: HookError::Annotation {
                pod: pod.to_string(),
                annotation: annotation.to_string(),
                reason,
            },
        }))
    };
    if let Some(Err(reason)) = &on_error {
        return invalid(RESTORE_ON_ERROR, reason.clone());
    }
    let command = match parse_command(command) {
        Ok(c) => c,
        Err(reason) => return invalid(RESTORE_COMMAND, reason),
    };
    let duration = |key: &str| -> Result<Option<Duration>, String> {
        match get(annotations, key)
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            None => Ok(None),
            Some(t) => parse_hook_duration(t).map(|d| (!d.is_zero()).then_some(d)),
        }
    };
    let timeout = match duration(RESTORE_EXEC_TIMEOUT) {
        Ok(d) => d.unwrap_or(DEFAULT_TIMEOUT),
        Err(reason) => return invalid(RESTORE_EXEC_TIMEOUT, reason),
    };
    let wait_timeout = match duration(RESTORE_WAIT_TIMEOUT) {
        Ok(d) => d,
        Err(reason) => return invalid(RESTORE_WAIT_TIMEOUT, reason),
    };
    let wait_for_ready = match get(annotations, RESTORE_WAIT_FOR_READY)
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        None => false,
        Some(v) => match parse_bool(v) {
            Ok(b) => b,
            Err(reason) => return invalid(RESTORE_WAIT_FOR_READY, reason),
        },
    };
    Some(Ok(RestoreExec {
        hook: PlannedExec {
            source: HookSource::Annotation,
            name: FROM_ANNOTATION.into(),
            index: 0,
            container,
            command,
            on_error: effective,
            timeout,
        },
        wait_timeout,
        wait_for_ready,
    }))
}

/// The init container a pod's annotations declare, if any (`None` without
/// `init.hook.restore.velero.io/container-image`): `{name, image, command}` (no `command` when
/// the annotation is absent: the image's entrypoint runs). `pod` is `namespace/name`, for
/// errors.
///
/// # Errors
/// [`HookError::Annotation`] for an invalid command or container name.
pub fn restore_init_container(
    pod: &str,
    annotations: &BTreeMap<String, String>,
) -> Option<Result<PlannedInit, HookError>> {
    let image = get(annotations, INIT_IMAGE)
        .map(str::trim)
        .filter(|i| !i.is_empty())?;
    let bad = |annotation: &str, reason: String| HookError::Annotation {
        pod: pod.to_string(),
        annotation: annotation.to_string(),
        reason,
    };
    let name = get(annotations, INIT_NAME)
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_INIT_NAME);
    if let Err(reason) = check_container_name(name) {
        return Some(Err(bad(INIT_NAME, reason)));
    }
    let mut container = json!({"name": name, "image": image});
    if let Some(c) = get(annotations, INIT_COMMAND).filter(|c| !c.trim().is_empty()) {
        match parse_command(c) {
            Ok(cmd) => container["command"] = Value::from(cmd),
            Err(reason) => return Some(Err(bad(INIT_COMMAND, reason))),
        }
    }
    Some(Ok(PlannedInit {
        source: HookSource::Annotation,
        name: FROM_ANNOTATION.into(),
        index: 0,
        container,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn commands_are_json_arrays_or_one_word() {
        assert_eq!(
            parse_command(r#"["/bin/sh", "-c", "echo a b"]"#).unwrap(),
            ["/bin/sh", "-c", "echo a b"]
        );
        assert_eq!(
            parse_command("/usr/bin/sync --all").unwrap(),
            ["/usr/bin/sync --all"]
        );
        for bad in ["", "  ", "[", r#"["a", 1]"#, "[]", r#"[""]"#] {
            assert!(parse_command(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn backup_annotations_with_defaults() {
        let a = ann(&[(
            PRE_BACKUP_COMMAND,
            r#"["/sbin/fsfreeze","--freeze","/data"]"#,
        )]);
        let h = backup_hook("ns/p", &a, BackupPhase::Pre).unwrap().unwrap();
        assert_eq!(h.command, ["/sbin/fsfreeze", "--freeze", "/data"]);
        assert_eq!(h.container, None);
        assert_eq!(h.on_error, HookErrorMode::Continue);
        assert_eq!(h.timeout, DEFAULT_TIMEOUT);
        assert_eq!(h.name, FROM_ANNOTATION);
        assert_eq!(h.source, HookSource::Annotation);
        assert!(backup_hook("ns/p", &a, BackupPhase::Post).is_none());

        let a = ann(&[
            (POST_BACKUP_COMMAND, "/bin/unfreeze"),
            (POST_BACKUP_CONTAINER, "fsfreeze"),
            (POST_BACKUP_ON_ERROR, "Fail"),
            (POST_BACKUP_TIMEOUT, "2m"),
        ]);
        let h = backup_hook("ns/p", &a, BackupPhase::Post).unwrap().unwrap();
        assert_eq!(h.command, ["/bin/unfreeze"]);
        assert_eq!(h.container.as_deref(), Some("fsfreeze"));
        assert_eq!(h.on_error, HookErrorMode::Fail);
        assert_eq!(h.timeout, Duration::from_secs(120));
        // No command, no hook, whatever else is annotated.
        let a = ann(&[(PRE_BACKUP_CONTAINER, "c"), (PRE_BACKUP_ON_ERROR, "Fail")]);
        assert!(backup_hook("ns/p", &a, BackupPhase::Pre).is_none());
    }

    #[test]
    fn velero_unphased_keys_are_pre_hooks() {
        let a = ann(&[
            ("hook.backup.velero.io/command", "/bin/old"),
            ("hook.backup.velero.io/container", "c2"),
        ]);
        let h = backup_hook("ns/p", &a, BackupPhase::Pre).unwrap().unwrap();
        assert_eq!(h.command, ["/bin/old"]);
        assert_eq!(h.container.as_deref(), Some("c2"));
        assert!(backup_hook("ns/p", &a, BackupPhase::Post).is_none());
        // The phased key wins.
        let mut b = a.clone();
        b.insert(PRE_BACKUP_COMMAND.into(), "/bin/new".into());
        let h = backup_hook("ns/p", &b, BackupPhase::Pre).unwrap().unwrap();
        assert_eq!(h.command, ["/bin/new"]);
        assert_eq!(h.container, None);
    }

    #[test]
    fn bad_backup_annotations_name_pod_and_annotation() {
        let cases = [
            (
                ann(&[(PRE_BACKUP_COMMAND, "x"), (PRE_BACKUP_TIMEOUT, "300")]),
                PRE_BACKUP_TIMEOUT,
                HookErrorMode::Continue,
            ),
            (
                ann(&[(PRE_BACKUP_COMMAND, "x"), (PRE_BACKUP_ON_ERROR, "Abort")]),
                PRE_BACKUP_ON_ERROR,
                HookErrorMode::Fail,
            ),
            (
                ann(&[
                    (PRE_BACKUP_COMMAND, r#"["x", "#),
                    (PRE_BACKUP_ON_ERROR, "fail"),
                ]),
                PRE_BACKUP_COMMAND,
                HookErrorMode::Fail,
            ),
        ];
        for (a, key, mode) in cases {
            let e = backup_hook("shop/db-0", &a, BackupPhase::Pre)
                .unwrap()
                .unwrap_err();
            assert_eq!(e.on_error, mode, "{key}");
            let msg = e.error.to_string();
            assert!(msg.contains("shop/db-0") && msg.contains(key), "{msg}");
        }
    }

    #[test]
    fn restore_exec_annotations() {
        let a = ann(&[
            (
                RESTORE_COMMAND,
                r#"["/bin/sh","-c","psql < /backup/dump.sql"]"#,
            ),
            (RESTORE_CONTAINER, "postgres"),
            (RESTORE_ON_ERROR, "Fail"),
            (RESTORE_EXEC_TIMEOUT, "1m"),
            (RESTORE_WAIT_TIMEOUT, "5m"),
            (RESTORE_WAIT_FOR_READY, "true"),
        ]);
        let h = restore_exec_hook("ns/p", &a).unwrap().unwrap();
        assert_eq!(h.hook.container.as_deref(), Some("postgres"));
        assert_eq!(h.hook.timeout, Duration::from_secs(60));
        assert_eq!(h.wait_timeout, Some(Duration::from_secs(300)));
        assert!(h.wait_for_ready);
        assert_eq!(h.hook.on_error, HookErrorMode::Fail);
        let d = restore_exec_hook("ns/p", &ann(&[(RESTORE_COMMAND, "/bin/x")]))
            .unwrap()
            .unwrap();
        assert_eq!(d.hook.timeout, DEFAULT_TIMEOUT);
        assert_eq!(d.wait_timeout, None);
        assert!(!d.wait_for_ready);
        assert!(restore_exec_hook("ns/p", &ann(&[(RESTORE_CONTAINER, "c")])).is_none());
        for (key, value) in [
            (RESTORE_WAIT_FOR_READY, "yes"),
            (RESTORE_WAIT_TIMEOUT, "five minutes"),
            (RESTORE_EXEC_TIMEOUT, "a day"),
            (RESTORE_ON_ERROR, "Retry"),
        ] {
            let a = ann(&[(RESTORE_COMMAND, "/bin/x"), (key, value)]);
            let e = restore_exec_hook("web/api-1", &a).unwrap().unwrap_err();
            let msg = e.error.to_string();
            assert!(msg.contains("web/api-1") && msg.contains(key), "{msg}");
        }
    }

    #[test]
    fn restore_init_annotations() {
        let a = ann(&[
            (INIT_IMAGE, "busybox:1.36"),
            (INIT_NAME, "seed"),
            (INIT_COMMAND, r#"["/bin/ash","-c","date"]"#),
        ]);
        let i = restore_init_container("ns/p", &a).unwrap().unwrap();
        assert_eq!(
            i.container,
            json!({"name": "seed", "image": "busybox:1.36", "command": ["/bin/ash", "-c", "date"]})
        );
        let d = restore_init_container("ns/p", &ann(&[(INIT_IMAGE, "img")]))
            .unwrap()
            .unwrap();
        assert_eq!(
            d.container,
            json!({"name": DEFAULT_INIT_NAME, "image": "img"})
        );
        assert!(restore_init_container("ns/p", &ann(&[(INIT_COMMAND, "x")])).is_none());
        let e = restore_init_container("ns/p", &ann(&[(INIT_IMAGE, "i"), (INIT_NAME, "Seed_1")]))
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains(INIT_NAME), "{e}");
    }

    #[test]
    fn go_booleans() {
        for t in ["1", "t", "TRUE", "True", "true"] {
            assert!(parse_bool(t).unwrap());
        }
        for f in ["0", "f", "FALSE", "false"] {
            assert!(!parse_bool(f).unwrap());
        }
        assert!(parse_bool("on").is_err());
    }
}
