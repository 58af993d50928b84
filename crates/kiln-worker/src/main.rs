//! `kiln-worker`: create a worker directory, or run a worker from one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use kiln_worker::config::WorkerConfig;
use kiln_worker::daemon;

/// The worker's pid file and log, in its base directory.
const PID_FILE: &str = "kiln-worker.pid";
const LOG_FILE: &str = "kiln-worker.log";
/// How long `start` waits for the worker to connect, as `buildbot-worker start` does.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

#[derive(Parser)]
#[command(
    name = "kiln-worker",
    version,
    about = "The kiln worker: runs a master's build steps"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a worker base directory that connects to MASTER (HOST:PORT) as NAME.
    CreateWorker {
        basedir: PathBuf,
        master: String,
        name: String,
        password: String,
        /// Give up after this many failed connection attempts in a row (default: retry forever).
        #[arg(long)]
        maxretries: Option<u32>,
        /// Connect over TLS, to a master whose worker port is configured with `ssl:`.
        #[arg(long)]
        use_tls: bool,
        /// Check the master's certificate against the authorities in this PEM file (a private
        /// CA) instead of the public web's.
        #[arg(long, requires = "use_tls")]
        ca_file: Option<PathBuf>,
    },
    /// Start the worker in the background (logging to kiln-worker.log in its directory), or in the
    /// foreground with --nodaemon, until the master shuts it down or it is stopped.
    Start {
        basedir: PathBuf,
        /// Stay in the foreground, logging to the terminal too.
        #[arg(long)]
        nodaemon: bool,
    },
    /// Stop a worker started with `kiln-worker start`.
    Stop { basedir: PathBuf },
    /// Stop the worker if it runs, then start it again.
    Restart {
        basedir: PathBuf,
        #[arg(long)]
        nodaemon: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // A worker that serves logs to its file too; the other commands only to the terminal.
    let log_file = match &cli.command {
        Cmd::Start {
            basedir,
            nodaemon: true,
        }
        | Cmd::Restart {
            basedir,
            nodaemon: true,
        } => Some(daemon::RotatingFile::new(
            basedir.join(LOG_FILE),
            daemon::ROTATE_LENGTH,
            daemon::MAX_ROTATED_FILES,
        )),
        _ => None,
    };
    daemon::init_logging(log_file);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kiln-worker: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::CreateWorker {
            basedir,
            master,
            name,
            password,
            maxretries,
            use_tls,
            ca_file,
        } => {
            let (master_host, master_port) = WorkerConfig::parse_master(&master)?;
            let config = WorkerConfig {
                basedir: basedir.clone(),
                master_host,
                master_port,
                name,
                password,
                max_retries: maxretries,
                use_tls,
                // Named from where the command runs; the worker runs from its base directory.
                ca_file: ca_file.map(|f| std::path::absolute(&f).unwrap_or(f)),
            };
            config.create()?;
            eprintln!(
                "worker created in {}; start it with `kiln-worker start {}`",
                basedir.display(),
                basedir.display()
            );
            Ok(())
        }
        Cmd::Start { basedir, nodaemon } => start(&basedir, nodaemon),
        Cmd::Stop { basedir } => {
            daemon::stop(
                &basedir.join(PID_FILE),
                nix::sys::signal::Signal::SIGTERM,
                Some(Duration::from_secs(30)),
            )?;
            eprintln!("worker stopped");
            Ok(())
        }
        Cmd::Restart { basedir, nodaemon } => {
            if daemon::running_pid(&basedir.join(PID_FILE)).is_some() {
                daemon::stop(
                    &basedir.join(PID_FILE),
                    nix::sys::signal::Signal::SIGTERM,
                    Some(Duration::from_secs(30)),
                )?;
                eprintln!("worker stopped");
            }
            start(&basedir, nodaemon)
        }
    }
}

/// Starts the worker: in the background, following its log until it has connected to its master,
/// or in the foreground.
fn start(basedir: &Path, nodaemon: bool) -> anyhow::Result<()> {
    let pid_file = basedir.join(PID_FILE);
    if let Some(pid) = daemon::running_pid(&pid_file) {
        anyhow::bail!(
            "the worker in {} is already running (process {pid})",
            basedir.display()
        );
    }
    let config = WorkerConfig::load(basedir)?;
    if !nodaemon {
        let args = [
            "start".into(),
            "--nodaemon".into(),
            basedir.as_os_str().to_owned(),
        ];
        let log = basedir.join(LOG_FILE);
        if daemon::detach(
            &args,
            &log,
            kiln_worker::connection::CONNECTED,
            CONNECT_WAIT,
        )? {
            eprintln!("The worker appears to have started and connected to its master.");
        } else {
            eprintln!(
                "The worker runs but has not connected to its master within {} s; see {}.",
                CONNECT_WAIT.as_secs(),
                log.display()
            );
        }
        return Ok(());
    }
    daemon::leave_terminal();
    daemon::write_pid(&pid_file)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        tokio::select! {
            result = kiln_worker::connection::run(config) => result,
            _ = shutdown_signal() => {
                tracing::info!("stopping on signal");
                Ok(())
            }
        }
    });
    let _ = std::fs::remove_file(&pid_file);
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
