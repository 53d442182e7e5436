//! Secrets at run time: the admin and read-only tokens rotate without a restart (over the API,
//! or by replacing the file and sending SIGHUP), and no secret — tokens old and new, the identity
//! key, the swarm key — ever appears in the daemon's log, at debug level, through a session that
//! exercises every path that handles them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use cairn_proto::admin;
use cairn_tests::daemon::{Daemon, whole_log, write_config};
use cairn_tests::eventually;
use tonic::Code;

/// How long a daemon gets to act on a signal.
const WAIT: Duration = Duration::from_secs(30);

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cairn"))
}

async fn status_with(url: &str, token: &str) -> Result<admin::StatusResponse, tonic::Status> {
    let mut client = cairn_node::client::connect(url, token).await.unwrap();
    client
        .status(admin::StatusRequest {})
        .await
        .map(tonic::Response::into_inner)
}

fn token(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_owned()
}

/// Every form a secret of `bytes` could take in a log line.
fn forms(bytes: &[u8]) -> Vec<String> {
    use std::fmt::Write;
    let hex = bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    });
    let mut forms = vec![hex, format!("{bytes:?}")];
    if let Ok(text) = std::str::from_utf8(bytes) {
        forms.push(text.trim().to_owned());
    }
    forms.retain(|f| f.len() >= 16);
    forms
}

#[tokio::test]
async fn tokens_rotate_without_a_restart_and_no_secret_is_ever_logged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    cairn_node::init::init(&dir, false).unwrap();
    let swarm_key = cairn_p2p::SwarmKey::generate().unwrap().to_file_text();
    cairn_node::secrets::write_secret(&dir.join("swarm.key"), swarm_key.as_bytes(), false).unwrap();
    write_config(&dir, |c| {
        c.log.level = "debug".into();
        c.p2p.swarm_key_file = "swarm.key".into();
    })
    .unwrap();
    let first_admin = token(&dir, "admin.token");
    let first_readonly = token(&dir, "readonly.token");
    let daemon = Daemon::start(binary(), &dir).await.unwrap();
    let url = daemon.url.clone();

    // Work that touches tokens and keys: calls with good, wrong and read-only tokens, an add.
    status_with(&url, &first_admin).await.unwrap();
    assert_eq!(
        status_with(&url, "wrong-token").await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let mut client = cairn_node::client::connect(&url, &first_admin)
        .await
        .unwrap();
    let upload = admin::AddFileRequest {
        options: None,
        data: vec![7u8; 300_000].into(),
    };
    client.add_file(tokio_stream::iter([upload])).await.unwrap();
    let mut readonly = cairn_node::client::connect(&url, &first_readonly)
        .await
        .unwrap();
    let refused = readonly
        .rotate_token(admin::RotateTokenRequest { readonly: false })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Over the API: the admin token changes, on disk first; the old one is refused at once.
    let rotated = client
        .rotate_token(admin::RotateTokenRequest { readonly: false })
        .await
        .unwrap()
        .into_inner();
    assert!(rotated.token_file.ends_with("admin.token"));
    let second_admin = token(&dir, "admin.token");
    assert_ne!(second_admin, first_admin);
    assert_eq!(
        status_with(&url, &first_admin).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    status_with(&url, &second_admin).await.unwrap();
    // The read-only token too.
    cairn_node::client::connect(&url, &second_admin)
        .await
        .unwrap()
        .rotate_token(admin::RotateTokenRequest { readonly: true })
        .await
        .unwrap();
    let second_readonly = token(&dir, "readonly.token");
    assert_eq!(
        status_with(&url, &first_readonly).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    status_with(&url, &second_readonly).await.unwrap();

    // By hand: a new file, then SIGHUP.
    let third_admin = cairn_node::secrets::new_token().unwrap();
    cairn_node::secrets::write_secret(&dir.join("admin.token"), third_admin.as_bytes(), true)
        .unwrap();
    daemon.signal("HUP").unwrap();
    eventually("SIGHUP to reload the token", WAIT, || async {
        status_with(&url, &third_admin).await.is_ok()
    })
    .await
    .unwrap();
    assert_eq!(
        status_with(&url, &second_admin).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // A broken file and SIGHUP: the tokens in use stay.
    std::fs::write(dir.join("admin.token"), "").unwrap();
    daemon.signal("HUP").unwrap();
    eventually("the bad token file to be reported", WAIT, || async {
        daemon.whole_log().contains("tokens not reloaded")
    })
    .await
    .unwrap();
    status_with(&url, &third_admin).await.unwrap();

    daemon.stop().await.unwrap();

    let log = whole_log(&dir);
    assert!(
        log.contains("token rotated") && log.lines().count() > 20,
        "a thin log proves nothing"
    );
    let identity = std::fs::read(dir.join("identity.key")).unwrap();
    let named: [(&str, &[u8]); 7] = [
        ("the first admin token", first_admin.as_bytes()),
        ("the second admin token", second_admin.as_bytes()),
        ("the third admin token", third_admin.as_bytes()),
        ("the first read-only token", first_readonly.as_bytes()),
        ("the second read-only token", second_readonly.as_bytes()),
        ("the identity key", &identity),
        ("the swarm key", swarm_key.as_bytes()),
    ];
    for (name, bytes) in named {
        let mut looks = forms(bytes);
        if name == "the swarm key" {
            // Its 64 hex digits, the file's last line.
            looks.push(swarm_key.lines().last().unwrap().to_owned());
        }
        for look in looks {
            // Name the secret, never print any of it.
            assert!(!log.contains(look.as_str()), "{name} is in the log");
        }
    }
}

#[tokio::test]
async fn an_encrypted_identity_key_needs_its_passphrase_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let made = cairn_node::init::init(&dir, false).unwrap();
    write_config(&dir, |_| {}).unwrap();
    let plain = std::fs::read(dir.join("identity.key")).unwrap();
    let secret_file = |name: &str, text: &str| {
        let path = tmp.path().join(name);
        cairn_node::secrets::write_secret(&path, text.as_bytes(), false).unwrap();
        path
    };
    let passphrase = secret_file("passphrase", "a long enough passphrase\n");
    let wrong = secret_file("wrong", "not the right passphrase\n");
    let cairn = |args: &[&str], env: &[(&str, &std::path::Path)]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
        command
            .args(args)
            .arg("--data-dir")
            .arg(&dir)
            .env_remove("CREDENTIALS_DIRECTORY");
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().unwrap()
    };

    let encrypted = cairn(
        &[
            "encrypt-key",
            "--passphrase-file",
            passphrase.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        encrypted.status.success(),
        "{}",
        String::from_utf8_lossy(&encrypted.stderr)
    );
    let sealed = std::fs::read(dir.join("identity.key")).unwrap();
    assert!(sealed.starts_with(b"CAIRNK01"));
    assert!(!sealed.windows(plain.len()).any(|w| w == plain.as_slice()));
    let again = cairn(
        &[
            "encrypt-key",
            "--passphrase-file",
            passphrase.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!again.status.success(), "encrypting twice must be refused");

    // Without a passphrase, or with the wrong one: a clear error, nothing started.
    let none = cairn(&["id"], &[]);
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(
        !none.status.success() && said.contains("identity.passphrase_file"),
        "{said}"
    );
    let wrong = cairn(&["id"], &[("CAIRN_IDENTITY__PASSPHRASE_FILE", &wrong)]);
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        !wrong.status.success() && said.contains("wrong passphrase"),
        "{said}"
    );
    // With it — from the config (here by its environment override) or as a systemd credential.
    let by_config = cairn(&["id"], &[("CAIRN_IDENTITY__PASSPHRASE_FILE", &passphrase)]);
    assert!(String::from_utf8_lossy(&by_config.stdout).starts_with(&made.peer_id.to_string()));
    let credentials = tmp.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::copy(&passphrase, credentials.join("identity.passphrase")).unwrap();
    let by_credential = cairn(&["id"], &[("CREDENTIALS_DIRECTORY", &credentials)]);
    assert!(String::from_utf8_lossy(&by_credential.stdout).starts_with(&made.peer_id.to_string()));

    // The daemon starts as the same peer.
    let env = [(
        "CAIRN_IDENTITY__PASSPHRASE_FILE",
        passphrase.to_str().unwrap(),
    )];
    let daemon = Daemon::start_with_env(binary(), &dir, &env).await.unwrap();
    let admin = token(&dir, "admin.token");
    assert_eq!(
        status_with(&daemon.url, &admin).await.unwrap().peer_id,
        made.peer_id.to_string()
    );
    daemon.kill_9().await.unwrap();
}
