//! The HTTP side of the master: kiln's own pages, the REST API under `/api/v2`, the change
//! hooks under `/change_hook`, `/try`, and live updates on `/ws` and `/sse`.

pub mod api;
mod basic_auth;
mod error;
mod hooks;
pub mod live;
pub mod pages;
mod tryjobs;

use axum::Router;

use kiln_api::Services;

/// The largest request body accepted anywhere on the web port.
pub const MAX_BODY_BYTES: usize = 10 << 20;

pub fn router(services: Services) -> Router {
    Router::new()
        .nest("/api/v2", api::router())
        .merge(hooks::router())
        .merge(tryjobs::router())
        .merge(live::router(live::Hub::start(services.clone())))
        .merge(pages::router(services.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(services)
}
