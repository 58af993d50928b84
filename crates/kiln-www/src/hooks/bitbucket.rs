//! The `bitbucketcloud` and `bitbucketserver` dialects: pushes and pull requests, told apart by the
//! `X-Event-Key` header, as Buildbot reads them.
//!
//! A pushed ref becomes one change on `refs/heads/NAME` or `refs/tags/NAME` (category `push`, or
//! `ref-deleted` for a deleted ref, which names its old commit). A pull request that is created or
//! updated becomes a change on `refs/pull-requests/ID/merge`; one that is merged (fulfilled) or
//! declined (rejected) a change on its target or source branch. The option `codebase` sets the
//! changes' codebase.

use kiln_api::ApiError;
use std::collections::BTreeMap;

use axum::http::HeaderMap;
use kiln_core::{Properties, PropertyValue};
use kiln_db::NewChange;
use serde_json::Value;

use super::{Parsed, required, text};

/// Which Bitbucket sends the event: they name the same things differently.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    Cloud,
    Server,
}

pub(crate) fn parse(
    flavour: Flavour,
    options: &BTreeMap<String, PropertyValue>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Parsed, ApiError> {
    let event = headers
        .get("X-Event-Key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::BadRequest("no X-Event-Key header".into()))?;
    let payload: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the payload is not valid JSON: {e}")))?;
    let codebase = match options.get("codebase") {
        Some(PropertyValue::Str(c)) => c.clone(),
        _ => String::new(),
    };
    let cx = Context {
        flavour,
        payload: &payload,
        codebase,
    };
    match event {
        "repo:push" | "repo:refs_changed" => cx.push(),
        "pullrequest:created" | "pr:opened" => cx.pull_request("pull-created", |pr| {
            Ok(format!("refs/pull-requests/{}/merge", pr_id(pr)?))
        }),
        "pullrequest:updated" | "pr:from_ref_updated" => cx.pull_request("pull-updated", |pr| {
            Ok(format!("refs/pull-requests/{}/merge", pr_id(pr)?))
        }),
        "pullrequest:fulfilled" | "pr:merged" => cx.pull_request("pull-fulfilled", |pr| {
            branch_ref(pr, "toRef", "destination")
        }),
        "pullrequest:rejected" | "pr:declined" => {
            cx.pull_request("pull-rejected", |pr| branch_ref(pr, "fromRef", "source"))
        }
        other => Ok(Parsed::ignored(format!(
            "the bitbucket dialect does not handle '{other}' events"
        ))),
    }
}

struct Context<'a> {
    flavour: Flavour,
    payload: &'a Value,
    codebase: String,
}

fn pr_id(pr: &Value) -> Result<i64, ApiError> {
    pr.get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::BadRequest("the pull request has no id".into()))
}

/// `refs/heads/BRANCH` of a pull request's side, under Buildbot's name or Bitbucket Cloud's own.
fn branch_ref(pr: &Value, buildbot: &str, cloud: &str) -> Result<String, ApiError> {
    let name = text(pr, &[buildbot, "displayId"])
        .or_else(|| text(pr, &[buildbot, "branch", "name"]))
        .or_else(|| text(pr, &[cloud, "branch", "name"]))
        .ok_or_else(|| {
            ApiError::BadRequest(format!("the pull request has no {buildbot} branch"))
        })?;
    Ok(format!("refs/heads/{name}"))
}

impl Context<'_> {
    fn repository(&self) -> Result<String, ApiError> {
        let repo = self
            .payload
            .get("repository")
            .ok_or_else(|| ApiError::BadRequest("the payload has no repository".into()))?;
        let url = match self.flavour {
            Flavour::Cloud => text(repo, &["links", "self", "href"]),
            Flavour::Server => repo.pointer("/links/self/0/href").and_then(Value::as_str),
        };
        url.map(str::to_string)
            .ok_or_else(|| ApiError::BadRequest("the repository has no self link".into()))
    }

    fn project(&self) -> String {
        text(self.payload, &["repository", "project", "name"])
            .unwrap_or("none")
            .to_string()
    }

    fn author(&self) -> String {
        let actor = self.payload.get("actor").unwrap_or(&Value::Null);
        let (name, id) = match self.flavour {
            Flavour::Cloud => (text(actor, &["display_name"]), text(actor, &["nickname"])),
            Flavour::Server => (
                text(actor, &["displayName"]),
                text(actor, &["emailAddress"]),
            ),
        };
        match (name, id) {
            (Some(n), Some(i)) => format!("{n} <{i}>"),
            (Some(n), None) => n.to_string(),
            (None, Some(i)) => i.to_string(),
            (None, None) => String::new(),
        }
    }

    fn change(
        &self,
        revision: &str,
        branch: String,
        category: &str,
    ) -> Result<NewChange, ApiError> {
        Ok(NewChange {
            vcs: Some("git".into()),
            author: self.author(),
            committer: None,
            comments: String::new(),
            branch: Some(branch),
            revision: Some(revision.to_string()),
            revlink: None,
            when_timestamp: 0,
            category: Some(category.to_string()),
            repository: self.repository()?,
            codebase: self.codebase.clone(),
            project: self.project(),
            files: Vec::new(),
            properties: Properties::new(),
        })
    }

    fn push(&self) -> Result<Parsed, ApiError> {
        let refs: Vec<&Value> = match self.flavour {
            Flavour::Cloud => self.payload.pointer("/push/changes"),
            Flavour::Server => self.payload.get("changes"),
        }
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
        let web = text(self.payload, &["repository", "links", "html", "href"]);
        let mut changes = Vec::new();
        for r in refs {
            let (kind, name, hash, category) = match self.flavour {
                Flavour::Cloud => {
                    let (side, category) = match r.get("new") {
                        Some(v) if !v.is_null() => (v, "push"),
                        _ => (r.get("old").unwrap_or(&Value::Null), "ref-deleted"),
                    };
                    (
                        text(side, &["type"]),
                        text(side, &["name"]),
                        text(side, &["target", "hash"]),
                        category,
                    )
                }
                Flavour::Server => {
                    let deleted = text(r, &["type"]) == Some("DELETE");
                    (
                        text(r, &["ref", "type"])
                            .map(|t| if t == "TAG" { "tag" } else { "branch" }),
                        text(r, &["ref", "displayId"]),
                        text(r, if deleted { &["fromHash"] } else { &["toHash"] }),
                        if deleted { "ref-deleted" } else { "push" },
                    )
                }
            };
            let (Some(kind), Some(name), Some(hash)) = (kind, name, hash) else {
                return Err(ApiError::BadRequest(
                    "a pushed ref lacks its type, name or commit".into(),
                ));
            };
            let branch = match kind {
                "tag" => format!("refs/tags/{name}"),
                _ => format!("refs/heads/{name}"),
            };
            let mut change = self.change(hash, branch, category)?;
            change.comments = format!("Bitbucket commit {hash}");
            change.revlink = web.map(|w| format!("{w}/commits/{hash}"));
            changes.push(change);
        }
        if changes.is_empty() {
            return Ok(Parsed::ignored("the push changes no refs"));
        }
        Ok(Parsed::changes(changes))
    }

    fn pull_request(
        &self,
        category: &str,
        branch: impl Fn(&Value) -> Result<String, ApiError>,
    ) -> Result<Parsed, ApiError> {
        let pr = self
            .payload
            .get("pullrequest")
            .or_else(|| self.payload.get("pullRequest"))
            .ok_or_else(|| ApiError::BadRequest("the payload has no pull request".into()))?;
        let id = pr_id(pr)?;
        let revision = text(pr, &["fromRef", "latestCommit"])
            .or_else(|| text(pr, &["fromRef", "commit", "hash"]))
            .or_else(|| text(pr, &["source", "commit", "hash"]));
        let revision = match revision {
            Some(r) => r,
            None => required(pr, &["fromRef", "latestCommit"])?,
        };
        let link = text(pr, &["links", "html", "href"])
            .or_else(|| pr.pointer("/links/self/0/href").and_then(Value::as_str))
            .or_else(|| text(pr, &["link"]))
            .unwrap_or("")
            .to_string();
        let mut change = self.change(revision, branch(pr)?, category)?;
        change.comments = format!(
            "pull-request #{id}: {}\n{link}",
            text(pr, &["title"]).unwrap_or("")
        );
        if !link.is_empty() {
            change.revlink = Some(link.clone());
            change
                .properties
                .set("pullrequesturl", link.as_str(), "Change");
        }
        Ok(Parsed::changes(vec![change]))
    }
}
