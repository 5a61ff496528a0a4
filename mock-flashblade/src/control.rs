//! The control endpoint under `/mock/`: health, counters, fault settings,
//! scripted faults, session expiry and the eradication sweep. It answers
//! loopback clients only, and bypasses fault injection and the counters.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api::{ApiError, json_response};
use crate::faults::{CounterStore, Faults, ScriptedFault};
use crate::server::{Conn, Shared};

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
