//! The simulated array: file systems, snapshots, quotas and NFS export
//! policies, with FlashBlade's rules for each operation. Every method takes
//! the decoded query and JSON body and returns the JSON answer or an
//! [`ApiError`]; HTTP concerns live in `server.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, Query, Selector, list_envelope};
use crate::data;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn new_id() -> String {
    let v: u128 = rand::random();
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// FlashBlade file-system names (our documented assumption).
pub fn valid_fs_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

fn valid_suffix(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

fn valid_policy_name(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
}

const RULE_OPTIONS: &[&str] = &[
    "rw",
    "ro",
    "root_squash",
    "no_root_squash",
    "all_squash",
    "no_all_squash",
    "secure",
    "insecure",
    "atime",
    "noatime",
    "fileid_32bit",
    "no_fileid_32bit",
];

/// Checks an `nfs.rules` string: space-separated `client(options)` entries.
pub fn validate_rules(rules: &str) -> Result<(), String> {
    for entry in rules.split_whitespace() {
        let (client, opts) = entry
            .split_once('(')
            .ok_or_else(|| format!("rule {entry:?} has no (options)"))?;
        let opts = opts
            .strip_suffix(')')
            .ok_or_else(|| format!("rule {entry:?} is missing ')'"))?;
        if client.is_empty()
            || !client
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-*/:@_".contains(&c))
        {
            return Err(format!("rule {entry:?} has an invalid client"));
        }
        for opt in opts.split(',').filter(|o| !o.is_empty()) {
            let ok = RULE_OPTIONS.contains(&opt)
                || opt
                    .strip_prefix("anonuid=")
                    .or_else(|| opt.strip_prefix("anongid="))
                    .is_some_and(|n| n.parse::<u32>().is_ok())
                || opt.strip_prefix("sec=").is_some_and(|s| {
                    s.split(':')
                        .all(|x| matches!(x, "sys" | "krb5" | "krb5i" | "krb5p"))
                });
            if !ok {
                return Err(format!("rule {entry:?} has an unknown option {opt:?}"));
            }
        }
    }
    Ok(())
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Nfs {
    pub v3_enabled: bool,
    pub v4_1_enabled: bool,
    pub rules: String,
    pub export_policy: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileSystem {
    pub id: String,
    pub name: String,
    pub created: i64,
    pub provisioned: Option<i64>,
    pub hard_limit_enabled: bool,
    pub default_user_quota: i64,
    pub default_group_quota: i64,
    pub destroyed: bool,
    pub destroyed_at: Option<i64>,
    pub writable: bool,
    pub snapshot_directory_enabled: bool,
    pub fast_remove_directory_enabled: bool,
    pub nfs: Nfs,
    pub smb_enabled: bool,
    pub http_enabled: bool,
    /// (snapshot id, snapshot name) this file system was copied from.
    pub source: Option<(String, String)>,
    pub group_ownership: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub name: String,
    pub suffix: String,
    pub created: i64,
    pub destroyed: bool,
    pub destroyed_at: Option<i64>,
    pub owner_id: String,
    pub owner_name: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Quota {
    pub fs_id: String,
    pub fs_name: String,
    pub principal_id: u32,
    pub principal_name: Option<String>,
    pub quota: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Rule {
    pub id: String,
    pub client: String,
    pub permission: String,
    pub access: String,
    pub anonuid: Option<i64>,
    pub anongid: Option<i64>,
    pub security: Vec<String>,
    pub secure: bool,
    pub atime: bool,
    pub fileid_32bit: bool,
    pub required_transport_security: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub enabled: bool,
    pub version: String,
    pub rules: Vec<Rule>,
}

/// Everything the array remembers (persisted as JSON when enabled).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArrayState {
    pub array_name: String,
    pub array_id: String,
    pub capacity: i64,
    pub idle_timeout: i64,
    pub file_systems: BTreeMap<String, FileSystem>,
    pub snapshots: BTreeMap<String, Snapshot>,
    pub user_quotas: Vec<Quota>,
    pub group_quotas: Vec<Quota>,
    pub policies: BTreeMap<String, Policy>,
    pub counter: u64,
}

impl ArrayState {
    pub fn new(capacity: i64) -> Self {
        Self {
            array_name: "mock-fb01".into(),
            array_id: new_id(),
            capacity,
            idle_timeout: 0,
            file_systems: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            user_quotas: Vec::new(),
            group_quotas: Vec::new(),
            policies: BTreeMap::new(),
            counter: 0,
        }
    }
}

/// The array model plus where its data lives.
pub struct Array {
    pub st: ArrayState,
    pub data_dir: PathBuf,
    pub snap_dir: PathBuf,
    pub eradication_delay_ms: i64,
    pub persist_path: Option<PathBuf>,
    /// Changed since the last flush.
    pub dirty: bool,
}

fn io_err(e: std::io::Error) -> ApiError {
    ApiError::new(500, format!("Internal error: {e}."), None)
}

fn bool_field(body: &Value, key: &str) -> ApiResult<Option<bool>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad(format!("{key} must be a boolean."), None)),
    }
}

fn bytes_field(body: &Value, key: &str, allow_zero: bool) -> ApiResult<Option<i64>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v > 0 || (allow_zero && v == 0) => Ok(Some(v)),
            _ => Err(ApiError::bad(format!("{key} is out of range."), None)),
        },
        Some(_) => Err(ApiError::bad(
            format!("{key} must be an integer number of bytes."),
            None,
        )),
    }
}

/// `provisioned`: bytes, or null / "" for unlimited. Outer None = not given.
fn provisioned_field(body: &Value) -> ApiResult<Option<Option<i64>>> {
    match body.get("provisioned") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.is_empty() => Ok(Some(None)),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if v >= 0 => Ok(Some(Some(v))),
            _ => Err(ApiError::bad("provisioned is out of range.", None)),
        },
        Some(_) => Err(ApiError::bad(
            "provisioned must be an integer number of bytes.",
            None,
        )),
    }
}

fn reference_name(v: &Value) -> Option<String> {
    v.get("name").and_then(Value::as_str).map(str::to_string)
}

fn lookup_passwd(file: &str, by_name: Option<&str>, by_id: Option<u32>) -> Option<(u32, String)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let id: u32 = f.get(2)?.parse().ok()?;
        let name = f.first()?.to_string();
        let hit = by_name.is_some_and(|n| n == name) || by_id.is_some_and(|i| i == id);
        hit.then_some((id, name))
    })
}

/// A uid or gid with its name when the system knows one.
type Principal = (u32, Option<String>);

/// Resolves `names` or `ids` against objects keyed by name; every element
/// must match, or the call fails naming the first missing one.
fn resolve<T>(
    map: &BTreeMap<String, T>,
    sel: &Selector,
    id_of: impl Fn(&T) -> &str,
    missing: &str,
) -> ApiResult<Vec<String>> {
    match sel {
        Selector::Names(names) => names
            .iter()
            .map(|n| {
                if map.contains_key(n) {
                    Ok(n.clone())
                } else {
                    Err(ApiError::bad(missing, Some(n)))
                }
            })
            .collect(),
        Selector::Ids(ids) => ids
            .iter()
            .map(|i| {
                map.iter()
                    .find(|(_, v)| id_of(v) == i)
                    .map(|(k, _)| k.clone())
                    .ok_or_else(|| ApiError::bad(missing, Some(i)))
            })
            .collect(),
    }
}

/// Which quota table an operation works on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum QuotaKind {
    User,
    Group,
}

impl QuotaKind {
    fn ids_param(self) -> &'static str {
        match self {
            QuotaKind::User => "uids",
            QuotaKind::Group => "gids",
        }
    }
    fn names_param(self) -> &'static str {
        match self {
            QuotaKind::User => "user_names",
            QuotaKind::Group => "group_names",
        }
    }
    fn db(self) -> &'static str {
        match self {
            QuotaKind::User => "/etc/passwd",
            QuotaKind::Group => "/etc/group",
        }
    }
    fn word(self) -> &'static str {
        match self {
            QuotaKind::User => "User",
            QuotaKind::Group => "Group",
        }
    }
}

impl Array {
    pub fn new(st: ArrayState, data_dir: PathBuf, snap_dir: PathBuf, eradication_delay_ms: i64) -> Self {
        Self {
            st,
            data_dir,
            snap_dir,
            eradication_delay_ms,
            persist_path: None,
            dirty: false,
        }
    }

    pub fn fs_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    fn snap_path(&self, snap_id: &str) -> PathBuf {
        self.snap_dir.join(snap_id)
    }

    /// Marks the state changed; [`Array::flush`] writes it.
    pub fn save(&mut self) {
        self.dirty = self.persist_path.is_some();
    }

    /// Writes the state atomically (temp file + rename) if it changed.
    pub fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let Some(path) = &self.persist_path else { return };
        let tmp = path.with_extension("json.tmp");
        let Ok(text) = serde_json::to_vec_pretty(&self.st) else {
            return;
        };
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }

    pub fn load(path: &Path) -> Option<ArrayState> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    fn time_remaining(&self, destroyed_at: Option<i64>, now: i64) -> Value {
        match destroyed_at {
            Some(at) => json!((at + self.eradication_delay_ms - now).max(0)),
            None => Value::Null,
        }
    }

    // ---------------------------------------------------------------- arrays

    pub fn get_arrays(&self, q: &Query) -> ApiResult<Value> {
        let item = json!({
            "id": self.st.array_id,
            "name": self.st.array_name,
            "os": "Purity//FB",
            "version": "4.5.0",
            "idle_timeout": self.st.idle_timeout,
            "eradication_config": {
                "eradication_delay": self.eradication_delay_ms,
                "manual_eradication": "enabled",
            },
        });
        list_envelope(vec![item], q, |_| json!({}))
    }

    pub fn patch_arrays(&mut self, body: &Value) -> ApiResult<Value> {
        if let Some(v) = body.get("idle_timeout") {
            let t = v
                .as_i64()
                .filter(|t| *t == 0 || (300_000..=10_800_000).contains(t))
                .ok_or_else(|| {
                    ApiError::bad("idle_timeout must be 0 or between 300000 and 10800000.", None)
                })?;
            self.st.idle_timeout = t;
        }
        if let Some(n) = body.get("name").and_then(Value::as_str) {
            if !valid_policy_name(n) {
                return Err(ApiError::bad("Invalid array name.", Some(n)));
            }
            self.st.array_name = n.to_string();
        }
        let env = self.get_arrays(&Query::default())?;
        Ok(json!({"items": env["items"]}))
    }

    pub fn space(&self) -> (i64, i64, i64) {
        let mut virt = 0i64;
        let mut snaps = 0i64;
        for fs in self.st.file_systems.values() {
            virt += data::usage(&self.fs_dir(&fs.name)).bytes as i64;
        }
        for s in self.st.snapshots.values() {
            snaps += data::usage(&self.snap_path(&s.id)).bytes as i64;
        }
        let provisioned = self
            .st
            .file_systems
            .values()
            .filter(|f| !f.destroyed)
            .map(|f| f.provisioned.unwrap_or(0))
            .sum();
        (virt, snaps, provisioned)
    }

    pub fn get_arrays_space(&self, q: &Query) -> ApiResult<Value> {
        if let Some(t) = q.get("type")
            && !matches!(t, "array" | "file-system" | "object-store")
        {
            return Err(ApiError::bad("Invalid type.", Some(t)));
        }
        let (virt, snaps, provisioned) = if q.get("type") == Some("object-store") {
            (0, 0, 0)
        } else {
            self.space()
        };
        let used = virt + snaps;
        let item = json!({
            "id": self.st.array_id,
            "name": self.st.array_name,
            "time": now_ms(),
            "capacity": self.st.capacity,
            "parity": 1.0,
            "space": {
                "virtual": virt,
                "unique": virt,
                "snapshots": snaps,
                "total_physical": used,
                "total_used": used,
                "total_provisioned": provisioned,
                "available_provisioned": (self.st.capacity - provisioned).max(0),
                "data_reduction": 1.0,
                "destroyed": 0,
                "destroyed_virtual": 0,
                "shared": 0,
            },
        });
        list_envelope(vec![item], q, |_| json!({}))
    }

    // ----------------------------------------------------------- file systems

    pub fn fs_json(&self, fs: &FileSystem, now: i64) -> Value {
        let snaps: i64 = self
            .st
            .snapshots
            .values()
            .filter(|s| s.owner_id == fs.id)
            .map(|s| data::usage(&self.snap_path(&s.id)).bytes as i64)
            .sum();
        self.fs_json_with(fs, now, snaps)
    }

    /// Bytes held by each file system's snapshots, by file-system id.
    fn snapshot_space(&self) -> std::collections::HashMap<&str, i64> {
        let mut m = std::collections::HashMap::new();
        for s in self.st.snapshots.values() {
            *m.entry(s.owner_id.as_str()).or_default() += data::usage(&self.snap_path(&s.id)).bytes as i64;
        }
        m
    }

    fn fs_json_with(&self, fs: &FileSystem, now: i64, snaps: i64) -> Value {
        let usage = data::usage(&self.fs_dir(&fs.name)).bytes as i64;
        let (src_id, src_name) = match &fs.source {
            Some((i, n)) => (json!(i), json!(n)),
            None => (Value::Null, Value::Null),
        };
        json!({
            "id": fs.id,
            "name": fs.name,
            "created": fs.created,
            "provisioned": fs.provisioned,
            "hard_limit_enabled": fs.hard_limit_enabled,
            "default_user_quota": fs.default_user_quota,
            "default_group_quota": fs.default_group_quota,
            "destroyed": fs.destroyed,
            "time_remaining": self.time_remaining(fs.destroyed_at, now),
            "writable": fs.writable,
            "snapshot_directory_enabled": fs.snapshot_directory_enabled,
            "fast_remove_directory_enabled": fs.fast_remove_directory_enabled,
            "promotion_status": "promoted",
            "requested_promotion_state": "promoted",
            "group_ownership": fs.group_ownership,
            "nfs": {
                "v3_enabled": fs.nfs.v3_enabled,
                "v4_1_enabled": fs.nfs.v4_1_enabled,
                "rules": fs.nfs.rules,
                "export_policy": match &fs.nfs.export_policy {
                    Some(p) => json!({
                        "id": self.st.policies.get(p).map(|x| x.id.clone()),
                        "name": p,
                        "resource_type": "nfs-export-policies",
                    }),
                    None => json!({"id": null, "name": null, "resource_type": null}),
                },
            },
            "smb": {"enabled": fs.smb_enabled},
            "http": {"enabled": fs.http_enabled},
            "multi_protocol": {"access_control_style": "shared", "safeguard_acls": true},
            "source": {
                "id": src_id,
                "name": src_name.clone(),
                "resource_type": if fs.source.is_some() { json!("file-system-snapshots") } else { Value::Null },
                "display_name": src_name,
                "is_local": true,
                "location": {"id": null, "name": null, "resource_type": null},
            },
            "eradication_config": {"eradication_mode": "permission-based", "manual_eradication": "enabled"},
            "space": {
                "virtual": usage,
                "unique": usage,
                "snapshots": snaps,
                "total_physical": usage + snaps,
                "total_used": usage + snaps,
                "total_provisioned": fs.provisioned,
                "available_provisioned": fs.provisioned.map(|p| (p - usage).max(0)),
                "data_reduction": 1.0,
                "destroyed": 0,
                "destroyed_virtual": 0,
                "shared": 0,
            },
        })
    }

    /// Resolves `names`/`ids` to file-system names; every element must exist.
    fn select_fs(&self, sel: &Selector) -> ApiResult<Vec<String>> {
        resolve(
            &self.st.file_systems,
            sel,
            |f| &f.id,
            "File system does not exist.",
        )
    }

    pub fn get_file_systems(&self, q: &Query) -> ApiResult<Value> {
        let now = now_ms();
        let destroyed = q.bool("destroyed")?;
        // A filter that pins the name (the usual existence check) only needs
        // those file systems looked at and built.
        let pinned = q
            .get("filter")
            .and_then(|f| crate::filter::parse(f).ok())
            .and_then(|e| crate::filter::pinned_values(&e, "name"));
        let names: Vec<String> = match q.names_or_ids()? {
            Some(sel) => {
                let names = self.select_fs(&sel)?;
                if let Some(d) = destroyed {
                    for n in &names {
                        if self.st.file_systems[n].destroyed != d {
                            return Err(ApiError::bad(
                                if d {
                                    "File system is not destroyed."
                                } else {
                                    "File system is destroyed."
                                },
                                Some(n),
                            ));
                        }
                    }
                }
                match &pinned {
                    Some(p) => names.into_iter().filter(|n| p.contains(n)).collect(),
                    None => names,
                }
            }
            None => {
                let live = |f: &&FileSystem| destroyed.is_none_or(|d| f.destroyed == d);
                match &pinned {
                    Some(p) => p
                        .iter()
                        .filter_map(|n| self.st.file_systems.get(n))
                        .filter(live)
                        .map(|f| f.name.clone())
                        .collect(),
                    None => self
                        .st
                        .file_systems
                        .values()
                        .filter(live)
                        .map(|f| f.name.clone())
                        .collect(),
                }
            }
        };
        let snap_space = if names.len() * 4 < self.st.file_systems.len() {
            // A few file systems asked for: measure only their snapshots.
            let mut m = std::collections::HashMap::new();
            for n in &names {
                let id = self.st.file_systems[n].id.as_str();
                let bytes: i64 = self
                    .st
                    .snapshots
                    .values()
                    .filter(|s| s.owner_id == id)
                    .map(|s| data::usage(&self.snap_path(&s.id)).bytes as i64)
                    .sum();
                m.insert(id, bytes);
            }
            m
        } else {
            self.snapshot_space()
        };
        let items = names
            .iter()
            .map(|n| {
                let fs = &self.st.file_systems[n];
                self.fs_json_with(fs, now, snap_space.get(fs.id.as_str()).copied().unwrap_or(0))
            })
            .collect();
        list_envelope(items, q, |items| {
            let sum = |k: &str| -> i64 { items.iter().filter_map(|i| i["space"][k].as_i64()).sum() };
            json!({
                "name": null, "id": null, "provisioned": items.iter().filter_map(|i| i["provisioned"].as_i64()).sum::<i64>(),
                "space": {"virtual": sum("virtual"), "unique": sum("unique"), "snapshots": sum("snapshots"),
                          "total_physical": sum("total_physical"), "total_used": sum("total_used"), "data_reduction": null},
            })
        })
    }

    fn apply_nfs(&self, nfs: &mut Nfs, body: &Value, creating: bool) -> ApiResult<()> {
        let Some(n) = body.get("nfs") else { return Ok(()) };
        if !n.is_object() {
            return Err(ApiError::bad("nfs must be an object.", None));
        }
        if let Some(b) = bool_field(n, "v3_enabled")? {
            nfs.v3_enabled = b;
        }
        if let Some(b) = bool_field(n, "v4_1_enabled")? {
            nfs.v4_1_enabled = b;
        }
        let rules = n.get("rules").and_then(Value::as_str);
        let policy = n.get("export_policy").filter(|p| !p.is_null());
        let policy_name = policy.and_then(reference_name);
        if rules.is_some() && policy_name.is_some() {
            return Err(ApiError::bad(
                "rules and export_policy cannot be set together.",
                None,
            ));
        }
        let add = n.get("add_rules").and_then(Value::as_str);
        let remove = n.get("remove_rules").and_then(Value::as_str);
        if (add.is_some() || remove.is_some()) && (rules.is_some() || creating) {
            return Err(ApiError::bad(
                "add_rules and remove_rules cannot be combined with rules.",
                None,
            ));
        }
        if let Some(r) = rules {
            validate_rules(r)
                .map_err(|e| ApiError::bad(format!("Invalid NFS export rules: {e}."), Some(r)))?;
            nfs.rules = r.to_string();
            nfs.export_policy = None;
        }
        if let Some(p) = policy {
            let name = policy_name.ok_or_else(|| ApiError::bad("export_policy needs a name.", None))?;
            if !self.st.policies.contains_key(&name) {
                return Err(ApiError::bad("Export policy does not exist.", Some(&name)));
            }
            let _ = p;
            nfs.export_policy = Some(name);
            nfs.rules = String::new();
        }
        if add.is_some() || remove.is_some() {
            if nfs.export_policy.is_some() {
                return Err(ApiError::bad(
                    "add_rules and remove_rules cannot be used while an export policy is attached.",
                    None,
                ));
            }
            let mut entries: Vec<String> = nfs.rules.split_whitespace().map(str::to_string).collect();
            if let Some(r) = remove {
                validate_rules(r)
                    .map_err(|e| ApiError::bad(format!("Invalid NFS export rules: {e}."), Some(r)))?;
                for x in r.split_whitespace() {
                    entries.retain(|e| e != x);
                }
            }
            if let Some(a) = add {
                validate_rules(a)
                    .map_err(|e| ApiError::bad(format!("Invalid NFS export rules: {e}."), Some(a)))?;
                let mut at = match n.get("after").and_then(Value::as_str) {
                    Some(after) => entries
                        .iter()
                        .position(|e| e == after)
                        .map(|p| p + 1)
                        .ok_or_else(|| ApiError::bad("Rule given in after does not exist.", Some(after)))?,
                    None => entries.len(),
                };
                for x in a.split_whitespace() {
                    if !entries.iter().any(|e| e == x) {
                        entries.insert(at, x.to_string());
                        at += 1;
                    }
                }
            }
            nfs.rules = entries.join(" ");
        }
        Ok(())
    }

    fn find_snapshot(&self, reference: &Value) -> ApiResult<Snapshot> {
        if let Some(name) = reference.get("name").and_then(Value::as_str) {
            return self
                .st
                .snapshots
                .get(name)
                .cloned()
                .ok_or_else(|| ApiError::bad("Source snapshot does not exist.", Some(name)));
        }
        if let Some(id) = reference.get("id").and_then(Value::as_str) {
            return self
                .st
                .snapshots
                .values()
                .find(|s| s.id == id)
                .cloned()
                .ok_or_else(|| ApiError::bad("Source snapshot does not exist.", Some(id)));
        }
        Err(ApiError::bad("source needs a name or an id.", None))
    }

    pub fn post_file_systems(&mut self, q: &Query, body: &Value) -> ApiResult<Value> {
        let names = q
            .list("names")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad("names is required.", None))?;
        let overwrite = q.bool("overwrite")?.unwrap_or(false);
        let discard = q.bool("discard_non_snapshotted_data")?.unwrap_or(false);
        let source = body.get("source").filter(|s| !s.is_null());
        let default_exports = match q.get("default_exports") {
            None => vec!["nfs".to_string(), "smb".to_string()],
            Some(s) => s
                .split(',')
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        };
        let now = now_ms();
        let mut out = Vec::new();
        for name in &names {
            if !valid_fs_name(name) {
                return Err(ApiError::bad("Invalid file system name.", Some(name)));
            }
            if overwrite {
                // Restore in place from a snapshot.
                let src = source
                    .ok_or_else(|| ApiError::bad("overwrite requires a source snapshot.", Some(name)))?;
                if !discard {
                    return Err(ApiError::bad(
                        "overwrite requires discard_non_snapshotted_data=true.",
                        Some(name),
                    ));
                }
                let fs = self
                    .st
                    .file_systems
                    .get(name)
                    .cloned()
                    .ok_or_else(|| ApiError::bad("File system does not exist.", Some(name)))?;
                if fs.destroyed {
                    return Err(ApiError::bad(
                        "Cannot modify a destroyed file system.",
                        Some(name),
                    ));
                }
                let snap = self.find_snapshot(src)?;
                if snap.destroyed {
                    return Err(ApiError::bad("Source snapshot is destroyed.", Some(&snap.name)));
                }
                data::replace_contents(&self.fs_dir(name), &self.snap_path(&snap.id)).map_err(io_err)?;
                let fs = self.st.file_systems.get_mut(name).unwrap();
                fs.source = Some((snap.id.clone(), snap.name.clone()));
                let fs = fs.clone();
                out.push(self.fs_json(&fs, now));
                continue;
            }
            if self.st.file_systems.contains_key(name) {
                return Err(ApiError::bad("File system already exists.", Some(name)));
            }
            let mut nfs = Nfs {
                v3_enabled: false,
                v4_1_enabled: false,
                rules: if default_exports.iter().any(|e| e == "nfs") {
                    "*(rw,no_root_squash)".into()
                } else {
                    String::new()
                },
                export_policy: None,
            };
            self.apply_nfs(&mut nfs, body, true)?;
            let provisioned = provisioned_field(body)?.flatten();
            let hard = bool_field(body, "hard_limit_enabled")?.unwrap_or(false);
            let snap = match source {
                Some(s) => {
                    let snap = self.find_snapshot(s)?;
                    if snap.destroyed {
                        return Err(ApiError::bad("Source snapshot is destroyed.", Some(&snap.name)));
                    }
                    Some(snap)
                }
                None => None,
            };
            let group_ownership = match body.get("group_ownership").and_then(Value::as_str) {
                None => "creator".to_string(),
                Some(g @ ("creator" | "parent-directory")) => g.to_string(),
                Some(g) => return Err(ApiError::bad("Invalid group_ownership.", Some(g))),
            };
            let fs = FileSystem {
                id: new_id(),
                name: name.clone(),
                created: now,
                provisioned,
                hard_limit_enabled: hard,
                default_user_quota: bytes_field(body, "default_user_quota", true)?.unwrap_or(0),
                default_group_quota: bytes_field(body, "default_group_quota", true)?.unwrap_or(0),
                destroyed: false,
                destroyed_at: None,
                writable: bool_field(body, "writable")?.unwrap_or(true),
                snapshot_directory_enabled: bool_field(body, "snapshot_directory_enabled")?.unwrap_or(true),
                fast_remove_directory_enabled: bool_field(body, "fast_remove_directory_enabled")?
                    .unwrap_or(false),
                nfs,
                smb_enabled: body
                    .pointer("/smb/enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                http_enabled: body
                    .pointer("/http/enabled")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                source: snap.as_ref().map(|s| (s.id.clone(), s.name.clone())),
                group_ownership,
            };
            let dir = self.fs_dir(name);
            data::remove_tree(&dir).map_err(io_err)?;
            match &snap {
                Some(s) => data::copy_tree(&self.snap_path(&s.id), &dir).map_err(io_err)?,
                None => std::fs::create_dir_all(&dir).map_err(io_err)?,
            }
            // The root of a new file system is world-writable like an empty
            // export; owners are set by whoever mounts it.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
            out.push(self.fs_json(&fs, now));
            self.st.file_systems.insert(name.clone(), fs);
        }
        Ok(json!({"items": out}))
    }

    pub fn patch_file_systems(&mut self, q: &Query, body: &Value) -> ApiResult<Value> {
        let sel = q
            .names_or_ids()?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        let names = self.select_fs(&sel)?;
        let ignore_usage = q.bool("ignore_usage")?.unwrap_or(false);
        let obj = body
            .as_object()
            .ok_or_else(|| ApiError::bad("The request body must be a JSON object.", None))?;
        let now = now_ms();
        // Validate everything for every target before changing anything.
        let mut updated = Vec::new();
        for name in &names {
            let mut fs = self.st.file_systems[name].clone();
            let destroyed_patch = bool_field(body, "destroyed")?;
            if fs.destroyed {
                let only_recover = obj.keys().all(|k| k == "destroyed") && destroyed_patch == Some(false);
                let only_destroy = obj
                    .keys()
                    .all(|k| matches!(k.as_str(), "destroyed" | "nfs" | "smb" | "http"))
                    && destroyed_patch == Some(true);
                if !only_recover && !only_destroy {
                    return Err(ApiError::bad(
                        "Cannot modify a destroyed file system.",
                        Some(name),
                    ));
                }
            }
            let usage = data::usage(&self.fs_dir(name)).bytes as i64;
            if let Some(p) = provisioned_field(body)? {
                let hard = bool_field(body, "hard_limit_enabled")?.unwrap_or(fs.hard_limit_enabled);
                if let Some(size) = p
                    && hard
                    && size < usage
                    && !ignore_usage
                {
                    return Err(ApiError::bad(
                        "Requested size is below current usage.",
                        Some(name),
                    ));
                }
                fs.provisioned = p;
            }
            if let Some(h) = bool_field(body, "hard_limit_enabled")? {
                if h && !fs.hard_limit_enabled && fs.provisioned.is_some_and(|p| usage > p) && !ignore_usage {
                    return Err(ApiError::bad(
                        "Requested size is below current usage.",
                        Some(name),
                    ));
                }
                fs.hard_limit_enabled = h;
            }
            if let Some(v) = bytes_field(body, "default_user_quota", true)? {
                fs.default_user_quota = v;
            }
            if let Some(v) = bytes_field(body, "default_group_quota", true)? {
                fs.default_group_quota = v;
            }
            for (key, slot) in [
                ("writable", &mut fs.writable),
                ("snapshot_directory_enabled", &mut fs.snapshot_directory_enabled),
                (
                    "fast_remove_directory_enabled",
                    &mut fs.fast_remove_directory_enabled,
                ),
            ] {
                if let Some(b) = bool_field(body, key)? {
                    *slot = b;
                }
            }
            if let Some(b) = body.pointer("/smb/enabled").and_then(Value::as_bool) {
                fs.smb_enabled = b;
            }
            if let Some(b) = body.pointer("/http/enabled").and_then(Value::as_bool) {
                fs.http_enabled = b;
            }
            let mut nfs = fs.nfs.clone();
            self.apply_nfs(&mut nfs, body, false)?;
            fs.nfs = nfs;
            if let Some(new_name) = body.get("name").and_then(Value::as_str)
                && new_name != fs.name
            {
                if !valid_fs_name(new_name) {
                    return Err(ApiError::bad("Invalid file system name.", Some(new_name)));
                }
                if self.st.file_systems.contains_key(new_name) || names.len() > 1 {
                    return Err(ApiError::bad("File system already exists.", Some(new_name)));
                }
                fs.name = new_name.to_string();
            }
            match destroyed_patch {
                Some(true) if !fs.destroyed => {
                    fs.destroyed = true;
                    fs.destroyed_at = Some(now);
                }
                Some(false) if fs.destroyed => {
                    fs.destroyed = false;
                    fs.destroyed_at = None;
                }
                _ => {}
            }
            updated.push((name.clone(), fs));
        }
        let mut out = Vec::new();
        for (old_name, fs) in updated {
            if old_name != fs.name {
                std::fs::rename(self.fs_dir(&old_name), self.fs_dir(&fs.name)).map_err(io_err)?;
                self.st.file_systems.remove(&old_name);
                let snaps: Vec<String> = self
                    .st
                    .snapshots
                    .values()
                    .filter(|s| s.owner_id == fs.id)
                    .map(|s| s.name.clone())
                    .collect();
                for sn in snaps {
                    let mut s = self.st.snapshots.remove(&sn).unwrap();
                    s.owner_name = fs.name.clone();
                    s.name = format!("{}.{}", fs.name, s.suffix);
                    self.st.snapshots.insert(s.name.clone(), s);
                }
                for q in self
                    .st
                    .user_quotas
                    .iter_mut()
                    .chain(self.st.group_quotas.iter_mut())
                {
                    if q.fs_id == fs.id {
                        q.fs_name = fs.name.clone();
                    }
                }
            }
            out.push(self.fs_json(&fs, now));
            self.st.file_systems.insert(fs.name.clone(), fs);
        }
        Ok(json!({"items": out}))
    }

    fn eradicate_fs(&mut self, name: &str) -> ApiResult<()> {
        let fs = self.st.file_systems.remove(name).expect("exists");
        data::remove_tree(&self.fs_dir(name)).map_err(io_err)?;
        let snaps: Vec<Snapshot> = self
            .st
            .snapshots
            .values()
            .filter(|s| s.owner_id == fs.id)
            .cloned()
            .collect();
        for s in snaps {
            data::remove_tree(&self.snap_path(&s.id)).map_err(io_err)?;
            self.st.snapshots.remove(&s.name);
        }
        self.st.user_quotas.retain(|q| q.fs_id != fs.id);
        self.st.group_quotas.retain(|q| q.fs_id != fs.id);
        Ok(())
    }

    pub fn delete_file_systems(&mut self, q: &Query) -> ApiResult<Value> {
        let sel = q
            .names_or_ids()?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        let names = self.select_fs(&sel)?;
        for n in &names {
            if !self.st.file_systems[n].destroyed {
                return Err(ApiError::bad(
                    "File system must be destroyed before it can be eradicated.",
                    Some(n),
                ));
            }
        }
        for n in &names {
            self.eradicate_fs(n)?;
        }
        Ok(Value::Null)
    }

    /// Eradicates destroyed objects whose delay has passed. Returns whether
    /// anything changed.
    pub fn sweep(&mut self, now: i64) -> bool {
        let delay = self.eradication_delay_ms;
        let due_fs: Vec<String> = self
            .st
            .file_systems
            .values()
            .filter(|f| f.destroyed_at.is_some_and(|at| at + delay <= now))
            .map(|f| f.name.clone())
            .collect();
        let due_snaps: Vec<Snapshot> = self
            .st
            .snapshots
            .values()
            .filter(|s| s.destroyed_at.is_some_and(|at| at + delay <= now))
            .cloned()
            .collect();
        let changed = !due_fs.is_empty() || !due_snaps.is_empty();
        for n in due_fs {
            let _ = self.eradicate_fs(&n);
        }
        for s in due_snaps {
            let _ = data::remove_tree(&self.snap_path(&s.id));
            self.st.snapshots.remove(&s.name);
        }
        changed
    }

    // -------------------------------------------------------------- snapshots

    fn snap_json(&self, s: &Snapshot, now: i64) -> Value {
        let owner_destroyed = self
            .st
            .file_systems
            .get(&s.owner_name)
            .is_some_and(|f| f.destroyed);
        json!({
            "id": s.id,
            "name": s.name,
            "suffix": s.suffix,
            "created": s.created,
            "destroyed": s.destroyed || owner_destroyed,
            "time_remaining": self.time_remaining(s.destroyed_at, now),
            "owner": {"id": s.owner_id, "name": s.owner_name, "resource_type": "file-systems"},
            "owner_destroyed": owner_destroyed,
            "source": {
                "id": s.owner_id, "name": s.owner_name, "resource_type": "file-systems",
                "display_name": s.owner_name, "is_local": true,
                "location": {"id": self.st.array_id, "name": self.st.array_name, "resource_type": "arrays"},
            },
            "policy": {"id": null, "name": null, "resource_type": null},
            "policies": [],
        })
    }

    pub fn get_snapshots(&self, q: &Query) -> ApiResult<Value> {
        let now = now_ms();
        let destroyed = q.bool("destroyed")?;
        let mut selected: Vec<&Snapshot> = Vec::new();
        if let Some(list) = q.list("names_or_owner_names") {
            for n in &list {
                if let Some(s) = self.st.snapshots.get(n) {
                    selected.push(s);
                } else if let Some(fs) = self.st.file_systems.get(n) {
                    selected.extend(self.st.snapshots.values().filter(|s| s.owner_id == fs.id));
                } else {
                    return Err(ApiError::bad("Snapshot or file system does not exist.", Some(n)));
                }
            }
        } else if let Some(ids) = q.list("ids") {
            for i in &ids {
                let s = self
                    .st
                    .snapshots
                    .values()
                    .find(|s| &s.id == i)
                    .ok_or_else(|| ApiError::bad("Snapshot does not exist.", Some(i)))?;
                selected.push(s);
            }
        } else if let Some(owner_ids) = q.list("owner_ids") {
            selected.extend(
                self.st
                    .snapshots
                    .values()
                    .filter(|s| owner_ids.contains(&s.owner_id)),
            );
        } else {
            selected.extend(self.st.snapshots.values());
        }
        let items: Vec<Value> = selected
            .into_iter()
            .map(|s| self.snap_json(s, now))
            .filter(|v| destroyed.is_none_or(|d| v["destroyed"].as_bool() == Some(d)))
            .collect();
        list_envelope(items, q, |_| json!({}))
    }

    pub fn post_snapshots(&mut self, q: &Query, body: &Value) -> ApiResult<Value> {
        let sources: Vec<String> = match (q.list("source_names"), q.list("source_ids")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    "source_names and source_ids cannot be used together.",
                    None,
                ));
            }
            (Some(n), None) => self.select_fs(&Selector::Names(n))?,
            (None, Some(i)) => self.select_fs(&Selector::Ids(i))?,
            // No source: every live file system, as FlashBlade does.
            (None, None) => self
                .st
                .file_systems
                .values()
                .filter(|f| !f.destroyed)
                .map(|f| f.name.clone())
                .collect(),
        };
        let suffix = match body.get("suffix") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                if !valid_suffix(s) {
                    return Err(ApiError::bad("Invalid snapshot suffix.", Some(s)));
                }
                Some(s.clone())
            }
            Some(_) => return Err(ApiError::bad("suffix must be a string.", None)),
        };
        for fs_name in &sources {
            let fs = &self.st.file_systems[fs_name];
            if fs.destroyed {
                return Err(ApiError::bad(
                    "Cannot snapshot a destroyed file system.",
                    Some(fs_name),
                ));
            }
            if let Some(sfx) = &suffix {
                let name = format!("{fs_name}.{sfx}");
                if self.st.snapshots.contains_key(&name) {
                    return Err(ApiError::bad("Snapshot already exists.", Some(&name)));
                }
            }
        }
        let now = now_ms();
        let mut out = Vec::new();
        for fs_name in sources {
            let fs = self.st.file_systems[&fs_name].clone();
            let sfx = match &suffix {
                Some(s) => s.clone(),
                None => loop {
                    self.st.counter += 1;
                    let s = self.st.counter.to_string();
                    if !self.st.snapshots.contains_key(&format!("{fs_name}.{s}")) {
                        break s;
                    }
                },
            };
            let snap = Snapshot {
                id: new_id(),
                name: format!("{fs_name}.{sfx}"),
                suffix: sfx,
                created: now,
                destroyed: false,
                destroyed_at: None,
                owner_id: fs.id.clone(),
                owner_name: fs_name.clone(),
            };
            data::copy_tree(&self.fs_dir(&fs_name), &self.snap_path(&snap.id)).map_err(io_err)?;
            out.push(self.snap_json(&snap, now));
            self.st.snapshots.insert(snap.name.clone(), snap);
        }
        Ok(json!({"items": out}))
    }

    fn select_snaps(&self, q: &Query) -> ApiResult<Vec<String>> {
        match q.names_or_ids()? {
            Some(sel) => resolve(&self.st.snapshots, &sel, |s| &s.id, "Snapshot does not exist."),
            None => Err(ApiError::bad("names or ids is required.", None)),
        }
    }

    pub fn patch_snapshots(&mut self, q: &Query, body: &Value) -> ApiResult<Value> {
        let names = self.select_snaps(q)?;
        let destroyed = bool_field(body, "destroyed")?;
        let now = now_ms();
        for n in &names {
            let s = &self.st.snapshots[n];
            if destroyed == Some(false)
                && self
                    .st
                    .file_systems
                    .get(&s.owner_name)
                    .is_some_and(|f| f.destroyed)
            {
                return Err(ApiError::bad(
                    "Cannot recover a snapshot of a destroyed file system.",
                    Some(n),
                ));
            }
        }
        let mut out = Vec::new();
        for n in &names {
            let s = self.st.snapshots.get_mut(n).unwrap();
            match destroyed {
                Some(true) if !s.destroyed => {
                    s.destroyed = true;
                    s.destroyed_at = Some(now);
                }
                Some(false) => {
                    s.destroyed = false;
                    s.destroyed_at = None;
                }
                _ => {}
            }
            let s = s.clone();
            out.push(self.snap_json(&s, now));
        }
        Ok(json!({"items": out}))
    }

    pub fn delete_snapshots(&mut self, q: &Query) -> ApiResult<Value> {
        let names = self.select_snaps(q)?;
        for n in &names {
            let s = &self.st.snapshots[n];
            let owner_destroyed = self
                .st
                .file_systems
                .get(&s.owner_name)
                .is_some_and(|f| f.destroyed);
            if !s.destroyed && !owner_destroyed {
                return Err(ApiError::bad(
                    "Snapshot must be destroyed before it can be eradicated.",
                    Some(n),
                ));
            }
        }
        for n in &names {
            let s = self.st.snapshots.remove(n).unwrap();
            data::remove_tree(&self.snap_path(&s.id)).map_err(io_err)?;
        }
        Ok(Value::Null)
    }

    // ----------------------------------------------------------------- quotas

    fn quotas(&self, kind: QuotaKind) -> &Vec<Quota> {
        match kind {
            QuotaKind::User => &self.st.user_quotas,
            QuotaKind::Group => &self.st.group_quotas,
        }
    }

    fn quotas_mut(&mut self, kind: QuotaKind) -> &mut Vec<Quota> {
        match kind {
            QuotaKind::User => &mut self.st.user_quotas,
            QuotaKind::Group => &mut self.st.group_quotas,
        }
    }

    fn quota_json(&self, kind: QuotaKind, q: &Quota) -> Value {
        let fs = self.st.file_systems.get(&q.fs_name);
        let usage = data::usage(&self.fs_dir(&q.fs_name));
        let used = match kind {
            QuotaKind::User => usage.by_uid.get(&q.principal_id),
            QuotaKind::Group => usage.by_gid.get(&q.principal_id),
        }
        .copied()
        .unwrap_or(0);
        let default = fs
            .map(|f| match kind {
                QuotaKind::User => f.default_user_quota,
                QuotaKind::Group => f.default_group_quota,
            })
            .unwrap_or(0);
        let principal = json!({"id": q.principal_id, "name": q.principal_name});
        let mut v = json!({
            "name": format!("{}/{}", q.fs_name, q.principal_id),
            "file_system": {"id": q.fs_id, "name": q.fs_name, "resource_type": "file-systems"},
            "quota": q.quota,
            "usage": used,
            "file_system_default_quota": default,
        });
        v[match kind {
            QuotaKind::User => "user",
            QuotaKind::Group => "group",
        }] = principal;
        v
    }

    /// Resolves uids/user_names (gids/group_names) to (id, name).
    fn principals(&self, kind: QuotaKind, q: &Query) -> ApiResult<Option<Vec<Principal>>> {
        match (q.list(kind.ids_param()), q.list(kind.names_param())) {
            (Some(_), Some(_)) => Err(ApiError::bad(
                format!(
                    "{} and {} cannot be used together.",
                    kind.ids_param(),
                    kind.names_param()
                ),
                None,
            )),
            (Some(ids), None) => ids
                .iter()
                .map(|i| {
                    let id: u32 = i
                        .parse()
                        .map_err(|_| ApiError::bad(format!("Invalid {}.", kind.ids_param()), Some(i)))?;
                    Ok((id, lookup_passwd(kind.db(), None, Some(id)).map(|(_, n)| n)))
                })
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            (None, Some(names)) => names
                .iter()
                .map(|n| {
                    lookup_passwd(kind.db(), Some(n), None)
                        .map(|(id, name)| (id, Some(name)))
                        .ok_or_else(|| ApiError::bad(format!("{} does not exist.", kind.word()), Some(n)))
                })
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            (None, None) => Ok(None),
        }
    }

    fn quota_file_systems(&self, q: &Query, required: bool) -> ApiResult<Option<Vec<String>>> {
        let sel = match (q.list("file_system_names"), q.list("file_system_ids")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    "file_system_names and file_system_ids cannot be used together.",
                    None,
                ));
            }
            (Some(n), None) => Some(Selector::Names(n)),
            (None, Some(i)) => Some(Selector::Ids(i)),
            (None, None) if required => {
                return Err(ApiError::bad(
                    "file_system_names or file_system_ids is required.",
                    None,
                ));
            }
            (None, None) => None,
        };
        sel.map(|s| self.select_fs(&s)).transpose()
    }

    pub fn get_quotas(&self, kind: QuotaKind, q: &Query) -> ApiResult<Value> {
        let fss = self.quota_file_systems(q, false)?;
        let principals = self.principals(kind, q)?;
        let items = self
            .quotas(kind)
            .iter()
            .filter(|x| fss.as_ref().is_none_or(|f| f.contains(&x.fs_name)))
            .filter(|x| {
                principals
                    .as_ref()
                    .is_none_or(|p| p.iter().any(|(id, _)| *id == x.principal_id))
            })
            .filter(|x| {
                q.list("names")
                    .is_none_or(|n| n.contains(&format!("{}/{}", x.fs_name, x.principal_id)))
            })
            .map(|x| self.quota_json(kind, x))
            .collect();
        list_envelope(items, q, |_| json!({}))
    }

    fn quota_value(body: &Value) -> ApiResult<i64> {
        match body.get("quota") {
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|v| *v > 0)
                .ok_or_else(|| ApiError::bad("quota must be greater than zero.", None)),
            _ => Err(ApiError::bad("quota is required.", None)),
        }
    }

    pub fn post_quotas(&mut self, kind: QuotaKind, q: &Query, body: &Value) -> ApiResult<Value> {
        let fss = self.quota_file_systems(q, true)?.unwrap_or_default();
        let principals = self.principals(kind, q)?.ok_or_else(|| {
            ApiError::bad(
                format!("{} or {} is required.", kind.ids_param(), kind.names_param()),
                None,
            )
        })?;
        let quota = Self::quota_value(body)?;
        for fs in &fss {
            if self.st.file_systems[fs].destroyed {
                return Err(ApiError::bad("Cannot modify a destroyed file system.", Some(fs)));
            }
            for (id, _) in &principals {
                if self
                    .quotas(kind)
                    .iter()
                    .any(|x| &x.fs_name == fs && x.principal_id == *id)
                {
                    return Err(ApiError::bad(
                        "Quota already exists.",
                        Some(&format!("{fs}/{id}")),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        for fs in &fss {
            let fs_id = self.st.file_systems[fs].id.clone();
            for (id, name) in &principals {
                let entry = Quota {
                    fs_id: fs_id.clone(),
                    fs_name: fs.clone(),
                    principal_id: *id,
                    principal_name: name.clone(),
                    quota,
                };
                out.push(self.quota_json(kind, &entry));
                self.quotas_mut(kind).push(entry);
            }
        }
        Ok(json!({"items": out}))
    }

    fn quota_indices(&self, kind: QuotaKind, q: &Query) -> ApiResult<Vec<usize>> {
        let fss = self.quota_file_systems(q, true)?.unwrap_or_default();
        let principals = self.principals(kind, q)?.ok_or_else(|| {
            ApiError::bad(
                format!("{} or {} is required.", kind.ids_param(), kind.names_param()),
                None,
            )
        })?;
        let mut idx = Vec::new();
        for fs in &fss {
            for (id, _) in &principals {
                let i = self
                    .quotas(kind)
                    .iter()
                    .position(|x| &x.fs_name == fs && x.principal_id == *id)
                    .ok_or_else(|| ApiError::bad("Quota does not exist.", Some(&format!("{fs}/{id}"))))?;
                idx.push(i);
            }
        }
        Ok(idx)
    }

    pub fn patch_quotas(&mut self, kind: QuotaKind, q: &Query, body: &Value) -> ApiResult<Value> {
        let idx = self.quota_indices(kind, q)?;
        let quota = Self::quota_value(body)?;
        let mut out = Vec::new();
        for i in idx {
            self.quotas_mut(kind)[i].quota = quota;
            let entry = self.quotas(kind)[i].clone();
            out.push(self.quota_json(kind, &entry));
        }
        Ok(json!({"items": out}))
    }

    pub fn delete_quotas(&mut self, kind: QuotaKind, q: &Query) -> ApiResult<Value> {
        let mut idx = self.quota_indices(kind, q)?;
        idx.sort_unstable();
        idx.dedup();
        for i in idx.into_iter().rev() {
            self.quotas_mut(kind).remove(i);
        }
        Ok(Value::Null)
    }

    // ------------------------------------------------------ export policies

    fn bump_version(&mut self, policy: &str) {
        self.st.counter += 1;
        let v = format!("{:016x}", self.st.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        if let Some(p) = self.st.policies.get_mut(policy) {
            p.version = v;
        }
    }

    fn rule_json(&self, p: &Policy, i: usize, r: &Rule) -> Value {
        json!({
            "id": r.id,
            "name": format!("{}.{}", p.name, i + 1),
            "index": i + 1,
            "client": r.client,
            "permission": r.permission,
            "access": r.access,
            "anonuid": r.anonuid,
            "anongid": r.anongid,
            "security": r.security,
            "secure": r.secure,
            "atime": r.atime,
            "fileid_32bit": r.fileid_32bit,
            "required_transport_security": r.required_transport_security,
            "policy": {"id": p.id, "name": p.name, "resource_type": "nfs-export-policies"},
            "policy_version": p.version,
        })
    }

    fn policy_json(&self, p: &Policy) -> Value {
        json!({
            "id": p.id,
            "name": p.name,
            "enabled": p.enabled,
            "is_local": true,
            "location": {"id": self.st.array_id, "name": self.st.array_name, "resource_type": "arrays"},
            "policy_type": "nfs",
            "version": p.version,
            "rules": p.rules.iter().enumerate().map(|(i, r)| self.rule_json(p, i, r)).collect::<Vec<_>>(),
        })
    }

    fn rule_from(body: &Value, base: Option<&Rule>) -> ApiResult<Rule> {
        let mut r = base.cloned().unwrap_or(Rule {
            id: new_id(),
            client: "*".into(),
            permission: "ro".into(),
            access: "root-squash".into(),
            anonuid: None,
            anongid: None,
            security: vec!["sys".into()],
            secure: false,
            atime: true,
            fileid_32bit: false,
            required_transport_security: "none".into(),
        });
        if let Some(c) = body.get("client").and_then(Value::as_str) {
            validate_rules(&format!("{c}(rw)")).map_err(|_| ApiError::bad("Invalid client.", Some(c)))?;
            r.client = c.to_string();
        }
        if let Some(p) = body.get("permission").and_then(Value::as_str) {
            if !matches!(p, "rw" | "ro") {
                return Err(ApiError::bad("permission must be rw or ro.", Some(p)));
            }
            r.permission = p.to_string();
        }
        if let Some(a) = body.get("access").and_then(Value::as_str) {
            if !matches!(a, "root-squash" | "all-squash" | "no-squash") {
                return Err(ApiError::bad(
                    "access must be root-squash, all-squash or no-squash.",
                    Some(a),
                ));
            }
            r.access = a.to_string();
        }
        for (key, slot) in [("anonuid", &mut r.anonuid), ("anongid", &mut r.anongid)] {
            match body.get(key) {
                None => {}
                Some(Value::Null) => *slot = None,
                Some(Value::String(s)) if s.is_empty() => *slot = None,
                Some(Value::Number(n)) if n.as_i64().is_some_and(|v| (0..=u32::MAX as i64).contains(&v)) => {
                    *slot = n.as_i64()
                }
                Some(_) => return Err(ApiError::bad(format!("Invalid {key}."), None)),
            }
        }
        if let Some(s) = body.get("security").and_then(Value::as_array) {
            let sec: Vec<String> = s.iter().filter_map(Value::as_str).map(str::to_string).collect();
            if sec.is_empty()
                || !sec
                    .iter()
                    .all(|x| matches!(x.as_str(), "sys" | "krb5" | "krb5i" | "krb5p"))
            {
                return Err(ApiError::bad("Invalid security.", None));
            }
            r.security = sec;
        }
        for (key, slot) in [
            ("secure", &mut r.secure),
            ("atime", &mut r.atime),
            ("fileid_32bit", &mut r.fileid_32bit),
        ] {
            if let Some(b) = bool_field(body, key)? {
                *slot = b;
            }
        }
        if let Some(t) = body.get("required_transport_security").and_then(Value::as_str) {
            if !matches!(t, "none" | "tls" | "mutual-tls") {
                return Err(ApiError::bad("Invalid required_transport_security.", Some(t)));
            }
            r.required_transport_security = t.to_string();
        }
        Ok(r)
    }

    /// The evaluation group of a client: IP addresses and networks first,
    /// then other names, then `*`.
    fn client_group(client: &str) -> u8 {
        if client == "*" {
            2
        } else if client
            .split('/')
            .next()
            .is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok())
        {
            0
        } else {
            1
        }
    }

    fn select_policies(&self, q: &Query, names_key: &str, ids_key: &str) -> ApiResult<Option<Vec<String>>> {
        let sel = match (q.list(names_key), q.list(ids_key)) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad(
                    format!("{names_key} and {ids_key} cannot be used together."),
                    None,
                ));
            }
            (Some(n), None) => Selector::Names(n),
            (None, Some(i)) => Selector::Ids(i),
            (None, None) => return Ok(None),
        };
        resolve(
            &self.st.policies,
            &sel,
            |p| &p.id,
            "Export policy does not exist.",
        )
        .map(Some)
    }

    fn check_versions(&self, q: &Query, names: &[String]) -> ApiResult<()> {
        if let Some(versions) = q.list("versions") {
            if versions.len() != names.len() {
                return Err(ApiError::bad("versions must list one version per policy.", None));
            }
            for (n, v) in names.iter().zip(versions) {
                if self.st.policies[n].version != v {
                    return Err(ApiError::new(
                        412,
                        "The policy has been changed; reload it and try again.",
                        Some(n),
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn get_policies(&self, q: &Query) -> ApiResult<Value> {
        let names = self.select_policies(q, "names", "ids")?;
        let items = self
            .st
            .policies
            .values()
            .filter(|p| names.as_ref().is_none_or(|n| n.contains(&p.name)))
            .map(|p| self.policy_json(p))
            .collect();
        list_envelope(items, q, |_| json!({}))
    }

    pub fn post_policies(&mut self, q: &Query, body: &Value) -> ApiResult<Value> {
        let names = q
            .list("names")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad("names is required.", None))?;
        let mut rules = Vec::new();
        if let Some(list) = body.get("rules").and_then(Value::as_array) {
            for r in list {
                rules.push(Self::rule_from(r, None)?);
            }
        }
        rules.sort_by_key(|r| Self::client_group(&r.client));
        for n in &names {
            if !valid_policy_name(n) {
                return Err(ApiError::bad("Invalid policy name.", Some(n)));
            }
            if self.st.policies.contains_key(n) {
                return Err(ApiError::bad("Export policy already exists.", Some(n)));
            }
        }
        let mut out = Vec::new();
        for n in names {
            let p = Policy {
                id: new_id(),
                name: n.clone(),
                enabled: bool_field(body, "enabled")?.unwrap_or(true),
                version: String::new(),
                rules: rules
                    .iter()
                    .map(|r| Rule {
                        id: new_id(),
                        ..r.clone()
                    })
                    .collect(),
            };
            self.st.policies.insert(n.clone(), p);
            self.bump_version(&n);
            out.push(self.policy_json(&self.st.policies[&n]));
        }
        Ok(json!({"items": out}))
    }

    pub fn patch_policies(&mut self, q: &Query, body: &Value) -> ApiResult<Value> {
        let names = self
            .select_policies(q, "names", "ids")?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        self.check_versions(q, &names)?;
        let enabled = bool_field(body, "enabled")?;
        let new_rules = match body.get("rules").and_then(Value::as_array) {
            Some(list) => {
                let mut v = list
                    .iter()
                    .map(|r| Self::rule_from(r, None))
                    .collect::<ApiResult<Vec<_>>>()?;
                v.sort_by_key(|r| Self::client_group(&r.client));
                Some(v)
            }
            None => None,
        };
        let rename = body.get("name").and_then(Value::as_str).map(str::to_string);
        if let Some(r) = &rename
            && (names.len() != 1
                || !valid_policy_name(r)
                || (self.st.policies.contains_key(r) && r != &names[0]))
        {
            return Err(ApiError::bad("Invalid or duplicate policy name.", Some(r)));
        }
        let mut out = Vec::new();
        for n in names {
            {
                let p = self.st.policies.get_mut(&n).unwrap();
                if let Some(e) = enabled {
                    p.enabled = e;
                }
                if let Some(r) = &new_rules {
                    p.rules = r.clone();
                }
            }
            let mut key = n.clone();
            if let Some(r) = &rename
                && r != &n
            {
                let mut p = self.st.policies.remove(&n).unwrap();
                p.name = r.clone();
                self.st.policies.insert(r.clone(), p);
                for fs in self.st.file_systems.values_mut() {
                    if fs.nfs.export_policy.as_deref() == Some(n.as_str()) {
                        fs.nfs.export_policy = Some(r.clone());
                    }
                }
                key = r.clone();
            }
            self.bump_version(&key);
            out.push(self.policy_json(&self.st.policies[&key]));
        }
        Ok(json!({"items": out}))
    }

    pub fn delete_policies(&mut self, q: &Query) -> ApiResult<Value> {
        let names = self
            .select_policies(q, "names", "ids")?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        self.check_versions(q, &names)?;
        for n in &names {
            if let Some(fs) = self
                .st
                .file_systems
                .values()
                .find(|f| f.nfs.export_policy.as_deref() == Some(n.as_str()))
            {
                return Err(ApiError::bad(
                    format!("Export policy is in use by file system {}.", fs.name),
                    Some(n),
                ));
            }
        }
        for n in names {
            self.st.policies.remove(&n);
        }
        Ok(Value::Null)
    }

    /// Finds rules by `names` (`policy.index`) or `ids`: (policy, index).
    fn select_rules(&self, q: &Query) -> ApiResult<Option<Vec<(String, usize)>>> {
        let find_name = |n: &str| -> ApiResult<(String, usize)> {
            let (pname, idx) = n
                .rsplit_once('.')
                .ok_or_else(|| ApiError::bad("Rule does not exist.", Some(n)))?;
            let i: usize = idx
                .parse()
                .map_err(|_| ApiError::bad("Rule does not exist.", Some(n)))?;
            match self.st.policies.get(pname) {
                Some(p) if i >= 1 && i <= p.rules.len() => Ok((pname.to_string(), i - 1)),
                _ => Err(ApiError::bad("Rule does not exist.", Some(n))),
            }
        };
        let find_id = |id: &str| -> ApiResult<(String, usize)> {
            for p in self.st.policies.values() {
                if let Some(i) = p.rules.iter().position(|r| r.id == id) {
                    return Ok((p.name.clone(), i));
                }
            }
            Err(ApiError::bad("Rule does not exist.", Some(id)))
        };
        match q.names_or_ids()? {
            Some(Selector::Names(n)) => n
                .iter()
                .map(|x| find_name(x))
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            Some(Selector::Ids(i)) => i
                .iter()
                .map(|x| find_id(x))
                .collect::<ApiResult<Vec<_>>>()
                .map(Some),
            None => Ok(None),
        }
    }

    pub fn get_rules(&self, q: &Query) -> ApiResult<Value> {
        let policies = self.select_policies(q, "policy_names", "policy_ids")?;
        let chosen = self.select_rules(q)?;
        let mut items = Vec::new();
        for p in self.st.policies.values() {
            if policies.as_ref().is_some_and(|n| !n.contains(&p.name)) {
                continue;
            }
            for (i, r) in p.rules.iter().enumerate() {
                if chosen.as_ref().is_some_and(|c| !c.contains(&(p.name.clone(), i))) {
                    continue;
                }
                items.push(self.rule_json(p, i, r));
            }
        }
        list_envelope(items, q, |_| json!({}))
    }

    pub fn post_rules(&mut self, q: &Query, body: &Value) -> ApiResult<Value> {
        let names = self
            .select_policies(q, "policy_names", "policy_ids")?
            .ok_or_else(|| ApiError::bad("policy_names or policy_ids is required.", None))?;
        self.check_versions(q, &names)?;
        let rule = Self::rule_from(body, None)?;
        let group = Self::client_group(&rule.client);
        let mut out = Vec::new();
        for n in names {
            let before = match (q.get("before_rule_name"), q.get("before_rule_id")) {
                (Some(b), _) => Some(
                    b.rsplit_once('.')
                        .filter(|(p, _)| *p == n)
                        .and_then(|(_, i)| i.parse::<usize>().ok())
                        .filter(|i| *i >= 1 && *i <= self.st.policies[&n].rules.len())
                        .map(|i| i - 1)
                        .ok_or_else(|| ApiError::bad("Rule does not exist.", Some(b)))?,
                ),
                (None, Some(id)) => Some(
                    self.st.policies[&n]
                        .rules
                        .iter()
                        .position(|r| r.id == id)
                        .ok_or_else(|| ApiError::bad("Rule does not exist.", Some(id)))?,
                ),
                (None, None) => None,
            };
            let p = self.st.policies.get_mut(&n).unwrap();
            let group_end = p
                .rules
                .iter()
                .rposition(|r| Self::client_group(&r.client) <= group)
                .map_or(0, |i| i + 1);
            let at = match before {
                Some(b) if Self::client_group(&p.rules[b].client) == group => b,
                Some(_) => {
                    return Err(ApiError::bad(
                        "A rule can only be placed within its own client group.",
                        None,
                    ));
                }
                None => group_end,
            };
            let new_rule = Rule {
                id: new_id(),
                ..rule.clone()
            };
            p.rules.insert(at, new_rule);
            self.bump_version(&n);
            let p = &self.st.policies[&n];
            out.push(self.rule_json(p, at, &p.rules[at]));
        }
        Ok(json!({"items": out}))
    }

    pub fn patch_rules(&mut self, q: &Query, body: &Value) -> ApiResult<Value> {
        let chosen = self
            .select_rules(q)?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        let mut out = Vec::new();
        for (pname, i) in chosen {
            let r = Self::rule_from(body, Some(&self.st.policies[&pname].rules[i]))?;
            let id = r.id.clone();
            let p = self.st.policies.get_mut(&pname).unwrap();
            p.rules[i] = r;
            // A changed client may move the rule to another evaluation group.
            p.rules.sort_by_key(|x| Self::client_group(&x.client));
            self.bump_version(&pname);
            let p = &self.st.policies[&pname];
            let idx = p.rules.iter().position(|x| x.id == id).expect("rule kept");
            out.push(self.rule_json(p, idx, &p.rules[idx]));
        }
        Ok(json!({"items": out}))
    }

    pub fn delete_rules(&mut self, q: &Query) -> ApiResult<Value> {
        let mut chosen = self
            .select_rules(q)?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        chosen.sort();
        chosen.dedup();
        for (pname, i) in chosen.into_iter().rev() {
            self.st.policies.get_mut(&pname).unwrap().rules.remove(i);
            self.bump_version(&pname);
        }
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_strings() {
        validate_rules("*(rw,no_root_squash)").unwrap();
        validate_rules("10.0.0.0/8(rw,root_squash,anonuid=65534) @ng(ro) *.dom.com(ro,sec=krb5:krb5p)")
            .unwrap();
        validate_rules("").unwrap();
        assert!(validate_rules("10.0.0.0/8").is_err());
        assert!(validate_rules("*(rw,bogus)").is_err());
        assert!(validate_rules("*(rw").is_err());
        assert!(validate_rules("a;b(rw)").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_fs_name("k8s-pvc-1"));
        assert!(valid_fs_name(&"a".repeat(63)));
        assert!(!valid_fs_name(&"a".repeat(64)));
        assert!(!valid_fs_name("-x"));
        assert!(!valid_fs_name("a.b"));
        assert!(!valid_fs_name(""));
    }
}
