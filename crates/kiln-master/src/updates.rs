//! The update layer: the only code that changes state. Each method writes the database first and
//! then publishes the event that says so, as Buildbot's `master.data.updates` does.

use std::sync::Arc;

use kiln_api::{Event, StepUpdate, Submitted, WorkerState};
use kiln_core::{
    BuildId, BuildRequestId, BuildSetId, BuilderId, ChangeId, LogId, MasterId, Properties, Results,
    StepId, WorkerId,
};
use kiln_db::{
    Completion, EventRecord, LogType, NewBuildSet, NewChange, NewTestResult, NewTestResultSet,
    StartedBuild, StepEnd, Writer,
};

use crate::clock::Clock;
use crate::events::EventBus;

#[derive(Clone)]
pub struct Updates {
    /// The database's write half: the update layer is the only holder of it.
    db: Writer,
    pub events: EventBus,
    pub master: MasterId,
    pub clock: Arc<dyn Clock>,
}

/// How long a master holds a report it is delivering before another master may take it: longer
/// than any one delivery may take.
const REPORT_LEASE: i64 = 300;

pub type Result<T> = std::result::Result<T, kiln_db::DbError>;

impl Updates {
    pub fn new(db: Writer, events: EventBus, master: MasterId, clock: Arc<dyn Clock>) -> Updates {
        Updates {
            db,
            events,
            master,
            clock,
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// The id of the master called `name` (`host:basedir`), registered if new. This comes before
    /// any `Updates` exists, since everything else is written on behalf of that master.
    pub async fn register_master(db: &Writer, name: &str) -> Result<MasterId> {
        db.find_master_id(name).await
    }

    /// Cleans up after an unclean stop of this master: its unfinished builds become RETRY, their
    /// requests return to the queue, and its worker connections are forgotten. Returns how many
    /// builds and requests were recovered.
    pub async fn recover(&self) -> Result<(usize, usize)> {
        let now = self.now();
        let finished = |builds: &Vec<BuildId>| -> Vec<Event> {
            builds
                .iter()
                .map(|id| Event::BuildFinished {
                    build: *id,
                    results: Results::Retry,
                    state: None,
                })
                .collect()
        };
        let unclaimed = |requests: &Vec<BuildRequestId>| -> Vec<Event> {
            requests
                .iter()
                .map(|r| Event::BuildRequestUnclaimed { request: *r })
                .collect()
        };
        let builds = self
            .db
            .finish_master_builds(
                self.master,
                Results::Retry,
                "interrupted by a master restart",
                now,
                |b: &Vec<BuildId>| records(now, &finished(b)),
            )
            .await?;
        let requests = self
            .db
            .unclaim_master_requests(self.master, |r: &Vec<BuildRequestId>| {
                records(now, &unclaimed(r))
            })
            .await?;
        self.db.clear_master_connections(self.master).await?;
        self.publish(finished(&builds));
        self.publish(unclaimed(&requests));
        Ok((builds.len(), requests.len()))
    }

    /// Wraps in bcrypt every web password hash that an earlier version of kiln stored, so that
    /// no weak hash stays in the database; a login later replaces it with a plain bcrypt hash.
    /// Returns how many were upgraded.
    pub async fn upgrade_password_hashes(&self) -> Result<usize> {
        let mut upgraded = 0;
        for (uid, old) in self.db.password_hashes_starting("sha256i$").await? {
            let wrapped = {
                let old = old.clone();
                tokio::task::spawn_blocking(move || kiln_api::credentials::wrap_legacy(&old)).await
            };
            match wrapped {
                Ok(Some(Ok(new))) => {
                    if self.db.replace_password_hash(uid, &old, &new).await? {
                        upgraded += 1;
                    }
                }
                Ok(Some(Err(error))) => {
                    tracing::error!(uid, %error, "cannot upgrade a password hash")
                }
                Ok(None) => {
                    tracing::warn!(uid, "a password hash of an unknown kind is left as it is")
                }
                Err(error) => tracing::error!(uid, %error, "upgrading a password hash"),
            }
        }
        Ok(upgraded)
    }

    pub async fn set_master_active(&self, active: bool) -> Result<()> {
        self.db
            .set_master_active(self.master, active, self.now())
            .await?;
        self.events.publish(Event::MasterActive {
            master: self.master,
            active,
        });
        Ok(())
    }

    /// Records the configured builders (with their descriptions and tags) and workers, and which
    /// workers serve which builder on this master. Returns the ids of both.
    pub async fn register_config(
        &self,
        config: &kiln_config::MasterConfig,
    ) -> Result<(
        std::collections::HashMap<String, BuilderId>,
        Vec<(kiln_config::WorkerConfig, WorkerId)>,
    )> {
        let db = &self.db;
        let mut builders = std::collections::HashMap::new();
        for b in &config.builders {
            let id = db.find_builder_id(&b.name).await?;
            db.update_builder_info(id, b.description.as_deref(), &b.tags)
                .await?;
            builders.insert(b.name.clone(), id);
        }
        let ids: Vec<BuilderId> = config
            .builders
            .iter()
            .filter_map(|b| builders.get(&b.name).copied())
            .collect();
        let builder_masters = db.set_master_builders(self.master, &ids).await?;
        let mut workers = Vec::new();
        for w in &config.workers {
            workers.push((w.clone(), db.find_worker_id(&w.name).await?));
        }
        for b in &config.builders {
            let Some(bmid) = builders.get(&b.name).and_then(|id| builder_masters.get(id)) else {
                continue;
            };
            let wids: Vec<WorkerId> = b
                .workernames
                .iter()
                .filter_map(|n| {
                    workers
                        .iter()
                        .find(|(w, _)| &w.name == n)
                        .map(|(_, id)| *id)
                })
                .collect();
            db.set_builder_workers(*bmid, &wids).await?;
        }
        // This master runs every configured scheduler.
        let mut schedulers = Vec::with_capacity(config.schedulers.len());
        for s in &config.schedulers {
            schedulers.push(db.find_scheduler_id(s.name()).await?);
        }
        db.set_master_schedulers(self.master, &schedulers).await?;
        for id in builders.values() {
            self.events.publish(Event::BuilderStarted {
                builder: *id,
                master: self.master,
            });
        }
        Ok((builders, workers))
    }

    /// Interrupts builds at a clean shutdown: each becomes RETRY and its request returns to the queue.
    pub async fn interrupt_builds(&self, builds: &[(BuildId, BuildRequestId)]) -> Result<()> {
        for (id, request) in builds {
            self.finish_build(*id, Results::Retry, "interrupted by master shutdown")
                .await?;
            self.unclaim_buildrequests(&[*request]).await?;
        }
        self.db.clear_master_connections(self.master).await?;
        Ok(())
    }

    /// Stores a change (with its source stamp, files and properties) and announces it.
    pub async fn add_change(&self, change: &NewChange) -> Result<ChangeId> {
        let ids = self.add_changes(std::slice::from_ref(change)).await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| kiln_db::DbError::Corrupt("storing a change gave no id".into()))
    }

    /// Stores changes in one write, in order, and announces each.
    pub async fn add_changes(&self, changes: &[NewChange]) -> Result<Vec<ChangeId>> {
        let now = self.now();
        let new = |ids: &Vec<ChangeId>| -> Vec<Event> {
            ids.iter()
                .zip(changes)
                .map(|(id, change)| Event::ChangeNew {
                    change: *id,
                    branch: change.branch.clone(),
                    repository: change.repository.clone(),
                })
                .collect()
        };
        let ids = self
            .db
            .add_changes(changes, now, |ids: &Vec<ChangeId>| records(now, &new(ids)))
            .await?;
        self.publish(new(&ids));
        Ok(ids)
    }

    pub async fn add_buildset(
        &self,
        mut bs: NewBuildSet,
    ) -> Result<(BuildSetId, Vec<(BuilderId, BuildRequestId)>)> {
        bs.submitted_at = self.now();
        let now = bs.submitted_at;
        let reason = bs.reason.clone();
        let new = |(bsid, brids): &Submitted| {
            let mut events = vec![Event::BuildsetNew {
                buildset: *bsid,
                reason: reason.clone(),
            }];
            events.extend(brids.iter().map(|(builder, brid)| Event::BuildRequestNew {
                request: *brid,
                builder: *builder,
                buildset: *bsid,
            }));
            events
        };
        let added = self
            .db
            .add_buildset(&bs, |added: &Submitted| records(now, &new(added)))
            .await?;
        self.publish(new(&added));
        let (bsid, brids) = added;
        Ok((bsid, brids))
    }

    /// Claims a request and starts its build, in one write; see [`Db::claim_and_start_build`].
    pub async fn claim_and_start_build(
        &self,
        brid: BuildRequestId,
        buildset: BuildSetId,
        builder: BuilderId,
        worker: WorkerId,
    ) -> Result<StartedBuild> {
        let now = self.now();
        let claimed = |(build, number): &(BuildId, i64)| {
            vec![
                Event::BuildRequestClaimed { request: brid },
                Event::BuildNew {
                    build: *build,
                    builder,
                    number: *number,
                    request: brid,
                },
            ]
        };
        let started = self
            .db
            .claim_and_start_build(
                brid,
                buildset,
                builder,
                worker,
                self.master,
                "starting",
                now,
                |b: &(BuildId, i64)| records(now, &claimed(b)),
            )
            .await?;
        self.publish(claimed(&(started.id, started.number)));
        Ok(started)
    }

    pub async fn unclaim_buildrequests(&self, brids: &[BuildRequestId]) -> Result<()> {
        let now = self.now();
        let unclaimed = || -> Vec<Event> {
            brids
                .iter()
                .map(|r| Event::BuildRequestUnclaimed { request: *r })
                .collect()
        };
        self.db
            .unclaim_buildrequests(brids, |_: &()| records(now, &unclaimed()))
            .await?;
        self.publish(unclaimed());
        Ok(())
    }

    /// Completes requests, then any buildset all of whose requests are complete.
    pub async fn complete_buildrequests(
        &self,
        brids: &[BuildRequestId],
        results: Results,
    ) -> Result<()> {
        let now = self.now();
        let done = self
            .db
            .complete_buildrequests(brids, results, self.master, now, |done: &Completion| {
                records(now, &completion_events(done, results))
            })
            .await?;
        self.publish_completion(&done, results).await;
        Ok(())
    }

    /// Completes unclaimed requests as SKIPPED (collapsed); see [`Db::skip_unclaimed`].
    pub async fn skip_unclaimed(&self, brids: &[BuildRequestId]) -> Result<()> {
        let now = self.now();
        let done = self
            .db
            .skip_unclaimed(brids, self.master, now, |done: &Completion| {
                records(now, &completion_events(done, Results::Skipped))
            })
            .await?;
        self.publish_completion(&done, Results::Skipped).await;
        Ok(())
    }

    /// Publishes completed requests and buildsets. A buildset's first failing request (FAILURE or
    /// EXCEPTION) also publishes `buildsets.N.first_failure`, so a client waiting on the buildset
    /// can stop waiting early, as Buildbot's `waitUntilFirstFailure` did.
    async fn publish_completion(&self, done: &Completion, results: Results) {
        if matches!(results, Results::Failure | Results::Exception) {
            for (_, bsid) in &done.requests {
                match self.db.failed_requests(*bsid).await {
                    Ok(1) => self.events.publish(Event::BuildsetFirstFailure {
                        buildset: *bsid,
                        results,
                    }),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "counting a buildset's failures"),
                }
            }
        }
        self.publish(completion_events(done, results));
    }

    /// Enables or disables a scheduler; false if there is no such scheduler.
    pub async fn set_scheduler_enabled(
        &self,
        id: kiln_core::SchedulerId,
        enabled: bool,
    ) -> Result<bool> {
        let found = self.db.set_scheduler_enabled(id, enabled).await?;
        if found {
            self.events.publish(Event::SchedulerEnabled {
                scheduler: id,
                enabled,
            });
        }
        Ok(found)
    }

    pub async fn set_buildrequest_priority(
        &self,
        brid: BuildRequestId,
        priority: i64,
    ) -> Result<bool> {
        let changed = self.db.set_buildrequest_priority(brid, priority).await?;
        if changed {
            self.events.publish(Event::BuildRequestPriority {
                request: brid,
                priority,
            });
        }
        Ok(changed)
    }

    pub async fn set_build_state_string(&self, id: BuildId, state: &str) -> Result<()> {
        self.db.set_build_state_string(id, state).await?;
        self.events.publish(Event::BuildStateString {
            build: id,
            state: state.to_string(),
        });
        Ok(())
    }

    pub async fn set_build_properties(&self, id: BuildId, props: &Properties) -> Result<()> {
        self.db.set_build_properties(id, props).await
    }

    /// Records on a buildset who did something to it after it was made (cancelled its request).
    pub async fn set_buildset_property(
        &self,
        id: kiln_core::BuildSetId,
        name: &str,
        value: &str,
        source: &str,
    ) -> Result<()> {
        let value = kiln_core::PropertyValue::Str(value.to_string());
        self.db
            .set_buildset_property(id, name, &value, source)
            .await
    }

    /// Finishes a build and completes its request (and buildset, if it was the last request), as
    /// one write.
    pub async fn finish_build_and_request(
        &self,
        id: BuildId,
        results: Results,
        state: &str,
        last_step: Option<&StepEnd>,
        request: BuildRequestId,
    ) -> Result<()> {
        let now = self.now();
        // The last step and the build end first; the request and buildset they complete follow.
        let finished = || {
            let mut events: Vec<Event> = last_step.map(step_finished).into_iter().collect();
            events.push(Event::BuildFinished {
                build: id,
                results,
                state: Some(state.to_string()),
            });
            events
        };
        let done = self
            .db
            .finish_build_and_request(
                id,
                results,
                state,
                last_step,
                request,
                self.master,
                now,
                |done: &Completion| {
                    let mut events = finished();
                    events.extend(completion_events(done, results));
                    records(now, &events)
                },
            )
            .await?;
        self.publish(finished());
        self.publish_completion(&done, results).await;
        Ok(())
    }

    pub async fn finish_build(&self, id: BuildId, results: Results, state: &str) -> Result<()> {
        let now = self.now();
        let finished = || {
            vec![Event::BuildFinished {
                build: id,
                results,
                state: Some(state.to_string()),
            }]
        };
        self.db
            .finish_build(id, results, state, now, |_: &()| records(now, &finished()))
            .await?;
        self.publish(finished());
        Ok(())
    }

    /// Adds the next step of a build with its first logs and starts it with its first state
    /// string, finishing the previous step (`finishing`) in the same write.
    pub async fn add_step(
        &self,
        build: BuildId,
        name: &str,
        state: &str,
        logs: &[(&str, LogType)],
        finishing: Option<&StepEnd>,
    ) -> Result<(StepId, i64, String, Vec<LogId>)> {
        let (id, number, name, log_ids) = self
            .db
            .add_step(build, name, state, logs, finishing, self.now())
            .await?;
        if let Some(end) = finishing {
            self.publish_step_finished(end);
        }
        self.events.publish(Event::StepNew {
            step: id,
            build,
            name: name.clone(),
        });
        self.events.publish(Event::StepStarted { step: id });
        if !state.is_empty() {
            self.events.publish(Event::BuildStateString {
                build,
                state: state.to_string(),
            });
        }
        for (log, (log_name, _)) in log_ids.iter().zip(logs) {
            self.events.publish(Event::LogNew {
                log: *log,
                step: id,
                name: log_name.to_string(),
            });
        }
        Ok((id, number, name, log_ids))
    }

    pub async fn set_step_state_string(&self, id: StepId, state: &str) -> Result<()> {
        self.db.set_step_state_string(id, state).await?;
        self.events.publish(Event::StepUpdated {
            step: id,
            update: StepUpdate::StateString(state.to_string()),
        });
        Ok(())
    }

    pub async fn set_step_locks_acquired(&self, id: StepId, at: i64) -> Result<()> {
        self.db.set_step_locks_acquired(id, at).await?;
        self.events.publish(Event::StepUpdated {
            step: id,
            update: StepUpdate::LocksAcquiredAt(at),
        });
        Ok(())
    }

    pub async fn set_build_locks_duration(&self, id: BuildId, seconds: i64) -> Result<()> {
        self.db.set_build_locks_duration(id, seconds).await?;
        self.events
            .publish(Event::BuildLocksDuration { build: id, seconds });
        Ok(())
    }

    pub async fn set_step_urls(&self, id: StepId, urls: &serde_json::Value) -> Result<()> {
        self.db.set_step_urls(id, &urls.to_string()).await?;
        self.events.publish(Event::StepUpdated {
            step: id,
            update: StepUpdate::Urls(urls.clone()),
        });
        Ok(())
    }

    pub async fn finish_step(&self, end: &StepEnd) -> Result<()> {
        self.db.finish_step(end, self.now()).await?;
        self.publish_step_finished(end);
        Ok(())
    }

    fn publish_step_finished(&self, end: &StepEnd) {
        self.events.publish(step_finished(end));
    }

    /// Publishes events in order, once their write is committed.
    fn publish(&self, events: Vec<Event>) {
        for e in events {
            self.events.publish(e);
        }
    }

    pub async fn add_log(&self, step: StepId, name: &str, log_type: LogType) -> Result<LogId> {
        let id = self.db.add_log(step, name, log_type).await?;
        self.events.publish(Event::LogNew {
            log: id,
            step,
            name: name.to_string(),
        });
        Ok(id)
    }

    /// Appends lines to a log owned by the caller, numbered from `first_line`, and completes the
    /// log when `finish` is set.
    pub async fn append_log(
        &self,
        id: LogId,
        first_line: i64,
        text: &str,
        finish: bool,
    ) -> Result<Option<(i64, i64)>> {
        let added = self.db.append_log(id, first_line, text, finish).await?;
        if let Some((first, last)) = added {
            self.events.publish(Event::LogAppend {
                log: id,
                first_line: first,
                last_line: last,
            });
        }
        if finish {
            self.events.publish(Event::LogFinished { log: id });
        }
        Ok(added)
    }

    pub async fn worker_connected(&self, worker: WorkerId, info: &serde_json::Value) -> Result<()> {
        let now = self.now();
        let connected = || vec![Event::WorkerConnected { worker }];
        self.db
            .worker_connected(worker, self.master, &info.to_string(), |_: &()| {
                records(now, &connected())
            })
            .await?;
        self.publish(connected());
        Ok(())
    }

    pub async fn worker_disconnected(&self, worker: WorkerId) -> Result<()> {
        let now = self.now();
        let gone = || vec![Event::WorkerDisconnected { worker }];
        self.db
            .worker_disconnected(worker, self.master, |_: &()| records(now, &gone()))
            .await?;
        self.publish(gone());
        Ok(())
    }

    pub async fn set_worker_paused(
        &self,
        worker: WorkerId,
        paused: bool,
        reason: Option<&str>,
    ) -> Result<()> {
        self.db.set_worker_paused(worker, paused, reason).await?;
        self.events.publish(Event::WorkerStateUpdated {
            worker,
            state: WorkerState::Paused(paused),
        });
        Ok(())
    }

    pub async fn set_worker_graceful(&self, worker: WorkerId, graceful: bool) -> Result<()> {
        self.db.set_worker_graceful(worker, graceful).await?;
        self.events.publish(Event::WorkerStateUpdated {
            worker,
            state: WorkerState::Graceful(graceful),
        });
        Ok(())
    }

    /// The id of a scheduler by name, registered if new.
    pub async fn find_scheduler_id(&self, name: &str) -> Result<kiln_core::SchedulerId> {
        self.db.find_scheduler_id(name).await
    }

    /// The id of the object (a scheduler, a change source) whose state is kept under `name` and
    /// `class_name`, registered if new.
    pub async fn object_id(&self, name: &str, class_name: &str) -> Result<i64> {
        self.db.object_id(name, class_name).await
    }

    /// The key that signs the web port's session cookies: the `candidate` of the first master
    /// to start on the database, shared by all, so that a session outlives a restart and is good
    /// on every master.
    pub async fn session_key(&self, candidate: &[u8; 32]) -> Result<Vec<u8>> {
        let hex: String = candidate.iter().map(|b| format!("{b:02x}")).collect();
        let object = self.db.object_id("www", "SessionKey").await?;
        let stored = self
            .db
            .state_once(object, "key", &serde_json::Value::String(hex).to_string())
            .await?;
        let text: String = serde_json::from_str(&stored).unwrap_or_default();
        let key: Vec<u8> = (0..text.len() / 2)
            .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
            .collect();
        if key.len() < 32 {
            return Err(kiln_db::DbError::Corrupt(
                "the stored session key is malformed".into(),
            ));
        }
        Ok(key)
    }

    /// Stores one value of an object's state (JSON text), replacing the previous one.
    pub async fn set_state(&self, object: i64, name: &str, value_json: &str) -> Result<()> {
        self.db.set_state(object, name, value_json).await?;
        self.events.publish(Event::StateSet {
            object,
            name: name.to_string(),
        });
        Ok(())
    }

    /// Records that a scheduler has seen a change, and whether it found it important.
    pub async fn classify_change(
        &self,
        scheduler: kiln_core::SchedulerId,
        change: ChangeId,
        important: bool,
    ) -> Result<()> {
        self.db
            .classify_change(scheduler, change, important)
            .await?;
        self.events.publish(Event::ChangeClassified {
            scheduler,
            change,
            important,
        });
        Ok(())
    }

    /// Forgets a scheduler's classifications of changes once they are built (or dropped).
    pub async fn flush_classifications(
        &self,
        scheduler: kiln_core::SchedulerId,
        changes: &[ChangeId],
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.db.flush_classifications(scheduler, changes).await?;
        self.events.publish(Event::ClassificationsFlushed {
            scheduler,
            changes: changes.to_vec(),
        });
        Ok(())
    }

    /// Records a step's test results as one completed set, in one write.
    pub async fn add_test_result_set(
        &self,
        set: &NewTestResultSet,
        results: &[NewTestResult],
    ) -> Result<i64> {
        let id = self.db.add_test_result_set(set, results).await?;
        self.events.publish(Event::TestResultSetNew {
            set: id,
            build: BuildId(set.buildid),
            step: StepId(set.stepid),
        });
        Ok(id)
    }

    /// Records that a consumer of the durable event record has handled it up to `position`.
    pub async fn acknowledge_events(&self, consumer: &str, position: i64) -> Result<()> {
        self.db
            .acknowledge_events(consumer, position, self.now())
            .await
    }

    /// Stores reports decided by reporters, each with the position it decided them from,
    /// leased to this master, whose reporters send them next, and records the reports they
    /// delivered; the reports stored.
    pub async fn update_outbox(
        &self,
        update: &kiln_db::OutboxUpdate,
    ) -> Result<Vec<kiln_db::ReportRow>> {
        let now = self.now();
        let lease = (self.master.0, now + REPORT_LEASE);
        self.db.update_outbox(update, now, Some(lease)).await
    }

    /// Takes a reporter's next due reports for this master, for as long as delivering them may
    /// take.
    pub async fn next_reports(&self, reporter: &str, limit: i64) -> Result<kiln_db::NextReport> {
        self.db
            .next_reports(reporter, self.master.0, self.now(), REPORT_LEASE, limit)
            .await
    }

    pub async fn report_failed(&self, id: i64, error: &str, retry_at: Option<i64>) -> Result<()> {
        self.db.report_failed(id, error, retry_at, self.now()).await
    }

    pub async fn prune_reports(&self, reporter: &str, keep: i64) -> Result<u64> {
        self.db.prune_reports(reporter, keep).await
    }

    /// Keeps only the newest `keep` events of the durable record.
    /// Refreshes the database's query-planner statistics.
    pub async fn refresh_statistics(&self) -> Result<()> {
        self.db.refresh_statistics().await
    }

    pub async fn prune_events(&self, keep: i64) -> Result<u64> {
        self.db.prune_events(keep, self.now()).await
    }
}

/// The durable records of those of `events` that the record keeps (`Event::is_durable`), stamped
/// `at`.
fn records(at: i64, events: &[Event]) -> Vec<EventRecord> {
    events
        .iter()
        .filter(|e| e.is_durable())
        .map(|e| EventRecord {
            key: e.key(),
            payload: e.payload().to_string(),
            at,
        })
        .collect()
}

/// What completing requests announces: each request, then each buildset it completed.
fn completion_events(done: &Completion, results: Results) -> Vec<Event> {
    let requests = done
        .requests
        .iter()
        .map(|(brid, _)| Event::BuildRequestComplete {
            request: *brid,
            results,
        });
    let buildsets = done
        .buildsets
        .iter()
        .map(|(bsid, results)| Event::BuildsetComplete {
            buildset: *bsid,
            results: *results,
        });
    requests.chain(buildsets).collect()
}

fn step_finished(end: &StepEnd) -> Event {
    Event::StepFinished {
        step: end.id,
        results: end.results,
        state: end.state.clone(),
    }
}
