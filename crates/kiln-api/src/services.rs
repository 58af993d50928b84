//! The runtime's API boundary: the three interfaces through which the web port and the reporters
//! work, so that none of them sees the master's internals.
//!
//! - [`ReadSide`]: what may be read (the configuration, builder ids, the database's read half,
//!   connected workers, running builds, a build's users);
//! - [`Control`]: every command a person or a client can give, each carrying the [`Actor`] who
//!   asks, so that authorization has exactly one place to live;
//! - [`EventSource`]: the typed events published after each write;
//! - [`Outbox`]: the reporters' durable queue of decided reports.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use kiln_config::MasterConfig;
use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{
    BuildId, BuildRequestId, BuildSetId, BuilderId, ChangeId, Properties, SchedulerId,
};
use kiln_db::{Db, NewChange, NextReport, OutboxUpdate, ReportRow};
use tokio::sync::{broadcast, watch};

use crate::error::ApiError;
use crate::event::Event;
use crate::users::BuildUsers;

/// A future the interfaces return; boxed so that the interfaces can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who asks for a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Somebody who has not logged in.
    Anonymous,
    /// A user who logged in, as their login described them.
    User(crate::authz::UserInfo),
    /// The master itself, on behalf of its own components (a quickstart build, say).
    Master,
}

impl Actor {
    /// The logged-in user, if the actor is one.
    pub fn user(&self) -> Option<&crate::authz::UserInfo> {
        match self {
            Actor::User(u) => Some(u),
            Actor::Anonymous | Actor::Master => None,
        }
    }
}

/// A submitted buildset: its id and each builder's request.
pub type Submitted = (BuildSetId, Vec<(BuilderId, BuildRequestId)>);

/// A try job as `kiln try` (or `buildbot try`) sends it.
#[derive(Debug, Clone)]
pub struct TryJob {
    pub who: String,
    pub comment: String,
    pub builder_names: Vec<String>,
    pub properties: Properties,
    pub sourcestamp: SourceStamp,
}

/// A worker, named as the API names it: by id or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerRef {
    Id(i64),
    Name(String),
}

/// How the master is asked to shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Start no more builds, and stop once the running ones are done (Buildbot's clean
    /// shutdown).
    Clean,
    /// Call off a clean shutdown whose builds are not all done.
    Cancel,
    /// Stop at once, as SIGTERM does: running builds are interrupted and their requests kept.
    Now,
}

/// What can be done to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerAction {
    Pause,
    Unpause,
    /// Ask the worker to shut down once its builds are done.
    StopGracefully,
    /// Close its connection at once.
    Kill,
    /// Check that the worker answers, as Buildbot's ping does: an error if it does not.
    Ping,
}

/// The outcome of poking one change poller.
pub type PollOutcome = Result<Vec<ChangeId>, String>;

/// What may be read.
pub trait ReadSide: Send + Sync {
    /// The configuration the master runs now; a reconfiguration replaces it.
    fn config(&self) -> Arc<MasterConfig>;
    /// The ids of the configured builders, by name.
    fn builder_ids(&self) -> Arc<HashMap<String, BuilderId>>;
    /// The database's read half.
    fn db(&self) -> &Db;
    /// The master's base directory, against which configured relative paths are resolved.
    fn basedir(&self) -> &Path;
    /// The master's clock, in epoch seconds.
    fn now(&self) -> i64;
    /// The names of the workers connected to this master.
    fn connected_workers(&self) -> Vec<String>;
    /// A configured worker's name.
    fn worker_name(&self, id: kiln_core::WorkerId) -> Option<String>;
    /// The builds this master is running.
    fn running_builds(&self) -> Vec<BuildId>;
    /// The names of the configured change pollers.
    fn poller_names(&self) -> Vec<String>;
    /// This master's id in the database's `masters`.
    fn master_id(&self) -> i64;
    /// The key that signs the web port's session cookies, the same on every master of a
    /// database.
    fn session_key(&self) -> &[u8];
    /// Whether `actor` may make `request`, as the control handle would decide: the pages show a
    /// control only to those who may use it.
    fn allowed(&self, actor: &Actor, request: &crate::authz::Request) -> bool;
    /// The configuration as it changes: a reconfiguration sends the new one.
    fn watch_config(&self) -> watch::Receiver<Arc<MasterConfig>>;
    /// Whether a clean shutdown of this master is under way.
    fn shutting_down(&self) -> bool;
    /// The newest event of the durable record when this master started: a component configured
    /// from the start reads what happened since, whenever its task gets to run.
    fn start_position(&self) -> i64;
    /// A secret's value from the configured secret providers (`util.Secret`), or why not.
    fn secret(&self, name: &str) -> Result<String, String>;
    /// A build's blamelist, owners and interested users.
    fn build_users(&self, build: BuildId) -> BoxFuture<'_, Result<BuildUsers, ApiError>> {
        Box::pin(async move { Ok(crate::users::build_users(self.db(), build).await?) })
    }
}

/// Every command a person or a client can give. Each takes the actor who asks.
pub trait Control: Send + Sync {
    /// Forces a build with a force scheduler's form; `params` are the form's fields.
    fn force<'a>(
        &'a self,
        actor: &'a Actor,
        scheduler: &'a str,
        params: &'a serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'a, Result<Submitted, ApiError>>;
    /// Submits a try job to a `Try_Userpass` scheduler.
    fn try_job<'a>(
        &'a self,
        actor: &'a Actor,
        scheduler: &'a str,
        job: TryJob,
    ) -> BoxFuture<'a, Result<Submitted, ApiError>>;
    /// Stores the changes of one hook request in one write, in order, and lets the schedulers
    /// see them.
    fn add_changes<'a>(
        &'a self,
        actor: &'a Actor,
        changes: Vec<NewChange>,
    ) -> BoxFuture<'a, Result<Vec<ChangeId>, ApiError>>;
    /// Asks change pollers to poll now and waits for their polls; an unknown name is not polled.
    fn poke_pollers<'a>(
        &'a self,
        actor: &'a Actor,
        names: &'a [String],
    ) -> BoxFuture<'a, BTreeMap<String, PollOutcome>>;
    /// Stops a running build; false if it is not running here.
    fn stop_build<'a>(
        &'a self,
        actor: &'a Actor,
        build: BuildId,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>>;
    /// Stops every build running on this master (the old WebStatus's "stop all builds"); how
    /// many were stopped.
    fn stop_all_builds<'a>(
        &'a self,
        actor: &'a Actor,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<usize, ApiError>>;
    /// Cancels the requests built from a change that have not started (the old WebStatus's
    /// "stop change"); how many were cancelled.
    fn cancel_change<'a>(
        &'a self,
        actor: &'a Actor,
        change: ChangeId,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<usize, ApiError>>;
    /// Builds a finished build again, with the same source stamps and properties.
    fn rebuild<'a>(
        &'a self,
        actor: &'a Actor,
        build: BuildId,
    ) -> BoxFuture<'a, Result<Submitted, ApiError>>;
    /// Cancels a request that has not finished.
    fn cancel_request<'a>(
        &'a self,
        actor: &'a Actor,
        request: BuildRequestId,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Changes a request's priority.
    fn set_request_priority<'a>(
        &'a self,
        actor: &'a Actor,
        request: BuildRequestId,
        priority: i64,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Enables or disables a scheduler.
    fn set_scheduler_enabled<'a>(
        &'a self,
        actor: &'a Actor,
        scheduler: SchedulerId,
        enabled: bool,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Pauses, unpauses, stops gracefully or kills a worker.
    fn worker_action<'a>(
        &'a self,
        actor: &'a Actor,
        worker: &'a WorkerRef,
        action: WorkerAction,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Shuts the master down, or calls off a clean shutdown; whether that changed anything (a
    /// clean shutdown that had started already, or none to call off, changes nothing).
    fn shutdown<'a>(
        &'a self,
        actor: &'a Actor,
        how: Shutdown,
    ) -> BoxFuture<'a, Result<bool, ApiError>>;
}

/// The typed events, published after each write.
///
/// The bus is a hint: a subscriber that falls behind loses events. A consumer that must not miss
/// one reads the durable record instead (`crate::consumer::DurableConsumer`), and uses the bus
/// only to wake up.
pub trait EventSource: Send + Sync {
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>>;
    /// Records that `consumer` has handled the durable record up to `position`.
    fn acknowledge<'a>(
        &'a self,
        consumer: &'a str,
        position: i64,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// The reporters' durable queue: what a reporter decided to send is stored before it is sent,
/// and each attempt's outcome is recorded, so that nothing decided is lost to a receiver that is
/// down or a master that restarts. The update layer is its one writer.
pub trait Outbox: Send + Sync {
    /// Stores what each consumer decided and records that it handled the durable record up to
    /// its position, and records the deliveries, all in one transaction; an empty consumer
    /// records no position. The reports stored (not stored before) come back leased to this
    /// master, for its reporters to send without leasing them again.
    fn update<'a>(
        &'a self,
        update: OutboxUpdate,
    ) -> BoxFuture<'a, Result<Vec<ReportRow>, ApiError>>;
    /// Takes up to `limit` of the oldest pending reports of `reporter`, those that are due.
    fn next<'a>(
        &'a self,
        reporter: &'a str,
        limit: i64,
    ) -> BoxFuture<'a, Result<NextReport, ApiError>>;
    /// Records a failed attempt: tried again at `retry_at`, or given up without one.
    fn failed<'a>(
        &'a self,
        id: i64,
        error: &'a str,
        retry_at: Option<i64>,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Stores one value (JSON text) of the state of `object` of `class`, as Buildbot's state
    /// table keeps it, replacing the previous one; it is read back through `ReadSide::db`.
    fn save_state<'a>(
        &'a self,
        object: &'a str,
        class: &'a str,
        name: &'a str,
        value_json: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>>;
    /// Keeps the newest `keep` finished reports of `reporter`.
    fn prune<'a>(&'a self, reporter: &'a str, keep: i64) -> BoxFuture<'a, Result<(), ApiError>>;
}

/// The interfaces together, as a component is given them.
#[derive(Clone)]
pub struct Services {
    pub read: Arc<dyn ReadSide>,
    pub control: Arc<dyn Control>,
    pub events: Arc<dyn EventSource>,
    pub outbox: Arc<dyn Outbox>,
}
