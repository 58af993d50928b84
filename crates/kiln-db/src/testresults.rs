//! Test results: sets of results a step recorded, and the results, each naming its test through
//! the builder's `test_names` (and `test_code_paths`), as in Buildbot's schema.

use crate::batch::Batch;
use crate::listing::{Page, SqlValue};
use crate::rows::RowExt;
use crate::{Db, DbError, Result, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResultSetRow {
    pub id: i64,
    pub builderid: i64,
    pub buildid: i64,
    pub stepid: i64,
    pub description: Option<String>,
    pub category: String,
    pub value_unit: String,
    pub tests_passed: Option<i64>,
    pub tests_failed: Option<i64>,
    pub complete: bool,
}

/// A result with its test's name and code path, and the build it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResultRow {
    pub id: i64,
    pub builderid: i64,
    pub test_result_setid: i64,
    pub buildid: i64,
    pub test_name: Option<String>,
    pub test_code_path: Option<String>,
    pub line: Option<i64>,
    pub duration_ns: Option<i64>,
    pub value: String,
}

/// A completed set of results to record, for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTestResultSet {
    pub builderid: i64,
    pub buildid: i64,
    pub stepid: i64,
    pub description: String,
    /// Buildbot's category, `pass_fail` for tests that pass or fail.
    pub category: String,
    pub value_unit: String,
    pub tests_passed: i64,
    pub tests_failed: i64,
}

/// A result to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTestResult {
    pub test_name: Option<String>,
    pub test_code_path: Option<String>,
    pub line: Option<i64>,
    pub duration_ns: Option<i64>,
    pub value: String,
}

const SET_COLUMNS: &str = "id, builderid, buildid, stepid, description, category, value_unit, \
                           tests_passed, tests_failed, complete";

/// Results joined with their names, paths and set, so they can be filtered by test name and build.
pub(crate) const RESULTS_FROM: &str = "(SELECT r.id AS id, r.builderid AS builderid, \
     r.test_result_setid AS test_result_setid, s.buildid AS buildid, n.name AS test_name, \
     p.path AS test_code_path, r.line AS line, r.duration_ns AS duration_ns, r.value AS value \
     FROM test_results r JOIN test_result_sets s ON s.id = r.test_result_setid \
     LEFT JOIN test_names n ON n.id = r.test_nameid \
     LEFT JOIN test_code_paths p ON p.id = r.test_code_pathid) AS results";

const RESULT_COLUMNS: &str = "id, builderid, test_result_setid, buildid, test_name, \
                              test_code_path, line, duration_ns, value";

fn set(r: &(impl RowExt + Sync)) -> Result<TestResultSetRow> {
    Ok(TestResultSetRow {
        id: r.int("id")?,
        builderid: r.int("builderid")?,
        buildid: r.int("buildid")?,
        stepid: r.int("stepid")?,
        description: r.opt_text("description")?,
        category: r.text("category")?,
        value_unit: r.text("value_unit")?,
        tests_passed: r.opt_int("tests_passed")?,
        tests_failed: r.opt_int("tests_failed")?,
        complete: r.flag("complete")?,
    })
}

fn result(r: &(impl RowExt + Sync)) -> Result<TestResultRow> {
    Ok(TestResultRow {
        id: r.int("id")?,
        builderid: r.int("builderid")?,
        test_result_setid: r.int("test_result_setid")?,
        buildid: r.int("buildid")?,
        test_name: r.opt_text("test_name")?,
        test_code_path: r.opt_text("test_code_path")?,
        line: r.opt_int("line")?,
        duration_ns: r.opt_int("duration_ns")?,
        value: r.text("value")?,
    })
}

fn opt_text(v: &Option<String>) -> SqlValue {
    v.clone().map_or(SqlValue::Null, SqlValue::Text)
}

fn opt_int(v: Option<i64>) -> SqlValue {
    v.map_or(SqlValue::Null, SqlValue::Int)
}

impl Db {
    pub async fn list_test_result_sets(&self, page: &Page) -> Result<(Vec<TestResultSetRow>, i64)> {
        let (rows, total) = self
            .list_rows(SET_COLUMNS, "test_result_sets", "id", page)
            .await?;
        Ok((rows.iter().map(set).collect::<Result<_>>()?, total))
    }

    /// Results, filterable by set, build, builder and test name.
    pub async fn list_test_results(&self, page: &Page) -> Result<(Vec<TestResultRow>, i64)> {
        let (rows, total) = self
            .list_rows(RESULT_COLUMNS, RESULTS_FROM, "id", page)
            .await?;
        Ok((rows.iter().map(result).collect::<Result<_>>()?, total))
    }
}

impl Writer {
    /// Records a step's completed set of results, naming each test in the builder's shared
    /// tables, as one transaction; returns the set's id.
    pub async fn add_test_result_set(
        &self,
        set: &NewTestResultSet,
        results: &[NewTestResult],
    ) -> Result<i64> {
        let mut batch = Batch::default();
        batch.push(
            "INSERT INTO test_result_sets \
             (builderid, buildid, stepid, description, category, value_unit, tests_passed, \
              tests_failed, complete) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1) RETURNING id",
            vec![
                SqlValue::Int(set.builderid),
                SqlValue::Int(set.buildid),
                SqlValue::Int(set.stepid),
                SqlValue::Text(set.description.clone()),
                SqlValue::Text(set.category.clone()),
                SqlValue::Text(set.value_unit.clone()),
                SqlValue::Int(set.tests_passed),
                SqlValue::Int(set.tests_failed),
            ],
        );
        for r in results {
            if let Some(name) = &r.test_name {
                batch.push(
                    "INSERT INTO test_names (builderid, name) VALUES ($1, $2) \
                     ON CONFLICT (builderid, name) DO NOTHING",
                    vec![SqlValue::Int(set.builderid), SqlValue::Text(name.clone())],
                );
            }
            if let Some(path) = &r.test_code_path {
                batch.push(
                    "INSERT INTO test_code_paths (builderid, path) VALUES ($1, $2) \
                     ON CONFLICT (builderid, path) DO NOTHING",
                    vec![SqlValue::Int(set.builderid), SqlValue::Text(path.clone())],
                );
            }
            // The set was inserted earlier in this transaction; a step records one set, so the
            // newest set of the step is this one.
            batch.push(
                "INSERT INTO test_results \
                 (builderid, test_result_setid, test_nameid, test_code_pathid, line, duration_ns, value) \
                 VALUES ($1, (SELECT max(id) FROM test_result_sets WHERE stepid = $2), \
                 (SELECT id FROM test_names WHERE builderid = $1 AND name = $3), \
                 (SELECT id FROM test_code_paths WHERE builderid = $1 AND path = $4), \
                 $5, $6, $7)",
                vec![
                    SqlValue::Int(set.builderid),
                    SqlValue::Int(set.stepid),
                    opt_text(&r.test_name),
                    opt_text(&r.test_code_path),
                    opt_int(r.line),
                    opt_int(r.duration_ns),
                    SqlValue::Text(r.value.clone()),
                ],
            );
        }
        let rows = batch.run(self).await?;
        rows.first()
            .ok_or_else(|| DbError::Corrupt("adding a test result set returned no row".into()))?
            .int("id")
    }
}
