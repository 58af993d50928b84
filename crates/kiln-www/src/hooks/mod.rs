//! Web change hooks: `POST /change_hook/<dialect>` turns a notification from a repository or a
//! forge into changes. A dialect answers only if the configuration enables it
//! (`c['www']['change_hook_dialects']`); `/change_hook` alone is the `base` dialect.

mod auth;
mod base;
mod bitbucket;
mod gitea;
mod github;
mod gitlab;
mod poller;

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kiln_core::Properties;
use kiln_db::NewChange;
use serde_json::{Value, json};

use kiln_api::{Actor, ApiError, Services};

use crate::error::Answer;

pub fn router() -> Router<Services> {
    Router::new()
        .route("/change_hook", post(default_dialect))
        .route("/change_hook/{dialect}", post(dialect))
}

/// The dialects whose requests [`parse`] decodes (the `poller` dialect carries no payload).
#[cfg_attr(not(fuzzing), allow(dead_code))]
pub(crate) const PARSED_DIALECTS: &[&str] = &[
    "base",
    "bitbucketcloud",
    "bitbucketserver",
    "gitea",
    "github",
    "gitlab",
];

/// What a dialect makes of a request: the changes it carries, or why it carries none.
pub(crate) fn parse(
    dialect: &str,
    options: &BTreeMap<String, kiln_core::PropertyValue>,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<Parsed, ApiError> {
    match dialect {
        "base" => base::parse(query, body, now).map(Parsed::changes),
        "bitbucketcloud" => bitbucket::parse(bitbucket::Flavour::Cloud, options, headers, body),
        "bitbucketserver" => bitbucket::parse(bitbucket::Flavour::Server, options, headers, body),
        "gitea" => gitea::parse(options, headers, body),
        "github" => github::parse(options, headers, body),
        "gitlab" => gitlab::parse(options, query, headers, body),
        _ => Err(ApiError::BadRequest(format!("unknown dialect '{dialect}'"))),
    }
}

/// What a dialect made of a notification: changes to store, or why there are none.
pub(crate) struct Parsed {
    pub changes: Vec<NewChange>,
    /// Said in the answer when the event was ignored.
    pub ignored: Option<String>,
}

impl Parsed {
    pub fn changes(changes: Vec<NewChange>) -> Self {
        Parsed {
            changes,
            ignored: None,
        }
    }
    pub fn ignored(why: impl Into<String>) -> Self {
        Parsed {
            changes: Vec::new(),
            ignored: Some(why.into()),
        }
    }
}

async fn default_dialect(
    State(services): State<Services>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&services, "base", query.as_deref(), &headers, body).await
}

async fn dialect(
    State(services): State<Services>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(&services, &name, query.as_deref(), &headers, body).await
}

async fn handle(
    services: &Services,
    name: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    match receive(services, name, query, headers, body).await {
        Ok(answer) => answer,
        Err(ApiError::Unauthorized(why)) => (
            StatusCode::UNAUTHORIZED,
            [(
                axum::http::header::WWW_AUTHENTICATE,
                "Basic realm=\"buildbot\"",
            )],
            format!("{why}\n"),
        )
            .into_response(),
        Err(e) => {
            if let ApiError::Forbidden(why) = &e {
                tracing::warn!(dialect = name, %why, "change hook refused");
            }
            e.text_answer()
        }
    }
}

/// Checks the caller, reads the body within its limit, lets the dialect make changes of it, and
/// stores them through the control handle.
async fn receive(
    services: &Services,
    name: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let config = services.read.config();
    // Forges and scripts name no page; a browser posting a form from another site's page does,
    // and must not make changes with the visitor's network position.
    if let Err(site) = crate::auth::origin::check_page(services, headers) {
        return Err(ApiError::Forbidden(format!(
            "a change hook does not take posts from the pages of another site ({site})"
        )));
    }
    // The hook's own credentials say who sends changes; the web's rules do not apply to hooks,
    // as in Buildbot, whose sites lock their pages down and keep their hooks open.
    let actor = match auth::check(
        services.read.basedir(),
        &config.www.change_hook_auth,
        headers,
    )? {
        Some(user) => Actor::User(kiln_api::authz::UserInfo {
            username: user,
            ..Default::default()
        }),
        None => Actor::Anonymous,
    };
    // The body is read only up to the limit, so an oversized one costs no more than that.
    let limit = config.www.change_hook_max_body;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) if format!("{e:#}").contains("length limit exceeded") => {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body is larger than the change hooks' limit of {limit} bytes"
            )));
        }
        Err(e) => {
            return Err(ApiError::BadRequest(format!(
                "the body could not be read: {e}"
            )));
        }
    };
    let body = &body[..];
    let Some(options) = config.www.change_hook_dialects.get(name) else {
        return Err(ApiError::NotFound(format!(
            "the change hook dialect '{name}' is not enabled"
        )));
    };
    if name == "poller" {
        return Ok(poller::handle(services, options, query).await);
    }
    let parsed = parse(name, options, query, headers, body, services.read.now())?;
    if let Some(why) = &parsed.ignored {
        return Ok(answer(headers, &[], Some(why), 0));
    }
    let mut changes = parsed.changes;
    // One request stores a bounded number of changes: a push of thousands of commits would
    // otherwise queue thousands of builds.
    let limit = config.www.change_hook_max_changes;
    let dropped = changes.len().saturating_sub(limit);
    if dropped > 0 {
        tracing::warn!(
            dialect = name,
            dropped,
            limit,
            "a change hook request had more changes than c['www']['change_hook_max_changes']; the rest were not stored"
        );
        changes.truncate(limit);
    }
    // A push's changes are stored in one write: whole, or not at all.
    let ids: Vec<i64> = if changes.is_empty() {
        Vec::new()
    } else {
        services
            .control
            .add_changes(&actor, changes)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, dialect = name, "storing changes");
                e
            })?
            .into_iter()
            .map(|id| id.0)
            .collect()
    };
    Ok(answer(headers, &ids, None, dropped))
}

/// What a hook says of the changes it stored: Buildbot's text (`1 change found`), or, for a
/// client that asks for JSON, their ids (and why a payload was ignored); and how many changes
/// past the limit were not stored.
fn answer(headers: &HeaderMap, ids: &[i64], ignored: Option<&String>, dropped: usize) -> Response {
    let wants_json = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if wants_json {
        let mut body = json!({"changeids": ids});
        if let Some(why) = ignored {
            body["ignored"] = json!(why);
        }
        if dropped > 0 {
            body["not_stored"] = json!(dropped);
        }
        return (StatusCode::OK, axum::Json(body)).into_response();
    }
    let mut text = if ids.is_empty() {
        "no change found".to_string()
    } else {
        format!("{} change found", ids.len())
    };
    if dropped > 0 {
        text.push_str(&format!(
            "; {dropped} more were not stored (the limit of one request)"
        ));
    }
    (StatusCode::OK, text).into_response()
}

/// The string at `path` in a JSON payload.
pub(crate) fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// The string at `path`, or a 400 naming what is missing.
pub(crate) fn required<'a>(v: &'a Value, path: &[&str]) -> Result<&'a str, ApiError> {
    text(v, path).ok_or_else(|| {
        ApiError::BadRequest(format!("the payload has no string at {}", path.join(".")))
    })
}

/// An RFC 3339 time, as forges write commit times, in epoch seconds.
pub(crate) fn timestamp(s: &str) -> Result<i64, ApiError> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| ApiError::BadRequest(format!("bad commit timestamp {s:?}: {e}")))
}

/// Bytes from hexadecimal digits.
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `mac` is the HMAC-SHA256 of `body` under `secret`, compared in constant time.
pub(crate) fn hmac_sha256_matches(secret: &str, body: &[u8], mac: &[u8]) -> bool {
    use hmac::{KeyInit, Mac};
    hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .map(|mut m| {
            m.update(body);
            m.verify_slice(mac).is_ok()
        })
        .unwrap_or(false)
}

/// `Name <email>` (or just the name) of a commit's author or committer.
pub(crate) fn person(v: Option<&Value>) -> Option<String> {
    let v = v?;
    let name = text(v, &["name"])?;
    Some(match text(v, &["email"]) {
        Some(email) => format!("{name} <{email}>"),
        None => name.to_string(),
    })
}

/// Where a pushed commit goes: what every commit of one push shares.
pub(crate) struct Push<'a> {
    pub branch: &'a str,
    pub category: Option<String>,
    pub repository: &'a str,
    pub codebase: String,
    pub project: &'a str,
}

/// The change for one commit of a push, in the shape github, gitlab and gitea share: `id`,
/// `message`, `url`, `timestamp`, `author`, `committer` and the file lists.
pub(crate) fn pushed_commit(
    commit: &Value,
    push: &Push<'_>,
    properties: Properties,
) -> Result<NewChange, ApiError> {
    Ok(NewChange {
        vcs: Some("git".into()),
        author: person(commit.get("author")).unwrap_or_default(),
        committer: person(commit.get("committer")),
        comments: text(commit, &["message"]).unwrap_or("").to_string(),
        branch: Some(push.branch.to_string()),
        revision: Some(required(commit, &["id"])?.to_string()),
        revlink: text(commit, &["url"]).map(str::to_string),
        when_timestamp: timestamp(required(commit, &["timestamp"])?)?,
        category: push.category.clone(),
        repository: push.repository.to_string(),
        codebase: push.codebase.clone(),
        project: push.project.to_string(),
        files: commit_files(commit),
        properties,
    })
}

/// The files a pushed commit added, modified and removed, in that order.
pub(crate) fn commit_files(commit: &Value) -> Vec<String> {
    ["added", "modified", "removed"]
        .iter()
        .filter_map(|kind| commit.get(kind).and_then(Value::as_array))
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}
