//! Checking a name and password against what the configuration says users log in with:
//! `util.UserPasswordAuth`'s list, `util.HTPasswdAuth`'s file (read at each login, so that a
//! changed file needs no reconfiguration), and the web passwords of the users table
//! (`kiln user … --password`), which count whenever the configuration takes passwords.

use kiln_api::Services;
use kiln_api::authz::UserInfo;
use kiln_api::credentials::{PasswordCheck, check_password, same_secret};
use kiln_config::WebAuth;

use super::htpasswd;

/// A bcrypt hash of nothing anyone types, checked when no source knows the user, so that an
/// unknown name costs what a known one does.
const DECOY: &str = "$2b$12$C6UzMDM.H6dfI/f/IKxGhuuGjvUmvUL6dIEMbdbD9hJn0zv5uCD5K";

/// The user `username` is, if `password` is theirs.
pub async fn check(services: &Services, username: &str, password: &str) -> Option<UserInfo> {
    let config = services.read.config();
    let known = match &config.www.auth {
        WebAuth::UserPassword(users) => in_list(users, username, password),
        WebAuth::HtPasswd(path) => in_file(services, path, username, password).await,
        WebAuth::None | WebAuth::RemoteUser { .. } | WebAuth::OAuth2(_) => return None,
    };
    match known {
        // Buildbot's password logins give the name as the email too.
        Some(true) => Some(UserInfo {
            username: username.to_string(),
            email: Some(username.to_string()),
            ..UserInfo::default()
        }),
        Some(false) => None,
        None => in_users_table(services, username, password).await,
    }
}

/// `Some(right)` when the list names the user.
fn in_list(users: &[(String, String)], username: &str, password: &str) -> Option<bool> {
    // Every entry is compared, so the time taken does not say which one matched.
    let mut named = false;
    let mut right = false;
    for (name, secret) in users {
        let is_name = same_secret(name.as_bytes(), username.as_bytes());
        let is_secret = same_secret(secret.as_bytes(), password.as_bytes());
        named |= is_name;
        right |= is_name & is_secret;
    }
    named.then_some(right)
}

/// `Some(right)` when the password file names the user.
async fn in_file(
    services: &Services,
    path: &std::path::Path,
    username: &str,
    password: &str,
) -> Option<bool> {
    let path = services.read.basedir().join(path);
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(text) => text,
        Err(error) => {
            tracing::error!(file = %path.display(), %error, "the htpasswd file cannot be read");
            return None;
        }
    };
    let hash = htpasswd::lookup(&text, username)?.to_string();
    let password = password.to_string();
    Some(blocking(move || htpasswd::verify(&hash, &password)).await)
}

/// The users table's answer: the user with their `email` attribute, if the password is theirs.
async fn in_users_table(services: &Services, username: &str, password: &str) -> Option<UserInfo> {
    let db = services.read.db();
    let stored = match db.user_password_hash(username).await {
        Ok(stored) => stored,
        Err(error) => {
            tracing::error!(%error, "reading a password hash");
            None
        }
    };
    let Some(stored) = stored else {
        let password = password.to_string();
        blocking(move || bcrypt::verify(password, DECOY).unwrap_or(false)).await;
        return None;
    };
    let given = password.to_string();
    let right =
        blocking(move || matches!(check_password(&stored, &given), PasswordCheck::Right { .. }))
            .await;
    if !right {
        return None;
    }
    let email = match db.find_user(username).await {
        Ok(Some(user)) => user.attributes.get("email").cloned(),
        _ => None,
    };
    Some(UserInfo {
        username: username.to_string(),
        email: email.or_else(|| Some(username.to_string())),
        ..UserInfo::default()
    })
}

/// Runs a slow hash off the request threads.
async fn blocking(f: impl FnOnce() -> bool + Send + 'static) -> bool {
    tokio::task::spawn_blocking(f).await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoy_is_a_hash_that_costs_a_check() {
        assert_eq!(bcrypt::verify("anything", DECOY).ok(), Some(false));
    }

    #[test]
    fn a_listed_user_is_known_and_checked() {
        let users = vec![("alice".to_string(), "pw1".to_string())];
        assert_eq!(in_list(&users, "alice", "pw1"), Some(true));
        assert_eq!(in_list(&users, "alice", "pw2"), Some(false));
        assert_eq!(in_list(&users, "bob", "pw1"), None);
    }
}
