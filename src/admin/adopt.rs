//! `adopt`: puts the volumes of another CSI driver (PSO's `pure-csi`) and
//! hand-written in-tree `nfs:` volumes that live on a configured array under
//! this driver, without copying a byte. Each one gets a PersistentVolume of
//! this driver for the same file system (managed, with the array's id, for
//! PSO's homes; static and read-only for NFS datasets), bound to a claim with
//! the same namespace and name.
//!
//! The steps, each checked against the cluster before it is taken, so a
//! rerun resumes where an interrupted run stopped and a finished run changes
//! nothing:
//!
//! 1. the old PV's reclaim policy becomes Retain, and the claim's labels,
//!    annotations and spec are recorded on it (an annotation): from here on
//!    no deletion of a Kubernetes object can reach the file system, and the
//!    claim can be recreated even after it is deleted;
//! 2. the replacement PV is created, pre-bound (`claimRef`) to the claim's
//!    namespace and name — before the old claim goes, so that the name is
//!    never free without a PV waiting for it;
//! 3. the old claim is deleted (only once step 1 is read back from the
//!    cluster, and never while a pod that has not finished uses it);
//! 4. the claim is recreated with its old name, labels and annotations,
//!    `volumeName` the new PV;
//! 5. the old PV object is deleted (it is Retain: its file system stays).
//!    It goes last because it carries the record of step 1.
//!
//! The array is only read (file systems by name, for their ids).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, NFSVolumeSource, PersistentVolume, PersistentVolumeClaim,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::manifest::{BoundPair, attributes};
use super::render::table;
use super::{AdminError, Output, Report, Session, exit};
use crate::cluster::{ClaimName, Cluster, ClusterError};
use crate::controller::params::nfs_versions_text;
use crate::flashblade::models::FileSystem;
use crate::volume::{ArrayName, DeletePolicy, FsName, VolumeId};

/// On a replacement PV: the name of the PV it replaces.
pub const ADOPTED_FROM: &str = "flashblade.csi.dev/adopted-from";
/// On an old PV being adopted: its claim as it was ([`ClaimRecord`], JSON).
pub const CLAIM_RECORD: &str = "flashblade.csi.dev/adopt-claim";
/// The prefix of a replacement PV's name.
pub const NEW_PV_PREFIX: &str = "fbcsi-";

/// Claim annotations that describe the old binding or provisioning, not
/// the user's claim: the recreated claim goes without them.
const BINDING_ANNOTATIONS: &[&str] = &[
    "pv.kubernetes.io/",
    "volume.beta.kubernetes.io/",
    "volume.kubernetes.io/",
    "kubectl.kubernetes.io/last-applied-configuration",
];

/// What `adopt` is asked to do.
#[derive(Debug, Clone)]
pub struct AdoptArgs {
    /// Act; without it, print the plan and change nothing.
    pub apply: bool,
    /// The CSI driver whose PVs to adopt (PSO's: `pure-csi`).
    pub from_driver: String,
    /// storageClassName of the replacement PVs and claims of PSO's volumes
    /// (default: the old one).
    pub storage_class: Option<String>,
    /// storageClassName of the replacement PVs and claims of in-tree NFS
    /// datasets (default: the old one).
    pub dataset_storage_class: Option<String>,
    /// Reclaim policy of the replacement PVs of PSO's volumes.
    pub reclaim_policy: String,
    /// Only these old PVs (default: every one found).
    pub pvs: Vec<String>,
    /// How long to wait for a deleted claim to be gone.
    pub claim_timeout: Duration,
}

impl Default for AdoptArgs {
    fn default() -> Self {
        Self {
            apply: false,
            from_driver: "pure-csi".into(),
            storage_class: None,
            dataset_storage_class: None,
            reclaim_policy: "Retain".into(),
            pvs: Vec::new(),
            claim_timeout: Duration::from_secs(60),
        }
    }
}

/// Where an adopted volume came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A PV of the other CSI driver: becomes a managed volume.
    Csi,
    /// An in-tree `nfs:` PV: becomes a static, read-only volume.
    Nfs,
}

/// How far one volume got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Dry run: the steps marked `planned` would run.
    Planned,
    /// Every step is done (this run did some of them).
    Adopted,
    /// Every step was already done: nothing changed.
    AlreadyAdopted,
    /// Not started, or stopped before an unsafe step; see `reason`.
    Refused,
    /// A step failed; a rerun resumes from it.
    Failed,
}

impl Status {
    fn text(self) -> &'static str {
        match self {
            Status::Planned => "would adopt",
            Status::Adopted => "adopted",
            Status::AlreadyAdopted => "already adopted",
            Status::Refused => "refused",
            Status::Failed => "FAILED",
        }
    }
}

/// One step's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// The cluster was already in that state.
    Done,
    /// Done by this run.
    Applied,
    /// Dry run: would be done.
    Planned,
    Failed,
    /// After a refusal or a failure: not attempted.
    NotReached,
}

impl StepState {
    fn text(self) -> &'static str {
        match self {
            StepState::Done => "done",
            StepState::Applied => "applied",
            StepState::Planned => "would do",
            StepState::Failed => "FAILED",
            StepState::NotReached => "not reached",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `retain`, `create-pv`, `delete-claim`, `create-claim`, `delete-old-pv`.
    pub step: &'static str,
    pub action: String,
    pub state: StepState,
}

/// One volume: what it is, what it becomes, and the steps.
#[derive(Debug, Clone, Serialize)]
pub struct Adoption {
    pub pv: String,
    pub kind: Kind,
    pub claim: Option<String>,
    pub array: String,
    pub file_system: String,
    pub new_pv: String,
    pub volume_handle: String,
    pub status: Status,
    pub steps: Vec<Step>,
    pub reason: Option<String>,
    pub notes: Vec<String>,
}

/// A PV that looked like a candidate but is not one, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub pv: String,
    pub kind: Kind,
    pub reason: String,
}

/// A PV of this driver made by an earlier `adopt`.
#[derive(Debug, Clone, Serialize)]
pub struct Adopted {
    pub pv: String,
    pub from: String,
    pub claim: Option<String>,
    pub volume_handle: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct AdoptReport {
    pub dry_run: bool,
    pub volumes: Vec<Adoption>,
    pub skipped: Vec<Skipped>,
    pub already_adopted: Vec<Adopted>,
    pub exit_code: i32,
}

/// The claim as it was, kept on the old PV between deleting it and
/// creating it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRecord {
    pub uid: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub access_modes: Vec<String>,
    pub storage: Option<String>,
    pub storage_class_name: Option<String>,
    pub volume_mode: Option<String>,
}

impl ClaimRecord {
    fn of(pvc: &PersistentVolumeClaim) -> Self {
        let spec = pvc.spec.as_ref();
        ClaimRecord {
            uid: pvc.metadata.uid.clone().unwrap_or_default(),
            labels: pvc.metadata.labels.clone().unwrap_or_default(),
            annotations: pvc
                .metadata
                .annotations
                .iter()
                .flatten()
                .filter(|(k, _)| !BINDING_ANNOTATIONS.iter().any(|b| k.starts_with(b)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            access_modes: spec.and_then(|s| s.access_modes.clone()).unwrap_or_default(),
            storage: spec
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| q.0.clone()),
            storage_class_name: spec.and_then(|s| s.storage_class_name.clone()),
            volume_mode: spec.and_then(|s| s.volume_mode.clone()),
        }
    }
}

/// A Kubernetes object name (DNS subdomain): what PV, claim and class names
/// must be.
fn is_k8s_name(s: &str) -> bool {
    crate::volume::rules::is_object_name(s)
}

/// A CSI driver name.
fn is_driver_name(s: &str) -> bool {
    crate::volume::rules::is_driver_name(s)
}

/// The replacement PV's name: `fbcsi-<old>`, cut to a valid name. The same
/// old name always gives the same new one, so a rerun finds it.
pub fn new_pv_name(old: &str) -> String {
    let mut name: String = format!("{NEW_PV_PREFIX}{old}").chars().take(253).collect();
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    name
}

fn check_args(s: &Session, args: &AdoptArgs) -> Result<(), AdminError> {
    if !is_driver_name(&args.from_driver) {
        return Err(AdminError::Usage(format!(
            "--from-driver {:?} is not a CSI driver name (1-63 letters, digits, '-' and '.')",
            args.from_driver
        )));
    }
    if args.from_driver == s.config.driver_name {
        return Err(AdminError::Usage(format!(
            "--from-driver {} is this driver's own name: its volumes need no adopting",
            args.from_driver
        )));
    }
    for (flag, class) in [
        ("--storage-class", &args.storage_class),
        ("--dataset-storage-class", &args.dataset_storage_class),
    ] {
        if let Some(c) = class
            && !is_k8s_name(c)
        {
            return Err(AdminError::Usage(format!(
                "{flag} {c:?} is not a StorageClass name (lower-case letters, digits, '-' and '.')"
            )));
        }
    }
    if !matches!(args.reclaim_policy.as_str(), "Retain" | "Delete") {
        return Err(AdminError::Usage(format!(
            "--reclaim-policy {:?}: expected Retain or Delete",
            args.reclaim_policy
        )));
    }
    for pv in &args.pvs {
        if !is_k8s_name(pv) {
            return Err(AdminError::Usage(format!(
                "--pv {pv:?} is not a PersistentVolume name"
            )));
        }
    }
    if let Some(a) = s.config.arrays.iter().find(|a| a.nfs_endpoint.is_none()) {
        return Err(AdminError::Usage(format!(
            "array {} has no NFS endpoint: adopt needs each array's data VIP to recognise in-tree NFS volumes and to write it into the new PVs (give --nfs-endpoint, or the config file the driver uses)",
            a.name
        )));
    }
    Ok(())
}

/// A volume to adopt, found on the cluster and the array.
struct Candidate {
    old: PersistentVolume,
    name: String,
    kind: Kind,
    array: ArrayName,
    fs: FileSystem,
    handle: VolumeId,
    new_name: String,
    /// The server to write into the new PV.
    server: String,
}

fn annotation<'a>(pv: &'a PersistentVolume, key: &str) -> Option<&'a str> {
    pv.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// `adopt`: finds the candidates, then plans or applies each in turn.
pub async fn adopt(s: &Session, args: &AdoptArgs) -> Result<Report, AdminError> {
    check_args(s, args)?;
    let cluster = Cluster::connect(s.config.kubeconfig.as_deref()).await?;
    let pvs = cluster.all_pvs().await?;

    let mut candidates = Vec::new();
    let mut skipped = Vec::new();
    let mut already = Vec::new();
    for pv in &pvs {
        let (Some(name), Some(spec)) = (pv.metadata.name.clone(), pv.spec.as_ref()) else {
            continue;
        };
        let found = if let Some(csi) = &spec.csi {
            if csi.driver == s.config.driver_name {
                if let Some(from) = annotation(pv, ADOPTED_FROM) {
                    already.push(Adopted {
                        pv: name.clone(),
                        from: from.to_string(),
                        claim: spec.claim_ref.as_ref().map(|c| {
                            format!(
                                "{}/{}",
                                c.namespace.as_deref().unwrap_or_default(),
                                c.name.as_deref().unwrap_or_default()
                            )
                        }),
                        volume_handle: csi.volume_handle.clone(),
                    });
                }
                continue;
            }
            if csi.driver != args.from_driver {
                continue;
            }
            if !args.pvs.is_empty() && !args.pvs.contains(&name) {
                continue;
            }
            locate_csi(s, csi)
                .await?
                .map(|(array, fs)| (Kind::Csi, array, fs))
        } else if let Some(nfs) = &spec.nfs {
            // --pv: the array is asked about the PVs named only.
            if !args.pvs.is_empty() && !args.pvs.contains(&name) {
                continue;
            }
            locate_nfs(s, nfs)
                .await?
                .map(|(array, fs)| (Kind::Nfs, array, fs))
        } else {
            continue;
        };
        let kind = if spec.csi.is_some() { Kind::Csi } else { Kind::Nfs };
        match found.and_then(|(kind, array, fs)| candidate(s, pv, &name, kind, array, fs)) {
            Ok(c) => candidates.push(c),
            Err(reason) => skipped.push(Skipped {
                pv: name,
                kind,
                reason,
            }),
        }
    }
    if !args.pvs.is_empty() {
        let known = |n: &String| {
            candidates.iter().any(|c| &c.name == n)
                || skipped.iter().any(|k| &k.pv == n)
                || already.iter().any(|a| &a.from == n)
        };
        if let Some(missing) = args.pvs.iter().find(|n| !known(n)) {
            return Err(AdminError::NotFound(format!(
                "--pv {missing}: no PersistentVolume of driver {} or in-tree NFS by that name, and none adopted from it",
                args.from_driver
            )));
        }
        already.retain(|a| args.pvs.contains(&a.from));
    }

    let mut volumes = Vec::new();
    for c in &candidates {
        volumes.push(adopt_one(s, &cluster, args, c).await);
    }
    let code = if volumes.iter().any(|v| v.status == Status::Failed) {
        exit::FAILED
    } else if volumes.iter().any(|v| v.status == Status::Refused) {
        exit::REFUSED
    } else {
        exit::OK
    };
    let report = AdoptReport {
        dry_run: !args.apply,
        volumes,
        skipped,
        already_adopted: already,
        exit_code: code,
    };
    let stdout = match s.output {
        Output::Json => serde_json::to_string_pretty(&report).expect("serialisable") + "\n",
        Output::Table => render(&report, args),
    };
    Ok(Report {
        stdout,
        warnings: Vec::new(),
        code,
    })
}

/// The file-system names a CSI PV may name: its handle, the handle's last
/// `/`- or `:`-separated part, and volume attributes whose key speaks of a
/// name, share or path (a leading `/` removed). Only valid FlashBlade names.
fn csi_names(csi: &CSIPersistentVolumeSource) -> Vec<FsName> {
    let mut raw = vec![csi.volume_handle.clone()];
    if let Some(last) = csi.volume_handle.rsplit(['/', ':']).next() {
        raw.push(last.to_string());
    }
    for (k, v) in csi.volume_attributes.iter().flatten() {
        let key = k.to_ascii_lowercase();
        if key.starts_with("csi.storage.k8s.io/") || key.starts_with("storage.kubernetes.io/") {
            continue;
        }
        if ["name", "share", "path"].iter().any(|w| key.contains(w)) {
            raw.push(v.trim_start_matches('/').to_string());
        }
    }
    let mut out: Vec<FsName> = Vec::new();
    for r in raw {
        if let Ok(n) = r.parse::<FsName>()
            && !out.contains(&n)
        {
            out.push(n);
        }
    }
    out
}

/// The NFS server a CSI PV's attributes name, if any (to tell arrays apart).
fn csi_server_hint(csi: &CSIPersistentVolumeSource) -> Option<String> {
    csi.volume_attributes.iter().flatten().find_map(|(k, v)| {
        let key = k.to_ascii_lowercase();
        (key.contains("server") || key.contains("endpoint")).then(|| v.clone())
    })
}

fn same_host(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The live file system a PV of the other driver is, on which array: by
/// name on every configured array (an array's id is read, nothing changes).
async fn locate_csi(
    s: &Session,
    csi: &CSIPersistentVolumeSource,
) -> Result<Result<(ArrayName, FileSystem), String>, AdminError> {
    let names = csi_names(csi);
    if names.is_empty() {
        return Ok(Err(format!(
            "volume handle {:?} names no FlashBlade file system (a FlashArray volume?)",
            crate::text::clip(&csi.volume_handle)
        )));
    }
    let hint = csi_server_hint(csi);
    let mut destroyed = Vec::new();
    for name in &names {
        let mut hits = Vec::new();
        for (array, client) in &s.arrays {
            match client.find_file_system(name).await? {
                Some(fs) if fs.destroyed => destroyed.push(format!("{array}/{}", fs.name)),
                Some(fs) => hits.push((array.clone(), fs)),
                None => {}
            }
        }
        if hits.len() > 1
            && let Some(server) = &hint
        {
            hits.retain(|(a, _)| {
                s.config
                    .array(a)
                    .and_then(|c| c.nfs_endpoint.as_ref())
                    .is_some_and(|e| same_host(e, server))
            });
        }
        match hits.len() {
            0 => {}
            1 => return Ok(Ok(hits.remove(0))),
            _ => {
                return Ok(Err(format!(
                    "file system {name} exists on arrays {}; nothing in the PV tells which one it is",
                    hits.iter()
                        .map(|(a, _)| a.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    let arrays: Vec<&str> = s.arrays.keys().map(|a| a.as_str()).collect();
    let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    Ok(Err(if destroyed.is_empty() {
        format!(
            "no file system named {} on array {} (a FlashArray volume, or an array not configured here?)",
            names.join(" or "),
            arrays.join(", ")
        )
    } else {
        format!(
            "file system {} is destroyed (soft-deleted): recover it first (`flashblade-csi recover`)",
            destroyed.join(", ")
        )
    }))
}

/// The live file system an in-tree NFS PV mounts: its server must be a
/// configured array's NFS endpoint and its path `/<file system>`.
async fn locate_nfs(
    s: &Session,
    nfs: &NFSVolumeSource,
) -> Result<Result<(ArrayName, FileSystem), String>, AdminError> {
    let Some(array) = s
        .config
        .arrays
        .iter()
        .find(|a| a.nfs_endpoint.as_ref().is_some_and(|e| same_host(e, &nfs.server)))
    else {
        return Ok(Err(format!(
            "in-tree NFS from {}, which is no configured array's NFS endpoint",
            crate::text::clip(&nfs.server)
        )));
    };
    let path = nfs.path.trim_end_matches('/');
    let Some(rest) = path.strip_prefix('/').filter(|r| !r.is_empty()) else {
        return Ok(Err(format!(
            "path {:?} is not /<file system>",
            crate::text::clip(&nfs.path)
        )));
    };
    if let Some((top, _)) = rest.split_once('/') {
        return Ok(Err(format!(
            "path {} is a directory inside file system {}: this driver mounts whole file systems, so this PV stays as it is",
            crate::text::clip(&nfs.path),
            crate::text::clip(top)
        )));
    }
    let Ok(name) = rest.parse::<FsName>() else {
        return Ok(Err(format!(
            "path {} names no FlashBlade file system",
            crate::text::clip(&nfs.path)
        )));
    };
    Ok(match s.client(&array.name)?.find_file_system(&name).await? {
        None => Err(format!("no file system {name} on array {}", array.name)),
        Some(fs) if fs.destroyed => Err(format!(
            "file system {name} on array {} is destroyed (soft-deleted): recover it first (`flashblade-csi recover`)",
            array.name
        )),
        Some(fs) => Ok((array.name.clone(), fs)),
    })
}

fn candidate(
    s: &Session,
    pv: &PersistentVolume,
    name: &str,
    kind: Kind,
    array: ArrayName,
    fs: FileSystem,
) -> Result<Candidate, String> {
    let handle = match kind {
        // The array's id makes it the driver's own: resize, snapshots,
        // quotas and ModifyVolume work as for a volume it created.
        Kind::Csi => VolumeId::managed(&array, &fs.name, &fs.id, DeletePolicy::Destroy)
            .map_err(|e| format!("{} cannot carry a volume id: {e}", fs.name))?,
        Kind::Nfs => VolumeId::Static {
            array: Some(array.clone()),
            fs_name: fs
                .name
                .parse()
                .map_err(|e| format!("{} cannot carry a volume id: {e}", fs.name))?,
            version: None,
        },
    };
    let server = match (kind, pv.spec.as_ref().and_then(|s| s.nfs.as_ref())) {
        // Exactly what the pods mounted until now.
        (Kind::Nfs, Some(nfs)) => nfs.server.clone(),
        _ => s
            .config
            .array(&array)
            .and_then(|a| a.nfs_endpoint.as_ref())
            .map(|h| h.to_string())
            .unwrap_or_default(),
    };
    Ok(Candidate {
        old: pv.clone(),
        name: name.to_string(),
        kind,
        new_name: new_pv_name(name),
        array,
        fs,
        handle,
        server,
    })
}

/// Why one volume stopped.
enum Stop {
    Refused(String),
    Failed(String),
}

impl From<ClusterError> for Stop {
    fn from(e: ClusterError) -> Self {
        Stop::Failed(e.to_string())
    }
}

/// Where the claim of the old PV stands.
enum ClaimState {
    /// The old claim, bound to the old PV: still to be deleted.
    Old(Box<PersistentVolumeClaim>),
    /// Gone: to be created.
    Gone,
    /// Recreated, bound to the new PV.
    New,
}

async fn adopt_one(s: &Session, cluster: &Cluster, args: &AdoptArgs, c: &Candidate) -> Adoption {
    let claim_ref = c.old.spec.as_ref().and_then(|sp| sp.claim_ref.as_ref());
    let mut a = Adoption {
        pv: c.name.clone(),
        kind: c.kind,
        claim: claim_ref.map(|r| {
            format!(
                "{}/{}",
                r.namespace.as_deref().unwrap_or_default(),
                r.name.as_deref().unwrap_or_default()
            )
        }),
        array: c.array.to_string(),
        file_system: c.fs.name.clone(),
        new_pv: c.new_name.clone(),
        volume_handle: c.handle.to_string(),
        status: Status::Planned,
        steps: Vec::new(),
        reason: None,
        notes: Vec::new(),
    };
    match run_steps(s, cluster, args, c, &mut a).await {
        Ok(()) => {
            let all_done = a.steps.iter().all(|st| st.state == StepState::Done);
            a.status = if all_done {
                Status::AlreadyAdopted
            } else if args.apply {
                Status::Adopted
            } else {
                Status::Planned
            };
        }
        Err(stop) => {
            let (status, why) = match stop {
                Stop::Refused(w) => (Status::Refused, w),
                Stop::Failed(w) => (Status::Failed, w),
            };
            a.status = status;
            a.reason = Some(why);
        }
    }
    a
}

fn pv_uid(pv: &PersistentVolume) -> String {
    pv.metadata.uid.clone().unwrap_or_default()
}

fn reclaim_policy(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Delete")
}

/// Plans the five steps from what the cluster holds now and, with
/// `--apply`, takes those not yet taken, in order.
async fn run_steps(
    s: &Session,
    cluster: &Cluster,
    args: &AdoptArgs,
    c: &Candidate,
    a: &mut Adoption,
) -> Result<(), Stop> {
    let spec = c.old.spec.clone().unwrap_or_default();
    let Some(claim_ref) = spec.claim_ref.as_ref() else {
        return Err(Stop::Refused(format!(
            "PV {} is not bound to a claim (phase {}): there is no claim to hand over; it stays as it is",
            c.name,
            c.old
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("unknown")
        )));
    };
    let claim: ClaimName = format!(
        "{}/{}",
        claim_ref.namespace.as_deref().unwrap_or_default(),
        claim_ref.name.as_deref().unwrap_or_default()
    )
    .parse()
    .map_err(|e| Stop::Refused(format!("PV {} has a claimRef that names no claim: {e}", c.name)))?;
    let recorded: Option<ClaimRecord> = match annotation(&c.old, CLAIM_RECORD) {
        None => None,
        Some(text) => Some(serde_json::from_str(text).map_err(|e| {
            Stop::Refused(format!(
                "PV {} carries an unreadable {CLAIM_RECORD} annotation ({e}); remove it and run again",
                c.name
            ))
        })?),
    };

    // The claim now.
    let pvc = cluster.claim(&claim).await?;
    let state = match pvc {
        None => ClaimState::Gone,
        Some(p) => {
            let bound_to = p.spec.as_ref().and_then(|s| s.volume_name.clone());
            let uid = p.metadata.uid.clone().unwrap_or_default();
            if bound_to.as_deref() == Some(c.new_name.as_str()) {
                ClaimState::New
            } else if bound_to.as_deref() == Some(c.name.as_str())
                || claim_ref.uid.as_deref() == Some(uid.as_str())
            {
                ClaimState::Old(Box::new(p))
            } else {
                return Err(Stop::Refused(format!(
                    "claim {claim} exists but is not PV {}'s (it is bound to {}): someone made a new one under that name (JupyterHub, when a user started a server?). Stop the user's server, delete that claim if it holds nothing, and run adopt again",
                    c.name,
                    bound_to.as_deref().unwrap_or("nothing yet")
                )));
            }
        }
    };
    let record = match (&state, recorded) {
        (ClaimState::Old(p), _) => Some(ClaimRecord::of(p)),
        (_, r) => r,
    };
    if matches!(state, ClaimState::Gone) && record.is_none() {
        return Err(Stop::Refused(format!(
            "claim {claim} of PV {} was deleted before adopt recorded it: there is no claim to recreate; the PV stays as it is",
            c.name
        )));
    }

    // The replacement PV, if made already, must be this volume's.
    let new_pv = cluster.pv(&c.new_name).await?;
    let expected_handle = c.handle.to_string();
    if let Some(existing) = &new_pv {
        let csi = existing.spec.as_ref().and_then(|s| s.csi.as_ref());
        let ours = csi
            .is_some_and(|x| x.driver == s.config.driver_name && x.volume_handle == expected_handle)
            && annotation(existing, ADOPTED_FROM) == Some(c.name.as_str());
        if !ours {
            return Err(Stop::Refused(format!(
                "PV {} exists and is not the replacement of {} (driver {}, handle {}); delete or rename it, then run again",
                c.new_name,
                c.name,
                csi.map(|x| x.driver.as_str()).unwrap_or("none"),
                csi.map(|x| x.volume_handle.as_str()).unwrap_or("none"),
            )));
        }
    }

    // Never while a pod may write through the old PV: refused before any step.
    if let ClaimState::Old(_) = &state {
        let pods = cluster.pods_using(&claim).await?;
        if !pods.is_empty() {
            return Err(Stop::Refused(format!(
                "claim {claim} is in use by pod {} (not finished): stop it first (JupyterHub: stop the user's server); nothing was changed for this volume",
                pods.join(", pod ")
            )));
        }
    }

    let was = reclaim_policy(&c.old).to_string();
    let (class, reclaim) = match c.kind {
        Kind::Csi => (
            args.storage_class.clone().or(spec.storage_class_name.clone()),
            args.reclaim_policy.clone(),
        ),
        // The driver never deletes a static volume: Delete would only leave
        // the PV Failed.
        Kind::Nfs => (
            args.dataset_storage_class
                .clone()
                .or(spec.storage_class_name.clone()),
            "Retain".to_string(),
        ),
    };
    let class = class.unwrap_or_default();
    let read_only = match c.kind {
        Kind::Csi => spec.csi.as_ref().and_then(|x| x.read_only).unwrap_or(false),
        Kind::Nfs => true,
    };
    if c.kind == Kind::Nfs && !spec.nfs.as_ref().and_then(|n| n.read_only).unwrap_or(false) {
        a.notes.push(
            "the in-tree PV was mounted read-write; the replacement is a static volume, always mounted read-only"
                .into(),
        );
    }

    let mut steps: Vec<(Step, bool)> = vec![
        (
            Step {
                step: "retain",
                action: if was == "Retain" {
                    format!("record claim {claim} on PV {} (already Retain)", c.name)
                } else {
                    format!(
                        "set PV {}'s reclaim policy to Retain (it is {was}) and record claim {claim} on it",
                        c.name
                    )
                },
                state: StepState::Planned,
            },
            was == "Retain"
                && (annotation(&c.old, CLAIM_RECORD).is_some() || matches!(state, ClaimState::New)),
        ),
        (
            Step {
                step: "create-pv",
                action: format!(
                    "create PV {} ({}, {} volume {expected_handle}, {reclaim}, class {:?}{}, bound to {claim})",
                    c.new_name,
                    s.config.driver_name,
                    match c.kind {
                        Kind::Csi => "managed",
                        Kind::Nfs => "static",
                    },
                    class,
                    if read_only { ", read-only" } else { "" },
                ),
                state: StepState::Planned,
            },
            new_pv.is_some(),
        ),
        (
            Step {
                step: "delete-claim",
                action: format!(
                    "delete claim {claim} (bound to {}; the file system stays)",
                    c.name
                ),
                state: StepState::Planned,
            },
            !matches!(state, ClaimState::Old(_)),
        ),
        (
            Step {
                step: "create-claim",
                action: format!("create claim {claim} bound to {}", c.new_name),
                state: StepState::Planned,
            },
            matches!(state, ClaimState::New),
        ),
        (
            Step {
                step: "delete-old-pv",
                action: format!("delete PV {} (Retain: file system {} stays)", c.name, c.fs.name),
                state: StepState::Planned,
            },
            c.old.metadata.deletion_timestamp.is_some(),
        ),
    ];
    for (step, done) in &mut steps {
        if *done {
            step.state = StepState::Done;
        }
    }
    a.steps = steps.iter().map(|(st, _)| st.clone()).collect();
    if !args.apply {
        return Ok(());
    }

    let pair = || {
        let record = record.clone().unwrap_or_else(|| ClaimRecord {
            uid: String::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            access_modes: Vec::new(),
            storage: None,
            storage_class_name: None,
            volume_mode: None,
        });
        let capacity = spec
            .capacity
            .as_ref()
            .and_then(|m| m.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_else(|| c.fs.provisioned.unwrap_or(0).to_string());
        let mut pv_annotations = BTreeMap::from([(ADOPTED_FROM.to_string(), c.name.clone())]);
        if c.kind == Kind::Csi {
            // The external-provisioner deletes only the PVs it provisioned.
            pv_annotations.insert(
                "pv.kubernetes.io/provisioned-by".into(),
                s.config.driver_name.clone(),
            );
        }
        BoundPair {
            pv_name: c.new_name.clone(),
            driver: s.config.driver_name.clone(),
            volume_handle: expected_handle.clone(),
            attributes: attributes(
                &c.array,
                &c.fs.name,
                Some(&c.server),
                &nfs_versions_text(
                    c.fs.nfs.v3_enabled.unwrap_or(false),
                    c.fs.nfs.v4_1_enabled.unwrap_or(false),
                ),
            ),
            capacity: capacity.clone(),
            access_modes: spec.access_modes.clone().unwrap_or_default(),
            reclaim_policy: reclaim.clone(),
            storage_class: class.clone(),
            read_only,
            mount_options: spec.mount_options.clone().unwrap_or_default(),
            volume_mode: spec.volume_mode.clone(),
            pv_labels: c.old.metadata.labels.clone().unwrap_or_default(),
            pv_annotations,
            claim: claim.clone(),
            claim_access_modes: (!record.access_modes.is_empty()).then(|| record.access_modes.clone()),
            claim_request: record.storage.clone(),
            claim_labels: record.labels.clone(),
            claim_annotations: record.annotations.clone(),
        }
    };

    for (i, (step, done)) in steps.iter().enumerate() {
        if *done {
            continue;
        }
        let result = match step.step {
            "retain" => retain(cluster, c, record.as_ref()).await,
            "create-pv" => match serde_json::from_value::<PersistentVolume>(pair().pv()) {
                Ok(pv) => create_pv(cluster, &pv, c).await,
                Err(e) => Err(Stop::Failed(format!("building PV {}: {e}", c.new_name))),
            },
            "delete-claim" => delete_claim(cluster, args, c, &claim, &state).await,
            "create-claim" => match serde_json::from_value::<PersistentVolumeClaim>(pair().claim()) {
                Ok(pvc) => create_claim(cluster, &pvc, c, &claim).await,
                Err(e) => Err(Stop::Failed(format!("building claim {claim}: {e}"))),
            },
            "delete-old-pv" => delete_old_pv(cluster, c).await,
            other => unreachable!("no step {other}"),
        };
        match result {
            Ok(()) => a.steps[i].state = StepState::Applied,
            Err(stop) => {
                a.steps[i].state = StepState::Failed;
                for later in a.steps.iter_mut().skip(i + 1) {
                    if later.state == StepState::Planned {
                        later.state = StepState::NotReached;
                    }
                }
                return Err(stop);
            }
        }
    }
    Ok(())
}

/// Step 1: Retain, and the claim recorded, in one patch; read back.
async fn retain(cluster: &Cluster, c: &Candidate, record: Option<&ClaimRecord>) -> Result<(), Stop> {
    let mut patch = json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}});
    if let Some(r) = record {
        patch["metadata"] =
            json!({"annotations": {CLAIM_RECORD: serde_json::to_string(r).expect("serialisable")}});
    }
    let pv = cluster.merge_patch_pv(&c.name, &patch).await?;
    if reclaim_policy(&pv) != "Retain" {
        return Err(Stop::Failed(format!(
            "PV {} still has reclaim policy {} after the patch; nothing else was done",
            c.name,
            reclaim_policy(&pv)
        )));
    }
    Ok(())
}

async fn create_pv(cluster: &Cluster, pv: &PersistentVolume, c: &Candidate) -> Result<(), Stop> {
    match cluster.create_pv(pv).await {
        Ok(_) => Ok(()),
        // Made in between (another adopt?): the next run checks it is ours.
        Err(e) if e.is_conflict() => Err(Stop::Failed(format!(
            "PV {} appeared while adopting {}; run adopt again to check it",
            c.new_name, c.name
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Step 3: only with the old PV read back as Retain; then waits until the
/// claim is gone (its protection finalizer holds it while a pod uses it).
async fn delete_claim(
    cluster: &Cluster,
    args: &AdoptArgs,
    c: &Candidate,
    claim: &ClaimName,
    state: &ClaimState,
) -> Result<(), Stop> {
    let ClaimState::Old(pvc) = state else {
        return Ok(());
    };
    let now = cluster
        .pv(&c.name)
        .await?
        .ok_or_else(|| Stop::Failed(format!("PV {} vanished; claim {claim} was not deleted", c.name)))?;
    if reclaim_policy(&now) != "Retain" {
        return Err(Stop::Failed(format!(
            "PV {} is not Retain (it is {}); claim {claim} was not deleted",
            c.name,
            reclaim_policy(&now)
        )));
    }
    // Again, just before: a server may have started since the first check.
    let pods = cluster.pods_using(claim).await?;
    if !pods.is_empty() {
        return Err(Stop::Refused(format!(
            "claim {claim} is in use by pod {} (started during adopt): stop it and run adopt again; the steps above are done and stay",
            pods.join(", pod ")
        )));
    }
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    if pvc.metadata.deletion_timestamp.is_none() {
        match cluster.delete_claim(claim, &uid).await {
            Ok(()) => {}
            Err(e) if e.is_conflict() => {
                return Err(Stop::Failed(format!(
                    "claim {claim} changed while adopting (another object by that name?); run adopt again"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let deadline = Instant::now() + args.claim_timeout;
    loop {
        match cluster.claim(claim).await? {
            None => return Ok(()),
            Some(p) if p.metadata.uid.as_deref() != Some(uid.as_str()) => return Ok(()),
            Some(p) if Instant::now() >= deadline => {
                return Err(Stop::Failed(format!(
                    "claim {claim} is still being deleted after {}s (finalizers: {}; a pod may still use it); run adopt again once it is gone",
                    args.claim_timeout.as_secs(),
                    p.metadata.finalizers.unwrap_or_default().join(", ")
                )));
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Step 5: the old PV object, only while it is still Retain (deleting a
/// Delete PV can make its driver delete the storage).
async fn delete_old_pv(cluster: &Cluster, c: &Candidate) -> Result<(), Stop> {
    let Some(now) = cluster.pv(&c.name).await? else {
        return Ok(());
    };
    if reclaim_policy(&now) != "Retain" {
        return Err(Stop::Failed(format!(
            "PV {} is {} again, not Retain: it was not deleted; set it to Retain and run adopt again",
            c.name,
            reclaim_policy(&now)
        )));
    }
    match cluster.delete_pv(&c.name, &pv_uid(&c.old)).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_conflict() => Err(Stop::Failed(format!(
            "PV {} was replaced by another object of that name while adopting; run adopt again",
            c.name
        ))),
        Err(e) => Err(e.into()),
    }
}

async fn create_claim(
    cluster: &Cluster,
    pvc: &PersistentVolumeClaim,
    c: &Candidate,
    claim: &ClaimName,
) -> Result<(), Stop> {
    match cluster.create_claim(pvc).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() => Err(Stop::Failed(format!(
            "claim {claim} was created by someone else after the old one was deleted (JupyterHub?); it is not bound to {}. Stop the user's server, delete that claim if it holds nothing, and run adopt again",
            c.new_name
        ))),
        Err(e) => Err(e.into()),
    }
}

fn render(r: &AdoptReport, args: &AdoptArgs) -> String {
    let mut t = String::new();
    if r.dry_run {
        t.push_str(
            "DRY RUN: nothing was changed; run again with --apply to take the steps marked \"would do\".\n\n",
        );
    }
    if r.volumes.is_empty() {
        t.push_str(&format!(
            "Nothing to adopt: no PV of driver {} or in-tree NFS volume of a configured array is left{}; nothing was changed.\n",
            args.from_driver,
            match r.already_adopted.len() {
                0 => String::new(),
                n => format!(" ({n} adopted earlier, below)"),
            }
        ));
    } else {
        let rows: Vec<Vec<String>> = r
            .volumes
            .iter()
            .map(|v| {
                vec![
                    v.pv.clone(),
                    match v.kind {
                        Kind::Csi => args.from_driver.clone(),
                        Kind::Nfs => "in-tree nfs".into(),
                    },
                    v.claim.clone().unwrap_or_else(|| "-".into()),
                    format!("{}/{}", v.array, v.file_system),
                    v.new_pv.clone(),
                    v.status.text().into(),
                ]
            })
            .collect();
        t.push_str(&table(
            &["PV", "FROM", "CLAIM", "FILE SYSTEM", "NEW PV", "STATUS"],
            &rows,
        ));
        for v in &r.volumes {
            t.push_str(&format!(
                "\n{} -> {} (volume handle {}):\n",
                v.pv, v.new_pv, v.volume_handle
            ));
            for (i, st) in v.steps.iter().enumerate() {
                t.push_str(&format!("  {}. {:<11} {}\n", i + 1, st.state.text(), st.action));
            }
            if let Some(why) = &v.reason {
                t.push_str(&format!("  {}: {why}\n", v.status.text()));
            }
            for n in &v.notes {
                t.push_str(&format!("  note: {n}\n"));
            }
        }
    }
    if !r.skipped.is_empty() {
        t.push_str(&format!("\nNot adopted ({}):\n", r.skipped.len()));
        for k in &r.skipped {
            t.push_str(&format!("  {}: {}\n", k.pv, k.reason));
        }
    }
    if !r.already_adopted.is_empty() {
        t.push_str(&format!("\nAdopted earlier ({}):\n", r.already_adopted.len()));
        for d in &r.already_adopted {
            t.push_str(&format!(
                "  {} (from {}, claim {})\n",
                d.pv,
                d.from,
                d.claim.as_deref().unwrap_or("-")
            ));
        }
    }
    if args.reclaim_policy == "Retain" && r.volumes.iter().any(|v| v.kind == Kind::Csi) {
        t.push_str(&format!(
            "\nThe new PVs of {}'s volumes are Retain: deleting a claim later leaves its file system on the array (--reclaim-policy Delete: soft-deleted, as for this driver's own volumes).\n",
            args.from_driver
        ));
    }
    if r.volumes.is_empty() {
        return t;
    }
    let count = |st: Status| r.volumes.iter().filter(|v| v.status == st).count();
    t.push_str(&format!(
        "\n{} volumes: {} {}, {} already adopted, {} refused, {} failed\n",
        r.volumes.len(),
        if r.dry_run {
            count(Status::Planned)
        } else {
            count(Status::Adopted)
        },
        if r.dry_run { "to adopt" } else { "adopted" },
        count(Status::AlreadyAdopted),
        count(Status::Refused),
        count(Status::Failed),
    ));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_names_are_deterministic_valid_and_short() {
        assert_eq!(new_pv_name("pvc-1234"), "fbcsi-pvc-1234");
        let long = format!("a{}", "-b".repeat(200));
        let n = new_pv_name(&long);
        assert!(n.len() <= 253 && is_k8s_name(&n), "{n}");
        assert_eq!(n, new_pv_name(&long));
    }

    #[test]
    fn names_a_csi_pv_may_give() {
        let csi = CSIPersistentVolumeSource {
            driver: "pure-csi".into(),
            volume_handle: "k8s-pvc-1".into(),
            volume_attributes: Some(BTreeMap::from([
                ("backend".into(), "file".into()),
                ("storage.kubernetes.io/csiProvisionerIdentity".into(), "x".into()),
                ("exportPath".into(), "/k8s-pvc-1".into()),
                ("fsName".into(), "other".into()),
                ("nfsEndpoint".into(), "10.0.0.5".into()),
            ])),
            ..Default::default()
        };
        let names: Vec<String> = csi_names(&csi).iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["k8s-pvc-1", "other"]);
        assert_eq!(csi_server_hint(&csi).as_deref(), Some("10.0.0.5"));
        let csi = CSIPersistentVolumeSource {
            volume_handle: "fb1:k8s-pvc-2".into(),
            ..Default::default()
        };
        let names: Vec<String> = csi_names(&csi).iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["k8s-pvc-2"]);
    }

    #[test]
    fn the_record_keeps_the_users_metadata_not_the_binding() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "claim-alice", "namespace": "jhub", "uid": "u1",
                "labels": {"component": "singleuser-storage"},
                "annotations": {"hub.jupyter.org/username": "alice",
                    "pv.kubernetes.io/bind-completed": "yes",
                    "volume.beta.kubernetes.io/storage-provisioner": "pure-csi",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}},
                "storageClassName": "pure-file", "volumeName": "pvc-1"},
        }))
        .unwrap();
        let r = ClaimRecord::of(&pvc);
        assert_eq!(r.uid, "u1");
        assert_eq!(
            r.annotations,
            BTreeMap::from([("hub.jupyter.org/username".into(), "alice".into())])
        );
        assert_eq!(r.labels["component"], "singleuser-storage");
        assert_eq!(r.storage.as_deref(), Some("10Gi"));
        let back: ClaimRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
