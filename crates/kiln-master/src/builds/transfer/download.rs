//! Downloads to the worker: a master file (`FileDownload`) or bytes made by the step
//! (`StringDownload`, `JSONStringDownload`, `JSONPropertiesDownload`), sent in blocks as the
//! worker asks for them.

use kiln_config::StepConfig;
use kiln_core::Results;
use kiln_core::render::Renderable;
use kiln_proto::{Args, Value};
use tokio::io::AsyncReadExt;

use super::log_output;
use crate::builds::logs::LogWriter;
use crate::builds::steps::{
    StepContext, StepOutcome, WorkerLost, exception, finished, master_path, results_of, with_result,
};
use crate::workers::command::{CommandIo, Stream};

/// What a download sends.
enum Source {
    File(tokio::fs::File),
    Bytes(Vec<u8>, usize),
}

struct DownloadSource {
    source: Source,
    log: LogWriter,
}

impl CommandIo for DownloadSource {
    log_output!();
    async fn read(&mut self, length: u64) -> Result<Vec<u8>, String> {
        let length = length.min(16 << 20) as usize;
        match &mut self.source {
            Source::File(f) => {
                let mut buf = vec![0u8; length];
                let mut filled = 0;
                while filled < length {
                    let n = f
                        .read(&mut buf[filled..])
                        .await
                        .map_err(|e| e.to_string())?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                buf.truncate(filled);
                Ok(buf)
            }
            Source::Bytes(bytes, pos) => {
                let end = (*pos + length).min(bytes.len());
                let chunk = bytes[*pos..end].to_vec();
                *pos = end;
                Ok(chunk)
            }
        }
    }
}

/// Where on the worker a download goes, and how, as every download step configures it.
pub(in crate::builds) struct Destination<'a> {
    pub workerdest: &'a Renderable,
    pub mode: Option<u32>,
    pub maxsize: Option<u64>,
    pub blocksize: u64,
}

async fn download(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    workdir: &str,
    to: Destination<'_>,
    source: Source,
) -> Result<StepOutcome, WorkerLost> {
    let Destination {
        workerdest,
        mode,
        maxsize,
        blocksize,
    } = to;
    let dest = match ctx.render_string(workerdest, "workerdest") {
        Ok(d) => d,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    if let Err(e) = super::inside_builder(workdir, &dest, "workerdest") {
        return Ok(exception(ctx, step, &e).await);
    }
    let log = match super::begin(ctx, step, format!("downloading to {dest}")).await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let mut io = DownloadSource { source, log };
    let args = Args::build(vec![
        ("workdir", Value::from(workdir)),
        ("workerdest", Value::from(dest.as_str())),
        ("path", Value::from(ctx.worker_path(workdir, &dest))),
        ("maxsize", maxsize.map_or(Value::Nil, Value::from)),
        ("blocksize", Value::from(blocksize)),
        ("mode", mode.map_or(Value::Nil, Value::from)),
    ]);
    let outcome = ctx.remote("download_file", args, &mut io).await;
    io.log.finish().await;
    let results = results_of(&outcome?, None);
    Ok(finished(step, || format!("downloaded to {dest}"), results))
}

/// What a JSON download sends: the rendered value (`JSONStringDownload`), or the build's
/// properties and source stamps in Buildbot's layout (`JSONPropertiesDownload`, `value` None).
pub(in crate::builds) fn json_to_send(
    ctx: &StepContext<'_>,
    value: Option<&Renderable>,
) -> Result<Vec<u8>, String> {
    let json = match value {
        Some(v) => kiln_db::property_to_json(&ctx.render(v, "o")?),
        None => serde_json::json!({
            "properties": ctx
                .props
                .iter()
                .map(|(k, p)| (k.clone(), kiln_db::property_to_json(&p.value)))
                .collect::<serde_json::Map<_, _>>(),
            "sourcestamps": ctx
                .sourcestamps
                .iter()
                .map(|s| serde_json::json!({
                    "codebase": s.codebase,
                    "repository": s.repository,
                    "branch": s.branch,
                    "revision": s.revision,
                    "project": s.project,
                }))
                .collect::<Vec<_>>(),
        }),
    };
    Ok(json.to_string().into_bytes())
}

/// `JSONStringDownload` and `JSONPropertiesDownload`: JSON made by the step, sent to the worker.
pub(in crate::builds) async fn json_download(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    workdir: &str,
    value: Option<&Renderable>,
    to: Destination<'_>,
) -> Result<StepOutcome, WorkerLost> {
    match json_to_send(ctx, value) {
        Ok(json) => download(ctx, step, workdir, to, Source::Bytes(json, 0)).await,
        Err(e) => Ok(exception(ctx, step, &e).await),
    }
}

/// `StringDownload`: a rendered string, sent to the worker.
pub(in crate::builds) async fn string_download(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    workdir: &str,
    s: &Renderable,
    to: Destination<'_>,
) -> Result<StepOutcome, WorkerLost> {
    match ctx.render_string(s, "s") {
        Ok(text) => download(ctx, step, workdir, to, Source::Bytes(text.into_bytes(), 0)).await,
        Err(e) => Ok(exception(ctx, step, &e).await),
    }
}

/// `FileDownload`: a file of the master (relative to its base directory), sent to the worker; a
/// file the master cannot open fails the step, saying so in its log.
pub(in crate::builds) async fn file_download(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    workdir: &str,
    mastersrc: &Renderable,
    to: Destination<'_>,
) -> Result<StepOutcome, WorkerLost> {
    let src = match ctx.render_string(mastersrc, "mastersrc") {
        Ok(s) => s,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let path = master_path(ctx.master, &src);
    match tokio::fs::File::open(&path).await {
        Ok(f) => download(ctx, step, workdir, to, Source::File(f)).await,
        Err(e) => {
            if let Ok(mut log) = ctx.stdio().await {
                let why = format!("File '{}' not available at master: {e}\n", path.display());
                log.write(Stream::Header, &why).await;
                log.finish().await;
            }
            let state = step
                .description_done
                .clone()
                .unwrap_or_else(|| "download failed".into());
            Ok(StepOutcome {
                results: Results::Failure,
                state: with_result(state, Results::Failure),
            })
        }
    }
}
