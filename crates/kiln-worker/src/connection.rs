//! The connection to the master: authentication, the request/response loop and reconnection.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use kiln_proto::{Message, Op, Value, decode, encode};
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::commands::{self, Ctx, Settings};
use crate::config::WorkerConfig;

/// What the worker logs once it is connected; `kiln-worker start` waits for it.
pub const CONNECTED: &str = "connected to the master";

/// The first wait after a failed connection attempt; it doubles up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Frames larger than this are refused; a master never needs more than a file-transfer block.
const MAX_FRAME: usize = 64 << 20;
/// Outgoing frames queued before a sender waits for the socket.
const OUTGOING_QUEUE: usize = 256;

/// Connects to the master and serves it, reconnecting with backoff, until the master asks the worker
/// to shut down or `max_retries` attempts in a row have failed.
pub async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    // Made once, so that an unreadable authorities file stops the worker at once.
    let tls = match config.use_tls {
        true => Some(crate::tls::connector(&config)?),
        false => None,
    };
    let mut backoff = INITIAL_BACKOFF;
    let mut failures = 0u32;
    loop {
        match serve_once(&config, tls.as_ref()).await {
            Ok(Ending::Shutdown) => {
                tracing::info!("master asked for shutdown");
                return Ok(());
            }
            Ok(Ending::Closed) => {
                tracing::warn!("connection to master lost; reconnecting");
                backoff = INITIAL_BACKOFF;
                failures = 0;
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(error = %format!("{error:#}"), "connection to master failed");
                if config.max_retries.is_some_and(|max| failures > max) {
                    anyhow::bail!("giving up after {failures} failed attempts: {error:#}");
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Ending {
    Shutdown,
    Closed,
}

/// Where the answer to a request is delivered.
type Reply = oneshot::Sender<Result<Value, String>>;

/// The answer to a request, once the master sends it.
pub type Answer = oneshot::Receiver<Result<Value, String>>;

/// The sending half of a connection, shared by every running command.
#[derive(Clone)]
pub struct Link {
    frames: mpsc::Sender<Vec<u8>>,
    next_seq: Arc<AtomicI64>,
    pending: Arc<Mutex<HashMap<i64, Reply>>>,
}

impl Link {
    /// Sends a request and waits for the master's answer.
    pub async fn request(&self, op: Op) -> Result<Value, String> {
        let answer = self.send(op).await?;
        answer
            .await
            .unwrap_or_else(|_| Err("connection lost".into()))
    }

    /// Sends a request now, in order with every other message, and returns where its answer will
    /// arrive, so that a caller can keep several requests in flight.
    pub async fn send(&self, op: Op) -> Result<Answer, String> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().await.insert(seq, tx);
        if self
            .frames
            .send(encode(&Message::request(seq, op)))
            .await
            .is_err()
        {
            self.pending.lock().await.remove(&seq);
            return Err("connection lost".into());
        }
        Ok(rx)
    }

    async fn respond(&self, message: Message) {
        // A closed connection drops the answer; the master will not wait for it.
        let _ = self.frames.send(encode(&message)).await;
    }
}

async fn serve_once(
    config: &WorkerConfig,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> anyhow::Result<Ending> {
    let address = (config.master_host.as_str(), config.master_port);
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {}:{}", address.0, address.1))?;
    // Each request and answer is small and waits on the other side: Nagle's algorithm would
    // hold them back.
    tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
    let Some(connector) = tls else {
        let url = format!("ws://{}:{}/", config.master_host, config.master_port);
        return serve_on(config, &url, tcp).await;
    };
    let name = crate::tls::server_name(&config.master_host)?;
    let stream = connector.connect(name, tcp).await.with_context(|| {
        format!(
            "TLS with the master at {}:{} (is its worker port `ssl:`?)",
            address.0, address.1
        )
    })?;
    let url = format!("wss://{}:{}/", config.master_host, config.master_port);
    serve_on(config, &url, stream).await
}

/// Opens the WebSocket on a connected `stream` (TCP, or TLS over it) and serves the master on it.
async fn serve_on<S>(config: &WorkerConfig, url: &str, stream: S) -> anyhow::Result<Ending>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut request = url
        .into_client_request()
        .context("building the upgrade request")?;
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", config.name, config.password));
    request.headers_mut().insert(
        "Authorization",
        format!("Basic {token}")
            .parse()
            .context("worker name or password is not a valid header")?,
    );
    let ws_config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let (socket, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(ws_config))
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(response) if response.status() == 401 => {
                anyhow::anyhow!(
                    "master refused worker {:?}: wrong name or password (401)",
                    config.name
                )
            }
            other => anyhow::anyhow!("connecting to {url}: {other}"),
        })?;
    tracing::info!(master = %url, "{CONNECTED}");
    let (mut sink, mut stream) = socket.split();
    let (frames_tx, mut frames_rx) = mpsc::channel::<Vec<u8>>(OUTGOING_QUEUE);
    // The writer runs in this task, not a spawned one, so that dropping this future (a stop, or a
    // lost connection) closes the socket at once.
    let writer = async move {
        while let Some(frame) = frames_rx.recv().await {
            if sink
                .send(tungstenite::Message::Binary(frame.into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    };
    let link = Link {
        frames: frames_tx,
        next_seq: Arc::new(AtomicI64::new(0)),
        pending: Arc::new(Mutex::new(HashMap::new())),
    };
    let mut session = Session {
        config: config.clone(),
        link: link.clone(),
        settings: Settings::default(),
        running: HashMap::new(),
    };
    let reader = async {
        while let Some(frame) = stream.next().await {
            let frame = match frame {
                Ok(tungstenite::Message::Binary(b)) => b,
                Ok(tungstenite::Message::Close(_)) => break,
                Ok(tungstenite::Message::Text(_)) => {
                    tracing::warn!("ignoring a text frame from the master");
                    continue;
                }
                Ok(_) => continue,
                Err(error) => {
                    tracing::warn!(%error, "reading from master");
                    break;
                }
            };
            match decode(&frame) {
                Ok(Message::Response {
                    seq,
                    result,
                    is_exception,
                }) => {
                    if let Some(tx) = link.pending.lock().await.remove(&seq) {
                        let _ = tx.send(if is_exception {
                            Err(value_text(&result))
                        } else {
                            Ok(result)
                        });
                    }
                }
                Ok(Message::Request { seq, op }) => {
                    if let Some(end) = session.handle(seq, op).await {
                        return end;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "dropping a malformed message from the master")
                }
            }
        }
        Ending::Closed
    };
    let ending = tokio::select! {
        ending = reader => ending,
        () = writer => Ending::Closed,
    };
    // Interrupt whatever still runs: its output has nowhere to go.
    for (_, tx) in session.running.drain() {
        let _ = tx.send(Some("connection to master lost".into()));
    }
    link.pending.lock().await.clear();
    Ok(ending)
}

fn value_text(v: &Value) -> String {
    v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string())
}

struct Session {
    config: WorkerConfig,
    link: Link,
    settings: Settings,
    running: HashMap<String, watch::Sender<Option<String>>>,
}

impl Session {
    /// Answers one request from the master. Returns how the connection ends, if it does.
    async fn handle(&mut self, seq: i64, op: Op) -> Option<Ending> {
        self.running.retain(|_, tx| !tx.is_closed());
        let reply = match op {
            Op::Print { message } => {
                tracing::info!("message from master: {message}");
                Ok(Value::Nil)
            }
            Op::Keepalive => Ok(Value::Nil),
            Op::GetWorkerInfo => Ok(commands::worker_info(&self.config.basedir)),
            Op::SetWorkerSettings { args } => Settings::from_value(args).map(|s| {
                self.settings = s;
                Value::Nil
            }),
            Op::StartCommand {
                command_id,
                command_name,
                args,
                builder_name: _,
            } => self.start(command_id, command_name, args),
            Op::InterruptCommand { command_id, why } => match self.running.get(&command_id) {
                Some(tx) => {
                    let _ = tx.send(Some(why));
                    Ok(Value::Nil)
                }
                // The command may have just finished; Buildbot's worker ignores this too.
                None => Ok(Value::Nil),
            },
            Op::Shutdown => {
                self.link.respond(Message::response(seq, Value::Nil)).await;
                return Some(Ending::Shutdown);
            }
            other => Err(format!("Command {} does not exist.", other.name())),
        };
        let message = match reply {
            Ok(v) => Message::response(seq, v),
            Err(why) => Message::error(seq, why),
        };
        self.link.respond(message).await;
        None
    }

    fn start(&mut self, command_id: String, name: String, args: Value) -> Result<Value, String> {
        if self.running.contains_key(&command_id) {
            return Err(format!("command id {command_id:?} is already running"));
        }
        let command = commands::prepare(&name, args).map_err(|e| e.to_string())?;
        let (tx, rx) = watch::channel(None);
        self.running.insert(command_id.clone(), tx);
        let ctx = Ctx {
            link: self.link.clone(),
            command_id,
            basedir: self.config.basedir.clone(),
            settings: self.settings.clone(),
            interrupt: rx,
        };
        tokio::spawn(commands::run(command, ctx));
        Ok(Value::Nil)
    }
}
