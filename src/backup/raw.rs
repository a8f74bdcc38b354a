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
use std::ops::Range;

use bytes::Bytes;
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

impl RawList<'_> {
    /// Splits a LIST response into its continue token (`None` when empty or absent) and the byte
    /// ranges of its items within `text`, so that the text can then be shared by the items
    /// without copying ([`RawItem::parse`]).
    ///
    /// # Errors
    /// The JSON error when `text` is not a list.
    pub fn split(text: &str) -> Result<(Option<String>, Vec<Range<usize>>), serde_json::Error> {
        let page: RawList = serde_json::from_str(text)?;
        let base = text.as_ptr() as usize;
        let ranges = page
            .items
            .iter()
            .map(|raw| {
                let start = (raw.get().as_ptr() as usize).wrapping_sub(base);
                start..start + raw.get().len()
            })
            .collect();
        let token = page.metadata.continue_.filter(|t| !t.is_empty());
        Ok((token, ranges))
    }
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

/// The `apiVersion` and `kind` of one resource, and the JSON put before the members of its
/// items when the API server left them out (built-in lists do), made once per resource.
#[derive(Debug, Clone)]
pub struct TypeHead {
    /// `{"apiVersion":"<v>","kind":"<K>",`
    open: Bytes,
    /// The same without the comma, for an object with no members.
    open_empty: Bytes,
}

impl TypeHead {
    /// The head for items of `api_version` (`v1`, `apps/v1`) and `kind` (`ConfigMap`).
    pub fn new(api_version: &str, kind: &str) -> Self {
        // JSON string literals of both (serialising a &str cannot fail).
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        let bare = format!(
            "{{\"apiVersion\":{},\"kind\":{}",
            quoted(api_version),
            quoted(kind)
        );
        Self {
            open: Bytes::from(format!("{bare},")),
            open_empty: Bytes::from(bare),
        }
    }
}

/// An object's JSON as it goes into the archive, in two parts so that the API server's bytes are
/// not copied: `head` (empty, or the spliced `{"apiVersion":…,"kind":…,` of a [`TypeHead`])
/// followed by `body` (a slice of the response it came in).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ItemJson {
    /// Bytes before the body (shared by every item of a resource).
    pub head: Bytes,
    /// The rest of the object, a slice of the response.
    pub body: Bytes,
}

impl ItemJson {
    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// Whether both parts are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
    pub json: ItemJson,
}

fn not_an_object() -> serde_json::Error {
    serde::de::Error::custom("an item is not a JSON object")
}

impl RawItem {
    /// Reads the head of the item at `range` of `page` and makes its archive bytes: the item
    /// unchanged when it carries `apiVersion` and `kind`, else with `type_head` put first. The
    /// bytes are shared with `page`, not copied.
    ///
    /// # Errors
    /// The JSON error when the item is not a JSON object of the Kubernetes object shape, or when
    /// `range` is not within `page`.
    pub fn parse(
        page: &Bytes,
        range: Range<usize>,
        type_head: &TypeHead,
    ) -> Result<RawItem, serde_json::Error> {
        let raw = page.get(range.clone()).ok_or_else(not_an_object)?;
        let open = raw
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .ok_or_else(not_an_object)?;
        if raw[open] != b'{' {
            return Err(not_an_object());
        }
        let head: Head = serde_json::from_slice(raw)?;
        let typed = head.api_version.as_deref().is_some_and(|v| !v.is_empty())
            && head.kind.as_deref().is_some_and(|k| !k.is_empty());
        let json = if typed {
            ItemJson {
                head: Bytes::new(),
                body: page.slice(range),
            }
        } else {
            // `from_slice` into a struct succeeded, so `raw` is a JSON object: `{`, then members
            // or `}`.
            let members = raw[open + 1..]
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .map_or(raw.len(), |p| open + 1 + p);
            let empty = raw.get(members) == Some(&b'}');
            ItemJson {
                head: if empty {
                    type_head.open_empty.clone()
                } else {
                    type_head.open.clone()
                },
                body: page.slice(range.start + members..range.end),
            }
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

    impl ItemJson {
        /// The JSON as one buffer.
        fn joined(&self) -> Vec<u8> {
            [&self.head[..], &self.body[..]].concat()
        }
    }

    /// Parses a whole text as one item (as a GET of one object).
    fn parse_one(raw: &str, api_version: &str, kind: &str) -> Result<RawItem, serde_json::Error> {
        let page = Bytes::copy_from_slice(raw.as_bytes());
        RawItem::parse(&page, 0..raw.len(), &TypeHead::new(api_version, kind))
    }

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
        // The same split as ranges of the text; items parsed from the shared page.
        let (token, ranges) = RawList::split(text).unwrap();
        assert_eq!(token.as_deref(), Some("abc"));
        assert_eq!(
            &text[ranges[1].clone()],
            r#"{"metadata":{"name":"b","namespace":"n"}}"#
        );
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        let head = TypeHead::new("v1", "ConfigMap");
        let items: Vec<RawItem> = ranges
            .into_iter()
            .map(|r| RawItem::parse(&bytes, r, &head).unwrap())
            .collect();
        assert_eq!(items[0].name, "a");
        assert_eq!(
            items[1].json.joined(),
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"n"}}"#
        );
        assert_eq!(
            RawList::split(r#"{"metadata":{"continue":""}}"#).unwrap().0,
            None
        );
        // A range outside the page is an error, not a panic.
        assert!(RawItem::parse(&bytes, 0..text.len() + 1, &head).is_err());
        let last: RawList = serde_json::from_str(r#"{"metadata":{},"items":[]}"#).unwrap();
        assert!(last.metadata.continue_.is_none() && last.items.is_empty());
        let null_items: RawList = serde_json::from_str(r#"{"metadata":{}}"#).unwrap();
        assert!(null_items.items.is_empty());
    }

    #[test]
    fn built_in_items_get_api_version_and_kind_first() {
        let raw =
            r#"{"metadata":{"name":"a","namespace":"n","labels":{"app":"x"}},"data":{"k":"v"}}"#;
        let item = parse_one(raw, "v1", "ConfigMap").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&item.json.joined()).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "ConfigMap");
        assert_eq!(v["data"]["k"], "v");
        assert!(
            std::str::from_utf8(&item.json.joined())
                .unwrap()
                .starts_with(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata""#)
        );
        assert_eq!(item.name, "a");
        assert_eq!(item.namespace.as_deref(), Some("n"));
        assert_eq!(item.labels.get("app").map(String::as_str), Some("x"));
        assert!(!item.deleting);
        // An empty object still becomes valid JSON.
        let empty = parse_one(" { } ", "v1", "Thing").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&empty.json.joined()).unwrap();
        assert_eq!(v, serde_json::json!({"apiVersion": "v1", "kind": "Thing"}));
    }

    #[test]
    fn typed_items_pass_through_byte_for_byte() {
        let raw = r#"{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","deletionTimestamp":"2026-01-01T00:00:00Z"},"spec":{"volumeName":{"odd":1}}}"#;
        let item = parse_one(raw, "example.com/v1", "Widget").unwrap();
        assert_eq!(item.json.joined(), raw.as_bytes());
        assert!(item.json.head.is_empty());
        assert!(item.deleting);
        assert_eq!(item.namespace, None);
        assert_eq!(item.volume_name, None);
    }

    #[test]
    fn pvc_volume_name_is_read() {
        let raw = r#"{"metadata":{"name":"data","namespace":"db"},"spec":{"volumeName":"pv-1","accessModes":["ReadWriteOnce"]}}"#;
        let item = parse_one(raw, "v1", "PersistentVolumeClaim").unwrap();
        assert_eq!(item.volume_name.as_deref(), Some("pv-1"));
        let unbound = parse_one(
            r#"{"metadata":{"name":"d","namespace":"db"},"spec":{"volumeName":""}}"#,
            "v1",
            "PersistentVolumeClaim",
        )
        .unwrap();
        assert_eq!(unbound.volume_name, None);
    }

    #[test]
    fn non_objects_are_errors() {
        assert!(parse_one("[1,2]", "v1", "ConfigMap").is_err());
        assert!(parse_one("[]", "v1", "ConfigMap").is_err());
        assert!(parse_one("\"x\"", "v1", "ConfigMap").is_err());
        assert!(parse_one("{\"metadata\":", "v1", "ConfigMap").is_err());
    }
}
