//! CSI Node service: stages a volume once per node (NFS mount, or a bind of a
//! local directory in development), bind-publishes it into each pod
//! (read-only when asked), unpublishes and unstages with unmount escalation,
//! and reports usage and health. Every mount decision reads
//! /proc/self/mountinfo; every call that can block on a server has a deadline.
//! The node never holds array credentials: what it mounts comes from the
//! volume context. At a volume's first stage it gives the root directory
//! the owner and mode the context asks for (`root_dir`).

mod budget;
mod local_export;
pub mod mounter;
pub(crate) mod mountinfo;
pub(crate) mod paths;
mod root_dir;
mod stats;
mod versions;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::config::{Config, Timeouts};
use crate::context;
use crate::csi::{self, node_server::Node};
use crate::error::{Error, Result};
use crate::inflight::{Guard, InFlight};
use crate::metrics::Metrics;
use crate::telemetry::record_volume_id;
use crate::volume::{FsName, SnapshotSuffix, VolumeId};
use budget::Budget;
use local_export::LocalExports;
use mounter::{MountError, Mounter, StatKey};
use mountinfo::MountTable;
use paths::{Found, Publish, Resolved};
use root_dir::{RootError, RootSpec};

/// How many stacked mounts an unpublish / unstage removes at most.
const MAX_STACKED: usize = 8;

pub struct NodeService {
    node_id: String,
    kubelet_dir: PathBuf,
    local_export_root: Option<PathBuf>,
    /// With `--local-export-client`: the simulated arrays' mount daemons,
    /// asked before each local staging bind.
    local_exports: Option<LocalExports>,
    /// Array name → NFS endpoint, for static volumes without a `server`.
    endpoints: HashMap<String, String>,
    default_endpoint: Option<String>,
    mounter: Arc<dyn Mounter>,
    inflight: InFlight,
    /// Deadline for reading a `.snapshot` directory (the mount deadline).
    list_timeout: Duration,
    /// Each RPC's overall deadline is made of these.
    timeouts: Timeouts,
    metrics: Arc<Metrics>,
}

/// The node capabilities this plugin implements.
pub(crate) fn capabilities() -> Vec<csi::NodeServiceCapability> {
    use csi::node_service_capability::{Rpc, Type, rpc};
    [
        rpc::Type::StageUnstageVolume,
        rpc::Type::GetVolumeStats,
        rpc::Type::VolumeCondition,
    ]
    .into_iter()
    .map(|t| csi::NodeServiceCapability {
        r#type: Some(Type::Rpc(Rpc { r#type: t as i32 })),
    })
    .collect()
}

fn is_reader_only(cap: &csi::VolumeCapability) -> bool {
    use csi::volume_capability::access_mode::Mode;
    matches!(
        cap.access_mode.as_ref().map(|m| m.mode()),
        Some(Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly)
    )
}

fn mount_flags(cap: &csi::VolumeCapability) -> Vec<String> {
    match &cap.access_type {
        Some(csi::volume_capability::AccessType::Mount(m)) => m.mount_flags.clone(),
        _ => Vec::new(),
    }
}

fn check_node_capability(cap: Option<&csi::VolumeCapability>) -> Result<&csi::VolumeCapability> {
    let cap = cap.ok_or_else(|| Error::invalid_argument("volume_capability is required"))?;
    crate::volume::access::check_capability(cap).map_err(Error::invalid)?;
    Ok(cap)
}

/// The option lists to try, in order: one per allowed NFS version (newest
/// first) unless the mount flags pin a version; `ro` for reader-only access.
pub(crate) fn mount_attempts(versions: &[&str], flags: &[String], readonly: bool) -> Vec<Vec<String>> {
    let pinned = flags
        .iter()
        .any(|f| f.starts_with("vers=") || f.starts_with("nfsvers="));
    let mut attempts: Vec<Vec<String>> = if pinned {
        vec![flags.to_vec()]
    } else {
        versions
            .iter()
            .map(|v| {
                let mut o = vec![format!("vers={v}")];
                o.extend(flags.iter().cloned());
                o
            })
            .collect()
    };
    for opts in &mut attempts {
        opts.retain(|o| o != "rw" || !readonly);
        if readonly && !opts.iter().any(|o| o == "ro") {
            opts.push("ro".into());
        }
    }
    attempts
}

/// What to mount for a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Export {
    server: String,
    share: String,
    fs_name: String,
    /// The array the volume's handle names, if any.
    array: Option<String>,
    /// Preference order, newest first.
    versions: Vec<&'static str>,
}

impl NodeService {
    pub(crate) fn new(config: &Config, mounter: Arc<dyn Mounter>, metrics: Arc<Metrics>) -> Self {
        // Resolve a symlinked kubelet dir once (a local directory; safe to
        // stat). Normalised either way (`//`, `/./`, a trailing `/`): mount
        // points are compared with mountinfo's byte for byte.
        let kubelet_dir = std::fs::canonicalize(&config.kubelet_dir)
            .unwrap_or_else(|_| config.kubelet_dir.components().collect());
        Self {
            node_id: config.node_id.clone().unwrap_or_default(),
            kubelet_dir,
            local_export_root: config.local_export_root.clone(),
            local_exports: LocalExports::new(config),
            endpoints: config
                .arrays
                .iter()
                .filter_map(|a| {
                    a.nfs_endpoint
                        .as_ref()
                        .map(|e| (a.name.to_string(), e.to_string()))
                })
                .collect(),
            default_endpoint: config
                .default_array()
                .and_then(|a| a.nfs_endpoint.as_ref().map(ToString::to_string)),
            mounter,
            inflight: InFlight::new(),
            list_timeout: config.timeouts.mount,
            timeouts: config.timeouts.clone(),
            metrics,
        }
    }

    fn guard(&self, key: String) -> Result<Guard> {
        self.inflight.try_acquire(key.clone()).ok_or_else(|| {
            self.metrics.aborted("node", &key);
            Error::aborted(format!("an operation on {key} is already in progress"))
        })
    }

    /// Records a mount's outcome (`kind`: nfs or bind) and passes it on.
    fn counted(
        &self,
        kind: &str,
        r: std::result::Result<(), MountError>,
    ) -> std::result::Result<(), MountError> {
        self.metrics.mount(kind, r.is_ok());
        if let Err(MountError::Timeout { .. }) = &r {
            self.metrics.deadline_exceeded("mount");
        }
        r
    }

    fn path(&self, what: &str, p: &str) -> Result<PathBuf> {
        paths::check_path(what, p, &self.kubelet_dir).map_err(Error::invalid)
    }

    /// The real location of a checked request path (see [`paths::resolve`])
    /// and the mount table it was resolved against.
    async fn locate(
        &self,
        b: &Budget,
        what: &str,
        path: &Path,
        create: bool,
    ) -> Result<(Resolved, MountTable)> {
        b.step("resolving the path", async {
            Ok(self
                .mounter
                .resolve(what, &self.kubelet_dir, path, create)
                .await?)
        })
        .await
    }

    /// The deadline of one RPC (see [`Budget`]); `own` is the node's.
    fn budget<T>(&self, r: &Request<T>, own: Duration) -> Budget {
        Budget::new(crate::deadline::caller_budget(r.metadata()).map_or(own, |c| c.min(own)))
    }

    /// Works out server, share and NFS versions from the volume context, or
    /// for an imported volume from its handle and the node's configuration.
    fn export_for(&self, volume_id: &str, ctx: &HashMap<String, String>) -> Result<Export> {
        let handle = volume_id.parse::<VolumeId>().ok();
        let share = match ctx.get(context::SHARE) {
            Some(s) => s.clone(),
            None => match &handle {
                Some(h) => format!("/{}", h.fs_name()),
                None => {
                    return Err(Error::invalid_argument(format!(
                        "volume {volume_id:?} has no share in its volume context and is not a file-system handle"
                    )));
                }
            },
        };
        let fs_name = paths::check_share(&share).map_err(Error::invalid)?;
        let server = match ctx.get(context::SERVER) {
            Some(s) => s.clone(),
            None => {
                let by_array = match &handle {
                    // Never fall back to another array's endpoint: a
                    // same-named file system there is not this volume.
                    Some(VolumeId::Static { array: Some(a), .. })
                    | Some(VolumeId::Managed { array: a, .. }) => {
                        Some(self.endpoints.get(a.as_str()).cloned().ok_or_else(|| {
                            Error::failed_precondition(format!(
                                "volume {volume_id:?} is on array {a:?}, for which this node has no NFS endpoint; \
                                 set the volume's `server` attribute or configure that array on the node"
                            ))
                        })?)
                    }
                    _ => None,
                };
                by_array.or_else(|| self.default_endpoint.clone()).ok_or_else(|| {
                    Error::failed_precondition(format!(
                        "volume {volume_id:?} names no server and this node has no --nfs-endpoint configured"
                    ))
                })?
            }
        };
        paths::check_server(&server).map_err(Error::invalid)?;
        let versions = match ctx.get(context::NFS_VERSIONS).map(String::as_str) {
            None | Some("") => vec!["4.1", "3"],
            Some(v) => {
                let mut out = Vec::new();
                for part in v.split(',').map(str::trim) {
                    match part {
                        "4.1" => out.push("4.1"),
                        "3" => out.push("3"),
                        other => {
                            return Err(Error::invalid_argument(format!(
                                "nfsVersions {other:?} is not 3 or 4.1"
                            )));
                        }
                    }
                }
                out.sort_by_key(|v| if *v == "4.1" { 0 } else { 1 });
                out.dedup();
                out
            }
        };
        let array = match &handle {
            Some(VolumeId::Static { array: Some(a), .. }) | Some(VolumeId::Managed { array: a, .. }) => {
                Some(a.to_string())
            }
            _ => None,
        };
        Ok(Export {
            server,
            share,
            fs_name,
            array,
            versions,
        })
    }

    async fn stage(
        &self,
        b: &Budget,
        req: csi::NodeStageVolumeRequest,
    ) -> Result<csi::NodeStageVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        if req.staging_target_path.is_empty() {
            return Err(Error::invalid_argument("staging_target_path is required"));
        }
        let cap = check_node_capability(req.volume_capability.as_ref())?;
        let staging = self.path("staging_target_path", &req.staging_target_path)?;
        let flags = paths::check_mount_flags(&mount_flags(cap)).map_err(Error::invalid)?;
        let export = self.export_for(&req.volume_id, &req.volume_context)?;
        // A dataset version is a snapshot: read-only whatever the access mode.
        let version = versions::requested(&req.volume_id, &req.volume_context)?;
        let readonly = is_reader_only(cap) || version.is_some();
        let root_spec = root_dir::requested(&req.volume_context)?;
        let fs: FsName = export
            .fs_name
            .parse()
            .map_err(|e| Error::invalid_argument(format!("share {:?}: {e}", export.share)).because(e))?;
        // What is mounted: the file system, or a snapshot's directory in it.
        let (share, rel) = match &version {
            Some(v) => {
                let inside = crate::volume::version::path_in_fs(&fs, v);
                (
                    format!("{}/{inside}", export.share),
                    Path::new(fs.as_str()).join(inside),
                )
            }
            None => (export.share.clone(), PathBuf::from(fs.as_str())),
        };
        record_volume_id(&req.volume_id);
        let _guard = self.guard(format!("volume:{}", req.volume_id))?;

        let (resolved, mounts) = self.locate(b, "staging_target_path", &staging, true).await?;
        // Mounting and setting up the root within the mount deadline; the
        // rest of the budget is for taking a half-made stage back.
        let mounting = b.part(self.timeouts.mount);
        let staging = resolved.path;
        if resolved.found == Found::NotDir {
            return Err(Error::invalid_argument(format!(
                "staging_target_path {} is not a directory",
                staging.display()
            )));
        }
        if let Some(m) = mountinfo::top_mount_at(&mounts, &staging) {
            let same = match &self.local_export_root {
                Some(_) => m.root.ends_with(&rel),
                None => {
                    m.source == format!("{}:{}", export.server, share)
                        || m.source == format!("[{}]:{}", export.server, share)
                }
            };
            if same {
                return Ok(csi::NodeStageVolumeResponse {});
            }
            return Err(Error::already_exists(format!(
                "staging path {} already holds another mount ({})",
                staging.display(),
                m.source
            )));
        }
        if let Some(root) = &self.local_export_root {
            // The array decides first, as an NFS server's mountd would.
            let (readonly, server, rule) = match &self.local_exports {
                Some(exports) => {
                    let a = mounting
                        .step(
                            "asking the array's mount daemon",
                            exports.ask(export.array.as_deref(), &export.fs_name),
                        )
                        .await
                        .inspect_err(|_| self.metrics.mount("bind", false))?;
                    let rule = format!(" (the array's rule for {} is {})", exports.client(), a.rule);
                    (readonly || a.readonly, a.server, rule)
                }
                None => (readonly, root_dir::Server::AsIs, String::new()),
            };
            let fs_root = root.join(&export.fs_name);
            if !fs_root.is_dir() {
                return Err(Error::not_found(format!(
                    "local export {} does not exist (development mode --local-export-root)",
                    fs_root.display()
                )));
            }
            let source = match &version {
                Some(v) => {
                    versions::local_source(&fs_root, &fs, v, self.list_timeout.min(mounting.left())).await?
                }
                None => fs_root,
            };
            let r = self
                .mounter
                .bind(&source, &staging, readonly, mounting.left())
                .await;
            self.counted("bind", r)?;
            tracing::info!(staging = %staging.display(), source = %source.display(), readonly, "staged (local bind)");
            self.prepare_root(
                &mounting,
                &req.volume_id,
                &staging,
                (root_spec, readonly),
                server,
                &rule,
            )
            .await?;
            return Ok(csi::NodeStageVolumeResponse {});
        }

        let mut last = None;
        for opts in mount_attempts(&export.versions, &flags, readonly) {
            let helper = std::time::Instant::now();
            let r = self
                .mounter
                .mount_nfs(&export.server, &share, &staging, &opts, mounting.left())
                .await;
            match self.counted("nfs", r) {
                Ok(()) => {
                    // The helper's time apart from the call's: what is the
                    // kernel's and mount.nfs's, and what is the driver's.
                    tracing::info!(
                        staging = %staging.display(),
                        server = %export.server,
                        share = %share,
                        options = %opts.join(","),
                        helper_ms = helper.elapsed().as_millis() as u64,
                        call_ms = b.elapsed().as_millis() as u64,
                        "staged"
                    );
                    self.prepare_root(
                        &mounting,
                        &req.volume_id,
                        &staging,
                        (root_spec, readonly),
                        root_dir::Server::AsIs,
                        "",
                    )
                    .await?;
                    return Ok(csi::NodeStageVolumeResponse {});
                }
                // A hung server: do not try another version within this call.
                Err(e @ MountError::Timeout { .. }) => return Err(e.into()),
                // The export rules leave this node out, for every version.
                Err(e @ MountError::Denied(_)) => return Err(e.into()),
                Err(e) => {
                    tracing::warn!(error = %e, "NFS mount attempt failed");
                    last = Some(e);
                }
            }
        }
        if let Some(v) = &version
            && let Some(why) = self.why_version_failed(b, &export, &fs, v, &flags).await
        {
            return Err(why);
        }
        Err(last
            .map(Error::from)
            .unwrap_or_else(|| Error::internal("no mount attempt was made")))
    }

    /// After a fresh staging mount: gives the volume's root directory the
    /// owner and mode its context asks for (see [`root_dir`]; never on a
    /// read-only stage). When that fails the mount this call made is
    /// removed, so nothing is left half-done and kubelet's retry starts
    /// over. `rule` names the export rule that decided, when known.
    async fn prepare_root(
        &self,
        mounting: &Budget,
        volume_id: &str,
        staging: &Path,
        (spec, readonly): (Option<RootSpec>, bool),
        server: root_dir::Server,
        rule: &str,
    ) -> Result<()> {
        let Some(spec) = spec else { return Ok(()) };
        if readonly {
            tracing::debug!(staging = %staging.display(), "read-only stage: the root directory's owner and mode are left to a read-write one");
            return Ok(());
        }
        let asked = describe(&spec);
        let err = match self
            .mounter
            .prepare_root(staging, spec, server, mounting.left())
            .await
        {
            Ok(Ok(root_dir::Outcome::Changed { from, to })) => {
                tracing::info!(
                    staging = %staging.display(),
                    from = %format!("{}:{} {:o}", from.uid, from.gid, from.mode),
                    to = %format!("{}:{} {:o}", to.0, to.1, to.2),
                    "gave the new volume's root directory its owner and mode"
                );
                return Ok(());
            }
            Ok(Ok(root_dir::Outcome::Left(why))) => {
                tracing::debug!(staging = %staging.display(), ?why, "root directory left as it is");
                return Ok(());
            }
            Ok(Err(RootError::Refused {
                op,
                errno: nix::errno::Errno::EROFS,
                ..
            })) => Error::failed_precondition(format!(
                "cannot give volume {volume_id}'s root directory {asked}: {op}: the export is read-only for this node{rule}"
            )),
            Ok(Err(RootError::Refused { op, errno, .. })) => Error::failed_precondition(format!(
                "cannot give volume {volume_id}'s root directory {asked}: {op}: {errno}: the export squashes root for this node{rule}. \
                 Export it to the nodes with no_root_squash for them (StorageClass exportTo: nodes with exportOptions: no_root_squash), \
                 or set the owner and mode on the array side (mount the file system once with no_root_squash from an admin host)"
            )),
            Ok(Err(e @ RootError::Io { .. })) => Error::unavailable(format!(
                "cannot give volume {volume_id}'s root directory {asked}: {e}"
            ))
            .because(e),
            Err(e) => {
                if let MountError::Timeout { .. } = e {
                    self.metrics.deadline_exceeded("mount");
                }
                Error::from(e)
            }
        };
        let undone = match self.mounter.unmount(staging, mounting.rest().left()).await {
            Ok(()) => "the staging mount was removed".to_string(),
            Err(e) => format!("removing the staging mount failed too: {e}"),
        };
        Err(match err {
            e @ (Error::FailedPrecondition { .. } | Error::Unavailable { .. }) => {
                e.map_message(|m| format!("{m}; {undone}"))
            }
            e @ Error::DeadlineExceeded { .. } => {
                e.map_message(|m| format!("setting the volume's root owner and mode: {m}; {undone}"))
            }
            other => other,
        })
    }

    /// After a version's NFS mount failed: mounts the file system read-only
    /// in a private directory just long enough to read its `.snapshot`
    /// (within the mount deadline), and says why if the listing shows it
    /// (no such version, or no snapshot directory). `None` when the listing
    /// explains nothing, or cannot be read; the mount's own error stands.
    async fn why_version_failed(
        &self,
        b: &Budget,
        export: &Export,
        fs: &FsName,
        wanted: &SnapshotSuffix,
        flags: &[String],
    ) -> Option<Error> {
        let probe = match versions::probe_dir() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a directory to list versions in");
                return None;
            }
        };
        let mut mounted = false;
        for opts in mount_attempts(&export.versions, flags, true) {
            match self
                .mounter
                .mount_nfs(&export.server, &export.share, &probe, &opts, b.left())
                .await
            {
                Ok(()) => {
                    mounted = true;
                    break;
                }
                Err(MountError::Timeout { .. }) => break,
                Err(_) => {}
            }
        }
        let found = if mounted {
            let listing = versions::list(&probe, fs, self.list_timeout.min(b.left())).await;
            if let Err(e) = self.mounter.unmount(&probe, b.left()).await {
                tracing::warn!(error = %e, probe = %probe.display(), "cannot unmount the version listing mount");
            }
            match listing {
                Ok(l) => match l.error(fs, wanted) {
                    e @ (Error::NotFound { .. } | Error::FailedPrecondition { .. }) => Some(e),
                    _ => None,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the file system's versions");
                    None
                }
            }
        } else {
            None
        };
        let _ = b
            .step("removing the probe", async {
                Ok(self.mounter.remove_dir(&probe).await?)
            })
            .await;
        found
    }

    /// Unmounts everything stacked at `path`.
    async fn unmount_all(&self, b: &Budget, path: &Path) -> Result<()> {
        for _ in 0..MAX_STACKED {
            let mounts = b
                .step("reading the mount table", async {
                    Ok(self.mounter.mounts().await?)
                })
                .await?;
            if mountinfo::top_mount_at(&mounts, path).is_none() {
                return Ok(());
            }
            self.mounter.unmount(path, b.left()).await?;
        }
        Err(Error::internal(format!(
            "{} still has mounts after {MAX_STACKED} unmounts",
            path.display()
        )))
    }

    async fn unstage(
        &self,
        b: &Budget,
        req: csi::NodeUnstageVolumeRequest,
    ) -> Result<csi::NodeUnstageVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        if req.staging_target_path.is_empty() {
            return Err(Error::invalid_argument("staging_target_path is required"));
        }
        let staging = self.path("staging_target_path", &req.staging_target_path)?;
        record_volume_id(&req.volume_id);
        let _guard = self.guard(format!("volume:{}", req.volume_id))?;
        let (resolved, _) = self.locate(b, "staging_target_path", &staging, false).await?;
        match resolved.found {
            Found::MountPoint => self.unmount_all(b, &resolved.path).await?,
            Found::Missing | Found::Dir => {}
            Found::NotDir => {
                return Err(Error::invalid_argument(format!(
                    "staging_target_path {} is not a directory",
                    resolved.path.display()
                )));
            }
        }
        self.metrics.volume_gone(&req.volume_id);
        tracing::info!(staging = %resolved.path.display(), "unstaged");
        Ok(csi::NodeUnstageVolumeResponse {})
    }

    async fn publish(
        &self,
        b: &Budget,
        req: csi::NodePublishVolumeRequest,
    ) -> Result<csi::NodePublishVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        if req.target_path.is_empty() {
            return Err(Error::invalid_argument("target_path is required"));
        }
        let cap = check_node_capability(req.volume_capability.as_ref())?;
        if req.staging_target_path.is_empty() {
            return Err(Error::invalid_argument(
                "staging_target_path is required (the plugin stages volumes)",
            ));
        }
        let target = self.path("target_path", &req.target_path)?;
        let staging = self.path("staging_target_path", &req.staging_target_path)?;
        let version = versions::requested(&req.volume_id, &req.volume_context)?;
        let readonly = req.readonly || is_reader_only(cap) || version.is_some();
        record_volume_id(&req.volume_id);
        let _guard = self.guard(format!("target:{}", target.display()))?;

        let paths::PublishPaths {
            staging,
            staged,
            target: resolved,
            existing,
        } = match b
            .step("resolving the paths", async {
                Ok(self
                    .mounter
                    .resolve_publish(&self.kubelet_dir, &staging, &target)
                    .await?)
            })
            .await?
        {
            Publish::NotStaged { staging } => {
                return Err(Error::failed_precondition(format!(
                    "volume {} is not staged at {}; NodeStageVolume must come first",
                    req.volume_id,
                    staging.display()
                )));
            }
            // Publishing onto (or inside, or above) the staging mount would
            // let the matching unpublish take the staging mount away.
            Publish::Overlaps { staging } => {
                return Err(Error::invalid_argument(format!(
                    "target_path {} overlaps staging_target_path {}",
                    target.display(),
                    staging.display()
                )));
            }
            Publish::Ready(ready) => *ready,
        };
        let target = resolved.path;
        match (resolved.found, existing) {
            (Found::MountPoint, Some(m)) => {
                if m.device == staged.device && m.root == staged.root && m.read_only() == readonly {
                    return Ok(csi::NodePublishVolumeResponse {});
                }
                return Err(Error::already_exists(format!(
                    "target {} already holds a different mount (or the same volume with {} access)",
                    target.display(),
                    if m.read_only() { "read-only" } else { "read-write" }
                )));
            }
            (Found::NotDir, _) => {
                return Err(Error::invalid_argument(format!(
                    "target_path {} is not a directory",
                    target.display()
                )));
            }
            // Resolved from the same table, so the entry is always there;
            // never stack a second mount if it were not.
            (Found::MountPoint, None) => {
                return Err(Error::internal(format!(
                    "target {} is a mount point missing from the mount table",
                    target.display()
                )));
            }
            (Found::Dir | Found::Missing, _) => {}
        }
        let r = self.mounter.bind(&staging, &target, readonly, b.left()).await;
        self.counted("bind", r)?;
        tracing::info!(target = %target.display(), readonly, "published");
        Ok(csi::NodePublishVolumeResponse {})
    }

    async fn unpublish(
        &self,
        b: &Budget,
        req: csi::NodeUnpublishVolumeRequest,
    ) -> Result<csi::NodeUnpublishVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        if req.target_path.is_empty() {
            return Err(Error::invalid_argument("target_path is required"));
        }
        let target = self.path("target_path", &req.target_path)?;
        record_volume_id(&req.volume_id);
        let _guard = self.guard(format!("target:{}", target.display()))?;
        let (resolved, _) = self.locate(b, "target_path", &target, false).await?;
        match resolved.found {
            Found::Missing => return Ok(csi::NodeUnpublishVolumeResponse {}),
            Found::NotDir => {
                return Err(Error::invalid_argument(format!(
                    "target_path {} is not a directory",
                    resolved.path.display()
                )));
            }
            Found::MountPoint => self.unmount_all(b, &resolved.path).await?,
            Found::Dir => {}
        }
        // Only an empty directory is removed, never recursively: if anything
        // is still there, it is data, not ours to delete.
        b.step("removing the target", async {
            self.mounter
                .remove_dir(&resolved.path)
                .await
                .map_err(|e| Error::internal(format!("cannot remove target: {e}")).because(e))
        })
        .await?;
        tracing::info!(target = %resolved.path.display(), "unpublished");
        Ok(csi::NodeUnpublishVolumeResponse {})
    }
}

/// `owner 1000:100 and mode 2775`, as the context asked.
fn describe(spec: &RootSpec) -> String {
    match (spec.owner, spec.mode) {
        (Some((u, g)), Some(m)) => format!("owner {u}:{g} and mode {m:o}"),
        (Some((u, g)), None) => format!("owner {u}:{g}"),
        (None, Some(m)) => format!("mode {m:o}"),
        (None, None) => "nothing".into(),
    }
}

fn finish<T>(method: &str, r: Result<T>) -> Result<Response<T>, Status> {
    match r {
        Ok(v) => Ok(Response::new(v)),
        Err(e) => {
            tracing::warn!(error = %crate::error::chain(&e), "{method} failed");
            Err(e.into())
        }
    }
}

/// Runs one node RPC within its budget. The steps are bounded by it
/// already; this is the backstop: past it the work is dropped where it
/// stands (a `mount` helper's process group is killed, threads stuck in
/// the kernel are abandoned) and the call answers DEADLINE_EXCEEDED.
async fn within<T>(
    b: Budget,
    method: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<Response<T>, Status> {
    let r = match tokio::time::timeout_at(b.until, work).await {
        Ok(r) => r,
        Err(_) => Err(Error::deadline_exceeded(format!(
            "{method} did not finish within its {:.1}s deadline; kubelet retries it",
            b.total.as_secs_f64()
        ))),
    };
    finish(method, r)
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        r: Request<csi::NodeStageVolumeRequest>,
    ) -> Result<Response<csi::NodeStageVolumeResponse>, Status> {
        let b = self.budget(&r, self.timeouts.mount + self.timeouts.unmount);
        let req = r.into_inner();
        csi::log_request("NodeStageVolume", &req);
        within(b, "NodeStageVolume", self.stage(&b, req)).await
    }
    async fn node_unstage_volume(
        &self,
        r: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Result<Response<csi::NodeUnstageVolumeResponse>, Status> {
        let b = self.budget(&r, self.timeouts.unmount);
        let req = r.into_inner();
        csi::log_request("NodeUnstageVolume", &req);
        within(b, "NodeUnstageVolume", self.unstage(&b, req)).await
    }
    async fn node_publish_volume(
        &self,
        r: Request<csi::NodePublishVolumeRequest>,
    ) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        let b = self.budget(&r, self.timeouts.mount);
        let req = r.into_inner();
        csi::log_request("NodePublishVolume", &req);
        within(b, "NodePublishVolume", self.publish(&b, req)).await
    }
    async fn node_unpublish_volume(
        &self,
        r: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        let b = self.budget(&r, self.timeouts.unmount);
        let req = r.into_inner();
        csi::log_request("NodeUnpublishVolume", &req);
        within(b, "NodeUnpublishVolume", self.unpublish(&b, req)).await
    }
    async fn node_get_volume_stats(
        &self,
        r: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        let b = self.budget(&r, self.timeouts.stats);
        let req = r.into_inner();
        within(b, "NodeGetVolumeStats", self.stats(&b, req)).await
    }
    async fn node_expand_volume(
        &self,
        _r: Request<csi::NodeExpandVolumeRequest>,
    ) -> Result<Response<csi::NodeExpandVolumeResponse>, Status> {
        Err(Status::unimplemented(
            "NodeExpandVolume is not needed: a FlashBlade quota change applies at once",
        ))
    }
    async fn node_get_capabilities(
        &self,
        _r: Request<csi::NodeGetCapabilitiesRequest>,
    ) -> Result<Response<csi::NodeGetCapabilitiesResponse>, Status> {
        Ok(Response::new(csi::NodeGetCapabilitiesResponse {
            capabilities: capabilities(),
        }))
    }
    async fn node_get_info(
        &self,
        _r: Request<csi::NodeGetInfoRequest>,
    ) -> Result<Response<csi::NodeGetInfoResponse>, Status> {
        Ok(Response::new(csi::NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            // NFS volumes need no attach slots on the node.
            max_volumes_per_node: 0,
            accessible_topology: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn mount_option_attempts() {
        assert_eq!(
            mount_attempts(&["4.1", "3"], &s(&["hard"]), false),
            vec![s(&["vers=4.1", "hard"]), s(&["vers=3", "hard"])]
        );
        assert_eq!(mount_attempts(&["3"], &[], true), vec![s(&["vers=3", "ro"])]);
        // A pinned version is used as given, once.
        assert_eq!(
            mount_attempts(&["4.1", "3"], &s(&["nfsvers=3", "nconnect=4"]), false),
            vec![s(&["nfsvers=3", "nconnect=4"])]
        );
        // Read-only wins over a requested rw.
        assert_eq!(
            mount_attempts(&["4.1"], &s(&["rw"]), true),
            vec![s(&["vers=4.1", "ro"])]
        );
    }
}
