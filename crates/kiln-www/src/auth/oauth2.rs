//! Logging in through an OAuth2 provider (GitHub, GitLab, Google, or any OAuth2 or OpenID
//! Connect provider), as Buildbot's OAuth2 logins do: `auth/login` sends the browser to the
//! provider with a fresh `state`; the provider sends it back to `auth/login` with a code, which
//! the master exchanges for an access token, reads the user with it, and starts a session.
//!
//! The `state` is also kept in a short-lived cookie, with the page to go back to, and a callback
//! whose `state` is not the cookie's is refused: another site cannot log a browser in as
//! someone else.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kiln_api::authz::UserInfo;
use kiln_config::{OAuth2, OAuthProvider};
use serde_json::Value;

/// The cookie that carries a login's `state` and where to go back to.
pub const STATE_COOKIE: &str = "kiln_oauth";

/// How long a login at the provider may take.
const STATE_LIFETIME: i64 = 600;

/// How long one request to the provider may take.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest answer read from the provider.
const MAX_ANSWER: usize = 1 << 20;

/// A provider's three endpoints.
#[derive(Debug, Clone)]
struct Endpoints {
    authorize: String,
    token: String,
    userinfo: String,
}

/// The name the login link shows ("Log in with GitHub") and Buildbot's front-end is told.
pub fn label(o: &OAuth2) -> String {
    match &o.provider {
        OAuthProvider::GitHub { .. } => "GitHub".into(),
        OAuthProvider::GitLab { .. } => "GitLab".into(),
        OAuthProvider::Google => "Google".into(),
        OAuthProvider::Generic { label, .. } => label.clone(),
    }
}

/// The Font Awesome icon Buildbot's front-end shows on the login item.
pub fn icon(o: &OAuth2) -> &'static str {
    match &o.provider {
        OAuthProvider::GitHub { .. } => "fa-github",
        OAuthProvider::GitLab { .. } => "fa-gitlab",
        OAuthProvider::Google => "fa-google-plus",
        OAuthProvider::Generic { .. } => "fa-sign-in",
    }
}

fn scope(o: &OAuth2) -> &str {
    if let Some(s) = &o.scope {
        return s;
    }
    match &o.provider {
        OAuthProvider::GitHub { .. } => "user:email read:org",
        OAuthProvider::GitLab { .. } => "read_user read_api",
        OAuthProvider::Google => "openid email profile",
        OAuthProvider::Generic { .. } => "openid email profile",
    }
}

/// An HTTP client for the provider: certificates checked against the Mozilla roots.
fn client() -> Result<reqwest::Client, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent("kiln")
        .redirect(reqwest::redirect::Policy::none())
        .timeout(PROVIDER_TIMEOUT)
        .build()
        .map_err(|e| format!("HTTP client setup: {e}"))
}

/// Reads an answer as JSON, saying what went wrong in terms of `what`.
async fn json(
    answer: Result<reqwest::Response, reqwest::Error>,
    what: &str,
) -> Result<Value, String> {
    let mut answer = answer.map_err(|e| format!("{what}: {e}"))?;
    let status = answer.status();
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| format!("{what}: {e}"))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err(format!(
                "{what}: the answer is larger than {MAX_ANSWER} bytes"
            ));
        }
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text: String = text.chars().take(200).collect();
        return Err(format!("{what}: {status}: {text}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{what}: the answer is not JSON: {e}"))
}

async fn endpoints(client: &reqwest::Client, o: &OAuth2) -> Result<Endpoints, String> {
    Ok(match &o.provider {
        OAuthProvider::GitHub { server, .. } => {
            let site = server
                .as_deref()
                .unwrap_or("https://github.com")
                .trim_end_matches('/');
            let api = match server {
                Some(s) => format!("{}/api/v3", s.trim_end_matches('/')),
                None => "https://api.github.com".into(),
            };
            Endpoints {
                authorize: format!("{site}/login/oauth/authorize"),
                token: format!("{site}/login/oauth/access_token"),
                userinfo: format!("{api}/user"),
            }
        }
        OAuthProvider::GitLab { instance } => {
            let i = instance.trim_end_matches('/');
            Endpoints {
                authorize: format!("{i}/oauth/authorize"),
                token: format!("{i}/oauth/token"),
                userinfo: format!("{i}/api/v4/user"),
            }
        }
        OAuthProvider::Google => Endpoints {
            authorize: "https://accounts.google.com/o/oauth2/auth".into(),
            token: "https://oauth2.googleapis.com/token".into(),
            userinfo: "https://www.googleapis.com/oauth2/v3/userinfo".into(),
        },
        OAuthProvider::Generic {
            discovery,
            auth_uri,
            token_uri,
            userinfo_uri,
            ..
        } => {
            let found = match discovery {
                Some(url) => json(client.get(url).send().await, "OpenID Connect discovery").await?,
                None => Value::Null,
            };
            let pick = |given: &Option<String>, key: &str| {
                given
                    .clone()
                    .or_else(|| found[key].as_str().map(str::to_string))
                    .ok_or_else(|| format!("the provider's discovery document has no {key}"))
            };
            Endpoints {
                authorize: pick(auth_uri, "authorization_endpoint")?,
                token: pick(token_uri, "token_endpoint")?,
                userinfo: pick(userinfo_uri, "userinfo_endpoint")?,
            }
        }
    })
}

/// Where the provider sends the browser back: the site's `auth/login`.
pub fn callback(buildbot_url: &str) -> String {
    format!("{}/auth/login", buildbot_url.trim_end_matches('/'))
}

/// A fresh `state`: 32 random bytes in hex.
fn fresh_state() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The first step: the provider's address to send the browser to, and the value of the state
/// cookie that remembers the login and where to go back to.
pub async fn start(o: &OAuth2, buildbot_url: &str, back: &str) -> Result<(String, String), String> {
    let client = client()?;
    let e = endpoints(&client, o).await?;
    let state = fresh_state()?;
    let query = serde_urlencoded::to_string([
        ("client_id", o.client_id.as_str()),
        ("redirect_uri", &callback(buildbot_url)),
        ("response_type", "code"),
        ("scope", scope(o)),
        ("state", &state),
    ])
    .map_err(|e| e.to_string())?;
    let separator = if e.authorize.contains('?') { '&' } else { '?' };
    let cookie = format!("{state}.{}", URL_SAFE_NO_PAD.encode(back));
    Ok((format!("{}{separator}{query}", e.authorize), cookie))
}

/// The state cookie's settings: sent back on the provider's redirect, for a few minutes.
pub fn state_cookie(value: &str, root: &str, secure: bool) -> String {
    cookie::Cookie::build((STATE_COOKIE, value.to_string()))
        .path(root.to_string())
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(STATE_LIFETIME))
        .build()
        .to_string()
}

/// The second step: checks the callback's `state` against the cookie's, exchanges the code and
/// reads the user. Gives the user and where to go back to.
pub async fn finish(
    o: &OAuth2,
    buildbot_url: &str,
    code: &str,
    state: &str,
    cookie: Option<&str>,
) -> Result<(UserInfo, String), String> {
    let (expected, back) = cookie
        .and_then(|c| c.split_once('.'))
        .ok_or("the login was not started from this browser, or took too long: log in again")?;
    if !kiln_api::credentials::same_secret(expected.as_bytes(), state.as_bytes()) {
        return Err("the login's state does not match this browser's: log in again".into());
    }
    let back = URL_SAFE_NO_PAD
        .decode(back)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| "/".into());
    let client = client()?;
    let e = endpoints(&client, o).await?;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", &callback(buildbot_url)),
        ("client_id", &o.client_id),
        ("client_secret", &o.client_secret),
    ];
    let body = serde_urlencoded::to_string(form).map_err(|e| e.to_string())?;
    let answer = client
        .post(&e.token)
        .header("Accept", "application/json")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await;
    let token = json(answer, "exchanging the code for a token").await?;
    let access = token["access_token"].as_str().ok_or_else(|| {
        let why = token["error_description"]
            .as_str()
            .or(token["error"].as_str())
            .unwrap_or("no access_token");
        format!("the provider gave no token: {why}")
    })?;
    let user = user_info(&client, o, &e, access).await?;
    Ok((user, back))
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    what: &str,
) -> Result<Value, String> {
    let answer = client
        .get(url)
        .bearer_auth(token)
        .header("Accept", "application/json")
        .send()
        .await;
    json(answer, what).await
}

/// Reads who the token's user is, with their groups where the provider has them.
async fn user_info(
    client: &reqwest::Client,
    o: &OAuth2,
    e: &Endpoints,
    token: &str,
) -> Result<UserInfo, String> {
    let me = get(client, &e.userinfo, token, "reading the user").await?;
    let text = |v: &Value, key: &str| {
        v[key]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut user = match &o.provider {
        OAuthProvider::GitHub { .. } => UserInfo {
            username: text(&me, "login").ok_or("GitHub gave no login")?,
            email: text(&me, "email"),
            full_name: text(&me, "name"),
            ..UserInfo::default()
        },
        OAuthProvider::GitLab { .. } => UserInfo {
            username: text(&me, "username").ok_or("GitLab gave no username")?,
            email: text(&me, "email"),
            full_name: text(&me, "name"),
            ..UserInfo::default()
        },
        OAuthProvider::Google | OAuthProvider::Generic { .. } => {
            let email = text(&me, "email");
            let username = text(&me, "preferred_username")
                .or_else(|| {
                    email
                        .as_ref()
                        .and_then(|e| e.split('@').next())
                        .map(str::to_string)
                })
                .or_else(|| text(&me, "sub"))
                .ok_or("the provider named no user")?;
            UserInfo {
                username,
                email,
                full_name: text(&me, "name"),
                groups: me["groups"]
                    .as_array()
                    .map(|g| {
                        g.iter()
                            .filter_map(|g| g.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                ..UserInfo::default()
            }
        }
    };
    let api = e.userinfo.trim_end_matches("/user");
    match &o.provider {
        OAuthProvider::GitHub { teams, .. } => {
            if user.email.is_none() {
                let emails = get(
                    client,
                    &format!("{api}/user/emails"),
                    token,
                    "reading the user's emails",
                )
                .await?;
                user.email = emails
                    .as_array()
                    .and_then(|all| all.iter().find(|m| m["primary"] == true))
                    .and_then(|m| text(m, "email"));
            }
            let orgs = get(
                client,
                &format!("{api}/user/orgs"),
                token,
                "reading the user's organisations",
            )
            .await?;
            user.groups = names(&orgs, "login");
            if *teams {
                let found = get(
                    client,
                    &format!("{api}/user/teams"),
                    token,
                    "reading the user's teams",
                )
                .await?;
                user.groups
                    .extend(found.as_array().into_iter().flatten().filter_map(|t| {
                        Some(format!(
                            "{}/{}",
                            t["organization"]["login"].as_str()?,
                            t["slug"].as_str()?
                        ))
                    }));
            }
        }
        OAuthProvider::GitLab { .. } => {
            let groups = get(
                client,
                &format!("{api}/groups"),
                token,
                "reading the user's groups",
            )
            .await?;
            user.groups = names(&groups, "full_path");
        }
        OAuthProvider::Google | OAuthProvider::Generic { .. } => {}
    }
    Ok(user)
}

/// The `key` of each object of a JSON list.
fn names(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o[key].as_str().map(str::to_string))
        .collect()
}
