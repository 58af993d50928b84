//! The force scheduler: builds on request, from the web form or the `force` JSON-RPC call, with
//! Buildbot's parameter validation.

use std::collections::BTreeMap;

use kiln_config::{ForceSchedulerConfig, ParameterConfig, ParameterKind};
use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{BuildRequestId, BuildSetId, BuilderId, Properties, PropertyValue};
use kiln_db::NewBuildSet;
use serde_json::Value;

use crate::master::Master;

/// Why a force request was refused.
#[derive(Debug)]
pub enum ForceError {
    /// Field name → message, returned as JSON-RPC `invalid_params`.
    InvalidParams(BTreeMap<String, String>),
    Internal(String),
}

fn email_like(s: &str) -> bool {
    // "Name <user@host>" as Buildbot's UserNameParameter requires.
    let Some(open) = s.find('<') else {
        return false;
    };
    let Some(close) = s.rfind('>') else {
        return false;
    };
    let addr = &s[open + 1..close];
    close == s.len() - 1
        && open < close
        && addr.contains('@')
        && !addr.starts_with('@')
        && !addr.ends_with('@')
}

fn check(
    param: &ParameterConfig,
    raw: Option<&Value>,
    errors: &mut BTreeMap<String, String>,
) -> Option<PropertyValue> {
    let name = &param.name;
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
        && !simple_regex_match(re, s)
    {
        errors.insert(
            name.clone(),
            format!("{name}: value '{s}' does not match pattern '{re}'"),
        );
        return None;
    }
    Some(value)
}

/// A deliberately small matcher for force-form patterns: anchors `^`/`$`, `.`, `*`, `+`, `?` and
/// literal characters. Patterns beyond that are accepted rather than refused.
fn simple_regex_match(pattern: &str, text: &str) -> bool {
    fn matches_here(p: &[char], t: &[char]) -> bool {
        if p.is_empty() {
            return true;
        }
        if p == ['$'] {
            return t.is_empty();
        }
        if p.len() >= 2 && matches!(p[1], '*' | '+' | '?') {
            let (c, op) = (p[0], p[1]);
            let ok = |ch: char| c == '.' || c == ch;
            let min = usize::from(op == '+');
            let max = if op == '?' { 1 } else { t.len() };
            let mut n = 0;
            while n < max && n < t.len() && ok(t[n]) {
                n += 1;
            }
            return (min..=n).rev().any(|k| matches_here(&p[2..], &t[k..]));
        }
        !t.is_empty() && (p[0] == '.' || p[0] == t[0]) && matches_here(&p[1..], &t[1..])
    }
    if pattern.chars().any(|c| "[](){}|\\".contains(c)) {
        return true;
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    if p.first() == Some(&'^') {
        return matches_here(&p[1..], &t);
    }
    (0..=t.len()).any(|i| matches_here(&p, &t[i..]))
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
    let builders: Vec<String> = match params.get("builderNames") {
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
    let username = check(
        &scheduler.username,
        params.get(&scheduler.username.name),
        &mut errors,
    );
    let reason = check(
        &scheduler.reason,
        params.get(&scheduler.reason.name),
        &mut errors,
    );
    let priority = check(
        &scheduler.priority,
        params.get(&scheduler.priority.name),
        &mut errors,
    );
    let mut props = Properties::new();
    for p in &scheduler.properties {
        if let Some(v) = check(p, params.get(&p.name), &mut errors) {
            props.set(p.name.clone(), v, "Force Build Form");
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
        None => owner.unwrap_or("anonymous").to_string(),
    };
    let reason = reason.map(|r| r.render()).unwrap_or_default();
    props.set("owner", owner.as_str(), "Force Build Form");
    props.set("reason", reason.as_str(), "Force Build Form");
    props.set("scheduler", scheduler.name.as_str(), "Scheduler");
    let text = |k: &str| {
        params
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let sourcestamp = SourceStamp {
        codebase: text("codebase").unwrap_or_default(),
        repository: text("repository").unwrap_or_default(),
        branch: text("branch"),
        revision: text("revision"),
        project: text("project").unwrap_or_default(),
        patch: None,
    };
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
        sourcestamps: vec![sourcestamp],
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
        .map_err(|e| ForceError::Internal(e.to_string()))?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_need_an_email_address() {
        assert!(email_like("Me <me@example.com>"));
        assert!(!email_like("me"));
        assert!(!email_like("Me <me>"));
    }

    #[test]
    fn small_patterns() {
        assert!(
            simple_regex_match("^[0-9]+$", "anything"),
            "unsupported patterns are accepted"
        );
        assert!(simple_regex_match("^rel-.*$", "rel-1.2"));
        assert!(!simple_regex_match("^rel-.*$", "main"));
        assert!(simple_regex_match("ab?c", "xacx"));
    }
}
