//! The storage engines under [`crate::Store`]: a few column families of sorted keys with atomic,
//! durable batches. All verification, accounting and pinning logic lives above this seam, once,
//! so the RocksDB and in-memory stores cannot drift apart.

mod direct_io;
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
    /// The value is shared, not copied: a block's bytes go from the importer or the wire into the
    /// engine's own write batch with no copy of ours in between.
    Put(Cf, Vec<u8>, bytes::Bytes),
    Delete(Cf, Vec<u8>),
    /// Adds to a pair of counters (two big-endian u64s, wrapping; a missing value counts as
    /// zero). A delta rather than a new total: a batch that is lost in a crash takes its own
    /// delta with it, whatever was written after it.
    Add(Cf, Vec<u8>, [u64; 2]),
}

/// The bytes of a counter pair.
pub fn encode_counters(counters: [u64; 2]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&counters[0].to_be_bytes());
    out.extend_from_slice(&counters[1].to_be_bytes());
    out
}

/// A counter pair from its bytes; None when they are not one.
pub fn decode_counters(raw: &[u8]) -> Option<[u64; 2]> {
    let record: [u8; 16] = raw.try_into().ok()?;
    let both = u128::from_be_bytes(record);
    Some([(both >> 64) as u64, both as u64])
}

/// `existing` plus every delta in `deltas`; None when any of them is not a counter pair.
pub fn add_counters<'a>(
    existing: Option<&[u8]>,
    deltas: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Vec<u8>> {
    let mut sum = existing.map_or(Some([0, 0]), decode_counters)?;
    for delta in deltas {
        let [blocks, bytes] = decode_counters(delta)?;
        sum = [sum[0].wrapping_add(blocks), sum[1].wrapping_add(bytes)];
    }
    Some(encode_counters(sum))
}

/// A set of writes applied all together or not at all.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub ops: Vec<Op>,
}

impl Batch {
    pub fn put(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.put_shared(cf, key, bytes::Bytes::from(value.into()));
    }

    /// Like [`Batch::put`], taking a share of `value` instead of a copy.
    pub fn put_shared(&mut self, cf: Cf, key: impl Into<Vec<u8>>, value: bytes::Bytes) {
        self.ops.push(Op::Put(cf, key.into(), value));
    }

    pub fn delete(&mut self, cf: Cf, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(cf, key.into()));
    }

    pub fn add(&mut self, cf: Cf, key: impl Into<Vec<u8>>, delta: [u64; 2]) {
        self.ops.push(Op::Add(cf, key.into(), delta));
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

    /// Like [`Backend::write_buffered`], for batches large enough that writing their bytes once
    /// matters: an engine may leave them out of its write-ahead log, and then makes them durable
    /// at the next [`Backend::sync`] by writing its memory tables out. The batch is still atomic.
    fn write_bulk(&self, batch: Batch) -> Result<()> {
        self.write_buffered(batch)
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

    /// Gives the space of deleted values back to the file system, where the engine keeps it
    /// until told (after a GC run removed enough).
    fn reclaim(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_deltas_and_take_away_wrapped_ones() {
        let base = encode_counters([10, 1000]);
        let plus = encode_counters([2, 300]);
        let minus = encode_counters([3u64.wrapping_neg(), 500u64.wrapping_neg()]);
        let sum = add_counters(Some(&base), [plus.as_slice(), minus.as_slice()]).unwrap();
        assert_eq!(decode_counters(&sum), Some([9, 800]));
        // A missing counter starts at zero.
        let sum = add_counters(None, [plus.as_slice()]).unwrap();
        assert_eq!(decode_counters(&sum), Some([2, 300]));
    }

    #[test]
    fn a_counter_that_is_not_sixteen_bytes_is_refused_not_guessed() {
        let plus = encode_counters([1, 1]);
        assert_eq!(add_counters(Some(b"short"), [plus.as_slice()]), None);
        assert_eq!(add_counters(None, [b"short".as_slice()]), None);
    }
}
