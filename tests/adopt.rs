//! `adopt`: PSO's (`pure-csi`) homes and an in-tree NFS dataset PV, their
//! file systems on mock-flashblade and their objects on the fake Kubernetes
//! API server, moved under this driver: the dry run changes nothing, the
//! apply makes the expected objects, a second apply changes nothing, a
//! failure at any step resumes, a running pod blocks only its own volume,
//! no file system is ever touched, and the adopted home mounts through the
//! node service with its old files.

mod common;

use std::path::Path;

use common::fake_kube::FakeKube;
use common::node::*;
use common::{ArrayAdmin, ControllerEnv, ControllerOpts, controller_env};
use flashblade_csi::admin::adopt::{ADOPTED_FROM, AdoptArgs, CLAIM_RECORD};
use flashblade_csi::admin::{self, Job, Output, exit};
use flashblade_csi::config::{ArraySettings, Config, Settings};
use flashblade_csi::csi::{self, controller_client::ControllerClient, node_client::NodeClient};
use flashblade_csi::volume::{DeletePolicy, VolumeId};
use serde_json::{Value, json};

const GIB: i64 = 1 << 30;
/// The arrays' data VIP in these tests (what PSO's values called NfsEndPoint).
const DATA_VIP: &str = "10.20.0.5";

/// The PV names PSO gives (the external-provisioner's `pvc-<claim uid>`)
/// and the file systems it made for them (`<namespace.pure>-<pv name>`).
const ALICE: &str = "pvc-5f1c2e9a-7b3d-4c8e-9a21-0d6b7e4f3a10";
const BOB: &str = "pvc-8e2d4a6c-1f3b-4d5e-8c7a-9b0e1d2c3f40";

struct Env {
    env: ControllerEnv,
    kube: FakeKube,
    admin: ArrayAdmin,
}

fn admin_config(env: &ControllerEnv, kubeconfig: &Path) -> Config {
    let s = Settings {
        array: ArraySettings {
            name: Some("fb01".parse().unwrap()),
            management_url: Some(env.mock.url.clone()),
            api_token_file: Some(env.token_file.clone()),
            ca_file: env.mock.ca_file.clone(),
            nfs_endpoint: Some(DATA_VIP.parse().unwrap()),
            ..Default::default()
        },
        kubeconfig: Some(kubeconfig.to_path_buf()),
        ..Default::default()
    };
    Config::load_for_admin(&s).expect("admin config")
}

impl Env {
    async fn new() -> Env {
        Self::on(controller_env(ControllerOpts::default()).await).await
    }

    async fn on(env: ControllerEnv) -> Env {
        let kube = FakeKube::start(env.dir.path()).await;
        let admin = ArrayAdmin::new(&env.mock).await;
        Env { env, kube, admin }
    }

    async fn run(&self, output: Output, args: AdoptArgs) -> Result<admin::Report, admin::AdminError> {
        admin::run(
            admin_config(&self.env, &self.kube.adopt_kubeconfig),
            output,
            Job::Adopt(args),
        )
        .await
    }

    async fn json(&self, args: AdoptArgs) -> (Value, i32) {
        let r = self.run(Output::Json, args).await.expect("adopt runs");
        (serde_json::from_str(&r.stdout).expect("JSON output"), r.code)
    }

    /// A file system as PSO made it (exported to everyone, NFSv3), with a
    /// file in it.
    async fn file_system(&self, name: &str, file: &str) {
        self.admin
            .send(
                reqwest::Method::POST,
                &format!("file-systems?names={name}"),
                json!({"provisioned": 10 * GIB, "hard_limit_enabled": true,
                       "nfs": {"v3_enabled": true, "rules": "*(rw,no_root_squash)"}}),
            )
            .await;
        std::fs::write(self.env.mock.fs_dir(name).join(file), format!("{name}'s {file}")).unwrap();
    }

    /// A JupyterHub home as PSO 5 left it: file system `k8s-<pv>`, a PV of
    /// `pure-csi` whose handle is that name, and KubeSpawner's claim.
    async fn pso_home(&self, pv: &str, user: &str) {
        self.file_system(&format!("k8s-{pv}"), "notebook.ipynb").await;
        let mut v = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv, "annotations": {"pv.kubernetes.io/provisioned-by": "pure-csi"}},
            "spec": {
                "capacity": {"storage": "10Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "pure-file",
                "volumeMode": "Filesystem",
                "csi": {"driver": "pure-csi", "volumeHandle": format!("k8s-{pv}"),
                        "volumeAttributes": {"backend": "file",
                            "storage.kubernetes.io/csiProvisionerIdentity": "1589540380147-8081-pure-csi"}},
            },
        });
        let claim = format!("claim-{user}");
        self.kube.add_bound(&mut v, Some(("jhub", &claim)), "pure-file");
        let mut o = self.kube.objects.lock().unwrap();
        let pvc = o
            .pvcs
            .iter_mut()
            .find(|p| p["metadata"]["name"] == claim.as_str())
            .unwrap();
        pvc["metadata"]["labels"] = json!({"app": "jupyterhub", "component": "singleuser-storage",
            "hub.jupyter.org/username": user, "heritage": "jupyterhub"});
        pvc["metadata"]["annotations"] = json!({"hub.jupyter.org/username": user,
            "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.beta.kubernetes.io/storage-provisioner": "pure-csi"});
    }

    /// The origin guide's dataset PV: in-tree NFS from the data VIP,
    /// read-only, and its claim.
    async fn nfs_dataset(&self) {
        self.file_system("datasets", "iris.csv").await;
        let mut v = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "datasets"},
            "spec": {
                "capacity": {"storage": "1Ti"},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "mountOptions": ["nfsvers=3"],
                "nfs": {"server": DATA_VIP, "path": "/datasets", "readOnly": true},
            },
        });
        self.kube.add_bound(&mut v, Some(("jhub", "datasets")), "");
    }

    /// PVs that are not candidates: NFS from another server, a PSO
    /// FlashArray volume, a directory inside a file system.
    fn bystanders(&self) {
        for (name, source) in [
            (
                "scratch",
                json!({"nfs": {"server": "10.9.9.9", "path": "/scratch"}}),
            ),
            (
                "pvc-block-1",
                json!({"csi": {"driver": "pure-csi", "volumeHandle": "k8s-pvc-block-1-a1b2",
                               "volumeAttributes": {"backend": "block"}}}),
            ),
            (
                "datasets-cifar",
                json!({"nfs": {"server": DATA_VIP, "path": "/datasets/cifar10"}}),
            ),
        ] {
            let mut v = json!({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": name},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                         "persistentVolumeReclaimPolicy": "Retain"}});
            for (k, val) in source.as_object().unwrap() {
                v["spec"][k] = val.clone();
            }
            self.kube.add_bound(&mut v, None, "");
        }
    }

    fn snapshot(&self) -> (Vec<Value>, Vec<Value>) {
        let o = self.kube.objects.lock().unwrap();
        (o.pvs.clone(), o.pvcs.clone())
    }

    fn writes(&self) -> Vec<String> {
        self.kube
            .objects
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|r| !r.starts_with("GET "))
            .cloned()
            .collect()
    }

    /// Every file system is live, none was ever deleted, and the array saw
    /// no change from adopt (reads, login and logout only).
    fn array_untouched(&self, expect: &[&str]) {
        self.env.mock.with_state(|s| {
            for name in expect {
                let fs = s
                    .file_systems
                    .get(*name)
                    .unwrap_or_else(|| panic!("{name} is gone"));
                assert!(!fs.destroyed, "{name} destroyed");
            }
        });
        let c = self.env.mock.counters();
        for method in ["POST", "PATCH", "DELETE"] {
            for resource in [
                "file-systems",
                "file-system-snapshots",
                "quotas/users",
                "quotas/groups",
            ] {
                let n = c.count(method, resource);
                // The test itself POSTed the file systems through ArrayAdmin.
                if !(method == "POST" && resource == "file-systems") {
                    assert_eq!(n, 0, "{method} {resource}");
                }
            }
        }
        assert_eq!(c.count("DELETE", "file-systems"), 0);
        assert!(self.kube.objects.lock().unwrap().reclaimed.is_empty());
    }
}

fn apply() -> AdoptArgs {
    AdoptArgs {
        apply: true,
        storage_class: Some("fb-home".into()),
        ..Default::default()
    }
}

fn volume<'a>(v: &'a Value, pv: &str) -> &'a Value {
    v["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["pv"] == pv)
        .unwrap_or_else(|| panic!("no volume {pv} in {v:#}"))
}

fn states(v: &Value) -> Vec<String> {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_dry_run_prints_the_plan_and_changes_nothing() {
    let e = Env::new().await;
    e.pso_home(ALICE, "alice").await;
    e.nfs_dataset().await;
    e.bystanders();
    let before = e.snapshot();

    let r = e
        .run(
            Output::Table,
            AdoptArgs {
                storage_class: Some("fb-home".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(r.code, exit::OK, "{}", r.stdout);
    let t = &r.stdout;
    assert!(t.starts_with("DRY RUN: nothing was changed"), "{t}");
    for needle in [
        &format!("fbcsi-{ALICE}"),
        "jhub/claim-alice",
        "would adopt",
        "would do",
        &format!(
            "set PV {ALICE}'s reclaim policy to Retain (it is Delete) and record claim jhub/claim-alice on it"
        ),
        "record claim jhub/datasets on PV datasets (already Retain)",
        "delete claim jhub/claim-alice",
        "create claim jhub/claim-alice bound to fbcsi-",
        "fb01/datasets",
        "static volume fb01/datasets",
        "read-only",
        "scratch: in-tree NFS from \"10.9.9.9\", which is no configured array's NFS endpoint",
        "pvc-block-1: no file system named",
        "datasets-cifar: path \"/datasets/cifar10\" is a directory inside file system \"datasets\"",
        "2 volumes: 2 to adopt, 0 already adopted, 0 refused, 0 failed",
    ] {
        assert!(t.contains(needle), "{needle:?} missing from:\n{t}");
    }

    let (v, code) = e.json(AdoptArgs::default()).await;
    assert_eq!(code, exit::OK);
    assert_eq!(v["dry_run"], true);
    let home = volume(&v, ALICE);
    assert_eq!(home["status"], "planned");
    assert_eq!(home["kind"], "csi");
    assert_eq!(states(home), ["planned"; 5]);
    let fs_id = e
        .env
        .mock
        .with_state(|s| s.file_systems[&format!("k8s-{ALICE}")].id.clone());
    assert_eq!(home["volume_handle"], format!("fb01/k8s-{ALICE}/{fs_id}"));
    let ds = volume(&v, "datasets");
    assert_eq!(ds["kind"], "nfs");
    assert_eq!(ds["volume_handle"], "fb01/datasets");
    // The dataset PV was Retain already; the claim still has to be recorded.
    assert_eq!(states(ds)[0], "planned");
    assert_eq!(v["skipped"].as_array().unwrap().len(), 3, "{v:#}");

    // --pv: that volume only (and the array is asked about no other).
    let (v, _) = e
        .json(AdoptArgs {
            pvs: vec![ALICE.into()],
            ..Default::default()
        })
        .await;
    assert_eq!(v["volumes"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["volumes"][0]["pv"], ALICE);
    assert!(v["skipped"].as_array().unwrap().is_empty(), "{v:#}");

    assert_eq!(e.snapshot(), before, "a dry run changed the cluster");
    assert!(e.writes().is_empty(), "{:?}", e.writes());
    e.array_untouched(&[&format!("k8s-{ALICE}"), "datasets"]);
}

#[tokio::test]
async fn apply_makes_the_expected_objects_and_a_second_run_changes_nothing() {
    let e = Env::new().await;
    e.pso_home(ALICE, "alice").await;
    e.pso_home(BOB, "bob").await;
    e.nfs_dataset().await;
    e.bystanders();
    // A finished pod of alice's (an old server) does not hold anything up.
    e.kube
        .add_pod("jhub", "jupyter-alice-old", "claim-alice", "Succeeded");

    let (v, code) = e.json(apply()).await;
    assert_eq!(code, exit::OK, "{v:#}");
    assert_eq!(v["dry_run"], false);
    for pv in [ALICE, BOB, "datasets"] {
        let x = volume(&v, pv);
        assert_eq!(x["status"], "adopted", "{x:#}");
        assert!(states(x)[1..].iter().all(|s| s == "applied"), "{x:#}");
    }

    // The home: a managed volume of this driver for the same file system.
    let fs = e
        .env
        .mock
        .with_state(|s| s.file_systems[&format!("k8s-{ALICE}")].clone());
    let new_name = format!("fbcsi-{ALICE}");
    let pv = e.kube.pv(&new_name).expect("the new PV");
    assert!(e.kube.pv(ALICE).is_none(), "the old PV object is deleted");
    let handle: VolumeId = pv["spec"]["csi"]["volumeHandle"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    match &handle {
        VolumeId::Managed {
            array,
            fs_name,
            fs_id,
            delete,
            ..
        } => {
            assert_eq!(array.as_str(), "fb01");
            assert_eq!(fs_name.as_str(), fs.name);
            assert_eq!(fs_id.as_str(), fs.id);
            assert_eq!(*delete, DeletePolicy::Destroy);
        }
        other => panic!("not managed: {other:?}"),
    }
    assert_eq!(pv["spec"]["csi"]["driver"], "flashblade.csi.dev");
    assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert_eq!(pv["spec"]["storageClassName"], "fb-home");
    assert_eq!(pv["spec"]["capacity"]["storage"], "10Gi");
    assert_eq!(pv["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(pv["spec"]["claimRef"]["namespace"], "jhub");
    assert_eq!(pv["spec"]["claimRef"]["name"], "claim-alice");
    assert_eq!(pv["metadata"]["annotations"][ADOPTED_FROM], ALICE);
    assert_eq!(
        pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
        "flashblade.csi.dev"
    );
    let attrs = &pv["spec"]["csi"]["volumeAttributes"];
    assert_eq!(attrs["server"], DATA_VIP);
    assert_eq!(attrs["share"], format!("/k8s-{ALICE}"));
    assert_eq!(attrs["nfsVersions"], "3");
    assert_eq!(pv["status"]["phase"], "Bound");
    // The claim: same name, the user's labels and annotations, not the
    // old binding's; bound to the new PV.
    let pvc = e.kube.pvc("jhub", "claim-alice").unwrap();
    assert_eq!(pvc["spec"]["volumeName"], new_name.as_str());
    assert_eq!(pvc["spec"]["storageClassName"], "fb-home");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "10Gi");
    assert_eq!(pvc["status"]["phase"], "Bound");
    assert_eq!(pvc["metadata"]["labels"]["component"], "singleuser-storage");
    assert_eq!(pvc["metadata"]["labels"]["hub.jupyter.org/username"], "alice");
    assert_eq!(
        pvc["metadata"]["annotations"],
        json!({"hub.jupyter.org/username": "alice"})
    );

    // The dataset: static, read-only, its class and access mode kept.
    let ds = e.kube.pv("fbcsi-datasets").unwrap();
    match ds["spec"]["csi"]["volumeHandle"]
        .as_str()
        .unwrap()
        .parse::<VolumeId>()
        .unwrap()
    {
        VolumeId::Static {
            array,
            fs_name,
            version,
        } => {
            assert_eq!(array.unwrap().as_str(), "fb01");
            assert_eq!(fs_name.as_str(), "datasets");
            assert!(version.is_none());
        }
        other => panic!("not static: {other:?}"),
    }
    assert_eq!(ds["spec"]["csi"]["readOnly"], true);
    assert_eq!(ds["spec"]["accessModes"], json!(["ReadOnlyMany"]));
    assert_eq!(ds["spec"]["storageClassName"], "");
    assert_eq!(ds["spec"]["mountOptions"], json!(["nfsvers=3"]));
    assert_eq!(ds["spec"]["persistentVolumeReclaimPolicy"], "Retain");
    assert!(
        ds["metadata"]["annotations"]
            .get("pv.kubernetes.io/provisioned-by")
            .is_none()
    );
    assert_eq!(
        e.kube.pvc("jhub", "datasets").unwrap()["spec"]["volumeName"],
        "fbcsi-datasets"
    );
    // The bystanders are as they were.
    for name in ["scratch", "pvc-block-1", "datasets-cifar"] {
        assert!(e.kube.pv(name).is_some(), "{name}");
    }
    e.array_untouched(&[&format!("k8s-{ALICE}"), &format!("k8s-{BOB}"), "datasets"]);

    // The driver manages the home: it resizes it, by the new handle.
    let mut ctl = ControllerClient::new(e.env.driver.channel().await);
    ctl.controller_expand_volume(csi::ControllerExpandVolumeRequest {
        volume_id: handle.to_string(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: 20 * GIB,
            limit_bytes: 0,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        e.env
            .mock
            .with_state(|s| s.file_systems[&format!("k8s-{ALICE}")].provisioned),
        Some(20 * GIB)
    );

    // Again: nothing to do, and it says so; no request writes anything.
    let writes = e.writes().len();
    let snapshot = e.snapshot();
    let r = e.run(Output::Table, apply()).await.unwrap();
    assert_eq!(r.code, exit::OK, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("Nothing to adopt: no PV of driver pure-csi or in-tree NFS volume of a configured array is left (3 adopted earlier, below); nothing was changed."),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Adopted earlier (3)"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("fbcsi-{BOB} (from {BOB}, claim jhub/claim-bob)")),
        "{}",
        r.stdout
    );
    let (v, code) = e.json(apply()).await;
    assert_eq!(code, exit::OK);
    assert!(v["volumes"].as_array().unwrap().is_empty());
    assert_eq!(v["already_adopted"].as_array().unwrap().len(), 3);
    assert_eq!(e.writes().len(), writes, "{:?}", e.writes());
    assert_eq!(e.snapshot(), snapshot);
}

/// Each of the five steps fails once (the API server answers 500): the run
/// exits 1 naming the step, and a rerun finishes from there.
#[tokio::test]
async fn a_failure_at_any_step_stops_that_volume_and_a_rerun_resumes() {
    let e = Env::new().await;
    let steps = [
        ("retain", "PATCH persistentvolumes/{pv}"),
        ("create-pv", "POST persistentvolumes"),
        (
            "delete-claim",
            "DELETE namespaces/jhub/persistentvolumeclaims/claim-{user}",
        ),
        ("create-claim", "POST namespaces/jhub/persistentvolumeclaims"),
        ("delete-old-pv", "DELETE persistentvolumes/{pv}"),
    ];
    let mut names = Vec::new();
    for (i, (step, key)) in steps.iter().enumerate() {
        let pv = format!("pvc-0000000{i}-aaaa-4bbb-8ccc-dddddddddddd");
        let user = format!("user{i}");
        e.pso_home(&pv, &user).await;
        let only = AdoptArgs {
            pvs: vec![pv.clone()],
            ..apply()
        };
        e.kube
            .fail_once(&key.replace("{pv}", &pv).replace("{user}", &user));
        let (v, code) = e.json(only.clone()).await;
        assert_eq!(code, exit::FAILED, "{step}: {v:#}");
        let x = volume(&v, &pv);
        assert_eq!(x["status"], "failed");
        assert!(
            x["reason"].as_str().unwrap().contains("injected failure"),
            "{x:#}"
        );
        let failed: Vec<_> = x["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["state"] == "failed")
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(failed, [*step], "{x:#}");
        let after: Vec<String> = states(x).into_iter().skip(i + 1).collect();
        assert!(after.iter().all(|s| s == "not_reached"), "{x:#}");

        // Half-way, the data is safe: the old PV is Retain from step 2 on,
        // and the claim name has a PV waiting for it from step 3 on.
        if i >= 1 {
            assert_eq!(
                e.kube.pv(&pv).unwrap()["spec"]["persistentVolumeReclaimPolicy"],
                "Retain"
            );
            assert!(e.kube.pv(&pv).unwrap()["metadata"]["annotations"][CLAIM_RECORD].is_string());
        }

        // The rerun takes the remaining steps only.
        let (v, code) = e.json(only.clone()).await;
        assert_eq!(code, exit::OK, "{step}: {v:#}");
        let x = volume(&v, &pv);
        assert_eq!(x["status"], "adopted");
        let mut expect = vec!["done"; i];
        expect.extend(vec!["applied"; 5 - i]);
        assert_eq!(states(x), expect, "{step}");
        let pvc = e.kube.pvc("jhub", &format!("claim-{user}")).unwrap();
        assert_eq!(pvc["spec"]["volumeName"], format!("fbcsi-{pv}"));
        assert_eq!(pvc["status"]["phase"], "Bound");
        // Labels survive even when the claim was recreated from the record.
        assert_eq!(
            pvc["metadata"]["labels"]["hub.jupyter.org/username"],
            user.as_str()
        );
        assert!(e.kube.pv(&pv).is_none());
        names.push(format!("k8s-{pv}"));
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    e.array_untouched(&names);
}

/// The old PV put back to Delete by someone after the claim moved: the
/// rerun makes it Retain again before deleting it (with
/// HonorPVReclaimPolicy, deleting a Delete PV deletes its storage).
#[tokio::test]
async fn an_old_pv_put_back_to_delete_is_made_retain_again_before_deletion() {
    let e = Env::new().await;
    e.pso_home(ALICE, "alice").await;
    e.kube.fail_once(&format!("DELETE persistentvolumes/{ALICE}"));
    let (_, code) = e.json(apply()).await;
    assert_eq!(code, exit::FAILED);
    e.kube
        .objects
        .lock()
        .unwrap()
        .pvs
        .iter_mut()
        .find(|p| p["metadata"]["name"] == ALICE)
        .unwrap()["spec"]["persistentVolumeReclaimPolicy"] = json!("Delete");
    let before = e.kube.objects.lock().unwrap().requests.len();
    let (v, code) = e.json(apply()).await;
    assert_eq!(code, exit::OK, "{v:#}");
    assert_eq!(
        states(volume(&v, ALICE)),
        ["applied", "done", "done", "done", "applied"]
    );
    let writes: Vec<String> = e.kube.objects.lock().unwrap().requests[before..]
        .iter()
        .filter(|r| !r.starts_with("GET "))
        .cloned()
        .collect();
    assert_eq!(
        writes,
        [
            format!("PATCH persistentvolumes/{ALICE}"),
            format!("DELETE persistentvolumes/{ALICE}")
        ]
    );
    assert!(e.kube.pv(ALICE).is_none());
    e.array_untouched(&[&format!("k8s-{ALICE}")]);
}

#[tokio::test]
async fn a_running_pod_blocks_its_own_volume_only_and_is_named() {
    let e = Env::new().await;
    e.pso_home(ALICE, "alice").await;
    e.pso_home(BOB, "bob").await;
    e.nfs_dataset().await;
    e.kube.add_pod("jhub", "jupyter-alice", "claim-alice", "Running");
    e.kube.add_pod("jhub", "jupyter-bob", "claim-bob", "Succeeded");
    // Every user server mounts the dataset; one is still starting.
    e.kube.add_pod("jhub", "jupyter-carol", "datasets", "Pending");
    // The same claim name in another namespace is another claim.
    e.kube
        .add_pod("staging", "jupyter-alice", "claim-alice", "Running");
    let alice_before = (
        e.kube.pv(ALICE).unwrap(),
        e.kube.pvc("jhub", "claim-alice").unwrap(),
    );

    let r = e.run(Output::Table, apply()).await.unwrap();
    assert_eq!(r.code, exit::REFUSED, "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "claim jhub/claim-alice is in use by pod jhub/jupyter-alice (not finished): stop it first"
        ),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("pod jhub/jupyter-carol"), "{}", r.stdout);
    assert!(!r.stdout.contains("staging/"), "{}", r.stdout);
    // Nothing changed for alice (still Delete: nothing touched it) ...
    assert_eq!(
        (
            e.kube.pv(ALICE).unwrap(),
            e.kube.pvc("jhub", "claim-alice").unwrap()
        ),
        alice_before
    );
    assert!(e.kube.pv(&format!("fbcsi-{ALICE}")).is_none());
    assert!(e.kube.pv("fbcsi-datasets").is_none());
    // ... while bob's went through.
    assert_eq!(
        e.kube.pvc("jhub", "claim-bob").unwrap()["spec"]["volumeName"],
        format!("fbcsi-{BOB}")
    );

    // The servers stop: the rerun adopts the rest.
    for p in e.kube.objects.lock().unwrap().pods.iter_mut() {
        p["status"]["phase"] = json!("Succeeded");
    }
    let (v, code) = e.json(apply()).await;
    assert_eq!(code, exit::OK, "{v:#}");
    assert_eq!(volume(&v, ALICE)["status"], "adopted");
    assert_eq!(volume(&v, "datasets")["status"], "adopted");
    assert_eq!(v["already_adopted"].as_array().unwrap().len(), 1);
    e.array_untouched(&[&format!("k8s-{ALICE}"), &format!("k8s-{BOB}"), "datasets"]);
}

#[tokio::test]
async fn a_claim_taken_by_someone_else_is_refused() {
    let e = Env::new().await;
    e.pso_home(ALICE, "alice").await;
    // A run that stopped after deleting the claim ...
    e.kube.fail_once("POST namespaces/jhub/persistentvolumeclaims");
    let (_, code) = e.json(apply()).await;
    assert_eq!(code, exit::FAILED);
    // ... then JupyterHub made a fresh claim-alice (the user logged in).
    e.kube.objects.lock().unwrap().pvcs.push(json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "claim-alice", "namespace": "jhub", "uid": "fresh"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fb-home",
                 "resources": {"requests": {"storage": "10Gi"}}},
        "status": {"phase": "Pending"},
    }));
    let (v, code) = e.json(apply()).await;
    assert_eq!(code, exit::REFUSED, "{v:#}");
    let reason = volume(&v, ALICE)["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("someone made a new one"), "{reason}");
    // The record on the old PV is still there for when it is cleared.
    assert!(e.kube.pv(ALICE).unwrap()["metadata"]["annotations"][CLAIM_RECORD].is_string());
    e.array_untouched(&[&format!("k8s-{ALICE}")]);
}

#[tokio::test]
async fn bad_input_and_an_unreachable_cluster_are_precise() {
    let e = Env::new().await;
    e.pso_home(ALICE, "alice").await;
    let cases: Vec<(AdoptArgs, i32, &str)> = vec![
        (
            AdoptArgs {
                from_driver: "pure csi".into(),
                ..Default::default()
            },
            exit::USAGE,
            "--from-driver \"pure csi\" is not a CSI driver name",
        ),
        (
            AdoptArgs {
                from_driver: "flashblade.csi.dev".into(),
                ..Default::default()
            },
            exit::USAGE,
            "this driver's own name",
        ),
        (
            AdoptArgs {
                storage_class: Some("FB_Home".into()),
                ..Default::default()
            },
            exit::USAGE,
            "--storage-class \"FB_Home\" is not a StorageClass name",
        ),
        (
            AdoptArgs {
                reclaim_policy: "Recycle".into(),
                ..Default::default()
            },
            exit::USAGE,
            "--reclaim-policy \"Recycle\": expected Retain or Delete",
        ),
        (
            AdoptArgs {
                pvs: vec!["pvc-nonexistent".into()],
                ..Default::default()
            },
            exit::NOT_FOUND,
            "--pv pvc-nonexistent: no PersistentVolume of driver pure-csi",
        ),
    ];
    for (args, code, needle) in cases {
        let err = e.run(Output::Table, args.clone()).await.expect_err(needle);
        assert_eq!(err.exit_code(), code, "{args:?}: {err}");
        assert!(err.to_string().contains(needle), "{args:?}: {err}");
    }

    // No NFS endpoint for the array: nothing can be matched or written.
    let s = Settings {
        array: ArraySettings {
            name: Some("fb01".parse().unwrap()),
            management_url: Some(e.env.mock.url.clone()),
            api_token_file: Some(e.env.token_file.clone()),
            ca_file: e.env.mock.ca_file.clone(),
            ..Default::default()
        },
        kubeconfig: Some(e.kube.adopt_kubeconfig.clone()),
        ..Default::default()
    };
    let err = admin::run(
        Config::load_for_admin(&s).unwrap(),
        Output::Json,
        Job::Adopt(AdoptArgs::default()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), exit::USAGE);
    assert!(
        err.to_string().contains("array fb01 has no NFS endpoint"),
        "{err}"
    );

    // An unreachable cluster: a precise error, exit 1, nothing done.
    let dead_dir = tempfile::tempdir().unwrap();
    let dead = common::fake_kube::write_kubeconfig(dead_dir.path(), "http://127.0.0.1:1");
    let err = admin::run(admin_config(&e.env, &dead), Output::Json, Job::Adopt(apply()))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::FAILED);
    assert!(
        err.to_string()
            .contains("the Kubernetes API did not answer: listing PersistentVolumes"),
        "{err}"
    );
    // The API server refusing the list: said as such.
    e.kube.fail_once("GET persistentvolumes");
    let err = e.run(Output::Json, apply()).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::FAILED);
    assert!(
        err.to_string()
            .contains("the Kubernetes API refused listing PersistentVolumes: injected failure"),
        "{err}"
    );
    assert!(e.writes().is_empty(), "{:?}", e.writes());
}

/// The ClusterRole docs/migrating-from-pso.md gives for adopt: resource →
/// verbs.
fn documented_role() -> Vec<(String, Vec<String>)> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/migrating-from-pso.md"))
            .unwrap();
    let start = doc
        .find("name: flashblade-csi-adopt")
        .expect("the role in the docs");
    let block = &doc[start..start + doc[start..].find("```").unwrap()];
    let quoted =
        |line: &str| -> Vec<String> { line.split('"').skip(1).step_by(2).map(str::to_string).collect() };
    let mut rules = Vec::new();
    let mut resources = Vec::new();
    for line in block.lines().map(str::trim) {
        if line.starts_with("resources:") {
            resources = quoted(line);
        } else if line.starts_with("verbs:") {
            for r in &resources {
                rules.push((r.clone(), quoted(line)));
            }
        }
    }
    rules
}

/// Every request adopt sends is one the documented role allows.
#[tokio::test]
async fn the_documented_role_covers_every_request() {
    let e = Env::new().await;
    e.pso_home(ALICE, "alice").await;
    e.nfs_dataset().await;
    e.kube
        .add_pod("jhub", "jupyter-alice", "claim-alice", "Succeeded");
    e.json(AdoptArgs::default()).await;
    let (_, code) = e.json(apply()).await;
    assert_eq!(code, exit::OK);
    let role = documented_role();
    assert!(!role.is_empty());
    let requests = e.kube.objects.lock().unwrap().requests.clone();
    for r in &requests {
        let (method, path) = r.split_once(' ').unwrap();
        let parts: Vec<&str> = path.split('/').collect();
        let rest = match parts.as_slice() {
            ["namespaces", _, rest @ ..] => rest,
            rest => rest,
        };
        let (resource, named) = (rest[0], rest.len() > 1);
        let verb = match (method, named) {
            ("GET", false) => "list",
            ("GET", true) => "get",
            ("POST", _) => "create",
            ("PATCH", _) => "patch",
            ("DELETE", _) => "delete",
            other => panic!("{other:?}"),
        };
        assert!(
            role.iter()
                .any(|(res, verbs)| res == resource && verbs.iter().any(|v| v == verb)),
            "{r}: {verb} {resource} is not in the documented role {role:?}"
        );
    }
}

fn mode_of(access: &str) -> i32 {
    use csi::volume_capability::access_mode::Mode;
    match access {
        "ReadWriteOnce" => Mode::SingleNodeWriter as i32,
        "ReadOnlyMany" => Mode::MultiNodeReaderOnly as i32,
        "ReadWriteMany" => Mode::MultiNodeMultiWriter as i32,
        other => panic!("{other}"),
    }
}

/// What kubelet would send for a PV: its handle and attributes.
fn volume_of(pv: &Value) -> csi::Volume {
    csi::Volume {
        volume_id: pv["spec"]["csi"]["volumeHandle"].as_str().unwrap().into(),
        volume_context: pv["spec"]["csi"]["volumeAttributes"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_adopted_home_mounts_with_its_old_files() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let kubelet = ne.kubelet.clone();
    let e = Env::on(ne.env).await;
    e.pso_home(ALICE, "alice").await;
    e.nfs_dataset().await;
    let (v, code) = e.json(apply()).await;
    assert_eq!(code, exit::OK, "{v:#}");
    let mut node = NodeClient::new(e.env.driver.channel().await);

    // The home, read-write: PSO's file is there, a new one lands on the array.
    let pv = e.kube.pv(&format!("fbcsi-{ALICE}")).unwrap();
    let vol = volume_of(&pv);
    let mode = mode_of(pv["spec"]["accessModes"][0].as_str().unwrap());
    let staging = kubelet.join("plugins/kubernetes.io/csi/flashblade.csi.dev/home/globalmount");
    let target = kubelet.join("pods/p1/volumes/kubernetes.io~csi/home/mount");
    node.node_stage_volume(stage_req(&vol, &staging, mode))
        .await
        .unwrap();
    node.node_publish_volume(publish_req(&vol, &staging, &target, false, mode))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("notebook.ipynb")).unwrap(),
        format!("k8s-{ALICE}'s notebook.ipynb")
    );
    std::fs::write(target.join("after.txt"), "written after adopt").unwrap();
    assert!(
        e.env
            .mock
            .fs_dir(&format!("k8s-{ALICE}"))
            .join("after.txt")
            .exists()
    );
    unpublish(&mut node, &vol.volume_id, &target).await;
    unstage(&mut node, &vol.volume_id, &staging).await;

    // The dataset, read-only whatever the pod asks.
    let pv = e.kube.pv("fbcsi-datasets").unwrap();
    let vol = volume_of(&pv);
    let mode = mode_of("ReadOnlyMany");
    let staging = kubelet.join("plugins/kubernetes.io/csi/flashblade.csi.dev/ds/globalmount");
    let target = kubelet.join("pods/p2/volumes/kubernetes.io~csi/datasets/mount");
    node.node_stage_volume(stage_req(&vol, &staging, mode))
        .await
        .unwrap();
    node.node_publish_volume(publish_req(
        &vol,
        &staging,
        &target,
        pv["spec"]["csi"]["readOnly"].as_bool().unwrap(),
        mode,
    ))
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(target.join("iris.csv")).unwrap(),
        "datasets's iris.csv"
    );
    let err = std::fs::write(target.join("x"), "x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_erofs()));
    unpublish(&mut node, &vol.volume_id, &target).await;
    unstage(&mut node, &vol.volume_id, &staging).await;
    e.array_untouched(&[&format!("k8s-{ALICE}"), "datasets"]);
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
}

#[test]
fn the_command_line_checks_its_flags_and_keeps_the_nfs_endpoint() {
    let out = bin().args(["adopt", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for shown in [
        "--apply",
        "--from-driver",
        "[default: pure-csi]",
        "--storage-class",
        "--dataset-storage-class",
        "--reclaim-policy",
        "--pv <NAME>",
        "--nfs-endpoint",
        "--kubeconfig",
        "Exit codes",
    ] {
        assert!(help.contains(shown), "{shown} missing from:\n{help}");
    }
    for hidden in ["--node-id", "--kubelet-dir", "--local-export-root"] {
        assert!(!help.contains(hidden), "adopt shows {hidden}");
    }
    let out = bin()
        .args(["adopt", "--reclaim-policy", "Recycle"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--reclaim-policy") && err.contains("Recycle"),
        "{err}"
    );
}

#[test]
fn an_unreachable_cluster_is_a_json_error_from_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let dead = common::fake_kube::write_kubeconfig(dir.path(), "http://127.0.0.1:1");
    let token = dir.path().join("token");
    std::fs::write(&token, "T-not-used").unwrap();
    let out = bin()
        .args(["adopt", "-o", "json", "--array-url", "https://127.0.0.1:1"])
        .args(["--nfs-endpoint", DATA_VIP, "--api-token-file"])
        .arg(&token)
        .arg("--kubeconfig")
        .arg(&dead)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("a JSON error");
    assert_eq!(v["exit_code"], 1);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("the Kubernetes API did not answer"),
        "{v}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("T-not-used"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("T-not-used"));
}

/// The walk-through in docs/migrating-from-pso.md, section 2: the binary
/// against mock-flashblade and the fake API server, its output printed as
/// it is. Regenerate with
/// `cargo test --test adopt -- --ignored docs_walkthrough --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints the documentation's example run"]
async fn docs_walkthrough() {
    let e = Env::new().await;
    e.pso_home(ALICE, "alice").await;
    e.pso_home(BOB, "bob").await;
    e.nfs_dataset().await;
    e.bystanders();
    e.kube.add_pod("jhub", "jupyter-alice", "claim-alice", "Running");
    let dir = e.env.dir.path();
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "kubeconfig = {:?}\n\n[[array]]\nname = \"fb01\"\nmanagement_url = {:?}\napi_token_file = {:?}\nca_file = {:?}\nnfs_endpoint = {DATA_VIP:?}\n",
            e.kube.adopt_kubeconfig,
            e.env.mock.url,
            e.env.token_file,
            e.env.mock.ca_file.as_ref().unwrap(),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = bin()
            .current_dir(dir)
            .arg("adopt")
            .args(args)
            .args(["--config", "config.toml"])
            .output()
            .unwrap();
        println!(
            "$ flashblade-csi adopt {}--config config.toml\n{}{}(exit {})\n",
            args.iter().map(|a| format!("{a} ")).collect::<String>(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            out.status.code().unwrap()
        );
    };
    let home = ["--storage-class", "fb-home"];
    run(&home);
    e.kube.objects.lock().unwrap().pods.clear();
    run(&home);
    run(&["--apply", "--storage-class", "fb-home"]);
    run(&["--apply", "--storage-class", "fb-home"]);
    for name in [format!("fbcsi-{ALICE}"), "fbcsi-datasets".into()] {
        println!(
            "{}\n",
            serde_json::to_string_pretty(&e.kube.pv(&name).unwrap()).unwrap()
        );
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&e.kube.pvc("jhub", "claim-alice").unwrap()).unwrap()
    );
}
