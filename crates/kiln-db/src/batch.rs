//! Several writes that belong together, applied as one transaction.
//!
//! On SQLite every statement sent through sqlx is a round trip to the connection's own thread, and
//! a transaction adds two more (`BEGIN`, `COMMIT`); a batch instead sends all its statements, framed
//! by `BEGIN` and `COMMIT`, as one multi-statement query, so a whole unit of work costs one round
//! trip and one commit. PostgreSQL cannot take several statements with parameters in one query, so
//! there the batch runs them one by one inside an ordinary transaction. Either way the statements
//! are the same SQL, and the rows they return (`RETURNING`) come back in order.

use std::borrow::Cow;

use sqlx::AnyConnection;
use sqlx::any::AnyRow;
use std::sync::atomic::Ordering;

use sqlx::{Column, Row};

use crate::connection::Backend;
use crate::eventlog::{self, EventRecord};
use crate::listing::SqlValue;
use crate::{Result, Writer};

#[derive(Default)]
pub(crate) struct Batch {
    statements: Vec<(Cow<'static, str>, Vec<SqlValue>)>,
}

impl Batch {
    /// Adds a statement whose parameters are numbered from `$1`, as if it ran alone.
    pub(crate) fn push(&mut self, sql: impl Into<Cow<'static, str>>, args: Vec<SqlValue>) {
        self.statements.push((sql.into(), args));
    }

    /// Runs every statement in one transaction and returns the rows they returned.
    pub(crate) async fn run(self, db: &Writer) -> Result<Vec<AnyRow>> {
        if self.statements.is_empty() {
            return Ok(Vec::new());
        }
        let finish_with = |rows: &[AnyRow]| Ok((rows.to_vec(), Vec::new()));
        match db.backend() {
            Backend::Sqlite => self.run_sqlite(db, false, finish_with).await,
            Backend::Postgres => self.run_postgres(db, finish_with).await,
        }
    }

    /// Runs every statement, then records in the same transaction the events that `finish_with`
    /// makes of what they returned, and commits: the change and its events are kept together or
    /// not at all. `finish_with` also turns the rows into what the caller returns.
    pub(crate) async fn run_recorded<T>(
        self,
        db: &Writer,
        finish_with: impl FnOnce(&[AnyRow]) -> Result<(T, Vec<EventRecord>)>,
    ) -> Result<T> {
        match db.backend() {
            Backend::Sqlite => self.run_sqlite(db, true, finish_with).await,
            Backend::Postgres => self.run_postgres(db, finish_with).await,
        }
    }

    /// On SQLite every query is a round trip to the connection's thread, so the statements go as
    /// one multi-statement query opened by `BEGIN` (several when SQLite's parameter limit asks),
    /// and the events with `COMMIT` as one more; a batch without events commits in its only query.
    async fn run_sqlite<T>(
        self,
        db: &Writer,
        events: bool,
        finish_with: impl FnOnce(&[AnyRow]) -> Result<(T, Vec<EventRecord>)>,
    ) -> Result<T> {
        let mut conn = db.writing().await?;
        let mut open = OpenTransaction::begin(db, &mut conn).await;
        let groups = self.sqlite_groups();
        let last = groups.len() - 1;
        let mut rows = Vec::new();
        let ran = async {
            for (i, group) in groups.into_iter().enumerate() {
                // Without events to record, the last query commits.
                let statements = &self.statements[group];
                let query = sqlite_query(statements, i == 0, !events && i == last);
                rows.extend(query.fetch_all(&mut *open.conn()).await?);
            }
            let (out, records) = finish_with(&rows)?;
            if events {
                let commit = if records.is_empty() {
                    sqlx::query("COMMIT")
                } else {
                    eventlog::insert_query(&records, ";\nCOMMIT;")
                };
                commit.execute(&mut *open.conn()).await?;
            }
            Ok(out)
        }
        .await;
        open.end(ran).await
    }

    /// PostgreSQL takes one statement per query: they run one by one in a transaction, which
    /// sqlx rolls back if the write is abandoned half way.
    async fn run_postgres<T>(
        self,
        db: &Writer,
        finish_with: impl FnOnce(&[AnyRow]) -> Result<(T, Vec<EventRecord>)>,
    ) -> Result<T> {
        let mut conn = db.writing().await?;
        let mut tx = conn.begin().await?;
        let mut rows = Vec::new();
        for (statement, args) in &self.statements {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement.to_string()));
            for a in args {
                query = bind(query, a);
            }
            rows.extend(query.fetch_all(&mut *tx).await?);
        }
        let (out, records) = finish_with(&rows)?;
        eventlog::insert(&mut tx, Backend::Postgres, &records).await?;
        tx.commit().await?;
        Ok(out)
    }
}

/// A SQLite transaction opened by hand (so that `BEGIN` rides with the first statements), which
/// must end with `COMMIT` or `ROLLBACK` before its connection is used again.
///
/// A write abandoned half way (its task cancelled) drops this without ending it; the writer is
/// then marked, and the next write rolls the stale transaction back before it begins.
struct OpenTransaction<'c> {
    conn: &'c mut AnyConnection,
    stale: &'c std::sync::atomic::AtomicBool,
    ended: bool,
}

impl<'c> OpenTransaction<'c> {
    async fn begin(db: &'c Writer, conn: &'c mut AnyConnection) -> OpenTransaction<'c> {
        if db.stale_transaction.swap(false, Ordering::SeqCst) {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        }
        OpenTransaction {
            conn,
            stale: &db.stale_transaction,
            ended: false,
        }
    }

    fn conn(&mut self) -> &mut AnyConnection {
        self.conn
    }

    /// Ends the transaction: the last query committed it on success; a failure rolls it back.
    async fn end<T>(mut self, ran: Result<T>) -> Result<T> {
        if ran.is_err() {
            let _ = sqlx::query("ROLLBACK").execute(&mut *self.conn).await;
        }
        self.ended = true;
        ran
    }
}

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.stale.store(true, Ordering::SeqCst);
        }
    }
}

impl Batch {
    /// The statements cut into runs whose parameters SQLite can take in one query.
    fn sqlite_groups(&self) -> Vec<std::ops::Range<usize>> {
        parameter_groups(self.statements.iter().map(|(_, args)| args.len()))
    }
}

/// Consecutive parts, each taking the given number of parameters, cut into runs whose
/// parameters SQLite can take at once; a part with more than that is a run of its own. Always
/// at least one run.
pub(crate) fn parameter_groups(
    counts: impl IntoIterator<Item = usize>,
) -> Vec<std::ops::Range<usize>> {
    let mut groups = Vec::new();
    let (mut start, mut args, mut end) = (0, 0, 0);
    for (i, count) in counts.into_iter().enumerate() {
        if args + count > MAX_SQLITE_PARAMETERS && i > start {
            groups.push(start..i);
            (start, args) = (i, 0);
        }
        args += count;
        end = i + 1;
    }
    groups.push(start..end);
    groups
}

/// SQLite refuses a query with more parameters than this (32,766 in the versions sqlx bundles);
/// a batch with more is sent as several queries inside one transaction.
const MAX_SQLITE_PARAMETERS: usize = 32_000;

/// One multi-statement query, opened with `BEGIN` and closed with `COMMIT` as asked.
fn sqlite_query(
    statements: &[(Cow<'static, str>, Vec<SqlValue>)],
    begin: bool,
    commit: bool,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    let mut sql = String::from(if begin { "BEGIN;\n" } else { "" });
    let mut offset = 0;
    for (statement, args) in statements {
        sql.push_str(&renumber(statement, offset));
        sql.push_str(";\n");
        offset += args.len();
    }
    if commit {
        sql.push_str("COMMIT;");
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (_, args) in statements {
        for a in args {
            query = bind(query, a);
        }
    }
    query
}

/// Whether a returned row has the column `name`, to tell apart rows of different statements.
pub(crate) fn has_column(row: &AnyRow, name: &str) -> bool {
    row.columns().iter().any(|c| c.name() == name)
}

fn bind<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    value: &SqlValue,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    match value {
        SqlValue::Null => query.bind(None::<i64>),
        SqlValue::Int(i) => query.bind(*i),
        SqlValue::Text(t) => query.bind(t.clone()),
        SqlValue::Bytes(b) => query.bind(b.clone()),
    }
}

/// Shifts every `$N` placeholder of `sql` by `offset`. kiln's SQL has no `$` anywhere else.
pub(crate) fn renumber(sql: &str, offset: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        out.push(c);
        if c != '$' {
            continue;
        }
        let mut digits = String::new();
        while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
            digits.push(d);
            chars.next();
        }
        match digits.parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&digits),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Batch, MAX_SQLITE_PARAMETERS, OpenTransaction, renumber};
    use crate::listing::SqlValue;

    /// A write abandoned inside the transaction it opened (its task cancelled between two
    /// queries) leaves the writer's connection in that transaction; the next write rolls it back
    /// instead of failing on `BEGIN`, and what the abandoned write did is not kept.
    #[tokio::test]
    async fn a_write_abandoned_in_its_transaction_is_rolled_back_by_the_next() {
        let t = crate::testing::sqlite().await.unwrap();
        let db = &t.db;
        {
            let mut conn = db.writing().await.unwrap();
            let mut open = OpenTransaction::begin(db, &mut conn).await;
            sqlx::query("BEGIN; INSERT INTO masters (name, name_hash, active, last_active) VALUES ('gone', 'h', 0, 0)")
                .execute(&mut *open.conn())
                .await
                .unwrap();
            // Dropped here without `end`, as a cancelled write would be.
        }
        let mut batch = Batch::default();
        batch.push(
            "INSERT INTO masters (name, name_hash, active, last_active) VALUES ($1, $2, 0, 0)",
            vec![SqlValue::Text("kept".into()), SqlValue::Text("k".into())],
        );
        batch.run(db).await.expect("the next write succeeds");
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM masters ORDER BY id")
            .fetch_all(&mut *db.reading().await.unwrap())
            .await
            .unwrap();
        assert_eq!(names, ["kept"]);
    }

    #[test]
    fn a_batch_over_sqlites_parameter_limit_is_cut_into_queries() {
        let mut batch = Batch::default();
        let per = 7;
        let statements = MAX_SQLITE_PARAMETERS / per * 2 + 5;
        for _ in 0..statements {
            batch.push("INSERT INTO t VALUES ($1)", vec![SqlValue::Int(1); per]);
        }
        let groups = batch.sqlite_groups();
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].start, 0);
        assert_eq!(groups.last().map(|g| g.end), Some(statements));
        for pair in groups.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        for g in &groups {
            assert!(g.len() * per <= MAX_SQLITE_PARAMETERS);
        }
        let mut small = Batch::default();
        small.push("DELETE FROM t", vec![]);
        assert_eq!(small.sqlite_groups(), vec![0..1]);
    }

    #[test]
    fn placeholders_are_shifted() {
        assert_eq!(
            renumber("UPDATE t SET a = $1, b = $12 WHERE id = $2", 3),
            "UPDATE t SET a = $4, b = $15 WHERE id = $5"
        );
        assert_eq!(renumber("SELECT 1", 5), "SELECT 1");
    }
}
