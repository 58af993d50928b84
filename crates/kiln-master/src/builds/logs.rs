//! Writing a step's stdio log: lines get Buildbot's stream prefix and are stored in batches.
//!
//! Output is kept briefly before it is stored, so a short command's header, output and exit
//! status land in one chunk and one write rather than several, while a long command's output still
//! shows up within [`LIVE_DELAY`].

use std::time::Duration;

use kiln_core::LogId;
use tokio::time::Instant;

use crate::secrets::Redactions;
use crate::updates::Updates;
use crate::workers::command::Stream;

/// Pending text this big is stored at once.
const FLUSH_BYTES: usize = 64 * 1024;
/// Pending text is stored at the latest this long after it arrived.
pub const LIVE_DELAY: Duration = Duration::from_millis(200);

pub struct LogWriter {
    updates: Updates,
    pub id: LogId,
    pending: String,
    /// When the oldest pending text arrived.
    pending_since: Option<Instant>,
    /// Lines stored so far: this writer is the log's only writer.
    lines: i64,
    /// Partial lines per stream: the protocol sends whole lines, but a peer may not.
    partial: [String; 3],
    failed: bool,
    /// The build's secrets, hidden before anything is stored.
    redactions: Redactions,
}

impl LogWriter {
    pub fn new(updates: Updates, id: LogId, redactions: Redactions) -> Self {
        LogWriter {
            updates,
            id,
            pending: String::new(),
            pending_since: None,
            lines: 0,
            partial: Default::default(),
            failed: false,
            redactions,
        }
    }

    fn slot(stream: Stream) -> usize {
        match stream {
            Stream::Header => 0,
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }

    pub async fn write(&mut self, stream: Stream, text: &str) {
        let slot = Self::slot(stream);
        let mut buf = std::mem::take(&mut self.partial[slot]);
        buf.push_str(text);
        let complete = match buf.rfind('\n') {
            Some(i) => {
                let rest = buf.split_off(i + 1);
                self.partial[slot] = rest;
                buf
            }
            None => {
                self.partial[slot] = buf;
                return;
            }
        };
        let prefix = stream.prefix();
        self.pending_since.get_or_insert_with(Instant::now);
        for line in complete.split_terminator('\n') {
            self.pending.push(prefix);
            self.pending.push_str(line);
            self.pending.push('\n');
        }
        if self.pending.len() >= FLUSH_BYTES {
            self.store(false).await;
        }
    }

    /// When pending text must be stored at the latest.
    pub fn next_flush(&self) -> Option<Instant> {
        self.pending_since.map(|t| t + LIVE_DELAY)
    }

    /// Stores pending text that is big or old enough.
    pub async fn flush(&mut self) {
        if self.pending.len() >= FLUSH_BYTES
            || self.next_flush().is_some_and(|t| t <= Instant::now())
        {
            self.store(false).await;
        }
    }

    /// Stores what is pending, and completes the log when `finish` is set.
    async fn store(&mut self, finish: bool) {
        // Lines are complete here, so a secret is never split between two stores.
        let text = self.redactions.apply(std::mem::take(&mut self.pending));
        self.pending_since = None;
        if text.is_empty() && !finish {
            return;
        }
        match self
            .updates
            .append_log(self.id, self.lines, &text, finish)
            .await
        {
            Ok(Some((_, last))) => self.lines = last + 1,
            Ok(None) => {}
            Err(error) => {
                // The lines are counted as stored anyway: a failure leaves a gap in the numbering,
                // never two chunks claiming the same lines.
                self.lines += text.bytes().filter(|b| *b == b'\n').count() as i64;
                // Losing log text must not fail the build; say so once.
                if !self.failed {
                    tracing::error!(log = %self.id, %error, "storing log output");
                    self.failed = true;
                }
            }
        }
    }

    /// Stores partial lines and marks the log complete.
    pub async fn finish(&mut self) {
        for stream in [Stream::Header, Stream::Stdout, Stream::Stderr] {
            let slot = Self::slot(stream);
            if !self.partial[slot].is_empty() {
                let rest = std::mem::take(&mut self.partial[slot]);
                self.pending.push(stream.prefix());
                self.pending.push_str(&rest);
                self.pending.push('\n');
            }
        }
        self.store(true).await;
    }
}
