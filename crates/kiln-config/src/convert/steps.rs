//! Build steps in the configuration: the flags every step takes, and each step kind's arguments.

use kiln_core::render::Renderable;
use kiln_core::step::StepFlags;

use super::{Cx, locks, schedulers, shell, trigger};
use crate::model::*;
use crate::node::{Location, Node};

/// The largest transfer block: a block travels in one protocol frame, which the master bounds.
const MAX_BLOCKSIZE: u64 = 4 << 20;

pub(super) fn step(cx: &mut Cx, builder_loc: &Location, s: &Node) -> Option<StepConfig> {
    let Node::Object { kind, loc, .. } = s else {
        cx.error(
            builder_loc,
            format!("a build factory holds steps, not {}", s.describe()),
        );
        return None;
    };
    let loc = &loc.clone();
    // Transfers and source steps halt the build when they fail, as in Buildbot.
    let transfer = matches!(
        kind.as_str(),
        "FileUpload"
            | "DirectoryUpload"
            | "FileDownload"
            | "StringDownload"
            | "MultipleFileUpload"
            | "JSONStringDownload"
            | "JSONPropertiesDownload"
    ) || super::source::KINDS.contains(&kind.as_str());
    let default_name = match kind.as_str() {
        "ShellCommand" => "shell",
        "SetPropertyFromCommand" => "SetPropertyFromCommand",
        "Git" => "git",
        "Mercurial" => "hg",
        "SVN" => "svn",
        "CVS" => "cvs",
        "Darcs" => "darcs",
        "Bzr" => "bzr",
        "Arch" => "arch",
        "P4" => "p4",
        "Monotone" => "monotone",
        "FileUpload" | "DirectoryUpload" => "upload",
        "FileDownload" => "download",
        "StringDownload" => "string_download",
        "Trigger" => "trigger",
        "MultipleFileUpload" => "upload",
        "JSONStringDownload" | "JSONPropertiesDownload" => "download",
        "MasterShellCommand" => "MasterShellCommand",
        "HTTPStep" | "POST" | "GET" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" => "HTTPStep",
        "Configure" => "configure",
        "Compile" => "compile",
        "Test" => "test",
        other => other,
    };
    let name = cx
        .opt_string(s.field("name"), "the step name", loc)
        .unwrap_or_else(|| default_name.to_string());
    let defaults = StepFlags {
        halt_on_failure: transfer || kind == "Configure" || kind == "Compile",
        warn_on_failure: kind == "Test",
        ..StepFlags::default()
    };
    let flags = StepFlags {
        halt_on_failure: cx.boolean(
            s.field("haltOnFailure"),
            defaults.halt_on_failure,
            "haltOnFailure",
            loc,
        ),
        flunk_on_warnings: cx.boolean(
            s.field("flunkOnWarnings"),
            defaults.flunk_on_warnings,
            "flunkOnWarnings",
            loc,
        ),
        flunk_on_failure: cx.boolean(
            s.field("flunkOnFailure"),
            defaults.flunk_on_failure,
            "flunkOnFailure",
            loc,
        ),
        warn_on_warnings: cx.boolean(
            s.field("warnOnWarnings"),
            defaults.warn_on_warnings,
            "warnOnWarnings",
            loc,
        ),
        warn_on_failure: cx.boolean(
            s.field("warnOnFailure"),
            defaults.warn_on_failure,
            "warnOnFailure",
            loc,
        ),
        always_run: cx.boolean(s.field("alwaysRun"), defaults.always_run, "alwaysRun", loc),
    };
    let workdir = s
        .field("workdir")
        .filter(|n| **n != Node::None)
        .map(|w| cx.renderable(w, "workdir", loc));
    let description = describe(cx, s.field("description"), loc);
    let description_done = describe(cx, s.field("descriptionDone"), loc);
    let step_locks = locks::locks(cx, s.field("locks"), "locks", loc);
    let do_step_if = condition(cx, s.field("doStepIf"), true, "doStepIf", loc);
    let hide_step_if = condition(cx, s.field("hideStepIf"), false, "hideStepIf", loc);
    let required = |cx: &mut Cx, field: &str| -> Option<Renderable> {
        match s.field(field) {
            None | Some(Node::None) => {
                cx.error(loc, format!("{kind} step '{name}' needs {field}"));
                None
            }
            Some(n) => Some(cx.renderable(n, field, loc)),
        }
    };
    let size = |cx: &mut Cx, field: &str| -> Option<u64> {
        let v = cx
            .number(s.field(field), field, loc)
            .and_then(|v| (v >= 0.0).then_some(v as u64));
        if field == "blocksize" && v.is_some_and(|b| b == 0 || b > MAX_BLOCKSIZE) {
            cx.error(
                loc,
                format!("blocksize must be between 1 and {MAX_BLOCKSIZE} bytes"),
            );
            return None;
        }
        v
    };
    let mode =
        |cx: &mut Cx| -> Option<u32> { cx.number(s.field("mode"), "mode", loc).map(|m| m as u32) };
    let kind = match kind.as_str() {
        "ShellCommand" => StepKind::ShellCommand(shell::shell(cx, s, loc, &name, None)?),
        "Configure" => {
            StepKind::ShellCommand(shell::shell(cx, s, loc, &name, Some(&["./configure"]))?)
        }
        "Compile" | "Test" | "WarningCountingShellCommand" => {
            StepKind::WarningCounting(Box::new(shell::warning_counting(cx, kind, s, loc, &name)?))
        }
        "ShellSequence" => StepKind::ShellSequence(Box::new(shell::sequence(cx, s, loc, &name)?)),
        k if super::source::KINDS.contains(&k) => super::source::source(cx, k, s, loc, &name)?,
        "SetProperty" => {
            let Some(property) = cx.opt_string(s.field("property"), "property", loc) else {
                cx.error(
                    loc,
                    format!("SetProperty step '{name}' needs a property name"),
                );
                return None;
            };
            StepKind::SetProperty {
                property,
                value: required(cx, "value")?,
            }
        }
        "SetProperties" => StepKind::SetProperties {
            properties: required(cx, "properties")?,
        },
        "SetPropertyFromCommand" => {
            let property = cx.opt_string(s.field("property"), "property", loc);
            let extract_fn = s
                .field("extract_fn")
                .filter(|n| **n != Node::None)
                .and_then(|n| schedulers::function(cx, n, "extract_fn", loc));
            if property.is_some() == extract_fn.is_some() {
                cx.error(
                    loc,
                    format!("SetPropertyFromCommand step '{name}': give exactly one of property and extract_fn"),
                );
                return None;
            }
            StepKind::SetPropertyFromCommand(Box::new(SetPropertyFromCommandConfig {
                shell: shell::shell(cx, s, loc, &name, None)?,
                property,
                extract_fn,
                strip: cx.boolean(s.field("strip"), true, "strip", loc),
            }))
        }
        "FileUpload" => StepKind::FileUpload {
            workersrc: required(cx, "workersrc")?,
            masterdest: required(cx, "masterdest")?,
            mode: mode(cx),
            maxsize: size(cx, "maxsize"),
            blocksize: size(cx, "blocksize").unwrap_or(262_144),
            keepstamp: cx.boolean(s.field("keepstamp"), false, "keepstamp", loc),
            url: cx.opt_string(s.field("url"), "url", loc),
            url_text: cx.opt_string(s.field("urlText"), "urlText", loc),
        },
        "DirectoryUpload" => StepKind::DirectoryUpload {
            workersrc: required(cx, "workersrc")?,
            masterdest: required(cx, "masterdest")?,
            maxsize: size(cx, "maxsize"),
            blocksize: size(cx, "blocksize").unwrap_or(16_384),
            compress: compress(cx, s.field("compress"), loc),
        },
        "FileDownload" => StepKind::FileDownload {
            mastersrc: required(cx, "mastersrc")?,
            workerdest: required(cx, "workerdest")?,
            mode: mode(cx),
            maxsize: size(cx, "maxsize"),
            blocksize: size(cx, "blocksize").unwrap_or(16_384),
        },
        "StringDownload" => StepKind::StringDownload {
            s: required(cx, "s")?,
            workerdest: required(cx, "workerdest")?,
            mode: mode(cx),
            maxsize: size(cx, "maxsize"),
            blocksize: size(cx, "blocksize").unwrap_or(16_384),
        },
        "FileExists" => StepKind::FileExists {
            file: required(cx, "file")?,
        },
        "CopyDirectory" => StepKind::CopyDirectory {
            src: required(cx, "src")?,
            dest: required(cx, "dest")?,
            timeout: match s.field("timeout") {
                None => Some(120.0),
                other => cx.number(other, "timeout", loc),
            },
            max_time: cx.number(s.field("maxTime"), "maxTime", loc),
        },
        "MultipleFileUpload" => StepKind::MultipleFileUpload(Box::new(MultipleFileUploadConfig {
            workersrcs: required(cx, "workersrcs")?,
            masterdest: required(cx, "masterdest")?,
            maxsize: size(cx, "maxsize"),
            blocksize: size(cx, "blocksize").unwrap_or(16_384),
            mode: mode(cx),
            keepstamp: cx.boolean(s.field("keepstamp"), false, "keepstamp", loc),
            glob: cx.boolean(s.field("glob"), false, "glob", loc),
            compress: compress(cx, s.field("compress"), loc),
            url: cx.opt_string(s.field("url"), "url", loc),
            url_text: cx.opt_string(s.field("urlText"), "urlText", loc),
        })),
        "JSONStringDownload" | "JSONPropertiesDownload" => StepKind::JsonDownload {
            value: if kind == "JSONStringDownload" {
                Some(required(cx, "o")?)
            } else {
                None
            },
            workerdest: required(cx, "workerdest")?,
            mode: mode(cx),
            maxsize: size(cx, "maxsize"),
            blocksize: size(cx, "blocksize").unwrap_or(16_384),
        },
        "MasterShellCommand" => StepKind::MasterShellCommand(Box::new(MasterShellCommandConfig {
            command: required(cx, "command")?,
            env: match s.field("env") {
                None | Some(Node::None) => Vec::new(),
                Some(e) => match cx.renderable(e, "env", loc) {
                    Renderable::Map(m) => m,
                    _ => {
                        cx.error(loc, "env must be a dict");
                        Vec::new()
                    }
                },
            },
            workdir: s
                .field("workdir")
                .filter(|n| **n != Node::None)
                .map(|n| cx.renderable(n, "workdir", loc)),
            log_environ: cx.boolean(s.field("logEnviron"), true, "logEnviron", loc),
        })),
        "HTTPStep" | "POST" | "GET" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" => {
            let method = if kind == "HTTPStep" {
                cx.opt_string(s.field("method"), "method", loc)
                    .unwrap_or_else(|| "POST".into())
                    .to_ascii_uppercase()
            } else {
                kind.to_string()
            };
            if !["POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]
                .contains(&method.as_str())
            {
                cx.error(
                    loc,
                    format!("HTTPStep '{name}': {method} is not an HTTP method"),
                );
            }
            let opt = |cx: &mut Cx, field: &str| {
                s.field(field)
                    .filter(|n| **n != Node::None)
                    .map(|n| cx.renderable(n, field, loc))
            };
            if s.field("data").is_some_and(|n| *n != Node::None)
                && s.field("json").is_some_and(|n| *n != Node::None)
            {
                cx.error(
                    loc,
                    format!("HTTPStep '{name}': give data or json, not both"),
                );
            }
            StepKind::Http(Box::new(HttpStepConfig {
                method,
                url: required(cx, "url")?,
                params: opt(cx, "params"),
                headers: opt(cx, "headers"),
                data: opt(cx, "data"),
                json: opt(cx, "json"),
                auth: opt(cx, "auth"),
                timeout: cx.number(s.field("timeout"), "timeout", loc),
                verify: match s.field("verify") {
                    None | Some(Node::None) | Some(Node::Bool(true)) => None,
                    Some(Node::Bool(false)) => Some(String::new()),
                    Some(Node::Str(path)) if !path.is_empty() => Some(path.clone()),
                    Some(other) => {
                        cx.error(
                            loc,
                            format!("HTTPStep '{name}': verify must be True, False or a CA file, not {}", other.describe()),
                        );
                        None
                    }
                },
                hide_request_headers: cx.strings(
                    s.field("hide_request_headers"),
                    "hide_request_headers",
                    loc,
                ),
                hide_response_headers: cx.strings(
                    s.field("hide_response_headers"),
                    "hide_response_headers",
                    loc,
                ),
            }))
        }
        "MakeDirectory" => StepKind::MakeDirectory {
            dir: required(cx, "dir")?,
        },
        "RemoveDirectory" => StepKind::RemoveDirectory {
            dir: required(cx, "dir")?,
        },
        "Trigger" => StepKind::Trigger(Box::new(trigger::trigger_step(cx, s, loc, &name)?)),
        other => {
            cx.error(loc, format!("{other} is not a build step"));
            return None;
        }
    };
    Some(StepConfig {
        name,
        locks: step_locks,
        kind,
        flags,
        workdir,
        description,
        description_done,
        do_step_if,
        hide_step_if,
    })
}

/// `doStepIf` or `hideStepIf`: a boolean, a function (wrapped by the prelude with the function
/// that calls it), or a renderable.
fn condition(
    cx: &mut Cx,
    node: Option<&Node>,
    default: bool,
    what: &str,
    loc: &Location,
) -> StepCondition {
    match node {
        None | Some(Node::None) => StepCondition::Always(default),
        Some(Node::Bool(b)) => StepCondition::Always(*b),
        Some(n @ Node::Object { kind, .. }) if kind == "StepPredicate" => {
            match (n.field("call"), n.field("func")) {
                (Some(Node::Function(call, _)), Some(Node::Function(func, _))) => {
                    StepCondition::Function {
                        call: *call,
                        func: *func,
                    }
                }
                _ => {
                    cx.error(
                        loc,
                        format!("{what} must be a function, a boolean or a renderable"),
                    );
                    StepCondition::Always(default)
                }
            }
        }
        Some(n @ Node::Object { .. }) => StepCondition::Renderable(cx.renderable(n, what, loc)),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "{what} must be a function, a boolean or a renderable, not {}",
                    other.describe()
                ),
            );
            StepCondition::Always(default)
        }
    }
}

/// `compress` of a directory upload: `None`, `'gz'` or `'bz2'`.
fn compress(cx: &mut Cx, node: Option<&Node>, loc: &Location) -> Option<String> {
    match cx.opt_string(node, "compress", loc) {
        Some(c) if c == "gz" || c == "bz2" => Some(c),
        Some(c) => {
            cx.error(
                loc,
                format!("compress must be None, 'gz' or 'bz2', not '{c}'"),
            );
            None
        }
        None => None,
    }
}

fn describe(cx: &mut Cx, node: Option<&Node>, loc: &Location) -> Option<String> {
    match node {
        None | Some(Node::None) => None,
        Some(Node::List(parts)) => Some(
            parts
                .iter()
                .filter_map(|p| cx.string(p, "a description", loc))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Some(n) => cx.string(n, "a description", loc),
    }
}
