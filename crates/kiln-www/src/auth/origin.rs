//! Which sites' pages may send control requests: the site's own (the origin of `buildbotURL`,
//! or the host the browser addressed) and those `c['www']['allowed_origins']` names, as
//! Buildbot's. A browser names the origin of every request a page makes with `POST`; a request
//! without one comes from a script, not a page.

use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, CONTENT_TYPE, HOST, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_api::Services;

/// `Err(origin)` when the request comes from a page of a site that is not allowed.
pub fn check(services: &Services, headers: &HeaderMap) -> Result<(), String> {
    let Some(origin) = headers.get(ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("(not text)");
    if own(services, headers, origin) || listed(services, origin) {
        Ok(())
    } else {
        Err(origin.to_string())
    }
}

/// `Err(site)` when a page of a site that is not allowed sent the request, by its `Origin` or,
/// without one, its `Referer` (a plain form post from an older browser names only that).
pub fn check_page(services: &Services, headers: &HeaderMap) -> Result<(), String> {
    check(services, headers)?;
    if headers.get(ORIGIN).is_some() {
        return Ok(());
    }
    let Some(referer) = headers
        .get(axum::http::header::REFERER)
        .and_then(|r| r.to_str().ok())
    else {
        return Ok(());
    };
    let origin = origin_of(referer);
    if origin.is_empty() || own(services, headers, &origin) || listed(services, &origin) {
        Ok(())
    } else {
        Err(origin)
    }
}

/// Whether `origin` is this site's.
fn own(services: &Services, headers: &HeaderMap, origin: &str) -> bool {
    let configured = origin_of(&services.read.config().buildbot_url);
    if origin.eq_ignore_ascii_case(&configured) {
        return true;
    }
    let host = headers.get(HOST).and_then(|h| h.to_str().ok());
    let addressed = origin.split_once("://").map(|(_, rest)| rest);
    matches!((host, addressed), (Some(h), Some(a)) if h.eq_ignore_ascii_case(a))
}

/// Whether `allowed_origins` names `origin`.
fn listed(services: &Services, origin: &str) -> bool {
    services
        .read
        .config()
        .www
        .allowed_origins
        .iter()
        .any(|p| p == "*" || glob::Pattern::new(p).is_ok_and(|p| p.matches(origin)))
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    format!("{scheme}://{host}")
}

/// The answer to a control request from a site that is not allowed.
pub fn refused() -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(CONTENT_TYPE, "application/json")],
        r#"{"error": {"message": "invalid origin"}}"#,
    )
        .into_response()
}

/// Lets the page of another allowed site read the answer.
pub fn allow_response(services: &Services, headers: &HeaderMap, response: &mut Response) {
    let Some(origin) = headers.get(ORIGIN) else {
        return;
    };
    let Ok(text) = origin.to_str() else { return };
    if own(services, headers, text) || !listed(services, text) {
        return;
    }
    let h = response.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("3600"));
    h.append(VARY, HeaderValue::from_static("Origin"));
}

/// The answer to a browser's preflight `OPTIONS`.
pub fn preflight(services: &Services, headers: &HeaderMap) -> Response {
    if check(services, headers).is_err() || headers.get(ORIGIN).is_none() {
        return refused();
    }
    let mut response = StatusCode::OK.into_response();
    allow_response(services, headers, &mut response);
    response.headers_mut().insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_scheme_host_and_port() {
        assert_eq!(
            origin_of("http://ci.example.org:8010/kiln/"),
            "http://ci.example.org:8010"
        );
        assert_eq!(
            origin_of("https://ci.example.org"),
            "https://ci.example.org"
        );
        assert_eq!(origin_of("nonsense"), "");
    }
}
