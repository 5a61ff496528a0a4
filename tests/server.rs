//! Socket handling and graceful shutdown, in-process and through the binary.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashblade_csi::csi::{self, identity_client::IdentityClient};
use flashblade_csi::identity::{IdentityService, Readiness};
use flashblade_csi::server::{self, ServerError, Services};

#[tokio::test]
async fn stale_socket_is_replaced_and_permissions_are_set() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("csi.sock");
    // A socket file nobody listens on, as a crashed process leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listener = server::bind_socket(&path, 0o660).expect("stale socket replaced");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    drop(listener);
}

#[tokio::test]
async fn live_socket_is_not_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("csi.sock");
    let _live = server::bind_socket(&path, 0o600).unwrap();
    match server::bind_socket(&path, 0o600) {
        Err(ServerError::SocketInUse { .. }) => {}
        other => panic!("expected SocketInUse, got {:?}", other.map(|_| ())),
    }
    assert!(path.exists(), "the live socket must stay");
}

#[tokio::test]
async fn regular_file_at_socket_path_is_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("csi.sock");
    std::fs::write(&path, "important").unwrap();
    assert!(matches!(
        server::bind_socket(&path, 0o600),
        Err(ServerError::NotASocket { .. })
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "important");
}

/// Readiness that takes a while, to have an RPC in flight during shutdown.
struct Slow(Duration);

#[tonic::async_trait]
impl Readiness for Slow {
    async fn ready(&self) -> bool {
        tokio::time::sleep(self.0).await;
        true
    }
}

async fn start_slow(
    dir: &std::path::Path,
    delay: Duration,
    grace: Duration,
) -> (
    std::path::PathBuf,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ServerError>>,
) {
    let path = dir.join("csi.sock");
    let listener = server::bind_socket(&path, 0o600).unwrap();
    let services = Services {
        identity: IdentityService::new("flashblade.csi.dev".into(), Arc::new(Slow(delay))),
        controller: None,
        node: None,
        metrics: Default::default(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let p = path.clone();
    let task = tokio::spawn(server::serve(
        listener,
        p,
        services,
        async {
            let _ = rx.await;
        },
        grace,
    ));
    common::wait_for_socket(&path).await;
    (path, tx, task)
}

#[tokio::test]
async fn shutdown_lets_in_flight_rpc_finish_and_removes_socket() {
    let dir = tempfile::tempdir().unwrap();
    let (path, stop, task) =
        start_slow(dir.path(), Duration::from_millis(800), Duration::from_secs(10)).await;
    let mut client = IdentityClient::new(common::connect(&path).await);
    let in_flight = tokio::spawn(async move { client.probe(csi::ProbeRequest {}).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(()).unwrap();

    let probe = in_flight.await.unwrap().expect("in-flight RPC completes");
    assert_eq!(probe.into_inner().ready, Some(true));
    task.await.unwrap().unwrap();
    assert!(!path.exists(), "socket removed on shutdown");
    // Nothing accepts connections any more.
    assert!(std::os::unix::net::UnixStream::connect(&path).is_err());
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (path, stop, task) =
        start_slow(dir.path(), Duration::from_secs(60), Duration::from_millis(300)).await;
    let mut client = IdentityClient::new(common::connect(&path).await);
    let in_flight = tokio::spawn(async move { client.probe(csi::ProbeRequest {}).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown waited {:?}",
        started.elapsed()
    );
    assert!(!path.exists());
    // serve() has returned; in the binary the process exits here, which ends
    // the connection that still waits on the slow RPC.
    in_flight.abort();
}

#[tokio::test]
async fn binary_serves_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("csi.sock");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
        .args(["serve", "--mode", "node", "--node-id", "node-1", "--endpoint"])
        .arg(format!("unix://{}", socket.display()))
        .args(["--log-format", "json"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for_socket(&socket).await;
    let info = IdentityClient::new(common::connect(&socket).await)
        .get_plugin_info(csi::GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "flashblade.csi.dev");

    let pid = nix::unistd::Pid::from_raw(child.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(out.status.success(), "exit status {:?}", out.status);
    assert!(!socket.exists());
    let log = String::from_utf8_lossy(&out.stderr);
    // JSON logs: every line parses.
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(log.contains("SIGTERM"), "{log}");
}

#[test]
fn binary_rejects_invalid_config_naming_the_setting() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
        .args([
            "serve",
            "--mode",
            "node",
            "--endpoint",
            "relative.sock",
            "--node-id",
            "n",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid configuration: endpoint"), "{err}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
        .args(["serve", "--mode", "controller", "--endpoint", "/tmp/never.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("array-url"));
}

#[test]
fn help_is_available_on_every_subcommand() {
    for args in [vec!["--help"], vec!["serve", "--help"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
}
