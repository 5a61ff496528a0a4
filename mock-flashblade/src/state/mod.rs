//! The simulated array. This module owns the store: everything the array
//! remembers ([`ArrayState`]), where each object's data lives, persistence to
//! `state.json`, the eradication sweep, and the helpers handlers use to run
//! an operation on it. Each resource module owns its model types, its
//! request bodies, its operations (FlashBlade's rules) and its routes:
//!
//! - `arrays`: `arrays`, `arrays/space`
//! - `file_systems`: `file-systems`
//! - `snapshots`: `file-system-snapshots`
//! - `quotas`: `quotas/users`, `quotas/groups`
//! - `policies`: `nfs-export-policies`, `nfs-export-policies/rules`
//!
//! Routes take any [`Store`]: the server's shared state is one, so this
//! module does not depend on the server.

mod arrays;
mod file_systems;
mod policies;
mod quotas;
mod snapshots;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, Reply, Selector};
use crate::data;

pub use crate::data::FsRoot;
pub use file_systems::{FileSystem, Nfs};
pub(crate) use policies::validate_rules;
pub use policies::{Policy, Rule};
pub use quotas::Quota;
pub use snapshots::Snapshot;

/// Where the routes find the array: the server's shared state.
pub(crate) trait Store: Send + Sync + 'static {
    fn array(&self) -> &Mutex<Array>;
}

/// Every versioned resource's routes (`/api/{version}/...`).
pub(crate) fn resource_routes<S: Store>() -> Router<Arc<S>> {
    Router::new()
        .merge(arrays::routes())
        .merge(file_systems::routes())
        .merge(snapshots::routes())
        .merge(quotas::routes())
        .merge(policies::routes())
}

/// Runs an operation on the array off the async threads (operations walk
/// and copy directories) and, when `write` and it succeeded, marks the state
/// for saving.
async fn run<S: Store, F>(shared: Arc<S>, write: bool, op: F) -> ApiResult<Reply>
where
    F: FnOnce(&mut Array) -> ApiResult<Value> + Send + 'static,
{
    let result = tokio::task::spawn_blocking(move || {
        let mut array = shared.array().lock().unwrap();
        let mut r = op(&mut array);
        if array.quirks.other_error_texts
            && let Err(e) = &mut r
            && let Some(t) = crate::quirks::other_text(&e.message)
        {
            e.message = t.to_string();
        }
        if write && r.is_ok() {
            array.save();
        }
        r
    })
    .await;
    match result {
        Ok(r) => r.map(Reply),
        Err(e) => Err(ApiError::new(500, format!("Internal error: {e}."), None)),
    }
}

/// A GET: reads the array.
async fn read<S: Store, F>(shared: Arc<S>, op: F) -> ApiResult<Reply>
where
    F: FnOnce(&Array) -> ApiResult<Value> + Send + 'static,
{
    run(shared, false, move |a| op(a)).await
}

/// A POST, PATCH or DELETE: changes the array.
async fn write<S: Store, F>(shared: Arc<S>, op: F) -> ApiResult<Reply>
where
    F: FnOnce(&mut Array) -> ApiResult<Value> + Send + 'static,
{
    run(shared, true, op).await
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn new_id() -> String {
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

/// Names of file systems, export policies and the array (our documented
/// assumption for FlashBlade): 1-63 letters, digits, `_` or `-`, starting
/// with a letter or digit.
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
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
    pub(crate) fn new(capacity: i64) -> Self {
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
pub(crate) struct Array {
    pub(crate) st: ArrayState,
    pub(crate) data_dir: PathBuf,
    pub(crate) snap_dir: PathBuf,
    pub(crate) eradication_delay_ms: i64,
    pub(crate) persist_path: Option<PathBuf>,
    /// Whether writes past a hard limit are refused (btrfs), see `limits`.
    pub(crate) limits: crate::limits::Limits,
    /// Changed since the last flush.
    pub(crate) dirty: bool,
    /// Owner and mode of a new (not cloned) file system's root directory.
    pub(crate) fs_root: FsRoot,
    pub(crate) quirks: crate::quirks::Quirks,
}

fn io_err(e: std::io::Error) -> ApiError {
    ApiError::new(500, format!("Internal error: {e}."), None)
}

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

impl Array {
    pub(crate) fn new(
        st: ArrayState,
        data_dir: PathBuf,
        snap_dir: PathBuf,
        eradication_delay_ms: i64,
    ) -> Self {
        let array = Self {
            st,
            data_dir,
            snap_dir,
            eradication_delay_ms,
            persist_path: None,
            limits: crate::limits::Limits::off(),
            dirty: false,
            fs_root: FsRoot::default(),
            quirks: Default::default(),
        };
        // State saved by an older simulator has no `.snapshot` views yet.
        for name in array.st.file_systems.keys() {
            let _ = array.sync_snapshot_dir(name);
        }
        array
    }

    pub(crate) fn fs_dir(&self, name: &str) -> PathBuf {
        self.data_dir.join(name)
    }

    pub(crate) fn snap_path(&self, snap_id: &str) -> PathBuf {
        self.snap_dir.join(snap_id)
    }

    /// Marks the state changed; [`Array::flush`] writes it.
    pub(crate) fn save(&mut self) {
        self.dirty = self.persist_path.is_some();
    }

    /// Writes the state atomically (temp file + rename) if it changed.
    pub(crate) fn flush(&mut self) {
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

    pub(crate) fn load(path: &Path) -> Option<ArrayState> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    pub(crate) fn time_remaining(&self, destroyed_at: Option<i64>, now: i64) -> Value {
        match destroyed_at {
            Some(at) => json!((at + self.eradication_delay_ms - now).max(0)),
            None => Value::Null,
        }
    }
}

impl Array {
    /// Eradicates destroyed objects whose delay has passed. Returns whether
    /// anything changed.
    pub(crate) fn sweep(&mut self, now: i64) -> bool {
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
            let _ = self.sync_snapshot_dir(&s.owner_name);
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("k8s-pvc-1"));
        assert!(valid_name(&"a".repeat(63)));
        assert!(!valid_name(&"a".repeat(64)));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a.b"));
        assert!(!valid_name(""));
    }
}
