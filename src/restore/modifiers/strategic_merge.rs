//! The strategic merge patch of resource modifiers (the subset the module documentation
//! describes): list strategies by kind and field, directives, merged-list order.

use serde_json::{Map, Value};

pub(super) const DIRECTIVE: &str = "$patch";
pub(super) const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
pub(super) const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
pub(super) const RETAIN_KEYS: &str = "$retainKeys";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListStrategy {
    /// Replaced by the patch's list.
    Atomic,
    /// Items merged by this key.
    MergeKey(&'static str),
    /// Scalars merged as a set.
    Set,
}

pub(super) const CONTAINER_LISTS: &[&str] =
    &["containers", "initContainers", "ephemeralContainers"];

/// The merge strategy of list `field` in the map at `path` (map keys from the object's root; a
/// list item's path ends with the list's field name) of an object of `kind`.
pub(super) fn list_strategy(kind: &str, path: &[String], field: &str) -> ListStrategy {
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
pub(super) fn map_is_atomic(kind: &str, path: &[String], field: &str) -> bool {
    kind == "PodDisruptionBudget" && field == "selector" && path.len() == 1 && path[0] == "spec"
}

pub(super) fn at(path: &[String], field: &str) -> String {
    let mut s = path.join(".");
    if !s.is_empty() {
        s.push('.');
    }
    s.push_str(field);
    s
}

/// Drops `null` members of maps, recursively (Kubernetes does this to values that are added).
pub(super) fn drop_nulls(v: &mut Value) {
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
pub(super) fn strip_directives(v: Value) -> Option<Value> {
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
pub(super) fn added_value(mut v: Value) -> Option<Value> {
    drop_nulls(&mut v);
    strip_directives(v)
}

pub(super) fn here(path: &[String]) -> String {
    if path.is_empty() {
        "the object".to_string()
    } else {
        path.join(".")
    }
}

pub(super) fn smp_map(
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

pub(super) fn delete_from_primitive_list(
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

pub(super) fn json_type(v: &Value) -> u8 {
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
pub(super) fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

pub(super) fn position(list: &[Value], id: &Value) -> Option<usize> {
    list.iter().position(|x| same_key(x, id))
}

pub(super) fn smp_list(
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
pub(super) fn order_merged(
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
