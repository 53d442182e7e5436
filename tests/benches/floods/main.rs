//! `make bench`, fourth part (also `make bench-floods`): what each flood of the threat model costs
//! an honest member. A server node and a cluster member run in this process on loopback (the
//! member is on the server's bootstrap list, as a private cluster's nodes are); the member fetches
//! 32 MiB DAGs from the server over and over, just before each flood, during it and after it (the
//! baseline is the mean of before and after). Each flood runs in a process of its own, from
//! hostile peers built from our own crates, at the lowest CPU priority: on one 2-core machine the
//! flooder's own work would otherwise take cycles an attacker elsewhere spends on its own cores.
//! Printed per flood: the member's throughput against its baseline (goal ≥ 0.8), the flood's size
//! and how the server answered it, the cores used by this process and by the flooder, how busy
//! the two swarm tasks were, the server's refusal counters, and this process's peak resident
//! memory (server and member). For the admin port the honest work is the operator's `status`
//! calls. A control row runs a flooder that sends nothing, so the ratios can be read against what
//! two windows with no flood measure on the same machine; a second one spins on every core at the
//! flooder's priority and sends nothing, for what a flooder's own CPU work costs on this machine.
//! The slowest fetch before and during each flood is printed too: a stall shows there first.
//! Arguments pick floods by part of their names; `RUST_LOG` turns on the nodes' logs.

#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_config::Config;
use cairn_proto::admin;
use cairn_tests::{TestNode, hold_locally, join_cluster, sample, scrape, start_cluster};
use cid::Cid;
use tokio_util::sync::CancellationToken;

mod flood;

use flood::{
    BURNER, CONTROL, FLOOD_VAR, FLOODS, Target, flooder, refusal_series, spawn_flooder,
    stop_flooder,
};

const MIB: usize = 1 << 20;
/// One honest fetch.
const ROUND_BYTES: usize = 32 * MIB;
/// Distinct DAGs the member cycles through (it drops each after fetching it).
const DAGS: usize = 4;
/// How long the member fetches under each condition.
const WINDOW: Duration = Duration::from_secs(12);
/// How long a flood runs before the member starts measuring, so it is at full strength.
const RAMP: Duration = Duration::from_secs(2);
struct Bench {
    server: TestNode,
    member: TestNode,
    dags: Vec<Cid>,
    next: usize,
    /// The slowest fetch since [`Bench::take_slowest`]: a stall (a request waiting out its
    /// timeout) shows here before it shows in a mean.
    slowest: Duration,
}

fn config(c: &mut Config) {
    c.metrics.listen = "127.0.0.1:0".into();
    // Nothing but the measured traffic: no replication rounds during the run.
    c.replication.factor = 1;
    c.replication.write_quorum = 1;
}

impl Bench {
    async fn start() -> Self {
        // The member starts first, so the server has it on its bootstrap list.
        let member = start_cluster(1, |_, c| config(c))
            .await
            .unwrap()
            .pop()
            .unwrap();
        let server = join_cluster(&member, config).await.unwrap();
        let mut dags = Vec::new();
        for seed in 0..DAGS {
            let data = cairn_tests::random_bytes(ROUND_BYTES, 1000 + seed as u64);
            dags.push(hold_locally(&server, data).await.unwrap());
        }
        Self {
            server,
            member,
            dags,
            next: 0,
            slowest: Duration::ZERO,
        }
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = scrape(self.server.handle.metrics_addr().unwrap())
            .await
            .unwrap();
        sample(&text, series).unwrap_or(0.0)
    }

    /// Seconds the server's and the member's swarm tasks have spent working, so far.
    async fn swarm_busy(&self) -> (f64, f64) {
        let busy = |node: &TestNode| {
            let addr = node.handle.metrics_addr().unwrap();
            async move {
                let text = scrape(addr).await.unwrap();
                sample(&text, "cairn_p2p_swarm_busy_seconds_total").unwrap_or(0.0)
            }
        };
        (busy(&self.server).await, busy(&self.member).await)
    }

    /// The member's verified fetch rate from the server over [`WINDOW`], in MiB/s.
    async fn honest_throughput(&mut self) -> f64 {
        let (mut bytes, mut busy) = (0u64, Duration::ZERO);
        let end = Instant::now() + WINDOW;
        while Instant::now() < end {
            let root = self.dags[self.next % DAGS];
            self.next += 1;
            let started = Instant::now();
            let report = cairn_node::fetch::fetch_dag(
                self.member.handle.node_store(),
                self.member.handle.network(),
                root,
            )
            .await
            .unwrap();
            let took = started.elapsed();
            busy += took;
            self.slowest = self.slowest.max(took);
            bytes += report.bytes;
            self.drop_dag(root).await;
        }
        bytes as f64 / MIB as f64 / busy.as_secs_f64()
    }

    fn take_slowest(&mut self) -> Duration {
        std::mem::take(&mut self.slowest)
    }

    /// Removes a fetched DAG from the member, so the next round fetches it whole again.
    async fn drop_dag(&self, root: Cid) {
        let store = Arc::clone(self.member.handle.store());
        tokio::task::spawn_blocking(move || {
            let mut cids = Vec::new();
            store.walk(&root, |cid| cids.push(*cid)).unwrap();
            for cid in cids {
                store.delete(&cid).unwrap();
            }
        })
        .await
        .unwrap();
    }

    /// Operator `status` calls answered per second over [`WINDOW`], asked at 50 a second
    /// (within `admin.requests_per_second`).
    async fn operator_rate(&self) -> f64 {
        let mut operator = self.server.admin().await.unwrap();
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        let (started, mut answered) = (Instant::now(), 0u64);
        while started.elapsed() < WINDOW {
            ticks.tick().await;
            if operator.status(admin::StatusRequest {}).await.is_ok() {
                answered += 1;
            }
        }
        answered as f64 / started.elapsed().as_secs_f64()
    }

    async fn stop(self) {
        cairn_tests::stop_all(vec![self.server, self.member])
            .await
            .unwrap();
    }

    /// What a flooder process needs to know of the server.
    fn target(&self) -> Target {
        Target {
            addr: self.server.p2p_addr(),
            block: self.dags[0].to_string(),
            url: self.server.url(),
        }
    }
}

/// CPU time used over a stretch of wall time, by this process and by a flooder.
struct Cpu {
    started: Instant,
    ours: f64,
    flooder: Option<(u32, f64)>,
    swarms: (f64, f64),
}

impl Cpu {
    async fn start(bench: &Bench, flooder: Option<u32>) -> Self {
        let used = |pid| cairn_tests::daemon::cpu_seconds_of(pid).unwrap_or(0.0);
        Self {
            started: Instant::now(),
            ours: used(std::process::id()),
            flooder: flooder.map(|pid| (pid, used(pid))),
            swarms: bench.swarm_busy().await,
        }
    }

    /// The share of one core the server's and the member's swarm tasks took since `start`.
    async fn swarms(&self, bench: &Bench) -> (f64, f64) {
        let wall = self.started.elapsed().as_secs_f64();
        let (server, member) = bench.swarm_busy().await;
        (
            (server - self.swarms.0) / wall,
            (member - self.swarms.1) / wall,
        )
    }

    /// Cores used on average since `start`: (this process, the flooder).
    fn cores(&self) -> (f64, f64) {
        let used = |pid| cairn_tests::daemon::cpu_seconds_of(pid).unwrap_or(0.0);
        let wall = self.started.elapsed().as_secs_f64();
        let ours = (used(std::process::id()) - self.ours) / wall;
        let flooder = self
            .flooder
            .map_or(0.0, |(pid, at)| (used(pid) - at) / wall);
        (ours, flooder)
    }
}

/// This process's resident memory, sampled until `stop`; returns the peak.
fn watch_rss(stop: CancellationToken) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let pid = std::process::id();
        let mut peak = 0;
        let mut ticks = tokio::time::interval(Duration::from_millis(200));
        while !stop.is_cancelled() {
            ticks.tick().await;
            peak = peak.max(cairn_tests::daemon::rss_of(pid).unwrap_or(0));
        }
        peak
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if let Ok(name) = std::env::var(FLOOD_VAR) {
        return flooder(&name).await;
    }
    // `RUST_LOG=cairn_node=debug,cairn_p2p=debug` shows what the server and member did.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    // Arguments pick floods by part of their names (`floods kademlia records`); none runs all.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    println!(
        "floods: an honest member fetching {} MiB DAGs from a flooded server, {} s per condition",
        ROUND_BYTES / MIB,
        WINDOW.as_secs()
    );
    let mut worst: f64 = f64::INFINITY;
    let mut burner = None;
    for &name in FLOODS {
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        // A fresh server and member for each flood: what one flood leaves behind (banned
        // identities in routing tables, records) must not be charged to the next.
        let mut bench = Bench::start().await;
        let target = bench.target();
        let rss_before = cairn_tests::daemon::rss_of(std::process::id()).unwrap_or(0);
        let admin = name.starts_with("admin");
        // A baseline right before each flood: the machine's pace drifts over a run.
        let cpu = Cpu::start(&bench, None).await;
        let baseline = if admin {
            bench.operator_rate().await
        } else {
            bench.honest_throughput().await
        };
        let (our_cores_before, _) = cpu.cores();
        let swarms_before = cpu.swarms(&bench).await;
        let before = refusals(&bench, name).await;
        let flooder = spawn_flooder(&target, name).await;
        tokio::time::sleep(RAMP).await;
        let stop = CancellationToken::new();
        let rss = watch_rss(stop.clone());
        let cpu = Cpu::start(&bench, flooder.id()).await;
        let baseline_slowest = bench.take_slowest();
        let honest = if admin {
            bench.operator_rate().await
        } else {
            bench.honest_throughput().await
        };
        let flood_slowest = bench.take_slowest();
        let (our_cores, flooder_cores) = cpu.cores();
        let swarms = cpu.swarms(&bench).await;
        stop.cancel();
        let peak = rss.await.unwrap();
        let tally = stop_flooder(flooder).await;
        let after = refusals(&bench, name).await;
        // And once more after it: the ratio is taken against the mean of the two, so a
        // machine (or a store) that drifts over the run is not charged to the flood.
        let recovered = if admin {
            bench.operator_rate().await
        } else {
            bench.honest_throughput().await
        };
        let ratio = honest / ((baseline + recovered) / 2.0);
        if name == BURNER {
            burner = Some(ratio);
        } else if name != CONTROL {
            worst = worst.min(ratio);
        }
        let unit = if admin { "status calls/s" } else { "MiB/s" };
        println!(
            "  {name}: honest {honest:.0} {unit} against {baseline:.0} before it and \
             {recovered:.0} after ({ratio:.2}×{}); slowest fetch {} ms before, {} ms during; \
             flood {tally}; cores used by server+member {our_cores_before:.2} → {our_cores:.2}, \
             by the flooder {flooder_cores:.2}; swarm tasks busy (server, member) \
             {:.2}, {:.2} → {:.2}, {:.2}; server+member peak RSS {} MiB (+{})",
            if ratio >= 0.8 {
                ""
            } else {
                ", under the 0.8 goal"
            },
            baseline_slowest.as_millis(),
            flood_slowest.as_millis(),
            swarms_before.0,
            swarms_before.1,
            swarms.0,
            swarms.1,
            peak >> 20,
            peak.saturating_sub(rss_before) >> 20,
        );
        for ((series, before), after) in refusal_series(name).iter().zip(before).zip(after) {
            println!("      {series}: {before} → {after}");
        }
        bench.stop().await;
    }
    println!("floods: worst honest share {worst:.2}× (goal ≥ 0.8)");
    if let Some(burner) = burner {
        println!(
            "floods: a flooder that only burns CPU at the same priority leaves {burner:.2}× \
             (the share of every drop that is this machine's, not the node's)"
        );
    }
}

/// The server's refusal counters for `name`'s flood, now.
async fn refusals(bench: &Bench, name: &str) -> Vec<f64> {
    let mut values = Vec::new();
    for series in refusal_series(name) {
        values.push(bench.metric(series).await);
    }
    values
}
