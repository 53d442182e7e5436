//! [`Store`]: verification, quarantine, accounting and the quota, written once over any
//! [`Backend`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cid::Cid;
use multihash::Multihash;
use parking_lot::{Mutex, RwLock};

use crate::backend::{Backend, Batch, Cf, decode_counters, encode_counters};
use crate::block::{Block, VerifiedBlock, check_codec, raw_cid, verify, verify_multihash};
use crate::error::{Error, Result};
use crate::metrics::StoreMetrics;

pub(crate) const USAGE_KEY: &[u8] = b"usage";
const SCHEMA_KEY: &[u8] = b"schema";
const SCHEMA_VERSION: u32 = 1;
/// Meta prefix of the per-block "last verified" time.
pub(crate) const VERIFIED_PREFIX: &[u8] = b"verified/";
/// Batches at least this large are verified on several threads.
const PARALLEL_VERIFY_BYTES: usize = 1 << 20;
/// Entries read per page when walking a column family.
pub(crate) const PAGE: usize = 256;

/// Limits and durability of a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Largest block accepted.
    pub max_block_size: u64,
    /// Hard quota on stored block bytes; 0 means none.
    pub max_bytes: u64,
    /// fsync the WAL before acknowledging a write (RocksDB only).
    pub sync_writes: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_block_size: cairn_config::MAX_BLOCK_SIZE_LIMIT,
            max_bytes: 0,
            sync_writes: true,
        }
    }
}

impl From<&cairn_config::StorageConfig> for StoreOptions {
    fn from(c: &cairn_config::StorageConfig) -> Self {
        Self {
            max_block_size: c.max_block_size.bytes(),
            max_bytes: c.max_bytes.bytes(),
            sync_writes: c.sync_writes,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Durability {
    Now,
    AtNextSync,
}

/// A buffered batch at least this large goes to the engine as a bulk write (no WAL entry, durable
/// at the next sync by a memtable flush): its bytes are written once. Smaller ones keep the WAL,
/// so a small add does not cost a flush of its own.
const BULK_BATCH_BYTES: u64 = 2 << 20;

/// What the store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub blocks: u64,
    pub bytes: u64,
    pub quarantined: u64,
    pub max_bytes: u64,
}

/// Count and size of stored blocks; persisted in the same batch as every change to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub blocks: u64,
    pub bytes: u64,
}

impl Usage {
    pub(crate) fn encode(self) -> Vec<u8> {
        encode_counters([self.blocks, self.bytes])
    }

    fn decode(raw: &[u8]) -> Result<Self> {
        let [blocks, bytes] = decode_counters(raw).ok_or_else(|| {
            Error::Corrupt(format!("usage record is {} bytes, not 16", raw.len()))
        })?;
        Ok(Self { blocks, bytes })
    }

    fn without(self, removed: Usage) -> Usage {
        Usage {
            blocks: self.blocks.saturating_sub(removed.blocks),
            bytes: self.bytes.saturating_sub(removed.bytes),
        }
    }

    /// Writes `self` as a change (added blocks and bytes) to the stored counter.
    fn add_to(self, batch: &mut Batch) {
        batch.add(Cf::Meta, USAGE_KEY, [self.blocks, self.bytes]);
    }

    /// Writes `self` as blocks and bytes taken away from the stored counter.
    fn subtract_from(self, batch: &mut Batch) {
        batch.add(
            Cf::Meta,
            USAGE_KEY,
            [self.blocks.wrapping_neg(), self.bytes.wrapping_neg()],
        );
    }
}

/// A verified block store over a storage engine. Every block is hashed again on the way in and on
/// every read; a block whose bytes do not match is quarantined and never returned.
pub struct Store<B: Backend> {
    pub(crate) backend: B,
    pub(crate) opts: StoreOptions,
    /// Serialises writes that change usage, so the quota check and the counter stay exact.
    pub(crate) usage: Mutex<Usage>,
    /// Shared by adds and pins, exclusive for GC: GC never runs between an add's puts and its pin.
    pub(crate) gc_lock: RwLock<()>,
    pub(crate) metrics: Arc<StoreMetrics>,
    /// Bytes removed since the engine last gave deleted space back.
    removed_since_reclaim: std::sync::atomic::AtomicU64,
    /// This store among the process's (see [`crate::Written`]).
    pub(crate) id: u64,
    /// Removals of blocks (GC, delete, quarantine) since opening: a writer's evidence of what it
    /// stored holds only while this stays where it was when the writer began.
    pub(crate) removals: std::sync::atomic::AtomicU64,
}

impl<B: Backend> std::fmt::Debug for Store<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("opts", &self.opts)
            .field("usage", &*self.usage.lock())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Store<B> {
    /// Visits every entry of `cf` under `prefix`, in key order, a page at a time: the key with
    /// the prefix stripped, and the value.
    pub(crate) fn for_each_under(
        &self,
        cf: Cf,
        prefix: &[u8],
        mut visit: impl FnMut(&[u8], Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self.backend.scan(cf, prefix, after.as_deref(), PAGE)?;
            let Some((last, _)) = page.last() else {
                return Ok(());
            };
            after = Some(last.clone());
            for (key, value) in page {
                visit(&key[prefix.len()..], value)?;
            }
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn mh_from_key(key: &[u8]) -> Result<Multihash<64>> {
    Multihash::from_bytes(key).map_err(|e| {
        Error::Corrupt(format!(
            "blocks table holds a key that is not a multihash: {e}"
        ))
    })
}

impl<B: Backend> Store<B> {
    /// Wraps an engine, loading (or on first use, counting) what it holds.
    pub fn with_backend(backend: B, opts: StoreOptions) -> Result<Self> {
        let usage = match backend.get(Cf::Meta, USAGE_KEY)? {
            Some(raw) => Usage::decode(&raw)?,
            None => {
                let usage = count_usage(&backend)?;
                let mut batch = Batch::default();
                batch.put(Cf::Meta, USAGE_KEY, usage.encode());
                batch.put(Cf::Meta, SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes());
                backend.write(batch)?;
                usage
            }
        };
        if let Some(raw) = backend.get(Cf::Meta, SCHEMA_KEY)?
            && raw != SCHEMA_VERSION.to_be_bytes()
        {
            return Err(Error::Corrupt(format!(
                "store schema {raw:?} is not version {SCHEMA_VERSION}; this build cannot read it"
            )));
        }
        Ok(Self::from_parts(backend, opts, usage))
    }

    pub(crate) fn from_parts(backend: B, opts: StoreOptions, usage: Usage) -> Self {
        Self {
            backend,
            opts,
            usage: Mutex::new(usage),
            gc_lock: RwLock::new(()),
            metrics: Arc::new(StoreMetrics::default()),
            removed_since_reclaim: std::sync::atomic::AtomicU64::new(0),
            id: crate::written::next_store_id(),
            removals: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    pub fn metrics(&self) -> Arc<StoreMetrics> {
        Arc::clone(&self.metrics)
    }

    /// The engine underneath, for tools and tests that must see or damage raw state.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn stats(&self) -> Result<StoreStats> {
        let usage = *self.usage.lock();
        let mut quarantined = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let keys = self
                .backend
                .scan_keys(Cf::Quarantine, b"", after.as_deref(), PAGE)?;
            quarantined += keys.len() as u64;
            match keys.into_iter().last() {
                Some(k) => after = Some(k),
                None => break,
            }
        }
        Ok(StoreStats {
            blocks: usage.blocks,
            bytes: usage.bytes,
            quarantined,
            max_bytes: self.opts.max_bytes,
        })
    }

    /// Holds off GC while held. An import takes one across storing its blocks and pinning the root,
    /// so GC cannot collect the blocks in between.
    pub fn gc_guard(&self) -> parking_lot::RwLockReadGuard<'_, ()> {
        self.gc_lock.read_recursive()
    }

    /// Reads a block and checks it. A block that fails the check is quarantined and reported as
    /// [`Error::HashMismatch`]; its bytes are never returned.
    pub fn get(&self, cid: &Cid) -> Result<Bytes> {
        let key = cid.hash().to_bytes();
        let data = self
            .backend
            .get(Cf::Blocks, &key)?
            .ok_or(Error::NotFound(*cid))?;
        match verify(cid, &data) {
            Ok(()) => {
                StoreMetrics::add(&self.metrics.gets, 1);
                StoreMetrics::add(&self.metrics.get_bytes, data.len() as u64);
                Ok(Bytes::from(data))
            }
            Err(err @ Error::HashMismatch { .. }) => {
                self.reject_corrupt(cid, &data)?;
                Err(err)
            }
            Err(other) => Err(other),
        }
    }

    /// Reads and checks several blocks, in order: the batched path for block exchange and
    /// read-ahead. The batch is split over the verification threads, each reading and hashing its
    /// share, so hashing overlaps with reading. Each result is what [`Store::get`] would give.
    pub fn get_many(&self, cids: &[Cid]) -> Result<Vec<Result<Bytes>>> {
        // Blocks are typically 256 KiB chunks; a handful is worth the second core.
        let worth_threads = if cids.len() >= 4 {
            PARALLEL_VERIFY_BYTES
        } else {
            0
        };
        self.par_map(cids, worth_threads, |cid| self.get(cid))
    }

    pub fn has(&self, cid: &Cid) -> Result<bool> {
        self.backend.contains(Cf::Blocks, &cid.hash().to_bytes())
    }

    pub fn put(&self, block: &Block) -> Result<()> {
        self.put_many(std::slice::from_ref(block))
    }

    /// Stores blocks atomically: all are checked first, and either all new ones are written (with
    /// the usage counter, in one batch) or none is. Durable when it returns (with synced writes).
    pub fn put_many(&self, blocks: &[Block]) -> Result<()> {
        self.check_all(blocks)?;
        self.write_blocks(blocks, Durability::Now)
    }

    /// [`Store::put_many`], durable only after the next [`Store::sync`]: for bulk imports, which
    /// acknowledge nothing until their last block is in.
    pub fn put_many_buffered(&self, blocks: &[Block]) -> Result<()> {
        self.check_all(blocks)?;
        self.write_blocks(blocks, Durability::AtNextSync)
    }

    /// [`Store::put_many_buffered`] for blocks whose bytes were hashed to their CIDs already: that
    /// hash is this write's check (size and codec are still checked here). The importer and the
    /// fetch build these, so each byte is hashed once on its way in.
    pub fn put_verified_buffered(&self, blocks: &[VerifiedBlock]) -> Result<()> {
        let blocks: Vec<&Block> = blocks.iter().map(VerifiedBlock::as_block).collect();
        for block in &blocks {
            self.check_size_and_codec(block)?;
        }
        self.write_blocks(blocks, Durability::AtNextSync)
    }

    /// Makes every buffered write durable.
    pub fn sync(&self) -> Result<()> {
        self.backend.sync()
    }

    /// Writes checked blocks that are not stored yet, with the usage change, in one batch.
    fn write_blocks<'a>(
        &self,
        blocks: impl IntoIterator<Item = &'a Block>,
        durability: Durability,
    ) -> Result<()> {
        let mut usage = self.usage.lock();
        let mut seen = HashSet::new();
        let mut batch = Batch::default();
        let mut added = Usage::default();
        for block in blocks {
            let key = block.cid.hash().to_bytes();
            if !seen.insert(key.clone()) || self.backend.contains(Cf::Blocks, &key)? {
                continue;
            }
            added.blocks += 1;
            added.bytes += block.data.len() as u64;
            // A good copy of a quarantined block repairs it.
            batch.delete(Cf::Quarantine, key.clone());
            batch.put_shared(Cf::Blocks, key, block.data.clone());
        }
        if added.blocks == 0 {
            return Ok(());
        }
        let new_bytes = usage.bytes + added.bytes;
        if self.opts.max_bytes != 0 && new_bytes > self.opts.max_bytes {
            StoreMetrics::add(&self.metrics.quota_rejections, 1);
            return Err(Error::QuotaExceeded {
                needed: added.bytes,
                used: usage.bytes,
                max: self.opts.max_bytes,
            });
        }
        added.add_to(&mut batch);
        match durability {
            Durability::Now => self.backend.write(batch)?,
            Durability::AtNextSync if added.bytes >= BULK_BATCH_BYTES => {
                self.backend.write_bulk(batch)?
            }
            Durability::AtNextSync => self.backend.write_buffered(batch)?,
        }
        *usage = Usage {
            blocks: usage.blocks + added.blocks,
            bytes: new_bytes,
        };
        StoreMetrics::add(&self.metrics.puts, added.blocks);
        StoreMetrics::add(&self.metrics.put_bytes, added.bytes);
        Ok(())
    }

    /// Checks every block, on several threads when the batch is large: hashing is the cost of
    /// verified writes, and it parallelises perfectly.
    fn check_all(&self, blocks: &[Block]) -> Result<()> {
        let bytes = blocks.iter().map(|b| b.data.len()).sum();
        self.par_map(blocks, bytes, |b| self.check_block(b))?
            .into_iter()
            .collect()
    }

    /// Maps `f` over `items` in order, spread over the cores when there are `bytes` enough to be
    /// worth it.
    fn par_map<T: Sync, R: Send>(
        &self,
        items: &[T],
        bytes: usize,
        f: impl Fn(&T) -> Result<R> + Sync,
    ) -> Result<Vec<Result<R>>> {
        if bytes < PARALLEL_VERIFY_BYTES {
            return Ok(items.iter().map(f).collect());
        }
        on_every_core(items, f)
    }

    fn check_block(&self, block: &Block) -> Result<()> {
        self.check_size(block)?;
        if let Err(e) = verify(&block.cid, &block.data) {
            if matches!(e, Error::HashMismatch { .. }) {
                StoreMetrics::add(&self.metrics.verification_failures, 1);
            }
            return Err(e);
        }
        check_codec(&block.cid, &block.data)
    }

    fn check_size_and_codec(&self, block: &Block) -> Result<()> {
        self.check_size(block)?;
        check_codec(&block.cid, &block.data)
    }

    fn check_size(&self, block: &Block) -> Result<()> {
        let size = block.data.len();
        if size as u64 > self.opts.max_block_size {
            return Err(Error::BlockTooLarge {
                cid: block.cid,
                size,
                max: self.opts.max_block_size,
            });
        }
        Ok(())
    }

    /// Removes a block whether or not a pin reaches it; returns whether it was there. Pins are the
    /// caller's concern ([`Store::is_reachable`] answers them); GC never removes pinned blocks.
    pub fn delete(&self, cid: &Cid) -> Result<bool> {
        let (removed, _) = self.remove_keys(&[cid.hash().to_bytes()])?;
        Ok(removed == 1)
    }

    /// Deletes blocks by key in one batch, with the usage counter.
    pub(crate) fn remove_keys(&self, keys: &[Vec<u8>]) -> Result<(u64, u64)> {
        if keys.is_empty() {
            return Ok((0, 0));
        }
        // Deletes go through the WAL: a bulk batch they remove must be on disk first, or a crash
        // would replay the deletes' counter change without the batch it undoes.
        self.backend.sync()?;
        let mut usage = self.usage.lock();
        self.note_removal();
        let mut batch = Batch::default();
        let mut removed = Usage::default();
        for key in keys {
            let Some(data) = self.backend.get(Cf::Blocks, key)? else {
                continue;
            };
            removed.blocks += 1;
            removed.bytes += data.len() as u64;
            batch.delete(Cf::Blocks, key.clone());
            batch.delete(Cf::Meta, verified_key(key));
        }
        removed.subtract_from(&mut batch);
        self.backend.write(batch)?;
        *usage = usage.without(removed);
        Ok((removed.blocks, removed.bytes))
    }

    /// Every stored block's multihash, in key order, read page by page.
    pub fn iterate(&self) -> impl Iterator<Item = Result<Multihash<64>>> + '_ {
        KeyPages {
            store: self,
            after: None,
            page: Vec::new().into_iter(),
            done: false,
        }
    }

    /// Counts and quarantines a block whose stored bytes failed verification on read.
    fn reject_corrupt(&self, cid: &Cid, data: &[u8]) -> Result<()> {
        StoreMetrics::add(&self.metrics.verification_failures, 1);
        self.quarantine(&cid.hash().to_bytes(), data)?;
        tracing::warn!(%cid, "block failed verification on read; quarantined");
        Ok(())
    }

    /// Moves a block that failed verification out of the blocks table, unless a good copy replaced
    /// it meanwhile.
    pub(crate) fn quarantine(&self, key: &[u8], bad: &[u8]) -> Result<()> {
        // As in `remove_keys`: the block being moved must not be an unflushed bulk write.
        self.backend.sync()?;
        let mut usage = self.usage.lock();
        match self.backend.get(Cf::Blocks, key)? {
            Some(current) if current == bad => {}
            _ => return Ok(()),
        }
        self.note_removal();
        let removed = Usage {
            blocks: 1,
            bytes: bad.len() as u64,
        };
        let mut record = now_secs().to_be_bytes().to_vec();
        record.extend_from_slice(bad);
        let mut batch = Batch::default();
        batch.delete(Cf::Blocks, key.to_vec());
        batch.delete(Cf::Meta, verified_key(key));
        batch.put(Cf::Quarantine, key.to_vec(), record);
        removed.subtract_from(&mut batch);
        self.backend.write(batch)?;
        *usage = usage.without(removed);
        StoreMetrics::add(&self.metrics.quarantined, 1);
        Ok(())
    }

    /// Multihashes of quarantined blocks (each waits for a good copy from a replica).
    pub fn quarantined(&self) -> Result<Vec<Multihash<64>>> {
        let mut out = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let keys = self
                .backend
                .scan_keys(Cf::Quarantine, b"", after.as_deref(), PAGE)?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            for k in keys {
                out.push(mh_from_key(&k)?);
            }
            after = Some(last);
        }
        Ok(out)
    }

    /// When `cid`'s block was last verified by a scrub, in Unix seconds.
    pub fn last_verified(&self, cid: &Cid) -> Result<Option<u64>> {
        let raw = self
            .backend
            .get(Cf::Meta, &verified_key(&cid.hash().to_bytes()))?;
        Ok(raw.and_then(|r| r.try_into().ok()).map(u64::from_be_bytes))
    }

    /// Counts `removed` bytes as dead on disk; once dead bytes reach a quarter of the live ones,
    /// has the engine give their space back. Reclaiming rewrites the live blocks, so it waits
    /// until that is worth it: the disk holds at most about a quarter more than the blocks.
    pub(crate) fn reclaim_after(&self, removed: u64) -> Result<()> {
        use std::sync::atomic::Ordering;
        let dead = self
            .removed_since_reclaim
            .fetch_add(removed, Ordering::SeqCst)
            + removed;
        let live = self.usage.lock().bytes;
        if dead == 0 || dead < live / 4 {
            return Ok(());
        }
        self.removed_since_reclaim.store(0, Ordering::SeqCst);
        self.backend.reclaim()
    }

    /// Makes every acknowledged write durable and flushes memtables (called at shutdown).
    pub fn flush(&self) -> Result<()> {
        self.backend.flush()
    }

    /// Verifies a stored value against its key without going through a CID (scrub).
    pub(crate) fn verify_stored(&self, key: &[u8], data: &[u8]) -> Result<()> {
        let mh = mh_from_key(key)?;
        verify_multihash(&raw_cid(mh), &mh, data)
    }
}

pub(crate) fn verified_key(block_key: &[u8]) -> Vec<u8> {
    let mut k = VERIFIED_PREFIX.to_vec();
    k.extend_from_slice(block_key);
    k
}

fn count_usage(backend: &impl Backend) -> Result<Usage> {
    let mut usage = Usage::default();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = backend.scan(Cf::Blocks, b"", after.as_deref(), PAGE)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = Some(last.clone());
        for (_, v) in &page {
            usage.blocks += 1;
            usage.bytes += v.len() as u64;
        }
    }
    Ok(usage)
}

struct KeyPages<'a, B: Backend> {
    store: &'a Store<B>,
    after: Option<Vec<u8>>,
    page: std::vec::IntoIter<Vec<u8>>,
    done: bool,
}

impl<B: Backend> Iterator for KeyPages<'_, B> {
    type Item = Result<Multihash<64>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(key) = self.page.next() {
                self.after = Some(key.clone());
                return Some(mh_from_key(&key));
            }
            if self.done {
                return None;
            }
            match self
                .store
                .backend
                .scan_keys(Cf::Blocks, b"", self.after.as_deref(), PAGE)
            {
                Ok(keys) if keys.is_empty() => {
                    self.done = true;
                    return None;
                }
                Ok(keys) => self.page = keys.into_iter(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// `f` over `items` in order, the items split over the machine's cores (at most four): hashing
/// bounds the data path, and it splits perfectly by block.
pub fn on_every_core<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Result<Vec<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get().min(4))
        .min(items.len());
    if threads <= 1 {
        return Ok(items.iter().map(f).collect());
    }
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for worker in workers {
            out.extend(
                worker
                    .join()
                    .map_err(|_| Error::Internal("a worker thread panicked".into()))?,
            );
        }
        Ok(out)
    })
}
