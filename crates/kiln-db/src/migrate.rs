//! Versioned schema migrations, one directory per backend.

use sqlx::Row;

use crate::connection::{Backend, Db};
use crate::{DbError, Result, Writer};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "buildrequest_queue",
        sql: include_str!("../migrations/sqlite/0002_buildrequest_queue.sql"),
    },
    Migration {
        version: 3,
        name: "buildrequest_queue_order",
        sql: include_str!("../migrations/sqlite/0003_buildrequest_queue_order.sql"),
    },
    Migration {
        version: 4,
        name: "test_result_indexes",
        sql: include_str!("../migrations/sqlite/0004_test_result_indexes.sql"),
    },
    Migration {
        version: 5,
        name: "event_log",
        sql: include_str!("../migrations/sqlite/0005_event_log.sql"),
    },
    Migration {
        version: 6,
        name: "sourcestamp_builds",
        sql: include_str!("../migrations/sqlite/0006_sourcestamp_builds.sql"),
    },
    Migration {
        version: 7,
        name: "api_tokens",
        sql: include_str!("../migrations/sqlite/0007_api_tokens.sql"),
    },
    Migration {
        version: 8,
        name: "reports",
        sql: include_str!("../migrations/sqlite/0008_reports.sql"),
    },
    Migration {
        version: 9,
        name: "report_payloads",
        sql: include_str!("../migrations/sqlite/0009_report_payloads.sql"),
    },
];

const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "buildrequest_queue",
        sql: include_str!("../migrations/postgres/0002_buildrequest_queue.sql"),
    },
    Migration {
        version: 3,
        name: "buildrequest_queue_order",
        sql: include_str!("../migrations/postgres/0003_buildrequest_queue_order.sql"),
    },
    Migration {
        version: 4,
        name: "test_result_indexes",
        sql: include_str!("../migrations/postgres/0004_test_result_indexes.sql"),
    },
    Migration {
        version: 5,
        name: "event_log",
        sql: include_str!("../migrations/postgres/0005_event_log.sql"),
    },
    Migration {
        version: 6,
        name: "sourcestamp_builds",
        sql: include_str!("../migrations/postgres/0006_sourcestamp_builds.sql"),
    },
    Migration {
        version: 7,
        name: "api_tokens",
        sql: include_str!("../migrations/postgres/0007_api_tokens.sql"),
    },
    Migration {
        version: 8,
        name: "reports",
        sql: include_str!("../migrations/postgres/0008_reports.sql"),
    },
    Migration {
        version: 9,
        name: "report_payloads",
        sql: include_str!("../migrations/postgres/0009_report_payloads.sql"),
    },
];

impl Db {
    /// The tables and their columns, sorted, for comparing the two backends' schemas.
    pub async fn schema_summary(&self) -> Result<Vec<(String, Vec<String>)>> {
        let tables: Vec<String> = match self.backend() {
            Backend::Sqlite => {
                sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
                    .fetch_all(&mut *self.reading().await?)
                    .await?
            }
            Backend::Postgres => {
                sqlx::query("SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY table_name")
                    .fetch_all(&mut *self.reading().await?)
                    .await?
            }
        }
        .iter()
        .map(|r| r.try_get::<String, _>("name"))
        .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for table in tables {
            let mut columns: Vec<String> = match self.backend() {
                Backend::Sqlite => sqlx::query(sqlx::AssertSqlSafe(format!("SELECT name FROM pragma_table_info('{table}')")))
                    .fetch_all(&mut *self.reading().await?)
                    .await?,
                Backend::Postgres => sqlx::query("SELECT column_name::text AS name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1")
                    .bind(&table)
                    .fetch_all(&mut *self.reading().await?)
                    .await?,
            }
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<_, _>>()?;
            columns.sort();
            out.push((table, columns));
        }
        Ok(out)
    }
}

impl Writer {
    /// Applies every migration the database lacks, each in its own transaction.
    pub(crate) async fn migrate(&self) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS kiln_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL)",
        )
        .execute(&mut *w)
        .await?;
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM kiln_migrations")
            .fetch_one(&mut *w)
            .await?;
        let current: i64 = row.try_get("v")?;
        let migrations = match self.backend() {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        };
        let known = migrations.last().map_or(0, |m| m.version);
        if current > known {
            return Err(DbError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for m in migrations.iter().filter(|m| m.version > current) {
            let fail = |source| DbError::Migration {
                version: m.version,
                name: m.name.to_string(),
                source,
            };
            let mut tx = w.begin().await.map_err(fail)?;
            sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(fail)?;
            sqlx::query("INSERT INTO kiln_migrations (version, name) VALUES ($1, $2)")
                .bind(m.version)
                .bind(m.name)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied database migration"
            );
        }
        Ok(())
    }
}
