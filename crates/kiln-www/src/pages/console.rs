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
use kiln_api::shapes;
use kiln_core::{BuildId, Results};
use kiln_db::BuildRow;
use kiln_db::listing::{FilterOp, Page, SqlValue};
use minijinja::context;
use serde_json::json;

use super::args::Args;
use super::builds::any_of;
use super::select::chosen_builders;
use super::{PageResult, Site, Visit, json};

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
    let builders = chosen_builders(site, &args)?;
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
    let build_ids: Vec<i64> = covering.iter().map(|c| c.0.0).collect();
    let builds = if build_ids.is_empty() {
        Vec::new()
    } else {
        db.list_builds(&any_of("id", build_ids)).await?.0
    };
    let by_id: HashMap<BuildId, &BuildRow> = builds.iter().map(|b| (b.id, b)).collect();
    let previous = previous_results(site, &builds).await?;

    let rows: Vec<serde_json::Value> = changes
        .iter()
        .map(|c| {
            let cells: Vec<serde_json::Value> = builders
                .iter()
                .map(|(builder, _, _)| {
                    // The earliest build on this builder that includes the change.
                    let first = covering
                        .iter()
                        .filter(|(_, repo, branch, newest)| {
                            *repo == c.repository && *branch == c.branch && *newest >= c.id.0
                        })
                        .filter_map(|(id, ..)| by_id.get(id))
                        .filter(|b| b.builderid.0 == *builder)
                        .min_by_key(|b| b.id);
                    match first {
                        Some(b) => json!({
                            "build": shapes::build(b),
                            "class": colour(b, previous.get(&b.id).copied().flatten()),
                        }),
                        None => json!({"class": "notbuilt"}),
                    }
                })
                .collect();
            let mut change = links.change(c);
            change["cells"] = json!(cells);
            change
        })
        .collect();
    let builders: Vec<serde_json::Value> = builders
        .iter()
        .map(|(id, name, tags)| json!({"builderid": id, "name": name, "tags": tags}))
        .collect();
    let data = context! { builders => json(&builders), changes => json(&rows), num => num };
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

/// The result of the build before each of `builds` on its builder.
async fn previous_results(
    site: &Site,
    builds: &[BuildRow],
) -> Result<HashMap<BuildId, Option<i64>>, super::PageError> {
    let ids: Vec<BuildId> = builds.iter().map(|b| b.id).collect();
    Ok(site
        .services
        .read
        .db()
        .previous_results(&ids)
        .await?
        .into_iter()
        .collect())
}
