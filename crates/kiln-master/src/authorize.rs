//! The one place a command of the control handle is authorized: the configuration's
//! `c['www']['authz']` applied to the actor and to what the command concerns.
//!
//! The master itself may do anything. Without an `authz`, everyone may do everything, as in
//! Buildbot. The change hooks and `/try` are let through here: they check their own credentials
//! (`change_hook_auth`, the try scheduler's users) before they reach the control handle.

use kiln_api::authz::{self, Request, Verb};
use kiln_api::{Actor, ApiError};
use kiln_config::Data;
use kiln_core::{BuildId, BuildRequestId};

use crate::master::Master;

/// Whether `actor` may make `request`; a refusal is a 403 that says what is missing, and is
/// logged.
pub(crate) fn allow(master: &Master, actor: &Actor, request: &Request) -> Result<(), ApiError> {
    decide(master, actor, request).map_err(|denied| {
        tracing::info!(actor = ?actor.user().map(|u| &u.username), verb = ?request.verb, "refused: {}", denied.0);
        ApiError::Forbidden(denied.0)
    })
}

/// Whether `actor` may make `request`, without a word: the pages ask it for each control they
/// could show.
pub(crate) fn decide(
    master: &Master,
    actor: &Actor,
    request: &Request,
) -> Result<(), authz::Denied> {
    if *actor == Actor::Master {
        return Ok(());
    }
    let config = master.config();
    let Some(rules) = config.www.authz.as_ref() else {
        return Ok(());
    };
    let call = |f, user: Option<&str>| {
        let user = user.map_or(Data::None, |u| Data::Str(u.to_string()));
        match config.functions.call(f, &[user], &[])? {
            Data::Bool(b) => Ok(b),
            other => Err(format!("it answered {other:?}, not True or False")),
        }
    };
    authz::check(rules, actor.user(), request, &call)
}

/// What a build is, as the rules see it: its builder's name and its owner.
pub(crate) struct Concerned {
    pub builder: String,
    pub owner: Option<String>,
}

impl Concerned {
    /// A request about it, for `verb`.
    pub fn request<'a>(&'a self, verb: Verb, builders: &'a [&'a str]) -> Request<'a> {
        Request {
            verb,
            builders,
            branch: None,
            project: None,
            owner: self.owner.as_deref(),
        }
    }
}

/// The builder and owner of a build, for the rules; `None` if there is no such build.
pub(crate) async fn build(master: &Master, id: BuildId) -> Result<Option<Concerned>, ApiError> {
    let Some(row) = master.db.get_build(id).await? else {
        return Ok(None);
    };
    let owner = master
        .db
        .build_properties(id)
        .await?
        .into_iter()
        .find(|p| p.name == "owner")
        .and_then(|p| p.value.as_str().map(str::to_string));
    Ok(Some(Concerned {
        builder: builder_name(master, row.builderid.0),
        owner,
    }))
}

/// The builder of a build request, for the rules; `None` if there is no such request.
pub(crate) async fn buildrequest(
    master: &Master,
    id: BuildRequestId,
) -> Result<Option<Concerned>, ApiError> {
    let Some(row) = master.db.get_buildrequest(id).await? else {
        return Ok(None);
    };
    let owner = master
        .db
        .buildset_properties(row.buildsetid)
        .await?
        .get("owner")
        .and_then(|v| match v {
            kiln_core::PropertyValue::Str(s) => Some(s.clone()),
            _ => None,
        });
    Ok(Some(Concerned {
        builder: builder_name(master, row.builderid),
        owner,
    }))
}

/// The builders a force would build on, as its form chose them (`builderNames` or `builderid`),
/// or all of its scheduler's.
pub(crate) fn forced_builders(
    master: &Master,
    scheduler_builders: &[String],
    params: &serde_json::Map<String, serde_json::Value>,
) -> Vec<String> {
    if let Some(names) = params.get("builderNames").and_then(|v| v.as_array()) {
        return names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
    }
    match params.get("builderid").and_then(serde_json::Value::as_i64) {
        Some(id) => vec![builder_name(master, id)],
        None => scheduler_builders.to_vec(),
    }
}

fn builder_name(master: &Master, id: i64) -> String {
    master
        .builder_ids()
        .iter()
        .find(|(_, b)| b.0 == id)
        .map(|(name, _)| name.clone())
        .unwrap_or_default()
}
