//! Build requests and their claims. A claim is a row in `buildrequest_claims`, whose unique index
//! on the request id makes exactly one master win.

use kiln_core::{BuildRequestId, BuildSetId, BuilderId, MasterId, Results};
use sqlx::any::AnyRow;

use crate::batch::{Batch, has_column};
use crate::eventlog::{self, EventRecord, Recorder};
use crate::listing::{Page, SqlValue};
use crate::rows::RowExt;
use crate::{Db, Result, Writer};

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
/// [`FROM`] without its claims, which a request has at most one of: it has the same rows, and
/// counting them needs no join while no filter reads a claim (column `c.…`).
pub const UNJOINED: &str = "buildrequests br";
pub(crate) const COLUMNS: &str = "br.id AS id, br.buildsetid AS buildsetid, br.builderid AS builderid, br.priority AS priority, \
    br.complete AS complete, br.results AS results, br.submitted_at AS submitted_at, br.complete_at AS complete_at, \
    br.waited_for AS waited_for, c.masterid AS claimed_by_masterid, c.claimed_at AS claimed_at";

pub(crate) fn request(r: &(impl RowExt + Sync)) -> Result<BuildRequestRow> {
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
            .fetch_all(&mut *self.reading().await?)
            .await?;
        rows.iter().map(request).collect()
    }

    /// For each `(builder, limit)`, the `limit` most urgent unclaimed requests of that builder:
    /// highest priority, then oldest. One statement reads every builder's queue, each a short range
    /// read of the `buildrequests_queue` index whatever the queue's length.
    pub async fn pending_for_builders(
        &self,
        builders: &[(BuilderId, i64)],
    ) -> Result<Vec<BuildRequestRow>> {
        if builders.is_empty() {
            return Ok(Vec::new());
        }
        let parts: Vec<String> = (0..builders.len())
            .map(|i| {
                format!(
                    "SELECT * FROM (SELECT {COLUMNS} FROM {FROM} WHERE br.builderid = ${} AND br.complete = 0 \
                     AND c.brid IS NULL ORDER BY br.priority DESC, br.submitted_at, br.id LIMIT ${}) AS q{i}",
                    2 * i + 1,
                    2 * i + 2
                )
            })
            .collect();
        let mut query = sqlx::query(sqlx::AssertSqlSafe(parts.join(" UNION ALL ")));
        for (builder, limit) in builders {
            query = query.bind(builder.0).bind((*limit).max(1));
        }
        // The distributor's read belongs to the write path, so it uses the writers' connection,
        // whose page cache every write keeps warm.
        let rows = query.fetch_all(&mut *self.writing().await?).await?;
        rows.iter().map(request).collect()
    }

    /// How many of a buildset's requests completed with FAILURE or EXCEPTION.
    pub async fn failed_requests(&self, buildset: BuildSetId) -> Result<i64> {
        sqlx::query(
            "SELECT COUNT(*) AS n FROM buildrequests WHERE buildsetid = $1 AND complete = 1 AND results IN (2, 4)",
        )
        .bind(buildset.0)
        .fetch_one(&mut *self.writing().await?)
        .await?
        .int("n")
    }

    /// The incomplete, unclaimed requests on `builder` older than `below`, oldest first: the ones a
    /// new request may collapse.
    pub async fn older_unclaimed(
        &self,
        builder: BuilderId,
        below: BuildRequestId,
    ) -> Result<Vec<BuildRequestRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE br.builderid = $1 AND br.id < $2 AND br.complete = 0 \
             AND c.brid IS NULL ORDER BY br.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(builder.0)
            .bind(below.0)
            .fetch_all(&mut *self.writing().await?)
            .await?;
        rows.iter().map(request).collect()
    }
}

impl Writer {
    /// Releases claims so that the requests are built again.
    pub async fn unclaim_buildrequests(
        &self,
        ids: &[BuildRequestId],
        record: impl Recorder<()>,
    ) -> Result<()> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
        for id in ids {
            sqlx::query("DELETE FROM buildrequest_claims WHERE brid = $1")
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
        }
        eventlog::insert(&mut tx, self.backend(), &record(&())).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Releases every claim `master` holds on incomplete requests, returning the released ids.
    pub async fn unclaim_master_requests(
        &self,
        master: MasterId,
        record: impl Recorder<Vec<BuildRequestId>>,
    ) -> Result<Vec<BuildRequestId>> {
        let mut w = self.writing().await?;
        let mut tx = w.begin().await?;
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
        eventlog::insert(&mut tx, self.backend(), &record(&ids)).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Completes requests with `results`, and each buildset all of whose requests are then
    /// complete, with the worst of their results. A request completed without a claim (a cancel) is
    /// claimed by `master` at the same time, as Buildbot does. It is all one transaction.
    pub async fn complete_buildrequests(
        &self,
        ids: &[BuildRequestId],
        results: Results,
        master: MasterId,
        now: i64,
        record: impl Recorder<Completion>,
    ) -> Result<Completion> {
        let mut batch = Batch::default();
        for id in ids {
            push_completion(&mut batch, *id, results, master, now);
        }
        batch.run_recorded(self, recorded(record)).await
    }

    /// Completes requests as SKIPPED, each only if no build has it: a request claimed meanwhile
    /// (started here or by another master) is left alone. Their buildsets complete as usual.
    pub async fn skip_unclaimed(
        &self,
        ids: &[BuildRequestId],
        master: MasterId,
        now: i64,
        record: impl Recorder<Completion>,
    ) -> Result<Completion> {
        let mut batch = Batch::default();
        for id in ids {
            batch.push(
                CLAIM_IF_UNCLAIMED,
                vec![
                    SqlValue::Int(id.0),
                    SqlValue::Int(master.0),
                    SqlValue::Int(now),
                ],
            );
            batch.push(
                SKIP_UNSTARTED,
                vec![
                    SqlValue::Int(Results::Skipped.code()),
                    SqlValue::Int(now),
                    SqlValue::Int(id.0),
                    SqlValue::Int(master.0),
                ],
            );
            batch.push(
                COMPLETE_BUILDSET,
                vec![SqlValue::Int(now), SqlValue::Int(id.0)],
            );
        }
        batch.run_recorded(self, recorded(record)).await
    }

    pub async fn set_buildrequest_priority(
        &self,
        id: BuildRequestId,
        priority: i64,
    ) -> Result<bool> {
        let mut w = self.writing().await?;
        let r =
            sqlx::query("UPDATE buildrequests SET priority = $1 WHERE id = $2 AND complete = 0")
                .bind(priority)
                .bind(id.0)
                .execute(&mut *w)
                .await?;
        Ok(r.rows_affected() > 0)
    }
}

/// What completing requests completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completion {
    /// Each request that was incomplete, with its buildset.
    pub requests: Vec<(BuildRequestId, BuildSetId)>,
    /// Each buildset that became complete, with its results.
    pub buildsets: Vec<(BuildSetId, Results)>,
}

/// Claims the request for `master` if nobody holds it and it is incomplete: $1 request, $2 master,
/// $3 time.
pub(crate) const CLAIM_IF_UNCLAIMED: &str = "INSERT INTO buildrequest_claims (brid, masterid, claimed_at) \
    SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM buildrequest_claims WHERE brid = $1) \
    AND EXISTS (SELECT 1 FROM buildrequests WHERE id = $1 AND complete = 0)";

/// $1 results, $2 time, $3 request.
const COMPLETE_REQUEST: &str = "UPDATE buildrequests SET complete = 1, results = $1, complete_at = $2 \
    WHERE id = $3 AND complete = 0 RETURNING id AS completed_brid, buildsetid";

/// Completes a request claimed by this master ($4) that no unfinished build runs: $1 results,
/// $2 time, $3 request. A build and its claim are written together, so a claimed request without
/// an unfinished build is one this master has just claimed to complete.
const SKIP_UNSTARTED: &str = "UPDATE buildrequests SET complete = 1, results = $1, complete_at = $2 \
    WHERE id = $3 AND complete = 0 \
    AND EXISTS (SELECT 1 FROM buildrequest_claims WHERE brid = $3 AND masterid = $4) \
    AND NOT EXISTS (SELECT 1 FROM builds WHERE buildrequestid = $3 AND complete_at IS NULL) \
    RETURNING id AS completed_brid, buildsetid";

/// Completes the request's buildset if none of its requests is still incomplete: $1 time,
/// $2 request. The results are the worst of the requests' in Buildbot's order (worst first:
/// CANCELLED, RETRY, EXCEPTION, FAILURE, WARNINGS, SUCCESS, SKIPPED), starting from SUCCESS as
/// Buildbot's fold does, so a buildset of skipped requests succeeds.
const COMPLETE_BUILDSET: &str = "UPDATE buildsets SET complete = 1, complete_at = $1, results = \
    (SELECT CASE WHEN r.results = 3 THEN 0 ELSE r.results END FROM buildrequests r WHERE r.buildsetid = buildsets.id \
     ORDER BY CASE r.results WHEN 3 THEN 0 WHEN 0 THEN 1 WHEN 1 THEN 2 WHEN 2 THEN 3 ELSE r.results END DESC LIMIT 1) \
    WHERE id = (SELECT buildsetid FROM buildrequests WHERE id = $2) AND complete = 0 \
    AND NOT EXISTS (SELECT 1 FROM buildrequests o WHERE o.buildsetid = buildsets.id AND o.complete = 0) \
    RETURNING id AS completed_bsid, results AS buildset_results";

/// Adds to `batch` the completion of one request and, if it was the last, of its buildset.
pub(crate) fn push_completion(
    batch: &mut Batch,
    id: BuildRequestId,
    results: Results,
    master: MasterId,
    now: i64,
) {
    batch.push(
        CLAIM_IF_UNCLAIMED,
        vec![
            SqlValue::Int(id.0),
            SqlValue::Int(master.0),
            SqlValue::Int(now),
        ],
    );
    batch.push(
        COMPLETE_REQUEST,
        vec![
            SqlValue::Int(results.code()),
            SqlValue::Int(now),
            SqlValue::Int(id.0),
        ],
    );
    batch.push(
        COMPLETE_BUILDSET,
        vec![SqlValue::Int(now), SqlValue::Int(id.0)],
    );
}

/// Reads what [`push_completion`]'s statements returned.
/// Reads what a completing batch completed, and the events it records.
pub(crate) fn recorded(
    record: impl Recorder<Completion>,
) -> impl FnOnce(&[AnyRow]) -> Result<(Completion, Vec<EventRecord>)> {
    move |rows| {
        let done = completion_of(rows)?;
        let records = record(&done);
        Ok((done, records))
    }
}

pub(crate) fn completion_of(rows: &[AnyRow]) -> Result<Completion> {
    let mut done = Completion::default();
    for r in rows {
        if has_column(r, "completed_brid") {
            done.requests.push((
                BuildRequestId(r.int("completed_brid")?),
                BuildSetId(r.int("buildsetid")?),
            ));
        } else if has_column(r, "completed_bsid") {
            let code = r.int("buildset_results")?;
            done.buildsets.push((
                BuildSetId(r.int("completed_bsid")?),
                Results::from_code(code).unwrap_or(Results::Exception),
            ));
        }
    }
    Ok(done)
}
