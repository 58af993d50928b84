//! The about page: the versions of kiln and of what it runs on, and the master's configuration
//! at a glance.

use axum::extract::State;
use axum::response::Response;
use minijinja::context;

use super::{Site, Visit};

pub async fn page(State(site): State<Site>, visit: Visit) -> Response {
    let config = site.services.read.config();
    let backend = match config.db_url.split(':').next() {
        Some("postgresql" | "postgres") => "PostgreSQL",
        Some("sqlite") => "SQLite",
        Some(other) => other,
        None => "",
    }
    .to_string();
    let data = context! {
        database => backend,
        builders => config.builders.len(),
        workers => config.workers.len(),
        schedulers => config.schedulers.len(),
        buildbot_url => config.buildbot_url,
    };
    let result = site.render(&visit, "about.html", data);
    site.answer(&visit, result)
}
