//! The RocksDB engine. Large values (blocks) go to BlobDB blob files so compaction moves only
//! small keys and pointers; everything else stays in the LSM tree.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Direction,
    FlushOptions, IteratorMode, MergeOperands, Options, WriteBatch, WriteOptions,
};

use super::{Backend, Batch, Cf, Op, add_counters, encode_counters};
use crate::error::{Error, Result};

/// Values at least this large leave the LSM tree for blob files.
const MIN_BLOB_SIZE: u64 = 4096;
const BLOB_FILE_SIZE: u64 = 256 << 20;

pub struct RocksBackend {
    db: DB,
    write_opts: WriteOptions,
    buffered_opts: WriteOptions,
    /// Bulk batches: no WAL entry, so their bytes are written once (into the memtable, then by
    /// the flush straight into blob files), not twice.
    bulk_opts: WriteOptions,
    /// Set after a bulk batch is written, cleared by the flush that makes it durable.
    bulk_unflushed: AtomicBool,
    /// Held across a sync's flush, so a sync that finds nothing left to flush still waits for a
    /// flush another sync has begun.
    syncing: Mutex<()>,
}

impl std::fmt::Debug for RocksBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksBackend")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

/// Memtables of all column families together.
const MEMTABLE_BUDGET: usize = 32 << 20;
/// One memtable of the blocks column family. Memtables are most of the daemon's memory during a
/// large add (an active one filling while others flush, and the allocator keeps their freed
/// space a moment longer): 8 MiB instead of 16 (with 32 MiB instead of 48 in all) lowered the
/// peak of a 1 GiB add from 165–199 MB to 142–175 MB, with the add's speed within its spread.
const BLOCKS_MEMTABLE: usize = 8 << 20;

impl RocksBackend {
    /// Opens (creating when missing) the database at `path`. With `sync_writes`, every batch's WAL
    /// entry is fsynced before `write` returns, so an acknowledged write survives power loss;
    /// without it, it survives a killed process but not a lost machine.
    pub fn open(path: &Path, sync_writes: bool) -> Result<Self> {
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_keep_log_file_num(4);
        db_opts.increase_parallelism(2);
        // One budget for every column family's memtables, so a bulk import cannot grow the
        // daemon's memory past it (RocksDB flushes early instead).
        db_opts.set_db_write_buffer_size(MEMTABLE_BUDGET);
        // Bulk batches skip the WAL and touch several column families (blocks, the usage
        // counter, quarantine): all families must reach disk together, or a crash could keep a
        // batch's blocks without its counter delta.
        db_opts.set_atomic_flush(true);
        // Flushes write each block once more, into a blob file: through the page cache that is
        // a copy into memory nobody reads soon, and on a VM whose freed pages go back to the
        // host, a slow one (a fresh page cache page costs a host fault). Direct writes skip it;
        // reads still go through the page cache.
        db_opts.set_use_direct_io_for_flush_and_compaction(super::direct_io::supported(path));
        db_opts.set_max_open_files(max_open_files(
            rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
        ));

        let descriptors = Cf::ALL.map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(cf)));
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(sync_writes);
        let mut buffered_opts = WriteOptions::default();
        buffered_opts.set_sync(false);
        let mut bulk_opts = WriteOptions::default();
        bulk_opts.disable_wal(true);
        Ok(Self {
            db,
            write_opts,
            buffered_opts,
            bulk_opts,
            bulk_unflushed: AtomicBool::new(false),
            syncing: Mutex::new(()),
        })
    }

    fn handle(&self, cf: Cf) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| Error::Corrupt(format!("column family {} is missing", cf.name())))
    }

    fn apply(&self, batch: Batch, opts: &WriteOptions) -> Result<()> {
        self.db.write_opt(self.write_batch(&batch)?, opts)?;
        Ok(())
    }

    fn write_batch(&self, batch: &Batch) -> Result<WriteBatch> {
        // Sized up front: a batch of blocks grows to megabytes, and growing it by doubling copies
        // every byte again and leaves the allocator the discarded buffers to reclaim.
        let mut wb = WriteBatch::with_capacity_bytes(batch_bytes(batch));
        for op in &batch.ops {
            match op {
                Op::Put(cf, k, v) => wb.put_cf(self.handle(*cf)?, k, v),
                Op::Delete(cf, k) => wb.delete_cf(self.handle(*cf)?, k),
                Op::Add(cf, k, delta) => wb.merge_cf(self.handle(*cf)?, k, encode_counters(*delta)),
            }
        }
        Ok(wb)
    }

    fn iterate<T>(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        mut take: impl FnMut(&[u8], &[u8]) -> T,
    ) -> Result<Vec<T>> {
        let handle = self.handle(cf)?;
        let start = after.unwrap_or(prefix);
        let mode = IteratorMode::From(start, Direction::Forward);
        let mut out = Vec::new();
        for entry in self.db.iterator_cf(handle, mode) {
            let (key, value) = entry?;
            if after.is_some_and(|a| a == &*key) || key.as_ref() < prefix {
                continue;
            }
            if !key.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push(take(&key, &value));
        }
        Ok(out)
    }

    /// Writes every memtable out, all column families at once, and waits for it.
    fn flush_memtables(&self) -> Result<()> {
        let handles = Cf::ALL
            .iter()
            .map(|cf| self.handle(*cf))
            .collect::<Result<Vec<_>>>()?;
        let mut opts = FlushOptions::default();
        opts.set_wait(true);
        self.db.flush_cfs_opt(&handles, &opts)?;
        Ok(())
    }
}

/// Files RocksDB keeps open (tables and blob files) under a descriptor limit of `limit` (None:
/// unlimited). Half of it, so sockets and everything else keep the rest. RocksDB's default keeps
/// every file it has opened, and each memtable flush writes a blob file (about 128 per GiB
/// stored): a store read back widely would run out of descriptors.
fn max_open_files(limit: Option<u64>) -> i32 {
    const FEWEST: u64 = 64;
    const MOST: u64 = 1 << 20;
    let half = limit.map_or(MOST, |limit| limit / 2);
    i32::try_from(half.clamp(FEWEST, MOST)).unwrap_or(i32::MAX)
}

/// About the bytes `batch` takes in a RocksDB write batch: its header, and per entry a tag, the
/// column family, two varint lengths, the key and the value.
fn batch_bytes(batch: &Batch) -> usize {
    const HEADER: usize = 12;
    const PER_ENTRY: usize = 1 + 5 + 5 + 5;
    HEADER
        + batch
            .ops
            .iter()
            .map(|op| {
                PER_ENTRY
                    + match op {
                        Op::Put(_, k, v) => k.len() + v.len(),
                        Op::Delete(_, k) => k.len(),
                        Op::Add(_, k, _) => k.len() + 16,
                    }
            })
            .sum::<usize>()
}

/// RocksDB's merge for [`Op::Add`]: the counters plus every delta. None (a corrupt counter)
/// makes the read fail rather than invent a value.
fn merge_counters(_key: &[u8], existing: Option<&[u8]>, deltas: &MergeOperands) -> Option<Vec<u8>> {
    add_counters(existing, deltas)
}

fn cf_options(cf: Cf) -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::Lz4);
    if cf == Cf::Meta {
        opts.set_merge_operator_associative("cairn_add_counters", merge_counters);
    }
    if cf == Cf::Blocks {
        // A bloom filter answers "not stored" without touching a blob file: the common case when a
        // put checks for duplicates.
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        // Values are separated into blob files only when a memtable is flushed, so each memtable
        // holds whole blocks: small ones keep an import's memory low at the price of more,
        // smaller flushes.
        opts.set_write_buffer_size(BLOCKS_MEMTABLE);
        opts.set_max_write_buffer_number(3);
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(MIN_BLOB_SIZE);
        opts.set_blob_file_size(BLOB_FILE_SIZE);
        // Content is mostly compressed or encrypted already; compressing it again costs CPU for
        // nothing.
        opts.set_blob_compression_type(DBCompressionType::None);
        // Blob GC relocates every live blob of the oldest files whenever a compaction touches
        // them, garbage or not: during an add it rewrote data just written (a growing share of
        // each add's time, measured). Blocks only become garbage in a GC run, which reclaims
        // their space itself (`reclaim`).
        opts.set_enable_blob_gc(false);
    }
    opts
}

impl Backend for RocksBackend {
    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let handle = self.handle(cf)?;
        Ok(self.db.get_pinned_cf(handle, key)?.map(|v| v.to_vec()))
    }

    fn contains(&self, cf: Cf, key: &[u8]) -> Result<bool> {
        let handle = self.handle(cf)?;
        if !self.db.key_may_exist_cf(handle, key) {
            return Ok(false);
        }
        Ok(self.db.get_pinned_cf(handle, key)?.is_some())
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.apply(batch, &self.write_opts)
    }

    fn write_buffered(&self, batch: Batch) -> Result<()> {
        self.apply(batch, &self.buffered_opts)
    }

    fn write_bulk(&self, batch: Batch) -> Result<()> {
        self.apply(batch, &self.bulk_opts)?;
        self.bulk_unflushed.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        let _one_at_a_time = self.syncing.lock();
        // Bulk batches are durable once their memtables are on disk; a flush that began after
        // the flag was cleared covers every bulk batch written before it.
        if self.bulk_unflushed.swap(false, Ordering::SeqCst)
            && let Err(e) = self.flush_memtables()
        {
            self.bulk_unflushed.store(true, Ordering::SeqCst);
            return Err(e);
        }
        // WAL entries are sequential: syncing now makes every earlier buffered batch durable.
        self.db.flush_wal(true)?;
        Ok(())
    }

    fn scan(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.iterate(cf, prefix, after, limit, |k, v| (k.to_vec(), v.to_vec()))
    }

    fn scan_keys(
        &self,
        cf: Cf,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>> {
        self.iterate(cf, prefix, after, limit, |k, _| k.to_vec())
    }

    fn reclaim(&self) -> Result<()> {
        let blocks = self.handle(Cf::Blocks)?;
        // One compaction of the blocks family with blob GC on for every blob file: deleted
        // blocks' keys go, live blobs move to new files, and the old files are removed.
        self.db.set_options_cf(
            blocks,
            &[
                ("enable_blob_garbage_collection", "true"),
                ("blob_garbage_collection_age_cutoff", "1.0"),
            ],
        )?;
        let mut opts = rocksdb::CompactOptions::default();
        opts.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db
            .compact_range_cf_opt(blocks, None::<&[u8]>, None::<&[u8]>, &opts);
        self.db
            .set_options_cf(blocks, &[("enable_blob_garbage_collection", "false")])?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        let _one_at_a_time = self.syncing.lock();
        self.db.flush_wal(true)?;
        let bulk = self.bulk_unflushed.swap(false, Ordering::SeqCst);
        if let Err(e) = self.flush_memtables() {
            self.bulk_unflushed.fetch_or(bulk, Ordering::SeqCst);
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rocksdb_keeps_at_most_half_the_descriptor_limit_open() {
        assert_eq!(max_open_files(Some(1024)), 512);
        assert_eq!(max_open_files(Some(65_536)), 32_768);
        assert_eq!(
            max_open_files(Some(10)),
            64,
            "a tiny limit still leaves RocksDB some"
        );
        assert_eq!(max_open_files(None), 1 << 20);
        assert_eq!(max_open_files(Some(u64::MAX)), 1 << 20);

        // And the store opens with it: RocksDB records its options in the store's directory.
        let dir = tempfile::tempdir().unwrap();
        drop(RocksBackend::open(dir.path(), false).unwrap());
        let expected =
            max_open_files(rustix::process::getrlimit(rustix::process::Resource::Nofile).current);
        let options = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|entry| entry.ok())
            .find(|entry| entry.file_name().to_string_lossy().starts_with("OPTIONS-"))
            .map(|entry| std::fs::read_to_string(entry.path()).unwrap())
            .expect("RocksDB wrote an OPTIONS file");
        assert!(
            options.contains(&format!("max_open_files={expected}\n")),
            "max_open_files={expected} is not among the store's options"
        );
    }

    #[test]
    fn a_write_batch_is_sized_for_everything_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let backend = RocksBackend::open(dir.path(), false).unwrap();
        let mut batch = Batch::default();
        for i in 0..100u32 {
            batch.put_shared(Cf::Blocks, i.to_be_bytes(), vec![7u8; 262_144].into());
            batch.put(
                Cf::Meta,
                [b"m".as_slice(), &i.to_be_bytes()].concat(),
                [1u8; 3],
            );
        }
        batch.delete(Cf::Blocks, *b"gone");
        batch.add(Cf::Meta, *b"usage", [1, 262_144]);
        let wb = backend.write_batch(&batch).unwrap();
        assert_eq!(wb.len(), 202);
        assert!(
            wb.size_in_bytes() <= batch_bytes(&batch),
            "{} bytes written into a batch sized for {}",
            wb.size_in_bytes(),
            batch_bytes(&batch)
        );
        assert!(batch_bytes(&batch) < wb.size_in_bytes() + 202 * 16 + 12);
    }
}
