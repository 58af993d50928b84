//! `c['workers']` and `c['builders']`: each worker with its password and limits, each builder
//! with its workers, factory of steps, locks, properties and request collapsing.

use kiln_core::render::Renderable;

use super::{Cx, locks, schedulers, steps};
use crate::model::*;
use crate::node::{Location, Node};

pub(super) fn worker(cx: &mut Cx, loc: &Location, w: &Node) -> Option<WorkerConfig> {
    let name = cx.string(w.field("name")?, "the worker name", loc)?;
    if name.contains(':') {
        cx.error(loc, format!("worker name '{name}' must not contain ':'"));
    }
    let password = match w.field("password") {
        Some(p) => cx.string(p, "the worker password", loc)?,
        None => {
            cx.error(loc, format!("worker '{name}' needs a password"));
            return None;
        }
    };
    let max_builds = match w.field("max_builds") {
        None | Some(Node::None) => None,
        Some(n) => cx.int(n, "max_builds", loc).and_then(|m| {
            let ok = u32::try_from(m).ok().filter(|m| *m > 0);
            if ok.is_none() {
                cx.error(
                    loc,
                    format!("max_builds must be a positive number, not {m}"),
                );
            }
            ok
        }),
    };
    let properties = cx.properties(w.field("properties"), "the worker's properties", loc);
    for unsupported in ["defaultProperties", "locks", "machine_name"] {
        if w.field(unsupported).is_some_and(|n| *n != Node::None) {
            cx.warn(loc, format!("worker '{name}': {unsupported} is not supported by this version of kiln and is ignored"));
        }
    }
    let keepalive_interval = match w.field("keepalive_interval") {
        None | Some(Node::None) => None,
        Some(n) => match cx.int(n, "keepalive_interval", loc) {
            Some(t) if t > 0 => u64::try_from(t).ok(),
            Some(t) => {
                cx.error(
                    loc,
                    format!("keepalive_interval must be a positive number of seconds, not {t}"),
                );
                None
            }
            None => None,
        },
    };
    let notify_on_missing = cx.strings(w.field("notify_on_missing"), "notify_on_missing", loc);
    let missing_timeout = match w.field("missing_timeout") {
        None | Some(Node::None) => DEFAULT_MISSING_TIMEOUT,
        Some(n) => match cx.int(n, "missing_timeout", loc) {
            Some(t) if t > 0 => t,
            Some(t) => {
                cx.error(
                    loc,
                    format!("missing_timeout must be a positive number of seconds, not {t}"),
                );
                DEFAULT_MISSING_TIMEOUT
            }
            None => DEFAULT_MISSING_TIMEOUT,
        },
    };
    Some(WorkerConfig {
        name,
        password,
        max_builds,
        properties,
        notify_on_missing,
        missing_timeout,
        keepalive_interval,
    })
}

/// Buildbot's default `missing_timeout`: ten minutes.
const DEFAULT_MISSING_TIMEOUT: i64 = 600;

pub(super) fn builder(cx: &mut Cx, loc: &Location, b: &Node) -> Option<BuilderConfig> {
    let Some(name) = cx.opt_string(b.field("name"), "the builder name", loc) else {
        cx.error(loc, "BuilderConfig needs a name");
        return None;
    };
    if name.starts_with('_') {
        cx.error(
            loc,
            format!("builder names must not start with '_': '{name}'"),
        );
    }
    let mut workernames = cx.strings(b.field("workernames"), "workernames", loc);
    if let Some(w) = cx.opt_string(b.field("workername"), "workername", loc) {
        workernames.insert(0, w);
    }
    if workernames.is_empty() {
        cx.error(
            loc,
            format!("builder '{name}' needs at least one worker (workernames=[…])"),
        );
    }
    let safe = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    let builddir = cx
        .opt_string(b.field("builddir"), "builddir", loc)
        .unwrap_or_else(|| safe.clone());
    let workerbuilddir = cx
        .opt_string(b.field("workerbuilddir"), "workerbuilddir", loc)
        .unwrap_or_else(|| builddir.clone());
    let steps = match b.field("factory") {
        Some(f @ Node::Object { kind, .. }) if kind == "BuildFactory" => match f.field("steps") {
            Some(Node::List(items)) => items
                .iter()
                .filter_map(|s| steps::step(cx, loc, s))
                .collect(),
            _ => Vec::new(),
        },
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "builder '{name}': factory must be a util.BuildFactory(), not {}",
                    other.describe()
                ),
            );
            Vec::new()
        }
        None => {
            cx.error(loc, format!("builder '{name}' needs a factory"));
            Vec::new()
        }
    };
    let properties = cx.properties(b.field("properties"), "the builder's properties", loc);
    let tags = cx.strings(b.field("tags"), "tags", loc);
    let env = match b.field("env") {
        None | Some(Node::None) => Vec::new(),
        Some(e) => match cx.renderable(e, "env", loc) {
            Renderable::Map(m) => m,
            _ => {
                cx.error(loc, "env must be a dict");
                Vec::new()
            }
        },
    };
    let description = cx.opt_string(b.field("description"), "description", loc);
    let collapse_requests = collapse(cx, b.field("collapseRequests"), "collapseRequests", loc);
    let hook = |cx: &mut Cx, key: &str| {
        b.field(key)
            .filter(|n| **n != Node::None)
            .and_then(|n| schedulers::function(cx, n, key, loc))
    };
    let next_worker = hook(cx, "nextWorker");
    let next_build = hook(cx, "nextBuild");
    let can_start_build = hook(cx, "canStartBuild");
    let builder_locks = locks::locks(cx, b.field("locks"), "locks", loc);
    for unsupported in ["do_build_if", "project", "defaultProperties"] {
        if b.field(unsupported).is_some_and(|n| *n != Node::None) {
            cx.warn(loc, format!("builder '{name}': {unsupported} is not supported by this version of kiln and is ignored"));
        }
    }
    Some(BuilderConfig {
        name,
        workernames,
        builddir,
        workerbuilddir,
        steps,
        properties,
        tags,
        env,
        description,
        collapse_requests,
        next_worker,
        next_build,
        can_start_build,
        locks: builder_locks,
    })
}

/// `collapseRequests`: `True`, `False` or a function; absent or `None` is `None`.
pub(super) fn collapse(
    cx: &mut Cx,
    node: Option<&Node>,
    what: &str,
    loc: &Location,
) -> Option<Collapse> {
    match node {
        None | Some(Node::None) => None,
        Some(Node::Bool(true)) => Some(Collapse::Default),
        Some(Node::Bool(false)) => Some(Collapse::Never),
        Some(Node::Function(f, _)) => Some(Collapse::Function(*f)),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "{what} must be True, False or a function, not {}",
                    other.describe()
                ),
            );
            None
        }
    }
}
