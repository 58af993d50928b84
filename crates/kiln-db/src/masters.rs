//! The `masters` table: which masters exist and whether they are alive.

use kiln_core::MasterId;

use crate::listing::Page;
use crate::rows::{RowExt, name_hash};
use crate::{Db, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterRow {
    pub id: MasterId,
    pub name: String,
    pub active: bool,
    pub last_active: i64,
}

fn master(r: &(impl RowExt + Sync)) -> Result<MasterRow> {
    Ok(MasterRow {
        id: MasterId(r.int("id")?),
        name: r.text("name")?,
        active: r.flag("active")?,
        last_active: r.int("last_active")?,
    })
}

const COLUMNS: &str = "id, name, active, last_active";

impl Db {
    pub async fn list_masters(&self, page: &Page) -> Result<(Vec<MasterRow>, i64)> {
        let (rows, total) = self.list_rows(COLUMNS, "masters", "id", page).await?;
        Ok((rows.iter().map(master).collect::<Result<_>>()?, total))
    }
}

impl Writer {
    /// The id of the master called `name`, created if new.
    pub async fn find_master_id(&self, name: &str) -> Result<MasterId> {
        let hash = name_hash(name);
        let mut w = self.writing().await?;
        if let Some(r) = sqlx::query("SELECT id FROM masters WHERE name_hash = $1")
            .bind(&hash)
            .fetch_optional(&mut *w)
            .await?
        {
            return Ok(MasterId(r.int("id")?));
        }
        let r = sqlx::query("INSERT INTO masters (name, name_hash, active, last_active) VALUES ($1, $2, 0, 0) RETURNING id")
            .bind(name)
            .bind(&hash)
            .fetch_one(&mut *w)
            .await?;
        Ok(MasterId(r.int("id")?))
    }

    pub async fn set_master_active(&self, id: MasterId, active: bool, now: i64) -> Result<()> {
        let mut w = self.writing().await?;
        sqlx::query("UPDATE masters SET active = $1, last_active = $2 WHERE id = $3")
            .bind(i64::from(active))
            .bind(now)
            .bind(id.0)
            .execute(&mut *w)
            .await?;
        Ok(())
    }
}
