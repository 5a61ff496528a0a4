//! `arrays` and `arrays/space`: the array's identity, settings and capacity.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Array, Store, now_ms, read, valid_name, write};
use crate::api::{ApiError, ApiResult, Body, Query, Reply, list_envelope};
use crate::data;

pub(super) fn routes<S: Store>() -> Router<Arc<S>> {
    Router::new()
        .route(
            "/api/{version}/arrays",
            get(get_arrays::<S>).patch(patch_arrays::<S>),
        )
        .route("/api/{version}/arrays/space", get(get_space::<S>))
        .route("/api/{version}/admins", get(get_admins::<S>))
}

async fn get_admins<S: Store>(State(s): State<Arc<S>>, q: Query) -> ApiResult<Reply> {
    read(s, move |a| a.get_admins(&q)).await
}

async fn get_arrays<S: Store>(State(s): State<Arc<S>>, q: Query) -> ApiResult<Reply> {
    read(s, move |a| a.get_arrays(&q)).await
}

async fn patch_arrays<S: Store>(State(s): State<Arc<S>>, Body(b): Body<ArrayPatch>) -> ApiResult<Reply> {
    write(s, move |a| a.patch_arrays(&b)).await
}

async fn get_space<S: Store>(State(s): State<Arc<S>>, q: Query) -> ApiResult<Reply> {
    read(s, move |a| a.get_arrays_space(&q)).await
}

/// The PATCH body: the settings the simulator keeps.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ArrayPatch {
    name: Option<String>,
    /// Session idle timeout in ms; 0 turns it off.
    idle_timeout: Option<i64>,
}

impl Array {
    pub(crate) fn get_arrays(&self, q: &Query) -> ApiResult<Value> {
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

    /// The one administrator the simulator has: the API token's user.
    fn get_admins(&self, q: &Query) -> ApiResult<Value> {
        let role = self
            .quirks
            .token_role
            .as_deref()
            .unwrap_or(crate::defaults::TOKEN_ROLE);
        if let Some(names) = q.list("names")
            && let Some(n) = names.iter().find(|n| *n != "pureuser")
        {
            return Err(ApiError::bad("Administrator does not exist.", Some(n)));
        }
        let item = json!({
            "id": "10000000-0000-0000-0000-000000000001",
            "name": "pureuser",
            "is_local": true,
            "locked": false,
            "role": {"name": role},
        });
        list_envelope(vec![item], q, |_| json!({}))
    }

    fn patch_arrays(&mut self, body: &ArrayPatch) -> ApiResult<Value> {
        if let Some(t) = body.idle_timeout
            && t != 0
            && !(300_000..=10_800_000).contains(&t)
        {
            return Err(ApiError::bad(
                "idle_timeout must be 0 or between 300000 and 10800000.",
                None,
            ));
        }
        if let Some(n) = &body.name
            && !valid_name(n)
        {
            return Err(ApiError::bad("Invalid array name.", Some(n)));
        }
        if let Some(t) = body.idle_timeout {
            self.st.idle_timeout = t;
        }
        if let Some(n) = &body.name {
            self.st.array_name = n.clone();
        }
        let env = self.get_arrays(&Query::default())?;
        Ok(json!({"items": env["items"]}))
    }

    pub(crate) fn space(&self) -> (i64, i64, i64) {
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

    pub(crate) fn get_arrays_space(&self, q: &Query) -> ApiResult<Value> {
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
}
