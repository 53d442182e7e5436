//! The daemon's life: `Node::spawn` opens the store, starts the swarm and waits for the bootstrap
//! peers, announces its pins, binds the admin API, starts serving and starts the background
//! workers — every task under the node's [`Supervisor`], so a start that fails half-way unwinds
//! everything it started. `NodeHandle::shutdown` and `join` stop it in order — API first (calls
//! in flight finish, within a deadline), then the workers and every job and store call they
//! started, then the swarm, then the store is flushed — logging each step.

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_blockstore::{RocksBlockstore, StoreOptions};
use cairn_config::ValidConfig;

use cairn_p2p::{Multiaddr, NetworkSettings, SwarmKey};

use crate::api::auth::AdminLimits;
use crate::api::{AdminEndpoint, AdminService, Tokens};
use crate::client_limit::ClientLimit;
use crate::error::{Error, Result};
use crate::gateway::{self, Gateway, GatewayMetrics};
use crate::init::load_identity;
use crate::metrics::ApiRefusals;
use crate::metrics::{self, NodeMetrics};
use crate::replication::{Policy, ReplicationMetrics, Replicator, run_reconciler};
use crate::secrets::read_secret;
use crate::store::NodeStore;
use crate::tasks::{StageName, Supervisor, TaskFailure};
use crate::{block_service, scrub_worker};

/// Where the block store lives inside the data directory.
pub const BLOCKS_DIR: &str = "blocks";

/// Starts nodes.
#[derive(Debug)]
pub struct Node;

/// A running node.
#[derive(Debug)]
pub struct NodeHandle {
    admin_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    gateway_addr: Option<SocketAddr>,
    peer_id: String,
    supervisor: Supervisor,
    network: cairn_p2p::Client,
    store: NodeStore,
    replicator: Replicator,
    tokens: Arc<Tokens>,
}

/// What a start has opened so far, kept apart so a failure can unwind it.
struct Started {
    admin_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    gateway_addr: Option<SocketAddr>,
    peer_id: String,
    network: cairn_p2p::Client,
    replicator: Replicator,
}

impl Node {
    /// Opens everything the node needs and starts serving. Fails before serving anything when a
    /// secret is missing or readable by others, or the store cannot open; a failure after tasks
    /// were started stops them all (and closes the store) before it returns.
    pub async fn spawn(config: ValidConfig) -> Result<NodeHandle> {
        let tls = admin_tls(&config)?;
        let identity = load_identity(&config)?;
        let admin = config.raw().admin.clone();
        let per_second = std::num::NonZeroU32::new(admin.requests_per_second)
            .ok_or_else(|| Error::BadRequest("admin.requests_per_second must be above 0".into()))?;
        let limits = AdminLimits {
            authenticated: ClientLimit::new("admin.requests_per_second", per_second),
            failed: ClientLimit::new(
                "admin.failed_auth_per_second",
                std::num::NonZeroU32::new(admin.failed_auth_per_second)
                    .unwrap_or(std::num::NonZeroU32::MIN),
            ),
        };
        let rate_limited = ApiRefusals {
            rate_limited: limits.authenticated.rejected(),
            failed_auth_limited: limits.failed.rejected(),
        };
        let tokens = Arc::new(Tokens::load(
            config.resolve(&admin.token_file),
            config.resolve(&admin.readonly_token_file),
            limits,
        )?);
        let supervisor = Supervisor::new();
        let blocks_dir = config.data_dir().join(BLOCKS_DIR);
        let opts = StoreOptions::from(&config.raw().storage);
        let store = supervisor
            .jobs()
            .blocking("opening the store", move || {
                Ok(RocksBlockstore::open(&blocks_dir, opts)?)
            })
            .await?;
        let store = NodeStore::new(Arc::new(store), supervisor.jobs());
        let started = start(
            &config,
            &supervisor,
            &store,
            identity,
            tls,
            &tokens,
            rate_limited,
        )
        .await;
        let started = match started {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(error = %e, "start failed; stopping what was started");
                supervisor.abort().await;
                return Err(e);
            }
        };
        tracing::info!(peer_id = %started.peer_id, admin_addr = %started.admin_addr, data_dir = %config.data_dir().display(), "node started");
        Ok(NodeHandle {
            admin_addr: started.admin_addr,
            metrics_addr: started.metrics_addr,
            gateway_addr: started.gateway_addr,
            peer_id: started.peer_id,
            supervisor,
            network: started.network,
            store,
            replicator: started.replicator,
            tokens,
        })
    }
}

/// Starts the swarm, the workers and the API under `supervisor`.
async fn start(
    config: &ValidConfig,
    supervisor: &Supervisor,
    store: &NodeStore,
    identity: cairn_p2p::NodeIdentity,
    tls: Option<tonic::transport::ServerTlsConfig>,
    tokens: &Arc<Tokens>,
    rate_limited: ApiRefusals,
) -> Result<Started> {
    let swarm_key = read_swarm_key(config)?;
    let mut registry = NodeMetrics::registry();
    let settings = NetworkSettings::from_config(config, swarm_key);
    let (network, network_events, event_loop) = cairn_p2p::new(&identity, settings, &mut registry)?;
    let stop_swarm = supervisor.stop_token(StageName::Swarm);
    supervisor.spawn_service(StageName::Swarm, "swarm", async move {
        event_loop.run(stop_swarm).await;
        Ok(())
    });
    let replication = &config.raw().replication;
    let policy = Policy {
        factor: config.replication_factor.get(),
        write_quorum: config.write_quorum.get(),
        audit_interval: replication.audit_interval.get(),
        repair_grace: replication.repair_grace.get(),
        repair_bytes_per_second: replication.repair_bytes_per_second.bytes(),
        // A quarter of the per-peer request limit (members share one config): the rest is
        // for block fetches and replicate requests.
        audits_per_peer_per_second: (config.raw().p2p.limits.requests_per_second / 4).max(1),
        // Half of the per-peer byte budget, for the same reason.
        audit_bytes_per_peer_per_second: config.raw().p2p.limits.bytes_per_second.bytes() / 2,
        audit_deadline: replication.audit_deadline.get(),
        unpin_grace: replication.unpin_grace.get(),
        max_pin_bytes: replication.max_pin_bytes.bytes(),
        max_share_per_peer: replication.max_share_per_peer.bytes(),
        replica_fetch_timeout: replication.replica_fetch_timeout.get(),
        republish_interval: cairn_p2p::RECORD_TTL / 4,
    };
    let replicator = Replicator::new(
        store.clone(),
        network.clone(),
        identity.clone(),
        policy,
        ReplicationMetrics::register(&mut registry),
    );
    let stop_workers = supervisor.stop_token(StageName::Workers);
    supervisor.spawn_service(
        StageName::Workers,
        "block service",
        block_service::run(
            store.clone(),
            network.clone(),
            replicator.clone(),
            network_events,
            stop_workers.clone(),
        ),
    );
    start_network(config, &network, store).await?;

    let endpoint = AdminEndpoint::bind(config.admin_listen, tls).await?;
    let admin_addr = endpoint.addr;
    let peer_id = identity.peer_id().to_string();
    let service = AdminService {
        store: store.clone(),
        network: network.clone(),
        tokens: Arc::clone(tokens),
        peer_id: peer_id.clone(),
        scrub_bytes_per_second: config.raw().scrub.bytes_per_second.bytes(),
        replicator: replicator.clone(),
        cut_off: supervisor.cut_off_token(),
    };
    let gateway_metrics = GatewayMetrics::register(&mut registry);
    if let Some(streams) = network.bitswap_streams() {
        let limits = cairn_p2p::bitswap::BitswapLimits {
            wants_per_second: config.raw().p2p.limits.requests_per_second,
            bytes_per_second: config.raw().p2p.limits.bytes_per_second.bytes(),
        };
        let server = cairn_p2p::bitswap::serve(
            streams,
            Arc::new(crate::bitswap::StoreSource(Arc::clone(store.store()))),
            limits,
            cairn_p2p::bitswap::BitswapMetrics::register(&mut registry),
            stop_workers.clone(),
        );
        supervisor.spawn_service(StageName::Workers, "bitswap", async move {
            server.await;
            Ok(())
        });
    }
    let metrics = Arc::new(NodeMetrics::new(
        registry,
        Arc::clone(store.store()),
        rate_limited,
        config.raw().scrub.interval.get(),
    ));
    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let (bound, server) =
                metrics::serve(addr, Arc::clone(&metrics), stop_workers.clone()).await?;
            supervisor.spawn_service(StageName::Workers, "metrics endpoint", server);
            Some(bound)
        }
        None => None,
    };
    let gateway_addr = match config.gateway_listen {
        Some(addr) => {
            let gateway = Gateway::new(
                &config.raw().gateway,
                store.clone(),
                network.clone(),
                gateway_metrics,
            );
            let (bound, server) = gateway::serve(
                addr,
                Arc::new(gateway),
                supervisor.stop_token(StageName::Api),
            )
            .await?;
            supervisor.spawn_service(StageName::Api, "HTTP gateway", server);
            tracing::info!(addr = %bound, fetch = config.raw().gateway.fetch, "HTTP gateway listening");
            Some(bound)
        }
        None => None,
    };
    supervisor.spawn_service(
        StageName::Api,
        "admin API",
        endpoint.serve(service, metrics, supervisor.stop_token(StageName::Api)),
    );
    let scrub = &config.raw().scrub;
    supervisor.spawn_service(
        StageName::Workers,
        "scrub",
        scrub_worker::run(
            store.clone(),
            scrub.interval.get(),
            scrub.bytes_per_second.bytes(),
            stop_workers.clone(),
        ),
    );
    let reconciling = replicator.clone();
    supervisor.spawn_service(StageName::Workers, "reconciler", async move {
        run_reconciler(reconciling, stop_workers).await;
        Ok(())
    });
    Ok(Started {
        admin_addr,
        metrics_addr,
        gateway_addr,
        peer_id,
        network,
        replicator,
    })
}

/// The admin API's TLS identity, when `admin.tls_cert_file` and `tls_key_file` are set. The key is
/// a secret (refused when others can read it); a certificate or key that does not parse stops the
/// start rather than falling back to plaintext.
fn admin_tls(config: &ValidConfig) -> Result<Option<tonic::transport::ServerTlsConfig>> {
    if !config.tls_enabled() {
        return Ok(None);
    }
    let admin = &config.raw().admin;
    let cert_path = config.resolve(&admin.tls_cert_file);
    let cert = std::fs::read(&cert_path).map_err(|source| Error::Io {
        what: "reading admin.tls_cert_file",
        source,
    })?;
    let key = read_secret(&config.resolve(&admin.tls_key_file))?;
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert, key));
    tonic::transport::Server::builder()
        .tls_config(tls.clone())
        .map_err(|e| {
            Error::BadRequest(format!(
                "admin.tls_cert_file/tls_key_file do not hold a PEM certificate and its key: {e}"
            ))
        })?;
    Ok(Some(tls))
}

/// The swarm key, when `p2p.swarm_key_file` names one (a secret: refused when others can read it).
fn read_swarm_key(config: &ValidConfig) -> Result<Option<SwarmKey>> {
    let file = &config.raw().p2p.swarm_key_file;
    if file.as_os_str().is_empty() {
        return Ok(None);
    }
    let path = config.resolve(file);
    let text = String::from_utf8(read_secret(&path)?).unwrap_or_default();
    SwarmKey::parse(&text).map(Some).map_err(|e| Error::Secret {
        path,
        problem: e.to_string(),
        fix: "copy the cluster's swarm.key here unchanged".into(),
    })
}

/// Waits for the bootstrap peers (when any are configured), then announces every pinned root and
/// republishes every pin record kept here.
async fn start_network(
    config: &ValidConfig,
    network: &cairn_p2p::Client,
    store: &NodeStore,
) -> Result<()> {
    let addrs = network.wait_listening(LISTEN_TIMEOUT).await?;
    tracing::info!(addrs = ?addrs.iter().map(ToString::to_string).collect::<Vec<_>>(), "P2P listening");
    if !config.bootstrap.is_empty() {
        let wanted = config.raw().p2p.min_bootstrap_peers as usize;
        let timeout = config.raw().p2p.bootstrap_timeout.get();
        tracing::info!(
            wanted,
            of = config.bootstrap.len(),
            "waiting for bootstrap peers"
        );
        network.wait_bootstrapped(wanted, timeout).await?;
    }
    let pins = store.run("reading pins", |store| Ok(store.pins()?)).await?;
    for (root, _) in &pins {
        network.start_providing(*root).await?;
    }
    if !pins.is_empty() {
        tracing::info!(pins = pins.len(), "announced pinned roots");
    }
    // Every pin claim kept here goes back into the DHT (which lives in memory), tombstones
    // included: an unpin must outlast a restart of the whole cluster. The reconciliation worker
    // does the same every quarter of the DHT's record TTL.
    crate::replication::republish_claims(store, network).await?;
    Ok(())
}

/// Binding listeners is local and quick; longer means something is wrong with the addresses.
const LISTEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl NodeHandle {
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Where Prometheus scrapes, when `metrics.listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The HTTP gateway's address, when `gateway.enabled`.
    pub fn gateway_addr(&self) -> Option<SocketAddr> {
        self.gateway_addr
    }

    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// The node's block store, for embedding programs and tests that inspect (or damage) it
    /// while the node runs.
    pub fn store(&self) -> &Arc<RocksBlockstore> {
        self.store.store()
    }

    /// The store with the node's jobs, for embedding programs that call the node's async parts
    /// (fetches, CAR import and export) so the node's `join` waits for them.
    pub fn node_store(&self) -> &NodeStore {
        &self.store
    }

    /// The node's side of the network, for embedding programs and benchmarks.
    pub fn network(&self) -> &cairn_p2p::Client {
        &self.network
    }

    /// The node's replication, for embedding programs and benchmarks.
    pub fn replicator(&self) -> &Replicator {
        &self.replicator
    }

    /// The P2P addresses the swarm listens on (with the ports actually bound).
    pub fn p2p_addrs(&self) -> Vec<Multiaddr> {
        self.network.listen_addrs()
    }

    /// Re-reads the admin and read-only token files (SIGHUP): a token replaced on disk takes
    /// effect without a restart. On error the tokens in use stay.
    pub fn reload_tokens(&self) -> Result<()> {
        self.tokens.reload()?;
        tracing::info!("admin tokens reloaded from their files");
        Ok(())
    }

    /// Asks the node to stop; `join` waits for it.
    pub fn shutdown(&self) {
        self.supervisor.stop_api();
    }

    /// Resolves when one of the node's long-lived tasks has ended unexpectedly, naming it: the
    /// node can no longer do its job, and its owner should stop it (the daemon exits non-zero,
    /// so systemd restarts it).
    pub async fn failed(&self) -> TaskFailure {
        self.supervisor.failure().await
    }

    /// Waits until the node has stopped: the API has finished its calls, the workers and every
    /// job and store call they started have ended, the swarm is closed; then the store is
    /// flushed.
    pub async fn join(self) -> Result<()> {
        self.supervisor.stop().await;
        self.store
            .run("flushing the store", |store| Ok(store.flush()?))
            .await?;
        tracing::info!("block store flushed; node stopped");
        Ok(())
    }
}
