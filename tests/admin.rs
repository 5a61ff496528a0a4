//! The storage-admin commands (`volumes`, `orphans`, `quota`, `recover`,
//! `restore`) against mock-flashblade and a fake Kubernetes API server, in
//! process through `admin::run`, plus the command line's own checks through
//! the binary.

mod common;

use std::os::unix::fs::chown;

use common::fake_kube::FakeKube;
use common::{ControllerEnv, ControllerOpts, controller_env, create_req};
use flashblade_csi::admin::{self, Job, Output, exit};
use flashblade_csi::config::{ArraySettings, Config, Settings};
use flashblade_csi::csi::{self, controller_client::ControllerClient};
use serde_json::Value;

const GIB: i64 = 1 << 30;

struct Env {
    env: ControllerEnv,
    kube: FakeKube,
}

impl Env {
    async fn new() -> Env {
        let env = controller_env(ControllerOpts::default()).await;
        let kube = FakeKube::start(env.dir.path()).await;
        Env { env, kube }
    }

    /// The admin configuration: the array settings only (no NFS endpoint,
    /// no node settings) and the fake cluster.
    fn config(&self, kubeconfig: Option<&std::path::Path>) -> Config {
        let s = Settings {
            array: ArraySettings {
                name: Some("fb01".parse().unwrap()),
                management_url: Some(self.env.mock.url.clone()),
                api_token_file: Some(self.env.token_file.clone()),
                ca_file: self.env.mock.ca_file.clone(),
                ..Default::default()
            },
            kubeconfig: kubeconfig.map(|p| p.to_path_buf()),
            ..Default::default()
        };
        Config::load_for_admin(&s).expect("admin config needs only the array")
    }

    async fn run(&self, output: Output, job: Job) -> Result<admin::Report, admin::AdminError> {
        admin::run(self.config(Some(&self.kube.kubeconfig)), output, job).await
    }

    async fn json(&self, job: Job) -> (Value, i32) {
        let r = self.run(Output::Json, job).await.expect("command runs");
        (serde_json::from_str(&r.stdout).expect("JSON output"), r.code)
    }

    async fn controller(&self) -> ControllerClient<tonic::transport::Channel> {
        ControllerClient::new(self.env.driver.channel().await)
    }

    async fn create(&self, name: &str) -> String {
        self.controller()
            .await
            .create_volume(create_req(name, GIB))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap()
            .volume_id
    }

    async fn delete(&self, id: &str) {
        self.controller()
            .await
            .delete_volume(csi::DeleteVolumeRequest {
                volume_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn snapshot(&self, id: &str, name: &str) -> String {
        self.controller()
            .await
            .create_snapshot(csi::CreateSnapshotRequest {
                source_volume_id: id.into(),
                name: name.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .snapshot
            .unwrap()
            .snapshot_id
    }

    /// Writes `bytes` into the file system as `uid`:`gid`.
    fn write_as(&self, fs: &str, file: &str, bytes: usize, uid: u32, gid: u32) {
        let path = self.env.mock.fs_dir(fs).join(file);
        std::fs::write(&path, vec![7u8; bytes]).unwrap();
        // Ownership needs root; without it usage is attributed to our uid.
        let _ = chown(&path, Some(uid), Some(gid));
    }
}

fn find<'a>(rows: &'a Value, key: &str, value: &str) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row with {key}={value} in {rows:#}"))
}

#[tokio::test]
async fn volumes_joins_the_array_with_pvs_and_claims() {
    let e = Env::new().await;
    let a = e.create("pvc-a").await;
    e.create("pvc-b").await;
    let c = e.create("pvc-c").await;
    e.snapshot(&a, "snap-a").await;
    e.write_as("k8s-pvc-a", "data", 1 << 20, 1000, 100);
    e.delete(&c).await;
    e.kube.add_pv("pvc-a", &a, Some(("jhub", "claim-alice")));

    let (v, code) = e.json(Job::Volumes).await;
    assert_eq!(code, exit::OK);
    let rows = &v["volumes"];
    let ra = find(rows, "file_system", "k8s-pvc-a");
    assert_eq!(ra["pv"], "pvc-a");
    assert_eq!(ra["pvc"], "jhub/claim-alice");
    assert_eq!(ra["snapshots"], 1);
    assert_eq!(ra["provisioned"], GIB);
    assert!(ra["used"].as_i64().unwrap() >= 1 << 20, "{ra}");
    assert!(ra["percent_of_quota"].as_f64().unwrap() > 0.0);
    assert_eq!(ra["destroyed"], false);
    let rb = find(rows, "file_system", "k8s-pvc-b");
    assert!(rb["pv"].is_null());
    let rc = find(rows, "original_name", "k8s-pvc-c");
    assert_eq!(rc["destroyed"], true);
    assert!(rc["eradicated_in_s"].as_i64().unwrap() > 3600);

    let t = e.run(Output::Table, Job::Volumes).await.unwrap();
    assert!(t.stdout.starts_with("FILE SYSTEM"), "{}", t.stdout);
    assert!(t.stdout.contains("jhub/claim-alice"));
    assert!(t.stdout.contains("(was k8s-pvc-c)"));
    assert!(t.stdout.contains("destroyed, 23h"), "{}", t.stdout);
    assert!(t.warnings.is_empty());
    let requests = e.kube.objects.lock().unwrap().requests.clone();
    assert!(
        requests.contains(&"GET persistentvolumes".to_string()),
        "{requests:?}"
    );
}

#[tokio::test]
async fn orphans_both_ways() {
    let e = Env::new().await;
    let a = e.create("pvc-a").await;
    e.create("pvc-lost").await;
    let c = e.create("pvc-c").await;
    e.delete(&c).await;
    e.kube.add_pv("pvc-a", &a, Some(("jhub", "claim-alice")));
    e.kube.add_pv("pvc-c", &c, Some(("jhub", "claim-carol")));
    e.kube.add_pv(
        "pvc-gone",
        "fb01/k8s-pvc-gone/00000000-0000-0000-0000-000000000000",
        None,
    );
    // A static dataset volume whose file system exists is no orphan.
    common::ArrayAdmin::new(&e.env.mock)
        .await
        .send(
            reqwest::Method::POST,
            "file-systems?names=datasets",
            serde_json::json!({"provisioned": GIB}),
        )
        .await;
    e.kube.add_pv("datasets", "datasets", None);

    let (v, code) = e.json(Job::Orphans).await;
    assert_eq!(code, exit::OK);
    assert_eq!(v["complete"], true);
    let fss = v["file_systems_without_pv"].as_array().unwrap();
    assert_eq!(fss.len(), 1, "{v:#}");
    assert_eq!(fss[0]["file_system"], "k8s-pvc-lost");
    let pvs = &v["pvs_without_file_system"];
    assert_eq!(pvs.as_array().unwrap().len(), 2, "{v:#}");
    assert_eq!(find(pvs, "pv", "pvc-gone")["problem"], "missing");
    let carol = find(pvs, "pv", "pvc-c");
    assert_eq!(carol["problem"], "destroyed");
    assert_eq!(carol["pvc"], "jhub/claim-carol");

    let t = e.run(Output::Table, Job::Orphans).await.unwrap();
    assert!(
        t.stdout
            .contains("File systems that no PersistentVolume references: 1"),
        "{}",
        t.stdout
    );
    assert!(t.stdout.contains("destroyed ("), "{}", t.stdout);
}

#[tokio::test]
async fn an_unreachable_cluster_is_said_and_the_array_side_still_printed() {
    let e = Env::new().await;
    e.create("pvc-a").await;
    let dead = common::fake_kube::write_kubeconfig(
        &e.env
            .dir
            .path()
            .join("..")
            .canonicalize()
            .unwrap_or_else(|_| e.env.dir.path().into()),
        "http://127.0.0.1:1",
    );
    for job in [Job::Volumes, Job::Orphans] {
        let r = admin::run(e.config(Some(&dead)), Output::Json, job)
            .await
            .unwrap();
        assert_eq!(r.code, exit::PARTIAL);
        assert!(
            r.warnings[0].contains("Kubernetes side is missing"),
            "{:?}",
            r.warnings
        );
        assert!(r.stdout.contains("k8s-pvc-a"), "{}", r.stdout);
    }
    let r = admin::run(e.config(Some(&dead)), Output::Json, Job::Orphans)
        .await
        .unwrap();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["complete"], false);
    // A kubeconfig that does not exist is a configuration error.
    let s = Settings {
        kubeconfig: Some("/nonexistent/kubeconfig".into()),
        array: ArraySettings {
            management_url: Some(e.env.mock.url.clone()),
            api_token_file: Some(e.env.token_file.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(Config::load_for_admin(&s).unwrap_err().setting, "kubeconfig");
}

#[tokio::test]
async fn quotas_show_set_remove() {
    let e = Env::new().await;
    let a = e.create("pvc-home").await;
    e.kube.add_pv("pvc-home", &a, Some(("jhub", "claim-alice")));
    e.write_as("k8s-pvc-home", "notebook", 3 << 20, 1000, 100);

    // By claim: explicit quota for uid 1000, usage shown.
    let set = |uid: Option<u32>, quota: Option<&str>| Job::QuotaSet {
        volume: "jhub/claim-alice".into(),
        change: admin::quota::QuotaChange {
            uid,
            quota: quota.map(String::from),
            ..Default::default()
        },
    };
    let (v, code) = e.json(set(Some(1000), Some("5Gi"))).await;
    assert_eq!(code, exit::OK);
    assert_eq!(v["pvc"], "jhub/claim-alice");
    let q = &v["quotas"][0];
    assert_eq!(
        (q["kind"].as_str(), q["id"].as_i64(), q["quota"].as_i64()),
        (Some("user"), Some(1000), Some(5 * GIB))
    );
    if nix::unistd::geteuid().is_root() {
        assert!(q["usage"].as_i64().unwrap() >= 3 << 20, "{v:#}");
    }
    // Raised: the same command changes it.
    let (v, _) = e.json(set(Some(1000), Some("20Gi"))).await;
    assert_eq!(v["quotas"][0]["quota"], 20 * GIB);
    assert_eq!(e.env.mock.with_state(|s| s.user_quotas.len()), 1);

    // Volume-level settings, by PV name, through the StorageClass parser.
    let (v, _) = e
        .json(Job::QuotaSet {
            volume: "pvc-home".into(),
            change: admin::quota::QuotaChange {
                default_user_quota: Some("10Gi".into()),
                default_group_quota: Some("50Gi".into()),
                hard_limit: Some("false".into()),
                ..Default::default()
            },
        })
        .await;
    assert_eq!(v["default_user_quota"], 10 * GIB);
    assert_eq!(v["default_group_quota"], 50 * GIB);
    assert_eq!(v["hard_limit"], false);

    // Group quota, shown by file-system name and by volume id.
    e.json(Job::QuotaSet {
        volume: "k8s-pvc-home".into(),
        change: admin::quota::QuotaChange {
            gid: Some(100),
            quota: Some("1Ti".into()),
            ..Default::default()
        },
    })
    .await;
    let (v, _) = e.json(Job::QuotaShow { volume: a.clone() }).await;
    assert_eq!(v["quotas"].as_array().unwrap().len(), 2, "{v:#}");
    let t = e
        .run(
            Output::Table,
            Job::QuotaShow {
                volume: "k8s-pvc-home".into(),
            },
        )
        .await
        .unwrap();
    assert!(t.stdout.contains("default user quota   10Gi"), "{}", t.stdout);
    assert!(t.stdout.contains("user   1000"), "{}", t.stdout);

    // Remove, twice: the second has nothing to do and says so.
    for expect in ["quota removed", "had no quota"] {
        let r = e
            .run(
                Output::Table,
                Job::QuotaRemove {
                    volume: "pvc-home".into(),
                    uid: Some(1000),
                    gid: None,
                },
            )
            .await
            .unwrap();
        assert!(r.stdout.contains(expect), "{}", r.stdout);
    }
    assert!(e.env.mock.with_state(|s| s.user_quotas.is_empty()));
}

#[tokio::test]
async fn quota_bad_input_is_refused_and_changes_nothing() {
    let e = Env::new().await;
    e.create("pvc-home").await;
    common::ArrayAdmin::new(&e.env.mock)
        .await
        .send(
            reqwest::Method::POST,
            "file-systems?names=datasets",
            serde_json::json!({"provisioned": GIB}),
        )
        .await;
    let change = |f: &dyn Fn(&mut admin::quota::QuotaChange)| {
        let mut c = admin::quota::QuotaChange::default();
        f(&mut c);
        c
    };
    let cases: Vec<(&str, admin::quota::QuotaChange, i32, &str)> = vec![
        (
            "pvc-home",
            change(&|c| c.default_user_quota = Some("-1Gi".into())),
            exit::USAGE,
            "defaultUserQuota",
        ),
        (
            "pvc-home",
            change(&|c| c.hard_limit = Some("maybe".into())),
            exit::USAGE,
            "hardLimit",
        ),
        (
            "pvc-home",
            change(&|c| {
                c.uid = Some(5);
                c.quota = Some("-5Gi".into());
            }),
            exit::USAGE,
            "--quota",
        ),
        (
            "pvc-home",
            change(&|c| {
                c.uid = Some(5);
                c.quota = Some("0".into());
            }),
            exit::USAGE,
            "greater than 0",
        ),
        (
            "k8s-pvc-home",
            change(&|c| c.uid = Some(5)),
            exit::USAGE,
            "--quota",
        ),
        ("k8s-pvc-home", change(&|_| {}), exit::USAGE, "nothing to set"),
        (
            "datasets",
            change(&|c| c.default_user_quota = Some("1Gi".into())),
            exit::REFUSED,
            "static",
        ),
        (
            "datasets",
            change(&|c| {
                c.uid = Some(5);
                c.quota = Some("1Gi".into());
            }),
            exit::REFUSED,
            "static",
        ),
        (
            "no-such-volume",
            change(&|c| c.default_user_quota = Some("1Gi".into())),
            exit::NOT_FOUND,
            "no-such-volume",
        ),
        (
            "jhub/nobody",
            change(&|c| c.default_user_quota = Some("1Gi".into())),
            exit::NOT_FOUND,
            "jhub/nobody",
        ),
    ];
    for (volume, change, code, needle) in cases {
        let err = e
            .run(
                Output::Table,
                Job::QuotaSet {
                    volume: volume.into(),
                    change: change.clone(),
                },
            )
            .await
            .expect_err(volume);
        assert_eq!(err.exit_code(), code, "{volume} {change:?}: {err}");
        assert!(err.to_string().contains(needle), "{volume} {change:?}: {err}");
    }
    let fs = e.env.mock.with_state(|s| s.file_systems["k8s-pvc-home"].clone());
    assert_eq!(fs.default_user_quota, 0);
    assert!(fs.hard_limit_enabled);
    assert!(e.env.mock.with_state(|s| s.user_quotas.is_empty()));
    assert_eq!(
        e.env
            .mock
            .with_state(|s| s.file_systems["datasets"].default_user_quota),
        0
    );
}

#[tokio::test]
async fn recover_gives_a_deleted_home_back_to_its_claim() {
    let e = Env::new().await;
    let id = e.create("pvc-bob").await;
    e.write_as("k8s-pvc-bob", "thesis.tex", 4096, 1000, 100);
    e.delete(&id).await;
    assert!(
        e.env
            .mock
            .with_state(|s| !s.file_systems.contains_key("k8s-pvc-bob"))
    );

    // Listed by its original name with the time left.
    let (v, code) = e.json(Job::RecoverList).await;
    assert_eq!(code, exit::OK);
    let row = find(&v["deleted"], "original_name", "k8s-pvc-bob");
    assert!(row["file_system"].as_str().unwrap().starts_with("k8s-pvc-bob-x"));
    assert!(row["eradicated_in_s"].as_i64().unwrap() > 3600);
    let t = e.run(Output::Table, Job::RecoverList).await.unwrap();
    assert!(
        t.stdout.contains("k8s-pvc-bob") && t.stdout.contains("23h"),
        "{}",
        t.stdout
    );

    // Recovered, renamed back, and given to jhub/claim-bob in one step.
    let args = admin::recover::RecoverArgs {
        claim: Some("jhub/claim-bob".parse().unwrap()),
        storage_class: Some("fb-home".into()),
        access_mode: "ReadWriteOnce".into(),
        nfs_versions: Some("3,4.1".into()),
        apply: true,
        ..Default::default()
    };
    let (v, code) = e
        .json(Job::Recover {
            volume: "k8s-pvc-bob".into(),
            args: args.clone(),
        })
        .await;
    assert_eq!(code, exit::OK, "{v:#}");
    assert_eq!(v["action"], "recovered");
    assert_eq!(v["renamed_back"], true);
    assert_eq!(v["applied"], true);
    let fs = e.env.mock.with_state(|s| s.file_systems["k8s-pvc-bob"].clone());
    assert!(!fs.destroyed && fs.nfs.v3_enabled && fs.nfs.v4_1_enabled);
    assert!(e.env.mock.fs_dir("k8s-pvc-bob").join("thesis.tex").exists());
    assert_eq!(v["volume_id"], format!("fb01/k8s-pvc-bob/{}", fs.id));
    {
        let o = e.kube.objects.lock().unwrap();
        let pv = o.pvs.last().unwrap();
        assert_eq!(pv["spec"]["csi"]["volumeHandle"], v["volume_id"]);
        assert_eq!(pv["spec"]["claimRef"]["name"], "claim-bob");
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        let pvc = o.pvcs.last().unwrap();
        assert_eq!(pvc["metadata"]["namespace"], "jhub");
        assert_eq!(pvc["spec"]["volumeName"], pv["metadata"]["name"]);
    }
    // The driver manages it again: the volume id resolves.
    e.controller()
        .await
        .validate_volume_capabilities(csi::ValidateVolumeCapabilitiesRequest {
            volume_id: v["volume_id"].as_str().unwrap().into(),
            volume_capabilities: vec![common::mount_cap(1)],
            ..Default::default()
        })
        .await
        .unwrap();

    // Again: nothing to recover, and the live volume is now another PV's.
    let err = e
        .run(
            Output::Json,
            Job::Recover {
                volume: "k8s-pvc-bob".into(),
                args: args.clone(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::REFUSED, "{err}");
    assert!(err.to_string().contains("uses it"), "{err}");
    let (v, _) = e
        .json(Job::Recover {
            volume: "k8s-pvc-bob".into(),
            args: admin::recover::RecoverArgs {
                access_mode: "ReadWriteOnce".into(),
                nfs_versions: Some("3,4.1".into()),
                ..Default::default()
            },
        })
        .await;
    assert_eq!(v["action"], "already live");

    // The name taken by a new volume: recovered under its tombstone name.
    let id2 = e.create("pvc-dan").await;
    e.delete(&id2).await;
    e.create("pvc-dan").await;
    let (v, _) = e
        .json(Job::Recover {
            volume: "k8s-pvc-dan".into(),
            args: admin::recover::RecoverArgs {
                claim: Some("jhub/claim-dan-old".parse().unwrap()),
                access_mode: "ReadWriteOnce".into(),
                nfs_versions: Some("4.1".into()),
                ..Default::default()
            },
        })
        .await;
    assert_eq!(v["action"], "recovered", "{v:#}");
    assert_eq!(v["renamed_back"], false);
    assert!(v["note"].as_str().unwrap().contains("is taken"), "{v:#}");
    assert!(v["file_system"].as_str().unwrap().starts_with("k8s-pvc-dan-x"));
    assert_eq!(v["manifests"]["pvc"]["metadata"]["name"], "claim-dan-old");
    // The old one is live again under its tombstone name; the live one by
    // the old name belongs to another PV, which is not given away.
    let live = e.create("pvc-dan").await;
    e.kube.add_pv("pvc-dan", &live, Some(("jhub", "claim-dan")));
    let err = e
        .run(
            Output::Table,
            Job::Recover {
                volume: "k8s-pvc-dan".into(),
                args: admin::recover::RecoverArgs {
                    claim: Some("jhub/claim-dan-2".parse().unwrap()),
                    access_mode: "ReadWriteOnce".into(),
                    nfs_versions: Some("4.1".into()),
                    ..Default::default()
                },
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::REFUSED, "{err}");
    assert!(
        err.to_string().contains("PersistentVolume pvc-dan uses it"),
        "{err}"
    );

    // Nothing by that name.
    let err = e
        .run(
            Output::Table,
            Job::Recover {
                volume: "k8s-pvc-never".into(),
                args: admin::recover::RecoverArgs {
                    access_mode: "ReadWriteOnce".into(),
                    nfs_versions: Some("3,4.1".into()),
                    ..Default::default()
                },
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::NOT_FOUND, "{err}");
}

/// A node-following home that served NFSv4.1 alone comes back as it was:
/// v4.1 only, exported to no node until a pod needs it, `exportTo: nodes`
/// in the PV and `n` in its volume id.
#[tokio::test]
async fn recover_brings_a_volume_back_as_it_was() {
    let e = Env::new().await;
    let mut req = create_req("pvc-fay", GIB);
    req.parameters.insert("exportTo".into(), "nodes".into());
    req.parameters
        .insert("exportOptions".into(), "no_root_squash".into());
    req.parameters.insert("nfsVersions".into(), "4.1".into());
    let id = e
        .controller()
        .await
        .create_volume(req)
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap()
        .volume_id;
    assert!(id.ends_with("/4m"), "{id}");
    e.write_as("k8s-pvc-fay", "notes.ipynb", 100, 1000, 100);
    e.delete(&id).await;
    let tomb = e.env.mock.with_state(|s| {
        s.file_systems
            .values()
            .find(|f| f.destroyed && f.name.starts_with("k8s-pvc-fay-x"))
            .map(|f| f.name.clone())
            .unwrap()
    });
    assert!(tomb.ends_with("FM"), "{tomb}");

    let (v, code) = e
        .json(Job::Recover {
            volume: "k8s-pvc-fay".into(),
            args: admin::recover::RecoverArgs {
                claim: Some("jhub/claim-fay".parse().unwrap()),
                access_mode: "ReadWriteOnce".into(),
                // Nothing but the name: the tombstone's record says the rest.
                ..Default::default()
            },
        })
        .await;
    assert_eq!(code, exit::OK, "{v:#}");
    let fs = e.env.mock.with_state(|s| s.file_systems["k8s-pvc-fay"].clone());
    assert!(
        !fs.destroyed && !fs.nfs.v3_enabled && fs.nfs.v4_1_enabled,
        "{fs:?}"
    );
    assert_eq!(fs.nfs.rules, "", "exported to no node until a pod needs it");
    assert_eq!(v["volume_id"], format!("fb01/k8s-pvc-fay/{}/4m", fs.id));
    let attrs = &v["manifests"]["pv"]["spec"]["csi"]["volumeAttributes"];
    assert_eq!(attrs["exportTo"], "nodes", "{v:#}");
    assert_eq!(attrs["exportOptions"], "no_root_squash", "{v:#}");
    assert_eq!(attrs["nfsVersions"], "4.1", "{v:#}");
    assert!(v["note"].is_null(), "{v:#}");

    // Without --export-options: the default options, and the note says so.
    let id = e.create("pvc-gus").await;
    e.delete(&id).await;
    let (v, code) = e
        .json(Job::Recover {
            volume: "k8s-pvc-gus".into(),
            args: admin::recover::RecoverArgs {
                access_mode: "ReadWriteOnce".into(),
                ..Default::default()
            },
        })
        .await;
    assert_eq!(code, exit::OK, "{v:#}");
    let fs = e.env.mock.with_state(|s| s.file_systems["k8s-pvc-gus"].clone());
    assert!(fs.nfs.v3_enabled && fs.nfs.v4_1_enabled, "{fs:?}");
    assert_eq!(v["volume_id"], format!("fb01/k8s-pvc-gus/{}", fs.id));
    assert!(v["note"].is_null(), "{v:#}");
}

#[test]
fn recover_refuses_a_claim_without_a_volume() {
    for extra in [
        &["--claim", "jhub/claim-x", "--apply"][..],
        &["--claim", "jhub/claim-x"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
            .arg("recover")
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("VOLUME"), "{err}");
    }
}

#[tokio::test]
async fn restore_dry_run_and_the_in_use_check() {
    let e = Env::new().await;
    let id = e.create("pvc-eve").await;
    e.write_as("k8s-pvc-eve", "a.txt", 100, 1000, 100);
    let snap = e.snapshot(&id, "snap-eve").await;
    e.write_as("k8s-pvc-eve", "b.txt", 100, 1000, 100);
    e.kube.add_pv("pvc-eve", &id, Some(("jhub", "claim-eve")));
    e.kube.attach("pvc-eve", "node-7");
    let job = |dry_run, yes| Job::Restore {
        volume: "jhub/claim-eve".into(),
        snapshot_id: snap.clone(),
        dry_run,
        yes,
    };
    let r = e.run(Output::Table, job(true, false)).await.unwrap();
    assert!(r.stdout.starts_with("DRY RUN"), "{}", r.stdout);
    assert!(
        r.stdout.contains("would be restored") && r.stdout.contains("node-7"),
        "{}",
        r.stdout
    );
    assert!(e.env.mock.fs_dir("k8s-pvc-eve").join("b.txt").exists());

    let err = e.run(Output::Table, job(false, false)).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::REFUSED);
    assert!(
        err.to_string().contains("node-7") && err.to_string().contains("stop the user's server"),
        "{err}"
    );
    assert!(e.env.mock.fs_dir("k8s-pvc-eve").join("b.txt").exists());

    let (v, code) = e.json(job(false, true)).await;
    assert_eq!(code, exit::OK);
    assert_eq!(v["restored"], true);
    assert!(!e.env.mock.fs_dir("k8s-pvc-eve").join("b.txt").exists());
    assert!(e.env.mock.fs_dir("k8s-pvc-eve").join("a.txt").exists());
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
}

#[test]
fn the_command_line_refuses_a_uid_that_is_not_a_number() {
    let out = bin()
        .args(["quota", "set", "pvc-a", "--uid", "alice", "--quota", "1Gi"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--uid"));
}

#[test]
fn admin_help_shows_only_array_settings() {
    for cmd in [&["volumes"][..], &["quota", "set"], &["recover"], &["restore"]] {
        let out = bin().args(cmd).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--array-url") && help.contains("--kubeconfig"),
            "{cmd:?}: {help}"
        );
        assert!(help.contains("Exit codes"), "{cmd:?}");
        for hidden in ["--node-id", "--nfs-endpoint", "--kubelet-dir", "--endpoint "] {
            assert!(!help.contains(hidden), "{cmd:?} shows {hidden}");
        }
    }
}

#[test]
fn admin_config_errors_exit_2_and_json_errors_are_json() {
    let out = bin().args(["volumes", "--output", "json"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin()
        .args([
            "quota",
            "show",
            "x",
            "-o",
            "json",
            "--array-url",
            "https://127.0.0.1:1",
        ])
        .args(["--api-token-file", "/etc/hostname", "--array-timeout", "1s"])
        .env("FLASHBLADE_CSI_KUBECONFIG", "/etc/hostname")
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
}

/// `arrays`: what `array: auto` chooses among — labels, capacity, free space
/// and the driver's live volumes per array; an unreachable array says so.
#[tokio::test]
async fn arrays_shows_labels_capacity_and_volume_count() {
    let e = Env::new().await;
    e.create("pvc-x").await;
    e.create("pvc-y").await;
    let mut s = Settings {
        array: ArraySettings {
            name: Some("fb01".parse().unwrap()),
            management_url: Some(e.env.mock.url.clone()),
            api_token_file: Some(e.env.token_file.clone()),
            ca_file: e.env.mock.ca_file.clone(),
            labels: Some("rack=7b,env=prod".parse().unwrap()),
            ..Default::default()
        },
        ..Default::default()
    };
    let config = Config::load_for_admin(&s).unwrap();
    let r = admin::run(config.clone(), Output::Json, Job::Arrays)
        .await
        .unwrap();
    assert_eq!(r.code, exit::OK, "{}", r.stdout);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let a = &v["arrays"][0];
    assert_eq!(a["array"], "fb01");
    assert_eq!(a["labels"]["rack"], "7b");
    assert_eq!(a["volumes"], 2);
    let cap = a["capacity"].as_i64().unwrap();
    assert!(cap > 0 && a["free"].as_i64().unwrap() <= cap, "{a}");
    let t = admin::run(config, Output::Table, Job::Arrays).await.unwrap();
    assert!(
        t.stdout.starts_with("ARRAY") && t.stdout.contains("env=prod,rack=7b"),
        "{}",
        t.stdout
    );

    // An array that does not answer: the row says so, the exit code too.
    s.array.management_url = Some("https://127.0.0.1:1".into());
    s.timeouts.array_request = Some(std::time::Duration::from_secs(1));
    let r = admin::run(Config::load_for_admin(&s).unwrap(), Output::Json, Job::Arrays)
        .await
        .unwrap();
    assert_eq!(r.code, exit::FAILED);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["arrays"][0]["error"].is_string(), "{v}");
    assert!(v["arrays"][0]["volumes"].is_null());
}
