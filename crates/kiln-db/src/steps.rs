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
    /// Adds the next step of a build. A name already used in the build gets a `_2`, `_3`, …
    /// suffix, as Buildbot does; the name actually used is returned.
    pub async fn add_step(
        &self,
        build: BuildId,
        name: &str,
        state: &str,
    ) -> Result<(StepId, i64, String)> {
        let _w = self.write_guard().await;
        let mut tx = self.pool.begin().await?;
        let existing = sqlx::query("SELECT number, name FROM steps WHERE buildid = $1")
            .bind(build.0)
            .fetch_all(&mut *tx)
            .await?;
        let number = existing
            .iter()
            .map(|r| r.int("number"))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .max()
            .map_or(0, |n| n + 1);
        let names: Vec<String> = existing
            .iter()
            .map(|r| r.text("name"))
            .collect::<Result<_>>()?;
        let mut unique = name.to_string();
        let mut n = 1;
        while names.contains(&unique) {
            n += 1;
            unique = format!("{name}_{n}");
        }
        let r = sqlx::query(
            "INSERT INTO steps (number, name, buildid, state_string, urls_json, hidden) VALUES ($1, $2, $3, $4, '[]', 0) RETURNING id",
        )
        .bind(number)
        .bind(&unique)
        .bind(build.0)
        .bind(state)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((StepId(r.int("id")?), number, unique))
    }

    pub async fn start_step(&self, id: StepId, now: i64) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE steps SET started_at = $1, locks_acquired_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_step_state_string(&self, id: StepId, state: &str) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE steps SET state_string = $1 WHERE id = $2")
            .bind(state)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_step_urls(&self, id: StepId, urls_json: &str) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE steps SET urls_json = $1 WHERE id = $2")
            .bind(urls_json)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn finish_step(
        &self,
        id: StepId,
        results: Results,
        hidden: bool,
        now: i64,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        sqlx::query("UPDATE steps SET complete_at = $1, results = $2, hidden = $3 WHERE id = $4")
            .bind(now)
            .bind(results.code())
            .bind(i64::from(hidden))
            .bind(id.0)
            .execute(&self.pool)
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
