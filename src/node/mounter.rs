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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::mountinfo::{self, MountTable, SharedReads};
use super::paths::{self, Publish, Resolved};
use super::root_dir::{self, RootError, RootSpec};
use crate::metrics::Metrics;

mod error;
pub(crate) use error::{MountError, StatFailure};

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
    /// `mount -t nfs -o <options> <server>:<share> <target>`, within
    /// `limit` (at most the mount deadline).
    async fn mount_nfs(
        &self,
        server: &str,
        share: &str,
        target: &Path,
        options: &[String],
        limit: Duration,
    ) -> Result<(), MountError>;
    /// Bind-mounts `source` on `target`, read-only if asked (rolled back if
    /// the read-only remount fails), within `limit`.
    async fn bind(
        &self,
        source: &Path,
        target: &Path,
        readonly: bool,
        limit: Duration,
    ) -> Result<(), MountError>;
    /// Unmounts the top mount at `target`, escalating within `limit` (at
    /// most the unmount deadline); "not mounted" is success.
    async fn unmount(&self, target: &Path, limit: Duration) -> Result<(), MountError>;
    /// The current mount table.
    async fn mounts(&self) -> Result<MountTable, MountError>;
    /// statvfs of a mounted path of the file system `key` ([`StatGate`]),
    /// waiting at most `limit` (and the stats deadline).
    async fn statfs(&self, path: &Path, key: &StatKey, limit: Duration) -> Result<Stats, MountError>;
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
        limit: Duration,
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
    table: Arc<SharedReads<TableRead>>,
    metrics: Arc<Metrics>,
}

/// Deadline for local work (mountinfo, lstat, mkdir, rmdir inside the
/// kubelet directory): it touches no remote file system, so it only runs out
/// when the node itself is in trouble.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How many statfs threads one server may hold: a dead server costs this
/// many at most, and a healthy one needs no more (its calls return in
/// milliseconds; callers past this wait their turn).
pub(crate) const STATFS_PER_SERVER: usize = 4;

/// How many statfs threads may exist in all: room for 15 dead servers at
/// once with a share left for a healthy one.
pub(crate) const MAX_STATFS_THREADS: usize = 64;

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
            stat_gate: StatGate::new(STATFS_PER_SERVER, MAX_STATFS_THREADS),
            table: Arc::new(SharedReads::new()),
            metrics,
        }
    }
}

/// What a statfs is keyed by: the file system (its `major:minor`, which
/// every bind of one mount shares, so a volume in forty pods costs one
/// call) and the server it lives on (see [`server_of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StatKey {
    pub fs: String,
    pub server: String,
}

impl StatKey {
    /// The server as a person reads it (without the kind of key).
    fn server_name(&self) -> &str {
        self.server
            .split_once(':')
            .map_or(self.server.as_str(), |(_, h)| h)
    }
}

/// The server a mount's statfs waits on, the share of statfs threads it may
/// hold is counted by. NFS: the address the kernel connected to (`addr=`,
/// so a name and its address are one server), else the source's host; any
/// other file system is a server of its own (its device). Addresses, not
/// kernel NFS clients: two addresses of one NFSv4.1 server that the kernel
/// merged into one client (trunking) die together and hold a share each,
/// which still leaves every other server its own.
pub(crate) fn server_of(m: &super::mountinfo::MountEntry) -> String {
    if m.fs_type == "nfs" || m.fs_type == "nfs4" {
        if let Some(addr) = m.super_options.split(',').find_map(|o| o.strip_prefix("addr=")) {
            return format!("nfs:{addr}");
        }
        if let Some((host, _)) = m.source.rsplit_once(":/") {
            return format!("nfs:{}", host.trim_start_matches('[').trim_end_matches(']'));
        }
    }
    format!("dev:{}", m.device)
}

/// Runs statfs on dedicated, named threads (`fbcsi-statfs`), so a call
/// stuck in the kernel on a dead server never holds a thread that unmounts
/// or exit need. Bounded three ways:
///
/// - one call per file system at a time: concurrent callers of the same
///   file system share its answer; once that call has run past its
///   deadline, callers are told at once that it is stuck (abnormal), and
///   repeated stats of a dead volume cost nothing more;
/// - at most `per_server` threads per server ([`server_of`]): a dead server
///   holds that many at most, however many of its file systems are asked;
/// - at most `limit` threads in all.
///
/// A caller that finds its server's (or the total) share held by calls
/// still within their deadline waits for one to finish (a healthy server
/// answers in milliseconds); when the share is held by stuck calls it is
/// refused at once with [`MountError::Limit`]: this volume was not
/// measured, which is not the same as seen failing.
#[derive(Clone)]
pub(crate) struct StatGate {
    inner: Arc<GateInner>,
}

struct GateInner {
    state: Mutex<HashMap<String, Running>>,
    /// Signalled when a call finishes and its thread is free again.
    freed: tokio::sync::Notify,
    per_server: usize,
    limit: usize,
}

type StatResult = Result<Stats, StatFailure>;

/// One reading of the mount table, shared by the callers it served.
type TableRead = Result<MountTable, Arc<mountinfo::ReadError>>;

/// The statfs running on one file system.
struct Running {
    server: String,
    started: Instant,
    /// Past this it counts as stuck.
    stuck_after: Duration,
    done: tokio::sync::watch::Receiver<Option<StatResult>>,
}

impl Running {
    fn stuck(&self, now: Instant) -> bool {
        now.duration_since(self.started) >= self.stuck_after
    }
}

/// What a caller of [`StatGate`] does next.
#[derive(Debug)]
enum Admit<R> {
    /// Wait for the call already running on this file system.
    Join(R),
    /// This file system's call has been stuck this long.
    Stuck(Duration),
    /// Start a call.
    Start,
    /// Capacity is held by calls still within their deadline.
    Wait,
    /// Capacity is held by stuck calls: not measured.
    Refuse(String),
}

/// The gate's decision for `key` given the calls running (`running`: file
/// system → server, whether stuck, and what to join). Pure, for tests.
fn decide<R: Clone>(
    running: impl Iterator<Item = (String, String, bool, R)>,
    key: &StatKey,
    per_server: usize,
    limit: usize,
) -> Admit<R> {
    let (mut server_n, mut server_stuck, mut all_n, mut all_stuck) = (0, 0, 0, 0);
    for (fs, server, stuck, join) in running {
        if fs == key.fs {
            return if stuck {
                Admit::Stuck(Duration::ZERO)
            } else {
                Admit::Join(join)
            };
        }
        all_n += 1;
        all_stuck += usize::from(stuck);
        if server == key.server {
            server_n += 1;
            server_stuck += usize::from(stuck);
        }
    }
    if server_n < per_server && all_n < limit {
        return Admit::Start;
    }
    if server_n >= per_server && server_stuck >= per_server {
        return Admit::Refuse(format!(
            "not measured: {server_stuck} statfs calls to server {} have not returned (it is not answering), \
             and that is the most one server may hold",
            key.server_name()
        ));
    }
    if all_n >= limit && all_stuck >= limit {
        return Admit::Refuse(format!(
            "not measured: {all_stuck} statfs calls are stuck on servers that are not answering, \
             the most the node runs at once"
        ));
    }
    Admit::Wait
}

/// Name of the statfs threads (tests count them in /proc/self/task).
pub const STATFS_THREAD: &str = "fbcsi-statfs";

impl StatGate {
    pub(crate) fn new(per_server: usize, limit: usize) -> Self {
        Self {
            inner: Arc::new(GateInner {
                state: Mutex::new(HashMap::new()),
                freed: tokio::sync::Notify::new(),
                per_server,
                limit,
            }),
        }
    }

    /// statvfs of `path` (of the file system `key`): waits up to `wait`;
    /// a call running longer than `stuck_after` counts as stuck.
    pub(crate) async fn statfs(
        &self,
        path: &Path,
        key: &StatKey,
        stuck_after: Duration,
        wait: Duration,
    ) -> Result<Stats, MountError> {
        let p = path.to_path_buf();
        self.run(key, stuck_after, wait, move || {
            nix::sys::statvfs::statvfs(&p)
                .map(|st| Stats::from(&st))
                .map_err(|errno| StatFailure {
                    path: p.clone(),
                    errno,
                })
        })
        .await
    }

    /// [`Self::statfs`] with the blocking call given (tests pass their own).
    async fn run(
        &self,
        key: &StatKey,
        stuck_after: Duration,
        wait: Duration,
        call: impl FnOnce() -> StatResult + Send + 'static,
    ) -> Result<Stats, MountError> {
        let until = tokio::time::Instant::now() + wait;
        let mut call = Some(call);
        let mut done = loop {
            // Registered before the decision, so a release in between wakes it.
            let freed = self.inner.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let admit = {
                let mut state = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let admit = decide(
                    state
                        .iter()
                        .map(|(fs, r)| (fs.clone(), r.server.clone(), r.stuck(now), r.done.clone())),
                    key,
                    self.inner.per_server,
                    self.inner.limit,
                );
                match admit {
                    Admit::Start => {
                        let (tx, rx) = tokio::sync::watch::channel(None);
                        state.insert(
                            key.fs.clone(),
                            Running {
                                server: key.server.clone(),
                                started: now,
                                stuck_after,
                                done: rx.clone(),
                            },
                        );
                        drop(state);
                        self.spawn(key, tx, call.take().expect("started once"))?;
                        break rx;
                    }
                    Admit::Stuck(_) => Admit::Stuck(
                        state
                            .get(&key.fs)
                            .map_or(Duration::ZERO, |r| now.duration_since(r.started)),
                    ),
                    other => other,
                }
            };
            match admit {
                Admit::Join(rx) => break rx,
                Admit::Stuck(since) => {
                    return Err(MountError::Stuck(format!(
                        "an earlier statfs of this file system ({}) has not returned for {:.1}s (the server is not answering)",
                        key.fs,
                        since.as_secs_f64()
                    )));
                }
                Admit::Refuse(why) => return Err(MountError::Limit(why)),
                Admit::Start => unreachable!("handled above"),
                Admit::Wait => {
                    // Calls become stuck by the clock, not by an event: look
                    // again at least every 100 ms.
                    let left = until.saturating_duration_since(tokio::time::Instant::now());
                    if left.is_zero() {
                        return Err(MountError::Limit(format!(
                            "not measured: no statfs thread for server {} came free within {:.1}s",
                            key.server_name(),
                            wait.as_secs_f64()
                        )));
                    }
                    let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), freed).await;
                }
            }
        };
        match tokio::time::timeout_at(until, done.wait_for(Option::is_some)).await {
            Ok(Ok(r)) => r.clone().expect("waited for a result").map_err(MountError::Stat),
            Ok(Err(_)) => Err(MountError::Failed("statfs: worker vanished".into())),
            Err(_) => Err(MountError::Timeout {
                what: "statfs".into(),
                seconds: wait.as_secs_f64(),
            }),
        }
    }

    /// Starts the thread for `key`'s call; it answers every caller and frees
    /// its place when the call returns, however late.
    fn spawn(
        &self,
        key: &StatKey,
        tx: tokio::sync::watch::Sender<Option<StatResult>>,
        call: impl FnOnce() -> StatResult + Send + 'static,
    ) -> Result<(), MountError> {
        let inner = self.inner.clone();
        let fs = key.fs.clone();
        let spawned = std::thread::Builder::new()
            .name(STATFS_THREAD.into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let r = call();
                tx.send_replace(Some(r));
                inner.state.lock().unwrap_or_else(|p| p.into_inner()).remove(&fs);
                inner.freed.notify_waiters();
            });
        spawned.map(|_| ()).map_err(|e| {
            // The sender went with the closure: joiners see "vanished".
            self.inner
                .state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key.fs);
            self.inner.freed.notify_waiters();
            MountError::io("statfs: cannot start a thread", e)
        })
    }
}

impl From<&nix::sys::statvfs::Statvfs> for Stats {
    fn from(st: &nix::sys::statvfs::Statvfs) -> Self {
        let frsize = st.fragment_size() as i64;
        let total = st.blocks() as i64 * frsize;
        let free = st.blocks_free() as i64 * frsize;
        let avail = st.blocks_available() as i64 * frsize;
        let files = st.files() as i64;
        let ffree = st.files_free() as i64;
        Stats {
            total_bytes: total,
            available_bytes: avail,
            used_bytes: total - free,
            total_inodes: files,
            free_inodes: ffree,
            used_inodes: files - ffree,
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
fn read_mountinfo(table: &SharedReads<TableRead>) -> Result<MountTable, MountError> {
    table
        .get(|| mountinfo::read().map(Arc::new).map_err(Arc::new))
        .map_err(MountError::Table)
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
        Ok(Err(source)) => Err(MountError::Worker {
            what: what.to_string(),
            source,
        }),
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
        limit: Duration,
    ) -> Result<(), MountError> {
        let limit = limit.min(self.mount_timeout);
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
            .map_err(|e| MountError::io(format!("{what}: cannot run {}", self.mount_program.display()), e))?;
        let pid = child.id();
        // Dropped with the RPC (its overall deadline): the whole group goes.
        let mut group = KillGroup(pid);
        let mut stderr = child.stderr.take();
        let read_err = async {
            let mut buf = String::new();
            if let Some(s) = stderr.as_mut() {
                use tokio::io::AsyncReadExt;
                let _ = s.read_to_string(&mut buf).await;
            }
            buf
        };
        let waited = tokio::time::timeout(limit, async {
            let (status, err) = tokio::join!(child.wait(), read_err);
            (status, err)
        })
        .await;
        if waited.is_ok() {
            // Reaped: its group id may be reused from here on.
            group.0 = None;
        }
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
            Ok((Err(e), _)) => Err(MountError::io(what, e)),
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
                group.0 = None;
                Err(MountError::Timeout {
                    what,
                    seconds: limit.as_secs_f64(),
                })
            }
        }
    }

    async fn bind(
        &self,
        source: &Path,
        target: &Path,
        readonly: bool,
        limit: Duration,
    ) -> Result<(), MountError> {
        let limit = limit.min(self.mount_timeout);
        let (s, t) = (source.to_path_buf(), target.to_path_buf());
        if readonly {
            // Read-only from the first moment, on every copy: the target sits
            // in kubelet's shared tree, and a bind made writable and then
            // remounted read-only propagates its *writable* copies to the
            // host (the remount flag is per mount and does not propagate).
            match blocking("read-only bind mount", limit, move || bind_readonly(&s, &t)).await? {
                Ok(()) => return Ok(()),
                // Kernels before 5.12 lack mount_setattr: fall back below.
                Err(Errno::ENOSYS) => {
                    tracing::warn!(
                        "kernel without mount_setattr: read-only binds are remounted, and copies propagated to the host may stay writable"
                    );
                }
                Err(e) => {
                    return Err(MountError::sys(
                        format!("read-only bind {} on {}", source.display(), target.display()),
                        e,
                    ));
                }
            }
        }
        let (s, t) = (source.to_path_buf(), target.to_path_buf());
        blocking("bind mount", limit, move || {
            nix::mount::mount(Some(&s), &t, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        })
        .await?
        .map_err(|e| MountError::sys(format!("bind {} on {}", source.display(), target.display()), e))?;
        if readonly {
            let t = target.to_path_buf();
            let remount = blocking("read-only remount", limit, move || {
                nix::mount::mount(
                    None::<&str>,
                    &t,
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                    None::<&str>,
                )
            })
            .await;
            let failed: Option<crate::error::Cause> = match remount {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(Box::new(e)),
                Err(e) => Some(Box::new(e)),
            };
            if let Some(source) = failed {
                // Never leave a writable mount where a read-only one was asked for.
                let t = target.to_path_buf();
                let _ = blocking("rollback unmount", self.unmount_timeout, move || {
                    nix::mount::umount2(&t, MntFlags::MNT_DETACH)
                })
                .await;
                return Err(MountError::Remount {
                    target: target.to_path_buf(),
                    source,
                });
            }
        }
        Ok(())
    }

    async fn unmount(&self, target: &Path, limit: Duration) -> Result<(), MountError> {
        let limit = limit.min(self.unmount_timeout);
        let steps = [
            ("unmount", "normal", MntFlags::empty(), 0.4),
            ("forced unmount", "forced", MntFlags::MNT_FORCE, 0.3),
            ("lazy unmount", "lazy", MntFlags::MNT_DETACH, 0.3),
        ];
        let mut last = MountError::Failed("no unmount step ran".into());
        for (what, step, flags, share) in steps {
            let t = target.to_path_buf();
            let r = blocking(what, limit.mul_f64(share), move || nix::mount::umount2(&t, flags)).await;
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
                Ok(Err(e)) => last = MountError::sys(what, e),
                Err(e) => last = e,
            }
            tracing::warn!(target = %target.display(), step = what, reason = %last, "unmount step failed; escalating");
        }
        Err(MountError::Unmount {
            target: target.to_path_buf(),
            last: Box::new(last),
        })
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
                Err(e) => Err(MountError::io(format!("cannot remove {}", p.display()), e)),
            },
        )
        .await?
    }

    async fn prepare_root(
        &self,
        root: &Path,
        want: RootSpec,
        server: root_dir::Server,
        limit: Duration,
    ) -> Result<Result<root_dir::Outcome, RootError>, MountError> {
        let p = root.to_path_buf();
        blocking(
            "set the volume's root owner and mode",
            limit.min(self.mount_timeout),
            move || root_dir::apply(&p, &want, server),
        )
        .await
    }

    async fn statfs(&self, path: &Path, key: &StatKey, limit: Duration) -> Result<Stats, MountError> {
        self.stat_gate
            .statfs(path, key, self.stats_timeout, limit.min(self.stats_timeout))
            .await
    }
}

/// Kills a `mount` helper's process group when dropped armed: an RPC
/// dropped at its overall deadline must leave no `mount.nfs` behind.
struct KillGroup(Option<u32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
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
            let err = m
                .mount_nfs("10.0.0.1", "/fs", target, &[], Duration::from_secs(60))
                .await
                .unwrap_err();
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

    fn key(fs: &str, server: &str) -> StatKey {
        StatKey {
            fs: fs.into(),
            server: server.into(),
        }
    }

    fn figures(n: i64) -> Stats {
        Stats {
            total_bytes: n,
            available_bytes: n,
            used_bytes: 0,
            total_inodes: n,
            free_inodes: n,
            used_inodes: 0,
        }
    }

    /// A statfs that blocks until the test lets it go (a dead server).
    fn hanging(release: &Arc<std::sync::Barrier>, n: i64) -> impl FnOnce() -> StatResult + Send + 'static {
        let r = release.clone();
        move || {
            r.wait();
            Ok(figures(n))
        }
    }

    #[test]
    fn decisions_count_per_server_and_in_all() {
        let run = |v: &[(&str, &str, bool)]| -> Vec<(String, String, bool, ())> {
            v.iter()
                .map(|(f, s, st)| (f.to_string(), s.to_string(), *st, ()))
                .collect()
        };
        let dead = run(&[("0:1", "a", true), ("0:2", "a", true)]);
        // The dead server's share is full of stuck calls: refused, at once.
        assert!(matches!(
            decide(dead.clone().into_iter(), &key("0:3", "a"), 2, 8),
            Admit::Refuse(_)
        ));
        // Its stuck file system itself: seen failing.
        assert!(matches!(
            decide(dead.clone().into_iter(), &key("0:1", "a"), 2, 8),
            Admit::Stuck(_)
        ));
        // Another server is not held back by it.
        assert!(matches!(
            decide(dead.clone().into_iter(), &key("0:9", "b"), 2, 8),
            Admit::Start
        ));
        // A share held by calls still within their deadline: wait.
        let busy = run(&[("0:1", "a", false), ("0:2", "a", true)]);
        assert!(matches!(
            decide(busy.into_iter(), &key("0:3", "a"), 2, 8),
            Admit::Wait
        ));
        // A call running on the same file system: share it.
        let one = run(&[("0:1", "a", false)]);
        assert!(matches!(
            decide(one.into_iter(), &key("0:1", "a"), 2, 8),
            Admit::Join(())
        ));
        // All threads stuck, across servers: refused even for a new server.
        let full = run(&[("0:1", "a", true), ("0:2", "b", true)]);
        assert!(matches!(
            decide(full.into_iter(), &key("0:3", "c"), 2, 2),
            Admit::Refuse(_)
        ));
    }

    #[tokio::test]
    async fn a_dead_server_holding_its_share_cannot_starve_another() {
        let gate = StatGate::new(2, 8);
        let release = Arc::new(std::sync::Barrier::new(3));
        let short = Duration::from_millis(200);
        // Two file systems of a dead server take its share and get stuck.
        for fs in ["0:1", "0:2"] {
            let e = gate
                .run(&key(fs, "dead"), short, short, hanging(&release, 1))
                .await;
            assert!(matches!(e, Err(MountError::Timeout { .. })), "{e:?}");
        }
        // A third file system of it: refused at once, as a limit.
        let t = Instant::now();
        let e = gate
            .run(&key("0:3", "dead"), short, short, || Ok(figures(1)))
            .await;
        assert!(matches!(e, Err(MountError::Limit(_))), "{e:?}");
        assert!(t.elapsed() < short);
        // The stuck one again: abnormal at once, no new thread.
        let e = gate
            .run(&key("0:1", "dead"), short, short, || Ok(figures(1)))
            .await;
        assert!(matches!(e, Err(MountError::Stuck(_))), "{e:?}");
        // A healthy server: measured, many times and concurrently.
        let calls = (0..20).map(|i| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let fs = format!("1:{}", i % 5);
                // Not stuck until 5 s: a loaded test machine may take a
                // while to run a 5 ms call.
                gate.run(
                    &key(&fs, "live"),
                    Duration::from_secs(5),
                    Duration::from_secs(5),
                    move || {
                        std::thread::sleep(Duration::from_millis(5));
                        Ok(figures(7))
                    },
                )
                .await
            })
        });
        for c in calls.collect::<Vec<_>>() {
            assert_eq!(c.await.unwrap().unwrap(), figures(7));
        }
        // The dead server answers: its share is free again.
        let waiter = std::thread::spawn({
            let r = release.clone();
            move || r.wait()
        });
        waiter.join().unwrap();
        for _ in 0..100 {
            if gate.inner.state.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let r = gate
            .run(&key("0:3", "dead"), short, short, || Ok(figures(3)))
            .await;
        assert_eq!(r.unwrap(), figures(3));
    }

    #[tokio::test]
    async fn callers_of_one_file_system_share_one_call() {
        let gate = StatGate::new(1, 8);
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let all = (0..10).map(|_| {
            let (gate, calls) = (gate.clone(), calls.clone());
            tokio::spawn(async move {
                gate.run(
                    &key("0:1", "s"),
                    Duration::from_secs(5),
                    Duration::from_secs(5),
                    move || {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        Ok(figures(9))
                    },
                )
                .await
            })
        });
        for c in all.collect::<Vec<_>>() {
            assert_eq!(c.await.unwrap().unwrap(), figures(9));
        }
        let n = calls.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            n < 10,
            "{n} statfs calls for 10 concurrent callers of one file system"
        );
    }

    #[test]
    fn servers_by_address() {
        let line = |src: &str, ty: &str, sup: &str| {
            super::super::mountinfo::parse_line(&format!("1 2 0:51 / /m rw - {ty} {src} {sup}")).unwrap()
        };
        assert_eq!(
            server_of(&line("h.example:/fs", "nfs4", "rw,vers=4.1,addr=10.0.0.5")),
            "nfs:10.0.0.5"
        );
        assert_eq!(
            server_of(&line("[fd00::1]:/fs", "nfs", "rw,vers=3")),
            "nfs:fd00::1"
        );
        assert_eq!(server_of(&line("/dev/vda", "ext4", "rw")), "dev:0:51");
    }
}
