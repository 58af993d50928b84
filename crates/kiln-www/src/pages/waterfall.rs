//! The waterfall: the builds of every builder side by side, newest at the top, each with its
//! steps, their results and their logs; the pending requests and the running builds' ETAs above.
//!
//! Query arguments, as the old WebStatus took them: `builder=` or `show=` (repeatable) and
//! `category=` or `tag=` choose the builders, `branch=` the builds, `failures_only=true` keeps
//! the builders whose last build did not succeed; `num_events=` (at most `num_events_max=`)
//! bounds how many builds are shown, `last_time=` and `first_time=` (epoch seconds) or
//! `show_time=` (seconds before `last_time`) the period; `show_events=true` adds the workers'
//! connections and disconnections; `reload=` refreshes the page.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{RawQuery, State};
use axum::response::Response;
use kiln_core::{BuildId, Results};
use kiln_db::BuildRow;
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};
use minijinja::{Value, context};

use super::args::Args;
use super::chart::{self, Cell, Span};
use super::select::chosen_builders;
use super::{PageError, PageResult, Site, Visit, view};

/// Builds shown unless `num_events=` says otherwise.
const NUM_EVENTS: i64 = 200;
/// The most builds one page may show unless `num_events_max=` lowers it.
const NUM_EVENTS_MAX: i64 = 2000;
/// The fewest seconds `reload=` may ask for.
const MIN_RELOAD: i64 = 15;

pub async fn page(State(site): State<Site>, visit: Visit, RawQuery(query): RawQuery) -> Response {
    let result = show(&site, &visit, query.as_deref()).await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit, query: Option<&str>) -> PageResult {
    let args = Args::parse(query)?;
    let max = args.number("num_events_max", NUM_EVENTS_MAX, 1, NUM_EVENTS_MAX)?;
    let num = args.number("num_events", NUM_EVENTS.min(max), 1, max)?;
    let now = site.services.read.now();
    let last_time = args.number("last_time", now, 0, i64::MAX)?;
    let first_time = match args.one("show_time") {
        Some(_) => last_time - args.number("show_time", 0, 1, i64::MAX)?,
        None => args.number("first_time", 0, 0, i64::MAX)?,
    };
    let reload = match args.one("reload") {
        Some(_) => Some(args.number("reload", 60, MIN_RELOAD, 86_400)?),
        None => None,
    };
    let branches = args.all("branch");
    let failures_only = args.flag("failures_only")?;
    let show_events = args.flag("show_events")?;
    let mut builders = chosen_builders(site, visit, &args)?;

    let db = site.services.read.db();
    let mut builds = if builders.is_empty() {
        Vec::new()
    } else {
        let page = Page {
            filters: vec![
                Filter {
                    column: "builderid",
                    op: FilterOp::Among,
                    values: builders.iter().map(|b| SqlValue::Int(b.0)).collect(),
                },
                Filter {
                    column: "started_at",
                    op: FilterOp::Le,
                    values: vec![SqlValue::Int(last_time)],
                },
            ],
            order: vec![("id", true)],
            limit: Some(num),
            offset: None,
            count_total: false,
        };
        db.list_builds(&page).await?.0
    };
    // A build shows if it ran at some point of the period, and the visitor may see it.
    builds.retain(|b| b.complete_at.unwrap_or(now) >= first_time);
    visit.visibility(site).retain(db, &mut builds).await?;
    if !branches.is_empty() {
        let ids: Vec<BuildId> = builds.iter().map(|b| b.id).collect();
        let on_branch: Vec<BuildId> = db
            .build_branches(&ids)
            .await?
            .into_iter()
            .filter(|(_, branch)| branch.as_deref().is_some_and(|b| branches.contains(&b)))
            .map(|(id, _)| id)
            .collect();
        builds.retain(|b| on_branch.contains(&b.id));
    }
    if failures_only {
        let failing = failing_builders(site).await?;
        builders.retain(|b| failing.contains(&b.0));
        builds.retain(|b| builders.iter().any(|x| x.0 == b.builderid.0));
    }

    let mut steps = steps_with_logs(site, &builds).await?;
    let eta = etas(&builds, now);
    let pending = db.unclaimed_buildrequests().await?;
    let column_of: HashMap<i64, usize> =
        builders.iter().enumerate().map(|(i, b)| (b.0, i)).collect();
    let mut spans: Vec<Span> = builds
        .iter()
        .filter_map(|b| {
            column_of.get(&b.builderid.0).map(|&column| Span {
                column,
                id: b.id.0,
                start: b.started_at,
                end: b.complete_at.unwrap_or(now),
            })
        })
        .collect();
    // Worker events are boxes of no duration, with the negative of their position as id.
    let mut events: HashMap<i64, String> = HashMap::new();
    if show_events {
        let since = builds
            .iter()
            .map(|b| b.started_at)
            .min()
            .unwrap_or(first_time)
            .max(first_time);
        for (span, text) in worker_events(site, &column_of, since, last_time, num).await? {
            events.insert(span.id, text);
            spans.push(span);
        }
    }
    let layout = chart::layout(builders.len(), &spans);
    let mut running: HashMap<i64, usize> = HashMap::new();
    for b in builds.iter().filter(|b| b.complete_at.is_none()) {
        *running.entry(b.builderid.0).or_default() += 1;
    }
    let mut waiting: HashMap<i64, usize> = HashMap::new();
    for r in &pending {
        *waiting.entry(r.builderid).or_default() += 1;
    }
    let shown = builds.len();
    let mut boxes: HashMap<i64, Value> = builds
        .into_iter()
        .map(|b| {
            let id = b.id.0;
            let extra = vec![
                ("steps", Value::from(steps.remove(&id).unwrap_or_default())),
                ("eta", Value::from(eta.get(&id).copied())),
            ];
            (id, view::build_with(b, extra))
        })
        .collect();
    let rows: Vec<Value> = layout
        .rows
        .iter()
        .zip(&layout.times)
        .map(|(cells, time)| {
            let cells: Vec<Value> = cells
                .iter()
                .map(|c| match c {
                    Cell::Build { id, rows } if *id < 0 => {
                        context! { event => events.get(id), rows => rows }
                    }
                    Cell::Build { id, rows } => {
                        context! { build => boxes.remove(id), rows => rows }
                    }
                    Cell::Empty { rows } => context! { rows => rows },
                })
                .collect();
            context! { time => time, cells => cells }
        })
        .collect();
    let columns: Vec<Value> = builders
        .iter()
        .zip(&layout.lanes)
        .map(|((id, name, tags), lanes)| {
            context! {
                builderid => id,
                name => name,
                tags => tags,
                lanes => lanes,
                pending => waiting.get(id).copied().unwrap_or(0),
                running => running.get(id).copied().unwrap_or(0),
            }
        })
        .collect();
    let data = context! {
        columns => columns,
        rows => rows,
        reload => reload,
        shown => shown,
        num_events => num,
    };
    site.render(visit, "waterfall.html", data)
}

/// The connections and disconnections of the builders' workers in the period, as spans in each
/// builder's column the worker serves, with their text.
async fn worker_events(
    site: &Site,
    column_of: &HashMap<i64, usize>,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<(Span, String)>, PageError> {
    let db = site.services.read.db();
    let events = db.worker_events(from, to, limit).await?;
    let ids: Vec<i64> = events
        .iter()
        .filter_map(|e| e.key.split('.').nth(1)?.parse().ok())
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let workers = db.list_workers(&Page::among("id", ids)).await?.0;
    let mut out = Vec::new();
    for e in &events {
        let mut parts = e.key.split('.').skip(1);
        let (Some(Ok(id)), Some(verb)) = (parts.next().map(str::parse::<i64>), parts.next()) else {
            continue;
        };
        let Some(worker) = workers.iter().find(|w| w.id.0 == id) else {
            continue;
        };
        for (builder, _) in &worker.configured_on {
            if let Some(&column) = column_of.get(builder) {
                let span = Span {
                    column,
                    id: -e.id,
                    start: e.at,
                    end: e.at,
                };
                out.push((span, format!("{} {verb}", worker.name)));
            }
        }
    }
    Ok(out)
}

/// The builders whose latest finished build did not succeed.
async fn failing_builders(site: &Site) -> Result<Vec<i64>, PageError> {
    let mut last: BTreeMap<i64, Option<i64>> = BTreeMap::new();
    for b in site.services.read.db().latest_builds(5).await? {
        if b.complete_at.is_some() {
            last.entry(b.builderid.0).or_insert(b.results);
        }
    }
    Ok(last
        .into_iter()
        .filter(|(_, r)| r.and_then(Results::from_code) != Some(Results::Success))
        .map(|(id, _)| id)
        .collect())
}

/// Each build's steps, in order, each with its logs; two queries for all the builds.
async fn steps_with_logs(
    site: &Site,
    builds: &[BuildRow],
) -> Result<HashMap<i64, Vec<Value>>, PageError> {
    let mut out: HashMap<i64, Vec<Value>> = HashMap::new();
    if builds.is_empty() {
        return Ok(out);
    }
    let db = site.services.read.db();
    let mut page = Page::among("buildid", builds.iter().map(|b| b.id.0));
    page.order = vec![("number", false)];
    let steps = db.list_steps(&page).await?.0;
    let ids: Vec<BuildId> = builds.iter().map(|b| b.id).collect();
    let mut logs: HashMap<i64, Vec<Value>> = HashMap::new();
    for l in db.logs_of_builds(&ids).await? {
        logs.entry(l.stepid.0).or_default().push(view::log(l));
    }
    for s in steps.into_iter().filter(|s| !s.hidden) {
        let extra = vec![(
            "logs",
            Value::from(logs.remove(&s.id.0).unwrap_or_default()),
        )];
        out.entry(s.buildid.0)
            .or_default()
            .push(view::step_with(s, extra));
    }
    Ok(out)
}

/// Seconds until each running build is expected to end: its builder's mean duration over the
/// successful builds shown, less the time it has run.
fn etas(builds: &[BuildRow], now: i64) -> HashMap<i64, i64> {
    let mut sums: HashMap<i64, (i64, i64)> = HashMap::new();
    for b in builds {
        if let (Some(end), Some(0)) = (b.complete_at, b.results) {
            let e = sums.entry(b.builderid.0).or_default();
            e.0 += end - b.started_at;
            e.1 += 1;
        }
    }
    builds
        .iter()
        .filter(|b| b.complete_at.is_none())
        .filter_map(|b| {
            let (sum, n) = sums.get(&b.builderid.0)?;
            Some((b.id.0, (b.started_at + sum / n - now).max(0)))
        })
        .collect()
}
