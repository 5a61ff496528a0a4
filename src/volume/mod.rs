//! The driver's domain vocabulary, shared by config, controller and node:
//! the names it and the array agree on ([`names`]), volume and snapshot ids
//! ([`id`]), how it names what it creates ([`naming`]), export rules
//! ([`exports`]), the volume capabilities it serves ([`access`]) and where a
//! dataset version (a snapshot) appears in its file system ([`version`]). Depends
//! on nothing else in the crate but the generated CSI types and the message
//! helpers of `text` (tests/layers.rs keeps it so).

pub mod access;
pub mod exports;
pub mod id;
pub mod labels;
pub mod names;
pub mod naming;
pub mod rules;
pub mod version;

pub use access::CapabilityError;
pub use exports::ExportRuleError;
pub use id::{
    DeletePolicy, ExportRecord, MalformedId, NfsVersions, NodeOptions, SnapshotId, SnapshotIdError, VolumeId,
};
pub use labels::{LabelError, Labels, Selector};
pub use names::{ArrayName, FsName, Host, NameError, NamePrefix, ObjectId, PolicyName, SnapshotSuffix};
pub use rules::RuleError;
