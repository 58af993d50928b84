//! The feeds of failed builds, RSS 2.0 at `/rss` and Atom at `/atom`, with the waterfall's
//! choice of builders (`builder=`, `category=`/`tag=`) and `branch=`; `numbuilds=` how many.

use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use kiln_api::shapes;
use kiln_core::BuildId;
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};
use minijinja::context;

use super::args::Args;
use super::home::builder_names;
use super::waterfall::chosen_builders;
use super::{PageResult, Site, Visit, json};

/// Builds in a feed unless `numbuilds=` says otherwise.
const NUMBUILDS: i64 = 20;

pub async fn rss(State(site): State<Site>, visit: Visit, RawQuery(query): RawQuery) -> Response {
    let result = feed(
        &site,
        &visit,
        query.as_deref(),
        "rss.xml",
        "application/rss+xml",
    )
    .await;
    site.answer(&visit, result)
}

pub async fn atom(State(site): State<Site>, visit: Visit, RawQuery(query): RawQuery) -> Response {
    let result = feed(
        &site,
        &visit,
        query.as_deref(),
        "atom.xml",
        "application/atom+xml",
    )
    .await;
    site.answer(&visit, result)
}

async fn feed(
    site: &Site,
    visit: &Visit,
    query: Option<&str>,
    template: &str,
    kind: &'static str,
) -> PageResult {
    let args = Args::parse(query)?;
    let numbuilds = args.number("numbuilds", NUMBUILDS, 1, 200)?;
    let builders = chosen_builders(site, &args)?;
    let branches = args.all("branch");
    let db = site.services.read.db();
    let page = Page {
        filters: vec![
            Filter {
                column: "builderid",
                op: FilterOp::In,
                values: builders.iter().map(|b| SqlValue::Int(b.0)).collect(),
            },
            Filter {
                column: "results",
                op: FilterOp::In,
                values: vec![SqlValue::Int(2), SqlValue::Int(4)],
            },
        ],
        order: vec![("id", true)],
        // Read more when some will be left out for their branch.
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
    if !branches.is_empty() {
        let ids: Vec<BuildId> = builds.iter().map(|b| b.id).collect();
        let keep: Vec<BuildId> = db
            .build_branches(&ids)
            .await?
            .into_iter()
            .filter(|(_, b)| b.as_deref().is_some_and(|b| branches.contains(&b)))
            .map(|(id, _)| id)
            .collect();
        builds.retain(|b| keep.contains(&b.id));
        builds.truncate(numbuilds as usize);
    }
    let config = site.services.read.config();
    let base = config.buildbot_url.trim_end_matches('/').to_string() + "/";
    let data = context! {
        builds => json(builds.iter().map(shapes::build).collect::<Vec<_>>()),
        names => json(builder_names(site).await?),
        base => base,
        updated => builds.first().and_then(|b| b.complete_at).unwrap_or(site.services.read.now()),
    };
    let mut response = site.render(visit, template, data)?;
    if let Ok(v) = format!("{kind}; charset=utf-8").parse() {
        response.headers_mut().insert(CONTENT_TYPE, v);
    }
    Ok(response.into_response())
}
