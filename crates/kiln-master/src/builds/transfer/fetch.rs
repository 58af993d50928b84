//! Small worker files read into memory for steps that look at what a command wrote (a
//! suppression file, test reports), through the worker's `upload_file` with a size limit.

use kiln_core::Results;
use kiln_proto::{Args, Value};

use crate::builds::steps::{StepContext, WorkerLost, results_of};
use crate::workers::command::{CommandIo, Stream};

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
pub(in crate::builds) async fn fetch(
    ctx: &StepContext<'_>,
    workdir: &str,
    path: &str,
    maxsize: u64,
) -> Result<Result<Vec<u8>, String>, WorkerLost> {
    fetch_path(ctx, workdir, &ctx.worker_path(workdir, path), maxsize).await
}

/// [`fetch`] of a full path on the worker (as its `glob` command returns them).
pub(in crate::builds) async fn fetch_path(
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
