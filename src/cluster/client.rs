//! The one way tidemark builds its Kubernetes client: from a kubeconfig (or the in-cluster
//! configuration), with kube's retry policy for `429 Too Many Requests`, `503` and `504` answers
//! (exponential backoff with jitter, the server's `Retry-After` honoured) placed so that every
//! attempt's answer is counted in [`ApiStats`] first. Those counts are what the restore's
//! adaptive concurrency reacts to, and what a run reports as throttling.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{Request, Response, StatusCode};
use kube::client::{Body, ClientBuilder, retry::RetryPolicy};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tower::BoxError;
use tower::buffer::BufferLayer;
use tower::retry::{Policy, RetryLayer};

use super::ClusterError;

/// How to reach the cluster: an explicit kubeconfig path and/or context, else the usual
/// `KUBECONFIG` / `~/.kube/config` / in-cluster resolution.
#[derive(Clone, Debug, Default)]
pub struct Target {
    /// Path of a kubeconfig file.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Context to use within it.
    pub context: Option<String>,
}

/// Requests that may wait in the client's request queue (tower's `Buffer`) before the retry
/// layer; the same bound kube puts in front of its own stack.
const REQUEST_QUEUE: usize = 1024;

/// Answers of the API server counted across every client of this process (like client-go's
/// request metrics, which are process-wide too). Every attempt counts, retried ones included.
#[derive(Debug, Default)]
pub struct ApiStats {
    throttled: AtomicU64,
    unavailable: AtomicU64,
}

static STATS: ApiStats = ApiStats {
    throttled: AtomicU64::new(0),
    unavailable: AtomicU64::new(0),
};

/// The process-wide [`ApiStats`].
pub fn api_stats() -> &'static ApiStats {
    &STATS
}

impl ApiStats {
    /// `429 Too Many Requests` answers so far (API Priority and Fairness rejecting a request,
    /// or the server's max-in-flight limit).
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// `503 Service Unavailable` and `504 Gateway Timeout` answers so far.
    pub fn unavailable(&self) -> u64 {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// Both counts added: every answer that said "overloaded, try again".
    pub fn overloaded(&self) -> u64 {
        self.throttled() + self.unavailable()
    }

    fn note(&self, status: StatusCode) {
        match status {
            StatusCode::TOO_MANY_REQUESTS => {
                self.throttled.fetch_add(1, Ordering::Relaxed);
            }
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
                self.unavailable.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// kube's [`RetryPolicy::server_retry`] (retries 429/503/504 up to 15 times, exponential backoff
/// from 5 ms with jitter, `Retry-After` honoured), counting each answer it is shown.
#[derive(Clone)]
struct CountingRetry(RetryPolicy);

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for CountingRetry {
    type Future = <RetryPolicy as Policy<Request<Body>, Response<Res>, BoxError>>::Future;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        if let Ok(response) = result {
            STATS.note(response.status());
        }
        self.0.retry(req, result)
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        <RetryPolicy as Policy<Request<Body>, Response<Res>, BoxError>>::clone_request(
            &mut self.0,
            req,
        )
    }
}

/// Connects to the cluster named by `target`.
///
/// The client retries `429`/`503`/`504` answers itself (see the module docs); other errors are
/// returned to the caller.
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
            Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| ClusterError::Kubeconfig(format!("{}: {e}", path.display())))?
        }
        None if target.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?,
        None => Config::infer()
            .await
            .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?,
    };
    client_from(config)
}

/// Connects to the cluster a kubeconfig's text describes (as held in a Secret's key, or read
/// from a file given for a restore drill): its current context, or `context` when given. The
/// client is built as [`connect`]'s (the same retries and counting).
///
/// Paths inside the kubeconfig (`certificate-authority`, `client-key`, ...) are read relative
/// to the working directory; `*-data` fields need no files.
///
/// # Errors
/// [`ClusterError::Kubeconfig`] when the text is not a kubeconfig (the message never quotes
/// it: it holds credentials), the context is missing, or its credentials cannot make a client.
pub async fn connect_kubeconfig(yaml: &str, context: Option<&str>) -> Result<Client, ClusterError> {
    let kc = Kubeconfig::from_yaml(yaml).map_err(|e| match e {
        // The YAML parser's message can quote the input, i.e. credentials.
        kube::config::KubeconfigError::Parse(_) => {
            ClusterError::Kubeconfig("not a kubeconfig (YAML that does not parse as one)".into())
        }
        other => ClusterError::Kubeconfig(other.to_string()),
    })?;
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = Config::from_custom_kubeconfig(kc, &options)
        .await
        .map_err(|e| ClusterError::Kubeconfig(e.to_string()))?;
    client_from(config)
}

/// Builds the client for `config`: kube's stack without its own retry layer, then the counting
/// retry layer above a request queue (the retry layer needs a cloneable service).
///
/// # Errors
/// [`ClusterError::Kubeconfig`] when the configuration cannot make a client (TLS, auth).
fn client_from(mut config: Config) -> Result<Client, ClusterError> {
    config.default_retry = false;
    let builder =
        ClientBuilder::try_from(config).map_err(|e| ClusterError::Kubeconfig(e.to_string()))?;
    Ok(builder
        .with_layer(&BufferLayer::new(REQUEST_QUEUE))
        .with_layer(&RetryLayer::new(CountingRetry(RetryPolicy::server_retry())))
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_overload_answers_only() {
        let stats = ApiStats::default();
        for s in [
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::CONFLICT,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            stats.note(s);
        }
        assert_eq!(stats.throttled(), 2);
        assert_eq!(stats.unavailable(), 2);
        assert_eq!(stats.overloaded(), 4);
    }

    #[tokio::test]
    async fn the_policy_counts_every_attempt_and_retries_429() {
        let mut policy = CountingRetry(RetryPolicy::server_retry());
        let before = api_stats().throttled();
        let mut req = Request::builder()
            .uri("/api/v1/namespaces/a/configmaps")
            .body(Body::from(b"{}".to_vec()))
            .unwrap();
        let mut res: Result<Response<()>, BoxError> = Ok(Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .body(())
            .unwrap());
        assert!(policy.retry(&mut req, &mut res).is_some(), "429 is retried");
        let mut ok: Result<Response<()>, BoxError> = Ok(Response::new(()));
        assert!(policy.retry(&mut req, &mut ok).is_none(), "200 is not");
        assert!(api_stats().throttled() > before);
        assert!(
            <CountingRetry as Policy<Request<Body>, Response<()>, BoxError>>::clone_request(
                &mut policy,
                &req
            )
            .is_some(),
            "a create's body can be sent again"
        );
    }
}
