//! Prometheus metrics: every family the driver exports (docs/metrics.md), the
//! tower layer that counts CSI calls, and the `GET /metrics` endpoint.
//!
//! One [`Metrics`] per process, built by `app` and handed to the services and
//! array clients that record into it; nothing here is global. Recording is a
//! few atomic operations; a scrape only encodes what is already recorded, so
//! it never waits on an RPC and never calls the array. The label values are
//! bounded sets: CSI method names from a fixed list, gRPC codes, configured
//! array names, REST operations from the code (`GET file-systems`), HTTP
//! statuses, and volume ids the driver made (never a user-supplied string).
//!
//! A leaf: it uses no other module of the crate.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tower::{Layer, Service};

/// Every family's name starts with this.
pub const PREFIX: &str = "flashblade_csi";

/// Latency buckets, in seconds: 1 ms to 60 s (a CSI call or an array request
/// ends well inside the longest deadline, 60 s).
const SECONDS_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn histograms<L: Clone + std::hash::Hash + Eq>() -> Histograms<L> {
    Family::new_with_constructor(seconds_histogram as fn() -> Histogram)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArrayLabels {
    array: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    array: String,
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    array: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    array: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    array: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AbortedLabels {
    service: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MountLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    step: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadlineLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    array: String,
    volume_id: String,
}

/// The registry and every family in it.
pub struct Metrics {
    registry: Registry,
    rpc_calls: Family<RpcLabels, Counter>,
    rpc_seconds: Histograms<MethodLabels>,
    aborted: Family<AbortedLabels, Counter>,
    array_requests: Family<RequestLabels, Counter>,
    array_seconds: Histograms<OperationLabels>,
    array_retries: Family<ReasonLabels, Counter>,
    array_logins: Family<ResultLabels, Counter>,
    array_relogins: Family<ArrayLabels, Counter>,
    array_in_flight: Family<ArrayLabels, Gauge>,
    array_waiting: Family<ArrayLabels, Gauge>,
    array_capacity: Family<ArrayLabels, Gauge>,
    array_used: Family<ArrayLabels, Gauge>,
    array_polls: Family<ResultLabels, Counter>,
    array_reachable: Family<ArrayLabels, Gauge>,
    volume_provisioned: Family<VolumeLabels, Gauge>,
    volume_used: Family<VolumeLabels, Gauge>,
    volume_hard_limit: Family<VolumeLabels, Gauge>,
    /// Per array, the volume ids last reported (to drop the ones now gone).
    volumes_seen: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// Bytes of the last exposition.
    encoded_size: AtomicUsize,
    node_mounts: Family<MountLabels, Counter>,
    node_unmount_steps: Family<StepLabels, Counter>,
    node_deadlines: Family<DeadlineLabels, Counter>,
    node_abnormal: Gauge,
    /// Volume ids whose last stats answered "abnormal".
    abnormal_volumes: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let r = &mut registry;
        macro_rules! reg {
            ($name:literal, $help:literal, $metric:expr) => {{
                let m = $metric;
                r.register($name, $help, m.clone());
                m
            }};
            ($name:literal, $help:literal, $unit:expr, $metric:expr) => {{
                let m = $metric;
                r.register_with_unit($name, $help, $unit, m.clone());
                m
            }};
        }
        let rpc_calls = reg!(
            "csi_calls",
            "CSI calls answered, by method and gRPC status code",
            Family::default()
        );
        let rpc_seconds = reg!(
            "csi_call_duration",
            "Time to answer a CSI call, by method",
            Unit::Seconds,
            histograms()
        );
        let aborted = reg!(
            "operations_aborted",
            "Calls refused with ABORTED because an operation on the same volume, name or path was in flight",
            Family::default()
        );
        let array_requests = reg!(
            "array_requests",
            "REST requests sent to the array (each attempt), by operation and HTTP status (or transport_error, timeout)",
            Family::default()
        );
        let array_seconds = reg!(
            "array_request_duration",
            "Time of one REST request to the array (one attempt), by operation",
            Unit::Seconds,
            histograms()
        );
        let array_retries = reg!(
            "array_retries",
            "REST requests repeated after a refusal or failure, by reason",
            Family::default()
        );
        let array_logins = reg!(
            "array_logins",
            "Logins to the array (API token for a session), by result",
            Family::default()
        );
        let array_relogins = reg!(
            "array_relogins",
            "Sessions the array refused (401/403) that were replaced by a fresh login",
            Family::default()
        );
        let array_in_flight = reg!(
            "array_requests_in_flight",
            "REST requests to the array now in flight",
            Family::default()
        );
        let array_waiting = reg!(
            "array_requests_waiting",
            "REST requests now waiting for the in-flight bound (--max-array-requests)",
            Family::default()
        );
        let array_capacity = reg!(
            "array_capacity",
            "The array's usable capacity for file systems, from the last poll",
            Unit::Bytes,
            Family::default()
        );
        let array_used = reg!(
            "array_used",
            "Space the array's file systems use, from the last poll",
            Unit::Bytes,
            Family::default()
        );
        let array_polls = reg!(
            "array_polls",
            "Capacity polls of the array (--metrics-poll-interval), by result",
            Family::default()
        );
        let array_reachable = reg!(
            "array_reachable",
            "1 when the last capacity poll of the array succeeded, 0 when it failed",
            Family::default()
        );
        let volume_provisioned = reg!(
            "volume_provisioned",
            "A volume's provisioned size (its quota), from the last poll",
            Unit::Bytes,
            Family::default()
        );
        let volume_used = reg!(
            "volume_used",
            "Space a volume uses, from the last poll",
            Unit::Bytes,
            Family::default()
        );
        let volume_hard_limit = reg!(
            "volume_hard_limit_enabled",
            "1 when writes to the volume fail past its provisioned size, else 0",
            Family::default()
        );
        let node_mounts = reg!(
            "node_mounts",
            "Mounts made by the node plugin: kind nfs (NodeStage) or bind (local staging, NodePublish), by result",
            Family::default()
        );
        let node_unmount_steps = reg!(
            "node_unmount_steps",
            "Unmount attempts by escalation step (normal, forced, lazy) and result",
            Family::default()
        );
        let node_deadlines = reg!(
            "node_deadlines_exceeded",
            "Node operations given up at their deadline, by operation (mount, stat)",
            Family::default()
        );
        let node_abnormal = reg!(
            "node_volumes_abnormal",
            "Volumes whose last NodeGetVolumeStats reported an abnormal condition",
            Gauge::default()
        );
        Self {
            registry,
            rpc_calls,
            rpc_seconds,
            aborted,
            array_requests,
            array_seconds,
            array_retries,
            array_logins,
            array_relogins,
            array_in_flight,
            array_waiting,
            array_capacity,
            array_used,
            array_polls,
            array_reachable,
            volume_provisioned,
            volume_used,
            volume_hard_limit,
            volumes_seen: Mutex::new(BTreeMap::new()),
            encoded_size: AtomicUsize::new(0),
            node_mounts,
            node_unmount_steps,
            node_deadlines,
            node_abnormal,
            abnormal_volumes: Mutex::new(HashSet::new()),
        }
    }

    /// The exposition (OpenMetrics text format) of everything recorded.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        // Sized from the last scrape: growing a multi-megabyte text by
        // doubling would hold about twice its size at the end.
        let last = self.encoded_size.load(Ordering::Relaxed);
        let mut out = String::with_capacity(last + last / 16);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        self.encoded_size.store(out.len(), Ordering::Relaxed);
        Ok(out)
    }

    fn csi_call(&self, method: &'static str, code: i32, elapsed: Duration) {
        self.rpc_calls
            .get_or_create(&RpcLabels {
                method: method.to_string(),
                grpc_code: code_name(code).to_string(),
            })
            .inc();
        self.rpc_seconds
            .get_or_create(&MethodLabels {
                method: method.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A call refused as already in flight. `key` is the in-flight key
    /// (`volume:<id>`, `create:<name>`…): only its fixed prefix is a label.
    pub(crate) fn aborted(&self, service: &str, key: &str) {
        let operation = key.split(':').next().unwrap_or_default();
        self.aborted
            .get_or_create(&AbortedLabels {
                service: service.to_string(),
                operation: operation.to_string(),
            })
            .inc();
    }

    /// Shows the node's counters at zero from the start (so `rate()` and
    /// alerts see a series before the first event).
    pub(crate) fn init_node(&self) {
        for kind in ["nfs", "bind"] {
            for ok in [true, false] {
                self.node_mounts.get_or_create_owned(&MountLabels {
                    kind: kind.to_string(),
                    result: result(ok).to_string(),
                });
            }
        }
        for step in UNMOUNT_STEPS {
            for ok in [true, false] {
                self.node_unmount_steps.get_or_create_owned(&StepLabels {
                    step: step.to_string(),
                    result: result(ok).to_string(),
                });
            }
        }
        for operation in ["mount", "stat"] {
            self.node_deadlines.get_or_create_owned(&DeadlineLabels {
                operation: operation.to_string(),
            });
        }
    }

    /// The handle one array client records into (its counters start at zero).
    pub(crate) fn for_array(&self, array: &str) -> ArrayMetrics {
        for reason in RETRY_REASONS {
            self.array_retries.get_or_create_owned(&ReasonLabels {
                array: array.to_string(),
                reason: reason.to_string(),
            });
        }
        let a = || ArrayLabels {
            array: array.to_string(),
        };
        let result = |r: &str| ResultLabels {
            array: array.to_string(),
            result: r.to_string(),
        };
        ArrayMetrics {
            array: array.to_string(),
            requests: self.array_requests.clone(),
            seconds: self.array_seconds.clone(),
            retries: self.array_retries.clone(),
            logins_ok: self.array_logins.get_or_create_owned(&result("success")),
            logins_failed: self.array_logins.get_or_create_owned(&result("failure")),
            relogins: self.array_relogins.get_or_create_owned(&a()),
            in_flight: self.array_in_flight.get_or_create_owned(&a()),
            waiting: self.array_waiting.get_or_create_owned(&a()),
        }
    }

    /// The result of one capacity poll of `array`.
    pub(crate) fn array_polled(&self, array: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.array_polls
            .get_or_create(&ResultLabels {
                array: array.to_string(),
                result: result.to_string(),
            })
            .inc();
        self.array_reachable
            .get_or_create(&ArrayLabels {
                array: array.to_string(),
            })
            .set(i64::from(ok));
    }

    pub(crate) fn array_space(&self, array: &str, capacity: i64, used: i64) {
        let a = ArrayLabels {
            array: array.to_string(),
        };
        self.array_capacity.get_or_create(&a).set(capacity);
        self.array_used.get_or_create(&a).set(used);
    }

    /// Replaces `array`'s per-volume gauges with `volumes`: volumes no
    /// longer listed disappear from the exposition.
    pub(crate) fn volumes(&self, array: &str, volumes: &[VolumeUsage]) {
        let mut seen = self.volumes_seen.lock().unwrap_or_else(|p| p.into_inner());
        let now: BTreeSet<String> = volumes.iter().map(|v| v.volume_id.clone()).collect();
        let labels = |id: &str| VolumeLabels {
            array: array.to_string(),
            volume_id: id.to_string(),
        };
        if let Some(before) = seen.get(array) {
            for gone in before.difference(&now) {
                let l = labels(gone);
                self.volume_provisioned.remove(&l);
                self.volume_used.remove(&l);
                self.volume_hard_limit.remove(&l);
            }
        }
        for v in volumes {
            let l = labels(&v.volume_id);
            self.volume_provisioned.get_or_create(&l).set(v.provisioned_bytes);
            self.volume_used.get_or_create(&l).set(v.used_bytes);
            self.volume_hard_limit
                .get_or_create(&l)
                .set(i64::from(v.hard_limit));
        }
        seen.insert(array.to_string(), now);
    }

    /// A mount by the node plugin: `kind` is `nfs` or `bind`.
    pub(crate) fn mount(&self, kind: &str, ok: bool) {
        self.node_mounts
            .get_or_create(&MountLabels {
                kind: kind.to_string(),
                result: result(ok).to_string(),
            })
            .inc();
    }

    /// One unmount step: `normal`, `forced` or `lazy`.
    pub(crate) fn unmount_step(&self, step: &str, ok: bool) {
        self.node_unmount_steps
            .get_or_create(&StepLabels {
                step: step.to_string(),
                result: result(ok).to_string(),
            })
            .inc();
    }

    /// A node operation (`mount`, `stat`) that ran out of time.
    pub(crate) fn deadline_exceeded(&self, operation: &str) {
        self.node_deadlines
            .get_or_create(&DeadlineLabels {
                operation: operation.to_string(),
            })
            .inc();
    }

    /// The condition NodeGetVolumeStats reported for `volume_id`.
    pub(crate) fn volume_condition(&self, volume_id: &str, abnormal: bool) {
        let mut set = self.abnormal_volumes.lock().unwrap_or_else(|p| p.into_inner());
        if abnormal {
            set.insert(volume_id.to_string());
        } else {
            set.remove(volume_id);
        }
        self.node_abnormal.set(set.len() as i64);
    }

    /// The volume left this node (unstaged): it no longer counts as abnormal.
    pub(crate) fn volume_gone(&self, volume_id: &str) {
        self.volume_condition(volume_id, false);
    }
}

/// The steps of an unmount, in order.
pub(crate) const UNMOUNT_STEPS: [&str; 3] = ["normal", "forced", "lazy"];

/// Why the array client repeats a request.
pub(crate) const RETRY_REASONS: [&str; 5] =
    ["rate_limited", "unavailable", "busy", "server_error", "transport"];

fn result(ok: bool) -> &'static str {
    if ok { "success" } else { "failure" }
}

/// One volume's figures from a poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct VolumeUsage {
    pub volume_id: String,
    pub provisioned_bytes: i64,
    pub used_bytes: i64,
    pub hard_limit: bool,
}

/// What one array client records: its requests, retries, logins and the
/// in-flight bound.
#[derive(Clone, Debug)]
pub(crate) struct ArrayMetrics {
    array: String,
    requests: Family<RequestLabels, Counter>,
    seconds: Histograms<OperationLabels>,
    retries: Family<ReasonLabels, Counter>,
    logins_ok: Counter,
    logins_failed: Counter,
    relogins: Counter,
    in_flight: Gauge,
    waiting: Gauge,
}

impl Default for ArrayMetrics {
    /// A handle recording into a registry of its own (tests, one-off tools).
    fn default() -> Self {
        Metrics::new().for_array("unnamed")
    }
}

impl ArrayMetrics {
    /// One request (attempt) and its answer: an HTTP status, or
    /// `transport_error` / `timeout`.
    pub(crate) fn request(&self, operation: &str, status: &str, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                array: self.array.clone(),
                operation: operation.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.seconds
            .get_or_create(&OperationLabels {
                array: self.array.clone(),
                operation: operation.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A retry, by reason (a fixed word chosen by the client).
    pub(crate) fn retry(&self, reason: &'static str) {
        self.retries
            .get_or_create(&ReasonLabels {
                array: self.array.clone(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn login(&self, ok: bool) {
        if ok {
            self.logins_ok.inc();
        } else {
            self.logins_failed.inc();
        }
    }

    pub(crate) fn relogin(&self) {
        self.relogins.inc();
    }

    /// Counts a request as waiting for a permit until [`Held::admitted`],
    /// then as in flight until dropped (also when the request is cancelled).
    pub(crate) fn waiting(&self) -> Held {
        self.waiting.inc();
        Held {
            waiting: Some(self.waiting.clone()),
            in_flight: None,
            metrics_in_flight: self.in_flight.clone(),
        }
    }
}

/// A request's place in the in-flight gauges.
pub(crate) struct Held {
    waiting: Option<Gauge>,
    in_flight: Option<Gauge>,
    metrics_in_flight: Gauge,
}

impl Held {
    pub(crate) fn admitted(&mut self) {
        if let Some(w) = self.waiting.take() {
            w.dec();
        }
        if self.in_flight.is_none() {
            self.metrics_in_flight.inc();
            self.in_flight = Some(self.metrics_in_flight.clone());
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(w) = self.waiting.take() {
            w.dec();
        }
        if let Some(f) = self.in_flight.take() {
            f.dec();
        }
    }
}

/// The canonical name of a gRPC status code.
fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The CSI v1 methods: a call to anything else (health, reflection) is not
/// counted, and a label value never comes from the request itself.
const CSI_METHODS: &[&str] = &[
    "GetPluginInfo",
    "GetPluginCapabilities",
    "Probe",
    "CreateVolume",
    "DeleteVolume",
    "ControllerPublishVolume",
    "ControllerUnpublishVolume",
    "ValidateVolumeCapabilities",
    "ListVolumes",
    "GetCapacity",
    "ControllerGetCapabilities",
    "CreateSnapshot",
    "DeleteSnapshot",
    "ListSnapshots",
    "GetSnapshot",
    "ControllerExpandVolume",
    "ControllerGetVolume",
    "ControllerModifyVolume",
    "NodeStageVolume",
    "NodeUnstageVolume",
    "NodePublishVolume",
    "NodeUnpublishVolume",
    "NodeGetVolumeStats",
    "NodeExpandVolume",
    "NodeGetCapabilities",
    "NodeGetInfo",
];

/// `/csi.v1.Controller/CreateVolume` → `CreateVolume`; `None` for any path
/// that is not a CSI v1 method.
fn csi_method(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/csi.v1.")?;
    let (_, method) = rest.split_once('/')?;
    CSI_METHODS.iter().copied().find(|m| *m == method)
}

/// Counts every CSI call by method and gRPC code, and times it.
#[derive(Clone, Debug)]
pub(crate) struct RpcMetricsLayer(pub Arc<Metrics>);

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct RpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// A call being answered; counted when the answer's headers are ready, or
/// as CANCELLED if the caller goes away first.
struct Pending {
    metrics: Arc<Metrics>,
    method: &'static str,
    start: Instant,
    done: bool,
}

impl Pending {
    fn finish(mut self, code: i32) {
        self.done = true;
        self.metrics.csi_call(self.method, code, self.start.elapsed());
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.csi_call(self.method, 1, self.start.elapsed());
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> Service<http::Request<B>> for RpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = csi_method(req.uri().path());
        let fut = self.inner.call(req);
        let Some(method) = method else {
            return Box::pin(fut);
        };
        let pending = Pending {
            metrics: self.metrics.clone(),
            method,
            start: Instant::now(),
            done: false,
        };
        Box::pin(async move {
            let r = fut.await;
            // An error status comes in the headers (a trailers-only answer);
            // a unary success has none there (its status 0 is in the trailers).
            let code = match &r {
                Ok(resp) => resp
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<i32>().ok())
                    .unwrap_or(0),
                Err(_) => 2,
            };
            pending.finish(code);
            r
        })
    }
}

/// The content type of the OpenMetrics text exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `GET /metrics` on `listener` until `shutdown` resolves. The
/// handler only encodes the registry.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                match metrics.encode() {
                    Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
                    Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics").into_response(),
                }
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csi_methods_only() {
        assert_eq!(
            csi_method("/csi.v1.Controller/CreateVolume"),
            Some("CreateVolume")
        );
        assert_eq!(csi_method("/csi.v1.Node/NodeGetInfo"), Some("NodeGetInfo"));
        assert_eq!(csi_method("/grpc.health.v1.Health/Check"), None);
        assert_eq!(csi_method("/csi.v1.Controller/Anything"), None);
        assert_eq!(csi_method("/csi.v1.Controller"), None);
    }

    #[test]
    fn names_units_and_suffixes() {
        let m = Metrics::new();
        m.csi_call("CreateVolume", 10, Duration::from_millis(3));
        m.for_array("fb01")
            .request("GET file-systems", "200", Duration::from_millis(2));
        let text = m.encode().unwrap();
        assert!(
            text.contains("flashblade_csi_csi_calls_total{method=\"CreateVolume\",grpc_code=\"ABORTED\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE flashblade_csi_csi_call_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("flashblade_csi_array_requests_total{array=\"fb01\",operation=\"GET file-systems\",status=\"200\"} 1"),
            "{text}"
        );
        // A family with no sample yet is left out of the exposition.
        assert!(!text.contains("flashblade_csi_array_capacity_bytes"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn volumes_that_go_away_leave_the_exposition() {
        let m = Metrics::new();
        let v = |id: &str| VolumeUsage {
            volume_id: id.into(),
            provisioned_bytes: 10,
            used_bytes: 1,
            hard_limit: true,
        };
        m.volumes("fb01", &[v("a"), v("b")]);
        m.volumes("fb01", &[v("b")]);
        let text = m.encode().unwrap();
        assert!(!text.contains("volume_id=\"a\""), "{text}");
        assert!(text.contains("volume_id=\"b\""), "{text}");
    }

    #[test]
    fn held_requests_leave_the_gauges() {
        let m = Metrics::new();
        let a = m.for_array("fb01");
        let mut h = a.waiting();
        assert_eq!(a.waiting.get(), 1);
        h.admitted();
        assert_eq!((a.waiting.get(), a.in_flight.get()), (0, 1));
        drop(h);
        assert_eq!((a.waiting.get(), a.in_flight.get()), (0, 0));
        drop(a.waiting());
        assert_eq!(a.waiting.get(), 0);
    }

    #[test]
    fn abnormal_volumes_are_counted_once() {
        let m = Metrics::new();
        m.volume_condition("v1", true);
        m.volume_condition("v1", true);
        m.volume_condition("v2", true);
        assert_eq!(m.node_abnormal.get(), 2);
        m.volume_gone("v1");
        m.volume_condition("v2", false);
        assert_eq!(m.node_abnormal.get(), 0);
    }
}
