//! The HTTP side of the simulator: connections (TLS or plain, HTTP/1 and
//! HTTP/2, each one droppable by a reset fault), the axum router that puts
//! the resource modules' routes together, and the layers an API request
//! passes through, outermost first: request id, fault injection (latency,
//! concurrency limit, rate limit, injected errors, counters), then for
//! versioned paths the version, session and body checks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

use crate::api::ApiError;
use crate::faults::{Bucket, FaultKind};
use crate::gate::{admit_versioned, unmatched};
use crate::shared::{Conn, Shared};
use crate::state::{self, new_id};

/// The whole HTTP surface.
fn router(shared: Arc<Shared>) -> Router {
    let versioned = Router::new()
        .merge(state::resource_routes())
        .method_not_allowed_fallback(|| async { ApiError::new(405, "Method not allowed.", None) })
        // After the method fallback, so a wrong method is also answered only
        // to a valid session, as on the array.
        .route_layer(middleware::from_fn_with_state(shared.clone(), admit_versioned));
    let api = Router::new()
        .merge(crate::login::routes())
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
