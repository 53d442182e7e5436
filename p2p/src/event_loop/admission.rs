//! Admission on the swarm task: dials the node asks for (an address pinned to a peer ID must
//! prove that identity), peer scores and bans, and the reasons refused connections are counted
//! under. The allowlist, the swarm key and the connection limits themselves are behaviours (see
//! `behaviour`); this is what the loop does with their verdicts.

use std::time::Instant;

use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, ListenError};
use libp2p::{Multiaddr, allow_block_list, connection_limits, memory_connection_limits};
use libp2p_identity::PeerId;

use super::{EventLoop, Replier, without_p2p};
use crate::error::Error;
use crate::scores::Offence;

impl EventLoop {
    pub(super) fn dial(&mut self, addr: Multiaddr, reply: Replier<PeerId>) {
        let Some(reply) = self.pending_dials.refuse_when_full(reply, || Error::Dial {
            addr: addr.clone(),
            reason: "too many dials in flight".into(),
        }) else {
            return;
        };
        let opts = match peer_of(&addr) {
            // An address pinned to a peer ID must prove that identity.
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![without_p2p(&addr)])
                .condition(PeerCondition::Always)
                .build(),
            None => DialOpts::unknown_peer_id().address(addr.clone()).build(),
        };
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(connection, (addr, reply));
            }
            Err(e) => {
                let reason = e.to_string();
                self.count_refused_dial(&e, None);
                let _ = reply.send(Err(Error::Dial { addr, reason }));
            }
        }
    }

    pub(super) fn penalise(&mut self, peer: PeerId, offence: Offence) {
        if offence == Offence::BadBlock {
            self.metrics.bad_blocks_received.inc();
        }
        if let Some(until) = self.scores.offend(peer, offence, Instant::now()) {
            self.enforce_ban(peer, until, "score fell to the ban threshold");
        }
    }

    pub(super) fn enforce_ban(&mut self, peer: PeerId, until: Instant, why: &str) {
        let behaviour = self.swarm.behaviour_mut();
        behaviour.bans.block_peer(peer);
        behaviour.kad.remove_peer(&peer);
        let _ = self.swarm.disconnect_peer_id(peer);
        self.metrics.bans.inc();
        let minutes = until.saturating_duration_since(Instant::now()).as_secs() / 60;
        tracing::warn!(%peer, minutes, "peer banned: {why}");
    }

    pub(super) fn count_refused_dial(&mut self, error: &DialError, peer: Option<PeerId>) {
        let reason = match error {
            DialError::WrongPeerId { obtained, address } => {
                let bootstrap = peer.is_some_and(|p| self.is_bootstrap_peer(&p));
                if bootstrap {
                    tracing::warn!(
                        expected = ?peer, %obtained, %address,
                        "bootstrap peer answered with a different identity: dropped (possible poisoning)"
                    );
                    "wrong_bootstrap_identity"
                } else {
                    tracing::warn!(expected = ?peer, %obtained, %address, "peer answered with a different identity: dropped");
                    "wrong_identity"
                }
            }
            DialError::Denied { cause } => denied_reason(cause),
            DialError::Transport(_) => "handshake",
            _ => return,
        };
        self.metrics.refused(reason);
    }
}

pub(super) fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

pub(super) fn denied_reason(cause: &libp2p::swarm::ConnectionDenied) -> &'static str {
    if cause
        .downcast_ref::<allow_block_list::NotAllowed>()
        .is_some()
    {
        "not_allowlisted"
    } else if cause.downcast_ref::<allow_block_list::Blocked>().is_some() {
        "banned"
    } else if cause
        .downcast_ref::<connection_limits::Exceeded>()
        .is_some()
    {
        "connection_limit"
    } else if cause
        .downcast_ref::<memory_connection_limits::MemoryUsageLimitExceeded>()
        .is_some()
    {
        "memory_limit"
    } else if let Some(exceeded) = cause.downcast_ref::<crate::ip_limits::IpLimitExceeded>() {
        match exceeded {
            crate::ip_limits::IpLimitExceeded::HandshakeRate { .. } => "handshakes_per_ip",
            crate::ip_limits::IpLimitExceeded::Pending { .. } => "pending_per_ip",
            crate::ip_limits::IpLimitExceeded::Established { .. } => "connections_per_ip",
        }
    } else {
        "denied"
    }
}

pub(super) fn listen_error_reason(error: &ListenError) -> &'static str {
    match error {
        ListenError::Denied { cause } => denied_reason(cause),
        ListenError::Transport(_) => "handshake",
        ListenError::WrongPeerId { .. } | ListenError::LocalPeerId { .. } => "wrong_identity",
        _ => "aborted",
    }
}
