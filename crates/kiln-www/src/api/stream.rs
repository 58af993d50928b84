//! A collection of a kind that grows with history (builds, changes, steps, …), answered in
//! bounded memory: the ids of the matching rows are read first, in order (eight bytes a row),
//! then the rows a batch at a time, finished for what SQL could not do, and written out as they
//! come. A `GET /api/v2/changes` of 100,000 changes never holds more than one batch.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use kiln_api::Services;
use kiln_db::listing::{Filter, FilterOp, Listed, Page, SqlValue};
use serde_json::Value;
use tokio::sync::mpsc;

use super::fields::Ty;
use super::limits::{Deadline, Limits};
use super::query::{self, ApiFilter, MAX_SCAN, Query};
use super::{ApiError, confine, paths};
use crate::auth::read::Visibility;

/// Rows read and written out at a time.
const BATCH: usize = 500;
/// Answers of more rows than this are large: they take one of `api_large_queries` turns.
const LARGE: usize = 1_000;
/// Batches written ahead of a slow client.
const QUEUE: usize = 2;

/// What is left to do once the ids are known.
struct Plan {
    /// The rows to read, in the answer's order.
    ids: Vec<i64>,
    /// Filters SQL could not apply, tested on each item.
    rest: Vec<ApiFilter>,
    /// The paging still to apply after `rest`, when SQL could not page.
    window: Option<Window>,
    /// The number of matching rows, when SQL counted them; otherwise the items are counted as
    /// they are tested.
    total: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    offset: usize,
    limit: Option<usize>,
}

impl Window {
    fn of(q: &Query) -> Window {
        Window {
            offset: q.offset.unwrap_or(0).max(0) as usize,
            limit: q.limit.map(|l| l.max(0) as usize),
        }
    }

    fn holds(&self, n: usize) -> bool {
        n >= self.offset && self.limit.is_none_or(|l| n - self.offset < l)
    }
}

/// Answers `GET` of the collection `ty` (with its path's `base` filters) with the query `q`.
#[allow(clippy::too_many_arguments)]
pub async fn collection(
    services: &Services,
    limits: &Limits,
    vis: &Visibility,
    ty: Ty,
    listed: Listed,
    base: Vec<Filter>,
    q: Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    // Each part of the work (reading the ids, waiting for a turn, writing the answer) has its
    // own bound: time spent waiting for a turn is not taken from the writing. An answer ahead
    // holds its turn for at most one timeout once it has it, so a wait of two is enough for the
    // next in line; a longer queue is refused rather than kept.
    let seconds = services.read.config().www.api_timeout;
    let plan = Deadline::starting_now(seconds)
        .bound(plan(services, vis, ty, listed, base, &q))
        .await?;
    let turn = if plan.ids.len() > LARGE {
        let wait = Deadline::starting_now(seconds.saturating_mul(2));
        Some(limits.large_turn(&wait).await?)
    } else {
        None
    };
    let deadline = Deadline::starting_now(seconds);
    let format = Format::of(headers);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(QUEUE);
    let services = services.clone();
    let vis = vis.clone();
    tokio::spawn(async move {
        let written = deadline
            .bound(write(&services, &vis, ty, listed, plan, &q, format, &tx))
            .await;
        // The turn is given back as soon as the writing ends, however it ends: a client that
        // stopped reading holds its connection, not the turn.
        drop(turn);
        let error = match written {
            Ok(()) => return,
            Err(ApiError::Unavailable(_)) if tx.is_closed() => return,
            Err(e) => e,
        };
        // The status line is gone: the client learns of the failure from a cut answer.
        tracing::warn!(collection = ty.plural(), error = %error, "a REST API answer was cut off");
        let _ = tx.send(Err(std::io::Error::other(error.to_string()))).await;
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.mime()),
    );
    Ok(response)
}

/// Reads the ids of the answer, and says what is left to do on its rows.
async fn plan(
    services: &Services,
    vis: &Visibility,
    ty: Ty,
    listed: Listed,
    base: Vec<Filter>,
    q: &Query,
) -> Result<Plan, ApiError> {
    let db = services.read.db();
    let (page, rest, all) = query::push_down(q, ty.fields(), base)?;
    if all {
        let (ids, total) = db.list_ids(listed, &page).await?;
        return Ok(Plan {
            ids,
            rest,
            window: None,
            total: Some(total),
        });
    }
    // What SQL cannot filter is tested on each candidate; their number is bounded.
    let (ids, _) = db.list_ids(listed, &page).await?;
    if ids.len() as i64 > MAX_SCAN {
        return Err(ApiError::BadRequest(format!(
            "this query needs more than {MAX_SCAN} rows filtered in memory; narrow it with filters on stored fields"
        )));
    }
    if !page.order.is_empty() || q.order.is_empty() {
        return Ok(Plan {
            ids,
            rest,
            window: Some(Window::of(q)),
            total: None,
        });
    }
    // An order SQL cannot give: the candidates that pass are read once for their sort keys,
    // which are all that is kept of them, and sorted.
    let mut keyed: Vec<(Vec<Value>, i64)> = Vec::new();
    for chunk in ids.chunks(BATCH) {
        let mut items = by_ids(services, ty, listed, chunk).await?;
        confine::by_origin(services, vis, ty, &mut items).await?;
        for item in items {
            if rest.iter().all(|f| query::holds(&item, f)) {
                let keys = q
                    .order
                    .iter()
                    .map(|(name, _)| item.get(name).cloned().unwrap_or(Value::Null))
                    .collect();
                keyed.push((keys, id_of(ty, &item)));
            }
        }
    }
    keyed.sort_by(|(a, _), (b, _)| query::compare_keys(a, b, &q.order));
    let total = keyed.len() as i64;
    let window = Window::of(q);
    let ids = keyed
        .into_iter()
        .enumerate()
        .filter(|(n, _)| window.holds(*n))
        .map(|(_, (_, id))| id)
        .collect();
    Ok(Plan {
        ids,
        rest: Vec::new(),
        window: None,
        total: Some(total),
    })
}

/// Writes the answer of `plan` to `tx`, a batch of rows at a time.
#[allow(clippy::too_many_arguments)]
async fn write(
    services: &Services,
    vis: &Visibility,
    ty: Ty,
    listed: Listed,
    plan: Plan,
    q: &Query,
    format: Format,
    tx: &mpsc::Sender<Result<Bytes, std::io::Error>>,
) -> Result<(), ApiError> {
    let closed = || ApiError::Unavailable("the client went away".into());
    let mut text = format.head(ty.plural());
    let mut matched = 0usize;
    let mut written = 0usize;
    for chunk in plan.ids.chunks(BATCH) {
        // Once the page is full, only a total SQL did not count needs the remaining rows.
        let full = plan
            .window
            .is_some_and(|w| w.limit.is_some_and(|l| matched >= w.offset + l));
        if full && plan.total.is_some() {
            break;
        }
        let mut items = by_ids(services, ty, listed, chunk).await?;
        confine::by_origin(services, vis, ty, &mut items).await?;
        items.retain(|item| plan.rest.iter().all(|f| query::holds(item, f)));
        let mut page = Vec::with_capacity(items.len());
        for item in items {
            let n = matched;
            matched += 1;
            if plan.window.is_none_or(|w| w.holds(n)) {
                page.push(item);
            }
        }
        paths::embed_properties(services, ty, &mut page, q).await?;
        query::select_fields(&mut page, q);
        for item in &page {
            format.item(item, written == 0, &mut text);
            written += 1;
        }
        if !text.is_empty() {
            tx.send(Ok(Bytes::from(std::mem::take(&mut text))))
                .await
                .map_err(|_| closed())?;
        }
    }
    let total = plan.total.unwrap_or(matched as i64);
    format.tail(total, written > 0, &mut text);
    tx.send(Ok(Bytes::from(text))).await.map_err(|_| closed())
}

/// The items with these ids, in the order given.
async fn by_ids(
    services: &Services,
    ty: Ty,
    listed: Listed,
    ids: &[i64],
) -> Result<Vec<Value>, ApiError> {
    let page = Page {
        filters: vec![Filter {
            column: listed.id_column(),
            op: FilterOp::In,
            values: ids.iter().map(|id| SqlValue::Int(*id)).collect(),
        }],
        ..Page::default()
    };
    let (items, _) = paths::load(services, ty, &page).await?;
    let mut slots: std::collections::HashMap<i64, Value> = items
        .into_iter()
        .map(|item| (id_of(ty, &item), item))
        .collect();
    Ok(ids.iter().filter_map(|id| slots.remove(id)).collect())
}

fn id_of(ty: Ty, item: &Value) -> i64 {
    item.get(ty.id_field())
        .and_then(Value::as_i64)
        .unwrap_or_default()
}

/// How an answer is written: compact JSON for a client that accepts it, indented text
/// otherwise, as Buildbot answers a browser; both as `serde_json` writes a whole document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Pretty,
}

impl Format {
    fn of(headers: &HeaderMap) -> Format {
        if query::wants_json(headers) {
            Format::Json
        } else {
            Format::Pretty
        }
    }

    fn mime(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Pretty => "text/plain; charset=utf-8",
        }
    }

    fn head(self, plural: &str) -> String {
        let key = Value::String(plural.to_string()).to_string();
        match self {
            Format::Json => format!("{{{key}:["),
            Format::Pretty => format!("{{\n  {key}: ["),
        }
    }

    fn item(self, item: &Value, first: bool, out: &mut String) {
        match self {
            Format::Json => {
                if !first {
                    out.push(',');
                }
                out.push_str(&item.to_string());
            }
            Format::Pretty => {
                out.push_str(if first { "\n" } else { ",\n" });
                let text = serde_json::to_string_pretty(item).unwrap_or_default();
                for (i, line) in text.split('\n').enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    out.push_str("    ");
                    out.push_str(line);
                }
            }
        }
    }

    fn tail(self, total: i64, any: bool, out: &mut String) {
        match self {
            Format::Json => out.push_str(&format!("],\"meta\":{{\"total\":{total}}}}}")),
            Format::Pretty => {
                if any {
                    out.push_str("\n  ]");
                } else {
                    out.push(']');
                }
                out.push_str(&format!(
                    ",\n  \"meta\": {{\n    \"total\": {total}\n  }}\n}}"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The answer written a piece at a time reads back as the document `serde_json` writes.
    #[test]
    fn formats_write_whole_documents() {
        let items = [json!({"a": 1, "b": [1, 2]}), json!({"a": 2, "b": []})];
        for format in [Format::Json, Format::Pretty] {
            for n in 0..=items.len() {
                let mut text = format.head("changes");
                for (i, item) in items[..n].iter().enumerate() {
                    format.item(item, i == 0, &mut text);
                }
                format.tail(n as i64, n > 0, &mut text);
                let whole = json!({"changes": &items[..n], "meta": {"total": n}});
                let expected = match format {
                    Format::Json => whole.to_string(),
                    Format::Pretty => serde_json::to_string_pretty(&whole).unwrap(),
                };
                assert_eq!(text, expected, "{format:?} with {n} items");
            }
        }
    }

    #[test]
    fn windows_page_what_passes_the_filters() {
        let w = Window {
            offset: 2,
            limit: Some(3),
        };
        let kept: Vec<usize> = (0..10).filter(|n| w.holds(*n)).collect();
        assert_eq!(kept, [2, 3, 4]);
        let all = Window {
            offset: 0,
            limit: None,
        };
        assert!((0..10).all(|n| all.holds(n)));
    }
}
