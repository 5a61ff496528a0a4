//! Fault injection settings and the request counters tests assert on. Both
//! can be changed and read at runtime through the control endpoint.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a faulty answer looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// 500 `{"errors":[{"message":"Server is busy"}]}` (retryable overload).
    Busy,
    /// 502 Bad Gateway.
    BadGateway,
    /// 503 Service Unavailable.
    Unavailable,
    /// 504 Gateway Timeout.
    GatewayTimeout,
    /// 429 with Retry-After and RateLimit-* headers.
    RateLimited,
    /// The connection is dropped without an answer.
    Reset,
    /// The request is carried out, then answered with a plain 500.
    Ambiguous500,
    /// The request is carried out, then the connection is dropped.
    AmbiguousReset,
    /// The request hangs for `stall_ms` before it is handled normally.
    Stall,
    /// 403 as for an expired session (the session is also dropped).
    SessionExpired,
}

impl FaultKind {
    /// Faults that let the request change state before failing.
    pub fn is_ambiguous(self) -> bool {
        matches!(self, FaultKind::Ambiguous500 | FaultKind::AmbiguousReset)
    }
}

/// A fault for the next `times` requests that match.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedFault {
    /// HTTP method to match (any when absent).
    #[serde(default)]
    pub method: Option<String>,
    /// Substring of the request path to match, e.g. `file-systems`.
    #[serde(default)]
    pub path: Option<String>,
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl ScriptedFault {
    pub fn new(method: Option<&str>, path: Option<&str>, kind: FaultKind, times: u32) -> Self {
        Self {
            method: method.map(str::to_string),
            path: path.map(str::to_string),
            kind,
            times,
        }
    }

    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method))
            && self.path.as_deref().is_none_or(|p| path.contains(p))
    }
}

/// The fault configuration. Everything off by default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API request.
    pub latency_ms: u64,
    /// Up to this much more, uniformly random.
    pub jitter_ms: u64,
    /// Requests beyond this many wait for a slot, like a real array's
    /// limited parallelism.
    pub max_concurrency: Option<usize>,
    /// Token-bucket rate limit in requests per second (429 beyond it).
    pub rate_limit: Option<f64>,
    /// Bucket size; defaults to the per-second rate.
    pub rate_burst: Option<u32>,
    /// Probability of a random busy/502/503/504/reset answer.
    pub error_rate: f64,
    /// Probability that a successful POST/PATCH/DELETE is answered with a 500
    /// or a dropped connection after it took effect.
    pub ambiguous_rate: f64,
    /// Probability of a stall of `stall_ms` before handling.
    pub stall_rate: f64,
    pub stall_ms: u64,
    /// Deterministic faults for the next matching requests, in order.
    pub script: Vec<ScriptedFault>,
}

/// Requests seen, by method, path and status (status 0 = connection dropped).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestCount {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub count: u64,
}

/// A snapshot of the counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub requests: Vec<RequestCount>,
    pub logins: u64,
    pub failed_logins: u64,
    pub logouts: u64,
    pub live_sessions: usize,
    pub injected_faults: u64,
    pub rate_limited: u64,
    pub peak_in_flight: u64,
}

impl Counters {
    /// Requests with `method` whose path ends with `/<resource>` (any status).
    pub fn count(&self, method: &str, resource: &str) -> u64 {
        let suffix = format!("/{resource}");
        self.requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.ends_with(&suffix))
            .map(|r| r.count)
            .sum()
    }

    /// Like [`Counters::count`], for one status.
    pub fn count_status(&self, method: &str, resource: &str, status: u16) -> u64 {
        let suffix = format!("/{resource}");
        self.requests
            .iter()
            .filter(|r| {
                r.method.eq_ignore_ascii_case(method) && r.path.ends_with(&suffix) && r.status == status
            })
            .map(|r| r.count)
            .sum()
    }

    pub fn total(&self) -> u64 {
        self.requests.iter().map(|r| r.count).sum()
    }
}

/// Mutable counter store behind a mutex in the server.
#[derive(Default)]
pub(crate) struct CounterStore {
    pub requests: BTreeMap<(String, String, u16), u64>,
    pub logins: u64,
    pub failed_logins: u64,
    pub logouts: u64,
    pub injected_faults: u64,
    pub rate_limited: u64,
    pub peak_in_flight: u64,
}

impl CounterStore {
    pub fn record(&mut self, method: &str, path: &str, status: u16) {
        *self
            .requests
            .entry((method.to_string(), path.to_string(), status))
            .or_default() += 1;
    }

    pub fn snapshot(&self, live_sessions: usize) -> Counters {
        Counters {
            requests: self
                .requests
                .iter()
                .map(|((m, p, s), c)| RequestCount {
                    method: m.clone(),
                    path: p.clone(),
                    status: *s,
                    count: *c,
                })
                .collect(),
            logins: self.logins,
            failed_logins: self.failed_logins,
            logouts: self.logouts,
            live_sessions,
            injected_faults: self.injected_faults,
            rate_limited: self.rate_limited,
            peak_in_flight: self.peak_in_flight,
        }
    }
}

/// Token bucket for `--rate-limit`.
pub(crate) struct Bucket {
    pub rate: f64,
    pub burst: f64,
    pub tokens: f64,
    pub last: std::time::Instant,
}

impl Bucket {
    pub fn new(rate: f64, burst: Option<u32>) -> Self {
        let burst = burst.map(f64::from).unwrap_or(rate.max(1.0));
        Self {
            rate,
            burst,
            tokens: burst,
            last: std::time::Instant::now(),
        }
    }

    /// Takes a token; on refusal returns the seconds until one is available.
    pub fn take(&mut self) -> Result<f64, f64> {
        let now = std::time::Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(self.tokens)
        } else {
            Err((1.0 - self.tokens) / self.rate)
        }
    }
}
