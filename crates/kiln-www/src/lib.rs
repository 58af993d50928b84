//! The HTTP side of the master: the REST API under `/api/v2`, the change hooks under
//! `/change_hook`, and a small front page.

pub mod api;
mod basic_auth;
mod error;
mod hooks;
mod tryjobs;

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

use kiln_api::Services;

/// The largest request body accepted anywhere on the web port.
pub const MAX_BODY_BYTES: usize = 10 << 20;

pub fn router(services: Services) -> Router {
    Router::new()
        .route("/", get(index))
        .nest("/api/v2", api::router())
        .merge(hooks::router())
        .merge(tryjobs::router())
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(services)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A plain overview: the builders and their latest builds.
async fn index(State(services): State<Services>) -> Html<String> {
    let config = services.read.config();
    let mut body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1>",
        t = escape(&config.title)
    );
    body.push_str("<p>REST API: <a href=\"api/v2/builders\">/api/v2</a></p><table border=\"1\"><tr><th>builder</th><th>last builds</th></tr>");
    let ids = services.read.builder_ids();
    for b in &config.builders {
        let mut cells = String::new();
        if let Some(id) = ids.get(&b.name) {
            let page = kiln_db::listing::Page {
                filters: vec![kiln_db::listing::Filter {
                    column: "builderid",
                    op: kiln_db::listing::FilterOp::Eq,
                    values: vec![kiln_db::listing::SqlValue::Int(id.0)],
                }],
                order: vec![("id", true)],
                limit: Some(10),
                offset: None,
            };
            if let Ok((builds, _)) = services.read.db().list_builds(&page).await {
                for build in builds {
                    let result = build
                        .results
                        .and_then(kiln_core::Results::from_code)
                        .map_or("running", |r| r.name());
                    cells.push_str(&format!(
                        " <a href=\"api/v2/builds/{}\">#{} {}</a>",
                        build.id,
                        build.number,
                        escape(result)
                    ));
                }
            }
        }
        body.push_str(&format!(
            "<tr><td>{}</td><td>{cells}</td></tr>",
            escape(&b.name)
        ));
    }
    body.push_str("</table></body></html>");
    Html(body)
}
