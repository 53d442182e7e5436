//! The swarm's own metrics, registered under `cairn_p2p_*`. libp2p's metrics (bandwidth by
//! protocol and direction, Kademlia, Identify, ping, connection events) are registered beside
//! them under `cairn_libp2p_*`.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

#[derive(Clone, Debug, Default)]
pub struct P2pMetrics {
    pub connected_peers: Gauge,
    pub dials_refused: Family<Labels, Counter>,
    pub bad_blocks_received: Counter,
    pub bans: Counter,
    pub rate_limited: Family<Labels, Counter>,
    pub block_requests_served: Counter,
    pub blocks_sent: Counter,
    pub routing_dominated: Counter,
    pub open_network: Gauge,
    pub pin_claims_stored: Gauge,
    pub providers_refused: Family<Labels, Counter>,
    pub swarm_busy_seconds: Counter<f64, AtomicU64>,
}

impl P2pMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let p2p = registry.sub_registry_with_prefix("p2p");
        p2p.register(
            "connected_peers",
            "Peers with at least one open connection",
            metrics.connected_peers.clone(),
        );
        p2p.register(
            "dials_refused",
            "Connections refused, by reason (not_allowlisted, banned, wrong_bootstrap_identity, \
             connection_limit, memory_limit, handshake: wrong swarm key or not a Cairn node)",
            metrics.dials_refused.clone(),
        );
        p2p.register(
            "bad_blocks_received",
            "Blocks from peers whose hash did not match their CID",
            metrics.bad_blocks_received.clone(),
        );
        p2p.register("bans", "Peers banned", metrics.bans.clone());
        p2p.register(
            "rate_limited",
            "Peer requests answered 'slow down', by limit (requests, bytes, queue)",
            metrics.rate_limited.clone(),
        );
        p2p.register(
            "block_requests_served",
            "Block requests from peers that were answered",
            metrics.block_requests_served.clone(),
        );
        p2p.register(
            "blocks_sent",
            "Blocks sent to peers",
            metrics.blocks_sent.clone(),
        );
        p2p.register(
            "routing_dominated_by_one_bootstrap_peer",
            "Times most of the routing table was found to come through a single bootstrap peer \
             (a poisoned bootstrap peer would look like this)",
            metrics.routing_dominated.clone(),
        );
        p2p.register(
            "provider_records_refused",
            "Provider records peers announced that were not kept, by cap (per_peer, total, \
             per_key: room kept for this node's own)",
            metrics.providers_refused.clone(),
        );
        p2p.register(
            "pin_claims_stored",
            "Roots whose pin claims this node's DHT store holds (exact after each drain of \
             expired claims, counted up between)",
            metrics.pin_claims_stored.clone(),
        );
        p2p.register(
            "swarm_busy_seconds",
            "Time the swarm task spent working (its rate is the share of one core it takes; near 1 \
             every peer's messages wait on it)",
            metrics.swarm_busy_seconds.clone(),
        );
        p2p.register(
            "open_network",
            "1 when no allowlist is set and any peer that passes the swarm key is admitted, else 0",
            metrics.open_network.clone(),
        );
        metrics
    }

    pub fn refused(&self, reason: &str) {
        self.dials_refused
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }

    pub fn provider_refused(&self, reason: &str) {
        self.providers_refused
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc();
    }

    pub fn limited(&self, limit: &str) {
        self.rate_limited
            .get_or_create(&vec![("limit".into(), limit.into())])
            .inc();
    }
}
