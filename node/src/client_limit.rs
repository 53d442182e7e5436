//! Per-client rate limits keyed by the client's address, for the admin API and the HTTP gateway.
//! The admin API keeps two per address: one for calls with a valid token
//! (`admin.requests_per_second`), one for calls that fail authentication
//! (`admin.failed_auth_per_second`). Keeping them apart means a flood of guesses from an address —
//! any local user can make one — never spends the allowance of the operator calling from the same
//! address with the right token. A refused call learns the delay after which it may retry
//! (RESOURCE_EXHAUSTED over gRPC, 429 with Retry-After over HTTP).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use tonic::Status;

/// Forget idle clients every this many calls, so the table of addresses stays small.
const PRUNE_EVERY: u64 = 4096;

#[derive(Debug)]
pub struct ClientLimit {
    /// What the limit is called in the refusal.
    name: &'static str,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    calls: AtomicU64,
    /// Calls refused, shared with the metrics.
    rejected: Arc<AtomicU64>,
}

impl ClientLimit {
    pub fn new(name: &'static str, per_second: NonZeroU32) -> Self {
        Self {
            name,
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second)),
            clock: DefaultClock::default(),
            calls: AtomicU64::new(0),
            rejected: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The count of refused calls, live.
    pub fn rejected(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.rejected)
    }

    /// Takes one call from `client`'s allowance, or says how long until one is free (`None`: a
    /// call without a peer address, from an in-process transport; those share one bucket).
    pub fn admit(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        if self.calls.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
        }
        let client = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        self.limiter.check_key(&client).map_err(|not_until| {
            self.rejected.fetch_add(1, Ordering::Relaxed);
            not_until.wait_time_from(self.clock.now())
        })
    }

    /// [`Self::admit`] for the admin API: a refusal is RESOURCE_EXHAUSTED naming the limit, with
    /// the delay in `retry-after-ms`.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Status> {
        self.admit(client).map_err(|wait| {
            let mut status = Status::resource_exhausted(format!(
                "rate limit ({}) reached; retry in {} ms",
                self.name,
                wait.as_millis().max(1)
            ));
            if let Ok(value) = wait.as_millis().max(1).to_string().parse() {
                status.metadata_mut().insert("retry-after-ms", value);
            }
            status
        })
    }
}
