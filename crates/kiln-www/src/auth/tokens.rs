//! API tokens sent as `Authorization: Bearer …`: looked up by their digest; a token acts as its
//! user, with its own roles added.

use kiln_api::Services;
use kiln_api::authz::UserInfo;
use kiln_api::credentials::token_digest;

/// The user a token acts as, or why it is refused.
pub async fn user(services: &Services, token: &str) -> Result<UserInfo, String> {
    let row = services
        .read
        .db()
        .token_by_digest(&token_digest(token))
        .await
        .map_err(|error| {
            tracing::error!(%error, "reading an API token");
            "the token could not be checked".to_string()
        })?
        .ok_or_else(|| "the token is not known".to_string())?;
    let now = services.read.now();
    if row.revoked_at.is_some() {
        return Err(format!("the token {} was revoked", row.id));
    }
    if !row.valid_at(now) {
        return Err(format!("the token {} has expired", row.id));
    }
    let email = match services.read.db().find_user(&row.username).await {
        Ok(Some(u)) => u.attributes.get("email").cloned(),
        _ => None,
    };
    Ok(UserInfo {
        username: row.username,
        email,
        roles: row.roles,
        ..UserInfo::default()
    })
}
