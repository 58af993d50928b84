//! Builds and their properties.

use kiln_core::{
    BuildId, BuildRequestId, BuildSetId, BuilderId, MasterId, Properties, Results, WorkerId,
};
use sqlx::any::AnyRow;

use crate::batch::{Batch, has_column};
use crate::buildrequests::{CLAIM_IF_UNCLAIMED, Completion, push_completion, recorded};
use crate::buildsets::{BUILDSET_PROPERTIES, BUILDSET_SOURCESTAMPS, properties_of};
use crate::eventlog::{self, Recorder};
use crate::json::{json_to_property, property_to_json};
use crate::listing::{Page, SqlValue};
use crate::rows::RowExt;
use crate::steps::{StepEnd, push_finish_step};
use crate::{Db, DbError, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRow {
    pub id: BuildId,
    pub number: i64,
    pub builderid: BuilderId,
    pub buildrequestid: BuildRequestId,
    pub workerid: Option<i64>,
    pub masterid: i64,
    pub started_at: i64,
    pub complete_at: Option<i64>,
    pub locks_duration_s: i64,
    pub state_string: String,
    pub results: Option<i64>,
}

/// One build property as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PropertyRow {
    pub name: String,
    pub value: serde_json::Value,
    pub source: String,
}

pub(crate) const COLUMNS: &str = "id, number, builderid, buildrequestid, workerid, masterid, started_at, complete_at, \
                       locks_duration_s, state_string, results";

/// The build columns of the table called `alias` in a statement.
pub(crate) fn build_columns(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn build(r: &(impl RowExt + Sync)) -> Result<BuildRow> {
    Ok(BuildRow {
        id: BuildId(r.int("id")?),
        number: r.int("number")?,
        builderid: BuilderId(r.int("builderid")?),
        buildrequestid: BuildRequestId(r.int("buildrequestid")?),
        workerid: r.opt_int("workerid")?,
        masterid: r.int("masterid")?,
        started_at: r.int("started_at")?,
        complete_at: r.opt_int("complete_at")?,
        locks_duration_s: r.int("locks_duration_s")?,
        state_string: r.text("state_string")?,
        results: r.opt_int("results")?,
    })
}

/// What makes a build one that a later build of its builder is compared with: finished, and
/// not to be retried. Its columns are unqualified, for the `builds` table read last.
pub(crate) const COMPARABLE: &str = "complete_at IS NOT NULL AND (results IS NULL OR results <> 5)";

/// The columns of a build's property, with its build.
pub(crate) const PROPERTY_COLUMNS: &str = "buildid, name, value, source";

/// Adds the property of `r` (of [`PROPERTY_COLUMNS`]) to its build's set.
pub(crate) fn add_property(
    out: &mut std::collections::HashMap<BuildId, Properties>,
    r: &(impl RowExt + Sync),
) -> Result<()> {
    let id = BuildId(r.int("buildid")?);
    let name = r.text("name")?;
    let value: serde_json::Value = serde_json::from_str(&r.text("value")?)
        .map_err(|e| DbError::Corrupt(format!("build {id} property {name:?}: {e}")))?;
    out.entry(id)
        .or_default()
        .set(name, json_to_property(&value), &r.text("source")?);
    Ok(())
}

impl Db {
    pub async fn list_builds(&self, page: &Page) -> Result<(Vec<BuildRow>, i64)> {
        let (rows, total) = self.list_rows(COLUMNS, "builds", "id", page).await?;
        Ok((rows.iter().map(build).collect::<Result<_>>()?, total))
    }

    /// The newest `per_builder` builds of every builder, each builder's newest first. One
    /// statement; each builder's builds are a short range of the `(builderid, number)` index,
    /// however long its history.
    pub async fn latest_builds(&self, per_builder: i64) -> Result<Vec<BuildRow>> {
        let columns = build_columns("b");
        // CROSS JOIN keeps SQLite from scanning every build first: it reads the builders, then
        // each one's range of the index. PostgreSQL plans it as the join it is.
        let rest = "FROM builders bl CROSS JOIN builds b WHERE b.builderid = bl.id \
             AND b.number > (SELECT COALESCE(MAX(x.number), 0) FROM builds x WHERE x.builderid = bl.id) - $1 \
             ORDER BY b.builderid, b.number DESC";
        let rows = self
            .select(&columns, rest, &[SqlValue::Int(per_builder)])
            .await?;
        rows.iter().map(build).collect()
    }

    /// The branches each of these builds was built from (a build of several codebases has one
    /// per codebase), in one statement.
    pub async fn build_branches(
        &self,
        builds: &[BuildId],
    ) -> Result<Vec<(BuildId, Option<String>)>> {
        Ok(self
            .build_origins(builds)
            .await?
            .into_iter()
            .map(|(id, branch, _)| (id, branch))
            .collect())
    }

    /// The branch and project of each source stamp each of these builds was built from, in one
    /// statement: what a rule about reading some branches' or projects' builds looks at.
    pub async fn build_origins(
        &self,
        builds: &[BuildId],
    ) -> Result<Vec<(BuildId, Option<String>, String)>> {
        if builds.is_empty() {
            return Ok(Vec::new());
        }
        let marks = (1..=builds.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT b.id AS id, ss.branch AS branch, ss.project AS project FROM builds b \
             JOIN buildrequests br ON br.id = b.buildrequestid \
             JOIN buildset_sourcestamps bss ON bss.buildsetid = br.buildsetid \
             JOIN sourcestamps ss ON ss.id = bss.sourcestampid \
             WHERE b.id IN ({marks}) ORDER BY b.id"
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in builds {
            query = query.bind(b.0);
        }
        query
            .fetch_all(&mut *self.reading().await?)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    BuildId(r.int("id")?),
                    r.opt_text("branch")?,
                    r.text("project")?,
                ))
            })
            .collect()
    }

    pub async fn get_build(&self, id: BuildId) -> Result<Option<BuildRow>> {
        Ok(self
            .list_builds(&Page::eq("id", SqlValue::Int(id.0)))
            .await?
            .0
            .into_iter()
            .next())
    }

    /// The build before `number` on `builder` that a reporter compares with: the newest finished
    /// one with a lower number whose result is not RETRY (Buildbot's `getPreviousBuild`).
    pub async fn previous_build(
        &self,
        builder: BuilderId,
        number: i64,
    ) -> Result<Option<BuildRow>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM builds WHERE builderid = $1 AND number < $2 AND {COMPARABLE} \
             ORDER BY number DESC LIMIT 1"
        )))
        .bind(builder.0)
        .bind(number)
        .fetch_optional(&mut *self.reading().await?)
        .await?
        .as_ref()
        .map(build)
        .transpose()
    }

    pub async fn build_properties(&self, id: BuildId) -> Result<Vec<PropertyRow>> {
        let rows = sqlx::query(
            "SELECT name, value, source FROM build_properties WHERE buildid = $1 ORDER BY name",
        )
        .bind(id.0)
        .fetch_all(&mut *self.reading().await?)
        .await?;
        rows.iter()
            .map(|r| {
                let name = r.text("name")?;
                let value = serde_json::from_str(&r.text("value")?)
                    .map_err(|e| DbError::Corrupt(format!("build {id} property {name:?}: {e}")))?;
                Ok(PropertyRow {
                    name,
                    value,
                    source: r.text("source")?,
                })
            })
            .collect()
    }

    /// The build's properties as a [`Properties`] set.
    pub async fn build_properties_set(&self, id: BuildId) -> Result<Properties> {
        let mut props = Properties::new();
        for p in self.build_properties(id).await? {
            props.set(p.name, json_to_property(&p.value), &p.source);
        }
        Ok(props)
    }
}

impl Writer {
    pub async fn set_build_state_string(&self, id: BuildId, state: &str) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::query("UPDATE builds SET state_string = $1 WHERE id = $2")
            .bind(state)
            .bind(id.0)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    /// Records how long the build waited for its locks (Buildbot's `locks_duration_s`).
    pub async fn set_build_locks_duration(&self, id: BuildId, seconds: i64) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::query("UPDATE builds SET locks_duration_s = $1 WHERE id = $2")
            .bind(seconds)
            .bind(id.0)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    /// Claims a request for `master` and starts its build on `worker`, reading what the build
    /// needs from its buildset, all in one write. Fails with [`DbError::AlreadyClaimed`] if the
    /// request is claimed by another master, complete, or already running here.
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_and_start_build(
        &self,
        request: BuildRequestId,
        buildset: BuildSetId,
        builder: BuilderId,
        worker: WorkerId,
        master: MasterId,
        state_string: &str,
        now: i64,
        record: impl Recorder<(BuildId, i64)>,
    ) -> Result<StartedBuild> {
        let mut attempts = 0;
        loop {
            let mut batch = Batch::default();
            batch.push(
                CLAIM_IF_UNCLAIMED,
                vec![
                    SqlValue::Int(request.0),
                    SqlValue::Int(master.0),
                    SqlValue::Int(now),
                ],
            );
            // The build is added only if the claim above is this master's, the request is still
            // incomplete (a cancel may have completed it since it was read) and no build of it is
            // running: a request runs at most once at a time. Its number is read by a scalar
            // subquery, which SQLite answers from the end of the builder's index range; from a
            // subquery in FROM it read the whole range, so starting a build cost more with every
            // build of its builder (1.5 ms at 50,000).
            batch.push(
                "INSERT INTO builds (number, builderid, buildrequestid, workerid, masterid, started_at, \
                 locks_duration_s, state_string) \
                 SELECT COALESCE((SELECT MAX(number) FROM builds WHERE builderid = $1), 0) + 1, \
                 $1, $2, $3, $4, $5, 0, $6 \
                 WHERE EXISTS (SELECT 1 FROM buildrequest_claims WHERE brid = $2 AND masterid = $4) \
                 AND EXISTS (SELECT 1 FROM buildrequests WHERE id = $2 AND complete = 0) \
                 AND NOT EXISTS (SELECT 1 FROM builds WHERE buildrequestid = $2 AND complete_at IS NULL) \
                 RETURNING id AS buildid, number",
                vec![
                    SqlValue::Int(builder.0),
                    SqlValue::Int(request.0),
                    SqlValue::Int(worker.0),
                    SqlValue::Int(master.0),
                    SqlValue::Int(now),
                    SqlValue::Text(state_string.to_string()),
                ],
            );
            batch.push(BUILDSET_PROPERTIES, vec![SqlValue::Int(buildset.0)]);
            batch.push(BUILDSET_SOURCESTAMPS, vec![SqlValue::Int(buildset.0)]);
            // The claim and the new build are recorded with the write; a claim that found the
            // request taken records nothing.
            let ran = batch
                .run_recorded(self, |rows| {
                    let started = match rows.iter().find(|r| has_column(r, "buildid")) {
                        Some(b) => Some((BuildId(b.int("buildid")?), b.int("number")?)),
                        None => None,
                    };
                    let records = started.as_ref().map(&record).unwrap_or_default();
                    Ok((rows.to_vec(), records))
                })
                .await;
            let rows = match ran {
                Ok(rows) => rows,
                // Another master claimed the request or numbered a build at the same moment; the
                // whole write was undone, and the next attempt sees what the other one did.
                Err(DbError::Sqlx(sqlx::Error::Database(e)))
                    if e.is_unique_violation() && attempts < 8 =>
                {
                    attempts += 1;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(build) = rows.iter().find(|r| has_column(r, "buildid")) else {
                return Err(DbError::AlreadyClaimed(request.0));
            };
            let props: Vec<AnyRow> = rows
                .iter()
                .filter(|r| has_column(r, "property_name"))
                .cloned()
                .collect();
            let mut sourcestamps = Vec::new();
            for r in rows.iter().filter(|r| has_column(r, "patchid")) {
                sourcestamps.push(self.sourcestamp_row(r).await?);
            }
            return Ok(StartedBuild {
                id: BuildId(build.int("buildid")?),
                number: build.int("number")?,
                properties: properties_of(&props, buildset)?,
                sourcestamps,
            });
        }
    }

    /// Finishes a build's last step and the build, and completes its request (and the request's
    /// buildset, if that was its last request), in one transaction: the end of a build is one
    /// write.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_build_and_request(
        &self,
        id: BuildId,
        results: Results,
        state: &str,
        last_step: Option<&StepEnd>,
        request: BuildRequestId,
        master: MasterId,
        now: i64,
        record: impl Recorder<Completion>,
    ) -> Result<Completion> {
        let mut batch = Batch::default();
        if let Some(end) = last_step {
            push_finish_step(&mut batch, end, now);
        }
        push_finish_build(&mut batch, id, results, state, now);
        push_completion(&mut batch, request, results, master, now);
        batch.run_recorded(self, recorded(record)).await
    }

    /// Finishes a build with its result and final state string.
    pub async fn finish_build(
        &self,
        id: BuildId,
        results: Results,
        state: &str,
        now: i64,
        record: impl Recorder<()>,
    ) -> Result<()> {
        let mut batch = Batch::default();
        push_finish_build(&mut batch, id, results, state, now);
        batch.run_recorded(self, |_| Ok(((), record(&())))).await
    }

    /// Marks every unfinished build of `master` finished with `results` (used after an unclean stop)
    /// and returns their ids.
    pub async fn finish_master_builds(
        &self,
        master: MasterId,
        results: Results,
        state: &str,
        now: i64,
        record: impl Recorder<Vec<BuildId>>,
    ) -> Result<Vec<BuildId>> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        let ids: Vec<BuildId> = sqlx::query(
            "SELECT id FROM builds WHERE masterid = $1 AND complete_at IS NULL ORDER BY id",
        )
        .bind(master.0)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok(BuildId(r.int("id")?)))
        .collect::<Result<_>>()?;
        for id in &ids {
            sqlx::query(
                "UPDATE builds SET complete_at = $1, results = $2, state_string = $3 WHERE id = $4",
            )
            .bind(now)
            .bind(results.code())
            .bind(state)
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
            sqlx::query(FINISH_OPEN_STEPS)
                .bind(now)
                .bind(results.code())
                .bind(format!(" ({})", results.name()))
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE logs SET complete = 1 WHERE stepid IN (SELECT id FROM steps WHERE buildid = $1)")
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        eventlog::insert(&mut tx, self.backend(), &record(&ids)).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Stores every property of `props` on a build, replacing values of the same name, in one
    /// statement.
    pub async fn set_build_properties(&self, id: BuildId, props: &Properties) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        let mut sql =
            String::from("INSERT INTO build_properties (buildid, name, value, source) VALUES ");
        for i in 0..props.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let n = i * 3;
            sql.push_str(&format!("($1, ${}, ${}, ${})", n + 2, n + 3, n + 4));
        }
        sql.push_str(" ON CONFLICT (buildid, name) DO UPDATE SET value = excluded.value, source = excluded.source");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.0);
        for (name, prop) in props.iter() {
            q = q
                .bind(name.clone())
                .bind(property_to_json(&prop.value).to_string())
                .bind(prop.source.clone());
        }
        let mut w = self.writing().await?;
        q.execute(&mut *w).await?;
        Ok(())
    }
}

/// Ends a build with its result and final state string.
/// Finishes the steps of a build that its runner could not finish (the master stopped or died
/// under it) with the build's result, each saying so after its name as a finished step does.
const FINISH_OPEN_STEPS: &str = "UPDATE steps SET complete_at = $1, results = $2, \
     state_string = name || $3 WHERE buildid = $4 AND complete_at IS NULL";

fn push_finish_build(batch: &mut Batch, id: BuildId, results: Results, state: &str, now: i64) {
    batch.push(
        "UPDATE builds SET complete_at = $1, results = $2, state_string = $3 WHERE id = $4",
        vec![
            SqlValue::Int(now),
            SqlValue::Int(results.code()),
            SqlValue::Text(state.to_string()),
            SqlValue::Int(id.0),
        ],
    );
    // A build ends RETRY when it was interrupted: a step may still be open. Builds that end
    // otherwise finished every step already, and skip the statement.
    if results == Results::Retry {
        batch.push(
            FINISH_OPEN_STEPS,
            vec![
                SqlValue::Int(now),
                SqlValue::Int(results.code()),
                SqlValue::Text(format!(" ({})", results.name())),
                SqlValue::Int(id.0),
            ],
        );
        batch.push(
            "UPDATE logs SET complete = 1 WHERE complete = 0 AND stepid IN \
             (SELECT id FROM steps WHERE buildid = $1)",
            vec![SqlValue::Int(id.0)],
        );
    }
}

/// A build just started by [`Db::claim_and_start_build`], with its buildset's properties and source
/// stamps.
#[derive(Debug, Clone)]
pub struct StartedBuild {
    pub id: BuildId,
    pub number: i64,
    pub properties: Properties,
    pub sourcestamps: Vec<crate::SourceStampRow>,
}
