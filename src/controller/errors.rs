//! What the controllers do when a reconcile fails with an API error: tell transient failures
//! (throttling, server errors, conflicts, timeouts) from permanent ones (forbidden, invalid),
//! count each as `tidemark_reconcile_errors_total{kind, reason}`, and requeue the object with
//! its own exponential backoff — 2 s doubling to 5 min for transient failures, 5 min at once for
//! permanent ones — reset by its next successful reconcile (as kube-rs' controller examples do).
//! Failures the controllers understand (an invalid spec, a missing Location) never get here:
//! they are written as `Stalled` conditions by the reconcilers themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::Context;

/// First retry after a transient failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Longest wait between retries, and the wait after a permanent failure.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How a reconcile failure is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Worth retrying soon; the reason names the cause for the metric.
    Transient(&'static str),
    /// Retrying soon will not help (a person must act); the reason names the cause.
    Permanent(&'static str),
}

impl Failure {
    /// Judges a client error: 429 `Throttled`, 5xx `ServerError`, 409 `Conflict`, 410 `Expired`,
    /// connection, timeout and other service errors `Unreachable`; 401/403 `Forbidden`, 404
    /// `NotFound`, 400/422 `Invalid`, the rest `Other` (permanent).
    pub fn of(e: &kube::Error) -> Failure {
        match e {
            kube::Error::Api(s) => match s.code {
                429 => Failure::Transient("Throttled"),
                409 => Failure::Transient("Conflict"),
                410 => Failure::Transient("Expired"),
                500..=599 => Failure::Transient("ServerError"),
                401 | 403 => Failure::Permanent("Forbidden"),
                404 => Failure::Permanent("NotFound"),
                400 | 422 => Failure::Permanent("Invalid"),
                _ => Failure::Permanent("Other"),
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => {
                Failure::Transient("Unreachable")
            }
            _ => Failure::Permanent("Other"),
        }
    }

    /// The reason, for the metric and the log.
    pub fn reason(self) -> &'static str {
        match self {
            Failure::Transient(r) | Failure::Permanent(r) => r,
        }
    }
}

/// The wait before the `attempt`-th retry (1-based) of a transient failure: [`BACKOFF_BASE`]
/// doubled each time, at most [`BACKOFF_MAX`].
pub fn backoff(attempt: u32) -> Duration {
    let factor = 1u64 << attempt.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(factor as u32).min(BACKOFF_MAX)
}

/// Consecutive failures per object (`kind/namespace/name`), shared by the controllers.
#[derive(Debug, Default)]
pub struct Failures(Mutex<HashMap<String, u32>>);

impl Failures {
    fn key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
        format!(
            "{}/{}/{}",
            K::kind(&()),
            obj.namespace().unwrap_or_default(),
            obj.name_any()
        )
    }

    /// Counts a failure of `obj`; the number of consecutive ones now.
    pub fn failed<K: Resource<DynamicType = ()>>(&self, obj: &K) -> u32 {
        let mut m = self.0.lock().expect("failures lock");
        let n = m.entry(Self::key(obj)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets `obj`'s failures (it reconciled).
    pub fn succeeded<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        self.0
            .lock()
            .expect("failures lock")
            .remove(&Self::key(obj));
    }
}

/// Runs `reconcile` and forgets the object's failures when it succeeds.
///
/// # Errors
/// The reconcile's error (then [`error_policy`] decides when to retry).
pub async fn reconciled<K, F, Fut>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, kube::Error>
where
    K: Resource<DynamicType = ()>,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, kube::Error>>,
{
    let r = reconcile(obj.clone(), ctx.clone()).await;
    if r.is_ok() {
        ctx.failures.succeeded(obj.as_ref());
    }
    r
}

/// The error policy of every controller: logs, counts and requeues with the object's backoff.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    err: &kube::Error,
    ctx: Arc<Context>,
) -> Action {
    let kind = K::kind(&());
    let failure = Failure::of(err);
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[&kind, failure.reason()])
        .inc();
    let attempt = ctx.failures.failed(obj.as_ref());
    let wait = match failure {
        Failure::Transient(_) => backoff(attempt),
        Failure::Permanent(_) => BACKOFF_MAX,
    };
    tracing::warn!(
        kind = %kind,
        name = %obj.name_any(),
        reason = failure.reason(),
        attempt,
        "reconcile failed, retrying in {wait:?}: {err}"
    );
    Action::requeue(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("m", "r")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn transient_and_permanent_failures() {
        assert_eq!(Failure::of(&api(429)), Failure::Transient("Throttled"));
        assert_eq!(Failure::of(&api(503)), Failure::Transient("ServerError"));
        assert_eq!(Failure::of(&api(409)), Failure::Transient("Conflict"));
        assert_eq!(Failure::of(&api(403)), Failure::Permanent("Forbidden"));
        assert_eq!(Failure::of(&api(422)), Failure::Permanent("Invalid"));
        assert_eq!(
            Failure::of(&kube::Error::Service("timed out".into())),
            Failure::Transient("Unreachable")
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(9), BACKOFF_MAX);
        assert_eq!(backoff(60), BACKOFF_MAX);
    }

    #[test]
    fn failures_count_per_object_until_it_succeeds() {
        let f = Failures::default();
        let mut a = k8s_openapi::api::core::v1::ConfigMap::default();
        a.metadata.name = Some("a".into());
        let mut b = a.clone();
        b.metadata.name = Some("b".into());
        assert_eq!(f.failed(&a), 1);
        assert_eq!(f.failed(&a), 2);
        assert_eq!(f.failed(&b), 1);
        f.succeeded(&a);
        assert_eq!(f.failed(&a), 1);
    }
}
