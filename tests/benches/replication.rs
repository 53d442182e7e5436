//! `make bench`, third part: replication in a five-node loopback cluster (nodes in this process,
//! real swarms and stores). Time to replicate 1 GiB to R = 3 — from the moment the source holds
//! and announces it until every target's signed receipt is in — against the time one node takes
//! to fetch the same amount from the source (the same verified fetch a target runs), measured in
//! the same run. Goal: ≤ 1.5× when the source keeps one of the 3 copies (2 targets fetch); the
//! run also times content placed away from the source (3 targets fetch). The nodes use the
//! daemon's allocator, so they move bytes as the daemon does.

#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use std::time::{Duration, Instant};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use cairn_config::HumanDuration;
use cairn_tests::daemon::cpu_seconds_of;
use cairn_tests::{full_view, hold_locally, start_cluster, stop_all};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;
const SIZE: usize = 1024 * MIB;

/// `len` bytes where no two 256 KiB chunks are alike, made from `seed`.
fn content(len: usize, seed: u64) -> Vec<u8> {
    cairn_tests::random_bytes(len, seed)
}

/// The CPU time this process (every node in it) has used so far.
fn cpu_now() -> f64 {
    cpu_seconds_of(std::process::id()).unwrap_or(0.0)
}

/// The fastest of three SHA-256 passes over `data`, on one core.
fn sha256_time(data: &[u8]) -> Duration {
    (0..3)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(Sha256::digest(data));
            started.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// Content from the first seed at or after `seed` whose root the source is (`inside`) or is not
/// among the 3 nodes closest to, with its root and the next seed to try.
async fn placed_content(
    source: &cairn_tests::TestNode,
    inside: bool,
    mut seed: u64,
) -> (Vec<u8>, cid::Cid, u64) {
    let me = source.handle.network().local_peer_id();
    loop {
        assert!(seed < 64, "no content placed as wanted in 64 tries");
        let data = content(SIZE, seed);
        seed += 1;
        let (data, root) = tokio::task::spawn_blocking(move || {
            let root = root_of(&data);
            (data, root)
        })
        .await
        .unwrap();
        let placement = source.handle.network().placement(root, 3).await.unwrap();
        if placement.contains(&me) == inside {
            return (data, root, seed);
        }
    }
}

/// The root `data` gets as one file with the default import options, from an import into memory.
fn root_of(data: &[u8]) -> cid::Cid {
    use cairn_node::unixfs::{FileImporter, ImportOptions};
    let store = cairn_blockstore::MemBlockstore::new(Default::default());
    let mut importer = FileImporter::new(&store, ImportOptions::default());
    for chunk in data.chunks(1 << 20) {
        importer.write(chunk).unwrap();
    }
    importer.finish().unwrap().root
}

fn mib_per_second(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / MIB as f64 / took.as_secs_f64()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let nodes = start_cluster(5, |_, c| {
        c.replication.factor = 3;
        c.replication.write_quorum = 3;
        // Nothing but the measured transfers: no audits or repairs during the run.
        c.replication.audit_interval = HumanDuration::secs(3600);
        c.replication.repair_grace = HumanDuration::secs(3600);
    })
    .await
    .unwrap();
    full_view(&nodes).await.unwrap();
    let source = &nodes[0];
    println!(
        "replication: five nodes on loopback, {} MiB files …",
        SIZE / MIB
    );

    let first_content = content(SIZE, 1);
    let sha256 = sha256_time(&first_content);
    let first = hold_locally(source, first_content).await.unwrap();
    let reader = &nodes[1];
    let cpu_before = cpu_now();
    let started = Instant::now();
    let fetched =
        cairn_node::fetch::fetch_dag(reader.handle.node_store(), reader.handle.network(), first)
            .await
            .unwrap();
    let transfer = started.elapsed();
    let transfer_cpu = cpu_now() - cpu_before;
    assert!(fetched.bytes >= SIZE as u64, "{fetched:?}");

    println!(
        "| one node-to-node transfer of 1 GiB (verified fetch) | {:.1} s | {:.0} MiB/s | {:.2} x SHA-256 ({:.0} MiB/s on one core) | {:.1} cores |",
        transfer.as_secs_f64(),
        mib_per_second(SIZE, transfer),
        sha256.as_secs_f64() / transfer.as_secs_f64(),
        mib_per_second(SIZE, sha256),
        transfer_cpu / transfer.as_secs_f64()
    );

    // Both placements, each with content chosen for it: the source among the 3 closest (it
    // keeps one of the copies, 2 targets fetch) and outside them (3 targets fetch, so this one
    // machine writes three copies where the transfer wrote one).
    let mut seed = 2;
    for source_holds_one in [true, false] {
        let (data, root, next) = placed_content(source, source_holds_one, seed).await;
        seed = next;
        let held = hold_locally(source, data).await.unwrap();
        assert_eq!(held, root);
        let cpu_before = cpu_now();
        let started = Instant::now();
        let outcome = source
            .handle
            .replicator()
            .replicate(root, 3, 3)
            .await
            .unwrap();
        let replicate = started.elapsed();
        let replicate_cpu = cpu_now() - cpu_before;
        assert!(
            !outcome.under_replicated && outcome.holders.len() >= 3,
            "{outcome:?}"
        );
        let targets = outcome.holders.len() - 1;
        let ratio = replicate.as_secs_f64() / transfer.as_secs_f64();
        let goal = if source_holds_one {
            "goal <= 1.5x"
        } else {
            "3 copies written; no goal"
        };
        println!(
            "| replicate 1 GiB to R = 3, {targets} targets fetching, all receipts in | {:.1} s | {:.0} MiB/s into all targets | {ratio:.2}x one transfer ({goal}) | {:.1} cores |",
            replicate.as_secs_f64(),
            mib_per_second(SIZE * targets, replicate),
            replicate_cpu / replicate.as_secs_f64()
        );
    }
    stop_all(nodes).await.unwrap();
}
