//! Shared helpers for Cairn's integration tests (the tests themselves are in `tests/`): test
//! content, and real nodes in this process on 127.0.0.1 port 0 in temporary folders, driven
//! through the real gRPC client.

use std::path::{Path, PathBuf};

use anyhow::Context;
use cairn_config::Config;
use cairn_node::client::{self, Client};
use cairn_node::{Node, NodeHandle};
use cairn_proto::admin;

/// Deterministic test content: byte `i` is `i % 251`, as `shared/vectors/make_fixtures.py` writes,
/// so inputs can be regenerated instead of committed.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
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

    pub fn token(&self, file: &str) -> anyhow::Result<String> {
        let raw = std::fs::read_to_string(self.dir.join(file))
            .with_context(|| format!("reading {file}"))?;
        Ok(raw.trim().to_owned())
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
