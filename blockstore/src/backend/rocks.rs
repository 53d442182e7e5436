//! The RocksDB engine. Large values (blocks) go to BlobDB blob files so compaction moves only
//! small keys and pointers; everything else stays in the LSM tree.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Direction,
    IteratorMode, Options, WriteBatch, WriteOptions,
};

use super::{Backend, Batch, Cf, Op};
use crate::error::{Error, Result};

/// Values at least this large leave the LSM tree for blob files.
const MIN_BLOB_SIZE: u64 = 4096;
const BLOB_FILE_SIZE: u64 = 256 << 20;

pub struct RocksBackend {
    db: DB,
    write_opts: WriteOptions,
    buffered_opts: WriteOptions,
}

impl std::fmt::Debug for RocksBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksBackend")
            .field("path", &self.db.path())
            .finish_non_exhaustive()
    }
}

/// Memtables of all column families together.
const MEMTABLE_BUDGET: usize = 48 << 20;
/// One memtable of the blocks column family.
const BLOCKS_MEMTABLE: usize = 16 << 20;

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

        let descriptors = Cf::ALL.map(|cf| ColumnFamilyDescriptor::new(cf.name(), cf_options(cf)));
        let db = DB::open_cf_descriptors(&db_opts, path, descriptors)?;
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(sync_writes);
        let mut buffered_opts = WriteOptions::default();
        buffered_opts.set_sync(false);
        Ok(Self {
            db,
            write_opts,
            buffered_opts,
        })
    }

    fn handle(&self, cf: Cf) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(cf.name())
            .ok_or_else(|| Error::Corrupt(format!("column family {} is missing", cf.name())))
    }

    fn apply(&self, batch: Batch, opts: &WriteOptions) -> Result<()> {
        let mut wb = WriteBatch::default();
        for op in &batch.ops {
            match op {
                Op::Put(cf, k, v) => wb.put_cf(self.handle(*cf)?, k, v),
                Op::Delete(cf, k) => wb.delete_cf(self.handle(*cf)?, k),
            }
        }
        self.db.write_opt(wb, opts)?;
        Ok(())
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
}

fn cf_options(cf: Cf) -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::Lz4);
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
        opts.set_enable_blob_gc(true);
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

    fn sync(&self) -> Result<()> {
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

    fn flush(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        for cf in Cf::ALL {
            self.db.flush_cf(self.handle(cf)?)?;
        }
        Ok(())
    }
}
