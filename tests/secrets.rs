//! Neither the API token, nor the session token, nor CSI secrets appear in
//! the driver's output, even at debug level, nor in its error messages.

mod common;

use std::time::Duration;

use flashblade_csi::csi::{self, controller_client::ControllerClient};

#[tokio::test]
async fn tokens_and_csi_secrets_never_reach_the_logs() {
    let mock = mock_flashblade::start(mock_flashblade::MockConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, &mock.api_token).unwrap();
    let socket = dir.path().join("csi.sock");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
        .args([
            "serve",
            "--mode",
            "controller",
            "--array-name",
            "fb01",
            "--array-url",
            &mock.url,
        ])
        .arg("--api-token-file")
        .arg(&token_file)
        .arg("--ca-file")
        .arg(mock.ca_file.as_ref().unwrap())
        .args([
            "--nfs-endpoint",
            "10.0.0.10",
            "--default-export-rules",
            "10.0.0.0/16(rw)",
        ])
        .arg(format!("--endpoint=unix://{}", socket.display()))
        .args(["--log-filter", "debug", "--log-format", "json"])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    common::wait_for_socket(&socket).await;
    let mut c = ControllerClient::new(common::connect(&socket).await);
    let mut req = common::create_req("pvc-secret", 1 << 30);
    req.secrets.insert("password".into(), "hunter2-csi-secret".into());
    let vol = c.create_volume(req).await.unwrap().into_inner().volume.unwrap();
    let mut del = csi::DeleteVolumeRequest {
        volume_id: vol.volume_id,
        ..Default::default()
    };
    del.secrets.insert("password".into(), "hunter2-csi-secret".into());
    c.delete_volume(del).await.unwrap();
    // A refused session forces a new login: two session tokens to look for.
    let mut sessions = mock.session_tokens();
    mock.expire_sessions();
    c.create_volume(common::create_req("pvc-secret-2", 1 << 30))
        .await
        .unwrap();
    sessions.extend(mock.session_tokens());
    assert!(sessions.len() >= 2);
    // An error path that mentions the array: still no token.
    std::fs::write(&token_file, "T-wrong-token-value").unwrap();
    mock.expire_sessions();
    let e = c
        .create_volume(common::create_req("pvc-secret-3", 1 << 30))
        .await
        .unwrap_err();
    assert!(!e.message().contains("T-wrong-token-value"));

    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(out.status.success());
    // The session was ended on the way out.
    assert!(mock.counters().logouts >= 1);
    let log = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("CreateVolume request"),
        "debug request logging is on"
    );
    assert!(log.contains("***stripped***"));
    for secret in [
        mock.api_token.as_str(),
        "hunter2-csi-secret",
        "T-wrong-token-value",
    ]
    .into_iter()
    .chain(sessions.iter().map(String::as_str))
    {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
}
