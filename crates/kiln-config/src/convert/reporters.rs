//! Reporters in `c['services']`: which class is which, the keywords every reporter shares,
//! `reporters.MailNotifier` (with the options of the old MailNotifier that Buildbot 4 removed,
//! mapped onto generators with a warning that names the modern spelling) and
//! `reporters.HttpStatusPush`. The generators and formatters, the forge and chat pushes, Gerrit
//! and IRC each have a module of their own.

use std::collections::BTreeSet;

use kiln_core::PropertyValue;
use kiln_core::render::Renderable;

use super::Cx;
use super::schedulers::{function, given_node};
use crate::model::*;
use crate::node::{Location, Node};

mod generators;
mod gerrit;
mod irc;
mod push;

use generators::{generator, log_selection, mode};
use gerrit::{gerrit, gerrit_default_generators};
use irc::irc;
use push::push;

/// The reporter classes kiln delivers.
pub(super) fn is_reporter(class: &str) -> bool {
    matches!(
        class,
        "MailNotifier" | "HttpStatusPush" | "GerritStatusPush" | "IRC"
    ) || PushService::from_class(class).is_some()
}

/// One reporter, or `None` after reporting what is wrong with it.
pub(super) fn reporter(cx: &mut Cx, loc: &Location, r: &Node) -> Option<ReporterConfig> {
    let Node::Object { kind, .. } = r else {
        return None;
    };
    let (kind, default_generators) = match kind.as_str() {
        "MailNotifier" => (
            ReporterKind::Mail(mail(cx, loc, r)?),
            mail_default_generators(cx, loc, r),
        ),
        "HttpStatusPush" => (
            ReporterKind::HttpPush(http_push(cx, loc, r)?),
            vec![GeneratorConfig {
                kind: GeneratorKind::BuildStatus {
                    mode: Mode::default_set(),
                    report_new: true,
                    formatter: FormatterConfig::Template {
                        template: None,
                        subject: None,
                        template_type: TemplateType::Json,
                        want_properties: true,
                        want_steps: false,
                        want_logs: false,
                        want_logs_content: LogSelection::None,
                        ctx: Vec::new(),
                    },
                },
                filter: ReportFilter::default(),
                add_patch: false,
                add_logs: LogSelection::None,
            }],
        ),
        "IRC" => (ReporterKind::Irc(Box::new(irc(cx, loc, r)?)), Vec::new()),
        "GerritStatusPush" => (
            ReporterKind::Gerrit(Box::new(gerrit(cx, loc, r)?)),
            gerrit_default_generators(cx, loc, r),
        ),
        other => {
            let service = PushService::from_class(other)?;
            let (config, defaults) = push(cx, loc, r, service)?;
            (ReporterKind::Push(Box::new(config)), defaults)
        }
    };
    let generators = match given_node(r.field("generators")) {
        None => default_generators,
        Some(Node::List(items)) => items.iter().filter_map(|g| generator(cx, loc, g)).collect(),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "{}: generators must be a list of generators, not {}",
                    kind.class(),
                    other.describe()
                ),
            );
            Vec::new()
        }
    };
    let name = match cx.opt_string(r.field("name"), "the reporter's name", loc) {
        Some(n) => n,
        None => {
            let mut n = kind.class().to_string();
            for g in &generators {
                n.push('_');
                n.push_str(g.kind.class());
            }
            n
        }
    };
    let retry = retry_policy(cx, loc, r);
    Some(ReporterConfig {
        name,
        kind,
        generators,
        retry,
    })
}

/// Two reporters with the same name would share one queue: that is an error, as Buildbot's
/// duplicate service names are.
pub(super) fn check_names(cx: &mut Cx, loc: &Location, reporters: &[ReporterConfig]) {
    let mut seen = BTreeSet::new();
    for r in reporters {
        if !seen.insert(r.name.as_str()) {
            cx.error(
                loc,
                format!(
                    "two reporters are named '{}': give each of them its own name=",
                    r.name
                ),
            );
        }
    }
}

/// kiln's delivery options, accepted by every reporter: `retries` (attempts after the first),
/// `retryDelay` and `maxRetryDelay` in seconds.
fn retry_policy(cx: &mut Cx, loc: &Location, r: &Node) -> RetryPolicy {
    let mut p = RetryPolicy::default();
    if let Some(n) = given_node(r.field("retries"))
        && let Some(v) = cx.int(n, "retries", loc)
    {
        match u32::try_from(v) {
            Ok(v) if v < 1000 => p.max_attempts = v + 1,
            _ => cx.error(loc, format!("retries must be from 0 to 999, not {v}")),
        }
    }
    for (key, slot) in [
        ("retryDelay", &mut p.initial_delay),
        ("maxRetryDelay", &mut p.max_delay),
    ] {
        if let Some(n) = given_node(r.field(key))
            && let Some(v) = cx.int(n, key, loc)
        {
            if (1..=86_400).contains(&v) {
                *slot = v;
            } else {
                cx.error(
                    loc,
                    format!("{key} must be from 1 to 86400 seconds, not {v}"),
                );
            }
        }
    }
    p.max_delay = p.max_delay.max(p.initial_delay);
    p
}

fn mail(cx: &mut Cx, loc: &Location, r: &Node) -> Option<MailConfig> {
    let Some(fromaddr) = cx.opt_string(r.field("fromaddr"), "fromaddr", loc) else {
        cx.error(
            loc,
            "MailNotifier needs fromaddr, the address mails come from",
        );
        return None;
    };
    if bare_address(&fromaddr).is_none() {
        cx.error(
            loc,
            format!("MailNotifier: fromaddr {fromaddr:?} is not a valid email address"),
        );
    }
    let relayhost = cx
        .opt_string(r.field("relayhost"), "relayhost", loc)
        .unwrap_or_else(|| "localhost".into());
    let smtp_port = match given_node(r.field("smtpPort")) {
        None => 25,
        Some(n) => match cx.int(n, "smtpPort", loc).map(u16::try_from) {
            Some(Ok(p)) if p > 0 => p,
            Some(_) => {
                cx.error(loc, "smtpPort must be a port number");
                25
            }
            None => 25,
        },
    };
    let use_tls = cx.boolean(r.field("useTls"), false, "useTls", loc);
    let use_smtps = cx.boolean(r.field("useSmtps"), false, "useSmtps", loc);
    if use_tls && use_smtps {
        cx.error(
            loc,
            "MailNotifier: useTls (STARTTLS) and useSmtps (TLS from the start) exclude each other",
        );
    }
    let smtp_user = given_node(r.field("smtpUser")).map(|n| cx.renderable(n, "smtpUser", loc));
    let smtp_password =
        given_node(r.field("smtpPassword")).map(|n| cx.renderable(n, "smtpPassword", loc));
    if smtp_user.is_some() != smtp_password.is_some() {
        cx.error(loc, "MailNotifier: smtpUser and smtpPassword go together");
    }
    let lookup = match given_node(r.field("lookup")) {
        None => None,
        Some(Node::Str(s)) if s == "users" => Some(MailLookup::Users),
        Some(Node::Str(s)) if !s.is_empty() && !s.contains('@') => {
            Some(MailLookup::Domain(s.clone()))
        }
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "MailNotifier: lookup must be a domain ('example.org') or 'users', not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    let extra_recipients = cx.strings(r.field("extraRecipients"), "extraRecipients", loc);
    for a in &extra_recipients {
        if bare_address(a).is_none() {
            cx.error(
                loc,
                format!("MailNotifier: extra recipient {a} is not a valid email"),
            );
        }
    }
    let send_to_interested_users = cx.boolean(
        r.field("sendToInterestedUsers"),
        true,
        "sendToInterestedUsers",
        loc,
    );
    let extra_headers = headers(cx, loc, r.field("extraHeaders"), "extraHeaders");
    for (k, _) in &extra_headers {
        if k.contains([':', '\r', '\n', ' ']) || k.is_empty() {
            cx.error(
                loc,
                format!("MailNotifier: {k:?} is not a mail header name"),
            );
        }
    }
    let dump_mails_to_log = cx.boolean(r.field("dumpMailsToLog"), false, "dumpMailsToLog", loc);
    if given_node(r.field("watchedWorkers")).is_some() {
        cx.warn(
            loc,
            "MailNotifier: watchedWorkers is the 1.x spelling; use generators=[reporters.WorkerMissingGenerator(workers=…)]",
        );
    }
    Some(MailConfig {
        fromaddr,
        relayhost,
        smtp_port,
        use_tls,
        use_smtps,
        smtp_user,
        smtp_password,
        lookup,
        extra_recipients,
        send_to_interested_users,
        extra_headers,
        dump_mails_to_log,
        ca_file: cx.opt_string(r.field("caFile"), "caFile", loc),
    })
}

/// The generators of a MailNotifier without `generators=`: the old options when it has them (the
/// brief's `mode`, `builders`, `categories`, `addLogs`, `addPatch`, `buildSetSummary`), each
/// warned about with its modern spelling; otherwise Buildbot 4's defaults, an html
/// `BuildStatusGenerator` with the patch attached and a `WorkerMissingGenerator` for all workers.
fn mail_default_generators(cx: &mut Cx, loc: &Location, r: &Node) -> Vec<GeneratorConfig> {
    let old = [
        "mode",
        "builders",
        "categories",
        "tags",
        "addLogs",
        "addPatch",
        "buildSetSummary",
    ];
    let uses_old = old.iter().any(|k| given_node(r.field(k)).is_some());
    for k in [
        "messageFormatter",
        "previousBuildGetter",
        "subject",
        "template",
    ] {
        if given_node(r.field(k)).is_some() {
            cx.error(
                loc,
                format!(
                    "MailNotifier: {k} is the 0.8 spelling kiln cannot map; write generators=[reporters.BuildStatusGenerator(message_formatter=reporters.MessageFormatter(…))]"
                ),
            );
        }
    }
    if !uses_old {
        return vec![
            GeneratorConfig {
                kind: GeneratorKind::BuildStatus {
                    mode: Mode::default_set(),
                    report_new: false,
                    formatter: FormatterConfig::default_template(TemplateType::Html),
                },
                filter: ReportFilter::default(),
                add_patch: true,
                add_logs: LogSelection::None,
            },
            GeneratorConfig {
                kind: GeneratorKind::WorkerMissing {
                    workers: None,
                    formatter: FormatterConfig::MissingWorker {
                        template: None,
                        subject: None,
                        template_type: TemplateType::Html,
                    },
                },
                filter: ReportFilter::default(),
                add_patch: false,
                add_logs: LogSelection::None,
            },
        ];
    }
    cx.warn(
        loc,
        "MailNotifier: mode, builders, categories, addLogs, addPatch and buildSetSummary are the 0.8 spellings; write generators=[reporters.BuildStatusGenerator(mode=…, builders=…, tags=…, add_patch=…, message_formatter=reporters.MessageFormatter(want_logs_content=…))] (reporters.BuildSetStatusGenerator for buildSetSummary)",
    );
    let mode = mode(cx, loc, r.field("mode")).unwrap_or_else(Mode::default_set);
    let mut filter = ReportFilter {
        builders: given_node(r.field("builders")).map(|n| cx.strings(Some(n), "builders", loc)),
        ..ReportFilter::default()
    };
    if let Some(n) = given_node(r.field("categories")).or(given_node(r.field("tags"))) {
        filter.tags = Some(cx.strings(Some(n), "categories", loc));
    }
    let logs = log_selection(cx, loc, r.field("addLogs"), "addLogs");
    let add_patch = cx.boolean(r.field("addPatch"), true, "addPatch", loc);
    let formatter = FormatterConfig::Template {
        template: None,
        subject: None,
        template_type: TemplateType::Plain,
        want_properties: true,
        want_steps: false,
        want_logs: false,
        want_logs_content: logs,
        ctx: Vec::new(),
    };
    let kind = if cx.boolean(r.field("buildSetSummary"), false, "buildSetSummary", loc) {
        GeneratorKind::BuildSet { mode, formatter }
    } else {
        GeneratorKind::BuildStatus {
            mode,
            report_new: false,
            formatter,
        }
    };
    vec![GeneratorConfig {
        kind,
        filter,
        add_patch,
        add_logs: LogSelection::None,
    }]
}

fn http_push(cx: &mut Cx, loc: &Location, r: &Node) -> Option<HttpPushConfig> {
    let Some(server_url) = cx.opt_string(r.field("serverUrl"), "serverUrl", loc) else {
        cx.error(loc, "HttpStatusPush needs serverUrl, where to post");
        return None;
    };
    if !(server_url.starts_with("http://") || server_url.starts_with("https://")) {
        cx.error(
            loc,
            format!("HttpStatusPush: serverUrl {server_url:?} is not an http:// or https:// URL"),
        );
    }
    if server_url.ends_with('/') {
        cx.error(
            loc,
            format!("HttpStatusPush: serverUrl {server_url:?} must not end with '/'"),
        );
    }
    let auth = match given_node(r.field("auth")) {
        None => None,
        Some(Node::List(pair)) if pair.len() == 2 => Some((
            cx.renderable(&pair[0], "auth's user", loc),
            cx.renderable(&pair[1], "auth's password", loc),
        )),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "HttpStatusPush: auth must be a (user, password) pair, not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    let headers = headers(cx, loc, r.field("headers"), "headers");
    let verify = verify(cx, loc, r, "HttpStatusPush");
    if given_node(r.field("cert")).is_some() {
        cx.error(
            loc,
            "HttpStatusPush: client certificates (cert=) are not supported by this version of kiln",
        );
    }
    let debug = cx.boolean(r.field("debug"), false, "debug", loc);
    Some(HttpPushConfig {
        server_url,
        auth,
        headers,
        verify,
        debug,
    })
}

/// A dict of header names to renderable values.
fn headers(
    cx: &mut Cx,
    loc: &Location,
    node: Option<&Node>,
    what: &str,
) -> Vec<(String, Renderable)> {
    match given_node(node) {
        None => Vec::new(),
        Some(Node::Dict(entries)) => entries
            .iter()
            .filter_map(|(k, v)| {
                let k = cx.string(k, &format!("a key of {what}"), loc)?;
                let v = cx.renderable(v, what, loc);
                Some((k, v))
            })
            .collect(),
        Some(other) => {
            cx.error(
                loc,
                format!("{what} must be a dict, not {}", other.describe()),
            );
            Vec::new()
        }
    }
}

fn verify(cx: &mut Cx, loc: &Location, r: &Node, class: &str) -> HttpVerify {
    match given_node(r.field("verify")) {
        None | Some(Node::Bool(true)) => HttpVerify::Roots,
        Some(Node::Bool(false)) => HttpVerify::Off,
        Some(Node::Str(path)) => HttpVerify::CaFile(path.clone()),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "{class}: verify must be True, False or a CA file's path, not {}",
                    other.describe()
                ),
            );
            HttpVerify::Roots
        }
    }
}
