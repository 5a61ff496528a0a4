//! How the driver names what it creates on the array: file systems for CSI
//! volume names (deterministic and injective), tombstones for soft-deleted
//! file systems, and snapshot suffixes.

use sha2::{Digest, Sha256};

use super::id::{ExportRecord, NfsVersions, NodeOptions};
use super::names::{FsName, NamePrefix, SnapshotSuffix};

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
/// `<name>-x<time>[<record>]`, or for names too long for that
/// `<first characters>-h<hash of the name>-x<time>[<record>]` (63 at most).
/// The record keeps what the array forgets when the protocols go off, for
/// `recover`: `T` NFSv3 only, `F` NFSv4.1 only (nothing: both), then `N`
/// for node-following exports (`M` with no_root_squash, `O` with other
/// options); upper case, so it never reads as time.
/// Never a name the driver gives a live volume (those never end like this).
pub fn tombstone_name(fs_name: &FsName, deleted_unix_secs: u64, record: ExportRecord) -> FsName {
    let flags = record_flags(record);
    let time = format!(
        "{TOMBSTONE_MARK}{}{flags}",
        base36(deleted_unix_secs, TOMBSTONE_TIME_DIGITS)
    );
    let name = if fs_name.len() + time.len() <= 63 {
        format!("{fs_name}{time}")
    } else {
        let head: String = fs_name.chars().take(HASHED_HEAD - flags.len()).collect();
        format!("{head}{HASH_MARK}{}{time}", short_hash(fs_name))
    };
    name.parse().expect("a tombstone of a valid name is valid")
}

/// Characters of the name kept before the hash in a long name's tombstone
/// without a record (the record's flags take theirs from it).
const HASHED_HEAD: usize = 40;

fn record_flags(record: ExportRecord) -> String {
    let v = match record.versions {
        NfsVersions::Both => "",
        NfsVersions::V3 => "T",
        NfsVersions::V41 => "F",
    };
    let nodes = match (record.to_nodes, record.options) {
        (false, _) => "",
        (true, NodeOptions::RootSquash) => "N",
        (true, NodeOptions::NoRootSquash) => "M",
        (true, NodeOptions::Other) => "O",
    };
    format!("{v}{nodes}")
}

/// Splits a tombstone's tail: (everything before `-x`, time, record).
fn split_tombstone(candidate: &str) -> Option<(&str, u64, ExportRecord)> {
    let (rest, to_nodes, options) = match candidate.as_bytes().last() {
        Some(b'N') => (&candidate[..candidate.len() - 1], true, NodeOptions::RootSquash),
        Some(b'M') => (&candidate[..candidate.len() - 1], true, NodeOptions::NoRootSquash),
        Some(b'O') => (&candidate[..candidate.len() - 1], true, NodeOptions::Other),
        _ => (candidate, false, NodeOptions::RootSquash),
    };
    let (rest, versions) = match rest.as_bytes().last() {
        Some(b'T') => (&rest[..rest.len() - 1], NfsVersions::V3),
        Some(b'F') => (&rest[..rest.len() - 1], NfsVersions::V41),
        _ => (rest, NfsVersions::Both),
    };
    let n = TOMBSTONE_MARK.len() + TOMBSTONE_TIME_DIGITS;
    if rest.len() < n || !rest.is_char_boundary(rest.len() - n) {
        return None;
    }
    let (head, tail) = rest.split_at(rest.len() - n);
    let digits = tail.strip_prefix(TOMBSTONE_MARK)?;
    if !digits
        .bytes()
        .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
    {
        return None;
    }
    let secs = u64::from_str_radix(digits, 36).ok()?;
    Some((
        head,
        secs,
        ExportRecord {
            versions,
            to_nodes,
            options,
        },
    ))
}

/// When `candidate` is the tombstone of `fs_name`, its deletion time (Unix
/// seconds): how recovery tooling finds a soft-deleted volume by its name.
pub fn tombstone_of(fs_name: &str, candidate: &str) -> Option<u64> {
    let (_, secs, record) = split_tombstone(candidate)?;
    let fs_name: FsName = fs_name.parse().ok()?;
    (tombstone_name(&fs_name, secs, record) == candidate).then_some(secs)
}

/// The export record a tombstone keeps; `None` for a name that is no
/// tombstone.
pub fn tombstone_record(candidate: &str) -> Option<ExportRecord> {
    split_tombstone(candidate).map(|(_, _, r)| r)
}

/// For a tombstone, its deletion time (Unix seconds) and, when the
/// tombstone alone tells it, the name it was made from (not for the hashed
/// form of a long name: match those against candidates with [`tombstone_of`]).
pub fn untombstone(candidate: &str) -> Option<(Option<String>, u64)> {
    let (head, secs, record) = split_tombstone(candidate)?;
    // A head ending in a hash, as long as a long name's hashed form, may be
    // that form (`<first characters>-h<hash>`): the tombstone alone cannot
    // tell.
    let hashed_len = HASHED_HEAD - record_flags(record).len() + HASH_MARK.len() + 12;
    let ambiguous = head.len() == hashed_len && looks_hashed(head);
    let original = (!ambiguous && tombstone_of(head, candidate).is_some()).then(|| head.to_string());
    Some((original, secs))
}

/// True for a name ending like a tombstone (`-x`, 7 base-36 digits, and
/// the record's flags).
fn looks_tombstoned(name: &str) -> bool {
    split_tombstone(name).is_some()
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
pub fn fs_name_for(prefix: &NamePrefix, csi_name: &str) -> FsName {
    let direct = format!("{prefix}-{csi_name}");
    if let Ok(name) = direct.parse::<FsName>()
        && !looks_hashed(&name)
        && !looks_tombstoned(&name)
    {
        return name;
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
    let name = if body.is_empty() {
        format!("{prefix}{HASH_MARK}{hash}")
    } else {
        format!("{prefix}-{body}{HASH_MARK}{hash}")
    };
    name.parse()
        .expect("a sanitised name within 63 characters is valid")
}

/// The snapshot suffix for a CSI snapshot name: `csi-` and a hash of the
/// name, short so snapshot ids fit CSI's 128 bytes, and deterministic so a
/// repeated CreateSnapshot finds its snapshot.
pub fn snapshot_suffix_for(csi_name: &str) -> SnapshotSuffix {
    let d = Sha256::digest(csi_name.as_bytes());
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{SNAPSHOT_SUFFIX_PREFIX}{hex}")
        .parse()
        .expect("csi- and hex digits make a valid suffix")
}

/// True for the suffixes [`snapshot_suffix_for`] makes: `csi-` and 16 hex.
pub fn is_driver_suffix(s: &str) -> bool {
    s.strip_prefix(SNAPSHOT_SUFFIX_PREFIX)
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untombstone_inverts_tombstone_name() {
        let short: FsName = "k8s-pvc-1".parse().unwrap();
        let long: FsName = format!("k8s-{}", "a".repeat(58)).parse().unwrap();
        for record in records() {
            let t = tombstone_name(&short, 1_800_000_000, record);
            assert_eq!(untombstone(&t), Some((Some("k8s-pvc-1".into()), 1_800_000_000)));
            assert_eq!(tombstone_record(&t), Some(record), "{t}");
            let t = tombstone_name(&long, 7, record);
            assert!(t.len() <= 63, "{t}");
            assert_eq!(untombstone(&t), Some((None, 7)), "{t}");
            assert_eq!(tombstone_of(&long, &t), Some(7));
            assert_eq!(tombstone_record(&t), Some(record), "{t}");
        }
        assert_eq!(untombstone("k8s-pvc-1"), None);
        assert_eq!(tombstone_record("k8s-pvc-1"), None);
        // Tombstones made before records existed read as both versions,
        // range-exported: what the driver made by default.
        assert_eq!(
            tombstone_record("k8s-pvc-1-x0abcdef"),
            Some(ExportRecord::default())
        );
    }

    fn p(s: &str) -> NamePrefix {
        s.parse().unwrap()
    }

    fn records_for(versions: NfsVersions) -> Vec<ExportRecord> {
        records().into_iter().filter(|r| r.versions == versions).collect()
    }

    fn records() -> Vec<ExportRecord> {
        let mut out = Vec::new();
        for versions in [NfsVersions::Both, NfsVersions::V3, NfsVersions::V41] {
            out.push(ExportRecord {
                versions,
                ..Default::default()
            });
            for options in [
                NodeOptions::RootSquash,
                NodeOptions::NoRootSquash,
                NodeOptions::Other,
            ] {
                out.push(ExportRecord {
                    versions,
                    to_nodes: true,
                    options,
                });
            }
        }
        out
    }

    #[test]
    fn names_are_deterministic_and_valid() {
        assert_eq!(
            fs_name_for(&p("k8s"), "pvc-2bc92e91-485f-4f21-83b4-9ca73ca8401b"),
            "k8s-pvc-2bc92e91-485f-4f21-83b4-9ca73ca8401b"
        );
        let long = "x".repeat(128);
        let a = fs_name_for(&p("k8s"), &long);
        assert_eq!(a, fs_name_for(&p("k8s"), &long));
        assert!(a.len() <= 63, "{a}");
        let odd = fs_name_for(&p("k8s"), "Ünïcode name/with spaces");
        assert!(odd.starts_with("k8s-"), "{odd}");
        assert_ne!(
            fs_name_for(&p("k8s"), "a b"),
            fs_name_for(&p("k8s"), "a.b"),
            "distinct names stay distinct"
        );
        let _ = fs_name_for(&p("verylongprefix_abcd"), &"y".repeat(128));
        let _ = fs_name_for(&p("k8s"), "!!!");
    }

    #[test]
    fn two_names_never_share_a_file_system() {
        // A sanitised name and the name that spells its result.
        let hashed = fs_name_for(&p("k8s"), "col a");
        let tail = hashed.strip_prefix("k8s-").unwrap();
        assert_ne!(fs_name_for(&p("k8s"), tail), hashed);
        assert!(looks_hashed(tail));
        assert!(!looks_hashed("pvc-2bc92e91-485f-4f21-83b4-9ca73ca8401b"));
    }

    #[test]
    fn tombstones() {
        let t = tombstone_name(
            &"k8s-pvc-2bc92e91-485f-4f21-83b4-9ca73ca8401b".parse().unwrap(),
            1_795_000_000,
            ExportRecord::default(),
        );
        assert!(t.starts_with("k8s-pvc-2bc92e91"), "{t}");
        assert_eq!(
            tombstone_of("k8s-pvc-2bc92e91-485f-4f21-83b4-9ca73ca8401b", &t),
            Some(1_795_000_000)
        );
        assert_eq!(tombstone_of("k8s-pvc-2bc92e91", &t), None);
        let long = "f".repeat(63);
        for record in records() {
            let t = tombstone_name(&long.parse().unwrap(), 42, record);
            assert!(t.len() <= 63, "{t}");
            assert_eq!(tombstone_of(&long, &t), Some(42));
        }
        // A live name never looks like a tombstone, with or without a record.
        for tail in [
            "home-x0abcdef",
            "home-x0abcdefTN",
            "home-x0abcdefN",
            "home-x0abcdefFM",
            "home-x0abcdefO",
        ] {
            let live = fs_name_for(&p("k8s"), tail);
            assert!(live.contains("-h"), "{live}");
            assert_eq!(tombstone_of("k8s-home", &live), None);
        }
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
                        let f = fs_name_for(&p("k8s"), &n);
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
            fn tombstones_round_trip(a in csi_name(), secs in 0u64..78_364_164_095, v in 0..3usize, r in 0..4usize) {
                let name = fs_name_for(&p("k8s"), &a);
                let record = records_for([NfsVersions::Both, NfsVersions::V3, NfsVersions::V41][v])[r];
                let t = tombstone_name(&name, secs, record);
                prop_assert!(t.len() <= 63, "{}", t);
                prop_assert_eq!(tombstone_of(&name, &t), Some(secs));
                prop_assert_eq!(tombstone_record(&t), Some(record));
                if let Some((Some(original), _)) = untombstone(&t) {
                    prop_assert_eq!(original, name.to_string());
                }
            }

            #[test]
            fn injective_and_valid(a in csi_name(), b in csi_name(), pa in proptest::sample::select(&["k8s", "k8s_col", "hub"][..]), pb in proptest::sample::select(&["k8s", "k8s_col", "hub"][..])) {
                let (fa, fb) = (fs_name_for(&p(pa), &a), fs_name_for(&p(pb), &b));
                prop_assert!(fa.len() <= 63, "{fa}");
                if (pa, a.as_str()) != (pb, b.as_str()) {
                    prop_assert_ne!(fa, fb, "{}/{:?} and {}/{:?}", pa, a, pb, b);
                }
            }
        }
    }

    #[test]
    fn snapshot_suffixes() {
        let s = snapshot_suffix_for("snapshot-2bc92e91-485f-4f21-83b4-9ca73ca8401b");
        assert!(s.starts_with("csi-") && s.len() == 20, "{s}");
        assert_eq!(
            s,
            snapshot_suffix_for("snapshot-2bc92e91-485f-4f21-83b4-9ca73ca8401b")
        );
        assert_ne!(s, snapshot_suffix_for("snapshot-other"));
        let _ = snapshot_suffix_for(&"\u{1F600}".repeat(40));
    }
}
