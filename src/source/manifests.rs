//! Reading tidemark manifests out of rendered YAML.
//!
//! Documents are split at `---` so one broken document never hides the others. Only the kinds
//! authored in Git are kept — [`Kind::Location`], [`Kind::BackupPolicy`], [`Kind::Schedule`],
//! [`Kind::RestorePlan`]; Backup and Restore records are ignored with a warning, other
//! Kubernetes objects (and YAML that is no Kubernetes object at all) are ignored.
//!
//! Each tidemark document is checked strictly before anything is sent to a cluster: fields the
//! CRD's OpenAPI schema does not declare are errors (`spec.cronn: unknown field`), and values must
//! deserialize into the typed API (`spec.paused: invalid type: string "yes", expected a
//! boolean`). The API server's strict server-side apply is the final judge (CEL rules); its
//! rejections become [`InvalidManifest`]s too.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use kube::core::ApiResource;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::kustomize::Document;
use crate::api::tidemark::{self, Backup, BackupPolicy, Location, Restore, RestorePlan, Schedule};

/// A kind authored in Git.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An object store.
    Location,
    /// What to back up.
    BackupPolicy,
    /// When to back up.
    Schedule,
    /// A reviewed restore.
    RestorePlan,
}

impl Kind {
    /// Every kind, in apply order (locations before the policies naming them, policies before
    /// the schedules naming them).
    pub const ALL: [Kind; 4] = [
        Kind::Location,
        Kind::BackupPolicy,
        Kind::Schedule,
        Kind::RestorePlan,
    ];

    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Location => "Location",
            Kind::BackupPolicy => "BackupPolicy",
            Kind::Schedule => "Schedule",
            Kind::RestorePlan => "RestorePlan",
        }
    }

    /// The kind named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Its API resource (`tidemark.dev/v1alpha1`).
    pub fn api_resource(self) -> ApiResource {
        match self {
            Kind::Location => ApiResource::erase::<Location>(&()),
            Kind::BackupPolicy => ApiResource::erase::<BackupPolicy>(&()),
            Kind::Schedule => ApiResource::erase::<Schedule>(&()),
            Kind::RestorePlan => ApiResource::erase::<RestorePlan>(&()),
        }
    }

    /// Deserializes `v` into the typed API, naming the field at fault on error.
    fn typed_check(self, v: &Value) -> Result<(), String> {
        fn check<K: DeserializeOwned>(v: &Value) -> Result<(), String> {
            serde_path_to_error::deserialize::<_, K>(v.clone())
                .map(|_| ())
                .map_err(|e| {
                    let path = e.path().to_string();
                    if path == "." {
                        e.inner().to_string()
                    } else {
                        format!("{path}: {}", e.inner())
                    }
                })
        }
        match self {
            Kind::Location => check::<Location>(v),
            Kind::BackupPolicy => check::<BackupPolicy>(v),
            Kind::Schedule => check::<Schedule>(v),
            Kind::RestorePlan => check::<RestorePlan>(v),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid tidemark object from the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// Its kind.
    pub kind: Kind,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, or the default namespace when the manifest has none.
    pub namespace: String,
    /// The object as written (with the namespace filled in, and without `status` and
    /// server-set metadata).
    pub object: Value,
    /// Where it came from (`file:line`).
    pub origin: String,
}

impl Manifest {
    /// `Kind namespace/name`.
    pub fn describe(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A document that should be a tidemark object but is not valid. When its kind and name are
/// known ([`InvalidManifest::identity`]) the object still counts as part of the source (it is
/// not pruned); otherwise nothing may be pruned, because the document could name anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidManifest {
    /// The kind as written (`?` when unreadable).
    pub kind: String,
    /// `metadata.name`, when readable.
    pub name: Option<String>,
    /// The namespace (the default one when the manifest has none), when the name is known.
    pub namespace: Option<String>,
    /// Where it came from (`file:line`).
    pub origin: String,
    /// What is wrong, naming the field.
    pub message: String,
}

impl InvalidManifest {
    /// Kind, namespace and name, when all are known and the kind is one authored in Git.
    pub fn identity(&self) -> Option<(Kind, &str, &str)> {
        Some((
            Kind::parse(&self.kind)?,
            self.namespace.as_deref()?,
            self.name.as_deref()?,
        ))
    }

    /// `Kind namespace/name`, with `?` for what is unknown.
    pub fn describe(&self) -> String {
        format!(
            "{} {}/{}",
            self.kind,
            self.namespace.as_deref().unwrap_or("?"),
            self.name.as_deref().unwrap_or("?")
        )
    }
}

impl fmt::Display for InvalidManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.describe(), self.origin, self.message)
    }
}

impl std::error::Error for InvalidManifest {}

/// One YAML document of a stream, with the line it starts on (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawDocument {
    /// First line of the document's content.
    pub line: usize,
    /// Its text.
    pub text: String,
}

/// Splits a YAML stream into documents at `---` markers (a line starting with `---` followed by
/// nothing or a space; text after the marker belongs to the next document) and `...` end
/// markers. Documents holding only blank lines, comments or directives are dropped.
pub fn split_documents(stream: &str) -> Vec<RawDocument> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    let mut ended = false;
    let flush = |current: &mut String, start: usize, docs: &mut Vec<RawDocument>| {
        let has_content = current.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && !l.starts_with('%')
        });
        if has_content {
            docs.push(RawDocument {
                line: start,
                text: std::mem::take(current),
            });
        }
        current.clear();
    };
    for (i, line) in stream.lines().enumerate() {
        let lineno = i + 1;
        let marker = line
            .strip_prefix("---")
            .filter(|rest| rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t'));
        if let Some(rest) = marker {
            flush(&mut current, start, &mut docs);
            ended = false;
            start = lineno;
            let rest = rest.trim_start();
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
            } else {
                start = lineno + 1;
            }
            continue;
        }
        if line.trim_end() == "..." {
            flush(&mut current, start, &mut docs);
            ended = true;
            start = lineno + 1;
            continue;
        }
        if ended {
            // Between `...` and the next `---` only directives and comments may appear.
            start = lineno + 1;
            continue;
        }
        if current.is_empty() {
            start = lineno;
        }
        current.push_str(line);
        current.push('\n');
    }
    flush(&mut current, start, &mut docs);
    docs
}

/// Metadata the server sets: dropped from manifests (an exported object committed to Git must
/// not carry a stale `resourceVersion` precondition into the apply).
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The fields of `metadata` (ObjectMeta) a manifest may carry.
const OBJECT_META: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "generateName",
    "finalizers",
    "ownerReferences",
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The OpenAPI schema of each tidemark kind, from the generated CRDs.
fn schemas() -> &'static BTreeMap<String, Value> {
    static SCHEMAS: OnceLock<BTreeMap<String, Value>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        tidemark::crds()
            .into_iter()
            .filter_map(|crd| {
                let kind = crd.spec.names.kind.clone();
                let schema = crd
                    .spec
                    .versions
                    .iter()
                    .find(|v| v.name == tidemark::VERSION)?
                    .schema
                    .as_ref()?
                    .open_api_v3_schema
                    .as_ref()?;
                Some((kind, serde_json::to_value(schema).ok()?))
            })
            .collect()
    })
}

/// Appends the paths of fields of `value` that `schema` does not declare.
fn unknown_fields(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            if props.is_none() && additional.is_none() {
                return; // an untyped object (e.g. `metadata` in a CRD schema): not checked here
            }
            for (k, v) in map {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match (props.and_then(|p| p.get(k)), additional) {
                    (Some(s), _) => unknown_fields(v, s, &join(k), out),
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(s @ Value::Object(_))) => unknown_fields(v, s, &join(k), out),
                    (None, _) => out.push(join(k)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(v, s, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// What a document turned out to be.
enum Parsed {
    Manifest(Box<Manifest>),
    Invalid(InvalidManifest),
    /// Not a tidemark object authored in Git; the reason is logged.
    Ignored,
}

fn string_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Best-effort `apiVersion`, `kind`, `metadata.name` and `metadata.namespace` of a document
/// that is not valid YAML, from its top-level lines.
fn salvage_identity(
    text: &str,
) -> (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
) {
    let clean = |s: &str| {
        let s = s.split(" #").next().unwrap_or(s).trim();
        let s = s.trim_matches(|c| c == '"' || c == '\'');
        (!s.is_empty()).then(|| s.to_string())
    };
    let (mut api_version, mut kind, mut name, mut namespace) = (None, None, None, None);
    let mut in_metadata = false;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("apiVersion:") {
            api_version = clean(v);
        } else if let Some(v) = line.strip_prefix("kind:") {
            kind = clean(v);
        } else if line.starts_with("metadata:") {
            in_metadata = true;
        } else if in_metadata && line.starts_with([' ', '\t']) {
            let t = line.trim_start();
            if let Some(v) = t.strip_prefix("name:") {
                name = name.or_else(|| clean(v));
            } else if let Some(v) = t.strip_prefix("namespace:") {
                namespace = namespace.or_else(|| clean(v));
            }
        } else if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
            in_metadata = false;
        }
    }
    (api_version, kind, name, namespace)
}

fn is_tidemark_api(api_version: &str) -> bool {
    api_version.split('/').next() == Some(tidemark::GROUP)
}

fn parse_document(text: &str, origin: &str, default_namespace: &str) -> Parsed {
    let value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let (api_version, kind, name, namespace) = salvage_identity(text);
            let ours = api_version.as_deref().is_some_and(is_tidemark_api)
                || kind.as_deref().and_then(Kind::parse).is_some();
            let known_other = api_version.is_some() && kind.is_some() && !ours;
            if known_other {
                tracing::warn!(origin, "ignoring a document that is not valid YAML: {e}");
                return Parsed::Ignored;
            }
            return Parsed::Invalid(InvalidManifest {
                kind: kind.unwrap_or_else(|| "?".into()),
                namespace: name
                    .as_ref()
                    .map(|_| namespace.unwrap_or_else(|| default_namespace.to_string())),
                name,
                origin: origin.to_string(),
                message: format!("not valid YAML: {e}"),
            });
        }
    };
    if value.is_null() {
        return Parsed::Ignored;
    }
    let api_version = string_at(&value, "/apiVersion").map(str::to_string);
    let kind_str = string_at(&value, "/kind").map(str::to_string);
    let name = string_at(&value, "/metadata/name").map(str::to_string);
    let namespace = string_at(&value, "/metadata/namespace")
        .filter(|n| !n.is_empty())
        .unwrap_or(default_namespace)
        .to_string();
    let ours_by_api = api_version.as_deref().is_some_and(is_tidemark_api);
    let kind = kind_str.as_deref().and_then(Kind::parse);
    if !ours_by_api && kind.is_none() {
        if api_version.is_none() && kind_str.is_none() {
            tracing::debug!(origin, "ignoring YAML that is no Kubernetes object");
        } else {
            tracing::debug!(origin, kind = ?kind_str, "ignoring a non-tidemark object");
        }
        return Parsed::Ignored;
    }
    let invalid = |message: String| {
        Parsed::Invalid(InvalidManifest {
            kind: kind_str.clone().unwrap_or_else(|| "?".into()),
            namespace: name.as_ref().map(|_| namespace.clone()),
            name: name.clone(),
            origin: origin.to_string(),
            message,
        })
    };
    let Some(kind) = kind else {
        return match kind_str.as_deref() {
            Some(k) if is_record_kind(k) => {
                tracing::warn!(
                    origin,
                    "ignoring a {k}: Backup and Restore records are created by tidemark, not \
                     authored in Git (use a Schedule or a RestorePlan)"
                );
                Parsed::Ignored
            }
            Some(k) => invalid(format!(
                "kind: {k:?} is not a tidemark kind authored in Git (Location, BackupPolicy, \
                 Schedule, RestorePlan)"
            )),
            None => invalid("kind: missing".into()),
        };
    };
    let expected = format!("{}/{}", tidemark::GROUP, tidemark::VERSION);
    match api_version.as_deref() {
        Some(a) if a == expected => {}
        Some(a) => return invalid(format!("apiVersion: {a:?} is not served (use {expected})")),
        None => return invalid(format!("apiVersion: missing (use {expected})")),
    }
    let Some(name) = name.clone().filter(|n| !n.is_empty()) else {
        return invalid(if value.pointer("/metadata/generateName").is_some() {
            "metadata.name: missing (generateName cannot be used with server-side apply)".into()
        } else {
            "metadata.name: missing".into()
        });
    };
    let mut object = value;
    if let Some(o) = object.as_object_mut() {
        o.remove("status");
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in SERVER_METADATA {
            meta.remove(*k);
        }
        meta.insert("namespace".into(), Value::String(namespace.clone()));
    }
    let mut problems = Vec::new();
    match object.get("metadata") {
        Some(Value::Object(meta)) => problems.extend(
            meta.keys()
                .filter(|k| !OBJECT_META.contains(&k.as_str()))
                .map(|k| format!("metadata.{k}: unknown field")),
        ),
        _ => problems.push("metadata: must be a mapping".into()),
    }
    if let Some(schema) = schemas().get(kind.as_str()) {
        let mut unknown = Vec::new();
        unknown_fields(&object, schema, "", &mut unknown);
        problems.extend(unknown.into_iter().map(|p| format!("{p}: unknown field")));
    }
    if let Err(e) = kind.typed_check(&object) {
        problems.push(e);
    }
    if !problems.is_empty() {
        return invalid(problems.join("; "));
    }
    Parsed::Manifest(Box::new(Manifest {
        kind,
        name,
        namespace,
        object,
        origin: origin.to_string(),
    }))
}

/// Parses one YAML stream. See [`parse`].
pub fn parse_str(
    stream: &str,
    origin: &str,
    default_namespace: &str,
) -> Vec<Result<Manifest, InvalidManifest>> {
    parse(
        &[Document {
            origin: origin.to_string(),
            text: stream.to_string(),
        }],
        default_namespace,
    )
}

/// Parses every tidemark document of `documents`; namespaced objects without a namespace go to
/// `default_namespace`. Each document stands alone: an invalid one yields an
/// [`InvalidManifest`] and the others are still returned. An object defined twice is invalid
/// the second time.
pub fn parse(
    documents: &[Document],
    default_namespace: &str,
) -> Vec<Result<Manifest, InvalidManifest>> {
    let mut out: Vec<Result<Manifest, InvalidManifest>> = Vec::new();
    let mut seen: BTreeMap<(Kind, String, String), String> = BTreeMap::new();
    for doc in documents {
        for raw in split_documents(&doc.text) {
            let origin = format!("{}:{}", doc.origin, raw.line);
            match parse_document(&raw.text, &origin, default_namespace) {
                Parsed::Ignored => {}
                Parsed::Invalid(i) => out.push(Err(i)),
                Parsed::Manifest(m) => {
                    let key = (m.kind, m.namespace.clone(), m.name.clone());
                    if let Some(first) = seen.get(&key) {
                        out.push(Err(InvalidManifest {
                            kind: m.kind.to_string(),
                            name: Some(m.name.clone()),
                            namespace: Some(m.namespace.clone()),
                            origin: m.origin.clone(),
                            message: format!("defined twice (first at {first})"),
                        }));
                    } else {
                        seen.insert(key, m.origin.clone());
                        out.push(Ok(*m));
                    }
                }
            }
        }
    }
    out
}

/// Whether `kind` names a tidemark record (Backup, Restore) rather than an authored kind.
pub fn is_record_kind(kind: &str) -> bool {
    use kube::Resource;
    kind == Backup::kind(&()) || kind == Restore::kind(&())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_documents() {
        let s = "# header comment\n---\na: 1\n---\n\n---   # empty\nb: |\n  text\n  --- not a marker\nc: 2\n--- d: 3\n...\n# after end\n---\ne: 5\n";
        let docs = split_documents(s);
        let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "a: 1\n",
                "b: |\n  text\n  --- not a marker\nc: 2\n",
                "d: 3\n",
                "e: 5\n"
            ]
        );
        let lines: Vec<usize> = docs.iter().map(|d| d.line).collect();
        assert_eq!(lines, [3, 7, 11, 15]);
        // No markers at all: one document; `----` is not a marker.
        assert_eq!(split_documents("a: 1\nb: ----\n").len(), 1);
        assert_eq!(split_documents("----\n").len(), 1);
        assert!(split_documents("").is_empty());
        assert!(split_documents("---\n# only a comment\n---\n").is_empty());
        // CRLF files split too.
        assert_eq!(split_documents("a: 1\r\n---\r\nb: 2\r\n").len(), 2);
    }

    const SCHEDULE: &str = "apiVersion: tidemark.dev/v1alpha1
kind: Schedule
metadata:
  name: nightly
spec:
  schedule: \"0 1 * * *\"
  policy: daily
";

    #[test]
    fn valid_manifests_get_the_default_namespace() {
        let r = parse_str(SCHEDULE, "s.yaml", "tidemark");
        assert_eq!(r.len(), 1);
        let m = r[0].as_ref().unwrap();
        assert_eq!(m.kind, Kind::Schedule);
        assert_eq!(m.describe(), "Schedule tidemark/nightly");
        assert_eq!(m.origin, "s.yaml:1");
        assert_eq!(m.object["metadata"]["namespace"], "tidemark");
        let with_ns = SCHEDULE.replace("name: nightly", "name: nightly\n  namespace: other");
        let r = parse_str(&with_ns, "s.yaml", "tidemark");
        assert_eq!(r[0].as_ref().unwrap().namespace, "other");
    }

    #[test]
    fn unknown_fields_and_bad_values_name_the_field() {
        let bad = format!(
            "{SCHEDULE}  cronn: x\n  template:\n    ttl: 1h\n    includedNamespacez: [a]\n"
        );
        let r = parse_str(&bad, "s.yaml", "ns");
        let e = r[0].as_ref().unwrap_err();
        assert_eq!(e.identity(), Some((Kind::Schedule, "ns", "nightly")));
        assert!(e.message.contains("spec.cronn: unknown field"), "{e}");
        assert!(
            e.message
                .contains("spec.template.includedNamespacez: unknown field"),
            "{e}"
        );
        let bad = SCHEDULE.replace("  policy: daily\n", "  policy: daily\n  paused: \"yes\"\n");
        let e = parse_str(&bad, "s.yaml", "ns").remove(0).unwrap_err();
        assert!(e.message.starts_with("spec.paused: invalid type"), "{e}");
        let bad = "apiVersion: tidemark.dev/v1alpha1\nkind: Location\nmetadata: {name: l}\nspec: {bucket: b, provider: ftp}\n";
        let e = parse_str(bad, "l.yaml", "ns").remove(0).unwrap_err();
        assert!(
            e.message.starts_with("spec.provider: unknown variant"),
            "{e}"
        );
        // Maps declared with additionalProperties accept any key.
        let ok = "apiVersion: tidemark.dev/v1alpha1\nkind: Location\nmetadata: {name: l}\nspec: {bucket: b, config: {region: x, anything: y}}\n";
        assert!(parse_str(ok, "l.yaml", "ns")[0].is_ok());
        let meta = SCHEDULE.replace("  name: nightly\n", "  name: nightly\n  labelz: {a: b}\n");
        let e = parse_str(&meta, "s.yaml", "ns").remove(0).unwrap_err();
        assert_eq!(e.message, "metadata.labelz: unknown field");
        let missing = "apiVersion: tidemark.dev/v1alpha1\nkind: Schedule\nmetadata: {name: s}\nspec: {policy: p}\n";
        let e = parse_str(missing, "s.yaml", "ns").remove(0).unwrap_err();
        assert!(e.message.contains("spec: missing field `schedule`"), "{e}");
    }

    #[test]
    fn one_broken_document_does_not_hide_the_others() {
        let stream = format!(
            "{SCHEDULE}---\napiVersion: tidemark.dev/v1alpha1\nkind: BackupPolicy\nmetadata:\n  name: broken\nspec: [unclosed\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\napiVersion: tidemark.dev/v1alpha1\nkind: Backup\nmetadata: {{name: b}}\nspec: {{}}\n---\nsome: [other, yaml]\n---\n{}",
            SCHEDULE.replace("nightly", "weekly")
        );
        let r = parse_str(&stream, "all.yaml", "ns");
        assert_eq!(r.len(), 3, "{r:#?}");
        assert_eq!(r[0].as_ref().unwrap().name, "nightly");
        let e = r[1].as_ref().unwrap_err();
        assert_eq!(e.identity(), Some((Kind::BackupPolicy, "ns", "broken")));
        assert!(e.message.starts_with("not valid YAML"), "{e}");
        assert_eq!(e.origin, "all.yaml:9");
        assert_eq!(r[2].as_ref().unwrap().name, "weekly");
    }

    #[test]
    fn unreadable_and_unknown_documents() {
        // Nothing identifies it: invalid with unknown identity.
        let r = parse_str("a: [\n", "x.yaml", "ns");
        assert!(r[0].as_ref().unwrap_err().identity().is_none());
        // Broken YAML of another kind is not ours.
        assert!(parse_str("apiVersion: v1\nkind: ConfigMap\ndata: [\n", "x.yaml", "ns").is_empty());
        let r = parse_str(
            "apiVersion: tidemark.dev/v1alpha1\nkind: Frobnicator\nmetadata: {name: f}\n",
            "x.yaml",
            "ns",
        );
        assert!(
            r[0].as_ref()
                .unwrap_err()
                .message
                .contains("not a tidemark kind")
        );
        let r = parse_str(&SCHEDULE.replace("v1alpha1", "v1beta9"), "x.yaml", "ns");
        assert!(r[0].as_ref().unwrap_err().message.contains("apiVersion"));
        let r = parse_str(
            &SCHEDULE.replace("name: nightly", "generateName: n-"),
            "x.yaml",
            "ns",
        );
        assert!(r[0].as_ref().unwrap_err().message.contains("generateName"));
    }

    #[test]
    fn duplicates_and_server_fields() {
        let exported = SCHEDULE.replace(
            "name: nightly",
            "name: nightly\n  resourceVersion: \"12\"\n  uid: x",
        ) + "status:\n  phase: Enabled\n";
        let stream = format!("{exported}---\n{SCHEDULE}");
        let r = parse_str(&stream, "d.yaml", "ns");
        let m = r[0].as_ref().unwrap();
        assert!(m.object.get("status").is_none());
        assert!(m.object["metadata"].get("resourceVersion").is_none());
        let e = r[1].as_ref().unwrap_err();
        assert!(
            e.message.contains("defined twice (first at d.yaml:1)"),
            "{e}"
        );
    }

    #[test]
    fn record_kinds() {
        assert!(is_record_kind("Backup") && is_record_kind("Restore"));
        assert!(!is_record_kind("Schedule"));
    }
}
