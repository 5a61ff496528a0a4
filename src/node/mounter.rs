//! Mounting, with a deadline on everything that can block on a dead server:
//! `mount -t nfs` runs as a child process in its own process group, killed
//! whole when its deadline passes; bind, remount, unmount, path resolution
//! and mountinfo reads run on blocking threads the RPC stops waiting for at
//! the deadline. Unmount escalates: normal, then forced, then lazy, always
//! with umount2(2) on the path (never umount(8), which stats it first).
//!
//! statfs, the one call kubelet repeats for every volume every minute, runs
//! on threads of its own ([`StatGate`]): at most one per path and a fixed
//! number in all, so a dead server can never use up the threads that
//! unpublish and unstage need, and a stuck statfs never delays exit.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::mountinfo::{self, MountTable, SharedReads};
use super::paths::{self, PathError, Publish, Resolved};
use super::root_dir::{self, RootError, RootSpec};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub(crate) enum MountError {
    #[error("{what} did not finish within {seconds:.1}s")]
    Timeout { what: String, seconds: f64 },
    /// A statfs was not started because an earlier one is still stuck.
    #[error("{0}")]
    Stuck(String),
    #[error(transparent)]
    Path(#[from] PathError),
    /// The server refused this node ("access denied by server"): its export
    /// rules do not admit the node's address.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Failed(String),
}

/// Space and inode figures of a mounted volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stats {
    pub total_bytes: i64,
    pub available_bytes: i64,
    pub used_bytes: i64,
    pub total_inodes: i64,
    pub free_inodes: i64,
    pub used_inodes: i64,
}

/// What the node needs from the kernel; a trait so node logic can be tested
/// without mounting.
#[tonic::async_trait]
pub(crate) trait Mounter: Send + Sync + 'static {
    /// `mount -t nfs -o <options> <server>:<share> <target>`.
    async fn mount_nfs(
        &self,
        server: &str,
        share: &str,
        target: &Path,
        options: &[String],
    ) -> Result<(), MountError>;
    /// Bind-mounts `source` on `target`, read-only if asked (rolled back if
    /// the read-only remount fails).
    async fn bind(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), MountError>;
    /// Unmounts the top mount at `target`; "not mounted" is success.
    async fn unmount(&self, target: &Path) -> Result<(), MountError>;
    /// The current mount table.
    async fn mounts(&self) -> Result<MountTable, MountError>;
    /// statvfs of a mounted path; `mount` names the file system behind it
    /// (mountinfo's `major:minor`), which all binds of one mount share.
    async fn statfs(&self, path: &Path, mount: &str) -> Result<Stats, MountError>;
    /// [`paths::resolve`] against a fresh mount table, with a deadline; also
    /// returns that table.
    async fn resolve(
        &self,
        what: &str,
        kubelet_dir: &Path,
        path: &Path,
        create: bool,
    ) -> Result<(Resolved, MountTable), MountError>;
    /// [`paths::resolve_publish`] against a fresh mount table, with a
    /// deadline.
    async fn resolve_publish(
        &self,
        kubelet_dir: &Path,
        staging: &Path,
        target: &Path,
    ) -> Result<Publish, MountError>;
    /// Removes an empty local directory; a missing one is success.
    async fn remove_dir(&self, path: &Path) -> Result<(), MountError>;
    /// Gives a freshly staged volume's root directory the owner and mode
    /// its context asks for, once ([`root_dir::apply`]), within the mount
    /// deadline (the directory may be on a server that stopped answering).
    async fn prepare_root(
        &self,
        root: &Path,
        want: RootSpec,
        server: root_dir::Server,
    ) -> Result<Result<root_dir::Outcome, RootError>, MountError>;
}

/// The `mount` arguments for an NFS export (unit-tested; no shell involved).
pub(crate) fn nfs_mount_args(server: &str, share: &str, target: &Path, options: &[String]) -> Vec<String> {
    let source = if server.contains(':') {
        format!("[{server}]:{share}")
    } else {
        format!("{server}:{share}")
    };
    let mut args = vec!["-t".to_string(), "nfs".to_string()];
    if !options.is_empty() {
        args.push("-o".into());
        args.push(options.join(","));
    }
    args.push(source);
    args.push(target.to_string_lossy().into_owned());
    args
}

/// The kernel's mounts, through the real syscalls and `mount` binary.
pub(crate) struct SystemMounter {
    pub mount_timeout: Duration,
    pub unmount_timeout: Duration,
    pub stats_timeout: Duration,
    /// The `mount` program (found on PATH by default).
    pub mount_program: PathBuf,
    stat_gate: StatGate,
    /// Every mountinfo reading goes through here ([`SharedReads`]).
    table: Arc<SharedReads<Result<MountTable, String>>>,
    metrics: Arc<Metrics>,
}

/// Deadline for local work (mountinfo, lstat, mkdir, rmdir inside the
/// kubelet directory): it touches no remote file system, so it only runs out
/// when the node itself is in trouble.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many statfs calls may be stuck at once in all. One stuck call per
/// mounted volume is the most a dead server costs, and a node rarely stages
/// more than this many volumes from one server; past it, stats answer "abnormal"
/// at once instead of starting threads, so the count stays fixed.
pub(crate) const MAX_STUCK_STATFS: usize = 32;

impl SystemMounter {
    pub(crate) fn new(
        mount_timeout: Duration,
        unmount_timeout: Duration,
        stats_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            mount_timeout,
            unmount_timeout,
            stats_timeout,
            mount_program: PathBuf::from("mount"),
            stat_gate: StatGate::new(MAX_STUCK_STATFS),
            table: Arc::new(SharedReads::new()),
            metrics,
        }
    }
}

/// Runs statfs on dedicated, named threads (`fbcsi-statfs`): at most one per
/// mounted file system (keyed by its device, so one dead NFS mount bound
/// into forty pods costs one thread) and `limit` in all. A thread stuck in
/// the kernel keeps its key busy until it returns, so repeated stats of a
/// dead volume cost nothing more.
#[derive(Clone)]
pub(crate) struct StatGate {
    busy: Arc<Mutex<HashSet<String>>>,
    limit: usize,
}

/// Name of the statfs threads (tests count them in /proc/self/task).
pub const STATFS_THREAD: &str = "fbcsi-statfs";

impl StatGate {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            busy: Arc::new(Mutex::new(HashSet::new())),
            limit,
        }
    }

    /// statvfs of `path` (of the file system `key`), given up after `limit`.
    pub(crate) async fn statfs(
        &self,
        path: &Path,
        key: &str,
        limit: Duration,
    ) -> Result<nix::sys::statvfs::Statvfs, MountError> {
        {
            let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
            if busy.contains(key) {
                return Err(MountError::Stuck(format!(
                    "an earlier statfs of {} has not returned yet (the server is not answering)",
                    path.display()
                )));
            }
            if busy.len() >= self.limit {
                return Err(MountError::Stuck(format!(
                    "{} statfs calls are stuck on unresponsive servers; not starting another",
                    busy.len()
                )));
            }
            busy.insert(key.to_string());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (p, k) = (path.to_path_buf(), key.to_string());
        let busy = self.busy.clone();
        let spawned = std::thread::Builder::new()
            .name(STATFS_THREAD.into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let r = nix::sys::statvfs::statvfs(&p);
                busy.lock().unwrap_or_else(|e| e.into_inner()).remove(&k);
                let _ = tx.send(r);
            });
        if let Err(e) = spawned {
            self.busy.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
            return Err(MountError::Failed(format!("statfs: cannot start a thread: {e}")));
        }
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(r)) => r.map_err(|e| MountError::Failed(format!("statfs {}: {e}", path.display()))),
            Ok(Err(_)) => Err(MountError::Failed("statfs: worker vanished".into())),
            Err(_) => Err(MountError::Timeout {
                what: "statfs".into(),
                seconds: limit.as_secs_f64(),
            }),
        }
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;
const MOUNT_ATTR_RDONLY: u64 = 1;

/// Binds `source` on `target` read-only with the new mount API: a detached
/// clone of `source` (open_tree), made read-only (mount_setattr), then
/// attached (move_mount). The mount is read-only before it exists anywhere,
/// so every propagated copy is too.
fn bind_readonly(source: &Path, target: &Path) -> Result<(), Errno> {
    use std::ffi::CString;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let src = CString::new(source.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let tgt = CString::new(target.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    let empty = c"";
    // SAFETY: plain syscalls with valid NUL-terminated paths and a properly
    // sized, initialised attribute struct; the returned fd is owned below.
    unsafe {
        let fd = libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        );
        if fd < 0 {
            return Err(Errno::last());
        }
        let tree = OwnedFd::from_raw_fd(fd as i32);
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        use std::os::fd::AsRawFd;
        if libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) < 0
        {
            return Err(Errno::last());
        }
        if libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            tgt.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ) < 0
        {
            return Err(Errno::last());
        }
    }
    Ok(())
}

/// A reading of the mount table that started after this call.
fn read_mountinfo(table: &SharedReads<Result<MountTable, String>>) -> Result<MountTable, MountError> {
    table
        .get(|| {
            mountinfo::read()
                .map(Arc::new)
                .map_err(|e| format!("read /proc/self/mountinfo: {e}"))
        })
        .map_err(MountError::Failed)
}

/// Runs `f` on a blocking thread and stops waiting after `limit`. A thread
/// stuck in the kernel on a dead server is abandoned; the RPC still answers.
async fn blocking<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MountError> {
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(MountError::Failed(format!("{what}: worker failed: {e}"))),
        Err(_) => Err(MountError::Timeout {
            what: what.to_string(),
            seconds: limit.as_secs_f64(),
        }),
    }
}

#[tonic::async_trait]
impl Mounter for SystemMounter {
    async fn mount_nfs(
        &self,
        server: &str,
        share: &str,
        target: &Path,
        options: &[String],
    ) -> Result<(), MountError> {
        let args = nfs_mount_args(server, share, target, options);
        let what = format!("mount {server}:{share}");
        let mut child = tokio::process::Command::new(&self.mount_program)
            .args(&args)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                MountError::Failed(format!(
                    "{what}: cannot run {}: {e}",
                    self.mount_program.display()
                ))
            })?;
        let pid = child.id();
        let mut stderr = child.stderr.take();
        let read_err = async {
            let mut buf = String::new();
            if let Some(s) = stderr.as_mut() {
                use tokio::io::AsyncReadExt;
                let _ = s.read_to_string(&mut buf).await;
            }
            buf
        };
        let waited = tokio::time::timeout(self.mount_timeout, async {
            let (status, err) = tokio::join!(child.wait(), read_err);
            (status, err)
        })
        .await;
        match waited {
            Ok((Ok(status), _)) if status.success() => Ok(()),
            // mount.nfs's words when the server's export rules leave this
            // node out: no other version or retry in this call can help.
            Ok((Ok(status), err)) if err.contains("access denied by server") => {
                Err(MountError::Denied(format!(
                    "{what} failed ({status}): {}: the server's export rules do not admit this node's address",
                    err.trim()
                )))
            }
            Ok((Ok(status), err)) => Err(MountError::Failed(format!(
                "{what} failed ({status}): {}",
                err.trim()
            ))),
            Ok((Err(e), _)) => Err(MountError::Failed(format!("{what}: {e}"))),
            Err(_) => {
                // Kill the whole group: mount.nfs and anything it started,
                // so nothing is left behind to poison later mounts.
                if let Some(pid) = pid {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.wait().await;
                Err(MountError::Timeout {
                    what,
                    seconds: self.mount_timeout.as_secs_f64(),
                })
            }
        }
    }

    async fn bind(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), MountError> {
        let (s, t) = (source.to_path_buf(), target.to_path_buf());
        if readonly {
            // Read-only from the first moment, on every copy: the target sits
            // in kubelet's shared tree, and a bind made writable and then
            // remounted read-only propagates its *writable* copies to the
            // host (the remount flag is per mount and does not propagate).
            match blocking("read-only bind mount", self.mount_timeout, move || {
                bind_readonly(&s, &t)
            })
            .await?
            {
                Ok(()) => return Ok(()),
                // Kernels before 5.12 lack mount_setattr: fall back below.
                Err(Errno::ENOSYS) => {
                    tracing::warn!(
                        "kernel without mount_setattr: read-only binds are remounted, and copies propagated to the host may stay writable"
                    );
                }
                Err(e) => {
                    return Err(MountError::Failed(format!(
                        "read-only bind {} on {}: {e}",
                        source.display(),
                        target.display()
                    )));
                }
            }
        }
        let (s, t) = (source.to_path_buf(), target.to_path_buf());
        blocking("bind mount", self.mount_timeout, move || {
            nix::mount::mount(Some(&s), &t, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        })
        .await?
        .map_err(|e| MountError::Failed(format!("bind {} on {}: {e}", source.display(), target.display())))?;
        if readonly {
            let t = target.to_path_buf();
            let remount = blocking("read-only remount", self.mount_timeout, move || {
                nix::mount::mount(
                    None::<&str>,
                    &t,
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
            })
            .await;
            let failed = match remount {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failed {
                // Never leave a writable mount where a read-only one was asked for.
                let t = target.to_path_buf();
                let _ = blocking("rollback unmount", self.unmount_timeout, move || {
                    nix::mount::umount2(&t, MntFlags::MNT_DETACH)
                })
                .await;
                return Err(MountError::Failed(format!(
                    "read-only remount of {} failed ({why}); the bind mount was removed",
                    target.display()
                )));
            }
        }
        Ok(())
    }

    async fn unmount(&self, target: &Path) -> Result<(), MountError> {
        let steps = [
            ("unmount", "normal", MntFlags::empty(), 0.4),
            ("forced unmount", "forced", MntFlags::MNT_FORCE, 0.3),
            ("lazy unmount", "lazy", MntFlags::MNT_DETACH, 0.3),
        ];
        let mut last = String::new();
        for (what, step, flags, share) in steps {
            let t = target.to_path_buf();
            let limit = self.unmount_timeout.mul_f64(share);
            let r = blocking(what, limit, move || nix::mount::umount2(&t, flags)).await;
            self.metrics
                .unmount_step(step, matches!(r, Ok(Ok(()) | Err(Errno::EINVAL | Errno::ENOENT))));
            match r {
                Ok(Ok(())) => {
                    if !flags.is_empty() {
                        tracing::warn!(target = %target.display(), step = what, "unmount needed escalation");
                    }
                    return Ok(());
                }
                // Not a mount point (any more) or gone: nothing to undo.
                Ok(Err(Errno::EINVAL | Errno::ENOENT)) => return Ok(()),
                Ok(Err(e)) => last = format!("{what}: {e}"),
                Err(e) => last = e.to_string(),
            }
            tracing::warn!(target = %target.display(), step = what, reason = %last, "unmount step failed; escalating");
        }
        Err(MountError::Failed(format!(
            "could not unmount {}: {last}",
            target.display()
        )))
    }

    async fn mounts(&self) -> Result<MountTable, MountError> {
        // Reading /proc does not touch the mounted file systems.
        let table = self.table.clone();
        blocking("read mountinfo", LOCAL_TIMEOUT, move || read_mountinfo(&table)).await?
    }

    async fn resolve(
        &self,
        what: &str,
        kubelet_dir: &Path,
        path: &Path,
        create: bool,
    ) -> Result<(Resolved, MountTable), MountError> {
        let (w, k, p) = (what.to_string(), kubelet_dir.to_path_buf(), path.to_path_buf());
        let table = self.table.clone();
        blocking("resolve path", LOCAL_TIMEOUT, move || {
            let mounts = read_mountinfo(&table)?;
            let r = paths::resolve(&w, &k, &p, &mounts, create)?;
            Ok((r, mounts))
        })
        .await?
    }

    async fn resolve_publish(
        &self,
        kubelet_dir: &Path,
        staging: &Path,
        target: &Path,
    ) -> Result<Publish, MountError> {
        let (k, s, t) = (
            kubelet_dir.to_path_buf(),
            staging.to_path_buf(),
            target.to_path_buf(),
        );
        let table = self.table.clone();
        blocking("resolve paths", LOCAL_TIMEOUT, move || {
            Ok(paths::resolve_publish(&k, &s, &t, &read_mountinfo(&table)?)?)
        })
        .await?
    }

    async fn remove_dir(&self, path: &Path) -> Result<(), MountError> {
        let p = path.to_path_buf();
        blocking(
            "remove directory",
            LOCAL_TIMEOUT,
            move || match std::fs::remove_dir(&p) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(MountError::Failed(format!("cannot remove {}: {e}", p.display()))),
            },
        )
        .await?
    }

    async fn prepare_root(
        &self,
        root: &Path,
        want: RootSpec,
        server: root_dir::Server,
    ) -> Result<Result<root_dir::Outcome, RootError>, MountError> {
        let p = root.to_path_buf();
        blocking(
            "set the volume's root owner and mode",
            self.mount_timeout,
            move || root_dir::apply(&p, &want, server),
        )
        .await
    }

    async fn statfs(&self, path: &Path, mount: &str) -> Result<Stats, MountError> {
        let st = self.stat_gate.statfs(path, mount, self.stats_timeout).await?;
        let frsize = st.fragment_size() as i64;
        let total = st.blocks() as i64 * frsize;
        let free = st.blocks_free() as i64 * frsize;
        let avail = st.blocks_available() as i64 * frsize;
        let files = st.files() as i64;
        let ffree = st.files_free() as i64;
        Ok(Stats {
            total_bytes: total,
            available_bytes: avail,
            used_bytes: total - free,
            total_inodes: files,
            free_inodes: ffree,
            used_inodes: files - ffree,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfs_args() {
        let t = Path::new("/var/lib/kubelet/plugins/kubernetes.io/csi/x/globalmount");
        assert_eq!(
            nfs_mount_args("10.0.0.10", "/k8s-pvc-1", t, &["vers=4.1".into(), "hard".into()]),
            vec![
                "-t",
                "nfs",
                "-o",
                "vers=4.1,hard",
                "10.0.0.10:/k8s-pvc-1",
                t.to_str().unwrap()
            ]
        );
        assert_eq!(
            nfs_mount_args("fd00::10", "/fs", t, &["vers=3".into(), "ro".into()]),
            vec![
                "-t",
                "nfs",
                "-o",
                "vers=3,ro",
                "[fd00::10]:/fs",
                t.to_str().unwrap()
            ]
        );
        assert_eq!(
            nfs_mount_args("h", "/fs", t, &[]),
            vec!["-t", "nfs", "h:/fs", t.to_str().unwrap()]
        );
    }

    /// A freshly written script can briefly fail to exec with ETXTBSY while
    /// another test thread forks; that is the test's race, not the mounter's.
    async fn mount_retrying_etxtbsy(m: &SystemMounter, target: &Path) -> MountError {
        for _ in 0..50 {
            let err = m.mount_nfs("10.0.0.1", "/fs", target, &[]).await.unwrap_err();
            if !err.to_string().contains("Text file busy") {
                return err;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("mount helper stayed busy");
    }

    /// A mounter whose `mount` is a shell script with `body`.
    fn fake_mount_helper(dir: &Path, body: &str, mount_timeout: Duration) -> SystemMounter {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("mount");
        std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        SystemMounter {
            mount_program: script,
            ..SystemMounter::new(
                mount_timeout,
                Duration::from_secs(1),
                Duration::from_secs(1),
                Default::default(),
            )
        }
    }

    #[tokio::test]
    async fn hung_mount_helper_is_killed_with_its_group() {
        // A stand-in "mount" that hangs and starts a child of its own.
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let m = fake_mount_helper(
            dir.path(),
            &format!("sleep 300 &\necho $! > {}\nwait", pidfile.display()),
            Duration::from_millis(500),
        );
        let start = std::time::Instant::now();
        let err = mount_retrying_etxtbsy(&m, Path::new("/tmp/nowhere")).await;
        assert!(matches!(err, MountError::Timeout { .. }), "{err}");
        assert!(start.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
        // The grandchild went with the group.
        let mut gone = false;
        for _ in 0..50 {
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .unwrap_or_default()
                    .contains(") Z ");
            if !alive {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone, "grandchild {pid} survived");
    }

    #[tokio::test]
    async fn failed_mount_reports_the_helpers_message() {
        let dir = tempfile::tempdir().unwrap();
        let m = fake_mount_helper(
            dir.path(),
            "echo 'mount.nfs: access denied by server' >&2\nexit 32",
            Duration::from_secs(5),
        );
        let err = mount_retrying_etxtbsy(&m, Path::new("/tmp/x")).await;
        assert!(err.to_string().contains("access denied by server"), "{err}");
        assert!(matches!(err, MountError::Denied(_)), "{err:?}");
    }
}
