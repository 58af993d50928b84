//! Build requests and their claims. A claim is a row in `buildrequest_claims`, whose unique index
//! on the request id makes exactly one master win.

use kiln_core::{BuildRequestId, BuildSetId, BuilderId, MasterId, Results};
use sqlx::any::AnyRow;

use crate::listing::{Page, SqlValue};
use crate::rows::RowExt;
use crate::{Db, DbError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildRequestRow {
    pub id: BuildRequestId,
    pub buildsetid: BuildSetId,
    pub builderid: i64,
    pub priority: i64,
    pub complete: bool,
    pub results: Option<i64>,
    pub submitted_at: i64,
    pub complete_at: Option<i64>,
    pub waited_for: bool,
    pub claimed_by_masterid: Option<i64>,
    pub claimed_at: Option<i64>,
}

/// The columns, as the API's filters see them: `claimed_at` and the claiming master come from the
/// claims table.
pub const FROM: &str = "buildrequests br LEFT JOIN buildrequest_claims c ON c.brid = br.id";
const COLUMNS: &str = "br.id AS id, br.buildsetid AS buildsetid, br.builderid AS builderid, br.priority AS priority, \
    br.complete AS complete, br.results AS results, br.submitted_at AS submitted_at, br.complete_at AS complete_at, \
    br.waited_for AS waited_for, c.masterid AS claimed_by_masterid, c.claimed_at AS claimed_at";

fn request(r: &AnyRow) -> Result<BuildRequestRow> {
    Ok(BuildRequestRow {
        id: BuildRequestId(r.int("id")?),
        buildsetid: BuildSetId(r.int("buildsetid")?),
        builderid: r.int("builderid")?,
        priority: r.int("priority")?,
        complete: r.flag("complete")?,
        results: r.opt_int("results")?,
        submitted_at: r.int("submitted_at")?,
        complete_at: r.opt_int("complete_at")?,
        waited_for: r.flag("waited_for")?,
        claimed_by_masterid: r.opt_int("claimed_by_masterid")?,
        claimed_at: r.opt_int("claimed_at")?,
    })
}

impl Db {
    pub async fn list_buildrequests(&self, page: &Page) -> Result<(Vec<BuildRequestRow>, i64)> {
        let (rows, total) = self.list_rows(COLUMNS, FROM, "br.id", page).await?;
        Ok((rows.iter().map(request).collect::<Result<_>>()?, total))
    }

    pub async fn get_buildrequest(&self, id: BuildRequestId) -> Result<Option<BuildRequestRow>> {
        let page = Page::eq("br.id", SqlValue::Int(id.0));
        Ok(self.list_buildrequests(&page).await?.0.into_iter().next())
    }

    /// Incomplete requests that no master has claimed, oldest first. For the API and tests; the
    /// distributor reads [`Db::pending_for_builder`] instead.
    pub async fn unclaimed_buildrequests(&self) -> Result<Vec<BuildRequestRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE br.complete = 0 AND c.brid IS NULL ORDER BY br.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(request).collect()
    }

    /// The `limit` most urgent unclaimed requests of one builder: highest priority, then oldest.
    /// The `buildrequests_queue` index makes this a short range read whatever the queue's length.
    pub async fn pending_for_builder(
        &self,
        builder: BuilderId,
        limit: i64,
    ) -> Result<Vec<BuildRequestRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE br.builderid = $1 AND br.complete = 0 AND c.brid IS NULL \
             ORDER BY br.priority DESC, br.submitted_at, br.id LIMIT $2"
        );
        // The distributor's read belongs to the write path, so it uses the writers' connection,
        // whose page cache every write keeps warm.
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(builder.0)
            .bind(limit.max(1))
            .fetch_all(&self.wpool)
            .await?;
        rows.iter().map(request).collect()
    }

    /// Claims a request for `master`. Fails with [`DbError::AlreadyClaimed`] if another claim exists.
    pub async fn claim_buildrequest(
        &self,
        id: BuildRequestId,
        master: MasterId,
        now: i64,
    ) -> Result<()> {
        let _w = self.write_guard().await;
        let inserted = sqlx::query(
            "INSERT INTO buildrequest_claims (brid, masterid, claimed_at) \
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM buildrequest_claims WHERE brid = $1) \
             AND EXISTS (SELECT 1 FROM buildrequests WHERE id = $1 AND complete = 0)",
        )
        .bind(id.0)
        .bind(master.0)
        .bind(now)
        .execute(&self.wpool)
        .await;
        match inserted {
            Ok(r) if r.rows_affected() == 1 => Ok(()),
            Ok(_) => Err(DbError::AlreadyClaimed(id.0)),
            // A concurrent claim from another master loses on the unique index.
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(DbError::AlreadyClaimed(id.0))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Releases claims so that the requests are built again.
    pub async fn unclaim_buildrequests(&self, ids: &[BuildRequestId]) -> Result<()> {
        let _w = self.write_guard().await;
        let mut tx = self.wpool.begin().await?;
        for id in ids {
            sqlx::query("DELETE FROM buildrequest_claims WHERE brid = $1")
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Releases every claim `master` holds on incomplete requests, returning the released ids.
    pub async fn unclaim_master_requests(&self, master: MasterId) -> Result<Vec<BuildRequestId>> {
        let _w = self.write_guard().await;
        let mut tx = self.wpool.begin().await?;
        let ids: Vec<BuildRequestId> = sqlx::query(
            "SELECT c.brid AS brid FROM buildrequest_claims c JOIN buildrequests br ON br.id = c.brid \
             WHERE c.masterid = $1 AND br.complete = 0 ORDER BY c.brid",
        )
        .bind(master.0)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok(BuildRequestId(r.int("brid")?)))
        .collect::<Result<_>>()?;
        for id in &ids {
            sqlx::query("DELETE FROM buildrequest_claims WHERE brid = $1")
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Completes requests with `results`. A request completed without a claim (a cancel) is claimed
    /// by `master` at the same time, as Buildbot does. Returns the requests that were incomplete, each
    /// with its buildset.
    pub async fn complete_buildrequests(
        &self,
        ids: &[BuildRequestId],
        results: Results,
        master: MasterId,
        now: i64,
    ) -> Result<Vec<(BuildRequestId, BuildSetId)>> {
        // No transaction: each request is completed by one statement, and the claim recorded after it
        // only matters to requests that are still incomplete.
        let _w = self.write_guard().await;
        let mut changed = Vec::new();
        for id in ids {
            let r = sqlx::query(
                "UPDATE buildrequests SET complete = 1, results = $1, complete_at = $2 WHERE id = $3 AND complete = 0 \
                 RETURNING buildsetid",
            )
            .bind(results.code())
            .bind(now)
            .bind(id.0)
            .fetch_optional(&self.wpool)
            .await?;
            if let Some(row) = r {
                changed.push((*id, BuildSetId(row.int("buildsetid")?)));
                sqlx::query(
                    "INSERT INTO buildrequest_claims (brid, masterid, claimed_at) SELECT $1, $2, $3 \
                     WHERE NOT EXISTS (SELECT 1 FROM buildrequest_claims WHERE brid = $1)",
                )
                .bind(id.0)
                .bind(master.0)
                .bind(now)
                .execute(&self.wpool)
                .await?;
            }
        }
        Ok(changed)
    }

    pub async fn set_buildrequest_priority(
        &self,
        id: BuildRequestId,
        priority: i64,
    ) -> Result<bool> {
        let _w = self.write_guard().await;
        let r =
            sqlx::query("UPDATE buildrequests SET priority = $1 WHERE id = $2 AND complete = 0")
                .bind(priority)
                .bind(id.0)
                .execute(&self.wpool)
                .await?;
        Ok(r.rows_affected() > 0)
    }

    /// The results of every request of a buildset, `None` while any is incomplete.
    pub async fn buildset_request_results(&self, bsid: BuildSetId) -> Result<Option<Vec<Results>>> {
        // Read right after completing a request, on the writers' connection (see above).
        let rows = sqlx::query("SELECT complete, results FROM buildrequests WHERE buildsetid = $1")
            .bind(bsid.0)
            .fetch_all(&self.wpool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if !r.flag("complete")? {
                return Ok(None);
            }
            let code = r.opt_int("results")?.unwrap_or(Results::Success.code());
            out.push(Results::from_code(code).unwrap_or(Results::Exception));
        }
        Ok(Some(out))
    }
}
