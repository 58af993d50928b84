//! The HTTP side of the master: kiln's own pages, the REST API under `/api/v2`, the change
//! hooks under `/change_hook`, `/try`, and live updates on `/ws` and `/sse`.

pub mod access_log;
pub mod api;
pub mod auth;
mod basic_auth;
pub mod buildbot_www;
mod error;
#[cfg(fuzzing)]
pub mod fuzzing;
pub mod headers;
mod hooks;
mod host;
pub mod live;
pub mod pages;
mod tryjobs;

use axum::Router;

use kiln_api::Services;

/// The largest request body accepted anywhere on the web port.
pub const MAX_BODY_BYTES: usize = 10 << 20;

pub fn router(services: Services) -> Router {
    let hub = live::Hub::start(services.clone());
    let auth = auth::Auth::new(services.clone());
    // Both mounts of the API (its own and the front-end's) share one set of limits.
    let limits = api::Limits::new(services.read.config().www.api_large_queries);
    let app = Router::new()
        .nest("/api/v2", api::router(limits.clone()))
        // Nesting serves the root without its trailing slash only; scripts and Buildbot's spec
        // (whose root endpoint is the empty path) use both.
        .route("/api/v2/", axum::routing::get(api::root))
        .merge(hooks::router())
        .merge(tryjobs::router())
        .merge(live::router(hub.clone()))
        .merge(auth::login::router(auth.clone()))
        .merge(buildbot_www::router(services.clone(), hub, limits))
        .merge(pages::router(services.clone(), auth.clone()))
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            auth::read::gate,
        ))
        .layer(axum::middleware::from_fn_with_state(auth, auth::identify))
        .layer(axum::middleware::from_fn_with_state(
            services.clone(),
            host::check,
        ))
        .layer(axum::middleware::from_fn(headers::secure))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(services.clone());
    let config = services.read.config();
    let www = &config.www;
    if www.logfile_name.is_empty() {
        return app;
    }
    let path = services.read.basedir().join(&www.logfile_name);
    let log = access_log::AccessLog::start(
        services.clone(),
        path,
        www.log_rotate_length,
        www.max_rotated_files,
    );
    app.layer(axum::middleware::from_fn_with_state(log, access_log::log))
}
