//! Identity service over a real unix socket.

mod common;

use std::collections::HashSet;

use common::{Driver, node_args};
use flashblade_csi::config::{Mode, Settings};
use flashblade_csi::csi::{self, identity_client::IdentityClient};

fn plugin_name_ok(name: &str) -> bool {
    // The conformance rule: ^[a-zA-Z][A-Za-z0-9-\.\_]{0,61}[a-zA-Z]$
    let b = name.as_bytes();
    (2..=63).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-._".contains(c))
}

#[tokio::test]
async fn plugin_info_and_probe_on_node_socket() {
    let dir = tempfile::tempdir().unwrap();
    let driver = Driver::start(dir.path(), node_args("node-a")).await;
    let mut client = IdentityClient::new(driver.channel().await);

    let info = client
        .get_plugin_info(csi::GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "flashblade.csi.dev");
    assert!(plugin_name_ok(&info.name));
    assert_eq!(info.vendor_version, env!("CARGO_PKG_VERSION"));

    let probe = client.probe(csi::ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true));
    driver.stop().await;
}

#[tokio::test]
async fn driver_name_is_overridable() {
    let dir = tempfile::tempdir().unwrap();
    let args = Settings {
        driver_name: Some("fb.csi.example.org".into()),
        ..node_args("n")
    };
    let driver = Driver::start(dir.path(), args).await;
    let mut client = IdentityClient::new(driver.channel().await);
    let info = client
        .get_plugin_info(csi::GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "fb.csi.example.org");
    driver.stop().await;
}

fn controller_args(dir: &std::path::Path, url: &str) -> Settings {
    let token = dir.join("token");
    std::fs::write(&token, "T-00000000-0000-0000-0000-000000000000").unwrap();
    Settings {
        mode: Some(Mode::Controller),
        array: flashblade_csi::config::ArraySettings {
            management_url: Some(url.into()),
            api_token_file: Some(token),
            nfs_endpoint: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn cap_set(caps: &[csi::PluginCapability]) -> HashSet<String> {
    caps.iter().map(|c| format!("{:?}", c.r#type)).collect()
}

#[tokio::test]
async fn node_and_controller_processes_report_the_same_plugin_capabilities() {
    let node_dir = tempfile::tempdir().unwrap();
    let ctrl_dir = tempfile::tempdir().unwrap();
    let node = Driver::start(node_dir.path(), node_args("n")).await;
    // Port 9 on loopback: nothing listens, so the array is unreachable.
    let ctrl = Driver::start(
        ctrl_dir.path(),
        controller_args(ctrl_dir.path(), "http://127.0.0.1:9"),
    )
    .await;

    let node_caps = IdentityClient::new(node.channel().await)
        .get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let ctrl_caps = IdentityClient::new(ctrl.channel().await)
        .get_plugin_capabilities(csi::GetPluginCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    assert!(!node_caps.is_empty());
    assert_eq!(cap_set(&node_caps), cap_set(&ctrl_caps));
    // Only values the conformance suite knows.
    for c in &node_caps {
        match &c.r#type {
            Some(csi::plugin_capability::Type::Service(s)) => {
                assert!([1, 2, 3, 4].contains(&s.r#type), "{s:?}")
            }
            Some(csi::plugin_capability::Type::VolumeExpansion(v)) => assert!([1, 2].contains(&v.r#type)),
            None => panic!("empty capability"),
        }
    }
    node.stop().await;
    ctrl.stop().await;
}

#[tokio::test]
async fn controller_probe_is_ok_but_not_ready_when_array_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let ctrl = Driver::start(dir.path(), controller_args(dir.path(), "http://127.0.0.1:9")).await;
    let probe = IdentityClient::new(ctrl.channel().await)
        .probe(csi::ProbeRequest {})
        .await
        .expect("Probe answers OK even when not ready")
        .into_inner();
    assert_eq!(probe.ready, Some(false));
    ctrl.stop().await;
}

#[tokio::test]
async fn controller_probe_is_ready_only_with_a_token_the_array_accepts() {
    let env = common::controller_env(common::ControllerOpts::default()).await;
    let probe = IdentityClient::new(env.driver.channel().await)
        .probe(csi::ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(true));

    // A second controller with a wrong token: reachable, but not ready.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "T-00000000-0000-0000-0000-000000000000").unwrap();
    let args = flashblade_csi::config::Settings {
        mode: Some(flashblade_csi::config::Mode::Controller),
        array: flashblade_csi::config::ArraySettings {
            management_url: Some(env.mock.url.clone()),
            api_token_file: Some(token),
            ca_file: env.mock.ca_file.clone(),
            nfs_endpoint: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        },
        ..Default::default()
    };
    let wrong = Driver::start(dir.path(), args).await;
    let probe = IdentityClient::new(wrong.channel().await)
        .probe(csi::ProbeRequest {})
        .await
        .expect("Probe answers OK even when not ready")
        .into_inner();
    assert_eq!(probe.ready, Some(false));
    wrong.stop().await;
}

#[tokio::test]
async fn capabilities_match_what_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let node = Driver::start(dir.path(), node_args("node-7")).await;
    let ch = node.channel().await;
    let info = csi::node_client::NodeClient::new(ch.clone())
        .node_get_info(csi::NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, "node-7");
    assert!(info.max_volumes_per_node >= 0);
    assert!(info.accessible_topology.is_none());
    // A node-only process does not serve the Controller service.
    let err = csi::controller_client::ControllerClient::new(ch)
        .controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    node.stop().await;
}
