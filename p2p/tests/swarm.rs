//! Swarms in one process on 127.0.0.1: admission (allowlist, swarm key, pinned bootstrap
//! identities), block exchange with rate limits and bans, and hostile wire input.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_config::BootstrapPeer;
use cairn_p2p::{
    AuditAnswer, Client, Multiaddr, NetworkEvent, NetworkSettings, NodeIdentity, Offence, PeerId,
    SwarmKey,
};
use cairn_tests::eventually;
use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};
use prometheus_client::registry::Registry;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(20);

fn settings() -> NetworkSettings {
    let mut settings = NetworkSettings::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
    // Many swarms share this machine in one test run: the memory guard is not what is tested.
    settings.max_memory_fraction = 0.99;
    settings.requests_per_second = 1000;
    settings.ban_duration = Duration::from_secs(600);
    settings.inbound_queue = 64;
    // Every peer of a test dials from 127.0.0.1; the handshake rate has a test of its own.
    settings.handshakes_per_second_per_ip = 10_000;
    settings.kad_requests_per_second_per_ip = 100_000;
    settings.strangers_kad_requests_per_second = 100_000;
    settings
}

/// How a test peer answers block requests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answers {
    Honest,
    /// Right CIDs, wrong bytes.
    Lies,
    /// Keeps every block request waiting (a node that has fallen behind).
    Never,
}

struct Peer {
    identity: NodeIdentity,
    client: Client,
    addr: Multiaddr,
    registry: Arc<std::sync::Mutex<Registry>>,
    blocks: Arc<Mutex<HashMap<Cid, Bytes>>>,
    /// The byte allowance of every block request that reached this peer's responder.
    allowances: Arc<std::sync::Mutex<Vec<usize>>>,
    stop: CancellationToken,
}

impl Peer {
    async fn start(settings: NetworkSettings, answers: Answers) -> Self {
        let identity = NodeIdentity::generate();
        let mut registry = Registry::default();
        let (client, mut events, event_loop) =
            cairn_p2p::new(&identity, settings, &mut registry).unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(event_loop.run(stop.clone()));
        let blocks: Arc<Mutex<HashMap<Cid, Bytes>>> = Arc::default();
        let allowances: Arc<std::sync::Mutex<Vec<usize>>> = Arc::default();
        let seen = Arc::clone(&allowances);
        let store = Arc::clone(&blocks);
        let responder = client.clone();
        tokio::spawn(async move {
            // Requests left unanswered stay here, so they wait rather than fail.
            let mut held = Vec::new();
            while let Some(event) = events.recv().await {
                let (id, cids) = match event {
                    NetworkEvent::BlockRequest {
                        id,
                        cids,
                        allowance,
                        ..
                    } => {
                        seen.lock().unwrap().push(allowance);
                        (id, cids)
                    }
                    NetworkEvent::Audit { id, root, .. } => {
                        // Holding is all these peers claim; proofs are the node's business.
                        let holding = store.lock().await.contains_key(&root);
                        let answer = AuditAnswer {
                            holding,
                            ..Default::default()
                        };
                        let _ = responder.respond_audit(id, answer).await;
                        continue;
                    }
                    _ => continue,
                };
                if answers == Answers::Never {
                    held.push(id);
                    continue;
                }
                let store = store.lock().await;
                let (mut found, mut missing) = (Vec::new(), Vec::new());
                for cid in cids {
                    match store.get(&cid) {
                        Some(data) if answers == Answers::Lies => {
                            let mut bad = data.to_vec();
                            bad[0] ^= 0xff;
                            found.push((cid, Bytes::from(bad)));
                        }
                        Some(data) => found.push((cid, data.clone())),
                        None => missing.push(cid),
                    }
                }
                let _ = responder.respond_blocks(id, found, missing).await;
            }
        });
        let addr = client.wait_listening(DEADLINE).await.unwrap()[0].clone();
        Self {
            identity,
            client,
            addr,
            registry: Arc::new(std::sync::Mutex::new(registry)),
            blocks,
            allowances,
            stop,
        }
    }

    fn id(&self) -> PeerId {
        self.client.local_peer_id()
    }

    fn pinned_addr(&self) -> Multiaddr {
        self.addr.clone().with(cairn_p2p_protocol_p2p(self.id()))
    }

    async fn hold(&self, data: &[u8]) -> Cid {
        let cid = Cid::new_v1(0x55, Code::Sha2_256.digest(data));
        self.blocks
            .lock()
            .await
            .insert(cid, Bytes::copy_from_slice(data));
        cid
    }

    fn metric(&self, name: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry.lock().unwrap())
            .unwrap();
        text.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn cairn_p2p_protocol_p2p(peer: PeerId) -> libp2p::multiaddr::Protocol<'static> {
    libp2p::multiaddr::Protocol::P2p(peer)
}

async fn connected(a: &Peer, b: &Peer) -> bool {
    a.client
        .peers()
        .await
        .unwrap()
        .iter()
        .any(|p| p.peer_id == b.id())
}

#[tokio::test]
async fn blocks_move_between_two_peers_and_missing_ones_are_named() {
    let a = Peer::start(settings(), Answers::Honest).await;
    let b = Peer::start(settings(), Answers::Honest).await;
    let held = a.hold(b"hello from a").await;
    let absent = Cid::new_v1(0x55, Code::Sha2_256.digest(b"nobody has this"));
    assert_eq!(b.client.dial(a.pinned_addr()).await.unwrap(), a.id());
    let reply = b
        .client
        .request_blocks(a.id(), vec![held, absent])
        .await
        .unwrap();
    assert_eq!(
        reply.blocks,
        vec![(held, Bytes::from_static(b"hello from a"))]
    );
    assert_eq!(reply.missing, vec![absent]);
    assert_eq!(reply.retry_after, None);
    eventually("the connection to show on both sides", DEADLINE, || async {
        connected(&a, &b).await && connected(&b, &a).await
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn peers_discover_each_other_through_one_bootstrap_peer_and_find_providers() {
    let hub = Peer::start(settings(), Answers::Honest).await;
    let mut leaves = Vec::new();
    for _ in 0..4 {
        let mut s = settings();
        s.bootstrap = vec![BootstrapPeer {
            addr: hub.pinned_addr(),
            peer_id: hub.id(),
        }];
        s.min_bootstrap_peers = 1;
        let leaf = Peer::start(s, Answers::Honest).await;
        leaf.client.wait_bootstrapped(1, DEADLINE).await.unwrap();
        leaves.push(leaf);
    }
    // Every leaf learns every other leaf through the hub's routing table.
    for leaf in &leaves {
        let others: Vec<PeerId> = leaves
            .iter()
            .map(Peer::id)
            .filter(|p| *p != leaf.id())
            .collect();
        eventually(
            "a leaf's routing table to hold the other leaves",
            DEADLINE,
            || async {
                let table = leaf.client.routing_table().await.unwrap();
                others.iter().all(|p| table.contains(p))
            },
        )
        .await
        .unwrap();
    }
    // A provider record published by one leaf is found by another.
    let cid = leaves[0].hold(b"announced").await;
    leaves[0].client.start_providing(cid).await.unwrap();
    let finder = &leaves[3];
    eventually("the provider record to be found", DEADLINE, || async {
        finder
            .client
            .providers(cid)
            .await
            .unwrap()
            .contains(&leaves[0].id())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_peer_off_the_allowlist_cannot_connect_either_way_nor_enter_the_routing_table() {
    let friend = Peer::start(settings(), Answers::Honest).await;
    let stranger = Peer::start(settings(), Answers::Honest).await;
    let mut s = settings();
    s.allowlist = vec![friend.id()];
    let guarded = Peer::start(s, Answers::Honest).await;

    // Outbound: the guarded node refuses to dial the stranger.
    let err = guarded
        .client
        .dial(stranger.pinned_addr())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dialling"), "{err}");
    // Inbound: the stranger's handshake completes, then the connection is dropped.
    let _ = stranger.client.dial(guarded.pinned_addr()).await;
    eventually("the inbound refusal to be counted", DEADLINE, || async {
        guarded.metric("p2p_dials_refused_total{reason=\"not_allowlisted\"}") >= 2.0
    })
    .await
    .unwrap();
    // The friend gets in; the stranger is in no routing table of the guarded node's.
    assert_eq!(
        friend.client.dial(guarded.pinned_addr()).await.unwrap(),
        guarded.id()
    );
    eventually(
        "the friend to enter the guarded routing table",
        DEADLINE,
        || async {
            guarded
                .client
                .routing_table()
                .await
                .unwrap()
                .contains(&friend.id())
        },
    )
    .await
    .unwrap();
    let table = guarded.client.routing_table().await.unwrap();
    assert!(!table.contains(&stranger.id()));
    assert!(!connected(&guarded, &stranger).await);
}

#[tokio::test]
async fn a_different_swarm_key_keeps_a_node_out() {
    let key = SwarmKey::generate().unwrap();
    let other_key = SwarmKey::generate().unwrap();
    let mut s = settings();
    s.swarm_key = Some(key);
    let a = Peer::start(s.clone(), Answers::Honest).await;
    let b = Peer::start(s, Answers::Honest).await;
    let mut s = settings();
    s.swarm_key = Some(other_key);
    let outsider = Peer::start(s, Answers::Honest).await;
    let keyless = Peer::start(settings(), Answers::Honest).await;

    assert_eq!(b.client.dial(a.pinned_addr()).await.unwrap(), a.id());
    // A wrong key garbles the handshake; each of these fails at the handshake timeout at worst.
    let (outsider_in, keyless_in, outsider_out) = tokio::join!(
        outsider.client.dial(a.pinned_addr()),
        keyless.client.dial(a.pinned_addr()),
        a.client.dial(outsider.pinned_addr()),
    );
    assert!(outsider_in.is_err() && keyless_in.is_err() && outsider_out.is_err());
    assert!(!connected(&a, &outsider).await && !connected(&a, &keyless).await);
}

#[tokio::test]
async fn a_swarm_key_file_in_kubo_format_parses_and_garbage_does_not() {
    let key = SwarmKey::generate().unwrap();
    let text = key.to_file_text();
    assert!(
        text.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"),
        "{text}"
    );
    assert_eq!(
        SwarmKey::parse(&text).unwrap().fingerprint(),
        key.fingerprint()
    );
    for bad in [
        "",
        "/key/swarm/psk/1.0.0/\n/base16/\nzz",
        "not a key at all",
    ] {
        let err = SwarmKey::parse(bad).unwrap_err();
        assert!(err.to_string().contains("swarm.key format"), "{err}");
    }
}

#[tokio::test]
async fn a_bootstrap_entry_pinned_to_another_identity_is_refused_and_reported() {
    let real = Peer::start(settings(), Answers::Honest).await;
    let impostor_id = PeerId::random();
    let mut s = settings();
    s.bootstrap = vec![BootstrapPeer {
        addr: real.addr.clone().with(cairn_p2p_protocol_p2p(impostor_id)),
        peer_id: impostor_id,
    }];
    s.min_bootstrap_peers = 1;
    let node = Peer::start(s, Answers::Honest).await;
    let err = node
        .client
        .wait_bootstrapped(1, Duration::from_secs(3))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("only 0 of the 1"), "{err}");
    assert!(err.contains("possible poisoned bootstrap entry"), "{err}");
    assert!(err.contains(&real.id().to_string()), "{err}");
    assert!(node.metric("p2p_dials_refused_total{reason=\"wrong_bootstrap_identity\"}") >= 1.0);
    assert!(!connected(&node, &real).await);
}

#[tokio::test]
async fn a_lying_peer_is_banned_after_its_wrong_blocks_are_reported() {
    let liar = Peer::start(settings(), Answers::Lies).await;
    let node = Peer::start(settings(), Answers::Honest).await;
    let cid = liar.hold(b"the true bytes").await;
    node.client.dial(liar.pinned_addr()).await.unwrap();
    for _ in 0..2 {
        let reply = node
            .client
            .request_blocks(liar.id(), vec![cid])
            .await
            .unwrap();
        let (got, data) = &reply.blocks[0];
        assert_eq!(*got, cid);
        assert_ne!(Code::Sha2_256.digest(data), *cid.hash(), "the liar lied");
        node.client
            .penalise(liar.id(), Offence::BadBlock)
            .await
            .unwrap();
    }
    eventually("the liar to be disconnected", DEADLINE, || async {
        !connected(&node, &liar).await
    })
    .await
    .unwrap();
    assert_eq!(node.metric("p2p_bans_total"), 1.0);
    assert_eq!(node.metric("p2p_bad_blocks_received_total"), 2.0);
    // Banned: it cannot come back. (Its own dial may see the handshake finish before the node
    // drops the connection, so the node's side is what counts.)
    let _ = liar.client.dial(node.pinned_addr()).await;
    eventually("the node to refuse the banned liar", DEADLINE, || async {
        node.metric("p2p_dials_refused_total{reason=\"banned\"}") >= 1.0
    })
    .await
    .unwrap();
    assert!(!connected(&node, &liar).await);
    assert!(node.client.dial(liar.pinned_addr()).await.is_err());
}

#[tokio::test]
async fn a_peer_over_its_request_limit_is_told_to_slow_down_and_others_are_served() {
    let mut s = settings();
    s.requests_per_second = 20;
    let server = Peer::start(s, Answers::Honest).await;
    let cid = server.hold(b"popular").await;
    let flooder = Peer::start(settings(), Answers::Honest).await;
    let honest = Peer::start(settings(), Answers::Honest).await;
    flooder.client.dial(server.pinned_addr()).await.unwrap();
    honest.client.dial(server.pinned_addr()).await.unwrap();

    // The flooder fires 100 requests in two waves of 50 (each wave under the 64 streams a
    // connection may carry): 5× the per-second limit.
    let (mut served, mut slowed) = (0, 0);
    for _ in 0..2 {
        let wave = (0..50).map(|_| flooder.client.request_blocks(server.id(), vec![cid]));
        for reply in futures::future::join_all(wave).await {
            let reply = reply.expect("every request gets an answer");
            match (reply.blocks.is_empty(), reply.retry_after) {
                (false, None) => served += 1,
                (true, Some(_)) => slowed += 1,
                other => panic!("unexpected reply shape {other:?}"),
            }
        }
    }
    // The burst is 20; a few more refill while the 100 are answered.
    assert!(served < 50, "served {served} of 100");
    assert!(slowed > 50, "slowed {slowed} of 100");
    assert!(server.metric("p2p_rate_limited_total{limit=\"requests\"}") >= slowed as f64);
    // The honest peer's own bucket is untouched.
    for _ in 0..10 {
        let reply = honest
            .client
            .request_blocks(server.id(), vec![cid])
            .await
            .unwrap();
        assert_eq!(reply.blocks.len(), 1);
    }
    // Flooding on costs the flooder its score: it is banned.
    eventually("the flooder to be banned", DEADLINE, || async {
        let wave = (0..50).map(|_| flooder.client.request_blocks(server.id(), vec![cid]));
        futures::future::join_all(wave).await;
        server.metric("p2p_bans_total") == 1.0
    })
    .await
    .unwrap();
    assert!(!connected(&server, &flooder).await);
    assert!(connected(&server, &honest).await);
}

#[tokio::test]
async fn a_response_carries_only_what_the_byte_limit_allows_and_then_says_wait() {
    let mut s = settings();
    s.bytes_per_second = 1 << 20;
    let server = Peer::start(s, Answers::Honest).await;
    let mut cids = Vec::new();
    for i in 0..8u8 {
        cids.push(server.hold(&vec![i; 256 * 1024]).await);
    }
    let client = Peer::start(settings(), Answers::Honest).await;
    client.client.dial(server.pinned_addr()).await.unwrap();
    // 2 MiB asked, 1 MiB in the bucket: four blocks come, the rest is neither sent nor missing.
    let first = client
        .client
        .request_blocks(server.id(), cids.clone())
        .await
        .unwrap();
    assert_eq!(first.blocks.len(), 4);
    assert!(first.missing.is_empty() && first.retry_after.is_none());
    // The node was told to read 1 MiB (what the bucket held), not the 2 MiB asked for.
    assert_eq!(*server.allowances.lock().unwrap(), vec![1 << 20]);
    // The bucket is empty: the next request is told to wait, with nothing read for it.
    let second = client
        .client
        .request_blocks(server.id(), cids[4..].to_vec())
        .await
        .unwrap();
    assert!(second.blocks.is_empty());
    let wait = second.retry_after.expect("a wait");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_secs(1),
        "{wait:?}"
    );
    assert_eq!(
        server.allowances.lock().unwrap().len(),
        1,
        "the node saw the second request"
    );
    assert!(server.metric("p2p_rate_limited_total{limit=\"bytes\"}") >= 1.0);
}

#[tokio::test]
async fn requests_beyond_the_inbound_queue_are_told_to_wait_at_once() {
    let mut s = settings();
    s.inbound_queue = 2;
    let server = Peer::start(s, Answers::Never).await;
    let cid = server.hold(b"queued").await;
    let client = Peer::start(settings(), Answers::Honest).await;
    client.client.dial(server.pinned_addr()).await.unwrap();
    // Two requests fill the queue and wait for a node that never answers; the other four are
    // answered "slow down" at once, long before any request timeout.
    let requests = (0..6).map(|_| {
        tokio::time::timeout(
            Duration::from_secs(5),
            client.client.request_blocks(server.id(), vec![cid]),
        )
    });
    let replies = futures::future::join_all(requests).await;
    let waiting = replies.iter().filter(|r| r.is_err()).count();
    let slowed = replies
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .filter(
            |r| matches!(r, Ok(reply) if reply.blocks.is_empty() && reply.retry_after.is_some()),
        )
        .count();
    assert_eq!((waiting, slowed), (2, 4));
    assert!(server.metric("p2p_rate_limited_total{limit=\"queue\"}") >= 4.0);
}

#[tokio::test]
async fn a_block_request_nobody_answers_fails_at_its_timeout() {
    let server = Peer::start(settings(), Answers::Never).await;
    let cid = server.hold(b"never sent").await;
    // The timeout is the client's setting (30 s by default); a short one keeps the test short.
    let timeout = Duration::from_secs(2);
    let mut short = settings();
    short.block_request_timeout = timeout;
    let client = Peer::start(short, Answers::Honest).await;
    client.client.dial(server.pinned_addr()).await.unwrap();
    let started = std::time::Instant::now();
    let outcome = client.client.request_blocks(server.id(), vec![cid]).await;
    let waited = started.elapsed();
    assert!(outcome.is_err(), "{outcome:?}");
    // Not before the timeout, and not long after it.
    assert!(
        waited >= timeout && waited < timeout + Duration::from_secs(5),
        "{waited:?}"
    );
}

#[tokio::test]
async fn an_audit_over_the_request_limit_is_refused_with_a_wait_never_as_not_holding() {
    let mut s = settings();
    s.requests_per_second = 5;
    let server = Peer::start(s, Answers::Honest).await;
    let root = server.hold(b"audited").await;
    let auditor = Peer::start(settings(), Answers::Honest).await;
    auditor.client.dial(server.pinned_addr()).await.unwrap();
    let wave = (0..20).map(|_| {
        auditor
            .client
            .audit(server.id(), root, Vec::new(), vec![1; 16])
    });
    let (mut answered, mut refused) = (0, 0);
    for answer in futures::future::join_all(wave).await {
        let answer = answer.expect("every audit gets an answer");
        match answer.retry_after {
            // An answer the holder gave says it holds the root.
            None => {
                assert!(answer.holding, "{answer:?}");
                answered += 1;
            }
            // A refusal says when to ask again, and says so.
            Some(wait) => {
                assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
                assert!(answer.error.contains("slow down"), "{answer:?}");
                refused += 1;
            }
        }
    }
    assert!((5..20).contains(&answered), "answered {answered} of 20");
    assert_eq!(answered + refused, 20);
}

#[tokio::test]
async fn audits_are_charged_to_the_askers_byte_budget_like_block_requests() {
    // Requests are plentiful, bytes are not: 1 MiB a second buys four audited blocks.
    let mut s = settings();
    s.bytes_per_second = 1 << 20;
    let server = Peer::start(s, Answers::Honest).await;
    let root = server.hold(b"audited").await;
    let auditor = Peer::start(settings(), Answers::Honest).await;
    auditor.client.dial(server.pinned_addr()).await.unwrap();
    // Blocks the server does not even hold cost the same as blocks it does.
    let absent: Vec<Cid> = (0..8u32)
        .map(|i| Cid::new_v1(0x55, Code::Sha2_256.digest(&i.to_le_bytes())))
        .collect();
    let wave = (0..10).map(|_| {
        auditor
            .client
            .audit(server.id(), root, absent.clone(), vec![1; 16])
    });
    let mut refused = 0;
    for answer in futures::future::join_all(wave).await {
        let answer = answer.expect("every audit gets an answer");
        if let Some(wait) = answer.retry_after {
            assert!(wait > Duration::ZERO, "{answer:?}");
            assert!(answer.error.contains("slow down"), "{answer:?}");
            refused += 1;
        }
    }
    // Eight blocks cost 2 MiB, twice the bucket: at most the first gets through.
    assert!(refused >= 9, "refused {refused} of 10");
}

#[tokio::test]
async fn malformed_and_oversize_requests_get_errors_not_panics() {
    let server = Peer::start(settings(), Answers::Honest).await;
    let client = Peer::start(settings(), Answers::Honest).await;
    client.client.dial(server.pinned_addr()).await.unwrap();
    // Too many CIDs in one request.
    let many: Vec<Cid> = (0..65u32)
        .map(|i| Cid::new_v1(0x55, Code::Sha2_256.digest(&i.to_le_bytes())))
        .collect();
    let err = client
        .client
        .request_blocks(server.id(), many)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("65 CIDs in one request"), "{err}");
    // The server still serves afterwards.
    let cid = server.hold(b"still here").await;
    let reply = client
        .client
        .request_blocks(server.id(), vec![cid])
        .await
        .unwrap();
    assert_eq!(reply.blocks.len(), 1);
}

fn quic() -> Multiaddr {
    "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()
}

#[tokio::test]
async fn quic_works_without_a_swarm_key_and_the_allowlist_holds_over_it() {
    let mut s = settings();
    s.listen = vec![quic()];
    let open = Peer::start(s.clone(), Answers::Honest).await;
    assert!(open.addr.to_string().contains("quic-v1"), "{}", open.addr);
    let cid = open.hold(b"over quic").await;
    let client = Peer::start(settings(), Answers::Honest).await;
    assert_eq!(
        client.client.dial(open.pinned_addr()).await.unwrap(),
        open.id()
    );
    let reply = client
        .client
        .request_blocks(open.id(), vec![cid])
        .await
        .unwrap();
    assert_eq!(reply.blocks.len(), 1);

    s.allowlist = vec![client.id()];
    let guarded = Peer::start(s, Answers::Honest).await;
    let stranger = Peer::start(settings(), Answers::Honest).await;
    let _ = stranger.client.dial(guarded.pinned_addr()).await;
    eventually("the QUIC stranger to be refused", DEADLINE, || async {
        guarded.metric("p2p_dials_refused_total{reason=\"not_allowlisted\"}") >= 1.0
    })
    .await
    .unwrap();
    assert!(!connected(&guarded, &stranger).await);
    assert!(
        !guarded
            .client
            .routing_table()
            .await
            .unwrap()
            .contains(&stranger.id())
    );
}

#[tokio::test]
async fn with_a_swarm_key_quic_is_neither_listened_on_nor_dialled() {
    let key = SwarmKey::generate().unwrap();
    let mut s = settings();
    s.swarm_key = Some(key);
    s.listen = vec![quic(), "/ip4/127.0.0.1/tcp/0".parse().unwrap()];
    let keyed = Peer::start(s, Answers::Honest).await;
    assert!(
        keyed
            .client
            .listen_addrs()
            .iter()
            .all(|a| !a.to_string().contains("quic")),
        "{:?}",
        keyed.client.listen_addrs()
    );
    let mut s = settings();
    s.listen = vec![quic()];
    let quic_only = Peer::start(s, Answers::Honest).await;
    let err = keyed
        .client
        .dial(quic_only.pinned_addr())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("dialling"), "{err}");
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_and_the_nodes_own_dials_keep_their_slots() {
    // Four slots, two of them kept for the node's own dials: inbound strangers get two.
    let mut s = settings();
    s.max_connections = 4;
    s.max_connections_per_peer = 1;
    let server = Peer::start(s, Answers::Honest).await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let peer = Peer::start(settings(), Answers::Honest).await;
        clients.push(peer);
    }
    // Both in (a dial can fail on a loaded machine: dial again until it holds).
    eventually("two strangers to be connected", DEADLINE, || async {
        for client in &clients {
            if !connected(&server, client).await {
                let _ = client.client.dial(server.pinned_addr()).await;
            }
        }
        server.client.peers().await.unwrap().len() == 2
    })
    .await
    .unwrap();
    let third = Peer::start(settings(), Answers::Honest).await;
    let _ = third.client.dial(server.pinned_addr()).await;
    clients.push(third);
    eventually("the third connection to be refused", DEADLINE, || async {
        server.metric("p2p_dials_refused_total{reason=\"connection_limit\"}") >= 1.0
    })
    .await
    .unwrap();
    assert_eq!(server.client.peers().await.unwrap().len(), 2);
    // The node still reaches a peer of its own choosing.
    let chosen = Peer::start(settings(), Answers::Honest).await;
    server.client.dial(chosen.pinned_addr()).await.unwrap();
    assert_eq!(server.client.peers().await.unwrap().len(), 3);
}

#[tokio::test]
async fn one_address_gets_its_share_of_connections_and_the_clusters_own_members_get_in_anyway() {
    // A trusted member (on the bootstrap list) and a crowd of fresh identities, all on
    // 127.0.0.1: the crowd shares the address's three connections, the member passes.
    let member = Peer::start(settings(), Answers::Honest).await;
    let mut s = settings();
    s.max_connections_per_ip = 3;
    s.bootstrap = vec![BootstrapPeer {
        addr: member.pinned_addr(),
        peer_id: member.id(),
    }];
    let server = Peer::start(s, Answers::Honest).await;
    eventually(
        "the server to reach its bootstrap member",
        DEADLINE,
        || async { server.client.peers().await.unwrap().len() == 1 },
    )
    .await
    .unwrap();
    let mut crowd = Vec::new();
    for _ in 0..5 {
        let sybil = Peer::start(settings(), Answers::Honest).await;
        let _ = sybil.client.dial(server.pinned_addr()).await;
        crowd.push(sybil);
    }
    eventually(
        "the address's extra connections to be refused",
        DEADLINE,
        || async { server.metric("p2p_dials_refused_total{reason=\"connections_per_ip\"}") >= 3.0 },
    )
    .await
    .unwrap();
    // Three from the address in all: the member's and two of the crowd.
    assert_eq!(server.client.peers().await.unwrap().len(), 3);
    // The member dials in again (a second connection) and is let in over the cap.
    member.client.dial(server.pinned_addr()).await.unwrap();
}

#[tokio::test]
async fn a_sybil_flood_from_one_address_shares_its_budget_and_the_clusters_member_is_served() {
    let member = Peer::start(settings(), Answers::Honest).await;
    let mut s = settings();
    s.requests_per_second_per_ip = 20;
    s.strangers_requests_per_second = 40;
    s.bootstrap = vec![BootstrapPeer {
        addr: member.pinned_addr(),
        peer_id: member.id(),
    }];
    let server = Peer::start(s, Answers::Honest).await;
    let cid = server.hold(b"wanted by everyone").await;
    eventually("the server to reach its member", DEADLINE, || async {
        server.client.peers().await.unwrap().len() == 1
    })
    .await
    .unwrap();
    // Ten fresh identities on the same address, each well within its own per-peer limit, ask 20
    // times each: 200 requests against the address's 20 a second.
    let mut sybils = Vec::new();
    for _ in 0..10 {
        let sybil = Peer::start(settings(), Answers::Honest).await;
        sybil.client.dial(server.pinned_addr()).await.unwrap();
        sybils.push(sybil);
    }
    let flood = sybils
        .iter()
        .flat_map(|sybil| (0..20).map(|_| sybil.client.request_blocks(server.id(), vec![cid])));
    let honest = (0..20).map(|_| member.client.request_blocks(server.id(), vec![cid]));
    let (flooded, served) = futures::future::join(
        futures::future::join_all(flood),
        futures::future::join_all(honest),
    )
    .await;
    let refused = flooded
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.retry_after.is_some()))
        .count();
    assert!(
        refused >= 150,
        "refused {refused} of 200 from the flooding address"
    );
    for reply in served {
        let reply = reply.unwrap();
        assert!(reply.retry_after.is_none(), "the member was told to wait");
        assert_eq!(reply.blocks.len(), 1);
    }
    assert!(server.metric("p2p_rate_limited_total{limit=\"requests_per_ip\"}") >= 150.0);
}

#[tokio::test]
async fn a_peer_that_floods_provider_records_gets_its_share_and_the_nodes_own_are_kept() {
    let mut s = settings();
    s.max_provider_keys_per_peer = 10;
    let server = Peer::start(s, Answers::Honest).await;
    let flooder = Peer::start(settings(), Answers::Honest).await;
    flooder.client.dial(server.pinned_addr()).await.unwrap();
    let knows = |peer: &Peer| {
        let (client, server) = (peer.client.clone(), server.id());
        async move { client.routing_table().await.unwrap().contains(&server) }
    };
    eventually(
        "the flooder to know the server as a DHT peer",
        DEADLINE,
        || knows(&flooder),
    )
    .await
    .unwrap();
    for i in 0..30u32 {
        let cid = Cid::new_v1(0x55, Code::Sha2_256.digest(&i.to_le_bytes()));
        flooder.client.start_providing(cid).await.unwrap();
    }
    eventually("the flood past the cap to be refused", DEADLINE, || async {
        server.metric("p2p_provider_records_refused_total{reason=\"per_peer\"}") >= 20.0
    })
    .await
    .unwrap();
    // Twenty identities announce the key the server holds: the store keeps room for the
    // server's own record, so its announcement is kept and its lookups find it.
    let mut crowd = Vec::new();
    for _ in 0..20 {
        crowd.push(Peer::start(settings(), Answers::Honest).await);
    }
    // The sybils learn of each other through the server, and an announcement goes to the
    // announcer's K closest peers: the key is one the server is closest to, so every sybil's
    // announcement reaches it.
    let everyone: Vec<PeerId> = crowd
        .iter()
        .chain([&server, &flooder])
        .map(Peer::id)
        .collect();
    let mut own = server.hold(b"the server's own 0").await;
    for n in 1u32.. {
        if cairn_p2p::closest(&own, everyone.iter().copied(), 1) == [server.id()] {
            break;
        }
        own = server
            .hold(format!("the server's own {n}").as_bytes())
            .await;
    }
    for sybil in &crowd {
        sybil.client.dial(server.pinned_addr()).await.unwrap();
        eventually(
            "the sybil to know the server as a DHT peer",
            DEADLINE,
            || knows(sybil),
        )
        .await
        .unwrap();
        sybil.client.start_providing(own).await.unwrap();
    }
    eventually(
        "the key's last slot to be kept for the server",
        DEADLINE,
        || async { server.metric("p2p_provider_records_refused_total{reason=\"per_key\"}") >= 1.0 },
    )
    .await
    .unwrap();
    server.client.start_providing(own).await.unwrap();
    let found = server.client.providers(own).await.unwrap();
    assert!(found.contains(&server.id()), "{found:?}");
}

#[tokio::test]
async fn a_kademlia_flood_costs_the_flooder_its_connection_and_the_clusters_member_is_not_counted()
{
    // Kademlia answers lookups by itself; the guard counts them per peer. A member (bootstrap
    // list) asks as much as the stranger and is neither counted nor penalised.
    let member = Peer::start(settings(), Answers::Honest).await;
    let mut s = settings();
    s.kad_requests_per_second = 20;
    s.bootstrap = vec![BootstrapPeer {
        addr: member.pinned_addr(),
        peer_id: member.id(),
    }];
    let server = Peer::start(s, Answers::Honest).await;
    let flooder = dht_neighbour_of(&server).await;
    eventually("the member to know the server", DEADLINE, || async {
        member
            .client
            .routing_table()
            .await
            .unwrap()
            .contains(&server.id())
    })
    .await
    .unwrap();
    // Lookups for keys nobody provides: each one is a GET_PROVIDERS the server answers alone.
    let lookups = |peer: &Peer, from: u32| {
        let client = peer.client.clone();
        futures::future::join_all((from..from + 150).map(move |i| {
            let client = client.clone();
            async move { client.providers(raw_cid(i)).await }
        }))
    };
    let (_, _) = futures::future::join(lookups(&flooder, 0), lookups(&member, 10_000)).await;
    eventually("the flooder to be cut off", DEADLINE, || async {
        !connected(&server, &flooder).await
    })
    .await
    .unwrap();
    assert!(server.metric("p2p_rate_limited_total{limit=\"kad_requests\"}") >= 100.0);
    assert!(server.metric("p2p_bans_total") >= 1.0);
    // The member asked as much, and is still connected and served.
    assert!(connected(&server, &member).await);
    let cid = server.hold(b"still served").await;
    let reply = member
        .client
        .request_blocks(server.id(), vec![cid])
        .await
        .unwrap();
    assert_eq!(reply.blocks.len(), 1);
}

#[tokio::test]
async fn kademlia_lookups_from_many_identities_on_one_address_share_its_budget() {
    // Ten identities on 127.0.0.1, each far under the per-peer rate, together over the
    // address's: each is penalised past the shared budget until banned; the member is not.
    let member = Peer::start(settings(), Answers::Honest).await;
    let mut s = settings();
    s.kad_requests_per_second_per_ip = 20;
    s.bootstrap = vec![BootstrapPeer {
        addr: member.pinned_addr(),
        peer_id: member.id(),
    }];
    let server = Peer::start(s, Answers::Honest).await;
    let mut crowd = Vec::new();
    for _ in 0..10 {
        crowd.push(dht_neighbour_of(&server).await);
    }
    let lookups = crowd.iter().enumerate().flat_map(|(n, peer)| {
        (0..150u32).map(move |i| peer.client.providers(raw_cid(n as u32 * 1000 + i)))
    });
    let _ = futures::future::join_all(lookups).await;
    eventually("the crowd to be banned", DEADLINE, || async {
        server.metric("p2p_bans_total") >= 1.0
    })
    .await
    .unwrap();
    assert!(server.metric("p2p_rate_limited_total{limit=\"kad_requests_per_ip\"}") >= 100.0);
    assert_eq!(
        server.metric("p2p_rate_limited_total{limit=\"kad_requests\"}"),
        0.0,
        "no identity went over its own rate"
    );
    assert!(connected(&server, &member).await);
}

/// Puts `key`'s own pinned record for `root` into the DHT through `peer`, unjudged there.
async fn put_own_pin(peer: &Peer, key: &NodeIdentity, root: Cid) {
    use cairn_p2p::records::{PinIntent, PinRecord};
    let version = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let intent = PinIntent::Pinned {
        replication_factor: 1,
    };
    let record = PinRecord::sign(key, root, key.peer_id(), intent, version).unwrap();
    let mut claims = cairn_p2p::claims::PinClaims::new(root);
    claims.take(record, peer.client.record_gate()).unwrap();
    peer.client
        .put_unchecked_pin_claims(root, claims.encode())
        .await
        .unwrap();
}

fn raw_cid(i: u32) -> Cid {
    Cid::new_v1(0x55, Code::Sha2_256.digest(&i.to_le_bytes()))
}

/// A fresh peer connected to `server` and knowing it as a DHT peer.
async fn dht_neighbour_of(server: &Peer) -> Peer {
    let peer = Peer::start(settings(), Answers::Honest).await;
    peer.client.dial(server.pinned_addr()).await.unwrap();
    eventually("the server to be a DHT peer", DEADLINE, || async {
        peer.client
            .routing_table()
            .await
            .unwrap()
            .contains(&server.id())
    })
    .await
    .unwrap();
    peer
}

#[tokio::test]
async fn self_signed_pin_records_are_kept_only_up_to_the_signers_quota_of_roots() {
    let mut s = settings();
    s.max_roots_per_signer = 5;
    let server = Peer::start(s, Answers::Honest).await;
    let flooder = dht_neighbour_of(&server).await;
    // Twelve roots pinned by one key of its own: records every node would take on their own.
    let key = NodeIdentity::generate();
    for i in 0..12 {
        put_own_pin(&flooder, &key, raw_cid(i)).await;
    }
    eventually(
        "the signer's records past its quota to be refused",
        DEADLINE,
        || async {
            server.metric("p2p_pin_records_refused_total{reason=\"signer_over_quota\"}") >= 7.0
        },
    )
    .await
    .unwrap();
    // Another signer's record is still taken.
    let other = NodeIdentity::generate();
    let root = raw_cid(1000);
    put_own_pin(&flooder, &other, root).await;
    eventually("the other signer's record to be kept", DEADLINE, || async {
        server
            .client
            .get_pin_claims(root)
            .await
            .unwrap()
            .is_some_and(|c| c.slot(&other.peer_id()).is_some())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn claims_from_fresh_keys_get_half_the_store_and_the_clusters_own_are_kept() {
    // Every record signed by a key of its own: the per-signer quota never sees the same signer
    // twice. Strangers' roots get their share of the store (five here), the members' are kept.
    let member = Peer::start(settings(), Answers::Honest).await;
    let mut s = settings();
    s.max_stranger_roots = 5;
    s.bootstrap = vec![BootstrapPeer {
        addr: member.pinned_addr(),
        peer_id: member.id(),
    }];
    let server = Peer::start(s, Answers::Honest).await;
    let flooder = dht_neighbour_of(&server).await;
    for i in 0..12 {
        put_own_pin(&flooder, &NodeIdentity::generate(), raw_cid(i)).await;
    }
    eventually(
        "strangers' roots past their share to be refused",
        DEADLINE,
        || async {
            server.metric("p2p_pin_records_refused_total{reason=\"strangers_share_full\"}") >= 7.0
        },
    )
    .await
    .unwrap();
    assert_eq!(server.metric("p2p_pin_claims_stored"), 5.0);
    // A member's claims for a new root are still kept, even offered through the flooder.
    let root = raw_cid(1000);
    put_own_pin(&flooder, &member.identity, root).await;
    eventually("the member's claims to be kept", DEADLINE, || async {
        server.metric("p2p_pin_claims_stored") == 6.0
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pin_claims_nobody_puts_again_drain_from_the_store_and_free_the_signers_quota() {
    let mut s = settings();
    s.record_ttl = Duration::from_secs(3);
    s.max_roots_per_signer = 5;
    let server = Peer::start(s, Answers::Honest).await;
    let stored = || server.metric("p2p_pin_claims_stored");
    let key = NodeIdentity::generate();
    let flooder = dht_neighbour_of(&server).await;
    for i in 0..5 {
        put_own_pin(&flooder, &key, raw_cid(i)).await;
    }
    eventually("the server to keep the claims", DEADLINE, || async {
        stored() >= 5.0
    })
    .await
    .unwrap();
    // Nobody puts them again: once the putter is gone they drain.
    drop(flooder);
    eventually("the claims to drain", DEADLINE, || async {
        stored() == 0.0
    })
    .await
    .unwrap();
    // The signer's quota drained with them: five more roots are taken.
    let flooder = dht_neighbour_of(&server).await;
    for i in 5..10 {
        put_own_pin(&flooder, &key, raw_cid(i)).await;
    }
    eventually("the server to keep the new claims", DEADLINE, || async {
        stored() >= 5.0
    })
    .await
    .unwrap();
    assert_eq!(
        server.metric("p2p_pin_records_refused_total{reason=\"signer_over_quota\"}"),
        0.0
    );
}

/// `n` TCP connections to `server` from 127.0.0.2 that never say a word (those it refuses at
/// once are left out).
async fn silent_connections(server: &Peer, n: usize) -> Vec<tokio::net::TcpStream> {
    let port = server
        .addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();
    let mut streams = Vec::new();
    for _ in 0..n {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        if let Ok(stream) = socket.connect(([127, 0, 0, 1], port).into()).await {
            streams.push(stream);
        }
    }
    streams
}

#[tokio::test]
async fn handshakes_from_one_address_past_its_rate_are_refused_before_any_key_exchange() {
    let mut s = settings();
    s.handshakes_per_second_per_ip = 5;
    let server = Peer::start(s, Answers::Honest).await;
    // Thirty connections from 127.0.0.2 at once: five may begin a handshake.
    let sockets = silent_connections(&server, 30).await;
    let refused = || server.metric("p2p_dials_refused_total{reason=\"handshakes_per_ip\"}");
    eventually(
        "the address's extra handshakes to be refused",
        DEADLINE,
        || async { refused() >= 25.0 },
    )
    .await
    .unwrap();
    // Another address is not held back by that one's rate.
    let honest = Peer::start(settings(), Answers::Honest).await;
    honest.client.dial(server.pinned_addr()).await.unwrap();
    // Twenty identities from 127.0.0.1 at once (a banned peer redialling in a loop meets the
    // same): at most the address's allowance gets through.
    let crowd: Vec<Peer> =
        futures::future::join_all((0..20).map(|_| Peer::start(settings(), Answers::Honest))).await;
    let dials =
        futures::future::join_all(crowd.iter().map(|p| p.client.dial(server.pinned_addr()))).await;
    let failed = dials.iter().filter(|d| d.is_err()).count();
    assert!(failed >= 10, "{failed} of 20 dials refused");
    assert!(refused() >= 35.0);
    // The allowance refills.
    eventually("the address's allowance to refill", DEADLINE, || async {
        let late = Peer::start(settings(), Answers::Honest).await;
        late.client.dial(server.pinned_addr()).await.is_ok()
    })
    .await
    .unwrap();
    drop(sockets);
}

#[tokio::test]
async fn stalled_handshakes_from_one_address_never_keep_another_out() {
    let mut s = settings();
    s.max_pending_per_ip = 4;
    let server = Peer::start(s, Answers::Honest).await;
    // Twenty TCP connections from 127.0.0.2 that never say a word.
    let stalled = silent_connections(&server, 20).await;
    eventually(
        "the address's extra handshakes to be refused",
        DEADLINE,
        || async { server.metric("p2p_dials_refused_total{reason=\"pending_per_ip\"}") >= 16.0 },
    )
    .await
    .unwrap();
    // An honest peer from another address completes its handshake at once.
    let honest = Peer::start(settings(), Answers::Honest).await;
    honest.client.dial(server.pinned_addr()).await.unwrap();
    drop(stalled);
}

#[tokio::test]
async fn a_routing_table_learnt_through_one_bootstrap_peer_is_reported() {
    let hub = Peer::start(settings(), Answers::Honest).await;
    let mut leaves = Vec::new();
    for _ in 0..5 {
        let leaf = Peer::start(settings(), Answers::Honest).await;
        leaf.client.dial(hub.pinned_addr()).await.unwrap();
        leaves.push(leaf);
    }
    // Two bootstrap entries, but only the hub answers: everything the node learns comes through it.
    let silent = PeerId::random();
    let mut s = settings();
    s.bootstrap = vec![
        BootstrapPeer {
            addr: hub.pinned_addr(),
            peer_id: hub.id(),
        },
        BootstrapPeer {
            addr: format!("/ip4/127.0.0.1/tcp/9/p2p/{silent}")
                .parse()
                .unwrap(),
            peer_id: silent,
        },
    ];
    s.min_bootstrap_peers = 1;
    let node = Peer::start(s, Answers::Honest).await;
    node.client.wait_bootstrapped(1, DEADLINE).await.unwrap();
    eventually("the domination to be reported", DEADLINE, || async {
        node.metric("p2p_routing_dominated_by_one_bootstrap_peer_total") >= 1.0
    })
    .await
    .unwrap();
    // A node whose table comes from two answering bootstrap peers is not flagged.
    let mut s = settings();
    s.bootstrap = vec![
        BootstrapPeer {
            addr: hub.pinned_addr(),
            peer_id: hub.id(),
        },
        BootstrapPeer {
            addr: leaves[0].pinned_addr(),
            peer_id: leaves[0].id(),
        },
    ];
    s.min_bootstrap_peers = 2;
    let balanced = Peer::start(s, Answers::Honest).await;
    balanced
        .client
        .wait_bootstrapped(2, DEADLINE)
        .await
        .unwrap();
    eventually(
        "the balanced node to learn the leaves",
        DEADLINE,
        || async {
            let table = balanced.client.routing_table().await.unwrap();
            leaves.iter().skip(1).all(|l| table.contains(&l.id()))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        balanced.metric("p2p_routing_dominated_by_one_bootstrap_peer_total"),
        0.0
    );
}

#[tokio::test]
async fn a_dht_client_finds_providers_through_the_server_and_no_one_learns_of_it() {
    let server = Peer::start(settings(), Answers::Honest).await;
    let provider = dht_neighbour_of(&server).await;
    let cid = provider.hold(b"looked up by a client").await;
    provider.client.start_providing(cid).await.unwrap();
    let mut asking = settings();
    asking.dht_server = false;
    let asker = Peer::start(asking, Answers::Honest).await;
    asker.client.dial(server.pinned_addr()).await.unwrap();
    eventually("the client to find the provider", DEADLINE, || async {
        asker
            .client
            .providers(cid)
            .await
            .is_ok_and(|found| found.contains(&provider.id()))
    })
    .await
    .unwrap();
    // The server answered it, and keeps it out of the table it hands out in answers; the
    // provider, a DHT server, is in.
    let server_table = server.client.routing_table().await.unwrap();
    assert!(server_table.contains(&provider.id()));
    cairn_tests::throughout(
        "the client to stay out of both nodes' routing tables",
        Duration::from_secs(1),
        || async {
            let on_server = server.client.routing_table().await.unwrap();
            let on_provider = provider.client.routing_table().await.unwrap();
            !on_server.contains(&asker.id()) && !on_provider.contains(&asker.id())
        },
    )
    .await
    .unwrap();
}
