//! The `--json` contract: every command that takes `--json` is run for real (the `cairn` binary
//! against a node in this process, or on its own for the commands that need no daemon), and its
//! output is checked against the operator's interface (DESIGN.md §11, README "Scripting"):
//!
//! - the shape rule: stdout is JSON Lines — every line one JSON object, one line per thing
//!   reported (a list prints a line per item);
//! - the fields each command documents, with their JSON types.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;

use cairn_node::{Node, NodeHandle};
use serde_json::Value;

/// A JSON type a documented field must have.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Str,
    Num,
    Bool,
    List,
    Obj,
    /// A number or null (`min_failure_budget` before any replicated pin).
    NumOrNull,
    /// A string or null (`capability` without `--encrypt`).
    StrOrNull,
}

fn has_kind(value: &Value, kind: Kind) -> bool {
    match kind {
        Kind::Str => value.is_string(),
        Kind::Num => value.is_number(),
        Kind::Bool => value.is_boolean(),
        Kind::List => value.is_array(),
        Kind::Obj => value.is_object(),
        Kind::NumOrNull => value.is_number() || value.is_null(),
        Kind::StrOrNull => value.is_string() || value.is_null(),
    }
}

use Kind::*;

/// Runs `cairn ARGS --json [--api … --token-file …]`; the output must follow the shape rule.
/// Returns its lines, parsed.
fn run(args: &[&str], api: Option<(&NodeHandle, &Path)>) -> Vec<serde_json::Map<String, Value>> {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
    command
        .args(args)
        .arg("--json")
        .env_remove("CAIRN_DATA_DIR");
    if let Some((node, dir)) = api {
        command
            .args(["--api", &format!("http://{}", node.admin_addr())])
            .arg("--token-file")
            .arg(dir.join("admin.token"));
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "cairn {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .map(|line| match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(object)) => object,
            other => {
                panic!("cairn {args:?}: a line that is not one JSON object: {line:?} ({other:?})")
            }
        })
        .collect()
}

/// Every line carries `fields`, each of its kind.
fn check(args: &[&str], lines: &[serde_json::Map<String, Value>], fields: &[(&str, Kind)]) {
    for line in lines {
        for (field, kind) in fields {
            let value = line
                .get(*field)
                .unwrap_or_else(|| panic!("cairn {args:?}: no `{field}` in {line:?}"));
            assert!(
                has_kind(value, *kind),
                "cairn {args:?}: `{field}` is {value}, not {kind:?}"
            );
        }
    }
}

/// Runs a command and checks it printed `lines` lines, each with `fields`.
fn expect(
    args: &[&str],
    api: Option<(&NodeHandle, &Path)>,
    lines: usize,
    fields: &[(&str, Kind)],
) -> Vec<serde_json::Map<String, Value>> {
    let printed = run(args, api);
    assert_eq!(printed.len(), lines, "cairn {args:?} printed {printed:?}");
    check(args, &printed, fields);
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_command_prints_its_documented_fields_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let d = dir.to_str().unwrap();

    // No daemon needed.
    expect(
        &["init", "--data-dir", d],
        None,
        1,
        &[("peer_id", Str), ("data_dir", Str), ("config", Str)],
    );
    cairn_tests::daemon::write_config(&dir, |_| {}).unwrap();
    expect(
        &["id", "--data-dir", d],
        None,
        1,
        &[("peer_id", Str), ("addrs", List)],
    );
    let config = dir.join("config.toml");
    let c = config.to_str().unwrap();
    expect(&["config", "validate", c], None, 1, &[("valid", Bool)]);
    expect(
        &["config", "show", c],
        None,
        1,
        &[("data_dir", Str), ("p2p", Obj), ("replication", Obj)],
    );
    let key = tmp.path().join("operator.key");
    let k = key.to_str().unwrap();
    let made = expect(
        &["operator-key", "new", k],
        None,
        1,
        &[("key_id", Str), ("path", Str)],
    );
    let shown = expect(&["operator-key", "id", k], None, 1, &[("key_id", Str)]);
    assert_eq!(made[0]["key_id"], shown[0]["key_id"]);
    let cluster = tmp.path().join("cluster");
    expect(
        &["init-cluster", "a", "b", "--out", cluster.to_str().unwrap()],
        None,
        2,
        &[("host", Str), ("peer_id", Str), ("data_dir", Str)],
    );

    // Against a running node.
    let node = Node::spawn(cairn_tests::test_config(&dir).unwrap().validate().unwrap())
        .await
        .unwrap();
    let api = Some((&node, dir.as_path()));
    let file = tmp.path().join("two.bin");
    std::fs::write(&file, cairn_tests::random_bytes(300_000, 1)).unwrap();
    let other = tmp.path().join("one.bin");
    std::fs::write(&other, b"one").unwrap();
    let added = expect(
        &["add", file.to_str().unwrap(), other.to_str().unwrap()],
        api,
        2,
        &[
            ("cid", Str),
            ("name", Str),
            ("size", Num),
            ("blocks", Num),
            ("capability", StrOrNull),
            ("replication_factor", Num),
            ("holders", List),
            ("under_replicated", Bool),
        ],
    );
    let cid = added[0]["cid"].as_str().unwrap().to_owned();
    let small = added[1]["cid"].as_str().unwrap().to_owned();
    let encrypted = expect(&["add", "--encrypt", other.to_str().unwrap()], api, 1, &[]);
    check(&["add", "--encrypt"], &encrypted, &[("capability", Str)]);

    expect(
        &["status"],
        api,
        1,
        &[
            ("peer_id", Str),
            ("version", Str),
            ("connected_peers", Num),
            ("listen_addrs", List),
            ("blocks", Num),
            ("bytes", Num),
            ("pins", Num),
            ("quarantined_blocks", Num),
            ("under_replicated_pins", Num),
            ("min_failure_budget", NumOrNull),
            ("network", Str),
        ],
    );
    let status = expect(
        &["pin", "status", &cid],
        api,
        1,
        &[
            ("cid", Str),
            ("state", Str),
            ("replication_factor", Num),
            ("live_replicas", Num),
            ("failure_budget", Num),
            ("holders", List),
            ("record_version", Num),
            ("record_signer", Str),
            ("owners", List),
        ],
    );
    let state = status[0]["state"].as_str().unwrap();
    assert!(
        ["ok", "under_replicated", "repairing", "unpinned", "lost"].contains(&state),
        "{state}"
    );
    let holders: Vec<serde_json::Map<String, Value>> = status[0]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_object().cloned().expect("a holder is an object"))
        .collect();
    assert_eq!(holders.len(), 1, "this node holds its own copy");
    check(
        &["pin", "status", "(holders)"],
        &holders,
        &[
            ("peer_id", Str),
            ("state", Str),
            ("live", Bool),
            ("audited", Bool),
            ("detail", Str),
        ],
    );
    // Three pins (two files and the encrypted one): a line each.
    expect(&["pin", "ls"], api, 3, &[("cid", Str), ("mode", Str)]);
    let block = tmp.path().join("block.bin");
    std::fs::write(&block, b"a lone block").unwrap();
    let put = expect(
        &["block", "put", block.to_str().unwrap()],
        api,
        1,
        &[("cid", Str), ("size", Num)],
    );
    let block_cid = put[0]["cid"].as_str().unwrap().to_owned();
    expect(
        &["block", "stat", &block_cid],
        api,
        1,
        &[("cid", Str), ("size", Num), ("last_verified", Num)],
    );
    expect(
        &["pin", "add", "--direct", &block_cid],
        api,
        1,
        &[
            ("cid", Str),
            ("pinned", Bool),
            ("replication_factor", Num),
            ("holders", List),
            ("under_replicated", Bool),
        ],
    );

    expect(
        &["pin", "rm", &block_cid],
        api,
        1,
        &[("cid", Str), ("pinned", Bool)],
    );
    expect(
        &["block", "rm", &block_cid],
        api,
        1,
        &[("cid", Str), ("removed", Bool)],
    );

    expect(
        &["repo", "stat"],
        api,
        1,
        &[
            ("blocks", Num),
            ("bytes", Num),
            ("quarantined_blocks", Num),
            ("max_bytes", Num),
        ],
    );
    let scrub_fields = [
        ("blocks_checked", Num),
        ("bytes_checked", Num),
        ("corrupt", List),
    ];
    expect(&["repo", "verify"], api, 1, &scrub_fields);
    expect(&["repo", "scrub"], api, 1, &scrub_fields);

    let car = tmp.path().join("two.car");
    expect(
        &["car", "export", &cid, car.to_str().unwrap()],
        api,
        1,
        &[("cid", Str), ("file", Str), ("bytes", Num)],
    );
    expect(
        &["car", "import", car.to_str().unwrap()],
        api,
        1,
        &[("root", Str), ("blocks", Num), ("bytes", Num)],
    );
    let saved = tmp.path().join("saved.bin");
    expect(
        &["get", &cid, "-o", saved.to_str().unwrap()],
        api,
        1,
        &[("file", Str)],
    );
    expect(
        &["pin", "rm", &small],
        api,
        1,
        &[("cid", Str), ("pinned", Bool)],
    );
    expect(
        &["pin", "ls", "--unpinned"],
        api,
        1,
        &[("cid", Str), ("mode", Str), ("expires_at_ms", Num)],
    );
    expect(
        &["pin", "restore", &small],
        api,
        1,
        &[("cid", Str), ("pinned", Bool), ("replication_factor", Num)],
    );
    expect(
        &["pin", "rm", &small],
        api,
        1,
        &[("cid", Str), ("pinned", Bool)],
    );
    expect(
        &["repo", "gc"],
        api,
        1,
        &[("removed_blocks", Num), ("removed_bytes", Num)],
    );

    // Peers: a second node to connect to, list and ban.
    let (_other_tmp, other_dir) = cairn_tests::initialised_dir().unwrap();
    let peer = Node::spawn(
        cairn_tests::test_config(&other_dir)
            .unwrap()
            .validate()
            .unwrap(),
    )
    .await
    .unwrap();
    let peer_addr = format!("{}/p2p/{}", peer.p2p_addrs()[0], peer.peer_id());
    expect(
        &["peers", "connect", &peer_addr],
        api,
        1,
        &[("peer_id", Str), ("addr", Str)],
    );
    let listed = expect(
        &["peers", "ls"],
        api,
        1,
        &[
            ("peer_id", Str),
            ("addrs", List),
            ("connected", Bool),
            ("in_routing_table", Bool),
        ],
    );
    assert_eq!(listed[0]["peer_id"], peer.peer_id());
    assert_eq!(listed[0]["connected"], true);
    // With --all, the routing table's entries too (here the same peer: one line).
    expect(
        &["peers", "ls", "--all"],
        api,
        1,
        &[
            ("peer_id", Str),
            ("connected", Bool),
            ("in_routing_table", Bool),
        ],
    );
    expect(
        &["peers", "ban", peer.peer_id()],
        api,
        1,
        &[("peer_id", Str), ("banned", Bool)],
    );

    expect(&["health"], api, 1, &[("serving", Bool)]);
    expect(
        &["rotate-token", "--readonly"],
        api,
        1,
        &[("token_file", Str)],
    );

    peer.shutdown();
    peer.join().await.unwrap();
    node.shutdown();
    node.join().await.unwrap();

    // The identity key, encrypted in place (the node is stopped).
    let passphrase = tmp.path().join("passphrase");
    cairn_node::secrets::write_secret(&passphrase, b"a long enough passphrase", false).unwrap();
    expect(
        &[
            "encrypt-key",
            "--data-dir",
            d,
            "--passphrase-file",
            passphrase.to_str().unwrap(),
        ],
        None,
        1,
        &[("encrypted", Str)],
    );
}
