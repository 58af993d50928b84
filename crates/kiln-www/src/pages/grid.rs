//! The grid: source stamps against builders, each cell the builds of that builder from that
//! source stamp. `/grid` puts the builders in rows (`width=` source stamps, newest first);
//! `/tgrid` transposes it (`length=` source stamps, `rev_order=asc` for oldest first). Both take
//! `branch=` and `category=`/`tag=`, and `builder=`.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use kiln_api::shapes;
use kiln_core::BuildId;
use kiln_db::listing::Page;
use minijinja::context;
use serde_json::json;

use super::args::Args;
use super::select::chosen_builders;
use super::{PageError, PageResult, Site, Visit, json};

/// Source stamps shown unless `width=` or `length=` says otherwise, as in Buildbot.
const WIDTH: i64 = 5;
/// The most source stamps one grid may show.
const MAX_WIDTH: i64 = 100;

pub async fn grid(State(site): State<Site>, visit: Visit, RawQuery(query): RawQuery) -> Response {
    let result = show(&site, &visit, query.as_deref(), false).await;
    site.answer(&visit, result)
}

pub async fn tgrid(State(site): State<Site>, visit: Visit, RawQuery(query): RawQuery) -> Response {
    let result = show(&site, &visit, query.as_deref(), true).await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit, query: Option<&str>, transposed: bool) -> PageResult {
    let args = Args::parse(query)?;
    let count = if transposed {
        args.number("length", WIDTH, 1, MAX_WIDTH)?
    } else {
        args.number("width", WIDTH, 1, MAX_WIDTH)?
    };
    let ascending = match args.one("rev_order") {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => {
            return Err(PageError::bad_request(format!(
                "rev_order must be asc or desc, not '{other}'"
            )));
        }
    };
    let branch = args.one("branch");
    let builders = chosen_builders(site, visit, &args)?;
    let ids: Vec<i64> = builders.iter().map(|b| b.0).collect();
    let db = site.services.read.db();
    let mut stamps = db.sourcestamps_built(&ids, branch, count).await?;
    if transposed && ascending {
        stamps.reverse();
    }
    let all: Vec<BuildId> = stamps.iter().flat_map(|(_, b)| b.iter().copied()).collect();
    let mut builds = if all.is_empty() {
        Vec::new()
    } else {
        db.list_builds(&Page::among("id", all.iter().map(|b| b.0)))
            .await?
            .0
    };
    visit.visibility(site).retain(db, &mut builds).await?;
    let by_id: HashMap<BuildId, &kiln_db::BuildRow> = builds.iter().map(|b| (b.id, b)).collect();
    // cells[stamp][builder]: the builds of that builder from that stamp.
    let cells: Vec<Vec<Vec<serde_json::Value>>> = stamps
        .iter()
        .map(|(_, built)| {
            builders
                .iter()
                .map(|(id, _, _)| {
                    built
                        .iter()
                        .filter_map(|b| by_id.get(b))
                        .filter(|b| b.builderid.0 == *id)
                        .map(|b| shapes::build(b))
                        .collect()
                })
                .collect()
        })
        .collect();
    let stamps: Vec<serde_json::Value> =
        stamps.iter().map(|(s, _)| shapes::sourcestamp(s)).collect();
    let builders: Vec<serde_json::Value> = builders
        .iter()
        .map(|(id, name, _)| json!({"builderid": id, "name": name}))
        .collect();
    let data = context! {
        builders => json(&builders),
        stamps => json(&stamps),
        cells => json(&cells),
        transposed => transposed,
    };
    site.render(visit, "grid.html", data)
}
