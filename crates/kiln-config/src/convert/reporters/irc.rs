//! `reporters.IRC` (and 0.8's `words.IRC`): server, channels, notify events and `authz`.

use super::*;

/// `reporters.IRC` (and 0.8's `words.IRC`).
pub(super) fn irc(cx: &mut Cx, loc: &Location, r: &Node) -> Option<IrcConfig> {
    let text = |cx: &mut Cx, key: &str| cx.opt_string(r.field(key), key, loc);
    let Some(host) = text(cx, "host") else {
        cx.error(loc, "IRC needs host, the IRC server");
        return None;
    };
    let Some(nick) = text(cx, "nick") else {
        cx.error(loc, "IRC needs nick, the bot's nickname");
        return None;
    };
    let port = match given_node(r.field("port")) {
        None => 6667,
        Some(n) => match cx.int(n, "port", loc).map(u16::try_from) {
            Some(Ok(p)) if p > 0 => p,
            _ => {
                cx.error(loc, "IRC: port must be a port number");
                6667
            }
        },
    };
    let mut channels = Vec::new();
    match given_node(r.field("channels")) {
        None => {}
        Some(Node::List(items)) => {
            for c in items {
                match c {
                    Node::Str(name) => channels.push((name.clone(), None)),
                    Node::Dict(_) => {
                        let name = cx.opt_string(c.field("channel"), "a channel's name", loc);
                        let key = cx.opt_string(c.field("password"), "a channel's password", loc);
                        match name {
                            Some(n) => channels.push((n, key)),
                            None => cx.error(loc, "IRC: a channel dict needs 'channel'"),
                        }
                    }
                    other => cx.error(
                        loc,
                        format!(
                            "IRC: a channel is a name or {{'channel': …, 'password': …}}, not {}",
                            other.describe()
                        ),
                    ),
                }
            }
        }
        Some(other) => cx.error(
            loc,
            format!("IRC: channels must be a list, not {}", other.describe()),
        ),
    }
    for (c, _) in &channels {
        if !c.starts_with(['#', '&', '+', '!']) {
            cx.error(
                loc,
                format!("IRC: {c:?} is not a channel name (they start with '#')"),
            );
        }
    }
    let notify_events = cx.strings(r.field("notify_events"), "notify_events", loc);
    for e in &notify_events {
        if !irc_event_valid(e) {
            cx.error(
                loc,
                format!("IRC: notify event {e:?} is not one of {} or a transition such as failureToSuccess", IRC_EVENTS.join(", ")),
            );
        }
    }
    let seconds = |cx: &mut Cx, key: &str, default: u64| match given_node(r.field(key)) {
        None => default,
        Some(n) => match cx.number(Some(n), key, loc) {
            Some(v) if (0.0..=3600.0).contains(&v) => v.ceil() as u64,
            _ => {
                cx.error(loc, format!("IRC: {key} must be from 0 to 3600 seconds"));
                default
            }
        },
    };
    let mut authz: Vec<(String, IrcAllow)> = Vec::new();
    let allow = |cx: &mut Cx, v: &Node| match v {
        Node::Bool(true) => Some(IrcAllow::Everyone),
        Node::Bool(false) => Some(IrcAllow::Nobody),
        n @ Node::List(_) => Some(IrcAllow::Nicks(cx.strings(
            Some(n),
            "an authz entry's nicks",
            loc,
        ))),
        other => {
            cx.error(
                loc,
                format!(
                    "IRC: an authz entry is True, False or a list of nicks, not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    if let Some(node) = given_node(r.field("authz")) {
        let Node::Dict(entries) = node else {
            cx.error(
                loc,
                format!("IRC: authz must be a dict, not {}", node.describe()),
            );
            return None;
        };
        for (k, v) in entries {
            let commands: Vec<String> = match k {
                Node::Str(s) => vec![s.clone()],
                n @ Node::List(_) => cx.strings(Some(n), "an authz key", loc),
                other => {
                    cx.error(
                        loc,
                        format!(
                            "IRC: an authz key is a command or a tuple of commands, not {}",
                            other.describe()
                        ),
                    );
                    continue;
                }
            };
            if let Some(a) = allow(cx, v) {
                for c in commands {
                    authz.push((c, a.clone()));
                }
            }
        }
    }
    for (key, commands) in [
        ("allowForce", &["force", "stop"][..]),
        ("allowShutdown", &["shutdown"][..]),
    ] {
        if let Some(v) = given_node(r.field(key)) {
            if given_node(r.field("authz")).is_some() {
                cx.error(
                    loc,
                    format!("IRC: {key} and authz exclude each other; write authz={{…}} alone"),
                );
            }
            cx.warn(
                loc,
                format!(
                    "IRC: {key} is deprecated; write authz={{{}: True}}",
                    commands
                        .iter()
                        .map(|c| format!("'{c}'"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            if let Some(a) = allow(cx, v) {
                for c in commands {
                    authz.push((c.to_string(), a.clone()));
                }
            }
        }
    }
    if cx.boolean(r.field("useSASL"), false, "useSASL", loc) {
        cx.error(
            loc,
            "IRC: useSASL is not supported by this version of kiln; the password goes to NickServ",
        );
    }
    Some(IrcConfig {
        host,
        port,
        password: given_node(r.field("password")).map(|n| cx.renderable(n, "password", loc)),
        channels,
        pm_to_nicks: cx.strings(r.field("pm_to_nicks"), "pm_to_nicks", loc),
        notify_events,
        notice_on_channel: cx.boolean(r.field("noticeOnChannel"), false, "noticeOnChannel", loc),
        use_colors: cx.boolean(r.field("useColors"), true, "useColors", loc),
        use_ssl: cx.boolean(r.field("useSSL"), false, "useSSL", loc),
        ca_file: cx.opt_string(r.field("caFile"), "caFile", loc),
        lost_delay: seconds(cx, "lostDelay", 3),
        failed_delay: seconds(cx, "failedDelay", 50),
        tags: given_node(r.field("tags")).map(|n| cx.strings(Some(n), "tags", loc)),
        authz,
        nick,
    })
}
