//! Changes, their files and properties.

use std::collections::HashMap;

use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{ChangeId, Properties, SourceStampId};

use crate::builds::{BuildRow, build, build_columns};
use crate::eventlog::{self, Recorder};
use crate::json::{json_to_property, property_to_json};
use crate::listing::{IN_LIST_MAX, Page, SqlValue, placeholders};
use crate::rows::RowExt;
use crate::{Db, DbError, Result, Writer};

/// A change to store.
#[derive(Debug, Clone, Default)]
pub struct NewChange {
    pub author: String,
    pub committer: Option<String>,
    pub comments: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub revlink: Option<String>,
    pub when_timestamp: i64,
    pub category: Option<String>,
    pub repository: String,
    pub codebase: String,
    pub project: String,
    pub files: Vec<String>,
    pub properties: Properties,
    /// The version-control system the author's name comes from (`git`, `svn`, …): the kind of
    /// identity the change's user is found by. Not stored with the change.
    pub vcs: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    pub id: ChangeId,
    pub author: String,
    pub committer: Option<String>,
    pub comments: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub revlink: Option<String>,
    pub when_timestamp: i64,
    pub category: Option<String>,
    pub repository: String,
    pub codebase: String,
    pub project: String,
    pub sourcestampid: SourceStampId,
    pub parent_changeids: Vec<i64>,
    pub files: Vec<String>,
    pub properties: Properties,
}

const COLUMNS: &str = "changeid, author, committer, comments, branch, revision, revlink, when_timestamp, \
                       category, repository, codebase, project, sourcestampid, parent_changeids";

/// The most changes one build is blamed for: a builder that never succeeded would otherwise
/// blame its build for every change ever made on its branch.
pub const MAX_BLAMED: i64 = 200;

impl Db {
    /// The changes of these rows with their files and properties: two statements for them all.
    async fn change_rows(&self, rows: &[impl RowExt + Sync]) -> Result<Vec<ChangeRow>> {
        let ids = rows
            .iter()
            .map(|r| r.int("changeid"))
            .collect::<Result<Vec<i64>>>()?;
        let mut files: HashMap<i64, Vec<String>> = HashMap::new();
        let mut properties: HashMap<i64, Properties> = HashMap::new();
        for chunk in ids.chunks(IN_LIST_MAX) {
            let marks = placeholders(1, chunk.len());
            let sql =
                format!("SELECT changeid, filename FROM change_files WHERE changeid IN ({marks})");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&mut *self.reading().await?).await?;
            for f in rows {
                files
                    .entry(f.int("changeid")?)
                    .or_default()
                    .push(f.text("filename")?);
            }
            let sql = format!(
                "SELECT changeid, property_name, property_value FROM change_properties WHERE changeid IN ({marks})"
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                query = query.bind(*id);
            }
            let rows = query.fetch_all(&mut *self.reading().await?).await?;
            for p in rows {
                let id = p.int("changeid")?;
                let name = p.text("property_name")?;
                let parsed: serde_json::Value = serde_json::from_str(&p.text("property_value")?)
                    .map_err(|e| DbError::Corrupt(format!("change {id} property {name:?}: {e}")))?;
                let props = properties.entry(id).or_default();
                if let serde_json::Value::Array(pair) = &parsed
                    && pair.len() == 2
                {
                    props.set(
                        name,
                        json_to_property(&pair[0]),
                        pair[1].as_str().unwrap_or("Change"),
                    );
                    continue;
                }
                props.set(name, json_to_property(&parsed), "Change");
            }
        }
        rows.iter()
            .map(|r| {
                let id = r.int("changeid")?;
                let files = files.remove(&id).unwrap_or_default();
                let properties = properties.remove(&id).unwrap_or_default();
                change_row(r, files, properties)
            })
            .collect()
    }
}

fn change_row(r: &impl RowExt, files: Vec<String>, properties: Properties) -> Result<ChangeRow> {
    let id = r.int("changeid")?;
    Ok(ChangeRow {
        id: ChangeId(id),
        author: r.text("author")?,
        committer: r.opt_text("committer")?,
        comments: r.text("comments")?,
        branch: r.opt_text("branch")?,
        revision: r.opt_text("revision")?,
        revlink: r.opt_text("revlink")?,
        when_timestamp: r.int("when_timestamp")?,
        category: r.opt_text("category")?,
        repository: r.text("repository")?,
        codebase: r.text("codebase")?,
        project: r.text("project")?,
        sourcestampid: SourceStampId(r.int("sourcestampid")?),
        parent_changeids: r.opt_int("parent_changeids")?.into_iter().collect(),
        files,
        properties,
    })
}

impl Db {
    /// Changes with ids above `after`, oldest first, at most `limit` of them: what the schedulers
    /// read as changes arrive (no count of the whole table, unlike a listing).
    pub async fn changes_after(&self, after: ChangeId, limit: i64) -> Result<Vec<ChangeRow>> {
        let sql =
            format!("SELECT {COLUMNS} FROM changes WHERE changeid > $1 ORDER BY changeid LIMIT $2");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.0)
            .bind(limit)
            .fetch_all(&mut *self.reading().await?)
            .await?;
        self.change_rows(&rows).await
    }

    pub async fn list_changes(&self, page: &Page) -> Result<(Vec<ChangeRow>, i64)> {
        let (rows, total) = self.list_rows(COLUMNS, "changes", "changeid", page).await?;
        Ok((self.change_rows(&rows).await?, total))
    }
}

impl Writer {
    /// Stores a change with its source stamp, files and properties.
    pub async fn add_change(
        &self,
        c: &NewChange,
        now: i64,
        record: impl Recorder<ChangeId>,
    ) -> Result<ChangeId> {
        let ids = self
            .add_changes(std::slice::from_ref(c), now, |ids: &Vec<ChangeId>| {
                ids.iter().flat_map(&record).collect()
            })
            .await?;
        ids.first()
            .copied()
            .ok_or_else(|| DbError::Corrupt("storing a change returned no id".into()))
    }

    /// Stores changes in one transaction, in order: a push of thousands of commits is one write,
    /// and is stored whole or not at all.
    pub async fn add_changes(
        &self,
        changes: &[NewChange],
        now: i64,
        record: impl Recorder<Vec<ChangeId>>,
    ) -> Result<Vec<ChangeId>> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        let mut ids = Vec::with_capacity(changes.len());
        for c in changes {
            ids.push(Self::insert_change(&mut tx, c, now).await?);
        }
        eventlog::insert(&mut tx, self.backend(), &record(&ids)).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn insert_change(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        c: &NewChange,
        now: i64,
    ) -> Result<ChangeId> {
        let ss = SourceStamp {
            codebase: c.codebase.clone(),
            repository: c.repository.clone(),
            branch: c.branch.clone(),
            revision: c.revision.clone(),
            project: c.project.clone(),
            patch: None,
        };
        let ssid = Self::find_sourcestamp_id_in(tx, &ss, now).await?;
        let r = sqlx::query(
            "INSERT INTO changes (author, committer, comments, branch, revision, revlink, when_timestamp, category, \
             repository, codebase, project, sourcestampid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             RETURNING changeid",
        )
        .bind(&c.author)
        .bind(c.committer.clone())
        .bind(&c.comments)
        .bind(c.branch.clone())
        .bind(c.revision.clone())
        .bind(c.revlink.clone())
        .bind(c.when_timestamp)
        .bind(c.category.clone())
        .bind(&c.repository)
        .bind(&c.codebase)
        .bind(&c.project)
        .bind(ssid.0)
        .fetch_one(&mut **tx)
        .await?;
        let id = r.int("changeid")?;
        for f in &c.files {
            sqlx::query("INSERT INTO change_files (changeid, filename) VALUES ($1, $2)")
                .bind(id)
                .bind(f)
                .execute(&mut **tx)
                .await?;
        }
        for (name, prop) in c.properties.iter() {
            let value = serde_json::json!([property_to_json(&prop.value), prop.source]).to_string();
            sqlx::query("INSERT INTO change_properties (changeid, property_name, property_value) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(name)
                .bind(value)
                .execute(&mut **tx)
                .await?;
        }
        if !c.author.is_empty() {
            let kind = c.vcs.as_deref().unwrap_or("author");
            let uid = crate::users::find_or_create_in(tx, kind, &c.author).await?;
            sqlx::query("INSERT INTO change_users (changeid, uid) VALUES ($1, $2)")
                .bind(id)
                .bind(uid)
                .execute(&mut **tx)
                .await?;
        }
        Ok(ChangeId(id))
    }
}

/// A build that carries changes of one repository and branch, as a console reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct CoveringBuild {
    pub build: BuildRow,
    pub repository: String,
    pub branch: Option<String>,
    /// The newest of the changes it carries.
    pub newest_change: i64,
    /// The result of the build before it on its builder, if there is one and it finished.
    pub previous_results: Option<i64>,
}

impl Db {
    /// Each build on `builders` whose source stamps carry a change numbered `min_change` or
    /// later, once per repository and branch of those changes, ordered by build. A build includes
    /// every earlier change of its repository and branch, which is how a console tells which
    /// build first had a change; the previous build's result tells a new failure from an old one.
    pub async fn builds_with_changes(
        &self,
        builders: &[i64],
        min_change: i64,
    ) -> Result<Vec<CoveringBuild>> {
        if builders.is_empty() {
            return Ok(Vec::new());
        }
        let marks = (2..builders.len() + 2)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let columns = format!(
            "{}, ch.repository AS repository, ch.branch AS branch, MAX(ch.changeid) AS newest, \
             (SELECT p.results FROM builds p WHERE p.builderid = b.builderid \
              AND p.number = b.number - 1) AS previous_results",
            build_columns("b")
        );
        // From the few newest changes to their builds, in that order (CROSS JOIN tells SQLite).
        let rest = format!(
            "FROM changes ch CROSS JOIN buildset_sourcestamps bss CROSS JOIN buildrequests br CROSS JOIN builds b \
             WHERE bss.sourcestampid = ch.sourcestampid AND br.buildsetid = bss.buildsetid \
             AND b.buildrequestid = br.id AND ch.changeid >= $1 AND b.builderid IN ({marks}) \
             GROUP BY b.id, ch.repository, ch.branch ORDER BY b.id"
        );
        let binds: Vec<SqlValue> = std::iter::once(min_change)
            .chain(builders.iter().copied())
            .map(SqlValue::Int)
            .collect();
        self.select(&columns, &rest, &binds)
            .await?
            .iter()
            .map(|r| {
                Ok(CoveringBuild {
                    build: build(r)?,
                    repository: r.text("repository")?,
                    branch: r.opt_text("branch")?,
                    newest_change: r.int("newest")?,
                    previous_results: r.opt_int("previous_results")?,
                })
            })
            .collect()
    }

    /// The builds that built a change: those of the buildsets that include its source stamp.
    pub async fn change_build_ids(&self, change: ChangeId) -> Result<Vec<i64>> {
        sqlx::query(
            "SELECT DISTINCT b.id AS id FROM changes ch \
             JOIN buildset_sourcestamps bss ON bss.sourcestampid = ch.sourcestampid \
             JOIN buildrequests br ON br.buildsetid = bss.buildsetid \
             JOIN builds b ON b.buildrequestid = br.id WHERE ch.changeid = $1 ORDER BY b.id",
        )
        .bind(change.0)
        .fetch_all(&mut *self.reading().await?)
        .await?
        .iter()
        .map(|r| r.int("id"))
        .collect()
    }

    /// The changes a build is blamed for, as Buildbot's `getChangesForBuild`: for each of its
    /// source stamps that a change made, that change and those before it on the same branch,
    /// repository, project and codebase, back to the change the previous successful build of the
    /// builder was made of (all of them, up to [`MAX_BLAMED`], when there is none). So a build
    /// made of several changes, or after a failure, names everyone who may have broken it.
    /// The builds that `build` triggered: those of the buildsets it is the parent of.
    pub async fn triggered_build_ids(&self, build: kiln_core::BuildId) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT b.id AS id FROM buildsets bs \
             JOIN buildrequests br ON br.buildsetid = bs.id \
             JOIN builds b ON b.buildrequestid = br.id \
             WHERE bs.parent_buildid = $1 ORDER BY b.id",
        )
        .bind(build.0)
        .fetch_all(&mut *self.reading().await?)
        .await?;
        rows.iter().map(|r| r.int("id")).collect()
    }

    pub async fn build_change_ids(&self, build: kiln_core::BuildId) -> Result<Vec<i64>> {
        let Some(b) = self.get_build(build).await? else {
            return Ok(Vec::new());
        };
        let stamps = sqlx::query(
            "SELECT ss.id AS ssid, ss.codebase AS codebase, ss.repository AS repository, \
             ss.branch AS branch, ss.project AS project FROM builds b \
             JOIN buildrequests br ON br.id = b.buildrequestid \
             JOIN buildset_sourcestamps bss ON bss.buildsetid = br.buildsetid \
             JOIN sourcestamps ss ON ss.id = bss.sourcestampid WHERE b.id = $1 ORDER BY ss.id",
        )
        .bind(build.0)
        .fetch_all(&mut *self.reading().await?)
        .await?;
        let mut ids = Vec::new();
        for s in &stamps {
            let ssid = s.int("ssid")?;
            let (codebase, repository) = (s.text("codebase")?, s.text("repository")?);
            let (branch, project) = (s.opt_text("branch")?, s.text("project")?);
            let newest = sqlx::query(
                "SELECT MAX(changeid) AS changeid FROM changes WHERE sourcestampid = $1",
            )
            .bind(ssid)
            .fetch_one(&mut *self.reading().await?)
            .await?
            .opt_int("changeid")?;
            let Some(newest) = newest else {
                continue;
            };
            // The change the newest earlier successful build of this builder was made of, on
            // the same stream of changes.
            let since = sqlx::query(
                "SELECT MAX(ch.changeid) AS changeid FROM builds b \
                 JOIN buildrequests br ON br.id = b.buildrequestid \
                 JOIN buildset_sourcestamps bss ON bss.buildsetid = br.buildsetid \
                 JOIN sourcestamps ss ON ss.id = bss.sourcestampid \
                 JOIN changes ch ON ch.sourcestampid = ss.id \
                 WHERE b.builderid = $1 AND b.number < $2 AND b.results = 0 \
                 AND ss.codebase = $3 AND ss.repository = $4 \
                 AND (ss.branch = $5 OR (ss.branch IS NULL AND $5 IS NULL))",
            )
            .bind(b.builderid.0)
            .bind(b.number)
            .bind(&codebase)
            .bind(&repository)
            .bind(branch.clone())
            .fetch_one(&mut *self.reading().await?)
            .await?
            .opt_int("changeid")?
            .unwrap_or(0);
            let blamed = sqlx::query(
                "SELECT changeid FROM changes WHERE changeid <= $1 AND changeid > $2 \
                 AND codebase = $3 AND repository = $4 AND project = $5 \
                 AND (branch = $6 OR (branch IS NULL AND $6 IS NULL)) \
                 ORDER BY changeid DESC LIMIT $7",
            )
            .bind(newest)
            .bind(since)
            .bind(&codebase)
            .bind(&repository)
            .bind(&project)
            .bind(branch)
            .bind(MAX_BLAMED)
            .fetch_all(&mut *self.reading().await?)
            .await?;
            for r in &blamed {
                ids.push(r.int("changeid")?);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}
