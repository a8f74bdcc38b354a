//! Prometheus metrics, with Velero's metric names where Velero has them
//! (`pkg/metrics/metrics.go`: `velero_backup_total`, `velero_backup_success_total`, ...), so
//! existing dashboards and alerts keep working; tidemark-only metrics are `tidemark_*`.

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The controller's metrics.
pub struct Metrics {
    registry: Registry,
    /// Backups attempted, by schedule (`""` for none).
    pub backup_total: IntCounterVec,
    /// Backups Completed.
    pub backup_success: IntCounterVec,
    /// Backups PartiallyFailed.
    pub backup_partial: IntCounterVec,
    /// Backups Failed.
    pub backup_failure: IntCounterVec,
    /// Backup durations, seconds.
    pub backup_duration: HistogramVec,
    /// Items in the last backup.
    pub backup_items: GaugeVec,
    /// Unix time of the last Completed backup, by schedule.
    pub backup_last_success: GaugeVec,
    /// Backups deleted by TTL expiry.
    pub backup_expired: IntCounterVec,
    /// Restore drills of backups, by schedule and result (`verified`, `not_verified`, `failed`).
    pub backup_verification: IntCounterVec,
    /// Failed reconciles, by kind and reason ([`super::errors::Failure`]).
    pub reconcile_errors: IntCounterVec,
    /// `tidemark_reconcile_total{kind}`: reconciles started, by kind.
    pub reconciles: IntCounterVec,
    /// Restores attempted.
    pub restore_total: IntCounterVec,
    /// Restores Completed.
    pub restore_success: IntCounterVec,
    /// Restores PartiallyFailed.
    pub restore_partial: IntCounterVec,
    /// Restores Failed.
    pub restore_failed: IntCounterVec,
    /// 1 when a location is Available, 0 otherwise.
    pub location_available: GaugeVec,
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let backup_duration = HistogramVec::new(
            HistogramOpts::new(
                "velero_backup_duration_seconds",
                "Time taken to complete a backup, in seconds",
            )
            .buckets(vec![
                1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0,
            ]),
            &["schedule"],
        )
        .expect("valid metric");
        r.register(Box::new(backup_duration.clone()))
            .expect("unique metric");
        Self {
            backup_total: counter(
                &r,
                "velero_backup_attempt_total",
                "Total number of attempted backups",
                &["schedule"],
            ),
            backup_success: counter(
                &r,
                "velero_backup_success_total",
                "Total number of successful backups",
                &["schedule"],
            ),
            backup_partial: counter(
                &r,
                "velero_backup_partial_failure_total",
                "Total number of partially failed backups",
                &["schedule"],
            ),
            backup_failure: counter(
                &r,
                "velero_backup_failure_total",
                "Total number of failed backups",
                &["schedule"],
            ),
            backup_duration,
            backup_items: gauge(
                &r,
                "velero_backup_items_total",
                "Total number of items backed up",
                &["schedule"],
            ),
            backup_last_success: gauge(
                &r,
                "velero_backup_last_successful_timestamp",
                "Last time a backup ran successfully, Unix timestamp in seconds",
                &["schedule"],
            ),
            backup_expired: counter(
                &r,
                "tidemark_backup_expired_total",
                "Backups deleted because their TTL passed",
                &["location"],
            ),
            backup_verification: counter(
                &r,
                "tidemark_backup_verification_total",
                "Restore drills of backups, by result: verified, not_verified (objects missing or different), failed (the drill could not run)",
                &["schedule", "result"],
            ),
            reconcile_errors: counter(
                &r,
                "tidemark_reconcile_errors_total",
                "Reconciles that failed with an API error, by kind and reason (Throttled, ServerError, Conflict, Expired, Unreachable: retried with backoff; Forbidden, NotFound, Invalid, Other: retried after 5 minutes)",
                &["kind", "reason"],
            ),
            reconciles: counter(
                &r,
                "tidemark_reconcile_total",
                "Reconciles started, by kind (each one sees the objects as they were when it started)",
                &["kind"],
            ),
            restore_total: counter(
                &r,
                "velero_restore_attempt_total",
                "Total number of attempted restores",
                &["schedule"],
            ),
            restore_success: counter(
                &r,
                "velero_restore_success_total",
                "Total number of successful restores",
                &["schedule"],
            ),
            restore_partial: counter(
                &r,
                "velero_restore_partial_failure_total",
                "Total number of partially failed restores",
                &["schedule"],
            ),
            restore_failed: counter(
                &r,
                "velero_restore_failed_total",
                "Total number of failed restores",
                &["schedule"],
            ),
            location_available: gauge(
                &r,
                "tidemark_location_available",
                "1 when the location is Available",
                &["location"],
            ),
            registry: r,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_velero_names() {
        let m = Metrics::new();
        m.backup_success.with_label_values(&["nightly"]).inc();
        m.location_available
            .with_label_values(&["default"])
            .set(1.0);
        let text = m.render();
        assert!(
            text.contains("velero_backup_success_total{schedule=\"nightly\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("tidemark_location_available{location=\"default\"} 1"),
            "{text}"
        );
    }
}
