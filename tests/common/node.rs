//! Helpers for the real-mount node tests: a driver in `all` mode whose
//! NodeStage bind-mounts the mock's directories, mount checks, a sweeper that
//! leaves no mounts behind, and a FUSE file system that can stop answering.

use std::path::{Path, PathBuf};

use flashblade_csi::config::{Mode, Settings};
use flashblade_csi::csi::{self, node_client::NodeClient};

use super::mount_cap;

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips a real-mount test without root, except in CI, where it must run.
macro_rules! require_root {
    () => {
        if !is_root() {
            assert!(
                std::env::var_os("CI").is_none(),
                "real-mount tests must run as root in CI"
            );
            eprintln!("skipped: real-mount tests need root");
            return;
        }
    };
}
pub(crate) use require_root;

pub fn mounted(path: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

/// Lazily unmounts everything under `dir` (deepest first), so a failed test
/// leaves no mounts behind.
pub struct MountSweeper(pub PathBuf);

impl Drop for MountSweeper {
    fn drop(&mut self) {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<String> = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|p| Path::new(p).starts_with(&self.0))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // Everything below is detached now, so this removes local files only.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct NodeEnv {
    pub env: super::ControllerEnv,
    pub kubelet: PathBuf,
    _sweep: MountSweeper,
}

/// A driver in `all` mode against a mock, with the kubelet dir in a temp dir
/// and NodeStage bind-mounting the mock's data directories.
pub async fn node_env(extra: impl FnOnce(&mut Settings)) -> NodeEnv {
    let mock = mock_flashblade::start(mock_flashblade::MockConfig::default())
        .await
        .unwrap();
    let kubelet = tempfile::Builder::new()
        .prefix("kubelet-")
        .tempdir()
        .unwrap()
        .keep();
    let sweep = MountSweeper(kubelet.clone());
    let data_dir = mock.data_dir.clone();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, &mock.api_token).unwrap();
    let mut args = Settings {
        mode: Some(Mode::All),
        node_id: Some("node-1".into()),
        kubelet_dir: Some(kubelet.clone()),
        local_export_root: Some(data_dir),
        array: flashblade_csi::config::ArraySettings {
            name: Some("fb01".parse().unwrap()),
            management_url: Some(mock.url.clone()),
            api_token_file: Some(token_file.clone()),
            ca_file: mock.ca_file.clone(),
            nfs_endpoint: Some("127.0.0.1".parse().unwrap()),
            default_export_rules: Some("10.0.0.0/16(rw,root_squash)".into()),
            ..Default::default()
        },
        timeouts: flashblade_csi::config::TimeoutSettings {
            stats: Some(std::time::Duration::from_secs(1)),
            unmount: Some(std::time::Duration::from_secs(3)),
            ..Default::default()
        },
        ..Default::default()
    };
    extra(&mut args);
    let driver = super::Driver::start(dir.path(), args).await;
    NodeEnv {
        env: super::ControllerEnv {
            mock,
            driver,
            dir,
            token_file,
        },
        kubelet,
        _sweep: sweep,
    }
}

pub fn stage_req(v: &csi::Volume, staging: &Path, mode: i32) -> csi::NodeStageVolumeRequest {
    csi::NodeStageVolumeRequest {
        volume_id: v.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
        volume_capability: Some(mount_cap(mode)),
        volume_context: v.volume_context.clone(),
        ..Default::default()
    }
}

pub fn publish_req(
    v: &csi::Volume,
    staging: &Path,
    target: &Path,
    readonly: bool,
    mode: i32,
) -> csi::NodePublishVolumeRequest {
    csi::NodePublishVolumeRequest {
        volume_id: v.volume_id.clone(),
        staging_target_path: staging.to_string_lossy().into(),
        target_path: target.to_string_lossy().into(),
        volume_capability: Some(mount_cap(mode)),
        readonly,
        volume_context: v.volume_context.clone(),
        ..Default::default()
    }
}

pub async fn unpublish(node: &mut NodeClient<tonic::transport::Channel>, volume_id: &str, target: &Path) {
    node.node_unpublish_volume(csi::NodeUnpublishVolumeRequest {
        volume_id: volume_id.into(),
        target_path: target.to_string_lossy().into(),
    })
    .await
    .unwrap();
}

pub async fn unstage(node: &mut NodeClient<tonic::transport::Channel>, volume_id: &str, staging: &Path) {
    node.node_unstage_volume(csi::NodeUnstageVolumeRequest {
        volume_id: volume_id.into(),
        staging_target_path: staging.to_string_lossy().into(),
    })
    .await
    .unwrap();
}

/// Runs `sh -c script` as the notebook user (uid 1000, gid 100, no other
/// groups, through setpriv(1)) with directory `dir` open on fd 3, which the
/// script names `$D` (`/proc/self/fd/3`). kubelet's directories above a
/// volume are root's and 0750, so only the volume's own owner and mode
/// decide what the user may do there.
pub fn as_notebook_user(dir: &Path, script: &str) -> std::process::Output {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let d = std::fs::File::open(dir).unwrap();
    let fd = d.as_raw_fd();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        "--reuid=1000",
        "--regid=100",
        "--clear-groups",
        "sh",
        "-c",
        script,
    ])
    .env("D", "/proc/self/fd/3");
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    drop(d);
    out
}

/// uid, gid and permission bits of `p`.
pub fn owner_mode(p: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid(), m.permissions().mode() & 0o7777)
}

pub fn libc_erofs() -> i32 {
    nix::errno::Errno::EROFS as i32
}

pub mod hang {
    //! A FUSE file system whose operations block until released.
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, UNIX_EPOCH};

    use fuser::{FileAttr, FileType, Filesystem, ReplyAttr, ReplyEntry, ReplyStatfs, Request};

    pub struct Hung(pub Arc<AtomicBool>);

    impl Hung {
        fn wait(&self) {
            while !self.0.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn root_attr() -> FileAttr {
        FileAttr {
            ino: 1,
            size: 0,
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    impl Filesystem for Hung {
        fn getattr(&mut self, _req: &Request<'_>, _ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
            self.wait();
            reply.attr(&Duration::from_secs(0), &root_attr());
        }
        fn lookup(&mut self, _req: &Request<'_>, _parent: u64, _name: &std::ffi::OsStr, reply: ReplyEntry) {
            self.wait();
            reply.error(2);
        }
        fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
            self.wait();
            reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
        }
    }
}

/// NodeGetVolumeStats of `path`, expected to answer OK.
pub async fn stats(
    node: &mut NodeClient<tonic::transport::Channel>,
    volume_id: &str,
    path: &Path,
) -> csi::NodeGetVolumeStatsResponse {
    node.node_get_volume_stats(csi::NodeGetVolumeStatsRequest {
        volume_id: volume_id.into(),
        volume_path: path.to_string_lossy().into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}
