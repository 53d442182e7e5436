//! The daemon's life: `Node::spawn` opens the store, binds the admin API, starts serving and
//! starts the background workers; `NodeHandle::shutdown` and `join` stop it in order — API first
//! (calls in flight finish), then the workers, then the store is flushed — logging each step.

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_blockstore::{RocksBlockstore, StoreOptions};
use cairn_config::ValidConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::limit::ClientLimit;
use crate::api::{AdminEndpoint, AdminService, Tokens};
use crate::error::{Error, Result};
use crate::init::load_identity;
use crate::metrics::{self, NodeMetrics};
use crate::scrub_worker;
use crate::secrets::read_secret;

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
    store: Arc<RocksBlockstore>,
}

impl Node {
    /// Opens everything the node needs and starts serving. Fails before serving anything when a
    /// secret is missing or readable by others, or the store cannot open.
    pub async fn spawn(config: ValidConfig) -> Result<NodeHandle> {
        if config.tls_enabled() {
            // Serving plaintext when the operator asked for TLS would be a silent downgrade.
            return Err(Error::BadRequest(
                "admin.tls_cert_file/tls_key_file are set, but this build does not serve TLS yet; \
                 unset them and keep admin.listen on loopback"
                    .into(),
            ));
        }
        let identity = load_identity(&config)?;
        let admin = config.raw().admin.clone();
        let per_second = std::num::NonZeroU32::new(admin.requests_per_second)
            .ok_or_else(|| Error::BadRequest("admin.requests_per_second must be above 0".into()))?;
        let limit = ClientLimit::new(per_second);
        let rate_limited = limit.rejected();
        let tokens = Tokens::new(
            read_token(&config.resolve(&admin.token_file))?,
            read_token(&config.resolve(&admin.readonly_token_file))?,
            limit,
        );
        let blocks_dir = config.data_dir().join(BLOCKS_DIR);
        let opts = StoreOptions::from(&config.raw().storage);
        let store = tokio::task::spawn_blocking(move || RocksBlockstore::open(&blocks_dir, opts))
            .await
            .map_err(|e| Error::BadRequest(format!("opening the store failed: {e}")))??;
        let store = Arc::new(store);
        let endpoint = AdminEndpoint::bind(config.admin_listen).await?;
        let admin_addr = endpoint.addr;
        let peer_id = identity.peer_id().to_string();
        let stop = CancellationToken::new();
        let service = AdminService {
            store: Arc::clone(&store),
            tokens,
            peer_id: peer_id.clone(),
            scrub_bytes_per_second: config.raw().scrub.bytes_per_second.bytes(),
        };
        let metrics = Arc::new(NodeMetrics::new(Arc::clone(&store), rate_limited));
        let api = tokio::spawn(endpoint.serve(service, Arc::clone(&metrics), stop.clone()));
        let stop_workers = CancellationToken::new();
        let scrub = &config.raw().scrub;
        let mut workers = vec![tokio::spawn(scrub_worker::run(
            Arc::clone(&store),
            scrub.interval.get(),
            scrub.bytes_per_second.bytes(),
            stop_workers.clone(),
        ))];
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
            store,
        })
    }
}

fn read_token(path: &std::path::Path) -> Result<String> {
    let raw = read_secret(path)?;
    let token = String::from_utf8(raw).unwrap_or_default().trim().to_owned();
    if token.is_empty() {
        return Err(Error::Secret {
            path: path.to_owned(),
            problem: "holds no token".into(),
            fix: "write a token into it (`cairn init --force` makes new ones)".into(),
        });
    }
    Ok(token)
}

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
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|e| Error::BadRequest(format!("flushing the store failed: {e}")))??;
        tracing::info!("block store flushed; node stopped");
        served
    }
}
