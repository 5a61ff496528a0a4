//! CSI Controller service. Provisioning lands with the controller issue; until
//! then every RPC but ControllerGetCapabilities answers UNIMPLEMENTED and the
//! capability list is empty, which is exactly what is implemented.

use tonic::{Request, Response, Status};

use crate::csi::{self, controller_server::Controller};

pub struct ControllerService;

/// The capabilities this controller implements.
pub fn capabilities() -> Vec<csi::ControllerServiceCapability> {
    Vec::new()
}

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not implemented by this driver version"))
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_volume(
        &self,
        _r: Request<csi::CreateVolumeRequest>,
    ) -> Result<Response<csi::CreateVolumeResponse>, Status> {
        Err(unimplemented("CreateVolume"))
    }
    async fn delete_volume(
        &self,
        _r: Request<csi::DeleteVolumeRequest>,
    ) -> Result<Response<csi::DeleteVolumeResponse>, Status> {
        Err(unimplemented("DeleteVolume"))
    }
    async fn controller_publish_volume(
        &self,
        _r: Request<csi::ControllerPublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerPublishVolumeResponse>, Status> {
        Err(unimplemented("ControllerPublishVolume"))
    }
    async fn controller_unpublish_volume(
        &self,
        _r: Request<csi::ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<csi::ControllerUnpublishVolumeResponse>, Status> {
        Err(unimplemented("ControllerUnpublishVolume"))
    }
    async fn validate_volume_capabilities(
        &self,
        _r: Request<csi::ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<csi::ValidateVolumeCapabilitiesResponse>, Status> {
        Err(unimplemented("ValidateVolumeCapabilities"))
    }
    async fn list_volumes(
        &self,
        _r: Request<csi::ListVolumesRequest>,
    ) -> Result<Response<csi::ListVolumesResponse>, Status> {
        Err(unimplemented("ListVolumes"))
    }
    async fn get_capacity(
        &self,
        _r: Request<csi::GetCapacityRequest>,
    ) -> Result<Response<csi::GetCapacityResponse>, Status> {
        Err(unimplemented("GetCapacity"))
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
        _r: Request<csi::CreateSnapshotRequest>,
    ) -> Result<Response<csi::CreateSnapshotResponse>, Status> {
        Err(unimplemented("CreateSnapshot"))
    }
    async fn delete_snapshot(
        &self,
        _r: Request<csi::DeleteSnapshotRequest>,
    ) -> Result<Response<csi::DeleteSnapshotResponse>, Status> {
        Err(unimplemented("DeleteSnapshot"))
    }
    async fn list_snapshots(
        &self,
        _r: Request<csi::ListSnapshotsRequest>,
    ) -> Result<Response<csi::ListSnapshotsResponse>, Status> {
        Err(unimplemented("ListSnapshots"))
    }
    async fn get_snapshot(
        &self,
        _r: Request<csi::GetSnapshotRequest>,
    ) -> Result<Response<csi::GetSnapshotResponse>, Status> {
        Err(unimplemented("GetSnapshot"))
    }
    async fn controller_expand_volume(
        &self,
        _r: Request<csi::ControllerExpandVolumeRequest>,
    ) -> Result<Response<csi::ControllerExpandVolumeResponse>, Status> {
        Err(unimplemented("ControllerExpandVolume"))
    }
    async fn controller_get_volume(
        &self,
        _r: Request<csi::ControllerGetVolumeRequest>,
    ) -> Result<Response<csi::ControllerGetVolumeResponse>, Status> {
        Err(unimplemented("ControllerGetVolume"))
    }
    async fn controller_modify_volume(
        &self,
        _r: Request<csi::ControllerModifyVolumeRequest>,
    ) -> Result<Response<csi::ControllerModifyVolumeResponse>, Status> {
        Err(unimplemented("ControllerModifyVolume"))
    }
}
