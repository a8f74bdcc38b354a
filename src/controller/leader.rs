//! Leader election on a `coordination.k8s.io/v1` Lease, so several replicas are safe: only the
//! holder reconciles. It follows client-go's `leaderelection` package (its timings and rules):
//!
//! - The holder renews every [`RETRY`]; each renewal must succeed within [`RENEW_DEADLINE`] of
//!   the last successful one (every request is bounded by what is left of it). When it cannot,
//!   the holder can no longer prove it still holds the lease, and [`LeaseHolder::hold`] returns
//!   well before [`LEASE_DURATION`] has passed: the process stops reconciling (and its running
//!   work) before any other replica may take over.
//! - A candidate judges expiry by what it observed, not by comparing the Lease's `renewTime`
//!   with its own clock (clocks of different machines disagree): the lease is expired once the
//!   candidate has seen the same Lease record — same resourceVersion — for the lease's duration
//!   on its own monotonic clock ([`Observation`]).
//! - Updates carry the Lease's resourceVersion, so two replicas can never both win.
//! - A new leader that took the lease over from another holder waits [`LEASE_DURATION`] before
//!   recovering that holder's unfinished records ([`Acquired::took_over_from`]).
//!
//! Written here because the community crate for this (`kube-leader-election`) targets an older
//! kube major version than the one tidemark uses.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, PostParams};

use super::ControllerError;

/// Name of the Lease in the controller's namespace.
pub const LEASE_NAME: &str = "tidemark-controller";
/// How long a lease stays valid without renewal (client-go's default `LeaseDuration`).
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long the holder keeps reconciling without a successful renewal (client-go's
/// `RenewDeadline`); shorter than [`LEASE_DURATION`].
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the holder renews and a candidate tries (client-go's `RetryPeriod`).
pub const RETRY: Duration = Duration::from_secs(2);

/// What a candidate has seen of the Lease: its record and since when (monotonic clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The Lease's resourceVersion when first seen unchanged.
    pub resource_version: String,
    /// When this record was first seen.
    pub since: Instant,
}

impl Observation {
    /// Records `resource_version` seen at `now`: a changed record restarts the count.
    pub fn see(previous: Option<Observation>, resource_version: &str, now: Instant) -> Self {
        match previous {
            Some(o) if o.resource_version == resource_version => o,
            _ => Observation {
                resource_version: resource_version.to_string(),
                since: now,
            },
        }
    }

    /// Whether the record has been seen unchanged for `duration` by `now`.
    pub fn expired(&self, duration: Duration, now: Instant) -> bool {
        now.duration_since(self.since) >= duration
    }
}

/// A won lease; [`LeaseHolder::hold`] keeps it.
pub struct LeaseHolder {
    api: Api<Lease>,
    identity: String,
    /// When the lease was last written successfully.
    last_ok: Instant,
}

/// What [`acquire`] won.
pub struct Acquired {
    /// The lease, to be held.
    pub holder: LeaseHolder,
    /// The identity that held it before, when it was taken over from another replica: its
    /// unfinished work is recovered only after [`LEASE_DURATION`] more.
    pub took_over_from: Option<String>,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// One attempt's outcome.
enum Attempt {
    /// `identity` holds the lease; the previous holder if it was someone else.
    Won { previous: Option<String> },
    /// Someone else holds it (and the observation so far).
    Lost(Option<Observation>),
}

/// One attempt, bounded by `deadline`.
async fn try_acquire(
    api: &Api<Lease>,
    identity: &str,
    observed: Option<Observation>,
    deadline: Duration,
) -> Result<Attempt, kube::Error> {
    match tokio::time::timeout(deadline, attempt(api, identity, observed)).await {
        Ok(r) => r,
        Err(_) => Err(kube::Error::Service(
            format!("no answer from the API server within {deadline:?}").into(),
        )),
    }
}

async fn attempt(
    api: &Api<Lease>,
    identity: &str,
    observed: Option<Observation>,
) -> Result<Attempt, kube::Error> {
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
                Ok(_) => Ok(Attempt::Won { previous: None }),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Lost(None)),
                Err(e) => Err(e),
            }
        }
        Some(mut l) => {
            let cur = l.spec.clone().unwrap_or_default();
            let holder = cur.holder_identity.clone().filter(|h| !h.is_empty());
            let mine = holder.as_deref() == Some(identity);
            if !mine && holder.is_some() {
                let seen = Observation::see(
                    observed,
                    l.metadata.resource_version.as_deref().unwrap_or_default(),
                    Instant::now(),
                );
                let duration = cur
                    .lease_duration_seconds
                    .map(|s| Duration::from_secs(s.max(1) as u64))
                    .unwrap_or(LEASE_DURATION);
                if !seen.expired(duration, Instant::now()) {
                    return Ok(Attempt::Lost(Some(seen)));
                }
            }
            let transitions = cur.lease_transitions.unwrap_or(0) + i32::from(!mine);
            l.spec = Some(spec(
                transitions,
                if mine { cur.acquire_time } else { None },
            ));
            match api.replace(LEASE_NAME, &PostParams::default(), &l).await {
                Ok(_) => Ok(Attempt::Won {
                    previous: holder.filter(|_| !mine),
                }),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Lost(None)),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica holds the lease.
///
/// # Errors
/// [`ControllerError::Kube`] when the Lease cannot be read or written at all (transient
/// failures and timeouts are retried).
pub async fn acquire(
    client: &Client,
    namespace: &str,
    identity: &str,
) -> Result<Acquired, ControllerError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), namespace);
    let mut logged = false;
    let mut observed: Option<Observation> = None;
    loop {
        match try_acquire(&api, identity, observed.clone(), RENEW_DEADLINE).await {
            Ok(Attempt::Won { previous }) => {
                tracing::info!(identity, lease = LEASE_NAME, previous = ?previous, "became leader");
                return Ok(Acquired {
                    holder: LeaseHolder {
                        api,
                        identity: identity.to_string(),
                        last_ok: Instant::now(),
                    },
                    took_over_from: previous,
                });
            }
            Ok(Attempt::Lost(seen)) => {
                observed = seen;
                if !logged {
                    tracing::info!(identity, lease = LEASE_NAME, "waiting for leadership");
                    logged = true;
                }
            }
            Err(kube::Error::Api(s)) if s.code == 403 || s.code == 401 => {
                return Err(ControllerError::Kube(kube::Error::Api(s)));
            }
            Err(e) => tracing::warn!("leader election: {e}; retrying"),
        }
        tokio::time::sleep(RETRY).await;
    }
}

impl LeaseHolder {
    /// Renews the lease until it cannot; returns why. Every renewal must succeed within
    /// [`RENEW_DEADLINE`] of the previous success, each request bounded by the time left, so
    /// this returns before the lease can expire in another replica's eyes.
    pub async fn hold(mut self) -> ControllerError {
        loop {
            tokio::time::sleep(RETRY).await;
            let left = RENEW_DEADLINE.saturating_sub(self.last_ok.elapsed());
            if left.is_zero() {
                return ControllerError::Leadership(format!(
                    "could not renew the lease within {RENEW_DEADLINE:?}"
                ));
            }
            match try_acquire(&self.api, &self.identity, None, left).await {
                Ok(Attempt::Won { .. }) => self.last_ok = Instant::now(),
                Ok(Attempt::Lost(_)) => {
                    return ControllerError::Leadership("another replica holds the lease".into());
                }
                Err(e) => {
                    tracing::warn!(
                        "lease renewal failed ({:?} left to renew): {e}",
                        RENEW_DEADLINE.saturating_sub(self.last_ok.elapsed())
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_leave_room_between_giving_up_and_being_replaced() {
        const { assert!(RENEW_DEADLINE.as_secs() < LEASE_DURATION.as_secs()) };
        const { assert!(RETRY.as_secs() < RENEW_DEADLINE.as_secs()) };
    }

    #[test]
    fn expiry_counts_from_when_the_record_was_first_seen_unchanged() {
        let t0 = Instant::now();
        let o = Observation::see(None, "10", t0);
        assert!(!o.expired(LEASE_DURATION, t0 + Duration::from_secs(14)));
        // Seen again unchanged: the count goes on from the first sight.
        let o = Observation::see(Some(o), "10", t0 + Duration::from_secs(10));
        assert_eq!(o.since, t0);
        assert!(o.expired(LEASE_DURATION, t0 + Duration::from_secs(15)));
        // A renewal (a new resourceVersion) restarts it, whatever the clocks say.
        let o = Observation::see(Some(o), "11", t0 + Duration::from_secs(16));
        assert!(!o.expired(LEASE_DURATION, t0 + Duration::from_secs(30)));
        assert!(o.expired(LEASE_DURATION, t0 + Duration::from_secs(31)));
    }
}
