//! What the controllers do when a reconcile fails with an API error: tell transient failures
//! (throttling, server errors, conflicts, timeouts) from permanent ones (forbidden, invalid),
//! count each as `tidemark_reconcile_errors_total{kind, reason}`, and requeue the object with
//! its own exponential backoff — 2 s doubling to 5 min for transient failures, 5 min at once for
//! permanent ones — reset by its next successful reconcile (as kube-rs' controller examples do).
//! Failures the controllers understand (an invalid spec, a missing Location) never get here:
//! they are written as `Stalled` conditions by the reconcilers themselves. A permanent API
//! failure (the controller is forbidden something, the API server refuses a request as invalid)
//! is written too, as `Stalled=True` with the failure's reason and message, under its own field
//! manager ([`ERROR_FIELD_MANAGER`]), so that the object says why it does not progress; the
//! object's next successful reconcile removes that condition again (server-side apply of an
//! empty list under the same manager removes what it owned).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::Context;

/// The field manager of the `Stalled` conditions written for permanent API failures.
pub const ERROR_FIELD_MANAGER: &str = "tidemark-controller-errors";

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

/// Consecutive failures per object (`kind/namespace/name`), shared by the controllers, and
/// whether a `Stalled` condition was written for them.
#[derive(Debug, Default)]
pub struct Failures(Mutex<HashMap<String, (u32, bool)>>);

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
        let n = m.entry(Self::key(obj)).or_insert((0, false));
        n.0 = n.0.saturating_add(1);
        n.0
    }

    /// Notes that a `Stalled` condition was written for `obj`.
    fn stalled<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        let mut m = self.0.lock().expect("failures lock");
        m.entry(Self::key(obj)).or_insert((0, false)).1 = true;
    }

    /// Forgets `obj`'s failures (it reconciled); whether a `Stalled` condition was written for
    /// them (and must be removed).
    pub fn succeeded<K: Resource<DynamicType = ()>>(&self, obj: &K) -> bool {
        self.0
            .lock()
            .expect("failures lock")
            .remove(&Self::key(obj))
            .is_some_and(|(_, stalled)| stalled)
    }
}

/// Writes (`Some((reason, message))`) or removes (`None`) the `Stalled` condition of a
/// permanent API failure on `obj`, with server-side apply under [`ERROR_FIELD_MANAGER`].
async fn apply_stalled<K>(client: kube::Client, obj: &K, stalled: Option<(&str, String)>)
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    use kube::api::{Api, Patch, PatchParams};
    let api: Api<K> = Api::namespaced(client, &obj.namespace().unwrap_or_default());
    let conditions = match &stalled {
        Some((reason, message)) => serde_json::json!([{
            "type": "Stalled",
            "status": "True",
            "reason": reason,
            "message": message,
            "observedGeneration": obj.meta().generation,
            "lastTransitionTime": super::now_rfc3339(),
        }]),
        None => serde_json::json!([]),
    };
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": {"conditions": conditions},
    });
    if let Err(e) = api
        .patch_status(
            &obj.name_any(),
            &PatchParams::apply(ERROR_FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
    {
        tracing::warn!(
            kind = %K::kind(&()),
            name = %obj.name_any(),
            "the Stalled condition of a failed reconcile was not written: {e}"
        );
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
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    F: FnOnce(Arc<K>, Arc<Context>) -> Fut,
    Fut: std::future::Future<Output = Result<Action, kube::Error>>,
{
    ctx.metrics
        .reconciles
        .with_label_values(&[K::kind(&()).as_ref()])
        .inc();
    let r = reconcile(obj.clone(), ctx.clone()).await;
    if r.is_ok() && ctx.failures.succeeded(obj.as_ref()) {
        apply_stalled(ctx.client.clone(), obj.as_ref(), None).await;
    }
    r
}

/// The error policy of every controller: logs, counts and requeues with the object's backoff.
pub fn error_policy<K>(obj: Arc<K>, err: &kube::Error, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
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
    if let Failure::Permanent(reason) = failure {
        // Said on the object, for `kubectl get`, Flux's and Argo CD's health checks.
        ctx.failures.stalled(obj.as_ref());
        let message = format!(
            "the API server refused a request of the controller ({}); retrying in {}",
            crate::cluster::describe(err),
            humantime::format_duration(wait)
        );
        let client = ctx.client.clone();
        tokio::spawn(async move {
            apply_stalled(client, obj.as_ref(), Some((reason, message))).await;
        });
    }
    Action::requeue(wait)
}

/// Runs `controller` until the process ends: every reconcile through [`reconciled`] (counted,
/// a permanent failure's `Stalled` cleared on success) and every failure through
/// [`error_policy`]. What each controller's `run` ends with.
pub async fn drive<K, Fut>(
    controller: kube::runtime::Controller<K>,
    ctx: Arc<Context>,
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
) where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    Fut: std::future::Future<Output = Result<Action, kube::Error>> + Send + 'static,
{
    use futures::StreamExt;
    controller
        .run(move |o, c| reconciled(o, c, reconcile), error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
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
