//! FlashBlade list filters (`filter=` query), built from typed parts so that
//! no caller writes the array's filter syntax or quotes a value itself.

use std::fmt;

use crate::volume::NamePrefix;
use crate::volume::naming::SNAPSHOT_SUFFIX_PREFIX;

/// A filter expression in the array's syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Filter(String);

/// A value as a quoted filter literal.
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

impl Filter {
    /// The object named exactly `name`.
    pub(crate) fn name(name: &str) -> Self {
        Filter(format!("name={}", quoted(name)))
    }

    /// The object with the array's id `id`.
    pub(crate) fn id(id: &str) -> Self {
        Filter(format!("id={}", quoted(id)))
    }

    /// File systems named `<prefix>-…` for any of `prefixes`.
    pub(crate) fn name_prefixes(prefixes: &[NamePrefix]) -> Self {
        Filter(
            prefixes
                .iter()
                .map(|p| format!("name='{p}-*'"))
                .collect::<Vec<_>>()
                .join(" or "),
        )
    }

    /// Names starting with `head` (e.g. a file system and its tombstones).
    pub(crate) fn name_starts_with(head: &str) -> Self {
        Filter(format!("name={}", quoted(&format!("{head}*"))))
    }

    /// Snapshots (live or destroyed) with exactly this suffix.
    pub(crate) fn snapshot_suffix(suffix: &str) -> Self {
        Filter(format!("suffix={}", quoted(suffix)))
    }

    /// Live snapshots the driver made (suffix `csi-…`).
    pub(crate) fn driver_snapshots() -> Self {
        Filter(format!("suffix='{SNAPSHOT_SUFFIX_PREFIX}*' and destroyed=false"))
    }

    /// Live snapshots the driver made of the file system `fs_name`.
    pub(crate) fn driver_snapshots_of(fs_name: &str) -> Self {
        Filter(format!(
            "owner.name={} and {}",
            quoted(fs_name),
            Self::driver_snapshots().0
        ))
    }

    /// Live snapshots the driver made of the file system with the array's
    /// id `fs_id` (whatever its current name).
    pub(crate) fn driver_snapshots_owned_by(fs_id: &str) -> Self {
        Filter(format!(
            "owner.id={} and {}",
            quoted(fs_id),
            Self::driver_snapshots().0
        ))
    }

    /// Live snapshots of the file system `fs_name`, whoever made them.
    pub(crate) fn live_snapshots_of(fs_name: &str) -> Self {
        Filter(format!("owner.name={} and destroyed=false", quoted(fs_name)))
    }

    /// This filter, restricted to names after `last` (keyset paging).
    pub(crate) fn after(&self, last: &str) -> Self {
        if last.is_empty() {
            self.clone()
        } else {
            Filter(format!("({}) and name>{}", self.0, quoted(last)))
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let p: Vec<NamePrefix> = vec!["k8s".parse().unwrap(), "hub".parse().unwrap()];
        assert_eq!(
            Filter::name_prefixes(&p).to_string(),
            "name='k8s-*' or name='hub-*'"
        );
        assert_eq!(
            Filter::name_prefixes(&p).after("k8s-a").to_string(),
            "(name='k8s-*' or name='hub-*') and name>'k8s-a'"
        );
        assert_eq!(Filter::name("it's").to_string(), r"name='it\'s'");
        assert_eq!(
            Filter::driver_snapshots_of("k8s-a").to_string(),
            "owner.name='k8s-a' and suffix='csi-*' and destroyed=false"
        );
    }
}
