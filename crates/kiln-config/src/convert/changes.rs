//! Change sources (`c['change_source']`): `GitPoller`, `HgPoller` and `SVNPoller`, with Buildbot's
//! arguments and defaults.

use kiln_core::changefilter::FnRef;

use super::Cx;
use super::schedulers::{function, given_node};
use crate::model::*;
use crate::node::{Location, Node};

/// The change sources of `c['change_source']`: one poller, or a list of them.
pub(super) fn change_sources(cx: &mut Cx, node: Option<&Node>) -> Vec<ChangeSourceConfig> {
    let loc = cx.key_loc("change_source");
    let items: Vec<&Node> = match node {
        None | Some(Node::None) => Vec::new(),
        Some(Node::List(items)) => items.iter().collect(),
        Some(one) => vec![one],
    };
    let mut out: Vec<ChangeSourceConfig> = Vec::new();
    for item in items {
        let Node::Object { kind, loc, .. } = item else {
            cx.error(
                &loc,
                format!(
                    "c['change_source'] must hold change sources, not {}",
                    item.describe()
                ),
            );
            continue;
        };
        let source = match kind.as_str() {
            "GitPoller" => git(cx, loc, item),
            "HgPoller" => hg(cx, loc, item),
            "SVNPoller" => svn(cx, loc, item),
            other => {
                cx.error(loc, format!("{other} is not a change source"));
                None
            }
        };
        if let Some(s) = source {
            if out.iter().any(|o| o.common().name == s.common().name) {
                cx.error(
                    loc,
                    format!(
                        "two change sources are named '{}'; give one a name=",
                        s.common().name
                    ),
                );
            }
            out.push(s);
        }
    }
    out
}

/// The arguments every poller takes.
fn common(cx: &mut Cx, loc: &Location, s: &Node, kind: &str, repourl: &str) -> PollerCommon {
    let interval = match given_node(s.field("pollInterval")) {
        None => 600,
        Some(Node::Int(i)) if *i > 0 => *i,
        Some(Node::Float(f)) if f.is_finite() && *f > 0.0 => f.ceil() as i64,
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "pollInterval must be a positive number of seconds, not {}",
                    other.describe()
                ),
            );
            600
        }
    };
    PollerCommon {
        name: cx
            .opt_string(s.field("name"), "name", loc)
            .unwrap_or_else(|| repourl.to_string()),
        class_name: kind.to_string(),
        poll_interval: interval,
        poll_at_launch: cx.boolean(s.field("pollAtLaunch"), false, "pollAtLaunch", loc),
        category: cx.opt_string(s.field("category"), "category", loc),
        project: cx
            .opt_string(s.field("project"), "project", loc)
            .unwrap_or_default(),
    }
}

fn repourl(cx: &mut Cx, loc: &Location, s: &Node, kind: &str) -> Option<String> {
    match given_node(s.field("repourl")) {
        Some(n) => cx.string(n, "repourl", loc),
        None => {
            cx.error(loc, format!("{kind} needs a repourl"));
            None
        }
    }
}

fn git(cx: &mut Cx, loc: &Location, s: &Node) -> Option<ChangeSourceConfig> {
    let repourl = repourl(cx, loc, s, "GitPoller")?;
    let only_tags = cx.boolean(s.field("only_tags"), false, "only_tags", loc);
    let branches = match (
        given_node(s.field("branches")),
        given_node(s.field("branch")),
    ) {
        (Some(_), Some(_)) => {
            cx.error(loc, "GitPoller: give branches or branch, not both");
            GitBranches::Named(vec!["master".into()])
        }
        (Some(Node::Bool(true)), None) => GitBranches::All,
        (Some(f @ Node::Function(..)), None) => match function(cx, f, "branches", loc) {
            Some(f) => GitBranches::Function(f),
            None => GitBranches::All,
        },
        (Some(n), None) => GitBranches::Named(cx.strings(Some(n), "branches", loc)),
        (None, Some(b)) => GitBranches::Named(cx.strings(Some(b), "branch", loc)),
        (None, None) if only_tags => GitBranches::Tags,
        (None, None) => GitBranches::Named(vec!["master".into()]),
    };
    if only_tags && !matches!(branches, GitBranches::Tags) {
        cx.error(loc, "GitPoller: only_tags and branches are exclusive");
    }
    Some(ChangeSourceConfig::Git(Box::new(GitPollerConfig {
        common: common(cx, loc, s, "GitPoller", &repourl),
        branches,
        workdir: cx
            .opt_string(s.field("workdir"), "workdir", loc)
            .unwrap_or_else(|| "gitpoller-work".into()),
        gitbin: cx
            .opt_string(s.field("gitbin"), "gitbin", loc)
            .unwrap_or_else(|| "git".into()),
        use_timestamps: cx.boolean(s.field("usetimestamps"), true, "usetimestamps", loc),
        build_pushes_with_no_commits: cx.boolean(
            s.field("buildPushesWithNoCommits"),
            false,
            "buildPushesWithNoCommits",
            loc,
        ),
        codebase: cx
            .opt_string(s.field("codebase"), "codebase", loc)
            .unwrap_or_default(),
        repourl,
    })))
}

fn hg(cx: &mut Cx, loc: &Location, s: &Node) -> Option<ChangeSourceConfig> {
    let repourl = repourl(cx, loc, s, "HgPoller")?;
    let mut branches = match (
        given_node(s.field("branches")),
        given_node(s.field("branch")),
    ) {
        (Some(_), Some(_)) => {
            cx.error(loc, "HgPoller: give branches or branch, not both");
            Vec::new()
        }
        (Some(n), None) => cx.strings(Some(n), "branches", loc),
        (None, Some(b)) => cx.strings(Some(b), "branch", loc),
        (None, None) => Vec::new(),
    };
    let bookmarks = cx.strings(s.field("bookmarks"), "bookmarks", loc);
    if branches.is_empty() && bookmarks.is_empty() {
        branches.push("default".into());
    }
    Some(ChangeSourceConfig::Hg(Box::new(HgPollerConfig {
        common: common(cx, loc, s, "HgPoller", &repourl),
        branches,
        bookmarks,
        workdir: match cx.opt_string(s.field("workdir"), "workdir", loc) {
            Some(w) => w,
            None => {
                cx.error(loc, "HgPoller needs a workdir");
                return None;
            }
        },
        hgbin: cx
            .opt_string(s.field("hgbin"), "hgbin", loc)
            .unwrap_or_else(|| "hg".into()),
        use_timestamps: cx.boolean(s.field("usetimestamps"), true, "usetimestamps", loc),
        revlink: cx.opt_string(s.field("revlink"), "revlink", loc),
        repourl,
    })))
}

fn svn(cx: &mut Cx, loc: &Location, s: &Node) -> Option<ChangeSourceConfig> {
    let repourl = repourl(cx, loc, s, "SVNPoller")?;
    let split_file: Option<FnRef> =
        given_node(s.field("split_file")).and_then(|n| function(cx, n, "split_file", loc));
    let histmax = match given_node(s.field("histmax")) {
        None => 100,
        Some(n) => cx.int(n, "histmax", loc).filter(|h| *h > 0).unwrap_or(100),
    };
    Some(ChangeSourceConfig::Svn(Box::new(SvnPollerConfig {
        common: common(cx, loc, s, "SVNPoller", &repourl),
        split_file,
        svnuser: cx.opt_string(s.field("svnuser"), "svnuser", loc),
        svnpasswd: cx.opt_string(s.field("svnpasswd"), "svnpasswd", loc),
        svnbin: cx
            .opt_string(s.field("svnbin"), "svnbin", loc)
            .unwrap_or_else(|| "svn".into()),
        histmax,
        revlinktmpl: cx.opt_string(s.field("revlinktmpl"), "revlinktmpl", loc),
        extra_args: cx.strings(s.field("extra_args"), "extra_args", loc),
        repourl: repourl.trim_end_matches('/').to_string(),
    })))
}
