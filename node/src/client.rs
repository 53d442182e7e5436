//! The CLI's side of the admin API: a channel to the daemon that sends the bearer token on every
//! call.

use cairn_proto::admin::admin_client::AdminClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::api::MAX_MESSAGE_BYTES;
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
    let value = format!("Bearer {}", token.trim())
        .parse::<MetadataValue<Ascii>>()
        .map_err(|_| {
            Error::BadRequest("the token holds characters a header cannot carry".into())
        })?;
    let channel = Channel::from_shared(url.to_owned())
        .map_err(|e| Error::BadRequest(format!("{url:?} is not an API address: {e}")))?
        .connect()
        .await
        .map_err(|e| Error::BadRequest(format!("cannot reach the daemon at {url}: {e}")))?;
    Ok(AdminClient::with_interceptor(channel, BearerToken(value))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
