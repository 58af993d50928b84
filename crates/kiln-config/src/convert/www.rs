//! `c['www']`: the web port's address and the change hooks' dialects, credentials and limits.

use std::collections::BTreeMap;

use kiln_core::PropertyValue;

use super::{Cx, DIALECTS};
use crate::model::*;
use crate::node::{Location, Node};

/// The settings of `c['www']`, for a hint when one is misspelled.
const WWW_KEYS: &[&str] = &[
    "port",
    "host",
    "interface",
    "change_hook_dialects",
    "change_hook_auth",
    "change_hook_max_body",
    "change_hook_max_changes",
    "api_timeout",
    "api_large_queries",
    "buildbot_www",
    "plugins",
    "ui_default_config",
    "versions",
    "logfileName",
    "logRotateLength",
    "maxRotatedFiles",
    "changecommentlink",
    "auth",
    "cookie_expiration_time",
    "allowed_origins",
    "allowed_hosts",
    "authz",
    "custom_templates_dir",
    "default_page",
    "debug",
    "jsonp",
    "project_widgets",
    "theme",
    "ws_ping_interval",
    "avatar_methods",
    "json_cache_seconds",
    "rest_minimum_version",
    "graphql",
];

/// How long a login lasts unless `cookie_expiration_time` says: a week, as in Buildbot.
const DEFAULT_SESSION_LIFETIME: i64 = 7 * 24 * 3600;

/// The positive whole number `c['www'][key]` holds, or an error at `loc` naming its unit.
fn positive(cx: &mut Cx, v: &Node, loc: &Location, key: &str, unit: &str) -> Option<usize> {
    let name = format!("c['www']['{key}']");
    let n = cx.int(v, &name, loc)?;
    match usize::try_from(n) {
        Ok(n) if n > 0 => Some(n),
        _ => {
            cx.error(loc, format!("{name} must be a positive number of {unit}"));
            None
        }
    }
}

/// `c['www']`: the web port and the change hooks.
pub(super) fn www(cx: &mut Cx, node: Option<&Node>) -> WwwConfig {
    let mut www = WwwConfig {
        port: None,
        host: "127.0.0.1".into(),
        tls: None,
        login_link: None,
        change_hook_dialects: BTreeMap::new(),
        auth: WebAuth::None,
        authz: None,
        session_lifetime: DEFAULT_SESSION_LIFETIME,
        allowed_origins: Vec::new(),
        allowed_hosts: Vec::new(),
        change_hook_auth: Vec::new(),
        change_hook_max_body: DEFAULT_HOOK_MAX_BODY,
        change_hook_max_changes: DEFAULT_HOOK_MAX_CHANGES,
        api_timeout: DEFAULT_API_TIMEOUT,
        api_large_queries: DEFAULT_API_LARGE_QUERIES,
        buildbot_www: None,
        plugins: BTreeMap::new(),
        versions: Vec::new(),
        ui_default_config: BTreeMap::new(),
        custom_templates_dir: None,
        change_comment_link: None,
        logfile_name: "http.log".into(),
        log_rotate_length: 10_000_000,
        max_rotated_files: 10,
        frontend: BTreeMap::new(),
        theme: BTreeMap::new(),
        ws_ping_interval: 0,
    };
    let mut old_login = super::auth::OldLogin::default();
    if let Some(w) = node {
        let loc = cx.key_loc("www");
        match w {
            Node::Dict(settings) => {
                for (k, v) in settings {
                    match k {
                        Node::Str(k) if k == "port" => {
                            if let Some(listen) = cx.listen(v, "c['www']['port']", &loc) {
                                www.port = Some(listen.port);
                                if let Some(i) = listen.interface {
                                    www.host = i;
                                }
                                www.tls = listen.tls;
                            }
                        }
                        Node::Str(k) if k == "host" || k == "interface" => {
                            if let Some(h) = cx.string(v, "c['www']['host']", &loc) {
                                match h.parse::<std::net::IpAddr>() {
                                    Ok(ip) => www.host = ip.to_string(),
                                    Err(_) => cx.error(&loc, format!("c['www']['{k}'] must be an IP address to listen on, not {h:?}")),
                                }
                            }
                        }
                        Node::Str(k) if k == "change_hook_dialects" => {
                            www.change_hook_dialects = change_hook_dialects(cx, v, &loc);
                        }
                        Node::Str(k) if k == "change_hook_auth" => {
                            www.change_hook_auth = change_hook_auth(cx, v, &loc);
                        }
                        Node::Str(k) if k == "change_hook_max_body" => {
                            if let Some(n) = positive(cx, v, &loc, k, "bytes") {
                                www.change_hook_max_body = n;
                            }
                        }
                        Node::Str(k) if k == "change_hook_max_changes" => {
                            if let Some(n) = positive(cx, v, &loc, k, "changes") {
                                www.change_hook_max_changes = n;
                            }
                        }
                        Node::Str(k) if k == "api_timeout" => {
                            if let Some(n) = positive(cx, v, &loc, k, "seconds") {
                                www.api_timeout = n as u64;
                            }
                        }
                        Node::Str(k) if k == "api_large_queries" => {
                            if let Some(n) = positive(cx, v, &loc, k, "requests") {
                                www.api_large_queries = n;
                            }
                        }
                        Node::Str(k) if k == "buildbot_www" => {
                            www.buildbot_www = cx
                                .string(v, "c['www']['buildbot_www']", &loc)
                                .map(std::path::PathBuf::from);
                        }
                        Node::Str(k) if k == "plugins" => {
                            www.plugins = cx.properties(Some(v), "c['www']['plugins']", &loc);
                        }
                        Node::Str(k) if k == "ui_default_config" => {
                            www.ui_default_config =
                                cx.properties(Some(v), "c['www']['ui_default_config']", &loc);
                        }
                        Node::Str(k) if k == "versions" => www.versions = versions(cx, v, &loc),
                        Node::Str(k) if k == "logfileName" => {
                            www.logfile_name = match v {
                                Node::None => String::new(),
                                v => cx
                                    .string(v, "c['www']['logfileName']", &loc)
                                    .unwrap_or_default(),
                            };
                        }
                        Node::Str(k) if k == "logRotateLength" => {
                            match cx.int(v, "c['www']['logRotateLength']", &loc).map(u64::try_from) {
                                Some(Ok(n)) if n > 0 => www.log_rotate_length = n,
                                Some(_) => cx.error(&loc, "c['www']['logRotateLength'] must be a positive number of bytes"),
                                None => {}
                            }
                        }
                        Node::Str(k) if k == "maxRotatedFiles" => {
                            match cx
                                .int(v, "c['www']['maxRotatedFiles']", &loc)
                                .map(usize::try_from)
                            {
                                Some(Ok(n)) => www.max_rotated_files = n,
                                Some(_) => cx.error(
                                    &loc,
                                    "c['www']['maxRotatedFiles'] must be a number of files",
                                ),
                                None => {}
                            }
                        }
                        Node::Str(k) if k == "changecommentlink" => {
                            www.change_comment_link = comment_link(cx, v, &loc);
                        }
                        Node::Str(k) if k == "auth" => www.auth = super::auth::auth(cx, v),
                        Node::Str(k) if k == "cookie_expiration_time" => {
                            match cx.int(v, "c['www']['cookie_expiration_time'] (seconds)", &loc) {
                                Some(n) if n > 0 => www.session_lifetime = n,
                                Some(_) => cx.error(&loc, "c['www']['cookie_expiration_time'] must be a positive number of seconds"),
                                None => {}
                            }
                        }
                        Node::Str(k) if k == "allowed_origins" => {
                            www.allowed_origins =
                                cx.strings(Some(v), "c['www']['allowed_origins']", &loc);
                        }
                        Node::Str(k) if k == "allowed_hosts" => {
                            www.allowed_hosts =
                                cx.strings(Some(v), "c['www']['allowed_hosts']", &loc);
                            if www
                                .allowed_hosts
                                .iter()
                                .any(|h| h.is_empty() || h.contains(['/', ':', ' ']))
                            {
                                cx.error(&loc, "c['www']['allowed_hosts'] lists host names (such as 'ci.example.org', '.example.org' or '*'), without a scheme, port or path");
                            }
                        }
                        Node::Str(k) if k == "authz" => {
                            www.authz = super::auth::authz(cx, v);
                            old_login = super::auth::old_login(cx, v);
                        }
                        Node::Str(k) if k == "custom_templates_dir" => {
                            www.custom_templates_dir =
                                cx.string(v, "c['www']['custom_templates_dir']", &loc);
                        }
                        Node::Str(k) if k == "default_page" => {
                            if let Some(page) = cx.string(v, "c['www']['default_page']", &loc) {
                                www.frontend.insert(k.clone(), PropertyValue::Str(page));
                            }
                        }
                        Node::Str(k) if k == "debug" || k == "jsonp" => {
                            let what = format!("c['www']['{k}']");
                            let on = cx.boolean(Some(v), false, &what, &loc);
                            www.frontend.insert(k.clone(), PropertyValue::Bool(on));
                        }
                        Node::Str(k) if k == "project_widgets" => {
                            let value = cx.value(v, "c['www']['project_widgets']", &loc);
                            www.frontend.insert(k.clone(), value);
                        }
                        Node::Str(k) if k == "theme" => www.theme = theme(cx, v, &loc),
                        Node::Str(k) if k == "ws_ping_interval" => {
                            match cx.int(v, "c['www']['ws_ping_interval'] (seconds)", &loc).map(u64::try_from) {
                                Some(Ok(n)) => www.ws_ping_interval = n,
                                Some(Err(_)) => cx.error(&loc, "c['www']['ws_ping_interval'] must be a number of seconds, 0 for none"),
                                None => {}
                            }
                        }
                        Node::Str(k)
                            if [
                                "avatar_methods",
                                "json_cache_seconds",
                                "rest_minimum_version",
                                "graphql",
                            ]
                            .contains(&k.as_str()) =>
                        {
                            cx.warn(&loc, format!("c['www']['{k}'] is not supported by this version of kiln and is ignored"));
                        }
                        other => {
                            let (name, hint) = match other {
                                Node::Str(s) => (
                                    s.clone(),
                                    crate::kinds::did_you_mean(s, WWW_KEYS.iter().copied()),
                                ),
                                o => (o.describe(), String::new()),
                            };
                            cx.error(&loc, format!("unknown c['www'] setting {name}{hint}"));
                        }
                    }
                }
            }
            other => cx.error(
                &loc,
                format!("c['www'] must be a dict, not {}", other.describe()),
            ),
        }
    }
    apply_old_login(cx, &mut www, old_login);
    warn_open_hooks(cx, &www);
    www
}

/// The dialects whose senders can prove who they are with a shared secret (`secret`).
const SIGNED_DIALECTS: [&str; 3] = ["github", "gitlab", "gitea"];

/// A hook that anyone who reaches the web port may post to is worth a warning: it makes changes,
/// and so builds, of whatever it is sent.
fn warn_open_hooks(cx: &mut Cx, www: &WwwConfig) {
    if !www.change_hook_auth.is_empty() {
        return;
    }
    let loc = cx.key_loc("www");
    for (name, options) in &www.change_hook_dialects {
        if name == "poller" {
            continue;
        }
        let secret = matches!(options.get("secret"), Some(PropertyValue::Str(s)) if !s.is_empty());
        if SIGNED_DIALECTS.contains(&name.as_str()) && secret {
            continue;
        }
        let fix = if SIGNED_DIALECTS.contains(&name.as_str()) {
            "give it a 'secret' or set c['www']['change_hook_auth']"
        } else {
            "set c['www']['change_hook_auth']"
        };
        cx.warn(
            &loc,
            format!(
                "the change hook '{name}' takes changes from anyone who can reach the web port: {fix}"
            ),
        );
    }
}

/// `c['www']['theme']`: CSS variables of the front-end and their values. A value goes into a
/// style sheet, so one that could end its rule or the sheet is refused.
fn theme(cx: &mut Cx, node: &Node, loc: &Location) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Node::Dict(entries) = node else {
        cx.error(
            loc,
            format!("c['www']['theme'] must be a dict, not {}", node.describe()),
        );
        return out;
    };
    for (k, v) in entries {
        let (Node::Str(name), Node::Str(value)) = (k, v) else {
            cx.error(
                loc,
                "c['www']['theme'] maps CSS variable names to CSS values, both strings",
            );
            continue;
        };
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            cx.error(
                loc,
                format!("c['www']['theme']: {name:?} is not a CSS variable name"),
            );
        } else if value.contains(['<', '>', '{', '}', ';', '\n']) {
            cx.error(
                loc,
                format!("c['www']['theme']['{name}']: {value:?} is not a plain CSS value"),
            );
        } else {
            out.insert(name.clone(), value.clone());
        }
    }
    out
}

/// The old WebStatus form named how users log in inside its `Authz`: its `auth=` counts when
/// `c['www']['auth']` names none; `useHttpHeader=True` believes the user name of the HTTP
/// Basic credentials a reverse proxy checked and passed on (from the loopback address only);
/// `httpLoginLink` is the login link shown to anonymous visitors.
fn apply_old_login(cx: &mut Cx, www: &mut WwwConfig, old: super::auth::OldLogin) {
    if let Some(auth) = old.auth {
        if www.auth == WebAuth::None {
            www.auth = auth;
        } else {
            let loc = cx.key_loc("www");
            cx.warn(
                &loc,
                "c['www']['auth'] is set, so the auth= of c['www']['authz'] is ignored",
            );
        }
    }
    if old.use_http_header {
        www.auth = WebAuth::RemoteUser {
            header: "Authorization".into(),
            header_regex: "(?P<username>.+)".into(),
            trusted_proxies: vec!["127.0.0.1".into(), "::1".into()],
        };
    }
    www.login_link = old.login_link;
}

/// `c['www']['change_hook_auth']`: a list of Twisted credential strings, of which kiln knows
/// `file:PATH` (lines of `user:password`, read when a hook is called) and
/// `memory:USER:PASSWORD[:USER:PASSWORD…]`.
/// `changecommentlink`: `(pattern, url, title)`, the pattern a regular expression.
fn comment_link(cx: &mut Cx, node: &Node, loc: &Location) -> Option<CommentLink> {
    let Node::List(parts) = node else {
        cx.error(
            loc,
            format!(
                "c['www']['changecommentlink'] must be (pattern, url, title), not {}",
                node.describe()
            ),
        );
        return None;
    };
    let texts: Vec<String> = parts
        .iter()
        .filter_map(|p| cx.string(p, "a part of changecommentlink", loc))
        .collect();
    let [pattern, url, title] = texts.as_slice() else {
        cx.error(
            loc,
            "c['www']['changecommentlink'] must be (pattern, url, title)",
        );
        return None;
    };
    if let Err(e) = regex::Regex::new(pattern) {
        cx.error(
            loc,
            format!("changecommentlink's pattern {pattern:?} is not a regular expression: {e}"),
        );
        return None;
    }
    Some(CommentLink {
        pattern: pattern.clone(),
        url: url.clone(),
        title: title.clone(),
    })
}

/// `versions`: a list of (name, version) pairs for the front-end's About page.
fn versions(cx: &mut Cx, node: &Node, loc: &Location) -> Vec<(String, String)> {
    let Node::List(items) = node else {
        cx.error(
            loc,
            format!(
                "c['www']['versions'] must be a list of (name, version) pairs, not {}",
                node.describe()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Node::List(pair) if pair.len() == 2 => {
                if let (Some(n), Some(v)) = (
                    cx.string(&pair[0], "a version's name", loc),
                    cx.string(&pair[1], "a version", loc),
                ) {
                    out.push((n, v));
                }
            }
            other => cx.error(
                loc,
                format!(
                    "c['www']['versions'] holds (name, version) pairs, not {}",
                    other.describe()
                ),
            ),
        }
    }
    out
}

fn change_hook_auth(cx: &mut Cx, node: &Node, loc: &Location) -> Vec<HookCredentials> {
    let items = match node {
        Node::List(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    let mut out = Vec::new();
    for item in items {
        let Some(text) = cx.string(item, "c['www']['change_hook_auth'] entries", loc) else {
            continue;
        };
        if let Some(path) = text.strip_prefix("file:") {
            out.push(HookCredentials::File(path.to_string()));
        } else if let Some(pairs) = text.strip_prefix("memory:") {
            let parts: Vec<&str> = pairs.split(':').collect();
            if !parts.len().is_multiple_of(2) || parts.iter().any(|p| p.is_empty()) {
                cx.error(loc, "c['www']['change_hook_auth']: memory: takes user:password pairs, as in 'memory:alice:s3cret'");
                continue;
            }
            out.push(HookCredentials::Users(
                parts
                    .chunks(2)
                    .map(|c| (c[0].to_string(), c[1].to_string()))
                    .collect(),
            ));
        } else {
            cx.error(
                loc,
                format!(
                    "c['www']['change_hook_auth']: '{}' is not supported; use 'file:PATH' or 'memory:USER:PASSWORD'",
                    text.split(':').next().unwrap_or_default()
                ),
            );
        }
    }
    if out.is_empty() && !items.is_empty() {
        cx.error(loc, "c['www']['change_hook_auth'] names no usable credentials; the hooks would be closed to everyone");
    }
    out
}

/// `c['www']['change_hook_dialects']`: each dialect is `True` or a dict of options; `False` leaves
/// it off.
fn change_hook_dialects(
    cx: &mut Cx,
    node: &Node,
    loc: &Location,
) -> BTreeMap<String, BTreeMap<String, PropertyValue>> {
    let mut out = BTreeMap::new();
    let Node::Dict(entries) = node else {
        cx.error(
            loc,
            format!(
                "c['www']['change_hook_dialects'] must be a dict, not {}",
                node.describe()
            ),
        );
        return out;
    };
    for (name, options) in entries {
        let Some(name) = cx.string(name, "a change hook dialect name", loc) else {
            continue;
        };
        if !DIALECTS.contains(&name.as_str()) {
            cx.error(
                loc,
                format!("the change hook dialect '{name}' is not supported by this version of kiln (supported: {})", DIALECTS.join(", ")),
            );
            continue;
        }
        match options {
            Node::Bool(false) => {}
            Node::Bool(true) => {
                out.insert(name, BTreeMap::new());
            }
            Node::Dict(_) => {
                let options =
                    cx.properties(Some(options), &format!("the options of '{name}'"), loc);
                let strict = matches!(options.get("strict"), Some(PropertyValue::Bool(true)));
                let secret =
                    matches!(options.get("secret"), Some(PropertyValue::Str(s)) if !s.is_empty());
                if strict && !secret {
                    cx.error(
                        loc,
                        format!("change hook dialect '{name}': strict needs a secret"),
                    );
                }
                out.insert(name, options);
            }
            other => cx.error(
                loc,
                format!(
                    "change hook dialect '{name}' must be True or a dict of options, not {}",
                    other.describe()
                ),
            ),
        }
    }
    out
}
