//! The swarm's behaviours, in admission order: the allowlist and the ban list refuse a peer
//! before anything else sees it, then the connection and memory limits, then the protocols.
//! A connection denied by an earlier behaviour never reaches Kademlia, so a refused peer never
//! enters the routing table.

use std::num::NonZeroUsize;
use std::time::Duration;

use cairn_proto::wire::{
    AuditRequest, AuditResponse, BlockRequest, BlockResponse, ReplicateRequest, ReplicateResponse,
};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, allow_block_list, connection_limits, identify, kad, memory_connection_limits,
    ping, request_response,
};
use libp2p_identity::{Keypair, PeerId};

use crate::codec::{FrameLimits, ProstCodec};
use crate::settings::NetworkSettings;

/// Kademlia's protocol name: private, so Cairn nodes never join the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/kad/1.0.0");
/// The block exchange protocol.
pub const BLOCK_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/block/1");
/// The replication protocol: "hold this root", answered with a signed receipt.
pub const REPLICATE_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/replicate/1");
/// A replicate request and its answer are a CID, a nonce and a signed receipt: small.
pub const MAX_REPLICATE_BYTES: usize = 4096;
/// A target fetches the whole DAG before it answers; a large file over a slow link takes a while.
pub const REPLICATE_TIMEOUT: Duration = Duration::from_secs(600);
/// The audit protocol: "prove you hold this root", answered with a hash over a nonce and a block.
pub const AUDIT_PROTOCOL: StreamProtocol = StreamProtocol::new("/cairn/audit/1");
/// An audit is two CIDs and a nonce; its answer a flag, a digest and a short reason.
pub const MAX_AUDIT_BYTES: usize = 1024;
/// A holder reads one block to answer; longer means it is not answering.
pub const AUDIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Pin records this node keeps in its part of the DHT. One is a few hundred bytes.
pub const MAX_PIN_RECORDS: usize = 100_000;
/// Every connection is pinged this often; a ping unanswered within `PING_TIMEOUT` closes the
/// connection (see the event loop), so a partitioned peer counts as gone within seconds rather
/// than when TCP finally gives up.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// What Identify announces; peers running anything else are not Cairn nodes.
pub const AGENT_PROTOCOL: &str = "/cairn/id/1.0.0";

/// Most CIDs one block request may name: enough for a window of 256 KiB leaves, small enough that
/// one request cannot make a node read a large part of its store at once.
pub const MAX_CIDS_PER_REQUEST: usize = 64;
/// Block bytes one response carries at most; responders stop adding blocks before this and the
/// requester asks again for the rest. A 2 MiB block always fits.
pub const MAX_BLOCK_RESPONSE_PAYLOAD: usize = 8 * 1024 * 1024;
/// Largest response body a node sends or accepts: the payload, plus room for CIDs and framing.
pub const MAX_BLOCK_RESPONSE_BYTES: usize = MAX_BLOCK_RESPONSE_PAYLOAD + 64 * 1024;
/// A request names at most MAX_CIDS_PER_REQUEST CIDs of at most 100 bytes each (with framing).
pub const MAX_BLOCK_REQUEST_BYTES: usize = MAX_CIDS_PER_REQUEST * 110;
/// Provider records this node keeps for its own pins. Each is a few hundred bytes, so the bound
/// holds the memory at tens of MiB while covering clusters with many pins.
pub const MAX_PROVIDED_KEYS: usize = 100_000;
/// A Kademlia query that takes longer than this ends with what it found.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long pin claims live in a node's DHT store without being put again; nodes republish
/// what they keep every quarter of it.
pub const RECORD_TTL: Duration = Duration::from_secs(48 * 3600);
/// A block request that takes longer than this failed; the fetcher asks another provider.
pub const BLOCK_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Concurrent block streams per connection; beyond this, yamux refuses new streams.
pub const MAX_CONCURRENT_BLOCK_STREAMS: usize = 64;
/// Connection slots kept for this node's own dials at the least (an eighth of
/// `max_connections` when that is more): inbound strangers cannot take them.
pub const RESERVED_OUTBOUND_SLOTS: u32 = 8;

pub type BlockCodec = ProstCodec<BlockRequest, BlockResponse>;
pub type ReplicateCodec = ProstCodec<ReplicateRequest, ReplicateResponse>;
pub type AuditCodec = ProstCodec<AuditRequest, AuditResponse>;

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub struct Behaviour {
    pub allowlist: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    pub bans: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub connection_limits: connection_limits::Behaviour,
    pub ip_limits: crate::ip_limits::IpLimits,
    pub memory_limits: memory_connection_limits::Behaviour,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub kad: crate::kad_guard::KadGuard,
    pub blocks: request_response::Behaviour<BlockCodec>,
    pub replicate: request_response::Behaviour<ReplicateCodec>,
    pub audit: request_response::Behaviour<AuditCodec>,
    /// Raw streams for Bitswap, when `p2p.bitswap` is on.
    pub stream: Toggle<libp2p_stream::Behaviour>,
}

impl Behaviour {
    pub fn new(key: &Keypair, settings: &NetworkSettings) -> Self {
        let local = key.public().to_peer_id();
        let allowlist = (!settings.allowlist.is_empty()).then(|| {
            let mut allowed =
                allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
            for peer in &settings.allowlist {
                allowed.allow_peer(*peer);
            }
            allowed
        });
        // Strangers may take all but the reserved slots inbound; the cluster's own members
        // (bootstrap list, allowlist) are never refused for want of a slot, either way.
        let reserved = (settings.max_connections / 8)
            .max(RESERVED_OUTBOUND_SLOTS.min(settings.max_connections / 2));
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(settings.max_connections))
            .with_max_established_incoming(Some(settings.max_connections - reserved))
            .with_max_established_per_peer(Some(settings.max_connections_per_peer))
            .with_max_pending_incoming(Some(settings.max_pending_connections))
            .with_max_pending_outgoing(Some(settings.max_pending_connections));
        let mut connection_limits = connection_limits::Behaviour::new(limits);
        let trusted = settings.trusted();
        for peer in &trusted {
            connection_limits.bypass_peer_id(peer);
        }
        Self {
            allowlist: allowlist.into(),
            bans: allow_block_list::Behaviour::default(),
            connection_limits,
            ip_limits: crate::ip_limits::IpLimits::new(
                settings.handshakes_per_second_per_ip,
                settings.max_pending_per_ip,
                settings.max_connections_per_ip,
                trusted,
            ),
            memory_limits: memory_connection_limits::Behaviour::with_max_percentage(
                settings.max_memory_fraction,
            ),
            identify: identify::Behaviour::new(identify::Config::new(
                AGENT_PROTOCOL.to_owned(),
                key.public(),
            )),
            ping: ping::Behaviour::new(
                ping::Config::new()
                    .with_interval(PING_INTERVAL)
                    .with_timeout(PING_TIMEOUT),
            ),
            kad: crate::kad_guard::KadGuard::new(
                kademlia(local, settings),
                crate::kad_guard::KadRates {
                    per_peer: settings.kad_requests_per_second,
                    per_ip: settings.kad_requests_per_second_per_ip,
                    strangers: settings.strangers_kad_requests_per_second,
                },
                settings.trusted(),
            ),
            blocks: request_response::Behaviour::with_codec(
                ProstCodec::new(FrameLimits {
                    max_request_bytes: MAX_BLOCK_REQUEST_BYTES,
                    max_response_bytes: MAX_BLOCK_RESPONSE_BYTES,
                }),
                [(BLOCK_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(settings.block_request_timeout)
                    .with_max_concurrent_streams(MAX_CONCURRENT_BLOCK_STREAMS),
            ),
            replicate: request_response::Behaviour::with_codec(
                ProstCodec::new(FrameLimits {
                    max_request_bytes: MAX_REPLICATE_BYTES,
                    max_response_bytes: MAX_REPLICATE_BYTES,
                }),
                [(REPLICATE_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(settings.replicate_timeout)
                    .with_max_concurrent_streams(MAX_CONCURRENT_BLOCK_STREAMS),
            ),
            audit: request_response::Behaviour::with_codec(
                ProstCodec::new(FrameLimits {
                    max_request_bytes: MAX_AUDIT_BYTES,
                    max_response_bytes: MAX_AUDIT_BYTES,
                }),
                [(AUDIT_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(settings.audit_timeout)
                    .with_max_concurrent_streams(MAX_CONCURRENT_BLOCK_STREAMS),
            ),
            stream: settings.bitswap.then(libp2p_stream::Behaviour::new).into(),
        }
    }
}

/// The DHT's local store: bounded in records, record size, and the keys this node provides.
fn dht_store(local: PeerId) -> kad::store::MemoryStore {
    kad::store::MemoryStore::with_config(
        local,
        kad::store::MemoryStoreConfig {
            max_provided_keys: MAX_PROVIDED_KEYS,
            max_records: MAX_PIN_RECORDS,
            max_value_bytes: crate::claims::MAX_CLAIMS_BYTES,
            ..Default::default()
        },
    )
}

fn kademlia(local: PeerId, settings: &NetworkSettings) -> kad::Behaviour<kad::store::MemoryStore> {
    let store = dht_store(local);
    let mut config = kad::Config::new(KAD_PROTOCOL);
    config.set_query_timeout(settings.query_timeout);
    config.set_periodic_bootstrap_interval(Some(Duration::from_secs(300)));
    // Every record a peer offers is checked before it is kept (a signed pin record, newer than
    // the one held; providers as announced); see `event_loop::records`.
    config.set_record_filtering(kad::StoreInserts::FilterBoth);
    // Pin claims expire here unless someone puts them again: every node that keeps claims (the
    // holders, and the node that unpinned, for its tombstone) republishes them well within the
    // TTL, so what a flood put here once drains while the cluster's own stay.
    config.set_record_ttl(Some(settings.record_ttl));
    // A root's pin claims (one signed record per owner) with room for the closer peers that a
    // lookup's answer carries beside them.
    config.set_max_packet_size(crate::claims::MAX_CLAIMS_BYTES + 16 * 1024);
    // Small private clusters: a provider lookup should not wait for 20 answers that cannot come.
    if let Some(parallelism) = NonZeroUsize::new(3) {
        config.set_parallelism(parallelism);
    }
    let mut kad = kad::Behaviour::with_config(local, store, config);
    // Set, not left to Kademlia: without a confirmed external address it would stay a client and
    // answer nobody. A client only when the settings ask for one.
    kad.set_mode(Some(if settings.dht_server {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    }));
    kad
}

#[cfg(test)]
mod tests {
    use libp2p::kad::store::{Error as StoreError, RecordStore};
    use libp2p::kad::{ProviderRecord, Record, RecordKey};

    use super::*;

    #[test]
    fn the_dht_store_refuses_records_and_provided_keys_past_their_bounds() {
        let local = PeerId::random();
        let mut store = dht_store(local);
        let key = |i: usize| RecordKey::new(&format!("/cairn/pin/{i}"));
        for i in 0..MAX_PIN_RECORDS {
            store.put(Record::new(key(i), vec![0; 8])).unwrap();
        }
        let over = store.put(Record::new(key(MAX_PIN_RECORDS), vec![0; 8]));
        assert!(matches!(over, Err(StoreError::MaxRecords)), "{over:?}");
        // A record replacing one held is not a new one.
        store.put(Record::new(key(0), vec![1; 8])).unwrap();
        let big = Record::new(key(0), vec![0; crate::claims::MAX_CLAIMS_BYTES + 1]);
        assert!(matches!(store.put(big), Err(StoreError::ValueTooLarge)));

        for i in 0..MAX_PROVIDED_KEYS {
            store
                .add_provider(ProviderRecord::new(key(i), local, Vec::new()))
                .unwrap();
        }
        let over = store.add_provider(ProviderRecord::new(
            key(MAX_PROVIDED_KEYS),
            local,
            Vec::new(),
        ));
        assert!(matches!(over, Err(StoreError::MaxProvidedKeys)), "{over:?}");
    }
}
