//! The workers: every worker with its state and builders, and a worker's page with its info, its
//! recent builds and the ping, pause, graceful stop and kill controls.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use kiln_api::shapes;
use kiln_db::WorkerRow;
use kiln_db::listing::{Page, SqlValue};
use minijinja::context;

use super::args::Args;
use super::select::builder_names;
use super::{PageError, PageResult, Site, Visit, json};

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
    let workers: Vec<serde_json::Value> = rows
        .iter()
        .filter(|w| config.workers.iter().any(|c| c.name == w.name))
        .map(view)
        .collect();
    let data = context! {
        workers => json(&workers),
        names => json(builder_names(site).await?),
        no_builders => no_builders,
    };
    site.render(visit, "workers.html", data)
}

/// A worker as the pages show it: its API shape, and whether it is connected.
fn view(w: &WorkerRow) -> serde_json::Value {
    let mut v = shapes::worker(w);
    v["connected"] = serde_json::Value::Bool(!w.connected_to.is_empty());
    v
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
    let builds = site.services.read.db().list_builds(&page).await?.0;
    let data = context! {
        worker => json(view(&worker)),
        builds => json(builds.iter().map(shapes::build).collect::<Vec<_>>()),
        names => json(builder_names(site).await?),
    };
    site.render(visit, "worker.html", data)
}
