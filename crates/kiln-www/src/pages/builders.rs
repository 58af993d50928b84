//! The builders: a summary of every builder, and a builder's page with its recent builds, its
//! pending requests, its workers and a form for each force scheduler that names it.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use kiln_api::shapes;
use kiln_db::BuilderRow;
use kiln_db::listing::{Page, SqlValue};
use minijinja::{Value, context};
use serde_json::json;

use super::args::Args;
use super::{PageError, PageResult, Site, Visit, json, view};

/// How many builds a builder's page lists unless `numbuilds=` says otherwise, as in Buildbot.
const NUMBUILDS: i64 = 20;
/// The most `numbuilds=` may ask for.
const MAX_NUMBUILDS: i64 = 1000;

pub async fn list(State(site): State<Site>, visit: Visit) -> Response {
    let result = show_list(&site, &visit).await;
    site.answer(&visit, result)
}

async fn show_list(site: &Site, visit: &Visit) -> PageResult {
    let read = &site.services.read;
    let config = read.config();
    let ids = read.builder_ids();
    let (rows, _) = read.db().list_builders(&Page::default()).await?;
    let connected = read.connected_workers();
    let vis = visit.visibility(site);
    let mut latest: HashMap<i64, Value> = HashMap::new();
    let mut newest = read.db().latest_builds(1).await?;
    vis.retain(read.db(), &mut newest).await?;
    for b in newest {
        latest.insert(b.builderid.0, view::build(b));
    }
    let descriptions: HashMap<i64, Option<String>> =
        rows.into_iter().map(|r| (r.id.0, r.description)).collect();
    let builders: Vec<Value> = config
        .builders
        .iter()
        .filter_map(|b| ids.get(&b.name).map(|id| (b, id)))
        .map(|(b, id)| {
            context! {
                builderid => id.0,
                name => b.name,
                description => descriptions.get(&id.0).cloned().flatten(),
                tags => b.tags,
                workers => b.workernames.len(),
                connected => b.workernames.iter().filter(|w| connected.contains(*w)).count(),
                last => latest.remove(&id.0),
            }
        })
        .collect();
    site.render(visit, "builders.html", context! { builders => builders })
}

/// A force form as it was submitted and refused: its values and each field's error.
pub struct Refused {
    pub scheduler: String,
    pub values: serde_json::Map<String, serde_json::Value>,
    pub errors: BTreeMap<String, String>,
}

pub async fn page(
    State(site): State<Site>,
    visit: Visit,
    Path(builder): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = show(&site, &visit, &builder, query.as_deref(), None).await;
    site.answer(&visit, result)
}

/// A builder by its id or its name, as the pages link to it.
pub async fn find(site: &Site, key: &str) -> Result<BuilderRow, PageError> {
    let db = site.services.read.db();
    let page = match key.parse::<i64>() {
        Ok(id) => Page::eq("id", SqlValue::Int(id)),
        Err(_) => Page::eq("name", SqlValue::Text(key.to_string())),
    };
    db.list_builders(&page)
        .await?
        .0
        .pop()
        .ok_or_else(|| PageError::not_found(format!("there is no builder '{key}'")))
}

/// The builder page; with `refused`, the force form that was refused shows its values and errors.
pub async fn show(
    site: &Site,
    visit: &Visit,
    key: &str,
    query: Option<&str>,
    refused: Option<Refused>,
) -> PageResult {
    let args = Args::parse(query)?;
    let numbuilds = args.number("numbuilds", NUMBUILDS, 1, MAX_NUMBUILDS)?;
    let builder = find(site, key).await?;
    site.may_see(visit, builder.id.0, &builder.name)?;
    let read = &site.services.read;
    let db = read.db();
    let page = Page {
        order: vec![("number", true)],
        limit: Some(numbuilds),
        ..Page::eq("builderid", SqlValue::Int(builder.id.0))
    };
    let mut builds = db.list_builds(&page).await?.0;
    visit.visibility(site).retain(db, &mut builds).await?;
    let pending: Vec<serde_json::Value> = db
        .unclaimed_buildrequests()
        .await?
        .iter()
        .filter(|r| r.builderid == builder.id.0)
        .map(shapes::buildrequest)
        .collect();
    let config = read.config();
    let configured = config.builders.iter().find(|b| b.name == builder.name);
    let connected = read.connected_workers();
    let workers: Vec<serde_json::Value> = configured
        .map(|b| b.workernames.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|w| json!({"name": w, "connected": connected.contains(w)}))
        .collect();
    let forms: Vec<serde_json::Value> = config
        .force_schedulers()
        .filter(|f| f.builder_names.contains(&builder.name))
        .map(|f| shapes::forcescheduler(f, &config))
        .collect();
    let status = if refused.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let (refused_scheduler, values, errors) = match refused {
        Some(r) => (Some(r.scheduler), r.values, r.errors),
        None => (None, serde_json::Map::new(), BTreeMap::new()),
    };
    let data = context! {
        builder => json(shapes::builder(&builder)),
        builds => view::builds(builds),
        pending => json(&pending),
        workers => json(&workers),
        forms => json(&forms),
        refused => refused_scheduler,
        values => json(&values),
        errors => json(&errors),
        numbuilds => numbuilds,
    };
    site.render_status(visit, status, "builder.html", data)
}
