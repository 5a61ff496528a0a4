//! CSI Controller service: provisioning FlashBlade file systems.
//!
//! Handlers are thin: validate the request (before any lookup), take the
//! in-flight guard for the volume or name, call the array client, build the
//! response. Errors become gRPC codes in `crate::error`.

mod handles;
mod modify;
pub mod params;
mod placement;
mod publish;
mod snapshots;
mod usage;
mod volumes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::config::Config;
use crate::csi::{self, controller_server::Controller};
use crate::error::{Error, Result};
use crate::flashblade::ArrayClient;
use crate::inflight::{Guard, InFlight};
use crate::metrics::Metrics;
use crate::volume::ArrayName;

/// The default size of a volume whose request gives no capacity.
pub(crate) const DEFAULT_VOLUME_BYTES: i64 = 10 << 30;

pub struct ControllerService {
    config: Arc<Config>,
    arrays: BTreeMap<ArrayName, Arc<ArrayClient>>,
    inflight: InFlight,
    placement: placement::Placement,
    pv_handles: handles::PvHandles,
    cluster_view: Arc<publish::ClusterView>,
    rule_locks: Arc<publish::RuleLocks>,
    metrics: Arc<Metrics>,
}

/// The capabilities this controller implements.
pub(crate) fn capabilities() -> Vec<csi::ControllerServiceCapability> {
    use csi::controller_service_capability::{Rpc, Type, rpc};
    [
        rpc::Type::CreateDeleteVolume,
        rpc::Type::ListVolumes,
        rpc::Type::GetCapacity,
        rpc::Type::ExpandVolume,
        rpc::Type::CreateDeleteSnapshot,
        rpc::Type::ListSnapshots,
        rpc::Type::CloneVolume,
        rpc::Type::ModifyVolume,
        rpc::Type::PublishUnpublishVolume,
    ]
    .into_iter()
    .map(|t| csi::ControllerServiceCapability {
        r#type: Some(Type::Rpc(Rpc { r#type: t as i32 })),
    })
    .collect()
}

impl ControllerService {
    pub(crate) fn new(
        config: Arc<Config>,
        arrays: BTreeMap<ArrayName, Arc<ArrayClient>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        // One view of the cluster (one connection, one PV listing) for
        // ListVolumes and the node exports.
        let cluster_view = Arc::new(publish::ClusterView::new(
            config.driver_name.clone(),
            config.kubeconfig.clone(),
        ));
        Self {
            pv_handles: handles::PvHandles::new(cluster_view.clone()),
            cluster_view,
            rule_locks: Arc::default(),
            config,
            arrays,
            inflight: InFlight::new(),
            placement: placement::Placement::default(),
            metrics,
        }
    }

    fn client(&self, array: &str) -> Result<&Arc<ArrayClient>> {
        self.arrays
            .get(array)
            .ok_or_else(|| Error::not_found(format!("array {array:?} is not configured on this controller")))
    }

    /// The time one RPC may take: the caller's deadline (less a margin, so
    /// the answer arrives before the caller gives up) when it sends one,
    /// else the configured `rpc` timeout.
    fn budget<T>(&self, r: &Request<T>) -> Duration {
        crate::deadline::caller_budget(r.metadata()).unwrap_or(self.config.timeouts.rpc)
    }

    fn guard(&self, key: String) -> Result<Guard> {
        self.inflight.try_acquire(key.clone()).ok_or_else(|| {
            self.metrics.aborted("controller", &key);
            Error::aborted(format!("an operation on {key} is already in progress"))
        })
    }
}

/// Logs a failed RPC once, at the boundary, and converts it.
fn finish<T>(method: &str, r: Result<T>) -> Result<Response<T>, Status> {
    match r {
        Ok(v) => Ok(Response::new(v)),
        Err(e) => {
            if e.is_failure() {
                tracing::warn!(error = %crate::error::chain(&e), "{method} failed")
            } else {
                tracing::info!(error = %crate::error::chain(&e), "{method} refused")
            }
            Err(e.into())
        }
    }
}

/// Runs one RPC within its budget. Past it the work is dropped where it
/// stands (in-flight guards released, array requests cancelled); anything
/// the array did meanwhile is found by name when the caller retries.
async fn within<T>(
    budget: Duration,
    method: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<Response<T>, Status> {
    match tokio::time::timeout(budget, work).await {
        Ok(r) => finish(method, r),
        Err(_) => finish(
            method,
            Err(Error::deadline_exceeded(format!(
                "{method} did not finish within its {:.1}s budget; a retry resumes it",
                budget.as_secs_f64()
            ))),
        ),
    }
}

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not supported by the FlashBlade driver"))
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        r: Request<csi::CreateVolumeRequest>,
    ) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("CreateVolume", &req);
        within(budget, "CreateVolume", self.create_volume_impl(req)).await
    }

    async fn delete_volume(
        &self,
        r: Request<csi::DeleteVolumeRequest>,
    ) -> Result<Response<csi::DeleteVolumeResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("DeleteVolume", &req);
        within(budget, "DeleteVolume", self.delete_volume_impl(req)).await
    }

    async fn controller_publish_volume(
        &self,
        r: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerPublishVolumeResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("ControllerPublishVolume", &req);
        within(budget, "ControllerPublishVolume", self.publish_impl(req)).await
    }

    async fn controller_unpublish_volume(
        &self,
        r: Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerUnpublishVolumeResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("ControllerUnpublishVolume", &req);
        within(budget, "ControllerUnpublishVolume", self.unpublish_impl(req)).await
    }

    async fn validate_volume_capabilities(
        &self,
        r: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<csi::ValidateVolumeCapabilitiesResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("ValidateVolumeCapabilities", &req);
        within(budget, "ValidateVolumeCapabilities", self.validate_impl(req)).await
    }

    async fn list_volumes(
        &self,
        r: Request<csi::ListVolumesRequest>,
    ) -> Result<Response<csi::ListVolumesResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("ListVolumes", &req);
        within(budget, "ListVolumes", self.list_volumes_impl(req)).await
    }

    async fn get_capacity(
        &self,
        r: Request<csi::GetCapacityRequest>,
    ) -> Result<Response<csi::GetCapacityResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("GetCapacity", &req);
        within(budget, "GetCapacity", self.get_capacity_impl(req)).await
    }

    async fn controller_get_capabilities(
        &self,
        _r: Request<csi::ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<csi::ControllerGetCapabilitiesResponse>, Status> {
        Ok(Response::new(csi::ControllerGetCapabilitiesResponse {
            capabilities: capabilities(),
        }))
    }

    async fn create_snapshot(
        &self,
        r: Request<csi::CreateSnapshotRequest>,
    ) -> Result<Response<csi::CreateSnapshotResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("CreateSnapshot", &req);
        within(budget, "CreateSnapshot", self.create_snapshot_impl(req)).await
    }

    async fn delete_snapshot(
        &self,
        r: Request<csi::DeleteSnapshotRequest>,
    ) -> Result<Response<csi::DeleteSnapshotResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("DeleteSnapshot", &req);
        within(budget, "DeleteSnapshot", self.delete_snapshot_impl(req)).await
    }

    async fn list_snapshots(
        &self,
        r: Request<csi::ListSnapshotsRequest>,
    ) -> Result<Response<csi::ListSnapshotsResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("ListSnapshots", &req);
        within(budget, "ListSnapshots", self.list_snapshots_impl(req)).await
    }

    async fn get_snapshot(
        &self,
        _r: Request<csi::GetSnapshotRequest>,
    ) -> Result<Response<csi::GetSnapshotResponse>, Status> {
        Err(unimplemented("GetSnapshot"))
    }

    async fn controller_expand_volume(
        &self,
        r: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Result<Response<csi::ControllerExpandVolumeResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("ControllerExpandVolume", &req);
        within(budget, "ControllerExpandVolume", self.expand_impl(req)).await
    }

    async fn controller_get_volume(
        &self,
        _r: Request<csi::ControllerGetVolumeRequest>,
    ) -> Result<Response<csi::ControllerGetVolumeResponse>, Status> {
        Err(unimplemented("ControllerGetVolume"))
    }

    async fn controller_modify_volume(
        &self,
        r: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Result<Response<csi::ControllerModifyVolumeResponse>, Status> {
        let budget = self.budget(&r);
        let req = r.into_inner();
        csi::log_request("ControllerModifyVolume", &req);
        within(budget, "ControllerModifyVolume", self.modify_impl(req)).await
    }
}
