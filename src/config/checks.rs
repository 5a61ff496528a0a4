//! Checks of single values of the configuration: the socket endpoint, the
//! driver name, files and directories, URLs, the CA bundle.

use std::path::{Path, PathBuf};

use super::{ConfigError, bad};

/// What a configuration is loaded for: serving needs every controller
/// setting; an admin command only the arrays'.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Serve,
    Admin,
}

/// Accepts `unix:///abs/path`, `unix:/abs/path` and a bare absolute path.
pub(crate) fn parse_endpoint(text: &str) -> Result<PathBuf, ConfigError> {
    let path = if let Some(rest) = text.strip_prefix("unix://") {
        rest
    } else if let Some(rest) = text.strip_prefix("unix:") {
        rest
    } else if text.contains("://") {
        return Err(bad(
            "endpoint",
            format!("{text:?}: only unix sockets are supported (unix:///path/csi.sock)"),
        ));
    } else {
        text
    };
    if path.is_empty() || !path.starts_with('/') {
        return Err(bad(
            "endpoint",
            format!("{text:?}: the socket path must be absolute, e.g. unix:///csi/csi.sock"),
        ));
    }
    // sun_path holds 108 bytes including the terminating NUL.
    if path.len() > 107 {
        return Err(bad(
            "endpoint",
            format!("{text:?}: socket path longer than 107 bytes"),
        ));
    }
    Ok(PathBuf::from(path))
}

/// CSI plugin names: [`crate::volume::rules::is_driver_name`].
pub(crate) fn validate_driver_name(name: &str) -> Result<(), ConfigError> {
    if crate::volume::rules::is_driver_name(name) {
        Ok(())
    } else {
        Err(bad(
            "driver-name",
            format!("{name:?} must be {}", crate::volume::rules::DRIVER_NAME_RULE),
        ))
    }
}

/// Why a CA bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a PEM file: {source}", path.display())]
    NotPem {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    Empty { path: PathBuf },
}

/// The certificates of a PEM CA bundle; an unreadable file, one that is not
/// PEM, or one without a certificate is refused with a reason.
pub(crate) fn load_ca_file(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, CaFileError> {
    let pem = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CaFileError::NotPem {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(CaFileError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

pub(super) fn check_file(setting: &str, path: &Path) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(bad(setting, format!("{} is not a regular file", path.display()))),
        Err(e) => Err(bad(setting, format!("cannot read {}: {e}", path.display())).because(e)),
    }
}

pub(super) fn check_dir(setting: &str, path: &Path) -> Result<(), ConfigError> {
    if !path.is_absolute() {
        return Err(bad(
            setting,
            format!("{} must be an absolute path", path.display()),
        ));
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(bad(setting, format!("{} is not a directory", path.display()))),
        Err(e) => Err(bad(setting, format!("cannot use {}: {e}", path.display())).because(e)),
    }
}

pub(super) fn parse_url(setting: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| bad(setting, format!("{text:?} is not a URL: {e}")).because(e))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(bad(setting, format!("{text:?} must start with https://")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad(setting, format!("{text:?} has no host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(setting, "must not carry credentials; use the API token file"));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(bad(
            setting,
            format!("{text:?} must be the array's base URL (no path or query)"),
        ));
    }
    Ok(url)
}
