//! `c['status']`, the 0.8 list of status targets: `html.WebStatus` (and `html.Waterfall`) become
//! `c['www']`, `mail.MailNotifier`, `status_push.HttpStatusPush` and
//! `status_gerrit.GerritStatusPush` become reporters, each with a warning that names the modern
//! spelling; targets kiln has no counterpart for are warned about and ignored.

use super::Cx;
use super::reporters;
use super::schedulers::given_node;
use crate::model::ReporterConfig;
use crate::node::{Location, Node};

/// What `c['status']` gives.
#[derive(Default)]
pub(super) struct Status {
    /// A `c['www']` made from the first `WebStatus`.
    pub(super) www: Option<Node>,
    pub(super) reporters: Vec<ReporterConfig>,
}

pub(super) fn status(cx: &mut Cx, node: Option<&Node>) -> Status {
    let loc = cx.key_loc("status");
    let items = match node {
        None | Some(Node::None) => return Status::default(),
        Some(Node::List(items)) => items.as_slice(),
        Some(other) => {
            cx.error(
                &loc,
                format!("c['status'] must be a list, not {}", other.describe()),
            );
            return Status::default();
        }
    };
    let mut out = Status::default();
    for item in items {
        let Node::Object { kind, loc, .. } = item else {
            cx.error(
                &loc,
                format!(
                    "c['status'] must hold status targets, not {}",
                    item.describe()
                ),
            );
            continue;
        };
        match kind.as_str() {
            "WebStatus" | "Waterfall" => {
                if out.www.is_some() {
                    cx.warn(loc, format!("c['status']: a second html.{kind} is ignored: kiln serves one web port"));
                    continue;
                }
                out.www = Some(web_status(cx, loc, kind, item));
            }
            "MailNotifier" | "HttpStatusPush" | "GerritStatusPush" => {
                let note = if kind == "HttpStatusPush" {
                    " (it posts each build as JSON, not 0.8's batches of events)"
                } else {
                    ""
                };
                cx.warn(
                    loc,
                    format!("c['status']: {kind} is a reporter in Buildbot 4; write c['services'] = [reporters.{kind}(…)]{note}"),
                );
                if let Some(r) = reporters::reporter(cx, loc, item) {
                    out.reporters.push(r);
                }
            }
            "IRC" => {
                cx.warn(
                    loc,
                    "c['status']: words.IRC is a reporter in Buildbot 4; write c['services'] = [reporters.IRC(…)]",
                );
                if let Some(r) = reporters::reporter(cx, loc, item) {
                    out.reporters.push(r);
                }
            }
            "PBListener" => cx.warn(
                loc,
                "c['status']: PBListener is ignored: status clients use the REST API and the /ws and /sse streams (kiln status, kiln watch)",
            ),
            "StatusPush" => cx.warn(
                loc,
                "c['status']: StatusPush's Python queue callback cannot run in kiln and is ignored; use reporters.HttpStatusPush or reporters.WebhookPush in c['services']",
            ),
            other => cx.error(
                loc,
                format!("c['status']: {other} is not a status target (html.WebStatus, mail.MailNotifier, words.IRC, client.PBListener, status_push.HttpStatusPush, status_gerrit.GerritStatusPush)"),
            ),
        }
    }
    out
}

/// The `c['www']` of a `WebStatus`: its port, its `authz` (`allowForce=False` without one
/// forbids forcing, as the old page had no force button), and its change hooks.
fn web_status(cx: &mut Cx, loc: &Location, kind: &str, w: &Node) -> Node {
    cx.warn(
        loc,
        format!("c['status']: html.{kind} is the 0.8 spelling; write c['www'] = {{'port': …, 'authz': util.Authz(…)}}"),
    );
    let mut www = Vec::new();
    let key = |k: &str| Node::Str(k.to_string());
    if let Some(port) = given_node(w.field("http_port")) {
        www.push((key("port"), port.clone()));
    }
    match given_node(w.field("authz")) {
        Some(authz) => www.push((key("authz"), authz.clone())),
        None => {
            if matches!(w.field("allowForce"), Some(Node::Bool(false))) {
                www.push((
                    key("authz"),
                    Node::Object {
                        kind: "Authz".into(),
                        loc: loc.clone(),
                        fields: vec![("forceBuild".into(), Node::Bool(false))],
                    },
                ));
            }
        }
    }
    for k in ["change_hook_dialects", "change_hook_auth"] {
        if let Some(v) = given_node(w.field(k)) {
            www.push((key(k), v.clone()));
        }
    }
    for k in [
        "public_html",
        "order_console_by_time",
        "revlink",
        "changecommentlink",
        "num_events",
        "num_events_max",
        "logRotateLength",
        "maxRotatedFiles",
    ] {
        if given_node(w.field(k)).is_some() {
            cx.warn(loc, format!("c['status']: html.{kind}'s {k} is not carried over; see c['www'] and c['revlink'] for what kiln offers"));
        }
    }
    Node::Dict(www)
}
