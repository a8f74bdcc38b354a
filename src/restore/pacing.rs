//! How many creates a restore keeps in flight: adapted at run time to what the API server can
//! take, so a restore runs at the server's limit on a 2-core test server and on a large production
//! one alike, without a flag.
//!
//! The limit follows TCP Vegas (congestion-limiter's `Vegas`): each finished request is a sample
//! of its latency and of the requests in flight; while the latency shows little queueing (compared
//! with the lowest latency seen) and the limit is in use, the limit grows by one; when queueing
//! builds up it shrinks by one; on an overload signal — a `429`/`503`/`504` answer (counted by the
//! client for every attempt, also the ones it retried itself), or a request that timed out — it
//! shrinks by 10%. The limit stays within `[1, max]`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use congestion_limiter::limiter::{DefaultLimiter, Limiter, Outcome, Token};
use congestion_limiter::limits::Vegas;

use crate::cluster::api_stats;

/// The default upper bound of creates in flight (`--max-concurrency`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The adaptive limit of one restore's creates in flight.
#[derive(Debug)]
pub struct CreatePacer {
    limiter: DefaultLimiter<Vegas>,
    /// The overload count ([`crate::cluster::ApiStats::overloaded`]) last turned into a signal.
    seen_overloads: AtomicU64,
    /// Overload signals given to the limiter.
    signals: AtomicU64,
    peak: AtomicUsize,
}

/// Permission to send one request, from [`CreatePacer::start`]; give it back with
/// [`CreatePacer::finish`].
#[derive(Debug)]
pub struct Slot(Token);

/// What a paced request came to, as far as the pacing is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Answered (successfully or not) without a sign of overload.
    Served,
    /// Throttled or unavailable (`429`, `503`, `504`) after the client's own retries, or timed
    /// out.
    Overloaded,
}

impl Answer {
    /// Classifies a client result.
    pub fn of<T>(result: &Result<T, kube::Error>) -> Self {
        match result {
            Err(kube::Error::Api(s)) if matches!(s.code, 429 | 503 | 504) => Self::Overloaded,
            Err(kube::Error::HyperError(_) | kube::Error::Service(_)) => Self::Overloaded,
            _ => Self::Served,
        }
    }
}

impl CreatePacer {
    /// A pacer starting at `initial` requests in flight, never above `max` (both at least 1;
    /// `initial` is lowered to `max`). `initial == max` keeps the limit fixed, overload or not
    /// (the client still retries throttled requests with backoff).
    pub fn new(initial: usize, max: usize) -> Self {
        let max = max.max(1);
        let initial = initial.clamp(1, max);
        let min = if initial == max { max } else { 1 };
        Self {
            limiter: DefaultLimiter::new(Vegas::new(initial, min..=max)),
            seen_overloads: AtomicU64::new(api_stats().overloaded()),
            signals: AtomicU64::new(0),
            peak: AtomicUsize::new(initial),
        }
    }

    /// Waits for room for one more request.
    pub async fn start(&self) -> Slot {
        loop {
            // The limiter's waits are bounded by a timeout; a day is "until there is room".
            if let Some(t) = self
                .limiter
                .acquire_timeout(Duration::from_secs(86_400))
                .await
            {
                return Slot(t);
            }
        }
    }

    /// Gives the slot back with what the request came to; the limit is updated from its latency
    /// and from any overload answer the client has seen since the last update.
    pub async fn finish(&self, slot: Slot, answer: Answer) {
        let now = api_stats().overloaded();
        let before = self.seen_overloads.fetch_max(now, Ordering::Relaxed);
        let outcome = if answer == Answer::Overloaded || now > before {
            self.signals.fetch_add(1, Ordering::Relaxed);
            Outcome::Overload
        } else {
            Outcome::Success
        };
        let limit = self.limiter.release(slot.0, Some(outcome)).await;
        self.peak.fetch_max(limit, Ordering::Relaxed);
    }

    /// The current limit of requests in flight.
    pub fn limit(&self) -> usize {
        self.limiter.state().limit()
    }

    /// The highest limit reached so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// How many times the limit was cut for an overload signal.
    pub fn overload_signals(&self) -> u64 {
        self.signals.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> Result<(), kube::Error> {
        Err(kube::Error::Api(
            kube::core::Status::failure("x", "TooManyRequests")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn overload_answers_are_told_apart() {
        assert_eq!(Answer::of(&api_error(429)), Answer::Overloaded);
        assert_eq!(Answer::of(&api_error(503)), Answer::Overloaded);
        assert_eq!(Answer::of(&api_error(409)), Answer::Served);
        assert_eq!(Answer::of(&api_error(422)), Answer::Served);
        assert_eq!(Answer::of(&Ok::<(), kube::Error>(())), Answer::Served);
    }

    #[tokio::test]
    async fn grows_while_latency_stays_flat() {
        let pacer = CreatePacer::new(4, 64);
        for _ in 0..50 {
            // Fill the current limit, then let every request finish after the same delay.
            let n = pacer.limit();
            let mut slots = Vec::new();
            for _ in 0..n {
                slots.push(pacer.start().await);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
            for s in slots {
                pacer.finish(s, Answer::Served).await;
            }
        }
        assert!(pacer.limit() > 4, "limit {}", pacer.limit());
        assert!(pacer.peak() >= pacer.limit());
        assert!(pacer.limit() <= 64);
    }

    #[tokio::test]
    async fn shrinks_on_overload_and_stays_at_least_one() {
        let pacer = CreatePacer::new(32, 64);
        for _ in 0..100 {
            let s = pacer.start().await;
            // A request takes time: samples under a microsecond are ignored by the limiter.
            tokio::time::sleep(Duration::from_millis(1)).await;
            pacer.finish(s, Answer::Overloaded).await;
        }
        assert_eq!(pacer.limit(), 1);
        assert_eq!(pacer.overload_signals(), 100);
    }

    #[tokio::test]
    async fn a_fixed_limit_stays_fixed() {
        let pacer = CreatePacer::new(8, 8);
        for _ in 0..20 {
            let s = pacer.start().await;
            pacer.finish(s, Answer::Served).await;
        }
        assert_eq!(pacer.limit(), 8);
        let s = pacer.start().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        pacer.finish(s, Answer::Overloaded).await;
        assert_eq!(pacer.limit(), 8);
        let pacer = CreatePacer::new(100, 10);
        assert_eq!(pacer.limit(), 10, "initial is lowered to max");
    }
}
