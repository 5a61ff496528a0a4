//! The real directories behind file systems and snapshots: create, copy,
//! replace, remove, and measure usage (total and per owner).
//!
//! A file system's directory holds its data and, at its root, the
//! `.snapshot` directory the array shows to NFS clients (see
//! [`SNAPSHOT_DIR`]). That directory is a view the simulator keeps, not
//! data: snapshots, clones, restores and usage all leave it out.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The directory at the root of every file system through which clients
/// see its snapshots, one read-only directory per snapshot (named by the
/// snapshot's suffix: `.snapshot/<suffix>`).
pub(crate) const SNAPSHOT_DIR: &str = ".snapshot";

fn is_snapshot_dir(name: &std::ffi::OsStr) -> bool {
    name == SNAPSHOT_DIR
}

/// Copies a file system's data at `from` into `to` (created), keeping modes
/// and, when running as root, owners; the `.snapshot` view at its root is
/// not data and is left out.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    copy_dir(from, to, true)
}

fn copy_dir(from: &Path, to: &Path, top: bool) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    let meta = std::fs::metadata(from)?;
    std::fs::set_permissions(to, meta.permissions())?;
    let _ = std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()));
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        if top && is_snapshot_dir(&entry.file_name()) {
            continue;
        }
        let ft = entry.file_type()?;
        let dst = to.join(entry.file_name());
        if ft.is_dir() {
            copy_dir(&entry.path(), &dst, false)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(target, &dst)?;
        } else if ft.is_file() {
            std::fs::copy(entry.path(), &dst)?;
            let m = entry.metadata()?;
            let _ = std::os::unix::fs::chown(&dst, Some(m.uid()), Some(m.gid()));
        }
    }
    Ok(())
}

/// Owner and mode the array gives the root directory of a new file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsRoot {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits, up to 0o7777.
    pub mode: u32,
}

impl Default for FsRoot {
    /// root:root 0755: what a directory made by root with the usual umask
    /// looks like. Pure does not document a new file system's root; see
    /// the README ("Root directory of a new file system") for what is known.
    fn default() -> Self {
        Self {
            uid: 0,
            gid: 0,
            mode: 0o755,
        }
    }
}

/// Gives a new file system's root directory the array's owner and mode.
/// The owner is set only when the simulator runs as root (otherwise the
/// directory stays its own, and the mode alone is applied).
pub(crate) fn set_root(dir: &Path, root: FsRoot) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(dir, Some(root.uid), Some(root.gid))?;
    }
    // After the chown, which may clear the set-id bits.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(root.mode & 0o7777))
}

/// Empties `dir` (keeping the directory itself, which may be a mount source,
/// and its `.snapshot` view) and fills it with a copy of `from`.
pub(crate) fn replace_contents(dir: &Path, from: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if is_snapshot_dir(&entry.file_name()) {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    copy_tree(from, dir)
}

/// Removes `dir` and everything in it; a missing one is success. Read-only
/// directories (snapshot views) are made writable first when the simulator
/// does not run as root.
pub(crate) fn remove_tree(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            set_tree_writable(dir, true)?;
            remove_tree_once(dir)
        }
        other => other,
    }
}

fn remove_tree_once(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Takes write permission away from everything under `dir` (and `dir`
/// itself), or gives the owner's back: a snapshot is read-only.
pub(crate) fn set_tree_writable(dir: &Path, writable: bool) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &Path, m: &std::fs::Metadata| {
        let mode = m.permissions().mode() & 0o7777;
        let mode = if writable { mode | 0o200 } else { mode & !0o222 };
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
    };
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return if meta.is_file() { set(dir, &meta) } else { Ok(()) };
    }
    // A directory is opened for writing before its entries and closed after.
    if writable {
        set(dir, &meta)?;
    }
    for entry in std::fs::read_dir(dir)? {
        set_tree_writable(&entry?.path(), writable)?;
    }
    if !writable {
        set(dir, &meta)?;
    }
    Ok(())
}

/// Bytes used under `dir`, with per-uid and per-gid totals.
#[derive(Debug, Default, Clone)]
pub(crate) struct Usage {
    pub(crate) bytes: u64,
    pub(crate) by_uid: HashMap<u32, u64>,
    pub(crate) by_gid: HashMap<u32, u64>,
}

/// Usage of a file system's (or a snapshot's) data, leaving out the
/// `.snapshot` view at its root.
pub(crate) fn usage(dir: &Path) -> Usage {
    let mut u = Usage::default();
    walk(dir, &mut u, true);
    u
}

fn walk(dir: &Path, u: &mut Usage, top: bool) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for entry in rd.flatten() {
        if top && is_snapshot_dir(&entry.file_name()) {
            continue;
        }
        let Ok(m) = entry.metadata() else { continue };
        if m.is_dir() {
            walk(&entry.path(), u, false);
        } else if m.is_file() {
            u.bytes += m.len();
            *u.by_uid.entry(m.uid()).or_default() += m.len();
            *u.by_gid.entry(m.gid()).or_default() += m.len();
        }
    }
}
