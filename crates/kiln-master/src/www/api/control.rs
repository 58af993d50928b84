//! JSON-RPC 2.0 control: `force`, `stop`, `rebuild`, `cancel`, `set_priority`, and the worker
//! actions `pause`, `unpause`, `stop` and `kill`.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_config::SchedulerConfig;
use kiln_core::{BuildId, BuildRequestId, BuildSetId, SchedulerId, SourceStampId};
use kiln_db::NewBuildSet;
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};
use serde_json::{Value, json};

use crate::master::Master;
use crate::schedulers::force::{ForceError, force};

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;

struct RpcError {
    status: StatusCode,
    code: i64,
    message: Value,
}

fn rpc_error(status: StatusCode, code: i64, message: impl Into<Value>) -> RpcError {
    RpcError {
        status,
        code,
        message: message.into(),
    }
}

fn reply(id: &Value, result: Result<Value, RpcError>) -> Response {
    match result {
        Ok(result) => axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": result})).into_response(),
        Err(e) => (e.status, axum::Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}}))).into_response(),
    }
}

pub async fn post(master: &Master, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return reply(
            &Value::Null,
            Err(rpc_error(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "Content-Type must be application/json",
            )),
        );
    }
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return reply(
                &Value::Null,
                Err(rpc_error(
                    StatusCode::BAD_REQUEST,
                    PARSE_ERROR,
                    format!("invalid JSON: {e}"),
                )),
            );
        }
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    if request.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return reply(
            &id,
            Err(rpc_error(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "jsonrpc must be \"2.0\"",
            )),
        );
    }
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return reply(
            &id,
            Err(rpc_error(
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "missing method",
            )),
        );
    };
    let params = match request.get("params") {
        None | Some(Value::Null) => serde_json::Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return reply(
                &id,
                Err(rpc_error(
                    StatusCode::BAD_REQUEST,
                    INVALID_PARAMS,
                    "params must be an object; positional params are not supported",
                )),
            );
        }
    };
    let result = dispatch(master, path, method, &params).await;
    reply(&id, result)
}

fn not_found(path: &str) -> RpcError {
    rpc_error(
        StatusCode::NOT_FOUND,
        INVALID_PARAMS,
        format!("not found while getting from {path}"),
    )
}

fn internal(e: impl std::fmt::Display) -> RpcError {
    tracing::error!(error = %e, "JSON-RPC call failed");
    rpc_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        INTERNAL_ERROR,
        "internal error",
    )
}

fn unknown_method(method: &str, path: &str) -> RpcError {
    rpc_error(
        StatusCode::BAD_REQUEST,
        METHOD_NOT_FOUND,
        format!("action '{method}' is not supported on {path}"),
    )
}

async fn build_id(master: &Master, segs: &[&str], path: &str) -> Result<BuildId, RpcError> {
    match segs {
        ["builds", id] => id.parse().map(BuildId).map_err(|_| not_found(path)),
        ["builders", b, "builds", n] => {
            let builderid = match b.parse::<i64>() {
                Ok(id) => id,
                Err(_) => master
                    .builder_ids()
                    .get(*b)
                    .map(|i| i.0)
                    .ok_or_else(|| not_found(path))?,
            };
            let number: i64 = n.parse().map_err(|_| not_found(path))?;
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
            let rows = master.db.list_builds(&page).await.map_err(internal)?.0;
            rows.first().map(|b| b.id).ok_or_else(|| not_found(path))
        }
        _ => Err(not_found(path)),
    }
}

async fn dispatch(
    master: &Master,
    path: &str,
    method: &str,
    params: &serde_json::Map<String, Value>,
) -> Result<Value, RpcError> {
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
    match (segs.as_slice(), method) {
        (["forceschedulers", name], "force") => {
            let config = master.config();
            let Some(SchedulerConfig::Force(scheduler)) =
                config.schedulers.iter().find(|s| s.name() == *name)
            else {
                return Err(not_found(path));
            };
            let disabled = master.db.disabled_schedulers().await.map_err(internal)?;
            if disabled.iter().any(|d| d == name) {
                return Err(rpc_error(
                    StatusCode::BAD_REQUEST,
                    INVALID_PARAMS,
                    format!("the scheduler '{name}' is disabled"),
                ));
            }
            let owner = params.get("owner").and_then(Value::as_str);
            match force(master, scheduler, params, owner).await {
                Ok((bsid, brids)) => {
                    let map: serde_json::Map<String, Value> = brids
                        .iter()
                        .map(|(b, r)| (b.0.to_string(), json!(r.0)))
                        .collect();
                    Ok(json!([bsid.0, map]))
                }
                Err(ForceError::InvalidParams(errors)) => Err(rpc_error(
                    StatusCode::BAD_REQUEST,
                    INVALID_PARAMS,
                    json!(errors).to_string(),
                )),
                Err(ForceError::Internal(e)) => Err(internal(e)),
            }
        }
        (["builds", ..] | ["builders", _, "builds", _], "stop") => {
            let id = build_id(master, &segs, path).await?;
            master.stop_build(id, &reason);
            Ok(Value::Null)
        }
        (["builds", ..] | ["builders", _, "builds", _], "rebuild") => {
            let id = build_id(master, &segs, path).await?;
            let build = master
                .db
                .get_build(id)
                .await
                .map_err(internal)?
                .ok_or_else(|| not_found(path))?;
            let request = master
                .db
                .get_buildrequest(build.buildrequestid)
                .await
                .map_err(internal)?
                .ok_or_else(|| not_found(path))?;
            let buildset = master
                .db
                .get_buildset(request.buildsetid)
                .await
                .map_err(internal)?
                .ok_or_else(|| not_found(path))?;
            let ids: Vec<SourceStampId> = buildset
                .sourcestamps
                .iter()
                .map(|i| SourceStampId(*i))
                .collect();
            let sourcestamps = master
                .db
                .get_sourcestamps(&ids)
                .await
                .map_err(internal)?
                .iter()
                .map(kiln_db::SourceStampRow::to_sourcestamp)
                .collect();
            let properties = master
                .db
                .buildset_properties(request.buildsetid)
                .await
                .map_err(internal)?;
            let new = NewBuildSet {
                reason: format!(
                    "rebuild of build {}: {}",
                    build.number,
                    buildset.reason.unwrap_or_default()
                ),
                sourcestamps,
                properties,
                builders: vec![(build.builderid, request.priority)],
                rebuilt_buildid: Some(id.0),
                ..Default::default()
            };
            let (bsid, brids) = master.add_buildset(new).await.map_err(internal)?;
            let map: serde_json::Map<String, Value> = brids
                .iter()
                .map(|(b, r)| (b.0.to_string(), json!(r.0)))
                .collect();
            Ok(json!([bsid.0, map]))
        }
        (["buildrequests", id], "cancel") => {
            let brid = BuildRequestId(id.parse().map_err(|_| not_found(path))?);
            let row = master
                .db
                .get_buildrequest(brid)
                .await
                .map_err(internal)?
                .ok_or_else(|| not_found(path))?;
            if row.complete {
                return Ok(Value::Null);
            }
            master
                .cancel_buildrequest(brid, &reason)
                .await
                .map_err(internal)?;
            Ok(Value::Null)
        }
        (["schedulers", id], "enable") => {
            let id = SchedulerId(id.parse().map_err(|_| not_found(path))?);
            let Some(enabled) = params.get("enabled").and_then(Value::as_bool) else {
                return Err(rpc_error(
                    StatusCode::BAD_REQUEST,
                    INVALID_PARAMS,
                    "enabled must be true or false",
                ));
            };
            if !master
                .updates
                .set_scheduler_enabled(id, enabled)
                .await
                .map_err(internal)?
            {
                return Err(not_found(path));
            }
            master.wake_schedulers();
            Ok(Value::Null)
        }
        (["buildrequests", id], "set_priority") => {
            let brid = BuildRequestId(id.parse().map_err(|_| not_found(path))?);
            let Some(priority) = params.get("priority").and_then(Value::as_i64) else {
                return Err(rpc_error(
                    StatusCode::BAD_REQUEST,
                    INVALID_PARAMS,
                    "priority must be an integer",
                ));
            };
            master
                .updates
                .set_buildrequest_priority(brid, priority)
                .await
                .map_err(internal)?;
            master.wake_distributor();
            Ok(Value::Null)
        }
        (["workers", w], action @ ("pause" | "unpause" | "stop" | "kill")) => {
            let page = match w.parse::<i64>() {
                Ok(id) => Page::eq("id", SqlValue::Int(id)),
                Err(_) => Page::eq("name", SqlValue::Text(w.to_string())),
            };
            let worker = master
                .db
                .list_workers(&page)
                .await
                .map_err(internal)?
                .0
                .into_iter()
                .next()
                .ok_or_else(|| not_found(path))?;
            match action {
                "pause" | "unpause" => {
                    let paused = action == "pause";
                    master
                        .updates
                        .set_worker_paused(worker.id, paused, paused.then_some(reason.as_str()))
                        .await
                        .map_err(internal)?;
                    master.workers.set_paused(&worker.name, paused);
                    master.wake_distributor();
                }
                "kill" => {
                    if let Some(conn) = master.workers.connection(&worker.name) {
                        conn.close("killed from the API").await;
                    }
                }
                _ => {
                    master
                        .updates
                        .set_worker_graceful(worker.id, true)
                        .await
                        .map_err(internal)?;
                    if let Some(conn) = master.workers.connection(&worker.name) {
                        let _ = conn.request(kiln_proto::Op::Shutdown).await;
                    }
                }
            }
            Ok(Value::Null)
        }
        (["buildsets", id], _) => {
            let _ = BuildSetId(id.parse().map_err(|_| not_found(path))?);
            Err(unknown_method(method, path))
        }
        _ => Err(unknown_method(method, path)),
    }
}
