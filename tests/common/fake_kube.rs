//! A small fake Kubernetes API server for the admin tests: lists of
//! PersistentVolumes, PersistentVolumeClaims, VolumeAttachments over plain
//! HTTP, creation of PVs and PVCs, and a kubeconfig file pointing at it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

#[derive(Default)]
pub struct Objects {
    pub pvs: Vec<Value>,
    pub pvcs: Vec<Value>,
    pub attachments: Vec<Value>,
    /// Requests seen, "METHOD path".
    pub requests: Vec<String>,
}

pub struct FakeKube {
    pub objects: Arc<Mutex<Objects>>,
    pub kubeconfig: PathBuf,
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

async fn pvs(State(s): State<Shared>) -> Json<Value> {
    let mut o = s.lock().unwrap();
    o.requests.push("GET persistentvolumes".into());
    list("PersistentVolume", "v1", o.pvs.clone())
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

async fn vas(State(s): State<Shared>) -> Json<Value> {
    let mut o = s.lock().unwrap();
    o.requests.push("GET volumeattachments".into());
    list("VolumeAttachment", "storage.k8s.io/v1", o.attachments.clone())
}

fn conflict(kind: &str, name: &str) -> (StatusCode, Json<Value>) {
    (
        StatusCode::CONFLICT,
        Json(json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": format!("{kind} \"{name}\" already exists"), "reason": "AlreadyExists", "code": 409})),
    )
}

async fn create_pv(State(s): State<Shared>, Json(pv): Json<Value>) -> (StatusCode, Json<Value>) {
    let mut o = s.lock().unwrap();
    o.requests.push("POST persistentvolumes".into());
    let name = pv["metadata"]["name"].clone();
    if o.pvs.iter().any(|p| p["metadata"]["name"] == name) {
        return conflict("persistentvolumes", name.as_str().unwrap_or_default());
    }
    o.pvs.push(pv.clone());
    (StatusCode::CREATED, Json(pv))
}

async fn create_pvc(
    State(s): State<Shared>,
    UrlPath(ns): UrlPath<String>,
    Json(mut pvc): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut o = s.lock().unwrap();
    o.requests
        .push(format!("POST namespaces/{ns}/persistentvolumeclaims"));
    pvc["metadata"]["namespace"] = json!(ns);
    let name = pvc["metadata"]["name"].clone();
    if o.pvcs
        .iter()
        .any(|p| p["metadata"]["name"] == name && p["metadata"]["namespace"] == ns.as_str())
    {
        return conflict("persistentvolumeclaims", name.as_str().unwrap_or_default());
    }
    o.pvcs.push(pvc.clone());
    (StatusCode::CREATED, Json(pvc))
}

/// Writes a kubeconfig for `server` (no credentials) into `dir`.
pub fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: admin\n\
             current-context: fake\nusers:\n- name: admin\n  user: {{}}\n"
        ),
    )
    .unwrap();
    path
}

impl FakeKube {
    pub async fn start(dir: &Path) -> FakeKube {
        let objects: Shared = Arc::default();
        let app = Router::new()
            .route("/api/v1/persistentvolumes", get(pvs).post(create_pv))
            .route("/api/v1/persistentvolumeclaims", get(pvcs))
            .route(
                "/api/v1/namespaces/{ns}/persistentvolumeclaims",
                get(pvcs_in).post(create_pvc),
            )
            .route("/apis/storage.k8s.io/v1/volumeattachments", get(vas))
            .with_state(objects.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeKube {
            objects,
            kubeconfig: write_kubeconfig(dir, &format!("http://{addr}")),
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
            "status": {"phase": if claim.is_some() { "Bound" } else { "Available" }},
        });
        if let Some((ns, n)) = claim {
            pv["spec"]["claimRef"] = json!({"namespace": ns, "name": n, "kind": "PersistentVolumeClaim"});
            self.objects.lock().unwrap().pvcs.push(json!({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": n, "namespace": ns},
                "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": name, "storageClassName": "fb-home",
                         "resources": {"requests": {"storage": "1Gi"}}},
                "status": {"phase": "Bound"},
            }));
        }
        self.objects.lock().unwrap().pvs.push(pv);
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
