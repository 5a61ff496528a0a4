//! The controller against a Kubernetes API server that behaves as a loaded
//! one does: lists answered in pages, a continue token the server has
//! forgotten (410 Gone), 429 Too Many Requests with a wait hint, and a slow
//! server. The fake answers these as kube-apiserver does (the deploy checks
//! validate its traffic against the Kubernetes schemas).

mod common;

use std::time::{Duration, Instant};

use common::fake_kube::FakeKube;
use common::{ControllerOpts, controller_env, create_req, mount_cap};
use flashblade_csi::csi::{self, controller_client::ControllerClient};
use serde_json::json;
use tonic::Code;

const GIB: i64 = 1 << 30;
const RWX: i32 = 5;

async fn setup() -> (common::ControllerEnv, FakeKube, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start(dir.path()).await;
    kube.add_node("n1", &["10.1.0.1"]);
    kube.add_node("n2", &["10.1.0.2"]);
    let env = controller_env(ControllerOpts {
        kubeconfig: Some(kube.controller_kubeconfig.clone()),
        ..Default::default()
    })
    .await;
    (env, kube, dir)
}

fn publish(v: &csi::Volume, node: &str) -> csi::ControllerPublishVolumeRequest {
    csi::ControllerPublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        node_id: node.into(),
        volume_capability: Some(mount_cap(RWX)),
        volume_context: v.volume_context.clone(),
        ..Default::default()
    }
}

fn rules(env: &common::ControllerEnv, fs: &str) -> String {
    env.mock.with_state(|s| s.file_systems[fs].nfs.rules.clone())
}

/// ListVolumes reads the id each volume's PV holds; with 1,200 PVs the
/// listing comes in pages of 500, and a continue token that expires half
/// way starts it again rather than failing or reporting a partial list.
#[tokio::test]
async fn pv_listings_are_paged_and_survive_an_expired_continue_token() {
    let (env, kube, _dir) = setup().await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let mut req = create_req("pvc-paged", GIB);
    req.parameters.insert("deletePolicy".into(), "eradicate".into());
    let v = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    assert!(v.volume_id.ends_with("/e"), "{}", v.volume_id);
    for i in 0..1200 {
        let mut pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": format!("other-{i:04}")},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "csi": {"driver": "other.csi.example", "volumeHandle": format!("h-{i}")},
            },
        });
        kube.add_bound(&mut pv, None, "other");
    }
    // Ours comes last: only the last page has it.
    kube.add_pv("pv-paged", &v.volume_id, Some(("jhub", "claim-paged")));
    kube.behaviour.lock().unwrap().expire_next_continue = true;
    let before = kube.objects.lock().unwrap().requests.len();

    let listed = c
        .list_volumes(csi::ListVolumesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<String> = listed
        .entries
        .iter()
        .filter_map(|e| e.volume.as_ref().map(|v| v.volume_id.clone()))
        .collect();
    assert_eq!(ids, vec![v.volume_id.clone()]);
    let pages = kube.objects.lock().unwrap().requests[before..]
        .iter()
        .filter(|r| r.as_str() == "GET persistentvolumes")
        .count();
    // Page 1, then page 2's token has expired (the server answers 410
    // before reading anything), then pages 1, 2 and 3 again.
    assert_eq!(pages, 4, "one restart after the 410");
    assert!(!kube.behaviour.lock().unwrap().expire_next_continue);
}

/// 429 with a wait hint: the controller waits as asked and carries on when
/// the wait fits its budget; a wait longer than that is not sat out: the
/// call fails at once, naming the cause, and changes nothing.
#[tokio::test]
async fn too_many_requests_are_waited_out_within_a_budget() {
    let (env, kube, _dir) = setup().await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let mut req = create_req("pvc-429", GIB);
    req.parameters.insert("exportTo".into(), "nodes".into());
    let v = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    let fs = v.volume_context["fsName"].clone();

    kube.behaviour
        .lock()
        .unwrap()
        .throttle_once
        .push(("/api/v1/nodes/n1".into(), 1));
    let t = Instant::now();
    c.controller_publish_volume(publish(&v, "n1")).await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(rules(&env, &fs), "10.1.0.1(rw,root_squash)");

    kube.behaviour
        .lock()
        .unwrap()
        .throttle_once
        .push(("/api/v1/nodes/n2".into(), 60));
    let t = Instant::now();
    let e = c.controller_publish_volume(publish(&v, "n2")).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("Too many requests"), "{}", e.message());
    assert_eq!(rules(&env, &fs), "10.1.0.1(rw,root_squash)");
    // The next attempt (the attacher retries) goes through.
    c.controller_publish_volume(publish(&v, "n2")).await.unwrap();
}

/// A slow API server (every answer 1.5 s late) slows node-following
/// publishes down but breaks nothing.
#[tokio::test]
async fn a_slow_api_server_slows_publishing_down_and_nothing_else() {
    let (env, kube, _dir) = setup().await;
    let mut c = ControllerClient::new(env.driver.channel().await);
    let mut req = create_req("pvc-slow", GIB);
    req.parameters.insert("exportTo".into(), "nodes".into());
    let v = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    let fs = v.volume_context["fsName"].clone();
    kube.behaviour.lock().unwrap().delay = Some(Duration::from_millis(1500));
    let t = Instant::now();
    c.controller_publish_volume(publish(&v, "n1")).await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(1500));
    assert_eq!(rules(&env, &fs), "10.1.0.1(rw,root_squash)");
    // A range-exported volume on the same slow server: published, untouched.
    let r = c
        .create_volume(create_req("pvc-slow-range", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    c.controller_publish_volume(publish(&r, "n1")).await.unwrap();
    c.controller_unpublish_volume(csi::ControllerUnpublishVolumeRequest {
        volume_id: r.volume_id.clone(),
        node_id: "n1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
}
