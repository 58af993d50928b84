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

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kiln_core::Properties;
use kiln_db::NewChange;
use serde_json::{Value, json};

use kiln_api::{Actor, Services};

pub fn router() -> Router<Services> {
    Router::new()
        .route("/change_hook", post(default_dialect))
        .route("/change_hook/{dialect}", post(dialect))
}

/// Why a notification was refused.
#[derive(Debug)]
pub(crate) enum HookError {
    /// The payload is malformed: 400, nothing stored.
    BadRequest(String),
    /// The signature is missing or wrong: 403, nothing stored.
    Forbidden(String),
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
    let config = services.read.config();
    match auth::check(
        services.read.basedir(),
        &config.www.change_hook_auth,
        headers,
    ) {
        Ok(()) => {}
        Err(auth::Refusal::Unauthorized) => {
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    axum::http::header::WWW_AUTHENTICATE,
                    "Basic realm=\"buildbot\"",
                )],
                "the change hooks need a user and password\n",
            )
                .into_response();
        }
        Err(auth::Refusal::Broken(why)) => {
            tracing::error!(%why, "checking change hook credentials");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{why}\n")).into_response();
        }
    }
    // The body is read only up to the limit, so an oversized one costs no more than that.
    let limit = config.www.change_hook_max_body;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than the change hooks' limit of {limit} bytes\n"),
        )
            .into_response()
    };
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) if format!("{e:#}").contains("length limit exceeded") => return too_large(),
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("the body could not be read: {e}\n"),
            )
                .into_response();
        }
    };
    let body = &body[..];
    let Some(options) = config.www.change_hook_dialects.get(name) else {
        return (
            StatusCode::NOT_FOUND,
            format!("the change hook dialect '{name}' is not enabled\n"),
        )
            .into_response();
    };
    if name == "poller" {
        return poller::handle(services, options, query).await;
    }
    let now = services.read.now();
    let parsed = match name {
        "base" => base::parse(query, body, now).map(Parsed::changes),
        "bitbucketcloud" => bitbucket::parse(bitbucket::Flavour::Cloud, options, headers, body),
        "bitbucketserver" => bitbucket::parse(bitbucket::Flavour::Server, options, headers, body),
        "gitea" => gitea::parse(options, headers, body),
        "github" => github::parse(options, headers, body),
        "gitlab" => gitlab::parse(options, query, headers, body),
        _ => Err(HookError::BadRequest(format!("unknown dialect '{name}'"))),
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(HookError::BadRequest(why)) => {
            return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
        }
        Err(HookError::Forbidden(why)) => {
            tracing::warn!(dialect = name, %why, "change hook refused");
            return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
        }
    };
    if let Some(why) = &parsed.ignored {
        return (
            StatusCode::OK,
            axum::Json(json!({"changeids": [], "ignored": why})),
        )
            .into_response();
    }
    let changes = parsed.changes;
    let mut ids = Vec::with_capacity(changes.len());
    for change in changes {
        match services.control.add_change(&Actor::Anonymous, change).await {
            Ok(id) => ids.push(id.0),
            Err(error) => {
                tracing::error!(%error, dialect = name, "storing a change");
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("storing the change failed: {}\n", error.message()),
                )
                    .into_response();
            }
        }
    }
    (StatusCode::OK, axum::Json(json!({"changeids": ids}))).into_response()
}

/// The string at `path` in a JSON payload.
pub(crate) fn text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// The string at `path`, or a 400 naming what is missing.
pub(crate) fn required<'a>(v: &'a Value, path: &[&str]) -> Result<&'a str, HookError> {
    text(v, path).ok_or_else(|| {
        HookError::BadRequest(format!("the payload has no string at {}", path.join(".")))
    })
}

/// An RFC 3339 time, as forges write commit times, in epoch seconds.
pub(crate) fn timestamp(s: &str) -> Result<i64, HookError> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| HookError::BadRequest(format!("bad commit timestamp {s:?}: {e}")))
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
) -> Result<NewChange, HookError> {
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
