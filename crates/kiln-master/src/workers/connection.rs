//! One worker's connection, master side: numbered requests and responses in both directions, and
//! the routing of the worker's command traffic to the command that owns it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use kiln_core::WorkerId;
use kiln_proto::{Message, Op, Value};
use tokio::sync::{Mutex, mpsc, oneshot, watch};

/// The worker protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `msgpack_experimental_v7`: MessagePack maps in WebSocket frames.
    Msgpack,
    /// Twisted's Perspective Broker, the stock worker's default.
    Pb,
}

/// Outgoing traffic, in order, as messages: each protocol's writer puts them on its wire.
pub enum Outgoing {
    Message(Message),
    /// Close the socket, telling the worker why.
    Close(String),
}

/// Traffic from the worker for one running command, with the channel for its answer.
pub struct CommandEvent {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Value, String>>,
}

/// What the master learnt from `get_worker_info`.
#[derive(Debug, Clone, Default)]
pub struct WorkerInfo {
    pub basedir: String,
    /// `posix` or `nt`, which decides how paths are joined.
    pub system: String,
    pub environ: HashMap<String, String>,
    pub version: String,
    /// Everything reported, as JSON, for the API.
    pub json: serde_json::Value,
}

type Pending = Mutex<HashMap<i64, oneshot::Sender<Result<Value, String>>>>;

pub struct Connection {
    pub name: String,
    pub id: WorkerId,
    pub protocol: Protocol,
    out: mpsc::Sender<Outgoing>,
    next_seq: AtomicI64,
    pending: Pending,
    commands: Mutex<HashMap<String, mpsc::Sender<CommandEvent>>>,
    next_command: AtomicU64,
    pub info: std::sync::RwLock<WorkerInfo>,
    attached: watch::Sender<bool>,
    closed_tx: watch::Sender<bool>,
}

/// A request that got no answer because the connection went away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection to worker lost")]
pub struct Lost;

impl Connection {
    pub fn new(
        name: String,
        id: WorkerId,
        protocol: Protocol,
        out: mpsc::Sender<Outgoing>,
    ) -> Arc<Connection> {
        Arc::new(Connection {
            name,
            id,
            protocol,
            out,
            next_seq: AtomicI64::new(0),
            pending: Mutex::new(HashMap::new()),
            commands: Mutex::new(HashMap::new()),
            next_command: AtomicU64::new(0),
            info: std::sync::RwLock::new(WorkerInfo::default()),
            attached: watch::channel(false).0,
            closed_tx: watch::channel(false).0,
        })
    }

    /// Sends a request and waits for the worker's answer: `Ok(Err(text))` is the worker's error.
    pub async fn request(&self, op: Op) -> Result<Result<Value, String>, Lost> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().await.insert(seq, tx);
        if self.is_closed()
            || self
                .out
                .send(Outgoing::Message(Message::request(seq, op)))
                .await
                .is_err()
        {
            self.pending.lock().await.remove(&seq);
            return Err(Lost);
        }
        let mut closed = self.closed_tx.subscribe();
        tokio::select! {
            answer = rx => answer.map_err(|_| Lost),
            _ = closed.wait_for(|c| *c) => Err(Lost),
        }
    }

    /// Like [`request`](Self::request), giving up after `timeout`.
    pub async fn request_within(
        &self,
        op: Op,
        timeout: Duration,
    ) -> Result<Result<Value, String>, Lost> {
        tokio::time::timeout(timeout, self.request(op))
            .await
            .unwrap_or(Err(Lost))
    }

    /// Answers a request of the worker.
    pub async fn respond(&self, message: Message) {
        let _ = self.out.send(Outgoing::Message(message)).await;
    }

    /// Closes the connection with a reason the worker is told.
    ///
    /// The reason is dropped when the outgoing queue is full: a peer that does not read must not
    /// keep the connection open by making the close wait.
    pub async fn close(&self, why: &str) {
        let _ = self.out.try_send(Outgoing::Close(why.to_string()));
        self.mark_closed().await;
    }

    pub fn is_closed(&self) -> bool {
        *self.closed_tx.borrow()
    }

    /// Waits until the connection is gone.
    pub async fn closed(&self) {
        let mut rx = self.closed_tx.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Fails every request and command still waiting for this connection.
    pub async fn mark_closed(&self) {
        self.closed_tx.send_replace(true);
        self.pending.lock().await.clear();
        self.commands.lock().await.clear();
    }

    pub fn set_attached(&self) {
        self.attached.send_replace(true);
    }

    pub fn is_attached(&self) -> bool {
        *self.attached.borrow() && !self.is_closed()
    }

    /// Waits until the handshake has attached the worker.
    pub async fn attached(&self) {
        let mut rx = self.attached.subscribe();
        let _ = rx.wait_for(|a| *a).await;
    }

    /// Delivers the worker's answer to one of our requests.
    pub async fn deliver_response(&self, seq: i64, result: Value, is_exception: bool) {
        if let Some(tx) = self.pending.lock().await.remove(&seq) {
            let text = || {
                result
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| result.to_string())
            };
            let _ = tx.send(if is_exception {
                Err(text())
            } else {
                Ok(result.clone())
            });
        } else {
            tracing::warn!(worker = %self.name, seq, "response to no pending request");
        }
    }

    /// Registers a new command and returns its id and the channel its traffic arrives on.
    pub async fn new_command(&self) -> (String, mpsc::Receiver<CommandEvent>) {
        let id = self
            .next_command
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let (tx, rx) = mpsc::channel(16);
        self.commands.lock().await.insert(id.clone(), tx);
        (id, rx)
    }

    pub async fn forget_command(&self, id: &str) {
        self.commands.lock().await.remove(id);
    }

    /// Routes command traffic from the worker to its command, in arrival order, and returns where
    /// the answer will come from.
    pub async fn route(&self, op: Op) -> Result<oneshot::Receiver<Result<Value, String>>, String> {
        let attached = *self.attached.borrow();
        let Some(command_id) = op.command_id().map(str::to_string) else {
            return Err(if attached {
                format!("Command {} does not exist.", op.name())
            } else {
                "Worker not authenticated.".into()
            });
        };
        // Commands the master started during the handshake are served before it attaches.
        let sink = self.commands.lock().await.get(&command_id).cloned();
        let Some(sink) = sink else {
            return Err(if attached {
                "'unknown \"command_id\"'".to_string()
            } else {
                "Worker not authenticated.".into()
            });
        };
        let (tx, rx) = oneshot::channel();
        if sink.send(CommandEvent { op, reply: tx }).await.is_err() {
            return Err("'unknown \"command_id\"'".to_string());
        }
        Ok(rx)
    }
}
