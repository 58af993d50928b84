//! Pushes to forges and chats: commit statuses on GitHub, GitLab, Gitea, Bitbucket Cloud and
//! Bitbucket Server, comments on GitHub and Bitbucket Server pull requests, Zulip's Buildbot
//! integration, and kiln's own Matrix, Slack-compatible and JSON webhook messages.
//!
//! A report becomes the requests to send when it is decided; they are stored without their
//! credentials, which are rendered (secrets included) only when the requests are sent.

use std::time::Duration;

use base64::Engine;
use kiln_config::{PushConfig, PushService, TemplateType};
use kiln_core::Results;
use kiln_core::render::{RenderContext, RenderHooks};
use serde_json::{Value, json};

use crate::hooks::Hooks;
use crate::report::{Report, ReportEvent};
use crate::sink::Failure;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The stored form of one event's reports: `{"requests": [{method, url, body}]}`, or `None` when
/// the reports concern nothing this service can show (no repository, no revision, no pull
/// request).
pub fn encode(
    config: &PushConfig,
    reports: &[Report],
    hooks: &(dyn RenderHooks + Sync),
) -> Option<Value> {
    let mut requests = Vec::new();
    for r in reports {
        requests.extend(requests_for(config, r, hooks));
    }
    if requests.is_empty() {
        tracing::debug!(
            service = config.service.class(),
            "nothing to push for these reports"
        );
        return None;
    }
    Some(json!({ "requests": requests }))
}

/// One source stamp of a report's build, as its build dict has it.
struct Stamp {
    repository: String,
    project: String,
    branch: String,
    revision: String,
    codebase: String,
}

fn stamps(build: &Value) -> Vec<Stamp> {
    let got_revision = &build["properties"]["got_revision"][0];
    build["buildset"]["sourcestamps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            let codebase = text("codebase");
            // A build that checked out the branch's head knows its revision only from the step.
            let revision = match text("revision") {
                r if !r.is_empty() => r,
                _ => match got_revision {
                    Value::String(r) => r.clone(),
                    Value::Object(by_codebase) => by_codebase
                        .get(&codebase)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    _ => String::new(),
                },
            };
            Stamp {
                repository: text("repository"),
                project: text("project"),
                branch: text("branch"),
                revision,
                codebase,
            }
        })
        .collect()
}

/// The repository's path on its forge (`owner/repo`, or `group/sub/repo`), from a URL
/// (`https://host/o/r.git`, `ssh://git@host/o/r`) or an scp-like address (`git@host:o/r.git`).
pub fn repo_path(repository: &str) -> Option<String> {
    let rest = match repository.split_once("://") {
        Some((_, rest)) => rest.split_once('/')?.1,
        None => repository.split_once(':')?.1,
    };
    let path = rest.trim_matches('/').trim_end_matches(".git");
    (path.split('/').filter(|p| !p.is_empty()).count() >= 2).then(|| path.to_string())
}

/// The owner and name of a repository: the last two parts of its path.
fn owner_repo(path: &str) -> (String, String) {
    let mut parts = path.rsplitn(2, '/');
    let repo = parts.next().unwrap_or_default().to_string();
    let owner = parts.next().unwrap_or_default();
    let owner = owner.rsplit('/').next().unwrap_or_default().to_string();
    (owner, repo)
}

/// Where a report's build is shown.
fn target_url(build: &Value) -> String {
    build["url"].as_str().unwrap_or_default().to_string()
}

fn results(report: &Report) -> Option<Results> {
    report.results.and_then(Results::from_code)
}

fn text(report: &Report) -> String {
    report.body.as_ref().map(|b| b.text()).unwrap_or_default()
}

fn request(method: &str, url: String, body: Value) -> Value {
    json!({"method": method, "url": url, "body": body.to_string()})
}

/// Renders the status's context or key with the build's properties.
fn render_with(
    r: &kiln_core::render::Renderable,
    report: &Report,
    hooks: &(dyn RenderHooks + Sync),
) -> String {
    let props = report.properties.clone().unwrap_or_default();
    r.render_in(&RenderContext {
        props: &props,
        sourcestamps: &[],
        worker: &Default::default(),
        hooks,
    })
    .map(|v| v.render())
    .unwrap_or_else(|e| {
        tracing::warn!(error = %e.0, "rendering a status's context");
        String::new()
    })
}

fn requests_for(
    config: &PushConfig,
    report: &Report,
    hooks: &(dyn RenderHooks + Sync),
) -> Vec<Value> {
    use PushService::*;
    let base = &config.base_url;
    let Some(build) = report.builds.first() else {
        return match config.service {
            Matrix | Slack | Webhook => chat(config, report).into_iter().collect(),
            _ => Vec::new(),
        };
    };
    let started = matches!(
        report.event,
        ReportEvent::RequestNew | ReportEvent::BuildStarted
    );
    let context = render_with(&config.context, report, hooks);
    let description = text(report);
    let url = target_url(build);
    let mut out = Vec::new();
    match config.service {
        GitHub | Gitea | GitLab | Bitbucket | BitbucketServer => {
            for s in stamps(build) {
                if s.revision.is_empty() {
                    tracing::debug!(codebase = %s.codebase, "no revision to report a status on");
                    continue;
                }
                let path = if config.service == GitHub && s.project.contains('/') {
                    Some(s.project.clone())
                } else {
                    repo_path(&s.repository)
                };
                // Bitbucket Server's legacy statuses are by commit alone.
                let path = match (config.service, path) {
                    (BitbucketServer, p) => p.unwrap_or_default(),
                    (_, Some(p)) => p,
                    (_, None) => {
                        tracing::debug!(repository = %s.repository, "no repository to report a status on");
                        continue;
                    }
                };
                let (owner, repo) = owner_repo(&path);
                let sha = &s.revision;
                out.push(match config.service {
                    GitHub => request(
                        "POST",
                        format!("{base}/repos/{owner}/{repo}/statuses/{sha}"),
                        json!({"state": github_state(report, started), "description": description,
                               "target_url": url, "context": context}),
                    ),
                    Gitea => request(
                        "POST",
                        format!("{base}/api/v1/repos/{owner}/{repo}/statuses/{sha}"),
                        json!({"state": gitea_state(report, started, config.warning_as_success),
                               "target_url": url, "description": description, "context": context}),
                    ),
                    GitLab => {
                        let props = &build["properties"];
                        let project = match props["source_project_id"][0].as_i64() {
                            Some(id) => id.to_string(),
                            None => urlencode(&path),
                        };
                        let branch = props["source_branch"][0]
                            .as_str()
                            .map(String::from)
                            .unwrap_or_else(|| s.branch.clone());
                        request(
                            "POST",
                            format!("{base}/api/v4/projects/{project}/statuses/{sha}"),
                            json!({"state": gitlab_state(report), "ref": branch,
                                   "description": description, "target_url": url, "name": context}),
                        )
                    }
                    Bitbucket => {
                        let name = config
                            .status_name
                            .as_ref()
                            .map(|n| render_with(n, report, hooks))
                            .unwrap_or_default();
                        request(
                            "POST",
                            format!("{base}/{owner}/{repo}/commit/{sha}/statuses/build"),
                            json!({"state": bitbucket_state(report, started), "key": sha1_hex(&context),
                                   "name": name, "description": description, "url": url}),
                        )
                    }
                    _ => {
                        let mut body = json!({"state": bitbucket_state(report, started), "url": url,
                                              "key": context, "description": description});
                        if let Some(n) = &config.status_name {
                            body["name"] = json!(render_with(n, report, hooks));
                        }
                        request("POST", format!("{base}/rest/build-status/1.0/commits/{sha}"), body)
                    }
                });
            }
        }
        GitHubComment => {
            if description.is_empty() {
                return out;
            }
            for s in stamps(build) {
                let Some(issue) = pull_request_number(&s.branch) else {
                    continue;
                };
                let path = if s.project.contains('/') {
                    Some(s.project.clone())
                } else {
                    repo_path(&s.repository)
                };
                let Some(path) = path else {
                    continue;
                };
                let (owner, repo) = owner_repo(&path);
                out.push(request(
                    "POST",
                    format!("{base}/repos/{owner}/{repo}/issues/{issue}/comments"),
                    json!({"body": description}),
                ));
            }
        }
        BitbucketServerPRComment => {
            let pr = build["properties"]["pullrequesturl"][0]
                .as_str()
                .unwrap_or_default();
            if let Some(path) = url_path(pr)
                && !description.is_empty()
            {
                out.push(request(
                    "POST",
                    format!("{base}/rest/api/1.0{path}/comments"),
                    json!({"text": description}),
                ));
            }
        }
        Zulip => {
            let event = match report.event {
                ReportEvent::BuildStarted => "new",
                ReportEvent::BuildFinished => "finished",
                _ => return out,
            };
            let mut body = json!({
                "event": event,
                "buildid": build["buildid"],
                "buildername": build["builder"]["name"],
                "url": url,
                "project": stamps(build).first().map(|s| s.project.clone()).unwrap_or_default(),
                "timestamp": if event == "new" { build["started_at"].clone() } else { build["complete_at"].clone() },
            });
            if event == "finished" {
                body["results"] = build["results"].clone();
            }
            let mut target = format!("{base}/api/v1/external/buildbot");
            if let Some(stream) = &config.target {
                target.push_str(&format!("?stream={}", urlencode(stream)));
            }
            out.push(request("POST", target, body));
        }
        Matrix | Slack | Webhook => out.extend(chat(config, report)),
    }
    out
}

/// The message of a chat or webhook.
fn chat(config: &PushConfig, report: &Report) -> Option<Value> {
    let base = &config.base_url;
    let body = text(report);
    match config.service {
        PushService::Matrix => {
            if body.is_empty() {
                return None;
            }
            let room = urlencode(config.target.as_deref().unwrap_or_default());
            let mut message = json!({"msgtype": "m.text", "body": body});
            if report.kind == TemplateType::Html {
                message["format"] = json!("org.matrix.custom.html");
                message["formatted_body"] = json!(body);
            }
            // The transaction id makes a retried message one message (`{report}` is the stored
            // report's id).
            Some(request(
                "PUT",
                format!(
                    "{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/kiln-{{report}}"
                ),
                message,
            ))
        }
        PushService::Slack => {
            if body.is_empty() {
                return None;
            }
            let mut message = json!({"text": body});
            if let Some(c) = &config.target {
                message["channel"] = json!(c);
            }
            if let Some(u) = &config.username {
                message["username"] = json!(u);
            }
            Some(request("POST", base.clone(), message))
        }
        _ => Some(request(
            "POST",
            base.clone(),
            json!({
                "event": report.event.name(),
                "summary": report.summary,
                "subject": report.subject,
                "body": report.body.as_ref().map(|b| match b {
                    crate::report::Body::Json(v) => v.clone(),
                    crate::report::Body::Text(t) => json!(t),
                }),
                "type": report.kind.name(),
                "results": report.results,
                "result_name": results(report).map(|r| r.name()),
                "builds": report.builds,
                "users": report.users,
            }),
        )),
    }
}

fn github_state(report: &Report, started: bool) -> &'static str {
    if started {
        return "pending";
    }
    match results(report) {
        Some(Results::Success | Results::Warnings | Results::Skipped) => "success",
        Some(Results::Failure) => "failure",
        Some(Results::Exception | Results::Cancelled) => "error",
        Some(Results::Retry) | None => "pending",
    }
}

fn gitea_state(report: &Report, started: bool, warning_as_success: bool) -> &'static str {
    if started {
        return "pending";
    }
    match results(report) {
        Some(Results::Success | Results::Skipped) => "success",
        Some(Results::Warnings) if warning_as_success => "success",
        Some(Results::Warnings) => "warning",
        Some(Results::Failure) => "failure",
        Some(Results::Exception | Results::Cancelled) => "error",
        Some(Results::Retry) | None => "pending",
    }
}

fn gitlab_state(report: &Report) -> &'static str {
    match report.event {
        ReportEvent::RequestNew => return "pending",
        ReportEvent::BuildStarted => return "running",
        _ => {}
    }
    match results(report) {
        Some(Results::Success | Results::Warnings | Results::Skipped) => "success",
        Some(Results::Failure | Results::Exception) => "failed",
        Some(Results::Cancelled) => "canceled",
        Some(Results::Retry) | None => "pending",
    }
}

fn bitbucket_state(report: &Report, started: bool) -> &'static str {
    match (started, results(report)) {
        (true, _) | (false, None) => "INPROGRESS",
        (false, Some(Results::Success)) => "SUCCESSFUL",
        (false, Some(_)) => "FAILED",
    }
}

/// The number of a pull request's branch, `refs/pull/7/head` or `refs/pull/7/merge`.
fn pull_request_number(branch: &str) -> Option<u64> {
    let rest = branch.strip_prefix("refs/pull/")?;
    let (n, kind) = rest.split_once('/')?;
    matches!(kind, "head" | "merge").then(|| n.parse().ok())?
}

/// The path of a URL (`https://host/a/b` → `/a/b`).
fn url_path(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("://")?;
    let path = rest.split_once('/')?.1;
    Some(format!("/{}", path.trim_end_matches('/')))
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn sha1_hex(text: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends a stored push's requests, each with the service's credentials.
pub async fn deliver(
    config: &PushConfig,
    basedir: &std::path::Path,
    hooks: &Hooks,
    report_id: i64,
    payload: &Value,
    pool: &kiln_http::Pool,
) -> Result<(), Failure> {
    let render = |r| hooks.render(r).map_err(Failure::Permanent);
    let basic = |user: &str, password: &str| {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        ("Authorization".to_string(), format!("Basic {token}"))
    };
    let mut auth: Vec<(String, String)> = Vec::new();
    let mut query_key = None;
    use PushService::*;
    match config.service {
        GitHub | GitHubComment | Gitea => {
            if let Some(t) = &config.token {
                auth.push(("Authorization".into(), format!("token {}", render(t)?)));
            }
        }
        GitLab => {
            if let Some(t) = &config.token {
                auth.push(("PRIVATE-TOKEN".into(), render(t)?));
            }
        }
        Matrix => {
            if let Some(t) = &config.token {
                auth.push(("Authorization".into(), format!("Bearer {}", render(t)?)));
            }
        }
        Zulip => {
            if let Some(t) = &config.token {
                query_key = Some(render(t)?);
            }
        }
        Bitbucket | BitbucketServer | BitbucketServerPRComment | Webhook | Slack => {}
    }
    if let Some((user, password)) = &config.auth {
        auth.push(basic(&render(user)?, &render(password)?));
    }
    if let Some((key, secret, url)) = &config.oauth {
        let (k, s) = (render(key)?, render(secret)?);
        let token = oauth_token(config, basedir, url, basic(&k, &s)).await?;
        auth.push(("Authorization".into(), format!("Bearer {token}")));
    }
    for (name, value) in &config.headers {
        auth.push((name.clone(), render(value)?));
    }
    for r in payload["requests"].as_array().into_iter().flatten() {
        let mut url = r["url"]
            .as_str()
            .unwrap_or_default()
            .replace("{report}", &report_id.to_string());
        if let Some(key) = &query_key {
            let sep = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{sep}api_key={}", urlencode(key));
        }
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        headers.extend(auth.iter().cloned());
        let request = kiln_http::Request {
            method: r["method"].as_str().unwrap_or("POST").to_string(),
            url,
            headers,
            body: r["body"].as_str().unwrap_or_default().as_bytes().to_vec(),
            timeout: Some(TIMEOUT),
            max_answer: Some(1 << 20),
            verify: verify(config, basedir),
        };
        if config.debug {
            tracing::info!(service = config.service.class(), url = %r["url"], body = %r["body"], "pushing");
        }
        let answer = pool
            .send(&request)
            .await
            .map_err(|e| Failure::Retry(hooks.redact(&e.to_string())))?;
        if config.debug {
            tracing::info!(status = answer.status, "push answered");
        }
        match answer.status {
            200..=299 => {}
            408 | 429 | 500..=599 => {
                return Err(Failure::Retry(crate::http_push::answer_error(&answer)));
            }
            _ => return Err(Failure::Permanent(crate::http_push::answer_error(&answer))),
        }
    }
    Ok(())
}

fn verify(config: &PushConfig, basedir: &std::path::Path) -> kiln_http::Verify {
    match &config.verify {
        kiln_config::HttpVerify::Roots => kiln_http::Verify::Roots,
        kiln_config::HttpVerify::Off => kiln_http::Verify::Off,
        kiln_config::HttpVerify::CaFile(path) => kiln_http::Verify::CaFile(basedir.join(path)),
    }
}

/// Bitbucket Cloud's access token, traded for the OAuth consumer's key and secret.
async fn oauth_token(
    config: &PushConfig,
    basedir: &std::path::Path,
    url: &str,
    basic: (String, String),
) -> Result<String, Failure> {
    let request = kiln_http::Request {
        method: "POST".into(),
        url: url.to_string(),
        headers: vec![
            basic,
            (
                "Content-Type".into(),
                "application/x-www-form-urlencoded".into(),
            ),
        ],
        body: b"grant_type=client_credentials".to_vec(),
        timeout: Some(TIMEOUT),
        max_answer: Some(1 << 20),
        verify: verify(config, basedir),
    };
    let answer = kiln_http::send(&request)
        .await
        .map_err(|e| Failure::Retry(format!("getting a Bitbucket token: {e}")))?;
    if answer.status != 200 {
        return Err(Failure::Retry(format!(
            "getting a Bitbucket token: {}",
            crate::http_push::answer_error(&answer)
        )));
    }
    let body: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    body["access_token"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| Failure::Retry("Bitbucket's token answer has no access_token".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_and_pull_requests_are_read_as_forges_write_them() {
        assert_eq!(
            repo_path("https://github.com/o/r.git").as_deref(),
            Some("o/r")
        );
        assert_eq!(repo_path("git@github.com:o/r.git").as_deref(), Some("o/r"));
        assert_eq!(
            repo_path("ssh://git@gitlab.example.org/g/sub/r").as_deref(),
            Some("g/sub/r")
        );
        assert_eq!(repo_path("https://github.com/r"), None);
        assert_eq!(owner_repo("g/sub/r"), ("sub".into(), "r".into()));
        assert_eq!(pull_request_number("refs/pull/7/head"), Some(7));
        assert_eq!(pull_request_number("refs/pull/7/merge"), Some(7));
        assert_eq!(pull_request_number("refs/heads/main"), None);
        assert_eq!(
            url_path("https://bb.example.org/projects/P/repos/r/pull-requests/12/").as_deref(),
            Some("/projects/P/repos/r/pull-requests/12")
        );
        assert_eq!(urlencode("o/r"), "o%2Fr");
        assert_eq!(sha1_hex("fail"), "a602e216eb44a3ac5e096036eeaaef6bb9159677");
    }
}
