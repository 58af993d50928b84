//! The database suite. Every test runs against SQLite, and against PostgreSQL when
//! `KILN_TEST_POSTGRES_URL` is set (which CI requires).

// Tests stop at the first unexpected value; unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod builds;
mod eventlog;
mod logs;
mod reports;
mod requests;
mod schema;
mod testresults;
mod users;
mod views;

use kiln_db::testing::{self, TestDb};

/// Runs `body` once per available backend.
async fn each_backend<F, Fut>(body: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in testing::all().await.expect("test databases") {
        body(db).await;
    }
}
