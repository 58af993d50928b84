//! Builders, the masters that run them, and their tags.

use std::collections::BTreeMap;

use kiln_core::{BuilderId, MasterId};

use crate::listing::{IN_LIST_MAX, Page, placeholders};
use crate::rows::{RowExt, name_hash};
use crate::{Db, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderRow {
    pub id: BuilderId,
    pub name: String,
    pub description: Option<String>,
    pub description_format: Option<String>,
    pub description_html: Option<String>,
    pub projectid: Option<i64>,
    pub masterids: Vec<i64>,
    pub tags: Vec<String>,
}

const COLUMNS: &str = "id, name, description, description_format, description_html, projectid";

impl Db {
    /// The masters and tags of these builders: two statements for a page of builders, not
    /// two per builder.
    async fn builder_links(
        &self,
        ids: &[i64],
    ) -> Result<(BTreeMap<i64, Vec<i64>>, BTreeMap<i64, Vec<String>>)> {
        let mut masters: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let mut tags: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for chunk in ids.chunks(IN_LIST_MAX) {
            let marks = placeholders(1, chunk.len());
            let sql = format!(
                "SELECT builderid, masterid FROM builder_masters WHERE builderid IN ({marks}) ORDER BY masterid"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&mut *self.reading().await?).await?;
            for r in rows {
                masters
                    .entry(r.int("builderid")?)
                    .or_default()
                    .push(r.int("masterid")?);
            }
            let sql = format!(
                "SELECT bt.builderid AS builderid, t.name AS name FROM builders_tags bt \
                 JOIN tags t ON t.id = bt.tagid WHERE bt.builderid IN ({marks}) ORDER BY t.name"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&mut *self.reading().await?).await?;
            for r in rows {
                tags.entry(r.int("builderid")?)
                    .or_default()
                    .push(r.text("name")?);
            }
        }
        Ok((masters, tags))
    }

    pub async fn list_builders(&self, page: &Page) -> Result<(Vec<BuilderRow>, i64)> {
        let (rows, total) = self.list_rows(COLUMNS, "builders", "id", page).await?;
        let ids = rows
            .iter()
            .map(|r| r.int("id"))
            .collect::<Result<Vec<i64>>>()?;
        let (mut masters, mut tags) = self.builder_links(&ids).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id = r.int("id")?;
            let masterids = masters.remove(&id).unwrap_or_default();
            let tags = tags.remove(&id).unwrap_or_default();
            out.push(BuilderRow {
                id: BuilderId(id),
                name: r.text("name")?,
                description: r.opt_text("description")?,
                description_format: r.opt_text("description_format")?,
                description_html: r.opt_text("description_html")?,
                projectid: r.opt_int("projectid")?,
                masterids,
                tags,
            });
        }
        Ok((out, total))
    }

    /// Every builder's id and name, including those no master runs any more: old builds still
    /// name them.
    pub async fn builder_names(&self) -> Result<Vec<(BuilderId, String)>> {
        sqlx::query("SELECT id, name FROM builders ORDER BY id")
            .fetch_all(&mut *self.reading().await?)
            .await?
            .iter()
            .map(|r| Ok((BuilderId(r.int("id")?), r.text("name")?)))
            .collect()
    }
}

impl Writer {
    /// The id of the builder called `name`, created if new.
    pub async fn find_builder_id(&self, name: &str) -> Result<BuilderId> {
        let hash = name_hash(name);
        let mut w = self.writing().await?;
        if let Some(r) = sqlx::query("SELECT id FROM builders WHERE name_hash = $1")
            .bind(&hash)
            .fetch_optional(&mut *w)
            .await?
        {
            return Ok(BuilderId(r.int("id")?));
        }
        let r = sqlx::query("INSERT INTO builders (name, name_hash) VALUES ($1, $2) RETURNING id")
            .bind(name)
            .bind(&hash)
            .fetch_one(&mut *w)
            .await?;
        Ok(BuilderId(r.int("id")?))
    }

    /// Records a builder's description and tags from the config.
    pub async fn update_builder_info(
        &self,
        id: BuilderId,
        description: Option<&str>,
        tags: &[String],
    ) -> Result<()> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        sqlx::query("UPDATE builders SET description = $1, description_format = NULL, description_html = NULL WHERE id = $2")
            .bind(description.map(str::to_string))
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM builders_tags WHERE builderid = $1")
            .bind(id.0)
            .execute(&mut *tx)
            .await?;
        for tag in tags {
            let hash = name_hash(tag);
            let tagid = match sqlx::query("SELECT id FROM tags WHERE name_hash = $1")
                .bind(&hash)
                .fetch_optional(&mut *tx)
                .await?
            {
                Some(r) => r.int("id")?,
                None => {
                    sqlx::query("INSERT INTO tags (name, name_hash) VALUES ($1, $2) RETURNING id")
                        .bind(tag)
                        .bind(&hash)
                        .fetch_one(&mut *tx)
                        .await?
                        .int("id")?
                }
            };
            sqlx::query("INSERT INTO builders_tags (builderid, tagid) VALUES ($1, $2)")
                .bind(id.0)
                .bind(tagid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes `builders` exactly the set of builders `master` runs, returning each builder's
    /// `builder_masters` id.
    pub async fn set_master_builders(
        &self,
        master: MasterId,
        builders: &[BuilderId],
    ) -> Result<BTreeMap<BuilderId, i64>> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        let existing = sqlx::query("SELECT id, builderid FROM builder_masters WHERE masterid = $1")
            .bind(master.0)
            .fetch_all(&mut *tx)
            .await?;
        let mut ids = BTreeMap::new();
        for r in &existing {
            let b = BuilderId(r.int("builderid")?);
            let id = r.int("id")?;
            if builders.contains(&b) {
                ids.insert(b, id);
            } else {
                sqlx::query("DELETE FROM configured_workers WHERE buildermasterid = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM builder_masters WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        for b in builders {
            if !ids.contains_key(b) {
                let r = sqlx::query("INSERT INTO builder_masters (builderid, masterid) VALUES ($1, $2) RETURNING id")
                    .bind(b.0)
                    .bind(master.0)
                    .fetch_one(&mut *tx)
                    .await?;
                ids.insert(*b, r.int("id")?);
            }
        }
        tx.commit().await?;
        Ok(ids)
    }
}
