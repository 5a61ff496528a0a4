//! Storage-admin commands: quotas, the inventory of the driver's file
//! systems, orphans, recovery of soft-deleted volumes, in-place restore and
//! the adoption of another driver's (PSO's) and in-tree NFS volumes.
//! They use the controller's configuration (the array settings only) and its
//! array client, and read the cluster through [`crate::cluster`]. Each
//! returns a [`Report`]: what to print (a table, or JSON with `--output
//! json`) and the exit code scripts can rely on ([`exit`]).

pub mod adopt;
pub mod arrays;
pub mod check;
mod manifest;
pub mod quota;
pub mod recover;
mod render;
pub mod restore;
pub mod schema;
pub mod versions;
pub mod volumes;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::app::{AppError, array_clients};
use crate::cluster::{ClaimName, Cluster, ClusterError, ClusterFacts, PvInfo};
use crate::config::Config;
use crate::controller::ControllerService;
use crate::flashblade::ArrayClient;
use crate::flashblade::models::FileSystem;
use crate::volume::{ArrayName, DeletePolicy, VolumeId};

pub use render::Progress;

/// The exit codes of the admin commands.
pub mod exit {
    /// Done; everything asked for was printed.
    pub const OK: i32 = 0;
    /// The array (or the cluster, for `--apply`) failed or refused the work.
    pub const FAILED: i32 = 1;
    /// Bad arguments or configuration; nothing was changed.
    pub const USAGE: i32 = 2;
    /// The volume, snapshot or deleted volume named does not exist.
    pub const NOT_FOUND: i32 = 3;
    /// Refused as unsafe or impossible (a static volume, a volume in use
    /// without `--yes`, a name or claim already taken); nothing was changed.
    pub const REFUSED: i32 = 4;
    /// The cluster was unreachable: the array-side facts were printed, the
    /// Kubernetes side is missing.
    pub const PARTIAL: i32 = 5;
    /// `check-array`: at least one check found the array behaving other
    /// than the driver assumes.
    pub const DIFFERS: i32 = 6;
    /// `check-array` was interrupted (Ctrl-C); its objects were removed.
    pub const INTERRUPTED: i32 = 130;
}

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// A table for people.
    #[default]
    Table,
    /// One JSON document for scripts (no progress bar).
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Setup(#[from] AppError),
    #[error("{0}")]
    Driver(#[from] crate::error::Error),
    #[error("{0}")]
    Array(#[from] crate::flashblade::Error),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Usage(String),
    /// A usage error with the parse error behind it.
    #[error("{what}: {source}")]
    BadArgument {
        what: String,
        #[source]
        source: crate::error::Cause,
    },
    /// Refused because of what the typed error says (e.g. a name no
    /// volume id can carry).
    #[error("{what}: {source}")]
    Unusable {
        what: String,
        #[source]
        source: crate::error::Cause,
    },
    /// Something the command built or read that it cannot use.
    #[error("{what}: {source}")]
    Failed {
        what: String,
        #[source]
        source: crate::error::Cause,
    },
}

/// Why the cluster's facts are missing.
#[derive(Debug, thiserror::Error)]
pub enum FactsMissing {
    /// The command does not need them.
    #[error("not consulted")]
    NotConsulted,
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

impl AdminError {
    /// The process exit code for this error ([`exit`]).
    pub fn exit_code(&self) -> i32 {
        use crate::error::Error as E;
        match self {
            AdminError::Usage(_)
            | AdminError::BadArgument { .. }
            | AdminError::Driver(E::InvalidArgument { .. }) => exit::USAGE,
            AdminError::NotFound(_) | AdminError::Driver(E::NotFound { .. }) => exit::NOT_FOUND,
            AdminError::Refused(_)
            | AdminError::Unusable { .. }
            | AdminError::Driver(
                E::FailedPrecondition { .. }
                | E::AlreadyExists { .. }
                | E::OutOfRange { .. }
                | E::Aborted { .. },
            ) => exit::REFUSED,
            _ => exit::FAILED,
        }
    }
}

/// What a command has to say.
#[derive(Debug, Default)]
pub struct Report {
    /// For stdout: the table or the JSON document.
    pub stdout: String,
    /// For stderr: what the reader must know (e.g. the cluster is unreachable).
    pub warnings: Vec<String>,
    pub code: i32,
}

impl Report {
    fn new(stdout: String, session: &Session) -> Self {
        let warnings: Vec<String> = session.cluster_warning().into_iter().collect();
        let code = if warnings.is_empty() {
            exit::OK
        } else {
            exit::PARTIAL
        };
        Report {
            stdout,
            warnings,
            code,
        }
    }
}

/// The array clients, a controller service over them, and the cluster's
/// facts (or why they are missing), for one command.
pub struct Session {
    pub(crate) config: Arc<Config>,
    pub(crate) arrays: BTreeMap<ArrayName, Arc<ArrayClient>>,
    pub(crate) service: ControllerService,
    pub(crate) cluster: Option<Cluster>,
    pub(crate) facts: Result<ClusterFacts, FactsMissing>,
    pub(crate) output: Output,
}

impl Session {
    /// Builds the array clients and, when `want_cluster`, reads the cluster
    /// once (its failure is kept, not returned: the array side still works).
    pub async fn open(config: Config, want_cluster: bool, output: Output) -> Result<Self, AdminError> {
        let config = Arc::new(config);
        // A one-off command: its metrics are recorded but not served.
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let arrays = array_clients(&config, &metrics)?;
        let service = ControllerService::new(config.clone(), arrays.clone(), metrics);
        let (cluster, facts) = if want_cluster {
            match Cluster::connect(config.kubeconfig.as_deref()).await {
                Ok(c) => {
                    let facts = c.facts(&config.driver_name).await.map_err(FactsMissing::from);
                    (Some(c), facts)
                }
                Err(e) => (None, Err(e.into())),
            }
        } else {
            (None, Err(FactsMissing::NotConsulted))
        };
        Ok(Session {
            config,
            arrays,
            service,
            cluster,
            facts,
            output,
        })
    }

    /// Logs out of every array.
    pub async fn close(&self) {
        for c in self.arrays.values() {
            c.logout().await;
        }
    }

    pub(crate) fn facts(&self) -> Option<&ClusterFacts> {
        self.facts.as_ref().ok()
    }

    /// Says the cluster could not be read, when it could not.
    pub(crate) fn cluster_warning(&self) -> Option<String> {
        match &self.facts {
            Err(why @ FactsMissing::Cluster(_)) => Some(format!(
                "the Kubernetes side is missing: {why} (array-side facts only; give --kubeconfig, or check access)"
            )),
            _ => None,
        }
    }

    pub(crate) fn progress(&self, what: &str, len: Option<u64>) -> Progress {
        Progress::new(self.output == Output::Table, what, len)
    }

    pub(crate) fn client(&self, array: &str) -> Result<&Arc<ArrayClient>, AdminError> {
        self.arrays
            .get(array)
            .ok_or_else(|| AdminError::Usage(format!("array {array:?} is not configured")))
    }

    pub(crate) fn default_array(&self) -> Result<&ArrayName, AdminError> {
        self.config
            .default_array()
            .map(|a| &a.name)
            .ok_or_else(|| AdminError::Usage("no array is configured".into()))
    }

    /// Whether `name` carries one of the array's driver prefixes.
    pub(crate) fn is_driver_name(&self, array: &str, name: &str) -> bool {
        self.config.array(array).is_some_and(|a| {
            std::iter::once(&a.name_prefix)
                .chain(a.extra_name_prefixes.iter())
                .any(|p| name.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('-')))
        })
    }

    /// Finds a volume named by PV name, PVC (`namespace/name`), volume id or
    /// handle, or file-system name.
    pub async fn resolve(&self, target: &str) -> Result<Target, AdminError> {
        if target.matches('/').count() == 2
            && let Ok(VolumeId::Managed { array, fs_id, .. }) = target.parse::<VolumeId>()
        {
            let fs = self
                .client(&array)?
                .find_file_system_by_id(&fs_id)
                .await?
                .ok_or_else(|| {
                    AdminError::NotFound(format!("volume {target} does not exist on array {array}"))
                })?;
            return Ok(self.target(array, fs, Some(target.to_string())));
        }
        if let Some((head, tail)) = target.split_once('/') {
            if let (Some(facts), Ok(claim)) = (self.facts(), target.parse::<ClaimName>())
                && let Some(pvc) = facts.pvc(&claim)
            {
                let pv = pvc
                    .volume_name
                    .as_deref()
                    .and_then(|n| facts.pv(n))
                    .ok_or_else(|| {
                        AdminError::NotFound(format!("claim {claim} is not bound to a volume of this driver"))
                    })?;
                return self.target_of_pv(pv).await;
            }
            if self.config.array(head).is_some() {
                let array: ArrayName = head
                    .parse()
                    .map_err(|_| AdminError::Usage(format!("bad array {head:?}")))?;
                if let Some(fs) = self.client(&array)?.find_file_system(tail).await? {
                    return Ok(self.target(array, fs, Some(target.to_string())));
                }
            }
            return Err(AdminError::NotFound(match &self.facts {
                Ok(_) => format!("{target}: no such claim, volume id or file system"),
                Err(why) => format!(
                    "{target}: no such volume id or file system, and claims cannot be looked up ({why})"
                ),
            }));
        }
        if let Some(pv) = self.facts().and_then(|f| f.pv(target)) {
            return self.target_of_pv(pv).await;
        }
        let array = self.default_array()?.clone();
        match self.client(&array)?.find_file_system(target).await? {
            Some(fs) => Ok(self.target(array, fs, None)),
            None => Err(AdminError::NotFound(format!(
                "{target}: no such PersistentVolume{} or file system on array {array}",
                if self.facts.is_ok() {
                    ""
                } else {
                    " (cluster not read)"
                }
            ))),
        }
    }

    async fn target_of_pv(&self, pv: &PvInfo) -> Result<Target, AdminError> {
        let id: VolumeId = pv.volume_handle.parse().map_err(|why| {
            AdminError::NotFound(format!(
                "PV {} has a handle this driver cannot read: {why}",
                pv.name
            ))
        })?;
        let array = match id.array() {
            Some(a) => a.clone(),
            None => self.default_array()?.clone(),
        };
        let client = self.client(&array)?;
        let fs = match &id {
            VolumeId::Managed { fs_id, .. } => client.find_file_system_by_id(fs_id).await?,
            VolumeId::Static { fs_name, .. } => client.find_file_system(fs_name).await?,
        };
        let fs = fs.ok_or_else(|| {
            AdminError::NotFound(format!(
                "PV {}: its file system {} is gone from array {array}",
                pv.name,
                id.fs_name()
            ))
        })?;
        Ok(self.target(array, fs, Some(pv.volume_handle.clone())))
    }

    fn target(&self, array: ArrayName, fs: FileSystem, handle: Option<String>) -> Target {
        let default = self
            .config
            .default_array()
            .map(|a| a.name.to_string())
            .unwrap_or_default();
        let pv = self
            .facts()
            .and_then(|f| f.pv_for_fs(&array, &default, &fs.name))
            .cloned();
        let handle = handle.or_else(|| pv.as_ref().map(|p| p.volume_handle.clone()));
        let managed = match handle.as_deref().map(str::parse::<VolumeId>) {
            Some(Ok(VolumeId::Managed { .. })) => true,
            Some(_) => false,
            None => self.is_driver_name(&array, &fs.name),
        };
        let volume_id = match handle {
            Some(h) => h,
            None if managed => VolumeId::managed(&array, &fs.name, &fs.id, DeletePolicy::Destroy)
                .map(|v| v.to_string())
                .unwrap_or_else(|_| format!("{array}/{}", fs.name)),
            None => format!("{array}/{}", fs.name),
        };
        Target {
            claim: pv.as_ref().and_then(|p| p.claim.clone()),
            pv,
            array,
            fs,
            volume_id,
            managed,
        }
    }
}

/// A volume an admin named, found on the array.
#[derive(Debug, Clone)]
pub struct Target {
    pub array: ArrayName,
    pub(crate) fs: FileSystem,
    /// The id or handle the controller knows it by.
    pub volume_id: String,
    /// Made by the driver (false: a static, imported file system).
    pub managed: bool,
    pub pv: Option<PvInfo>,
    pub claim: Option<ClaimName>,
}

/// One admin command, ready to run.
#[derive(Debug, Clone)]
pub enum Job {
    Arrays,
    Volumes,
    Orphans,
    QuotaShow {
        volume: String,
    },
    QuotaSet {
        volume: String,
        change: quota::QuotaChange,
    },
    QuotaRemove {
        volume: String,
        uid: Option<u32>,
        gid: Option<u32>,
    },
    RecoverList,
    Recover {
        volume: String,
        args: recover::RecoverArgs,
    },
    Restore {
        volume: String,
        snapshot_id: String,
        dry_run: bool,
        yes: bool,
    },
    Adopt(adopt::AdoptArgs),
    CheckArray(check::CheckArgs),
}

impl Job {
    /// Whether the command reads the cluster.
    fn wants_cluster(&self) -> bool {
        match self {
            // adopt reads (and writes) the cluster itself: it needs all
            // PVs, not this driver's facts, and the cluster is not optional.
            Job::RecoverList | Job::Arrays | Job::Adopt(_) | Job::CheckArray(_) => false,
            Job::Recover { args, .. } => args.claim.is_some(),
            _ => true,
        }
    }
}

/// Runs one admin command against the arrays of `config` (and the cluster).
pub async fn run(config: Config, output: Output, job: Job) -> Result<Report, AdminError> {
    let session = Session::open(config, job.wants_cluster(), output).await?;
    let result = match &job {
        Job::Arrays => arrays::arrays(&session).await,
        Job::Volumes => volumes::volumes(&session).await,
        Job::Orphans => volumes::orphans(&session).await,
        Job::QuotaShow { volume } => quota::show(&session, volume).await,
        Job::QuotaSet { volume, change } => quota::set(&session, volume, change).await,
        Job::QuotaRemove { volume, uid, gid } => quota::remove(&session, volume, *uid, *gid).await,
        Job::RecoverList => recover::list(&session).await,
        Job::Recover { volume, args } => recover::recover(&session, volume, args).await,
        Job::Restore {
            volume,
            snapshot_id,
            dry_run,
            yes,
        } => restore::restore(&session, volume, snapshot_id, *dry_run, *yes).await,
        Job::Adopt(args) => adopt::adopt(&session, args).await,
        Job::CheckArray(args) => check::check_array(&session, args).await,
    };
    session.close().await;
    result
}
