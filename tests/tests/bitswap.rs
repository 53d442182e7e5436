//! Bitswap's bounds, tried by a peer built from our own crates: an honest exchange first (a
//! block comes back under its prefix, a missing one as DONT_HAVE), then an oversize wantlist, a
//! block pushed unasked and a pile of idle streams, each refused and counted.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use cairn_p2p::bitswap::{MAX_STREAMS_PER_PEER, MAX_WANTS_PER_MESSAGE, prefix};
use cairn_p2p::{NetworkSettings, NodeIdentity};
use cairn_proto::bitswap::Message;
use cairn_proto::bitswap::message::{BlockPresenceType, Wantlist, wantlist};
use cairn_tests::{SETTLE, TestNode, add, eventually, random_bytes, raw_leaf, sample, scrape};
use cid::Cid;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

fn want(cid: &Cid, kind: wantlist::WantType) -> wantlist::Entry {
    wantlist::Entry {
        block: cid.to_bytes().into(),
        want_type: kind as i32,
        send_dont_have: true,
        ..Default::default()
    }
}

fn wantlist(entries: Vec<wantlist::Entry>) -> Message {
    Message {
        wantlist: Some(Wantlist {
            entries,
            full: false,
        }),
        ..Default::default()
    }
}

async fn refused(node: &TestNode, reason: &str) -> f64 {
    let text = scrape(node.handle.metrics_addr().unwrap()).await.unwrap();
    sample(
        &text,
        &format!("cairn_bitswap_refused_total{{reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_bitswap_peer_gets_blocks_and_presences_but_not_more_than_its_share() {
    let (_tmp, dir) = cairn_tests::initialised_dir().unwrap();
    let node = TestNode::start_with(&dir, |config| {
        config.p2p.bitswap = true;
        config.metrics.listen = "127.0.0.1:0".into();
    })
    .await
    .unwrap();
    let data = random_bytes(100_000, 91);
    let cid: Cid = add(&mut node.admin().await.unwrap(), &data, 1)
        .await
        .unwrap()
        .cid
        .parse()
        .unwrap();
    let absent = raw_leaf(b"not on this node");

    // The asking peer: a swarm of our own with Bitswap streams, listening for the answers.
    let mut settings = NetworkSettings::new(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]);
    settings.bitswap = true;
    let identity = NodeIdentity::generate();
    let (peer, _events, event_loop) =
        cairn_p2p::new(&identity, settings, &mut Registry::default()).unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(event_loop.run(stop.clone()));
    let streams = peer.bitswap_streams().unwrap();
    let mut answers = streams.messages().unwrap();
    let addr = peer.wait_listening(Duration::from_secs(10)).await.unwrap()[0].clone();
    node.admin()
        .await
        .unwrap()
        .peers_connect(cairn_proto::admin::PeersConnectRequest {
            addr: format!("{addr}/p2p/{}", peer.local_peer_id()),
        })
        .await
        .unwrap();
    let node_id: cairn_p2p::PeerId = node.handle.peer_id().parse().unwrap();

    // Honest: the block under its prefix, DONT_HAVE for what the node lacks.
    let mut stream = streams.open(node_id).await.unwrap();
    stream
        .send(&wantlist(vec![
            want(&cid, wantlist::WantType::Block),
            want(&absent, wantlist::WantType::Have),
        ]))
        .await
        .unwrap();
    let (mut got_block, mut got_dont_have) = (false, false);
    while !(got_block && got_dont_have) {
        let (from, message) = tokio::time::timeout(SETTLE, answers.recv())
            .await
            .expect("an answer in time")
            .expect("answers flow");
        assert_eq!(from, node_id);
        for block in message.payload {
            assert_eq!(block.prefix.as_ref(), prefix(&cid));
            assert_eq!(block.data.as_ref(), data.as_slice());
            got_block = true;
        }
        for presence in message.block_presences {
            assert_eq!(presence.cid.as_ref(), absent.to_bytes());
            assert_eq!(presence.r#type, BlockPresenceType::DontHave as i32);
            got_dont_have = true;
        }
    }

    // A wantlist past the bound: the stream is closed unread, and counted.
    let oversize: Vec<_> = (0..=MAX_WANTS_PER_MESSAGE)
        .map(|i| want(&raw_leaf(&i.to_le_bytes()), wantlist::WantType::Have))
        .collect();
    let mut greedy = streams.open(node_id).await.unwrap();
    greedy.send(&wantlist(oversize)).await.unwrap();
    eventually("the oversize wantlist to be refused", SETTLE, || async {
        refused(&node, "too_many_wants").await >= 1.0
    })
    .await
    .unwrap();

    // Blocks nobody asked for are dropped and counted, never stored.
    let pushed = b"a block the node never wanted";
    let pushed_cid = raw_leaf(pushed);
    let mut pusher = streams.open(node_id).await.unwrap();
    let _ = pusher
        .send(&Message {
            payload: vec![cairn_proto::bitswap::message::Block {
                prefix: prefix(&pushed_cid).into(),
                data: pushed.to_vec().into(),
            }],
            ..Default::default()
        })
        .await;
    let _ = pusher.close().await;
    eventually("the unasked block to be counted", SETTLE, || async {
        refused(&node, "unasked").await >= 1.0
    })
    .await
    .unwrap();
    assert!(!node.handle.store().has(&pushed_cid).unwrap());

    // Idle streams past the per-peer bound are closed at once (the held ones time out later).
    let mut idle = Vec::new();
    for _ in 0..MAX_STREAMS_PER_PEER + 2 {
        let mut stream = streams.open(node_id).await.unwrap();
        // The node takes a stream into service (or refuses it) when it arrives; a refused one
        // fails this write.
        let _ = stream.send(&Message::default()).await;
        idle.push(stream);
    }
    eventually(
        "streams past the per-peer bound to be refused",
        SETTLE,
        || async { refused(&node, "peer_streams").await >= 1.0 },
    )
    .await
    .unwrap();
    drop(idle);

    // Honest Kubo peers are served beside all this: see kubo.rs.
    stop.cancel();
    node.stop().await.unwrap();
}
