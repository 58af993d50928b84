//! The schedulers: each with its kind, its builders and whether it is enabled, with a control to
//! enable or disable it.

use axum::extract::State;
use axum::response::Response;
use kiln_db::listing::Page;
use minijinja::context;
use serde_json::json;

use super::{Site, Visit, json};

pub async fn list(State(site): State<Site>, visit: Visit) -> Response {
    let result = async {
        let config = site.services.read.config();
        let rows = site
            .services
            .read
            .db()
            .list_schedulers(&Page::default())
            .await?
            .0;
        let schedulers: Vec<serde_json::Value> = config
            .schedulers
            .iter()
            .filter_map(|s| {
                let row = rows.iter().find(|r| r.name == s.name())?;
                Some(json!({
                    "schedulerid": row.id.0,
                    "name": s.name(),
                    "kind": kind(s),
                    "builders": s.builder_names(),
                    "enabled": row.enabled,
                }))
            })
            .collect();
        site.render(
            &visit,
            "schedulers.html",
            context! { schedulers => json(&schedulers) },
        )
    }
    .await;
    site.answer(&visit, result)
}

/// The scheduler's class, as the configuration names it.
fn kind(s: &kiln_config::SchedulerConfig) -> &'static str {
    use kiln_config::SchedulerConfig::*;
    match s {
        Force(_) => "ForceScheduler",
        Basic(_) => "SingleBranchScheduler or AnyBranchScheduler",
        Timed(_) => "Nightly or Periodic",
        Triggerable(_) => "Triggerable",
        Dependent(_) => "Dependent",
        Try(_) => "Try_Userpass",
    }
}
