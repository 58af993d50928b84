//! The `poller` dialect: `POST /change_hook/poller?poller=NAME` (repeatable) polls those change
//! sources at once; without a name it polls every allowed one. The `allowed` option limits which
//! pollers the hook may poke. kiln answers when the polls are done, with the ids of the changes
//! they stored.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_core::PropertyValue;
use serde_json::json;

use kiln_api::{Actor, Services};

pub(crate) async fn handle(
    services: &Services,
    options: &BTreeMap<String, PropertyValue>,
    query: Option<&str>,
) -> Response {
    let asked: Vec<String> =
        serde_urlencoded::from_str::<Vec<(String, String)>>(query.unwrap_or(""))
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| k == "poller")
            .map(|(_, v)| v)
            .collect();
    let allowed: Option<Vec<String>> = match options.get("allowed") {
        Some(PropertyValue::List(items)) => Some(items.iter().map(PropertyValue::render).collect()),
        _ => None,
    };
    let running = services.read.poller_names();
    let may = |name: &String| allowed.as_ref().is_none_or(|a| a.contains(name));
    let names: Vec<String> = if asked.is_empty() {
        running.iter().filter(|n| may(n)).cloned().collect()
    } else {
        let missing: Vec<&String> = asked
            .iter()
            .filter(|n| !running.contains(n) || !may(n))
            .collect();
        if !missing.is_empty() {
            let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return (
                StatusCode::BAD_REQUEST,
                format!("Could not find pollers: {}\n", list.join(",")),
            )
                .into_response();
        }
        asked
    };
    let mut ids = Vec::new();
    let mut errors = serde_json::Map::new();
    let polled = services
        .control
        .poke_pollers(&Actor::Anonymous, &names)
        .await;
    for (name, outcome) in polled {
        match outcome {
            Ok(found) => ids.extend(found.into_iter().map(|c| c.0)),
            Err(e) => {
                errors.insert(name, json!(e));
            }
        }
    }
    let mut body = json!({"changeids": ids});
    if !errors.is_empty() {
        body["errors"] = serde_json::Value::Object(errors);
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}
