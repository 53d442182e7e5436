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
//! two windows with no flood measure on the same machine.

#![allow(
    clippy::print_stdout,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_config::Config;
use cairn_p2p::records::{PinIntent, PinRecord};
use cairn_p2p::{NodeIdentity, PeerId};
use cairn_proto::admin;
use cairn_tests::hostile::{Behaviour, HostileMember, HostilePeer, now_ms};
use cairn_tests::{
    TestNode, eventually, hold_locally, join_cluster, sample, scrape, start_cluster,
};
use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};
use tokio_util::sync::CancellationToken;

const MIB: usize = 1 << 20;
/// One honest fetch.
const ROUND_BYTES: usize = 32 * MIB;
/// Distinct DAGs the member cycles through (it drops each after fetching it).
const DAGS: usize = 4;
/// How long the member fetches under each condition.
const WINDOW: Duration = Duration::from_secs(12);
/// How long a flood runs before the member starts measuring, so it is at full strength.
const RAMP: Duration = Duration::from_secs(2);
const SETTLE: Duration = Duration::from_secs(30);
/// How long a flooder's identity keeps dialling before it gives up.
const DIAL_PATIENCE: Duration = Duration::from_secs(2);
/// Kademlia PUTs (provider and pin records) per lane: 4 lanes make 200 a second per identity,
/// a fifth of the server's Kademlia rate, so the per-peer caps are what they meet.
const PUT_PACE: Option<Duration> = Some(Duration::from_millis(20));

/// A flood's own account of itself: what it sent and how the server answered.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    served: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn count(&self, outcome: &AtomicU64) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        outcome.fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self) -> String {
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        format!(
            "sent {}, served {}, refused {}, failed {}",
            get(&self.sent),
            get(&self.served),
            get(&self.refused),
            get(&self.failed)
        )
    }
}

struct Bench {
    server: TestNode,
    member: TestNode,
    dags: Vec<Cid>,
    next: usize,
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
            busy += started.elapsed();
            bytes += report.bytes;
            self.drop_dag(root).await;
        }
        bytes as f64 / MIB as f64 / busy.as_secs_f64()
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

/// The server, as the flooder process is told it (environment variables).
struct Target {
    addr: String,
    block: String,
    url: String,
}

impl Target {
    const VARS: [&'static str; 3] = ["FLOOD_ADDR", "FLOOD_BLOCK", "FLOOD_URL"];

    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).unwrap();
        Self {
            addr: var(Self::VARS[0]),
            block: var(Self::VARS[1]),
            url: var(Self::VARS[2]),
        }
    }

    fn env(&self) -> [(&'static str, &str); 3] {
        [
            (Self::VARS[0], &self.addr),
            (Self::VARS[1], &self.block),
            (Self::VARS[2], &self.url),
        ]
    }

    fn server(&self) -> PeerId {
        self.addr.rsplit('/').next().unwrap().parse().unwrap()
    }

    /// A fresh hostile peer connected to the server, dialling again while the address's
    /// handshake rate refuses it (`None` when the server kept refusing it).
    async fn stranger(&self) -> Option<HostilePeer> {
        let peer = HostilePeer::start(Behaviour::Empty).await.unwrap();
        let addr: cairn_p2p::Multiaddr = self.addr.parse().unwrap();
        let connected = eventually("the server to take the stranger", DIAL_PATIENCE, || {
            let (client, addr) = (peer.client.clone(), addr.clone());
            async move { client.dial(addr).await.is_ok() }
        })
        .await;
        connected.ok().map(|()| peer)
    }

    /// A fresh hostile peer that knows the server as a DHT peer.
    async fn dht_stranger(&self) -> Option<HostilePeer> {
        let peer = self.stranger().await?;
        let server = self.server();
        let known = eventually("the server in the stranger's table", SETTLE, || async {
            peer.client
                .routing_table()
                .await
                .is_ok_and(|t| t.contains(&server))
        })
        .await;
        known.ok().map(|()| peer)
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

/// Runs `task` on every peer, `lanes` at a time, until `stop`; each outcome is counted into
/// `tally`. With `pace`, each lane starts one call per `pace` at most: for calls that return
/// before their work is done (a Kademlia PUT), which would otherwise pile up in the flooder.
fn keep_asking<P, F, Fut>(
    peers: Arc<Vec<P>>,
    lanes: usize,
    pace: Option<Duration>,
    tally: Arc<Tally>,
    stop: CancellationToken,
    task: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    P: Send + Sync + 'static,
    F: Fn(&P, u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    (0..peers.len())
        .flat_map(|index| (0..lanes).map(move |lane| (index, lane)))
        .map(|(index, lane)| {
            let (peers, tally, stop, task) = (
                Arc::clone(&peers),
                Arc::clone(&tally),
                stop.clone(),
                task.clone(),
            );
            tokio::spawn(async move {
                let mut n = (index * 1_000_000 + lane * 10_000) as u64;
                let mut ticks = pace.map(tokio::time::interval);
                while !stop.is_cancelled() {
                    n += 1;
                    if let Some(ticks) = ticks.as_mut() {
                        ticks.tick().await;
                    }
                    let outcome = tokio::select! {
                        () = stop.cancelled() => break,
                        outcome = task(&peers[index], n) => outcome,
                    };
                    let counter = match outcome {
                        Outcome::Served => &tally.served,
                        Outcome::Refused => &tally.refused,
                        Outcome::Failed => &tally.failed,
                    };
                    tally.count(counter);
                    if matches!(outcome, Outcome::Failed) {
                        // Banned or cut off: a real attacker would come back as someone new;
                        // here, asking again at once would only spin.
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(50)) => {}
                        }
                    }
                }
            })
        })
        .collect()
}

enum Outcome {
    Served,
    Refused,
    Failed,
}

fn raw_cid(n: u64) -> Cid {
    Cid::new_v1(0x55, Code::Sha2_256.digest(&n.to_le_bytes()))
}

/// A running flood: its tasks, and what must stay open while they run.
#[derive(Default)]
struct Flood {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _peers: Arc<Vec<HostilePeer>>,
    _sockets: Vec<tokio::net::TcpStream>,
}

impl Flood {
    fn of(tasks: Vec<tokio::task::JoinHandle<()>>, peers: Arc<Vec<HostilePeer>>) -> Self {
        Self {
            tasks,
            _peers: peers,
            _sockets: Vec::new(),
        }
    }
}

async fn strangers(target: &Target, n: usize, dht: bool) -> Arc<Vec<HostilePeer>> {
    let mut peers = Vec::new();
    for _ in 0..n {
        let peer = if dht {
            target.dht_stranger().await
        } else {
            target.stranger().await
        };
        peers.extend(peer);
    }
    Arc::new(peers)
}

async fn start_flood(
    target: &Target,
    name: &str,
    tally: Arc<Tally>,
    stop: CancellationToken,
) -> Flood {
    let server = target.server();
    let block: Cid = target.block.parse().unwrap();
    match name {
        // Sixteen identities each asking for blocks as fast as answers come back.
        "block requests, 16 identities" => {
            let peers = strangers(target, 16, false).await;
            let tasks = keep_asking(Arc::clone(&peers), 8, None, tally, stop, move |p, _| {
                let client = p.client.clone();
                async move {
                    match client.request_blocks(server, vec![block]).await {
                        Ok(r) if r.retry_after.is_some() => Outcome::Refused,
                        Ok(r) if !r.blocks.is_empty() => Outcome::Served,
                        _ => Outcome::Failed,
                    }
                }
            });
            Flood::of(tasks, peers)
        }
        // Fresh identities connecting until the server stops taking them, each kept open.
        "connections, 300 identities" => {
            let peers = strangers(target, 300, false).await;
            tally.sent.fetch_add(300, Ordering::Relaxed);
            tally
                .served
                .fetch_add(peers.len() as u64, Ordering::Relaxed);
            tally
                .refused
                .fetch_add(300 - peers.len() as u64, Ordering::Relaxed);
            Flood::of(Vec::new(), peers)
        }
        // TCP connections from another address that never start a handshake.
        "stalled handshakes, 500 sockets" => {
            let port = target
                .addr
                .split('/')
                .nth(4)
                .unwrap()
                .parse::<u16>()
                .unwrap();
            let mut sockets = Vec::new();
            for _ in 0..500 {
                tally.sent.fetch_add(1, Ordering::Relaxed);
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
                match socket.connect(([127, 0, 0, 1], port).into()).await {
                    Ok(stream) => sockets.push(stream),
                    Err(_) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Flood {
                _sockets: sockets,
                ..Flood::default()
            }
        }
        // Kademlia lookups: FIND_NODE and GET_PROVIDERS that Kademlia answers by itself.
        "kademlia lookups, 8 identities" => {
            let peers = strangers(target, 8, true).await;
            let tasks = keep_asking(Arc::clone(&peers), 16, None, tally, stop, |p, n| {
                let client = p.client.clone();
                async move {
                    match client.providers(raw_cid(n)).await {
                        Ok(_) => Outcome::Served,
                        Err(_) => Outcome::Failed,
                    }
                }
            });
            Flood::of(tasks, peers)
        }
        // Provider records for keys nobody holds.
        "provider records, 8 identities at 200/s" => {
            let peers = strangers(target, 8, true).await;
            let tasks = keep_asking(Arc::clone(&peers), 4, PUT_PACE, tally, stop, |p, n| {
                let client = p.client.clone();
                async move {
                    match client.start_providing(raw_cid(n)).await {
                        Ok(()) => Outcome::Served,
                        Err(_) => Outcome::Failed,
                    }
                }
            });
            Flood::of(tasks, peers)
        }
        // Pin records, each signed by a key of its own (no signer quota catches them).
        "pin records from fresh keys, 8 identities at 200/s" => {
            let peers = strangers(target, 8, true).await;
            let tasks = keep_asking(Arc::clone(&peers), 4, PUT_PACE, tally, stop, |p, n| {
                let client = p.client.clone();
                async move {
                    let key = NodeIdentity::generate();
                    let root = raw_cid(n);
                    let intent = PinIntent::Pinned {
                        replication_factor: 1,
                    };
                    let record =
                        PinRecord::sign(&key, root, key.peer_id(), intent, now_ms()).unwrap();
                    let value = HostileMember::claims_value(vec![record]);
                    match client.put_unchecked_pin_claims(root, value).await {
                        Ok(()) => Outcome::Served,
                        Err(_) => Outcome::Failed,
                    }
                }
            });
            Flood::of(tasks, peers)
        }
        // Audits naming eight blocks the server does not hold.
        "audits of absent blocks, 8 identities" => {
            let peers = strangers(target, 8, false).await;
            let tasks = keep_asking(Arc::clone(&peers), 8, None, tally, stop, move |p, n| {
                let client = p.client.clone();
                async move {
                    let absent = (0..8).map(|i| raw_cid(n * 8 + i)).collect();
                    match client.audit(server, block, absent, vec![1; 16]).await {
                        Ok(a) if a.retry_after.is_some() => Outcome::Refused,
                        Ok(_) => Outcome::Served,
                        Err(_) => Outcome::Failed,
                    }
                }
            });
            Flood::of(tasks, peers)
        }
        // Wrong tokens on the admin port, from the operator's own address.
        "admin port, wrong tokens" => {
            let channel = tonic::transport::Channel::from_shared(target.url.clone())
                .unwrap()
                .connect()
                .await
                .unwrap();
            let wrong: tonic::metadata::MetadataValue<_> = "Bearer not-the-token".parse().unwrap();
            let tasks = (0..16)
                .map(|_| {
                    let (channel, wrong, stop, tally) = (
                        channel.clone(),
                        wrong.clone(),
                        stop.clone(),
                        Arc::clone(&tally),
                    );
                    tokio::spawn(async move {
                        let mut guesser = admin::admin_client::AdminClient::with_interceptor(
                            channel,
                            move |mut request: tonic::Request<()>| {
                                request
                                    .metadata_mut()
                                    .insert("authorization", wrong.clone());
                                Ok(request)
                            },
                        );
                        while !stop.is_cancelled() {
                            match guesser.status(admin::StatusRequest {}).await {
                                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                                    tally.count(&tally.refused)
                                }
                                Err(_) => tally.count(&tally.failed),
                                Ok(_) => tally.count(&tally.served),
                            }
                        }
                    })
                })
                .collect();
            Flood::of(tasks, Arc::default())
        }
        CONTROL => Flood::default(),
        other => panic!("no flood named {other}"),
    }
}

/// The server's counters that say how it refused each flood.
fn refusal_series(name: &str) -> &'static [&'static str] {
    match name {
        "block requests, 16 identities" => &[
            "cairn_p2p_dials_refused_total{reason=\"handshakes_per_ip\"}",
            "cairn_p2p_rate_limited_total{limit=\"requests\"}",
            "cairn_p2p_rate_limited_total{limit=\"requests_per_ip\"}",
            "cairn_p2p_rate_limited_total{limit=\"requests_strangers\"}",
        ],
        "connections, 300 identities" => &[
            "cairn_p2p_dials_refused_total{reason=\"connections_per_ip\"}",
            "cairn_p2p_dials_refused_total{reason=\"handshakes_per_ip\"}",
            "cairn_p2p_dials_refused_total{reason=\"connection_limit\"}",
        ],
        "stalled handshakes, 500 sockets" => &[
            "cairn_p2p_dials_refused_total{reason=\"pending_per_ip\"}",
            "cairn_p2p_dials_refused_total{reason=\"handshakes_per_ip\"}",
        ],
        "kademlia lookups, 8 identities" => &[
            "cairn_p2p_rate_limited_total{limit=\"kad_requests\"}",
            "cairn_p2p_bans_total",
        ],
        "provider records, 8 identities at 200/s" => &[
            "cairn_p2p_rate_limited_total{limit=\"queue\"}",
            "cairn_p2p_provider_records_refused_total{reason=\"per_peer\"}",
            "cairn_p2p_bans_total",
        ],
        "pin records from fresh keys, 8 identities at 200/s" => {
            &["cairn_p2p_pin_claims_stored", "cairn_p2p_bans_total"]
        }
        "audits of absent blocks, 8 identities" => &[
            "cairn_p2p_rate_limited_total{limit=\"bytes\"}",
            "cairn_p2p_rate_limited_total{limit=\"requests\"}",
        ],
        "admin port, wrong tokens" => &["cairn_api_failed_auth_limited_total"],
        _ => &[],
    }
}

/// A flooder process that sends nothing: what the member's throughput does between two windows
/// with no flood at all (the machine's drift, the member's store filling with tombstones), to
/// read the other ratios against.
const CONTROL: &str = "nothing (control)";

const FLOODS: &[&str] = &[
    CONTROL,
    "block requests, 16 identities",
    "connections, 300 identities",
    "stalled handshakes, 500 sockets",
    "kademlia lookups, 8 identities",
    "provider records, 8 identities at 200/s",
    "pin records from fresh keys, 8 identities at 200/s",
    "audits of absent blocks, 8 identities",
    "admin port, wrong tokens",
];

/// The flooder process: runs one flood against the target until its stdin closes, then prints
/// its tally on stdout.
async fn flooder(name: &str) {
    let target = Target::from_env();
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    let flood = start_flood(&target, name, Arc::clone(&tally), stop.clone()).await;
    println!("started");
    // The parent closes our stdin to stop us.
    let mut stdin = tokio::io::stdin();
    let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdin, &mut Vec::new()).await;
    stop.cancel();
    for task in flood.tasks {
        let _ = task.await;
    }
    println!("{}", tally.summary());
}

/// Starts the flood `name` in a process of its own (so its memory is not the server's), and
/// returns it once the flood is under way.
async fn spawn_flooder(target: &Target, name: &str) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt;
    // At the lowest priority: on this one machine the flooder's own work would otherwise take
    // the CPU an attacker elsewhere would spend on its own cores, and the ratio would measure
    // the machine, not the node. It still gets every cycle the node leaves idle.
    let mut child = tokio::process::Command::new("nice")
        .args(["-n", "19"])
        .arg(std::env::current_exe().unwrap())
        .env(FLOOD_VAR, name)
        .envs(target.env())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.as_mut().unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .unwrap();
    assert_eq!(line.trim(), "started", "the flooder did not start");
    child
}

/// Stops a flooder and returns its tally.
async fn stop_flooder(mut child: tokio::process::Child) -> String {
    drop(child.stdin.take());
    let out = child.wait_with_output().await.unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

const FLOOD_VAR: &str = "CAIRN_BENCH_FLOOD";

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if let Ok(name) = std::env::var(FLOOD_VAR) {
        return flooder(&name).await;
    }
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    println!(
        "floods: an honest member fetching {} MiB DAGs from a flooded server, {} s per condition",
        ROUND_BYTES / MIB,
        WINDOW.as_secs()
    );
    let mut worst: f64 = f64::INFINITY;
    for &name in FLOODS {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
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
        let honest = if admin {
            bench.operator_rate().await
        } else {
            bench.honest_throughput().await
        };
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
        if name != CONTROL {
            worst = worst.min(ratio);
        }
        let unit = if admin { "status calls/s" } else { "MiB/s" };
        println!(
            "  {name}: honest {honest:.0} {unit} against {baseline:.0} before it and \
             {recovered:.0} after ({ratio:.2}×{}); \
             flood {tally}; cores used by server+member {our_cores_before:.2} → {our_cores:.2}, \
             by the flooder {flooder_cores:.2}; swarm tasks busy (server, member) \
             {:.2}, {:.2} → {:.2}, {:.2}; server+member peak RSS {} MiB (+{})",
            if ratio >= 0.8 {
                ""
            } else {
                ", under the 0.8 goal"
            },
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
}

/// The server's refusal counters for `name`'s flood, now.
async fn refusals(bench: &Bench, name: &str) -> Vec<f64> {
    let mut values = Vec::new();
    for series in refusal_series(name) {
        values.push(bench.metric(series).await);
    }
    values
}
