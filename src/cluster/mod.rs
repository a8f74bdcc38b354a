//! Talking to a cluster: connecting from a kubeconfig (with retries of throttled requests), the
//! client-side request budget shared by every request of a run (none where the server has API
//! Priority and Fairness), and tolerant discovery of the served resources.

mod budget;
mod client;
mod discovery;
pub mod selector;

pub use budget::{
    APF_FLOW_SCHEMA_HEADER, APF_PRIORITY_LEVEL_HEADER, Budget, FALLBACK_BURST, FALLBACK_QPS,
    server_has_apf,
};
pub use client::{ApiStats, Target, api_stats, connect, connect_kubeconfig};
pub use discovery::{Discovered, ServedResource, discover};

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

/// Whether a client error is an API `404 Not Found`.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether a client error is an API `409 AlreadyExists`.
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// Whether a failed request is worth repeating: the server was busy or failing (`429`, `5xx`,
/// once the client's own retries of them are spent), or the connection failed or was cut before
/// the whole answer arrived (a reset, a timeout, a body that ended early). Only for idempotent
/// requests (GET, LIST).
pub fn is_transient(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// A one-line description of a client error for results and logs.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}
