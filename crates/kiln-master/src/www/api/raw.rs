//! Log contents: line ranges as `logchunks`, and the raw text streamed chunk by chunk so that a log of
//! any size is served in bounded memory.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use kiln_core::LogId;
use serde_json::json;

use super::ApiError;
use super::query::{self, Query};
use crate::master::Master;

/// Chunks read from the database per batch of a raw download.
const RAW_BATCH_CHUNKS: i64 = 32;
/// Batches buffered ahead of a slow client.
const RAW_QUEUE: usize = 4;

pub async fn contents(
    master: &Master,
    id: LogId,
    raw_query: &str,
    headers: &HeaderMap,
    path: &str,
) -> Result<Response, ApiError> {
    let q: Query = query::parse(raw_query, &[], &[])?;
    let log = master
        .db
        .get_log(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("not found while getting from {path}")))?;
    let first = q.offset.unwrap_or(0);
    let last = match q.limit {
        Some(l) => first + l - 1,
        None => log.num_lines - 1,
    };
    let lines = if last >= first {
        master.db.log_lines(id, first, last).await?
    } else {
        Vec::new()
    };
    let mut content = lines.join("\n");
    if !lines.is_empty() {
        content.push('\n');
    }
    let chunk = json!({"logid": id.0, "firstline": first, "content": content});
    Ok(query::respond(
        headers,
        json!({"logchunks": [chunk], "meta": {"total": 1}}),
    ))
}

pub async fn raw(
    master: &Master,
    id: LogId,
    inline: bool,
    path: &str,
) -> Result<Response, ApiError> {
    let nf = || ApiError::NotFound(format!("not found while getting from {path}"));
    let log = master.db.get_log(id).await?.ok_or_else(nf)?;
    let step = master.db.get_step(log.stepid).await?.ok_or_else(nf)?;
    let build = master.db.get_build(step.buildid).await?.ok_or_else(nf)?;
    let builder = master
        .db
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
        Some(w) => master
            .workers
            .name_of(kiln_core::WorkerId(w))
            .unwrap_or_default(),
        None => String::new(),
    };
    let stdio = log.log_type == "s";
    let preamble = format!(
        "Builder: {builder}\nBuild number: {}\nWorker name: {worker}\n",
        build.number
    );

    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(RAW_QUEUE);
    let db = master.db.clone();
    tokio::spawn(async move {
        if tx.send(Ok(bytes::Bytes::from(preamble))).await.is_err() {
            return;
        }
        let mut next = 0;
        loop {
            let chunks = match db.log_chunks(id, next, RAW_BATCH_CHUNKS).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            if chunks.is_empty() {
                return;
            }
            let mut out = String::with_capacity(chunks.iter().map(|c| c.text.len() + 1).sum());
            for chunk in &chunks {
                for (i, line) in chunk.text.split('\n').enumerate() {
                    if chunk.first_line + (i as i64) < next {
                        continue;
                    }
                    // Stdio lines carry a one-character stream prefix that the raw text leaves out.
                    let text = if stdio {
                        line.get(1..).unwrap_or("")
                    } else {
                        line
                    };
                    out.push_str(text);
                    out.push('\n');
                }
                next = chunk.last_line + 1;
            }
            if tx.send(Ok(bytes::Bytes::from(out))).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
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
