//! Kademlia under the same discipline as Cairn's own protocols. Kademlia answers `FIND_NODE`,
//! `GET_VALUE` and `GET_PROVIDERS` by itself, and its events do not say who asked; so this
//! wrapper counts every message a peer's Kademlia connection hands up — an inbound request, or an
//! answer to one of ours, which our own queries already bound — against a per-peer rate, a rate
//! per remote IP address (fresh identities on one machine share it) and one for all strangers
//! together, and reports the peers over any of them. The swarm task penalises them like any peer
//! over its limit, so a Kademlia flood ends in bans. The cluster's own members (bootstrap list,
//! allowlist) are not counted: their surveys of many pins are legitimate Kademlia traffic.
//! Everything else is Kademlia's own behaviour, reached through `Deref`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::ops::{Deref, DerefMut};
use std::task::{Context, Poll};

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::kad;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, DialFailure, FromSwarm, ListenFailure,
    NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Peers over their rate waiting for the swarm task; past this, further reports are dropped
/// (the peers in it are penalised already and will be again).
const MAX_REPORTS: usize = 1024;

/// Kademlia messages per second (each with the same burst) a stranger may hand up: as one peer,
/// from one IP address, and all strangers together.
#[derive(Clone, Copy, Debug)]
pub struct KadRates {
    pub per_peer: u32,
    pub per_ip: u32,
    pub strangers: u32,
}

/// Which of the [`KadRates`] a peer went over: the metric's `limit` label.
pub type KadLimit = &'static str;

pub struct KadGuard {
    inner: kad::Behaviour<kad::store::MemoryStore>,
    per_peer: DefaultKeyedRateLimiter<PeerId>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    strangers: DefaultDirectRateLimiter,
    trusted: HashSet<PeerId>,
    /// The remote address of every connection, to charge its IP.
    ips: HashMap<ConnectionId, IpAddr>,
    over: VecDeque<(PeerId, KadLimit)>,
}

impl std::fmt::Debug for KadGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KadGuard").finish_non_exhaustive()
    }
}

fn quota(per_second: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN))
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        libp2p::multiaddr::Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl KadGuard {
    /// Strangers (peers not in `trusted`) are held to `rates`.
    pub fn new(
        inner: kad::Behaviour<kad::store::MemoryStore>,
        rates: KadRates,
        trusted: HashSet<PeerId>,
    ) -> Self {
        Self {
            inner,
            per_peer: DefaultKeyedRateLimiter::keyed(quota(rates.per_peer)),
            per_ip: DefaultKeyedRateLimiter::keyed(quota(rates.per_ip)),
            strangers: DefaultDirectRateLimiter::direct(quota(rates.strangers)),
            trusted,
            ips: HashMap::new(),
            over: VecDeque::new(),
        }
    }

    /// The next peer seen over a Kademlia rate, and which, if any.
    pub fn take_over_limit(&mut self) -> Option<(PeerId, KadLimit)> {
        self.over.pop_front()
    }

    /// Forgets peers and addresses quiet long enough for their buckets to refill.
    pub fn prune(&self) {
        self.per_peer.retain_recent();
        self.per_ip.retain_recent();
    }

    /// Charges one message from `peer` on `connection`; the first rate it is over, if any.
    fn charge(&self, peer: &PeerId, connection: &ConnectionId) -> Option<KadLimit> {
        if self.trusted.contains(peer) {
            return None;
        }
        if self.per_peer.check_key(peer).is_err() {
            return Some("kad_requests");
        }
        if let Some(ip) = self.ips.get(connection)
            && self.per_ip.check_key(ip).is_err()
        {
            return Some("kad_requests_per_ip");
        }
        if self.strangers.check().is_err() {
            return Some("kad_requests_strangers");
        }
        None
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
        let handler = self
            .inner
            .handle_established_inbound_connection(connection, peer, local, remote)?;
        if let Some(ip) = ip_of(remote) {
            self.ips.insert(connection, ip);
        }
        Ok(handler)
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
        let handler = self
            .inner
            .handle_established_outbound_connection(connection, peer, addr, role, port_use)?;
        if let Some(ip) = ip_of(addr) {
            self.ips.insert(connection, ip);
        }
        Ok(handler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        // A connection refused by a behaviour after this one never closes: forget it at its
        // failure too.
        match &event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. })
            | FromSwarm::DialFailure(DialFailure { connection_id, .. }) => {
                self.ips.remove(connection_id);
            }
            _ => {}
        }
        self.inner.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        if let Some(limit) = self.charge(&peer, &connection)
            && self.over.len() < MAX_REPORTS
        {
            self.over.push_back((peer, limit));
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
