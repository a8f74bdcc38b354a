//! Restore resource modifiers: Velero's `--resource-modifier-configmap` rules, parsed and applied
//! to each object just before it is created (DESIGN §5). Pure: no I/O.
//!
//! # Format
//!
//! The document is the value of the single data key of the ConfigMap a Velero user passes to
//! `velero restore create --resource-modifier-configmap` (see [`ResourceModifiers::from_config_map_data`]):
//!
//! ```yaml
//! version: v1                      # compared case-insensitively; the only version
//! resourceModifierRules:           # must not be empty; rules run in order
//! - conditions:
//!     groupResource: deployments.apps   # required; a glob, see below
//!     resourceNameRegex: "^web-"        # optional; unanchored regex search on metadata.name
//!     namespaces: [prod, "team-*"]      # optional; globs; empty = every namespace
//!     labelSelector:                    # optional; metav1.LabelSelector
//!       matchLabels: {app: web}
//!       matchExpressions: [{key: tier, operator: In, values: [front]}]
//!     matches:                          # optional; every entry must hold
//!     - path: /spec/replicas            # JSON pointer (RFC 6901)
//!       value: "3"                      # same value encoding as a JSON patch `value`
//!   # exactly one of:
//!   patches:                            # RFC 6902 JSON patch
//!   - operation: replace                # add | remove | replace | move | copy | test
//!     path: /spec/replicas
//!     value: "1"
//!   mergePatches:                       # RFC 7386 JSON merge patch, each applied in turn
//!   - patchData: |
//!       metadata: {annotations: {drop-me: null}}
//!   strategicPatches:                   # Kubernetes strategic merge patch, each applied in turn
//!   - patchData: |
//!       spec: {template: {spec: {containers: [{name: web, image: web:2}]}}}
//! ```
//!
//! Sources (read for the semantics; nothing here is copied from them):
//! - Velero documentation, "Restore Resource Modifiers":
//!   <https://velero.io/docs/main/restore-resource-modifiers/>
//!   (`site/content/docs/main/restore-resource-modifiers.md` in `vmware-tanzu/velero`).
//! - Velero source, `internal/resourcemodifiers/` (`resource_modifiers.go`, `json_patch.go`,
//!   `json_merge_patch.go`, `strategic_merge_patch.go`, `resource_modifiers_validator.go`), the
//!   call site in `pkg/restore/restore.go`, and `pkg/util/collections/includes_excludes.go`.
//! - `github.com/evanphx/json-patch/v5` (`patch.go`, `merge.go`), which Velero applies patches with.
//! - `k8s.io/apimachinery/pkg/util/strategicpatch/patch.go` and the `patchStrategy` /
//!   `patchMergeKey` struct tags of `k8s.io/api` (for the strategic merge table below).
//!
//! # Semantics (as Velero)
//!
//! - **Conditions** are all evaluated against the object as it was *before the first rule*
//!   (Velero keeps a copy of the original for matching when there is more than one rule, so a
//!   chain `standard → premium`, `premium → gold` turns `standard` into `premium`, not `gold`).
//!   Patches apply to the object as left by the previous rules.
//! - `groupResource` is a glob over the item's group-resource string as Velero writes it:
//!   `pods` for the core group, `deployments.apps`, `ingresses.networking.k8s.io`. Syntax (that of
//!   `github.com/gobwas/glob` with `.` as separator): `*` any run of characters without `.`,
//!   `**` any run of characters, `?` one character other than `.`, `[abc]`, `[a-z]`, `[!abc]`,
//!   `{a,b}` alternatives, `\x` a literal `x`. So `*` matches every core resource (and nothing
//!   in a named group), `*.apps` every resource of `apps`, `*.*` every resource of a group with a
//!   one-label name, `**` everything.
//! - `namespaces` are globs without separator (`*` matches anything). They are matched against
//!   the namespace passed to [`ResourceModifiers::apply`]; Velero matches the namespace the item
//!   had *in the backup* (before any namespace mapping). Cluster-scoped items (no namespace) pass
//!   this condition whatever it lists.
//! - `resourceNameRegex`: an unanchored search (Rust `regex`, RE2 syntax like Go's `regexp`).
//! - `labelSelector`: standard `metav1.LabelSelector` semantics over `metadata.labels`.
//! - `matches`: each entry is evaluated like a JSON-patch `test` operation. A different value, a
//!   missing key or a missing/non-container parent means "no match"; other failures (an array
//!   index that is not a number or is out of range) are errors of the rule.
//! - **Values** (`patches[].value`, `matches[].value`) are strings, decoded as Velero does:
//!   empty → `""`; `"…"` (wrapped in double quotes) → the string inside; `null` → null;
//!   `true`/`false` (any case) → a boolean; text starting with `{` or `[` → that JSON (must be
//!   valid); a JSON number → that number; anything else → a string. Velero splices strings into
//!   JSON text, so JSON escapes in them are decoded (`a\tb` holds a tab); where that splice would
//!   be invalid JSON (Velero fails the rule) the text is taken literally instead. A YAML
//!   boolean, number, mapping or list given directly is taken as that JSON value (Velero refuses
//!   non-string values).
//! - **JSON patch** operations run in order on a copy; the object changes only when all succeed.
//!   A `test` whose value differs (or whose key is absent) **skips the rule** silently, as Velero
//!   does; a `test` whose parent path is missing is an error. Negative array indices
//!   (`/spec/containers/-1`) count from the end, as in evanphx/json-patch. `from` is required for
//!   `move` and `copy`; `value` is ignored by `remove`, `move` and `copy`.
//! - **Merge patch**: RFC 7386 (via the `json-patch` crate); `patchData` is YAML or JSON and must
//!   be a mapping.
//! - A rule that fails (bad path, …) is reported and leaves the object as it was before that
//!   rule; the following rules still run (Velero records the error and restores the item anyway).
//!
//! # Strategic merge patch: the supported subset
//!
//! Velero applies strategic patches with the Go types' schema of the item's kind (and fails for
//! custom resources). Without OpenAPI, this module applies Kubernetes' algorithm with a fixed
//! table of the list fields that the built-in types declare `patchStrategy: merge` for; the
//! same table is used for every kind, custom resources included.
//!
//! - Maps merge recursively; a `null` value deletes the key. A map value where the object has a
//!   scalar (or the reverse) replaces it.
//! - Lists merge only where the table says so; every other list is replaced by the patch's list.
//!   Merge lists (field name, where it must sit, merge key):
//!
//!   | field | parent | merge key |
//!   |---|---|---|
//!   | `containers`, `initContainers`, `ephemeralContainers` | a `spec` map (PodSpec) | `name` |
//!   | `volumes`, `imagePullSecrets`, `schedulingGates`, `resourceClaims` | a `spec` map (PodSpec) | `name` |
//!   | `hostAliases` | a `spec` map | `ip` |
//!   | `topologySpreadConstraints` | a `spec` map | `topologyKey` |
//!   | `env` | a container | `name` |
//!   | `volumeMounts` | a container | `mountPath` |
//!   | `volumeDevices` | a container | `devicePath` |
//!   | `ports` | a container | `containerPort` |
//!   | `ports` | `spec` of a `Service` | `port` |
//!   | `ownerReferences` | a `metadata` map | `uid` |
//!   | `finalizers` | a `metadata` map | (scalars, merged as a set) |
//!   | `conditions` | a `status` map | `type` |
//!   | `podIPs`, `hostIPs` | a `status` map | `ip` |
//!   | `secrets` | top level of a `ServiceAccount` | `name` |
//!   | `webhooks` | top level of a `Mutating`/`ValidatingWebhookConfiguration` | `name` |
//!   | `matchConditions` | a webhook or a `spec` map | `name` |
//!   | `variables` | a `spec` map | `name` |
//!   | `drivers` | `spec` of a `CSINode` | `name` |
//!
//!   "A container" means an item of `containers`, `initContainers` or `ephemeralContainers`.
//!   In a merge list, patch items are matched to the object's items by the merge key and merged
//!   recursively; unmatched patch items are added. The order of the result follows Kubernetes:
//!   patch items in patch order, the object's other items in their order, interleaved by the
//!   object's order (so items new to the list come first when the patch holds only new items).
//!   Scalar merge lists are unions without duplicates, ordered the same way.
//! - `spec.selector` of a `PodDisruptionBudget` is replaced, not merged (`patchStrategy: replace`).
//! - Directives: `$patch: delete` in a merge-list item removes the object's items with that merge
//!   key; `$patch: replace` as a merge-list item replaces the whole list with the patch's other
//!   items; `$patch: replace` in a map replaces that map with the rest of the patch map;
//!   `$patch: delete` in a map empties it; `$deleteFromPrimitiveList/<field>: [..]` removes those
//!   values from a scalar list.
//! - Not supported, rejected with [`ModifierError::Apply`]: `$retainKeys` and
//!   `$setElementOrder/<field>`; `$patch: merge` and unknown `$patch` values (also rejected by
//!   Kubernetes). Unknown fields are not rejected (there is no schema to check them against).
//!
//! # Differences from Velero (deliberate)
//!
//! Rules are validated up front, so a bad regex, glob, label selector, JSON value, missing
//! `from`, a path not starting with `/`, a rule without any patch, or a `patchData` that is not
//! a mapping fails [`ResourceModifiers::parse`] (Velero reports most of them per item at restore
//! time). JSON patch `operation` names are accepted in any case. Merge patches follow RFC 7386
//! exactly (evanphx/json-patch also drops `null` members inside objects of newly added lists).
//! YAML is read as YAML 1.2 by `serde_yaml` (`yes`/`on` are strings, where Go's YAML 1.1 reader
//! may take them as booleans). Strategic patches are not checked against a schema (Velero's
//! strict decoding rejects unknown fields).

use std::collections::BTreeMap;
use std::fmt;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, CopyOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use regex::Regex;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::cluster::selector::LabelMatcher;

/// The only format version (compared case-insensitively, as Velero does).
pub const SUPPORTED_VERSION: &str = "v1";

/// Most alternatives one glob may expand to (`{a,b}{c,d}` is 4).
const MAX_GLOB_ALTERNATIVES: usize = 256;

/// Errors of parsing or applying resource modifiers.
#[derive(Debug, thiserror::Error)]
pub enum ModifierError {
    /// The ConfigMap must have exactly one data key (its value is the document).
    #[error("resource modifier config map must have exactly one data key, found {0}")]
    ConfigMapKeys(usize),
    /// The text is not YAML of the expected shape: a syntax error, an unknown field or a value of
    /// the wrong type. The message comes from `serde_yaml` and names the field path (such as
    /// `resourceModifierRules[0].conditions`) and the line and column.
    #[error("resource modifiers: {0}")]
    Syntax(String),
    /// `version` is not `v1` (the value found; empty when missing).
    #[error("resource modifiers: unsupported version {0:?} (supported: \"v1\")")]
    UnsupportedVersion(String),
    /// `resourceModifierRules` is missing or empty.
    #[error("resource modifiers: resourceModifierRules must not be empty")]
    NoRules,
    /// A rule is invalid.
    #[error("resource modifiers: resourceModifierRules[{rule}].{field}: {reason}")]
    InvalidRule {
        /// Index of the rule in `resourceModifierRules` (from 0).
        rule: usize,
        /// The offending field, relative to the rule (`conditions.resourceNameRegex`,
        /// `patches[1].operation`, …).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Some rules failed while being applied to an object. Each failed rule left the object as
    /// it was before that rule; the other rules were applied (`applied` counts them).
    #[error("resource modifiers: {applied} rule(s) applied, {} failed: {}", .failures.len(), join_failures(.failures))]
    Apply {
        /// Rules whose patches were applied.
        applied: usize,
        /// The rules that failed, in rule order.
        failures: Vec<RuleFailure>,
    },
}

/// One rule that failed while being applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleFailure {
    /// Index of the rule in `resourceModifierRules` (from 0).
    pub rule: usize,
    /// What went wrong (which patch, which path).
    pub reason: String,
}

impl fmt::Display for RuleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "resourceModifierRules[{}]: {}", self.rule, self.reason)
    }
}

fn join_failures(failures: &[RuleFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// The document as written (serde), strict about field names.

fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawDocument {
    #[serde(default, deserialize_with = "nullable")]
    version: String,
    #[serde(default, deserialize_with = "nullable")]
    resource_modifier_rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    #[serde(default, deserialize_with = "nullable")]
    conditions: RawConditions,
    #[serde(default, deserialize_with = "nullable")]
    patches: Vec<RawJsonPatch>,
    #[serde(default, deserialize_with = "nullable")]
    merge_patches: Vec<RawPatchData>,
    #[serde(default, deserialize_with = "nullable")]
    strategic_patches: Vec<RawPatchData>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConditions {
    #[serde(default, deserialize_with = "nullable")]
    namespaces: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    group_resource: String,
    #[serde(default, deserialize_with = "nullable")]
    resource_name_regex: String,
    #[serde(default)]
    label_selector: Option<RawLabelSelector>,
    #[serde(default, deserialize_with = "nullable")]
    matches: Vec<RawMatch>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLabelSelector {
    #[serde(default, deserialize_with = "nullable")]
    match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    match_expressions: Vec<RawRequirement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRequirement {
    #[serde(default, deserialize_with = "nullable")]
    key: String,
    #[serde(default, deserialize_with = "nullable")]
    operator: String,
    #[serde(default, deserialize_with = "nullable")]
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMatch {
    #[serde(default, deserialize_with = "nullable")]
    path: String,
    #[serde(default)]
    value: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawJsonPatch {
    #[serde(default, deserialize_with = "nullable")]
    operation: String,
    #[serde(default, deserialize_with = "nullable")]
    from: String,
    #[serde(default, deserialize_with = "nullable")]
    path: String,
    #[serde(default)]
    value: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPatchData {
    #[serde(default)]
    patch_data: Option<serde_yaml::Value>,
}

// ---------------------------------------------------------------------------------------------
// Compiled form.

/// Parsed and validated resource modifier rules, ready to apply to restored objects.
#[derive(Clone, Debug)]
pub struct ResourceModifiers {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    conditions: Conditions,
    action: Action,
}

#[derive(Clone, Debug)]
struct Conditions {
    group_resource: Glob,
    name_regex: Option<Regex>,
    namespaces: Vec<Glob>,
    labels: Option<LabelMatcher>,
    matches: Vec<MatchRule>,
}

#[derive(Clone, Debug)]
struct MatchRule {
    path: Vec<String>,
    value: Value,
}

#[derive(Clone, Debug)]
enum Action {
    Json(Vec<JsonOp>),
    Merge(Vec<Value>),
    Strategic(Vec<Map<String, Value>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

impl OpKind {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "add" => Self::Add,
            "remove" => Self::Remove,
            "replace" => Self::Replace,
            "move" => Self::Move,
            "copy" => Self::Copy,
            "test" => Self::Test,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Replace => "replace",
            Self::Move => "move",
            Self::Copy => "copy",
            Self::Test => "test",
        }
    }
}

#[derive(Clone, Debug)]
struct JsonOp {
    kind: OpKind,
    path: Vec<String>,
    raw_path: String,
    from: Vec<String>,
    value: Value,
}

impl ResourceModifiers {
    /// Reads the ConfigMap's `data` the way Velero does: it must hold exactly one key, whose
    /// value is the document (the key's name does not matter).
    ///
    /// # Errors
    /// [`ModifierError::ConfigMapKeys`], or any error of [`ResourceModifiers::parse`].
    pub fn from_config_map_data(data: &BTreeMap<String, String>) -> Result<Self, ModifierError> {
        match data.values().next() {
            Some(doc) if data.len() == 1 => Self::parse(doc),
            _ => Err(ModifierError::ConfigMapKeys(data.len())),
        }
    }

    /// Parses and validates a resource modifiers document (see the module documentation for the
    /// format).
    ///
    /// # Errors
    /// - [`ModifierError::Syntax`]: not YAML, an unknown field, a value of the wrong type.
    /// - [`ModifierError::UnsupportedVersion`]: `version` is not `v1`.
    /// - [`ModifierError::NoRules`]: no rules.
    /// - [`ModifierError::InvalidRule`]: a rule is invalid (missing `groupResource`, bad glob,
    ///   regex or label selector, unknown operation, bad path, bad value, no patch or more than
    ///   one kind of patch, `patchData` not a mapping), naming the rule index and the field.
    pub fn parse(yaml: &str) -> Result<Self, ModifierError> {
        let raw: RawDocument =
            serde_yaml::from_str(yaml).map_err(|e| ModifierError::Syntax(e.to_string()))?;
        if !raw.version.eq_ignore_ascii_case(SUPPORTED_VERSION) {
            return Err(ModifierError::UnsupportedVersion(raw.version));
        }
        if raw.resource_modifier_rules.is_empty() {
            return Err(ModifierError::NoRules);
        }
        let rules = raw
            .resource_modifier_rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                Rule::compile(r).map_err(|(field, reason)| ModifierError::InvalidRule {
                    rule: i,
                    field,
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { rules })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules (never true for a parsed document).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Applies the rules, in order, to one object about to be restored.
    ///
    /// - `group_resource`: the item's group-resource as Velero writes it (`pods`,
    ///   `deployments.apps`), matched against each rule's `groupResource` glob.
    /// - `namespace`: the namespace matched against `namespaces`; pass the namespace the object
    ///   had in the backup (Velero matches before namespace mapping). `None` (or empty) for
    ///   cluster-scoped objects, which pass the namespace condition.
    /// - `obj`: the object (a JSON object); modified in place.
    ///
    /// Conditions are evaluated against `obj` as it was on entry; each matching rule's patches
    /// apply to `obj` as left by the previous rules. Returns how many rules were applied (a rule
    /// skipped by a failing JSON-patch `test` does not count).
    ///
    /// # Errors
    /// [`ModifierError::Apply`] when some rules failed; `obj` then carries the rules that
    /// succeeded (Velero still restores the object and records the errors).
    pub fn apply(
        &self,
        group_resource: &str,
        namespace: Option<&str>,
        obj: &mut Value,
    ) -> Result<usize, ModifierError> {
        // With several rules, conditions look at the object as it came in (as Velero does).
        let snapshot = (self.rules.len() > 1).then(|| obj.clone());
        let mut applied = 0;
        let mut failures = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            let subject: &Value = snapshot.as_ref().unwrap_or(&*obj);
            match rule.conditions.matches(subject, group_resource, namespace) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(reason) => {
                    failures.push(RuleFailure { rule: i, reason });
                    continue;
                }
            }
            match rule.action.apply(obj) {
                Ok(true) => applied += 1,
                Ok(false) => {}
                Err(reason) => failures.push(RuleFailure { rule: i, reason }),
            }
        }
        if failures.is_empty() {
            Ok(applied)
        } else {
            Err(ModifierError::Apply { applied, failures })
        }
    }
}

type FieldError = (String, String);

fn field_err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    (field.into(), reason.into())
}

impl Rule {
    fn compile(raw: RawRule) -> Result<Self, FieldError> {
        let conditions = Conditions::compile(raw.conditions)?;
        let kinds = [
            !raw.patches.is_empty(),
            !raw.merge_patches.is_empty(),
            !raw.strategic_patches.is_empty(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if kinds > 1 {
            return Err(field_err(
                "patches",
                "only one of patches, mergePatches and strategicPatches may be given",
            ));
        }
        let action = if !raw.patches.is_empty() {
            let ops = raw
                .patches
                .into_iter()
                .enumerate()
                .map(|(j, p)| compile_op(p).map_err(|(f, r)| (format!("patches[{j}].{f}"), r)))
                .collect::<Result<Vec<_>, _>>()?;
            Action::Json(ops)
        } else if !raw.merge_patches.is_empty() {
            let patches = compile_patch_data(raw.merge_patches, "mergePatches")?;
            Action::Merge(patches.into_iter().map(Value::Object).collect())
        } else if !raw.strategic_patches.is_empty() {
            Action::Strategic(compile_patch_data(
                raw.strategic_patches,
                "strategicPatches",
            )?)
        } else {
            return Err(field_err(
                "patches",
                "one of patches, mergePatches or strategicPatches is required",
            ));
        };
        Ok(Self { conditions, action })
    }
}

impl Conditions {
    fn compile(raw: RawConditions) -> Result<Self, FieldError> {
        if raw.group_resource.is_empty() {
            return Err(field_err("conditions.groupResource", "is required"));
        }
        let group_resource = Glob::new(&raw.group_resource, Some('.'))
            .map_err(|e| field_err("conditions.groupResource", e))?;
        let name_regex = if raw.resource_name_regex.is_empty() {
            None
        } else {
            Some(
                Regex::new(&raw.resource_name_regex)
                    .map_err(|e| field_err("conditions.resourceNameRegex", e.to_string()))?,
            )
        };
        let namespaces = raw
            .namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                Glob::new(ns, None).map_err(|e| field_err(format!("conditions.namespaces[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let labels = raw.label_selector.map(compile_selector).transpose()?;
        let matches = raw
            .matches
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                let field = format!("conditions.matches[{i}]");
                if m.path.is_empty() {
                    return Err(field_err(format!("{field}.path"), "is required"));
                }
                let path =
                    parse_pointer(&m.path).map_err(|e| field_err(format!("{field}.path"), e))?;
                let value =
                    velero_value(m.value).map_err(|e| field_err(format!("{field}.value"), e))?;
                Ok(MatchRule { path, value })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            group_resource,
            name_regex,
            namespaces,
            labels,
            matches,
        })
    }

    fn matches(
        &self,
        obj: &Value,
        group_resource: &str,
        namespace: Option<&str>,
    ) -> Result<bool, String> {
        if let Some(ns) = namespace.filter(|ns| !ns.is_empty())
            && !self.namespaces.is_empty()
            && !self.namespaces.iter().any(|g| g.matches(ns))
        {
            return Ok(false);
        }
        if !self.group_resource.matches(group_resource) {
            return Ok(false);
        }
        if let Some(re) = &self.name_regex {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !re.is_match(name) {
                return Ok(false);
            }
        }
        if let Some(sel) = &self.labels {
            let labels: BTreeMap<String, String> = obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            if !sel.matches(&labels) {
                return Ok(false);
            }
        }
        for (i, m) in self.matches.iter().enumerate() {
            match test_value(obj, &m.path, &m.value) {
                Test::Pass => {}
                Test::Failed | Test::Missing => return Ok(false),
                Test::Error(e) => return Err(format!("conditions.matches[{i}]: {e}")),
            }
        }
        Ok(true)
    }
}

fn compile_selector(raw: RawLabelSelector) -> Result<LabelMatcher, FieldError> {
    let field = "conditions.labelSelector";
    let mut exprs = Vec::new();
    for (i, r) in raw.match_expressions.into_iter().enumerate() {
        let at = format!("{field}.matchExpressions[{i}]");
        if r.key.is_empty() {
            return Err(field_err(format!("{at}.key"), "is required"));
        }
        match r.operator.as_str() {
            "In" | "NotIn" if r.values.is_empty() => {
                return Err(field_err(
                    format!("{at}.values"),
                    format!("operator {} needs at least one value", r.operator),
                ));
            }
            "Exists" | "DoesNotExist" if !r.values.is_empty() => {
                return Err(field_err(
                    format!("{at}.values"),
                    format!("operator {} takes no values", r.operator),
                ));
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => {
                return Err(field_err(
                    format!("{at}.operator"),
                    format!("unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"),
                ));
            }
        }
        exprs.push(LabelSelectorRequirement {
            key: r.key,
            operator: r.operator,
            values: (!r.values.is_empty()).then_some(r.values),
        });
    }
    let sel = LabelSelector {
        match_labels: (!raw.match_labels.is_empty()).then_some(raw.match_labels),
        match_expressions: (!exprs.is_empty()).then_some(exprs),
    };
    LabelMatcher::new(&sel).map_err(|e| field_err(field, e.reason))
}

fn compile_op(raw: RawJsonPatch) -> Result<JsonOp, FieldError> {
    if raw.operation.is_empty() {
        return Err(field_err("operation", "is required"));
    }
    let kind = OpKind::parse(&raw.operation).ok_or_else(|| {
        field_err(
            "operation",
            format!(
                "unsupported operation {:?} (add, remove, replace, move, copy, test)",
                raw.operation
            ),
        )
    })?;
    if raw.path.is_empty() {
        return Err(field_err("path", "is required"));
    }
    let path = parse_pointer(&raw.path).map_err(|e| field_err("path", e))?;
    let from = if matches!(kind, OpKind::Move | OpKind::Copy) {
        if raw.from.is_empty() {
            return Err(field_err(
                "from",
                format!("is required for {}", kind.name()),
            ));
        }
        parse_pointer(&raw.from).map_err(|e| field_err("from", e))?
    } else {
        Vec::new()
    };
    let value = if matches!(kind, OpKind::Add | OpKind::Replace | OpKind::Test) {
        velero_value(raw.value).map_err(|e| field_err("value", e))?
    } else {
        Value::Null
    };
    Ok(JsonOp {
        kind,
        path,
        raw_path: raw.path,
        from,
        value,
    })
}

fn compile_patch_data(
    raw: Vec<RawPatchData>,
    list: &str,
) -> Result<Vec<Map<String, Value>>, FieldError> {
    raw.into_iter()
        .enumerate()
        .map(|(j, p)| {
            let field = format!("{list}[{j}].patchData");
            let mut doc = match p.patch_data {
                None => return Err(field_err(field, "is required")),
                Some(serde_yaml::Value::String(text)) => {
                    serde_yaml::from_str::<serde_yaml::Value>(&text)
                        .map_err(|e| field_err(&field, format!("not YAML or JSON: {e}")))?
                }
                // A mapping written inline instead of as a string: take it as is.
                Some(other) => other,
            };
            doc.apply_merge()
                .map_err(|e| field_err(&field, format!("YAML merge keys: {e}")))?;
            match yaml_to_json(doc).map_err(|e| field_err(&field, e))? {
                Value::Object(m) => Ok(m),
                _ => Err(field_err(
                    field,
                    "must be a mapping (a YAML or JSON object)",
                )),
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Values and pointers.

/// Converts YAML to JSON the way `sigs.k8s.io/yaml` does for documents made of plain data:
/// scalar keys become strings.
fn yaml_to_json(v: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => yaml_number(&n)?,
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    Y::Null => "null".to_string(),
                    _ => return Err("a mapping key is not a scalar".to_string()),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value)?,
    })
}

fn yaml_number(n: &serde_yaml::Number) -> Result<Value, String> {
    if let Some(i) = n.as_i64() {
        Ok(i.into())
    } else if let Some(u) = n.as_u64() {
        Ok(u.into())
    } else {
        n.as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("number {n} has no JSON form"))
    }
}

/// Decodes a `value` field as Velero does (see the module documentation).
fn velero_value(v: Option<serde_yaml::Value>) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    match v {
        None | Some(Y::Null) => Ok(Value::String(String::new())),
        Some(Y::String(s)) => text_value(&s),
        Some(other) => yaml_to_json(other),
    }
}

fn text_value(s: &str) -> Result<Value, String> {
    if s.is_empty() {
        return Ok(Value::String(String::new()));
    }
    if s.starts_with('"') && s.ends_with('"') {
        let inner = s.get(1..s.len().saturating_sub(1)).unwrap_or("");
        return Ok(spliced_string(inner));
    }
    if s == "null" {
        return Ok(Value::Null);
    }
    if s.eq_ignore_ascii_case("true") {
        return Ok(Value::Bool(true));
    }
    if s.eq_ignore_ascii_case("false") {
        return Ok(Value::Bool(false));
    }
    if s.starts_with('{') || s.starts_with('[') {
        return serde_json::from_str(s)
            .map_err(|e| format!("{s:?} starts like JSON but is not valid JSON: {e}"));
    }
    if !s.starts_with(char::is_whitespace)
        && !s.ends_with(char::is_whitespace)
        && let Ok(n) = serde_json::from_str::<serde_json::Number>(s)
    {
        return Ok(Value::Number(n));
    }
    Ok(spliced_string(s))
}

/// The string Velero gets by writing `"<s>"` into JSON text (escapes decoded); the literal text
/// where that would not be valid JSON.
fn spliced_string(s: &str) -> Value {
    let decoded =
        serde_json::from_str::<String>(&format!("\"{s}\"")).unwrap_or_else(|_| s.to_string());
    Value::String(decoded)
}

/// Splits an RFC 6901 pointer into unescaped tokens.
fn parse_pointer(p: &str) -> Result<Vec<String>, String> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err(format!(
            "{p:?} is not a JSON pointer (it must start with '/')"
        ));
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// Go's `strconv.Atoi` (sign and leading zeros allowed), as evanphx/json-patch parses indices.
fn go_index(token: &str) -> Option<i64> {
    token.parse::<i64>().ok()
}

enum Test {
    Pass,
    Failed,
    Missing,
    Error(String),
}

/// A JSON-patch `test`, with evanphx/json-patch's outcomes: a different value or an absent key
/// fails the test; a missing or non-container parent is "missing"; a bad array index is an error.
fn test_value(doc: &Value, path: &[String], expected: &Value) -> Test {
    let Some((last, parents)) = path.split_last() else {
        return if doc == expected {
            Test::Pass
        } else {
            Test::Failed
        };
    };
    let mut cur = doc;
    for t in parents {
        let next = match cur {
            Value::Object(m) => m.get(t),
            Value::Array(a) => go_index(t).and_then(|i| array_get(a, i)),
            _ => None,
        };
        match next {
            Some(v @ (Value::Object(_) | Value::Array(_))) => cur = v,
            _ => return Test::Missing,
        }
    }
    let found = match cur {
        Value::Object(m) => m.get(last),
        Value::Array(a) => match go_index(last) {
            None => return Test::Error(format!("array index {last:?} is not a number")),
            Some(i) => match array_get(a, i) {
                Some(v) => Some(v),
                None => return Test::Error(format!("array index {i} is out of range")),
            },
        },
        _ => return Test::Missing,
    };
    match found {
        None if expected.is_null() => Test::Pass,
        None => Test::Failed,
        Some(_) if expected.is_null() => Test::Failed,
        Some(v) if v == expected => Test::Pass,
        Some(_) => Test::Failed,
    }
}

fn array_get(a: &[Value], i: i64) -> Option<&Value> {
    let len = i64::try_from(a.len()).ok()?;
    let i = if i < 0 { i + len } else { i };
    usize::try_from(i).ok().and_then(|i| a.get(i))
}

/// Rewrites array indices in `path` for the `json-patch` crate: negative indices count from the
/// end (evanphx/json-patch's extension; for an insertion the end is one past the last item) and
/// numbers are written canonically.
fn resolve_indices(doc: &Value, path: &[String], insert: bool) -> Vec<String> {
    let mut out = path.to_vec();
    let mut cur = Some(doc);
    let n = out.len();
    for (pos, tok) in out.iter_mut().enumerate() {
        let Some(node) = cur else { break };
        if let Value::Array(a) = node
            && let Some(i) = go_index(tok)
        {
            let last = pos + 1 == n;
            let len = i64::try_from(a.len())
                .unwrap_or(i64::MAX)
                .saturating_add(i64::from(last && insert));
            let resolved = if i < 0 && i >= -len { i + len } else { i };
            *tok = resolved.to_string();
        }
        cur = match node {
            Value::Object(m) => m.get(tok.as_str()),
            Value::Array(a) => tok.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
    }
    out
}

fn pointer(tokens: &[String]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter())
}

enum OpError {
    TestFailed,
    Failed(String),
}

fn apply_op(doc: &mut Value, op: &JsonOp) -> Result<(), OpError> {
    let run = |doc: &mut Value, p: PatchOperation| {
        json_patch::patch_unsafe(doc, &[p]).map_err(|e| {
            OpError::Failed(match e.kind {
                json_patch::PatchErrorKind::InvalidPointer => format!(
                    "{} cannot be reached (a missing key or parent, or a list index out of range)",
                    e.path.as_str()
                ),
                json_patch::PatchErrorKind::InvalidFromPointer => {
                    "the from path does not exist".to_string()
                }
                other => other.to_string(),
            })
        })
    };
    match op.kind {
        OpKind::Test => match test_value(doc, &op.path, &op.value) {
            Test::Pass => Ok(()),
            Test::Failed => Err(OpError::TestFailed),
            Test::Missing => Err(OpError::Failed("the path's parent does not exist".into())),
            Test::Error(e) => Err(OpError::Failed(e)),
        },
        OpKind::Add => {
            let path = pointer(&resolve_indices(doc, &op.path, true));
            run(
                doc,
                PatchOperation::Add(AddOperation {
                    path,
                    value: op.value.clone(),
                }),
            )
        }
        OpKind::Replace => {
            let path = pointer(&resolve_indices(doc, &op.path, false));
            run(
                doc,
                PatchOperation::Replace(ReplaceOperation {
                    path,
                    value: op.value.clone(),
                }),
            )
        }
        OpKind::Remove => {
            let path = pointer(&resolve_indices(doc, &op.path, false));
            run(doc, PatchOperation::Remove(RemoveOperation { path }))
        }
        OpKind::Copy => {
            let from = pointer(&resolve_indices(doc, &op.from, false));
            let path = pointer(&resolve_indices(doc, &op.path, true));
            run(doc, PatchOperation::Copy(CopyOperation { from, path }))
        }
        OpKind::Move => {
            // As evanphx/json-patch: take the value out, then add it at the destination as the
            // document is after the removal.
            let from = pointer(&resolve_indices(doc, &op.from, false));
            let value = doc.pointer(from.as_str()).cloned().ok_or_else(|| {
                OpError::Failed(format!("from path {} does not exist", from.as_str()))
            })?;
            run(doc, PatchOperation::Remove(RemoveOperation { path: from }))?;
            let path = pointer(&resolve_indices(doc, &op.path, true));
            run(doc, PatchOperation::Add(AddOperation { path, value }))
        }
    }
}

impl Action {
    /// Applies the rule's patches. `Ok(false)`: skipped by a failing JSON-patch `test`.
    fn apply(&self, obj: &mut Value) -> Result<bool, String> {
        match self {
            Action::Json(ops) => {
                let mut work = obj.clone();
                for (j, op) in ops.iter().enumerate() {
                    match apply_op(&mut work, op) {
                        Ok(()) => {}
                        Err(OpError::TestFailed) => return Ok(false),
                        Err(OpError::Failed(e)) => {
                            return Err(format!(
                                "patches[{j}] ({} {}): {e}",
                                op.kind.name(),
                                op.raw_path
                            ));
                        }
                    }
                }
                if !work.is_object() {
                    return Err("the JSON patch result is not an object".into());
                }
                *obj = work;
                Ok(true)
            }
            Action::Merge(patches) => {
                let mut work = obj.clone();
                for p in patches {
                    json_patch::merge(&mut work, p);
                }
                *obj = work;
                Ok(true)
            }
            Action::Strategic(patches) => {
                let Value::Object(mut work) = obj.clone() else {
                    return Err("the object is not a JSON object".into());
                };
                let kind = obj
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                for (j, p) in patches.iter().enumerate() {
                    let mut path = Vec::new();
                    work = smp_map(work, p.clone(), &kind, &mut path)
                        .map_err(|e| format!("strategicPatches[{j}]: {e}"))?;
                }
                *obj = Value::Object(work);
                Ok(true)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch (the subset described in the module documentation).

const DIRECTIVE: &str = "$patch";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const RETAIN_KEYS: &str = "$retainKeys";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    /// Replaced by the patch's list.
    Atomic,
    /// Items merged by this key.
    MergeKey(&'static str),
    /// Scalars merged as a set.
    Set,
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

/// The merge strategy of list `field` in the map at `path` (map keys from the object's root; a
/// list item's path ends with the list's field name) of an object of `kind`.
fn list_strategy(kind: &str, path: &[String], field: &str) -> ListStrategy {
    use ListStrategy::{Atomic, MergeKey, Set};
    let parent = path.last().map(String::as_str);
    let in_container = parent.is_some_and(|p| CONTAINER_LISTS.contains(&p));
    let in_spec = parent == Some("spec");
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "schedulingGates"
        | "resourceClaims"
            if in_spec =>
        {
            MergeKey("name")
        }
        "hostAliases" if in_spec => MergeKey("ip"),
        "topologySpreadConstraints" if in_spec => MergeKey("topologyKey"),
        "env" if in_container => MergeKey("name"),
        "volumeMounts" if in_container => MergeKey("mountPath"),
        "volumeDevices" if in_container => MergeKey("devicePath"),
        "ports" if in_container => MergeKey("containerPort"),
        "ports" if kind == "Service" && path.len() == 1 && in_spec => MergeKey("port"),
        "ownerReferences" if parent == Some("metadata") => MergeKey("uid"),
        "finalizers" if parent == Some("metadata") => Set,
        "conditions" if parent == Some("status") => MergeKey("type"),
        "podIPs" | "hostIPs" if parent == Some("status") => MergeKey("ip"),
        "secrets" if kind == "ServiceAccount" && path.is_empty() => MergeKey("name"),
        "webhooks"
            if path.is_empty()
                && matches!(
                    kind,
                    "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration"
                ) =>
        {
            MergeKey("name")
        }
        "matchConditions" if in_spec || parent == Some("webhooks") => MergeKey("name"),
        "variables" if in_spec => MergeKey("name"),
        "drivers" if kind == "CSINode" && path.len() == 1 && in_spec => MergeKey("name"),
        _ => Atomic,
    }
}

/// Maps replaced rather than merged (`patchStrategy: replace` on a struct field).
fn map_is_atomic(kind: &str, path: &[String], field: &str) -> bool {
    kind == "PodDisruptionBudget" && field == "selector" && path.len() == 1 && path[0] == "spec"
}

fn at(path: &[String], field: &str) -> String {
    let mut s = path.join(".");
    if !s.is_empty() {
        s.push('.');
    }
    s.push_str(field);
    s
}

/// Drops `null` members of maps, recursively (Kubernetes does this to values that are added).
fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Removes maps carrying `$patch` from a value being added; `None` when the value itself is one.
fn strip_directives(v: Value) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if m.contains_key(DIRECTIVE) {
                return None;
            }
            Some(Value::Object(
                m.into_iter()
                    .filter_map(|(k, v)| strip_directives(v).map(|v| (k, v)))
                    .collect(),
            ))
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter().filter_map(strip_directives).collect(),
        )),
        other => Some(other),
    }
}

/// The value added where the object has nothing (or something of another type).
fn added_value(mut v: Value) -> Option<Value> {
    drop_nulls(&mut v);
    strip_directives(v)
}

fn here(path: &[String]) -> String {
    if path.is_empty() {
        "the object".to_string()
    } else {
        path.join(".")
    }
}

fn smp_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Map<String, Value>, String> {
    if let Some(d) = patch.remove(DIRECTIVE) {
        return match d.as_str() {
            Some("replace") => Ok(patch),
            Some("delete") => Ok(Map::new()),
            _ => Err(format!(
                "{}: unsupported $patch directive {d} in a map",
                here(path)
            )),
        };
    }
    if patch.contains_key(RETAIN_KEYS) {
        return Err(format!(
            "{}: the $retainKeys directive is not supported",
            here(path)
        ));
    }
    if let Some(k) = patch.keys().find(|k| k.starts_with(SET_ELEMENT_ORDER)) {
        return Err(format!(
            "{}: the {k} directive is not supported",
            here(path)
        ));
    }
    for (k, pv) in patch {
        if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            delete_from_primitive_list(&mut original, field, pv)
                .map_err(|e| format!("{}: {e}", at(path, &k)))?;
            continue;
        }
        if k.starts_with("$deleteFromPrimitiveList") {
            return Err(format!("{}: malformed directive {k:?}", here(path)));
        }
        if pv.is_null() {
            original.remove(&k);
            continue;
        }
        let Some(slot) = original.get_mut(&k) else {
            if let Some(v) = added_value(pv) {
                original.insert(k, v);
            }
            continue;
        };
        match (slot, pv) {
            (Value::Object(o), Value::Object(p)) => {
                if map_is_atomic(kind, path, &k) {
                    *o = p;
                } else {
                    path.push(k);
                    let merged = smp_map(std::mem::take(o), p, kind, path);
                    path.pop();
                    *o = merged?;
                }
            }
            (Value::Array(o), Value::Array(p)) => {
                let strategy = list_strategy(kind, path, &k);
                path.push(k);
                let merged = smp_list(std::mem::take(o), p, strategy, kind, path);
                let where_ = path.join(".");
                path.pop();
                *o = merged.map_err(|e| format!("{where_}: {e}"))?;
            }
            (slot, pv) => match added_value(pv) {
                Some(v) => *slot = v,
                None => {
                    original.remove(&k);
                }
            },
        }
    }
    Ok(original)
}

fn delete_from_primitive_list(
    original: &mut Map<String, Value>,
    field: &str,
    pv: Value,
) -> Result<(), String> {
    if pv.is_null() {
        original.remove(field);
        return Ok(());
    }
    if let (Some(Value::Array(o)), Value::Array(del)) = (original.get_mut(field), &pv) {
        if o.iter().chain(del).any(|v| v.is_object() || v.is_array()) {
            return Err("$deleteFromPrimitiveList applies to lists of scalars".into());
        }
        o.retain(|v| !del.contains(v));
    }
    Ok(())
}

fn json_type(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

/// Merge-key (and scalar) equality; numbers compare by value.
fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn position(list: &[Value], id: &Value) -> Option<usize> {
    list.iter().position(|x| same_key(x, id))
}

fn smp_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    strategy: ListStrategy,
    kind: &str,
    path: &mut Vec<String>,
) -> Result<Vec<Value>, String> {
    if strategy == ListStrategy::Atomic {
        return Ok(patch);
    }
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    let mut elem = None;
    for v in original.iter().chain(&patch) {
        let t = json_type(v);
        if t == 4 {
            return Err("lists of lists cannot be merged".into());
        }
        match elem {
            None => elem = Some(t),
            Some(p) if p != t => return Err("list items are not all of the same type".into()),
            Some(_) => {}
        }
    }
    if elem != Some(5) {
        // Scalars: a union without duplicates.
        let mut merged: Vec<Value> = Vec::new();
        for v in original.iter().chain(&patch) {
            if position(&merged, v).is_none() {
                merged.push(v.clone());
            }
        }
        let ids = |v: &Value| -> Result<Value, String> { Ok(v.clone()) };
        return order_merged(merged, ids, &patch, &original);
    }
    let ListStrategy::MergeKey(key) = strategy else {
        return Err("a list of maps cannot be merged without a merge key".into());
    };
    let missing_key = |m: &Map<String, Value>| {
        format!(
            "item {} has no merge key {key:?}",
            serde_json::to_string(m).unwrap_or_default()
        )
    };

    // Directive items first: deletions and whole-list replacement.
    let mut base = original;
    let mut items: Vec<Map<String, Value>> = Vec::new();
    let mut replace = false;
    for p in patch {
        let Value::Object(m) = p else {
            return Err("list items are not all of the same type".into());
        };
        match m.get(DIRECTIVE) {
            None => items.push(m),
            Some(Value::String(d)) if d == "delete" => {
                let id = m.get(key).ok_or_else(|| missing_key(&m))?;
                base.retain(|o| !o.get(key).is_some_and(|v| same_key(v, id)));
            }
            Some(Value::String(d)) if d == "replace" => replace = true,
            Some(d) => return Err(format!("unsupported $patch directive {d} in a list item")),
        }
    }
    if replace {
        base = items.drain(..).map(Value::Object).collect();
    }

    let id_of = |v: &Value| -> Result<Value, String> {
        match v {
            Value::Object(m) => m.get(key).cloned().ok_or_else(|| missing_key(m)),
            _ => Err("list items are not all of the same type".into()),
        }
    };
    let server_order = base.iter().map(id_of).collect::<Result<Vec<_>, _>>()?;
    let mut patch_order = Vec::with_capacity(items.len());
    let mut merged = base;
    for item in items {
        let id = item.get(key).cloned().ok_or_else(|| missing_key(&item))?;
        let found = merged
            .iter()
            .position(|o| o.get(key).is_some_and(|v| same_key(v, &id)));
        match found {
            Some(i) => {
                let Value::Object(o) = std::mem::take(&mut merged[i]) else {
                    return Err("list items are not all of the same type".into());
                };
                merged[i] = Value::Object(smp_map(o, item, kind, path)?);
            }
            None => merged.push(Value::Object(item)),
        }
        patch_order.push(id);
    }
    order_merged(merged, id_of, &patch_order, &server_order)
}

/// Orders a merged list as Kubernetes does: the items named by the patch in patch order, the
/// others in the object's order, interleaved using the object's order.
fn order_merged(
    merged: Vec<Value>,
    id_of: impl Fn(&Value) -> Result<Value, String>,
    patch_order: &[Value],
    server_order: &[Value],
) -> Result<Vec<Value>, String> {
    let mut from_patch = Vec::new();
    let mut server_only = Vec::new();
    for v in merged {
        let id = id_of(&v)?;
        match position(patch_order, &id) {
            Some(p) => from_patch.push((p, id, v)),
            None => server_only.push((position(server_order, &id).unwrap_or(usize::MAX), id, v)),
        }
    }
    from_patch.sort_by_key(|(p, _, _)| *p);
    server_only.sort_by_key(|(p, _, _)| *p);
    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = from_patch.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((_, l, _)), Some((_, r, _))) => {
                matches!((position(server_order, l), position(server_order, r)), (Some(a), Some(b)) if a < b)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((_, _, v)) = next {
            out.push(v);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Globs (the syntax of github.com/gobwas/glob).

#[derive(Clone, Debug)]
enum GlobTok {
    Lit(char),
    /// `*`: any run without the separator.
    Star,
    /// `**`: any run.
    Super,
    /// `?`: one character other than the separator.
    One,
    /// `[...]` / `[!...]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Clone, Debug)]
enum GlobNode {
    Tok(GlobTok),
    Alt(Vec<Vec<GlobNode>>),
}

/// A compiled glob: its `{a,b}` alternatives expanded.
#[derive(Clone, Debug)]
struct Glob {
    alternatives: Vec<Vec<GlobTok>>,
    separator: Option<char>,
}

impl Glob {
    fn new(pattern: &str, separator: Option<char>) -> Result<Self, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut pos = 0;
        let nodes = parse_glob_seq(&chars, &mut pos, false)
            .map_err(|e| format!("bad glob {pattern:?}: {e}"))?;
        let alternatives = expand_glob(&nodes).map_err(|e| format!("bad glob {pattern:?}: {e}"))?;
        Ok(Self {
            alternatives,
            separator,
        })
    }

    fn matches(&self, s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        self.alternatives
            .iter()
            .any(|toks| glob_match(toks, &chars, self.separator))
    }
}

fn parse_glob_seq(chars: &[char], pos: &mut usize, in_alt: bool) -> Result<Vec<GlobNode>, String> {
    let mut out = Vec::new();
    while let Some(&c) = chars.get(*pos) {
        match c {
            '}' | ',' if in_alt => return Ok(out),
            '\\' => {
                let Some(&n) = chars.get(*pos + 1) else {
                    return Err("ends with an unfinished escape".into());
                };
                out.push(GlobNode::Tok(GlobTok::Lit(n)));
                *pos += 2;
            }
            '*' => {
                if chars.get(*pos + 1) == Some(&'*') {
                    out.push(GlobNode::Tok(GlobTok::Super));
                    *pos += 2;
                } else {
                    out.push(GlobNode::Tok(GlobTok::Star));
                    *pos += 1;
                }
            }
            '?' => {
                out.push(GlobNode::Tok(GlobTok::One));
                *pos += 1;
            }
            '[' => {
                *pos += 1;
                let negated = chars.get(*pos) == Some(&'!');
                if negated {
                    *pos += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    let Some(&c) = chars.get(*pos) else {
                        return Err("unclosed '['".into());
                    };
                    if c == ']' {
                        *pos += 1;
                        break;
                    }
                    let lo = if c == '\\' {
                        *pos += 1;
                        *chars.get(*pos).ok_or("unclosed '['")?
                    } else {
                        c
                    };
                    *pos += 1;
                    if chars.get(*pos) == Some(&'-')
                        && chars.get(*pos + 1).is_some_and(|c| *c != ']')
                    {
                        let hi = *chars.get(*pos + 1).ok_or("unclosed '['")?;
                        if hi < lo {
                            return Err(format!("bad range {lo}-{hi}"));
                        }
                        ranges.push((lo, hi));
                        *pos += 2;
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                if ranges.is_empty() {
                    return Err("empty '[]'".into());
                }
                out.push(GlobNode::Tok(GlobTok::Class { negated, ranges }));
            }
            '{' => {
                *pos += 1;
                let mut alts = Vec::new();
                loop {
                    alts.push(parse_glob_seq(chars, pos, true)?);
                    match chars.get(*pos) {
                        Some(',') => *pos += 1,
                        Some('}') => {
                            *pos += 1;
                            break;
                        }
                        _ => return Err("unclosed '{'".into()),
                    }
                }
                out.push(GlobNode::Alt(alts));
            }
            c => {
                out.push(GlobNode::Tok(GlobTok::Lit(c)));
                *pos += 1;
            }
        }
    }
    Ok(out)
}

fn expand_glob(nodes: &[GlobNode]) -> Result<Vec<Vec<GlobTok>>, String> {
    let mut acc: Vec<Vec<GlobTok>> = vec![Vec::new()];
    for node in nodes {
        match node {
            GlobNode::Tok(t) => acc.iter_mut().for_each(|a| a.push(t.clone())),
            GlobNode::Alt(alts) => {
                let mut options = Vec::new();
                for alt in alts {
                    options.extend(expand_glob(alt)?);
                }
                if acc.len().saturating_mul(options.len()) > MAX_GLOB_ALTERNATIVES {
                    return Err("too many '{..}' alternatives".into());
                }
                acc = acc
                    .iter()
                    .flat_map(|a| {
                        options.iter().map(move |o| {
                            let mut v = a.clone();
                            v.extend(o.iter().cloned());
                            v
                        })
                    })
                    .collect();
            }
        }
    }
    Ok(acc)
}

/// Whole-string match of an alternative-free glob (dynamic programming, linear in each).
fn glob_match(toks: &[GlobTok], s: &[char], sep: Option<char>) -> bool {
    let not_sep = |c: char| Some(c) != sep;
    // reach[j]: the tokens so far can match s[..j].
    let mut reach = vec![false; s.len() + 1];
    reach[0] = true;
    for tok in toks {
        let mut next = vec![false; s.len() + 1];
        for j in 0..=s.len() {
            let prev = j.checked_sub(1);
            next[j] = match tok {
                GlobTok::Star => reach[j] || prev.is_some_and(|p| next[p] && not_sep(s[p])),
                GlobTok::Super => reach[j] || prev.is_some_and(|p| next[p]),
                GlobTok::One => prev.is_some_and(|p| reach[p] && not_sep(s[p])),
                GlobTok::Lit(c) => prev.is_some_and(|p| reach[p] && s[p] == *c),
                GlobTok::Class { negated, ranges } => prev.is_some_and(|p| {
                    reach[p]
                        && ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s[p])) != *negated
                }),
            };
        }
        reach = next;
    }
    reach[s.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(yaml: &str) -> ResourceModifiers {
        match ResourceModifiers::parse(yaml) {
            Ok(m) => m,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    fn parse_err(yaml: &str) -> ModifierError {
        match ResourceModifiers::parse(yaml) {
            Ok(_) => panic!("parse succeeded for:\n{yaml}"),
            Err(e) => e,
        }
    }

    fn invalid(yaml: &str) -> (usize, String, String) {
        match parse_err(yaml) {
            ModifierError::InvalidRule {
                rule,
                field,
                reason,
            } => (rule, field, reason),
            other => panic!("expected InvalidRule, got {other}"),
        }
    }

    /// One rule with the given conditions (YAML lines indented by 4) and a merge patch that sets
    /// label `hit: "yes"`.
    fn label_rule(conditions: &str) -> ResourceModifiers {
        parse(&format!(
            "version: v1\nresourceModifierRules:\n- conditions:\n{conditions}\n  mergePatches:\n  - patchData: '{{\"metadata\":{{\"labels\":{{\"hit\":\"yes\"}}}}}}'\n"
        ))
    }

    fn hits(m: &ResourceModifiers, gr: &str, ns: Option<&str>, obj: &Value) -> bool {
        let mut o = obj.clone();
        let n = m.apply(gr, ns, &mut o).expect("apply");
        assert_eq!(n == 1, o.pointer("/metadata/labels/hit").is_some());
        n == 1
    }

    fn pvc(name: &str, ns: &str, sc: &str) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns, "labels": {"foo": "bar", "test": "x"}},
            "spec": {"storageClassName": sc, "accessModes": ["ReadWriteOnce"]}
        })
    }

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "prod", "labels": {"app": "web"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "nginx", "image": "nginx:1.25",
                             "ports": [{"containerPort": 80, "protocol": "TCP"}],
                             "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                            {"name": "sidecar", "image": "envoy:1"}
                        ],
                        "tolerations": [{"key": "a", "operator": "Exists"}]
                    }
                }
            }
        })
    }

    fn smp(patch: &str, obj: &Value) -> Result<Value, ModifierError> {
        let indented: String = patch.lines().map(|l| format!("      {l}\n")).collect();
        let m = parse(&format!(
            "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: '**'\n  strategicPatches:\n  - patchData: |\n{indented}"
        ));
        let mut o = obj.clone();
        m.apply("deployments.apps", Some("prod"), &mut o).map(|_| o)
    }

    fn container_names(obj: &Value) -> Vec<String> {
        obj.pointer("/spec/template/spec/containers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    // ----- parsing -----

    #[test]
    fn parses_the_documented_example() {
        let m = parse(
            r#"
version: v1
resourceModifierRules:
- conditions:
     groupResource: persistentvolumeclaims
     resourceNameRegex: "^mysql.*$"
     namespaces:
     - bar
     - foo
     labelSelector:
        matchLabels:
           foo: bar
  patches:
  - operation: replace
    path: "/spec/storageClassName"
    value: "premium"
  - operation: remove
    path: "/metadata/labels/test"
"#,
        );
        assert_eq!(m.len(), 1);
        let mut obj = pvc("mysql-0", "foo", "standard");
        assert_eq!(
            m.apply("persistentvolumeclaims", Some("foo"), &mut obj)
                .unwrap(),
            1
        );
        assert_eq!(obj["spec"]["storageClassName"], "premium");
        assert!(obj.pointer("/metadata/labels/test").is_none());
        // Other namespace, other name: untouched.
        for (name, ns) in [("mysql-0", "baz"), ("pg-0", "foo")] {
            let mut obj = pvc(name, ns, "standard");
            assert_eq!(
                m.apply("persistentvolumeclaims", Some(ns), &mut obj)
                    .unwrap(),
                0
            );
            assert_eq!(obj, pvc(name, ns, "standard"));
        }
    }

    #[test]
    fn from_config_map_needs_exactly_one_key() {
        let doc = "version: v1\nresourceModifierRules:\n- conditions: {groupResource: pods}\n  mergePatches: [{patchData: '{}'}]\n";
        let one = BTreeMap::from([("rules.yaml".to_string(), doc.to_string())]);
        assert_eq!(
            ResourceModifiers::from_config_map_data(&one).unwrap().len(),
            1
        );
        let two = BTreeMap::from([
            ("a".to_string(), doc.to_string()),
            ("b".to_string(), doc.to_string()),
        ]);
        assert!(matches!(
            ResourceModifiers::from_config_map_data(&two),
            Err(ModifierError::ConfigMapKeys(2))
        ));
        assert!(matches!(
            ResourceModifiers::from_config_map_data(&BTreeMap::new()),
            Err(ModifierError::ConfigMapKeys(0))
        ));
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        let e = parse_err("version: v1\nresourceModifierRules: []\nextra: 1\n");
        assert!(
            matches!(&e, ModifierError::Syntax(m) if m.contains("extra")),
            "{e}"
        );
        let e = parse_err(
            "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: pods\n    namespace: [a]\n  mergePatches: [{patchData: '{}'}]\n",
        );
        let msg = e.to_string();
        assert!(matches!(e, ModifierError::Syntax(_)));
        assert!(msg.contains("resourceModifierRules[0].conditions"), "{msg}");
        assert!(msg.contains("unknown field `namespace`"), "{msg}");
        let e = parse_err(
            "version: v1\nresourceModifierRules:\n- conditions: {groupResource: pods}\n  patches:\n  - op: add\n    path: /a\n",
        );
        let msg = e.to_string();
        assert!(
            msg.contains("resourceModifierRules[0].patches[0]") && msg.contains("`op`"),
            "{msg}"
        );
        let e = parse_err(
            "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: pods\n    labelSelector: {matchLabel: {a: b}}\n  mergePatches: [{patchData: '{}'}]\n",
        );
        assert!(e.to_string().contains("matchLabel"), "{e}");
        assert!(matches!(
            parse_err("version: [v1\n"),
            ModifierError::Syntax(_)
        ));
    }

    #[test]
    fn version_is_checked() {
        let rules = "resourceModifierRules:\n- conditions: {groupResource: pods}\n  mergePatches: [{patchData: '{}'}]\n";
        assert!(matches!(
            parse_err(&format!("version: v2\n{rules}")),
            ModifierError::UnsupportedVersion(v) if v == "v2"
        ));
        assert!(matches!(
            parse_err(rules),
            ModifierError::UnsupportedVersion(v) if v.is_empty()
        ));
        assert_eq!(parse(&format!("version: V1\n{rules}")).len(), 1);
        assert!(matches!(parse_err("version: v1\n"), ModifierError::NoRules));
        assert!(matches!(
            parse_err("version: v1\nresourceModifierRules: []\n"),
            ModifierError::NoRules
        ));
    }

    #[test]
    fn invalid_rules_name_the_rule_and_field() {
        let ok = "- conditions: {groupResource: pods}\n  mergePatches: [{patchData: '{}'}]\n";
        let doc = |bad: &str| format!("version: v1\nresourceModifierRules:\n{ok}{bad}");

        let (rule, field, reason) = invalid(&doc(
            "- conditions: {groupResource: pods, resourceNameRegex: 'a(b'}\n  mergePatches: [{patchData: '{}'}]\n",
        ));
        assert_eq!((rule, field.as_str()), (1, "conditions.resourceNameRegex"));
        assert!(!reason.is_empty());

        let (rule, field, reason) = invalid(&doc(
            "- conditions: {groupResource: pods}\n  patches: [{operation: merge, path: /a}]\n",
        ));
        assert_eq!((rule, field.as_str()), (1, "patches[0].operation"));
        assert!(reason.contains("merge"), "{reason}");

        let cases = [
            (
                "- conditions: {namespaces: [a]}\n  mergePatches: [{patchData: '{}'}]\n",
                "conditions.groupResource",
            ),
            (
                "- conditions: {groupResource: '{pods'}\n  mergePatches: [{patchData: '{}'}]\n",
                "conditions.groupResource",
            ),
            (
                "- conditions: {groupResource: pods, namespaces: [ok, '[a']}\n  mergePatches: [{patchData: '{}'}]\n",
                "conditions.namespaces[1]",
            ),
            (
                "- conditions: {groupResource: pods, labelSelector: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}}\n  mergePatches: [{patchData: '{}'}]\n",
                "conditions.labelSelector.matchExpressions[0].operator",
            ),
            (
                "- conditions: {groupResource: pods, labelSelector: {matchExpressions: [{key: a, operator: In}]}}\n  mergePatches: [{patchData: '{}'}]\n",
                "conditions.labelSelector.matchExpressions[0].values",
            ),
            (
                "- conditions: {groupResource: pods, matches: [{value: x}]}\n  mergePatches: [{patchData: '{}'}]\n",
                "conditions.matches[0].path",
            ),
            ("- conditions: {groupResource: pods}\n", "patches"),
            (
                "- conditions: {groupResource: pods}\n  patches: [{operation: remove, path: /a}]\n  mergePatches: [{patchData: '{}'}]\n",
                "patches",
            ),
            (
                "- conditions: {groupResource: pods}\n  patches: [{operation: add, path: /a}, {operation: add}]\n",
                "patches[1].path",
            ),
            (
                "- conditions: {groupResource: pods}\n  patches: [{operation: add, path: spec/a}]\n",
                "patches[0].path",
            ),
            (
                "- conditions: {groupResource: pods}\n  patches: [{path: /a}]\n",
                "patches[0].operation",
            ),
            (
                "- conditions: {groupResource: pods}\n  patches: [{operation: move, path: /a}]\n",
                "patches[0].from",
            ),
            (
                "- conditions: {groupResource: pods}\n  patches: [{operation: add, path: /a, value: '{\"a\": }'}]\n",
                "patches[0].value",
            ),
            (
                "- conditions: {groupResource: pods}\n  mergePatches: [{patchData: '[1, 2]'}]\n",
                "mergePatches[0].patchData",
            ),
            (
                "- conditions: {groupResource: pods}\n  strategicPatches: [{patchData: '{}'}, {}]\n",
                "strategicPatches[1].patchData",
            ),
            (
                "- conditions: {groupResource: pods}\n  strategicPatches: [{patchData: 'a: [b'}]\n",
                "strategicPatches[0].patchData",
            ),
        ];
        for (bad, want) in cases {
            let (rule, field, _) = invalid(&doc(bad));
            assert_eq!((rule, field.as_str()), (1, want), "{bad}");
        }
        let e = parse_err(&doc("- conditions: {groupResource: pods}\n"));
        assert!(
            e.to_string()
                .starts_with("resource modifiers: resourceModifierRules[1].patches: "),
            "{e}"
        );
    }

    #[test]
    fn values_are_decoded_like_velero() {
        let t = |s: &str| text_value(s).unwrap();
        assert_eq!(t(""), json!(""));
        assert_eq!(t("premium"), json!("premium"));
        assert_eq!(t("3"), json!(3));
        assert_eq!(t("-1.5"), json!(-1.5));
        assert_eq!(t("true"), json!(true));
        assert_eq!(t("False"), json!(false));
        assert_eq!(t("null"), Value::Null);
        assert_eq!(t("\"true\""), json!("true"));
        assert_eq!(t("\"3\""), json!("3"));
        assert_eq!(t("\""), json!(""));
        assert_eq!(t("{\"a\": [1]}"), json!({"a": [1]}));
        assert_eq!(t("[1, \"x\"]"), json!([1, "x"]));
        assert_eq!(t("+1"), json!("+1"));
        assert_eq!(t("0123"), json!("0123"));
        assert_eq!(t(" 3"), json!(" 3"));
        assert_eq!(t("a\\tb"), json!("a\tb"));
        assert_eq!(t("C:\\dir"), json!("C:\\dir"));
        assert_eq!(t("say \"hi\""), json!("say \"hi\""));
        assert!(text_value("{oops").is_err());
        // Non-string YAML values are taken as JSON.
        let y = |s: &str| velero_value(Some(serde_yaml::from_str(s).unwrap())).unwrap();
        assert_eq!(y("3"), json!(3));
        assert_eq!(y("true"), json!(true));
        assert_eq!(y("{a: [1, b]}"), json!({"a": [1, "b"]}));
        assert_eq!(y("'7'"), json!(7));
        assert_eq!(velero_value(None).unwrap(), json!(""));
    }

    #[test]
    fn globs_follow_gobwas_semantics() {
        let g = |p: &str, sep| Glob::new(p, sep).unwrap();
        let gr = |p: &str| g(p, Some('.'));
        assert!(gr("*").matches("pods"));
        assert!(!gr("*").matches("deployments.apps"));
        assert!(gr("*.apps").matches("deployments.apps"));
        assert!(!gr("*.apps").matches("pods"));
        assert!(gr("*.*").matches("deployments.apps"));
        assert!(!gr("*.*").matches("ingresses.networking.k8s.io"));
        assert!(gr("**").matches("ingresses.networking.k8s.io"));
        assert!(gr("*.**").matches("ingresses.networking.k8s.io"));
        assert!(gr("{deployments,statefulsets}.apps").matches("statefulsets.apps"));
        assert!(!gr("{deployments,statefulsets}.apps").matches("daemonsets.apps"));
        assert!(gr("pod?").matches("pods"));
        assert!(!gr("pod?").matches("pod."));
        assert!(gr("[cp]ods").matches("pods"));
        assert!(gr("[!c]ods").matches("pods"));
        assert!(!gr("[!p]ods").matches("pods"));
        assert!(gr("[a-q]ods").matches("pods"));
        assert!(gr("\\*").matches("*"));
        assert!(!gr("\\*").matches("pods"));
        assert!(gr("pods").matches("pods"));
        assert!(!gr("pods").matches("podsx"));
        assert!(g("team-*", None).matches("team-a.b"));
        assert!(g("*", None).matches("anything.at.all"));
        assert!(gr("a*b*c*d").matches("axxbyyczzd"));
        assert!(!gr("a*b*c*d").matches("axxbyyczz.d"));
        for bad in ["[abc", "{a,b", "a\\", "[]"] {
            assert!(Glob::new(bad, Some('.')).is_err(), "{bad}");
        }
    }

    // ----- conditions -----

    #[test]
    fn group_resource_condition() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "a"}});
        let core = label_rule("    groupResource: pods");
        assert!(hits(&core, "pods", Some("a"), &pod));
        assert!(!hits(&core, "pods.metrics.k8s.io", Some("a"), &pod));
        let all_core = label_rule("    groupResource: '*'");
        assert!(hits(&all_core, "configmaps", Some("a"), &pod));
        assert!(!hits(&all_core, "deployments.apps", Some("a"), &pod));
        let apps = label_rule("    groupResource: '*.apps'");
        assert!(hits(&apps, "deployments.apps", Some("a"), &pod));
        assert!(!hits(&apps, "pods", Some("a"), &pod));
        let exact = label_rule("    groupResource: deployments.apps");
        assert!(hits(&exact, "deployments.apps", Some("a"), &pod));
        assert!(!hits(&exact, "deployments", Some("a"), &pod));
        let everything = label_rule("    groupResource: '**'");
        assert!(hits(&everything, "ingresses.networking.k8s.io", None, &pod));
    }

    #[test]
    fn name_regex_condition() {
        let m = label_rule("    groupResource: pods\n    resourceNameRegex: 'sql-[0-9]+'");
        let named = |n: &str| json!({"metadata": {"name": n}});
        assert!(hits(&m, "pods", None, &named("mysql-0")));
        assert!(hits(&m, "pods", None, &named("pgsql-12-x")));
        assert!(!hits(&m, "pods", None, &named("mysql")));
        assert!(!hits(&m, "pods", None, &json!({"metadata": {}})));
        let anchored = label_rule("    groupResource: pods\n    resourceNameRegex: '^web$'");
        assert!(hits(&anchored, "pods", None, &named("web")));
        assert!(!hits(&anchored, "pods", None, &named("web-1")));
    }

    #[test]
    fn namespaces_condition() {
        let m = label_rule("    groupResource: '**'\n    namespaces: [prod, 'team-*']");
        let obj = json!({"metadata": {"name": "x"}});
        assert!(hits(&m, "pods", Some("prod"), &obj));
        assert!(hits(&m, "pods", Some("team-blue"), &obj));
        assert!(!hits(&m, "pods", Some("dev"), &obj));
        // Cluster-scoped items pass the namespace condition.
        assert!(hits(&m, "persistentvolumes", None, &obj));
        assert!(hits(&m, "persistentvolumes", Some(""), &obj));
        let star = label_rule("    groupResource: '**'\n    namespaces: ['*']");
        assert!(hits(&star, "pods", Some("dev"), &obj));
        let none = label_rule("    groupResource: '**'");
        assert!(hits(&none, "pods", Some("dev"), &obj));
    }

    #[test]
    fn label_selector_condition() {
        let m = label_rule(
            "    groupResource: '**'\n    labelSelector:\n      matchLabels: {app: web}\n      matchExpressions:\n      - {key: tier, operator: In, values: [front, edge]}\n      - {key: legacy, operator: DoesNotExist}",
        );
        let with = |labels: Value| json!({"metadata": {"name": "x", "labels": labels}});
        assert!(hits(
            &m,
            "pods",
            None,
            &with(json!({"app": "web", "tier": "edge"}))
        ));
        assert!(!hits(
            &m,
            "pods",
            None,
            &with(json!({"app": "web", "tier": "back"}))
        ));
        assert!(!hits(
            &m,
            "pods",
            None,
            &with(json!({"app": "web", "tier": "front", "legacy": "1"}))
        ));
        assert!(!hits(&m, "pods", None, &with(json!({"tier": "front"}))));
        assert!(!hits(&m, "pods", None, &json!({"metadata": {"name": "x"}})));
        let empty = label_rule("    groupResource: '**'\n    labelSelector: {}");
        assert!(hits(
            &empty,
            "pods",
            None,
            &json!({"metadata": {"name": "x"}})
        ));
    }

    #[test]
    fn matches_condition() {
        let m = label_rule(
            "    groupResource: '**'\n    matches:\n    - {path: /spec/storageClassName, value: premium}\n    - {path: /spec/replicas, value: '3'}",
        );
        let obj = |sc: &str, replicas: Value| json!({"metadata": {"name": "x"}, "spec": {"storageClassName": sc, "replicas": replicas}});
        assert!(hits(&m, "pods", None, &obj("premium", json!(3))));
        assert!(!hits(&m, "pods", None, &obj("standard", json!(3))));
        assert!(!hits(&m, "pods", None, &obj("premium", json!("3"))));
        // A missing key, a missing parent, a scalar parent: no match, no error.
        let leaf = label_rule(
            "    groupResource: '**'\n    matches: [{path: /metadata/labels/a, value: b}]",
        );
        assert!(!hits(
            &leaf,
            "pods",
            None,
            &json!({"metadata": {"labels": {}}})
        ));
        assert!(!hits(&leaf, "pods", None, &json!({"metadata": {}})));
        let deep = label_rule(
            "    groupResource: '**'\n    matches: [{path: /metadata/labels/a/b, value: c}]",
        );
        assert!(!hits(
            &deep,
            "pods",
            None,
            &json!({"metadata": {"labels": {"a": "b"}}})
        ));
        // `null` matches an absent key.
        let absent = label_rule(
            "    groupResource: '**'\n    matches: [{path: /metadata/labels/a, value: 'null'}]",
        );
        assert!(hits(
            &absent,
            "pods",
            None,
            &json!({"metadata": {"labels": {}}})
        ));
        assert!(!hits(
            &absent,
            "pods",
            None,
            &json!({"metadata": {"labels": {"a": "b"}}})
        ));
        // Array elements, including negative indices; escaped keys.
        let arr = label_rule(
            "    groupResource: '**'\n    matches:\n    - {path: /spec/containers/-1/name, value: sidecar}\n    - {path: /metadata/annotations/a~1b, value: c}",
        );
        let o = json!({"metadata": {"annotations": {"a/b": "c"}}, "spec": {"containers": [{"name": "app"}, {"name": "sidecar"}]}});
        assert!(hits(&arr, "pods", None, &o));
        // An index out of range is an error of the rule.
        let bad = label_rule(
            "    groupResource: '**'\n    matches: [{path: /spec/containers/5, value: x}]",
        );
        let mut o2 = o.clone();
        match bad.apply("pods", None, &mut o2) {
            Err(ModifierError::Apply {
                applied: 0,
                failures,
            }) => {
                assert_eq!(failures[0].rule, 0);
                assert!(
                    failures[0].reason.contains("matches[0]"),
                    "{}",
                    failures[0].reason
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(o2, o);
    }

    // ----- JSON patch -----

    fn json_patch_rule(patches: &str) -> ResourceModifiers {
        parse(&format!(
            "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: '**'\n  patches:\n{patches}"
        ))
    }

    #[test]
    fn json_patch_add_replace_remove() {
        let m = json_patch_rule(
            "  - {operation: add, path: /metadata/annotations, value: '{\"a\": \"1\"}'}\n  - {operation: add, path: /metadata/labels/new, value: '\"42\"'}\n  - {operation: replace, path: /spec/replicas, value: '5'}\n  - {operation: remove, path: /metadata/labels/app}\n  - {operation: add, path: /spec/template/spec/tolerations/-, value: '{\"key\": \"b\", \"operator\": \"Exists\"}'}\n  - {operation: add, path: /spec/paused, value: 'true'}\n",
        );
        let mut d = deployment();
        assert_eq!(
            m.apply("deployments.apps", Some("prod"), &mut d).unwrap(),
            1
        );
        assert_eq!(d["metadata"]["annotations"], json!({"a": "1"}));
        assert_eq!(d["metadata"]["labels"], json!({"new": "42"}));
        assert_eq!(d["spec"]["replicas"], json!(5));
        assert_eq!(d["spec"]["paused"], json!(true));
        assert_eq!(d["spec"]["template"]["spec"]["tolerations"][1]["key"], "b");
    }

    #[test]
    fn json_patch_copy_and_move() {
        // The documented example: insert a container at 0, then copy it to 1.
        let m = json_patch_rule(
            "  - operation: add\n    path: /spec/template/spec/containers/0\n    value: \"{\\\"name\\\": \\\"nginx2\\\", \\\"image\\\": \\\"nginx:1.14.2\\\", \\\"ports\\\": [{\\\"containerPort\\\": 80}]}\"\n  - operation: copy\n    from: /spec/template/spec/containers/0\n    path: /spec/template/spec/containers/1\n",
        );
        let mut d = deployment();
        m.apply("deployments.apps", None, &mut d).unwrap();
        assert_eq!(
            container_names(&d),
            ["nginx2", "nginx2", "nginx", "sidecar"]
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][1]["ports"][0]["containerPort"],
            80
        );

        let mv = json_patch_rule(
            "  - {operation: move, from: /metadata/labels/app, path: /metadata/labels/application}\n  - {operation: move, from: /spec/template/spec/containers/0, path: /spec/template/spec/containers/-1}\n",
        );
        let mut d = deployment();
        mv.apply("deployments.apps", None, &mut d).unwrap();
        assert_eq!(d["metadata"]["labels"], json!({"application": "web"}));
        assert_eq!(container_names(&d), ["sidecar", "nginx"]);
    }

    #[test]
    fn json_patch_test_op_gates_the_rule() {
        let m = json_patch_rule(
            "  - {operation: test, path: /spec/storageClassName, value: premium}\n  - {operation: replace, path: /spec/storageClassName, value: standard}\n",
        );
        let mut p = pvc("a", "ns", "premium");
        assert_eq!(
            m.apply("persistentvolumeclaims", Some("ns"), &mut p)
                .unwrap(),
            1
        );
        assert_eq!(p["spec"]["storageClassName"], "standard");
        // A different value: the whole rule is skipped, silently.
        let mut p = pvc("a", "ns", "gold");
        assert_eq!(
            m.apply("persistentvolumeclaims", Some("ns"), &mut p)
                .unwrap(),
            0
        );
        assert_eq!(p, pvc("a", "ns", "gold"));
        // Ops before the failing test are not kept either.
        let m = json_patch_rule(
            "  - {operation: add, path: /metadata/labels/x, value: y}\n  - {operation: test, path: /spec/missing, value: v}\n",
        );
        let mut p = pvc("a", "ns", "gold");
        assert_eq!(
            m.apply("persistentvolumeclaims", Some("ns"), &mut p)
                .unwrap(),
            0
        );
        assert_eq!(p, pvc("a", "ns", "gold"));
        // A missing parent is an error, not a skip.
        let m = json_patch_rule("  - {operation: test, path: /nope/deeper, value: v}\n");
        let mut p = pvc("a", "ns", "gold");
        assert!(matches!(
            m.apply("persistentvolumeclaims", Some("ns"), &mut p),
            Err(ModifierError::Apply { applied: 0, .. })
        ));
    }

    #[test]
    fn json_patch_failure_keeps_object_and_other_rules() {
        let m = parse(
            "version: v1\nresourceModifierRules:\n- conditions: {groupResource: '**'}\n  patches:\n  - {operation: add, path: /metadata/labels/first, value: '1'}\n  - {operation: replace, path: /spec/nothing/here, value: x}\n- conditions: {groupResource: '**'}\n  patches:\n  - {operation: add, path: /metadata/labels/second, value: '2'}\n",
        );
        let mut p = pvc("a", "ns", "gold");
        match m.apply("persistentvolumeclaims", Some("ns"), &mut p) {
            Err(e @ ModifierError::Apply { .. }) => {
                let ModifierError::Apply { applied, failures } = &e else {
                    unreachable!()
                };
                assert_eq!(*applied, 1);
                assert_eq!(failures.len(), 1);
                assert_eq!(failures[0].rule, 0);
                assert!(
                    failures[0]
                        .reason
                        .contains("patches[1] (replace /spec/nothing/here)"),
                    "{}",
                    failures[0].reason
                );
                assert!(e.to_string().contains("resourceModifierRules[0]"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert!(p.pointer("/metadata/labels/first").is_none());
        assert_eq!(p["metadata"]["labels"]["second"], json!(2));
    }

    // ----- merge patch -----

    #[test]
    fn merge_patch_sets_and_deletes() {
        let m = parse(
            "version: v1\nresourceModifierRules:\n- conditions: {groupResource: pods, namespaces: [ns1]}\n  mergePatches:\n  - patchData: |\n      {\"metadata\": {\"annotations\": {\"foo\": null}}}\n  - patchData: |\n      metadata:\n        labels:\n          foo: null\n          added: 'yes'\n      spec:\n        containers:\n        - name: only\n          image: x\n",
        );
        let mut pod = json!({
            "kind": "Pod",
            "metadata": {"name": "p", "annotations": {"foo": "1", "keep": "2"}, "labels": {"foo": "bar"}},
            "spec": {"containers": [{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]}
        });
        assert_eq!(m.apply("pods", Some("ns1"), &mut pod).unwrap(), 1);
        assert_eq!(pod["metadata"]["annotations"], json!({"keep": "2"}));
        assert_eq!(pod["metadata"]["labels"], json!({"added": "yes"}));
        // Lists are replaced by a merge patch.
        assert_eq!(
            pod["spec"]["containers"],
            json!([{"name": "only", "image": "x"}])
        );
        let mut other = json!({"metadata": {"name": "p"}});
        assert_eq!(m.apply("pods", Some("ns2"), &mut other).unwrap(), 0);
    }

    // ----- strategic merge patch -----

    #[test]
    fn strategic_changes_an_image_by_container_name() {
        let d = smp("spec:\n  template:\n    spec:\n      containers:\n      - name: sidecar\n        image: envoy:2\n", &deployment()).unwrap();
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(container_names(&d), ["nginx", "sidecar"]);
        assert_eq!(c[1], json!({"name": "sidecar", "image": "envoy:2"}));
        assert_eq!(
            c[0],
            deployment()["spec"]["template"]["spec"]["containers"][0]
        );
        // Everything else is untouched.
        let mut expected = deployment();
        expected["spec"]["template"]["spec"]["containers"][1]["image"] = json!("envoy:2");
        assert_eq!(d, expected);
    }

    #[test]
    fn strategic_adds_a_container() {
        // Only a new item: Kubernetes puts it first.
        let d = smp("spec:\n  template:\n    spec:\n      containers:\n      - name: debug\n        image: busybox\n", &deployment()).unwrap();
        assert_eq!(container_names(&d), ["debug", "nginx", "sidecar"]);
        // Existing item then new one: the new one follows the item it follows in the patch.
        let d = smp("spec:\n  template:\n    spec:\n      containers:\n      - name: nginx\n        image: nginx:2\n      - name: debug\n        image: busybox\n", &deployment()).unwrap();
        assert_eq!(container_names(&d), ["nginx", "debug", "sidecar"]);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx:2"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );
    }

    #[test]
    fn strategic_deletes_a_container() {
        let d = smp("spec:\n  template:\n    spec:\n      containers:\n      - name: sidecar\n        $patch: delete\n", &deployment()).unwrap();
        assert_eq!(container_names(&d), ["nginx"]);
        let e = smp(
            "spec:\n  template:\n    spec:\n      containers:\n      - $patch: delete\n",
            &deployment(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("merge key \"name\""), "{e}");
    }

    #[test]
    fn strategic_nested_lists_nulls_and_replace() {
        let d = smp(
            "metadata:\n  labels:\n    app: null\n    tier: web\nspec:\n  replicas: 1\n  template:\n    spec:\n      containers:\n      - name: nginx\n        env:\n        - name: B\n          value: '20'\n        - name: C\n          value: '3'\n        ports:\n        - containerPort: 80\n          name: http\n      tolerations:\n      - key: z\n        operator: Exists\n",
            &deployment(),
        )
        .unwrap();
        assert_eq!(d["metadata"]["labels"], json!({"tier": "web"}));
        assert_eq!(d["spec"]["replicas"], 1);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "20"}, {"name": "C", "value": "3"}])
        );
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80, "protocol": "TCP", "name": "http"}])
        );
        // Lists without a merge key are replaced.
        assert_eq!(
            d["spec"]["template"]["spec"]["tolerations"],
            json!([{"key": "z", "operator": "Exists"}])
        );

        // `$patch: replace` as a list item replaces the list.
        let d = smp("spec:\n  template:\n    spec:\n      containers:\n      - $patch: replace\n      - name: solo\n        image: s\n", &deployment()).unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "solo", "image": "s"}])
        );
        // `$patch: replace` in a map replaces the map; `$patch: delete` empties it.
        let d = smp("spec:\n  selector:\n    $patch: replace\n    matchLabels: {other: x}\n  template:\n    metadata:\n      $patch: delete\n", &deployment()).unwrap();
        assert_eq!(
            d["spec"]["selector"],
            json!({"matchLabels": {"other": "x"}})
        );
        assert_eq!(d["spec"]["template"]["metadata"], json!({}));
        // New subtrees lose their nulls and directives.
        let d = smp("spec:\n  strategy:\n    type: Recreate\n    rollingUpdate: null\n    extra: {$patch: delete}\n", &deployment()).unwrap();
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn strategic_scalar_lists_and_directives() {
        let obj = json!({"kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["a", "b"]}, "data": {"k": "v"}});
        let d = smp("metadata:\n  finalizers: [c, a]\n", &obj).unwrap();
        assert_eq!(d["metadata"]["finalizers"], json!(["c", "a", "b"]));
        let d = smp(
            "metadata:\n  $deleteFromPrimitiveList/finalizers: [a]\n",
            &obj,
        )
        .unwrap();
        assert_eq!(d["metadata"]["finalizers"], json!(["b"]));
        let e = smp("metadata:\n  $retainKeys: [name]\n", &obj).unwrap_err();
        assert!(
            e.to_string()
                .contains("$retainKeys directive is not supported"),
            "{e}"
        );
        let e = smp("$setElementOrder/containers: []\n", &obj).unwrap_err();
        assert!(e.to_string().contains("not supported"), "{e}");
        let e = smp("metadata:\n  $patch: merge\n", &obj).unwrap_err();
        assert!(e.to_string().contains("unsupported $patch"), "{e}");
    }

    #[test]
    fn strategic_kind_specific_fields() {
        let svc = json!({"kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [
            {"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]}});
        let d = smp(
            "spec:\n  ports:\n  - port: 80\n    targetPort: 9090\n",
            &svc,
        )
        .unwrap();
        assert_eq!(
            d["spec"]["ports"][0],
            json!({"name": "http", "port": 80, "targetPort": 9090})
        );
        assert_eq!(d["spec"]["ports"][1]["port"], 443);
        let pdb = json!({"kind": "PodDisruptionBudget", "metadata": {"name": "p"},
            "spec": {"selector": {"matchLabels": {"a": "1"}}, "minAvailable": 1}});
        let d = smp("spec:\n  selector:\n    matchLabels: {b: '2'}\n", &pdb).unwrap();
        assert_eq!(d["spec"]["selector"], json!({"matchLabels": {"b": "2"}}));
        // The same patch merges a Deployment's selector.
        let d = smp(
            "spec:\n  selector:\n    matchLabels: {b: '2'}\n",
            &deployment(),
        )
        .unwrap();
        assert_eq!(
            d["spec"]["selector"],
            json!({"matchLabels": {"app": "web", "b": "2"}})
        );
    }

    #[test]
    fn list_strategy_table() {
        let p = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            list_strategy("Pod", &p(&["spec"]), "containers"),
            ListStrategy::MergeKey("name")
        );
        assert_eq!(
            list_strategy(
                "CronJob",
                &p(&["spec", "jobTemplate", "spec", "template", "spec"]),
                "volumes"
            ),
            ListStrategy::MergeKey("name")
        );
        assert_eq!(
            list_strategy("Pod", &p(&["spec", "containers"]), "volumeMounts"),
            ListStrategy::MergeKey("mountPath")
        );
        assert_eq!(
            list_strategy("Pod", &p(&["spec", "initContainers"]), "ports"),
            ListStrategy::MergeKey("containerPort")
        );
        assert_eq!(
            list_strategy("EndpointSlice", &p(&[]), "ports"),
            ListStrategy::Atomic
        );
        assert_eq!(
            list_strategy("ServiceAccount", &p(&[]), "imagePullSecrets"),
            ListStrategy::Atomic
        );
        assert_eq!(
            list_strategy("ServiceAccount", &p(&[]), "secrets"),
            ListStrategy::MergeKey("name")
        );
        assert_eq!(
            list_strategy("Pod", &p(&["spec"]), "tolerations"),
            ListStrategy::Atomic
        );
        assert_eq!(
            list_strategy("Pod", &p(&["metadata"]), "finalizers"),
            ListStrategy::Set
        );
    }

    // ----- several rules -----

    #[test]
    fn rules_apply_in_order_with_conditions_on_the_original() {
        // Velero's own case: [standard → premium, premium → gold] turns standard into premium.
        let chain = parse(
            "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: persistentvolumeclaims\n    matches: [{path: /spec/storageClassName, value: standard}]\n  patches: [{operation: replace, path: /spec/storageClassName, value: premium}]\n- conditions:\n    groupResource: persistentvolumeclaims\n    matches: [{path: /spec/storageClassName, value: premium}]\n  patches: [{operation: replace, path: /spec/storageClassName, value: gold}]\n",
        );
        let mut p = pvc("a", "ns", "standard");
        assert_eq!(
            chain
                .apply("persistentvolumeclaims", Some("ns"), &mut p)
                .unwrap(),
            1
        );
        assert_eq!(p["spec"]["storageClassName"], "premium");
        // [standard → premium, standard → gold]: both match; the later patch wins.
        let both = parse(
            "version: v1\nresourceModifierRules:\n- conditions:\n    groupResource: persistentvolumeclaims\n    matches: [{path: /spec/storageClassName, value: standard}]\n  patches: [{operation: replace, path: /spec/storageClassName, value: premium}]\n- conditions:\n    groupResource: persistentvolumeclaims\n    matches: [{path: /spec/storageClassName, value: standard}]\n  patches: [{operation: replace, path: /spec/storageClassName, value: gold}]\n",
        );
        let mut p = pvc("a", "ns", "standard");
        assert_eq!(
            both.apply("persistentvolumeclaims", Some("ns"), &mut p)
                .unwrap(),
            2
        );
        assert_eq!(p["spec"]["storageClassName"], "gold");
        // Patches see the previous rules' results; kinds of patch mix across rules.
        let mixed = parse(
            "version: v1\nresourceModifierRules:\n- conditions: {groupResource: deployments.apps}\n  strategicPatches:\n  - patchData: '{\"spec\":{\"template\":{\"spec\":{\"containers\":[{\"name\":\"debug\",\"image\":\"busybox\"}]}}}}'\n- conditions: {groupResource: deployments.apps}\n  patches:\n  - {operation: replace, path: /spec/template/spec/containers/0/image, value: 'busybox:1.36'}\n- conditions: {groupResource: '*'}\n  mergePatches: [{patchData: '{\"metadata\":{\"labels\":{\"core\":\"1\"}}}'}]\n- conditions: {groupResource: '*.apps'}\n  mergePatches: [{patchData: '{\"metadata\":{\"labels\":{\"apps\":\"1\"}}}'}]\n",
        );
        let mut d = deployment();
        assert_eq!(
            mixed
                .apply("deployments.apps", Some("prod"), &mut d)
                .unwrap(),
            3
        );
        assert_eq!(container_names(&d), ["debug", "nginx", "sidecar"]);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox:1.36"
        );
        assert_eq!(d["metadata"]["labels"], json!({"app": "web", "apps": "1"}));
    }
}
