//! kiln's own web pages: HTML rendered on the server from templates, on the read side of the
//! API boundary, with controls that go through the control handle and carry a CSRF token.
//!
//! Each page module reads what its page shows and hands the template plain values; the templates
//! (see [`templates`]) escape everything they interpolate.

mod about;
mod args;
mod badges;
mod builders;
mod builds;
mod changes;
mod chart;
mod console;
mod controls;
pub mod csrf;
mod feeds;
mod files;
mod grid;
mod home;
mod links;
mod login;
mod logs;
mod one_line;
mod reporters;
mod schedulers;
mod select;
pub mod templates;
mod users;
mod view;
mod waterfall;
mod workers;

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use kiln_api::{ApiError, Services};
use minijinja::{Value, context};

use templates::Templates;

/// What every page handler is given: the services, the templates and the logins.
#[derive(Clone)]
pub struct Site {
    pub services: Services,
    pub templates: Arc<Templates>,
    pub auth: Arc<crate::auth::Auth>,
}

/// A value for a template, made through JSON: with serde_json's `arbitrary_precision` (which a
/// dependency turns on), serializing its numbers straight into the template engine would make
/// them maps.
pub fn json<T: serde::Serialize>(value: T) -> Value {
    from_json(&serde_json::to_value(value).unwrap_or_default())
}

/// A JSON value for a template.
pub fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(f)) => Value::from(f),
            (None, None) => Value::from(n.to_string()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(from_json).collect::<Vec<_>>())
        }
        serde_json::Value::Object(map) => {
            Value::from_iter(map.iter().map(|(k, v)| (k.clone(), from_json(v))))
        }
    }
}

/// The cookie that carries a control's outcome to the page it redirects to.
const FLASH_COOKIE: &str = "kiln_flash";

pub fn router<S: Clone + Send + Sync + 'static>(
    services: Services,
    auth: Arc<crate::auth::Auth>,
) -> Router<S> {
    let config = services.read.config();
    let custom = config.www.custom_templates_dir.as_deref();
    let templates = Arc::new(Templates::load(services.read.basedir(), custom));
    let site = Site {
        services,
        templates,
        auth,
    };
    Router::new()
        .route("/", get(home::page))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/builders", get(builders::list))
        .route("/builders/{builder}", get(builders::page))
        .route(
            "/builders/{builder}/force/{scheduler}",
            post(controls::force),
        )
        .route("/builders/{builder}/builds/{number}", get(builds::page))
        .route(
            "/builders/{builder}/builds/{number}/steps/{step}/logs/{slug}",
            get(logs::page),
        )
        .route("/builds/{build}/stop", post(controls::stop))
        .route("/builds/{build}/rebuild", post(controls::rebuild))
        .route("/buildrequests/{request}/cancel", post(controls::cancel))
        .route(
            "/buildrequests/{request}/priority",
            post(controls::priority),
        )
        .route("/workers", get(workers::list))
        .route("/workers/{worker}", get(workers::page))
        .route("/workers/{worker}/{action}", post(controls::worker))
        .route("/changes", get(changes::list))
        .route("/changes/{change}", get(changes::page))
        .route("/waterfall", get(waterfall::page))
        .route("/grid", get(grid::grid))
        .route("/tgrid", get(grid::tgrid))
        .route("/console", get(console::page))
        .route("/one_line_per_build", get(one_line::page))
        .route("/rss", get(feeds::rss))
        .route("/atom", get(feeds::atom))
        .route("/badges/{file}", get(badges::badge))
        .route("/plugins/badges/{file}", get(badges::badge))
        .route("/users", get(users::list))
        .route("/users/{user}", get(users::page))
        .route("/robots.txt", get(files::robots))
        .route("/public_html/{*path}", get(files::public))
        .route("/reporters", get(reporters::list))
        .route("/schedulers", get(schedulers::list))
        .route("/schedulers/{scheduler}/enable", post(controls::scheduler))
        .route("/shutdown", post(controls::shutdown))
        .route("/stop_all_builds", post(controls::stop_all))
        .route("/changes/{change}/cancel", post(controls::cancel_change))
        .route("/about", get(about::page))
        .route("/static/{file}", get(static_file))
        .fallback(not_found)
        .with_state(site)
}

/// A page that could not be shown, with its status and a message for the person who asked.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn not_found(message: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> PageError {
        PageError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        if let ApiError::Internal(details) = &e {
            tracing::error!(error = %details, "internal error showing a page");
        }
        PageError {
            status: crate::error::status(&e),
            message: e.message(),
        }
    }
}

impl From<kiln_db::DbError> for PageError {
    fn from(e: kiln_db::DbError) -> PageError {
        PageError::from(ApiError::from(e))
    }
}

/// The result of a page handler.
pub type PageResult = Result<Response, PageError>;

/// One browser's request as the pages see it: its headers, who it comes from, its CSRF token,
/// the outcome of the control it was redirected from, if any, and the path it asked for.
pub struct Visit {
    pub headers: HeaderMap,
    pub identity: crate::auth::Identity,
    pub token: csrf::Token,
    pub flash: Option<String>,
    pub path: String,
}

impl Visit {
    /// Who asks, for the control handle.
    pub fn actor(&self) -> &kiln_api::Actor {
        &self.identity.actor
    }

    /// Whose builds the visitor may see.
    pub fn visibility(&self, site: &Site) -> crate::auth::read::Visibility {
        crate::auth::read::Visibility::of(&site.services, self.actor())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Visit {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Visit, Infallible> {
        Ok(Visit {
            identity: crate::auth::Identity::from_request_parts(parts, state).await?,
            token: csrf::token(&parts.headers),
            flash: csrf::cookie_value(&parts.headers, FLASH_COOKIE).filter(|f| !f.is_empty()),
            headers: parts.headers.clone(),
            path: parts
                .uri
                .path_and_query()
                .map_or_else(|| parts.uri.path().to_string(), |p| p.as_str().to_string()),
        })
    }
}

impl Site {
    /// The path the pages live under: that of `buildbotURL`, so that links work behind a
    /// reverse proxy that serves the master under a sub-path.
    pub fn root(&self) -> String {
        root_of(&self.services.read.config().buildbot_url)
    }

    /// Refuses a page to a visitor the configuration keeps from `verb` (the users page's
    /// `showUsersPage`, say), saying they may not `what`.
    pub fn may(
        &self,
        visit: &Visit,
        verb: kiln_api::authz::Verb,
        what: &str,
    ) -> Result<(), PageError> {
        let request = kiln_api::authz::Request::plain(verb);
        if self.services.read.allowed(visit.actor(), &request) {
            return Ok(());
        }
        Err(PageError {
            status: StatusCode::FORBIDDEN,
            message: format!("you may not {what}"),
        })
    }

    /// Refuses a page about the builds of builder `id` to a visitor who may not see them.
    pub fn may_see(&self, visit: &Visit, id: i64, name: &str) -> Result<(), PageError> {
        if visit.visibility(self).builder(id) {
            return Ok(());
        }
        Err(PageError {
            status: StatusCode::FORBIDDEN,
            message: format!("you may not see the builds of {name}"),
        })
    }

    /// Renders `template` with the page's own `data` and what every page shows.
    pub fn render(&self, visit: &Visit, template: &str, data: Value) -> PageResult {
        self.render_status(visit, StatusCode::OK, template, data)
    }

    pub(crate) fn render_status(
        &self,
        visit: &Visit,
        status: StatusCode,
        template: &str,
        data: Value,
    ) -> PageResult {
        let config = self.services.read.config();
        let root = self.root();
        let common = context! {
            root => root,
            title => config.title,
            title_url => config.title_url,
            csrf => visit.token.value,
            flash => visit.flash,
            version => env!("CARGO_PKG_VERSION"),
            now => self.services.read.now(),
            user => visit.actor().user().map(|u| context! {
                username => u.username,
                email => u.email,
                full_name => u.full_name,
            }),
            login => login::offered(&config.www),
            path => visit.path,
            may => controls::may(self.services.clone(), visit.actor().clone()),
        };
        let html = self
            .templates
            .render(template, context! { ..data, ..common })
            .map_err(|e| {
                tracing::error!(template, error = %format!("{e:#}"), "a page template failed");
                PageError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: format!("the template {template} failed: {e}"),
                }
            })?;
        let mut response = (status, Html(html)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            axum::http::header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(crate::headers::PAGE_POLICY),
        );
        if visit.token.new
            && let Ok(v) = HeaderValue::from_str(&csrf::set_cookie(&visit.token, &root))
        {
            headers.append(SET_COOKIE, v);
        }
        if visit.flash.is_some()
            && let Ok(v) = HeaderValue::from_str(&clear_flash(&root))
        {
            headers.append(SET_COOKIE, v);
        }
        Ok(response)
    }

    /// A page's answer: the page, or its error as a page of its own.
    pub fn answer(&self, visit: &Visit, result: PageResult) -> Response {
        match result {
            Ok(response) => response,
            Err(error) => {
                let data = context! { status => error.status.as_u16(), message => error.message };
                match self.render_status(visit, error.status, "error.html", data) {
                    Ok(page) => page,
                    // The error page itself failed: say so in plain text.
                    Err(e) => (e.status, e.message).into_response(),
                }
            }
        }
    }

    /// Redirects to `path` (under the root) after a control, showing `message` there once.
    pub fn redirect(&self, path: &str, message: &str) -> Response {
        let location = format!("{}{}", self.root(), path.trim_start_matches('/'));
        self.redirect_to(&location, message)
    }

    /// Redirects to `location`, a path of this site, showing `message` there once.
    pub fn redirect_to(&self, location: &str, message: &str) -> Response {
        let root = self.root();
        let flash = cookie::Cookie::build((FLASH_COOKIE, message.to_string()))
            .path(root)
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .build();
        let mut response = StatusCode::SEE_OTHER.into_response();
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(location) {
            headers.insert(LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&flash.encoded().to_string()) {
            headers.append(SET_COOKIE, v);
        }
        response
    }
}

fn clear_flash(root: &str) -> String {
    cookie::Cookie::build((FLASH_COOKIE, ""))
        .path(root.to_string())
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

/// The path of a URL, ending in `/`: `https://ci.example.org/kiln/` gives `/kiln/`.
pub fn root_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("/");
    if path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    }
}

async fn not_found(State(site): State<Site>, visit: Visit, uri: axum::http::Uri) -> Response {
    let error = PageError::not_found(format!("there is no page at {}", uri.path()));
    site.answer(&visit, Err(error))
}

/// The style sheet and the script of the pages, embedded in the binary.
async fn static_file(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "kiln.css" => (
            include_str!("../../static/kiln.css"),
            "text/css; charset=utf-8",
        ),
        "live.js" => (
            include_str!("../../static/live.js"),
            "text/javascript; charset=utf-8",
        ),
        "icon.svg" => (include_str!("../../static/icon.svg"), "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    };
    (
        [
            (CONTENT_TYPE, kind),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_path_of_the_buildbot_url() {
        assert_eq!(root_of("http://localhost:8010/"), "/");
        assert_eq!(root_of("http://localhost:8010"), "/");
        assert_eq!(root_of("https://ci.example.org/kiln"), "/kiln/");
        assert_eq!(root_of("https://ci.example.org/a/b/?x=1"), "/a/b/");
    }
}
