//! Helpers shared by the node's own integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use cairn_config::{Config, ValidConfig};

/// Every listener on loopback port 0 (admin API, swarm) and metrics off: tests never collide on
/// fixed ports nor listen beyond the machine.
pub fn loopback(config: &mut Config) {
    config.admin.listen = "127.0.0.1:0".into();
    config.metrics.listen = String::new();
    config.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
}

/// Rewrites `dir/config.toml` (from `cairn init`) with [`loopback`] and then `edit` applied, for
/// tests that start the daemon as a process.
pub fn rewrite_config(dir: &Path, edit: impl FnOnce(&mut Config)) {
    let path = dir.join("config.toml");
    let mut config = Config::from_toml(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    loopback(&mut config);
    edit(&mut config);
    std::fs::write(&path, config.to_toml().unwrap()).unwrap();
}

/// The validated config of `dir`, with [`loopback`] applied, for nodes started in this process.
pub fn loopback_config(dir: &Path) -> ValidConfig {
    let path = dir.join("config.toml");
    let mut config = Config::from_toml(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    loopback(&mut config);
    config.validate().unwrap()
}
