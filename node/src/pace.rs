//! A byte-rate cap for background traffic (repair fetches): a caller spends the bytes it moved
//! and waits while it is ahead of the rate. Counted in KiB so any configured rate fits
//! `governor`'s 32-bit quotas.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota};

/// A byte rate as a governor quota in KiB (at least 1).
pub(crate) fn kib_per_second(bytes_per_second: u64) -> NonZeroU32 {
    let kib = u32::try_from(bytes_per_second.div_ceil(1024)).unwrap_or(u32::MAX);
    NonZeroU32::new(kib).unwrap_or(NonZeroU32::MIN)
}

#[derive(Debug)]
pub struct ByteRate {
    limiter: DefaultDirectRateLimiter,
    burst_kib: NonZeroU32,
}

impl ByteRate {
    /// At most `bytes_per_second` on average, with one second's worth as the burst.
    pub fn new(bytes_per_second: u64) -> Self {
        let burst_kib = kib_per_second(bytes_per_second);
        Self {
            limiter: DefaultDirectRateLimiter::direct(Quota::per_second(burst_kib)),
            burst_kib,
        }
    }

    /// Waits until `bytes` more fit under the rate.
    pub async fn spend(&self, bytes: u64) {
        let mut kib = bytes.div_ceil(1024);
        while kib > 0 {
            let step = u32::try_from(kib)
                .unwrap_or(u32::MAX)
                .min(self.burst_kib.get());
            if let Some(n) = NonZeroU32::new(step) {
                // `step` never exceeds the burst, so this cannot be refused.
                let _ = self.limiter.until_n_ready(n).await;
            }
            kib -= u64::from(step);
        }
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
        let rate = ByteRate::new(1024 * 1024);
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
