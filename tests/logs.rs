//! What an admin reads in the driver's logs: one `volume_id` per RPC span
//! (the file system name goes in its own field), no Rust syntax such as
//! `Some(…)` at the default level (debug dumps requests with Debug), and no
//! colour codes when stderr is not a terminal.

mod common;

use std::time::Duration;

use flashblade_csi::csi::{self, controller_client::ControllerClient};

#[tokio::test]
async fn json_logs_are_plain_and_carry_one_volume_id_per_span() {
    let mock = mock_flashblade::start(mock_flashblade::MockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, &mock.api_token).unwrap();
    let socket = dir.path().join("csi.sock");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
        .args(["serve", "--mode", "controller", "--array-name", "fb01"])
        .args(["--array-url", &mock.url])
        .arg("--api-token-file")
        .arg(&token_file)
        .arg("--ca-file")
        .arg(mock.ca_file.as_ref().unwrap())
        .args(["--nfs-endpoint", "10.0.0.10"])
        .args(["--default-export-rules", "10.0.0.0/16(rw)"])
        .arg(format!("--endpoint=unix://{}", socket.display()))
        .args(["--log-filter", "info", "--log-format", "json"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    common::wait_for_socket(&socket).await;
    let mut c = ControllerClient::new(common::connect(&socket).await);
    let vol = c
        .create_volume(common::create_req("pvc-logs", 1 << 30))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    c.delete_volume(csi::DeleteVolumeRequest {
        volume_id: vol.volume_id.clone(),
        ..Default::default()
    })
    .await
    .unwrap();

    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains('\u{1b}'), "colour codes in a redirected log");
    let mut span_ids = 0;
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(!line.contains("Some("), "Rust syntax in the log: {line}");
        if let Some(id) = v.pointer("/span/volume_id").and_then(|x| x.as_str()) {
            assert_eq!(id, vol.volume_id, "span volume_id is the volume id: {line}");
            span_ids += 1;
        }
        if let Some(id) = v.get("volume_id").and_then(|x| x.as_str()) {
            assert_eq!(id, vol.volume_id, "{line}");
        }
        if let Some(d) = v.get("time_remaining_ms") {
            assert!(d.is_number(), "{line}");
        }
    }
    assert!(span_ids > 0, "no span carried the volume id:\n{log}");
    assert!(
        log.contains("\"fs_name\""),
        "CreateVolume's span names its file system"
    );
}

/// At start the controller says once whether it can reach the Kubernetes
/// API and what depends on it.
#[tokio::test]
async fn the_controller_says_at_start_whether_the_kubernetes_api_answers() {
    let mock = mock_flashblade::start(mock_flashblade::MockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, &mock.api_token).unwrap();
    let kube = common::fake_kube::FakeKube::start(dir.path()).await;
    let down_dir = dir.path().join("down");
    std::fs::create_dir(&down_dir).unwrap();
    let down = common::fake_kube::write_kubeconfig(&down_dir, "http://127.0.0.1:1");
    for (kubeconfig, words) in [
        (kube.controller_kubeconfig.clone(), "Kubernetes API reachable"),
        (down, "Kubernetes API not reachable"),
    ] {
        let socket = dir.path().join("csi.sock");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
            .args(["serve", "--mode", "controller", "--array-name", "fb01"])
            .args(["--array-url", &mock.url])
            .arg("--api-token-file")
            .arg(&token_file)
            .arg("--ca-file")
            .arg(mock.ca_file.as_ref().unwrap())
            .args(["--nfs-endpoint", "10.0.0.10"])
            .args(["--default-export-rules", "10.0.0.0/16(rw)"])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg(format!("--endpoint=unix://{}", socket.display()))
            .args(["--log-filter", "info", "--log-format", "json"])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut child = child;
        let stderr = child.stderr.take().unwrap();
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
        let mut log = String::new();
        // Until the line is there (the unreachable case waits for kube's
        // connection error), then a little longer for a second one.
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut seen_at = None;
        while let Ok(Ok(Some(line))) = tokio::time::timeout_at(
            seen_at
                .map(|t: tokio::time::Instant| t + Duration::from_millis(500))
                .unwrap_or(until),
            lines.next_line(),
        )
        .await
        {
            if line.contains("\"message\":\"Kubernetes API") && seen_at.is_none() {
                seen_at = Some(tokio::time::Instant::now());
            }
            log.push_str(&line);
            log.push('\n');
        }
        let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let st = tokio::time::timeout(Duration::from_secs(20), child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(st.success(), "{st:?} {log}");
        assert_eq!(log.matches("\"message\":\"Kubernetes API").count(), 1, "{log}");
        assert!(log.contains(words), "{log}");
        let _ = std::fs::remove_file(&socket);
    }
}
