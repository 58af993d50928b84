//! `one_line_per_build`: the latest builds of every builder, one line each, newest first, with
//! `numbuilds=`, `builder=` and `branch=` as in the old WebStatus.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use kiln_api::shapes;
use kiln_core::BuildId;
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};
use minijinja::context;

use super::args::Args;
use super::home::builder_names;
use super::waterfall::chosen_builders;
use super::{PageResult, Site, Visit, json};

/// Builds listed unless `numbuilds=` says otherwise, as in Buildbot.
const NUMBUILDS: i64 = 20;

pub async fn page(State(site): State<Site>, visit: Visit, RawQuery(query): RawQuery) -> Response {
    let result = show(&site, &visit, query.as_deref()).await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit, query: Option<&str>) -> PageResult {
    let args = Args::parse(query)?;
    let numbuilds = args.number("numbuilds", NUMBUILDS, 1, 1000)?;
    let builders = chosen_builders(site, &args)?;
    let branches = args.all("branch");
    let db = site.services.read.db();
    let page = Page {
        filters: vec![Filter {
            column: "builderid",
            op: FilterOp::In,
            values: builders.iter().map(|b| SqlValue::Int(b.0)).collect(),
        }],
        order: vec![("id", true)],
        limit: Some(if branches.is_empty() {
            numbuilds
        } else {
            numbuilds * 10
        }),
        offset: None,
    };
    let mut builds = if builders.is_empty() {
        Vec::new()
    } else {
        db.list_builds(&page).await?.0
    };
    let ids: Vec<BuildId> = builds.iter().map(|b| b.id).collect();
    let branch_of = db.build_branches(&ids).await?;
    if !branches.is_empty() {
        builds.retain(|b| {
            branch_of.iter().any(|(id, br)| {
                *id == b.id && br.as_deref().is_some_and(|br| branches.contains(&br))
            })
        });
        builds.truncate(numbuilds as usize);
    }
    let rows: Vec<serde_json::Value> = builds
        .iter()
        .map(|b| {
            let mut v = shapes::build(b);
            v["branch"] = serde_json::json!(
                branch_of
                    .iter()
                    .find(|(id, _)| *id == b.id)
                    .and_then(|(_, br)| br.clone())
            );
            v
        })
        .collect();
    let data = context! {
        builds => json(&rows),
        names => json(builder_names(site).await?),
        numbuilds => numbuilds,
    };
    site.render(visit, "one_line_per_build.html", data)
}
