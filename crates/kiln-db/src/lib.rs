//! kiln's storage layer.
//!
//! One code base serves both backends: embedded SQLite (the default, in WAL mode) and PostgreSQL
//! (for many masters). Queries are written once in SQL that both engines accept, with `$N`
//! placeholders, and run through sqlx's `Any` driver. Each backend has its own versioned migrations
//! under `migrations/<backend>/`; a test checks that both end with the same tables and columns.
//!
//! The tables follow Buildbot's families (`builds`, `buildrequests`, `logchunks`, …). Functions are
//! grouped by family, one module each, as methods on [`Db`]. Times are integer epoch seconds passed in
//! by the caller: this crate never reads a clock.
//!
//! Reading and writing are two types: [`Db`] reads, and [`Writer`], which opening a database gives,
//! writes (and reads through `Deref`). A `Writer` cannot be made from a `Db`, so the master's update
//! layer, which holds its one `Writer`, is the only code in the runtime that can write.

mod batch;
mod builders;
mod buildrequests;
mod builds;
mod buildsets;
mod changes;
mod connection;
mod eventlog;
mod json;
pub mod listing;
mod logs;
mod masters;
mod migrate;
mod origins;
mod reports;
mod rows;
mod schedulers;
mod sourcestamps;
mod state;
mod steps;
pub mod testing;
mod testresults;
mod tokens;
mod users;
mod workers;

pub use builders::BuilderRow;
pub use buildrequests::{BuildRequestRow, Completion};
pub use builds::{BuildRow, PropertyRow, StartedBuild};
pub use buildsets::{BuildSetRow, NewBuildSet};
pub use changes::{ChangeRow, CoveringBuild, NewChange};
pub use connection::{Backend, Db, Writer};
pub use eventlog::{EventRecord, Recorder, StoredEvent, unrecorded};
pub use json::{json_to_property, property_to_json};
pub use logs::{LogChunk, LogRow, LogType, MAX_CHUNK_BYTES, MAX_LINE_BYTES};
pub use masters::MasterRow;
pub use origins::{BuildsRead, BuildsWanted};
pub use reports::{
    Decided, NewReport, NextReport, OutboxUpdate, ReportRow, ReportState, ReporterStatus,
};
pub use schedulers::SchedulerRow;
pub use sourcestamps::{PatchRow, SourceStampRow};
pub use steps::{StepEnd, StepRow};
pub use testresults::{NewTestResult, NewTestResultSet, TestResultRow, TestResultSetRow};
pub use tokens::{NewToken, TokenRow};
pub use users::{UserRow, UserUpdate};
pub use workers::WorkerRow;

/// A storage error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: String,
        source: sqlx::Error,
    },
    #[error("the database schema is at version {found}, newer than this kiln knows ({known})")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgresql://…")]
    UnsupportedUrl(String),
    #[error("build request {0} is already claimed")]
    AlreadyClaimed(i64),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;
