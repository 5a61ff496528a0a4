//! FlashBlade REST 2.x client: TLS setup, the session/retry transport
//! ([`client`]), typed operations ([`ops`]), models and errors.

pub(crate) mod assumptions;
pub(crate) mod client;
pub mod error;
pub(crate) mod filter;
pub(crate) mod models;
pub(crate) mod ops;
pub(crate) mod tls;

pub(crate) use client::ArrayClient;
pub use error::Error;
pub(crate) use ops::FileSystemSpec;

use std::time::Duration;

use crate::config::ArrayConfig;

/// Builds the HTTP client for one array: TLS verified against the configured
/// CA bundle (or, only when asked, not verified), connection reuse, and
/// per-request deadlines set by the caller.
pub(crate) fn http_client(array: &ArrayConfig, connect_timeout: Duration) -> Result<reqwest::Client, Error> {
    let url = array.management_url.as_ref().ok_or_else(|| Error::Setup {
        array: array.name.to_string(),
        detail: "management URL is not configured".into(),
        source: None,
    })?;
    let builder = reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("flashblade-csi/", env!("CARGO_PKG_VERSION")))
        // Never follow redirects: a redirect could carry the token elsewhere.
        .redirect(reqwest::redirect::Policy::none());
    if url.scheme() == "http" {
        tracing::warn!(array = %array.name, "array management URL uses plain http: the API token travels unencrypted");
    }
    // Always preconfigured: reqwest has no TLS provider of its own here.
    let tls =
        tls::client_config(array.ca_file.as_deref(), array.insecure_skip_tls_verify).map_err(|reason| {
            Error::Setup {
                array: array.name.to_string(),
                detail: format!("TLS setup failed: {reason}"),
                source: Some(reason.into()),
            }
        })?;
    let builder = builder.use_preconfigured_tls(tls);
    builder.build().map_err(|e| Error::Setup {
        array: array.name.to_string(),
        detail: format!("TLS setup failed: {}", describe_reqwest_error(&e)),
        source: Some(e.into()),
    })
}

/// The error with its source chain (reqwest's Display alone hides the cause,
/// e.g. which certificate check failed).
pub(crate) fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.contains("UnknownIssuer") || text.contains("unknown issuer") {
        text.push_str(
            " (the array's certificate is not signed by a CA this driver trusts: give the array's CA bundle with --ca-file / ca_file)",
        );
    }
    text
}
