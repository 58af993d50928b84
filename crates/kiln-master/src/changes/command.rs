//! Running a version-control tool for a poller: bounded in time and in output, with its error
//! output in the message when it fails.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// A tool that runs longer than this is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);
/// Output beyond this is an error rather than a memory hazard.
pub const MAX_OUTPUT: usize = 64 << 20;

/// Runs `program args` in `cwd` and returns its standard output.
pub async fn run(
    program: &str,
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &str)],
) -> Result<String, String> {
    let shown = || format!("{program} {}", args.join(" "));
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", shown()))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let read_out = async {
            // On the heap: a large array inside a future is copied on the stack as it moves.
            let mut buf = vec![0u8; 65536];
            loop {
                let n = stdout.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<bool, std::io::Error>(true);
                }
                if out.len() + n > MAX_OUTPUT {
                    return Ok(false);
                }
                out.extend_from_slice(&buf[..n]);
            }
        };
        let read_err = async {
            let mut buf = vec![0u8; 8192];
            loop {
                let n = stderr.read(&mut buf).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                // Only the start of the error output is kept for the message.
                if err.len() < 16384 {
                    err.extend_from_slice(&buf[..n]);
                }
            }
        };
        let (complete, _) = tokio::try_join!(read_out, read_err)
            .map_err(|e| format!("reading from {}: {e}", shown()))?;
        if !complete {
            return Err(format!("{} wrote more than {MAX_OUTPUT} bytes", shown()));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| format!("waiting for {}: {e}", shown()))?;
        if !status.success() {
            return Err(format!(
                "{} failed ({status}): {}",
                shown(),
                String::from_utf8_lossy(&err).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{} ran longer than {} s and was stopped",
            shown(),
            COMMAND_TIMEOUT.as_secs()
        )),
    }
}
