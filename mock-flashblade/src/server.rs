//! The HTTP side of the simulator: connection handling (TLS or plain, HTTP/1
//! and HTTP/2), authentication and sessions, fault injection, counters, the
//! loopback-only control endpoint, and routing to the array model.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};

use crate::api::{ApiError, ApiResult, Query};
use crate::faults::{Bucket, CounterStore, FaultKind, Faults, ScriptedFault};
use crate::state::{Array, QuotaKind, new_id, now_ms};

/// The oldest and newest REST 2.x minor versions served.
pub const MIN_MINOR: u32 = 0;
pub const MAX_MINOR: u32 = 17;

/// Requests per second allowed when no rate limit is configured.
pub const DEFAULT_RATE_LIMIT: f64 = 100_000.0;

pub fn api_versions() -> Vec<String> {
    let mut v: Vec<String> = (0..=12).map(|m| format!("1.{m}")).collect();
    v.extend((MIN_MINOR..=MAX_MINOR).map(|m| format!("2.{m}")));
    v
}

pub(crate) struct Session {
    created: Instant,
    last_used: Instant,
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub array: Mutex<Array>,
    pub sessions: Mutex<HashMap<String, Session>>,
    pub faults: Mutex<Faults>,
    pub semaphore: Mutex<Option<Arc<Semaphore>>>,
    pub bucket: Mutex<Option<Bucket>>,
    pub counters: Mutex<CounterStore>,
    pub in_flight: AtomicU64,
    pub api_token: Mutex<String>,
    pub session_ttl: Option<Duration>,
}

impl Shared {
    pub fn set_faults(&self, f: Faults) {
        *self.semaphore.lock().unwrap() = f.max_concurrency.map(|n| Arc::new(Semaphore::new(n.max(1))));
        // Like the array's gateway, a limiter is always there (so every
        // answer carries RateLimit-* headers); without --rate-limit it is
        // set far above anything a test or benchmark sends.
        *self.bucket.lock().unwrap() = Some(match f.rate_limit.filter(|r| *r > 0.0) {
            Some(r) => Bucket::new(r, f.rate_burst),
            None => Bucket::new(DEFAULT_RATE_LIMIT, Some(DEFAULT_RATE_LIMIT as u32)),
        });
        *self.faults.lock().unwrap() = f;
    }

    pub fn expire_sessions(&self) -> usize {
        let mut s = self.sessions.lock().unwrap();
        let n = s.len();
        s.clear();
        n
    }

    pub fn live_sessions(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }
}

type Resp = Response<Full<Bytes>>;

fn json_response(status: u16, body: Option<&Value>) -> Resp {
    let mut b = Response::builder().status(status);
    let bytes = match body {
        Some(v) => {
            b = b.header("content-type", "application/json");
            Bytes::from(serde_json::to_vec(v).unwrap_or_default())
        }
        None => Bytes::new(),
    };
    b.body(Full::new(bytes)).expect("valid response")
}

fn error_response(e: &ApiError) -> Resp {
    json_response(e.status, Some(&e.body()))
}

/// Accepts connections until `stop` flips.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, peer, tls.clone(), shared.clone(), stop.clone()));
            }
            _ = stop.changed() => break,
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // Lets a request drop its own connection (reset faults).
    let kill = Arc::new(Notify::new());
    let k = kill.clone();
    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), peer, k.clone(), req));
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    match tls {
        Some(acceptor) => {
            let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
            else {
                return;
            };
            let conn = builder.serve_connection(TokioIo::new(s), svc);
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {}
                _ = stop.changed() => {}
            }
        }
        None => {
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }
}

struct InFlight<'a>(&'a AtomicU64);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn is_mutation(m: &Method) -> bool {
    matches!(*m, Method::POST | Method::PATCH | Method::DELETE | Method::PUT)
}

fn pick_fault(shared: &Shared, method: &str, path: &str) -> (Option<FaultKind>, bool, u64) {
    let mut f = shared.faults.lock().unwrap();
    let mut chosen = None;
    if let Some(i) = f
        .script
        .iter()
        .position(|s| s.times > 0 && s.matches(method, path))
    {
        chosen = Some(f.script[i].kind);
        f.script[i].times -= 1;
        if f.script[i].times == 0 {
            f.script.remove(i);
        }
    }
    if chosen.is_none() && f.error_rate > 0.0 && rand::random::<f64>() < f.error_rate {
        const KINDS: [FaultKind; 5] = [
            FaultKind::Busy,
            FaultKind::BadGateway,
            FaultKind::Unavailable,
            FaultKind::GatewayTimeout,
            FaultKind::Reset,
        ];
        chosen = Some(KINDS[rand::random_range(0..KINDS.len())]);
    }
    if chosen.is_none() && f.stall_rate > 0.0 && rand::random::<f64>() < f.stall_rate {
        chosen = Some(FaultKind::Stall);
    }
    let ambiguous = f.ambiguous_rate > 0.0 && rand::random::<f64>() < f.ambiguous_rate;
    let delay = f.latency_ms
        + if f.jitter_ms > 0 {
            rand::random_range(0..=f.jitter_ms)
        } else {
            0
        };
    let stall = f.stall_ms;
    drop(f);
    if chosen == Some(FaultKind::Stall) {
        return (chosen, ambiguous, delay + stall);
    }
    (chosen, ambiguous, delay)
}

fn rate_headers(b: &Bucket) -> Vec<(&'static str, String)> {
    let reset = if b.tokens >= b.burst {
        0.0
    } else {
        (b.burst - b.tokens) / b.rate
    };
    vec![
        ("RateLimit-Limit", format!("{};w=1;burst={}", b.rate, b.burst)),
        (
            "RateLimit-Remaining",
            format!("{}", b.tokens.floor().max(0.0) as u64),
        ),
        ("RateLimit-Reset", format!("{}", reset.ceil() as u64)),
    ]
}

async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    kill: Arc<Notify>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(new_id);

    if let Some(control_path) = path.strip_prefix("/mock/") {
        let mut resp = control(&shared, peer, &method, control_path, req).await;
        resp.headers_mut()
            .insert("x-request-id", request_id.parse().expect("header value"));
        return Ok(resp);
    }

    let semaphore = shared.semaphore.lock().unwrap().clone();
    let _permit = match &semaphore {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    };
    // Counted once admitted, so the peak shows the array-side parallelism.
    let n = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let _in_flight = InFlight(&shared.in_flight);
    {
        let mut c = shared.counters.lock().unwrap();
        c.peak_in_flight = c.peak_in_flight.max(n);
    }

    let (fault, ambiguous_roll, delay_ms) = pick_fault(&shared, method.as_str(), &path);
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }

    // The rate limiter runs before authentication, as on the array.
    let mut extra_headers: Vec<(&'static str, String)> = Vec::new();
    let limited = {
        let mut bucket = shared.bucket.lock().unwrap();
        match bucket.as_mut() {
            Some(b) => {
                let r = b.take();
                extra_headers = rate_headers(b);
                r.err()
            }
            None => None,
        }
    };
    let mut forced = fault;
    if let Some(wait) = limited {
        shared.counters.lock().unwrap().rate_limited += 1;
        extra_headers.push(("Retry-After", format!("{}", wait.ceil().max(1.0) as u64)));
        forced = Some(FaultKind::RateLimited);
    } else if forced == Some(FaultKind::RateLimited) {
        extra_headers.push(("Retry-After", "1".into()));
        extra_headers.extend([
            ("RateLimit-Limit", "1;w=1;burst=1".to_string()),
            ("RateLimit-Remaining", "0".into()),
            ("RateLimit-Reset", "1".into()),
        ]);
    }

    let finish = |status: u16, mut resp: Resp, extra: &[(&'static str, String)]| -> Resp {
        shared
            .counters
            .lock()
            .unwrap()
            .record(method.as_str(), &path, status);
        let h = resp.headers_mut();
        h.insert("x-request-id", request_id.parse().expect("header value"));
        for (k, v) in extra {
            if let Ok(v) = v.parse() {
                h.insert(*k, v);
            }
        }
        resp
    };

    if let Some(kind) = forced.filter(|k| !k.is_ambiguous() && *k != FaultKind::Stall) {
        if kind != FaultKind::RateLimited {
            shared.counters.lock().unwrap().injected_faults += 1;
        }
        let (status, message) = match kind {
            FaultKind::Busy => (500, "Server is busy"),
            FaultKind::BadGateway => (502, "Bad gateway."),
            FaultKind::Unavailable => (503, "Service unavailable."),
            FaultKind::GatewayTimeout => (504, "Gateway timeout."),
            FaultKind::RateLimited => (429, "API rate limit exceeded"),
            FaultKind::SessionExpired => {
                if let Some(t) = req.headers().get("x-auth-token").and_then(|v| v.to_str().ok()) {
                    shared.sessions.lock().unwrap().remove(t);
                }
                (403, "Session has expired.")
            }
            FaultKind::Reset => {
                shared.counters.lock().unwrap().record(method.as_str(), &path, 0);
                kill.notify_one();
                std::future::pending::<()>().await;
                unreachable!()
            }
            FaultKind::Ambiguous500 | FaultKind::AmbiguousReset | FaultKind::Stall => unreachable!(),
        };
        let e = ApiError::new(status, message, None);
        return Ok(finish(status, error_response(&e), &extra_headers));
    }

    let headers = req.headers().clone();
    let query = Query::parse(req.uri().query());
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let (status, resp) = api(&shared, &method, &path, &query, &headers, &body).await;

    let ambiguous = match forced {
        Some(k) if k.is_ambiguous() => Some(k),
        _ if ambiguous_roll => Some(if rand::random::<bool>() {
            FaultKind::Ambiguous500
        } else {
            FaultKind::AmbiguousReset
        }),
        _ => None,
    };
    if let Some(kind) = ambiguous.filter(|_| is_mutation(&method) && (200..300).contains(&status)) {
        // The change is committed; the client is not told.
        shared.counters.lock().unwrap().injected_faults += 1;
        if kind == FaultKind::AmbiguousReset {
            shared.counters.lock().unwrap().record(method.as_str(), &path, 0);
            kill.notify_one();
            std::future::pending::<()>().await;
        }
        let e = ApiError::new(500, "Internal server error.", None);
        return Ok(finish(500, error_response(&e), &extra_headers));
    }
    if let Some(t) = resp.body_token.clone() {
        extra_headers.push(("x-next-token", t));
    }
    Ok(finish(status, resp.response, &extra_headers))
}

struct ApiResp {
    response: Resp,
    body_token: Option<String>,
}

fn ok_json(v: Value) -> (u16, ApiResp) {
    let token = v
        .get("continuation_token")
        .and_then(Value::as_str)
        .map(str::to_string);
    (
        200,
        ApiResp {
            response: json_response(200, if v.is_null() { None } else { Some(&v) }),
            body_token: token,
        },
    )
}

fn err(e: ApiError) -> (u16, ApiResp) {
    (
        e.status,
        ApiResp {
            response: error_response(&e),
            body_token: None,
        },
    )
}

/// Parses `/api/2.N/<resource>`; returns the minor version and resource.
fn split_versioned(path: &str) -> Option<(u32, u32, &str)> {
    let rest = path.strip_prefix("/api/")?;
    let (ver, resource) = rest.split_once('/')?;
    let (major, minor) = ver.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?, resource))
}

fn token_matches(given: &str, expected: &str) -> bool {
    // Constant-time comparison: no early exit on the first differing byte.
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= (*a.get(i).unwrap_or(&0) ^ *b.get(i).unwrap_or(&0)) as usize;
    }
    diff == 0
}

async fn api(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &hyper::HeaderMap,
    body: &Bytes,
) -> (u16, ApiResp) {
    match (method, path) {
        (&Method::GET, "/api/api_version") => return ok_json(json!({"versions": api_versions()})),
        (&Method::GET, "/api/login-banner") => return ok_json(json!({"login_banner": ""})),
        _ => {}
    }
    let versioned = split_versioned(path);
    let is_login = path == "/api/login" || (versioned.is_some_and(|(ma, _, r)| ma == 2 && r == "login"));
    let is_logout = path == "/api/logout" || (versioned.is_some_and(|(ma, _, r)| ma == 2 && r == "logout"));
    if is_login {
        if method != Method::POST {
            return err(ApiError::new(405, "Method not allowed.", None));
        }
        let given = headers
            .get("api-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let expected = shared.api_token.lock().unwrap().clone();
        if given.is_empty() || !token_matches(given, &expected) {
            shared.counters.lock().unwrap().failed_logins += 1;
            return err(ApiError::new(401, "Invalid API token.", None));
        }
        let token = new_id();
        let now = Instant::now();
        shared.sessions.lock().unwrap().insert(
            token.clone(),
            Session {
                created: now,
                last_used: now,
            },
        );
        shared.counters.lock().unwrap().logins += 1;
        let mut resp = json_response(200, Some(&json!({"username": "pureuser"})));
        resp.headers_mut()
            .insert("x-auth-token", token.parse().expect("header value"));
        return (
            200,
            ApiResp {
                response: resp,
                body_token: None,
            },
        );
    }
    if is_logout {
        if method != Method::POST {
            return err(ApiError::new(405, "Method not allowed.", None));
        }
        if let Some(t) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
            shared.sessions.lock().unwrap().remove(t);
        }
        shared.counters.lock().unwrap().logouts += 1;
        return (
            200,
            ApiResp {
                response: json_response(200, None),
                body_token: None,
            },
        );
    }
    let Some((major, minor, resource)) = versioned else {
        return err(ApiError::new(404, "Not found.", None));
    };
    if major == 1 {
        return err(ApiError::new(
            404,
            "REST 1.x resources are not served by mock-flashblade; use 2.x.",
            None,
        ));
    }
    if major != 2 || !(MIN_MINOR..=MAX_MINOR).contains(&minor) {
        return err(ApiError::new(
            404,
            format!("API version {major}.{minor} is not supported."),
            None,
        ));
    }

    // Authentication: the session token from login.
    let Some(token) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) else {
        return err(ApiError::new(401, "Authentication required.", None));
    };
    {
        let idle_ms = shared.array.lock().unwrap().st.idle_timeout;
        let mut sessions = shared.sessions.lock().unwrap();
        let now = Instant::now();
        let expired = match sessions.get(token) {
            None => true,
            Some(s) => {
                shared
                    .session_ttl
                    .is_some_and(|ttl| now.duration_since(s.created) > ttl)
                    || (idle_ms > 0
                        && now.duration_since(s.last_used) > Duration::from_millis(idle_ms as u64))
            }
        };
        if expired {
            sessions.remove(token);
            // FlashBlade answers 403 for an expired API-token session.
            return err(ApiError::new(403, "Session has expired.", None));
        }
        if let Some(s) = sessions.get_mut(token) {
            s.last_used = now;
        }
    }

    let body_json: Value = if body.is_empty() || matches!(*method, Method::GET | Method::DELETE) {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return err(ApiError::bad(format!("Invalid JSON in request body: {e}."), None)),
        }
    };

    let shared = shared.clone();
    let method = method.clone();
    let resource = resource.to_string();
    let query = query.clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut array = shared.array.lock().unwrap();
        let r = route(&mut array, &method, minor, &resource, &query, &body_json);
        if r.is_ok() && method != Method::GET {
            array.save();
        }
        r
    })
    .await;
    match result {
        Ok(Ok(v)) => ok_json(v),
        Ok(Err(e)) => err(e),
        Err(e) => err(ApiError::new(500, format!("Internal error: {e}."), None)),
    }
}

fn route(
    a: &mut Array,
    method: &Method,
    minor: u32,
    resource: &str,
    q: &Query,
    body: &Value,
) -> ApiResult<Value> {
    let needs = |v: u32| -> ApiResult<()> {
        if minor < v {
            Err(ApiError::new(
                404,
                format!("{resource} requires API version 2.{v} or later."),
                None,
            ))
        } else {
            Ok(())
        }
    };
    match (method.as_str(), resource) {
        ("GET", "arrays") => a.get_arrays(q),
        ("PATCH", "arrays") => a.patch_arrays(body),
        ("GET", "arrays/space") => a.get_arrays_space(q),
        ("GET", "file-systems") => a.get_file_systems(q),
        ("POST", "file-systems") => a.post_file_systems(q, body),
        ("PATCH", "file-systems") => a.patch_file_systems(q, body),
        ("DELETE", "file-systems") => a.delete_file_systems(q),
        ("GET", "file-system-snapshots") => a.get_snapshots(q),
        ("POST", "file-system-snapshots") => a.post_snapshots(q, body),
        ("PATCH", "file-system-snapshots") => a.patch_snapshots(q, body),
        ("DELETE", "file-system-snapshots") => a.delete_snapshots(q),
        ("GET", "quotas/users") => a.get_quotas(QuotaKind::User, q),
        ("POST", "quotas/users") => a.post_quotas(QuotaKind::User, q, body),
        ("PATCH", "quotas/users") => a.patch_quotas(QuotaKind::User, q, body),
        ("DELETE", "quotas/users") => a.delete_quotas(QuotaKind::User, q),
        ("GET", "quotas/groups") => a.get_quotas(QuotaKind::Group, q),
        ("POST", "quotas/groups") => a.post_quotas(QuotaKind::Group, q, body),
        ("PATCH", "quotas/groups") => a.patch_quotas(QuotaKind::Group, q, body),
        ("DELETE", "quotas/groups") => a.delete_quotas(QuotaKind::Group, q),
        ("GET", "nfs-export-policies") => needs(3).and_then(|_| a.get_policies(q)),
        ("POST", "nfs-export-policies") => needs(3).and_then(|_| a.post_policies(q, body)),
        ("PATCH", "nfs-export-policies") => needs(3).and_then(|_| a.patch_policies(q, body)),
        ("DELETE", "nfs-export-policies") => needs(3).and_then(|_| a.delete_policies(q)),
        ("GET", "nfs-export-policies/rules") => needs(3).and_then(|_| a.get_rules(q)),
        ("POST", "nfs-export-policies/rules") => needs(3).and_then(|_| a.post_rules(q, body)),
        ("PATCH", "nfs-export-policies/rules") => needs(3).and_then(|_| a.patch_rules(q, body)),
        ("DELETE", "nfs-export-policies/rules") => needs(3).and_then(|_| a.delete_rules(q)),
        (
            _,
            "arrays"
            | "arrays/space"
            | "file-systems"
            | "file-system-snapshots"
            | "quotas/users"
            | "quotas/groups"
            | "nfs-export-policies"
            | "nfs-export-policies/rules",
        ) => Err(ApiError::new(405, "Method not allowed.", None)),
        _ => Err(ApiError::new(404, "Not found.", None)),
    }
}

/// Only processes on the same machine may steer the simulator.
pub fn control_allowed(peer: &SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

async fn control(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    method: &Method,
    path: &str,
    req: Request<Incoming>,
) -> Resp {
    if !control_allowed(&peer) {
        return error_response(&ApiError::new(
            403,
            "The control endpoint only answers loopback clients.",
            None,
        ));
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let ok = |v: Value| json_response(200, Some(&v));
    let bad = |m: String| error_response(&ApiError::bad(m, None));
    match (method.as_str(), path) {
        ("GET", "health") => ok(json!({"ok": true})),
        ("GET", "counters") => {
            let live = shared.live_sessions();
            ok(serde_json::to_value(shared.counters.lock().unwrap().snapshot(live)).unwrap())
        }
        ("POST", "counters/reset") => {
            *shared.counters.lock().unwrap() = CounterStore::default();
            ok(json!({}))
        }
        ("GET", "faults") => ok(serde_json::to_value(shared.faults.lock().unwrap().clone()).unwrap()),
        ("PUT", "faults") => match serde_json::from_slice::<Faults>(&body) {
            Ok(f) => {
                shared.set_faults(f.clone());
                ok(serde_json::to_value(f).unwrap())
            }
            Err(e) => bad(format!("Invalid faults: {e}.")),
        },
        ("POST", "faults/script") => {
            let list = serde_json::from_slice::<Vec<ScriptedFault>>(&body)
                .or_else(|_| serde_json::from_slice::<ScriptedFault>(&body).map(|f| vec![f]));
            match list {
                Ok(l) => {
                    shared.faults.lock().unwrap().script.extend(l);
                    ok(serde_json::to_value(shared.faults.lock().unwrap().clone()).unwrap())
                }
                Err(e) => bad(format!("Invalid scripted fault: {e}.")),
            }
        }
        ("POST", "sessions/expire") => ok(json!({"expired": shared.expire_sessions()})),
        ("POST", "sweep") => {
            let mut a = shared.array.lock().unwrap();
            if a.sweep(now_ms()) {
                a.save();
            }
            a.flush();
            ok(json!({}))
        }
        _ => error_response(&ApiError::new(404, "Unknown control endpoint.", None)),
    }
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

    #[test]
    fn versions_list_mixes_1x_and_2x_in_order() {
        let v = api_versions();
        assert_eq!(v.first().unwrap(), "1.0");
        assert!(v.contains(&"1.12".to_string()));
        assert_eq!(v.last().unwrap(), &format!("2.{MAX_MINOR}"));
    }

    #[test]
    fn token_compare() {
        assert!(token_matches("T-abc", "T-abc"));
        assert!(!token_matches("T-abd", "T-abc"));
        assert!(!token_matches("T-ab", "T-abc"));
        assert!(!token_matches("", "T-abc"));
    }
}
