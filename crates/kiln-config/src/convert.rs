//! Validation: from the evaluated [`Node`] tree to a [`MasterConfig`], collecting every problem.

use std::collections::{BTreeMap, BTreeSet};

use kiln_core::PropertyValue;
use kiln_core::render::Renderable;

use crate::model::*;
use crate::node::{Location, Node};
use crate::{Diagnostic, Diagnostics, Severity};

mod changes;
mod force;
mod locks;
mod schedulers;
mod secrets;
mod services;
mod shell;
mod source;
mod steps;
mod timed;
mod trigger;
mod www;
use schedulers::scheduler;

/// Top-level keys Buildbot knows that kiln does not act on yet: accepted with a warning.
const NOT_YET: &[&str] = &[
    "buildbotNetUsageData",
    "buildCacheSize",
    "caches",
    "codebases",
    "configurators",
    "changeCacheSize",
    "changeHorizon",
    "logCompressionLimit",
    "logCompressionMethod",
    "logEncoding",
    "logMaxSize",
    "logMaxTailSize",
    "manhole",
    "machines",
    "metrics",
    "mq",
    "projects",
    "revlink",
    "select_next_worker",
    "user_managers",
    "validation",
];

const KNOWN: &[&str] = &[
    "title",
    "titleURL",
    "buildbotURL",
    "db",
    "db_url",
    "protocols",
    "www",
    "workers",
    "builders",
    "schedulers",
    "change_source",
    "prioritizeBuilders",
    "codebaseGenerator",
    "services",
    "secretsProviders",
    "properties",
    "collapseRequests",
    "multiMaster",
];

struct Cx<'a> {
    file: &'a str,
    diags: Vec<Diagnostic>,
    /// Where each top-level key is first assigned, found in the source text.
    key_lines: BTreeMap<String, Location>,
}

impl Cx<'_> {
    fn error(&mut self, loc: &Location, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(loc.clone(), msg.into()));
    }
    fn warn(&mut self, loc: &Location, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(loc.clone(), msg.into()));
    }
    fn key_loc(&self, key: &str) -> Location {
        self.key_lines.get(key).cloned().unwrap_or(Location {
            file: self.file.to_string(),
            line: 1,
            column: 1,
        })
    }

    fn string(&mut self, node: &Node, what: &str, loc: &Location) -> Option<String> {
        match node {
            Node::Str(s) => Some(s.clone()),
            other => {
                self.error(
                    loc,
                    format!("{what} must be a string, not {}", other.describe()),
                );
                None
            }
        }
    }

    fn opt_string(&mut self, node: Option<&Node>, what: &str, loc: &Location) -> Option<String> {
        match node {
            None | Some(Node::None) => None,
            Some(n) => self.string(n, what, loc),
        }
    }

    fn int(&mut self, node: &Node, what: &str, loc: &Location) -> Option<i64> {
        match node {
            Node::Int(i) => Some(*i),
            other => {
                self.error(
                    loc,
                    format!("{what} must be an int, not {}", other.describe()),
                );
                None
            }
        }
    }

    fn number(&mut self, node: Option<&Node>, what: &str, loc: &Location) -> Option<f64> {
        match node {
            None | Some(Node::None) => None,
            Some(Node::Int(i)) => Some(*i as f64),
            Some(Node::Float(f)) => Some(*f),
            Some(other) => {
                self.error(
                    loc,
                    format!("{what} must be a number, not {}", other.describe()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, node: Option<&Node>, default: bool, what: &str, loc: &Location) -> bool {
        match node {
            None | Some(Node::None) => default,
            Some(Node::Bool(b)) => *b,
            Some(other) => {
                self.error(
                    loc,
                    format!("{what} must be True or False, not {}", other.describe()),
                );
                default
            }
        }
    }

    fn strings(&mut self, node: Option<&Node>, what: &str, loc: &Location) -> Vec<String> {
        match node {
            None | Some(Node::None) => Vec::new(),
            Some(Node::List(items)) => items
                .iter()
                .filter_map(|i| self.string(i, what, loc))
                .collect(),
            Some(Node::Str(s)) => vec![s.clone()],
            Some(other) => {
                self.error(
                    loc,
                    format!("{what} must be a list of strings, not {}", other.describe()),
                );
                Vec::new()
            }
        }
    }

    fn port(&mut self, node: &Node, what: &str, loc: &Location) -> Option<u16> {
        let n = match node {
            Node::Int(i) => Some(*i),
            // Buildbot also accepts strports such as "tcp:8010" or "tcp:8010:interface=127.0.0.1".
            Node::Str(s) => s.split(':').find_map(|p| p.parse::<i64>().ok()),
            _ => None,
        };
        match n.and_then(|n| u16::try_from(n).ok()) {
            Some(p) => Some(p),
            None => {
                self.error(
                    loc,
                    format!("{what} must be a port number, not {}", node.describe()),
                );
                None
            }
        }
    }

    fn value(&mut self, node: &Node, what: &str, loc: &Location) -> PropertyValue {
        match node {
            Node::None => PropertyValue::Null,
            Node::Bool(b) => PropertyValue::Bool(*b),
            Node::Int(i) => PropertyValue::Int(*i),
            Node::Float(f) => PropertyValue::Float(*f),
            Node::Str(s) => PropertyValue::Str(s.clone()),
            Node::List(items) => {
                PropertyValue::List(items.iter().map(|i| self.value(i, what, loc)).collect())
            }
            Node::Dict(entries) => {
                let mut map = BTreeMap::new();
                for (k, v) in entries {
                    if let Some(k) = self.string(k, &format!("a key of {what}"), loc) {
                        let v = self.value(v, what, loc);
                        map.insert(k, v);
                    }
                }
                PropertyValue::Map(map)
            }
            other => {
                self.error(
                    loc,
                    format!("{what} must be plain data, not {}", other.describe()),
                );
                PropertyValue::Null
            }
        }
    }

    fn properties(
        &mut self,
        node: Option<&Node>,
        what: &str,
        loc: &Location,
    ) -> BTreeMap<String, PropertyValue> {
        match node {
            None | Some(Node::None) => BTreeMap::new(),
            Some(n @ Node::Dict(_)) => match self.value(n, what, loc) {
                PropertyValue::Map(m) => m,
                _ => BTreeMap::new(),
            },
            Some(other) => {
                self.error(
                    loc,
                    format!("{what} must be a dict, not {}", other.describe()),
                );
                BTreeMap::new()
            }
        }
    }

    fn renderable(&mut self, node: &Node, what: &str, loc: &Location) -> Renderable {
        match node {
            Node::List(items) => Renderable::List(
                items
                    .iter()
                    .map(|i| self.renderable(i, what, loc))
                    .collect(),
            ),
            Node::Dict(entries) => {
                let mut out = Vec::new();
                for (k, v) in entries {
                    if let Some(k) = self.string(k, &format!("a key of {what}"), loc) {
                        let v = self.renderable(v, what, loc);
                        out.push((k, v));
                    }
                }
                Renderable::Map(out)
            }
            Node::Object { kind, loc: at, .. } if kind == "Property" => {
                let name = node
                    .field("key")
                    .and_then(|n| self.string(n, "Property's name", at))
                    .unwrap_or_default();
                let default = node
                    .field("default")
                    .map(|d| Box::new(self.renderable(d, what, at)));
                let default_when_false = self.boolean(
                    node.field("defaultWhenFalse"),
                    false,
                    "defaultWhenFalse",
                    at,
                );
                Renderable::Property {
                    name,
                    default,
                    default_when_false,
                }
            }
            Node::Object {
                kind,
                loc: at,
                fields,
            } if kind == "Interpolate" => {
                let format = node
                    .field("fmtstring")
                    .and_then(|n| self.string(n, "Interpolate's format", at))
                    .unwrap_or_default();
                let kwargs = fields
                    .iter()
                    .filter(|(k, _)| k != "fmtstring")
                    .map(|(k, v)| (k.clone(), self.renderable(v, what, at)))
                    .collect();
                Renderable::Interpolate { format, kwargs }
            }
            Node::Object { kind, loc: at, .. } if kind == "Renderer" => {
                match (node.field("call"), node.field("func")) {
                    (Some(Node::Function(call, _)), Some(Node::Function(func, _))) => {
                        Renderable::Renderer {
                            call: *call,
                            func: *func,
                        }
                    }
                    (_, other) => {
                        self.error(
                            at,
                            format!(
                                "util.renderer takes a function, not {}",
                                other.map_or("nothing".into(), Node::describe)
                            ),
                        );
                        Renderable::Literal(PropertyValue::Null)
                    }
                }
            }
            Node::Object { kind, loc: at, .. } if kind == "Transform" => {
                let Some(Node::Function(func, _)) = node.field("func") else {
                    self.error(at, "util.Transform takes a function first");
                    return Renderable::Literal(PropertyValue::Null);
                };
                let args = match node.field("args") {
                    Some(Node::List(items)) => {
                        items.iter().map(|a| self.renderable(a, what, at)).collect()
                    }
                    _ => Vec::new(),
                };
                let kwargs = match node.field("kwargs") {
                    Some(Node::Dict(entries)) => entries
                        .iter()
                        .filter_map(|(k, v)| {
                            let k = self.string(k, "a keyword of util.Transform", at)?;
                            Some((k, self.renderable(v, what, at)))
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                Renderable::Transform {
                    func: *func,
                    args,
                    kwargs,
                }
            }
            Node::Object { kind, loc: at, .. } if kind == "FlattenList" => {
                let inner = node
                    .field("nestedlist")
                    .map(|n| self.renderable(n, what, at))
                    .unwrap_or(Renderable::List(Vec::new()));
                Renderable::FlattenList(Box::new(inner))
            }
            other => Renderable::Literal(self.value(other, what, loc)),
        }
    }
}

fn lookup<'n>(entries: &'n [(Node, Node)], key: &str) -> Option<&'n Node> {
    entries
        .iter()
        .find(|(k, _)| matches!(k, Node::Str(s) if s == key))
        .map(|(_, v)| v)
}

/// Finds where `c['key']` / `BuildmasterConfig["key"]` is first assigned, for messages about plain
/// values that carry no location of their own.
fn key_lines(file: &str, source: &str) -> BTreeMap<String, Location> {
    let mut out = BTreeMap::new();
    for (n, line) in source.lines().enumerate() {
        for quote in ['\'', '"'] {
            let mut rest = line;
            while let Some(i) = rest.find(&format!("[{quote}")) {
                let after = &rest[i + 2..];
                if let Some(end) = after.find(&format!("{quote}]")) {
                    let key = &after[..end];
                    let column = line.len() - rest.len() + i + 1;
                    out.entry(key.to_string()).or_insert(Location {
                        file: file.to_string(),
                        line: n + 1,
                        column,
                    });
                }
                rest = after;
            }
        }
    }
    out
}

pub fn master_config(file: &str, source: &str, root: &Node) -> Result<MasterConfig, Diagnostics> {
    let mut cx = Cx {
        file,
        diags: Vec::new(),
        key_lines: key_lines(file, source),
    };
    let top = Location {
        file: file.to_string(),
        line: 1,
        column: 1,
    };
    let Node::Dict(entries) = root else {
        return Err(Diagnostics(vec![Diagnostic::error(
            top,
            format!("BuildmasterConfig must be a dict, not {}", root.describe()),
        )]));
    };
    check_keys(&mut cx, entries, &top);
    let get = |key: &str| lookup(entries, key);

    let text = |cx: &mut Cx, key: &str, default: &str| -> String {
        let loc = cx.key_loc(key);
        cx.opt_string(get(key), &format!("c['{key}']"), &loc)
            .unwrap_or_else(|| default.to_string())
    };
    let title = text(&mut cx, "title", "kiln");
    let title_url = text(&mut cx, "titleURL", "");
    let mut buildbot_url = text(&mut cx, "buildbotURL", "");

    let db_url = db_url(&mut cx, get("db"), get("db_url"));

    let worker_port = get("protocols").and_then(|p| protocols(&mut cx, p));

    let www = www::www(&mut cx, get("www"));
    if buildbot_url.is_empty() {
        buildbot_url = format!("http://localhost:{}/", www.port.unwrap_or(8010));
    }

    let properties = {
        let loc = cx.key_loc("properties");
        cx.properties(get("properties"), "c['properties']", &loc)
    };
    let collapse_requests = {
        let loc = cx.key_loc("collapseRequests");
        collapse(
            &mut cx,
            get("collapseRequests"),
            "c['collapseRequests']",
            &loc,
        )
        .unwrap_or(Collapse::Default)
    };

    let workers = objects(&mut cx, get("workers"), "workers", "Worker")
        .into_iter()
        .filter_map(|(loc, w)| worker(&mut cx, &loc, w))
        .collect::<Vec<_>>();
    let builders = objects(&mut cx, get("builders"), "builders", "BuilderConfig")
        .into_iter()
        .filter_map(|(loc, b)| builder(&mut cx, &loc, b))
        .collect::<Vec<_>>();
    let schedulers = objects(&mut cx, get("schedulers"), "schedulers", "")
        .into_iter()
        .filter_map(|(loc, s)| scheduler(&mut cx, &loc, s))
        .collect::<Vec<_>>();

    let change_sources = changes::change_sources(&mut cx, get("change_source"));
    let old_build_cancellers = services::services(&mut cx, get("services"));
    let secrets_providers = secrets::providers(&mut cx, get("secretsProviders"));
    let codebase_generator = get("codebaseGenerator")
        .filter(|n| **n != Node::None)
        .and_then(|n| {
            let loc = cx.key_loc("codebaseGenerator");
            schedulers::function(&mut cx, n, "c['codebaseGenerator']", &loc)
        });
    let prioritize_builders = get("prioritizeBuilders")
        .filter(|n| **n != Node::None)
        .and_then(|n| {
            let loc = cx.key_loc("prioritizeBuilders");
            schedulers::function(&mut cx, n, "c['prioritizeBuilders']", &loc)
        });
    cross_check(&mut cx, &workers, &builders, &schedulers);

    let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) = cx
        .diags
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if !errors.is_empty() {
        let mut all = errors;
        all.extend(warnings);
        return Err(Diagnostics(all));
    }
    Ok(MasterConfig {
        title,
        title_url,
        buildbot_url,
        db_url,
        worker_port,
        www,
        workers,
        builders,
        schedulers,
        change_sources,
        properties,
        collapse_requests,
        prioritize_builders,
        codebase_generator,
        old_build_cancellers,
        secrets_providers,
        warnings,
        functions: Default::default(),
    })
}

/// Every top-level key is one kiln knows: Buildbot's keys that kiln does not act on yet are
/// warnings, anything else an error.
fn check_keys(cx: &mut Cx, entries: &[(Node, Node)], top: &Location) {
    for (k, _) in entries {
        match k {
            Node::Str(key) if KNOWN.contains(&key.as_str()) => {}
            Node::Str(key) if NOT_YET.contains(&key.as_str()) => {
                let loc = cx.key_loc(key);
                cx.warn(
                    &loc,
                    format!("c['{key}'] is not supported by this version of kiln and is ignored"),
                );
            }
            Node::Str(key) => {
                let loc = cx.key_loc(key);
                cx.error(&loc, format!("unknown configuration key c['{key}']"));
            }
            other => cx.error(
                top,
                format!(
                    "configuration keys must be strings, not {}",
                    other.describe()
                ),
            ),
        }
    }
}

/// `c['db']['db_url']` (or the older `c['db_url']`), SQLite in the master's directory by default.
fn db_url(cx: &mut Cx, db: Option<&Node>, old: Option<&Node>) -> String {
    match (db, old) {
        (Some(Node::Dict(db)), _) => {
            let loc = cx.key_loc("db");
            lookup(db, "db_url").and_then(|u| cx.string(u, "c['db']['db_url']", &loc))
        }
        (Some(other), _) => {
            let loc = cx.key_loc("db");
            cx.error(
                &loc,
                format!("c['db'] must be a dict, not {}", other.describe()),
            );
            None
        }
        (None, Some(u)) => {
            let loc = cx.key_loc("db_url");
            cx.string(u, "c['db_url']", &loc)
        }
        (None, None) => None,
    }
    .unwrap_or_else(|| "sqlite:///state.sqlite".to_string())
}

/// `c['protocols']`: the port of the worker protocol kiln speaks.
fn protocols(cx: &mut Cx, p: &Node) -> Option<u16> {
    let mut worker_port = None;
    let loc = cx.key_loc("protocols");
    match p {
        Node::Dict(protocols) => {
            for (name, settings) in protocols {
                match (name, settings) {
                    (Node::Str(n), Node::Dict(s)) if n == "msgpack_experimental_v7" => {
                        match lookup(s, "port") {
                            Some(port) => worker_port = cx.port(port, "the worker port", &loc),
                            None => cx.error(&loc, "c['protocols']['msgpack_experimental_v7'] needs a 'port'"),
                        }
                    }
                    (Node::Str(n), _) if n == "pb" => cx.error(
                        &loc,
                        "kiln speaks Buildbot's msgpack_experimental_v7 worker protocol, not 'pb': configure \
                         c['protocols'] = {'msgpack_experimental_v7': {'port': 9989}} and create workers with \
                         --protocol msgpack_experimental_v7",
                    ),
                    (n, _) => cx.error(&loc, format!("unknown worker protocol {}", match n { Node::Str(s) => s.clone(), o => o.describe() })),
                }
            }
        }
        other => cx.error(
            &loc,
            format!("c['protocols'] must be a dict, not {}", other.describe()),
        ),
    }
    worker_port
}

/// The objects of a list-valued key, each with its location; `kind` empty means any kind.
fn objects<'n>(
    cx: &mut Cx,
    node: Option<&'n Node>,
    key: &str,
    kind: &str,
) -> Vec<(Location, &'n Node)> {
    let loc = cx.key_loc(key);
    match node {
        None | Some(Node::None) => Vec::new(),
        Some(Node::List(items)) => items
            .iter()
            .filter_map(|item| match item {
                Node::Object { kind: k, loc, .. } if kind.is_empty() || k == kind => {
                    Some((loc.clone(), item))
                }
                other => {
                    let want = if kind.is_empty() {
                        "scheduler".to_string()
                    } else {
                        kind.to_string()
                    };
                    cx.error(
                        &loc,
                        format!(
                            "c['{key}'] must hold {want} objects, not {}",
                            other.describe()
                        ),
                    );
                    None
                }
            })
            .collect(),
        Some(other) => {
            cx.error(
                &loc,
                format!("c['{key}'] must be a list, not {}", other.describe()),
            );
            Vec::new()
        }
    }
}

fn worker(cx: &mut Cx, loc: &Location, w: &Node) -> Option<WorkerConfig> {
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
    for unsupported in [
        "defaultProperties",
        "notify_on_missing",
        "missing_timeout",
        "keepalive_interval",
        "locks",
        "machine_name",
    ] {
        if w.field(unsupported).is_some_and(|n| *n != Node::None) {
            cx.warn(loc, format!("worker '{name}': {unsupported} is not supported by this version of kiln and is ignored"));
        }
    }
    Some(WorkerConfig {
        name,
        password,
        max_builds,
        properties,
    })
}

fn builder(cx: &mut Cx, loc: &Location, b: &Node) -> Option<BuilderConfig> {
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
fn collapse(cx: &mut Cx, node: Option<&Node>, what: &str, loc: &Location) -> Option<Collapse> {
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

/// The change hook dialects kiln implements.
const DIALECTS: &[&str] = &[
    "base",
    "bitbucketcloud",
    "bitbucketserver",
    "gitea",
    "github",
    "gitlab",
    "poller",
];

fn cross_check(
    cx: &mut Cx,
    workers: &[WorkerConfig],
    builders: &[BuilderConfig],
    schedulers: &[SchedulerConfig],
) {
    let top = cx.key_loc("workers");
    let mut seen = BTreeSet::new();
    for w in workers {
        if !seen.insert(w.name.as_str()) {
            cx.error(&top, format!("worker '{}' is defined twice", w.name));
        }
    }
    let loc = cx.key_loc("builders");
    let mut names = BTreeSet::new();
    for b in builders {
        if !names.insert(b.name.as_str()) {
            cx.error(&loc, format!("builder '{}' is defined twice", b.name));
        }
        for w in &b.workernames {
            if !seen.contains(w.as_str()) {
                cx.error(
                    &loc,
                    format!("builder '{}' uses unknown worker '{w}'", b.name),
                );
            }
        }
    }
    let loc = cx.key_loc("schedulers");
    let mut snames = BTreeSet::new();
    for s in schedulers {
        if !snames.insert(s.name()) {
            cx.error(&loc, format!("scheduler '{}' is defined twice", s.name()));
        }
        for b in s.builder_names() {
            if !names.contains(b.as_str()) {
                cx.error(
                    &loc,
                    format!("scheduler '{}' names unknown builder '{b}'", s.name()),
                );
            }
        }
    }
    for s in schedulers {
        if let SchedulerConfig::Dependent(d) = s
            && !snames.contains(d.upstream.as_str())
        {
            cx.error(
                &loc,
                format!(
                    "scheduler '{}' depends on unknown scheduler '{}'",
                    d.name, d.upstream
                ),
            );
        }
    }
    let all_locks: Vec<&LockAccess> = builders
        .iter()
        .flat_map(|b| {
            b.locks
                .iter()
                .chain(b.steps.iter().flat_map(|s| s.locks.iter()))
        })
        .collect();
    let loc = cx.key_loc("builders");
    locks::check_consistent(cx, &all_locks, &loc);
    // A Trigger step can only trigger schedulers that take triggers.
    let loc = cx.key_loc("builders");
    for b in builders {
        for step in &b.steps {
            let StepKind::Trigger(t) = &step.kind else {
                continue;
            };
            for name in &t.scheduler_names {
                match schedulers.iter().find(|s| s.name() == name) {
                    Some(SchedulerConfig::Triggerable(_)) => {}
                    Some(SchedulerConfig::Timed(t)) if t.triggerable => {}
                    Some(_) => cx.error(
                        &loc,
                        format!("builder '{}': Trigger step '{}' names scheduler '{name}', which is not a Triggerable scheduler", b.name, step.name),
                    ),
                    None => cx.error(
                        &loc,
                        format!("builder '{}': Trigger step '{}' names unknown scheduler '{name}'", b.name, step.name),
                    ),
                }
            }
        }
    }
}
