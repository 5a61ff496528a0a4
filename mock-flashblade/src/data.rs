//! The real directories behind file systems and snapshots: create, copy,
//! replace, remove, and measure usage (total and per owner).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Copies the tree at `from` into `to` (created), keeping modes and, when
/// running as root, owners.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    let meta = std::fs::metadata(from)?;
    std::fs::set_permissions(to, meta.permissions())?;
    let _ = std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()));
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let dst = to.join(entry.file_name());
        if ft.is_dir() {
            copy_tree(&entry.path(), &dst)?;
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

/// Empties `dir` (keeping the directory itself, which may be a mount source)
/// and fills it with a copy of `from`.
pub(crate) fn replace_contents(dir: &Path, from: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    copy_tree(from, dir)
}

pub(crate) fn remove_tree(dir: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Bytes used under `dir`, with per-uid and per-gid totals.
#[derive(Debug, Default, Clone)]
pub(crate) struct Usage {
    pub(crate) bytes: u64,
    pub(crate) by_uid: HashMap<u32, u64>,
    pub(crate) by_gid: HashMap<u32, u64>,
}

pub(crate) fn usage(dir: &Path) -> Usage {
    let mut u = Usage::default();
    walk(dir, &mut u);
    u
}

fn walk(dir: &Path, u: &mut Usage) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for entry in rd.flatten() {
        let Ok(m) = entry.metadata() else { continue };
        if m.is_dir() {
            walk(&entry.path(), u);
        } else if m.is_file() {
            u.bytes += m.len();
            *u.by_uid.entry(m.uid()).or_default() += m.len();
            *u.by_gid.entry(m.gid()).or_default() += m.len();
        }
    }
}
