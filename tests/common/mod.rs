//! Shared helpers for the integration tests: dial the driver's unix socket,
//! start the driver in-process, wait for sockets.
#![allow(dead_code, unused_imports, unused_macros)]

pub mod exposition;
pub mod fake_kube;
pub mod node;

use std::path::{Path, PathBuf};
use std::time::Duration;

use flashblade_csi::config::{Config, Mode, Settings};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// A gRPC channel over the unix socket at `path`.
pub async fn connect(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("connect to driver socket")
}

/// Waits until something listens on `path`.
pub async fn wait_for_socket(path: &Path) {
    for _ in 0..400 {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("socket {} never came up", path.display());
}

/// A running in-process driver; dropping it stops the server.
pub struct Driver {
    pub socket: PathBuf,
    pub config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Driver {
    /// Starts the driver with `args` (endpoint filled in) in `dir`.
    pub async fn start(dir: &Path, mut args: Settings) -> Driver {
        let socket = dir.join("csi.sock");
        args.endpoint = Some(format!("unix://{}", socket.display()));
        let config = Config::load(&args).expect("valid test config");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let run_config = config.clone();
        let task = tokio::spawn(async move {
            flashblade_csi::app::run(run_config, async {
                let _ = rx.await;
            })
            .await
            .expect("driver run");
        });
        wait_for_socket(&socket).await;
        Driver {
            socket,
            config,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn channel(&self) -> Channel {
        connect(&self.socket).await
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn node_args(node_id: &str) -> Settings {
    Settings {
        mode: Some(Mode::Node),
        node_id: Some(node_id.into()),
        ..Default::default()
    }
}

/// A mock array plus a controller driver talking to it over verified TLS.
pub struct ControllerEnv {
    pub mock: mock_flashblade::MockHandle,
    pub driver: Driver,
    pub dir: tempfile::TempDir,
    pub token_file: PathBuf,
}

pub struct ControllerOpts {
    pub ca: bool,
    pub default_export_rules: Option<&'static str>,
    pub array_timeout: Option<&'static str>,
    pub mode: Mode,
    /// The metrics endpoint's address and the poll interval.
    pub metrics: Option<(std::net::SocketAddr, &'static str)>,
    /// Where the controller reads PersistentVolumes (a fake API server).
    pub kubeconfig: Option<PathBuf>,
    /// `--export-reconcile-interval` (default: the driver's).
    pub reconcile: Option<&'static str>,
}

impl Default for ControllerOpts {
    fn default() -> Self {
        Self {
            ca: true,
            default_export_rules: Some("10.0.0.0/16(rw,root_squash)"),
            array_timeout: None,
            mode: Mode::Controller,
            metrics: None,
            kubeconfig: None,
            reconcile: None,
        }
    }
}

pub async fn controller_env(opts: ControllerOpts) -> ControllerEnv {
    let mock = mock_flashblade::start(mock_flashblade::MockConfig::default())
        .await
        .expect("mock starts");
    controller_env_for(mock, opts).await
}

pub async fn controller_env_for(mock: mock_flashblade::MockHandle, opts: ControllerOpts) -> ControllerEnv {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, &mock.api_token).unwrap();
    let args = Settings {
        mode: Some(opts.mode),
        node_id: Some("node-1".into()),
        kubeconfig: opts.kubeconfig,
        array: flashblade_csi::config::ArraySettings {
            name: Some("fb01".parse().unwrap()),
            management_url: Some(mock.url.clone()),
            api_token_file: Some(token_file.clone()),
            ca_file: if opts.ca { mock.ca_file.clone() } else { None },
            nfs_endpoint: Some("127.0.0.1".parse().unwrap()),
            default_export_rules: opts.default_export_rules.map(str::to_string),
            ..Default::default()
        },
        timeouts: flashblade_csi::config::TimeoutSettings {
            array_request: opts.array_timeout.map(|t| humantime::parse_duration(t).unwrap()),
            ..Default::default()
        },
        metrics_address: opts.metrics.map(|m| m.0),
        metrics_poll_interval: opts.metrics.map(|m| humantime::parse_duration(m.1).unwrap()),
        export_reconcile_interval: opts.reconcile.map(|r| humantime::parse_duration(r).unwrap()),
        ..Default::default()
    };
    let driver = Driver::start(dir.path(), args).await;
    ControllerEnv {
        mock,
        driver,
        dir,
        token_file,
    }
}

pub fn mount_cap(mode: i32) -> flashblade_csi::csi::VolumeCapability {
    use flashblade_csi::csi::volume_capability::{AccessMode, AccessType, MountVolume};
    flashblade_csi::csi::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume::default())),
        access_mode: Some(AccessMode { mode }),
    }
}

pub fn create_req(name: &str, bytes: i64) -> flashblade_csi::csi::CreateVolumeRequest {
    flashblade_csi::csi::CreateVolumeRequest {
        name: name.into(),
        capacity_range: Some(flashblade_csi::csi::CapacityRange {
            required_bytes: bytes,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![mount_cap(5)],
        ..Default::default()
    }
}

/// Direct array access for test setup, as a storage admin would do it
/// (bypassing the driver).
pub struct ArrayAdmin {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl ArrayAdmin {
    pub async fn new(mock: &mock_flashblade::MockHandle) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut mock.ca_pem.as_deref().unwrap().as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let r = client
            .post(format!("{}/api/login", mock.url))
            .header("api-token", &mock.api_token)
            .send()
            .await
            .unwrap();
        let token = r.headers()["x-auth-token"].to_str().unwrap().to_string();
        Self {
            client,
            url: mock.url.clone(),
            token,
        }
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: serde_json::Value) {
        let r = self
            .client
            .request(method, format!("{}/api/2.17/{path}", self.url))
            .header("x-auth-token", &self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
}

/// PATCH on the array as an admin would (bypassing the driver).
pub async fn array_patch(mock: &mock_flashblade::MockHandle, path: &str, body: serde_json::Value) {
    ArrayAdmin::new(mock)
        .await
        .send(reqwest::Method::PATCH, path, body)
        .await;
}
