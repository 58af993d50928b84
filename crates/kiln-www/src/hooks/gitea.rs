//! The `gitea` dialect (Gitea and Forgejo), which Buildbot itself lacks: `push` and
//! `pull_request` events.
//!
//! With a `secret` configured, `X-Gitea-Signature` must be the hexadecimal HMAC-SHA256 of the
//! body, checked in constant time. Options: `secret`, `codebase`, and `pullrequest_ref` (the ref a
//! pull request builds, `head` by default, which Gitea keeps as `refs/pull/N/head`).

use kiln_api::ApiError;
use std::collections::BTreeMap;

use axum::http::HeaderMap;
use kiln_core::{Properties, PropertyValue};
use kiln_db::NewChange;
use serde_json::Value;

use super::{
    Parsed, Push, decode_hex, hmac_sha256_matches, pushed_commit, required, text, timestamp,
};

pub(crate) fn parse(
    options: &BTreeMap<String, PropertyValue>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Parsed, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(PropertyValue::Str(secret)) = options.get("secret")
        && !secret.is_empty()
    {
        let given = header("X-Gitea-Signature")
            .ok_or_else(|| ApiError::Forbidden("the request is not signed".into()))?;
        let mac = decode_hex(given)
            .ok_or_else(|| ApiError::Forbidden("the signature is malformed".into()))?;
        if !hmac_sha256_matches(secret, body, &mac) {
            return Err(ApiError::Forbidden(
                "the signature does not match the secret".into(),
            ));
        }
    }
    let event = header("X-Gitea-Event")
        .ok_or_else(|| ApiError::BadRequest("no X-Gitea-Event header".into()))?;
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the payload is not valid JSON: {e}")))?;
    let codebase = match options.get("codebase") {
        Some(PropertyValue::Str(c)) => c.clone(),
        _ => String::new(),
    };
    match event {
        "push" => push(&payload, codebase),
        "pull_request" => {
            let pr_ref = match options.get("pullrequest_ref") {
                Some(PropertyValue::Str(r)) => r.clone(),
                _ => "head".to_string(),
            };
            pull_request(&payload, codebase, &pr_ref)
        }
        other => Ok(Parsed::ignored(format!(
            "the gitea dialect does not handle '{other}' events"
        ))),
    }
}

fn push(payload: &Value, codebase: String) -> Result<Parsed, ApiError> {
    let reference = required(payload, &["ref"])?;
    let (category, branch) = if let Some(b) = reference.strip_prefix("refs/heads/") {
        ("push", b)
    } else if let Some(t) = reference.strip_prefix("refs/tags/") {
        ("tag", t)
    } else {
        return Ok(Parsed::ignored(format!(
            "ignoring {reference}: only branches and tags are built"
        )));
    };
    let repository = required(payload, &["repository", "html_url"])?;
    let project = required(payload, &["repository", "full_name"])?;
    let mut changes = Vec::new();
    for commit in payload
        .get("commits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut properties = Properties::new();
        properties.set("event", "push", "Change");
        let push = Push {
            branch,
            category: Some(category.to_string()),
            repository,
            codebase: codebase.clone(),
            project,
        };
        changes.push(pushed_commit(commit, &push, properties)?);
    }
    if changes.is_empty() {
        return Ok(Parsed::ignored("the push carries no commits"));
    }
    Ok(Parsed::changes(changes))
}

fn pull_request(payload: &Value, codebase: String, pr_ref: &str) -> Result<Parsed, ApiError> {
    let action = required(payload, &["action"])?;
    if !["opened", "reopened", "synchronized"].contains(&action) {
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
    let mut properties = Properties::new();
    properties.set("event", "pull_request", "Change");
    properties.set("pr_id", PropertyValue::Int(number), "Change");
    for (name, path) in [
        ("pullrequesturl", &["html_url"][..]),
        ("basename", &["base", "ref"][..]),
        ("head_branch", &["head", "ref"][..]),
        ("head_repository", &["head", "repo", "html_url"][..]),
    ] {
        if let Some(v) = text(pr, path) {
            properties.set(name, v, "Change");
        }
    }
    Ok(Parsed::changes(vec![NewChange {
        vcs: Some("git".into()),
        author: text(payload, &["sender", "login"])
            .unwrap_or("")
            .to_string(),
        committer: None,
        comments: format!(
            "Gitea Pull Request #{number}\n{}\n{}",
            text(pr, &["title"]).unwrap_or(""),
            text(pr, &["body"]).unwrap_or("")
        ),
        branch: Some(format!("refs/pull/{number}/{pr_ref}")),
        revision: Some(required(pr, &["head", "sha"])?.to_string()),
        revlink: text(pr, &["html_url"]).map(str::to_string),
        when_timestamp: match text(pr, &["updated_at"]) {
            Some(t) => timestamp(t)?,
            None => 0,
        },
        category: Some("pull".into()),
        repository: required(pr, &["base", "repo", "html_url"])?.to_string(),
        codebase,
        project: required(pr, &["base", "repo", "full_name"])?.to_string(),
        files: Vec::new(),
        properties,
    }]))
}
