//! `file-systems`: create (empty, cloned from a snapshot, or restored in
//! place), list, change, destroy, recover and eradicate.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Array, Snapshot, Store, io_err, new_id, now_ms, read, resolve, valid_name, validate_rules, write,
};
use crate::api::{ApiError, ApiResult, Body, Query, Reply, Selector, clearable, list_envelope};
use crate::data;

pub(super) fn routes<S: Store>() -> Router<Arc<S>> {
    Router::new().route(
        "/api/{version}/file-systems",
        get(list::<S>)
            .post(create::<S>)
            .patch(update::<S>)
            .delete(eradicate::<S>),
    )
}

async fn list<S: Store>(State(s): State<Arc<S>>, q: Query) -> ApiResult<Reply> {
    read(s, move |a| a.get_file_systems(&q)).await
}

async fn create<S: Store>(State(s): State<Arc<S>>, q: Query, Body(b): Body<FsBody>) -> ApiResult<Reply> {
    write(s, move |a| a.post_file_systems(&q, &b)).await
}

async fn update<S: Store>(State(s): State<Arc<S>>, q: Query, Body(b): Body<FsBody>) -> ApiResult<Reply> {
    write(s, move |a| a.patch_file_systems(&q, &b)).await
}

async fn eradicate<S: Store>(State(s): State<Arc<S>>, q: Query) -> ApiResult<Reply> {
    write(s, move |a| a.delete_file_systems(&q)).await
}

/// The POST and PATCH body. An absent and a null field both mean "not
/// given" (PATCH keeps the value), except `provisioned`, where null or ""
/// means unlimited. Unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct FsBody {
    name: Option<String>,
    /// Outer `None`: not given; `Some(None)`: unlimited.
    #[serde(deserialize_with = "clearable")]
    provisioned: Option<Option<i64>>,
    hard_limit_enabled: Option<bool>,
    default_user_quota: Option<i64>,
    default_group_quota: Option<i64>,
    destroyed: Option<bool>,
    writable: Option<bool>,
    snapshot_directory_enabled: Option<bool>,
    fast_remove_directory_enabled: Option<bool>,
    nfs: Option<NfsBody>,
    smb: Option<Toggle>,
    http: Option<Toggle>,
    /// The snapshot to clone or restore from (POST).
    source: Option<Reference>,
    group_ownership: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct NfsBody {
    v3_enabled: Option<bool>,
    v4_1_enabled: Option<bool>,
    rules: Option<String>,
    add_rules: Option<String>,
    remove_rules: Option<String>,
    /// Where `add_rules` go: after this existing rule.
    after: Option<String>,
    export_policy: Option<Reference>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Toggle {
    enabled: Option<bool>,
}

/// Another object, by name or id.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Reference {
    name: Option<String>,
    id: Option<String>,
}

impl FsBody {
    /// `provisioned` when given: bytes, or `None` for unlimited.
    fn provisioned(&self) -> ApiResult<Option<Option<i64>>> {
        match self.provisioned {
            Some(Some(v)) if v < 0 => Err(ApiError::bad("provisioned is out of range.", None)),
            p => Ok(p),
        }
    }

    /// Whether the body sets anything a destroyed file system refuses:
    /// everything but `destroyed` (and, when destroying, the protocols).
    fn changes_destroyed(&self) -> bool {
        let protocols = self.nfs.is_some() || self.smb.is_some() || self.http.is_some();
        let rest = FsBody {
            destroyed: None,
            nfs: None,
            smb: None,
            http: None,
            ..self.clone()
        } != FsBody::default();
        match self.destroyed {
            Some(false) => rest || protocols,
            Some(true) => rest,
            None => true,
        }
    }
}

/// A default quota: bytes, 0 for none.
fn default_quota(v: Option<i64>, key: &str) -> ApiResult<Option<i64>> {
    match v {
        Some(v) if v < 0 => Err(ApiError::bad(format!("{key} is out of range."), None)),
        v => Ok(v),
    }
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

impl FileSystem {
    /// The size past which writes are refused: the provisioned size while
    /// the hard limit is on.
    pub(crate) fn write_limit(&self) -> Option<u64> {
        self.provisioned
            .filter(|_| self.hard_limit_enabled)
            .map(|p| p.max(0) as u64)
    }
}

impl Array {
    pub(crate) fn fs_json(&self, fs: &FileSystem, now: i64) -> Value {
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
    pub(super) fn select_fs(&self, sel: &Selector) -> ApiResult<Vec<String>> {
        resolve(
            &self.st.file_systems,
            sel,
            |f| &f.id,
            "File system does not exist.",
        )
    }

    pub(crate) fn get_file_systems(&self, q: &Query) -> ApiResult<Value> {
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

    fn apply_nfs(&self, nfs: &mut Nfs, body: Option<&NfsBody>, creating: bool) -> ApiResult<()> {
        let Some(n) = body else { return Ok(()) };
        if let Some(b) = n.v3_enabled {
            nfs.v3_enabled = b;
        }
        if let Some(b) = n.v4_1_enabled {
            nfs.v4_1_enabled = b;
        }
        let rules = n.rules.as_deref();
        let policy = n.export_policy.as_ref();
        let policy_name = policy.and_then(|p| p.name.clone());
        if rules.is_some() && policy_name.is_some() {
            return Err(ApiError::bad(
                "rules and export_policy cannot be set together.",
                None,
            ));
        }
        let add = n.add_rules.as_deref();
        let remove = n.remove_rules.as_deref();
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
        if policy.is_some() {
            let name = policy_name.ok_or_else(|| ApiError::bad("export_policy needs a name.", None))?;
            if !self.st.policies.contains_key(&name) {
                return Err(ApiError::bad("Export policy does not exist.", Some(&name)));
            }
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
                let mut at = match n.after.as_deref() {
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

    fn find_snapshot(&self, reference: &Reference) -> ApiResult<Snapshot> {
        if let Some(name) = reference.name.as_deref() {
            return self
                .st
                .snapshots
                .get(name)
                .cloned()
                .ok_or_else(|| ApiError::bad("Source snapshot does not exist.", Some(name)));
        }
        if let Some(id) = reference.id.as_deref() {
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

    fn post_file_systems(&mut self, q: &Query, body: &FsBody) -> ApiResult<Value> {
        let names = q
            .list("names")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad("names is required.", None))?;
        let overwrite = q.bool("overwrite")?.unwrap_or(false);
        let discard = q.bool("discard_non_snapshotted_data")?.unwrap_or(false);
        let source = body.source.as_ref();
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
            if !valid_name(name) {
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
            self.apply_nfs(&mut nfs, body.nfs.as_ref(), true)?;
            let provisioned = body.provisioned()?.flatten();
            let hard = body.hard_limit_enabled.unwrap_or(false);
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
            let group_ownership = match body.group_ownership.as_deref() {
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
                default_user_quota: default_quota(body.default_user_quota, "default_user_quota")?
                    .unwrap_or(0),
                default_group_quota: default_quota(body.default_group_quota, "default_group_quota")?
                    .unwrap_or(0),
                destroyed: false,
                destroyed_at: None,
                writable: body.writable.unwrap_or(true),
                snapshot_directory_enabled: body.snapshot_directory_enabled.unwrap_or(true),
                fast_remove_directory_enabled: body.fast_remove_directory_enabled.unwrap_or(false),
                nfs,
                smb_enabled: body.smb.as_ref().and_then(|t| t.enabled).unwrap_or(false),
                http_enabled: body.http.as_ref().and_then(|t| t.enabled).unwrap_or(false),
                source: snap.as_ref().map(|s| (s.id.clone(), s.name.clone())),
                group_ownership,
            };
            let dir = self.fs_dir(name);
            data::remove_tree(&dir).map_err(io_err)?;
            self.limits.make_fs_dir(&dir).map_err(io_err)?;
            if let Some(s) = &snap {
                data::copy_tree(&self.snap_path(&s.id), &dir).map_err(io_err)?;
            }
            self.limits.apply(&dir, fs.write_limit()).map_err(io_err)?;
            // A clone's root is the snapshot's (copied above); a new file
            // system's root gets the array's owner and mode.
            if snap.is_none() {
                data::set_root(&dir, self.fs_root).map_err(io_err)?;
            }
            out.push(self.fs_json(&fs, now));
            self.st.file_systems.insert(name.clone(), fs);
            self.sync_snapshot_dir(name).map_err(io_err)?;
        }
        Ok(json!({"items": out}))
    }

    fn patch_file_systems(&mut self, q: &Query, body: &FsBody) -> ApiResult<Value> {
        let sel = q
            .names_or_ids()?
            .ok_or_else(|| ApiError::bad("names or ids is required.", None))?;
        let names = self.select_fs(&sel)?;
        let ignore_usage = q.bool("ignore_usage")?.unwrap_or(false);
        let now = now_ms();
        let destroyed_patch = body.destroyed;
        // Validate everything for every target before changing anything.
        let mut updated = Vec::new();
        for name in &names {
            let mut fs = self.st.file_systems[name].clone();
            if fs.destroyed && body.changes_destroyed() {
                return Err(ApiError::bad(
                    "Cannot modify a destroyed file system.",
                    Some(name),
                ));
            }
            let usage = data::usage(&self.fs_dir(name)).bytes as i64;
            if let Some(p) = body.provisioned()? {
                let hard = body.hard_limit_enabled.unwrap_or(fs.hard_limit_enabled);
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
            if let Some(h) = body.hard_limit_enabled {
                if h && !fs.hard_limit_enabled && fs.provisioned.is_some_and(|p| usage > p) && !ignore_usage {
                    return Err(ApiError::bad(
                        "Requested size is below current usage.",
                        Some(name),
                    ));
                }
                fs.hard_limit_enabled = h;
            }
            if let Some(v) = default_quota(body.default_user_quota, "default_user_quota")? {
                fs.default_user_quota = v;
            }
            if let Some(v) = default_quota(body.default_group_quota, "default_group_quota")? {
                fs.default_group_quota = v;
            }
            for (given, slot) in [
                (body.writable, &mut fs.writable),
                (
                    body.snapshot_directory_enabled,
                    &mut fs.snapshot_directory_enabled,
                ),
                (
                    body.fast_remove_directory_enabled,
                    &mut fs.fast_remove_directory_enabled,
                ),
                (body.smb.as_ref().and_then(|t| t.enabled), &mut fs.smb_enabled),
                (body.http.as_ref().and_then(|t| t.enabled), &mut fs.http_enabled),
            ] {
                if let Some(b) = given {
                    *slot = b;
                }
            }
            let mut nfs = fs.nfs.clone();
            self.apply_nfs(&mut nfs, body.nfs.as_ref(), false)?;
            fs.nfs = nfs;
            if let Some(new_name) = body.name.as_deref()
                && new_name != fs.name
            {
                if self.quirks.no_rename_with_destroy && destroyed_patch == Some(true) {
                    return Err(ApiError::bad(
                        "Cannot rename and destroy a file system in one request.",
                        Some(name),
                    ));
                }
                if !valid_name(new_name) {
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
            if body.provisioned.is_some() || body.hard_limit_enabled.is_some() {
                self.limits
                    .apply(&self.fs_dir(&fs.name), fs.write_limit())
                    .map_err(io_err)?;
            }
            out.push(self.fs_json(&fs, now));
            let name = fs.name.clone();
            self.st.file_systems.insert(name.clone(), fs);
            if body.snapshot_directory_enabled.is_some() {
                self.sync_snapshot_dir(&name).map_err(io_err)?;
            }
        }
        Ok(json!({"items": out}))
    }

    pub(super) fn eradicate_fs(&mut self, name: &str) -> ApiResult<()> {
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

    pub(crate) fn delete_file_systems(&mut self, q: &Query) -> ApiResult<Value> {
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
}
