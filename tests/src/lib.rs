//! Shared helpers for Cairn's integration tests (the tests themselves are in `tests/`): test
//! content, and real nodes in this process on 127.0.0.1 port 0 in temporary folders, driven
//! through the real gRPC client.
#![forbid(unsafe_code)]

pub mod compose;
pub mod daemon;
pub mod hostile;
pub mod kubo;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use cairn_config::Config;
use cairn_node::client::{self, Client};
use cairn_node::{Node, NodeHandle};
use cairn_proto::admin;

/// The content of the UnixFS CID vectors: byte `i` is `i % 251`, as
/// `shared/vectors/make_fixtures.py` writes, so inputs can be regenerated instead of committed.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Test data that does not repeat: `len` bytes drawn from a generator seeded with `seed`, the
/// same on every run, so a seed names its content and the content is regenerated, never kept.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

/// A node initialised in its own temporary folder, running in this process.
#[derive(Debug)]
pub struct TestNode {
    pub handle: NodeHandle,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl TestNode {
    /// `cairn init` in a fresh folder, then start the node with its admin API on port 0.
    pub async fn start() -> anyhow::Result<Self> {
        let (tmp, dir) = initialised_dir()?;
        let mut node = Self::start_in(&dir).await?;
        node._tmp = Some(tmp);
        Ok(node)
    }

    /// Starts a node on an existing data directory (the caller keeps the folder alive).
    pub async fn start_in(dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, |_| {}).await
    }

    /// [`TestNode::start_in`], with the config changed by `edit` first.
    pub async fn start_with(dir: &Path, edit: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        let mut config = test_config(dir)?;
        edit(&mut config);
        let handle = Node::spawn(config.validate()?).await?;
        Ok(Self {
            handle,
            dir: dir.to_owned(),
            _tmp: None,
        })
    }

    /// Stops the node in order and waits for it; returns the folder so it can be restarted.
    pub async fn stop(self) -> anyhow::Result<Option<tempfile::TempDir>> {
        self.handle.shutdown();
        self.handle.join().await?;
        Ok(self._tmp)
    }

    /// Stops the node in order and keeps its folder, to start it again with
    /// [`StoppedNode::start_with`].
    pub async fn stop_keeping(self) -> anyhow::Result<StoppedNode> {
        self.handle.shutdown();
        self.handle.join().await?;
        Ok(StoppedNode {
            dir: self.dir,
            _tmp: self._tmp,
        })
    }

    pub fn token(&self, file: &str) -> anyhow::Result<String> {
        let raw = std::fs::read_to_string(self.dir.join(file))
            .with_context(|| format!("reading {file}"))?;
        Ok(raw.trim().to_owned())
    }

    /// The node's P2P address with its peer ID, as a bootstrap entry names it.
    pub fn p2p_addr(&self) -> String {
        let addr = self.handle.p2p_addrs().first().map(ToString::to_string);
        format!("{}/p2p/{}", addr.unwrap_or_default(), self.handle.peer_id())
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.handle.admin_addr())
    }

    /// A plain channel to the admin API, with no token.
    pub async fn channel(&self) -> anyhow::Result<tonic::transport::Channel> {
        Ok(tonic::transport::Channel::from_shared(self.url())?
            .connect()
            .await?)
    }

    /// A client with the admin token.
    pub async fn admin(&self) -> anyhow::Result<Client> {
        Ok(client::connect(&self.url(), &self.token("admin.token")?).await?)
    }

    /// A client with the read-only token.
    pub async fn readonly(&self) -> anyhow::Result<Client> {
        Ok(client::connect(&self.url(), &self.token("readonly.token")?).await?)
    }
}

/// A stopped node's folder (its identity, store and tokens), kept alive for a restart.
#[derive(Debug)]
pub struct StoppedNode {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl StoppedNode {
    /// Starts the node again on its folder, with `edit` applied to the config as before.
    pub async fn start_with(self, edit: impl FnOnce(&mut Config)) -> anyhow::Result<TestNode> {
        let mut node = TestNode::start_with(&self.dir, edit).await?;
        node._tmp = self._tmp;
        Ok(node)
    }
}

/// A fresh temporary folder with `cairn init` done in its `node/` subfolder (not started).
pub fn initialised_dir() -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("node");
    cairn_node::init::init(&dir, false)?;
    Ok((tmp, dir))
}

/// The block store of a stopped node, opened directly, to inspect or damage it underneath.
pub fn open_store(dir: &Path) -> anyhow::Result<cairn_blockstore::RocksBlockstore> {
    let path = dir.join(cairn_node::BLOCKS_DIR);
    Ok(cairn_blockstore::RocksBlockstore::open(
        &path,
        Default::default(),
    )?)
}

/// The CID a UnixFS raw leaf holding `bytes` has.
pub fn raw_leaf(bytes: &[u8]) -> cid::Cid {
    use cairn_blockstore::{Block, HashAlg, RAW};
    Block::build(RAW, HashAlg::Sha2_256, bytes.to_vec()).cid
}

/// The config `cairn init` wrote for `dir`, with every listener on an ephemeral loopback port
/// and metrics off.
pub fn test_config(dir: &Path) -> anyhow::Result<Config> {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path)?;
    let mut config = Config::from_toml(&text, &path)?;
    config.admin.listen = "127.0.0.1:0".into();
    config.metrics.listen = String::new();
    config.p2p.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    Ok(config)
}

/// Adds `data` as one file through the API, in 256 KiB messages.
pub async fn add(
    client: &mut Client,
    data: &[u8],
    cid_version: u32,
) -> Result<admin::AddFileResponse, tonic::Status> {
    let mut messages: Vec<admin::AddFileRequest> = data
        .chunks(256 * 1024)
        .map(|c| admin::AddFileRequest {
            options: None,
            data: c.to_vec().into(),
        })
        .collect();
    if messages.is_empty() {
        messages.push(admin::AddFileRequest::default());
    }
    messages[0].options = Some(admin::AddOptions {
        cid_version: Some(cid_version),
        ..Default::default()
    });
    Ok(client
        .add_file(tokio_stream::iter(messages))
        .await?
        .into_inner())
}

/// Reads a whole file through the API.
pub async fn cat(client: &mut Client, cid: &str) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = client
        .cat(admin::CatRequest {
            cid: cid.to_owned(),
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(piece) = stream.message().await? {
        out.extend_from_slice(&piece.data);
    }
    Ok(out)
}

/// Asserts that every node of `nodes` reads `cid` back as `data`.
pub async fn reads_everywhere(nodes: &[TestNode], cid: &str, data: &[u8]) -> anyhow::Result<()> {
    for node in nodes {
        let read = cat(&mut node.readonly().await?, cid).await?;
        anyhow::ensure!(
            read == data,
            "{} read other bytes for {cid}",
            node.handle.peer_id()
        );
    }
    Ok(())
}

/// `GET /metrics` over a plain TCP connection.
pub async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: cairn\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await?;
    anyhow::ensure!(response.starts_with("HTTP/1.1 200"), "{response}");
    Ok(response)
}

/// The value of the sample line that starts with `series` (name and labels).
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// How long a test waits for a cluster to settle before it fails.
pub const SETTLE: Duration = Duration::from_secs(30);

/// What a check passed to [`eventually`] answers: whether the condition holds, or (for checks
/// that can fail outright) a result of that.
pub trait Holds {
    fn holds(self) -> anyhow::Result<bool>;
}

impl Holds for bool {
    fn holds(self) -> anyhow::Result<bool> {
        Ok(self)
    }
}

impl Holds for anyhow::Result<bool> {
    fn holds(self) -> anyhow::Result<bool> {
        self
    }
}

/// The one way tests wait: polls `check` until it holds, and fails naming `what` after
/// `deadline` (or as soon as the check itself fails).
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
    Fut::Output: Holds,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if check().await.holds()? {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < give_up,
            "timed out after {} s waiting for {what}",
            deadline.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The other half of [`eventually`]: checks that `check` keeps holding for all of `window`
/// (polling, as `eventually` does), and fails naming `what` the first time it does not. For
/// outcomes that must not happen: an attack that must leave the cluster as it was.
pub async fn throughout<F, Fut>(what: &str, window: Duration, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
    Fut::Output: Holds,
{
    let end = tokio::time::Instant::now() + window;
    let mut polls = tokio::time::interval(Duration::from_millis(100));
    while polls.tick().await < end {
        anyhow::ensure!(check().await.holds()?, "{what} stopped holding");
    }
    Ok(())
}

/// A cluster of `n` nodes in this process: the first starts alone, the others bootstrap from it
/// (pinned to its peer ID). `edit` changes every node's config (it gets the node's index).
pub async fn start_cluster(
    n: usize,
    edit: impl Fn(usize, &mut Config),
) -> anyhow::Result<Vec<TestNode>> {
    let mut nodes: Vec<TestNode> = Vec::with_capacity(n);
    for index in 0..n {
        let node = match nodes.first() {
            None => {
                let (tmp, dir) = initialised_dir()?;
                let mut node = TestNode::start_with(&dir, |c| edit(index, c)).await?;
                node._tmp = Some(tmp);
                node
            }
            Some(hub) => join_cluster(hub, |c| edit(index, c)).await?,
        };
        nodes.push(node);
    }
    Ok(nodes)
}

/// A new node that bootstraps from `hub` (pinned to its peer ID), with `edit` applied.
pub async fn join_cluster(
    hub: &TestNode,
    edit: impl FnOnce(&mut Config),
) -> anyhow::Result<TestNode> {
    let (tmp, dir) = initialised_dir()?;
    let mut node = TestNode::start_with(&dir, bootstrap_from(hub, edit)).await?;
    node._tmp = Some(tmp);
    Ok(node)
}

/// A config edit that bootstraps from `hub`, then applies `edit`.
pub fn bootstrap_from(hub: &TestNode, edit: impl FnOnce(&mut Config)) -> impl FnOnce(&mut Config) {
    let hub = hub.p2p_addr();
    move |c| {
        c.p2p.bootstrap = vec![hub];
        c.p2p.min_bootstrap_peers = 1;
        edit(c);
    }
}

/// Stores and pins `data` on `node` without replicating it (a local import, no gRPC), and
/// announces it.
pub async fn hold_locally(node: &TestNode, data: Vec<u8>) -> anyhow::Result<cid::Cid> {
    use cairn_node::unixfs::{FileImporter, ImportOptions};
    let store = std::sync::Arc::clone(node.handle.store());
    let root = tokio::task::spawn_blocking(move || -> anyhow::Result<cid::Cid> {
        let mut importer = FileImporter::new(&*store, ImportOptions::default());
        for chunk in data.chunks(1 << 20) {
            importer.write(chunk)?;
        }
        let done = importer.finish()?;
        store.pin(&done.root, cairn_blockstore::PinMode::Recursive)?;
        Ok(done.root)
    })
    .await??;
    node.handle.network().start_providing(root).await?;
    Ok(root)
}

/// The peer IDs `node` is connected to.
pub async fn connected_peers(node: &TestNode) -> anyhow::Result<Vec<String>> {
    let mut client = node.readonly().await?;
    Ok(client
        .peers_ls(admin::PeersLsRequest {})
        .await?
        .into_inner()
        .peers
        .into_iter()
        .map(|p| p.peer_id)
        .collect())
}

/// Waits until every node is connected to every other.
pub async fn full_view(nodes: &[TestNode]) -> anyhow::Result<()> {
    for node in nodes {
        eventually("a full view of the cluster", SETTLE, || async {
            Ok(connected_peers(node).await?.len() == nodes.len() - 1)
        })
        .await?;
    }
    Ok(())
}

/// The roots `node` pins, as its API lists them.
pub async fn pinned_roots(node: &TestNode) -> anyhow::Result<Vec<String>> {
    let pins = node
        .readonly()
        .await?
        .pin_ls(admin::PinLsRequest::default())
        .await?
        .into_inner()
        .pins;
    Ok(pins.into_iter().map(|p| p.cid).collect())
}

/// The peer IDs of those of `nodes` that pin `cid`, sorted.
pub async fn pinners(nodes: &[TestNode], cid: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for node in nodes {
        if pinned_roots(node).await?.iter().any(|p| p == cid) {
            out.push(node.handle.peer_id().to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// Stops every node in order.
pub async fn stop_all(nodes: Vec<TestNode>) -> anyhow::Result<()> {
    for node in nodes {
        node.stop().await?;
    }
    Ok(())
}
