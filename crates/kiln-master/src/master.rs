//! The master: its state, start-up (with recovery after an unclean stop) and shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use anyhow::Context;
use kiln_config::{Data, MasterConfig};
use kiln_core::{BuildId, BuilderId};
use kiln_db::{Db, Writer};
use tokio::sync::{Notify, watch};

use crate::builds::runner::RunningBuild;
use crate::clock::{Clock, SystemClock};
use crate::events::EventBus;
use crate::updates::Updates;
use crate::workers::Workers;

/// Everything the master's tasks share.
pub struct Master {
    pub basedir: PathBuf,
    /// The configuration in force; a reconfiguration sends the new one to every watcher.
    config: watch::Sender<Arc<MasterConfig>>,
    pub db: Db,
    pub events: EventBus,
    pub updates: Updates,
    pub workers: Workers,
    pub pollers: crate::changes::Pollers,
    pub locks: crate::locks::Locks,
    builder_ids: RwLock<Arc<HashMap<String, BuilderId>>>,
    /// The key that signs the web port's session cookies (see `Updates::session_key`).
    pub(crate) session_key: Vec<u8>,
    /// The newest event of the durable record when the master started (see
    /// `ReadSide::start_position`).
    pub(crate) start_position: i64,
    pub(crate) distributor_wake: Notify,
    pub(crate) schedulers_wake: Notify,
    pub(crate) keepalive_interval: Duration,
    pub(crate) handshake_timeout: Duration,
    running: Mutex<HashMap<BuildId, RunningBuild>>,
    shutdown: watch::Sender<bool>,
    /// Set when a client asks the master to stop; the process that runs it does the stopping.
    stop_request: watch::Sender<bool>,
    /// Set during a clean shutdown: no build starts, and the master stops once none runs.
    draining: watch::Sender<bool>,
}

/// How often the master sends each worker a keepalive unless the worker's `keepalive_interval`
/// says otherwise. Buildbot waits an hour; a worker that hangs (a frozen process, a network that
/// drops packets) would be shown connected, and its build running, for that long.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);

/// How long a new connection may take to introduce itself: an HTTP client to send its request
/// headers, a worker to finish the attach handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Options for starting a master, beyond its configuration.
pub struct StartOptions {
    /// Overrides the first configured worker port (0 picks a free one).
    pub worker_port: Option<u16>,
    /// Overrides the configured web port (0 picks a free one).
    pub www_port: Option<u16>,
    pub clock: Arc<dyn Clock>,
    /// How often the master sends each worker a `keepalive` when the worker's configuration
    /// does not say; a worker that does not answer within the same time is lost.
    pub keepalive_interval: Duration,
    /// How long a connection to either port may stay without introducing itself before it is
    /// closed: the request headers on the web port, the worker's whole attach handshake.
    pub handshake_timeout: Duration,
    /// What the web port serves, made from the master's API boundary (`kiln_www::router`).
    pub web: WebApp,
    /// How many events the durable record keeps; older ones are pruned every
    /// `EVENT_LOG_PRUNE_INTERVAL`, and a consumer left behind them is told what it missed.
    pub event_log_keep: i64,
    /// Components the master runs beside its own tasks, each made from the API boundary (the
    /// reporters, `kiln_reporters::run`); they start once the configuration is applied and stop
    /// with the master.
    pub components: Vec<Component>,
}

/// A component's task, made from the interfaces the master exposes.
pub type Component = Arc<
    dyn Fn(kiln_api::Services) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// The durable record keeps this many events by default.
pub const EVENT_LOG_KEEP: i64 = 100_000;

/// How often the durable record is pruned.
const EVENT_LOG_PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// The database's planner statistics are refreshed once in this many prunes (an hour).
const STATISTICS_EVERY: u32 = 60;

/// Makes the web port's application from the interfaces the master exposes.
pub type WebApp = Arc<dyn Fn(kiln_api::Services) -> axum::Router + Send + Sync>;

/// The web application of a master started without one: every path is 404.
fn no_web_app(_: kiln_api::Services) -> axum::Router {
    axum::Router::new()
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            worker_port: None,
            www_port: None,
            clock: Arc::new(SystemClock),
            keepalive_interval: KEEPALIVE_INTERVAL,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            web: Arc::new(no_web_app),
            event_log_keep: EVENT_LOG_KEEP,
            components: Vec::new(),
        }
    }
}

/// A started master.
pub struct Running {
    pub master: Arc<Master>,
    pub worker_addr: SocketAddr,
    pub www_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Turns Buildbot's database URL into one for the storage layer: `sqlite:///state.sqlite` is a path
/// relative to the base directory, `sqlite:////abs/path` an absolute one.
/// Opens (and brings up to date) the database a master's configuration names, for the tools
/// that work on it directly (`kiln user`).
/// It gives the write half: those tools change the database while no master runs on it.
pub async fn open_database(basedir: &Path, config: &MasterConfig) -> anyhow::Result<Writer> {
    let basedir = std::path::absolute(basedir).unwrap_or_else(|_| basedir.to_path_buf());
    let url = database_url(&basedir, &config.db_url);
    Writer::connect(&url)
        .await
        .with_context(|| format!("opening the database {}", config.db_url))
}

pub fn database_url(basedir: &Path, url: &str) -> String {
    match url.strip_prefix("sqlite:///") {
        Some(path) if path.starts_with('/') => format!("sqlite://{path}"),
        Some(path) => format!("sqlite://{}", basedir.join(path).display()),
        None => url.to_string(),
    }
}

impl Master {
    pub fn config(&self) -> Arc<MasterConfig> {
        self.config.borrow().clone()
    }

    /// The configuration as it changes.
    pub fn watch_config(&self) -> watch::Receiver<Arc<MasterConfig>> {
        self.config.subscribe()
    }

    pub fn builder_ids(&self) -> Arc<HashMap<String, BuilderId>> {
        self.builder_ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The name of a configured builder.
    pub fn builder_name(&self, id: BuilderId) -> Option<String> {
        self.builder_ids()
            .iter()
            .find(|(_, b)| **b == id)
            .map(|(name, _)| name.clone())
    }

    pub fn wake_distributor(&self) {
        self.distributor_wake.notify_one();
    }

    /// Tells the change schedulers that new changes are stored.
    pub fn wake_schedulers(&self) {
        self.schedulers_wake.notify_one();
    }

    pub fn running_builds(&self) -> MutexGuard<'_, HashMap<BuildId, RunningBuild>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Asks whoever runs the master to stop it cleanly, as SIGTERM does.
    pub fn request_stop(&self) {
        self.stop_request.send_replace(true);
    }

    /// Starts a clean shutdown, Buildbot's `cleanShutdown`: no more builds start, and a stop is
    /// requested once the running ones are done. False if one had started already.
    pub fn start_clean_shutdown(&self) -> bool {
        let started = !self.draining.send_replace(true);
        self.stop_if_drained();
        started
    }

    /// Calls off a clean shutdown whose builds are not all done; false if none had started.
    pub fn cancel_clean_shutdown(&self) -> bool {
        let was = self.draining.send_replace(false);
        if was {
            tracing::info!("the clean shutdown was called off");
            self.wake_distributor();
        }
        was
    }

    /// Whether a clean shutdown is under way.
    pub fn shutting_down(&self) -> bool {
        *self.draining.borrow()
    }

    /// Records that a build stopped running here.
    pub fn build_done(&self, id: BuildId) {
        self.running_builds().remove(&id);
        self.stop_if_drained();
    }

    fn stop_if_drained(&self) {
        if self.shutting_down() && self.running_builds().is_empty() {
            tracing::info!("clean shutdown: no build is running any more");
            self.request_stop();
        }
    }

    /// Waits until a stop is requested through [`Master::request_stop`].
    pub async fn stop_requested(&self) {
        let mut rx = self.stop_request.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Asks a running build to stop; false if it is not running here.
    pub fn stop_build(&self, id: BuildId, reason: &str) -> bool {
        match self.running_builds().get(&id) {
            Some(b) => {
                b.stop.send_replace(Some(reason.to_string()));
                true
            }
            None => false,
        }
    }

    /// Stores a change, after `c['codebaseGenerator']` (if configured) has given it its codebase,
    /// and wakes the schedulers.
    pub async fn add_change(
        &self,
        change: kiln_db::NewChange,
    ) -> anyhow::Result<kiln_core::ChangeId> {
        self.add_changes(vec![change])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("storing a change gave no id"))
    }

    /// Stores changes in one write, in order, each after `c['codebaseGenerator']` (if
    /// configured) has given it its codebase, and wakes the schedulers once.
    pub async fn add_changes(
        &self,
        mut changes: Vec<kiln_db::NewChange>,
    ) -> anyhow::Result<Vec<kiln_core::ChangeId>> {
        for change in &mut changes {
            self.generate_codebase(change);
        }
        let ids = self.updates.add_changes(&changes).await?;
        for (id, change) in ids.iter().zip(&changes) {
            tracing::info!(
                change = id.0, author = %change.author, branch = change.branch.as_deref().unwrap_or(""),
                revision = change.revision.as_deref().unwrap_or(""), "change received"
            );
        }
        self.wake_schedulers();
        Ok(ids)
    }

    /// Gives a change its codebase from `c['codebaseGenerator']`, if one is configured. A
    /// generator that fails is logged and the change keeps the codebase it came with.
    fn generate_codebase(&self, change: &mut kiln_db::NewChange) {
        let config = self.config();
        let Some(f) = config.codebase_generator else {
            return;
        };
        let opt = |s: &Option<String>| s.as_ref().map_or(Data::None, |s| Data::Str(s.clone()));
        let chdict = Data::Dict(
            [
                ("author", Data::Str(change.author.clone())),
                ("committer", opt(&change.committer)),
                ("comments", Data::Str(change.comments.clone())),
                ("branch", opt(&change.branch)),
                ("revision", opt(&change.revision)),
                ("revlink", opt(&change.revlink)),
                ("when_timestamp", Data::Int(change.when_timestamp)),
                ("category", opt(&change.category)),
                ("repository", Data::Str(change.repository.clone())),
                ("codebase", Data::Str(change.codebase.clone())),
                ("project", Data::Str(change.project.clone())),
                (
                    "files",
                    Data::List(change.files.iter().map(|f| Data::Str(f.clone())).collect()),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (Data::Str(k.into()), v))
            .collect(),
        );
        match config.functions.call(f, &[chdict], &[]) {
            Ok(Data::Str(codebase)) => change.codebase = codebase,
            Ok(Data::None) => {}
            Ok(other) => tracing::error!(
                "codebaseGenerator returned {other:?}, not a string; the change keeps its codebase"
            ),
            Err(error) => {
                tracing::error!("codebaseGenerator failed; the change keeps its codebase:\n{error}")
            }
        }
    }

    /// Submits a buildset: stores it and its requests, collapses the older requests they make
    /// unnecessary, and wakes the distributor.
    pub async fn add_buildset(
        &self,
        buildset: kiln_db::NewBuildSet,
    ) -> crate::updates::Result<(
        kiln_core::BuildSetId,
        Vec<(BuilderId, kiln_core::BuildRequestId)>,
    )> {
        let added = self.updates.add_buildset(buildset).await?;
        if let Err(error) = crate::builds::collapse::after_submit(self, &added.1).await {
            // The requests are stored; at worst an older one builds needlessly.
            tracing::error!(%error, "collapsing build requests");
        }
        if let Err(error) = crate::builds::canceller::after_submit(self, &added.1).await {
            tracing::error!(%error, "cancelling obsolete build requests");
        }
        self.wake_distributor();
        Ok(added)
    }

    /// Cancels a build request: one not yet started completes as CANCELLED; a running one's build
    /// is stopped, which completes the request when the build ends.
    pub async fn cancel_buildrequest(
        &self,
        brid: kiln_core::BuildRequestId,
        reason: &str,
    ) -> anyhow::Result<()> {
        let running: Vec<BuildId> = self
            .running_builds()
            .iter()
            .filter(|(_, b)| b.request == brid)
            .map(|(id, _)| *id)
            .collect();
        if running.is_empty() {
            self.updates
                .complete_buildrequests(&[brid], kiln_core::Results::Cancelled)
                .await?;
        } else {
            for b in running {
                self.stop_build(b, reason);
            }
        }
        Ok(())
    }

    /// Registers the configuration's builders and workers in the database and in memory.
    pub async fn apply_config(self: &Arc<Self>, config: MasterConfig) -> anyhow::Result<()> {
        let (builder_ids, workers) = self.updates.register_config(&config).await?;
        self.workers.configure(&workers);
        *self.builder_ids.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(builder_ids);
        self.pollers.configure(self, &config);
        self.config.send_replace(Arc::new(config));
        crate::workers::manager::send_builder_lists(self);
        self.wake_distributor();
        self.wake_schedulers();
        Ok(())
    }

    /// Starts a master from its base directory and configuration.
    pub async fn start(
        basedir: &Path,
        config: MasterConfig,
        options: StartOptions,
    ) -> anyhow::Result<Running> {
        let basedir = std::path::absolute(basedir).unwrap_or_else(|_| basedir.to_path_buf());
        let url = database_url(&basedir, &config.db_url);
        let writer = Writer::connect(&url)
            .await
            .with_context(|| format!("opening the database {}", config.db_url))?;
        let db = writer.reader();
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let name = format!("{host}:{}", basedir.display());
        let masterid = Updates::register_master(&writer, &name).await?;
        let updates = Updates::new(writer, EventBus::default(), masterid, options.clock.clone());
        let events = updates.events.clone();

        // Recovery: builds this master left running were interrupted; their requests run again.
        let (builds, requests) = updates.recover().await?;
        if builds + requests > 0 {
            tracing::warn!(builds, requests, "recovered from an unclean stop");
        }
        let upgraded = updates.upgrade_password_hashes().await?;
        if upgraded > 0 {
            tracing::info!(upgraded, "wrapped older password hashes in bcrypt");
        }
        let mut candidate = [0u8; 32];
        getrandom::fill(&mut candidate)
            .map_err(|e| anyhow::anyhow!("no randomness for the session key: {e}"))?;
        let session_key = updates.session_key(&candidate).await?;
        let start_position = db.newest_event().await?;
        updates.set_master_active(true).await?;

        let master = Arc::new(Master {
            basedir: basedir.clone(),
            config: watch::channel(Arc::new(config.clone())).0,
            db,
            events,
            updates,
            workers: Workers::default(),
            pollers: Default::default(),
            locks: Default::default(),
            builder_ids: RwLock::new(Arc::new(HashMap::new())),
            session_key,
            start_position,
            distributor_wake: Notify::new(),
            schedulers_wake: Notify::new(),
            keepalive_interval: options.keepalive_interval,
            handshake_timeout: options.handshake_timeout,
            running: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            stop_request: watch::channel(false).0,
            draining: watch::channel(false).0,
        });
        master.apply_config(config.clone()).await?;

        let mut worker_ports = config.worker_ports.clone();
        if worker_ports.is_empty() {
            worker_ports.push(kiln_config::WorkerPort::default_port());
        }
        if let Some(port) = options.worker_port {
            worker_ports[0].port = port;
        }
        let mut worker_listeners = Vec::new();
        for w in &worker_ports {
            // Every interface unless the configuration names one, as in Buildbot.
            let host = w.interface.as_deref().unwrap_or("0.0.0.0");
            let listener = crate::serve::listen(host, w.port)
                .await
                .with_context(|| format!("listening for workers on {host} port {}", w.port))?;
            let protocols = crate::workers::port::Protocols {
                msgpack: w.msgpack,
                pb: w.pb,
            };
            let tls = match &w.tls {
                Some(files) => Some(crate::tls::acceptor(&basedir, files, &[])?),
                None => None,
            };
            worker_listeners.push((listener, protocols, tls));
        }
        let www_port = options.www_port.or(config.www.port).unwrap_or(8010);
        let www_listener = crate::serve::listen(&config.www.host, www_port)
            .await
            .with_context(|| format!("listening for HTTP on {}:{www_port}", config.www.host))?;
        let worker_addr = worker_listeners[0].0.local_addr()?;
        let www_addr = www_listener.local_addr()?;

        let tls = match &config.www.tls {
            Some(files) => Some(crate::tls::acceptor(&basedir, files, crate::tls::HTTP)?),
            None => None,
        };

        let mut tasks = Vec::new();
        for (listener, protocols, tls) in worker_listeners {
            tracing::info!(
                address = %listener.local_addr()?,
                msgpack = protocols.msgpack,
                pb = protocols.pb,
                tls = tls.is_some(),
                "serving workers"
            );
            tasks.push(tokio::spawn(crate::workers::port::serve(
                listener,
                master.clone(),
                protocols,
                tls,
                crate::workers::listener::router(master.clone()),
                master.shutdown_signal(),
            )));
        }
        let app = (options.web)(crate::boundary::services(&master));
        tasks.push(tokio::spawn(crate::serve::serve(
            www_listener,
            app,
            options.handshake_timeout,
            tls,
            master.shutdown_signal(),
        )));
        tasks.push(tokio::spawn(prune_event_log(
            master.clone(),
            options.event_log_keep,
        )));
        tasks.push(tokio::spawn(crate::builds::distributor::run(
            master.clone(),
        )));
        let schedulers = crate::schedulers::runner::prepare(&master)
            .await
            .context("starting the change schedulers")?;
        tasks.push(tokio::spawn(crate::schedulers::runner::run(
            master.clone(),
            schedulers,
        )));
        for component in &options.components {
            tasks.push(tokio::spawn(component(crate::boundary::services(&master))));
        }
        master.pollers.start(&master);
        tracing::info!(%worker_addr, %www_addr, "master started");
        Ok(Running {
            master,
            worker_addr,
            www_addr,
            tasks,
        })
    }
}

impl Running {
    /// Stops the master: running builds are interrupted and their requests go back to the queue,
    /// workers are disconnected, and the master is marked inactive.
    pub async fn stop(self) {
        let master = self.master;
        master.shutdown.send_replace(true);
        master.pollers.stop_all();
        let running: Vec<(BuildId, kiln_core::BuildRequestId)> = master
            .running_builds()
            .iter()
            .map(|(id, b)| (*id, b.request))
            .collect();
        if let Err(error) = master.updates.interrupt_builds(&running).await {
            tracing::error!(%error, "recording interrupted builds at shutdown");
        }
        for name in master.config().workers.iter().map(|w| w.name.clone()) {
            if let Some(conn) = master.workers.connection(&name) {
                // The disconnection is recorded here, before the database closes; the
                // connection's own task then finds it recorded.
                master.workers.detach(&master, &conn).await;
                conn.close("master shutting down").await;
            }
        }
        let _ = master.updates.set_master_active(false).await;
        for t in self.tasks {
            t.abort();
        }
        master.db.close().await;
    }
}

/// Prunes the durable record of events now and then, keeping the newest `keep`, and refreshes
/// the database's planner statistics at start and every `STATISTICS_EVERY` prunes.
async fn prune_event_log(master: Arc<Master>, keep: i64) {
    let mut stop = master.shutdown_signal();
    let mut since_statistics = 0;
    loop {
        match master.updates.prune_events(keep).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(pruned = n, "pruned the event record"),
            Err(error) => tracing::warn!(%error, "pruning the event record"),
        }
        if since_statistics == 0
            && let Err(error) = master.updates.refresh_statistics().await
        {
            tracing::warn!(%error, "refreshing the database's statistics");
        }
        since_statistics = (since_statistics + 1) % STATISTICS_EVERY;
        tokio::select! {
            _ = tokio::time::sleep(EVENT_LOG_PRUNE_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
