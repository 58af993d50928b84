//! Status badges for READMEs: `/badges/<builder>.svg` (and `/plugins/badges/<builder>.svg`, where
//! Buildbot's badges plugin serves them), the builder named or numbered. The status is that of
//! the builder's latest build (on `branch=` if given): `running` or its result; `unknown` when
//! there is none, still with status 200 so that a README shows it. `left_text=` and
//! `left_color=` change the left half.

use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use kiln_core::Results;
use kiln_db::listing::{Page, SqlValue};
use minijinja::context;

use super::args::Args;
use super::{PageResult, Site, Visit, builders};

/// Builds looked at for the latest one on a branch.
const BRANCH_LOOKBACK: i64 = 50;
/// Roughly how wide a character of the badge's 11-pixel font is: there is no font to measure
/// with, and a badge a little too wide reads fine.
const CHAR_WIDTH: f64 = 6.5;

pub async fn badge(
    State(site): State<Site>,
    visit: Visit,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = show(&site, &visit, &file, query.as_deref()).await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit, file: &str, query: Option<&str>) -> PageResult {
    let args = Args::parse(query)?;
    let Some(builder) = file.strip_suffix(".svg") else {
        return Err(super::PageError::not_found(format!(
            "badges are SVG files: there is no badge '{file}'"
        )));
    };
    let status = status(site, visit, builder, args.one("branch")).await?;
    let left = args.one("left_text").unwrap_or("Build Status").to_string();
    let left_color = args.one("left_color").unwrap_or("#555").to_string();
    let color = match status.as_str() {
        "success" => "#4c1",
        "failure" => "#e05d44",
        "warnings" => "#dfb317",
        "running" | "exception" | "retry" => "#007ec6",
        "skipped" => "#a4a61d",
        _ => "#9f9f9f",
    };
    let left_width = (left.chars().count() as f64 * CHAR_WIDTH + 10.0).round();
    let right_width = (status.chars().count() as f64 * CHAR_WIDTH + 10.0).round();
    let data = context! {
        left => left,
        left_color => left_color,
        right => status,
        color => color,
        left_width => left_width,
        right_width => right_width,
        width => left_width + right_width,
    };
    let mut response = site.render(visit, "badge.svg", data)?;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        "image/svg+xml".parse().expect("a valid header"),
    );
    headers.insert(CACHE_CONTROL, "no-cache".parse().expect("a valid header"));
    Ok(response.into_response())
}

/// The status of a builder's latest build, as a badge names it.
async fn status(
    site: &Site,
    visit: &Visit,
    builder: &str,
    branch: Option<&str>,
) -> Result<String, super::PageError> {
    let Ok(b) = builders::find(site, builder).await else {
        return Ok("unknown".into());
    };
    // A badge of builds the visitor may not see says no more than one of no builder.
    if !visit.visibility(site).builder(b.id.0) {
        return Ok("unknown".into());
    }
    let db = site.services.read.db();
    let page = Page {
        order: vec![("number", true)],
        limit: Some(if branch.is_some() { BRANCH_LOOKBACK } else { 1 }),
        ..Page::eq("builderid", SqlValue::Int(b.id.0))
    };
    let builds = db.list_builds(&page).await?.0;
    let latest = match branch {
        None => builds.first(),
        Some(wanted) => {
            let ids: Vec<_> = builds.iter().map(|b| b.id).collect();
            let on: Vec<_> = db
                .build_branches(&ids)
                .await?
                .into_iter()
                .filter(|(_, br)| br.as_deref() == Some(wanted))
                .map(|(id, _)| id)
                .collect();
            builds.iter().find(|b| on.contains(&b.id))
        }
    };
    Ok(match latest {
        None => "unknown".into(),
        Some(b) if b.complete_at.is_none() => "running".into(),
        Some(b) => b
            .results
            .and_then(Results::from_code)
            .map_or("unknown".into(), |r| r.name().to_ascii_lowercase()),
    })
}
