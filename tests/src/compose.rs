//! A docker-compose cluster for the cluster tests: `docker/docker-compose.yml` under a project
//! name of its own, with the image named by `CAIRN_IMAGE` (built from the host's binary by
//! `scripts/host-image.sh`), every admin port on a free loopback port, short repair timers. It is
//! taken down, volumes and all, when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use cairn_node::client::{self, Client};

/// The five services of the compose file.
pub const NODES: [&str; 5] = ["node1", "node2", "node3", "node4", "node5"];

static PROJECTS: AtomicU32 = AtomicU32::new(0);

/// How long a cluster of containers may take to come up or come back.
pub const READY: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Debug)]
pub struct ComposeCluster {
    project: String,
    file: PathBuf,
    image: String,
    tokens: tempfile::TempDir,
    /// With the `monitoring` profile: the Prometheus image and the rules file it evaluates.
    monitoring: Option<(String, PathBuf)>,
}

fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

impl ComposeCluster {
    /// `docker-compose up -d` of the five-node cluster, with `repair_grace` and `audit_interval`
    /// for every node; see [`ComposeCluster::wait_ready`].
    pub fn up(repair_grace: &str, audit_interval: &str) -> anyhow::Result<Self> {
        Self::start(repair_grace, audit_interval, None)
    }

    /// [`ComposeCluster::up`] with the `monitoring` profile: Prometheus (the image named by
    /// `CAIRN_PROMETHEUS_IMAGE`) scraping the nodes and evaluating `rules`.
    pub fn up_with_monitoring(
        repair_grace: &str,
        audit_interval: &str,
        rules: &Path,
    ) -> anyhow::Result<Self> {
        let image = std::env::var("CAIRN_PROMETHEUS_IMAGE")
            .context("CAIRN_PROMETHEUS_IMAGE names the Prometheus image")?;
        Self::start(
            repair_grace,
            audit_interval,
            Some((image, rules.to_path_buf())),
        )
    }

    fn start(
        repair_grace: &str,
        audit_interval: &str,
        monitoring: Option<(String, PathBuf)>,
    ) -> anyhow::Result<Self> {
        let image = std::env::var("CAIRN_IMAGE").context("CAIRN_IMAGE names the test image")?;
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/docker-compose.yml");
        let project = format!(
            "cairntest{}x{}",
            std::process::id(),
            PROJECTS.fetch_add(1, Ordering::SeqCst)
        );
        let cluster = Self {
            project,
            file,
            image,
            tokens: tempfile::tempdir()?,
            monitoring,
        };
        let mut up = cluster.compose(&["up", "-d"]);
        up.env("CAIRN_REPAIR_GRACE", repair_grace)
            .env("CAIRN_AUDIT_INTERVAL", audit_interval);
        run(&mut up)?;
        Ok(cluster)
    }

    fn compose(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .arg("-f")
            .arg(&self.file)
            .args(["-p", &self.project]);
        if let Some((image, rules)) = &self.monitoring {
            command
                .args(["--profile", "monitoring"])
                .env("CAIRN_PROMETHEUS_IMAGE", image)
                .env("CAIRN_ALERT_RULES", rules)
                .env("CAIRN_PROMETHEUS_PORT", "");
        }
        command.args(args).env("CAIRN_IMAGE", &self.image);
        for n in 1..=NODES.len() {
            command.env(format!("CAIRN_ADMIN_PORT_{n}"), "");
        }
        command
    }

    /// Waits until every node answers and is connected to all four others.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        for service in NODES {
            crate::eventually(&format!("{service} to join the cluster"), READY, || async {
                let Ok(mut client) = self.admin(service).await else {
                    return Ok(false);
                };
                let status = client.status(cairn_proto::admin::StatusRequest {}).await;
                Ok(status.is_ok_and(|s| s.into_inner().connected_peers == 4))
            })
            .await?;
        }
        Ok(())
    }

    /// The container of `service` (also a stopped one).
    pub fn container(&self, service: &str) -> anyhow::Result<String> {
        run(&mut self.compose(&["ps", "-q", service]))
    }

    /// The network the nodes share.
    pub fn network(&self) -> String {
        format!("{}_cluster", self.project)
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    /// Copies a file out of a service's container (running or not) into `to`.
    pub fn copy_out(&self, service: &str, path: &str, to: &Path) -> anyhow::Result<()> {
        let container = self.container(service)?;
        run(Command::new("docker")
            .arg("cp")
            .arg(format!("{container}:{path}"))
            .arg(to))?;
        Ok(())
    }

    /// The admin API of `service` on its published loopback port.
    pub fn url(&self, service: &str) -> anyhow::Result<String> {
        let addr = run(&mut self.compose(&["port", service, "5001"]))?;
        Ok(format!("http://{addr}"))
    }

    /// The alerts Prometheus reports firing now, as (alert name, instance) pairs.
    pub async fn firing_alerts(&self) -> anyhow::Result<Vec<(String, String)>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = run(&mut self.compose(&["port", "prometheus", "9090"]))?;
        let mut conn = tokio::net::TcpStream::connect(&addr).await?;
        // HTTP/1.0: the body comes whole, not in chunks.
        conn.write_all(b"GET /api/v1/alerts HTTP/1.0\r\nHost: prometheus\r\n\r\n")
            .await?;
        let mut response = String::new();
        conn.read_to_string(&mut response).await?;
        let (_, body) = response
            .split_once("\r\n\r\n")
            .context("an HTTP response")?;
        let body: serde_json::Value = serde_json::from_str(body)?;
        let alerts = body["data"]["alerts"]
            .as_array()
            .context("data.alerts in Prometheus' answer")?;
        Ok(alerts
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let label = |name: &str| a["labels"][name].as_str().unwrap_or("").to_owned();
                (label("alertname"), label("instance"))
            })
            .collect())
    }

    /// An admin client for `service` (its token copied out of its volume once).
    pub async fn admin(&self, service: &str) -> anyhow::Result<Client> {
        let token_file = self.tokens.path().join(service);
        if !token_file.exists() {
            self.copy_out(service, "/var/lib/cairn/admin.token", &token_file)?;
        }
        let token = std::fs::read_to_string(&token_file)?;
        Ok(client::connect(&self.url(service)?, &token).await?)
    }

    /// Runs the `cairn` CLI inside `service`'s container against its own node (works while the
    /// container is cut off the network, when its published port is gone too).
    pub fn cli(&self, service: &str, args: &[&str]) -> anyhow::Result<String> {
        let container = self.container(service)?;
        run(Command::new("docker")
            .args(["exec", &container, "/usr/local/bin/cairn", "--json"])
            .args(args)
            .args(["--data-dir", "/var/lib/cairn"]))
    }

    /// Copies `from` (a file on this host) into `service`'s data folder as `name`.
    pub fn copy_in(&self, service: &str, from: &Path, name: &str) -> anyhow::Result<String> {
        let container = self.container(service)?;
        let inside = format!("/var/lib/cairn/{name}");
        run(Command::new("docker")
            .arg("cp")
            .arg(from)
            .arg(format!("{container}:{inside}")))?;
        Ok(inside)
    }

    /// `docker kill` (SIGKILL, no shutdown).
    pub fn kill(&self, service: &str) -> anyhow::Result<()> {
        run(&mut self.compose(&["kill", service]))?;
        Ok(())
    }

    /// SIGTERM, wait, start again.
    pub fn restart(&self, service: &str) -> anyhow::Result<()> {
        run(&mut self.compose(&["restart", "-t", "30", service]))?;
        Ok(())
    }

    /// Cuts `service` off the cluster network.
    pub fn disconnect(&self, service: &str) -> anyhow::Result<()> {
        let container = self.container(service)?;
        run(Command::new("docker").args(["network", "disconnect", &self.network(), &container]))?;
        Ok(())
    }

    /// Puts `service` back on the cluster network under its name.
    pub fn connect(&self, service: &str) -> anyhow::Result<()> {
        let container = self.container(service)?;
        run(Command::new("docker").args([
            "network",
            "connect",
            "--alias",
            service,
            &self.network(),
            &container,
        ]))?;
        Ok(())
    }
}

impl Drop for ComposeCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failed scenario shows what the nodes said last.
            for service in NODES {
                let mut logs = self.compose(&["logs", "--no-color", "--tail", "150", service]);
                if let Ok(said) = run(&mut logs) {
                    eprintln!("----- {service} -----\n{said}");
                }
            }
        }
        let down = run(&mut self.compose(&["down", "-v", "-t", "5"]));
        if let Err(e) = down {
            eprintln!("taking the test cluster down failed: {e}");
        }
    }
}

/// A container started by a test beside a compose cluster; removed when dropped.
#[derive(Debug)]
pub struct Container(pub String);

impl Container {
    /// `docker run -d` with `args` after the image's name.
    pub fn run(options: &[&str], image: &str, args: &[&str]) -> anyhow::Result<Self> {
        let id = run(Command::new("docker")
            .args(["run", "-d"])
            .args(options)
            .arg(image)
            .args(args))?;
        Ok(Self(id))
    }

    /// Runs a command inside it (`docker exec`), returning its output.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("docker").args(["exec", &self.0]).args(args))
    }

    /// Whether it still runs, and its exit code once it stopped.
    pub fn state(&self) -> anyhow::Result<(bool, i64)> {
        let out = run(Command::new("docker").args([
            "inspect",
            "-f",
            "{{.State.Running}} {{.State.ExitCode}}",
            &self.0,
        ]))?;
        let (running, code) = out.split_once(' ').context("docker inspect output")?;
        Ok((running == "true", code.parse()?))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run(Command::new("docker").args(["rm", "-f", "-v", &self.0]));
    }
}
