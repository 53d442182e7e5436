//! The cluster-size curve: clusters of 5, 20 and 50 nodes in this process on loopback. Per size:
//! the time to form, an add with R = 3 until every receipt is in, the repair after a fifth of the
//! nodes stop, and this process's memory per node.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_config::{Config, HumanDuration};
use cairn_tests::{TestNode, eventually, pinned_roots, start_cluster, stop_all};

use crate::{Csv, MIB, rss};

const SIZES: [usize; 3] = [5, 20, 50];
/// Kademlia's bucket size: a node that knows this many peers finds any key's closest ones.
const BUCKET: usize = 20;
/// The file added with R = 3.
const ADD_BYTES: usize = 16 << 20;
/// Files pinned before the fifth of the nodes stop, and their size.
const REPAIRED_FILES: usize = 8;
const REPAIRED_BYTES: usize = 1 << 20;
const FACTOR: usize = 3;
/// How long a holder may be gone before its copies are placed elsewhere.
const REPAIR_GRACE: u64 = 2;
const PATIENCE: Duration = Duration::from_secs(300);

fn config(c: &mut Config) {
    // Every node here stands for a machine of its own, but all share 127.0.0.1: the limits per
    // address and on strangers (no allowlist here) would otherwise meter the cluster's own
    // traffic as one host's, and the 33rd node could not reach the first.
    let limits = &mut c.p2p.limits;
    limits.max_connections_per_ip = limits.max_connections;
    limits.max_pending_per_ip = 256;
    limits.handshakes_per_second_per_ip = 100_000;
    limits.kad_requests_per_second_per_ip = 1_000_000;
    limits.strangers_kad_requests_per_second = 1_000_000;
    limits.requests_per_second_per_ip = 1_000_000;
    limits.strangers_requests_per_second = 1_000_000;
    limits.bytes_per_second_per_ip = cairn_config::Size::mib(64 << 10);
    limits.strangers_bytes_per_second = cairn_config::Size::mib(64 << 10);
    c.replication.factor = FACTOR as u32;
    c.replication.write_quorum = FACTOR as u32;
    c.replication.audit_interval = HumanDuration::secs(1);
    c.replication.repair_grace = HumanDuration::secs(REPAIR_GRACE);
}

/// Adds `data` through `node`'s API with the cluster's factor; returns the root once every
/// receipt is in.
async fn add(node: &TestNode, data: &[u8]) -> String {
    let mut client = node.admin().await.unwrap();
    cairn_tests::add(&mut client, data, 1).await.unwrap().cid
}

/// How many of `nodes` pin each root.
async fn pin_counts(nodes: &[TestNode]) -> anyhow::Result<HashMap<String, usize>> {
    let mut counts = HashMap::new();
    for node in nodes {
        for root in pinned_roots(node).await? {
            *counts.entry(root).or_default() += 1;
        }
    }
    Ok(counts)
}

async fn every_root_has_its_copies(nodes: &[TestNode], roots: &[String]) -> anyhow::Result<bool> {
    let counts = pin_counts(nodes).await?;
    Ok(roots
        .iter()
        .all(|r| counts.get(r).copied().unwrap_or(0) >= FACTOR))
}

struct Row {
    nodes: usize,
    started: Duration,
    formed: Duration,
    add: Duration,
    stopped: usize,
    repair: Duration,
    rss_per_node: f64,
}

async fn measure(n: usize) -> Row {
    let rss_before = rss();
    let started_at = Instant::now();
    let mut nodes = start_cluster(n, |_, c| config(c)).await.unwrap();
    let started = started_at.elapsed();
    let enough = (n - 1).min(BUCKET);
    let said = std::cell::Cell::new(Instant::now());
    eventually("every node to know its peers", PATIENCE, || async {
        let mut smallest = usize::MAX;
        for node in &nodes {
            smallest = smallest.min(node.handle.network().routing_table().await?.len());
        }
        if said.get().elapsed() > Duration::from_secs(10) {
            eprintln!("  {n} nodes: the smallest routing table holds {smallest} of {enough}");
            said.set(Instant::now());
        }
        Ok(smallest >= enough)
    })
    .await
    .unwrap();
    let formed = started_at.elapsed();
    eprintln!("  {n} nodes formed in {:.1} s", formed.as_secs_f64());
    let rss_per_node = rss().saturating_sub(rss_before) as f64 / MIB / n as f64;

    let data = cairn_tests::random_bytes(ADD_BYTES, n as u64);
    let adding = Instant::now();
    add(&nodes[n / 2], &data).await;
    let add_took = adding.elapsed();
    eprintln!("  {n} nodes: added with R = {FACTOR}");

    let mut roots = Vec::new();
    for i in 0..REPAIRED_FILES {
        let data = cairn_tests::random_bytes(REPAIRED_BYTES, (n * 1000 + i) as u64);
        roots.push(add(&nodes[1 + i % (n - 1)], &data).await);
    }
    // The fifth that stops holds copies: the nodes pinning the most of these roots (never the
    // first, which the others bootstrapped from), short of taking every copy of one root, which
    // no factor of 3 survives and no repair brings back.
    let mut held: Vec<(usize, Vec<&String>)> = Vec::new();
    for (index, node) in nodes.iter().enumerate().skip(1) {
        let pins = pin_counts(std::slice::from_ref(node)).await.unwrap();
        held.push((
            index,
            roots.iter().filter(|r| pins.contains_key(*r)).collect(),
        ));
    }
    held.sort_by_key(|(_, roots)| std::cmp::Reverse(roots.len()));
    let mut victims: Vec<usize> = Vec::new();
    for (index, _) in &held {
        if victims.len() == n / 5 {
            break;
        }
        let survives = |root: &String| {
            held.iter()
                .any(|(i, r)| i != index && !victims.contains(i) && r.contains(&root))
        };
        if roots.iter().all(survives) {
            victims.push(*index);
        }
    }
    victims.sort_unstable_by(|a, b| b.cmp(a));
    eprintln!("  {n} nodes: {REPAIRED_FILES} files placed, stopping {victims:?}");
    let stopping = Instant::now();
    let stops = victims.iter().map(|&index| nodes.remove(index).stop());
    for stopped in futures::future::join_all(stops.collect::<Vec<_>>()).await {
        stopped.unwrap();
    }
    eventually("every root back at its factor", PATIENCE, || {
        every_root_has_its_copies(&nodes, &roots)
    })
    .await
    .unwrap();
    let repair = stopping.elapsed();
    stop_all(nodes).await.unwrap();
    Row {
        nodes: n,
        started,
        formed,
        add: add_took,
        stopped: victims.len(),
        repair,
        rss_per_node,
    }
}

/// Set in a child process that measures one cluster size (its value).
pub(crate) const ONE_SIZE_VAR: &str = "CAIRN_BENCH_SCALE_NODES";
const CSV: &str = "cluster.csv";

/// Each size runs in a process of its own, so its memory is its own: an allocator keeps what an
/// earlier cluster freed, which would hide a later one's growth.
pub(crate) async fn run() {
    Csv::create(
        CSV,
        "nodes,start_s,formation_s,add_r3_s,stopped,repair_s,rss_mib_per_node",
    );
    println!(
        "\ncluster size: nodes in one process on loopback (R = 3, repair grace {REPAIR_GRACE} s)"
    );
    println!(
        "| nodes | all started (s) | formed (s) | add {} MiB, R = 3 (s) | stopped | repair, from the stop (s) | memory per node (MiB) |",
        ADD_BYTES >> 20
    );
    println!("|---|---|---|---|---|---|---|");
    for n in SIZES {
        let status = tokio::process::Command::new(std::env::current_exe().unwrap())
            .env(ONE_SIZE_VAR, n.to_string())
            .kill_on_drop(true)
            .status()
            .await
            .unwrap();
        assert!(status.success(), "the {n}-node run failed: {status}");
    }
}

/// One size, in the child process: its row, printed and added to the CSV.
pub(crate) async fn run_one(n: usize) {
    let row = measure(n).await;
    println!(
        "| {} | {:.1} | {:.1} | {:.2} | {} | {:.1} | {:.0} |",
        row.nodes,
        row.started.as_secs_f64(),
        row.formed.as_secs_f64(),
        row.add.as_secs_f64(),
        row.stopped,
        row.repair.as_secs_f64(),
        row.rss_per_node
    );
    Csv::existing(CSV).row(&[
        row.nodes.to_string(),
        format!("{:.2}", row.started.as_secs_f64()),
        format!("{:.2}", row.formed.as_secs_f64()),
        format!("{:.3}", row.add.as_secs_f64()),
        row.stopped.to_string(),
        format!("{:.2}", row.repair.as_secs_f64()),
        format!("{:.1}", row.rss_per_node),
    ]);
}
