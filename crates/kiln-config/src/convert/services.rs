//! `c['services']`: `util.OldBuildCanceller` and the reporters (`super::reporters`).

use kiln_core::change::Attribute;
use kiln_core::changefilter::{ChangeFilter, Criterion};

use super::Cx;
use super::schedulers::{optional_strings, pattern};
use crate::model::*;
use crate::node::{Location, Node};

/// What `c['services']` holds.
#[derive(Default)]
pub(super) struct Services {
    pub(super) cancellers: Vec<OldBuildCancellerConfig>,
    pub(super) reporters: Vec<ReporterConfig>,
}

pub(super) fn services(cx: &mut Cx, node: Option<&Node>) -> Services {
    let loc = cx.key_loc("services");
    let items = match node {
        None | Some(Node::None) => return Services::default(),
        Some(Node::List(items)) => items.as_slice(),
        Some(other) => {
            cx.error(
                &loc,
                format!("c['services'] must be a list, not {}", other.describe()),
            );
            return Services::default();
        }
    };
    let mut out = Services::default();
    for item in items {
        match item {
            Node::Object { kind, loc, .. } if kind == "OldBuildCanceller" => {
                if let Some(c) = canceller(cx, loc, item) {
                    out.cancellers.push(c);
                }
            }
            Node::Object { kind, loc, .. } if super::reporters::is_reporter(kind) => {
                if let Some(r) = super::reporters::reporter(cx, loc, item) {
                    out.reporters.push(r);
                }
            }
            Node::Object { kind, loc, .. } => cx.warn(
                loc,
                format!(
                    "c['services']: {kind} is not supported by this version of kiln and is ignored"
                ),
            ),
            other => cx.error(
                &loc,
                format!("c['services'] must hold services, not {}", other.describe()),
            ),
        }
    }
    out
}

/// `util.OldBuildCanceller(name, filters=[(builder_names, util.SourceStampFilter(…)), …])`.
fn canceller(cx: &mut Cx, loc: &Location, s: &Node) -> Option<OldBuildCancellerConfig> {
    let name = cx.opt_string(s.field("name"), "the canceller's name", loc)?;
    let Some(Node::List(pairs)) = s.field("filters") else {
        cx.error(
            loc,
            format!("OldBuildCanceller '{name}' needs filters: a list of (builder names, SourceStampFilter)"),
        );
        return None;
    };
    let mut filters = Vec::new();
    for pair in pairs {
        let Node::List(parts) = pair else {
            cx.error(
                loc,
                format!("OldBuildCanceller '{name}': each filter is a (builder names, SourceStampFilter) pair"),
            );
            continue;
        };
        let [builders, filter] = parts.as_slice() else {
            cx.error(
                loc,
                format!("OldBuildCanceller '{name}': each filter is a (builder names, SourceStampFilter) pair"),
            );
            continue;
        };
        let builders = cx.strings(Some(builders), "the filter's builder names", loc);
        let Some(filter) = sourcestamp_filter(cx, filter, loc) else {
            continue;
        };
        filters.push((builders, filter));
    }
    Some(OldBuildCancellerConfig { name, filters })
}

/// `util.SourceStampFilter`: tests on project, codebase, repository and branch (`_eq`,
/// `_not_eq`, `_re`, `_not_re`).
fn sourcestamp_filter(cx: &mut Cx, f: &Node, loc: &Location) -> Option<ChangeFilter> {
    match f {
        Node::Object { kind, .. } if kind == "SourceStampFilter" => {}
        other => {
            cx.error(
                loc,
                format!(
                    "a filter must be a util.SourceStampFilter, not {}",
                    other.describe()
                ),
            );
            return None;
        }
    }
    let mut filter = ChangeFilter::default();
    for attr in [
        Attribute::Project,
        Attribute::Codebase,
        Attribute::Repository,
        Attribute::Branch,
    ] {
        let key = |suffix: &str| format!("{}{suffix}", attr.name());
        let given = |k: &str| f.field(k).filter(|n| **n != Node::None);
        let c = Criterion {
            eq: given(&key("_eq")).map(|n| optional_strings(cx, n, &key("_eq"), loc)),
            not_eq: given(&key("_not_eq")).map(|n| optional_strings(cx, n, &key("_not_eq"), loc)),
            re: given(&key("_re")).and_then(|n| pattern(cx, n, &key("_re"), loc)),
            not_re: given(&key("_not_re")).and_then(|n| pattern(cx, n, &key("_not_re"), loc)),
            func: None,
        };
        if c != Criterion::default() {
            filter.attributes.push((attr, c));
        }
    }
    Some(filter)
}
