//! The gRPC server on a unix socket: safe socket creation (stale sockets are
//! removed, live ones are never stolen), permissions, and graceful shutdown
//! with a bound on how long in-flight RPCs may run.

use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::server::NamedService;

use crate::csi::controller_server::ControllerServer;
use crate::csi::identity_server::IdentityServer;
use crate::csi::node_server::NodeServer;
use crate::{controller::ControllerService, identity::IdentityService, node::NodeService};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("socket {path}: another process is serving on it; refusing to take it over")]
    SocketInUse { path: PathBuf },
    #[error("socket {path}: exists and is not a socket; refusing to remove it")]
    NotASocket { path: PathBuf },
    #[error("socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Binds the unix socket at `path`, replacing a stale socket file left by a
/// dead process but refusing to replace one that a live process answers on.
pub fn bind_socket(path: &Path, mode: u32) -> Result<UnixListener, ServerError> {
    let io_err = |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_socket() {
                return Err(ServerError::NotASocket {
                    path: path.to_path_buf(),
                });
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(ServerError::SocketInUse {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing stale socket");
                    std::fs::remove_file(path).map_err(io_err)?;
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err)?;
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    Ok(listener)
}

/// The services one process serves.
pub struct Services {
    pub identity: IdentityService,
    pub controller: Option<ControllerService>,
    pub node: Option<NodeService>,
    /// The registry every service records into; CSI calls are counted here.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight
/// RPCs finish for up to `grace`, and removes the socket file.
pub async fn serve(
    listener: UnixListener,
    socket_path: PathBuf,
    services: Services,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), ServerError> {
    let mut served = vec![<IdentityServer<IdentityService> as NamedService>::NAME];
    if services.controller.is_some() {
        served.push(<ControllerServer<ControllerService> as NamedService>::NAME);
    }
    if services.node.is_some() {
        served.push(<NodeServer<NodeService> as NamedService>::NAME);
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in &served {
        health
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let (reflection_v1, reflection_v1alpha) = reflection(&served);
    let router = tonic::transport::Server::builder()
        .layer(crate::telemetry::RpcSpanLayer)
        .layer(crate::metrics::RpcMetricsLayer(services.metrics.clone()))
        .add_service(IdentityServer::new(services.identity))
        .add_optional_service(services.controller.map(ControllerServer::new))
        .add_optional_service(services.node.map(NodeServer::new))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    // What starting up allocated and dropped (the parsed command line, the
    // layered settings, scratch of the descriptor sets) stays in glibc's
    // heap; a node plugin then idles for weeks, so give it back now.
    release_free_heap();

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Any :authority is accepted (C-core clients send the socket path).
    let incoming = tokio_stream::StreamExt::map(UnixListenerStream::new(listener), |c| {
        c.map(crate::authority::AnyAuthority::new)
    });
    let mut server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = stop_rx.await;
    }));
    tracing::info!(socket = %socket_path.display(), "serving CSI");

    let result = tokio::select! {
        res = &mut server => {
            // The server ended on its own: that is an error.
            Some(res)
        }
        () = shutdown => None,
    };
    let result = match result {
        Some(res) => res.unwrap_or_else(|e| {
            tracing::error!(error = %e, "server task failed");
            Ok(())
        }),
        None => {
            tracing::info!(
                grace_ms = grace.as_millis() as u64,
                "shutting down: no new connections, waiting for in-flight RPCs"
            );
            // A health watcher sees the server go before the socket does.
            for name in served.iter().copied().chain([""]) {
                health
                    .set_service_status(name, tonic_health::ServingStatus::NotServing)
                    .await;
            }
            let _ = stop_tx.send(());
            match tokio::time::timeout(grace, &mut server).await {
                Ok(Ok(res)) => res,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "server task failed during shutdown");
                    Ok(())
                }
                Err(_) => {
                    tracing::warn!("in-flight RPCs did not finish within the grace period; aborting them");
                    server.abort();
                    Ok(())
                }
            }
        }
    };
    if let Err(e) = std::fs::remove_file(&socket_path)
        && e.kind() != io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, socket = %socket_path.display(), "could not remove socket");
    }
    tracing::info!("stopped");
    result.map_err(ServerError::from)
}

/// The gRPC reflection service (v1, and v1alpha for older clients) for the
/// CSI services this process serves plus the health service, so grpcurl and
/// other generic clients need no .proto file. Each is built on its first
/// call: decoding the descriptor sets costs memory a node plugin would keep
/// for weeks, and only a person debugging ever asks.
#[allow(clippy::type_complexity)]
fn reflection(
    served: &[&str],
) -> (
    OnFirstCall<
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
    >,
    OnFirstCall<
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    >,
) {
    let served: Vec<String> = served.iter().map(|n| n.to_string()).collect();
    let builder = move || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::csi::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Both reflection versions are described by both services (a
            // v1alpha client lists the v1 service too, and resolves it).
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        for name in &served {
            b = b.with_service_name(name.clone());
        }
        b
    };
    // The descriptor sets are compiled in; `reflection_builds` tests them.
    const VALID: &str = "the compiled-in descriptor sets are valid";
    let v1 = builder.clone();
    (
        OnFirstCall::new(move || v1().build_v1().expect(VALID)),
        OnFirstCall::new(move || builder().build_v1alpha().expect(VALID)),
    )
}

/// A service built when its first request arrives, then shared by clones.
pub(crate) struct OnFirstCall<S> {
    built: std::sync::Arc<std::sync::OnceLock<S>>,
    build: std::sync::Arc<dyn Fn() -> S + Send + Sync>,
}

impl<S> OnFirstCall<S> {
    fn new(build: impl Fn() -> S + Send + Sync + 'static) -> Self {
        OnFirstCall {
            built: Default::default(),
            build: std::sync::Arc::new(build),
        }
    }
}

impl<S> Clone for OnFirstCall<S> {
    fn clone(&self) -> Self {
        OnFirstCall {
            built: self.built.clone(),
            build: self.build.clone(),
        }
    }
}

impl<S: NamedService> NamedService for OnFirstCall<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, R> tower::Service<R> for OnFirstCall<S>
where
    S: tower::Service<R> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    // tonic's generated servers are always ready (each call works on its
    // own clone of the inner service), so this wrapper is too.
    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> S::Future {
        let mut service = self.built.get_or_init(|| (self.build)()).clone();
        service.call(req)
    }
}

/// Bounds glibc's heap for a process that serves for weeks. Two arenas:
/// the work is I/O bound, and an arena per thread would keep what each
/// burst freed in many places. Blocks of 256 KiB and more are always
/// mapped apart, so a scrape's or a listing's large buffers go back to the
/// kernel when freed; by default glibc raises that threshold after the
/// first such free, and later ones stay in the heap.
pub fn tune_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before other
    // threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Returns the heap's free pages to the kernel.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's free lists;
    // it takes no pointer from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resolves on SIGTERM, SIGINT or SIGHUP. SIGHUP would otherwise kill the
/// process on the spot and leave its socket behind; there is nothing to
/// reload, so it stops the server cleanly like the others.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: call it before the socket is bound, so a signal that
/// arrives as soon as the socket exists stops the server cleanly instead of
/// killing the process with the default action. Needs a Tokio runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("install SIGHUP handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
            _ = hup.recv() => tracing::info!("received SIGHUP"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflection_builds() {
        let (v1, v1alpha) = reflection(&[<NodeServer<NodeService> as NamedService>::NAME]);
        // What the first request would do; a bad descriptor set panics here.
        let _ = (v1.build)();
        let _ = (v1alpha.build)();
    }
}
