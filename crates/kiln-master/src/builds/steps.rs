//! Running one build step: rendering its arguments, issuing its remote commands and deciding its
//! result and state string.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_config::{StepConfig, StepKind};
use kiln_core::render::Renderable;
use kiln_core::{LogId, Properties, PropertyValue, Results, StepId};
use kiln_db::LogType;
use kiln_proto::Value;
use tokio::sync::watch;

use crate::builds::logs::LogWriter;
use crate::builds::shell::{self, Captured, StdioLog};
use crate::builds::{files, paths, transfer};
use crate::master::Master;
use crate::secrets::Redactions;
use crate::workers::Connection;
use crate::workers::command::{self, CommandIo, Outcome, Stream};
use crate::workers::connection::Lost;

/// What a step needs to know about its build.
pub struct StepContext<'a> {
    pub master: &'a Arc<Master>,
    pub conn: &'a Arc<Connection>,
    pub builder_name: &'a str,
    pub workerbuilddir: &'a str,
    pub env: &'a [(String, Renderable)],
    pub props: &'a Properties,
    pub buildid: kiln_core::BuildId,
    /// The build's source stamps, one per codebase.
    pub sourcestamps: &'a [kiln_db::SourceStampRow],
    /// The secrets the build has used, hidden in what it writes.
    pub redactions: &'a Redactions,
    /// Properties the step sets (name, value, source), applied to the build after it.
    pub set_properties: Vec<(String, PropertyValue, String)>,
    pub stepid: StepId,
    /// The `stdio` log, when it was made with the step (see [`starting_logs`]).
    pub stdio: Option<LogId>,
    pub interrupt: watch::Receiver<Option<String>>,
    /// The build's results so far, which `doStepIf` functions read as `step.build.results`.
    pub build_results: Results,
}

/// How a step ended.
pub struct StepOutcome {
    pub results: Results,
    pub state: String,
}

/// The step could not run because the worker went away: the build is retried.
pub struct WorkerLost;

impl From<Lost> for WorkerLost {
    fn from(_: Lost) -> Self {
        WorkerLost
    }
}

impl StepContext<'_> {
    pub fn render(&self, r: &Renderable, what: &str) -> Result<PropertyValue, String> {
        render_for_step(self, r).map_err(|e| format!("cannot render {what}: {e}"))
    }

    /// The absolute path on the worker of `rel`, relative to the builder's directory.
    pub fn builder_path(&self, rel: &str) -> String {
        self.worker_path(rel, "")
    }

    pub fn render_string(&self, r: &Renderable, what: &str) -> Result<String, String> {
        self.render(r, what).map(|v| v.render())
    }

    /// The absolute path on the worker of `rel` inside the step's working directory.
    pub(super) fn worker_path(&self, workdir: &str, rel: &str) -> String {
        let info = self
            .conn
            .info
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        paths::join(&info, &[self.workerbuilddir, workdir, rel])
    }

    pub async fn stdio(&self) -> Result<LogWriter, String> {
        let id = match self.stdio {
            Some(id) => id,
            None => self
                .master
                .updates
                .add_log(self.stepid, "stdio", LogType::Stdio)
                .await
                .map_err(|e| format!("creating the stdio log: {e}"))?,
        };
        Ok(LogWriter::new(
            self.master.updates.clone(),
            id,
            self.redactions.clone(),
        ))
    }

    /// Runs one remote command of this step on its worker, interruptible by a stop of the build.
    pub(super) async fn remote<Io: CommandIo>(
        &self,
        name: &str,
        args: Value,
        io: &mut Io,
    ) -> Result<Outcome, Lost> {
        let mut interrupt = self.interrupt.clone();
        command::run(
            self.conn,
            Some(self.builder_name),
            name,
            args,
            io,
            Some(&mut interrupt),
        )
        .await
    }

    /// Records an error that stopped the step as a text log, as Buildbot's `err.text`.
    ///
    /// Also used by steps that run on the master.
    pub async fn error_log(&self, text: &str) {
        self.text_log("err.text", text).await
    }

    /// Adds a complete text log named `name` to the step, with secrets hidden.
    pub async fn text_log(&self, name: &str, text: &str) {
        let updates = &self.master.updates;
        if let Ok(id) = updates.add_log(self.stepid, name, LogType::Text).await {
            let mut body = self.redactions.apply(text.to_string());
            if !body.ends_with('\n') {
                body.push('\n');
            }
            let _ = updates.append_log(id, 0, &body, true).await;
        }
    }
}

/// Renders in the step's context: its build's properties and source stamps, its worker's
/// information, and the configuration's functions.
pub fn render_for_step(
    ctx: &StepContext<'_>,
    r: &Renderable,
) -> Result<PropertyValue, kiln_core::render::RenderError> {
    if r.is_constant() {
        return r.render(ctx.props);
    }
    let stamps: Vec<kiln_core::sourcestamp::SourceStamp> = ctx
        .sourcestamps
        .iter()
        .map(kiln_db::SourceStampRow::to_sourcestamp)
        .collect();
    let worker: std::collections::BTreeMap<String, PropertyValue> = {
        let info = ctx.conn.info.read().unwrap_or_else(|p| p.into_inner());
        info.json
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), kiln_db::json_to_property(v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let config = ctx.master.config();
    let hooks = StepHooks {
        config: &config,
        basedir: &ctx.master.basedir,
        redactions: ctx.redactions,
    };
    r.render_in(&kiln_core::render::RenderContext {
        props: ctx.props,
        sourcestamps: &stamps,
        worker: &worker,
        hooks: &hooks,
    })
}

/// What a step's renderables ask for: the configuration's functions, and secrets from its
/// providers, each remembered so the build hides it.
struct StepHooks<'a> {
    config: &'a kiln_config::MasterConfig,
    basedir: &'a Path,
    redactions: &'a Redactions,
}

impl kiln_core::render::RenderHooks for StepHooks<'_> {
    fn secret(&self, name: &str) -> Result<String, String> {
        let value = crate::secrets::lookup(self.basedir, &self.config.secrets_providers, name)?;
        self.redactions.add(name, &value);
        Ok(value)
    }

    fn call(
        &self,
        f: kiln_core::changefilter::FnRef,
        args: Vec<PropertyValue>,
        kwargs: Vec<(String, PropertyValue)>,
    ) -> Result<PropertyValue, String> {
        kiln_core::render::RenderHooks::call(&self.config.functions, f, args, kwargs)
    }

    fn call_renderer(
        &self,
        call: kiln_core::changefilter::FnRef,
        func: kiln_core::changefilter::FnRef,
        props: &Properties,
    ) -> Result<PropertyValue, String> {
        self.config.functions.call_renderer(call, func, props)
    }
}

/// A step's stdio log, for steps that run several remote commands in turn (source steps).
pub struct LogSink {
    io: StdioLog,
}

impl LogSink {
    pub async fn open(ctx: &StepContext<'_>) -> Result<LogSink, String> {
        Ok(LogSink {
            io: StdioLog::plain(ctx.stdio().await?),
        })
    }

    /// Runs a remote command, logging its output; returns its result and its standard output.
    pub async fn run(
        &mut self,
        ctx: &StepContext<'_>,
        name: &str,
        args: Value,
    ) -> Result<(Results, String), WorkerLost> {
        self.io.capture = Some(Captured::default());
        let outcome = ctx.remote(name, args, &mut self.io).await;
        let captured = self.io.capture.take().unwrap_or_default();
        let outcome = outcome?;
        if let Some(f) = &outcome.failure {
            self.io
                .log
                .write(Stream::Header, &format!("remote command failed: {f}\n"))
                .await;
        }
        Ok((results_of(&outcome, None), captured.stdout))
    }

    /// Runs a remote command, logging its output; returns its result.
    pub async fn run_quiet(
        &mut self,
        ctx: &StepContext<'_>,
        name: &str,
        args: Value,
    ) -> Result<Results, WorkerLost> {
        Ok(self.run(ctx, name, args).await?.0)
    }

    pub async fn header(&mut self, text: &str) {
        self.io.log.write(Stream::Header, text).await;
    }

    pub async fn finish(&mut self) {
        self.io.log.finish().await;
    }
}

/// The master-side path of a transfer, relative to the master's base directory.
pub(super) fn master_path(master: &Master, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        master.basedir.join(p)
    }
}

/// Buildbot-style summary of a command: the first words, quoted.
/// How a step ends: its `descriptionDone` (or `default`) with the result appended unless SUCCESS.
pub(super) fn finished(
    step: &StepConfig,
    default: impl FnOnce() -> String,
    results: Results,
) -> StepOutcome {
    let done = step.description_done.clone().unwrap_or_else(default);
    StepOutcome {
        results,
        state: with_result(done, results),
    }
}

pub(super) fn with_result(state: String, results: Results) -> String {
    match results {
        Results::Success => state,
        other => format!("{state} ({})", other.name()),
    }
}

/// Runs one step to its end.
/// The logs a step is created with: a shell command's `stdio`.
pub fn starting_logs(step: &StepConfig) -> &'static [(&'static str, LogType)] {
    match step.kind {
        StepKind::ShellCommand(_) | StepKind::WarningCounting(_) => &[("stdio", LogType::Stdio)],
        _ => &[],
    }
}

/// The state string a step starts with, written when the step is added: a shell command's
/// description, or else a summary of its rendered command; nothing for the other steps.
pub fn starting_state(step: &StepConfig, props: &Properties) -> String {
    match &step.kind {
        StepKind::ShellCommand(sh) => shell::starting_state(step, sh, props),
        StepKind::WarningCounting(w) => shell::starting_state(step, &w.shell, props),
        _ => String::new(),
    }
}

pub async fn run(ctx: &mut StepContext<'_>, step: &StepConfig) -> Result<StepOutcome, WorkerLost> {
    let workdir = match &step.workdir {
        Some(w) => match ctx.render_string(w, "workdir") {
            Ok(w) => w,
            Err(e) => return Ok(exception(ctx, step, &e).await),
        },
        None => "build".to_string(),
    };
    let outcome = match &step.kind {
        StepKind::ShellCommand(sh) => shell::shell(ctx, step, sh, &workdir).await?,
        StepKind::WarningCounting(w) => shell::warning_counting(ctx, step, w, &workdir).await?,
        StepKind::ShellSequence(q) => shell::sequence(ctx, step, q, &workdir).await?,
        StepKind::Trigger(t) => crate::builds::trigger::run(ctx, step, t).await,
        StepKind::Source(s) => crate::builds::source::run(ctx, step, s, &workdir).await?,
        StepKind::SetProperty { property, value } => {
            files::set_property(ctx, step, property, value).await
        }
        StepKind::SetProperties { properties } => {
            files::set_properties(ctx, step, properties).await
        }
        StepKind::SetPropertiesFromEnv { variables, source } => {
            files::set_properties_from_env(ctx, step, variables, source).await
        }
        StepKind::SetPropertyFromCommand(c) => {
            shell::set_property_from_command(ctx, step, c, &workdir).await?
        }
        StepKind::FileExists { file } => files::file_exists(ctx, step, file, &workdir).await?,
        StepKind::CopyDirectory {
            src,
            dest,
            timeout,
            max_time,
        } => files::copy_directory(ctx, step, src, dest, *timeout, *max_time).await?,
        StepKind::MultipleFileUpload(u) => {
            transfer::upload_multiple(ctx, step, &workdir, u).await?
        }
        StepKind::JsonDownload {
            value,
            workerdest,
            mode,
            maxsize,
            blocksize,
        } => {
            let to = destination(workerdest, *mode, *maxsize, *blocksize);
            transfer::json_download(ctx, step, &workdir, value.as_ref(), to).await?
        }
        StepKind::MasterShellCommand(m) => {
            super::onmaster::master_shell_command(ctx, step, m).await
        }
        StepKind::Http(h) => super::onmaster::http_step(ctx, step, h).await,
        StepKind::MakeDirectory { dir } => files::directory(ctx, step, "mkdir", dir).await?,
        StepKind::RemoveDirectory { dir } => files::directory(ctx, step, "rmdir", dir).await?,
        StepKind::FileUpload {
            workersrc,
            masterdest,
            mode,
            maxsize,
            blocksize,
            keepstamp,
            url,
            url_text,
        } => {
            transfer::upload_file(
                ctx, step, &workdir, workersrc, masterdest, *mode, *maxsize, *blocksize,
                *keepstamp, url, url_text,
            )
            .await?
        }
        StepKind::DirectoryUpload {
            workersrc,
            masterdest,
            maxsize,
            blocksize,
            compress,
        } => {
            transfer::upload_directory(
                ctx,
                step,
                &workdir,
                workersrc,
                masterdest,
                *maxsize,
                *blocksize,
                compress.as_deref(),
            )
            .await?
        }
        StepKind::FileDownload {
            mastersrc,
            workerdest,
            mode,
            maxsize,
            blocksize,
        } => {
            let to = destination(workerdest, *mode, *maxsize, *blocksize);
            transfer::file_download(ctx, step, &workdir, mastersrc, to).await?
        }
        StepKind::StringDownload {
            s,
            workerdest,
            mode,
            maxsize,
            blocksize,
        } => {
            let to = destination(workerdest, *mode, *maxsize, *blocksize);
            transfer::string_download(ctx, step, &workdir, s, to).await?
        }
    };
    Ok(outcome)
}

/// The worker destination a download step's arguments name.
fn destination(
    workerdest: &Renderable,
    mode: Option<u32>,
    maxsize: Option<u64>,
    blocksize: u64,
) -> transfer::Destination<'_> {
    transfer::Destination {
        workerdest,
        mode,
        maxsize,
        blocksize,
    }
}

/// Whether a step's `doStepIf` (`results` None) or `hideStepIf` (the step's results) holds.
pub fn condition(
    ctx: &StepContext<'_>,
    cond: &kiln_config::StepCondition,
    results: Option<Results>,
) -> Result<bool, String> {
    match cond {
        kiln_config::StepCondition::Always(b) => Ok(*b),
        kiln_config::StepCondition::Renderable(r) => {
            ctx.render(r, "the condition").map(|v| v.is_truthy())
        }
        kiln_config::StepCondition::Function { call, func } => {
            ctx.master.config().functions.call_step_condition(
                *call,
                *func,
                results.map(|r| r as i64),
                ctx.props,
                ctx.build_results.code(),
            )
        }
    }
}

/// Ends a step whose arguments could not be rendered: EXCEPTION, with a log naming the problem.
pub async fn exception(ctx: &StepContext<'_>, step: &StepConfig, why: &str) -> StepOutcome {
    ctx.error_log(&format!("step '{}': {why}", step.name)).await;
    StepOutcome {
        results: Results::Exception,
        state: format!("{} (exception)", step.name),
    }
}

pub(super) fn results_of(
    outcome: &Outcome,
    decode: Option<&std::collections::BTreeMap<i64, Results>>,
) -> Results {
    if outcome.interrupted {
        return Results::Cancelled;
    }
    if outcome.failure.is_some() {
        return Results::Exception;
    }
    match outcome.rc {
        None => Results::Exception,
        Some(rc) => match decode {
            Some(map) => map.get(&rc).copied().unwrap_or(Results::Failure),
            None if rc == 0 => Results::Success,
            None => Results::Failure,
        },
    }
}
