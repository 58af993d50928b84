//! Build steps.

use kiln_core::{BuildId, Results, StepId};
use sqlx::any::AnyRow;

use crate::listing::{Page, SqlValue};
use crate::rows::RowExt;
use crate::{Db, Result};

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

const COLUMNS: &str = "id, number, name, buildid, started_at, locks_acquired_at, complete_at, state_string, \
                       results, urls_json, hidden";

fn step(r: &AnyRow) -> Result<StepRow> {
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
    /// Adds and starts the next step of a build. A name already used in the build gets a `_2`,
    /// `_3`, … suffix, as Buildbot does; the name actually used is returned.
    pub async fn add_step(
        &self,
        build: BuildId,
        name: &str,
        state: &str,
        now: i64,
    ) -> Result<(StepId, i64, String)> {
        let _w = self.write_guard().await;
        let mut n = 1;
        loop {
            let unique = if n == 1 {
                name.to_string()
            } else {
                format!("{name}_{n}")
            };
            let inserted = sqlx::query(
                "INSERT INTO steps (number, name, buildid, started_at, locks_acquired_at, state_string, urls_json, hidden) \
                 SELECT COALESCE(MAX(number), -1) + 1, $1, $2, $3, $3, $4, '[]', 0 FROM steps WHERE buildid = $2 \
                 RETURNING id, number",
            )
            .bind(&unique)
            .bind(build.0)
            .bind(now)
            .bind(state)
            .fetch_one(&self.wpool)
            .await;
            match inserted {
                Ok(r) => return Ok((StepId(r.int("id")?), r.int("number")?, unique)),
                // The name is taken in this build: try the next suffix.
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() && n < 1000 => n += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn set_step_state_string(&self, id: StepId, state: &str) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE steps SET state_string = $1 WHERE id = $2")
            .bind(state)
            .bind(id.0)
            .execute(&self.wpool)
            .await?;
        Ok(())
    }

    pub async fn set_step_urls(&self, id: StepId, urls_json: &str) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE steps SET urls_json = $1 WHERE id = $2")
            .bind(urls_json)
            .bind(id.0)
            .execute(&self.wpool)
            .await?;
        Ok(())
    }

    pub async fn finish_step(
        &self,
        id: StepId,
        results: Results,
        state: &str,
        hidden: bool,
        now: i64,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE steps SET complete_at = $1, results = $2, state_string = $3, hidden = $4 WHERE id = $5")
            .bind(now)
            .bind(results.code())
            .bind(state)
            .bind(i64::from(hidden))
            .bind(id.0)
            .execute(&self.wpool)
            .await?;
        Ok(())
    }

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
