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
    view_rules(config).any(|(builder, _)| builder)
}

/// Whether the configuration hides the builds of some branches or projects from some users.
pub fn hides_origins(config: &kiln_config::MasterConfig) -> bool {
    view_rules(config).any(|(_, origin)| origin)
}

/// For each `ViewBuildsEndpointMatcher`, whether it names builders, and whether it names a
/// branch or a project.
fn view_rules(config: &kiln_config::MasterConfig) -> impl Iterator<Item = (bool, bool)> + '_ {
    config
        .www
        .authz
        .iter()
        .flat_map(|authz| authz.allow_rules.iter())
        .filter_map(|r| match &r.endpoint {
            kiln_config::Endpoint::ViewBuilds {
                builder,
                branch,
                project,
            } => Some((builder.is_some(), branch.is_some() || project.is_some())),
            _ => None,
        })
}

/// What an event concerns, for deciding who may see it: the builder, and the branch and project
/// of each source stamp of its build when some branches' or projects' builds are hidden.
#[derive(Debug, Clone)]
pub struct Concerned {
    pub builder: i64,
    pub origins: Vec<(Option<String>, String)>,
}

/// Which builds a visitor may see, when `ViewBuildsEndpointMatcher` rules with a builder, a
/// branch or a project keep some from them: such builds, their steps, logs and requests are left
/// out of every listing and are not found when asked for.
#[derive(Clone, Default)]
pub struct Visibility {
    hidden: std::collections::HashSet<i64>,
    /// Who asks, when some branches' or projects' builds are hidden: each build is asked about.
    by_origin: Option<(kiln_api::Services, kiln_api::Actor)>,
}

impl Visibility {
    /// What `actor` may see.
    pub fn of(services: &kiln_api::Services, actor: &kiln_api::Actor) -> Visibility {
        let config = services.read.config();
        let by_origin = hides_origins(&config).then(|| (services.clone(), actor.clone()));
        // Only a rule about reading some builders' builds can hide a builder's.
        if !hides_builds(&config) {
            return Visibility {
                hidden: Default::default(),
                by_origin,
            };
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
        Visibility { hidden, by_origin }
    }

    /// Whether every build may be seen.
    pub fn everything(&self) -> bool {
        self.hidden.is_empty() && self.by_origin.is_none()
    }

    /// Whether what may be seen depends on each build's branch and project.
    pub fn by_origin(&self) -> bool {
        self.by_origin.is_some()
    }

    /// Whether builder `id`'s builds may be seen (some of them, when branches or projects are
    /// hidden too).
    pub fn builder(&self, id: i64) -> bool {
        !self.hidden.contains(&id)
    }

    /// The builders whose builds may not be seen, for a `NOT IN` filter.
    pub fn hidden(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.hidden.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Of `builds` (each with its builder), those that may be seen.
    pub async fn seen(
        &self,
        db: &kiln_db::Db,
        builds: &[(kiln_core::BuildId, i64)],
    ) -> Result<std::collections::HashSet<kiln_core::BuildId>, kiln_db::DbError> {
        let mut seen: std::collections::HashSet<kiln_core::BuildId> = builds
            .iter()
            .filter(|(_, builder)| self.builder(*builder))
            .map(|(b, _)| *b)
            .collect();
        let Some((services, actor)) = &self.by_origin else {
            return Ok(seen);
        };
        let ids: Vec<kiln_core::BuildId> = seen.iter().copied().collect();
        let names: std::collections::HashMap<i64, String> = services
            .read
            .builder_ids()
            .iter()
            .map(|(name, id)| (id.0, name.clone()))
            .collect();
        let builder_of: std::collections::HashMap<kiln_core::BuildId, i64> =
            builds.iter().copied().collect();
        for (build, branch, project) in db.build_origins(&ids).await? {
            let name = builder_of
                .get(&build)
                .and_then(|b| names.get(b))
                .map_or("", String::as_str);
            let builders = [name];
            let request = Concerns {
                builders: &builders,
                branch: branch.as_deref(),
                project: Some(project.as_str()),
                ..Concerns::plain(Verb::Read)
            };
            if !services.read.allowed(actor, &request) {
                seen.remove(&build);
            }
        }
        Ok(seen)
    }

    /// Whether an event about `c` may be seen.
    pub fn concerned(&self, c: &Concerned) -> bool {
        if !self.builder(c.builder) {
            return false;
        }
        let Some((services, actor)) = &self.by_origin else {
            return true;
        };
        let ids = services.read.builder_ids();
        let name = ids
            .iter()
            .find(|(_, id)| id.0 == c.builder)
            .map_or("", |(n, _)| n.as_str());
        let builders = [name];
        c.origins.iter().all(|(branch, project)| {
            let request = Concerns {
                builders: &builders,
                branch: branch.as_deref(),
                project: Some(project.as_str()),
                ..Concerns::plain(Verb::Read)
            };
            services.read.allowed(actor, &request)
        })
    }

    /// Keeps the builds that may be seen.
    pub async fn retain(
        &self,
        db: &kiln_db::Db,
        rows: &mut Vec<kiln_db::BuildRow>,
    ) -> Result<(), kiln_db::DbError> {
        if self.everything() {
            return Ok(());
        }
        let pairs: Vec<(kiln_core::BuildId, i64)> =
            rows.iter().map(|b| (b.id, b.builderid.0)).collect();
        let seen = self.seen(db, &pairs).await?;
        rows.retain(|b| seen.contains(&b.id));
        Ok(())
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
        let Some(b) = db.get_build(id).await? else {
            return Ok(true);
        };
        Ok(self.seen(db, &[(id, b.builderid.0)]).await?.contains(&id))
    }
}
