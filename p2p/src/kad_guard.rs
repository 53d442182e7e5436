//! Kademlia under the same discipline as Cairn's own protocols. Kademlia answers `FIND_NODE`,
//! `GET_VALUE` and `GET_PROVIDERS` by itself, and its events do not say who asked; so this
//! wrapper counts every message a peer's Kademlia connection hands up — an inbound request, or an
//! answer to one of ours, which our own queries already bound — against a per-peer rate, and
//! reports the peers over it. The swarm task penalises them like any peer over its limit, so a
//! Kademlia flood ends in a ban. The cluster's own members (bootstrap list, allowlist) are not
//! counted: their surveys of many pins are legitimate Kademlia traffic. Everything else is
//! Kademlia's own behaviour, reached through `Deref`.

use std::collections::{HashSet, VecDeque};
use std::num::NonZeroU32;
use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

use governor::{DefaultKeyedRateLimiter, Quota};
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::kad;
use libp2p::swarm::{
    ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Peers over their rate waiting for the swarm task; past this, further reports are dropped
/// (the peers in it are penalised already and will be again).
const MAX_REPORTS: usize = 1024;

pub struct KadGuard {
    inner: kad::Behaviour<kad::store::MemoryStore>,
    rate: DefaultKeyedRateLimiter<PeerId>,
    trusted: HashSet<PeerId>,
    over: VecDeque<PeerId>,
}

impl std::fmt::Debug for KadGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KadGuard").finish_non_exhaustive()
    }
}

impl KadGuard {
    /// `per_second`: Kademlia messages one peer (not in `trusted`) may hand up per second, with
    /// the same burst.
    pub fn new(
        inner: kad::Behaviour<kad::store::MemoryStore>,
        per_second: u32,
        trusted: HashSet<PeerId>,
    ) -> Self {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        Self {
            inner,
            rate: DefaultKeyedRateLimiter::keyed(Quota::per_second(per_second)),
            trusted,
            over: VecDeque::new(),
        }
    }

    /// The next peer seen over its Kademlia rate, if any.
    pub fn take_over_limit(&mut self) -> Option<PeerId> {
        self.over.pop_front()
    }

    /// Forgets peers quiet long enough for their buckets to refill.
    pub fn prune(&self) {
        self.rate.retain_recent();
    }
}

impl Deref for KadGuard {
    type Target = kad::Behaviour<kad::store::MemoryStore>;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl DerefMut for KadGuard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

type Inner = kad::Behaviour<kad::store::MemoryStore>;

impl NetworkBehaviour for KadGuard {
    type ConnectionHandler = <Inner as NetworkBehaviour>::ConnectionHandler;
    type ToSwarm = <Inner as NetworkBehaviour>::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.inner
            .handle_pending_inbound_connection(connection, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_inbound_connection(connection, peer, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner
            .handle_pending_outbound_connection(connection, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.inner
            .handle_established_outbound_connection(connection, peer, addr, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        if !self.trusted.contains(&peer)
            && self.rate.check_key(&peer).is_err()
            && self.over.len() < MAX_REPORTS
        {
            self.over.push_back(peer);
        }
        self.inner
            .on_connection_handler_event(peer, connection, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.inner.poll(cx)
    }
}
