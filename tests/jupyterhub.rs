//! JupyterHub users as KubeSpawner makes them: the claims and pods in
//! tests/fixtures/kubespawner/ (KubeSpawner's own make_pvc / make_pod with
//! the recipe's z2jh values; deploy/test/kubespawner_objects.py keeps them
//! current) and the chart's rendering for the recipe (chart.json). The
//! driver is driven as external-provisioner and kubelet would drive it for
//! that user: CreateVolume from the claim and its StorageClass, then (root
//! needed) NodeStage / NodePublish of the pod's home and datasets volumes,
//! with writes as the pod's user.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::node::*;
use common::{ControllerOpts, controller_env};
use flashblade_csi::csi::{self, controller_client::ControllerClient, node_client::NodeClient};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubespawner");
const GIB: i64 = 1 << 30;

/// One user's fixture: what KubeSpawner made, and the claim's uid (which the
/// API server would give it).
struct User {
    name: String,
    namespace: String,
    claim_uid: String,
    pvc: Value,
    pod: Value,
}

fn users() -> Vec<User> {
    let mut out: Vec<User> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with("claim-"))
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            User {
                name: v["username"].as_str().unwrap().into(),
                namespace: v["namespace"].as_str().unwrap().into(),
                claim_uid: v["claimUid"].as_str().unwrap().into(),
                pvc: v["pvc"].clone(),
                pod: v["pod"].clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(out.len() >= 3, "the fixtures hold the users");
    assert!(
        out.iter().any(|u| !u.name.is_ascii()),
        "a user whose name KubeSpawner must escape"
    );
    out
}

fn chart() -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/chart.json")).unwrap()).unwrap()
}

fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{name} in the chart's rendering"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn string_map(v: &Value) -> HashMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A Kubernetes quantity in bytes (the binary and decimal suffixes a claim
/// request uses).
fn quantity(q: &str) -> i64 {
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (n, unit) = q.split_at(split);
    let n: i64 = n.parse().unwrap();
    let scale: i64 = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => panic!("quantity {q}"),
    };
    n * scale
}

/// external-provisioner's and kubelet's CSI access mode for a claim's
/// first access mode, given whether the driver advertises
/// SINGLE_NODE_MULTI_WRITER.
fn csi_mode(k8s: &str, multi_writer: bool) -> i32 {
    use csi::volume_capability::access_mode::Mode;
    let m = match (k8s, multi_writer) {
        ("ReadWriteOnce", false) | ("ReadWriteOncePod", false) => Mode::SingleNodeWriter,
        ("ReadWriteOnce", true) => Mode::SingleNodeMultiWriter,
        ("ReadWriteOncePod", true) => Mode::SingleNodeSingleWriter,
        ("ReadOnlyMany", _) => Mode::MultiNodeReaderOnly,
        ("ReadWriteMany", _) => Mode::MultiNodeMultiWriter,
        _ => panic!("access mode {k8s}"),
    };
    m as i32
}

fn cap(mode: i32, mount_flags: Vec<String>) -> csi::VolumeCapability {
    use csi::volume_capability::{AccessMode, AccessType, MountVolume};
    csi::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            mount_flags,
            ..Default::default()
        })),
        access_mode: Some(AccessMode { mode }),
    }
}

async fn multi_writer(ctl: &mut ControllerClient<tonic::transport::Channel>) -> bool {
    use csi::controller_service_capability::{Type, rpc::Type as Rpc};
    ctl.controller_get_capabilities(csi::ControllerGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .iter()
        .any(|c| matches!(&c.r#type, Some(Type::Rpc(r)) if r.r#type == Rpc::SingleNodeMultiWriter as i32))
}

/// The claim as external-provisioner turns it into CreateVolume: the PV
/// name pvc-<claim uid>, the class's parameters plus the keys
/// --extra-create-metadata adds, the request as the capacity, the access
/// mode and the class's mount options. `extra` stands for parameters an
/// admin adds to the class. Returns the request and the class's mount
/// options (the PV's, which kubelet passes to NodeStage).
fn create_request(
    u: &User,
    multi_writer: bool,
    extra: &[(&str, String)],
) -> (csi::CreateVolumeRequest, Vec<String>) {
    let chart = chart();
    let class = named(
        &chart["storageClasses"],
        u.pvc["spec"]["storageClassName"].as_str().unwrap(),
    );
    assert_eq!(class["provisioner"], "flashblade.csi.dev");
    let pv_name = format!("pvc-{}", u.claim_uid);
    let mut parameters = string_map(&class["parameters"]);
    parameters.insert(
        "csi.storage.k8s.io/pvc/name".into(),
        u.pvc["metadata"]["name"].as_str().unwrap().into(),
    );
    parameters.insert("csi.storage.k8s.io/pvc/namespace".into(), u.namespace.clone());
    parameters.insert("csi.storage.k8s.io/pv/name".into(), pv_name.clone());
    for (k, v) in extra {
        parameters.insert((*k).into(), v.clone());
    }
    let mount_options = strings(&class["mountOptions"]);
    let modes = strings(&u.pvc["spec"]["accessModes"]);
    let req = csi::CreateVolumeRequest {
        name: pv_name,
        capacity_range: Some(csi::CapacityRange {
            required_bytes: quantity(
                u.pvc["spec"]["resources"]["requests"]["storage"]
                    .as_str()
                    .unwrap(),
            ),
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap(csi_mode(&modes[0], multi_writer), mount_options.clone())],
        parameters,
        ..Default::default()
    };
    (req, mount_options)
}

#[tokio::test]
async fn each_kubespawner_claim_provisions_a_home_with_the_recipe_class() {
    let env = controller_env(ControllerOpts::default()).await;
    let mut ctl = ControllerClient::new(env.driver.channel().await);
    let mw = multi_writer(&mut ctl).await;
    for u in users() {
        let (req, _) = create_request(&u, mw, &[]);
        let want = req.capacity_range.as_ref().unwrap().required_bytes;
        assert_eq!(want, 10 * GIB, "{}: the recipe's capacity", u.name);
        let v = ctl
            .create_volume(req.clone())
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        // external-provisioner retries with the same request: the same volume.
        let again = ctl
            .create_volume(req.clone())
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(again.volume_id, v.volume_id, "{}", u.name);
        let fs_name = format!("k8s-{}", req.name);
        assert!(
            v.volume_id.starts_with(&format!("fb01/{fs_name}/")),
            "{}: {}",
            u.name,
            v.volume_id
        );
        assert_eq!(v.capacity_bytes, want);
        assert_eq!(v.volume_context["nfsVersions"], "4.1");
        let fs = env.mock.with_state(|s| s.file_systems[&fs_name].clone());
        assert_eq!(
            fs.provisioned,
            Some(want),
            "{}: the quota is the claim's request",
            u.name
        );
        assert!(fs.hard_limit_enabled, "{}: fb-home's hardLimit", u.name);
        assert!(
            fs.snapshot_directory_enabled,
            "{}: .snapshot for self-service restore",
            u.name
        );
        assert!(fs.nfs.v4_1_enabled && !fs.nfs.v3_enabled, "{}", u.name);
    }
}

/// Runs `sh -c script` as `uid:gid` with supplementary `groups` (kubelet
/// adds the pod's fsGroup there) and `dir` open on fd 3, named `$D`: the
/// directories kubelet keeps above a volume are root's 0750.
fn as_pod_user(uid: u32, gid: u32, groups: &[u32], dir: &Path, script: &str) -> std::process::Output {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let d = std::fs::File::open(dir).unwrap();
    let fd = d.as_raw_fd();
    let groups: Vec<String> = groups.iter().map(u32::to_string).collect();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg(format!("--groups={}", groups.join(",")))
        .args(["sh", "-c", script])
        .env("D", "/proc/self/fd/3");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    drop(d);
    out
}

/// The notebook container's user: its runAsUser (or the pod's), and the
/// pod's fsGroup as its group (jovyan's primary group in the image is the
/// same 100 the recipe documents).
fn pod_user(pod: &Value) -> (u32, u32) {
    let notebook = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "notebook")
        .unwrap();
    let uid = notebook["securityContext"]["runAsUser"]
        .as_u64()
        .or_else(|| pod["spec"]["securityContext"]["runAsUser"].as_u64())
        .expect("the pod names its user");
    let fs_group = pod["spec"]["securityContext"]["fsGroup"]
        .as_u64()
        .expect("fsGroup");
    (uid as u32, fs_group as u32)
}

fn writes(user: (u32, u32), dir: &Path, file: &str) -> Result<(), String> {
    let out = as_pod_user(
        user.0,
        user.1,
        &[user.1],
        dir,
        &format!("echo from-the-notebook > \"$D/{file}\""),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The pod's volumes that name a claim: (volume name, claim, the pod's
/// readOnly for it).
fn claim_volumes(pod: &Value) -> Vec<(String, String, bool)> {
    pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["persistentVolumeClaim"].is_object())
        .map(|v| {
            (
                v["name"].as_str().unwrap().into(),
                v["persistentVolumeClaim"]["claimName"].as_str().unwrap().into(),
                v["persistentVolumeClaim"]["readOnly"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_kubespawner_pod_writes_its_home_and_only_reads_the_datasets() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let ch = ne.env.driver.channel().await;
    let mut ctl = ControllerClient::new(ch.clone());
    let mut node = NodeClient::new(ch);
    let mw = multi_writer(&mut ctl).await;
    let chart = chart();
    // The admin's datasets file system, as the recipe imports it.
    let ds_pvc = &chart["persistentVolumeClaims"][0];
    let ds_pv = named(
        &chart["persistentVolumes"],
        ds_pvc["spec"]["volumeName"].as_str().unwrap(),
    );
    let ds_handle = ds_pv["spec"]["csi"]["volumeHandle"].as_str().unwrap().to_string();
    let ds_dir = ne.env.mock.fs_dir(ds_handle.split_once('/').unwrap().1);
    std::fs::create_dir_all(&ds_dir).unwrap();
    std::fs::write(ds_dir.join("iris.csv"), "5.1,3.5,1.4,0.2").unwrap();

    for (i, u) in users().iter().enumerate() {
        let user = pod_user(&u.pod);
        // fb-home as shipped, on the simulator's root:root 0755 new roots:
        // the first stage hands the root to the notebook user.
        let (req, home_flags) = create_request(u, mw, &[]);
        let home = ctl
            .create_volume(req.clone())
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        let home_mode = req.volume_capabilities[0].access_mode.as_ref().unwrap().mode;
        let pod_uid = format!("pod-{i}");
        let vols = claim_volumes(&u.pod);
        assert_eq!(vols.len(), 2, "{}: home and datasets", u.name);
        for (vol_name, claim, pod_read_only) in vols {
            let pvc_name = u.pvc["metadata"]["name"].as_str().unwrap();
            // The volume as kubelet sees it: its id, context, mount options,
            // access mode and the PV's own read-only flag.
            let (v, flags, mode, pv_read_only, pv_name) = if claim == pvc_name {
                (
                    home.clone(),
                    home_flags.clone(),
                    home_mode,
                    false,
                    req.name.clone(),
                )
            } else {
                assert_eq!(claim, ds_pvc["metadata"]["name"], "{}", u.name);
                assert_eq!(
                    ds_pvc["metadata"]["namespace"].as_str(),
                    Some(u.namespace.as_str())
                );
                let v = csi::Volume {
                    volume_id: ds_handle.clone(),
                    volume_context: string_map(&ds_pv["spec"]["csi"]["volumeAttributes"]),
                    ..Default::default()
                };
                let mode = csi_mode(&strings(&ds_pv["spec"]["accessModes"])[0], mw);
                let ro = ds_pv["spec"]["csi"]["readOnly"].as_bool().unwrap_or(false);
                (
                    v,
                    strings(&ds_pv["spec"]["mountOptions"]),
                    mode,
                    ro,
                    ds_pv["metadata"]["name"].as_str().unwrap().to_string(),
                )
            };
            let staging = ne.kubelet.join(format!(
                "plugins/kubernetes.io/csi/flashblade.csi.dev/{pv_name}-{i}/globalmount"
            ));
            let target = ne.kubelet.join(format!(
                "pods/{pod_uid}/volumes/kubernetes.io~csi/{pv_name}/mount"
            ));
            node.node_stage_volume(csi::NodeStageVolumeRequest {
                volume_id: v.volume_id.clone(),
                staging_target_path: staging.to_string_lossy().into(),
                volume_capability: Some(cap(mode, flags.clone())),
                volume_context: v.volume_context.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
            node.node_publish_volume(csi::NodePublishVolumeRequest {
                volume_id: v.volume_id.clone(),
                staging_target_path: staging.to_string_lossy().into(),
                target_path: target.to_string_lossy().into(),
                volume_capability: Some(cap(mode, flags)),
                // kubelet: the pod's readOnly or the PV's.
                readonly: pod_read_only || pv_read_only,
                volume_context: v.volume_context.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
            assert!(mounted(&target));
            if claim == pvc_name {
                assert!(
                    !pod_read_only,
                    "{}: KubeSpawner mounts the home read-write",
                    u.name
                );
                writes(user, &target, "notebook.ipynb")
                    .unwrap_or_else(|e| panic!("{} ({vol_name}): {e}", u.name));
                assert!(
                    ne.env
                        .mock
                        .fs_dir(&format!("k8s-{pv_name}"))
                        .join("notebook.ipynb")
                        .exists()
                );
            } else {
                assert!(
                    pod_read_only,
                    "{}: KubeSpawner mounts the datasets read-only",
                    u.name
                );
                assert_eq!(
                    std::fs::read_to_string(target.join("iris.csv")).unwrap(),
                    "5.1,3.5,1.4,0.2"
                );
                let e = writes(user, &target, "x").unwrap_err();
                assert!(e.contains("Read-only file system"), "{}: {e}", u.name);
                // Not even root in the pod can write there.
                let err = std::fs::write(target.join("x"), "x").unwrap_err();
                assert_eq!(err.raw_os_error(), Some(libc_erofs()), "{err}");
            }
            unpublish(&mut node, &v.volume_id, &target).await;
            unstage(&mut node, &v.volume_id, &staging).await;
        }
    }
    assert_eq!(
        std::fs::read_to_string(ds_dir.join("iris.csv")).unwrap(),
        "5.1,3.5,1.4,0.2"
    );
}

#[tokio::test]
async fn the_recipe_class_exports_a_home_to_no_one_and_names_the_pod_user_as_its_owner() {
    // fb-home follows the nodes: no range rule for any other host (pods
    // included), and the root goes to the user the pod runs as.
    let env = controller_env(ControllerOpts::default()).await;
    let mut ctl = ControllerClient::new(env.driver.channel().await);
    let mw = multi_writer(&mut ctl).await;
    for u in users() {
        let (req, _) = create_request(&u, mw, &[]);
        let v = ctl
            .create_volume(req.clone())
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        // The id records the node-following export (and its options).
        let id: flashblade_csi::volume::VolumeId = v.volume_id.parse().unwrap();
        assert!(
            id.is_to_nodes() && v.volume_id.ends_with('m'),
            "{}: a node-following volume id: {}",
            u.name,
            v.volume_id
        );
        let fs = env
            .mock
            .with_state(|s| s.file_systems[&format!("k8s-{}", req.name)].clone());
        assert_eq!(fs.nfs.rules, "", "{}: exported to no one until published", u.name);
        let user = pod_user(&u.pod);
        assert_eq!(
            v.volume_context["rootOwner"],
            format!("{}:{}", user.0, user.1),
            "{}",
            u.name
        );
        assert_eq!(v.volume_context["exportOptions"], "no_root_squash", "{}", u.name);
    }
}
