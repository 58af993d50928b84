//! The workers a master knows: their configuration, their live connections and what they are
//! running. Attaching a connection performs Buildbot's handshake.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiln_config::WorkerConfig;
use kiln_core::distributor::WorkerAvailability;
use kiln_core::{BuilderId, WorkerId};
use kiln_proto::{Args, Op, Value, settings};

use crate::master::Master;
use crate::workers::connection::{Connection, Lost, Protocol, WorkerInfo};

/// How long an existing connection has to answer before a new one for the same worker replaces it.
const DUPLICATE_PING_TIMEOUT: Duration = Duration::from_secs(10);

struct Slot {
    config: WorkerConfig,
    id: WorkerId,
    conn: Option<Arc<Connection>>,
    busy: BTreeSet<BuilderId>,
    paused: bool,
    /// The worker asked to stop once idle: it takes no new build.
    graceful: bool,
}

/// The registry of workers.
#[derive(Default)]
pub struct Workers {
    slots: Mutex<HashMap<String, Slot>>,
    /// Woken whenever a worker finishes a build.
    released: tokio::sync::Notify,
    /// Refused logins per address, on both protocols.
    pub guard: super::guard::LoginGuard,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the map inconsistent, so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Workers {
    /// Sets the configured workers, keeping the connections of those that remain.
    pub fn configure(&self, workers: &[(WorkerConfig, WorkerId)]) {
        let mut slots = lock(&self.slots);
        let mut next = HashMap::new();
        for (config, id) in workers {
            let old = slots.remove(&config.name);
            let (conn, busy, paused) = old.map(|s| (s.conn, s.busy, s.paused)).unwrap_or_default();
            next.insert(
                config.name.clone(),
                Slot {
                    config: config.clone(),
                    id: *id,
                    conn,
                    busy,
                    paused,
                    graceful: false,
                },
            );
        }
        *slots = next;
    }

    pub fn password(&self, name: &str) -> Option<String> {
        lock(&self.slots)
            .get(name)
            .map(|s| s.config.password.clone())
    }

    pub fn id(&self, name: &str) -> Option<WorkerId> {
        lock(&self.slots).get(name).map(|s| s.id)
    }

    pub fn config(&self, name: &str) -> Option<WorkerConfig> {
        lock(&self.slots).get(name).map(|s| s.config.clone())
    }

    pub fn connection(&self, name: &str) -> Option<Arc<Connection>> {
        lock(&self.slots)
            .get(name)
            .and_then(|s| s.conn.clone())
            .filter(|c| !c.is_closed())
    }

    /// The names of the workers attached now, sorted.
    pub fn connected_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.slots)
            .values()
            .filter(|s| s.conn.as_ref().is_some_and(|c| c.is_attached()))
            .map(|s| s.config.name.clone())
            .collect();
        names.sort();
        names
    }

    pub fn name_of(&self, id: WorkerId) -> Option<String> {
        lock(&self.slots)
            .values()
            .find(|s| s.id == id)
            .map(|s| s.config.name.clone())
    }

    pub fn set_paused(&self, name: &str, paused: bool) {
        if let Some(s) = lock(&self.slots).get_mut(name) {
            s.paused = paused;
        }
    }

    /// A snapshot for the distributor of the configured workers among `names`, each once.
    ///
    /// The distributor names the workers its builders may use rather than taking every worker:
    /// a pass runs on every attach and detach, and with thousands of workers a snapshot of all
    /// of them, taken under the lock every connection needs, cost more than the pass itself.
    pub fn availability<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Vec<WorkerAvailability> {
        let names: std::collections::BTreeSet<&str> = names.into_iter().collect();
        let slots = lock(&self.slots);
        names
            .into_iter()
            .filter_map(|name| slots.get(name))
            .map(|s| WorkerAvailability {
                name: s.config.name.clone(),
                available: !s.paused
                    && !s.graceful
                    && s.conn.as_ref().is_some_and(|c| c.is_attached()),
                max_builds: s.config.max_builds,
                busy_builders: s.busy.clone(),
            })
            .collect()
    }

    /// Reserves the worker for a build of `builder`; false if it cannot take it any more.
    pub fn reserve(&self, name: &str, builder: BuilderId) -> bool {
        let mut slots = lock(&self.slots);
        let Some(s) = slots.get_mut(name) else {
            return false;
        };
        let has_room = s
            .config
            .max_builds
            .is_none_or(|m| (s.busy.len() as u32) < m);
        if !has_room
            || s.graceful
            || s.busy.contains(&builder)
            || !s.conn.as_ref().is_some_and(|c| c.is_attached())
        {
            return false;
        }
        s.busy.insert(builder);
        true
    }

    pub fn release(&self, name: &str, builder: BuilderId) {
        if let Some(s) = lock(&self.slots).get_mut(name) {
            s.busy.remove(&builder);
        }
        self.released.notify_waiters();
    }

    /// Whether the worker runs no build now.
    fn is_idle(&self, name: &str) -> bool {
        lock(&self.slots)
            .get(name)
            .is_none_or(|s| s.busy.is_empty())
    }

    /// Takes the worker out of the distribution until it reconnects.
    fn set_graceful(&self, name: &str) {
        if let Some(s) = lock(&self.slots).get_mut(name) {
            s.graceful = true;
        }
    }

    /// Installs `conn` as the worker's connection, unless another one is still alive.
    async fn install(&self, conn: &Arc<Connection>) -> bool {
        let old = lock(&self.slots)
            .get(&conn.name)
            .and_then(|s| s.conn.clone());
        if let Some(old) = old.filter(|o| !o.is_closed()) {
            // As Buildbot does: ask the old connection; if it answers, the new one is the duplicate.
            let answer = old
                .request_within(
                    Op::Print {
                        message: "master got a duplicate connection".into(),
                    },
                    DUPLICATE_PING_TIMEOUT,
                )
                .await;
            if answer.is_ok() {
                return false;
            }
            old.close("replaced by a new connection").await;
        }
        if let Some(s) = lock(&self.slots).get_mut(&conn.name) {
            s.conn = Some(conn.clone());
            s.graceful = false;
            true
        } else {
            false
        }
    }

    /// Forgets a connection that closed, if it is still the worker's current one.
    pub async fn detach(&self, master: &Master, conn: &Arc<Connection>) {
        let was_current = {
            let mut slots = lock(&self.slots);
            match slots.get_mut(&conn.name) {
                Some(s) if s.conn.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) => {
                    s.conn = None;
                    true
                }
                _ => false,
            }
        };
        if was_current {
            tracing::info!(worker = %conn.name, "worker disconnected");
            if let Err(error) = master.updates.worker_disconnected(conn.id).await {
                tracing::error!(%error, "recording a worker disconnection");
            }
            master.wake_distributor();
        }
    }
}

/// Buildbot's handshake on a new connection, then attaching the worker to its builders.
///
/// The whole handshake, the wait for a duplicate connection included, has one deadline, so a peer
/// that upgrades and then stays silent is closed when it passes.
pub async fn attach(master: Arc<Master>, conn: Arc<Connection>) {
    let deadline = master.handshake_timeout;
    let outcome = tokio::time::timeout(deadline, handshake(&master, &conn))
        .await
        .unwrap_or(Err(HandshakeError::TooSlow(deadline)));
    if let Err(why) = outcome {
        tracing::warn!(worker = %conn.name, error = %why, "worker handshake failed");
        conn.close(&why.to_string()).await;
        return;
    }
    let interval = master
        .config()
        .workers
        .iter()
        .find(|w| w.name == conn.name)
        .and_then(|w| w.keepalive_interval)
        .map_or(master.keepalive_interval, Duration::from_secs);
    keepalive(&conn, interval).await;
}

/// The worker asked to stop once it is idle (a PB worker's `shutdown`): it takes no new build, and
/// once its running builds are over it is told to shut down, as Buildbot does.
pub fn shut_down_when_idle(master: &Arc<Master>, conn: &Arc<Connection>) {
    master.workers.set_graceful(&conn.name);
    tracing::info!(worker = %conn.name, "worker asked to shut down once idle");
    let master = master.clone();
    let conn = conn.clone();
    tokio::spawn(async move {
        if let Err(error) = master.updates.set_worker_graceful(conn.id, true).await {
            tracing::error!(%error, "recording a graceful worker shutdown");
        }
        loop {
            let released = master.workers.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            if master.workers.is_idle(&conn.name) {
                break;
            }
            tokio::select! {
                _ = released => {}
                _ = conn.closed() => return,
            }
        }
        let _ = conn.request(Op::Shutdown).await;
    });
}

/// Sends `keepalive` at every interval until the connection closes; a worker that does not answer
/// within an interval is disconnected, so a hung worker or a dead connection is noticed even when
/// the socket is not, and its builds end RETRY to run again elsewhere. A worker busy with its
/// commands still answers: keepalives are handled beside the commands on both protocols.
async fn keepalive(conn: &Connection, interval: Duration) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = conn.closed() => return,
        }
        if conn.request_within(Op::Keepalive, interval).await.is_err() {
            if !conn.is_closed() {
                tracing::warn!(worker = %conn.name, waited = ?interval, "worker did not answer a keepalive; it is lost");
                conn.close("keepalive not answered").await;
            }
            return;
        }
    }
}

/// Why a worker's attach handshake failed; the connection is closed with this reason.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("duplicate connection: this worker is already connected")]
    Duplicate,
    #[error("handshake not finished within {0:?}")]
    TooSlow(Duration),
    #[error(transparent)]
    Lost(#[from] Lost),
    /// The worker answered one of the handshake's requests with a failure.
    #[error("{request} failed: {reason}")]
    Refused {
        request: &'static str,
        reason: String,
    },
    #[error("creating builder directories: {0}")]
    Directories(Lost),
    #[error("recording the connection: {0}")]
    Record(#[from] kiln_db::DbError),
}

async fn handshake(master: &Arc<Master>, conn: &Arc<Connection>) -> Result<(), HandshakeError> {
    let ask = |request: &'static str, op: Op| async move {
        conn.request(op)
            .await?
            .map_err(|reason| HandshakeError::Refused { request, reason })
    };
    if !master.workers.install(conn).await {
        tracing::warn!(worker = %conn.name, "refused a duplicate connection");
        return Err(HandshakeError::Duplicate);
    }
    let message = "attached".into();
    ask("print", Op::Print { message }).await?;
    let info = ask("get_worker_info", Op::GetWorkerInfo).await?;
    let info = parse_info(info);
    *conn.info.write().unwrap_or_else(|p| p.into_inner()) = info.clone();
    match conn.protocol {
        Protocol::Msgpack => prepare_msgpack(master, conn, &info).await?,
        Protocol::Pb => {
            // The PB worker makes the builders' directories itself when it is given its builders.
            let builders = builder_list(master, &conn.name);
            ask("setBuilderList", Op::SetBuilderList { builders }).await?;
        }
    }
    conn.set_attached();
    // Recorded (and announced) once the worker can take builds.
    master.updates.worker_connected(conn.id, &info.json).await?;
    tracing::info!(worker = %conn.name, version = %info.version, "worker attached");
    master.wake_distributor();
    Ok(())
}

/// The builders `worker` serves, each with its directory, as Buildbot's builder list names them.
fn builder_list(master: &Master, worker: &str) -> Vec<(String, String)> {
    master
        .config()
        .builders
        .iter()
        .filter(|b| b.workernames.iter().any(|w| w == worker))
        .map(|b| (b.name.clone(), b.workerbuilddir.clone()))
        .collect()
}

/// Gives the attached PB workers their builders again after a reconfiguration, as Buildbot does:
/// a PB worker runs commands only for the builders it was given. (A msgpack worker needs no list.)
pub fn send_builder_lists(master: &Arc<Master>) {
    for name in master.workers.connected_names() {
        let Some(conn) = master.workers.connection(&name) else {
            continue;
        };
        if conn.protocol != Protocol::Pb {
            continue;
        }
        let builders = builder_list(master, &name);
        tokio::spawn(async move {
            if let Ok(Err(why)) = conn.request(Op::SetBuilderList { builders }).await {
                tracing::warn!(worker = %conn.name, %why, "the worker refused its new builder list");
            }
        });
    }
}

/// What a msgpack worker is told before it attaches: the master's output settings, and the
/// directories of the builders it serves, which Buildbot's builder list makes.
async fn prepare_msgpack(
    master: &Arc<Master>,
    conn: &Arc<Connection>,
    info: &WorkerInfo,
) -> Result<(), HandshakeError> {
    let args = Args::build(vec![
        ("buffer_size", Value::from(settings::BUFFER_SIZE)),
        ("buffer_timeout", Value::from(settings::BUFFER_TIMEOUT)),
        ("newline_re", Value::from(settings::NEWLINE_RE)),
        ("max_line_length", Value::from(settings::MAX_LINE_LENGTH)),
    ]);
    conn.request(Op::SetWorkerSettings { args })
        .await?
        .map_err(|reason| HandshakeError::Refused {
            request: "set_worker_settings",
            reason,
        })?;
    // Make the directories of the builders this worker serves, as Buildbot's builder list does.
    let dirs: Vec<Value> = master
        .config()
        .builders
        .iter()
        .filter(|b| b.workernames.contains(&conn.name))
        .map(|b| Value::from(crate::builds::paths::join(info, &[&b.workerbuilddir])))
        .collect();
    if !dirs.is_empty() {
        let mut sink = crate::workers::command::NoIo;
        let outcome = crate::workers::command::run(
            conn,
            None,
            "mkdir",
            Args::build(vec![("paths", Value::Array(dirs))]),
            &mut sink,
            None,
        )
        .await
        .map_err(HandshakeError::Directories)?;
        if outcome.rc != Some(0) {
            tracing::warn!(worker = %conn.name, "could not create every builder directory");
        }
    }
    Ok(())
}

fn parse_info(value: Value) -> WorkerInfo {
    let json = crate::values::msgpack_to_json(&value);
    let text = |k: &str| {
        json.get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let environ = json
        .get("environ")
        .and_then(|e| e.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let mut shown = json.clone();
    if let Some(obj) = shown.as_object_mut() {
        // The environment can hold secrets and is large; the API shows the rest, as Buildbot does.
        obj.remove("environ");
    }
    WorkerInfo {
        basedir: text("basedir"),
        system: text("system"),
        environ,
        version: text("version"),
        json: shown,
    }
}
