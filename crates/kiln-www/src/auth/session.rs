//! Sessions: a logged-in browser holds a cookie naming its user and when the session ends,
//! signed with the master's session key (HMAC-SHA256). Nothing is kept on the server, so a
//! session is good on every master of the database and survives a restart; a cookie that was
//! changed, or signed with another key, or is past its end, names nobody.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cookie::{Cookie, SameSite};
use hmac::{KeyInit, Mac};
use kiln_api::authz::UserInfo;
use serde::{Deserialize, Serialize};

/// The session cookie's name.
pub const COOKIE_NAME: &str = "kiln_session";

/// What a session cookie says, before its signature.
#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "u")]
    username: String,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    full_name: Option<String>,
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    /// When the session ends, in epoch seconds.
    exp: i64,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn mac(key: &[u8]) -> Option<HmacSha256> {
    HmacSha256::new_from_slice(key).ok()
}

/// The value of a session cookie for `user`, ending at `expires`.
pub fn issue(key: &[u8], user: &UserInfo, expires: i64) -> String {
    let claims = Claims {
        username: user.username.clone(),
        email: user.email.clone(),
        full_name: user.full_name.clone(),
        groups: user.groups.clone(),
        exp: expires,
    };
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap_or_default());
    let Some(mut m) = mac(key) else {
        return String::new();
    };
    m.update(payload.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("{payload}.{signature}")
}

/// Why a session cookie names nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// It is not a session cookie, or its signature is not the key's.
    Forged,
    /// It was good, but its session has ended.
    Expired,
}

/// The user a session cookie names, at `now`.
pub fn verify(key: &[u8], value: &str, now: i64) -> Result<UserInfo, Invalid> {
    let (payload, signature) = value.split_once('.').ok_or(Invalid::Forged)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Invalid::Forged)?;
    let mut m = mac(key).ok_or(Invalid::Forged)?;
    m.update(payload.as_bytes());
    // The comparison takes the same time wherever the signatures differ.
    m.verify_slice(&signature).map_err(|_| Invalid::Forged)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Invalid::Forged)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| Invalid::Forged)?;
    if now >= claims.exp {
        return Err(Invalid::Expired);
    }
    Ok(UserInfo {
        username: claims.username,
        email: claims.email,
        full_name: claims.full_name,
        groups: claims.groups,
        roles: Vec::new(),
    })
}

/// The `Set-Cookie` value that starts a session: only sent back to this site's pages under
/// `root` (`SameSite=Lax` still lets a link from elsewhere open a logged-in page), never readable
/// by scripts, only over HTTPS when the site is served so, and dropped by the browser when the
/// session ends.
pub fn set_cookie(value: &str, root: &str, secure: bool, lifetime: i64) -> String {
    Cookie::build((COOKIE_NAME, value.to_string()))
        .path(root.to_string())
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(lifetime))
        .build()
        .to_string()
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie(root: &str, secure: bool) -> String {
    Cookie::build((COOKIE_NAME, ""))
        .path(root.to_string())
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserInfo {
        UserInfo {
            username: "alice".into(),
            email: Some("alice@example.org".into()),
            full_name: Some("Alice A.".into()),
            groups: vec!["devs".into()],
            roles: Vec::new(),
        }
    }

    #[test]
    fn a_session_names_its_user_until_it_ends() {
        let key = [7u8; 32];
        let value = issue(&key, &alice(), 1_000);
        assert_eq!(verify(&key, &value, 999), Ok(alice()));
        assert_eq!(verify(&key, &value, 1_000), Err(Invalid::Expired));
    }

    #[test]
    fn a_changed_or_foreign_cookie_names_nobody() {
        let key = [7u8; 32];
        let value = issue(&key, &alice(), 1_000);
        assert_eq!(verify(&[8u8; 32], &value, 0), Err(Invalid::Forged));
        // Another user's name with the old signature.
        let (_, signature) = value.split_once('.').unwrap();
        let mallory = UserInfo {
            username: "mallory".into(),
            ..alice()
        };
        let forged_payload = issue(&key, &mallory, 1_000);
        let (payload, _) = forged_payload.split_once('.').unwrap();
        assert_eq!(
            verify(&key, &format!("{payload}.{signature}"), 0),
            Err(Invalid::Forged)
        );
        for junk in ["", ".", "garbage", "a.b", &format!("{payload}.")] {
            assert_eq!(verify(&key, junk, 0), Err(Invalid::Forged), "{junk:?}");
        }
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site() {
        let c = set_cookie("v", "/ci/", true, 60);
        for part in [
            "kiln_session=v",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/ci/",
            "Max-Age=60",
        ] {
            assert!(c.contains(part), "{c} lacks {part}");
        }
        assert!(clear_cookie("/", false).contains("Max-Age=0"));
    }
}
