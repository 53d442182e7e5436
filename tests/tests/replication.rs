//! Replication end to end, with real nodes on loopback and short timers (audits every second, a
//! two-second grace): copies land on the placement, every node reports the same status, lost
//! holders are replaced, a copy deleted behind a holder's back is caught by an audit and
//! repaired, an unpin outlives a holder that was away, surplus copies are released, and a pin
//! too large for its cluster heals when nodes join.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use cairn_config::{Config, HumanDuration};
use cairn_proto::admin;
use cairn_tests::{
    SETTLE, TestNode, add, bootstrap_from, eventually, full_view, join_cluster, pattern, pinners,
    reads_everywhere, sample, scrape, start_cluster, stop_all,
};
use cid::Cid;

/// Audits every second, repair after two seconds short, metrics on.
fn fast_repair(factor: u32) -> impl Fn(&mut Config) + Copy {
    move |c| {
        c.replication.factor = factor;
        c.replication.write_quorum = 2.min(factor);
        c.replication.audit_interval = HumanDuration::secs(1);
        c.replication.repair_grace = HumanDuration::secs(2);
        c.metrics.listen = "127.0.0.1:0".into();
    }
}

/// [`fast_repair`], with unpinned blocks kept for one second only.
fn fast_collection(factor: u32) -> impl Fn(&mut Config) + Copy {
    move |c| {
        fast_repair(factor)(c);
        c.replication.unpin_grace = HumanDuration::secs(1);
    }
}

async fn pin_status(node: &TestNode, cid: &str) -> anyhow::Result<admin::PinStatusResponse> {
    Ok(node
        .readonly()
        .await?
        .pin_status(admin::PinStatusRequest { cid: cid.into() })
        .await?
        .into_inner())
}

fn live_holders(status: &admin::PinStatusResponse) -> Vec<String> {
    let mut live: Vec<String> = status
        .holders
        .iter()
        .filter(|h| h.state == "live")
        .map(|h| h.peer_id.clone())
        .collect();
    live.sort();
    live
}

/// Every node in `nodes` reports `holders` as the live holders of `cid`, in state "ok".
async fn status_agrees(nodes: &[TestNode], cid: &str, holders: &[String]) -> anyhow::Result<bool> {
    for node in nodes {
        let status = pin_status(node, cid).await?;
        let agrees = status.state == "ok"
            && status.live_replicas as usize == holders.len()
            && status.failure_budget == holders.len() as i64 - 1
            && live_holders(&status) == holders;
        if !agrees {
            return Ok(false);
        }
    }
    Ok(true)
}

fn peer_ids(nodes: &[TestNode]) -> Vec<cairn_p2p::PeerId> {
    nodes
        .iter()
        .map(|n| n.handle.peer_id().parse().unwrap())
        .collect()
}

fn sorted_ids(peers: Vec<cairn_p2p::PeerId>) -> Vec<String> {
    let mut ids: Vec<String> = peers.iter().map(ToString::to_string).collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_copies_survive_losing_two_holders_and_surplus_is_released_when_they_return() {
    let mut nodes = start_cluster(5, |_, c| fast_repair(3)(c)).await.unwrap();
    full_view(&nodes).await.unwrap();
    let data = pattern(700 * 1024);
    let added = add(&mut nodes[1].admin().await.unwrap(), &data, 1)
        .await
        .unwrap();
    let root: Cid = added.cid.parse().unwrap();
    let placement = sorted_ids(cairn_p2p::closest(&root, peer_ids(&nodes), 3));

    // Exactly the three closest hold it (a surplus adder lets its copy go after the grace), and
    // every node reports the same three live holders.
    eventually("exactly the placement to pin the file", SETTLE, || async {
        Ok(pinners(&nodes, &added.cid).await? == placement)
    })
    .await
    .unwrap();
    eventually(
        "every node to agree on the pin's status",
        SETTLE,
        || async { status_agrees(&nodes, &added.cid, &placement).await },
    )
    .await
    .unwrap();

    // Two holders die (never the bootstrap node, which the others restart against).
    let hub = nodes[0].handle.peer_id().to_owned();
    let victims: Vec<String> = placement
        .iter()
        .filter(|p| **p != hub)
        .take(2)
        .cloned()
        .collect();
    let mut stopped = Vec::new();
    for victim in &victims {
        let at = nodes
            .iter()
            .position(|n| n.handle.peer_id() == victim)
            .unwrap();
        stopped.push(nodes.remove(at).stop_keeping().await.unwrap());
    }
    let survivor = placement
        .iter()
        .find(|p| !victims.contains(p))
        .unwrap()
        .clone();
    let survivor_node = nodes
        .iter()
        .find(|n| n.handle.peer_id() == survivor)
        .unwrap();
    // One live copy left: the failure budget is 0, and every live node still reads the file.
    eventually("the failure budget to drop to 0", SETTLE, || async {
        let status = pin_status(survivor_node, &added.cid).await?;
        Ok(status.live_replicas == 1 && status.failure_budget == 0)
    })
    .await
    .unwrap();
    reads_everywhere(&nodes, &added.cid, &data).await.unwrap();
    // After the grace the three live nodes hold it again, budget back to 2.
    let mut alive = sorted_ids(peer_ids(&nodes));
    alive.sort();
    eventually("repair back to three live holders", SETTLE, || async {
        status_agrees(&nodes, &added.cid, &alive).await
    })
    .await
    .unwrap();
    let text = scrape(survivor_node.handle.metrics_addr().unwrap())
        .await
        .unwrap();
    assert!(
        sample(&text, "cairn_replication_repairs_total{outcome=\"placed\"}").unwrap_or(0.0) >= 1.0,
        "the coordinator counted no repair:\n{text}"
    );
    eventually("the under-replicated gauge to clear", SETTLE, || async {
        let status = survivor_node
            .readonly()
            .await?
            .status(admin::StatusRequest {})
            .await?;
        let status = status.into_inner();
        Ok(status.under_replicated_pins == 0 && status.min_failure_budget == Some(2))
    })
    .await
    .unwrap();

    // The lost holders come back with their copies: the surplus goes, exactly three remain.
    let mut restarted = Vec::new();
    for node in stopped {
        let edit = bootstrap_from(&nodes[0], fast_repair(3));
        restarted.push(node.start_with(edit).await.unwrap());
    }
    nodes.extend(restarted);
    full_view(&nodes).await.unwrap();
    eventually(
        "surplus copies to be released down to three",
        SETTLE,
        || async {
            let pinned = pinners(&nodes, &added.cid).await?;
            Ok(pinned.len() == 3 && status_agrees(&nodes, &added.cid, &pinned).await?)
        },
    )
    .await
    .unwrap();
    reads_everywhere(&nodes, &added.cid, &data).await.unwrap();
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_audit_catches_a_copy_deleted_behind_a_holders_back_and_the_pin_is_repaired() {
    let nodes = start_cluster(4, |_, c| fast_repair(3)(c)).await.unwrap();
    full_view(&nodes).await.unwrap();
    let data = pattern(900 * 1024);
    let added = add(&mut nodes[0].admin().await.unwrap(), &data, 1)
        .await
        .unwrap();
    let root: Cid = added.cid.parse().unwrap();
    let placement = sorted_ids(cairn_p2p::closest(&root, peer_ids(&nodes), 3));
    eventually("the placement to hold the file", SETTLE, || async {
        Ok(pinners(&nodes, &added.cid).await? == placement
            && status_agrees(&nodes, &added.cid, &placement).await?)
    })
    .await
    .unwrap();

    // A holder loses every block underneath the running node; its pin stays.
    let victim = nodes
        .iter()
        .find(|n| placement.contains(&n.handle.peer_id().to_owned()))
        .unwrap();
    let store = victim.handle.store();
    let mut blocks = Vec::new();
    store.walk(&root, |cid| blocks.push(*cid)).unwrap();
    assert!(blocks.len() > 1);
    for cid in &blocks {
        assert!(store.delete(cid).unwrap());
    }

    // An audit notices (a failed proof, counted by an auditor)...
    eventually("an audit to fail", SETTLE, || async {
        let mut failed = 0.0;
        for node in &nodes {
            let text = scrape(node.handle.metrics_addr().unwrap()).await?;
            failed +=
                sample(&text, "cairn_replication_audits_total{result=\"fail\"}").unwrap_or(0.0);
        }
        Ok(failed >= 1.0)
    })
    .await
    .unwrap();
    // ...and the pin ends with three live holders, each with a whole, verified copy.
    eventually("three whole copies again", SETTLE, || async {
        let pinned = pinners(&nodes, &added.cid).await?;
        if pinned.len() != 3 || !status_agrees(&nodes, &added.cid, &pinned).await? {
            return Ok(false);
        }
        for node in nodes
            .iter()
            .filter(|n| pinned.contains(&n.handle.peer_id().to_owned()))
        {
            if node.handle.store().walk(&root, |_| {}).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
    .unwrap();
    reads_everywhere(&nodes, &added.cid, &data).await.unwrap();
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unpin_made_while_a_holder_is_down_is_not_undone_when_it_returns() {
    let mut nodes = start_cluster(3, |_, c| fast_collection(3)(c))
        .await
        .unwrap();
    full_view(&nodes).await.unwrap();
    let added = add(
        &mut nodes[0].admin().await.unwrap(),
        &pattern(600 * 1024),
        1,
    )
    .await
    .unwrap();
    let everyone = sorted_ids(peer_ids(&nodes));
    eventually("all three nodes to hold the file", SETTLE, || async {
        Ok(pinners(&nodes, &added.cid).await? == everyone)
    })
    .await
    .unwrap();

    // The owner (the adder) unpins it; nobody else could.
    let away = nodes.remove(2).stop_keeping().await.unwrap();
    nodes[0]
        .admin()
        .await
        .unwrap()
        .pin_rm(admin::PinRmRequest {
            cid: added.cid.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually("the live holders to let it go", SETTLE, || async {
        Ok(pinners(&nodes, &added.cid).await?.is_empty())
    })
    .await
    .unwrap();

    let back = away
        .start_with(bootstrap_from(&nodes[0], fast_collection(3)))
        .await
        .unwrap();
    nodes.push(back);
    eventually("the returning holder to drop its pin", SETTLE, || async {
        Ok(pinners(&nodes, &added.cid).await?.is_empty())
    })
    .await
    .unwrap();
    // Nobody brought it back, and the returning node's blocks are collectable.
    for node in &nodes {
        let status = pin_status(node, &added.cid).await.unwrap();
        assert_eq!(status.state, "unpinned", "{status:?}");
    }
    // Once the unpin grace is over, GC frees the returning node's copy.
    let returning = &nodes[2];
    let root: Cid = added.cid.parse().unwrap();
    eventually("GC to free the blocks after the grace", SETTLE, || async {
        returning
            .admin()
            .await?
            .repo_gc(admin::RepoGcRequest {})
            .await?;
        Ok(!returning.handle.store().has(&root)?)
    })
    .await
    .unwrap();
    assert!(pinners(&nodes, &added.cid).await.unwrap().is_empty());
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_knows_only_an_old_unpin_takes_the_newer_record_a_replica_request_carries() {
    // Found by the soak test: a node that was down while a root was unpinned and pinned again
    // found only its own tombstone (its lookups returned nothing newer) and refused every request
    // to hold the root, so the pin stayed short of R for good. The request now carries the
    // requester's signed record. Here the requester never publishes it, so nothing else could
    // tell the node.
    let node = TestNode::start().await.unwrap();
    let data = pattern(600 * 1024);
    let added = add(&mut node.admin().await.unwrap(), &data, 1)
        .await
        .unwrap();
    let root: Cid = added.cid.parse().unwrap();
    let request = admin::PinRmRequest {
        cid: added.cid.clone(),
        ..Default::default()
    };
    node.admin().await.unwrap().pin_rm(request).await.unwrap();
    let tombstone = pin_status(&node, &added.cid).await.unwrap();
    assert_eq!(tombstone.state, "unpinned", "{tombstone:?}");

    let member = cairn_tests::hostile::HostileMember::start(None)
        .await
        .unwrap();
    let (requester, identity) = (&member.client, &member.identity);
    let target = requester
        .dial(node.p2p_addr().parse().unwrap())
        .await
        .unwrap();
    let newer = cairn_p2p::records::PinRecord::sign(
        identity,
        root,
        identity.peer_id(),
        cairn_p2p::records::PinIntent::Pinned {
            replication_factor: 3,
        },
        tombstone.record_version + 1,
    )
    .unwrap();
    let mut claims = cairn_p2p::claims::PinClaims::new(root);
    claims.take(newer, requester.record_gate()).unwrap();
    let nonce = b"sixteen byte nce".to_vec();
    let signed = requester
        .replicate(target, root, 3, nonce.clone(), false, claims.encode())
        .await
        .expect("the node holds the root again");
    let receipt = cairn_p2p::records::Receipt::verify(&signed).unwrap();
    assert_eq!((receipt.root, receipt.nonce), (root, nonce));
    let status = pin_status(&node, &added.cid).await.unwrap();
    assert_eq!(
        status.record_version,
        tombstone.record_version + 1,
        "{status:?}"
    );
    assert_ne!(status.state, "unpinned", "{status:?}");
    assert_eq!(
        pinners(std::slice::from_ref(&node), &added.cid)
            .await
            .unwrap()
            .len(),
        1
    );
    drop(member);
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_factor_above_the_cluster_size_is_reported_honestly_and_healed_when_nodes_join() {
    let mut nodes = start_cluster(3, |_, c| fast_repair(5)(c)).await.unwrap();
    full_view(&nodes).await.unwrap();
    let added = add(
        &mut nodes[0].admin().await.unwrap(),
        &pattern(300 * 1024),
        1,
    )
    .await
    .unwrap();
    assert!(added.under_replicated, "{added:?}");
    assert_eq!(added.replication_factor, 5);
    eventually(
        "three copies, reported as under-replicated",
        SETTLE,
        || async {
            let status = pin_status(&nodes[0], &added.cid).await?;
            let summary = nodes[0]
                .readonly()
                .await?
                .status(admin::StatusRequest {})
                .await?;
            Ok(status.state == "under_replicated"
                && status.live_replicas == 3
                && status.failure_budget == 2
                && summary.into_inner().under_replicated_pins == 1)
        },
    )
    .await
    .unwrap();

    for _ in 0..2 {
        let joined = join_cluster(&nodes[0], fast_repair(5)).await.unwrap();
        nodes.push(joined);
    }
    full_view(&nodes).await.unwrap();
    let everyone = sorted_ids(peer_ids(&nodes));
    eventually("five copies once five nodes exist", SETTLE, || async {
        Ok(pinners(&nodes, &added.cid).await? == everyone
            && status_agrees(&nodes, &added.cid, &everyone).await?)
    })
    .await
    .unwrap();
    eventually("the under-replicated count to clear", SETTLE, || async {
        let summary = nodes[0]
            .readonly()
            .await?
            .status(admin::StatusRequest {})
            .await?;
        Ok(summary.into_inner().under_replicated_pins == 0)
    })
    .await
    .unwrap();
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auditors_keep_their_proof_rounds_within_half_the_byte_budget_their_peers_grant() {
    // 2 MiB/s per peer: each proof round of a 1 MiB file costs 1 MiB there, and eight pins
    // proved every second would ask four times what the budget holds. Auditors keep to half
    // of it, so the holders never refuse an audit for bytes, and rounds still pass.
    let nodes = start_cluster(2, |_, c| {
        fast_repair(2)(c);
        c.p2p.limits.bytes_per_second = cairn_config::Size::mib(2);
    })
    .await
    .unwrap();
    full_view(&nodes).await.unwrap();
    let mut admin = nodes[0].admin().await.unwrap();
    let mut roots = Vec::new();
    for seed in 0..8 {
        let added = add(&mut admin, &cairn_tests::random_bytes(1 << 20, seed), 1)
            .await
            .unwrap();
        roots.push(added.cid);
    }
    let holders = sorted_ids(peer_ids(&nodes));
    for root in &roots {
        eventually("both nodes to hold every pin", SETTLE, || async {
            Ok(pinners(&nodes, root).await? == holders)
        })
        .await
        .unwrap();
    }
    let total = |series: &'static str| {
        let nodes = &nodes;
        async move {
            let mut sum = 0.0;
            for node in nodes {
                let text = scrape(node.handle.metrics_addr().unwrap()).await?;
                sum += sample(&text, series).unwrap_or(0.0);
            }
            anyhow::Ok(sum)
        }
    };
    const BYTES_REFUSED: &str = "cairn_p2p_rate_limited_total{limit=\"bytes\"}";
    const PASSED: &str = "cairn_replication_audits_total{result=\"pass\"}";
    // The transfers above may have met the byte limit; from here on only audits run.
    let (refused_before, passed_before) = (
        total(BYTES_REFUSED).await.unwrap(),
        total(PASSED).await.unwrap(),
    );
    eventually("a dozen proof rounds to pass", SETTLE, || async {
        Ok(total(PASSED).await? >= passed_before + 12.0)
    })
    .await
    .unwrap();
    assert_eq!(
        total(BYTES_REFUSED).await.unwrap(),
        refused_before,
        "an audit was refused for bytes"
    );
    stop_all(nodes).await.unwrap();
}
