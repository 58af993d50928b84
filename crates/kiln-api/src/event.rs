//! The events the runtime publishes after each write: one variant per kind of change.
//!
//! Each event has Buildbot's routing key (`builds.12.finished`), so that clients that subscribe by
//! key, Buildbot's own front-end among them, keep working, and a small JSON payload of the ids
//! and the values that changed.

use kiln_core::{
    BuildId, BuildRequestId, BuildSetId, BuilderId, ChangeId, LogId, MasterId, Results,
    SchedulerId, StepId, WorkerId,
};
use serde_json::{Value, json};

/// One change of state, published once the write that made it is committed.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A master became active (`masters.N.started`) or inactive (`masters.N.stopped`).
    MasterActive {
        master: MasterId,
        active: bool,
    },
    /// A master registered a configured builder.
    BuilderStarted {
        builder: BuilderId,
        master: MasterId,
    },
    /// A change was stored.
    ChangeNew {
        change: ChangeId,
        branch: Option<String>,
        repository: String,
    },
    /// A buildset was submitted.
    BuildsetNew {
        buildset: BuildSetId,
        reason: String,
    },
    /// All of a buildset's requests are complete; `results` is the worst of them.
    BuildsetComplete {
        buildset: BuildSetId,
        results: Results,
    },
    /// The first of a buildset's requests to end with FAILURE or EXCEPTION.
    BuildsetFirstFailure {
        buildset: BuildSetId,
        results: Results,
    },
    /// A build request was submitted for a builder.
    BuildRequestNew {
        request: BuildRequestId,
        builder: BuilderId,
        buildset: BuildSetId,
    },
    BuildRequestClaimed {
        request: BuildRequestId,
    },
    BuildRequestUnclaimed {
        request: BuildRequestId,
    },
    /// A request completed; a cancelled one is `buildrequests.N.canceled`, as in Buildbot.
    BuildRequestComplete {
        request: BuildRequestId,
        results: Results,
    },
    BuildRequestPriority {
        request: BuildRequestId,
        priority: i64,
    },
    /// A build was started for a request.
    BuildNew {
        build: BuildId,
        builder: BuilderId,
        number: i64,
        request: BuildRequestId,
    },
    /// A running build's state string changed.
    BuildStateString {
        build: BuildId,
        state: String,
    },
    /// A build got all its builder's locks, after waiting this long.
    BuildLocksDuration {
        build: BuildId,
        seconds: i64,
    },
    BuildFinished {
        build: BuildId,
        results: Results,
        state: Option<String>,
    },
    /// A step was added to a build (`steps.N.new`); it starts at once (`steps.N.started`).
    StepNew {
        step: StepId,
        build: BuildId,
        name: String,
    },
    StepStarted {
        step: StepId,
    },
    StepUpdated {
        step: StepId,
        update: StepUpdate,
    },
    StepFinished {
        step: StepId,
        results: Results,
        state: String,
    },
    LogNew {
        log: LogId,
        step: StepId,
        name: String,
    },
    /// Lines `first_line..=last_line` were appended to a log.
    LogAppend {
        log: LogId,
        first_line: i64,
        last_line: i64,
    },
    LogFinished {
        log: LogId,
    },
    WorkerConnected {
        worker: WorkerId,
    },
    WorkerDisconnected {
        worker: WorkerId,
    },
    WorkerStateUpdated {
        worker: WorkerId,
        state: WorkerState,
    },
    SchedulerEnabled {
        scheduler: SchedulerId,
        enabled: bool,
    },
    /// A scheduler recorded whether a change is important to it (kiln's own event).
    ChangeClassified {
        scheduler: SchedulerId,
        change: ChangeId,
        important: bool,
    },
    /// A scheduler forgot its classifications of these changes, once built or dropped.
    ClassificationsFlushed {
        scheduler: SchedulerId,
        changes: Vec<ChangeId>,
    },
    /// One value of a scheduler's or change source's stored state was written.
    StateSet {
        object: i64,
        name: String,
    },
    /// A step recorded a completed set of test results.
    TestResultSetNew {
        set: i64,
        build: BuildId,
        step: StepId,
    },
}

/// What changed in a running step.
#[derive(Debug, Clone, PartialEq)]
pub enum StepUpdate {
    StateString(String),
    LocksAcquiredAt(i64),
    /// The step's links, as the API shows them.
    Urls(Value),
}

/// What changed in a worker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    Paused(bool),
    Graceful(bool),
}

impl Event {
    /// Buildbot's routing key, its elements joined by dots: `builds.12.finished`.
    pub fn key(&self) -> String {
        use Event::*;
        match self {
            MasterActive { master, active } => {
                format!(
                    "masters.{master}.{}",
                    if *active { "started" } else { "stopped" }
                )
            }
            BuilderStarted { builder, .. } => format!("builders.{builder}.started"),
            ChangeNew { change, .. } => format!("changes.{change}.new"),
            BuildsetNew { buildset, .. } => format!("buildsets.{buildset}.new"),
            BuildsetComplete { buildset, .. } => format!("buildsets.{buildset}.complete"),
            BuildsetFirstFailure { buildset, .. } => format!("buildsets.{buildset}.first_failure"),
            BuildRequestNew { request, .. } => format!("buildrequests.{request}.new"),
            BuildRequestClaimed { request } => format!("buildrequests.{request}.claimed"),
            BuildRequestUnclaimed { request } => format!("buildrequests.{request}.unclaimed"),
            BuildRequestComplete { request, results } => {
                let verb = if *results == Results::Cancelled {
                    "canceled"
                } else {
                    "complete"
                };
                format!("buildrequests.{request}.{verb}")
            }
            BuildRequestPriority { request, .. } => format!("buildrequests.{request}.updated"),
            BuildNew { build, .. } => format!("builds.{build}.new"),
            BuildStateString { build, .. } => format!("builds.{build}.update"),
            BuildLocksDuration { build, .. } => format!("builds.{build}.updated"),
            BuildFinished { build, .. } => format!("builds.{build}.finished"),
            StepNew { step, .. } => format!("steps.{step}.new"),
            StepStarted { step } => format!("steps.{step}.started"),
            StepUpdated { step, .. } => format!("steps.{step}.updated"),
            StepFinished { step, .. } => format!("steps.{step}.finished"),
            LogNew { log, .. } => format!("logs.{log}.new"),
            LogAppend { log, .. } => format!("logs.{log}.append"),
            LogFinished { log } => format!("logs.{log}.finished"),
            WorkerConnected { worker } => format!("workers.{worker}.connected"),
            WorkerDisconnected { worker } => format!("workers.{worker}.disconnected"),
            WorkerStateUpdated { worker, .. } => format!("workers.{worker}.state_updated"),
            SchedulerEnabled { scheduler, .. } => format!("schedulers.{scheduler}.updated"),
            ChangeClassified { scheduler, .. } => format!("schedulers.{scheduler}.classified"),
            ClassificationsFlushed { scheduler, .. } => format!("schedulers.{scheduler}.flushed"),
            StateSet { object, .. } => format!("objects.{object}.state"),
            TestResultSetNew { set, .. } => format!("test_result_sets.{set}.new"),
        }
    }

    /// The payload as clients see it: the ids and the values that changed, with the API's names.
    pub fn payload(&self) -> Value {
        use Event::*;
        match self {
            MasterActive { master, active } => json!({"masterid": master.0, "active": active}),
            BuilderStarted { builder, master } => {
                json!({"builderid": builder.0, "masterid": master.0})
            }
            ChangeNew {
                change,
                branch,
                repository,
            } => json!({"changeid": change.0, "branch": branch, "repository": repository}),
            BuildsetNew { buildset, reason } => json!({"bsid": buildset.0, "reason": reason}),
            BuildsetComplete { buildset, results } | BuildsetFirstFailure { buildset, results } => {
                json!({"bsid": buildset.0, "results": results.code()})
            }
            BuildRequestNew {
                request,
                builder,
                buildset,
            } => json!({
                "buildrequestid": request.0,
                "builderid": builder.0,
                "buildsetid": buildset.0,
            }),
            BuildRequestClaimed { request } | BuildRequestUnclaimed { request } => {
                json!({"buildrequestid": request.0})
            }
            BuildRequestComplete { request, results } => {
                json!({"buildrequestid": request.0, "results": results.code()})
            }
            BuildRequestPriority { request, priority } => {
                json!({"buildrequestid": request.0, "priority": priority})
            }
            BuildNew {
                build,
                builder,
                number,
                request,
            } => json!({
                "buildid": build.0,
                "builderid": builder.0,
                "number": number,
                "buildrequestid": request.0,
            }),
            BuildStateString { build, state } => {
                json!({"buildid": build.0, "state_string": state})
            }
            BuildLocksDuration { build, seconds } => {
                json!({"buildid": build.0, "locks_duration_s": seconds})
            }
            BuildFinished {
                build,
                results,
                state,
            } => {
                let mut v = json!({"buildid": build.0, "results": results.code()});
                if let Some(state) = state {
                    v["state_string"] = json!(state);
                }
                v
            }
            StepNew { step, build, name } => {
                json!({"stepid": step.0, "buildid": build.0, "name": name})
            }
            StepStarted { step } => json!({"stepid": step.0}),
            StepUpdated { step, update } => match update {
                StepUpdate::StateString(s) => json!({"stepid": step.0, "state_string": s}),
                StepUpdate::LocksAcquiredAt(at) => {
                    json!({"stepid": step.0, "locks_acquired_at": at})
                }
                StepUpdate::Urls(urls) => json!({"stepid": step.0, "urls": urls}),
            },
            StepFinished {
                step,
                results,
                state,
            } => json!({"stepid": step.0, "results": results.code(), "state_string": state}),
            LogNew { log, step, name } => json!({"logid": log.0, "stepid": step.0, "name": name}),
            LogAppend {
                log,
                first_line,
                last_line,
            } => json!({"logid": log.0, "first_line": first_line, "last_line": last_line}),
            LogFinished { log } => json!({"logid": log.0}),
            WorkerConnected { worker } | WorkerDisconnected { worker } => {
                json!({"workerid": worker.0})
            }
            WorkerStateUpdated { worker, state } => match state {
                WorkerState::Paused(p) => json!({"workerid": worker.0, "paused": p}),
                WorkerState::Graceful(g) => json!({"workerid": worker.0, "graceful": g}),
            },
            SchedulerEnabled { scheduler, enabled } => {
                json!({"schedulerid": scheduler.0, "enabled": enabled})
            }
            ChangeClassified {
                scheduler,
                change,
                important,
            } => json!({"schedulerid": scheduler.0, "changeid": change.0, "important": important}),
            ClassificationsFlushed { scheduler, changes } => {
                let ids: Vec<i64> = changes.iter().map(|c| c.0).collect();
                json!({"schedulerid": scheduler.0, "changeids": ids})
            }
            StateSet { object, name } => json!({"objectid": object, "name": name}),
            TestResultSetNew { set, build, step } => {
                json!({"test_result_setid": set, "buildid": build.0, "stepid": step.0})
            }
        }
    }

    /// Whether the durable record keeps this event: the life of changes, buildsets, requests,
    /// builds and worker connections, which consumers such as reporters must not miss. The rest
    /// (steps, logs, state strings, scheduler bookkeeping) is published on the bus only; a reader
    /// that needs it reads the current state, and log lines are their own record.
    pub fn is_durable(&self) -> bool {
        use Event::*;
        matches!(
            self,
            ChangeNew { .. }
                | BuildsetNew { .. }
                | BuildsetComplete { .. }
                | BuildRequestNew { .. }
                | BuildRequestClaimed { .. }
                | BuildRequestUnclaimed { .. }
                | BuildRequestComplete { .. }
                | BuildNew { .. }
                | BuildFinished { .. }
                | WorkerConnected { .. }
                | WorkerDisconnected { .. }
        )
    }

    /// The buildset this event completes, for waiters on a buildset's end.
    pub fn completed_buildset(&self) -> Option<(BuildSetId, Results)> {
        match self {
            Event::BuildsetComplete { buildset, results } => Some((*buildset, *results)),
            _ => None,
        }
    }
}

/// Whether `key` matches `pattern`, where a `*` element of the pattern matches any one element.
pub fn matches(pattern: &str, key: &str) -> bool {
    let mut p = pattern.split('.');
    let mut k = key.split('.');
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a == "*" || a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_element_by_element() {
        assert!(matches("builds.*.finished", "builds.12.finished"));
        assert!(!matches("builds.*.finished", "builds.12.new"));
        assert!(!matches("builds.*", "builds.12.new"));
    }

    #[test]
    fn keys_are_buildbots_routing_keys() {
        let cancelled = Event::BuildRequestComplete {
            request: BuildRequestId(7),
            results: Results::Cancelled,
        };
        assert_eq!(cancelled.key(), "buildrequests.7.canceled");
        let done = Event::BuildRequestComplete {
            request: BuildRequestId(7),
            results: Results::Success,
        };
        assert_eq!(done.key(), "buildrequests.7.complete");
        let stopped = Event::MasterActive {
            master: MasterId(1),
            active: false,
        };
        assert_eq!(stopped.key(), "masters.1.stopped");
        let finished = Event::BuildFinished {
            build: BuildId(12),
            results: Results::Failure,
            state: Some("failed run".into()),
        };
        assert_eq!(finished.key(), "builds.12.finished");
        assert_eq!(
            finished.payload(),
            json!({"buildid": 12, "results": 2, "state_string": "failed run"})
        );
    }
}
