//! Validation: from the evaluated [`Node`] tree to a [`MasterConfig`], collecting every problem.

use std::collections::BTreeSet;

use crate::model::*;
use crate::node::{Location, Node};
use crate::{Diagnostic, Diagnostics, Severity};

mod auth;
mod builders;
mod changes;
mod cx;
mod force;
mod locks;
mod onmaster;
mod reporters;
mod schedulers;
mod secrets;
mod services;
mod shell;
mod source;
mod status;
mod steps;
mod timed;
mod transfer;
mod trigger;
mod www;
use builders::{builder, collapse, worker};
use cx::{Cx, key_lines, lookup};
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
    "revlink",
    "services",
    "status",
    "secretsProviders",
    "properties",
    "collapseRequests",
    "multiMaster",
    "hiddenEnvironment",
    // Buildbot 0.8's names, read as their modern ones (`legacy_keys`).
    "slaves",
    "slavePortnum",
    "mergeRequests",
];

/// Buildbot 0.8's top-level keys and the modern ones they are read as.
const LEGACY_KEYS: &[(&str, &str)] =
    &[("slaves", "workers"), ("mergeRequests", "collapseRequests")];

/// The top-level entries with Buildbot 0.8's keys renamed, each with a warning; a key set under
/// both names is an error. `c['slavePortnum'] = N` is read as `c['protocols'] = {'pb': {'port': N}}`.
fn legacy_keys(cx: &mut Cx, entries: &[(Node, Node)]) -> Vec<(Node, Node)> {
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let Node::Str(name) = key else {
            out.push((key.clone(), value.clone()));
            continue;
        };
        let loc = cx.key_loc(name);
        if let Some((_, modern)) = LEGACY_KEYS.iter().find(|(old, _)| old == name) {
            if lookup(entries, modern).is_some() {
                cx.error(
                    &loc,
                    format!("c['{name}'] and c['{modern}'] are both set: keep c['{modern}']"),
                );
                continue;
            }
            cx.warn(
                &loc,
                format!("c['{name}'] is Buildbot 0.8's name: write c['{modern}']"),
            );
            out.push((Node::Str(modern.to_string()), value.clone()));
        } else if name == "slavePortnum" {
            if lookup(entries, "protocols").is_some() {
                cx.error(
                    &loc,
                    "c['slavePortnum'] and c['protocols'] are both set: keep c['protocols']",
                );
                continue;
            }
            cx.warn(&loc, "c['slavePortnum'] is Buildbot 0.8's name: write c['protocols'] = {'pb': {'port': ...}}");
            let pb = Node::Dict(vec![(Node::Str("port".into()), value.clone())]);
            let protocols = Node::Dict(vec![(Node::Str("pb".into()), pb)]);
            out.push((Node::Str("protocols".into()), protocols));
        } else {
            out.push((key.clone(), value.clone()));
        }
    }
    out
}

/// Warns, where each was written, about the Buildbot 0.8 names the configuration's objects were
/// made with (noted when they were made).
fn legacy_warnings(cx: &mut Cx, node: &Node) {
    match node {
        Node::Object { loc, fields, .. } => {
            for (name, value) in fields {
                match (name.as_str(), value) {
                    ("_legacy", Node::List(notes)) => {
                        for note in notes {
                            if let Node::Str(note) = note {
                                cx.warn(loc, note.clone());
                            }
                        }
                    }
                    _ => legacy_warnings(cx, value),
                }
            }
        }
        Node::List(items) => items.iter().for_each(|i| legacy_warnings(cx, i)),
        Node::Dict(entries) => entries.iter().for_each(|(_, v)| legacy_warnings(cx, v)),
        _ => {}
    }
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
    legacy_warnings(&mut cx, root);
    let renamed = legacy_keys(&mut cx, entries);
    let entries = &renamed;
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

    let worker_ports = get("protocols")
        .map(|p| protocols(&mut cx, p))
        .unwrap_or_default();

    let status = status::status(&mut cx, get("status"));
    if get("www").is_some() && status.www.is_some() {
        let loc = cx.key_loc("status");
        cx.warn(
            &loc,
            "c['status']: html.WebStatus is ignored because c['www'] is set",
        );
    }
    let www = www::www(&mut cx, get("www").or(status.www.as_ref()));
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

    let multi_master = {
        let loc = cx.key_loc("multiMaster");
        cx.boolean(get("multiMaster"), false, "c['multiMaster']", &loc)
    };
    let hidden_environment = match get("hiddenEnvironment") {
        None => HiddenEnvironment::default(),
        Some(v) => {
            let loc = cx.key_loc("hiddenEnvironment");
            let patterns = cx.strings(Some(v), "c['hiddenEnvironment']", &loc);
            HiddenEnvironment::new(patterns).unwrap_or_else(|e| {
                cx.error(&loc, format!("c['hiddenEnvironment']: {e}"));
                HiddenEnvironment::default()
            })
        }
    };
    // Each with where it was written, for the problems the cross-check finds.
    let workers = objects(&mut cx, get("workers"), "workers", "Worker")
        .into_iter()
        .filter_map(|(loc, w)| worker(&mut cx, &loc, w).map(|w| (loc, w)))
        .collect::<Vec<_>>();
    let builders = objects(&mut cx, get("builders"), "builders", "BuilderConfig")
        .into_iter()
        .filter_map(|(loc, b)| builder(&mut cx, &loc, b).map(|b| (loc, b)))
        .collect::<Vec<_>>();
    let schedulers = objects(&mut cx, get("schedulers"), "schedulers", "")
        .into_iter()
        .filter_map(|(loc, s)| scheduler(&mut cx, &loc, s).map(|s| (loc, s)))
        .collect::<Vec<_>>();
    cross_check(&mut cx, &workers, &builders, &schedulers, multi_master);
    let workers: Vec<WorkerConfig> = workers.into_iter().map(|(_, w)| w).collect();
    let builders: Vec<BuilderConfig> = builders.into_iter().map(|(_, b)| b).collect();
    let schedulers: Vec<SchedulerConfig> = schedulers.into_iter().map(|(_, s)| s).collect();

    let change_sources = changes::change_sources(&mut cx, get("change_source"));
    let mut services = services::services(&mut cx, get("services"));
    services.reporters.extend(status.reporters);
    {
        let loc = cx.key_loc("services");
        reporters::check_names(&mut cx, &loc, &services.reporters);
    }
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
    let revlink = revlink(&mut cx, get("revlink"));

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
        worker_ports,
        www,
        workers,
        builders,
        schedulers,
        change_sources,
        properties,
        collapse_requests,
        multi_master,
        hidden_environment,
        prioritize_builders,
        codebase_generator,
        revlink,
        old_build_cancellers: services.cancellers,
        reporters: services.reporters,
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
                let hint = crate::kinds::did_you_mean(key, KNOWN.iter().chain(NOT_YET).copied());
                cx.error(&loc, format!("unknown configuration key c['{key}']{hint}"));
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

/// `c['protocols']`: the ports of the worker protocols, `pb` and `msgpack_experimental_v7`, each
/// with the address it binds; two protocols named with the same port share it.
fn protocols(cx: &mut Cx, p: &Node) -> Vec<WorkerPort> {
    let mut ports: Vec<WorkerPort> = Vec::new();
    let loc = cx.key_loc("protocols");
    let Node::Dict(protocols) = p else {
        cx.error(
            &loc,
            format!("c['protocols'] must be a dict, not {}", p.describe()),
        );
        return ports;
    };
    for (name, settings) in protocols {
        let name = match name {
            Node::Str(n) if n == "pb" || n == "msgpack_experimental_v7" => n.as_str(),
            Node::Str(n) => {
                cx.error(
                    &loc,
                    format!(
                        "unknown worker protocol {n:?}: kiln serves 'pb' and 'msgpack_experimental_v7'"
                    ),
                );
                continue;
            }
            other => {
                cx.error(
                    &loc,
                    format!("unknown worker protocol {}", other.describe()),
                );
                continue;
            }
        };
        let Node::Dict(settings) = settings else {
            cx.error(
                &loc,
                format!("c['protocols'][{name:?}] must be a dict with a 'port'"),
            );
            continue;
        };
        let Some(port) = lookup(settings, "port") else {
            cx.error(&loc, format!("c['protocols'][{name:?}] needs a 'port'"));
            continue;
        };
        let Some(listen) = cx.listen(port, "the worker port", &loc) else {
            continue;
        };
        let index = match ports
            .iter()
            .position(|w| w.port == listen.port && w.interface == listen.interface)
        {
            // Both protocols on one port share its socket, so they share its TLS too.
            Some(i) if ports[i].tls != listen.tls => {
                cx.error(
                    &loc,
                    format!(
                        "c['protocols'] names port {} for both protocols, once with TLS \
                         ('ssl:') and once without, or with other files: one port serves \
                         TLS to all its workers or to none",
                        listen.port
                    ),
                );
                continue;
            }
            Some(i) => i,
            None => {
                ports.push(WorkerPort {
                    port: listen.port,
                    interface: listen.interface,
                    msgpack: false,
                    pb: false,
                    tls: listen.tls,
                });
                ports.len() - 1
            }
        };
        if name == "pb" {
            ports[index].pb = true;
        } else {
            ports[index].msgpack = true;
        }
    }
    ports
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

/// Checks the names objects give each other, reporting each problem where the object at fault was
/// written. With `multi_master`, as in Buildbot, a scheduler may name a builder of another master,
/// and a builder needs no scheduler here.
fn cross_check(
    cx: &mut Cx,
    workers: &[(Location, WorkerConfig)],
    builders: &[(Location, BuilderConfig)],
    schedulers: &[(Location, SchedulerConfig)],
    multi_master: bool,
) {
    let mut seen = BTreeSet::new();
    for (loc, w) in workers {
        if !seen.insert(w.name.as_str()) {
            cx.error(loc, format!("worker '{}' is defined twice", w.name));
        }
    }
    let mut names = BTreeSet::new();
    for (loc, b) in builders {
        if !names.insert(b.name.as_str()) {
            cx.error(loc, format!("builder '{}' is defined twice", b.name));
        }
        for w in &b.workernames {
            if !seen.contains(w.as_str()) {
                let hint = crate::kinds::did_you_mean(w, seen.iter().copied());
                cx.error(
                    loc,
                    format!("builder '{}' uses unknown worker '{w}'{hint}", b.name),
                );
            }
        }
    }
    let mut snames = BTreeSet::new();
    let mut driven = BTreeSet::new();
    for (loc, s) in schedulers {
        if !snames.insert(s.name()) {
            cx.error(loc, format!("scheduler '{}' is defined twice", s.name()));
        }
        for b in s.builder_names() {
            driven.insert(b.as_str());
            if !multi_master && !names.contains(b.as_str()) {
                let hint = crate::kinds::did_you_mean(b, names.iter().copied());
                cx.error(
                    loc,
                    format!("scheduler '{}' names unknown builder '{b}'{hint}", s.name()),
                );
            }
        }
    }
    // As in Buildbot, builders a scheduler renders could be any of them.
    let rendered = schedulers
        .iter()
        .any(|(_, s)| s.rendered_builder_names().is_some());
    if !multi_master && !rendered {
        for (loc, b) in builders {
            if !driven.contains(b.name.as_str()) {
                cx.warn(
                    loc,
                    format!("builder '{}' has no scheduler to drive it", b.name),
                );
            }
        }
    }
    for (loc, s) in schedulers {
        if let SchedulerConfig::Dependent(d) = s
            && !snames.contains(d.upstream.as_str())
        {
            cx.error(
                loc,
                format!(
                    "scheduler '{}' depends on unknown scheduler '{}'",
                    d.name, d.upstream
                ),
            );
        }
    }
    let all_locks: Vec<&LockAccess> = builders
        .iter()
        .flat_map(|(_, b)| {
            b.locks
                .iter()
                .chain(b.steps.iter().flat_map(|s| s.locks.iter()))
        })
        .collect();
    let loc = cx.key_loc("builders");
    locks::check_consistent(cx, &all_locks, &loc);
    // A Trigger step can only trigger schedulers that take triggers.
    for (loc, b) in builders {
        for step in &b.steps {
            let StepKind::Trigger(t) = &step.kind else {
                continue;
            };
            for name in &t.scheduler_names {
                match schedulers.iter().find(|(_, s)| s.name() == name).map(|(_, s)| s) {
                    Some(SchedulerConfig::Triggerable(_)) => {}
                    Some(SchedulerConfig::Timed(t)) if t.triggerable => {}
                    Some(_) => cx.error(
                        loc,
                        format!("builder '{}': Trigger step '{}' names scheduler '{name}', which is not a Triggerable scheduler", b.name, step.name),
                    ),
                    None => cx.error(
                        loc,
                        format!("builder '{}': Trigger step '{}' names unknown scheduler '{name}'", b.name, step.name),
                    ),
                }
            }
        }
    }
}

/// `c['revlink']`: a function of the revision and the repository, or `util.RevlinkMatch`.
fn revlink(cx: &mut Cx, node: Option<&Node>) -> Option<Revlink> {
    let node = node.filter(|n| **n != Node::None)?;
    let loc = cx.key_loc("revlink");
    match node {
        Node::Object { kind, .. } if kind == "RevlinkMatch" => {
            let repo_urls = cx.strings(node.field("repo_urls"), "RevlinkMatch's repo_urls", &loc);
            let Some(template) =
                cx.opt_string(node.field("revlink"), "RevlinkMatch's revlink", &loc)
            else {
                cx.error(&loc, "util.RevlinkMatch needs revlink, the URL to make");
                return None;
            };
            for url in &repo_urls {
                if let Err(e) = regex::Regex::new(url) {
                    cx.error(&loc, format!("RevlinkMatch's repo_urls pattern {url:?} is not a regular expression: {e}"));
                }
            }
            Some(Revlink::Match {
                repo_urls,
                template,
            })
        }
        _ => schedulers::function(cx, node, "c['revlink']", &loc).map(Revlink::Function),
    }
}
