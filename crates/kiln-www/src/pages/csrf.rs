//! Protection of the pages' controls against cross-site requests: every form carries the token
//! of the browser's `kiln_csrf` cookie, and a control whose form token is not the cookie's is
//! refused. Another site can make a browser send the cookie, but cannot read it to fill the form.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use cookie::{Cookie, SameSite};

/// The cookie that holds a browser's token.
pub const COOKIE_NAME: &str = "kiln_csrf";

/// The form field that carries the token.
pub const FIELD: &str = "csrf";

/// A browser's token, and whether it is new and must be set as its cookie.
#[derive(Debug, Clone)]
pub struct Token {
    pub value: String,
    pub new: bool,
}

/// The token of the browser that sent `headers`, or a new one.
pub fn token(headers: &HeaderMap) -> Token {
    match cookie_value(headers, COOKIE_NAME) {
        Some(value) if well_formed(&value) => Token { value, new: false },
        _ => Token {
            value: fresh(),
            new: true,
        },
    }
}

/// The `Set-Cookie` value that gives a browser its token, for the pages under `root`.
pub fn set_cookie(token: &Token, root: &str) -> String {
    Cookie::build((COOKIE_NAME, token.value.clone()))
        .path(root.to_string())
        .http_only(true)
        .same_site(SameSite::Strict)
        .build()
        .to_string()
}

/// Whether a control's form token is the token of the browser that sent it.
pub fn accepted(headers: &HeaderMap, form_token: Option<&str>) -> bool {
    match (cookie_value(headers, COOKIE_NAME), form_token) {
        (Some(cookie), Some(form)) if well_formed(&cookie) => {
            kiln_api::credentials::same_secret(cookie.as_bytes(), form.as_bytes())
        }
        _ => false,
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(Cookie::split_parse_encoded)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// 32 random bytes, in hex.
fn fresh() -> String {
    let mut bytes = [0u8; 32];
    if let Err(e) = getrandom::fill(&mut bytes) {
        // Without the system's randomness no token can be trusted: every control is refused.
        tracing::error!(error = %e, "no randomness for a CSRF token");
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn well_formed(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, value.parse().unwrap());
        h
    }

    #[test]
    fn a_form_is_accepted_only_with_its_browsers_token() {
        let t = token(&HeaderMap::new());
        assert!(t.new && well_formed(&t.value));
        let headers = with_cookie(&format!("other=1; {COOKIE_NAME}={}", t.value));
        let again = token(&headers);
        assert!(!again.new);
        assert_eq!(again.value, t.value);
        assert!(accepted(&headers, Some(&t.value)));
        assert!(!accepted(&headers, Some(&fresh())));
        assert!(!accepted(&headers, None));
        assert!(!accepted(&HeaderMap::new(), Some(&t.value)));
        // A cookie another site could have planted is not a token.
        let planted = with_cookie(&format!("{COOKIE_NAME}=x"));
        assert!(!accepted(&planted, Some("x")));
        assert!(set_cookie(&t, "/ci/").contains("SameSite=Strict"));
    }
}
