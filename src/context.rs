//! The volume_context keys the controller writes and the node reads. The node
//! gets everything it needs to mount from here: it never asks the array.

/// NFS server (data VIP) to mount from.
pub(crate) const SERVER: &str = "server";
/// Export path on the server, e.g. `/k8s-pvc-1`.
pub(crate) const SHARE: &str = "share";
/// `3`, `4.1` or `3,4.1` (preference order for the mount).
pub(crate) const NFS_VERSIONS: &str = "nfsVersions";
/// The array the volume lives on (informational).
pub(crate) const ARRAY: &str = "array";
/// The file-system name (informational).
pub(crate) const FS_NAME: &str = "fsName";
/// On a static volume: the suffix of the snapshot to mount instead of the
/// live file system (a dataset version, always read-only). Written by an
/// admin, never by the controller.
pub(crate) const SNAPSHOT: &str = "snapshot";
/// `nodes` when the volume is exported only to the nodes it is published
/// to (ControllerPublishVolume adds a rule per node); absent otherwise.
pub(crate) const EXPORT_TO: &str = "exportTo";
/// With `exportTo: nodes`: the options of each node's rule besides rw/ro
/// (which the access mode decides), e.g. `root_squash`.
pub(crate) const EXPORT_OPTIONS: &str = "exportOptions";
/// `uid:gid` the volume's root directory gets at its first NodeStage, while
/// it is still empty.
pub(crate) const ROOT_OWNER: &str = "rootOwner";
/// Octal mode (e.g. `2775`) the volume's root directory gets at its first
/// NodeStage, while it is still empty.
pub(crate) const ROOT_MODE: &str = "rootMode";
