//! Acknowledged writes survive `kill -9`: a child process writes blocks and reports each one the
//! store acknowledged; the parent kills it mid-stream, reopens the store and checks every
//! acknowledged block.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn_blockstore::{Block, HashAlg, RAW, RocksBlockstore, StoreOptions};

const CHILD_DIR_ENV: &str = "CAIRN_TEST_DURABILITY_CHILD_DIR";
/// The parent kills the child after this many acknowledgements.
const ACKS_BEFORE_KILL: usize = 150;

fn block(i: u32) -> Block {
    let len = 1 + (i as usize * 7919) % (200 * 1024);
    let data: Vec<u8> = (0..len)
        .map(|j| (j as u32 ^ i.wrapping_mul(2_654_435_761)) as u8)
        .collect();
    Block::build(RAW, HashAlg::Sha2_256, data)
}

/// The child: write until killed, printing `ack N` after each acknowledged put.
fn write_until_killed(dir: &str) {
    let store = RocksBlockstore::open(dir.as_ref(), StoreOptions::default()).unwrap();
    let mut out = std::io::stdout().lock();
    // Bounded: the parent kills it long before this.
    for i in 0..1_000_000u32 {
        store.put(&block(i)).unwrap();
        writeln!(out, "ack {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        write_until_killed(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "acknowledged_writes_survive_kill_9",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::sync_channel::<u32>(1024);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ack ").and_then(|n| n.parse().ok())
                && tx.send(n).is_err()
            {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut acked = Vec::new();
    while acked.len() < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => acked.push(n),
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "child stopped acknowledging after {} writes: {e}",
                    acked.len()
                );
            }
        }
    }
    // SIGKILL: no destructor, no flush, no chance to finish the write in flight.
    child.kill().unwrap();
    child.wait().unwrap();
    // Acknowledgements that were already in the pipe count too.
    reader.join().unwrap();
    acked.extend(rx.try_iter());

    let store = RocksBlockstore::open(dir.path(), StoreOptions::default()).unwrap();
    for &i in &acked {
        let want = block(i);
        assert_eq!(
            store.get(&want.cid).unwrap(),
            want.data,
            "acknowledged block {i} lost"
        );
    }
    // The usage record was written in the same batches, so it matches what is really there.
    let stats = store.stats().unwrap();
    let listed = store.iterate().count() as u64;
    assert_eq!(stats.blocks, listed);
    assert!(listed >= acked.len() as u64);
}
