//! What a Schedule does now: [`decide`] turns a schedule ([`CronSchedule`], Velero's cron syntax,
//! in [`super::cron`]), what was observed about its backups and the current time into one
//! [`ScheduleDecision`]; [`backup_name`] names the backups it starts.

use chrono::{DateTime, Utc};

pub use super::cron::CronSchedule;
use super::cron::truncate_to_second;
use super::sync::SYNCED_ANNOTATION;
use crate::api::tidemark::{Backup, Schedule};

/// Length of the `-YYYYMMDDhhmmss` suffix of scheduled backup names.
const TIMESTAMP_SUFFIX: usize = 15;
/// Maximum length of a generated backup name (it is also used as a label value).
const MAX_NAME: usize = 63;

/// What the planner observed about a Schedule and its backups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleObserved {
    /// The schedule's creation time (`metadata.creationTimestamp`).
    pub created: DateTime<Utc>,
    /// Start time of the newest backup of this schedule (from `status.lastBackup` or the records,
    /// whichever is later); `None` if it never backed up.
    pub last_backup: Option<DateTime<Utc>>,
    /// A backup of this schedule is `New` or `InProgress`.
    pub in_progress: bool,
    /// `spec.paused`.
    pub paused: bool,
    /// `spec.skipImmediately`.
    pub skip_immediately: bool,
    /// When the schedule was last unpaused, if known (e.g. the `Paused` condition's transition time).
    pub unpaused_at: Option<DateTime<Utc>>,
}

impl ScheduleObserved {
    /// The one observation of a Schedule, shared by the controller and `tidemark plan`: its
    /// `spec.paused` and `spec.skipImmediately`, its creation time (`now` for one not created
    /// yet), its `status.lastBackup`, and its Backup records (`records`: those labelled
    /// `velero.io/schedule-name=<name>`) — the newest start time, and whether one it started
    /// is still `New` or `InProgress` (records synced from the store are not its runs).
    pub fn of(schedule: &Schedule, records: &[Backup], now: DateTime<Utc>) -> ScheduleObserved {
        let parse = |s: Option<&str>| {
            s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let in_progress = records.iter().any(|b| {
            matches!(
                b.status.as_ref().and_then(|s| s.phase.as_deref()),
                None | Some("New") | Some("InProgress")
            ) && !b
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(SYNCED_ANNOTATION))
        });
        let newest_record = records
            .iter()
            .filter_map(|b| parse(b.status.as_ref().and_then(|s| s.start_timestamp.as_deref())))
            .max();
        let status_last = parse(
            schedule
                .status
                .as_ref()
                .and_then(|s| s.last_backup.as_deref()),
        );
        let created = schedule
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
            .unwrap_or(now);
        ScheduleObserved {
            created,
            last_backup: status_last.max(newest_record),
            in_progress,
            paused: schedule.spec.paused,
            skip_immediately: schedule.spec.skip_immediately,
            unpaused_at: None,
        }
    }
}

/// What a Schedule should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScheduleDecision {
    /// `spec.paused`: no backups, no next run.
    Paused,
    /// Create the backup `backup_name` now.
    RunNow {
        /// Name of the backup to create ([`backup_name`] of `slot`); stable for a given slot, so a
        /// repeated reconcile creates the same name and hits "already exists" rather than a second
        /// backup.
        backup_name: String,
        /// The slot this backup stands for: the latest due fire time, or for a first immediate
        /// run the current time (whole seconds).
        slot: DateTime<Utc>,
        /// The next fire time after now.
        next: Option<DateTime<Utc>>,
    },
    /// Nothing to do until `next`.
    Wait {
        /// When the next backup is due (`None`: never again before 2100).
        next: Option<DateTime<Utc>>,
    },
    /// A backup is due but cannot start (e.g. the previous backup is still running: no overlap).
    Blocked {
        /// Why, for the schedule's conditions and events.
        reason: String,
        /// The next fire time after now.
        next: Option<DateTime<Utc>>,
    },
}

/// Decides what the schedule `schedule_name` does at `now` (Velero's semantics).
///
/// - Paused: [`ScheduleDecision::Paused`].
/// - Never backed up and not `skip_immediately`: run immediately (slot = `now`).
/// - Otherwise the anchor is the last backup, or with `skip_immediately` the latest of the last
///   backup, `created` and `unpaused_at`. A backup is due when `now` is at or past the first slot
///   after the anchor; then ONE backup runs, for the latest due slot (after downtime that missed
///   ten slots, one backup named after the most recent one, no catch-up storm).
/// - A due backup while another of this schedule is `New`/`InProgress` is
///   [`ScheduleDecision::Blocked`] (no overlapping runs).
/// - `next` is the next slot after `now` (for `Wait`, when the backup becomes due).
pub fn decide(
    schedule_name: &str,
    cron: &CronSchedule,
    obs: &ScheduleObserved,
    now: DateTime<Utc>,
) -> ScheduleDecision {
    if obs.paused {
        return ScheduleDecision::Paused;
    }
    let next = cron.next_after(now);
    let anchor = if obs.skip_immediately {
        obs.last_backup.max(Some(obs.created)).max(obs.unpaused_at)
    } else {
        obs.last_backup
    };
    let blocked = || ScheduleDecision::Blocked {
        reason: format!(
            "a backup of schedule {schedule_name} is still New or InProgress; not starting an \
             overlapping one"
        ),
        next,
    };
    let slot = match anchor {
        None => truncate_to_second(now),
        Some(anchor) => match cron.next_after(anchor) {
            None => return ScheduleDecision::Wait { next: None },
            Some(first) if first > now => {
                return ScheduleDecision::Wait { next: Some(first) };
            }
            Some(first) => cron.latest_due(anchor, now).unwrap_or(first),
        },
    };
    if obs.in_progress {
        return blocked();
    }
    ScheduleDecision::RunNow {
        backup_name: backup_name(schedule_name, slot),
        slot,
        next,
    }
}

/// `<schedule>-YYYYMMDDhhmmss` of the slot in UTC (Velero's naming); truncate the schedule part so the name stays <= 63 chars.
///
/// A schedule name longer than 48 characters is cut and given a 6-hex-character digest of the
/// full name (`<prefix>-<digest>-<timestamp>`), so long schedule names sharing a prefix still give
/// distinct backup names.
pub fn backup_name(schedule: &str, slot: DateTime<Utc>) -> String {
    format!(
        "{}-{}",
        super::fit_name(schedule, MAX_NAME - TIMESTAMP_SUFFIX),
        slot.format("%Y%m%d%H%M%S")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_observation_of_a_schedule_and_its_records() {
        use crate::api::tidemark::{BackupSpec, ScheduleSpec};
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let record = |name: &str, phase: Option<&str>, start: &str, synced: bool| {
            let mut b = Backup::new(name, BackupSpec::default());
            b.status = Some(
                serde_json::from_value(serde_json::json!({
                "phase": phase, "startTimestamp": start}))
                .unwrap(),
            );
            if synced {
                b.metadata.annotations =
                    Some([(SYNCED_ANNOTATION.to_string(), "true".to_string())].into());
            }
            b
        };
        let mut s = Schedule::new(
            "nightly",
            ScheduleSpec {
                schedule: "0 2 * * *".into(),
                paused: true,
                ..Default::default()
            },
        );
        // Not created yet (`tidemark plan` of a new manifest): created now; nothing ran.
        let o = ScheduleObserved::of(&s, &[], now);
        assert_eq!(o.created, now);
        assert!(o.paused && !o.in_progress && o.last_backup.is_none());
        s.status = Some(
            serde_json::from_value(serde_json::json!({
            "lastBackup": "2026-12-05T02:00:00Z"}))
            .unwrap(),
        );
        let records = [
            record("a", Some("Completed"), "2026-12-06T02:00:00Z", false),
            // Synced from the store: not a run of this Schedule in progress.
            record("b", Some("InProgress"), "2026-12-01T02:00:00Z", true),
        ];
        let o = ScheduleObserved::of(&s, &records, now);
        assert!(!o.in_progress);
        assert_eq!(
            o.last_backup,
            Some(Utc.with_ymd_and_hms(2026, 12, 6, 2, 0, 0).unwrap())
        );
        let running = [record("c", None, "2026-12-06T11:59:00Z", false)];
        assert!(ScheduleObserved::of(&s, &running, now).in_progress);
    }
    use chrono::{TimeDelta, TimeZone};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn cron(expr: &str) -> CronSchedule {
        CronSchedule::parse(expr, None).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn cron_tz(expr: &str, tz: &str) -> CronSchedule {
        CronSchedule::parse(expr, Some(tz)).unwrap_or_else(|e| panic!("{expr} in {tz}: {e}"))
    }

    fn obs(created: DateTime<Utc>) -> ScheduleObserved {
        ScheduleObserved {
            created,
            last_backup: None,
            in_progress: false,
            paused: false,
            skip_immediately: false,
            unpaused_at: None,
        }
    }

    #[test]
    fn new_schedule_runs_immediately() {
        let c = cron("0 2 * * *");
        let created = utc(2024, 5, 1, 10, 0, 0);
        let now = utc(2024, 5, 1, 10, 0, 5) + TimeDelta::milliseconds(250);
        assert_eq!(
            decide("nightly", &c, &obs(created), now),
            ScheduleDecision::RunNow {
                backup_name: "nightly-20240501100005".into(),
                slot: utc(2024, 5, 1, 10, 0, 5),
                next: Some(utc(2024, 5, 2, 2, 0, 0)),
            }
        );
    }

    #[test]
    fn skip_immediately_waits_for_the_first_slot_after_creation() {
        let c = cron("0 2 * * *");
        let created = utc(2024, 5, 1, 10, 0, 0);
        let o = ScheduleObserved {
            skip_immediately: true,
            ..obs(created)
        };
        assert_eq!(
            decide("nightly", &c, &o, utc(2024, 5, 1, 10, 0, 5)),
            ScheduleDecision::Wait {
                next: Some(utc(2024, 5, 2, 2, 0, 0))
            }
        );
        assert_eq!(
            decide("nightly", &c, &o, utc(2024, 5, 2, 2, 0, 3)),
            ScheduleDecision::RunNow {
                backup_name: "nightly-20240502020000".into(),
                slot: utc(2024, 5, 2, 2, 0, 0),
                next: Some(utc(2024, 5, 3, 2, 0, 0)),
            }
        );
    }

    #[test]
    fn due_slot_runs_and_not_yet_due_waits() {
        let c = cron("0 * * * *");
        let o = ScheduleObserved {
            last_backup: Some(utc(2024, 5, 1, 9, 0, 2)),
            ..obs(utc(2024, 4, 1, 0, 0, 0))
        };
        assert_eq!(
            decide("hourly", &c, &o, utc(2024, 5, 1, 9, 59, 59)),
            ScheduleDecision::Wait {
                next: Some(utc(2024, 5, 1, 10, 0, 0))
            }
        );
        assert_eq!(
            decide("hourly", &c, &o, utc(2024, 5, 1, 10, 0, 0)),
            ScheduleDecision::RunNow {
                backup_name: "hourly-20240501100000".into(),
                slot: utc(2024, 5, 1, 10, 0, 0),
                next: Some(utc(2024, 5, 1, 11, 0, 0)),
            }
        );
        // Once the backup for 10:00 is recorded (its start time or its slot), wait again.
        for last in [utc(2024, 5, 1, 10, 0, 0), utc(2024, 5, 1, 10, 0, 1)] {
            let o = ScheduleObserved {
                last_backup: Some(last),
                ..o.clone()
            };
            assert_eq!(
                decide("hourly", &c, &o, utc(2024, 5, 1, 10, 0, 30)),
                ScheduleDecision::Wait {
                    next: Some(utc(2024, 5, 1, 11, 0, 0))
                }
            );
        }
    }

    #[test]
    fn downtime_catch_up_is_one_backup_for_the_latest_slot() {
        let c = cron("0 * * * *");
        let o = ScheduleObserved {
            last_backup: Some(utc(2024, 5, 1, 0, 0, 1)),
            ..obs(utc(2024, 4, 1, 0, 0, 0))
        };
        // Ten hourly slots (01:00 .. 10:00) were missed.
        let now = utc(2024, 5, 1, 10, 17, 0);
        assert_eq!(
            decide("hourly", &c, &o, now),
            ScheduleDecision::RunNow {
                backup_name: "hourly-20240501100000".into(),
                slot: utc(2024, 5, 1, 10, 0, 0),
                next: Some(utc(2024, 5, 1, 11, 0, 0)),
            }
        );
        // After that backup started, nothing more is due: no storm.
        let o = ScheduleObserved {
            last_backup: Some(now),
            ..o
        };
        assert_eq!(
            decide("hourly", &c, &o, now + TimeDelta::seconds(5)),
            ScheduleDecision::Wait {
                next: Some(utc(2024, 5, 1, 11, 0, 0))
            }
        );
    }

    #[test]
    fn every_schedules_run_from_the_last_backup() {
        let c = cron("@every 30m");
        let o = ScheduleObserved {
            last_backup: Some(utc(2024, 5, 1, 10, 7, 0)),
            ..obs(utc(2024, 4, 1, 0, 0, 0))
        };
        assert_eq!(
            decide("often", &c, &o, utc(2024, 5, 1, 10, 30, 0)),
            ScheduleDecision::Wait {
                next: Some(utc(2024, 5, 1, 10, 37, 0))
            }
        );
        assert_eq!(
            decide("often", &c, &o, utc(2024, 5, 1, 12, 0, 0)),
            ScheduleDecision::RunNow {
                backup_name: "often-20240501113700".into(),
                slot: utc(2024, 5, 1, 11, 37, 0),
                next: Some(utc(2024, 5, 1, 12, 30, 0)),
            }
        );
        // New and skipping: the first run is one interval after creation.
        let o = ScheduleObserved {
            skip_immediately: true,
            ..obs(utc(2024, 5, 1, 10, 0, 0))
        };
        assert_eq!(
            decide("often", &c, &o, utc(2024, 5, 1, 10, 1, 0)),
            ScheduleDecision::Wait {
                next: Some(utc(2024, 5, 1, 10, 30, 0))
            }
        );
    }

    #[test]
    fn in_progress_blocks_a_due_backup() {
        let c = cron("0 * * * *");
        let o = ScheduleObserved {
            last_backup: Some(utc(2024, 5, 1, 9, 0, 0)),
            in_progress: true,
            ..obs(utc(2024, 4, 1, 0, 0, 0))
        };
        match decide("hourly", &c, &o, utc(2024, 5, 1, 10, 0, 5)) {
            ScheduleDecision::Blocked { reason, next } => {
                assert!(reason.contains("still New or InProgress"), "{reason}");
                assert_eq!(next, Some(utc(2024, 5, 1, 11, 0, 0)));
            }
            other => panic!("{other:?}"),
        }
        // Not due: waiting is not blocking.
        assert_eq!(
            decide("hourly", &c, &o, utc(2024, 5, 1, 9, 30, 0)),
            ScheduleDecision::Wait {
                next: Some(utc(2024, 5, 1, 10, 0, 0))
            }
        );
        // A first immediate run is blocked too.
        let o = ScheduleObserved {
            in_progress: true,
            ..obs(utc(2024, 5, 1, 10, 0, 0))
        };
        assert!(matches!(
            decide("hourly", &c, &o, utc(2024, 5, 1, 10, 0, 5)),
            ScheduleDecision::Blocked { .. }
        ));
    }

    #[test]
    fn paused_does_nothing() {
        let c = cron("0 * * * *");
        let o = ScheduleObserved {
            paused: true,
            in_progress: true,
            last_backup: Some(utc(2024, 5, 1, 0, 0, 0)),
            ..obs(utc(2024, 4, 1, 0, 0, 0))
        };
        assert_eq!(
            decide("hourly", &c, &o, utc(2024, 5, 1, 10, 0, 0)),
            ScheduleDecision::Paused
        );
        assert_eq!(
            decide(
                "hourly",
                &c,
                &ScheduleObserved {
                    paused: true,
                    ..obs(utc(2024, 4, 1, 0, 0, 0))
                },
                utc(2024, 5, 1, 10, 0, 0)
            ),
            ScheduleDecision::Paused
        );
    }

    #[test]
    fn unpausing_runs_an_overdue_slot_unless_skipping() {
        let c = cron("45 * * * *");
        let base = ScheduleObserved {
            last_backup: Some(utc(2024, 5, 1, 6, 45, 0)),
            unpaused_at: Some(utc(2024, 5, 1, 10, 50, 0)),
            ..obs(utc(2024, 4, 1, 0, 0, 0))
        };
        let now = utc(2024, 5, 1, 10, 50, 10);
        // Without skipImmediately the missed 10:45 slot runs right away (Velero).
        assert_eq!(
            decide("s", &c, &base, now),
            ScheduleDecision::RunNow {
                backup_name: "s-20240501104500".into(),
                slot: utc(2024, 5, 1, 10, 45, 0),
                next: Some(utc(2024, 5, 1, 11, 45, 0)),
            }
        );
        // With skipImmediately it waits for the first slot after unpausing.
        let skipping = ScheduleObserved {
            skip_immediately: true,
            ..base.clone()
        };
        assert_eq!(
            decide("s", &c, &skipping, now),
            ScheduleDecision::Wait {
                next: Some(utc(2024, 5, 1, 11, 45, 0))
            }
        );
        assert_eq!(
            decide("s", &c, &skipping, utc(2024, 5, 1, 11, 45, 1)),
            ScheduleDecision::RunNow {
                backup_name: "s-20240501114500".into(),
                slot: utc(2024, 5, 1, 11, 45, 0),
                next: Some(utc(2024, 5, 1, 12, 45, 0)),
            }
        );
        // Never backed up, unpaused with skipImmediately: the first slot after unpausing.
        let fresh = ScheduleObserved {
            last_backup: None,
            ..skipping
        };
        assert_eq!(
            decide("s", &c, &fresh, now),
            ScheduleDecision::Wait {
                next: Some(utc(2024, 5, 1, 11, 45, 0))
            }
        );
    }

    #[test]
    fn schedule_in_a_time_zone_names_backups_in_utc() {
        let c = cron_tz("0 2 * * *", "Europe/Berlin");
        let o = ScheduleObserved {
            last_backup: Some(utc(2024, 7, 14, 0, 0, 3)),
            ..obs(utc(2024, 1, 1, 0, 0, 0))
        };
        assert_eq!(
            decide("berlin", &c, &o, utc(2024, 7, 15, 0, 0, 2)),
            ScheduleDecision::RunNow {
                backup_name: "berlin-20240715000000".into(),
                slot: utc(2024, 7, 15, 0, 0, 0),
                next: Some(utc(2024, 7, 16, 0, 0, 0)),
            }
        );
    }

    #[test]
    fn backup_name_format_and_truncation() {
        let slot = utc(2024, 5, 1, 2, 3, 4);
        assert_eq!(backup_name("nightly", slot), "nightly-20240501020304");
        let exact = "s".repeat(48);
        let name = backup_name(&exact, slot);
        assert_eq!(name.len(), 63);
        assert_eq!(name, format!("{exact}-20240501020304"));
        let long = "s".repeat(100);
        let name = backup_name(&long, slot);
        assert!(name.len() <= 63, "{name}");
        assert!(name.ends_with("-20240501020304"));
        assert!(name.starts_with(&"s".repeat(40)));
        assert_ne!(name, backup_name(&format!("{}t", "s".repeat(99)), slot));
    }
}
