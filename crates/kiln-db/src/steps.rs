//! Build steps.

use kiln_core::{BuildId, LogId, Results, StepId};

use crate::batch::Batch;
use crate::listing::{Page, SqlValue};
use crate::logs::{LogType, slugify};
use crate::rows::RowExt;
use crate::{Db, DbError, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    pub id: StepId,
    pub number: i64,
    pub name: String,
    pub buildid: BuildId,
    pub started_at: Option<i64>,
    pub locks_acquired_at: Option<i64>,
    pub complete_at: Option<i64>,
    pub state_string: String,
    pub results: Option<i64>,
    /// `[{"name": …, "url": …}]` as JSON.
    pub urls_json: String,
    pub hidden: bool,
}

pub(crate) const COLUMNS: &str = "id, number, name, buildid, started_at, locks_acquired_at, complete_at, state_string, \
                       results, urls_json, hidden";

pub(crate) fn step(r: &(impl RowExt + Sync)) -> Result<StepRow> {
    Ok(StepRow {
        id: StepId(r.int("id")?),
        number: r.int("number")?,
        name: r.text("name")?,
        buildid: BuildId(r.int("buildid")?),
        started_at: r.opt_int("started_at")?,
        locks_acquired_at: r.opt_int("locks_acquired_at")?,
        complete_at: r.opt_int("complete_at")?,
        state_string: r.text("state_string")?,
        results: r.opt_int("results")?,
        urls_json: r.text("urls_json")?,
        hidden: r.flag("hidden")?,
    })
}

impl Db {
    pub async fn list_steps(&self, page: &Page) -> Result<(Vec<StepRow>, i64)> {
        let (rows, total) = self.list_rows(COLUMNS, "steps", "id", page).await?;
        Ok((rows.iter().map(step).collect::<Result<_>>()?, total))
    }

    pub async fn get_step(&self, id: StepId) -> Result<Option<StepRow>> {
        Ok(self
            .list_steps(&Page::eq("id", SqlValue::Int(id.0)))
            .await?
            .0
            .into_iter()
            .next())
    }
}

impl Writer {
    /// Adds and starts the next step of a build, with its first state string (which the build
    /// takes too, so that a running build says what it is doing), and finishes the previous step
    /// (`finishing`) in the same write. A name already used in the build gets a `_2`,
    /// `_3`, … suffix, as Buildbot does; the name actually used is returned.
    ///
    /// The logs named in `logs` are created with the step, in the same write, and their ids
    /// returned in the same order.
    pub async fn add_step(
        &self,
        build: BuildId,
        name: &str,
        state: &str,
        logs: &[(&str, LogType)],
        finishing: Option<&StepEnd>,
        now: i64,
    ) -> Result<(StepId, i64, String, Vec<LogId>)> {
        let mut n = 1;
        loop {
            let unique = if n == 1 {
                name.to_string()
            } else {
                format!("{name}_{n}")
            };
            let mut batch = Batch::default();
            if let Some(end) = finishing {
                push_finish_step(&mut batch, end, now);
            }
            batch.push(
                ADD_STEP,
                vec![
                    SqlValue::Text(unique.clone()),
                    SqlValue::Int(build.0),
                    SqlValue::Int(now),
                    SqlValue::Text(state.to_string()),
                ],
            );
            for (log_name, log_type) in logs {
                // The step just added is the build's newest: steps of one build are added in turn.
                batch.push(
                    "INSERT INTO logs (name, slug, stepid, complete, num_lines, type) \
                     SELECT $1, $2, MAX(id), 0, 0, $3 FROM steps WHERE buildid = $4 RETURNING id AS logid",
                    vec![
                        SqlValue::Text(log_name.to_string()),
                        SqlValue::Text(slugify(log_name)),
                        SqlValue::Text(log_type.code().to_string()),
                        SqlValue::Int(build.0),
                    ],
                );
            }
            // The running build says what it is doing: its current step's words.
            if !state.is_empty() {
                batch.push(
                    "UPDATE builds SET state_string = $1 WHERE id = $2",
                    vec![SqlValue::Text(state.to_string()), SqlValue::Int(build.0)],
                );
            }
            match batch.run(self).await {
                Ok(rows) => {
                    let r = rows
                        .first()
                        .ok_or_else(|| DbError::Corrupt("adding a step returned no row".into()))?;
                    let log_ids = rows[1..]
                        .iter()
                        .map(|l| Ok(LogId(l.int("logid")?)))
                        .collect::<Result<Vec<_>>>()?;
                    return Ok((StepId(r.int("id")?), r.int("number")?, unique, log_ids));
                }
                // The name is taken in this build: the whole write was undone; try the next suffix.
                Err(DbError::Sqlx(sqlx::Error::Database(e)))
                    if e.is_unique_violation() && n < 1000 =>
                {
                    n += 1
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn set_step_state_string(&self, id: StepId, state: &str) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::query("UPDATE steps SET state_string = $1 WHERE id = $2")
            .bind(state)
            .bind(id.0)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    /// Records when the step got its locks (a step without locks has them as it starts).
    pub async fn set_step_locks_acquired(&self, id: StepId, at: i64) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::query("UPDATE steps SET locks_acquired_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id.0)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    pub async fn set_step_urls(&self, id: StepId, urls_json: &str) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::query("UPDATE steps SET urls_json = $1 WHERE id = $2")
            .bind(urls_json)
            .bind(id.0)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    pub async fn finish_step(&self, end: &StepEnd, now: i64) -> Result<()> {
        let mut batch = Batch::default();
        push_finish_step(&mut batch, end, now);
        batch.run(self).await?;
        Ok(())
    }
}

/// How a step ended, written together with what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEnd {
    pub id: StepId,
    pub results: Results,
    pub state: String,
    pub hidden: bool,
}

/// $1 name, $2 build, $3 time, $4 state string.
const ADD_STEP: &str = "INSERT INTO steps (number, name, buildid, started_at, locks_acquired_at, state_string, urls_json, hidden) \
    SELECT COALESCE(MAX(number), -1) + 1, $1, $2, $3, $3, $4, '[]', 0 FROM steps WHERE buildid = $2 \
    RETURNING id, number";

/// $1 time, $2 results, $3 state string, $4 hidden, $5 step.
const FINISH_STEP: &str =
    "UPDATE steps SET complete_at = $1, results = $2, state_string = $3, hidden = $4 WHERE id = $5";

pub(crate) fn push_finish_step(batch: &mut Batch, end: &StepEnd, now: i64) {
    batch.push(
        FINISH_STEP,
        vec![
            SqlValue::Int(now),
            SqlValue::Int(end.results.code()),
            SqlValue::Text(end.state.clone()),
            SqlValue::Int(i64::from(end.hidden)),
            SqlValue::Int(end.id.0),
        ],
    );
}
