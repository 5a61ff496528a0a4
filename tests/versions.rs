//! Dataset versions with real mounts (root needed): a static volume naming
//! one of its file system's snapshots is staged from `.snapshot/<entry>`,
//! read-only whatever the access mode; a missing version is NOT_FOUND with
//! the versions that exist; a file system without a snapshot directory is
//! FAILED_PRECONDITION; the live dataset and versions mount side by side;
//! the controller never changes a version; and a user restores a deleted
//! file from `.snapshot` in their own published volume.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use common::node::*;
use common::{ArrayAdmin, create_req, mount_cap};
use flashblade_csi::csi::{self, controller_client::ControllerClient, node_client::NodeClient};
use reqwest::Method;
use serde_json::json;
use tonic::Code;

const MNRO: i32 = 3; // MULTI_NODE_READER_ONLY
const SNW: i32 = 1; // SINGLE_NODE_WRITER
const MNMW: i32 = 5; // MULTI_NODE_MULTI_WRITER

fn volume(id: &str, ctx: &[(&str, &str)]) -> csi::Volume {
    csi::Volume {
        volume_id: id.into(),
        volume_context: ctx
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    }
}

fn staging(kubelet: &Path, name: &str) -> PathBuf {
    kubelet.join(format!(
        "plugins/kubernetes.io/csi/flashblade.csi.dev/{name}/globalmount"
    ))
}

fn target(kubelet: &Path, pod: &str, name: &str) -> PathBuf {
    kubelet.join(format!("pods/{pod}/volumes/kubernetes.io~csi/{name}/mount"))
}

/// The admin's dataset `cifar10`: v1, then v2, then today's data.
async fn dataset(ne: &NodeEnv) -> ArrayAdmin {
    let admin = ArrayAdmin::new(&ne.env.mock).await;
    admin
        .send(Method::POST, "file-systems?names=cifar10", json!({}))
        .await;
    let root = ne.env.mock.fs_dir("cifar10");
    std::fs::create_dir_all(root.join("train")).unwrap();
    std::fs::write(root.join("train/labels.csv"), "cat,dog").unwrap();
    std::fs::write(root.join("README"), "v1").unwrap();
    let snap = |sfx: &str| json!({ "suffix": sfx });
    admin
        .send(
            Method::POST,
            "file-system-snapshots?source_names=cifar10",
            snap("v1"),
        )
        .await;
    std::fs::write(root.join("train/labels.csv"), "cat,dog,bird").unwrap();
    std::fs::write(root.join("README"), "v2").unwrap();
    admin
        .send(
            Method::POST,
            "file-system-snapshots?source_names=cifar10",
            snap("v2"),
        )
        .await;
    std::fs::remove_file(root.join("train/labels.csv")).unwrap();
    std::fs::write(root.join("README"), "live").unwrap();
    admin
}

#[tokio::test]
async fn versions_mount_read_only_next_to_the_live_dataset() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let _admin = dataset(&ne).await;
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let live = volume("fb01/cifar10", &[]);
    // v1 through the handle and the attribute; v2 through the attribute
    // alone (its handle still has to differ from the live one's).
    let v1 = volume("fb01/cifar10.v1", &[("snapshot", "v1")]);
    let v2 = volume("cifar10.v2", &[]);
    let mut published = Vec::new();
    for (v, name, mode) in [(&live, "live", MNRO), (&v1, "v1", SNW), (&v2, "v2", MNMW)] {
        let st = staging(&ne.kubelet, name);
        let tg = target(&ne.kubelet, "nb-1", name);
        // A writer access mode and a read-write publish: still read-only.
        for _ in 0..3 {
            node.node_stage_volume(stage_req(v, &st, mode)).await.unwrap();
            node.node_publish_volume(publish_req(v, &st, &tg, false, mode))
                .await
                .unwrap();
        }
        assert!(mounted(&st) && mounted(&tg));
        published.push((v.clone(), st, tg));
    }
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let (live_t, v1_t, v2_t) = (&published[0].2, &published[1].2, &published[2].2);
    assert_eq!(read(live_t.join("README")), "live");
    assert!(!live_t.join("train/labels.csv").exists());
    assert_eq!(read(v1_t.join("README")), "v1");
    assert_eq!(read(v1_t.join("train/labels.csv")), "cat,dog");
    assert_eq!(read(v2_t.join("README")), "v2");
    assert_eq!(read(v2_t.join("train/labels.csv")), "cat,dog,bird");
    // The live dataset is also visible with its versions under .snapshot.
    assert_eq!(read(live_t.join(".snapshot/v1/README")), "v1");
    for (_, st, tg) in &published[1..] {
        for dir in [st, tg] {
            for p in [dir.join("new.txt"), dir.join("README")] {
                let err = std::fs::write(&p, "x").unwrap_err();
                assert_eq!(err.raw_os_error(), Some(libc_erofs()), "{}", p.display());
            }
        }
    }
    // Stats of a version answer like any volume's.
    let s = stats(&mut node, &v1.volume_id, v1_t).await;
    assert!(!s.volume_condition.unwrap().abnormal);

    // A version's staging path is not the live one's, and vice versa.
    let err = node
        .node_stage_volume(stage_req(&v1, &published[0].1, MNRO))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{}", err.message());

    for (v, st, tg) in &published {
        unpublish(&mut node, &v.volume_id, tg).await;
        unstage(&mut node, &v.volume_id, st).await;
        assert!(!mounted(st) && !mounted(tg));
    }
    // Nothing was changed on the array.
    let snapdir = ne.env.mock.fs_dir("cifar10").join(".snapshot");
    assert_eq!(read(snapdir.join("v1/train/labels.csv")), "cat,dog");
    assert_eq!(read(ne.env.mock.fs_dir("cifar10").join("README")), "live");
}

#[tokio::test]
async fn missing_disabled_and_malformed_versions_are_refused() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let admin = dataset(&ne).await;
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let st = staging(&ne.kubelet, "v9");

    let v9 = volume("fb01/cifar10.v9", &[]);
    let err = node
        .node_stage_volume(stage_req(&v9, &st, MNRO))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    assert!(err.message().contains("no version v9"), "{}", err.message());
    assert!(
        err.message().contains("its versions are: v1, v2"),
        "{}",
        err.message()
    );
    assert!(!mounted(&st));

    // Handle and attribute must agree; versions are checked names.
    for (id, ctx, code) in [
        ("fb01/cifar10.v1", vec![("snapshot", "v2")], Code::InvalidArgument),
        (
            "fb01/cifar10",
            vec![("snapshot", "../../etc")],
            Code::InvalidArgument,
        ),
        ("fb01/cifar10", vec![("snapshot", "v1/..")], Code::InvalidArgument),
        ("fb01/cifar10", vec![("snapshot", ".")], Code::InvalidArgument),
        ("fb01/cifar10..", vec![], Code::InvalidArgument),
    ] {
        let err = node
            .node_stage_volume(stage_req(&volume(id, &ctx), &st, MNRO))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{id} {ctx:?}: {}", err.message());
        assert!(!mounted(&st));
    }

    // The array's snapshot directory switched off: the node says so.
    admin
        .send(
            Method::PATCH,
            "file-systems?names=cifar10",
            json!({"snapshot_directory_enabled": false}),
        )
        .await;
    let v1 = volume("fb01/cifar10.v1", &[]);
    let err = node
        .node_stage_volume(stage_req(&v1, &st, MNRO))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(
        err.message().contains("snapshot directory disabled"),
        "{}",
        err.message()
    );
    assert!(!mounted(&st));
}

#[tokio::test]
async fn the_controller_never_changes_a_version() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let _admin = dataset(&ne).await;
    let mut ctl = ControllerClient::new(ne.env.driver.channel().await);
    let id = "fb01/cifar10.v1";
    let err = ctl
        .delete_volume(csi::DeleteVolumeRequest {
            volume_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    assert!(err.message().contains("version"), "{}", err.message());
    let err = ctl
        .controller_expand_volume(csi::ControllerExpandVolumeRequest {
            volume_id: id.into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
    let err = ctl
        .create_snapshot(csi::CreateSnapshotRequest {
            source_volume_id: id.into(),
            name: "snap-of-a-version".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);
    // Reader-only modes are confirmed, writers are not.
    for (mode, confirmed) in [(MNRO, true), (SNW, false), (MNMW, false)] {
        let r = ctl
            .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
                volume_id: id.into(),
                volume_capabilities: vec![mount_cap(mode)],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.confirmed.is_some(), confirmed, "mode {mode}: {}", r.message);
    }
    // The snapshots and the file system are as they were.
    let snaps = ne.env.mock.with_state(|s| s.snapshots.len());
    assert_eq!(snaps, 2);
    assert!(ne.env.mock.fs_dir("cifar10").join(".snapshot/v1").is_dir());
}

#[tokio::test]
async fn a_user_restores_a_deleted_file_from_dot_snapshot() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let ch = ne.env.driver.channel().await;
    let mut ctl = ControllerClient::new(ch.clone());
    let mut node = NodeClient::new(ch);
    let home = ctl
        .create_volume(create_req("claim-alice", 1 << 30))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let st = staging(&ne.kubelet, "home");
    let tg = target(&ne.kubelet, "jupyter-alice", "home");
    node.node_stage_volume(stage_req(&home, &st, MNMW)).await.unwrap();
    node.node_publish_volume(publish_req(&home, &st, &tg, false, MNMW))
        .await
        .unwrap();
    std::fs::write(tg.join("thesis.tex"), "chapter 1").unwrap();
    // The array's nightly snapshot policy runs.
    let fs_name = home.volume_context["fsName"].clone();
    ArrayAdmin::new(&ne.env.mock)
        .await
        .send(
            Method::POST,
            &format!("file-system-snapshots?source_names={fs_name}"),
            json!({"suffix": "nightly-1"}),
        )
        .await;
    // Oops.
    std::fs::remove_file(tg.join("thesis.tex")).unwrap();
    assert!(!tg.join("thesis.tex").exists());
    // Self-service: copy it back from ~/.snapshot.
    let saved = tg.join(".snapshot/nightly-1/thesis.tex");
    std::fs::copy(&saved, tg.join("thesis.tex")).unwrap();
    assert_eq!(
        std::fs::read_to_string(tg.join("thesis.tex")).unwrap(),
        "chapter 1"
    );
    // The restored file is an ordinary, writable file again.
    std::fs::write(tg.join("thesis.tex"), "chapter 1, restored").unwrap();
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), "chapter 1");
    unpublish(&mut node, &home.volume_id, &tg).await;
    unstage(&mut node, &home.volume_id, &st).await;
}

#[tokio::test]
async fn the_versions_command_lists_and_prints_a_pv_and_pvc() {
    let env = common::controller_env(common::ControllerOpts::default()).await;
    let admin = ArrayAdmin::new(&env.mock).await;
    admin
        .send(
            Method::POST,
            "file-systems?names=cifar10",
            json!({"provisioned": 10u64 << 30}),
        )
        .await;
    for sfx in ["v1", "v2"] {
        admin
            .send(
                Method::POST,
                "file-system-snapshots?source_names=cifar10",
                json!({ "suffix": sfx }),
            )
            .await;
    }
    // Async, so the in-process mock keeps serving while the command runs.
    let run = |extra: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
            .args(["versions", "--dataset", "cifar10"])
            .args(extra)
            .args(["--array-name", "fb01", "--array-url", &env.mock.url])
            .arg("--api-token-file")
            .arg(&env.token_file)
            .arg("--ca-file")
            .arg(env.mock.ca_file.as_ref().unwrap())
            .args(["--nfs-endpoint", "127.0.0.1"])
            .output()
    };
    let out = run(&[]).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("versions of cifar10 on fb01"), "{stdout}");
    let v1 = stdout.find("cifar10.v1").expect("v1 listed");
    let v2 = stdout.find("cifar10.v2").expect("v2 listed");
    assert!(v1 < v2, "oldest first:\n{stdout}");

    let out = run(&["--version", "v2", "--namespace", "hub"]).await.unwrap();
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in [
        "volumeHandle: fb01/cifar10.v2",
        "snapshot: v2",
        "storage: 10Gi",
        "namespace: hub",
        "name: cifar10-v2",
        "persistentVolumeReclaimPolicy: Retain",
    ] {
        assert!(yaml.contains(want), "{want}:\n{yaml}");
    }
    // The printed handle is one the driver reads as this version.
    let handle: flashblade_csi::volume::VolumeId = "fb01/cifar10.v2".parse().unwrap();
    assert_eq!(handle.version().map(|v| v.as_str()), Some("v2"));

    let out = run(&["--version", "v9"]).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no version v9; its versions are: v1, v2"), "{err}");
    let out = run(&["--version", "../x"]).await.unwrap();
    assert_eq!(out.status.code(), Some(2), "a bad suffix is a usage error");
}
