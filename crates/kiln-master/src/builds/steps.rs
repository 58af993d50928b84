//! Running one build step: rendering its arguments, issuing its remote commands and deciding its
//! result and state string.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_config::{ShellCommandConfig, StepConfig, StepKind};
use kiln_core::render::Renderable;
use kiln_core::{LogId, Properties, PropertyValue, Results, StepId};
use kiln_db::LogType;
use kiln_proto::{Args, Value};
use tokio::sync::watch;

use crate::builds::logs::LogWriter;
use crate::builds::{paths, transfer};
use crate::master::Master;
use crate::secrets::Redactions;
use crate::values::property_to_msgpack;
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

struct StdioLog {
    log: LogWriter,
    /// A command's output kept for the step (`SetPropertyFromCommand`), as well as logged.
    capture: Option<Captured>,
}

/// Standard output and error, each kept up to [`MAX_CAPTURE`].
#[derive(Default)]
struct Captured {
    stdout: String,
    stderr: String,
}

/// The most of a command's output a step keeps for itself.
const MAX_CAPTURE: usize = 1 << 20;

impl CommandIo for StdioLog {
    async fn output(&mut self, stream: Stream, text: &str) {
        if let Some(c) = &mut self.capture {
            let buf = match stream {
                Stream::Stdout => Some(&mut c.stdout),
                Stream::Stderr => Some(&mut c.stderr),
                Stream::Header => None,
            };
            if let Some(buf) = buf
                && buf.len() + text.len() <= MAX_CAPTURE
            {
                buf.push_str(text);
            }
        }
        self.log.write(stream, text).await;
    }
    async fn flush(&mut self) {
        self.log.flush().await;
    }
    fn next_flush(&self) -> Option<tokio::time::Instant> {
        self.log.next_flush()
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
        let updates = &self.master.updates;
        if let Ok(id) = updates
            .add_log(self.stepid, "err.text", LogType::Text)
            .await
        {
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
            io: StdioLog {
                log: ctx.stdio().await?,
                capture: None,
            },
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
fn command_summary(cmd: &PropertyValue) -> String {
    let words: Vec<String> = match cmd {
        PropertyValue::List(items) => items.iter().map(PropertyValue::render).collect(),
        other => other
            .render()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    };
    let shown: Vec<&str> = words.iter().take(3).map(String::as_str).collect();
    let more = if words.len() > 3 { " ..." } else { "" };
    format!("'{}{more}'", shown.join(" "))
}

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
        StepKind::ShellCommand(_) => &[("stdio", LogType::Stdio)],
        _ => &[],
    }
}

/// The state string a step starts with, written when the step is added: a shell command's
/// description, or else a summary of its rendered command; nothing for the other steps.
pub fn starting_state(step: &StepConfig, props: &Properties) -> String {
    match &step.kind {
        StepKind::ShellCommand(sh) => step.description.clone().unwrap_or_else(|| {
            sh.command
                .render(props)
                .map(|c| command_summary(&c))
                .unwrap_or_default()
        }),
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
        StepKind::ShellCommand(sh) => shell(ctx, step, sh, &workdir).await?,
        StepKind::Trigger(t) => crate::builds::trigger::run(ctx, step, t).await,
        StepKind::Source(s) => crate::builds::source::run(ctx, step, s, &workdir).await?,
        StepKind::SetProperty { property, value } => match ctx.render(value, "value") {
            Ok(v) => {
                ctx.set_properties
                    .push((property.clone(), v, step.name.clone()));
                finished(step, || "Set".into(), Results::Success)
            }
            Err(e) => exception(ctx, step, &e).await,
        },
        StepKind::SetProperties { properties } => match ctx.render(properties, "properties") {
            Ok(PropertyValue::Map(map)) => {
                for (k, v) in map {
                    ctx.set_properties.push((k, v, step.name.clone()));
                }
                finished(step, || "Set".into(), Results::Success)
            }
            Ok(other) => {
                let why = format!("properties must render to a dict, not {}", other.render());
                exception(ctx, step, &why).await
            }
            Err(e) => exception(ctx, step, &e).await,
        },
        StepKind::SetPropertyFromCommand(c) => {
            set_property_from_command(ctx, step, c, &workdir).await?
        }
        StepKind::MakeDirectory { dir } => simple(ctx, step, "mkdir", dir, &workdir).await?,
        StepKind::RemoveDirectory { dir } => simple(ctx, step, "rmdir", dir, &workdir).await?,
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
            let src = match ctx.render_string(mastersrc, "mastersrc") {
                Ok(s) => s,
                Err(e) => return Ok(exception(ctx, step, &e).await),
            };
            let path = master_path(ctx.master, &src);
            match tokio::fs::File::open(&path).await {
                Ok(f) => {
                    transfer::download(
                        ctx,
                        step,
                        &workdir,
                        workerdest,
                        *mode,
                        *maxsize,
                        *blocksize,
                        transfer::Source::File(f),
                    )
                    .await?
                }
                Err(e) => {
                    let mut log = ctx.stdio().await.ok();
                    if let Some(l) = log.as_mut() {
                        l.write(
                            Stream::Header,
                            &format!("File '{}' not available at master: {e}\n", path.display()),
                        )
                        .await;
                        l.finish().await;
                    }
                    StepOutcome {
                        results: Results::Failure,
                        state: with_result(
                            step.description_done
                                .clone()
                                .unwrap_or_else(|| "download failed".into()),
                            Results::Failure,
                        ),
                    }
                }
            }
        }
        StepKind::StringDownload {
            s,
            workerdest,
            mode,
            maxsize,
            blocksize,
        } => {
            let text = match ctx.render_string(s, "s") {
                Ok(t) => t,
                Err(e) => return Ok(exception(ctx, step, &e).await),
            };
            transfer::download(
                ctx,
                step,
                &workdir,
                workerdest,
                *mode,
                *maxsize,
                *blocksize,
                transfer::Source::Bytes(text.into_bytes(), 0),
            )
            .await?
        }
    };
    Ok(outcome)
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

async fn shell(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    sh: &ShellCommandConfig,
    workdir: &str,
) -> Result<StepOutcome, WorkerLost> {
    Ok(shell_captured(ctx, step, sh, workdir, false).await?.0)
}

/// Runs a shell command; with `capture`, its output is also returned, with its exit code.
async fn shell_captured(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    sh: &ShellCommandConfig,
    workdir: &str,
    capture: bool,
) -> Result<(StepOutcome, Option<(Captured, Option<i64>)>), WorkerLost> {
    let command = match ctx.render(&sh.command, "command") {
        Ok(c) => c,
        Err(e) => return Ok((exception(ctx, step, &e).await, None)),
    };
    let command_value = match &command {
        PropertyValue::List(items) => {
            let mut flat = Vec::new();
            flatten(items, &mut flat);
            Value::Array(flat.into_iter().map(Value::from).collect())
        }
        other => Value::from(other.render()),
    };
    let mut env: Vec<(Value, Value)> = Vec::new();
    for (k, v) in ctx.env.iter().chain(sh.env.iter()) {
        match ctx.render(v, &format!("env {k}")) {
            Ok(v) => {
                env.retain(|(key, _)| key.as_str() != Some(k));
                env.push((Value::from(k.as_str()), property_to_msgpack(&v)));
            }
            Err(e) => return Ok((exception(ctx, step, &e).await, None)),
        }
    }
    let stdin = match &sh.initial_stdin {
        Some(r) => match ctx.render_string(r, "initialStdin") {
            Ok(s) => Value::from(s),
            Err(e) => return Ok((exception(ctx, step, &e).await, None)),
        },
        None => Value::Nil,
    };
    let opt = |v: Option<f64>| v.map_or(Value::Nil, Value::F64);
    let args = Args::build(vec![
        ("workdir", Value::from(ctx.worker_path(workdir, ""))),
        ("command", command_value),
        ("env", Value::Map(env)),
        ("want_stdout", Value::Boolean(sh.want_stdout)),
        ("want_stderr", Value::Boolean(sh.want_stderr)),
        ("logfiles", Value::Map(vec![])),
        ("timeout", opt(sh.timeout)),
        ("maxTime", opt(sh.max_time)),
        ("max_lines", sh.max_lines.map_or(Value::Nil, Value::from)),
        ("sigtermTime", opt(sh.sigterm_time)),
        ("usePTY", Value::Boolean(sh.use_pty)),
        ("logEnviron", Value::Boolean(sh.log_environ)),
        ("initial_stdin", stdin),
        ("interruptSignal", Value::from(sh.interrupt_signal.as_str())),
    ]);
    // The step started with this state (see `starting_state`).
    let summary = step
        .description
        .clone()
        .unwrap_or_else(|| command_summary(&command));
    let log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return Ok((exception(ctx, step, &e).await, None)),
    };
    let mut io = StdioLog {
        log,
        capture: capture.then(Captured::default),
    };
    let outcome = ctx.remote("shell", args, &mut io).await;
    if let Ok(o) = &outcome
        && let Some(f) = &o.failure
    {
        io.log
            .write(Stream::Header, &format!("remote command failed: {f}\n"))
            .await;
    }
    io.log.finish().await;
    let outcome = outcome?;
    let results = results_of(&outcome, Some(&sh.decode_rc));
    let done = step.description_done.clone().unwrap_or(summary);
    let captured = io.capture.take().map(|c| (c, outcome.rc));
    Ok((
        StepOutcome {
            results,
            state: with_result(done, results),
        },
        captured,
    ))
}

/// `SetPropertyFromCommand`: the command's stripped output as `property`, or the dict
/// `extract_fn(rc, stdout, stderr)` returns. Nothing is set when the command fails.
async fn set_property_from_command(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    c: &kiln_config::SetPropertyFromCommandConfig,
    workdir: &str,
) -> Result<StepOutcome, WorkerLost> {
    const SOURCE: &str = "SetPropertyFromCommand Step";
    let (mut outcome, captured) = shell_captured(ctx, step, &c.shell, workdir, true).await?;
    let Some((out, rc)) = captured else {
        return Ok(outcome);
    };
    if let Some(f) = c.extract_fn {
        let args = [
            kiln_config::Data::Int(rc.unwrap_or(-1)),
            kiln_config::Data::Str(out.stdout),
            kiln_config::Data::Str(out.stderr),
        ];
        let config = ctx.master.config();
        let result = config
            .functions
            .call(f, &args, &[])
            .and_then(|d| d.to_property());
        match result {
            Ok(PropertyValue::Map(map)) => {
                let n = map.len();
                for (k, v) in map {
                    ctx.set_properties.push((k, v, SOURCE.into()));
                }
                if outcome.results == Results::Success {
                    outcome.state = step
                        .description_done
                        .clone()
                        .unwrap_or_else(|| format!("{n} properties set"));
                }
            }
            Ok(other) => {
                let why = format!("extract_fn must return a dict, not {}", other.render());
                return Ok(exception(ctx, step, &why).await);
            }
            Err(e) => return Ok(exception(ctx, step, &format!("extract_fn failed:\n{e}")).await),
        }
    } else if let Some(name) = &c.property
        && outcome.results == Results::Success
    {
        let value = if c.strip {
            out.stdout.trim().to_string()
        } else {
            out.stdout
        };
        ctx.set_properties
            .push((name.clone(), PropertyValue::Str(value), SOURCE.into()));
        outcome.state = step
            .description_done
            .clone()
            .unwrap_or_else(|| format!("property '{name}' set"));
    }
    Ok(outcome)
}

fn flatten(items: &[PropertyValue], out: &mut Vec<String>) {
    for item in items {
        match item {
            PropertyValue::List(inner) => flatten(inner, out),
            other => out.push(other.render()),
        }
    }
}

/// `mkdir` and `rmdir` of one directory.
async fn simple(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    name: &str,
    dir: &Renderable,
    _workdir: &str,
) -> Result<StepOutcome, WorkerLost> {
    let dir = match ctx.render_string(dir, "dir") {
        Ok(d) => d,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    // Buildbot resolves these directories against the builder's directory, not the workdir.
    let info = ctx
        .conn
        .info
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let path = paths::join(&info, &[ctx.workerbuilddir, &dir]);
    let args = Args::build(vec![
        ("paths", Value::Array(vec![Value::from(path)])),
        ("logEnviron", Value::Boolean(false)),
    ]);
    let log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let mut io = StdioLog { log, capture: None };
    let outcome = ctx.remote(name, args, &mut io).await;
    io.log.finish().await;
    let results = results_of(&outcome?, None);
    let state = match (name, results) {
        ("rmdir", Results::Success) => "Deleted".to_string(),
        ("mkdir", Results::Success) => "Created".to_string(),
        (_, r) => with_result(step.name.clone(), r),
    };
    Ok(StepOutcome { results, state })
}
