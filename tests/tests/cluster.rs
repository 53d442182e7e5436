//! The docker-compose cluster (`docker/docker-compose.yml`, five containers on a private network)
//! under faults: node loss, a network partition, a rolling restart under writes, and outsiders
//! that must never join. Every scenario asserts on data read back through the admin API.
//!
//! These need a Docker engine and an image in `CAIRN_IMAGE`: `make test-cluster` builds one from
//! the host's binary and runs them (`make ci` does whenever Docker answers).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_proto::admin;
use cairn_tests::compose::{ComposeCluster, Container, NODES, READY};
use cairn_tests::{add, cat, eventually, pattern};

const NEEDS_DOCKER: &str = "needs Docker and CAIRN_IMAGE: make test-cluster";

async fn peer_id(cluster: &ComposeCluster, service: &str) -> String {
    let mut client = cluster.admin(service).await.unwrap();
    client
        .status(admin::StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .peer_id
}

async fn pin_status(
    cluster: &ComposeCluster,
    service: &str,
    cid: &str,
) -> anyhow::Result<admin::PinStatusResponse> {
    Ok(cluster
        .admin(service)
        .await?
        .pin_status(admin::PinStatusRequest { cid: cid.into() })
        .await?
        .into_inner())
}

fn live(status: &admin::PinStatusResponse) -> Vec<String> {
    status
        .holders
        .iter()
        .filter(|h| h.state == "live")
        .map(|h| h.peer_id.clone())
        .collect()
}

/// Adds `data` on node1 (R = 3), waits for three live holders, and names two of them other than
/// node1 (the node the tests talk to). Returns the add, every service's peer ID, and the two.
async fn add_with_two_holders_besides_node1(
    cluster: &ComposeCluster,
    data: &[u8],
) -> (
    admin::AddFileResponse,
    Vec<(&'static str, String)>,
    Vec<&'static str>,
) {
    let added = add(&mut cluster.admin("node1").await.unwrap(), data, 1)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for service in NODES {
        ids.push((service, peer_id(cluster, service).await));
    }
    eventually("three live holders", READY, || async {
        Ok(pin_status(cluster, "node1", &added.cid)
            .await?
            .live_replicas
            == 3)
    })
    .await
    .unwrap();
    let holders = live(&pin_status(cluster, "node1", &added.cid).await.unwrap());
    let two: Vec<&'static str> = ids
        .iter()
        .filter(|(service, id)| *service != "node1" && holders.contains(id))
        .map(|(service, _)| *service)
        .take(2)
        .collect();
    assert_eq!(two.len(), 2, "holders {holders:?}");
    (added, ids, two)
}

/// `cid` reads back as `data` on every one of `services`.
async fn reads_everywhere(cluster: &ComposeCluster, services: &[&str], cid: &str, data: &[u8]) {
    for service in services {
        let mut client = cluster.admin(service).await.unwrap();
        let read = cat(&mut client, cid).await.unwrap();
        assert!(read == data, "{service} returned other bytes for {cid}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and CAIRN_IMAGE: make test-cluster"]
async fn a_64_mib_file_added_on_one_node_reads_back_identical_on_every_node() {
    let cluster = ComposeCluster::up("5m", "10m").expect(NEEDS_DOCKER);
    cluster.wait_ready().await.unwrap();
    let data = pattern(64 << 20);
    let added = add(&mut cluster.admin("node1").await.unwrap(), &data, 1)
        .await
        .unwrap();
    assert_eq!(added.replication_factor, 3);
    assert!(!added.under_replicated, "{added:?}");
    reads_everywhere(&cluster, &NODES, &added.cid, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and CAIRN_IMAGE: make test-cluster"]
async fn killing_two_holders_keeps_the_file_readable_and_it_is_repaired_to_three() {
    let cluster = ComposeCluster::up("4s", "2s").expect(NEEDS_DOCKER);
    cluster.wait_ready().await.unwrap();
    let data = pattern(8 << 20);
    let (added, ids, victims) = add_with_two_holders_besides_node1(&cluster, &data).await;
    // Two holders other than node1 (which the test talks to) die without warning.
    for victim in &victims {
        cluster.kill(victim).unwrap();
    }
    let alive: Vec<&str> = NODES
        .iter()
        .copied()
        .filter(|s| !victims.contains(s))
        .collect();
    reads_everywhere(&cluster, &alive, &added.cid, &data).await;
    let alive_ids: Vec<String> = ids
        .iter()
        .filter(|(service, _)| alive.contains(service))
        .map(|(_, id)| id.clone())
        .collect();
    eventually(
        "repair to three live holders among the living",
        READY,
        || async {
            let status = pin_status(&cluster, alive[0], &added.cid).await?;
            let holders = live(&status);
            Ok(holders.len() == 3 && holders.iter().all(|h| alive_ids.contains(h)))
        },
    )
    .await
    .unwrap();
    reads_everywhere(&cluster, &alive, &added.cid, &data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and CAIRN_IMAGE: make test-cluster"]
async fn writes_on_both_sides_of_a_partition_converge_to_three_copies_after_it_heals() {
    let cluster = ComposeCluster::up("4s", "2s").expect(NEEDS_DOCKER);
    cluster.wait_ready().await.unwrap();
    // node4 and node5 are cut off; their admin ports go with the network, so the minority side
    // is driven with the CLI inside its containers.
    for service in ["node4", "node5"] {
        cluster.disconnect(service).unwrap();
    }
    let connected = |service: &str| -> anyhow::Result<u64> {
        let status: serde_json::Value = serde_json::from_str(&cluster.cli(service, &["status"])?)?;
        Ok(status["connected_peers"].as_u64().unwrap_or(u64::MAX))
    };
    eventually("the partition to show", READY, || async {
        let majority = cluster
            .admin("node1")
            .await?
            .status(admin::StatusRequest {})
            .await?;
        Ok(majority.into_inner().connected_peers <= 2 && connected("node4")? <= 1)
    })
    .await
    .unwrap();
    let (one, two) = (pattern(3 << 20), pattern((3 << 20) + 1));
    let majority = add(&mut cluster.admin("node1").await.unwrap(), &one, 1)
        .await
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("two"), &two).unwrap();
    let inside = cluster
        .copy_in("node4", &files.path().join("two"), "two.bin")
        .unwrap();
    let minority: serde_json::Value =
        serde_json::from_str(&cluster.cli("node4", &["add", &inside]).unwrap()).unwrap();
    assert_eq!(
        minority["under_replicated"], true,
        "two nodes cannot hold three copies: {minority}"
    );
    let minority_cid = minority["cid"].as_str().unwrap().to_owned();

    for service in ["node4", "node5"] {
        cluster.connect(service).unwrap();
    }
    for cid in [&majority.cid, &minority_cid] {
        eventually(
            "both pins back to three live copies",
            Duration::from_secs(240),
            || async {
                let status = pin_status(&cluster, "node2", cid).await?;
                Ok(status.live_replicas == 3 && status.state == "ok")
            },
        )
        .await
        .unwrap();
    }
    // Nothing lost: both files read back on both sides.
    reads_everywhere(&cluster, &["node1", "node2", "node3"], &majority.cid, &one).await;
    reads_everywhere(&cluster, &["node1", "node2", "node3"], &minority_cid, &two).await;
    for (service, cid, data) in [
        ("node4", &majority.cid, &one),
        ("node5", &minority_cid, &two),
    ] {
        cluster
            .cli(service, &["get", cid, "-o", "/var/lib/cairn/read.bin"])
            .unwrap();
        let read = files.path().join(format!("{service}.read"));
        cluster
            .copy_out(service, "/var/lib/cairn/read.bin", &read)
            .unwrap();
        assert!(
            std::fs::read(&read).unwrap() == *data,
            "{service} read other bytes"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and CAIRN_IMAGE: make test-cluster"]
async fn a_rolling_restart_under_a_stream_of_adds_loses_no_acknowledged_add() {
    let cluster = Arc::new(ComposeCluster::up("4s", "2s").expect(NEEDS_DOCKER));
    cluster.wait_ready().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (cluster, stop) = (Arc::clone(&cluster), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut acknowledged: Vec<(String, Vec<u8>)> = Vec::new();
            let mut attempts = 0usize;
            while !stop.load(Ordering::SeqCst) {
                attempts += 1;
                // Files of different sizes, so every one has its own CID.
                let data = pattern(200 * 1024 + attempts);
                let service = NODES[attempts % NODES.len()];
                let Ok(mut client) = cluster.admin(service).await else {
                    continue;
                };
                let added =
                    tokio::time::timeout(Duration::from_secs(90), add(&mut client, &data, 1)).await;
                if let Ok(Ok(added)) = added {
                    acknowledged.push((added.cid, data));
                }
            }
            (attempts, acknowledged)
        })
    };
    for service in NODES {
        let restarting = Arc::clone(&cluster);
        tokio::task::spawn_blocking(move || restarting.restart(service))
            .await
            .unwrap()
            .unwrap();
        eventually(&format!("{service} back in the cluster"), READY, || async {
            let Ok(mut client) = cluster.admin(service).await else {
                return Ok(false);
            };
            let status = client.status(admin::StatusRequest {}).await;
            Ok(status.is_ok_and(|s| s.into_inner().connected_peers >= 2))
        })
        .await
        .unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let (attempts, acknowledged) = writer.await.unwrap();
    assert!(
        acknowledged.len() >= 5,
        "{} of {attempts} adds acknowledged",
        acknowledged.len()
    );
    cluster.wait_ready().await.unwrap();
    for (cid, data) in &acknowledged {
        reads_everywhere(&cluster, &["node1", "node3"], cid, data).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker and CAIRN_IMAGE: make test-cluster"]
async fn nodes_with_another_swarm_key_or_off_the_allowlist_never_join() {
    let cluster = ComposeCluster::up("5m", "10m").expect(NEEDS_DOCKER);
    cluster.wait_ready().await.unwrap();
    let hub = format!(
        "/dns4/node1/tcp/4001/p2p/{}",
        peer_id(&cluster, "node1").await
    );
    let keys = tempfile::tempdir().unwrap();
    let cluster_key = keys.path().join("swarm.key");
    cluster
        .copy_out("init", "/cluster/swarm.key", &cluster_key)
        .unwrap();

    // A stranger with the cluster's key but an identity nobody allowlisted, and a node with a
    // key of its own: each made with `cairn init`, bootstrapping from node1.
    let mut outsiders = Vec::new();
    for (name, key) in [
        ("stranger", std::fs::read_to_string(&cluster_key).unwrap()),
        (
            "wrongkey",
            cairn_p2p::SwarmKey::generate().unwrap().to_file_text(),
        ),
    ] {
        let dir = keys.path().join(name);
        let made = cairn_node::init::init(&dir, false).unwrap();
        cairn_node::secrets::write_secret(&dir.join("swarm.key"), key.as_bytes(), false).unwrap();
        let path = dir.join("config.toml");
        let mut config =
            cairn_config::Config::from_toml(&std::fs::read_to_string(&path).unwrap(), &path)
                .unwrap();
        config.p2p.listen = vec!["/ip4/0.0.0.0/tcp/4001".into()];
        config.p2p.bootstrap = vec![hub.clone()];
        config.p2p.swarm_key_file = "swarm.key".into();
        config.p2p.bootstrap_timeout = cairn_config::HumanDuration::secs(20);
        std::fs::write(&path, config.to_toml().unwrap()).unwrap();
        let volume = format!("{}:/var/lib/cairn", dir.display());
        let container = Container::run(
            &[
                "--network",
                &cluster.network(),
                "--user",
                "0:0",
                "-v",
                &volume,
            ],
            cluster.image(),
            &["daemon", "--data-dir", "/var/lib/cairn"],
        )
        .unwrap();
        outsiders.push((name, made.peer_id.to_string(), container));
    }
    // The node with the wrong key cannot complete a handshake with anyone: its start fails once
    // the bootstrap timeout passes, which bounds the window in which it tried.
    let wrongkey = &outsiders[1].2;
    eventually("the wrong-key node to give up", READY, || async {
        Ok(!wrongkey.state()?.0)
    })
    .await
    .unwrap();
    assert_ne!(wrongkey.state().unwrap().1, 0, "the wrong-key node started");
    // Neither ever appears among any member's peers or in its routing table.
    for service in NODES {
        let peers = cluster
            .admin(service)
            .await
            .unwrap()
            .peers_ls(admin::PeersLsRequest {})
            .await
            .unwrap()
            .into_inner();
        for (name, id, _) in &outsiders {
            assert!(
                !peers.peers.iter().any(|p| &p.peer_id == id),
                "{name} joined {service}"
            );
            assert!(
                !peers.routing_table.contains(id),
                "{name} is in {service}'s routing table"
            );
        }
    }
    let stranger = &outsiders[0].2;
    if stranger.state().unwrap().0 {
        let seen = stranger
            .exec(&[
                "/usr/local/bin/cairn",
                "--json",
                "status",
                "--data-dir",
                "/var/lib/cairn",
            ])
            .unwrap();
        assert!(
            seen.contains("\"connected_peers\":0"),
            "the stranger is connected: {seen}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Docker, CAIRN_IMAGE and CAIRN_PROMETHEUS_IMAGE: make test-cluster"]
async fn prometheus_fires_node_down_and_failure_budget_alerts_when_two_holders_die() {
    // The shipped rules, with every `for` cut to 10 s so the test need not wait minutes; the
    // expressions are the ones operators run (and alerts.test.yml checks the real durations).
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/monitoring/alerts.yml"),
    )
    .unwrap();
    let rules: String = shipped
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 10s", &line[..line.len() - line.trim_start().len()]),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let rules_file = dir.path().join("alerts.yml");
    std::fs::write(&rules_file, rules).unwrap();
    // Repairs wait 45 s: long enough for the alerts to fire while the pin is at its last copy,
    // short enough that a copy the adder kept beyond the three is released first.
    let cluster = ComposeCluster::up_with_monitoring("45s", "2s", &rules_file).expect(NEEDS_DOCKER);
    cluster.wait_ready().await.unwrap();
    let (_, _, victims) = add_with_two_holders_besides_node1(&cluster, &pattern(1 << 20)).await;
    // Neither alert fires in the healthy cluster.
    eventually("Prometheus to answer", READY, || async {
        Ok(cluster.firing_alerts().await.is_ok())
    })
    .await
    .unwrap();
    let firing = cluster.firing_alerts().await.unwrap();
    assert!(
        !firing
            .iter()
            .any(|(name, _)| name == "CairnNodeDown" || name == "CairnFailureBudgetExhausted"),
        "{firing:?}"
    );
    for victim in &victims {
        cluster.kill(victim).unwrap();
    }
    eventually(
        "node-down alerts for both and the budget alert",
        READY,
        || async {
            let firing = cluster.firing_alerts().await?;
            let down = |service: &str| {
                firing.iter().any(|(name, instance)| {
                    name == "CairnNodeDown" && instance.starts_with(service)
                })
            };
            Ok(victims.iter().all(|v| down(v))
                && firing
                    .iter()
                    .any(|(name, _)| name == "CairnFailureBudgetExhausted")
                && firing
                    .iter()
                    .any(|(name, _)| name == "CairnSignificantNodeLoss"))
        },
    )
    .await
    .unwrap();
}
