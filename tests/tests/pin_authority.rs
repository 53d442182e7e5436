//! Pin authority (DESIGN.md §6): admission is not authority. Each attack is made by a hostile
//! member built from the project's own crates — an admitted peer with a key of its own — against
//! real nodes on loopback, and each test asserts the safe outcome and the metric that counts the
//! refusal. The positive side: an operator key unpins from any node, `pin restore` brings every
//! copy back within the unpin grace.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::HashSet;
use std::time::Duration;

use cairn_config::{Config, HumanDuration, Size};
use cairn_p2p::records::{PinIntent, PinRecord, Receipt};
use cairn_p2p::{NodeIdentity, PeerId};
use cairn_proto::admin;
use cairn_tests::hostile::{HostileMember, MemberBehaviour, now_ms};
use cairn_tests::{
    SETTLE, TestNode, add, eventually, full_view, join_cluster, pattern, pinners, random_bytes,
    raw_leaf, sample, scrape, start_cluster, stop_all, throughout,
};
use cid::Cid;

/// Audits every second, repair after two seconds short, metrics on.
fn fast(c: &mut Config) {
    c.replication.factor = 3;
    c.replication.write_quorum = 2;
    c.replication.audit_interval = HumanDuration::secs(1);
    c.replication.repair_grace = HumanDuration::secs(2);
    c.metrics.listen = "127.0.0.1:0".into();
}

/// A counter on `node`'s metrics endpoint (0 before it was first counted).
async fn counter(node: &TestNode, series: &str) -> f64 {
    let addr = node.handle.metrics_addr().expect("metrics are on");
    sample(&scrape(addr).await.unwrap(), series).unwrap_or(0.0)
}

fn refused_records(reason: &str) -> String {
    format!("cairn_p2p_pin_records_refused_total{{reason=\"{reason}\"}}")
}

fn refused_obligations(reason: &str) -> String {
    format!("cairn_replication_refused_total{{reason=\"{reason}\"}}")
}

async fn total(nodes: &[TestNode], series: &str) -> f64 {
    let mut sum = 0.0;
    for node in nodes {
        sum += counter(node, series).await;
    }
    sum
}

async fn pin_status(node: &TestNode, cid: &str) -> admin::PinStatusResponse {
    node.readonly()
        .await
        .unwrap()
        .pin_status(admin::PinStatusRequest { cid: cid.into() })
        .await
        .unwrap()
        .into_inner()
}

fn peer(node: &TestNode) -> PeerId {
    node.handle.peer_id().parse().unwrap()
}

/// A hostile member connected to every node in `nodes`.
async fn member_of(nodes: &[TestNode], behaviour: Option<MemberBehaviour>) -> HostileMember {
    let member = HostileMember::start(behaviour).await.unwrap();
    for node in nodes {
        member
            .client
            .dial(node.p2p_addr().parse().unwrap())
            .await
            .unwrap();
    }
    member
}

/// Four nodes holding one file at R = 3, added by node 0.
async fn four_nodes_holding_a_file() -> (Vec<TestNode>, String) {
    let nodes = start_cluster(4, |_, c| fast(c)).await.unwrap();
    full_view(&nodes).await.unwrap();
    let added = add(
        &mut nodes[0].admin().await.unwrap(),
        &pattern(600 * 1024),
        1,
    )
    .await
    .unwrap();
    eventually("three copies", SETTLE, || async {
        Ok(pinners(&nodes, &added.cid).await?.len() == 3)
    })
    .await
    .unwrap();
    (nodes, added.cid)
}

/// How long an attack's effect is watched for: several audit and reconciliation rounds.
const WATCH: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_members_unpin_of_a_pin_it_does_not_own_changes_nothing_and_no_version_locks_a_slot() {
    let (nodes, cid) = four_nodes_holding_a_file().await;
    let root: Cid = cid.parse().unwrap();
    let owner = peer(&nodes[0]);
    let member = member_of(&nodes, None).await;

    // The attack seen in the field: an unpin of another owner's pin, and an unpin of its own
    // slot at u64::MAX, both put straight into the DHT.
    let theirs = member
        .sign(root, owner, PinIntent::Unpinned, now_ms() + 60_000)
        .unwrap();
    let locking = member
        .sign(root, member.peer_id(), PinIntent::Unpinned, u64::MAX)
        .unwrap();
    member
        .client
        .put_unchecked_pin_claims(root, HostileMember::claims_value(vec![theirs, locking]))
        .await
        .unwrap();
    eventually("the refusals to be counted", SETTLE, || async {
        total(&nodes, &refused_records("not_owner")).await >= 1.0
            && total(&nodes, &refused_records("version_from_the_future")).await >= 1.0
    })
    .await
    .unwrap();
    throughout("all three copies", WATCH, || async {
        Ok(pinners(&nodes, &cid).await?.len() == 3)
    })
    .await
    .unwrap();
    let status = pin_status(&nodes[1], &cid).await;
    assert_eq!(status.state, "ok", "{status:?}");
    assert!(
        status
            .owners
            .iter()
            .all(|o| o.owner == owner.to_string() && o.state == "pinned"),
        "{status:?}"
    );

    // Each refused value costs the sender score: a member that keeps at it is banned.
    for round in 0..6u64 {
        let again = member
            .sign(root, owner, PinIntent::Unpinned, now_ms() + round)
            .unwrap();
        member
            .client
            .put_unchecked_pin_claims(root, HostileMember::claims_value(vec![again]))
            .await
            .unwrap();
    }
    eventually("the member to be banned", SETTLE, || async {
        total(&nodes, "cairn_p2p_bans_total").await >= 1.0
    })
    .await
    .unwrap();

    // The owner's own slot is not locked by anything the member did: it unpins and restores.
    let mut client = nodes[0].admin().await.unwrap();
    let rm = client
        .pin_rm(admin::PinRmRequest {
            cid: cid.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rm.state, "unpinned");
    client
        .pin_restore(admin::PinRestoreRequest {
            cid: cid.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually("the copies to come back", SETTLE, || async {
        Ok(pinners(&nodes, &cid).await?.len() >= 3)
    })
    .await
    .unwrap();
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_members_huge_factor_is_refused_and_no_extra_copy_is_made() {
    let (nodes, cid) = four_nodes_holding_a_file().await;
    let root: Cid = cid.parse().unwrap();
    let member = member_of(&nodes, None).await;
    let huge = member
        .sign(
            root,
            member.peer_id(),
            PinIntent::Pinned {
                replication_factor: 1_000_000,
            },
            now_ms(),
        )
        .unwrap();
    member
        .client
        .put_unchecked_pin_claims(root, HostileMember::claims_value(vec![huge]))
        .await
        .unwrap();
    eventually("the refusal to be counted", SETTLE, || async {
        total(&nodes, &refused_records("factor_too_high")).await >= 1.0
    })
    .await
    .unwrap();
    throughout("three copies, not four", WATCH, || async {
        Ok(pinners(&nodes, &cid).await?.len() == 3)
    })
    .await
    .unwrap();
    for node in &nodes {
        assert_eq!(pin_status(node, &cid).await.replication_factor, 3);
    }
    // Through the API the bound is the same.
    let err = nodes[0]
        .admin()
        .await
        .unwrap()
        .pin_add(admin::PinAddRequest {
            cid: cid.clone(),
            replication: Some(1_000_000),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unpin_relayed_in_a_replicate_request_is_refused() {
    let (nodes, cid) = four_nodes_holding_a_file().await;
    let root: Cid = cid.parse().unwrap();
    let owner = peer(&nodes[0]);
    let member = member_of(&nodes, None).await;
    let holders = pinners(&nodes, &cid).await.unwrap();
    let target = nodes
        .iter()
        .find(|n| holders.contains(&n.handle.peer_id().to_owned()) && peer(n) != owner)
        .unwrap();
    let unpin = member
        .sign(root, owner, PinIntent::Unpinned, now_ms() + 1)
        .unwrap();
    let before = counter(target, &refused_records("not_owner")).await;
    // The target still holds a pin that stands, so it answers with a receipt; the unpin is gone.
    let answered = member
        .client
        .replicate(
            peer(target),
            root,
            3,
            b"sixteen byte nce".to_vec(),
            false,
            HostileMember::claims_value(vec![unpin]),
        )
        .await;
    assert!(answered.is_ok(), "{answered:?}");
    assert!(counter(target, &refused_records("not_owner")).await > before);
    throughout("all three copies", WATCH, || async {
        Ok(pinners(&nodes, &cid).await?.len() == 3)
    })
    .await
    .unwrap();
    assert_eq!(pin_status(target, &cid).await.state, "ok");
    stop_all(nodes).await.unwrap();
}

/// Two honest nodes holding a file at R = 2 (node 0 added it), and a hostile member that
/// behaves as told; node 0 then raises the pin to R = 3, so the member is asked to hold it.
/// Returns the nodes, the file's CID, the member and what raising the pin answered.
async fn raise_pin_with_member(
    behaviour: impl FnOnce(&[TestNode]) -> MemberBehaviour,
) -> (Vec<TestNode>, String, HostileMember, admin::PinAddResponse) {
    let nodes = start_cluster(2, |_, c| {
        fast(c);
        c.replication.factor = 2;
    })
    .await
    .unwrap();
    full_view(&nodes).await.unwrap();
    let data = random_bytes(700 * 1024, 17);
    let added = add(&mut nodes[0].admin().await.unwrap(), &data, 1)
        .await
        .unwrap();
    eventually("both nodes to hold the file", SETTLE, || async {
        Ok(pinners(&nodes, &added.cid).await?.len() == 2)
    })
    .await
    .unwrap();
    let member = member_of(&nodes, Some(behaviour(&nodes))).await;
    let raised = nodes[0]
        .admin()
        .await
        .unwrap()
        .pin_add(admin::PinAddRequest {
            cid: added.cid.clone(),
            replication: Some(3),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (nodes, added.cid, member, raised)
}

/// [`raise_pin_with_member`], where the member must never count as a holder.
async fn raise_with_a_member(behaviour: impl FnOnce(&[TestNode]) -> MemberBehaviour) {
    let (nodes, cid, member, raised) = raise_pin_with_member(behaviour).await;
    assert!(
        !raised.holders.contains(&member.peer_id().to_string()),
        "a receipt with no proof behind it counted: {raised:?}"
    );
    assert!(raised.under_replicated, "{raised:?}");
    assert!(counter(&nodes[0], &refused_obligations("receipt_without_proof")).await >= 1.0);
    assert!(counter(&nodes[0], "cairn_replication_audits_total{result=\"fail\"}").await >= 1.0);
    // Between proof rounds the member still says "holding"; it never counts as live.
    throughout(
        "the member never to count as a live holder",
        WATCH,
        || async {
            let status = pin_status(&nodes[0], &cid).await;
            status
                .holders
                .iter()
                .all(|h| h.peer_id != member.peer_id().to_string() || h.state != "live")
                && status.live_replicas == 2
        },
    )
    .await
    .unwrap();
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_holder_that_fetches_the_sampled_blocks_on_demand_fails_when_it_misses_the_deadline() {
    // Across a slow link (here: a delay on top of a loopback fetch, past the 5 s deadline)
    // borrowing the blocks misses the deadline...
    let (nodes, _, member, raised) =
        raise_pin_with_member(|nodes| MemberBehaviour::FetchOnDemand {
            from: peer(&nodes[1]),
            delay: Duration::from_millis(5500),
        })
        .await;
    assert!(
        !raised.holders.contains(&member.peer_id().to_string()),
        "{raised:?}"
    );
    assert!(counter(&nodes[0], &refused_obligations("receipt_without_proof")).await >= 1.0);
    stop_all(nodes).await.unwrap();
    drop(member);
    // ...while a borrower faster than the deadline passes: what an audit cannot catch, as the
    // README says.
    let (nodes, _, member, raised) =
        raise_pin_with_member(|nodes| MemberBehaviour::FetchOnDemand {
            from: peer(&nodes[1]),
            delay: Duration::ZERO,
        })
        .await;
    assert!(
        raised.holders.contains(&member.peer_id().to_string()),
        "{raised:?}"
    );
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receipt_with_no_data_behind_it_never_makes_a_live_replica() {
    raise_with_a_member(|_| MemberBehaviour::ReceiptOnly).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_audit_answer_relayed_from_an_honest_holder_fails() {
    raise_with_a_member(|nodes| MemberBehaviour::RelayAudits {
        relay_to: peer(&nodes[1]),
    })
    .await;
}

/// A requester of our own: an honest peer with a key of its own that pins `root` in its own
/// slot and asks `target` to hold it.
async fn honest_request(
    requester: &cairn_p2p::Client,
    identity: &NodeIdentity,
    target: PeerId,
    root: Cid,
) -> Result<Vec<u8>, cairn_p2p::Error> {
    let record = PinRecord::sign(
        identity,
        root,
        identity.peer_id(),
        PinIntent::Pinned {
            replication_factor: 1,
        },
        now_ms(),
    )
    .unwrap();
    let mut claims = cairn_p2p::claims::PinClaims::new(root);
    claims.take(record, requester.record_gate()).unwrap();
    let nonce = random_bytes(16, now_ms());
    requester
        .replicate(target, root, 1, nonce, false, claims.encode())
        .await
}

/// Node 0 alone at R = 1 adds files of the given (length, seed); then node 1 (with `edit`)
/// joins, holding none of them. Returns both and the files' CIDs.
async fn holder_then_target(
    files: &[(usize, u64)],
    edit: impl FnOnce(&mut Config),
) -> (Vec<TestNode>, Vec<String>) {
    let single = |c: &mut Config| {
        fast(c);
        c.replication.factor = 1;
        c.replication.write_quorum = 1;
    };
    let mut nodes = start_cluster(1, |_, c| single(c)).await.unwrap();
    let mut client = nodes[0].admin().await.unwrap();
    let mut cids = Vec::new();
    for (len, seed) in files {
        let added = add(&mut client, &random_bytes(*len, *seed), 1)
            .await
            .unwrap();
        cids.push(added.cid);
    }
    let target = join_cluster(&nodes[0], |c| {
        single(c);
        edit(c);
    })
    .await
    .unwrap();
    nodes.push(target);
    full_view(&nodes).await.unwrap();
    (nodes, cids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_peer_cannot_take_every_replica_slot() {
    // Node 0 holds a file alone (added before node 1 joined); node 1 is the target both
    // requesters ask.
    let (nodes, added) = holder_then_target(&[(300 * 1024, 5)], |_| {}).await;
    let added = &added[0];
    let honest_root: Cid = added.parse().unwrap();
    let target = &nodes[1];

    // The member asks for roots only it "has", and never answers the fetches: each request
    // holds a slot until its fetch gives up.
    let fake: Vec<Cid> = (0..4u8).map(|i| raw_leaf(&[i; 64])).collect();
    let member = HostileMember::start_stalling(None, fake.iter().copied().collect::<HashSet<_>>())
        .await
        .unwrap();
    member
        .client
        .dial(target.p2p_addr().parse().unwrap())
        .await
        .unwrap();
    let asks = fake.iter().map(|root| {
        let client = member.client.clone();
        let record = member
            .sign(
                *root,
                member.peer_id(),
                PinIntent::Pinned {
                    replication_factor: 1,
                },
                now_ms(),
            )
            .unwrap();
        let claims = HostileMember::claims_value(vec![record]);
        let to = peer(target);
        let root = *root;
        tokio::spawn(async move {
            client
                .replicate(to, root, 1, vec![1; 16], false, claims)
                .await
        })
    });
    let asks: Vec<_> = asks.collect();
    eventually(
        "the member's extra requests to be turned away",
        SETTLE,
        || async { counter(target, &refused_obligations("slots")).await >= 2.0 },
    )
    .await
    .unwrap();

    // Meanwhile an honest requester is served.
    let requester = member_of(std::slice::from_ref(target), None).await;
    let signed = honest_request(
        &requester.client,
        &requester.identity,
        peer(target),
        honest_root,
    )
    .await
    .expect("an honest request gets a slot");
    let receipt = Receipt::verify(&signed).unwrap();
    assert_eq!(receipt.root, honest_root);
    assert!(
        pinners(std::slice::from_ref(target), added)
            .await
            .unwrap()
            .len()
            == 1
    );
    drop((requester, member));
    for ask in asks {
        ask.abort();
    }
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversize_pin_request_and_one_over_the_owners_share_are_refused() {
    let (nodes, added) = holder_then_target(&[(3 << 20, 1), (900 << 10, 2), (900 << 10, 3)], |c| {
        c.replication.max_pin_bytes = Size::mib(1);
        c.replication.max_share_per_peer = Size(3 << 19);
    })
    .await;
    let roots: Vec<Cid> = added.iter().map(|c| c.parse().unwrap()).collect();
    let target = &nodes[1];
    let member = member_of(std::slice::from_ref(target), None).await;
    member
        .client
        .dial(nodes[0].p2p_addr().parse().unwrap())
        .await
        .unwrap();
    let ask = |root: Cid| {
        let record = member
            .sign(
                root,
                member.peer_id(),
                PinIntent::Pinned {
                    replication_factor: 1,
                },
                now_ms(),
            )
            .unwrap();
        member.client.replicate(
            peer(target),
            root,
            1,
            vec![2; 16],
            false,
            HostileMember::claims_value(vec![record]),
        )
    };
    // 3 MiB is over max_pin_bytes (1 MiB).
    let err = ask(roots[0]).await.unwrap_err().to_string();
    assert!(err.contains("over the limit"), "{err}");
    assert!(counter(target, &refused_obligations("too_large")).await >= 1.0);
    // 900 KiB fits; a second 900 KiB for the same owner is over its 1.5 MiB share.
    ask(roots[1]).await.expect("within the limits");
    let err = ask(roots[2]).await.unwrap_err().to_string();
    assert!(err.contains("over the limit"), "{err}");
    assert!(counter(target, &refused_obligations("share_used")).await >= 1.0);
    let held = pinners(std::slice::from_ref(target), &roots[1].to_string())
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    for refused in [roots[0], roots[2]] {
        let held = pinners(std::slice::from_ref(target), &refused.to_string())
            .await
            .unwrap();
        assert!(held.is_empty(), "{refused} was pinned");
    }
    stop_all(nodes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_unpins_from_a_node_that_is_not_the_owner_and_the_owner_restores_every_copy() {
    let operator = NodeIdentity::generate();
    let operator_id = operator.peer_id().to_string();
    let nodes = start_cluster(3, |_, c| {
        fast(c);
        c.replication.operators = vec![operator_id.clone()];
    })
    .await
    .unwrap();
    full_view(&nodes).await.unwrap();
    let added = add(
        &mut nodes[0].admin().await.unwrap(),
        &pattern(500 * 1024),
        1,
    )
    .await
    .unwrap();
    let cid = added.cid.clone();
    let root: Cid = cid.parse().unwrap();
    eventually("three copies", SETTLE, || async {
        Ok(pinners(&nodes, &cid).await?.len() == 3)
    })
    .await
    .unwrap();

    // Node 2's own key has no say over node 0's pin: a stolen node key reaches no further.
    let mut on_two = nodes[2].admin().await.unwrap();
    let err = on_two
        .pin_rm(admin::PinRmRequest {
            cid: cid.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");

    // The operator's key, held by the client, does.
    let status = pin_status(&nodes[2], &cid).await;
    let slot = status.owners.first().unwrap();
    let unpin = PinRecord::sign(
        &operator,
        root,
        slot.owner.parse().unwrap(),
        PinIntent::Unpinned,
        slot.version + 1,
    )
    .unwrap();
    let rm = on_two
        .pin_rm(admin::PinRmRequest {
            cid: cid.clone(),
            records: vec![unpin.into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rm.state, "unpinned");
    eventually("every holder to let it go", SETTLE, || async {
        Ok(pinners(&nodes, &cid).await?.is_empty())
    })
    .await
    .unwrap();
    // ...into the unpin grace, not away.
    for node in &nodes {
        let waiting = node
            .readonly()
            .await
            .unwrap()
            .pin_ls(admin::PinLsRequest { unpinned: true })
            .await
            .unwrap()
            .into_inner()
            .pins;
        assert!(waiting.iter().any(|p| p.cid == cid), "{waiting:?}");
        assert!(node.handle.store().has(&root).unwrap());
    }

    // The owner restores it: every copy comes back.
    nodes[0]
        .admin()
        .await
        .unwrap()
        .pin_restore(admin::PinRestoreRequest {
            cid: cid.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually("every copy to come back", SETTLE, || async {
        Ok(pinners(&nodes, &cid).await?.len() == 3)
    })
    .await
    .unwrap();
    eventually("the pin to be whole again", SETTLE, || async {
        pin_status(&nodes[1], &cid).await.state == "ok"
    })
    .await
    .unwrap();
    stop_all(nodes).await.unwrap();
}
