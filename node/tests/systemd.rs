//! The systemd unit verifies (`systemd-analyze verify`, with ExecStart pointed at the binary this
//! build made) and stays hardened (`systemd-analyze security --offline`, exposure ≤ 2.0), and the
//! identity key can come from a systemd credential.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_cairn");

/// The unit with the installed binary's path replaced by this build's.
fn unit_for_this_build(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../systemd/cairn.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/cairn daemon"));
    let path = dir.join("cairn.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/cairn", BINARY)).unwrap();
    path
}

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze (Debian's systemd package; `make deps` installs it)")
}

#[test]
fn the_unit_verifies_and_its_exposure_stays_low() {
    let tmp = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(tmp.path());
    let unit = unit.to_str().unwrap();
    let verified = systemd_analyze(&["verify", unit]);
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(verified.status.success(), "{complaints}");
    assert!(
        complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );

    let security = systemd_analyze(&["security", "--offline=true", unit]);
    let report = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for cairn.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}"));
    println!("systemd-analyze security: exposure {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure}:\n{report}");
}

#[test]
fn the_identity_key_comes_from_a_systemd_credential_when_one_is_passed() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let init = Command::new(BINARY)
        .args(["--json", "init", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(init.status.success());
    let own: serde_json::Value = serde_json::from_slice(&init.stdout).unwrap();
    let id = |credentials: Option<&Path>| {
        let mut command = Command::new(BINARY);
        command.args(["id", "--data-dir"]).arg(&data);
        if let Some(dir) = credentials {
            command.env("CREDENTIALS_DIRECTORY", dir);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(id(None), own["peer_id"].as_str().unwrap());

    // A credential directory holding another key: that key is the node's identity.
    let credentials = tmp.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let other = cairn_p2p::NodeIdentity::generate();
    cairn_node::secrets::write_secret(
        &credentials.join("identity.key"),
        &other.to_bytes().unwrap(),
        false,
    )
    .unwrap();
    assert_eq!(id(Some(&credentials)), other.peer_id().to_string());
    // A credential directory without the key leaves the data directory's key in use.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(id(Some(&empty)), own["peer_id"].as_str().unwrap());
}
