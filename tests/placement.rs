//! Placement across arrays (`array: auto`): three simulated arrays of
//! different capacities and labels behind one controller.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{ArrayAdmin, Driver, create_req};
use flashblade_csi::config::{Mode, Settings};
use flashblade_csi::csi::{self, controller_client::ControllerClient};
use mock_flashblade::{FaultKind, MockConfig, MockHandle, ScriptedFault};
use tonic::Code;

const GIB: i64 = 1 << 30;

struct Env {
    mocks: Vec<(&'static str, MockHandle)>,
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// fb1 10 GiB (rack 1, prod), fb2 6 GiB (rack 2, prod), fb3 2 GiB (rack 3, staging).
async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::from("default_array = \"fb1\"\n");
    let mut mocks = Vec::new();
    for (name, gib, rack, env) in [
        ("fb1", 10, "1", "prod"),
        ("fb2", 6, "2", "prod"),
        ("fb3", 2, "3", "staging"),
    ] {
        let mock = mock_flashblade::start(MockConfig {
            capacity: gib * GIB,
            persist: false,
            ..Default::default()
        })
        .await
        .unwrap();
        let token = dir.path().join(format!("{name}.token"));
        std::fs::write(&token, &mock.api_token).unwrap();
        toml.push_str(&format!(
            "[[array]]\nname = \"{name}\"\nmanagement_url = \"{}\"\napi_token_file = \"{}\"\nca_file = \"{}\"\n\
             nfs_endpoint = \"10.0.0.{}\"\ndefault_export_rules = \"10.0.0.0/16(rw,root_squash)\"\n\
             labels = {{ rack = \"{rack}\", env = \"{env}\" }}\n",
            mock.url,
            token.display(),
            mock.ca_file.as_ref().unwrap().display(),
            rack
        ));
        mocks.push((name, mock));
    }
    let config = dir.path().join("config.toml");
    std::fs::write(&config, toml).unwrap();
    Env { mocks, dir, config }
}

impl Env {
    async fn driver(&self, sub: &str) -> Driver {
        let d = self.dir.path().join(sub);
        std::fs::create_dir_all(&d).unwrap();
        Driver::start(
            &d,
            Settings {
                mode: Some(Mode::Controller),
                config: Some(self.config.clone()),
                ..Default::default()
            },
        )
        .await
    }

    fn mock(&self, name: &str) -> &MockHandle {
        &self.mocks.iter().find(|(n, _)| *n == name).unwrap().1
    }

    /// Live file systems named `fs` on each array.
    fn holders(&self, fs: &str) -> Vec<&'static str> {
        self.mocks
            .iter()
            .filter(|(_, m)| m.with_state(|s| s.file_systems.values().any(|f| f.name == fs && !f.destroyed)))
            .map(|(n, _)| *n)
            .collect()
    }

    /// Bytes provisioned on each array.
    fn provisioned(&self) -> HashMap<&'static str, i64> {
        self.mocks
            .iter()
            .map(|(n, m)| {
                (
                    *n,
                    m.with_state(|s| s.file_systems.values().map(|f| f.provisioned.unwrap_or(0)).sum()),
                )
            })
            .collect()
    }
}

fn auto(name: &str, bytes: i64, selector: Option<&str>) -> csi::CreateVolumeRequest {
    let mut req = create_req(name, bytes);
    req.parameters.insert("array".into(), "auto".into());
    if let Some(s) = selector {
        req.parameters.insert("arraySelector".into(), s.into());
    }
    req
}

fn array_of(volume_id: &str) -> String {
    volume_id.split('/').next().unwrap().to_string()
}

#[tokio::test]
async fn a_burst_spreads_by_free_space() {
    let env = env().await;
    let driver = env.driver("d").await;
    let mut tasks = Vec::new();
    for i in 0..14 {
        let ch = driver.channel().await;
        tasks.push(tokio::spawn(async move {
            ControllerClient::new(ch)
                .create_volume(auto(&format!("pvc-{i:02}"), GIB, None))
                .await
                .map(|r| r.into_inner().volume.unwrap().volume_id)
        }));
    }
    let mut per_array: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        *per_array.entry(array_of(&t.await.unwrap().unwrap())).or_default() += 1;
    }
    // 18 GiB free in all, 14 placed by most-free-first: 10-6-2 becomes 2-2-0
    // or thereabouts, never one array taking everything.
    let p = env.provisioned();
    let free: Vec<i64> = [("fb1", 10), ("fb2", 6), ("fb3", 2)]
        .iter()
        .map(|(n, g)| g * GIB - p[n])
        .collect();
    assert!(per_array.len() >= 2, "{per_array:?}");
    assert!(
        free.iter().max().unwrap() - free.iter().min().unwrap() <= 2 * GIB,
        "free after the burst {free:?} ({per_array:?})"
    );
    assert!(free.iter().all(|f| *f >= 0), "an array was overfilled: {free:?}");
}

#[tokio::test]
async fn a_selector_restricts_the_arrays() {
    let env = env().await;
    let driver = env.driver("d").await;
    let mut c = ControllerClient::new(driver.channel().await);
    for (name, sel, want) in [
        ("pvc-s1", "env=staging", "fb3"),
        ("pvc-s2", "env in (prod), rack=2", "fb2"),
        ("pvc-s3", "env!=prod", "fb3"),
        ("pvc-s4", "rack notin (1,3)", "fb2"),
    ] {
        let v = c
            .create_volume(auto(name, GIB, Some(sel)))
            .await
            .unwrap()
            .into_inner()
            .volume
            .unwrap();
        assert_eq!(array_of(&v.volume_id), want, "{sel}");
        assert_eq!(
            v.volume_context["server"],
            format!("10.0.0.{}", &want[2..]),
            "the chosen array's endpoint"
        );
    }
    // A selector that matches nothing, a selector with a named array, a bad
    // selector, an endpoint with auto: refused before any array is asked.
    env.mocks.iter().for_each(|(_, m)| m.reset_counters());
    for (params, needle) in [
        (
            vec![("array", "auto"), ("arraySelector", "env=dev")],
            "matches no configured array",
        ),
        (
            vec![("array", "fb1"), ("arraySelector", "env=prod")],
            "needs array: auto",
        ),
        (
            vec![("array", "auto"), ("arraySelector", "env in prod")],
            "arraySelector",
        ),
        (
            vec![("array", "auto"), ("nfsEndpoint", "10.9.9.9")],
            "nfsEndpoint",
        ),
    ] {
        let mut req = create_req("pvc-bad", GIB);
        req.parameters = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let err = c.create_volume(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{params:?}: {}", err.message());
        assert!(err.message().contains(needle), "{}", err.message());
    }
    for (_, m) in &env.mocks {
        assert_eq!(m.counters().requests.iter().map(|r| r.count).sum::<u64>(), 0);
    }
}

#[tokio::test]
async fn a_full_array_is_never_chosen() {
    let env = env().await;
    let driver = env.driver("d").await;
    let mut c = ControllerClient::new(driver.channel().await);
    // fb3 has 2 GiB: 3 GiB on staging cannot be placed.
    let err = c
        .create_volume(auto("pvc-big", 3 * GIB, Some("env=staging")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    assert!(env.holders("k8s-pvc-big").is_empty());
    // 7 GiB fits only fb1.
    let v = c
        .create_volume(auto("pvc-7", 7 * GIB, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(array_of(&v.volume.unwrap().volume_id), "fb1");
    // GetCapacity for the class: the sum, and the largest single array.
    let mut params = std::collections::HashMap::new();
    params.insert("array".to_string(), "auto".to_string());
    let cap = c
        .get_capacity(csi::GetCapacityRequest {
            parameters: params,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cap.available_capacity, 11 * GIB, "10+6+2 less the 7 placed");
    assert_eq!(cap.maximum_volume_size, Some(6 * GIB));
}

#[tokio::test]
async fn an_unreachable_array_is_skipped() {
    let env = env().await;
    let driver = env.driver("d").await;
    let mut c = ControllerClient::new(driver.channel().await);
    env.mock("fb1").stop();
    for i in 0..3 {
        let v = c
            .create_volume(auto(&format!("pvc-u{i}"), GIB, None))
            .await
            .unwrap()
            .into_inner();
        assert_ne!(array_of(&v.volume.unwrap().volume_id), "fb1");
    }
}

#[tokio::test]
async fn retries_never_duplicate_across_arrays() {
    let env = env().await;
    let driver = env.driver("d").await;
    let mut c = ControllerClient::new(driver.channel().await);
    // The create on fb1 (the most free) commits, then the answer is lost.
    env.mock("fb1").push_fault(ScriptedFault::new(
        Some("POST"),
        Some("file-systems"),
        FaultKind::Ambiguous500,
        1,
    ));
    let first = c
        .create_volume(auto("pvc-amb", GIB, None))
        .await
        .unwrap()
        .into_inner();
    let id = first.volume.unwrap().volume_id;
    assert_eq!(array_of(&id), "fb1");

    // fb1 then fills up (an admin's data), and the controller restarts (a
    // leader change): the provisioner's retry must still land on fb1.
    let admin = ArrayAdmin::new(env.mock("fb1")).await;
    admin
        .send(
            reqwest::Method::POST,
            "file-systems?names=filler",
            serde_json::json!({"provisioned": 0}),
        )
        .await;
    let filler = std::fs::File::create(env.mock("fb1").fs_dir("filler").join("data")).unwrap();
    filler.set_len((9 * GIB) as u64).unwrap(); // sparse; the simulator counts its length
    drop(driver);
    let driver = env.driver("d2").await;
    let mut c = ControllerClient::new(driver.channel().await);
    let again = c
        .create_volume(auto("pvc-amb", GIB, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.volume.unwrap().volume_id, id);
    assert_eq!(env.holders("k8s-pvc-amb"), vec!["fb1"]);

    // Ambiguous answers everywhere, every create retried until it succeeds:
    // each name ends up on exactly one array.
    for (_, m) in &env.mocks {
        m.set_faults(mock_flashblade::Faults {
            ambiguous_rate: 0.3,
            ..Default::default()
        });
    }
    for i in 0..12 {
        let name = format!("pvc-r{i}");
        let mut ids = Vec::new();
        for _attempt in 0..20 {
            match c.create_volume(auto(&name, GIB / 4, None)).await {
                Ok(r) => {
                    ids.push(r.into_inner().volume.unwrap().volume_id);
                    if ids.len() == 2 {
                        break;
                    }
                }
                Err(e) => assert!(
                    matches!(
                        e.code(),
                        Code::Unavailable | Code::DeadlineExceeded | Code::Internal
                    ),
                    "{e:?}"
                ),
            }
        }
        assert_eq!(ids.len(), 2, "{name} never succeeded twice");
        assert_eq!(ids[0], ids[1], "{name}: a retry returned another volume");
        assert_eq!(env.holders(&format!("k8s-{name}")).len(), 1, "{name}");
    }
}
