//! Uploads into the master's base directory: `FileUpload`, `DirectoryUpload` and
//! `MultipleFileUpload`. A file arrives in a temporary file beside its destination and is renamed
//! into place only once the worker reports success, so a failed upload (or one cut at `maxsize`)
//! leaves nothing half written; a directory arrives as a tar stream unpacked at the end.

use std::path::{Path, PathBuf};

use kiln_config::StepConfig;
use kiln_core::Results;
use kiln_core::render::Renderable;
use kiln_proto::{Args, Value};
use tokio::io::AsyncWriteExt;

use super::{Quiet, begin, inside_builder, log_output, set_url};
use crate::builds::logs::LogWriter;
use crate::builds::steps::{
    StepContext, StepOutcome, WorkerLost, exception, finished, master_path, results_of,
};
use crate::workers::command::{CommandIo, Stream};

/// Receives an uploaded file into a temporary file beside its destination.
struct FileSink {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<tokio::fs::File>,
    mode: Option<u32>,
    log: LogWriter,
    /// Access and modification times the worker sent (`keepstamp`).
    times: Option<(f64, f64)>,
}

impl CommandIo for FileSink {
    log_output!();
    async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        if self.file.is_none() {
            if let Some(parent) = self.tmp.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            self.file = Some(
                tokio::fs::File::create(&self.tmp)
                    .await
                    .map_err(|e| format!("creating {}: {e}", self.tmp.display()))?,
            );
        }
        match self.file.as_mut() {
            Some(f) => f
                .write_all(data)
                .await
                .map_err(|e| format!("writing {}: {e}", self.tmp.display())),
            None => Err("upload file is not open".into()),
        }
    }
    async fn finish_upload(&mut self) -> Result<(), String> {
        if self.file.is_none() {
            // An empty file sends no data at all.
            self.write(&[]).await?;
        }
        if let Some(mut f) = self.file.take() {
            f.flush().await.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    async fn utime(&mut self, access: f64, modified: f64) -> Result<(), String> {
        self.times = Some((access, modified));
        Ok(())
    }
}

impl FileSink {
    /// Puts a complete upload in place, with its mode and (with `keepstamp`) its times.
    async fn commit(&self) -> Result<(), String> {
        if let Some((access, modified)) = self.times {
            let at = |secs: f64| {
                std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(secs.max(0.0))
            };
            let times = std::fs::FileTimes::new()
                .set_accessed(at(access))
                .set_modified(at(modified));
            std::fs::File::options()
                .write(true)
                .open(&self.tmp)
                .and_then(|f| f.set_times(times))
                .map_err(|e| format!("setting the times of {}: {e}", self.tmp.display()))?;
        }
        tokio::fs::rename(&self.tmp, &self.dest)
            .await
            .map_err(|e| format!("moving upload to {}: {e}", self.dest.display()))?;
        if let Some(mode) = self.mode {
            use std::os::unix::fs::PermissionsExt;
            let _ =
                tokio::fs::set_permissions(&self.dest, std::fs::Permissions::from_mode(mode)).await;
        }
        Ok(())
    }
}

/// Receives a directory as a tar stream and unpacks it at the end.
struct DirectorySink {
    dest: PathBuf,
    archive: Option<std::fs::File>,
    compress: Option<String>,
    log: LogWriter,
}

impl CommandIo for DirectorySink {
    log_output!();
    async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        use std::io::Write;
        if self.archive.is_none() {
            // An anonymous temporary file: nothing is left behind, whatever happens.
            self.archive =
                Some(tempfile::tempfile().map_err(|e| format!("creating a temporary file: {e}"))?);
        }
        match self.archive.as_mut() {
            Some(f) => f.write_all(data).map_err(|e| e.to_string()),
            None => Err("archive is not open".into()),
        }
    }
    async fn finish_upload(&mut self) -> Result<(), String> {
        use std::io::Seek;
        let Some(mut archive) = self.archive.take() else {
            return tokio::fs::create_dir_all(&self.dest)
                .await
                .map_err(|e| e.to_string());
        };
        archive.rewind().map_err(|e| e.to_string())?;
        let dest = self.dest.clone();
        let compress = self.compress.clone();
        tokio::task::spawn_blocking(move || unpack(archive, compress.as_deref(), &dest))
            .await
            .map_err(|e| e.to_string())?
    }
}

/// Unpacks a worker's archive of a directory (tar, gzipped when `compress` says `gz`) into
/// `dest`, which it creates.
pub(crate) fn unpack(
    archive: impl std::io::Read,
    compress: Option<&str>,
    dest: &std::path::Path,
) -> Result<(), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {}: {e}", dest.display()))?;
    let reader: Box<dyn std::io::Read + '_> = match compress {
        Some("gz") => Box::new(flate2::read::GzDecoder::new(archive)),
        Some(other) => return Err(format!("unsupported compression '{other}'")),
        None => Box::new(archive),
    };
    // The tar crate refuses entries that would land outside `dest`.
    tar::Archive::new(reader)
        .unpack(dest)
        .map_err(|e| format!("unpacking into {}: {e}", dest.display()))
}

/// How files and directories are uploaded.
#[derive(Default)]
struct Options<'a> {
    mode: Option<u32>,
    maxsize: Option<u64>,
    blocksize: u64,
    keepstamp: bool,
    compress: Option<&'a str>,
}

/// Uploads the worker file at `path` (a full path) to `target`, logging to `log`, which is given
/// back whatever happens.
async fn receive_file(
    ctx: &StepContext<'_>,
    workdir: &str,
    path: &str,
    target: &Path,
    o: &Options<'_>,
    log: LogWriter,
) -> (Result<Results, WorkerLost>, LogWriter) {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = target.with_file_name(format!(".{name}.kiln-upload-{}", ctx.stepid));
    let mut sink = FileSink {
        dest: target.to_path_buf(),
        tmp: tmp.clone(),
        file: None,
        mode: o.mode,
        log,
        times: None,
    };
    let args = Args::build(vec![
        ("workdir", Value::from(workdir)),
        ("workersrc", Value::from(path)),
        ("path", Value::from(path)),
        ("maxsize", o.maxsize.map_or(Value::Nil, Value::from)),
        ("blocksize", Value::from(o.blocksize)),
        ("keepstamp", Value::Boolean(o.keepstamp)),
    ]);
    let outcome = ctx.remote("upload_file", args, &mut sink).await;
    let mut results = match &outcome {
        Ok(o) => results_of(o, None),
        Err(_) => Results::Retry,
    };
    if results == Results::Success
        && let Err(e) = sink.commit().await
    {
        sink.log.write(Stream::Header, &format!("{e}\n")).await;
        results = Results::Failure;
    }
    if results != Results::Success {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    (outcome.map(|_| results).map_err(WorkerLost::from), sink.log)
}

/// Uploads the worker directory at `path` (a full path) into `target`, as [`receive_file`].
async fn receive_directory(
    ctx: &StepContext<'_>,
    workdir: &str,
    path: &str,
    target: &Path,
    o: &Options<'_>,
    log: LogWriter,
) -> (Result<Results, WorkerLost>, LogWriter) {
    let mut sink = DirectorySink {
        dest: target.to_path_buf(),
        archive: None,
        compress: o.compress.map(str::to_string),
        log,
    };
    let args = Args::build(vec![
        ("workdir", Value::from(workdir)),
        ("workersrc", Value::from(path)),
        ("path", Value::from(path)),
        ("maxsize", o.maxsize.map_or(Value::Nil, Value::from)),
        ("blocksize", Value::from(o.blocksize)),
        ("compress", o.compress.map_or(Value::Nil, Value::from)),
    ]);
    let outcome = ctx.remote("upload_directory", args, &mut sink).await;
    (
        outcome
            .map(|o| results_of(&o, None))
            .map_err(WorkerLost::from),
        sink.log,
    )
}

/// The source and destination of a single upload, rendered and checked.
async fn endpoints(
    ctx: &StepContext<'_>,
    workdir: &str,
    workersrc: &Renderable,
    masterdest: &Renderable,
) -> Result<(String, PathBuf), String> {
    let src = ctx.render_string(workersrc, "workersrc")?;
    let dest = ctx.render_string(masterdest, "masterdest")?;
    inside_builder(workdir, &src, "workersrc")?;
    Ok((src, master_path(ctx.master, &dest)))
}

#[allow(clippy::too_many_arguments)]
pub(in crate::builds) async fn upload_file(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    workdir: &str,
    workersrc: &Renderable,
    masterdest: &Renderable,
    mode: Option<u32>,
    maxsize: Option<u64>,
    blocksize: u64,
    keepstamp: bool,
    url: &Option<String>,
    url_text: &Option<String>,
) -> Result<StepOutcome, WorkerLost> {
    let (src, dest) = match endpoints(ctx, workdir, workersrc, masterdest).await {
        Ok(e) => e,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let log = match begin(ctx, step, format!("uploading {src}")).await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let options = Options {
        mode,
        maxsize,
        blocksize,
        keepstamp,
        compress: None,
    };
    let path = ctx.worker_path(workdir, &src);
    let (results, mut log) = receive_file(ctx, workdir, &path, &dest, &options, log).await;
    log.finish().await;
    let results = results?;
    if results == Results::Success {
        set_url(ctx, url, url_text).await;
    }
    Ok(finished(step, || format!("uploaded {src}"), results))
}

#[allow(clippy::too_many_arguments)]
pub(in crate::builds) async fn upload_directory(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    workdir: &str,
    workersrc: &Renderable,
    masterdest: &Renderable,
    maxsize: Option<u64>,
    blocksize: u64,
    compress: Option<&str>,
) -> Result<StepOutcome, WorkerLost> {
    let (src, dest) = match endpoints(ctx, workdir, workersrc, masterdest).await {
        Ok(e) => e,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let log = match begin(ctx, step, format!("uploading {src}")).await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let path = ctx.worker_path(workdir, &src);
    let options = Options {
        maxsize,
        blocksize,
        compress,
        ..Options::default()
    };
    let (results, mut log) = receive_directory(ctx, workdir, &path, &dest, &options, log).await;
    log.finish().await;
    Ok(finished(step, || format!("uploaded {src}"), results?))
}

/// `MultipleFileUpload`: each source (a glob pattern with `glob`) into `masterdest`, under its
/// own name; directories are uploaded whole. Nothing to upload is SKIPPED, as in Buildbot.
pub(in crate::builds) async fn upload_multiple(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    workdir: &str,
    u: &kiln_config::MultipleFileUploadConfig,
) -> Result<StepOutcome, WorkerLost> {
    let sources = match ctx.render(&u.workersrcs, "workersrcs") {
        Ok(kiln_core::PropertyValue::List(items)) => items.iter().map(|i| i.render()).collect(),
        Ok(one) => vec![one.render()],
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let dest = match ctx.render_string(&u.masterdest, "masterdest") {
        Ok(d) => master_path(ctx.master, &d),
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let mut paths: Vec<String> = Vec::new();
    for src in &sources {
        if let Err(e) = inside_builder(workdir, src, "workersrcs") {
            return Ok(exception(ctx, step, &e).await);
        }
        let full = ctx.worker_path(workdir, src);
        if u.glob {
            let args = Args::build(vec![("path", Value::from(full))]);
            let outcome = ctx.remote("glob", args, &mut Quiet).await?;
            let mut found = outcome.files.unwrap_or_default();
            found.sort();
            paths.extend(found);
        } else {
            paths.push(full);
        }
    }
    if paths.is_empty() {
        return Ok(StepOutcome {
            results: Results::Skipped,
            state: "nothing to upload".into(),
        });
    }
    let n = paths.len();
    let mut log = match begin(ctx, step, format!("uploading {n} files")).await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let options = Options {
        mode: u.mode,
        maxsize: u.maxsize,
        blocksize: u.blocksize,
        keepstamp: u.keepstamp,
        compress: u.compress.as_deref(),
    };
    let mut results = Results::Success;
    for path in &paths {
        let name = path
            .rsplit(['/', '\\'])
            .find(|s| !s.is_empty())
            .unwrap_or("upload");
        let target = dest.join(name);
        let stat = ctx
            .remote(
                "stat",
                Args::build(vec![("path", Value::from(path.as_str()))]),
                &mut Quiet,
            )
            .await?;
        let is_dir = stat
            .stat
            .as_ref()
            .and_then(|s| s.first())
            .is_some_and(|m| super::is_directory(*m));
        log.write(
            Stream::Header,
            &format!("uploading {path} to {}\n", target.display()),
        )
        .await;
        let (one, back) = if is_dir {
            receive_directory(ctx, workdir, path, &target, &options, log).await
        } else {
            receive_file(ctx, workdir, path, &target, &options, log).await
        };
        log = back;
        match one {
            Ok(r) => results = kiln_core::results::worst_status(results, r),
            Err(lost) => {
                log.finish().await;
                return Err(lost);
            }
        }
    }
    log.finish().await;
    if results == Results::Success {
        set_url(ctx, &u.url, &u.url_text).await;
    }
    Ok(finished(
        step,
        || format!("uploaded {n} file{}", if n == 1 { "" } else { "s" }),
        results,
    ))
}
