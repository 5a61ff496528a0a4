//! The Kubernetes side, read-only apart from `recover --apply` and `adopt
//! --apply`: the PersistentVolumes of this driver, the claims bound to them
//! and the VolumeAttachments naming them, fetched once per command through
//! the `kube` client (a kubeconfig file, `$KUBECONFIG`, `~/.kube/config` or
//! the in-cluster service account) and handed to callers as plain data
//! ([`ClusterFacts`]), so the logic that joins them with the array can be
//! tested without a cluster and the controller can reuse it later. `adopt`
//! also reads every PV (any driver, in-tree NFS), one claim at a time, the
//! pods of a namespace, and writes single objects (patch, create, delete with
//! a uid precondition).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde::Serialize;

use crate::volume::VolumeId;

/// How long one API request may take: an unreachable cluster must not hold
/// up the array-side answer for long.
const API_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong reaching the Kubernetes API; kube's error is the source.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `place`: the kubeconfig file, when one was named.
    #[error("no usable Kubernetes configuration: {}{source}", place.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Config {
        place: Option<std::path::PathBuf>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// kube's message stops at "client error (SendRequest)": the cause
    /// (connection refused, TLS, DNS) is in its sources, shown here too.
    #[error("the Kubernetes API did not answer: {what}: {}", flat(source))]
    Unreachable {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// The connection could not be made earlier; every use after sees why.
    #[error(transparent)]
    NotConnected(std::sync::Arc<ClusterError>),
    #[error("the Kubernetes API refused {what}: {reason}")]
    Refused {
        what: String,
        reason: String,
        /// The HTTP status the API server answered.
        code: u16,
    },
}

impl ClusterError {
    /// The API server answered 409: the object exists, or a precondition
    /// (uid) no longer holds.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ClusterError::Refused { code: 409, .. })
    }
}

/// A claim reference: namespace and name.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ClaimName {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ClaimName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Whether `s` can name a Kubernetes object (a node, a claim, a
/// namespace). Checked before a name goes into an API path.
pub fn is_object_name(s: &str) -> bool {
    crate::volume::rules::is_object_name(s)
}

/// A claim reference that is not `namespace/name`; the text is quoted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimNameError {
    #[error("{0:?} is not namespace/name")]
    NoSlash(String),
    #[error("{text:?}: {part:?} is not a Kubernetes name (lower-case letters, digits, '-', '.')")]
    BadName { text: String, part: String },
}

impl std::str::FromStr for ClaimName {
    type Err = ClaimNameError;
    /// `namespace/name`, both DNS-1123 labels.
    fn from_str(s: &str) -> Result<Self, ClaimNameError> {
        let (ns, name) = s
            .split_once('/')
            .ok_or_else(|| ClaimNameError::NoSlash(s.to_string()))?;
        for part in [ns, name] {
            if !is_object_name(part) {
                return Err(ClaimNameError::BadName {
                    text: s.to_string(),
                    part: part.to_string(),
                });
            }
        }
        Ok(Self {
            namespace: ns.into(),
            name: name.into(),
        })
    }
}

/// One PersistentVolume of this driver.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PvInfo {
    pub name: String,
    pub volume_handle: String,
    pub claim: Option<ClaimName>,
    pub phase: Option<String>,
    pub storage_class: Option<String>,
    pub reclaim_policy: Option<String>,
    pub capacity: Option<String>,
    pub volume_attributes: BTreeMap<String, String>,
    /// Mounted read-only wherever it is used: every access mode is
    /// ReadOnlyMany, or the CSI source says readOnly.
    pub read_only: bool,
}

impl PvInfo {
    /// The array and file system the handle names (`None` for the default array).
    pub fn file_system(&self) -> Option<(Option<String>, String)> {
        let id: VolumeId = self.volume_handle.parse().ok()?;
        Some((id.array().map(|a| a.to_string()), id.fs_name().to_string()))
    }
}

/// One PersistentVolumeClaim.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PvcInfo {
    pub claim: ClaimName,
    pub volume_name: Option<String>,
    pub phase: Option<String>,
    pub storage_class: Option<String>,
    pub volume_attributes_class: Option<String>,
}

/// One VolumeAttachment of this driver.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttachmentInfo {
    pub pv: Option<String>,
    pub node: String,
    pub attached: bool,
}

/// What the cluster says, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClusterFacts {
    /// This driver's PersistentVolumes.
    pub pvs: Vec<PvInfo>,
    pub pvcs: Vec<PvcInfo>,
    /// This driver's VolumeAttachments.
    pub attachments: Vec<AttachmentInfo>,
}

impl ClusterFacts {
    pub fn pv(&self, name: &str) -> Option<&PvInfo> {
        self.pvs.iter().find(|p| p.name == name)
    }

    pub fn pvc(&self, claim: &ClaimName) -> Option<&PvcInfo> {
        self.pvcs.iter().find(|p| &p.claim == claim)
    }

    /// The PV whose handle names `fs_name` on `array` (a handle without an
    /// array names the default one, `default_array`).
    pub fn pv_for_fs(&self, array: &str, default_array: &str, fs_name: &str) -> Option<&PvInfo> {
        self.pvs.iter().find(|p| {
            p.file_system()
                .is_some_and(|(a, f)| f == fs_name && a.as_deref().unwrap_or(default_array) == array)
        })
    }

    /// The PVs by the file system their handle names, for a join over many
    /// file systems: [`Self::pv_for_fs`] per file system scans every PV,
    /// which is quadratic at thousands of volumes.
    pub fn pv_index(&self) -> PvIndex<'_> {
        let mut index = PvIndex::default();
        for (pos, pv) in self.pvs.iter().enumerate() {
            let Ok(id) = pv.volume_handle.parse::<VolumeId>() else {
                continue;
            };
            // The first PV wins, as with a scan in order.
            let array = id.array().map(|a| a.to_string());
            index
                .by_name
                .entry((array, id.fs_name().to_string()))
                .or_insert((pos, pv));
            if let VolumeId::Managed { fs_id, .. } = &id {
                index.by_id.entry(fs_id.to_string()).or_insert(pv);
            }
        }
        index
    }

    /// The nodes a PV is attached to (attachRequired drivers only).
    pub fn attached_nodes(&self, pv: &str) -> Vec<&str> {
        self.attachments
            .iter()
            .filter(|a| a.attached && a.pv.as_deref() == Some(pv))
            .map(|a| a.node.as_str())
            .collect()
    }
}

/// [`ClusterFacts::pv_index`]: PVs by (array in the handle, file-system
/// name), with their position in the listing, and managed PVs by the
/// file-system id their handle records.
#[derive(Default)]
pub struct PvIndex<'a> {
    by_name: HashMap<(Option<String>, String), (usize, &'a PvInfo)>,
    by_id: HashMap<String, &'a PvInfo>,
}

impl<'a> PvIndex<'a> {
    /// As [`ClusterFacts::pv_for_fs`].
    pub fn pv_for_fs(&self, array: &str, default_array: &str, fs_name: &str) -> Option<&'a PvInfo> {
        let named = self.by_name.get(&(Some(array.to_string()), fs_name.to_string()));
        let unnamed = (array == default_array)
            .then(|| self.by_name.get(&(None, fs_name.to_string())))
            .flatten();
        // Both forms name it: the one listed first, as a scan finds.
        [named, unnamed]
            .into_iter()
            .flatten()
            .min_by_key(|(pos, _)| *pos)
            .map(|(_, pv)| *pv)
    }

    /// The PV whose managed handle records file-system id `fs_id`.
    pub fn pv_for_fs_id(&self, fs_id: &str) -> Option<&'a PvInfo> {
        self.by_id.get(fs_id).copied()
    }
}

/// A connection to the Kubernetes API.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
}

/// kube's error and its causes joined by ": ", each once.
fn flat(e: &kube::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

fn api_error(what: &str, e: kube::Error) -> ClusterError {
    match e {
        kube::Error::Api(s) => ClusterError::Refused {
            what: what.into(),
            reason: format!("{} ({})", s.message, s.code),
            code: s.code,
        },
        source => ClusterError::Unreachable {
            what: what.into(),
            source: Box::new(source),
        },
    }
}

/// Objects per list page: a cluster with thousands of PVs answers in
/// pieces, and the API server never holds one huge answer for us.
const PAGE: u32 = 500;

/// Waits on 429/503/504, as the server asks (`retryAfterSeconds`, else 1 s),
/// in all at most this long; then the error stands.
const RETRY_BUDGET: Duration = Duration::from_secs(5);

/// Runs `call` again while the API server answers "too many requests" or
/// "unavailable", within [`RETRY_BUDGET`].
async fn retrying<T, F, Fut>(mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut waited = Duration::ZERO;
    loop {
        match call().await {
            Err(kube::Error::Api(s)) if matches!(s.code, 429 | 503 | 504) => {
                let hint = s
                    .details
                    .as_ref()
                    .map(|d| d.retry_after_seconds)
                    .filter(|s| *s > 0)
                    .map(|s| Duration::from_secs(s.into()))
                    .unwrap_or(Duration::from_secs(1));
                if waited + hint > RETRY_BUDGET {
                    return Err(kube::Error::Api(s));
                }
                tokio::time::sleep(hint).await;
                waited += hint;
            }
            other => return other,
        }
    }
}

/// What `keep` makes of every object of `api`, listed in pages. Each page
/// is reduced before the next is read, so a listing of thousands of PVs
/// never holds more than one page of whole objects. A continue token the
/// server has forgotten (410 Gone: the listing took longer than its cache
/// keeps it) starts the listing again, twice at most.
async fn list_all<K, T>(
    api: &Api<K>,
    what: &str,
    keep: impl Fn(K) -> Option<T>,
) -> Result<Vec<T>, ClusterError>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut restarts = 0;
    'listing: loop {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut lp = ListParams::default().limit(PAGE);
            if let Some(t) = &token {
                lp = lp.continue_token(t);
            }
            match retrying(|| api.list(&lp)).await {
                Ok(page) => {
                    items.extend(page.items.into_iter().filter_map(&keep));
                    match page.metadata.continue_ {
                        Some(t) if !t.is_empty() => token = Some(t),
                        _ => return Ok(items),
                    }
                }
                Err(kube::Error::Api(s)) if s.code == 410 && token.is_some() && restarts < 2 => {
                    restarts += 1;
                    tracing::debug!(what, "the list's continue token expired; listing again");
                    continue 'listing;
                }
                Err(e) => return Err(api_error(what, e)),
            }
        }
    }
}

impl Cluster {
    /// Connects with `kubeconfig`, or kube's inference (`$KUBECONFIG`,
    /// `~/.kube/config`, the in-cluster account). Nothing is sent yet.
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Self, ClusterError> {
        let mut config = match kubeconfig {
            Some(path) => {
                let bad = |e: kube::config::KubeconfigError| ClusterError::Config {
                    place: Some(path.to_path_buf()),
                    source: e.into(),
                };
                let kc = kube::config::Kubeconfig::read_from(path).map_err(bad)?;
                kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(bad)?
            }
            None => kube::Config::infer().await.map_err(|e| ClusterError::Config {
                place: None,
                source: e.into(),
            })?,
        };
        config.connect_timeout = Some(API_TIMEOUT);
        config.read_timeout = Some(API_TIMEOUT);
        // kube's own retry may wait up to 15 times, as long as the server
        // asks: far longer than a CSI call may take. [`retrying`] bounds it.
        config.default_retry = false;
        let client = kube::Client::try_from(config).map_err(|e| ClusterError::Config {
            place: None,
            source: e.into(),
        })?;
        Ok(Self { client })
    }

    /// The API server's version: a cheap request that tells whether the
    /// API answers at all.
    pub async fn version(&self) -> Result<String, ClusterError> {
        self.client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| api_error("reading the server version", e))
    }

    /// This driver's PVs and attachments, and every claim.
    pub async fn facts(&self, driver: &str) -> Result<ClusterFacts, ClusterError> {
        Ok(ClusterFacts {
            pvs: self.driver_pvs(driver).await?,
            pvcs: list_all(
                &Api::<PersistentVolumeClaim>::all(self.client.clone()),
                "listing PersistentVolumeClaims",
                |pvc| pvc_info(&pvc),
            )
            .await?,
            attachments: list_all(
                &Api::<VolumeAttachment>::all(self.client.clone()),
                "listing VolumeAttachments",
                |va| (va.spec.attacher == driver).then(|| attachment_info(&va)),
            )
            .await?,
        })
    }

    /// A node's InternalIP addresses; `None` when there is no such node.
    pub async fn node_addresses(&self, name: &str) -> Result<Option<Vec<IpAddr>>, ClusterError> {
        let api = Api::<Node>::all(self.client.clone());
        Ok(retrying(|| api.get_opt(name))
            .await
            .map_err(|e| api_error(&format!("reading Node {name}"), e))?
            .map(|n| internal_ips(&n)))
    }

    /// Every node's InternalIP addresses, by node name.
    pub async fn all_node_addresses(&self) -> Result<BTreeMap<String, Vec<IpAddr>>, ClusterError> {
        Ok(
            list_all(&Api::<Node>::all(self.client.clone()), "listing Nodes", |n| {
                Some((n.metadata.name.clone()?, internal_ips(&n)))
            })
            .await?
            .into_iter()
            .collect(),
        )
    }

    /// This driver's VolumeAttachments that are wanted: not being deleted.
    pub async fn live_attachments(&self, driver: &str) -> Result<Vec<AttachmentInfo>, ClusterError> {
        list_all(
            &Api::<VolumeAttachment>::all(self.client.clone()),
            "listing VolumeAttachments",
            |va| {
                (va.spec.attacher == driver && va.metadata.deletion_timestamp.is_none())
                    .then(|| attachment_info(&va))
            },
        )
        .await
    }

    /// This driver's PersistentVolumes.
    pub async fn driver_pvs(&self, driver: &str) -> Result<Vec<PvInfo>, ClusterError> {
        list_all(
            &Api::<PersistentVolume>::all(self.client.clone()),
            "listing PersistentVolumes",
            |pv| pv_info(&pv, driver),
        )
        .await
    }

    /// Creates a PersistentVolume and then its claim.
    pub async fn create_pv_and_claim(
        &self,
        pv: &PersistentVolume,
        pvc: &PersistentVolumeClaim,
    ) -> Result<(), ClusterError> {
        self.create_pv(pv).await?;
        self.create_claim(pvc).await?;
        Ok(())
    }

    /// Every PersistentVolume, whatever its driver or volume source.
    pub async fn all_pvs(&self) -> Result<Vec<PersistentVolume>, ClusterError> {
        list_all(
            &Api::<PersistentVolume>::all(self.client.clone()),
            "listing PersistentVolumes",
            Some,
        )
        .await
    }

    /// One PersistentVolume, `None` when there is none by that name.
    pub async fn pv(&self, name: &str) -> Result<Option<PersistentVolume>, ClusterError> {
        Api::<PersistentVolume>::all(self.client.clone())
            .get_opt(name)
            .await
            .map_err(|e| api_error(&format!("reading PersistentVolume {name}"), e))
    }

    /// One claim, `None` when there is none by that name.
    pub async fn claim(&self, claim: &ClaimName) -> Result<Option<PersistentVolumeClaim>, ClusterError> {
        Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &claim.namespace)
            .get_opt(&claim.name)
            .await
            .map_err(|e| api_error(&format!("reading claim {claim}"), e))
    }

    /// The pods (`namespace/name`) that mount `claim` and have not finished
    /// (any phase but Succeeded or Failed: a Pending pod is about to use it).
    pub async fn pods_using(&self, claim: &ClaimName) -> Result<Vec<String>, ClusterError> {
        list_all(
            &Api::<Pod>::namespaced(self.client.clone(), &claim.namespace),
            &format!("listing the pods of namespace {}", claim.namespace),
            |p| {
                let finished = matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                );
                (pod_uses_claim(&p, &claim.name) && !finished).then(|| {
                    format!(
                        "{}/{}",
                        claim.namespace,
                        p.metadata.name.as_deref().unwrap_or("?")
                    )
                })
            },
        )
        .await
    }

    /// Applies a JSON merge patch to a PersistentVolume; answers the result.
    pub async fn merge_patch_pv(
        &self,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<PersistentVolume, ClusterError> {
        Api::<PersistentVolume>::all(self.client.clone())
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|e| api_error(&format!("patching PersistentVolume {name}"), e))
    }

    pub async fn create_pv(&self, pv: &PersistentVolume) -> Result<PersistentVolume, ClusterError> {
        let name = pv.metadata.name.as_deref().unwrap_or_default();
        Api::<PersistentVolume>::all(self.client.clone())
            .create(&PostParams::default(), pv)
            .await
            .map_err(|e| api_error(&format!("creating PersistentVolume {name}"), e))
    }

    pub async fn create_claim(
        &self,
        pvc: &PersistentVolumeClaim,
    ) -> Result<PersistentVolumeClaim, ClusterError> {
        let ns = pvc.metadata.namespace.clone().unwrap_or_default();
        let name = pvc.metadata.name.as_deref().unwrap_or_default();
        Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), pvc)
            .await
            .map_err(|e| api_error(&format!("creating claim {ns}/{name}"), e))
    }

    /// Deletes the claim if it is still the object with `uid` (a claim
    /// recreated under the same name in between is left alone: 409).
    pub async fn delete_claim(&self, claim: &ClaimName, uid: &str) -> Result<(), ClusterError> {
        Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &claim.namespace)
            .delete(&claim.name, &uid_precondition(uid))
            .await
            .map(|_| ())
            .map_err(|e| api_error(&format!("deleting claim {claim}"), e))
    }

    /// Deletes the PersistentVolume if it is still the object with `uid`.
    pub async fn delete_pv(&self, name: &str, uid: &str) -> Result<(), ClusterError> {
        Api::<PersistentVolume>::all(self.client.clone())
            .delete(name, &uid_precondition(uid))
            .await
            .map(|_| ())
            .map_err(|e| api_error(&format!("deleting PersistentVolume {name}"), e))
    }
}

fn uid_precondition(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    }
}

fn pod_uses_claim(pod: &Pod, claim: &str) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|vols| {
            vols.iter().any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == claim)
            })
        })
}

fn pv_info(pv: &PersistentVolume, driver: &str) -> Option<PvInfo> {
    let spec = pv.spec.as_ref()?;
    let csi = spec.csi.as_ref().filter(|c| c.driver == driver)?;
    Some(PvInfo {
        name: pv.metadata.name.clone()?,
        volume_handle: csi.volume_handle.clone(),
        claim: spec.claim_ref.as_ref().and_then(|c| {
            Some(ClaimName {
                namespace: c.namespace.clone()?,
                name: c.name.clone()?,
            })
        }),
        phase: pv.status.as_ref().and_then(|s| s.phase.clone()),
        storage_class: spec.storage_class_name.clone(),
        reclaim_policy: spec.persistent_volume_reclaim_policy.clone(),
        capacity: spec
            .capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.clone()),
        volume_attributes: csi.volume_attributes.clone().unwrap_or_default(),
        read_only: csi.read_only == Some(true)
            || spec
                .access_modes
                .as_ref()
                .is_some_and(|m| !m.is_empty() && m.iter().all(|m| m == "ReadOnlyMany")),
    })
}

/// The addresses NFS clients on a node come from: its InternalIPs.
fn attachment_info(va: &VolumeAttachment) -> AttachmentInfo {
    AttachmentInfo {
        pv: va.spec.source.persistent_volume_name.clone(),
        node: va.spec.node_name.clone(),
        attached: va.status.as_ref().is_some_and(|s| s.attached),
    }
}

fn internal_ips(node: &Node) -> Vec<IpAddr> {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

fn pvc_info(pvc: &PersistentVolumeClaim) -> Option<PvcInfo> {
    let spec = pvc.spec.as_ref();
    Some(PvcInfo {
        claim: ClaimName {
            namespace: pvc.metadata.namespace.clone()?,
            name: pvc.metadata.name.clone()?,
        },
        volume_name: spec.and_then(|s| s.volume_name.clone()),
        phase: pvc.status.as_ref().and_then(|s| s.phase.clone()),
        storage_class: spec.and_then(|s| s.storage_class_name.clone()),
        volume_attributes_class: spec.and_then(|s| s.volume_attributes_class_name.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names() {
        let c: ClaimName = "jhub/claim-alice".parse().unwrap();
        assert_eq!(c.to_string(), "jhub/claim-alice");
        for bad in ["claim", "/x", "x/", "A/b", "a/b c", "a/-b"] {
            assert!(bad.parse::<ClaimName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn facts_join_by_handle() {
        let pv = |name: &str, handle: &str| PvInfo {
            name: name.into(),
            volume_handle: handle.into(),
            claim: None,
            phase: None,
            storage_class: None,
            reclaim_policy: None,
            capacity: None,
            volume_attributes: BTreeMap::new(),
            read_only: false,
        };
        let facts = ClusterFacts {
            pvs: vec![pv("pv-a", "fb01/k8s-pv-a/1a2b"), pv("datasets", "datasets")],
            ..Default::default()
        };
        assert_eq!(facts.pv_for_fs("fb01", "fb01", "k8s-pv-a").unwrap().name, "pv-a");
        assert_eq!(
            facts.pv_for_fs("fb01", "fb01", "datasets").unwrap().name,
            "datasets"
        );
        assert!(facts.pv_for_fs("fb02", "fb01", "datasets").is_none());
        assert!(facts.pv_for_fs("fb01", "fb01", "k8s-pv-b").is_none());
    }

    #[test]
    fn the_index_finds_what_a_scan_finds() {
        let pv = |name: &str, handle: &str| PvInfo {
            name: name.into(),
            volume_handle: handle.into(),
            claim: None,
            phase: None,
            storage_class: None,
            reclaim_policy: None,
            capacity: None,
            volume_attributes: BTreeMap::new(),
            read_only: false,
        };
        let facts = ClusterFacts {
            pvs: vec![
                pv("pv-a", "fb01/k8s-pv-a/1a2b"),
                pv("datasets", "datasets"),
                // Names the same file system as the one before it: a scan
                // finds the first.
                pv("datasets-again", "fb01/datasets"),
                pv("pv-c", "fb02/k8s-pv-c/3c4d"),
                pv("other-driver", "not a handle"),
            ],
            ..Default::default()
        };
        let index = facts.pv_index();
        for (array, default, fs) in [
            ("fb01", "fb01", "k8s-pv-a"),
            ("fb01", "fb01", "datasets"),
            ("fb02", "fb01", "datasets"),
            ("fb01", "fb02", "datasets"),
            ("fb02", "fb01", "k8s-pv-c"),
            ("fb01", "fb01", "k8s-pv-c"),
            ("fb01", "fb01", "k8s-pv-b"),
        ] {
            assert_eq!(
                index.pv_for_fs(array, default, fs).map(|p| &p.name),
                facts.pv_for_fs(array, default, fs).map(|p| &p.name),
                "{array} {default} {fs}"
            );
        }
        assert_eq!(index.pv_for_fs_id("3c4d").unwrap().name, "pv-c");
        assert!(index.pv_for_fs_id("ffff").is_none());
    }
}
