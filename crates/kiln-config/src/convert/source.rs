//! Source steps in the configuration: the options every version-control system's step shares
//! (mode, method, codebase, retry, …) and each system's own, with Buildbot's defaults.

use kiln_core::render::Renderable;

use super::Cx;
use crate::model::*;
use crate::node::{Location, Node};

/// The step kinds that check out source.
pub(super) const KINDS: &[&str] = &[
    "Git",
    "GitHub",
    "Mercurial",
    "SVN",
    "CVS",
    "Darcs",
    "Bzr",
    "Arch",
    "P4",
    "Monotone",
];

/// The methods of `mode='full'`, the system's default first.
fn methods(kind: &str) -> &'static [&'static str] {
    match kind {
        // A Darcs or Arch tree is its own repository: the default starts again from a copy.
        "Darcs" | "Arch" => &["copy", "clobber", "fresh", "clean"],
        _ => &["fresh", "clobber", "clean", "copy"],
    }
}

pub(super) fn source(
    cx: &mut Cx,
    kind: &str,
    s: &Node,
    loc: &Location,
    name: &str,
) -> Option<StepKind> {
    let mode = cx
        .opt_string(s.field("mode"), "mode", loc)
        .unwrap_or_else(|| "incremental".into());
    if mode != "incremental" && mode != "full" {
        cx.error(
            loc,
            format!("{kind} step '{name}': mode must be 'incremental' or 'full', not '{mode}'"),
        );
    }
    let known = methods(kind);
    let method = match (
        mode.as_str(),
        cx.opt_string(s.field("method"), "method", loc),
    ) {
        ("full", None) => known[0].to_string(),
        ("full", Some(m)) if known.contains(&m.as_str()) => m,
        (_, Some(m)) if mode == "full" => {
            cx.error(
                loc,
                format!(
                    "{kind} step '{name}': method must be one of {}, not '{m}'",
                    known.join(", ")
                ),
            );
            m
        }
        (_, Some(m)) => {
            cx.error(
                loc,
                format!("{kind} step '{name}': method '{m}' needs mode='full'"),
            );
            m
        }
        (_, None) => String::new(),
    };
    let retry = match s.field("retry") {
        None | Some(Node::None) => None,
        Some(Node::List(items)) if items.len() == 2 => {
            let delay = cx.number(items.first(), "retry's delay", loc);
            let repeats = cx.number(items.get(1), "retry's repeats", loc);
            match (delay, repeats) {
                (Some(d), Some(r)) if d >= 0.0 && r >= 0.0 => Some((d, r as u32)),
                _ => {
                    cx.error(
                        loc,
                        format!("{kind} step '{name}': retry must be (delay, repeats) with numbers of zero or more"),
                    );
                    None
                }
            }
        }
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "{kind} step '{name}': retry must be (delay, repeats), not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    let env = match s.field("env") {
        None | Some(Node::None) => Vec::new(),
        Some(e) => match cx.renderable(e, "env", loc) {
            Renderable::Map(m) => m,
            _ => {
                cx.error(loc, format!("{kind} step '{name}': env must be a dict"));
                Vec::new()
            }
        },
    };
    let vcs = vcs(cx, kind, s, loc, name)?;
    Some(StepKind::Source(Box::new(SourceConfig {
        vcs,
        mode,
        method,
        codebase: cx
            .opt_string(s.field("codebase"), "codebase", loc)
            .unwrap_or_default(),
        always_use_latest: cx.boolean(s.field("alwaysUseLatest"), false, "alwaysUseLatest", loc),
        timeout: cx
            .number(s.field("timeout"), "timeout", loc)
            .or(Some(1200.0)),
        retry,
        env,
    })))
}

fn vcs(cx: &mut Cx, kind: &str, s: &Node, loc: &Location, name: &str) -> Option<Vcs> {
    let opt = |cx: &mut Cx, field: &str| -> Option<Renderable> {
        s.field(field)
            .filter(|n| **n != Node::None)
            .map(|n| cx.renderable(n, field, loc))
    };
    let required = |cx: &mut Cx, field: &str| -> Option<Renderable> {
        let r = opt(cx, field);
        if r.is_none() {
            cx.error(loc, format!("{kind} step '{name}' needs {field}"));
        }
        r
    };
    let location = |cx: &mut Cx| -> Option<RepoLocation> {
        let l = RepoLocation {
            repourl: opt(cx, "repourl"),
            base_url: opt(cx, "baseURL"),
            default_branch: opt(cx, "defaultBranch"),
        };
        match (&l.repourl, &l.base_url) {
            (Some(_), Some(_)) => {
                cx.error(
                    loc,
                    format!("{kind} step '{name}': give repourl or baseURL, not both"),
                );
                None
            }
            (None, None) => {
                cx.error(
                    loc,
                    format!("{kind} step '{name}' needs repourl, or baseURL with the branch appended to it"),
                );
                None
            }
            _ => Some(l),
        }
    };
    Some(match kind {
        "Git" | "GitHub" => {
            let mut g = git(cx, s, loc, name)?;
            g.github = kind == "GitHub";
            Vcs::Git(Box::new(g))
        }
        "Mercurial" => {
            let branch_type = cx
                .opt_string(s.field("branchType"), "branchType", loc)
                .unwrap_or_else(|| "dirname".into());
            if branch_type != "dirname" && branch_type != "inrepo" {
                cx.error(
                    loc,
                    format!("Mercurial step '{name}': branchType must be 'dirname' or 'inrepo', not '{branch_type}'"),
                );
            }
            let location = location(cx)?;
            if branch_type == "inrepo" && location.repourl.is_none() {
                cx.error(
                    loc,
                    format!("Mercurial step '{name}': branchType='inrepo' needs repourl"),
                );
            }
            Vcs::Mercurial(HgConfig {
                location,
                branch_type,
                clobber_on_branch_change: cx.boolean(
                    s.field("clobberOnBranchChange"),
                    true,
                    "clobberOnBranchChange",
                    loc,
                ),
            })
        }
        "SVN" => Vcs::Svn(SvnConfig {
            location: location(cx)?,
            username: opt(cx, "username"),
            password: opt(cx, "password"),
            extra_args: cx.strings(s.field("extra_args"), "extra_args", loc),
            prefer_last_changed_rev: cx.boolean(
                s.field("preferLastChangedRev"),
                false,
                "preferLastChangedRev",
                loc,
            ),
        }),
        "CVS" => Vcs::Cvs(CvsConfig {
            cvsroot: required(cx, "cvsroot")?,
            cvsmodule: required(cx, "cvsmodule")?,
            branch: opt(cx, "branch"),
            global_options: cx.strings(s.field("global_options"), "global_options", loc),
            extra_options: cx.strings(s.field("extra_options"), "extra_options", loc),
            login: opt(cx, "login"),
        }),
        "Darcs" => Vcs::Darcs(location(cx)?),
        "Bzr" => Vcs::Bzr(location(cx)?),
        "Arch" => Vcs::Arch(ArchConfig {
            url: required(cx, "url")?,
            version: match opt(cx, "version") {
                Some(v) => v,
                None => {
                    cx.error(
                        loc,
                        format!("Arch step '{name}' needs version (category--branch--version)"),
                    );
                    return None;
                }
            },
            archive: cx.opt_string(s.field("archive"), "archive", loc),
        }),
        "P4" => Vcs::P4(Box::new(p4(cx, s, loc, name)?)),
        "Monotone" => Vcs::Monotone(MonotoneConfig {
            repourl: required(cx, "repourl")?,
            branch: required(cx, "branch")?,
            progress: cx.boolean(s.field("progress"), false, "progress", loc),
        }),
        _ => return None,
    })
}

fn git(cx: &mut Cx, s: &Node, loc: &Location, name: &str) -> Option<GitConfig> {
    let shallow = match s.field("shallow") {
        None | Some(Node::None) | Some(Node::Bool(false)) => 0,
        Some(Node::Bool(true)) => 1,
        Some(Node::Int(n)) if *n >= 1 => u32::try_from(*n).unwrap_or(u32::MAX),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "Git step '{name}': shallow must be True, False or a depth, not {}",
                    other.describe()
                ),
            );
            0
        }
    };
    let get_description = match s.field("getDescription") {
        None | Some(Node::None) | Some(Node::Bool(false)) => None,
        Some(Node::Bool(true)) => Some(Vec::new()),
        Some(Node::Dict(entries)) => {
            // Buildbot's options: a True flag becomes `--flag`, a value `--flag=value`.
            let mut args = Vec::new();
            for (k, v) in entries {
                let Some(k) = cx.string(k, "a getDescription option", loc) else {
                    continue;
                };
                let flag = k.replace('_', "-");
                match v {
                    Node::Bool(true) | Node::None => args.push(format!("--{flag}")),
                    Node::Bool(false) => {}
                    Node::Int(i) => args.push(format!("--{flag}={i}")),
                    Node::Str(v) => args.push(format!("--{flag}={v}")),
                    other => cx.error(
                        loc,
                        format!(
                            "Git step '{name}': getDescription option {k} must be a flag, a number or a string, not {}",
                            other.describe()
                        ),
                    ),
                }
            }
            Some(args)
        }
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "Git step '{name}': getDescription must be True or a dict of git describe options, not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    let config = match s.field("config") {
        None | Some(Node::None) => Vec::new(),
        Some(Node::Dict(entries)) => entries
            .iter()
            .filter_map(|(k, v)| {
                let k = cx.string(k, "a git config name", loc)?;
                let v = match v {
                    Node::Str(v) => v.clone(),
                    Node::Int(i) => i.to_string(),
                    Node::Bool(b) => b.to_string(),
                    other => {
                        cx.error(
                            loc,
                            format!(
                                "Git step '{name}': config value of {k} must be a string, not {}",
                                other.describe()
                            ),
                        );
                        return None;
                    }
                };
                Some((k, v))
            })
            .collect(),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "Git step '{name}': config must be a dict, not {}",
                    other.describe()
                ),
            );
            Vec::new()
        }
    };
    if s.field("filters").is_some_and(|n| *n != Node::None) {
        cx.warn(
            loc,
            format!(
                "Git step '{name}': filters is not supported by this version of kiln and is ignored"
            ),
        );
    }
    let opt = |cx: &mut Cx, field: &str| -> Option<Renderable> {
        s.field(field)
            .filter(|n| **n != Node::None)
            .map(|n| cx.renderable(n, field, loc))
    };
    if opt(cx, "sshHostKey").is_some() && opt(cx, "sshKnownHosts").is_some() {
        cx.error(
            loc,
            format!("Git step '{name}': give sshHostKey or sshKnownHosts, not both"),
        );
    }
    let ssh_private_key = opt(cx, "sshPrivateKey");
    if ssh_private_key.is_none()
        && (opt(cx, "sshHostKey").is_some() || opt(cx, "sshKnownHosts").is_some())
    {
        cx.error(
            loc,
            format!("Git step '{name}': sshHostKey and sshKnownHosts need sshPrivateKey"),
        );
    }
    let Some(repourl) = opt(cx, "repourl") else {
        cx.error(loc, format!("Git step '{name}' needs repourl"));
        return None;
    };
    Some(GitConfig {
        repourl,
        branch: opt(cx, "branch")
            .unwrap_or_else(|| Renderable::Literal(kiln_core::PropertyValue::Str("HEAD".into()))),
        shallow,
        submodules: cx.boolean(s.field("submodules"), false, "submodules", loc),
        tags: cx.boolean(s.field("tags"), false, "tags", loc),
        reference: opt(cx, "reference"),
        clobber_on_failure: cx.boolean(s.field("clobberOnFailure"), false, "clobberOnFailure", loc),
        get_description,
        config,
        origin: cx.opt_string(s.field("origin"), "origin", loc),
        ssh_private_key,
        ssh_host_key: opt(cx, "sshHostKey"),
        ssh_known_hosts: opt(cx, "sshKnownHosts"),
        github: false,
    })
}

fn p4(cx: &mut Cx, s: &Node, loc: &Location, name: &str) -> Option<P4Config> {
    let opt = |cx: &mut Cx, field: &str| -> Option<Renderable> {
        s.field(field)
            .filter(|n| **n != Node::None)
            .map(|n| cx.renderable(n, field, loc))
    };
    let pairs = |cx: &mut Cx, field: &str| -> Vec<(String, String)> {
        match s.field(field) {
            None | Some(Node::None) => Vec::new(),
            Some(Node::List(items)) => items
                .iter()
                .filter_map(|i| match i {
                    Node::List(p) if p.len() == 2 => {
                        let a = cx.string(&p[0], field, loc)?;
                        let b = cx.string(&p[1], field, loc)?;
                        Some((a, b))
                    }
                    other => {
                        cx.error(
                            loc,
                            format!("P4 step '{name}': {field} holds (depot path, local path) pairs, not {}", other.describe()),
                        );
                        None
                    }
                })
                .collect(),
            Some(other) => {
                cx.error(
                    loc,
                    format!("P4 step '{name}': {field} must be a list of pairs, not {}", other.describe()),
                );
                Vec::new()
            }
        }
    };
    let p4base = opt(cx, "p4base");
    let p4viewspec = pairs(cx, "p4viewspec");
    let p4extra_views = pairs(cx, "p4extra_views");
    let stream = cx.boolean(s.field("stream"), false, "stream", loc);
    let p4branch = opt(cx, "p4branch");
    match (&p4base, p4viewspec.is_empty()) {
        (Some(_), false) => cx.error(
            loc,
            format!("P4 step '{name}': give p4base or p4viewspec, not both"),
        ),
        (None, true) => cx.error(loc, format!("P4 step '{name}' needs p4base or p4viewspec")),
        _ => {}
    }
    if stream && (p4base.is_none() || p4branch.is_none() || !p4extra_views.is_empty()) {
        cx.error(
            loc,
            format!("P4 step '{name}': stream needs p4base and p4branch, and no p4extra_views"),
        );
    }
    let p4client = opt(cx, "p4client").unwrap_or_else(|| Renderable::Interpolate {
        format: "buildbot_%(prop:workername)s_%(prop:buildername)s".into(),
        kwargs: Vec::new(),
    });
    Some(P4Config {
        p4base,
        p4branch,
        p4extra_views,
        p4viewspec,
        p4viewspec_suffix: cx
            .opt_string(s.field("p4viewspec_suffix"), "p4viewspec_suffix", loc)
            .unwrap_or_else(|| "...".into()),
        p4port: opt(cx, "p4port"),
        p4user: opt(cx, "p4user"),
        p4passwd: opt(cx, "p4passwd"),
        p4client,
        p4line_end: cx
            .opt_string(s.field("p4line_end"), "p4line_end", loc)
            .unwrap_or_else(|| "local".into()),
        p4client_spec_options: cx
            .opt_string(
                s.field("p4client_spec_options"),
                "p4client_spec_options",
                loc,
            )
            .unwrap_or_else(|| "allwrite rmdir".into()),
        p4extra_args: cx.strings(s.field("p4extra_args"), "p4extra_args", loc),
        use_tickets: cx.boolean(s.field("use_tickets"), false, "use_tickets", loc),
        stream,
        p4bin: cx
            .opt_string(s.field("p4bin"), "p4bin", loc)
            .unwrap_or_else(|| "p4".into()),
    })
}
