//! Helpers shared by the node's own integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_config::{Config, ValidConfig};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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

/// Starts `cairn daemon` on `dir` (its config logging JSON) with `env` set, and waits, with a
/// deadline, for the admin address it logs; returns the process and the admin URL. The log keeps
/// being drained so the daemon never blocks on a full pipe.
pub async fn start_daemon(dir: &Path, env: &[(&str, &str)]) -> (Child, String) {
    let (child, url, _) = start_daemon_logged(dir, env).await;
    (child, url)
}

/// [`start_daemon`], also keeping every line the daemon logs.
pub async fn start_daemon_logged(
    dir: &Path,
    env: &[(&str, &str)],
) -> (Child, String, Arc<Mutex<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["daemon", "--data-dir", dir.to_str().unwrap()])
        .env_remove("CAIRN_DATA_DIR")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.lock().unwrap().push_str(&format!("{line}\n"));
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(addr) = event["fields"]["admin_addr"].as_str()
            {
                return Some(addr.to_owned());
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| panic!("the daemon did not report its address within a minute"));
    let kept = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    (child, format!("http://{addr}"), log)
}
