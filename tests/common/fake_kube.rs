//! A small fake Kubernetes API server for the admin tests, over plain HTTP
//! with kubeconfig files pointing at it (one per identity: the controller's
//! ServiceAccount, a storage admin; every request is recorded with who made
//! it, see [`request_log_dir`]): lists of PersistentVolumes,
//! PersistentVolumeClaims, VolumeAttachments and pods; PV and claim get,
//! create, merge patch and delete (uid preconditions honoured); and a
//! one-shot failure of any request, so a test can stop a command half-way.
//!
//! It plays the PV controller's part that matters to `adopt`: deleting a
//! claim releases its PV — and a released PV whose reclaim policy is Delete
//! is recorded in `reclaimed` (a real cluster would have its driver delete
//! the file system) and removed; creating a claim with `volumeName` binds it
//! to a PV pre-bound to it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Default)]
pub struct Objects {
    pub pvs: Vec<Value>,
    pub pvcs: Vec<Value>,
    pub attachments: Vec<Value>,
    pub pods: Vec<Value>,
    pub nodes: Vec<Value>,
    /// Requests seen, "METHOD path" (path without /api/v1/).
    pub requests: Vec<String>,
    /// Requests ("METHOD path") to fail once with a 500.
    pub fail_once: Vec<String>,
    /// PVs released with reclaim policy Delete: their driver would have
    /// deleted the storage.
    pub reclaimed: Vec<String>,
    next_uid: u64,
}

impl Objects {
    /// Logs the request; true when it is to fail now.
    fn seen(&mut self, key: String) -> bool {
        self.requests.push(key.clone());
        match self.fail_once.iter().position(|f| *f == key) {
            Some(i) => {
                self.fail_once.remove(i);
                true
            }
            None => false,
        }
    }

    fn uid(&mut self) -> String {
        self.next_uid += 1;
        format!("00000000-0000-4000-8000-{:012}", self.next_uid)
    }
}

pub struct FakeKube {
    pub objects: Arc<Mutex<Objects>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    /// A storage admin's credentials (the admin commands).
    pub kubeconfig: PathBuf,
    /// The controller ServiceAccount's credentials.
    pub controller_kubeconfig: PathBuf,
    /// A storage admin with the migration's role (`adopt`).
    pub adopt_kubeconfig: PathBuf,
    _task: tokio::task::JoinHandle<()>,
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Json<Value> {
    Json(json!({
        "apiVersion": api_version,
        "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": "1"},
        "items": items,
    }))
}

type Shared = Arc<Mutex<Objects>>;
type Answer = (StatusCode, Json<Value>);

fn status(code: StatusCode, reason: &str, message: String) -> Answer {
    (
        code,
        Json(json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16()})),
    )
}

fn injected() -> Answer {
    status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        "injected failure (fake API server)".into(),
    )
}

fn not_found(kind: &str, name: &str) -> Answer {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{kind} \"{name}\" not found"),
    )
}

fn conflict(kind: &str, name: &str) -> Answer {
    status(
        StatusCode::CONFLICT,
        "AlreadyExists",
        format!("{kind} \"{name}\" already exists"),
    )
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn named(v: &Value, name: &str) -> bool {
    v["metadata"]["name"] == name
}

fn in_ns(v: &Value, ns: &str, name: &str) -> bool {
    v["metadata"]["name"] == name && v["metadata"]["namespace"] == ns
}

/// The uid a DELETE's options require, if any.
fn precondition(body: &Bytes) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v["preconditions"]["uid"].as_str().map(str::to_string)
}

async fn pvs(State(s): State<Shared>) -> Result<Json<Value>, Answer> {
    let mut o = s.lock().unwrap();
    if o.seen("GET persistentvolumes".into()) {
        return Err(injected());
    }
    Ok(list("PersistentVolume", "v1", o.pvs.clone()))
}

async fn pvcs(State(s): State<Shared>) -> Json<Value> {
    let mut o = s.lock().unwrap();
    o.requests.push("GET persistentvolumeclaims".into());
    list("PersistentVolumeClaim", "v1", o.pvcs.clone())
}

async fn pvcs_in(State(s): State<Shared>, UrlPath(ns): UrlPath<String>) -> Json<Value> {
    let mut o = s.lock().unwrap();
    o.requests
        .push(format!("GET namespaces/{ns}/persistentvolumeclaims"));
    let items = o
        .pvcs
        .iter()
        .filter(|p| p["metadata"]["namespace"] == ns.as_str())
        .cloned()
        .collect();
    list("PersistentVolumeClaim", "v1", items)
}

async fn pods_in(State(s): State<Shared>, UrlPath(ns): UrlPath<String>) -> Result<Json<Value>, Answer> {
    let mut o = s.lock().unwrap();
    if o.seen(format!("GET namespaces/{ns}/pods")) {
        return Err(injected());
    }
    let items = o
        .pods
        .iter()
        .filter(|p| p["metadata"]["namespace"] == ns.as_str())
        .cloned()
        .collect();
    Ok(list("Pod", "v1", items))
}

async fn vas(State(s): State<Shared>) -> Json<Value> {
    let mut o = s.lock().unwrap();
    o.requests.push("GET volumeattachments".into());
    list("VolumeAttachment", "storage.k8s.io/v1", o.attachments.clone())
}

/// The API server's version, as kube-apiserver answers `GET /version`.
async fn version() -> Json<Value> {
    Json(json!({
        "major": "1", "minor": "36", "gitVersion": "v1.36.0",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-08-01T00:00:00Z", "goVersion": "go1.25.0", "compiler": "gc",
        "platform": "linux/amd64",
    }))
}

async fn nodes(State(s): State<Shared>) -> Json<Value> {
    let mut o = s.lock().unwrap();
    o.requests.push("GET nodes".into());
    list("Node", "v1", o.nodes.clone())
}

async fn get_node(State(s): State<Shared>, UrlPath(name): UrlPath<String>) -> Answer {
    let mut o = s.lock().unwrap();
    o.requests.push(format!("GET nodes/{name}"));
    match o.nodes.iter().find(|n| named(n, &name)) {
        Some(n) => (StatusCode::OK, Json(n.clone())),
        None => not_found("nodes", &name),
    }
}

async fn create_pv(State(s): State<Shared>, Json(mut pv): Json<Value>) -> Answer {
    let mut o = s.lock().unwrap();
    if o.seen("POST persistentvolumes".into()) {
        return injected();
    }
    let name = pv["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if o.pvs.iter().any(|p| named(p, &name)) {
        return conflict("persistentvolumes", &name);
    }
    pv["metadata"]["uid"] = json!(o.uid());
    pv["status"] = json!({"phase": "Available"});
    o.pvs.push(pv.clone());
    (StatusCode::CREATED, Json(pv))
}

async fn get_pv(State(s): State<Shared>, UrlPath(name): UrlPath<String>) -> Answer {
    let mut o = s.lock().unwrap();
    if o.seen(format!("GET persistentvolumes/{name}")) {
        return injected();
    }
    match o.pvs.iter().find(|p| named(p, &name)) {
        Some(pv) => (StatusCode::OK, Json(pv.clone())),
        None => not_found("persistentvolumes", &name),
    }
}

async fn patch_pv(State(s): State<Shared>, UrlPath(name): UrlPath<String>, body: Bytes) -> Answer {
    let mut o = s.lock().unwrap();
    if o.seen(format!("PATCH persistentvolumes/{name}")) {
        return injected();
    }
    let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
    };
    match o.pvs.iter_mut().find(|p| named(p, &name)) {
        Some(pv) => {
            merge(pv, &patch);
            (StatusCode::OK, Json(pv.clone()))
        }
        None => not_found("persistentvolumes", &name),
    }
}

async fn delete_pv(State(s): State<Shared>, UrlPath(name): UrlPath<String>, body: Bytes) -> Answer {
    let mut o = s.lock().unwrap();
    if o.seen(format!("DELETE persistentvolumes/{name}")) {
        return injected();
    }
    let Some(i) = o.pvs.iter().position(|p| named(p, &name)) else {
        return not_found("persistentvolumes", &name);
    };
    if let Some(uid) = precondition(&body)
        && o.pvs[i]["metadata"]["uid"] != uid.as_str()
    {
        return status(StatusCode::CONFLICT, "Conflict", "uid precondition failed".into());
    }
    (StatusCode::OK, Json(o.pvs.remove(i)))
}

async fn create_pvc(
    State(s): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    Json(mut pvc): Json<Value>,
) -> Answer {
    let mut o = s.lock().unwrap();
    if o.seen(format!("POST namespaces/{ns}/persistentvolumeclaims")) {
        return injected();
    }
    pvc["metadata"]["namespace"] = json!(ns);
    let name = pvc["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if o.pvcs.iter().any(|p| in_ns(p, &ns, &name)) {
        return conflict("persistentvolumeclaims", &name);
    }
    let uid = o.uid();
    pvc["metadata"]["uid"] = json!(uid);
    pvc["status"] = json!({"phase": "Pending"});
    // The PV controller: a claim naming a PV pre-bound to it binds.
    if let Some(volume) = pvc["spec"]["volumeName"].as_str().map(str::to_string)
        && let Some(pv) = o.pvs.iter_mut().find(|p| named(p, &volume))
        && pv["spec"]["claimRef"]["namespace"] == ns.as_str()
        && pv["spec"]["claimRef"]["name"] == name.as_str()
    {
        pv["spec"]["claimRef"]["uid"] = json!(uid);
        pv["status"]["phase"] = json!("Bound");
        pvc["status"] = json!({"phase": "Bound"});
    }
    o.pvcs.push(pvc.clone());
    (StatusCode::CREATED, Json(pvc))
}

async fn get_pvc(State(s): State<Shared>, UrlPath((ns, name)): UrlPath<(String, String)>) -> Answer {
    let mut o = s.lock().unwrap();
    if o.seen(format!("GET namespaces/{ns}/persistentvolumeclaims/{name}")) {
        return injected();
    }
    match o.pvcs.iter().find(|p| in_ns(p, &ns, &name)) {
        Some(p) => (StatusCode::OK, Json(p.clone())),
        None => not_found("persistentvolumeclaims", &name),
    }
}

async fn delete_pvc(
    State(s): State<Shared>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    body: Bytes,
) -> Answer {
    let mut o = s.lock().unwrap();
    if o.seen(format!("DELETE namespaces/{ns}/persistentvolumeclaims/{name}")) {
        return injected();
    }
    let Some(i) = o.pvcs.iter().position(|p| in_ns(p, &ns, &name)) else {
        return not_found("persistentvolumeclaims", &name);
    };
    if let Some(uid) = precondition(&body)
        && o.pvcs[i]["metadata"]["uid"] != uid.as_str()
    {
        return status(StatusCode::CONFLICT, "Conflict", "uid precondition failed".into());
    }
    let pvc = o.pvcs.remove(i);
    // The PV controller: the claim's PV is released, and reclaimed.
    let mut reclaimed = Vec::new();
    for pv in o.pvs.iter_mut() {
        let r = &pv["spec"]["claimRef"];
        if r["namespace"] == ns.as_str()
            && r["name"] == name.as_str()
            && (r["uid"].is_null() || r["uid"] == pvc["metadata"]["uid"])
            && pv["status"]["phase"] == "Bound"
        {
            pv["status"]["phase"] = json!("Released");
            if pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete" {
                reclaimed.push(pv["metadata"]["name"].as_str().unwrap_or_default().to_string());
            }
        }
    }
    o.pvs.retain(|p| !reclaimed.iter().any(|n| named(p, n)));
    o.reclaimed.extend(reclaimed);
    (StatusCode::OK, Json(pvc))
}

/// Writes a kubeconfig for `server` (no credentials) into `dir`.
pub fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    write_kubeconfig_as(dir, "kubeconfig", server, None)
}

fn write_kubeconfig_as(dir: &Path, file: &str, server: &str, token: Option<&str>) -> PathBuf {
    let path = dir.join(file);
    let user = match token {
        Some(t) => format!("{{token: {t}}}"),
        None => "{}".into(),
    };
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: admin\n\
             current-context: fake\nusers:\n- name: admin\n  user: {user}\n"
        ),
    )
    .unwrap();
    path
}

/// The identities the fake authenticates by bearer token, as a real API
/// server maps a token to a user: the controller's ServiceAccount and a
/// storage admin running the admin commands.
pub const CONTROLLER_TOKEN: &str = "controller";
pub const ADMIN_TOKEN: &str = "admin";
/// The admin running `adopt`, bound to the migration's role.
pub const ADOPT_TOKEN: &str = "adopt";

/// Numbers the request logs of the fake servers in one test process.
static NEXT_LOG: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Where every request is recorded, one JSON line each, for the deploy
/// checks that hold them against the chart's RBAC and the Kubernetes
/// schemas (deploy/test/kubecheck.py).
pub fn request_log_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("kube-requests")
}

/// How the fake behaves beyond its objects: what a loaded or slow API
/// server does.
#[derive(Default)]
pub struct Behaviour {
    /// Requests whose path starts with this answer 429 once, asking the
    /// client to wait this many seconds (`Retry-After`,
    /// `details.retryAfterSeconds`).
    pub throttle_once: Vec<(String, u32)>,
    /// Every request waits this long before it is served.
    pub delay: Option<std::time::Duration>,
    /// The next request that carries a continue token gets 410 Gone, as
    /// when the server has compacted past it.
    pub expire_next_continue: bool,
}

#[derive(Clone)]
struct Middle {
    log: Arc<Mutex<Option<std::fs::File>>>,
    behaviour: Arc<Mutex<Behaviour>>,
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// Serves a list answer in pages as kube-apiserver does for `limit` and
/// `continue` (the token here: the offset of the next item).
fn paginate(answer: &mut Value, query: &str) {
    let Some(items) = answer.get_mut("items").and_then(Value::as_array_mut) else {
        return;
    };
    let start: usize = query_value(query, "continue")
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let limit: usize = query_value(query, "limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let all = std::mem::take(items);
    let total = all.len();
    *items = all.into_iter().skip(start).take(limit).collect();
    let next = start.saturating_add(limit);
    if next < total {
        answer["metadata"]["continue"] = json!(next.to_string());
        answer["metadata"]["remainingItemCount"] = json!(total - next);
    }
}

/// Authenticates (401 for an unknown token; anonymous may read /version
/// only, as with kube-apiserver's defaults), applies the [`Behaviour`],
/// pages list answers, then records the request and the answer with the
/// caller's identity.
async fn authenticate_and_record(
    State(middle): State<Middle>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let log = middle.log.clone();
    let who = match req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        Some(CONTROLLER_TOKEN) => "controller",
        Some(ADMIN_TOKEN) => "admin",
        Some(ADOPT_TOKEN) => "adopt",
        Some(_) => {
            return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into()).into_response();
        }
        None => "anonymous",
    };
    if who == "anonymous" && req.uri().path() != "/version" {
        return status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("User \"system:anonymous\" cannot access {}", req.uri().path()),
        )
        .into_response();
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let (delay, throttle, expired) = {
        let mut b = middle.behaviour.lock().unwrap();
        let throttle = b
            .throttle_once
            .iter()
            .position(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|i| b.throttle_once.remove(i).1);
        let expired =
            query_value(&query, "continue").is_some() && std::mem::take(&mut b.expire_next_continue);
        (b.delay, throttle, expired)
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let early = if let Some(secs) = throttle {
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(
                json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                "message": "Too many requests, please try again later.", "reason": "TooManyRequests",
                "details": {"retryAfterSeconds": secs}, "code": 429}),
            ),
        )
            .into_response();
        resp.headers_mut()
            .insert("retry-after", secs.to_string().parse().unwrap());
        Some(resp)
    } else if expired {
        Some(
            status(
                StatusCode::GONE,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
            )
            .into_response(),
        )
    } else {
        None
    };
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let sent: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let content_type = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let resp = match early {
        Some(r) => r,
        None => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    let rbytes = axum::body::to_bytes(rbody, usize::MAX).await.unwrap_or_default();
    let mut answer: Value = serde_json::from_slice(&rbytes).unwrap_or(Value::Null);
    let rbytes = if method == "GET" && rparts.status == StatusCode::OK && answer.get("items").is_some() {
        paginate(&mut answer, &query);
        let body = serde_json::to_vec(&answer).unwrap();
        rparts.headers.remove("content-length");
        axum::body::Bytes::from(body)
    } else {
        rbytes
    };
    let line = json!({
        "who": who, "method": method, "path": path, "query": query,
        "content_type": content_type, "sent": sent,
        "status": rparts.status.as_u16(), "answer": answer,
    });
    if let Some(f) = log.lock().unwrap().as_mut() {
        use std::io::Write;
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
    axum::response::Response::from_parts(rparts, axum::body::Body::from(rbytes))
}

impl FakeKube {
    pub async fn start(dir: &Path) -> FakeKube {
        let objects: Shared = Arc::default();
        let log_dir = request_log_dir();
        std::fs::create_dir_all(&log_dir).unwrap();
        let exe = std::env::current_exe().unwrap();
        let binary = exe.file_stem().unwrap().to_string_lossy().into_owned();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!(
                "{binary}-{}-{}.jsonl",
                std::process::id(),
                NEXT_LOG.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )))
            .ok();
        let log = Arc::new(Mutex::new(log));
        let behaviour: Arc<Mutex<Behaviour>> = Arc::default();
        let app = Router::new()
            .route("/api/v1/persistentvolumes", get(pvs).post(create_pv))
            .route(
                "/api/v1/persistentvolumes/{name}",
                get(get_pv).patch(patch_pv).delete(delete_pv),
            )
            .route("/api/v1/persistentvolumeclaims", get(pvcs))
            .route(
                "/api/v1/namespaces/{ns}/persistentvolumeclaims",
                get(pvcs_in).post(create_pvc),
            )
            .route(
                "/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}",
                get(get_pvc).delete(delete_pvc),
            )
            .route("/api/v1/namespaces/{ns}/pods", get(pods_in))
            .route("/apis/storage.k8s.io/v1/volumeattachments", get(vas))
            .route("/api/v1/nodes", get(nodes))
            .route("/api/v1/nodes/{name}", get(get_node))
            .route("/version", get(version))
            .with_state(objects.clone())
            .layer(axum::middleware::from_fn_with_state(
                Middle {
                    log,
                    behaviour: behaviour.clone(),
                },
                authenticate_and_record,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let server = format!("http://{addr}");
        FakeKube {
            objects,
            behaviour,
            kubeconfig: write_kubeconfig_as(dir, "kubeconfig", &server, Some(ADMIN_TOKEN)),
            controller_kubeconfig: write_kubeconfig_as(
                dir,
                "controller-kubeconfig",
                &server,
                Some(CONTROLLER_TOKEN),
            ),
            adopt_kubeconfig: write_kubeconfig_as(dir, "adopt-kubeconfig", &server, Some(ADOPT_TOKEN)),
            _task: task,
        }
    }

    pub fn add_pv(&self, name: &str, handle: &str, claim: Option<(&str, &str)>) {
        let mut pv = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "fb-home",
                "csi": {"driver": "flashblade.csi.dev", "volumeHandle": handle},
            },
        });
        self.add_bound(&mut pv, claim, "fb-home");
    }

    /// Adds `pv` (any driver or source) with a uid and, for `claim`, the
    /// claim bound to it, of class `class`.
    pub fn add_bound(&self, pv: &mut Value, claim: Option<(&str, &str)>, class: &str) {
        let mut o = self.objects.lock().unwrap();
        let pv_uid = o.uid();
        pv["metadata"]["uid"] = json!(pv_uid);
        pv["status"] = json!({"phase": if claim.is_some() { "Bound" } else { "Available" }});
        if let Some((ns, n)) = claim {
            let uid = o.uid();
            pv["spec"]["claimRef"] =
                json!({"namespace": ns, "name": n, "kind": "PersistentVolumeClaim", "uid": uid});
            let modes = pv["spec"]["accessModes"].clone();
            let size = pv["spec"]["capacity"]["storage"].clone();
            o.pvcs.push(json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": n, "namespace": ns, "uid": uid},
                "spec": {"accessModes": modes, "volumeName": pv["metadata"]["name"], "storageClassName": class,
                         "resources": {"requests": {"storage": size}}},
                "status": {"phase": "Bound"},
            }));
        }
        o.pvs.push(pv.clone());
    }

    /// A pod in `ns` mounting `claim`, in `phase`.
    pub fn add_pod(&self, ns: &str, name: &str, claim: &str, phase: &str) {
        self.objects.lock().unwrap().pods.push(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "containers": [{"name": "notebook", "image": "jupyter/base-notebook"}],
                "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": claim}}],
            },
            "status": {"phase": phase},
        }));
    }

    /// Makes the next request `key` ("METHOD path", as in `requests`) fail
    /// with a 500.
    pub fn fail_once(&self, key: &str) {
        self.objects.lock().unwrap().fail_once.push(key.into());
    }

    pub fn pv(&self, name: &str) -> Option<Value> {
        self.objects
            .lock()
            .unwrap()
            .pvs
            .iter()
            .find(|p| named(p, name))
            .cloned()
    }

    pub fn pvc(&self, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .lock()
            .unwrap()
            .pvcs
            .iter()
            .find(|p| in_ns(p, ns, name))
            .cloned()
    }

    /// A Node with these InternalIPs.
    pub fn add_node(&self, name: &str, ips: &[&str]) {
        let addresses: Vec<Value> = ips
            .iter()
            .map(|ip| json!({"type": "InternalIP", "address": ip}))
            .chain([json!({"type": "Hostname", "address": name})])
            .collect();
        self.objects.lock().unwrap().nodes.push(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name},
            "status": {"addresses": addresses},
        }));
    }

    pub fn remove_node(&self, name: &str) {
        self.objects.lock().unwrap().nodes.retain(|n| !named(n, name));
    }

    pub fn attach(&self, pv: &str, node: &str) {
        self.objects.lock().unwrap().attachments.push(json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
            "metadata": {"name": format!("csi-{pv}-{node}")},
            "spec": {"attacher": "flashblade.csi.dev", "nodeName": node, "source": {"persistentVolumeName": pv}},
            "status": {"attached": true},
        }));
    }
}
