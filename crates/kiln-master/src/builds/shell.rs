//! The shell-command steps: `ShellCommand` (and `Configure`), `SetPropertyFromCommand`, the
//! warning-counting `Compile`, `Test` and `WarningCountingShellCommand`, and `ShellSequence`. A
//! command's output goes to its log as it arrives; the files its `logfiles` name, followed by the
//! worker, go to logs of their own.

use kiln_config::{ShellCommandConfig, ShellSequenceConfig, StepConfig, WarningCountingConfig};
use kiln_core::step::compute_result_and_termination;
use kiln_core::{Properties, PropertyValue, Results};
use kiln_db::LogType;
use kiln_proto::{Args, Value};

use super::logs::LogWriter;
use super::steps::{StepContext, StepOutcome, WorkerLost, exception, results_of, with_result};
use super::testresults::TestOutput;
use super::warnings::WarningScanner;
use crate::values::property_to_msgpack;
use crate::workers::command::{CommandIo, Stream};

/// Where a command's output goes: its log, and whatever the step watches in it.
pub struct StdioLog {
    pub log: LogWriter,
    /// A command's output kept for the step (`SetPropertyFromCommand`), as well as logged.
    pub capture: Option<Captured>,
    /// The logs of the command's `logfiles`.
    files: FileLogs,
    /// Warnings counted in the output (`Compile`, `Test`).
    scanner: Option<WarningScanner>,
    /// Test results read from the output (`Test` with `testResults`).
    tests: Option<TestOutput>,
}

/// Standard output and error, each kept up to [`MAX_CAPTURE`].
#[derive(Default)]
pub struct Captured {
    pub stdout: String,
    pub stderr: String,
}

/// The most of a command's output a step keeps for itself.
const MAX_CAPTURE: usize = 1 << 20;

/// Logs of followed files, made when the step starts (or, with `lazylogfiles`, when the file is
/// first written).
#[derive(Default)]
struct FileLogs {
    logs: Vec<(String, Option<LogWriter>)>,
    maker: Option<LogMaker>,
}

/// What it takes to add a log to the step later.
struct LogMaker {
    updates: crate::updates::Updates,
    stepid: kiln_core::StepId,
    redactions: crate::secrets::Redactions,
}

impl LogMaker {
    async fn make(&self, name: &str) -> Option<LogWriter> {
        let id = self
            .updates
            .add_log(self.stepid, name, LogType::Stdio)
            .await
            .ok()?;
        Some(LogWriter::new(
            self.updates.clone(),
            id,
            self.redactions.clone(),
        ))
    }
}

impl StdioLog {
    /// A log that only logs.
    pub fn plain(log: LogWriter) -> StdioLog {
        StdioLog {
            log,
            capture: None,
            files: FileLogs::default(),
            scanner: None,
            tests: None,
        }
    }

    /// The step's log, with the logs of `sh`'s `logfiles` ready (unless lazy).
    async fn for_command(
        ctx: &StepContext<'_>,
        log: LogWriter,
        sh: &ShellCommandConfig,
    ) -> StdioLog {
        let mut io = StdioLog::plain(log);
        if sh.logfiles.is_empty() {
            return io;
        }
        let maker = LogMaker {
            updates: ctx.master.updates.clone(),
            stepid: ctx.stepid,
            redactions: ctx.redactions.clone(),
        };
        for f in &sh.logfiles {
            let log = if sh.lazylogfiles {
                None
            } else {
                maker.make(&f.name).await
            };
            io.files.logs.push((f.name.clone(), log));
        }
        io.files.maker = Some(maker);
        io
    }

    async fn finish(&mut self) {
        self.log.finish().await;
        for (_, log) in &mut self.files.logs {
            if let Some(l) = log {
                l.finish().await;
            }
        }
        if let Some(s) = &mut self.scanner {
            s.finish();
        }
        if let Some(t) = &mut self.tests {
            t.finish();
        }
    }
}

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
        if stream != Stream::Header {
            if let Some(s) = &mut self.scanner {
                s.feed(text);
            }
            if let Some(t) = &mut self.tests {
                t.feed(text);
            }
        }
        self.log.write(stream, text).await;
    }
    async fn log_output(&mut self, name: &str, text: &str) {
        let Some(i) = self.files.logs.iter().position(|(n, _)| n == name) else {
            return;
        };
        if self.files.logs[i].1.is_none()
            && let Some(maker) = &self.files.maker
        {
            self.files.logs[i].1 = maker.make(name).await;
        }
        if let Some(log) = &mut self.files.logs[i].1 {
            log.write(Stream::Stdout, text).await;
        }
    }
    async fn flush(&mut self) {
        self.log.flush().await;
        for (_, log) in &mut self.files.logs {
            if let Some(l) = log {
                l.flush().await;
            }
        }
    }
    fn next_flush(&self) -> Option<tokio::time::Instant> {
        std::iter::once(self.log.next_flush())
            .chain(
                self.files
                    .logs
                    .iter()
                    .map(|(_, l)| l.as_ref().and_then(LogWriter::next_flush)),
            )
            .flatten()
            .min()
    }
}

/// How a command is shown while it runs: its description, or its first words.
pub fn starting_state(step: &StepConfig, sh: &ShellCommandConfig, props: &Properties) -> String {
    step.description.clone().unwrap_or_else(|| {
        sh.command
            .render(props)
            .map(|c| command_summary(&c))
            .unwrap_or_default()
    })
}

/// Buildbot's description of a command: all of it under three words, else its first two and
/// `...` (`'make test'`, `'echo failing; ...'`).
fn command_summary(cmd: &PropertyValue) -> String {
    let words: Vec<String> = match cmd {
        PropertyValue::List(items) => {
            let mut words = Vec::new();
            flatten(items, &mut words);
            words
        }
        other => other
            .render()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
    };
    if words.len() < 3 {
        format!("'{}'", words.join(" "))
    } else {
        format!("'{} ...'", words[..2].join(" "))
    }
}

fn flatten(items: &[PropertyValue], out: &mut Vec<String>) {
    for item in items {
        match item {
            PropertyValue::List(inner) => flatten(inner, out),
            other => out.push(other.render()),
        }
    }
}

/// What one command did.
struct Ran {
    results: Results,
    rc: Option<i64>,
}

/// Runs `command` with `sh`'s options, its output going to `io`. `Err(Ok(why))` is an argument
/// that did not render.
async fn run_command(
    ctx: &StepContext<'_>,
    sh: &ShellCommandConfig,
    workdir: &str,
    command: &PropertyValue,
    io: &mut StdioLog,
) -> Result<Ran, Result<String, WorkerLost>> {
    let command_value = match command {
        PropertyValue::List(items) => {
            let mut flat = Vec::new();
            flatten(items, &mut flat);
            Value::Array(flat.into_iter().map(Value::from).collect())
        }
        other => Value::from(other.render()),
    };
    let mut env: Vec<(Value, Value)> = Vec::new();
    for (k, v) in ctx.env.iter().chain(sh.env.iter()) {
        let v = ctx.render(v, &format!("env {k}")).map_err(Ok)?;
        env.retain(|(key, _)| key.as_str() != Some(k));
        env.push((Value::from(k.as_str()), property_to_msgpack(&v)));
    }
    let stdin = match &sh.initial_stdin {
        Some(r) => Value::from(ctx.render_string(r, "initialStdin").map_err(Ok)?),
        None => Value::Nil,
    };
    let logfiles = Value::Map(
        sh.logfiles
            .iter()
            .map(|f| {
                (
                    Value::from(f.name.as_str()),
                    Value::Map(vec![
                        (Value::from("filename"), Value::from(f.filename.as_str())),
                        (Value::from("follow"), Value::Boolean(f.follow)),
                    ]),
                )
            })
            .collect(),
    );
    let opt = |v: Option<f64>| v.map_or(Value::Nil, Value::F64);
    let args = Args::build(vec![
        ("workdir", Value::from(ctx.worker_path(workdir, ""))),
        ("command", command_value),
        ("env", Value::Map(env)),
        ("want_stdout", Value::Boolean(sh.want_stdout)),
        ("want_stderr", Value::Boolean(sh.want_stderr)),
        ("logfiles", logfiles),
        ("timeout", opt(sh.timeout)),
        ("maxTime", opt(sh.max_time)),
        ("max_lines", sh.max_lines.map_or(Value::Nil, Value::from)),
        ("sigtermTime", opt(sh.sigterm_time)),
        ("usePTY", Value::Boolean(sh.use_pty)),
        ("logEnviron", Value::Boolean(sh.log_environ)),
        ("initial_stdin", stdin),
        ("interruptSignal", Value::from(sh.interrupt_signal.as_str())),
    ]);
    let outcome = ctx.remote("shell", args, io).await;
    if let Ok(o) = &outcome
        && let Some(f) = &o.failure
    {
        io.log
            .write(Stream::Header, &format!("remote command failed: {f}\n"))
            .await;
    }
    let outcome = outcome.map_err(|l| Err(l.into()))?;
    Ok(Ran {
        results: results_of(&outcome, Some(&sh.decode_rc)),
        rc: outcome.rc,
    })
}

/// Runs one command as the whole step: its log is `stdio`. Returns the outcome and the finished
/// log (with what it captured, counted or parsed).
async fn one_command(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    sh: &ShellCommandConfig,
    workdir: &str,
    prepare: impl FnOnce(&mut StdioLog),
) -> Result<(StepOutcome, Option<(StdioLog, Option<i64>)>), WorkerLost> {
    let command = match ctx.render(&sh.command, "command") {
        Ok(c) => c,
        Err(e) => return Ok((exception(ctx, step, &e).await, None)),
    };
    let summary = step
        .description
        .clone()
        .unwrap_or_else(|| command_summary(&command));
    let log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return Ok((exception(ctx, step, &e).await, None)),
    };
    let mut io = StdioLog::for_command(ctx, log, sh).await;
    prepare(&mut io);
    let ran = run_command(ctx, sh, workdir, &command, &mut io).await;
    io.finish().await;
    let ran = match ran {
        Ok(r) => r,
        Err(Ok(why)) => return Ok((exception(ctx, step, &why).await, None)),
        Err(Err(lost)) => return Err(lost),
    };
    let done = step.description_done.clone().unwrap_or(summary);
    Ok((
        StepOutcome {
            results: ran.results,
            state: with_result(done, ran.results),
        },
        Some((io, ran.rc)),
    ))
}

pub async fn shell(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    sh: &ShellCommandConfig,
    workdir: &str,
) -> Result<StepOutcome, WorkerLost> {
    Ok(one_command(ctx, step, sh, workdir, |_| {}).await?.0)
}

/// `SetPropertyFromCommand`: the command's stripped output as `property`, or the dict
/// `extract_fn(rc, stdout, stderr)` returns. Nothing is set when the command fails.
pub async fn set_property_from_command(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    c: &kiln_config::SetPropertyFromCommandConfig,
    workdir: &str,
) -> Result<StepOutcome, WorkerLost> {
    const SOURCE: &str = "SetPropertyFromCommand Step";
    let (mut outcome, ran) = one_command(ctx, step, &c.shell, workdir, |io| {
        io.capture = Some(Captured::default());
    })
    .await?;
    let Some((io, rc)) = ran else {
        return Ok(outcome);
    };
    let out = io.capture.unwrap_or_default();
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
                let changes: Vec<(String, PropertyValue)> = map.into_iter().collect();
                property_changes(ctx, &changes).await;
                for (k, v) in changes {
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
        let value = PropertyValue::Str(value);
        property_changes(ctx, &[(name.clone(), value.clone())]).await;
        ctx.set_properties
            .push((name.clone(), value, SOURCE.into()));
        outcome.state = step
            .description_done
            .clone()
            .unwrap_or_else(|| format!("property '{name}' set"));
    }
    Ok(outcome)
}

/// The `property changes` log Buildbot's `SetPropertyFromCommand` writes: each property set, with
/// its value as Python's repr shows a string.
async fn property_changes(ctx: &StepContext<'_>, changes: &[(String, PropertyValue)]) {
    let mut sorted: Vec<&(String, PropertyValue)> = changes.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let lines: Vec<String> = sorted
        .iter()
        .map(|(k, v)| match v {
            PropertyValue::Str(s) => {
                format!("{k}: '{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
            }
            other => format!("{k}: {}", other.render()),
        })
        .collect();
    ctx.text_log("property changes", &lines.join("\n")).await;
}

/// `Compile`, `Test` and `WarningCountingShellCommand`: the command, with its warnings counted
/// (WARNINGS when there are any, FAILURE past `maxWarnCount`), listed in a `warnings (N)` log and
/// added to the build's `warnings-count`; `Test` with `testResults` also records its tests.
pub async fn warning_counting(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    w: &WarningCountingConfig,
    workdir: &str,
) -> Result<StepOutcome, WorkerLost> {
    let mut extra = Vec::new();
    if let Some(file) = &w.suppression_file {
        let path = match ctx.render_string(file, "suppressionFile") {
            Ok(p) => p,
            Err(e) => return Ok(exception(ctx, step, &e).await),
        };
        let text = match super::transfer::fetch(ctx, workdir, &path, 1 << 20).await? {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                let why = format!("cannot read the suppression file {path}: {e}");
                return Ok(exception(ctx, step, &why).await);
            }
        };
        match super::warnings::parse_suppression_file(&text) {
            Ok(list) => extra = list,
            Err(e) => {
                let why = format!("suppression file {path}: {e}");
                return Ok(exception(ctx, step, &why).await);
            }
        }
    }
    let scanner = match WarningScanner::new(w, extra) {
        Ok(s) => s,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let tests = match &w.test_results {
        Some(kiln_config::TestResultsFormat::LibTest) => Some(TestOutput::libtest()),
        Some(kiln_config::TestResultsFormat::Tap) => Some(TestOutput::tap()),
        _ => None,
    };
    let (mut outcome, ran) = one_command(ctx, step, &w.shell, workdir, |io| {
        io.scanner = Some(scanner);
        io.tests = tests;
    })
    .await?;
    let Some((io, _)) = ran else {
        return Ok(outcome);
    };
    if let Some(scanner) = io.scanner {
        let count = scanner.count;
        if count > 0 {
            let updates = &ctx.master.updates;
            let name = format!("warnings ({count})");
            if let Ok(id) = updates.add_log(ctx.stepid, &name, LogType::Text).await {
                let body = ctx.redactions.apply(scanner.kept);
                let _ = updates.append_log(id, 0, &body, true).await;
            }
        }
        let before = match ctx.props.get("warnings-count") {
            Some(PropertyValue::Int(n)) => *n,
            _ => 0,
        };
        ctx.set_properties.push((
            "warnings-count".into(),
            PropertyValue::Int(before + count as i64),
            "WarningCountingShellCommand".into(),
        ));
        if outcome.results == Results::Success && count > 0 {
            outcome.results = Results::Warnings;
        }
        if w.max_warn_count.is_some_and(|max| count > max) {
            outcome.results = Results::Failure;
        }
        if count > 0 {
            let done = step
                .description_done
                .clone()
                .unwrap_or_else(|| step.name.clone());
            outcome.state = with_result(format!("{done} warnings={count}"), outcome.results);
        }
    }
    let mut results = io.tests.map(TestOutput::into_results);
    if let Some(kiln_config::TestResultsFormat::JUnit(glob)) = &w.test_results {
        match super::testresults::junit_from_worker(ctx, workdir, glob).await? {
            Ok(r) => results = Some(r),
            Err(e) => {
                ctx.error_log(&format!("step '{}': {e}", step.name)).await;
                outcome.results =
                    kiln_core::results::worst_status(outcome.results, Results::Failure);
            }
        }
    }
    if let Some(results) = results {
        let counts = super::testresults::record(ctx, step, &results).await;
        if outcome.results == Results::Success && counts.failed > 0 {
            outcome.results = Results::Failure;
        }
        outcome.state = with_result(counts.describe(), outcome.results);
    }
    Ok(outcome)
}

/// `ShellSequence`: each command in turn, in its own log (`logname`, `stdio` by default), its
/// result folded in with its own flags; one that fails with `haltOnFailure` ends the sequence.
pub async fn sequence(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    q: &ShellSequenceConfig,
    workdir: &str,
) -> Result<StepOutcome, WorkerLost> {
    let mut logs: Vec<(String, StdioLog)> = Vec::new();
    let mut results = Results::Success;
    let mut lost = false;
    let mut trouble: Option<String> = None;
    for arg in &q.commands {
        let command = match ctx.render(&arg.command, "command") {
            Ok(PropertyValue::Null) => continue,
            Ok(c) => c,
            Err(e) => {
                trouble = Some(e);
                break;
            }
        };
        let name = arg.logname.clone().unwrap_or_else(|| "stdio".into());
        let i = match logs.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                let log = if name == "stdio" {
                    ctx.stdio().await
                } else {
                    match ctx
                        .master
                        .updates
                        .add_log(ctx.stepid, &name, LogType::Stdio)
                        .await
                    {
                        Ok(id) => Ok(LogWriter::new(
                            ctx.master.updates.clone(),
                            id,
                            ctx.redactions.clone(),
                        )),
                        Err(e) => Err(format!("creating the log {name}: {e}")),
                    }
                };
                match log {
                    Ok(l) => {
                        let io = StdioLog::for_command(ctx, l, &q.shell).await;
                        logs.push((name, io));
                        logs.len() - 1
                    }
                    Err(e) => {
                        trouble = Some(e);
                        break;
                    }
                }
            }
        };
        let ran = run_command(ctx, &q.shell, workdir, &command, &mut logs[i].1).await;
        match ran {
            Ok(ran) => {
                let (next, halt) = compute_result_and_termination(&arg.flags, ran.results, results);
                results = next;
                if halt || matches!(ran.results, Results::Cancelled | Results::Exception) {
                    results = kiln_core::results::worst_status(results, ran.results);
                    break;
                }
            }
            Err(Ok(why)) => {
                trouble = Some(why);
                break;
            }
            Err(Err(WorkerLost)) => {
                lost = true;
                break;
            }
        }
    }
    for (_, io) in &mut logs {
        io.finish().await;
    }
    if lost {
        return Err(WorkerLost);
    }
    if let Some(why) = trouble {
        return Ok(exception(ctx, step, &why).await);
    }
    let done = step
        .description_done
        .clone()
        .unwrap_or_else(|| step.name.clone());
    Ok(StepOutcome {
        results,
        state: with_result(done, results),
    })
}
