//! The REST API in Buildbot's data API v2 shapes: GETs with field selection, filters, ordering and
//! paging, and JSON-RPC 2.0 control POSTs.

mod control;
mod error;
mod paths;
mod query;
mod raw;
mod shapes;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;

use crate::master::Master;
pub use error::ApiError;

pub fn router() -> Router<Arc<Master>> {
    Router::new()
        .route("/", get(root))
        .route("/{*path}", get(get_path).post(post_path))
}

async fn root(headers: HeaderMap) -> Response {
    let endpoints: Vec<serde_json::Value> = [
        "builders",
        "builds",
        "buildrequests",
        "buildsets",
        "changes",
        "changesources",
        "forceschedulers",
        "logs",
        "masters",
        "projects",
        "schedulers",
        "sourcestamps",
        "steps",
        "workers",
    ]
    .iter()
    .map(|n| serde_json::json!({"name": n}))
    .collect();
    query::respond(
        &headers,
        serde_json::json!({"api_versions": [2], "endpoints": endpoints, "meta": {"total": endpoints.len()}}),
    )
}

async fn get_path(
    State(master): State<Arc<Master>>,
    Path(path): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    match paths::get(&master, &path, raw.as_deref().unwrap_or(""), &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response_for(&headers),
    }
}

async fn post_path(
    State(master): State<Arc<Master>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    control::post(&master, &path, &headers, &body).await
}
