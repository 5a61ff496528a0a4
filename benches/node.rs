//! The node plugin's own costs: its resident memory when idle, and how long
//! NodePublishVolume takes alone and for many pods at once (a class's
//! notebook pods landing on one node). The plugin runs as a child process
//! (the release `flashblade-csi serve --mode node` as the DaemonSet runs
//! it: the deployed config.toml, JSON logs, the metrics endpoint), with
//! NodeStage bind-mounting the simulator's directory of the file system
//! (`--local-export-root`): the publish path is the real one (path checks,
//! mountinfo, read-only bind mount); only the NFS mount of NodeStage is
//! replaced. Each single publish is followed by the NodeGetVolumeStats
//! kubelet sends every minute (not timed).
//!
//! As kubelet does, the bench makes each pod's volume directory (the
//! target's parent) before it calls NodePublishVolume; the plugin makes the
//! target itself. The kubelet directory is on tmpfs (/dev/shm) unless
//! BENCH_KUBELET_BASE names another place: the figures are then the
//! plugin's and the kernel's, not this disk's (the output prints what one
//! mkdir costs where the bench ran; on this machine's ext4 it is up to
//! 0.9 ms, on a node's SSD tens of microseconds).
//!
//! Run as root: `cargo bench --bench node`. BENCH_NODE_BIN runs another
//! build of the plugin (the image's: `cargo build --release
//! --no-default-features --bin flashblade-csi`). BENCH_PUBLISH_CONCURRENT (200)
//! sets the pods at once, BENCH_PUBLISH_SINGLE (50) how many single
//! publishes the median is taken over. Without root it says so and exits 0
//! (it mounts). Exits non-zero when any call failed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flashblade_csi::csi::{self, identity_client::IdentityClient, node_client::NodeClient};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cap(mode: csi::volume_capability::access_mode::Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

/// A `/proc/<pid>/status` figure in KiB (VmRSS, VmHWM).
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

/// A pod's target path, after making its parent as kubelet does before
/// NodePublishVolume (its csi mounter keeps vol_data.json there).
fn target(kubelet: &Path, pod: usize) -> PathBuf {
    let parent = kubelet.join(format!("pods/pod-{pod:04}/volumes/kubernetes.io~csi/datasets"));
    std::fs::create_dir_all(&parent).unwrap();
    parent.join("mount")
}

/// Where the bench's kubelet directory goes: BENCH_KUBELET_BASE, else tmpfs
/// when there is one, else the temporary directory.
fn base_dir() -> PathBuf {
    if let Some(b) = std::env::var_os("BENCH_KUBELET_BASE") {
        return PathBuf::from(b);
    }
    let shm = Path::new("/dev/shm");
    match nix::sys::statfs::statfs(shm) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC => shm.to_path_buf(),
        _ => std::env::temp_dir(),
    }
}

/// The median time of one mkdir(2) in `dir` (with an rmdir after each).
fn mkdir_cost(dir: &Path) -> Duration {
    let mut t: Vec<Duration> = (0..50)
        .map(|i| {
            let d = dir.join(format!("mkdir-probe-{i}"));
            let s = Instant::now();
            std::fs::create_dir(&d).unwrap();
            let e = s.elapsed();
            std::fs::remove_dir(&d).unwrap();
            e
        })
        .collect();
    t.sort();
    t[t.len() / 2]
}

fn publish_req(vol: &str, staging: &Path, target: &Path) -> csi::NodePublishVolumeRequest {
    csi::NodePublishVolumeRequest {
        volume_id: vol.into(),
        staging_target_path: staging.display().to_string(),
        target_path: target.display().to_string(),
        volume_capability: Some(cap(
            csi::volume_capability::access_mode::Mode::MultiNodeReaderOnly,
        )),
        readonly: true,
        ..Default::default()
    }
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("node bench: skipped, it mounts (run it as root)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let failed = rt.block_on(run());
    if failed > 0 {
        std::process::exit(1);
    }
}

async fn run() -> usize {
    let concurrent = env("BENCH_PUBLISH_CONCURRENT", 200);
    let singles = env("BENCH_PUBLISH_SINGLE", 50).max(1);
    let work = tempfile::Builder::new()
        .prefix("node-bench-")
        .tempdir_in(base_dir())
        .unwrap()
        .keep();
    let mkdir = mkdir_cost(&work);
    let kubelet = work.join("kubelet");
    let exports = work.join("exports");
    std::fs::create_dir_all(&kubelet).unwrap();
    // The dataset the pods mount: a directory the node stages from.
    std::fs::create_dir_all(exports.join("datasets")).unwrap();
    std::fs::write(exports.join("datasets/iris.csv"), "a,b\n1,2\n").unwrap();

    let socket = work.join("csi.sock");
    let log = work.join("node.log");
    let out = std::fs::File::create(&log).unwrap();
    // The shipped plugin is the image's build (`--no-default-features`,
    // no demo); BENCH_NODE_BIN runs that one instead of this build's.
    let bin = std::env::var_os("BENCH_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_flashblade-csi")));
    let bin_size = std::fs::metadata(&bin).map_or(0, |m| m.len());
    let mut child = tokio::process::Command::new(&bin)
        .arg("serve")
        .args([
            "--mode",
            "node",
            "--node-id",
            "bench-node",
            "--array-name",
            "fb01",
        ])
        .args(["--nfs-endpoint", "127.0.0.1"])
        // As the DaemonSet runs it: the deployed configuration file (flags
        // beat it) and the metrics endpoint.
        .arg("--config")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/kubernetes/base/config.toml"
        ))
        .args(["--metrics-address", "127.0.0.1:0"])
        .arg("--endpoint")
        .arg(format!("unix://{}", socket.display()))
        .arg("--kubelet-dir")
        .arg(&kubelet)
        .arg("--local-export-root")
        .arg(&exports)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .expect("start flashblade-csi serve --mode node");
    let pid = child.id().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "the node plugin did not open its socket; log: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let channel = channel(&socket).await;
    let mut node = NodeClient::new(channel.clone());
    // Idle: started, registered (node-driver-registrar asks GetPluginInfo
    // and NodeGetInfo) and probed (livenessprobe asks Probe).
    let mut identity = IdentityClient::new(channel);
    identity
        .get_plugin_info(csi::GetPluginInfoRequest {})
        .await
        .unwrap();
    node.node_get_info(csi::NodeGetInfoRequest {}).await.unwrap();
    identity.probe(csi::ProbeRequest {}).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = status_kib(pid, "VmRSS");

    let vol = "fb01/datasets";
    let staging = kubelet.join("plugins/kubernetes.io/csi/flashblade.csi.dev/datasets/globalmount");
    let mut errors: Vec<String> = Vec::new();
    if let Err(s) = node
        .node_stage_volume(csi::NodeStageVolumeRequest {
            volume_id: vol.into(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(cap(
                csi::volume_capability::access_mode::Mode::MultiNodeReaderOnly,
            )),
            ..Default::default()
        })
        .await
    {
        errors.push(format!("NodeStageVolume: {}", s.message()));
    }

    // One pod at a time: publish, then unpublish (not timed), `singles` times.
    let mut single = Vec::new();
    for i in 0..singles {
        let t = target(&kubelet, i);
        let start = Instant::now();
        match node.node_publish_volume(publish_req(vol, &staging, &t)).await {
            Ok(_) => single.push(start.elapsed()),
            Err(s) => errors.push(format!("NodePublishVolume: {}", s.message())),
        }
        // kubelet asks every minute for each published volume.
        if let Err(s) = node
            .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
                volume_id: vol.into(),
                volume_path: t.display().to_string(),
                ..Default::default()
            })
            .await
        {
            errors.push(format!("NodeGetVolumeStats: {}", s.message()));
        }
        let _ = node
            .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                volume_id: vol.into(),
                target_path: t.display().to_string(),
            })
            .await;
    }
    single.sort();

    // `concurrent` pods at once, each its own caller as kubelet's volume
    // manager goroutines are.
    let targets: Vec<PathBuf> = (0..concurrent).map(|i| target(&kubelet, 10_000 + i)).collect();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in &targets {
        let mut c = node.clone();
        let (t, staging) = (t.clone(), staging.clone());
        set.spawn(async move {
            let s = Instant::now();
            c.node_publish_volume(publish_req(vol, &staging, &t))
                .await
                .map(|_| s.elapsed())
                .map_err(|s| format!("NodePublishVolume: {}", s.message()))
        });
    }
    let mut each = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(d) => each.push(d),
            Err(e) => errors.push(e),
        }
    }
    let burst_wall = start.elapsed();
    each.sort();
    let peak_rss = status_kib(pid, "VmHWM");

    // Unpublish them all at once, then unstage.
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in targets {
        let mut c = node.clone();
        set.spawn(async move {
            c.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                volume_id: vol.into(),
                target_path: t.display().to_string(),
            })
            .await
            .map_err(|s| format!("NodeUnpublishVolume: {}", s.message()))
        });
    }
    while let Some(r) = set.join_next().await {
        if let Err(e) = r.unwrap() {
            errors.push(e);
        }
    }
    let unpublish_wall = start.elapsed();
    if let Err(s) = node
        .node_unstage_volume(csi::NodeUnstageVolumeRequest {
            volume_id: vol.into(),
            staging_target_path: staging.display().to_string(),
        })
        .await
    {
        errors.push(format!("NodeUnstageVolume: {}", s.message()));
    }
    let left = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(kubelet.to_str().unwrap()))
        .count();

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    sweep(&work);

    let pct = |v: &[Duration], q: f64| {
        v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "node bench: {} CPUs; load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "binary: {} ({:.1} MiB)",
        bin.display(),
        bin_size as f64 / (1 << 20) as f64
    );
    println!(
        "kubelet directory under {} (one mkdir there: {mkdir:.2?} median)",
        work.display()
    );
    println!();
    println!("| figure | value |");
    println!("| --- | --- |");
    println!(
        "| node plugin RSS idle (registered and probed: GetPluginInfo, NodeGetInfo, Probe) | {} |",
        mib(idle_rss)
    );
    println!(
        "| NodePublishVolume alone: median / p90 of {singles} | {:.2?} / {:.2?} |",
        pct(&single, 0.5),
        pct(&single, 0.9)
    );
    println!("| {concurrent} NodePublishVolume at once: wall | {burst_wall:.2?} |");
    println!(
        "| {concurrent} at once: per call p50 / p99 | {:.2?} / {:.2?} |",
        pct(&each, 0.5),
        pct(&each, 0.99)
    );
    println!("| {concurrent} NodeUnpublishVolume at once: wall | {unpublish_wall:.2?} |");
    println!(
        "| node plugin peak RSS (VmHWM, after the burst) | {} |",
        mib(peak_rss)
    );
    println!("| mounts left under the kubelet dir after unpublish and unstage | {left} |");
    println!("| errors | {} |", errors.len());
    for e in errors.iter().take(10) {
        println!("error: {e}");
    }
    errors.len() + left
}
