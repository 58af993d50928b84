//! The home page: the configured builders with their latest builds, what runs now, what waits,
//! and the latest failures.

use std::collections::HashMap;

use axum::extract::State;
use axum::response::Response;
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};
use minijinja::{Value, context};

use super::select::builder_names;
use super::{PageResult, Site, Visit, view};

/// How many of each builder's builds the home page shows.
const PER_BUILDER: i64 = 5;
/// How many recent failures it lists.
const FAILURES: i64 = 10;

pub async fn page(State(site): State<Site>, visit: Visit) -> Response {
    let result = show(&site, &visit).await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit) -> PageResult {
    let db = site.services.read.db();
    let names = builder_names(site).await?;
    let vis = visit.visibility(site);
    let mut latest: HashMap<i64, Vec<Value>> = HashMap::new();
    let mut newest = db.latest_builds(PER_BUILDER).await?;
    vis.retain(db, &mut newest).await?;
    for b in newest {
        latest
            .entry(b.builderid.0)
            .or_default()
            .push(view::build(b));
    }
    let mut running = db
        .list_builds(&Page::eq("complete_at", SqlValue::Null))
        .await?
        .0;
    vis.retain(db, &mut running).await?;
    let pending = db.unclaimed_buildrequests().await?;
    let failures_page = Page {
        filters: vec![Filter {
            column: "results",
            op: FilterOp::In,
            values: vec![SqlValue::Int(2), SqlValue::Int(4)],
        }],
        order: vec![("id", true)],
        limit: Some(FAILURES),
        offset: None,
        count_total: false,
    };
    let mut failures = db.list_builds(&failures_page).await?.0;
    vis.retain(db, &mut failures).await?;

    let config = site.services.read.config();
    let ids = site.services.read.builder_ids();
    let mut waiting: HashMap<i64, usize> = HashMap::new();
    for r in &pending {
        *waiting.entry(r.builderid).or_default() += 1;
    }
    let builders: Vec<Value> = config
        .builders
        .iter()
        .filter_map(|b| ids.get(&b.name).map(|id| (b, id)))
        .map(|(b, id)| {
            context! {
                builderid => id.0,
                name => b.name,
                builds => latest.remove(&id.0).unwrap_or_default(),
                pending => waiting.get(&id.0).copied().unwrap_or(0),
            }
        })
        .collect();
    let data = context! {
        builders => builders,
        running => view::builds(running),
        pending => pending.len(),
        failures => view::builds(failures),
        names => names,
    };
    site.render(visit, "home.html", data)
}
