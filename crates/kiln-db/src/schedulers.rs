//! Schedulers (`schedulers`) and the changes they have classified but not built yet
//! (`scheduler_changes`), which is how a tree-stable timer survives a restart.

use kiln_core::{ChangeId, MasterId, SchedulerId};

use crate::batch::Batch;
use crate::listing::{Page, SqlValue};
use crate::rows::{RowExt, name_hash};
use crate::{Db, Result, Writer};

/// A scheduler as stored: its master is the one running it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerRow {
    pub id: SchedulerId,
    pub name: String,
    pub enabled: bool,
    pub masterid: Option<MasterId>,
}

impl Db {
    /// The id of a scheduler, if it has been registered.
    pub async fn lookup_scheduler_id(&self, name: &str) -> Result<Option<SchedulerId>> {
        let row = sqlx::query("SELECT id FROM schedulers WHERE name_hash = $1")
            .bind(name_hash(name))
            .fetch_optional(&mut *self.reading().await?)
            .await?;
        row.map(|r| r.int("id").map(SchedulerId)).transpose()
    }

    /// Schedulers with the master running each, if any.
    pub async fn list_schedulers(&self, page: &Page) -> Result<(Vec<SchedulerRow>, i64)> {
        let (rows, total) = self
            .list_rows(
                "s.id AS id, s.name AS name, s.enabled AS enabled, m.masterid AS masterid",
                "schedulers s LEFT JOIN scheduler_masters m ON m.schedulerid = s.id",
                "id",
                page,
            )
            .await?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(SchedulerRow {
                    id: SchedulerId(r.int("id")?),
                    name: r.text("name")?,
                    enabled: r.flag("enabled")?,
                    masterid: r.opt_int("masterid")?.map(MasterId),
                })
            })
            .collect::<Result<_>>()?;
        Ok((rows, total))
    }

    /// The names of the disabled schedulers.
    pub async fn disabled_schedulers(&self) -> Result<Vec<String>> {
        sqlx::query("SELECT name FROM schedulers WHERE enabled = 0")
            .fetch_all(&mut *self.reading().await?)
            .await?
            .iter()
            .map(|r| r.text("name"))
            .collect()
    }

    /// The changes a scheduler has classified and not built yet, in change order.
    pub async fn change_classifications(
        &self,
        scheduler: SchedulerId,
    ) -> Result<Vec<(ChangeId, bool)>> {
        let rows = sqlx::query(
            "SELECT changeid, important FROM scheduler_changes WHERE schedulerid = $1 ORDER BY changeid",
        )
        .bind(scheduler.0)
        .fetch_all(&mut *self.writing().await?)
        .await?;
        rows.iter()
            .map(|r| Ok((ChangeId(r.int("changeid")?), r.flag("important")?)))
            .collect()
    }
}

impl Writer {
    /// The id of the scheduler called `name`, created if new.
    pub async fn find_scheduler_id(&self, name: &str) -> Result<SchedulerId> {
        let hash = name_hash(name);
        let mut w = self.writing().await?;
        if let Some(r) = sqlx::query("SELECT id FROM schedulers WHERE name_hash = $1")
            .bind(&hash)
            .fetch_optional(&mut *w)
            .await?
        {
            return Ok(SchedulerId(r.int("id")?));
        }
        let r =
            sqlx::query("INSERT INTO schedulers (name, name_hash) VALUES ($1, $2) RETURNING id")
                .bind(name)
                .bind(&hash)
                .fetch_one(&mut *w)
                .await?;
        Ok(SchedulerId(r.int("id")?))
    }

    /// Makes `master` the one running exactly `schedulers`: its other schedulers are released.
    pub async fn set_master_schedulers(
        &self,
        master: MasterId,
        schedulers: &[SchedulerId],
    ) -> Result<()> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        sqlx::query("DELETE FROM scheduler_masters WHERE masterid = $1")
            .bind(master.0)
            .execute(&mut *tx)
            .await?;
        for s in schedulers {
            sqlx::query("DELETE FROM scheduler_masters WHERE schedulerid = $1")
                .bind(s.0)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO scheduler_masters (schedulerid, masterid) VALUES ($1, $2)")
                .bind(s.0)
                .bind(master.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Enables or disables a scheduler (Buildbot's `enable` control).
    pub async fn set_scheduler_enabled(&self, id: SchedulerId, enabled: bool) -> Result<bool> {
        let mut w = self.writing().await?;
        let done = sqlx::query("UPDATE schedulers SET enabled = $1 WHERE id = $2")
            .bind(i64::from(enabled))
            .bind(id.0)
            .execute(&mut *w)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records that a scheduler has seen `change`, and whether it found it important.
    pub async fn classify_change(
        &self,
        scheduler: SchedulerId,
        change: ChangeId,
        important: bool,
    ) -> Result<()> {
        let mut batch = Batch::default();
        batch.push(
            "INSERT INTO scheduler_changes (schedulerid, changeid, important) VALUES ($1, $2, $3) \
             ON CONFLICT (schedulerid, changeid) DO UPDATE SET important = excluded.important",
            vec![
                SqlValue::Int(scheduler.0),
                SqlValue::Int(change.0),
                SqlValue::Int(i64::from(important)),
            ],
        );
        batch.run(self).await?;
        Ok(())
    }

    /// Forgets classifications once their changes are built (or dropped).
    pub async fn flush_classifications(
        &self,
        scheduler: SchedulerId,
        changes: &[ChangeId],
    ) -> Result<()> {
        let mut batch = Batch::default();
        for c in changes {
            batch.push(
                "DELETE FROM scheduler_changes WHERE schedulerid = $1 AND changeid = $2",
                vec![SqlValue::Int(scheduler.0), SqlValue::Int(c.0)],
            );
        }
        batch.run(self).await?;
        Ok(())
    }
}
