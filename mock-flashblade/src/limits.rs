//! Hard limits enforced on writes. A FlashBlade file system with its hard
//! limit on refuses writes past its provisioned size, and the NFS client
//! sees EDQUOT ("Disk quota exceeded"). A plain directory cannot do that, so
//! when the data directory is on btrfs and the simulator may turn quotas on
//! there (it runs as root), every file system is a btrfs subvolume whose
//! qgroup limit follows `provisioned` and `hard_limit_enabled`. Anywhere
//! else file systems stay plain directories and writes are not limited.
//!
//! Only kernel calls are used (statfs and the btrfs ioctls); the btrfs
//! tools are needed only to make the file system in the first place.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Why writes past a hard limit are not refused here.
#[derive(Debug, thiserror::Error)]
pub enum NoHardLimits {
    #[error("the data directory is not on btrfs")]
    NotBtrfs,
    #[error("cannot statfs the data directory")]
    Statfs(#[source] nix::Error),
    #[error("btrfs quotas cannot be turned on")]
    Quotas(#[source] io::Error),
}

/// Why a btrfs scratch file system could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    #[error("mounting a btrfs image takes root")]
    NotRoot,
    #[error("mkfs.btrfs is not installed (Debian and Ubuntu: apt-get install btrfs-progs)")]
    NoMkfs,
    #[error("{}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("cannot run {command}")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },
}

/// The subset of `linux/btrfs.h` used here.
mod sys {
    pub const PATH_NAME_MAX: usize = 4087;
    pub const QUOTA_CTL_ENABLE: u64 = 1;
    pub const QGROUP_LIMIT_MAX_RFER: u64 = 1;
    /// "No limit" in a qgroup limit field.
    pub const CLEAR: u64 = u64::MAX;

    #[repr(C)]
    pub struct VolArgs {
        pub fd: i64,
        pub name: [u8; PATH_NAME_MAX + 1],
    }

    #[repr(C)]
    pub struct QuotaCtlArgs {
        pub cmd: u64,
        pub status: u64,
    }

    #[repr(C)]
    pub struct QgroupLimitArgs {
        pub qgroupid: u64,
        pub flags: u64,
        pub max_rfer: u64,
        pub max_excl: u64,
        pub rsv_rfer: u64,
        pub rsv_excl: u64,
    }

    nix::ioctl_write_ptr!(subvol_create, 0x94, 14, VolArgs);
    nix::ioctl_readwrite!(quota_ctl, 0x94, 40, QuotaCtlArgs);
    // The kernel declares this one _IOR although it only reads the argument.
    nix::ioctl_read!(qgroup_limit, 0x94, 43, QgroupLimitArgs);
}

/// Whether writes are limited, decided once per data directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    enforced: bool,
}

impl Limits {
    /// Not enforced: file systems are plain directories.
    pub(crate) fn off() -> Self {
        Self { enforced: false }
    }

    /// Enforced when `data_dir` is on btrfs and quotas can be turned on
    /// there; `why_not` says why not otherwise.
    pub(crate) fn detect(data_dir: &Path) -> (Self, Result<(), NoHardLimits>) {
        match nix::sys::statfs::statfs(data_dir) {
            Ok(s) if s.filesystem_type() == nix::sys::statfs::BTRFS_SUPER_MAGIC => {}
            Ok(_) => return (Self::off(), Err(NoHardLimits::NotBtrfs)),
            Err(e) => return (Self::off(), Err(NoHardLimits::Statfs(e))),
        }
        match enable_quota(data_dir) {
            Ok(()) => (Self { enforced: true }, Ok(())),
            Err(e) => (Self::off(), Err(NoHardLimits::Quotas(e))),
        }
    }

    /// Makes a file system's root directory (a subvolume when enforced).
    /// An existing directory is left as it is.
    pub(crate) fn make_fs_dir(self, dir: &Path) -> io::Result<()> {
        if !self.enforced || dir.exists() {
            return std::fs::create_dir_all(dir);
        }
        create_subvolume(dir)
    }

    /// Makes the `.snapshot` view of a file system: a subvolume of its own
    /// when enforced, so the copies shown there are not charged to the file
    /// system's limit (a FlashBlade's snapshots do not count against it).
    pub(crate) fn make_snapshot_view(self, dir: &Path) -> io::Result<()> {
        self.make_fs_dir(dir)
    }

    /// Sets the write limit of the file system at `dir`: `Some(bytes)` when
    /// its hard limit is on with a provisioned size, `None` for no limit.
    pub(crate) fn apply(self, dir: &Path, limit: Option<u64>) -> io::Result<()> {
        if !self.enforced {
            return Ok(());
        }
        let f = File::open(dir)?;
        let mut args = sys::QgroupLimitArgs {
            // 0: the qgroup of the subvolume the descriptor is in.
            qgroupid: 0,
            flags: sys::QGROUP_LIMIT_MAX_RFER,
            max_rfer: limit.unwrap_or(sys::CLEAR),
            max_excl: 0,
            rsv_rfer: 0,
            rsv_excl: 0,
        };
        // SAFETY: `args` is a valid, initialised struct of the size the
        // request code declares, and outlives the call.
        unsafe { sys::qgroup_limit(f.as_raw_fd(), &mut args) }.map_err(io::Error::from)?;
        Ok(())
    }
}

/// A btrfs file system in a sparse image file, loop-mounted on a directory
/// so that a simulator whose state lives there enforces hard limits (the
/// demo and the tests use it; root only). Unmounted, and its image removed,
/// when dropped.
#[derive(Debug)]
pub struct BtrfsScratch {
    mount_point: PathBuf,
    image: PathBuf,
}

impl BtrfsScratch {
    /// Makes a `size`-byte sparse image at `image`, formats it with
    /// `mkfs.btrfs` and mounts it on `mount_point` (made if missing).
    pub fn mount(image: &Path, mount_point: &Path, size: u64) -> Result<Self, ScratchError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(ScratchError::NotRoot);
        }
        let mkfs = find_tool("mkfs.btrfs").ok_or(ScratchError::NoMkfs)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ScratchError::Io { path, source }
        };
        let f = File::create(image).map_err(io(image))?;
        f.set_len(size).map_err(io(image))?;
        drop(f);
        let cleanup = |why: ScratchError| {
            let _ = std::fs::remove_file(image);
            why
        };
        run(Command::new(mkfs).arg("-q").arg(image)).map_err(cleanup)?;
        std::fs::create_dir_all(mount_point).map_err(|e| cleanup(io(mount_point)(e)))?;
        run(Command::new("mount")
            .args(["-t", "btrfs", "-o", "loop"])
            .arg(image)
            .arg(mount_point))
        .map_err(cleanup)?;
        Ok(Self {
            mount_point: mount_point.to_path_buf(),
            image: image.to_path_buf(),
        })
    }

    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for BtrfsScratch {
    fn drop(&mut self) {
        // Detached, so a process still inside cannot keep it; the loop
        // device goes with the last reference (mount -o loop sets autoclear).
        let _ = nix::mount::umount2(&self.mount_point, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&self.image);
    }
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run(cmd: &mut Command) -> Result<(), ScratchError> {
    let command = format!("{cmd:?}");
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(ScratchError::Failed {
            command,
            status: o.status,
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        }),
        Err(source) => Err(ScratchError::Spawn { command, source }),
    }
}

fn enable_quota(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    let mut args = sys::QuotaCtlArgs {
        cmd: sys::QUOTA_CTL_ENABLE,
        status: 0,
    };
    // SAFETY: as in `Limits::apply`.
    match unsafe { sys::quota_ctl(f.as_raw_fd(), &mut args) } {
        // Already on (a simulator restarted on the same directory).
        Ok(_) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn create_subvolume(dir: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let parent = dir
        .parent()
        .ok_or_else(|| io::Error::other("no parent directory"))?;
    let name = dir
        .file_name()
        .ok_or_else(|| io::Error::other("no directory name"))?
        .as_bytes();
    if name.len() > sys::PATH_NAME_MAX {
        return Err(io::Error::other("name too long for a subvolume"));
    }
    std::fs::create_dir_all(parent)?;
    let p = File::open(parent)?;
    let mut args = sys::VolArgs {
        fd: 0,
        name: [0; sys::PATH_NAME_MAX + 1],
    };
    args.name[..name.len()].copy_from_slice(name);
    // SAFETY: as in `Limits::apply`; the name is NUL-terminated (the array
    // is one byte longer than the longest name).
    unsafe { sys::subvol_create(p.as_raw_fd(), &args) }.map_err(io::Error::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_kernel() {
        assert_eq!(std::mem::size_of::<sys::VolArgs>(), 4096);
        assert_eq!(std::mem::size_of::<sys::QuotaCtlArgs>(), 16);
        assert_eq!(std::mem::size_of::<sys::QgroupLimitArgs>(), 48);
    }

    #[test]
    fn off_outside_btrfs() {
        let d = tempfile::tempdir().unwrap();
        let (limits, why) = Limits::detect(d.path());
        if limits == Limits::off() {
            assert!(why.is_err());
            // Plain directories, and a limit is a no-op.
            let fs = d.path().join("fs1");
            limits.make_fs_dir(&fs).unwrap();
            assert!(fs.is_dir());
            limits.apply(&fs, Some(1 << 20)).unwrap();
        }
    }
}
