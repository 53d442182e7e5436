//! Stopping a node while work is under way: an upload that never ends, a CAR import cut in half,
//! and a replica being fetched from a slow peer. The node must stop within its deadline (the
//! API's drain, its cut-off, the workers' wind-down), and after a restart everything it
//! acknowledged is there and verifies, while nothing it did not acknowledge is pinned.

// Test helpers may fail loudly: a failure here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_blockstore::{MemBlockstore, StoreOptions};
use cairn_node::tasks::{API_DRAIN, Jobs};
use cairn_proto::admin;
use cairn_tests::{SETTLE, TestNode, add, cat, eventually, random_bytes, start_cluster};
use tokio_stream::wrappers::ReceiverStream;

/// The longest an orderly stop may take with calls that never end: the API's drain and cut-off,
/// and room for the workers and the swarm.
const STOP_DEADLINE: Duration = Duration::from_secs(API_DRAIN.as_secs() + 20);

async fn blocks_stored(node: &TestNode) -> u64 {
    node.readonly()
        .await
        .unwrap()
        .repo_stat(admin::RepoStatRequest {})
        .await
        .unwrap()
        .into_inner()
        .blocks
}

/// A CAR file of `data` made on a memory store, with its root.
async fn car_of(data: &[u8]) -> (Vec<u8>, String) {
    let store = Arc::new(MemBlockstore::new(StoreOptions::default()));
    let mut importer = cairn_node::unixfs::FileImporter::new(
        &*store,
        cairn_node::unixfs::ImportOptions::default(),
    );
    importer.write(data).unwrap();
    let root = importer.finish().unwrap().root;
    let mut car = Vec::new();
    cairn_node::car::export_car(store, &Jobs::standalone(), root, &mut car)
        .await
        .unwrap();
    (car, root.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stops_in_time_during_an_endless_add_and_a_half_import_and_keeps_what_it_acknowledged()
 {
    let node = TestNode::start().await.unwrap();
    let mut client = node.admin().await.unwrap();
    let mut acknowledged = Vec::new();
    for seed in 0..3u64 {
        let data = random_bytes(300_000 + seed as usize, seed);
        let added = add(&mut client, &data, 1).await.unwrap();
        acknowledged.push((added.cid, data));
    }
    let before = blocks_stored(&node).await;

    // An upload that sends a little over 5 MiB (the importer stores 4 MiB batches) and then
    // neither ends nor goes away.
    let (upload, uploading) = tokio::sync::mpsc::channel::<admin::AddFileRequest>(32);
    for (i, piece) in random_bytes((5 << 20) + 1000, 10)
        .chunks(256 * 1024)
        .enumerate()
    {
        let options = (i == 0).then(|| admin::AddOptions {
            no_wait: true,
            ..Default::default()
        });
        upload
            .send(admin::AddFileRequest {
                options,
                data: piece.to_vec().into(),
            })
            .await
            .unwrap();
    }
    let mut adding = node.admin().await.unwrap();
    let endless_add =
        tokio::spawn(async move { adding.add_file(ReceiverStream::new(uploading)).await });

    // A CAR import that stops half-way and stays open.
    let (car, car_root) = car_of(&random_bytes(12 << 20, 11)).await;
    let (import, importing) = tokio::sync::mpsc::channel::<admin::CarChunk>(64);
    for piece in car[..car.len() / 2].chunks(256 * 1024) {
        import
            .send(admin::CarChunk {
                data: piece.to_vec().into(),
            })
            .await
            .unwrap();
    }
    let mut car_client = node.admin().await.unwrap();
    let half_import =
        tokio::spawn(async move { car_client.car_import(ReceiverStream::new(importing)).await });

    // Both are under way once their first batches are stored: 16 leaves of 256 KiB each.
    eventually("both uploads to store blocks", SETTLE, || async {
        blocks_stored(&node).await >= before + 2 * 16
    })
    .await
    .unwrap();

    let started = Instant::now();
    let stopped = node.stop_keeping().await.unwrap();
    let took = started.elapsed();
    assert!(took < STOP_DEADLINE, "the node took {took:?} to stop");
    // Neither call was acknowledged.
    let add_outcome = endless_add.await.unwrap();
    assert!(
        add_outcome.is_err(),
        "the endless add returned {add_outcome:?}"
    );
    let import_outcome = half_import.await.unwrap();
    assert!(
        import_outcome.is_err(),
        "the half import returned {import_outcome:?}"
    );
    drop((upload, import));

    let node = stopped.start_with(|_| {}).await.unwrap();
    let mut client = node.admin().await.unwrap();
    let pins: Vec<String> = client
        .pin_ls(admin::PinLsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pins
        .into_iter()
        .map(|p| p.cid)
        .collect();
    let mut expected: Vec<String> = acknowledged.iter().map(|(cid, _)| cid.clone()).collect();
    let mut found = pins.clone();
    expected.sort();
    found.sort();
    assert_eq!(found, expected, "pins after the restart");
    assert!(!pins.contains(&car_root));
    for (cid, data) in &acknowledged {
        assert!(
            &cat(&mut client, cid).await.unwrap() == data,
            "{cid} changed"
        );
    }
    let verify = client
        .repo_verify(admin::RepoVerifyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verify.corrupt.is_empty(), "{:?}", verify.corrupt);
    node.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stops_in_time_while_fetching_a_replica_and_pins_nothing_half_fetched() {
    // A serves B at 2 MiB/s (the least the config allows: one largest block a second), so B's
    // fetch of a 32 MiB replica is still running when B stops.
    let nodes = start_cluster(2, |index, c| {
        c.replication.factor = 2;
        if index == 0 {
            c.p2p.limits.bytes_per_second = "2MiB".parse().unwrap();
        }
    })
    .await
    .unwrap();
    let mut nodes = nodes.into_iter();
    let (a, b) = (nodes.next().unwrap(), nodes.next().unwrap());
    let data = random_bytes(32 << 20, 20);
    let messages: Vec<admin::AddFileRequest> = data
        .chunks(256 * 1024)
        .enumerate()
        .map(|(i, piece)| admin::AddFileRequest {
            options: (i == 0).then(|| admin::AddOptions {
                replication: Some(2),
                no_wait: true,
                ..Default::default()
            }),
            data: piece.to_vec().into(),
        })
        .collect();
    let added = a
        .admin()
        .await
        .unwrap()
        .add_file(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    eventually("B to fetch part of the replica", SETTLE, || async {
        blocks_stored(&b).await > 0
    })
    .await
    .unwrap();

    let started = Instant::now();
    let stopped = b.stop_keeping().await.unwrap();
    let took = started.elapsed();
    assert!(took < STOP_DEADLINE, "B took {took:?} to stop mid-fetch");

    // Half a DAG is never a pin, and what B kept verifies.
    let store = cairn_tests::open_store(&stopped.dir).unwrap();
    let root: cid::Cid = added.cid.parse().unwrap();
    assert_eq!(
        store.pin_mode(&root).unwrap(),
        None,
        "a half replica was pinned"
    );
    let report = store
        .scrub(
            cairn_blockstore::ScrubOptions {
                bytes_per_second: 0,
            },
            |_| std::ops::ControlFlow::Continue(()),
        )
        .unwrap();
    assert!(report.corrupt.is_empty());
    assert!(report.progress.blocks_checked < (32 << 20) / (256 * 1024));
    drop(store);

    // A still holds and serves what it acknowledged.
    let mut on_a = a.admin().await.unwrap();
    assert!(cat(&mut on_a, &added.cid).await.unwrap() == data);
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_that_fails_half_way_leaves_nothing_running_and_the_folder_free() {
    let (_tmp, dir) = cairn_tests::initialised_dir().unwrap();
    // The admin address is taken: the start fails after the store, the swarm and the block
    // service were started.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let failed = TestNode::start_with(&dir, |c| c.admin.listen = addr).await;
    let error = failed.expect_err("the start succeeded on a taken address");
    assert!(format!("{error:#}").contains("admin.listen"), "{error:#}");
    // Everything it had started is gone: the store's lock is free at once, for the node itself
    // and for anything else.
    drop(cairn_tests::open_store(&dir).unwrap());
    let node = TestNode::start_in(&dir).await.unwrap();
    node.stop().await.unwrap();
}
