//! Workers: which exist, which builders they serve on which master, and where they are connected.

use std::collections::HashMap;

use kiln_core::{BuilderId, MasterId, WorkerId};

use crate::eventlog::{self, Recorder};
use crate::listing::{IN_LIST_MAX, Page, SqlValue, placeholders};
use crate::rows::RowExt;
use crate::{Db, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRow {
    pub id: WorkerId,
    pub name: String,
    /// The worker's `get_worker_info` answer, as JSON.
    pub info: String,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub graceful: bool,
    /// `(builderid, masterid)` pairs.
    pub configured_on: Vec<(i64, i64)>,
    pub connected_to: Vec<i64>,
}

const COLUMNS: &str = "id, name, info, paused, pause_reason, graceful";

/// Each worker's `(builder, master)` pairs, and the masters it is connected to.
type WorkerLinks = (HashMap<i64, Vec<(i64, i64)>>, HashMap<i64, Vec<i64>>);

impl Db {
    /// Where each of these workers is configured (builder, master) and which masters it is
    /// connected to: two statements for a page of workers, not two per worker. `None` asks for
    /// every worker's, without a list of ids to test each row against.
    async fn worker_links(&self, ids: Option<&[i64]>) -> Result<WorkerLinks> {
        let mut configured: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        let mut connected: HashMap<i64, Vec<i64>> = HashMap::new();
        let chunks: Vec<&[i64]> = match ids {
            Some(ids) => ids.chunks(IN_LIST_MAX).collect(),
            None => vec![&[]],
        };
        for chunk in chunks {
            let among = |column: &str| match ids {
                Some(_) => format!("{column} IN ({})", placeholders(1, chunk.len())),
                None => "1 = 1".to_string(),
            };
            // From the workers' rows to their builders (CROSS JOIN fixes that order in SQLite):
            // the other way probes every worker for every builder.
            let columns =
                "cw.workerid AS workerid, bm.builderid AS builderid, bm.masterid AS masterid";
            let rest = format!(
                "FROM configured_workers cw CROSS JOIN builder_masters bm \
                 WHERE bm.id = cw.buildermasterid AND {} ORDER BY bm.builderid, bm.masterid",
                among("cw.workerid")
            );
            let binds: Vec<SqlValue> = chunk.iter().copied().map(SqlValue::Int).collect();
            for r in self.select(columns, &rest, &binds).await? {
                configured
                    .entry(r.int("workerid")?)
                    .or_default()
                    .push((r.int("builderid")?, r.int("masterid")?));
            }
            let sql = format!(
                "SELECT workerid, masterid FROM connected_workers WHERE {} ORDER BY masterid",
                among("workerid")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&mut *self.reading().await?).await?;
            for r in rows {
                connected
                    .entry(r.int("workerid")?)
                    .or_default()
                    .push(r.int("masterid")?);
            }
        }
        Ok((configured, connected))
    }

    pub async fn list_workers(&self, page: &Page) -> Result<(Vec<WorkerRow>, i64)> {
        let (rows, total) = self.list_rows(COLUMNS, "workers", "id", page).await?;
        let ids = rows
            .iter()
            .map(|r| r.int("id"))
            .collect::<Result<Vec<i64>>>()?;
        let whole_table = page.filters.is_empty() && page.limit.is_none() && page.offset.is_none();
        let (mut configured, mut connected) = self
            .worker_links((!whole_table).then_some(ids.as_slice()))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = r.int("id")?;
            let configured_on = configured.remove(&id).unwrap_or_default();
            let connected_to = connected.remove(&id).unwrap_or_default();
            out.push(WorkerRow {
                id: WorkerId(id),
                name: r.text("name")?,
                info: r.text("info")?,
                paused: r.flag("paused")?,
                pause_reason: r.opt_text("pause_reason")?,
                graceful: r.flag("graceful")?,
                configured_on,
                connected_to,
            });
        }
        Ok((out, total))
    }

    /// The ids of the workers configured for `builder` on any master.
    pub async fn builder_worker_ids(&self, builder: BuilderId) -> Result<Vec<WorkerId>> {
        sqlx::query(
            "SELECT DISTINCT cw.workerid AS workerid FROM configured_workers cw \
             JOIN builder_masters bm ON bm.id = cw.buildermasterid WHERE bm.builderid = $1 ORDER BY cw.workerid",
        )
        .bind(builder.0)
        .fetch_all(&mut *self.reading().await?)
        .await?
        .iter()
        .map(|r| Ok(WorkerId(r.int("workerid")?)))
        .collect()
    }
}

impl Writer {
    /// The id of the worker called `name`, created if new.
    pub async fn find_worker_id(&self, name: &str) -> Result<WorkerId> {
        let mut w = self.writing().await?;
        if let Some(r) = sqlx::query("SELECT id FROM workers WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *w)
            .await?
        {
            return Ok(WorkerId(r.int("id")?));
        }
        let r = sqlx::query("INSERT INTO workers (name, info) VALUES ($1, '{}') RETURNING id")
            .bind(name)
            .fetch_one(&mut *w)
            .await?;
        Ok(WorkerId(r.int("id")?))
    }

    /// Makes `workers` exactly the workers configured for the `builder_masters` row `buildermasterid`.
    pub async fn set_builder_workers(
        &self,
        buildermasterid: i64,
        workers: &[WorkerId],
    ) -> Result<()> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        sqlx::query("DELETE FROM configured_workers WHERE buildermasterid = $1")
            .bind(buildermasterid)
            .execute(&mut *tx)
            .await?;
        for w in workers {
            sqlx::query(
                "INSERT INTO configured_workers (buildermasterid, workerid) VALUES ($1, $2)",
            )
            .bind(buildermasterid)
            .bind(w.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that `worker` connected to `master`, with its reported information.
    pub async fn worker_connected(
        &self,
        worker: WorkerId,
        master: MasterId,
        info_json: &str,
        record: impl Recorder<()>,
    ) -> Result<()> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        sqlx::query("UPDATE workers SET info = $1 WHERE id = $2")
            .bind(info_json)
            .bind(worker.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM connected_workers WHERE workerid = $1 AND masterid = $2")
            .bind(worker.0)
            .bind(master.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO connected_workers (masterid, workerid) VALUES ($1, $2)")
            .bind(master.0)
            .bind(worker.0)
            .execute(&mut *tx)
            .await?;
        eventlog::insert(&mut tx, self.backend(), &record(&())).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn worker_disconnected(
        &self,
        worker: WorkerId,
        master: MasterId,
        record: impl Recorder<()>,
    ) -> Result<()> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        sqlx::query("DELETE FROM connected_workers WHERE workerid = $1 AND masterid = $2")
            .bind(worker.0)
            .bind(master.0)
            .execute(&mut *tx)
            .await?;
        eventlog::insert(&mut tx, self.backend(), &record(&())).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets every connection to `master`: used at start-up after an unclean stop.
    pub async fn clear_master_connections(&self, master: MasterId) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::query("DELETE FROM connected_workers WHERE masterid = $1")
            .bind(master.0)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    pub async fn set_worker_paused(
        &self,
        worker: WorkerId,
        paused: bool,
        reason: Option<&str>,
    ) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::query("UPDATE workers SET paused = $1, pause_reason = $2 WHERE id = $3")
            .bind(i64::from(paused))
            .bind(reason.map(str::to_string))
            .bind(worker.0)
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    pub async fn set_worker_graceful(&self, worker: WorkerId, graceful: bool) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::query("UPDATE workers SET graceful = $1 WHERE id = $2")
            .bind(i64::from(graceful))
            .bind(worker.0)
            .execute(&mut *w)
            .await?;
        Ok(())
    }
}
