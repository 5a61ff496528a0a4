//! rustls client configuration for the array connection (ring provider).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Why the TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
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

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verified against `ca_file` when given (it replaces the system trust
/// store for this array: arrays usually ship self-signed certificates, and
/// pinning their CA trusts nothing else), otherwise against the system trust
/// store (the image's CA bundle), for arrays with a certificate from a public
/// or enterprise CA. `insecure` skips verification.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    insecure: bool,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?;
    if insecure {
        tracing::warn!(
            "TLS verification of the array is DISABLED (insecure-skip-tls-verify); use a CA bundle in production"
        );
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let verifier = ReloadingCa::new(path.to_path_buf())?;
            return Ok(builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth());
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "system trust store: a file could not be read");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    "the system trust store holds no CA certificate: the array's certificate cannot be verified; give its CA with --ca-file"
                );
            }
        }
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// A verifier for the certificates of one CA file.
fn verifier_for(
    path: &Path,
    certs: Vec<CertificateDer<'static>>,
) -> Result<Arc<WebPkiServerVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|source| TlsError::BadCertificate {
            path: path.to_path_buf(),
            source,
        })?;
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::BadCertificate {
            path: path.to_path_buf(),
            source: rustls::Error::General(e.to_string()),
        })
}

/// Verifies against the CA file's certificates. When the array's
/// certificate does not verify, the file is read again and, if its
/// certificates changed (a rotated Secret), the check is repeated against
/// them and they are kept: a replaced CA needs no restart, as a replaced
/// token needs none.
#[derive(Debug)]
struct ReloadingCa {
    path: PathBuf,
    current: RwLock<(Vec<CertificateDer<'static>>, Arc<WebPkiServerVerifier>)>,
}

impl ReloadingCa {
    fn new(path: PathBuf) -> Result<Self, TlsError> {
        let certs = crate::config::load_ca_file(&path)?;
        let verifier = verifier_for(&path, certs.clone())?;
        Ok(Self {
            path,
            current: RwLock::new((certs, verifier)),
        })
    }

    fn verifier(&self) -> Arc<WebPkiServerVerifier> {
        self.current.read().expect("CA lock").1.clone()
    }

    /// The verifier of the file's certificates when they differ from the
    /// ones in use; `None` when unchanged or unreadable (the old CA stays).
    fn reload(&self) -> Option<Arc<WebPkiServerVerifier>> {
        let certs = match crate::config::load_ca_file(&self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "the array's certificate did not verify and the CA file cannot be read again");
                return None;
            }
        };
        let mut current = self.current.write().expect("CA lock");
        if current.0 == certs {
            return None;
        }
        match verifier_for(&self.path, certs.clone()) {
            Ok(v) => {
                tracing::info!(ca_file = %self.path.display(), "the CA file changed: verifying the array against the new CA");
                *current = (certs, v.clone());
                Some(v)
            }
            Err(e) => {
                tracing::warn!(error = %e, "the CA file changed but its certificates cannot be used; keeping the old CA");
                None
            }
        }
    }
}

impl ServerCertVerifier for ReloadingCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let first = self
            .verifier()
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        match first {
            Err(rustls::Error::InvalidCertificate(_)) => match self.reload() {
                Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
                None => first,
            },
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.verifier().supported_verify_schemes()
    }
}

/// Accepts any certificate but still checks handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
