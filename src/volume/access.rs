//! The volume capabilities the driver serves: NFS file systems mounted as
//! file systems, in any CSI access mode. Checked alike by the controller and
//! the node.

use crate::csi;

/// Why a volume capability is unsupported.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("a volume capability needs an access type (mount)")]
    NoAccessType,
    #[error(
        "block volumes are not supported: FlashBlade volumes are NFS file systems (use volumeMode: Filesystem)"
    )]
    Block,
    #[error("fs_type {0:?} is not supported: volumes are NFS file systems")]
    FsType(String),
    #[error("a volume capability needs a known access mode")]
    AccessMode,
}

/// Why a capability is unsupported, if it is.
pub fn check_capability(cap: &csi::VolumeCapability) -> std::result::Result<(), CapabilityError> {
    use csi::volume_capability::AccessType;
    match &cap.access_type {
        None => return Err(CapabilityError::NoAccessType),
        Some(AccessType::Block(_)) => return Err(CapabilityError::Block),
        Some(AccessType::Mount(m)) => {
            if !matches!(m.fs_type.as_str(), "" | "nfs" | "nfs4") {
                return Err(CapabilityError::FsType(m.fs_type.clone()));
            }
        }
    }
    let mode = cap.access_mode.as_ref().map_or(0, |m| m.mode);
    if !(1..=7).contains(&mode) {
        return Err(CapabilityError::AccessMode);
    }
    Ok(())
}

/// Whether a capability asks for reading only (a dataset version accepts
/// nothing else).
pub fn is_reader_only(cap: &csi::VolumeCapability) -> bool {
    use crate::csi::volume_capability::access_mode::Mode;
    matches!(
        cap.access_mode.as_ref().map(|m| m.mode()),
        Some(Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly)
    )
}
