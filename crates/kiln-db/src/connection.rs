//! Opening a database and the write discipline for SQLite.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use tokio::sync::{Mutex, MutexGuard};

use crate::{DbError, Result};

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    /// Readers: the API, the web pages and reporters.
    pub(crate) pool: AnyPool,
    /// Writers. On SQLite this is one dedicated connection, so its page cache stays warm (a SQLite
    /// connection drops its whole cache whenever another connection has written); on PostgreSQL it is
    /// the same pool as the readers'.
    pub(crate) wpool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time, and a transaction that reads before it writes fails
    /// outright (it does not wait) when another connection wrote in between. kiln therefore
    /// serialises its own writes to SQLite in-process; readers never take this lock.
    writer: Arc<Mutex<()>>,
    /// Set when a write was abandoned inside a transaction it opened by hand; the next write
    /// rolls that transaction back first (see `batch.rs`).
    pub(crate) stale_transaction: Arc<std::sync::atomic::AtomicBool>,
}

/// The write half of the database: the only way to change it.
///
/// Opening a database gives a `Writer`; the read half ([`Db`]) is taken from it with
/// [`Writer::reader`], and a `Writer` cannot be had from a `Db`. The master hands its one
/// `Writer` to its update layer, so nothing else in the runtime can write. A `Writer` reads too,
/// through `Deref`, since writes often need to.
#[derive(Clone)]
pub struct Writer {
    db: Db,
}

impl std::ops::Deref for Writer {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

/// How long a reading connection serves before the pool replaces it.
const READER_LIFETIME: Duration = Duration::from_secs(60);

/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

impl Writer {
    /// Opens `url` (`sqlite://PATH`, `sqlite::memory:`, `postgresql://…`) and brings its schema up to
    /// date.
    pub async fn connect(url: &str) -> Result<Writer> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(url.to_string()));
        };
        // An in-memory SQLite database exists once per connection, so it gets exactly one.
        let in_memory = url.contains(":memory:");
        let url = match backend {
            Backend::Sqlite if !url.contains('?') && !url.contains(":memory:") => {
                format!("{url}?mode=rwc")
            }
            _ => url.to_string(),
        };
        // Connections are not pinged before each use: a ping is a round trip of its own, and a
        // broken connection shows up as an error on the real query anyway.
        let options = AnyPoolOptions::new()
            .max_connections(match backend {
                Backend::Sqlite if in_memory => 1,
                Backend::Sqlite => 4,
                Backend::Postgres => 10,
            })
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30));
        let options = match backend {
            Backend::Sqlite => options.after_connect(|conn, _| {
                Box::pin(async move {
                    // No `mmap_size`: reading the file through a map made the scans of the
                    // REST API's filters up to twice as fast, but every connection's map of the
                    // whole file counted in the master's RSS (500 MiB more for a 129 MB
                    // database), so memory no longer said what the master holds. Pages are read
                    // into each connection's page cache (2 MiB) instead.
                    let pragmas = format!(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {}; \
                         PRAGMA temp_store = MEMORY;",
                        BUSY_TIMEOUT.as_millis()
                    );
                    conn.execute(sqlx::AssertSqlSafe(pragmas)).await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        // Each reader is replaced once it is `READER_LIFETIME` old, so that the page cache and
        // prepared statements a burst of reads filled are freed soon after it. Waiting for a
        // reader to fall idle would not do: the master's periodic reads take the readers in
        // turn, so none stays idle for long.
        let pool = options
            .clone()
            .max_lifetime(READER_LIFETIME)
            .connect(&url)
            .await?;
        let wpool = match backend {
            Backend::Sqlite if !in_memory => options.max_connections(1).connect(&url).await?,
            _ => pool.clone(),
        };
        let writer = Writer {
            db: Db {
                pool,
                wpool,
                backend,
                writer: Arc::new(Mutex::new(())),
                stale_transaction: Arc::default(),
            },
        };
        writer.migrate().await?;
        Ok(writer)
    }

    /// The read half, for everything but the update layer.
    pub fn reader(&self) -> Db {
        self.db.clone()
    }
}

impl Db {
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection, waiting for queries in flight.
    pub async fn close(&self) {
        self.wpool.close().await;
        self.pool.close().await;
    }
}

impl Writer {
    /// Taken around every write: serialises writers on SQLite, and is free on PostgreSQL.
    pub(crate) async fn write_guard(&self) -> Option<MutexGuard<'_, ()>> {
        match self.backend {
            Backend::Sqlite => Some(self.writer.lock().await),
            Backend::Postgres => None,
        }
    }

    /// Gives the space of deleted rows back and refreshes the planner's statistics, for
    /// `kiln cleanupdb`: SQLite's `VACUUM` rewrites the file, PostgreSQL's `VACUUM ANALYZE` marks
    /// the space reusable. Neither runs inside a transaction.
    pub async fn vacuum(&self) -> Result<()> {
        let _w = self.write_guard().await;
        match self.backend {
            Backend::Sqlite => {
                sqlx::query("VACUUM").execute(&self.wpool).await?;
                sqlx::query("ANALYZE").execute(&self.wpool).await?;
            }
            Backend::Postgres => {
                sqlx::query("VACUUM ANALYZE").execute(&self.wpool).await?;
            }
        }
        Ok(())
    }

    /// Refreshes the statistics the query planner chooses indexes by. Without them SQLite guesses,
    /// and with a long history some guesses cost a scan of every build (it once built a
    /// temporary index over the builds table for each console page). Sampling bounds the cost
    /// (`analysis_limit`), so it takes milliseconds however large the database; PostgreSQL keeps
    /// its own statistics with autovacuum.
    pub async fn refresh_statistics(&self) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Ok(());
        }
        let _w = self.write_guard().await;
        sqlx::query("PRAGMA analysis_limit = 400")
            .execute(&self.wpool)
            .await?;
        sqlx::query("ANALYZE").execute(&self.wpool).await?;
        Ok(())
    }
}
