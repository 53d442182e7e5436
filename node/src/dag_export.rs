//! Which blocks an export sends, and in what order: depth first from a root, each block once,
//! limited to a scope — the whole DAG (a CAR export, the gateway's `dag-scope=all`), the root
//! block alone (`block`), or one UnixFS entity (`entity`: a whole file, a directory's own node).
//! Also resolving a UnixFS path below a root, sending the blocks that prove each step. Every
//! block is read through the store, which verifies it.

use std::collections::HashSet;
use std::ops::ControlFlow;

use bytes::Bytes;
use cairn_blockstore::{Block, Blockstore, DAG_PB, links};
use cairn_proto::unixfs;
use cairn_proto::unixfs::data::DataType;
use cid::Cid;
use ipld_dagpb::PbNode;
use prost::Message;

use crate::error::{Error, Result};

type Multihash = cid::multihash::Multihash<64>;

/// How much of the DAG below a root an export includes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DagScope {
    /// The root and every block below it.
    #[default]
    All,
    /// The root and what it takes to read it as one UnixFS entity: a file's every block, a
    /// sharded directory's shards; a plain directory, a symlink or a non-UnixFS block alone.
    Entity,
    /// The root block alone.
    Block,
}

impl DagScope {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "all" => Some(Self::All),
            "entity" => Some(Self::Entity),
            "block" => Some(Self::Block),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Entity => "entity",
            Self::Block => "block",
        }
    }
}

/// One export's walk: blocks already sent are not sent again (CAR `dups=n`).
pub struct DagExport<'a, S: Blockstore + ?Sized> {
    store: &'a S,
    sent: HashSet<Multihash>,
}

impl<S: Blockstore + ?Sized> std::fmt::Debug for DagExport<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DagExport")
            .field("sent", &self.sent.len())
            .finish()
    }
}

impl<'a, S: Blockstore + ?Sized> DagExport<'a, S> {
    pub fn new(store: &'a S) -> Self {
        Self {
            store,
            sent: HashSet::new(),
        }
    }

    /// Follows `path` (directory entry names) from `root` through plain UnixFS directories and
    /// returns the CID it names. Each directory passed through goes to `send`, so the receiver
    /// can verify the path. `None`: `send` asked to stop.
    pub fn resolve(
        &mut self,
        root: Cid,
        path: &[String],
        send: &mut impl FnMut(Block) -> ControlFlow<()>,
    ) -> Result<Option<Cid>> {
        let mut here = root;
        for (depth, name) in path.iter().enumerate() {
            let data = self.store.get(&here)?;
            let entry = directory_entry(&here, &data, name).map_err(|problem| match problem {
                PathProblem::Missing => Error::NoSuchPath {
                    root,
                    path: path[..=depth].join("/"),
                },
                PathProblem::Sharded => Error::Unsupported(format!(
                    "{here} is a sharded (HAMT) directory; paths through one are not supported: \
                     request the CID of the entry itself"
                )),
                PathProblem::Malformed(reason) => Error::MalformedDag { root, reason },
            })?;
            if self.send_once(Block::new(here, data), send).is_break() {
                return Ok(None);
            }
            here = entry;
        }
        Ok(Some(here))
    }

    /// Sends `root` and, by `scope`, what lies below it, depth first in link order. Returns
    /// `Break` when `send` asked to stop.
    pub fn walk(
        &mut self,
        root: Cid,
        scope: DagScope,
        send: &mut impl FnMut(Block) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        let data = self.store.get(&root)?;
        let below = match scope {
            DagScope::Block => Below::Nothing,
            DagScope::All => Below::Everything,
            DagScope::Entity => match unixfs_type(&root, &data)? {
                Some(DataType::File | DataType::Raw) => Below::Everything,
                Some(DataType::HamtShard) => Below::Shards,
                _ => Below::Nothing,
            },
        };
        let children = match below {
            Below::Nothing => Vec::new(),
            _ => links(&root, &data)?,
        };
        if self.send_once(Block::new(root, data), send).is_break() {
            return Ok(ControlFlow::Break(()));
        }
        match below {
            Below::Nothing => Ok(ControlFlow::Continue(())),
            Below::Everything => self.below(children, false, send),
            Below::Shards => self.below(children, true, send),
        }
    }

    /// Depth first below a node, in link order: every block, or (`shards_only`, a sharded
    /// directory's entity) the shards but not the entries they point at.
    fn below(
        &mut self,
        children: Vec<Cid>,
        shards_only: bool,
        send: &mut impl FnMut(Block) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>> {
        let mut stack: Vec<Cid> = children.into_iter().rev().collect();
        while let Some(cid) = stack.pop() {
            if self.sent.contains(cid.hash()) || (shards_only && cid.codec() != DAG_PB) {
                continue;
            }
            let data = self.store.get(&cid)?;
            if shards_only && unixfs_type(&cid, &data)? != Some(DataType::HamtShard) {
                continue;
            }
            stack.extend(links(&cid, &data)?.into_iter().rev());
            if self.send_once(Block::new(cid, data), send).is_break() {
                return Ok(ControlFlow::Break(()));
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn send_once(
        &mut self,
        block: Block,
        send: &mut impl FnMut(Block) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        if self.sent.insert(*block.cid.hash()) {
            send(block)
        } else {
            ControlFlow::Continue(())
        }
    }
}

enum Below {
    Nothing,
    Everything,
    Shards,
}

enum PathProblem {
    Missing,
    Sharded,
    Malformed(String),
}

/// A DAG-PB node and its UnixFS type (`None` when it carries no UnixFS data).
fn decode(cid: &Cid, data: &Bytes) -> std::result::Result<(PbNode, Option<DataType>), String> {
    let node = PbNode::from_bytes(data.clone()).map_err(|e| format!("{cid}: {e}"))?;
    let kind = node
        .data
        .clone()
        .and_then(|bytes| unixfs::Data::decode(bytes).ok())
        .and_then(|meta| DataType::try_from(meta.r#type).ok());
    Ok((node, kind))
}

/// The UnixFS type of a block (`None` for raw blocks and DAG-PB nodes without UnixFS data).
fn unixfs_type(cid: &Cid, data: &Bytes) -> Result<Option<DataType>> {
    if cid.codec() != DAG_PB {
        return Ok(None);
    }
    decode(cid, data)
        .map(|(_, kind)| kind)
        .map_err(|reason| Error::MalformedDag { root: *cid, reason })
}

/// The CID under `name` in the plain directory `cid`.
fn directory_entry(cid: &Cid, data: &Bytes, name: &str) -> std::result::Result<Cid, PathProblem> {
    if cid.codec() != DAG_PB {
        return Err(PathProblem::Missing);
    }
    match decode(cid, data).map_err(PathProblem::Malformed)? {
        (node, Some(DataType::Directory)) => node
            .links
            .iter()
            .find(|link| link.name.as_deref() == Some(name))
            .map(|link| link.cid)
            .ok_or(PathProblem::Missing),
        (_, Some(DataType::HamtShard)) => Err(PathProblem::Sharded),
        _ => Err(PathProblem::Missing),
    }
}
