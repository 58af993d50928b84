//! The REST API in Buildbot's data API v2 shapes: GETs with field selection, filters, ordering and
//! paging, and JSON-RPC 2.0 control POSTs.

mod confine;
pub(crate) mod control;
pub(crate) mod fields;
mod limits;
mod openapi;
mod paths;
pub(crate) mod query;
mod raw;
mod resolve;
mod spec;
mod stream;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;

pub use kiln_api::ApiError;
use kiln_api::Services;

use crate::error::Answer;

pub use limits::Limits;

/// The API's routes, with the limits every request of this web port shares.
pub fn router(limits: Limits) -> Router<Services> {
    Router::new()
        .route("/", get(root))
        .route("/{*path}", get(get_path).post(post_path).options(preflight))
        .layer(Extension(limits))
}

pub(crate) async fn root(headers: HeaderMap) -> Response {
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
        "reporters",
        "schedulers",
        "sourcestamps",
        "steps",
        "workers",
    ]
    .iter()
    .map(|n| serde_json::json!({"name": n}))
    .collect();
    // Buildbot's root names these collections.
    let rootlinks: Vec<serde_json::Value> = [
        "builders",
        "builds",
        "buildrequests",
        "codebases",
        "workers",
        "logchunks",
        "buildsets",
        "changes",
        "changesources",
        "masters",
        "sourcestamps",
        "schedulers",
        "forceschedulers",
        "projects",
    ]
    .iter()
    .map(|n| serde_json::json!({"name": n}))
    .collect();
    query::respond(
        &headers,
        serde_json::json!({
            "api_versions": [2],
            "endpoints": endpoints,
            "meta": {"total": rootlinks.len()},
            "rootlinks": rootlinks,
        }),
    )
}

async fn get_path(
    State(services): State<Services>,
    Extension(limits): Extension<limits::Limits>,
    identity: crate::auth::Identity,
    Path(path): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    // The users table is the old `showUsersPage`'s.
    if path.trim_start_matches('/').starts_with("users") {
        let request = kiln_api::authz::Request::plain(kiln_api::authz::Verb::ShowUsers);
        if !services.read.allowed(&identity.actor, &request) {
            return ApiError::Forbidden("you may not see the users".into()).answer();
        }
    }
    let vis = crate::auth::read::Visibility::of(&services, &identity.actor);
    match paths::get(
        &services,
        &limits,
        &vis,
        &path,
        raw.as_deref().unwrap_or(""),
        &headers,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => e.answer(),
    }
}

async fn post_path(
    State(services): State<Services>,
    identity: crate::auth::Identity,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    control::post(&services, &identity.actor, &path, &headers, &body).await
}

/// A browser's question before a control request from another origin: answered for the
/// origins `allowed_origins` names, refused for the others.
async fn preflight(State(services): State<Services>, headers: HeaderMap) -> Response {
    crate::auth::origin::preflight(&services, &headers)
}
