//! The reporters' outbox: reports that were decided, stored before they are sent, and kept a
//! while after, so that a receiver that is down, or a master that restarts, loses none of them.

use std::collections::HashMap;

use crate::batch::Batch;
use crate::connection::Backend;
use crate::eventlog::ADVANCE_POSITION;
use crate::listing::{SqlValue, json_ids};
use crate::rows::RowExt;
use crate::{Db, Result, Writer};

/// A report to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReport {
    pub reporter: String,
    /// What the report is about; a second report with the same `dedup` is not stored.
    pub dedup: String,
    /// One line for people: what it reports.
    pub summary: String,
    /// What the reporter sends, as it encoded it.
    pub payload: String,
}

/// What one consumer of the record decided: reports, and the position it decided them up to
/// (an empty consumer moves no position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub consumer: String,
    pub position: i64,
    pub reports: Vec<NewReport>,
}

/// What the reporters change in the outbox together, in one transaction: what consumers
/// decided, and which reports were delivered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxUpdate {
    pub decided: Vec<Decided>,
    pub delivered: Vec<i64>,
}

/// Where a report stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportState {
    /// Still to be delivered.
    Pending,
    Sent,
    /// Given up on: refused for good, or out of attempts.
    Failed,
}

impl ReportState {
    pub fn name(self) -> &'static str {
        match self {
            ReportState::Pending => "pending",
            ReportState::Sent => "sent",
            ReportState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> ReportState {
        match s {
            "sent" => ReportState::Sent,
            "failed" => ReportState::Failed,
            _ => ReportState::Pending,
        }
    }
}

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub id: i64,
    pub reporter: String,
    pub dedup: String,
    pub created_at: i64,
    pub summary: String,
    pub payload: String,
    pub state: ReportState,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub done_at: Option<i64>,
}

/// What a reporter's queue has next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextReport {
    /// The oldest pending reports, in order, now taken by this master.
    Due(Vec<ReportRow>),
    /// The oldest pending report may be tried at this time (or another master holds it until
    /// then).
    At(i64),
    /// Nothing is pending.
    Empty,
}

/// How a reporter's deliveries stand.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReporterStatus {
    pub reporter: String,
    pub pending: i64,
    pub sent: i64,
    pub failed: i64,
    /// When the last report was delivered.
    pub last_success_at: Option<i64>,
    /// The newest error, and when it happened.
    pub last_error: Option<(String, i64)>,
}

/// A report's columns, its payload (kept in a table of its own) among them.
macro_rules! columns {
    () => {
        "id, reporter, dedup, created_at, summary, \
         (SELECT payload FROM report_payloads WHERE report_id = reports.id) AS payload, \
         state, attempts, next_attempt_at, last_error, done_at"
    };
}

fn report_row(r: &impl RowExt) -> Result<ReportRow> {
    Ok(ReportRow {
        id: r.int("id")?,
        reporter: r.text("reporter")?,
        dedup: r.text("dedup")?,
        created_at: r.int("created_at")?,
        summary: r.text("summary")?,
        payload: r.text("payload")?,
        state: ReportState::parse(&r.text("state")?),
        attempts: r.int("attempts")?,
        next_attempt_at: r.int("next_attempt_at")?,
        last_error: r.opt_text("last_error")?,
        done_at: r.opt_int("done_at")?,
    })
}

impl Db {
    /// How each reporter's deliveries stand, by name.
    pub async fn reporter_statuses(&self) -> Result<Vec<ReporterStatus>> {
        let rows = sqlx::query(
            "SELECT reporter, state, COUNT(*) AS n, MAX(done_at) AS last FROM reports \
             GROUP BY reporter, state ORDER BY reporter",
        )
        .fetch_all(&mut *self.reading().await?)
        .await?;
        let mut out: Vec<ReporterStatus> = Vec::new();
        for r in &rows {
            let name = r.text("reporter")?;
            if out.last().is_none_or(|s| s.reporter != name) {
                out.push(ReporterStatus {
                    reporter: name.clone(),
                    ..ReporterStatus::default()
                });
            }
            let Some(status) = out.last_mut() else {
                continue;
            };
            let n = r.int("n")?;
            match ReportState::parse(&r.text("state")?) {
                ReportState::Pending => status.pending = n,
                ReportState::Sent => {
                    status.sent = n;
                    status.last_success_at = r.opt_int("last")?;
                }
                ReportState::Failed => status.failed = n,
            }
        }
        for status in &mut out {
            let newest = sqlx::query(
                "SELECT last_error, COALESCE(done_at, next_attempt_at) AS at FROM reports \
                 WHERE reporter = $1 AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
            )
            .bind(&status.reporter)
            .fetch_optional(&mut *self.reading().await?)
            .await?;
            if let Some(r) = newest {
                status.last_error = Some((r.text("last_error")?, r.int("at")?));
            }
        }
        Ok(out)
    }

    /// A reporter's newest reports, newest first.
    pub async fn reports(&self, reporter: &str, limit: i64) -> Result<Vec<ReportRow>> {
        sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM reports WHERE reporter = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(reporter)
        .bind(limit)
        .fetch_all(&mut *self.reading().await?)
        .await?
        .iter()
        .map(report_row)
        .collect()
    }
}

/// Stores a report unless one with its reporter and `dedup` is stored already, held by the
/// master `$5` until `$6` (both NULL: held by nobody); its id if it was stored.
const INSERT_REPORT: &str = "INSERT INTO reports (reporter, dedup, created_at, summary, state, \
    next_attempt_at, leased_by, leased_until) VALUES ($1, $2, $3, $4, 'pending', $3, $5, $6) \
    ON CONFLICT (reporter, dedup) DO NOTHING RETURNING id, reporter, dedup";

/// Stores the payload `$3` of the report that reporter `$1` stored for `dedup` `$2`, unless it
/// has one: a report stored before keeps the payload it was stored with.
const INSERT_PAYLOAD: &str = "INSERT INTO report_payloads (report_id, payload) SELECT id, $3 \
    FROM reports WHERE reporter = $1 AND dedup = $2 ON CONFLICT (report_id) DO NOTHING";

/// Stores reports on SQLite with two statements whatever their number, which read the reports
/// from JSON arrays: a statement for each report made every batch of reports a query of its
/// own text, which SQLite compiled anew each time, statement by statement.
const SQLITE_INSERT_REPORTS: &str = "INSERT INTO reports (reporter, dedup, created_at, summary, \
    state, next_attempt_at, leased_by, leased_until) SELECT value ->> 0, value ->> 1, $2, \
    value ->> 2, 'pending', $2, $3, $4 FROM json_each($1) WHERE true \
    ON CONFLICT (reporter, dedup) DO NOTHING RETURNING id, reporter, dedup";

/// The payloads of the reports `SQLITE_INSERT_REPORTS` stored, as `INSERT_PAYLOAD` stores one.
const SQLITE_INSERT_PAYLOADS: &str = "INSERT INTO report_payloads (report_id, payload) \
    SELECT r.id, j.value ->> 2 FROM json_each($1) AS j JOIN reports AS r \
    ON r.reporter = j.value ->> 0 AND r.dedup = j.value ->> 1 WHERE true \
    ON CONFLICT (report_id) DO NOTHING";

/// Adds the statements storing `reports` on SQLite to `batch`.
fn store_sqlite(
    batch: &mut Batch,
    reports: &[&NewReport],
    now: i64,
    by: &SqlValue,
    until: &SqlValue,
) {
    if reports.is_empty() {
        return;
    }
    let rows = json_rows(reports, |r| [&r.reporter, &r.dedup, &r.summary]);
    let payloads = json_rows(reports, |r| [&r.reporter, &r.dedup, &r.payload]);
    batch.push(
        SQLITE_INSERT_REPORTS,
        vec![rows, SqlValue::Int(now), by.clone(), until.clone()],
    );
    batch.push(SQLITE_INSERT_PAYLOADS, vec![payloads]);
}

/// A JSON array with three of each report's texts, for `json_each`.
fn json_rows(reports: &[&NewReport], fields: impl Fn(&NewReport) -> [&String; 3]) -> SqlValue {
    let rows: Vec<[&String; 3]> = reports.iter().map(|r| fields(r)).collect();
    SqlValue::Text(serde_json::to_string(&rows).unwrap_or_default())
}

/// Adds the statements storing `reports` on PostgreSQL to `batch`: two for each, which run one
/// by one there anyway, each of the same text every time.
fn store_postgres(
    batch: &mut Batch,
    reports: &[&NewReport],
    now: i64,
    by: &SqlValue,
    until: &SqlValue,
) {
    for r in reports {
        batch.push(
            INSERT_REPORT,
            vec![
                SqlValue::Text(r.reporter.clone()),
                SqlValue::Text(r.dedup.clone()),
                SqlValue::Int(now),
                SqlValue::Text(r.summary.clone()),
                by.clone(),
                until.clone(),
            ],
        );
        batch.push(
            INSERT_PAYLOAD,
            vec![
                SqlValue::Text(r.reporter.clone()),
                SqlValue::Text(r.dedup.clone()),
                SqlValue::Text(r.payload.clone()),
            ],
        );
    }
}

/// Leases the due reports at the head of a reporter's queue: of its first `$5` pending reports,
/// those before the first one that is not due yet or that another master holds.
const LEASE_REPORTS: &str = concat!(
    "UPDATE reports SET leased_by = $1, leased_until = $2 WHERE id IN \
     (SELECT id FROM reports WHERE reporter = $3 AND state = 'pending' ORDER BY id LIMIT $5) \
     AND id < COALESCE((SELECT MIN(id) FROM reports WHERE reporter = $3 AND state = 'pending' \
     AND NOT (next_attempt_at <= $4 AND (leased_until IS NULL OR leased_until <= $4 \
     OR leased_by = $1))), 9223372036854775807) RETURNING ",
    columns!()
);

impl Writer {
    /// Stores `reports` and moves `consumer` to `position` in one transaction, as
    /// [`Writer::update_outbox`] does for several consumers.
    pub async fn enqueue_reports(
        &self,
        consumer: &str,
        position: i64,
        reports: &[NewReport],
        now: i64,
        lease: Option<(i64, i64)>,
    ) -> Result<Vec<ReportRow>> {
        let update = OutboxUpdate {
            decided: vec![Decided {
                consumer: consumer.to_string(),
                position,
                reports: reports.to_vec(),
            }],
            delivered: Vec::new(),
        };
        self.update_outbox(&update, now, lease).await
    }

    /// Stores what each consumer decided and moves it to its position, and records the
    /// deliveries, all in one transaction: the event that decided a report is never handled
    /// twice, and never skipped without it. With `lease` (master, until), the reports are
    /// stored already leased to that master, which means to send them without leasing them
    /// first. The reports stored, those not stored before, in the order of their ids.
    pub async fn update_outbox(
        &self,
        update: &OutboxUpdate,
        now: i64,
        lease: Option<(i64, i64)>,
    ) -> Result<Vec<ReportRow>> {
        let decided = &update.decided;
        let (by, until) = match lease {
            Some((by, until)) => (SqlValue::Int(by), SqlValue::Int(until)),
            None => (SqlValue::Null, SqlValue::Null),
        };
        let mut batch = Batch::default();
        let reports: Vec<&NewReport> = decided.iter().flat_map(|d| &d.reports).collect();
        match self.backend() {
            Backend::Sqlite => store_sqlite(&mut batch, &reports, now, &by, &until),
            Backend::Postgres => store_postgres(&mut batch, &reports, now, &by, &until),
        }
        for d in decided.iter().filter(|d| !d.consumer.is_empty()) {
            batch.push(
                ADVANCE_POSITION,
                vec![
                    SqlValue::Text(d.consumer.clone()),
                    SqlValue::Int(d.position),
                    SqlValue::Int(now),
                ],
            );
        }
        // The deliveries are recorded in one statement of the same text whatever their number:
        // one update for each report cost SQLite a statement to compile each.
        if !update.delivered.is_empty() {
            let (ids, list) = json_ids(self.backend(), update.delivered.iter().copied());
            let sql = format!(
                "UPDATE reports SET state = 'sent', attempts = attempts + 1, done_at = $2, \
                 leased_by = NULL, leased_until = NULL WHERE id IN ({ids})"
            );
            batch.push(sql, vec![list, SqlValue::Int(now)]);
        }
        let stored = batch.run(self).await?;
        let by_key: HashMap<(&str, &str), &NewReport> = reports
            .iter()
            .map(|r| ((r.reporter.as_str(), r.dedup.as_str()), *r))
            .collect();
        let mut rows = Vec::with_capacity(stored.len());
        for row in &stored {
            let (id, reporter, dedup) = (row.int("id")?, row.text("reporter")?, row.text("dedup")?);
            let Some(r) = by_key.get(&(reporter.as_str(), dedup.as_str())).copied() else {
                continue;
            };
            rows.push(ReportRow {
                id,
                reporter: r.reporter.clone(),
                dedup,
                created_at: now,
                summary: r.summary.clone(),
                payload: r.payload.clone(),
                state: ReportState::Pending,
                attempts: 0,
                next_attempt_at: now,
                last_error: None,
                done_at: None,
            });
        }
        rows.sort_by_key(|r| r.id);
        Ok(rows)
    }

    /// Takes up to `limit` of the oldest pending reports of `reporter` for master `master`
    /// until `now + lease`, those that are due and that no other master holds. Reports go out
    /// in the order they were decided: a report that waits for a retry holds back those after
    /// it.
    pub async fn next_reports(
        &self,
        reporter: &str,
        master: i64,
        now: i64,
        lease: i64,
        limit: i64,
    ) -> Result<NextReport> {
        let mut w = self.writing().await?;
        // The usual case, due reports that nobody holds, is taken in one statement.
        let taken = sqlx::query(LEASE_REPORTS)
            .bind(master)
            .bind(now + lease)
            .bind(reporter)
            .bind(now)
            .bind(limit.max(1))
            .fetch_all(&mut *w)
            .await?;
        if !taken.is_empty() {
            let mut rows = taken.iter().map(report_row).collect::<Result<Vec<_>>>()?;
            // RETURNING promises no order.
            rows.sort_by_key(|r| r.id);
            return Ok(NextReport::Due(rows));
        }
        let head = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            ", leased_by, leased_until FROM reports WHERE reporter = $1 AND state = 'pending' \
             ORDER BY id LIMIT 1"
        ))
        .bind(reporter)
        .fetch_optional(&mut *w)
        .await?;
        let Some(head) = head else {
            return Ok(NextReport::Empty);
        };
        let row = report_row(&head)?;
        let held = head.opt_int("leased_until")?.filter(|until| *until > now);
        let by = head.opt_int("leased_by")?;
        if let Some(until) = held
            && by != Some(master)
        {
            return Ok(NextReport::At(until.max(row.next_attempt_at)));
        }
        if row.next_attempt_at > now {
            return Ok(NextReport::At(row.next_attempt_at));
        }
        // It became due or free between the two statements: look again in a second.
        Ok(NextReport::At(now + 1))
    }

    /// Records that the reports `ids` were delivered.
    pub async fn reports_delivered(&self, ids: &[i64], now: i64) -> Result<()> {
        let update = OutboxUpdate {
            decided: Vec::new(),
            delivered: ids.to_vec(),
        };
        self.update_outbox(&update, now, None).await?;
        Ok(())
    }

    /// Records that an attempt to deliver report `id` failed with `error`: it is tried again at
    /// `retry_at`, or, without one, given up.
    pub async fn report_failed(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<i64>,
        now: i64,
    ) -> Result<()> {
        let mut w = self.writing().await?;
        match retry_at {
            Some(at) => sqlx::query(
                "UPDATE reports SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2, \
                 leased_by = NULL, leased_until = NULL WHERE id = $3",
            )
            .bind(error)
            .bind(at)
            .bind(id),
            None => sqlx::query(
                "UPDATE reports SET state = 'failed', attempts = attempts + 1, last_error = $1, \
                 done_at = $2, leased_by = NULL, leased_until = NULL WHERE id = $3",
            )
            .bind(error)
            .bind(now)
            .bind(id),
        }
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    /// Keeps only the newest `keep` finished (sent or failed) reports of `reporter`; how many
    /// were removed. Pending reports are never removed.
    pub async fn prune_reports(&self, reporter: &str, keep: i64) -> Result<u64> {
        let mut w = self.writing().await?;
        let cutoff = sqlx::query(
            "SELECT id FROM reports WHERE reporter = $1 AND state <> 'pending' \
             ORDER BY id DESC LIMIT 1 OFFSET $2",
        )
        .bind(reporter)
        .bind(keep)
        .fetch_optional(&mut *w)
        .await?;
        let Some(cutoff) = cutoff else {
            return Ok(0);
        };
        let done = sqlx::query(
            "DELETE FROM reports WHERE reporter = $1 AND state <> 'pending' AND id <= $2",
        )
        .bind(reporter)
        .bind(cutoff.int("id")?)
        .execute(&mut *w)
        .await?;
        Ok(done.rows_affected())
    }
}
