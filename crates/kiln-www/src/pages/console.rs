//! The console: one row per change, newest first, one column per builder, each cell the build
//! that first included the change, coloured as Buildbot's console colours it: green passed, red
//! newly failing, orange still failing, yellow running.
//!
//! A build includes a change when its source stamps carry that change or a later one of the same
//! repository and branch. Query arguments: `builder=` and `category=`/`tag=` choose the columns;
//! `repository=`, `branch=`, `project=`, `codebase=` and `name=` (the author) the changes;
//! `num=` how many.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use kiln_core::{BuildId, Results};
use kiln_db::listing::{FilterOp, Page, SqlValue};
use kiln_db::{BuildRow, ChangeRow};
use minijinja::{Value, context};

use super::args::Args;
use super::select::chosen_builders;
use super::{PageResult, Site, Visit, from_json, view};

/// A builder's builds of one repository and branch.
type Lane<'a> = (i64, &'a str, Option<&'a str>);

/// Changes shown unless `num=` says otherwise.
const NUM: i64 = 25;
/// The most changes one console may show.
const MAX_NUM: i64 = 500;

pub async fn page(State(site): State<Site>, visit: Visit, RawQuery(query): RawQuery) -> Response {
    let result = show(&site, &visit, query.as_deref()).await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit, query: Option<&str>) -> PageResult {
    let args = Args::parse(query)?;
    let num = args.number("num", NUM, 1, MAX_NUM)?;
    let builders = chosen_builders(site, visit, &args)?;
    let db = site.services.read.db();
    let mut page = Page {
        order: vec![("changeid", true)],
        limit: Some(num),
        ..Page::default()
    };
    for column in ["repository", "branch", "project", "codebase"] {
        if let Some(v) = args.one(column) {
            page = page.and(column, FilterOp::Eq, SqlValue::Text(v.to_string()));
        }
    }
    if let Some(who) = args.one("name") {
        page = page.and(
            "author",
            FilterOp::Contains,
            SqlValue::Text(who.to_string()),
        );
    }
    let changes = db.list_changes(&page).await?.0;
    let config = site.services.read.config();
    let links = super::links::Links::new(&config);
    let ids: Vec<i64> = builders.iter().map(|b| b.0).collect();
    let oldest = changes.iter().map(|c| c.id.0).min().unwrap_or(i64::MAX);
    let covering = if changes.is_empty() {
        Vec::new()
    } else {
        db.builds_with_changes(&ids, oldest).await?
    };
    let vis = visit.visibility(site);
    let covering = if vis.everything() {
        covering
    } else {
        let pairs: Vec<_> = covering
            .iter()
            .map(|c| (c.build.id, c.build.builderid.0))
            .collect();
        let seen = vis.seen(db, &pairs).await?;
        covering
            .into_iter()
            .filter(|c| seen.contains(&c.build.id))
            .collect()
    };
    // Each builder's builds by the repository and branch they built, with the newest change of
    // theirs, so that a cell is found without going through every build.
    let mut built: HashMap<Lane, Vec<(i64, BuildId)>> = HashMap::new();
    // A build's cell is the same in every row it covers: made once, shared.
    let mut cells: HashMap<BuildId, Value> = HashMap::new();
    for c in &covering {
        let b = &c.build;
        built
            .entry((b.builderid.0, c.repository.as_str(), c.branch.as_deref()))
            .or_default()
            .push((c.newest_change, b.id));
        cells.entry(b.id).or_insert_with(|| {
            let class = colour(b, c.previous_results);
            context! { build => view::build(b.clone()), class => class }
        });
    }
    let not_built = Value::from(());
    let cell = |builder: i64, c: &ChangeRow| -> Value {
        // The earliest build on this builder that includes the change.
        let first = built
            .get(&(builder, c.repository.as_str(), c.branch.as_deref()))
            .and_then(|on| {
                on.iter()
                    .filter(|(newest, _)| *newest >= c.id.0)
                    .map(|(_, id)| *id)
                    .min()
            });
        first
            .and_then(|id| cells.get(&id))
            .unwrap_or(&not_built)
            .clone()
    };
    let rows: Vec<Value> = changes
        .iter()
        .map(|c| {
            let cells: Vec<Value> = builders.iter().map(|(b, _, _)| cell(*b, c)).collect();
            context! { change => from_json(&links.change(c)), cells => cells }
        })
        .collect();
    let builders: Vec<Value> = builders
        .iter()
        .map(|(id, name, tags)| context! { builderid => id, name => name, tags => tags })
        .collect();
    let data = context! { builders => builders, changes => rows, num => num };
    site.render(visit, "console.html", data)
}

/// Buildbot's console colours: passed, newly failing, still failing, running.
fn colour(build: &BuildRow, previous: Option<i64>) -> &'static str {
    let failed = |r: Option<i64>| {
        matches!(
            r.and_then(Results::from_code),
            Some(Results::Failure | Results::Exception)
        )
    };
    match build.results {
        None => "running",
        r if failed(r) && failed(previous) => "still-failing",
        r if failed(r) => "newly-failing",
        Some(0 | 1) => "passed",
        _ => "other",
    }
}
