//! Node-following exports (`exportTo: nodes`): ControllerPublishVolume adds
//! a rule per node address, ControllerUnpublishVolume removes exactly that
//! node's rules, the reconcile repairs drift; static and range-exported
//! volumes are never touched. Against mock-flashblade and a fake Kubernetes
//! API server serving Nodes, PersistentVolumes and VolumeAttachments.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use common::fake_kube::FakeKube;
use common::{ControllerOpts, controller_env, create_req, mount_cap};
use flashblade_csi::csi::{self, controller_client::ControllerClient};
use serde_json::json;
use tonic::Code;

const GIB: i64 = 1 << 30;
const RWX: i32 = 5;
const ROX: i32 = 3;

async fn client(env: &common::ControllerEnv) -> ControllerClient<tonic::transport::Channel> {
    ControllerClient::new(env.driver.channel().await)
}

/// The export rules of file system `name`, as a set of entries.
fn rules(env: &common::ControllerEnv, name: &str) -> BTreeSet<String> {
    env.mock.with_state(|s| {
        s.file_systems[name]
            .nfs
            .rules
            .split_whitespace()
            .map(str::to_string)
            .collect()
    })
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn patches(env: &common::ControllerEnv) -> u64 {
    env.mock.counters().count("PATCH", "file-systems")
}

struct Cluster {
    kube: FakeKube,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let kube = FakeKube::start(dir.path()).await;
    kube.add_node("n1", &["10.1.0.1"]);
    kube.add_node("n2", &["10.1.0.2"]);
    kube.add_node("n3", &["10.1.0.3", "fd00::3"]);
    Cluster { kube, _dir: dir }
}

/// A volume exported to nodes, and its PV as the provisioner makes it.
async fn node_volume(
    c: &mut ControllerClient<tonic::transport::Channel>,
    kube: &FakeKube,
    name: &str,
    extra: &[(&str, &str)],
) -> csi::Volume {
    let mut req = create_req(name, GIB);
    req.parameters.insert("exportTo".into(), "nodes".into());
    for (k, v) in extra {
        req.parameters.insert(k.to_string(), v.to_string());
    }
    let v = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    let mut pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": format!("pv-{name}")},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Delete",
            "csi": {"driver": "flashblade.csi.dev", "volumeHandle": v.volume_id,
                    "volumeAttributes": v.volume_context},
        },
    });
    kube.add_bound(&mut pv, Some(("jhub", name)), "fb-home");
    v
}

fn publish(v: &csi::Volume, node: &str, mode: i32, readonly: bool) -> csi::ControllerPublishVolumeRequest {
    csi::ControllerPublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        node_id: node.into(),
        volume_capability: Some(mount_cap(mode)),
        readonly,
        volume_context: v.volume_context.clone(),
        ..Default::default()
    }
}

fn unpublish(v: &csi::Volume, node: &str) -> csi::ControllerUnpublishVolumeRequest {
    csi::ControllerUnpublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        node_id: node.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn rules_follow_the_nodes_a_volume_is_published_to() {
    let k = cluster().await;
    let env = controller_env(ControllerOpts {
        kubeconfig: Some(k.kube.controller_kubeconfig.clone()),
        ..Default::default()
    })
    .await;
    let mut c = client(&env).await;
    let v = node_volume(&mut c, &k.kube, "pvc-shared", &[]).await;
    let fs = v.volume_context["fsName"].clone();
    assert_eq!(v.volume_context["exportTo"], "nodes");
    // Created exported to nobody.
    assert_eq!(rules(&env, &fs), set(&[]));

    // Three nodes at once (ReadWriteMany): no rule is lost.
    let mut tasks = tokio::task::JoinSet::new();
    for node in ["n1", "n2", "n3"] {
        let mut c = c.clone();
        let req = publish(&v, node, RWX, false);
        tasks.spawn(async move { c.controller_publish_volume(req).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let all = set(&[
        "10.1.0.1(rw,root_squash)",
        "10.1.0.2(rw,root_squash)",
        "10.1.0.3(rw,root_squash)",
        "fd00::3(rw,root_squash)",
    ]);
    assert_eq!(rules(&env, &fs), all);

    // Repeated: nothing changes, not even a request that edits.
    let before = patches(&env);
    for node in ["n1", "n2", "n3"] {
        c.controller_publish_volume(publish(&v, node, RWX, false))
            .await
            .unwrap();
    }
    assert_eq!(patches(&env), before);
    assert_eq!(rules(&env, &fs), all);

    // The same node with other access: refused, nothing changed.
    let e = c
        .controller_publish_volume(publish(&v, "n1", RWX, true))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("n1"), "{}", e.message());

    // Unpublish one: exactly the other two remain; again: no change.
    c.controller_unpublish_volume(unpublish(&v, "n2")).await.unwrap();
    let two = set(&[
        "10.1.0.1(rw,root_squash)",
        "10.1.0.3(rw,root_squash)",
        "fd00::3(rw,root_squash)",
    ]);
    assert_eq!(rules(&env, &fs), two);
    let before = patches(&env);
    c.controller_unpublish_volume(unpublish(&v, "n2")).await.unwrap();
    assert_eq!(patches(&env), before);
    assert_eq!(rules(&env, &fs), two);

    // Read-only access gives a read-only rule, with the class's options.
    let ro = node_volume(
        &mut c,
        &k.kube,
        "pvc-ro",
        &[("exportOptions", "no_root_squash,anonuid=1000")],
    )
    .await;
    c.controller_publish_volume(publish(&ro, "n2", ROX, false))
        .await
        .unwrap();
    assert_eq!(
        rules(&env, &ro.volume_context["fsName"]),
        set(&["10.1.0.2(ro,no_root_squash,anonuid=1000)"])
    );
    // A node deleted from the cluster after publishing: its rules still go.
    k.kube.remove_node("n2");
    c.controller_unpublish_volume(unpublish(&ro, "n2")).await.unwrap();
    assert_eq!(rules(&env, &ro.volume_context["fsName"]), set(&[]));
}

#[tokio::test]
async fn bad_requests_change_nothing() {
    let k = cluster().await;
    let env = controller_env(ControllerOpts {
        kubeconfig: Some(k.kube.controller_kubeconfig.clone()),
        ..Default::default()
    })
    .await;
    let mut c = client(&env).await;
    let v = node_volume(&mut c, &k.kube, "pvc-bad", &[]).await;
    let fs = v.volume_context["fsName"].clone();
    let before = patches(&env);

    let e = c
        .controller_publish_volume(publish(&v, "ghost", RWX, false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("ghost"), "{}", e.message());

    // A node id is a node name, never a path into the API server.
    for hostile in ["n1/proxy/x", "../nodes", "N1", "n1?watch=1"] {
        let e = c
            .controller_publish_volume(publish(&v, hostile, RWX, false))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{hostile}: {e:?}");
        let e = c
            .controller_unpublish_volume(unpublish(&v, hostile))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{hostile}: {e:?}");
    }
    assert!(
        !k.kube
            .objects
            .lock()
            .unwrap()
            .requests
            .iter()
            .any(|r| r.contains("proxy") || r.contains("..")),
        "a hostile node id reached the API server"
    );
    let mut r = publish(&v, "", RWX, false);
    assert_eq!(
        c.controller_publish_volume(r.clone()).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    r.node_id = "n1".into();
    r.volume_capability = None;
    assert_eq!(
        c.controller_publish_volume(r.clone()).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut r = publish(&v, "n1", RWX, false);
    r.volume_context
        .insert("exportOptions".into(), "rw,no_root_squash".into());
    let e = c.controller_publish_volume(r).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("exportOptions"), "{}", e.message());
    let mut r = publish(&v, "n1", RWX, false);
    r.volume_context
        .insert("exportOptions".into(), "root_squash 0.0.0.0/0(rw)".into());
    assert_eq!(
        c.controller_publish_volume(r).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut r = publish(&v, "n1", RWX, false);
    r.volume_id = "fb01/k8s-nothing/0123456789abcdef".into();
    let e = c.controller_publish_volume(r).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert_eq!(
        c.controller_unpublish_volume(csi::ControllerUnpublishVolumeRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_eq!(patches(&env), before);
    assert_eq!(rules(&env, &fs), set(&[]));

    // Bad class parameters are refused at creation, by name.
    for (kv, key) in [
        (vec![("exportTo", "everyone")], "exportTo"),
        (
            vec![("exportTo", "nodes"), ("exportOptions", "ro")],
            "exportOptions",
        ),
        (vec![("exportOptions", "root_squash")], "exportOptions"),
        (
            vec![("exportTo", "nodes"), ("exportRules", "10.0.0.0/8(rw)")],
            "exportRules",
        ),
        (vec![("rootOwner", "jovyan")], "rootOwner"),
        (vec![("rootOwner", "1000:-1")], "rootOwner"),
        (vec![("rootMode", "0999")], "rootMode"),
        (vec![("rootMode", "17777")], "rootMode"),
    ] {
        let mut req = create_req("pvc-refused", GIB);
        req.parameters = kv
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>();
        let e = c.create_volume(req).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{kv:?}: {e:?}");
        assert!(e.message().contains(key), "{kv:?}: {}", e.message());
    }
}

#[tokio::test]
async fn static_and_range_exported_volumes_are_never_touched() {
    let k = cluster().await;
    let env = controller_env(ControllerOpts {
        kubeconfig: Some(k.kube.controller_kubeconfig.clone()),
        ..Default::default()
    })
    .await;
    let mut c = client(&env).await;
    // The admin's dataset, exported to the node network and one host.
    common::ArrayAdmin::new(&env.mock)
        .await
        .send(
            reqwest::Method::POST,
            "file-systems?names=datasets",
            json!({"nfs": {"v4_1_enabled": true, "rules": "10.1.0.0/16(ro) 10.1.0.1(rw)"}}),
        )
        .await;
    let ds = csi::Volume {
        volume_id: "fb01/datasets".into(),
        ..Default::default()
    };
    k.kube
        .add_pv("pv-datasets", "fb01/datasets", Some(("jhub", "datasets")));
    // A home with the class's range export.
    let home = c
        .create_volume(create_req("pvc-range", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let hfs = home.volume_context["fsName"].clone();
    k.kube
        .add_pv("pv-range", &home.volume_id, Some(("jhub", "pvc-range")));
    common::array_patch(
        &env.mock,
        &format!("file-systems?names={hfs}"),
        json!({"nfs": {"add_rules": "10.1.0.1(rw,no_root_squash)"}}),
    )
    .await;
    let before = patches(&env);
    let ds_rules = rules(&env, "datasets");
    let home_rules = rules(&env, &hfs);
    for v in [&ds, &home] {
        c.controller_publish_volume(publish(v, "n1", ROX, false))
            .await
            .unwrap();
        c.controller_unpublish_volume(unpublish(v, "n1")).await.unwrap();
    }
    assert_eq!(patches(&env), before);
    assert_eq!(rules(&env, "datasets"), ds_rules);
    assert_eq!(rules(&env, &hfs), home_rules);
    // An imported volume that does not exist is still NOT_FOUND.
    let mut r = publish(&ds, "n1", ROX, false);
    r.volume_id = "fb01/no-such-dataset".into();
    assert_eq!(
        c.controller_publish_volume(r).await.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn without_the_kubernetes_api_a_node_export_cannot_be_made() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut c = client(&env).await;
    let mut req = create_req("pvc-nokube", GIB);
    req.parameters.insert("exportTo".into(), "nodes".into());
    let v = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    let e = c
        .controller_publish_volume(publish(&v, "n1", RWX, false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("n1"), "{}", e.message());
}

#[tokio::test]
async fn the_reconcile_repairs_rules_changed_behind_the_drivers_back() {
    let k = cluster().await;
    let env = controller_env(ControllerOpts {
        kubeconfig: Some(k.kube.controller_kubeconfig.clone()),
        reconcile: Some("1s"),
        ..Default::default()
    })
    .await;
    let mut c = client(&env).await;
    let v = node_volume(&mut c, &k.kube, "pvc-drift", &[]).await;
    let fs = v.volume_context["fsName"].clone();
    for node in ["n1", "n3"] {
        k.kube.attach("pv-pvc-drift", node);
        c.controller_publish_volume(publish(&v, node, RWX, false))
            .await
            .unwrap();
    }
    // Behind the driver's back: n1's rule deleted, a rule for an address
    // no node has added.
    common::array_patch(
        &env.mock,
        &format!("file-systems?names={fs}"),
        json!({"nfs": {"remove_rules": "10.1.0.1(rw,root_squash)", "add_rules": "10.9.9.9(rw,no_root_squash)"}}),
    )
    .await;
    let want = set(&[
        "10.1.0.1(rw,root_squash)",
        "10.1.0.3(rw,root_squash)",
        "fd00::3(rw,root_squash)",
    ]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while rules(&env, &fs) != want {
        assert!(Instant::now() < deadline, "not repaired: {:?}", rules(&env, &fs));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Repaired, it stays as it is: no further edits.
    let before = patches(&env);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(patches(&env), before);
    assert_eq!(rules(&env, &fs), want);
}

/// The conformance suite's publish cases with no Kubernetes API at all (a
/// kubeconfig whose server is down): a range-exported volume publishes and
/// unpublishes, its cleanup never fails, and a node id that is not this
/// plugin's own is NOT_FOUND when the plugin serves its only node.
#[tokio::test]
async fn range_exported_volumes_publish_without_the_kubernetes_api() {
    let dir = tempfile::tempdir().unwrap();
    let down = common::fake_kube::write_kubeconfig(dir.path(), "http://127.0.0.1:1");
    for mode in [
        flashblade_csi::config::Mode::Controller,
        flashblade_csi::config::Mode::All,
    ] {
        let env = controller_env(ControllerOpts {
            kubeconfig: Some(down.clone()),
            mode,
            ..Default::default()
        })
        .await;
        let mut c = client(&env).await;
        let v = c
            .create_volume(create_req("pvc-range", GIB))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let fs = v.volume_context["fsName"].clone();
        let before = rules(&env, &fs);
        let edits = patches(&env);
        // The plugin's own node (NodeGetInfo's id), ten times.
        for _ in 0..10 {
            c.controller_publish_volume(publish(&v, "node-1", RWX, false))
                .await
                .unwrap();
        }
        for _ in 0..2 {
            c.controller_unpublish_volume(unpublish(&v, "node-1"))
                .await
                .unwrap();
        }
        // A node the plugin cannot know of.
        let other = c
            .controller_publish_volume(publish(&v, "fake-node-id-0b5e", RWX, false))
            .await;
        match mode {
            flashblade_csi::config::Mode::All => {
                let e = other.unwrap_err();
                assert_eq!(e.code(), Code::NotFound, "{e:?}");
                assert!(e.message().contains("fake-node-id-0b5e"), "{}", e.message());
            }
            _ => {
                other.unwrap();
            }
        }
        c.controller_unpublish_volume(unpublish(&v, "fake-node-id-0b5e"))
            .await
            .unwrap();
        // A volume that does not exist: nothing to unpublish.
        let mut gone = unpublish(&v, "node-1");
        gone.volume_id = "fb01/k8s-pvc-none/00000000-0000-0000-0000-000000000000".into();
        c.controller_unpublish_volume(gone).await.unwrap();
        assert_eq!(rules(&env, &fs), before, "{mode:?}");
        assert_eq!(patches(&env), edits, "{mode:?}: no edit of the array");
        c.delete_volume(csi::DeleteVolumeRequest {
            volume_id: v.volume_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
}

/// With the API reachable, a node id naming no Node is NOT_FOUND whatever
/// the volume's export.
#[tokio::test]
async fn a_node_the_api_does_not_know_is_not_found() {
    let k = cluster().await;
    let env = controller_env(ControllerOpts {
        kubeconfig: Some(k.kube.controller_kubeconfig.clone()),
        ..Default::default()
    })
    .await;
    let mut c = client(&env).await;
    let v = c
        .create_volume(create_req("pvc-range2", GIB))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    let e = c
        .controller_publish_volume(publish(&v, "fake-node-id-77", RWX, false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    c.controller_publish_volume(publish(&v, "n1", RWX, false))
        .await
        .unwrap();
}
