//! Generated CSI v1.12 types and services, plus helpers to log requests
//! without their secrets.

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    tonic::include_proto!("csi.v1");
}
pub use generated::*;

/// The compiled descriptor of proto/csi.proto (custom options included).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/csi_descriptor.bin"));

/// Request types that carry a `csi_secret` map. `without_secrets` returns a
/// copy whose secret values are replaced, for logging.
pub trait StripSecrets: Clone {
    fn without_secrets(&self) -> Self;
}

macro_rules! strip_secrets {
    ($($ty:ident),* $(,)?) => {
        $(impl StripSecrets for $ty {
            fn without_secrets(&self) -> Self {
                let mut copy = self.clone();
                for value in copy.secrets.values_mut() {
                    *value = "***stripped***".to_string();
                }
                copy
            }
        })*
    };
}

strip_secrets!(
    CreateVolumeRequest,
    DeleteVolumeRequest,
    ControllerPublishVolumeRequest,
    ControllerUnpublishVolumeRequest,
    ValidateVolumeCapabilitiesRequest,
    ControllerModifyVolumeRequest,
    CreateSnapshotRequest,
    DeleteSnapshotRequest,
    ListSnapshotsRequest,
    GetSnapshotRequest,
    ControllerExpandVolumeRequest,
    NodeStageVolumeRequest,
    NodePublishVolumeRequest,
    NodeExpandVolumeRequest,
);

macro_rules! no_secrets {
    ($($ty:ident),* $(,)?) => {
        $(impl StripSecrets for $ty {
            fn without_secrets(&self) -> Self { self.clone() }
        })*
    };
}

no_secrets!(
    GetPluginInfoRequest,
    GetPluginCapabilitiesRequest,
    ProbeRequest,
    ListVolumesRequest,
    GetCapacityRequest,
    ControllerGetCapabilitiesRequest,
    ControllerGetVolumeRequest,
    NodeUnstageVolumeRequest,
    NodeUnpublishVolumeRequest,
    NodeGetVolumeStatsRequest,
    NodeGetCapabilitiesRequest,
    NodeGetInfoRequest,
);

/// Logs a request at debug level with its secrets stripped.
pub fn log_request<T: StripSecrets + std::fmt::Debug>(method: &str, req: &T) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        tracing::debug!(request = ?req.without_secrets(), "{method} request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripped_requests_do_not_print_secret_values() {
        let mut req = CreateVolumeRequest {
            name: "pvc-1".into(),
            ..Default::default()
        };
        req.secrets
            .insert("password".into(), "hunter2-very-secret".into());
        let shown = format!("{:?}", req.without_secrets());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("pvc-1"));
        assert!(shown.contains("***stripped***"));
        // The original is untouched.
        assert_eq!(req.secrets["password"], "hunter2-very-secret");
    }
}
