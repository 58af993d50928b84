//! Schedulers (`schedulers`) and the changes they have classified but not built yet
//! (`scheduler_changes`), which is how a tree-stable timer survives a restart.

use kiln_core::{ChangeId, SchedulerId};

use crate::batch::Batch;
use crate::listing::SqlValue;
use crate::rows::{RowExt, name_hash};
use crate::{Db, Result};

impl Db {
    /// The id of the scheduler called `name`, created if new.
    pub async fn find_scheduler_id(&self, name: &str) -> Result<SchedulerId> {
        let hash = name_hash(name);
        let _w = self.write_guard().await;
        if let Some(r) = sqlx::query("SELECT id FROM schedulers WHERE name_hash = $1")
            .bind(&hash)
            .fetch_optional(&self.wpool)
            .await?
        {
            return Ok(SchedulerId(r.int("id")?));
        }
        let r =
            sqlx::query("INSERT INTO schedulers (name, name_hash) VALUES ($1, $2) RETURNING id")
                .bind(name)
                .bind(&hash)
                .fetch_one(&self.wpool)
                .await?;
        Ok(SchedulerId(r.int("id")?))
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

    /// The changes a scheduler has classified and not built yet, in change order.
    pub async fn change_classifications(
        &self,
        scheduler: SchedulerId,
    ) -> Result<Vec<(ChangeId, bool)>> {
        let rows = sqlx::query(
            "SELECT changeid, important FROM scheduler_changes WHERE schedulerid = $1 ORDER BY changeid",
        )
        .bind(scheduler.0)
        .fetch_all(&self.wpool)
        .await?;
        rows.iter()
            .map(|r| Ok((ChangeId(r.int("changeid")?), r.flag("important")?)))
            .collect()
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
