//! The resource-modifier document as written: serde shapes, strict about field names.

use std::collections::BTreeMap;

use super::*;

pub(super) fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawDocument {
    #[serde(default, deserialize_with = "nullable")]
    pub(super) version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) resource_modifier_rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRule {
    #[serde(default, deserialize_with = "nullable")]
    pub(super) conditions: RawConditions,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) patches: Vec<RawJsonPatch>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) merge_patches: Vec<RawPatchData>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) strategic_patches: Vec<RawPatchData>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawConditions {
    #[serde(default, deserialize_with = "nullable")]
    pub(super) namespaces: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) group_resource: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) resource_name_regex: String,
    #[serde(default)]
    pub(super) label_selector: Option<RawLabelSelector>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) matches: Vec<RawMatch>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawLabelSelector {
    #[serde(default, deserialize_with = "nullable")]
    pub(super) match_labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) match_expressions: Vec<RawRequirement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRequirement {
    #[serde(default, deserialize_with = "nullable")]
    pub(super) key: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) operator: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawMatch {
    #[serde(default, deserialize_with = "nullable")]
    pub(super) path: String,
    #[serde(default)]
    pub(super) value: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawJsonPatch {
    #[serde(default, deserialize_with = "nullable")]
    pub(super) operation: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) from: String,
    #[serde(default, deserialize_with = "nullable")]
    pub(super) path: String,
    #[serde(default)]
    pub(super) value: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPatchData {
    #[serde(default)]
    pub(super) patch_data: Option<serde_yaml::Value>,
}
