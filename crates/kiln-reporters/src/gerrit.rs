//! `reporters.GerritStatusPush`: reviews on Gerrit changes, made by the Gerrit generators'
//! callbacks (or Buildbot's default review and summary) and sent with `ssh … gerrit review`, or
//! to Gerrit's REST API when the server is an `http(s)://` URL.

use std::time::Duration;

use base64::Engine;
use kiln_config::{Data, GerritCallback, GerritConfig, GerritStage, MasterConfig};
use kiln_core::{PropertyValue, Results};
use serde_json::{Map, Value, json};

use crate::data::BuildInfo;
use crate::hooks::Hooks;
use crate::report::Report;
use crate::sink::Failure;

/// How long one `gerrit review` or REST call may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A review: its message and labels (`Verified=1`).
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub message: String,
    pub labels: Map<String, Value>,
}

impl Review {
    pub fn to_json(&self) -> Value {
        json!({"message": self.message, "labels": self.labels})
    }
}

fn verified(ok: bool) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert("Verified".into(), json!(if ok { 1 } else { -1 }));
    labels
}

/// Buildbot's review of one finished build; none for RETRY.
fn default_review(build: &BuildInfo) -> Option<Review> {
    let results = build.results().and_then(Results::from_code)?;
    if results == Results::Retry {
        return None;
    }
    Some(Review {
        message: format!(
            "Buildbot finished compiling your patchset\non configuration: {}\nThe result is: {}\n",
            build.builder.name,
            results.name().to_uppercase()
        ),
        labels: verified(results == Results::Success),
    })
}

/// Buildbot's summary of a buildset's builds: a line each, by builder name.
fn default_summary(builds: &[BuildInfo]) -> Option<Review> {
    let mut sorted: Vec<&BuildInfo> = builds.iter().collect();
    sorted.sort_by(|a, b| a.builder.name.cmp(&b.builder.name));
    let lines: Vec<String> = sorted
        .iter()
        .map(|b| {
            let verb = match b.results().and_then(Results::from_code) {
                Some(Results::Success) => "succeeded".to_string(),
                Some(Results::Failure) => "failed".to_string(),
                Some(Results::Warnings) => "completed with warnings".to_string(),
                Some(Results::Exception) => "encountered an exception".to_string(),
                other => format!(
                    "completed with unknown result {}",
                    other.map_or(-1, |r| r.code())
                ),
            };
            format!(
                "Builder {} {verb} ({}) - {}",
                b.builder.name, b.row.state_string, b.url
            )
        })
        .collect();
    let all_ok = builds.iter().all(|b| b.results() == Some(0));
    Some(Review {
        message: lines.join("\n\n"),
        labels: verified(all_ok),
    })
}

fn data(v: &Value) -> Data {
    Data::from(&kiln_db::json_to_property(v))
}

/// What a callback gave back: `makeReviewResult`'s dict, the old `(message, verified,
/// reviewed)` tuple, a start callback's message, or nothing.
fn review_of(value: Data) -> Result<Option<Review>, String> {
    let value = value
        .to_property()
        .map_err(|e| format!("the callback's value is not plain data: {e}"))?;
    let text = |v: &PropertyValue| match v {
        PropertyValue::Null => None,
        PropertyValue::Str(s) => Some(s.clone()),
        other => Some(other.render()),
    };
    Ok(match value {
        PropertyValue::Null => None,
        PropertyValue::Str(s) => Some(Review {
            message: s,
            labels: Map::new(),
        }),
        PropertyValue::Map(m) => {
            let Some(message) = m.get("message").and_then(text) else {
                return Ok(None);
            };
            let labels = match m.get("labels") {
                Some(PropertyValue::Map(l)) => l
                    .iter()
                    .map(|(k, v)| (k.clone(), kiln_db::property_to_json(v)))
                    .collect(),
                _ => Map::new(),
            };
            Some(Review { message, labels })
        }
        PropertyValue::List(items) => {
            let Some(message) = items.first().and_then(text) else {
                return Ok(None);
            };
            let mut labels = Map::new();
            for (i, name) in [(1, "Verified"), (2, "Code-Review")] {
                // Python configurations write `result == SUCCESS or -1`: True is +1.
                let v = match items.get(i) {
                    Some(PropertyValue::Int(v)) => *v,
                    Some(PropertyValue::Bool(b)) => i64::from(*b),
                    _ => 0,
                };
                if v != 0 {
                    labels.insert(name.into(), json!(v));
                }
            }
            Some(Review { message, labels })
        }
        other => {
            return Err(format!(
                "a review callback must return a message, a tuple or makeReviewResult's dict, not {}",
                other.render()
            ));
        }
    })
}

/// The review of one build at its start or end.
pub fn build_review(
    config: &MasterConfig,
    stage: GerritStage,
    callback: Option<GerritCallback>,
    arg: &PropertyValue,
    build: &BuildInfo,
) -> Result<Option<Review>, String> {
    let Some(cb) = callback else {
        return Ok(match stage {
            GerritStage::End => default_review(build),
            _ => None,
        });
    };
    let name = Data::Str(build.builder.name.clone());
    let dict = data(&build.dict(true, false, false));
    let arg = Data::from(arg);
    let f = &config.functions;
    let value = match (cb.call, stage) {
        (Some(call), GerritStage::End) => f.call(
            call,
            &[
                Data::Function(cb.func),
                name,
                dict,
                Data::Int(build.results().unwrap_or(-1)),
                arg,
            ],
            &[],
        )?,
        (Some(call), _) => f.call(call, &[Data::Function(cb.func), name, dict, arg], &[])?,
        (None, _) => f.call(cb.func, &[name, dict, arg], &[])?,
    };
    review_of(value)
}

/// The review of a buildset's builds.
pub fn buildset_review(
    config: &MasterConfig,
    callback: Option<GerritCallback>,
    arg: &PropertyValue,
    builds: &[BuildInfo],
    results: i64,
) -> Result<Option<Review>, String> {
    let Some(cb) = callback else {
        return Ok(default_summary(builds));
    };
    let infos: Vec<Value> = builds
        .iter()
        .map(|b| {
            let result = b.results().unwrap_or(-1);
            json!({
                "name": b.builder.name,
                "result": result,
                "resultText": Results::from_code(result).map_or("unknown", |r| r.name()),
                "text": b.row.state_string,
                "url": b.url,
                "build": b.dict(true, false, false),
            })
        })
        .collect();
    let list = data(&Value::Array(infos));
    let arg = Data::from(arg);
    let f = &config.functions;
    let value = match cb.call {
        Some(call) => f.call(
            call,
            &[Data::Function(cb.func), list, Data::Int(results), arg],
            &[],
        )?,
        None => f.call(cb.func, &[list, Data::Int(results), Data::None, arg], &[])?,
    };
    review_of(value)
}

/// The stored form of one event's reviews: the change, project and revision each concerns,
/// from the properties a Gerrit change gives its builds.
pub fn encode(reports: &[Report]) -> Option<Value> {
    let mut reviews = Vec::new();
    for r in reports {
        let Some(crate::report::Body::Json(review)) = &r.body else {
            continue;
        };
        let Some(build) = r.builds.first() else {
            continue;
        };
        let prop = |name: &str| match &build["properties"][name][0] {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let Some(change) = prop("event.change.number").or_else(|| prop("event.change.id")) else {
            tracing::debug!("no Gerrit change to review: the build has no event.change.id");
            continue;
        };
        let Some(revision) = prop("event.patchSet.revision")
            .or_else(|| prop("got_revision"))
            .or_else(|| prop("revision"))
        else {
            continue;
        };
        reviews.push(json!({
            "change": change,
            "project": prop("event.change.project").unwrap_or_default(),
            "revision": revision,
            "message": review["message"],
            "labels": review["labels"],
        }));
    }
    (!reviews.is_empty()).then(|| json!({ "reviews": reviews }))
}

/// Sends stored reviews.
pub async fn deliver(
    config: &GerritConfig,
    basedir: &std::path::Path,
    hooks: &Hooks,
    payload: &Value,
) -> Result<(), Failure> {
    for review in payload["reviews"].as_array().into_iter().flatten() {
        if config.server.starts_with("http://") || config.server.starts_with("https://") {
            rest(config, basedir, hooks, review).await?;
        } else {
            ssh(config, basedir, review).await?;
        }
    }
    Ok(())
}

/// `ssh … gerrit review`, with Buildbot's arguments: each option and its value one argument,
/// which ssh joins into the remote command line, and the message quoted with `'` (any `'` in it
/// becomes `"`).
pub fn ssh_arguments(
    config: &GerritConfig,
    basedir: &std::path::Path,
    review: &Value,
) -> Vec<String> {
    let mut args: Vec<String> = vec!["-o".into(), "BatchMode=yes".into()];
    if let Some(identity) = &config.identity_file {
        args.push("-i".into());
        args.push(basedir.join(identity).display().to_string());
    }
    args.push(format!("{}@{}", config.username, config.server));
    args.push("-p".into());
    args.push(config.port.to_string());
    args.push("gerrit".into());
    args.push("review".into());
    let project = review["project"].as_str().unwrap_or_default();
    if !project.is_empty() {
        args.push(format!("--project {project}"));
    }
    args.push("--tag autogenerated:buildbot".into());
    if let Some(n) = &config.notify {
        args.push(format!("--notify {n}"));
    }
    let message = review["message"]
        .as_str()
        .unwrap_or_default()
        .replace('\'', "\"");
    args.push(format!("--message '{message}'"));
    for (label, value) in review["labels"].as_object().into_iter().flatten() {
        args.push(format!("--label {label}={value}"));
    }
    args.push(review["revision"].as_str().unwrap_or_default().to_string());
    args
}

async fn ssh(
    config: &GerritConfig,
    basedir: &std::path::Path,
    review: &Value,
) -> Result<(), Failure> {
    let args = ssh_arguments(config, basedir, review);
    let run = tokio::process::Command::new(&config.ssh_command)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| {
            Failure::Retry(format!(
                "gerrit review took longer than {} s",
                TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| Failure::Retry(format!("running {}: {e}", config.ssh_command)))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let short: String = stderr.chars().take(300).collect();
    Err(Failure::Retry(format!(
        "gerrit review failed ({}): {}",
        output.status,
        short.trim()
    )))
}

async fn rest(
    config: &GerritConfig,
    basedir: &std::path::Path,
    hooks: &Hooks,
    review: &Value,
) -> Result<(), Failure> {
    let password = match &config.password {
        Some(p) => hooks.render(p).map_err(Failure::Permanent)?,
        None => String::new(),
    };
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", config.username));
    let change = crate::push::urlencode(review["change"].as_str().unwrap_or_default());
    let revision = review["revision"].as_str().unwrap_or_default();
    let mut body = json!({
        "message": review["message"],
        "labels": review["labels"],
        "tag": "autogenerated:buildbot",
    });
    if let Some(n) = &config.notify {
        body["notify"] = json!(n);
    }
    let request = kiln_http::Request {
        method: "POST".into(),
        url: format!(
            "{}/a/changes/{change}/revisions/{revision}/review",
            config.server
        ),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("Authorization".into(), format!("Basic {token}")),
        ],
        body: body.to_string().into_bytes(),
        timeout: Some(TIMEOUT),
        max_answer: Some(1 << 20),
        verify: match &config.verify {
            kiln_config::HttpVerify::Roots => kiln_http::Verify::Roots,
            kiln_config::HttpVerify::Off => kiln_http::Verify::Off,
            kiln_config::HttpVerify::CaFile(p) => kiln_http::Verify::CaFile(basedir.join(p)),
        },
    };
    let answer = kiln_http::send(&request)
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    match answer.status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(Failure::Retry(crate::http_push::answer_error(&answer))),
        _ => Err(Failure::Permanent(crate::http_push::answer_error(&answer))),
    }
}
