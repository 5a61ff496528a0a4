//! A class logging in at once: N CreateVolume calls from C concurrent callers,
//! then N DeleteVolume calls, through the driver's unix socket, against
//! mock-flashblade answering each request after L ms with at most P requests
//! served at a time. The same N creates are also sent by a plain REST client
//! (the "admin script" baseline: log in, then C workers POSTing straight at
//! the same mock), so the driver's cost is measured against both the array's
//! lower bound, ceil(N·k/P)·L for k requests per operation, and what the
//! simplest possible client achieves on the same machine in the same run.
//!
//! The driver runs as a child process (the release `flashblade-csi serve
//! --mode controller`, default limits), so its peak RSS (VmHWM) is its own.
//! The mock and both load generators share this process.
//!
//! Run: `cargo bench --bench burst`. BENCH_VOLUMES (1000), BENCH_CONCURRENCY
//! (100), BENCH_LATENCY_MS (20) and BENCH_ARRAY_PARALLEL (16) change the load.
//! Exits non-zero when any call failed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flashblade_csi::csi::{self, controller_client::ControllerClient};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint, Uri};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy)]
struct Load {
    volumes: usize,
    concurrency: usize,
    latency_ms: u64,
    parallel: usize,
}

impl Load {
    /// The array's lower bound for `volumes` operations of `k` requests each.
    fn bound(&self, k: f64) -> Duration {
        let requests = (self.volumes as f64 * k).round() as u64;
        Duration::from_millis(requests.div_ceil(self.parallel as u64) * self.latency_ms)
    }
}

/// The outcome of one timed phase.
struct Phase {
    wall: Duration,
    latencies: Vec<Duration>,
    errors: Vec<String>,
    counters: mock_flashblade::Counters,
}

impl Phase {
    fn pct(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        self.latencies[((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1)]
    }
}

/// Runs `op(i)` for i in 0..n from `concurrency` workers pulling from one
/// queue; times the whole and each call.
async fn drive<F, Fut>(mock: &mock_flashblade::MockHandle, load: Load, op: F) -> Phase
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    mock.reset_counters();
    let queue = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..load.concurrency {
        let (queue, op) = (queue.clone(), op.clone());
        set.spawn(async move {
            let (mut lat, mut err) = (Vec::new(), Vec::new());
            loop {
                let i = queue.fetch_add(1, Ordering::SeqCst);
                if i >= load.volumes {
                    break;
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(()) => lat.push(t.elapsed()),
                    Err(e) => err.push(e),
                }
            }
            (lat, err)
        });
    }
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        let (l, e) = r.expect("worker");
        latencies.extend(l);
        errors.extend(e);
    }
    let wall = start.elapsed();
    latencies.sort();
    Phase {
        wall,
        latencies,
        errors,
        counters: mock.counters(),
    }
}

// ------------------------------------------------------------ plain client

/// The "admin script": api_version, one login, then plain POSTs with the
/// body the driver sends for a default StorageClass.
struct PlainClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl PlainClient {
    async fn login(mock: &mock_flashblade::MockHandle) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(mock.ca_file.as_ref().expect("mock CA")).unwrap();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap();
        let versions: Value = http
            .get(format!("{}/api/api_version", mock.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let minor = versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str()?.strip_prefix("2.")?.parse::<u32>().ok())
            .max()
            .unwrap();
        let resp = http
            .post(format!("{}/api/login", mock.url))
            .header("api-token", &mock.api_token)
            .send()
            .await
            .unwrap();
        let token = resp.headers()["x-auth-token"].to_str().unwrap().to_string();
        PlainClient {
            http,
            base: format!("{}/api/2.{minor}", mock.url),
            token,
        }
    }

    async fn create(&self, name: &str) -> Result<(), String> {
        let body = json!({
            "provisioned": 10i64 << 30,
            "hard_limit_enabled": true,
            "snapshot_directory_enabled": true,
            "nfs": {"v3_enabled": true, "v4_1_enabled": true, "rules": "10.0.0.0/16(rw,root_squash)"},
            "smb": {"enabled": false},
            "http": {"enabled": false},
        });
        let resp = self
            .http
            .post(format!("{}/file-systems", self.base))
            .query(&[("names", name)])
            .header("x-auth-token", &self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let _ = resp.bytes().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("POST {name}: HTTP {status}"))
        }
    }
}

// ------------------------------------------------------------------ driver

/// The controller as its own process.
struct Driver {
    child: tokio::process::Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Driver {
    async fn start(mock: &mock_flashblade::MockHandle, dir: &Path) -> Driver {
        let token = dir.join("token");
        std::fs::write(&token, &mock.api_token).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let socket = dir.join("csi.sock");
        let log = dir.join("controller.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
            .arg("serve")
            .args(["--mode", "controller"])
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args(["--array-url", &mock.url])
            .arg("--api-token-file")
            .arg(&token)
            .arg("--ca-file")
            .arg(mock.ca_file.as_ref().expect("mock CA"))
            .args(["--nfs-endpoint", "10.0.0.10"])
            .args(["--default-export-rules", "10.0.0.0/16(rw,root_squash)"])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start flashblade-csi serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "the controller did not open its socket; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Driver { child, socket, log }
    }

    async fn channel(&self) -> Channel {
        let path = self.socket.clone();
        Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
            }))
            .await
            .unwrap()
    }

    /// A `/proc/<pid>/status` figure in KiB (VmRSS, VmHWM).
    fn status_kib(&self, key: &str) -> u64 {
        let pid = self.child.id().expect("running");
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn create_req(name: String) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name,
        capacity_range: Some(csi::CapacityRange {
            required_bytes: 10 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![csi::VolumeCapability {
            access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
            access_mode: Some(csi::volume_capability::AccessMode { mode: 1 }),
        }],
        ..Default::default()
    }
}

// ------------------------------------------------------------------ report

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Requests per operation at the array, by method and resource.
fn breakdown(c: &mock_flashblade::Counters, n: usize) -> String {
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    for r in &c.requests {
        let resource = r.path.splitn(4, '/').nth(3).unwrap_or(&r.path);
        *by.entry(format!("{} {resource} {}", r.method, r.status))
            .or_default() += r.count;
    }
    by.iter()
        .map(|(k, v)| format!("{k}: {:.2}", *v as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let load = Load {
        volumes: env("BENCH_VOLUMES", 1000),
        concurrency: env("BENCH_CONCURRENCY", 100),
        latency_ms: env("BENCH_LATENCY_MS", 20) as u64,
        parallel: env("BENCH_ARRAY_PARALLEL", 16),
    };
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_before = loadavg();

    let mock = mock_flashblade::start(mock_flashblade::MockConfig {
        persist: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let array = mock_flashblade::Faults {
        latency_ms: load.latency_ms,
        max_concurrency: Some(load.parallel),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();

    // 1. The plain client: logged in before the clock starts.
    let plain = Arc::new(PlainClient::login(&mock).await);
    mock.set_faults(array.clone());
    let baseline = drive(&mock, load, move |i| {
        let plain = plain.clone();
        async move { plain.create(&format!("adm-pvc-{i:05}-2bc92e91-485f-4f21")).await }
    })
    .await;

    // 2. The driver, a separate process, logged in before the clock starts
    // (a real controller is long running; it logs in at start).
    mock.set_faults(Default::default());
    let driver = Driver::start(&mock, dir.path()).await;
    let ch = driver.channel().await;
    ControllerClient::new(ch.clone())
        .get_capacity(csi::GetCapacityRequest::default())
        .await
        .expect("GetCapacity");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_rss = driver.status_kib("VmRSS");
    mock.set_faults(array.clone());

    let ids: Arc<Vec<std::sync::Mutex<String>>> =
        Arc::new((0..load.volumes).map(|_| Default::default()).collect());
    let (c2, ids2) = (ch.clone(), ids.clone());
    let creates = drive(&mock, load, move |i| {
        let (mut c, ids) = (ControllerClient::new(c2.clone()), ids2.clone());
        async move {
            let v = c
                .create_volume(create_req(format!("pvc-{i:05}-2bc92e91-485f-4f21-83b4")))
                .await
                .map_err(|e| format!("CreateVolume {i}: {e}"))?
                .into_inner()
                .volume
                .ok_or("CreateVolume: no volume")?;
            *ids[i].lock().unwrap() = v.volume_id;
            Ok(())
        }
    })
    .await;
    let hwm_creates = driver.status_kib("VmHWM");

    let (c3, ids3) = (ch.clone(), ids.clone());
    let deletes = drive(&mock, load, move |i| {
        let (mut c, ids) = (ControllerClient::new(c3.clone()), ids3.clone());
        async move {
            let volume_id = ids[i].lock().unwrap().clone();
            if volume_id.is_empty() {
                return Err(format!("DeleteVolume {i}: its create failed"));
            }
            c.delete_volume(csi::DeleteVolumeRequest {
                volume_id,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("DeleteVolume {i}: {e}"))?;
            Ok(())
        }
    })
    .await;
    let hwm = driver.status_kib("VmHWM");
    let destroyed = mock.with_state(|s| {
        s.file_systems
            .values()
            .filter(|f| f.destroyed && f.name.starts_with("k8s-"))
            .count()
    });
    let load_after = loadavg();
    let log_lines = std::fs::read_to_string(&driver.log).map_or(0, |l| l.lines().count());
    drop(ch);
    driver.stop().await;

    // ------------------------------------------------------------ report
    let n = load.volumes as f64;
    let create_bound = load.bound(1.0);
    let per_create = creates.counters.total() as f64 / n;
    let per_delete = deletes.counters.total() as f64 / n;
    let delete_bound = load.bound(per_delete);
    let ratio = |p: &Phase, b: Duration| p.wall.as_secs_f64() / b.as_secs_f64();
    println!(
        "burst: N={} C={} L={} ms P={}",
        load.volumes, load.concurrency, load.latency_ms, load.parallel
    );
    println!("machine: {cpus} CPUs; load average {load_before} before, {load_after} after");
    println!("create lower bound ceil(N/P)*L: {}", secs(create_bound));
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| plain REST client, {} workers: wall / ratio to bound | {} / {:.2} |",
        load.concurrency,
        secs(baseline.wall),
        ratio(&baseline, create_bound)
    );
    println!(
        "| driver CreateVolume: wall / ratio to bound | {} / {:.2} |",
        secs(creates.wall),
        ratio(&creates, create_bound)
    );
    println!(
        "| driver create wall / plain client wall | {:.2} |",
        creates.wall.as_secs_f64() / baseline.wall.as_secs_f64()
    );
    println!(
        "| array requests per create (driver / plain) | {per_create:.2} / {:.2} |",
        baseline.counters.total() as f64 / n
    );
    println!(
        "| driver DeleteVolume: wall / lower bound for {per_delete:.2} requests each / ratio | {} / {} / {:.2} |",
        secs(deletes.wall),
        secs(delete_bound),
        ratio(&deletes, delete_bound)
    );
    println!("| array requests per delete | {per_delete:.2} |");
    println!(
        "| CreateVolume per call p50 / p99 | {:.1?} / {:.1?} |",
        creates.pct(0.5),
        creates.pct(0.99)
    );
    println!(
        "| DeleteVolume per call p50 / p99 | {:.1?} / {:.1?} |",
        deletes.pct(0.5),
        deletes.pct(0.99)
    );
    println!(
        "| logins during the timed phases (driver creates + deletes, plain) | {} + {}, {} |",
        creates.counters.logins, deletes.counters.logins, baseline.counters.logins
    );
    println!(
        "| peak requests in flight at the array (plain / creates / deletes) | {} / {} / {} |",
        baseline.counters.peak_in_flight, creates.counters.peak_in_flight, deletes.counters.peak_in_flight
    );
    println!(
        "| controller RSS idle / VmHWM after creates / VmHWM after deletes | {} / {} / {} |",
        mib(idle_rss),
        mib(hwm_creates),
        mib(hwm)
    );
    println!(
        "| errors (plain / creates / deletes) | {} / {} / {} |",
        baseline.errors.len(),
        creates.errors.len(),
        deletes.errors.len()
    );
    println!(
        "| file systems soft-deleted by the driver | {destroyed} of {} |",
        load.volumes
    );
    println!();
    println!(
        "requests per create: {}",
        breakdown(&creates.counters, load.volumes)
    );
    println!(
        "requests per delete: {}",
        breakdown(&deletes.counters, load.volumes)
    );
    println!("controller log: {log_lines} lines");
    let errors: Vec<&String> = baseline
        .errors
        .iter()
        .chain(&creates.errors)
        .chain(&deletes.errors)
        .collect();
    for e in errors.iter().take(5) {
        eprintln!("error: {e}");
    }
    if !errors.is_empty() {
        std::process::exit(1);
    }
}
