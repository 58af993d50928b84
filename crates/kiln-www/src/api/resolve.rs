//! Resolving a REST path to what it names: a collection or a single resource of a kind with its
//! base filters, properties, users, a log's contents or raw text.
//!
//! Builders are addressed by id or name, builds by id or by builder and number, steps by number
//! or name, logs by id or by step and slug, workers by id or name.

use kiln_api::Services;
use kiln_core::{BuildId, LogId, StepId};
use kiln_db::listing::{Filter, FilterOp, SqlValue};

use super::ApiError;
use super::fields::Ty;

/// What a path names.
pub(super) enum Target {
    Collection(Ty, Vec<Filter>),
    Single(Ty, Vec<Filter>, String),
    BuildProperties(BuildId),
    /// A build's, buildset's or change's properties as a list of name, source and JSON-encoded
    /// value.
    PropertyList(PropertyOwner),
    /// A build's blamelist, owners and interested users.
    BuildUsers(BuildId),
    /// The users table, with each user's attributes (never a password).
    Users(Option<String>),
    BuildsetProperties(i64),
    LogContents(LogId),
    LogRaw(LogId, bool),
    Empty(&'static str),
    /// `application.spec`: the description of every endpoint.
    Spec,
    /// `openapi.json`: the API as an OpenAPI document.
    OpenApi,
}

/// Whose properties a property list lists.
pub(super) enum PropertyOwner {
    Build(BuildId),
    Buildset(i64),
    Change(i64),
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

/// A resource named by its id (a number) or by its name.
fn by_id_or_name(id_column: &'static str, seg: &str) -> Filter {
    match int(seg) {
        Some(id) => eq(id_column, id),
        None => Filter {
            column: "name",
            op: FilterOp::Eq,
            values: vec![SqlValue::Text(seg.to_string())],
        },
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
        ["triggered_builds"] => {
            let ids = services.read.db().triggered_build_ids(id).await?;
            Ok(Target::Collection(Ty::Builds, vec![within("id", ids)]))
        }
        ["property_list"] => Ok(Target::PropertyList(PropertyOwner::Build(id))),
        // Buildbot's build data (`setBuildData`): kiln's steps keep none.
        ["data"] => Ok(Target::Empty("build_data")),
        ["test_result_sets"] => Ok(Target::Collection(
            Ty::TestResultSets,
            vec![eq("buildid", id.0)],
        )),
        _ => Err(not_found(path)),
    }
}

pub(super) async fn resolve(services: &Services, path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let nf = || not_found(path);
    match segs.as_slice() {
        ["application.spec"] => Ok(Target::Spec),
        ["openapi.json"] => Ok(Target::OpenApi),
        ["builders"] => Ok(Target::Collection(Ty::Builders, vec![])),
        ["builders", b, rest @ ..] => below_builder(services, b, rest, path).await,
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
        ["buildsets", id, "properties_list"] => Ok(Target::PropertyList(PropertyOwner::Buildset(
            int(id).ok_or_else(nf)?,
        ))),
        ["buildsets", id, "sourcestamps"] => buildset_sourcestamps(services, id, path).await,
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
        ["changes", id, "properties_list"] => Ok(Target::PropertyList(PropertyOwner::Change(
            int(id).ok_or_else(nf)?,
        ))),
        ["changes", id] => Ok(Target::Single(
            Ty::Changes,
            vec![eq("changeid", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["workers"] => Ok(Target::Collection(Ty::Workers, vec![])),
        ["workers", w, rest @ ..] => below_worker(services, w, rest, path).await,
        ["masters"] => Ok(Target::Collection(Ty::Masters, vec![])),
        ["masters", id, rest @ ..] => {
            below_master(services, int(id).ok_or_else(nf)?, rest, path).await
        }
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
        ["changesources"] => Ok(Target::Collection(Ty::ChangeSources, vec![])),
        ["changesources", id] => Ok(Target::Single(
            Ty::ChangeSources,
            vec![eq("changesourceid", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["projects"] => Ok(Target::Collection(Ty::Projects, vec![])),
        ["projects", p] => Ok(Target::Single(
            Ty::Projects,
            vec![by_id_or_name("projectid", p)],
            path.into(),
        )),
        ["projects", id, "builders"] => Ok(Target::Collection(
            Ty::Builders,
            vec![eq("projectid", int(id).ok_or_else(nf)?)],
        )),
        ["reporters"] => Ok(Target::Collection(Ty::Reporters, vec![])),
        ["reporters", name] => Ok(Target::Single(
            Ty::Reporters,
            vec![Filter {
                column: "name",
                op: FilterOp::Eq,
                values: vec![SqlValue::Text(name.to_string())],
            }],
            path.into(),
        )),
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

/// What a path names below `builders/B`.
async fn below_builder(
    services: &Services,
    b: &str,
    rest: &[&str],
    path: &str,
) -> Result<Target, ApiError> {
    let nf = || not_found(path);
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
        ["masters", m] => Ok(Target::Single(
            Ty::Masters,
            vec![eq("id", int(m).ok_or_else(nf)?)],
            path.into(),
        )),
        ["workers", w] => Ok(Target::Single(
            Ty::Workers,
            vec![
                within(
                    "id",
                    services
                        .read
                        .db()
                        .builder_worker_ids(kiln_core::BuilderId(id))
                        .await?
                        .into_iter()
                        .map(|w| w.0)
                        .collect(),
                ),
                by_id_or_name("id", w),
            ],
            path.into(),
        )),
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

/// What a path names below `masters/M`. kiln's builders, workers, schedulers and pollers are
/// listed for any master of the cluster, as each master's configuration has them all.
async fn below_master(
    services: &Services,
    masterid: i64,
    rest: &[&str],
    path: &str,
) -> Result<Target, ApiError> {
    let nf = || not_found(path);
    match rest {
        [] => Ok(Target::Single(
            Ty::Masters,
            vec![eq("id", masterid)],
            path.into(),
        )),
        ["builders"] => Ok(Target::Collection(Ty::Builders, vec![])),
        // Only the builder and its workers: a build reached through here would escape the
        // visibility checks made on `builders/B/builds` paths.
        ["builders", b, tail @ ..] if tail.is_empty() || tail[0] == "workers" => {
            below_builder(services, b, tail, path).await
        }
        ["workers"] => Ok(Target::Collection(Ty::Workers, vec![])),
        ["workers", w] => below_worker(services, w, &[], path).await,
        ["schedulers"] => Ok(Target::Collection(
            Ty::Schedulers,
            vec![eq("masterid", masterid)],
        )),
        ["schedulers", id] => Ok(Target::Single(
            Ty::Schedulers,
            vec![eq("masterid", masterid), eq("id", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["changesources"] if masterid == services.read.master_id() => {
            Ok(Target::Collection(Ty::ChangeSources, vec![]))
        }
        ["changesources", id] if masterid == services.read.master_id() => Ok(Target::Single(
            Ty::ChangeSources,
            vec![eq("changesourceid", int(id).ok_or_else(nf)?)],
            path.into(),
        )),
        ["changesources"] => Ok(Target::Empty("changesources")),
        _ => Err(nf()),
    }
}

/// What a path names below `workers/W`, a worker named by id or name.
async fn below_worker(
    services: &Services,
    w: &str,
    rest: &[&str],
    path: &str,
) -> Result<Target, ApiError> {
    let nf = || not_found(path);
    let filter = by_id_or_name("id", w);
    if rest.is_empty() {
        return Ok(Target::Single(Ty::Workers, vec![filter], path.into()));
    }
    let (rows, _) = services
        .read
        .db()
        .list_workers(&kiln_db::listing::Page {
            filters: vec![filter],
            ..Default::default()
        })
        .await?;
    let worker = rows.first().ok_or_else(nf)?;
    match rest {
        ["builds"] => Ok(Target::Collection(
            Ty::Builds,
            vec![eq("workerid", worker.id.0)],
        )),
        // The builders this worker is configured for.
        ["builders"] => {
            let ids = worker.configured_on.iter().map(|(b, _)| *b).collect();
            Ok(Target::Collection(Ty::Builders, vec![within("id", ids)]))
        }
        _ => Err(nf()),
    }
}

/// `buildsets/N/sourcestamps`: the buildset's source stamps.
async fn buildset_sourcestamps(
    services: &Services,
    id: &str,
    path: &str,
) -> Result<Target, ApiError> {
    let nf = || not_found(path);
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
