//! `ForceScheduler` and its parameters, with Buildbot's defaults.

use kiln_core::PropertyValue;
use kiln_core::changefilter::Pattern;

use super::Cx;
use super::schedulers::function;
use crate::model::*;
use crate::node::{Location, Node};

/// Nested parameters deeper than this are refused.
const MAX_NESTING: usize = 8;

pub(super) fn force(cx: &mut Cx, loc: &Location, s: &Node) -> Option<SchedulerConfig> {
    let Some(name) = cx.opt_string(s.field("name"), "the scheduler name", loc) else {
        cx.error(loc, "ForceScheduler needs a name");
        return None;
    };
    let builder_names = cx.strings(s.field("builderNames"), "builderNames", loc);
    if builder_names.is_empty() {
        cx.error(loc, format!("scheduler '{name}' needs builderNames"));
    }
    let username = parameter(
        cx,
        s.field("username"),
        ParameterConfig::new(ParameterKind::UserName, "username", "Your name:", "".into()),
        loc,
        0,
    );
    let reason = parameter(
        cx,
        s.field("reason"),
        ParameterConfig::new(
            ParameterKind::String,
            "reason",
            "reason",
            "force build".into(),
        ),
        loc,
        0,
    );
    let priority = parameter(
        cx,
        s.field("priority"),
        ParameterConfig::new(
            ParameterKind::Int,
            "priority",
            "priority",
            PropertyValue::Int(0),
        ),
        loc,
        0,
    );
    let properties = list(cx, s.field("properties"), "properties", loc, 0);
    let codebases = match s.field("codebases") {
        None | Some(Node::None) => vec![codebase_param(cx, None, "", loc)],
        Some(Node::List(items)) => items
            .iter()
            .filter_map(|item| match item {
                // A codebase may be given by name alone.
                Node::Str(name) => Some(codebase_param(cx, None, name, loc)),
                Node::Object { kind, loc, .. } if kind == "CodebaseParameter" => {
                    let name = cx
                        .opt_string(item.field("codebase"), "codebase", loc)
                        .unwrap_or_default();
                    Some(codebase_param(cx, Some(item), &name, loc))
                }
                other => {
                    cx.error(
                        loc,
                        format!(
                            "codebases must hold CodebaseParameters or names, not {}",
                            other.describe()
                        ),
                    );
                    None
                }
            })
            .collect(),
        Some(other) => {
            cx.error(
                loc,
                format!("codebases must be a list, not {}", other.describe()),
            );
            Vec::new()
        }
    };
    Some(SchedulerConfig::Force(Box::new(ForceSchedulerConfig {
        label: cx
            .opt_string(s.field("label"), "label", loc)
            .unwrap_or_else(|| name.clone()),
        button_name: cx
            .opt_string(s.field("buttonName"), "buttonName", loc)
            .unwrap_or_else(|| name.clone()),
        reason_string: cx
            .opt_string(s.field("reasonString"), "reasonString", loc)
            .unwrap_or_else(|| "A build was forced by '%(owner)s': %(reason)s".into()),
        name,
        builder_names,
        username,
        reason,
        priority,
        properties,
        codebases,
    })))
}

/// A list of parameters.
fn list(
    cx: &mut Cx,
    node: Option<&Node>,
    what: &str,
    loc: &Location,
    depth: usize,
) -> Vec<ParameterConfig> {
    match node {
        None | Some(Node::None) => Vec::new(),
        Some(Node::List(items)) => items
            .iter()
            .map(|p| {
                parameter(
                    cx,
                    Some(p),
                    ParameterConfig::new(ParameterKind::String, "", "", "".into()),
                    loc,
                    depth,
                )
            })
            .collect(),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "{what} must be a list of parameters, not {}",
                    other.describe()
                ),
            );
            Vec::new()
        }
    }
}

/// A `CodebaseParameter` (or the default one for a codebase named alone): its `branch`,
/// `revision`, `repository` and `project` fields default to string fields, and `patch` to none.
fn codebase_param(
    cx: &mut Cx,
    node: Option<&Node>,
    codebase: &str,
    loc: &Location,
) -> ParameterConfig {
    let mut fields = Vec::new();
    for (field, label) in [
        ("branch", "Branch:"),
        ("revision", "Revision:"),
        ("repository", "Repository:"),
        ("project", "Project:"),
    ] {
        let fallback = ParameterConfig::new(ParameterKind::String, field, label, "".into());
        let given = node.and_then(|n| n.field(field));
        // `project=None` leaves the field out, as in Buildbot.
        if given == Some(&Node::None) {
            continue;
        }
        let mut p = parameter(cx, given, fallback, loc, 1);
        p.name = field.to_string();
        fields.push(p);
    }
    if let Some(patch) = node
        .and_then(|n| n.field("patch"))
        .filter(|n| **n != Node::None)
    {
        let mut p = parameter(
            cx,
            Some(patch),
            ParameterConfig::new(ParameterKind::Patch, "patch", "Patch", PropertyValue::Null),
            loc,
            1,
        );
        p.name = "patch".into();
        fields.push(p);
    }
    let mut p = ParameterConfig::new(
        ParameterKind::Codebase,
        codebase,
        codebase,
        PropertyValue::Null,
    );
    if let Some(label) = node.and_then(|n| cx.opt_string(n.field("label"), "label", loc)) {
        p.label = label;
    }
    p.fields = fields;
    p
}

/// Buildbot's `PatchParameter` fields.
fn patch_fields() -> Vec<ParameterConfig> {
    vec![
        ParameterConfig::new(ParameterKind::File, "body", "Patch body", "".into()),
        ParameterConfig::new(
            ParameterKind::Int,
            "level",
            "Patch level",
            PropertyValue::Int(1),
        ),
        ParameterConfig::new(ParameterKind::String, "subdir", "Subdirectory", ".".into()),
        ParameterConfig::new(ParameterKind::String, "author", "Author", "".into()),
        ParameterConfig::new(ParameterKind::String, "comment", "Comment", "".into()),
    ]
}

pub(super) fn parameter(
    cx: &mut Cx,
    node: Option<&Node>,
    fallback: ParameterConfig,
    loc: &Location,
    depth: usize,
) -> ParameterConfig {
    let Some(node) = node.filter(|n| **n != Node::None) else {
        return fallback;
    };
    let Node::Object { kind, loc: at, .. } = node else {
        // A plain value fixes the parameter, as Buildbot's FixedParameter.
        let default = cx.value(node, "a force parameter", loc);
        return ParameterConfig {
            kind: ParameterKind::Fixed,
            default,
            ..fallback
        };
    };
    let at = &at.clone();
    if depth > MAX_NESTING {
        cx.error(at, "force parameters are nested too deeply");
        return fallback;
    }
    let pkind = match kind.as_str() {
        "StringParameter" => ParameterKind::String,
        "TextParameter" => ParameterKind::Text,
        "FileParameter" => ParameterKind::File,
        "IntParameter" => ParameterKind::Int,
        "BooleanParameter" => ParameterKind::Boolean,
        "UserNameParameter" => ParameterKind::UserName,
        "FixedParameter" => ParameterKind::Fixed,
        "ChoiceStringParameter" => ParameterKind::ChoiceString,
        "NestedParameter" => ParameterKind::Nested,
        "AnyPropertyParameter" => ParameterKind::AnyProperty,
        "PatchParameter" => ParameterKind::Patch,
        "WorkerChoiceParameter" => ParameterKind::WorkerChoice,
        "InheritBuildParameter" => ParameterKind::InheritBuild,
        "CodebaseParameter" => {
            cx.error(
                at,
                "a CodebaseParameter belongs in the scheduler's codebases",
            );
            return fallback;
        }
        other => {
            cx.error(at, format!("{other} is not a force-scheduler parameter"));
            return fallback;
        }
    };
    let default_name = match pkind {
        ParameterKind::Patch => "patch",
        ParameterKind::WorkerChoice => "workername",
        ParameterKind::InheritBuild => "inherit",
        _ => fallback.name.as_str(),
    };
    let name = cx
        .opt_string(node.field("name"), "the parameter name", at)
        .unwrap_or_else(|| default_name.to_string());
    let label = cx
        .opt_string(node.field("label"), "label", at)
        .unwrap_or_else(|| name.clone());
    let default = match node.field("default") {
        Some(d) => cx.value(d, "default", at),
        None => match pkind {
            ParameterKind::Int => PropertyValue::Int(0),
            ParameterKind::Boolean => PropertyValue::Bool(false),
            ParameterKind::WorkerChoice => "*".into(),
            ParameterKind::Nested | ParameterKind::Patch => PropertyValue::Null,
            _ => PropertyValue::Str(String::new()),
        },
    };
    let regex = cx.opt_string(node.field("regex"), "regex", at);
    if let Some(re) = &regex
        && let Err(e) = Pattern::python_match(re)
    {
        cx.error(at, format!("parameter '{name}': regex is not valid: {e}"));
    }
    let fields = match pkind {
        ParameterKind::Nested => list(cx, node.field("fields"), "fields", at, depth + 1),
        ParameterKind::Patch => patch_fields(),
        _ => Vec::new(),
    };
    let compatible_builds = match pkind {
        ParameterKind::InheritBuild => match node.field("compatible_builds") {
            Some(n @ Node::Function(..)) => function(cx, n, "compatible_builds", at),
            _ => {
                cx.error(
                    at,
                    format!("InheritBuildParameter '{name}' needs compatible_builds, a function"),
                );
                None
            }
        },
        _ => None,
    };
    ParameterConfig {
        kind: pkind,
        label,
        default,
        required: cx.boolean(node.field("required"), false, "required", at),
        regex,
        need_email: cx.boolean(
            node.field("need_email"),
            pkind == ParameterKind::UserName,
            "need_email",
            at,
        ),
        choices: cx.strings(node.field("choices"), "choices", at),
        strict: cx.boolean(
            node.field("strict"),
            pkind != ParameterKind::WorkerChoice,
            "strict",
            at,
        ),
        hide: cx.boolean(node.field("hide"), false, "hide", at),
        fields,
        compatible_builds,
        name,
    }
}
