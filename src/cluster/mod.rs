//! Talking to a cluster: connecting from a kubeconfig, the client-side QPS budget shared by every
//! request of a run, and tolerant discovery of the served resources.

mod discovery;
pub mod selector;

pub use discovery::{Discovered, ServedResource, discover};

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Errors connecting to or discovering a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The kubeconfig could not be read or used.
    #[error("kubeconfig: {0}")]
    Kubeconfig(String),
    /// A request failed.
    #[error("{what}: {source}")]
    Request {
        /// What was being done.
        what: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An invalid QPS budget.
    #[error("client QPS and burst must be positive (got qps={qps}, burst={burst})")]
    InvalidBudget {
        /// Requested QPS.
        qps: f32,
        /// Requested burst.
        burst: u32,
    },
}

/// How to reach the cluster: an explicit kubeconfig path and/or context, else the usual
/// `KUBECONFIG` / `~/.kube/config` / in-cluster resolution.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// Path of a kubeconfig file.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Context to use within it.
    pub context: Option<String>,
}

/// Connects to the cluster named by `target`.
///
/// # Errors
/// [`ClusterError::Kubeconfig`] when no usable configuration is found.
pub async fn connect(target: &Target) -> Result<Client, ClusterError> {
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..Default::default()
    };
    let config = match &target.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| ClusterError::Kubeconfig(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| ClusterError::Kubeconfig(format!("{}: {e}", path.display())))?
        }
        None if target.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?,
        None => kube::Config::infer()
            .await
            .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| ClusterError::Kubeconfig(e.to_string()))
}

/// The client-side request budget of one run: a token bucket of `qps` requests per second with
/// room for `burst`, shared by all concurrent listers/creators (like client-go's `--kube-api-qps`
/// and `--kube-api-burst`).
#[derive(Clone)]
pub struct Budget {
    limiter: Arc<DefaultDirectRateLimiter>,
    qps: f32,
    burst: u32,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Budget(qps={}, burst={})", self.qps, self.burst)
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
        let period = std::time::Duration::from_secs_f64(1.0 / f64::from(qps));
        let quota = Quota::with_period(period)
            .ok_or(ClusterError::InvalidBudget { qps, burst })?
            .allow_burst(burst_nz);
        Ok(Self {
            limiter: Arc::new(RateLimiter::direct(quota)),
            qps,
            burst,
        })
    }

    /// Waits until one more request fits in the budget.
    pub async fn acquire(&self) {
        self.limiter.until_ready().await;
    }

    /// Requests per second.
    pub fn qps(&self) -> f32 {
        self.qps
    }
}

/// Whether a client error is an API `404 Not Found`.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a client error is an API `409 AlreadyExists`.
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// A one-line description of a client error for results and logs.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
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
            start.elapsed() >= std::time::Duration::from_millis(180),
            "{:?}",
            start.elapsed()
        );
    }
}
