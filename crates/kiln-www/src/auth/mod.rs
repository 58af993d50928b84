//! Who asks, on every request of the web port, decided once by [`identify`] before any handler
//! runs: an API token (`Authorization: Bearer`), else the session cookie a login gave, else the
//! header of a trusted reverse proxy (`util.RemoteUserAuth`), else nobody. Handlers read the
//! outcome as an [`Identity`] and hand its actor to the control handle, which decides what the
//! actor may do.
//!
//! Logging in and out is in [`login`]; the pages' own login form is in `pages::login`.

mod htpasswd;
pub mod limiter;
pub mod login;
pub mod oauth2;
pub mod origin;
pub mod passwords;
pub mod read;
mod remote_user;
pub mod session;
mod tokens;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::header::{AUTHORIZATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kiln_api::{Actor, Services};

/// How the request said who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// It did not.
    Nobody,
    /// With a session cookie.
    Session,
    /// With a session cookie that names nobody (changed, foreign or past its end).
    BadSession,
    /// With an API token.
    Token,
    /// Through a trusted reverse proxy's header.
    Proxy,
}

/// Who a request comes from.
#[derive(Debug, Clone)]
pub struct Identity {
    pub actor: Actor,
    pub how: How,
}

impl Identity {
    fn anonymous(how: How) -> Identity {
        Identity {
            actor: Actor::Anonymous,
            how,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Identity, Infallible> {
        Ok(parts
            .extensions
            .get::<Identity>()
            .cloned()
            .unwrap_or_else(|| Identity::anonymous(How::Nobody)))
    }
}

/// What logins share: the services, the failed-login counts and the proxy header's pattern.
pub struct Auth {
    pub services: Services,
    pub limiter: limiter::Limiter,
    remote_user: remote_user::Pattern,
}

impl Auth {
    pub fn new(services: Services) -> Arc<Auth> {
        Arc::new(Auth {
            services,
            limiter: limiter::Limiter::default(),
            remote_user: remote_user::Pattern::default(),
        })
    }

    /// The path the site lives under, where its cookies apply.
    pub fn root(&self) -> String {
        crate::pages::root_of(&self.services.read.config().buildbot_url)
    }

    /// Whether the site is served over HTTPS, so that cookies are only sent back so.
    pub fn secure(&self) -> bool {
        self.services
            .read
            .config()
            .buildbot_url
            .starts_with("https:")
    }

    /// How long a session lasts, in seconds.
    pub fn session_lifetime(&self) -> i64 {
        self.services.read.config().www.session_lifetime
    }
}

/// The peer's address, as the server recorded it.
pub fn peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
}

/// The address a request came from, for handlers.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Peer, Infallible> {
        Ok(Peer(peer(&parts.extensions)))
    }
}

/// Decides who the request comes from and records it for the handlers. A token that is not
/// good is refused at once with 401: a script that sends one expects to act as its user, and
/// must not be treated as anonymous instead.
pub async fn identify(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let identity = if let Some(token) = bearer(headers) {
        match tokens::user(&auth.services, &token).await {
            Ok(user) => Identity {
                actor: Actor::User(user),
                how: How::Token,
            },
            Err(message) => {
                tracing::warn!(peer = ?peer(request.extensions()), %message, "an API token was refused");
                return refused_token(&message);
            }
        }
    } else if let Some(value) =
        crate::pages::csrf::cookie_value(headers, session::COOKIE_NAME).filter(|v| !v.is_empty())
    {
        let key = auth.services.read.session_key();
        match session::verify(key, &value, auth.services.read.now()) {
            Ok(user) => Identity {
                actor: Actor::User(user),
                how: How::Session,
            },
            Err(why) => {
                // Logged once: the answer clears the cookie.
                let peer = peer(request.extensions());
                match why {
                    session::Invalid::Forged => {
                        tracing::warn!(
                            ?peer,
                            "a session cookie this master did not sign was ignored"
                        )
                    }
                    session::Invalid::Expired => tracing::info!(?peer, "a session ended"),
                }
                Identity::anonymous(How::BadSession)
            }
        }
    } else if let Some(user) =
        auth.remote_user
            .user(&auth.services, headers, peer(request.extensions()))
    {
        Identity {
            actor: Actor::User(user),
            how: How::Proxy,
        }
    } else {
        Identity::anonymous(How::Nobody)
    };
    let stale = identity.how == How::BadSession;
    request.extensions_mut().insert(identity);
    let mut response = next.run(request).await;
    if stale
        && let Ok(v) = HeaderValue::from_str(&session::clear_cookie(&auth.root(), auth.secure()))
    {
        // The browser forgets a cookie that names nobody, so the pages stop offering a logout.
        response.headers_mut().append(SET_COOKIE, v);
    }
    response
}

/// The token of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn refused_token(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, "Bearer realm=\"kiln\"")],
        axum::Json(serde_json::json!({"error": message})),
    )
        .into_response()
}
