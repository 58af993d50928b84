//! The transfer steps: uploads into the master's base directory (`upload.rs`: `FileUpload`,
//! `DirectoryUpload`, `MultipleFileUpload`), downloads to the worker (`download.rs`:
//! `FileDownload`, `StringDownload`, the JSON downloads), and small worker files read into memory
//! for other steps (`fetch.rs`). What they share is here: worker paths stay inside the builder's
//! directory, and a step's state and log are set up the same way.

mod download;
mod fetch;
pub(crate) mod upload;

pub(super) use download::{Destination, file_download, json_download, string_download};
pub(super) use fetch::{fetch, fetch_path};
pub(super) use upload::{upload_directory, upload_file, upload_multiple};

use kiln_config::StepConfig;

use super::logs::LogWriter;
use super::steps::StepContext;
use crate::workers::command::CommandIo;

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
pub(crate) use log_output;

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

/// Shows what the step is doing (its `description`, or `doing`) and opens its stdio log.
async fn begin(
    ctx: &StepContext<'_>,
    step: &StepConfig,
    doing: String,
) -> Result<LogWriter, String> {
    let state = step.description.clone().unwrap_or(doing);
    let _ = ctx
        .master
        .updates
        .set_step_state_string(ctx.stepid, &state)
        .await;
    ctx.stdio().await
}

/// Links an upload's result from the step, as `url` (and `urlText`) ask.
async fn set_url(ctx: &StepContext<'_>, url: &Option<String>, text: &Option<String>) {
    if let Some(url) = url {
        let urls =
            serde_json::json!([{"name": text.clone().unwrap_or_else(|| url.clone()), "url": url}]);
        let _ = ctx.master.updates.set_step_urls(ctx.stepid, &urls).await;
    }
}

/// The kind of file a worker's `stat` reports, from the mode it answers (os.stat's first field).
pub(super) fn is_regular_file(mode: i64) -> bool {
    mode & 0o170000 == 0o100000
}

pub(super) fn is_directory(mode: i64) -> bool {
    mode & 0o170000 == 0o040000
}

/// A command whose output is not kept (`glob`, and `stat` of files about to be uploaded).
pub(super) struct Quiet;

impl CommandIo for Quiet {}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn stat_modes_tell_files_from_directories() {
        assert!(is_regular_file(0o100644) && !is_directory(0o100644));
        assert!(is_directory(0o040755) && !is_regular_file(0o040755));
        assert!(!is_regular_file(0o120777), "a symbolic link");
    }
}
