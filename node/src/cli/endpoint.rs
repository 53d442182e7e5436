//! How a client command reaches the daemon: the API's URL, the token and the certificate to
//! trust, from the flags or else from the data directory's config.

use anyhow::Context;
use cairn_config::ValidConfig;
use cairn_node::client;
use cairn_node::init::load_config;

use super::args::ApiArgs;

impl ApiArgs {
    pub(crate) async fn connect(&self) -> anyhow::Result<client::Client> {
        let (config, url, ca) = self.endpoint()?;
        let token_file = match &self.token_file {
            Some(f) => f.clone(),
            None => config.resolve(&config.raw().admin.token_file),
        };
        let token = cairn_node::secrets::read_secret(&token_file)?;
        let token = String::from_utf8(token).context("the token file is not text")?;
        Ok(client::connect_with(&url, &token, ca.as_deref()).await?)
    }

    /// The config, the API's URL and the certificate to trust, from the flags and the config.
    pub(crate) fn endpoint(&self) -> anyhow::Result<(ValidConfig, String, Option<Vec<u8>>)> {
        let config = load_config(self.data_dir.as_deref(), self.config.as_deref())?;
        let url = match &self.api {
            Some(url) => url.clone(),
            None => {
                let mut addr = config.admin_listen;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                let scheme = if config.tls_enabled() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{addr}")
            }
        };
        let ca_file = match &self.ca_cert {
            Some(file) => Some(file.clone()),
            None if config.tls_enabled() => Some(config.resolve(&config.raw().admin.tls_cert_file)),
            None => None,
        };
        let ca = match ca_file {
            Some(file) => Some(
                std::fs::read(&file)
                    .with_context(|| format!("cannot read the certificate {}", file.display()))?,
            ),
            None => None,
        };
        Ok((config, url, ca))
    }
}
