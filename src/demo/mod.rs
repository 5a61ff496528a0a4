//! `flashblade-csi demo`: the JupyterHub story end to end on one machine,
//! against an embedded mock-flashblade and the driver on a private unix
//! socket, speaking CSI like the sidecars and kubelet would.
//!
//! Without root the node steps (mounts) are skipped and each one is named.
//! Every exit path cleans up: the end of the story, an error, a panic,
//! Ctrl-C / SIGTERM / SIGHUP, and a reader that goes away (`demo | head`):
//! mounts under the working directory are detached, the driver and the
//! simulator stopped, and the working directory removed (unless `--keep`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::{Config, Mode, Settings};
use crate::csi::{self, controller_client::ControllerClient, node_client::NodeClient};

mod pods;
use pods::*;

/// Demo settings.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// How many users log in at 9:00 (alice, bob and N-2 students; 2 to 2000).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(2..=2000))]
    pub users: u64,
    /// Array latency to simulate per request, in milliseconds (at most 10000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub latency_ms: u64,
    /// Keep the demo's working directory (printed at the end).
    #[arg(long)]
    pub keep: bool,
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The story saw something other than what it tells.
    #[error("{0}")]
    Story(String),
    /// The driver refused or failed a CSI call.
    #[error("{what}: {} ({:?})", status.message(), status.code())]
    Rpc { what: String, status: tonic::Status },
    /// A file, the simulator, a tool: what was being done, and why it failed.
    #[error("{what}: {source}")]
    Failed {
        what: String,
        #[source]
        source: crate::error::Cause,
    },
}

impl From<String> for DemoError {
    fn from(s: String) -> Self {
        DemoError::Story(s)
    }
}

impl From<&str> for DemoError {
    fn from(s: &str) -> Self {
        DemoError::Story(s.to_string())
    }
}

/// `map_err` for a step that failed while doing `what`.
fn failed<E: Into<crate::error::Cause>>(what: impl Into<String>) -> impl FnOnce(E) -> DemoError {
    let what = what.into();
    move |e| DemoError::Failed {
        what,
        source: e.into(),
    }
}

/// `map_err` for a CSI call.
fn rpc(what: impl Into<String>) -> impl FnOnce(tonic::Status) -> DemoError {
    let what = what.into();
    move |status| DemoError::Rpc { what, status }
}

type Step = Result<(), DemoError>;

fn cap(mode: csi::volume_capability::access_mode::Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

/// What the provisioner sends for a user's `claim-<user>` (10 GiB home;
/// the StorageClass `fb-home`: hard limit on, no default user quota).
fn home_request(name: String) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name,
        capacity_range: Some(csi::CapacityRange {
            required_bytes: 10 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap(csi::volume_capability::access_mode::Mode::SingleNodeWriter)],
        parameters: [("hardLimit".to_string(), "true".to_string())].into(),
        ..Default::default()
    }
}

/// The example VolumeAttributesClass `home-strict` (deploy/), as the
/// csi-resizer passes it to ControllerModifyVolume.
fn home_strict() -> std::collections::HashMap<String, String> {
    [
        ("hardLimit".to_string(), "true".to_string()),
        ("defaultUserQuota".to_string(), "10Gi".to_string()),
    ]
    .into()
}

async fn connect(path: &Path) -> Result<Channel, DemoError> {
    let what = format!("connecting to {}", path.display());
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .map_err(failed("the endpoint"))?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(failed(what))
}

/// What the demo prints: stdout, and a copy for the caller. A closed stdout
/// (the reader went away, as `demo | head` does) stops the story: the
/// process cleans up and exits instead of dying on SIGPIPE half-way.
struct Transcript {
    text: String,
    stdout_closed: std::sync::Arc<tokio::sync::Notify>,
    closed: bool,
}

impl Transcript {
    fn say(&mut self, line: impl AsRef<str>) {
        use std::io::Write as _;
        let line = line.as_ref();
        let _ = writeln!(self.text, "{line}");
        if self.closed {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{line}").and_then(|()| stdout.flush()).is_err() {
            self.closed = true;
            self.stdout_closed.notify_one();
        }
    }
}

/// How the demo ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGINT, SIGTERM or SIGHUP (the signal number).
    Signal(i32),
    /// stdout was closed.
    OutputClosed,
}

/// The demo's outcome: the transcript, an error, or an early stop; in every
/// case after the clean-up.
#[derive(Debug)]
pub enum Outcome {
    Done(String),
    Failed(DemoError),
    Stopped(Stopped),
}

/// Detaches every mount under the working directory when dropped: on
/// success, on error, on a stop and while unwinding from a panic. It runs
/// before the directory is removed, so removal never reaches into a mount.
struct MountSweeper(PathBuf);

impl Drop for MountSweeper {
    fn drop(&mut self) {
        sweep_mounts(&self.0);
    }
}

/// Resolves on the first SIGINT, SIGTERM or SIGHUP.
fn stop_signal() -> impl std::future::Future<Output = i32> {
    use tokio::signal::unix::{SignalKind, signal};
    // Installed now, not at the first poll: a Ctrl-C at any point after this
    // stops the demo cleanly instead of killing it with the default action.
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(mut int), Ok(mut term), Ok(mut hup)) = handlers else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
        }
    }
}

/// Runs the demo, stopping early on a signal or a closed stdout, and cleans
/// up on every path.
pub async fn run(args: DemoArgs) -> Outcome {
    // Handlers first, so a Ctrl-C during start-up is not lost.
    let signal = stop_signal();
    tokio::pin!(signal);
    let stdout_closed = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut out = Transcript {
        text: String::new(),
        stdout_closed: stdout_closed.clone(),
        closed: false,
    };
    let work = match tempfile::Builder::new().prefix("flashblade-csi-demo-").tempdir() {
        Ok(w) => w,
        Err(e) => return Outcome::Failed(failed("cannot make a working directory")(e)),
    };
    let root = work.path().to_path_buf();
    let sweeper = MountSweeper(root.clone());
    let result = tokio::select! {
        r = demo(&args, &mut out, &root) => r.map(|()| None),
        n = &mut signal => Ok(Some(Stopped::Signal(n))),
        () = stdout_closed.notified() => Ok(Some(Stopped::OutputClosed)),
    };
    // The story, the driver and the simulator are gone (dropped or
    // stopped); now the mounts, then the directory.
    drop(sweeper);
    let stopped_early = matches!(result, Ok(Some(_)));
    if args.keep && !stopped_early {
        let kept = work.keep();
        out.say(format!("kept the working directory {}", kept.display()));
    } else {
        let path = work.keep();
        if let Err(e) = remove_work_dir(&path) {
            eprintln!("flashblade-csi demo: could not remove {}: {e}", path.display());
        }
    }
    match result {
        Ok(None) => Outcome::Done(out.text),
        Ok(Some(stop)) => Outcome::Stopped(stop),
        Err(e) => Outcome::Failed(e),
    }
}

/// Starts the simulator and the driver under `root` and tells the story.
async fn demo(args: &DemoArgs, out: &mut Transcript, root: &Path) -> Step {
    let kubelet = root.join("kubelet");
    std::fs::create_dir_all(&kubelet).map_err(failed(format!("creating {}", kubelet.display())))?;
    let is_root = nix::unistd::geteuid().is_root();

    out.say("== flashblade-csi demo: JupyterHub homes and datasets on a (simulated) FlashBlade");
    // The simulator's file systems on btrfs, so that hard limits hold on
    // writes as on a FlashBlade; unmounted when this returns (or, on a
    // signal, by the sweep of the working directory).
    let scratch = mock_flashblade::BtrfsScratch::mount(&root.join("array.img"), &root.join("array"), 2 << 30);
    let mock = mock_flashblade::start(mock_flashblade::MockConfig {
        state_dir: Some(root.join("array")),
        eradication_delay: Duration::from_secs(24 * 3600),
        ..Default::default()
    })
    .await
    .map_err(failed("cannot start mock-flashblade"))?;
    out.say(format!(
        "array: mock-flashblade at {} (TLS, CA {})",
        mock.url,
        mock.ca_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    ));
    // Why writes are not limited, when they are not: the mock's reason, or
    // why there is no btrfs under it.
    let no_limits = match (&mock.hard_limits, &scratch) {
        (Ok(()), _) => None,
        (Err(_), Err(why)) => Some(mock_flashblade::error_chain(why)),
        (Err(why), Ok(_)) => Some(mock_flashblade::error_chain(why)),
    };
    if no_limits.is_none() {
        out.say("  its file systems live in a btrfs image here, so a hard quota refuses writes as on a FlashBlade");
    }

    let token = root.join("api-token");
    std::fs::write(&token, &mock.api_token).map_err(failed(format!("writing {}", token.display())))?;
    let socket = root.join("csi.sock");
    // The demo has no cluster, and must not read the user's own: the admin
    // commands get a kubeconfig whose API server is a closed port, so they
    // print the array's side only.
    let kubeconfig = root.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster: {server: \"https://127.0.0.1:1\"}\n\
         users:\n- name: none\n  user: {}\ncontexts:\n- name: none\n  context: {cluster: none, user: none}\n\
         current-context: none\n",
    )
    .map_err(failed("writing the demo's kubeconfig"))?;
    let config = Config::load(&Settings {
        kubeconfig: Some(kubeconfig),
        mode: Some(Mode::All),
        endpoint: Some(format!("unix://{}", socket.display())),
        node_id: Some("demo-node".into()),
        kubelet_dir: Some(kubelet.clone()),
        local_export_root: Some(mock.data_dir.clone()),
        array: crate::config::ArraySettings {
            name: Some("fb01".parse().unwrap()),
            management_url: Some(mock.url.clone()),
            api_token_file: Some(token),
            ca_file: mock.ca_file.clone(),
            nfs_endpoint: Some("127.0.0.1".parse().unwrap()),
            default_export_rules: Some("127.0.0.0/8(rw,root_squash)".into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .map_err(failed("the driver's configuration"))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin_config = config.clone();
    let mut server = tokio::spawn(crate::app::run(config, async {
        let _ = stop_rx.await;
    }));
    let result = async {
        for _ in 0..200 {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let channel = connect(&socket).await?;
        out.say(format!(
            "driver: serving CSI on {} (controller and node)",
            socket.display()
        ));
        let env = StoryEnv {
            mock: &mock,
            kubelet: &kubelet,
            admin_config: &admin_config,
            is_root,
            no_limits,
        };
        story(args, out, channel, &env).await
    }
    .await;
    // The pods' mounts first (the driver would refuse nothing, but a
    // stopped driver cannot unmount), then the driver, with a bound; the
    // array's own file system last, after the simulator.
    sweep_mounts(&kubelet);
    let _ = stop_tx.send(());
    if tokio::time::timeout(Duration::from_secs(10), &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
    mock.stop();
    drop(mock);
    drop(scratch);
    result
}

/// What the story runs against.
struct StoryEnv<'a> {
    mock: &'a mock_flashblade::MockHandle,
    kubelet: &'a Path,
    admin_config: &'a Config,
    is_root: bool,
    /// Why a write past a hard quota is not refused here, if it is not.
    no_limits: Option<String>,
}

async fn story(args: &DemoArgs, out: &mut Transcript, channel: Channel, env: &StoryEnv<'_>) -> Step {
    let StoryEnv {
        mock,
        admin_config,
        is_root,
        ..
    } = *env;
    let mut ctl = ControllerClient::new(channel.clone());
    let mut node = NodeClient::new(channel.clone());

    // The admin's existing datasets file system, with content.
    let ds = mock.fs_dir("datasets");
    {
        let clients = crate::app::array_clients(admin_config, &crate::metrics::Metrics::new())
            .map_err(failed("the array clients"))?;
        let fb = clients.get("fb01").ok_or("no array client")?;
        fb.create_file_system(
            "datasets",
            &crate::flashblade::FileSystemSpec {
                provisioned: Some(1 << 40),
                nfs_v41: true,
                rules: Some("127.0.0.0/8(ro,root_squash)".into()),
                snapshot_directory: true,
                ..Default::default()
            },
        )
        .await
        .map_err(failed("creating the datasets file system"))?;
        std::fs::write(ds.join("iris.csv"), "sepal_length,sepal_width\n5.1,3.5\n")
            .map_err(failed("writing datasets/iris.csv"))?;
        // Version v1 of the dataset: a snapshot, as the admin's policy takes
        // them; then the data moves on.
        fb.create_snapshot("datasets", "v1")
            .await
            .map_err(failed("snapshotting the datasets as v1"))?;
        fb.logout().await;
    }
    std::fs::write(
        ds.join("iris.csv"),
        "sepal_length,sepal_width\n5.1,3.5\n4.9,3.0\n",
    )
    .map_err(failed("writing datasets/iris.csv"))?;
    out.say(
        "admin: file system `datasets` exists on the array (1 TiB, iris.csv inside); its snapshot datasets.v1 \
         keeps version v1 while the data moves on",
    );

    mock.set_faults(mock_flashblade::Faults {
        latency_ms: args.latency_ms,
        ..Default::default()
    });
    mock.reset_counters();
    // 9:00: the class logs in. KubeSpawner creates claim-<user>; the
    // provisioner asks the driver for each volume, all at once.
    let users: Vec<String> = ["alice", "bob"]
        .into_iter()
        .map(String::from)
        .chain((2..args.users).map(|i| format!("student{i:03}")))
        .collect();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for u in &users {
        let mut c = ctl.clone();
        let name = format!("pvc-claim-{u}");
        set.spawn(async move {
            c.create_volume(home_request(name))
                .await
                .map(|r| r.into_inner().volume.unwrap_or_default())
        });
    }
    let mut volumes = Vec::new();
    while let Some(r) = set.join_next().await {
        volumes.push(
            r.map_err(failed("a CreateVolume task"))?
                .map_err(rpc("CreateVolume"))?,
        );
    }
    volumes.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
    let took = start.elapsed();
    let c = mock.counters();
    out.say(format!(
        "9:00: {} users log in: {} home file systems with a 10 GiB hard quota in {:.2?} ({:.0}/s) with {} ms array latency; {} array requests, {} new logins (the driver's session from start-up is reused)",
        users.len(),
        volumes.len(),
        took,
        volumes.len() as f64 / took.as_secs_f64(),
        args.latency_ms,
        c.total(),
        c.logins
    ));
    // Sent again by the provisioner after a timeout: the same volume, no new file system.
    let again = ctl
        .create_volume(home_request(format!("pvc-claim-{}", users[0])))
        .await
        .map_err(rpc("CreateVolume retried"))?
        .into_inner()
        .volume
        .unwrap_or_default();
    let find = |user: &str| {
        volumes
            .iter()
            .find(|v| {
                v.volume_context
                    .get("fsName")
                    .is_some_and(|n| n.ends_with(&format!("-{user}")))
            })
            .cloned()
            .ok_or(format!("{user}'s volume missing"))
    };
    let alice = find("alice")?;
    if again.volume_id != alice.volume_id {
        return Err("a retried CreateVolume returned another volume".into());
    }
    let fs_name = alice.volume_context.get("fsName").cloned().unwrap_or_default();
    out.say(format!(
        "the provisioner retries alice's volume (as after a timeout): it gets the same file system {fs_name} back, not a second one"
    ));
    // What the array holds for her home.
    let limit = mock.with_state(|s| {
        s.file_systems
            .values()
            .find(|f| f.name == fs_name)
            .map(|f| (f.provisioned.unwrap_or(0), f.hard_limit_enabled))
    });
    let Some((provisioned, hard)) = limit else {
        return Err(format!("{fs_name} is not on the array").into());
    };
    out.say(format!(
        "on the array, {fs_name} has a quota of {} GiB, hard limit {}",
        provisioned >> 30,
        if hard { "on" } else { "off" }
    ));

    // The admin's policy for homes, as a VolumeAttributesClass every claim
    // names: the csi-resizer applies it to each volume.
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for v in &volumes {
        let mut c = ctl.clone();
        let volume_id = v.volume_id.clone();
        set.spawn(async move {
            c.controller_modify_volume(csi::ControllerModifyVolumeRequest {
                volume_id,
                mutable_parameters: home_strict(),
                ..Default::default()
            })
            .await
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(failed("a ControllerModifyVolume task"))?
            .map_err(rpc("ControllerModifyVolume"))?;
    }
    let took = start.elapsed();
    let strict = mock.with_state(|s| {
        s.file_systems
            .values()
            .filter(|f| !f.destroyed && f.default_user_quota == 10 << 30)
            .count()
    });
    if strict != volumes.len() {
        return Err(format!(
            "{strict} of {} homes have the 10 GiB default user quota after ControllerModifyVolume",
            volumes.len()
        )
        .into());
    }
    out.say(format!(
        "the admin's VolumeAttributesClass home-strict (hard limit on, 10 GiB per user by default) reaches every claim: \
         the csi-resizer changes all {} homes in {took:.2?} (ControllerModifyVolume), no pod restarted",
        volumes.len()
    ));

    let mut skipped: Vec<&str> = Vec::new();
    if is_root {
        node_steps(out, &mut ctl, &mut node, env, &alice).await?;
        if let Some(why) = &env.no_limits {
            skipped.push("a write past the hard quota failing (EDQUOT)");
            out.say(format!(
                "  - skipped: a write past the hard quota failing with EDQUOT (\"Disk quota exceeded\"), as it does on a FlashBlade: \
                 the simulator enforces hard limits only on btrfs, and {why}"
            ));
        }
    } else {
        skipped = vec![
            "alice's pod mounting her home and the datasets",
            "a write past the hard quota failing (EDQUOT)",
            "the write to the read-only datasets failing",
            "version v1 of the datasets next to the live data",
            "the snapshot, the accident and the restore",
            "the usage figures the kubelet reads",
            "the unmounts when alice logs out",
        ];
        out.say("not root: the steps that mount are skipped (mounting needs root):");
        for s in &skipped {
            out.say(format!("  - skipped: {s}"));
        }
    }

    // More room for one user: online expansion.
    let bob = find("bob")?;
    let grown = ctl
        .controller_expand_volume(csi::ControllerExpandVolumeRequest {
            volume_id: bob.volume_id.clone(),
            capacity_range: Some(csi::CapacityRange {
                required_bytes: 20 << 30,
                limit_bytes: 0,
            }),
            ..Default::default()
        })
        .await
        .map_err(rpc("ControllerExpandVolume"))?
        .into_inner();
    out.say(format!(
        "bob asks for more room: his quota grows to {} GiB while his pod runs",
        grown.capacity_bytes >> 30
    ));
    let bob_fs = bob.volume_context.get("fsName").cloned().unwrap_or_default();
    crate::admin::run(
        admin_config.clone(),
        crate::admin::Output::Table,
        crate::admin::Job::QuotaSet {
            volume: bob_fs.clone(),
            change: crate::admin::quota::QuotaChange {
                uid: Some(1000),
                quota: Some("15Gi".into()),
                ..Default::default()
            },
        },
    )
    .await
    .map_err(failed("flashblade-csi quota set"))?;
    let raised = mock.with_state(|s| {
        s.user_quotas
            .iter()
            .find(|q| q.fs_name == bob_fs && q.principal_id == 1000)
            .map(|q| q.quota)
    });
    if raised != Some(15 << 30) {
        return Err(format!("uid 1000's quota on {bob_fs} is {raised:?}, not 15 GiB").into());
    }
    out.say(format!(
        "and his notebook user (uid 1000) gets 15 GiB instead of the class's 10: \
         `flashblade-csi quota set {bob_fs} --uid 1000 --quota 15Gi`"
    ));

    // A user is deleted from the hub: their PVC goes, the file system is only destroyed.
    ctl.delete_volume(csi::DeleteVolumeRequest {
        volume_id: alice.volume_id.clone(),
        ..Default::default()
    })
    .await
    .map_err(rpc("DeleteVolume"))?;
    // Soft delete renames the file system to a tombstone (so the name is
    // free for a new claim) and destroys it.
    let tomb = mock.with_state(|s| {
        s.file_systems
            .values()
            .find(|f| f.destroyed && crate::volume::naming::tombstone_of(&fs_name, &f.name).is_some())
            .map(|f| f.name.clone())
    });
    let Some(tomb) = tomb else {
        return Err("the deleted volume is not in the destroyed (recoverable) state".into());
    };
    out.say(format!(
        "alice is deleted from the hub: {fs_name} is destroyed, recoverable on the array for 24 h (kept as {tomb}, so the name is free again)"
    ));
    // She comes back: the admin recovers the home and gives it to her claim.
    let report = crate::admin::run(
        admin_config.clone(),
        crate::admin::Output::Json,
        crate::admin::Job::Recover {
            volume: fs_name.clone(),
            args: crate::admin::recover::RecoverArgs {
                claim: Some(
                    "jhub/claim-alice"
                        .parse::<crate::cluster::ClaimName>()
                        .map_err(failed("the claim name"))?,
                ),
                storage_class: Some("fb-home".into()),
                access_mode: "ReadWriteOnce".into(),
                ..Default::default()
            },
        },
    )
    .await
    .map_err(failed("flashblade-csi recover"))?;
    let recovered: serde_json::Value =
        serde_json::from_str(&report.stdout).map_err(failed("recover's JSON report"))?;
    let handle = recovered["manifests"]["pv"]["spec"]["csi"]["volumeHandle"]
        .as_str()
        .ok_or("recover printed no PersistentVolume")?
        .to_string();
    let pv_name = recovered["manifests"]["pv"]["metadata"]["name"]
        .as_str()
        .unwrap_or_default();
    out.say(format!(
        "alice rejoins the course: `flashblade-csi recover {fs_name} --claim jhub/claim-alice` brings the file system back \
         under its name and prints PersistentVolume {pv_name} bound to her claim (no cluster here, so printed, not applied)"
    ));
    if is_root {
        let ctx: std::collections::HashMap<String, String> =
            recovered["manifests"]["pv"]["spec"]["csi"]["volumeAttributes"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
        let notebook = reattach(&mut node, env.kubelet, &handle, ctx).await?;
        if !notebook.contains("first draft") {
            return Err(format!("the recovered home does not hold alice's notebook: {notebook:?}").into());
        }
        out.say("her new pod mounts the recovered home through that PersistentVolume: analysis.ipynb is there, as she left it");
    } else {
        skipped.push("alice's pod mounting her recovered home");
        out.say("  - skipped: alice's pod mounting her recovered home (mounting needs root)");
    }

    let dataset_refused = ctl
        .delete_volume(csi::DeleteVolumeRequest {
            volume_id: "fb01/datasets".into(),
            ..Default::default()
        })
        .await
        .err()
        .map(|s| s.code());
    let refused = dataset_refused.map_or("accepted!".to_string(), |c| format!("{c:?}"));
    out.say(format!(
        "deleting the shared datasets volume is refused ({refused}): file systems the driver did not create are never deleted"
    ));
    if dataset_refused.is_none() {
        return Err("the datasets volume was deleted".into());
    }
    let c = mock.counters();
    let whose = "the driver kept the session it opened at start-up; each admin command logged in on its own";
    out.say(format!(
        "done: {} array requests and {} new logins since 9:00 ({whose})",
        c.total(),
        c.logins
    ));
    if !skipped.is_empty() {
        out.say(format!(
            "skipped: {} steps (listed above, with the reason)",
            skipped.len()
        ));
    }
    out.say("next: deploy/README.md installs the driver on a cluster (Helm or Kustomize);");
    out.say("      deploy/examples/jupyterhub/README.md is the JupyterHub recipe;");
    out.say("      README.md \"Try it against the simulator\" runs the driver and the simulator by hand.");
    Ok(())
}

/// Removes the working directory. The simulator's snapshot views are
/// read-only directories, which a user other than root cannot empty until
/// they are writable again.
fn remove_work_dir(dir: &Path) -> std::io::Result<()> {
    fn writable(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                writable(&entry.path());
            }
        }
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            writable(dir);
            std::fs::remove_dir_all(dir)
        }
        other => other,
    }
}

/// Lazily unmounts anything left under `root`, deepest first.
fn sweep_mounts(root: &Path) {
    let Ok(mounts) = crate::node::mountinfo::read() else {
        return;
    };
    let mut points: Vec<PathBuf> = mounts
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let _ = nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Runs the demo with its own runtime and reports an exit code: 0 when the
/// story ran to its end, 1 on a failure, 128 + the signal after a signal,
/// 141 (as SIGPIPE would) when stdout was closed. Driver logs are off
/// unless RUST_LOG asks for them: the story goes to stdout.
pub fn main(args: DemoArgs) -> i32 {
    // kube's client logs its failure to reach the (deliberately absent)
    // cluster at error level; the admin commands report that themselves.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "error,kube_client=off".into());
    let _ = crate::telemetry::init(&crate::config::LogConfig {
        format: crate::config::LogFormat::Human,
        filter,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flashblade-csi demo: cannot start runtime: {e}");
            return 1;
        }
    };
    let code = match runtime.block_on(run(args)) {
        Outcome::Done(_) => 0,
        Outcome::Failed(e) => {
            eprintln!("flashblade-csi demo failed: {}", crate::error::chain(&e));
            1
        }
        Outcome::Stopped(Stopped::Signal(n)) => {
            eprintln!("flashblade-csi demo: stopped by signal {n}; mounts and the working directory removed");
            128 + n
        }
        Outcome::Stopped(Stopped::OutputClosed) => 128 + libc::SIGPIPE,
    };
    // A blocking thread may still sit in a mount call: do not wait for it.
    runtime.shutdown_background();
    code
}
