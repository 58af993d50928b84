//! The durable record of events (`event_log`) and where each of its consumers has got to
//! (`event_consumers`).
//!
//! A write that changes what a consumer must not miss (a buildset submitted, a build finished, a
//! worker gone, …) inserts its events here in its own transaction, so a committed change always
//! has its events and a rolled-back one never does. Event ids follow commit order: SQLite has one
//! writer, and on PostgreSQL a transaction takes an advisory lock before it inserts events and
//! holds it until it commits, so no event becomes visible behind one already read.

use sqlx::AnyConnection;

use crate::connection::Backend;
use crate::listing::SqlValue;
use crate::rows::RowExt;
use crate::{Db, Result, Writer};

/// An event to keep: its routing key, its payload as JSON text, and when it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub key: String,
    pub payload: String,
    pub at: i64,
}

/// What a write records in the durable record, made from what the write returns: the update
/// layer passes one to each write whose events consumers must not miss.
pub trait Recorder<T>: Fn(&T) -> Vec<EventRecord> + Send + Sync {}

impl<T, F: Fn(&T) -> Vec<EventRecord> + Send + Sync> Recorder<T> for F {}

/// The recorder of a write that keeps no events: for tools and tests that write directly.
pub fn unrecorded<T>(_: &T) -> Vec<EventRecord> {
    Vec::new()
}

/// An event as kept, with its position in the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: i64,
    pub key: String,
    pub payload: String,
    pub at: i64,
}

/// The row of `event_consumers` that holds how far events have been pruned; consumer names are
/// chosen by kiln's components, never by users, and none starts with `kiln:`.
const PRUNED: &str = "kiln:pruned";

/// Moves a row of `event_consumers` forward, never back: $1 name, $2 position, $3 time.
pub(crate) const ADVANCE_POSITION: &str = "INSERT INTO event_consumers (name, position, updated_at) \
    VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET position = excluded.position, \
    updated_at = excluded.updated_at WHERE event_consumers.position < excluded.position";

/// The PostgreSQL advisory lock that orders event inserts across masters.
const ORDER_LOCK: i64 = 0x6b69_6c6e_6576;

/// Inserts `records` in the transaction open on `conn`.
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    backend: Backend,
    records: &[EventRecord],
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    if backend == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(ORDER_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    insert_query(records, "").execute(&mut *conn).await?;
    Ok(())
}

/// One `INSERT` of every record, followed by `tail` (`COMMIT` when the caller commits with it).
pub(crate) fn insert_query<'q>(
    records: &'q [EventRecord],
    tail: &str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    let mut sql = String::from("INSERT INTO event_log (event_key, payload, at) VALUES ");
    for i in 0..records.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}, ${}, ${})", i * 3 + 1, i * 3 + 2, i * 3 + 3));
    }
    sql.push_str(tail);
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for r in records {
        query = query
            .bind(r.key.as_str())
            .bind(r.payload.as_str())
            .bind(r.at);
    }
    query
}

fn stored_event(r: &impl RowExt) -> Result<StoredEvent> {
    Ok(StoredEvent {
        id: r.int("id")?,
        key: r.text("event_key")?,
        payload: r.text("payload")?,
        at: r.int("at")?,
    })
}

impl Db {
    /// Up to `limit` events after position `after`, in order.
    ///
    /// Every durable consumer reads through here, so on SQLite the events come back packed
    /// into one row rather than handed over from SQLite's thread one row each.
    pub async fn events_after(&self, after: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows = self
            .select(
                "id, event_key, payload, at",
                "FROM event_log WHERE id > $1 ORDER BY id LIMIT $2",
                &[SqlValue::Int(after), SqlValue::Int(limit)],
            )
            .await?;
        rows.iter().map(stored_event).collect()
    }

    /// The position of the oldest event still kept, if any.
    pub async fn oldest_event(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(id) AS id FROM event_log")
            .fetch_one(&mut *self.reading().await?)
            .await?;
        row.opt_int("id")
    }

    /// The position of the newest event, or 0 when there is none.
    pub async fn newest_event(&self) -> Result<i64> {
        let row = sqlx::query("SELECT MAX(id) AS id FROM event_log")
            .fetch_one(&mut *self.reading().await?)
            .await?;
        Ok(row.opt_int("id")?.unwrap_or(0))
    }

    /// The position up to which events have been pruned (0 when none has been).
    pub async fn pruned_through(&self) -> Result<i64> {
        Ok(self.consumer_position(PRUNED).await?.unwrap_or(0))
    }

    /// The last position a consumer acknowledged, if it ever did.
    pub async fn consumer_position(&self, consumer: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT position FROM event_consumers WHERE name = $1")
            .bind(consumer)
            .fetch_optional(&mut *self.reading().await?)
            .await?;
        row.map(|r| r.int("position")).transpose()
    }

    /// The workers' connections and disconnections recorded between `from` and `to` (epoch
    /// seconds), newest first, at most `limit` of them: the waterfall's `show_events`.
    pub async fn worker_events(&self, from: i64, to: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT id, event_key, payload, at FROM event_log WHERE at >= $1 AND at <= $2 \
             AND (event_key LIKE 'workers.%.connected' OR event_key LIKE 'workers.%.disconnected') \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&mut *self.reading().await?)
        .await?;
        rows.iter().map(stored_event).collect()
    }
}

impl Writer {
    /// Records that `consumer` has handled every event up to `position`. A position behind the
    /// one stored is ignored, so an acknowledgement that arrives late changes nothing.
    pub async fn acknowledge_events(&self, consumer: &str, position: i64, now: i64) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::query(ADVANCE_POSITION)
            .bind(consumer)
            .bind(position)
            .bind(now)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    /// Keeps only the newest `keep` events, and remembers up to where it removed them, so that
    /// a consumer left behind is told what it missed; returns how many were removed.
    pub async fn prune_events(&self, keep: i64, now: i64) -> Result<u64> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        let newest = sqlx::query("SELECT MAX(id) AS id FROM event_log")
            .fetch_one(&mut *tx)
            .await?
            .opt_int("id")?
            .unwrap_or(0);
        let through = newest - keep;
        if through <= 0 {
            return Ok(0);
        }
        let done = sqlx::query("DELETE FROM event_log WHERE id <= $1")
            .bind(through)
            .execute(&mut *tx)
            .await?;
        sqlx::query(ADVANCE_POSITION)
            .bind(PRUNED)
            .bind(through)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
