//! The client-side request budget of a run, and how it is chosen.
//!
//! Since Kubernetes 1.20 every API server protects itself with API Priority and Fairness (APF,
//! `flowcontrol.apiserver.k8s.io`, GA in 1.29): it queues requests per priority level and answers
//! `429 Too Many Requests` with `Retry-After` when a level is full. A fixed client-side QPS cap on
//! top of that only slows a client down on a server with room to spare. So, as controller-runtime
//! and Flux's `fluxcd/pkg/runtime/client` do (both probe `/livez/ping` for APF's
//! `X-Kubernetes-PF-FlowSchema-UID` response header; kubernetes/kubernetes#111880), tidemark
//! sets no client-side cap when the server answers with APF's headers and relies on the server:
//! `429`s are retried with backoff by the client (see `cluster::client`) and the restore's
//! concurrency shrinks on them. A server without APF gets client-go's traditional protection, a
//! token bucket (100 requests/s, bursts of 200). An explicit `--client-qps`/`--client-burst`
//! always caps.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use http::Request;
use kube::Client;
use kube::client::Body;

use super::ClusterError;

/// The response header APF sets on every request it classified (source:
/// `k8s.io/api/flowcontrol/v1` `ResponseHeaderMatchedFlowSchemaUID`).
pub const APF_FLOW_SCHEMA_HEADER: &str = "X-Kubernetes-PF-FlowSchema-UID";

/// The response header naming the priority level (`ResponseHeaderMatchedPriorityLevelConfigurationUID`).
pub const APF_PRIORITY_LEVEL_HEADER: &str = "X-Kubernetes-PF-PriorityLevel-UID";

/// Requests per second of the cap used when the server has no APF and none was asked for.
pub const FALLBACK_QPS: f32 = 100.0;

/// Burst of that cap.
pub const FALLBACK_BURST: u32 = 200;

/// How long the APF probe may take before the server is taken to have none.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The client-side request budget of one run, shared by all concurrent listers/creators: either
/// none (the server's APF protects it) or a token bucket of `qps` requests per second with room
/// for `burst` (like client-go's `--kube-api-qps` and `--kube-api-burst`).
#[derive(Clone)]
pub struct Budget {
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    qps: f32,
    burst: u32,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Budget({})", self.describe())
    }
}

impl Budget {
    /// A budget of `qps` requests per second (fractions allowed) with bursts up to `burst`.
    ///
    /// # Errors
    /// [`ClusterError::InvalidBudget`] when either is not positive.
    pub fn new(qps: f32, burst: u32) -> Result<Self, ClusterError> {
        let burst_nz = NonZeroU32::new(burst).ok_or(ClusterError::InvalidBudget { qps, burst })?;
        if qps.is_nan() || qps <= 0.0 {
            return Err(ClusterError::InvalidBudget { qps, burst });
        }
        let period = Duration::from_secs_f64(1.0 / f64::from(qps));
        let quota = Quota::with_period(period)
            .ok_or(ClusterError::InvalidBudget { qps, burst })?
            .allow_burst(burst_nz);
        Ok(Self {
            limiter: Some(Arc::new(RateLimiter::direct(quota))),
            qps,
            burst,
        })
    }

    /// No client-side cap: every request goes out at once (the server's APF throttles).
    pub fn unlimited() -> Self {
        Self {
            limiter: None,
            qps: f32::INFINITY,
            burst: 0,
        }
    }

    /// The budget a run should use: the cap asked for (`qps`, `burst`; a missing burst is twice
    /// the QPS, a missing QPS half the burst), else none when the server has APF
    /// ([`server_has_apf`]), else [`FALLBACK_QPS`]/[`FALLBACK_BURST`].
    ///
    /// # Errors
    /// [`ClusterError::InvalidBudget`] for a non-positive cap.
    pub async fn choose(
        client: &Client,
        qps: Option<f32>,
        burst: Option<u32>,
    ) -> Result<Self, ClusterError> {
        match (qps, burst) {
            (Some(q), Some(b)) => Self::new(q, b),
            (Some(q), None) => Self::new(q, burst_for(q)),
            (None, Some(b)) => Self::new(b as f32 / 2.0, b),
            (None, None) => Ok(if server_has_apf(client).await {
                Self::unlimited()
            } else {
                Self::new(FALLBACK_QPS, FALLBACK_BURST)?
            }),
        }
    }

    /// Waits until one more request fits in the budget (at once when there is no cap).
    pub async fn acquire(&self) {
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
    }

    /// Requests per second; infinite when there is no cap.
    pub fn qps(&self) -> f32 {
        self.qps
    }

    /// Whether requests are capped on the client side.
    pub fn is_limited(&self) -> bool {
        self.limiter.is_some()
    }

    /// One line for logs: `none (the API server throttles with API Priority and Fairness)` or
    /// `100 requests/s, bursts of 200`.
    pub fn describe(&self) -> String {
        if self.is_limited() {
            format!("{} requests/s, bursts of {}", self.qps, self.burst)
        } else {
            "none (the API server throttles with API Priority and Fairness)".into()
        }
    }
}

fn burst_for(qps: f32) -> u32 {
    ((qps * 2.0).ceil() as u32).max(1)
}

/// Whether the API server runs API Priority and Fairness: a `GET /livez/ping` answered with
/// [`APF_FLOW_SCHEMA_HEADER`], whatever the status (APF classifies a request before it is
/// authorized, so even a `403` carries it). Any failure (timeout, error, missing header) means
/// "no": the caller then keeps a client-side cap, the safe side.
pub async fn server_has_apf(client: &Client) -> bool {
    let Ok(req) = Request::get("/livez/ping").body(Body::empty()) else {
        return false;
    };
    match tokio::time::timeout(PROBE_TIMEOUT, client.send(req)).await {
        Ok(Ok(res)) => res.headers().contains_key(APF_FLOW_SCHEMA_HEADER),
        Ok(Err(e)) => {
            tracing::debug!("API Priority and Fairness probe failed: {e}");
            false
        }
        Err(_) => {
            tracing::debug!("API Priority and Fairness probe timed out after {PROBE_TIMEOUT:?}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_rejects_non_positive_values() {
        assert!(Budget::new(0.0, 10).is_err());
        assert!(Budget::new(10.0, 0).is_err());
        assert!(Budget::new(f32::NAN, 1).is_err());
        assert!(Budget::new(0.5, 1).is_ok());
    }

    #[tokio::test]
    async fn budget_limits_rate_after_burst() {
        let b = Budget::new(50.0, 5).unwrap();
        let start = std::time::Instant::now();
        for _ in 0..15 {
            b.acquire().await;
        }
        // 5 immediately, 10 more at 50/s = at least ~200 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(180),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn unlimited_budget_never_waits() {
        let b = Budget::unlimited();
        assert!(!b.is_limited());
        let start = std::time::Instant::now();
        for _ in 0..100_000 {
            b.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(b.describe().contains("Priority and Fairness"));
    }

    #[test]
    fn a_missing_half_of_the_cap_follows_the_other() {
        assert_eq!(burst_for(100.0), 200);
        assert_eq!(burst_for(0.2), 1);
    }
}
