//! cairn-p2p: the libp2p side of a Cairn node — one task owning the swarm, admission (swarm key,
//! peer-ID allowlist, connection limits), Kademlia discovery, the block, replicate and audit wire
//! protocols, and per-peer rate limits (DESIGN.md §5).
//!
//! Today it holds the node's identity; the swarm lands with the P2P issue.

mod error;
pub mod identity;

pub use error::Error;
pub use identity::NodeIdentity;
pub use libp2p_identity::PeerId;
