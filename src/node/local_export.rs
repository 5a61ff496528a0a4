//! Development staging that asks the array first (`--local-export-root`
//! with `--local-export-client IP`): before binding a file system's
//! directory, the node asks the simulated array's mount daemon
//! (mock-flashblade's `GET /mock/mount?name=FS&client=IP`) whether its
//! export rules admit this node's address, as a real NFS server decides at
//! mount time. A refusal is the error a refused NFS mount gives; a
//! read-only rule makes the bind read-only; the rule's squash is played on
//! the root directory (see [`super::root_dir::Server`]).
//!
//! The endpoint needs no credentials (the node holds none): only the
//! array's management URL and CA from the node's configuration.

#[cfg(feature = "dev-staging")]
pub(crate) use staging::LocalExports;

/// Without development staging (release builds) there is no simulator to
/// ask: no value of this type can exist, and the configuration refuses
/// `--local-export-root`.
#[cfg(not(feature = "dev-staging"))]
pub(crate) enum LocalExports {}

#[cfg(not(feature = "dev-staging"))]
impl LocalExports {
    pub(crate) fn new(_: &crate::config::Config) -> Option<LocalExports> {
        None
    }

    pub(crate) fn client(&self) -> std::net::IpAddr {
        match *self {}
    }

    pub(crate) async fn ask(&self, _: Option<&str>, _: &str) -> crate::error::Result<Admitted> {
        match *self {}
    }
}

/// What the simulated array allows this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Admitted {
    pub readonly: bool,
    /// How root's requests are treated on the root directory.
    pub server: super::root_dir::Server,
    /// The rule that decided, as the array shows it.
    pub rule: String,
}

#[cfg(feature = "dev-staging")]
mod staging {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::sync::Arc;
    use std::time::Duration;

    use serde::Deserialize;

    use super::super::mounter::MountError;
    use super::super::root_dir::Server;
    use crate::config::Config;
    use crate::error::{Cause, Error, Result};

    /// One array's simulator, as the node reaches it.
    struct Simulator {
        url: reqwest::Url,
        http: reqwest::Client,
    }

    /// The node's view of the simulated arrays' mount daemons.
    pub(crate) struct LocalExports {
        client: IpAddr,
        arrays: HashMap<String, Simulator>,
        default_array: Option<String>,
    }

    use super::Admitted;

    #[derive(Deserialize)]
    struct Answer {
        access: String,
        squash: String,
        anonuid: u32,
        rule: String,
    }

    /// Why the client for a simulator's mount endpoint cannot be built.
    #[derive(Debug, thiserror::Error)]
    enum TlsError {
        #[error(transparent)]
        CaFile(#[from] crate::config::CaFileError),
        #[error("CA file {}: {source}", path.display())]
        BadCertificate {
            path: std::path::PathBuf,
            #[source]
            source: rustls::Error,
        },
        #[error("no TLS protocol version available: {0}")]
        Protocols(#[source] rustls::Error),
    }

    fn tls(ca_file: Option<&std::path::Path>) -> std::result::Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                for cert in crate::config::load_ca_file(path)? {
                    roots.add(cert).map_err(|source| TlsError::BadCertificate {
                        path: path.to_path_buf(),
                        source,
                    })?;
                }
            }
            None => {
                let _ = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Protocols)?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }

    impl LocalExports {
        /// `None` unless `--local-export-client` is set. An array whose
        /// simulator cannot be reached with verified TLS is left out (staging
        /// a volume on it then fails, naming why).
        pub(crate) fn new(config: &Config) -> Option<LocalExports> {
            let client = config.local_export_client?;
            let mut arrays = HashMap::new();
            for a in &config.arrays {
                let Some(url) = &a.management_url else { continue };
                if a.insecure_skip_tls_verify && url.scheme() == "https" {
                    tracing::warn!(array = %a.name, "--local-export-client does not skip TLS verification: give the simulator's CA (its ca.pem) to ask it");
                    continue;
                }
                let built = tls(a.ca_file.as_deref()).map_err(Cause::from).and_then(|tls| {
                    reqwest::Client::builder()
                        .use_preconfigured_tls(tls)
                        .timeout(config.timeouts.array_request)
                        .connect_timeout(Duration::from_secs(5))
                        .build()
                        .map_err(Cause::from)
                });
                match built {
                    Ok(http) => {
                        arrays.insert(
                            a.name.to_string(),
                            Simulator {
                                url: url.clone(),
                                http,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::warn!(array = %a.name, error = %e, "cannot build the client for the simulator's mount endpoint")
                    }
                }
            }
            Some(LocalExports {
                client,
                arrays,
                default_array: config.default_array().map(|a| a.name.to_string()),
            })
        }

        /// The address this node presents to the array.
        pub(crate) fn client(&self) -> IpAddr {
            self.client
        }

        /// Asks array `array` (the default one when `None`) whether this node
        /// may mount file system `fs`. A refusal is [`MountError::Denied`], the
        /// error of a refused NFS mount; an unknown file system is NOT_FOUND.
        pub(crate) async fn ask(&self, array: Option<&str>, fs: &str) -> Result<Admitted> {
            let name = array
                .map(str::to_string)
                .or_else(|| self.default_array.clone())
                .ok_or_else(|| Error::failed_precondition("no array is configured on this node"))?;
            let sim = self.arrays.get(&name).ok_or_else(|| {
                Error::failed_precondition(format!(
                    "--local-export-client: array {name:?} has no management URL (with verified TLS) on this node to ask its mount endpoint"
                ))
            })?;
            let mut url = sim
                .url
                .join("mock/mount")
                .map_err(|e| Error::internal(format!("mount endpoint URL: {e}")).because(e))?;
            url.query_pairs_mut()
                .append_pair("name", fs)
                .append_pair("client", &self.client.to_string());
            let unreachable = |e: Cause| {
                Error::unavailable(format!(
                    "cannot ask array {name:?} whether {} may mount {fs}: {e}",
                    self.client
                ))
                .because(e)
            };
            let resp = sim
                .http
                .get(url)
                .send()
                .await
                .map_err(|e| unreachable(e.without_url().into()))?;
            let status = resp.status().as_u16();
            let body = resp
                .bytes()
                .await
                .map_err(|e| unreachable(e.without_url().into()))?;
            match status {
                200 => {
                    let a: Answer = serde_json::from_slice(&body)
                        .map_err(|e| unreachable(format!("unexpected answer: {e}").into()))?;
                    let server = match a.squash.as_str() {
                        "no_root_squash" => Server::AsIs,
                        _ => Server::Squashed { anonuid: a.anonuid },
                    };
                    Ok(Admitted {
                        readonly: a.access != "rw",
                        server,
                        rule: a.rule,
                    })
                }
                403 => Err(MountError::Denied(format!(
                    "array {name:?} refused to export file system {fs} to this node ({}): {}",
                    self.client,
                    message(&body)
                ))
                .into()),
                404 => Err(Error::not_found(format!(
                    "file system {fs} does not exist on array {name:?} (asked by --local-export-client)"
                ))),
                _ => Err(unreachable(format!("HTTP {status}: {}", message(&body)).into())),
            }
        }
    }

    /// The simulator's error message (`{"errors":[{"message": …}]}`).
    fn message(body: &[u8]) -> String {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let m = v["errors"][0]["message"]
            .as_str()
            .or_else(|| v["message"].as_str())
            .unwrap_or("no reason given");
        crate::text::bounded(m.to_string(), 300)
    }
}
