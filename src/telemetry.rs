//! Logging setup (human or JSON, env-filter) and the per-RPC span layer.
//!
//! This is the only module that touches the global tracing subscriber.

use std::task::{Context, Poll};

use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Logs go to stderr so stdout stays free for
/// machine-readable output.
/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid configuration: log-filter: {filter:?}: {source}")]
    Filter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot install logger: {0}")]
    Install(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub fn init(log: &LogConfig) -> Result<(), TelemetryError> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&log.filter).map_err(|source| TelemetryError::Filter {
            filter: log.filter.clone(),
            source,
        })?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    let result = match log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    result.map_err(TelemetryError::Install)
}

/// Opens one `rpc` span per gRPC call with the method name; handlers record
/// `volume_id` (once it is known, and only that) and `fs_name` (the file
/// system a CreateVolume is about, before the volume id exists) into it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RpcSpanLayer;

impl<S> Layer<S> for RpcSpanLayer {
    type Service = RpcSpan<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcSpan { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct RpcSpan<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for RpcSpan<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().rsplit('/').next().unwrap_or("").to_string();
        let span = tracing::info_span!(
            "rpc",
            method = %method,
            volume_id = tracing::field::Empty,
            fs_name = tracing::field::Empty,
        );
        self.inner.call(req).instrument(span)
    }
}

/// Records the volume id into the current RPC span.
pub(crate) fn record_volume_id(volume_id: &str) {
    tracing::Span::current().record("volume_id", volume_id);
}

/// Records the file system name into the current RPC span (CreateVolume
/// knows it before the volume id exists).
pub fn record_fs_name(fs_name: &str) {
    tracing::Span::current().record("fs_name", fs_name);
}
