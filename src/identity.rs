//! CSI Identity service: plugin name and version, plugin capabilities, and
//! Probe backed by a readiness check (array reachability for the controller).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tonic::{Request, Response, Status};

use crate::csi::{self, identity_server::Identity, plugin_capability};
use crate::flashblade::ArrayClient;

/// Whether this process can do its job right now.
#[tonic::async_trait]
pub trait Readiness: Send + Sync + 'static {
    async fn ready(&self) -> bool;
}

/// A node plugin needs nothing remote to be ready.
pub(crate) struct AlwaysReady;

#[tonic::async_trait]
impl Readiness for AlwaysReady {
    async fn ready(&self) -> bool {
        true
    }
}

/// Ready when this controller holds a session on every configured array (or
/// can log in now): an unreachable array and a refused API token both make
/// Probe say not ready. The answer is cached briefly so frequent probes do
/// not load the array; each array's reason is logged once per change.
pub(crate) struct ArraysLoggedIn {
    arrays: Vec<Arc<ArrayClient>>,
    timeout: Duration,
    cache: Mutex<Option<(Instant, bool)>>,
    /// Per array, the last failure logged (`None`: it was fine).
    last: Mutex<Vec<Option<String>>>,
}

const PROBE_CACHE: Duration = Duration::from_secs(5);

impl ArraysLoggedIn {
    pub(crate) fn new(arrays: Vec<Arc<ArrayClient>>, timeout: Duration) -> Self {
        let n = arrays.len();
        Self {
            arrays,
            timeout,
            cache: Mutex::new(None),
            last: Mutex::new(vec![None; n]),
        }
    }
}

#[tonic::async_trait]
impl Readiness for ArraysLoggedIn {
    async fn ready(&self) -> bool {
        // Holding the lock across the check makes concurrent probes share one.
        let mut cache = self.cache.lock().await;
        if let Some((at, ready)) = *cache
            && at.elapsed() < PROBE_CACHE
        {
            return ready;
        }
        let mut ready = true;
        let mut last = self.last.lock().await;
        for (i, client) in self.arrays.iter().enumerate() {
            let now = match tokio::time::timeout(self.timeout, client.api_minor()).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!(
                    "array {} did not answer within {:.1}s",
                    client.name(),
                    self.timeout.as_secs_f64()
                )),
            };
            if now != last[i] {
                match &now {
                    Some(why) => tracing::warn!(array = %client.name(), reason = %why, "probe: not ready"),
                    None => tracing::info!(array = %client.name(), "probe: array ready again"),
                }
                last[i] = now.clone();
            }
            ready &= now.is_none();
        }
        *cache = Some((Instant::now(), ready));
        ready
    }
}

/// All readiness checks must pass.
pub(crate) struct AllOf(pub Vec<Arc<dyn Readiness>>);

#[tonic::async_trait]
impl Readiness for AllOf {
    async fn ready(&self) -> bool {
        for r in &self.0 {
            if !r.ready().await {
                return false;
            }
        }
        true
    }
}

/// The plugin-level capabilities. They describe the plugin as a whole, so a
/// node-only and a controller-only process give the same answer (the
/// conformance suite reads them from the node socket too).
pub(crate) fn plugin_capabilities() -> Vec<csi::PluginCapability> {
    use plugin_capability::{Service, Type, VolumeExpansion, service, volume_expansion};
    vec![
        csi::PluginCapability {
            r#type: Some(Type::Service(Service {
                r#type: service::Type::ControllerService as i32,
            })),
        },
        // A quota change applies at once, mounted or not.
        csi::PluginCapability {
            r#type: Some(Type::VolumeExpansion(VolumeExpansion {
                r#type: volume_expansion::Type::Online as i32,
            })),
        },
    ]
}

pub struct IdentityService {
    name: String,
    readiness: Arc<dyn Readiness>,
}

impl IdentityService {
    pub fn new(name: String, readiness: Arc<dyn Readiness>) -> Self {
        Self { name, readiness }
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn get_plugin_info(
        &self,
        _req: Request<csi::GetPluginInfoRequest>,
    ) -> Result<Response<csi::GetPluginInfoResponse>, Status> {
        Ok(Response::new(csi::GetPluginInfoResponse {
            name: self.name.clone(),
            vendor_version: env!("CARGO_PKG_VERSION").to_string(),
            manifest: Default::default(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _req: Request<csi::GetPluginCapabilitiesRequest>,
    ) -> Result<Response<csi::GetPluginCapabilitiesResponse>, Status> {
        Ok(Response::new(csi::GetPluginCapabilitiesResponse {
            capabilities: plugin_capabilities(),
        }))
    }

    async fn probe(&self, _req: Request<csi::ProbeRequest>) -> Result<Response<csi::ProbeResponse>, Status> {
        // Not ready is an OK answer with ready=false: the plugin is healthy
        // but cannot serve yet (e.g. the array is unreachable).
        let ready = self.readiness.ready().await;
        Ok(Response::new(csi::ProbeResponse { ready: Some(ready) }))
    }
}
