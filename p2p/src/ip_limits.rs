//! Connection limits per remote IP address, beside libp2p's per-peer and total ones: fresh
//! identities are free, addresses are not, so Sybils on one machine share one address's
//! allowance. Three bounds: handshakes begun per second from one address (a peer that is
//! banned, or refused for want of a slot, is refused only after its handshake, so redialling in
//! a loop would cost this node a key exchange each time; the rate is checked before any
//! cryptography), handshakes in progress from one address (stalled connections cannot take every
//! handshake slot) and established connections from one address. Trusted peers (the bootstrap
//! list and the allowlist) pass the established cap: the cluster's own members never queue
//! behind strangers.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::task::{Context, Poll};

use governor::{DefaultKeyedRateLimiter, Quota};
use libp2p::core::Endpoint;
use libp2p::core::transport::PortUse;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::ConnectionEstablished;
use libp2p::swarm::{
    ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Why a connection was refused; its `Display` names the address and the cap.
#[derive(Debug, thiserror::Error)]
pub enum IpLimitExceeded {
    #[error("{ip} began more than {limit} handshakes a second")]
    HandshakeRate { ip: IpAddr, limit: u32 },
    #[error("{ip} already has {limit} handshakes in progress")]
    Pending { ip: IpAddr, limit: u32 },
    #[error("{ip} already has {limit} connections")]
    Established { ip: IpAddr, limit: u32 },
}

#[derive(Debug)]
pub struct IpLimits {
    handshakes_per_second: NonZeroU32,
    handshakes: DefaultKeyedRateLimiter<IpAddr>,
    max_pending: u32,
    max_established: u32,
    trusted: HashSet<PeerId>,
    pending: HashMap<ConnectionId, IpAddr>,
    established: HashMap<ConnectionId, IpAddr>,
    per_ip_pending: HashMap<IpAddr, u32>,
    per_ip_established: HashMap<IpAddr, u32>,
}

/// The IP address of a multiaddr, if it has one.
fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

fn take(counts: &mut HashMap<IpAddr, u32>, ip: IpAddr) {
    if let Some(count) = counts.get_mut(&ip) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(&ip);
        }
    }
}

impl IpLimits {
    pub fn new(
        handshakes_per_second: u32,
        max_pending: u32,
        max_established: u32,
        trusted: HashSet<PeerId>,
    ) -> Self {
        let handshakes_per_second =
            NonZeroU32::new(handshakes_per_second).unwrap_or(NonZeroU32::MIN);
        Self {
            handshakes_per_second,
            handshakes: DefaultKeyedRateLimiter::keyed(Quota::per_second(handshakes_per_second)),
            max_pending,
            max_established,
            trusted,
            pending: HashMap::new(),
            established: HashMap::new(),
            per_ip_pending: HashMap::new(),
            per_ip_established: HashMap::new(),
        }
    }

    /// Forgets addresses quiet long enough for their handshake allowance to refill.
    pub fn prune(&self) {
        self.handshakes.retain_recent();
    }

    fn end_pending(&mut self, connection: ConnectionId) {
        if let Some(ip) = self.pending.remove(&connection) {
            take(&mut self.per_ip_pending, ip);
        }
    }

    /// Whether an inbound connection from `peer` at `remote` fits its address's cap. Counting
    /// waits for the swarm's word that the connection is up (another behaviour may refuse it).
    fn check(&self, peer: PeerId, remote: &Multiaddr) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        let count = self.per_ip_established.get(&ip).copied().unwrap_or(0);
        if count >= self.max_established && !self.trusted.contains(&peer) {
            return Err(ConnectionDenied::new(IpLimitExceeded::Established {
                ip,
                limit: self.max_established,
            }));
        }
        Ok(())
    }
}

impl NetworkBehaviour for IpLimits {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        if self.handshakes.check_key(&ip).is_err() {
            return Err(ConnectionDenied::new(IpLimitExceeded::HandshakeRate {
                ip,
                limit: self.handshakes_per_second.get(),
            }));
        }
        let count = self.per_ip_pending.entry(ip).or_default();
        if *count >= self.max_pending {
            return Err(ConnectionDenied::new(IpLimitExceeded::Pending {
                ip,
                limit: self.max_pending,
            }));
        }
        *count += 1;
        self.pending.insert(connection, ip);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.end_pending(connection);
        self.check(peer, remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Our own dials are counted, never refused here: the total and per-peer caps bound them.
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                connection_id,
                endpoint,
                ..
            }) => {
                if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                    self.established.insert(connection_id, ip);
                    *self.per_ip_established.entry(ip).or_default() += 1;
                }
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                if let Some(ip) = self.established.remove(&connection_id) {
                    take(&mut self.per_ip_established, ip);
                }
            }
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.end_pending(connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
