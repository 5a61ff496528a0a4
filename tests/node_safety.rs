//! The node plugin as a hostile caller or a dead server meets it (root, real
//! mounts): no path leads out of the kubelet directory, a mount is found
//! through any path that resolves to it, publish cannot unmount the staging
//! mount, a dead file system costs a bounded number of threads and never
//! blocks other volumes or the process's exit, and signals and socket modes
//! are handled.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::create_req;
use common::node::*;
use flashblade_csi::csi::{self, controller_client::ControllerClient, node_client::NodeClient};
use tonic::Code;
use tonic::transport::Channel;

/// A directory outside the kubelet dir that must stay untouched.
fn outside() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("outside-").tempdir().unwrap()
}

async fn home(ne: &NodeEnv, name: &str) -> (csi::Volume, NodeClient<Channel>) {
    let ch = ne.env.driver.channel().await;
    let v = ControllerClient::new(ch.clone())
        .create_volume(create_req(name, 1 << 30))
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    (v, NodeClient::new(ch))
}

fn no_mount_under(dir: &Path) -> bool {
    !std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| Path::new(p).starts_with(dir))
}

#[tokio::test]
async fn stage_never_follows_a_symlink_out_of_the_kubelet_dir() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let (v, mut node) = home(&ne, "pvc-esc").await;
    let out = outside();
    let k = &ne.kubelet;
    symlink(out.path(), k.join("outlnk")).unwrap();
    symlink("/", k.join("rootlnk")).unwrap();
    std::fs::create_dir_all(out.path().join("st")).unwrap();
    symlink(out.path().join("st"), k.join("stagelnk")).unwrap();
    let probe = format!("fbcsi-probe-{}", std::process::id());
    let cases = [
        k.join("outlnk/probe"),
        k.join(format!("rootlnk/tmp/{probe}")),
        k.join("stagelnk"),
        k.join("outlnk/st"),
    ];
    for staging in &cases {
        let e = node
            .node_stage_volume(stage_req(&v, staging, 5))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}: {e:?}", staging.display());
        assert!(e.message().contains("kubelet directory"), "{}", e.message());
    }
    assert!(
        !out.path().join("probe").exists(),
        "created outside the kubelet dir"
    );
    assert!(!Path::new("/tmp").join(&probe).exists());
    assert!(no_mount_under(out.path()));
    assert!(no_mount_under(Path::new("/tmp").join(&probe).as_path()));
}

#[tokio::test]
async fn a_mount_is_found_through_any_path_that_resolves_to_it() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let (v, mut node) = home(&ne, "pvc-alias").await;
    let k = &ne.kubelet;
    std::fs::create_dir_all(k.join("real")).unwrap();
    symlink("real", k.join("alias")).unwrap();
    let staging = k.join("real/stage");
    node.node_stage_volume(stage_req(&v, &staging, 5)).await.unwrap();
    assert!(mounted(&staging));
    // Staging again through the alias is the same staging: OK, no second mount.
    node.node_stage_volume(stage_req(&v, &k.join("alias/stage"), 5))
        .await
        .unwrap();
    let stacked = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == staging.to_str())
        .count();
    assert_eq!(stacked, 1);
    unstage(&mut node, &v.volume_id, &k.join("alias/stage")).await;
    assert!(!mounted(&staging), "unstage through the alias left the mount");
}

#[tokio::test]
async fn unpublish_never_removes_anything_outside() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let out = outside();
    std::fs::create_dir(out.path().join("victim")).unwrap();
    symlink(out.path(), ne.kubelet.join("outlnk")).unwrap();
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    let e = node
        .node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
            volume_id: "fb01/k8s-x/1".into(),
            target_path: ne.kubelet.join("outlnk/victim").to_string_lossy().into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(out.path().join("victim").is_dir(), "removed a directory outside");
    // The same through unstage and stats.
    let e = node
        .node_unstage_volume(csi::NodeUnstageVolumeRequest {
            volume_id: "fb01/k8s-x/1".into(),
            staging_target_path: ne.kubelet.join("outlnk/victim").to_string_lossy().into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = node
        .node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
            volume_id: "fb01/k8s-x/1".into(),
            volume_path: ne.kubelet.join("outlnk/victim").to_string_lossy().into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn publish_cannot_reach_the_staging_mount_and_bad_paths_are_invalid() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let (v, mut node) = home(&ne, "pvc-same").await;
    let k = &ne.kubelet;
    let staging = k.join("plugins/x/globalmount");
    node.node_stage_volume(stage_req(&v, &staging, 5)).await.unwrap();
    for target in [staging.clone(), staging.join("inner"), k.join("plugins/x")] {
        let e = node
            .node_publish_volume(publish_req(&v, &staging, &target, false, 5))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}: {e:?}", target.display());
    }
    assert!(mounted(&staging), "the staging mount must survive");
    assert!(!staging.join("inner").exists());

    // A staging path that is a regular file: INVALID_ARGUMENT, not INTERNAL.
    let file = k.join("plugins/afile");
    std::fs::write(&file, "x").unwrap();
    let e = node.node_stage_volume(stage_req(&v, &file, 5)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    // A target that is a file likewise, in publish and unpublish.
    let e = node
        .node_publish_volume(publish_req(&v, &staging, &file, false, 5))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    unstage(&mut node, &v.volume_id, &staging).await;
}

#[tokio::test]
async fn a_volume_on_an_array_without_an_endpoint_is_refused() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let mut node = NodeClient::new(ne.env.driver.channel().await);
    std::fs::create_dir_all(ne.env.mock.fs_dir("datasets")).unwrap();
    let staging = ne.kubelet.join("plugins/ds/globalmount");
    for id in ["fb99/datasets", "fb99/datasets/1234"] {
        let e = node
            .node_stage_volume(csi::NodeStageVolumeRequest {
                volume_id: id.into(),
                staging_target_path: staging.to_string_lossy().into(),
                volume_capability: Some(common::mount_cap(3)),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition, "{id}: {e:?}");
        assert!(e.message().contains("fb99"), "{}", e.message());
    }
    assert!(!mounted(&staging));
    // Naming the server in the volume context is the way to use it.
    let mut ctx = std::collections::HashMap::new();
    ctx.insert("server".to_string(), "127.0.0.1".to_string());
    node.node_stage_volume(csi::NodeStageVolumeRequest {
        volume_id: "fb99/datasets".into(),
        staging_target_path: staging.to_string_lossy().into(),
        volume_capability: Some(common::mount_cap(3)),
        volume_context: ctx,
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(mounted(&staging));
    unstage(&mut node, "fb99/datasets", &staging).await;
}

/// Threads of this process named like the node's statfs workers.
fn statfs_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == flashblade_csi::node::mounter::STATFS_THREAD)
        .count()
}

/// Mounts the FUSE file system at `at` (answering while `answering` is set).
fn fuse_at(at: &Path, answering: Arc<AtomicBool>) -> Option<fuser::BackgroundSession> {
    if !Path::new("/dev/fuse").exists() {
        assert!(std::env::var_os("CI").is_none(), "FUSE must work in CI");
        eprintln!("skipped: no /dev/fuse");
        return None;
    }
    std::fs::create_dir_all(at).unwrap();
    match fuser::spawn_mount2(
        hang::Hung(answering),
        at,
        &[
            fuser::MountOption::FSName("dead-nfs".into()),
            fuser::MountOption::AllowOther,
        ],
    ) {
        Ok(s) => Some(s),
        Err(e) => {
            assert!(std::env::var_os("CI").is_none(), "FUSE must work in CI: {e}");
            eprintln!("skipped: cannot mount FUSE here: {e}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_file_system_costs_bounded_threads_and_blocks_nothing_else() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let (v, mut node) = home(&ne, "pvc-healthy").await;
    let k = ne.kubelet.clone();
    let staging = k.join("plugins/healthy/globalmount");
    let target = k.join("pods/ok/volumes/kubernetes.io~csi/pvc-healthy/mount");
    node.node_stage_volume(stage_req(&v, &staging, 5)).await.unwrap();
    node.node_publish_volume(publish_req(&v, &staging, &target, false, 5))
        .await
        .unwrap();

    // One dead file system, seen at 40 pod targets (binds of it), more
    // paths than the cap on stuck statfs threads.
    let answering = Arc::new(AtomicBool::new(true));
    let Some(session) = fuse_at(&k.join("plugins/dead/globalmount"), answering.clone()) else {
        return;
    };
    let dead_targets: Vec<PathBuf> = (0..40)
        .map(|i| k.join(format!("pods/d{i}/volumes/kubernetes.io~csi/pvc-dead/mount")))
        .collect();
    for t in &dead_targets {
        std::fs::create_dir_all(t).unwrap();
        nix::mount::mount(
            Some(&k.join("plugins/dead/globalmount")),
            t,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
    }
    answering.store(false, Ordering::SeqCst); // the server dies

    let before = statfs_threads();
    let start = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    for i in 0..1000 {
        let mut node = node.clone();
        let path = dead_targets[i % dead_targets.len()].clone();
        let sem = sem.clone();
        calls.spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let t = Instant::now();
            let r = stats(&mut node, "fb01/k8s-pvc-dead/1", &path).await;
            (t.elapsed(), r)
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(r) = calls.join_next().await {
        let (took, resp) = r.unwrap();
        slowest = slowest.max(took);
        let cond = resp.volume_condition.unwrap();
        assert!(cond.abnormal, "a dead volume reported healthy");
        assert!(resp.usage.is_empty());
    }
    // Deadline 1 s; the slack is for a loaded 2-core machine.
    assert!(slowest < Duration::from_secs(4), "slowest stats call {slowest:?}");
    // One dead mount, however many pods see it, costs one thread.
    let stuck = statfs_threads() - before;
    assert_eq!(stuck, 1, "{stuck} statfs threads stuck for one dead mount");
    eprintln!(
        "1000 stats calls on a dead file system: {:?}, slowest {slowest:?}, {stuck} threads stuck",
        start.elapsed()
    );

    // The healthy volume still unpublishes and unstages, quickly.
    let t = Instant::now();
    unpublish(&mut node, &v.volume_id, &target).await;
    unstage(&mut node, &v.volume_id, &staging).await;
    assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
    assert!(!mounted(&target) && !mounted(&staging));
    // And so do the dead targets (umount2 never looks at the server).
    for t in &dead_targets[..5] {
        unpublish(&mut node, "fb01/k8s-pvc-dead/1", t).await;
        assert!(!mounted(t));
    }
    // Let the daemon answer every stuck statfs before it goes away, or the
    // threads waiting on it would keep this process from exiting.
    answering.store(true, Ordering::SeqCst);
    let t = Instant::now();
    while statfs_threads() > before && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(session);
}

/// Starts the release-style binary in node mode on `kubelet`.
fn spawn_node(dir: &Path, kubelet: &Path) -> (std::process::Child, PathBuf) {
    let socket = dir.join("node.sock");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
        .args([
            "serve",
            "--mode",
            "node",
            "--node-id",
            "n1",
            "--stats-timeout",
            "1s",
        ])
        .arg("--endpoint")
        .arg(format!("unix://{}", socket.display()))
        .arg("--kubelet-dir")
        .arg(kubelet)
        .arg("--shutdown-grace")
        .arg("2s")
        .stderr(std::fs::File::create(dir.join("node.log")).unwrap())
        .spawn()
        .unwrap();
    (child, socket)
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[tokio::test]
async fn sigterm_ends_the_process_even_with_a_statfs_stuck() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    let _sweep = MountSweeper(kubelet.clone());
    let target = kubelet.join("pods/p/volumes/kubernetes.io~csi/pvc-dead/mount");
    let answering = Arc::new(AtomicBool::new(false));
    let Some(session) = fuse_at(&target, answering.clone()) else {
        return;
    };
    // The FUSE daemon answers one request at a time: occupy it with a
    // statfs from this process first, so the plugin's request waits in the
    // kernel queue, where a fatal signal ends the wait, as it does on a hard
    // NFS mount. (A request the daemon has already read is waited for
    // uninterruptibly, which no NFS call does.)
    // (From another process: a thread of this one stuck there would keep
    // the test binary from exiting if anything went wrong.)
    let mut blocker = std::process::Command::new("stat")
        .arg("-f")
        .arg(&target)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (mut child, socket) = spawn_node(dir.path(), &kubelet);
    common::wait_for_socket(&socket).await;
    let mut node = NodeClient::new(common::connect(&socket).await);
    let stats = stats(&mut node, "fb01/k8s-pvc-dead/1", &target).await;
    assert!(stats.volume_condition.unwrap().abnormal);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(8));
    // Release the file system either way, so nothing hangs after the test.
    answering.store(true, Ordering::SeqCst);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = wait_exit(&mut blocker, Duration::from_secs(5));
    drop(session);
    let log = std::fs::read_to_string(dir.path().join("node.log")).unwrap_or_default();
    let status =
        status.unwrap_or_else(|| panic!("the process did not exit within 8 s of SIGTERM; its log:\n{log}"));
    assert!(status.success(), "{status:?}");
    assert!(!socket.exists(), "socket left behind");
}

#[tokio::test]
async fn sighup_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let kubelet = dir.path().join("kubelet");
    std::fs::create_dir(&kubelet).unwrap();
    let (mut child, socket) = spawn_node(dir.path(), &kubelet);
    common::wait_for_socket(&socket).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(8));
    if status.is_none() {
        let _ = child.kill();
    }
    let status = status.expect("no exit after SIGHUP");
    assert!(status.success(), "SIGHUP killed the process: {status:?}");
    assert!(!socket.exists(), "socket left behind");
}

/// A signal sent the moment the socket file appears (kubelet or an operator
/// can be that quick) still stops the plugin cleanly: the handlers exist
/// before the socket does.
#[tokio::test]
async fn a_signal_right_after_the_socket_appears_stops_cleanly() {
    for sig in [
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGTERM,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let kubelet = dir.path().join("kubelet");
        std::fs::create_dir(&kubelet).unwrap();
        let (mut child, socket) = spawn_node(dir.path(), &kubelet);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(std::time::Instant::now() < deadline, "socket never appeared");
            std::thread::sleep(Duration::from_micros(200));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(8));
        if status.is_none() {
            let _ = child.kill();
        }
        let status = status.expect("no exit after the signal");
        assert!(
            status.success(),
            "{sig} right after start killed the process: {status:?}"
        );
    }
}

#[test]
fn world_writable_socket_modes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["666", "0o777", "662"] {
        let log = dir.path().join("err.log");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_flashblade-csi"))
            .args([
                "serve",
                "--mode",
                "node",
                "--node-id",
                "n1",
                "--socket-mode",
                mode,
            ])
            .arg("--endpoint")
            .arg(format!("unix://{}", dir.path().join("s.sock").display()))
            .arg("--kubelet-dir")
            .arg(dir.path())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(10));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert_eq!(status.and_then(|s| s.code()), Some(2), "{mode} was accepted");
        let err = std::fs::read_to_string(&log).unwrap();
        assert!(
            err.contains("socket-mode") && err.contains("every local user"),
            "{err}"
        );
        assert!(!dir.path().join("s.sock").exists());
    }
}

#[tokio::test]
async fn read_only_holds_in_every_propagated_copy() {
    require_root!();
    let ne = node_env(|_| {}).await;
    let (v, mut node) = home(&ne, "pvc-ro-prop").await;
    let k = ne.kubelet.clone();
    // As in a node pod: the kubelet dir is a shared mount whose peer is the
    // host's view of it (Bidirectional propagation).
    use nix::mount::{MsFlags, mount};
    mount(Some(&k), &k, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
    mount(None::<&str>, &k, None::<&str>, MsFlags::MS_SHARED, None::<&str>).unwrap();
    let host = tempfile::Builder::new()
        .prefix("host-view-")
        .tempdir()
        .unwrap()
        .keep();
    let _host_sweep = MountSweeper(host.clone());
    mount(Some(&k), &host, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();

    let staging = k.join("plugins/rp/globalmount");
    let target = k.join("pods/ro/volumes/kubernetes.io~csi/pvc-ro-prop/mount");
    node.node_stage_volume(stage_req(&v, &staging, 5)).await.unwrap();
    node.node_publish_volume(publish_req(&v, &staging, &target, true, 5))
        .await
        .unwrap();
    let host_copy = host.join("pods/ro/volumes/kubernetes.io~csi/pvc-ro-prop/mount");
    assert!(
        mounted(&host_copy),
        "the publish did not propagate to the host view"
    );
    for (what, dir) in [("plugin's", &target), ("host's", &host_copy)] {
        let e = std::fs::write(dir.join("x.txt"), "x").unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(nix::libc::EROFS),
            "{what} copy is writable: {e}"
        );
    }
    unpublish(&mut node, &v.volume_id, &target).await;
    unstage(&mut node, &v.volume_id, &staging).await;
}
