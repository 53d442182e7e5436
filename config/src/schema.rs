//! The configuration file's shape and its documented defaults (DESIGN.md §11). Every key has a
//! default here; `cairn.example.toml` spells the same defaults out and a test keeps them equal.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::units::{HumanDuration, Size};

/// The whole configuration as written in TOML, before validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where blocks, keys and tokens live.
    pub data_dir: PathBuf,
    pub identity: IdentityConfig,
    pub p2p: P2pConfig,
    pub storage: StorageConfig,
    pub replication: ReplicationConfig,
    pub scrub: ScrubConfig,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub gateway: GatewayConfig,
    pub log: LogConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/cairn"),
            identity: IdentityConfig::default(),
            p2p: P2pConfig::default(),
            storage: StorageConfig::default(),
            replication: ReplicationConfig::default(),
            scrub: ScrubConfig::default(),
            admin: AdminConfig::default(),
            metrics: MetricsConfig::default(),
            gateway: GatewayConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// The node's identity key (`identity.key` in the data directory, or the systemd credential
/// `identity.key`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// The passphrase that opens an encrypted identity key (`cairn encrypt-key`); empty when the
    /// key is stored plain. The systemd credential `identity.passphrase` wins over it.
    pub passphrase_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pConfig {
    /// Multiaddrs to listen on. QUIC (`/udp/…/quic-v1`) only when no swarm key is set.
    pub listen: Vec<String>,
    /// Bootstrap peers, each pinned to its identity: `/ip4/…/tcp/…/p2p/<peer-id>`.
    pub bootstrap: Vec<String>,
    /// How many bootstrap peers must answer before the node reports ready.
    pub min_bootstrap_peers: u32,
    /// How long start-up waits for them before it fails.
    pub bootstrap_timeout: HumanDuration,
    /// Peer IDs admitted; empty admits every peer that passes the swarm key.
    pub allowlist: Vec<String>,
    /// Pre-shared key in Kubo's swarm.key format; empty means none.
    pub swarm_key_file: PathBuf,
    /// Serve blocks over Bitswap (`/ipfs/bitswap/1.2.0`) to admitted IPFS peers such as Kubo.
    pub bitswap: bool,
    pub limits: P2pLimits,
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/0.0.0.0/tcp/4101".to_owned()],
            bootstrap: Vec::new(),
            min_bootstrap_peers: 1,
            bootstrap_timeout: HumanDuration::secs(60),
            allowlist: Vec::new(),
            swarm_key_file: PathBuf::new(),
            bitswap: false,
            limits: P2pLimits::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct P2pLimits {
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    /// Connections from one IP address (bootstrap and allowlisted peers aside): Sybil identities
    /// on one machine share it.
    pub max_connections_per_ip: u32,
    /// Handshakes in progress at once from one IP address: stalled connections from one address
    /// cannot take every handshake slot.
    pub max_pending_per_ip: u32,
    /// Inbound handshakes one IP address may begin per second, checked before any cryptography:
    /// a peer refused after its handshake (banned, or no slot) cannot make this node pay for
    /// key exchanges in a loop.
    pub handshakes_per_second_per_ip: u32,
    /// Requests per second per peer.
    pub requests_per_second: u32,
    /// Bytes per second per peer.
    pub bytes_per_second: Size,
    /// Kademlia messages per second per peer (bootstrap and allowlisted peers aside); a peer
    /// over it loses score like any peer over its limit.
    pub kad_requests_per_second: u32,
    /// Kademlia messages per second from one IP address and from all strangers together (the
    /// same discipline as `requests_per_second_per_ip` and `strangers_requests_per_second`):
    /// fresh identities on one machine share one allowance.
    pub kad_requests_per_second_per_ip: u32,
    pub strangers_kad_requests_per_second: u32,
    /// Requests and bytes per second from one IP address, over all the strangers (peers neither
    /// on the bootstrap list nor on the allowlist) connecting from it.
    pub requests_per_second_per_ip: u32,
    pub bytes_per_second_per_ip: Size,
    /// Requests and bytes per second from all strangers together.
    pub strangers_requests_per_second: u32,
    pub strangers_bytes_per_second: Size,
}

impl Default for P2pLimits {
    fn default() -> Self {
        Self {
            max_connections: 256,
            max_connections_per_peer: 2,
            max_connections_per_ip: 32,
            max_pending_per_ip: 8,
            handshakes_per_second_per_ip: 10,
            requests_per_second: 200,
            bytes_per_second: Size::mib(256),
            kad_requests_per_second: 1000,
            kad_requests_per_second_per_ip: 200,
            strangers_kad_requests_per_second: 1000,
            requests_per_second_per_ip: 400,
            bytes_per_second_per_ip: Size::mib(512),
            strangers_requests_per_second: 2000,
            strangers_bytes_per_second: Size::mib(1024),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Hard quota on stored block bytes; 0 means no quota.
    pub max_bytes: Size,
    /// Sync the write-ahead log before a write is acknowledged.
    pub sync_writes: bool,
    /// Largest block accepted from anyone.
    pub max_block_size: Size,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            max_bytes: Size(0),
            sync_writes: true,
            max_block_size: Size::mib(2),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Copies of each pin the cluster keeps, unless the pin says otherwise.
    pub factor: u32,
    /// Receipts `add` waits for before it returns.
    pub write_quorum: u32,
    /// How long a holder may be unreachable before its copy is replaced.
    pub repair_grace: HumanDuration,
    pub repair_bytes_per_second: Size,
    pub audit_interval: HumanDuration,
    /// How long a holder may take to answer a proof round: fetching the sampled blocks from
    /// another holder on demand should take longer.
    pub audit_deadline: HumanDuration,
    /// Keys (peer IDs, as `cairn operator-key new` prints them) that may unpin, restore or
    /// change any pin. Empty: each pin's owner only.
    pub operators: Vec<String>,
    /// The largest replication factor any pin record may ask for.
    pub max_factor: u32,
    /// How long an unpinned root's blocks stay on its holders (`cairn pin restore` undoes the
    /// unpin until then).
    pub unpin_grace: HumanDuration,
    /// The largest DAG a peer may ask this node to hold.
    pub max_pin_bytes: Size,
    /// Bytes this node holds for the pins of any one owner, over all its roots.
    pub max_share_per_peer: Size,
    /// How long fetching one replica may take before the request fails.
    pub replica_fetch_timeout: HumanDuration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            factor: 3,
            write_quorum: 2,
            repair_grace: HumanDuration::secs(5 * 60),
            repair_bytes_per_second: Size::mib(64),
            audit_interval: HumanDuration::secs(10 * 60),
            audit_deadline: HumanDuration::secs(5),
            operators: Vec::new(),
            max_factor: 5,
            unpin_grace: HumanDuration::secs(24 * 3600),
            max_pin_bytes: Size::mib(64 * 1024),
            max_share_per_peer: Size::mib(256 * 1024),
            replica_fetch_timeout: HumanDuration::secs(3600),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// How often every block is re-verified.
    pub interval: HumanDuration,
    pub bytes_per_second: Size,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self {
            interval: HumanDuration::secs(7 * 86_400),
            bytes_per_second: Size::mib(32),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// gRPC admin API address; loopback by default.
    pub listen: String,
    /// Paths relative to `data_dir` unless absolute.
    pub token_file: PathBuf,
    pub readonly_token_file: PathBuf,
    /// TLS is on when both are set.
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    /// Admin API calls per second per client address, with the same burst.
    pub requests_per_second: u32,
    /// Calls that fail authentication, per second per client address: a bucket of their own, so
    /// a flood of guesses never spends a valid caller's allowance.
    pub failed_auth_per_second: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4102".to_owned(),
            token_file: PathBuf::from("admin.token"),
            readonly_token_file: PathBuf::from("readonly.token"),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
            requests_per_second: 100,
            failed_auth_per_second: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Prometheus endpoint; empty turns it off.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4103".to_owned(),
        }
    }
}

/// The read-only trustless HTTP gateway (raw blocks and CAR streams under `/ipfs/{cid}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Off unless set: the gateway serves everything the node holds to whoever reaches it.
    pub enabled: bool,
    pub listen: String,
    /// Fetch content the node lacks from the cluster (verified block by block) instead of 404.
    pub fetch: bool,
    /// How long a fetch may take before the request ends with 504.
    pub fetch_timeout: HumanDuration,
    /// Requests per second per client address, with the same burst.
    pub requests_per_second: u32,
    /// Response bytes per second per client address; a faster reader is slowed, not cut off.
    pub bytes_per_second: Size,
    /// Responses in flight per client address.
    pub max_streams_per_client: u32,
    /// Responses in flight in all.
    pub max_streams: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:4104".to_owned(),
            fetch: false,
            fetch_timeout: HumanDuration::secs(60),
            requests_per_second: 20,
            bytes_per_second: Size::mib(64),
            max_streams_per_client: 4,
            max_streams: 64,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level (`error` … `trace`) or a filter such as `info,cairn_p2p=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
