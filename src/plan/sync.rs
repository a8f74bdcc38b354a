//! Reconciling Backup records with the object store (DESIGN §1, §6).
//!
//! The store is the source of truth for backups: a backup exists once its `velero-backup.json`
//! is in the store. A backup in the store without a record in the cluster gets one (a rebuilt or
//! migration cluster sees every backup of its locations); a finished record whose backup has left
//! the store (deleted by another cluster, expired, removed by hand) is forgotten. Velero's backup
//! sync controller does the same, but only forgets `Completed` records.

/// Annotation on Backup records imported from the store by sync (never run by the controller).
pub const SYNCED_ANNOTATION: &str = "tidemark.dev/synced-from-store";

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

/// What the planner needs to know about one Backup record in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordView {
    /// The record's name (= the backup's name in the store).
    pub name: String,
    /// `status.phase` (`New`, `InProgress`, `Completed`, `PartiallyFailed`, `Failed`,
    /// `Deleting`, …), `None` before the controller first set it.
    pub phase: Option<String>,
    /// When the record was last known to change phase: pass the later of
    /// `metadata.creationTimestamp` and `status.completionTimestamp`, so the grace period also
    /// covers a long backup whose upload finished just now. `None` counts as old enough.
    pub created: Option<DateTime<Utc>>,
}

/// One step of a store sync.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SyncAction {
    /// A backup in the store has no record: create one from its `velero-backup.json`.
    Import(String),
    /// A finished record whose backup is no longer in the store: delete the record (only the
    /// record; there is no data left to delete).
    Forget(String),
}

/// Phases of a record whose backup has been uploaded: only these records are forgotten when
/// their backup is missing from the store. `New`/`InProgress`/`Finalizing`… are still
/// uploading; `Deleting` is handled by the deletion path; `Failed` and `FailedValidation` runs
/// left no backup in the store (what a failed run stored is removed) and stay as the user's
/// evidence of the failure.
const FORGETTABLE_PHASES: [&str; 2] = ["Completed", "PartiallyFailed"];

/// Plans a store sync.
///
/// - `Import(name)` for every name in `in_store` without a record.
/// - `Forget(name)` for every record whose name is not in `in_store`, whose phase is `Completed`
///   or `PartiallyFailed` (never `New`, `InProgress`, `Deleting`, `Failed`, `FailedValidation`,
///   unset or unknown phases) and whose `created` time is at least `grace` before `now` (so a
///   record whose upload just finished is not deleted by a store listing taken just before it).
///
/// Records are matched by name; duplicate records count once. The result is sorted (all imports
/// by name, then all forgets by name) and deterministic for the same input.
pub fn plan_sync(
    in_store: &BTreeSet<String>,
    records: &[RecordView],
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Vec<SyncAction> {
    let by_name: BTreeMap<&str, &RecordView> =
        records.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut actions: Vec<SyncAction> = in_store
        .iter()
        .filter(|name| !by_name.contains_key(name.as_str()))
        .map(|name| SyncAction::Import(name.clone()))
        .collect();
    for record in records {
        if in_store.contains(&record.name) {
            continue;
        }
        let finished = record
            .phase
            .as_deref()
            .is_some_and(|p| FORGETTABLE_PHASES.contains(&p));
        let old_enough = record.created.is_none_or(|c| now - c >= grace);
        if finished && old_enough {
            actions.push(SyncAction::Forget(record.name.clone()));
        }
    }
    actions.sort();
    actions.dedup();
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
    }

    fn rec(name: &str, phase: Option<&str>, age_secs: Option<i64>) -> RecordView {
        RecordView {
            name: name.to_owned(),
            phase: phase.map(str::to_owned),
            created: age_secs.map(|s| now() - Duration::seconds(s)),
        }
    }

    fn store(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn grace() -> Duration {
        Duration::minutes(5)
    }

    #[test]
    fn imports_store_backups_without_records_sorted() {
        let actions = plan_sync(
            &store(&["c", "a", "b"]),
            &[rec("b", Some("Completed"), Some(3600))],
            now(),
            grace(),
        );
        assert_eq!(
            actions,
            vec![
                SyncAction::Import("a".into()),
                SyncAction::Import("c".into())
            ]
        );
    }

    #[test]
    fn forgets_finished_records_whose_backup_is_gone() {
        let records = [
            rec("done", Some("Completed"), Some(3600)),
            rec("partial", Some("PartiallyFailed"), Some(3600)),
            rec("kept", Some("Completed"), Some(3600)),
        ];
        let actions = plan_sync(&store(&["kept", "new-one"]), &records, now(), grace());
        assert_eq!(
            actions,
            vec![
                SyncAction::Import("new-one".into()),
                SyncAction::Forget("done".into()),
                SyncAction::Forget("partial".into()),
            ]
        );
    }

    #[test]
    fn unfinished_or_deleting_records_are_kept() {
        let records = [
            rec("new", Some("New"), Some(3600)),
            rec("running", Some("InProgress"), Some(3600)),
            rec("finalizing", Some("Finalizing"), Some(3600)),
            rec("plugin-ops", Some("WaitingForPluginOperations"), Some(3600)),
            rec("deleting", Some("Deleting"), Some(3600)),
            rec("invalid", Some("FailedValidation"), Some(3600)),
            rec("failed", Some("Failed"), Some(3600)),
            rec("unset", None, Some(3600)),
            rec("odd", Some("SomethingElse"), Some(3600)),
        ];
        assert!(plan_sync(&store(&[]), &records, now(), grace()).is_empty());
    }

    #[test]
    fn grace_protects_records_that_just_finished() {
        let records = [
            rec("just-now", Some("Completed"), Some(10)),
            rec("at-grace", Some("Completed"), Some(300)),
            rec("unknown-age", Some("Completed"), None),
            // A record from the future (clock skew) is younger than the grace period.
            rec("future", Some("Completed"), Some(-60)),
        ];
        assert_eq!(
            plan_sync(&store(&[]), &records, now(), grace()),
            vec![
                SyncAction::Forget("at-grace".into()),
                SyncAction::Forget("unknown-age".into()),
            ]
        );
        // Zero grace forgets immediately.
        assert_eq!(
            plan_sync(&store(&[]), &records[..1], now(), Duration::zero()),
            vec![SyncAction::Forget("just-now".into())]
        );
    }

    #[test]
    fn in_sync_means_nothing_to_do_and_duplicates_count_once() {
        let records = [
            rec("a", Some("Completed"), Some(3600)),
            rec("a", Some("Completed"), Some(3600)),
            rec("gone", Some("Completed"), Some(3600)),
            rec("gone", Some("Completed"), Some(3600)),
        ];
        assert_eq!(
            plan_sync(&store(&["a"]), &records, now(), grace()),
            vec![SyncAction::Forget("gone".into())]
        );
        assert!(plan_sync(&store(&[]), &[], now(), grace()).is_empty());
    }

    #[test]
    fn deterministic_regardless_of_record_order() {
        let mut records = vec![
            rec("z", Some("Completed"), Some(3600)),
            rec("m", Some("Failed"), Some(3600)),
            rec("a", Some("PartiallyFailed"), Some(3600)),
        ];
        let s = store(&["q", "b"]);
        let first = plan_sync(&s, &records, now(), grace());
        records.reverse();
        assert_eq!(first, plan_sync(&s, &records, now(), grace()));
    }
}
