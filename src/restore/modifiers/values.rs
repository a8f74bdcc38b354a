//! Values and JSON pointers: YAML to JSON as `sigs.k8s.io/yaml` converts it, Velero's decoding of
//! `value` fields, and the JSON-patch operations with evanphx/json-patch's outcomes.

use serde_json::{Map, Value};

use super::*;

/// Converts YAML to JSON the way `sigs.k8s.io/yaml` does for documents made of plain data:
/// scalar keys become strings.
pub(super) fn yaml_to_json(v: serde_yaml::Value) -> Result<Value, String> {
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

pub(super) fn yaml_number(n: &serde_yaml::Number) -> Result<Value, String> {
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
pub(super) fn velero_value(v: Option<serde_yaml::Value>) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    match v {
        None | Some(Y::Null) => Ok(Value::String(String::new())),
        Some(Y::String(s)) => text_value(&s),
        Some(other) => yaml_to_json(other),
    }
}

pub(super) fn text_value(s: &str) -> Result<Value, String> {
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
pub(super) fn spliced_string(s: &str) -> Value {
    let decoded =
        serde_json::from_str::<String>(&format!("\"{s}\"")).unwrap_or_else(|_| s.to_string());
    Value::String(decoded)
}

/// Splits an RFC 6901 pointer into unescaped tokens.
pub(super) fn parse_pointer(p: &str) -> Result<Vec<String>, String> {
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
pub(super) fn go_index(token: &str) -> Option<i64> {
    token.parse::<i64>().ok()
}

pub(super) enum Test {
    Pass,
    Failed,
    Missing,
    Error(String),
}

/// A JSON-patch `test`, with evanphx/json-patch's outcomes: a different value or an absent key
/// fails the test; a missing or non-container parent is "missing"; a bad array index is an error.
pub(super) fn test_value(doc: &Value, path: &[String], expected: &Value) -> Test {
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

pub(super) fn array_get(a: &[Value], i: i64) -> Option<&Value> {
    let len = i64::try_from(a.len()).ok()?;
    let i = if i < 0 { i + len } else { i };
    usize::try_from(i).ok().and_then(|i| a.get(i))
}

/// Rewrites array indices in `path` for the `json-patch` crate: negative indices count from the
/// end (evanphx/json-patch's extension; for an insertion the end is one past the last item) and
/// numbers are written canonically.
pub(super) fn resolve_indices(doc: &Value, path: &[String], insert: bool) -> Vec<String> {
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

pub(super) fn pointer(tokens: &[String]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter())
}

pub(super) enum OpError {
    TestFailed,
    Failed(String),
}

pub(super) fn apply_op(doc: &mut Value, op: &JsonOp) -> Result<(), OpError> {
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
    pub(super) fn apply(&self, obj: &mut Value) -> Result<bool, String> {
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
