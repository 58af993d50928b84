//! GET: a resolved path fetched with the query's options (fields, filters, order, paging,
//! properties), as Buildbot's data API answers.

use axum::http::HeaderMap;
use axum::response::Response;
use kiln_core::{BuildId, SourceStampId};
use kiln_db::listing::{Filter, SqlValue};
use serde_json::{Value, json};

use super::fields::Ty;
use super::query::{self, Query};
use super::resolve::{PropertyOwner, Target, resolve};
use kiln_api::shapes;

use super::{ApiError, raw};
use kiln_api::Services;

/// Loads rows of a kind as JSON.
pub(super) async fn load(
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
            let ids: Vec<SourceStampId> = rows
                .iter()
                .flat_map(|bs| bs.sourcestamps.iter().map(|i| SourceStampId(*i)))
                .collect();
            let stamps = stamps_by_id(db, &ids).await?;
            let out = rows
                .iter()
                .map(|bs| {
                    let ss = bs
                        .sourcestamps
                        .iter()
                        .filter_map(|i| stamps.get(&SourceStampId(*i)).cloned())
                        .collect();
                    shapes::buildset(bs, ss)
                })
                .collect();
            (out, total)
        }
        Ty::SourceStamps => {
            let (rows, total) = db.list_sourcestamps(page).await?;
            (rows.iter().map(shapes::sourcestamp).collect(), total)
        }
        Ty::Changes => {
            let (rows, total) = db.list_changes(page).await?;
            let ids: Vec<SourceStampId> = rows.iter().map(|c| c.sourcestampid).collect();
            let stamps = stamps_by_id(db, &ids).await?;
            let out = rows
                .iter()
                .map(|c| {
                    let ss = stamps.get(&c.sourcestampid).cloned().unwrap_or(Value::Null);
                    shapes::change(c, ss)
                })
                .collect();
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
        Ty::ForceSchedulers | Ty::ChangeSources | Ty::Projects | Ty::Reporters => {
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
                Ty::Reporters => {
                    let statuses = db.reporter_statuses().await?;
                    config
                        .reporters
                        .iter()
                        .map(|r| {
                            let status = statuses.iter().find(|s| s.reporter == r.name);
                            shapes::reporter(r, status)
                        })
                        .collect()
                }
                // The pollers this master runs, as Buildbot lists its change sources.
                Ty::ChangeSources => {
                    let (masters, _) = db.list_masters(&kiln_db::listing::Page::default()).await?;
                    let me = masters.iter().find(|m| m.id.0 == services.read.master_id());
                    services
                        .read
                        .poller_names()
                        .into_iter()
                        .enumerate()
                        .map(|(i, name)| {
                            json!({
                                "changesourceid": i + 1,
                                "name": name,
                                "master": me.map(shapes::master),
                            })
                        })
                        .collect()
                }
                _ => Vec::new(),
            };
            // Base filters on these in-memory kinds: by name, or by builder.
            for filter in &page.filters {
                match (filter.column, filter.values.first()) {
                    ("name", Some(SqlValue::Text(n))) => items.retain(|i| i["name"] == *n),
                    (id @ ("changesourceid" | "projectid"), Some(SqlValue::Int(n))) => {
                        items.retain(|i| i[id] == *n)
                    }
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

/// The source stamps with these ids in their API shape, read with one statement for a page of
/// rows rather than one for each row.
async fn stamps_by_id(
    db: &kiln_db::Db,
    ids: &[SourceStampId],
) -> Result<std::collections::HashMap<SourceStampId, Value>, ApiError> {
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    Ok(db
        .get_sourcestamps(&unique)
        .await?
        .iter()
        .map(|ss| (ss.id, shapes::sourcestamp(ss)))
        .collect())
}

/// Adds the build or buildset properties the query's `property=` names to each item.
pub(super) async fn embed_properties(
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
    limits: &super::limits::Limits,
    vis: &crate::auth::read::Visibility,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let target = resolve(services, path).await?;
    let target = super::confine::confine(services, vis, path, target).await?;
    match target {
        Target::Collection(ty, base) => {
            let q = query::parse(raw_query, ty.fields(), &[])?;
            if let Some(listed) = ty.history() {
                return super::stream::collection(
                    services, limits, vis, ty, listed, base, q, headers,
                )
                .await;
            }
            let (mut items, total) = fetch(services, ty, base, &q).await?;
            super::confine::by_origin(services, vis, ty, &mut items).await?;
            embed_properties(services, ty, &mut items, &q).await?;
            query::select_fields(&mut items, &q);
            Ok(query::respond(headers, listing(ty.plural(), items, total)))
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
            super::confine::by_origin(services, vis, ty, &mut items).await?;
            if items.is_empty() {
                return Err(ApiError::not_found(&path));
            }
            items.truncate(1);
            embed_properties(services, ty, &mut items, &q).await?;
            query::select_fields(&mut items, &q);
            Ok(query::respond(headers, listing(ty.plural(), items, 1)))
        }
        Target::BuildUsers(id) => {
            query::parse(raw_query, &[], &[])?;
            if services.read.db().get_build(id).await?.is_none() {
                return Err(ApiError::not_found(path));
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
                return Err(ApiError::not_found(path));
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
                listing("users", users, total as i64),
            ))
        }
        Target::BuildProperties(id) => {
            query::parse(raw_query, &[], &[])?;
            if services.read.db().get_build(id).await?.is_none() {
                return Err(ApiError::not_found(path));
            }
            let props = services.read.db().build_properties_set(id).await?;
            let map = shapes::properties(&props, |_| true);
            Ok(query::respond(
                headers,
                json!({"properties": [map], "meta": {"total": 1}}),
            ))
        }
        Target::PropertyList(owner) => {
            query::parse(raw_query, &[], &[])?;
            let props = owner_properties(services, owner)
                .await?
                .ok_or_else(|| ApiError::not_found(path))?;
            let items: Vec<Value> = props
                .iter()
                .map(|(name, p)| {
                    json!({
                        "name": name,
                        "source": p.source,
                        "value": kiln_db::property_to_json(&p.value).to_string(),
                    })
                })
                .collect();
            let total = items.len() as i64;
            Ok(query::respond(
                headers,
                listing("_properties", items, total),
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
        Target::OpenApi => {
            query::parse(raw_query, &[], &[])?;
            Ok(query::respond(headers, super::openapi::document()))
        }
        Target::Spec => {
            query::parse(raw_query, &[], &[])?;
            let specs = super::spec::specs();
            let total = specs.len();
            Ok(query::respond(
                headers,
                json!({"specs": specs, "meta": {"total": total}}),
            ))
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

/// The properties of a build, buildset or change; `None` when there is no such thing.
async fn owner_properties(
    services: &Services,
    owner: PropertyOwner,
) -> Result<Option<kiln_core::Properties>, ApiError> {
    let db = services.read.db();
    Ok(match owner {
        PropertyOwner::Build(id) => match db.get_build(id).await? {
            Some(_) => Some(db.build_properties_set(id).await?),
            None => None,
        },
        PropertyOwner::Buildset(id) => match db.get_buildset(kiln_core::BuildSetId(id)).await? {
            Some(_) => Some(db.buildset_properties(kiln_core::BuildSetId(id)).await?),
            None => None,
        },
        PropertyOwner::Change(id) => db
            .list_changes(&kiln_db::listing::Page::eq("changeid", SqlValue::Int(id)))
            .await?
            .0
            .into_iter()
            .next()
            .map(|c| c.properties),
    })
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
        Ty::ForceSchedulers | Ty::Schedulers | Ty::ChangeSources | Ty::Projects | Ty::Reporters
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

/// A collection's answer: its items under the collection's name, and the total. The items are
/// moved in, not serialized again: a page of 1,000 builds would otherwise be copied once more.
fn listing(plural: &str, items: Vec<Value>, total: i64) -> Value {
    let mut body = serde_json::Map::new();
    body.insert(plural.to_string(), Value::Array(items));
    body.insert("meta".to_string(), json!({ "total": total }));
    Value::Object(body)
}
