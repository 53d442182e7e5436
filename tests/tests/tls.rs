//! The admin API over TLS: a node with `admin.tls_cert_file`/`tls_key_file` serves only TLS; a
//! client that trusts the certificate gets in, a plaintext one does not; a key others can read,
//! or files that are not a certificate and key, stop the start.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cairn_proto::admin;
use cairn_tests::{TestNode, initialised_dir};

/// A self-signed certificate for 127.0.0.1 and localhost, written into `dir`.
fn self_signed(dir: &Path) -> Vec<u8> {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = certified.cert.pem();
    std::fs::write(dir.join("admin.crt"), &cert).unwrap();
    cairn_node::secrets::write_secret(
        &dir.join("admin.key"),
        certified.key_pair.serialize_pem().as_bytes(),
        true,
    )
    .unwrap();
    cert.into_bytes()
}

fn with_tls(config: &mut cairn_config::Config) {
    config.admin.tls_cert_file = "admin.crt".into();
    config.admin.tls_key_file = "admin.key".into();
}

#[tokio::test]
async fn a_tls_node_serves_clients_that_trust_its_certificate_and_no_plaintext() {
    let (_tmp, dir) = initialised_dir().unwrap();
    let ca = self_signed(&dir);
    let node = TestNode::start_with(&dir, with_tls).await.unwrap();
    let url = format!("https://{}", node.handle.admin_addr());
    let token = node.token("admin.token").unwrap();

    let mut client = cairn_node::client::connect_with(&url, &token, Some(&ca))
        .await
        .unwrap();
    let status = client
        .status(admin::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.peer_id, node.handle.peer_id());

    // Plaintext gRPC to a TLS port fails; so does TLS without a certificate to trust, and TLS
    // that trusts some other certificate.
    let plain = cairn_node::client::connect(&node.url(), &token).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c.status(admin::StatusRequest {}).await.is_err(),
    };
    assert!(refused, "plaintext reached a TLS-only admin API");
    let err = cairn_node::client::connect_with(&url, &token, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--ca-cert"), "{err}");
    let other = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let stranger =
        cairn_node::client::connect_with(&url, &token, Some(other.cert.pem().as_bytes())).await;
    let refused = match stranger {
        Err(_) => true,
        Ok(mut c) => c.status(admin::StatusRequest {}).await.is_err(),
    };
    assert!(refused, "a client trusting another certificate got in");
    drop(client);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_readable_key_or_files_that_are_not_pem_stop_the_start() {
    let (_tmp, dir) = initialised_dir().unwrap();
    self_signed(&dir);
    let key = dir.join("admin.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = TestNode::start_with(&dir, with_tls)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("admin.key") && err.contains("chmod 600"),
        "{err}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.join("admin.crt"), b"not a certificate").unwrap();
    let err = TestNode::start_with(&dir, with_tls)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("PEM certificate"), "{err}");
}

#[tokio::test]
async fn missing_tls_files_stop_the_start_rather_than_fall_back_to_plaintext() {
    let (_tmp, dir) = initialised_dir().unwrap();
    let err = TestNode::start_with(&dir, with_tls)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin.tls_cert_file"), "{err}");
}
