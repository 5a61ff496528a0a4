//! Volume and snapshot ids: one type each, one `FromStr` and one `Display`.
//!
//! - Managed volume: `<array>/<fs-name>/<fs-id>[/<flags>]`. The array's
//!   immutable file-system id lets the driver refuse a same-named file system
//!   it did not create; the optional last part records what the RPCs that
//!   get no parameters must know: a non-default delete policy (`e`
//!   eradicate, `r` retain), NFS versions other than both (`3` or `4` for
//!   4.1 alone: a soft delete keeps them in the tombstone for `recover`),
//!   and node-following exports (`n` with root_squash, `m` with
//!   no_root_squash, `o` with other options), in that order, e.g. `/e4m`.
//! - Static (imported) volume: `<fs-name>` or `<array>/<fs-name>`, written by
//!   hand by an admin. A version of one (the file system as it was at one of
//!   its snapshots, mounted read-only) adds the snapshot's suffix the way the
//!   array names snapshots: `<fs-name>.<suffix>` or `<array>/<fs-name>.<suffix>`.
//! - Snapshot: `<array>/<fs-name>.<suffix>/<snapshot-id>[/destroy]`, or the
//!   compact `<array>/.<suffix>/<snapshot-id>[/destroy]` when the full form
//!   would pass CSI's 128 bytes.

use std::fmt;
use std::str::FromStr;

use super::names::{ArrayName, FsName, NameError, ObjectId, SnapshotSuffix};
use super::naming::is_driver_suffix;

/// What DeleteVolume does with the file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeletePolicy {
    /// Soft delete: destroyed, recoverable until the array eradicates it.
    Destroy,
    /// Destroyed and eradicated at once: the data is gone.
    Eradicate,
    /// Left untouched on the array.
    Retain,
}

impl FromStr for DeletePolicy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "destroy" => Ok(Self::Destroy),
            "eradicate" => Ok(Self::Eradicate),
            "retain" => Ok(Self::Retain),
            _ => Err(()),
        }
    }
}

impl DeletePolicy {
    /// The volume-id marker of a non-default policy.
    fn marker(self) -> Option<&'static str> {
        match self {
            DeletePolicy::Destroy => None,
            DeletePolicy::Eradicate => Some("e"),
            DeletePolicy::Retain => Some("r"),
        }
    }
}

/// The NFS versions a file system serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NfsVersions {
    #[default]
    Both,
    V3,
    V41,
}

impl NfsVersions {
    /// From the file system's `v3_enabled` / `v4_1_enabled`; `None` for
    /// neither.
    pub fn from_flags(v3: bool, v41: bool) -> Option<Self> {
        match (v3, v41) {
            (true, true) => Some(Self::Both),
            (true, false) => Some(Self::V3),
            (false, true) => Some(Self::V41),
            (false, false) => None,
        }
    }

    /// (`v3_enabled`, `v4_1_enabled`).
    pub fn flags(self) -> (bool, bool) {
        match self {
            Self::Both => (true, true),
            Self::V3 => (true, false),
            Self::V41 => (false, true),
        }
    }

    /// The volume-id marker (none for both).
    fn marker(self) -> &'static str {
        match self {
            Self::Both => "",
            Self::V3 => "3",
            Self::V41 => "4",
        }
    }
}

impl fmt::Display for NfsVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Both => "3,4.1",
            Self::V3 => "3",
            Self::V41 => "4.1",
        })
    }
}

impl FromStr for NfsVersions {
    type Err = ();
    /// The StorageClass spelling: `3`, `4.1` or `3,4.1`.
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "3,4.1" => Ok(Self::Both),
            "3" => Ok(Self::V3),
            "4.1" => Ok(Self::V41),
            _ => Err(()),
        }
    }
}

/// The options of a node-following volume's rules, as far as a record
/// keeps them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NodeOptions {
    /// `root_squash` (the default).
    #[default]
    RootSquash,
    /// `no_root_squash` (the chart's homes: the node sets the root's owner).
    NoRootSquash,
    /// Any other options: the class says which.
    Other,
}

impl NodeOptions {
    pub fn of(options: &str) -> Self {
        match options {
            "root_squash" => Self::RootSquash,
            "no_root_squash" => Self::NoRootSquash,
            _ => Self::Other,
        }
    }

    /// The options text, when the record tells it.
    pub fn text(self) -> Option<&'static str> {
        match self {
            Self::RootSquash => Some("root_squash"),
            Self::NoRootSquash => Some("no_root_squash"),
            Self::Other => None,
        }
    }
}

/// How a managed volume is exported, as far as the array forgets it when
/// the volume is soft-deleted (it switches the protocols off): recorded in
/// the volume id, and by a soft delete in the tombstone's name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ExportRecord {
    pub versions: NfsVersions,
    /// Exported only to the nodes it is published to (`exportTo: nodes`):
    /// ControllerUnpublish removes the node's rule.
    pub to_nodes: bool,
    /// With `to_nodes`: the rules' options.
    pub options: NodeOptions,
}

/// A volume id (or static volume handle) that names nothing this driver
/// could have made; the message says why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedId(pub String);

/// What a volume id refers to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VolumeId {
    Managed {
        array: ArrayName,
        fs_name: FsName,
        fs_id: ObjectId,
        delete: DeletePolicy,
        export: ExportRecord,
    },
    Static {
        /// `None`: the default array.
        array: Option<ArrayName>,
        fs_name: FsName,
        /// A dataset version: the suffix of the snapshot to mount, read-only.
        version: Option<SnapshotSuffix>,
    },
}

impl VolumeId {
    pub fn fs_name(&self) -> &FsName {
        match self {
            VolumeId::Managed { fs_name, .. } | VolumeId::Static { fs_name, .. } => fs_name,
        }
    }

    pub fn array(&self) -> Option<&ArrayName> {
        match self {
            VolumeId::Managed { array, .. } => Some(array),
            VolumeId::Static { array, .. } => array.as_ref(),
        }
    }

    /// The snapshot suffix of a dataset version's handle.
    pub fn version(&self) -> Option<&SnapshotSuffix> {
        match self {
            VolumeId::Static { version, .. } => version.as_ref(),
            VolumeId::Managed { .. } => None,
        }
    }
}

impl VolumeId {
    /// The id of a managed volume, from the name and id the array gave its
    /// file system.
    pub fn managed(
        array: &ArrayName,
        fs_name: &str,
        fs_id: &str,
        delete: DeletePolicy,
    ) -> Result<Self, NameError> {
        Ok(VolumeId::Managed {
            array: array.clone(),
            fs_name: fs_name.parse()?,
            fs_id: fs_id.parse()?,
            delete,
            export: ExportRecord::default(),
        })
    }

    /// The same id with this export record.
    pub fn with_export(self, record: ExportRecord) -> Self {
        match self {
            VolumeId::Managed {
                array,
                fs_name,
                fs_id,
                delete,
                ..
            } => VolumeId::Managed {
                array,
                fs_name,
                fs_id,
                delete,
                export: record,
            },
            other => other,
        }
    }

    /// Whether ControllerPublish adds the node's export rule.
    pub fn is_to_nodes(&self) -> bool {
        matches!(
            self,
            VolumeId::Managed {
                export: ExportRecord { to_nodes: true, .. },
                ..
            }
        )
    }
}

impl fmt::Display for VolumeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeId::Managed {
                array,
                fs_name,
                fs_id,
                delete,
                export,
            } => {
                write!(f, "{array}/{fs_name}/{fs_id}")?;
                let flags = format!(
                    "{}{}{}",
                    delete.marker().unwrap_or(""),
                    export.versions.marker(),
                    match (export.to_nodes, export.options) {
                        (false, _) => "",
                        (true, NodeOptions::RootSquash) => "n",
                        (true, NodeOptions::NoRootSquash) => "m",
                        (true, NodeOptions::Other) => "o",
                    }
                );
                if flags.is_empty() {
                    Ok(())
                } else {
                    write!(f, "/{flags}")
                }
            }
            VolumeId::Static {
                array,
                fs_name,
                version,
            } => {
                if let Some(array) = array {
                    write!(f, "{array}/")?;
                }
                write!(f, "{fs_name}")?;
                match version {
                    Some(v) => write!(f, ".{v}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl FromStr for VolumeId {
    type Err = MalformedId;

    fn from_str(id: &str) -> Result<Self, MalformedId> {
        let parts: Vec<&str> = id.split('/').collect();
        let name_err = |e: super::names::NameError| MalformedId(e.to_string());
        // `<fs-name>[.<suffix>]`: a file-system name has no '.', so the first
        // one starts a version's snapshot suffix.
        let static_fs = |s: &str| -> Result<(FsName, Option<SnapshotSuffix>), MalformedId> {
            match s.split_once('.') {
                None => Ok((s.parse().map_err(name_err)?, None)),
                Some((fs, v)) => Ok((fs.parse().map_err(name_err)?, Some(v.parse().map_err(name_err)?))),
            }
        };
        match parts.as_slice() {
            [fs] => {
                let (fs_name, version) = static_fs(fs)?;
                Ok(VolumeId::Static {
                    array: None,
                    fs_name,
                    version,
                })
            }
            [array, fs] => {
                let (fs_name, version) = static_fs(fs)?;
                Ok(VolumeId::Static {
                    array: Some(array.parse().map_err(name_err)?),
                    fs_name,
                    version,
                })
            }
            [array, fs, fs_id, rest @ ..] if rest.len() <= 1 => {
                // One canonical spelling per meaning: the policy, then `n`.
                let flags = rest.first().copied().unwrap_or("");
                let bad = || {
                    MalformedId(format!(
                        "{} is not a volume id flag (e or r for the delete policy, 3 or 4 for the NFS version, n, m or o for node exports, in that order)",
                        crate::text::clip(flags)
                    ))
                };
                if rest.len() == 1 && flags.is_empty() {
                    return Err(bad());
                }
                let (rest_flags, to_nodes, options) = match flags.as_bytes().last() {
                    Some(b'n') => (&flags[..flags.len() - 1], true, NodeOptions::RootSquash),
                    Some(b'm') => (&flags[..flags.len() - 1], true, NodeOptions::NoRootSquash),
                    Some(b'o') => (&flags[..flags.len() - 1], true, NodeOptions::Other),
                    _ => (flags, false, NodeOptions::RootSquash),
                };
                let (policy, versions) = match rest_flags.as_bytes().last() {
                    Some(b'3') => (&rest_flags[..rest_flags.len() - 1], NfsVersions::V3),
                    Some(b'4') => (&rest_flags[..rest_flags.len() - 1], NfsVersions::V41),
                    _ => (rest_flags, NfsVersions::Both),
                };
                let delete = match policy {
                    "" => DeletePolicy::Destroy,
                    "e" => DeletePolicy::Eradicate,
                    "r" => DeletePolicy::Retain,
                    _ => return Err(bad()),
                };
                let export = ExportRecord {
                    versions,
                    to_nodes,
                    options,
                };
                Ok(VolumeId::Managed {
                    array: array.parse().map_err(name_err)?,
                    fs_name: fs.parse().map_err(name_err)?,
                    fs_id: fs_id.parse().map_err(name_err)?,
                    delete,
                    export,
                })
            }
            _ => Err(MalformedId(
                "expected <array>/<fs-name>/<fs-id>, <array>/<fs-name>[.<snapshot-suffix>] or <fs-name>[.<snapshot-suffix>]".into(),
            )),
        }
    }
}

/// The id of a snapshot this driver made.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotId {
    pub array: ArrayName,
    /// `None` in the compact form: the array's snapshot id alone finds it.
    pub fs_name: Option<FsName>,
    pub suffix: SnapshotSuffix,
    /// The array's snapshot id: the guard that this is the snapshot the id
    /// was made for, never a same-named one made later or by someone else.
    pub snap_id: ObjectId,
    /// DeleteSnapshot eradicates (default) or only destroys.
    pub eradicate: bool,
}

/// Why a snapshot id was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotIdError {
    /// Not shaped like any snapshot id: nothing it could name exists.
    #[error("{0}")]
    Malformed(String),
    /// Shaped like one, but not for a snapshot this driver made (an
    /// admin's or a policy's): the driver must not touch it.
    #[error("{0}")]
    NotOurs(String),
}

const DESTROY_ONLY: &str = "/destroy";

/// CSI's limit on ids.
const MAX_ID_BYTES: usize = 128;

impl SnapshotId {
    /// The id of snapshot `<fs_name>.<suffix>`, in the full form when it
    /// fits CSI's 128 bytes.
    pub fn new(
        array: ArrayName,
        fs_name: FsName,
        suffix: SnapshotSuffix,
        snap_id: ObjectId,
        eradicate: bool,
    ) -> Self {
        let tail = if eradicate { 0 } else { DESTROY_ONLY.len() };
        let full = array.len() + 1 + fs_name.len() + 1 + suffix.len() + 1 + snap_id.len() + tail;
        SnapshotId {
            fs_name: (full <= MAX_ID_BYTES).then_some(fs_name),
            array,
            suffix,
            snap_id,
            eradicate,
        }
    }

    /// The id of a snapshot, from the name (`<fs-name>.<suffix>`) and id the
    /// array gave it.
    pub fn of(array: &ArrayName, snap_name: &str, snap_id: &str, eradicate: bool) -> Result<Self, NameError> {
        let (fs, suffix) = snap_name.split_once('.').unwrap_or((snap_name, ""));
        Ok(Self::new(
            array.clone(),
            fs.parse()?,
            suffix.parse()?,
            snap_id.parse()?,
            eradicate,
        ))
    }

    /// `<fs-name>.<suffix>` when the id carries the file-system name.
    pub fn snap_name(&self) -> Option<String> {
        self.fs_name.as_ref().map(|f| format!("{f}.{}", self.suffix))
    }
}

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fs = self.fs_name.as_deref().unwrap_or("");
        write!(f, "{}/{fs}.{}/{}", self.array, self.suffix, self.snap_id)?;
        if !self.eradicate {
            f.write_str(DESTROY_ONLY)?;
        }
        Ok(())
    }
}

impl FromStr for SnapshotId {
    type Err = SnapshotIdError;

    fn from_str(id: &str) -> Result<Self, SnapshotIdError> {
        let malformed =
            || SnapshotIdError::Malformed(format!("{} is not a snapshot id", crate::text::clip(id)));
        let (rest, eradicate) = match id.strip_suffix(DESTROY_ONLY) {
            Some(r) => (r, false),
            None => (id, true),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (array, name, snap_id) = match parts.as_slice() {
            [a, n] => (*a, *n, None),
            [a, n, i] => (*a, *n, Some(*i)),
            _ => return Err(malformed()),
        };
        let (fs, suffix) = name.split_once('.').ok_or_else(malformed)?;
        let array: ArrayName = array.parse().map_err(|_| malformed())?;
        let fs_name: Option<FsName> = match fs {
            "" => None,
            fs => Some(fs.parse().map_err(|_| malformed())?),
        };
        let suffix: SnapshotSuffix = suffix.parse().map_err(|_| malformed())?;
        let snap_id: Option<ObjectId> = snap_id.map(str::parse).transpose().map_err(|_| malformed())?;
        let what = || format!("{} ({array}/{name})", crate::text::clip(id));
        if !is_driver_suffix(&suffix) {
            return Err(SnapshotIdError::NotOurs(format!(
                "snapshot {} was not made by this driver (its suffix is not one the driver generates); nothing was changed",
                what()
            )));
        }
        let Some(snap_id) = snap_id else {
            return Err(SnapshotIdError::NotOurs(format!(
                "snapshot id {} lacks the array's snapshot id, so the driver cannot tell it from a same-named snapshot; nothing was changed",
                what()
            )));
        };
        Ok(SnapshotId {
            array,
            fs_name,
            suffix,
            snap_id,
            eradicate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::naming::snapshot_suffix_for;

    fn n<T: FromStr>(s: &str) -> T
    where
        T::Err: fmt::Debug,
    {
        s.parse().unwrap()
    }

    #[test]
    fn volume_ids_round_trip_and_stay_short() {
        let id = VolumeId::Managed {
            array: n("fb01"),
            fs_name: n("k8s-pvc-1"),
            fs_id: n("4f0c2a8e-1d2b-4c3a-9e1f-0a1b2c3d4e5f"),
            delete: DeletePolicy::Destroy,
            export: ExportRecord::default(),
        };
        assert_eq!(
            id.to_string(),
            "fb01/k8s-pvc-1/4f0c2a8e-1d2b-4c3a-9e1f-0a1b2c3d4e5f"
        );
        assert_eq!(id.to_string().parse::<VolumeId>().unwrap(), id);
        for p in [DeletePolicy::Eradicate, DeletePolicy::Retain] {
            let id = format!("fb01/x/abc/{}", p.marker().unwrap());
            match id.parse::<VolumeId>().unwrap() {
                VolumeId::Managed { delete, .. } => assert_eq!(delete, p),
                other => panic!("{other:?}"),
            }
        }
        for (flags, delete, versions, to_nodes, options) in [
            (
                "n",
                DeletePolicy::Destroy,
                NfsVersions::Both,
                true,
                NodeOptions::RootSquash,
            ),
            (
                "en",
                DeletePolicy::Eradicate,
                NfsVersions::Both,
                true,
                NodeOptions::RootSquash,
            ),
            (
                "r4n",
                DeletePolicy::Retain,
                NfsVersions::V41,
                true,
                NodeOptions::RootSquash,
            ),
            (
                "4m",
                DeletePolicy::Destroy,
                NfsVersions::V41,
                true,
                NodeOptions::NoRootSquash,
            ),
            (
                "e3o",
                DeletePolicy::Eradicate,
                NfsVersions::V3,
                true,
                NodeOptions::Other,
            ),
            (
                "3",
                DeletePolicy::Destroy,
                NfsVersions::V3,
                false,
                NodeOptions::RootSquash,
            ),
            (
                "e4",
                DeletePolicy::Eradicate,
                NfsVersions::V41,
                false,
                NodeOptions::RootSquash,
            ),
        ] {
            let text = format!("fb01/x/abc/{flags}");
            let id = text.parse::<VolumeId>().unwrap();
            let want = ExportRecord {
                versions,
                to_nodes,
                options,
            };
            assert!(
                matches!(id, VolumeId::Managed { delete: d, export, .. } if d == delete && export == want),
                "{text}"
            );
            assert_eq!(id.is_to_nodes(), to_nodes);
            assert_eq!(id.to_string(), text);
        }
        // No second spelling of a meaning, nothing unknown.
        for bad in [
            "fb01/x/abc/",
            "fb01/x/abc/ne",
            "fb01/x/abc/nn",
            "fb01/x/abc/d",
            "fb01/x/abc/er",
            "fb01/x/abc/4e",
            "fb01/x/abc/34",
            "fb01/x/abc/n4",
            "fb01/x/abc/mn",
            "fb01/x/abc/m4",
        ] {
            assert!(bad.parse::<VolumeId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn static_handles() {
        assert_eq!(
            "datasets".parse::<VolumeId>().unwrap(),
            VolumeId::Static {
                array: None,
                fs_name: n("datasets"),
                version: None,
            }
        );
        assert_eq!(
            "fb01/datasets".parse::<VolumeId>().unwrap(),
            VolumeId::Static {
                array: Some(n("fb01")),
                fs_name: n("datasets"),
                version: None,
            }
        );
    }

    #[test]
    fn dataset_version_handles() {
        for (handle, array) in [("cifar10.v3", None), ("fb01/cifar10.v3", Some("fb01"))] {
            let id: VolumeId = handle.parse().unwrap();
            assert_eq!(
                id,
                VolumeId::Static {
                    array: array.map(n),
                    fs_name: n("cifar10"),
                    version: Some(n("v3")),
                }
            );
            assert_eq!(id.version().map(|v| v.as_str()), Some("v3"));
            assert_eq!(id.to_string(), handle);
        }
        // The suffix obeys the snapshot-suffix rule: nothing that could
        // become a path component other than one plain name.
        for bad in [
            "x.",
            "x..y",
            "x.y.z",
            "x.-y",
            "x.y/z/..",
            "x.y z",
            "fb01/x./../y",
            ".y",
        ] {
            assert!(bad.parse::<VolumeId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostile_ids_are_refused() {
        for bad in [
            "",
            "/",
            "a//b",
            "../etc",
            "fb01/../x",
            "fb01/x/id/e/extra",
            "fb01/x/id/z",
            "fb01/-o/id",
            "fb01/x y/id",
            "fb01/x/i$d",
            "fb01/x.y/id",
            "fb01/x.",
            "fb01/x.y.",
            "x..",
            &"a".repeat(64),
            "a\u{0}b",
        ] {
            assert!(bad.parse::<VolumeId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn snapshot_ids() {
        let id = SnapshotId::new(
            n("fb01"),
            n("k8s-pvc-1"),
            n("csi-0011223344556677"),
            n("1234-abcd"),
            true,
        );
        assert_eq!(id.to_string(), "fb01/k8s-pvc-1.csi-0011223344556677/1234-abcd");
        let r: SnapshotId = id.to_string().parse().unwrap();
        assert_eq!(r, id);
        assert_eq!(r.snap_name().unwrap(), "k8s-pvc-1.csi-0011223344556677");
        let id = SnapshotId::new(n("fb01"), n("x"), n("csi-0011223344556677"), n("abc"), false);
        let r: SnapshotId = id.to_string().parse().unwrap();
        assert!(!r.eradicate && r.snap_id == "abc");
        // The longest names use the compact form, snapshot id kept.
        let long = SnapshotId::new(
            n(&"a".repeat(20)),
            n(&"f".repeat(63)),
            n("csi-0011223344556677"),
            n(&"9".repeat(36)),
            false,
        );
        let text = long.to_string();
        assert!(text.len() <= 128, "{}", text.len());
        let r: SnapshotId = text.parse().unwrap();
        assert_eq!((r.fs_name, r.snap_id.as_str()), (None, "9".repeat(36).as_str()));
        for bad in [
            "reallyfakesnapshotid",
            "fb01/x/y",
            "fb01/x.y/z/w",
            "fb01/x.-y/z",
            "fb01/x.y/z z",
            "/destroy",
        ] {
            assert!(
                matches!(bad.parse::<SnapshotId>(), Err(SnapshotIdError::Malformed(_))),
                "{bad}"
            );
        }
        // An admin's snapshot, or ours without the array's id: not ours.
        for foreign in [
            "default/datasets.daily-1",
            "default/datasets.daily-1/1234",
            "fb01/k8s-pvc-1.csi-0011223344556677",
            "fb01/k8s-pvc-1.csi-00112233445566/1234",
        ] {
            assert!(
                matches!(foreign.parse::<SnapshotId>(), Err(SnapshotIdError::NotOurs(_))),
                "{foreign}"
            );
        }
    }

    mod prop {
        use super::*;
        use crate::volume::names::NamePrefix;
        use crate::volume::naming::fs_name_for;
        use proptest::prelude::*;

        fn array_name() -> impl Strategy<Value = ArrayName> {
            "[a-zA-Z0-9][a-zA-Z0-9._-]{0,19}".prop_map(|s| s.parse().unwrap())
        }
        fn prefix() -> impl Strategy<Value = NamePrefix> {
            "[a-zA-Z0-9][a-zA-Z0-9_]{0,19}".prop_map(|s| s.parse().unwrap())
        }
        fn object_id() -> impl Strategy<Value = ObjectId> {
            "[a-f0-9-]{1,64}".prop_map(|s| s.parse().unwrap())
        }
        fn policy() -> impl Strategy<Value = DeletePolicy> {
            prop_oneof![
                Just(DeletePolicy::Destroy),
                Just(DeletePolicy::Eradicate),
                Just(DeletePolicy::Retain)
            ]
        }

        proptest! {
            // Every id the controller can produce parses back to itself and
            // fits CSI's 128 bytes, for every valid array name and prefix.
            #[test]
            fn volume_ids_round_trip(array in array_name(), prefix in prefix(), csi_name in "\\PC{1,128}", fs_id in "[a-f0-9-]{36}", delete in policy(), to_nodes in any::<bool>(), v in 0..3u8, o in 0..3usize) {
                let id = VolumeId::Managed {
                    array,
                    fs_name: fs_name_for(&prefix, &csi_name),
                    fs_id: fs_id.parse().unwrap(),
                    delete,
                    export: ExportRecord {
                        versions: [NfsVersions::Both, NfsVersions::V3, NfsVersions::V41][v as usize],
                        to_nodes,
                        // Options are recorded only with node exports.
                        options: if to_nodes {
                            [NodeOptions::RootSquash, NodeOptions::NoRootSquash, NodeOptions::Other][o]
                        } else {
                            NodeOptions::RootSquash
                        },
                    },
                };
                let text = id.to_string();
                prop_assert!(text.len() <= MAX_ID_BYTES, "{}", text);
                prop_assert_eq!(text.parse::<VolumeId>().unwrap(), id);
            }

            #[test]
            fn snapshot_ids_round_trip(array in array_name(), prefix in prefix(), csi_name in "\\PC{1,128}", snap in "\\PC{1,128}", snap_id in object_id(), eradicate in any::<bool>()) {
                let id = SnapshotId::new(array, fs_name_for(&prefix, &csi_name), snapshot_suffix_for(&snap), snap_id, eradicate);
                let text = id.to_string();
                prop_assert!(text.len() <= MAX_ID_BYTES, "{}", text);
                prop_assert_eq!(text.parse::<SnapshotId>().unwrap(), id);
            }

            #[test]
            fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
                let _ = s.parse::<VolumeId>();
                let _ = s.parse::<SnapshotId>();
            }
        }
    }
}
