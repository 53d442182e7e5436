//! The `cairn` client commands as scripts use them: the real binary against a node running in
//! this process, JSON output and exit codes.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Output;

use cairn_config::Config;
use cairn_node::{Node, NodeHandle};

async fn start(dir: &Path) -> NodeHandle {
    cairn_node::init::init(dir, false).unwrap();
    let path = dir.join("config.toml");
    let mut config = Config::from_toml(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
    config.admin.listen = "127.0.0.1:0".into();
    config.metrics.listen = String::new();
    Node::spawn(config.validate().unwrap()).await.unwrap()
}

/// Runs `cairn ARGS --api … --token-file …` against `node`.
async fn cairn(node: &NodeHandle, dir: &Path, args: &[&str]) -> Output {
    let api = format!("http://{}", node.admin_addr());
    let token = dir.join("admin.token");
    tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .args(["--api", &api, "--token-file", token.to_str().unwrap()])
        .env_remove("CAIRN_DATA_DIR")
        .output()
        .await
        .unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_can_add_cat_and_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let node = start(&dir).await;
    let file = tmp.path().join("hello.txt");
    std::fs::write(&file, b"hello world\n").unwrap();

    let added = json(&cairn(&node, &dir, &["add", "--json", file.to_str().unwrap()]).await);
    assert_eq!(
        added["cid"],
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    );
    let cid = added["cid"].as_str().unwrap();
    let out = cairn(&node, &dir, &["cat", cid]).await;
    assert_eq!(out.stdout, b"hello world\n");
    let copy = tmp.path().join("copy.txt");
    let out = cairn(&node, &dir, &["cat", cid, "-o", copy.to_str().unwrap()]).await;
    assert!(out.status.success());
    assert_eq!(std::fs::read(&copy).unwrap(), b"hello world\n");

    let status = json(&cairn(&node, &dir, &["status", "--json"]).await);
    assert_eq!(status["peer_id"], node.peer_id());
    assert_eq!(status["pins"], 1);
    let pins = json(&cairn(&node, &dir, &["pin", "ls", "--json"]).await);
    assert_eq!(pins["cid"], cid);
    let verify = json(&cairn(&node, &dir, &["repo", "verify", "--json"]).await);
    assert_eq!(verify["blocks_checked"], 1);

    // CAR out, unpin and collect, CAR back in: the same file again.
    let car = tmp.path().join("hello.car");
    let out = cairn(&node, &dir, &["car", "export", cid, car.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        cairn(&node, &dir, &["pin", "rm", cid])
            .await
            .status
            .success()
    );
    let gc = json(&cairn(&node, &dir, &["repo", "gc", "--json"]).await);
    assert_eq!(gc["removed_blocks"], 1);
    let imported = json(
        &cairn(
            &node,
            &dir,
            &["car", "import", "--json", car.to_str().unwrap()],
        )
        .await,
    );
    assert_eq!(imported["root"], cid);
    assert_eq!(
        cairn(&node, &dir, &["cat", cid]).await.stdout,
        b"hello world\n"
    );

    // Failures: non-zero exit, one line on stderr, nothing on stdout.
    let missing = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    for args in [
        &["cat", "not-a-cid"][..],
        &["cat", missing],
        &["block", "rm", cid],
    ] {
        let out = cairn(&node, &dir, args).await;
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).lines().count(),
            1,
            "{args:?}"
        );
    }
    let failed_copy = tmp.path().join("never.txt");
    let out = cairn(
        &node,
        &dir,
        &["cat", missing, "-o", failed_copy.to_str().unwrap()],
    )
    .await;
    assert!(!out.status.success());
    assert!(!failed_copy.exists(), "a failed cat leaves no file");

    node.shutdown();
    node.join().await.unwrap();
}
