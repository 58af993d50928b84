//! GET: resolving a path to a resource or collection, then fetching it with the query's options.

use axum::http::HeaderMap;
use axum::response::Response;
use kiln_core::{BuildId, LogId, SourceStampId, StepId};
use kiln_db::listing::{Filter, FilterOp, SqlValue};
use serde_json::{Value, json};

use super::query::{self, Field, Kind, Query, f};
use super::{ApiError, raw, shapes};
use kiln_api::Services;

/// A kind of resource: its plural name, its fields, and the column behind each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    Builders,
    Builds,
    Steps,
    Logs,
    BuildRequests,
    BuildSets,
    SourceStamps,
    Changes,
    Workers,
    Masters,
    ForceSchedulers,
    Schedulers,
    ChangeSources,
    Projects,
    TestResultSets,
    TestResults,
}

const BUILDS: &[Field] = &[
    f("buildid", "id", Kind::Int),
    f("number", "number", Kind::Int),
    f("builderid", "builderid", Kind::Int),
    f("buildrequestid", "buildrequestid", Kind::Int),
    f("workerid", "workerid", Kind::Int),
    f("masterid", "masterid", Kind::Int),
    f("started_at", "started_at", Kind::Int),
    f("complete", "complete_at", Kind::NotNull),
    f("complete_at", "complete_at", Kind::Int),
    f("locks_duration_s", "locks_duration_s", Kind::Int),
    f("state_string", "state_string", Kind::Text),
    f("results", "results", Kind::Int),
    f("properties", "", Kind::Computed),
];
const STEPS: &[Field] = &[
    f("stepid", "id", Kind::Int),
    f("number", "number", Kind::Int),
    f("name", "name", Kind::Text),
    f("buildid", "buildid", Kind::Int),
    f("started_at", "started_at", Kind::Int),
    f("locks_acquired_at", "locks_acquired_at", Kind::Int),
    f("complete", "complete_at", Kind::NotNull),
    f("complete_at", "complete_at", Kind::Int),
    f("state_string", "state_string", Kind::Text),
    f("results", "results", Kind::Int),
    f("urls", "", Kind::Computed),
    f("hidden", "hidden", Kind::Bool),
];
const LOGS: &[Field] = &[
    f("logid", "id", Kind::Int),
    f("name", "name", Kind::Text),
    f("slug", "slug", Kind::Text),
    f("stepid", "stepid", Kind::Int),
    f("complete", "complete", Kind::Bool),
    f("num_lines", "num_lines", Kind::Int),
    f("type", "type", Kind::Text),
];
const BUILDREQUESTS: &[Field] = &[
    f("buildrequestid", "br.id", Kind::Int),
    f("buildsetid", "br.buildsetid", Kind::Int),
    f("builderid", "br.builderid", Kind::Int),
    f("priority", "br.priority", Kind::Int),
    f("claimed", "c.masterid", Kind::NotNull),
    f("claimed_at", "c.claimed_at", Kind::Int),
    f("claimed_by_masterid", "c.masterid", Kind::Int),
    f("complete", "br.complete", Kind::Bool),
    f("complete_at", "br.complete_at", Kind::Int),
    f("results", "br.results", Kind::Int),
    f("submitted_at", "br.submitted_at", Kind::Int),
    f("waited_for", "br.waited_for", Kind::Bool),
    f("properties", "", Kind::Computed),
];
const BUILDSETS: &[Field] = &[
    f("bsid", "id", Kind::Int),
    f("external_idstring", "external_idstring", Kind::Text),
    f("reason", "reason", Kind::Text),
    f("submitted_at", "submitted_at", Kind::Int),
    f("complete", "complete", Kind::Bool),
    f("complete_at", "complete_at", Kind::Int),
    f("results", "results", Kind::Int),
    f("sourcestamps", "", Kind::Computed),
    f("parent_buildid", "parent_buildid", Kind::Int),
    f("parent_relationship", "parent_relationship", Kind::Text),
    f("rebuilt_buildid", "rebuilt_buildid", Kind::Int),
];
const SOURCESTAMPS: &[Field] = &[
    f("ssid", "id", Kind::Int),
    f("branch", "branch", Kind::Text),
    f("revision", "revision", Kind::Text),
    f("project", "project", Kind::Text),
    f("repository", "repository", Kind::Text),
    f("codebase", "codebase", Kind::Text),
    f("created_at", "created_at", Kind::Int),
    f("patch", "", Kind::Computed),
];
const CHANGES: &[Field] = &[
    f("changeid", "changeid", Kind::Int),
    f("author", "author", Kind::Text),
    f("committer", "committer", Kind::Text),
    f("comments", "comments", Kind::Text),
    f("branch", "branch", Kind::Text),
    f("revision", "revision", Kind::Text),
    f("revlink", "revlink", Kind::Text),
    f("when_timestamp", "when_timestamp", Kind::Int),
    f("category", "category", Kind::Text),
    f("repository", "repository", Kind::Text),
    f("codebase", "codebase", Kind::Text),
    f("project", "project", Kind::Text),
    f("files", "", Kind::Computed),
    f("properties", "", Kind::Computed),
    f("sourcestamp", "", Kind::Computed),
    f("parent_changeids", "", Kind::Computed),
];
const WORKERS: &[Field] = &[
    f("workerid", "id", Kind::Int),
    f("name", "name", Kind::Text),
    f("paused", "paused", Kind::Bool),
    f("pause_reason", "pause_reason", Kind::Text),
    f("graceful", "graceful", Kind::Bool),
    f("configured_on", "", Kind::Computed),
    f("connected_to", "", Kind::Computed),
    f("workerinfo", "", Kind::Computed),
];
const BUILDERS: &[Field] = &[
    f("builderid", "id", Kind::Int),
    f("name", "name", Kind::Text),
    f("description", "description", Kind::Text),
    f("description_format", "description_format", Kind::Text),
    f("description_html", "description_html", Kind::Text),
    f("projectid", "projectid", Kind::Int),
    f("masterids", "", Kind::Computed),
    f("tags", "", Kind::Computed),
];
const MASTERS: &[Field] = &[
    f("masterid", "id", Kind::Int),
    f("name", "name", Kind::Text),
    f("active", "active", Kind::Bool),
    f("last_active", "last_active", Kind::Int),
];
const FORCESCHEDULERS: &[Field] = &[
    f("name", "", Kind::Computed),
    f("label", "", Kind::Computed),
    f("button_name", "", Kind::Computed),
    f("builder_names", "", Kind::Computed),
    f("enabled", "", Kind::Computed),
    f("all_fields", "", Kind::Computed),
];
const SCHEDULERS: &[Field] = &[
    f("schedulerid", "id", Kind::Int),
    f("name", "name", Kind::Text),
    f("enabled", "enabled", Kind::Bool),
    f("master", "", Kind::Computed),
];
const NAMED: &[Field] = &[f("name", "", Kind::Computed)];
const TEST_RESULT_SETS: &[Field] = &[
    f("test_result_setid", "id", Kind::Int),
    f("builderid", "builderid", Kind::Int),
    f("buildid", "buildid", Kind::Int),
    f("stepid", "stepid", Kind::Int),
    f("description", "description", Kind::Text),
    f("category", "category", Kind::Text),
    f("value_unit", "value_unit", Kind::Text),
    f("tests_passed", "tests_passed", Kind::Int),
    f("tests_failed", "tests_failed", Kind::Int),
    f("complete", "complete", Kind::Bool),
];
/// Buildbot's fields, and the build each result belongs to, so a test's history can be listed
/// with its builds (`/builders/{b}/test_results?test_name=…`).
const TEST_RESULTS: &[Field] = &[
    f("test_resultid", "id", Kind::Int),
    f("builderid", "builderid", Kind::Int),
    f("test_result_setid", "test_result_setid", Kind::Int),
    f("buildid", "buildid", Kind::Int),
    f("test_name", "test_name", Kind::Text),
    f("test_code_path", "test_code_path", Kind::Text),
    f("line", "line", Kind::Int),
    f("duration_ns", "duration_ns", Kind::Int),
    f("value", "value", Kind::Text),
];

impl Ty {
    pub fn plural(self) -> &'static str {
        match self {
            Ty::Builders => "builders",
            Ty::Builds => "builds",
            Ty::Steps => "steps",
            Ty::Logs => "logs",
            Ty::BuildRequests => "buildrequests",
            Ty::BuildSets => "buildsets",
            Ty::SourceStamps => "sourcestamps",
            Ty::Changes => "changes",
            Ty::Workers => "workers",
            Ty::Masters => "masters",
            Ty::ForceSchedulers => "forceschedulers",
            Ty::Schedulers => "schedulers",
            Ty::ChangeSources => "changesources",
            Ty::Projects => "projects",
            Ty::TestResultSets => "test_result_sets",
            Ty::TestResults => "test_results",
        }
    }

    pub fn fields(self) -> &'static [Field] {
        match self {
            Ty::Builders => BUILDERS,
            Ty::Builds => BUILDS,
            Ty::Steps => STEPS,
            Ty::Logs => LOGS,
            Ty::BuildRequests => BUILDREQUESTS,
            Ty::BuildSets => BUILDSETS,
            Ty::SourceStamps => SOURCESTAMPS,
            Ty::Changes => CHANGES,
            Ty::Workers => WORKERS,
            Ty::Masters => MASTERS,
            Ty::ForceSchedulers => FORCESCHEDULERS,
            Ty::Schedulers => SCHEDULERS,
            Ty::ChangeSources | Ty::Projects => NAMED,
            Ty::TestResultSets => TEST_RESULT_SETS,
            Ty::TestResults => TEST_RESULTS,
        }
    }
}

/// What a path names.
enum Target {
    Collection(Ty, Vec<Filter>),
    Single(Ty, Vec<Filter>, String),
    BuildProperties(BuildId),
    /// A build's blamelist, owners and interested users.
    BuildUsers(BuildId),
    /// The users table, with each user's attributes (never a password).
    Users(Option<String>),
    BuildsetProperties(i64),
    LogContents(LogId),
    LogRaw(LogId, bool),
    Empty(&'static str),
}

fn eq(column: &'static str, v: i64) -> Filter {
    Filter {
        column,
        op: FilterOp::Eq,
        values: vec![SqlValue::Int(v)],
    }
}

/// `column IN (ids)`; an empty list matches nothing.
fn within(column: &'static str, ids: Vec<i64>) -> Filter {
    Filter {
        column,
        op: FilterOp::In,
        values: ids.into_iter().map(SqlValue::Int).collect(),
    }
}

fn not_found(path: &str) -> ApiError {
    ApiError::not_found(path)
}

fn int(seg: &str) -> Option<i64> {
    seg.parse::<i64>().ok()
}

async fn builder_id(services: &Services, seg: &str) -> Result<Option<i64>, ApiError> {
    if let Some(id) = int(seg) {
        return Ok(Some(id));
    }
    if let Some(id) = services.read.builder_ids().get(seg) {
        return Ok(Some(id.0));
    }
    let page = kiln_db::listing::Page::eq("name", SqlValue::Text(seg.to_string()));
    Ok(services
        .read
        .db()
        .list_builders(&page)
        .await?
        .0
        .first()
        .map(|b| b.id.0))
}

async fn build_by_number(
    services: &Services,
    builderid: i64,
    number: i64,
) -> Result<Option<BuildId>, ApiError> {
    let page = kiln_db::listing::Page {
        filters: vec![eq("builderid", builderid), eq("number", number)],
        ..Default::default()
    };
    Ok(services
        .read
        .db()
        .list_builds(&page)
        .await?
        .0
        .first()
        .map(|b| b.id))
}

async fn step_of(services: &Services, buildid: i64, seg: &str) -> Result<Option<StepId>, ApiError> {
    let filter = match int(seg) {
        Some(n) => eq("number", n),
        None => Filter {
            column: "name",
            op: FilterOp::Eq,
            values: vec![SqlValue::Text(seg.to_string())],
        },
    };
    let page = kiln_db::listing::Page {
        filters: vec![eq("buildid", buildid), filter],
        ..Default::default()
    };
    Ok(services
        .read
        .db()
        .list_steps(&page)
        .await?
        .0
        .first()
        .map(|s| s.id))
}

async fn log_of(services: &Services, stepid: i64, slug: &str) -> Result<Option<LogId>, ApiError> {
    let page = kiln_db::listing::Page {
        filters: vec![
            eq("stepid", stepid),
            Filter {
                column: "slug",
                op: FilterOp::Eq,
                values: vec![SqlValue::Text(slug.to_string())],
            },
        ],
        ..Default::default()
    };
    Ok(services
        .read
        .db()
        .list_logs(&page)
        .await?
        .0
        .first()
        .map(|l| l.id))
}

/// Resolves the part of a path below a step: `logs`, `logs/{slug}`, and a log's contents.
async fn below_step(
    services: &Services,
    stepid: StepId,
    rest: &[&str],
    path: &str,
) -> Result<Target, ApiError> {
    match rest {
        [] => Ok(Target::Single(
            Ty::Steps,
            vec![eq("id", stepid.0)],
            path.into(),
        )),
        ["logs"] => Ok(Target::Collection(Ty::Logs, vec![eq("stepid", stepid.0)])),
        ["test_result_sets"] => Ok(Target::Collection(
            Ty::TestResultSets,
            vec![eq("stepid", stepid.0)],
        )),
        ["logs", slug, tail @ ..] => {
            let id = log_of(services, stepid.0, slug)
                .await?
                .ok_or_else(|| not_found(path))?;
            below_log(id, tail, path)
        }
        _ => Err(not_found(path)),
    }
}

fn below_log(id: LogId, rest: &[&str], path: &str) -> Result<Target, ApiError> {
    match rest {
        [] => Ok(Target::Single(Ty::Logs, vec![eq("id", id.0)], path.into())),
        ["contents"] => Ok(Target::LogContents(id)),
        ["raw"] => Ok(Target::LogRaw(id, false)),
        ["raw_inline"] => Ok(Target::LogRaw(id, true)),
        _ => Err(not_found(path)),
    }
}

async fn below_build(
    services: &Services,
    id: BuildId,
    rest: &[&str],
    path: &str,
) -> Result<Target, ApiError> {
    match rest {
        [] => Ok(Target::Single(
            Ty::Builds,
            vec![eq("id", id.0)],
            path.into(),
        )),
        ["steps"] => Ok(Target::Collection(Ty::Steps, vec![eq("buildid", id.0)])),
        ["steps", step, tail @ ..] => {
            let stepid = step_of(services, id.0, step)
                .await?
                .ok_or_else(|| not_found(path))?;
            below_step(services, stepid, tail, path).await
        }
        ["properties"] => Ok(Target::BuildProperties(id)),
        ["users"] => Ok(Target::BuildUsers(id)),
        ["changes"] => {
            let ids = services.read.db().build_change_ids(id).await?;
            Ok(Target::Collection(
                Ty::Changes,
                vec![within("changeid", ids)],
            ))
        }
        ["triggered_builds"] => Ok(Target::Empty("builds")),
        ["test_result_sets"] => Ok(Target::Collection(
            Ty::TestResultSets,
            vec![eq("buildid", id.0)],
        )),
        _ => Err(not_found(path)),
    }
}

async fn resolve(services: &Services, path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let nf = || not_found(path);
    match segs.as_slice() {
        ["builders"] => Ok(Target::Collection(Ty::Builders, vec![])),
        ["builders", b, rest @ ..] => {
            let id = builder_id(services, b).await?.ok_or_else(nf)?;
            match rest {
                [] => Ok(Target::Single(
                    Ty::Builders,
                    vec![eq("id", id)],
                    path.into(),
                )),
                ["builds"] => Ok(Target::Collection(Ty::Builds, vec![eq("builderid", id)])),
                ["builds", n, tail @ ..] => {
                    let number = int(n).ok_or_else(nf)?;
                    let build = build_by_number(services, id, number)
                        .await?
                        .ok_or_else(nf)?;
                    below_build(services, build, tail, path).await
                }
                ["buildrequests"] => Ok(Target::Collection(
                    Ty::BuildRequests,
                    vec![eq("br.builderid", id)],
                )),
                ["workers"] => Ok(Target::Collection(
                    Ty::Workers,
                    vec![Filter {
                        column: "id",
                        op: FilterOp::In,
                        values: services
                            .read
                            .db()
                            .builder_worker_ids(kiln_core::BuilderId(id))
                            .await?
                            .into_iter()
                            .map(|w| SqlValue::Int(w.0))
                            .collect(),
                    }],
                )),
                ["forceschedulers"] => Ok(Target::Collection(
                    Ty::ForceSchedulers,
                    vec![eq("builderid", id)],
                )),
                ["masters"] => Ok(Target::Collection(Ty::Masters, vec![])),
                ["test_result_sets"] => Ok(Target::Collection(
                    Ty::TestResultSets,
                    vec![eq("builderid", id)],
                )),
                ["test_results"] => Ok(Target::Collection(
                    Ty::TestResults,
                    vec![eq("builderid", id)],
                )),
                _ => Err(nf()),
            }
        }
        ["builds"] => Ok(Target::Collection(Ty::Builds, vec![])),
        ["builds", id, rest @ ..] => {
            below_build(services, BuildId(int(id).ok_or_else(nf)?), rest, path).await
        }
        ["steps"] => Ok(Target::Collection(Ty::Steps, vec![])),
        ["steps", id, rest @ ..] => {
            below_step(services, StepId(int(id).ok_or_else(nf)?), rest, path).await
        }
        ["logs", id, rest @ ..] => below_log(LogId(int(id).ok_or_else(nf)?), rest, path),
        ["buildrequests"] => Ok(Target::Collection(Ty::BuildRequests, vec![])),
        ["buildrequests", id] => Ok(Target::Single(
            Ty::BuildRequests,
            vec![eq("br.id", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["buildrequests", id, "builds"] => Ok(Target::Collection(
            Ty::Builds,
            vec![eq("buildrequestid", int(id).ok_or_else(nf)?)],
        )),
        ["buildsets"] => Ok(Target::Collection(Ty::BuildSets, vec![])),
        ["buildsets", id] => Ok(Target::Single(
            Ty::BuildSets,
            vec![eq("id", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["buildsets", id, "properties"] => Ok(Target::BuildsetProperties(int(id).ok_or_else(nf)?)),
        ["buildsets", id, "sourcestamps"] => {
            let bs = services
                .read
                .db()
                .get_buildset(kiln_core::BuildSetId(int(id).ok_or_else(nf)?))
                .await?
                .ok_or_else(nf)?;
            Ok(Target::Collection(
                Ty::SourceStamps,
                vec![Filter {
                    column: "id",
                    op: FilterOp::In,
                    values: bs.sourcestamps.into_iter().map(SqlValue::Int).collect(),
                }],
            ))
        }
        ["sourcestamps"] => Ok(Target::Collection(Ty::SourceStamps, vec![])),
        ["sourcestamps", id] => Ok(Target::Single(
            Ty::SourceStamps,
            vec![eq("id", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["sourcestamps", id, "changes"] => Ok(Target::Collection(
            Ty::Changes,
            vec![eq("sourcestampid", int(id).ok_or_else(nf)?)],
        )),
        ["changes"] => Ok(Target::Collection(Ty::Changes, vec![])),
        ["changes", id, "builds"] => {
            let ids = services
                .read
                .db()
                .change_build_ids(kiln_core::ChangeId(int(id).ok_or_else(nf)?))
                .await?;
            Ok(Target::Collection(Ty::Builds, vec![within("id", ids)]))
        }
        ["changes", id] => Ok(Target::Single(
            Ty::Changes,
            vec![eq("changeid", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["workers"] => Ok(Target::Collection(Ty::Workers, vec![])),
        ["workers", w, rest @ ..] => {
            let filter = match int(w) {
                Some(id) => eq("id", id),
                None => Filter {
                    column: "name",
                    op: FilterOp::Eq,
                    values: vec![SqlValue::Text(w.to_string())],
                },
            };
            match rest {
                [] => Ok(Target::Single(Ty::Workers, vec![filter], path.into())),
                ["builds"] => {
                    let (rows, _) = services
                        .read
                        .db()
                        .list_workers(&kiln_db::listing::Page {
                            filters: vec![filter],
                            ..Default::default()
                        })
                        .await?;
                    let id = rows.first().ok_or_else(nf)?.id.0;
                    Ok(Target::Collection(Ty::Builds, vec![eq("workerid", id)]))
                }
                _ => Err(nf()),
            }
        }
        ["masters"] => Ok(Target::Collection(Ty::Masters, vec![])),
        ["masters", id] => Ok(Target::Single(
            Ty::Masters,
            vec![eq("id", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["masters", _, "builders"] => Ok(Target::Collection(Ty::Builders, vec![])),
        ["masters", _, "workers"] => Ok(Target::Collection(Ty::Workers, vec![])),
        ["forceschedulers"] => Ok(Target::Collection(Ty::ForceSchedulers, vec![])),
        ["forceschedulers", name] => Ok(Target::Single(
            Ty::ForceSchedulers,
            vec![Filter {
                column: "name",
                op: FilterOp::Eq,
                values: vec![SqlValue::Text(name.to_string())],
            }],
            path.into(),
        )),
        ["schedulers"] => Ok(Target::Collection(Ty::Schedulers, vec![])),
        ["schedulers", id] => Ok(Target::Single(
            Ty::Schedulers,
            vec![eq("id", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["masters", id, "schedulers"] => Ok(Target::Collection(
            Ty::Schedulers,
            vec![eq("masterid", int(id).ok_or_else(nf)?)],
        )),
        ["changesources"] => Ok(Target::Collection(Ty::ChangeSources, vec![])),
        ["projects"] => Ok(Target::Collection(Ty::Projects, vec![])),
        ["test_result_sets"] => Ok(Target::Collection(Ty::TestResultSets, vec![])),
        ["test_result_sets", id] => Ok(Target::Single(
            Ty::TestResultSets,
            vec![eq("id", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["test_result_sets", id, "results"] => Ok(Target::Collection(
            Ty::TestResults,
            vec![eq("test_result_setid", int(id).ok_or_else(nf)?)],
        )),
        ["test_results"] => Ok(Target::Collection(Ty::TestResults, vec![])),
        ["users"] => Ok(Target::Users(None)),
        ["users", who] => Ok(Target::Users(Some(who.to_string()))),
        _ => Err(nf()),
    }
}

/// Loads rows of a kind as JSON.
async fn load(
    services: &Services,
    ty: Ty,
    page: &kiln_db::listing::Page,
) -> Result<(Vec<Value>, i64), ApiError> {
    let db = &services.read.db();
    Ok(match ty {
        Ty::Builds => {
            let (rows, total) = db.list_builds(page).await?;
            (rows.iter().map(shapes::build).collect(), total)
        }
        Ty::Steps => {
            let (rows, total) = db.list_steps(page).await?;
            (rows.iter().map(shapes::step).collect(), total)
        }
        Ty::Logs => {
            let (rows, total) = db.list_logs(page).await?;
            (rows.iter().map(shapes::log).collect(), total)
        }
        Ty::TestResultSets => {
            let (rows, total) = db.list_test_result_sets(page).await?;
            (rows.iter().map(shapes::test_result_set).collect(), total)
        }
        Ty::TestResults => {
            let (rows, total) = db.list_test_results(page).await?;
            (rows.iter().map(shapes::test_result).collect(), total)
        }
        Ty::BuildRequests => {
            let (rows, total) = db.list_buildrequests(page).await?;
            (rows.iter().map(shapes::buildrequest).collect(), total)
        }
        Ty::BuildSets => {
            let (rows, total) = db.list_buildsets(page).await?;
            let mut out = Vec::with_capacity(rows.len());
            for bs in &rows {
                let ids: Vec<SourceStampId> =
                    bs.sourcestamps.iter().map(|i| SourceStampId(*i)).collect();
                let ss = db
                    .get_sourcestamps(&ids)
                    .await?
                    .iter()
                    .map(shapes::sourcestamp)
                    .collect();
                out.push(shapes::buildset(bs, ss));
            }
            (out, total)
        }
        Ty::SourceStamps => {
            let (rows, total) = db.list_sourcestamps(page).await?;
            (rows.iter().map(shapes::sourcestamp).collect(), total)
        }
        Ty::Changes => {
            let (rows, total) = db.list_changes(page).await?;
            let mut out = Vec::with_capacity(rows.len());
            for c in &rows {
                let ss = db
                    .get_sourcestamps(&[c.sourcestampid])
                    .await?
                    .first()
                    .map(shapes::sourcestamp)
                    .unwrap_or(Value::Null);
                out.push(shapes::change(c, ss));
            }
            (out, total)
        }
        Ty::Workers => {
            let (rows, total) = db.list_workers(page).await?;
            (rows.iter().map(shapes::worker).collect(), total)
        }
        Ty::Builders => {
            let (rows, total) = db.list_builders(page).await?;
            // Only builders some master runs are shown, as Buildbot does.
            let rows: Vec<Value> = rows
                .iter()
                .filter(|b| !b.masterids.is_empty())
                .map(shapes::builder)
                .collect();
            let n = rows.len() as i64;
            (
                rows,
                if page.limit.is_some() || page.offset.is_some() {
                    total
                } else {
                    n
                },
            )
        }
        Ty::Masters => {
            let (rows, total) = db.list_masters(page).await?;
            (rows.iter().map(shapes::master).collect(), total)
        }
        Ty::Schedulers => {
            let (rows, total) = db.list_schedulers(page).await?;
            let (masters, _) = db.list_masters(&kiln_db::listing::Page::default()).await?;
            let items = rows
                .iter()
                .map(|r| {
                    let m = r
                        .masterid
                        .and_then(|id| masters.iter().find(|m| m.id == id));
                    shapes::scheduler(r, m)
                })
                .collect();
            (items, total)
        }
        Ty::ForceSchedulers | Ty::ChangeSources | Ty::Projects => {
            let config = services.read.config();
            let ids = services.read.builder_ids();
            let mut items: Vec<Value> = match ty {
                Ty::ForceSchedulers => config
                    .schedulers
                    .iter()
                    .filter_map(|s| match s {
                        kiln_config::SchedulerConfig::Force(f) => {
                            Some(shapes::forcescheduler(f, &config))
                        }
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            // Base filters on these in-memory kinds: by name, or by builder.
            for filter in &page.filters {
                match (filter.column, filter.values.first()) {
                    ("name", Some(SqlValue::Text(n))) => items.retain(|i| i["name"] == *n),
                    ("builderid", Some(SqlValue::Int(b))) => {
                        let name = ids
                            .iter()
                            .find(|(_, v)| v.0 == *b)
                            .map(|(k, _)| k.clone())
                            .unwrap_or_default();
                        items.retain(|i| {
                            i["builder_names"]
                                .as_array()
                                .is_some_and(|a| a.iter().any(|x| x == &json!(name)))
                        });
                    }
                    _ => {}
                }
            }
            let n = items.len() as i64;
            (items, n)
        }
    })
}

async fn embed_properties(
    services: &Services,
    ty: Ty,
    items: &mut [Value],
    q: &Query,
) -> Result<(), ApiError> {
    if q.properties.is_empty() || !matches!(ty, Ty::Builds | Ty::BuildRequests) {
        return Ok(());
    }
    let wanted = |name: &str| q.properties.iter().any(|p| p == "*" || p == name);
    for item in items.iter_mut() {
        let props = match ty {
            Ty::Builds => {
                let id = item["buildid"].as_i64().unwrap_or_default();
                services.read.db().build_properties_set(BuildId(id)).await?
            }
            _ => {
                let id = item["buildsetid"].as_i64().unwrap_or_default();
                services
                    .read
                    .db()
                    .buildset_properties(kiln_core::BuildSetId(id))
                    .await?
            }
        };
        item["properties"] = shapes::properties(&props, wanted);
    }
    Ok(())
}

pub async fn get(
    services: &Services,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let target = resolve(services, path).await?;
    match target {
        Target::Collection(ty, base) => {
            let q = query::parse(raw_query, ty.fields(), &[])?;
            let (mut items, total) = fetch(services, ty, base, &q).await?;
            embed_properties(services, ty, &mut items, &q).await?;
            query::select_fields(&mut items, &q);
            Ok(query::respond(
                headers,
                json!({ty.plural(): items, "meta": {"total": total}}),
            ))
        }
        Target::Single(ty, base, path) => {
            let q = query::parse(raw_query, ty.fields(), &[])?;
            let (mut items, _) = fetch(
                services,
                ty,
                base,
                &Query {
                    limit: None,
                    offset: None,
                    order: vec![],
                    filters: vec![],
                    ..q.clone()
                },
            )
            .await?;
            if items.is_empty() {
                return Err(not_found(&path));
            }
            items.truncate(1);
            embed_properties(services, ty, &mut items, &q).await?;
            query::select_fields(&mut items, &q);
            Ok(query::respond(
                headers,
                json!({ty.plural(): items, "meta": {"total": 1}}),
            ))
        }
        Target::BuildUsers(id) => {
            query::parse(raw_query, &[], &[])?;
            if services.read.db().get_build(id).await?.is_none() {
                return Err(not_found(path));
            }
            let users = services.read.build_users(id).await?;
            Ok(query::respond(
                headers,
                json!({"users": [{
                    "buildid": id.0,
                    "blamelist": users.blamelist,
                    "owners": users.owners,
                    "interested_users": users.interested,
                }], "meta": {"total": 1}}),
            ))
        }
        Target::Users(who) => {
            query::parse(raw_query, &[], &[])?;
            let rows = match &who {
                None => {
                    services
                        .read
                        .db()
                        .list_users(&kiln_db::listing::Page::default())
                        .await?
                }
                Some(w) => services.read.db().find_user(w).await?.into_iter().collect(),
            };
            if who.is_some() && rows.is_empty() {
                return Err(not_found(path));
            }
            let users: Vec<Value> = rows
                .iter()
                .map(|u| {
                    json!({
                        "uid": u.uid,
                        "identifier": u.identifier,
                        "bb_username": u.bb_username,
                        "attributes": u.attributes,
                    })
                })
                .collect();
            let total = users.len();
            Ok(query::respond(
                headers,
                json!({"users": users, "meta": {"total": total}}),
            ))
        }
        Target::BuildProperties(id) => {
            query::parse(raw_query, &[], &[])?;
            if services.read.db().get_build(id).await?.is_none() {
                return Err(not_found(path));
            }
            let props = services.read.db().build_properties_set(id).await?;
            let map = shapes::properties(&props, |_| true);
            Ok(query::respond(
                headers,
                json!({"properties": [map], "meta": {"total": 1}}),
            ))
        }
        Target::BuildsetProperties(id) => {
            query::parse(raw_query, &[], &[])?;
            let props = services
                .read
                .db()
                .buildset_properties(kiln_core::BuildSetId(id))
                .await?;
            let map = shapes::properties(&props, |_| true);
            Ok(query::respond(
                headers,
                json!({"properties": [map], "meta": {"total": 1}}),
            ))
        }
        Target::LogContents(id) => raw::contents(services, id, raw_query, headers, path).await,
        Target::LogRaw(id, inline) => {
            query::parse(raw_query, &[], &[])?;
            raw::raw(services, id, inline, path).await
        }
        Target::Empty(plural) => {
            query::parse(raw_query, &[], &["field", "order", "limit", "offset"])?;
            Ok(query::respond(
                headers,
                json!({plural: [], "meta": {"total": 0}}),
            ))
        }
    }
}

async fn fetch(
    services: &Services,
    ty: Ty,
    base: Vec<Filter>,
    q: &Query,
) -> Result<(Vec<Value>, i64), ApiError> {
    let fields = ty.fields();
    let in_memory_kind = matches!(
        ty,
        Ty::ForceSchedulers | Ty::Schedulers | Ty::ChangeSources | Ty::Projects
    );
    if in_memory_kind {
        let (items, _) = load(
            services,
            ty,
            &kiln_db::listing::Page {
                filters: base,
                ..Default::default()
            },
        )
        .await?;
        return query::finish_in_memory(items, q, &q.filters);
    }
    let (page, rest, all) = query::push_down(q, fields, base)?;
    let (items, total) = load(services, ty, &page).await?;
    if all {
        Ok((items, total))
    } else {
        query::finish_in_memory(items, q, &rest)
    }
}
