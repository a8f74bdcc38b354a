//! Backup expiry (TTL) and the one duration dialect of tidemark.
//!
//! Velero's `ttl`, a Location's `syncPeriod` and `validationPeriod` are Kubernetes
//! `metav1.Duration`s: strings in Go's `time.ParseDuration` syntax (`720h`, `1h30m`, `90s`, `0`).
//! [`parse_duration`] accepts that syntax and, for what people type, humantime's (`3days`,
//! `2weeks`, `1h 30m`), the same in manifests, command-line flags, the server's configuration
//! file and environment variables; [`expired`] decides whether a backup is past its
//! `status.expiration`.

use chrono::{DateTime, Utc};

use super::PlanError;

/// Whether a backup has expired: its expiration time is at or before `now`.
///
/// `None` (no TTL, or a record without `status.expiration`) never expires.
pub fn expired(expiration: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expiration.is_some_and(|e| e <= now)
}

/// What the Backup controller does with a record now ([`decide_backup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackupDecision {
    /// Run the backup (phase unset or `New`).
    Start,
    /// A `New` record imported by the store sync: not the controller's to run; look again soon.
    AwaitSync,
    /// Nothing to do until the record changes (running, failed validation, being deleted, no
    /// TTL).
    Wait,
    /// Delete it: its TTL passed (or its deletion, phase `Deleting`, was started already).
    Expire,
    /// Look again at its expiration time.
    ExpireAt(DateTime<Utc>),
}

/// The Backup controller's decision for a record, and `tidemark plan`'s list of what expires:
/// `phase` (`status.phase`), whether the store sync imported it (`synced`), whether it is
/// being deleted (`metadata.deletionTimestamp`), its `status.expiration`, and `now`. Records
/// not finished (`New`, `InProgress`) and `FailedValidation` ones never expire.
pub fn decide_backup(
    phase: Option<&str>,
    synced: bool,
    deleting: bool,
    expiration: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> BackupDecision {
    if deleting {
        return BackupDecision::Wait;
    }
    match phase {
        None | Some("New") if synced => BackupDecision::AwaitSync,
        None | Some("New") => BackupDecision::Start,
        Some("InProgress") | Some("FailedValidation") => BackupDecision::Wait,
        Some("Deleting") => BackupDecision::Expire,
        Some(_) if expired(expiration, now) => BackupDecision::Expire,
        Some(_) => match expiration {
            Some(t) => BackupDecision::ExpireAt(t),
            None => BackupDecision::Wait,
        },
    }
}

/// Parses a duration as used in `ttl`, `syncPeriod`, `validationPeriod`, `--ttl`,
/// `--wait-timeout` and every other duration of tidemark: Go's syntax first, then humantime's.
///
/// Go's syntax (`time.ParseDuration`, what Velero and Kubernetes write): an optional `+` sign,
/// then one or more decimal numbers (with optional fraction) each followed by a unit: `ns`, `us`
/// (or `µs`/`μs`), `ms`, `s`, `m`, `h`; a bare `0` is allowed without a unit. Text that is not Go
/// syntax is read by the `humantime` crate, which adds days, weeks, months (30.44 days) and years
/// (365.25 days) and spaces between parts (`3days`, `2w`, `1h 30m`); see
/// <https://docs.rs/humantime/latest/humantime/fn.parse_duration.html>.
///
/// # Errors
///
/// [`PlanError::InvalidDuration`] naming `field` when neither syntax reads the text, or it is
/// negative, or exceeds Go's limit (2^63-1 ns, about 292 years); the reason is Go's.
pub fn parse_duration(field: &str, s: &str) -> Result<std::time::Duration, PlanError> {
    duration(s).map_err(|reason| PlanError::InvalidDuration {
        field: field.to_owned(),
        value: s.to_owned(),
        reason,
    })
}

/// [`parse_duration`] without a field: the error is the reason alone (for command-line flags,
/// whose parser names the flag).
///
/// # Errors
/// Why the text is not a duration.
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    let nanos = match go_duration_nanos(s) {
        Ok(n) => n,
        Err(go) => {
            return humantime::parse_duration(s)
                .ok()
                .filter(|d| d.as_nanos() <= MAX_NANOS)
                .ok_or_else(|| {
                    format!("{go} (write e.g. \"720h\", \"1h30m\", \"90s\" or \"3days\")")
                });
        }
    };
    if nanos < 0 {
        return Err("must not be negative".to_owned());
    }
    let nanos = u64::try_from(nanos).map_err(|_| "too large".to_owned())?;
    Ok(std::time::Duration::from_nanos(nanos))
}

/// Largest duration Go accepts, in nanoseconds (`math.MaxInt64`).
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses Go's duration syntax into signed nanoseconds; the error is a reason without the field.
pub(crate) fn go_duration_nanos(s: &str) -> Result<i128, String> {
    let (negative, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err("empty duration (expected e.g. \"720h\" or \"1h30m\")".to_owned());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(format!("expected a number at {rest:?}"));
        }
        let unit_len = rest
            .char_indices()
            .find(|&(_, c)| c == '.' || c.is_ascii_digit())
            .map_or(rest.len(), |(i, _)| i);
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let per_unit: u128 = match unit {
            "" => {
                return Err("missing unit (valid units: ns, us, ms, s, m, h)".to_owned());
            }
            "ns" => 1,
            "us" | "\u{00b5}s" | "\u{03bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            other => {
                return Err(format!(
                    "unknown unit {other:?} (valid units: ns, us, ms, s, m, h)"
                ));
            }
        };
        let too_large = || "too large (the maximum is 2562047h47m16.854775807s)".to_owned();
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| too_large())?
        };
        let mut value = whole.checked_mul(per_unit).ok_or_else(too_large)?;
        if !frac_part.is_empty() {
            // Digits beyond the 18th cannot add a nanosecond even to hours; Go truncates too.
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().map_err(|_| too_large())?;
            let scale = 10u128.pow(digits.len() as u32);
            value = value
                .checked_add(frac * per_unit / scale)
                .ok_or_else(too_large)?;
        }
        total = total.checked_add(value).ok_or_else(too_large)?;
        if total > MAX_NANOS + u128::from(negative) {
            return Err(too_large());
        }
    }
    let total = total as i128;
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_records_start_wait_or_expire() {
        use chrono::TimeZone;
        let now = Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let past = Some(now - chrono::TimeDelta::hours(1));
        let later = now + chrono::TimeDelta::hours(1);
        use BackupDecision::*;
        assert_eq!(decide_backup(None, false, false, None, now), Start);
        assert_eq!(
            decide_backup(Some("New"), true, false, None, now),
            AwaitSync
        );
        assert_eq!(
            decide_backup(Some("InProgress"), false, false, past, now),
            Wait
        );
        assert_eq!(
            decide_backup(Some("FailedValidation"), false, false, past, now),
            Wait
        );
        assert_eq!(
            decide_backup(Some("Deleting"), false, false, None, now),
            Expire
        );
        assert_eq!(
            decide_backup(Some("Completed"), false, false, past, now),
            Expire
        );
        assert_eq!(
            decide_backup(Some("Failed"), false, false, past, now),
            Expire
        );
        assert_eq!(
            decide_backup(Some("Completed"), false, false, Some(later), now),
            ExpireAt(later)
        );
        assert_eq!(
            decide_backup(Some("Completed"), false, false, None, now),
            Wait
        );
        assert_eq!(
            decide_backup(Some("Completed"), false, true, past, now),
            Wait
        );
    }
    use chrono::TimeZone;
    use std::time::Duration;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, h, m, s).unwrap()
    }

    #[test]
    fn no_ttl_never_expires() {
        assert!(!expired(None, t(0, 0, 0)));
    }

    #[test]
    fn expires_at_and_after_the_expiration() {
        let e = t(12, 0, 0);
        assert!(!expired(Some(e), t(11, 59, 59)));
        assert!(expired(Some(e), t(12, 0, 0)));
        assert!(expired(Some(e), t(12, 0, 1)));
    }

    fn ok(s: &str) -> Duration {
        parse_duration("spec.template.ttl", s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(ok("720h"), Duration::from_secs(720 * 3600));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("0"), Duration::ZERO);
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("-0"), Duration::ZERO);
        assert_eq!(ok("+5m"), Duration::from_secs(300));
        assert_eq!(ok("1.5h"), Duration::from_secs(5400));
        assert_eq!(ok(".5s"), Duration::from_millis(500));
        assert_eq!(ok("1.s"), Duration::from_secs(1));
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("10μs"), Duration::from_micros(10));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
        assert_eq!(
            ok("1h1m1s1ms1us1ns"),
            Duration::from_nanos(3_661_001_001_001)
        );
        assert_eq!(ok("1m1m"), Duration::from_secs(120));
        assert_eq!(
            ok("2562047h47m16.854775807s"),
            Duration::from_nanos(i64::MAX as u64)
        );
    }

    #[test]
    fn rejects_bad_durations_naming_the_field() {
        for (input, reason) in [
            ("", "empty duration"),
            ("-", "empty duration"),
            ("1", "missing unit"),
            ("1x", "unknown unit \"x\""),
            ("h", "expected a number"),
            (".h", "expected a number"),
            ("1h-30m", "unknown unit \"h-\""),
            ("soon", "expected a number"),
            ("3 eons", "unknown unit \" eons\""),
            ("-1h", "must not be negative"),
            ("2562047h47m16.854775808s", "too large"),
            ("99999999999999999999999999999999999999999h", "too large"),
        ] {
            let err = parse_duration("spec.syncPeriod", input).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("spec.syncPeriod: invalid duration {input:?}: ")),
                "{msg}"
            );
            assert!(msg.contains(reason), "{input:?}: {msg}");
        }
    }

    #[test]
    fn what_people_type_reads_too_in_manifests_and_flags_alike() {
        assert_eq!(ok("3days"), Duration::from_secs(3 * 86_400));
        assert_eq!(ok("1d"), Duration::from_secs(86_400));
        assert_eq!(ok("2weeks"), Duration::from_secs(14 * 86_400));
        assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
        assert_eq!(duration("3days"), Ok(Duration::from_secs(3 * 86_400)));
        assert_eq!(duration("720h"), Ok(Duration::from_secs(720 * 3600)));
        let err = duration("soon").unwrap_err();
        assert!(err.contains("3days"), "{err}");
    }

    #[test]
    fn signed_nanos_allow_negative_for_internal_use() {
        assert_eq!(go_duration_nanos("-1s"), Ok(-1_000_000_000));
        assert_eq!(
            go_duration_nanos("-2562047h47m16.854775808s"),
            Ok(i64::MIN as i128)
        );
    }
}
