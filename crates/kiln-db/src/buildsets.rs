//! Buildsets: one set of source stamps built on several builders, one build request per builder.

use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{BuildRequestId, BuildSetId, BuilderId, Properties};

use sqlx::any::AnyRow;

use crate::eventlog::{self, Recorder};
use crate::json::{json_to_property, property_to_json};
use crate::listing::Page;
use crate::rows::RowExt;
use crate::{Db, DbError, Result, Writer};

/// Everything needed to submit a buildset.
#[derive(Debug, Clone, Default)]
pub struct NewBuildSet {
    pub reason: String,
    pub external_idstring: Option<String>,
    pub sourcestamps: Vec<SourceStamp>,
    pub properties: Properties,
    /// One build request per builder, with its priority.
    pub builders: Vec<(BuilderId, i64)>,
    pub parent_buildid: Option<i64>,
    pub parent_relationship: Option<String>,
    pub rebuilt_buildid: Option<i64>,
    pub submitted_at: i64,
    /// A triggering build waits for these requests (`waitForFinish`), as Buildbot records it.
    pub waited_for: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSetRow {
    pub id: BuildSetId,
    pub external_idstring: Option<String>,
    pub reason: Option<String>,
    pub submitted_at: i64,
    pub complete: bool,
    pub complete_at: Option<i64>,
    pub results: Option<i64>,
    pub parent_buildid: Option<i64>,
    pub parent_relationship: Option<String>,
    pub rebuilt_buildid: Option<i64>,
    pub sourcestamps: Vec<i64>,
}

pub(crate) const COLUMNS: &str = "id, external_idstring, reason, submitted_at, complete, complete_at, results, \
                       parent_buildid, parent_relationship, rebuilt_buildid";

/// A buildset from its row, taking its source stamps out of `sourcestamps` (by buildset id).
pub(crate) fn buildset(
    r: &(impl RowExt + Sync),
    sourcestamps: &mut std::collections::HashMap<i64, Vec<i64>>,
) -> Result<BuildSetRow> {
    let id = r.int("id")?;
    Ok(BuildSetRow {
        id: BuildSetId(id),
        external_idstring: r.opt_text("external_idstring")?,
        reason: r.opt_text("reason")?,
        submitted_at: r.int("submitted_at")?,
        complete: r.flag("complete")?,
        complete_at: r.opt_int("complete_at")?,
        results: r.opt_int("results")?,
        parent_buildid: r.opt_int("parent_buildid")?,
        parent_relationship: r.opt_text("parent_relationship")?,
        rebuilt_buildid: r.opt_int("rebuilt_buildid")?,
        sourcestamps: sourcestamps.remove(&id).unwrap_or_default(),
    })
}

impl Db {
    pub async fn list_buildsets(&self, page: &Page) -> Result<(Vec<BuildSetRow>, i64)> {
        let (rows, total) = self.list_rows(COLUMNS, "buildsets", "id", page).await?;
        let ids = rows
            .iter()
            .map(|r| r.int("id"))
            .collect::<Result<Vec<i64>>>()?;
        let mut sourcestamps = self.sourcestamp_ids_of(&ids).await?;
        let out = rows
            .iter()
            .map(|r| buildset(r, &mut sourcestamps))
            .collect::<Result<_>>()?;
        Ok((out, total))
    }

    /// The source stamp ids of each of the buildsets `ids`, in the order they were added: one
    /// query for a few hundred buildsets, not one each.
    async fn sourcestamp_ids_of(
        &self,
        ids: &[i64],
    ) -> Result<std::collections::HashMap<i64, Vec<i64>>> {
        let mut out: std::collections::HashMap<i64, Vec<i64>> = Default::default();
        for chunk in ids.chunks(crate::listing::IN_LIST_MAX) {
            let sql = format!(
                "SELECT buildsetid, sourcestampid FROM buildset_sourcestamps \
                 WHERE buildsetid IN ({}) ORDER BY id",
                crate::listing::placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&mut *self.reading().await?).await?;
            for r in rows {
                out.entry(r.int("buildsetid")?)
                    .or_default()
                    .push(r.int("sourcestampid")?);
            }
        }
        Ok(out)
    }

    pub async fn get_buildset(&self, id: BuildSetId) -> Result<Option<BuildSetRow>> {
        let page = Page::eq("id", crate::listing::SqlValue::Int(id.0));
        Ok(self.list_buildsets(&page).await?.0.into_iter().next())
    }

    /// The source stamps of a buildset, in the order they were added, in one query. Read as a build
    /// starts, so on the writers' connection, like the buildset's properties.
    pub async fn buildset_sourcestamps(
        &self,
        id: BuildSetId,
    ) -> Result<Vec<crate::SourceStampRow>> {
        let rows = sqlx::query(BUILDSET_SOURCESTAMPS)
            .bind(id.0)
            .fetch_all(&mut *self.writing().await?)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.sourcestamp_row(r).await?);
        }
        Ok(out)
    }

    pub async fn buildset_properties(&self, id: BuildSetId) -> Result<Properties> {
        let rows = sqlx::query(BUILDSET_PROPERTIES)
            .bind(id.0)
            .fetch_all(&mut *self.writing().await?)
            .await?;
        properties_of(&rows, id)
    }
}

impl Writer {
    /// Sets one property of a buildset after it was made (who cancelled its request, say),
    /// replacing a property of that name.
    pub async fn set_buildset_property(
        &self,
        id: BuildSetId,
        name: &str,
        value: &kiln_core::PropertyValue,
        source: &str,
    ) -> Result<()> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        sqlx::query("DELETE FROM buildset_properties WHERE buildsetid = $1 AND property_name = $2")
            .bind(id.0)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO buildset_properties (buildsetid, property_name, property_value) VALUES ($1, $2, $3)",
        )
        .bind(id.0)
        .bind(name)
        .bind(serde_json::json!([property_to_json(value), source]).to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a buildset with its source stamps, properties and build requests, all or nothing.
    pub async fn add_buildset(
        &self,
        bs: &NewBuildSet,
        record: impl Recorder<(BuildSetId, Vec<(BuilderId, BuildRequestId)>)>,
    ) -> Result<(BuildSetId, Vec<(BuilderId, BuildRequestId)>)> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        let r = sqlx::query(
            "INSERT INTO buildsets (external_idstring, reason, submitted_at, complete, parent_buildid, \
             parent_relationship, rebuilt_buildid) VALUES ($1, $2, $3, 0, $4, $5, $6) RETURNING id",
        )
        .bind(bs.external_idstring.clone())
        .bind(&bs.reason)
        .bind(bs.submitted_at)
        .bind(bs.parent_buildid)
        .bind(bs.parent_relationship.clone())
        .bind(bs.rebuilt_buildid)
        .fetch_one(&mut *tx)
        .await?;
        let bsid = r.int("id")?;
        for ss in &bs.sourcestamps {
            let ssid = Self::find_sourcestamp_id_in(&mut tx, ss, bs.submitted_at).await?;
            sqlx::query(
                "INSERT INTO buildset_sourcestamps (buildsetid, sourcestampid) VALUES ($1, $2)",
            )
            .bind(bsid)
            .bind(ssid.0)
            .execute(&mut *tx)
            .await?;
        }
        if !bs.properties.is_empty() {
            // All properties in one statement.
            let mut sql = String::from(
                "INSERT INTO buildset_properties (buildsetid, property_name, property_value) VALUES ",
            );
            for i in 0..bs.properties.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, ${}, ${})", i * 2 + 2, i * 2 + 3));
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(bsid);
            for (name, prop) in bs.properties.iter() {
                q = q.bind(name.clone()).bind(
                    serde_json::json!([property_to_json(&prop.value), prop.source]).to_string(),
                );
            }
            q.execute(&mut *tx).await?;
        }
        let mut brids = Vec::with_capacity(bs.builders.len());
        for (builder, priority) in &bs.builders {
            let r = sqlx::query(
                "INSERT INTO buildrequests (buildsetid, builderid, priority, complete, submitted_at, waited_for) \
                 VALUES ($1, $2, $3, 0, $4, $5) RETURNING id",
            )
            .bind(bsid)
            .bind(builder.0)
            .bind(*priority)
            .bind(bs.submitted_at)
            .bind(i64::from(bs.waited_for))
            .fetch_one(&mut *tx)
            .await?;
            brids.push((*builder, BuildRequestId(r.int("id")?)));
        }
        let added = (BuildSetId(bsid), brids);
        eventlog::insert(&mut tx, self.backend(), &record(&added)).await?;
        tx.commit().await?;
        Ok(added)
    }
}

/// A buildset's source stamps: $1 buildset.
pub(crate) const BUILDSET_SOURCESTAMPS: &str = "SELECT ss.id AS id, ss.branch AS branch, ss.revision AS revision, ss.patchid AS patchid, \
     ss.repository AS repository, ss.codebase AS codebase, ss.project AS project, ss.created_at AS created_at \
     FROM buildset_sourcestamps bss JOIN sourcestamps ss ON ss.id = bss.sourcestampid \
     WHERE bss.buildsetid = $1 ORDER BY bss.id";

/// A buildset's properties: $1 buildset.
pub(crate) const BUILDSET_PROPERTIES: &str =
    "SELECT property_name, property_value FROM buildset_properties WHERE buildsetid = $1";

/// Decodes rows of [`BUILDSET_PROPERTIES`].
pub(crate) fn properties_of(rows: &[AnyRow], id: BuildSetId) -> Result<Properties> {
    let mut props = Properties::new();
    for r in rows {
        let name = r.text("property_name")?;
        let raw = r.text("property_value")?;
        let parsed: serde_json::Value = serde_json::from_str(&raw)
            .map_err(|e| DbError::Corrupt(format!("buildset {id} property {name:?}: {e}")))?;
        let (value, source) = match parsed {
            serde_json::Value::Array(pair) if pair.len() == 2 => (
                json_to_property(&pair[0]),
                pair[1].as_str().unwrap_or_default().to_string(),
            ),
            other => (json_to_property(&other), String::new()),
        };
        props.set(name, value, &source);
    }
    Ok(props)
}
