//! `flashblade-csi demo`: the JupyterHub story end to end on one machine,
//! against an embedded mock-flashblade and the driver on a private unix
//! socket, speaking CSI like the sidecars and kubelet would.
//!
//! Without root the node steps (mounts) are skipped and said so.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::{Config, Mode, Settings};
use crate::csi::{self, controller_client::ControllerClient, node_client::NodeClient};

/// Demo settings.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// How many users log in at 9:00.
    #[arg(long, default_value_t = 30)]
    pub users: usize,
    /// Array latency to simulate per request, in milliseconds.
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Keep the demo's working directory (printed at the end).
    #[arg(long)]
    pub keep: bool,
}

type Step = Result<(), String>;

fn cap(mode: csi::volume_capability::access_mode::Mode) -> csi::VolumeCapability {
    csi::VolumeCapability {
        access_type: Some(csi::volume_capability::AccessType::Mount(Default::default())),
        access_mode: Some(csi::volume_capability::AccessMode { mode: mode as i32 }),
    }
}

/// What the provisioner sends for a user's `claim-<user>` (10 GiB home).
fn home_request(name: String) -> csi::CreateVolumeRequest {
    csi::CreateVolumeRequest {
        name,
        capacity_range: Some(csi::CapacityRange {
            required_bytes: 10 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![cap(csi::volume_capability::access_mode::Mode::SingleNodeWriter)],
        parameters: [("defaultUserQuota".to_string(), "10Gi".to_string())].into(),
        ..Default::default()
    }
}

async fn connect(path: &Path) -> Result<Channel, String> {
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .map_err(|e| e.to_string())?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| e.to_string())
}

fn say(out: &mut String, line: impl AsRef<str>) {
    println!("{}", line.as_ref());
    let _ = writeln!(out, "{}", line.as_ref());
}

/// Runs the demo; returns the transcript.
pub(crate) async fn run(args: DemoArgs) -> Result<String, String> {
    let mut out = String::new();
    let work = tempfile::Builder::new()
        .prefix("flashblade-csi-demo-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let root = work.path().to_path_buf();
    let kubelet = root.join("kubelet");
    std::fs::create_dir_all(&kubelet).map_err(|e| e.to_string())?;
    let is_root = nix::unistd::geteuid().is_root();

    say(
        &mut out,
        "== flashblade-csi demo: JupyterHub homes and datasets on a (simulated) FlashBlade",
    );
    let mock = mock_flashblade::start(mock_flashblade::MockConfig {
        state_dir: Some(root.join("array")),
        eradication_delay: Duration::from_secs(24 * 3600),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot start mock-flashblade: {e}"))?;
    say(
        &mut out,
        format!(
            "array: mock-flashblade at {} (TLS, CA {})",
            mock.url,
            mock.ca_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    );

    let token = root.join("api-token");
    std::fs::write(&token, &mock.api_token).map_err(|e| e.to_string())?;
    let socket = root.join("csi.sock");
    let config = Config::load(&Settings {
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
    .map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let admin_config = config.clone();
    let server = tokio::spawn(crate::app::run(config, async {
        let _ = stop_rx.await;
    }));
    for _ in 0..200 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let channel = connect(&socket).await?;
    say(
        &mut out,
        format!(
            "driver: serving CSI on {} (controller and node)",
            socket.display()
        ),
    );

    let result = story(&args, &mut out, &mock, channel, &kubelet, &admin_config, is_root).await;
    // Leave no mounts behind, whatever happened.
    sweep_mounts(&root);
    let _ = stop_tx.send(());
    let _ = server.await;
    if args.keep {
        let kept = work.keep();
        say(&mut out, format!("kept the working directory {}", kept.display()));
    }
    result.map(|()| out)
}

async fn story(
    args: &DemoArgs,
    out: &mut String,
    mock: &mock_flashblade::MockHandle,
    channel: Channel,
    kubelet: &Path,
    admin_config: &Config,
    is_root: bool,
) -> Step {
    use csi::volume_capability::access_mode::Mode;
    let mut ctl = ControllerClient::new(channel.clone());
    let mut node = NodeClient::new(channel.clone());
    let e = |what: &str| {
        let what = what.to_string();
        move |s: tonic::Status| format!("{what}: {} ({:?})", s.message(), s.code())
    };

    // The admin's existing datasets file system, with content.
    let ds = mock.fs_dir("datasets");
    {
        let clients = crate::app::array_clients(admin_config).map_err(|e| e.to_string())?;
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
        .map_err(|e| e.to_string())?;
        fb.logout().await;
    }
    std::fs::write(ds.join("iris.csv"), "sepal_length,sepal_width\n5.1,3.5\n").map_err(|e| e.to_string())?;
    say(
        out,
        "admin: file system `datasets` exists on the array (1 TiB, iris.csv inside)",
    );

    mock.set_faults(mock_flashblade::Faults {
        latency_ms: args.latency_ms,
        ..Default::default()
    });
    mock.reset_counters();
    // 9:00: the class logs in. KubeSpawner creates claim-<user>; the
    // provisioner calls CreateVolume for each, all at once.
    let users: Vec<String> = ["alice", "bob"]
        .into_iter()
        .map(String::from)
        .chain((2..args.users.max(2)).map(|i| format!("student{i:03}")))
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
        volumes.push(r.map_err(|e| e.to_string())?.map_err(e("CreateVolume"))?);
    }
    volumes.sort_by(|a, b| a.volume_id.cmp(&b.volume_id));
    let took = start.elapsed();
    let c = mock.counters();
    say(
        out,
        format!(
            "9:00: {} users log in: {} home file systems with a 10 GiB hard quota in {:.2?} ({:.0}/s) with {} ms array latency; {} array requests, {} login",
            users.len(),
            volumes.len(),
            took,
            volumes.len() as f64 / took.as_secs_f64(),
            args.latency_ms,
            c.total(),
            c.logins
        ),
    );
    // Replayed by the provisioner after a timeout: the same volume, no new file system.
    let again = ctl
        .create_volume(home_request(format!("pvc-claim-{}", users[0])))
        .await
        .map_err(e("CreateVolume replay"))?
        .into_inner()
        .volume
        .unwrap_or_default();
    let first = volumes
        .iter()
        .find(|v| {
            v.volume_context
                .get("fsName")
                .is_some_and(|n| n.ends_with("-alice"))
        })
        .ok_or("first user's volume missing")?
        .clone();
    if again.volume_id != first.volume_id {
        return Err("a replayed CreateVolume returned another volume".into());
    }
    say(
        out,
        format!(
            "the provisioner replays alice's CreateVolume: same volume {}",
            first.volume_id
        ),
    );

    let alice = first;
    if is_root {
        let staging = kubelet.join("plugins/kubernetes.io/csi/flashblade.csi.dev/alice/globalmount");
        let home = kubelet.join("pods/jupyter-alice/volumes/kubernetes.io~csi/home/mount");
        let ds_staging = kubelet.join("plugins/kubernetes.io/csi/flashblade.csi.dev/datasets/globalmount");
        let ds_target = kubelet.join("pods/jupyter-alice/volumes/kubernetes.io~csi/datasets/mount");
        node.node_stage_volume(csi::NodeStageVolumeRequest {
            volume_id: alice.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
            volume_capability: Some(cap(Mode::SingleNodeWriter)),
            volume_context: alice.volume_context.clone(),
            ..Default::default()
        })
        .await
        .map_err(e("NodeStageVolume"))?;
        node.node_publish_volume(csi::NodePublishVolumeRequest {
            volume_id: alice.volume_id.clone(),
            staging_target_path: staging.display().to_string(),
            target_path: home.display().to_string(),
            volume_capability: Some(cap(Mode::SingleNodeWriter)),
            volume_context: alice.volume_context.clone(),
            ..Default::default()
        })
        .await
        .map_err(e("NodePublishVolume"))?;
        std::fs::write(home.join("analysis.ipynb"), "{\"cells\": [\"first draft\"]}")
            .map_err(|e| e.to_string())?;
        say(
            out,
            "alice's notebook pod: her home mounted read-write (/home/jovyan); analysis.ipynb saved",
        );

        // The datasets, read-only, even though the pod asks for read-write.
        let ds_vol = "fb01/datasets";
        node.node_stage_volume(csi::NodeStageVolumeRequest {
            volume_id: ds_vol.into(),
            staging_target_path: ds_staging.display().to_string(),
            volume_capability: Some(cap(Mode::MultiNodeReaderOnly)),
            ..Default::default()
        })
        .await
        .map_err(e("NodeStageVolume datasets"))?;
        node.node_publish_volume(csi::NodePublishVolumeRequest {
            volume_id: ds_vol.into(),
            staging_target_path: ds_staging.display().to_string(),
            target_path: ds_target.display().to_string(),
            volume_capability: Some(cap(Mode::MultiNodeReaderOnly)),
            readonly: false,
            ..Default::default()
        })
        .await
        .map_err(e("NodePublishVolume datasets"))?;
        let rows = std::fs::read_to_string(ds_target.join("iris.csv"))
            .map_err(|e| e.to_string())?
            .lines()
            .count();
        let write = std::fs::write(ds_target.join("oops.csv"), "x");
        match write {
            Err(err) if err.raw_os_error() == Some(nix::errno::Errno::EROFS as i32) => say(
                out,
                format!("alice reads datasets/iris.csv ({rows} lines); writing there fails: {err}"),
            ),
            other => {
                return Err(format!(
                    "a write to the read-only datasets did not fail with EROFS: {other:?}"
                ));
            }
        }

        // Snapshot, an accident, and the restore.
        let snap = ctl
            .create_snapshot(csi::CreateSnapshotRequest {
                name: "snapshot-alice-before-deadline".into(),
                source_volume_id: alice.volume_id.clone(),
                ..Default::default()
            })
            .await
            .map_err(e("CreateSnapshot"))?
            .into_inner()
            .snapshot
            .unwrap_or_default();
        std::fs::write(home.join("analysis.ipynb"), "{\"cells\": []}").map_err(|e| e.to_string())?;
        say(
            out,
            format!(
                "snapshot {} taken; then alice empties her notebook by mistake",
                snap.snapshot_id
            ),
        );
        crate::admin::restore(admin_config.clone(), &alice.volume_id, &snap.snapshot_id)
            .await
            .map_err(|e| e.to_string())?;
        let back = std::fs::read_to_string(home.join("analysis.ipynb")).map_err(|e| e.to_string())?;
        if !back.contains("first draft") {
            return Err("restore did not bring the notebook back".into());
        }
        say(
            out,
            "admin: `flashblade-csi restore` brings analysis.ipynb back from the snapshot",
        );

        let stats = node
            .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
                volume_id: alice.volume_id.clone(),
                volume_path: home.display().to_string(),
                ..Default::default()
            })
            .await
            .map_err(e("NodeGetVolumeStats"))?
            .into_inner();
        let healthy = stats.volume_condition.as_ref().is_some_and(|c| !c.abnormal);
        say(
            out,
            format!(
                "kubelet volume stats for alice's home: {} usage figures, healthy: {healthy}",
                stats.usage.len()
            ),
        );

        // Alice logs out: the pod goes away.
        for (target, staging, vol) in [
            (&home, &staging, alice.volume_id.as_str()),
            (&ds_target, &ds_staging, ds_vol),
        ] {
            node.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
                volume_id: vol.into(),
                target_path: target.display().to_string(),
            })
            .await
            .map_err(e("NodeUnpublishVolume"))?;
            node.node_unstage_volume(csi::NodeUnstageVolumeRequest {
                volume_id: vol.into(),
                staging_target_path: staging.display().to_string(),
            })
            .await
            .map_err(e("NodeUnstageVolume"))?;
        }
        say(
            out,
            "alice logs out: mounts removed (decided from /proc/self/mountinfo)",
        );
        ctl.delete_snapshot(csi::DeleteSnapshotRequest {
            snapshot_id: snap.snapshot_id.clone(),
            ..Default::default()
        })
        .await
        .map_err(e("DeleteSnapshot"))?;
    } else {
        say(out, "(not root: skipping the node steps — mounting needs root)");
    }

    // More room for one user: online expansion.
    let bob = volumes
        .iter()
        .find(|v| {
            v.volume_context
                .get("fsName")
                .is_some_and(|n| n.ends_with("-bob"))
        })
        .ok_or("bob's volume missing")?
        .clone();
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
        .map_err(e("ControllerExpandVolume"))?
        .into_inner();
    say(
        out,
        format!("bob's quota grows online to {} GiB", grown.capacity_bytes >> 30),
    );

    // A user is deleted from the hub: their PVC goes, the file system is only destroyed.
    ctl.delete_volume(csi::DeleteVolumeRequest {
        volume_id: alice.volume_id.clone(),
        ..Default::default()
    })
    .await
    .map_err(e("DeleteVolume"))?;
    let fs_name = alice.volume_context.get("fsName").cloned().unwrap_or_default();
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
    say(
        out,
        format!(
            "alice is deleted from the hub: {fs_name} is destroyed, recoverable on the array for 24 h (kept as {tomb}, so the name is free again)"
        ),
    );
    let dataset_refused = ctl
        .delete_volume(csi::DeleteVolumeRequest {
            volume_id: "fb01/datasets".into(),
            ..Default::default()
        })
        .await
        .err()
        .map(|s| s.code());
    let refused = dataset_refused.map_or("accepted!".to_string(), |c| format!("{c:?}"));
    say(
        out,
        format!(
            "a DeleteVolume on the datasets volume is refused ({refused}): imported file systems are never deleted"
        ),
    );
    if dataset_refused.is_none() {
        return Err("the datasets volume was deleted".into());
    }
    let c = mock.counters();
    say(
        out,
        format!(
            "done: {} array requests in all; {} logins (the driver's one session, and the restore command's own)",
            c.total(),
            c.logins
        ),
    );
    Ok(())
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

/// Runs the demo with its own runtime and reports an exit code. Driver logs
/// are off unless RUST_LOG asks for them: the story goes to stdout.
pub fn main(args: DemoArgs) -> i32 {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into());
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
    match runtime.block_on(run(args)) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("flashblade-csi demo failed: {e}");
            1
        }
    }
}
