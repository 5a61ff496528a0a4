//! Node-following exports (StorageClass `exportTo: nodes`): such a file
//! system is created with no export at all, ControllerPublishVolume adds
//! one rule per address of the node a pod needs it on, and
//! ControllerUnpublishVolume removes exactly those rules. Everything else
//! (range exports, static volumes) is published without touching the array.
//!
//! The array holds a file system's rules as one string; `nfs.add_rules` and
//! `nfs.remove_rules` edit it in place on the array, and this controller
//! also serialises its own edits per file system (read, decide, edit), so
//! concurrent publishes to many nodes never lose a rule.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::ControllerService;
use super::params::{DEFAULT_NODE_OPTIONS, parse_export_options};
use crate::cluster::{Cluster, ClusterError, PvInfo};
use crate::context;
use crate::csi;
use crate::error::{Error, Result};
use crate::flashblade::ArrayClient;
use crate::telemetry::record_volume_id;
use crate::volume::VolumeId;
use crate::volume::access::{check_capability, is_reader_only};
use crate::volume::exports::{client_is, entries, node_rule};

/// How long a node's addresses and the list of this driver's PVs are reused.
const CLUSTER_TTL: Duration = Duration::from_secs(30);

/// What the controller reads from the Kubernetes API for node-following
/// exports: node addresses (cached; the last known addresses of a node stay
/// known after it is deleted, so its rules can still be removed) and which
/// volumes are exported to nodes (from their PersistentVolumes).
pub(crate) struct ClusterView {
    driver: String,
    kubeconfig: Option<PathBuf>,
    cluster: tokio::sync::OnceCell<std::result::Result<Cluster, Arc<ClusterError>>>,
    nodes: Mutex<HashMap<String, (Instant, Vec<IpAddr>)>>,
    pvs: Mutex<Option<(Instant, Arc<Vec<PvInfo>>)>>,
    /// Set once this controller has published a node-following volume.
    node_following: std::sync::atomic::AtomicBool,
}

impl ClusterView {
    pub(crate) fn new(driver: String, kubeconfig: Option<PathBuf>) -> Self {
        Self {
            driver,
            kubeconfig,
            cluster: tokio::sync::OnceCell::new(),
            nodes: Mutex::new(HashMap::new()),
            pvs: Mutex::new(None),
            node_following: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn saw_node_following(&self) {
        self.node_following
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this controller has published a node-following volume.
    pub(crate) fn node_following_seen(&self) -> bool {
        self.node_following.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) async fn cluster(&self) -> std::result::Result<&Cluster, ClusterError> {
        self.cluster
            .get_or_init(|| async {
                Cluster::connect(self.kubeconfig.as_deref())
                    .await
                    .map_err(Arc::new)
            })
            .await
            .as_ref()
            .map_err(|e| ClusterError::NotConnected(e.clone()))
    }

    /// Logs, once, whether the Kubernetes API answers and what depends on
    /// it, so an operator sees at start what a missing kubeconfig costs.
    pub(crate) async fn log_access(&self) {
        let answer = match self.cluster().await {
            Ok(c) => c.version().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(version) => tracing::info!(
                kubernetes = %version,
                "Kubernetes API reachable: node-following exports, ListVolumes' ids of PersistentVolumes and the export reconcile can work"
            ),
            Err(reason) => tracing::warn!(
                %reason,
                "Kubernetes API not reachable: volumes with exportTo: nodes cannot be published, ListVolumes reports ids in their default form, the export reconcile waits; range-exported and static volumes are not affected"
            ),
        }
    }

    /// A node's InternalIPs: `Ok(None)` when the API says there is no such
    /// node. Fresh from the API unless read within the TTL.
    async fn node(&self, name: &str) -> std::result::Result<Option<Vec<IpAddr>>, ClusterError> {
        if let Some((at, ips)) = self.nodes.lock().expect("nodes lock").get(name)
            && at.elapsed() < CLUSTER_TTL
        {
            return Ok(Some(ips.clone()));
        }
        let cluster = self.cluster().await?;
        match cluster.node_addresses(name).await {
            Ok(Some(ips)) => {
                self.remember(name, &ips);
                Ok(Some(ips))
            }
            other => other,
        }
    }

    fn remember(&self, name: &str, ips: &[IpAddr]) {
        self.nodes
            .lock()
            .expect("nodes lock")
            .insert(name.to_string(), (Instant::now(), ips.to_vec()));
    }

    /// The addresses a node had when last seen, however long ago.
    fn last_known(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.nodes
            .lock()
            .expect("nodes lock")
            .get(name)
            .map(|(_, ips)| ips.clone())
    }

    /// Every node's addresses, fresh, remembered for later.
    pub(crate) async fn all_nodes(&self) -> std::result::Result<BTreeMap<String, Vec<IpAddr>>, ClusterError> {
        let cluster = self.cluster().await?;
        let all = cluster.all_node_addresses().await?;
        for (name, ips) in &all {
            self.remember(name, ips);
        }
        Ok(all)
    }

    /// This driver's PVs, from a listing at most the TTL old (or a fresh
    /// one with `fresh`). ListVolumes and unpublish share it.
    pub(crate) async fn driver_pvs(
        &self,
        fresh: bool,
    ) -> std::result::Result<Arc<Vec<PvInfo>>, ClusterError> {
        if !fresh
            && let Some((at, pvs)) = &*self.pvs.lock().expect("pvs lock")
            && at.elapsed() < CLUSTER_TTL
        {
            return Ok(pvs.clone());
        }
        let cluster = self.cluster().await?;
        let pvs = Arc::new(cluster.driver_pvs(&self.driver).await?);
        *self.pvs.lock().expect("pvs lock") = Some((Instant::now(), pvs.clone()));
        Ok(pvs)
    }
}

/// One lock per file system, so this controller's read-decide-edit of its
/// rules never interleaves with another.
#[derive(Default)]
pub(crate) struct RuleLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl RuleLocks {
    pub(crate) async fn lock(&self, fs_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.0.lock().expect("rule locks");
            // Forget locks nobody holds or waits for.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(fs_id.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// Whether a volume context (or a PV's attributes) asks for node-following
/// exports, and with which options (checked again: a PV's attributes can be
/// written by hand).
fn node_options<'a>(get: impl Fn(&str) -> Option<&'a String>) -> Result<Option<String>> {
    match get(context::EXPORT_TO).map(String::as_str) {
        None | Some("rules") => Ok(None),
        Some("nodes") => Ok(Some(match get(context::EXPORT_OPTIONS) {
            Some(o) => parse_export_options(o)?,
            None => DEFAULT_NODE_OPTIONS.to_string(),
        })),
        Some(other) => Err(Error::invalid_argument(format!(
            "volume context {}={other:?} is invalid: expected rules or nodes",
            context::EXPORT_TO
        ))),
    }
}

/// A node id goes into a Kubernetes API path: it must be a node name (the
/// node plugin reports the node's name), never a path of its own.
fn check_node_id(node_id: &str) -> Result<()> {
    if crate::cluster::is_object_name(node_id) {
        return Ok(());
    }
    Err(Error::invalid_argument(format!(
        "node_id {} is not a Kubernetes node name (lower-case letters, digits, '-', '.')",
        crate::error::clip(node_id)
    )))
}

impl ControllerService {
    pub(super) async fn publish_impl(
        &self,
        req: csi::ControllerPublishVolumeRequest,
    ) -> Result<csi::ControllerPublishVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        if req.node_id.is_empty() {
            return Err(Error::invalid_argument("node_id is required"));
        }
        check_node_id(&req.node_id)?;
        let cap = req
            .volume_capability
            .as_ref()
            .ok_or_else(|| Error::invalid_argument("volume_capability is required"))?;
        check_capability(cap).map_err(Error::invalid)?;
        let options = node_options(|k| req.volume_context.get(k))?;
        record_volume_id(&req.volume_id);
        let vref: VolumeId = req.volume_id.parse().map_err(|why| {
            Error::not_found(format!("volume {} does not exist: {why}", req.volume_id)).because(why)
        })?;
        // The id records node-following exports; the context adds options
        // (and marks volumes whose ids predate the record).
        let options = match options {
            None if vref.is_to_nodes() => Some(DEFAULT_NODE_OPTIONS.to_string()),
            o => o,
        };
        if options.is_some() {
            self.cluster_view.saw_node_following();
        }
        let _guard = self.guard(format!("publish:{}:{}", req.volume_id, req.node_id))?;
        let none = csi::ControllerPublishVolumeResponse::default();

        // The node must exist wherever the API can say so.
        let ips = match self.cluster_view.node(&req.node_id).await {
            Ok(Some(ips)) => Some(ips),
            Ok(None) => {
                return Err(Error::not_found(format!(
                    "node {} does not exist (no Node object of that name)",
                    req.node_id
                )));
            }
            Err(why) => {
                if options.is_some() {
                    return Err(Error::failed_precondition(format!(
                        "cannot find the addresses of node {}: {why}; node-following exports need the controller to read Nodes from the Kubernetes API",
                        req.node_id
                    ))
                    .because(why));
                }
                // A controller serving one node itself (`--mode all`, as in
                // conformance runs) knows its only node without the API.
                if self.config.mode == crate::config::Mode::All
                    && let Some(own) = &self.config.node_id
                    && *own != req.node_id
                {
                    return Err(Error::not_found(format!(
                        "node {} does not exist: this plugin serves node {own} only (the Kubernetes API cannot be read: {why})",
                        req.node_id
                    ))
                    .because(why));
                }
                tracing::info!(node = %req.node_id, volume_id = %req.volume_id, reason = %why,
                    "cannot tell whether the node exists; this volume does not need it, so it is published");
                None
            }
        };
        let (array, fs_id) = match &vref {
            VolumeId::Managed { array, fs_id, .. } => (array, fs_id),
            VolumeId::Static { array, fs_name, .. } => {
                // An imported volume keeps the admin's export, always.
                let array = array
                    .as_ref()
                    .map(|a| a.as_str())
                    .or_else(|| self.config.default_array().map(|a| a.name.as_str()));
                let client = self.client(array.unwrap_or_default())?;
                return match client.find_file_system(fs_name.as_str()).await? {
                    Some(fs) if !fs.destroyed => Ok(none),
                    _ => Err(Error::not_found(format!(
                        "volume {} does not exist",
                        req.volume_id
                    ))),
                };
            }
        };
        let client = self.client(array.as_str())?;
        let Some(options) = options else {
            let fs = client.find_file_system_by_id(fs_id.as_str()).await?;
            return match fs {
                Some(fs) if !fs.destroyed => Ok(none),
                _ => Err(Error::not_found(format!(
                    "volume {} does not exist",
                    req.volume_id
                ))),
            };
        };
        let ips = ips.unwrap_or_default();
        if ips.is_empty() {
            return Err(Error::failed_precondition(format!(
                "node {} has no InternalIP address to export to",
                req.node_id
            )));
        }
        let rw = !(req.readonly || is_reader_only(cap));
        let _fs_lock = self.rule_locks.lock(fs_id.as_str()).await;
        let fs = client
            .find_file_system_by_id(fs_id.as_str())
            .await?
            .filter(|fs| !fs.destroyed)
            .ok_or_else(|| Error::not_found(format!("volume {} does not exist", req.volume_id)))?;
        let rules = fs.nfs.rules.clone().unwrap_or_default();
        let mut add = Vec::new();
        for ip in &ips {
            let want = node_rule(*ip, rw, &options);
            let present: Vec<_> = entries(&rules).filter(|e| client_is(e.client, *ip)).collect();
            if present.iter().any(|e| e.text == want) {
                continue;
            }
            if let Some(other) = present.first() {
                return Err(Error::already_exists(format!(
                    "volume {} is already published to node {} with another access ({}); unpublish it there first",
                    req.volume_id, req.node_id, other.text
                )));
            }
            add.push(want);
        }
        if !add.is_empty() {
            let added = add.join(" ");
            client
                .patch_file_system(
                    fs_id.as_str(),
                    json!({"nfs": {"add_rules": added}}),
                    vec![],
                    format!("export file system {} to node {}", fs.name, req.node_id),
                )
                .await?;
            tracing::info!(fs = %fs.name, node = %req.node_id, rules = %added, "exported to node");
        }
        Ok(none)
    }

    pub(super) async fn unpublish_impl(
        &self,
        req: csi::ControllerUnpublishVolumeRequest,
    ) -> Result<csi::ControllerUnpublishVolumeResponse> {
        if req.volume_id.is_empty() {
            return Err(Error::invalid_argument("volume_id is required"));
        }
        if !req.node_id.is_empty() {
            check_node_id(&req.node_id)?;
        }
        record_volume_id(&req.volume_id);
        let done = csi::ControllerUnpublishVolumeResponse::default();
        // No volume of this driver has such an id: nothing is published.
        let Ok(vref) = req.volume_id.parse::<VolumeId>() else {
            return Ok(done);
        };
        let VolumeId::Managed { array, fs_id, .. } = &vref else {
            return Ok(done);
        };
        // Only a volume exported to nodes has node rules of ours (its id
        // says so); a range export may hold an admin's rule for one host,
        // which is not ours. No Kubernetes API is needed to tell.
        if !vref.is_to_nodes() {
            return Ok(done);
        }
        let _guard = self.guard(format!("publish:{}:{}", req.volume_id, req.node_id))?;
        let ips = if req.node_id.is_empty() {
            None
        } else {
            match self.cluster_view.node(&req.node_id).await {
                Ok(Some(ips)) => Some(ips),
                Ok(None) | Err(_) => match self.cluster_view.last_known(&req.node_id) {
                    Some(ips) => Some(ips),
                    None => {
                        // Gone before this controller ever saw it: the
                        // reconcile removes rules of addresses no node has.
                        tracing::warn!(node = %req.node_id, volume_id = %req.volume_id,
                            "node unknown; its export rule (if any) is left to the reconcile");
                        return Ok(done);
                    }
                },
            }
        };
        let Some(client) = self.arrays.get(array.as_str()) else {
            return Err(Error::not_found(format!(
                "array {array:?} is not configured on this controller"
            )));
        };
        remove_node_rules(
            &self.rule_locks,
            client,
            fs_id.as_str(),
            ips.as_deref(),
            &req.node_id,
        )
        .await?;
        Ok(done)
    }
}

/// Removes the single-host rules of `ips` (all of them for `None`) from the
/// file system `fs_id`; a missing or destroyed file system has none to
/// remove.
pub(crate) async fn remove_node_rules(
    locks: &RuleLocks,
    client: &ArrayClient,
    fs_id: &str,
    ips: Option<&[IpAddr]>,
    node: &str,
) -> Result<()> {
    let _fs_lock = locks.lock(fs_id).await;
    let Some(fs) = client.find_file_system_by_id(fs_id).await? else {
        return Ok(());
    };
    if fs.destroyed {
        return Ok(());
    }
    let rules = fs.nfs.rules.clone().unwrap_or_default();
    let gone: Vec<&str> = entries(&rules)
        .filter(|e| match ips {
            Some(ips) => ips.iter().any(|ip| client_is(e.client, *ip)),
            None => e.client.parse::<IpAddr>().is_ok(),
        })
        .map(|e| e.text)
        .collect();
    if gone.is_empty() {
        return Ok(());
    }
    let removed = gone.join(" ");
    client
        .patch_file_system(
            fs_id,
            json!({"nfs": {"remove_rules": removed}}),
            vec![],
            format!("stop exporting file system {} to node {node}", fs.name),
        )
        .await?;
    tracing::info!(fs = %fs.name, node = %node, rules = %removed, "unexported from node");
    Ok(())
}

/// What one reconcile pass changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// (file system, rule) added back for a live VolumeAttachment.
    pub added: Vec<(String, String)>,
    /// (file system, rule) removed: no node has its address.
    pub removed: Vec<(String, String)>,
    /// Edits left for the next pass (the per-pass limit was reached).
    pub deferred: usize,
}

/// The edits one reconcile pass may make; the rest wait for the next.
pub(crate) const RECONCILE_MAX_EDITS: usize = 50;

/// What the periodic reconcile works with (cheap clones of the
/// controller's parts, so it runs on its own task).
#[derive(Clone)]
pub struct ExportReconciler {
    driver: String,
    arrays: BTreeMap<crate::volume::ArrayName, Arc<ArrayClient>>,
    view: Arc<ClusterView>,
    locks: Arc<RuleLocks>,
}

impl ControllerService {
    /// See [`ClusterView::log_access`].
    pub(crate) fn log_cluster_access(&self) -> impl Future<Output = ()> + Send + 'static {
        let view = self.cluster_view.clone();
        async move { view.log_access().await }
    }

    pub fn export_reconciler(&self) -> ExportReconciler {
        ExportReconciler {
            driver: self.config.driver_name.clone(),
            arrays: self.arrays.clone(),
            view: self.cluster_view.clone(),
            locks: self.rule_locks.clone(),
        }
    }

    /// Runs [`ExportReconciler::run`] every `interval` until dropped. A
    /// controller without API access logs that once and keeps trying.
    pub(crate) fn export_reconcile(&self, interval: Duration) -> impl Future<Output = ()> + Send + 'static {
        let r = self.export_reconciler();
        async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut said = false;
            loop {
                tick.tick().await;
                match tokio::time::timeout(interval, r.run(RECONCILE_MAX_EDITS)).await {
                    Ok(Ok(done)) => {
                        said = false;
                        if done.deferred > 0 {
                            tracing::info!(
                                deferred = done.deferred,
                                "reconcile: edits left for the next pass"
                            );
                        }
                    }
                    Ok(Err(e)) if !said => {
                        said = true;
                        // Only node-following volumes need the API; a
                        // controller that never served one says it quietly.
                        if r.view.node_following_seen() {
                            tracing::warn!(reason = %e, "reconcile of node exports cannot run (retrying every interval)");
                        } else {
                            tracing::debug!(reason = %e, "reconcile of node exports cannot run (retrying every interval)");
                        }
                    }
                    Ok(Err(_)) => {}
                    Err(_) => tracing::warn!(
                        "reconcile of node exports took longer than its interval; stopped this pass"
                    ),
                }
            }
        }
    }
}

/// Why a reconcile pass stopped: the cluster or an array could not be read
/// or changed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Array(#[from] crate::flashblade::Error),
}

impl ExportReconciler {
    /// One pass of drift repair for node-following exports: re-adds the rule
    /// of every live VolumeAttachment whose node lost it, and removes
    /// single-host rules of addresses no node has any more. At most
    /// `max_edits` rule edits; the rest wait for the next pass.
    pub async fn run(&self, max_edits: usize) -> std::result::Result<Reconciled, ReconcileError> {
        let view = &self.view;
        let cluster = view.cluster().await?;
        let pvs = cluster.driver_pvs(&self.driver).await?;
        // Range-exported volumes need nothing more from the API (and their
        // installs grant no VolumeAttachment writes): stop here without them.
        let pvs: Vec<_> = pvs
            .into_iter()
            .filter(|pv| matches!(node_options(|k| pv.volume_attributes.get(k)), Ok(Some(_))))
            .collect();
        if pvs.is_empty() {
            return Ok(Reconciled::default());
        }
        let nodes = view.all_nodes().await?;
        let attachments = cluster.live_attachments(&self.driver).await?;
        let known: Vec<IpAddr> = nodes.values().flatten().copied().collect();
        let mut out = Reconciled::default();
        for pv in &pvs {
            let Ok(Some(options)) = node_options(|k| pv.volume_attributes.get(k)) else {
                continue;
            };
            let Ok(VolumeId::Managed { array, fs_id, .. }) = pv.volume_handle.parse::<VolumeId>() else {
                continue;
            };
            let Some(client) = self.arrays.get(array.as_str()) else {
                continue;
            };
            let wanted: Vec<IpAddr> = attachments
                .iter()
                .filter(|a| a.pv.as_deref() == Some(pv.name.as_str()))
                .filter_map(|a| nodes.get(&a.node))
                .flatten()
                .copied()
                .collect();
            let _fs_lock = self.locks.lock(fs_id.as_str()).await;
            let fs = match client.find_file_system_by_id(fs_id.as_str()).await {
                Ok(Some(fs)) if !fs.destroyed => fs,
                Ok(_) => continue,
                Err(e) => return Err(e.into()),
            };
            let rules = fs.nfs.rules.clone().unwrap_or_default();
            let add: Vec<String> = wanted
                .iter()
                .filter(|ip| !entries(&rules).any(|e| client_is(e.client, **ip)))
                .map(|ip| node_rule(*ip, !pv.read_only, &options))
                .collect();
            let remove: Vec<&str> = entries(&rules)
                .filter(|e| e.client.parse::<IpAddr>().is_ok_and(|ip| !known.contains(&ip)))
                .map(|e| e.text)
                .collect();
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            if max_edits <= out.added.len() + out.removed.len() {
                out.deferred += add.len() + remove.len();
                continue;
            }
            let mut body = serde_json::Map::new();
            if !add.is_empty() {
                body.insert("add_rules".into(), json!(add.join(" ")));
            }
            if !remove.is_empty() {
                body.insert("remove_rules".into(), json!(remove.join(" ")));
            }
            client
                .patch_file_system(
                    fs_id.as_str(),
                    json!({ "nfs": body }),
                    vec![],
                    format!("repair the node exports of file system {}", fs.name),
                )
                .await?;
            for r in add {
                tracing::info!(fs = %fs.name, rule = %r, pv = %pv.name, "reconcile: export rule re-added for a live VolumeAttachment");
                out.added.push((fs.name.clone(), r));
            }
            for r in remove {
                tracing::info!(fs = %fs.name, rule = %r, pv = %pv.name, "reconcile: export rule removed, no node has its address");
                out.removed.push((fs.name.clone(), r.to_string()));
            }
        }
        Ok(out)
    }
}
