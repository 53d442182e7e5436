//! Prometheus metrics over HTTP (`metrics.listen`): the store's own counters (blocks, bytes, puts,
//! gets, verification failures, quarantine, scrub progress and last completion, GC) read at scrape
//! time, and admin API requests by method and gRPC status code, counted in one tower layer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use cairn_blockstore::backend::Backend;
use cairn_blockstore::{Store, StoreMetrics};
use futures_util::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

type Labels = Vec<(String, String)>;

/// The node's metrics registry and the counters it updates itself.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
    api_requests: Family<Labels, Counter>,
}

impl NodeMetrics {
    /// A registry with the `cairn` prefix, for the parts that register their own metrics (the
    /// swarm) before [`NodeMetrics::new`] takes it over.
    pub fn registry() -> Registry {
        Registry::with_prefix("cairn")
    }

    pub fn new<B: Backend>(
        mut registry: Registry,
        store: Arc<Store<B>>,
        api_refusals: ApiRefusals,
        scrub_interval: std::time::Duration,
    ) -> Self {
        let api_requests = Family::<Labels, Counter>::default();
        registry.register(
            "api_requests",
            "Admin API requests by method and gRPC status code",
            api_requests.clone(),
        );
        let started = Gauge::<i64>::default();
        started.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
        );
        registry.register(
            "started_seconds",
            "Unix time this node started (alerts count an overdue first scrub from it)",
            started,
        );
        let interval = Gauge::<i64>::default();
        interval.set(i64::try_from(scrub_interval.as_secs()).unwrap_or(i64::MAX));
        registry.register(
            "scrub_interval_seconds",
            "scrub.interval: every stored block is re-verified this often",
            interval,
        );
        registry.register_collector(Box::new(StoreCollector {
            store,
            api_refusals,
        }));
        Self {
            registry,
            api_requests,
        }
    }

    fn count_request(&self, path: &str, code: &str) {
        // "/cairn.admin.v1.Admin/AddFile" → "AddFile"
        let method = path.rsplit('/').next().unwrap_or(path).to_owned();
        self.api_requests
            .get_or_create(&vec![
                ("method".into(), method),
                ("code".into(), code.to_owned()),
            ])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> Result<String> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).map_err(|e| {
            Error::Internal {
                what: "encoding metrics",
                reason: e.to_string(),
            }
        })?;
        Ok(out)
    }
}

/// The admin API's refusals by rate limit, counted where they happen.
#[derive(Clone, Debug)]
pub struct ApiRefusals {
    /// Calls with a valid token over `admin.requests_per_second`.
    pub rate_limited: Arc<AtomicU64>,
    /// Calls that failed authentication over their own limit.
    pub failed_auth_limited: Arc<AtomicU64>,
}

/// Reads the store's counters at scrape time.
struct StoreCollector<B: Backend> {
    store: Arc<Store<B>>,
    api_refusals: ApiRefusals,
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    let metric = ConstCounter::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl<B: Backend> std::fmt::Debug for StoreCollector<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreCollector").finish_non_exhaustive()
    }
}

impl<B: Backend> Collector for StoreCollector<B> {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let m = self.store.metrics();
        let get = StoreMetrics::get;
        counter(&mut e, "gets", "Blocks read and verified", get(&m.gets))?;
        counter(
            &mut e,
            "get_bytes",
            "Bytes read and verified",
            get(&m.get_bytes),
        )?;
        counter(&mut e, "puts", "Blocks written", get(&m.puts))?;
        counter(&mut e, "put_bytes", "Bytes written", get(&m.put_bytes))?;
        counter(
            &mut e,
            "verification_failures",
            "Blocks whose bytes did not match their hash",
            get(&m.verification_failures),
        )?;
        counter(
            &mut e,
            "quarantined",
            "Blocks moved to quarantine",
            get(&m.quarantined),
        )?;
        counter(
            &mut e,
            "quota_rejections",
            "Writes refused by storage.max_bytes",
            get(&m.quota_rejections),
        )?;
        counter(
            &mut e,
            "scrubbed_blocks",
            "Blocks re-verified by scrub",
            get(&m.scrubbed_blocks),
        )?;
        counter(
            &mut e,
            "scrubbed_bytes",
            "Bytes re-verified by scrub",
            get(&m.scrubbed_bytes),
        )?;
        counter(
            &mut e,
            "scrub_passes",
            "Completed scrub passes",
            get(&m.scrub_runs_completed),
        )?;
        counter(&mut e, "gc_runs", "Garbage collections", get(&m.gc_runs))?;
        counter(
            &mut e,
            "gc_removed_blocks",
            "Blocks removed by garbage collection",
            get(&m.gc_removed_blocks),
        )?;
        counter(
            &mut e,
            "api_rate_limited",
            "Admin API calls with a valid token refused by admin.requests_per_second",
            self.api_refusals.rate_limited.load(Ordering::Relaxed),
        )?;
        counter(
            &mut e,
            "api_failed_auth_limited",
            "Admin API calls that failed authentication and were over their own limit (a flood \
             of guesses)",
            self.api_refusals
                .failed_auth_limited
                .load(Ordering::Relaxed),
        )?;
        let last_scrub = self
            .store
            .last_scrub_completed()
            .ok()
            .flatten()
            .unwrap_or(0);
        gauge(
            &mut e,
            "scrub_last_completed_seconds",
            "Unix time the last scrub pass completed (0: never)",
            last_scrub as i64,
        )?;
        if let Ok(stats) = self.store.stats() {
            gauge(&mut e, "blocks", "Blocks stored", stats.blocks as i64)?;
            gauge(&mut e, "bytes", "Block bytes stored", stats.bytes as i64)?;
            gauge(
                &mut e,
                "quarantined_blocks",
                "Blocks in quarantine now",
                stats.quarantined as i64,
            )?;
            gauge(
                &mut e,
                "max_bytes",
                "storage.max_bytes (0: no quota)",
                stats.max_bytes as i64,
            )?;
        }
        Ok(())
    }
}

/// Binds `addr` for `GET /metrics`; returns the bound address and the server, which serves until
/// `stop` once it is run (the caller spawns it under supervision).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<NodeMetrics>,
    stop: CancellationToken,
) -> Result<(
    SocketAddr,
    impl std::future::Future<Output = Result<()>> + Send + 'static,
)> {
    let (listener, bound) =
        crate::listen::bind_tcp(addr, "binding the metrics address (metrics.listen)").await?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = Arc::clone(&metrics);
            async move {
                match metrics.render() {
                    Ok(text) => (
                        http::StatusCode::OK,
                        [(
                            http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    ),
                    Err(e) => (
                        http::StatusCode::INTERNAL_SERVER_ERROR,
                        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        e.to_string(),
                    ),
                }
            }
        }),
    );
    let server = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
            .map_err(|source| Error::Io {
                what: "serving metrics",
                source,
            })
    };
    Ok((bound, server))
}

/// A tower layer counting admin API requests by method and status code. Errors a handler returns
/// arrive as trailers-only responses, with `grpc-status` in the headers; a response without one
/// has started successfully.
#[derive(Clone, Debug)]
pub struct CountRequests(pub Arc<NodeMetrics>);

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Counted {
            inner,
            metrics: Arc::clone(&self.0),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    metrics: Arc<NodeMetrics>,
}

impl<S, B, R> tower::Service<http::Request<B>> for Counted<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, std::result::Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let metrics = Arc::clone(&self.metrics);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or("OK".to_owned(), |c| format!("{:?}", tonic::Code::from(c)));
            metrics.count_request(&path, &code);
            Ok(response)
        })
    }
}
