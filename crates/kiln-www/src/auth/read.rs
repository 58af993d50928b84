//! Who may read: when the configuration keeps reading from some users (an
//! `AnyEndpointMatcher`, or a `ViewBuildsEndpointMatcher` without a builder, branch or project,
//! that denies them), every page, the REST API, the live streams, the feeds and the badges
//! refuse them. What a visitor needs to log in stays open: the login form and Buildbot's
//! `auth/` routes, the style sheet and script, and Buildbot's front-end's own files and `config`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kiln_api::authz::{Request as Concerns, Verb};

use super::{Auth, Identity};
use crate::buildbot_www::MOUNT;

/// Whether `path` is open to everyone, so that a visitor can log in.
fn open(path: &str) -> bool {
    const OPEN: [&str; 6] = [
        "/login",
        "/logout",
        "/robots.txt",
        "/icon.png",
        "/icon.svg",
        "/avatar",
    ];
    if OPEN.contains(&path) || path.starts_with("/static/") || path.starts_with("/auth/") {
        return true;
    }
    match path.strip_prefix(MOUNT) {
        // The front-end's files and configuration; its API and streams are data.
        Some(rest) => !(rest.starts_with("/api/") || rest == "/ws" || rest.starts_with("/sse")),
        None => false,
    }
}

/// Refuses reading to those the configuration keeps it from.
pub async fn gate(State(auth): State<Arc<Auth>>, request: Request, next: Next) -> Response {
    let reading = matches!(*request.method(), Method::GET | Method::HEAD);
    if !reading || open(request.uri().path()) {
        return next.run(request).await;
    }
    let actor = request
        .extensions()
        .get::<Identity>()
        .map(|i| i.actor.clone())
        .unwrap_or(kiln_api::Actor::Anonymous);
    if auth
        .services
        .read
        .allowed(&actor, &Concerns::plain(Verb::Read))
    {
        return next.run(request).await;
    }
    let path = request.uri().path();
    let data = path.starts_with("/api/")
        || path.starts_with(&format!("{MOUNT}/"))
        || path == "/ws"
        || path.starts_with("/sse");
    let config = auth.services.read.config();
    let login = match &config.www.auth {
        kiln_config::WebAuth::UserPassword(_) | kiln_config::WebAuth::HtPasswd(_) => {
            Some("login?then=")
        }
        kiln_config::WebAuth::OAuth2(_) => Some("auth/login?redirect="),
        kiln_config::WebAuth::None | kiln_config::WebAuth::RemoteUser { .. } => None,
    };
    if let Some(login) = login.filter(|_| !data && actor.user().is_none()) {
        // A person at a page is taken to log in, and back once logged in.
        let then = request.uri().path_and_query().map_or(path, |p| p.as_str());
        let to = format!("{}{login}{}", auth.root(), form_urlencoded(then));
        let mut response = StatusCode::SEE_OTHER.into_response();
        if let Ok(v) = HeaderValue::from_str(&to) {
            response.headers_mut().insert(LOCATION, v);
        }
        return response;
    }
    let message = if actor.user().is_some() {
        "you may not read this master's builds"
    } else {
        "log in to read this master's builds"
    };
    if data {
        let body = axum::Json(serde_json::json!({"error": message}));
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    (StatusCode::FORBIDDEN, format!("{message}\n")).into_response()
}

fn form_urlencoded(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

/// Whether the configuration hides some builders' builds from some users.
pub fn hides_builds(config: &kiln_config::MasterConfig) -> bool {
    config.www.authz.as_ref().is_some_and(|authz| {
        authz.allow_rules.iter().any(|r| {
            matches!(
                &r.endpoint,
                kiln_config::Endpoint::ViewBuilds {
                    builder: Some(_),
                    ..
                }
            )
        })
    })
}

/// Which builders' builds a visitor may see, when `ViewBuildsEndpointMatcher(builder=…)` rules
/// keep some from them: their builds, steps, logs and requests are left out of every listing
/// and are not found when asked for.
#[derive(Debug, Clone, Default)]
pub struct Visibility {
    hidden: std::collections::HashSet<i64>,
}

impl Visibility {
    /// What `actor` may see.
    pub fn of(services: &kiln_api::Services, actor: &kiln_api::Actor) -> Visibility {
        // Only a rule about reading some builders' builds can hide them.
        if !hides_builds(&services.read.config()) {
            return Visibility::default();
        }
        let hidden = services
            .read
            .builder_ids()
            .iter()
            .filter(|(name, _)| {
                let builders = [name.as_str()];
                let request = Concerns {
                    builders: &builders,
                    ..Concerns::plain(Verb::Read)
                };
                !services.read.allowed(actor, &request)
            })
            .map(|(_, id)| id.0)
            .collect();
        Visibility { hidden }
    }

    /// Whether every build may be seen.
    pub fn everything(&self) -> bool {
        self.hidden.is_empty()
    }

    /// Whether the builds of builder `id` may be seen.
    pub fn builder(&self, id: i64) -> bool {
        !self.hidden.contains(&id)
    }

    /// The builders whose builds may not be seen, for a `NOT IN` filter.
    pub fn hidden(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.hidden.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Whether build `id` may be seen (a build that does not exist may: it is not found).
    pub async fn build(
        &self,
        db: &kiln_db::Db,
        id: kiln_core::BuildId,
    ) -> Result<bool, kiln_db::DbError> {
        if self.everything() {
            return Ok(true);
        }
        Ok(db
            .get_build(id)
            .await?
            .is_none_or(|b| self.builder(b.builderid.0)))
    }
}
