//! The `shell` command: run a process, stream its output, enforce its timeouts.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kiln_proto::{ArgError, Args, Value};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::mpsc;

use super::{Ctx, elapsed, header, rc, text_value};
use crate::output::LineSplitter;

/// Output is sent at least this often while a command is producing it, so logs stay live even
/// though the master's `buffer_timeout` allows seconds.
const LIVE_FLUSH: Duration = Duration::from_millis(100);
/// Output batches sent before the first of them must be acknowledged: the master stores them in
/// order while the next ones travel, and a slow master still holds the command back.
const UPDATES_IN_FLIGHT: usize = 8;
/// How often timeouts are checked.
const TICK: Duration = Duration::from_millis(250);

pub struct ShellArgs {
    workdir: String,
    command: CommandLine,
    env: Vec<(String, Value)>,
    want_stdout: bool,
    want_stderr: bool,
    timeout: Option<f64>,
    max_time: Option<f64>,
    sigterm_time: Option<f64>,
    max_lines: Option<u64>,
    log_environ: bool,
    initial_stdin: Option<String>,
    use_pty: bool,
    interrupt_signal: Signal,
    logfiles: Vec<(String, Value)>,
}

enum CommandLine {
    Argv(Vec<String>),
    Shell(String),
}

impl CommandLine {
    fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Argv(argv) => argv.clone(),
            CommandLine::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
        }
    }

    fn display(&self) -> String {
        match self {
            CommandLine::Argv(argv) => argv
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
            CommandLine::Shell(s) => s.clone(),
        }
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl ShellArgs {
    pub fn parse(args: &Args) -> Result<ShellArgs, ArgError> {
        let err = |name: &str, problem: &str| ArgError {
            command: "shell".into(),
            name: name.into(),
            problem: problem.into(),
        };
        let command = match args.get("command") {
            Some(Value::String(s)) => {
                CommandLine::Shell(s.as_str().unwrap_or_default().to_string())
            }
            Some(Value::Array(items)) => {
                let argv: Vec<String> = items.iter().map(value_to_arg).collect();
                if argv.is_empty() {
                    return Err(err("command", "is an empty list"));
                }
                CommandLine::Argv(argv)
            }
            Some(_) => return Err(err("command", "is neither a string nor a list")),
            None => return Err(err("command", "is missing")),
        };
        let interrupt_signal = match args.opt_str("interruptSignal")?.as_deref() {
            None | Some("KILL") => Signal::SIGKILL,
            Some("TERM") => Signal::SIGTERM,
            Some("INT") => Signal::SIGINT,
            Some("HUP") => Signal::SIGHUP,
            Some("QUIT") => Signal::SIGQUIT,
            Some(other) => {
                return Err(err(
                    "interruptSignal",
                    &format!("names an unknown signal {other:?}"),
                ));
            }
        };
        let positive = |v: Option<f64>| v.filter(|t| *t > 0.0);
        Ok(ShellArgs {
            workdir: args.str("workdir")?,
            command,
            env: args.map("env")?,
            want_stdout: args.bool_or("want_stdout", true)?,
            want_stderr: args.bool_or("want_stderr", true)?,
            timeout: positive(args.opt_f64("timeout")?),
            max_time: positive(args.opt_f64("maxTime")?),
            sigterm_time: positive(args.opt_f64("sigtermTime")?),
            max_lines: args
                .opt_i64("max_lines")?
                .and_then(|n| u64::try_from(n).ok()),
            log_environ: args.bool_or("logEnviron", true)?,
            initial_stdin: args.opt_str("initial_stdin")?,
            use_pty: args.bool_or("usePTY", false)?,
            interrupt_signal,
            logfiles: args.map("logfiles")?,
        })
    }
}

fn value_to_arg(v: &Value) -> String {
    match v {
        Value::String(s) => s.as_str().unwrap_or_default().to_string(),
        Value::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        other => other.to_string(),
    }
}

/// The environment of the process: the worker's own, changed as the master asks. A nil value unsets
/// a variable, a list is joined with `:`, and `${NAME}` is replaced by the worker's value of NAME.
fn environment(changes: &[(String, Value)]) -> HashMap<String, String> {
    let base: HashMap<String, String> = std::env::vars().collect();
    let mut env = base.clone();
    for (key, value) in changes {
        match value {
            Value::Nil => {
                env.remove(key);
            }
            Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| substitute(&value_to_arg(i), &base))
                    .collect();
                env.insert(key.clone(), parts.join(":"));
            }
            other => {
                env.insert(key.clone(), substitute(&value_to_arg(other), &base));
            }
        }
    }
    env
}

fn substitute(value: &str, base: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                let name = &rest[start + 2..start + 2 + end];
                out.push_str(base.get(name).map(String::as_str).unwrap_or(""));
                rest = &rest[start + 3 + end..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

enum Kill {
    Timeout,
    MaxTime,
    MaxLines,
    Interrupt,
}

pub async fn run(args: ShellArgs, ctx: &Ctx) -> Result<(), String> {
    let started = Instant::now();
    let argv = args.command.argv();
    let env = environment(&args.env);
    let workdir = ctx.path(&args.workdir);

    // The files are looked at before the command starts, so changes it makes can be told apart.
    let mut logfiles = super::logfiles::LogFiles::new(&workdir, &args.logfiles);
    let head = describe(&args, &argv, &env, &workdir, &logfiles);

    // Buildbot's worker creates a missing working directory before it runs the command.
    if !workdir.is_dir()
        && let Err(e) = std::fs::create_dir_all(&workdir)
    {
        let text = format!(
            "{head}cannot create working directory {}: {e}\n",
            workdir.display()
        );
        return ctx.update(vec![header(&text), rc(-1), elapsed(0.0)]).await;
    }
    let (mut child, pty) = match spawn(&args, &argv, &env, &workdir) {
        Ok(spawned) => spawned,
        Err(e) => {
            let text = format!("{head}error: {e}\n");
            let secs = started.elapsed().as_secs_f64();
            return ctx.update(vec![header(&text), rc(-1), elapsed(secs)]).await;
        }
    };
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .map(Pid::from_raw);
    ctx.update(vec![header(&head)]).await?;

    let output = read_output(&args, &mut child, pty);
    let mut follow = Follow::new(&args, ctx, &argv, pgid, started);
    follow.run(output, &mut logfiles).await?;

    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for the process: {e}"))?;
    for (name, text) in logfiles.poll() {
        follow.batch.push_log(name, text);
    }
    let ended = Ended {
        stdout: args.want_stdout.then(|| follow.out_lines.finish()),
        stderr: args.want_stderr.then(|| follow.err_lines.finish()),
        status,
        killed: follow.killed,
        secs: started.elapsed().as_secs_f64(),
    };
    let tail = ended.report(follow.batch.take());
    let last = ctx.update(tail).await;
    follow.batch.drain().await?;
    last
}

/// Starts the command in its own process group, with its standard streams on pipes or, with
/// `usePTY`, on a pseudo-terminal whose master end is returned.
fn spawn(
    args: &ShellArgs,
    argv: &[String],
    env: &HashMap<String, String>,
    workdir: &std::path::Path,
) -> Result<(tokio::process::Child, Option<std::fs::File>), String> {
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .current_dir(workdir)
        .env_clear()
        .envs(env)
        .process_group(0)
        .kill_on_drop(true);
    // With usePTY the command's three standard streams are one pseudo-terminal, as on Buildbot's
    // worker: programs see a terminal, and stdout and stderr arrive merged, as stdout.
    let mut pty_master: Option<std::fs::File> = None;
    if args.use_pty {
        let (master, stdin, stdout, stderr) =
            open_pty().map_err(|e| format!("cannot open a pseudo-terminal: {e}"))?;
        command.stdin(stdin).stdout(stdout).stderr(stderr);
        pty_master = Some(master);
    } else {
        command
            .stdin(if args.initial_stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    let spawned = command.spawn();
    // The terminal's other end must be closed here, or reading it would never see the end.
    drop(command);
    let child = spawned.map_err(|e| format!("cannot run {:?}: {e}", argv[0]))?;
    Ok((child, pty_master))
}

/// Feeds the command its initial input and reads its output into a channel, which closes when
/// the command's streams do.
fn read_output(
    args: &ShellArgs,
    child: &mut tokio::process::Child,
    pty: Option<std::fs::File>,
) -> mpsc::Receiver<(Stream, Vec<u8>)> {
    let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>(16);
    match pty {
        Some(mut master) => {
            if let Some(input) = args.initial_stdin.clone()
                && let Ok(mut writer) = master.try_clone()
            {
                std::thread::spawn(move || {
                    use std::io::Write;
                    let _ = writer.write_all(input.as_bytes());
                });
            }
            tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut buf = vec![0u8; 64 * 1024];
                // Reading a terminal whose other end is closed fails with EIO: that is the end.
                while let Ok(n) = master.read(&mut buf) {
                    if n == 0
                        || tx
                            .blocking_send((Stream::Stdout, buf[..n].to_vec()))
                            .is_err()
                    {
                        break;
                    }
                }
            });
        }
        None => {
            if let (Some(input), Some(mut stdin)) = (args.initial_stdin.clone(), child.stdin.take())
            {
                tokio::spawn(async move {
                    let _ = stdin.write_all(input.as_bytes()).await;
                });
            }
            if let Some(out) = child.stdout.take() {
                tokio::spawn(pump(out, Stream::Stdout, tx.clone()));
            }
            if let Some(err) = child.stderr.take() {
                tokio::spawn(pump(err, Stream::Stderr, tx));
            }
        }
    }
    rx
}

/// A running command followed until its output ends: its output batched and sent, its limits
/// (`timeout`, `maxTime`, `maxLines`) enforced, an interrupt passed on as a signal.
struct Follow<'a> {
    args: &'a ShellArgs,
    ctx: &'a Ctx,
    argv: &'a [String],
    pgid: Option<Pid>,
    started: Instant,
    out_lines: LineSplitter,
    err_lines: LineSplitter,
    batch: Batch,
    last_output: Instant,
    line_count: u64,
    killed: Option<Kill>,
    /// When the output waiting in the batch must be sent, if any waits.
    flush_deadline: Option<tokio::time::Instant>,
}

impl<'a> Follow<'a> {
    fn new(
        args: &'a ShellArgs,
        ctx: &'a Ctx,
        argv: &'a [String],
        pgid: Option<Pid>,
        started: Instant,
    ) -> Self {
        Follow {
            args,
            ctx,
            argv,
            pgid,
            started,
            out_lines: LineSplitter::new(ctx.settings.max_line_length),
            err_lines: LineSplitter::new(ctx.settings.max_line_length),
            batch: Batch::default(),
            last_output: Instant::now(),
            line_count: 0,
            killed: None,
            flush_deadline: None,
        }
    }

    async fn run(
        &mut self,
        mut output: mpsc::Receiver<(Stream, Vec<u8>)>,
        logfiles: &mut super::logfiles::LogFiles,
    ) -> Result<(), String> {
        let mut interrupt = self.ctx.interrupt.clone();
        let mut tick = tokio::time::interval(TICK);
        loop {
            let deadline = self.flush_deadline;
            tokio::select! {
                chunk = output.recv() => {
                    let Some((stream, data)) = chunk else { break };
                    self.output(stream, &data).await?;
                }
                _ = async { if let Some(d) = deadline { tokio::time::sleep_until(d).await } }, if deadline.is_some() => {
                    self.batch.flush(self.ctx).await?;
                    self.flush_deadline = None;
                }
                _ = tick.tick() => self.tick(logfiles).await,
                changed = interrupt.changed(), if self.killed.is_none() => {
                    if changed.is_err() { continue; }
                    let why = interrupt.borrow().clone().unwrap_or_default();
                    self.interrupt(&why).await;
                }
            }
        }
        Ok(())
    }

    /// Output of the command: split into lines, counted against `maxLines`, and sent when the
    /// batch is full or has waited long enough.
    async fn output(&mut self, stream: Stream, data: &[u8]) -> Result<(), String> {
        self.last_output = Instant::now();
        let (splitter, wanted, name) = match stream {
            Stream::Stdout => (&mut self.out_lines, self.args.want_stdout, "stdout"),
            Stream::Stderr => (&mut self.err_lines, self.args.want_stderr, "stderr"),
        };
        let text = splitter.feed(data);
        self.line_count += text.matches('\n').count() as u64;
        if wanted {
            self.batch.push(name, text);
        }
        if let Some(max) = self.args.max_lines
            && self.line_count > max
            && self.killed.is_none()
        {
            self.batch.push(
                "header",
                format!("command exceeded {max} lines of output, attempting to kill\n"),
            );
            self.killed = Some(Kill::MaxLines);
            terminate(self.pgid, Signal::SIGKILL, None).await;
        }
        if self.batch.bytes >= self.ctx.settings.buffer_size {
            self.batch.flush(self.ctx).await?;
            self.flush_deadline = None;
        } else if !self.batch.is_empty() && self.flush_deadline.is_none() {
            let flush_after = LIVE_FLUSH.min(Duration::from_secs_f64(
                self.ctx.settings.buffer_timeout.max(0.0),
            ));
            self.flush_deadline = Some(tokio::time::Instant::now() + flush_after);
        }
        Ok(())
    }

    /// Every tick: the followed log files are read, and the timeouts checked.
    async fn tick(&mut self, logfiles: &mut super::logfiles::LogFiles) {
        for (name, text) in logfiles.poll() {
            self.batch.push_log(name, text);
        }
        if self.killed.is_some() {
            return;
        }
        let argv = self.argv;
        let silent = self.last_output.elapsed().as_secs_f64();
        let running = self.started.elapsed().as_secs_f64();
        let (kill, text) = if let Some(t) = self.args.timeout.filter(|t| silent > *t) {
            let text = format!("{t} seconds without output");
            (Kill::Timeout, text)
        } else if let Some(t) = self.args.max_time.filter(|t| running > *t) {
            (Kill::MaxTime, format!("{t} seconds elapsed"))
        } else {
            return;
        };
        self.batch.push(
            "header",
            format!("command timed out: {text} running {argv:?}, attempting to kill\n"),
        );
        self.killed = Some(kill);
        terminate(self.pgid, Signal::SIGKILL, self.args.sigterm_time).await;
    }

    /// The step was interrupted: the command gets the configured signal.
    async fn interrupt(&mut self, why: &str) {
        self.batch.push("header", format!("killing: {why}\n"));
        self.killed = Some(Kill::Interrupt);
        terminate(
            self.pgid,
            self.args.interrupt_signal,
            self.args.sigterm_time,
        )
        .await;
    }
}

/// The header that opens a command's log: what runs, where, with which limits and environment.
fn describe(
    args: &ShellArgs,
    argv: &[String],
    env: &std::collections::HashMap<String, String>,
    workdir: &std::path::Path,
    logfiles: &super::logfiles::LogFiles,
) -> String {
    let mut head = format!("{}\n in dir {}", args.command.display(), workdir.display());
    match args.timeout {
        Some(t) => head.push_str(&format!(" (timeout {t} secs)\n")),
        None => head.push('\n'),
    }
    if let Some(t) = args.max_time {
        head.push_str(&format!(" (maxTime {t} secs)\n"));
    }
    head.push_str(&format!(" watching logfiles {}\n", logfiles.describe()));
    head.push_str(&format!(" argv: {argv:?}\n"));
    if args.log_environ {
        head.push_str(" environment:\n");
        let mut keys: Vec<&String> = env.keys().collect();
        keys.sort();
        for k in keys {
            head.push_str(&format!("  {k}={}\n", env[k]));
        }
    }
    head.push_str(&format!(
        " using PTY: {}\n",
        if args.use_pty { "True" } else { "False" }
    ));
    head
}

/// How a command ended, for its last update.
struct Ended {
    /// What is left of each stream that is wanted: its last, unterminated line.
    stdout: Option<String>,
    stderr: Option<String>,
    status: std::process::ExitStatus,
    killed: Option<Kill>,
    secs: f64,
}

impl Ended {
    /// The last update: what remains of the output, why the command was killed, its exit code
    /// (-1 when killed or ended by a signal) and its elapsed time.
    fn report(self, mut tail: Vec<(String, Value)>) -> Vec<(String, Value)> {
        use std::os::unix::process::ExitStatusExt;
        let code = match (self.status.code(), &self.killed) {
            (Some(c), None) => i64::from(c),
            _ => -1,
        };
        if let Some(sig) = self.status.signal() {
            tail.push(header(&format!("process killed by signal {sig}\n")));
        }
        for (name, rest) in [("stdout", self.stdout), ("stderr", self.stderr)] {
            if let Some(rest) = rest.filter(|r| !r.is_empty()) {
                tail.push((name.into(), text_value(rest)));
            }
        }
        let reason = match self.killed {
            Some(Kill::Timeout) => Some("timeout_without_output"),
            Some(Kill::MaxTime) => Some("timeout"),
            Some(Kill::MaxLines) => Some("max_lines_failure"),
            Some(Kill::Interrupt) | None => None,
        };
        if let Some(reason) = reason {
            tail.push(("failure_reason".into(), Value::from(reason)));
        }
        tail.push(rc(code));
        tail.push(header(&format!("elapsedTime={:.6}\n", self.secs)));
        tail.push(elapsed(self.secs));
        tail
    }
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(
    mut reader: R,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.send((stream, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Opens a pseudo-terminal: its controlling end, and three handles on the terminal end for the
/// command's stdin, stdout and stderr.
fn open_pty() -> std::io::Result<(std::fs::File, Stdio, Stdio, Stdio)> {
    let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
    let out = pty.slave.try_clone()?;
    let err = pty.slave.try_clone()?;
    Ok((
        std::fs::File::from(pty.master),
        Stdio::from(pty.slave),
        Stdio::from(out),
        Stdio::from(err),
    ))
}

/// Signals the whole process group, so that a shell's children die with it. With a `sigterm_time`,
/// the group first gets SIGTERM and that long to exit.
async fn terminate(pgid: Option<Pid>, signal: Signal, sigterm_time: Option<f64>) {
    let Some(pgid) = pgid else { return };
    if let Some(grace) = sigterm_time {
        let _ = killpg(pgid, Signal::SIGTERM);
        let pg = pgid;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs_f64(grace)).await;
            let _ = killpg(pg, signal);
        });
    } else {
        let _ = killpg(pgid, signal);
    }
}

/// Output waiting to be sent, in arrival order, with consecutive pieces of one stream merged.
#[derive(Default)]
struct Batch {
    items: Vec<(Key, String)>,
    bytes: usize,
    inflight: std::collections::VecDeque<crate::connection::Answer>,
}

/// What a piece of output is: a stream (`stdout`, `stderr`, `header`), or a followed log file.
#[derive(PartialEq)]
enum Key {
    Stream(&'static str),
    Log(String),
}

impl Batch {
    fn push(&mut self, name: &'static str, text: String) {
        self.push_key(Key::Stream(name), text);
    }

    fn push_log(&mut self, name: String, text: String) {
        self.push_key(Key::Log(name), text);
    }

    fn push_key(&mut self, key: Key, text: String) {
        if text.is_empty() {
            return;
        }
        self.bytes += text.len();
        match self.items.last_mut() {
            Some((last, buf)) if *last == key => buf.push_str(&text),
            _ => self.items.push((key, text)),
        }
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn take(&mut self) -> Vec<(String, Value)> {
        self.bytes = 0;
        self.items
            .drain(..)
            .map(|(key, text)| match key {
                Key::Stream(name) => (name.to_string(), text_value(text)),
                Key::Log(name) => (
                    "log".to_string(),
                    Value::Array(vec![Value::from(name), text_value(text)]),
                ),
            })
            .collect()
    }

    async fn flush(&mut self, ctx: &Ctx) -> Result<(), String> {
        let pairs = self.take();
        if pairs.is_empty() {
            return Ok(());
        }
        let op = kiln_proto::Op::Update {
            command_id: ctx.command_id.clone(),
            args: pairs,
        };
        self.inflight.push_back(ctx.link.send(op).await?);
        while self.inflight.len() > UPDATES_IN_FLIGHT {
            self.wait_one().await?;
        }
        Ok(())
    }

    async fn wait_one(&mut self) -> Result<(), String> {
        match self.inflight.pop_front() {
            Some(answer) => answer
                .await
                .unwrap_or_else(|_| Err("connection lost".into()))
                .map(|_| ()),
            None => Ok(()),
        }
    }

    /// Waits until the master has taken every batch sent.
    async fn drain(&mut self) -> Result<(), String> {
        while !self.inflight.is_empty() {
            self.wait_one().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_substitution_unsetting_and_lists() {
        let mut base = HashMap::new();
        base.insert("HOME".to_string(), "/home/w".to_string());
        assert_eq!(substitute("${HOME}/bin:${NOPE}x", &base), "/home/w/bin:x");
        assert_eq!(substitute("a${unterminated", &base), "a${unterminated");
        let env = environment(&[
            ("PATH".into(), Value::Nil),
            (
                "LIST".into(),
                Value::Array(vec![Value::from("a"), Value::from("b")]),
            ),
        ]);
        assert!(!env.contains_key("PATH"));
        assert_eq!(env.get("LIST").map(String::as_str), Some("a:b"));
    }
}
