//! A byte-rate cap for background traffic (repair fetches) and per-client responses (the HTTP
//! gateway): a caller spends the bytes it moved and waits while it is ahead of the rate. Counted
//! in KiB so any configured rate fits `governor`'s 32-bit quotas.

use std::hash::Hash;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

/// A byte rate as a governor quota in KiB (at least 1).
pub(crate) fn kib_per_second(bytes_per_second: u64) -> NonZeroU32 {
    let kib = u32::try_from(bytes_per_second.div_ceil(1024)).unwrap_or(u32::MAX);
    NonZeroU32::new(kib).unwrap_or(NonZeroU32::MIN)
}

/// A byte rate, one allowance per key (`()`: one for all callers).
#[derive(Debug)]
pub struct ByteRate<K: Hash + Eq + Clone = ()> {
    limiter: DefaultKeyedRateLimiter<K>,
    burst_kib: NonZeroU32,
}

impl<K: Hash + Eq + Clone> ByteRate<K> {
    /// At most `bytes_per_second` on average per key, with one second's worth as the burst.
    pub fn new(bytes_per_second: u64) -> Self {
        let burst_kib = kib_per_second(bytes_per_second);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(Quota::per_second(burst_kib)),
            burst_kib,
        }
    }

    /// Waits until `bytes` more fit under `key`'s rate.
    pub async fn spend_as(&self, key: &K, bytes: u64) {
        let mut kib = bytes.div_ceil(1024);
        while kib > 0 {
            let step = u32::try_from(kib)
                .unwrap_or(u32::MAX)
                .min(self.burst_kib.get());
            if let Some(n) = NonZeroU32::new(step) {
                // `step` never exceeds the burst, so this cannot be refused.
                let _ = self.limiter.until_key_n_ready(key, n).await;
            }
            kib -= u64::from(step);
        }
    }

    /// Forgets keys whose allowance is full again, so the table stays as small as the set of
    /// recent callers.
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
    }
}

impl ByteRate {
    /// Waits until `bytes` more fit under the rate.
    pub async fn spend(&self, bytes: u64) {
        self.spend_as(&(), bytes).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn spending_past_the_burst_waits_for_the_rate() {
        // 1 MiB/s: the first MiB passes at once (the burst), the next two take two seconds. Only
        // a lower bound is asserted: a slow machine can only make it longer.
        let rate: ByteRate = ByteRate::new(1024 * 1024);
        let started = Instant::now();
        rate.spend(1024 * 1024).await;
        rate.spend(2 * 1024 * 1024).await;
        assert!(
            started.elapsed() >= Duration::from_millis(1900),
            "3 MiB at 1 MiB/s took {:?}",
            started.elapsed()
        );
    }
}
