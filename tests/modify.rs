//! ControllerModifyVolume (VolumeAttributesClass) and CreateVolume's
//! mutable_parameters, against mock-flashblade through the driver's socket.

mod common;

use std::collections::HashMap;

use common::{ControllerOpts, controller_env, create_req};
use flashblade_csi::csi::{self, controller_client::ControllerClient};
use tonic::Code;

const GIB: i64 = 1 << 30;

fn params(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn modify(volume_id: &str, kv: &[(&str, &str)]) -> csi::ControllerModifyVolumeRequest {
    csi::ControllerModifyVolumeRequest {
        volume_id: volume_id.into(),
        mutable_parameters: params(kv),
        ..Default::default()
    }
}

#[tokio::test]
async fn modify_volume_is_advertised_and_changes_the_file_system() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let caps = c
        .controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    use csi::controller_service_capability::{Type, rpc};
    assert!(caps.iter().any(|cap| matches!(&cap.r#type,
        Some(Type::Rpc(r)) if r.r#type == rpc::Type::ModifyVolume as i32)));

    let id = c
        .create_volume(create_req("pvc-home", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let before = env.mock.with_state(|s| s.file_systems["k8s-pvc-home"].clone());
    assert!(before.hard_limit_enabled && before.snapshot_directory_enabled);
    assert_eq!(before.default_user_quota, 0);

    let change = [
        ("hardLimit", "false"),
        ("snapshotDirectory", "false"),
        ("defaultUserQuota", "10Gi"),
        ("defaultGroupQuota", "20Gi"),
        ("exportRules", "10.9.0.0/16(rw,root_squash)"),
    ];
    c.controller_modify_volume(modify(&id, &change)).await.unwrap();
    let after = env.mock.with_state(|s| s.file_systems["k8s-pvc-home"].clone());
    assert!(!after.hard_limit_enabled && !after.snapshot_directory_enabled);
    assert_eq!(after.default_user_quota, 10 * GIB);
    assert_eq!(after.default_group_quota, 20 * GIB);
    assert_eq!(after.nfs.rules, "10.9.0.0/16(rw,root_squash)");
    assert_eq!(after.provisioned, before.provisioned);

    // Idempotent: the same class again sends no change to the array.
    env.mock.reset_counters();
    c.controller_modify_volume(modify(&id, &change)).await.unwrap();
    let patches: u64 = env
        .mock
        .counters()
        .requests
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.count)
        .sum();
    assert_eq!(patches, 0, "{:?}", env.mock.counters());

    // A default quota of 0 removes it; an export policy replaces the rules.
    let api = common::ArrayAdmin::new(&env.mock).await;
    api.send(
        reqwest::Method::POST,
        "nfs-export-policies?names=k8s-nodes",
        serde_json::json!({"rules": [{"client": "10.0.0.0/16", "permission": "rw"}]}),
    )
    .await;
    c.controller_modify_volume(modify(
        &id,
        &[("defaultUserQuota", "0"), ("exportPolicy", "k8s-nodes")],
    ))
    .await
    .unwrap();
    let after = env.mock.with_state(|s| s.file_systems["k8s-pvc-home"].clone());
    assert_eq!(after.default_user_quota, 0);
    assert_eq!(after.nfs.export_policy.as_deref(), Some("k8s-nodes"));
    let e = c
        .controller_modify_volume(modify(&id, &[("exportPolicy", "no-such-policy")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
}

#[tokio::test]
async fn modify_volume_refuses_bad_input_and_changes_nothing() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let id = c
        .create_volume(create_req("pvc-bad", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    let before = env.mock.with_state(|s| s.file_systems["k8s-pvc-bad"].clone());
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("bogus", "1")], "bogus"),
        (&[("nfsVersions", "3")], "nfsVersions"),
        (&[("namePrefix", "x")], "namePrefix"),
        (&[("defaultUserQuota", "-5Gi")], "defaultUserQuota"),
        (&[("defaultGroupQuota", "10GB")], "defaultGroupQuota"),
        (&[("hardLimit", "yes")], "hardLimit"),
        (&[("exportRules", "*(rw)")], "exportRules"),
        (
            &[("exportRules", "10.0.0.0/8(rw)"), ("exportPolicy", "p")],
            "exclusive",
        ),
        // A bad key fails even when a good one comes with it.
        (
            &[("hardLimit", "false"), ("deletePolicy", "retain")],
            "deletePolicy",
        ),
    ];
    for (kv, needle) in cases {
        let e = c.controller_modify_volume(modify(&id, kv)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{kv:?}: {e:?}");
        assert!(e.message().contains(needle), "{kv:?}: {}", e.message());
    }
    let after = env.mock.with_state(|s| s.file_systems["k8s-pvc-bad"].clone());
    assert_eq!(before.hard_limit_enabled, after.hard_limit_enabled);
    assert_eq!(before.default_user_quota, after.default_user_quota);

    // Static (imported) volumes are never changed.
    let api = common::ArrayAdmin::new(&env.mock).await;
    api.send(
        reqwest::Method::POST,
        "file-systems?names=datasets",
        serde_json::json!({"provisioned": 1i64 << 40}),
    )
    .await;
    for handle in ["datasets", "fb01/datasets"] {
        let e = c
            .controller_modify_volume(modify(handle, &[("defaultUserQuota", "1Gi")]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{handle}: {e:?}");
    }
    assert_eq!(
        env.mock
            .with_state(|s| s.file_systems["datasets"].default_user_quota),
        0
    );
    // An imported volume that does not exist is NOT_FOUND (conformance:
    // "should fail if volume does not exist" sends such an id).
    let e = c
        .controller_modify_volume(modify("non-existing-volume-id", &[("hardLimit", "true")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // Missing volume and missing id.
    let gone = id.replace(&before.id, "00000000-0000-0000-0000-000000000000");
    let e = c
        .controller_modify_volume(modify(&gone, &[("hardLimit", "true")]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = c.controller_modify_volume(modify("", &[])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn create_volume_applies_mutable_parameters() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let mut req = create_req("pvc-vac", GIB);
    req.parameters = params(&[("defaultUserQuota", "1Gi")]);
    req.mutable_parameters = params(&[("defaultUserQuota", "10Gi"), ("hardLimit", "true")]);
    c.create_volume(req.clone()).await.unwrap();
    assert_eq!(
        env.mock
            .with_state(|s| s.file_systems["k8s-pvc-vac"].default_user_quota),
        10 * GIB
    );
    // A retry with the same request is the same volume.
    c.create_volume(req).await.unwrap();
    for (kv, code) in [
        (&[("deletePolicy", "retain")][..], Code::InvalidArgument),
        (&[("what", "ever")][..], Code::InvalidArgument),
        (&[("defaultUserQuota", "-1")][..], Code::InvalidArgument),
    ] {
        let mut req = create_req("pvc-vac-bad", GIB);
        req.mutable_parameters = params(kv);
        let e = c.create_volume(req).await.unwrap_err();
        assert_eq!(e.code(), code, "{kv:?}");
    }
    assert!(
        env.mock
            .with_state(|s| !s.file_systems.contains_key("k8s-pvc-vac-bad"))
    );
    // ValidateVolumeCapabilities judges mutable parameters too.
    let id = format!(
        "fb01/k8s-pvc-vac/{}",
        env.mock.with_state(|s| s.file_systems["k8s-pvc-vac"].id.clone())
    );
    let v = c
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_id: id.clone(),
            volume_capabilities: vec![common::mount_cap(5)],
            mutable_parameters: params(&[("defaultUserQuota", "10Gi")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v.confirmed.is_some(), "{}", v.message);
    let v = c
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_id: id,
            volume_capabilities: vec![common::mount_cap(5)],
            mutable_parameters: params(&[("nfsVersions", "3")]),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        v.confirmed.is_none() && v.message.contains("nfsVersions"),
        "{}",
        v.message
    );
}
