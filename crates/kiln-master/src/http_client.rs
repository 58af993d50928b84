//! A small HTTP/1.1 client for what the master sends out (the `HTTPStep`, and reporters): one
//! request per connection, `http` or `https` (rustls with the Mozilla roots), bounded in time
//! and in the size of the answer.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// An answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A request to send.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Option<Duration>,
    /// The largest answer read; a larger one is an error.
    pub max_answer: Option<u64>,
    /// How an `https` server's certificate is checked.
    pub verify: Verify,
}

/// How an `https` server's certificate is checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Verify {
    /// Against the Mozilla roots.
    #[default]
    Roots,
    /// Against the certificates of a PEM file (a private CA, a self-signed server).
    CaFile(std::path::PathBuf),
    /// Not at all, as Buildbot's `verify=False`: the connection is encrypted, not authenticated.
    Off,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_ANSWER: u64 = 16 << 20;

/// A URL's parts.
struct Target {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("bad host in {url:?}"))?;
        let port = after.strip_prefix(':').map(str::parse::<u16>).transpose();
        (
            h.to_string(),
            port.map_err(|_| format!("bad port in {url:?}"))?,
        )
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("bad port in {url:?}"))?,
                ),
            ),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("no host in {url:?}"));
    }
    Ok(Target {
        tls,
        port: port.unwrap_or(if tls { 443 } else { 80 }),
        host,
        path,
    })
}

/// Sends `req` and reads the whole answer.
pub async fn send(req: &Request) -> Result<Response, String> {
    let target = parse_url(&req.url)?;
    let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let max = req.max_answer.unwrap_or(DEFAULT_MAX_ANSWER);
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|e| format!("connecting to {}:{}: {e}", target.host, target.port))?;
        if target.tls {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| format!("{}: {e}", target.host))?;
            let stream = tls_connector(&req.verify)?
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", target.host))?;
            exchange(stream, &target, req, max).await
        } else {
            exchange(tcp, &target, req, max).await
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer from {} within {timeout:?}", req.url))?
}

fn tls_connector(verify: &Verify) -> Result<tokio_rustls::TlsConnector, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = match verify {
        Verify::Roots => {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Verify::CaFile(path) => {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let mut store = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("reading {}: {e}", path.display()))?;
                store
                    .add(cert)
                    .map_err(|e| format!("a certificate of {}: {e}", path.display()))?;
            }
            if store.is_empty() {
                return Err(format!("{} holds no certificate", path.display()));
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        Verify::Off => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Accepts any certificate (`verify=False`), still checking that the server holds its key.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: &Target,
    req: &Request,
    max: u64,
) -> Result<Response, String> {
    let default_port = if target.tls { 443 } else { 80 };
    let host = if target.port == default_port {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: kiln\r\n",
        req.method, target.path
    );
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    for (k, v) in &req.headers {
        if k.contains(['\r', '\n', ':']) || v.contains(['\r', '\n']) {
            return Err(format!("header {k:?} is not a valid header"));
        }
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has("content-length")
        && (!req.body.is_empty() || !matches!(req.method.as_str(), "GET" | "HEAD"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", req.body.len()));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(&req.body)
        .await
        .map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    (&mut stream)
        .take(max + 1)
        .read_to_end(&mut answer)
        .await
        .or_else(|e| {
            // A TLS peer that closes without notice has still sent its whole answer.
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Ok(0)
            } else {
                Err(e.to_string())
            }
        })?;
    if answer.len() as u64 > max {
        return Err(format!("the answer is larger than {max} bytes"));
    }
    parse_answer(&answer, req.method == "HEAD")
}

fn parse_answer(answer: &[u8], head_only: bool) -> Result<Response, String> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer is not HTTP (no end of headers)")?;
    let head = String::from_utf8_lossy(&answer[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/") {
        return Err(format!("the answer is not HTTP: {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let reason = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let raw = &answer[end + 4..];
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let body = if head_only {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(raw)?
    } else if let Some(n) = get("content-length").and_then(|n| n.parse::<usize>().ok()) {
        raw[..n.min(raw.len())].to_vec()
    } else {
        raw.to_vec()
    };
    Ok(Response {
        status,
        reason,
        headers,
        body,
    })
}

fn dechunk(mut raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunked answer ends early")?;
        let size_text = String::from_utf8_lossy(&raw[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if raw.len() < size {
            return Err("a chunked answer ends early".into());
        }
        out.extend_from_slice(&raw[..size]);
        raw = raw.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_answers_are_read() {
        let t = parse_url("https://user@example.com:8443/a/b?c=1").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("example.com", 8443, "/a/b?c=1")
        );
        let t = parse_url("http://[::1]/x").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 80));
        assert!(parse_url("ftp://x").is_err());
        let r = parse_answer(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), r.body.as_slice()),
            (201, "Created", &b"abcde"[..])
        );
        let r = parse_answer(
            b"HTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\nnoextra",
            false,
        )
        .unwrap();
        assert_eq!(r.body, b"no");
        assert!(parse_answer(b"garbage", false).is_err());
    }
}
