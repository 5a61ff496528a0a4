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

mod locate;
mod steps;

use locate::{candidate, locate_csi, locate_nfs};
use steps::adopt_one;

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

/// The five steps of an adoption, in the order they are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepKind {
    Retain,
    CreatePv,
    DeleteClaim,
    CreateClaim,
    DeleteOldPv,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `retain`, `create-pv`, `delete-claim`, `create-claim`, `delete-old-pv`.
    pub step: StepKind,
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
                reason: reason.to_string(),
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
    use super::locate::{csi_names, csi_server_hint};
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
