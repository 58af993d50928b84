//! Opening a database and the write discipline for SQLite.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};

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
    /// the same pool as the readers'. Writes take it through [`Db::writing`].
    wpool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time, and a transaction that reads before it writes fails
    /// outright (it does not wait) when another connection wrote in between. kiln therefore
    /// serialises its own writes to SQLite in-process, under this lock, which also keeps the
    /// writers' one connection out of its pool between writes (see [`WriteConn`]); readers never
    /// take it, but for the few reads that belong to the write path.
    writer: Arc<Mutex<Option<HeldConnection>>>,
    /// Whether the writers' connection is kept under `writer` (a SQLite file) or taken from the
    /// pool for each write (PostgreSQL, and an in-memory SQLite database, whose one connection
    /// the readers share).
    hold_writer: bool,
    /// Set when a write was abandoned inside a transaction it opened by hand; the next write
    /// rolls that transaction back first (see `batch.rs`).
    pub(crate) stale_transaction: Arc<std::sync::atomic::AtomicBool>,
    /// The readers' connections kept out of their pool between reads, on a SQLite file (see
    /// [`Db::reading`]); `None` elsewhere.
    readers: Option<Arc<Readers>>,
}

/// The readers' connections of a SQLite file, lent one read at a time without going back to
/// their pool: sqlx pings every connection that goes back to its pool, and on SQLite a ping is
/// one more round trip to the connection's thread, as costly as the read itself.
pub(crate) struct Readers {
    /// One permit for each connection the pool may open, so that a read waits here, where
    /// connections come back, rather than on the pool, where they do not.
    permits: Arc<tokio::sync::Semaphore>,
    /// Connections between reads, each with when it was first lent.
    idle: std::sync::Mutex<Vec<(PoolConnection<Any>, std::time::Instant)>>,
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

/// How many connections read a SQLite file at once.
const SQLITE_READERS: u32 = 4;

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
                Backend::Sqlite => SQLITE_READERS,
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
                writer: Arc::new(Mutex::new(None)),
                hold_writer: backend == Backend::Sqlite && !in_memory,
                stale_transaction: Arc::default(),
                // An in-memory database's one connection is the writers' too, so it goes back
                // to the pool after each read; PostgreSQL's ping after a read abandoned half
                // way reads what the server still had to send, which keeps it.
                readers: (backend == Backend::Sqlite && !in_memory).then(|| {
                    Arc::new(Readers {
                        permits: Arc::new(tokio::sync::Semaphore::new(SQLITE_READERS as usize)),
                        idle: std::sync::Mutex::default(),
                    })
                }),
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
        // The held connections go back to their pools first: closing a pool waits for every
        // connection it lent.
        drop(self.writer.lock().await.take());
        if let Some(readers) = &self.readers {
            readers.permits.close();
            let idle = std::mem::take(&mut *lock(&readers.idle));
            drop(idle);
        }
        self.wpool.close().await;
        self.pool.close().await;
    }

    /// The writers' connection, held until the returned value is dropped: taken around every
    /// write, and by the reads of the write path, which find its page cache warm. On SQLite it
    /// serialises writers.
    pub(crate) async fn writing(&self) -> Result<WriteConn<'_>> {
        if !self.hold_writer {
            let serial = match self.backend {
                Backend::Sqlite => Some(self.writer.lock().await),
                Backend::Postgres => None,
            };
            let conn = self.wpool.acquire().await?;
            return Ok(WriteConn::Pooled {
                conn,
                _serial: serial,
            });
        }
        let mut slot = self.writer.lock().await;
        loop {
            match MutexGuard::try_map(slot, |held| held.as_mut().and_then(|h| h.0.as_mut())) {
                Ok(conn) => return Ok(WriteConn::Held(conn)),
                Err(mut empty) => {
                    *empty = Some(HeldConnection(Some(self.wpool.acquire().await?)));
                    slot = empty;
                }
            }
        }
    }
}

impl Db {
    /// A connection to read with, until the returned value is dropped. On a SQLite file it is
    /// one of the readers' held connections, which goes back among them without a ping (a read
    /// abandoned half way leaves nothing behind: sqlx finishes or resets the statement on the
    /// connection's thread before it runs the next); elsewhere it is the pool's.
    pub(crate) async fn reading(&self) -> Result<ReadConn> {
        let Some(readers) = &self.readers else {
            return Ok(ReadConn::Pooled(self.pool.acquire().await?));
        };
        let permit = readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DbError::Sqlx(sqlx::Error::PoolClosed))?;
        loop {
            let held = lock(&readers.idle).pop();
            let (conn, since) = match held {
                Some(held) => held,
                None => (self.pool.acquire().await?, std::time::Instant::now()),
            };
            // A connection past its lifetime goes back to its pool, which closes it, so that
            // the page cache and statements a burst of reads filled are freed.
            if since.elapsed() >= READER_LIFETIME {
                drop(conn);
                continue;
            }
            return Ok(ReadConn::Held {
                conn: Some((conn, since)),
                readers: readers.clone(),
                _permit: permit,
            });
        }
    }
}

/// A connection lent for one read (see [`Db::reading`]).
pub(crate) enum ReadConn {
    Held {
        conn: Option<(PoolConnection<Any>, std::time::Instant)>,
        readers: Arc<Readers>,
        _permit: tokio::sync::OwnedSemaphorePermit,
    },
    Pooled(PoolConnection<Any>),
}

impl Drop for ReadConn {
    fn drop(&mut self) {
        if let ReadConn::Held { conn, readers, .. } = self
            && let Some(held) = conn.take()
            && !readers.permits.is_closed()
        {
            lock(&readers.idle).push(held);
        }
    }
}

impl std::ops::Deref for ReadConn {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            ReadConn::Held { conn, .. } => &conn.as_ref().expect("held until dropped").0,
            ReadConn::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for ReadConn {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            ReadConn::Held { conn, .. } => &mut conn.as_mut().expect("held until dropped").0,
            ReadConn::Pooled(conn) => conn,
        }
    }
}

/// A lock that a panic elsewhere did not spoil: the readers' list holds no invariant a panic
/// could break half way.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writers' connection while one write holds it.
///
/// On a SQLite file it is the one connection writes go through, kept out of its pool for the
/// life of the database handle: sqlx pings every connection that goes back to its pool, and on
/// SQLite a ping is one more round trip to the connection's thread for every write. A write abandoned half way leaves nothing behind on it: sqlx queues the
/// rollback of a dropped transaction on the connection itself, and a transaction opened by hand
/// is rolled back by the next write (`batch.rs`).
pub(crate) enum WriteConn<'a> {
    Held(MappedMutexGuard<'a, PoolConnection<Any>>),
    Pooled {
        conn: PoolConnection<Any>,
        /// The lock that serialises writers on an in-memory SQLite database.
        _serial: Option<MutexGuard<'a, Option<HeldConnection>>>,
    },
}

/// The writers' connection while it is kept out of its pool.
///
/// A connection goes back to its pool through a task, which needs a runtime; a database handle
/// dropped after its runtime (a command that keeps one past `block_on`) detaches the connection
/// from its pool instead, which closes it then and there.
pub(crate) struct HeldConnection(Option<PoolConnection<Any>>);

impl Drop for HeldConnection {
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err()
            && let Some(conn) = self.0.take()
        {
            drop(conn.detach());
        }
    }
}

impl WriteConn<'_> {
    /// Opens a transaction on the writers' connection; dropped without a commit, it is rolled
    /// back before the connection's next query.
    pub(crate) async fn begin(&mut self) -> Result<sqlx::Transaction<'_, Any>, sqlx::Error> {
        sqlx::Connection::begin(&mut **self).await
    }
}

impl std::ops::Deref for WriteConn<'_> {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            WriteConn::Held(conn) => conn,
            WriteConn::Pooled { conn, .. } => conn,
        }
    }
}

impl std::ops::DerefMut for WriteConn<'_> {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            WriteConn::Held(conn) => conn,
            WriteConn::Pooled { conn, .. } => conn,
        }
    }
}

impl Writer {
    /// Gives the space of deleted rows back and refreshes the planner's statistics, for
    /// `kiln cleanupdb`: SQLite's `VACUUM` rewrites the file, PostgreSQL's `VACUUM ANALYZE` marks
    /// the space reusable. Neither runs inside a transaction.
    pub async fn vacuum(&self) -> Result<()> {
        let mut w = self.writing().await?;
        match self.backend {
            Backend::Sqlite => {
                sqlx::query("VACUUM").execute(&mut *w).await?;
                sqlx::query("ANALYZE").execute(&mut *w).await?;
            }
            Backend::Postgres => {
                sqlx::query("VACUUM ANALYZE").execute(&mut *w).await?;
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
        let mut w = self.writing().await?;
        sqlx::query("PRAGMA analysis_limit = 400")
            .execute(&mut *w)
            .await?;
        sqlx::query("ANALYZE").execute(&mut *w).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{SQLITE_READERS, lock};

    /// Writes go through one connection that stays out of its pool between them, so sqlx never
    /// pings it on the way back: the pool has lent its only connection and has none to give.
    #[tokio::test]
    async fn the_writers_connection_stays_out_of_its_pool_between_writes() {
        let t = crate::testing::sqlite().await.unwrap();
        let db = &t.db;
        for name in ["one", "two"] {
            sqlx::query(
                "INSERT INTO masters (name, name_hash, active, last_active) VALUES ($1, $1, 0, 0)",
            )
            .bind(name)
            .execute(&mut *db.writing().await.unwrap())
            .await
            .unwrap();
        }
        let lent = tokio::time::timeout(Duration::from_millis(300), db.wpool.acquire()).await;
        assert!(
            lent.is_err(),
            "the writers' connection went back to its pool"
        );
        assert_eq!(db.wpool.size(), 1);
    }

    /// The bundled SQLite is compiled as `.cargo/config.toml` asks: without query planner
    /// stability every statement with a bound `LIMIT` is compiled again on each execution, and
    /// with STAT4 every statement whose plan could depend on a bound value.
    #[tokio::test]
    async fn sqlite_keeps_a_compiled_statement_whatever_values_are_bound() {
        let t = crate::testing::sqlite().await.unwrap();
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(&mut *t.db.writing().await.unwrap())
            .await
            .unwrap();
        assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "{options:?}");
        assert!(!options.iter().any(|o| o == "ENABLE_STAT4"), "{options:?}");
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    /// A handle kept past its runtime can still be dropped: without a runtime the held
    /// connection cannot go back to its pool (that takes a task), so it is closed instead.
    #[test]
    fn a_handle_dropped_after_its_runtime_lets_go_of_the_writers_connection() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let t = runtime.block_on(async {
            let t = crate::testing::sqlite().await.unwrap();
            sqlx::query("SELECT 1")
                .execute(&mut *t.db.writing().await.unwrap())
                .await
                .unwrap();
            t
        });
        drop(runtime);
        drop(t);
    }

    /// A transaction dropped half way on the held connection (its task cancelled) is rolled
    /// back before the next write runs, as sqlx's ping did when the connection was pooled.
    #[tokio::test]
    async fn a_transaction_dropped_on_the_held_connection_is_rolled_back() {
        let t = crate::testing::sqlite().await.unwrap();
        let db = &t.db;
        {
            let mut w = db.writing().await.unwrap();
            let mut tx = w.begin().await.unwrap();
            sqlx::query("INSERT INTO masters (name, name_hash, active, last_active) VALUES ('gone', 'g', 0, 0)")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        sqlx::query(
            "INSERT INTO masters (name, name_hash, active, last_active) VALUES ('kept', 'k', 0, 0)",
        )
        .execute(&mut *db.writing().await.unwrap())
        .await
        .unwrap();
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM masters ORDER BY id")
            .fetch_all(&mut *db.reading().await.unwrap())
            .await
            .unwrap();
        assert_eq!(names, ["kept"]);
    }

    /// Reads on a SQLite file take their connections back from those held between reads,
    /// rather than from the pool, which pings each connection it takes back; more reads at once
    /// than there are connections wait for one to come back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_reuse_held_connections_and_wait_for_them() {
        let t = crate::testing::sqlite().await.unwrap();
        let db = &t.db;
        let count = async || -> i64 {
            sqlx::query_scalar("SELECT COUNT(*) FROM masters")
                .fetch_one(&mut *db.reading().await.unwrap())
                .await
                .unwrap()
        };
        for _ in 0..10 {
            assert_eq!(count().await, 0);
        }
        let readers = db
            .readers
            .as_ref()
            .expect("a SQLite file holds its readers");
        assert_eq!(
            lock(&readers.idle).len(),
            1,
            "one connection served every read in turn"
        );
        let reads: Vec<_> = (0..64)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    let n: i64 = sqlx::query_scalar(
                        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c \
                         WHERE x < 20000) SELECT COUNT(*) FROM c",
                    )
                    .fetch_one(&mut *db.reading().await.unwrap())
                    .await
                    .unwrap();
                    n
                })
            })
            .collect();
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            for read in reads {
                assert_eq!(read.await.unwrap(), 20000);
            }
        });
        waited.await.expect("every read got a connection");
        let idle = lock(&readers.idle).len();
        assert!((1..=SQLITE_READERS as usize).contains(&idle), "{idle}");
        assert_eq!(db.pool.size() as usize, idle);
    }

    /// A read abandoned while its statement runs leaves its connection fit for the next read.
    #[tokio::test]
    async fn a_read_abandoned_half_way_leaves_its_connection_usable() {
        let t = crate::testing::sqlite().await.unwrap();
        let db = &t.db;
        let slow = sqlx::query_scalar::<_, i64>(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) \
             SELECT COUNT(*) FROM c",
        );
        let abandoned = tokio::time::timeout(Duration::from_millis(5), async {
            slow.fetch_one(&mut *db.reading().await.unwrap()).await
        })
        .await;
        assert!(abandoned.is_err(), "the read was abandoned");
        let one: i64 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut *db.reading().await.unwrap())
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
}
