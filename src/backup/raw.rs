//! Objects as the API server sent them: a LIST page is split into its items without decoding
//! them into trees, only the few fields a backup decides on (name, namespace, labels, deletion,
//! a PVC's volume) are read, and each item's bytes go to the archive unchanged apart from the
//! `apiVersion`/`kind` the API server leaves out of the items of built-in lists.
//!
//! This is what keeps a backup close to the API server's own listing speed: no object is parsed
//! into a `serde_json::Value` and encoded again.
//! Source for the list shape: Kubernetes API conventions, "Lists and Simple kinds"
//! (<https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md#lists-and-simple-kinds>).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One LIST response page: its continue token and its items, still as raw JSON borrowed from the
/// response text.
#[derive(Deserialize)]
pub struct RawList<'a> {
    /// `metadata.continue`, when more pages follow.
    #[serde(default)]
    pub metadata: RawListMeta,
    /// The items, unparsed.
    #[serde(default, borrow)]
    pub items: Vec<&'a RawValue>,
}

/// The part of a list's `metadata` a lister needs.
#[derive(Deserialize, Default)]
pub struct RawListMeta {
    /// The continue token (`None` or empty on the last page).
    #[serde(default, rename = "continue")]
    pub continue_: Option<String>,
}

/// The fields of an item a backup decides on.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: HeadMeta,
    #[serde(default)]
    spec: Option<HeadSpec>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct HeadMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generate_name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    deletion_timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct HeadSpec {
    /// A PersistentVolumeClaim's bound volume (other kinds: absent or not a string).
    #[serde(default, deserialize_with = "string_or_none")]
    volume_name: Option<String>,
}

/// Accepts a string or anything else (a custom resource's `spec.volumeName` may be any shape).
fn string_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// One object ready for filtering and the archive.
#[derive(Debug, Clone, PartialEq)]
pub struct RawItem {
    /// `metadata.name` (or `generateName` when the name is missing, as kube's `name_any`).
    pub name: String,
    /// `metadata.namespace`; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `spec.volumeName` when it is a non-empty string (the PV a PVC is bound to).
    pub volume_name: Option<String>,
    /// The object's JSON, with `apiVersion` and `kind` present.
    pub json: Vec<u8>,
}

impl RawItem {
    /// Reads one item's head and makes its archive bytes: the item unchanged when it carries
    /// `apiVersion` and `kind`, else with `"apiVersion":api_version,"kind":kind` put first.
    ///
    /// # Errors
    /// The JSON error when the item is not a JSON object of the Kubernetes object shape.
    pub fn parse(raw: &str, api_version: &str, kind: &str) -> Result<RawItem, serde_json::Error> {
        if !raw.trim_start().starts_with('{') {
            return Err(serde::de::Error::custom("an item is not a JSON object"));
        }
        let head: Head = serde_json::from_str(raw)?;
        let typed = head.api_version.as_deref().is_some_and(|v| !v.is_empty())
            && head.kind.as_deref().is_some_and(|k| !k.is_empty());
        let json = if typed {
            raw.as_bytes().to_vec()
        } else {
            // `from_str` into a struct succeeded, so `raw` is a JSON object: `{` then members.
            let body = raw.trim_start();
            let rest = body[1..].trim_start();
            let prefix = format!(
                "{{\"apiVersion\":{},\"kind\":{}",
                serde_json::to_string(api_version)?,
                serde_json::to_string(kind)?
            );
            let mut out = Vec::with_capacity(prefix.len() + raw.len() + 1);
            out.extend_from_slice(prefix.as_bytes());
            if !rest.starts_with('}') {
                out.push(b',');
            }
            out.extend_from_slice(rest.as_bytes());
            out
        };
        let meta = head.metadata;
        Ok(RawItem {
            name: meta.name.or(meta.generate_name).unwrap_or_default(),
            namespace: meta.namespace.filter(|n| !n.is_empty()),
            labels: meta.labels.unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
            volume_name: head
                .spec
                .and_then(|s| s.volume_name)
                .filter(|v| !v.is_empty()),
            json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_page_is_split_without_decoding_items() {
        let text = r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9","continue":"abc"},"items":[{"metadata":{"name":"a","namespace":"n"},"data":{"k":"v"}},{"metadata":{"name":"b","namespace":"n"}}]}"#;
        let page: RawList = serde_json::from_str(text).unwrap();
        assert_eq!(page.metadata.continue_.as_deref(), Some("abc"));
        assert_eq!(page.items.len(), 2);
        assert_eq!(
            page.items[0].get(),
            r#"{"metadata":{"name":"a","namespace":"n"},"data":{"k":"v"}}"#
        );
        let last: RawList = serde_json::from_str(r#"{"metadata":{},"items":[]}"#).unwrap();
        assert!(last.metadata.continue_.is_none() && last.items.is_empty());
        let null_items: RawList = serde_json::from_str(r#"{"metadata":{}}"#).unwrap();
        assert!(null_items.items.is_empty());
    }

    #[test]
    fn built_in_items_get_api_version_and_kind_first() {
        let raw =
            r#"{"metadata":{"name":"a","namespace":"n","labels":{"app":"x"}},"data":{"k":"v"}}"#;
        let item = RawItem::parse(raw, "v1", "ConfigMap").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&item.json).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "ConfigMap");
        assert_eq!(v["data"]["k"], "v");
        assert!(
            std::str::from_utf8(&item.json)
                .unwrap()
                .starts_with(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata""#)
        );
        assert_eq!(item.name, "a");
        assert_eq!(item.namespace.as_deref(), Some("n"));
        assert_eq!(item.labels.get("app").map(String::as_str), Some("x"));
        assert!(!item.deleting);
        // An empty object still becomes valid JSON.
        let empty = RawItem::parse(" { } ", "v1", "Thing").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&empty.json).unwrap();
        assert_eq!(v, serde_json::json!({"apiVersion": "v1", "kind": "Thing"}));
    }

    #[test]
    fn typed_items_pass_through_byte_for_byte() {
        let raw = r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","deletionTimestamp":"2026-01-01T00:00:00Z"},"spec":{"volumeName":{"odd":1}}}"#;
        let item = RawItem::parse(raw, "example.com/v1", "Widget").unwrap();
        assert_eq!(item.json, raw.as_bytes());
        assert!(item.deleting);
        assert_eq!(item.namespace, None);
        assert_eq!(item.volume_name, None);
    }

    #[test]
    fn pvc_volume_name_is_read() {
        let raw = r#"{"metadata":{"name":"data","namespace":"db"},"spec":{"volumeName":"pv-1","accessModes":["ReadWriteOnce"]}}"#;
        let item = RawItem::parse(raw, "v1", "PersistentVolumeClaim").unwrap();
        assert_eq!(item.volume_name.as_deref(), Some("pv-1"));
        let unbound = RawItem::parse(
            r#"{"metadata":{"name":"d","namespace":"db"},"spec":{"volumeName":""}}"#,
            "v1",
            "PersistentVolumeClaim",
        )
        .unwrap();
        assert_eq!(unbound.volume_name, None);
    }

    #[test]
    fn non_objects_are_errors() {
        assert!(RawItem::parse("[1,2]", "v1", "ConfigMap").is_err());
        assert!(RawItem::parse("[]", "v1", "ConfigMap").is_err());
        assert!(RawItem::parse("\"x\"", "v1", "ConfigMap").is_err());
        assert!(RawItem::parse("{\"metadata\":", "v1", "ConfigMap").is_err());
    }
}
