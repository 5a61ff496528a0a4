//! Node service with real mounts (root needed): staging by bind-mounting a
//! mock-flashblade data directory (--local-export-root), bind publish,
//! read-only publish, idempotent repeats, unpublish, unstage, stats, and a
//! FUSE file system that stops answering.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::node::*;
use common::{ControllerOpts, create_req};
use flashblade_csi::csi::{self, controller_client::ControllerClient, node_client::NodeClient};
use tonic::Code;

#[tokio::test]
async fn stage_publish_rw_and_ro_stats_unpublish_unstage() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let ch = ne.env.driver.channel().await;
    let mut ctl = ControllerClient::new(ch.clone());
    let mut node = NodeClient::new(ch);
    let v = ctl
        .create_volume(create_req("pvc-home", 1 << 30))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let staging = ne
        .kubelet
        .join("plugins/kubernetes.io/csi/flashblade.csi.dev/abc/globalmount");
    let rw = ne
        .kubelet
        .join("pods/p1/volumes/kubernetes.io~csi/pvc-home/mount");
    let ro = ne
        .kubelet
        .join("pods/p2/volumes/kubernetes.io~csi/pvc-home/mount");

    // Stage ten times: idempotent (the conformance suite repeats 10x).
    for _ in 0..10 {
        node.node_stage_volume(stage_req(&v, &staging, 5)).await.unwrap();
    }
    assert!(mounted(&staging));
    // Publish read-write, ten times.
    for _ in 0..10 {
        node.node_publish_volume(publish_req(&v, &staging, &rw, false, 5))
            .await
            .unwrap();
    }
    assert!(mounted(&rw));
    std::fs::write(rw.join("hello.txt"), "from the notebook").unwrap();
    let on_array = ne.env.mock.fs_dir("k8s-pvc-home").join("hello.txt");
    assert_eq!(std::fs::read_to_string(on_array).unwrap(), "from the notebook");

    // Publish read-only at a second target: reads work, writes get EROFS.
    node.node_publish_volume(publish_req(&v, &staging, &ro, true, 5))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(ro.join("hello.txt")).unwrap(),
        "from the notebook"
    );
    let err = std::fs::write(ro.join("nope.txt"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_erofs()), "{err}");
    // The writable target is still writable.
    std::fs::write(rw.join("still.txt"), "ok").unwrap();
    // Same target, other access: ALREADY_EXISTS.
    let e = node
        .node_publish_volume(publish_req(&v, &staging, &ro, false, 5))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);

    let stats = node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: v.volume_id.clone(),
            volume_path: rw.to_string_lossy().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 2);
    assert!(stats.usage[0].total > 0 && stats.usage[0].unit == csi::volume_usage::Unit::Bytes as i32);
    assert!(stats.usage[1].unit == csi::volume_usage::Unit::Inodes as i32);
    assert!(!stats.volume_condition.unwrap().abnormal);

    for target in [&rw, &ro] {
        for _ in 0..2 {
            unpublish(&mut node, &v.volume_id, target).await;
        }
        assert!(!mounted(target));
        assert!(!target.exists(), "target directory removed");
    }
    for _ in 0..2 {
        unstage(&mut node, &v.volume_id, &staging).await;
    }
    assert!(!mounted(&staging));
    // The data is still on the array.
    assert!(ne.env.mock.fs_dir("k8s-pvc-home").join("still.txt").exists());
}

#[tokio::test]
async fn static_dataset_is_read_only_everywhere() {
    require_root!();
    let ne = node_env(|_| {}).await;
    // The admin's dataset file system with content.
    let ds = ne.env.mock.fs_dir("datasets");
    std::fs::create_dir_all(&ds).unwrap();
    std::fs::write(ds.join("iris.csv"), "5.1,3.5,1.4,0.2").unwrap();
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let v = csi::Volume {
        volume_id: "fb01/datasets".into(),
        ..Default::default()
    };
    let staging = ne
        .kubelet
        .join("plugins/kubernetes.io/csi/flashblade.csi.dev/ds/globalmount");
    let target = ne
        .kubelet
        .join("pods/p9/volumes/kubernetes.io~csi/datasets/mount");
    // MULTI_NODE_READER_ONLY, and the pod asks for read-write anyway.
    node.node_stage_volume(stage_req(&v, &staging, 3)).await.unwrap();
    node.node_publish_volume(publish_req(&v, &staging, &target, false, 3))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("iris.csv")).unwrap(),
        "5.1,3.5,1.4,0.2"
    );
    let err = std::fs::write(target.join("x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_erofs()));
    unpublish(&mut node, &v.volume_id, &target).await;
    unstage(&mut node, &v.volume_id, &staging).await;
    assert_eq!(
        std::fs::read_to_string(ds.join("iris.csv")).unwrap(),
        "5.1,3.5,1.4,0.2"
    );
}

#[tokio::test]
async fn node_validation() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let k = ne.kubelet.clone();
    let v = csi::Volume {
        volume_id: "fb01/k8s-x/1234".into(),
        volume_context: [("server", "127.0.0.1"), ("share", "/k8s-x")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        ..Default::default()
    };
    let staging = k.join("plugins/x/globalmount");
    let target = k.join("pods/p/volumes/x/mount");
    let bad_stage: Vec<(csi::NodeStageVolumeRequest, Code)> = vec![
        (
            csi::NodeStageVolumeRequest {
                volume_id: String::new(),
                ..stage_req(&v, &staging, 1)
            },
            Code::InvalidArgument,
        ),
        (
            csi::NodeStageVolumeRequest {
                staging_target_path: String::new(),
                ..stage_req(&v, &staging, 1)
            },
            Code::InvalidArgument,
        ),
        (
            csi::NodeStageVolumeRequest {
                volume_capability: None,
                ..stage_req(&v, &staging, 1)
            },
            Code::InvalidArgument,
        ),
        (
            csi::NodeStageVolumeRequest {
                staging_target_path: "/etc/passwd".into(),
                ..stage_req(&v, &staging, 1)
            },
            Code::InvalidArgument,
        ),
        (
            csi::NodeStageVolumeRequest {
                staging_target_path: format!("{}/../../etc", k.display()),
                ..stage_req(&v, &staging, 1)
            },
            Code::InvalidArgument,
        ),
        (
            {
                let mut r = stage_req(&v, &staging, 1);
                r.volume_context.insert("server".into(), "-oexec".into());
                r
            },
            Code::InvalidArgument,
        ),
        (
            {
                let mut r = stage_req(&v, &staging, 1);
                r.volume_context.insert("share".into(), "/../etc".into());
                r
            },
            Code::InvalidArgument,
        ),
        (
            {
                let mut r = stage_req(&v, &staging, 1);
                r.volume_capability = Some({
                    use csi::volume_capability::{AccessMode, AccessType, MountVolume};
                    csi::VolumeCapability {
                        access_type: Some(AccessType::Mount(MountVolume {
                            mount_flags: vec!["nconnect=8,bind".into()],
                            ..Default::default()
                        })),
                        access_mode: Some(AccessMode { mode: 1 }),
                    }
                });
                r
            },
            Code::InvalidArgument,
        ),
        // The local export for this file system does not exist.
        (stage_req(&v, &staging, 1), Code::NotFound),
    ];
    for (req, code) in bad_stage {
        let e = node.node_stage_volume(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), code, "{req:?}: {e:?}");
    }
    assert!(!mounted(&staging));
    // Publish before stage.
    let e = node
        .node_publish_volume(publish_req(&v, &staging, &target, false, 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    for req in [
        csi::NodePublishVolumeRequest {
            target_path: String::new(),
            ..publish_req(&v, &staging, &target, false, 1)
        },
        csi::NodePublishVolumeRequest {
            volume_id: String::new(),
            ..publish_req(&v, &staging, &target, false, 1)
        },
        csi::NodePublishVolumeRequest {
            volume_capability: None,
            ..publish_req(&v, &staging, &target, false, 1)
        },
        csi::NodePublishVolumeRequest {
            target_path: "/tmp/evil".into(),
            ..publish_req(&v, &staging, &target, false, 1)
        },
    ] {
        assert_eq!(
            node.node_publish_volume(req).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }
    // Unpublish / unstage of things never mounted: OK.
    unpublish(&mut node, &v.volume_id, &target).await;
    unstage(&mut node, &v.volume_id, &staging).await;
    // Stats: missing fields, and paths holding no volume.
    for (path, code) in [
        ("", Code::InvalidArgument),
        ("some/path", Code::NotFound),
        (target.to_str().unwrap(), Code::NotFound),
    ] {
        let e = node
            .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
                volume_id: v.volume_id.clone(),
                volume_path: path.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{path}");
    }
    // A target directory whose mount is gone: OK, with an abnormal condition.
    std::fs::create_dir_all(&target).unwrap();
    let stats = node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: v.volume_id.clone(),
            volume_path: target.to_string_lossy().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let cond = stats.volume_condition.unwrap();
    assert!(
        cond.abnormal && cond.message.contains("missing"),
        "{}",
        cond.message
    );
    std::fs::remove_dir(&target).unwrap();
    let caps = node
        .node_get_capabilities(csi::NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caps.capabilities.len(), 3);
}

#[tokio::test]
async fn a_filesystem_that_stops_answering_cannot_hang_stats_or_unpublish() {
    require_root!();
    if !Path::new("/dev/fuse").exists() {
        eprintln!("skipped: no /dev/fuse");
        return;
    }
    let ne = node_env(|_| {}).await;
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let target = ne
        .kubelet
        .join("pods/hung/volumes/kubernetes.io~csi/pvc-dead/mount");
    std::fs::create_dir_all(&target).unwrap();
    let release = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let session = fuser::spawn_mount2(
        hang::Hung(release.clone()),
        &target,
        &[
            fuser::MountOption::FSName("hung-nfs".into()),
            fuser::MountOption::AllowOther,
        ],
    );
    let session = match session {
        Ok(s) => s,
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "FUSE must work in CI: {e}");
            eprintln!("skipped: cannot mount FUSE here: {e}");
            return;
        }
    };
    assert!(mounted(&target));

    let start = Instant::now();
    let stats = stats(&mut node, "fb01/k8s-pvc-dead/1", &target).await;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(3), "stats took {took:?} (deadline 1s)");
    let cond = stats.volume_condition.unwrap();
    assert!(cond.abnormal);
    assert!(cond.message.contains("did not finish"), "{}", cond.message);

    let start = Instant::now();
    let r = node
        .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: "fb01/k8s-pvc-dead/1".into(),
            target_path: target.to_string_lossy().into(),
        })
        .await;
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "unpublish took {took:?} (deadline 3s)"
    );
    r.unwrap();
    assert!(!mounted(&target));
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    // Give the daemon time to answer the stuck call before it goes away.
    std::thread::sleep(Duration::from_millis(200));
    drop(session);
}

#[tokio::test]
async fn controller_mode_alone_does_not_serve_node_rpcs() {
    let env = common::controller_env(ControllerOpts::default()).await;
    let e = NodeClient::new(env.driver.channel().await)
        .node_get_info(csi::NodeGetInfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
}

#[tokio::test]
async fn stats_report_the_volume_not_the_host() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let ch = ne.env.driver.channel().await;
    let mut ctl = ControllerClient::new(ch.clone());
    let mut node = NodeClient::new(ch);
    let v = ctl
        .create_volume(create_req("pvc-sized", 1 << 30))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    // Back the file system's directory with a 64 MiB tmpfs, so the figures
    // can be checked exactly.
    let dir = ne.env.mock.fs_dir("k8s-pvc-sized");
    let _sweep = MountSweeper(dir.clone());
    nix::mount::mount(
        Some("tmpfs"),
        &dir,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=64m,nr_inodes=1000"),
    )
    .unwrap();
    std::fs::write(dir.join("data.bin"), vec![7u8; 4 << 20]).unwrap();
    let staging = ne
        .kubelet
        .join("plugins/kubernetes.io/csi/flashblade.csi.dev/sized/globalmount");
    let target = ne
        .kubelet
        .join("pods/ps/volumes/kubernetes.io~csi/pvc-sized/mount");
    node.node_stage_volume(stage_req(&v, &staging, 1)).await.unwrap();
    node.node_publish_volume(publish_req(&v, &staging, &target, false, 1))
        .await
        .unwrap();
    let stats = node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: v.volume_id.clone(),
            volume_path: target.to_string_lossy().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let bytes = &stats.usage[0];
    assert_eq!(bytes.total, 64 << 20);
    assert_eq!(bytes.used, 4 << 20);
    assert_eq!(bytes.available, (64 << 20) - (4 << 20));
    let inodes = &stats.usage[1];
    assert_eq!(inodes.total, 1000);
    assert!(inodes.used >= 2, "{inodes:?}");
    unpublish(&mut node, &v.volume_id, &target).await;
    unstage(&mut node, &v.volume_id, &staging).await;
    assert!(!mounted(&staging) && !mounted(&target));
}
