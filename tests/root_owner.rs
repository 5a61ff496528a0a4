//! The volume's root directory at its first stage (root needed; real bind
//! mounts of the simulator's directories): the array's default (root:root
//! 0755) keeps the notebook user (uid 1000) out; `rootOwner` / `rootMode`
//! in the volume context make the first stage of an empty volume give it to
//! them; later stages, a non-empty volume and bad values change nothing; a
//! squashed export refuses it precisely.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::create_req;
use common::node::*;
use flashblade_csi::csi::{self, controller_client::ControllerClient, node_client::NodeClient};
use tonic::Code;

type Node = NodeClient<tonic::transport::Channel>;

fn home_ctx(v: &csi::Volume, owner: &str, mode: &str) -> csi::Volume {
    let mut v = v.clone();
    v.volume_context.insert("rootOwner".into(), owner.into());
    v.volume_context.insert("rootMode".into(), mode.into());
    v
}

async fn new_home(ne: &NodeEnv, name: &str) -> (csi::Volume, PathBuf) {
    let mut ctl = ControllerClient::new(ne.env.driver.channel().await);
    let v = ctl
        .create_volume(create_req(name, 1 << 30))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let dir = ne.env.mock.fs_dir(&format!("k8s-{name}"));
    (v, dir)
}

fn staging(ne: &NodeEnv, id: &str) -> PathBuf {
    ne.kubelet.join(format!(
        "plugins/kubernetes.io/csi/flashblade.csi.dev/{id}/globalmount"
    ))
}

fn notebook_writes(dir: &Path, file: &str) -> Result<(), String> {
    let out = as_notebook_user(dir, &format!("echo from-jovyan > \"$D/{file}\""));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

async fn stage(node: &mut Node, v: &csi::Volume, at: &Path) -> Result<(), tonic::Status> {
    node.node_stage_volume(stage_req(v, at, 5)).await.map(|_| ())
}

#[tokio::test]
async fn the_arrays_default_root_keeps_the_notebook_user_out() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let (v, dir) = new_home(&ne, "plain").await;
    assert_eq!(owner_mode(&dir), (0, 0, 0o755));
    let s = staging(&ne, "plain");
    stage(&mut node, &v, &s).await.unwrap();
    let e = notebook_writes(&s, "f").unwrap_err();
    assert!(e.contains("Permission denied"), "{e}");
    unstage(&mut node, &v.volume_id, &s).await;
}

#[tokio::test]
async fn first_stage_gives_the_home_to_the_notebook_user_and_later_stages_leave_it() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let (v, dir) = new_home(&ne, "alice").await;
    let v = home_ctx(&v, "1000:100", "2775");
    let s = staging(&ne, "alice");

    // Repeats of the first stage are the idempotent answer.
    for _ in 0..3 {
        stage(&mut node, &v, &s).await.unwrap();
    }
    assert_eq!(owner_mode(&s), (1000, 100, 0o2775));
    assert_eq!(owner_mode(&dir), (1000, 100, 0o2775), "on the array");
    notebook_writes(&s, "notebook.ipynb").unwrap();
    // Through the pod's bind as well.
    let target = ne.kubelet.join("pods/p1/volumes/kubernetes.io~csi/alice/mount");
    node.node_publish_volume(publish_req(&v, &s, &target, false, 5))
        .await
        .unwrap();
    notebook_writes(&target, "from-the-pod").unwrap();
    unpublish(&mut node, &v.volume_id, &target).await;
    unstage(&mut node, &v.volume_id, &s).await;

    // The user empties their home and closes it up: a later stage, on this
    // node or another, leaves their choice.
    for f in ["notebook.ipynb", "from-the-pod"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    stage(&mut node, &v, &s).await.unwrap();
    assert_eq!(owner_mode(&s), (1000, 100, 0o700));
    let other = staging(&ne, "alice-on-node-2");
    stage(&mut node, &v, &other).await.unwrap();
    assert_eq!(owner_mode(&dir), (1000, 100, 0o700));
    unstage(&mut node, &v.volume_id, &other).await;
    unstage(&mut node, &v.volume_id, &s).await;
}

#[tokio::test]
async fn a_volume_with_data_is_never_touched() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let (v, dir) = new_home(&ne, "restored").await;
    std::fs::write(dir.join("thesis.tex"), "\\documentclass{article}").unwrap();
    let v = home_ctx(&v, "1000:100", "2775");
    let s = staging(&ne, "restored");
    stage(&mut node, &v, &s).await.unwrap();
    assert_eq!(owner_mode(&dir), (0, 0, 0o755));
    unstage(&mut node, &v.volume_id, &s).await;
}

#[tokio::test]
async fn bad_values_are_refused_before_anything_is_mounted() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let (v, dir) = new_home(&ne, "bad").await;
    let s = staging(&ne, "bad");
    for (owner, mode, key) in [
        ("jovyan:users", "2775", "rootOwner"),
        ("1000", "2775", "rootOwner"),
        ("-1:100", "2775", "rootOwner"),
        ("4294967295:100", "2775", "rootOwner"),
        ("", "2775", "rootOwner"),
        ("1000:100", "8888", "rootMode"),
        ("1000:100", "17777", "rootMode"),
        ("1000:100", "u+rwx", "rootMode"),
        ("1000:100", "", "rootMode"),
    ] {
        let e = stage(&mut node, &home_ctx(&v, owner, mode), &s)
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{owner} {mode}: {e:?}");
        assert!(e.message().contains(key), "{owner} {mode}: {}", e.message());
        assert!(!mounted(&s), "{owner} {mode}: something was mounted");
    }
    assert_eq!(owner_mode(&dir), (0, 0, 0o755));
}

#[tokio::test]
async fn a_root_squashing_export_refuses_precisely_and_leaves_nothing_mounted() {
    require_root!();
    // The node presents 10.0.0.5; the volumes are exported to
    // 10.0.0.0/16(rw,root_squash) (the environment's default rules).
    let ne = node_env(|s| s.local_export_client = Some("10.0.0.5".parse().unwrap())).await;
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let (v, dir) = new_home(&ne, "squashed").await;
    let v = home_ctx(&v, "1000:100", "2775");
    let s = staging(&ne, "squashed");
    let e = stage(&mut node, &v, &s).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    for part in [
        "squashes root",
        "10.0.0.0/16(rw,root_squash)",
        "10.0.0.5",
        "exportTo: nodes",
        "no_root_squash",
        "owner 1000:100 and mode 2775",
        "the staging mount was removed",
    ] {
        assert!(e.message().contains(part), "{part:?} missing: {}", e.message());
    }
    assert!(!mounted(&s));
    assert_eq!(owner_mode(&dir), (0, 0, 0o755));

    // A rule for this node without root squash: the same stage succeeds.
    common::array_patch(
        &ne.env.mock,
        "file-systems?names=k8s-squashed",
        serde_json::json!({"nfs": {"rules": "10.0.0.5(rw,no_root_squash) 10.0.0.0/16(rw,root_squash)"}}),
    )
    .await;
    stage(&mut node, &v, &s).await.unwrap();
    assert_eq!(owner_mode(&dir), (1000, 100, 0o2775));
    notebook_writes(&s, "f").unwrap();
    unstage(&mut node, &v.volume_id, &s).await;
}
