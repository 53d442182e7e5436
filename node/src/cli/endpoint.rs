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
        if let Some(host) = plaintext_to_another_machine(&url)
            && !self.insecure
        {
            anyhow::bail!(
                "refusing to send the admin token in plain text to {host}: use https:// (the \
                 node's admin.tls_cert_file), or pass --insecure"
            );
        }
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

/// The host of a plain `http://` URL that is not this machine's loopback: the token would cross
/// a network unencrypted. None for https, loopback addresses and `localhost`.
fn plaintext_to_another_machine(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    if uri.scheme_str() != Some("http") {
        return None;
    }
    let host = uri.host()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            // 0.0.0.0 and :: reach this machine too.
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    (!loopback).then(|| host.to_owned())
}

#[cfg(test)]
mod tests {
    use super::plaintext_to_another_machine as exposed;

    #[test]
    fn only_plain_http_to_another_machine_exposes_the_token() {
        for safe in [
            "http://127.0.0.1:5001",
            "http://127.8.9.1:5001",
            "http://[::1]:5001",
            "http://localhost:5001",
            "http://0.0.0.0:5001",
            "https://10.0.0.7:5001",
            "https://node-a.example:5001",
        ] {
            assert_eq!(exposed(safe), None, "{safe}");
        }
        for exposing in [
            "http://10.0.0.7:5001",
            "http://node-a.example:5001",
            "http://[2001:db8::1]:5001",
        ] {
            assert!(exposed(exposing).is_some(), "{exposing}");
        }
    }
}
