//! `kiln`: run a master, check its configuration, and the client commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use kiln_master::{Master, StartOptions};

/// The master's memory is jemalloc's, configured in `.cargo/config.toml`. glibc's allocator
/// keeps the pages a burst of requests freed in its per-thread arenas for as long as the process
/// lives (RSS stayed 25 MiB above idle after four expensive queries, however long the master
/// rested); jemalloc's background threads give them back to the system within seconds. SQLite's
/// allocations go through it too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod http;
mod sendchange;
mod status;
mod token;
mod tryjob;
mod user;
mod watch;

const SAMPLE: &str = include_str!("sample.star");
const PID_FILE: &str = "kiln.pid";
/// The sample configuration's builder that `kiln quickstart` builds.
const QUICKSTART_BUILDER: &str = "runtests";
/// The master's log in its directory, as Buildbot's `twistd.log`.
const LOG_FILE: &str = "kiln.log";
/// What the master logs once it serves; `kiln start` waits for it.
const STARTED: &str = "master started";
/// How long `kiln start` and `kiln reconfig` follow the log for the outcome.
const OUTCOME_WAIT: Duration = Duration::from_secs(60);
/// What the master logs when a reconfiguration ends, well or not.
const RECONFIGURED: &str = "configuration reloaded";
const RECONFIG_FAILED: [&str; 2] = [
    "keeping the running one",
    "applying the new configuration failed",
];

/// How the master's log rotates, with Buildbot's defaults for `twistd.log`.
#[derive(clap::Args, Clone, Copy)]
struct LogOptions {
    /// Rotate kiln.log when it reaches this many bytes (Buildbot's rotateLength).
    #[arg(long, default_value_t = kiln_worker::daemon::ROTATE_LENGTH)]
    rotate_length: u64,
    /// Keep this many rotated logs (Buildbot's maxRotatedFiles).
    #[arg(long, default_value_t = kiln_worker::daemon::MAX_ROTATED_FILES)]
    max_rotated_files: usize,
}

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "kiln: continuous integration in the Buildbot model"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a master directory with a commented sample master.star.
    CreateMaster {
        basedir: PathBuf,
        /// Port for workers.
        #[arg(long, default_value_t = 9989)]
        worker_port: u16,
        /// Port for the web UI and REST API.
        #[arg(long, default_value_t = 8010)]
        www_port: u16,
    },
    /// Start a master in the background, logging to kiln.log in its directory, or in the
    /// foreground with --nodaemon; it serves until SIGINT or SIGTERM, SIGHUP reloads its
    /// configuration and SIGUSR1 starts a clean shutdown.
    Start {
        basedir: PathBuf,
        /// Stay in the foreground, logging to the terminal too.
        #[arg(long)]
        nodaemon: bool,
        #[command(flatten)]
        log: LogOptions,
    },
    /// Stop a master started with `kiln start`.
    Stop {
        basedir: PathBuf,
        /// Start no more builds and stop once the running ones are done, waiting as long as
        /// they take.
        #[arg(long)]
        clean: bool,
    },
    /// Stop a master started with `kiln start` if it runs, then start it again.
    Restart {
        basedir: PathBuf,
        /// Let the running builds finish first, as `stop --clean` does.
        #[arg(long)]
        clean: bool,
        #[arg(long)]
        nodaemon: bool,
        #[command(flatten)]
        log: LogOptions,
    },
    /// Make a running master read its configuration again, and print the outcome.
    Reconfig { basedir: PathBuf },
    /// Bring a master directory's database up to this version of kiln.
    UpgradeMaster { basedir: PathBuf },
    /// Compact the master's database and refresh its statistics.
    Cleanupdb { basedir: PathBuf },
    /// Check a master's configuration and report every problem.
    Checkconfig {
        #[arg(default_value = ".")]
        basedir: PathBuf,
    },
    /// Tell a master about a change, through its `base` change hook.
    Sendchange(Box<sendchange::SendChange>),
    /// Build the working copy's changes (or a patch) on a master's try scheduler.
    Try(Box<tryjob::Try>),
    /// Add, change, remove or show the master's users.
    User(Box<user::User>),
    /// Make, list or revoke API tokens for scripts.
    Token(Box<token::Token>),
    /// Print each builder's last build, and what runs and waits, once.
    Status(Box<status::Status>),
    /// Show builds live as they start and finish, or follow one build to its end.
    Watch(Box<watch::Watch>),
    /// Make a master with a local worker, run a sample build, and keep serving.
    Quickstart {
        #[arg(default_value = "kiln-quickstart")]
        basedir: PathBuf,
        #[arg(long, default_value_t = 8010)]
        www_port: u16,
        #[arg(long, default_value_t = 9989)]
        worker_port: u16,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A master that serves logs to its file too; the other commands only to the terminal.
    let log_file = match &cli.command {
        Cmd::Start {
            basedir,
            nodaemon: true,
            log,
        }
        | Cmd::Restart {
            basedir,
            nodaemon: true,
            log,
            ..
        } => Some(kiln_worker::daemon::RotatingFile::new(
            basedir.join(LOG_FILE),
            log.rotate_length,
            log.max_rotated_files,
        )),
        _ => None,
    };
    kiln_worker::daemon::init_logging(log_file);
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("kiln: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Cmd::Sendchange(args) => {
            let ids = runtime()?.block_on(sendchange::run(*args))?;
            let ids: Vec<String> = ids.iter().map(i64::to_string).collect();
            // The change id goes to standard output, for scripts.
            use std::io::Write;
            writeln!(
                std::io::stdout(),
                "change sent successfully: change {}",
                ids.join(", ")
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::User(args) => {
            let text = runtime()?.block_on(user::run(*args))?;
            use std::io::Write;
            write!(std::io::stdout(), "{text}")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Watch(args) => {
            let code = runtime()?.block_on(watch::run(*args, &mut std::io::stdout()))?;
            Ok(ExitCode::from(code))
        }
        Cmd::Status(args) => {
            let text = runtime()?.block_on(status::run(*args))?;
            use std::io::Write;
            write!(std::io::stdout(), "{text}")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token(args) => {
            let text = runtime()?.block_on(token::run(*args))?;
            use std::io::Write;
            write!(std::io::stdout(), "{text}")?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Try(args) => {
            let ok = runtime()?.block_on(tryjob::run(*args))?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Cmd::CreateMaster {
            basedir,
            worker_port,
            www_port,
        } => {
            create_master(&basedir, worker_port, www_port)?;
            eprintln!(
                "master created in {}; edit master.star, then run `kiln start {}`",
                basedir.display(),
                basedir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Checkconfig { basedir } => Ok(checkconfig(&basedir)),
        Cmd::Start {
            basedir,
            nodaemon,
            log,
        } => {
            if let Some(pid) = running_pid(&basedir) {
                bail!(
                    "the master in {} is already running (process {pid})",
                    basedir.display()
                );
            }
            let config = load(&basedir)?;
            launch(basedir, config, nodaemon, log)
        }
        Cmd::Restart {
            basedir,
            clean,
            nodaemon,
            log,
        } => {
            // The new configuration is checked before the running master is stopped.
            let config = load(&basedir)?;
            if running_pid(&basedir).is_some() {
                stop(&basedir, clean)?;
            }
            launch(basedir, config, nodaemon, log)
        }
        Cmd::Reconfig { basedir } => reconfig(&basedir),
        Cmd::UpgradeMaster { basedir } => {
            let config = load(&basedir)?;
            runtime()?.block_on(async {
                let writer = kiln_master::master::open_database(&basedir, &config).await?;
                writer.close().await;
                anyhow::Ok(())
            })?;
            eprintln!(
                "upgrade complete: the configuration is good and the database {} is up to date",
                config.db_url
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Cleanupdb { basedir } => {
            let config = load(&basedir)?;
            runtime()?.block_on(async {
                let writer = kiln_master::master::open_database(&basedir, &config).await?;
                writer.vacuum().await?;
                writer.close().await;
                anyhow::Ok(())
            })?;
            eprintln!("the database {} is compacted", config.db_url);
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stop { basedir, clean } => {
            stop(&basedir, clean)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Quickstart {
            basedir,
            www_port,
            worker_port,
        } => {
            runtime()?.block_on(quickstart(basedir, www_port, worker_port))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn create_master(basedir: &Path, worker_port: u16, www_port: u16) -> anyhow::Result<()> {
    let path = basedir.join(kiln_config::CONFIG_FILE);
    if path.exists() {
        bail!("{} already exists; not overwriting it", path.display());
    }
    std::fs::create_dir_all(basedir).with_context(|| format!("creating {}", basedir.display()))?;
    let text = SAMPLE
        .replace("__WORKER_PORT__", &worker_port.to_string())
        .replace("__WWW_PORT__", &www_port.to_string());
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn print_warnings(config: &kiln_config::MasterConfig) {
    if !config.warnings.is_empty() {
        eprintln!("{}", kiln_config::render(&config.warnings));
    }
}

fn load(basedir: &Path) -> anyhow::Result<kiln_config::MasterConfig> {
    match kiln_config::load(basedir) {
        Ok(config) => {
            print_warnings(&config);
            Ok(config)
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            bail!("the configuration has errors; nothing was started")
        }
    }
}

/// Checks a master directory's configuration, or a configuration file named directly, as
/// `buildbot checkconfig` takes either.
fn checkconfig(basedir: &Path) -> ExitCode {
    let loaded = if basedir.is_file() {
        kiln_config::load_file(basedir)
    } else {
        kiln_config::load(basedir)
    };
    match loaded {
        Ok(config) => {
            print_warnings(&config);
            eprintln!("Config file is good!");
            ExitCode::SUCCESS
        }
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            let errors = diagnostics
                .0
                .iter()
                .filter(|d| d.severity == kiln_config::Severity::Error)
                .count();
            eprintln!("{errors} error(s) in the configuration");
            ExitCode::FAILURE
        }
    }
}

/// Starts jemalloc's background threads, which give freed pages back to the system while the
/// master is idle. The configuration asks for them (`.cargo/config.toml`), but jemalloc starts
/// them only when a thread it has not seen before allocates, which a master on PostgreSQL may
/// never do after start-up; without them, pages are given back only while allocating, and a
/// master that has fallen idle keeps what its last burst freed.
fn give_memory_back() {
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(%error, "starting the allocator's background threads failed");
    }
}

/// A master with kiln's own web application on its web port.
fn start_options() -> StartOptions {
    StartOptions {
        web: Arc::new(kiln_www::router),
        components: vec![Arc::new(kiln_reporters::run)],
        ..StartOptions::default()
    }
}

/// Starts the master: in the background, following its log until it serves, as `buildbot start`
/// does, or in the foreground.
fn launch(
    basedir: PathBuf,
    config: kiln_config::MasterConfig,
    nodaemon: bool,
    log: LogOptions,
) -> anyhow::Result<ExitCode> {
    if nodaemon {
        kiln_worker::daemon::leave_terminal();
        runtime()?.block_on(start(basedir, config))?;
        return Ok(ExitCode::SUCCESS);
    }
    let args: Vec<std::ffi::OsString> = vec![
        "start".into(),
        "--nodaemon".into(),
        "--rotate-length".into(),
        log.rotate_length.to_string().into(),
        "--max-rotated-files".into(),
        log.max_rotated_files.to_string().into(),
        basedir.as_os_str().to_owned(),
    ];
    let log = basedir.join(LOG_FILE);
    if kiln_worker::daemon::detach(&args, &log, STARTED, OUTCOME_WAIT)? {
        eprintln!("The kiln master appears to have started correctly.");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "The kiln master has not said it started within {} s; see {}.",
            OUTCOME_WAIT.as_secs(),
            log.display()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Sends the running master SIGHUP and prints what its log says of the reconfiguration: the
/// builders added, removed and changed, or the configuration's errors with their locations.
fn reconfig(basedir: &Path) -> anyhow::Result<ExitCode> {
    let Some(pid) = running_pid(basedir) else {
        bail!("no master is running in {}", basedir.display());
    };
    let log = basedir.join(LOG_FILE);
    let offset = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut follower = kiln_worker::daemon::LogFollower::new(&log, offset);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)
        .with_context(|| format!("signalling process {pid}"))?;
    let deadline = std::time::Instant::now() + OUTCOME_WAIT;
    let mut outcome: Option<bool> = None;
    while std::time::Instant::now() < deadline {
        let lines = follower.new_lines();
        for line in &lines {
            eprintln!("{line}");
            if line.contains(RECONFIGURED) {
                outcome = Some(true);
            } else if RECONFIG_FAILED.iter().any(|f| line.contains(f)) {
                outcome = Some(false);
            }
        }
        // The whole record is printed, the diagnostics that follow a failure included.
        match outcome {
            Some(true) => {
                eprintln!("Reconfiguration appears to have completed successfully.");
                return Ok(ExitCode::SUCCESS);
            }
            Some(false) => {
                eprintln!("Reconfiguration failed; the master keeps its running configuration.");
                return Ok(ExitCode::FAILURE);
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    bail!(
        "the master (process {pid}) has not said how the reconfiguration went within {} s; see {}",
        OUTCOME_WAIT.as_secs(),
        log.display()
    )
}

async fn start(basedir: PathBuf, config: kiln_config::MasterConfig) -> anyhow::Result<()> {
    give_memory_back();
    let running = Master::start(&basedir, config, start_options()).await?;
    let pid_file = basedir.join(PID_FILE);
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .with_context(|| format!("writing {}", pid_file.display()))?;
    eprintln!(
        "kiln master running: web UI and REST API at http://{}/, workers on port {}",
        running.www_addr,
        running.worker_addr.port()
    );
    serve_until_signal(&running.master, &basedir).await?;
    running.stop().await;
    let _ = std::fs::remove_file(&pid_file);
    Ok(())
}

/// Serves until SIGINT or SIGTERM. SIGHUP reloads the configuration; a configuration with errors is
/// reported and the running one kept. SIGUSR1 starts a clean shutdown, as it does for Buildbot:
/// no more builds start, and the master stops once the running ones are done.
async fn serve_until_signal(master: &Arc<Master>, basedir: &Path) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = usr1.recv() => {
                let running = master.running_builds().len();
                if master.start_clean_shutdown() {
                    tracing::info!(running, "clean shutdown: waiting for the running builds to finish");
                }
            }
            _ = master.stop_requested() => break,
            _ = int.recv() => break,
            _ = hup.recv() => match kiln_config::load(basedir) {
                Ok(config) => {
                    if !config.warnings.is_empty() {
                        tracing::warn!("{}", kiln_config::render(&config.warnings));
                    }
                    let changes = builder_changes(&master.config(), &config);
                    match master.apply_config(config).await {
                        Ok(()) => tracing::info!("{RECONFIGURED}: {changes}"),
                        Err(error) => tracing::error!(error = %format!("{error:#}"), "applying the new configuration failed"),
                    }
                }
                Err(diagnostics) => {
                    tracing::error!("the new configuration has errors; keeping the running one:\n{diagnostics}");
                }
            },
        }
    }
    tracing::info!("stopping");
    Ok(())
}

/// What a reconfiguration does to the builders: those added, removed and changed, by name.
fn builder_changes(old: &kiln_config::MasterConfig, new: &kiln_config::MasterConfig) -> String {
    let names = |c: &kiln_config::MasterConfig,
                 keep: &dyn Fn(&kiln_config::BuilderConfig) -> bool| {
        c.builders
            .iter()
            .filter(|b| keep(b))
            .map(|b| b.name.clone())
            .collect::<Vec<_>>()
    };
    let find = |c: &kiln_config::MasterConfig, name: &str| {
        c.builders.iter().find(|b| b.name == name).cloned()
    };
    let added = names(new, &|b| find(old, &b.name).is_none());
    let removed = names(old, &|b| find(new, &b.name).is_none());
    let changed = names(new, &|b| find(old, &b.name).is_some_and(|o| o != *b));
    let list = |what: &str, v: Vec<String>| {
        if v.is_empty() {
            format!("no builder {what}")
        } else {
            format!("builders {what}: {}", v.join(", "))
        }
    };
    format!(
        "{}; {}; {}",
        list("added", added),
        list("removed", removed),
        list("changed", changed)
    )
}

fn stop(basedir: &Path, clean: bool) -> anyhow::Result<()> {
    let pid_file = basedir.join(PID_FILE);
    let text = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {} (is the master running?)", pid_file.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .with_context(|| format!("{} does not hold a process id", pid_file.display()))?;
    let pid = nix::unistd::Pid::from_raw(pid);
    let signal = if clean {
        nix::sys::signal::Signal::SIGUSR1
    } else {
        nix::sys::signal::Signal::SIGTERM
    };
    nix::sys::signal::kill(pid, signal).with_context(|| format!("signalling process {pid}"))?;
    if clean {
        eprintln!("waiting for the running builds to finish before the master stops");
    }
    // A clean stop waits as long as the builds take; a plain one, 30 seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while clean || std::time::Instant::now() < deadline {
        if nix::sys::signal::kill(pid, None).is_err() || is_zombie(pid) {
            eprintln!("master stopped");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the master (process {pid}) did not stop within 30 seconds")
}

/// The process of the master that runs in `basedir`, if its pid file names a live one.
fn running_pid(basedir: &Path) -> Option<nix::unistd::Pid> {
    let text = std::fs::read_to_string(basedir.join(PID_FILE)).ok()?;
    let pid = nix::unistd::Pid::from_raw(text.trim().parse().ok()?);
    // A pid file left by a master that was killed names a process that is gone, or that is
    // this very one when pids came round again.
    let alive = nix::sys::signal::kill(pid, None).is_ok() && !is_zombie(pid);
    (alive && pid != nix::unistd::Pid::this()).then_some(pid)
}

/// A process that has exited but not yet been reaped by its parent.
fn is_zombie(pid: nix::unistd::Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

// The quickstart's report is its output, meant for the person who ran it.
#[allow(clippy::print_stdout)]
async fn quickstart(basedir: PathBuf, www_port: u16, worker_port: u16) -> anyhow::Result<()> {
    if !basedir.join(kiln_config::CONFIG_FILE).exists() {
        create_master(&basedir, worker_port, www_port)?;
        eprintln!("created a master in {}", basedir.display());
    }
    let config = load(&basedir)?;
    give_memory_back();
    let running = Master::start(&basedir, config, start_options()).await?;
    let master = running.master.clone();

    // A local worker, in this process, connected over the real protocol.
    let worker_dir = std::path::absolute(basedir.join("worker"))?;
    let worker_config = kiln_worker::config::WorkerConfig {
        basedir: worker_dir.clone(),
        master_host: "127.0.0.1".into(),
        master_port: running.worker_addr.port(),
        name: "example-worker".into(),
        password: "pass".into(),
        max_retries: None,
        use_tls: false,
        ca_file: None,
    };
    if !worker_dir.join(kiln_worker::config::CONFIG_FILE).exists() {
        worker_config.create()?;
    }
    let worker = tokio::spawn(kiln_worker::connection::run(worker_config));

    let mut events = master.events.subscribe();
    let config = master.config();
    let force = config.schedulers.iter().find_map(|s| match s {
        kiln_config::SchedulerConfig::Force(f) => Some(f),
        _ => None,
    });
    let Some(force) = force else {
        bail!("the quickstart configuration has no force scheduler")
    };
    let mut params = serde_json::Map::new();
    params.insert("reason".into(), "quickstart sample build".into());
    // The sample builder needs nothing but the worker; the others may need the network.
    if force.builder_names.iter().any(|b| b == QUICKSTART_BUILDER) {
        params.insert(
            "builderNames".into(),
            serde_json::json!([QUICKSTART_BUILDER]),
        );
    }
    let (bsid, _) =
        match kiln_master::schedulers::force::force(&master, force, &params, Some("quickstart"))
            .await
        {
            Ok(r) => r,
            Err(e) => bail!("forcing the sample build failed: {e:?}"),
        };
    eprintln!("forced a sample build (buildset {bsid}); waiting for it to finish");
    let results = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            match events.recv().await {
                Ok(e) => match e.completed_buildset() {
                    Some((done, results)) if done == bsid => break Some(results),
                    _ => {}
                },
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break None,
            }
        }
    })
    .await
    .context("the sample build did not finish within two minutes")?;
    let name = results.map_or("unknown", |r| r.name());
    let url = format!("http://{}", running.www_addr);
    println!("sample build finished: {name}");
    println!("web UI:   {url}/");
    println!("builds:   {url}/api/v2/builds");
    println!("logs:     {url}/api/v2/builders/runtests/builds/1/steps/hello/logs/stdio/raw_inline");
    println!(
        "force another: curl -s -X POST -H 'Content-Type: application/json' -d '{{\"jsonrpc\":\"2.0\",\"method\":\"force\",\"params\":{{}},\"id\":1}}' {url}/api/v2/forceschedulers/force"
    );
    println!(
        "master directory: {}  (stop with Ctrl-C)",
        basedir.display()
    );
    serve_until_signal(&master, &basedir).await?;
    worker.abort();
    running.stop().await;
    Ok(())
}
