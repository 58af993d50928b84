//! `reporters.MailNotifier`: one mail per event's reports, to the interested users (looked up
//! as the configuration says) and the extra recipients, with patches and logs attached, sent
//! over SMTP (plain, STARTTLS or SMTPS, with authentication) by lettre.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_api::{ApiError, ReadSide};
use kiln_config::{MailConfig, MailLookup, TemplateType, bare_address};
use kiln_core::render::{RenderContext, RenderHooks};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment as MailAttachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, Message};
use serde_json::{Value, json};

use crate::report::{Report, ReportEvent};
use crate::sink::Failure;

/// How long one mail may take to send.
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the stored form of one event's reports: who gets the mail, and what it says.
pub async fn encode(
    config: &MailConfig,
    reports: &[Report],
    read: &dyn ReadSide,
    hooks: &(dyn RenderHooks + Sync),
    title: &str,
) -> Result<Option<Value>, ApiError> {
    let Some(first) = reports.first() else {
        return Ok(None);
    };
    let mut body = String::new();
    for r in reports {
        if let Some(b) = &r.body {
            body.push_str(&b.text());
        }
    }
    if !body.ends_with("\n\n") {
        body.push_str(if body.ends_with('\n') { "\n" } else { "\n\n" });
    }
    let subject = reports
        .iter()
        .find_map(|r| r.subject.clone())
        .unwrap_or_else(|| default_subject(first, title));
    let (to, cc, envelope) = recipients(config, reports, read).await?;
    if envelope.is_empty() {
        tracing::info!(summary = %first.summary, "no recipients for this mail");
        return Ok(None);
    }
    let mut headers = Vec::new();
    for (name, value) in &config.extra_headers {
        let props = if reports.len() == 1 {
            first.properties.clone().unwrap_or_default()
        } else {
            Default::default()
        };
        let rendered = value
            .render_in(&RenderContext {
                props: &props,
                sourcestamps: &[],
                worker: &Default::default(),
                hooks,
            })
            .map(|v| v.render())
            .unwrap_or_else(|e| {
                tracing::warn!(header = %name, error = %e.0, "rendering a mail header");
                String::new()
            });
        headers.push(json!([name, rendered.replace(['\r', '\n'], " ")]));
    }
    let attachments: Vec<Value> = reports
        .iter()
        .flat_map(|r| r.patches.iter().chain(r.logs.iter()))
        .map(|a| json!({"filename": a.filename, "content": a.content}))
        .collect();
    Ok(Some(json!({
        "from": config.fromaddr,
        "to": to,
        "cc": cc,
        "envelope": envelope,
        "subject": subject.replace(['\r', '\n'], " "),
        "body": body,
        "html": first.kind == TemplateType::Html,
        "headers": headers,
        "attachments": attachments,
    })))
}

/// `Buildbot success in kiln on pass`: the subject when no formatter gave one.
fn default_subject(report: &Report, title: &str) -> String {
    let result = report
        .results
        .and_then(kiln_core::Results::from_code)
        .map_or("", |r| r.name());
    let builder = report
        .builds
        .first()
        .and_then(|b| b["builder"]["name"].as_str())
        .unwrap_or("whole buildset");
    format!("Buildbot {result} in {title} on {builder}")
}

/// To, CC and the envelope's recipients, as Buildbot chooses them: the interested users (looked
/// up) in To and the extra recipients in CC, or the extra recipients alone in To. A missing
/// worker's addresses go in the envelope only.
async fn recipients(
    config: &MailConfig,
    reports: &[Report],
    read: &dyn ReadSide,
) -> Result<(Vec<String>, Vec<String>, Vec<String>), ApiError> {
    let mut envelope: Vec<String> = Vec::new();
    let add = |envelope: &mut Vec<String>, a: &str| {
        if let Some(bare) = bare_address(a)
            && !envelope.iter().any(|e| e == bare)
        {
            envelope.push(bare.to_string());
        }
    };
    if reports
        .iter()
        .all(|r| r.event == ReportEvent::WorkerMissing)
    {
        for r in reports {
            for a in &r.users {
                add(&mut envelope, a);
            }
        }
        return Ok((Vec::new(), Vec::new(), envelope));
    }
    let mut interested: Vec<String> = Vec::new();
    if config.send_to_interested_users {
        for r in reports {
            for user in &r.users {
                match lookup(config, user, read).await? {
                    Some(a) if !interested.contains(&a) => interested.push(a),
                    Some(_) => {}
                    None => tracing::info!(user = %user, "INVALID EMAIL: no address for this user"),
                }
            }
        }
    }
    let (mut to, mut cc) = if interested.is_empty() {
        (config.extra_recipients.clone(), Vec::new())
    } else {
        (interested, config.extra_recipients.clone())
    };
    to.sort();
    cc.sort();
    for a in to.iter().chain(cc.iter()) {
        add(&mut envelope, a);
    }
    Ok((to, cc, envelope))
}

/// A blamelist entry's address: through the domain (`bob` → `bob@example.org`) or the users
/// table, or the entry itself when it is an address.
async fn lookup(
    config: &MailConfig,
    user: &str,
    read: &dyn ReadSide,
) -> Result<Option<String>, ApiError> {
    let found = match &config.lookup {
        Some(MailLookup::Domain(domain)) if !user.contains('@') => {
            Some(format!("{}@{domain}", user.trim()))
        }
        Some(MailLookup::Users) => match read.db().find_user(user).await? {
            Some(u) => u.attributes.get("email").cloned(),
            None => None,
        },
        _ => None,
    };
    let candidate = found.unwrap_or_else(|| user.to_string());
    Ok(bare_address(&candidate).map(|_| candidate.clone()))
}

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
    Wrapped(TlsParameters),
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
    async fn send(
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
    let mut conn = connect(setup).await.map_err(failure)?;
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

/// Sends a stored mail.
pub async fn deliver(
    config: &MailConfig,
    mailer: &Mailer,
    basedir: &std::path::Path,
    credentials: Option<(String, String)>,
    payload: &Value,
) -> Result<(), Failure> {
    let message = build_message(payload).map_err(Failure::Permanent)?;
    if config.dump_mails_to_log {
        tracing::info!(mail = %String::from_utf8_lossy(&message.formatted()), "mail");
    }
    mailer.send(config, basedir, credentials, &message).await
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
async fn connect(setup: &Setup) -> Result<AsyncSmtpConnection, lettre::transport::smtp::Error> {
    let hello = ClientId::default();
    let wrapped = match &setup.security {
        Security::Wrapped(params) => Some(params.clone()),
        Security::Plain | Security::StartTls(_) => None,
    };
    let mut conn = AsyncSmtpConnection::connect_tokio1(
        (setup.host.as_str(), setup.port),
        Some(SEND_TIMEOUT),
        &hello,
        wrapped,
        None,
    )
    .await?;
    if let Security::StartTls(params) = &setup.security {
        conn.starttls(params.clone(), &hello).await?;
    }
    if let Some(credentials) = &setup.credentials {
        conn.auth(&[Mechanism::Login, Mechanism::Plain], credentials)
            .await?;
    }
    Ok(conn)
}

fn setup(
    config: &MailConfig,
    basedir: &std::path::Path,
    credentials: Option<(String, String)>,
) -> Result<Setup, String> {
    // As in Buildbot: SMTPS does not check the server's certificate; STARTTLS, which useTls and
    // a login ask for, checks it against the Mozilla roots, or the file SSL_CERT_FILE names.
    let security = if config.use_smtps {
        let params = TlsParameters::builder(config.relayhost.clone())
            .dangerous_accept_invalid_certs(true)
            .dangerous_accept_invalid_hostnames(true)
            .build_rustls()
            .map_err(|e| format!("TLS setup: {e}"))?;
        Security::Wrapped(params)
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

/// The mail of a stored payload.
fn build_message(p: &Value) -> Result<Message, String> {
    let strings = |key: &str| -> Vec<String> {
        p[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let from: Mailbox = p["from"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("fromaddr: {e}"))?;
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(p["subject"].as_str().unwrap_or_default());
    for h in p["headers"].as_array().into_iter().flatten() {
        let (Some(name), Some(value)) = (h[0].as_str(), h[1].as_str()) else {
            continue;
        };
        let name = HeaderName::new_from_ascii(name.to_string())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        builder = builder.raw_header(HeaderValue::new(name, value.to_string()));
    }
    for a in strings("to") {
        builder = builder.to(a.parse().map_err(|e| format!("recipient {a}: {e}"))?);
    }
    for a in strings("cc") {
        builder = builder.cc(a.parse().map_err(|e| format!("recipient {a}: {e}"))?);
    }
    let rcpt: Vec<Address> = strings("envelope")
        .iter()
        .map(|a| a.parse().map_err(|e| format!("recipient {a}: {e}")))
        .collect::<Result<_, String>>()?;
    let envelope = lettre::address::Envelope::new(Some(from.email.clone()), rcpt)
        .map_err(|e| format!("the mail's envelope: {e}"))?;
    builder = builder.envelope(envelope);
    let kind = if p["html"].as_bool().unwrap_or(false) {
        ContentType::TEXT_HTML
    } else {
        ContentType::TEXT_PLAIN
    };
    let body = p["body"].as_str().unwrap_or_default().to_string();
    let attachments = p["attachments"].as_array().cloned().unwrap_or_default();
    let message = if attachments.is_empty() {
        builder.singlepart(SinglePart::builder().header(kind).body(body))
    } else {
        let mut parts =
            MultiPart::mixed().singlepart(SinglePart::builder().header(kind).body(body));
        for a in &attachments {
            let filename = a["filename"].as_str().unwrap_or("attachment").to_string();
            let content = a["content"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec();
            parts = parts
                .singlepart(MailAttachment::new(filename).body(content, ContentType::TEXT_PLAIN));
        }
        builder.multipart(parts)
    };
    message.map_err(|e| format!("building the mail: {e}"))
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
