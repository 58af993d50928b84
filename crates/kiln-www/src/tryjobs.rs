//! `POST /try`: try jobs from `kiln try`, for a `Try_Userpass` scheduler, authenticated with
//! HTTP Basic credentials from its `userpass`.
//!
//! The body is JSON: `builderNames`, `properties`, `who`, `comment`, and the source stamp:
//! `branch`, `revision` (the base), `repository`, `project`, `codebase`, `patch_level`,
//! `patch_subdir` and the patch as `patch_body` (text) or `patch_body_base64`. The answer is
//! `{"bsid": N, "brids": {builderid: brid}}`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use kiln_config::{SchedulerConfig, TryConfig};
use kiln_core::Properties;
use kiln_core::sourcestamp::{Patch, SourceStamp};
use serde_json::{Value, json};

use crate::basic_auth::{credentials, same_secret};
use kiln_api::{Actor, Services, TryJob};

pub fn router() -> Router<Services> {
    Router::new().route("/try", post(submit))
}

fn error(status: StatusCode, why: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": why.into()}))).into_response()
}

async fn submit(State(services): State<Services>, headers: HeaderMap, body: Bytes) -> Response {
    let config = services.read.config();
    let Some((user, password)) = credentials(&headers) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(axum::http::header::WWW_AUTHENTICATE, "Basic realm=\"try\"")],
            "try jobs need a user and password\n",
        )
            .into_response();
    };
    let job: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "the try job must be a JSON object"),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the try job is not JSON: {e}"),
            );
        }
    };
    let wanted = job["scheduler"].as_str();
    // The Try_Userpass schedulers this user may use.
    let allowed: Vec<&TryConfig> = config
        .schedulers
        .iter()
        .filter_map(|s| match s {
            SchedulerConfig::Try(t) => Some(&**t),
            _ => None,
        })
        .filter(|t| wanted.is_none_or(|w| w == t.name))
        .filter(|t| {
            t.userpass
                .iter()
                .any(|(u, p)| *u == user && same_secret(p, &password))
        })
        .collect();
    let Some(scheduler) = allowed.first() else {
        return error(
            StatusCode::UNAUTHORIZED,
            "no try scheduler takes these credentials",
        );
    };
    let job = match parse(&job) {
        Ok(j) => j,
        Err(why) => return error(StatusCode::BAD_REQUEST, why),
    };
    match services
        .control
        .try_job(&try_user(&user), &scheduler.name, job)
        .await
    {
        Ok((bsid, brids)) => {
            let map: serde_json::Map<String, Value> = brids
                .iter()
                .map(|(b, r)| (b.0.to_string(), json!(r.0)))
                .collect();
            (
                StatusCode::OK,
                axum::Json(json!({"bsid": bsid.0, "brids": map})),
            )
                .into_response()
        }
        Err(e) => error(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.message(),
        ),
    }
}

fn parse(job: &Value) -> Result<TryJob, String> {
    let text = |k: &str| -> Result<Option<String>, String> {
        match &job[k] {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            other => Err(format!("{k} must be a string, not {other}")),
        }
    };
    let builder_names = match &job["builderNames"] {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|b| {
                b.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("builderNames must hold strings, not {b}"))
            })
            .collect::<Result<_, _>>()?,
        other => return Err(format!("builderNames must be a list, not {other}")),
    };
    let mut properties = Properties::new();
    match &job["properties"] {
        Value::Null => {}
        Value::Object(map) => {
            for (k, v) in map {
                properties.set(k.clone(), kiln_db::json_to_property(v), "try build");
            }
        }
        other => return Err(format!("properties must be an object, not {other}")),
    }
    let body = match (text("patch_body")?, text("patch_body_base64")?) {
        (Some(b), _) => Some(b.into_bytes()),
        (None, Some(b64)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| format!("patch_body_base64 is not base64: {e}"))?,
        ),
        (None, None) => None,
    };
    let level = match &job["patch_level"] {
        Value::Null => 1,
        v => v
            .as_i64()
            .filter(|l| (0..=100).contains(l))
            .ok_or_else(|| format!("patch_level must be a small number, not {v}"))?,
    };
    let who = text("who")?.unwrap_or_default();
    let comment = text("comment")?.unwrap_or_default();
    let patch = body.filter(|b| !b.is_empty()).map(|body| Patch {
        level,
        body,
        subdir: text("patch_subdir").ok().flatten(),
        author: Some(who.clone()).filter(|w| !w.is_empty()),
        comment: Some(comment.clone()).filter(|c| !c.is_empty()),
    });
    Ok(TryJob {
        sourcestamp: SourceStamp {
            codebase: text("codebase")?.unwrap_or_default(),
            repository: text("repository")?.unwrap_or_default(),
            branch: text("branch")?,
            revision: text("revision")?,
            project: text("project")?.unwrap_or_default(),
            patch,
        },
        who,
        comment,
        builder_names,
        properties,
    })
}

/// The try user, as the actor who submits: the try scheduler's credentials say who it is.
fn try_user(user: &str) -> Actor {
    Actor::User(kiln_api::authz::UserInfo {
        username: user.to_string(),
        ..Default::default()
    })
}
