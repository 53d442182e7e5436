//! The `cairn` client commands as scripts use them: the real binary against a node running in
//! this process, JSON output and exit codes.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Output;

use cairn_node::{Node, NodeHandle};

async fn start(dir: &Path) -> NodeHandle {
    cairn_node::init::init(dir, false).unwrap();
    Node::spawn(cairn_tests::test_config(dir).unwrap().validate().unwrap())
        .await
        .unwrap()
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
    // Nothing vanishes at once: the unpinned file waits out the unpin grace, listed with its
    // expiry, and `pin restore` brings it back.
    let gc = json(&cairn(&node, &dir, &["repo", "gc", "--json"]).await);
    assert_eq!(gc["removed_blocks"], 0);
    let waiting = json(&cairn(&node, &dir, &["pin", "ls", "--unpinned", "--json"]).await);
    assert_eq!(waiting["cid"], cid);
    assert_eq!(waiting["mode"], "unpinned");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let expires = waiting["expires_at_ms"].as_u64().unwrap();
    assert!(expires > now_ms + 23 * 3600 * 1000, "{waiting}");
    let restored = json(&cairn(&node, &dir, &["pin", "restore", "--json", cid]).await);
    assert_eq!(restored["pinned"], true);
    let pins = json(&cairn(&node, &dir, &["pin", "ls", "--json"]).await);
    assert_eq!(pins["cid"], cid);
    let none = cairn(&node, &dir, &["pin", "ls", "--unpinned", "--json"]).await;
    assert!(none.stdout.is_empty(), "restored: no longer waiting");
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
    // The token never goes out in plain text to another machine unless told so.
    let token = dir.join("admin.token");
    let out = cairn_alone(&[
        "status",
        "--api",
        "http://192.0.2.7:5001",
        "--token-file",
        token.to_str().unwrap(),
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
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

/// Every file under `dir`, read whole.
fn all_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            out.push(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_files_stay_secret_from_the_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let node = start(&dir).await;
    // Text a node could recognise anywhere: no repeats, so every window is distinctive.
    let secret: Vec<u8> = (0..300_000u32)
        .flat_map(|i| format!("secret line {i}\n").into_bytes())
        .collect();
    let file = tmp.path().join("diary.txt");
    std::fs::write(&file, &secret).unwrap();

    let added = json(
        &cairn(
            &node,
            &dir,
            &["add", "--encrypt", "--json", file.to_str().unwrap()],
        )
        .await,
    );
    let capability = added["capability"].as_str().unwrap().to_owned();
    let cap: cairn_node::encrypt::Capability = capability.parse().unwrap();
    assert_eq!(cap.root.to_string(), added["cid"].as_str().unwrap());
    let out = cairn(&node, &dir, &["cat", &capability]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == secret, "decrypted bytes differ");

    // What the node holds: ciphertext only, no key.
    let ciphertext = cairn(&node, &dir, &["cat", added["cid"].as_str().unwrap()])
        .await
        .stdout;
    assert!(ciphertext.len() > secret.len());
    node.shutdown();
    node.join().await.unwrap();
    let stored = all_files(&dir);
    for at in [0, 1000, secret.len() / 2, secret.len() - 64] {
        let window = &secret[at..at + 64];
        assert!(
            !stored.iter().any(|f| contains(f, window)),
            "plaintext at {at} is on the node"
        );
    }
    assert!(
        !stored.iter().any(|f| contains(f, cap.key())),
        "the key is on the node"
    );

    // Tampered or cut ciphertext, stored as new files: the capability's key refuses them.
    let node = cairn_node::Node::spawn(cairn_tests::test_config(&dir).unwrap().validate().unwrap())
        .await
        .unwrap();
    let mut tampered = ciphertext.clone();
    tampered[200_000] ^= 1;
    let cut = ciphertext[..ciphertext.len() - 100].to_vec();
    for (what, bytes) in [("tampered", tampered), ("truncated", cut)] {
        let path = tmp.path().join(what);
        std::fs::write(&path, &bytes).unwrap();
        let added = json(&cairn(&node, &dir, &["add", "--json", path.to_str().unwrap()]).await);
        let forged = cairn_node::encrypt::Capability::new(
            added["cid"].as_str().unwrap().parse().unwrap(),
            *cap.key(),
        );
        let target = tmp.path().join(format!("{what}.out"));
        let out = cairn(
            &node,
            &dir,
            &["cat", &forged.to_string(), "-o", target.to_str().unwrap()],
        )
        .await;
        assert!(!out.status.success(), "{what} ciphertext was accepted");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("cannot decrypt"),
            "{what}"
        );
        assert!(!target.exists(), "{what}: no partial plaintext file");
    }
    node.shutdown();
    node.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_speaks_tls_when_the_data_directory_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    cairn_node::init::init(&dir, false).unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::write(dir.join("admin.crt"), certified.cert.pem()).unwrap();
    cairn_node::secrets::write_secret(
        &dir.join("admin.key"),
        certified.key_pair.serialize_pem().as_bytes(),
        false,
    )
    .unwrap();
    let tls = |c: &mut cairn_config::Config| {
        c.admin.tls_cert_file = "admin.crt".into();
        c.admin.tls_key_file = "admin.key".into();
    };
    cairn_tests::daemon::write_config(&dir, tls).unwrap();
    let node = Node::spawn(cairn_tests::test_config(&dir).unwrap().validate().unwrap())
        .await
        .unwrap();
    // The CLI finds the address, the scheme and the certificate to trust in config.toml.
    let port = node.admin_addr().port();
    cairn_tests::daemon::write_config(&dir, |c| {
        tls(c);
        c.admin.listen = format!("127.0.0.1:{port}");
    })
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["status", "--json", "--data-dir", dir.to_str().unwrap()])
        .env_remove("CAIRN_DATA_DIR")
        .output()
        .await
        .unwrap();
    assert_eq!(json(&out)["peer_id"], node.peer_id());
    // Plain http to the same port is refused, with a one-line reason and a non-zero exit.
    let out = cairn(&node, &dir, &["status"]).await;
    assert!(!out.status.success());
    node.shutdown();
    node.join().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_saves_a_file_under_its_cid_or_the_name_given() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let node = start(&dir).await;
    let file = tmp.path().join("in.bin");
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let added = json(&cairn(&node, &dir, &["add", "--json", file.to_str().unwrap()]).await);
    let cid = added["cid"].as_str().unwrap();

    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let api = format!("http://{}", node.admin_addr());
    let token = dir.join("admin.token");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["get", cid, "--json", "--api", &api, "--token-file"])
        .arg(&token)
        .current_dir(&work)
        .env_remove("CAIRN_DATA_DIR")
        .output()
        .await
        .unwrap();
    assert_eq!(json(&out)["file"], cid);
    assert_eq!(std::fs::read(work.join(cid)).unwrap(), data);

    let named = tmp.path().join("named.bin");
    let out = cairn(&node, &dir, &["get", cid, "-o", named.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&named).unwrap(), data);

    // A malformed CID fails before anything is written.
    let out = cairn(
        &node,
        &dir,
        &["get", "../not-a-cid", "-o", named.to_str().unwrap()],
    )
    .await;
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read(&named).unwrap(),
        data,
        "the earlier copy is untouched"
    );
    node.shutdown();
    node.join().await.unwrap();
}

/// Runs `cairn ARGS` with no daemon (`operator-key`).
async fn cairn_alone(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .env_remove("CAIRN_DATA_DIR")
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_key_held_by_the_cli_unpins_and_restores_and_an_unknown_one_cannot() {
    let tmp = tempfile::tempdir().unwrap();
    let key = tmp.path().join("operator.key");
    let made = json(&cairn_alone(&["operator-key", "new", "--json", key.to_str().unwrap()]).await);
    let key_id = made["key_id"].as_str().unwrap().to_owned();
    // An existing key is never overwritten by accident.
    let again = cairn_alone(&["operator-key", "new", key.to_str().unwrap()]).await;
    assert!(!again.status.success());
    let stranger = tmp.path().join("stranger.key");
    json(&cairn_alone(&["operator-key", "new", "--json", stranger.to_str().unwrap()]).await);

    let dir = tmp.path().join("node");
    cairn_node::init::init(&dir, false).unwrap();
    let mut config = cairn_tests::test_config(&dir).unwrap();
    config.replication.operators = vec![key_id];
    let node = Node::spawn(config.validate().unwrap()).await.unwrap();
    let file = tmp.path().join("kept.txt");
    std::fs::write(&file, b"kept by an operator\n").unwrap();
    let added = json(&cairn(&node, &dir, &["add", "--json", file.to_str().unwrap()]).await);
    let cid = added["cid"].as_str().unwrap();

    // A key the cluster does not trust: refused, one line on stderr, nothing changed.
    let out = cairn(
        &node,
        &dir,
        &[
            "pin",
            "rm",
            "--operator-key",
            stranger.to_str().unwrap(),
            cid,
        ],
    )
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("may not change"), "{stderr}");
    let pins = json(&cairn(&node, &dir, &["pin", "ls", "--json"]).await);
    assert_eq!(pins["cid"], cid);

    let removed = json(
        &cairn(
            &node,
            &dir,
            &[
                "pin",
                "rm",
                "--json",
                "--operator-key",
                key.to_str().unwrap(),
                cid,
            ],
        )
        .await,
    );
    assert_eq!(removed["pinned"], false);
    let waiting = json(&cairn(&node, &dir, &["pin", "ls", "--unpinned", "--json"]).await);
    assert_eq!(waiting["cid"], cid);
    let restored = json(
        &cairn(
            &node,
            &dir,
            &[
                "pin",
                "restore",
                "--json",
                "--operator-key",
                key.to_str().unwrap(),
                cid,
            ],
        )
        .await,
    );
    assert_eq!(restored["pinned"], true);
    let pins = json(&cairn(&node, &dir, &["pin", "ls", "--json"]).await);
    assert_eq!(
        (&pins["cid"], &pins["mode"]),
        (&added["cid"], &"recursive".into())
    );
    let status = json(&cairn(&node, &dir, &["pin", "status", "--json", cid]).await);
    let owners = status["owners"].as_array().unwrap();
    assert_eq!(owners.len(), 1, "{status}");
    assert_eq!(owners[0]["owner"], node.peer_id());
    assert_eq!(owners[0]["signer"], made["key_id"]);
    node.shutdown();
    node.join().await.unwrap();
}
