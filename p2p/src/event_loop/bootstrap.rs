//! Bootstrap on the swarm task: the configured peers are dialled with back-off until they answer
//! (and again when they are lost), a dial that authenticates another identity is refused as a
//! possibly poisoned entry, and a routing table learnt mostly through one bootstrap peer while the
//! others stay silent is warned about once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_config::BootstrapPeer;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError};
use libp2p_identity::PeerId;

use super::{EventLoop, without_p2p};
use crate::client::BootstrapProgress;

/// Bootstrap retries back off from 1 s to this.
const MAX_BOOTSTRAP_BACKOFF: Duration = Duration::from_secs(60);
/// Warn when more than this share of the routing table was learnt through one bootstrap peer.
const DOMINATION_SHARE: f64 = 2.0 / 3.0;
/// ...once the table has at least this many entries (smaller tables are dominated by nature).
const DOMINATION_MIN_TABLE: usize = 4;
/// Routing-table entries whose source is remembered; beyond this, new ones are not attributed.
const MAX_ROUTING_SOURCES: usize = 16_384;
/// After a bootstrap peer answers, Kademlia's bootstrap runs again after 1 s, 2 s, 4 s, ... up to
/// this, then only at Kademlia's own period. A node that joined while its bootstrap peer had not
/// yet learnt of another newcomer would otherwise not meet that newcomer for minutes: neither of
/// the two looks again until a new peer enters its own table.
const LAST_REDISCOVERY: Duration = Duration::from_secs(128);

/// The next re-run of Kademlia's bootstrap while the cluster forms.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rediscovery {
    at: Instant,
    interval: Duration,
}

impl Rediscovery {
    fn starting(now: Instant) -> Self {
        let interval = Duration::from_secs(1);
        Self {
            at: now + interval,
            interval,
        }
    }

    /// The one after this, or none once the interval reached [`LAST_REDISCOVERY`].
    fn next(self, now: Instant) -> Option<Self> {
        let interval = self.interval * 2;
        (interval <= LAST_REDISCOVERY).then(|| Self {
            at: now + interval,
            interval,
        })
    }
}

pub(super) struct BootstrapEntry {
    peer: BootstrapPeer,
    answered: bool,
    failures: u32,
    next_attempt: Instant,
    /// The bootstrap dial in flight; only its failure counts against the entry (other dials to
    /// the same peer, by Kademlia or a request, may try stale addresses).
    dialing: Option<ConnectionId>,
    problem: Option<String>,
}

impl BootstrapEntry {
    pub(super) fn new(peer: BootstrapPeer, now: Instant) -> Self {
        Self {
            peer,
            answered: false,
            failures: 0,
            next_attempt: now,
            dialing: None,
            problem: None,
        }
    }
}

impl EventLoop {
    /// A connection to `peer` is up: when it is a bootstrap peer, it has answered.
    pub(super) fn bootstrap_peer_connected(&mut self, peer: PeerId) {
        let Some(entry) = self.bootstrap.iter_mut().find(|e| e.peer.peer_id == peer) else {
            return;
        };
        if !entry.answered {
            tracing::info!(%peer, addr = %entry.peer.addr, "bootstrap peer answered");
        }
        entry.answered = true;
        entry.dialing = None;
        entry.failures = 0;
        entry.problem = None;
        self.publish_bootstrap_progress();
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
        self.rediscovery = Some(Rediscovery::starting(Instant::now()));
    }

    /// Runs Kademlia's bootstrap again when the forming schedule says so.
    pub(super) fn rediscover(&mut self, now: Instant) {
        let Some(due) = self.rediscovery.filter(|r| r.at <= now) else {
            return;
        };
        // No known peer yet (the table fills on identify): try again at the next step.
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
        self.rediscovery = due.next(now);
    }

    /// The last connection to `peer` closed: a lost bootstrap peer is dialled again, with
    /// back-off.
    pub(super) fn bootstrap_peer_lost(&mut self, peer: PeerId) {
        let Some(entry) = self.bootstrap.iter_mut().find(|e| e.peer.peer_id == peer) else {
            return;
        };
        entry.answered = false;
        entry.next_attempt = Instant::now() + Duration::from_secs(1);
        self.publish_bootstrap_progress();
    }

    /// An outbound dial failed: when it was a bootstrap dial, the entry backs off.
    pub(super) fn bootstrap_dial_failed(
        &mut self,
        connection: ConnectionId,
        peer: Option<PeerId>,
        error: &DialError,
    ) {
        let bootstrap_dial = peer.filter(|peer| {
            self.bootstrap
                .iter()
                .any(|e| e.peer.peer_id == *peer && e.dialing == Some(connection))
        });
        if let Some(peer) = bootstrap_dial {
            let problem = match error {
                DialError::WrongPeerId { obtained, .. } => format!(
                    "answered as {obtained}, not the pinned {peer}: refused as a possible \
                     poisoned bootstrap entry"
                ),
                other => other.to_string(),
            };
            self.bootstrap_failed(peer, problem, Instant::now());
        }
    }

    pub(super) fn dial_bootstrap_peers(&mut self, now: Instant) {
        for index in 0..self.bootstrap.len() {
            let entry = &self.bootstrap[index];
            if entry.answered || entry.dialing.is_some() || entry.next_attempt > now {
                continue;
            }
            let peer_id = entry.peer.peer_id;
            if self.swarm.is_connected(&peer_id) {
                self.bootstrap[index].answered = true;
                self.publish_bootstrap_progress();
                continue;
            }
            let addr = without_p2p(&entry.peer.addr);
            let opts = DialOpts::peer_id(peer_id)
                .addresses(vec![addr])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            let connection = opts.connection_id();
            match self.swarm.dial(opts) {
                Ok(()) => self.bootstrap[index].dialing = Some(connection),
                Err(e) => self.bootstrap_failed(peer_id, e.to_string(), now),
            }
        }
    }

    pub(super) fn bootstrap_failed(&mut self, peer: PeerId, problem: String, now: Instant) {
        let Some(entry) = self.bootstrap.iter_mut().find(|e| e.peer.peer_id == peer) else {
            return;
        };
        entry.dialing = None;
        entry.failures = entry.failures.saturating_add(1);
        let backoff = Duration::from_secs(1u64 << entry.failures.min(6)).min(MAX_BOOTSTRAP_BACKOFF);
        entry.next_attempt = now + backoff;
        tracing::debug!(%peer, addr = %entry.peer.addr, %problem, retry_in_s = backoff.as_secs(), "bootstrap peer did not answer");
        entry.problem = Some(format!("{}: {problem}", entry.peer.addr));
        self.publish_bootstrap_progress();
    }

    pub(super) fn publish_bootstrap_progress(&mut self) {
        let progress = BootstrapProgress {
            answered: self.bootstrap.iter().filter(|e| e.answered).count(),
            problems: self
                .bootstrap
                .iter()
                .filter(|e| !e.answered)
                .filter_map(|e| e.problem.clone())
                .collect(),
        };
        self.bootstrap_progress.send_if_modified(|old| {
            let changed = *old != progress;
            *old = progress;
            changed
        });
    }

    pub(super) fn is_bootstrap_peer(&self, peer: &PeerId) -> bool {
        self.bootstrap.iter().any(|e| e.peer.peer_id == *peer)
    }

    /// Notes which bootstrap peer a new routing-table entry came through: the only one connected
    /// when it arrived, if only one was.
    pub(super) fn note_routing_source(&mut self, peer: PeerId) {
        if self.is_bootstrap_peer(&peer) || self.learnt_via.len() >= MAX_ROUTING_SOURCES {
            return;
        }
        let connected: Vec<PeerId> = self
            .bootstrap
            .iter()
            .filter(|e| self.connected.contains_key(&e.peer.peer_id))
            .map(|e| e.peer.peer_id)
            .collect();
        let source = (connected.len() == 1).then(|| connected[0]);
        self.learnt_via.insert(peer, source);
    }

    /// Warns once when most of the routing table came through one bootstrap peer while the other
    /// bootstrap peers fail to answer: a poisoned bootstrap peer would look exactly like this.
    /// While the others are still being dialled, the order of arrival means nothing.
    pub(super) fn check_routing_domination(&mut self) {
        if self.domination_warned || self.bootstrap.len() < 2 {
            return;
        }
        let total = self.learnt_via.len();
        if total < DOMINATION_MIN_TABLE {
            return;
        }
        let mut by_source: HashMap<PeerId, usize> = HashMap::new();
        for via in self.learnt_via.values().flatten() {
            *by_source.entry(*via).or_default() += 1;
        }
        let Some((via, count)) = by_source.into_iter().max_by_key(|(_, n)| *n) else {
            return;
        };
        let others_failing = self
            .bootstrap
            .iter()
            .filter(|e| e.peer.peer_id != via)
            .all(|e| !e.answered && e.failures > 0);
        if others_failing && count as f64 > DOMINATION_SHARE * total as f64 {
            self.domination_warned = true;
            self.metrics.routing_dominated.inc();
            tracing::warn!(
                bootstrap_peer = %via, learnt = count, table = total,
                "most of the routing table was learnt through a single bootstrap peer while the \
                 others do not answer; if it is poisoned, so is this node's view of the network"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rediscovery_backs_off_from_one_second_and_then_leaves_it_to_kademlia() {
        let start = Instant::now();
        let mut step = Some(Rediscovery::starting(start));
        let mut waits = Vec::new();
        let mut now = start;
        while let Some(due) = step {
            waits.push(due.at.duration_since(now).as_secs());
            now = due.at;
            step = due.next(now);
        }
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 64, 128]);
    }
}
