//! The read-only trustless HTTP gateway (IPFS Trustless Gateway spec): `GET`/`HEAD
//! /ipfs/{cid}[/{path}]` answered with one raw block or a CAR v1 stream, never with deserialised
//! content, so a client verifies everything it gets. Off unless `gateway.enabled`.
//!
//! Every block goes out only after the store verified it on read. Content the node lacks is 404,
//! or fetched from the cluster (verified) when `gateway.fetch` is on. Each client address has a
//! request rate, a byte rate and a number of responses in flight; the gateway has a total.

mod request;
mod slots;

use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cairn_blockstore::Block;
use cairn_config::GatewayConfig;
use futures_util::{StreamExt, stream};
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::car::{block_frames, header_frame};
use crate::client_limit::ClientLimit;
use crate::dag_export::DagExport;
use crate::error::{Error, Result};
use crate::fetch::fetch_dag;
use crate::pace::ByteRate;
use crate::store::NodeStore;
pub use request::{CAR_TYPE, Format, GatewayRequest, RAW_TYPE, Refusal};
use slots::{SlotRefusal, StreamSlots};

/// Blocks read ahead of a CAR response's writer.
const CAR_QUEUE: usize = 16;
/// Immutable content: cache for a year (the spec's value for /ipfs/).
const IMMUTABLE: &str = "public, max-age=29030400, immutable";
/// Forget idle clients' byte allowances every this many requests.
const PRUNE_EVERY: u64 = 1024;

type Labels = Vec<(String, String)>;

/// The gateway's counters, under `gateway_*`.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    responses: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    bytes: Counter,
}

impl GatewayMetrics {
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Arc::new(Self::default());
        let sub = registry.sub_registry_with_prefix("gateway");
        sub.register(
            "responses",
            "Gateway responses by HTTP status code",
            metrics.responses.clone(),
        );
        sub.register(
            "refused",
            "Gateway requests refused by a limit, by limit (rate, client_streams, streams)",
            metrics.refused.clone(),
        );
        sub.register(
            "bytes",
            "Block bytes the gateway sent",
            metrics.bytes.clone(),
        );
        metrics
    }

    fn refused(&self, limit: &str) {
        self.refused
            .get_or_create(&vec![("limit".to_owned(), limit.to_owned())])
            .inc();
    }

    fn responded(&self, status: StatusCode) {
        self.responses
            .get_or_create(&vec![("code".to_owned(), status.as_u16().to_string())])
            .inc();
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct Gateway {
    store: NodeStore,
    network: cairn_p2p::Client,
    fetch: bool,
    fetch_timeout: Duration,
    requests: ClientLimit,
    bytes: ByteRate<IpAddr>,
    slots: Arc<StreamSlots>,
    metrics: Arc<GatewayMetrics>,
    served: std::sync::atomic::AtomicU64,
}

impl Gateway {
    pub fn new(
        config: &GatewayConfig,
        store: NodeStore,
        network: cairn_p2p::Client,
        metrics: Arc<GatewayMetrics>,
    ) -> Self {
        Self {
            store,
            network,
            fetch: config.fetch,
            fetch_timeout: config.fetch_timeout.get(),
            requests: ClientLimit::new(
                "gateway.requests_per_second",
                std::num::NonZeroU32::new(config.requests_per_second)
                    .unwrap_or(std::num::NonZeroU32::MIN),
            ),
            bytes: ByteRate::new(config.bytes_per_second.bytes()),
            slots: StreamSlots::new(config.max_streams_per_client, config.max_streams),
            metrics,
            served: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

/// Binds `addr` and returns the bound address and the server, which runs until `stop`.
pub async fn serve(
    addr: SocketAddr,
    gateway: Arc<Gateway>,
    stop: CancellationToken,
) -> Result<(
    SocketAddr,
    impl std::future::Future<Output = Result<()>> + Send + 'static,
)> {
    let (listener, bound) =
        crate::listen::bind_tcp(addr, "binding the gateway address (gateway.listen)").await?;
    if !bound.ip().is_loopback() {
        tracing::warn!(addr = %bound, "the HTTP gateway listens beyond loopback: anyone who reaches it reads every block this node holds");
    }
    let app = axum::Router::new()
        .route("/ipfs/{*rest}", axum::routing::get(handle))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "this gateway serves /ipfs/{cid} only\n",
            )
        })
        .with_state(gateway);
    let server = async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(|source| Error::Io {
            what: "serving the gateway",
            source,
        })
    };
    Ok((bound, server))
}

/// `GET` and `HEAD /ipfs/{cid}[/{path}]` (axum routes HEAD to the GET handler).
async fn handle(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let response = answer(&gateway, client.ip(), &method, &uri, &headers).await;
    gateway.metrics.responded(response.status());
    response
}

async fn answer(
    gateway: &Arc<Gateway>,
    client: IpAddr,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let served = gateway
        .served
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if served % PRUNE_EVERY == PRUNE_EVERY - 1 {
        gateway.bytes.forget_idle();
    }
    if let Err(wait) = gateway.requests.admit(Some(client)) {
        gateway.metrics.refused("rate");
        return too_many(wait, "gateway.requests_per_second");
    }
    let rest = uri.path().strip_prefix("/ipfs/").unwrap_or_default();
    let request = match GatewayRequest::parse(rest, uri.query(), headers) {
        Ok(request) => request,
        Err(refusal) => return plain(refusal.status, &refusal.reason),
    };
    let etag = request.etag();
    let cached = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    if cached {
        return with_cache_headers(StatusCode::NOT_MODIFIED.into_response(), &etag);
    }
    let slot = match gateway.slots.take(client) {
        Ok(slot) => slot,
        Err(SlotRefusal::Client) => {
            gateway.metrics.refused("client_streams");
            return too_many(
                Duration::from_secs(1),
                "gateway.max_streams_per_client (responses in flight)",
            );
        }
        Err(SlotRefusal::Total) => {
            gateway.metrics.refused("streams");
            return too_many(
                Duration::from_secs(1),
                "gateway.max_streams (responses in flight)",
            );
        }
    };
    if let Err(response) = make_present(gateway, &request).await {
        return response;
    }
    let head = method == Method::HEAD;
    let response = match request.format {
        Format::Raw => raw_block(gateway, &request, head).await,
        Format::Car => car_stream(gateway, &request, client, head, slot).await,
    };
    match response {
        Ok(response) => with_cache_headers(response, &etag),
        Err(e) => failure(e),
    }
}

/// Ensures the root is here: already held, fetched (when allowed), or an error response.
async fn make_present(
    gateway: &Gateway,
    request: &GatewayRequest,
) -> std::result::Result<(), Response> {
    let root = request.root;
    let held = gateway
        .store
        .run("looking up a block", move |store| Ok(store.has(&root)?))
        .await
        .map_err(failure)?;
    if held {
        return Ok(());
    }
    if request.only_if_cached {
        return Err(plain(
            StatusCode::PRECONDITION_FAILED,
            &format!("{root} is not held by this node (only-if-cached)"),
        ));
    }
    if !gateway.fetch {
        return Err(plain(
            StatusCode::NOT_FOUND,
            &format!("{root} is not held by this node (gateway.fetch is off)"),
        ));
    }
    match tokio::time::timeout(
        gateway.fetch_timeout,
        fetch_dag(&gateway.store, &gateway.network, root),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(failure(e)),
        Err(_) => Err(plain(
            StatusCode::GATEWAY_TIMEOUT,
            &format!(
                "{root} was not fetched within gateway.fetch_timeout ({} s)",
                gateway.fetch_timeout.as_secs()
            ),
        )),
    }
}

async fn raw_block(gateway: &Gateway, request: &GatewayRequest, head: bool) -> Result<Response> {
    let root = request.root;
    let data = gateway
        .store
        .run("reading a block", move |store| Ok(store.get(&root)?))
        .await?;
    let length = data.len();
    let body = if head {
        Body::empty()
    } else {
        gateway.metrics.bytes.inc_by(length as u64);
        Body::from(data)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(RAW_TYPE));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    attachment(headers, &format!("{root}.bin"));
    Ok(response)
}

/// A CAR v1 response, depth first without duplicates: the blocks along the path, then the
/// terminal's DAG by scope. Errors before the first block are a status; an error later (a block
/// missing or corrupt half-way) aborts the body, so the client sees a truncated transfer, never
/// a short CAR that looks whole.
async fn car_stream(
    gateway: &Arc<Gateway>,
    request: &GatewayRequest,
    client: IpAddr,
    head: bool,
    slot: slots::StreamSlot,
) -> Result<Response> {
    let (tx, rx) = mpsc::channel::<Result<Block>>(CAR_QUEUE);
    let store = Arc::clone(gateway.store.store());
    let (root, path, scope) = (request.root, request.path.clone(), request.scope);
    gateway.store.jobs().spawn_blocking(move || {
        let mut export = DagExport::new(&*store);
        // The path's directories wait here until the terminal is known to exist, so a bad path
        // is a status rather than a broken stream.
        let mut along_path = Vec::new();
        let resolved = export.resolve(root, &path, &mut |block| {
            along_path.push(block);
            ControlFlow::Continue(())
        });
        let terminal = match resolved {
            Ok(Some(terminal)) => terminal,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        if head {
            // HEAD checks the path and the terminal block only.
            let present = store.get(&terminal).map(|data| Block::new(terminal, data));
            let _ = tx.blocking_send(present.map_err(Error::from));
            return;
        }
        let mut queued = along_path.into_iter();
        let send = |block: Block| match tx.blocking_send(Ok(block)) {
            Ok(()) => ControlFlow::Continue(()),
            // The client went away.
            Err(_) => ControlFlow::Break(()),
        };
        let mut first = true;
        let walked = export.walk(terminal, scope, &mut |block| {
            if first {
                first = false;
                for earlier in queued.by_ref() {
                    if send(earlier).is_break() {
                        return ControlFlow::Break(());
                    }
                }
            }
            send(block)
        });
        if let Err(e) = walked {
            let _ = tx.blocking_send(Err(e));
        }
    });
    let mut blocks = ReceiverStream::new(rx);
    let first = match blocks.next().await {
        Some(Ok(block)) => block,
        Some(Err(e)) => return Err(e),
        None => {
            return Err(Error::Internal {
                what: "reading blocks for a CAR response",
                reason: "the reader stopped before the first block".into(),
            });
        }
    };
    let mut response = if head {
        Response::new(Body::empty())
    } else {
        let header = header_frame(vec![request.root])?;
        let gateway = Arc::clone(gateway);
        let paced = stream::once(async move { Ok(first) })
            .chain(blocks)
            .then(move |item| {
                let gateway = Arc::clone(&gateway);
                async move {
                    if let Ok(block) = &item {
                        let length = block.data.len() as u64;
                        gateway.bytes.spend_as(&client, length).await;
                        gateway.metrics.bytes.inc_by(length);
                    }
                    item
                }
            })
            .flat_map(|item| {
                let frames: Vec<Result<Bytes>> = match item {
                    Ok(block) => block_frames(block).into_iter().map(Ok).collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "gateway: CAR response cut short");
                        vec![Err(e)]
                    }
                };
                stream::iter(frames)
            });
        let body = stream::once(async move { Ok(header) })
            .chain(paced)
            // The slot is given back when the body ends or the client goes away.
            .map(move |frame| {
                let _held = &slot;
                frame
            });
        Response::new(Body::from_stream(body))
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.ipld.car; version=1; order=dfs; dups=n"),
    );
    attachment(headers, &format!("{}.car", request.root));
    Ok(response)
}

fn attachment(headers: &mut HeaderMap, filename: &str) {
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

fn with_cache_headers(mut response: Response, etag: &str) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

fn plain(status: StatusCode, reason: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}

fn too_many(wait: Duration, limit: &str) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = plain(
        StatusCode::TOO_MANY_REQUESTS,
        &format!("limit {limit} reached; retry in {seconds} s"),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// A node error as an HTTP status, through the one mapping of errors to gRPC codes
/// (`api/errors.rs`), so the gateway and the admin API never disagree about whose fault it is.
fn failure(e: Error) -> Response {
    let status = tonic::Status::from(e);
    let code = match status.code() {
        tonic::Code::NotFound => StatusCode::NOT_FOUND,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        tonic::Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        tonic::Code::Unavailable | tonic::Code::ResourceExhausted => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(code, status.message())
}
