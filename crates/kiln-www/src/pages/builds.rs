//! A build's page: its steps with their logs, its properties with their sources, its source
//! stamps and changes, who it is for, the builds around it, and the stop and rebuild controls.

use axum::extract::{Path, State};
use axum::response::Response;
use kiln_api::shapes;
use kiln_core::{BuildId, WorkerId};
use kiln_db::BuildRow;
use kiln_db::listing::{FilterOp, Page, SqlValue};
use minijinja::context;
use serde_json::json;

use super::{PageError, PageResult, Site, Visit, builders, json};

pub async fn page(
    State(site): State<Site>,
    visit: Visit,
    Path((builder, number)): Path<(String, String)>,
) -> Response {
    let result = show(&site, &visit, &builder, &number).await;
    site.answer(&visit, result)
}

/// A build by its builder (id or name) and number.
pub async fn find(
    site: &Site,
    visit: &super::Visit,
    builder: &str,
    number: &str,
) -> Result<BuildRow, PageError> {
    let b = builders::find(site, builder).await?;
    site.may_see(visit, b.id.0, &b.name)?;
    let vis = visit.visibility(site);
    let missing = || PageError::not_found(format!("builder '{}' has no build {number}", b.name));
    let number: i64 = number.parse().map_err(|_| missing())?;
    let page = Page::eq("builderid", SqlValue::Int(b.id.0)).and(
        "number",
        FilterOp::Eq,
        SqlValue::Int(number),
    );
    let db = site.services.read.db();
    let build = db.list_builds(&page).await?.0.pop().ok_or_else(missing)?;
    if !vis.build(db, build.id).await? {
        return Err(PageError {
            status: axum::http::StatusCode::FORBIDDEN,
            message: format!("you may not see build {number} of {}", b.name),
        });
    }
    Ok(build)
}

async fn show(site: &Site, visit: &Visit, builder: &str, number: &str) -> PageResult {
    let build = find(site, visit, builder, number).await?;
    let read = &site.services.read;
    let db = read.db();
    let builder = builders::find(site, &build.builderid.0.to_string()).await?;

    let mut steps_page = Page::eq("buildid", SqlValue::Int(build.id.0));
    steps_page.order = vec![("number", false)];
    let steps = db.list_steps(&steps_page).await?.0;
    let logs = if steps.is_empty() {
        Vec::new()
    } else {
        db.list_logs(&Page::among("stepid", steps.iter().map(|s| s.id.0)))
            .await?
            .0
    };
    let steps: Vec<serde_json::Value> = steps
        .iter()
        .map(|s| {
            let mut v = shapes::step(s);
            v["logs"] = logs
                .iter()
                .filter(|l| l.stepid == s.id)
                .map(shapes::log)
                .collect();
            v
        })
        .collect();

    let properties: Vec<serde_json::Value> = db
        .build_properties(build.id)
        .await?
        .into_iter()
        .map(|p| json!({"name": p.name, "value": display_value(&p.value), "source": p.source}))
        .collect();
    let request = db.get_buildrequest(build.buildrequestid).await?;
    let buildset = match &request {
        Some(r) => db.get_buildset(r.buildsetid).await?,
        None => None,
    };
    let sourcestamps: Vec<serde_json::Value> = match &buildset {
        Some(bs) => db
            .buildset_sourcestamps(bs.id)
            .await?
            .iter()
            .map(shapes::sourcestamp)
            .collect(),
        None => Vec::new(),
    };
    let change_ids = db.build_change_ids(build.id).await?;
    let config = read.config();
    let links = super::links::Links::new(&config);
    let changes: Vec<serde_json::Value> = if change_ids.is_empty() {
        Vec::new()
    } else {
        db.list_changes(&Page::among("changeid", change_ids))
            .await?
            .0
            .iter()
            .map(|c| links.change(c))
            .collect()
    };
    let users = read.build_users(build.id).await?;
    let parent = match buildset.as_ref().and_then(|bs| bs.parent_buildid) {
        Some(id) => link(site, BuildId(id)).await?,
        None => None,
    };
    let triggered = triggered_builds(site, build.id).await?;
    let tests: Vec<serde_json::Value> = db
        .list_test_result_sets(&Page::eq("buildid", SqlValue::Int(build.id.0)))
        .await?
        .0
        .iter()
        .map(shapes::test_result_set)
        .collect();
    let worker = build.workerid.and_then(|w| read.worker_name(WorkerId(w)));
    let running = build.complete_at.is_none();
    let data = context! {
        build => json(shapes::build(&build)),
        builder => json(shapes::builder(&builder)),
        steps => json(&steps),
        properties => json(&properties),
        got_revision => properties.iter().find(|p| p["name"] == "got_revision").map(|p| p["value"].clone()).map(|v| json(&v)),
        sourcestamps => json(&sourcestamps),
        changes => json(&changes),
        blamelist => users.blamelist,
        owners => users.owners,
        reason => buildset.as_ref().and_then(|bs| bs.reason.clone()),
        parent => parent.map(|p| json(&p)),
        triggered => json(&triggered),
        tests => json(&tests),
        worker => worker,
        running => running,
    };
    site.render(visit, "build.html", data)
}

/// A property's value as text: strings as they are, anything else as JSON.
fn display_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a page needs to link to a build: its builder's id and name, and its number.
async fn link(site: &Site, id: BuildId) -> Result<Option<serde_json::Value>, PageError> {
    let db = site.services.read.db();
    let Some(b) = db.get_build(id).await? else {
        return Ok(None);
    };
    let name = builders::find(site, &b.builderid.0.to_string())
        .await
        .map(|r| r.name)
        .unwrap_or_default();
    Ok(Some(json!({
        "builderid": b.builderid.0,
        "builder": name,
        "number": b.number,
        "results": b.results,
    })))
}

/// The builds of the buildsets this build triggered, and the requests that have not started.
async fn triggered_builds(
    site: &Site,
    build: BuildId,
) -> Result<Vec<serde_json::Value>, PageError> {
    let db = site.services.read.db();
    let sets = db
        .list_buildsets(&Page::eq("parent_buildid", SqlValue::Int(build.0)))
        .await?
        .0;
    let mut out = Vec::new();
    for set in sets {
        let requests = db
            .list_buildrequests(&Page::eq("br.buildsetid", SqlValue::Int(set.id.0)))
            .await?
            .0;
        for r in requests {
            let builds = db
                .list_builds(&Page::eq("buildrequestid", SqlValue::Int(r.id.0)))
                .await?
                .0;
            if builds.is_empty() {
                out.push(json!({"buildrequestid": r.id.0, "buildsetid": set.id.0}));
            }
            for b in builds {
                if let Some(l) = link(site, b.id).await? {
                    out.push(l);
                }
            }
        }
    }
    Ok(out)
}
