//! The web port's access log: one line per request in the Combined Log Format, written by a task
//! of its own so that no request waits for the disk, and rotated by size as Buildbot's
//! `http.log` is (`logRotateLength`, `maxRotatedFiles`).

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_LENGTH, REFERER, USER_AGENT};
use axum::middleware::Next;
use axum::response::Response;
use kiln_api::Services;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// Lines waiting for the writer; when it falls this far behind, lines are dropped and counted
/// rather than slowing requests down.
const QUEUE: usize = 4096;

enum Entry {
    Line(String),
    /// Answered once every line before it is written.
    Sync(oneshot::Sender<()>),
}

/// Where access log lines go.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Entry>,
    services: Services,
}

impl AccessLog {
    /// Starts the writer of `path`, rotated at `rotate_length` bytes keeping `keep` old files.
    pub fn start(services: Services, path: PathBuf, rotate_length: u64, keep: usize) -> AccessLog {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write(rx, path, rotate_length, keep));
        AccessLog { tx, services }
    }

    fn record(&self, line: String) {
        if self.tx.try_send(Entry::Line(line)).is_err() {
            tracing::warn!("the access log is behind; a line was dropped");
        }
    }

    /// Waits until every line recorded so far is written.
    pub async fn sync(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Entry::Sync(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// The middleware: the request's line, once its answer is known.
pub async fn log(State(log): State<AccessLog>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "-".to_string(), |c| c.0.ip().to_string());
    // Read before the request moves on: the body cannot be shared across the wait.
    let (referer, agent) = {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "-".to_string(), quote)
        };
        (header(REFERER), header(USER_AGENT))
    };
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let first_line = quote(&format!(
        "{} {target} {:?}",
        request.method(),
        request.version()
    ));
    let response = next.run(request).await;
    let size = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let when = jiff::Timestamp::from_second(log.services.read.now())
        .map(|t| t.strftime("%d/%b/%Y:%H:%M:%S +0000").to_string())
        .unwrap_or_default();
    log.record(format!(
        "{peer} - - [{when}] {first_line} {} {size} {referer} {agent}\n",
        response.status().as_u16()
    ));
    response
}

/// A header's text in quotes, with what would break the line escaped.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

async fn write(mut rx: mpsc::Receiver<Entry>, path: PathBuf, rotate_length: u64, keep: usize) {
    let mut file: Option<tokio::fs::File> = None;
    let mut size = 0u64;
    while let Some(entry) = rx.recv().await {
        let line = match entry {
            Entry::Sync(done) => {
                if let Some(f) = file.as_mut() {
                    let _ = f.flush().await;
                }
                let _ = done.send(());
                continue;
            }
            Entry::Line(line) => line,
        };
        if file.is_some() && size + line.len() as u64 > rotate_length {
            file = None;
            rotate(&path, keep).await;
        }
        if file.is_none() {
            match tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await
            {
                Ok(f) => {
                    size = f.metadata().await.map(|m| m.len()).unwrap_or(0);
                    file = Some(f);
                }
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "cannot open the access log");
                    continue;
                }
            }
        }
        if let Some(f) = file.as_mut() {
            if let Err(error) = f.write_all(line.as_bytes()).await {
                tracing::error!(path = %path.display(), %error, "cannot write the access log");
            }
            size += line.len() as u64;
            // Written out whenever nothing more is waiting: a quiet log is complete on disk.
            if rx.is_empty() {
                let _ = f.flush().await;
            }
        }
    }
}

/// `http.log` becomes `http.log.1`, `http.log.1` becomes `http.log.2`, …, keeping `keep` of them.
async fn rotate(path: &std::path::Path, keep: usize) {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", path.display()));
    if keep == 0 {
        let _ = tokio::fs::remove_file(path).await;
        return;
    }
    let _ = tokio::fs::remove_file(numbered(keep)).await;
    for n in (1..keep).rev() {
        let _ = tokio::fs::rename(numbered(n), numbered(n + 1)).await;
    }
    let _ = tokio::fs::rename(path, numbered(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_written_and_rotated_by_size_keeping_so_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("http.log");
        let (tx, rx) = mpsc::channel(16);
        let writer = tokio::spawn(write(rx, path.clone(), 25, 2));
        for i in 0..7 {
            tx.send(Entry::Line(format!("line {i} of ten\n")))
                .await
                .unwrap();
        }
        drop(tx);
        writer.await.unwrap();
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        // 14 bytes a line, 25 a file: a line each, the newest in http.log, two kept.
        assert_eq!(read(&path), "line 6 of ten\n");
        assert_eq!(read(&dir.path().join("http.log.1")), "line 5 of ten\n");
        assert_eq!(read(&dir.path().join("http.log.2")), "line 4 of ten\n");
        assert!(!dir.path().join("http.log.3").exists());
    }

    #[test]
    fn quoted_text_cannot_break_a_line() {
        assert_eq!(quote("a \"b\"\n\\"), "\"a \\\"b\\\"\\x0a\\\\\"");
    }
}
