//! `one_line_per_build`: the latest builds of every builder, one line each, newest first, with
//! `numbuilds=`, `builder=` and `branch=` as in the old WebStatus.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use minijinja::{Value, context};

use super::args::Args;
use super::select::builder_names;
use super::select::{chosen_builders, latest_on};
use super::{PageResult, Site, Visit, view};

/// Builds listed unless `numbuilds=` says otherwise, as in Buildbot.
const NUMBUILDS: i64 = 20;

pub async fn page(State(site): State<Site>, visit: Visit, RawQuery(query): RawQuery) -> Response {
    let result = show(&site, &visit, query.as_deref()).await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit, query: Option<&str>) -> PageResult {
    let args = Args::parse(query)?;
    let numbuilds = args.number("numbuilds", NUMBUILDS, 1, 1000)?;
    let builders = chosen_builders(site, visit, &args)?;
    let branches = args.all("branch");
    let mut builds = latest_on(site, &builders, &branches, Vec::new(), numbuilds).await?;
    let vis = visit.visibility(site);
    if !vis.everything() {
        let pairs: Vec<_> = builds.iter().map(|(b, _)| (b.id, b.builderid.0)).collect();
        let seen = vis.seen(site.services.read.db(), &pairs).await?;
        builds.retain(|(b, _)| seen.contains(&b.id));
    }
    let rows: Vec<Value> = builds
        .into_iter()
        .map(|(b, on)| {
            let branch = Value::from(on.into_iter().next());
            view::build_with(b, vec![("branch", branch)])
        })
        .collect();
    let data = context! {
        builds => rows,
        names => builder_names(site).await?,
        numbuilds => numbuilds,
    };
    site.render(visit, "one_line_per_build.html", data)
}
