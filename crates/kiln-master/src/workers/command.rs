//! Running one remote command on a worker: start it, feed its traffic to the step, interrupt it on
//! request, and collect how it ended.

use std::future::Future;

use kiln_proto::{Op, Value};
use tokio::sync::watch;

use crate::workers::connection::{Connection, Lost};

/// The output streams a command reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Header,
    Stdout,
    Stderr,
}

impl Stream {
    /// Buildbot's one-letter prefix for lines of this stream in a stdio log.
    pub fn prefix(self) -> char {
        match self {
            Stream::Header => 'h',
            Stream::Stdout => 'o',
            Stream::Stderr => 'e',
        }
    }
}

/// Where a command's output and file data go; each step provides what it needs.
pub trait CommandIo: Send {
    fn output(&mut self, _stream: Stream, _text: &str) -> impl Future<Output = ()> + Send {
        async {}
    }
    fn log_output(&mut self, _log: &str, _text: &str) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// Called after each batch of updates and at [`CommandIo::next_flush`]: stores the output that
    /// is due.
    fn flush(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
    /// When kept output must be stored at the latest, if any is kept.
    fn next_flush(&self) -> Option<tokio::time::Instant> {
        None
    }
    /// A block of an uploaded file or directory archive.
    fn write(&mut self, _data: &[u8]) -> impl Future<Output = Result<(), String>> + Send {
        async { Err("this command does not upload".to_string()) }
    }
    /// The upload is complete (for a directory: unpack it now).
    fn finish_upload(&mut self) -> impl Future<Output = Result<(), String>> + Send {
        async { Err("this command does not upload".to_string()) }
    }
    fn utime(
        &mut self,
        _access: f64,
        _modified: f64,
    ) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }
    /// The next at most `length` bytes of a download; empty at the end.
    fn read(&mut self, _length: u64) -> impl Future<Output = Result<Vec<u8>, String>> + Send {
        async { Err("this command does not download".to_string()) }
    }
}

/// A command that needs no output.
pub struct NoIo;
impl CommandIo for NoIo {}

/// How a command ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub rc: Option<i64>,
    pub failure_reason: Option<String>,
    /// The error the worker reported with `complete`, or with which it refused to start.
    pub failure: Option<String>,
    pub interrupted: bool,
    pub stat: Option<Vec<i64>>,
    pub files: Option<Vec<String>>,
}

/// The text of an output update: Buildbot sends `[text, offsets, times]` and only the text matters.
/// The value is consumed, so the text is moved out rather than copied.
fn text_of(v: Value) -> Option<String> {
    match v {
        Value::Array(parts) => parts.into_iter().next().and_then(text_of),
        Value::String(s) => s.into_str(),
        Value::Binary(b) => Some(
            String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        ),
        _ => None,
    }
}

/// Runs `name` with `args` on the worker until it completes.
pub async fn run<Io: CommandIo>(
    conn: &Connection,
    builder: Option<&str>,
    name: &str,
    args: Value,
    io: &mut Io,
    mut interrupt: Option<&mut watch::Receiver<Option<String>>>,
) -> Result<Outcome, Lost> {
    let (command_id, mut events) = conn.new_command().await;
    let start = Op::StartCommand {
        command_id: command_id.clone(),
        command_name: name.to_string(),
        args,
        builder_name: builder.map(str::to_string),
    };
    let mut outcome = Outcome::default();
    match conn.request(start).await {
        Err(lost) => {
            conn.forget_command(&command_id).await;
            return Err(lost);
        }
        Ok(Err(refused)) => {
            conn.forget_command(&command_id).await;
            outcome.failure = Some(refused);
            return Ok(outcome);
        }
        Ok(Ok(_)) => {}
    }
    let result = loop {
        let flush_at = io.next_flush();
        let event = tokio::select! {
            e = events.recv() => e,
            _ = async {
                match flush_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {
                io.flush().await;
                continue;
            }
            why = async {
                match interrupt.as_deref_mut() {
                    Some(rx) => { let _ = rx.wait_for(|w| w.is_some()).await; rx.borrow().clone() }
                    None => std::future::pending().await,
                }
            }, if !outcome.interrupted => {
                outcome.interrupted = true;
                let why = why.unwrap_or_default();
                let op = Op::InterruptCommand { command_id: command_id.clone(), why };
                // The answer does not matter: the command's own completion follows.
                let _ = conn.request(op).await;
                continue;
            }
        };
        let Some(event) = event else { break Err(Lost) };
        let (reply, done) = answer(io, &mut outcome, event.op).await;
        let _ = event.reply.send(reply);
        if done {
            break Ok(());
        }
    };
    conn.forget_command(&command_id).await;
    result.map(|()| outcome)
}

/// Serves one message of the running command: an update, an upload block, a read of a file the
/// master sends, or the completion. The answer goes back to the worker; `true` when the command
/// is done.
async fn answer<Io: CommandIo>(
    io: &mut Io,
    outcome: &mut Outcome,
    op: Op,
) -> (Result<Value, String>, bool) {
    let done = |r: Result<(), String>| (r.map(|_| Value::Nil), false);
    match op {
        Op::Update { args, .. } => {
            for (key, value) in args {
                update(io, outcome, &key, value).await;
            }
            io.flush().await;
            (Ok(Value::Nil), false)
        }
        Op::Complete { failure, .. } => {
            outcome.failure = failure;
            (Ok(Value::Nil), true)
        }
        Op::UploadFileWrite { data, .. } | Op::UploadDirectoryWrite { data, .. } => {
            done(io.write(&data).await)
        }
        Op::UploadFileClose { .. } | Op::UploadDirectoryUnpack { .. } => {
            done(io.finish_upload().await)
        }
        Op::UploadFileUtime {
            access_time,
            modified_time,
            ..
        } => done(io.utime(access_time, modified_time).await),
        Op::ReadFile { length, .. } => (io.read(length).await.map(Value::Binary), false),
        Op::ReadFileClose { .. } => (Ok(Value::Nil), false),
        other => (
            Err(format!("Command {} does not exist.", other.name())),
            false,
        ),
    }
}

/// One key of a command's status update: output to its log, or part of the outcome.
async fn update<Io: CommandIo>(io: &mut Io, outcome: &mut Outcome, key: &str, value: Value) {
    match key {
        "header" | "stdout" | "stderr" => {
            let stream = match key {
                "header" => Stream::Header,
                "stdout" => Stream::Stdout,
                _ => Stream::Stderr,
            };
            if let Some(t) = text_of(value) {
                io.output(stream, &t).await
            }
        }
        "log" => {
            if let Value::Array(pair) = value {
                let mut pair = pair.into_iter();
                if let (Some(Value::String(name)), Some(text)) =
                    (pair.next(), pair.next().and_then(text_of))
                    && let Some(name) = name.as_str()
                {
                    io.log_output(name, &text).await;
                }
            }
        }
        "rc" => {
            outcome.rc = value.as_i64();
            let code = value.as_i64().unwrap_or(-1);
            let text = format!("program finished with exit code {code}\n");
            io.output(Stream::Header, &text).await;
        }
        "failure_reason" => outcome.failure_reason = value.as_str().map(str::to_string),
        "stat" => {
            outcome.stat = match &value {
                Value::Array(items) => Some(
                    items
                        .iter()
                        .map(|i| {
                            i.as_i64()
                                .or_else(|| i.as_f64().map(|f| f as i64))
                                .unwrap_or(0)
                        })
                        .collect(),
                ),
                _ => None,
            }
        }
        "files" => {
            outcome.files = match &value {
                Value::Array(items) => Some(
                    items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect(),
                ),
                _ => None,
            }
        }
        _ => {}
    }
}
