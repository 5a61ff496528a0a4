//! A university on one array: thousands of homes, a lecture logging in at
//! once, a node full of notebook pods. For each size N (BENCH_SCALE_SIZES,
//! default "1000,10000") it fills one simulated array with N home file
//! systems (through the driver, as csi-provisioner would, before the array's
//! latency is switched on), then measures with the array answering each
//! request after L ms, P at a time (BENCH_LATENCY_MS 20, BENCH_ARRAY_PARALLEL
//! 16):
//!
//! 1. the lecture: 300 CreateVolume calls named and parameterised as
//!    csi-provisioner sends them for KubeSpawner's claims (`pvc-<uid>`, the
//!    chart's fb-home parameters, `--extra-create-metadata`), from 100
//!    callers (its worker threads), against the bound ceil(300/P)·L;
//! 2. a fresh controller (with cluster access and metrics, as deployed):
//!    start to Probe ready, ListVolumes in pages of 500 (three passes) and
//!    ListSnapshots, with the array requests each costs;
//! 3. the metrics space poll: array requests and wall time, and one scrape;
//! 4. `volumes` and `orphans` against the array and a small API server
//!    holding a PV and a bound claim for every file system, paged as
//!    kube-apiserver pages;
//! 6. the controller's RSS idle and its peak.
//!
//! and once (as root: it mounts), 5: 110 notebook pods on one node, each
//! its own home (stage and publish at once), stats for all, a restart of the
//! node plugin with the mounts in place, then stats and unpublish of all.
//!
//! Run: `cargo bench --bench scale` (root for the node part; without root it
//! is skipped and said). BENCH_BIN runs another build of the driver;
//! BENCH_NODE_PODS (110; 0 skips it) sets the pods on the node. Not part of `scripts/test`: the 10,000 case takes
//! minutes. Exits non-zero when any call failed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flashblade_csi::csi::{
    self, controller_client::ControllerClient, identity_client::IdentityClient, node_client::NodeClient,
};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint, Uri};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const ARRAY: &str = "fb01";
const LECTURE: usize = 300;
const CALLERS: usize = 100;
const KUBE_TOKEN: &str = "bench";

/// The driver binary: BENCH_BIN, else this build's.
fn bin() -> PathBuf {
    std::env::var_os("BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_flashblade-csi")))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn pct(v: &[Duration], q: f64) -> Duration {
    v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

/// A claim uid as the API server makes them, deterministic per index.
fn uid(tag: &str, i: usize) -> String {
    let h = format!("{:08x}", (i as u32).wrapping_mul(2_654_435_761));
    format!(
        "{h}-{tag}-4{:03x}-8{:03x}-{:012x}",
        i % 4096,
        (i / 4096) % 4096,
        i
    )
}

/// The fb-home class's parameters as the chart renders them.
fn home_parameters() -> Vec<(String, String)> {
    let chart: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kubespawner/chart.json"
        ))
        .expect("chart fixture"),
    )
    .expect("chart fixture is JSON");
    let class = chart["storageClasses"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["metadata"]["name"] == "fb-home"))
        .expect("fb-home in the chart");
    class["parameters"]
        .as_object()
        .expect("parameters")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// One KubeSpawner claim as csi-provisioner turns it into CreateVolume.
fn home_request(params: &[(String, String)], pv: &str, user: &str) -> csi::CreateVolumeRequest {
    let mut parameters: std::collections::HashMap<String, String> = params.iter().cloned().collect();
    parameters.insert("csi.storage.k8s.io/pvc/name".into(), format!("claim-{user}"));
    parameters.insert("csi.storage.k8s.io/pvc/namespace".into(), "jhub".into());
    parameters.insert("csi.storage.k8s.io/pv/name".into(), pv.into());
    csi::CreateVolumeRequest {
        name: pv.into(),
        capacity_range: Some(csi::CapacityRange {
            required_bytes: 10 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![csi::VolumeCapability {
            access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
            access_mode: Some(csi::volume_capability::AccessMode {
                mode: csi::volume_capability::access_mode::Mode::SingleNodeWriter as i32,
            }),
        }],
        parameters,
        ..Default::default()
    }
}

async fn channel(socket: &Path) -> Channel {
    let path = socket.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap()
}

// ------------------------------------------------------------ the plugin

/// `flashblade-csi serve` as its own process, so its memory is its own.
struct Plugin {
    child: tokio::process::Child,
    socket: PathBuf,
    log: PathBuf,
    started: Instant,
}

impl Plugin {
    fn spawn(dir: &Path, name: &str, args: Vec<String>) -> Plugin {
        let socket = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&socket);
        let out = std::fs::File::create(&log).unwrap();
        let started = Instant::now();
        let child = tokio::process::Command::new(bin())
            .arg("serve")
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .args(args)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("start flashblade-csi serve");
        Plugin {
            child,
            socket,
            log,
            started,
        }
    }

    /// Waits for the socket, then for Probe to say ready: the time since
    /// the process started.
    async fn ready(&self) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(
                Instant::now() < deadline,
                "not ready within 60 s; log: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                let mut id = IdentityClient::new(channel(&self.socket).await);
                if let Ok(r) = id.probe(csi::ProbeRequest {}).await
                    && r.into_inner().ready == Some(true)
                {
                    return self.started.elapsed();
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
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

fn array_args(mock: &mock_flashblade::MockHandle, token: &Path) -> Vec<String> {
    vec![
        "--array-name".into(),
        ARRAY.into(),
        "--array-url".into(),
        mock.url.clone(),
        "--api-token-file".into(),
        token.display().to_string(),
        "--ca-file".into(),
        mock.ca_file.as_ref().expect("mock CA").display().to_string(),
        "--nfs-endpoint".into(),
        "127.0.0.1".into(),
        "--default-export-rules".into(),
        "10.0.0.0/16(rw,root_squash)".into(),
    ]
}

// ------------------------------------------------------- the API server

/// The objects a small kube-apiserver stand-in serves: PV, PVC and
/// VolumeAttachment lists in pages (`limit`, `continue`), as the real one
/// does, each item serialised once so the server's cost stays out of the
/// figures.
#[derive(Default)]
struct KubeObjects {
    pvs: Vec<Arc<str>>,
    pvcs: Vec<Arc<str>>,
    requests: usize,
}

type Kube = Arc<Mutex<KubeObjects>>;

fn page(kind: &str, api_version: &str, items: &[Arc<str>], query: &str) -> String {
    let get = |key: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let start = get("continue").unwrap_or(0).min(items.len());
    let limit = get("limit").filter(|l| *l > 0).unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(items.len());
    let meta = if end < items.len() {
        format!(
            r#"{{"resourceVersion":"1","continue":"{end}","remainingItemCount":{}}}"#,
            items.len() - end
        )
    } else {
        r#"{"resourceVersion":"1"}"#.to_string()
    };
    let mut body =
        format!(r#"{{"apiVersion":"{api_version}","kind":"{kind}List","metadata":{meta},"items":["#);
    for (i, item) in items[start..end].iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("]}");
    body
}

async fn start_kube(objects: Kube, dir: &Path) -> (PathBuf, tokio::task::JoinHandle<()>) {
    use axum::extract::{RawQuery, State};
    use axum::routing::get;
    async fn pvs(State(k): State<Kube>, RawQuery(q): RawQuery) -> String {
        let mut k = k.lock().unwrap();
        k.requests += 1;
        page("PersistentVolume", "v1", &k.pvs, q.as_deref().unwrap_or(""))
    }
    async fn pvcs(State(k): State<Kube>, RawQuery(q): RawQuery) -> String {
        let mut k = k.lock().unwrap();
        k.requests += 1;
        page("PersistentVolumeClaim", "v1", &k.pvcs, q.as_deref().unwrap_or(""))
    }
    async fn vas(State(k): State<Kube>, RawQuery(q): RawQuery) -> String {
        k.lock().unwrap().requests += 1;
        page(
            "VolumeAttachment",
            "storage.k8s.io/v1",
            &[],
            q.as_deref().unwrap_or(""),
        )
    }
    async fn version() -> String {
        json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"}).to_string()
    }
    let json_type = |body: String| ([("content-type", "application/json")], body);
    let app = axum::Router::new()
        .route(
            "/api/v1/persistentvolumes",
            get(move |s, q| async move { json_type(pvs(s, q).await) }),
        )
        .route(
            "/api/v1/persistentvolumeclaims",
            get(move |s, q| async move { json_type(pvcs(s, q).await) }),
        )
        .route(
            "/apis/storage.k8s.io/v1/volumeattachments",
            get(move |s, q| async move { json_type(vas(s, q).await) }),
        )
        .route("/version", get(move || async move { json_type(version().await) }))
        .with_state(objects);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\n\
             current-context: bench\nusers:\n- name: bench\n  user: {{token: {KUBE_TOKEN}}}\n"
        ),
    )
    .unwrap();
    (path, task)
}

/// A bound PV and its claim, as the provisioner and the binder leave them.
fn add_home(k: &Kube, pv: &str, user: &str, handle: &str) {
    let pv_json = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv, "uid": uid("pv00", pv.len())},
        "spec": {
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": "fb-home",
            "csi": {"driver": "flashblade.csi.dev", "volumeHandle": handle},
            "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "jhub", "name": format!("claim-{user}")},
        },
        "status": {"phase": "Bound"},
    });
    let pvc_json = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("claim-{user}"), "namespace": "jhub"},
        "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": pv, "storageClassName": "fb-home",
                 "resources": {"requests": {"storage": "10Gi"}}},
        "status": {"phase": "Bound"},
    });
    let mut k = k.lock().unwrap();
    k.pvs.push(pv_json.to_string().into());
    k.pvcs.push(pvc_json.to_string().into());
}

// ---------------------------------------------------------------- creates

struct Creates {
    wall: Duration,
    latencies: Vec<Duration>,
    errors: Vec<String>,
    /// (pv name, user, the volume) per create, in order.
    made: Vec<Option<csi::Volume>>,
}

/// `n` creates of homes `first..first+n` from `callers` workers.
async fn create_homes(
    ch: &Channel,
    params: &[(String, String)],
    tag: &str,
    first: usize,
    n: usize,
) -> Creates {
    let queue = Arc::new(AtomicUsize::new(0));
    let params = Arc::new(params.to_vec());
    let made: Arc<Vec<Mutex<Option<csi::Volume>>>> = Arc::new((0..n).map(|_| Mutex::new(None)).collect());
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let (queue, params, made, tag) = (queue.clone(), params.clone(), made.clone(), tag.to_string());
        let mut c = ControllerClient::new(ch.clone());
        set.spawn(async move {
            let (mut lat, mut err) = (Vec::new(), Vec::new());
            loop {
                let i = queue.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let k = first + i;
                let pv = format!("pvc-{}", uid(&tag, k));
                let t = Instant::now();
                match c
                    .create_volume(home_request(&params, &pv, &format!("u{k:05}")))
                    .await
                {
                    Ok(r) => {
                        lat.push(t.elapsed());
                        *made[i].lock().unwrap() = r.into_inner().volume;
                    }
                    Err(e) => err.push(format!("CreateVolume {pv}: {}", e.message())),
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
    let made = Arc::try_unwrap(made)
        .expect("workers done")
        .into_iter()
        .map(|m| m.into_inner().unwrap())
        .collect();
    Creates {
        wall,
        latencies,
        errors,
        made,
    }
}

fn register(k: &Kube, tag: &str, first: usize, made: &[Option<csi::Volume>]) {
    for (i, v) in made.iter().enumerate() {
        if let Some(v) = v {
            let k2 = first + i;
            add_home(
                k,
                &format!("pvc-{}", uid(tag, k2)),
                &format!("u{k2:05}"),
                &v.volume_id,
            );
        }
    }
}

// --------------------------------------------------------------- metrics

/// `array_polls_total` (successful) from a scrape, the scrape's size and time.
async fn scrape(http: &reqwest::Client, addr: &str) -> (u64, usize, Duration) {
    let t = Instant::now();
    let body = match http.get(format!("http://{addr}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let took = t.elapsed();
    let polls = body
        .lines()
        .filter(|l| {
            l.contains("array_polls_total") && l.contains("result=\"success\"") && !l.starts_with('#')
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64;
    (polls, body.len(), took)
}

/// A free loopback port for the metrics endpoint.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// One page of a ListVolumes pass: its wall time, the array requests it
/// cost and the volumes it listed.
struct ListedPage {
    wall: Duration,
    requests: u64,
    entries: usize,
}

/// A full ListVolumes pass in pages of 500, as a caller walks it.
async fn list_volumes_pass(
    c: &mut ControllerClient<Channel>,
    mock: &mock_flashblade::MockHandle,
    failures: &mut Vec<String>,
) -> Vec<ListedPage> {
    let mut pages = Vec::new();
    let mut token = String::new();
    loop {
        let before = mock.counters().total();
        let t = Instant::now();
        match c
            .list_volumes(csi::ListVolumesRequest {
                max_entries: 500,
                starting_token: token.clone(),
            })
            .await
        {
            Ok(r) => {
                let wall = t.elapsed();
                let r = r.into_inner();
                pages.push(ListedPage {
                    wall,
                    requests: mock.counters().total() - before,
                    entries: r.entries.len(),
                });
                if r.next_token.is_empty() {
                    return pages;
                }
                token = r.next_token;
            }
            Err(e) => {
                failures.push(format!("ListVolumes: {}", e.message()));
                return pages;
            }
        }
    }
}

/// What the array alone takes to answer one page of 500 as ListVolumes asks
/// for it (the first and the middle page, sorted by name): the median of 5
/// of each, from this process over its own session.
async fn array_page(mock: &mock_flashblade::MockHandle, middle: &str) -> Duration {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(mock.ca_file.as_ref().expect("mock CA")).unwrap();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
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
    let login = http
        .post(format!("{}/api/login", mock.url))
        .header("api-token", &mock.api_token)
        .send()
        .await
        .unwrap();
    let token = login.headers()["x-auth-token"].to_str().unwrap().to_string();
    let mut times = Vec::new();
    for filter in [
        "name='k8s-*'".to_string(),
        format!("(name='k8s-*') and name>'{middle}'"),
    ] {
        for _ in 0..5 {
            let t = Instant::now();
            let r = http
                .get(format!("{}/api/2.{minor}/file-systems", mock.url))
                .query(&[
                    ("filter", filter.as_str()),
                    ("limit", "501"),
                    ("sort", "name"),
                    ("destroyed", "false"),
                ])
                .header("x-auth-token", &token)
                .send()
                .await
                .unwrap();
            let _ = r.bytes().await.unwrap();
            times.push(t.elapsed());
        }
    }
    times.sort();
    times[times.len() / 2]
}

// ------------------------------------------------------------------ admin

/// Runs an admin command to the end: (wall, peak RSS in KiB, exit code,
/// bytes of output). The peak is the child's VmHWM read every few
/// milliseconds (wait4's maxrss would count the bench's own pages the
/// child had before its exec).
fn admin(args: &[String], out: &Path) -> (Duration, u64, i32, u64) {
    let t = Instant::now();
    let mut child = std::process::Command::new(bin())
        .args(args)
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start an admin command");
    let mut peak = 0;
    let status = loop {
        peak = peak.max(status_kib(child.id(), "VmHWM"));
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    (
        t.elapsed(),
        peak,
        status.code().unwrap_or(-1),
        std::fs::metadata(out).map_or(0, |m| m.len()),
    )
}

// ------------------------------------------------------------- one size

async fn run_size(n: usize, latency_ms: u64, parallel: usize, failures: &mut Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let mock = mock_flashblade::start(mock_flashblade::MockConfig {
        persist: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, &mock.api_token).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let kube: Kube = Arc::default();
    let (kubeconfig, _kube_task) = start_kube(kube.clone(), dir.path()).await;
    let params = home_parameters();
    let load_before = loadavg();

    // The homes already there: made through the driver, without latency.
    let seeder = Plugin::spawn(
        dir.path(),
        "seeder",
        [
            vec!["--mode".into(), "controller".into()],
            array_args(&mock, &token),
        ]
        .concat(),
    );
    seeder.ready().await;
    let ch = channel(&seeder.socket).await;
    let seed = create_homes(&ch, &params, "0000", 0, n).await;
    failures.extend(seed.errors.iter().take(3).cloned());
    register(&kube, "0000", 0, &seed.made);

    // 1. The lecture, at the array's pace.
    mock.set_faults(mock_flashblade::Faults {
        latency_ms,
        max_concurrency: Some(parallel),
        ..Default::default()
    });
    mock.reset_counters();
    let lecture = create_homes(&ch, &params, "1ec7", 0, LECTURE).await;
    let lecture_requests = mock.counters().total();
    failures.extend(lecture.errors.iter().take(3).cloned());
    register(&kube, "1ec7", 0, &lecture.made);
    let seeder_peak = status_kib(seeder.pid(), "VmHWM");
    drop(ch);
    seeder.stop().await;
    let total = n + LECTURE;
    let bound = Duration::from_millis((LECTURE.div_ceil(parallel) as u64) * latency_ms);

    // 2. A fresh controller as deployed: cluster access, metrics, the poll.
    mock.reset_counters();
    let addr = free_addr();
    let ctl = Plugin::spawn(
        dir.path(),
        "controller",
        [
            vec![
                "--mode".into(),
                "controller".into(),
                "--kubeconfig".into(),
                kubeconfig.display().to_string(),
                format!("--metrics-address={addr}"),
                "--metrics-poll-interval=30s".into(),
            ],
            array_args(&mock, &token),
        ]
        .concat(),
    );
    let to_ready = ctl.ready().await;
    let http = reqwest::Client::new();
    // Idle: the first space poll done and a second to settle.
    let deadline = Instant::now() + Duration::from_secs(60);
    while scrape(&http, &addr).await.0 < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = status_kib(ctl.pid(), "VmRSS");
    let ready_rss = status_kib(ctl.pid(), "VmHWM");

    // ListVolumes, pages of 500, as a caller walks it.
    let mut c = ControllerClient::new(channel(&ctl.socket).await);
    let kube_before = kube.lock().unwrap().requests;
    let t = Instant::now();
    let first = list_volumes_pass(&mut c, &mock, failures).await;
    let list_wall = t.elapsed();
    let list_kube = kube.lock().unwrap().requests - kube_before;
    let listed_rss = status_kib(ctl.pid(), "VmHWM");
    let pages = first.len();
    let listed: usize = first.iter().map(|p| p.entries).sum();
    if listed != total {
        failures.push(format!("ListVolumes listed {listed} of {total}"));
    }
    let page_requests: Vec<u64> = first.iter().map(|p| p.requests).collect();
    let mut page_times: Vec<Duration> = first.iter().map(|p| p.wall).collect();
    // Two more passes, with the PV listing cached as it is between a
    // caller's pages: the page median over three passes is steadier than
    // over the three pages of the 1,000 case.
    for _ in 0..2 {
        let pass = list_volumes_pass(&mut c, &mock, failures).await;
        page_times.extend(pass.iter().map(|p| p.wall));
    }
    page_times.sort();
    let max_page_requests = page_requests.iter().copied().max().unwrap_or(0);
    let list_requests: u64 = page_requests.iter().sum();

    let before = mock.counters().total();
    let t = Instant::now();
    let (mut snap_pages, mut snaps) = (0, 0);
    let mut token_s = String::new();
    loop {
        match c
            .list_snapshots(csi::ListSnapshotsRequest {
                max_entries: 500,
                starting_token: token_s.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                snap_pages += 1;
                snaps += r.entries.len();
                if r.next_token.is_empty() {
                    break;
                }
                token_s = r.next_token;
            }
            Err(e) => {
                failures.push(format!("ListSnapshots: {}", e.message()));
                break;
            }
        }
    }
    let snap_wall = t.elapsed();
    let snap_requests = mock.counters().total() - before;
    let middle = mock.with_state(|st| {
        let mut names: Vec<&String> = st.file_systems.values().map(|f| &f.name).collect();
        names.sort();
        names
            .get(names.len() / 2)
            .map(|n| n.to_string())
            .unwrap_or_default()
    });
    let array_answer = array_page(&mock, &middle).await;

    // 3. One space poll: from its first array request to its result in a
    // scrape (scrapes every 20 ms while it runs).
    let polls = scrape(&http, &addr).await.0;
    mock.reset_counters();
    let deadline = Instant::now() + Duration::from_secs(90);
    while mock.counters().total() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let poll_start = Instant::now();
    let mut poll_wall = None;
    while Instant::now() < deadline {
        if scrape(&http, &addr).await.0 > polls {
            poll_wall = Some(poll_start.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let poll_requests = mock.counters().total();
    if poll_wall.is_none() {
        failures.push("the space poll did not finish".into());
    }
    let mut scrapes: Vec<(usize, Duration)> = Vec::new();
    for _ in 0..5 {
        let (_, size, took) = scrape(&http, &addr).await;
        scrapes.push((size, took));
    }
    scrapes.sort_by_key(|s| s.1);
    let (scrape_size, scrape_time) = scrapes[2];
    let peak_rss = status_kib(ctl.pid(), "VmHWM");
    drop(c);
    ctl.stop().await;

    // 4. The admin commands, with the array at its pace.
    let mut admin_args = vec![
        "--kubeconfig".to_string(),
        kubeconfig.display().to_string(),
        "--array-name".into(),
        ARRAY.into(),
        "--array-url".into(),
        mock.url.clone(),
        "--api-token-file".into(),
        token.display().to_string(),
        "--ca-file".into(),
        mock.ca_file.as_ref().expect("mock CA").display().to_string(),
    ];
    let mut admin_rows = Vec::new();
    for cmd in ["volumes", "orphans"] {
        admin_args.insert(0, cmd.into());
        mock.reset_counters();
        kube.lock().unwrap().requests = 0;
        let out = dir.path().join(format!("{cmd}.out"));
        let (wall, rss, code, bytes) = admin(&admin_args, &out);
        if code != 0 {
            failures.push(format!("{cmd}: exit code {code}"));
        }
        admin_rows.push((
            cmd,
            wall,
            rss,
            bytes,
            mock.counters().total(),
            kube.lock().unwrap().requests,
        ));
        admin_args.remove(0);
    }
    let load_after = loadavg();

    println!("## {n} file systems (N={n}, then {total} with the lecture's)");
    println!();
    println!("load average {load_before} before, {load_after} after; L={latency_ms} ms, P={parallel}");
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| 1. lecture: {LECTURE} creates from {CALLERS} callers: wall / bound ceil({LECTURE}/P)·L / ratio | {} / {} / {:.2} |",
        secs(lecture.wall),
        secs(bound),
        lecture.wall.as_secs_f64() / bound.as_secs_f64()
    );
    println!(
        "| 1. lecture: per call p50 / p99; array requests per create; errors | {} / {}; {:.2}; {} |",
        ms(pct(&lecture.latencies, 0.5)),
        ms(pct(&lecture.latencies, 0.99)),
        lecture_requests as f64 / LECTURE as f64,
        lecture.errors.len()
    );
    println!(
        "| 2. controller start to ready (Probe ready) | {} |",
        ms(to_ready)
    );
    println!(
        "| 2. ListVolumes, one full pass: pages of 500 / volumes / wall / API server requests (its PV listing) | {pages} / {listed} / {} / {list_kube} |",
        secs(list_wall)
    );
    println!(
        "| 2. ListVolumes page, three passes: p50 / max wall; the array's own answer for such a page (median); array requests per page (mean / max) | {} / {}; {}; {:.2} / {max_page_requests} |",
        ms(pct(&page_times, 0.5)),
        ms(pct(&page_times, 1.0)),
        ms(array_answer),
        list_requests as f64 / pages.max(1) as f64
    );
    println!(
        "| 2. ListSnapshots, one full pass: pages / snapshots / wall / array requests | {snap_pages} / {snaps} / {} / {snap_requests} |",
        ms(snap_wall)
    );
    println!(
        "| 3. space poll: array requests / wall (first request to the result in a scrape, ±20 ms) | {poll_requests} / {} |",
        poll_wall.map_or("-".into(), ms)
    );
    println!(
        "| 3. scrape of /metrics: size / time (median of 5) | {:.0} KiB / {} |",
        scrape_size as f64 / 1024.0,
        ms(scrape_time)
    );
    for (cmd, wall, rss, bytes, requests, kube_requests) in &admin_rows {
        println!(
            "| 4. `{cmd}` ({total} PVs, {total} file systems): wall / peak RSS / output / array requests / API requests | {} / {} / {:.0} KiB / {requests} / {kube_requests} |",
            secs(*wall),
            mib(*rss),
            *bytes as f64 / 1024.0
        );
    }
    println!(
        "| 6. controller RSS idle (ready, first space poll done) / peak (after the listings, polls and scrapes) | {} / {} |",
        mib(idle_rss),
        mib(peak_rss)
    );
    println!(
        "| 6. controller peak RSS (VmHWM) after start and the first poll / after ListVolumes and ListSnapshots / at the end | {} / {} / {} |",
        mib(ready_rss),
        mib(listed_rss),
        mib(peak_rss)
    );
    println!(
        "| 6. controller that made the {total} volumes: peak RSS | {} |",
        mib(seeder_peak)
    );
    println!();
}

// ------------------------------------------------------------------ node

/// Detaches every mount under `dir`, deepest first, then removes it.
fn sweep(dir: &Path) {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn mounts_under(dir: &Path) -> usize {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|p| p.starts_with(d.as_str())))
        .count()
}

fn writer_cap() -> Option<csi::VolumeCapability> {
    Some(csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(csi::volume_capability::AccessMode {
            mode: csi::volume_capability::access_mode::Mode::SingleNodeWriter as i32,
        }),
    })
}

/// Runs `op(i)` for every i at once; (wall, sorted latencies, errors).
async fn all_at_once<F, Fut>(n: usize, op: F) -> (Duration, Vec<Duration>, Vec<String>)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let f = op(i);
        set.spawn(async move {
            let t = Instant::now();
            f.await.map(|()| t.elapsed())
        });
    }
    let (mut lat, mut err) = (Vec::new(), Vec::new());
    while let Some(r) = set.join_next().await {
        match r.expect("task") {
            Ok(d) => lat.push(d),
            Err(e) => err.push(e),
        }
    }
    lat.sort();
    (start.elapsed(), lat, err)
}

async fn run_node(pods: usize, failures: &mut Vec<String>) {
    let load_before = loadavg();
    let mock = mock_flashblade::start(mock_flashblade::MockConfig::default())
        .await
        .unwrap();
    let shm = Path::new("/dev/shm");
    let base = match nix::sys::statfs::statfs(shm) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC => shm.to_path_buf(),
        _ => std::env::temp_dir(),
    };
    let work = tempfile::Builder::new()
        .prefix("scale-node-")
        .tempdir_in(base)
        .unwrap()
        .keep();
    let kubelet = work.join("kubelet");
    std::fs::create_dir_all(&kubelet).unwrap();
    let token = work.join("token");
    std::fs::write(&token, &mock.api_token).unwrap();

    // The homes, made by a controller.
    let ctl = Plugin::spawn(
        &work,
        "controller",
        [
            vec!["--mode".into(), "controller".into()],
            array_args(&mock, &token),
        ]
        .concat(),
    );
    ctl.ready().await;
    let made = create_homes(&channel(&ctl.socket).await, &home_parameters(), "40d0", 0, pods).await;
    failures.extend(made.errors.iter().take(3).cloned());
    ctl.stop().await;
    let vols: Arc<Vec<csi::Volume>> = Arc::new(made.made.into_iter().flatten().collect());

    let node_args = vec![
        "--mode".to_string(),
        "node".into(),
        "--node-id".into(),
        "bench-node".into(),
        "--array-name".into(),
        ARRAY.into(),
        "--nfs-endpoint".into(),
        "127.0.0.1".into(),
        "--config".into(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/base/config.toml").into(),
        "--kubelet-dir".into(),
        kubelet.display().to_string(),
        "--local-export-root".into(),
        mock.data_dir.display().to_string(),
    ];
    let node = Plugin::spawn(&work, "node", node_args.clone());
    node.ready().await;
    let idle_rss = status_kib(node.pid(), "VmRSS");
    let ch = channel(&node.socket).await;
    let paths = Arc::new(
        (0..vols.len())
            .map(|i| {
                let name = vols[i].volume_id.replace('/', "-");
                let staging = kubelet.join(format!(
                    "plugins/kubernetes.io/csi/flashblade.csi.dev/{name}/globalmount"
                ));
                let parent = kubelet.join(format!("pods/pod-{i:04}/volumes/kubernetes.io~csi/home"));
                std::fs::create_dir_all(&parent).unwrap();
                (staging, parent.join("mount"))
            })
            .collect::<Vec<_>>(),
    );
    let n = vols.len();

    // Every pod's home staged and published, all at once, as kubelet's
    // volume manager does when the pods land together.
    let publish = |i: usize| {
        let (mut c, vols, paths) = (NodeClient::new(ch.clone()), vols.clone(), paths.clone());
        async move {
            let (v, (staging, target)) = (&vols[i], &paths[i]);
            c.node_stage_volume(csi::NodeStageVolumeRequest {
                volume_id: v.volume_id.clone(),
                staging_target_path: staging.display().to_string(),
                volume_capability: writer_cap(),
                volume_context: v.volume_context.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("NodeStageVolume {i}: {}", e.message()))?;
            c.node_publish_volume(csi::NodePublishVolumeRequest {
                volume_id: v.volume_id.clone(),
                staging_target_path: staging.display().to_string(),
                target_path: target.display().to_string(),
                volume_capability: writer_cap(),
                volume_context: v.volume_context.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("NodePublishVolume {i}: {}", e.message()))?;
            Ok(())
        }
    };
    let (pub_wall, pub_lat, pub_err) = all_at_once(n, publish).await;
    let mounted = mounts_under(&kubelet);

    let stats = |ch: Channel| {
        let (vols, paths) = (vols.clone(), paths.clone());
        move |i: usize| {
            let (mut c, vols, paths) = (NodeClient::new(ch.clone()), vols.clone(), paths.clone());
            async move {
                let r = c
                    .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
                        volume_id: vols[i].volume_id.clone(),
                        volume_path: paths[i].1.display().to_string(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("NodeGetVolumeStats {i}: {}", e.message()))?
                    .into_inner();
                match r.volume_condition {
                    Some(c) if c.abnormal => Err(format!("NodeGetVolumeStats {i}: abnormal: {}", c.message)),
                    _ if r.usage.is_empty() => Err(format!("NodeGetVolumeStats {i}: no usage")),
                    _ => Ok(()),
                }
            }
        }
    };
    let (stats_wall, stats_lat, stats_err) = all_at_once(n, stats(ch.clone())).await;
    let peak_before = status_kib(node.pid(), "VmHWM");
    drop(ch);

    // A restart (an upgrade of the DaemonSet) with every mount in place.
    node.stop().await;
    let node = Plugin::spawn(&work, "node-restarted", node_args);
    let restart_ready = node.ready().await;
    let ch = channel(&node.socket).await;
    let (stats2_wall, _, stats2_err) = all_at_once(n, stats(ch.clone())).await;
    let unpublish = |i: usize| {
        let (mut c, vols, paths) = (NodeClient::new(ch.clone()), vols.clone(), paths.clone());
        async move {
            let (v, (staging, target)) = (&vols[i], &paths[i]);
            c.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                volume_id: v.volume_id.clone(),
                target_path: target.display().to_string(),
            })
            .await
            .map_err(|e| format!("NodeUnpublishVolume {i}: {}", e.message()))?;
            c.node_unstage_volume(csi::NodeUnstageVolumeRequest {
                volume_id: v.volume_id.clone(),
                staging_target_path: staging.display().to_string(),
            })
            .await
            .map_err(|e| format!("NodeUnstageVolume {i}: {}", e.message()))?;
            Ok(())
        }
    };
    let (unpub_wall, _, unpub_err) = all_at_once(n, unpublish).await;
    let left = mounts_under(&kubelet);
    let peak_after = status_kib(node.pid(), "VmHWM");
    drop(ch);
    node.stop().await;
    sweep(&work);

    println!("## one node, {n} notebook pods, each its own home");
    println!();
    println!("load average {load_before} before, {} after", loadavg());
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!("| 5. node plugin RSS idle (ready) | {} |", mib(idle_rss));
    println!(
        "| 5. {n} NodeStage + NodePublish at once: wall / per pod p50 / p99 / mounts made | {} / {} / {} / {mounted} |",
        ms(pub_wall),
        ms(pct(&pub_lat, 0.5)),
        ms(pct(&pub_lat, 0.99))
    );
    println!(
        "| 5. {n} NodeGetVolumeStats at once: wall / p99 | {} / {} |",
        ms(stats_wall),
        ms(pct(&stats_lat, 0.99))
    );
    println!(
        "| 5. restart with {mounted} mounts in place: start to ready; then {n} stats at once (wall); {n} unpublish + unstage at once (wall) | {}; {}; {} |",
        ms(restart_ready),
        ms(stats2_wall),
        ms(unpub_wall)
    );
    println!(
        "| 5. errors: publish / stats / stats after restart / unpublish; mounts left | {} / {} / {} / {}; {left} |",
        pub_err.len(),
        stats_err.len(),
        stats2_err.len(),
        unpub_err.len()
    );
    println!(
        "| 5. node plugin peak RSS, before the restart / after it | {} / {} |",
        mib(peak_before),
        mib(peak_after)
    );
    println!();
    for e in pub_err
        .iter()
        .chain(&stats_err)
        .chain(&stats2_err)
        .chain(&unpub_err)
        .take(5)
    {
        failures.push(e.clone());
    }
    if left > 0 || mounted < 2 * n {
        failures.push(format!(
            "{mounted} mounts made (at least {} expected), {left} left",
            2 * n
        ));
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // The scrapes are plain HTTP; reqwest still wants a TLS provider chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sizes: Vec<usize> = std::env::var("BENCH_SCALE_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let latency = env("BENCH_LATENCY_MS", 20) as u64;
    let parallel = env("BENCH_ARRAY_PARALLEL", 16);
    let pods = env("BENCH_NODE_PODS", 110);
    println!(
        "scale bench: {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    println!();
    let mut failures = Vec::new();
    for n in sizes {
        run_size(n, latency, parallel, &mut failures).await;
    }
    if pods > 0 {
        if nix::unistd::geteuid().is_root() {
            run_node(pods, &mut failures).await;
        } else {
            println!("node part: skipped, it mounts (run as root)");
        }
    }
    for f in &failures {
        eprintln!("error: {f}");
    }
    if !failures.is_empty() {
        std::process::exit(1);
    }
}
