//! cairn-p2p: the libp2p side of a Cairn node — one task owning the swarm, admission (swarm key,
//! peer-ID allowlist, connection limits), Kademlia discovery, the block, replicate and audit wire
//! protocols, and per-peer rate limits (DESIGN.md §5).
//!
//! Empty until the P2P issue lands; the crate exists now so the workspace has its final shape and
//! the dependency direction (`config` ← `p2p` ← `node`) is fixed from the start.
