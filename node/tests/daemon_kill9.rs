//! `kill -9` of a daemon process during a stream of adds: after a restart, every CID that `add`
//! reported is complete, verifies and is pinned.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use cairn_proto::admin;
use cairn_tests::daemon::{Daemon, write_config};

fn content(i: u32) -> Vec<u8> {
    let len = 100_000 + (i as usize * 37_123) % 600_000;
    cairn_tests::random_bytes(len, u64::from(i))
}

async fn add(
    client: &mut cairn_node::client::Client,
    data: Vec<u8>,
) -> Result<String, tonic::Status> {
    let mut messages: Vec<admin::AddFileRequest> = data
        .chunks(256 * 1024)
        .map(|c| admin::AddFileRequest {
            options: None,
            data: c.to_vec().into(),
        })
        .collect();
    messages[0].options = Some(admin::AddOptions {
        cid_version: Some(1),
        ..Default::default()
    });
    Ok(client
        .add_file(tokio_stream::iter(messages))
        .await?
        .into_inner()
        .cid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_adds_survive_kill_9_of_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    cairn_node::init::init(&dir, false).unwrap();
    write_config(&dir, |_| {}).unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_cairn"));

    let daemon = Daemon::start(binary, &dir).await.unwrap();
    let mut client = daemon.admin().await.unwrap();
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        acknowledged.push((i, add(&mut client, content(i)).await.unwrap()));
    }
    // More adds in flight while the process dies: kill once the stream is going.
    let mut in_flight = client.clone();
    let (acks, mut acked) = tokio::sync::mpsc::channel::<(u32, String)>(64);
    tokio::spawn(async move {
        for i in 20..200 {
            let Ok(cid) = add(&mut in_flight, content(i)).await else {
                break;
            };
            if acks.send((i, cid)).await.is_err() {
                break;
            }
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(60), acked.recv())
        .await
        .expect("no add in flight was acknowledged")
        .expect("the adding task ended");
    acknowledged.push(first);
    daemon.kill_9().await.unwrap();
    // Everything acknowledged before the kill landed counts; the sender ends at the first error.
    while let Some(ack) = acked.recv().await {
        acknowledged.push(ack);
    }
    assert!(acknowledged.len() > 20);

    let daemon = Daemon::start(binary, &dir).await.unwrap();
    let mut client = daemon.admin().await.unwrap();
    let pins = client
        .pin_ls(admin::PinLsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pins;
    for (i, cid) in &acknowledged {
        assert!(
            pins.iter().any(|p| &p.cid == cid),
            "acknowledged add {i} lost its pin"
        );
        let mut stream = client
            .cat(admin::CatRequest { cid: cid.clone() })
            .await
            .unwrap()
            .into_inner();
        let mut back = Vec::new();
        while let Some(piece) = stream.message().await.unwrap() {
            back.extend_from_slice(&piece.data);
        }
        assert!(
            back == content(*i),
            "acknowledged add {i} came back different"
        );
    }
    let verify = client
        .repo_verify(admin::RepoVerifyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(verify.corrupt.is_empty());
    daemon.kill_9().await.unwrap();
}
