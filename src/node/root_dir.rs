//! The volume's root directory at its first stage: the owner (`rootOwner`,
//! `uid:gid`) and mode (`rootMode`, octal) the volume context asks for,
//! validated here, and given to the root directory once, right after the
//! staging mount, while the volume is still as the array made it.
//!
//! "Once" is decided from the directory itself, never from node state
//! (volumes move between nodes, and the node keeps no records):
//!
//! - a root with anything in it (a `.snapshot` entry aside) is the user's:
//!   left alone;
//! - with a `rootOwner` whose uid is not 0, that uid owning the root is
//!   the mark that it was done: left alone, so a user's own `chmod` (or
//!   `chgrp`) of their home survives every later stage;
//! - otherwise (no `rootOwner`, or uid 0) nothing marks it: what differs
//!   is set again at each stage while the root is empty.
//!
//! Blocking (stat, readdir, chown, chmod on a possibly remote directory):
//! the mounter runs [`apply`] on a thread with a deadline.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::errno::Errno;

use crate::context;
use crate::error::{Error, Result};

/// What the volume context asks of the root directory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RootSpec {
    pub owner: Option<(u32, u32)>,
    pub mode: Option<u32>,
}

// One rule each for the controller, the node and the chart.
pub(crate) use crate::volume::rules::{parse_mode, parse_owner};

/// The root-directory request in a volume context, if any. A value that is
/// there but bad is INVALID_ARGUMENT naming its key (a PV can be written
/// by hand).
pub(crate) fn requested(ctx: &HashMap<String, String>) -> Result<Option<RootSpec>> {
    let owner = ctx
        .get(context::ROOT_OWNER)
        .map(|v| parse_owner(v))
        .transpose()
        .map_err(|e| {
            Error::invalid_argument(format!("volume context {:?}: {e}", context::ROOT_OWNER)).because(e)
        })?;
    let mode = ctx
        .get(context::ROOT_MODE)
        .map(|v| parse_mode(v))
        .transpose()
        .map_err(|e| {
            Error::invalid_argument(format!("volume context {:?}: {e}", context::ROOT_MODE)).because(e)
        })?;
    Ok((owner.is_some() || mode.is_some()).then_some(RootSpec { owner, mode }))
}

/// The root directory as found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (07777).
    pub mode: u32,
    /// Nothing in it but, perhaps, `.snapshot`.
    pub empty: bool,
}

/// Why the root was left as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Left {
    /// Something is in it: it is the user's now.
    NotEmpty,
    /// It already belongs to the requested (non-root) uid: done before.
    Done,
    /// Already the requested owner and mode.
    Matches,
}

/// What to do with a root directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    Leave(Left),
    Change {
        chown: Option<(u32, u32)>,
        chmod: Option<u32>,
    },
}

/// The decision (see the module documentation).
pub(crate) fn plan(found: &Found, want: &RootSpec) -> Plan {
    if !found.empty {
        return Plan::Leave(Left::NotEmpty);
    }
    if let Some((uid, _)) = want.owner
        && uid != 0
        && found.uid == uid
    {
        return Plan::Leave(Left::Done);
    }
    let chown = want.owner.filter(|o| *o != (found.uid, found.gid));
    let chmod = want.mode.filter(|m| *m != found.mode);
    match (chown, chmod) {
        (None, None) => Plan::Leave(Left::Matches),
        (chown, chmod) => Plan::Change { chown, chmod },
    }
}

/// How the file server treats this node's root. Over NFS the server
/// decides by itself; development staging binds a local directory, so the
/// node plays the squash its simulated array reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Server {
    /// The real file system decides (NFS, or an unsquashed local bind).
    AsIs,
    /// Root is mapped to `anonuid`: it may not chown, and may chmod only
    /// what `anonuid` owns, as an NFS server with root_squash answers.
    /// Only development staging plays it (a real server squashes itself).
    #[cfg_attr(not(feature = "dev-staging"), allow(dead_code))]
    Squashed { anonuid: u32 },
}

/// What [`apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Left(Left),
    Changed { from: Found, to: (u32, u32, u32) },
}

/// Why the root could not be changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RootError {
    /// The server said no: `EPERM`/`EACCES` (root squashed), `EROFS`.
    #[error("{op} {path}: {errno} ({desc})", desc = errno.desc())]
    Refused {
        op: &'static str,
        path: String,
        errno: Errno,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_failed(op: &'static str, path: &Path, e: io::Error) -> RootError {
    match e.raw_os_error().map(Errno::from_raw) {
        Some(errno @ (Errno::EPERM | Errno::EACCES | Errno::EROFS)) => RootError::Refused {
            op,
            path: path.display().to_string(),
            errno,
        },
        _ => RootError::Io {
            op,
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// Looks at the root directory at `path` (a fresh staging mount) and gives
/// it what `want` asks, if [`plan`] says so. Blocking.
pub(crate) fn apply(path: &Path, want: &RootSpec, server: Server) -> std::result::Result<Outcome, RootError> {
    // One open directory for the checks and the changes: fchown/fchmod act
    // on exactly what was inspected.
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_failed("open", path, e))?;
    let found = inspect(path, &dir)?;
    let (chown, chmod) = match plan(&found, want) {
        Plan::Leave(why) => return Ok(Outcome::Left(why)),
        Plan::Change { chown, chmod } => (chown, chmod),
    };
    let refused = |op| RootError::Refused {
        op,
        path: path.display().to_string(),
        errno: Errno::EPERM,
    };
    if let Some((uid, gid)) = chown {
        if let Server::Squashed { .. } = server {
            return Err(refused("chown"));
        }
        std::os::unix::fs::fchown(&dir, Some(uid), Some(gid)).map_err(|e| io_failed("chown", path, e))?;
    }
    // Read again: a server may clear set-id bits on chown.
    let now = dir.metadata().map_err(|e| io_failed("stat", path, e))?;
    let mut mode = now.permissions().mode() & 0o7777;
    if let Some(m) = chmod.or(want.mode).filter(|m| *m != mode) {
        if let Server::Squashed { anonuid } = server
            && now.uid() != anonuid
        {
            return Err(refused("chmod"));
        }
        dir.set_permissions(std::fs::Permissions::from_mode(m))
            .map_err(|e| io_failed("chmod", path, e))?;
        mode = m;
    }
    Ok(Outcome::Changed {
        from: found,
        to: (now.uid(), now.gid(), mode),
    })
}

fn inspect(path: &Path, dir: &std::fs::File) -> std::result::Result<Found, RootError> {
    let meta = dir.metadata().map_err(|e| io_failed("stat", path, e))?;
    let mut empty = true;
    for entry in std::fs::read_dir(path).map_err(|e| io_failed("read", path, e))? {
        let entry = entry.map_err(|e| io_failed("read", path, e))?;
        // The array's snapshot view, not the user's data.
        if entry.file_name() != crate::volume::version::SNAPSHOT_DIR {
            empty = false;
            break;
        }
    }
    Ok(Found {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.permissions().mode() & 0o7777,
        empty,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::rules::MAX_ID;

    #[test]
    fn owners() {
        assert_eq!(parse_owner("1000:100"), Ok((1000, 100)));
        assert_eq!(parse_owner("0:0"), Ok((0, 0)));
        assert_eq!(parse_owner("4294967294:0"), Ok((MAX_ID, 0)));
        for bad in [
            "",
            "1000",
            "1000:",
            ":100",
            "-1:0",
            "+1:0",
            " 1:0",
            "1:0 ",
            "jovyan:users",
            "1:2:3",
            "4294967295:0",
            "0:4294967296",
            "00000000001:0",
            "1.0:0",
        ] {
            let e = parse_owner(bad).unwrap_err();
            assert!(e.to_string().contains("uid:gid"), "{bad}: {e}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("2775"), Ok(0o2775));
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert_eq!(parse_mode("07777"), Ok(0o7777));
        assert_eq!(parse_mode("0"), Ok(0));
        for bad in [
            "",
            "8",
            "0o755",
            "17777",
            "000755",
            "rwxr-xr-x",
            "-755",
            "+755",
            " 755",
            "0x1ed",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn context_values_are_checked_and_named() {
        let ctx = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(requested(&ctx(&[])).unwrap(), None);
        assert_eq!(
            requested(&ctx(&[("rootOwner", "1000:100"), ("rootMode", "2775")])).unwrap(),
            Some(RootSpec {
                owner: Some((1000, 100)),
                mode: Some(0o2775)
            })
        );
        assert_eq!(
            requested(&ctx(&[("rootMode", "700")])).unwrap(),
            Some(RootSpec {
                owner: None,
                mode: Some(0o700)
            })
        );
        for (k, v) in [
            ("rootOwner", "jovyan"),
            ("rootOwner", ""),
            ("rootMode", "999"),
            ("rootMode", ""),
        ] {
            let e = requested(&ctx(&[(k, v)])).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument { .. }), "{e}");
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    const FRESH: Found = Found {
        uid: 0,
        gid: 0,
        mode: 0o755,
        empty: true,
    };

    #[test]
    fn plans() {
        let home = RootSpec {
            owner: Some((1000, 100)),
            mode: Some(0o2775),
        };
        assert_eq!(
            plan(&FRESH, &home),
            Plan::Change {
                chown: Some((1000, 100)),
                chmod: Some(0o2775)
            }
        );
        // Anything written: the user's.
        assert_eq!(
            plan(
                &Found {
                    empty: false,
                    ..FRESH
                },
                &home
            ),
            Plan::Leave(Left::NotEmpty)
        );
        // Owned by the uid already: done before, whatever the mode or group
        // is now (the user's own chmod / chgrp).
        for (gid, mode) in [(100, 0o2775), (100, 0o700), (5000, 0o750)] {
            let f = Found {
                uid: 1000,
                gid,
                mode,
                ..FRESH
            };
            assert_eq!(plan(&f, &home), Plan::Leave(Left::Done), "{gid} {mode:o}");
        }
        // Only what differs.
        let owner_only = RootSpec {
            owner: Some((1000, 100)),
            mode: None,
        };
        assert_eq!(
            plan(&FRESH, &owner_only),
            Plan::Change {
                chown: Some((1000, 100)),
                chmod: None
            }
        );
        let mode_only = RootSpec {
            owner: None,
            mode: Some(0o1777),
        };
        assert_eq!(
            plan(&FRESH, &mode_only),
            Plan::Change {
                chown: None,
                chmod: Some(0o1777)
            }
        );
        assert_eq!(
            plan(
                &Found {
                    mode: 0o1777,
                    ..FRESH
                },
                &mode_only
            ),
            Plan::Leave(Left::Matches)
        );
        // Owner root: nothing marks "done"; what differs is set.
        let root_group = RootSpec {
            owner: Some((0, 100)),
            mode: Some(0o2770),
        };
        assert_eq!(
            plan(&FRESH, &root_group),
            Plan::Change {
                chown: Some((0, 100)),
                chmod: Some(0o2770)
            }
        );
        assert_eq!(
            plan(
                &Found {
                    gid: 100,
                    mode: 0o2770,
                    ..FRESH
                },
                &root_group
            ),
            Plan::Leave(Left::Matches)
        );
    }

    #[test]
    fn applies_once_on_a_local_directory() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: chown needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir(root.join(".snapshot")).unwrap();
        let home = RootSpec {
            owner: Some((1000, 100)),
            mode: Some(0o2775),
        };
        // Squashed root may not chown: refused, nothing changed.
        let e = apply(root, &home, Server::Squashed { anonuid: 65534 }).unwrap_err();
        assert!(
            matches!(
                e,
                RootError::Refused {
                    op: "chown",
                    errno: Errno::EPERM,
                    ..
                }
            ),
            "{e}"
        );
        let m = std::fs::metadata(root).unwrap();
        assert_eq!((m.uid(), m.permissions().mode() & 0o7777), (0, 0o755));
        // `.snapshot` does not count as content.
        let out = apply(root, &home, Server::AsIs).unwrap();
        assert!(
            matches!(
                out,
                Outcome::Changed {
                    to: (1000, 100, 0o2775),
                    ..
                }
            ),
            "{out:?}"
        );
        let m = std::fs::metadata(root).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
            (1000, 100, 0o2775)
        );
        // The user's chmod survives.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            apply(root, &home, Server::AsIs).unwrap(),
            Outcome::Left(Left::Done)
        );
        assert_eq!(
            std::fs::metadata(root).unwrap().permissions().mode() & 0o7777,
            0o700
        );
        // Squashed root may chmod what the anonymous uid owns.
        let mode_only = RootSpec {
            owner: None,
            mode: Some(0o750),
        };
        assert!(matches!(
            apply(root, &mode_only, Server::Squashed { anonuid: 1000 }).unwrap(),
            Outcome::Changed {
                to: (1000, 100, 0o750),
                ..
            }
        ));
        assert!(matches!(
            apply(
                root,
                &RootSpec {
                    owner: None,
                    mode: Some(0o700)
                },
                Server::Squashed { anonuid: 65534 }
            ),
            Err(RootError::Refused { op: "chmod", .. })
        ));
        // Not a directory (or a symlink to one): refused before anything.
        std::os::unix::fs::symlink(root, d.path().join("link")).unwrap();
        assert!(apply(&d.path().join("link"), &home, Server::AsIs).is_err());
    }
}
