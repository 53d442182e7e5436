//! The store-size curve: one verified RocksDB store grown through 10k, 100k and 1M blocks, with
//! put and get rates measured at each size and the space the engine takes for the bytes held.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_blockstore::{Block, HashAlg, RAW, RocksBlockstore, StoreOptions};
use cid::Cid;
use rand::{Rng, SeedableRng};

use crate::{Csv, free_bytes, mib_per_s};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];
const BLOCK_SIZES: [usize; 2] = [1024, 256 * 1024];
/// Bytes of blocks per `put_many` (one synced batch), as the importer writes.
const BATCH_BYTES: usize = 4 << 20;
/// Most blocks in one batch: a batch of small blocks is bounded by their count.
const BATCH_BLOCKS: usize = 1024;
/// Bytes of the timed put and get samples at each size.
const SAMPLE_BYTES: usize = 64 << 20;
/// Fewest blocks in a sample: 1 KiB blocks are timed over more than one batch.
const SAMPLE_BLOCKS: usize = 16 * BATCH_BLOCKS;

/// Block `index` of size `len`: its own bytes, regenerated from the pair.
fn block(len: usize, index: usize) -> Block {
    let data = cairn_tests::random_bytes(len, (len as u64) << 32 | index as u64);
    Block::build(RAW, HashAlg::Sha2_256, data)
}

/// Bytes of every file under `dir`. A file the engine deletes while this counts (an obsolete
/// table after a compaction) counts as gone.
fn disk_usage(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let meta = entry.metadata().ok()?;
            Some(if meta.is_dir() {
                disk_usage(&entry.path())
            } else {
                meta.len()
            })
        })
        .sum()
}

/// One store of `len`-byte blocks, filled in synced batches.
struct Growing {
    store: RocksBlockstore,
    cids: Vec<Cid>,
    len: usize,
}

impl Growing {
    fn batch(&self) -> usize {
        (BATCH_BYTES / self.len).clamp(1, BATCH_BLOCKS)
    }

    /// Puts blocks until the store holds `target`; returns the time `put_many` took (block
    /// generation is not timed).
    fn fill_to(&mut self, target: usize) -> Duration {
        let mut took = Duration::ZERO;
        while self.cids.len() < target {
            let from = self.cids.len();
            let upto = (from + self.batch()).min(target);
            let blocks: Vec<Block> = (from..upto).map(|i| block(self.len, i)).collect();
            let started = Instant::now();
            self.store.put_many(&blocks).unwrap();
            took += started.elapsed();
            self.cids.extend(blocks.iter().map(|b| b.cid));
        }
        took
    }

    /// Verified reads of `count` blocks picked at random among all held.
    fn random_gets(&self, count: usize) -> Duration {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.cids.len() as u64);
        let picks: Vec<Cid> = (0..count)
            .map(|_| self.cids[rng.random_range(0..self.cids.len())])
            .collect();
        let started = Instant::now();
        for cid in &picks {
            assert_eq!(self.store.get(cid).unwrap().len(), self.len);
        }
        started.elapsed()
    }
}

pub(crate) fn run() {
    let csv = Csv::create(
        "store.csv",
        "block_bytes,blocks,put_blocks_per_s,put_mib_per_s,get_blocks_per_s,get_mib_per_s,space_amplification",
    );
    println!("\nstore size: verified put_many (synced) and random verified gets at each size");
    println!(
        "| block | blocks held | put blocks/s | put MiB/s | get blocks/s | get MiB/s | disk / bytes held |"
    );
    println!("|---|---|---|---|---|---|---|");
    for len in BLOCK_SIZES {
        let dir = tempfile::tempdir().unwrap();
        let mut growing = Growing {
            store: RocksBlockstore::open(dir.path(), StoreOptions::default()).unwrap(),
            cids: Vec::new(),
            len,
        };
        let sample = (SAMPLE_BYTES / len).max(SAMPLE_BLOCKS);
        for size in SIZES {
            let needed = (size * len) as u64;
            let free = free_bytes(dir.path());
            if needed > free / 2 {
                println!(
                    "| {} | {size} | skipped: needs {} GiB, {} GiB free | | | | |",
                    label(len),
                    needed >> 30,
                    free >> 30
                );
                continue;
            }
            let sample = sample.min(size / 2);
            growing.fill_to(size - sample);
            let put = growing.fill_to(size);
            let get = growing.random_gets(sample);
            growing.store.flush().unwrap();
            let held = growing.store.stats().unwrap().bytes;
            let amplification = disk_usage(dir.path()) as f64 / held as f64;
            let bytes = (sample * len) as u64;
            let (put_rate, get_rate) = (
                sample as f64 / put.as_secs_f64(),
                sample as f64 / get.as_secs_f64(),
            );
            let (put_mib, get_mib) = (mib_per_s(bytes, put), mib_per_s(bytes, get));
            println!(
                "| {} | {size} | {put_rate:.0} | {put_mib:.0} | {get_rate:.0} | {get_mib:.0} | {amplification:.2} |",
                label(len)
            );
            csv.row(&[
                len.to_string(),
                size.to_string(),
                format!("{put_rate:.0}"),
                format!("{put_mib:.1}"),
                format!("{get_rate:.0}"),
                format!("{get_mib:.1}"),
                format!("{amplification:.3}"),
            ]);
        }
    }
}

fn label(len: usize) -> String {
    if len >= 1024 {
        format!("{} KiB", len / 1024)
    } else {
        format!("{len} B")
    }
}
