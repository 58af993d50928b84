//! A log's page: one page of its lines at a time, each with its anchor and its stream (stdout,
//! stderr or header) told apart, ANSI colours rendered, a search, and links to the plain text
//! and the download. However long the log, the page reads only the lines it shows.

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use kiln_api::shapes;
use kiln_db::LogRow;
use kiln_db::listing::{FilterOp, Page, SqlValue};
use minijinja::context;
use serde_json::json;

use super::args::Args;
use super::{PageError, PageResult, Site, Visit, builds, json};

/// Lines per page unless `lines=` says otherwise.
const PAGE_LINES: i64 = 1000;
/// The most lines one page may show.
const MAX_PAGE_LINES: i64 = 10_000;
/// The most matches a search lists.
const MAX_MATCHES: usize = 1000;
/// Lines read from the database per batch while searching.
const SEARCH_BATCH: i64 = 5000;

pub async fn page(
    State(site): State<Site>,
    visit: Visit,
    Path((builder, number, step, slug)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = show(
        &site,
        &visit,
        [&builder, &number, &step, &slug],
        query.as_deref(),
    )
    .await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit, path: [&str; 4], query: Option<&str>) -> PageResult {
    let [builder, number, step, slug] = path;
    let args = Args::parse(query)?;
    let build = builds::find(site, visit, builder, number).await?;
    let db = site.services.read.db();
    let missing = || {
        PageError::not_found(format!(
            "build {number} of {builder} has no log {step}/{slug}"
        ))
    };
    let step_number: i64 = step.parse().map_err(|_| missing())?;
    let step_row = db
        .list_steps(&Page::eq("buildid", SqlValue::Int(build.id.0)).and(
            "number",
            FilterOp::Eq,
            SqlValue::Int(step_number),
        ))
        .await?
        .0
        .pop()
        .ok_or_else(missing)?;
    let log = db
        .list_logs(&Page::eq("stepid", SqlValue::Int(step_row.id.0)).and(
            "slug",
            FilterOp::Eq,
            SqlValue::Text(slug.to_string()),
        ))
        .await?
        .0
        .pop()
        .ok_or_else(missing)?;

    let count = args.number("lines", PAGE_LINES, 1, MAX_PAGE_LINES)?;
    let last_page = (log.num_lines - count).max(0);
    let first = args
        .number("first", last_page, 0, i64::MAX)?
        .min(last_page.max(0));
    let lines = lines(site, &log, first, count).await?;
    let search = args.one("search").map(str::to_string);
    let matches = match &search {
        Some(text) => find(site, &log, text).await?,
        None => Vec::new(),
    };
    let data = context! {
        build => json(shapes::build(&build)),
        builder => builder,
        step => json(shapes::step(&step_row)),
        log => json(shapes::log(&log)),
        lines => json(&lines),
        first => first,
        count => count,
        last_page => last_page,
        search => search,
        matches => json(&matches),
        too_many => matches.len() >= MAX_MATCHES,
    };
    site.render(visit, "log.html", data)
}

/// The stream a stored line belongs to, from its one-character prefix in a stdio log.
fn split_stream<'a>(log: &LogRow, line: &'a str) -> (&'static str, &'a str) {
    if log.log_type != "s" {
        return ("o", line);
    }
    match line.chars().next() {
        Some('e') => ("e", &line[1..]),
        Some('h') => ("h", &line[1..]),
        Some(c) => ("o", &line[c.len_utf8()..]),
        None => ("o", line),
    }
}

/// Lines `first .. first + count` as the template shows them. A line with ANSI escapes comes as
/// HTML (the converter escapes the text itself); any other as text for the template to escape.
async fn lines(
    site: &Site,
    log: &LogRow,
    first: i64,
    count: i64,
) -> Result<Vec<serde_json::Value>, PageError> {
    let db = site.services.read.db();
    let raw = db.log_lines(log.id, first, first + count - 1).await?;
    Ok(raw
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let (stream, text) = split_stream(log, line);
            let html = text
                .contains('\x1b')
                .then(|| ansi_to_html::convert(text).ok())
                .flatten();
            json!({"n": first + i as i64, "stream": stream, "text": text, "html": html})
        })
        .collect())
}

/// The lines that contain `text`, case-insensitively, read batch by batch so that searching a
/// large log holds one batch at a time.
async fn find(site: &Site, log: &LogRow, text: &str) -> Result<Vec<serde_json::Value>, PageError> {
    let db = site.services.read.db();
    let needle = text.to_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while from < log.num_lines && out.len() < MAX_MATCHES {
        let batch = db.log_lines(log.id, from, from + SEARCH_BATCH - 1).await?;
        if batch.is_empty() {
            break;
        }
        for (i, line) in batch.iter().enumerate() {
            let (_, content) = split_stream(log, line);
            if content.to_lowercase().contains(&needle) {
                out.push(json!({"n": from + i as i64, "text": content}));
                if out.len() >= MAX_MATCHES {
                    break;
                }
            }
        }
        from += SEARCH_BATCH;
    }
    Ok(out)
}
