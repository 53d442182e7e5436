//! Cairn daemons as separate processes of the built `cairn` binary, for tests that `kill -9`
//! them and measure their memory. Each is started on an initialised data directory whose config
//! logs JSON to stderr; its log is drained into a bounded tail kept for failure messages.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use cairn_config::{Config, LogFormat};
use cairn_node::client::{self, Client};
use cairn_proto::admin;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Lines of a daemon's log kept for a failure message.
const LOG_TAIL: usize = 200;
/// How long a daemon may take to report its admin address.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The `cairn` binary: `$CAIRN_BIN`, else the one cargo built beside this test (the test runs
/// from `<target>/<profile>/deps/`, wherever `CARGO_TARGET_DIR` put it).
pub fn binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("CAIRN_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let test = std::env::current_exe()?;
            let profile_dir = test
                .parent()
                .and_then(Path::parent)
                .context("the test binary has no <target>/<profile>/deps/ above it")?;
            profile_dir.join("cairn")
        }
    };
    anyhow::ensure!(
        path.is_file(),
        "no cairn binary at {} (build it first, or set CAIRN_BIN)",
        path.display()
    );
    Ok(path)
}

/// The resident memory of process `pid` now, from `/proc/<pid>/status`.
pub fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The CPU time (user + system) process `pid` has used so far, from `/proc/<pid>/stat`.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces, so split after its ')').
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / CLOCK_TICKS_PER_SECOND)
}

/// Linux's USER_HZ, which `/proc` counts CPU time in.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// Writes `dir/config.toml` as [`crate::test_config`] reads it (loopback, port 0), logging JSON,
/// with `edit` applied.
pub fn write_config(dir: &Path, edit: impl FnOnce(&mut Config)) -> anyhow::Result<()> {
    let mut config = crate::test_config(dir)?;
    config.log.format = LogFormat::Json;
    edit(&mut config);
    config.clone().validate()?;
    std::fs::write(dir.join("config.toml"), config.to_toml()?)?;
    Ok(())
}

/// A running `cairn daemon` process; killed if dropped.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    pub dir: PathBuf,
    pub url: String,
    pub peer_id: String,
    /// The swarm address with its peer ID, as a bootstrap entry names it.
    pub p2p_addr: String,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Daemon {
    /// Starts `cairn daemon` on `dir` and waits, with a deadline, until it serves its admin API.
    pub async fn start(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        Self::start_with_env(binary, dir, &[]).await
    }

    /// [`Daemon::start`] with `env` set for the process (systemd's variables, say).
    pub async fn start_with_env(
        binary: &Path,
        dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(binary)
            .args(["daemon", "--data-dir"])
            .arg(dir)
            .env_remove("CAIRN_DATA_DIR")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let log = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let (started, mut started_rx) = tokio::sync::mpsc::channel(1);
        let whole_log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file(dir))?;
        tokio::spawn(drain_log(stderr, whole_log, Arc::clone(&log), started));
        let (url, peer_id) = match tokio::time::timeout(START_DEADLINE, started_rx.recv()).await {
            Ok(Some(found)) => found,
            _ => anyhow::bail!(
                "the daemon on {} did not start within {} s; its log ends:\n{}",
                dir.display(),
                START_DEADLINE.as_secs(),
                tail(&log)
            ),
        };
        let mut daemon = Self {
            child,
            dir: dir.to_owned(),
            url,
            peer_id,
            p2p_addr: String::new(),
            log,
        };
        let status = daemon
            .readonly()
            .await?
            .status(admin::StatusRequest {})
            .await?
            .into_inner();
        let addr = status.listen_addrs.first().context("no swarm address")?;
        daemon.p2p_addr = format!("{addr}/p2p/{}", daemon.peer_id);
        Ok(daemon)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last lines the daemon logged.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }

    /// Every line this data directory's daemons (across restarts) logged that contains `needle`.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(log_file(&self.dir))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(String::from)
            .collect()
    }

    /// Every line this data directory's daemons logged so far.
    pub fn whole_log(&self) -> String {
        whole_log(&self.dir)
    }

    /// Sends `signal` (`HUP`, `TERM`, …) to the daemon.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("the daemon already exited")?;
        let sent = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()?;
        anyhow::ensure!(sent.success(), "kill -{signal} {pid} failed");
        Ok(())
    }

    /// Waits, with a deadline, for the daemon to exit on its own; its exit status.
    pub async fn exited(mut self, deadline: Duration) -> anyhow::Result<std::process::ExitStatus> {
        match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.start_kill()?;
                anyhow::bail!(
                    "the daemon was still running after {} s",
                    deadline.as_secs()
                )
            }
        }
    }

    /// SIGKILL, and waits until the process is gone.
    pub async fn kill_9(mut self) -> anyhow::Result<PathBuf> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(self.dir.clone())
    }

    /// SIGTERM, then waits (with a deadline) for the orderly shutdown; SIGKILL after it.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.signal("TERM")?;
        let status = self.exited(START_DEADLINE).await?;
        anyhow::ensure!(status.success(), "the daemon exited with {status}");
        Ok(())
    }

    pub async fn admin(&self) -> anyhow::Result<Client> {
        self.client("admin.token").await
    }

    pub async fn readonly(&self) -> anyhow::Result<Client> {
        self.client("readonly.token").await
    }

    async fn client(&self, token_file: &str) -> anyhow::Result<Client> {
        let token = std::fs::read_to_string(self.dir.join(token_file))
            .with_context(|| format!("reading {token_file}"))?;
        Ok(client::connect(&self.url, token.trim()).await?)
    }
}

/// Reads the daemon's JSON log: reports the admin address and peer ID of the "node started"
/// event once, and keeps the last [`LOG_TAIL`] lines.
async fn drain_log(
    stderr: tokio::process::ChildStderr,
    mut whole_log: std::fs::File,
    log: Arc<Mutex<VecDeque<String>>>,
    started: tokio::sync::mpsc::Sender<(String, String)>,
) {
    let mut lines = BufReader::new(stderr).lines();
    let mut reported = false;
    while let Ok(Some(line)) = lines.next_line().await {
        if !reported && let Some((addr, peer)) = started_event(&line) {
            reported = true;
            let _ = started.send((format!("http://{addr}"), peer)).await;
        }
        // The whole log, beside the data directory, for a failure to be traced afterwards.
        let _ = writeln!(whole_log, "{line}");
        if let Ok(mut log) = log.lock() {
            if log.len() == LOG_TAIL {
                log.pop_front();
            }
            log.push_back(line);
        }
    }
}

/// Every line the daemons of data directory `dir` logged (also after they stopped).
pub fn whole_log(dir: &Path) -> String {
    std::fs::read_to_string(log_file(dir)).unwrap_or_default()
}

/// Where every line a data directory's daemons log is kept: beside the directory.
fn log_file(dir: &Path) -> PathBuf {
    dir.with_extension("log")
}

fn started_event(line: &str) -> Option<(String, String)> {
    let event: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &event["fields"];
    Some((
        fields["admin_addr"].as_str()?.to_owned(),
        fields["peer_id"].as_str()?.to_owned(),
    ))
}

fn tail(log: &Mutex<VecDeque<String>>) -> String {
    log.lock()
        .map(|l| l.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}
