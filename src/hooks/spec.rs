//! Velero's hook spec, the `hooks` field of a Backup spec ([`BackupHooks`]) and of a Restore spec
//! ([`RestoreHooks`]), with Velero's field names (source: Velero's `backup_types.go` and
//! `restore_types.go`, the "Backup API Type" and "Restore API Type" documentation), so the same
//! YAML works in a tidemark BackupPolicy/RestorePlan template and round-trips through
//! `velero-backup.json`.
//!
//! Durations (`timeout`, `execTimeout`, `waitTimeout`) are read in tidemark's one duration
//! dialect ([`crate::plan::expiry::duration`]): Go's syntax (`30s`, `1m30s`), the only one
//! Velero's `metav1.Duration` reads, and humantime's (`2min`) as in every other manifest
//! duration; a spec meant for Velero too should keep to Go's. [`BackupHooks::validate`] and
//! [`RestoreHooks::validate`] check a spec (errors name the field); the runners resolve it into
//! the hooks they plan with ([`PlannedExec`], [`RestoreExec`]).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::HookError;
use super::outcome::HookSource;
use super::select::HookSelector;

/// Velero's default exec hook timeout: 30 seconds (`pkg/podexec`'s `defaultTimeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads `null` as the empty value (Velero 1.0–1.3 wrote unset lists as `null`).
fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What to do when a hook fails (Velero's `HookErrorMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum HookErrorMode {
    /// Record a warning and go on with the pod's next hooks (the default when unset, as in
    /// Velero's code).
    #[default]
    Continue,
    /// Stop the pod's remaining hooks of the phase and fail the pod's item (an error; after a
    /// pre backup hook, the pod and its volumes are not backed up).
    Fail,
}

impl HookErrorMode {
    /// `Continue` or `Fail`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Continue => "Continue",
            Self::Fail => "Fail",
        }
    }
}

/// The hooks of a backup (Velero's `BackupHooks`, the Backup spec's `hooks`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupHooks {
    /// Hooks run in the pods a backup takes, selected by namespace, resource and labels.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resources: Vec<BackupResourceHookSpec>,
}

/// One set of backup hooks and the pods it applies to (Velero's `BackupResourceHookSpec`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupResourceHookSpec {
    /// Name of this hook set (required; it names the hooks in results and logs).
    pub name: String,
    /// Namespaces (globs) the hooks apply to; empty: all.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub included_namespaces: Vec<String>,
    /// Namespaces (globs) the hooks do not apply to.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_namespaces: Vec<String>,
    /// Resources the hooks apply to; hooks only run in pods, so this matters only when it leaves
    /// pods out (`pods`, `pod`, `po` or `*` keep them; empty: all).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub included_resources: Vec<String>,
    /// Resources the hooks do not apply to (`pods` or `*` turns them off).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_resources: Vec<String>,
    /// Only pods whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// Hooks run before the pod's volumes are snapshotted or copied, in order.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pre: Vec<BackupResourceHook>,
    /// Hooks run after the backup's volume snapshots and copies are done, in order.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub post: Vec<BackupResourceHook>,
}

/// One backup hook (Velero's `BackupResourceHook`: an `exec` hook, required).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupResourceHook {
    /// The command to run in a container of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecHook>,
}

/// A command run in a container through the API server's `pods/exec` (Velero's `ExecHook`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecHook {
    /// The container; default: the pod's first container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The command and its arguments (not run in a shell: start with `/bin/sh -c` for one).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub command: Vec<String>,
    /// `Continue` (default) or `Fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<HookErrorMode>,
    /// How long the command may run (a duration, default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// The hooks of a restore (Velero's `RestoreHooks`, the Restore spec's `hooks`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreHooks {
    /// Hooks added to, or run in, the restored pods, selected by namespace (the target
    /// namespace, after `namespaceMapping`), resource and labels.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resources: Vec<RestoreResourceHookSpec>,
}

/// One set of restore hooks and the pods it applies to (Velero's `RestoreResourceHookSpec`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResourceHookSpec {
    /// Name of this hook set (required; it names the hooks in results and logs).
    pub name: String,
    /// Target namespaces (globs) the hooks apply to; empty: all.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub included_namespaces: Vec<String>,
    /// Target namespaces (globs) the hooks do not apply to.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_namespaces: Vec<String>,
    /// Resources the hooks apply to; hooks only apply to pods, so this matters only when it
    /// leaves pods out (`pods`, `pod`, `po` or `*` keep them; empty: all).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub included_resources: Vec<String>,
    /// Resources the hooks do not apply to.
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub excluded_resources: Vec<String>,
    /// Only pods whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    /// The hooks, in order: each adds init containers (`init`) and/or runs a command once the
    /// restored container is up (`exec`).
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub post_hooks: Vec<RestoreResourceHook>,
}

/// One restore hook (Velero's `RestoreResourceHook`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreResourceHook {
    /// A command run in the restored pod once its container is up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecRestoreHook>,
    /// Init containers added to the restored pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<InitRestoreHook>,
}

/// A command run in a restored pod's container (Velero's `ExecRestoreHook`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecRestoreHook {
    /// The container; default: the pod's first container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The command and its arguments (not run in a shell).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub command: Vec<String>,
    /// `Continue` (default) or `Fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<HookErrorMode>,
    /// How long the command may run (a duration, default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_timeout: Option<String>,
    /// How long to wait for the container to be running (or ready) after the pod is created
    /// (a duration). Velero waits without limit when unset; tidemark waits 10 minutes (for a
    /// pod whose volumes are restored by file system, the pod volume timeout, 4h by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout: Option<String>,
    /// Wait for the container to be Ready rather than Running (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_ready: Option<bool>,
}

/// Init containers added to a restored pod (Velero's `InitRestoreHook`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitRestoreHook {
    /// Full Kubernetes container objects; each needs `name`, `image` and `command` (Velero's
    /// rule).
    #[serde(default, deserialize_with = "null_as_empty")]
    #[schemars(schema_with = "containers_schema")]
    pub init_containers: Vec<Value>,
    /// Velero's field for how long the init containers may take (a duration). The kubelet runs
    /// them; like Velero, tidemark checks the value but does not enforce it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Schema of `initContainers`: a list of objects kept as written (Velero's
/// `PreserveUnknownFields`), so the CRD does not embed the whole Container schema.
fn containers_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}

/// An exec hook resolved for running: where it came from, its command, and its settings with
/// the defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedExec {
    /// Annotation or spec.
    pub source: HookSource,
    /// The spec hook set's `name`, or [`super::FROM_ANNOTATION`].
    pub name: String,
    /// Position in the hook set's `pre`/`post`/`postHooks` list (0 for annotations).
    pub index: usize,
    /// The container; `None`: the pod's first container.
    pub container: Option<String>,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// What a failure does.
    pub on_error: HookErrorMode,
    /// How long the command may run.
    pub timeout: Duration,
}

/// A restore exec hook resolved for running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreExec {
    /// The command, container and exec timeout.
    pub hook: PlannedExec,
    /// How long to wait for the container; `None`: the runner's default.
    pub wait_timeout: Option<Duration>,
    /// Wait for Ready rather than Running.
    pub wait_for_ready: bool,
}

/// A hook that cannot run (invalid annotations): recorded as a failed hook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidHook {
    /// Annotation or spec.
    pub source: HookSource,
    /// The hook's name.
    pub name: String,
    /// The container it names, if any.
    pub container: Option<String>,
    /// Its `on-error` when that one is valid, else `Fail`.
    pub on_error: HookErrorMode,
    /// What is wrong.
    pub error: HookError,
}

/// An init container to add to a restored pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedInit {
    /// Annotation or spec.
    pub source: HookSource,
    /// The spec hook set's `name`, or [`super::FROM_ANNOTATION`].
    pub name: String,
    /// Position in the hook set's `postHooks` list (0 for annotations).
    pub index: usize,
    /// The container object.
    pub container: Value,
}

impl PlannedInit {
    /// The container's `name`.
    #[must_use]
    pub fn container_name(&self) -> &str {
        self.container
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// The container's `command` (empty: the image's entrypoint).
    #[must_use]
    pub fn command(&self) -> Vec<String> {
        self.container
            .get("command")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Parses a hook's duration in tidemark's one duration dialect
/// ([`crate::plan::expiry::duration`]): Go's syntax as Velero writes it (`30s`, `1m30s`,
/// `1.5h`), or humantime's for what people type (`2min`, `1 day`); not negative.
///
/// # Errors
/// The reason, without the field.
pub fn parse_hook_duration(s: &str) -> Result<Duration, String> {
    crate::plan::expiry::duration(s.trim()).map_err(|e| format!("{s:?} is not a duration: {e}"))
}

/// A duration field: unset or zero gives `default` (Velero's rule for a zero `metav1.Duration`).
fn duration_field(
    field: &str,
    value: Option<&str>,
    default: Duration,
) -> Result<Duration, HookError> {
    match value.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => match parse_hook_duration(s) {
            Ok(d) if d.is_zero() => Ok(default),
            Ok(d) => Ok(d),
            Err(reason) => Err(HookError::Spec {
                field: field.into(),
                reason,
            }),
        },
    }
}

fn spec_error(field: String, reason: impl Into<String>) -> HookError {
    HookError::Spec {
        field,
        reason: reason.into(),
    }
}

fn check_command(field: &str, command: &[String]) -> Result<(), HookError> {
    if command.is_empty() || command[0].trim().is_empty() {
        return Err(spec_error(
            format!("{field}.command"),
            "must list the command and its arguments (at least one element, the first not empty)",
        ));
    }
    Ok(())
}

fn check_name(field: &str, name: &str) -> Result<(), HookError> {
    if name.trim().is_empty() {
        return Err(spec_error(format!("{field}.name"), "must not be empty"));
    }
    Ok(())
}

/// A backup hook set, checked and resolved.
#[derive(Clone, Debug)]
pub(crate) struct CompiledBackupSpec {
    /// Which pods it applies to.
    pub(crate) selector: HookSelector,
    /// Its pre hooks.
    pub(crate) pre: Vec<PlannedExec>,
    /// Its post hooks.
    pub(crate) post: Vec<PlannedExec>,
}

/// A restore hook set, checked and resolved.
#[derive(Clone, Debug)]
pub(crate) struct CompiledRestoreSpec {
    /// Which pods it applies to.
    pub(crate) selector: HookSelector,
    /// Its init containers, in order.
    pub(crate) init: Vec<PlannedInit>,
    /// Its exec hooks, in order.
    pub(crate) exec: Vec<RestoreExec>,
}

fn compile_exec(
    field: &str,
    name: &str,
    index: usize,
    e: &ExecHook,
) -> Result<PlannedExec, HookError> {
    check_command(field, &e.command)?;
    Ok(PlannedExec {
        source: HookSource::Spec,
        name: name.to_string(),
        index,
        container: e.container.clone().filter(|c| !c.trim().is_empty()),
        command: e.command.clone(),
        on_error: e.on_error.unwrap_or_default(),
        timeout: duration_field(
            &format!("{field}.timeout"),
            e.timeout.as_deref(),
            DEFAULT_TIMEOUT,
        )?,
    })
}

impl BackupHooks {
    /// Whether there are no hook sets.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Checks the spec; `field` is its path in errors (`spec.template.hooks`).
    ///
    /// # Errors
    /// [`HookError::Spec`] naming the first field at fault: an empty `name`, an invalid
    /// namespace glob or label selector, a hook without `exec` or without a command, a timeout
    /// that is not a duration.
    pub fn validate(&self, field: &str) -> Result<(), HookError> {
        self.compile(field).map(|_| ())
    }

    /// Checks and resolves the spec (see [`BackupHooks::validate`]).
    pub(crate) fn compile(&self, field: &str) -> Result<Vec<CompiledBackupSpec>, HookError> {
        let mut out = Vec::new();
        for (i, r) in self.resources.iter().enumerate() {
            let at = format!("{field}.resources[{i}]");
            check_name(&at, &r.name)?;
            let selector = HookSelector::new(
                &at,
                &r.included_namespaces,
                &r.excluded_namespaces,
                &r.included_resources,
                &r.excluded_resources,
                r.label_selector.as_ref(),
            )?;
            let list = |which: &str, hooks: &[BackupResourceHook]| {
                hooks
                    .iter()
                    .enumerate()
                    .map(|(j, h)| {
                        let hf = format!("{at}.{which}[{j}].exec");
                        let e = h
                            .exec
                            .as_ref()
                            .ok_or_else(|| spec_error(hf.clone(), "must be set"))?;
                        compile_exec(&hf, &r.name, j, e)
                    })
                    .collect::<Result<Vec<_>, HookError>>()
            };
            out.push(CompiledBackupSpec {
                selector,
                pre: list("pre", &r.pre)?,
                post: list("post", &r.post)?,
            });
        }
        Ok(out)
    }
}

/// Checks a spec init container as Velero does (`name`, `image` and `command` set) and that it
/// reads as a Kubernetes container.
fn check_init_container(field: &str, c: &Value) -> Result<(), HookError> {
    let parsed: k8s_openapi::api::core::v1::Container = serde_json::from_value(c.clone())
        .map_err(|e| spec_error(field.to_string(), format!("not a container: {e}")))?;
    if parsed.name.trim().is_empty() {
        return Err(spec_error(format!("{field}.name"), "must not be empty"));
    }
    if let Err(reason) = super::annotations::check_container_name(&parsed.name) {
        return Err(spec_error(format!("{field}.name"), reason));
    }
    if parsed.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        return Err(spec_error(format!("{field}.image"), "must not be empty"));
    }
    if parsed.command.as_ref().is_none_or(Vec::is_empty) {
        return Err(spec_error(
            format!("{field}.command"),
            "must not be empty (Velero requires it for init hooks)",
        ));
    }
    Ok(())
}

impl RestoreHooks {
    /// Whether there are no hook sets.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Checks the spec; `field` is its path in errors (`spec.template.hooks`).
    ///
    /// # Errors
    /// [`HookError::Spec`] naming the first field at fault: an empty `name`, an invalid
    /// namespace glob or label selector, a hook with neither `exec` nor `init`, an exec hook
    /// without a command, an init container without `name`, `image` or `command`, a duration
    /// that is not a duration.
    pub fn validate(&self, field: &str) -> Result<(), HookError> {
        self.compile(field).map(|_| ())
    }

    /// Checks and resolves the spec (see [`RestoreHooks::validate`]).
    pub(crate) fn compile(&self, field: &str) -> Result<Vec<CompiledRestoreSpec>, HookError> {
        let mut out = Vec::new();
        for (i, r) in self.resources.iter().enumerate() {
            let at = format!("{field}.resources[{i}]");
            check_name(&at, &r.name)?;
            let selector = HookSelector::new(
                &at,
                &r.included_namespaces,
                &r.excluded_namespaces,
                &r.included_resources,
                &r.excluded_resources,
                r.label_selector.as_ref(),
            )?;
            let mut init = Vec::new();
            let mut exec = Vec::new();
            for (j, h) in r.post_hooks.iter().enumerate() {
                let hf = format!("{at}.postHooks[{j}]");
                if h.exec.is_none() && h.init.is_none() {
                    return Err(spec_error(hf, "must set exec or init"));
                }
                if let Some(e) = &h.exec {
                    let ef = format!("{hf}.exec");
                    check_command(&ef, &e.command)?;
                    let wait_timeout = match e.wait_timeout.as_deref().map(str::trim) {
                        None | Some("") => None,
                        Some(s) => {
                            let d = parse_hook_duration(s).map_err(|reason| {
                                spec_error(format!("{ef}.waitTimeout"), reason)
                            })?;
                            (!d.is_zero()).then_some(d)
                        }
                    };
                    exec.push(RestoreExec {
                        hook: PlannedExec {
                            source: HookSource::Spec,
                            name: r.name.clone(),
                            index: j,
                            container: e.container.clone().filter(|c| !c.trim().is_empty()),
                            command: e.command.clone(),
                            on_error: e.on_error.unwrap_or_default(),
                            timeout: duration_field(
                                &format!("{ef}.execTimeout"),
                                e.exec_timeout.as_deref(),
                                DEFAULT_TIMEOUT,
                            )?,
                        },
                        wait_timeout,
                        wait_for_ready: e.wait_for_ready.unwrap_or(false),
                    });
                }
                if let Some(ih) = &h.init {
                    let inf = format!("{hf}.init");
                    if let Some(t) = ih.timeout.as_deref().filter(|t| !t.trim().is_empty()) {
                        parse_hook_duration(t)
                            .map_err(|reason| spec_error(format!("{inf}.timeout"), reason))?;
                    }
                    for (k, c) in ih.init_containers.iter().enumerate() {
                        check_init_container(&format!("{inf}.initContainers[{k}]"), c)?;
                        init.push(PlannedInit {
                            source: HookSource::Spec,
                            name: r.name.clone(),
                            index: j,
                            container: c.clone(),
                        });
                    }
                }
            }
            out.push(CompiledRestoreSpec {
                selector,
                init,
                exec,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn backup_hooks(v: Value) -> BackupHooks {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn velero_spec_parses_and_round_trips() {
        let v = json!({"resources": [{
            "name": "freeze",
            "includedNamespaces": ["db-*"],
            "excludedNamespaces": ["db-test"],
            "includedResources": ["pods"],
            "labelSelector": {"matchLabels": {"app": "pg"}},
            "pre": [{"exec": {"container": "pg", "command": ["/bin/sh", "-c", "sync"],
                              "onError": "Fail", "timeout": "1m"}}],
            "post": [{"exec": {"command": ["/bin/true"]}}]
        }]});
        let h = backup_hooks(v.clone());
        assert_eq!(serde_json::to_value(&h).unwrap(), v);
        let c = h.compile("hooks").unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].pre[0].on_error, HookErrorMode::Fail);
        assert_eq!(c[0].pre[0].timeout, Duration::from_secs(60));
        assert_eq!(c[0].pre[0].container.as_deref(), Some("pg"));
        assert_eq!(c[0].post[0].on_error, HookErrorMode::Continue);
        assert_eq!(c[0].post[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(c[0].post[0].container, None);
        assert_eq!(c[0].post[0].name, "freeze");
        // Velero 1.0's nulls.
        let old = backup_hooks(json!({"resources": null}));
        assert!(old.is_empty());
        assert_eq!(serde_json::to_value(&old).unwrap(), json!({}));
    }

    #[test]
    fn invalid_backup_specs_name_the_field() {
        let cases = [
            (
                json!({"resources": [{"name": ""}]}),
                "hooks.resources[0].name",
            ),
            (
                json!({"resources": [{"name": "a", "pre": [{}]}]}),
                "hooks.resources[0].pre[0].exec",
            ),
            (
                json!({"resources": [{"name": "a", "post": [{"exec": {"command": []}}]}]}),
                "hooks.resources[0].post[0].exec.command",
            ),
            (
                json!({"resources": [{"name": "a", "pre": [{"exec": {"command": ["x"], "timeout": "three days"}}]}]}),
                "hooks.resources[0].pre[0].exec.timeout",
            ),
            (
                json!({"resources": [{"name": "a", "pre": [{"exec": {"command": ["x"], "timeout": "-1s"}}]}]}),
                "hooks.resources[0].pre[0].exec.timeout",
            ),
            (
                json!({"resources": [{"name": "a", "includedNamespaces": ["[x"]}]}),
                "hooks.resources[0].includedNamespaces",
            ),
            (
                json!({"resources": [{"name": "a", "labelSelector": {"matchExpressions": [{"key": "a", "operator": "Sideways"}]}}]}),
                "hooks.resources[0].labelSelector",
            ),
        ];
        for (v, field) in cases {
            let e = backup_hooks(v.clone()).validate("hooks").unwrap_err();
            match &e {
                HookError::Spec { field: f, .. } => assert_eq!(f, field, "{v}: {e}"),
                other => panic!("{v}: {other}"),
            }
        }
        // An explicit zero timeout means the default, as in Velero.
        let z = backup_hooks(
            json!({"resources": [{"name": "a", "pre": [{"exec": {"command": ["x"], "timeout": "0s"}}]}]}),
        );
        assert_eq!(z.compile("h").unwrap()[0].pre[0].timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn restore_spec_resolves_init_and_exec() {
        let h: RestoreHooks = serde_json::from_value(json!({"resources": [{
            "name": "load",
            "postHooks": [
                {"init": {"initContainers": [
                    {"name": "seed", "image": "busybox", "command": ["sh", "-c", "cp /a /b"],
                     "volumeMounts": [{"name": "data", "mountPath": "/b"}]}
                ], "timeout": "2m"}},
                {"exec": {"container": "db", "command": ["/bin/load"], "execTimeout": "2m",
                          "waitTimeout": "5m", "waitForReady": true, "onError": "Fail"}},
                {"exec": {"command": ["/bin/check"]}}
            ]
        }]}))
        .unwrap();
        let c = h.compile("spec.hooks").unwrap();
        assert_eq!(c[0].init.len(), 1);
        assert_eq!(c[0].init[0].container_name(), "seed");
        assert_eq!(c[0].init[0].command(), ["sh", "-c", "cp /a /b"]);
        assert_eq!(c[0].exec.len(), 2);
        let e = &c[0].exec[0];
        assert_eq!(e.hook.index, 1);
        assert_eq!(e.hook.timeout, Duration::from_secs(120));
        assert_eq!(e.wait_timeout, Some(Duration::from_secs(300)));
        assert!(e.wait_for_ready);
        assert_eq!(e.hook.on_error, HookErrorMode::Fail);
        let d = &c[0].exec[1];
        assert_eq!(d.hook.index, 2);
        assert_eq!(d.wait_timeout, None);
        assert!(!d.wait_for_ready);
        assert_eq!(d.hook.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn invalid_restore_specs_name_the_field() {
        let cases = [
            (
                json!({"resources": [{"name": "a", "postHooks": [{}]}]}),
                "h.resources[0].postHooks[0]",
            ),
            (
                json!({"resources": [{"name": "a", "postHooks": [{"init": {"initContainers": [{"name": "x", "image": "i"}]}}]}]}),
                "h.resources[0].postHooks[0].init.initContainers[0].command",
            ),
            (
                json!({"resources": [{"name": "a", "postHooks": [{"init": {"initContainers": [{"name": "x", "command": ["c"]}]}}]}]}),
                "h.resources[0].postHooks[0].init.initContainers[0].image",
            ),
            (
                json!({"resources": [{"name": "a", "postHooks": [{"init": {"initContainers": [{"name": "Bad_Name", "image": "i", "command": ["c"]}]}}]}]}),
                "h.resources[0].postHooks[0].init.initContainers[0].name",
            ),
            (
                json!({"resources": [{"name": "a", "postHooks": [{"init": {"initContainers": ["text"]}}]}]}),
                "h.resources[0].postHooks[0].init.initContainers[0]",
            ),
            (
                json!({"resources": [{"name": "a", "postHooks": [{"exec": {"command": ["c"], "waitTimeout": "soon"}}]}]}),
                "h.resources[0].postHooks[0].exec.waitTimeout",
            ),
            (
                json!({"resources": [{"name": "a", "postHooks": [{"exec": {"command": ["c"], "execTimeout": "a while"}}]}]}),
                "h.resources[0].postHooks[0].exec.execTimeout",
            ),
        ];
        for (v, field) in cases {
            let h: RestoreHooks = serde_json::from_value(v.clone()).unwrap();
            match h.validate("h").unwrap_err() {
                HookError::Spec { field: f, .. } => assert_eq!(f, field, "{v}"),
                other => panic!("{v}: {other}"),
            }
        }
    }

    #[test]
    fn the_examples_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hooks");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        let policy: crate::api::tidemark::BackupPolicy =
            serde_yaml::from_str(&read("backup-policy.yaml")).unwrap();
        let hooks = policy.spec.template.hooks.unwrap();
        hooks.validate("spec.template.hooks").unwrap();
        assert_eq!(
            hooks.resources[0].pre[0].exec.as_ref().unwrap().on_error,
            Some(HookErrorMode::Fail)
        );
        let plan: crate::api::tidemark::RestorePlan =
            serde_yaml::from_str(&read("restore-plan.yaml")).unwrap();
        let hooks = plan.spec.template.hooks.unwrap();
        let c = hooks.compile("spec.template.hooks").unwrap();
        assert_eq!((c[0].init.len(), c[0].exec.len()), (1, 1));
        let app: k8s_openapi::api::apps::v1::Deployment =
            serde_yaml::from_str(&read("app.yaml")).unwrap();
        let annotations = app
            .spec
            .and_then(|s| s.template.metadata)
            .and_then(|m| m.annotations)
            .unwrap();
        use super::super::annotations as a;
        for phase in [a::BackupPhase::Pre, a::BackupPhase::Post] {
            a::backup_hook("hooks-demo/pg", &annotations, phase)
                .unwrap()
                .unwrap();
        }
        a::restore_exec_hook("hooks-demo/pg", &annotations)
            .unwrap()
            .unwrap();
        a::restore_init_container("hooks-demo/pg", &annotations)
            .unwrap()
            .unwrap();
    }

    #[test]
    fn durations_in_the_one_dialect() {
        assert_eq!(
            parse_hook_duration("1m30s").unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse_hook_duration("1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        // What people type, as in `--ttl` and every manifest duration.
        assert_eq!(
            parse_hook_duration("1d").unwrap(),
            Duration::from_secs(86_400)
        );
        assert!(parse_hook_duration("30").is_err());
        assert!(parse_hook_duration("-5s").is_err());
        assert!(parse_hook_duration("soon").is_err());
    }
}
