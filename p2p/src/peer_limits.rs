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

    /// Takes bytes for one response from the peer's bucket before anything is read for it:
    /// `wanted` if the bucket holds that much, else the largest half, quarter… of it down to
    /// `least` (a whole block of the largest size allowed), else how long to wait for `least`.
    /// Reading only what the peer may receive keeps a request for 64 blocks from costing the node
    /// 64 block reads when the peer's budget allows one.
    pub fn reserve_bytes(
        &self,
        peer: &PeerId,
        wanted: usize,
        least: usize,
    ) -> Result<usize, Duration> {
        let cap = |n: usize| {
            u32::try_from(n)
                .unwrap_or(u32::MAX)
                .min(self.byte_burst)
                .max(1)
        };
        let least = cap(least);
        let mut trying = cap(wanted).max(least);
        loop {
            let cells = NonZeroU32::new(trying).unwrap_or(NonZeroU32::MIN);
            match self.bytes.check_key_n(peer, cells) {
                Ok(Ok(())) => return Ok(trying as usize),
                Ok(Err(not_until)) if trying <= least => {
                    return Err(not_until.wait_time_from(self.clock.now()).max(MIN_WAIT));
                }
                // More than the bucket could ever hold: `cap` prevents it; wait a second anyway.
                Err(_) => return Err(Duration::from_secs(1)),
                Ok(Err(_)) => trying = (trying / 2).max(least),
            }
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
    fn responses_reserve_what_the_byte_budget_holds_down_to_one_whole_block() {
        let limits = PeerLimits::new(100, 1000);
        let peer = PeerId::random();
        // 1000 bytes in the bucket: 800 are taken whole.
        assert_eq!(limits.reserve_bytes(&peer, 800, 100), Ok(800));
        // 200 left: 800 halves to 400, then to 200.
        assert_eq!(limits.reserve_bytes(&peer, 800, 100), Ok(200));
        // Empty: even the least must wait, about 100 ms for 100 bytes at 1000 B/s.
        let wait = limits.reserve_bytes(&peer, 800, 100).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(110),
            "{wait:?}"
        );
        // Asking beyond the bucket's size is capped to it, never refused outright.
        let fresh = PeerId::random();
        assert_eq!(limits.reserve_bytes(&fresh, 1 << 20, 100), Ok(1000));
    }
}
