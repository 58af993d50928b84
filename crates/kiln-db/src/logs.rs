//! Logs and the log store.
//!
//! A log's text is stored as numbered lines in chunks of at most [`MAX_CHUNK_BYTES`] bytes, each
//! compressed with zstd when that makes it smaller (Buildbot's `compressed` code 4), raw otherwise
//! (code 0). Lines of `stdio` logs carry Buildbot's one-character stream prefix (`o` stdout, `e`
//! stderr, `h` header). Chunks are written as output arrives, so a log is readable while its build
//! runs, and are read back chunk by chunk, so no reader ever holds a whole log in memory.

use kiln_core::{LogId, StepId};

use crate::batch::Batch;
use crate::listing::{Page, SqlValue};
use crate::rows::RowExt;
use crate::{Db, DbError, Result, Writer};

/// The largest chunk stored, as in Buildbot.
pub const MAX_CHUNK_BYTES: usize = 65536;
/// Longer lines are cut to this many bytes (at a character boundary), as in Buildbot.
pub const MAX_LINE_BYTES: usize = 65536;
/// The zstd level: the fastest, since logs are written far more often than read.
const ZSTD_LEVEL: i32 = 1;
const RAW: i64 = 0;
const INSERT_CHUNK: &str = "INSERT INTO logchunks (logid, first_line, last_line, content, compressed) VALUES ($1, $2, $3, $4, $5)";
const ZSTD: i64 = 4;

/// The kind of a log, with Buildbot's one-letter codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    Stdio,
    Text,
    Html,
    Deleted,
}

impl LogType {
    pub fn code(self) -> &'static str {
        match self {
            LogType::Stdio => "s",
            LogType::Text => "t",
            LogType::Html => "h",
            LogType::Deleted => "d",
        }
    }

    pub fn from_code(code: &str) -> Option<LogType> {
        Some(match code {
            "s" => LogType::Stdio,
            "t" => LogType::Text,
            "h" => LogType::Html,
            "d" => LogType::Deleted,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    pub id: LogId,
    pub name: String,
    pub slug: String,
    pub stepid: StepId,
    pub complete: bool,
    pub num_lines: i64,
    pub log_type: String,
}

/// A run of consecutive lines, joined with `\n` and without a final newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub first_line: i64,
    pub last_line: i64,
    pub text: String,
}

const COLUMNS: &str = "id, name, slug, stepid, complete, num_lines, type";

/// The columns of a log read through the alias `alias`.
pub(crate) fn log_columns(alias: &str) -> String {
    crate::listing::qualified(alias, COLUMNS)
}

pub(crate) fn log(r: &(impl RowExt + Sync)) -> Result<LogRow> {
    Ok(LogRow {
        id: LogId(r.int("id")?),
        name: r.text("name")?,
        slug: r.text("slug")?,
        stepid: StepId(r.int("stepid")?),
        complete: r.flag("complete")?,
        num_lines: r.int("num_lines")?,
        log_type: r.text("type")?,
    })
}

/// Buildbot's identifier rule for slugs: letters, digits, `_` and `-`, at most 50 characters.
pub(crate) fn slugify(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(50)
        .collect();
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// Splits whole-line text into chunks of whole lines, cutting over-long lines.
fn split_chunks(text: &str) -> Vec<(Vec<&str>, usize)> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut chunks: Vec<(Vec<&str>, usize)> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut size = 0;
    for line in body.split('\n') {
        let line = truncate_line(line);
        if !current.is_empty() && size + line.len() + 1 > MAX_CHUNK_BYTES {
            chunks.push((std::mem::take(&mut current), size));
            size = 0;
        }
        size += line.len() + 1;
        current.push(line);
    }
    if !current.is_empty() {
        chunks.push((current, size));
    }
    chunks
}

fn truncate_line(line: &str) -> &str {
    if line.len() <= MAX_LINE_BYTES {
        return line;
    }
    let mut cut = MAX_LINE_BYTES;
    while !line.is_char_boundary(cut) {
        cut -= 1;
    }
    &line[..cut]
}

fn decode_chunk(content: &[u8], compressed: i64, logid: i64) -> Result<String> {
    let bytes = match compressed {
        RAW => content.to_vec(),
        ZSTD => zstd::bulk::decompress(content, MAX_CHUNK_BYTES * 2)
            .map_err(|e| DbError::Corrupt(format!("log {logid}: bad zstd chunk: {e}")))?,
        other => {
            return Err(DbError::Corrupt(format!(
                "log {logid}: unknown chunk compression {other}"
            )));
        }
    };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl Db {
    pub async fn list_logs(&self, page: &Page) -> Result<(Vec<LogRow>, i64)> {
        let (rows, total) = self.list_rows(COLUMNS, "logs", "id", page).await?;
        Ok((rows.iter().map(log).collect::<Result<_>>()?, total))
    }

    /// The logs of every step of these builds, in one statement: a page showing many builds
    /// reads their logs without a query per build or per step.
    pub async fn logs_of_builds(&self, builds: &[kiln_core::BuildId]) -> Result<Vec<LogRow>> {
        if builds.is_empty() {
            return Ok(Vec::new());
        }
        let columns = log_columns("l");
        let marks = (1..=builds.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rest = format!(
            "FROM logs l JOIN steps s ON s.id = l.stepid WHERE s.buildid IN ({marks}) ORDER BY l.id"
        );
        let binds: Vec<SqlValue> = builds.iter().map(|b| SqlValue::Int(b.0)).collect();
        let rows = self.select(&columns, &rest, &binds).await?;
        rows.iter().map(log).collect()
    }

    pub async fn get_log(&self, id: LogId) -> Result<Option<LogRow>> {
        Ok(self
            .list_logs(&Page::eq("id", SqlValue::Int(id.0)))
            .await?
            .0
            .into_iter()
            .next())
    }

    /// Up to `max_chunks` stored chunks that hold lines from `from_line` on, in order. Reading a log
    /// in such batches keeps memory bounded whatever its size.
    pub async fn log_chunks(
        &self,
        id: LogId,
        from_line: i64,
        max_chunks: i64,
    ) -> Result<Vec<LogChunk>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT first_line, last_line, content, compressed FROM logchunks \
             WHERE logid = $1 AND last_line >= $2 ORDER BY first_line LIMIT {}",
            max_chunks.max(1)
        )))
        .bind(id.0)
        .bind(from_line)
        .fetch_all(&mut *self.reading().await?)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let content: Vec<u8> = sqlx::Row::try_get(r, "content")?;
            out.push(LogChunk {
                first_line: r.int("first_line")?,
                last_line: r.int("last_line")?,
                text: decode_chunk(&content, r.int("compressed")?, id.0)?,
            });
        }
        Ok(out)
    }

    /// Lines `first..=last` of a log (fewer if the log is shorter).
    pub async fn log_lines(&self, id: LogId, first: i64, last: i64) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut from = first.max(0);
        while from <= last {
            let chunks = self.log_chunks(id, from, 16).await?;
            if chunks.is_empty() {
                break;
            }
            for chunk in &chunks {
                for (i, line) in chunk.text.split('\n').enumerate() {
                    let n = chunk.first_line + i as i64;
                    if n >= from && n <= last {
                        out.push(line.to_string());
                    }
                }
                from = chunk.last_line + 1;
            }
        }
        Ok(out)
    }
}

impl Writer {
    /// Adds a log to a step. Its slug is derived from the name and made unique within the step.
    pub async fn add_log(&self, step: StepId, name: &str, log_type: LogType) -> Result<LogId> {
        let base = slugify(name);
        let mut w = self.writing().await?;
        let mut n = 1;
        loop {
            let slug = if n == 1 {
                base.clone()
            } else {
                format!("{base}_{n}")
            };
            let inserted = sqlx::query(
                "INSERT INTO logs (name, slug, stepid, complete, num_lines, type) VALUES ($1, $2, $3, 0, 0, $4) RETURNING id",
            )
            .bind(name)
            .bind(&slug)
            .bind(step.0)
            .bind(log_type.code())
            .fetch_one(&mut *w)
            .await;
            match inserted {
                Ok(r) => return Ok(LogId(r.int("id")?)),
                // The slug is taken in this step: try the next suffix.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() && n < 1000 => n += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Appends whole lines (each ending in `\n`) to a log, numbering them from `first_line`, and
    /// marks the log complete when `finish` is set. Returns the numbers of the first and last line
    /// added, if any.
    ///
    /// One writer owns a log (the step that made it), so it knows how many lines the log holds and
    /// passes that in: an append is then one insert per chunk and one update of the log's row, with
    /// no read first. The chunks are written before the line count, so a reader never sees a count
    /// that runs ahead of the stored lines.
    pub async fn append_log(
        &self,
        id: LogId,
        first_line: i64,
        text: &str,
        finish: bool,
    ) -> Result<Option<(i64, i64)>> {
        // Compression happens before the write lock is taken, so writers wait only for the insert.
        let mut prepared = Vec::new();
        let chunks = if text.is_empty() {
            Vec::new()
        } else {
            split_chunks(text)
        };
        for (lines, size) in chunks {
            let mut joined = String::with_capacity(size);
            for (i, l) in lines.iter().enumerate() {
                if i > 0 {
                    joined.push('\n');
                }
                joined.push_str(l);
            }
            let raw = joined.into_bytes();
            let packed = zstd::bulk::compress(&raw, ZSTD_LEVEL)
                .ok()
                .filter(|c| c.len() < raw.len());
            let (content, code) = match packed {
                Some(c) => (c, ZSTD),
                None => (raw, RAW),
            };
            prepared.push((lines.len() as i64, content, code));
        }
        let total: i64 = prepared.iter().map(|(count, _, _)| *count).sum();
        // The chunks and the new line count are one write.
        let mut batch = Batch::default();
        let mut next = first_line;
        for (count, content, code) in prepared {
            batch.push(
                INSERT_CHUNK,
                vec![
                    SqlValue::Int(id.0),
                    SqlValue::Int(next),
                    SqlValue::Int(next + count - 1),
                    SqlValue::Bytes(content),
                    SqlValue::Int(code),
                ],
            );
            next += count;
        }
        batch.push(
            "UPDATE logs SET num_lines = $1, complete = $2 WHERE id = $3",
            vec![
                SqlValue::Int(first_line + total),
                SqlValue::Int(i64::from(finish)),
                SqlValue::Int(id.0),
            ],
        );
        batch.run(self).await?;
        Ok((total > 0).then(|| (first_line, first_line + total - 1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_hold_whole_lines_within_the_size_limit() {
        let line = "x".repeat(1000);
        let text: String = (0..200).map(|_| format!("o{line}\n")).collect();
        let chunks = split_chunks(&text);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.iter().map(|(l, _)| l.len()).sum::<usize>(), 200);
        assert!(chunks.iter().all(|(_, size)| *size <= MAX_CHUNK_BYTES));
    }

    #[test]
    fn over_long_lines_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_LINE_BYTES);
        let cut = truncate_line(&long);
        assert!(cut.len() <= MAX_LINE_BYTES && cut.len() >= MAX_LINE_BYTES - 1);
    }

    #[test]
    fn slugs_follow_buildbot_identifiers() {
        assert_eq!(slugify("stdio"), "stdio");
        assert_eq!(slugify("warnings (3)"), "warnings__3_");
        assert_eq!(slugify(""), "_");
    }
}
