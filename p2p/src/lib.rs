//! cairn-p2p: the libp2p side of a Cairn node (DESIGN.md §5) — one task owning the swarm
//! ([`EventLoop`]), a cloneable [`Client`] that drives it, admission in layers (swarm key, Noise
//! identity, peer-ID allowlist, bans, connection and memory limits), Kademlia discovery under a
//! private protocol name, the `/cairn/block/1` exchange, per-peer rate limits and peer scores.
//!
//! Only this crate names libp2p types in its public API. It never touches the disk: requests
//! that need the store leave as [`NetworkEvent`]s for the node to answer.
#![forbid(unsafe_code)]

pub mod authority;
mod behaviour;
pub mod bitswap;
pub mod claims;
mod client;
pub mod codec;
mod error;
mod event_loop;
pub mod identity;
mod ip_limits;
mod kad_guard;
mod metrics;
mod network;
mod peer_limits;
mod proof;
pub mod records;
mod scores;
mod settings;
mod transport;

pub use behaviour::{
    AUDIT_PROTOCOL, BLOCK_PROTOCOL, BLOCK_REQUEST_TIMEOUT, KAD_PROTOCOL, MAX_BLOCK_RESPONSE_BYTES,
    MAX_BLOCK_RESPONSE_PAYLOAD, MAX_CIDS_PER_REQUEST, RECORD_TTL, REPLICATE_PROTOCOL,
};
pub use client::{
    AuditAnswer, AuditId, BlockReply, BootstrapProgress, Client, InboundId, NetworkEvent, PeerInfo,
    ReplicateId,
};
pub use error::Error;
pub use event_loop::EventLoop;
pub use event_loop::{AUDIT_BYTES_PER_BLOCK, MAX_AUDIT_BLOCKS};
pub use identity::NodeIdentity;
pub use libp2p::Multiaddr;
pub use libp2p_identity::PeerId;
pub use network::new;
pub use proof::audit_proof;
pub use scores::Offence;
pub use settings::{NetworkSettings, SwarmKey};

/// The `count` peers of `peers` closest to `cid` in Kademlia's XOR space, closest first: where
/// the replicas of `cid` belong. Every node computes the same order from the same peers.
pub fn closest(
    cid: &cid::Cid,
    peers: impl IntoIterator<Item = PeerId>,
    count: usize,
) -> Vec<PeerId> {
    let target = libp2p::kad::KBucketKey::new(cid.hash().to_bytes());
    let mut peers: Vec<PeerId> = peers.into_iter().collect();
    peers.sort_by_key(|peer| libp2p::kad::KBucketKey::from(*peer).distance(&target));
    peers.dedup();
    peers.truncate(count);
    peers
}
