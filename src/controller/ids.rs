//! Volume and snapshot identifiers, and the CSI-name → file-system-name map.
//!
//! - Managed volume: `<array>/<fs-name>/<fs-id>[/<e|r>]`: the array's
//!   immutable file-system id lets the driver refuse a same-named file system
//!   it did not create; the optional last part records a non-default delete
//!   policy (`e` eradicate, `r` retain), since DeleteVolume gets no parameters.
//! - Static (imported) volume: `<fs-name>` or `<array>/<fs-name>`.
//! - Snapshot: `<array>/<fs-name>.<suffix>/<snapshot-id>`.

use sha2::{Digest, Sha256};

use super::params::DeletePolicy;

/// FlashBlade file-system names (our documented assumption).
pub fn valid_fs_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

fn valid_array_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=20).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn valid_object_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
}

fn valid_suffix(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// What a volume id refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeRef {
    Managed {
        array: String,
        fs_name: String,
        fs_id: String,
        delete: DeletePolicy,
    },
    Static {
        /// `None`: the default array.
        array: Option<String>,
        fs_name: String,
    },
}

impl VolumeRef {
    pub fn fs_name(&self) -> &str {
        match self {
            VolumeRef::Managed { fs_name, .. } | VolumeRef::Static { fs_name, .. } => fs_name,
        }
    }

    pub fn array(&self) -> Option<&str> {
        match self {
            VolumeRef::Managed { array, .. } => Some(array),
            VolumeRef::Static { array, .. } => array.as_deref(),
        }
    }
}

pub fn managed_volume_id(array: &str, fs_name: &str, fs_id: &str, delete: DeletePolicy) -> String {
    match delete {
        DeletePolicy::Destroy => format!("{array}/{fs_name}/{fs_id}"),
        DeletePolicy::Eradicate => format!("{array}/{fs_name}/{fs_id}/e"),
        DeletePolicy::Retain => format!("{array}/{fs_name}/{fs_id}/r"),
    }
}

/// Parses a volume id or static volume handle; `Err` says why it is malformed.
pub fn parse_volume_id(id: &str) -> Result<VolumeRef, String> {
    let parts: Vec<&str> = id.split('/').collect();
    let bad_fs = |n: &str| format!("{n:?} is not a FlashBlade file-system name");
    let bad_array = |n: &str| format!("{n:?} is not an array name");
    match parts.as_slice() {
        [fs] => {
            if !valid_fs_name(fs) {
                return Err(bad_fs(fs));
            }
            Ok(VolumeRef::Static {
                array: None,
                fs_name: fs.to_string(),
            })
        }
        [array, fs] => {
            if !valid_array_name(array) {
                return Err(bad_array(array));
            }
            if !valid_fs_name(fs) {
                return Err(bad_fs(fs));
            }
            Ok(VolumeRef::Static {
                array: Some(array.to_string()),
                fs_name: fs.to_string(),
            })
        }
        [array, fs, fs_id, rest @ ..] if rest.len() <= 1 => {
            if !valid_array_name(array) {
                return Err(bad_array(array));
            }
            if !valid_fs_name(fs) {
                return Err(bad_fs(fs));
            }
            if !valid_object_id(fs_id) {
                return Err(format!("{fs_id:?} is not a file-system id"));
            }
            let delete = match rest {
                [] => DeletePolicy::Destroy,
                ["e"] => DeletePolicy::Eradicate,
                ["r"] => DeletePolicy::Retain,
                [other] => return Err(format!("{other:?} is not a delete policy marker")),
                _ => unreachable!(),
            };
            Ok(VolumeRef::Managed {
                array: array.to_string(),
                fs_name: fs.to_string(),
                fs_id: fs_id.to_string(),
                delete,
            })
        }
        _ => Err("expected <array>/<fs-name>/<fs-id>, <array>/<fs-name> or <fs-name>".into()),
    }
}

/// A parsed snapshot id of a snapshot this driver made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRef {
    pub array: String,
    /// `None` in the compact form (names too long for the full one): the
    /// array's snapshot id alone finds it.
    pub fs_name: Option<String>,
    pub suffix: String,
    /// The array's snapshot id: the guard that this is the snapshot the id
    /// was made for, never a same-named one made later or by someone else.
    pub snap_id: String,
    /// DeleteSnapshot eradicates (default) or only destroys.
    pub eradicate: bool,
}

impl SnapshotRef {
    pub fn snap_name(&self) -> Option<String> {
        self.fs_name.as_ref().map(|f| format!("{f}.{}", self.suffix))
    }
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

/// `<array>/<fs-name>.<suffix>/<snapshot-id>[/destroy]`, or when that would
/// exceed CSI's 128 bytes the compact `<array>/.<suffix>/<snapshot-id>[/destroy]`
/// (the array's snapshot id is always there: it is the guard).
pub fn snapshot_id(array: &str, snap_name: &str, snap_id: &str, eradicate: bool) -> String {
    let tail = if eradicate { "" } else { DESTROY_ONLY };
    let full = format!("{array}/{snap_name}/{snap_id}{tail}");
    if full.len() <= 128 {
        return full;
    }
    let suffix = snap_name.split_once('.').map_or(snap_name, |(_, s)| s);
    format!("{array}/.{suffix}/{snap_id}{tail}")
}

/// True for the suffixes [`snapshot_suffix_for`] makes: `csi-` and 16 hex.
pub fn is_driver_suffix(s: &str) -> bool {
    s.strip_prefix(SNAPSHOT_SUFFIX_PREFIX)
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
}

pub fn parse_snapshot_id(id: &str) -> Result<SnapshotRef, SnapshotIdError> {
    let malformed = || SnapshotIdError::Malformed(format!("{} is not a snapshot id", crate::error::clip(id)));
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
    let fs = (!fs.is_empty()).then_some(fs);
    if !valid_array_name(array)
        || !fs.is_none_or(valid_fs_name)
        || !valid_suffix(suffix)
        || !snap_id.is_none_or(valid_object_id)
    {
        return Err(malformed());
    }
    let what = || format!("{} ({array}/{name})", crate::error::clip(id));
    if !is_driver_suffix(suffix) {
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
    Ok(SnapshotRef {
        array: array.to_string(),
        fs_name: fs.map(str::to_string),
        suffix: suffix.to_string(),
        snap_id: snap_id.to_string(),
        eradicate,
    })
}

/// Suffix of every snapshot this driver makes, so its snapshots can be told
/// from those of the array's own snapshot policies.
pub const SNAPSHOT_SUFFIX_PREFIX: &str = "csi-";

fn short_hash(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    d.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// Marks the hash in a hashed name: `-h` then 12 hex digits. The `h` keeps
/// it apart from the 12-hex tail of every Kubernetes UUID (`pvc-<uuid>`).
const HASH_MARK: &str = "-h";

/// Marks a tombstone: `-x` then the deletion time, 7 base-36 digits of Unix
/// seconds (good until the year 4453).
const TOMBSTONE_MARK: &str = "-x";
const TOMBSTONE_TIME_DIGITS: usize = 7;

fn base36(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).expect("ascii")
}

/// The name a soft-deleted file system gets before it is destroyed, so its
/// name is free for a new volume at once while the data stays recoverable:
/// `<name>-x<time>`, or for names too long for that
/// `<first 40 characters>-h<hash of the name>-x<time>`. Never a name the
/// driver gives a live volume (those never end like this).
pub fn tombstone_name(fs_name: &str, deleted_unix_secs: u64) -> String {
    let time = format!(
        "{TOMBSTONE_MARK}{}",
        base36(deleted_unix_secs, TOMBSTONE_TIME_DIGITS)
    );
    if fs_name.len() + time.len() <= 63 {
        format!("{fs_name}{time}")
    } else {
        let head: String = fs_name.chars().take(40).collect();
        format!("{head}{HASH_MARK}{}{time}", short_hash(fs_name))
    }
}

/// When `candidate` is the tombstone of `fs_name`, its deletion time (Unix
/// seconds): how recovery tooling finds a soft-deleted volume by its name.
pub fn tombstone_of(fs_name: &str, candidate: &str) -> Option<u64> {
    let n = TOMBSTONE_MARK.len() + TOMBSTONE_TIME_DIGITS;
    if candidate.len() < n {
        return None;
    }
    let (_, time) = candidate.split_at(candidate.len() - n);
    let secs = u64::from_str_radix(time.strip_prefix(TOMBSTONE_MARK)?, 36).ok()?;
    (tombstone_name(fs_name, secs) == candidate).then_some(secs)
}

/// True for a name ending like a tombstone (`-x` and 7 base-36 digits).
fn looks_tombstoned(name: &str) -> bool {
    let n = TOMBSTONE_MARK.len() + TOMBSTONE_TIME_DIGITS;
    name.len() >= n && {
        let (_, tail) = name.split_at(name.len() - n);
        tail.starts_with(TOMBSTONE_MARK)
            && tail[TOMBSTONE_MARK.len()..]
                .bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    }
}

/// True for a name ending like the hashed form (`-h` and 12 hex digits).
fn looks_hashed(name: &str) -> bool {
    let n = HASH_MARK.len() + 12;
    name.len() >= n && {
        let (_, tail) = name.split_at(name.len() - n);
        tail.starts_with(HASH_MARK)
            && tail[HASH_MARK.len()..]
                .bytes()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    }
}

/// The file-system name for a CSI volume name: `<prefix>-<name>` when that is
/// a valid FlashBlade name, else `<prefix>-<sanitised, truncated>-<hash>`.
/// Deterministic: the same name always gives the same file system. Injective:
/// a direct name never ends like a hashed one (a name that does is hashed
/// too), and prefixes hold no `-`, so the prefix always ends at the first `-`.
pub fn fs_name_for(prefix: &str, csi_name: &str) -> String {
    let direct = format!("{prefix}-{csi_name}");
    if valid_fs_name(&direct) && !looks_hashed(&direct) && !looks_tombstoned(&direct) {
        return direct;
    }
    let hash = short_hash(csi_name);
    let sanitised: String = csi_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let budget = 63usize.saturating_sub(prefix.len() + 1 + HASH_MARK.len() + hash.len());
    let body: String = sanitised.chars().take(budget).collect();
    if body.is_empty() {
        format!("{prefix}{HASH_MARK}{hash}")
    } else {
        format!("{prefix}-{body}{HASH_MARK}{hash}")
    }
}

/// The snapshot suffix for a CSI snapshot name: `csi-` and a hash of the
/// name, short so snapshot ids fit CSI's 128 bytes, and deterministic so a
/// repeated CreateSnapshot finds its snapshot.
pub fn snapshot_suffix_for(csi_name: &str) -> String {
    let d = Sha256::digest(csi_name.as_bytes());
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{SNAPSHOT_SUFFIX_PREFIX}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids_round_trip_and_stay_short() {
        let id = managed_volume_id(
            "fb01",
            "k8s-pvc-1",
            "4f0c2a8e-1d2b-4c3a-9e1f-0a1b2c3d4e5f",
            DeletePolicy::Destroy,
        );
        assert_eq!(id, "fb01/k8s-pvc-1/4f0c2a8e-1d2b-4c3a-9e1f-0a1b2c3d4e5f");
        assert_eq!(
            parse_volume_id(&id).unwrap(),
            VolumeRef::Managed {
                array: "fb01".into(),
                fs_name: "k8s-pvc-1".into(),
                fs_id: "4f0c2a8e-1d2b-4c3a-9e1f-0a1b2c3d4e5f".into(),
                delete: DeletePolicy::Destroy
            }
        );
        for p in [DeletePolicy::Eradicate, DeletePolicy::Retain] {
            let id = managed_volume_id("fb01", "x", "abc", p);
            match parse_volume_id(&id).unwrap() {
                VolumeRef::Managed { delete, .. } => assert_eq!(delete, p),
                other => panic!("{other:?}"),
            }
        }
        // Longest possible id fits CSI's 128 bytes.
        let longest = managed_volume_id(
            &"a".repeat(20),
            &"f".repeat(63),
            &"9".repeat(36),
            DeletePolicy::Eradicate,
        );
        assert!(longest.len() <= 128, "{}", longest.len());
    }

    #[test]
    fn static_handles() {
        assert_eq!(
            parse_volume_id("datasets").unwrap(),
            VolumeRef::Static {
                array: None,
                fs_name: "datasets".into()
            }
        );
        assert_eq!(
            parse_volume_id("fb01/datasets").unwrap(),
            VolumeRef::Static {
                array: Some("fb01".into()),
                fs_name: "datasets".into()
            }
        );
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
            "fb01/x.y",
            &"a".repeat(64),
            "a\u{0}b",
        ] {
            assert!(parse_volume_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn snapshot_ids() {
        let id = snapshot_id("fb01", "k8s-pvc-1.csi-0011223344556677", "1234-abcd", true);
        assert_eq!(id, "fb01/k8s-pvc-1.csi-0011223344556677/1234-abcd");
        let r = parse_snapshot_id(&id).unwrap();
        assert_eq!(r.fs_name.as_deref(), Some("k8s-pvc-1"));
        assert_eq!(r.suffix, "csi-0011223344556677");
        assert_eq!(r.snap_id, "1234-abcd");
        assert!(r.eradicate);
        assert_eq!(r.snap_name().unwrap(), "k8s-pvc-1.csi-0011223344556677");
        let id = snapshot_id("fb01", "x.csi-0011223344556677", "abc", false);
        let r = parse_snapshot_id(&id).unwrap();
        assert!(!r.eradicate && r.snap_id == "abc");
        // The longest names use the compact form, snapshot id kept.
        let long = snapshot_id(
            &"a".repeat(20),
            &format!("{}.csi-0011223344556677", "f".repeat(63)),
            &"9".repeat(36),
            false,
        );
        assert!(long.len() <= 128, "{}", long.len());
        let r = parse_snapshot_id(&long).unwrap();
        assert_eq!((r.fs_name, r.snap_id), (None, "9".repeat(36)));
        for bad in [
            "reallyfakesnapshotid",
            "fb01/x/y",
            "fb01/x.y/z/w",
            "fb01/x.-y/z",
            "fb01/x.y/z z",
            "/destroy",
        ] {
            assert!(
                matches!(parse_snapshot_id(bad), Err(SnapshotIdError::Malformed(_))),
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
                matches!(parse_snapshot_id(foreign), Err(SnapshotIdError::NotOurs(_))),
                "{foreign}"
            );
        }
    }

    #[test]
    fn names_are_deterministic_and_valid() {
        assert_eq!(
            fs_name_for("k8s", "pvc-2bc92e91-485f-4f21-83b4-9ca73ca8401b"),
            "k8s-pvc-2bc92e91-485f-4f21-83b4-9ca73ca8401b"
        );
        let long = "x".repeat(128);
        let a = fs_name_for("k8s", &long);
        assert_eq!(a, fs_name_for("k8s", &long));
        assert!(valid_fs_name(&a) && a.len() <= 63, "{a}");
        let odd = fs_name_for("k8s", "Ünïcode name/with spaces");
        assert!(valid_fs_name(&odd), "{odd}");
        assert_ne!(
            fs_name_for("k8s", "a b"),
            fs_name_for("k8s", "a.b"),
            "distinct names stay distinct"
        );
        assert!(valid_fs_name(&fs_name_for(
            "verylongprefix-abcde",
            &"y".repeat(128)
        )));
        assert!(valid_fs_name(&fs_name_for("k8s", "!!!")));
    }

    #[test]
    fn two_names_never_share_a_file_system() {
        // A sanitised name and the name that spells its result.
        let hashed = fs_name_for("k8s", "col a");
        let tail = hashed.strip_prefix("k8s-").unwrap();
        assert_ne!(fs_name_for("k8s", tail), hashed);
        assert!(looks_hashed(tail));
        assert!(!looks_hashed("pvc-2bc92e91-485f-4f21-83b4-9ca73ca8401b"));
    }

    #[test]
    fn tombstones() {
        let t = tombstone_name("k8s-pvc-2bc92e91-485f-4f21-83b4-9ca73ca8401b", 1_795_000_000);
        assert!(valid_fs_name(&t) && t.starts_with("k8s-pvc-2bc92e91"), "{t}");
        assert_eq!(
            tombstone_of("k8s-pvc-2bc92e91-485f-4f21-83b4-9ca73ca8401b", &t),
            Some(1_795_000_000)
        );
        assert_eq!(tombstone_of("k8s-pvc-2bc92e91", &t), None);
        let long = "f".repeat(63);
        let t = tombstone_name(&long, 42);
        assert!(valid_fs_name(&t) && t.len() <= 63, "{t}");
        assert_eq!(tombstone_of(&long, &t), Some(42));
        // A live name never looks like a tombstone.
        let live = fs_name_for("k8s", "home-x0abcdef");
        assert!(live.contains("-h"), "{live}");
        assert_eq!(tombstone_of("k8s-home", &live), None);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn csi_name() -> impl Strategy<Value = String> {
            prop_oneof![
                proptest::collection::vec(
                    proptest::sample::select(&["a", "b", "-", " ", "_", "1", "f", "0", "é", "."][..]),
                    1..70
                )
                .prop_map(|v| v.concat()),
                // Names spelling another name's hashed form.
                (
                    proptest::collection::vec(proptest::sample::select(&["a", " ", "."][..]), 1..8),
                    any::<bool>()
                )
                    .prop_map(|(v, h)| {
                        let n = v.concat();
                        let f = fs_name_for("k8s", &n);
                        if h {
                            f.strip_prefix("k8s-").unwrap().to_string()
                        } else {
                            n
                        }
                    }),
            ]
        }

        proptest! {
            #[test]
            fn injective_and_valid(a in csi_name(), b in csi_name(), pa in proptest::sample::select(&["k8s", "k8s_col", "hub"][..]), pb in proptest::sample::select(&["k8s", "k8s_col", "hub"][..])) {
                let (fa, fb) = (fs_name_for(pa, &a), fs_name_for(pb, &b));
                prop_assert!(valid_fs_name(&fa), "{fa}");
                if (pa, a.as_str()) != (pb, b.as_str()) {
                    prop_assert_ne!(fa, fb, "{}/{:?} and {}/{:?}", pa, a, pb, b);
                }
            }
        }
    }

    #[test]
    fn snapshot_suffixes() {
        let s = snapshot_suffix_for("snapshot-2bc92e91-485f-4f21-83b4-9ca73ca8401b");
        assert!(s.starts_with("csi-") && valid_suffix(&s) && s.len() == 20, "{s}");
        assert_eq!(
            s,
            snapshot_suffix_for("snapshot-2bc92e91-485f-4f21-83b4-9ca73ca8401b")
        );
        assert_ne!(s, snapshot_suffix_for("snapshot-other"));
        assert!(valid_suffix(&snapshot_suffix_for(&"\u{1F600}".repeat(40))));
    }
}
