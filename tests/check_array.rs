//! `check-array` against mock-flashblade: every check passes against the
//! simulator as it is; started to behave differently (another root mode,
//! other error texts, no keyset paging, no rename with destroy, full-name
//! snapshot entries, a read-only role) the matching check says DIFFERS; and
//! in every case, Ctrl-C half-way included, nothing is left on the array.
//!
//! No kernel NFS client here: the content checks run through the
//! development `--local-export-root` path (the simulator's directory for the
//! file system); the NFS-only ones (mounts, root squashing) are SKIPPED
//! here and their judging is unit-tested in `src/admin/check/mount.rs`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flashblade_csi::admin::check::{CheckArgs, MountMode};
use flashblade_csi::admin::{self, Job, Output, exit};
use flashblade_csi::config::{ArraySettings, Config, Settings};
use mock_flashblade::{FsRoot, MockConfig, MockHandle, Quirks};
use serde_json::Value;

struct Env {
    mock: MockHandle,
    dir: tempfile::TempDir,
    token_file: PathBuf,
}

async fn env(config: MockConfig) -> Env {
    let mock = mock_flashblade::start(config).await.expect("mock starts");
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, &mock.api_token).unwrap();
    Env {
        mock,
        dir,
        token_file,
    }
}

async fn quirky(quirks: Quirks) -> Env {
    env(MockConfig {
        quirks,
        ..Default::default()
    })
    .await
}

impl Env {
    fn config(&self) -> Config {
        let s = Settings {
            array: ArraySettings {
                name: Some("fb01".parse().unwrap()),
                management_url: Some(self.mock.url.clone()),
                api_token_file: Some(self.token_file.clone()),
                ca_file: self.mock.ca_file.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        Config::load_for_admin(&s).expect("admin config")
    }

    async fn run(&self, output: Output, mount: MountMode) -> admin::Report {
        let args = CheckArgs { array: None, mount };
        admin::run(self.config(), output, Job::CheckArray(args))
            .await
            .expect("check-array runs")
    }

    /// The JSON report and the exit code, reading the simulator's
    /// directories as the file systems.
    async fn json(&self) -> (Value, i32) {
        let r = self
            .run(Output::Json, MountMode::Local(self.mock.data_dir.clone()))
            .await;
        (serde_json::from_str(&r.stdout).expect("JSON"), r.code)
    }

    /// Nothing of the check's is left: the array is as empty as it started.
    fn assert_clean(&self) {
        self.mock.with_state(|st| {
            assert!(st.file_systems.is_empty(), "left: {:?}", st.file_systems.keys());
            assert!(st.snapshots.is_empty(), "left: {:?}", st.snapshots.keys());
        });
        let left: Vec<_> = std::fs::read_dir(&self.mock.data_dir).unwrap().collect();
        assert!(left.is_empty(), "data left: {left:?}");
    }
}

fn verdict<'a>(report: &'a Value, id: &str) -> &'a str {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))["verdict"]
        .as_str()
        .unwrap()
}

/// The checks that only a real NFS mount (or a busy array) can answer.
const NFS_ONLY: &[&str] = &[
    "error-busy",
    "root-squash",
    "nfs-v3-mount",
    "nfs-v41-mount",
    "rules-empty-mount",
];

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[tokio::test]
async fn every_check_passes_against_the_simulator_and_nothing_is_left() {
    let e = env(MockConfig::default()).await;
    let (r, code) = e.json().await;
    for c in r["checks"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let want = if NFS_ONLY.contains(&id) {
            "SKIPPED"
        } else if id == "root-owner-mode" && !is_root() {
            // The simulator gives the root its owner only as root.
            continue;
        } else {
            "PASS"
        };
        assert_eq!(c["verdict"], want, "{c:#}");
        assert!(c["code"].as_array().is_some_and(|a| !a.is_empty()), "{c:#}");
    }
    assert_eq!(r["checks"].as_array().unwrap().len(), 20, "{r:#}");
    assert_eq!(r["facts"]["array_name"], "mock-fb01");
    assert_eq!(r["facts"]["rest_version"], "2.17");
    assert_eq!(r["facts"]["user"], "pureuser");
    assert_eq!(r["facts"]["role"], "array_admin");
    assert_eq!(r["interrupted"], false);
    assert!(r["cleanup"]["left_behind"].as_array().unwrap().is_empty());
    let removed = r["cleanup"]["removed"].as_array().unwrap();
    assert_eq!(removed.len(), 2, "a file system and a snapshot: {removed:?}");
    if is_root() {
        assert_eq!(code, exit::OK);
    }
    e.assert_clean();

    // The table: one line per check, then the summary and the cleanup.
    let t = e
        .run(Output::Table, MountMode::Local(e.mock.data_dir.clone()))
        .await;
    println!("{}", t.stdout);
    assert!(t.stdout.contains("keyset-paging"), "{}", t.stdout);
    assert!(t.stdout.contains("nothing left on the array"), "{}", t.stdout);
    e.assert_clean();
}

#[tokio::test]
async fn without_mount_the_content_checks_say_why_they_are_skipped() {
    let e = env(MockConfig::default()).await;
    let r = e.run(Output::Json, MountMode::None).await;
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    for id in [
        "root-owner-mode",
        "snapshot-entry",
        "mount-below-snapshot",
        "root-squash",
    ] {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap();
        assert_eq!(c["verdict"], "SKIPPED");
        assert!(c["why"].as_str().unwrap().contains("--mount"), "{c:#}");
    }
    assert_eq!(r.code, exit::OK);
    e.assert_clean();
}

#[tokio::test]
async fn another_root_mode_differs() {
    let e = env(MockConfig {
        fs_root: FsRoot {
            uid: 0,
            gid: 0,
            mode: 0o777,
        },
        ..Default::default()
    })
    .await;
    let (r, code) = e.json().await;
    assert_eq!(verdict(&r, "root-owner-mode"), "DIFFERS", "{r:#}");
    assert_eq!(code, exit::DIFFERS);
    e.assert_clean();
}

#[tokio::test]
async fn other_error_texts_differ() {
    let e = quirky(Quirks {
        other_error_texts: true,
        ..Default::default()
    })
    .await;
    let (r, code) = e.json().await;
    assert_eq!(verdict(&r, "error-does-not-exist"), "DIFFERS", "{r:#}");
    assert_eq!(verdict(&r, "error-already-exists"), "DIFFERS", "{r:#}");
    assert_eq!(verdict(&r, "keyset-paging"), "PASS");
    assert_eq!(code, exit::DIFFERS);
    e.assert_clean();
}

#[tokio::test]
async fn no_keyset_paging_differs() {
    let e = quirky(Quirks {
        no_keyset_paging: true,
        ..Default::default()
    })
    .await;
    let (r, code) = e.json().await;
    assert_eq!(verdict(&r, "keyset-paging"), "DIFFERS", "{r:#}");
    assert_eq!(verdict(&r, "filter-by-id"), "PASS");
    assert_eq!(code, exit::DIFFERS);
    e.assert_clean();
}

#[tokio::test]
async fn no_rename_with_destroy_differs_and_the_cleanup_still_removes_it() {
    let e = quirky(Quirks {
        no_rename_with_destroy: true,
        ..Default::default()
    })
    .await;
    let (r, code) = e.json().await;
    assert_eq!(verdict(&r, "rename-and-destroy"), "DIFFERS", "{r:#}");
    assert_eq!(verdict(&r, "rename"), "PASS");
    assert_eq!(code, exit::DIFFERS);
    e.assert_clean();
}

#[tokio::test]
async fn full_name_snapshot_entries_differ() {
    let e = quirky(Quirks {
        snapshot_entry_full_name: true,
        ..Default::default()
    })
    .await;
    let (r, code) = e.json().await;
    assert_eq!(verdict(&r, "snapshot-entry"), "DIFFERS", "{r:#}");
    // What the array does show can still be looked below.
    assert_eq!(verdict(&r, "mount-below-snapshot"), "PASS", "{r:#}");
    assert_eq!(code, exit::DIFFERS);
    e.assert_clean();
}

#[tokio::test]
async fn a_read_only_role_differs() {
    let e = quirky(Quirks {
        token_role: Some("readonly".into()),
        ..Default::default()
    })
    .await;
    let (r, _) = e.json().await;
    assert_eq!(verdict(&r, "token-role"), "DIFFERS", "{r:#}");
    assert_eq!(r["facts"]["role"], "readonly");
    e.assert_clean();
}

fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
}

fn cli_args(e: &Env) -> Vec<String> {
    vec![
        "check-array".into(),
        "--array-url".into(),
        e.mock.url.clone(),
        "--api-token-file".into(),
        e.token_file.display().to_string(),
        "--ca-file".into(),
        e.mock.ca_file.as_ref().unwrap().display().to_string(),
    ]
}

#[tokio::test]
async fn ctrl_c_half_way_leaves_nothing_behind() {
    // Slow enough that the run is surely half-way when the signal comes.
    let e = env(MockConfig {
        faults: mock_flashblade::Faults {
            latency_ms: 150,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut args = cli_args(&e);
    args.extend(["--output".into(), "json".into()]);
    let child = binary()
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until its file system exists, then interrupt it.
    let start = Instant::now();
    while e.mock.with_state(|st| st.file_systems.is_empty()) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the check never created its file system"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(exit::INTERRUPTED), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(r["interrupted"], true);
    assert!(
        r["checks"].as_array().unwrap().len() < 20,
        "it stopped half-way: {r:#}"
    );
    assert!(
        r["cleanup"]["left_behind"].as_array().unwrap().is_empty(),
        "{r:#}"
    );
    e.assert_clean();
}

#[tokio::test]
async fn the_command_line_runs_it_and_refuses_mount_without_a_data_address() {
    let e = env(MockConfig::default()).await;
    let mut args = cli_args(&e);
    args.extend([
        "--local-export-root".into(),
        e.mock.data_dir.display().to_string(),
    ]);
    let a = args.clone();
    let out = tokio::task::spawn_blocking(move || binary().args(&a).output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("snapshot-entry") && stdout.contains("PASS"),
        "{stdout}"
    );
    e.assert_clean();

    let mut a = cli_args(&e);
    a.push("--mount".into());
    let out = tokio::task::spawn_blocking(move || binary().args(&a).output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(exit::USAGE));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--mount needs"), "{stderr}");
    e.assert_clean();
}

/// The controller's log at start against `mock`, up to the wording probe.
async fn controller_start_log(e: &Env) -> String {
    let socket = e.dir.path().join("csi.sock");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
        .args(["serve", "--mode", "controller", "--array-name", "fb01"])
        .args(["--array-url", &e.mock.url])
        .arg("--api-token-file")
        .arg(&e.token_file)
        .arg("--ca-file")
        .arg(e.mock.ca_file.as_ref().unwrap())
        .args(["--nfs-endpoint", "10.0.0.10"])
        .args(["--default-export-rules", "10.0.0.0/16(rw)"])
        .arg(format!("--endpoint=unix://{}", socket.display()))
        .args(["--log-filter", "info"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let start = Instant::now();
    while e.mock.counters().count("GET", "file-systems") < 2 || e.mock.counters().count("GET", "arrays") == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the controller never looked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn the_controller_warns_at_start_where_the_array_differs() {
    const WARNING: &str = "does not read as \"does not exist\"";
    const KEYSET: &str = "refuses name>";
    let plain = env(MockConfig::default()).await;
    let log = controller_start_log(&plain).await;
    assert!(log.contains("logged in to array"), "{log}");
    assert!(!log.contains(WARNING) && !log.contains(KEYSET), "{log}");

    let no_keyset = quirky(Quirks {
        no_keyset_paging: true,
        ..Default::default()
    })
    .await;
    let log = controller_start_log(&no_keyset).await;
    assert!(log.contains(KEYSET), "{log}");

    let other = quirky(Quirks {
        other_error_texts: true,
        ..Default::default()
    })
    .await;
    let log = controller_start_log(&other).await;
    assert!(log.contains(WARNING), "{log}");
    assert!(
        log.contains("No such object."),
        "the array's own words are logged: {log}"
    );
}

#[tokio::test]
async fn a_failure_half_way_stops_the_checks_and_still_removes_everything() {
    let e = env(MockConfig::default()).await;
    // The snapshot cannot be made: the run stops after the file system.
    e.mock.push_fault(mock_flashblade::ScriptedFault {
        method: Some("POST".into()),
        path: Some("file-system-snapshots".into()),
        kind: mock_flashblade::FaultKind::Unavailable,
        times: 100,
    });
    let (r, code) = e.json().await;
    assert_eq!(code, exit::FAILED, "{r:#}");
    assert!(r["error"].as_str().unwrap().contains("unavailable"), "{r:#}");
    assert_eq!(verdict(&r, "create-file-system"), "PASS");
    assert!(
        r["cleanup"]["left_behind"].as_array().unwrap().is_empty(),
        "{r:#}"
    );
    e.assert_clean();
}

#[tokio::test]
async fn a_refused_token_fails_before_anything_is_made() {
    let e = env(MockConfig::default()).await;
    std::fs::write(&e.token_file, "T-00000000-0000-0000-0000-000000000000").unwrap();
    let (r, code) = e.json().await;
    assert_eq!(code, exit::FAILED, "{r:#}");
    assert!(
        r["error"].as_str().unwrap().contains("API token was refused"),
        "{r:#}"
    );
    assert!(r["checks"].as_array().unwrap().is_empty(), "{r:#}");
    assert!(r["cleanup"]["removed"].as_array().unwrap().is_empty());
    e.assert_clean();
    assert_eq!(
        e.mock.counters().count("GET", "file-systems"),
        0,
        "it listed nothing"
    );
}
