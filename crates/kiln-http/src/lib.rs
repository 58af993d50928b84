//! The HTTP client of kiln, for what the master sends out (the `HTTPStep`, and reporters) and
//! for the command-line tools that talk to a master: `reqwest` over rustls with ring, one
//! request per connection or a [`Pool`] of kept ones, bounded in time and in the size of the
//! answer, with the server's
//! certificate checked against the Mozilla roots, a CA file, or not at all.

use std::sync::Arc;
use std::time::Duration;

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
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Verify {
    /// Against the Mozilla roots.
    #[default]
    Roots,
    /// Against the certificates of a PEM file (a private CA, a self-signed server).
    CaFile(std::path::PathBuf),
    /// Not at all, as Buildbot's `verify=False`: the connection is encrypted, not authenticated.
    Off,
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HttpError {
    #[error("{url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{0:?} is not an http:// or https:// URL")]
    NotHttp(String),
    #[error("{0:?} is not an HTTP method")]
    BadMethod(String),
    /// The TLS settings could not be made (an unreadable or empty CA file).
    #[error("{0}")]
    Tls(String),
    #[error("HTTP client setup: {0}")]
    Setup(String),
    #[error("no answer from {0} in time")]
    Timeout(String),
    /// The connection failed or broke, with every cause the client kept.
    #[error("{0}")]
    Transport(String),
    #[error("the answer is larger than {0} bytes")]
    TooLarge(u64),
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_ANSWER: u64 = 16 << 20;
/// Idle connections a [`Pool`] keeps per server, and for how long.
const IDLE_PER_HOST: usize = 8;
const IDLE_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends `req` on a connection of its own and reads the whole answer.
pub async fn send(req: &Request) -> Result<Response, HttpError> {
    static CLIENTS: std::sync::OnceLock<Clients> = std::sync::OnceLock::new();
    let clients = CLIENTS.get_or_init(|| Clients::new(false));
    send_with(&clients.client(&req.verify)?, req).await
}

/// Connections kept for the next request to the same server, for a sender of many requests
/// (a reporter posts two statuses per build). A connection is kept only briefly: a server closes
/// an idle one after a few seconds (Apache after 5), and a request sent as it does so would
/// fail. A pool belongs to one task's runtime, whose tasks drive its connections; that is why
/// it is not shared by the whole process as [`send`]'s clients are.
#[derive(Clone)]
pub struct Pool(Arc<Clients>);

impl Default for Pool {
    fn default() -> Self {
        Pool(Arc::new(Clients::new(true)))
    }
}

impl Pool {
    /// Sends `req`, on a kept connection when there is one, and reads the whole answer.
    pub async fn send(&self, req: &Request) -> Result<Response, HttpError> {
        send_with(&self.0.client(&req.verify)?, req).await
    }
}

async fn send_with(client: &reqwest::Client, req: &Request) -> Result<Response, HttpError> {
    let timeout = req.timeout.unwrap_or(DEFAULT_TIMEOUT);
    let max = req.max_answer.unwrap_or(DEFAULT_MAX_ANSWER);
    let url = reqwest::Url::parse(&req.url).map_err(|e| HttpError::BadUrl {
        url: req.url.clone(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(HttpError::NotHttp(req.url.clone()));
    }
    let method = reqwest::Method::from_bytes(req.method.as_bytes())
        .map_err(|_| HttpError::BadMethod(req.method.clone()))?;
    let mut request = client
        .request(method, url)
        .timeout(timeout)
        .body(req.body.clone());
    for (k, v) in &req.headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let mut answer = request.send().await.map_err(|e| describe(&req.url, &e))?;
    let status = answer.status();
    let headers = answer
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                title_case(k.as_str()),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| describe(&req.url, &e))? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(HttpError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or_default().to_string(),
        headers,
        body,
    })
}

/// A client for each way of checking servers, each made once: making one reads the TLS roots
/// and builds a connector, which costs more than a request to a nearby server.
struct Clients {
    keep: bool,
    made: std::sync::Mutex<std::collections::HashMap<Verify, reqwest::Client>>,
}

impl Clients {
    fn new(keep: bool) -> Clients {
        Clients {
            keep,
            made: Default::default(),
        }
    }

    /// The client for `verify`. A CA file is read again for each request, so that a replaced
    /// file is used at once.
    fn client(&self, verify: &Verify) -> Result<reqwest::Client, HttpError> {
        let cacheable = !matches!(verify, Verify::CaFile(_));
        let made = || self.made.lock().unwrap_or_else(|p| p.into_inner());
        if cacheable && let Some(c) = made().get(verify) {
            return Ok(c.clone());
        }
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(verify)?)
            .user_agent("kiln")
            // Header names go out as `Content-Type`, not `content-type`: some servers still care.
            .http1_title_case_headers()
            .pool_max_idle_per_host(if self.keep { IDLE_PER_HOST } else { 0 })
            .pool_idle_timeout(IDLE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| HttpError::Setup(e.to_string()))?;
        if cacheable {
            made().insert(verify.clone(), client.clone());
        }
        Ok(client)
    }
}

/// A header name as most servers write it (`X-Token`): the client reads names in lower case.
fn title_case(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper { c.to_ascii_uppercase() } else { c };
            upper = c == '-';
            out
        })
        .collect()
}

/// What went wrong, with the causes reqwest keeps behind its own message.
fn describe(url: &str, error: &reqwest::Error) -> HttpError {
    if error.is_timeout() {
        return HttpError::Timeout(url.to_string());
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    HttpError::Transport(text)
}

/// The TLS configuration for a way of checking the server, for the connections of kiln's own
/// protocols too (a mail relay's SMTPS).
pub fn tls_config(verify: &Verify) -> Result<rustls::ClientConfig, HttpError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls(format!("TLS setup: {e}")))?;
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
                .map_err(|e| HttpError::Tls(format!("reading {}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| HttpError::Tls(format!("reading {}: {e}", path.display())))?;
                store.add(cert).map_err(|e| {
                    HttpError::Tls(format!("a certificate of {}: {e}", path.display()))
                })?;
            }
            if store.is_empty() {
                return Err(HttpError::Tls(format!(
                    "{} holds no certificate",
                    path.display()
                )));
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        Verify::Off => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_requests_are_refused_before_sending() {
        let get = |url: &str, method: &str| Request {
            method: method.into(),
            url: url.into(),
            ..Default::default()
        };
        let err = send(&get("ftp://x/", "GET")).await.unwrap_err();
        assert_eq!(err, HttpError::NotHttp("ftp://x/".into()));
        assert!(err.to_string().contains("not an http"), "{err}");
        let err = send(&get("http://127.0.0.1:1/", "GE T")).await.unwrap_err();
        assert_eq!(err, HttpError::BadMethod("GE T".into()));
        let err = send(&get("not a url", "GET")).await.unwrap_err();
        assert!(matches!(err, HttpError::BadUrl { .. }), "{err}");
        assert!(err.to_string().contains("not a url"), "{err}");
        let err = send(&get("http://127.0.0.1:1/", "GET")).await.unwrap_err();
        assert!(matches!(err, HttpError::Transport(_)), "{err}");
        assert_eq!(title_case("x-token"), "X-Token");
        assert_eq!(title_case("etag"), "Etag");
    }

    /// A server that answers every request on a connection with `answer`, counting the
    /// connections it accepts; it closes a connection when `answer` says `Connection: close`.
    async fn counting_server(
        answer: &'static str,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/status", listener.local_addr().unwrap());
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = tcp.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        // Each request of the test has a two-byte body after its headers.
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            if seen.len() < end + 6 {
                                break;
                            }
                            seen.drain(..end + 6);
                            if tcp.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                            if answer.contains("Connection: close") {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url, accepted)
    }

    fn post(url: &str) -> Request {
        Request {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: b"{}".to_vec(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_connection_serves_the_next_request_to_the_same_server() {
        let (url, accepted) =
            counting_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        let pool = Pool::default();
        for _ in 0..10 {
            let answer = pool.send(&post(&url)).await.unwrap();
            assert_eq!((answer.status, answer.body.as_slice()), (200, &b"ok"[..]));
            // The connection goes back to the pool from its own task, which runs when this one
            // yields (the test's runtime has one thread).
            tokio::task::yield_now().await;
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A server that closes each connection gets a new one for each request.
        let (url, accepted) =
            counting_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                .await;
        for _ in 0..3 {
            assert_eq!(pool.send(&post(&url)).await.unwrap().status, 200);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Without a pool, each request has a connection of its own.
        let (url, accepted) =
            counting_server("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
        for _ in 0..3 {
            assert_eq!(send(&post(&url)).await.unwrap().status, 200);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
