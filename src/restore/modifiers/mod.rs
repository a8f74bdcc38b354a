//! Restore resource modifiers: Velero's `--resource-modifier-configmap` rules, parsed and applied
//! to each object just before it is created (DESIGN §5). Pure: no I/O.
//!
//! This module owns the rules' compiled form and their matching; the document's serde shapes are
//! in `document.rs`, value decoding, pointers and JSON patches in `values.rs`, the strategic
//! merge patch in `strategic_merge.rs`, gobwas-style globs in `glob.rs`.
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

mod document;
mod glob;
mod strategic_merge;
mod values;

use document::*;
use glob::*;
use strategic_merge::*;
use values::*;

#[cfg(test)]
mod tests;
