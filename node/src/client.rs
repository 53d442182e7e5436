//! The CLI's side of the admin API: a channel to the daemon that sends the bearer token on every
//! call.

use cairn_proto::admin::admin_client::AdminClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::api::{CONNECTION_WINDOW, MAX_MESSAGE_BYTES, STREAM_WINDOW};
use crate::error::{Error, Result};

/// Adds `authorization: Bearer <token>` to every request.
#[derive(Clone, Debug)]
pub struct BearerToken(MetadataValue<Ascii>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Client = AdminClient<InterceptedService<Channel, BearerToken>>;

/// Connects to the admin API at `url` (e.g. `http://127.0.0.1:4102`) with `token`.
pub async fn connect(url: &str, token: &str) -> Result<Client> {
    connect_with(url, token, None).await
}

/// [`connect`], trusting `ca_pem` for an `https://` URL (a self-signed admin certificate is its
/// own CA). An `https://` URL without a CA is refused: there is no system trust store to fall
/// back on, and skipping verification would defeat TLS.
pub async fn connect_with(url: &str, token: &str, ca_pem: Option<&[u8]>) -> Result<Client> {
    let value = format!("Bearer {}", token.trim())
        .parse::<MetadataValue<Ascii>>()
        .map_err(|_| {
            Error::BadRequest("the token holds characters a header cannot carry".into())
        })?;
    let channel = channel(url, ca_pem).await?;
    Ok(AdminClient::with_interceptor(channel, BearerToken(value))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Whether the daemon at `url` reports itself serving through the standard gRPC health service
/// (no token needed: what container and load-balancer health checks call).
pub async fn serving(url: &str, ca_pem: Option<&[u8]>) -> Result<bool> {
    let channel = channel(url, ca_pem).await?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| Error::BadRequest(format!("health check failed: {}", e.message())))?;
    Ok(answer.into_inner().status == ServingStatus::Serving as i32)
}

async fn channel(url: &str, ca_pem: Option<&[u8]>) -> Result<Channel> {
    let mut endpoint = Channel::from_shared(url.to_owned())
        .map_err(|e| Error::BadRequest(format!("{url:?} is not an API address: {e}")))?
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    if url.starts_with("https://") {
        let ca = ca_pem.ok_or_else(|| {
            Error::BadRequest(format!(
                "{url} uses TLS: pass the certificate to trust (--ca-cert FILE, or the data \
                 directory whose config names admin.tls_cert_file)"
            ))
        })?;
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::BadRequest(format!("TLS settings for {url}: {e}")))?;
    }
    endpoint
        .connect()
        .await
        .map_err(|e| Error::BadRequest(format!("cannot reach the daemon at {url}: {e}")))
}
