//! `flashblade-csi demo` runs the whole story and succeeds; it refuses bad
//! arguments; and it cleans up (mounts, working directory) when stopped by a
//! signal or when its reader goes away.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn demo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
}

/// Nothing is left in `tmp` (the demo's TMPDIR) and nothing under it is
/// mounted.
fn assert_clean(tmp: &Path) {
    let left: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(tmp.to_str().unwrap()),
        "mounts left under {}",
        tmp.display()
    );
}

#[test]
fn demo_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let out = demo()
        .args(["demo", "--users", "6", "--latency-ms", "5"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("6 users log in: 6 home file systems"), "{stdout}");
    assert!(stdout.contains("retries alice's volume"), "{stdout}");
    assert!(stdout.contains("quota of 10 GiB, hard limit on"), "{stdout}");
    assert!(stdout.contains("quota grows to 20 GiB"), "{stdout}");
    assert!(
        stdout.contains("home-strict (hard limit on, 10 GiB per user by default) reaches every claim"),
        "{stdout}"
    );
    assert!(
        stdout.contains("gets 15 GiB instead of the class's 10"),
        "{stdout}"
    );
    assert!(
        stdout.contains("recover k8s-pvc-claim-alice --claim jhub/claim-alice"),
        "{stdout}"
    );
    assert!(!stdout.contains("ERROR"), "{stdout}");
    assert!(stdout.contains("destroyed, recoverable"));
    assert!(stdout.contains("refused (FailedPrecondition)"));
    assert!(stdout.contains("next: deploy/README.md"), "{stdout}");
    if nix::unistd::geteuid().is_root() {
        assert!(stdout.contains("Read-only file system"), "{stdout}");
        assert!(stdout.contains("analysis.ipynb is back"), "{stdout}");
        assert!(
            stdout.contains("cp ~/.snapshot/"),
            "self-service restore: {stdout}"
        );
        assert!(
            stdout.contains("version v1 of the datasets next to the live data"),
            "{stdout}"
        );
        assert!(stdout.contains("GiB used of"), "stats figures: {stdout}");
        // A real refusal from the kernel (the simulator on btrfs), not a claim.
        assert!(
            stdout.contains("the next write fails: Disk quota exceeded (os error 122)"),
            "{stdout}"
        );
        assert!(!stdout.contains("skipped"), "{stdout}");
        assert!(
            stdout.contains("analysis.ipynb is there, as she left it"),
            "{stdout}"
        );
    } else {
        assert!(
            stdout.contains("- skipped: the snapshot, the accident and the restore"),
            "{stdout}"
        );
        assert!(
            stdout.contains("- skipped: alice's pod mounting her recovered home"),
            "{stdout}"
        );
    }
    assert_clean(tmp.path());
}

/// As a user who may not mount: every skipped step is named with its reason
/// and the working directory (with the simulator's read-only snapshot
/// views in it) is still removed. Run by root through setpriv(1).
#[test]
fn demo_without_root_names_what_it_skipped_and_cleans_up() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run the demo as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_flashblade-csi"))
        .args(["demo", "--users", "2", "--latency-ms", "1"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("- skipped: a write past the hard quota failing (EDQUOT)"),
        "{stdout}"
    );
    assert!(stdout.contains("skipped: 8 steps"), "{stdout}");
    assert!(stderr.is_empty(), "{stderr}");
    assert_clean(tmp.path());
}

#[test]
fn bad_arguments_are_refused_before_anything_runs() {
    for bad in [["--users", "0"], ["--users", "1"], ["--latency-ms", "20000"]] {
        let out = demo().arg("demo").args(bad).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(bad[0]), "{bad:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{bad:?} printed a story");
    }
}

/// Starts the demo with many users and a slow array (so it is mid-story for
/// a while), waits for the line `after`, then hands over the child.
fn start_slow(tmp: &Path) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut child = demo()
        .args(["demo", "--users", "400", "--latency-ms", "200"])
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // The driver is up: from here on the story is running.
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "demo ended early");
        if line.starts_with("driver:") {
            break;
        }
    }
    (child, reader)
}

fn wait(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "the demo did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_stops_the_demo_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, _reader) = start_slow(tmp.path());
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let sent = Instant::now();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = wait(&mut child);
    assert!(
        sent.elapsed() < Duration::from_secs(15),
        "took {:?}",
        sent.elapsed()
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{status:?} {stderr}");
    assert!(stderr.contains("stopped by signal 2"), "{stderr}");
    assert_clean(tmp.path());
}

#[test]
fn a_closed_output_stops_the_demo_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, reader) = start_slow(tmp.path());
    // As `demo | head` does once head has its lines.
    drop(reader);
    let status = wait(&mut child);
    assert_eq!(status.code(), Some(141));
    assert_clean(tmp.path());
}
