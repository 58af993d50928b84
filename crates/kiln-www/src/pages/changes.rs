//! The changes: the latest ones, and a change's page with every build that included it or its
//! revision, on every builder.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use kiln_db::listing::{FilterOp, Page, SqlValue};
use minijinja::context;

use super::args::Args;
use super::links::Links;
use super::select::builder_names;
use super::{PageError, PageResult, Site, Visit, json, view};

/// How many changes the list shows unless `num=` says otherwise.
const NUM: i64 = 50;

pub async fn list(State(site): State<Site>, visit: Visit, RawQuery(query): RawQuery) -> Response {
    let result = show_list(&site, &visit, query.as_deref()).await;
    site.answer(&visit, result)
}

async fn show_list(site: &Site, visit: &Visit, query: Option<&str>) -> PageResult {
    let args = Args::parse(query)?;
    let num = args.number("num", NUM, 1, 1000)?;
    let page = Page {
        order: vec![("changeid", true)],
        limit: Some(num),
        ..Page::default()
    };
    let changes = site.services.read.db().list_changes(&page).await?.0;
    let config = site.services.read.config();
    let links = Links::new(&config);
    let changes: Vec<serde_json::Value> = changes.iter().map(|c| links.change(c)).collect();
    site.render(
        visit,
        "changes.html",
        context! { changes => json(&changes), num => num },
    )
}

pub async fn page(State(site): State<Site>, visit: Visit, Path(change): Path<String>) -> Response {
    let result = show(&site, &visit, &change).await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit, key: &str) -> PageResult {
    let db = site.services.read.db();
    let missing = || PageError::not_found(format!("there is no change '{key}'"));
    let id: i64 = key.parse().map_err(|_| missing())?;
    let change = db
        .list_changes(&Page::eq("changeid", SqlValue::Int(id)))
        .await?
        .0
        .pop()
        .ok_or_else(missing)?;
    // The builds of this change's source stamp, and of every other change with its revision in
    // the same repository: a rebuild or a build on another scheduler of the same code.
    let mut build_ids = db.change_build_ids(change.id).await?;
    if let Some(rev) = change.revision.as_ref().filter(|r| !r.is_empty()) {
        let same = Page::eq("revision", SqlValue::Text(rev.clone())).and(
            "repository",
            FilterOp::Eq,
            SqlValue::Text(change.repository.clone()),
        );
        for other in db.list_changes(&same).await?.0 {
            if other.id != change.id {
                build_ids.extend(db.change_build_ids(other.id).await?);
            }
        }
    }
    build_ids.sort_unstable();
    build_ids.dedup();
    let builds = if build_ids.is_empty() {
        Vec::new()
    } else {
        let mut page = Page::among("id", build_ids);
        page.order = vec![("id", true)];
        db.list_builds(&page).await?.0
    };
    let mut builds = builds;
    visit.visibility(site).retain(db, &mut builds).await?;
    let data = context! {
        change => json(Links::new(&site.services.read.config()).change(&change)),
        builds => view::builds(builds),
        names => builder_names(site).await?,
    };
    site.render(visit, "change.html", data)
}
