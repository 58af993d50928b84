//! Writing a step's stdio log: lines get Buildbot's stream prefix and are stored once per batch.

use kiln_core::LogId;

use crate::updates::Updates;
use crate::workers::command::Stream;

/// Batches bigger than this are stored at once rather than at the end of the update.
const FLUSH_BYTES: usize = 64 * 1024;

pub struct LogWriter {
    updates: Updates,
    pub id: LogId,
    pending: String,
    /// Partial lines per stream: the protocol sends whole lines, but a peer may not.
    partial: [String; 3],
    failed: bool,
}

impl LogWriter {
    pub fn new(updates: Updates, id: LogId) -> Self {
        LogWriter {
            updates,
            id,
            pending: String::new(),
            partial: Default::default(),
            failed: false,
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
        for line in complete.split_terminator('\n') {
            self.pending.push(prefix);
            self.pending.push_str(line);
            self.pending.push('\n');
        }
        if self.pending.len() >= FLUSH_BYTES {
            self.flush().await;
        }
    }

    /// Stores what is pending.
    pub async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.pending);
        if let Err(error) = self.updates.append_log(self.id, &text).await {
            // Losing log text must not fail the build; say so once.
            if !self.failed {
                tracing::error!(log = %self.id, %error, "storing log output");
                self.failed = true;
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
        self.flush().await;
        if let Err(error) = self.updates.finish_log(self.id).await {
            tracing::error!(log = %self.id, %error, "finishing log");
        }
    }
}
