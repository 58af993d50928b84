//! Build steps in the configuration: the flags every step takes, and each step kind's arguments.

use kiln_core::render::Renderable;
use kiln_core::step::StepFlags;

use super::{Cx, locks, onmaster, schedulers, shell, transfer, trigger};
use crate::model::*;
use crate::node::{Location, Node};

/// The step kinds that halt the build when they fail, as in Buildbot: transfers and source steps.
fn halts_by_default(kind: &str) -> bool {
    transfer::KINDS.contains(&kind)
        || super::source::KINDS.contains(&kind)
        || kind == "Configure"
        || kind == "Compile"
}

/// The name a step of `kind` gets when the configuration gives none, as in Buildbot.
fn default_name(kind: &str) -> &str {
    match kind {
        "ShellCommand" => "shell",
        "Git" => "git",
        "Mercurial" => "hg",
        "SVN" => "svn",
        "CVS" => "cvs",
        "Darcs" => "darcs",
        "Bzr" => "bzr",
        "Arch" => "arch",
        "P4" => "p4",
        "Monotone" => "monotone",
        "FileUpload" | "DirectoryUpload" | "MultipleFileUpload" => "upload",
        "FileDownload" | "JSONStringDownload" | "JSONPropertiesDownload" => "download",
        "StringDownload" => "string_download",
        "Trigger" => "trigger",
        "Configure" => "configure",
        "Compile" => "compile",
        "Test" => "test",
        k if onmaster::HTTP_KINDS.contains(&k) => "HTTPStep",
        other => other,
    }
}

/// One step's configuration node, with what its error messages name.
pub(super) struct StepNode<'a> {
    pub node: &'a Node,
    pub loc: &'a Location,
    pub kind: &'a str,
    pub name: &'a str,
}

impl StepNode<'_> {
    pub fn field(&self, field: &str) -> Option<&Node> {
        self.node.field(field)
    }

    /// A field the step cannot do without.
    pub fn required(&self, cx: &mut Cx, field: &str) -> Option<Renderable> {
        match self.field(field) {
            None | Some(Node::None) => {
                let (kind, name) = (self.kind, self.name);
                cx.error(self.loc, format!("{kind} step '{name}' needs {field}"));
                None
            }
            Some(n) => Some(cx.renderable(n, field, self.loc)),
        }
    }

    /// A field that may be left out or `None`.
    pub fn optional(&self, cx: &mut Cx, field: &str) -> Option<Renderable> {
        self.field(field)
            .filter(|n| **n != Node::None)
            .map(|n| cx.renderable(n, field, self.loc))
    }

    pub fn boolean(&self, cx: &mut Cx, field: &str, default: bool) -> bool {
        cx.boolean(self.field(field), default, field, self.loc)
    }

    pub fn string(&self, cx: &mut Cx, field: &str) -> Option<String> {
        cx.opt_string(self.field(field), field, self.loc)
    }

    pub fn number(&self, cx: &mut Cx, field: &str) -> Option<f64> {
        cx.number(self.field(field), field, self.loc)
    }
}

pub(super) fn step(cx: &mut Cx, builder_loc: &Location, s: &Node) -> Option<StepConfig> {
    let Node::Object { kind, loc, .. } = s else {
        cx.error(
            builder_loc,
            format!("a build factory holds steps, not {}", s.describe()),
        );
        return None;
    };
    let loc = &loc.clone();
    let name = cx
        .opt_string(s.field("name"), "the step name", loc)
        .unwrap_or_else(|| default_name(kind).to_string());
    let node = StepNode {
        node: s,
        loc,
        kind,
        name: &name,
    };
    let flags = flags(cx, &node);
    let workdir = node.optional(cx, "workdir");
    let description = describe(cx, s.field("description"), loc);
    let description_done = describe(cx, s.field("descriptionDone"), loc);
    let step_locks = locks::locks(cx, s.field("locks"), "locks", loc);
    let do_step_if = condition(cx, s.field("doStepIf"), true, "doStepIf", loc);
    let hide_step_if = condition(cx, s.field("hideStepIf"), false, "hideStepIf", loc);
    let kind = step_kind(cx, &node)?;
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

/// The flags that decide how a step's result counts, with each kind's defaults.
fn flags(cx: &mut Cx, s: &StepNode) -> StepFlags {
    let defaults = StepFlags {
        halt_on_failure: halts_by_default(s.kind),
        warn_on_failure: s.kind == "Test",
        ..StepFlags::default()
    };
    StepFlags {
        halt_on_failure: s.boolean(cx, "haltOnFailure", defaults.halt_on_failure),
        flunk_on_warnings: s.boolean(cx, "flunkOnWarnings", defaults.flunk_on_warnings),
        flunk_on_failure: s.boolean(cx, "flunkOnFailure", defaults.flunk_on_failure),
        warn_on_warnings: s.boolean(cx, "warnOnWarnings", defaults.warn_on_warnings),
        warn_on_failure: s.boolean(cx, "warnOnFailure", defaults.warn_on_failure),
        always_run: s.boolean(cx, "alwaysRun", defaults.always_run),
    }
}

/// The kind-specific part of a step: each family of kinds is read by its own module.
fn step_kind(cx: &mut Cx, s: &StepNode) -> Option<StepKind> {
    let (node, loc, name) = (s.node, s.loc, s.name);
    Some(match s.kind {
        "ShellCommand" => StepKind::ShellCommand(shell::shell(cx, node, loc, name, None)?),
        "Configure" => {
            StepKind::ShellCommand(shell::shell(cx, node, loc, name, Some(&["./configure"]))?)
        }
        "Compile" | "Test" | "WarningCountingShellCommand" => StepKind::WarningCounting(Box::new(
            shell::warning_counting(cx, s.kind, node, loc, name)?,
        )),
        "ShellSequence" => StepKind::ShellSequence(Box::new(shell::sequence(cx, node, loc, name)?)),
        k if super::source::KINDS.contains(&k) => super::source::source(cx, k, node, loc, name)?,
        k if transfer::KINDS.contains(&k) => transfer::transfer(cx, s)?,
        "SetProperty" => {
            let Some(property) = s.string(cx, "property") else {
                cx.error(
                    loc,
                    format!("SetProperty step '{name}' needs a property name"),
                );
                return None;
            };
            StepKind::SetProperty {
                property,
                value: s.required(cx, "value")?,
            }
        }
        "SetProperties" => StepKind::SetProperties {
            properties: s.required(cx, "properties")?,
        },
        "SetPropertiesFromEnv" => {
            let variables = match node.field("variables") {
                Some(Node::Str(v)) => vec![v.clone()],
                other => cx.strings(other, "variables", loc),
            };
            if variables.is_empty() {
                cx.error(
                    loc,
                    format!("SetPropertiesFromEnv step '{name}' needs variables"),
                );
            }
            StepKind::SetPropertiesFromEnv {
                variables,
                source: s
                    .string(cx, "source")
                    .unwrap_or_else(|| "WorkerEnvironment".into()),
            }
        }
        "SetPropertyFromCommand" => set_property_from_command(cx, s)?,
        "FileExists" => StepKind::FileExists {
            file: s.required(cx, "file")?,
        },
        "CopyDirectory" => StepKind::CopyDirectory {
            src: s.required(cx, "src")?,
            dest: s.required(cx, "dest")?,
            timeout: match s.field("timeout") {
                None => Some(120.0),
                _ => s.number(cx, "timeout"),
            },
            max_time: s.number(cx, "maxTime"),
        },
        "MakeDirectory" => StepKind::MakeDirectory {
            dir: s.required(cx, "dir")?,
        },
        "RemoveDirectory" => StepKind::RemoveDirectory {
            dir: s.required(cx, "dir")?,
        },
        "MasterShellCommand" => onmaster::master_shell_command(cx, s)?,
        k if onmaster::HTTP_KINDS.contains(&k) => onmaster::http_step(cx, s)?,
        "Trigger" => StepKind::Trigger(Box::new(trigger::trigger_step(cx, node, loc, name)?)),
        other => {
            cx.error(loc, format!("{other} is not a build step"));
            return None;
        }
    })
}

/// `SetPropertyFromCommand`: a shell command whose output sets a property, or several through
/// `extract_fn`.
fn set_property_from_command(cx: &mut Cx, s: &StepNode) -> Option<StepKind> {
    let property = s.string(cx, "property");
    let extract_fn = s
        .field("extract_fn")
        .filter(|n| **n != Node::None)
        .and_then(|n| schedulers::function(cx, n, "extract_fn", s.loc));
    if property.is_some() == extract_fn.is_some() {
        cx.error(
            s.loc,
            format!(
                "SetPropertyFromCommand step '{}': give exactly one of property and extract_fn",
                s.name
            ),
        );
        return None;
    }
    Some(StepKind::SetPropertyFromCommand(Box::new(
        SetPropertyFromCommandConfig {
            shell: shell::shell(cx, s.node, s.loc, s.name, None)?,
            property,
            extract_fn,
            strip: s.boolean(cx, "strip", true),
        },
    )))
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
