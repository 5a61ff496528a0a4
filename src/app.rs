//! Wires the services for a mode from a validated [`Config`]: builds the array
//! clients, readiness checks and service structs, and runs the server.

use std::future::Future;
use std::sync::Arc;

use crate::config::Config;
use crate::controller::ControllerService;
use crate::identity::{AllOf, AlwaysReady, ArraysReachable, IdentityService, Readiness};
use crate::node::NodeService;
use crate::server::{self, ServerError, Services};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Client(#[from] crate::flashblade::ClientError),
}

/// Builds the services for `config.mode`.
pub fn build_services(config: &Config) -> Result<Services, AppError> {
    let mut checks: Vec<Arc<dyn Readiness>> = Vec::new();
    let controller = if config.mode.runs_controller() {
        let mut arrays = Vec::new();
        for array in &config.arrays {
            let client = crate::flashblade::http_client(array, config.timeouts.probe)?;
            arrays.push((array.clone(), client));
        }
        checks.push(Arc::new(ArraysReachable::new(arrays, config.timeouts.probe)));
        Some(ControllerService)
    } else {
        None
    };
    let node = if config.mode.runs_node() {
        checks.push(Arc::new(AlwaysReady));
        Some(NodeService::new(config.node_id.clone().unwrap_or_default()))
    } else {
        None
    };
    Ok(Services {
        identity: IdentityService::new(config.driver_name.clone(), Arc::new(AllOf(checks))),
        controller,
        node,
    })
}

/// Runs the server for `config` until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    if config.local_export_root.is_some() {
        tracing::warn!(
            "DEVELOPMENT OPTION --local-export-root is set: NodeStage bind-mounts local directories instead of NFS exports"
        );
    }
    let services = build_services(&config)?;
    let listener = server::bind_socket(&config.socket_path, config.socket_mode)?;
    tracing::info!(
        mode = %config.mode,
        driver = %config.driver_name,
        version = env!("CARGO_PKG_VERSION"),
        "starting flashblade-csi"
    );
    server::serve(
        listener,
        config.socket_path.clone(),
        services,
        shutdown,
        config.timeouts.shutdown_grace,
    )
    .await?;
    Ok(())
}
