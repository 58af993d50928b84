//! HTTP Basic authentication of the change hooks (`c['www']['change_hook_auth']`).
//!
//! A `file:` source is read at each call, so users can be added or removed without a restart.
//! Passwords are compared through their SHA-256 digests in constant time, so neither their
//! contents nor their lengths show in the answer's timing.

use std::path::Path;

use axum::http::HeaderMap;
use base64::Engine;
use kiln_config::HookCredentials;
use sha2::{Digest, Sha256};

/// Why a call was not let in.
pub(crate) enum Refusal {
    /// No credentials, or wrong ones: 401 with a challenge.
    Unauthorized,
    /// The credentials could not be checked (an unreadable file): 500, logged.
    Broken(String),
}

/// Checks the call's `Authorization` header against the configured credentials; with none
/// configured every call is let in.
pub(crate) fn check(
    basedir: &Path,
    sources: &[HookCredentials],
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    if sources.is_empty() {
        return Ok(());
    }
    let Some((user, password)) = basic_credentials(headers) else {
        return Err(Refusal::Unauthorized);
    };
    let mut allowed = false;
    for source in sources {
        match source {
            HookCredentials::Users(users) => {
                for (u, p) in users {
                    allowed |= u == &user && same_secret(p, &password);
                }
            }
            HookCredentials::File(path) => {
                let path = basedir.join(path);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Refusal::Broken(format!("cannot read {}: {e}", path.display())))?;
                for line in text.lines() {
                    let line = line.trim_end_matches('\r');
                    if line.trim().is_empty() || line.trim_start().starts_with('#') {
                        continue;
                    }
                    if let Some((u, p)) = line.split_once(':') {
                        allowed |= u == user && same_secret(p, &password);
                    }
                }
            }
        }
    }
    if allowed {
        Ok(())
    } else {
        Err(Refusal::Unauthorized)
    }
}

/// The user and password of an `Authorization: Basic …` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
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

fn same_secret(expected: &str, given: &str) -> bool {
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(given.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}
