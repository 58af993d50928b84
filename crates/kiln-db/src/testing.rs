//! Throwaway databases for tests: always a fresh SQLite file, and a fresh PostgreSQL database when
//! `KILN_TEST_POSTGRES_URL` names a server. Under CI (`CI` set) the PostgreSQL server is required,
//! so the PostgreSQL half of the suite can never be skipped there without failing.

use crate::{Result, Writer};

/// The environment variable naming a PostgreSQL server for tests.
pub const POSTGRES_URL_VAR: &str = "KILN_TEST_POSTGRES_URL";

/// A test database and what keeps it alive.
pub struct TestDb {
    /// The write half, which reads too.
    pub db: Writer,
    /// `"sqlite"` or `"postgres"`, for assertion messages.
    pub backend: &'static str,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// A fresh SQLite database in a temporary directory.
pub async fn sqlite() -> Result<TestDb> {
    let dir = tempfile::tempdir().map_err(|e| crate::DbError::Corrupt(e.to_string()))?;
    let url = format!("sqlite://{}", dir.path().join("state.sqlite").display());
    Ok(TestDb {
        db: Writer::connect(&url).await?,
        backend: "sqlite",
        url,
        _dir: Some(dir),
    })
}

/// A fresh, empty PostgreSQL database, if a server is configured.
///
/// # Panics
///
/// Under CI without `KILN_TEST_POSTGRES_URL`, so that a missing server fails the run.
pub async fn postgres() -> Result<Option<TestDb>> {
    let Ok(admin_url) = std::env::var(POSTGRES_URL_VAR) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{POSTGRES_URL_VAR} must name a PostgreSQL server when CI is set"
        );
        eprintln!("warning: {POSTGRES_URL_VAR} is not set; PostgreSQL tests run on SQLite only");
        return Ok(None);
    };
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "kiln_test_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await?;
    admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{name}");
    Ok(Some(TestDb {
        db: Writer::connect(&url).await?,
        backend: "postgres",
        url,
        _dir: None,
    }))
}

/// Every backend available: SQLite always, PostgreSQL when configured.
pub async fn all() -> Result<Vec<TestDb>> {
    let mut out = vec![sqlite().await?];
    if let Some(pg) = postgres().await? {
        out.push(pg);
    }
    Ok(out)
}

/// Having a destructor makes a closure that uses any field of a `TestDb` capture all of it, so the
/// temporary directory cannot be dropped while the database is still in use.
impl Drop for TestDb {
    fn drop(&mut self) {}
}
