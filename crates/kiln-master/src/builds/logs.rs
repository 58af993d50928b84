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
/// Stored lines are cut at this many characters, as Buildbot's workers cut them; the cut is made
/// after secrets are hidden, so that none falls across it.
pub const STORED_LINE_CHARS: usize = 4096;
/// The longest line held whole; a worker cuts longer ones, and so does the master when a peer
/// sends more without a newline.
const MAX_LINE: usize = kiln_proto::settings::MAX_LINE_LENGTH as usize;

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
    /// A line per stream that the worker may have cut at its `max_line_length`, kept until the
    /// next line of the stream shows whether a secret falls across the cut.
    held: [Option<String>; 3],
    /// How many more lines of each stream may carry the end of a secret cut before them.
    after_cut: [u8; 3],
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
            held: Default::default(),
            after_cut: Default::default(),
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
            // A peer that never ends its line is cut off as a worker would cut it.
            None if buf.len() >= MAX_LINE => {
                let mut cut = MAX_LINE;
                while !buf.is_char_boundary(cut) {
                    cut -= 1;
                }
                self.partial[slot] = buf.split_off(cut);
                buf.push('\n');
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
            let mut line = line.to_string();
            if stream == Stream::Header {
                self.redactions.environment_line(&mut line);
            }
            if let Some(mut before) = self.held[slot].take() {
                self.redactions.across_cut(&mut before, &mut line);
                push_line(&mut self.pending, prefix, &self.redactions.apply(before));
                self.after_cut[slot] = LINES_AFTER_CUT;
            }
            if self.after_cut[slot] > 0 {
                self.after_cut[slot] -= 1;
                self.redactions.after_cut(&mut line);
            }
            if may_continue(&line) {
                self.held[slot] = Some(line);
            } else {
                push_line(&mut self.pending, prefix, &self.redactions.apply(line));
            }
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
        // Each line had its secrets hidden whole before it was cut and added.
        let text = std::mem::take(&mut self.pending);
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
            if let Some(line) = self.held[slot].take() {
                push_line(
                    &mut self.pending,
                    stream.prefix(),
                    &self.redactions.apply(line),
                );
            }
            if !self.partial[slot].is_empty() {
                let rest = std::mem::take(&mut self.partial[slot]);
                push_line(
                    &mut self.pending,
                    stream.prefix(),
                    &self.redactions.apply(rest),
                );
            }
        }
        self.store(true).await;
    }
}

/// Adds a line, its secrets already hidden, in pieces of at most [`STORED_LINE_CHARS`].
fn push_line(pending: &mut String, prefix: char, line: &str) {
    // No more bytes than the limit's characters: nothing to count.
    if line.len() <= STORED_LINE_CHARS {
        pending.push(prefix);
        pending.push_str(line);
        pending.push('\n');
        return;
    }
    let mut rest = line;
    loop {
        let cut = rest
            .char_indices()
            .nth(STORED_LINE_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        pending.push(prefix);
        pending.push_str(&rest[..cut]);
        pending.push('\n');
        rest = &rest[cut..];
        if rest.is_empty() {
            return;
        }
    }
}

/// Whether a line may be a piece a worker cut from a longer one, so that the next line may be its
/// continuation: as long as kiln asks workers to cut at (less a character's bytes, for a cut
/// made at a character's start), or as long as the pieces Buildbot's worker cuts over PB, where
/// the master cannot ask it for another length.
fn may_continue(line: &str) -> bool {
    (line.len() >= MAX_LINE.saturating_sub(3) && line.chars().count() <= MAX_LINE)
        || (line.len() >= BUILDBOT_PIECES.start && BUILDBOT_PIECES.contains(&line.chars().count()))
}

/// The lines after a cut that may repeat its end (Buildbot's worker sends the rest of a cut line
/// again after an empty line).
const LINES_AFTER_CUT: u8 = 4;

/// How many characters the pieces Buildbot's worker cuts a long line into may have: 4,095, or
/// fewer when the line reached it in several parts.
const BUILDBOT_PIECES: std::ops::Range<usize> = 3072..4097;
