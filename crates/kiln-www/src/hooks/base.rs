//! The `base` dialect: one change from Buildbot's form fields, sent as a form body or in the query
//! string (the client is `kiln sendchange`).

use kiln_api::ApiError;
use kiln_core::Properties;
use kiln_db::NewChange;

/// Parses one change. `author` (or the older `who`) is required; `files` and `properties` are JSON.
pub(crate) fn parse(
    query: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<Vec<NewChange>, ApiError> {
    let mut fields: Vec<(String, String)> = Vec::new();
    if let Some(q) = query {
        fields.extend(form(q.as_bytes())?);
    }
    fields.extend(form(body)?);
    let get = |name: &str| {
        fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let opt = |name: &str| get(name).filter(|v| !v.is_empty());
    let author = opt("author").or_else(|| opt("who")).ok_or_else(|| {
        ApiError::BadRequest("the change has no author (field 'author' or 'who')".into())
    })?;
    let when_timestamp = match opt("when_timestamp").or_else(|| opt("when")) {
        None => now,
        Some(w) => w
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite())
            .map(|t| t as i64)
            .ok_or_else(|| {
                ApiError::BadRequest(format!("when_timestamp {w:?} is not a number of seconds"))
            })?,
    };
    let files = match opt("files") {
        None => Vec::new(),
        Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Array(items)) => items
                .into_iter()
                .map(|i| match i {
                    serde_json::Value::String(s) => Ok(s),
                    other => Err(ApiError::BadRequest(format!(
                        "files must be a JSON list of strings; found {other}"
                    ))),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(ApiError::BadRequest(
                    "files must be a JSON list of strings".into(),
                ));
            }
        },
    };
    let mut properties = Properties::new();
    if let Some(text) = opt("properties") {
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(serde_json::Value::Object(map)) => {
                for (k, v) in map {
                    properties.set(k, kiln_db::json_to_property(&v), "Change");
                }
            }
            _ => {
                return Err(ApiError::BadRequest(
                    "properties must be a JSON object".into(),
                ));
            }
        }
    }
    Ok(vec![NewChange {
        vcs: opt("src").or_else(|| opt("vc")),
        author,
        committer: opt("committer"),
        comments: get("comments").unwrap_or_default(),
        branch: opt("branch"),
        revision: opt("revision"),
        revlink: opt("revlink"),
        when_timestamp,
        category: opt("category"),
        repository: get("repository").unwrap_or_default(),
        codebase: get("codebase").unwrap_or_default(),
        project: get("project").unwrap_or_default(),
        files,
        properties,
    }])
}

fn form(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a valid form: {e}")))
}
