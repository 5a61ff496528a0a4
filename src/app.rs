//! Wires the services for a mode from a validated [`Config`]: builds the array
//! clients, readiness checks and service structs, and runs the server.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use crate::flashblade::ArrayClient;

use crate::config::Config;
use crate::controller::ControllerService;
use crate::identity::{AllOf, AlwaysReady, ArraysLoggedIn, IdentityService, Readiness};
use crate::metrics::Metrics;
use crate::node::NodeService;
use crate::server::{self, ServerError, Services};
use crate::volume::ArrayName;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error(transparent)]
    Array(#[from] crate::flashblade::Error),
    #[error("metrics-address {address}: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}

type ArrayClients = BTreeMap<ArrayName, Arc<ArrayClient>>;

/// One client per configured array, recording into `metrics`.
pub(crate) fn array_clients(config: &Config, metrics: &Metrics) -> Result<ArrayClients, AppError> {
    let mut arrays = BTreeMap::new();
    for array in &config.arrays {
        let http = crate::flashblade::http_client(array, config.timeouts.array_request)?;
        let client = Arc::new(ArrayClient::new(
            array,
            http,
            config.limits.max_array_requests,
            config.timeouts.array_request,
            metrics.for_array(array.name.as_str()),
        )?);
        arrays.insert(array.name.clone(), client);
    }
    Ok(arrays)
}

/// Builds the services for `config.mode`, and the array clients they share
/// (so `run` can log them out on shutdown). All of them record into one
/// registry, `Services::metrics`.
pub(crate) fn build_services(config: &Config) -> Result<(Services, Vec<Arc<ArrayClient>>), AppError> {
    let config = Arc::new(config.clone());
    let metrics = Arc::new(Metrics::new());
    let mut checks: Vec<Arc<dyn Readiness>> = Vec::new();
    let mut clients = Vec::new();
    let controller = if config.mode.runs_controller() {
        let arrays = array_clients(&config, &metrics)?;
        for array in &config.arrays {
            if array.default_export_rules.is_none() {
                tracing::warn!(array = %array.name, "no default_export_rules: StorageClasses must set exportRules or exportPolicy");
            }
        }
        clients.extend(arrays.values().cloned());
        checks.push(Arc::new(ArraysLoggedIn::new(
            arrays.values().cloned().collect(),
            config.timeouts.probe,
        )));
        Some(ControllerService::new(config.clone(), arrays, metrics.clone()))
    } else {
        None
    };
    let node = if config.mode.runs_node() {
        checks.push(Arc::new(AlwaysReady));
        metrics.init_node();
        let mounter = crate::node::mounter::SystemMounter::new(
            config.timeouts.mount,
            config.timeouts.unmount,
            config.timeouts.stats,
            metrics.clone(),
        );
        Some(NodeService::new(&config, Arc::new(mounter), metrics.clone()))
    } else {
        None
    };
    Ok((
        Services {
            identity: IdentityService::new(config.driver_name.clone(), Arc::new(AllOf(checks))),
            controller,
            node,
            metrics,
        },
        clients,
    ))
}

/// Runs the server for `config` until `shutdown` resolves, then logs out of
/// the arrays.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), AppError> {
    if config.local_export_root.is_some() {
        tracing::warn!(
            "DEVELOPMENT OPTION --local-export-root is set: NodeStage bind-mounts local directories instead of NFS exports"
        );
    }
    let (services, clients) = build_services(&config)?;
    // Log in at once, so a wrong token or an unreachable array shows in the
    // log at start, not at the first volume.
    for c in &clients {
        let c = c.clone();
        tokio::spawn(async move {
            // The probes go beside the read of `arrays`, after the one
            // login: start-up waits no longer for them.
            let (described, (), ()) = tokio::join!(
                c.describe(),
                crate::flashblade::assumptions::check_not_found_wording(&c),
                crate::flashblade::assumptions::check_keyset_paging(&c)
            );
            match described {
                Ok(info) => {
                    tracing::info!(
                        array = %c.name(),
                        array_name = %info.name,
                        purity = %info.version,
                        rest = %format!("2.{}", info.rest_minor),
                        "logged in to array"
                    );
                    crate::flashblade::assumptions::warn_at_start(&c, &info);
                }
                Err(e) => {
                    tracing::warn!(array = %c.name(), error = %e, "cannot log in to array yet; Probe reports not ready until it works")
                }
            }
        });
    }
    if config.mode.runs_controller() {
        for array in &config.arrays {
            if let Some(path) = &array.api_token_file {
                warn_if_readable_by_others(&array.name, path);
            }
        }
    }
    // The metrics endpoint, on its own task: it only encodes the registry.
    let (metrics_stop, metrics_task) = match config.metrics.address {
        Some(address) => {
            let l = tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| AppError::Metrics { address, source })?;
            let bound = l.local_addr().unwrap_or(address);
            tracing::info!(address = %bound, "serving metrics on /metrics");
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(crate::metrics::serve(l, services.metrics.clone(), async {
                let _ = rx.await;
            }));
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let poll = match (&services.controller, config.metrics.address) {
        (Some(c), Some(_)) if !config.metrics.poll_interval.is_zero() => {
            Some(tokio::spawn(c.space_poll(config.metrics.poll_interval)))
        }
        _ => None,
    };
    if let Some(c) = &services.controller {
        tokio::spawn(c.log_cluster_access());
    }
    let reconcile = match &services.controller {
        Some(c) if !config.export_reconcile_interval.is_zero() => {
            Some(tokio::spawn(c.export_reconcile(config.export_reconcile_interval)))
        }
        _ => None,
    };
    let listener = server::bind_socket(&config.socket_path, config.socket_mode)?;
    tracing::info!(
        mode = %config.mode,
        driver = %config.driver_name,
        version = env!("CARGO_PKG_VERSION"),
        "starting flashblade-csi"
    );
    let result = server::serve(
        listener,
        config.socket_path.clone(),
        services,
        shutdown,
        config.timeouts.shutdown_grace,
    )
    .await;
    if let Some(p) = poll {
        p.abort();
    }
    if let Some(r) = reconcile {
        r.abort();
    }
    if let Some(tx) = metrics_stop {
        let _ = tx.send(());
    }
    if let Some(t) = metrics_task {
        match tokio::time::timeout(std::time::Duration::from_secs(2), t).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "metrics endpoint failed"),
            Err(_) => tracing::warn!("metrics endpoint did not stop within 2s"),
            _ => {}
        }
    }
    for c in clients {
        c.logout().await;
    }
    result?;
    Ok(())
}

/// The API token file should be readable by this process only (a Secret
/// volume with `defaultMode: 0400`).
fn warn_if_readable_by_others(array: &str, path: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.mode() & 0o004 != 0
    {
        tracing::warn!(
            array = %array,
            file = %path.display(),
            mode = %format!("{:o}", m.mode() & 0o777),
            "the API token file is readable by every user on this host; mount the Secret with defaultMode 0400"
        );
    }
}
