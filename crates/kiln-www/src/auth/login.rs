//! Logging in and out as Buildbot's front-end does it: `auth/login` asks the browser for a name
//! and password with an HTTP Basic challenge, starts a session and goes back to where the user
//! was; `auth/logout` ends the session. kiln's own pages use a form instead (`pages::login`);
//! both check passwords through [`log_in`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kiln_api::authz::UserInfo;
use kiln_config::WebAuth;

use super::{Auth, How, Identity, Peer, session};
use crate::buildbot_www::MOUNT;

/// How long a failed login takes at least, whatever failed: the answer's timing says nothing
/// about whether the user exists or which check refused.
const FAILED_LOGIN_TIME: Duration = Duration::from_millis(400);

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The configuration has no password logins.
    NoPasswords,
    /// The name or password is wrong.
    Wrong,
    /// Too many failures lately: try again in this many seconds.
    TooMany(i64),
}

impl Failure {
    pub fn message(&self) -> String {
        match self {
            Failure::NoPasswords => "this master does not take passwords".into(),
            Failure::Wrong => "the user name or password is wrong".into(),
            Failure::TooMany(wait) => format!(
                "too many failed logins: try again in {} minute{}",
                (wait + 59) / 60,
                if *wait > 60 { "s" } else { "" }
            ),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Failure::NoPasswords => StatusCode::NOT_FOUND,
            Failure::Wrong => StatusCode::UNAUTHORIZED,
            Failure::TooMany(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// Checks a name and password, counting failures per name and address. Every failure is
/// logged once, with the name and address, and takes [`FAILED_LOGIN_TIME`] at least.
pub async fn log_in(
    auth: &Auth,
    username: &str,
    password: &str,
    peer: Option<IpAddr>,
) -> Result<UserInfo, Failure> {
    let started = tokio::time::Instant::now();
    if !auth.services.read.config().www.auth.takes_passwords() {
        return Err(Failure::NoPasswords);
    }
    let now = auth.services.read.now();
    let outcome = match auth.limiter.check(username, peer, now) {
        Err(wait) => Err(Failure::TooMany(wait)),
        Ok(()) => super::passwords::check(&auth.services, username, password)
            .await
            .ok_or(Failure::Wrong),
    };
    match &outcome {
        Ok(_) => auth.limiter.succeeded(username),
        Err(failure) => {
            if *failure == Failure::Wrong {
                auth.limiter.failed(username, peer, now);
            }
            tracing::warn!(user = username, peer = ?peer, reason = %failure.message(), "a login failed");
            tokio::time::sleep_until(started + FAILED_LOGIN_TIME).await;
        }
    }
    outcome
}

/// The `Set-Cookie` header that starts `user`'s session.
pub fn start_session(auth: &Auth, user: &UserInfo) -> Option<HeaderValue> {
    let lifetime = auth.session_lifetime();
    let expires = auth.services.read.now() + lifetime;
    let value = session::issue(auth.services.read.session_key(), user, expires);
    HeaderValue::from_str(&session::set_cookie(
        &value,
        &auth.root(),
        auth.secure(),
        lifetime,
    ))
    .ok()
}

/// The `Set-Cookie` header that ends a session.
pub fn end_session(auth: &Auth) -> Option<HeaderValue> {
    HeaderValue::from_str(&session::clear_cookie(&auth.root(), auth.secure())).ok()
}

pub fn router<S: Clone + Send + Sync + 'static>(auth: Arc<Auth>) -> Router<S> {
    Router::new()
        .route("/auth/login", get(login_route))
        .route("/auth/logout", get(logout_route))
        .route(&format!("{MOUNT}/auth/login"), get(login_route))
        .route(&format!("{MOUNT}/auth/logout"), get(logout_route))
        .with_state(auth)
}

#[derive(serde::Deserialize)]
struct Back {
    redirect: Option<String>,
    /// An OAuth2 provider's answer: the code, the state, or why it refused.
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where to go after logging in or out.
#[derive(Clone, Copy)]
enum Target {
    /// kiln's pages: `redirect` is a path under the site's root.
    Pages,
    /// Buildbot's front-end: `redirect` is one of its `#/…` routes.
    Front,
}

/// The address to go back to: only a path of this site, never another site's address.
fn back(auth: &Auth, target: Target, redirect: Option<&str>) -> String {
    let route = redirect
        .filter(|r| r.starts_with('/') && !r.starts_with("//") && !r.contains('\\'))
        .unwrap_or("/");
    match target {
        Target::Pages if route.starts_with(&auth.root()) => route.to_string(),
        Target::Pages => format!("{}{}", auth.root(), route.trim_start_matches('/')),
        Target::Front => format!("{MOUNT}/#{route}"),
    }
}

/// Where a login or logout at `uri` goes back to.
fn target(uri: &Uri) -> Target {
    if uri.path().starts_with(MOUNT) {
        Target::Front
    } else {
        Target::Pages
    }
}

async fn login_route(
    State(auth): State<Arc<Auth>>,
    identity: Identity,
    headers: HeaderMap,
    Peer(peer): Peer,
    uri: Uri,
    Query(q): Query<Back>,
) -> Response {
    let to = back(&auth, target(&uri), q.redirect.as_deref());
    let config = auth.services.read.config();
    if let kiln_config::WebAuth::OAuth2(o) = &config.www.auth {
        return oauth2_login(&auth, o, &headers, &q, &to).await;
    }
    login(&auth, identity, &headers, peer, &to).await
}

/// An OAuth2 login: off to the provider, or back from it with a code.
async fn oauth2_login(
    auth: &Auth,
    o: &kiln_config::OAuth2,
    headers: &HeaderMap,
    q: &Back,
    to: &str,
) -> Response {
    let url = auth.services.read.config().buildbot_url.clone();
    if let Some(error) = &q.error {
        let why = q.error_description.as_deref().unwrap_or(error);
        tracing::warn!(error = %why, "the OAuth2 provider refused a login");
        let message = format!("{} refused the login: {why}\n", super::oauth2::label(o));
        return (StatusCode::UNAUTHORIZED, message).into_response();
    }
    let Some(code) = &q.code else {
        return match super::oauth2::start(o, &url, to).await {
            Ok((provider, state)) => {
                let mut response = redirect(&provider, None);
                let cookie = super::oauth2::state_cookie(&state, &auth.root(), auth.secure());
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    response.headers_mut().append(SET_COOKIE, v);
                }
                response
            }
            Err(why) => {
                tracing::error!(%why, "an OAuth2 login could not start");
                let message = format!(
                    "the login with {} could not start: {why}\n",
                    super::oauth2::label(o)
                );
                (StatusCode::BAD_GATEWAY, message).into_response()
            }
        };
    };
    let cookie = crate::pages::csrf::cookie_value(headers, super::oauth2::STATE_COOKIE);
    let state = q.state.as_deref().unwrap_or_default();
    match super::oauth2::finish(o, &url, code, state, cookie.as_deref()).await {
        Ok((user, back)) => {
            let back = if back.starts_with('/') && !back.starts_with("//") {
                back
            } else {
                auth.root()
            };
            let mut response = redirect(&back, start_session(auth, &user));
            let clear = cookie::Cookie::build((super::oauth2::STATE_COOKIE, ""))
                .path(auth.root())
                .max_age(cookie::time::Duration::ZERO)
                .build()
                .to_string();
            if let Ok(v) = HeaderValue::from_str(&clear) {
                response.headers_mut().append(SET_COOKIE, v);
            }
            tracing::info!(user = %user.username, "logged in with {}", super::oauth2::label(o));
            response
        }
        Err(why) => {
            tracing::warn!(%why, "an OAuth2 login failed");
            (
                StatusCode::UNAUTHORIZED,
                format!("the login failed: {why}\n"),
            )
                .into_response()
        }
    }
}

/// Buildbot's login: with HTTP Basic credentials that are right, a session and back; without,
/// a challenge the browser answers by asking for them.
async fn login(
    auth: &Auth,
    identity: Identity,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    to: &str,
) -> Response {
    let config = auth.services.read.config();
    match &config.www.auth {
        WebAuth::None => return redirect(to, None),
        WebAuth::RemoteUser { header, .. } => {
            return if identity.how == How::Proxy {
                redirect(to, None)
            } else {
                (
                    StatusCode::FORBIDDEN,
                    format!("the reverse proxy in front of this master did not name a user in the {header} header\n"),
                )
                    .into_response()
            };
        }
        WebAuth::UserPassword(_) | WebAuth::HtPasswd(_) | WebAuth::OAuth2(_) => {}
    }
    let Some((user, password)) = crate::basic_auth::credentials(headers) else {
        return challenge("log in to see and control the builds\n");
    };
    match log_in(auth, &user, &password, peer).await {
        Ok(user) => redirect(to, start_session(auth, &user)),
        Err(Failure::Wrong) => challenge(&format!("{}\n", Failure::Wrong.message())),
        Err(failure) => (failure.status(), format!("{}\n", failure.message())).into_response(),
    }
}

fn challenge(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, "Basic realm=\"buildbot\"")],
        message.to_string(),
    )
        .into_response()
}

fn redirect(to: &str, cookie: Option<HeaderValue>) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, v);
    }
    if let Some(c) = cookie {
        response.headers_mut().append(SET_COOKIE, c);
    }
    response
}

async fn logout_route(State(auth): State<Arc<Auth>>, uri: Uri, Query(q): Query<Back>) -> Response {
    let to = back(&auth, target(&uri), q.redirect.as_deref());
    redirect(&to, end_session(&auth))
}
