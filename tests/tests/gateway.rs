//! The trustless HTTP gateway end to end: real nodes, content added through the real gRPC client,
//! and curl as the HTTP client. Every CAR is read twice — by the project's own importer (which
//! verifies each block and the DAG's completeness) and by rs-car, a third-party reader that checks
//! each block's hash — and every raw block is hashed against its CID.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::process::Output;
use std::sync::Arc;

use cairn_blockstore::testing::corrupt_block;
use cairn_blockstore::{Block, DAG_PB, HashAlg, MemBlockstore, RAW, StoreOptions, verify};
use cairn_node::car::import_car;
use cairn_node::tasks::Supervisor;
use cairn_node::unixfs::{ImportOptions, export_to, import_reader};
use cairn_proto::{admin, unixfs};
use cairn_tests::{SETTLE, TestNode, add, eventually, random_bytes, sample, scrape, start_cluster};
use cid::Cid;
use ipld_dagpb::{PbLink, PbNode};
use prost::Message;

/// A node with the gateway on an ephemeral loopback port, `edit` applied after.
async fn gateway_node(edit: impl Fn(&mut cairn_config::Config)) -> anyhow::Result<TestNode> {
    let mut nodes = start_cluster(1, |_, config| {
        config.gateway.enabled = true;
        config.gateway.listen = "127.0.0.1:0".into();
        config.metrics.listen = "127.0.0.1:0".into();
        edit(config);
    })
    .await?;
    Ok(nodes.remove(0))
}

fn gateway(node: &TestNode) -> SocketAddr {
    node.handle.gateway_addr().expect("gateway enabled")
}

/// What curl got: status, headers (lower-case names), body.
struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// curl's own exit code (non-zero when the transfer broke off).
    exit: i32,
}

impl Fetched {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `curl` with `args` (headers, method, source address) on `url`; as a child process the
/// runtime waits for, so the node in this process keeps serving.
async fn curl(url: &str, args: &[&str]) -> Fetched {
    let dir = tempfile::tempdir().unwrap();
    let head = dir.path().join("headers");
    let body = dir.path().join("body");
    let output: Output = tokio::process::Command::new("curl")
        .args(["--silent", "--max-time", "60", "--dump-header"])
        .arg(&head)
        .arg("--output")
        .arg(&body)
        .args(args)
        .arg(url)
        .output()
        .await
        .expect("curl runs");
    let text = std::fs::read_to_string(&head).unwrap_or_default();
    let mut lines = text.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Fetched {
        status,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
        exit: output.status.code().unwrap_or(-1),
    }
}

fn url(node: &TestNode, path: &str) -> String {
    format!("http://{}/ipfs/{path}", gateway(node))
}

/// The blocks of a CAR as rs-car reads them, every hash checked, and its roots.
async fn third_party_read(car: &[u8]) -> anyhow::Result<(Vec<Cid>, Vec<(Cid, Vec<u8>)>)> {
    let mut reader = car;
    let (blocks, header) = rs_car::car_read_all(&mut reader, true)
        .await
        .map_err(|e| anyhow::anyhow!("rs-car refused the CAR: {e:?}"))?;
    // rs-car has its own CID type (the same bytes).
    let roots = header
        .roots
        .iter()
        .map(|c| Cid::try_from(c.to_bytes()))
        .collect::<Result<_, _>>()?;
    let blocks = blocks
        .into_iter()
        .map(|(c, data)| Ok((Cid::try_from(c.to_bytes())?, data)))
        .collect::<anyhow::Result<_>>()?;
    Ok((roots, blocks))
}

/// The project's own reader: imports the CAR into a fresh store (each block verified, the DAG
/// complete) and reads the file back.
async fn own_read(car: &[u8], root: Cid) -> anyhow::Result<Vec<u8>> {
    let store = Arc::new(MemBlockstore::new(StoreOptions::default()));
    let supervisor = Supervisor::new();
    let imported = import_car(Arc::clone(&store), &supervisor.jobs(), car).await?;
    anyhow::ensure!(imported.roots == vec![root], "roots {:?}", imported.roots);
    let mut out = Vec::new();
    export_to(&*store, root, &mut out)?;
    Ok(out)
}

/// Adds `data` through the API and returns its CID.
async fn added(client: &mut cairn_node::client::Client, data: &[u8], cid_version: u32) -> Cid {
    add(client, data, cid_version)
        .await
        .unwrap()
        .cid
        .parse()
        .unwrap()
}

fn cids(blocks: &[(Cid, Vec<u8>)]) -> Vec<Cid> {
    blocks.iter().map(|(c, _)| *c).collect()
}

/// The CIDs of the CAR that `GET /ipfs/{path}` answers, as rs-car reads them.
async fn car_cids(node: &TestNode, path: &str) -> Vec<Cid> {
    let car = curl(&url(node, path), &[]).await;
    assert_eq!(car.status, 200, "/ipfs/{path}");
    cids(&third_party_read(&car.body).await.unwrap().1)
}

#[tokio::test]
async fn raw_blocks_and_cars_reach_curl_and_verify_with_two_readers() {
    let node = gateway_node(|_| {}).await.unwrap();
    let mut client = node.admin().await.unwrap();
    // 3 MiB + 5 bytes: 13 leaves and a root, CIDv1 with raw leaves.
    let data = random_bytes(3 * 1024 * 1024 + 5, 71);
    let root: Cid = added(&mut client, &data, 1).await;

    // One raw block: its bytes hash to the CID; the spec's headers are there.
    let raw = curl(
        &url(&node, &root.to_string()),
        &["-H", "Accept: application/vnd.ipld.raw"],
    )
    .await;
    assert_eq!(raw.status, 200);
    verify(&root, &raw.body).expect("the body is the block the CID names");
    assert_eq!(raw.header("content-type"), Some("application/vnd.ipld.raw"));
    assert_eq!(raw.header("etag"), Some(format!("\"{root}.raw\"").as_str()));
    assert!(raw.header("cache-control").unwrap().contains("immutable"));
    assert!(
        raw.header("content-disposition")
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(raw.header("x-content-type-options"), Some("nosniff"));

    // The whole DAG as a CAR (?format=car, default scope all): both readers accept it and the
    // file comes back byte for byte.
    let car = curl(&url(&node, &format!("{root}?format=car")), &[]).await;
    assert_eq!((car.status, car.exit), (200, 0));
    assert_eq!(
        car.header("content-type"),
        Some("application/vnd.ipld.car; version=1; order=dfs; dups=n")
    );
    assert_eq!(own_read(&car.body, root).await.unwrap(), data);
    let (roots, blocks) = third_party_read(&car.body).await.unwrap();
    assert_eq!(roots, vec![root]);
    assert_eq!(blocks.len(), 14, "13 leaves and the root, each once");
    assert_eq!(blocks[0].0, root, "depth first: the root comes first");

    // dag-scope=block: the root alone. entity, for a file: all of it.
    let block = car_cids(&node, &format!("{root}?format=car&dag-scope=block")).await;
    assert_eq!(block, vec![root]);
    let entity = curl(
        &url(&node, &format!("{root}?dag-scope=entity")),
        &["-H", "Accept: application/vnd.ipld.car; version=1"],
    )
    .await;
    assert_eq!(third_party_read(&entity.body).await.unwrap().1, blocks);
    assert_ne!(
        entity.header("etag"),
        car.header("etag"),
        "each scope has its tag"
    );

    // HEAD: the headers, no body. A matching If-None-Match: 304.
    let head = curl(&url(&node, &format!("{root}?format=raw")), &["--head"]).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(raw.body.len().to_string().as_str())
    );
    // (curl --head writes the headers where the body would go.)
    assert!(
        head.body.starts_with(b"HTTP/1.1 200") && head.body.len() < 1024,
        "headers, no block"
    );
    let etag = car.header("etag").unwrap().to_owned();
    let again = curl(
        &url(&node, &format!("{root}?format=car")),
        &["-H", &format!("If-None-Match: {etag}")],
    )
    .await;
    assert_eq!(again.status, 304);
    assert!(again.body.is_empty());

    // CIDv0 content too, byte-identical through both readers.
    let v0_data = random_bytes(600 * 1024, 72);
    let v0: Cid = added(&mut client, &v0_data, 0).await;
    assert_eq!(v0.version(), cid::Version::V0);
    let car = curl(&url(&node, &format!("{v0}?format=car")), &[]).await;
    assert_eq!(own_read(&car.body, v0).await.unwrap(), v0_data);
    assert_eq!(third_party_read(&car.body).await.unwrap().1.len(), 4);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_requests_get_the_status_the_spec_names() {
    let node = gateway_node(|_| {}).await.unwrap();
    let mut client = node.admin().await.unwrap();
    let root = add(&mut client, &random_bytes(1000, 73), 1)
        .await
        .unwrap()
        .cid;
    let absent = cairn_tests::raw_leaf(b"never added");
    let car: &[&str] = &["-H", "Accept: application/vnd.ipld.car"];
    let probe: &[&str] = &[
        "--head",
        "-H",
        "Cache-Control: only-if-cached",
        "-H",
        "Accept: application/vnd.ipld.car",
    ];
    // (path after /ipfs/, curl arguments, status, why)
    let cases: Vec<(String, &[&str], u16, &str)> = vec![
        ("not-a-cid?format=raw".into(), &[], 400, "a malformed CID"),
        (
            format!("{root}?format=car&dag-scope=most"),
            &[],
            400,
            "an unknown scope",
        ),
        (format!("{root}?format=html"), &[], 400, "an unknown format"),
        (
            format!("{root}/a?format=raw"),
            &[],
            400,
            "a raw block has no path",
        ),
        (
            root.clone(),
            &["-H", "Accept: text/html"],
            406,
            "nothing verifiable asked for",
        ),
        (root.clone(), &[], 406, "no type at all"),
        (
            root.clone(),
            &["-H", "Accept: application/vnd.ipld.car; version=2"],
            406,
            "CAR v2",
        ),
        (
            format!("{absent}?format=raw"),
            &[],
            404,
            "a block the node lacks",
        ),
        (absent.to_string(), car, 404, "a DAG the node lacks"),
        (
            absent.to_string(),
            probe,
            412,
            "a cache probe for what the node lacks",
        ),
        (
            format!("{root}?format=car&entity-bytes=0:9"),
            &[],
            501,
            "byte ranges",
        ),
        (
            format!("{root}?format=raw"),
            &["-X", "POST"],
            405,
            "only GET and HEAD",
        ),
        (
            format!("{root}/inside"),
            car,
            404,
            "a file is not a directory",
        ),
    ];
    for (path, args, status, why) in cases {
        let got = curl(&url(&node, &path), args).await;
        assert_eq!(got.status, status, "{why}: /ipfs/{path}");
        if status != 405 {
            assert!(
                !got.body.is_empty() || args.contains(&"--head"),
                "{why}: the reason is in the body"
            );
        }
    }
    let ipns = curl(&format!("http://{}/ipns/x", gateway(&node)), &[]).await;
    assert_eq!(ipns.status, 404, "only /ipfs/ is served");
    node.stop().await.unwrap();
}

/// A UnixFS directory node naming `entries`, put through the API.
async fn put_directory(client: &mut cairn_node::client::Client, entries: &[(&str, Cid)]) -> Cid {
    let node = PbNode {
        links: entries
            .iter()
            .map(|(name, cid)| PbLink {
                cid: *cid,
                name: Some((*name).to_owned()),
                size: None,
            })
            .collect(),
        data: Some(
            unixfs::Data {
                r#type: unixfs::data::DataType::Directory as i32,
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
        ),
    };
    let put = client
        .block_put(admin::BlockPutRequest {
            data: node.into_bytes().to_vec().into(),
            codec: "dag-pb".into(),
        })
        .await
        .unwrap()
        .into_inner();
    put.cid.parse().unwrap()
}

#[tokio::test]
async fn paths_through_directories_carry_the_blocks_that_prove_them() {
    let node = gateway_node(|_| {}).await.unwrap();
    let mut client = node.admin().await.unwrap();
    let report = random_bytes(700 * 1024, 74);
    let notes = random_bytes(100, 75);
    let report_cid: Cid = added(&mut client, &report, 1).await;
    let notes_cid: Cid = added(&mut client, &notes, 1).await;
    let inner = put_directory(&mut client, &[("report 2026.bin", report_cid)]).await;
    let top = put_directory(&mut client, &[("docs", inner), ("notes.txt", notes_cid)]).await;
    assert_eq!(top.codec(), DAG_PB);

    // /top/docs/report 2026.bin: both directories, then the file's DAG.
    let car = curl(
        &url(&node, &format!("{top}/docs/report%202026.bin?format=car")),
        &[],
    )
    .await;
    assert_eq!(car.status, 200);
    let (roots, blocks) = third_party_read(&car.body).await.unwrap();
    assert_eq!(roots, vec![top], "the root is the CID in the request");
    assert_eq!(&cids(&blocks)[..3], &[top, inner, report_cid]);
    assert_eq!(
        blocks.len(),
        2 + 4,
        "two directories, the file's root and its 3 leaves"
    );
    // The file's bytes come back from the blocks rs-car read.
    let store = MemBlockstore::new(StoreOptions::default());
    for (cid, data) in &blocks {
        // The store verifies each block on put.
        store.put(&Block::new(*cid, data.clone())).unwrap();
    }
    let mut out = Vec::new();
    export_to(&store, report_cid, &mut out).unwrap();
    assert_eq!(out, report);

    // A directory's entity is its own node; all is everything below it.
    let entity = car_cids(&node, &format!("{top}?format=car&dag-scope=entity")).await;
    assert_eq!(entity, vec![top]);
    let all = car_cids(&node, &format!("{top}?format=car")).await;
    assert_eq!(all.len(), 1 + 1 + 4 + 1); // A name that is not there.
    let missing = curl(
        &url(&node, &format!("{top}/docs/other.bin?format=car")),
        &[],
    )
    .await;
    assert_eq!(missing.status, 404);
    assert!(String::from_utf8_lossy(&missing.body).contains("docs/other.bin"));
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_corrupt_block_is_never_sent() {
    let node = gateway_node(|_| {}).await.unwrap();
    let mut client = node.admin().await.unwrap();
    let data = random_bytes(2 * 1024 * 1024, 76);
    let root: Cid = added(&mut client, &data, 1).await;
    let leaf = Block::build(
        RAW,
        HashAlg::Sha2_256,
        data[1024 * 1024..1280 * 1024].to_vec(),
    );
    drop(client);
    let stopped = node.stop_keeping().await.unwrap();
    {
        let store = cairn_tests::open_store(&stopped.dir).unwrap();
        assert!(corrupt_block(&store, &leaf.cid));
    }
    let node = stopped
        .start_with(|config| {
            config.gateway.enabled = true;
            config.gateway.listen = "127.0.0.1:0".into();
        })
        .await
        .unwrap();
    // The block itself: an error, not its damaged bytes.
    let raw = curl(&url(&node, &format!("{}?format=raw", leaf.cid)), &[]).await;
    assert_eq!(raw.status, 500);
    assert!(raw.body.len() < 1024, "an error message, not the block");
    // The CAR breaks off where the block was: curl reports a broken transfer, and neither reader
    // takes what arrived for a whole DAG.
    let car = curl(&url(&node, &format!("{root}?format=car")), &[]).await;
    assert_eq!(car.status, 200, "the error came after the first block");
    assert_ne!(car.exit, 0, "curl saw the body end early");
    assert!(own_read(&car.body, root).await.is_err());
    // rs-car takes a CAR that ends between frames: what it read must stop before the leaf.
    if let Ok((_, blocks)) = third_party_read(&car.body).await {
        assert!(blocks.iter().all(|(cid, _)| *cid != leaf.cid));
        assert!(
            blocks.len() <= 5,
            "the root and the four leaves before the corrupt one"
        );
    }
    // The leaf's CID is in the body at most once, as the root's link (which comes first): no
    // frame for it was sent. How much came before the break depends on what the server had
    // flushed when it aborted.
    let leaf_cid = leaf.cid.to_bytes();
    let mentions = car
        .body
        .windows(leaf_cid.len())
        .filter(|w| *w == leaf_cid.as_slice())
        .count();
    assert!(mentions <= 1, "a frame for the corrupt block was sent");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn one_client_cannot_take_the_gateway_from_another() {
    let node = gateway_node(|config| {
        config.gateway.requests_per_second = 2;
        config.gateway.max_streams_per_client = 2;
        config.gateway.bytes_per_second = cairn_config::Size::mib(1);
    })
    .await
    .unwrap();
    let mut client = node.admin().await.unwrap();
    let big = random_bytes(8 * 1024 * 1024, 77);
    let big_cid = add(&mut client, &big, 1).await.unwrap().cid;
    let small = random_bytes(1000, 78);
    let small_cid = add(&mut client, &small, 1).await.unwrap().cid;
    let raw = |cid: &str| url(&node, &format!("{cid}?format=raw"));

    // 127.0.0.2 floods small requests: after its burst of 2 it gets 429 with Retry-After...
    let mut flood = Vec::new();
    for _ in 0..20 {
        flood.push(curl(&raw(&small_cid), &["--interface", "127.0.0.2"]).await);
    }
    let refused: Vec<&Fetched> = flood.iter().filter(|f| f.status == 429).collect();
    assert!(refused.len() >= 10, "{} of 20 refused", refused.len());
    assert!(refused.iter().all(|f| f.header("retry-after").is_some()));
    // ...while 127.0.0.3 is served at once.
    assert_eq!(
        curl(&raw(&small_cid), &["--interface", "127.0.0.3"])
            .await
            .status,
        200
    );

    // 127.0.0.4 opens two slow CAR streams (8 MiB each, 1 MiB/s for the address): a third is
    // refused, another address is still served, and the slots come back when the streams end.
    let metrics = node.handle.metrics_addr().unwrap();
    let streams_started = || async {
        let text = scrape(metrics).await.unwrap();
        sample(&text, "cairn_gateway_responses_total{code=\"200\"}").unwrap_or(0.0)
    };
    let before = streams_started().await;
    let car_url = url(&node, &format!("{big_cid}?format=car"));
    let slow: Vec<tokio::process::Child> = (0..2)
        .map(|_| {
            tokio::process::Command::new("curl")
                .args([
                    "--silent",
                    "--output",
                    "/dev/null",
                    "--interface",
                    "127.0.0.4",
                ])
                .arg(&car_url)
                .kill_on_drop(true)
                .spawn()
                .unwrap()
        })
        .collect();
    eventually("both slow streams to start", SETTLE, || async {
        streams_started().await >= before + 2.0
    })
    .await
    .unwrap();
    let out_of_slots = |f: &Fetched| {
        f.status == 429 && String::from_utf8_lossy(&f.body).contains("max_streams_per_client")
    };
    eventually("both slow streams to hold their slots", SETTLE, || async {
        out_of_slots(&curl(&raw(&small_cid), &["--interface", "127.0.0.4"]).await)
    })
    .await
    .unwrap();
    assert_eq!(
        curl(&raw(&small_cid), &["--interface", "127.0.0.5"])
            .await
            .status,
        200
    );
    let text = scrape(metrics).await.unwrap();
    assert!(sample(&text, "cairn_gateway_refused_total{limit=\"rate\"}").unwrap() >= 10.0);
    assert!(
        sample(
            &text,
            "cairn_gateway_refused_total{limit=\"client_streams\"}"
        )
        .unwrap()
            >= 1.0
    );
    for mut child in slow {
        child.kill().await.unwrap();
    }
    eventually("the slots to come back", SETTLE, || async {
        curl(&raw(&small_cid), &["--interface", "127.0.0.4"])
            .await
            .status
            == 200
    })
    .await
    .unwrap();
    node.stop().await.unwrap();
}

#[tokio::test]
async fn with_fetch_on_a_node_serves_what_only_the_cluster_holds() {
    let nodes = start_cluster(2, |index, config| {
        if index == 1 {
            config.gateway.enabled = true;
            config.gateway.listen = "127.0.0.1:0".into();
            config.gateway.fetch = true;
        }
    })
    .await
    .unwrap();
    // The file's blocks go to the first node one by one, unpinned, so no replication moves them:
    // the second node can only get them by fetching.
    let data = random_bytes(1024 * 1024 + 3, 79);
    let local = MemBlockstore::new(StoreOptions::default());
    let root = import_reader(&local, &data[..], ImportOptions::default())
        .unwrap()
        .root;
    let mut dag = Vec::new();
    cairn_blockstore::walk(&local, &root, |cid| dag.push(*cid)).unwrap();
    let mut first = nodes[0].admin().await.unwrap();
    for cid in &dag {
        let codec = if cid.codec() == RAW { "raw" } else { "dag-pb" };
        first
            .block_put(admin::BlockPutRequest {
                data: local.get(cid).unwrap(),
                codec: codec.into(),
            })
            .await
            .unwrap();
    }
    assert_eq!(dag.len(), 6, "5 leaves and the root");
    assert!(!nodes[1].handle.store().has(&root).unwrap());
    // A cache probe does not fetch.
    let probe = curl(
        &url(&nodes[1], &format!("{root}?format=car")),
        &["--head", "-H", "Cache-Control: only-if-cached"],
    )
    .await;
    assert_eq!(probe.status, 412);
    let car = curl(&url(&nodes[1], &format!("{root}?format=car")), &[]).await;
    assert_eq!(car.status, 200);
    assert_eq!(own_read(&car.body, root).await.unwrap(), data);
    for node in nodes {
        node.stop().await.unwrap();
    }
}
