//! Schedulers and change filters in the configuration.

use kiln_core::PropertyValue;
use kiln_core::change::Attribute;
use kiln_core::changefilter::{ChangeFilter, Criterion, FnRef, Pattern, PropertyTest};
use kiln_core::render::Renderable;

use super::Cx;
use crate::model::*;
use crate::node::{Location, Node};

/// What every scheduler has: its name and its builders, listed or (with `rendered`) given as a
/// renderable. `None` (with an error) without a name.
pub(super) fn named(
    cx: &mut Cx,
    loc: &Location,
    s: &Node,
    kind: &str,
    rendered: Option<&mut Option<Renderable>>,
) -> Option<(String, Vec<String>)> {
    let Some(name) = cx.opt_string(s.field("name"), "the scheduler name", loc) else {
        cx.error(loc, format!("{kind} needs a name"));
        return None;
    };
    let node = s.field("builderNames");
    let plain = |n: &Node| match n {
        Node::List(items) => items.iter().all(|i| matches!(i, Node::Str(_))),
        _ => false,
    };
    if let (Some(slot), Some(n)) = (rendered, node)
        && (matches!(n, Node::Object { .. }) || matches!(n, Node::List(_)) && !plain(n))
    {
        *slot = Some(cx.renderable(n, "builderNames", loc));
        return Some((name, Vec::new()));
    }
    let builder_names = cx.strings(node, "builderNames", loc);
    if builder_names.is_empty() {
        cx.error(loc, format!("scheduler '{name}' needs builderNames"));
    }
    Some((name, builder_names))
}

/// A scheduler's `properties`, `reason` (or `default`) and `priority` (0 by default).
pub(super) fn extras(
    cx: &mut Cx,
    loc: &Location,
    s: &Node,
    default_reason: &str,
) -> (Vec<(String, PropertyValue)>, String, i64) {
    let properties = cx
        .properties(s.field("properties"), "properties", loc)
        .into_iter()
        .collect();
    let reason = cx
        .opt_string(s.field("reason"), "reason", loc)
        .unwrap_or_else(|| default_reason.to_string());
    let priority = match given_node(s.field("priority")) {
        None => 0,
        Some(n) => cx.int(n, "priority", loc).unwrap_or(0),
    };
    (properties, reason, priority)
}

pub(super) fn scheduler(cx: &mut Cx, loc: &Location, s: &Node) -> Option<SchedulerConfig> {
    let Node::Object { kind, .. } = s else {
        return None;
    };
    match kind.as_str() {
        "ForceScheduler" => super::force::force(cx, loc, s),
        "SingleBranchScheduler" | "AnyBranchScheduler" => basic(cx, loc, kind, s),
        "Periodic" | "Nightly" | "NightlyTriggerable" => super::timed::timed(cx, loc, kind, s),
        "Dependent" => dependent(cx, loc, s),
        "Try_Userpass" => try_userpass(cx, loc, s),
        "Try_Jobdir" => {
            cx.error(
                loc,
                "Try_Jobdir is not supported by this version of kiln: use Try_Userpass, to which `kiln try` sends jobs over HTTP",
            );
            None
        }
        "Triggerable" => super::trigger::triggerable(cx, loc, s),
        _ => {
            cx.error(loc, format!("{kind} is not a scheduler"));
            None
        }
    }
}

fn basic(cx: &mut Cx, loc: &Location, kind: &str, s: &Node) -> Option<SchedulerConfig> {
    let mut rendered_builder_names = None;
    let (name, builder_names) = named(cx, loc, s, kind, Some(&mut rendered_builder_names))?;
    let per_branch = kind == "AnyBranchScheduler";
    let branch_arg = if per_branch { "branches" } else { "branch" };
    let branch = s.field(branch_arg);
    let categories = s.field("categories").filter(|n| **n != Node::None);
    let mut filter = match s.field("change_filter") {
        None | Some(Node::None) => ChangeFilter::default(),
        Some(f @ Node::Object { kind, .. }) if kind == "ChangeFilter" => change_filter(cx, f, loc),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "scheduler '{name}': change_filter must be a util.ChangeFilter, not {}",
                    other.describe()
                ),
            );
            ChangeFilter::default()
        }
    };
    let has_filter = s.field("change_filter").is_some_and(|n| *n != Node::None);
    if has_filter && (branch.is_some() || categories.is_some()) {
        cx.error(
            loc,
            format!(
                "scheduler '{name}': give either change_filter or {branch_arg}/categories, not both"
            ),
        );
    }
    match branch {
        // For SingleBranchScheduler, branch=None is the default branch; for AnyBranchScheduler,
        // branches=None means every branch.
        Some(Node::None) if per_branch => {}
        Some(b) => {
            let values = optional_strings(cx, b, branch_arg, loc);
            filter.attributes.push((
                Attribute::Branch,
                Criterion {
                    eq: Some(values),
                    ..Criterion::default()
                },
            ));
        }
        None if !per_branch && !has_filter => cx.error(
            loc,
            format!(
                "scheduler '{name}': the 'branch' argument to SingleBranchScheduler is mandatory unless change_filter is provided"
            ),
        ),
        None => {}
    }
    if let Some(c) = categories {
        let values = optional_strings(cx, c, "categories", loc);
        filter.attributes.push((
            Attribute::Category,
            Criterion {
                eq: Some(values),
                ..Criterion::default()
            },
        ));
    }
    let file_is_important = given_node(s.field("fileIsImportant"))
        .and_then(|n| function(cx, n, "fileIsImportant", loc));
    let codebases = codebases(cx, s.field("codebases"), loc);
    if s.field("createAbsoluteSourceStamps")
        .is_some_and(|n| *n != Node::None && *n != Node::Bool(false))
    {
        cx.warn(
            loc,
            format!("scheduler '{name}': createAbsoluteSourceStamps is not supported by this version of kiln and is ignored"),
        );
    }
    let tree_stable_timer = match s.field("treeStableTimer") {
        None | Some(Node::None) => None,
        Some(Node::Int(i)) => Some(*i),
        // Timers count whole seconds; a fraction waits for the next one.
        Some(Node::Float(f)) if f.is_finite() => Some(f.ceil() as i64),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "treeStableTimer must be a number of seconds, not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    let only_important = cx.boolean(s.field("onlyImportant"), false, "onlyImportant", loc);
    let (properties, reason, priority) = extras(
        cx,
        loc,
        s,
        "The %(classname)s scheduler named '%(name)s' triggered this build",
    );
    Some(SchedulerConfig::Basic(Box::new(BasicSchedulerConfig {
        name,
        class_name: kind.to_string(),
        builder_names,
        rendered_builder_names,
        per_branch,
        change_filter: filter,
        tree_stable_timer,
        only_important,
        file_is_important,
        codebases,
        properties,
        reason,
        priority,
    })))
}

/// `schedulers.Try_Userpass(name, builderNames, port, userpass)`. Try jobs come to the web port
/// (`POST /try`), so `port` is not used.
fn try_userpass(cx: &mut Cx, loc: &Location, s: &Node) -> Option<SchedulerConfig> {
    let (name, builder_names) = named(cx, loc, s, "Try_Userpass", None)?;
    if given_node(s.field("port")).is_some() {
        cx.warn(
            loc,
            format!(
                "scheduler '{name}': port is not used; kiln takes try jobs on the web port at /try"
            ),
        );
    }
    let mut userpass = Vec::new();
    match s.field("userpass") {
        Some(Node::List(pairs)) => {
            for pair in pairs {
                match pair {
                    Node::List(p) if p.len() == 2 => {
                        let user = cx.string(&p[0], "a userpass user", loc);
                        let pass = cx.string(&p[1], "a userpass password", loc);
                        if let (Some(u), Some(p)) = (user, pass) {
                            userpass.push((u, p));
                        }
                    }
                    other => cx.error(
                        loc,
                        format!(
                            "userpass must hold (user, password) pairs, not {}",
                            other.describe()
                        ),
                    ),
                }
            }
        }
        _ => cx.error(
            loc,
            format!("scheduler '{name}' needs userpass, a list of (user, password) pairs"),
        ),
    }
    let (properties, _, _) = extras(cx, loc, s, "");
    Some(SchedulerConfig::Try(Box::new(TryConfig {
        name,
        builder_names,
        userpass,
        properties,
    })))
}

/// `schedulers.Dependent(name, upstream, builderNames)`.
fn dependent(cx: &mut Cx, loc: &Location, s: &Node) -> Option<SchedulerConfig> {
    let mut rendered_builder_names = None;
    let (name, builder_names) = named(cx, loc, s, "Dependent", Some(&mut rendered_builder_names))?;
    // `upstream` is the scheduler object itself, as in Buildbot; its name is what counts.
    let upstream = match s.field("upstream") {
        Some(u @ Node::Object { .. }) => match u.field("name") {
            Some(Node::Str(n)) => Some(n.clone()),
            _ => None,
        },
        Some(Node::Str(n)) => Some(n.clone()),
        _ => None,
    };
    let Some(upstream) = upstream else {
        cx.error(
            loc,
            format!("scheduler '{name}': upstream must be a scheduler"),
        );
        return None;
    };
    let (properties, reason, priority) = extras(cx, loc, s, "downstream");
    Some(SchedulerConfig::Dependent(Box::new(DependentConfig {
        name,
        upstream,
        builder_names,
        rendered_builder_names,
        properties,
        reason,
        priority,
    })))
}

/// A string, `None`, or a list of them, as the values an attribute may equal.
pub(super) fn optional_strings(
    cx: &mut Cx,
    node: &Node,
    what: &str,
    loc: &Location,
) -> Vec<Option<String>> {
    let one = |cx: &mut Cx, n: &Node| match n {
        Node::None => Some(None),
        Node::Str(s) => Some(Some(s.clone())),
        other => {
            cx.error(
                loc,
                format!(
                    "{what} must be a string, None or a list of them, not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    match node {
        Node::List(items) => items.iter().filter_map(|i| one(cx, i)).collect(),
        other => one(cx, other).into_iter().collect(),
    }
}

pub(super) fn pattern(cx: &mut Cx, node: &Node, what: &str, loc: &Location) -> Option<Pattern> {
    let text = cx.string(node, what, loc)?;
    match Pattern::python_match(&text) {
        Ok(p) => Some(p),
        Err(e) => {
            cx.error(
                loc,
                format!("{what} is not a valid regular expression: {e}"),
            );
            None
        }
    }
}

/// `util.ChangeFilter(…)`.
pub(super) fn change_filter(cx: &mut Cx, f: &Node, outer: &Location) -> ChangeFilter {
    let loc = match f {
        Node::Object { loc, .. } => loc.clone(),
        _ => outer.clone(),
    };
    let loc = &loc;
    let mut filter = ChangeFilter::default();
    for attr in Attribute::ALL {
        let key = |suffix: &str| format!("{}{suffix}", attr.name());
        // branch=None names the default branch; for the other attributes None means "any".
        let eq = match f.field(attr.name()) {
            Some(Node::None) if attr == Attribute::Branch => Some(vec![None]),
            n => given_node(n).map(|n| optional_strings(cx, n, attr.name(), loc)),
        };
        let c = Criterion {
            eq,
            not_eq: given_node(f.field(&key("_not_eq")))
                .map(|n| optional_strings(cx, n, &key("_not_eq"), loc)),
            re: given_node(f.field(&key("_re"))).and_then(|n| pattern(cx, n, &key("_re"), loc)),
            not_re: given_node(f.field(&key("_not_re")))
                .and_then(|n| pattern(cx, n, &key("_not_re"), loc)),
            func: given_node(f.field(&key("_fn"))).and_then(|n| function(cx, n, &key("_fn"), loc)),
        };
        if c != Criterion::default() {
            filter.attributes.push((attr, c));
        }
    }
    filter.filter_fn =
        given_node(f.field("filter_fn")).and_then(|n| function(cx, n, "filter_fn", loc));
    for (key, negate, regex) in [
        ("property_eq", false, false),
        ("property_not_eq", true, false),
        ("property_re", false, true),
        ("property_not_re", true, true),
    ] {
        let Some(node) = given_node(f.field(key)) else {
            continue;
        };
        let Node::Dict(entries) = node else {
            cx.error(
                loc,
                format!(
                    "{key} must be a dict of property names, not {}",
                    node.describe()
                ),
            );
            continue;
        };
        for (name, value) in entries {
            let Some(name) = cx.string(name, &format!("{key} keys"), loc) else {
                continue;
            };
            let test = if regex {
                let Some(p) = pattern(cx, value, key, loc) else {
                    continue;
                };
                if negate {
                    PropertyTest::NotRe(name, p)
                } else {
                    PropertyTest::Re(name, p)
                }
            } else {
                let values = match value {
                    Node::List(items) => items.iter().map(|i| cx.value(i, key, loc)).collect(),
                    other => vec![cx.value(other, key, loc)],
                };
                if negate {
                    PropertyTest::NotEq(name, values)
                } else {
                    PropertyTest::Eq(name, values)
                }
            };
            filter.properties.push(test);
        }
    }
    filter
}

/// A scheduler's `codebases`: a list of names, or a dict of names to their defaults
/// (`repository`, `branch`, `revision`, `project`). Absent, the one codebase `''`.
pub(super) fn codebases(cx: &mut Cx, node: Option<&Node>, loc: &Location) -> Vec<CodebaseDefault> {
    let named = |name: String| CodebaseDefault {
        name,
        ..CodebaseDefault::default()
    };
    let mut out = match given_node(node) {
        None => vec![named(String::new())],
        Some(Node::List(items)) => items
            .iter()
            .filter_map(|i| cx.string(i, "codebases entries", loc))
            .map(named)
            .collect(),
        Some(Node::Dict(entries)) => {
            let mut out = Vec::new();
            for (k, v) in entries {
                let Some(name) = cx.string(k, "codebases keys", loc) else {
                    continue;
                };
                let what = format!("codebases['{name}']");
                let mut cb = named(name);
                match v {
                    Node::Dict(fields) => {
                        for (field, value) in fields {
                            let Some(field) = cx.string(field, &format!("{what} keys"), loc) else {
                                continue;
                            };
                            let text = |cx: &mut Cx| {
                                cx.opt_string(Some(value), &format!("{what}['{field}']"), loc)
                            };
                            match field.as_str() {
                                "repository" => cb.repository = text(cx).unwrap_or_default(),
                                "branch" => cb.branch = text(cx),
                                "revision" => cb.revision = text(cx),
                                "project" => cb.project = text(cx).unwrap_or_default(),
                                other => cx.error(
                                    loc,
                                    format!("{what}: unknown key '{other}' (known: repository, branch, revision, project)"),
                                ),
                            }
                        }
                    }
                    other => cx.error(
                        loc,
                        format!("{what} must be a dict, not {}", other.describe()),
                    ),
                }
                out.push(cb);
            }
            out
        }
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "codebases must be a list of names or a dict of them, not {}",
                    other.describe()
                ),
            );
            vec![named(String::new())]
        }
    };
    if out.is_empty() {
        cx.error(loc, "codebases must name at least one codebase");
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// A function the configuration defines, for kiln to call later.
pub(super) fn function(cx: &mut Cx, node: &Node, what: &str, loc: &Location) -> Option<FnRef> {
    match node {
        Node::Function(f, _) => Some(*f),
        other => {
            cx.error(
                loc,
                format!("{what} must be a function, not {}", other.describe()),
            );
            None
        }
    }
}

/// A keyword's value unless it is absent or `None`.
pub(super) fn given_node(n: Option<&Node>) -> Option<&Node> {
    n.filter(|n| **n != Node::None)
}
