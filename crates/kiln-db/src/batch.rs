//! Several writes that belong together, applied as one transaction.
//!
//! On SQLite every statement sent through sqlx is a round trip to the connection's own thread, and
//! a transaction adds two more (`BEGIN`, `COMMIT`); a batch instead sends all its statements, framed
//! by `BEGIN` and `COMMIT`, as one multi-statement query, so a whole unit of work costs one round
//! trip and one commit. PostgreSQL cannot take several statements with parameters in one query, so
//! there the batch runs them one by one inside an ordinary transaction. Either way the statements
//! are the same SQL, and the rows they return (`RETURNING`) come back in order.

use sqlx::any::AnyRow;
use sqlx::{Column, Row};

use crate::connection::Backend;
use crate::listing::SqlValue;
use crate::{Db, Result};

#[derive(Default)]
pub(crate) struct Batch {
    statements: Vec<(&'static str, Vec<SqlValue>)>,
}

impl Batch {
    /// Adds a statement whose parameters are numbered from `$1`, as if it ran alone.
    pub(crate) fn push(&mut self, sql: &'static str, args: Vec<SqlValue>) {
        self.statements.push((sql, args));
    }

    /// Runs every statement in one transaction and returns the rows they returned.
    pub(crate) async fn run(self, db: &Db) -> Result<Vec<AnyRow>> {
        if self.statements.is_empty() {
            return Ok(Vec::new());
        }
        let _w = db.write_guard().await;
        match db.backend() {
            Backend::Sqlite => {
                let mut sql = String::from("BEGIN;\n");
                let mut offset = 0;
                for (statement, args) in &self.statements {
                    sql.push_str(&renumber(statement, offset));
                    sql.push_str(";\n");
                    offset += args.len();
                }
                sql.push_str("COMMIT;");
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (_, args) in &self.statements {
                    for a in args {
                        query = bind(query, a);
                    }
                }
                let mut conn = db.wpool.acquire().await?;
                match query.fetch_all(&mut *conn).await {
                    Ok(rows) => Ok(rows),
                    Err(e) => {
                        // A statement failed after BEGIN: undo the part that ran, so the connection
                        // goes back to the pool outside any transaction.
                        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                        Err(e.into())
                    }
                }
            }
            Backend::Postgres => {
                let mut tx = db.wpool.begin().await?;
                let mut rows = Vec::new();
                for (statement, args) in &self.statements {
                    let mut query = sqlx::query(*statement);
                    for a in args {
                        query = bind(query, a);
                    }
                    rows.extend(query.fetch_all(&mut *tx).await?);
                }
                tx.commit().await?;
                Ok(rows)
            }
        }
    }
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
fn renumber(sql: &str, offset: usize) -> String {
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
    use super::renumber;

    #[test]
    fn placeholders_are_shifted() {
        assert_eq!(
            renumber("UPDATE t SET a = $1, b = $12 WHERE id = $2", 3),
            "UPDATE t SET a = $4, b = $15 WHERE id = $5"
        );
        assert_eq!(renumber("SELECT 1", 5), "SELECT 1");
    }
}
