//! The daemon's life: `Node::spawn` opens the store, starts the swarm and waits for the bootstrap
//! peers, announces its pins, binds the admin API, starts serving and starts the background
//! workers; `NodeHandle::shutdown` and `join` stop it in order — API first (calls in flight
//! finish), then the workers, then the swarm, then the store is flushed — logging each step.

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_blockstore::{RocksBlockstore, StoreOptions};
use cairn_config::ValidConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use cairn_p2p::{Multiaddr, NetworkSettings, SwarmKey};

use crate::api::limit::ClientLimit;
use crate::api::{AdminEndpoint, AdminService, Tokens};
use crate::error::{Error, Result};
use crate::init::load_identity;
use crate::metrics::{self, NodeMetrics};
use crate::replication::{Policy, ReplicationMetrics, Replicator, run_reconciler};
use crate::secrets::read_secret;
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
    peer_id: String,
    stop: CancellationToken,
    api: JoinHandle<Result<()>>,
    stop_workers: CancellationToken,
    workers: Vec<JoinHandle<()>>,
    stop_swarm: CancellationToken,
    swarm: JoinHandle<()>,
    network: cairn_p2p::Client,
    store: Arc<RocksBlockstore>,
    replicator: Replicator,
    tokens: Arc<Tokens>,
}

impl Node {
    /// Opens everything the node needs and starts serving. Fails before serving anything when a
    /// secret is missing or readable by others, or the store cannot open.
    pub async fn spawn(config: ValidConfig) -> Result<NodeHandle> {
        let tls = admin_tls(&config)?;
        let identity = load_identity(&config)?;
        let admin = config.raw().admin.clone();
        let per_second = std::num::NonZeroU32::new(admin.requests_per_second)
            .ok_or_else(|| Error::BadRequest("admin.requests_per_second must be above 0".into()))?;
        let limit = ClientLimit::new(per_second);
        let rate_limited = limit.rejected();
        let tokens = Arc::new(Tokens::load(
            config.resolve(&admin.token_file),
            config.resolve(&admin.readonly_token_file),
            limit,
        )?);
        let blocks_dir = config.data_dir().join(BLOCKS_DIR);
        let opts = StoreOptions::from(&config.raw().storage);
        let store = tokio::task::spawn_blocking(move || RocksBlockstore::open(&blocks_dir, opts))
            .await
            .map_err(|e| Error::BadRequest(format!("opening the store failed: {e}")))??;
        let store = Arc::new(store);

        let swarm_key = read_swarm_key(&config)?;
        let mut registry = NodeMetrics::registry();
        let settings = NetworkSettings::from_config(&config, swarm_key);
        let (network, network_events, event_loop) =
            cairn_p2p::new(&identity, settings, &mut registry)?;
        let stop_swarm = CancellationToken::new();
        let swarm = tokio::spawn(event_loop.run(stop_swarm.clone()));
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
        };
        let replicator = Replicator::new(
            Arc::clone(&store),
            network.clone(),
            identity.clone(),
            policy,
            ReplicationMetrics::register(&mut registry),
        );
        let stop_workers = CancellationToken::new();
        let mut workers = vec![tokio::spawn(block_service::run(
            Arc::clone(&store),
            network.clone(),
            replicator.clone(),
            network_events,
            stop_workers.clone(),
        ))];
        let started = start_network(&config, &network, &store).await;
        if let Err(e) = started {
            stop_workers.cancel();
            stop_swarm.cancel();
            return Err(e);
        }

        let endpoint = AdminEndpoint::bind(config.admin_listen, tls).await?;
        let admin_addr = endpoint.addr;
        let peer_id = identity.peer_id().to_string();
        let stop = CancellationToken::new();
        let service = AdminService {
            store: Arc::clone(&store),
            network: network.clone(),
            tokens: Arc::clone(&tokens),
            peer_id: peer_id.clone(),
            scrub_bytes_per_second: config.raw().scrub.bytes_per_second.bytes(),
            replicator: replicator.clone(),
        };
        let metrics = Arc::new(NodeMetrics::new(registry, Arc::clone(&store), rate_limited));
        let api = tokio::spawn(endpoint.serve(service, Arc::clone(&metrics), stop.clone()));
        let scrub = &config.raw().scrub;
        workers.push(tokio::spawn(scrub_worker::run(
            Arc::clone(&store),
            scrub.interval.get(),
            scrub.bytes_per_second.bytes(),
            stop_workers.clone(),
        )));
        workers.push(tokio::spawn(run_reconciler(
            replicator.clone(),
            stop_workers.clone(),
        )));
        let metrics_addr = match config.metrics_listen {
            Some(addr) => {
                let (bound, task) = metrics::serve(addr, metrics, stop_workers.clone()).await?;
                workers.push(task);
                Some(bound)
            }
            None => None,
        };
        tracing::info!(%peer_id, %admin_addr, data_dir = %config.data_dir().display(), "node started");
        Ok(NodeHandle {
            admin_addr,
            metrics_addr,
            peer_id,
            stop,
            api,
            stop_workers,
            workers,
            stop_swarm,
            swarm,
            network,
            store,
            replicator,
            tokens,
        })
    }
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
    store: &Arc<RocksBlockstore>,
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
    let reading = Arc::clone(store);
    let pins = tokio::task::spawn_blocking(move || reading.pins())
        .await
        .map_err(|e| Error::BadRequest(format!("reading pins failed: {e}")))??;
    for (root, _) in &pins {
        network.start_providing(*root).await?;
    }
    if !pins.is_empty() {
        tracing::info!(pins = pins.len(), "announced pinned roots");
    }
    // Every pin record kept here goes back into the DHT (which lives in memory), tombstones
    // included: an unpin must outlast a restart of the whole cluster. Peers keep only what is
    // newer than what they hold.
    let reading = Arc::clone(store);
    let records = tokio::task::spawn_blocking(move || reading.pin_records())
        .await
        .map_err(|e| Error::BadRequest(format!("reading pin records failed: {e}")))??;
    for (root, record) in records {
        if let Err(e) = network.put_pin_record(record).await {
            tracing::debug!(%root, error = %e, "pin record not republished");
        }
    }
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

    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// The node's block store, for embedding programs and tests that inspect (or damage) it
    /// while the node runs.
    pub fn store(&self) -> &Arc<RocksBlockstore> {
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
        self.stop.cancel();
    }

    /// Waits until the node has stopped: the API has finished its calls, then the store is
    /// flushed.
    pub async fn join(self) -> Result<()> {
        let served = self
            .api
            .await
            .map_err(|e| Error::BadRequest(format!("admin API task failed: {e}")))?;
        tracing::info!("admin API stopped");
        self.stop_workers.cancel();
        for worker in self.workers {
            if let Err(e) = worker.await {
                tracing::error!(error = %e, "a worker failed");
            }
        }
        tracing::info!("workers stopped");
        self.stop_swarm.cancel();
        if let Err(e) = self.swarm.await {
            tracing::error!(error = %e, "the swarm task failed");
        }
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| Error::BadRequest(format!("flushing the store failed: {e}")))??;
        tracing::info!("block store flushed; node stopped");
        served
    }
}
