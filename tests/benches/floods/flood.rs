//! The flooder side of the floods bench: the floods of the threat model, each run from hostile
//! peers built from our own crates in a process of its own, and how that process is started
//! and stopped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_p2p::records::{PinIntent, PinRecord};
use cairn_p2p::{NodeIdentity, PeerId};
use cairn_proto::admin;
use cairn_tests::eventually;
use cairn_tests::hostile::{Behaviour, HostileMember, HostilePeer, now_ms};
use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};
use tokio_util::sync::CancellationToken;

const SETTLE: Duration = Duration::from_secs(30);
/// How long a flooder's identity keeps dialling before it gives up.
const DIAL_PATIENCE: Duration = Duration::from_secs(2);
/// Kademlia PUTs (provider and pin records) per lane: 4 lanes make 200 a second per identity,
/// a fifth of the per-peer Kademlia rate. Eight identities on one address together pass that
/// address's rate, so these floods end in bans; the store caps per peer and per signer have
/// tests of their own (`p2p/tests/swarm.rs`).
const PUT_PACE: Option<Duration> = Some(Duration::from_millis(20));
/// Provider lookups per identity in the paced lookup flood: 8 identities make about 180 a
/// second, under the 200 the nodes allow one address (`kad_requests_per_second_per_ip`).
const LOOKUP_PACE: Option<Duration> = Some(Duration::from_millis(44));

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

/// The server, as the flooder process is told it (environment variables).
pub(crate) struct Target {
    pub(crate) addr: String,
    pub(crate) block: String,
    pub(crate) url: String,
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
        self.connect(HostilePeer::start(Behaviour::Empty).await.unwrap())
            .await
    }

    async fn connect(&self, peer: HostilePeer) -> Option<HostilePeer> {
        let addr: cairn_p2p::Multiaddr = self.addr.parse().unwrap();
        let connected = eventually("the server to take the stranger", DIAL_PATIENCE, || {
            let (client, addr) = (peer.client.clone(), addr.clone());
            async move { client.dial(addr).await.is_ok() }
        })
        .await;
        connected.ok().map(|()| peer)
    }

    /// A fresh hostile peer that asks the DHT, starting from the server, and answers no one.
    async fn dht_asker(&self) -> Option<HostilePeer> {
        let peer = self
            .connect(HostilePeer::dht_client().await.unwrap())
            .await?;
        self.in_routing_table(peer).await
    }

    async fn in_routing_table(&self, peer: HostilePeer) -> Option<HostilePeer> {
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

/// What a flood's identities are to the DHT. Never servers: an attacker's identities have no
/// reason to answer each other, and as DHT servers on this one machine most of the flooder's work
/// went into its identities' lookups and PUTs among themselves instead of at the nodes.
#[derive(Clone, Copy)]
enum Dht {
    /// Not in it: connected to the server only.
    Out,
    /// Askers only: every lookup and PUT they make lands on the nodes.
    Client,
}

async fn strangers(target: &Target, n: usize, dht: Dht) -> Arc<Vec<HostilePeer>> {
    let mut peers = Vec::new();
    for _ in 0..n {
        let peer = match dht {
            Dht::Out => target.stranger().await,
            Dht::Client => target.dht_asker().await,
        };
        peers.extend(peer);
    }
    Arc::new(peers)
}

/// Provider lookups from `peers` until `stop`, `lanes` per identity. A lookup counts as served
/// only while the identity is still connected to the server: once banned, its queries end at
/// once with nobody asked.
fn lookups(
    peers: Arc<Vec<HostilePeer>>,
    lanes: usize,
    pace: Option<Duration>,
    server: PeerId,
    tally: Arc<Tally>,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    keep_asking(peers, lanes, pace, tally, stop, move |p, n| {
        let client = p.client.clone();
        async move {
            let asked = client.providers(raw_cid(n)).await.is_ok();
            reached(&client, server, asked).await
        }
    })
}

/// How a Kademlia call went, as far as the server goes: an identity no longer connected to it
/// (banned, or cut off) asked nobody, whatever its own Kademlia reports.
async fn reached(client: &cairn_p2p::Client, server: PeerId, ok: bool) -> Outcome {
    match client.peers().await {
        Ok(peers) if ok && peers.iter().any(|p| p.peer_id == server) => Outcome::Served,
        _ => Outcome::Failed,
    }
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
            let peers = strangers(target, 16, Dht::Out).await;
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
            let peers = strangers(target, 300, Dht::Out).await;
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
            let peers = strangers(target, 8, Dht::Client).await;
            let tasks = lookups(Arc::clone(&peers), 16, None, server, tally, stop);
            Flood::of(tasks, peers)
        }
        // The same, paced to stay under the per-address Kademlia rate: not banned, so the nodes
        // answer it for the whole window.
        "kademlia lookups, 8 identities at 180/s" => {
            let peers = strangers(target, 8, Dht::Client).await;
            let tasks = lookups(Arc::clone(&peers), 1, LOOKUP_PACE, server, tally, stop);
            Flood::of(tasks, peers)
        }
        // Provider records for keys nobody holds.
        "provider records, 8 identities at 200/s" => {
            let peers = strangers(target, 8, Dht::Client).await;
            let tasks = keep_asking(Arc::clone(&peers), 4, PUT_PACE, tally, stop, move |p, n| {
                let client = p.client.clone();
                async move {
                    let put = client.start_providing(raw_cid(n)).await.is_ok();
                    reached(&client, server, put).await
                }
            });
            Flood::of(tasks, peers)
        }
        // Pin records, each signed by a key of its own (no signer quota catches them).
        "pin records from fresh keys, 8 identities at 200/s" => {
            let peers = strangers(target, 8, Dht::Client).await;
            let tasks = keep_asking(Arc::clone(&peers), 4, PUT_PACE, tally, stop, move |p, n| {
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
                    let put = client.put_unchecked_pin_claims(root, value).await.is_ok();
                    reached(&client, server, put).await
                }
            });
            Flood::of(tasks, peers)
        }
        // Audits naming eight blocks the server does not hold.
        "audits of absent blocks, 8 identities" => {
            let peers = strangers(target, 8, Dht::Out).await;
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
        BURNER => {
            // Spinning on plain threads: tokio's workers must stay free to answer the parent.
            let threads = std::thread::available_parallelism().map_or(2, usize::from);
            for _ in 0..threads {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.is_cancelled() {
                        for i in 0..100_000u64 {
                            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                        }
                    }
                });
            }
            Flood::default()
        }
        other => panic!("no flood named {other}"),
    }
}

/// The server's counters that say how it refused each flood.
pub(crate) fn refusal_series(name: &str) -> &'static [&'static str] {
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
        "kademlia lookups, 8 identities" | "kademlia lookups, 8 identities at 180/s" => &[
            "cairn_p2p_rate_limited_total{limit=\"kad_requests\"}",
            "cairn_p2p_rate_limited_total{limit=\"kad_requests_per_ip\"}",
            "cairn_p2p_bans_total",
            "cairn_p2p_dials_refused_total{reason=\"banned\"}",
            "cairn_p2p_dials_refused_total{reason=\"handshakes_per_ip\"}",
        ],
        "provider records, 8 identities at 200/s" => &[
            "cairn_p2p_rate_limited_total{limit=\"queue\"}",
            "cairn_p2p_rate_limited_total{limit=\"kad_requests_per_ip\"}",
            "cairn_p2p_provider_records_refused_total{reason=\"per_peer\"}",
            "cairn_p2p_bans_total",
            "cairn_p2p_dials_refused_total{reason=\"banned\"}",
        ],
        "pin records from fresh keys, 8 identities at 200/s" => &[
            "cairn_p2p_pin_claims_stored",
            "cairn_p2p_rate_limited_total{limit=\"kad_requests_per_ip\"}",
            "cairn_p2p_bans_total",
            "cairn_p2p_dials_refused_total{reason=\"banned\"}",
        ],
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
pub(crate) const CONTROL: &str = "nothing (control)";

pub(crate) const FLOODS: &[&str] = &[
    CONTROL,
    BURNER,
    "block requests, 16 identities",
    "connections, 300 identities",
    "stalled handshakes, 500 sockets",
    "kademlia lookups, 8 identities",
    "kademlia lookups, 8 identities at 180/s",
    "provider records, 8 identities at 200/s",
    "pin records from fresh keys, 8 identities at 200/s",
    "audits of absent blocks, 8 identities",
    "admin port, wrong tokens",
];

/// The flooder process: runs one flood against the target until its stdin closes, then prints
/// its tally on stdout.
pub(crate) async fn flooder(name: &str) {
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
pub(crate) async fn spawn_flooder(target: &Target, name: &str) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt;
    // Under SCHED_IDLE: on this one machine the flooder's own work would otherwise take the CPU
    // an attacker elsewhere would spend on its own cores, and the ratio would measure the
    // machine, not the node. It still gets every cycle the node leaves idle, and unlike `nice 19`
    // it yields the moment a node thread wakes, so it cannot add latency to the honest fetch.
    let mut child = tokio::process::Command::new("chrt")
        .args(["--idle", "0"])
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
pub(crate) async fn stop_flooder(mut child: tokio::process::Child) -> String {
    drop(child.stdin.take());
    let out = child.wait_with_output().await.unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) const FLOOD_VAR: &str = "CAIRN_BENCH_FLOOD";

/// A flooder process that sends nothing and spins on every core at its idle priority: how much
/// of a flood's cost is the flooder's own CPU work on this shared machine (caches, memory
/// bandwidth, wake-ups), which an attacker elsewhere would do on cores of its own.
pub(crate) const BURNER: &str = "CPU only, no traffic (control)";
