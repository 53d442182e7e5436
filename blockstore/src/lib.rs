//! cairn-blockstore: Cairn's verified block store.
//!
//! Blocks are keyed by multihash and hashed again on every write and every read: a block whose
//! bytes do not match is moved to quarantine, counted, and reported as
//! [`Error::HashMismatch`] — its bytes are never returned. On top sit recursive and direct pins,
//! a GC that never removes what a pin reaches, a hard quota, and a rate-limited scrub.
//!
//! The logic lives once in [`Store`], over a small [`backend::Backend`] seam with two engines:
//! RocksDB ([`RocksBlockstore`]) and memory ([`MemBlockstore`]). This is the only crate that names
//! RocksDB. It must never hand out unverified bytes, and never half-apply a write.
#![forbid(unsafe_code)]

pub mod backend;
mod block;
mod dag;
mod error;
mod grace;
mod metrics;
mod pins;
mod replicas;
mod scrub;
mod store;
#[cfg(feature = "testing")]
pub mod testing;
mod written;

use std::path::Path;

use bytes::Bytes;
use cid::Cid;
use multihash::Multihash;

pub use backend::mem::MemBackend;
pub use backend::rocks::RocksBackend;
pub use block::{Block, DAG_PB, HashAlg, RAW, VerifiedBlock, links, raw_cid, verify};
pub use dag::{walk, walk_names};
pub use error::{Error, Result};
pub use metrics::StoreMetrics;
pub use pins::{GcReport, PinMode};
pub use scrub::{ScrubOptions, ScrubProgress, ScrubReport};
pub use store::{Store, StoreOptions, StoreStats, on_every_core};
pub use written::Written;

/// The block store on RocksDB.
pub type RocksBlockstore = Store<RocksBackend>;
/// The block store in memory.
pub type MemBlockstore = Store<MemBackend>;

impl RocksBlockstore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: format!("cannot create {}", dir.display()),
            source,
        })?;
        let backend = RocksBackend::open(dir, opts.sync_writes)?;
        Store::with_backend(backend, opts)
    }
}

impl MemBlockstore {
    pub fn new(opts: StoreOptions) -> Self {
        // Memory starts empty: there is no metadata to load or count.
        Store::from_parts(MemBackend::new(), opts, store::Usage::default())
    }
}

/// The small, synchronous block interface the rest of Cairn programs against. Async callers use
/// `spawn_blocking`. Every implementation verifies on `put` and on `get`.
pub trait Blockstore: Send + Sync + 'static {
    /// The verified bytes of `cid`; [`Error::NotFound`] when absent, [`Error::HashMismatch`] (and
    /// quarantine) when the stored bytes are corrupt.
    fn get(&self, cid: &Cid) -> Result<Bytes>;
    /// Several blocks at once, in order, each result what [`Blockstore::get`] would give. Stores
    /// may batch the reads and verify in parallel.
    fn get_many(&self, cids: &[Cid]) -> Result<Vec<Result<Bytes>>> {
        Ok(cids.iter().map(|c| self.get(c)).collect())
    }
    fn has(&self, cid: &Cid) -> Result<bool>;
    fn put(&self, block: &Block) -> Result<()>;
    /// All blocks or none; durable when it returns.
    fn put_many(&self, blocks: &[Block]) -> Result<()>;
    /// All blocks or none; durable after the next [`Blockstore::sync`].
    fn put_many_buffered(&self, blocks: &[Block]) -> Result<()> {
        self.put_many(blocks)
    }
    /// [`Blockstore::put_many_buffered`] for blocks whose hash was checked already. A store that
    /// takes that check as its own skips hashing them again; this default does not.
    fn put_verified_buffered(&self, blocks: &[VerifiedBlock]) -> Result<()> {
        let blocks: Vec<Block> = blocks.iter().map(|b| b.as_block().clone()).collect();
        self.put_many_buffered(&blocks)
    }
    /// Evidence for a bulk writer starting now (see [`Written`]). This default gives evidence
    /// that never counts, so a pin of what was written walks it all.
    fn begin_written(&self) -> Written {
        Written::default()
    }
    /// [`Blockstore::put_verified_buffered`], recording the blocks in `written`. This default
    /// records nothing.
    fn put_verified_noting(&self, blocks: &[VerifiedBlock], written: &mut Written) -> Result<()> {
        let _ = written;
        self.put_verified_buffered(blocks)
    }
    /// Makes every buffered write durable.
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    fn delete(&self, cid: &Cid) -> Result<bool>;
    /// Every stored block's multihash.
    fn iterate(&self) -> Box<dyn Iterator<Item = Result<Multihash<64>>> + '_>;
}

impl<B: backend::Backend> Blockstore for Store<B> {
    fn get(&self, cid: &Cid) -> Result<Bytes> {
        Store::get(self, cid)
    }
    fn get_many(&self, cids: &[Cid]) -> Result<Vec<Result<Bytes>>> {
        Store::get_many(self, cids)
    }
    fn has(&self, cid: &Cid) -> Result<bool> {
        Store::has(self, cid)
    }
    fn put(&self, block: &Block) -> Result<()> {
        Store::put(self, block)
    }
    fn put_many(&self, blocks: &[Block]) -> Result<()> {
        Store::put_many(self, blocks)
    }
    fn put_many_buffered(&self, blocks: &[Block]) -> Result<()> {
        Store::put_many_buffered(self, blocks)
    }
    fn put_verified_buffered(&self, blocks: &[VerifiedBlock]) -> Result<()> {
        Store::put_verified_buffered(self, blocks)
    }
    fn begin_written(&self) -> Written {
        Store::begin_written(self)
    }
    fn put_verified_noting(&self, blocks: &[VerifiedBlock], written: &mut Written) -> Result<()> {
        Store::put_verified_noting(self, blocks, written)
    }
    fn sync(&self) -> Result<()> {
        Store::sync(self)
    }
    fn delete(&self, cid: &Cid) -> Result<bool> {
        Store::delete(self, cid)
    }
    fn iterate(&self) -> Box<dyn Iterator<Item = Result<Multihash<64>>> + '_> {
        Box::new(Store::iterate(self))
    }
}
