//! cairn-config: the node's typed configuration.
//!
//! One TOML file, every key with a documented default ([`Config::default`], and the same values
//! spelt out in `cairn.example.toml`), environment overrides `CAIRN_<SECTION>__<KEY>`, and
//! [`Config::validate`], which returns a [`ValidConfig`] or an error naming the key and the fix.
//! This crate never resets a bad value to a default: a wrong config stops the start.
#![forbid(unsafe_code)]

mod env;
mod error;
mod schema;
mod units;
mod validate;

use std::path::Path;

pub use error::ConfigError;
pub use schema::{
    AdminConfig, Config, GatewayConfig, IdentityConfig, LogConfig, LogFormat, MetricsConfig,
    P2pConfig, P2pLimits, ReplicationConfig, ScrubConfig, StorageConfig,
};
pub use units::{HumanDuration, Size};
pub use validate::{
    BootstrapPeer, MAX_BLOCK_SIZE_LIMIT, MAX_REPLICATION_FACTOR, MIN_BLOCK_SIZE_LIMIT, ValidConfig,
};

/// The example config shipped with the repository; it must parse to [`Config::default`].
pub const EXAMPLE_CONFIG: &str = include_str!("../cairn.example.toml");

impl Config {
    /// Parses TOML text. `origin` names the source in error messages.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, ConfigError> {
        Self::from_toml_with_env(text, origin, std::iter::empty())
    }

    /// Parses TOML text, then applies the `CAIRN_…` overrides found in `vars`.
    pub fn from_toml_with_env(
        text: &str,
        origin: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: origin.to_owned(),
            message,
        };
        // Parse straight into the schema first: toml's errors then point at the line and key.
        let parsed = toml::from_str::<Config>(text).map_err(|e| parse_error(e.to_string()))?;
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        let schema = toml::Table::try_from(Config::default()).map_err(|e| {
            parse_error(format!("internal: default config does not serialise: {e}"))
        })?;
        let mut config = parsed;
        for env_override in env::overrides(&schema, vars)? {
            env_override.apply(&mut table)?;
            // Deserialise after each override, so a bad value is pinned on its variable.
            config = table
                .clone()
                .try_into::<Config>()
                .map_err(|e| ConfigError::Env {
                    var: env_override.var.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(config)
    }

    /// Reads `path` (or starts from the defaults when `None`) and applies the process's `CAIRN_…`
    /// environment variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?,
                p,
            ),
            None => (String::new(), Path::new("<defaults>")),
        };
        Self::from_toml_with_env(&text, origin, std::env::vars())
    }

    /// The config as TOML, every key included (what `cairn config show` prints).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string_pretty(self).map_err(|e| ConfigError::Parse {
            path: "<config>".into(),
            message: e.to_string(),
        })
    }
}
