//! Per-peer rate limits (`p2p.limits.requests_per_second`, `bytes_per_second`), keyed by peer
//! ID. Each peer has its own buckets, so one peer over its limit never uses another's share. A
//! refused request is answered at once with the time after which the peer may ask again.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use libp2p_identity::PeerId;

#[derive(Debug)]
pub struct PeerLimits {
    requests: DefaultKeyedRateLimiter<PeerId>,
    bytes: DefaultKeyedRateLimiter<PeerId>,
    /// The byte bucket's size: a response larger than this could never be sent in one piece.
    byte_burst: u32,
    clock: DefaultClock,
}

/// What a response may carry under the byte limit.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteBudget {
    /// The first `n` blocks fit (n ≥ 1).
    Fits(usize),
    /// Not even the first block fits now; retry after this long.
    Wait(Duration),
}

impl PeerLimits {
    pub fn new(requests_per_second: u32, bytes_per_second: u64) -> Self {
        let requests = NonZeroU32::new(requests_per_second).unwrap_or(NonZeroU32::MIN);
        // governor counts in u32 cells; beyond 4 GiB/s per peer the limit is moot anyway.
        let byte_burst = u32::try_from(bytes_per_second).unwrap_or(u32::MAX).max(1);
        let bytes = NonZeroU32::new(byte_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            requests: DefaultKeyedRateLimiter::keyed(Quota::per_second(requests)),
            bytes: DefaultKeyedRateLimiter::keyed(Quota::per_second(bytes)),
            byte_burst,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from the peer's bucket, or says how long it must wait.
    pub fn check_request(&self, peer: &PeerId) -> Result<(), Duration> {
        self.requests
            .check_key(peer)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()).max(MIN_WAIT))
    }

    /// How many of the leading `sizes` fit in the peer's byte bucket; takes them from it.
    pub fn take_bytes(&self, peer: &PeerId, sizes: &[usize]) -> ByteBudget {
        let mut fit = 0usize;
        let mut total = 0u64;
        for size in sizes {
            let next = total + *size as u64;
            if next > u64::from(self.byte_burst) {
                break;
            }
            total = next;
            fit += 1;
        }
        // Try the largest prefix first, then shrink: a partly drained bucket may still take some.
        while fit > 0 {
            let prefix: u64 = sizes[..fit].iter().map(|s| *s as u64).sum();
            let cells = u32::try_from(prefix).ok().and_then(NonZeroU32::new);
            let Some(cells) = cells else {
                // An empty prefix (zero-byte blocks) costs nothing.
                return ByteBudget::Fits(fit);
            };
            match self.bytes.check_key_n(peer, cells) {
                Ok(Ok(())) => return ByteBudget::Fits(fit),
                Ok(Err(not_until)) if fit == 1 => {
                    return ByteBudget::Wait(
                        not_until.wait_time_from(self.clock.now()).max(MIN_WAIT),
                    );
                }
                Ok(Err(_)) | Err(_) => fit -= 1,
            }
        }
        if sizes.is_empty() {
            ByteBudget::Fits(0)
        } else {
            // The first block is larger than a whole second's allowance: the configuration
            // forbids that (bytes_per_second ≥ max_block_size); wait a second regardless.
            ByteBudget::Wait(Duration::from_secs(1))
        }
    }

    /// Forgets peers that have been quiet long enough for their buckets to refill.
    pub fn prune(&self) {
        self.requests.retain_recent();
        self.bytes.retain_recent();
    }
}

/// Never tell a peer to wait 0 ms: it would come straight back.
const MIN_WAIT: Duration = Duration::from_millis(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_beyond_the_burst_are_refused_with_a_wait() {
        let limits = PeerLimits::new(10, 1 << 20);
        let peer = PeerId::random();
        let allowed = (0..30)
            .filter(|_| limits.check_request(&peer).is_ok())
            .count();
        assert!((10..=11).contains(&allowed), "allowed {allowed}");
        let wait = limits.check_request(&peer).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100));
    }

    #[test]
    fn one_peer_over_its_limit_does_not_use_another_peers_share() {
        let limits = PeerLimits::new(5, 1 << 20);
        let (greedy, quiet) = (PeerId::random(), PeerId::random());
        for _ in 0..100 {
            let _ = limits.check_request(&greedy);
        }
        assert!(limits.check_request(&greedy).is_err());
        for _ in 0..5 {
            assert!(limits.check_request(&quiet).is_ok());
        }
    }

    #[test]
    fn responses_are_cut_to_the_byte_budget() {
        let limits = PeerLimits::new(100, 1000);
        let peer = PeerId::random();
        assert_eq!(
            limits.take_bytes(&peer, &[400, 400, 400]),
            ByteBudget::Fits(2)
        );
        // 200 bytes left: the next 400-byte block must wait, a 100-byte one fits.
        assert!(matches!(
            limits.take_bytes(&peer, &[400]),
            ByteBudget::Wait(_)
        ));
        assert_eq!(limits.take_bytes(&peer, &[100, 400]), ByteBudget::Fits(1));
        assert_eq!(limits.take_bytes(&peer, &[]), ByteBudget::Fits(0));
    }
}
