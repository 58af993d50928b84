//! TLS to a master whose worker port is configured with `ssl:`, with rustls on ring.
//!
//! The master's certificate is checked against the authorities of `ca_file` when the worker names
//! one (a private CA, the usual case for a worker port), else of the file `SSL_CERT_FILE` names,
//! and against the public web's otherwise.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

use crate::config::WorkerConfig;

/// The connector for `config`'s master; an error names the authorities file it could not use.
pub fn connector(config: &WorkerConfig) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    // The variable OpenSSL reads, which the stock worker (through Twisted) honours too.
    let file = match &config.ca_file {
        Some(file) => Some(config.basedir.join(file)),
        None => std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from),
    };
    match file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                .and_then(|certs| certs.collect())
                .with_context(|| format!("reading the authorities in {}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                anyhow::bail!("{} holds no usable certificate", path.display());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(tls)))
}

/// The name the master's certificate must carry: its host name or IP address.
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(host.to_string())
        .with_context(|| format!("{host:?} is neither a host name nor an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(basedir: &std::path::Path, ca_file: Option<&str>) -> WorkerConfig {
        WorkerConfig {
            basedir: basedir.to_path_buf(),
            master_host: "localhost".into(),
            master_port: 9989,
            name: "w".into(),
            password: "p".into(),
            max_retries: None,
            use_tls: true,
            ca_file: ca_file.map(Into::into),
        }
    }

    #[test]
    fn an_unusable_authorities_file_is_named() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let missing = connector(&config(dir.path(), Some("ca.pem")))
            .err()
            .map(|e| format!("{e:#}"));
        assert!(
            missing.as_deref().is_some_and(|m| m.contains("ca.pem")),
            "{missing:?}"
        );
        std::fs::write(dir.path().join("ca.pem"), "no certificate here\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let empty = connector(&config(dir.path(), Some("ca.pem")))
            .err()
            .map(|e| format!("{e:#}"));
        assert!(
            empty
                .as_deref()
                .is_some_and(|m| m.contains("holds no usable certificate")),
            "{empty:?}"
        );
        assert!(connector(&config(dir.path(), None)).is_ok());
    }

    #[test]
    fn a_master_is_named_by_host_or_address() {
        assert!(server_name("localhost").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("::1").is_ok());
        assert!(server_name("not a name").is_err());
    }
}
