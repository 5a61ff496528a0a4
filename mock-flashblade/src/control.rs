//! The control endpoint under `/mock/`: health, counters, fault settings,
//! scripted faults, session expiry, the eradication sweep, and `mount`, the
//! array's mount daemon for development staging (who may mount what, from
//! [`crate::mountd`]). It answers loopback clients only, and bypasses fault
//! injection and the counters.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api::{ApiError, Query, json_response};
use crate::faults::{CounterStore, Faults, ScriptedFault};
use crate::shared::{Conn, Shared};

/// Only processes on the same machine may steer the simulator.
fn control_allowed(peer: &SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/health", get(|| async { ok(json!({"ok": true})) }))
        .route("/counters", get(counters))
        .route("/counters/reset", post(reset_counters))
        .route("/faults", get(faults).put(set_faults))
        .route("/faults/script", post(script_faults))
        .route("/sessions/expire", post(expire_sessions))
        .route("/sweep", post(sweep))
        .route("/mount", get(mount))
        .method_not_allowed_fallback(unknown)
        .fallback(unknown)
        .layer(middleware::from_fn(loopback_only))
}

async fn loopback_only(req: Request, next: Next) -> Response {
    let allowed = req
        .extensions()
        .get::<Conn>()
        .is_some_and(|c| control_allowed(&c.peer));
    if !allowed {
        return ApiError::new(403, "The control endpoint only answers loopback clients.", None)
            .into_response();
    }
    next.run(req).await
}

fn ok(v: Value) -> Response {
    json_response(200, Some(&v))
}

async fn unknown() -> ApiError {
    ApiError::new(404, "Unknown control endpoint.", None)
}

async fn counters(State(shared): State<Arc<Shared>>) -> Response {
    let live = shared.sessions.len();
    ok(serde_json::to_value(shared.counters.lock().unwrap().snapshot(live)).unwrap())
}

async fn reset_counters(State(shared): State<Arc<Shared>>) -> Response {
    *shared.counters.lock().unwrap() = CounterStore::default();
    ok(json!({}))
}

async fn faults(State(shared): State<Arc<Shared>>) -> Response {
    ok(serde_json::to_value(shared.faults.lock().unwrap().clone()).unwrap())
}

async fn set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let f = serde_json::from_slice::<Faults>(&body)
        .map_err(|e| ApiError::bad(format!("Invalid faults: {e}."), None))?;
    shared.set_faults(f.clone());
    Ok(ok(serde_json::to_value(f).unwrap()))
}

/// One scripted fault or a list of them, appended to the script.
async fn script_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Response, ApiError> {
    let list = serde_json::from_slice::<Vec<ScriptedFault>>(&body)
        .or_else(|_| serde_json::from_slice::<ScriptedFault>(&body).map(|f| vec![f]))
        .map_err(|e| ApiError::bad(format!("Invalid scripted fault: {e}."), None))?;
    let mut faults = shared.faults.lock().unwrap();
    faults.script.extend(list);
    Ok(ok(serde_json::to_value(faults.clone()).unwrap()))
}

async fn expire_sessions(State(shared): State<Arc<Shared>>) -> Response {
    ok(json!({"expired": shared.sessions.expire_all()}))
}

async fn sweep(State(shared): State<Arc<Shared>>) -> Response {
    // The sweep walks and removes directories: keep it off the async threads.
    let _ = tokio::task::spawn_blocking(move || shared.sweep()).await;
    ok(json!({}))
}

/// `GET /mock/mount?name=FS&client=IP`: whether the array would let that
/// client mount the file system over NFS, as its mount daemon decides.
/// 200 `{"path", "access": "rw"|"ro", "squash", "anonuid", "anongid",
/// "rule"}` when it may (`path` is the file system's directory; `access` is
/// `ro` also when the file system is not writable); 403 with mount.nfs's
/// "access denied by server while mounting" and the reason when it may
/// not; 404 for a file system the array does not have; 400 for a missing
/// name or a client that is not an IP address.
async fn mount(State(shared): State<Arc<Shared>>, q: Query) -> Result<Response, ApiError> {
    let name = q
        .get("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad("name is required.", None))?
        .to_string();
    let client_text = q
        .get("client")
        .ok_or_else(|| ApiError::bad("client is required.", None))?;
    let client: std::net::IpAddr = client_text
        .parse()
        .map_err(|_| ApiError::bad("client must be an IP address.", Some(client_text)))?;
    let array = shared.array.lock().unwrap();
    let fs = array
        .st
        .file_systems
        .get(&name)
        .ok_or_else(|| ApiError::new(404, "File system does not exist.", Some(&name)))?;
    let denied = |why: String| {
        ApiError::new(
            403,
            format!("access denied by server while mounting /{name}: {why}"),
            Some(&name),
        )
    };
    if fs.destroyed {
        return Err(denied("the file system is destroyed".into()));
    }
    if !fs.nfs.v3_enabled && !fs.nfs.v4_1_enabled {
        return Err(denied("NFS is not enabled on the file system".into()));
    }
    let rules = match &fs.nfs.export_policy {
        Some(p) => match array.st.policies.get(p) {
            Some(policy) if policy.enabled => {
                policy.rules.iter().map(crate::state::Rule::export_rule).collect()
            }
            Some(_) => return Err(denied(format!("its export policy {p} is disabled"))),
            None => Vec::new(),
        },
        None => crate::mountd::parse_rules(&fs.nfs.rules),
    };
    let rule = crate::mountd::decide(&rules, client).ok_or_else(|| {
        denied(if rules.is_empty() {
            "the file system is not exported (no export rules)".into()
        } else {
            format!("no export rule admits {client}")
        })
    })?;
    let access = if fs.writable {
        rule.access
    } else {
        crate::mountd::Access::Ro
    };
    Ok(ok(json!({
        "path": array.fs_dir(&name).to_string_lossy(),
        "access": access,
        "squash": rule.squash,
        "anonuid": rule.anonuid,
        "anongid": rule.anongid,
        "rule": rule.text,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_endpoint_is_loopback_only() {
        assert!(control_allowed(&"127.0.0.1:5".parse().unwrap()));
        assert!(control_allowed(&"127.8.0.1:5".parse().unwrap()));
        assert!(control_allowed(&"[::1]:5".parse().unwrap()));
        assert!(control_allowed(&"[::ffff:127.0.0.1]:5".parse().unwrap()));
        assert!(!control_allowed(&"10.0.0.5:5".parse().unwrap()));
        assert!(!control_allowed(&"[fd00::1]:5".parse().unwrap()));
        assert!(!control_allowed(&"[::ffff:10.0.0.1]:5".parse().unwrap()));
    }
}
