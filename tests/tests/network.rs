//! Several real nodes in this process on 127.0.0.1, talking over libp2p and driven through the
//! gRPC admin API: discovery through one bootstrap peer, reading content any node holds, a lying
//! peer, a flooding peer, admission.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Duration;

use cairn_p2p::BLOCK_REQUEST_TIMEOUT;
use cairn_proto::admin;
use cairn_tests::hostile::{Behaviour, HostilePeer};
use cairn_tests::{
    SETTLE, TestNode, add, cat, connected_peers, eventually, full_view, hold_locally,
    initialised_dir, pattern, pinners, sample, scrape, start_cluster, stop_all,
};
use tonic::Code;

async fn routing_table(node: &TestNode) -> anyhow::Result<Vec<String>> {
    let mut client = node.readonly().await?;
    Ok(client
        .peers_ls(admin::PeersLsRequest {})
        .await?
        .into_inner()
        .routing_table)
}

async fn metric(node: &TestNode, series: &str) -> f64 {
    let text = scrape(node.handle.metrics_addr().unwrap()).await.unwrap();
    sample(&text, series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_nodes_that_know_one_bootstrap_peer_find_each_other_and_read_each_others_files() {
    let nodes = start_cluster(5, |_, _| {}).await.unwrap();
    let ids: Vec<String> = nodes
        .iter()
        .map(|n| n.handle.peer_id().to_owned())
        .collect();
    for (i, node) in nodes.iter().enumerate() {
        let others: Vec<&String> = ids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, id)| id)
            .collect();
        eventually("every other node in the routing table", SETTLE, || async {
            let table = routing_table(node).await?;
            Ok(others.iter().all(|id| table.contains(id)))
        })
        .await
        .unwrap();
    }
    // A file of 3 MiB and a bit (12 leaves and a partial one) added on a node that is not the
    // bootstrap peer, read byte-identical on every other node.
    let data = pattern(3 * 1024 * 1024 + 4321);
    let added = add(&mut nodes[3].admin().await.unwrap(), &data, 1)
        .await
        .unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let got = cat(&mut node.readonly().await.unwrap(), &added.cid)
            .await
            .unwrap();
        assert!(got == data, "node {i} read different bytes");
    }
    // status reports the peers.
    let status = nodes[0]
        .readonly()
        .await
        .unwrap()
        .status(admin::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.connected_peers, 4);
    assert!(!status.listen_addrs.is_empty());
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn content_nobody_holds_is_not_found_and_the_node_keeps_serving() {
    let nodes = start_cluster(2, |_, _| {}).await.unwrap();
    let nowhere = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let err = cat(&mut nodes[1].readonly().await.unwrap(), nowhere)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(
        err.message()
            .contains("could not be fetched from the network"),
        "{err}"
    );
    let err = nodes[1]
        .admin()
        .await
        .unwrap()
        .pin_add(admin::PinAddRequest {
            cid: nowhere.into(),
            direct: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let data = pattern(1000);
    let added = add(&mut nodes[0].admin().await.unwrap(), &data, 1)
        .await
        .unwrap();
    assert_eq!(
        cat(&mut nodes[1].readonly().await.unwrap(), &added.cid)
            .await
            .unwrap(),
        data
    );
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pin_add_of_remote_content_fetches_verifies_and_announces_it() {
    let nodes = start_cluster(3, |_, _| {}).await.unwrap();
    let data = pattern(2 * 1024 * 1024);
    let added = add(&mut nodes[1].admin().await.unwrap(), &data, 1)
        .await
        .unwrap();
    nodes[2]
        .admin()
        .await
        .unwrap()
        .pin_add(admin::PinAddRequest {
            cid: added.cid.clone(),
            direct: false,
            ..Default::default()
        })
        .await
        .unwrap();
    // The pinned copy is complete and verifies on node 2 even with node 1 gone.
    let mut nodes = nodes;
    let holder = nodes.remove(1);
    holder.stop().await.unwrap();
    let verify = nodes[1]
        .admin()
        .await
        .unwrap()
        .repo_verify(admin::RepoVerifyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verify.corrupt.is_empty());
    assert!(verify.blocks_checked >= 9);
    assert_eq!(
        cat(&mut nodes[0].readonly().await.unwrap(), &added.cid)
            .await
            .unwrap(),
        data
    );
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lying_peer_never_gets_a_block_stored_is_banned_and_the_fetch_completes_elsewhere() {
    let nodes = start_cluster(2, |index, c| {
        if index == 1 {
            c.metrics.listen = "127.0.0.1:0".into();
        }
    })
    .await
    .unwrap();
    let (holder, reader) = (&nodes[0], &nodes[1]);
    let liar = HostilePeer::start(Behaviour::Lie).await.unwrap();
    let mut admin = reader.admin().await.unwrap();
    admin
        .peers_connect(admin::PeersConnectRequest {
            addr: liar.p2p_addr(),
        })
        .await
        .unwrap();
    // Two files of 8 MiB: 32 leaves each, so the fetch spreads batches over both providers.
    for seed in 0..2u8 {
        let mut data = pattern(8 * 1024 * 1024);
        data[0] = seed;
        let added = add(&mut holder.admin().await.unwrap(), &data, 1)
            .await
            .unwrap();
        let got = cat(&mut reader.readonly().await.unwrap(), &added.cid)
            .await
            .unwrap();
        assert!(got == data, "file {seed} came back different");
    }
    assert!(metric(reader, "cairn_p2p_bad_blocks_received_total").await >= 2.0);
    assert_eq!(metric(reader, "cairn_p2p_bans_total").await, 1.0);
    let liar_id = liar.peer_id().to_string();
    eventually("the liar to be disconnected", SETTLE, || async {
        Ok(!connected_peers(reader).await?.contains(&liar_id))
    })
    .await
    .unwrap();
    assert!(!routing_table(reader).await.unwrap().contains(&liar_id));
    let err = admin
        .peers_connect(admin::PeersConnectRequest {
            addr: liar.p2p_addr(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // Nothing the liar sent was stored: every block verifies.
    let verify = admin
        .repo_verify(admin::RepoVerifyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verify.corrupt.is_empty(), "{:?}", verify.corrupt);
    drop(admin);
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_from_one_peer_is_throttled_while_an_honest_peer_fetches_64_mib() {
    const LIMIT: u32 = 40;
    let nodes = start_cluster(2, |index, c| {
        if index == 0 {
            c.p2p.limits.requests_per_second = LIMIT;
            c.metrics.listen = "127.0.0.1:0".into();
        }
    })
    .await
    .unwrap();
    let (server, reader) = (&nodes[0], &nodes[1]);
    let data = pattern(64 * 1024 * 1024);
    let added = add(&mut server.admin().await.unwrap(), &data, 1)
        .await
        .unwrap();
    let root: cid::Cid = added.cid.parse().unwrap();

    let flooder = HostilePeer::start(Behaviour::Empty).await.unwrap();
    let server_id = server.handle.peer_id().parse().unwrap();
    flooder
        .client
        .dial(server.p2p_addr().parse().unwrap())
        .await
        .unwrap();
    let stop_flood = tokio_util::sync::CancellationToken::new();
    let flood = {
        let (client, stop) = (flooder.client.clone(), stop_flood.clone());
        tokio::spawn(async move {
            // Waves of 4 × LIMIT requests (the flooder's own stream cap is 64 per connection,
            // so each wave goes out over time): ten times the limit, until the reader is done.
            let (mut sent, mut served, mut slowed, mut failed) = (0u64, 0u64, 0u64, 0u64);
            while !stop.is_cancelled() {
                let wave = (0..40).map(|_| client.request_blocks(server_id, vec![root]));
                for reply in futures::future::join_all(wave).await {
                    sent += 1;
                    match reply {
                        Ok(r) if !r.blocks.is_empty() => served += 1,
                        Ok(r) if r.retry_after.is_some() => slowed += 1,
                        _ => failed += 1,
                    }
                }
            }
            (sent, served, slowed, failed)
        })
    };
    let got = cat(&mut reader.readonly().await.unwrap(), &added.cid)
        .await
        .unwrap();
    stop_flood.cancel();
    let (sent, served, slowed, failed) = flood.await.unwrap();
    assert!(got == data, "the honest fetch returned different bytes");
    eprintln!("flood: sent {sent}, served {served}, slowed {slowed}, failed after a ban {failed}");
    assert!(
        sent >= 200,
        "the flood was too small to mean anything: {sent}"
    );
    // The flooder got a small share of what it asked for; the rest was refused at once or, once
    // it was banned, never reached the node.
    assert!(served * 4 < sent, "served {served} of {sent}");
    assert!(slowed + failed > served);
    let limited = metric(server, "cairn_p2p_rate_limited_total{limit=\"requests\"}").await;
    assert!(
        limited >= slowed as f64,
        "metric {limited} < slowed {slowed}"
    );
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_allowlist_and_the_swarm_key_keep_outsiders_out_of_a_cluster() {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("swarm.key");
    let key = cairn_p2p::SwarmKey::generate().unwrap();
    cairn_node::secrets::write_secret(&key_file, key.to_file_text().as_bytes(), false).unwrap();

    // Two members that know each other's IDs and share the key.
    let (tmp_a, dir_a) = initialised_dir().unwrap();
    let (tmp_b, dir_b) = initialised_dir().unwrap();
    let id_of = |dir: &std::path::Path| {
        let config = cairn_node::init::load_config(Some(dir), None).unwrap();
        cairn_node::init::load_identity(&config)
            .unwrap()
            .peer_id()
            .to_string()
    };
    let (id_a, id_b) = (id_of(&dir_a), id_of(&dir_b));
    let members = vec![id_a.clone(), id_b.clone()];
    let closed = |c: &mut cairn_config::Config| {
        c.p2p.allowlist = members.clone();
        c.p2p.swarm_key_file = key_file.clone();
    };
    let a = TestNode::start_with(&dir_a, |c| {
        closed(c);
        c.metrics.listen = "127.0.0.1:0".into();
    })
    .await
    .unwrap();
    let b = TestNode::start_with(&dir_b, |c| {
        closed(c);
        c.p2p.bootstrap = vec![a.p2p_addr()];
    })
    .await
    .unwrap();
    // `b` started once it reached `a`; `a` sees the connection a moment later.
    eventually("a to see b", SETTLE, || async {
        Ok(connected_peers(&a).await? == vec![id_b.clone()])
    })
    .await
    .unwrap();

    // Two outsiders: one with the key but not on the allowlist, one without the key. Neither gets
    // in, in either direction.
    let (tmp_c, dir_c) = initialised_dir().unwrap();
    let keyed_stranger = TestNode::start_with(&dir_c, |c| c.p2p.swarm_key_file = key_file.clone())
        .await
        .unwrap();
    let (tmp_d, dir_d) = initialised_dir().unwrap();
    let keyless = TestNode::start_in(&dir_d).await.unwrap();
    for outsider in [&keyed_stranger, &keyless] {
        // The outsider's own dial may see its handshake finish before `a` drops the connection,
        // so its result proves nothing; `a`'s view below is what counts.
        let _ = outsider
            .admin()
            .await
            .unwrap()
            .peers_connect(admin::PeersConnectRequest { addr: a.p2p_addr() })
            .await;
        let err = a
            .admin()
            .await
            .unwrap()
            .peers_connect(admin::PeersConnectRequest {
                addr: outsider.p2p_addr(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
    }
    eventually("the stranger's attempt to be refused", SETTLE, || async {
        Ok(metric(
            &a,
            "cairn_p2p_dials_refused_total{reason=\"not_allowlisted\"}",
        )
        .await
            >= 1.0)
    })
    .await
    .unwrap();
    assert_eq!(connected_peers(&a).await.unwrap(), vec![id_b.clone()]);
    let table = routing_table(&a).await.unwrap();
    assert!(
        table.iter().all(|id| members.contains(id) || *id == id_a),
        "{table:?}"
    );
    for node in [keyed_stranger, keyless, b, a] {
        node.stop().await.unwrap();
    }
    drop((tmp_a, tmp_b, tmp_c, tmp_d));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bootstrap_entry_pinned_to_the_wrong_identity_stops_the_start_and_says_why() {
    let real = start_cluster(1, |_, _| {}).await.unwrap();
    let (_tmp, dir) = initialised_dir().unwrap();
    let impostor = cairn_p2p::NodeIdentity::generate().peer_id();
    let pinned_wrong = format!("{}/p2p/{impostor}", real[0].handle.p2p_addrs()[0]);
    let err = TestNode::start_with(&dir, |c| {
        c.p2p.bootstrap = vec![pinned_wrong];
        c.p2p.bootstrap_timeout = cairn_config::HumanDuration::secs(3);
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("only 0 of the 1 required bootstrap peers"),
        "{err}"
    );
    assert!(err.contains("possible poisoned bootstrap entry"), "{err}");
    assert!(err.contains(real[0].handle.peer_id()), "{err}");
    stop_all(real).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn peers_ban_by_hand_disconnects_and_refuses_a_peer() {
    let nodes = start_cluster(2, |_, _| {}).await.unwrap();
    let other = nodes[1].handle.peer_id().to_owned();
    eventually("the hub to see the other node", SETTLE, || async {
        Ok(connected_peers(&nodes[0]).await? == vec![other.clone()])
    })
    .await
    .unwrap();
    let mut admin = nodes[0].admin().await.unwrap();
    admin
        .peers_ban(admin::PeersBanRequest {
            peer_id: other.clone(),
            seconds: 60,
        })
        .await
        .unwrap();
    eventually("the banned peer to be gone", SETTLE, || async {
        Ok(connected_peers(&nodes[0]).await?.is_empty())
    })
    .await
    .unwrap();
    let err = admin
        .peers_connect(admin::PeersConnectRequest {
            addr: nodes[1].p2p_addr(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    // Bad input is refused with a clear error.
    let err = admin
        .peers_ban(admin::PeersBanRequest {
            peer_id: "not-a-peer".into(),
            seconds: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = admin
        .peers_ban(admin::PeersBanRequest {
            peer_id: other.clone(),
            seconds: 31 * 24 * 3600,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("allowlist"), "{}", err.message());
    let err = admin
        .peers_connect(admin::PeersConnectRequest {
            addr: "/not/an/addr".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // The read-only token may list but not ban.
    let err = nodes[0]
        .readonly()
        .await
        .unwrap()
        .peers_ban(admin::PeersBanRequest {
            peer_id: other,
            seconds: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    drop(admin);
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_add_with_replication_3_lands_on_its_placement_with_signed_receipts() {
    let nodes = start_cluster(5, |_, c| {
        c.replication.factor = 3;
        c.replication.write_quorum = 2;
    })
    .await
    .unwrap();
    // Every node must know every other before placement means the same thing everywhere.
    full_view(&nodes).await.unwrap();
    let data = pattern(1024 * 1024 + 17);
    let added = add(&mut nodes[2].admin().await.unwrap(), &data, 1)
        .await
        .unwrap();
    assert_eq!(added.replication_factor, 3);
    assert!(!added.under_replicated, "{added:?}");
    // The adder and at least the write quorum of receipts when add returned.
    assert!(added.holders.len() >= 3, "{added:?}");
    assert_eq!(added.holders[0], nodes[2].handle.peer_id());
    // The three peers closest to the root hold it (the adder keeps its copy too, until repair
    // releases surplus copies); nobody else does.
    let root: cid::Cid = added.cid.parse().unwrap();
    let all: Vec<cairn_p2p::PeerId> = nodes
        .iter()
        .map(|n| n.handle.peer_id().parse().unwrap())
        .collect();
    let mut expected: Vec<String> = cairn_p2p::closest(&root, all, 3)
        .iter()
        .map(ToString::to_string)
        .collect();
    if !expected.contains(&added.holders[0]) {
        expected.push(added.holders[0].clone());
    }
    expected.sort();
    eventually("the placement to pin the file", SETTLE, || async {
        Ok(pinners(&nodes, &added.cid).await? == expected)
    })
    .await
    .unwrap();
    for holder in &added.holders {
        assert!(
            expected.contains(holder),
            "{holder} is not in the placement"
        );
    }
    // A holder serves it after the adder is gone.
    let mut nodes = nodes;
    let adder = nodes.remove(2);
    adder.stop().await.unwrap();
    let reader = nodes
        .iter()
        .find(|n| !added.holders.contains(&n.handle.peer_id().to_owned()))
        .unwrap_or(&nodes[0]);
    assert!(
        cat(&mut reader.readonly().await.unwrap(), &added.cid)
            .await
            .unwrap()
            == data
    );
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn too_few_peers_for_the_factor_is_reported_not_failed() {
    let nodes = start_cluster(2, |_, c| c.replication.factor = 5)
        .await
        .unwrap();
    eventually("the two nodes to connect", SETTLE, || async {
        Ok(connected_peers(&nodes[0]).await?.len() == 1)
    })
    .await
    .unwrap();
    let added = add(&mut nodes[0].admin().await.unwrap(), &pattern(5000), 1)
        .await
        .unwrap();
    assert_eq!(added.replication_factor, 5);
    assert!(added.under_replicated);
    assert_eq!(added.holders.len(), 2, "{added:?}");
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_answers_with_nothing_cannot_stall_a_fetch() {
    let nodes = start_cluster(1, |_, _| {}).await.unwrap();
    let mute = HostilePeer::start(Behaviour::Mute).await.unwrap();
    nodes[0]
        .admin()
        .await
        .unwrap()
        .peers_connect(admin::PeersConnectRequest {
            addr: mute.p2p_addr(),
        })
        .await
        .unwrap();
    let nowhere = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let mut reader = nodes[0].readonly().await.unwrap();
    let outcome = tokio::time::timeout(SETTLE, cat(&mut reader, nowhere))
        .await
        .expect("the fetch kept asking a peer that answers nothing");
    let err = outcome.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert!(err.message().contains("every provider failed"), "{err}");
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_never_answers_holds_a_fetch_back_for_seconds_not_its_request_timeout() {
    let mut nodes = start_cluster(2, |_, _| {}).await.unwrap();
    // More leaves than one batch, so the stalling peer gets a probe beside the holder. Held by
    // the first node alone (no replication).
    let data = pattern(24 * 256 * 1024 + 1000);
    let root = hold_locally(&nodes[0], data.clone())
        .await
        .unwrap()
        .to_string();
    let stall = HostilePeer::start(Behaviour::Stall).await.unwrap();
    let fetcher = nodes.pop().unwrap();
    fetcher
        .admin()
        .await
        .unwrap()
        .peers_connect(admin::PeersConnectRequest {
            addr: stall.p2p_addr(),
        })
        .await
        .unwrap();
    // The stalling peer is connected, so the fetch asks it too (a probe of a few CIDs). Those
    // are asked again of the holder at once (the fetch's endgame), long before the block
    // request timeout would free them.
    assert!(BLOCK_REQUEST_TIMEOUT >= Duration::from_secs(30));
    let mut reader = fetcher.readonly().await.unwrap();
    let fetched = tokio::time::timeout(Duration::from_secs(15), cat(&mut reader, &root))
        .await
        .expect("the fetch waited for the stalling peer's requests to time out")
        .unwrap();
    assert_eq!(fetched, data);
    nodes.push(fetcher);
    stop_all(nodes).await.unwrap();
}

/// What `status` says of the node's network.
async fn network_of(node: &TestNode) -> String {
    let mut client = node.readonly().await.unwrap();
    let status = client.status(admin::StatusRequest {}).await.unwrap();
    status.into_inner().network
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_says_whether_its_network_is_open_or_private() {
    let (_tmp, dir) = initialised_dir().unwrap();
    let open = TestNode::start_with(&dir, |c| c.metrics.listen = "127.0.0.1:0".into())
        .await
        .unwrap();
    assert_eq!(network_of(&open).await, "open");
    assert_eq!(metric(&open, "cairn_p2p_open_network").await, 1.0);
    let member = open.handle.peer_id().to_owned();
    open.stop().await.unwrap();

    let (_tmp, dir) = initialised_dir().unwrap();
    let private = TestNode::start_with(&dir, |c| {
        c.metrics.listen = "127.0.0.1:0".into();
        c.p2p.allowlist = vec![member];
    })
    .await
    .unwrap();
    assert_eq!(network_of(&private).await, "private");
    assert_eq!(metric(&private, "cairn_p2p_open_network").await, 0.0);
    private.stop().await.unwrap();
}
