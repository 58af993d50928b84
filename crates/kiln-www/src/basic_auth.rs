//! HTTP Basic credentials, as the change hooks and the try endpoint read them.
//!
//! Passwords are compared with `kiln_api::credentials::same_secret`, so neither their contents
//! nor their lengths show in the answer's timing.

use axum::http::HeaderMap;
use base64::Engine;

/// The user and password of an `Authorization: Basic …` header.
pub(crate) fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Whether `given` is the password `expected`.
pub(crate) fn same_secret(expected: &str, given: &str) -> bool {
    kiln_api::credentials::same_secret(expected.as_bytes(), given.as_bytes())
}
