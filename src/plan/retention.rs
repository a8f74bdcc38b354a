//! Grandfather-father-son retention ([`Retention`]): which of a Schedule's backups to keep and
//! which to delete, decided from their start times alone.
//!
//! The rules are restic's `forget --keep-last/--keep-hourly/...` (restic's "Removing snapshots
//! according to a policy"): backups are taken newest first; `keepLast` keeps the first N; each
//! period rule walks them newest first and keeps a backup whenever it starts a period (hour,
//! day, ISO week, month, year, read in the Schedule's time zone) not seen before, until it has
//! kept N periods. So each rule keeps the newest backup of each of its last N periods that have
//! backups. A backup kept by any rule is kept.
//!
//! Time zones matter at the edges: a day is the Schedule's local day, and when clocks go back
//! the repeated local hour is one hourly period, as restic formats times in local time too.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;

use crate::api::tidemark::Retention;

/// One backup the rules judge: a `Completed` backup of the Schedule in its Location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The backup's name.
    pub name: String,
    /// Its `status.startTimestamp`.
    pub started: DateTime<Utc>,
}

/// What the rules decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionDecision {
    /// Kept backups (newest first), each with the rules that keep it (`keepLast`, `hourly`,
    /// `daily`, `weekly`, `monthly`, `yearly`).
    pub keep: Vec<(String, Vec<&'static str>)>,
    /// Backups to delete (newest first).
    pub delete: Vec<String>,
}

/// Checks that a retention keeps at least one backup.
///
/// # Errors
/// `spec.retention: ...` when every rule is unset or 0: applying it would delete every backup.
pub fn validate(field: &str, r: &Retention) -> Result<(), String> {
    let counts = [
        r.keep_last,
        r.hourly,
        r.daily,
        r.weekly,
        r.monthly,
        r.yearly,
    ];
    if counts.iter().all(|c| c.unwrap_or(0) == 0) {
        return Err(format!(
            "{field}: keeps no backup (set keepLast, hourly, daily, weekly, monthly or yearly above 0)"
        ));
    }
    Ok(())
}

/// The period a backup started in, for one rule, in `tz` (a value equal for the same period).
fn period(rule: &str, t: DateTime<Utc>, tz: Tz) -> (i32, u32, u32, u32) {
    let l = t.with_timezone(&tz);
    match rule {
        "hourly" => (l.year(), l.month(), l.day(), l.hour()),
        "daily" => (l.year(), l.month(), l.day(), 0),
        "weekly" => {
            let w = l.iso_week();
            (w.year(), w.week(), 0, 0)
        }
        "monthly" => (l.year(), l.month(), 0, 0),
        _ => (l.year(), 0, 0, 0),
    }
}

/// Applies `r` to `candidates` in time zone `tz`. Ties in start time are broken by name, so the
/// decision does not depend on the input's order.
pub fn decide(candidates: &[Candidate], r: &Retention, tz: Tz) -> RetentionDecision {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| b.name.cmp(&a.name)));
    let mut reasons: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
    for c in sorted.iter().take(r.keep_last.unwrap_or(0) as usize) {
        reasons.entry(&c.name).or_default().push("keepLast");
    }
    for (rule, count) in [
        ("hourly", r.hourly),
        ("daily", r.daily),
        ("weekly", r.weekly),
        ("monthly", r.monthly),
        ("yearly", r.yearly),
    ] {
        let want = count.unwrap_or(0) as usize;
        let mut seen = 0;
        let mut last = None;
        for c in &sorted {
            if seen == want {
                break;
            }
            let p = period(rule, c.started, tz);
            if last != Some(p) {
                last = Some(p);
                seen += 1;
                reasons.entry(&c.name).or_default().push(rule);
            }
        }
    }
    let mut out = RetentionDecision::default();
    for c in sorted {
        match reasons.remove(c.name.as_str()) {
            Some(why) => out.keep.push((c.name.clone(), why)),
            None => out.delete.push(c.name.clone()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn rule(f: impl FnOnce(&mut Retention)) -> Retention {
        let mut r = Retention::default();
        f(&mut r);
        r
    }

    /// A backup every `every` over `span` ending at `end`, named by start time.
    fn series(end: DateTime<Utc>, span: Duration, every: Duration) -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut t = end - span;
        while t <= end {
            out.push(Candidate {
                name: t.format("b-%Y%m%d%H%M%S").to_string(),
                started: t,
            });
            t += every;
        }
        out
    }

    fn kept(d: &RetentionDecision) -> Vec<&str> {
        d.keep.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, mi, 0).unwrap()
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let c = series(
            utc(2026, 1, 1, 12, 0),
            Duration::hours(5),
            Duration::hours(1),
        );
        let d = decide(&c, &rule(|r| r.keep_last = Some(2)), Tz::UTC);
        assert_eq!(kept(&d), ["b-20260101120000", "b-20260101110000"]);
        assert_eq!(d.delete.len(), 4);
        assert_eq!(d.keep[0].1, ["keepLast"]);
    }

    #[test]
    fn a_year_of_hourly_backups_under_every_rule() {
        // Hourly backups through 2026 in UTC.
        let end = utc(2026, 12, 31, 23, 0);
        let c = series(end, end - utc(2026, 1, 1, 0, 0), Duration::hours(1));
        assert_eq!(c.len(), 8760);
        let r = rule(|r| {
            r.keep_last = Some(3);
            r.hourly = Some(6);
            r.daily = Some(7);
            r.weekly = Some(4);
            r.monthly = Some(12);
            r.yearly = Some(2);
        });
        let d = decide(&c, &r, Tz::UTC);
        let names = kept(&d);
        // Spot checks first, then the whole kept set.
        for want in [
            "b-20261231230000", // keepLast, hourly, daily, weekly, monthly, yearly
            "b-20261231180000", // hourly (6th hour)
            "b-20261230230000", // daily
            "b-20261225230000", // daily (7th day)
            "b-20261227230000", // weekly: Sunday of ISO week 52
            "b-20261213230000", // weekly: 4th week (ISO 50)
            "b-20261130230000", // monthly
            "b-20260131230000", // monthly (12th)
        ] {
            assert!(names.contains(&want), "{want} not kept: {names:?}");
        }
        assert!(!names.contains(&"b-20261231170000"));
        assert!(
            !names.contains(&"b-20261206230000"),
            "a 5th week is not kept"
        );
        // 6 hours, 6 more days, 2 more ISO weeks (week 52's Sunday is one of the days), 11 more
        // months; the year is the newest backup's.
        let expected: std::collections::BTreeSet<&str> = [
            // hourly
            "b-20261231230000",
            "b-20261231220000",
            "b-20261231210000",
            "b-20261231200000",
            "b-20261231190000",
            "b-20261231180000",
            // daily: Dec 30 .. Dec 25
            "b-20261230230000",
            "b-20261229230000",
            "b-20261228230000",
            "b-20261227230000",
            "b-20261226230000",
            "b-20261225230000",
            // weekly: week 53 = Dec 31 (already), week 52 = Dec 27 (already), Dec 20, Dec 13
            "b-20261220230000",
            "b-20261213230000",
            // monthly: Dec (already), Nov .. Jan
            "b-20261130230000",
            "b-20261031230000",
            "b-20260930230000",
            "b-20260831230000",
            "b-20260731230000",
            "b-20260630230000",
            "b-20260531230000",
            "b-20260430230000",
            "b-20260331230000",
            "b-20260228230000",
            "b-20260131230000",
            // yearly: 2026 (already); 2025 has none.
        ]
        .into();
        let got: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(got, expected);
        assert_eq!(d.keep.len() + d.delete.len(), c.len());
    }

    #[test]
    fn periods_without_backups_are_not_counted() {
        // Daily backups with a gap of a week: daily 3 keeps three days that have backups.
        let mut c = series(utc(2026, 3, 20, 1, 0), Duration::days(2), Duration::days(1));
        c.extend(series(
            utc(2026, 3, 10, 1, 0),
            Duration::days(1),
            Duration::days(1),
        ));
        let d = decide(&c, &rule(|r| r.daily = Some(3)), Tz::UTC);
        assert_eq!(
            kept(&d),
            ["b-20260320010000", "b-20260319010000", "b-20260318010000"]
        );
        let d = decide(&c, &rule(|r| r.daily = Some(4)), Tz::UTC);
        assert_eq!(kept(&d)[3], "b-20260310010000");
    }

    #[test]
    fn days_are_the_schedules_local_days() {
        // 23:30 UTC is already the next day in Berlin (UTC+1 in winter).
        let c = vec![
            Candidate {
                name: "late".into(),
                started: utc(2026, 1, 10, 23, 30),
            },
            Candidate {
                name: "evening".into(),
                started: utc(2026, 1, 10, 20, 0),
            },
        ];
        let r = rule(|r| r.daily = Some(2));
        // In UTC both are on Jan 10, one period: daily 2 keeps only the newest.
        assert_eq!(kept(&decide(&c, &r, Tz::UTC)), ["late"]);
        // In Berlin they are two days.
        assert_eq!(
            kept(&decide(&c, &r, chrono_tz::Europe::Berlin)),
            ["late", "evening"]
        );
    }

    #[test]
    fn daylight_saving_changes() {
        let berlin = chrono_tz::Europe::Berlin;
        // Clocks go back on 2026-10-25 at 03:00 CEST to 02:00 CET: 00:00 and 01:00 UTC are both
        // 02:xx local, one hourly period.
        let back = vec![
            Candidate {
                name: "first-0230".into(),
                started: utc(2026, 10, 25, 0, 30),
            },
            Candidate {
                name: "second-0230".into(),
                started: utc(2026, 10, 25, 1, 30),
            },
            Candidate {
                name: "0330".into(),
                started: utc(2026, 10, 25, 2, 30),
            },
        ];
        let d = decide(&back, &rule(|r| r.hourly = Some(2)), berlin);
        assert_eq!(kept(&d), ["0330", "second-0230"]);
        assert_eq!(d.delete, ["first-0230"]);
        // In UTC they are three hours.
        assert_eq!(
            decide(&back, &rule(|r| r.hourly = Some(3)), Tz::UTC)
                .keep
                .len(),
            3
        );
        // Clocks go forward on 2026-03-29 at 02:00 CET to 03:00 CEST: a day of 23 hours still
        // counts as one day.
        let c = series(
            utc(2026, 3, 29, 21, 0),
            Duration::hours(23),
            Duration::hours(1),
        );
        let d = decide(&c, &rule(|r| r.daily = Some(1)), berlin);
        assert_eq!(kept(&d), ["b-20260329210000"]);
        let d = decide(&c, &rule(|r| r.daily = Some(2)), berlin);
        assert_eq!(kept(&d), ["b-20260329210000", "b-20260328220000"]);
    }

    #[test]
    fn weeks_are_iso_weeks_across_the_new_year() {
        // 2026-12-31 is a Thursday of ISO week 53 of 2026; 2027-01-03 (Sunday) too.
        let c = vec![
            Candidate {
                name: "sun".into(),
                started: utc(2027, 1, 3, 12, 0),
            },
            Candidate {
                name: "thu".into(),
                started: utc(2026, 12, 31, 12, 0),
            },
            Candidate {
                name: "prev-sun".into(),
                started: utc(2026, 12, 27, 12, 0),
            },
        ];
        let d = decide(&c, &rule(|r| r.weekly = Some(2)), Tz::UTC);
        assert_eq!(kept(&d), ["sun", "prev-sun"]);
        let d = decide(&c, &rule(|r| r.yearly = Some(2)), Tz::UTC);
        assert_eq!(kept(&d), ["sun", "thu"]);
    }

    #[test]
    fn order_of_input_does_not_matter_and_ties_break_by_name() {
        let t = utc(2026, 5, 1, 0, 0);
        let a = vec![
            Candidate {
                name: "a".into(),
                started: t,
            },
            Candidate {
                name: "b".into(),
                started: t,
            },
        ];
        let mut b = a.clone();
        b.reverse();
        let r = rule(|r| r.keep_last = Some(1));
        assert_eq!(decide(&a, &r, Tz::UTC), decide(&b, &r, Tz::UTC));
        assert_eq!(kept(&decide(&a, &r, Tz::UTC)), ["b"]);
    }

    #[test]
    fn a_retention_that_keeps_nothing_is_refused() {
        assert!(validate("spec.retention", &Retention::default()).is_err());
        assert!(
            validate("spec.retention", &rule(|r| r.daily = Some(0)))
                .unwrap_err()
                .contains("spec.retention: keeps no backup")
        );
        assert!(validate("spec.retention", &rule(|r| r.monthly = Some(1))).is_ok());
    }
}
