//! `make bench`, third part: replication in a five-node loopback cluster (nodes in this process,
//! real swarms and stores). Time to replicate 1 GiB to R = 3 — from the moment the source holds
//! and announces it until every target's signed receipt is in — against the time one node takes
//! to fetch the same amount from the source (the same verified fetch a target runs), measured in
//! the same run. Goal: ≤ 1.5×.

#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use std::time::{Duration, Instant};

use cairn_config::HumanDuration;
use cairn_tests::{full_view, hold_locally, start_cluster, stop_all};

const MIB: usize = 1 << 20;
const SIZE: usize = 1024 * MIB;

/// `len` bytes where no two 256 KiB chunks are alike, made from `seed`.
fn content(len: usize, seed: u64) -> Vec<u8> {
    cairn_tests::random_bytes(len, seed)
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

    let first = hold_locally(source, content(SIZE, 1)).await.unwrap();
    let reader = &nodes[1];
    let started = Instant::now();
    let fetched =
        cairn_node::fetch::fetch_dag(reader.handle.node_store(), reader.handle.network(), first)
            .await
            .unwrap();
    let transfer = started.elapsed();
    assert!(fetched.bytes >= SIZE as u64, "{fetched:?}");

    let second = hold_locally(source, content(SIZE, 2)).await.unwrap();
    let started = Instant::now();
    let outcome = source
        .handle
        .replicator()
        .replicate(second, 3, 3)
        .await
        .unwrap();
    let replicate = started.elapsed();
    assert!(
        !outcome.under_replicated && outcome.holders.len() >= 3,
        "{outcome:?}"
    );
    let targets = outcome.holders.len() - 1;

    println!(
        "| one node-to-node transfer of 1 GiB (verified fetch) | {:.1} s | {:.0} MiB/s |",
        transfer.as_secs_f64(),
        mib_per_second(SIZE, transfer)
    );
    println!(
        "| replicate 1 GiB to R = 3 ({targets} targets fetching, all receipts in) | {:.1} s | {:.0} MiB/s per copy |",
        replicate.as_secs_f64(),
        mib_per_second(SIZE, replicate)
    );
    println!(
        "replicate / transfer: {:.2}x (goal <= 1.5x)",
        replicate.as_secs_f64() / transfer.as_secs_f64()
    );
    stop_all(nodes).await.unwrap();
}
