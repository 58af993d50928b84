//! The reporters: each with its kind, its generators and how its deliveries stand (pending, sent,
//! failed, the last success and the last error), and its newest reports.

use axum::extract::State;
use axum::response::Response;
use minijinja::context;
use serde_json::json;

use super::{Site, Visit, json};

/// How many of each reporter's newest reports the page lists.
const NEWEST: i64 = 20;

pub async fn list(State(site): State<Site>, visit: Visit) -> Response {
    let result = async {
        let config = site.services.read.config();
        let db = site.services.read.db();
        let statuses = db.reporter_statuses().await?;
        let mut reporters = Vec::new();
        for r in &config.reporters {
            let status = statuses.iter().find(|s| s.reporter == r.name);
            let mut shape = kiln_api::shapes::reporter(r, status);
            let reports: Vec<serde_json::Value> = db
                .reports(&r.name, NEWEST)
                .await?
                .iter()
                .map(|row| {
                    json!({
                        "id": row.id,
                        "summary": row.summary,
                        "state": row.state.name(),
                        "attempts": row.attempts,
                        "created_at": row.created_at,
                        "done_at": row.done_at,
                        "next_attempt_at": row.next_attempt_at,
                        "last_error": row.last_error,
                    })
                })
                .collect();
            shape["reports"] = json!(reports);
            reporters.push(shape);
        }
        site.render(
            &visit,
            "reporters.html",
            context! { reporters => json(&reporters) },
        )
    }
    .await;
    site.answer(&visit, result)
}
