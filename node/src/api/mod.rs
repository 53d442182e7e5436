//! The gRPC admin API: the admin service behind bearer tokens (authorised in one layer, see
//! [`auth`]), the standard health service (so
//! probes and `grpcurl` work) and server reflection.

mod admin;
pub mod auth;
mod errors;

use cairn_proto::admin::admin_server::AdminServer;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::ServerTlsConfig;

pub use admin::AdminService;
pub use auth::{Role, Tokens};

use crate::error::{Error, Result};
use crate::metrics::{CountRequests, NodeMetrics};

/// Largest gRPC message accepted or sent: a few 256 KiB chunks, far below anything that could
/// exhaust memory.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// HTTP/2 flow-control windows. The default 64 KiB stream window stalls a 256 KiB upload message
/// every few packets; a few messages' worth keeps the pipe full while still bounding what a client
/// can have in flight.
pub const STREAM_WINDOW: u32 = 2 << 20;
pub const CONNECTION_WINDOW: u32 = 4 << 20;

/// A bound admin endpoint, not yet serving.
#[derive(Debug)]
pub struct AdminEndpoint {
    listener: TcpListener,
    tls: Option<ServerTlsConfig>,
    pub addr: SocketAddr,
}

impl AdminEndpoint {
    /// Binds `addr`; with `tls`, every connection must complete a TLS handshake first.
    pub async fn bind(addr: SocketAddr, tls: Option<ServerTlsConfig>) -> Result<Self> {
        let (listener, addr) =
            crate::listen::bind_tcp(addr, "binding the admin API address (admin.listen)").await?;
        Ok(Self {
            listener,
            tls,
            addr,
        })
    }

    /// Serves until `stop` is cancelled, then finishes the calls in flight.
    pub async fn serve<B: cairn_blockstore::backend::Backend>(
        self,
        service: AdminService<B>,
        metrics: Arc<NodeMetrics>,
        stop: CancellationToken,
    ) -> Result<()> {
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter
            .set_serving::<AdminServer<AdminService<B>>>()
            .await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cairn_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(|e| Error::Internal {
                what: "building gRPC reflection",
                reason: e.to_string(),
            })?;
        let mut server = tonic::transport::Server::builder()
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW));
        if let Some(tls) = self.tls {
            server = server
                .tls_config(tls)
                .map_err(|e| Error::BadRequest(format!("admin TLS: {e}")))?;
        }
        let authorize = auth::Authorize(Arc::clone(&service.tokens));
        server
            .layer(CountRequests(metrics))
            .layer(authorize)
            .add_service(health)
            .add_service(reflection)
            .add_service(
                AdminServer::new(service)
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES),
            )
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.listener),
                stop.cancelled_owned(),
            )
            .await
            .map_err(|e| Error::Io {
                what: "serving the admin API",
                source: std::io::Error::other(e.to_string()),
            })
    }
}
