//! The importer: bytes in, a UnixFS DAG in the blockstore out, root CID back.

use std::io::Read;

use bytes::Bytes;
use cairn_blockstore::{Blockstore, DAG_PB, HashAlg, RAW, VerifiedBlock, Written, on_every_core};
use cairn_proto::unixfs;
use cid::Cid;
use ipld_dagpb::{PbLink, PbNode};
use prost::Message;

use super::{CHUNK_SIZE, CidVersion, MAX_LINKS};
use crate::error::{Error, Result};

/// A leaf of file bytes: a raw block (CIDv1), or a UnixFS file node holding them (CIDv0).
fn leaf(cid_version: CidVersion, data: &Bytes) -> Result<VerifiedBlock> {
    match cid_version {
        CidVersion::V1 => Ok(VerifiedBlock::build(RAW, HashAlg::Sha2_256, data.clone())),
        CidVersion::V0 => {
            let meta = unixfs::Data {
                r#type: unixfs::data::DataType::File as i32,
                // The reference importer leaves the field out of an empty leaf.
                data: (!data.is_empty()).then(|| data.clone()),
                filesize: Some(data.len() as u64),
                ..Default::default()
            };
            dag_pb_block(cid_version, Vec::new(), meta)
        }
    }
}

fn dag_pb_block(
    cid_version: CidVersion,
    links: Vec<PbLink>,
    meta: unixfs::Data,
) -> Result<VerifiedBlock> {
    let bytes = PbNode {
        links,
        data: Some(Bytes::from(meta.encode_to_vec())),
    }
    .into_bytes();
    Ok(match cid_version {
        CidVersion::V0 => VerifiedBlock::build_v0(bytes)?,
        CidVersion::V1 => VerifiedBlock::build(DAG_PB, HashAlg::Sha2_256, bytes),
    })
}

/// Blocks are written in batches of about this many bytes: large enough to amortise a synced
/// write, small enough to keep memory flat.
const BATCH_BYTES: usize = 4 << 20;

#[derive(Clone, Copy, Debug)]
pub struct ImportOptions {
    pub cid_version: CidVersion,
    pub chunk_size: usize,
    pub max_links: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            cid_version: CidVersion::V1,
            chunk_size: CHUNK_SIZE,
            max_links: MAX_LINKS,
        }
    }
}

/// What an import produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imported {
    pub root: Cid,
    /// File bytes.
    pub size: u64,
    /// Blocks written (a repeated chunk counts each time it occurs).
    pub blocks: u64,
}

/// A finished subtree, as its parent links to it.
#[derive(Clone, Copy, Debug)]
struct Child {
    cid: Cid,
    /// File bytes below it (the parent's `blocksizes` entry).
    file_size: u64,
    /// Encoded bytes below it, itself included (the link's `Tsize`).
    dag_size: u64,
}

/// Streams a file into the store. Feed it with [`FileImporter::write`], end with
/// [`FileImporter::finish`]. Blocks are stored as they fill and made durable together before
/// `finish` returns; pinning the root is the caller's job
/// (hold the store's GC guard from the first write until the pin).
pub struct FileImporter<'a, S: Blockstore + ?Sized> {
    store: &'a S,
    opts: ImportOptions,
    chunk: Vec<u8>,
    /// Whole chunks waiting to be hashed, a batch at a time on every core.
    unhashed: Vec<Bytes>,
    unhashed_bytes: usize,
    /// `levels[0]` holds leaves not yet under a node, `levels[i]` nodes of height `i`.
    levels: Vec<Vec<Child>>,
    pending: Vec<VerifiedBlock>,
    pending_bytes: usize,
    /// What has been stored, so that pinning the root need not read the file back.
    written: Written,
    leaves: u64,
    blocks: u64,
    size: u64,
}

impl<S: Blockstore + ?Sized> std::fmt::Debug for FileImporter<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileImporter")
            .field("opts", &self.opts)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<'a, S: Blockstore + ?Sized> FileImporter<'a, S> {
    pub fn new(store: &'a S, opts: ImportOptions) -> Self {
        // A chunker that makes no progress, or a tree that cannot branch, is a programming error
        // in the caller; clamp instead of looping forever.
        let opts = ImportOptions {
            chunk_size: opts.chunk_size.max(1),
            max_links: opts.max_links.max(2),
            ..opts
        };
        Self {
            store,
            opts,
            chunk: Vec::with_capacity(opts.chunk_size),
            unhashed: Vec::new(),
            unhashed_bytes: 0,
            levels: vec![Vec::new()],
            pending: Vec::new(),
            pending_bytes: 0,
            written: store.begin_written(),
            leaves: 0,
            blocks: 0,
            size: 0,
        }
    }

    pub fn write(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            let take = (self.opts.chunk_size - self.chunk.len()).min(data.len());
            self.chunk.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.chunk.len() == self.opts.chunk_size {
                self.emit_leaf()?;
            }
        }
        Ok(())
    }

    /// Like [`FileImporter::write`], but whole chunks of `data` become leaves as they are, with
    /// no copy: an upload whose messages hold whole chunks is imported without copying its bytes.
    pub fn write_shared(&mut self, mut data: Bytes) -> Result<()> {
        let size = self.opts.chunk_size;
        if !self.chunk.is_empty() {
            // Completes the partial chunk first, so leaves keep the file's order.
            let fill = data.split_to((size - self.chunk.len()).min(data.len()));
            self.write(&fill)?;
        }
        while data.len() >= size {
            let whole = data.split_to(size);
            self.push_leaf(whole)?;
        }
        self.write(&data)
    }

    /// Ends the file: closes every partial node up to the root and writes the remaining blocks.
    pub fn finish(self) -> Result<Imported> {
        self.finish_written().map(|(imported, _)| imported)
    }

    /// [`FileImporter::finish`], also giving the store's record of what was written, for
    /// `Store::pin_written`.
    pub fn finish_written(mut self) -> Result<(Imported, Written)> {
        // An empty file is one empty leaf; a partial chunk is the last leaf.
        if self.leaves == 0 || !self.chunk.is_empty() {
            self.emit_leaf()?;
        }
        self.hash_leaves()?;
        let mut level = 0;
        let root = loop {
            let children = std::mem::take(&mut self.levels[level]);
            if level + 1 == self.levels.len() {
                break match children.as_slice() {
                    [only] if level == 0 => *only,
                    _ => self.build_node(&children)?,
                };
            }
            if !children.is_empty() {
                let node = self.build_node(&children)?;
                self.push_child(level + 1, node)?;
            }
            level += 1;
        };
        self.flush()?;
        // The root is acknowledged only once every block under it is durable.
        self.store.sync()?;
        let imported = Imported {
            root: root.cid,
            size: self.size,
            blocks: self.blocks,
        };
        Ok((imported, self.written))
    }

    fn emit_leaf(&mut self) -> Result<()> {
        let data = Bytes::from(std::mem::replace(
            &mut self.chunk,
            Vec::with_capacity(self.opts.chunk_size),
        ));
        self.push_leaf(data)
    }

    fn push_leaf(&mut self, data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        self.leaves += 1;
        self.unhashed_bytes += data.len();
        self.unhashed.push(data);
        if self.unhashed_bytes >= BATCH_BYTES {
            self.hash_leaves()?;
        }
        Ok(())
    }

    /// Hashes the waiting chunks into leaves, spread over the cores, and adds them in file order.
    fn hash_leaves(&mut self) -> Result<()> {
        let chunks = std::mem::take(&mut self.unhashed);
        self.unhashed_bytes = 0;
        let cid_version = self.opts.cid_version;
        let leaves = on_every_core(&chunks, |data| leaf(cid_version, data))?;
        for (data, leaf) in chunks.iter().zip(leaves) {
            let block = leaf?;
            let child = Child {
                cid: *block.cid(),
                file_size: data.len() as u64,
                dag_size: block.data().len() as u64,
            };
            self.queue(block)?;
            self.push_child(0, child)?;
        }
        Ok(())
    }

    /// Adds `child` at `level`, first closing that level into a node of its own when it is full.
    fn push_child(&mut self, level: usize, child: Child) -> Result<()> {
        if self.levels.len() == level {
            self.levels.push(Vec::new());
        }
        if self.levels[level].len() == self.opts.max_links {
            let full = std::mem::take(&mut self.levels[level]);
            let node = self.build_node(&full)?;
            self.push_child(level + 1, node)?;
        }
        self.levels[level].push(child);
        Ok(())
    }

    fn build_node(&mut self, children: &[Child]) -> Result<Child> {
        let meta = unixfs::Data {
            r#type: unixfs::data::DataType::File as i32,
            filesize: Some(children.iter().map(|c| c.file_size).sum()),
            blocksizes: children.iter().map(|c| c.file_size).collect(),
            ..Default::default()
        };
        let links = children
            .iter()
            .map(|c| PbLink {
                cid: c.cid,
                name: Some(String::new()),
                size: Some(c.dag_size),
            })
            .collect();
        let block = dag_pb_block(self.opts.cid_version, links, meta)?;
        let child = Child {
            cid: *block.cid(),
            file_size: children.iter().map(|c| c.file_size).sum(),
            dag_size: block.data().len() as u64 + children.iter().map(|c| c.dag_size).sum::<u64>(),
        };
        self.queue(block)?;
        Ok(child)
    }

    fn queue(&mut self, block: VerifiedBlock) -> Result<()> {
        self.pending_bytes += block.data().len();
        self.blocks += 1;
        self.pending.push(block);
        if self.pending_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.pending.is_empty() {
            self.store
                .put_verified_noting(&self.pending, &mut self.written)?;
            self.pending.clear();
            self.pending_bytes = 0;
        }
        Ok(())
    }
}

/// Imports everything `reader` yields.
pub fn import_reader<S: Blockstore + ?Sized>(
    store: &S,
    mut reader: impl Read,
    opts: ImportOptions,
) -> Result<Imported> {
    let mut importer = FileImporter::new(store, opts);
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Error::Io {
                    what: "reading the file to import",
                    source,
                });
            }
        };
        importer.write(&buf[..n])?;
    }
    importer.finish()
}
