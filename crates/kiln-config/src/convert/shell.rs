//! Shell-command steps in the configuration: `ShellCommand` and `Configure`, the warning-counting
//! `Compile`, `Test` and `WarningCountingShellCommand`, and `ShellSequence`, with Buildbot's
//! defaults.

use std::collections::BTreeMap;

use kiln_core::render::Renderable;
use kiln_core::step::StepFlags;
use kiln_core::{PropertyValue, Results};

use super::Cx;
use crate::model::*;
use crate::node::{Location, Node};

/// Buildbot's default warning pattern: a line that mentions a warning.
const WARNING_PATTERN: &str = "^.*warning[: ].*";
const DIRECTORY_ENTER: &str = "make.*: Entering directory [\u{2019}\"`'](.*)[\u{2019}'`\"]";
const DIRECTORY_LEAVE: &str = "make.*: Leaving directory";

pub(super) fn shell(
    cx: &mut Cx,
    s: &Node,
    loc: &Location,
    name: &str,
    default: Option<&[&str]>,
) -> Option<ShellCommandConfig> {
    let command = match s.field("command") {
        None | Some(Node::None) if default.is_some() => Renderable::List(
            default
                .unwrap_or_default()
                .iter()
                .map(|c| Renderable::Literal(PropertyValue::Str(c.to_string())))
                .collect(),
        ),
        None | Some(Node::None) => {
            cx.error(loc, format!("ShellCommand '{name}' needs a command"));
            return None;
        }
        Some(n @ (Node::Str(_) | Node::List(_) | Node::Object { .. })) => {
            cx.renderable(n, "command", loc)
        }
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "command must be a string or a list, not {}",
                    other.describe()
                ),
            );
            return None;
        }
    };
    let env = match s.field("env") {
        None | Some(Node::None) => Vec::new(),
        Some(e) => match cx.renderable(e, "env", loc) {
            Renderable::Map(m) => m,
            _ => {
                cx.error(loc, "env must be a dict");
                Vec::new()
            }
        },
    };
    let mut decode_rc = BTreeMap::from([(0, Results::Success)]);
    if let Some(Node::Dict(entries)) = s.field("decodeRC") {
        decode_rc.clear();
        for (k, v) in entries {
            let code = cx.int(k, "a decodeRC exit code", loc);
            let result = cx
                .int(v, "a decodeRC result", loc)
                .and_then(Results::from_code);
            match (code, result) {
                (Some(c), Some(r)) => {
                    decode_rc.insert(c, r);
                }
                (_, None) => cx.error(
                    loc,
                    "decodeRC results must be result codes 0..6 (SUCCESS … CANCELLED)",
                ),
                _ => {}
            }
        }
    }
    let timeout = match s.field("timeout") {
        None => Some(1200.0),
        other => cx.number(other, "timeout", loc),
    };
    let signal = cx
        .opt_string(s.field("interruptSignal"), "interruptSignal", loc)
        .unwrap_or_else(|| "KILL".into());
    Some(ShellCommandConfig {
        logfiles: logfiles(cx, s.field("logfiles"), loc),
        lazylogfiles: cx.boolean(s.field("lazylogfiles"), false, "lazylogfiles", loc),
        command,
        env,
        want_stdout: cx.boolean(s.field("want_stdout"), true, "want_stdout", loc),
        want_stderr: cx.boolean(s.field("want_stderr"), true, "want_stderr", loc),
        timeout,
        max_time: cx.number(s.field("maxTime"), "maxTime", loc),
        max_lines: cx
            .number(s.field("max_lines"), "max_lines", loc)
            .map(|n| n as i64),
        sigterm_time: cx.number(s.field("sigtermTime"), "sigtermTime", loc),
        use_pty: cx.boolean(s.field("usePTY"), false, "usePTY", loc),
        log_environ: cx.boolean(s.field("logEnviron"), true, "logEnviron", loc),
        interrupt_signal: signal,
        initial_stdin: s
            .field("initialStdin")
            .filter(|n| **n != Node::None)
            .map(|n| cx.renderable(n, "initialStdin", loc)),
        decode_rc,
    })
}

/// `logfiles={'name': 'path'}` or `{'name': {'filename': 'path', 'follow': True}}`.
fn logfiles(cx: &mut Cx, node: Option<&Node>, loc: &Location) -> Vec<LogFile> {
    let entries = match node {
        None | Some(Node::None) => return Vec::new(),
        Some(Node::Dict(entries)) => entries,
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "logfiles must be a dict of log names to files, not {}",
                    other.describe()
                ),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let Some(name) = cx.string(k, "a logfiles name", loc) else {
            continue;
        };
        if name == "stdio" {
            cx.error(loc, "logfiles cannot be named stdio, the command's own log");
            continue;
        }
        let (filename, follow) = match v {
            Node::Str(f) => (Some(f.clone()), false),
            Node::Dict(_) => (
                cx.opt_string(v.field("filename"), "a logfile's filename", loc),
                cx.boolean(v.field("follow"), false, "a logfile's follow", loc),
            ),
            other => {
                cx.error(
                    loc,
                    format!(
                        "logfile {name} must be a file name or a dict, not {}",
                        other.describe()
                    ),
                );
                continue;
            }
        };
        match filename {
            Some(filename) => out.push(LogFile {
                name,
                filename,
                follow,
            }),
            None => cx.error(loc, format!("logfile {name} needs a filename")),
        }
    }
    out
}

fn pattern(cx: &mut Cx, node: Option<&Node>, default: &str, what: &str, loc: &Location) -> String {
    let p = cx
        .opt_string(node, what, loc)
        .unwrap_or_else(|| default.to_string());
    if let Err(e) = regex::Regex::new(&p) {
        cx.error(
            loc,
            format!("{what} is not a valid regular expression: {e}"),
        );
    }
    p
}

/// `Compile`, `Test` and `WarningCountingShellCommand`.
pub(super) fn warning_counting(
    cx: &mut Cx,
    kind: &str,
    s: &Node,
    loc: &Location,
    name: &str,
) -> Option<WarningCountingConfig> {
    let default: Option<&[&str]> = match kind {
        "Compile" => Some(&["make", "all"]),
        "Test" => Some(&["make", "test"]),
        _ => None,
    };
    let shell = shell(cx, s, loc, name, default)?;
    let extract_groups = match cx.opt_string(s.field("warningExtractor"), "warningExtractor", loc) {
        None => false,
        Some(e) if e == "warnExtractWholeLine" => false,
        Some(e) if e == "warnExtractFromRegexpGroups" => true,
        Some(e) => {
            cx.error(
                loc,
                format!("warningExtractor must be 'warnExtractWholeLine' or 'warnExtractFromRegexpGroups', not '{e}'"),
            );
            false
        }
    };
    let mut suppression_list = Vec::new();
    match s.field("suppressionList") {
        None | Some(Node::None) => {}
        Some(Node::List(items)) => {
            for item in items {
                let Node::List(parts) = item else {
                    cx.error(
                        loc,
                        format!(
                            "suppressionList holds (file, warning, start, end) tuples, not {}",
                            item.describe()
                        ),
                    );
                    continue;
                };
                if parts.len() != 4 {
                    cx.error(
                        loc,
                        "a suppressionList entry is (file, warning, start, end)",
                    );
                    continue;
                }
                let re = |cx: &mut Cx, n: &Node, what: &str| -> Option<String> {
                    let r = cx.opt_string(Some(n), what, loc)?;
                    if let Err(e) = regex::Regex::new(&r) {
                        cx.error(
                            loc,
                            format!(
                                "{what} in suppressionList is not a valid regular expression: {e}"
                            ),
                        );
                    }
                    Some(r)
                };
                let line = |cx: &mut Cx, n: &Node| -> Option<i64> {
                    match n {
                        Node::None => None,
                        other => cx.int(other, "a suppressionList line", loc),
                    }
                };
                suppression_list.push(Suppression {
                    file: re(cx, &parts[0], "the file pattern"),
                    warning: re(cx, &parts[1], "the warning pattern"),
                    start: line(cx, &parts[2]),
                    end: line(cx, &parts[3]),
                });
            }
        }
        Some(other) => cx.error(
            loc,
            format!("suppressionList must be a list, not {}", other.describe()),
        ),
    }
    let test_results = match s.field("testResults") {
        None | Some(Node::None) => None,
        Some(Node::Str(f)) if f == "libtest" => Some(TestResultsFormat::LibTest),
        Some(Node::Str(f)) if f == "tap" => Some(TestResultsFormat::Tap),
        Some(d @ Node::Dict(_)) if d.field("junit").is_some() => {
            Some(TestResultsFormat::JUnit(cx.renderable(
                d.field("junit").unwrap_or(&Node::None),
                "testResults junit",
                loc,
            )))
        }
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "testResults must be 'libtest', 'tap' or {{'junit': 'a glob of XML files'}}, not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    let max_warn_count = match cx.number(s.field("maxWarnCount"), "maxWarnCount", loc) {
        Some(n) if n >= 0.0 => Some(n as u64),
        Some(_) => {
            cx.error(loc, "maxWarnCount must be zero or more");
            None
        }
        None => None,
    };
    Some(WarningCountingConfig {
        shell,
        warning_pattern: pattern(
            cx,
            s.field("warningPattern"),
            WARNING_PATTERN,
            "warningPattern",
            loc,
        ),
        extract_groups,
        directory_enter_pattern: pattern(
            cx,
            s.field("directoryEnterPattern"),
            DIRECTORY_ENTER,
            "directoryEnterPattern",
            loc,
        ),
        directory_leave_pattern: pattern(
            cx,
            s.field("directoryLeavePattern"),
            DIRECTORY_LEAVE,
            "directoryLeavePattern",
            loc,
        ),
        suppression_file: s
            .field("suppressionFile")
            .filter(|n| **n != Node::None)
            .map(|n| cx.renderable(n, "suppressionFile", loc)),
        suppression_list,
        max_warn_count,
        test_results,
    })
}

/// `ShellSequence(commands=[util.ShellArg(command=…, logname=…, haltOnFailure=…), …])`.
pub(super) fn sequence(
    cx: &mut Cx,
    s: &Node,
    loc: &Location,
    name: &str,
) -> Option<ShellSequenceConfig> {
    let Some(Node::List(items)) = s.field("commands") else {
        cx.error(
            loc,
            format!("ShellSequence '{name}' needs commands, a list of util.ShellArg"),
        );
        return None;
    };
    let mut commands = Vec::new();
    for item in items {
        let Node::Object { kind, .. } = item else {
            cx.error(
                loc,
                format!(
                    "ShellSequence '{name}': commands holds util.ShellArg, not {}",
                    item.describe()
                ),
            );
            continue;
        };
        if kind != "ShellArg" {
            cx.error(
                loc,
                format!("ShellSequence '{name}': commands holds util.ShellArg, not {kind}"),
            );
            continue;
        }
        let Some(command) = item.field("command").filter(|n| **n != Node::None) else {
            cx.error(
                loc,
                format!("ShellSequence '{name}': a ShellArg needs a command"),
            );
            continue;
        };
        let d = StepFlags::default();
        let flag =
            |cx: &mut Cx, key: &str, default: bool| cx.boolean(item.field(key), default, key, loc);
        commands.push(ShellArg {
            command: cx.renderable(command, "command", loc),
            logname: cx.opt_string(item.field("logname"), "logname", loc),
            flags: StepFlags {
                halt_on_failure: flag(cx, "haltOnFailure", d.halt_on_failure),
                flunk_on_failure: flag(cx, "flunkOnFailure", d.flunk_on_failure),
                flunk_on_warnings: flag(cx, "flunkOnWarnings", d.flunk_on_warnings),
                warn_on_failure: flag(cx, "warnOnFailure", d.warn_on_failure),
                warn_on_warnings: flag(cx, "warnOnWarnings", d.warn_on_warnings),
                always_run: false,
            },
        });
    }
    if commands.is_empty() {
        cx.error(loc, format!("ShellSequence '{name}' has no commands"));
        return None;
    }
    Some(ShellSequenceConfig {
        shell: shell(cx, s, loc, name, Some(&[]))?,
        commands,
    })
}
