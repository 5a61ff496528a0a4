//! Dataset versions: where a snapshot of a file system appears to NFS
//! clients. A FlashBlade file system with `snapshot_directory_enabled` shows
//! a `.snapshot` directory at its root with one read-only directory per
//! snapshot. The name of that directory, given the snapshot's name
//! `<fs-name>.<suffix>`, is decided here and nowhere else: the node mounts
//! from it, reads it back when listing versions, and the admin command and
//! docs describe it (docs/dataset-versions.md says what it rests on).

use super::names::{FsName, SnapshotSuffix};

/// The directory at a file system's root that holds its snapshots.
pub const SNAPSHOT_DIR: &str = ".snapshot";

/// The entry under [`SNAPSHOT_DIR`] for snapshot `<fs>.<suffix>`.
///
/// Assumed to be the suffix alone (`.snapshot/v3` for `cifar10.v3`); not yet
/// checked on a real array. If the array shows full names instead, this and
/// [`suffix_of_entry`] are the only two functions to change.
pub fn entry_name(_fs: &FsName, suffix: &SnapshotSuffix) -> String {
    suffix.to_string()
}

/// The snapshot suffix an entry of `<fs>/.snapshot` stands for; `None` for
/// anything that is not the entry of a snapshot of `fs`.
pub fn suffix_of_entry(fs: &FsName, entry: &str) -> Option<SnapshotSuffix> {
    let suffix: SnapshotSuffix = entry.parse().ok()?;
    (entry_name(fs, &suffix) == entry).then_some(suffix)
}

/// The path of a version inside its file system: `.snapshot/<entry>`. Both
/// parts are checked names, so it never holds `/`, `..` or anything else
/// that could leave the snapshot directory.
pub fn path_in_fs(fs: &FsName, suffix: &SnapshotSuffix) -> String {
    format!("{SNAPSHOT_DIR}/{}", entry_name(fs, suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_map_both_ways() {
        let fs: FsName = "cifar10".parse().unwrap();
        let v: SnapshotSuffix = "v3".parse().unwrap();
        assert_eq!(path_in_fs(&fs, &v), ".snapshot/v3");
        assert_eq!(suffix_of_entry(&fs, &entry_name(&fs, &v)), Some(v));
        for other in ["..", ".", "a/b", "", ".hidden", "x.y"] {
            assert_eq!(suffix_of_entry(&fs, other), None, "{other:?}");
        }
    }
}
