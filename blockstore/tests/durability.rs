//! Acknowledged writes survive `kill -9`: a child process writes blocks and reports each write the
//! store acknowledged; the parent kills it mid-stream, reopens the store and checks every
//! acknowledged block. Two writers: single synced puts, and bulk imports that buffer their batches
//! and acknowledge after one sync.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_blockstore::{Block, HashAlg, RAW, RocksBlockstore, StoreOptions, VerifiedBlock};

/// Set in the child: the store folder it writes to.
const CHILD_DIR_ENV: &str = "CAIRN_TEST_DURABILITY_CHILD_DIR";
/// Blocks in one bulk-import group.
const GROUP: u32 = 4;
/// Groups made durable by one sync.
const GROUPS_PER_SYNC: u32 = 3;

fn block(i: u32) -> Block {
    let len = 1 + (i as usize * 7919) % (200 * 1024);
    Block::build(
        RAW,
        HashAlg::Sha2_256,
        cairn_tests::random_bytes(len, u64::from(i)),
    )
}

fn group(g: u32) -> Vec<Block> {
    (g * GROUP..(g + 1) * GROUP).map(block).collect()
}

/// Runs the test named `test` as a child writing into a fresh folder, reads its `ack N` lines,
/// kills it with SIGKILL after `acks` of them (and, when `at_unsynced`, at the first `unsynced`
/// line after those: a moment the child has written what no sync has made durable yet), and
/// returns the folder and every N acknowledged.
fn kill_writer_after(test: &str, acks: usize, at_unsynced: bool) -> (tempfile::TempDir, Vec<u32>) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Some(n): `ack n`; None: `unsynced`.
    let (tx, rx) = mpsc::sync_channel::<Option<u32>>(1024);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let seen = if line == "unsynced" {
                None
            } else if let Some(n) = line.strip_prefix("ack ").and_then(|n| n.parse().ok()) {
                Some(n)
            } else {
                continue;
            };
            if tx.send(seen).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Some(n)) => acked.push(n),
            Ok(None) if acked.len() >= acks => break,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "child stopped acknowledging after {} writes: {e}",
                    acked.len()
                );
            }
        }
        if acked.len() >= acks && !at_unsynced {
            break;
        }
    }
    // SIGKILL: no destructor, no flush, no chance to finish the write in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    // Acknowledgements already in the pipe count too.
    acked.extend(rx.try_iter().flatten());
    (dir, acked)
}

fn ack(out: &mut impl Write, n: u32) {
    writeln!(out, "ack {n}").unwrap();
    out.flush().unwrap();
}

/// After group `g` was written: every `GROUPS_PER_SYNC` groups, one sync and their acks; between
/// syncs, `unsynced` (written, not yet durable).
fn end_group(store: &RocksBlockstore, out: &mut impl Write, g: u32) {
    if g % GROUPS_PER_SYNC == GROUPS_PER_SYNC - 1 {
        store.sync().unwrap();
        for done in g + 1 - GROUPS_PER_SYNC..=g {
            ack(out, done);
        }
    } else {
        writeln!(out, "unsynced").unwrap();
        out.flush().unwrap();
    }
}

/// Checks the reopened store: every acknowledged block is there and intact, and the usage record
/// (written in the same batches) matches what is really stored.
fn check_after_kill(dir: &tempfile::TempDir, blocks: impl Iterator<Item = Block>) {
    let store = RocksBlockstore::open(dir.path(), StoreOptions::default()).unwrap();
    let mut checked = 0u64;
    for want in blocks {
        assert_eq!(
            store.get(&want.cid).unwrap(),
            want.data,
            "acknowledged block lost"
        );
        checked += 1;
    }
    let stats = store.stats().unwrap();
    let mut listed = 0u64;
    let mut bytes = 0u64;
    for mh in store.iterate() {
        let cid = cairn_blockstore::raw_cid(mh.unwrap());
        bytes += store.get(&cid).unwrap().len() as u64;
        listed += 1;
    }
    assert_eq!(
        (stats.blocks, stats.bytes),
        (listed, bytes),
        "the usage record does not match what is stored"
    );
    assert!(listed >= checked);
}

#[test]
fn acknowledged_puts_survive_kill_9() {
    const TEST: &str = "acknowledged_puts_survive_kill_9";
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let store = RocksBlockstore::open(dir.as_ref(), StoreOptions::default()).unwrap();
        let mut out = std::io::stdout().lock();
        // Bounded: the parent kills it long before this.
        for i in 0..1_000_000u32 {
            store.put(&block(i)).unwrap();
            ack(&mut out, i);
        }
        return;
    }
    let (dir, acked) = kill_writer_after(TEST, 150, false);
    check_after_kill(&dir, acked.into_iter().map(block));
}

#[test]
fn acknowledged_bulk_imports_survive_kill_9() {
    const TEST: &str = "acknowledged_bulk_imports_survive_kill_9";
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let store = RocksBlockstore::open(dir.as_ref(), StoreOptions::default()).unwrap();
        let mut out = std::io::stdout().lock();
        for g in 0..100_000u32 {
            store.put_many_buffered(&group(g)).unwrap();
            end_group(&store, &mut out, g);
        }
        return;
    }
    let (dir, acked) = kill_writer_after(TEST, 60, false);
    check_after_kill(&dir, acked.into_iter().flat_map(group));
}

/// A batch of eight 256 KiB blocks (2 MiB, a bulk write) for group `g`.
fn large_group(g: u32) -> Vec<VerifiedBlock> {
    (0..8u64)
        .map(|i| {
            let seed = 1_000_000 + u64::from(g) * 8 + i;
            VerifiedBlock::build(
                RAW,
                HashAlg::Sha2_256,
                cairn_tests::random_bytes(256 * 1024, seed),
            )
        })
        .collect()
}

#[test]
fn acknowledged_batches_written_without_the_wal_survive_kill_9() {
    const TEST: &str = "acknowledged_batches_written_without_the_wal_survive_kill_9";
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let store = RocksBlockstore::open(dir.as_ref(), StoreOptions::default()).unwrap();
        let mut out = std::io::stdout().lock();
        for g in 0..100_000u32 {
            store.put_verified_buffered(&large_group(g)).unwrap();
            // A synced small write after the bulk batch: its counter change is in the WAL and
            // replays after a crash, whether or not the batch before it survived.
            store.put(&block(g)).unwrap();
            end_group(&store, &mut out, g);
        }
        return;
    }
    let (dir, acked) = kill_writer_after(TEST, 30, true);
    check_after_kill(
        &dir,
        acked.into_iter().flat_map(|g| {
            large_group(g)
                .into_iter()
                .map(VerifiedBlock::into_block)
                .chain([block(g)])
        }),
    );
}

#[test]
fn removing_blocks_written_without_the_wal_keeps_the_usage_record_true_across_kill_9() {
    const TEST: &str =
        "removing_blocks_written_without_the_wal_keeps_the_usage_record_true_across_kill_9";
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let store = RocksBlockstore::open(dir.as_ref(), StoreOptions::default()).unwrap();
        let mut out = std::io::stdout().lock();
        for g in 0..100_000u32 {
            // An import that never finished: its bulk batch is still unsynced when its blocks
            // are removed (as GC or `block rm` would).
            let unfinished = large_group(g);
            store.put_verified_buffered(&unfinished).unwrap();
            for block in &unfinished {
                store.delete(block.cid()).unwrap();
            }
            store.put(&block(g)).unwrap();
            end_group(&store, &mut out, g);
        }
        return;
    }
    let (dir, acked) = kill_writer_after(TEST, 9, true);
    check_after_kill(&dir, acked.into_iter().map(block));
}
