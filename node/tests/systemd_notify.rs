//! Under systemd (`Type=notify`) the daemon says READY=1 once it serves and STOPPING=1 when SIGTERM
//! arrives, then exits cleanly.

// Test helpers may fail loudly: a failure here is a failed test, not a crashed node.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("no notification within the deadline");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn the_daemon_reports_ready_and_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    cairn_node::init::init(&dir, false).unwrap();
    cairn_tests::daemon::write_config(&dir, |_| {}).unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();

    let mut daemon = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["daemon", "--data-dir", dir.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env_remove("CAIRN_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = next_message(&socket);
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    let sent = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let stopping = next_message(&socket);
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    assert!(
        daemon.wait().unwrap().success(),
        "the daemon stops cleanly on SIGTERM"
    );
}
