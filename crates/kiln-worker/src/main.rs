//! `kiln-worker`: create a worker directory, or run a worker from one.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use kiln_worker::config::WorkerConfig;

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
    },
    /// Run the worker in the foreground until the master shuts it down or it is stopped.
    Start { basedir: PathBuf },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in a file or a pipe.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    match run(Cli::parse()) {
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
        } => {
            let (master_host, master_port) = WorkerConfig::parse_master(&master)?;
            let config = WorkerConfig {
                basedir: basedir.clone(),
                master_host,
                master_port,
                name,
                password,
                max_retries: maxretries,
            };
            config.create()?;
            eprintln!(
                "worker created in {}; start it with `kiln-worker start {}`",
                basedir.display(),
                basedir.display()
            );
            Ok(())
        }
        Cmd::Start { basedir } => {
            let config = WorkerConfig::load(&basedir)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                tokio::select! {
                    result = kiln_worker::connection::run(config) => result,
                    _ = shutdown_signal() => {
                        tracing::info!("stopping on signal");
                        Ok(())
                    }
                }
            })
        }
    }
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
