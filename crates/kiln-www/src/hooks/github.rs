//! The `github` dialect: `push`, `pull_request` and `ping` events from GitHub (or anything that
//! speaks its webhook format).
//!
//! With a `secret` configured, every request must carry its HMAC: `X-Hub-Signature-256`
//! (SHA-256), or the older `X-Hub-Signature` (SHA-1), checked in constant time. Options, as in
//! Buildbot: `secret`, `strict` (refuse to run without a secret), `codebase`, `skips` (expressions
//! that skip a push whose head commit message matches; default `[ci skip]` and `[skip ci]`),
//! `pullrequest_ref` (default `merge`), and `github_property_whitelist` (payload keys of a pull
//! request copied into `github.*` properties).
//!
//! Unlike Buildbot, a pull request's changed files and head commit message are not fetched from
//! GitHub's API: the change is made from the payload alone.

use kiln_api::ApiError;
use std::collections::BTreeMap;

use axum::http::HeaderMap;
use hmac::{KeyInit, Mac};
use kiln_core::{Properties, PropertyValue};
use kiln_db::NewChange;
use serde_json::Value;

use super::{
    Parsed, Push, decode_hex, hmac_sha256_matches, pushed_commit, required, text, timestamp,
};

const DEFAULT_SKIPS: &[&str] = &[r"\[ *skip *ci *\]", r"\[ *ci *skip *\]"];

pub(crate) fn parse(
    options: &BTreeMap<String, PropertyValue>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Parsed, ApiError> {
    let option = |name: &str| options.get(name);
    let secret = match option("secret") {
        Some(PropertyValue::Str(s)) if !s.is_empty() => Some(s.as_str()),
        _ => None,
    };
    let strict = matches!(option("strict"), Some(PropertyValue::Bool(true)));
    if strict && secret.is_none() {
        return Err(ApiError::Forbidden(
            "strict mode is configured without a secret".into(),
        ));
    }
    if let Some(secret) = secret {
        verify(secret, headers, body)?;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let event = header("X-GitHub-Event")
        .ok_or_else(|| ApiError::BadRequest("no X-GitHub-Event header".into()))?;
    let payload = payload(header("Content-Type").unwrap_or(""), body)?;
    let codebase = match option("codebase") {
        Some(PropertyValue::Str(c)) => Some(c.clone()),
        _ => None,
    };
    match event {
        "ping" => Ok(Parsed::ignored("pong: ping events make no changes")),
        "push" => push(options, &payload, codebase),
        "pull_request" => pull_request(options, &payload, codebase),
        other => Ok(Parsed::ignored(format!(
            "the github dialect does not handle '{other}' events"
        ))),
    }
}

/// Checks the request's HMAC against `secret`.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (algorithm, hex) = match (header("X-Hub-Signature-256"), header("X-Hub-Signature")) {
        (Some(s), _) => ("sha256", s),
        (None, Some(s)) => ("sha1", s),
        (None, None) => return Err(ApiError::Forbidden("the request is not signed".into())),
    };
    let Some(given) = hex
        .strip_prefix(&format!("{algorithm}="))
        .and_then(decode_hex)
    else {
        return Err(ApiError::Forbidden(format!(
            "the {algorithm} signature is malformed"
        )));
    };
    let ok = match algorithm {
        "sha256" => hmac_sha256_matches(secret, body, &given),
        _ => hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes())
            .map(|mut m| {
                m.update(body);
                m.verify_slice(&given).is_ok()
            })
            .unwrap_or(false),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "the {algorithm} signature does not match the secret"
        )))
    }
}

/// The JSON payload: the body itself, or the `payload` field of a form.
fn payload(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let json = if content_type.starts_with("application/x-www-form-urlencoded") {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not a valid form: {e}")))?;
        fields
            .into_iter()
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_bytes())
            .ok_or_else(|| ApiError::BadRequest("the form has no payload field".into()))?
    } else {
        body.to_vec()
    };
    serde_json::from_slice(&json)
        .map_err(|e| ApiError::BadRequest(format!("the payload is not valid JSON: {e}")))
}

fn push(
    options: &BTreeMap<String, PropertyValue>,
    payload: &Value,
    codebase: Option<String>,
) -> Result<Parsed, ApiError> {
    let reference = required(payload, &["ref"])?;
    let (category, branch) = if let Some(b) = reference.strip_prefix("refs/heads/") {
        (None, b)
    } else if let Some(t) = reference.strip_prefix("refs/tags/") {
        (Some("tag".to_string()), t)
    } else {
        return Ok(Parsed::ignored(format!(
            "ignoring {reference}: only branches and tags are built"
        )));
    };
    if payload.get("deleted").and_then(Value::as_bool) == Some(true) {
        return Ok(Parsed::ignored(format!(
            "ignoring the deletion of {reference}"
        )));
    }
    let head_message = text(payload, &["head_commit", "message"]).unwrap_or("");
    if skipped(options, head_message)? {
        return Ok(Parsed::ignored("the head commit asks to skip CI"));
    }
    let repository = required(payload, &["repository", "html_url"])?;
    let project = required(payload, &["repository", "full_name"])?;
    let commits: Vec<&Value> = if payload.get("created").and_then(Value::as_bool) == Some(true) {
        payload.get("head_commit").into_iter().collect()
    } else {
        payload
            .get("commits")
            .and_then(Value::as_array)
            .map(|c| c.iter().collect())
            .unwrap_or_default()
    };
    let mut changes = Vec::new();
    for commit in commits {
        let mut properties = Properties::new();
        properties.set(
            "github_distinct",
            commit
                .get("distinct")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            "Change",
        );
        properties.set("event", "push", "Change");
        let push = Push {
            branch,
            category: category.clone(),
            repository,
            codebase: codebase.clone().unwrap_or_default(),
            project,
        };
        changes.push(pushed_commit(commit, &push, properties)?);
    }
    if changes.is_empty() {
        return Ok(Parsed::ignored("the push carries no commits"));
    }
    Ok(Parsed::changes(changes))
}

fn skipped(options: &BTreeMap<String, PropertyValue>, message: &str) -> Result<bool, ApiError> {
    let patterns: Vec<String> = match options.get("skips") {
        Some(PropertyValue::List(items)) => items.iter().map(PropertyValue::render).collect(),
        _ => DEFAULT_SKIPS.iter().map(|s| s.to_string()).collect(),
    };
    for p in patterns {
        // Buildbot searches the message (re.search), so the expression is not anchored.
        let re = regex::Regex::new(&p)
            .map_err(|e| ApiError::BadRequest(format!("bad skips expression {p:?}: {e}")))?;
        if re.is_match(message) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn pull_request(
    options: &BTreeMap<String, PropertyValue>,
    payload: &Value,
    codebase: Option<String>,
) -> Result<Parsed, ApiError> {
    let action = required(payload, &["action"])?;
    if !["opened", "reopened", "synchronize"].contains(&action) {
        return Ok(Parsed::ignored(format!(
            "ignoring the pull request action '{action}'"
        )));
    }
    let pr = payload
        .get("pull_request")
        .ok_or_else(|| ApiError::BadRequest("the payload has no pull_request".into()))?;
    let number = payload
        .get("number")
        .or_else(|| pr.get("number"))
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::BadRequest("the payload has no pull request number".into()))?;
    let pr_ref = match options.get("pullrequest_ref") {
        Some(PropertyValue::Str(r)) => r.clone(),
        _ => "merge".to_string(),
    };
    let title = text(pr, &["title"]).unwrap_or("");
    let body = text(pr, &["body"]).unwrap_or("");
    let commits = pr.get("commits").and_then(Value::as_i64).unwrap_or(0);
    let html_url = text(pr, &["html_url"]).unwrap_or("");
    let mut properties = Properties::new();
    properties.set("pullrequesturl", html_url, "Change");
    properties.set("event", "pull_request", "Change");
    properties.set(
        "basename",
        text(pr, &["base", "ref"]).unwrap_or(""),
        "Change",
    );
    if let (Some(PropertyValue::List(keys)), Some(map)) =
        (options.get("github_property_whitelist"), pr.as_object())
    {
        for key in keys.iter().map(PropertyValue::render) {
            if let Some(v) = map.get(&key) {
                properties.set(
                    format!("github.{key}"),
                    kiln_db::json_to_property(v),
                    "Change",
                );
            }
        }
    }
    let change = NewChange {
        vcs: Some("git".into()),
        author: text(payload, &["sender", "login"])
            .unwrap_or("")
            .to_string(),
        committer: None,
        comments: format!("GitHub Pull Request #{number} ({commits} commits)\n{title}\n{body}"),
        branch: Some(format!("refs/pull/{number}/{pr_ref}")),
        revision: Some(required(pr, &["head", "sha"])?.to_string()),
        revlink: Some(html_url.to_string()).filter(|u| !u.is_empty()),
        when_timestamp: match text(pr, &["updated_at"]) {
            Some(t) => timestamp(t)?,
            None => 0,
        },
        category: Some("pull".into()),
        repository: required(pr, &["base", "repo", "html_url"])?.to_string(),
        codebase: codebase.unwrap_or_default(),
        project: required(pr, &["base", "repo", "full_name"])?.to_string(),
        files: Vec::new(),
        properties,
    };
    Ok(Parsed::changes(vec![change]))
}
