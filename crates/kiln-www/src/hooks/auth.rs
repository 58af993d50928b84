//! HTTP Basic authentication of the change hooks (`c['www']['change_hook_auth']`).
//!
//! A `file:` source is read at each call, so users can be added or removed without a restart.

use std::path::Path;

use axum::http::HeaderMap;
use kiln_config::HookCredentials;

use kiln_api::ApiError;

use crate::basic_auth::{credentials, same_secret};

/// Checks the call's `Authorization` header against the configured credentials, and gives the
/// user they name; with none configured every call is let in, named by nobody.
pub(crate) fn check(
    basedir: &Path,
    sources: &[HookCredentials],
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    if sources.is_empty() {
        return Ok(None);
    }
    let Some((user, password)) = credentials(headers) else {
        return Err(unauthorized());
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
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    ApiError::internal(format!("cannot read {}: {e}", path.display()))
                })?;
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
        Ok(Some(user))
    } else {
        Err(unauthorized())
    }
}

/// No credentials, or wrong ones: 401 with a challenge.
fn unauthorized() -> ApiError {
    ApiError::Unauthorized("the change hooks need a user and password".into())
}
