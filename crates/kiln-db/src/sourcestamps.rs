//! Source stamps and patches. A source stamp is stored once and shared: its row is found by a hash
//! of everything that identifies it, as Buildbot does.

use std::collections::HashMap;

use base64::Engine as _;
use kiln_core::SourceStampId;
use kiln_core::sourcestamp::SourceStamp;

use crate::listing::{Filter, FilterOp, IN_LIST_MAX, Page, SqlValue};
use crate::rows::{RowExt, name_hash};
use crate::{Db, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchRow {
    pub id: i64,
    pub level: i64,
    /// The patch body, base64-encoded as Buildbot stores and serves it.
    pub body_base64: String,
    pub author: Option<String>,
    pub comment: Option<String>,
    pub subdir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStampRow {
    pub id: SourceStampId,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub project: String,
    pub repository: String,
    pub codebase: String,
    pub created_at: i64,
    pub patch: Option<PatchRow>,
}

impl SourceStampRow {
    /// The source stamp as the core models it, with its patch decoded.
    pub fn to_sourcestamp(&self) -> SourceStamp {
        SourceStamp {
            codebase: self.codebase.clone(),
            repository: self.repository.clone(),
            branch: self.branch.clone(),
            revision: self.revision.clone(),
            project: self.project.clone(),
            patch: self.patch.as_ref().and_then(|p| {
                base64::engine::general_purpose::STANDARD
                    .decode(&p.body_base64)
                    .ok()
                    .map(|body| kiln_core::sourcestamp::Patch {
                        level: p.level,
                        body,
                        subdir: p.subdir.clone(),
                        author: p.author.clone(),
                        comment: p.comment.clone(),
                    })
            }),
        }
    }
}

pub(crate) const COLUMNS: &str =
    "id, branch, revision, patchid, repository, codebase, project, created_at";

/// The columns of a patch, as a literal for `concat!`.
macro_rules! patch_columns {
    () => {
        "id, patchlevel, patch_base64, patch_author, patch_comment, subdir"
    };
}

/// The columns of a patch.
pub(crate) const PATCH_COLUMNS: &str = patch_columns!();

pub(crate) fn patch(p: &(impl RowExt + Sync)) -> Result<PatchRow> {
    Ok(PatchRow {
        id: p.int("id")?,
        level: p.int("patchlevel")?,
        body_base64: p.text("patch_base64")?,
        author: p.opt_text("patch_author")?,
        comment: p.opt_text("patch_comment")?,
        subdir: p.opt_text("subdir")?,
    })
}

/// A source stamp from its row and its patch, read apart.
pub(crate) fn sourcestamp(
    r: &(impl RowExt + Sync),
    patch: Option<PatchRow>,
) -> Result<SourceStampRow> {
    Ok(SourceStampRow {
        id: SourceStampId(r.int("id")?),
        branch: r.opt_text("branch")?,
        revision: r.opt_text("revision")?,
        project: r.text("project")?,
        repository: r.text("repository")?,
        codebase: r.text("codebase")?,
        created_at: r.int("created_at")?,
        patch,
    })
}

impl Db {
    /// The newest `limit` source stamps that builds on `builders` were built from, newest first,
    /// on `branch` if one is given, each with its builds on them: the columns of a grid. The
    /// newest builds are read from the end of the builds table, at most `limit` per builder,
    /// so the cost does not grow with the history.
    pub async fn sourcestamps_built(
        &self,
        builders: &[i64],
        branch: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(SourceStampRow, Vec<kiln_core::BuildId>)>> {
        if builders.is_empty() {
            return Ok(Vec::new());
        }
        let marks = (3..builders.len() + 3)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let branch_test = if branch.is_some() {
            "ss.branch = $2"
        } else {
            "$2 = ''"
        };
        // `+b.builderid`: the builds are read newest first, not gathered by builder and sorted.
        let sql = format!(
            "SELECT ss.id AS ssid, b.id AS buildid FROM builds b \
             CROSS JOIN buildrequests br CROSS JOIN buildset_sourcestamps bss CROSS JOIN sourcestamps ss \
             WHERE br.id = b.buildrequestid AND bss.buildsetid = br.buildsetid AND ss.id = bss.sourcestampid \
             AND +b.builderid IN ({marks}) AND {branch_test} ORDER BY b.id DESC LIMIT $1"
        );
        let reach = limit.saturating_mul(builders.len() as i64).max(limit);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(reach)
            .bind(branch.unwrap_or_default().to_string());
        for b in builders {
            query = query.bind(*b);
        }
        let rows = query.fetch_all(&mut *self.reading().await?).await?;
        // Stamps in the order of their newest build; the first `limit` of them.
        let mut out: Vec<(SourceStampId, Vec<kiln_core::BuildId>)> = Vec::new();
        for r in &rows {
            let ss = SourceStampId(r.int("ssid")?);
            let build = kiln_core::BuildId(r.int("buildid")?);
            if let Some((_, builds)) = out.iter_mut().find(|(s, _)| *s == ss) {
                builds.push(build);
            } else if (out.len() as i64) < limit {
                out.push((ss, vec![build]));
            }
        }
        for (_, builds) in &mut out {
            builds.sort();
        }
        let ids: Vec<SourceStampId> = out.iter().map(|(s, _)| *s).collect();
        let stamps = self.get_sourcestamps(&ids).await?;
        Ok(out
            .into_iter()
            .filter_map(|(id, builds)| {
                stamps
                    .iter()
                    .find(|s| s.id == id)
                    .map(|s| (s.clone(), builds))
            })
            .collect())
    }

    pub(crate) async fn sourcestamp_row(&self, r: &(impl RowExt + Sync)) -> Result<SourceStampRow> {
        let patch = match r.opt_int("patchid")? {
            None => None,
            Some(pid) => sqlx::query(concat!(
                "SELECT ",
                patch_columns!(),
                " FROM patches WHERE id = $1"
            ))
            .bind(pid)
            .fetch_optional(&mut *self.reading().await?)
            .await?
            .map(|p| patch(&p))
            .transpose()?,
        };
        sourcestamp(r, patch)
    }

    pub async fn list_sourcestamps(&self, page: &Page) -> Result<(Vec<SourceStampRow>, i64)> {
        let (rows, total) = self.list_rows(COLUMNS, "sourcestamps", "id", page).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.sourcestamp_row(r).await?);
        }
        Ok((out, total))
    }

    /// Whether any change is attached to the source stamp.
    pub async fn sourcestamp_has_changes(&self, id: SourceStampId) -> Result<bool> {
        Ok(
            sqlx::query("SELECT 1 AS one FROM changes WHERE sourcestampid = $1 LIMIT 1")
                .bind(id.0)
                .fetch_optional(&mut *self.writing().await?)
                .await?
                .is_some(),
        )
    }

    /// The source stamps with these ids, in the order asked (an unknown id is left out), read
    /// with one statement for each few thousand ids.
    pub async fn get_sourcestamps(&self, ids: &[SourceStampId]) -> Result<Vec<SourceStampRow>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_LIST_MAX) {
            let page = Page {
                filters: vec![Filter {
                    column: "id",
                    op: FilterOp::In,
                    values: chunk.iter().map(|id| SqlValue::Int(id.0)).collect(),
                }],
                ..Page::default()
            };
            let (rows, _) = self.list_sourcestamps(&page).await?;
            let by_id: HashMap<SourceStampId, &SourceStampRow> =
                rows.iter().map(|r| (r.id, r)).collect();
            out.extend(
                chunk
                    .iter()
                    .filter_map(|id| by_id.get(id).map(|r| (*r).clone())),
            );
        }
        Ok(out)
    }
}

impl Writer {
    /// Stores `ss` unless an identical source stamp exists, and returns its id.
    pub async fn find_sourcestamp_id(&self, ss: &SourceStamp, now: i64) -> Result<SourceStampId> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        let id = Self::find_sourcestamp_id_in(&mut tx, ss, now).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(crate) async fn find_sourcestamp_id_in(
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        ss: &SourceStamp,
        now: i64,
    ) -> Result<SourceStampId> {
        let patch_b64 = ss
            .patch
            .as_ref()
            .map(|p| base64::engine::general_purpose::STANDARD.encode(&p.body));
        let key = format!(
            "{}\0{}\0{}\0{}\0{}\0{}\0{}",
            ss.branch.as_deref().unwrap_or("\u{1}"),
            ss.revision.as_deref().unwrap_or("\u{1}"),
            ss.repository,
            ss.codebase,
            ss.project,
            patch_b64.as_deref().unwrap_or("\u{1}"),
            ss.patch.as_ref().map_or(String::new(), |p| format!(
                "{}:{}",
                p.level,
                p.subdir.as_deref().unwrap_or("")
            )),
        );
        let hash = name_hash(&key);
        if let Some(r) = sqlx::query("SELECT id FROM sourcestamps WHERE ss_hash = $1")
            .bind(&hash)
            .fetch_optional(&mut **tx)
            .await?
        {
            return Ok(SourceStampId(r.int("id")?));
        }
        let patchid = match (&ss.patch, patch_b64) {
            (Some(p), Some(b64)) => Some(
                sqlx::query("INSERT INTO patches (patchlevel, patch_base64, patch_author, patch_comment, subdir) VALUES ($1, $2, $3, $4, $5) RETURNING id")
                    .bind(p.level)
                    .bind(b64)
                    .bind(p.author.clone())
                    .bind(p.comment.clone())
                    .bind(p.subdir.clone())
                    .fetch_one(&mut **tx)
                    .await?
                    .int("id")?,
            ),
            _ => None,
        };
        let r = sqlx::query(
            "INSERT INTO sourcestamps (ss_hash, branch, revision, patchid, repository, codebase, project, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&hash)
        .bind(ss.branch.clone())
        .bind(ss.revision.clone())
        .bind(patchid)
        .bind(&ss.repository)
        .bind(&ss.codebase)
        .bind(&ss.project)
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        Ok(SourceStampId(r.int("id")?))
    }
}
