//! TLS for the simulated management port: a generated CA plus a server
//! certificate it signs (SANs 127.0.0.1, ::1, localhost and any extras), or a
//! certificate and key supplied by the user.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A server identity: the rustls config and the CA PEM clients should trust.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub ca_pem: Option<String>,
}

/// Why the simulator has no TLS identity.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot build the TLS configuration")]
    Config(#[source] rustls::Error),
    #[error("cannot generate the test CA and certificate")]
    Generate(#[source] rcgen::Error),
    #[error("the generated key is not usable: {0}")]
    Key(&'static str),
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no private key found", path.display())]
    NoKey { path: PathBuf },
}

fn read_err(path: &Path) -> impl Fn(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    }
}

fn rustls_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut cfg =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(TlsError::Config)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Generates a fresh CA and a server certificate for `extra_sans` plus the
/// loopback names.
pub fn generate(extra_sans: &[String]) -> Result<ServerTls, TlsError> {
    let err = TlsError::Generate;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mock-flashblade test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut sans = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    sans.extend(extra_sans.iter().cloned());
    let mut leaf = CertificateParams::new(sans).map_err(err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "mock-flashblade");
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().map_err(err)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(err)?;

    let key = PrivateKeyDer::try_from(leaf_key.serialize_der()).map_err(TlsError::Key)?;
    Ok(ServerTls {
        config: rustls_config(vec![leaf_cert.der().clone(), ca_cert.der().clone()], key)?,
        ca_pem: Some(ca_cert.pem()),
    })
}

/// Loads a PEM certificate chain and private key.
pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(read_err(cert))?;
    let chain = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err(cert))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert.into() });
    }
    let key_pem = std::fs::read(key).map_err(read_err(key))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(read_err(key))?
        .ok_or_else(|| TlsError::NoKey { path: key.into() })?;
    Ok(ServerTls {
        config: rustls_config(chain, key)?,
        ca_pem: None,
    })
}
