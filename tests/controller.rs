//! Controller RPCs against mock-flashblade over verified TLS, through the
//! driver's unix socket.

mod common;

use std::collections::HashMap;

use common::{ControllerOpts, controller_env, create_req, mount_cap};
use flashblade_csi::csi::{self, controller_client::ControllerClient};
use mock_flashblade::{FaultKind, ScriptedFault};
use tonic::Code;

const GIB: i64 = 1 << 30;

async fn client(env: &common::ControllerEnv) -> ControllerClient<tonic::transport::Channel> {
    ControllerClient::new(env.driver.channel().await)
}

fn params(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn capabilities_list_what_is_implemented() {
    let env = controller_env(ControllerOpts::default()).await;
    let caps = client(&env)
        .await
        .controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let types: Vec<i32> = caps
        .iter()
        .map(|c| match &c.r#type {
            Some(csi::controller_service_capability::Type::Rpc(r)) => r.r#type,
            None => 0,
        })
        .collect();
    use csi::controller_service_capability::rpc::Type;
    for t in [
        Type::CreateDeleteVolume,
        Type::ListVolumes,
        Type::GetCapacity,
        Type::ExpandVolume,
        Type::CreateDeleteSnapshot,
        Type::ListSnapshots,
        Type::CloneVolume,
        Type::ModifyVolume,
        Type::PublishUnpublishVolume,
    ] {
        assert!(types.contains(&(t as i32)), "{t:?}");
    }
    // Not advertised means not served.
    assert!(!types.contains(&(Type::GetVolume as i32)));
    let e = client(&env)
        .await
        .controller_get_volume(csi::ControllerGetVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
}

#[tokio::test]
async fn create_validate_list_expand_capacity_delete() {
    let env = common::controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let mut req = create_req("pvc-0001", 5 * GIB);
    req.parameters = params(&[
        ("csi.storage.k8s.io/pvc/name", "claim-alice"),
        ("csi.storage.k8s.io/pvc/namespace", "jhub"),
        ("defaultUserQuota", "1Gi"),
        ("nfsVersions", "4.1"),
    ]);
    let vol = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    assert_eq!(vol.capacity_bytes, 5 * GIB);
    assert!(
        vol.volume_id.starts_with("fb01/k8s-pvc-0001/"),
        "{}",
        vol.volume_id
    );
    assert_eq!(vol.volume_context["server"], "127.0.0.1");
    assert_eq!(vol.volume_context["share"], "/k8s-pvc-0001");
    assert_eq!(vol.volume_context["nfsVersions"], "4.1");
    // On the array: one file system with the quota and the rules.
    let fs = env.mock.with_state(|s| s.file_systems["k8s-pvc-0001"].clone());
    assert_eq!(fs.provisioned, Some(5 * GIB));
    assert!(fs.hard_limit_enabled);
    assert_eq!(fs.default_user_quota, GIB);
    assert!(!fs.nfs.v3_enabled && fs.nfs.v4_1_enabled);
    assert_eq!(fs.nfs.rules, "10.0.0.0/16(rw,root_squash)");
    assert!(
        vol.volume_id.ends_with(&format!("{}/4", fs.id)),
        "{}",
        vol.volume_id
    );
    assert!(env.mock.fs_dir("k8s-pvc-0001").is_dir());

    let v = c
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_id: vol.volume_id.clone(),
            volume_capabilities: vec![mount_cap(1), mount_cap(3)],
            volume_context: vol.volume_context.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.confirmed.unwrap().volume_capabilities.len(), 2);

    let list = c
        .list_volumes(csi::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.entries.len(), 1);
    assert_eq!(list.entries[0].volume.as_ref().unwrap().volume_id, vol.volume_id);

    let cap = c
        .get_capacity(csi::GetCapacityRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(cap.available_capacity > 0);

    let exp = c
        .controller_expand_volume(csi::ControllerExpandVolumeRequest {
            volume_id: vol.volume_id.clone(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 11 * GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(exp.capacity_bytes, 11 * GIB);
    assert!(!exp.node_expansion_required);
    assert_eq!(
        env.mock
            .with_state(|s| s.file_systems["k8s-pvc-0001"].provisioned),
        Some(11 * GIB)
    );

    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: vol.volume_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    // Soft delete: renamed to its tombstone (the name is free again),
    // destroyed with protocols off, data kept for recovery.
    let fs = env.mock.with_state(|s| {
        s.file_systems
            .values()
            .find(|f| flashblade_csi::volume::naming::tombstone_of("k8s-pvc-0001", &f.name).is_some())
            .cloned()
            .expect("the tombstone")
    });
    assert!(fs.destroyed);
    assert!(!fs.nfs.v3_enabled && !fs.nfs.v4_1_enabled && !fs.smb_enabled && !fs.http_enabled);
    assert!(env.mock.fs_dir(&fs.name).is_dir());
    // Gone from the list; deleting again is OK.
    assert!(
        c.list_volumes(csi::ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries
            .is_empty()
    );
    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: vol.volume_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    // The same name makes a new volume; the destroyed one stays, renamed.
    let again = c
        .create_volume(create_req("pvc-0001", 5 * GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_ne!(again.volume_id, vol.volume_id);
    assert!(env.mock.with_state(|s| s.file_systems[&fs.name].destroyed));
}

#[tokio::test]
async fn delete_policies_eradicate_and_retain() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let mut req = create_req("pvc-erad", GIB);
    req.parameters = params(&[("deletePolicy", "eradicate")]);
    let v = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    assert!(v.volume_id.ends_with("/e"));
    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: v.volume_id,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        !env.mock
            .with_state(|s| s.file_systems.contains_key("k8s-pvc-erad"))
    );
    assert!(!env.mock.fs_dir("k8s-pvc-erad").exists());

    let mut req = create_req("pvc-keep", GIB);
    req.parameters = params(&[("deletePolicy", "retain")]);
    let v = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: v.volume_id,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(!env.mock.with_state(|s| s.file_systems["k8s-pvc-keep"].destroyed));
}

#[tokio::test]
async fn idempotent_create_ten_times_is_one_file_system() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    // A fresh name costs exactly one array request: the POST.
    c.create_volume(create_req("pvc-fresh", 2 * GIB)).await.unwrap();
    env.mock.reset_counters();
    c.create_volume(create_req("pvc-fresh-2", 2 * GIB)).await.unwrap();
    let counts = env.mock.counters();
    assert_eq!(counts.count_status("POST", "file-systems", 200), 1);
    assert_eq!(counts.total(), 1, "a fresh create made other requests");
    env.mock.reset_counters();
    let mut ids = Vec::new();
    for _ in 0..10 {
        let v = c
            .create_volume(create_req("pvc-same", 2 * GIB))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        ids.push(v.volume_id);
    }
    assert!(ids.windows(2).all(|w| w[0] == w[1]));
    // One file system; each repeat is a refused POST and a read-back.
    let counts = env.mock.counters();
    assert_eq!(counts.count_status("POST", "file-systems", 200), 1);
    assert_eq!(counts.count_status("POST", "file-systems", 400), 9);
    assert_eq!(counts.count("GET", "file-systems"), 9);
    // Same name, other size: ALREADY_EXISTS, nothing changed.
    let e = c
        .create_volume(create_req("pvc-same", 4 * GIB))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(
        env.mock
            .with_state(|s| s.file_systems["k8s-pvc-same"].provisioned),
        Some(2 * GIB)
    );
    // Same name, other parameters: ALREADY_EXISTS too.
    let mut other = create_req("pvc-same", 2 * GIB);
    other.parameters = params(&[("hardLimit", "false")]);
    assert_eq!(
        c.create_volume(other).await.unwrap_err().code(),
        Code::AlreadyExists
    );
    // Delete ten times: one PATCH renames and destroys; each repeat's PATCH
    // is refused by the array (a destroyed file system cannot be renamed),
    // so nothing changes after the first.
    env.mock.reset_counters();
    for _ in 0..10 {
        c.delete_volume(csi::DeleteVolumeRequest {
            volume_id: ids[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let counts = env.mock.counters();
    assert_eq!(counts.count_status("PATCH", "file-systems", 200), 1);
    assert_eq!(counts.count_status("PATCH", "file-systems", 400), 9);
}

#[tokio::test]
async fn soft_delete_is_two_requests_by_the_array_id() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let v = c
        .create_volume(create_req("pvc-del2", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let delete = |id: String| csi::DeleteVolumeRequest {
        volume_id: id,
        ..Default::default()
    };
    // A live volume: the snapshot check (one filtered GET by the owner's
    // id) and one PATCH by id that renames, switches off and destroys.
    env.mock.reset_counters();
    c.delete_volume(delete(v.volume_id.clone())).await.unwrap();
    let counts = env.mock.counters();
    assert_eq!(counts.count_status("GET", "file-system-snapshots", 200), 1);
    assert_eq!(counts.count_status("PATCH", "file-systems", 200), 1);
    assert_eq!(counts.total(), 2, "{counts:?}");
    let fs = env.mock.with_state(|s| {
        s.file_systems
            .values()
            .find(|f| flashblade_csi::volume::naming::tombstone_of("k8s-pvc-del2", &f.name).is_some())
            .cloned()
            .expect("the tombstone")
    });
    assert!(fs.destroyed);
    assert!(!fs.nfs.v3_enabled && !fs.nfs.v4_1_enabled && !fs.smb_enabled && !fs.http_enabled);

    // A repeat: the PATCH is refused (destroyed), one look-up by id settles
    // it; nothing changes.
    env.mock.reset_counters();
    c.delete_volume(delete(v.volume_id.clone())).await.unwrap();
    let counts = env.mock.counters();
    assert_eq!(counts.count_status("PATCH", "file-systems", 400), 1);
    assert_eq!(counts.count_status("GET", "file-systems", 200), 1);
    assert_eq!(counts.count_status("PATCH", "file-systems", 200), 0);
    assert_eq!(counts.total(), 3, "{counts:?}");
    assert_eq!(
        env.mock.with_state(|s| s.file_systems[&fs.name].destroyed_at),
        fs.destroyed_at
    );

    // An id no file system has: two requests, the PATCH refused, OK.
    env.mock.reset_counters();
    c.delete_volume(delete("fb01/k8s-pvc-del2/0000-gone".into()))
        .await
        .unwrap();
    let counts = env.mock.counters();
    assert_eq!(counts.count_status("PATCH", "file-systems", 400), 1);
    assert_eq!(counts.total(), 2, "{counts:?}");

    // Retain touches nothing (one look-up by id); eradicate keeps the
    // look-up (its name guard) before the destroy and the DELETE.
    for (policy, patches, deletes) in [("retain", 0, 0), ("eradicate", 1, 1)] {
        let mut req = create_req(&format!("pvc-del2-{policy}"), GIB);
        req.parameters = params(&[("deletePolicy", policy)]);
        let v = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
        env.mock.reset_counters();
        c.delete_volume(delete(v.volume_id)).await.unwrap();
        let counts = env.mock.counters();
        assert_eq!(counts.count("GET", "file-systems"), 1, "{policy}");
        assert_eq!(counts.count("PATCH", "file-systems"), patches, "{policy}");
        assert_eq!(counts.count("DELETE", "file-systems"), deletes, "{policy}");
    }
}

#[tokio::test]
async fn a_volume_renamed_by_an_admin() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    // Eradicate (irreversible): the look-up by id sees the foreign name and
    // refuses; nothing is changed.
    let mut req = create_req("pvc-adm-e", GIB);
    req.parameters = params(&[("deletePolicy", "eradicate")]);
    let v = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    let id = env
        .mock
        .with_state(|s| s.file_systems["k8s-pvc-adm-e"].id.clone());
    common::array_patch(
        &env.mock,
        &format!("file-systems?ids={id}"),
        serde_json::json!({"name": "admin-kept"}),
    )
    .await;
    env.mock.reset_counters();
    let e = c
        .delete_volume(csi::DeleteVolumeRequest {
            volume_id: v.volume_id,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(env.mock.counters().count("PATCH", "file-systems"), 0);
    assert!(!env.mock.with_state(|s| s.file_systems["admin-kept"].destroyed));

    // The default soft delete acts by id without a look-up, so it does not
    // see the new name: the file system (still the one made for this
    // volume) is destroyed under the volume's tombstone name, recoverable
    // with its data.
    let v = c
        .create_volume(create_req("pvc-adm-d", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    std::fs::write(env.mock.fs_dir("k8s-pvc-adm-d").join("f"), "data").unwrap();
    let id = env
        .mock
        .with_state(|s| s.file_systems["k8s-pvc-adm-d"].id.clone());
    common::array_patch(
        &env.mock,
        &format!("file-systems?ids={id}"),
        serde_json::json!({"name": "admin-moved"}),
    )
    .await;
    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: v.volume_id,
        ..Default::default()
    })
    .await
    .unwrap();
    let fs = env
        .mock
        .with_state(|s| s.file_systems.values().find(|f| f.id == id).cloned().unwrap());
    assert!(fs.destroyed);
    assert!(flashblade_csi::volume::naming::tombstone_of("k8s-pvc-adm-d", &fs.name).is_some());
    assert_eq!(
        std::fs::read_to_string(env.mock.fs_dir(&fs.name).join("f")).unwrap(),
        "data"
    );
}

#[tokio::test]
async fn maximum_length_and_odd_names() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    for name in ["x".repeat(128), "Ünïcode PVC name/with spaces".to_string()] {
        let a = c
            .create_volume(create_req(&name, GIB))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let b = c
            .create_volume(create_req(&name, GIB))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(a.volume_id, b.volume_id);
        assert!(a.volume_id.len() <= 128);
        c.delete_volume(csi::DeleteVolumeRequest {
            volume_id: a.volume_id,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert_eq!(env.mock.counters().count_status("POST", "file-systems", 200), 2);
}

#[tokio::test]
async fn fifty_concurrent_creates_of_one_name_make_one_post() {
    let env = controller_env(ControllerOpts::default()).await;
    // Slow the array down so the calls really overlap.
    env.mock.set_faults(mock_flashblade::Faults {
        latency_ms: 50,
        ..Default::default()
    });
    let channel = env.driver.channel().await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let mut c = ControllerClient::new(channel.clone());
        set.spawn(async move { c.create_volume(create_req("pvc-burst", GIB)).await });
    }
    let mut ok_ids = Vec::new();
    let mut aborted = 0;
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(v) => ok_ids.push(v.into_inner().volume.unwrap().volume_id),
            Err(e) if e.code() == Code::Aborted => aborted += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(!ok_ids.is_empty());
    assert!(ok_ids.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(ok_ids.len() + aborted, 50);
    assert_eq!(env.mock.counters().count("POST", "file-systems"), 1);
    assert_eq!(env.mock.with_state(|s| s.file_systems.len()), 1);
}

#[tokio::test]
async fn different_volumes_proceed_in_parallel() {
    let env = controller_env(ControllerOpts::default()).await;
    env.mock.set_faults(mock_flashblade::Faults {
        latency_ms: 300,
        ..Default::default()
    });
    let channel = env.driver.channel().await;
    // Warm up the session so the timing below is only the creates.
    ControllerClient::new(channel.clone())
        .get_capacity(csi::GetCapacityRequest::default())
        .await
        .unwrap();
    let start = std::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let mut c = ControllerClient::new(channel.clone());
        set.spawn(async move { c.create_volume(create_req(&format!("pvc-par-{i}"), GIB)).await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    // Each create is two array calls (look-up, POST) of 300 ms: in parallel
    // about 0.6 s, serialised 4.8 s.
    assert!(
        start.elapsed() < std::time::Duration::from_millis(3000),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(env.mock.with_state(|s| s.file_systems.len()), 8);
}

#[tokio::test]
async fn one_login_for_many_calls_and_relogin_after_expiry() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    for i in 0..5 {
        c.create_volume(create_req(&format!("pvc-l{i}"), GIB))
            .await
            .unwrap();
    }
    c.list_volumes(csi::ListVolumesRequest::default()).await.unwrap();
    c.get_capacity(csi::GetCapacityRequest::default()).await.unwrap();
    assert_eq!(env.mock.counters().logins, 1);

    env.mock.expire_sessions();
    // Concurrent callers that all see the refused session share one login.
    let channel = env.driver.channel().await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10 {
        let mut c = ControllerClient::new(channel.clone());
        set.spawn(async move { c.create_volume(create_req(&format!("pvc-r{i}"), GIB)).await });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(env.mock.counters().logins, 2);
}

#[tokio::test]
async fn rotated_token_is_read_again_without_restart() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    c.create_volume(create_req("pvc-t1", GIB)).await.unwrap();
    let new_token = "T-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
    env.mock.set_api_token(new_token);
    std::fs::write(&env.token_file, format!("{new_token}\n")).unwrap();
    env.mock.expire_sessions();
    c.create_volume(create_req("pvc-t2", GIB)).await.unwrap();
    assert_eq!(env.mock.counters().logins, 2);
}

#[tokio::test]
async fn wrong_token_is_unavailable_and_never_printed() {
    let env = controller_env(ControllerOpts::default()).await;
    let secret = "T-99999999-8888-7777-6666-555555555555";
    // The driver logs in at start; once it has, make it log in again with
    // the new file.
    for _ in 0..200 {
        if env.mock.counters().logins >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    std::fs::write(&env.token_file, secret).unwrap();
    env.mock.expire_sessions();
    let mut c = client(&env).await;
    let e = c.create_volume(create_req("pvc-x", GIB)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("API token was refused"), "{}", e.message());
    assert!(!e.message().contains(secret));
    assert!(!e.message().contains(&env.mock.api_token));
}

#[tokio::test]
async fn tls_is_refused_without_the_ca() {
    let env = controller_env(ControllerOpts {
        ca: false,
        ..Default::default()
    })
    .await;
    let mut c = client(&env).await;
    let e = c.create_volume(create_req("pvc-tls", GIB)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().to_lowercase().contains("certificate"),
        "{}",
        e.message()
    );
    assert_eq!(env.mock.counters().logins, 0);
    let probe = csi::identity_client::IdentityClient::new(env.driver.channel().await)
        .probe(csi::ProbeRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(probe.ready, Some(false));
}

#[tokio::test]
async fn retries_through_429_503_busy_and_ambiguous_500_make_one_file_system() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    c.get_capacity(csi::GetCapacityRequest::default()).await.unwrap();
    for kind in [
        FaultKind::RateLimited,
        FaultKind::Unavailable,
        FaultKind::Busy,
        FaultKind::Ambiguous500,
    ] {
        env.mock
            .push_fault(ScriptedFault::new(Some("POST"), Some("file-systems"), kind, 1));
    }
    let v = c
        .create_volume(create_req("pvc-faults", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert!(v.volume_id.starts_with("fb01/k8s-pvc-faults/"));
    assert_eq!(env.mock.with_state(|s| s.file_systems.len()), 1);
    let counters = env.mock.counters();
    assert_eq!(counters.count_status("POST", "file-systems", 429), 1);
    assert_eq!(counters.count_status("POST", "file-systems", 503), 1);
    assert_eq!(counters.count_status("POST", "file-systems", 500), 2);
    // The ambiguous 500 had committed: the driver read the name back and
    // found it instead of posting a fifth time.
    assert_eq!(counters.count("POST", "file-systems"), 4);
    assert_eq!(counters.count_status("POST", "file-systems", 200), 0);
    assert!(env.mock.faults().script.is_empty());
}

#[tokio::test]
async fn dropped_connection_after_commit_is_resolved_by_reading_back() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    c.get_capacity(csi::GetCapacityRequest::default()).await.unwrap();
    env.mock.push_fault(ScriptedFault::new(
        Some("POST"),
        Some("file-systems"),
        FaultKind::AmbiguousReset,
        1,
    ));
    env.mock.push_fault(ScriptedFault::new(
        Some("GET"),
        Some("file-systems"),
        FaultKind::BadGateway,
        1,
    ));
    c.create_volume(create_req("pvc-reset", GIB)).await.unwrap();
    assert_eq!(env.mock.with_state(|s| s.file_systems.len()), 1);
    assert_eq!(env.mock.counters().count("POST", "file-systems"), 1);
}

#[tokio::test]
async fn exhausted_retries_are_unavailable_and_leave_nothing() {
    let env = controller_env(ControllerOpts {
        array_timeout: Some("3s"),
        ..Default::default()
    })
    .await;
    let mut c = client(&env).await;
    c.get_capacity(csi::GetCapacityRequest::default()).await.unwrap();
    env.mock.push_fault(ScriptedFault::new(
        Some("POST"),
        Some("file-systems"),
        FaultKind::Unavailable,
        100,
    ));
    let e = c.create_volume(create_req("pvc-down", GIB)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert_eq!(env.mock.with_state(|s| s.file_systems.len()), 0);
}

/// A controller with a 2 s array deadline whose array then stalls the next
/// `count` `method` requests on `resource` for 30 s.
async fn stalling_env(
    method: &str,
    resource: &str,
    count: u32,
) -> (common::ControllerEnv, ControllerClient<tonic::transport::Channel>) {
    let env = controller_env(ControllerOpts {
        array_timeout: Some("2s"),
        ..Default::default()
    })
    .await;
    let mut c = client(&env).await;
    c.get_capacity(csi::GetCapacityRequest::default()).await.unwrap();
    env.mock.set_faults(mock_flashblade::Faults {
        stall_ms: 30_000,
        script: vec![ScriptedFault::new(
            Some(method),
            Some(resource),
            FaultKind::Stall,
            count,
        )],
        ..Default::default()
    });
    (env, c)
}

#[tokio::test]
async fn a_stalled_array_answers_within_the_deadline() {
    let (_env, mut c) = stalling_env("GET", "arrays/space", 1).await;
    let start = std::time::Instant::now();
    let e = c
        .get_capacity(csi::GetCapacityRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_any_lookup() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let block = {
        use csi::volume_capability::{AccessMode, AccessType, BlockVolume};
        csi::VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: Some(AccessMode { mode: 1 }),
        }
    };
    let cases: Vec<(csi::CreateVolumeRequest, &str)> = vec![
        (
            csi::CreateVolumeRequest {
                name: String::new(),
                ..create_req("x", GIB)
            },
            "name",
        ),
        (
            csi::CreateVolumeRequest {
                volume_capabilities: vec![],
                ..create_req("x", GIB)
            },
            "volume_capabilities",
        ),
        (
            csi::CreateVolumeRequest {
                volume_capabilities: vec![block],
                ..create_req("x", GIB)
            },
            "block",
        ),
        (
            csi::CreateVolumeRequest {
                parameters: params(&[("bogus", "1")]),
                ..create_req("x", GIB)
            },
            "bogus",
        ),
        (
            csi::CreateVolumeRequest {
                parameters: params(&[("exportRules", "*(rw,no_root_squash)")]),
                ..create_req("x", GIB)
            },
            "every host",
        ),
        (
            csi::CreateVolumeRequest {
                parameters: params(&[("exportRules", "10.0.0.0/8(rw)"), ("exportPolicy", "p")]),
                ..create_req("x", GIB)
            },
            "exclusive",
        ),
        (
            csi::CreateVolumeRequest {
                parameters: params(&[("exportPolicy", "no-such-policy")]),
                ..create_req("x", GIB)
            },
            "no such NFS export policy",
        ),
        (
            csi::CreateVolumeRequest {
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: 10,
                    limit_bytes: 5,
                }),
                ..create_req("x", GIB)
            },
            "limit_bytes",
        ),
    ];
    for (req, needle) in cases {
        let e = c.create_volume(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{needle}: {e:?}");
        assert!(e.message().contains(needle), "{needle}: {}", e.message());
    }
    assert_eq!(env.mock.counters().count("POST", "file-systems"), 0);

    let e = c
        .delete_volume(csi::DeleteVolumeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_id: "fb01/x/y".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_capabilities: vec![mount_cap(1)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .controller_expand_volume(csi::ControllerExpandVolumeRequest {
            volume_id: "fb01/x/y".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn unknown_volumes() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    // Delete of an unknown id is OK (conformance), for every id shape.
    for id in [
        "fake-vol-id",
        "fb01/k8s-nope/0000",
        "not/a/valid/volume/id",
        "../../etc",
    ] {
        c.delete_volume(csi::DeleteVolumeRequest {
            volume_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let e = c
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_id: "fb01/k8s-nope/0000".into(),
            volume_capabilities: vec![mount_cap(1)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = c
        .controller_expand_volume(csi::ControllerExpandVolumeRequest {
            volume_id: "fb01/k8s-nope/0000".into(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn same_name_but_other_file_system_is_never_touched() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let v = c
        .create_volume(create_req("pvc-swap", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    // Someone replaces the file system behind the driver's back: the id's
    // file system is gone (deleting it is done), the same-named one is
    // never touched.
    let forged =
        v.volume_id.rsplit_once('/').unwrap().0.to_string() + "/00000000-0000-0000-0000-000000000000";
    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: forged.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(!env.mock.with_state(|s| s.file_systems["k8s-pvc-swap"].destroyed));
    let e = c
        .controller_expand_volume(csi::ControllerExpandVolumeRequest {
            volume_id: forged,
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 2 * GIB,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert_eq!(
        env.mock
            .with_state(|s| s.file_systems["k8s-pvc-swap"].provisioned),
        Some(GIB)
    );
}

#[tokio::test]
async fn static_dataset_volumes_are_never_mutated() {
    let env = controller_env(ControllerOpts::default()).await;
    // An admin's existing dataset file system.
    let api = common::ArrayAdmin::new(&env.mock).await;
    api.send(
        reqwest::Method::POST,
        "file-systems?names=datasets",
        serde_json::json!({"provisioned": 1i64 << 40}),
    )
    .await;
    let mut c = client(&env).await;
    for handle in ["datasets", "fb01/datasets"] {
        let v = c
            .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
                volume_id: handle.into(),
                volume_capabilities: vec![mount_cap(3)],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(v.confirmed.is_some());
        let e = c
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: handle.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        let e = c
            .controller_expand_volume(csi::ControllerExpandVolumeRequest {
                volume_id: handle.into(),
                capacity_range: Some(csi::CapacityRange {
                    required_bytes: 2i64 << 40,
                    limit_bytes: 0,
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
    }
    let fs = env.mock.with_state(|s| s.file_systems["datasets"].clone());
    assert!(!fs.destroyed);
    assert_eq!(fs.provisioned, Some(1i64 << 40));
    assert_eq!(env.mock.counters().count("PATCH", "file-systems"), 0);
    // ListVolumes reports only the driver's own volumes.
    assert!(
        c.list_volumes(csi::ListVolumesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .entries
            .is_empty()
    );
}

#[tokio::test]
async fn expand_rules() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let v = c
        .create_volume(create_req("pvc-grow", 2 * GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let expand = |req, lim| csi::ControllerExpandVolumeRequest {
        volume_id: v.volume_id.clone(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: req,
            limit_bytes: lim,
        }),
        ..Default::default()
    };
    let e = c.controller_expand_volume(expand(GIB, 0)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    let e = c.controller_expand_volume(expand(0, GIB)).await.unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
    // Same size: OK without a change.
    let r = c
        .controller_expand_volume(expand(2 * GIB, 0))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.capacity_bytes, 2 * GIB);
    assert_eq!(env.mock.counters().count("PATCH", "file-systems"), 0);
}

#[tokio::test]
async fn list_volumes_pages_and_refuses_bad_tokens() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            c.create_volume(create_req(&format!("pvc-list-{i}"), GIB))
                .await
                .unwrap()
                .into_inner()
                .volume
                .unwrap()
                .volume_id,
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_volumes(csi::ListVolumesRequest {
                max_entries: 3,
                starting_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.entries.len() <= 3);
        seen.extend(r.entries.into_iter().map(|e| e.volume.unwrap().volume_id));
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    created.sort();
    seen.sort();
    assert_eq!(seen, created);
    let e = c
        .list_volumes(csi::ListVolumesRequest {
            max_entries: 0,
            starting_token: "invalid-token".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    let e = c
        .list_volumes(csi::ListVolumesRequest {
            max_entries: -1,
            starting_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn export_policy_parameter() {
    let env = controller_env(ControllerOpts {
        default_export_rules: None,
        ..Default::default()
    })
    .await;
    let api = common::ArrayAdmin::new(&env.mock).await;
    api.send(
        reqwest::Method::POST,
        "nfs-export-policies?names=k8s-nodes",
        serde_json::json!({"rules": [{"client": "10.0.0.0/16", "permission": "rw"}]}),
    )
    .await;
    let mut c = client(&env).await;
    // No rules configured anywhere: refused precisely.
    let e = c.create_volume(create_req("pvc-nopol", GIB)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("default_export_rules"));
    let mut req = create_req("pvc-pol", GIB);
    req.parameters = params(&[("exportPolicy", "k8s-nodes")]);
    c.create_volume(req).await.unwrap();
    let fs = env.mock.with_state(|s| s.file_systems["k8s-pvc-pol"].clone());
    assert_eq!(fs.nfs.export_policy.as_deref(), Some("k8s-nodes"));
    assert_eq!(fs.nfs.rules, "");
}

#[tokio::test]
async fn two_controllers_creating_the_same_names_both_get_the_volume() {
    // A leader-election hand-over: two controller processes replay the same
    // CreateVolume calls against one array at once.
    let env = controller_env(ControllerOpts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let args = flashblade_csi::config::Settings {
        mode: Some(flashblade_csi::config::Mode::Controller),
        array: flashblade_csi::config::ArraySettings {
            name: Some("fb01".parse().unwrap()),
            management_url: Some(env.mock.url.clone()),
            api_token_file: Some(env.token_file.clone()),
            ca_file: env.mock.ca_file.clone(),
            nfs_endpoint: Some("127.0.0.1".parse().unwrap()),
            default_export_rules: Some("10.0.0.0/16(rw,root_squash)".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let second = common::Driver::start(dir.path(), args).await;
    env.mock.set_faults(mock_flashblade::Faults {
        latency_ms: 5,
        ..Default::default()
    });
    let (a, b) = (client(&env).await, ControllerClient::new(second.channel().await));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..125 {
        for c in [a.clone(), b.clone()] {
            let mut c = c;
            calls.spawn(async move {
                let name = format!("pvc-handover-{i}");
                let r = c.create_volume(create_req(&name, GIB)).await;
                (name, r.map(|r| r.into_inner().volume.unwrap().volume_id))
            });
        }
    }
    let mut ids = std::collections::HashMap::new();
    while let Some(r) = calls.join_next().await {
        let (name, r) = r.unwrap();
        let id = r.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        if let Some(other) = ids.insert(name.clone(), id.clone()) {
            assert_eq!(other, id, "{name} got two ids");
        }
    }
    assert_eq!(ids.len(), 125);
    assert_eq!(env.mock.counters().count_status("POST", "file-systems", 200), 125);
}

#[tokio::test]
async fn two_csi_names_never_share_a_file_system() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let first = c
        .create_volume(create_req("col a", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    // The name that spells the first one's file system.
    let fs = first.volume_id.split('/').nth(1).unwrap().to_string();
    let spelled = fs.strip_prefix("k8s-").unwrap();
    let second = c
        .create_volume(create_req(spelled, GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_ne!(first.volume_id, second.volume_id);
    // A prefix with '-' could collide with the default prefix: refused.
    let mut req = create_req("z", GIB);
    req.parameters.insert("namePrefix".into(), "k8s-col".into());
    let e = c.create_volume(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("namePrefix"), "{}", e.message());
}

#[tokio::test]
async fn one_budget_per_rpc_from_the_callers_deadline() {
    // Every create stalls past the per-request deadline: without a budget
    // per RPC, retries and read-backs would add up to far more.
    let (env, mut c) = stalling_env("POST", "file-systems", 10).await;
    let start = std::time::Instant::now();
    let mut req = tonic::Request::new(create_req("pvc-budget", GIB));
    req.set_timeout(std::time::Duration::from_secs(3));
    let e = c.create_volume(req).await.unwrap_err();
    let took = start.elapsed();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        e.message().contains("budget"),
        "the caller timed out first: {e:?}"
    );
    assert!(took < std::time::Duration::from_secs(3), "{took:?}");
    // The array recovers; the retried call resolves by name: one volume.
    env.mock.set_faults(mock_flashblade::Faults::default());
    c.create_volume(create_req("pvc-budget", GIB)).await.unwrap();
    c.create_volume(create_req("pvc-budget", GIB)).await.unwrap();
    assert_eq!(
        env.mock
            .with_state(|s| s.file_systems.keys().filter(|k| k.contains("pvc-budget")).count()),
        1
    );
}

#[tokio::test]
async fn a_soft_deleted_name_can_be_used_again_at_once() {
    // The conformance suite reuses names across specs; after a soft delete
    // (the default) the name must be free while the data stays recoverable.
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let first = c
        .create_volume(create_req("pvc-reuse", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    std::fs::write(env.mock.fs_dir("k8s-pvc-reuse").join("work.txt"), "keep me").unwrap();
    for _ in 0..2 {
        c.delete_volume(csi::DeleteVolumeRequest {
            volume_id: first.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let second = c
        .create_volume(create_req("pvc-reuse", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_ne!(first.volume_id, second.volume_id);
    // The old one is destroyed under its tombstone name, data intact, and
    // the name maps back to it.
    let tomb = env.mock.with_state(|s| {
        s.file_systems
            .values()
            .find(|f| f.destroyed && f.name != "k8s-pvc-reuse")
            .map(|f| f.name.clone())
            .unwrap()
    });
    assert!(
        flashblade_csi::volume::naming::tombstone_of("k8s-pvc-reuse", &tomb).is_some(),
        "{tomb}"
    );
    assert_eq!(
        std::fs::read_to_string(env.mock.fs_dir(&tomb).join("work.txt")).unwrap(),
        "keep me"
    );
    // Deleting the old id again changes nothing.
    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: first.volume_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        env.mock
            .with_state(|s| !s.file_systems["k8s-pvc-reuse"].destroyed)
    );
    // The second one deleted too, in the same second as the first most of
    // the time: its tombstone must not collide (the conformance suite hit
    // that), so it takes a later second's. And a third, for good measure.
    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: second.volume_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let third = c
        .create_volume(create_req("pvc-reuse", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: third.volume_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let tombs = env.mock.with_state(|s| {
        s.file_systems
            .values()
            .filter(|f| {
                f.destroyed
                    && flashblade_csi::volume::naming::tombstone_of("k8s-pvc-reuse", &f.name).is_some()
            })
            .count()
    });
    assert_eq!(tombs, 3);
}

#[tokio::test]
async fn list_volumes_pages_by_name_on_the_array() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let mut want = Vec::new();
    for i in 0..25 {
        let v = c
            .create_volume(create_req(&format!("pvc-page-{i:02}"), GIB))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        want.push(v.volume_id);
    }
    want.sort();
    for max in [1, 2, 7, 25, 26] {
        env.mock.reset_counters();
        let mut got = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let r = c
                .list_volumes(csi::ListVolumesRequest {
                    max_entries: max,
                    starting_token: token.clone(),
                })
                .await
                .unwrap()
                .into_inner();
            pages += 1;
            assert!(r.entries.len() <= max as usize);
            got.extend(r.entries.into_iter().map(|e| e.volume.unwrap().volume_id));
            if r.next_token.is_empty() {
                break;
            }
            token = r.next_token;
        }
        assert_eq!(got, want, "max_entries {max}");
        // One array request per page.
        assert_eq!(
            env.mock.counters().count("GET", "file-systems"),
            pages,
            "max_entries {max}"
        );
    }
    // A token whose name is not a file-system name is refused, not sent on.
    let bad = flashblade_csi::volume::naming::fs_name_for(&"k8s".parse().unwrap(), "x");
    let forged: String = format!("v1|0|{bad}' or name='*")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let e = c
        .list_volumes(csi::ListVolumesRequest {
            max_entries: 1,
            starting_token: forged,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
}

/// ListVolumes returns exactly the ids CreateVolume returned, the delete
/// policy included: the policy lives only in the id (the array has no place
/// for it), so the controller reads it back from the PersistentVolumes.
#[tokio::test]
async fn list_volumes_returns_the_ids_create_returned() {
    let kube_dir = tempfile::tempdir().unwrap();
    let kube = common::fake_kube::FakeKube::start(kube_dir.path()).await;
    let env = controller_env(ControllerOpts {
        kubeconfig: Some(kube.controller_kubeconfig.clone()),
        ..Default::default()
    })
    .await;
    let mut c = client(&env).await;
    let mut created = Vec::new();
    for (name, policy) in [
        ("pvc-ret", Some("retain")),
        ("pvc-era", Some("eradicate")),
        ("pvc-def", None),
    ] {
        let mut req = create_req(name, 1 << 30);
        if let Some(p) = policy {
            req.parameters.insert("deletePolicy".into(), p.into());
        }
        let id = c
            .create_volume(req)
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap()
            .volume_id;
        // The PVs the provisioner would make (pvc-def's too).
        kube.add_pv(&format!("pv-{name}"), &id, Some(("jhub", name)));
        created.push(id);
    }
    assert!(
        created[0].ends_with("/r") && created[1].ends_with("/e"),
        "{created:?}"
    );
    let listed: Vec<String> = c
        .list_volumes(csi::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.volume.unwrap().volume_id)
        .collect();
    let mut want = created.clone();
    want.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, want, "ListVolumes must give back the ids CreateVolume gave");
    // A page at a time, the same ids.
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_volumes(csi::ListVolumesRequest {
                max_entries: 1,
                starting_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        paged.extend(r.entries.into_iter().map(|e| e.volume.unwrap().volume_id));
        if r.next_token.is_empty() {
            break;
        }
        token = r.next_token;
    }
    paged.sort();
    assert_eq!(paged, want);
}
