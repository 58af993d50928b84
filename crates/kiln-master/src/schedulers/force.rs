//! The force scheduler: builds on request, from the web form or the `force` JSON-RPC call, with
//! Buildbot's parameter validation.

use std::collections::BTreeMap;

use kiln_config::{ForceSchedulerConfig, ParameterConfig, ParameterKind};
use kiln_core::changefilter::Pattern;
use kiln_core::sourcestamp::{Patch, SourceStamp};
use kiln_core::{BuildRequestId, BuildSetId, BuilderId, Properties, PropertyValue};
use kiln_db::NewBuildSet;
use kiln_db::listing::{FilterOp, Page, SqlValue};
use serde_json::Value;

use crate::master::Master;

/// Why a force request was refused.
#[derive(Debug)]
pub enum ForceError {
    /// Field name → message, returned as JSON-RPC `invalid_params`.
    InvalidParams(BTreeMap<String, String>),
    /// The buildset could not be recorded.
    Internal(kiln_db::DbError),
}

fn email_like(s: &str) -> bool {
    // "Name <user@host>" as Buildbot's UserNameParameter requires.
    let Some(open) = s.find('<') else {
        return false;
    };
    let Some(close) = s.rfind('>') else {
        return false;
    };
    // `>` before `<` ("a> <b") has no address between them.
    let Some(addr) = s.get(open + 1..close) else {
        return false;
    };
    close == s.len() - 1 && addr.contains('@') && !addr.starts_with('@') && !addr.ends_with('@')
}

fn check(
    param: &ParameterConfig,
    raw: Option<&Value>,
    errors: &mut BTreeMap<String, String>,
) -> Option<PropertyValue> {
    check_named(param, &param.name, raw, errors, &[])
}

/// Checks one simple field, named `name` (its full name) in errors; `workers` are the choices
/// of a worker choice.
fn check_named(
    param: &ParameterConfig,
    name: &String,
    raw: Option<&Value>,
    errors: &mut BTreeMap<String, String>,
    workers: &[String],
) -> Option<PropertyValue> {
    if param.kind == ParameterKind::Fixed {
        return Some(param.default.clone());
    }
    let given = raw.filter(|v| !v.is_null());
    let text = given.map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    if param.required && text.as_deref().is_none_or(str::is_empty) {
        errors.insert(name.clone(), format!("{name}: this field is required"));
        return None;
    }
    let value = match (param.kind, given) {
        (_, None) => param.default.clone(),
        (ParameterKind::Int, Some(v)) => match v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        {
            Some(i) => PropertyValue::Int(i),
            None => {
                errors.insert(
                    name.clone(),
                    format!("{name}: '{}' is not an integer", text.unwrap_or_default()),
                );
                return None;
            }
        },
        (ParameterKind::Boolean, Some(v)) => PropertyValue::Bool(match v {
            Value::Bool(b) => *b,
            Value::String(s) => matches!(s.as_str(), "true" | "True" | "1" | "on" | "yes"),
            Value::Number(n) => n.as_i64().unwrap_or(0) != 0,
            _ => false,
        }),
        (_, Some(_)) => PropertyValue::Str(text.clone().unwrap_or_default()),
    };
    if param.kind == ParameterKind::UserName
        && param.need_email
        && let PropertyValue::Str(s) = &value
        && !s.is_empty()
        && !email_like(s)
    {
        errors.insert(
            name.clone(),
            format!("{name}: please fill in email address in the form 'User <email@email.com>'"),
        );
        return None;
    }
    if param.kind == ParameterKind::WorkerChoice
        && param.strict
        && let PropertyValue::Str(s) = &value
        && s != "*"
        && !workers.contains(s)
    {
        errors.insert(name.clone(), format!("{name}: invalid choice '{s}'"));
        return None;
    }
    if param.kind == ParameterKind::ChoiceString
        && param.strict
        && let PropertyValue::Str(s) = &value
        && !param.choices.is_empty()
        && !param.choices.contains(s)
    {
        errors.insert(name.clone(), format!("{name}: invalid choice '{s}'"));
        return None;
    }
    if let (Some(re), PropertyValue::Str(s)) = (&param.regex, &value)
        && !Pattern::python_match(re).is_ok_and(|p| p.is_match(s))
    {
        errors.insert(
            name.clone(),
            format!("{name}: value '{s}' does not match pattern '{re}'"),
        );
        return None;
    }
    Some(value)
}

/// Forces a build: validates the parameters, then submits a buildset for the chosen builders.
pub async fn force(
    master: &Master,
    scheduler: &ForceSchedulerConfig,
    params: &serde_json::Map<String, Value>,
    owner: Option<&str>,
) -> Result<(BuildSetId, Vec<(BuilderId, BuildRequestId)>), ForceError> {
    let mut errors = BTreeMap::new();
    let ids = master.builder_ids();
    let mut builders: Vec<String> = match params.get("builderNames") {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        _ => match params.get("builderid").and_then(|b| {
            b.as_i64()
                .or_else(|| b.as_str().and_then(|s| s.parse().ok()))
        }) {
            Some(id) => ids
                .iter()
                .filter(|(_, v)| v.0 == id)
                .map(|(k, _)| k.clone())
                .collect(),
            None => scheduler.builder_names.clone(),
        },
    };
    // A builder named twice gets one request, as Buildbot's set of builder names gives.
    let mut seen = std::collections::BTreeSet::new();
    builders.retain(|b| seen.insert(b.clone()));
    if builders.is_empty() {
        errors.insert(
            "builderid".into(),
            "builderid: no such builder for this scheduler".into(),
        );
    }
    for b in &builders {
        if !scheduler.builder_names.contains(b) {
            errors.insert(
                "builderNames".into(),
                format!(
                    "builder '{b}' is not handled by scheduler '{}'",
                    scheduler.name
                ),
            );
        }
    }
    let config = master.config();
    let workers: Vec<String> = config
        .builders
        .iter()
        .filter(|b| scheduler.builder_names.contains(&b.name))
        .flat_map(|b| b.workernames.iter().cloned())
        .collect();
    let Filled {
        username,
        reason,
        priority,
        values,
        mut sourcestamps,
        inherit,
    } = fill(scheduler, params, &workers, &mut errors);
    let mut props = Properties::new();
    for (name, value) in values {
        props.set(name, value, "Force Build Form");
    }
    for (param, raw) in inherit {
        match inherited(master, &param, &raw).await {
            Ok((inherited, stamps)) => {
                props.update(&inherited);
                sourcestamps = stamps;
            }
            Err(why) => {
                errors.insert(param, why);
            }
        }
    }
    if !errors.is_empty() {
        return Err(ForceError::InvalidParams(errors));
    }
    let owner = match username
        .as_ref()
        .map(PropertyValue::render)
        .filter(|s| !s.is_empty())
    {
        Some(u) => u,
        // Nobody named: "", as Buildbot records an anonymous force.
        None => owner.unwrap_or_default().to_string(),
    };
    let reason = reason.map(|r| r.render()).unwrap_or_default();
    props.set("owner", owner.as_str(), "Force Build Form");
    props.set("reason", reason.as_str(), "Force Build Form");
    props.set("scheduler", scheduler.name.as_str(), "Scheduler");
    let priority = match priority {
        Some(PropertyValue::Int(i)) => i,
        _ => 0,
    };
    let full_reason = scheduler
        .reason_string
        .replace("%(owner)s", &owner)
        .replace("%(reason)s", &reason);
    let buildset = NewBuildSet {
        reason: full_reason,
        sourcestamps,
        properties: props,
        builders: builders
            .iter()
            .filter_map(|b| ids.get(b).map(|id| (*id, priority)))
            .collect(),
        ..Default::default()
    };
    let result = master
        .add_buildset(buildset)
        .await
        .map_err(ForceError::Internal)?;
    Ok(result)
}

/// What a force form says, read from its parameters alone.
pub(crate) struct Filled {
    pub username: Option<PropertyValue>,
    pub reason: Option<PropertyValue>,
    pub priority: Option<PropertyValue>,
    /// The properties the form's parameters set.
    pub values: BTreeMap<String, PropertyValue>,
    pub sourcestamps: Vec<SourceStamp>,
    /// `InheritBuildParameter`s given: (property name, `builder/number …`).
    pub inherit: Vec<(String, String)>,
}

/// Reads every field of `scheduler`'s form from `params`, adding what is wrong to `errors`;
/// `workers` are the choices of a worker choice.
pub(crate) fn fill(
    scheduler: &ForceSchedulerConfig,
    params: &serde_json::Map<String, Value>,
    workers: &[String],
    errors: &mut BTreeMap<String, String>,
) -> Filled {
    let mut field = |p: &ParameterConfig| check(p, params.get(&p.name), errors);
    let username = field(&scheduler.username);
    let reason = field(&scheduler.reason);
    let priority = field(&scheduler.priority);
    let mut form = Form {
        params,
        errors,
        workers,
        inherit: Vec::new(),
    };
    let mut values = BTreeMap::new();
    for p in &scheduler.properties {
        form.gather(p, "", &mut values);
    }
    let sourcestamps = scheduler
        .codebases
        .iter()
        .map(|cb| form.sourcestamp(cb))
        .collect();
    Filled {
        username,
        reason,
        priority,
        values,
        sourcestamps,
        inherit: form.inherit,
    }
}

/// A parameter's full name: nested fields are prefixed with their group's name, as in Buildbot.
fn full_name(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}_{name}"),
    }
}

/// The force form being read.
struct Form<'a> {
    params: &'a serde_json::Map<String, Value>,
    errors: &'a mut BTreeMap<String, String>,
    workers: &'a [String],
    /// `InheritBuildParameter`s given: (property name, `builder/number …`).
    inherit: Vec<(String, String)>,
}

impl Form<'_> {
    /// Adds one parameter's properties to `out`.
    fn gather(
        &mut self,
        p: &ParameterConfig,
        prefix: &str,
        out: &mut BTreeMap<String, PropertyValue>,
    ) {
        let full = full_name(prefix, &p.name);
        match p.kind {
            ParameterKind::Nested | ParameterKind::Patch | ParameterKind::Codebase => {
                let mut inner = BTreeMap::new();
                for f in &p.fields {
                    self.gather(f, &full, &mut inner);
                }
                if p.name.is_empty() {
                    out.extend(inner);
                } else {
                    out.insert(p.name.clone(), PropertyValue::Map(inner));
                }
            }
            ParameterKind::AnyProperty => {
                let text = |k: String| {
                    self.params
                        .get(&k)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_default()
                };
                let name = text(format!("{full}_name"));
                let value = text(format!("{full}_value"));
                if !name.is_empty() {
                    out.insert(name, PropertyValue::Str(value));
                }
            }
            ParameterKind::InheritBuild => {
                if let Some(raw) = self
                    .params
                    .get(&full)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    self.inherit.push((full, raw.to_string()));
                } else if p.required {
                    self.errors
                        .insert(full.clone(), format!("{full}: this field is required"));
                }
            }
            _ => {
                if let Some(v) =
                    check_named(p, &full, self.params.get(&full), self.errors, self.workers)
                {
                    out.insert(p.name.clone(), v);
                }
            }
        }
    }

    /// The source stamp a `CodebaseParameter` describes.
    fn sourcestamp(&mut self, cb: &ParameterConfig) -> SourceStamp {
        let mut values = BTreeMap::new();
        for f in &cb.fields {
            self.gather(f, &cb.name, &mut values);
        }
        // A field the form has but left empty is "", as Buildbot stores it.
        let text = |k: &str| match values.get(k) {
            Some(PropertyValue::Str(s)) => Some(s.clone()),
            Some(PropertyValue::Null) | None => None,
            Some(other) => Some(other.render()),
        };
        let patch = match values.get("patch") {
            Some(PropertyValue::Map(p)) => {
                let get = |k: &str| {
                    p.get(k)
                        .map(PropertyValue::render)
                        .filter(|s| !s.is_empty())
                };
                get("body").map(|body| Patch {
                    level: match p.get("level") {
                        Some(PropertyValue::Int(l)) => *l,
                        _ => 1,
                    },
                    body: body.into_bytes(),
                    subdir: get("subdir"),
                    author: get("author"),
                    comment: get("comment"),
                })
            }
            _ => None,
        };
        SourceStamp {
            codebase: cb.name.clone(),
            repository: text("repository").unwrap_or_default(),
            branch: text("branch"),
            revision: text("revision"),
            project: text("project").unwrap_or_default(),
            patch,
        }
    }
}

/// An `InheritBuildParameter`'s value, `builder/number` and an optional comment after a space:
/// the properties that build's force form set (its `owner` as `orig_owner`), the comment as the
/// parameter's own property, and the build's source stamps, as Buildbot does.
async fn inherited(
    master: &Master,
    param: &str,
    raw: &str,
) -> Result<(Properties, Vec<SourceStamp>), String> {
    let (build, comment) = raw.split_once(' ').unwrap_or((raw, ""));
    let Some((builder, number)) = build.split_once('/') else {
        return Err(format!("{param}: bad build: {raw}"));
    };
    let Some(builderid) = master.builder_ids().get(builder).copied() else {
        return Err(format!("{param}: unknown builder: {builder} in {raw}"));
    };
    let internal = |e: kiln_db::DbError| e.to_string();
    let page = Page {
        filters: vec![
            kiln_db::listing::Filter {
                column: "builderid",
                op: FilterOp::Eq,
                values: vec![SqlValue::Int(builderid.0)],
            },
            kiln_db::listing::Filter {
                column: "number",
                op: FilterOp::Eq,
                values: vec![SqlValue::Int(
                    number
                        .parse()
                        .map_err(|_| format!("{param}: bad build: {raw}"))?,
                )],
            },
        ],
        ..Page::default()
    };
    let (builds, _) = master.db.list_builds(&page).await.map_err(internal)?;
    let Some(b) = builds.into_iter().next() else {
        return Err(format!("{param}: unknown build: {builder} in {raw}"));
    };
    let mut props = Properties::new();
    props.set(param, comment, "Force Build Form");
    for (name, p) in master
        .db
        .build_properties_set(b.id)
        .await
        .map_err(internal)?
        .iter()
    {
        if p.source == "Force Build Form" {
            let name = if name == "owner" {
                "orig_owner"
            } else {
                name.as_str()
            };
            props.set(name, p.value.clone(), "Force Build Form");
        }
    }
    let request = master
        .db
        .get_buildrequest(b.buildrequestid)
        .await
        .map_err(internal)?
        .ok_or_else(|| format!("{param}: unknown build: {builder} in {raw}"))?;
    let stamps = master
        .db
        .buildset_sourcestamps(request.buildsetid)
        .await
        .map_err(internal)?
        .iter()
        .map(kiln_db::SourceStampRow::to_sourcestamp)
        .collect();
    Ok((props, stamps))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_need_an_email_address() {
        assert!(email_like("Me <me@example.com>"));
        assert!(!email_like("me"));
        assert!(!email_like("Me <me>"));
        // A `>` before the `<` once made the address slice panic.
        assert!(!email_like("a .abc@><"));
        assert!(!email_like("><"));
    }
}
