//! Path and context validation for the node: staging and target paths must
//! be absolute, normalised and inside the kubelet directory, and must stay
//! inside it when resolved (no symlink may lead out); server, share and mount
//! options must be safe to hand to `mount`.
//!
//! [`resolve`] is the one routine every node RPC uses to turn a path from
//! kubelet into the real path it will mount on, unmount or stat.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use super::mountinfo::{self, MountEntry};

/// Why a path, server, share or mount option in a request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error("{what} is required")]
    Missing { what: String },
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
    /// `why` completes "<what> <path> …".
    #[error("{what} {path:?} {why}")]
    Path {
        what: String,
        path: String,
        why: &'static str,
    },
    #[error("{what} {path:?} is outside the kubelet directory {}", kubelet.display())]
    Outside {
        what: String,
        path: String,
        kubelet: PathBuf,
    },
    #[error(transparent)]
    Server(#[from] crate::volume::NameError),
    #[error("share {0:?} must be /<file-system name>")]
    Share(String),
    #[error("mount option {0:?} is not allowed")]
    Option(String),
    #[error("mount option {0:?} is reserved for the driver")]
    Reserved(String),
}

/// Checks a path from a request. `Err` says what is wrong with it.
pub(crate) fn check_path(what: &str, path: &str, kubelet_dir: &Path) -> Result<PathBuf, RequestError> {
    let bad = |why| RequestError::Path {
        what: what.to_string(),
        path: path.to_string(),
        why,
    };
    if path.is_empty() {
        return Err(RequestError::Missing {
            what: what.to_string(),
        });
    }
    if path.contains('\0') {
        return Err(RequestError::Nul {
            what: what.to_string(),
        });
    }
    if !path.starts_with('/') {
        return Err(bad("must be an absolute path"));
    }
    if path.len() > 1 && path.ends_with('/') || path.contains("//") {
        return Err(bad("is not normalised"));
    }
    let p = Path::new(path);
    for c in p.components() {
        match c {
            Component::RootDir | Component::Normal(_) => {}
            Component::CurDir | Component::ParentDir | Component::Prefix(_) => {
                return Err(bad("must not contain '.' or '..'"));
            }
        }
    }
    if path.split('/').any(|s| s == "." || s == "..") {
        return Err(bad("must not contain '.' or '..'"));
    }
    if !p.starts_with(kubelet_dir) || p == kubelet_dir {
        return Err(RequestError::Outside {
            what: what.to_string(),
            path: path.to_string(),
            kubelet: kubelet_dir.to_path_buf(),
        });
    }
    Ok(p.to_path_buf())
}

/// What a resolved path's last component is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing there (and it was not asked to be created).
    Missing,
    /// A mount point, known from mountinfo; never stat()ed, so a dead
    /// server behind it cannot hang the call.
    MountPoint,
    /// A local directory that is not a mount point.
    Dir,
    /// Something else: a regular file, a socket, a device.
    NotDir,
}

/// A request path resolved to its real location inside the kubelet directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// The real path: no symlink in it, inside the kubelet directory.
    pub path: PathBuf,
    pub found: Found,
}

/// Why a path was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PathError {
    #[error("{what} {path:?} leads out of the kubelet directory {kubelet} (through {via})")]
    Escapes {
        what: String,
        path: PathBuf,
        via: PathBuf,
        kubelet: PathBuf,
    },
    #[error("{what} {path:?} resolves to the kubelet directory itself")]
    IsKubeletDir { what: String, path: PathBuf },
    #[error("{what} {path:?} passes through {at}, which is not a directory")]
    NotADirectory {
        what: String,
        path: PathBuf,
        at: PathBuf,
    },
    #[error("{what} {path:?} passes through the mounted volume at {at}")]
    CrossesMount {
        what: String,
        path: PathBuf,
        at: PathBuf,
    },
    #[error("{what} {path:?} has too many levels of symbolic links")]
    TooManyLinks { what: String, path: PathBuf },
    /// A symlink's `..` after a directory that does not exist, where missing
    /// directories are to be made: making it and climbing back out could
    /// land anywhere, the staging mount included, and no path kubelet sends
    /// needs it. (Without creation such a path is simply missing.)
    #[error("{what} {path:?} climbs out ('..') of {at}, which does not exist")]
    ClimbsFromMissing {
        what: String,
        path: PathBuf,
        at: PathBuf,
    },
    #[error("{what} {path:?}: {op} {at}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        op: &'static str,
        at: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl PathError {
    /// True when the caller sent a path it must not send (INVALID_ARGUMENT),
    /// false for a local I/O failure (INTERNAL).
    pub(crate) fn is_caller_error(&self) -> bool {
        !matches!(self, PathError::Io { .. })
    }
}

/// How many symlinks one resolution follows at most (as the kernel's 40).
const MAX_LINKS: usize = 40;

/// File-system types whose contents live on another machine: walking into
/// one can block on a dead server, so no path may pass through one.
pub(crate) fn is_remote_fs(fs_type: &str) -> bool {
    fs_type.starts_with("nfs")
        || fs_type.starts_with("fuse")
        || matches!(fs_type, "cifs" | "smb3" | "9p" | "ceph" | "glusterfs" | "lustre")
}

/// Resolves `path` (already checked by [`check_path`]) inside `kubelet_dir`
/// (a real path), component by component, without ever following a symlink
/// out of it and without stat()ing anything behind a mount point:
///
/// - a component that `mounts` shows as a mount point is not looked at: as
///   the last component it is the answer; as an ancestor it is passed only
///   when it is a local file system;
/// - a symlink is followed only while its target stays inside the kubelet
///   directory (relative targets are walked from the link's directory, `..`
///   never climbs above the kubelet directory);
/// - with `create`, missing directories are made one at a time with
///   mkdir(2), which never follows a symlink, and checked again.
///
/// Blocking (lstat, readlink, mkdir): call it on a thread with a deadline.
pub(crate) fn resolve(
    what: &str,
    kubelet_dir: &Path,
    path: &Path,
    mounts: &[MountEntry],
    create: bool,
) -> Result<Resolved, PathError> {
    let rel = path.strip_prefix(kubelet_dir).map_err(|_| PathError::Escapes {
        what: what.into(),
        path: path.into(),
        via: path.into(),
        kubelet: kubelet_dir.into(),
    })?;
    let mut rest: VecDeque<OsString> = rel.iter().map(OsString::from).collect();
    let mut base = kubelet_dir.to_path_buf();
    let mut links = 0;
    let io_err = |op: &'static str, at: &Path, source: io::Error| PathError::Io {
        what: what.into(),
        path: path.into(),
        op,
        at: at.into(),
        source,
    };
    while let Some(c) = rest.pop_front() {
        if c == ".." {
            if base == kubelet_dir {
                return Err(PathError::Escapes {
                    what: what.into(),
                    path: path.into(),
                    via: base,
                    kubelet: kubelet_dir.into(),
                });
            }
            base.pop();
            continue;
        }
        if c == "." || c.is_empty() {
            continue;
        }
        let next = base.join(&c);
        let last = rest.is_empty();
        if let Some(m) = mountinfo::top_mount_at(mounts, &next) {
            if last {
                return Ok(Resolved {
                    path: next,
                    found: Found::MountPoint,
                });
            }
            if is_remote_fs(&m.fs_type) {
                return Err(PathError::CrossesMount {
                    what: what.into(),
                    path: path.into(),
                    at: next,
                });
            }
        }
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if create && rest.iter().any(|c| c == "..") {
                    return Err(PathError::ClimbsFromMissing {
                        what: what.into(),
                        path: path.into(),
                        at: next,
                    });
                }
                if !create {
                    let mut missing = next;
                    missing.extend(rest);
                    return Ok(Resolved {
                        path: missing,
                        found: Found::Missing,
                    });
                }
                match std::fs::DirBuilder::new().mode(0o750).create(&next) {
                    Ok(()) => {}
                    // Made by someone else meanwhile: look again.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err("mkdir", &next, e)),
                }
                links += 1; // bounds a create/replace race like a link would
                if links > MAX_LINKS {
                    return Err(PathError::TooManyLinks {
                        what: what.into(),
                        path: path.into(),
                    });
                }
                rest.push_front(c);
                continue;
            }
            Err(e) => return Err(io_err("lstat", &next, e)),
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(PathError::TooManyLinks {
                    what: what.into(),
                    path: path.into(),
                });
            }
            let target = std::fs::read_link(&next).map_err(|e| io_err("readlink", &next, e))?;
            let escapes = || PathError::Escapes {
                what: what.into(),
                path: path.into(),
                via: next.clone(),
                kubelet: kubelet_dir.into(),
            };
            let parts: Vec<OsString> = if target.is_absolute() {
                // Only a target that names the kubelet directory itself
                // (literally, no `..` on the way) is followed.
                if target.components().any(|c| matches!(c, Component::ParentDir)) {
                    return Err(escapes());
                }
                let inside = target.strip_prefix(kubelet_dir).map_err(|_| escapes())?;
                base = kubelet_dir.to_path_buf();
                inside.iter().map(OsString::from).collect()
            } else {
                target.iter().map(OsString::from).collect()
            };
            for p in parts.into_iter().rev() {
                rest.push_front(p);
            }
            continue;
        }
        if meta.is_dir() {
            base = next;
            continue;
        }
        if last {
            return Ok(Resolved {
                path: next,
                found: Found::NotDir,
            });
        }
        return Err(PathError::NotADirectory {
            what: what.into(),
            path: path.into(),
            at: next,
        });
    }
    if base == kubelet_dir {
        return Err(PathError::IsKubeletDir {
            what: what.into(),
            path: path.into(),
        });
    }
    Ok(Resolved {
        path: base,
        found: Found::Dir,
    })
}

/// A NodePublishVolume's staging and target paths, resolved against one
/// mount table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Publish {
    /// Nothing is mounted at the (real) staging path.
    NotStaged {
        staging: PathBuf,
    },
    /// The target is the staging mount, inside it or above it: the matching
    /// unpublish would take the staging mount away. Nothing was created.
    Overlaps {
        staging: PathBuf,
    },
    Ready(Box<PublishPaths>),
}

/// Where a publish mounts from and onto.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PublishPaths {
    pub staging: PathBuf,
    /// The mount at the staging path.
    pub staged: MountEntry,
    /// The target, its missing directories made.
    pub target: Resolved,
    /// The mount already at the target, when it is a mount point.
    pub existing: Option<MountEntry>,
}

/// Resolves both paths of a publish ([`resolve`]) against `mounts`, making
/// the target's missing directories only once it is known not to overlap
/// the staging mount (no directory is ever made inside a volume). One
/// mount-table read serves the whole publish, which matters when a class's
/// pods land at once: every read walks the whole table under the kernel's
/// mount lock. Blocking, like [`resolve`].
pub(crate) fn resolve_publish(
    kubelet_dir: &Path,
    staging: &Path,
    target: &Path,
    mounts: &[MountEntry],
) -> Result<Publish, PathError> {
    let staging = resolve("staging_target_path", kubelet_dir, staging, mounts, false)?;
    let staged = match staging.found {
        Found::MountPoint => mountinfo::top_mount_at(mounts, &staging.path),
        _ => None,
    };
    let Some(staged) = staged.cloned() else {
        return Ok(Publish::NotStaged {
            staging: staging.path,
        });
    };
    let staging = staging.path;
    let mut resolved = resolve("target_path", kubelet_dir, target, mounts, false)?;
    if resolved.path.starts_with(&staging) || staging.starts_with(&resolved.path) {
        return Ok(Publish::Overlaps { staging });
    }
    if resolved.found == Found::Missing {
        resolved = resolve("target_path", kubelet_dir, target, mounts, true)?;
        // A missing path has no `..` left in it (refused above), so making
        // it cannot have led into the staging mount; checked again anyway.
        if resolved.path.starts_with(&staging) || staging.starts_with(&resolved.path) {
            return Ok(Publish::Overlaps { staging });
        }
    }
    let existing = match resolved.found {
        Found::MountPoint => mountinfo::top_mount_at(mounts, &resolved.path).cloned(),
        _ => None,
    };
    Ok(Publish::Ready(Box::new(PublishPaths {
        staging,
        staged,
        target: resolved,
        existing,
    })))
}

/// A host name or IP address for `server:/share`.
pub(crate) fn check_server(server: &str) -> Result<(), RequestError> {
    server.parse::<crate::volume::Host>()?;
    Ok(())
}

/// An export path: `/` plus a FlashBlade file-system name.
pub(crate) fn check_share(share: &str) -> Result<String, RequestError> {
    let bad = || RequestError::Share(share.to_string());
    let name = share.strip_prefix('/').ok_or_else(bad)?;
    if name.parse::<crate::volume::FsName>().is_err() {
        return Err(bad());
    }
    Ok(name.to_string())
}

/// Mount options refused because the driver decides them or they would
/// change what is mounted.
const RESERVED_OPTIONS: &[&str] = &["bind", "rbind", "move", "remount", "loop"];

/// Splits and checks mount flags from a volume capability: each option is
/// `name` or `name=value` of safe characters, so nothing can smuggle another
/// option or a path.
pub(crate) fn check_mount_flags(flags: &[String]) -> Result<Vec<String>, RequestError> {
    let mut out = Vec::new();
    for flag in flags {
        for opt in flag.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let ok = !opt.starts_with('-')
                && opt.len() <= 128
                && opt
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'=' | b':' | b'-'));
            if !ok {
                return Err(RequestError::Option(opt.to_string()));
            }
            let name = opt.split('=').next().unwrap_or(opt);
            if RESERVED_OPTIONS.contains(&name) {
                return Err(RequestError::Reserved(opt.to_string()));
            }
            out.push(opt.to_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "/var/lib/kubelet";

    #[test]
    fn paths() {
        let k = Path::new(K);
        check_path(
            "p",
            "/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/pvc/mount",
            k,
        )
        .unwrap();
        for bad in [
            "",
            "relative/path",
            "some/path",
            "/var/lib/kubelet/../../etc",
            "/var/lib/kubelet/pods/./x",
            "/var/lib/kubelet//pods",
            "/var/lib/kubelet/pods/",
            "/etc/passwd",
            "/var/lib/kubelet",
            "/var/lib/kubeletx/pods",
            "/var/lib/kubelet/pods/\0x",
        ] {
            assert!(check_path("p", bad, k).is_err(), "{bad:?}");
        }
    }

    /// A kubelet dir with the links a hostile or clumsy setup could hold.
    struct Fixture {
        _tmp: tempfile::TempDir,
        k: PathBuf,
        out: PathBuf,
    }

    fn fixture() -> Fixture {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(tmp.path()).unwrap();
        let k = root.join("k");
        let out = root.join("out");
        for d in [k.join("a/b"), k.join("c"), out.join("inner")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(k.join("f"), b"x").unwrap();
        symlink("a", k.join("in_rel")).unwrap();
        symlink("..", k.join("a/up")).unwrap();
        symlink("../..", k.join("a/upup")).unwrap();
        symlink(&out, k.join("out_abs")).unwrap();
        symlink("/etc", k.join("etc")).unwrap();
        symlink(k.join("c"), k.join("in_abs")).unwrap();
        symlink("loop", k.join("loop")).unwrap();
        symlink("nothere", k.join("dangling")).unwrap();
        symlink("../../../out", k.join("a/b/rel_out")).unwrap();
        symlink(format!("{}/../out", k.display()), k.join("abs_dotdot")).unwrap();
        Fixture { _tmp: tmp, k, out }
    }

    fn listing(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    }

    fn entry(point: &Path, fs_type: &str) -> MountEntry {
        mountinfo::parse_line(&format!(
            "900 1 0:99 / {} rw - {fs_type} srv:/x rw",
            point.display()
        ))
        .unwrap()
    }

    #[test]
    fn resolve_follows_links_only_inside() {
        let f = fixture();
        let k = &f.k;
        let r = |p: &str, create| resolve("p", k, &k.join(p), &[], create);
        assert_eq!(r("in_rel/b", false).unwrap().path, k.join("a/b"));
        assert_eq!(r("a/up/c", false).unwrap().path, k.join("c"));
        assert_eq!(r("in_abs", false).unwrap().found, Found::Dir);
        assert_eq!(r("f", false).unwrap().found, Found::NotDir);
        assert_eq!(r("dangling/x", false).unwrap().path, k.join("nothere/x"));
        assert_eq!(r("dangling/x", false).unwrap().found, Found::Missing);
        for bad in [
            "etc/probe",
            "etc",
            "out_abs/x",
            "a/upup/x",
            "a/b/rel_out",
            "abs_dotdot/x",
        ] {
            let e = r(bad, true).unwrap_err();
            assert!(matches!(e, PathError::Escapes { .. }), "{bad}: {e}");
            assert!(e.is_caller_error());
        }
        assert!(matches!(r("loop/x", false), Err(PathError::TooManyLinks { .. })));
        assert!(matches!(r("f/x", true), Err(PathError::NotADirectory { .. })));
        assert!(matches!(r("a/up", false), Err(PathError::IsKubeletDir { .. })));
        assert_eq!(listing(&f.out), vec![f.out.join("inner")]);
        assert!(!Path::new("/etc/probe").exists());
        // Creation makes every missing level, inside only.
        let made = r("in_rel/new/deeper", true).unwrap();
        assert_eq!(made.path, k.join("a/new/deeper"));
        assert_eq!(made.found, Found::Dir);
        assert!(k.join("a/new/deeper").is_dir());
    }

    #[test]
    fn resolve_never_looks_behind_a_mount_point() {
        let f = fixture();
        let k = &f.k;
        // The mount point does not even exist as a directory here: a stat
        // would fail, so Ok proves mountinfo decided.
        let mounts = [entry(&k.join("gone"), "nfs4"), entry(&k.join("c"), "ext4")];
        let r = resolve("p", k, &k.join("gone"), &mounts, false).unwrap();
        assert_eq!(r.found, Found::MountPoint);
        let e = resolve("p", k, &k.join("gone/x"), &mounts, true).unwrap_err();
        assert!(matches!(e, PathError::CrossesMount { .. }), "{e}");
        // A local mount on the way is fine.
        assert_eq!(
            resolve("p", k, &k.join("c/d"), &mounts, true).unwrap().path,
            k.join("c/d")
        );
    }

    #[test]
    fn publish_paths_from_one_table() {
        let f = fixture();
        let k = &f.k;
        // The staging mount is local here, so only the overlap rule (not the
        // no-crossing rule) keeps directories from being made inside it.
        let mounts = [entry(&k.join("a/b"), "ext4"), entry(&k.join("c"), "nfs4")];
        let publish =
            |staging: &str, target: &str| resolve_publish(k, &k.join(staging), &k.join(target), &mounts);

        assert_eq!(
            publish("a", "pod/mount").unwrap(),
            Publish::NotStaged { staging: k.join("a") }
        );
        // Through a link to the staging mount, inside it, above it.
        for target in ["a/b", "in_rel/b/new/mount", "a"] {
            assert_eq!(
                publish("in_rel/b", target).unwrap(),
                Publish::Overlaps {
                    staging: k.join("a/b")
                },
                "{target}"
            );
        }
        assert!(
            !k.join("a/b/new").exists(),
            "nothing made inside the staging mount"
        );

        let Publish::Ready(ready) = publish("in_rel/b", "pods/p1/mount").unwrap() else {
            panic!("not ready")
        };
        let PublishPaths {
            staging,
            staged,
            target,
            existing,
        } = *ready;
        assert_eq!(staging, k.join("a/b"));
        assert_eq!(staged.mount_point, k.join("a/b"));
        assert_eq!(
            target,
            Resolved {
                path: k.join("pods/p1/mount"),
                found: Found::Dir
            }
        );
        assert!(k.join("pods/p1/mount").is_dir());
        assert_eq!(existing, None);

        // Already a mount point: reported with its mount, nothing stat()ed.
        let Publish::Ready(ready) = publish("a/b", "c").unwrap() else {
            panic!("not ready")
        };
        let PublishPaths { target, existing, .. } = *ready;
        assert_eq!(target.found, Found::MountPoint);
        assert_eq!(existing.unwrap().fs_type, "nfs4");
        // A link that climbs out of a directory it would have to make, into
        // the staging mount: refused, nothing made.
        std::fs::create_dir_all(k.join("pods/p3")).unwrap();
        std::os::unix::fs::symlink("gone/../../../a/b/new", k.join("pods/p3/l")).unwrap();
        assert!(matches!(
            publish("a/b", "pods/p3/l/mount"),
            Err(PathError::ClimbsFromMissing { .. })
        ));
        assert!(!k.join("a/b/new").exists() && !k.join("pods/p3/gone").exists());
        // A hostile target is refused before anything is made.
        assert!(matches!(publish("a/b", "etc/x"), Err(PathError::Escapes { .. })));
        assert!(matches!(
            publish("etc/x", "pods/p2"),
            Err(PathError::Escapes { .. })
        ));
        assert!(!k.join("pods/p2").exists());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        const PARTS: &[&str] = &[
            "a",
            "b",
            "c",
            "f",
            "in_rel",
            "up",
            "upup",
            "out_abs",
            "etc",
            "in_abs",
            "loop",
            "dangling",
            "rel_out",
            "abs_dotdot",
            "new1",
            "new2",
        ];

        fn rel_path() -> impl Strategy<Value = String> {
            proptest::collection::vec(proptest::sample::select(PARTS), 1..6).prop_map(|v| v.join("/"))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

            /// Without creation, resolve agrees with the kernel's own
            /// resolution wherever that stays inside the kubelet dir, and
            /// refuses wherever it leaves.
            #[test]
            fn agrees_with_the_kernel(rel in rel_path()) {
                let f = fixture();
                let p = f.k.join(&rel);
                let kernel = std::fs::canonicalize(&p);
                match resolve("p", &f.k, &p, &[], false) {
                    Ok(r) => {
                        prop_assert!(r.path.starts_with(&f.k) && r.path != f.k, "{rel} -> {:?}", r.path);
                        match r.found {
                            Found::Missing => prop_assert!(kernel.is_err(), "{rel}: kernel found {:?}", kernel),
                            _ => prop_assert_eq!(kernel.unwrap(), r.path),
                        }
                    }
                    Err(PathError::Escapes { .. }) => {
                        if let Ok(real) = kernel {
                            prop_assert!(!real.starts_with(&f.k), "{rel}: kernel says {:?}", real);
                        }
                    }
                    Err(e @ PathError::IsKubeletDir { .. }) => {
                        prop_assert_eq!(kernel.unwrap(), f.k.clone(), "{}", e);
                    }
                    Err(e) => prop_assert!(kernel.is_err(), "{rel}: {e} but kernel says {:?}", kernel),
                }
            }

            /// With creation, whatever is made is made inside, and the
            /// result is a real directory.
            #[test]
            fn creates_only_inside(rel in rel_path()) {
                let f = fixture();
                let before = listing(&f.out);
                let p = f.k.join(&rel);
                if let Ok(r) = resolve("p", &f.k, &p, &[], true) {
                    prop_assert!(r.path.starts_with(&f.k));
                    if r.found == Found::Dir {
                        prop_assert_eq!(std::fs::canonicalize(&p).unwrap(), r.path);
                    } else {
                        prop_assert_eq!(r.found, Found::NotDir);
                    }
                }
                prop_assert_eq!(listing(&f.out), before);
            }
        }
    }

    #[test]
    fn servers_and_shares() {
        check_server("10.21.0.10").unwrap();
        check_server("fb01-data.example.com").unwrap();
        check_server("fd00::10").unwrap();
        for bad in ["", "-oexec", "a b", "host:/x", "a,b", "$(reboot)"] {
            assert!(check_server(bad).is_err(), "{bad}");
        }
        assert_eq!(check_share("/k8s-pvc-1").unwrap(), "k8s-pvc-1");
        for bad in ["k8s", "/", "/a/b", "/../etc", "/-o", "/a b", "/a,ro"] {
            assert!(check_share(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn mount_flags() {
        assert_eq!(
            check_mount_flags(&["nconnect=8".into(), "hard,noatime".into()]).unwrap(),
            vec!["nconnect=8", "hard", "noatime"]
        );
        for bad in ["-o", "a b", "x;y", "bind", "remount", "rw/../", "a\"b"] {
            assert!(check_mount_flags(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
