//! `reporters.IRC`: a bot that joins channels, announces builds to the channels and people who
//! asked (`notify`), and answers Buildbot's commands (`status`, `last`, `force build`, …).
//!
//! Announcements are decided from the durable record like every report and stored in the
//! outbox; delivering one writes it to the live connection, so what happens while the bot is
//! disconnected is announced when it is back. The connection reconnects after `lostDelay` (or
//! `failedDelay` when connecting failed), and answers the server's pings.

mod commands;
pub mod line;
pub mod words;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_api::Services;
use kiln_config::IrcConfig;
use kiln_core::{BuildId, Results};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::generators::Trigger;
use crate::hooks::Hooks;
use crate::sink::Failure;
use line::Line;

/// How long the server may stay silent before the bot pings it, and then before it gives the
/// connection up.
const IDLE: Duration = Duration::from_secs(180);
/// Lines waiting to be written to the server.
const OUTGOING: usize = 1024;

/// A channel or a person the bot talks to, and what they asked to hear.
#[derive(Debug, Clone, Default)]
struct Target {
    events: BTreeSet<String>,
    muted: bool,
}

/// What the bot knows while it runs.
#[derive(Debug, Default)]
struct State {
    /// The nick the server knows the bot by.
    nick: String,
    /// By lower-cased channel name or nick.
    targets: BTreeMap<String, Target>,
    /// Each channel's operators, from NAMES and MODE.
    ops: BTreeMap<String, BTreeSet<String>>,
    /// Builds someone asked to `watch`, and where to announce their end.
    watching: Vec<(BuildId, String)>,
}

/// The class under which the bot keeps what channels and people asked to hear.
const STATE_CLASS: &str = "kiln.reporters.IRC";
const NOTIFY_EVENTS: &str = "notify_events";

/// The bot.
pub struct Bot {
    /// The reporter's name, under which its state is kept.
    name: String,
    config: IrcConfig,
    services: Services,
    hooks: Hooks,
    state: Mutex<State>,
    /// The live connection's outgoing lines, while registered.
    link: Mutex<Option<mpsc::Sender<String>>>,
}

fn is_channel(target: &str) -> bool {
    target.starts_with(['#', '&', '+', '!'])
}

impl Bot {
    pub fn new(name: &str, config: IrcConfig, services: Services) -> Arc<Bot> {
        let events: BTreeSet<String> = config.notify_events.iter().cloned().collect();
        let mut state = State {
            nick: config.nick.clone(),
            ..State::default()
        };
        for name in config
            .channels
            .iter()
            .map(|(c, _)| c)
            .chain(config.pm_to_nicks.iter())
        {
            state.targets.insert(
                name.to_lowercase(),
                Target {
                    events: events.clone(),
                    muted: false,
                },
            );
        }
        Arc::new(Bot {
            name: name.to_string(),
            hooks: Hooks::new(services.read.clone()),
            config,
            services,
            state: Mutex::new(state),
            link: Mutex::new(None),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Connects, and connects again whenever the connection is lost, until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        self.load_notify_events().await;
        loop {
            let address = (self.config.host.as_str(), self.config.port);
            let delay = match tokio::net::TcpStream::connect(address).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let outcome = if self.config.use_ssl {
                        let ca = self
                            .config
                            .ca_file
                            .as_ref()
                            .map(|f| self.services.read.basedir().join(f));
                        match tls(&self.config.host, ca, tcp).await {
                            Ok(s) => self.session(s).await,
                            Err(e) => Err(e),
                        }
                    } else {
                        self.session(tcp).await
                    };
                    *self.link.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    if let Err(error) = outcome {
                        tracing::warn!(host = %self.config.host, %error, "IRC connection lost");
                    }
                    self.config.lost_delay
                }
                Err(error) => {
                    tracing::warn!(host = %self.config.host, port = self.config.port, %error, "connecting to IRC");
                    self.config.failed_delay
                }
            };
            tokio::time::sleep(Duration::from_secs(delay.max(1))).await;
        }
    }

    /// One connection: registration, then the server's lines until it closes.
    async fn session<S: AsyncRead + AsyncWrite + Send + 'static>(
        self: &Arc<Self>,
        stream: S,
    ) -> Result<(), String> {
        let (reader, mut writer) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::channel::<String>(OUTGOING);
        let write = tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                let mut bytes = line.into_bytes();
                bytes.extend_from_slice(b"\r\n");
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let _stop_writer = AbortOnDrop(write);
        let nick = self.config.nick.clone();
        self.state().nick = nick.clone();
        let send = |line: String| {
            let tx = tx.clone();
            async move {
                tx.send(line)
                    .await
                    .map_err(|_| "the connection is closed".to_string())
            }
        };
        send(format!("NICK {nick}")).await?;
        send(format!("USER {nick} 0 * :kiln")).await?;
        let mut reader = tokio::io::BufReader::new(reader);
        let mut buf = Vec::new();
        let mut pinged = false;
        loop {
            buf.clear();
            let mut limited = (&mut reader).take(line::MAX_LINE as u64);
            let read = limited.read_until(b'\n', &mut buf);
            let n = match tokio::time::timeout(IDLE, read).await {
                Ok(Ok(0)) => return Err("the server closed the connection".into()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) if !pinged => {
                    pinged = true;
                    send("PING :kiln".into()).await?;
                    continue;
                }
                Err(_) => return Err("the server stopped answering".into()),
            };
            pinged = false;
            let text = String::from_utf8_lossy(&buf[..n]);
            let Some(l) = Line::parse(&text) else {
                continue;
            };
            self.on_line(&l, &tx).await?;
        }
    }

    async fn on_line(self: &Arc<Self>, l: &Line, tx: &mpsc::Sender<String>) -> Result<(), String> {
        let send = |line: String| async move {
            tx.send(line)
                .await
                .map_err(|_| "the connection is closed".to_string())
        };
        let param = |i: usize| l.params.get(i).map(String::as_str).unwrap_or_default();
        match l.command.as_str() {
            "PING" => send(format!("PONG :{}", param(0))).await?,
            "001" => {
                if !param(0).is_empty() {
                    self.state().nick = param(0).to_string();
                }
                if let Some(p) = &self.config.password {
                    match self.hooks.render(p) {
                        Ok(pw) => send(format!("PRIVMSG NickServ :IDENTIFY {pw}")).await?,
                        Err(e) => tracing::warn!(error = %e, "rendering the IRC password"),
                    }
                }
                for (channel, key) in &self.config.channels {
                    match key {
                        Some(k) => send(format!("JOIN {channel} {k}")).await?,
                        None => send(format!("JOIN {channel}")).await?,
                    }
                }
                *self.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx.clone());
                tracing::info!(host = %self.config.host, nick = %self.state().nick, "on IRC");
            }
            "433" => {
                // The nick is taken: try it with a `_` more, as Buildbot's bot does.
                let nick = format!("{}_", self.state().nick);
                self.state().nick = nick.clone();
                send(format!("NICK {nick}")).await?;
            }
            "353" => {
                let channel = param(2).to_lowercase();
                let mut state = self.state();
                let ops = state.ops.entry(channel).or_default();
                for name in param(3).split_whitespace() {
                    if let Some(op) = name.strip_prefix(['@', '&', '~', '%']) {
                        ops.insert(op.to_lowercase());
                    }
                }
            }
            "MODE" if is_channel(param(0)) => {
                let channel = param(0).to_lowercase();
                let mut adding = true;
                let mut args = l.params.iter().skip(2);
                let mut state = self.state();
                let ops = state.ops.entry(channel).or_default();
                for c in param(1).chars() {
                    match c {
                        '+' => adding = true,
                        '-' => adding = false,
                        'o' | 'h' => {
                            if let Some(who) = args.next() {
                                if adding {
                                    ops.insert(who.to_lowercase());
                                } else {
                                    ops.remove(&who.to_lowercase());
                                }
                            }
                        }
                        'v' | 'b' | 'k' | 'l' | 'e' | 'I' => {
                            args.next();
                        }
                        _ => {}
                    }
                }
            }
            "PRIVMSG" => {
                let (Some(who), target, text) = (l.nick(), param(0), param(1)) else {
                    return Ok(());
                };
                if text.starts_with('\x01') {
                    return Ok(());
                }
                let me = self.state().nick.clone();
                let (reply_to, command) = if is_channel(target) {
                    let lower = text.to_lowercase();
                    let me_lower = me.to_lowercase();
                    let Some(rest) = lower
                        .strip_prefix(&me_lower)
                        .filter(|r| r.starts_with([':', ',']))
                    else {
                        return Ok(());
                    };
                    let start = text.len() - rest.len() + 1;
                    (target.to_string(), text[start..].trim().to_string())
                } else {
                    (who.to_string(), text.trim().to_string())
                };
                let replies = self.command(who, &reply_to, &command).await;
                for reply in replies {
                    for out in line::messages(self.verb(&reply_to), &reply_to, &reply) {
                        send(out).await?;
                    }
                }
            }
            "ERROR" => return Err(format!("the server said: {}", param(0))),
            _ => {}
        }
        Ok(())
    }

    /// Adds the events each channel and person asked for before a restart, as `notify on`
    /// and `notify off` saved them, to those the configuration names.
    async fn load_notify_events(&self) {
        let db = self.services.read.db();
        let saved = async {
            let Some(id) = db.lookup_object_id(&self.name, STATE_CLASS).await? else {
                return Ok(None);
            };
            db.get_state(id, NOTIFY_EVENTS).await
        };
        let saved: BTreeMap<String, BTreeSet<String>> = match saved.await {
            Ok(Some(text)) => match serde_json::from_str(&text) {
                Ok(map) => map,
                Err(error) => {
                    tracing::warn!(reporter = %self.name, %error, "the saved IRC notifications are unreadable");
                    return;
                }
            },
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(reporter = %self.name, %error, "reading the saved IRC notifications");
                return;
            }
        };
        let mut state = self.state();
        for (target, events) in saved {
            state
                .targets
                .entry(target)
                .or_default()
                .events
                .extend(events);
        }
    }

    /// Saves what each channel and person asked to hear, so that a restart keeps it.
    pub(crate) async fn save_notify_events(&self) {
        let saved: BTreeMap<String, BTreeSet<String>> = self
            .state()
            .targets
            .iter()
            .map(|(name, t)| (name.clone(), t.events.clone()))
            .collect();
        let text = serde_json::to_string(&saved).unwrap_or_default();
        if let Err(error) = self
            .services
            .outbox
            .save_state(&self.name, STATE_CLASS, NOTIFY_EVENTS, &text)
            .await
        {
            tracing::warn!(reporter = %self.name, %error, "saving the IRC notifications");
        }
    }

    /// NOTICE in channels with `noticeOnChannel`, PRIVMSG otherwise.
    fn verb(&self, target: &str) -> &'static str {
        if self.config.notice_on_channel && is_channel(target) {
            "NOTICE"
        } else {
            "PRIVMSG"
        }
    }

    /// The announcements of one event: (target, text) for each channel or person that asked
    /// for it (or watches the build), unless muted.
    pub async fn announcements(
        &self,
        trigger: Trigger,
        builds: &crate::cache::BuildCache,
        position: i64,
    ) -> Result<Vec<(String, String)>, String> {
        let (id, started) = match trigger {
            Trigger::BuildNew(id) => (id, true),
            Trigger::BuildFinished(id) => (id, false),
            _ => return Ok(Vec::new()),
        };
        // Only those who asked are told that a build started: without them there is nothing
        // to read.
        if started
            && !self
                .state()
                .targets
                .values()
                .any(|t| !t.muted && t.events.contains("started"))
        {
            return Ok(Vec::new());
        }
        let read = &*self.services.read;
        let Some(build) = builds
            .load(read, position, id, crate::data::Needs::default())
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(Vec::new());
        };
        if let Some(tags) = &self.config.tags
            && !tags.iter().any(|t| build.builder.tags.contains(t))
        {
            return Ok(Vec::new());
        }
        let link = words::build_link(build.row.number, &build.url);
        let (events, text) = if started {
            (
                vec!["started".to_string()],
                format!("Build {link} of `{}` started.", build.builder.name),
            )
        } else {
            let Some(r) = build.results().and_then(Results::from_code) else {
                return Ok(Vec::new());
            };
            // As Buildbot's bot does, the build compared with is the one numbered just before;
            // it is read only when someone asked for an event that compares.
            let previous = if self.anyone_compares() {
                self.numbered_before(&build).await?
            } else {
                None
            };
            (
                words::finished_events(r, previous),
                words::finished_line(
                    build.row.number,
                    &build.url,
                    &build.builder.name,
                    r,
                    &build.row.state_string,
                    self.config.use_colors,
                ),
            )
        };
        let mut state = self.state();
        let mut out: Vec<(String, String)> = Vec::new();
        for (name, t) in &state.targets {
            if !t.muted && events.iter().any(|e| t.events.contains(e)) {
                out.push((self.display_name(name), text.clone()));
            }
        }
        if !started {
            let watchers: Vec<String> = state
                .watching
                .iter()
                .filter(|(b, _)| *b == id)
                .map(|(_, t)| t.clone())
                .collect();
            state.watching.retain(|(b, _)| *b != id);
            for w in watchers {
                if !out.iter().any(|(t, _)| t.eq_ignore_ascii_case(&w)) {
                    out.push((w, text.clone()));
                }
            }
        }
        Ok(out)
    }

    /// Whether a channel or person asked for an event that compares a build with the one before
    /// (`problem`, `recovery`, `better`, `worse`, or a transition such as `failureToSuccess`).
    fn anyone_compares(&self) -> bool {
        self.state().targets.values().any(|t| {
            t.events.iter().any(|e| {
                matches!(e.as_str(), "problem" | "recovery" | "better" | "worse")
                    || e.contains("To")
            })
        })
    }

    /// The result of the build of the same builder numbered just before `build`.
    async fn numbered_before(
        &self,
        build: &crate::data::BuildInfo,
    ) -> Result<Option<Results>, String> {
        Ok(self
            .services
            .read
            .db()
            .list_builds(
                &kiln_db::listing::Page::eq(
                    "builderid",
                    kiln_db::listing::SqlValue::Int(build.row.builderid.0),
                )
                .and(
                    "number",
                    kiln_db::listing::FilterOp::Eq,
                    kiln_db::listing::SqlValue::Int(build.row.number - 1),
                ),
            )
            .await
            .map_err(|e| e.to_string())?
            .0
            .first()
            .and_then(|b| b.results)
            .and_then(Results::from_code))
    }

    /// Where a worker's absence or return is said: every channel and person that asked for
    /// `worker`, unless muted.
    pub fn worker_announcement(&self, text: &str) -> Vec<(String, String)> {
        let state = self.state();
        state
            .targets
            .iter()
            .filter(|(_, t)| !t.muted && t.events.contains("worker"))
            .map(|(name, _)| (self.display_name(name), text.to_string()))
            .collect()
    }

    /// A target's name as configured (channels keep their case).
    fn display_name(&self, lower: &str) -> String {
        self.config
            .channels
            .iter()
            .map(|(c, _)| c)
            .chain(self.config.pm_to_nicks.iter())
            .find(|n| n.to_lowercase() == lower)
            .cloned()
            .unwrap_or_else(|| lower.to_string())
    }

    /// Writes stored announcements to the live connection.
    pub async fn deliver(&self, payload: &serde_json::Value) -> Result<(), Failure> {
        let Some(tx) = self.link.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Err(Failure::Retry(format!(
                "not connected to IRC at {}:{}",
                self.config.host, self.config.port
            )));
        };
        for pair in payload["lines"].as_array().into_iter().flatten() {
            let (Some(target), Some(text)) = (pair[0].as_str(), pair[1].as_str()) else {
                continue;
            };
            for out in line::messages(self.verb(target), target, text) {
                tx.send(out)
                    .await
                    .map_err(|_| Failure::Retry("the IRC connection closed".into()))?;
            }
        }
        Ok(())
    }
}

/// Aborts a task when dropped: the connection's writer ends with its session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// TLS to the IRC server (`useSSL`), its certificate checked against the Mozilla roots.
async fn tls(
    host: &str,
    ca_file: Option<std::path::PathBuf>,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let ca_file = ca_file.or_else(|| std::env::var_os("SSL_CERT_FILE").map(Into::into));
    if let Some(file) = ca_file {
        let pem = std::fs::read(&file)
            .map_err(|e| format!("reading the CA file {}: {e}", file.display()))?;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("the CA file {}: {e}", file.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("the CA file {}: {e}", file.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is not a server name: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))
}
