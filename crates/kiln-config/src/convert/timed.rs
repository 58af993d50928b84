//! The timed schedulers: `Periodic` and `Nightly`, with Buildbot's arguments and defaults.

use kiln_core::change::Attribute;
use kiln_core::changefilter::{ChangeFilter, Criterion};
use kiln_core::cron::Cron;
use kiln_core::schedulers::timed::Schedule;

use super::Cx;
use super::schedulers::{
    change_filter, codebases, extras, function, given_node, named, optional_strings,
};
use crate::model::*;
use crate::node::{Location, Node};

pub(super) fn timed(cx: &mut Cx, loc: &Location, kind: &str, s: &Node) -> Option<SchedulerConfig> {
    let mut rendered_builder_names = None;
    let (name, builder_names) = named(cx, loc, s, kind, Some(&mut rendered_builder_names))?;
    let schedule = if kind == "Periodic" {
        match s.field("periodicBuildTimer") {
            Some(Node::Int(i)) if *i > 0 => Some(Schedule::Periodic { interval: *i }),
            Some(Node::Float(f)) if f.is_finite() && *f > 0.0 => Some(Schedule::Periodic {
                interval: f.ceil() as i64,
            }),
            None | Some(Node::None) => {
                cx.error(
                    loc,
                    format!("scheduler '{name}': Periodic needs periodicBuildTimer"),
                );
                None
            }
            Some(_) => {
                cx.error(
                    loc,
                    format!("scheduler '{name}': periodicBuildTimer must be positive"),
                );
                None
            }
        }
    } else {
        cron(
            cx,
            loc,
            s,
            &name,
            ["minute", "hour", "dayOfMonth", "month", "dayOfWeek"],
        )
        .map(Schedule::Cron)
    };
    let force_keys = [
        "force_at_minute",
        "force_at_hour",
        "force_at_day_of_month",
        "force_at_month",
        "force_at_day_of_week",
    ];
    let force_at = if force_keys.iter().any(|k| given_node(s.field(k)).is_some()) {
        cron(cx, loc, s, &name, force_keys)
    } else {
        None
    };
    let timezone = cx.opt_string(s.field("timezone"), "timezone", loc);
    if let Some(tz) = &timezone
        && let Err(e) = jiff::tz::TimeZone::get(tz)
    {
        cx.error(
            loc,
            format!("scheduler '{name}': unknown timezone {tz:?}: {e}"),
        );
    }

    let mut filter = match given_node(s.field("change_filter")) {
        None => ChangeFilter::default(),
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
    // `branch` only filters the changes a timed scheduler looks at; absent, it takes any branch.
    if let Some(b) = s.field("branch") {
        let values = optional_strings(cx, b, "branch", loc);
        filter.attributes.push((
            Attribute::Branch,
            Criterion {
                eq: Some(values),
                ..Criterion::default()
            },
        ));
    }
    let file_is_important = given_node(s.field("fileIsImportant"))
        .and_then(|n| function(cx, n, "fileIsImportant", loc));
    if s.field("createAbsoluteSourceStamps")
        .is_some_and(|n| *n != Node::None && *n != Node::Bool(false))
    {
        cx.warn(
            loc,
            format!("scheduler '{name}': createAbsoluteSourceStamps is not supported by this version of kiln and is ignored"),
        );
    }
    let default_reason = format!("The {kind} scheduler named '%(name)s' triggered this build");
    let (properties, reason, priority) = extras(cx, loc, s, &default_reason);
    Some(SchedulerConfig::Timed(Box::new(TimedSchedulerConfig {
        class_name: kind.to_string(),
        builder_names,
        rendered_builder_names,
        schedule: schedule?,
        force_at,
        timezone,
        triggerable: kind == "NightlyTriggerable",
        only_if_changed: cx.boolean(s.field("onlyIfChanged"), false, "onlyIfChanged", loc),
        change_filter: filter,
        file_is_important,
        only_important: cx.boolean(s.field("onlyImportant"), false, "onlyImportant", loc),
        codebases: codebases(cx, s.field("codebases"), loc),
        properties,
        reason,
        priority,
        name,
    })))
}

/// The five cron fields, as Buildbot turns its arguments into a cron line: an int is itself, a
/// string is cron syntax, a list is joined with commas. Buildbot's `dayOfWeek` counts from Monday
/// = 0, as Python does, so its numbers are moved to cron's Sunday = 0; ranges and names written
/// as text are cron's already. Unset `force_at_*` fields are minute 0 and `*` for the rest.
fn cron(cx: &mut Cx, loc: &Location, s: &Node, name: &str, keys: [&str; 5]) -> Option<Cron> {
    // Buildbot's defaults; for `force_at_*` they apply once any of them is given.
    let defaults = ["0", "*", "*", "*", "*"];
    let mut fields: Vec<String> = Vec::with_capacity(5);
    for (i, key) in keys.iter().enumerate() {
        let day_of_week = i == 4;
        let text = match given_node(s.field(key)) {
            None => Some(defaults[i].to_string()),
            Some(n) => cron_field(cx, loc, n, key, day_of_week),
        };
        fields.push(text?);
    }
    match Cron::parse(&fields[0], &fields[1], &fields[2], &fields[3], &fields[4]) {
        Ok(c) => Some(c),
        Err(e) => {
            cx.error(loc, format!("scheduler '{name}': {e}"));
            None
        }
    }
}

fn cron_field(
    cx: &mut Cx,
    loc: &Location,
    n: &Node,
    key: &str,
    day_of_week: bool,
) -> Option<String> {
    let python_day = |d: i64| ((d + 1).rem_euclid(7)).to_string();
    let one = |cx: &mut Cx, n: &Node| -> Option<String> {
        match n {
            Node::Int(i) if day_of_week => Some(python_day(*i)),
            Node::Int(i) => Some(i.to_string()),
            Node::Str(s) if day_of_week => Some(
                s.split(',')
                    .map(|p| match p.trim().parse::<i64>() {
                        Ok(d) => python_day(d),
                        Err(_) => p.trim().to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Node::Str(s) => Some(s.clone()),
            other => {
                cx.error(
                    loc,
                    format!(
                        "{key} must be an int, a string or a list of them, not {}",
                        other.describe()
                    ),
                );
                None
            }
        }
    };
    match n {
        Node::List(items) if items.is_empty() => {
            cx.error(loc, format!("{key} must not be an empty list"));
            None
        }
        Node::List(items) => {
            let parts: Option<Vec<String>> = items.iter().map(|i| one(cx, i)).collect();
            parts.map(|p| p.join(","))
        }
        other => one(cx, other),
    }
}
