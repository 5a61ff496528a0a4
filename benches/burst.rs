//! A class logging in at once: many concurrent CreateVolume calls through the
//! driver's unix socket against mock-flashblade with injected latency.
//!
//! Run: `cargo bench --bench burst` (BENCH_VOLUMES, BENCH_CONCURRENCY change
//! the load). Prints the driver's own overhead per call (latency minus the
//! array time it waited for), throughput against the Little's-law ceiling of
//! the array-request bound, array requests per volume and logins.

use std::path::Path;
use std::time::{Duration, Instant};

use flashblade_csi::config::{Config, Mode, Settings};
use flashblade_csi::csi::{self, controller_client::ControllerClient};
use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn channel(path: &Path) -> tonic::transport::Channel {
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap()
}

struct Run {
    latencies: Vec<Duration>,
    wall: Duration,
    counters: mock_flashblade::Counters,
}

async fn run(latency_ms: u64, max_array_requests: usize, volumes: usize, concurrency: usize) -> Run {
    let mock = mock_flashblade::start(mock_flashblade::MockConfig {
        persist: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, &mock.api_token).unwrap();
    let socket = dir.path().join("csi.sock");
    let config = Config::load(&Settings {
        mode: Some(Mode::Controller),
        endpoint: Some(format!("unix://{}", socket.display())),
        array: flashblade_csi::config::ArraySettings {
            management_url: Some(mock.url.clone()),
            api_token_file: Some(token),
            ca_file: mock.ca_file.clone(),
            nfs_endpoint: Some("10.0.0.10".parse().unwrap()),
            default_export_rules: Some("10.0.0.0/16(rw,root_squash)".into()),
            ..Default::default()
        },
        timeouts: flashblade_csi::config::TimeoutSettings {
            array_request: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        },
        limits: flashblade_csi::config::LimitSettings {
            max_array_requests: Some(max_array_requests),
        },
        ..Default::default()
    })
    .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(flashblade_csi::app::run(config, async {
        let _ = stop_rx.await;
    }));
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ch = channel(&socket).await;
    // Log in before the clock starts (a real controller is long running).
    ControllerClient::new(ch.clone())
        .get_capacity(csi::GetCapacityRequest::default())
        .await
        .unwrap();
    mock.set_faults(mock_flashblade::Faults {
        latency_ms,
        ..Default::default()
    });
    mock.reset_counters();

    let queue = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (ch, queue) = (ch.clone(), queue.clone());
        set.spawn(async move {
            let mut c = ControllerClient::new(ch);
            let mut lat = Vec::new();
            loop {
                let i = queue.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= volumes {
                    break;
                }
                let req = csi::CreateVolumeRequest {
                    name: format!("pvc-{i:05}-2bc92e91-485f-4f21-83b4"),
                    capacity_range: Some(csi::CapacityRange {
                        required_bytes: 10 << 30,
                        limit_bytes: 0,
                    }),
                    volume_capabilities: vec![csi::VolumeCapability {
                        access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
                        access_mode: Some(csi::volume_capability::AccessMode { mode: 1 }),
                    }],
                    ..Default::default()
                };
                let t = Instant::now();
                c.create_volume(req).await.expect("create");
                lat.push(t.elapsed());
            }
            lat
        });
    }
    let mut latencies = Vec::new();
    while let Some(r) = set.join_next().await {
        latencies.extend(r.unwrap());
    }
    let wall = start.elapsed();
    let counters = mock.counters();
    let _ = stop_tx.send(());
    let _ = server.await;
    latencies.sort();
    Run {
        latencies,
        wall,
        counters,
    }
}

fn pct(v: &[Duration], q: f64) -> Duration {
    v[((v.len() as f64 * q) as usize).min(v.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let volumes = env("BENCH_VOLUMES", 500);
    let concurrency = env("BENCH_CONCURRENCY", 100);

    // 1. Driver overhead: the array bound out of the way, fixed array latency.
    let latency = 100u64;
    let r = run(latency, 256, volumes, concurrency).await;
    let calls = r.counters.total() as f64 / volumes as f64;
    let array_time = Duration::from_millis(latency) * calls.round() as u32;
    let overhead: Vec<Duration> = r.latencies.iter().map(|l| l.saturating_sub(array_time)).collect();
    println!(
        "burst: {volumes} CreateVolume calls, {concurrency} concurrent, array latency {latency} ms, array bound 256"
    );
    println!(
        "  per call: p50 {:.1?}  p99 {:.1?}; array calls per volume {calls:.2} (= {array_time:?} of array time)",
        pct(&r.latencies, 0.5),
        pct(&r.latencies, 0.99)
    );
    println!(
        "  driver overhead: p50 {:.2?}  p99 {:.2?}; logins {}; wall {:.2?} ({:.0} volumes/s)",
        pct(&overhead, 0.5),
        pct(&overhead, 0.99),
        r.counters.logins,
        r.wall,
        volumes as f64 / r.wall.as_secs_f64()
    );

    // 2. Throughput at the array bound (Little's law: N / L requests per second).
    let (latency, bound) = (200u64, 16usize);
    let r = run(latency, bound, volumes, concurrency).await;
    let calls = r.counters.total() as f64 / volumes as f64;
    let ceiling = bound as f64 / (latency as f64 / 1000.0) / calls;
    let rate = volumes as f64 / r.wall.as_secs_f64();
    println!(
        "burst: {volumes} CreateVolume calls, {concurrency} concurrent, array latency {latency} ms, array bound {bound}"
    );
    println!(
        "  {rate:.1} volumes/s of a {ceiling:.1}/s ceiling ({:.0} %); peak requests in flight at the array {}; wall {:.2?}; p99 {:.2?}",
        100.0 * rate / ceiling,
        r.counters.peak_in_flight,
        r.wall,
        pct(&r.latencies, 0.99)
    );
}
