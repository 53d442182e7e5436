//! The admin API's authorisation, method by method: every method the service descriptor names is
//! called with no token, a wrong token, the read-only token and the admin token, and must be
//! refused or let through exactly as the one table (`cairn_node::api::auth::required_role`)
//! says — a method added to the .proto is covered here without anyone writing a test for it.

// Test helpers may fail loudly: a failure here is a failed test.
#![allow(clippy::unwrap_used)]

use cairn_node::api::auth::{ADMIN_SERVICE, Role, required_role};
use cairn_tests::TestNode;
use prost::Message;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// The admin service's methods, from the descriptor the server itself registers for reflection.
fn admin_methods() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(cairn_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            if format!("{}.{}", file.package(), service.name()) == ADMIN_SERVICE {
                methods.extend(service.method.iter().map(|m| m.name().to_owned()));
            }
        }
    }
    methods
}

/// Calls `path` with one empty message (a unary call and a stream of one look the same on the
/// wire) and reads the whole answer; returns its status code.
async fn call(channel: &Channel, path: &str, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(tokio_stream::once(()));
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path = PathAndQuery::try_from(path).unwrap();
    let mut stream = match grpc.streaming(request, path, codec).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status.code(),
    };
    loop {
        match stream.message().await {
            Ok(Some(())) => continue,
            Ok(None) => return Code::Ok,
            Err(status) => return status.code(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_method_is_authorised_by_the_table() {
    let (_tmp, dir) = cairn_tests::initialised_dir().unwrap();
    // Every call below is one client's: keep the per-client limit out of the way.
    let node = TestNode::start_with(&dir, |c| {
        c.admin.requests_per_second = 10_000;
        c.admin.failed_auth_per_second = 10_000;
    })
    .await
    .unwrap();
    let channel = node.channel().await.unwrap();
    let readonly = node.token("readonly.token").unwrap();
    let methods = admin_methods();
    assert_eq!(methods.len(), 22, "the descriptor lists {methods:?}");
    let mut reads = 0;
    for method in &methods {
        let path = format!("/{ADMIN_SERVICE}/{method}");
        let needed = required_role(&path).unwrap();
        assert_eq!(
            call(&channel, &path, None).await,
            Code::Unauthenticated,
            "{method} without a token"
        );
        assert_eq!(
            call(&channel, &path, Some("not-the-token")).await,
            Code::Unauthenticated,
            "{method} with a wrong token"
        );
        let as_reader = call(&channel, &path, Some(&readonly)).await;
        match needed {
            Role::ReadOnly => {
                reads += 1;
                assert!(
                    !matches!(as_reader, Code::Unauthenticated | Code::PermissionDenied),
                    "{method} refused the read-only token: {as_reader:?}"
                );
            }
            Role::Admin => assert_eq!(
                as_reader,
                Code::PermissionDenied,
                "{method} let the read-only token through"
            ),
        }
        // Re-read each time: RotateToken, called with the admin token, replaces it.
        let admin = node.token("admin.token").unwrap();
        let as_admin = call(&channel, &path, Some(&admin)).await;
        assert!(
            !matches!(as_admin, Code::Unauthenticated | Code::PermissionDenied),
            "{method} refused the admin token: {as_admin:?}"
        );
    }
    assert_eq!(reads, 9, "read-only methods");
    // The services that must answer without a token still do.
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(health.is_ok(), "{health:?}");
    node.stop().await.unwrap();
}
