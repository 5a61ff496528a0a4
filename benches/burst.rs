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
//! BENCH_AUTO_ARRAYS (3; 1 switches it off) adds the same creates with
//! `array: auto` over that many arrays (each with the same L and P).
//! BENCH_METRICS=on runs the drivers with the metrics endpoint (and its
//! space poll at the shipped 60s), scraped every second while they work;
//! `both` runs each configuration without and with it, interleaved in the
//! same rounds, so the two see the same machine load.
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
    /// Where its /metrics is served, when on.
    metrics: Option<std::net::SocketAddr>,
}

impl Driver {
    /// `max_array_requests`: None for the driver's default.
    async fn start(
        mock: &mock_flashblade::MockHandle,
        dir: &Path,
        max_array_requests: Option<usize>,
        metrics: bool,
    ) -> Driver {
        let metrics = metrics.then(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        });
        let token = dir.join("token");
        write_token(&token, &mock.api_token);
        let mut args: Vec<std::ffi::OsString> = vec!["--array-url".into(), mock.url.clone().into()];
        args.extend(["--api-token-file".into(), token.into_os_string()]);
        args.extend([
            "--ca-file".into(),
            mock.ca_file.clone().expect("mock CA").into_os_string(),
        ]);
        args.extend(["--nfs-endpoint".into(), "10.0.0.10".into()]);
        args.extend([
            "--default-export-rules".into(),
            "10.0.0.0/16(rw,root_squash)".into(),
        ]);
        if let Some(v) = max_array_requests {
            args.extend(["--max-array-requests".into(), v.to_string().into()]);
        }
        if let Some(a) = metrics {
            args.push(format!("--metrics-address={a}").into());
            args.push("--metrics-poll-interval=60s".into());
        }
        let mut d = Self::spawn(dir, args).await;
        d.metrics = metrics;
        d
    }

    /// `flashblade-csi serve --mode controller` with `args`, logging to a file.
    async fn spawn(dir: &Path, args: Vec<std::ffi::OsString>) -> Driver {
        let socket = dir.join("csi.sock");
        let log = dir.join("controller.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
            .arg("serve")
            .args(["--mode", "controller"])
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args(args)
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
        Driver {
            child,
            socket,
            log,
            metrics: None,
        }
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

fn write_token(path: &Path, token: &str) {
    std::fs::write(path, token).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
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

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    // After the command: state is field 3, utime 14 and stime 15.
    let tick = |i: usize| {
        fields
            .get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(14) + tick(15)) / 100.0
}

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

/// Requests per operation at the array, by method, resource and status.
fn breakdown(phases: &[Phase], ops: f64) -> String {
    let mut by: std::collections::BTreeMap<String, u64> = Default::default();
    for r in phases.iter().flat_map(|p| &p.counters.requests) {
        let resource = r.path.splitn(4, '/').nth(3).unwrap_or(&r.path);
        *by.entry(format!("{} {resource} {}", r.method, r.status))
            .or_default() += r.count;
    }
    by.iter()
        .map(|(k, v)| format!("{k}: {:.2}", *v as f64 / ops))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The median by wall time (the upper one of an even count).
fn median(phases: &[Phase]) -> &Phase {
    let mut v: Vec<&Phase> = phases.iter().collect();
    v.sort_by_key(|p| p.wall);
    v[v.len() / 2]
}

fn walls(phases: &[Phase]) -> String {
    phases
        .iter()
        .map(|p| format!("{:.3}", p.wall.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn sum(phases: &[Phase], f: impl Fn(&mock_flashblade::Counters) -> u64) -> u64 {
    phases.iter().map(|p| f(&p.counters)).sum()
}

/// Scrapes `address` every second until `stop` is set: (scrapes, failures,
/// bytes of the last one).
async fn scrape_loop(
    address: std::net::SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (usize, usize, usize) {
    let client = reqwest::Client::new();
    let (mut ok, mut failed, mut bytes) = (0, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        match client.get(format!("http://{address}/metrics")).send().await {
            Ok(r) if r.status().is_success() => {
                bytes = r.bytes().await.map_or(0, |b| b.len());
                ok += 1;
            }
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    (ok, failed, bytes)
}

/// One driver configuration under test.
struct Subject {
    label: String,
    /// Scrapes its /metrics while it runs (metrics on).
    scraper: Option<tokio::task::JoinHandle<(usize, usize, usize)>>,
    driver: Driver,
    channel: Channel,
    pid: String,
    idle_rss: u64,
    creates: Vec<Phase>,
    deletes: Vec<Phase>,
    cpu_creates: (f64, f64),
    cpu_deletes: (f64, f64),
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let load = Load {
        volumes: env("BENCH_VOLUMES", 1000),
        concurrency: env("BENCH_CONCURRENCY", 100),
        latency_ms: env("BENCH_LATENCY_MS", 20) as u64,
        parallel: env("BENCH_ARRAY_PARALLEL", 16),
    };
    let rounds = env("BENCH_ROUNDS", 3).max(1);
    // Driver configurations: "default" (no flag) and --max-array-requests values.
    let limits: Vec<Option<usize>> = std::env::var("BENCH_DRIVER_LIMITS")
        .unwrap_or_else(|_| "default,64".into())
        .split(',')
        .map(|v| v.trim().parse().ok())
        .collect();
    let metrics: &[bool] = match std::env::var("BENCH_METRICS").as_deref() {
        Ok("on" | "1") => &[true],
        Ok("both") => &[false, true],
        Ok("off" | "0" | "") | Err(_) => &[false],
        Ok(other) => panic!("BENCH_METRICS={other}: off, on or both"),
    };
    let configs: Vec<(Option<usize>, bool)> = limits
        .iter()
        .flat_map(|l| metrics.iter().map(move |m| (*l, *m)))
        .collect();
    // The scrapes are plain HTTP; reqwest still wants a TLS provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stop_scraping = Arc::new(std::sync::atomic::AtomicBool::new(false));
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

    // Every client logs in before any clock starts (a real controller is
    // long running and logs in at start; the script logs in once).
    let plain = Arc::new(PlainClient::login(&mock).await);
    let mut subjects = Vec::new();
    for (k, (limit, with_metrics)) in configs.iter().enumerate() {
        let sub = dir.path().join(format!("driver-{k}"));
        std::fs::create_dir_all(&sub).unwrap();
        let driver = Driver::start(&mock, &sub, *limit, *with_metrics).await;
        let channel = driver.channel().await;
        ControllerClient::new(channel.clone())
            .get_capacity(csi::GetCapacityRequest::default())
            .await
            .expect("GetCapacity");
        tokio::time::sleep(Duration::from_millis(200)).await;
        subjects.push(Subject {
            label: format!(
                "{}{}",
                match limit {
                    None => "driver (default limits)".to_string(),
                    Some(n) => format!("driver --max-array-requests {n}"),
                },
                if *with_metrics { " + metrics" } else { "" }
            ),
            scraper: driver
                .metrics
                .map(|a| tokio::spawn(scrape_loop(a, stop_scraping.clone()))),
            idle_rss: driver.status_kib("VmRSS"),
            pid: driver.child.id().expect("running").to_string(),
            driver,
            channel,
            creates: Vec::new(),
            deletes: Vec::new(),
            cpu_creates: (0.0, 0.0),
            cpu_deletes: (0.0, 0.0),
        });
    }
    mock.set_faults(array.clone());

    // Rounds of: the plain client's creates, then for each driver (taking
    // turns at going first) its creates and its deletes of those volumes;
    // fresh names every time.
    let mut plains = Vec::new();
    let mut cpu_plain = 0.0;
    let add = |acc: &mut (f64, f64), from: (f64, f64), to: (f64, f64)| {
        acc.0 += to.0 - from.0;
        acc.1 += to.1 - from.1;
    };
    for round in 0..rounds {
        let t0 = cpu_secs("self");
        let p = plain.clone();
        plains.push(
            drive(&mock, load, move |i| {
                let p = p.clone();
                async move { p.create(&format!("adm-r{round}-{i:05}-2bc92e91-485f-4f21")).await }
            })
            .await,
        );
        cpu_plain += cpu_secs("self") - t0;

        // The drivers take turns going first, so none always meets the
        // array state the others left (more file systems, soft-deleted).
        let n = subjects.len();
        for j in 0..n {
            let k = (j + round) % n;
            let s = &mut subjects[k];
            let cpu = || (cpu_secs("self"), cpu_secs(&s.pid));
            let ids: Arc<Vec<std::sync::Mutex<String>>> =
                Arc::new((0..load.volumes).map(|_| Default::default()).collect());
            let (c2, ids2) = (s.channel.clone(), ids.clone());
            let t1 = cpu();
            s.creates.push(
                drive(&mock, load, move |i| {
                    let (mut c, ids) = (ControllerClient::new(c2.clone()), ids2.clone());
                    async move {
                        let v = c
                            .create_volume(create_req(format!("pvc-d{k}-r{round}-{i:05}-2bc92e91-485f")))
                            .await
                            .map_err(|e| format!("CreateVolume {i}: {e}"))?
                            .into_inner()
                            .volume
                            .ok_or("CreateVolume: no volume")?;
                        *ids[i].lock().unwrap() = v.volume_id;
                        Ok(())
                    }
                })
                .await,
            );
            let t2 = cpu();
            add(&mut s.cpu_creates, t1, t2);
            let c3 = s.channel.clone();
            s.deletes.push(
                drive(&mock, load, move |i| {
                    let (mut c, ids) = (ControllerClient::new(c3.clone()), ids.clone());
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
                .await,
            );
            add(&mut s.cpu_deletes, t2, cpu());
        }
    }
    let destroyed = mock.with_state(|s| {
        s.file_systems
            .values()
            .filter(|f| f.destroyed && f.name.starts_with("k8s-"))
            .count()
    });
    let placement = if env("BENCH_AUTO_ARRAYS", 3) > 1 {
        Some(auto_run(load, rounds, env("BENCH_AUTO_ARRAYS", 3), dir.path(), &array).await)
    } else {
        None
    };
    let load_after = loadavg();
    stop_scraping.store(true, Ordering::Relaxed);

    // ------------------------------------------------------------ report
    let ops = (load.volumes * rounds) as f64;
    let r = rounds as f64;
    let create_bound = load.bound(1.0);
    let ratio = |p: &Phase, b: Duration| p.wall.as_secs_f64() / b.as_secs_f64();
    let peak = |v: &[Phase]| v.iter().map(|p| p.counters.peak_in_flight).max().unwrap_or(0);
    let mp = median(&plains);
    println!(
        "burst: N={} C={} L={} ms P={}; {rounds} rounds, each: plain creates, then per driver its creates and deletes",
        load.volumes, load.concurrency, load.latency_ms, load.parallel
    );
    println!("machine: {cpus} CPUs; load average {load_before} before, {load_after} after");
    println!("create lower bound ceil(N/P)*L: {}", secs(create_bound));
    println!();
    println!("| figure (median of {rounds} rounds) | value |");
    println!("| --- | --- |");
    println!(
        "| plain REST client, {} workers: create wall / ratio to bound | {} / {:.2} |",
        load.concurrency,
        secs(mp.wall),
        ratio(mp, create_bound)
    );
    println!(
        "| plain client: array requests per create; logins; peak in flight at the array; CPU s per round (this process) | {:.2}; {}; {}; {:.2} |",
        sum(&plains, |c| c.total()) as f64 / ops,
        sum(&plains, |c| c.logins),
        peak(&plains),
        cpu_plain / r
    );
    let mut errors: Vec<&String> = plains.iter().flat_map(|p| &p.errors).collect();
    let mut detail = Vec::new();
    let mut errors_scrape: Vec<String> = Vec::new();
    let mut scrapes = Vec::new();
    for s in subjects.iter_mut() {
        scrapes.push(match s.scraper.take() {
            Some(t) => Some(t.await.unwrap_or_default()),
            None => None,
        });
    }
    for (s, scraped) in subjects.iter().zip(scrapes) {
        let (mc, md) = (median(&s.creates), median(&s.deletes));
        let per_delete = sum(&s.deletes, |c| c.total()) as f64 / ops;
        let delete_bound = load.bound(per_delete);
        let per_round: Vec<String> = plains
            .iter()
            .zip(&s.creates)
            .map(|(p, c)| format!("{:.2}", c.wall.as_secs_f64() / p.wall.as_secs_f64()))
            .collect();
        let l = &s.label;
        println!(
            "| {l}: CreateVolume wall / ratio to bound | {} / {:.2} |",
            secs(mc.wall),
            ratio(mc, create_bound)
        );
        println!(
            "| {l}: create wall / plain client wall (medians; per round {}) | {:.2} |",
            per_round.join(", "),
            mc.wall.as_secs_f64() / mp.wall.as_secs_f64()
        );
        println!(
            "| {l}: array requests per create / per delete | {:.2} / {per_delete:.2} |",
            sum(&s.creates, |c| c.total()) as f64 / ops
        );
        println!(
            "| {l}: DeleteVolume wall / bound ceil(N*{per_delete:.2}/P)*L / ratio | {} / {} / {:.2} |",
            secs(md.wall),
            secs(delete_bound),
            ratio(md, delete_bound)
        );
        println!(
            "| {l}: per call p50 / p99, create; delete | {:.1?} / {:.1?}; {:.1?} / {:.1?} |",
            mc.pct(0.5),
            mc.pct(0.99),
            md.pct(0.5),
            md.pct(0.99)
        );
        println!(
            "| {l}: logins in the timed phases (creates, deletes); peak in flight at the array (creates, deletes) | {}, {}; {}, {} |",
            sum(&s.creates, |c| c.logins),
            sum(&s.deletes, |c| c.logins),
            peak(&s.creates),
            peak(&s.deletes)
        );
        println!(
            "| {l}: controller RSS idle (logged in) / peak (VmHWM, whole run) | {} / {} |",
            mib(s.idle_rss),
            mib(s.driver.status_kib("VmHWM"))
        );
        println!(
            "| {l}: CPU s per round, this process (mock + gRPC callers) / controller: creates; deletes | {:.2} / {:.2}; {:.2} / {:.2} |",
            s.cpu_creates.0 / r,
            s.cpu_creates.1 / r,
            s.cpu_deletes.0 / r,
            s.cpu_deletes.1 / r
        );
        if let Some((ok, failed, bytes)) = scraped {
            println!(
                "| {l}: /metrics scrapes during the run (every 1s): answered / failed; size of the last | {ok} / {failed}; {bytes} bytes |"
            );
            if failed > 0 {
                errors_scrape.push(format!("{l}: {failed} scrapes failed"));
            }
        }
        println!(
            "| {l}: errors (creates / deletes) | {} / {} |",
            s.creates.iter().map(|p| p.errors.len()).sum::<usize>(),
            s.deletes.iter().map(|p| p.errors.len()).sum::<usize>()
        );
        errors.extend(s.creates.iter().chain(&s.deletes).flat_map(|p| &p.errors));
        detail.push(format!(
            "{l}: walls (s) creates {}; deletes {}\n{l}: requests per create: {}\n{l}: requests per delete: {}\n{l}: log {} lines",
            walls(&s.creates),
            walls(&s.deletes),
            breakdown(&s.creates, ops),
            breakdown(&s.deletes, ops),
            std::fs::read_to_string(&s.driver.log).map_or(0, |t| t.lines().count())
        ));
    }
    if let Some(a) = &placement {
        let per_create = a.requests as f64 / ops;
        // Per array: its look-up for every create, and its share of the POSTs.
        let bound = load.bound(per_create / a.arrays as f64);
        println!(
            "| driver, array: auto over {} arrays (each L ms, P at a time): CreateVolume wall / ratio to bound ceil(N*{:.2}/P)*L | {} / {:.2} |",
            a.arrays,
            per_create / a.arrays as f64,
            secs(median(&a.creates).wall),
            ratio(median(&a.creates), bound)
        );
        println!(
            "| array: auto: array requests per create (all arrays) / volumes per array / errors | {per_create:.2} / {} / {} |",
            a.spread.join(", "),
            a.creates.iter().map(|p| p.errors.len()).sum::<usize>()
        );
        errors.extend(a.creates.iter().flat_map(|p| &p.errors));
    }
    println!(
        "| file systems soft-deleted by the drivers | {destroyed} of {} |",
        load.volumes * rounds * subjects.len()
    );
    println!();
    println!("plain: walls (s) {}", walls(&plains));
    for d in detail {
        println!("{d}");
    }
    for e in errors.iter().take(5) {
        eprintln!("error: {e}");
    }
    for e in &errors_scrape {
        eprintln!("error: {e}");
    }
    let failed = !errors.is_empty() || !errors_scrape.is_empty();
    for s in subjects {
        drop(s.channel);
        s.driver.stop().await;
    }
    if failed {
        std::process::exit(1);
    }
}

// ----------------------------------------------------------- placement run

/// The same creates with `array: auto` over several arrays.
struct AutoRun {
    arrays: usize,
    creates: Vec<Phase>,
    /// Array requests (all arrays) in the timed phases.
    requests: u64,
    spread: Vec<String>,
}

async fn auto_run(
    load: Load,
    rounds: usize,
    n: usize,
    dir: &Path,
    faults: &mock_flashblade::Faults,
) -> AutoRun {
    let sub = dir.join("auto");
    std::fs::create_dir_all(&sub).unwrap();
    let mut mocks = Vec::new();
    let mut toml = String::new();
    for i in 0..n {
        let mock = mock_flashblade::start(mock_flashblade::MockConfig {
            persist: false,
            ..Default::default()
        })
        .await
        .unwrap();
        let token = sub.join(format!("token-{i}"));
        write_token(&token, &mock.api_token);
        toml.push_str(&format!(
            "[[array]]\nname = \"fb{i}\"\nmanagement_url = \"{}\"\napi_token_file = \"{}\"\nca_file = \"{}\"\n\
             nfs_endpoint = \"10.0.{i}.10\"\ndefault_export_rules = \"10.0.0.0/16(rw,root_squash)\"\nlabels = {{ pool = \"homes\" }}\n",
            mock.url,
            token.display(),
            mock.ca_file.as_ref().expect("mock CA").display()
        ));
        mocks.push(mock);
    }
    toml.insert_str(0, "default_array = \"fb0\"\n");
    let config = sub.join("config.toml");
    std::fs::write(&config, toml).unwrap();
    let driver = Driver::spawn(&sub, vec!["--config".into(), config.into_os_string()]).await;
    let channel = driver.channel().await;
    ControllerClient::new(channel.clone())
        .get_capacity(csi::GetCapacityRequest::default())
        .await
        .expect("GetCapacity");
    for m in &mocks {
        m.set_faults(faults.clone());
    }
    let mut creates = Vec::new();
    let mut requests = 0;
    for round in 0..rounds {
        for m in &mocks[1..] {
            m.reset_counters();
        }
        let c = channel.clone();
        let mut phase = drive(&mocks[0], load, move |i| {
            let mut c = ControllerClient::new(c.clone());
            async move {
                let mut req = create_req(format!("pvc-auto-r{round}-{i:05}-2bc92e91-485f"));
                req.parameters.insert("array".into(), "auto".into());
                req.parameters.insert("arraySelector".into(), "pool=homes".into());
                c.create_volume(req)
                    .await
                    .map_err(|e| format!("CreateVolume (auto) {i}: {e}"))?;
                Ok(())
            }
        })
        .await;
        requests += phase.counters.total() + mocks[1..].iter().map(|m| m.counters().total()).sum::<u64>();
        phase.counters.peak_in_flight = 0;
        creates.push(phase);
    }
    let spread = mocks
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let k = m.with_state(|s| {
                s.file_systems
                    .values()
                    .filter(|f| f.name.starts_with("k8s-pvc-auto"))
                    .count()
            });
            format!("fb{i} {k}")
        })
        .collect();
    drop(channel);
    driver.stop().await;
    AutoRun {
        arrays: n,
        creates,
        requests,
        spread,
    }
}
