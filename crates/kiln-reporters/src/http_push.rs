//! `reporters.HttpStatusPush`: one POST of the first report's body to `serverUrl`, with HTTP
//! Basic credentials and headers that may be secrets, rendered when the request is sent.

use std::time::Duration;

use base64::Engine;
use kiln_config::{HttpPushConfig, HttpVerify};
use serde_json::{Value, json};

use crate::report::{Body, Report};
use crate::sink::Failure;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The stored form of one event's reports: the first report's body, as Buildbot sends it. A
/// text body goes as text, rather than as the empty request Buildbot makes of it.
pub fn encode(reports: &[Report]) -> Option<Value> {
    let body = reports.first()?.body.as_ref()?;
    Some(match body {
        Body::Json(v) => json!({"content_type": "application/json", "body": v.to_string()}),
        Body::Text(t) => json!({"content_type": "text/plain; charset=utf-8", "body": t}),
    })
}

/// Posts a stored report.
pub async fn deliver(
    config: &HttpPushConfig,
    basedir: &std::path::Path,
    hooks: &crate::hooks::Hooks,
    payload: &Value,
    pool: &kiln_http::Pool,
) -> Result<(), Failure> {
    let render = |r| hooks.render(r).map_err(Failure::Permanent);
    let mut headers = vec![(
        "Content-Type".to_string(),
        payload["content_type"]
            .as_str()
            .unwrap_or("application/json")
            .to_string(),
    )];
    if let Some((user, password)) = &config.auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            render(user)?,
            render(password)?
        ));
        headers.push(("Authorization".into(), format!("Basic {token}")));
    }
    for (name, value) in &config.headers {
        headers.push((name.clone(), render(value)?));
    }
    let request = kiln_http::Request {
        method: "POST".into(),
        url: config.server_url.clone(),
        headers,
        body: payload["body"]
            .as_str()
            .unwrap_or_default()
            .as_bytes()
            .to_vec(),
        timeout: Some(TIMEOUT),
        max_answer: Some(1 << 20),
        verify: match &config.verify {
            HttpVerify::Roots => kiln_http::Verify::Roots,
            HttpVerify::Off => kiln_http::Verify::Off,
            HttpVerify::CaFile(path) => kiln_http::Verify::CaFile(basedir.join(path)),
        },
    };
    if config.debug {
        tracing::info!(url = %config.server_url, body = %payload["body"], "posting a status");
    }
    let answer = pool
        .send(&request)
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    if config.debug {
        tracing::info!(status = answer.status, body = %String::from_utf8_lossy(&answer.body), "status answer");
    }
    match answer.status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(Failure::Retry(answer_error(&answer))),
        _ => Err(Failure::Permanent(answer_error(&answer))),
    }
}

/// `500 Internal Server Error: <the answer's first 200 characters>`.
pub fn answer_error(answer: &kiln_http::Response) -> String {
    let text = String::from_utf8_lossy(&answer.body);
    let short: String = text.chars().take(200).collect();
    format!("{} {}: {}", answer.status, answer.reason, short.trim())
}
