//! The inventory of a source: the objects its last revision applied, in Flux's format
//! (`<namespace>_<name>_<group>_<kind>` ids with the API version, sorted), and the diff that
//! decides what a new revision prunes. Pure: no API calls.

use std::collections::BTreeSet;

use crate::api::gitsource::{Inventory, InventoryEntry};
use crate::api::tidemark::{GROUP, VERSION};
use crate::source::Kind;

/// One object of a source: kind, namespace and name (tidemark's kinds are all namespaced and
/// in `tidemark.dev`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    /// Its kind.
    pub kind: Kind,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ObjectRef {
    /// The reference to `kind` `namespace/name`.
    pub fn new(kind: Kind, namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }

    /// Flux's inventory id: `<namespace>_<name>_<group>_<kind>`.
    pub fn id(&self) -> String {
        format!("{}_{}_{GROUP}_{}", self.namespace, self.name, self.kind)
    }

    /// Reads an inventory id; `None` for ids of other groups or kinds (left alone: tidemark
    /// never applied them) and malformed ones.
    pub fn parse(id: &str) -> Option<ObjectRef> {
        // Names and namespaces hold no `_` (DNS subdomain / label), so the split is exact.
        let mut parts = id.splitn(4, '_');
        let (namespace, name, group, kind) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if group != GROUP || namespace.is_empty() || name.is_empty() {
            return None;
        }
        Some(ObjectRef::new(Kind::parse(kind)?, namespace, name))
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The inventory holding `objects`, sorted by id.
pub fn to_inventory(objects: &BTreeSet<ObjectRef>) -> Inventory {
    let mut entries: Vec<InventoryEntry> = objects
        .iter()
        .map(|o| InventoryEntry {
            id: o.id(),
            v: VERSION.to_string(),
        })
        .collect();
    entries.sort();
    Inventory { entries }
}

/// The objects of `inventory` (entries of other groups or kinds are skipped).
pub fn from_inventory(inventory: &Inventory) -> BTreeSet<ObjectRef> {
    inventory
        .entries
        .iter()
        .filter_map(|e| ObjectRef::parse(&e.id))
        .collect()
}

/// What a new revision prunes: the objects of the previous inventory that the revision does
/// not hold (`keep`: every object it names, valid or not), dependents first (RestorePlans and
/// Schedules before the BackupPolicies and Locations they name).
pub fn to_prune(previous: &BTreeSet<ObjectRef>, keep: &BTreeSet<ObjectRef>) -> Vec<ObjectRef> {
    let mut out: Vec<ObjectRef> = previous.difference(keep).cloned().collect();
    out.sort_by(|a, b| {
        (std::cmp::Reverse(a.kind), &a.namespace, &a.name).cmp(&(
            std::cmp::Reverse(b.kind),
            &b.namespace,
            &b.name,
        ))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(kind: Kind, ns: &str, name: &str) -> ObjectRef {
        ObjectRef::new(kind, ns, name)
    }

    #[test]
    fn ids_follow_flux_and_read_back() {
        let o = r(Kind::Schedule, "tidemark", "nightly");
        assert_eq!(o.id(), "tidemark_nightly_tidemark.dev_Schedule");
        assert_eq!(ObjectRef::parse(&o.id()), Some(o));
        assert_eq!(ObjectRef::parse("default_cm_core_ConfigMap"), None);
        assert_eq!(ObjectRef::parse("a_b_tidemark.dev_Backup"), None);
        assert_eq!(ObjectRef::parse("_b_tidemark.dev_Location"), None);
        assert_eq!(ObjectRef::parse("garbage"), None);
    }

    #[test]
    fn inventory_round_trips_sorted() {
        let set = BTreeSet::from([
            r(Kind::Schedule, "b", "x"),
            r(Kind::Location, "a", "y"),
            r(Kind::RestorePlan, "a", "z"),
        ]);
        let inv = to_inventory(&set);
        let ids: Vec<&str> = inv.entries.iter().map(|e| e.id.as_str()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(inv.entries.iter().all(|e| e.v == "v1alpha1"));
        assert_eq!(from_inventory(&inv), set);
    }

    #[test]
    fn prune_is_the_previous_inventory_minus_the_revision_dependents_first() {
        let previous = BTreeSet::from([
            r(Kind::Location, "t", "store"),
            r(Kind::BackupPolicy, "t", "apps"),
            r(Kind::Schedule, "t", "nightly"),
            r(Kind::RestorePlan, "t", "drill"),
            r(Kind::Schedule, "t", "kept"),
        ]);
        let keep = BTreeSet::from([
            r(Kind::Schedule, "t", "kept"),
            // New in this revision: never pruned, not in the previous inventory either.
            r(Kind::Schedule, "t", "renamed"),
        ]);
        let pruned = to_prune(&previous, &keep);
        let kinds: Vec<Kind> = pruned.iter().map(|o| o.kind).collect();
        assert_eq!(
            kinds,
            vec![
                Kind::RestorePlan,
                Kind::Schedule,
                Kind::BackupPolicy,
                Kind::Location
            ]
        );
        assert!(!pruned.contains(&r(Kind::Schedule, "t", "kept")));
        assert!(to_prune(&BTreeSet::new(), &keep).is_empty());
    }
}
