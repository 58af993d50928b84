//! The `gitlab` dialect: `push`, `tag_push`, `merge_request` and `note` events from GitLab.
//!
//! With a `secret` configured, the `X-Gitlab-Token` header must equal it (compared in constant
//! time). The event is the payload's `object_kind`, or else the `X-Gitlab-Event` header. Options:
//! `secret` and `codebase` (also accepted as a `?codebase=` query argument).
//!
//! As in Buildbot, a merge request's changed files are not fetched from GitLab's API: its change
//! lists no files.

use kiln_api::ApiError;
use std::collections::BTreeMap;

use axum::http::HeaderMap;
use kiln_core::{Properties, PropertyValue};
use kiln_db::NewChange;
use serde_json::Value;

use super::{Parsed, Push, person, pushed_commit, required, text, timestamp};

pub(crate) fn parse(
    options: &BTreeMap<String, PropertyValue>,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Parsed, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(PropertyValue::Str(secret)) =
        options.get("secret").filter(|s| !s.render().is_empty())
    {
        let given = header("X-Gitlab-Token")
            .ok_or_else(|| ApiError::Forbidden("the request has no X-Gitlab-Token".into()))?;
        if !kiln_api::credentials::same_secret(secret.as_bytes(), given.as_bytes()) {
            return Err(ApiError::Forbidden(
                "the X-Gitlab-Token does not match the secret".into(),
            ));
        }
    }
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the payload is not valid JSON: {e}")))?;
    let query_codebase = query.and_then(|q| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(q)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "codebase")
            .map(|(_, v)| v)
    });
    let codebase = query_codebase
        .or_else(|| match options.get("codebase") {
            Some(PropertyValue::Str(c)) => Some(c.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let kind = match payload.get("object_kind").and_then(Value::as_str) {
        Some(k) => k.to_string(),
        None => match header("X-Gitlab-Event") {
            Some("Push Hook") => "push".into(),
            Some("Tag Push Hook") => "tag_push".into(),
            Some("Merge Request Hook") => "merge_request".into(),
            Some("Note Hook") => "note".into(),
            Some(other) => other.to_string(),
            None => {
                return Err(ApiError::BadRequest(
                    "neither object_kind nor X-Gitlab-Event says what the event is".into(),
                ));
            }
        },
    };
    match kind.as_str() {
        "push" | "tag_push" => push(&payload, &kind, codebase),
        "merge_request" => {
            let attrs = payload.get("object_attributes").ok_or_else(|| {
                ApiError::BadRequest("the payload has no object_attributes".into())
            })?;
            merge_request(attrs, &kind, codebase, None)
        }
        "note" => {
            let Some(mr) = payload.get("merge_request") else {
                return Ok(Parsed::ignored("only notes on merge requests are built"));
            };
            let note = text(&payload, &["object_attributes", "note"]).unwrap_or("");
            merge_request(mr, &kind, codebase, Some(note))
        }
        other => Ok(Parsed::ignored(format!(
            "the gitlab dialect does not handle '{other}' events"
        ))),
    }
}

fn push(payload: &Value, event: &str, codebase: String) -> Result<Parsed, ApiError> {
    let reference = required(payload, &["ref"])?;
    let Some(branch) = reference
        .strip_prefix("refs/heads/")
        .or_else(|| reference.strip_prefix("refs/tags/"))
    else {
        return Ok(Parsed::ignored(format!(
            "ignoring {reference}: only branches and tags are built"
        )));
    };
    let project = required(payload, &["repository", "name"])?;
    let repository = required(payload, &["repository", "url"])?;
    let mut changes = Vec::new();
    for commit in payload
        .get("commits")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // A commit already seen on another branch is not built again.
        if commit.get("distinct").and_then(Value::as_bool) == Some(false) {
            continue;
        }
        let mut properties = Properties::new();
        properties.set("event", event, "Change");
        let push = Push {
            branch,
            category: Some(event.to_string()),
            repository,
            codebase: codebase.clone(),
            project,
        };
        changes.push(pushed_commit(commit, &push, properties)?);
    }
    if changes.is_empty() {
        return Ok(Parsed::ignored("the push carries no new commits"));
    }
    Ok(Parsed::changes(changes))
}

/// A merge request's change; a `note` on it adds the note as the `comments` property.
fn merge_request(
    attrs: &Value,
    event: &str,
    codebase: String,
    note: Option<&str>,
) -> Result<Parsed, ApiError> {
    let state = text(attrs, &["state"]).unwrap_or("");
    if ["closed", "merged", "approved"].contains(&state) {
        return Ok(Parsed::ignored(format!(
            "ignoring a merge request in state '{state}'"
        )));
    }
    if note.is_none() {
        let action = text(attrs, &["action"]);
        if action == Some("update") && attrs.get("oldrev").is_none() {
            return Ok(Parsed::ignored(
                "ignoring a merge request update without new commits",
            ));
        }
    }
    let commit = attrs
        .get("last_commit")
        .ok_or_else(|| ApiError::BadRequest("the merge request has no last_commit".into()))?;
    let iid = attrs.get("iid").and_then(Value::as_i64).unwrap_or(0);
    let mut properties = Properties::new();
    for (name, path) in [
        ("source_branch", &["source_branch"][..]),
        ("source_repository", &["source", "git_http_url"][..]),
        ("source_git_ssh_url", &["source", "git_ssh_url"][..]),
        ("target_branch", &["target_branch"][..]),
        ("target_repository", &["target", "git_http_url"][..]),
        ("target_git_ssh_url", &["target", "git_ssh_url"][..]),
    ] {
        if let Some(v) = text(attrs, path) {
            properties.set(name, v, "Change");
        }
    }
    for name in ["source_project_id", "target_project_id"] {
        if let Some(v) = attrs.get(name).and_then(Value::as_i64) {
            properties.set(name, PropertyValue::Int(v), "Change");
        }
    }
    properties.set("event", event, "Change");
    if let Some(note) = note {
        properties.set("comments", note, "Change");
    }
    Ok(Parsed::changes(vec![NewChange {
        vcs: Some("git".into()),
        author: person(commit.get("author")).unwrap_or_default(),
        committer: None,
        comments: format!(
            "MR#{iid}: {}\n\n{}",
            text(attrs, &["title"]).unwrap_or(""),
            text(attrs, &["description"]).unwrap_or("")
        ),
        branch: Some(required(attrs, &["target_branch"])?.to_string()),
        revision: Some(required(commit, &["id"])?.to_string()),
        revlink: text(attrs, &["url"]).map(str::to_string),
        when_timestamp: timestamp(required(commit, &["timestamp"])?)?,
        category: Some(event.to_string()),
        repository: required(attrs, &["target", "git_http_url"])?.to_string(),
        codebase,
        project: required(attrs, &["target", "name"])?.to_string(),
        files: Vec::new(),
        properties,
    }]))
}
