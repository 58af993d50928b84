//! Running in the background as `buildbot start` and `buildbot-worker start` do, shared by the
//! `kiln` and `kiln-worker` binaries: a log file in the base directory that rotates by size, a pid
//! file, detaching from the terminal while the starting command follows the log until the process
//! is up, and stopping a process by its pid file.

use std::ffi::OsString;
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Set in the environment of a process started in the background, which then logs to its file
/// only and leaves the terminal's session.
const DETACHED: &str = "KILN_DETACHED";

/// Buildbot's defaults for its `twistd.log`: rotate at 10 MB, keep ten old files.
pub const ROTATE_LENGTH: u64 = 10_000_000;
pub const MAX_ROTATED_FILES: usize = 10;

/// How often the log and the process are looked at while waiting.
const POLL: Duration = Duration::from_millis(100);

/// A log file rotated by size: `kiln.log` becomes `kiln.log.1`, which becomes `kiln.log.2`, …,
/// keeping `keep` of them, as Twisted's log file does.
pub struct RotatingFile {
    path: PathBuf,
    rotate_length: u64,
    keep: usize,
    state: Mutex<Option<(std::fs::File, u64)>>,
}

impl RotatingFile {
    pub fn new(path: PathBuf, rotate_length: u64, keep: usize) -> RotatingFile {
        RotatingFile {
            path,
            rotate_length,
            keep,
            state: Mutex::new(None),
        }
    }

    fn rotate(&self) {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
            return;
        }
        let _ = std::fs::remove_file(numbered(self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        let _ = std::fs::rename(&self.path, numbered(1));
    }

    /// Writes one whole record (a log line), rotating first when it would pass the length.
    fn write_record(&self, state: &mut Option<(std::fs::File, u64)>, record: &[u8]) {
        if let Some((_, size)) = state.as_ref()
            && *size > 0
            && *size + record.len() as u64 > self.rotate_length
        {
            *state = None;
            self.rotate();
        }
        if state.is_none() {
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path);
            if let Ok(file) = opened {
                let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                *state = Some((file, size));
            }
        }
        if let Some((file, size)) = state.as_mut()
            && file.write_all(record).is_ok()
        {
            *size += record.len() as u64;
        }
    }
}

/// One log event's writer: it gathers the event's bytes and writes them as one record.
pub struct Record<'a> {
    file: &'a RotatingFile,
    guard: MutexGuard<'a, Option<(std::fs::File, u64)>>,
    buf: Vec<u8>,
}

impl Write for Record<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            self.file.write_record(&mut self.guard, &self.buf);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = Record<'a>;

    fn make_writer(&'a self) -> Record<'a> {
        Record {
            file: self,
            guard: self.state.lock().unwrap_or_else(|p| p.into_inner()),
            buf: Vec::new(),
        }
    }
}

/// Where a serving process logs: to its file, and also to the terminal when it runs in the
/// foreground. Colours only for a person at a terminal.
pub fn init_logging(file: Option<RotatingFile>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = (!is_detached()).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
    });
    let file = file.map(|f| {
        tracing_subscriber::fmt::layer()
            .with_writer(f)
            .with_ansi(false)
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(terminal)
        .with(file)
        .init();
}

/// Whether this process was started in the background by [`detach`].
pub fn is_detached() -> bool {
    std::env::var_os(DETACHED).is_some()
}

/// In a process started in the background: leaves the terminal's session, so that closing the
/// terminal does not stop it.
pub fn leave_terminal() {
    if is_detached() {
        let _ = nix::unistd::setsid();
    }
}

/// Starts this program again in the background with `args`, its output appended to `log`, and
/// follows the log, printing what it says, until a line contains `ready` (true: the process is
/// up), `wait` passes (false: it runs, but has not said so yet) or the process ends (it failed,
/// and the error says so).
pub fn detach(args: &[OsString], log: &Path, ready: &str, wait: Duration) -> anyhow::Result<bool> {
    let exe = std::env::current_exe().context("finding this program")?;
    let start = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut child = std::process::Command::new(exe)
        .args(args)
        .env(DETACHED, "1")
        .stdin(std::process::Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .spawn()
        .context("starting in the background")?;
    eprintln!("following {} until the process is up", log.display());
    let mut reader = LogFollower::new(log, start);
    let deadline = Instant::now() + wait;
    loop {
        for line in reader.new_lines() {
            eprintln!("{line}");
            if line.contains(ready) {
                return Ok(true);
            }
        }
        if let Some(status) = child.try_wait()? {
            for line in reader.new_lines() {
                eprintln!("{line}");
            }
            bail!(
                "the process ended while starting ({status}); see {}",
                log.display()
            );
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(POLL);
    }
}

/// Reads the lines a log gains from an offset on, across a rotation.
pub struct LogFollower {
    path: PathBuf,
    offset: u64,
    /// The file being read, by inode: another one at the path means the log rotated.
    inode: Option<u64>,
}

impl LogFollower {
    pub fn new(path: &Path, offset: u64) -> LogFollower {
        use std::os::unix::fs::MetadataExt;
        LogFollower {
            path: path.to_path_buf(),
            offset,
            inode: std::fs::metadata(path).ok().map(|m| m.ino()),
        }
    }

    /// The whole lines written since the last call.
    pub fn new_lines(&mut self) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let inode = file.metadata().map(|m| m.ino()).ok();
        if inode != self.inode {
            // Rotated (or created): the new file is read from its start.
            self.inode = inode;
            self.offset = 0;
        }
        if file.seek(std::io::SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut lines = Vec::new();
        let mut reader = std::io::BufReader::new(file);
        let mut line = String::new();
        while let Ok(n) = reader.read_line(&mut line) {
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            self.offset += n as u64;
            lines.push(line.trim_end().to_string());
            line.clear();
        }
        lines
    }
}

/// Writes this process's id to `path`.
pub fn write_pid(path: &Path) -> anyhow::Result<()> {
    std::fs::write(path, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", path.display()))
}

/// The process a pid file names, if it is alive (and not this one: pids come round again).
pub fn running_pid(pid_file: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let pid = Pid::from_raw(text.trim().parse().ok()?);
    let alive = nix::sys::signal::kill(pid, None).is_ok() && !is_zombie(pid);
    (alive && pid != Pid::this()).then_some(pid)
}

/// A process that has exited but not yet been reaped by its parent.
pub fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string))
        })
        .is_some_and(|state| state == "Z")
}

/// Sends `signal` to the process the pid file names and waits until it is gone, for at most
/// `wait` (`None`: as long as it takes).
pub fn stop(pid_file: &Path, signal: Signal, wait: Option<Duration>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(pid_file)
        .with_context(|| format!("reading {} (is it running?)", pid_file.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", pid_file.display()))?;
    let pid = Pid::from_raw(pid);
    nix::sys::signal::kill(pid, signal).with_context(|| format!("signalling process {pid}"))?;
    let deadline = wait.map(|w| Instant::now() + w);
    loop {
        if nix::sys::signal::kill(pid, None).is_err() || is_zombie(pid) {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            bail!(
                "process {pid} did not stop within {} s",
                wait.unwrap_or_default().as_secs()
            );
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn records_rotate_by_size_keeping_so_many_and_are_followed_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln.log");
        let file = RotatingFile::new(path.clone(), 30, 2);
        let mut follower = LogFollower::new(&path, 0);
        let mut seen = Vec::new();
        for i in 0..7 {
            let mut w = file.make_writer();
            writeln!(w, "record {i} of seven").unwrap();
            drop(w);
            seen.extend(follower.new_lines());
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        // 18 bytes a record, 30 a file: a record each, the newest in kiln.log, two kept.
        assert_eq!(read(&path), "record 6 of seven\n");
        assert_eq!(read(&dir.path().join("kiln.log.1")), "record 5 of seven\n");
        assert_eq!(read(&dir.path().join("kiln.log.2")), "record 4 of seven\n");
        assert!(!dir.path().join("kiln.log.3").exists());
        assert_eq!(seen.len(), 7, "{seen:?}");
    }
}
