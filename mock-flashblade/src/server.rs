//! The HTTP side of the simulator: connections (TLS or plain, HTTP/1 and
//! HTTP/2, each one droppable by a reset fault), the axum router that puts
//! the resource modules' routes together, and the layers an API request
//! passes through, outermost first: request id, fault injection (latency,
//! concurrency limit, rate limit, injected errors, counters), then for
//! versioned paths the version, session and body checks.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tower::ServiceExt;

use crate::api::{ApiError, ApiVersion, JsonBody};
use crate::faults::{Bucket, CounterStore, FaultKind, Faults};
use crate::state::{self, Array, Sessions, new_id};

/// The oldest and newest REST 2.x minor versions served.
pub(crate) const MIN_MINOR: u32 = 0;
pub(crate) const MAX_MINOR: u32 = 17;

/// Requests per second allowed when no rate limit is configured.
const DEFAULT_RATE_LIMIT: f64 = 100_000.0;

/// What `api_version` lists: 1.x as a real array does, though only 2.x
/// resources are served.
pub(crate) fn api_versions() -> Vec<String> {
    let mut v: Vec<String> = (0..=12).map(|m| format!("1.{m}")).collect();
    v.extend((MIN_MINOR..=MAX_MINOR).map(|m| format!("2.{m}")));
    v
}

/// Parses `/api/<major>.<minor>/<resource>`.
pub(crate) fn split_versioned(path: &str) -> Option<(u32, u32, &str)> {
    let rest = path.strip_prefix("/api/")?;
    let (ver, resource) = rest.split_once('/')?;
    let (major, minor) = ver.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?, resource))
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) array: Mutex<Array>,
    pub(crate) sessions: Sessions,
    pub(crate) faults: Mutex<Faults>,
    semaphore: Mutex<Option<Arc<Semaphore>>>,
    bucket: Mutex<Option<Bucket>>,
    pub(crate) counters: Mutex<CounterStore>,
    in_flight: AtomicU64,
}

impl Shared {
    pub(crate) fn new(array: Array, sessions: Sessions, faults: Faults) -> Self {
        let s = Self {
            array: Mutex::new(array),
            sessions,
            faults: Mutex::new(Faults::default()),
            semaphore: Mutex::new(None),
            bucket: Mutex::new(None),
            counters: Mutex::new(CounterStore::default()),
            in_flight: AtomicU64::new(0),
        };
        s.set_faults(faults);
        s
    }

    pub(crate) fn set_faults(&self, f: Faults) {
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

    /// Eradicates what is due and writes the state if it changed.
    pub(crate) fn sweep(&self) {
        let mut a = self.array.lock().unwrap();
        if a.sweep(state::now_ms()) {
            a.save();
        }
        a.flush();
    }
}

/// What a request knows about its connection: the peer (the control
/// endpoint answers loopback only) and how to drop it (reset faults).
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) peer: SocketAddr,
    kill: Arc<Notify>,
}

/// The whole HTTP surface.
fn router(shared: Arc<Shared>) -> Router {
    let versioned = Router::new()
        .merge(state::resource_routes())
        .method_not_allowed_fallback(|| async { ApiError::new(405, "Method not allowed.", None) })
        // After the method fallback, so a wrong method is also answered only
        // to a valid session, as on the array.
        .route_layer(middleware::from_fn_with_state(shared.clone(), admit_versioned));
    let api = Router::new()
        .merge(state::sessions::routes())
        .merge(versioned)
        .fallback(unmatched)
        .layer(middleware::from_fn_with_state(shared.clone(), inject_faults));
    Router::new()
        .nest("/mock", crate::control::routes())
        .merge(api)
        .layer(middleware::from_fn(request_id))
        .with_state(shared)
}

/// Accepts connections until `stop` flips.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let app = router(shared);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, peer, tls.clone(), app.clone(), stop.clone()));
            }
            _ = stop.changed() => break,
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let conn = Conn {
        peer,
        kill: Arc::new(Notify::new()),
    };
    let kill = conn.kill.clone();
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(conn.clone());
        app.clone().oneshot(req)
    });
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

/// Echoes the client's `x-request-id` (or makes one) on every answer.
async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .filter(|v| v.to_str().is_ok_and(|v| !v.is_empty() && v.len() <= 128))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_str(&new_id()).expect("hex id"));
    let mut resp = next.run(req).await;
    resp.headers_mut().insert("x-request-id", id);
    resp
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

fn pick_fault(shared: &Shared, method: &str, path: &str) -> (Option<FaultKind>, bool, u64, u64) {
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
    let stall = if chosen == Some(FaultKind::Stall) {
        f.stall_ms
    } else {
        0
    };
    drop(f);
    (chosen, ambiguous, delay, stall)
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

/// The array's gateway, simulated: concurrency limit, latency, rate limit
/// and injected faults before the request is handled; ambiguous failures
/// after; and a count of every answer.
async fn inject_faults(
    State(shared): State<Arc<Shared>>,
    axum::Extension(conn): axum::Extension<Conn>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();

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

    let (fault, ambiguous_roll, delay_ms, stall_ms) = pick_fault(&shared, method.as_str(), &path);
    // A stalled request hangs before the array does anything with it (a
    // client that gives up meanwhile leaves nothing behind).
    if stall_ms > 0 {
        tokio::time::sleep(Duration::from_millis(stall_ms)).await;
    }
    // The latency is the request's whole time at the array, its own work
    // included: the answer (or the reset) leaves at admission + latency, not
    // after latency and then the work.
    let answer_at = Instant::now() + Duration::from_millis(delay_ms);

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

    let finish = |mut resp: Response| -> Response {
        shared
            .counters
            .lock()
            .unwrap()
            .record(method.as_str(), &path, resp.status().as_u16());
        let h = resp.headers_mut();
        for (k, v) in &extra_headers {
            if let Ok(v) = v.parse() {
                h.insert(*k, v);
            }
        }
        resp
    };
    let finish = |resp: Response| async move {
        let resp = finish(resp);
        sleep_until_precisely(answer_at).await;
        resp
    };
    // Drops the connection without an answer.
    let reset = || async {
        shared.counters.lock().unwrap().record(method.as_str(), &path, 0);
        sleep_until_precisely(answer_at).await;
        conn.kill.notify_one();
        std::future::pending::<Response>().await
    };

    if let Some(kind) = forced.filter(|k| !k.is_ambiguous() && *k != FaultKind::Stall) {
        if kind != FaultKind::RateLimited {
            shared.counters.lock().unwrap().injected_faults += 1;
        }
        let other_texts = shared.array.lock().unwrap().quirks.other_error_texts;
        let (status, message) = match kind {
            FaultKind::Busy if other_texts => (500, "Try again later."),
            FaultKind::Busy => (500, "Server is busy"),
            FaultKind::BadGateway => (502, "Bad gateway."),
            FaultKind::Unavailable => (503, "Service unavailable."),
            FaultKind::GatewayTimeout => (504, "Gateway timeout."),
            FaultKind::RateLimited => (429, "API rate limit exceeded"),
            FaultKind::SessionExpired => {
                shared.sessions.end(req.headers());
                (403, "Session has expired.")
            }
            FaultKind::Reset => return reset().await,
            FaultKind::Ambiguous500 | FaultKind::AmbiguousReset | FaultKind::Stall => unreachable!(),
        };
        return finish(ApiError::new(status, message, None).into_response()).await;
    }

    if method == Method::GET
        && req.uri().query().is_some_and(crate::quirks::compares_names)
        && shared.array.lock().unwrap().quirks.no_keyset_paging
    {
        return finish(ApiError::bad("Invalid filter: unsupported comparison.", None).into_response()).await;
    }

    let resp = next.run(req).await;

    let ambiguous = match forced {
        Some(k) if k.is_ambiguous() => Some(k),
        _ if ambiguous_roll => Some(if rand::random::<bool>() {
            FaultKind::Ambiguous500
        } else {
            FaultKind::AmbiguousReset
        }),
        _ => None,
    };
    if let Some(kind) = ambiguous.filter(|_| is_mutation(&method) && resp.status().is_success()) {
        // The change is committed; the client is not told.
        shared.counters.lock().unwrap().injected_faults += 1;
        if kind == FaultKind::AmbiguousReset {
            return reset().await;
        }
        return finish(ApiError::new(500, "Internal server error.", None).into_response()).await;
    }
    finish(resp).await
}

/// Waits until `at`, to within tens of microseconds. tokio's timer ends a
/// sleep on the first millisecond tick after its deadline, which would add
/// up to 1 ms to every simulated request; so the timer covers all but the
/// last millisecond and a blocking-pool thread sleeps the rest.
async fn sleep_until_precisely(at: Instant) {
    if let Some(coarse) = at.checked_sub(Duration::from_millis(1))
        && coarse > Instant::now()
    {
        tokio::time::sleep_until(coarse.into()).await;
    }
    let rest = at.saturating_duration_since(Instant::now());
    if !rest.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

/// Versioned paths: a served 2.x version, then a live session, then a JSON
/// body, in the array's order (a bad version is 404 even without a session;
/// a bad body is 400 whatever the route).
async fn admit(shared: &Shared, req: Request) -> Result<Request, ApiError> {
    let Some((major, minor, _)) = split_versioned(req.uri().path()) else {
        return Err(ApiError::new(404, "Not found.", None));
    };
    if major == 1 {
        return Err(ApiError::new(
            404,
            "REST 1.x resources are not served by mock-flashblade; use 2.x.",
            None,
        ));
    }
    if major != 2 || !(MIN_MINOR..=MAX_MINOR).contains(&minor) {
        return Err(ApiError::new(
            404,
            format!("API version {major}.{minor} is not supported."),
            None,
        ));
    }
    let idle_ms = shared.array.lock().unwrap().st.idle_timeout;
    shared.sessions.authorize(req.headers(), idle_ms)?;
    let (mut parts, body) = req.into_parts();
    let json = if matches!(parts.method, Method::GET | Method::DELETE) {
        json!({})
    } else {
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        if bytes.is_empty() {
            json!({})
        } else {
            serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| ApiError::bad(format!("Invalid JSON in request body: {e}."), None))?
        }
    };
    parts.extensions.insert(JsonBody(json));
    parts.extensions.insert(ApiVersion(minor));
    Ok(Request::from_parts(parts, axum::body::Body::empty()))
}

async fn admit_versioned(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    // axum would answer HEAD from the GET handler; the array refuses it.
    let head = req.method() == Method::HEAD;
    match admit(&shared, req).await {
        Ok(_) if head => ApiError::new(405, "Method not allowed.", None).into_response(),
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Paths no route serves: 404, after the version and session checks when
/// the path is versioned.
pub(crate) async fn unmatched(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    if split_versioned(req.uri().path()).is_some()
        && let Err(e) = admit(&shared, req).await
    {
        return e.into_response();
    }
    ApiError::new(404, "Not found.", None).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_list_mixes_1x_and_2x_in_order() {
        let v = api_versions();
        assert_eq!(v.first().unwrap(), "1.0");
        assert!(v.contains(&"1.12".to_string()));
        assert_eq!(v.last().unwrap(), &format!("2.{MAX_MINOR}"));
    }

    #[test]
    fn versioned_paths() {
        assert_eq!(
            split_versioned("/api/2.17/file-systems"),
            Some((2, 17, "file-systems"))
        );
        assert_eq!(
            split_versioned("/api/1.2/quotas/users"),
            Some((1, 2, "quotas/users"))
        );
        assert_eq!(split_versioned("/api/login"), None);
        assert_eq!(split_versioned("/api/x.1/arrays"), None);
    }
}
