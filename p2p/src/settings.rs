//! What the swarm needs from the node's configuration, already validated.

use std::time::Duration;

use cairn_config::{BootstrapPeer, ValidConfig};
use libp2p::Multiaddr;
use libp2p::pnet::PreSharedKey;
use libp2p_identity::PeerId;

use crate::error::Error;

/// A pre-shared key in Kubo's `swarm.key` format.
#[derive(Clone, Copy)]
pub struct SwarmKey(pub(crate) PreSharedKey);

impl std::fmt::Debug for SwarmKey {
    // The fingerprint identifies the key without revealing it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SwarmKey({})", self.0.fingerprint())
    }
}

impl SwarmKey {
    /// Parses `/key/swarm/psk/1.0.0/\n/base16/\n<64 hex digits>`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        text.parse::<PreSharedKey>()
            .map(Self)
            .map_err(|e| Error::BadSwarmKey(e.to_string()))
    }

    /// A fresh random key, in the file format `parse` reads.
    pub fn generate() -> Result<Self, Error> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| Error::BadSwarmKey(e.to_string()))?;
        Ok(Self(PreSharedKey::new(key)))
    }

    pub fn to_file_text(self) -> String {
        self.0.to_key_file()
    }

    /// A public fingerprint, safe to log.
    pub fn fingerprint(&self) -> String {
        self.0.fingerprint().to_string()
    }
}

/// The swarm's settings.
#[derive(Clone, Debug)]
pub struct NetworkSettings {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<BootstrapPeer>,
    pub min_bootstrap_peers: usize,
    /// Empty: every peer that passes the swarm key is admitted.
    pub allowlist: Vec<PeerId>,
    pub swarm_key: Option<SwarmKey>,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    pub max_pending_connections: u32,
    /// Connections from one IP address, trusted peers aside (see `ip_limits`).
    pub max_connections_per_ip: u32,
    /// Handshakes in progress at once from one IP address.
    pub max_pending_per_ip: u32,
    /// Inbound handshakes one IP address may begin per second (same burst).
    pub handshakes_per_second_per_ip: u32,
    /// New connections are refused while the process uses more than this share of the machine's
    /// memory.
    pub max_memory_fraction: f64,
    pub requests_per_second: u32,
    pub bytes_per_second: u64,
    /// Kademlia messages per second per peer (the cluster's own members aside).
    pub kad_requests_per_second: u32,
    pub kad_requests_per_second_per_ip: u32,
    pub strangers_kad_requests_per_second: u32,
    /// Strangers' shared budgets: per remote IP address, and all of them together.
    pub requests_per_second_per_ip: u32,
    pub bytes_per_second_per_ip: u64,
    pub strangers_requests_per_second: u32,
    pub strangers_bytes_per_second: u64,
    /// A peer whose score falls to this is banned.
    pub ban_score: i64,
    pub ban_duration: Duration,
    /// Capacity of the queue of inbound requests waiting for the node; when it is full, new
    /// requests are answered "slow down" at once.
    pub inbound_queue: usize,
    /// A block request unanswered this long has failed; the fetcher asks another provider.
    pub block_request_timeout: Duration,
    /// A replicate request unanswered this long has failed (the target fetches a whole DAG
    /// before it answers).
    pub replicate_timeout: Duration,
    /// An audit unanswered this long has failed.
    pub audit_timeout: Duration,
    /// A Kademlia query (providers, pin records) gives up after this.
    pub query_timeout: Duration,
    /// How long pin claims stay in this node's DHT store unless put again.
    pub record_ttl: Duration,
    /// Keys one remote peer may have provider records kept for here.
    pub max_provider_keys_per_peer: usize,
    /// Roots one signer's pin records may hold a slot of in this node's DHT store.
    pub max_roots_per_signer: usize,
    /// Roots claimed by strangers' records alone that this node's DHT store keeps.
    pub max_stranger_roots: usize,
    /// Keys that may change any pin (`replication.operators`).
    pub operators: Vec<PeerId>,
    /// The largest replication factor a pin record may ask for (`replication.max_factor`).
    pub max_factor: u32,
    /// Bitswap streams on (`p2p.bitswap`).
    pub bitswap: bool,
    /// Answer other peers' Kademlia queries (a DHT server, as every node is). Off, the node only
    /// asks: it announces no Kademlia protocol, so no peer puts it in its routing table or
    /// hands it out in answers. For tools that join only to look things up, and for the floods
    /// bench's attackers, whose own DHT would otherwise spend the shared machine on answering
    /// each other.
    pub dht_server: bool,
}

impl NetworkSettings {
    /// The cluster's own members: the bootstrap list and the allowlist. They pass the per-address
    /// cap and the slots strangers may take.
    pub fn trusted(&self) -> std::collections::HashSet<PeerId> {
        self.bootstrap
            .iter()
            .map(|b| b.peer_id)
            .chain(self.allowlist.iter().copied())
            .collect()
    }

    /// The documented defaults (those of an empty config file), listening on `listen`, with no
    /// bootstrap peers, allowlist or swarm key.
    pub fn new(listen: Vec<Multiaddr>) -> Self {
        let limits = cairn_config::P2pLimits::default();
        Self {
            listen,
            bootstrap: Vec::new(),
            min_bootstrap_peers: 0,
            allowlist: Vec::new(),
            swarm_key: None,
            max_connections: limits.max_connections,
            max_connections_per_peer: limits.max_connections_per_peer,
            max_pending_connections: limits.max_connections.min(MAX_PENDING_CONNECTIONS),
            max_connections_per_ip: limits.max_connections_per_ip,
            max_pending_per_ip: limits.max_pending_per_ip,
            handshakes_per_second_per_ip: limits.handshakes_per_second_per_ip,
            max_memory_fraction: MAX_MEMORY_FRACTION,
            requests_per_second: limits.requests_per_second,
            bytes_per_second: limits.bytes_per_second.bytes(),
            kad_requests_per_second: limits.kad_requests_per_second,
            kad_requests_per_second_per_ip: limits.kad_requests_per_second_per_ip,
            strangers_kad_requests_per_second: limits.strangers_kad_requests_per_second,
            requests_per_second_per_ip: limits.requests_per_second_per_ip,
            bytes_per_second_per_ip: limits.bytes_per_second_per_ip.bytes(),
            strangers_requests_per_second: limits.strangers_requests_per_second,
            strangers_bytes_per_second: limits.strangers_bytes_per_second.bytes(),
            ban_score: BAN_SCORE,
            ban_duration: BAN_DURATION,
            inbound_queue: INBOUND_QUEUE,
            block_request_timeout: crate::behaviour::BLOCK_REQUEST_TIMEOUT,
            replicate_timeout: crate::behaviour::REPLICATE_TIMEOUT,
            audit_timeout: crate::behaviour::AUDIT_TIMEOUT,
            query_timeout: crate::behaviour::QUERY_TIMEOUT,
            record_ttl: crate::behaviour::RECORD_TTL,
            max_provider_keys_per_peer: crate::event_loop::MAX_PROVIDED_KEYS_PER_PEER,
            max_roots_per_signer: crate::event_loop::MAX_ROOTS_PER_SIGNER,
            max_stranger_roots: crate::event_loop::MAX_STRANGER_ROOTS,
            operators: Vec::new(),
            max_factor: cairn_config::ReplicationConfig::default().max_factor,
            bitswap: false,
            dht_server: true,
        }
    }

    /// Settings from a validated config; the swarm key, when configured, is read by the caller
    /// (it is a secret file with its own permission checks).
    pub fn from_config(config: &ValidConfig, swarm_key: Option<SwarmKey>) -> Self {
        let p2p = &config.raw().p2p;
        Self {
            bootstrap: config.bootstrap.clone(),
            min_bootstrap_peers: p2p.min_bootstrap_peers as usize,
            allowlist: config.allowlist.clone(),
            swarm_key,
            max_connections: p2p.limits.max_connections,
            max_connections_per_peer: p2p.limits.max_connections_per_peer,
            max_pending_connections: p2p.limits.max_connections.min(MAX_PENDING_CONNECTIONS),
            max_connections_per_ip: p2p.limits.max_connections_per_ip,
            max_pending_per_ip: p2p.limits.max_pending_per_ip,
            handshakes_per_second_per_ip: p2p.limits.handshakes_per_second_per_ip,
            requests_per_second: p2p.limits.requests_per_second,
            bytes_per_second: p2p.limits.bytes_per_second.bytes(),
            kad_requests_per_second: p2p.limits.kad_requests_per_second,
            kad_requests_per_second_per_ip: p2p.limits.kad_requests_per_second_per_ip,
            strangers_kad_requests_per_second: p2p.limits.strangers_kad_requests_per_second,
            requests_per_second_per_ip: p2p.limits.requests_per_second_per_ip,
            bytes_per_second_per_ip: p2p.limits.bytes_per_second_per_ip.bytes(),
            strangers_requests_per_second: p2p.limits.strangers_requests_per_second,
            strangers_bytes_per_second: p2p.limits.strangers_bytes_per_second.bytes(),
            operators: config.operators.clone(),
            max_factor: config.raw().replication.max_factor,
            bitswap: p2p.bitswap,
            ..Self::new(config.listen.clone())
        }
    }
}

/// Handshakes in progress at once, each way: enough for a cluster starting together, few enough
/// that a connection flood cannot tie up the node in handshakes.
pub const MAX_PENDING_CONNECTIONS: u32 = 64;
/// New connections stop at 80% of the machine's memory, before the OOM killer would act.
pub const MAX_MEMORY_FRACTION: f64 = 0.8;
/// One wrong block costs 50 points and one refused over-limit request 1 (see `scores`): two wrong
/// blocks, or a sustained flood, ban a peer.
pub const BAN_SCORE: i64 = -100;
pub const BAN_DURATION: Duration = Duration::from_secs(3600);
pub const INBOUND_QUEUE: usize = 256;
