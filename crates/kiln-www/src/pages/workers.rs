//! The workers: every worker with its state and builders, and a worker's page with its info, its
//! recent builds and the ping, pause, graceful stop and kill controls.

use std::collections::HashSet;

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use kiln_api::shapes;
use kiln_db::WorkerRow;
use kiln_db::listing::{Page, SqlValue};
use minijinja::{Value, context};

use super::args::Args;
use super::select::builder_names;
use super::{PageError, PageResult, Site, Visit, from_json, view};

/// How many builds a worker's page lists unless `numbuilds=` says otherwise.
const NUMBUILDS: i64 = 20;

pub async fn list(State(site): State<Site>, visit: Visit, RawQuery(query): RawQuery) -> Response {
    let result = show_list(&site, &visit, query.as_deref()).await;
    site.answer(&visit, result)
}

async fn show_list(site: &Site, visit: &Visit, query: Option<&str>) -> PageResult {
    let args = Args::parse(query)?;
    let no_builders = args.flag("no_builders")?;
    let (rows, _) = site
        .services
        .read
        .db()
        .list_workers(&Page::default())
        .await?;
    let config = site.services.read.config();
    // Only the workers of the running configuration: the table keeps the ones removed from it.
    let configured: HashSet<&str> = config.workers.iter().map(|c| c.name.as_str()).collect();
    let workers: Vec<Value> = rows
        .into_iter()
        .filter(|w| configured.contains(w.name.as_str()))
        .map(with_state)
        .collect();
    let data = context! {
        workers => workers,
        names => builder_names(site).await?,
        no_builders => no_builders,
    };
    site.render(visit, "workers.html", data)
}

/// A worker as the pages show it: its API shape, and whether it is connected.
fn with_state(w: WorkerRow) -> Value {
    let connected = !w.connected_to.is_empty();
    // Read once here: a template reads several of its keys, and each read would parse it again.
    let info = from_json(&shapes::worker_info(&w.info));
    let extra = vec![("connected", Value::from(connected)), ("workerinfo", info)];
    view::worker_with(w, extra)
}

/// A worker by its id or its name.
pub async fn find(site: &Site, key: &str) -> Result<WorkerRow, PageError> {
    let page = match key.parse::<i64>() {
        Ok(id) => Page::eq("id", SqlValue::Int(id)),
        Err(_) => Page::eq("name", SqlValue::Text(key.to_string())),
    };
    site.services
        .read
        .db()
        .list_workers(&page)
        .await?
        .0
        .pop()
        .ok_or_else(|| PageError::not_found(format!("there is no worker '{key}'")))
}

pub async fn page(
    State(site): State<Site>,
    visit: Visit,
    Path(worker): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = show(&site, &visit, &worker, query.as_deref()).await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit, key: &str, query: Option<&str>) -> PageResult {
    let args = Args::parse(query)?;
    let numbuilds = args.number("numbuilds", NUMBUILDS, 1, 1000)?;
    let worker = find(site, key).await?;
    let page = Page {
        order: vec![("id", true)],
        limit: Some(numbuilds),
        ..Page::eq("workerid", SqlValue::Int(worker.id.0))
    };
    let mut builds = site.services.read.db().list_builds(&page).await?.0;
    let db = site.services.read.db();
    visit.visibility(site).retain(db, &mut builds).await?;
    let data = context! {
        worker => with_state(worker),
        builds => view::builds(builds),
        names => builder_names(site).await?,
    };
    site.render(visit, "worker.html", data)
}
