//! `reporters.GerritStatusPush`, its Gerrit generators, and the 0.8 `reviewCB`, `startCB` and
//! `summaryCB` mapped onto them.

use super::*;

pub(super) fn gerrit(cx: &mut Cx, loc: &Location, r: &Node) -> Option<GerritConfig> {
    let Some(server) = cx.opt_string(r.field("server"), "server", loc) else {
        cx.error(loc, "GerritStatusPush needs server, the Gerrit host (or its http(s):// URL for the REST API)");
        return None;
    };
    let Some(username) = cx.opt_string(r.field("username"), "username", loc) else {
        cx.error(loc, "GerritStatusPush needs username");
        return None;
    };
    let port = match given_node(r.field("port")) {
        None => 29418,
        Some(n) => match cx.int(n, "port", loc).map(u16::try_from) {
            Some(Ok(p)) if p > 0 => p,
            _ => {
                cx.error(loc, "GerritStatusPush: port must be a port number");
                29418
            }
        },
    };
    let password = given_node(r.field("password")).map(|n| cx.renderable(n, "password", loc));
    let rest = server.starts_with("http://") || server.starts_with("https://");
    if rest && password.is_none() {
        cx.error(
            loc,
            "GerritStatusPush over the REST API (an http(s):// server) needs password, the user's HTTP password",
        );
    }
    Some(GerritConfig {
        server: server.trim_end_matches('/').to_string(),
        username,
        port,
        identity_file: cx.opt_string(r.field("identity_file"), "identity_file", loc),
        notify: cx.opt_string(r.field("notify"), "notify", loc),
        ssh_command: cx
            .opt_string(r.field("sshCommand"), "sshCommand", loc)
            .unwrap_or_else(|| "ssh".into()),
        password,
        verify: verify(cx, loc, r, "GerritStatusPush"),
    })
}

/// GerritStatusPush's generators without `generators=`: the old callbacks (`reviewCB`,
/// `startCB`, `summaryCB` and their `*Arg`) when given, with a warning naming the modern
/// spelling, or else Buildbot 4's default, one summary review per buildset.
pub(super) fn gerrit_default_generators(
    cx: &mut Cx,
    loc: &Location,
    r: &Node,
) -> Vec<GeneratorConfig> {
    let generator = |stage, callback, arg| GeneratorConfig {
        kind: GeneratorKind::Gerrit {
            stage,
            callback,
            arg,
        },
        filter: ReportFilter::default(),
        add_patch: false,
        add_logs: LogSelection::None,
    };
    let mut out = Vec::new();
    for (key, arg, stage) in [
        ("startCB", "startArg", GerritStage::Start),
        ("reviewCB", "reviewArg", GerritStage::End),
        ("summaryCB", "summaryArg", GerritStage::BuildSet),
    ] {
        let Some(n) = given_node(r.field(key)) else {
            continue;
        };
        let callback = match n {
            Node::Object { kind, .. } if kind == "GerritCallback" => {
                match (n.field("func"), n.field("call")) {
                    (Some(Node::Function(func, _)), Some(Node::Function(call, _))) => {
                        GerritCallback {
                            func: *func,
                            call: Some(*call),
                        }
                    }
                    _ => continue,
                }
            }
            other => {
                cx.error(
                    loc,
                    format!(
                        "GerritStatusPush: {key} must be a function, not {}",
                        other.describe()
                    ),
                );
                continue;
            }
        };
        let arg = given_node(r.field(arg))
            .map(|n| cx.value(n, arg, loc))
            .unwrap_or(PropertyValue::Null);
        out.push(generator(stage, Some(callback), arg));
    }
    if out.is_empty() {
        return vec![generator(GerritStage::BuildSet, None, PropertyValue::Null)];
    }
    cx.warn(
        loc,
        "GerritStatusPush: reviewCB, startCB and summaryCB are the 0.8 spellings; write generators=[reporters.GerritBuildEndStatusGenerator(callback=…, callback_arg=…)] (GerritBuildStartStatusGenerator, GerritBuildSetStatusGenerator), whose callbacks return reporters.makeReviewResult(message, (reporters.GERRIT_LABEL_VERIFIED, 1))",
    );
    out
}
