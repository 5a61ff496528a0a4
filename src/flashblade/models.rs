//! The parts of FlashBlade's REST 2.x objects the driver reads. Every field is
//! tolerant: missing or null values become defaults, unknown fields are
//! ignored, as the array adds fields between versions.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub(crate) struct Reference {
    pub id: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Space {
    #[serde(rename = "virtual")]
    pub virtual_bytes: Option<i64>,
    pub unique: Option<i64>,
    pub snapshots: Option<i64>,
    pub total_physical: Option<i64>,
    /// 2.16+.
    pub total_used: Option<i64>,
}

impl Space {
    /// Bytes used, from the newest field the array reports.
    pub(crate) fn used(&self) -> i64 {
        self.total_used
            .or(self.total_physical)
            .or(self.virtual_bytes)
            .unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Nfs {
    pub v3_enabled: Option<bool>,
    pub v4_1_enabled: Option<bool>,
    pub rules: Option<String>,
    pub export_policy: Option<Reference>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct FileSystem {
    pub id: String,
    pub name: String,
    pub created: i64,
    /// Bytes; `None` = unlimited.
    pub provisioned: Option<i64>,
    pub hard_limit_enabled: bool,
    pub default_user_quota: Option<i64>,
    pub default_group_quota: Option<i64>,
    pub destroyed: bool,
    pub time_remaining: Option<i64>,
    pub snapshot_directory_enabled: Option<bool>,
    pub nfs: Nfs,
    pub space: Space,
    pub source: Option<Reference>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Snapshot {
    pub id: String,
    pub name: String,
    pub suffix: Option<String>,
    pub created: i64,
    pub destroyed: bool,
    pub time_remaining: Option<i64>,
    pub owner: Reference,
    pub owner_destroyed: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct ArraySpace {
    pub capacity: i64,
    pub space: Space,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct ExportPolicy {
    pub id: String,
    pub name: String,
    pub enabled: bool,
}

/// One explicit user or group quota (`quotas/users`, `quotas/groups`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct QuotaEntry {
    pub quota: i64,
    pub usage: i64,
    pub user: Option<Principal>,
    pub group: Option<Principal>,
    pub file_system: Reference,
}

impl QuotaEntry {
    pub(crate) fn principal(&self) -> Option<&Principal> {
        self.user.as_ref().or(self.group.as_ref())
    }
}

/// A uid or gid, with its name when the array knows one.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub(crate) struct Principal {
    pub id: Option<i64>,
    pub name: Option<String>,
}

/// A GET answer: one page of items.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub continuation_token: Option<String>,
    pub total_item_count: Option<i64>,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            continuation_token: None,
            total_item_count: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_style_item_with_nulls_and_unknown_fields() {
        let v = serde_json::json!({"id":"4f0c","name":"k8s-pvc-1","created":1700000000000i64,
            "provisioned":null,"hard_limit_enabled":true,"destroyed":false,"time_remaining":null,
            "nfs":{"v3_enabled":true,"v4_1_enabled":true,"rules":"*(rw,no_root_squash)",
                   "export_policy":{"id":null,"name":null,"resource_type":null}},
            "space":{"virtual":10,"unique":10,"snapshots":0,"total_physical":10,"data_reduction":null},
            "qos_policy": {"id": null}, "smb": {"enabled": false}});
        let fs: FileSystem = serde_json::from_value(v).unwrap();
        assert_eq!(fs.provisioned, None);
        assert_eq!(fs.space.used(), 10);
        assert_eq!(fs.nfs.export_policy.unwrap().name, None);
    }
}
