//! A build's life: properties, the `worker_preparation` step, each configured step in turn, the
//! result, and the completion of its request (or its return to the queue when the worker was lost).

use std::sync::Arc;

use kiln_config::{BuilderConfig, StepConfig};
use kiln_core::step::compute_result_and_termination;
use kiln_core::{BuildId, BuildRequestId, BuilderId, Properties, PropertyValue, Results};
use kiln_db::{BuildRequestRow, StartedBuild, StepEnd};
use kiln_proto::Op;
use tokio::sync::watch;

use crate::builds::steps::{self, StepContext, StepOutcome, WorkerLost};
use crate::master::Master;
use crate::workers::Connection;

/// A build that is running, as the rest of the master sees it.
pub struct RunningBuild {
    pub request: BuildRequestId,
    pub worker: String,
    /// Set to a reason to stop the build.
    pub stop: watch::Sender<Option<String>>,
}

/// Runs a started build on its reserved worker, then releases the worker.
pub async fn run(
    master: Arc<Master>,
    request: BuildRequestRow,
    started: StartedBuild,
    builder: BuilderConfig,
    builderid: BuilderId,
    worker: String,
) {
    let buildid = started.id;
    if let Err(error) = run_inner(&master, &request, started, &builder, builderid, &worker).await {
        tracing::error!(request = %request.id, %error, "build failed to run; returning its request to the queue");
        let _ = master
            .updates
            .finish_build(buildid, Results::Exception, "exception running the build")
            .await;
        let _ = master.updates.unclaim_buildrequests(&[request.id]).await;
    }
    master.build_done(buildid);
    master.workers.release(&worker, builderid);
    master.wake_distributor();
}

async fn run_inner(
    master: &Arc<Master>,
    request: &BuildRequestRow,
    started: StartedBuild,
    builder: &BuilderConfig,
    builderid: BuilderId,
    worker: &str,
) -> anyhow::Result<()> {
    let updates = &master.updates;
    let (buildid, number) = (started.id, started.number);
    let Some(conn) = master.workers.connection(worker) else {
        // The worker left between the claim and now: the build is retried elsewhere.
        updates
            .finish_build(buildid, Results::Retry, "retry lost connection")
            .await?;
        updates.unclaim_buildrequests(&[request.id]).await?;
        return Ok(());
    };
    tracing::info!(build = %buildid, builder = %builder.name, number, %worker, "build started");
    let (stop_tx, stop_rx) = watch::channel(None);
    master.running_builds().insert(
        buildid,
        RunningBuild {
            request: request.id,
            worker: worker.to_string(),
            stop: stop_tx,
        },
    );

    let prepared = async {
        // Without an owner, the build is its changes' authors', as Buildbot's `owners` says.
        let authors = master.db.build_blamelist(buildid).await?;
        let props = build_properties(master, &started, builder, builderid, worker, authors);
        updates.set_build_properties(buildid, &props).await?;
        anyhow::Ok(props)
    }
    .await;
    let (results, summary, last_step) = match prepared {
        Ok(props) => {
            let build = Build {
                id: buildid,
                props: &props,
                sourcestamps: &started.sourcestamps,
            };
            run_steps(master, &conn, builder, &build, stop_rx, worker).await
        }
        Err(error) => {
            // The build could not even start its steps: it ends as an exception, visibly.
            tracing::error!(build = %buildid, error = %format!("{error:#}"), "preparing the build failed");
            (
                Results::Exception,
                "exception preparing the build".to_string(),
                None,
            )
        }
    };
    let recorded = async {
        if results == Results::Retry {
            // The worker went away: the request goes back to the queue and runs again.
            if let Some(end) = &last_step {
                updates.finish_step(end).await?;
            }
            updates.finish_build(buildid, results, &summary).await?;
            updates.unclaim_buildrequests(&[request.id]).await?;
        } else {
            updates
                .finish_build_and_request(
                    buildid,
                    results,
                    &summary,
                    last_step.as_ref(),
                    request.id,
                )
                .await?;
        }
        anyhow::Ok(())
    }
    .await;
    // Only once its end is recorded is the build done: a clean shutdown waiting for it may then
    // stop the master.
    master.build_done(buildid);
    recorded?;
    tracing::info!(build = %buildid, builder = %builder.name, number, result = results.name(), "build finished");
    Ok(())
}

/// Layers the properties of a build as Buildbot does: global, builder, buildset (scheduler and force
/// form), source stamp, worker, then the build's own.
fn build_properties(
    master: &Master,
    started: &StartedBuild,
    builder: &BuilderConfig,
    builderid: BuilderId,
    worker: &str,
    authors: Vec<String>,
) -> Properties {
    let config = master.config();
    let mut props = Properties::new();
    props.update_from(config.properties.iter(), "Global");
    props.update_from(builder.properties.iter(), "Builder");
    props.set("buildername", builder.name.as_str(), "Builder");
    props.set("builderid", PropertyValue::Int(builderid.0), "Builder");
    props.update(&started.properties);
    // Who asked for the build, as Buildbot's `owners`: the force form's or a try job's owner
    // (an anonymous force's is ""), or else the authors of its changes.
    if let Some(owner) = started.properties.get("owner") {
        props.set("owners", PropertyValue::List(vec![owner.clone()]), "Build");
    } else if !authors.is_empty() {
        let authors = authors.into_iter().map(PropertyValue::Str).collect();
        props.set("owners", PropertyValue::List(authors), "Build");
    }
    // Buildbot takes these from the first source stamp.
    if let Some(ss) = started.sourcestamps.first() {
        let opt = |v: &Option<String>| v.clone().map_or(PropertyValue::Null, PropertyValue::Str);
        props.set("branch", opt(&ss.branch), "Build");
        props.set("revision", opt(&ss.revision), "Build");
        props.set("repository", ss.repository.as_str(), "Build");
        props.set("codebase", ss.codebase.as_str(), "Build");
        props.set("project", ss.project.as_str(), "Build");
    }
    if let Some(w) = master.workers.config(worker) {
        props.update_from(w.properties.iter(), "Worker");
    }
    props.set("workername", worker, "Worker");
    props.set("buildnumber", PropertyValue::Int(started.number), "Build");
    let info = master
        .workers
        .connection(worker)
        .map(|c| c.info.read().unwrap_or_else(|p| p.into_inner()).clone())
        .unwrap_or_default();
    props.set(
        "builddir",
        crate::builds::paths::join(&info, &[&builder.workerbuilddir]),
        "Worker",
    );
    props.set("basedir", info.basedir.as_str(), "Worker");
    props
}

/// What the steps of a running build see of it.
struct Build<'a> {
    id: BuildId,
    props: &'a Properties,
    sourcestamps: &'a [kiln_db::SourceStampRow],
}

/// Runs the build's steps. A finished step is written together with whatever follows it (the next
/// step's start, or the end of the build), so its end is returned for the caller to write when it is
/// the last.
async fn run_steps(
    master: &Arc<Master>,
    conn: &Arc<Connection>,
    builder: &BuilderConfig,
    build: &Build<'_>,
    stop: watch::Receiver<Option<String>>,
    worker: &str,
) -> (Results, String, Option<StepEnd>) {
    let mut pending = match prepare_worker(master, conn, build.id, worker).await {
        Ok(prepared) => Some(prepared),
        Err(ended) => return ended,
    };
    // The build's locks, held until it ends.
    let _build_locks = if builder.locks.is_empty() {
        None
    } else {
        match acquire_build_locks(master, builder, build.id, &stop, worker).await {
            Some(held) => Some(held),
            None => {
                return (
                    Results::Cancelled,
                    "cancelled while acquiring locks".into(),
                    pending,
                );
            }
        }
    };

    let mut run = Run {
        master,
        conn,
        builder,
        build,
        stop: &stop,
        worker,
        props: build.props.clone(),
        redactions: crate::secrets::Redactions::new(master.config().hidden_environment.clone()),
    };
    let mut results = Results::Success;
    let mut terminated = false;
    // The summaries of the steps that go into the build's, as Buildbot gathers them.
    let mut summaries: Vec<String> = Vec::new();
    for step in &builder.steps {
        if terminated && !step.flags.always_run {
            continue;
        }
        if stop.borrow().is_some() && !step.flags.always_run {
            results = kiln_core::results::worst_status(results, Results::Cancelled);
            break;
        }
        let Some((name, end)) = run.step(step, pending.as_ref(), results).await else {
            results = Results::Exception;
            break;
        };
        let (next, terminate) = compute_result_and_termination(&step.flags, end.results, results);
        let _ = name;
        if step.flags.updates_build_summary(end.results) {
            summaries.push(end.state.clone());
        }
        let retry = end.results == Results::Retry;
        pending = Some(end);
        results = next;
        terminated |= terminate;
        if retry {
            break;
        }
    }
    let stopped = stop.borrow().clone();
    (
        results,
        summary(results, stopped.as_deref(), &summaries),
        pending,
    )
}

/// The synthetic first step, `worker_preparation`: the worker answers a ping. Its end, or how
/// the build ends when it cannot even start.
async fn prepare_worker(
    master: &Arc<Master>,
    conn: &Arc<Connection>,
    buildid: BuildId,
    worker: &str,
) -> Result<StepEnd, (Results, String, Option<StepEnd>)> {
    let Ok((stepid, _, _, _)) = master
        .updates
        .add_step(buildid, "worker_preparation", "", &[], None)
        .await
    else {
        return Err((
            Results::Exception,
            "exception preparing the build".into(),
            None,
        ));
    };
    let ping = conn
        .request(Op::Print {
            message: "ping".into(),
        })
        .await;
    let (results, state) = match ping {
        Ok(_) => (Results::Success, format!("worker {worker} ready")),
        Err(_) => (Results::Retry, format!("worker {worker} lost")),
    };
    let end = StepEnd {
        id: stepid,
        results,
        state,
        hidden: false,
    };
    if results != Results::Success {
        return Err((results, "retry lost connection".into(), Some(end)));
    }
    Ok(end)
}

/// Takes the builder's locks, recording the wait as Buildbot does; `None` if the build is stopped
/// while it waits.
async fn acquire_build_locks(
    master: &Arc<Master>,
    builder: &BuilderConfig,
    buildid: BuildId,
    stop: &watch::Receiver<Option<String>>,
    worker: &str,
) -> Option<crate::locks::Held> {
    let updates = &master.updates;
    let _ = updates
        .set_build_state_string(buildid, "acquiring locks")
        .await;
    let asked = updates.now();
    let mut stop_wait = stop.clone();
    let held = tokio::select! {
        held = master.locks.acquire(&builder.locks, worker) => held,
        _ = async { let _ = stop_wait.wait_for(|s| s.is_some()).await; } => return None,
    };
    let _ = updates
        .set_build_locks_duration(buildid, updates.now() - asked)
        .await;
    let _ = updates.set_build_state_string(buildid, "building").await;
    Some(held)
}

/// The build's summary state string, as Buildbot words it: its result (`build successful`,
/// `failed`, `cancelled`, …), why it was stopped, then the summaries of the steps that count
/// (`failed 'make test' (failure)`).
fn summary(results: Results, stopped: Option<&str>, steps: &[String]) -> String {
    let mut words = vec![
        match results {
            Results::Success | Results::Skipped => "build successful",
            Results::Failure => "failed",
            Results::Warnings => "warnings",
            Results::Exception => "exception",
            Results::Retry if steps.is_empty() => "retry lost connection",
            Results::Retry => "retry",
            Results::Cancelled => "cancelled",
        }
        .to_string(),
    ];
    if let Some(reason) = stopped {
        words.push(format!("({reason})"));
    }
    words.extend(steps.iter().cloned());
    words.join(" ")
}

/// What every step of a running build shares: where it runs, how to stop it, and the
/// properties and secrets the steps add to.
struct Run<'a> {
    master: &'a Arc<Master>,
    conn: &'a Arc<Connection>,
    builder: &'a BuilderConfig,
    build: &'a Build<'a>,
    stop: &'a watch::Receiver<Option<String>>,
    worker: &'a str,
    /// The build's properties, which steps may add to as they run.
    props: Properties,
    /// The secrets this build renders, hidden in its logs and state strings.
    redactions: crate::secrets::Redactions,
}

impl Run<'_> {
    /// Adds a step (finishing the previous one, `finishing`, in the same write), takes its locks,
    /// asks `doStepIf`, runs it and asks `hideStepIf`; returns its name and how it ended, or
    /// `None` if it could not even be added.
    async fn step(
        &mut self,
        step: &StepConfig,
        finishing: Option<&StepEnd>,
        build_results: Results,
    ) -> Option<(String, StepEnd)> {
        let updates = &self.master.updates;
        let first_state = steps::starting_state(step, &self.props);
        let (stepid, _, name, logs) = updates
            .add_step(
                self.build.id,
                &step.name,
                &first_state,
                steps::starting_logs(step),
                finishing,
            )
            .await
            .ok()?;
        let mut ctx = StepContext {
            master: self.master,
            conn: self.conn,
            builder_name: &self.builder.name,
            workerbuilddir: &self.builder.workerbuilddir,
            env: &self.builder.env,
            props: &self.props,
            buildid: self.build.id,
            sourcestamps: self.build.sourcestamps,
            redactions: &self.redactions,
            set_properties: Vec::new(),
            stepid,
            stdio: logs.first().copied(),
            interrupt: self.stop.clone(),
            build_results,
        };
        // The step's locks, held while it runs; `None` if the build is stopped meanwhile.
        let step_locks = if step.locks.is_empty() {
            Some(None)
        } else {
            let _ = updates
                .set_step_state_string(stepid, "waiting for locks")
                .await;
            let mut stop_wait = self.stop.clone();
            tokio::select! {
                held = self.master.locks.acquire(&step.locks, self.worker) => {
                    let _ = updates.set_step_locks_acquired(stepid, updates.now()).await;
                    let _ = updates.set_step_state_string(stepid, &first_state).await;
                    Some(Some(held))
                }
                _ = async { let _ = stop_wait.wait_for(|s| s.is_some()).await; } => None,
            }
        };
        // `doStepIf` is asked once the step holds its locks, as in Buildbot.
        let wanted = match &step_locks {
            Some(_) => steps::condition(&ctx, &step.do_step_if, None),
            None => Ok(true),
        };
        let step_locks_missing = step_locks.is_none();
        let outcome = match (step_locks, wanted) {
            (None, _) => StepOutcome {
                results: Results::Cancelled,
                state: format!("{name} (cancelled)"),
            },
            (Some(_), Ok(false)) => StepOutcome {
                results: Results::Skipped,
                state: "skipped".into(),
            },
            (Some(_), Err(e)) => {
                steps::exception(&ctx, step, &format!("doStepIf failed: {e}")).await
            }
            (Some(_held), Ok(true)) => match steps::run(&mut ctx, step).await {
                Ok(o) => o,
                Err(WorkerLost) => StepOutcome {
                    results: Results::Retry,
                    state: format!("{name} (retry)"),
                },
            },
        };
        // A step the build's stop interrupted says why in a `cancelled` log, as Buildbot's does
        // (`cancelled while waiting for locks` when it never got them).
        if outcome.results == Results::Cancelled {
            let reason = self.stop.borrow().clone();
            if let Some(reason) = reason {
                let log = if step_locks_missing {
                    "cancelled while waiting for locks"
                } else {
                    "cancelled"
                };
                ctx.text_log(log, &reason).await;
            }
        }
        let hidden = match steps::condition(&ctx, &step.hide_step_if, Some(outcome.results)) {
            Ok(h) => h,
            Err(e) => {
                ctx.error_log(&format!("step '{name}': hideStepIf failed: {e}"))
                    .await;
                false
            }
        };
        let set = std::mem::take(&mut ctx.set_properties);
        drop(ctx);
        self.set_properties(set).await;
        let end = StepEnd {
            id: stepid,
            results: outcome.results,
            state: self.redactions.apply(outcome.state),
            hidden,
        };
        Some((name, end))
    }

    /// Properties a step set join the build's, shown with the step as their source, and are
    /// stored.
    async fn set_properties(&mut self, set: Vec<(String, PropertyValue, String)>) {
        if set.is_empty() {
            return;
        }
        for (name, value, source) in set {
            let value = match value {
                PropertyValue::Str(s) => PropertyValue::Str(self.redactions.apply(s)),
                other => other,
            };
            self.props.set(name, value, &source);
        }
        let stored = self
            .master
            .updates
            .set_build_properties(self.build.id, &self.props)
            .await;
        if let Err(error) = stored {
            tracing::error!(build = %self.build.id, %error, "storing the properties a step set");
        }
    }
}
