//! TLS on the web port and the worker ports: the key and certificate chain the configuration
//! names (Buildbot's `ssl:PORT:privateKey=…:certKey=…`), read once at start with rustls on ring.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use kiln_config::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The web port offers HTTP/1.1 by ALPN; worker ports offer nothing, as Twisted's `ssl:` does.
pub const HTTP: &[&[u8]] = &[b"http/1.1"];

/// An acceptor that offers the `alpn` protocols; an error names the file that could not be used.
pub fn acceptor(basedir: &Path, files: &TlsFiles, alpn: &[&[u8]]) -> anyhow::Result<TlsAcceptor> {
    let cert_path = basedir.join(&files.cert);
    let key_path = basedir.join(&files.key);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect())
        .with_context(|| format!("reading the certificate {}", cert_path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", cert_path.display());
    }
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading the private key {}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "the key {} does not go with the certificate {}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_wrong_file_is_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let files = TlsFiles {
            key: "key.pem".into(),
            cert: "cert.pem".into(),
        };
        let missing = acceptor(dir.path(), &files, HTTP)
            .err()
            .map(|e| format!("{e:#}"));
        assert!(
            missing.as_deref().is_some_and(|m| m.contains("cert.pem")),
            "{missing:?}"
        );
        std::fs::write(dir.path().join("cert.pem"), "not a certificate\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let empty = acceptor(dir.path(), &files, HTTP)
            .err()
            .map(|e| format!("{e:#}"));
        assert!(
            empty
                .as_deref()
                .is_some_and(|m| m.contains("holds no certificate")),
            "{empty:?}"
        );
    }
}
