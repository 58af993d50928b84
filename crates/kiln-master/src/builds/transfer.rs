//! The transfer steps: `FileUpload` and `DirectoryUpload` (into the master's base directory,
//! through a temporary file so a failed upload leaves nothing half written) and `FileDownload`
//! and `StringDownload` (to the worker, in blocks).

use std::path::PathBuf;

use kiln_config::StepConfig;
use kiln_core::Results;
use kiln_core::render::Renderable;
use kiln_proto::{Args, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::logs::LogWriter;
use super::steps::{
    StepContext, StepOutcome, WorkerLost, exception, finished, master_path, results_of,
};
use crate::workers::command::{CommandIo, Stream};

/// Each transfer sink sends its command's output to the stdio log, stored once per batch of updates.
macro_rules! log_output {
    () => {
        async fn output(&mut self, stream: Stream, text: &str) {
            self.log.write(stream, text).await;
        }
        async fn flush(&mut self) {
            self.log.flush().await;
        }
        fn next_flush(&self) -> Option<tokio::time::Instant> {
            self.log.next_flush()
        }
    };
}

/// Refuses a worker path that would leave the builder's directory: an absolute path, or one whose
/// `..` segments climb above it (counting from the step's working directory).
pub(super) fn inside_builder(workdir: &str, path: &str, what: &str) -> Result<(), String> {
    let absolute =
        path.starts_with('/') || path.starts_with('\\') || path.as_bytes().get(1) == Some(&b':');
    if absolute {
        return Err(format!(
            "{what} {path:?} is absolute: transfers stay inside the builder's directory"
        ));
    }
    let mut depth: i64 = 0;
    for seg in workdir.split(['/', '\\']).chain(path.split(['/', '\\'])) {
        match seg {
            "" | "." => {}
            ".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return Err(format!("{what} {path:?} leaves the builder's directory"));
        }
    }
    Ok(())
}

impl FileSink {
    /// Puts a complete upload in place (only once the worker has said it succeeded: a file cut
    /// at `maxsize` is not left at the destination).
    async fn commit(&self) -> Result<(), String> {
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

/// Receives an uploaded file into a temporary file beside its destination.
struct FileSink {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<tokio::fs::File>,
    mode: Option<u32>,
    log: LogWriter,
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

#[allow(clippy::too_many_arguments)]
pub(super) async fn upload_file(
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
    let (src, dest) = match (
        ctx.render_string(workersrc, "workersrc"),
        ctx.render_string(masterdest, "masterdest"),
    ) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return Ok(exception(ctx, step, &e).await),
    };
    if let Err(e) = inside_builder(workdir, &src, "workersrc") {
        return Ok(exception(ctx, step, &e).await);
    }
    let dest_path = master_path(ctx.master, &dest);
    let tmp = dest_path.with_file_name(format!(
        ".{}.kiln-upload-{}",
        dest_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ctx.stepid
    ));
    let state = step
        .description
        .clone()
        .unwrap_or_else(|| format!("uploading {src}"));
    let _ = ctx
        .master
        .updates
        .set_step_state_string(ctx.stepid, &state)
        .await;
    let log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let mut sink = FileSink {
        dest: dest_path.clone(),
        tmp: tmp.clone(),
        file: None,
        mode,
        log,
        times: None,
    };
    let args = Args::build(vec![
        ("workdir", Value::from(workdir)),
        ("workersrc", Value::from(src.as_str())),
        ("path", Value::from(ctx.worker_path(workdir, &src))),
        ("maxsize", maxsize.map_or(Value::Nil, Value::from)),
        ("blocksize", Value::from(blocksize)),
        ("keepstamp", Value::Boolean(keepstamp)),
    ]);
    let outcome = ctx.remote("upload_file", args, &mut sink).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(lost) => {
            sink.log.finish().await;
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(lost.into());
        }
    };
    let mut results = results_of(&outcome, None);
    if results == Results::Success
        && let Err(e) = sink.commit().await
    {
        sink.log.write(Stream::Header, &format!("{e}\n")).await;
        results = Results::Failure;
    }
    sink.log.finish().await;
    if results != Results::Success {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    if results == Results::Success && !dest_path.exists() {
        results = Results::Failure;
    }
    if let (Results::Success, Some(url)) = (results, url) {
        let urls = serde_json::json!([{"name": url_text.clone().unwrap_or_else(|| url.clone()), "url": url}]);
        let _ = ctx.master.updates.set_step_urls(ctx.stepid, &urls).await;
    }
    Ok(finished(step, || format!("uploaded {src}"), results))
}

/// Receives a small file into memory, up to a limit.
struct MemorySink {
    data: Vec<u8>,
    /// What the worker said, for the error when the upload fails.
    said: String,
}

impl CommandIo for MemorySink {
    async fn output(&mut self, _stream: Stream, text: &str) {
        if self.said.len() < 4096 {
            self.said.push_str(text);
        }
    }
    async fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.data.extend_from_slice(data);
        Ok(())
    }
    async fn finish_upload(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Reads a file of the worker (relative to the step's working directory) into memory, for steps
/// that look at what a command wrote: a suppression file, test reports. A file larger than
/// `maxsize` is refused.
pub(super) async fn fetch(
    ctx: &StepContext<'_>,
    workdir: &str,
    path: &str,
    maxsize: u64,
) -> Result<Result<Vec<u8>, String>, WorkerLost> {
    fetch_path(ctx, workdir, &ctx.worker_path(workdir, path), maxsize).await
}

/// [`fetch`] of a full path on the worker (as its `glob` command returns them).
pub(super) async fn fetch_path(
    ctx: &StepContext<'_>,
    workdir: &str,
    path: &str,
    maxsize: u64,
) -> Result<Result<Vec<u8>, String>, WorkerLost> {
    let mut sink = MemorySink {
        data: Vec::new(),
        said: String::new(),
    };
    let args = Args::build(vec![
        ("workdir", Value::from(workdir)),
        ("workersrc", Value::from(path)),
        ("path", Value::from(path)),
        ("maxsize", Value::from(maxsize)),
        ("blocksize", Value::from(65_536u64)),
        ("keepstamp", Value::Boolean(false)),
    ]);
    let outcome = ctx.remote("upload_file", args, &mut sink).await?;
    if results_of(&outcome, None) != Results::Success {
        let said = sink.said.trim();
        return Ok(Err(if said.is_empty() {
            "the worker could not send it".to_string()
        } else {
            said.to_string()
        }));
    }
    Ok(Ok(sink.data))
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
            self.archive = Some(tempfile_in()?);
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
        tokio::task::spawn_blocking(move || -> Result<(), String> {
            std::fs::create_dir_all(&dest)
                .map_err(|e| format!("creating {}: {e}", dest.display()))?;
            let reader: Box<dyn std::io::Read> = match compress.as_deref() {
                Some("gz") => Box::new(flate2::read::GzDecoder::new(archive)),
                Some(other) => return Err(format!("unsupported compression '{other}'")),
                None => Box::new(archive),
            };
            // The tar crate refuses entries that would land outside `dest`.
            tar::Archive::new(reader)
                .unpack(&dest)
                .map_err(|e| format!("unpacking into {}: {e}", dest.display()))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

fn tempfile_in() -> Result<std::fs::File, String> {
    // An anonymous temporary file: nothing is left behind, whatever happens.
    tempfile::tempfile().map_err(|e| format!("creating a temporary file: {e}"))
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn upload_directory(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    workdir: &str,
    workersrc: &Renderable,
    masterdest: &Renderable,
    maxsize: Option<u64>,
    blocksize: u64,
    compress: Option<&str>,
) -> Result<StepOutcome, WorkerLost> {
    let (src, dest) = match (
        ctx.render_string(workersrc, "workersrc"),
        ctx.render_string(masterdest, "masterdest"),
    ) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return Ok(exception(ctx, step, &e).await),
    };
    if let Err(e) = inside_builder(workdir, &src, "workersrc") {
        return Ok(exception(ctx, step, &e).await);
    }
    let state = step
        .description
        .clone()
        .unwrap_or_else(|| format!("uploading {src}"));
    let _ = ctx
        .master
        .updates
        .set_step_state_string(ctx.stepid, &state)
        .await;
    let log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let mut sink = DirectorySink {
        dest: master_path(ctx.master, &dest),
        archive: None,
        compress: compress.map(str::to_string),
        log,
    };
    let args = Args::build(vec![
        ("workdir", Value::from(workdir)),
        ("workersrc", Value::from(src.as_str())),
        ("path", Value::from(ctx.worker_path(workdir, &src))),
        ("maxsize", maxsize.map_or(Value::Nil, Value::from)),
        ("blocksize", Value::from(blocksize)),
        ("compress", compress.map_or(Value::Nil, Value::from)),
    ]);
    let outcome = ctx.remote("upload_directory", args, &mut sink).await;
    sink.log.finish().await;
    let results = results_of(&outcome?, None);
    Ok(finished(step, || format!("uploaded {src}"), results))
}

pub(super) enum Source {
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

#[allow(clippy::too_many_arguments)]
pub(super) async fn download(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    workdir: &str,
    workerdest: &Renderable,
    mode: Option<u32>,
    maxsize: Option<u64>,
    blocksize: u64,
    source: Source,
) -> Result<StepOutcome, WorkerLost> {
    let dest = match ctx.render_string(workerdest, "workerdest") {
        Ok(d) => d,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    if let Err(e) = inside_builder(workdir, &dest, "workerdest") {
        return Ok(exception(ctx, step, &e).await);
    }
    let state = step
        .description
        .clone()
        .unwrap_or_else(|| format!("downloading to {dest}"));
    let _ = ctx
        .master
        .updates
        .set_step_state_string(ctx.stepid, &state)
        .await;
    let log = match ctx.stdio().await {
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

/// `MultipleFileUpload`: each source (a glob pattern with `glob`) into `masterdest`, under its
/// own name; directories are uploaded whole. Nothing to upload is SKIPPED, as in Buildbot.
pub(super) async fn upload_multiple(
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
    let mut log = match ctx.stdio().await {
        Ok(l) => l,
        Err(e) => return Ok(exception(ctx, step, &e).await),
    };
    let mut results = Results::Success;
    for path in &paths {
        let name = path
            .rsplit(['/', '\\'])
            .find(|s| !s.is_empty())
            .unwrap_or("upload")
            .to_string();
        let target = dest.join(&name);
        let stat = ctx
            .remote(
                "stat",
                Args::build(vec![("path", Value::from(path.as_str()))]),
                &mut Quiet,
            )
            .await?;
        const S_IFMT: i64 = 0o170000;
        const S_IFDIR: i64 = 0o040000;
        let is_dir = stat
            .stat
            .as_ref()
            .and_then(|s| s.first())
            .is_some_and(|m| m & S_IFMT == S_IFDIR);
        log.write(
            Stream::Header,
            &format!("uploading {path} to {}\n", target.display()),
        )
        .await;
        let outcome = if is_dir {
            let mut sink = DirectorySink {
                dest: target.clone(),
                archive: None,
                compress: u.compress.clone(),
                log,
            };
            let args = Args::build(vec![
                ("workdir", Value::from(workdir)),
                ("workersrc", Value::from(path.as_str())),
                ("path", Value::from(path.as_str())),
                ("maxsize", u.maxsize.map_or(Value::Nil, Value::from)),
                ("blocksize", Value::from(u.blocksize)),
                (
                    "compress",
                    u.compress.as_deref().map_or(Value::Nil, Value::from),
                ),
            ]);
            let o = ctx.remote("upload_directory", args, &mut sink).await;
            log = sink.log;
            o?
        } else {
            let tmp = target.with_file_name(format!(".{name}.kiln-upload-{}", ctx.stepid));
            let mut sink = FileSink {
                dest: target.clone(),
                tmp: tmp.clone(),
                file: None,
                mode: u.mode,
                log,
                times: None,
            };
            let args = Args::build(vec![
                ("workdir", Value::from(workdir)),
                ("workersrc", Value::from(path.as_str())),
                ("path", Value::from(path.as_str())),
                ("maxsize", u.maxsize.map_or(Value::Nil, Value::from)),
                ("blocksize", Value::from(u.blocksize)),
                ("keepstamp", Value::Boolean(u.keepstamp)),
            ]);
            let o = ctx.remote("upload_file", args, &mut sink).await;
            let committed = match &o {
                Ok(o) if results_of(o, None) == Results::Success => sink.commit().await,
                _ => Err(String::new()),
            };
            log = sink.log;
            let o = o?;
            if let Err(e) = &committed {
                let _ = tokio::fs::remove_file(&tmp).await;
                if !e.is_empty() {
                    log.write(Stream::Header, &format!("{e}\n")).await;
                    results = Results::Failure;
                }
            }
            o
        };
        results = kiln_core::results::worst_status(results, results_of(&outcome, None));
    }
    log.finish().await;
    if let (Results::Success, Some(url)) = (results, &u.url) {
        let urls = serde_json::json!([{"name": u.url_text.clone().unwrap_or_else(|| url.clone()), "url": url}]);
        let _ = ctx.master.updates.set_step_urls(ctx.stepid, &urls).await;
    }
    let n = paths.len();
    Ok(finished(
        step,
        || format!("uploaded {n} file{}", if n == 1 { "" } else { "s" }),
        results,
    ))
}

/// A command whose output is not kept (`glob`, `stat` of the files to upload).
struct Quiet;

impl CommandIo for Quiet {}

#[cfg(test)]
mod tests {
    use super::inside_builder;

    #[test]
    fn paths_that_leave_the_builder_directory_are_refused() {
        assert!(inside_builder("build", "out/a.bin", "workersrc").is_ok());
        assert!(inside_builder("build", "../sibling/a.bin", "workersrc").is_ok());
        let e = inside_builder("build", "../../etc/passwd", "workersrc").unwrap_err();
        assert!(e.contains("leaves the builder's directory"), "{e}");
        let e = inside_builder("build", "/etc/passwd", "workerdest").unwrap_err();
        assert!(e.contains("is absolute"), "{e}");
        assert!(inside_builder("build", "C:\\x", "workerdest").is_err());
        assert!(inside_builder("build", "a/../../..", "workerdest").is_err());
    }
}
