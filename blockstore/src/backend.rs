//! The storage engines under [`crate::Store`]: a few column families of sorted keys with atomic,
//! durable batches. All verification, accounting and pinning logic lives above this seam, once,
//! so the RocksDB and in-memory stores cannot drift apart.

pub mod mem;
pub mod rocks;

use crate::error::Result;

/// A column family. Names carry a version suffix, so a later layout can live beside this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cf {
    /// multihash → block bytes
    Blocks,
    /// CID → pin mode
    Pins,
    /// root CID → replica state (filled by replication)
    Replicas,
    /// multihash → time quarantined and the bytes that failed verification
    Quarantine,
    /// counters, scrub state and per-block verification times
    Meta,
}

impl Cf {
    pub const ALL: [Cf; 5] = [Cf::Blocks, Cf::Pins, Cf::Replicas, Cf::Quarantine, Cf::Meta];

    pub fn name(self) -> &'static str {
        match self {
            Cf::Blocks => "blocks_v1",
            Cf::Pins => "pins_v1",
            Cf::Replicas => "replicas_v1",
            Cf::Quarantine => "quarantine_v1",
            Cf::Meta => "meta_v1",
        }
    }
}

/// One write in a batch.
#[derive(Clone, Debug)]
pub enum Op {
    Put(Cf, Vec<u8>, Vec<u8>),
    Delete(Cf, Vec<u8>),
}

/// A set of writes applied all together or not at all.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(cf, key.into(), value.into()));
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(cf, key.into()));
    }
}

/// A storage engine. Implementations make `write` atomic and, when the store was opened with
/// synced writes, durable before it returns.
pub trait Backend: Send + Sync + 'static {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>>;

    fn contains(&self, cf: Cf, key: &[u8]) -> Result<bool> {
        Ok(self.get(cf, key)?.is_some())
    }

    fn write(&self, batch: Batch) -> Result<()>;

    /// Like [`Backend::write`] but durable only after the next [`Backend::sync`]: a bulk writer
    /// pays for one sync at its end instead of one per batch.
    fn write_buffered(&self, batch: Batch) -> Result<()> {
        self.write(batch)
    }

    /// Makes every write so far durable.
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// Up to `limit` entries in key order whose keys start with `prefix` and come after `after`
    /// (or from the first such key when `None`). Paging keeps no iterator open across calls, so
    /// long walks never pin old versions of the data.
    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Like [`Backend::scan`], keys only (no value reads).
    fn scan_keys(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>>;

    /// Makes everything written so far durable (used at shutdown).
    fn flush(&self) -> Result<()>;
}
