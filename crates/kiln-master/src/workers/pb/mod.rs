//! The master's side of Perspective Broker, the protocol the stock `buildbot-worker` speaks by
//! default: the dialect and version exchange, the challenge-response login, and Buildbot's calls
//! on remote objects, translated to and from the operations the rest of the master uses.
//!
//! A PB connection is served by one task that owns the whole conversation: the objects the worker
//! may call (the login challenger, the worker's avatar, one object per running command and one per
//! transfer), the calls the master is waiting on, and the worker's own objects (its bot, the
//! "mind", and one object per builder). The rest of the master sees an ordinary [`Connection`].

mod arguments;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kiln_api::credentials::same_secret;
use kiln_proto::pb::{self, Decoder, Failure, Jelly, Pb, Sexp, Target};
use kiln_proto::{Message, Op, Value};
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::master::Master;
use crate::workers::connection::{Connection, Outgoing, Protocol};
use crate::workers::port::{Protocols, foreign_protocol, refuse};
use arguments::Transfer;

/// Messages queued for the socket before the connection's task waits.
const OUTGOING_QUEUE: usize = 256;
/// How long the master gives its last messages to leave before it drops a closing connection.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// The most objects of the master's a worker may hold at once, as Twisted's own limit.
const MAX_OBJECTS: usize = 1024;
/// Bytes read from the socket at once.
const READ_BUFFER: usize = 16 << 10;

/// Twisted's class for a refused login: the stock worker retries after this one, and stops after
/// any other failure.
const UNAUTHORIZED: &str = "twisted.cred.error.UnauthorizedLogin";

/// What the master owns that the worker may call, by the id the worker knows it by.
#[derive(Debug, Clone)]
enum Object {
    Challenger,
    Avatar,
    Command(String),
    Transfer { command: String, kind: Transfer },
}

/// What to do with the worker's answer to one of the master's calls.
enum Awaiting {
    /// Hand it to the rest of the master, which asked with this sequence number.
    Request(i64),
    /// Keep the builder objects, then tell the master (this sequence number) it is done.
    Builders(i64),
}

/// Where the login stands.
enum Login {
    /// The worker has not chosen its dialect yet.
    Dialect,
    /// The dialect is chosen; `login` is expected.
    Anonymous,
    /// The challenge is sent; `respond` is expected.
    Challenged {
        name: String,
        challenge: [u8; 16],
    },
    /// The login was refused; another on the same connection is not heard, so that a client
    /// cannot try passwords one after the other without reconnecting.
    Refused,
    /// The worker proved who it is; its `respond` (call `id`) is answered once it is attached,
    /// as Buildbot answers it.
    Attaching {
        id: i64,
    },
    Done,
}

/// Why a connection ends early.
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("{0}")]
    Protocol(String),
    #[error("the master closed the connection: {0}")]
    Closed(String),
}

struct Session {
    master: Arc<Master>,
    peer: SocketAddr,
    wire: mpsc::Sender<Vec<u8>>,
    login: Login,
    conn: Option<Arc<Connection>>,
    handshake: Option<tokio::task::JoinHandle<()>>,
    next_call: i64,
    awaiting: HashMap<i64, Awaiting>,
    next_object: u64,
    objects: HashMap<u64, Object>,
    /// The worker's bot, which takes the bot-level calls.
    mind: u64,
    /// The worker's object for each builder it serves.
    builders: HashMap<String, u64>,
    /// The builders (and their directories) the worker was last given.
    builder_list: Vec<(String, String)>,
    /// The builder object each running command was started on, for its interrupt.
    command_builders: HashMap<String, u64>,
}

/// Serves one PB connection until it ends; `protocols` are those of its port, for the message
/// that names what a client spoke instead.
pub async fn serve<IO>(
    master: Arc<Master>,
    io: IO,
    peer: SocketAddr,
    port: u16,
    protocols: Protocols,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(io);
    let (wire, wire_rx) = mpsc::channel(OUTGOING_QUEUE);
    let writer = tokio::spawn(write_bytes(writer, wire_rx));
    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(OUTGOING_QUEUE);
    let mut session = Session {
        master: master.clone(),
        peer,
        wire,
        login: Login::Dialect,
        conn: None,
        handshake: None,
        next_call: 1,
        awaiting: HashMap::new(),
        next_object: 1,
        objects: HashMap::new(),
        mind: 0,
        builders: HashMap::new(),
        builder_list: Vec::new(),
        command_builders: HashMap::new(),
    };
    let _ = session.wire.send(pb::dialect_offer()).await;
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; READ_BUFFER];
    let deadline = tokio::time::sleep(master.handshake_timeout);
    let mut deadline = std::pin::pin!(deadline);
    let outcome: Result<(), Ended> = loop {
        let attaching = matches!(session.login, Login::Attaching { .. });
        let logged_in = session.conn.is_some();
        let conn = session.conn.clone();
        tokio::select! {
            // The master's messages first: a close with its reason comes before the closing.
            biased;
            out = out_rx.recv(), if logged_in => match out {
                Some(Outgoing::Message(Message::Request { seq, op })) => session.request(seq, op).await,
                // A PB worker's calls are answered here, not by the rest of the master.
                Some(Outgoing::Message(Message::Response { .. })) => {}
                Some(Outgoing::Close(why)) => {
                    session.refuse_pending_login(&why).await;
                    break Err(Ended::Closed(why));
                }
                None => break Ok(()),
            },
            read = reader.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break Ok(()),
                    Ok(n) => n,
                };
                if matches!(session.login, Login::Dialect)
                    && let Some(what) = foreign_protocol(&buf[..n])
                {
                    refuse(peer, port, protocols, what);
                    break Ok(());
                }
                decoder.feed(&buf[..n]);
                if let Err(e) = session.read_all(&mut decoder, &out_tx).await {
                    break Err(e);
                }
            }
            _ = async { conn.as_ref().expect("logged in").attached().await }, if attaching => {
                session.finish_login().await;
            }
            _ = async { conn.as_ref().expect("logged in").closed().await }, if logged_in => break Ok(()),
            _ = &mut deadline, if !matches!(session.login, Login::Done) => {
                break Err(Ended::Protocol(format!(
                    "login not finished within {:?}",
                    master.handshake_timeout
                )));
            }
        }
    };
    let who = session
        .conn
        .as_ref()
        .map_or_else(|| peer.to_string(), |c| c.name.clone());
    match outcome {
        Err(Ended::Protocol(why)) => {
            tracing::warn!(worker = %who, "closing a PB connection: {why}")
        }
        Err(Ended::Closed(why)) => tracing::debug!(worker = %who, "{why}"),
        Ok(()) => {}
    }
    if let Some(conn) = session.conn.take() {
        conn.mark_closed().await;
        if let Some(h) = session.handshake.take() {
            h.abort();
        }
        master.workers.detach(&master, &conn).await;
    }
    drop(session);
    drop(out_rx);
    // The writer ends once every sender is gone; a peer that does not read does not hold it.
    let abort = writer.abort_handle();
    if tokio::time::timeout(CLOSE_GRACE, writer).await.is_err() {
        abort.abort();
    }
}

/// Writes the connection's bytes in order until every sender is gone.
async fn write_bytes<W: AsyncWrite + Unpin>(mut socket: W, mut wire: mpsc::Receiver<Vec<u8>>) {
    while let Some(bytes) = wire.recv().await {
        if socket.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = socket.shutdown().await;
}

/// A failure of a class the stock worker can read, with its bases as Twisted names them.
fn failure(class: &str, bases: &[&str], value: &str) -> Jelly {
    Jelly::Failure(Failure::new(class, bases, value))
}

fn runtime_error(value: &str) -> Jelly {
    failure(
        "builtins.RuntimeError",
        &[
            "builtins.Exception",
            "builtins.BaseException",
            "builtins.object",
        ],
        value,
    )
}

impl Session {
    /// Reads every complete message the decoder holds.
    async fn read_all(
        &mut self,
        decoder: &mut Decoder,
        out: &mpsc::Sender<Outgoing>,
    ) -> Result<(), Ended> {
        loop {
            let sexp = decoder
                .next_expression()
                .map_err(|e| Ended::Protocol(format!("malformed Banana: {e}")))?;
            let Some(sexp) = sexp else { return Ok(()) };
            if matches!(self.login, Login::Dialect) {
                self.choose_dialect(sexp).await?;
                decoder.use_vocabulary();
                continue;
            }
            let message = pb::read(sexp).map_err(|e| Ended::Protocol(e.to_string()))?;
            self.receive(message, out).await?;
        }
    }

    /// The worker's choice among the offered dialects: only `pb` is served.
    async fn choose_dialect(&mut self, sexp: Sexp) -> Result<(), Ended> {
        match sexp {
            Sexp::Bytes(b) if b == b"pb" => {
                self.login = Login::Anonymous;
                self.send(&Pb::Version(pb::VERSION)).await;
                Ok(())
            }
            other => Err(Ended::Protocol(format!(
                "the client chose the dialect {other:?}, which was not offered"
            ))),
        }
    }

    async fn send(&self, message: &Pb) {
        match pb::write(message) {
            Ok(bytes) => {
                let _ = self.wire.send(bytes).await;
            }
            Err(error) => {
                tracing::warn!(peer = %self.peer, %error, "a PB message could not be written")
            }
        }
    }

    async fn answer(&self, id: i64, result: Jelly) {
        self.send(&Pb::Answer { id, result }).await;
    }

    async fn error(&self, id: i64, failure: Jelly) {
        self.send(&Pb::Error { id, failure }).await;
    }

    fn register(&mut self, object: Object) -> u64 {
        let id = self.next_object;
        self.next_object += 1;
        self.objects.insert(id, object);
        id
    }

    /// Calls `method` on one of the worker's objects.
    async fn call(
        &mut self,
        target: u64,
        method: &str,
        args: Vec<Jelly>,
        kwargs: Vec<(String, Jelly)>,
        then: Awaiting,
    ) {
        let id = self.next_call;
        self.next_call += 1;
        self.awaiting.insert(id, then);
        self.send(&Pb::Call {
            id,
            target: Target::Object(target),
            method: method.to_string(),
            answer: true,
            args,
            kwargs,
        })
        .await;
    }

    /// One message from the worker.
    async fn receive(&mut self, message: Pb, out: &mpsc::Sender<Outgoing>) -> Result<(), Ended> {
        match message {
            Pb::Version(pb::VERSION) => Ok(()),
            Pb::Version(v) => Err(Ended::Protocol(format!(
                "the worker speaks PB version {v}, not {}",
                pb::VERSION
            ))),
            Pb::Call {
                id,
                target,
                method,
                answer,
                args,
                ..
            } => {
                let id = answer.then_some(id);
                self.called(id, target, &method, args, out).await;
                Ok(())
            }
            Pb::Answer { id, result } => {
                self.answered(id, Ok(result)).await;
                Ok(())
            }
            Pb::Error { id, failure } => {
                self.answered(id, Err(failure)).await;
                Ok(())
            }
            // Each object is handed to the worker once, so its first decref is its last.
            Pb::Decref(object) => {
                if !matches!(self.objects.get(&object), Some(Object::Avatar)) {
                    self.objects.remove(&object);
                }
                Ok(())
            }
            Pb::Ignored(_) => Ok(()),
        }
    }

    /// The worker called `method` on `target`; `id` is the call's number when it wants an answer.
    async fn called(
        &mut self,
        id: Option<i64>,
        target: Target,
        method: &str,
        args: Vec<Jelly>,
        out: &mpsc::Sender<Outgoing>,
    ) {
        let object = match &target {
            Target::Root => None,
            Target::Object(o) => match self.objects.get(o) {
                Some(object) => Some(object.clone()),
                None => {
                    let bases = [
                        "builtins.Exception",
                        "builtins.BaseException",
                        "builtins.object",
                    ];
                    let no_object = failure("twisted.spread.pb.Error", &bases, "Invalid Object ID");
                    if let Some(id) = id {
                        self.error(id, no_object).await;
                    }
                    return;
                }
            },
        };
        let reply = match (object, method) {
            (None, "login") => self.challenge(args).await,
            (Some(Object::Challenger), "respond") => match self.respond(id, args, out).await {
                // Answered once the worker is attached.
                Ok(()) => return,
                Err(refused) => Err(refused),
            },
            (Some(Object::Avatar), "keepalive") => Ok(Jelly::None),
            (Some(Object::Avatar), "shutdown") => {
                if let Some(conn) = &self.conn {
                    crate::workers::manager::shut_down_when_idle(&self.master, conn);
                }
                Ok(Jelly::None)
            }
            (Some(Object::Command(command)), _) => {
                match self.command_call(id, &command, None, method, args).await {
                    Ok(()) => return,
                    Err(refused) => Err(refused),
                }
            }
            (Some(Object::Transfer { command, kind }), _) => {
                match self
                    .command_call(id, &command, Some(kind), method, args)
                    .await
                {
                    Ok(()) => return,
                    Err(refused) => Err(refused),
                }
            }
            _ => Err(no_such_method(method)),
        };
        if let Some(id) = id {
            match reply {
                Ok(result) => self.answer(id, result).await,
                Err(failure) => self.error(id, failure).await,
            }
        }
    }

    /// `login(name)`: the challenge the worker must answer, and the object that takes its answer.
    async fn challenge(&mut self, args: Vec<Jelly>) -> Result<Jelly, Jelly> {
        match self.login {
            Login::Anonymous => {}
            Login::Refused => {
                return Err(runtime_error(
                    "a refused login is not tried again on the same connection",
                ));
            }
            _ => return Err(runtime_error("already logged in")),
        }
        let name = args
            .first()
            .and_then(Jelly::as_text)
            .map(str::to_string)
            .ok_or_else(|| runtime_error("login takes the worker's name"))?;
        let mut challenge = [0u8; 16];
        getrandom::fill(&mut challenge).map_err(|_| runtime_error("no randomness"))?;
        let challenger = self.register(Object::Challenger);
        self.login = Login::Challenged { name, challenge };
        Ok(Jelly::Tuple(vec![
            Jelly::Bytes(challenge.to_vec()),
            Jelly::Remote(challenger),
        ]))
    }

    /// `respond(digest, mind)`: checks the digest against the worker's password and starts the
    /// attach handshake; the answer waits for the attach.
    async fn respond(
        &mut self,
        id: Option<i64>,
        args: Vec<Jelly>,
        out: &mpsc::Sender<Outgoing>,
    ) -> Result<(), Jelly> {
        let Login::Challenged { name, challenge } = &self.login else {
            return Err(runtime_error("respond before login"));
        };
        let name = name.clone();
        let expected = self.master.workers.password(&name).map(|password| {
            let mut inner = Md5::new();
            inner.update(password.as_bytes());
            let mut outer = Md5::new();
            outer.update(inner.finalize());
            outer.update(challenge);
            outer.finalize().to_vec()
        });
        let (digest, mind) = match args.as_slice() {
            [Jelly::Bytes(d), Jelly::Remote(m)] => (d.clone(), *m),
            _ => return Err(runtime_error("respond takes a digest and the worker's bot")),
        };
        self.login = Login::Refused;
        let unauthorized = || {
            failure(
                UNAUTHORIZED,
                &[
                    "builtins.Exception",
                    "builtins.BaseException",
                    "builtins.object",
                ],
                "",
            )
        };
        let guard = &self.master.workers.guard;
        let ip = self.peer.ip();
        // An address that failed too often waits before each answer, whatever the answer.
        tokio::time::sleep(guard.delay(ip)).await;
        let Some(expected) = expected else {
            guard.failed(ip, &name, "unknown worker (PB)", std::time::Instant::now());
            return Err(unauthorized());
        };
        if !same_secret(&expected, &digest) {
            guard.failed(ip, &name, "wrong password (PB)", std::time::Instant::now());
            return Err(unauthorized());
        }
        guard.succeeded(ip);
        let Some(worker) = self.master.workers.id(&name) else {
            return Err(unauthorized());
        };
        let Some(id) = id else {
            return Err(runtime_error("respond must be answered"));
        };
        self.mind = mind;
        let conn = Connection::new(name, worker, Protocol::Pb, out.clone());
        self.handshake = Some(tokio::spawn(crate::workers::manager::attach(
            self.master.clone(),
            conn.clone(),
        )));
        self.conn = Some(conn);
        self.login = Login::Attaching { id };
        Ok(())
    }

    /// A call on a running command's object (or its transfer's), handed to that command; answered
    /// once the command has taken it.
    async fn command_call(
        &mut self,
        id: Option<i64>,
        command: &str,
        transfer: Option<Transfer>,
        method: &str,
        args: Vec<Jelly>,
    ) -> Result<(), Jelly> {
        let op =
            command_op(command, transfer, method, args).ok_or_else(|| no_such_method(method))?;
        let done = matches!(op, Op::Complete { .. });
        self.route(id, op, method).await;
        if done {
            self.forget_command(command);
        }
        Ok(())
    }

    /// The handshake attached the worker: its `respond` is answered with its avatar.
    async fn finish_login(&mut self) {
        if let Login::Attaching { id } = self.login {
            let avatar = self.register(Object::Avatar);
            self.login = Login::Done;
            self.answer(id, Jelly::Remote(avatar)).await;
        }
    }

    /// The master closed the connection during the handshake (a duplicate, say): the pending login
    /// is refused with the reason, as Buildbot refuses a duplicate worker.
    async fn refuse_pending_login(&mut self, why: &str) {
        if let Login::Attaching { id } = self.login {
            self.login = Login::Done;
            self.error(id, runtime_error(why)).await;
        }
    }

    /// Hands the worker's call for a running command to that command, and answers the worker once
    /// the command has taken it, without holding up the calls that follow.
    async fn route(&mut self, id: Option<i64>, op: Op, method: &str) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        let routed = conn.route(op).await;
        let wire = self.wire.clone();
        let update = method == "update";
        tokio::spawn(async move {
            let reply = match routed {
                Ok(rx) => rx.await.unwrap_or(Ok(Value::Nil)),
                Err(why) => Err(why),
            };
            let Some(id) = id else { return };
            let message = match reply {
                // Buildbot answers an update with the highest update number it has seen.
                Ok(_) if update => Pb::Answer {
                    id,
                    result: Jelly::Int(0),
                },
                Ok(v) => Pb::Answer {
                    id,
                    result: match v {
                        Value::Binary(b) => Jelly::Bytes(b),
                        _ => Jelly::None,
                    },
                },
                Err(why) => Pb::Error {
                    id,
                    failure: runtime_error(&why),
                },
            };
            if let Ok(bytes) = pb::write(&message) {
                let _ = wire.send(bytes).await;
            }
        });
    }

    /// Drops the objects of a command that completed.
    fn forget_command(&mut self, command: &str) {
        self.objects.retain(|_, o| match o {
            Object::Command(c) | Object::Transfer { command: c, .. } => c != command,
            _ => true,
        });
        self.command_builders.remove(command);
    }

    /// The worker answered one of the master's calls.
    async fn answered(&mut self, id: i64, result: Result<Jelly, Jelly>) {
        let Some(awaiting) = self.awaiting.remove(&id) else {
            tracing::warn!(peer = %self.peer, id, "a PB answer to no call");
            return;
        };
        let Some(conn) = self.conn.clone() else {
            return;
        };
        let (seq, result) = match (awaiting, result) {
            (Awaiting::Builders(seq), Ok(Jelly::Dict(entries))) => {
                self.builders = entries
                    .into_iter()
                    .filter_map(|(name, builder)| match (name.as_text(), builder) {
                        (Some(name), Jelly::Remote(b)) => Some((name.to_string(), b)),
                        _ => None,
                    })
                    .collect();
                (seq, Ok(Value::Nil))
            }
            (Awaiting::Builders(seq), Ok(other)) => {
                (seq, Err(format!("setBuilderList answered {other:?}")))
            }
            (Awaiting::Request(seq), Ok(v)) => (seq, Ok(arguments::to_value(v))),
            (Awaiting::Request(seq) | Awaiting::Builders(seq), Err(f)) => (
                seq,
                Err(match f {
                    Jelly::Failure(f) => f.describe(),
                    other => format!("{other:?}"),
                }),
            ),
        };
        match result {
            Ok(v) => conn.deliver_response(seq, v, false).await,
            Err(why) => conn.deliver_response(seq, Value::from(why), true).await,
        }
    }

    /// A request of the rest of the master, put as Buildbot's PB call.
    async fn request(&mut self, seq: i64, op: Op) {
        let mind = self.mind;
        let print = |message: &str| vec![("message".to_string(), Jelly::str(message))];
        match op {
            Op::Print { message } => {
                self.call(
                    mind,
                    "print",
                    vec![],
                    print(&message),
                    Awaiting::Request(seq),
                )
                .await
            }
            // Buildbot's master keeps a PB worker's connection alive with a print.
            Op::Keepalive => {
                self.call(
                    mind,
                    "print",
                    vec![],
                    print("keepalive"),
                    Awaiting::Request(seq),
                )
                .await
            }
            Op::GetWorkerInfo => {
                self.call(
                    mind,
                    "getWorkerInfo",
                    vec![],
                    vec![],
                    Awaiting::Request(seq),
                )
                .await
            }
            // Buildbot sends the list again only when it changed.
            Op::SetBuilderList { builders } if builders == self.builder_list => {
                self.deliver(seq, Value::Nil).await
            }
            Op::SetBuilderList { builders } => {
                self.builder_list = builders.clone();
                let list = builders
                    .iter()
                    .map(|(name, dir)| Jelly::Tuple(vec![Jelly::str(name), Jelly::str(dir)]))
                    .collect();
                self.call(
                    mind,
                    "setBuilderList",
                    vec![Jelly::List(list)],
                    vec![],
                    Awaiting::Builders(seq),
                )
                .await
            }
            Op::StartCommand {
                command_id,
                command_name,
                args,
                builder_name,
            } => {
                if let Err(why) = self
                    .start_command(seq, command_id, &command_name, args, builder_name)
                    .await
                {
                    self.refuse(seq, why).await;
                }
            }
            Op::InterruptCommand { command_id, why } => {
                match self.command_builders.get(&command_id).copied() {
                    Some(builder) => {
                        let args = vec![Jelly::str(&command_id), Jelly::str(&why)];
                        self.call(
                            builder,
                            "interruptCommand",
                            args,
                            vec![],
                            Awaiting::Request(seq),
                        )
                        .await
                    }
                    // The command has already completed.
                    None => self.deliver(seq, Value::Nil).await,
                }
            }
            Op::Shutdown => {
                self.call(mind, "shutdown", vec![], vec![], Awaiting::Request(seq))
                    .await
            }
            // A PB worker has no output settings: it keeps its own.
            Op::SetWorkerSettings { .. } => self.deliver(seq, Value::Nil).await,
            other => {
                let why = format!("{} is not sent to PB workers", other.name());
                self.refuse(seq, why).await
            }
        }
    }

    async fn deliver(&self, seq: i64, value: Value) {
        if let Some(conn) = &self.conn {
            conn.deliver_response(seq, value, false).await;
        }
    }

    async fn refuse(&self, seq: i64, why: String) {
        if let Some(conn) = &self.conn {
            conn.deliver_response(seq, Value::from(why), true).await;
        }
    }

    /// `startCommand` on the builder's object, with an object for the command's traffic (and one
    /// for its transfer).
    async fn start_command(
        &mut self,
        seq: i64,
        command_id: String,
        name: &str,
        args: Value,
        builder: Option<String>,
    ) -> Result<(), String> {
        let builder_name = builder.unwrap_or_default();
        let Some(builder) = self.builders.get(&builder_name).copied() else {
            return Err(format!("the worker has no builder {builder_name:?}"));
        };
        if self.objects.len() + 2 > MAX_OBJECTS {
            return Err(format!(
                "the worker holds {MAX_OBJECTS} objects of the master's already"
            ));
        }
        let command = arguments::translate(name, args)?;
        let mut args = command.args;
        let reference = self.register(Object::Command(command_id.clone()));
        if let Some((key, kind)) = command.transfer {
            let object = self.register(Object::Transfer {
                command: command_id.clone(),
                kind,
            });
            args.push((key.to_string(), Jelly::Remote(object)));
        }
        self.command_builders.insert(command_id.clone(), builder);
        let call_args = vec![
            Jelly::Remote(reference),
            Jelly::str(&command_id),
            Jelly::str(command.name),
            Jelly::Dict(args.into_iter().map(|(k, v)| (Jelly::Str(k), v)).collect()),
        ];
        self.call(
            builder,
            "startCommand",
            call_args,
            vec![],
            Awaiting::Request(seq),
        )
        .await;
        Ok(())
    }
}

fn no_such_method(method: &str) -> Jelly {
    failure(
        "twisted.spread.flavors.NoSuchMethod",
        &[
            "builtins.AttributeError",
            "builtins.Exception",
            "builtins.BaseException",
            "builtins.object",
        ],
        &format!("No such method: remote_{method}"),
    )
}

/// The operation a worker's call on a command's object (or its transfer's) stands for.
fn command_op(
    command: &str,
    transfer: Option<Transfer>,
    method: &str,
    args: Vec<Jelly>,
) -> Option<Op> {
    let command_id = command.to_string();
    let mut args = args.into_iter();
    Some(match (transfer, method) {
        (None, "update") => {
            // A list of [update, number] pairs, each update a dict of one key.
            let Some(Jelly::List(updates) | Jelly::Tuple(updates)) = args.next() else {
                return None;
            };
            let mut pairs = Vec::new();
            for update in updates {
                let (Jelly::List(parts) | Jelly::Tuple(parts)) = update else {
                    continue;
                };
                if let Some(Jelly::Dict(entries)) = parts.into_iter().next() {
                    for (key, value) in entries {
                        if let Some(key) = key.as_text() {
                            pairs.push((key.to_string(), arguments::to_value(value)));
                        }
                    }
                }
            }
            Op::Update {
                command_id,
                args: pairs,
            }
        }
        (None, "complete") => Op::Complete {
            command_id,
            failure: match args.next() {
                None | Some(Jelly::None) => None,
                Some(Jelly::Failure(f)) => Some(f.describe()),
                Some(other) => Some(format!("{other:?}")),
            },
        },
        (Some(Transfer::Writer { directory }), "write") => {
            let data = match args.next() {
                Some(Jelly::Bytes(b)) => b,
                Some(Jelly::Str(s)) => s.into_bytes(),
                _ => return None,
            };
            if directory {
                Op::UploadDirectoryWrite { command_id, data }
            } else {
                Op::UploadFileWrite { command_id, data }
            }
        }
        (Some(Transfer::Writer { directory: false }), "close") => {
            Op::UploadFileClose { command_id }
        }
        (Some(Transfer::Writer { directory: true }), "unpack") => {
            Op::UploadDirectoryUnpack { command_id }
        }
        (Some(Transfer::Writer { .. }), "utime") => {
            let times = match args.next() {
                Some(Jelly::Tuple(t) | Jelly::List(t)) => t,
                _ => return None,
            };
            let time = |j: Option<&Jelly>| match j {
                Some(Jelly::Float(f)) => Some(*f),
                Some(Jelly::Int(i)) => Some(*i as f64),
                _ => None,
            };
            match (time(times.first()), time(times.get(1))) {
                (Some(access_time), Some(modified_time)) => Op::UploadFileUtime {
                    command_id,
                    access_time,
                    modified_time,
                },
                // `(None, None)` when the worker could not read the file: nothing to set.
                _ => Op::Update {
                    command_id,
                    args: vec![],
                },
            }
        }
        (Some(Transfer::Reader), "read") => Op::ReadFile {
            command_id,
            length: match args.next() {
                Some(Jelly::Int(n)) if n >= 0 => (n as u64).min(arguments::MAX_BLOCK),
                _ => return None,
            },
        },
        (Some(Transfer::Reader), "close") => Op::ReadFileClose { command_id },
        _ => return None,
    })
}
