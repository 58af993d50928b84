//! The remote commands a master can start, and what they share.

mod fs;
mod logfiles;
mod shell;
mod transfer;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_proto::{ArgError, Args, Op, Value, settings};
use tokio::sync::watch;

use crate::connection::Link;

/// The output settings the master sent with `set_worker_settings`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub buffer_size: usize,
    pub buffer_timeout: f64,
    pub max_line_length: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            buffer_size: settings::BUFFER_SIZE as usize,
            buffer_timeout: settings::BUFFER_TIMEOUT as f64,
            max_line_length: settings::MAX_LINE_LENGTH as usize,
        }
    }
}

impl Settings {
    /// Reads the settings; like Buildbot's worker, all four are required.
    pub fn from_value(value: Value) -> Result<Settings, String> {
        let args = Args::new("set_worker_settings", value).map_err(|e| e.to_string())?;
        let int = |name: &str| -> Result<usize, String> {
            let v = args.opt_i64(name).map_err(|e| e.to_string())?;
            let v =
                v.ok_or_else(|| format!("set_worker_settings: argument \"{name}\" is missing"))?;
            usize::try_from(v)
                .map_err(|_| format!("set_worker_settings: \"{name}\" must not be negative"))
        };
        let buffer_timeout = args
            .opt_f64("buffer_timeout")
            .map_err(|e| e.to_string())?
            .ok_or("set_worker_settings: argument \"buffer_timeout\" is missing")?;
        let newline_re = args.str("newline_re").map_err(|e| e.to_string())?;
        if newline_re != settings::NEWLINE_RE {
            tracing::warn!(
                newline_re,
                "unsupported newline_re; using Buildbot's default line rewriting"
            );
        }
        Ok(Settings {
            buffer_size: int("buffer_size")?.max(1),
            buffer_timeout,
            max_line_length: int("max_line_length")?.max(1),
        })
    }
}

/// What a running command needs: the link to the master, its id and an interrupt signal.
pub struct Ctx {
    pub link: Link,
    pub command_id: String,
    pub basedir: PathBuf,
    pub settings: Settings,
    pub interrupt: watch::Receiver<Option<String>>,
}

impl Ctx {
    /// Sends a batch of `[name, value]` updates and waits for the master to take them.
    pub async fn update(&self, pairs: Vec<(String, Value)>) -> Result<(), String> {
        if pairs.is_empty() {
            return Ok(());
        }
        self.link
            .request(Op::Update {
                command_id: self.command_id.clone(),
                args: pairs,
            })
            .await
            .map(|_| ())
    }

    pub async fn request(&self, op: Op) -> Result<Value, String> {
        self.link.request(op).await
    }

    /// Resolves a path from the master: absolute as sent, or relative to the base directory.
    pub fn path(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.basedir.join(p)
        }
    }

    /// Whether the master has asked to interrupt this command.
    pub fn interrupted(&self) -> Option<String> {
        self.interrupt.borrow().clone()
    }
}

/// An output update's value as Buildbot sends it: the text, the offsets of its line ends, and a
/// time per line.
pub fn text_value(text: String) -> Value {
    let now = unix_time();
    let offsets: Vec<Value> = text
        .bytes()
        .enumerate()
        .filter(|(_, b)| *b == b'\n')
        .map(|(i, _)| Value::from(i as u64))
        .collect();
    let times = vec![Value::F64(now); offsets.len()];
    Value::Array(vec![
        Value::from(text),
        Value::Array(offsets),
        Value::Array(times),
    ])
}

pub fn header(text: &str) -> (String, Value) {
    ("header".to_string(), text_value(text.to_string()))
}

pub fn rc(code: i64) -> (String, Value) {
    ("rc".to_string(), Value::from(code))
}

pub fn elapsed(seconds: f64) -> (String, Value) {
    ("elapsed".to_string(), Value::F64(seconds))
}

pub fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A parsed command, ready to run.
pub enum Command {
    Shell(shell::ShellArgs),
    Fs(fs::FsCommand),
    Transfer(transfer::Transfer),
}

/// Parses a command's arguments, so that bad arguments are refused in the `start_command` reply.
pub fn prepare(name: &str, args: Value) -> Result<Command, ArgError> {
    let unknown = || ArgError {
        command: name.to_string(),
        name: "command_name".into(),
        problem: format!("names no command: unrecognized WorkerCommand '{name}'"),
    };
    let args = Args::new(name, args)?;
    Ok(match name {
        "shell" => Command::Shell(shell::ShellArgs::parse(&args)?),
        "mkdir" | "rmdir" | "cpdir" | "stat" | "glob" | "listdir" | "rmfile" => {
            Command::Fs(fs::FsCommand::parse(name, &args)?)
        }
        "upload_file" | "uploadFile" | "upload_directory" | "uploadDirectory" | "download_file"
        | "downloadFile" => Command::Transfer(transfer::Transfer::parse(name, &args)?),
        _ => return Err(unknown()),
    })
}

/// Runs a command to its end and reports `complete`.
pub async fn run(command: Command, ctx: Ctx) {
    let outcome = match command {
        Command::Shell(args) => shell::run(args, &ctx).await,
        Command::Fs(cmd) => fs::run(cmd, &ctx).await,
        Command::Transfer(t) => transfer::run(t, &ctx).await,
    };
    let failure = outcome.err();
    if let Some(why) = &failure {
        tracing::warn!(command_id = %ctx.command_id, error = %why, "command failed");
    }
    let _ = ctx
        .request(Op::Complete {
            command_id: ctx.command_id.clone(),
            failure,
        })
        .await;
}

/// The information `get_worker_info` returns, in the stock worker's shape.
pub fn worker_info(basedir: &Path) -> Value {
    let mut map: Vec<(Value, Value)> = Vec::new();
    let mut put = |k: &str, v: Value| map.push((Value::from(k), v));
    let environ: Vec<(Value, Value)> = std::env::vars()
        .map(|(k, v)| (Value::from(k), Value::from(v)))
        .collect();
    put("environ", Value::Map(environ));
    put("system", Value::from("posix"));
    put("basedir", Value::from(basedir.display().to_string()));
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    put("numcpus", Value::from(cpus as u64));
    put(
        "version",
        Value::from(concat!("kiln-worker ", env!("CARGO_PKG_VERSION"))),
    );
    let commands: Vec<(Value, Value)> = kiln_proto::WORKER_COMMANDS
        .iter()
        .map(|c| (Value::from(*c), Value::from(kiln_proto::COMMAND_VERSION)))
        .collect();
    put("worker_commands", Value::Map(commands));
    put("delete_leftover_dirs", Value::from(0));
    if let Ok(entries) = std::fs::read_dir(basedir.join("info")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with('~') {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                put(&name, Value::from(text));
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string("/etc/os-release") {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                put(
                    &format!("os_{}", k.to_lowercase()),
                    Value::from(v.trim_matches('"')),
                );
            }
        }
    }
    Value::Map(map)
}
