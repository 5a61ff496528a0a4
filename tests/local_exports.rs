//! Development staging that asks the array (`--local-export-client`; root
//! needed, real bind mounts): a node stages a file system only when the
//! simulated array's export rules admit the address it presents, binds it
//! read-only when the rule says ro, and is refused, with the error of a
//! refused NFS mount, otherwise.

mod common;

use std::path::{Path, PathBuf};

use common::node::*;
use common::{ArrayAdmin, Driver};
use flashblade_csi::config::{ArraySettings, Mode, Settings};
use flashblade_csi::csi::{self, controller_client::ControllerClient, node_client::NodeClient};
use serde_json::json;
use tonic::Code;

type Node = NodeClient<tonic::transport::Channel>;

/// A second node plugin on the same machine and array, presenting `client`.
async fn node_presenting(ne: &NodeEnv, client: &str) -> (Node, Driver, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let args = Settings {
        mode: Some(Mode::Node),
        node_id: Some(format!("node-{client}")),
        kubelet_dir: Some(ne.kubelet.clone()),
        local_export_root: Some(ne.env.mock.data_dir.clone()),
        local_export_client: Some(client.parse().unwrap()),
        array: ArraySettings {
            name: Some("fb01".parse().unwrap()),
            management_url: Some(ne.env.mock.url.clone()),
            ca_file: ne.env.mock.ca_file.clone(),
            nfs_endpoint: Some("127.0.0.1".parse().unwrap()),
            ..Default::default()
        },
        ..Default::default()
    };
    let driver = Driver::start(dir.path(), args).await;
    let node = NodeClient::new(driver.channel().await);
    (node, driver, dir)
}

fn staging(ne: &NodeEnv, node: &str, vol: &str) -> PathBuf {
    ne.kubelet
        .join(format!("plugins/kubernetes.io/csi/{node}/{vol}/globalmount"))
}

/// A file system the admin made on the array, with these rules, as a
/// static volume.
async fn admin_fs(ne: &NodeEnv, name: &str, rules: &str) -> csi::Volume {
    ArrayAdmin::new(&ne.env.mock)
        .await
        .send(
            reqwest::Method::POST,
            &format!("file-systems?names={name}"),
            json!({"nfs": {"v3_enabled": true, "v4_1_enabled": true, "rules": rules}}),
        )
        .await;
    csi::Volume {
        volume_id: format!("fb01/{name}"),
        ..Default::default()
    }
}

async fn stage(node: &mut Node, v: &csi::Volume, at: &Path, mode: i32) -> Result<(), tonic::Status> {
    node.node_stage_volume(stage_req(v, at, mode)).await.map(|_| ())
}

#[tokio::test]
async fn a_node_the_rules_admit_stages_and_another_is_refused() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let mut ctl = ControllerClient::new(ne.env.driver.channel().await);
    let mut req = common::create_req("lab", 1 << 30);
    req.parameters
        .insert("exportRules".into(), "10.0.0.0/24(rw,no_root_squash)".into());
    let v = ctl.create_volume(req).await.unwrap().into_inner().volume.unwrap();

    let (mut inside, _d1, _t1) = node_presenting(&ne, "10.0.0.5").await;
    let s = staging(&ne, "inside", "lab");
    stage(&mut inside, &v, &s, 5).await.unwrap();
    assert!(mounted(&s));
    std::fs::write(s.join("ok.txt"), "written through the staging mount").unwrap();
    assert!(ne.env.mock.fs_dir("k8s-lab").join("ok.txt").exists());

    let (mut outside, _d2, _t2) = node_presenting(&ne, "10.9.9.9").await;
    let s2 = staging(&ne, "outside", "lab");
    let e = stage(&mut outside, &v, &s2, 5).await.unwrap_err();
    // The code of a refused NFS mount, and who was refused what.
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    for part in [
        "10.9.9.9",
        "k8s-lab",
        "access denied by server",
        "no export rule admits",
    ] {
        assert!(e.message().contains(part), "{part:?} missing: {}", e.message());
    }
    assert!(!mounted(&s2), "a refused node mounted the volume");
    // A retry is refused the same way; the admitted node is unaffected.
    assert_eq!(
        stage(&mut outside, &v, &s2, 5).await.unwrap_err().code(),
        Code::Unavailable
    );
    assert!(mounted(&s));
    unstage(&mut inside, &v.volume_id, &s).await;
}

#[tokio::test]
async fn without_export_rules_nobody_stages() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let v = admin_fs(&ne, "unexported", "").await;
    for client in ["10.0.0.5", "127.0.0.1", "fd00::5"] {
        let (mut node, _d, _t) = node_presenting(&ne, client).await;
        let s = staging(&ne, client, "unexported");
        let e = stage(&mut node, &v, &s, 5).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{client}: {e:?}");
        assert!(e.message().contains("not exported"), "{client}: {}", e.message());
        assert!(e.message().contains(client), "{client}: {}", e.message());
        assert!(!mounted(&s));
    }
}

#[tokio::test]
async fn a_read_only_rule_stages_read_only() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let v = admin_fs(&ne, "corpus", "10.0.0.0/24(ro) fd00::/64(rw)").await;
    std::fs::write(ne.env.mock.fs_dir("corpus").join("a.txt"), "data").unwrap();

    // Asked read-write (MULTI_NODE_MULTI_WRITER), granted read-only.
    let (mut node, _d, _t) = node_presenting(&ne, "10.0.0.7").await;
    let s = staging(&ne, "v4", "corpus");
    stage(&mut node, &v, &s, 5).await.unwrap();
    assert_eq!(std::fs::read_to_string(s.join("a.txt")).unwrap(), "data");
    let err = std::fs::write(s.join("b.txt"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_erofs()), "{err}");
    unstage(&mut node, &v.volume_id, &s).await;

    // The IPv6 node's rule is rw.
    let (mut node6, _d6, _t6) = node_presenting(&ne, "fd00::7").await;
    let s6 = staging(&ne, "v6", "corpus");
    stage(&mut node6, &v, &s6, 5).await.unwrap();
    std::fs::write(s6.join("b.txt"), "x").unwrap();
    unstage(&mut node6, &v.volume_id, &s6).await;
}

#[tokio::test]
async fn a_file_system_the_array_does_not_have_is_not_found() {
    require_root!();
    let ne = node_env(|_| {}).await;
    // A directory in the data dir the array knows nothing of.
    std::fs::create_dir_all(ne.env.mock.fs_dir("stray")).unwrap();
    let (mut node, _d, _t) = node_presenting(&ne, "10.0.0.5").await;
    let v = csi::Volume {
        volume_id: "fb01/stray".into(),
        ..Default::default()
    };
    let s = staging(&ne, "n", "stray");
    let e = stage(&mut node, &v, &s, 5).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("stray"), "{}", e.message());
    assert!(!mounted(&s));
}
