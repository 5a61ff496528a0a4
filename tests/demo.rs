//! `flashblade-csi demo` runs the whole story and succeeds.

#[test]
fn demo_runs_end_to_end() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
        .args(["demo", "--users", "6", "--latency-ms", "5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("6 users log in: 6 home file systems"), "{stdout}");
    assert!(stdout.contains("same volume"));
    assert!(stdout.contains("quota grows online to 20 GiB"));
    assert!(stdout.contains("destroyed, recoverable"));
    assert!(stdout.contains("refused (FailedPrecondition)"));
    if nix::unistd::geteuid().is_root() {
        assert!(stdout.contains("Read-only file system"), "{stdout}");
        assert!(stdout.contains("brings analysis.ipynb back"));
    }
}
