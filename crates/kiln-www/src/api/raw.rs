//! Log contents: line ranges as `logchunks`, and the raw text streamed chunk by chunk so that a log of
//! any size is served in bounded memory.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use kiln_core::LogId;

use super::ApiError;
use super::query::{self, Query};
use kiln_api::Services;

/// Chunks read from the database per batch of a raw download.
const RAW_BATCH_CHUNKS: i64 = 32;
/// Batches buffered ahead of a slow client.
const RAW_QUEUE: usize = 4;

/// `…/contents`: lines `offset .. offset+limit` (all by default) as one `logchunk`. The JSON is
/// streamed chunk by chunk, so even a whole large log is served in bounded memory.
pub async fn contents(
    services: &Services,
    id: LogId,
    raw_query: &str,
    _headers: &HeaderMap,
    path: &str,
) -> Result<Response, ApiError> {
    let q: Query = query::parse(raw_query, &[], &[])?;
    let log = services
        .read
        .db()
        .get_log(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("not found while getting from {path}")))?;
    let first = q.offset.unwrap_or(0);
    let last = match q.limit {
        Some(l) => first + l - 1,
        None => log.num_lines - 1,
    };
    let head = format!(
        "{{\"logchunks\":[{{\"logid\":{},\"firstline\":{first},\"content\":\"",
        id.0
    );
    let db = services.read.db().clone();
    let stream = stream_lines(
        db,
        id,
        first,
        last,
        head,
        "\"}],\"meta\":{\"total\":1}}".into(),
        |line, out| {
            let quoted = serde_json::to_string(line).unwrap_or_default();
            out.push_str(&quoted[1..quoted.len() - 1]);
            out.push_str("\\n");
        },
    );
    let mut response = Body::from_stream(stream).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Streams lines `first..=last` of a log between `head` and `tail`, each line formatted by `emit`,
/// reading a bounded batch of chunks at a time.
fn stream_lines(
    db: kiln_db::Db,
    id: LogId,
    first: i64,
    last: i64,
    head: String,
    tail: String,
    emit: fn(&str, &mut String),
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(RAW_QUEUE);
    tokio::spawn(async move {
        if tx.send(Ok(bytes::Bytes::from(head))).await.is_err() {
            return;
        }
        let mut next = first.max(0);
        while next <= last {
            let chunks = match db.log_chunks(id, next, RAW_BATCH_CHUNKS).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            if chunks.is_empty() {
                break;
            }
            let mut out = String::with_capacity(chunks.iter().map(|c| c.text.len() + 1).sum());
            for chunk in &chunks {
                for (i, line) in chunk.text.split('\n').enumerate() {
                    let n = chunk.first_line + i as i64;
                    if n >= next && n <= last {
                        emit(line, &mut out);
                    }
                }
                next = chunk.last_line + 1;
            }
            if tx.send(Ok(bytes::Bytes::from(out))).await.is_err() {
                return;
            }
        }
        let _ = tx.send(Ok(bytes::Bytes::from(tail))).await;
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

pub async fn raw(
    services: &Services,
    id: LogId,
    inline: bool,
    path: &str,
) -> Result<Response, ApiError> {
    let nf = || ApiError::NotFound(format!("not found while getting from {path}"));
    let log = services.read.db().get_log(id).await?.ok_or_else(nf)?;
    let step = services
        .read
        .db()
        .get_step(log.stepid)
        .await?
        .ok_or_else(nf)?;
    let build = services
        .read
        .db()
        .get_build(step.buildid)
        .await?
        .ok_or_else(nf)?;
    let builder = services
        .read
        .db()
        .list_builders(&kiln_db::listing::Page::eq(
            "id",
            kiln_db::listing::SqlValue::Int(build.builderid.0),
        ))
        .await?
        .0
        .into_iter()
        .next()
        .map(|b| b.name)
        .unwrap_or_default();
    let worker = match build.workerid {
        Some(w) => services
            .read
            .worker_name(kiln_core::WorkerId(w))
            .unwrap_or_default(),
        None => String::new(),
    };
    let stdio = log.log_type == "s";
    let preamble = format!(
        "Builder: {builder}\nBuild number: {}\nWorker name: {worker}\n",
        build.number
    );

    let emit: fn(&str, &mut String) = if stdio {
        // Stdio lines carry a one-character stream prefix that the raw text leaves out.
        |line, out| {
            out.push_str(line.get(1..).unwrap_or(""));
            out.push('\n');
        }
    } else {
        |line, out| {
            out.push_str(line);
            out.push('\n');
        }
    };
    let stream = stream_lines(
        services.read.db().clone(),
        id,
        0,
        i64::MAX,
        preamble,
        String::new(),
        emit,
    );
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if !inline {
        let name: String = format!(
            "{builder}_build_{}_step_{}_log_{}.txt",
            build.number, step.name, log.slug
        )
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(response)
}
