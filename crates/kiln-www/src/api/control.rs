//! JSON-RPC 2.0 control: `force`, `stop`, `rebuild`, `cancel`, `set_priority`, and the worker
//! actions `pause`, `unpause`, `stop` and `kill`.

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use kiln_api::{Actor, ApiError, Services, Submitted, WorkerAction, WorkerRef};
use kiln_core::{BuildId, BuildRequestId, BuildSetId, SchedulerId};
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};
use serde_json::{Value, json};

use crate::error::Answer;

fn reply(id: &Value, result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(result) => {
            axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response()
        }
        Err(e) => e.rpc_answer(id),
    }
}

/// Checks the request's origin and the JSON-RPC envelope, then carries out the call through
/// the control handle as `actor`.
///
/// A page of another site can make a browser send a request with the user's cookie, but not
/// with `Content-Type: application/json` unless this site allows its origin (a browser asks
/// first), and a browser always names the origin of a page's request: so a call whose origin
/// is not allowed, or that is not JSON, changes nothing.
pub async fn post(
    services: &Services,
    actor: &Actor,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    if let Err(origin) = crate::auth::origin::check(services, headers) {
        tracing::warn!(%origin, path, "a control request from another site was refused");
        return crate::auth::origin::refused();
    }
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        let e = ApiError::BadRequest("Invalid content-type (use application/json)".into());
        return reply(&Value::Null, Err(e));
    }
    let call = match envelope(body) {
        Ok(call) => call,
        Err((id, e)) => return reply(&id, Err(e)),
    };
    let result = dispatch(services, actor, path, &call.method, &call.params).await;
    let mut response = reply(&call.id, result);
    crate::auth::origin::allow_response(services, headers, &mut response);
    response
}

/// A JSON-RPC call: its id, method and parameters.
pub(crate) struct Call {
    pub id: Value,
    pub method: String,
    pub params: serde_json::Map<String, Value>,
}

/// Reads a JSON-RPC request body, checking its envelope in Buildbot's order and words; an error
/// comes with the id to answer it with (`null` until the id is known).
pub(crate) fn envelope(body: &[u8]) -> Result<Call, (Value, ApiError)> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| (Value::Null, ApiError::Parse(format!("invalid JSON: {e}"))))?;
    let missing = |key: &str| {
        (
            Value::Null,
            ApiError::BadRequest(format!("missing key '{key}'")),
        )
    };
    let version = request.get("jsonrpc").ok_or_else(|| missing("jsonrpc"))?;
    if version.as_str() != Some("2.0") {
        let e = ApiError::BadRequest("only JSONRPC 2.0 is supported".into());
        return Err((Value::Null, e));
    }
    let method = request
        .get("method")
        .and_then(Value::as_str)
        .ok_or_else(|| missing("method"))?
        .to_string();
    let id = request.get("id").cloned().ok_or_else(|| missing("id"))?;
    let params = match request.get("params") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            let e = ApiError::BadRequest("'params' must be an object".into());
            return Err((id, e));
        }
    };
    Ok(Call { id, method, params })
}

fn unknown_method(method: &str, path: &str) -> ApiError {
    ApiError::MethodNotFound(format!("action: {method} is not supported on {path}"))
}

/// A submitted buildset as Buildbot's JSON-RPC answers it: `[bsid, {builderid: brid}]`.
fn submitted((bsid, brids): Submitted) -> Value {
    let map: serde_json::Map<String, Value> = brids
        .iter()
        .map(|(b, r)| (b.0.to_string(), json!(r.0)))
        .collect();
    json!([bsid.0, map])
}

/// The build a control path names: `builds/N` or `builders/B/builds/N`.
async fn build_id(services: &Services, segs: &[&str], path: &str) -> Result<BuildId, ApiError> {
    let not_found = || ApiError::not_found(path);
    match segs {
        ["builds", id] => id.parse().map(BuildId).map_err(|_| not_found()),
        ["builders", b, "builds", n] => {
            let builderid = match b.parse::<i64>() {
                Ok(id) => id,
                Err(_) => services
                    .read
                    .builder_ids()
                    .get(*b)
                    .map(|i| i.0)
                    .ok_or_else(not_found)?,
            };
            let number: i64 = n.parse().map_err(|_| not_found())?;
            let page = Page {
                filters: vec![
                    Filter {
                        column: "builderid",
                        op: FilterOp::Eq,
                        values: vec![SqlValue::Int(builderid)],
                    },
                    Filter {
                        column: "number",
                        op: FilterOp::Eq,
                        values: vec![SqlValue::Int(number)],
                    },
                ],
                ..Default::default()
            };
            let rows = services.read.db().list_builds(&page).await?.0;
            rows.first().map(|b| b.id).ok_or_else(not_found)
        }
        _ => Err(not_found()),
    }
}

/// Turns a path and method into a command of the control handle.
async fn dispatch(
    services: &Services,
    actor: &Actor,
    path: &str,
    method: &str,
    params: &serde_json::Map<String, Value>,
) -> Result<Value, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let reason = params
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or("no reason")
        .to_string();
    let control = &services.control;
    let id_in = |s: &str| s.parse::<i64>().map_err(|_| ApiError::not_found(path));
    match (segs.as_slice(), method) {
        (["forceschedulers", name], "force") => {
            control.force(actor, name, params).await.map(submitted)
        }
        (["builds", ..] | ["builders", _, "builds", _], "stop") => {
            let id = build_id(services, &segs, path).await?;
            control.stop_build(actor, id, &reason).await?;
            Ok(Value::Null)
        }
        (["builds", ..] | ["builders", _, "builds", _], "rebuild") => {
            let id = build_id(services, &segs, path).await?;
            control.rebuild(actor, id).await.map(submitted)
        }
        (["buildrequests", id], "cancel") => {
            let brid = BuildRequestId(id_in(id)?);
            control.cancel_request(actor, brid, &reason).await?;
            Ok(Value::Null)
        }
        (["schedulers", id], "enable") => {
            let id = SchedulerId(id_in(id)?);
            let Some(enabled) = params.get("enabled").and_then(Value::as_bool) else {
                return Err(ApiError::InvalidParams(
                    "enabled must be true or false".into(),
                ));
            };
            control.set_scheduler_enabled(actor, id, enabled).await?;
            Ok(Value::Null)
        }
        (["buildrequests", id], "set_priority") => {
            let brid = BuildRequestId(id_in(id)?);
            let Some(priority) = params.get("priority").and_then(Value::as_i64) else {
                return Err(ApiError::InvalidParams(
                    "priority must be an integer".into(),
                ));
            };
            control.set_request_priority(actor, brid, priority).await?;
            Ok(Value::Null)
        }
        (["workers", w], action @ ("pause" | "unpause" | "stop" | "kill")) => {
            let worker = match w.parse::<i64>() {
                Ok(id) => WorkerRef::Id(id),
                Err(_) => WorkerRef::Name(w.to_string()),
            };
            let action = match action {
                "pause" => WorkerAction::Pause,
                "unpause" => WorkerAction::Unpause,
                "kill" => WorkerAction::Kill,
                _ => WorkerAction::StopGracefully,
            };
            control
                .worker_action(actor, &worker, action, &reason)
                .await?;
            Ok(Value::Null)
        }
        (["buildsets", id], _) => {
            let _ = BuildSetId(id_in(id)?);
            Err(unknown_method(method, path))
        }
        // A path the API does not have, as Buildbot words it.
        ([first, ..], _) if !super::fields::is_collection(first) => Err(ApiError::NotFound(
            format!("Invalid path: {}", path.trim_matches('/')),
        )),
        _ => Err(unknown_method(method, path)),
    }
}
