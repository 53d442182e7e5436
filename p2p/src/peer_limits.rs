//! Inbound rate limits, keyed by peer ID (`p2p.limits.requests_per_second`, `bytes_per_second`):
//! each peer has its own buckets, so one peer over its limit never uses another's share. Fresh
//! identities are free, so strangers — peers neither on the bootstrap list nor on the allowlist —
//! also share buckets per remote IP address and one node-wide pair: Sybils multiply their
//! per-peer budgets only up to their address's and the node's. A refused request is answered at
//! once with the time after which the peer may ask again, and counted by the limit it hit.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use libp2p_identity::PeerId;

/// The budgets, per second.
#[derive(Clone, Copy, Debug)]
pub struct Budgets {
    pub requests_per_peer: u32,
    pub bytes_per_peer: u64,
    pub requests_per_ip: u32,
    pub bytes_per_ip: u64,
    pub strangers_requests: u32,
    pub strangers_bytes: u64,
}

/// Which budget refused: the metric's label.
pub type Limit = &'static str;

#[derive(Debug)]
pub struct PeerLimits {
    requests: DefaultKeyedRateLimiter<PeerId>,
    bytes: DefaultKeyedRateLimiter<PeerId>,
    ip_requests: DefaultKeyedRateLimiter<IpAddr>,
    ip_bytes: DefaultKeyedRateLimiter<IpAddr>,
    strangers_requests: DefaultDirectRateLimiter,
    strangers_bytes: DefaultDirectRateLimiter,
    /// The byte bucket's size: a response larger than this could never be sent in one piece.
    byte_burst: u32,
    clock: DefaultClock,
}

/// governor counts in u32 cells; beyond 4 GiB/s the limit is moot anyway.
fn cells(n: u64) -> NonZeroU32 {
    NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)).unwrap_or(NonZeroU32::MIN)
}

impl PeerLimits {
    /// Per-peer budgets only (strangers' shared budgets as large as a peer's times a thousand).
    #[cfg(test)]
    pub fn new(requests_per_second: u32, bytes_per_second: u64) -> Self {
        Self::with_budgets(Budgets {
            requests_per_peer: requests_per_second,
            bytes_per_peer: bytes_per_second,
            requests_per_ip: requests_per_second.saturating_mul(1000),
            bytes_per_ip: bytes_per_second.saturating_mul(1000),
            strangers_requests: requests_per_second.saturating_mul(1000),
            strangers_bytes: bytes_per_second.saturating_mul(1000),
        })
    }

    pub fn with_budgets(budgets: Budgets) -> Self {
        let byte_burst = cells(budgets.bytes_per_peer).get();
        // A shared byte bucket is never smaller than one peer's: a response must fit it.
        let shared_bytes = |n: u64| cells(n.max(budgets.bytes_per_peer));
        Self {
            requests: DefaultKeyedRateLimiter::keyed(Quota::per_second(cells(
                budgets.requests_per_peer.into(),
            ))),
            bytes: DefaultKeyedRateLimiter::keyed(Quota::per_second(cells(budgets.bytes_per_peer))),
            ip_requests: DefaultKeyedRateLimiter::keyed(Quota::per_second(cells(
                budgets.requests_per_ip.into(),
            ))),
            ip_bytes: DefaultKeyedRateLimiter::keyed(Quota::per_second(shared_bytes(
                budgets.bytes_per_ip,
            ))),
            strangers_requests: RateLimiter::direct(Quota::per_second(cells(
                budgets.strangers_requests.into(),
            ))),
            strangers_bytes: RateLimiter::direct(Quota::per_second(shared_bytes(
                budgets.strangers_bytes,
            ))),
            byte_burst,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `peer`'s bucket and, for a stranger (`stranger_ip`: the address it
    /// connects from), from its address's and the strangers' shared ones.
    pub fn admit_request(
        &self,
        peer: &PeerId,
        stranger_ip: Option<IpAddr>,
    ) -> Result<(), (Duration, Limit)> {
        self.check_request(peer)
            .map_err(|wait| (wait, "requests"))?;
        let Some(ip) = stranger_ip else {
            return Ok(());
        };
        let wait = |not_until: governor::NotUntil<_>| {
            not_until.wait_time_from(self.clock.now()).max(MIN_WAIT)
        };
        self.ip_requests
            .check_key(&ip)
            .map_err(|n| (wait(n), "requests_per_ip"))?;
        self.strangers_requests
            .check()
            .map_err(|n| (wait(n), "requests_strangers"))
    }

    /// [`PeerLimits::reserve_bytes`] from `peer`'s bucket, then the same bytes from a stranger's
    /// address's and the strangers' shared buckets.
    pub fn admit_bytes(
        &self,
        peer: &PeerId,
        wanted: usize,
        least: usize,
        stranger_ip: Option<IpAddr>,
    ) -> Result<usize, (Duration, Limit)> {
        let taken = self
            .reserve_bytes(peer, wanted, least)
            .map_err(|wait| (wait, "bytes"))?;
        let Some(ip) = stranger_ip else {
            return Ok(taken);
        };
        let n = cells(taken as u64);
        let refused = |result: Result<Result<(), governor::NotUntil<_>>, _>, limit| match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err((
                governor::NotUntil::wait_time_from(&not_until, self.clock.now()).max(MIN_WAIT),
                limit,
            )),
            Err(_) => Err((Duration::from_secs(1), limit)),
        };
        refused(self.ip_bytes.check_key_n(&ip, n), "bytes_per_ip")?;
        refused(self.strangers_bytes.check_n(n), "bytes_strangers")?;
        Ok(taken)
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

    /// Forgets peers and addresses quiet long enough for their buckets to refill.
    pub fn prune(&self) {
        self.requests.retain_recent();
        self.bytes.retain_recent();
        self.ip_requests.retain_recent();
        self.ip_bytes.retain_recent();
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
    fn strangers_share_their_addresss_and_the_nodes_budgets_and_members_do_not() {
        let limits = PeerLimits::with_budgets(Budgets {
            requests_per_peer: 10,
            bytes_per_peer: 1000,
            requests_per_ip: 20,
            bytes_per_ip: 4000,
            strangers_requests: 30,
            strangers_bytes: 100_000,
        });
        let sybil_ip: IpAddr = [10, 0, 0, 9].into();
        // Ten fresh identities from one address get the address's 20 requests between them.
        let served = (0..10)
            .map(|_| PeerId::random())
            .map(|p| {
                (0..10)
                    .filter(|_| limits.admit_request(&p, Some(sybil_ip)).is_ok())
                    .count()
            })
            .sum::<usize>();
        assert!((20..=21).contains(&served), "served {served}");
        let (_, limit) = limits
            .admit_request(&PeerId::random(), Some(sybil_ip))
            .unwrap_err();
        assert_eq!(limit, "requests_per_ip");
        // Another address's strangers share what is left of the node's 30.
        let other: IpAddr = [10, 0, 0, 10].into();
        let answers: Vec<_> = (0..10)
            .map(|_| PeerId::random())
            .flat_map(|p| (0..10).map(move |_| p))
            .map(|p| limits.admit_request(&p, Some(other)))
            .collect();
        let served = answers.iter().filter(|a| a.is_ok()).count();
        assert!(served <= 11, "served {served}");
        assert!(
            answers
                .iter()
                .any(|a| matches!(a, Err((_, "requests_strangers")))),
            "the node-wide budget ran out first"
        );
        // A member (no stranger address) is held to its own budget only.
        let member = PeerId::random();
        assert_eq!(
            (0..10)
                .filter(|_| limits.admit_request(&member, None).is_ok())
                .count(),
            10
        );
        // Bytes the same way: the address's 4000 bytes over several identities.
        let taken: usize = (0..8)
            .map(|_| {
                limits
                    .admit_bytes(&PeerId::random(), 1000, 1000, Some(sybil_ip))
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(taken, 4000);
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
