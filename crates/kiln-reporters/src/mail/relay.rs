//! The way to a mail reporter's relay: how to connect (plain, STARTTLS or SMTPS, with a
//! login), one connection kept from one mail to the next, and each mail's conversation bounded
//! in time.
//!
//! The connection is opened here, not by lettre, to send without Nagle's algorithm: lettre
//! writes a mail's text and its closing `.` line separately, and with Nagle on the closing line
//! waits for the relay's acknowledgement of the text, which a relay delays by 40 ms when it has
//! nothing to answer yet. Every mail cost those 40 ms, which capped a relay at 25 mails a
//! second and kept the master waking for mails long after the builds ended.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use kiln_config::MailConfig;
use lettre::Message;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;

use crate::sink::Failure;

/// How long one mail may take to send.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// A user name and password to log in to the relay with.
type Login = Option<(String, String)>;

/// How long a kept connection may stay idle before it is closed rather than used: relays end
/// idle sessions after a few minutes, and one that is still open holds a slot of theirs.
const KEEP_IDLE: Duration = Duration::from_secs(60);

/// A reporter's way to its relay, kept from one mail to the next: the TLS setup is made once,
/// and one connection carries the mails that come close together.
///
/// A kept connection is used as it is, without first asking the relay whether it is still
/// there (lettre's pool sends a `NOOP` before every mail, one round trip in five): a relay
/// that ended the session in between makes the mail fail before it is sent, and the mail then
/// goes again at once on a new connection.
#[derive(Default)]
pub struct Mailer {
    /// How to connect, for the credentials it logs in with (a secret may change).
    setup: std::sync::Mutex<Option<(Login, Arc<Setup>)>>,
    /// The open connection, who it is logged in as, and since when it is idle.
    kept: tokio::sync::Mutex<Option<(Login, AsyncSmtpConnection, Instant)>>,
}

/// How to reach and enter the relay.
struct Setup {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
}

/// How a connection is encrypted.
enum Security {
    Plain,
    /// STARTTLS, required.
    StartTls(TlsParameters),
    /// TLS from the start (SMTPS).
    Wrapped(tokio_rustls::TlsConnector),
}

impl Mailer {
    /// The setup for `login`, made when there is none for it yet.
    fn setup(
        &self,
        config: &MailConfig,
        basedir: &std::path::Path,
        login: &Login,
    ) -> Result<Arc<Setup>, String> {
        let mut kept = self.setup.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((l, setup)) = &*kept
            && l == login
        {
            return Ok(setup.clone());
        }
        let setup = Arc::new(setup(config, basedir, login.clone())?);
        *kept = Some((login.clone(), setup.clone()));
        Ok(setup)
    }

    /// Sends one mail, on the kept connection when there is one.
    pub(super) async fn send(
        &self,
        config: &MailConfig,
        basedir: &std::path::Path,
        login: Login,
        message: &Message,
    ) -> Result<(), Failure> {
        self.send_within(SEND_TIMEOUT, config, basedir, login, message)
            .await
    }

    /// Sends one mail, giving up after `limit`: lettre bounds only the connecting, and a relay
    /// that stops answering half way would hold the reporter's deliveries for good.
    async fn send_within(
        &self,
        limit: Duration,
        config: &MailConfig,
        basedir: &std::path::Path,
        login: Login,
        message: &Message,
    ) -> Result<(), Failure> {
        let setup = self
            .setup(config, basedir, &login)
            .map_err(Failure::Permanent)?;
        let mut kept = self.kept.lock().await;
        let previous = kept.take();
        match tokio::time::timeout(limit, send_on(previous, &login, &setup, message)).await {
            Ok(Ok(conn)) => {
                *kept = Some((login, conn, Instant::now()));
                Ok(())
            }
            Ok(Err(failure)) => Err(failure),
            Err(_) => Err(Failure::Retry(format!(
                "the relay {}:{} did not take the mail within {} s",
                setup.host,
                setup.port,
                limit.as_secs_f64()
            ))),
        }
    }
}

/// Sends `message` on the connection kept from the last mail when it may still serve, or else
/// on a new one; the connection it went on, to keep for the next.
async fn send_on(
    previous: Option<(Login, AsyncSmtpConnection, Instant)>,
    login: &Login,
    setup: &Setup,
    message: &Message,
) -> Result<AsyncSmtpConnection, Failure> {
    let envelope = message.envelope();
    let bytes = message.formatted();
    match previous {
        Some((l, mut conn, since))
            if l == *login && !conn.has_broken() && since.elapsed() < KEEP_IDLE =>
        {
            match conn.send(envelope, &bytes).await {
                Ok(_) => return Ok(conn),
                Err(e) if e.is_permanent() => return Err(failure(e)),
                // The relay ended the session since the last mail: once more, anew.
                Err(_) => {}
            }
        }
        Some((_, mut conn, _)) => {
            let _ = conn.quit().await;
        }
        None => {}
    }
    let mut conn = connect(setup).await?;
    conn.send(envelope, &bytes).await.map_err(failure)?;
    Ok(conn)
}

/// An SMTP error as a delivery failure: permanent when the relay said so.
fn failure(e: lettre::transport::smtp::Error) -> Failure {
    if e.is_permanent() {
        Failure::Permanent(describe(&e))
    } else {
        Failure::Retry(describe(&e))
    }
}

/// An SMTP error with its causes.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Opens a connection to the relay: greets it, encrypts as configured, logs in.
async fn connect(setup: &Setup) -> Result<AsyncSmtpConnection, Failure> {
    let hello = ClientId::default();
    let unreachable = |e: std::io::Error| {
        Failure::Retry(format!("connecting to {}:{}: {e}", setup.host, setup.port))
    };
    let tcp = TcpStream::connect((setup.host.as_str(), setup.port))
        .await
        .map_err(unreachable)?;
    tcp.set_nodelay(true).map_err(unreachable)?;
    let stream: Box<dyn AsyncTokioStream> = match &setup.security {
        Security::Wrapped(tls) => {
            let name = rustls::pki_types::ServerName::try_from(setup.host.clone())
                .map_err(|e| Failure::Permanent(format!("{:?}: {e}", setup.host)))?;
            let tls = tls.connect(name, tcp).await.map_err(|e| {
                Failure::Retry(format!("TLS with {}:{}: {e}", setup.host, setup.port))
            })?;
            Box::new(Wrapped(tls))
        }
        Security::Plain | Security::StartTls(_) => Box::new(tcp),
    };
    let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &hello)
        .await
        .map_err(failure)?;
    if let Security::StartTls(params) = &setup.security {
        conn.starttls(params.clone(), &hello)
            .await
            .map_err(failure)?;
    }
    if let Some(credentials) = &setup.credentials {
        conn.auth(&[Mechanism::Login, Mechanism::Plain], credentials)
            .await
            .map_err(failure)?;
    }
    Ok(conn)
}

/// A connection in TLS from its start, in the shape lettre takes a stream it did not open.
#[derive(Debug)]
struct Wrapped(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for Wrapped {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for Wrapped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Wrapped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn setup(
    config: &MailConfig,
    basedir: &std::path::Path,
    credentials: Option<(String, String)>,
) -> Result<Setup, String> {
    // As in Buildbot: SMTPS does not check the server's certificate; STARTTLS, which useTls and
    // a login ask for, checks it against the Mozilla roots, or the file SSL_CERT_FILE names.
    let security = if config.use_smtps {
        let tls = kiln_http::tls_config(&kiln_http::Verify::Off).map_err(|e| e.to_string())?;
        Security::Wrapped(tokio_rustls::TlsConnector::from(Arc::new(tls)))
    } else if config.use_tls || credentials.is_some() {
        let ca = config.ca_file.as_ref().map(|f| basedir.join(f));
        Security::StartTls(tls_parameters(&config.relayhost, ca)?)
    } else {
        Security::Plain
    };
    Ok(Setup {
        host: config.relayhost.clone(),
        port: config.smtp_port,
        security,
        credentials: credentials.map(|(user, password)| Credentials::new(user, password)),
    })
}

fn tls_parameters(
    host: &str,
    ca_file: Option<std::path::PathBuf>,
) -> Result<TlsParameters, String> {
    let mut params = TlsParameters::builder(host.to_string());
    let ca_file = ca_file.or_else(|| std::env::var_os("SSL_CERT_FILE").map(Into::into));
    if let Some(file) = ca_file {
        let pem = std::fs::read(&file)
            .map_err(|e| format!("reading the CA file {}: {e}", file.display()))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| format!("the CA file {}: {e}", file.display()))?;
        params = params.add_root_certificate(cert);
    }
    params.build_rustls().map_err(|e| format!("TLS setup: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(port: u16) -> MailConfig {
        MailConfig {
            fromaddr: "bot@example.org".into(),
            relayhost: "127.0.0.1".into(),
            smtp_port: port,
            use_tls: false,
            use_smtps: false,
            smtp_user: None,
            smtp_password: None,
            lookup: None,
            extra_recipients: Vec::new(),
            send_to_interested_users: false,
            extra_headers: Vec::new(),
            dump_mails_to_log: false,
            ca_file: None,
        }
    }

    /// A relay on loopback that takes one connection's mails and tells, for each, how long
    /// after its text began its closing `.` line came.
    async fn relay_timing_mails(
        listener: tokio::net::TcpListener,
        gaps: tokio::sync::mpsc::UnboundedSender<Duration>,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
        let (socket, _) = listener.accept().await?;
        let (read, mut write) = socket.into_split();
        let mut lines = tokio::io::BufReader::new(read);
        write.write_all(b"220 relay\r\n").await?;
        let mut line = String::new();
        loop {
            line.clear();
            if lines.read_line(&mut line).await? == 0 {
                return Ok(());
            }
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            let answer: &[u8] = match verb.as_str() {
                "QUIT" => return write.write_all(b"221 bye\r\n").await,
                "DATA" => {
                    write.write_all(b"354 go on\r\n").await?;
                    let mut began = None;
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await? == 0 {
                            return Ok(());
                        }
                        let now = Instant::now();
                        if line == ".\r\n" {
                            let _ = gaps.send(now - began.unwrap_or(now));
                            break;
                        }
                        began.get_or_insert(now);
                    }
                    b"250 taken\r\n"
                }
                _ => b"250 ok\r\n",
            };
            write.write_all(answer).await?;
        }
    }

    /// A mail's closing line follows its text at once: lettre writes them apart, and with
    /// Nagle's algorithm on the closing line waited for the relay's delayed acknowledgement,
    /// 40 ms a mail.
    #[tokio::test]
    async fn a_mail_is_not_held_back_for_the_relay_to_acknowledge_its_text() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, mut gaps) = tokio::sync::mpsc::unbounded_channel();
        let relay = tokio::spawn(relay_timing_mails(listener, tx));
        let message = Message::builder()
            .from("bot@example.org".parse().unwrap())
            .to("ops@example.org".parse().unwrap())
            .subject("s")
            .body("the build failed\r\n".repeat(100))
            .unwrap();
        let mailer = Mailer::default();
        let config = config(port);
        let mails = 20;
        for _ in 0..mails {
            mailer
                .send(&config, std::path::Path::new("."), None, &message)
                .await
                .unwrap();
        }
        let mut held = 0;
        for _ in 0..mails {
            let gap = gaps.recv().await.expect("the relay got every mail");
            if gap >= Duration::from_millis(30) {
                held += 1;
            }
        }
        // Linux acknowledges the first segments of a connection at once, so a few mails would
        // pass even with Nagle on; most of them would wait.
        assert!(held < mails / 4, "{held} of {mails} mails were held back");
        relay.abort();
    }

    /// A relay that takes the connection and never says a word is given up on, and the mail
    /// is left to be tried again, rather than holding the reporter's deliveries for good.
    #[tokio::test]
    async fn a_relay_that_never_answers_is_given_up_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await
        });
        let message = Message::builder()
            .from("bot@example.org".parse().unwrap())
            .to("ops@example.org".parse().unwrap())
            .subject("s")
            .body(String::from("b"))
            .unwrap();
        let mailer = Mailer::default();
        let limit = Duration::from_millis(200);
        let config = config(port);
        let send = mailer.send_within(limit, &config, std::path::Path::new("."), None, &message);
        let sent = tokio::time::timeout(Duration::from_secs(30), send)
            .await
            .expect("the mail is given up on");
        match sent {
            Err(Failure::Retry(e)) => assert!(e.contains("did not take the mail"), "{e}"),
            other => panic!("{other:?}"),
        }
        silent.abort();
    }
}
