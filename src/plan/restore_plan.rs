//! A RestorePlan runs once per distinct spec (DESIGN §2).
//!
//! Re-applying the same manifest (Argo CD self-heal, Flux re-reconcile, a rebuilt cluster) must
//! not restore again. The plan's identity is the hash of its spec template ([`spec_hash`]); it
//! runs when that hash has not run before, as recorded in the plan's status or, when the cluster
//! was rebuilt and the status is gone, in the restore records kept in the bucket ([`decide`]).

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::tidemark::RestoreSpecTemplate;

/// Hex characters of the spec hash.
const HASH_LEN: usize = 16;
/// Hex characters of the hash used in restore names.
const NAME_HASH_LEN: usize = 8;
/// Maximum length of a generated restore name (it is also used as a label value).
const MAX_NAME: usize = 63;

/// Stable identity of a restore spec: the first 16 hex characters of the sha256 of the
/// template's canonical JSON (its serde/camelCase form with object keys sorted at every level,
/// no whitespace; unset optional fields and empty lists/maps are omitted, as in the manifest).
///
/// The same spec yields the same hash on every run, platform and tidemark version that keeps
/// the template's JSON shape, whatever the order of keys in the manifest or in maps such as
/// `namespaceMapping`. Any change of a value (including list order) yields a different hash.
pub fn spec_hash(t: &RestoreSpecTemplate) -> String {
    // Serializing a struct of strings, bools, lists and string-keyed maps cannot fail.
    let value = serde_json::to_value(t).expect("RestoreSpecTemplate serializes to JSON");
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    let digest = hex::encode(Sha256::digest(canonical.as_bytes()));
    digest[..HASH_LEN].to_owned()
}

/// Writes `value` as JSON with object keys sorted (byte order) at every level.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Whether a RestorePlan should run for its current spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanDecision {
    /// This spec has never run: create the restore (named by [`restore_name`]).
    Run,
    /// This spec already ran; `restore` is the Restore it created, when known.
    AlreadyRan {
        /// Name of the restore that ran this spec, if recorded.
        restore: Option<String>,
    },
}

/// Decides whether the spec with hash `hash` runs.
///
/// - `status_hash`/`status_restore`: `status.specHash` and `status.restoreName` of the plan
///   (`None` in a rebuilt cluster, or before the first run).
/// - `ran_hashes`: spec hash → restore name, for every restore of this plan recorded in the store
///   (restore records in the bucket carry the plan name and spec hash), so that re-creating the
///   plan in a rebuilt cluster does not restore again.
///
/// Returns [`PlanDecision::AlreadyRan`] when the status records this hash (with the status's
/// restore name) or the store does (with the stored restore name); otherwise [`PlanDecision::Run`].
pub fn decide(
    hash: &str,
    status_hash: Option<&str>,
    status_restore: Option<&str>,
    ran_hashes: &BTreeMap<String, String>,
) -> PlanDecision {
    if status_hash == Some(hash) {
        return PlanDecision::AlreadyRan {
            restore: status_restore
                .map(str::to_owned)
                .or_else(|| ran_hashes.get(hash).cloned()),
        };
    }
    match ran_hashes.get(hash) {
        Some(restore) => PlanDecision::AlreadyRan {
            restore: Some(restore.clone()),
        },
        None => PlanDecision::Run,
    }
}

/// Restore name for a plan run: `<plan>-<first 8 chars of hash>`, at most 63 characters.
///
/// A plan name too long for that is cut and given a 6-hex-character digest of the full name
/// (`<prefix>-<digest>-<hash8>`), so distinct long plan names still give distinct restore names.
pub fn restore_name(plan: &str, hash: &str) -> String {
    let short: String = hash.chars().take(NAME_HASH_LEN).collect();
    let max_plan = MAX_NAME - 1 - short.len();
    format!("{}-{short}", super::fit_name(plan, max_plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn template() -> RestoreSpecTemplate {
        RestoreSpecTemplate {
            backup_name: Some("nightly-20240501020000".into()),
            included_namespaces: vec!["shop".into(), "billing".into()],
            namespace_mapping: [("shop", "shop-dr"), ("billing", "billing-dr")]
                .into_iter()
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .collect(),
            label_selector: Some(LabelSelector {
                match_labels: Some(
                    [("tier", "db"), ("app", "pg")]
                        .into_iter()
                        .map(|(a, b)| (a.to_owned(), b.to_owned()))
                        .collect(),
                ),
                ..Default::default()
            }),
            existing_resource_policy: Some("update".into()),
            restore_p_vs: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn hash_is_16_hex_chars_and_stable() {
        let h = spec_hash(&template());
        assert_eq!(h.len(), 16);
        assert!(
            h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(h, spec_hash(&template()));
        assert_eq!(h, spec_hash(&template().clone()));
    }

    #[test]
    fn hash_ignores_key_order_in_manifests() {
        let a: RestoreSpecTemplate = serde_json::from_str(
            r#"{"backupName":"b","namespaceMapping":{"x":"y","a":"b"},
                "labelSelector":{"matchLabels":{"k2":"v2","k1":"v1"}},"restorePVs":false}"#,
        )
        .unwrap();
        let b: RestoreSpecTemplate = serde_json::from_str(
            r#"{"restorePVs":false,"labelSelector":{"matchLabels":{"k1":"v1","k2":"v2"}},
                "namespaceMapping":{"a":"b","x":"y"},"backupName":"b"}"#,
        )
        .unwrap();
        assert_eq!(spec_hash(&a), spec_hash(&b));
    }

    #[test]
    fn any_change_changes_the_hash() {
        let base = spec_hash(&template());
        let mut t = template();
        t.backup_name = Some("nightly-20240502020000".into());
        assert_ne!(spec_hash(&t), base);
        let mut t = template();
        t.namespace_mapping.insert("shop".into(), "shop-dr2".into());
        assert_ne!(spec_hash(&t), base);
        let mut t = template();
        t.restore_p_vs = Some(false);
        assert_ne!(spec_hash(&t), base);
        let mut t = template();
        t.restore_p_vs = None;
        assert_ne!(spec_hash(&t), base);
        let mut t = template();
        t.included_namespaces.reverse();
        assert_ne!(spec_hash(&t), base);
        assert_ne!(
            spec_hash(&RestoreSpecTemplate::default()),
            spec_hash(&template())
        );
    }

    #[test]
    fn canonical_json_sorts_nested_keys() {
        let v: Value =
            serde_json::from_str(r#"{"b":[{"z":1,"a":"x\"y"}],"a":null,"c":true}"#).unwrap();
        let mut out = String::new();
        write_canonical(&v, &mut out);
        assert_eq!(out, r#"{"a":null,"b":[{"a":"x\"y","z":1}],"c":true}"#);
    }

    #[test]
    fn new_spec_runs() {
        assert_eq!(
            decide("aaaa", None, None, &BTreeMap::new()),
            PlanDecision::Run
        );
    }

    #[test]
    fn same_spec_as_status_already_ran() {
        assert_eq!(
            decide("aaaa", Some("aaaa"), Some("plan-aaaa"), &BTreeMap::new()),
            PlanDecision::AlreadyRan {
                restore: Some("plan-aaaa".into())
            }
        );
        assert_eq!(
            decide("aaaa", Some("aaaa"), None, &BTreeMap::new()),
            PlanDecision::AlreadyRan { restore: None }
        );
    }

    #[test]
    fn changed_spec_runs_again() {
        assert_eq!(
            decide("bbbb", Some("aaaa"), Some("plan-aaaa"), &BTreeMap::new()),
            PlanDecision::Run
        );
    }

    #[test]
    fn rebuilt_cluster_finds_the_run_in_the_store() {
        let ran: BTreeMap<String, String> = [("aaaa".to_owned(), "plan-aaaa".to_owned())].into();
        assert_eq!(
            decide("aaaa", None, None, &ran),
            PlanDecision::AlreadyRan {
                restore: Some("plan-aaaa".into())
            }
        );
        // A spec that ran before an edit, then was edited back, does not run again either.
        let ran: BTreeMap<String, String> = [
            ("aaaa".to_owned(), "plan-aaaa".to_owned()),
            ("bbbb".to_owned(), "plan-bbbb".to_owned()),
        ]
        .into();
        assert_eq!(
            decide("aaaa", Some("bbbb"), Some("plan-bbbb"), &ran),
            PlanDecision::AlreadyRan {
                restore: Some("plan-aaaa".into())
            }
        );
        assert_eq!(decide("cccc", None, None, &ran), PlanDecision::Run);
    }

    #[test]
    fn restore_names() {
        assert_eq!(
            restore_name("migrate-shop", "0123456789abcdef"),
            "migrate-shop-01234567"
        );
        let long = "p".repeat(80);
        let name = restore_name(&long, "0123456789abcdef");
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("-01234567"));
        assert!(name.starts_with("ppppp"));
        let other = restore_name(&format!("{}q", "p".repeat(79)), "0123456789abcdef");
        assert_ne!(name, other);
        let exact = "p".repeat(54);
        assert_eq!(
            restore_name(&exact, "0123456789abcdef"),
            format!("{exact}-01234567")
        );
        assert_eq!(restore_name("x", "abc"), "x-abc");
    }
}
