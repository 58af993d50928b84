//! The users: a table of everyone kiln knows (from change authors and `kiln user`), and a
//! user's page with their identities and their changes. Passwords are never shown.

use axum::extract::{Path, State};
use axum::response::Response;
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};
use minijinja::context;
use serde_json::json;

use super::{PageError, PageResult, Site, Visit, json};

/// Changes a user's page lists.
const CHANGES: i64 = 50;

pub async fn list(State(site): State<Site>, visit: Visit) -> Response {
    let result = async {
        site.may(&visit, kiln_api::authz::Verb::ShowUsers, "see the users")?;
        let users = site.services.read.db().list_users(&Page::default()).await?;
        let users: Vec<serde_json::Value> = users
            .iter()
            .map(|u| json!({"uid": u.uid, "identifier": u.identifier, "bb_username": u.bb_username, "attributes": u.attributes}))
            .collect();
        site.render(&visit, "users.html", context! { users => json(&users) })
    }
    .await;
    site.answer(&visit, result)
}

pub async fn page(State(site): State<Site>, visit: Visit, Path(who): Path<String>) -> Response {
    let result = show(&site, &visit, &who).await;
    site.answer(&visit, result)
}

async fn show(site: &Site, visit: &Visit, who: &str) -> PageResult {
    site.may(visit, kiln_api::authz::Verb::ShowUsers, "see the users")?;
    let db = site.services.read.db();
    let user = db
        .find_user(who)
        .await?
        .ok_or_else(|| PageError::not_found(format!("there is no user '{who}'")))?;
    // Their changes: those whose author is one of their identities.
    let mut names: Vec<SqlValue> = vec![SqlValue::Text(user.identifier.clone())];
    names.extend(user.attributes.values().map(|v| SqlValue::Text(v.clone())));
    let page = Page {
        filters: vec![Filter {
            column: "author",
            op: FilterOp::In,
            values: names,
        }],
        order: vec![("changeid", true)],
        limit: Some(CHANGES),
        offset: None,
        count_total: false,
    };
    let config = site.services.read.config();
    let links = super::links::Links::new(&config);
    let changes: Vec<serde_json::Value> = db
        .list_changes(&page)
        .await?
        .0
        .iter()
        .map(|c| links.change(c))
        .collect();
    let data = context! {
        user => json(json!({"uid": user.uid, "identifier": user.identifier, "bb_username": user.bb_username, "attributes": user.attributes})),
        changes => json(&changes),
    };
    site.render(visit, "user.html", data)
}
