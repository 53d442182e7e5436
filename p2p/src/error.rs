use std::time::Duration;

use libp2p::Multiaddr;
use libp2p_identity::PeerId;

/// Errors of the P2P layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("identity key is not a valid ed25519 libp2p key: {0}")]
    BadIdentity(String),
    #[error(
        "swarm key is not in Kubo's swarm.key format (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits): {0}"
    )]
    BadSwarmKey(String),
    #[error("building the transport failed: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("dialling {addr} failed: {reason}")]
    Dial { addr: Multiaddr, reason: String },
    #[error("request to peer {peer} failed: {reason}")]
    Request { peer: PeerId, reason: String },
    #[error("peer {peer} does not speak the protocol asked for")]
    Unsupported { peer: PeerId },
    #[error("peer {peer} asked us to slow down; retry in {} ms", retry_after.as_millis())]
    SlowDown { peer: PeerId, retry_after: Duration },
    #[error("the network lookup failed: {0}")]
    Lookup(String),
    #[error(
        "only {answered} of the {wanted} required bootstrap peers answered within {} s{problems}",
        timeout.as_secs()
    )]
    BootstrapTimeout {
        wanted: usize,
        answered: usize,
        timeout: Duration,
        problems: String,
    },
    #[error("refused a signed record: {0}")]
    BadRecord(String),
    #[error("the P2P task has stopped")]
    Stopped,
}
