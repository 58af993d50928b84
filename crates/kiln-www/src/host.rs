//! The names the web port answers to.
//!
//! A page on another site can point its own host name at this master (DNS rebinding) and then
//! read the API and force builds from a visitor's browser, as if it were the master's own page.
//! The browser still sends that name in `Host`, so a request naming a host the master is not
//! known by is refused with 421 before anything else sees it. The master is known by the host of
//! `buildbotURL`, by `localhost`, by any IP address (a rebinding page needs a name of its own),
//! and by the names of `c['www']['allowed_hosts']`.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kiln_api::Services;

/// Refused requests are logged at most this often, with how many there were in between.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// When refusals were last logged, and how many came since.
static REFUSALS: Mutex<Option<(Instant, u64)>> = Mutex::new(None);

pub async fn check(State(services): State<Services>, request: Request, next: Next) -> Response {
    let Some(host) = request.headers().get(HOST) else {
        // HTTP/1.0 clients may send none; a browser always does.
        return next.run(request).await;
    };
    let config = services.read.config();
    let host = String::from_utf8_lossy(host.as_bytes()).into_owned();
    if allowed(&host, &config.buildbot_url, &config.www.allowed_hosts) {
        return next.run(request).await;
    }
    log_refusal(&host);
    let mut response = (
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "this master does not answer to the host name {host:?}: a page of another site may \
             be trying to reach it under that name. If it is a name of this master, set \
             buildbotURL to it or add it to c['www']['allowed_hosts'].\n"
        ),
    )
        .into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Whether a `Host` header names this master.
fn allowed(host: &str, buildbot_url: &str, allowed_hosts: &[String]) -> bool {
    let name = name_of(host);
    if name.parse::<IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    let own = buildbot_url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
        .map(|authority| authority.rsplit('@').next().unwrap_or_default())
        .map(name_of);
    if own.as_deref() == Some(name.as_str()) {
        return true;
    }
    allowed_hosts.iter().any(|pattern| {
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix('.') {
            _ if pattern == "*" => true,
            // `.example.org` allows the domain and every name below it.
            Some(domain) => name == domain || name.ends_with(&pattern),
            None => name == pattern,
        }
    })
}

/// The host name of a `Host` header or URL authority, without its port, lowercase, without a
/// final dot; an IPv6 address without its brackets.
fn name_of(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// One WARN line per `LOG_EVERY` however many requests are refused.
fn log_refusal(host: &str) {
    let mut last = REFUSALS.lock().unwrap_or_else(|e| e.into_inner());
    match &mut *last {
        Some((at, count)) if at.elapsed() < LOG_EVERY => *count += 1,
        _ => {
            let earlier = last.map_or(0, |(_, count)| count);
            tracing::warn!(
                host,
                refused_since_last_line = earlier,
                "refused a request for a host name this master does not answer to \
                 (c['www']['allowed_hosts'] lists more names)"
            );
            *last = Some((Instant::now(), 0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_master_are_answered_and_others_are_not() {
        let url = "https://ci.example.org:8010/buildbot/";
        let listed = vec![
            "builds.example.net".to_string(),
            ".corp.example".to_string(),
        ];
        for ok in [
            "ci.example.org",
            "CI.Example.Org:8010",
            "ci.example.org.",
            "127.0.0.1:8010",
            "10.1.2.3",
            "[::1]:8010",
            "localhost:8010",
            "app.localhost",
            "builds.example.net",
            "corp.example",
            "a.b.corp.example:443",
        ] {
            assert!(allowed(ok, url, &listed), "{ok}");
        }
        for refused in [
            "evil.example",
            "ci.example.org.evil.example",
            "example.org",
            "notcorp.example",
            "builds.example.net.evil",
            "",
        ] {
            assert!(!allowed(refused, url, &listed), "{refused}");
        }
        assert!(allowed("anything.example", url, &["*".to_string()]));
        assert!(allowed("ci", "http://user@ci:8010/", &[]));
    }
}
