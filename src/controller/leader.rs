//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas are safe: only the
//! holder reconciles. The holder renews every [`RENEW`]; another replica takes over once the
//! lease has not been renewed for [`LEASE_DURATION`]. Updates carry the Lease's
//! resourceVersion, so two replicas can never both win.
//!
//! Written here because the community crate for this (`kube-leader-election`) targets an older
//! kube major version than the one tidemark uses.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, PostParams};

use super::ControllerError;

/// Name of the Lease in the controller's namespace.
pub const LEASE_NAME: &str = "tidemark-controller";
/// How long a lease stays valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews.
pub const RENEW: Duration = Duration::from_secs(5);

/// A won lease; [`LeaseHolder::hold`] keeps it.
pub struct LeaseHolder {
    api: Api<Lease>,
    identity: String,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One attempt: `Ok(true)` when `identity` holds the lease afterwards.
async fn try_acquire(api: &Api<Lease>, identity: &str) -> Result<bool, kube::Error> {
    let spec = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
        acquire_time: acquired.or_else(|| Some(now())),
        renew_time: Some(now()),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    match api.get_opt(LEASE_NAME).await? {
        None => {
            let mut l = Lease::default();
            l.metadata.name = Some(LEASE_NAME.into());
            l.spec = Some(spec(0, None));
            match api.create(&PostParams::default(), &l).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut l) => {
            let cur = l.spec.clone().unwrap_or_default();
            let mine = cur.holder_identity.as_deref() == Some(identity);
            let expired = match (&cur.renew_time, cur.lease_duration_seconds) {
                (Some(MicroTime(t)), Some(d)) => {
                    let age = k8s_openapi::jiff::Timestamp::now().duration_since(*t);
                    age.as_secs() > i64::from(d)
                }
                _ => true,
            };
            if !mine && !expired {
                return Ok(false);
            }
            let transitions = cur.lease_transitions.unwrap_or(0) + i32::from(!mine);
            l.spec = Some(spec(
                transitions,
                if mine { cur.acquire_time } else { None },
            ));
            match api.replace(LEASE_NAME, &PostParams::default(), &l).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica holds the lease.
///
/// # Errors
/// [`ControllerError::Kube`] when the Lease cannot be read or written at all.
pub async fn acquire(
    client: &Client,
    namespace: &str,
    identity: &str,
) -> Result<LeaseHolder, ControllerError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let mut logged = false;
    loop {
        if try_acquire(&api, identity).await? {
            tracing::info!(identity, lease = LEASE_NAME, "became leader");
            return Ok(LeaseHolder {
                api,
                identity: identity.to_string(),
            });
        }
        if !logged {
            tracing::info!(identity, lease = LEASE_NAME, "waiting for leadership");
            logged = true;
        }
        tokio::time::sleep(RENEW).await;
    }
}

impl LeaseHolder {
    /// Renews the lease forever; returns the error that lost it.
    pub async fn hold(self) -> ControllerError {
        let mut last_ok = std::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW).await;
            match try_acquire(&self.api, &self.identity).await {
                Ok(true) => last_ok = std::time::Instant::now(),
                Ok(false) => {
                    return ControllerError::Leadership("another replica holds the lease".into());
                }
                Err(e) if last_ok.elapsed() < LEASE_DURATION => {
                    tracing::warn!("lease renewal failed, retrying: {e}");
                }
                Err(e) => {
                    return ControllerError::Leadership(format!("could not renew the lease: {e}"));
                }
            }
        }
    }
}
