//! The transport to one array: one session (API-token login, reused session
//! token, single-flight re-login on 401/403), REST version negotiation, a
//! bound on requests in flight, a deadline per call, and retries with
//! jittered backoff that honour the array's wait hints. Changes whose outcome
//! is unknown are reported as [`Error::Ambiguous`] instead of being retried.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tokio::sync::{Mutex, RwLock, Semaphore};

use super::error::{ApiErrorKind, Error, Step, Transport};
use crate::config::ArrayConfig;
use crate::metrics::ArrayMetrics;
use crate::secret::Secret;

/// Newest REST 2.x minor version this client is written and tested for.
pub(crate) const MAX_MINOR: u32 = 17;
/// Attempts per call (the first try included) before giving up.
const MAX_ATTEMPTS: u32 = 6;
/// Login is retried this often on overload, as the array's limiter runs
/// before authentication.
const LOGIN_ATTEMPTS: u32 = 3;

#[derive(Clone)]
struct Session {
    token: Secret,
    generation: u64,
    minor: u32,
    /// The user the API token belongs to, as login says (not a secret).
    username: Option<String>,
}

/// A FlashBlade REST client for one configured array.
pub(crate) struct ArrayClient {
    name: String,
    base: Url,
    http: reqwest::Client,
    token_file: PathBuf,
    session: RwLock<Option<Session>>,
    login_lock: Mutex<()>,
    permits: Semaphore,
    timeout: Duration,
    metrics: ArrayMetrics,
}

impl fmt::Debug for ArrayClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately no session or token.
        f.debug_struct("ArrayClient")
            .field("name", &self.name)
            .field("url", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// One REST call.
pub(crate) struct Call {
    pub method: Method,
    /// Path below `/api/2.N/`, e.g. `file-systems`.
    pub resource: &'static str,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
    /// Safe to repeat blindly (GET, and PATCH/DELETE that set absolute state).
    pub idempotent: bool,
    /// For messages: what the call does, e.g. "create file system k8s-x".
    pub what: String,
}

impl Call {
    pub(crate) fn get(
        resource: &'static str,
        query: Vec<(&'static str, String)>,
        what: impl Into<String>,
    ) -> Self {
        Call {
            method: Method::GET,
            resource,
            query,
            body: None,
            idempotent: true,
            what: what.into(),
        }
    }
}

enum Outcome {
    Done(Value),
    /// Try again after this long (None = computed backoff).
    Retry {
        wait: Option<Duration>,
        reason: Transport,
        /// The reason as a fixed word, for the retries metric.
        kind: &'static str,
    },
    Relogin,
    Fail(Error),
}

fn jitter(max: Duration) -> Duration {
    max.mul_f64(rand::random::<f64>())
}

fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(100) * 2u32.pow(attempt.saturating_sub(1).min(5));
    let base = base.min(Duration::from_secs(2));
    base + jitter(base / 2)
}

/// The array's wait hint: `Retry-After` (seconds or HTTP date), else
/// `RateLimit-Reset` (seconds).
fn wait_hint(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let text = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(v) = text("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            return Some(Duration::from_secs_f64(secs.max(0.0)));
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(
                at.duration_since(std::time::SystemTime::now())
                    .unwrap_or_default(),
            );
        }
    }
    text("ratelimit-reset")
        .and_then(|v| v.parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
}

fn error_message(body: &Value) -> (String, Option<String>) {
    let first = body.get("errors").and_then(|e| e.get(0));
    let message = first
        .and_then(|e| e.get("message"))
        .or_else(|| body.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("no error message")
        .to_string();
    let context = first
        .and_then(|e| e.get("context"))
        .and_then(Value::as_str)
        .map(str::to_string);
    (message, context)
}

impl ArrayClient {
    pub(crate) fn new(
        array: &ArrayConfig,
        http: reqwest::Client,
        max_in_flight: usize,
        timeout: Duration,
        metrics: ArrayMetrics,
    ) -> Result<Self, Error> {
        let setup = |detail: &str| Error::Setup {
            array: array.name.to_string(),
            detail: detail.to_string(),
            source: None,
        };
        Ok(Self {
            name: array.name.to_string(),
            base: array
                .management_url
                .clone()
                .ok_or_else(|| setup("management URL is not configured"))?,
            token_file: array
                .api_token_file
                .clone()
                .ok_or_else(|| setup("API token file is not configured"))?,
            http,
            session: RwLock::new(None),
            login_lock: Mutex::new(()),
            permits: Semaphore::new(max_in_flight.max(1)),
            timeout,
            metrics,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The negotiated REST minor version (logs in if needed).
    pub(crate) async fn api_minor(&self) -> Result<u32, Error> {
        let deadline = Instant::now() + self.timeout;
        Ok(self.current_session(deadline).await?.minor)
    }

    /// The user the API token belongs to, when login named one.
    pub(crate) async fn username(&self) -> Result<Option<String>, Error> {
        let deadline = Instant::now() + self.timeout;
        Ok(self.current_session(deadline).await?.username)
    }

    fn url(&self, path: &str) -> Result<Url, Error> {
        self.base.join(path).map_err(|e| Error::Setup {
            array: self.name.clone(),
            detail: format!("bad URL: {e}"),
            source: Some(e.into()),
        })
    }

    /// Picks the newest 2.x version both sides support.
    async fn negotiate(&self, deadline: Instant) -> Result<u32, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let r = self
                .http
                .get(self.url("api/api_version")?)
                .timeout(remaining.max(Duration::from_millis(1)))
                .send()
                .await;
            let retry_reason = match r {
                Ok(resp) if resp.status().is_success() => {
                    let body: Value = resp.json().await.map_err(|e| Error::Protocol {
                        array: self.name.clone(),
                        detail: format!("api_version: {e}"),
                    })?;
                    let versions =
                        body.get("versions")
                            .and_then(Value::as_array)
                            .ok_or_else(|| Error::Protocol {
                                array: self.name.clone(),
                                detail: "api_version has no versions list".into(),
                            })?;
                    let best = versions
                        .iter()
                        .filter_map(Value::as_str)
                        .filter_map(|v| v.strip_prefix("2."))
                        .filter_map(|m| m.parse::<u32>().ok())
                        .filter(|m| *m <= MAX_MINOR)
                        .max();
                    return best.ok_or_else(|| Error::Version {
                        array: self.name.clone(),
                        detail: format!(
                            "the array offers no REST 2.x version up to 2.{MAX_MINOR} (it lists {})",
                            versions
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
                Ok(resp) => Transport::Status {
                    step: Step::Version,
                    status: resp.status().as_u16(),
                    message: String::new(),
                },
                Err(source) => Transport::Http {
                    step: Step::Version,
                    source,
                },
            };
            if attempt >= LOGIN_ATTEMPTS || Instant::now() + backoff(attempt) >= deadline {
                return Err(Error::Unavailable {
                    array: self.name.clone(),
                    attempts: attempt,
                    last: retry_reason,
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
    }

    /// Exchanges the API token (read fresh from its file, so a rotated Secret
    /// is picked up) for a session token.
    async fn login(&self, deadline: Instant) -> Result<Session, Error> {
        let minor = self.negotiate(deadline).await?;
        let raw = tokio::fs::read_to_string(&self.token_file)
            .await
            .map_err(|e| Error::Setup {
                array: self.name.clone(),
                detail: format!("cannot read API token file {}: {e}", self.token_file.display()),
                source: Some(e.into()),
            })?;
        let api_token = Secret::new(raw.trim());
        if api_token.is_empty() {
            return Err(Error::Setup {
                array: self.name.clone(),
                detail: format!("API token file {} is empty", self.token_file.display()),
                source: None,
            });
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::Timeout {
                    array: self.name.clone(),
                    seconds: self.timeout.as_secs_f64(),
                    what: "login".into(),
                });
            }
            let r = self
                .http
                .post(self.url("api/login")?)
                .header("api-token", api_token.expose())
                .timeout(remaining)
                .send()
                .await;
            let (reason, wait) = match r {
                Ok(resp) if resp.status().is_success() => {
                    let token = resp
                        .headers()
                        .get("x-auth-token")
                        .and_then(|v| v.to_str().ok())
                        .filter(|t| !t.is_empty())
                        .map(Secret::new)
                        .ok_or_else(|| Error::Protocol {
                            array: self.name.clone(),
                            detail: "login answered without an x-auth-token header".into(),
                        })?;
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    let username = body.get("username").and_then(Value::as_str).map(str::to_string);
                    tracing::info!(array = %self.name, api_version = %format!("2.{minor}"), "logged in to array");
                    return Ok(Session {
                        token,
                        generation: 0,
                        minor,
                        username,
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body: Value = resp.json().await.unwrap_or(Value::Null);
                    let (message, _) = error_message(&body);
                    match status.as_u16() {
                        401 | 403 => {
                            return Err(Error::Unauthorized {
                                array: self.name.clone(),
                                detail: message,
                            });
                        }
                        429 | 503 | 500 | 502 | 504 => (
                            Transport::Status {
                                step: Step::Login,
                                status: status.as_u16(),
                                message,
                            },
                            wait_hint(&headers),
                        ),
                        _ => {
                            return Err(Error::Api {
                                array: self.name.clone(),
                                status: status.as_u16(),
                                kind: ApiErrorKind::classify(status.as_u16(), &message),
                                message,
                                context: None,
                            });
                        }
                    }
                }
                Err(source) => (
                    Transport::Http {
                        step: Step::Login,
                        source,
                    },
                    None,
                ),
            };
            let wait = wait
                .map(|w| w + jitter(Duration::from_millis(500)))
                .unwrap_or_else(|| backoff(attempt));
            if attempt >= LOGIN_ATTEMPTS || Instant::now() + wait >= deadline {
                return Err(Error::Unavailable {
                    array: self.name.clone(),
                    attempts: attempt,
                    last: reason,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn current_session(&self, deadline: Instant) -> Result<Session, Error> {
        if let Some(s) = self.session.read().await.clone() {
            return Ok(s);
        }
        self.relogin(None, deadline).await
    }

    /// Logs in again unless another caller already did since `stale`: all
    /// callers that saw the same refused session share one login.
    async fn relogin(&self, stale: Option<u64>, deadline: Instant) -> Result<Session, Error> {
        let _one = self.login_lock.lock().await;
        let current = self.session.read().await.clone();
        if let Some(cur) = &current
            && stale.is_none_or(|g| cur.generation > g)
        {
            return Ok(cur.clone());
        }
        let login = self.login(deadline).await;
        self.metrics.login(login.is_ok());
        let mut s = login?;
        s.generation = current.map_or(1, |c| c.generation + 1);
        *self.session.write().await = Some(s.clone());
        Ok(s)
    }

    /// Ends the session (on shutdown). Errors are logged, not returned.
    pub(crate) async fn logout(&self) {
        let Some(s) = self.session.write().await.take() else {
            return;
        };
        let r = self
            .http
            .post(self.url("api/logout").expect("static path"))
            .header("x-auth-token", s.token.expose())
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        match r {
            Ok(_) => tracing::info!(array = %self.name, "logged out of array"),
            Err(e) => {
                tracing::warn!(array = %self.name, error = %super::describe_reqwest_error(&e), "logout failed")
            }
        }
    }

    /// Runs one REST call with the session, the in-flight bound, the deadline
    /// and the retry policy.
    pub(crate) async fn call(&self, call: Call) -> Result<Value, Error> {
        let deadline = Instant::now() + self.timeout;
        let request_id = uuid_like();
        // Bounded: the method and the resource are fixed by the code.
        let operation = format!("{} {}", call.method, call.resource);
        let mut attempt = 0u32;
        let mut relogged = false;
        loop {
            attempt += 1;
            let session = match tokio::time::timeout_at(deadline.into(), self.current_session(deadline)).await
            {
                Ok(s) => s?,
                Err(_) => return Err(self.timeout_error(&call.what)),
            };
            let started = Instant::now();
            let outcome = match tokio::time::timeout_at(
                deadline.into(),
                self.attempt(&call, &operation, &session, &request_id, deadline),
            )
            .await
            {
                Ok(o) => o,
                Err(_) => {
                    self.metrics.request(&operation, "timeout", started.elapsed());
                    if call.idempotent {
                        return Err(self.timeout_error(&call.what));
                    }
                    Outcome::Fail(Error::Ambiguous {
                        array: self.name.clone(),
                        what: call.what.clone(),
                        reason: Transport::Deadline,
                    })
                }
            };
            let (wait, reason, kind) = match outcome {
                Outcome::Done(v) => return Ok(v),
                Outcome::Fail(e) => return Err(e),
                Outcome::Relogin if !relogged => {
                    relogged = true;
                    self.metrics.relogin();
                    tracing::info!(array = %self.name, "session refused; logging in again");
                    match tokio::time::timeout_at(
                        deadline.into(),
                        self.relogin(Some(session.generation), deadline),
                    )
                    .await
                    {
                        Ok(r) => {
                            r?;
                        }
                        Err(_) => return Err(self.timeout_error(&call.what)),
                    }
                    attempt -= 1;
                    continue;
                }
                Outcome::Relogin => {
                    return Err(Error::Unauthorized {
                        array: self.name.clone(),
                        detail: "the session was refused again right after a fresh login".into(),
                    });
                }
                Outcome::Retry { wait, reason, kind } => (wait, reason, kind),
            };
            let wait = match wait {
                // The server's hint, plus a little jitter so callers spread out.
                Some(w) => w + jitter(Duration::from_millis(500)),
                None => backoff(attempt),
            };
            if attempt >= MAX_ATTEMPTS || Instant::now() + wait >= deadline {
                return Err(Error::Unavailable {
                    array: self.name.clone(),
                    attempts: attempt,
                    last: reason,
                });
            }
            self.metrics.retry(kind);
            tracing::debug!(array = %self.name, what = %call.what, attempt, wait = ?wait, reason = %reason, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    fn timeout_error(&self, what: &str) -> Error {
        Error::Timeout {
            array: self.name.clone(),
            seconds: self.timeout.as_secs_f64(),
            what: what.to_string(),
        }
    }

    async fn attempt(
        &self,
        call: &Call,
        operation: &str,
        session: &Session,
        request_id: &str,
        deadline: Instant,
    ) -> Outcome {
        let mut held = self.metrics.waiting();
        let permit = match self.permits.acquire().await {
            Ok(p) => {
                held.admitted();
                p
            }
            Err(_) => {
                return Outcome::Fail(Error::Setup {
                    array: self.name.clone(),
                    detail: "client closed".into(),
                    source: None,
                });
            }
        };
        let mut url = match self.url(&format!("api/2.{}/{}", session.minor, call.resource)) {
            Ok(u) => u,
            Err(e) => return Outcome::Fail(e),
        };
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let mut rb = self
            .http
            .request(call.method.clone(), url)
            .header("x-auth-token", session.token.expose())
            .header("x-request-id", request_id)
            .timeout(remaining);
        if let Some(body) = &call.body {
            rb = rb.json(body);
        }
        let ambiguous = |reason: Transport| {
            Outcome::Fail(Error::Ambiguous {
                array: self.name.clone(),
                what: call.what.clone(),
                reason,
            })
        };
        let started = Instant::now();
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => {
                let status = if e.is_timeout() {
                    "timeout"
                } else {
                    "transport_error"
                };
                self.metrics.request(operation, status, started.elapsed());
                if e.is_timeout() && !e.is_connect() {
                    // The attempt ran to the call's deadline.
                    return if call.idempotent {
                        Outcome::Fail(self.timeout_error(&call.what))
                    } else {
                        ambiguous(Transport::Http {
                            step: Step::Request,
                            source: e,
                        })
                    };
                }
                let connect = e.is_connect();
                let reason = Transport::Http {
                    step: Step::Request,
                    source: e,
                };
                // A refused connection never reached the array: always safe to retry.
                if connect || call.idempotent {
                    return Outcome::Retry {
                        wait: None,
                        reason,
                        kind: "transport",
                    };
                }
                return ambiguous(reason);
            }
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await;
        self.metrics
            .request(operation, status.as_str(), started.elapsed());
        let bytes = match body {
            Ok(b) => b,
            Err(source) => {
                let reason = Transport::Http {
                    step: Step::Answer,
                    source,
                };
                return if call.idempotent {
                    Outcome::Retry {
                        wait: None,
                        reason,
                        kind: "transport",
                    }
                } else {
                    ambiguous(reason)
                };
            }
        };
        // The array is done with this request once its answer is in: parsing
        // it is ours, so the next request may go now.
        drop(permit);
        drop(held);
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) if status.is_success() => {
                    return Outcome::Fail(Error::Protocol {
                        array: self.name.clone(),
                        detail: format!("{}: invalid JSON: {e}", call.what),
                    });
                }
                Err(_) => Value::Null,
            }
        };
        if status.is_success() {
            return Outcome::Done(body);
        }
        let (message, context) = error_message(&body);
        let reason = Transport::Status {
            step: Step::Request,
            status: status.as_u16(),
            message: message.clone(),
        };
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Outcome::Relogin,
            // Refused before processing: safe to repeat after the hinted wait.
            StatusCode::TOO_MANY_REQUESTS => Outcome::Retry {
                wait: wait_hint(&headers),
                reason,
                kind: "rate_limited",
            },
            StatusCode::SERVICE_UNAVAILABLE => Outcome::Retry {
                wait: wait_hint(&headers),
                reason,
                kind: "unavailable",
            },
            StatusCode::INTERNAL_SERVER_ERROR if message.to_ascii_lowercase().contains("busy") => {
                Outcome::Retry {
                    wait: wait_hint(&headers),
                    reason,
                    kind: "busy",
                }
            }
            StatusCode::INTERNAL_SERVER_ERROR | StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => {
                if call.idempotent {
                    Outcome::Retry {
                        wait: None,
                        reason,
                        kind: "server_error",
                    }
                } else {
                    ambiguous(reason)
                }
            }
            _ => Outcome::Fail(Error::Api {
                array: self.name.clone(),
                status: status.as_u16(),
                kind: ApiErrorKind::classify(status.as_u16(), &message),
                message,
                context,
            }),
        }
    }
}

/// A random UUID-shaped request id (reused across the retries of one call).
fn uuid_like() -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(wait_hint(&h), None);
        h.insert("ratelimit-reset", "3".parse().unwrap());
        assert_eq!(wait_hint(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after", "2".parse().unwrap());
        assert_eq!(wait_hint(&h), Some(Duration::from_secs(2)));
        let later = std::time::SystemTime::now() + Duration::from_secs(30);
        h.insert("retry-after", httpdate::fmt_http_date(later).parse().unwrap());
        let w = wait_hint(&h).unwrap();
        assert!(
            w > Duration::from_secs(25) && w <= Duration::from_secs(30),
            "{w:?}"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) >= Duration::from_millis(100) && backoff(1) <= Duration::from_millis(150));
        assert!(backoff(3) >= Duration::from_millis(400));
        assert!(backoff(20) <= Duration::from_secs(3));
    }

    #[test]
    fn error_messages_from_both_shapes() {
        let (m, c) = error_message(
            &serde_json::json!({"errors":[{"context":"fs1","message":"File system does not exist."}]}),
        );
        assert_eq!(
            (m.as_str(), c.as_deref()),
            ("File system does not exist.", Some("fs1"))
        );
        let (m, _) = error_message(&serde_json::json!({"message":"API rate limit exceeded"}));
        assert_eq!(m, "API rate limit exceeded");
    }
}
