//! Staging a dataset version: a static volume whose `snapshot` attribute (or
//! handle `<fs>.<suffix>`) names one of its file system's snapshots. The
//! node mounts that snapshot's directory under the file system's
//! `.snapshot` (see [`crate::volume::version`] for the path), always
//! read-only. When the mount fails, the node finds out why from the
//! `.snapshot` listing itself, never from the array (it holds no
//! credentials): a version that is not there is NOT_FOUND with the versions
//! that are, a file system without a snapshot directory is
//! FAILED_PRECONDITION.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::context;
use crate::error::{Error, Result};
use crate::volume::version::{self, SNAPSHOT_DIR};
use crate::volume::{FsName, SnapshotSuffix, VolumeId};

/// The version a NodeStage asks for, if any: from the volume attribute
/// `snapshot` or the handle's `.<suffix>`; both may be given if they agree.
/// Only static volumes have versions.
pub(crate) fn requested(volume_id: &str, ctx: &HashMap<String, String>) -> Result<Option<SnapshotSuffix>> {
    let handle = volume_id.parse::<VolumeId>().ok();
    let from_ctx = match ctx.get(context::SNAPSHOT) {
        None => None,
        Some(v) => Some(v.parse::<SnapshotSuffix>().map_err(|e| {
            Error::invalid_argument(format!(
                "volume attribute {:?}: {e} (the suffix of one of the file system's snapshots, e.g. v3 for cifar10.v3)",
                context::SNAPSHOT
            ))
            .because(e)
        })?),
    };
    let from_handle = handle.as_ref().and_then(|h| h.version()).cloned();
    match (&handle, from_ctx, from_handle) {
        (Some(VolumeId::Managed { .. }), Some(_), _) => Err(Error::invalid_argument(format!(
            "volume {volume_id:?} is a provisioned volume; only static (imported) volumes can name a snapshot version"
        ))),
        (_, Some(a), Some(b)) if a != b => Err(Error::invalid_argument(format!(
            "volume {volume_id:?} names version {b} in its handle but {a} in its {:?} attribute",
            context::SNAPSHOT
        ))),
        (_, a, b) => Ok(a.or(b)),
    }
}

/// What the `.snapshot` directory of a file system shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listing {
    /// No `.snapshot` directory: the file system's snapshot directory is
    /// disabled (`snapshot_directory_enabled` false).
    Disabled,
    /// The versions present, sorted.
    Versions(Vec<SnapshotSuffix>),
}

impl Listing {
    /// The error for a version that could not be staged.
    pub(crate) fn error(&self, fs: &FsName, wanted: &SnapshotSuffix) -> Error {
        match self {
            Listing::Disabled => Error::failed_precondition(format!(
                "file system {fs} has its snapshot directory disabled (snapshot_directory_enabled is false), so version {wanted} cannot be mounted; enable it on the array"
            )),
            Listing::Versions(v) if v.contains(wanted) => Error::unavailable(format!(
                "version {wanted} of {fs} exists but could not be mounted"
            )),
            Listing::Versions(v) if v.is_empty() => Error::not_found(format!(
                "file system {fs} has no version {wanted}: it has no snapshots"
            )),
            Listing::Versions(v) => Error::not_found(format!(
                "file system {fs} has no version {wanted}; its versions are: {}",
                v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// Reads `<fs root>/.snapshot` on a thread of its own, given up after
/// `limit` (on NFS a dead server blocks readdir; the thread is abandoned).
/// Entries that are not a snapshot of `fs` by [`version::suffix_of_entry`]
/// are left out. The root itself must be reachable.
pub(crate) async fn list(fs_root: &Path, fs: &FsName, limit: Duration) -> Result<Listing> {
    let (root, fs) = (fs_root.to_path_buf(), fs.clone());
    let work = tokio::task::spawn_blocking(move || -> std::io::Result<Listing> {
        let dir = root.join(SNAPSHOT_DIR);
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(Listing::Disabled),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::Disabled),
            Err(e) => return Err(e),
        }
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            if let Some(s) = name.to_str().and_then(|n| version::suffix_of_entry(&fs, n)) {
                out.push(s);
            }
        }
        out.sort();
        Ok(Listing::Versions(out))
    });
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(Ok(l))) => Ok(l),
        Ok(Ok(Err(e))) => Err(Error::unavailable(format!(
            "cannot read {}/{SNAPSHOT_DIR}: {e}",
            fs_root.display()
        ))
        .because(e)),
        Ok(Err(e)) => Err(Error::internal(format!("listing versions: worker failed: {e}")).because(e)),
        Err(_) => Err(Error::deadline_exceeded(format!(
            "listing the versions of {fs_root:?} did not finish within {:.1}s",
            limit.as_secs_f64()
        ))),
    }
}

/// In development mode (`--local-export-root`): the directory to bind for
/// a version, checked to be a real directory (not a symlink that a user of
/// the live file system could have planted) under a real `.snapshot`.
pub(crate) async fn local_source(
    fs_root: &Path,
    fs: &FsName,
    wanted: &SnapshotSuffix,
    limit: Duration,
) -> Result<PathBuf> {
    let source = fs_root.join(version::path_in_fs(fs, wanted));
    let is_real_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if is_real_dir(&fs_root.join(SNAPSHOT_DIR)) && is_real_dir(&source) {
        return Ok(source);
    }
    Err(list(fs_root, fs, limit).await?.error(fs, wanted))
}

/// A private, empty directory (mode 0700) for a short-lived probe mount,
/// outside the kubelet directory so the mount never propagates to the host.
pub(crate) fn probe_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "fbcsi-versions-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(v: &[(&str, &str)]) -> HashMap<String, String> {
        v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn requested_versions() {
        let v = |s: &str| Some(s.parse::<SnapshotSuffix>().unwrap());
        assert_eq!(requested("cifar10", &ctx(&[])).unwrap(), None);
        assert_eq!(
            requested("cifar10", &ctx(&[("snapshot", "v3")])).unwrap(),
            v("v3")
        );
        assert_eq!(requested("fb01/cifar10.v3", &ctx(&[])).unwrap(), v("v3"));
        assert_eq!(
            requested("cifar10.v3", &ctx(&[("snapshot", "v3")])).unwrap(),
            v("v3")
        );
        assert!(requested("cifar10.v3", &ctx(&[("snapshot", "v2")])).is_err());
        assert!(requested("fb01/k8s-pvc-1/abc", &ctx(&[("snapshot", "v2")])).is_err());
        for bad in ["../x", "", ".", "v3/..", "v 3", "-v3", "a.b"] {
            let e = requested("cifar10", &ctx(&[("snapshot", bad)])).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }), "{bad:?}: {e}");
        }
    }

    #[tokio::test]
    async fn listing_and_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let fs: FsName = "ds".parse().unwrap();
        let v3: SnapshotSuffix = "v3".parse().unwrap();
        let limit = Duration::from_secs(5);
        let l = list(dir.path(), &fs, limit).await.unwrap();
        assert_eq!(l, Listing::Disabled);
        assert!(
            matches!(l.error(&fs, &v3), Error::FailedPrecondition { message: m, .. } if m.contains("disabled"))
        );
        std::fs::create_dir_all(dir.path().join(".snapshot/v1")).unwrap();
        std::fs::create_dir_all(dir.path().join(".snapshot/v2")).unwrap();
        std::fs::create_dir_all(dir.path().join(".snapshot/not.a.version")).unwrap();
        let l = list(dir.path(), &fs, limit).await.unwrap();
        match l.error(&fs, &v3) {
            Error::NotFound { message: m, .. } => assert!(m.ends_with("its versions are: v1, v2"), "{m}"),
            other => panic!("{other}"),
        }
        // A symlink planted where a version should be is not a version.
        std::os::unix::fs::symlink("/etc", dir.path().join(".snapshot/v3")).unwrap();
        assert!(local_source(dir.path(), &fs, &v3, limit).await.is_err());
        let v1 = "v1".parse().unwrap();
        assert_eq!(
            local_source(dir.path(), &fs, &v1, limit).await.unwrap(),
            dir.path().join(".snapshot/v1")
        );
    }
}
