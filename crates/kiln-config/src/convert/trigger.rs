//! The `Trigger` step and the schedulers it triggers: `Triggerable`.

use kiln_core::render::Renderable;

use super::Cx;
use super::schedulers::{codebases, extras, given_node, named};
use crate::model::*;
use crate::node::{Location, Node};

/// `schedulers.Triggerable(name, builderNames, …)`.
pub(super) fn triggerable(cx: &mut Cx, loc: &Location, s: &Node) -> Option<SchedulerConfig> {
    let mut rendered_builder_names = None;
    let (name, builder_names) =
        named(cx, loc, s, "Triggerable", Some(&mut rendered_builder_names))?;
    let (properties, reason, priority) = extras(
        cx,
        loc,
        s,
        "The Triggerable scheduler named '%(name)s' triggered this build",
    );
    Some(SchedulerConfig::Triggerable(Box::new(TriggerableConfig {
        builder_names,
        rendered_builder_names,
        codebases: codebases(cx, s.field("codebases"), loc),
        properties,
        reason,
        priority,
        name,
    })))
}

/// `steps.Trigger(schedulerNames=[…], …)`.
pub(super) fn trigger_step(
    cx: &mut Cx,
    s: &Node,
    loc: &Location,
    name: &str,
) -> Option<TriggerConfig> {
    let scheduler_names = cx.strings(s.field("schedulerNames"), "schedulerNames", loc);
    if scheduler_names.is_empty() {
        cx.error(
            loc,
            format!("Trigger step '{name}': schedulerNames must name at least one scheduler"),
        );
    }
    let unimportant = cx.strings(
        s.field("unimportantSchedulerNames"),
        "unimportantSchedulerNames",
        loc,
    );
    for u in &unimportant {
        if !scheduler_names.contains(u) {
            cx.error(
                loc,
                format!("Trigger step '{name}': unimportantSchedulerNames names '{u}', which is not in schedulerNames"),
            );
        }
    }
    let always_use_latest = cx.boolean(s.field("alwaysUseLatest"), false, "alwaysUseLatest", loc);
    let update_given = given_node(s.field("updateSourceStamp")).is_some();
    let update_source_stamp = cx.boolean(
        s.field("updateSourceStamp"),
        !always_use_latest,
        "updateSourceStamp",
        loc,
    );
    let source_stamps = match given_node(s.field("sourceStamps")) {
        None => Vec::new(),
        Some(Node::List(items)) => items
            .iter()
            .filter_map(|i| source_stamp(cx, i, loc))
            .collect(),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "sourceStamps must be a list of dicts, not {}",
                    other.describe()
                ),
            );
            Vec::new()
        }
    };
    if update_given && update_source_stamp && always_use_latest {
        cx.error(
            loc,
            format!("Trigger step '{name}': you can't specify both alwaysUseLatest and updateSourceStamp"),
        );
    }
    if !source_stamps.is_empty() && (update_given || always_use_latest) {
        cx.error(
            loc,
            format!("Trigger step '{name}': you can't specify sourceStamps and updateSourceStamp or alwaysUseLatest"),
        );
    }
    let set_properties: Vec<(String, Renderable)> = match given_node(s.field("set_properties")) {
        None => Vec::new(),
        Some(Node::Dict(entries)) => entries
            .iter()
            .filter_map(|(k, v)| {
                let k = cx.string(k, "set_properties keys", loc)?;
                let v = cx.renderable(v, &format!("set_properties['{k}']"), loc);
                Some((k, v))
            })
            .collect(),
        Some(other) => {
            cx.error(
                loc,
                format!("set_properties must be a dict, not {}", other.describe()),
            );
            Vec::new()
        }
    };
    Some(TriggerConfig {
        scheduler_names,
        unimportant_scheduler_names: unimportant,
        wait_for_finish: cx.boolean(s.field("waitForFinish"), false, "waitForFinish", loc),
        update_source_stamp: update_source_stamp && source_stamps.is_empty(),
        always_use_latest,
        source_stamps,
        set_properties,
        copy_properties: cx.strings(s.field("copy_properties"), "copy_properties", loc),
        parent_relationship: cx
            .opt_string(s.field("parent_relationship"), "parent_relationship", loc)
            .unwrap_or_else(|| "Triggered from".into()),
    })
}

fn source_stamp(cx: &mut Cx, node: &Node, loc: &Location) -> Option<CodebaseDefault> {
    let Node::Dict(fields) = node else {
        cx.error(
            loc,
            format!(
                "sourceStamps entries must be dicts, not {}",
                node.describe()
            ),
        );
        return None;
    };
    let mut ss = CodebaseDefault::default();
    for (k, v) in fields {
        let k = cx.string(k, "sourceStamps keys", loc)?;
        let text = cx.opt_string(Some(v), &format!("sourceStamps '{k}'"), loc);
        match k.as_str() {
            "codebase" => ss.name = text.unwrap_or_default(),
            "repository" => ss.repository = text.unwrap_or_default(),
            "branch" => ss.branch = text,
            "revision" => ss.revision = text,
            "project" => ss.project = text.unwrap_or_default(),
            other => cx.error(
                loc,
                format!("sourceStamps: unknown key '{other}' (known: codebase, repository, branch, revision, project)"),
            ),
        }
    }
    Some(ss)
}
