//! Generic persisted state (`objects`, `object_state`): a poller's last revision, a scheduler's
//! last run, a master's next build number cache, …

use crate::rows::RowExt;
use crate::{Db, Result, Writer};

impl Db {
    /// The id of an object, if it has been registered.
    pub async fn lookup_object_id(&self, name: &str, class_name: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT id FROM objects WHERE name = $1 AND class_name = $2")
            .bind(name)
            .bind(class_name)
            .fetch_optional(&mut *self.reading().await?)
            .await?;
        row.map(|r| r.int("id")).transpose()
    }

    /// The JSON value stored under `name` for an object.
    pub async fn get_state(&self, objectid: i64, name: &str) -> Result<Option<String>> {
        sqlx::query("SELECT value_json FROM object_state WHERE objectid = $1 AND name = $2")
            .bind(objectid)
            .bind(name)
            .fetch_optional(&mut *self.reading().await?)
            .await?
            .map(|r| r.text("value_json"))
            .transpose()
    }
}

impl Writer {
    /// The id of the object `(name, class_name)`, created if new.
    pub async fn object_id(&self, name: &str, class_name: &str) -> Result<i64> {
        let mut w = self.writing().await?;
        if let Some(r) = sqlx::query("SELECT id FROM objects WHERE name = $1 AND class_name = $2")
            .bind(name)
            .bind(class_name)
            .fetch_optional(&mut *w)
            .await?
        {
            return r.int("id");
        }
        sqlx::query("INSERT INTO objects (name, class_name) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(class_name)
            .fetch_one(&mut *w)
            .await?
            .int("id")
    }

    pub async fn set_state(&self, objectid: i64, name: &str, value_json: &str) -> Result<()> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        sqlx::query("DELETE FROM object_state WHERE objectid = $1 AND name = $2")
            .bind(objectid)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO object_state (objectid, name, value_json) VALUES ($1, $2, $3)")
            .bind(objectid)
            .bind(name)
            .bind(value_json)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The value stored under `name` for an object, storing `value` first if there is none: of
    /// several masters that start at once on one database, all end up with the first one's.
    pub async fn state_once(&self, objectid: i64, name: &str, value_json: &str) -> Result<String> {
        let mut w = self.writing().await?;
        sqlx::query(
            "INSERT INTO object_state (objectid, name, value_json) VALUES ($1, $2, $3) \
             ON CONFLICT (objectid, name) DO NOTHING",
        )
        .bind(objectid)
        .bind(name)
        .bind(value_json)
        .execute(&mut *w)
        .await?;
        sqlx::query("SELECT value_json FROM object_state WHERE objectid = $1 AND name = $2")
            .bind(objectid)
            .bind(name)
            .fetch_one(&mut *w)
            .await?
            .text("value_json")
    }
}
