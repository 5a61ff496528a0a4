//! The checks that look at the file system's content: its root's owner and
//! mode, the `.snapshot/<entry>` layout, a mount below `.snapshot`, root
//! squashing, NFSv3 and v4.1 mounts, and that `nfs.rules ""` exports to
//! nobody. With `--mount` they mount over NFS from this node (as root; the
//! file system is then exported to this node's address only, never wider);
//! with `--local-export-root` (development, as `serve` has it) they read the
//! simulator's directory for the file system, and what only NFS can show is
//! skipped. The judging is plain functions, unit-tested here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::{Check, Run, Verdict, check, skipped};
use crate::flashblade::error::Error;
use crate::flashblade::models::{FileSystem, Snapshot};
use crate::volume::names::{FsName, SnapshotSuffix};
use crate::volume::version;

/// How long one mount or unmount may take.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a root directory of a new file system is expected to be: the
/// simulator's default and what `rootOwner` / `rootMode` start from.
pub(super) const EXPECTED_ROOT: (u32, u32, u32) = (0, 0, 0o755);

/// The uid a squashed root becomes.
const NOBODY: u32 = 65534;

const CODE_ROOT: &[&str] = &[
    "src/node/root_dir.rs (rootOwner, rootMode)",
    "mock-flashblade/src/state/mod.rs: FsRoot::default",
];
const CODE_ENTRY: &[&str] = &[
    "src/volume/version.rs: entry_name, suffix_of_entry",
    "src/node/versions.rs",
];
const CODE_BELOW: &[&str] = &[
    "src/node/mod.rs: dataset versions mount .snapshot/<entry>",
    "src/volume/version.rs",
];
const CODE_SQUASH: &[&str] = &[
    "src/volume/exports.rs (exportOptions, root_squash default)",
    "src/node/root_dir.rs (chown at first stage)",
];
const CODE_MOUNT: &[&str] = &["src/node/mounter.rs: NFS mount options"];
const CODE_RULES_EMPTY: &[&str] = &[
    "src/controller/volumes.rs: CreateVolume (exportTo: nodes)",
    "src/controller/publish.rs",
];

/// How `check-array` sees the content of its file system.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MountMode {
    /// Not at all: the content checks are skipped.
    #[default]
    None,
    /// NFS mounts from this node (root) to the array's data address.
    Nfs { endpoint: Option<String> },
    /// Development: the directory `DIR/<fs-name>` is the file system
    /// (mock-flashblade's data dir).
    Local(PathBuf),
}

impl MountMode {
    /// Fills in the configured data address when `--mount` gave none.
    pub(super) fn with_endpoint(self, configured: Option<String>) -> Self {
        match self {
            MountMode::Nfs { endpoint: None } => MountMode::Nfs { endpoint: configured },
            other => other,
        }
    }

    pub(super) fn validate(&self) -> Result<(), MountModeError> {
        match self {
            MountMode::Nfs { endpoint: None } => Err(MountModeError::NoEndpoint),
            MountMode::Nfs { .. } if !nix::unistd::geteuid().is_root() => Err(MountModeError::NotRoot),
            _ => Ok(()),
        }
    }

    pub(super) fn is_nfs(&self) -> bool {
        matches!(self, MountMode::Nfs { .. })
    }
}

/// Why `--mount` cannot be used here.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum MountModeError {
    #[error("--mount needs the array's NFS data address: --nfs-endpoint, or nfs_endpoint in the config")]
    NoEndpoint,
    #[error("--mount needs root")]
    NotRoot,
}

/// Why a step of the NFS checks failed: the report's observation says it.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("cannot resolve {endpoint}: {source}")]
    Resolve {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} has no address")]
    NoAddress(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} took longer than {seconds}s")]
    Timeout { program: String, seconds: u64 },
    /// The command ran and failed: its own words.
    #[error("{0}")]
    Command(String),
}

/// `mount` arguments for `server:/path` at `target` with NFS `vers`.
/// Soft, with short timeouts: a check must never hang on a dead server.
pub(super) fn mount_args(server: &str, path: &str, vers: &str, target: &Path) -> Vec<String> {
    let host = if server.contains(':') && !server.starts_with('[') {
        format!("[{server}]")
    } else {
        server.to_string()
    };
    let mut opts = format!("vers={vers},soft,timeo=100,retrans=2");
    if vers == "3" {
        // No lock daemon is needed to look.
        opts.push_str(",nolock");
    }
    vec![
        "-t".into(),
        "nfs".into(),
        "-o".into(),
        opts,
        format!("{host}:{path}"),
        target.display().to_string(),
    ]
}

/// Judges a new file system's root.
pub(super) fn judge_root(uid: u32, gid: u32, mode: u32) -> (String, Verdict) {
    let (eu, eg, em) = EXPECTED_ROOT;
    let observed = format!("{uid}:{gid} {:04o}", mode & 0o7777);
    let v = if (uid, gid, mode & 0o7777) == (eu, eg, em) {
        Verdict::Pass
    } else {
        Verdict::Differs
    };
    (observed, v)
}

/// Judges the entries of `.snapshot` against the name the driver expects.
pub(super) fn judge_entry(entries: &[String], fs: &str, suffix: &str) -> (String, Verdict) {
    let want = match (fs.parse::<FsName>(), suffix.parse::<SnapshotSuffix>()) {
        (Ok(f), Ok(s)) => version::entry_name(&f, &s),
        _ => suffix.to_string(),
    };
    let v = if entries.contains(&want) {
        Verdict::Pass
    } else {
        Verdict::Differs
    };
    (format!(".snapshot holds {entries:?}"), v)
}

/// Judges root squashing: root's new file under `no_root_squash` must be
/// root's; under `root_squash` it must be nobody's, or refused.
pub(super) fn judge_squash(
    unsquashed: &std::io::Result<u32>,
    squashed: &std::io::Result<u32>,
) -> (String, Verdict) {
    let show = |r: &std::io::Result<u32>| match r {
        Ok(uid) => format!("file owned by {uid}"),
        Err(e) => format!("refused ({e})"),
    };
    let ok = matches!(unsquashed, Ok(0))
        && match squashed {
            Ok(uid) => *uid == NOBODY,
            Err(_) => true,
        };
    (
        format!(
            "no_root_squash: {}; root_squash: {}",
            show(unsquashed),
            show(squashed)
        ),
        if ok { Verdict::Pass } else { Verdict::Differs },
    )
}

/// The expected texts, once.
const EXPECT_ROOT: &str = "a new file system's root is 0:0 mode 0755";
const EXPECT_ENTRY: &str = "snapshot <fs>.<suffix> shows as .snapshot/<suffix>";
const EXPECT_BELOW: &str = "a path below .snapshot can be mounted (NFSv3 and v4.1)";
const EXPECT_SQUASH: &str =
    "root's new file is root's with no_root_squash, nobody's (65534) or refused with root_squash";
const EXPECT_V3: &str = "NFSv3 mount of server:/<fs> works";
const EXPECT_V41: &str = "NFSv4.1 mount of server:/<fs> works";
const EXPECT_RULES_MOUNT: &str = "with nfs.rules \"\" no client may mount";

const NEEDS_MOUNT: &str = "needs --mount (as root, on a node that reaches the data address)";
const NEEDS_NFS: &str = "--local-export-root reads the simulator's directory: no NFS server in between";

/// Runs the content checks the mode allows.
pub(super) async fn checks(run: &Run, fs: &FileSystem, snap: &Snapshot) -> Result<(), Error> {
    let suffix = snap
        .suffix
        .clone()
        .unwrap_or_else(|| run.names.snapshot_suffix.clone());
    match run.mount.clone() {
        MountMode::None => {
            for (id, code, exp) in all_content_checks() {
                run.record(skipped(id, code, exp, NEEDS_MOUNT));
            }
        }
        MountMode::Local(dir) => {
            let root = dir.join(&fs.name);
            run.record(root_check(&root));
            let (entry_check, entry) = entry_check(&root, &fs.name, &suffix);
            run.record(entry_check);
            let below = root.join(version::SNAPSHOT_DIR).join(&entry);
            run.record(if below.is_dir() {
                check(
                    "mount-below-snapshot",
                    CODE_BELOW,
                    EXPECT_BELOW,
                    format!("{} is a directory (local export: no mount made)", below.display()),
                    Verdict::Pass,
                )
            } else {
                check(
                    "mount-below-snapshot",
                    CODE_BELOW,
                    EXPECT_BELOW,
                    format!("{} is not a directory", below.display()),
                    Verdict::Differs,
                )
            });
            for (id, code, exp) in [
                ("root-squash", CODE_SQUASH, EXPECT_SQUASH),
                ("nfs-v3-mount", CODE_MOUNT, EXPECT_V3),
                ("nfs-v41-mount", CODE_MOUNT, EXPECT_V41),
                ("rules-empty-mount", CODE_RULES_EMPTY, EXPECT_RULES_MOUNT),
            ] {
                run.record(skipped(id, code, exp, NEEDS_NFS));
            }
        }
        MountMode::Nfs { endpoint } => {
            let endpoint = endpoint.unwrap_or_default();
            nfs_checks(run, fs, &endpoint, &suffix).await?;
        }
    }
    Ok(())
}

fn all_content_checks() -> [(&'static str, &'static [&'static str], &'static str); 7] {
    [
        ("root-owner-mode", CODE_ROOT, EXPECT_ROOT),
        ("snapshot-entry", CODE_ENTRY, EXPECT_ENTRY),
        ("mount-below-snapshot", CODE_BELOW, EXPECT_BELOW),
        ("root-squash", CODE_SQUASH, EXPECT_SQUASH),
        ("nfs-v3-mount", CODE_MOUNT, EXPECT_V3),
        ("nfs-v41-mount", CODE_MOUNT, EXPECT_V41),
        ("rules-empty-mount", CODE_RULES_EMPTY, EXPECT_RULES_MOUNT),
    ]
}

fn root_check(root: &Path) -> Check {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(root) {
        Ok(m) => {
            let (observed, v) = judge_root(m.uid(), m.gid(), m.mode());
            check("root-owner-mode", CODE_ROOT, EXPECT_ROOT, observed, v)
        }
        Err(e) => check(
            "root-owner-mode",
            CODE_ROOT,
            EXPECT_ROOT,
            format!("cannot stat {}: {e}", root.display()),
            Verdict::Differs,
        ),
    }
}

/// The entry check, and the entry to look below (the expected one, or
/// the one the array shows when it is the only one).
fn entry_check(root: &Path, fs: &str, suffix: &str) -> (Check, String) {
    let dir = root.join(version::SNAPSHOT_DIR);
    let entries: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) => {
            return (
                check(
                    "snapshot-entry",
                    CODE_ENTRY,
                    EXPECT_ENTRY,
                    format!("cannot read {}: {e}", dir.display()),
                    Verdict::Differs,
                ),
                suffix.to_string(),
            );
        }
    };
    let (observed, v) = judge_entry(&entries, fs, suffix);
    let below = match (v, entries.as_slice()) {
        (Verdict::Differs, [only]) => only.clone(),
        _ => suffix.to_string(),
    };
    (
        check("snapshot-entry", CODE_ENTRY, EXPECT_ENTRY, observed, v),
        below,
    )
}

/// This node's address toward the data address (a UDP connect sends
/// nothing; it only picks the route).
fn local_address(endpoint: &str) -> Result<std::net::IpAddr, StepError> {
    use std::net::{ToSocketAddrs, UdpSocket};
    let target = (endpoint.trim_matches(|c| c == '[' || c == ']'), 2049)
        .to_socket_addrs()
        .map_err(|source| StepError::Resolve {
            endpoint: endpoint.to_string(),
            source,
        })?
        .next()
        .ok_or_else(|| StepError::NoAddress(endpoint.to_string()))?;
    let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let io = |what: &str| {
        let what = format!("{what} a UDP socket toward {target}");
        move |source| StepError::Io { what, source }
    };
    let s = UdpSocket::bind(bind).map_err(io("binding"))?;
    s.connect(target).map_err(io("connecting"))?;
    Ok(s.local_addr().map_err(io("reading the address of"))?.ip())
}

async fn run_cmd(program: &str, args: &[String]) -> Result<(), StepError> {
    let out = tokio::time::timeout(
        MOUNT_TIMEOUT,
        tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| StepError::Timeout {
        program: program.to_string(),
        seconds: MOUNT_TIMEOUT.as_secs(),
    })?
    .map_err(|source| StepError::Io {
        what: program.to_string(),
        source,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(StepError::Command(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

async fn mount(run: &Run, server: &str, path: &str, vers: &str) -> Result<PathBuf, StepError> {
    let dir = std::env::temp_dir().join(format!("flashblade-csi-check-{:016x}", rand::random::<u64>()));
    std::fs::create_dir(&dir).map_err(|source| StepError::Io {
        what: dir.display().to_string(),
        source,
    })?;
    match run_cmd("mount", &mount_args(server, path, vers, &dir)).await {
        Ok(()) => {
            run.mounts.lock().unwrap().push(dir.clone());
            Ok(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir(&dir);
            Err(e)
        }
    }
}

async fn unmount(dir: &Path) -> Result<(), StepError> {
    let d = dir.display().to_string();
    if run_cmd("umount", std::slice::from_ref(&d)).await.is_err() {
        run_cmd("umount", &["-f".into(), "-l".into(), d]).await?;
    }
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

/// Undoes every mount this run made; returns what it could not undo.
pub(super) async fn unmount_all(run: &Run) -> Vec<String> {
    let dirs: Vec<PathBuf> = std::mem::take(&mut *run.mounts.lock().unwrap());
    let mut left = Vec::new();
    for d in dirs {
        if let Err(e) = unmount(&d).await {
            left.push(format!("mount {}: {e}", d.display()));
        }
    }
    left
}

/// Creates a file as root in `dir` and returns its owner.
fn touch_owner(dir: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let p = dir.join(".flashblade-csi-check");
    let r = std::fs::File::create(&p)
        .and_then(|_| std::fs::metadata(&p))
        .map(|m| m.uid());
    let _ = std::fs::remove_file(&p);
    r
}

async fn set_rules(run: &Run, fs: &FileSystem, rules: &str) -> Result<(), Error> {
    run.client
        .patch_file_system(
            &fs.id,
            json!({"nfs": {"rules": rules}}),
            vec![],
            format!("set rules of {} to {rules:?}", fs.name),
        )
        .await
        .map(|_| ())
}

async fn nfs_checks(run: &Run, fs: &FileSystem, server: &str, suffix: &str) -> Result<(), Error> {
    let path = format!("/{}", fs.name);
    // Exported to nobody yet: a mount must be refused.
    let (observed, v) = match mount(run, server, &path, "3").await {
        Ok(_) => ("the mount worked".to_string(), Verdict::Differs),
        Err(e) => (format!("refused: {e}"), Verdict::Pass),
    };
    run.record(check(
        "rules-empty-mount",
        CODE_RULES_EMPTY,
        EXPECT_RULES_MOUNT,
        observed,
        v,
    ));
    unmount_all(run).await;
    let me = match local_address(server) {
        Ok(ip) => ip,
        Err(e) => {
            for (id, code, exp) in all_content_checks()
                .into_iter()
                .filter(|c| c.0 != "rules-empty-mount")
            {
                run.record(skipped(
                    id,
                    code,
                    exp,
                    format!("this node's address toward {server}: {e}"),
                ));
            }
            return Ok(());
        }
    };
    set_rules(run, fs, &format!("{me}(rw,no_root_squash)")).await?;
    // The entry to mount below: the one the array shows, when it shows one.
    let mut entry = suffix.to_string();
    let unsquashed = match mount(run, server, &path, "3").await {
        Ok(dir) => {
            run.record(check(
                "nfs-v3-mount",
                CODE_MOUNT,
                EXPECT_V3,
                "mounted",
                Verdict::Pass,
            ));
            run.record(root_check(&dir));
            let (c, shown) = entry_check(&dir, &fs.name, suffix);
            run.record(c);
            entry = shown;
            let owner = touch_owner(&dir);
            unmount_all(run).await;
            Some(owner)
        }
        Err(e) => {
            run.record(check(
                "nfs-v3-mount",
                CODE_MOUNT,
                EXPECT_V3,
                format!("failed: {e}"),
                Verdict::Differs,
            ));
            None
        }
    };
    let (observed, v) = match mount(run, server, &path, "4.1").await {
        Ok(_) => ("mounted".to_string(), Verdict::Pass),
        Err(e) => (format!("failed: {e}"), Verdict::Differs),
    };
    run.record(check("nfs-v41-mount", CODE_MOUNT, EXPECT_V41, observed, v));
    unmount_all(run).await;
    let below = format!("{path}/{}/{entry}", version::SNAPSHOT_DIR);
    let mut seen = Vec::new();
    let mut ok = true;
    for vers in ["3", "4.1"] {
        match mount(run, server, &below, vers).await {
            Ok(_) => seen.push(format!("NFSv{vers}: mounted {below}")),
            Err(e) => {
                ok = false;
                seen.push(format!("NFSv{vers}: {below}: {e}"));
            }
        }
        unmount_all(run).await;
    }
    run.record(check(
        "mount-below-snapshot",
        CODE_BELOW,
        EXPECT_BELOW,
        seen.join("; "),
        if ok { Verdict::Pass } else { Verdict::Differs },
    ));
    set_rules(run, fs, &format!("{me}(rw,root_squash)")).await?;
    let squashed = match mount(run, server, &path, "3").await {
        Ok(dir) => {
            let r = touch_owner(&dir);
            unmount_all(run).await;
            Some(r)
        }
        Err(_) => None,
    };
    match (unsquashed, squashed) {
        (Some(u), Some(s)) => {
            let (observed, v) = judge_squash(&u, &s);
            run.record(check("root-squash", CODE_SQUASH, EXPECT_SQUASH, observed, v));
        }
        _ => run.record(skipped(
            "root-squash",
            CODE_SQUASH,
            EXPECT_SQUASH,
            "a mount failed (see nfs-v3-mount)",
        )),
    }
    set_rules(run, fs, "").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_arguments() {
        let a = mount_args("10.1.1.1", "/k8s-check-x", "3", Path::new("/tmp/m"));
        assert_eq!(
            a,
            [
                "-t",
                "nfs",
                "-o",
                "vers=3,soft,timeo=100,retrans=2,nolock",
                "10.1.1.1:/k8s-check-x",
                "/tmp/m"
            ]
        );
        let a = mount_args("fd00::1", "/x", "4.1", Path::new("/m"));
        assert_eq!(a[3], "vers=4.1,soft,timeo=100,retrans=2");
        assert_eq!(a[4], "[fd00::1]:/x");
    }

    #[test]
    fn roots() {
        assert_eq!(judge_root(0, 0, 0o40755).1, Verdict::Pass);
        let (o, v) = judge_root(0, 0, 0o40777);
        assert_eq!((o.as_str(), v), ("0:0 0777", Verdict::Differs));
        assert_eq!(judge_root(1000, 0, 0o755).1, Verdict::Differs);
    }

    #[test]
    fn entries() {
        let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            judge_entry(&e(&["csi-check-a"]), "k8s-check-a", "csi-check-a").1,
            Verdict::Pass
        );
        assert_eq!(
            judge_entry(&e(&["k8s-check-a.csi-check-a"]), "k8s-check-a", "csi-check-a").1,
            Verdict::Differs
        );
        assert_eq!(judge_entry(&[], "k8s-check-a", "csi-check-a").1, Verdict::Differs);
    }

    #[test]
    fn squashing() {
        assert_eq!(judge_squash(&Ok(0), &Ok(NOBODY)).1, Verdict::Pass);
        assert_eq!(
            judge_squash(&Ok(0), &Err(std::io::ErrorKind::PermissionDenied.into())).1,
            Verdict::Pass
        );
        assert_eq!(judge_squash(&Ok(0), &Ok(0)).1, Verdict::Differs);
        assert_eq!(judge_squash(&Ok(NOBODY), &Ok(NOBODY)).1, Verdict::Differs);
    }

    #[test]
    fn modes() {
        assert!(MountMode::Nfs { endpoint: None }.validate().is_err());
        assert_eq!(
            MountMode::Nfs { endpoint: None }.with_endpoint(Some("10.0.0.1".into())),
            MountMode::Nfs {
                endpoint: Some("10.0.0.1".into())
            }
        );
        assert!(MountMode::None.validate().is_ok());
        assert!(!MountMode::Local("/x".into()).is_nfs());
    }
}
