//! Snapshots, clones and restore against mock-flashblade, with content checks
//! on the mock's data directories.

mod common;

use std::collections::HashMap;

use common::{ControllerOpts, controller_env, create_req};
use flashblade_csi::csi::{self, controller_client::ControllerClient};
use tonic::Code;

const GIB: i64 = 1 << 30;

type Client = ControllerClient<tonic::transport::Channel>;

async fn volume(c: &mut Client, name: &str, bytes: i64) -> csi::Volume {
    c.create_volume(create_req(name, bytes))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
}

async fn snapshot(c: &mut Client, name: &str, source: &str) -> csi::Snapshot {
    c.create_snapshot(csi::CreateSnapshotRequest {
        name: name.into(),
        source_volume_id: source.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .snapshot
    .unwrap()
}

fn write(env: &common::ControllerEnv, fs: &str, rel: &str, data: &str) {
    let p = env.mock.fs_dir(fs).join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn read(env: &common::ControllerEnv, fs: &str, rel: &str) -> Option<String> {
    std::fs::read_to_string(env.mock.fs_dir(fs).join(rel)).ok()
}

fn fs_name(v: &csi::Volume) -> String {
    v.volume_context["fsName"].clone()
}

#[tokio::test]
async fn create_snapshot_rules() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let v1 = volume(&mut c, "pvc-s1", 3 * GIB).await;
    let v2 = volume(&mut c, "pvc-s2", GIB).await;

    let s = snapshot(&mut c, "snapshot-a", &v1.volume_id).await;
    assert!(s.ready_to_use);
    assert!(s.creation_time.as_ref().unwrap().seconds > 1_600_000_000);
    assert_eq!(s.size_bytes, 3 * GIB);
    assert_eq!(s.source_volume_id, v1.volume_id);
    assert!(
        s.snapshot_id.starts_with("fb01/k8s-pvc-s1.csi-"),
        "{}",
        s.snapshot_id
    );
    // Idempotent: same name and source, same snapshot, one POST.
    let again = snapshot(&mut c, "snapshot-a", &v1.volume_id).await;
    assert_eq!(again.snapshot_id, s.snapshot_id);
    assert_eq!(env.mock.counters().count("POST", "file-system-snapshots"), 1);
    // Same name, other source: ALREADY_EXISTS.
    let e = c
        .create_snapshot(csi::CreateSnapshotRequest {
            name: "snapshot-a".into(),
            source_volume_id: v2.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    // Maximum-length name, twice.
    let long = "s".repeat(128);
    let l1 = snapshot(&mut c, &long, &v2.volume_id).await;
    let l2 = snapshot(&mut c, &long, &v2.volume_id).await;
    assert_eq!(l1.snapshot_id, l2.snapshot_id);
    assert!(l1.snapshot_id.len() <= 128);

    for (req, code) in [
        (
            csi::CreateSnapshotRequest {
                source_volume_id: v1.volume_id.clone(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            csi::CreateSnapshotRequest {
                name: "x".into(),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            csi::CreateSnapshotRequest {
                name: "x".into(),
                source_volume_id: v1.volume_id.clone(),
                parameters: HashMap::from([("bogus".to_string(), "1".to_string())]),
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            csi::CreateSnapshotRequest {
                name: "x".into(),
                source_volume_id: "fb01/k8s-gone/1234".into(),
                ..Default::default()
            },
            Code::NotFound,
        ),
    ] {
        assert_eq!(c.create_snapshot(req).await.unwrap_err().code(), code);
    }
}

#[tokio::test]
async fn delete_snapshot_and_policies() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let v = volume(&mut c, "pvc-d", GIB).await;
    assert_eq!(
        c.delete_snapshot(csi::DeleteSnapshotRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    c.delete_snapshot(csi::DeleteSnapshotRequest {
        snapshot_id: "reallyfakesnapshotid".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let s = snapshot(&mut c, "snap-erad", &v.volume_id).await;
    c.delete_snapshot(csi::DeleteSnapshotRequest {
        snapshot_id: s.snapshot_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(env.mock.with_state(|st| st.snapshots.is_empty()), "eradicated");
    // Again: OK.
    c.delete_snapshot(csi::DeleteSnapshotRequest {
        snapshot_id: s.snapshot_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();

    // deletePolicy=destroy keeps it recoverable on the array.
    let s = c
        .create_snapshot(csi::CreateSnapshotRequest {
            name: "snap-keep".into(),
            source_volume_id: v.volume_id.clone(),
            parameters: HashMap::from([("deletePolicy".to_string(), "destroy".to_string())]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .snapshot
        .unwrap();
    assert!(s.snapshot_id.ends_with("/destroy"));
    c.delete_snapshot(csi::DeleteSnapshotRequest {
        snapshot_id: s.snapshot_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let kept = env
        .mock
        .with_state(|st| st.snapshots.values().next().cloned())
        .unwrap();
    assert!(kept.destroyed);
    // Gone from the CSI view.
    let list = c
        .list_snapshots(csi::ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.entries.is_empty());
}

#[tokio::test]
async fn list_snapshots_by_id_source_all_and_paging() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let v1 = volume(&mut c, "pvc-l1", GIB).await;
    let v2 = volume(&mut c, "pvc-l2", GIB).await;
    let first = snapshot(&mut c, "snap-0", &v1.volume_id).await;
    for i in 1..5 {
        snapshot(&mut c, &format!("snap-{i}"), &v2.volume_id).await;
    }
    let by_id = c
        .list_snapshots(csi::ListSnapshotsRequest {
            snapshot_id: first.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.entries.len(), 1);
    let got = by_id.entries[0].snapshot.as_ref().unwrap();
    assert_eq!(got.snapshot_id, first.snapshot_id);
    assert_eq!(got.source_volume_id, v1.volume_id);
    assert!(got.creation_time.is_some());

    let by_source = c
        .list_snapshots(csi::ListSnapshotsRequest {
            source_volume_id: v1.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_source.entries.len(), 1);

    for req in [
        csi::ListSnapshotsRequest {
            snapshot_id: "fb01/k8s-x.csi-00/123".into(),
            ..Default::default()
        },
        csi::ListSnapshotsRequest {
            snapshot_id: "reallyfakesnapshotid".into(),
            ..Default::default()
        },
        csi::ListSnapshotsRequest {
            source_volume_id: "fb01/k8s-x/123".into(),
            ..Default::default()
        },
    ] {
        assert!(
            c.list_snapshots(req)
                .await
                .unwrap()
                .into_inner()
                .entries
                .is_empty()
        );
    }

    let all = c
        .list_snapshots(csi::ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.entries.len(), 5);
    assert!(all.entries.iter().all(|e| {
        let s = e.snapshot.as_ref().unwrap();
        !s.snapshot_id.is_empty() && !s.source_volume_id.is_empty() && s.creation_time.is_some()
    }));
    let page = c
        .list_snapshots(csi::ListSnapshotsRequest {
            max_entries: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.entries.len(), 2);
    assert!(!page.next_token.is_empty());
    let rest = c
        .list_snapshots(csi::ListSnapshotsRequest {
            starting_token: page.next_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.entries.len(), 3);
    assert!(rest.next_token.is_empty());
    let mut ids: Vec<String> = page
        .entries
        .iter()
        .chain(rest.entries.iter())
        .map(|e| e.snapshot.as_ref().unwrap().snapshot_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5);
    let e = c
        .list_snapshots(csi::ListSnapshotsRequest {
            starting_token: "invalid-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
}

#[tokio::test]
async fn clone_from_snapshot_has_the_snapshot_content() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let v = volume(&mut c, "pvc-src", 2 * GIB).await;
    write(&env, &fs_name(&v), "work/notebook.ipynb", "cell 1");
    let s = snapshot(&mut c, "snap-content", &v.volume_id).await;
    write(&env, &fs_name(&v), "work/notebook.ipynb", "cell 1 + cell 2");

    let source = csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Snapshot(
            csi::volume_content_source::SnapshotSource {
                snapshot_id: s.snapshot_id.clone(),
            },
        )),
    };
    let mut req = create_req("pvc-from-snap", 3 * GIB);
    req.volume_content_source = Some(source.clone());
    let clone = c
        .create_volume(req.clone())
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(clone.content_source, Some(source.clone()));
    assert_eq!(
        clone.capacity_bytes,
        3 * GIB,
        "larger than the source: cloned then grown"
    );
    assert_eq!(
        read(&env, &fs_name(&clone), "work/notebook.ipynb").as_deref(),
        Some("cell 1")
    );
    // Idempotent.
    let again = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    assert_eq!(again.volume_id, clone.volume_id);

    let mut small = create_req("pvc-too-small", GIB);
    small.volume_content_source = Some(source);
    assert_eq!(c.create_volume(small).await.unwrap_err().code(), Code::OutOfRange);
    let mut missing = create_req("pvc-no-snap", 3 * GIB);
    missing.volume_content_source = Some(csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Snapshot(
            csi::volume_content_source::SnapshotSource {
                snapshot_id: "fb01/k8s-pvc-src.csi-0000000000000000/0000".into(),
            },
        )),
    });
    assert_eq!(c.create_volume(missing).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn clone_from_volume_copies_and_cleans_up() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let v = volume(&mut c, "pvc-orig", GIB).await;
    write(&env, &fs_name(&v), "data.csv", "a,b\n1,2\n");
    let source = csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Volume(
            csi::volume_content_source::VolumeSource {
                volume_id: v.volume_id.clone(),
            },
        )),
    };
    let mut req = create_req("pvc-copy", GIB);
    req.volume_content_source = Some(source.clone());
    let clone = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    assert_eq!(clone.content_source, Some(source));
    assert_eq!(
        read(&env, &fs_name(&clone), "data.csv").as_deref(),
        Some("a,b\n1,2\n")
    );
    // The intermediate snapshot is gone, and the clone is independent.
    assert!(env.mock.with_state(|s| s.snapshots.is_empty()));
    write(&env, &fs_name(&v), "data.csv", "changed");
    assert_eq!(
        read(&env, &fs_name(&clone), "data.csv").as_deref(),
        Some("a,b\n1,2\n")
    );

    let mut missing = create_req("pvc-copy-missing", GIB);
    missing.volume_content_source = Some(csi::VolumeContentSource {
        r#type: Some(csi::volume_content_source::Type::Volume(
            csi::volume_content_source::VolumeSource {
                volume_id: "fb01/k8s-nope/0000".into(),
            },
        )),
    });
    assert_eq!(c.create_volume(missing).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn snapshots_guard_their_volume_and_go_with_a_destroyed_one() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let v = volume(&mut c, "pvc-g", GIB).await;
    let s = snapshot(&mut c, "snap-g", &v.volume_id).await;
    // Deleting the volume would take the snapshot with it: refused, and
    // nothing is changed (the snapshot check finds it; the look-up by id
    // and the check by name then name it in the message).
    env.mock.reset_counters();
    let e = c
        .delete_volume(csi::DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("snapshot"));
    let counts = env.mock.counters();
    assert_eq!(counts.count("PATCH", "file-systems"), 0);
    assert_eq!(counts.count("GET", "file-system-snapshots"), 2);
    assert_eq!(counts.total(), 3, "{counts:?}");
    assert!(!env.mock.with_state(|st| st.file_systems["k8s-pvc-g"].destroyed));
    // An admin destroys the file system on the array: its snapshots disappear
    // from the CSI view.
    let fs_id = env.mock.with_state(|st| st.file_systems["k8s-pvc-g"].id.clone());
    common::array_patch(
        &env.mock,
        &format!("file-systems?ids={fs_id}"),
        serde_json::json!({"destroyed": true}),
    )
    .await;
    let list = c
        .list_snapshots(csi::ListSnapshotsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(list.entries.is_empty());
    let by_id = c
        .list_snapshots(csi::ListSnapshotsRequest {
            snapshot_id: s.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(by_id.entries.is_empty());
    // Deleting the (already destroyed) volume and its snapshot still works.
    c.delete_snapshot(csi::DeleteSnapshotRequest {
        snapshot_id: s.snapshot_id,
        ..Default::default()
    })
    .await
    .unwrap();
    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: v.volume_id,
        ..Default::default()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn restore_command_brings_back_the_snapshot() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let v = volume(&mut c, "pvc-r", GIB).await;
    write(&env, &fs_name(&v), "thesis.tex", "chapter 1");
    let s = snapshot(&mut c, "snap-r", &v.volume_id).await;
    write(
        &env,
        &fs_name(&v),
        "thesis.tex",
        "chapter 1 (accidentally truncated)",
    );
    write(&env, &fs_name(&v), "scratch.txt", "after the snapshot");

    // Async, so the in-process mock keeps serving while the command runs.
    // No cluster here (HOME without a kubeconfig): whether the volume is in
    // use cannot be told, so the admin must say --yes. Only array flags.
    let home = tempfile::tempdir().unwrap();
    let run = |volume: &str, snap: &str, extra: &[&str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
            .args(["restore", "--volume-id", volume, "--snapshot-id", snap])
            .args(["--array-name", "fb01", "--array-url", &env.mock.url])
            .arg("--api-token-file")
            .arg(&env.token_file)
            .arg("--ca-file")
            .arg(env.mock.ca_file.as_ref().unwrap())
            .args(extra)
            .env("HOME", home.path())
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
    };
    // --dry-run says what would be discarded and changes nothing.
    let out = run(&v.volume_id, &s.snapshot_id, &["--dry-run"]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // Exit 5: printed, but the cluster could not be read.
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("DRY RUN") && text.contains("would be restored from snapshot k8s-pvc-r."),
        "{text}"
    );
    assert_eq!(
        read(&env, &fs_name(&v), "scratch.txt").as_deref(),
        Some("after the snapshot")
    );
    // Without --yes: refused (exit 4), because nothing can say it is unused.
    let out = run(&v.volume_id, &s.snapshot_id, &[]).await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--yes"));
    assert_eq!(
        read(&env, &fs_name(&v), "scratch.txt").as_deref(),
        Some("after the snapshot")
    );

    let out = run(&v.volume_id, &s.snapshot_id, &["--yes"]).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("k8s-pvc-r was restored"));
    assert_eq!(
        read(&env, &fs_name(&v), "thesis.tex").as_deref(),
        Some("chapter 1")
    );
    assert_eq!(read(&env, &fs_name(&v), "scratch.txt"), None);

    // A snapshot of another volume is refused (bad input, exit 2) and changes nothing.
    let other = volume(&mut c, "pvc-other", GIB).await;
    let so = snapshot(&mut c, "snap-other", &other.volume_id).await;
    write(&env, &fs_name(&v), "thesis.tex", "chapter 2");
    let out = run(&v.volume_id, &so.snapshot_id, &["--yes"]).await.unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not of k8s-pvc-r"));
    assert_eq!(
        read(&env, &fs_name(&v), "thesis.tex").as_deref(),
        Some("chapter 2")
    );
}

#[tokio::test]
async fn an_admins_snapshot_is_never_deleted() {
    let env = controller_env(ControllerOpts::default()).await;
    // A file system and snapshot an admin made on the array by hand.
    let admin = common::ArrayAdmin::new(&env.mock).await;
    admin
        .send(
            reqwest::Method::POST,
            "file-systems?names=datasets",
            serde_json::json!({"provisioned": 1 << 30}),
        )
        .await;
    admin
        .send(
            reqwest::Method::POST,
            "file-system-snapshots?source_names=datasets",
            serde_json::json!({"suffix": "daily-1"}),
        )
        .await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    for id in [
        "fb01/datasets.daily-1",
        "fb01/datasets.daily-1/00000000-0000-0000-0000-000000000001",
        "default/datasets.daily-1",
    ] {
        let e = c
            .delete_snapshot(csi::DeleteSnapshotRequest {
                snapshot_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{id}: {e:?}");
    }
    assert!(env.mock.with_state(|s| {
        s.snapshots
            .values()
            .any(|sn| sn.name == "datasets.daily-1" && !sn.destroyed)
    }));
}
