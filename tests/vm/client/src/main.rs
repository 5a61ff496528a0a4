//! The real-NFS tier's test client. It runs inside the VM as root, next to a
//! kernel NFS server exporting one tmpfs per volume on 127.0.0.1: it starts
//! the release `flashblade-csi serve --mode node` (real NFS mounts, short
//! deadlines), drives it over its CSI socket, controls the server through
//! `guest.sh ctl …` (stop, drop, restore, v4 on/off) and writes one JSON line
//! per case to the results file: `{"case", "result", "duration_ms", "detail"}`
//! with result `pass`, `fail` or `skip`, then `{"case": "done"}`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use flashblade_csi::csi::{self, node_client::NodeClient};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

/// Time an RPC may take beyond the plugin's own deadline (gRPC, TCG).
const SLACK: Duration = Duration::from_secs(3);
/// Watchdog on any single RPC, so a hung plugin fails a case, not the run.
const RPC_WATCHDOG: Duration = Duration::from_secs(60);
/// The plugin's --shutdown-grace in the guest.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);
/// Pods one dead volume is published into in the partial-outage case: more
/// than the driver's limit on stuck statfs threads (32 today).
const PARTIAL_PODS: usize = 40;
/// Stats rounds against a dead server (each round queries every target).
const DEAD_STATS_ROUNDS: usize = 3;
/// Isolation phase: dead file systems from one server (more than the 32
/// stuck statfs calls the node once allowed in all) ...
const ISO_DEAD: usize = 36;
/// ... and healthy volumes from another, half staged before the outage and
/// half during it.
const ISO_OK: usize = 8;
/// Time a node RPC's answer may take to reach the client after the plugin's
/// overall deadline for it (gRPC over a unix socket, TCG).
const ANSWER_SLACK: Duration = Duration::from_millis(1000);

struct Opts {
    plugin: PathBuf,
    guest_script: PathBuf,
    results: PathBuf,
    plugin_log: PathBuf,
    work: PathBuf,
    mount_timeout: Duration,
    unmount_timeout: Duration,
    stats_timeout: Duration,
}

fn parse_opts() -> Result<Opts, String> {
    let mut m = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(k) = args.next() {
        let k = k
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {k:?}"))?
            .to_string();
        let v = args.next().ok_or_else(|| format!("--{k} needs a value"))?;
        m.insert(k, v);
    }
    let get = |k: &str| m.get(k).cloned().ok_or_else(|| format!("--{k} is required"));
    let secs = |k: &str| -> Result<Duration, String> {
        get(k)?
            .parse::<f64>()
            .map(Duration::from_secs_f64)
            .map_err(|e| format!("--{k}: {e}"))
    };
    Ok(Opts {
        plugin: get("plugin")?.into(),
        guest_script: get("guest-script")?.into(),
        results: get("results")?.into(),
        plugin_log: get("plugin-log")?.into(),
        work: get("work")?.into(),
        mount_timeout: secs("mount-timeout")?,
        unmount_timeout: secs("unmount-timeout")?,
        stats_timeout: secs("stats-timeout")?,
    })
}

/// One volume as the tests see it: an export `/<name>` on the server, whose
/// server-side directory is also `/<name>` in the guest.
#[derive(Clone)]
struct Vol {
    name: String,
    versions: Option<&'static str>,
    /// Give server and share in the volume context (else the node resolves
    /// them from the handle and its --nfs-endpoint).
    explicit: bool,
    /// The server address (the guest's server answers on all of 127/8).
    server: &'static str,
    /// The capability's mount flags (StorageClass mountOptions).
    flags: &'static [&'static str],
}

impl Vol {
    fn new(name: &str, versions: Option<&'static str>) -> Self {
        Self {
            name: name.into(),
            versions,
            explicit: true,
            server: "127.0.0.1",
            flags: &[],
        }
    }
    fn export_dir(&self) -> PathBuf {
        PathBuf::from(format!("/{}", self.name))
    }
}

struct Tier {
    opts: Opts,
    node: NodeClient<Channel>,
    kubelet: PathBuf,
    plugin: Child,
    results: std::fs::File,
    failures: usize,
}

type Outcome = Result<String, String>;

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn mountinfo() -> Vec<(String, String, String, String)> {
    // (mount point, fs type, source, super options)
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((
                f.get(4)?.to_string(),
                f.get(sep + 1)?.to_string(),
                f.get(sep + 2)?.to_string(),
                f.get(sep + 3)?.to_string(),
            ))
        })
        .collect()
}

fn mounts_at(p: &Path) -> usize {
    let p = p.to_string_lossy();
    mountinfo().iter().filter(|m| m.0 == p).count()
}

/// `vers=` of the top mount at `p`, with its fs type.
fn nfs_version_at(p: &Path) -> Option<(String, String)> {
    let p = p.to_string_lossy();
    mountinfo().into_iter().rev().find(|m| m.0 == p).map(|m| {
        let vers =
            m.3.split(',')
                .find_map(|o| o.strip_prefix("vers="))
                .unwrap_or("?")
                .to_string();
        (m.1, vers)
    })
}

/// Live (non-zombie) processes whose command is `mount` or `mount.nfs*`.
fn mount_helpers() -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = &stat[open + 1..close];
        let state = stat[close + 1..].split_whitespace().next().unwrap_or("?");
        if (comm == "mount" || comm.starts_with("mount.nfs")) && state != "Z" {
            out.push(format!("{name}:{comm}:{state}"));
        }
    }
    out
}

/// (all threads, threads blocked in the kernel in state D) of `pid`.
fn threads(pid: u32) -> (usize, usize) {
    let mut all = 0;
    let mut blocked = 0;
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for e in dir.flatten() {
            all += 1;
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            if let Some(close) = stat.rfind(')')
                && stat[close + 1..].split_whitespace().next() == Some("D")
            {
                blocked += 1;
            }
        }
    }
    (all, blocked)
}

fn cap(readonly: bool, flags: &[&str]) -> csi::VolumeCapability {
    use csi::volume_capability::{AccessMode, AccessType, MountVolume, access_mode::Mode};
    csi::VolumeCapability {
        access_type: Some(AccessType::Mount(MountVolume {
            mount_flags: flags.iter().map(|f| f.to_string()).collect(),
            ..Default::default()
        })),
        access_mode: Some(AccessMode {
            mode: if readonly {
                Mode::MultiNodeReaderOnly as i32
            } else {
                Mode::MultiNodeMultiWriter as i32
            },
        }),
    }
}

/// Threads of `pid` named like the plugin's statfs workers.
fn statfs_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "fbcsi-statfs")
                })
                .count()
        })
        .unwrap_or(0)
}

/// (median, max) in ms.
fn median_max(v: &[Duration]) -> (u128, u128) {
    let mut v: Vec<u128> = v.iter().map(|d| d.as_millis()).collect();
    v.sort_unstable();
    (
        v.get(v.len() / 2).copied().unwrap_or(0),
        v.last().copied().unwrap_or(0),
    )
}

/// The notebook user of the JupyterHub recipe (jovyan, group users).
const NOTEBOOK: (u32, u32) = (1000, 100);

/// (uid, gid, mode) of `p`.
fn owner_mode(p: &Path) -> Result<(u32, u32, u32), String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).map_err(|e| format!("stat {}: {e}", p.display()))?;
    Ok((m.uid(), m.gid(), m.mode() & 0o7777))
}

/// Every entry of `dir` with its owner, mode and content, sorted: what a
/// stage must not change.
fn contents(dir: &Path) -> Result<Vec<String>, String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("read {}: {e}", dir.display()))? {
        let e = e.map_err(|e| e.to_string())?;
        let m = e.metadata().map_err(|e| e.to_string())?;
        let body = std::fs::read(e.path()).unwrap_or_default();
        out.push(format!(
            "{} {}:{} {:o} {:?}",
            e.file_name().to_string_lossy(),
            m.uid(),
            m.gid(),
            m.mode() & 0o7777,
            String::from_utf8_lossy(&body)
        ));
    }
    out.sort();
    Ok(out)
}

/// Runs `sh -c script` as `uid:gid` (no supplementary groups) with `dir`
/// open on fd 3, named `$D`, as a pod's process sees its volume: kubelet's
/// directories above it are not the user's to walk. Returns stdout.
fn as_user(uid: u32, gid: u32, dir: &Path, script: &str) -> Result<String, String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let d = std::fs::File::open(dir).map_err(|e| format!("open {}: {e}", dir.display()))?;
    let fd = d.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script])
        .env("D", "/proc/self/fd/3")
        .uid(uid)
        .gid(gid);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == 3 {
                nix::libc::fcntl(3, nix::libc::F_SETFD, 0)
            } else {
                nix::libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().map_err(|e| e.to_string())?;
    drop(d);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "as {uid}:{gid}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn status_text(s: &Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

async fn connect(path: &Path) -> Result<Channel, String> {
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| e.to_string())
}

impl Tier {
    async fn start(opts: Opts) -> Result<Tier, String> {
        let kubelet = opts.work.join("kubelet");
        std::fs::create_dir_all(&kubelet).map_err(|e| e.to_string())?;
        let socket = opts.work.join("csi.sock");
        let log = std::fs::File::create(&opts.plugin_log).map_err(|e| e.to_string())?;
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        let plugin = Command::new(&opts.plugin)
            .args(["serve", "--mode", "node", "--node-id", "vm-node"])
            .arg("--endpoint")
            .arg(format!("unix://{}", socket.display()))
            .arg("--kubelet-dir")
            .arg(&kubelet)
            .args(["--nfs-endpoint", "127.0.0.1"])
            .args(["--mount-timeout", &secs(opts.mount_timeout)])
            .args(["--unmount-timeout", &secs(opts.unmount_timeout)])
            .args(["--stats-timeout", &secs(opts.stats_timeout)])
            .args(["--shutdown-grace", &secs(SHUTDOWN_GRACE)])
            .args([
                "--log-format",
                "human",
                "--log-filter",
                "info,flashblade_csi=debug",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", opts.plugin.display()))?;
        let mut up = false;
        for _ in 0..400 {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if !up {
            return Err(format!("the plugin never listened on {}", socket.display()));
        }
        let node = NodeClient::new(connect(&socket).await?);
        let results = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&opts.results)
            .map_err(|e| e.to_string())?;
        Ok(Tier {
            opts,
            node,
            kubelet,
            plugin,
            results,
            failures: 0,
        })
    }

    fn record(&mut self, case: &str, result: &str, took: Duration, detail: &str) {
        let line = serde_json::json!({
            "case": case,
            "result": result,
            "duration_ms": ms(took),
            "detail": detail,
        });
        println!("{} {case} ({} ms) {detail}", result.to_uppercase(), ms(took));
        let _ = writeln!(self.results, "{line}");
        let _ = self.results.sync_all();
        if result == "fail" {
            self.failures += 1;
        }
    }

    fn outcome(&mut self, case: &str, took: Duration, o: Outcome) {
        match o {
            Ok(d) => self.record(case, "pass", took, &d),
            Err(d) => self.record(case, "fail", took, &d),
        }
    }

    /// Runs the guest script's `ctl` subcommand (server control).
    fn ctl(&self, what: &str) -> Result<(), String> {
        let out = Command::new("bash")
            .arg(&self.opts.guest_script)
            .args(["ctl", what])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ctl {what}: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn staging(&self, v: &Vol) -> PathBuf {
        self.kubelet
            .join("plugins/kubernetes.io/csi/flashblade.csi.dev")
            .join(&v.name)
            .join("globalmount")
    }

    fn target(&self, v: &Vol, pod: &str) -> PathBuf {
        self.kubelet
            .join("pods")
            .join(pod)
            .join("volumes/kubernetes.io~csi")
            .join(&v.name)
            .join("mount")
    }

    fn plugin_pid(&self) -> u32 {
        self.plugin.id()
    }

    async fn rpc<T>(
        fut: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> (Result<T, Status>, Duration) {
        let start = Instant::now();
        let r = match tokio::time::timeout(RPC_WATCHDOG, fut).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => Err(Status::new(Code::Unknown, "client watchdog: no answer in 60 s")),
        };
        (r, start.elapsed())
    }

    async fn stage(&mut self, v: &Vol) -> (Result<(), Status>, Duration) {
        let req = self.stage_request(v);
        let (r, d) = Self::rpc(self.node.node_stage_volume(req)).await;
        (r.map(|_| ()), d)
    }

    fn stage_request(&self, v: &Vol) -> csi::NodeStageVolumeRequest {
        let mut ctx = HashMap::new();
        if v.explicit {
            ctx.insert("server".to_string(), v.server.to_string());
            ctx.insert("share".to_string(), format!("/{}", v.name));
        }
        if let Some(vers) = v.versions {
            ctx.insert("nfsVersions".to_string(), vers.to_string());
        }
        csi::NodeStageVolumeRequest {
            volume_id: v.name.clone(),
            staging_target_path: self.staging(v).to_string_lossy().into_owned(),
            volume_capability: Some(cap(false, v.flags)),
            volume_context: ctx,
            ..Default::default()
        }
    }

    /// NodeStage with the root directory's owner and mode in the volume
    /// context, as a class with rootOwner / rootMode writes them.
    async fn stage_root(&mut self, v: &Vol, owner: &str, mode: &str) -> (Result<(), Status>, Duration) {
        let mut req = self.stage_request(v);
        req.volume_context.insert("rootOwner".into(), owner.into());
        req.volume_context.insert("rootMode".into(), mode.into());
        let (r, d) = Self::rpc(self.node.node_stage_volume(req)).await;
        (r.map(|_| ()), d)
    }

    async fn unstage(&mut self, v: &Vol) -> (Result<(), Status>, Duration) {
        let req = csi::NodeUnstageVolumeRequest {
            volume_id: v.name.clone(),
            staging_target_path: self.staging(v).to_string_lossy().into_owned(),
        };
        let (r, d) = Self::rpc(self.node.node_unstage_volume(req)).await;
        (r.map(|_| ()), d)
    }

    async fn publish(&mut self, v: &Vol, pod: &str, readonly: bool) -> (Result<(), Status>, Duration) {
        let req = self.publish_request(v, pod, readonly);
        let (r, d) = Self::rpc(self.node.node_publish_volume(req)).await;
        (r.map(|_| ()), d)
    }

    fn publish_request(&self, v: &Vol, pod: &str, readonly: bool) -> csi::NodePublishVolumeRequest {
        csi::NodePublishVolumeRequest {
            volume_id: v.name.clone(),
            staging_target_path: self.staging(v).to_string_lossy().into_owned(),
            target_path: self.target(v, pod).to_string_lossy().into_owned(),
            volume_capability: Some(cap(false, v.flags)),
            readonly,
            ..Default::default()
        }
    }

    async fn unpublish(&mut self, v: &Vol, pod: &str) -> (Result<(), Status>, Duration) {
        let req = csi::NodeUnpublishVolumeRequest {
            volume_id: v.name.clone(),
            target_path: self.target(v, pod).to_string_lossy().into_owned(),
        };
        let (r, d) = Self::rpc(self.node.node_unpublish_volume(req)).await;
        (r.map(|_| ()), d)
    }

    async fn stats(
        &mut self,
        v: &Vol,
        pod: &str,
    ) -> (Result<csi::NodeGetVolumeStatsResponse, Status>, Duration) {
        let req = csi::NodeGetVolumeStatsRequest {
            volume_id: v.name.clone(),
            volume_path: self.target(v, pod).to_string_lossy().into_owned(),
            staging_target_path: self.staging(v).to_string_lossy().into_owned(),
        };
        Self::rpc(self.node.node_get_volume_stats(req)).await
    }

    // ---- building blocks that return an Outcome ----

    /// Stages twice (the second must be an idempotent OK) and checks the
    /// mount's NFS version.
    async fn stage_checked(&mut self, v: &Vol, want_vers: &str) -> Outcome {
        let (r, d1) = self.stage(v).await;
        r.map_err(|s| format!("NodeStage: {}", status_text(&s)))?;
        let (fs, vers) =
            nfs_version_at(&self.staging(v)).ok_or("no mount at the staging path after NodeStage")?;
        if vers != want_vers {
            return Err(format!("mounted {fs} vers={vers}, wanted vers={want_vers}"));
        }
        let (r, d2) = self.stage(v).await;
        r.map_err(|s| format!("repeated NodeStage: {}", status_text(&s)))?;
        let n = mounts_at(&self.staging(v));
        if n != 1 {
            return Err(format!(
                "{n} mounts at the staging path after a repeated NodeStage"
            ));
        }
        Ok(format!(
            "{fs} vers={vers}; stage {} ms, repeat {} ms",
            ms(d1),
            ms(d2)
        ))
    }

    async fn publish_checked(&mut self, v: &Vol, pod: &str, readonly: bool) -> Outcome {
        let (r, d1) = self.publish(v, pod, readonly).await;
        r.map_err(|s| format!("NodePublish: {}", status_text(&s)))?;
        let t = self.target(v, pod);
        let probe = t.join(format!("written-through-{pod}"));
        let detail = if readonly {
            match std::fs::write(&probe, b"x") {
                Err(e) if e.raw_os_error() == Some(nix::libc::EROFS) => "write gives EROFS".to_string(),
                Err(e) => return Err(format!("write on the read-only target: {e}, wanted EROFS")),
                Ok(()) => return Err("write on the read-only target succeeded".into()),
            }
        } else {
            std::fs::write(&probe, b"hello over nfs")
                .map_err(|e| format!("write through the target: {e}"))?;
            // The same bytes on the server's side of the export.
            let server_side = v.export_dir().join(probe.file_name().unwrap_or_default());
            let got = std::fs::read(&server_side)
                .map_err(|e| format!("read {} on the server: {e}", server_side.display()))?;
            if got != b"hello over nfs" {
                return Err("the server's copy differs".into());
            }
            "write reaches the server's export".to_string()
        };
        // Reads work on both kinds of target.
        std::fs::read_dir(&t).map_err(|e| format!("list the target: {e}"))?;
        let (r, d2) = self.publish(v, pod, readonly).await;
        r.map_err(|s| format!("repeated NodePublish: {}", status_text(&s)))?;
        let n = mounts_at(&t);
        if n != 1 {
            return Err(format!("{n} mounts at the target after a repeated NodePublish"));
        }
        Ok(format!("{detail}; publish {} ms, repeat {} ms", ms(d1), ms(d2)))
    }

    async fn stats_checked(&mut self, v: &Vol, pod: &str) -> Outcome {
        let (r, d) = self.stats(v, pod).await;
        let resp = r.map_err(|s| format!("NodeGetVolumeStats: {}", status_text(&s)))?;
        let cond = resp.volume_condition.clone().unwrap_or_default();
        if cond.abnormal {
            return Err(format!(
                "abnormal condition on a healthy volume: {}",
                cond.message
            ));
        }
        let server =
            nix::sys::statvfs::statvfs(&v.export_dir()).map_err(|e| format!("statvfs of the export: {e}"))?;
        let fr = server.fragment_size();
        let s_total = (server.blocks() * fr) as i64;
        let s_avail = (server.blocks_available() * fr) as i64;
        let s_used = ((server.blocks() - server.blocks_free()) * fr) as i64;
        let s_inodes = server.files() as i64;
        let bytes = resp
            .usage
            .iter()
            .find(|u| u.unit == csi::volume_usage::Unit::Bytes as i32)
            .ok_or("no byte usage")?;
        let inodes = resp
            .usage
            .iter()
            .find(|u| u.unit == csi::volume_usage::Unit::Inodes as i32)
            .ok_or("no inode usage")?;
        // NFS reports the server's figures in its own block size; allow one
        // MiB of rounding (the files written by the test are smaller).
        let close = |a: i64, b: i64| (a - b).abs() <= 1 << 20;
        let report = format!(
            "plugin total/used/avail {}/{}/{} B, inodes {}; server statvfs {}/{}/{} B, inodes {}",
            bytes.total, bytes.used, bytes.available, inodes.total, s_total, s_used, s_avail, s_inodes
        );
        if !(close(bytes.total, s_total) && close(bytes.used, s_used) && close(bytes.available, s_avail)) {
            return Err(format!("byte figures differ: {report}"));
        }
        if inodes.total != s_inodes {
            return Err(format!("inode totals differ: {report}"));
        }
        Ok(format!("{report}; {} ms", ms(d)))
    }

    async fn unpublish_checked(&mut self, v: &Vol, pod: &str, limit: Duration) -> Outcome {
        let t = self.target(v, pod);
        let mut times = Vec::new();
        for attempt in ["NodeUnpublish", "repeated NodeUnpublish"] {
            let (r, d) = self.unpublish(v, pod).await;
            r.map_err(|s| format!("{attempt} after {} ms: {}", ms(d), status_text(&s)))?;
            if d > limit {
                return Err(format!("{attempt} took {} ms, limit {} ms", ms(d), ms(limit)));
            }
            let n = mounts_at(&t);
            if n != 0 {
                return Err(format!("{n} mounts left at the target after {attempt}"));
            }
            times.push(ms(d));
        }
        Ok(format!("no mount left; {} ms, repeat {} ms", times[0], times[1]))
    }

    async fn unstage_checked(&mut self, v: &Vol, limit: Duration) -> Outcome {
        let s = self.staging(v);
        let mut times = Vec::new();
        for attempt in ["NodeUnstage", "repeated NodeUnstage"] {
            let (r, d) = self.unstage(v).await;
            r.map_err(|e| format!("{attempt} after {} ms: {}", ms(d), status_text(&e)))?;
            if d > limit {
                return Err(format!("{attempt} took {} ms, limit {} ms", ms(d), ms(limit)));
            }
            let n = mounts_at(&s);
            if n != 0 {
                return Err(format!("{n} mounts left at the staging path after {attempt}"));
            }
            times.push(ms(d));
        }
        Ok(format!("no mount left; {} ms, repeat {} ms", times[0], times[1]))
    }

    // ---- the phases ----

    async fn healthy(&mut self) {
        let v41 = Vol::new("k8s-v41", Some("4.1"));
        let v3 = Vol::new("k8s-v3", Some("3"));
        let both = Vol {
            name: "k8s-default".into(),
            versions: None,
            explicit: false,
            server: "127.0.0.1",
            flags: &[],
        };
        for (v, want) in [(&v41, "4.1"), (&v3, "3"), (&both, "4.1")] {
            let case = match v.versions {
                Some(x) => format!("stage nfsVersions={x} (repeated)"),
                None => "stage default versions, handle + --nfs-endpoint: 4.1 first (repeated)".into(),
            };
            let t = Instant::now();
            let o = self.stage_checked(v, want).await;
            self.outcome(&case, t.elapsed(), o);
        }
        for v in [&v41, &v3] {
            let vers = v.versions.unwrap_or("?");
            for (pod, ro) in [("pod-rw", false), ("pod-ro", true)] {
                let t = Instant::now();
                let o = self.publish_checked(v, pod, ro).await;
                let kind = if ro { "read-only" } else { "rw" };
                self.outcome(&format!("publish {kind}, v{vers} (repeated)"), t.elapsed(), o);
            }
            // Some data, so "used" is not zero.
            let _ = std::fs::write(v.export_dir().join("data.bin"), vec![7u8; 3 << 20]);
            let t = Instant::now();
            let o = self.stats_checked(v, "pod-rw").await;
            self.outcome(&format!("stats vs server statvfs, v{vers}"), t.elapsed(), o);
        }
        // StorageClass mountOptions reach mount.nfs; a version there pins it
        // (over nfsVersions).
        let pinned = Vol {
            flags: &["nfsvers=3", "nconnect=2,noatime"],
            ..Vol::new("k8s-flags", Some("4.1"))
        };
        let t = Instant::now();
        let o = async {
            let d = self.stage_checked(&pinned, "3").await?;
            // The mount's own options (field 6 of mountinfo) and the NFS
            // super options.
            let staging = self.staging(&pinned);
            let line = std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
                .rev()
                .find(|l| l.split(' ').nth(4).map(Path::new) == Some(staging.as_path()))
                .map(str::to_string)
                .unwrap_or_default();
            let mount_opts = line.split(' ').nth(5).unwrap_or("").to_string();
            let super_opts = line.rsplit(' ').next().unwrap_or("").to_string();
            if !mount_opts.split(',').any(|o| o == "noatime") {
                return Err(format!("noatime missing from the mount's options: {mount_opts}"));
            }
            self.unstage_checked(&pinned, self.opts.unmount_timeout + SLACK)
                .await?;
            Ok(format!("{d}; options {mount_opts}; super options {super_opts}"))
        }
        .await;
        self.outcome(
            "mount flags nfsvers=3,nconnect=2,noatime pin v3 over nfsVersions=4.1",
            t.elapsed(),
            o,
        );

        // An IPv6 data address: `[::1]:/share`, and the repeat must match
        // the mount table's spelling of that source.
        for vers in ["4.1", "3"] {
            let v6 = Vol {
                server: "::1",
                ..Vol::new(&format!("k8s-v6-{}", vers.replace('.', "")), Some(vers))
            };
            let t = Instant::now();
            let o = async {
                let d = self.stage_checked(&v6, vers).await?;
                let d2 = self.publish_checked(&v6, "pod-v6", false).await?;
                let limit = self.opts.unmount_timeout + SLACK;
                self.unpublish_checked(&v6, "pod-v6", limit).await?;
                self.unstage_checked(&v6, limit).await?;
                Ok(format!("{d}; {d2}"))
            }
            .await;
            self.outcome(
                &format!("IPv6 server [::1], v{vers}: stage, publish, unpublish, unstage"),
                t.elapsed(),
                o,
            );
        }
        self.record(
            "hard quota (PVC size) enforced on writes",
            "skip",
            Duration::ZERO,
            "the Linux NFS server has no per-export hard quota to model FlashBlade's; not testable here",
        );
        let limit = self.opts.unmount_timeout + SLACK;
        for v in [&v41, &v3] {
            let vers = v.versions.unwrap_or("?");
            for pod in ["pod-rw", "pod-ro"] {
                let t = Instant::now();
                let o = self.unpublish_checked(v, pod, limit).await;
                self.outcome(&format!("unpublish {pod}, v{vers} (repeated)"), t.elapsed(), o);
            }
        }
        for v in [&v41, &v3, &both] {
            let t = Instant::now();
            let o = self.unstage_checked(v, limit).await;
            self.outcome(&format!("unstage {} (repeated)", v.name), t.elapsed(), o);
        }
    }

    /// A JupyterHub user's first login on the worst case: a new home whose
    /// root is root:root 0755, root squashed for the pod network and not
    /// for the node that holds the volume (what exportTo: nodes with
    /// exportOptions no_root_squash gives). The first stage hands the root
    /// to the notebook user; a later stage of a home with content changes
    /// nothing; an export that squashes the node too is refused and left
    /// as it was.
    async fn first_login(&mut self) {
        let home = Vol::new("k8s-home-new", Some("4.1"));
        let squashed = Vol::new("k8s-home-squash", Some("4.1"));
        let (owner, mode) = ("1000:100", "2775");
        let limit = self.opts.unmount_timeout + SLACK;

        let t = Instant::now();
        let o = (|| -> Outcome {
            let mut seen = Vec::new();
            for v in [&home, &squashed] {
                let got = owner_mode(&v.export_dir())?;
                if got != (0, 0, 0o755) || !contents(&v.export_dir())?.is_empty() {
                    return Err(format!("{}: {got:?}, want an empty root:root 0755", v.name));
                }
                seen.push(format!("{} 0:0 755", v.name));
            }
            Ok(seen.join(", "))
        })();
        self.outcome(
            "first login: the server's new roots are empty, root:root 0755",
            t.elapsed(),
            o,
        );

        // The pod network's rule squashes root: a client at 127.0.0.3 may
        // neither chown the root nor create in it as root.
        let t = Instant::now();
        let o: Outcome = async {
            let mnt = PathBuf::from("/run/podnet");
            std::fs::create_dir_all(&mnt).map_err(|e| e.to_string())?;
            let out = Command::new("timeout")
                .args(["20", "mount", "-t", "nfs", "-o", "vers=3,nolock"])
                .arg(format!("127.0.0.3:/{}", home.name))
                .arg(&mnt)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "mount from 127.0.0.3: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            let chown = std::os::unix::fs::chown(&mnt, Some(NOTEBOOK.0), Some(NOTEBOOK.1));
            let create = std::fs::write(mnt.join("x"), "x");
            let _ = Command::new("umount").arg(&mnt).status();
            let errno = |r: &std::io::Result<()>| r.as_ref().err().and_then(|e| e.raw_os_error());
            match (errno(&chown), errno(&create)) {
                (Some(nix::libc::EPERM), Some(nix::libc::EACCES)) => {
                    Ok("root at 127.0.0.3: chown EPERM, create EACCES".to_string())
                }
                other => Err(format!(
                    "root at 127.0.0.3 was not squashed: chown {chown:?}, create {create:?} ({other:?})"
                )),
            }
        }
        .await;
        let o = o.and_then(|d| match owner_mode(&home.export_dir())? {
            (0, 0, 0o755) if contents(&home.export_dir())?.is_empty() => Ok(d),
            got => Err(format!("{d}; but the root changed: {got:?}")),
        });
        self.outcome(
            "first login: the pod network's root is squashed on the home",
            t.elapsed(),
            o,
        );

        // (a) The first stage gives the root to the notebook user, who then
        // writes and reads back through the publish path.
        let t = Instant::now();
        let o = async {
            let (r, d) = self.stage_root(&home, owner, mode).await;
            r.map_err(|s| format!("NodeStage: {}", status_text(&s)))?;
            let root = owner_mode(&home.export_dir())?;
            if root != (NOTEBOOK.0, NOTEBOOK.1, 0o2775) {
                return Err(format!("the root is {root:?} after the first stage"));
            }
            let (r, _) = self.publish(&home, "pod-home", false).await;
            r.map_err(|s| format!("NodePublish: {}", status_text(&s)))?;
            let target = self.target(&home, "pod-home");
            let said = as_user(
                NOTEBOOK.0,
                NOTEBOOK.1,
                &target,
                "printf 'first notebook' > \"$D/Untitled.ipynb\" && cat \"$D/Untitled.ipynb\"",
            )?;
            if said != "first notebook" {
                return Err(format!("read back {said:?}"));
            }
            let file = home.export_dir().join("Untitled.ipynb");
            let on_server = owner_mode(&file)?;
            if (on_server.0, on_server.1) != NOTEBOOK {
                return Err(format!("the file is {on_server:?} on the server"));
            }
            Ok(format!(
                "stage {} ms; root {}:{} {:o} on the server; 1000:100 wrote and read back Untitled.ipynb",
                ms(d),
                root.0,
                root.1,
                root.2
            ))
        }
        .await;
        self.outcome(
            "first login: the first stage gives the notebook user its home",
            t.elapsed(),
            o,
        );

        // (b) The user makes the home private; later stages (the same class,
        // then one asking another owner) change nothing of a home with content.
        let t = Instant::now();
        let o = async {
            let target = self.target(&home, "pod-home");
            as_user(NOTEBOOK.0, NOTEBOOK.1, &target, "chmod 700 \"$D\"")?;
            self.unpublish_checked(&home, "pod-home", limit).await?;
            self.unstage_checked(&home, limit).await?;
            let before = (owner_mode(&home.export_dir())?, contents(&home.export_dir())?);
            let mut seen = Vec::new();
            for (o, m) in [(owner, mode), ("2000:2000", "0755")] {
                let (r, d) = self.stage_root(&home, o, m).await;
                r.map_err(|s| format!("NodeStage with {o} {m}: {}", status_text(&s)))?;
                let after = (owner_mode(&home.export_dir())?, contents(&home.export_dir())?);
                if after != before {
                    return Err(format!("stage with {o} {m} changed {before:?} into {after:?}"));
                }
                self.unstage_checked(&home, limit).await?;
                seen.push(format!("{o} {m}: {} ms", ms(d)));
            }
            Ok(format!(
                "root {}:{} {:o} and {} file(s) unchanged by stages asking {}",
                before.0.0,
                before.0.1,
                before.0.2,
                before.1.len(),
                seen.join(", ")
            ))
        }
        .await;
        self.outcome(
            "first login: a later stage of a home with content changes nothing",
            t.elapsed(),
            o,
        );

        // (c) Root squashed for the node too: refused, naming the fix, and
        // nothing left mounted or made on the export.
        let t = Instant::now();
        let o = async {
            let (r, d) = self.stage_root(&squashed, owner, mode).await;
            let s = match r {
                Ok(()) => {
                    return Err("NodeStage succeeded on an export that squashes the node's root".to_string());
                }
                Err(s) => s,
            };
            let m = s.message();
            if s.code() != Code::FailedPrecondition
                || !m.contains("no_root_squash")
                || !m.contains("exportTo: nodes")
            {
                return Err(format!(
                    "want FAILED_PRECONDITION naming exportTo: nodes with no_root_squash: {}",
                    status_text(&s)
                ));
            }
            if mounts_at(&self.staging(&squashed)) != 0 {
                return Err("the staging mount was left".into());
            }
            let root = owner_mode(&squashed.export_dir())?;
            let files = contents(&squashed.export_dir())?;
            if root != (0, 0, 0o755) || !files.is_empty() {
                return Err(format!("the export changed: {root:?} {files:?}"));
            }
            Ok(format!(
                "{} ms: {}; export untouched (0:0 755, empty)",
                ms(d),
                status_text(&s)
            ))
        }
        .await;
        self.outcome(
            "first login: an export squashing the node's root is refused, naming the fix",
            t.elapsed(),
            o,
        );
    }

    /// The server dies (`how`: refused or dropped) under two staged and
    /// published volumes (v4.1 and v3), then comes back.
    async fn dead(&mut self, how: &str) {
        let tag = &how[..1];
        let vols = [
            Vol::new(&format!("k8s-{tag}41"), Some("4.1")),
            Vol::new(&format!("k8s-{tag}3"), Some("3")),
        ];
        let pod = "pod-dead";
        for v in &vols {
            let t = Instant::now();
            let o = async {
                let (r, _) = self.stage(v).await;
                r.map_err(|s| format!("NodeStage: {}", status_text(&s)))?;
                let (r, _) = self.publish(v, pod, false).await;
                r.map_err(|s| format!("NodePublish: {}", status_text(&s)))?;
                std::fs::write(self.target(v, pod).join("before"), b"x")
                    .map_err(|e| format!("write: {e}"))?;
                Ok("staged, published, written".to_string())
            }
            .await;
            self.outcome(&format!("{how}: set-up {}", v.name), t.elapsed(), o);
        }
        let pid = self.plugin_pid();
        let (threads_before, blocked_before) = threads(pid);
        let stop = if how == "refused" { "stop" } else { "drop" };
        let t = Instant::now();
        let o = self.ctl(stop).map(|_| format!("server {how}"));
        self.outcome(&format!("{how}: server dies (ctl {stop})"), t.elapsed(), o);
        // Past the attribute cache: a stat right after death proves nothing.
        tokio::time::sleep(Duration::from_secs(1)).await;

        // Stats: each call within its deadline, abnormal; threads bounded.
        let limit = self.opts.stats_timeout + SLACK;
        let mut rounds = Vec::new();
        for v in &vols {
            let t = Instant::now();
            let mut problems = Vec::new();
            let mut seen = Vec::new();
            for round in 0..DEAD_STATS_ROUNDS {
                let (r, d) = self.stats(v, pod).await;
                match r {
                    Ok(resp) => {
                        let c = resp.volume_condition.unwrap_or_default();
                        if !c.abnormal {
                            problems.push(format!("round {round}: condition normal ({})", c.message));
                        }
                        seen.push(format!("{} ms abnormal={} {:?}", ms(d), c.abnormal, c.message));
                    }
                    Err(s) => {
                        problems.push(format!(
                            "round {round}: error instead of a condition: {}",
                            status_text(&s)
                        ));
                        seen.push(format!("{} ms error", ms(d)));
                    }
                }
                if d > limit {
                    problems.push(format!("round {round}: {} ms, limit {} ms", ms(d), ms(limit)));
                }
                rounds.push(threads(pid));
            }
            let o = if problems.is_empty() {
                Ok(seen.join("; "))
            } else {
                Err(format!("{} [{}]", problems.join("; "), seen.join("; ")))
            };
            self.outcome(
                &format!(
                    "{how}: stats {} x{DEAD_STATS_ROUNDS} within deadline, abnormal",
                    v.name
                ),
                t.elapsed(),
                o,
            );
        }
        let (threads_after, blocked_after) = threads(pid);
        let stuck = blocked_after.saturating_sub(blocked_before);
        // One statfs may stay stuck per dead mount; repeated calls must not
        // add more.
        let bound = vols.len();
        let detail = format!(
            "plugin threads {threads_before} -> {threads_after}, in D state {blocked_before} -> {blocked_after} \
             (after each call: {rounds:?}); bound {bound} (one per dead mount) after {} calls",
            DEAD_STATS_ROUNDS * vols.len()
        );
        let o = if stuck <= bound { Ok(detail) } else { Err(detail) };
        self.outcome(&format!("{how}: stuck stats threads bounded"), Duration::ZERO, o);

        // kubelet repeats NodeStage / NodePublish (e.g. after a restart):
        // both must answer from the mount table, without touching the server.
        for v in &vols {
            let t = Instant::now();
            let o = async {
                let (r, d1) = self.stage(v).await;
                r.map_err(|s| format!("NodeStage: {} after {} ms", status_text(&s), ms(d1)))?;
                let (r, d2) = self.publish(v, pod, false).await;
                r.map_err(|s| format!("NodePublish: {} after {} ms", status_text(&s), ms(d2)))?;
                let quick = Duration::from_secs(2);
                if d1 > quick || d2 > quick {
                    return Err(format!(
                        "stage {} ms, publish {} ms: slower than {} ms",
                        ms(d1),
                        ms(d2),
                        ms(quick)
                    ));
                }
                Ok(format!("stage {} ms, publish {} ms", ms(d1), ms(d2)))
            }
            .await;
            self.outcome(
                &format!("{how}: repeated stage and publish of {} answer OK", v.name),
                t.elapsed(),
                o,
            );
        }

        // Unpublish and unstage answer OK in time and leave nothing mounted.
        let limit = self.opts.unmount_timeout + SLACK;
        for v in &vols {
            let t = Instant::now();
            let o = self.unpublish_checked(v, pod, limit).await;
            self.outcome(&format!("{how}: unpublish {} (repeated)", v.name), t.elapsed(), o);
        }
        for v in &vols {
            let t = Instant::now();
            let o = self.unstage_checked(v, limit).await;
            self.outcome(&format!("{how}: unstage {} (repeated)", v.name), t.elapsed(), o);
        }

        // A new v4.1 stage against the dead server.
        let fresh = Vol::new(&format!("k8s-{tag}new"), Some("4.1"));
        let t = Instant::now();
        let o = async {
            let (r, d) = self.stage(&fresh).await;
            let limit = self.opts.mount_timeout + SLACK;
            let mut problems = Vec::new();
            match &r {
                Err(s) if s.code() == Code::DeadlineExceeded => {}
                Err(s) => problems.push(format!("wanted DEADLINE_EXCEEDED, got {}", status_text(s))),
                Ok(()) => problems.push("NodeStage succeeded against a dead server".into()),
            }
            if d > limit {
                problems.push(format!("took {} ms, limit {} ms", ms(d), ms(limit)));
            }
            // The helper's group was killed; allow a moment for reaping.
            let mut helpers = mount_helpers();
            for _ in 0..10 {
                if helpers.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                helpers = mount_helpers();
            }
            if !helpers.is_empty() {
                problems.push(format!("mount helpers left: {helpers:?}"));
            }
            let n = mounts_at(&self.staging(&fresh));
            if n != 0 {
                problems.push(format!("{n} mounts at the staging path"));
            }
            let what = match &r {
                Ok(()) => "OK".to_string(),
                Err(s) => status_text(s),
            };
            if problems.is_empty() {
                Ok(format!(
                    "{what} after {} ms; no mount, no mount helper left",
                    ms(d)
                ))
            } else {
                Err(format!("{} ({what} after {} ms)", problems.join("; "), ms(d)))
            }
        }
        .await;
        self.outcome(
            &format!("{how}: new v4.1 stage gives DEADLINE_EXCEEDED, no helper left"),
            t.elapsed(),
            o,
        );

        // The server comes back: a stage works again.
        let t = Instant::now();
        let o = self.ctl("restore").map(|_| "server back".to_string());
        self.outcome(&format!("{how}: server back (ctl restore)"), t.elapsed(), o);
        let after = Vol::new(&format!("k8s-{tag}after"), Some("4.1"));
        let t = Instant::now();
        let o = async {
            let d = self.stage_checked(&after, "4.1").await?;
            let limit = self.opts.unmount_timeout + SLACK;
            self.unstage_checked(&after, limit).await?;
            Ok(d)
        }
        .await;
        self.outcome(&format!("{how}: stage after recovery"), t.elapsed(), o);
        // Retry the stage that failed while the server was dead, too.
        let t = Instant::now();
        let o = async {
            let d = self.stage_checked(&fresh, "4.1").await?;
            self.unstage_checked(&fresh, self.opts.unmount_timeout + SLACK)
                .await?;
            Ok(d)
        }
        .await;
        self.outcome(
            &format!("{how}: the failed stage retried after recovery"),
            t.elapsed(),
            o,
        );
        // Threads stuck on the dead server come free once it answers.
        let t = Instant::now();
        let mut now = threads(pid);
        while now.1 > blocked_before && t.elapsed() < Duration::from_secs(30) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            now = threads(pid);
        }
        let detail = format!(
            "threads {} (D state {}) {} ms after recovery",
            now.0,
            now.1,
            ms(t.elapsed())
        );
        let o = if now.1 <= blocked_before {
            Ok(detail)
        } else {
            Err(detail)
        };
        self.outcome(
            &format!("{how}: stuck threads released after recovery"),
            t.elapsed(),
            o,
        );
    }

    /// One of two servers dies (packets to 127.0.0.2 dropped) while a volume
    /// from it is published into many pods: stats of a volume from the other
    /// server (127.0.0.1) must stay normal, however many pods the dead one
    /// is in. v3 for the dead one: two addresses of one v4.1 server would be
    /// detected as one server (trunking) and share a connection.
    async fn partial(&mut self) {
        let dead = Vol {
            server: "127.0.0.2",
            ..Vol::new("k8s-part-dead", Some("3"))
        };
        let ok = Vol::new("k8s-part-ok", Some("4.1"));
        let pods: Vec<String> = (0..PARTIAL_PODS).map(|i| format!("pod-p{i}")).collect();
        let t = Instant::now();
        let o = async {
            for v in [&dead, &ok] {
                let (r, _) = self.stage(v).await;
                r.map_err(|s| format!("NodeStage {}: {}", v.name, status_text(&s)))?;
                let (r, _) = self.publish(v, "pod-p0", false).await;
                r.map_err(|s| format!("NodePublish {}: {}", v.name, status_text(&s)))?;
            }
            self.ctl("drop-alt")?;
            for pod in &pods[1..] {
                let (r, _) = self.publish(&dead, pod, false).await;
                r.map_err(|s| format!("NodePublish {} {pod}: {}", dead.name, status_text(&s)))?;
            }
            Ok(format!(
                "{} published into {} pods, {} into one; 127.0.0.2 dropped",
                dead.name, PARTIAL_PODS, ok.name
            ))
        }
        .await;
        let ready = o.is_ok();
        self.outcome("partial: set-up", t.elapsed(), o);
        if ready {
            // kubelet asks for every pod's volume at about the same time.
            let t = Instant::now();
            let calls = pods.iter().map(|pod| {
                let mut node = self.node.clone();
                let req = csi::NodeGetVolumeStatsRequest {
                    volume_id: dead.name.clone(),
                    volume_path: self.target(&dead, pod).to_string_lossy().into_owned(),
                    staging_target_path: self.staging(&dead).to_string_lossy().into_owned(),
                };
                async move { Self::rpc(node.node_get_volume_stats(req)).await }
            });
            let answers = futures_join_all(calls).await;
            let limit = self.opts.stats_timeout + SLACK;
            let slowest = answers.iter().map(|a| a.1).max().unwrap_or_default();
            let abnormal = answers
                .iter()
                .filter(|a| matches!(&a.0, Ok(r) if r.volume_condition.as_ref().is_some_and(|c| c.abnormal)))
                .count();
            let (all, blocked) = threads(self.plugin_pid());
            let detail = format!(
                "{abnormal}/{} abnormal, slowest {} ms; plugin threads {all}, {blocked} in D state",
                answers.len(),
                ms(slowest)
            );
            let o = if abnormal == answers.len() && slowest <= limit {
                Ok(detail)
            } else {
                Err(detail)
            };
            self.outcome(
                &format!("partial: stats of the dead volume in {PARTIAL_PODS} pods at once"),
                t.elapsed(),
                o,
            );
            let t = Instant::now();
            let (r, d) = self.stats(&ok, "pod-p0").await;
            let o = match r {
                Ok(resp) => {
                    let c = resp.volume_condition.unwrap_or_default();
                    if c.abnormal {
                        Err(format!(
                            "healthy volume reported abnormal after {} ms: {}",
                            ms(d),
                            c.message
                        ))
                    } else {
                        Ok(format!("normal after {} ms", ms(d)))
                    }
                }
                Err(s) => Err(format!("error after {} ms: {}", ms(d), status_text(&s))),
            };
            self.outcome(
                "partial: stats of a volume on the live server stay normal",
                t.elapsed(),
                o,
            );
        }
        // Clean up, whatever happened above.
        let t = Instant::now();
        let limit = self.opts.unmount_timeout + SLACK;
        let o = async {
            for pod in &pods {
                let (r, d) = self.unpublish(&dead, pod).await;
                r.map_err(|s| format!("NodeUnpublish {pod}: {} after {} ms", status_text(&s), ms(d)))?;
                if d > limit {
                    return Err(format!("NodeUnpublish {pod} took {} ms", ms(d)));
                }
            }
            self.unstage_checked(&dead, limit).await?;
            self.ctl("restore")?;
            self.unpublish_checked(&ok, "pod-p0", limit).await?;
            self.unstage_checked(&ok, limit).await?;
            Ok(format!(
                "{} pods unpublished, both volumes unstaged",
                PARTIAL_PODS
            ))
        }
        .await;
        self.outcome("partial: unpublish and unstage everything", t.elapsed(), o);
        let _ = self.ctl("restore");
    }

    /// The node RPC's overall deadline, as the plugin documents it.
    fn deadline_of(&self, rpc: &str) -> Duration {
        let o = &self.opts;
        match rpc {
            "NodeStage" => o.mount_timeout + o.unmount_timeout,
            "NodePublish" => o.mount_timeout,
            "NodeUnpublish" | "NodeUnstage" => o.unmount_timeout,
            _ => o.stats_timeout,
        }
    }

    /// Notes an RPC that outlived its deadline; returns the time.
    fn timed(&self, overruns: &mut Vec<String>, rpc: &str, what: &str, d: Duration) -> Duration {
        let limit = self.deadline_of(rpc);
        if d > limit + ANSWER_SLACK {
            overruns.push(format!("{rpc} {what}: {} ms, deadline {} ms", ms(d), ms(limit)));
        }
        d
    }

    /// Many dead file systems from one server (127.0.0.2, NFSv3: a client of
    /// its own, where a second address of one NFSv4.1 server would merge
    /// into one client with the first) and healthy volumes from another
    /// (127.0.0.1, NFSv4.1): the healthy volumes' stats stay normal with
    /// usage, new stages of healthy volumes are timed before and during the
    /// outage, and every node RPC answers within its overall deadline.
    async fn isolation(&mut self) {
        let dead: Vec<Vol> = (1..=ISO_DEAD)
            .map(|i| Vol {
                server: "127.0.0.2",
                ..Vol::new(&format!("k8s-iso-d{i}"), Some("3"))
            })
            .collect();
        let ok: Vec<Vol> = (1..=ISO_OK)
            .map(|i| Vol::new(&format!("k8s-iso-ok{i}"), Some("4.1")))
            .collect();
        let (before, during) = ok.split_at(ISO_OK / 2);
        let pod = "pod-iso";
        let mut overruns = Vec::new();
        let mut stage_before = Vec::new();
        let t = Instant::now();
        let o = async {
            for v in before {
                let (r, d) = self.stage(v).await;
                stage_before.push(self.timed(&mut overruns, "NodeStage", &v.name, d));
                r.map_err(|s| format!("NodeStage {}: {}", v.name, status_text(&s)))?;
                let (r, d) = self.publish(v, pod, false).await;
                self.timed(&mut overruns, "NodePublish", &v.name, d);
                r.map_err(|s| format!("NodePublish {}: {}", v.name, status_text(&s)))?;
            }
            // Six at a time, as kubelet stages the volumes of several pods.
            for batch in dead.chunks(6) {
                let stages = batch.iter().map(|v| {
                    let mut node = self.node.clone();
                    let (stage, publish) = (self.stage_request(v), self.publish_request(v, pod, false));
                    let name = v.name.clone();
                    async move {
                        let (r, d1) = Self::rpc(node.node_stage_volume(stage)).await;
                        if let Err(s) = r {
                            return (
                                name,
                                d1,
                                Duration::ZERO,
                                Err(format!("NodeStage: {}", status_text(&s))),
                            );
                        }
                        let (r, d2) = Self::rpc(node.node_publish_volume(publish)).await;
                        (
                            name,
                            d1,
                            d2,
                            r.map(|_| ())
                                .map_err(|s| format!("NodePublish: {}", status_text(&s))),
                        )
                    }
                });
                for (name, d1, d2, r) in futures_join_all(stages).await {
                    self.timed(&mut overruns, "NodeStage", &name, d1);
                    self.timed(&mut overruns, "NodePublish", &name, d2);
                    r.map_err(|e| format!("{name}: {e}"))?;
                }
            }
            self.ctl("drop-alt")?;
            Ok(format!(
                "{ISO_DEAD} v3 volumes from 127.0.0.2 (then dropped), {} v4.1 from 127.0.0.1, each in a pod",
                before.len()
            ))
        }
        .await;
        let ready = o.is_ok();
        self.outcome("isolation: set-up", t.elapsed(), o);
        if ready {
            // kubelet asks for every volume at about the same time.
            let t = Instant::now();
            let (mut healthy_ok, mut dead_abnormal, mut dead_limit, mut bad) = (0, 0, 0, Vec::new());
            for _ in 0..DEAD_STATS_ROUNDS {
                let calls = dead.iter().chain(before).map(|v| {
                    let mut node = self.node.clone();
                    let req = csi::NodeGetVolumeStatsRequest {
                        volume_id: v.name.clone(),
                        volume_path: self.target(v, pod).to_string_lossy().into_owned(),
                        staging_target_path: self.staging(v).to_string_lossy().into_owned(),
                    };
                    let (name, healthy) = (v.name.clone(), v.server == "127.0.0.1");
                    async move { (name, healthy, Self::rpc(node.node_get_volume_stats(req)).await) }
                });
                for (name, healthy, (r, d)) in futures_join_all(calls).await {
                    self.timed(&mut overruns, "NodeGetVolumeStats", &name, d);
                    let abnormal = |r: &csi::NodeGetVolumeStatsResponse| {
                        r.volume_condition.as_ref().is_none_or(|c| c.abnormal)
                    };
                    match (healthy, r) {
                        (true, Ok(r)) if !abnormal(&r) && r.usage.len() == 2 => healthy_ok += 1,
                        (false, Ok(r)) if abnormal(&r) && r.usage.is_empty() => dead_abnormal += 1,
                        (false, Err(s))
                            if s.code() == Code::ResourceExhausted
                                && s.message().contains("not measured") =>
                        {
                            dead_limit += 1
                        }
                        (_, Ok(r)) => bad.push(format!(
                            "{name}: {:?}, {} usage entries",
                            r.volume_condition,
                            r.usage.len()
                        )),
                        (_, Err(s)) => bad.push(format!("{name}: {}", status_text(&s))),
                    }
                }
            }
            let threads = statfs_threads(self.plugin_pid());
            let detail = format!(
                "{DEAD_STATS_ROUNDS} rounds: healthy normal with usage {healthy_ok}/{}; dead abnormal {dead_abnormal}, \
                 not measured (limit) {dead_limit}; statfs threads {threads}{}",
                DEAD_STATS_ROUNDS * before.len(),
                if bad.is_empty() {
                    String::new()
                } else {
                    format!("; unexpected: {}", bad.join("; "))
                }
            );
            let o = if bad.is_empty() && healthy_ok == DEAD_STATS_ROUNDS * before.len() {
                Ok(detail)
            } else {
                Err(detail)
            };
            self.outcome(
                &format!("isolation: stats with {ISO_DEAD} dead file systems of one server"),
                t.elapsed(),
                o,
            );

            // New healthy stages while kubelet keeps asking about the dead.
            let t = Instant::now();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let load = {
                let (stop, node) = (stop.clone(), self.node.clone());
                let reqs: Vec<_> = dead
                    .iter()
                    .map(|v| csi::NodeGetVolumeStatsRequest {
                        volume_id: v.name.clone(),
                        volume_path: self.target(v, pod).to_string_lossy().into_owned(),
                        staging_target_path: self.staging(v).to_string_lossy().into_owned(),
                    })
                    .collect();
                tokio::spawn(async move {
                    let mut slowest = Duration::ZERO;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        for req in &reqs {
                            let (_, d) = Self::rpc(node.clone().node_get_volume_stats(req.clone())).await;
                            slowest = slowest.max(d);
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    slowest
                })
            };
            let mut stage_during = Vec::new();
            let o: Outcome = async {
                for v in during {
                    let (r, d) = self.stage(v).await;
                    stage_during.push(self.timed(&mut overruns, "NodeStage", &v.name, d));
                    r.map_err(|s| format!("NodeStage {}: {}", v.name, status_text(&s)))?;
                    let (r, d) = self.publish(v, pod, false).await;
                    self.timed(&mut overruns, "NodePublish", &v.name, d);
                    r.map_err(|s| format!("NodePublish {}: {}", v.name, status_text(&s)))?;
                }
                let mut usage = Vec::new();
                for v in ok.iter() {
                    let d = self
                        .stats_checked(v, pod)
                        .await
                        .map_err(|e| format!("{}: {e}", v.name))?;
                    usage.push(d.rsplit("; ").next().unwrap_or_default().to_string());
                }
                let (b_med, b_max) = median_max(&stage_before);
                let (d_med, d_max) = median_max(&stage_during);
                Ok(format!(
                    "NodeStage of a new v4.1 volume: before the outage median {b_med} ms (max {b_max}), \
                     during it median {d_med} ms (max {d_max}); all {ISO_OK} healthy volumes' stats normal and equal \
                     to the server's statvfs ({})",
                    usage.join(", ")
                ))
            }
            .await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let slowest = load.await.unwrap_or_default();
            if let Ok(detail) = &o {
                println!(
                    "isolation: {detail}; dead stats alongside: slowest {} ms",
                    ms(slowest)
                );
            }
            self.timed(
                &mut overruns,
                "NodeGetVolumeStats",
                "of a dead volume (load)",
                slowest,
            );
            self.outcome(
                "isolation: stage during the outage, healthy stats with usage",
                t.elapsed(),
                o,
            );
        }
        // Clean up, the dead server still dead: every unmount within its deadline.
        let t = Instant::now();
        let mut undo = Vec::new();
        let o: Outcome = async {
            for v in &dead {
                let (r, d) = self.unpublish(v, pod).await;
                undo.push(self.timed(&mut overruns, "NodeUnpublish", &v.name, d));
                r.map_err(|s| format!("NodeUnpublish {}: {}", v.name, status_text(&s)))?;
                let (r, d) = self.unstage(v).await;
                undo.push(self.timed(&mut overruns, "NodeUnstage", &v.name, d));
                r.map_err(|s| format!("NodeUnstage {}: {}", v.name, status_text(&s)))?;
                if mounts_at(&self.staging(v)) + mounts_at(&self.target(v, pod)) != 0 {
                    return Err(format!("{} still mounted", v.name));
                }
            }
            self.ctl("restore")?;
            for v in &ok {
                let (r, d) = self.unpublish(v, pod).await;
                self.timed(&mut overruns, "NodeUnpublish", &v.name, d);
                r.map_err(|s| format!("NodeUnpublish {}: {}", v.name, status_text(&s)))?;
                let (r, d) = self.unstage(v).await;
                self.timed(&mut overruns, "NodeUnstage", &v.name, d);
                r.map_err(|s| format!("NodeUnstage {}: {}", v.name, status_text(&s)))?;
            }
            let (med, max) = median_max(&undo);
            Ok(format!(
                "{ISO_DEAD} dead volumes unpublished and unstaged (median {med} ms, max {max} ms), nothing left mounted"
            ))
        }
        .await;
        self.outcome("isolation: unpublish and unstage everything", t.elapsed(), o);
        let _ = self.ctl("restore");
        let o = if overruns.is_empty() {
            Ok(format!(
                "stage {} ms, publish {} ms, unpublish/unstage {} ms, stats {} ms (+{} ms to answer)",
                ms(self.deadline_of("NodeStage")),
                ms(self.deadline_of("NodePublish")),
                ms(self.deadline_of("NodeUnstage")),
                ms(self.deadline_of("NodeGetVolumeStats")),
                ms(ANSWER_SLACK)
            ))
        } else {
            Err(overruns.join("; "))
        };
        self.outcome(
            "isolation: every node RPC within its overall deadline",
            Duration::ZERO,
            o,
        );
    }

    /// The server offers NFSv3 only: the default order (4.1, then 3) falls
    /// back to v3 within one NodeStage.
    async fn fallback(&mut self) {
        let t = Instant::now();
        let o = self.ctl("v4-off").map(|_| "nfsd restarted with -N 4".to_string());
        self.outcome("fallback: server restarted without NFSv4", t.elapsed(), o);
        let v = Vol::new("k8s-fallback", None);
        let t = Instant::now();
        let o = async {
            let d = self.stage_checked(&v, "3").await?;
            self.unstage_checked(&v, self.opts.unmount_timeout + SLACK)
                .await?;
            Ok(d)
        }
        .await;
        self.outcome(
            "fallback: default versions on a v3-only server mount v3",
            t.elapsed(),
            o,
        );
        let v = Vol::new("k8s-fallback", Some("4.1"));
        let t = Instant::now();
        let o = async {
            let (r, d) = self.stage(&v).await;
            let n = mounts_at(&self.staging(&v));
            match r {
                Err(s) if s.code() != Code::DeadlineExceeded && n == 0 => {
                    Ok(format!("{} after {} ms, nothing mounted", status_text(&s), ms(d)))
                }
                Err(s) => Err(format!("{} after {} ms, {n} mounts", status_text(&s), ms(d))),
                Ok(()) => Err("a v4.1-only stage succeeded against a server without v4".into()),
            }
        }
        .await;
        self.outcome(
            "fallback: nfsVersions=4.1 on a v3-only server fails at once",
            t.elapsed(),
            o,
        );
    }

    /// SIGTERM while a statfs is stuck on a dead server: the plugin exits
    /// 0 within its shutdown grace (a stuck thread must not keep it alive).
    async fn shutdown(&mut self) {
        let v = Vol::new("k8s-shutdown", Some("3"));
        let pod = "pod-shutdown";
        let t = Instant::now();
        let o = async {
            let (r, _) = self.stage(&v).await;
            r.map_err(|s| format!("NodeStage: {}", status_text(&s)))?;
            let (r, _) = self.publish(&v, pod, false).await;
            r.map_err(|s| format!("NodePublish: {}", status_text(&s)))?;
            self.ctl("drop")?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (r, d) = self.stats(&v, pod).await;
            let c = r
                .map_err(|s| format!("NodeGetVolumeStats: {}", status_text(&s)))?
                .volume_condition
                .unwrap_or_default();
            let (all, blocked) = threads(self.plugin_pid());
            if !c.abnormal || blocked == 0 {
                return Err(format!(
                    "wanted a stuck statfs first: abnormal={} after {} ms, {blocked} of {all} threads in D state",
                    c.abnormal,
                    ms(d)
                ));
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.plugin.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let start = Instant::now();
            let limit = SHUTDOWN_GRACE + SLACK;
            let status = loop {
                if let Ok(Some(st)) = self.plugin.try_wait() {
                    break Some(st);
                }
                if start.elapsed() > limit + Duration::from_secs(10) {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let took = start.elapsed();
            match status {
                Some(st) if st.success() && took <= limit => Ok(format!(
                    "{blocked} thread(s) stuck in statfs; exit 0 {} ms after SIGTERM (grace {} ms)",
                    ms(took),
                    ms(SHUTDOWN_GRACE)
                )),
                Some(st) => Err(format!(
                    "{blocked} thread(s) stuck in statfs; {st} {} ms after SIGTERM (grace {} ms, limit {} ms)",
                    ms(took),
                    ms(SHUTDOWN_GRACE),
                    ms(limit)
                )),
                None => Err(format!(
                    "still running {} ms after SIGTERM with {blocked} thread(s) stuck in statfs",
                    ms(took)
                )),
            }
        }
        .await;
        self.outcome(
            "shutdown: SIGTERM with a statfs stuck on a dead server exits 0 within the grace",
            t.elapsed(),
            o,
        );
        let _ = self.ctl("restore");
    }

    async fn stop_plugin(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.plugin.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.plugin.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.plugin.kill();
        let _ = self.plugin.wait();
    }
}

/// Awaits all futures concurrently (a tiny join_all, to stay on tokio alone).
async fn futures_join_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => panic!("a concurrent call panicked: {e}"),
        }
    }
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vm-nfs-client: {e}");
            std::process::exit(2);
        }
    };
    let results = opts.results.clone();
    let mut tier = match Tier::start(opts).await {
        Ok(t) => t,
        Err(e) => {
            let line =
                serde_json::json!({"case": "plugin starts", "result": "fail", "duration_ms": 0, "detail": e});
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&results)
            {
                let _ = writeln!(f, "{line}");
            }
            eprintln!("vm-nfs-client: {e}");
            std::process::exit(1);
        }
    };
    let phases = std::env::var("VM_PHASES")
        .unwrap_or_else(|_| "healthy,firstlogin,refused,dropped,partial,isolation,fallback,shutdown".into());
    for phase in phases.split(',') {
        let t = Instant::now();
        eprintln!("== phase {phase}");
        match phase {
            "healthy" => tier.healthy().await,
            "firstlogin" => tier.first_login().await,
            "refused" | "dropped" => tier.dead(phase).await,
            "partial" => tier.partial().await,
            "isolation" => tier.isolation().await,
            "fallback" => tier.fallback().await,
            "shutdown" => tier.shutdown().await,
            other => tier.record(
                "phases",
                "fail",
                Duration::ZERO,
                &format!("unknown phase {other}"),
            ),
        }
        eprintln!("== phase {phase}: {} ms", ms(t.elapsed()));
    }
    tier.stop_plugin().await;
    let failures = tier.failures;
    let _ = writeln!(tier.results, "{}", serde_json::json!({"case": "done"}));
    let _ = tier.results.sync_all();
    std::process::exit(if failures == 0 { 0 } else { 1 });
}
