//! Buildbot's own front-end on a kiln master. A site that installed `buildbot-www` and its view
//! plugins from PyPI names where (`c['www']['buildbot_www']`, the directory that holds the
//! `buildbot_www` package) and which plugins to load (`c['www']['plugins']`), and the front-end
//! is served at `/buildbot/`, with what it asks of a server: its configuration (in the page and at
//! `config`), its static files and plugins, the REST API, `/ws`, the login and logout links and
//! avatars. kiln ships none of its files.

use std::path::{Component, Path as FsPath, PathBuf};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kiln_api::Services;
use kiln_db::property_to_json;
use serde_json::{Value, json};

use crate::live::Hub;

/// Where the front-end is served.
pub const MOUNT: &str = "/buildbot";
/// The largest static file served.
const MAX_FILE_BYTES: u64 = 32 << 20;

pub fn router<S: Clone + Send + Sync + 'static>(
    services: Services,
    hub: Hub,
    limits: crate::api::Limits,
) -> Router<S> {
    let own = Router::new()
        .route(&format!("{MOUNT}/"), get(index))
        .route(&format!("{MOUNT}/config"), get(config))
        .route(&format!("{MOUNT}/avatar"), get(avatar))
        .route(
            &format!("{MOUNT}/plugins/{{name}}/{{*file}}"),
            get(plugin_file),
        )
        .route(&format!("{MOUNT}/{{*file}}"), get(static_file))
        // The same at the root, for a front-end served there by a reverse proxy.
        .route("/config", get(config))
        .route("/avatar", get(avatar))
        // The front-end fetches its icons from the master's root to colour them by result.
        .route("/icon.png", get(root_icon))
        .route("/icon.svg", get(root_icon))
        .route(MOUNT, get(|| async { redirect(&format!("{MOUNT}/")) }))
        .nest(&format!("{MOUNT}/api/v2"), crate::api::router(limits));
    Router::new()
        .merge(own.with_state(services))
        .nest(MOUNT, crate::live::router(hub))
}

/// The installed `buildbot_www` package's directory, when one is configured.
fn www_dir(services: &Services) -> Option<PathBuf> {
    let config = services.read.config();
    let dir = config.www.buildbot_www.as_ref()?;
    Some(services.read.basedir().join(dir))
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{what}\n"),
    )
        .into_response()
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(LOCATION, to.to_string())]).into_response()
}

/// The front-end's configuration, as Buildbot's `buildbotFrontendConfig`, for `actor`.
fn frontend_config(services: &Services, actor: &kiln_api::Actor) -> Value {
    let config = services.read.config();
    let base = format!("{}/", config.buildbot_url.trim_end_matches('/'));
    let plugins: serde_json::Map<String, Value> = config
        .www
        .plugins
        .iter()
        .map(|(k, v)| (k.clone(), property_to_json(v)))
        .collect();
    let mut versions = vec![json!(["kiln", env!("CARGO_PKG_VERSION")])];
    versions.extend(config.www.versions.iter().map(|(n, v)| json!([n, v])));
    let ui: serde_json::Map<String, Value> = config
        .www
        .ui_default_config
        .iter()
        .map(|(k, v)| (k.clone(), property_to_json(v)))
        .collect();
    let mut out = json!({
        "plugins": plugins,
        // `NoAuth` hides the login menu; any other name shows it, linking to `auth/login`.
        "auth": auth_config(&config.www.auth),
        "authz": {},
        "avatar_methods": {"name": "kiln"},
        "versions": versions,
        "ui_default_config": ui,
        "buildbotURL": format!("{base}{}/", MOUNT.trim_start_matches('/')),
        // Links kiln's steps make point at the master's own URL.
        "buildbotURLs": [format!("{base}{}/", MOUNT.trim_start_matches('/')), base],
        "title": config.title,
        "titleURL": config.title_url,
        "multiMaster": config.multi_master,
        "user": user_info(actor),
        "theme": config.www.theme,
    });
    // What Buildbot hands its front-end as written: `default_page`, `debug`, `jsonp`,
    // `project_widgets`.
    if let Some(map) = out.as_object_mut() {
        for (k, v) in &config.www.frontend {
            map.insert(k.clone(), property_to_json(v));
        }
        if config.www.ws_ping_interval > 0 {
            map.insert(
                "ws_ping_interval".into(),
                json!(config.www.ws_ping_interval),
            );
        }
    }
    out
}

/// The front-end's page, with the colours of `c['www']['theme']` after its own: the values were
/// checked to be plain CSS values when the configuration was read.
fn themed(page: String, theme: &std::collections::BTreeMap<String, String>) -> String {
    const END: &str = "<!-- BUILDBOT_THEME_CSS_PLACEHOLDER_END -->";
    if theme.is_empty() {
        return page;
    }
    let rules: String = theme.iter().map(|(k, v)| format!("--{k}: {v}; ")).collect();
    let style = format!("{END}\n    <style id=\"kiln-theme\">:root {{ {rules}}}</style>");
    match page.find(END) {
        Some(_) => page.replacen(END, &style, 1),
        None => page,
    }
}

/// How users log in, as the front-end reads it: Buildbot's class name, and for an OAuth2
/// provider its name and icon for the "Login with …" item.
fn auth_config(auth: &kiln_config::WebAuth) -> Value {
    match auth {
        kiln_config::WebAuth::None => json!({"name": "NoAuth"}),
        kiln_config::WebAuth::UserPassword(_) => json!({"name": "UserPasswordAuth"}),
        kiln_config::WebAuth::HtPasswd(_) => json!({"name": "HTPasswdAuth"}),
        kiln_config::WebAuth::RemoteUser { .. } => json!({"name": "RemoteUserAuth"}),
        kiln_config::WebAuth::OAuth2(o) => json!({
            "name": crate::auth::oauth2::label(o),
            "oauth2": true,
            "fa_icon": crate::auth::oauth2::icon(o),
            "autologin": false,
        }),
    }
}

/// Who the front-end shows as logged in.
fn user_info(actor: &kiln_api::Actor) -> Value {
    let Some(u) = actor.user() else {
        return json!({"anonymous": true});
    };
    let mut info = serde_json::Map::new();
    info.insert("username".into(), json!(u.username));
    if let Some(e) = &u.email {
        info.insert("email".into(), json!(e));
    }
    if let Some(n) = &u.full_name {
        info.insert("full_name".into(), json!(n));
    }
    if !u.groups.is_empty() {
        info.insert("groups".into(), json!(u.groups));
    }
    Value::Object(info)
}

async fn config(State(services): State<Services>, identity: crate::auth::Identity) -> Response {
    // The answer names the user, so no shared cache may keep it.
    (
        [(CACHE_CONTROL, "private,no-cache")],
        axum::Json(frontend_config(&services, &identity.actor)),
    )
        .into_response()
}

/// The front-end's page. Its configuration is not written into it, as Buildbot does, but fetched
/// by the page from `config`: the front-end then takes its own address, not `buildbotURL`, as the
/// master's, which is right behind a reverse proxy and under `/buildbot/`.
async fn index(State(services): State<Services>) -> Response {
    let Some(dir) = www_dir(&services) else {
        return not_found("Buildbot's front-end is not configured: set c['www']['buildbot_www']");
    };
    let path = dir.join("buildbot_www/static/index.html");
    let Ok(page) = tokio::fs::read_to_string(&path).await else {
        return not_found(&format!("{} cannot be read", path.display()));
    };
    let page = themed(page, &services.read.config().www.theme);
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "public,max-age=0"),
        ],
        page,
    )
        .into_response()
}

/// The front-end's icon at the root, where it looks for it; kiln's own when Buildbot's is not
/// installed.
async fn root_icon(State(services): State<Services>, uri: axum::http::Uri) -> Response {
    let file = uri.path().trim_start_matches('/');
    match www_dir(&services) {
        Some(dir) => serve(&dir.join("buildbot_www/static"), file).await,
        None => not_found("no such file"),
    }
}

async fn static_file(State(services): State<Services>, Path(file): Path<String>) -> Response {
    let Some(dir) = www_dir(&services) else {
        return not_found("Buildbot's front-end is not configured");
    };
    // The front-end fetches `buildbotURL + "/icon.svg"`, with two slashes.
    serve(
        &dir.join("buildbot_www/static"),
        file.trim_start_matches('/'),
    )
    .await
}

/// A plugin's file, from the `buildbot_<name>` package beside `buildbot_www`; only the plugins the
/// configuration names are served.
async fn plugin_file(
    State(services): State<Services>,
    Path((name, file)): Path<(String, String)>,
) -> Response {
    let Some(dir) = www_dir(&services) else {
        return not_found("Buildbot's front-end is not configured");
    };
    if !services.read.config().www.plugins.contains_key(&name) || !plain_name(&name) {
        return not_found(&format!("no plugin {name}"));
    }
    let response = serve(&dir.join(format!("buildbot_{name}/static")), &file).await;
    // The front-end asks every plugin for both files, and some plugins ship only one: an empty
    // file spares the browser a failed request.
    if response.status() == StatusCode::NOT_FOUND && (file == "scripts.js" || file == "styles.css")
    {
        return ([(CONTENT_TYPE, content_type(&file))], "").into_response();
    }
    response
}

fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A file below `root`, refusing any path that leaves it.
async fn serve(root: &FsPath, file: &str) -> Response {
    let inside = FsPath::new(file)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if !inside || file.is_empty() {
        return not_found("no such file");
    }
    let path = root.join(file);
    let fits = tokio::fs::metadata(&path)
        .await
        .is_ok_and(|m| m.is_file() && m.len() <= MAX_FILE_BYTES);
    if !fits {
        return not_found("no such file");
    }
    match tokio::fs::read(&path).await {
        Ok(body) => ([(CONTENT_TYPE, content_type(file))], body).into_response(),
        Err(_) => not_found("no such file"),
    }
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next().unwrap_or_default() {
        "js" => "text/javascript",
        "css" => "text/css",
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        _ => "application/octet-stream",
    }
}

#[derive(serde::Deserialize)]
struct AvatarQuery {
    email: Option<String>,
    username: Option<String>,
}

/// An avatar drawn here, the first letter of the name on a colour of its own: no image is
/// fetched from elsewhere, so no third party learns who looks at the page.
async fn avatar(Query(q): Query<AvatarQuery>) -> Response {
    let who = q.username.or(q.email).unwrap_or_default();
    let letter: String = who
        .chars()
        .find(|c| c.is_alphanumeric())
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_else(|| "?".into());
    let hue = who
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 360;
    let letter = letter
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"32\" height=\"32\" viewBox=\"0 0 32 32\">\
         <rect width=\"32\" height=\"32\" rx=\"4\" fill=\"hsl({hue},45%,45%)\"/>\
         <text x=\"16\" y=\"22\" font-family=\"sans-serif\" font-size=\"16\" fill=\"#fff\" text-anchor=\"middle\">{letter}</text></svg>"
    );
    (
        [
            (CONTENT_TYPE, "image/svg+xml"),
            (CACHE_CONTROL, "public,max-age=3600"),
        ],
        svg,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::themed;

    #[test]
    fn the_theme_follows_the_front_ends_own_colours() {
        let page = "<head><!-- BUILDBOT_THEME_CSS_PLACEHOLDER_BEGIN --><style>:root { --bb-text-color: #333; }</style>\
                    <!-- BUILDBOT_THEME_CSS_PLACEHOLDER_END --></head>"
            .to_string();
        let theme = [("bb-text-color".to_string(), "#123".to_string())].into();
        let out = themed(page.clone(), &theme);
        let own = out.find("--bb-text-color: #333").unwrap();
        let configured = out.find("--bb-text-color: #123").unwrap();
        assert!(own < configured, "{out}");
        assert_eq!(themed(page.clone(), &Default::default()), page);
    }
}
