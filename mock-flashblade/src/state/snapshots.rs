//! `file-system-snapshots`: take, list, destroy, recover and eradicate; and
//! the `.snapshot` directory through which NFS clients see them.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Array, Store, io_err, new_id, now_ms, read, resolve, write};
use crate::api::{ApiError, ApiResult, Body, Query, Reply, Selector, list_envelope};
use crate::data;

pub(super) fn routes<S: Store>() -> Router<Arc<S>> {
    Router::new().route(
        "/api/{version}/file-system-snapshots",
        get(list::<S>)
            .post(create::<S>)
            .patch(update::<S>)
            .delete(eradicate::<S>),
    )
}

async fn list<S: Store>(State(s): State<Arc<S>>, q: Query) -> ApiResult<Reply> {
    read(s, move |a| a.get_snapshots(&q)).await
}

async fn create<S: Store>(
    State(s): State<Arc<S>>,
    q: Query,
    Body(b): Body<SnapshotPost>,
) -> ApiResult<Reply> {
    write(s, move |a| a.post_snapshots(&q, b.suffix)).await
}

async fn update<S: Store>(
    State(s): State<Arc<S>>,
    q: Query,
    Body(b): Body<SnapshotPatch>,
) -> ApiResult<Reply> {
    write(s, move |a| a.patch_snapshots(&q, b.destroyed)).await
}

async fn eradicate<S: Store>(State(s): State<Arc<S>>, q: Query) -> ApiResult<Reply> {
    write(s, move |a| a.delete_snapshots(&q)).await
}

/// The POST body; without a suffix the array numbers the snapshot.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SnapshotPost {
    suffix: Option<String>,
}

/// The PATCH body: destroy or recover.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SnapshotPatch {
    destroyed: Option<bool>,
}

fn valid_suffix(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=64).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
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

impl Array {
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

    pub(crate) fn get_snapshots(&self, q: &Query) -> ApiResult<Value> {
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

    fn post_snapshots(&mut self, q: &Query, suffix: Option<String>) -> ApiResult<Value> {
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
        if let Some(s) = &suffix
            && !valid_suffix(s)
        {
            return Err(ApiError::bad("Invalid snapshot suffix.", Some(s)));
        }
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
            self.sync_snapshot_dir(&fs_name).map_err(io_err)?;
        }
        Ok(json!({"items": out}))
    }

    fn select_snaps(&self, q: &Query) -> ApiResult<Vec<String>> {
        match q.names_or_ids()? {
            Some(sel) => resolve(&self.st.snapshots, &sel, |s| &s.id, "Snapshot does not exist."),
            None => Err(ApiError::bad("names or ids is required.", None)),
        }
    }

    fn patch_snapshots(&mut self, q: &Query, destroyed: Option<bool>) -> ApiResult<Value> {
        let names = self.select_snaps(q)?;
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
            self.sync_snapshot_dir(&s.owner_name).map_err(io_err)?;
            out.push(self.snap_json(&s, now));
        }
        Ok(json!({"items": out}))
    }

    pub(crate) fn delete_snapshots(&mut self, q: &Query) -> ApiResult<Value> {
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
            self.sync_snapshot_dir(&s.owner_name).map_err(io_err)?;
        }
        Ok(Value::Null)
    }

    /// Brings `<fs>/.snapshot` in line with the array: one read-only copy of
    /// each live snapshot at `.snapshot/<suffix>`; no `.snapshot` at all when
    /// the file system's `snapshot_directory_enabled` is false. Destroyed
    /// snapshots are not shown; eradicated ones are gone.
    pub(crate) fn sync_snapshot_dir(&self, fs_name: &str) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let Some(fs) = self.st.file_systems.get(fs_name) else {
            return Ok(());
        };
        let root = self.fs_dir(fs_name);
        let dir = root.join(data::SNAPSHOT_DIR);
        if !fs.snapshot_directory_enabled {
            return data::remove_tree(&dir);
        }
        if !root.is_dir() {
            return Ok(());
        }
        let wanted: std::collections::HashMap<&str, &Snapshot> = self
            .st
            .snapshots
            .values()
            .filter(|s| s.owner_id == fs.id && !s.destroyed)
            .map(|s| {
                let entry = if self.quirks.snapshot_entry_full_name {
                    s.name.as_str()
                } else {
                    s.suffix.as_str()
                };
                (entry, s)
            })
            .collect();
        self.limits.make_snapshot_view(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let mut present = std::collections::HashSet::new();
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if wanted.contains_key(name.as_str()) {
                present.insert(name);
            } else {
                data::remove_tree(&entry.path())?;
            }
        }
        for (suffix, snap) in &wanted {
            if present.contains(*suffix) {
                continue;
            }
            let at = dir.join(suffix);
            data::copy_tree(&self.snap_path(&snap.id), &at)?;
            data::set_tree_writable(&at, false)?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555))
    }
}
