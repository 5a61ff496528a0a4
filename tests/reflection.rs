//! The socket also serves gRPC reflection (v1 and v1alpha) and the standard
//! health service, so generic clients (grpcurl, grpcio's reflection client)
//! need no .proto file.

mod common;

use common::{Driver, node_args};
use prost::Message;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

async fn reflect(
    client: &mut ServerReflectionClient<tonic::transport::Channel>,
    request: MessageRequest,
) -> MessageResponse {
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp: ServerReflectionResponse = stream.message().await.unwrap().unwrap();
    resp.message_response.unwrap()
}

#[tokio::test]
async fn reflection_lists_the_services_served_and_describes_them() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Driver::start(dir.path(), node_args("node-a")).await;
    let mut client = ServerReflectionClient::new(driver.channel().await);

    let MessageResponse::ListServicesResponse(list) =
        reflect(&mut client, MessageRequest::ListServices(String::new())).await
    else {
        panic!("not a list_services answer");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "csi.v1.Identity",
            "csi.v1.Node",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
        "a node-only process advertises Identity and Node, not Controller"
    );

    // The descriptor a client needs to build requests without csi.proto.
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &mut client,
        MessageRequest::FileContainingSymbol("csi.v1.Node".into()),
    )
    .await
    else {
        panic!("not a file descriptor answer");
    };
    let file = files
        .file_descriptor_proto
        .iter()
        .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).unwrap())
        .find(|f| f.package() == "csi.v1")
        .expect("csi.proto among the answer");
    let node = file.service.iter().find(|s| s.name() == "Node").unwrap();
    assert!(node.method.iter().any(|m| m.name() == "NodeStageVolume"));

    // Every advertised service resolves to a descriptor (a generic client
    // resolves each one it lists).
    for name in &names {
        let answer = reflect(&mut client, MessageRequest::FileContainingSymbol(name.clone())).await;
        assert!(
            matches!(answer, MessageResponse::FileDescriptorResponse(_)),
            "{name}: {answer:?}"
        );
    }
    driver.stop().await;
}

#[tokio::test]
async fn health_answers_serving_for_the_server_and_each_service() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Driver::start(dir.path(), node_args("node-a")).await;
    let mut health = HealthClient::new(driver.channel().await);
    for service in ["", "csi.v1.Identity", "csi.v1.Node"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "service {service:?}");
    }
    // Not served by a node-only process.
    let err = health
        .check(HealthCheckRequest {
            service: "csi.v1.Controller".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    driver.stop().await;
}
