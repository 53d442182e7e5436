//! `cairn init` and `cairn id` as an operator runs them: the real binary in a temporary folder.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        // The caller's environment must not steer the test.
        .env_remove("CAIRN_DATA_DIR")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_makes_a_private_data_dir_and_id_reads_it_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let dir_arg = dir.to_str().unwrap();
    let init: serde_json::Value =
        serde_json::from_str(&stdout(&cairn(&["init", "--data-dir", dir_arg, "--json"]))).unwrap();
    let peer_id = init["peer_id"].as_str().unwrap().to_owned();
    assert!(peer_id.starts_with("12D3KooW"), "{peer_id}");
    for file in [
        "config.toml",
        "identity.key",
        "admin.token",
        "readonly.token",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    let admin = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let readonly = std::fs::read_to_string(dir.join("readonly.token")).unwrap();
    assert_eq!(admin.trim().len(), 64);
    assert_ne!(admin, readonly);

    let id: serde_json::Value =
        serde_json::from_str(&stdout(&cairn(&["id", "--data-dir", dir_arg, "--json"]))).unwrap();
    assert_eq!(id["peer_id"], peer_id.as_str());
    assert_eq!(id["addrs"][0], "/ip4/0.0.0.0/tcp/4101");
    // The written config is valid and names this data directory.
    let config = dir.join("config.toml");
    stdout(&cairn(&["config", "validate", config.to_str().unwrap()]));
    let shown = stdout(&cairn(&["config", "show", config.to_str().unwrap()]));
    assert!(
        shown.contains(&format!("data_dir = \"{}\"", dir.display())),
        "{shown}"
    );
    // Plain `id` prints the peer ID first.
    let text = stdout(&cairn(&["id", "--data-dir", dir_arg]));
    assert_eq!(text.lines().next(), Some(peer_id.as_str()));
}

#[test]
fn init_refuses_to_replace_an_identity_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let first = stdout(&cairn(&["init", "--data-dir", dir]));
    let again = cairn(&["init", "--data-dir", dir]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("--force") && err.contains("already exists"),
        "{err}"
    );
    assert_eq!(
        stdout(&cairn(&["id", "--data-dir", dir])).lines().next(),
        first.lines().next()
    );
    let forced = stdout(&cairn(&["init", "--data-dir", dir, "--force"]));
    assert_ne!(forced, first, "--force makes a new identity");
}

#[test]
fn a_key_readable_by_others_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    stdout(&cairn(&["init", "--data-dir", dir]));
    let key = tmp.path().join("identity.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = cairn(&["id", "--data-dir", dir]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("chmod 600 {}", key.display())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one-line reason: {err}");
}

#[test]
fn a_damaged_key_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    stdout(&cairn(&["init", "--data-dir", dir]));
    std::fs::write(tmp.path().join("identity.key"), b"garbage").unwrap();
    let out = cairn(&["id", "--data-dir", dir]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("identity.key") && err.contains("not a valid"),
        "{err}"
    );
}
