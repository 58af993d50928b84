//! The feeds of failed builds, RSS 2.0 at `/rss` and Atom at `/atom`, with the waterfall's
//! choice of builders (`builder=`, `category=`/`tag=`) and `branch=`; `numbuilds=` how many.

use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use kiln_db::listing::{Filter, FilterOp, SqlValue};
use minijinja::context;

use super::args::Args;
use super::select::builder_names;
use super::select::{chosen_builders, latest_on};
use super::{PageResult, Site, Visit, view};

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
    let builders = chosen_builders(site, visit, &args)?;
    let branches = args.all("branch");
    let failed = Filter {
        column: "results",
        op: FilterOp::In,
        values: vec![SqlValue::Int(2), SqlValue::Int(4)],
    };
    let mut builds: Vec<_> = latest_on(site, &builders, &branches, vec![failed], numbuilds)
        .await?
        .into_iter()
        .map(|(b, _)| b)
        .collect();
    visit
        .visibility(site)
        .retain(site.services.read.db(), &mut builds)
        .await?;
    let config = site.services.read.config();
    let base = config.buildbot_url.trim_end_matches('/').to_string() + "/";
    let data = context! {
        builds => view::builds(builds.iter().cloned()),
        names => builder_names(site).await?,
        base => base,
        updated => builds.first().and_then(|b| b.complete_at).unwrap_or(site.services.read.now()),
    };
    let mut response = site.render(visit, template, data)?;
    if let Ok(v) = format!("{kind}; charset=utf-8").parse() {
        response.headers_mut().insert(CONTENT_TYPE, v);
    }
    Ok(response.into_response())
}
