//! Velero's cron syntax (robfig/cron) and its evaluation in a time zone: when a Schedule fires.
//!
//! [`CronSchedule::parse`] accepts what Velero (robfig/cron) accepts and evaluates it in a time
//! zone; the decision of what a Schedule does now is [`super::schedule::decide`].
//!
//!
//! # Syntax (robfig/cron, as used by Velero)
//!
//! - 5 fields `minute hour day-of-month month day-of-week`, or 6 with `second` first.
//!   Ranges: second/minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or `JAN`-`DEC`,
//!   day-of-week 0-6 (0 = Sunday) or `SUN`-`SAT` (names case-insensitive). tidemark also accepts
//!   day-of-week `7` as Sunday (Vixie cron does; robfig rejects it).
//! - Each field is `*` or `?` (any), a value, a range `a-b`, each optionally with a step `/n`
//!   (`a/n` means `a-max/n`), or a comma-separated list of those.
//! - Day-of-month and day-of-week: when both are restricted (neither is `*`/`?`), a day matches
//!   if **either** matches (`0 0 1 * MON` = the 1st and every Monday), as in robfig and Vixie cron.
//! - Descriptors: `@yearly`/`@annually`, `@monthly`, `@weekly` (Sunday 00:00), `@daily`/`@midnight`,
//!   `@hourly`, and `@every <Go duration>` (`@every 30m`, `@every 1h30m`; at least 1s, whole
//!   seconds).
//! - A `CRON_TZ=<zone> ` or `TZ=<zone> ` prefix sets the time zone (robfig v3); it must agree
//!   with `spec.timeZone` if both are given.
//! - Not supported (as in robfig): `L`, `W`, `#`, a year field.
//!
//! # Time zones and daylight saving time
//!
//! Fields are matched against wall-clock time in the schedule's zone (default UTC). A wall-clock
//! time skipped by a spring-forward transition does not fire that day (as in robfig). A time
//! repeated by a fall-back transition fires once, at its first occurrence. Schedules are evaluated
//! up to the year 2100.

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::PlanError;

/// The field name used in errors about the cron expression.
const SCHEDULE_FIELD: &str = "spec.schedule";
/// The field name used in errors about the time zone.
const TIME_ZONE_FIELD: &str = "spec.timeZone";
/// A parsed, validated schedule: a cron expression (or a fixed interval) in a time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    /// The expression as written (without surrounding whitespace).
    expression: String,
    /// The zone the fields are read in.
    tz: Tz,
    /// How fire times are computed.
    kind: Kind,
}

/// How a [`CronSchedule`] fires.
#[derive(Clone, Debug)]
enum Kind {
    /// Cron fields. Two schedules when day-of-month and day-of-week are both restricted (robfig's
    /// "either matches" rule, which the `cron` crate does not implement): fire times are the union.
    Cron(Vec<cron::Schedule>),
    /// `@every <interval>`: a fixed interval (whole seconds, at least one).
    Every(TimeDelta),
}

impl CronSchedule {
    /// Velero/robfig-cron syntax: standard 5 fields (minute hour dom month dow), 6 fields with seconds,
    /// descriptors @yearly @annually @monthly @weekly @daily @midnight @hourly, and `@every <go duration>`.
    ///
    /// `time_zone` is an IANA zone name (`Europe/Berlin`); `None` or `""` means UTC. See the module
    /// documentation for the full syntax and the daylight-saving rules.
    ///
    /// # Errors
    ///
    /// - [`PlanError::InvalidCron`] (field `spec.schedule`) for a malformed expression, a value out
    ///   of range, an unknown descriptor, a bad or sub-second `@every` duration, or a day/month
    ///   combination that never occurs (`0 0 30 2 *`).
    /// - [`PlanError::UnknownTimeZone`] (field `spec.timeZone`, or `spec.schedule` for a `CRON_TZ=`
    ///   prefix) for a zone not in the IANA database.
    pub fn parse(expr: &str, time_zone: Option<&str>) -> Result<Self, PlanError> {
        let invalid = |reason: String| PlanError::InvalidCron {
            field: SCHEDULE_FIELD.to_owned(),
            expr: expr.to_owned(),
            reason,
        };
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(invalid("the expression is empty".to_owned()));
        }

        let spec_zone = match time_zone.map(str::trim).filter(|z| !z.is_empty()) {
            Some(name) => Some(parse_zone(TIME_ZONE_FIELD, name)?),
            None => None,
        };
        let (prefix_zone, body) = split_zone_prefix(trimmed);
        let prefix_zone = match prefix_zone {
            Some(name) => Some(parse_zone(SCHEDULE_FIELD, name)?),
            None => None,
        };
        let tz = match (spec_zone, prefix_zone) {
            (Some(a), Some(b)) if a != b => {
                return Err(invalid(format!(
                    "its time zone prefix {} conflicts with spec.timeZone {}",
                    b.name(),
                    a.name()
                )));
            }
            (Some(z), _) | (None, Some(z)) => z,
            (None, None) => Tz::UTC,
        };
        if body.is_empty() {
            return Err(invalid("nothing after the time zone prefix".to_owned()));
        }

        let kind = if let Some(descriptor) = body.strip_prefix('@') {
            parse_descriptor(descriptor).map_err(invalid)?
        } else {
            let fields: Vec<&str> = body.split_whitespace().collect();
            let (second, rest) = match fields.len() {
                5 => ("0", &fields[..]),
                6 => (fields[0], &fields[1..]),
                n => {
                    return Err(invalid(format!(
                        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 \
                         (with seconds first), found {n}"
                    )));
                }
            };
            cron_kind([second, rest[0], rest[1], rest[2], rest[3], rest[4]]).map_err(invalid)?
        };

        let schedule = CronSchedule {
            expression: trimmed.to_owned(),
            tz,
            kind,
        };
        if let Kind::Cron(_) = schedule.kind {
            // Without a year field, anything that can fire does so within eight years.
            let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
            if schedule.next_after(probe).is_none() {
                return Err(invalid(
                    "it never fires (no such day in the selected months)".to_owned(),
                ));
            }
        }
        Ok(schedule)
    }

    /// First fire time strictly after `t`.
    ///
    /// For `@every d` this is `t` (truncated to the second) plus `d`, as in robfig; [`super::schedule::decide`]
    /// anchors intervals on the last backup instead. `None` when the schedule does not fire again
    /// before the year 2100.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Kind::Every(interval) => truncate_to_second(t).checked_add_signed(*interval),
            Kind::Cron(schedules) => {
                let local = t.with_timezone(&self.tz);
                schedules
                    .iter()
                    .filter_map(|s| {
                        s.after(&local)
                            .map(|c| c.with_timezone(&Utc))
                            .find(|c| *c > t)
                    })
                    .min()
            }
        }
    }

    /// The latest fire time in `(anchor, now]`, counting intervals from `anchor` for `@every`.
    ///
    /// This is the slot a due schedule backs up for: after downtime it is the most recent missed
    /// slot, not the first. `None` when no slot falls in the window.
    pub fn latest_due(&self, anchor: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let first = self.next_after(anchor)?;
        if first > now {
            return None;
        }
        match &self.kind {
            Kind::Every(interval) => {
                let start = truncate_to_second(anchor);
                let step = interval.num_seconds();
                let periods = (now - start).num_seconds() / step;
                start.checked_add_signed(TimeDelta::seconds(periods * step))
            }
            Kind::Cron(schedules) => {
                // Latest slot at or before `now`: iterate backwards from just after `now`.
                let from = (now + TimeDelta::nanoseconds(1)).with_timezone(&self.tz);
                schedules
                    .iter()
                    .filter_map(|s| {
                        s.after(&from)
                            .rev()
                            .map(|c| c.with_timezone(&Utc))
                            .find(|c| *c <= now)
                    })
                    .max()
                    .map(|latest| latest.max(first))
            }
        }
    }

    /// The expression as written (trimmed), including any `CRON_TZ=` prefix.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the schedule is evaluated in (UTC unless `spec.timeZone` or a `CRON_TZ=`
    /// prefix says otherwise).
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// For `@every` schedules, the interval (whole seconds); `None` for cron fields.
    pub fn interval(&self) -> Option<std::time::Duration> {
        match &self.kind {
            Kind::Every(d) => d.to_std().ok(),
            Kind::Cron(_) => None,
        }
    }
}

/// Resolves an IANA zone name.
fn parse_zone(field: &str, name: &str) -> Result<Tz, PlanError> {
    name.parse::<Tz>().map_err(|_| PlanError::UnknownTimeZone {
        field: field.to_owned(),
        zone: name.to_owned(),
    })
}

/// Splits a robfig v3 `CRON_TZ=<zone> ` / `TZ=<zone> ` prefix off an expression.
fn split_zone_prefix(expr: &str) -> (Option<&str>, &str) {
    for prefix in ["CRON_TZ=", "TZ="] {
        if let Some(rest) = expr.strip_prefix(prefix) {
            let (zone, body) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            return (Some(zone), body.trim_start());
        }
    }
    (None, expr)
}

/// Parses what follows `@`.
fn parse_descriptor(descriptor: &str) -> Result<Kind, String> {
    let fields = match descriptor.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => ["0", "0", "0", "1", "1", "*"],
        "monthly" => ["0", "0", "0", "1", "*", "*"],
        "weekly" => ["0", "0", "0", "*", "*", "0"],
        "daily" | "midnight" => ["0", "0", "0", "*", "*", "*"],
        "hourly" => ["0", "0", "*", "*", "*", "*"],
        _ => {
            // ASCII lowercasing keeps byte offsets, so the duration is cut from the original.
            let is_every = descriptor.to_ascii_lowercase().starts_with("every")
                && descriptor[5..].starts_with(char::is_whitespace);
            let Some(duration) = is_every.then(|| descriptor[5..].trim()) else {
                return Err(format!(
                    "unknown descriptor \"@{descriptor}\" (expected @yearly, @annually, @monthly, \
                     @weekly, @daily, @midnight, @hourly or @every <duration>)"
                ));
            };
            let nanos = super::expiry::go_duration_nanos(duration)
                .map_err(|e| format!("@every: invalid duration {duration:?}: {e}"))?;
            let seconds = nanos / 1_000_000_000;
            if seconds < 1 {
                return Err(format!(
                    "@every: the interval {duration:?} is shorter than one second"
                ));
            }
            // Go's limit (about 292 years) keeps this well inside i64 seconds.
            return Ok(Kind::Every(TimeDelta::seconds(seconds as i64)));
        }
    };
    cron_kind(fields)
}

/// One cron field's rules.
struct FieldSpec {
    /// Name used in errors.
    name: &'static str,
    /// Smallest value.
    min: u32,
    /// Largest value (and the end of `*` and `a/n`).
    max: u32,
    /// Three-letter names, the first one standing for `name_base`.
    names: &'static [&'static str],
    /// Value of `names[0]`.
    name_base: u32,
    /// Whether `7` is accepted as an alias of `0` (day-of-week only).
    seven_is_zero: bool,
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    name_base: 0,
    seven_is_zero: false,
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    name_base: 0,
    seven_is_zero: false,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    name_base: 0,
    seven_is_zero: false,
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    name_base: 0,
    seven_is_zero: false,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    name_base: 1,
    seven_is_zero: false,
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    name_base: 0,
    seven_is_zero: true,
};

/// A parsed field: the set of values (bit `v` set for value `v`) and whether it was `*`/`?`
/// without a step above 1 (robfig's "star", which decides the day-of-month/day-of-week rule).
struct Parsed {
    bits: u64,
    star: bool,
}

impl FieldSpec {
    /// Parses one field of an expression with robfig's rules.
    fn parse(&self, text: &str) -> Result<Parsed, String> {
        let mut parsed = Parsed {
            bits: 0,
            star: false,
        };
        for part in text.split(',') {
            self.parse_part(text, part, &mut parsed)?;
        }
        Ok(parsed)
    }

    fn parse_part(&self, field: &str, part: &str, out: &mut Parsed) -> Result<(), String> {
        let name = self.name;
        if part.is_empty() {
            return Err(format!("{name} field {field:?}: empty list element"));
        }
        let mut slash = part.split('/');
        let range = slash.next().unwrap_or_default();
        let step = match slash.next() {
            None => None,
            Some(s) => Some(s.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| {
                format!("{name} field {field:?}: the step {s:?} is not a positive number")
            })?),
        };
        if slash.next().is_some() {
            return Err(format!(
                "{name} field {field:?}: too many slashes in {part:?}"
            ));
        }
        let (start, end) = if range == "*" || range == "?" {
            if step.is_none_or(|s| s == 1) {
                out.star = true;
            }
            (self.min, self.max)
        } else {
            let mut hyphen = range.split('-');
            let lo = hyphen.next().unwrap_or_default();
            let hi = hyphen.next();
            if hyphen.next().is_some() {
                return Err(format!(
                    "{name} field {field:?}: too many hyphens in {part:?}"
                ));
            }
            let start = self.value(field, lo)?;
            let end = match (hi, step) {
                (Some(hi), _) => self.value(field, hi)?,
                (None, Some(_)) => self.max,
                (None, None) => start,
            };
            (start, end)
        };
        let top = if self.seven_is_zero { 7 } else { self.max };
        if start < self.min {
            return Err(format!(
                "{name} field {field:?}: {start} is below the minimum {}",
                self.min
            ));
        }
        if end > top {
            return Err(format!(
                "{name} field {field:?}: {end} is above the maximum {top}"
            ));
        }
        if start > end {
            return Err(format!(
                "{name} field {field:?}: the range {part:?} starts after it ends"
            ));
        }
        let step = step.unwrap_or(1) as usize;
        for v in (start..=end).step_by(step) {
            let v = if self.seven_is_zero && v == 7 { 0 } else { v };
            out.bits |= 1u64 << v;
        }
        Ok(())
    }

    /// A single value: a number or (case-insensitive) three-letter name.
    fn value(&self, field: &str, text: &str) -> Result<u32, String> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(self.name_base + i as u32);
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse::<u32>()
                .map_err(|_| format!("{} field {field:?}: {text} is out of range", self.name));
        }
        let hint = match self.names.first() {
            Some(_) => format!(
                " or a name ({}-{})",
                self.names[0].to_ascii_uppercase(),
                self.names[self.names.len() - 1].to_ascii_uppercase()
            ),
            None => String::new(),
        };
        Err(format!(
            "{} field {field:?}: {text:?} is not a number{hint}",
            self.name
        ))
    }

    /// Renders a value set for the `cron` crate (`*`, or a comma list), adding `offset` to each.
    fn render(&self, bits: u64, offset: u32) -> String {
        let all = (self.min..=self.max).all(|v| bits & (1 << v) != 0);
        if all {
            return "*".to_owned();
        }
        (self.min..=self.max)
            .filter(|v| bits & (1 << v) != 0)
            .map(|v| (v + offset).to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Builds the `cron` crate schedule(s) for six robfig fields (second first).
fn cron_kind(fields: [&str; 6]) -> Result<Kind, String> {
    let [sec, min, hour, dom, month, dow] = fields;
    let sec = SECOND.parse(sec)?;
    let min = MINUTE.parse(min)?;
    let hour = HOUR.parse(hour)?;
    let dom = DAY_OF_MONTH.parse(dom)?;
    let month = MONTH.parse(month)?;
    let dow = DAY_OF_WEEK.parse(dow)?;

    let head = format!(
        "{} {} {}",
        SECOND.render(sec.bits, 0),
        MINUTE.render(min.bits, 0),
        HOUR.render(hour.bits, 0)
    );
    let month = MONTH.render(month.bits, 0);
    let dom_text = DAY_OF_MONTH.render(dom.bits, 0);
    // robfig numbers days of the week 0-6 from Sunday; the cron crate 1-7 from Sunday.
    let dow_text = DAY_OF_WEEK.render(dow.bits, 1);
    let expressions = if dom.star || dow.star {
        // Either is unrestricted: a day must match both (one of them matches every day).
        vec![format!("{head} {dom_text} {month} {dow_text}")]
    } else {
        // Both restricted: a day matching either fires.
        vec![
            format!("{head} {dom_text} {month} *"),
            format!("{head} * {month} {dow_text}"),
        ]
    };
    expressions
        .iter()
        .map(|e| {
            e.parse::<cron::Schedule>()
                .map_err(|err| format!("internal translation {e:?} rejected: {err}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Kind::Cron)
}

/// `t` without its fractional second.
pub(super) fn truncate_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn cron(expr: &str) -> CronSchedule {
        CronSchedule::parse(expr, None).unwrap_or_else(|e| panic!("{expr}: {e}"))
    }

    fn cron_tz(expr: &str, tz: &str) -> CronSchedule {
        CronSchedule::parse(expr, Some(tz)).unwrap_or_else(|e| panic!("{expr} in {tz}: {e}"))
    }

    /// The first `n` fire times after `t`.
    fn fires(c: &CronSchedule, mut t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        for _ in 0..n {
            t = c.next_after(t).expect("fires");
            out.push(t);
        }
        out
    }

    fn err(expr: &str) -> String {
        match CronSchedule::parse(expr, None) {
            Ok(_) => panic!("{expr:?} parsed"),
            Err(e) => e.to_string(),
        }
    }

    // 2024-05-01 is a Wednesday.

    #[test]
    fn five_fields_fire_on_the_minute() {
        let c = cron("30 2 * * *");
        assert_eq!(
            fires(&c, utc(2024, 5, 1, 0, 0, 0), 2),
            vec![utc(2024, 5, 1, 2, 30, 0), utc(2024, 5, 2, 2, 30, 0)]
        );
        let c = cron("*/15 * * * *");
        assert_eq!(
            fires(&c, utc(2024, 5, 1, 0, 7, 0), 3),
            vec![
                utc(2024, 5, 1, 0, 15, 0),
                utc(2024, 5, 1, 0, 30, 0),
                utc(2024, 5, 1, 0, 45, 0)
            ]
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        let c = cron("15,45 0 12 * * *");
        assert_eq!(
            fires(&c, utc(2024, 5, 1, 0, 0, 0), 3),
            vec![
                utc(2024, 5, 1, 12, 0, 15),
                utc(2024, 5, 1, 12, 0, 45),
                utc(2024, 5, 2, 12, 0, 15)
            ]
        );
    }

    #[test]
    fn next_after_is_strictly_after() {
        let c = cron("0 * * * *");
        assert_eq!(
            c.next_after(utc(2024, 5, 1, 3, 0, 0)),
            Some(utc(2024, 5, 1, 4, 0, 0))
        );
        let just_before = utc(2024, 5, 1, 3, 59, 59) + TimeDelta::milliseconds(999);
        assert_eq!(c.next_after(just_before), Some(utc(2024, 5, 1, 4, 0, 0)));
        let just_after = utc(2024, 5, 1, 4, 0, 0) + TimeDelta::nanoseconds(1);
        assert_eq!(c.next_after(just_after), Some(utc(2024, 5, 1, 5, 0, 0)));
    }

    #[test]
    fn descriptors() {
        let t = utc(2024, 5, 1, 10, 20, 30);
        assert_eq!(
            cron("@yearly").next_after(t),
            Some(utc(2025, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            cron("@annually").next_after(t),
            Some(utc(2025, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            cron("@monthly").next_after(t),
            Some(utc(2024, 6, 1, 0, 0, 0))
        );
        // Sunday 2024-05-05.
        assert_eq!(
            cron("@weekly").next_after(t),
            Some(utc(2024, 5, 5, 0, 0, 0))
        );
        assert_eq!(cron("@daily").next_after(t), Some(utc(2024, 5, 2, 0, 0, 0)));
        assert_eq!(
            cron("@midnight").next_after(t),
            Some(utc(2024, 5, 2, 0, 0, 0))
        );
        assert_eq!(
            cron("@hourly").next_after(t),
            Some(utc(2024, 5, 1, 11, 0, 0))
        );
        assert_eq!(cron("@Daily").next_after(t), Some(utc(2024, 5, 2, 0, 0, 0)));
        assert!(err("@fortnightly").contains("unknown descriptor \"@fortnightly\""));
        assert!(err("@everyday").contains("unknown descriptor"));
    }

    #[test]
    fn every_is_a_fixed_interval() {
        let c = cron("@every 30m");
        assert_eq!(c.interval(), Some(std::time::Duration::from_secs(1800)));
        let t = utc(2024, 5, 1, 10, 7, 3) + TimeDelta::milliseconds(500);
        assert_eq!(c.next_after(t), Some(utc(2024, 5, 1, 10, 37, 3)));
        assert_eq!(
            cron("@every 1h30m").interval(),
            Some(std::time::Duration::from_secs(5400))
        );
        // Sub-second parts are dropped, as in robfig.
        assert_eq!(
            cron("@every 1.5s").interval(),
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(cron("30 * * * *").interval(), None);
        assert!(err("@every").contains("unknown descriptor"));
        assert!(err("@every 10").contains("missing unit"));
        assert!(err("@every 1d").contains("unknown unit \"d\""));
        assert!(err("@every 500ms").contains("shorter than one second"));
        assert!(err("@every 0").contains("shorter than one second"));
        assert!(err("@every -5m").contains("shorter than one second"));
    }

    #[test]
    fn every_latest_due_counts_from_the_anchor() {
        let c = cron("@every 30m");
        let anchor = utc(2024, 5, 1, 10, 7, 0);
        assert_eq!(c.latest_due(anchor, utc(2024, 5, 1, 10, 36, 59)), None);
        assert_eq!(
            c.latest_due(anchor, utc(2024, 5, 1, 10, 37, 0)),
            Some(utc(2024, 5, 1, 10, 37, 0))
        );
        assert_eq!(
            c.latest_due(anchor, utc(2024, 5, 1, 15, 0, 0)),
            Some(utc(2024, 5, 1, 14, 37, 0))
        );
    }

    #[test]
    fn day_of_week_numbers_and_names() {
        let t = utc(2024, 5, 1, 0, 0, 0); // Wednesday
        let sunday = Some(utc(2024, 5, 5, 0, 0, 0));
        assert_eq!(cron("0 0 * * 0").next_after(t), sunday);
        assert_eq!(cron("0 0 * * 7").next_after(t), sunday);
        assert_eq!(cron("0 0 * * SUN").next_after(t), sunday);
        assert_eq!(cron("0 0 * * sun").next_after(t), sunday);
        // Monday = 1 in robfig (the cron crate would read 1 as Sunday).
        assert_eq!(
            cron("0 0 * * 1").next_after(t),
            Some(utc(2024, 5, 6, 0, 0, 0))
        );
        assert_eq!(
            cron("0 0 * * 6").next_after(t),
            Some(utc(2024, 5, 4, 0, 0, 0))
        );
        assert_eq!(
            cron("0 0 * * 3").next_after(t),
            Some(utc(2024, 5, 8, 0, 0, 0))
        );
    }

    /// Days of the week (0 = Sunday) on which `c` fires in the week of 2024-05-05 (Sun) .. 05-11.
    fn weekdays(c: &CronSchedule) -> Vec<u32> {
        use chrono::Datelike;
        let mut t = utc(2024, 5, 4, 23, 59, 59);
        let mut days = Vec::new();
        while let Some(n) = c.next_after(t) {
            if n >= utc(2024, 5, 12, 0, 0, 0) {
                break;
            }
            days.push(n.weekday().num_days_from_sunday());
            t = n;
        }
        days
    }

    #[test]
    fn day_of_week_ranges_lists_and_steps() {
        assert_eq!(weekdays(&cron("0 0 * * 1-5")), vec![1, 2, 3, 4, 5]);
        assert_eq!(weekdays(&cron("0 0 * * MON-FRI")), vec![1, 2, 3, 4, 5]);
        assert_eq!(weekdays(&cron("0 0 * * 0,6")), vec![0, 6]);
        assert_eq!(weekdays(&cron("0 0 * * SAT,SUN")), vec![0, 6]);
        assert_eq!(weekdays(&cron("0 0 * * 5-7")), vec![0, 5, 6]);
        assert_eq!(weekdays(&cron("0 0 * * 0-7")), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(weekdays(&cron("0 0 * * */2")), vec![0, 2, 4, 6]);
        assert_eq!(weekdays(&cron("0 0 * * 1-7/2")), vec![0, 1, 3, 5]);
        assert_eq!(weekdays(&cron("0 0 * * 1/2")), vec![1, 3, 5]);
        assert_eq!(weekdays(&cron("0 0 * * 0,3-4,FRI")), vec![0, 3, 4, 5]);
        assert_eq!(weekdays(&cron("0 0 * * ?")), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(weekdays(&cron("0 0 * * *")), vec![0, 1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn day_of_month_and_day_of_week_both_set_means_either() {
        // robfig/Vixie: the 1st of the month OR any Monday.
        let c = cron("0 0 1 * MON");
        assert_eq!(
            fires(&c, utc(2024, 4, 26, 0, 0, 0), 4),
            vec![
                utc(2024, 4, 29, 0, 0, 0), // Monday
                utc(2024, 5, 1, 0, 0, 0),  // the 1st (a Wednesday)
                utc(2024, 5, 6, 0, 0, 0),  // Monday
                utc(2024, 5, 13, 0, 0, 0),
            ]
        );
        // With one side `*`, the other restricts alone.
        assert_eq!(
            cron("0 0 1 * *").next_after(utc(2024, 5, 2, 0, 0, 0)),
            Some(utc(2024, 6, 1, 0, 0, 0))
        );
        assert_eq!(
            cron("0 0 * * MON").next_after(utc(2024, 5, 2, 0, 0, 0)),
            Some(utc(2024, 5, 6, 0, 0, 0))
        );
        // A stepped star is a restriction (robfig): days 1,3,5… OR Sundays.
        let c = cron("0 0 */2 * 0");
        assert_eq!(
            fires(&c, utc(2024, 5, 1, 0, 0, 0), 3),
            vec![
                utc(2024, 5, 3, 0, 0, 0),
                utc(2024, 5, 5, 0, 0, 0), // odd day and Sunday: once
                utc(2024, 5, 7, 0, 0, 0),
            ]
        );
        // The latest due slot also considers both.
        assert_eq!(
            cron("0 0 1 * MON").latest_due(utc(2024, 4, 28, 0, 0, 0), utc(2024, 5, 3, 0, 0, 0)),
            Some(utc(2024, 5, 1, 0, 0, 0))
        );
    }

    #[test]
    fn months_by_number_and_name() {
        let t = utc(2024, 5, 1, 0, 0, 0);
        assert_eq!(
            cron("0 0 1 JAN,jul *").next_after(t),
            Some(utc(2024, 7, 1, 0, 0, 0))
        );
        assert_eq!(
            cron("0 0 1 1-3 *").next_after(t),
            Some(utc(2025, 1, 1, 0, 0, 0))
        );
        // Leap day.
        assert_eq!(
            cron("0 0 29 2 *").next_after(t),
            Some(utc(2028, 2, 29, 0, 0, 0))
        );
    }

    #[test]
    fn bad_expressions_are_rejected_with_the_field_named() {
        let e = err("61 * * * *");
        assert!(
            e.starts_with("spec.schedule: invalid cron expression \"61 * * * *\": "),
            "{e}"
        );
        assert!(
            e.contains("minute field \"61\": 61 is above the maximum 59"),
            "{e}"
        );
        for (expr, reason) in [
            ("", "empty"),
            ("   ", "empty"),
            ("* * * *", "found 4"),
            ("* * * * * * *", "found 7"),
            (
                "* 24 * * *",
                "hour field \"24\": 24 is above the maximum 23",
            ),
            (
                "* * 0 * *",
                "day-of-month field \"0\": 0 is below the minimum 1",
            ),
            ("* * 32 * *", "above the maximum 31"),
            (
                "* * * 13 *",
                "month field \"13\": 13 is above the maximum 12",
            ),
            (
                "* * * * 8",
                "day-of-week field \"8\": 8 is above the maximum 7",
            ),
            ("60 * * * * *", "second field \"60\""),
            (
                "* * * * MONDAY",
                "\"MONDAY\" is not a number or a name (SUN-SAT)",
            ),
            ("* * * FOO *", "or a name (JAN-DEC)"),
            ("x * * * *", "\"x\" is not a number"),
            ("-1 * * * *", "is not a number"),
            ("5-1 * * * *", "the range \"5-1\" starts after it ends"),
            ("1-2-3 * * * *", "too many hyphens"),
            ("*/0 * * * *", "the step \"0\" is not a positive number"),
            ("*/x * * * *", "is not a positive number"),
            ("*/2/3 * * * *", "too many slashes"),
            ("1,,2 * * * *", "empty list element"),
            ("L * * * *", "is not a number"),
            ("0 0 * * 5L", "is not a number"),
            ("0 0 * * 1#2", "is not a number"),
            ("0 0 30 2 *", "never fires"),
            ("0 0 31 4,6,9,11 *", "never fires"),
            ("99999999999 * * * *", "out of range"),
        ] {
            let e = err(expr);
            assert!(
                e.starts_with("spec.schedule: invalid cron expression"),
                "{e}"
            );
            assert!(e.contains(reason), "{expr:?}: {e}");
        }
    }

    #[test]
    fn time_zone_follows_daylight_saving() {
        // 02:00 in Berlin: 01:00 UTC in winter (CET), 00:00 UTC in summer (CEST).
        let c = cron_tz("0 2 * * *", "Europe/Berlin");
        assert_eq!(c.time_zone(), chrono_tz::Europe::Berlin);
        assert_eq!(
            c.next_after(utc(2024, 1, 15, 12, 0, 0)),
            Some(utc(2024, 1, 16, 1, 0, 0))
        );
        assert_eq!(
            c.next_after(utc(2024, 7, 15, 12, 0, 0)),
            Some(utc(2024, 7, 16, 0, 0, 0))
        );
        // Across the spring-forward night (2024-03-31, 02:00 does not exist): skipped that day.
        assert_eq!(
            fires(&c, utc(2024, 3, 29, 12, 0, 0), 3),
            vec![
                utc(2024, 3, 30, 1, 0, 0),
                utc(2024, 4, 1, 0, 0, 0),
                utc(2024, 4, 2, 0, 0, 0)
            ]
        );
        // Across the fall-back night (2024-10-27, 02:00-03:00 happens twice): fires once.
        let c = cron_tz("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            fires(&c, utc(2024, 10, 26, 12, 0, 0), 2),
            vec![utc(2024, 10, 27, 0, 30, 0), utc(2024, 10, 28, 1, 30, 0)]
        );
        // The latest due slot in the repeated hour is not after `now`.
        let now = utc(2024, 10, 27, 0, 45, 0); // 02:45 CEST, first pass
        assert_eq!(
            c.latest_due(utc(2024, 10, 26, 12, 0, 0), now),
            Some(utc(2024, 10, 27, 0, 30, 0))
        );
        let now = utc(2024, 10, 27, 1, 45, 0); // 02:45 CET, second pass
        assert_eq!(
            c.latest_due(utc(2024, 10, 26, 12, 0, 0), now),
            Some(utc(2024, 10, 27, 1, 30, 0))
        );
    }

    #[test]
    fn hourly_across_fall_back_never_goes_backwards() {
        let c = cron_tz("0 * * * *", "Europe/Berlin");
        let times = fires(&c, utc(2024, 10, 26, 22, 30, 0), 6);
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        assert_eq!(times[0], utc(2024, 10, 26, 23, 0, 0));
    }

    #[test]
    fn time_zones_from_spec_and_prefix() {
        let c = cron_tz("0 9 * * *", "America/New_York");
        assert_eq!(
            c.next_after(utc(2024, 1, 15, 0, 0, 0)),
            Some(utc(2024, 1, 15, 14, 0, 0))
        );
        let c = cron("CRON_TZ=Asia/Tokyo 0 9 * * *");
        assert_eq!(c.time_zone(), chrono_tz::Asia::Tokyo);
        assert_eq!(c.expression(), "CRON_TZ=Asia/Tokyo 0 9 * * *");
        assert_eq!(
            c.next_after(utc(2024, 1, 15, 12, 0, 0)),
            Some(utc(2024, 1, 16, 0, 0, 0))
        );
        assert_eq!(
            cron("TZ=Asia/Tokyo @daily").time_zone(),
            chrono_tz::Asia::Tokyo
        );
        // Agreeing prefix and field are fine; "" and None mean UTC.
        assert!(CronSchedule::parse("CRON_TZ=Asia/Tokyo @daily", Some("Asia/Tokyo")).is_ok());
        assert_eq!(cron_tz("@daily", "").time_zone(), Tz::UTC);
        assert_eq!(cron("@daily").time_zone(), Tz::UTC);
    }

    #[test]
    fn bad_time_zones_name_their_field() {
        let e = CronSchedule::parse("0 2 * * *", Some("Mars/Base")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.timeZone: unknown time zone \"Mars/Base\""
        );
        assert_eq!(
            e,
            PlanError::UnknownTimeZone {
                field: "spec.timeZone".into(),
                zone: "Mars/Base".into()
            }
        );
        let e = CronSchedule::parse("CRON_TZ=Mars/Base 0 2 * * *", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.schedule: unknown time zone \"Mars/Base\""
        );
        let e = CronSchedule::parse("CRON_TZ=Asia/Tokyo 0 2 * * *", Some("Europe/Berlin"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("conflicts with spec.timeZone Europe/Berlin"),
            "{e}"
        );
        assert!(err("CRON_TZ=UTC").contains("nothing after the time zone prefix"));
    }
}
