//! The API boundary: the master as the read side, the control handle and the event source that
//! `kiln_api` defines, which the web port and the reporters are given instead of the master.
//!
//! Every command of the control handle arrives here with the actor who asks, and is authorized
//! here (`crate::authorize`) before anything is done.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kiln_api::authz::{Request, Verb};
use kiln_api::{
    Actor, ApiError, BoxFuture, Control, Event, EventSource, Outbox, PollOutcome, ReadSide,
    Services, Shutdown, Submitted, TryJob, WorkerAction, WorkerRef,
};
use kiln_config::{MasterConfig, SchedulerConfig};
use kiln_core::{BuildId, BuildRequestId, BuilderId, ChangeId, SchedulerId, SourceStampId};
use kiln_db::listing::{Page, SqlValue};
use kiln_db::{Db, NewBuildSet, NewChange};
use tokio::sync::broadcast;

use crate::authorize::{self, allow};
use crate::master::Master;
use crate::schedulers::force::{ForceError, force};

/// How long a worker has to answer a ping from the pages or the API.
const PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The master behind the three interfaces.
struct Boundary {
    master: Arc<Master>,
}

/// The interfaces a component is given.
pub fn services(master: &Arc<Master>) -> Services {
    let boundary = Arc::new(Boundary {
        master: master.clone(),
    });
    Services {
        read: boundary.clone(),
        control: boundary.clone(),
        events: boundary.clone(),
        outbox: boundary,
    }
}

impl ReadSide for Boundary {
    fn config(&self) -> Arc<MasterConfig> {
        self.master.config()
    }

    fn builder_ids(&self) -> Arc<HashMap<String, BuilderId>> {
        self.master.builder_ids()
    }

    fn db(&self) -> &Db {
        &self.master.db
    }

    fn basedir(&self) -> &Path {
        &self.master.basedir
    }

    fn now(&self) -> i64 {
        self.master.updates.now()
    }

    fn connected_workers(&self) -> Vec<String> {
        self.master.workers.connected_names()
    }

    fn worker_name(&self, id: kiln_core::WorkerId) -> Option<String> {
        self.master.workers.name_of(id)
    }

    fn running_builds(&self) -> Vec<BuildId> {
        let mut ids: Vec<BuildId> = self.master.running_builds().keys().copied().collect();
        ids.sort();
        ids
    }

    fn poller_names(&self) -> Vec<String> {
        self.master.pollers.names()
    }

    fn master_id(&self) -> i64 {
        self.master.updates.master.0
    }

    fn session_key(&self) -> &[u8] {
        &self.master.session_key
    }

    fn allowed(&self, actor: &Actor, request: &kiln_api::authz::Request) -> bool {
        crate::authorize::decide(&self.master, actor, request).is_ok()
    }

    fn watch_config(&self) -> tokio::sync::watch::Receiver<Arc<MasterConfig>> {
        self.master.watch_config()
    }

    fn start_position(&self) -> i64 {
        self.master.start_position
    }

    fn shutting_down(&self) -> bool {
        self.master.shutting_down()
    }

    fn secret(&self, name: &str) -> Result<String, String> {
        let config = self.master.config();
        crate::secrets::lookup(&self.master.basedir, &config.secrets_providers, name)
    }
}

impl Outbox for Boundary {
    fn update<'a>(
        &'a self,
        update: kiln_db::OutboxUpdate,
    ) -> BoxFuture<'a, Result<Vec<kiln_db::ReportRow>, ApiError>> {
        Box::pin(async move { Ok(self.master.updates.update_outbox(&update).await?) })
    }

    fn next<'a>(
        &'a self,
        reporter: &'a str,
        limit: i64,
    ) -> BoxFuture<'a, Result<kiln_db::NextReport, ApiError>> {
        Box::pin(async move { Ok(self.master.updates.next_reports(reporter, limit).await?) })
    }

    fn failed<'a>(
        &'a self,
        id: i64,
        error: &'a str,
        retry_at: Option<i64>,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            Ok(self
                .master
                .updates
                .report_failed(id, error, retry_at)
                .await?)
        })
    }

    fn save_state<'a>(
        &'a self,
        object: &'a str,
        class: &'a str,
        name: &'a str,
        value_json: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let updates = &self.master.updates;
            let id = updates.object_id(object, class).await?;
            Ok(updates.set_state(id, name, value_json).await?)
        })
    }

    fn prune<'a>(&'a self, reporter: &'a str, keep: i64) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            self.master.updates.prune_reports(reporter, keep).await?;
            Ok(())
        })
    }
}

impl EventSource for Boundary {
    fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.master.events.subscribe()
    }

    fn acknowledge<'a>(
        &'a self,
        consumer: &'a str,
        position: i64,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            Ok(self
                .master
                .updates
                .acknowledge_events(consumer, position)
                .await?)
        })
    }
}

impl Control for Boundary {
    fn force<'a>(
        &'a self,
        actor: &'a Actor,
        scheduler: &'a str,
        params: &'a serde_json::Map<String, serde_json::Value>,
    ) -> BoxFuture<'a, Result<Submitted, ApiError>> {
        Box::pin(async move {
            let master = &self.master;
            let config = master.config();
            let Some(SchedulerConfig::Force(form)) =
                config.schedulers.iter().find(|s| s.name() == scheduler)
            else {
                return Err(ApiError::not_found(&format!("forceschedulers/{scheduler}")));
            };
            let chosen = authorize::forced_builders(master, &form.builder_names, params);
            let builders: Vec<&str> = chosen.iter().map(String::as_str).collect();
            let request = Request {
                builders: &builders,
                ..Request::plain(Verb::Force)
            };
            allow(master, actor, &request)?;
            let disabled = master.db.disabled_schedulers().await?;
            if disabled.iter().any(|d| d == scheduler) {
                return Err(ApiError::InvalidParams(format!(
                    "the scheduler '{scheduler}' is disabled"
                )));
            }
            // A logged-in user owns what they force, whatever the form says, as in Buildbot; an
            // anonymous visitor cannot pass as someone else.
            let owner = match actor {
                Actor::User(_) => Some(who(actor)),
                Actor::Anonymous => None,
                Actor::Master => params
                    .get("owner")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_string),
            };
            force(master, form, params, owner.as_deref())
                .await
                .map_err(|e| match e {
                    ForceError::InvalidParams(fields) => ApiError::FormErrors(fields),
                    ForceError::Internal(e) => ApiError::internal(e),
                })
        })
    }

    /// A try job is let through here: the try scheduler's own users were checked at `/try`,
    /// as in Buildbot, and the web's rules do not apply to them.
    fn try_job<'a>(
        &'a self,
        actor: &'a Actor,
        scheduler: &'a str,
        job: TryJob,
    ) -> BoxFuture<'a, Result<Submitted, ApiError>> {
        Box::pin(async move {
            tracing::info!(by = %who(actor), scheduler, "a try job");
            let config = self.master.config();
            let Some(SchedulerConfig::Try(form)) =
                config.schedulers.iter().find(|s| s.name() == scheduler)
            else {
                return Err(ApiError::NotFound(format!(
                    "no try scheduler named '{scheduler}'"
                )));
            };
            crate::schedulers::tryjob::submit(&self.master, form, job).await
        })
    }

    /// A change is let through here: the change hooks' own credentials were checked at the
    /// hook, as in Buildbot, whose sites lock their pages down and keep their hooks open.
    fn add_changes<'a>(
        &'a self,
        actor: &'a Actor,
        changes: Vec<NewChange>,
    ) -> BoxFuture<'a, Result<Vec<ChangeId>, ApiError>> {
        Box::pin(async move {
            tracing::debug!(by = %who(actor), changes = changes.len(), "changes");
            self.master
                .add_changes(changes)
                .await
                .map_err(ApiError::internal)
        })
    }

    fn poke_pollers<'a>(
        &'a self,
        _actor: &'a Actor,
        names: &'a [String],
    ) -> BoxFuture<'a, BTreeMap<String, PollOutcome>> {
        Box::pin(async move {
            // All pokes go out before any answer is awaited, so the polls run together.
            let waits: Vec<_> = names
                .iter()
                .filter_map(|n| Some((n.clone(), self.master.pollers.poke(n)?)))
                .collect();
            let mut outcomes = BTreeMap::new();
            for (name, rx) in waits {
                let outcome = rx
                    .await
                    .unwrap_or_else(|_| Err("the poller stopped".into()));
                outcomes.insert(name, outcome);
            }
            outcomes
        })
    }

    fn stop_build<'a>(
        &'a self,
        actor: &'a Actor,
        build: BuildId,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move {
            if let Some(about) = authorize::build(&self.master, build).await? {
                let builders = [about.builder.as_str()];
                allow(&self.master, actor, &about.request(Verb::Stop, &builders))?;
            }
            let stopped = self.master.stop_build(build, reason);
            if stopped {
                record_on_build(&self.master, build, "stopped_by", actor, "Stop Build").await?;
            }
            Ok(stopped)
        })
    }

    fn stop_all_builds<'a>(
        &'a self,
        actor: &'a Actor,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<usize, ApiError>> {
        Box::pin(async move {
            let running: Vec<BuildId> = self.master.running_builds().keys().copied().collect();
            let mut builders = Vec::new();
            for &build in &running {
                if let Some(about) = authorize::build(&self.master, build).await? {
                    builders.push(about.builder);
                }
            }
            builders.sort();
            builders.dedup();
            let names: Vec<&str> = builders.iter().map(String::as_str).collect();
            let request = Request {
                builders: &names,
                ..Request::plain(Verb::StopAll)
            };
            allow(&self.master, actor, &request)?;
            let mut stopped = 0;
            for build in running {
                if self.master.stop_build(build, reason) {
                    record_on_build(&self.master, build, "stopped_by", actor, "Stop All Builds")
                        .await?;
                    stopped += 1;
                }
            }
            Ok(stopped)
        })
    }

    fn cancel_change<'a>(
        &'a self,
        actor: &'a Actor,
        change: ChangeId,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<usize, ApiError>> {
        Box::pin(async move {
            let db = &self.master.db;
            let page = Page::eq("changeid", SqlValue::Int(change.0));
            let Some(row) = db.list_changes(&page).await?.0.pop() else {
                return Err(ApiError::not_found(&format!("changes/{}", change.0)));
            };
            // The requests that have not started, of buildsets built from the change.
            let mut pending = Vec::new();
            for r in db.unclaimed_buildrequests().await? {
                let stamps = db.buildset_sourcestamps(r.buildsetid).await?;
                if stamps.iter().any(|s| s.id == row.sourcestampid) {
                    pending.push(r);
                }
            }
            let names = self.master.builder_ids();
            let mut builders: Vec<&str> = pending
                .iter()
                .filter_map(|r| {
                    names
                        .iter()
                        .find(|(_, id)| id.0 == r.builderid)
                        .map(|(n, _)| n.as_str())
                })
                .collect();
            builders.sort_unstable();
            builders.dedup();
            let request = Request {
                builders: &builders,
                ..Request::plain(Verb::CancelChange)
            };
            allow(&self.master, actor, &request)?;
            let name = who(actor);
            for r in &pending {
                self.master
                    .cancel_buildrequest(r.id, reason)
                    .await
                    .map_err(ApiError::internal)?;
                self.master
                    .updates
                    .set_buildset_property(r.buildsetid, "cancelled_by", &name, "Stop Change")
                    .await?;
            }
            Ok(pending.len())
        })
    }

    fn rebuild<'a>(
        &'a self,
        actor: &'a Actor,
        build: BuildId,
    ) -> BoxFuture<'a, Result<Submitted, ApiError>> {
        Box::pin(async move {
            if let Some(about) = authorize::build(&self.master, build).await? {
                let builders = [about.builder.as_str()];
                allow(
                    &self.master,
                    actor,
                    &about.request(Verb::Rebuild, &builders),
                )?;
            }
            let db = &self.master.db;
            let not_found = || ApiError::not_found(&format!("builds/{build}"));
            let row = db.get_build(build).await?.ok_or_else(not_found)?;
            let request = db
                .get_buildrequest(row.buildrequestid)
                .await?
                .ok_or_else(not_found)?;
            let buildset = db
                .get_buildset(request.buildsetid)
                .await?
                .ok_or_else(not_found)?;
            let ids: Vec<SourceStampId> = buildset
                .sourcestamps
                .iter()
                .map(|i| SourceStampId(*i))
                .collect();
            let sourcestamps = db
                .get_sourcestamps(&ids)
                .await?
                .iter()
                .map(kiln_db::SourceStampRow::to_sourcestamp)
                .collect();
            let mut properties = db.buildset_properties(request.buildsetid).await?;
            properties.set("rebuilt_by", who(actor).as_str(), "Rebuild");
            let new = NewBuildSet {
                reason: format!(
                    "rebuild of build {}: {}",
                    row.number,
                    buildset.reason.unwrap_or_default()
                ),
                sourcestamps,
                properties,
                builders: vec![(row.builderid, request.priority)],
                rebuilt_buildid: Some(build.0),
                ..Default::default()
            };
            self.master
                .add_buildset(new)
                .await
                .map_err(ApiError::internal)
        })
    }

    fn cancel_request<'a>(
        &'a self,
        actor: &'a Actor,
        request: BuildRequestId,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if let Some(about) = authorize::buildrequest(&self.master, request).await? {
                let builders = [about.builder.as_str()];
                allow(&self.master, actor, &about.request(Verb::Cancel, &builders))?;
            }
            let row = self
                .master
                .db
                .get_buildrequest(request)
                .await?
                .ok_or_else(|| ApiError::not_found(&format!("buildrequests/{request}")))?;
            if row.complete {
                return Ok(());
            }
            let running: Vec<BuildId> = self
                .master
                .running_builds()
                .iter()
                .filter(|(_, b)| b.request == request)
                .map(|(id, _)| *id)
                .collect();
            self.master
                .cancel_buildrequest(request, reason)
                .await
                .map_err(ApiError::internal)?;
            let name = who(actor);
            self.master
                .updates
                .set_buildset_property(
                    row.buildsetid,
                    "cancelled_by",
                    &name,
                    "Cancel Build Request",
                )
                .await?;
            for build in running {
                record_on_build(
                    &self.master,
                    build,
                    "cancelled_by",
                    actor,
                    "Cancel Build Request",
                )
                .await?;
            }
            Ok(())
        })
    }

    fn set_request_priority<'a>(
        &'a self,
        actor: &'a Actor,
        request: BuildRequestId,
        priority: i64,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            if let Some(about) = authorize::buildrequest(&self.master, request).await? {
                let builders = [about.builder.as_str()];
                allow(
                    &self.master,
                    actor,
                    &about.request(Verb::OtherControl, &builders),
                )?;
            }
            self.master
                .updates
                .set_buildrequest_priority(request, priority)
                .await?;
            self.master.wake_distributor();
            Ok(())
        })
    }

    fn set_scheduler_enabled<'a>(
        &'a self,
        actor: &'a Actor,
        scheduler: SchedulerId,
        enabled: bool,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            allow(&self.master, actor, &Request::plain(Verb::EnableScheduler))?;
            let found = self
                .master
                .updates
                .set_scheduler_enabled(scheduler, enabled)
                .await?;
            if !found {
                return Err(ApiError::not_found(&format!("schedulers/{scheduler}")));
            }
            self.master.wake_schedulers();
            Ok(())
        })
    }

    fn worker_action<'a>(
        &'a self,
        actor: &'a Actor,
        worker: &'a WorkerRef,
        action: WorkerAction,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let verb = match action {
                WorkerAction::Ping => Verb::PingWorker,
                WorkerAction::Pause | WorkerAction::Unpause => Verb::PauseWorker,
                WorkerAction::StopGracefully | WorkerAction::Kill => Verb::StopWorker,
            };
            allow(&self.master, actor, &Request::plain(verb))?;
            let master = &self.master;
            let (page, shown) = match worker {
                WorkerRef::Id(id) => (Page::eq("id", SqlValue::Int(*id)), id.to_string()),
                WorkerRef::Name(name) => {
                    (Page::eq("name", SqlValue::Text(name.clone())), name.clone())
                }
            };
            let row = master
                .db
                .list_workers(&page)
                .await?
                .0
                .into_iter()
                .next()
                .ok_or_else(|| ApiError::not_found(&format!("workers/{shown}")))?;
            match action {
                WorkerAction::Pause | WorkerAction::Unpause => {
                    let paused = action == WorkerAction::Pause;
                    master
                        .updates
                        .set_worker_paused(row.id, paused, paused.then_some(reason))
                        .await?;
                    master.workers.set_paused(&row.name, paused);
                    master.wake_distributor();
                }
                WorkerAction::Kill => {
                    if let Some(conn) = master.workers.connection(&row.name) {
                        conn.close("killed from the API").await;
                    }
                }
                WorkerAction::Ping => {
                    let Some(conn) = master.workers.connection(&row.name) else {
                        return Err(ApiError::BadRequest(format!(
                            "worker {} is not connected",
                            row.name
                        )));
                    };
                    let ping = kiln_proto::Op::Print {
                        message: "ping".into(),
                    };
                    match conn.request_within(ping, PING_TIMEOUT).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(refused)) => {
                            return Err(ApiError::BadRequest(format!(
                                "worker {} refused the ping: {refused}",
                                row.name
                            )));
                        }
                        Err(_) => {
                            return Err(ApiError::BadRequest(format!(
                                "worker {} did not answer the ping within {} s",
                                row.name,
                                PING_TIMEOUT.as_secs()
                            )));
                        }
                    }
                }
                WorkerAction::StopGracefully => {
                    master.updates.set_worker_graceful(row.id, true).await?;
                    if let Some(conn) = master.workers.connection(&row.name) {
                        let _ = conn.request(kiln_proto::Op::Shutdown).await;
                    }
                }
            }
            Ok(())
        })
    }

    fn shutdown<'a>(
        &'a self,
        actor: &'a Actor,
        how: Shutdown,
    ) -> BoxFuture<'a, Result<bool, ApiError>> {
        Box::pin(async move {
            allow(&self.master, actor, &Request::plain(Verb::Shutdown))?;
            tracing::info!(by = %who(actor), ?how, "shutdown");
            Ok(match how {
                Shutdown::Clean => self.master.start_clean_shutdown(),
                Shutdown::Cancel => self.master.cancel_clean_shutdown(),
                Shutdown::Now => {
                    self.master.request_stop();
                    true
                }
            })
        })
    }
}

/// How an actor is named where the builds record who did what: a user by their email (or name,
/// without one), as a forced build's owner is.
fn who(actor: &Actor) -> String {
    match actor {
        Actor::User(u) => u.email.clone().unwrap_or_else(|| u.username.clone()),
        Actor::Anonymous => "anonymous".into(),
        Actor::Master => "the master".into(),
    }
}

/// Records on a build, as a property from `source`, who did something to it.
async fn record_on_build(
    master: &Master,
    build: BuildId,
    name: &str,
    actor: &Actor,
    source: &str,
) -> Result<(), ApiError> {
    let mut props = kiln_core::Properties::default();
    props.set(name, who(actor).as_str(), source);
    tracing::info!(build = build.0, by = %who(actor), "{name}");
    Ok(master.updates.set_build_properties(build, &props).await?)
}
