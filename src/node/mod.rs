//! CSI Node service. NodeGetInfo and NodeGetCapabilities are served now; the
//! mount RPCs land with the node issue and answer UNIMPLEMENTED until then.

use tonic::{Request, Response, Status};

use crate::csi::{self, node_server::Node};

pub struct NodeService {
    node_id: String,
}

impl NodeService {
    pub fn new(node_id: String) -> Self {
        Self { node_id }
    }
}

/// The node capabilities this plugin implements.
pub fn capabilities() -> Vec<csi::NodeServiceCapability> {
    Vec::new()
}

fn unimplemented(method: &str) -> Status {
    Status::unimplemented(format!("{method} is not implemented by this driver version"))
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn node_stage_volume(
        &self,
        _r: Request<csi::NodeStageVolumeRequest>,
    ) -> Result<Response<csi::NodeStageVolumeResponse>, Status> {
        Err(unimplemented("NodeStageVolume"))
    }
    async fn node_unstage_volume(
        &self,
        _r: Request<csi::NodeUnstageVolumeRequest>,
    ) -> Result<Response<csi::NodeUnstageVolumeResponse>, Status> {
        Err(unimplemented("NodeUnstageVolume"))
    }
    async fn node_publish_volume(
        &self,
        _r: Request<csi::NodePublishVolumeRequest>,
    ) -> Result<Response<csi::NodePublishVolumeResponse>, Status> {
        Err(unimplemented("NodePublishVolume"))
    }
    async fn node_unpublish_volume(
        &self,
        _r: Request<csi::NodeUnpublishVolumeRequest>,
    ) -> Result<Response<csi::NodeUnpublishVolumeResponse>, Status> {
        Err(unimplemented("NodeUnpublishVolume"))
    }
    async fn node_get_volume_stats(
        &self,
        _r: Request<csi::NodeGetVolumeStatsRequest>,
    ) -> Result<Response<csi::NodeGetVolumeStatsResponse>, Status> {
        Err(unimplemented("NodeGetVolumeStats"))
    }
    async fn node_expand_volume(
        &self,
        _r: Request<csi::NodeExpandVolumeRequest>,
    ) -> Result<Response<csi::NodeExpandVolumeResponse>, Status> {
        Err(unimplemented("NodeExpandVolume"))
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
