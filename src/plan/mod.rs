//! The pure planner (DESIGN §1): functions from (desired, observed, now) to decisions.
//!
//! Nothing here does I/O, reads the clock or talks to the cluster: time is always a parameter, so
//! every decision is reproducible and unit-tested in the same file. The controller, the Git
//! reconciler and `tidemark plan` all call these functions and carry out what they return.
//!
//! - [`schedule`]: cron parsing (Velero/robfig syntax, time zones) and when a Schedule backs up.
//! - [`labels`]: which labels/annotations a record inherits (never GitOps tracking metadata).
//! - [`sync`]: reconciling Backup records with the object store, the source of truth.
//! - [`expiry`]: TTL expiry and Go-style duration parsing.
//! - [`restore_plan`]: a RestorePlan runs once per distinct spec.
//! - [`retention`]: grandfather-father-son retention of a Schedule's backups.
//! - [`gitsource`]: whether a GitSource polls, and its status after a pass.
//!
//! Invalid input is reported as [`PlanError`], whose messages name the offending field
//! (`spec.schedule`, `spec.timeZone`, `spec.template.ttl`…) so they can go straight into a
//! `Stalled` condition.

pub mod cron;
pub mod expiry;
pub mod gitsource;
pub mod labels;
pub mod restore_plan;
pub mod retention;
pub mod schedule;
pub mod sync;

use sha2::{Digest, Sha256};

/// Invalid desired state found while planning. Every variant names the field it is about.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A cron expression that Velero (robfig/cron) syntax does not accept, or that never fires.
    #[error("{field}: invalid cron expression {expr:?}: {reason}")]
    InvalidCron {
        /// The field holding the expression, e.g. `spec.schedule`.
        field: String,
        /// The expression as written.
        expr: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A time zone name that is not in the IANA database (as bundled by `chrono-tz`).
    #[error("{field}: unknown time zone {zone:?}")]
    UnknownTimeZone {
        /// The field holding the zone, e.g. `spec.timeZone`.
        field: String,
        /// The zone as written.
        zone: String,
    },
    /// A Go-style duration (`720h`, `1h30m`) that does not parse or is out of range.
    #[error("{field}: invalid duration {value:?}: {reason}")]
    InvalidDuration {
        /// The field holding the duration, e.g. `spec.template.ttl`.
        field: String,
        /// The duration as written.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
}

/// Fits `base` into `max` bytes for use as the first part of a generated object name.
///
/// Names that fit are returned unchanged. Longer ones keep their first `max - 7` characters
/// (trailing `-`/`.` trimmed, so the result stays a valid DNS-1123 subdomain prefix) followed by
/// `-` and 6 hex characters of the sha256 of the whole `base`, so two long names sharing a prefix
/// still produce different results.
pub(crate) fn fit_name(base: &str, max: usize) -> String {
    if base.len() <= max {
        return base.to_owned();
    }
    let digest = hex::encode(Sha256::digest(base.as_bytes()));
    let keep = max.saturating_sub(7);
    let mut cut = keep.min(base.len());
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = base[..cut].trim_end_matches(['-', '.']);
    if head.is_empty() {
        return digest[..max.min(6)].to_owned();
    }
    format!("{head}-{}", &digest[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_name_keeps_short_names() {
        assert_eq!(fit_name("nightly", 48), "nightly");
        let exact = "a".repeat(48);
        assert_eq!(fit_name(&exact, 48), exact);
    }

    #[test]
    fn fit_name_truncates_with_a_disambiguating_hash() {
        let a = format!("{}-a", "x".repeat(60));
        let b = format!("{}-b", "x".repeat(60));
        let fa = fit_name(&a, 48);
        let fb = fit_name(&b, 48);
        assert_eq!(fa.len(), 48);
        assert_eq!(fb.len(), 48);
        assert_ne!(fa, fb);
        assert!(fa.starts_with(&"x".repeat(41)));
        // Deterministic.
        assert_eq!(fa, fit_name(&a, 48));
    }

    #[test]
    fn fit_name_trims_separators_before_the_hash() {
        // The cut lands right after a '.', which must not be followed by '-'.
        let base = format!("{}.{}", "a".repeat(40), "b".repeat(30));
        let fitted = fit_name(&base, 48);
        assert!(!fitted.contains(".-"), "{fitted}");
        assert!(fitted.len() <= 48);
    }

    #[test]
    fn plan_error_messages_name_the_field() {
        let e = PlanError::InvalidCron {
            field: "spec.schedule".into(),
            expr: "61 * * * *".into(),
            reason: "minute 61 is above the maximum 59".into(),
        };
        assert_eq!(
            e.to_string(),
            "spec.schedule: invalid cron expression \"61 * * * *\": minute 61 is above the maximum 59"
        );
        let e = PlanError::UnknownTimeZone {
            field: "spec.timeZone".into(),
            zone: "Mars/Base".into(),
        };
        assert_eq!(
            e.to_string(),
            "spec.timeZone: unknown time zone \"Mars/Base\""
        );
    }
}
