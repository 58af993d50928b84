//! Reporters in `c['services']`: `reporters.MailNotifier` and `reporters.HttpStatusPush`, their
//! generators and message formatters, and the options of the old MailNotifier that Buildbot 4
//! removed, mapped onto generators with a warning that names the modern spelling.

use std::collections::BTreeSet;

use kiln_core::PropertyValue;
use kiln_core::render::Renderable;

use super::Cx;
use super::schedulers::{function, given_node};
use crate::model::*;
use crate::node::{Location, Node};

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

fn generator(cx: &mut Cx, outer: &Location, g: &Node) -> Option<GeneratorConfig> {
    let Node::Object { kind, loc, .. } = g else {
        cx.error(
            outer,
            format!("generators must hold generators, not {}", g.describe()),
        );
        return None;
    };
    let loc = loc.clone();
    let filter = report_filter(cx, &loc, g);
    let add_patch = cx.boolean(g.field("add_patch"), false, "add_patch", &loc);
    let add_logs = log_selection(cx, &loc, g.field("add_logs"), "add_logs");
    let formatter_or =
        |cx: &mut Cx, key: &str, default: FormatterConfig| match given_node(g.field(key)) {
            None => Some(default),
            Some(f) => formatter(cx, &loc, f),
        };
    let kind = match kind.as_str() {
        "BuildStatusGenerator" => GeneratorKind::BuildStatus {
            mode: mode(cx, &loc, g.field("mode")).unwrap_or_else(Mode::default_set),
            report_new: cx.boolean(g.field("report_new"), false, "report_new", &loc),
            formatter: formatter_or(
                cx,
                "message_formatter",
                FormatterConfig::default_template(TemplateType::Plain),
            )?,
        },
        "BuildStartEndStatusGenerator" => GeneratorKind::BuildStartEnd {
            start: formatter_or(
                cx,
                "start_formatter",
                FormatterConfig::text("Build started."),
            )?,
            end: formatter_or(cx, "end_formatter", FormatterConfig::text("Build done."))?,
        },
        "BuildSetStatusGenerator" => GeneratorKind::BuildSet {
            mode: mode(cx, &loc, g.field("mode")).unwrap_or_else(Mode::default_set),
            formatter: formatter_or(
                cx,
                "message_formatter",
                FormatterConfig::default_template(TemplateType::Plain),
            )?,
        },
        "BuildSetCombinedStatusGenerator" => GeneratorKind::BuildSetCombined {
            formatter: formatter_or(
                cx,
                "message_formatter",
                FormatterConfig::default_template(TemplateType::Plain),
            )?,
        },
        "BuildRequestGenerator" => GeneratorKind::BuildRequest {
            formatter: formatter_or(cx, "formatter", FormatterConfig::text("Build pending."))?,
        },
        "GerritBuildSetStatusGenerator"
        | "GerritBuildStartStatusGenerator"
        | "GerritBuildEndStatusGenerator" => GeneratorKind::Gerrit {
            stage: match kind.as_str() {
                "GerritBuildSetStatusGenerator" => GerritStage::BuildSet,
                "GerritBuildStartStatusGenerator" => GerritStage::Start,
                _ => GerritStage::End,
            },
            callback: match given_node(g.field("callback")) {
                None => None,
                Some(n) => Some(GerritCallback {
                    func: function(cx, n, "the generator's callback", &loc)?,
                    call: None,
                }),
            },
            arg: given_node(g.field("callback_arg"))
                .map(|n| cx.value(n, "callback_arg", &loc))
                .unwrap_or(PropertyValue::Null),
        },
        "WorkerMissingGenerator" => GeneratorKind::WorkerMissing {
            workers: match given_node(g.field("workers")) {
                None => None,
                Some(Node::Str(s)) if s == "all" => None,
                Some(n) => Some(cx.strings(Some(n), "workers", &loc)),
            },
            formatter: formatter_or(
                cx,
                "message_formatter",
                FormatterConfig::MissingWorker {
                    template: None,
                    subject: None,
                    template_type: TemplateType::Plain,
                },
            )?,
        },
        other => {
            cx.error(
                &loc,
                format!("{other} is not a report generator kiln knows (BuildStatusGenerator, BuildStartEndStatusGenerator, BuildSetStatusGenerator, BuildSetCombinedStatusGenerator, BuildRequestGenerator, WorkerMissingGenerator)"),
            );
            return None;
        }
    };
    if given_node(g.field("subject")).is_some() {
        cx.warn(
            &loc,
            format!(
                "{}: subject is ignored, as in Buildbot 4; give the message formatter a subject",
                kind.class()
            ),
        );
    }
    Some(GeneratorConfig {
        kind,
        filter,
        add_patch,
        add_logs,
    })
}

/// `builders`, `tags`, `schedulers` and `branches`; `builders` and `tags` exclude each other, as
/// in Buildbot.
fn report_filter(cx: &mut Cx, loc: &Location, g: &Node) -> ReportFilter {
    let list =
        |cx: &mut Cx, key: &str| given_node(g.field(key)).map(|n| cx.strings(Some(n), key, loc));
    let f = ReportFilter {
        builders: list(cx, "builders"),
        tags: list(cx, "tags"),
        schedulers: list(cx, "schedulers"),
        branches: list(cx, "branches"),
    };
    if f.builders.is_some() && f.tags.is_some() {
        cx.error(loc, "a generator takes builders or tags, not both");
    }
    f
}

/// A `mode`: a string shortcut (`'all'`, `'warnings'`, or one mode) or a list of modes.
fn mode(cx: &mut Cx, loc: &Location, node: Option<&Node>) -> Option<Vec<Mode>> {
    let one = |cx: &mut Cx, name: &str| {
        let m = Mode::from_name(name);
        if m.is_none() {
            cx.error(
                loc,
                format!("mode {name:?} is not one of change, failing, passing, problem, warnings, exception, cancelled (or 'all')"),
            );
        }
        m
    };
    match given_node(node)? {
        Node::Str(s) if s == "all" => Some(vec![
            Mode::Failing,
            Mode::Passing,
            Mode::Warnings,
            Mode::Exception,
            Mode::Cancelled,
        ]),
        Node::Str(s) if s == "warnings" => Some(vec![Mode::Failing, Mode::Warnings]),
        Node::Str(s) => Some(one(cx, s).into_iter().collect()),
        Node::List(items) => {
            let mut out = Vec::new();
            for i in items {
                match i {
                    Node::Str(s) if s == "all" => cx.error(
                        loc,
                        "mode 'all' is not valid in a list and must be passed in as a separate string",
                    ),
                    Node::Str(s) => out.extend(one(cx, s)),
                    other => cx.error(
                        loc,
                        format!("a mode must be a string, not {}", other.describe()),
                    ),
                }
            }
            Some(out)
        }
        other => {
            cx.error(
                loc,
                format!(
                    "mode must be a string or a list of strings, not {}",
                    other.describe()
                ),
            );
            None
        }
    }
}

/// Which logs: `True` for all, `False`/absent for none, or a list of names.
fn log_selection(cx: &mut Cx, loc: &Location, node: Option<&Node>, what: &str) -> LogSelection {
    match given_node(node) {
        None | Some(Node::Bool(false)) => LogSelection::None,
        Some(Node::Bool(true)) => LogSelection::All,
        Some(n @ Node::List(_)) => LogSelection::Named(cx.strings(Some(n), what, loc)),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "{what} must be True, False or a list of log names, not {}",
                    other.describe()
                ),
            );
            LogSelection::None
        }
    }
}

fn template_type(cx: &mut Cx, loc: &Location, node: Option<&Node>) -> TemplateType {
    match given_node(node) {
        None => TemplateType::Plain,
        Some(Node::Str(s)) if s == "plain" => TemplateType::Plain,
        Some(Node::Str(s)) if s == "html" => TemplateType::Html,
        Some(Node::Str(s)) if s == "json" => TemplateType::Json,
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "template_type must be 'plain', 'html' or 'json', not {}",
                    describe(other)
                ),
            );
            TemplateType::Plain
        }
    }
}

fn describe(n: &Node) -> String {
    match n {
        Node::Str(s) => format!("{s:?}"),
        other => other.describe(),
    }
}

fn formatter(cx: &mut Cx, outer: &Location, f: &Node) -> Option<FormatterConfig> {
    let Node::Object { kind, loc, .. } = f else {
        cx.error(
            outer,
            format!(
                "a message formatter must be a reporters.MessageFormatter…, not {}",
                f.describe()
            ),
        );
        return None;
    };
    let loc = loc.clone();
    let text = |cx: &mut Cx, key: &str| cx.opt_string(f.field(key), key, &loc);
    let flag = |cx: &mut Cx, key: &str, default: bool| cx.boolean(f.field(key), default, key, &loc);
    Some(match kind.as_str() {
        "MessageFormatter" => {
            let template = text(cx, "template");
            let subject = text(cx, "subject");
            if let Some(s) = &subject
                && s.contains('\n')
            {
                cx.error(&loc, "a message's subject must be one line");
            }
            let tt = template_type(cx, &loc, f.field("template_type"));
            if let Some(t) = &template {
                check_template(cx, &loc, "template", t);
            }
            if let Some(s) = &subject {
                check_template(cx, &loc, "subject", s);
            }
            // Without a template of its own, the built-in one lists steps and their logs.
            let builtin = template.is_none();
            if given_node(f.field("extra_info_cb")).is_some() {
                cx.error(
                    &loc,
                    "MessageFormatter: extra_info_cb is not supported by this version of kiln",
                );
            }
            let ctx = match given_node(f.field("ctx")) {
                None => Vec::new(),
                Some(n @ Node::Dict(_)) => match cx.value(n, "ctx", &loc) {
                    PropertyValue::Map(m) => m.into_iter().collect(),
                    _ => Vec::new(),
                },
                Some(other) => {
                    cx.error(
                        &loc,
                        format!(
                            "MessageFormatter: ctx must be a dict, not {}",
                            other.describe()
                        ),
                    );
                    Vec::new()
                }
            };
            FormatterConfig::Template {
                template,
                subject,
                template_type: tt,
                want_properties: flag(cx, "want_properties", true),
                want_steps: flag(cx, "want_steps", false) || builtin,
                want_logs: flag(cx, "want_logs", false) || builtin,
                want_logs_content: log_selection(
                    cx,
                    &loc,
                    f.field("want_logs_content"),
                    "want_logs_content",
                ),
                ctx,
            }
        }
        "MessageFormatterRenderable" => FormatterConfig::Renderable {
            template: match given_node(f.field("template")) {
                Some(n) => cx.renderable(n, "the template", &loc),
                None => {
                    cx.error(&loc, "MessageFormatterRenderable needs a template");
                    Renderable::Literal(PropertyValue::Str(String::new()))
                }
            },
            subject: given_node(f.field("subject")).map(|n| cx.renderable(n, "the subject", &loc)),
        },
        "MessageFormatterFunction" => {
            FormatterConfig::Function {
                function: match given_node(f.field("function")) {
                    Some(n) => function(cx, n, "MessageFormatterFunction's function", &loc)?,
                    None => {
                        cx.error(&loc, "MessageFormatterFunction needs a function");
                        return None;
                    }
                },
                template_type: match given_node(f.field("template_type")) {
                    None => {
                        cx.error(&loc, "MessageFormatterFunction needs template_type ('plain', 'html' or 'json')");
                        TemplateType::Plain
                    }
                    n => template_type(cx, &loc, n),
                },
                want_properties: flag(cx, "want_properties", true),
                want_steps: flag(cx, "want_steps", false),
                want_logs: flag(cx, "want_logs", false),
                want_logs_content: log_selection(
                    cx,
                    &loc,
                    f.field("want_logs_content"),
                    "want_logs_content",
                ),
            }
        }
        "MessageFormatterMissingWorker" => {
            let template = text(cx, "template");
            let subject = text(cx, "subject");
            if let Some(t) = &template {
                check_template(cx, &loc, "template", t);
            }
            if let Some(s) = &subject {
                check_template(cx, &loc, "subject", s);
            }
            FormatterConfig::MissingWorker {
                template,
                subject,
                template_type: template_type(cx, &loc, f.field("template_type")),
            }
        }
        "MessageFormatterEmpty" => FormatterConfig::Empty,
        other => {
            cx.error(
                &loc,
                format!("{other} is not a message formatter kiln knows (MessageFormatter, MessageFormatterRenderable, MessageFormatterFunction, MessageFormatterMissingWorker, MessageFormatterEmpty)"),
            );
            return None;
        }
    })
}

/// A template that does not parse is a configuration error, at the formatter that holds it.
fn check_template(cx: &mut Cx, loc: &Location, what: &str, source: &str) {
    let env = minijinja::Environment::new();
    if let Err(e) = env.template_from_str(source) {
        cx.error(
            loc,
            format!("the message formatter's {what} is not a valid template: {e}"),
        );
    }
}

/// The text chat reporters send by default: one line with the news and the build's page.
const CHAT_TEMPLATE: &str = "{{ buildername }} #{{ build.number }}: {{ status_detected }} ({{ build.state_string }}) {{ build_url }}";

/// A status push to a forge or a chat, with its service's keywords.
pub(super) fn push(
    cx: &mut Cx,
    loc: &Location,
    r: &Node,
    service: PushService,
) -> Option<(PushConfig, Vec<GeneratorConfig>)> {
    let class = service.class();
    let text = |cx: &mut Cx, key: &str| cx.opt_string(r.field(key), key, loc);
    let renderable =
        |cx: &mut Cx, key: &str| given_node(r.field(key)).map(|n| cx.renderable(n, key, loc));
    let required = |cx: &mut Cx, key: &str, what: &str| {
        let v = text(cx, key);
        if v.is_none() {
            cx.error(loc, format!("{class} needs {key}, {what}"));
        }
        v
    };
    let build_context = |name: &str| Renderable::Interpolate {
        format: format!("{name}%(prop:buildername)s"),
        kwargs: Vec::new(),
    };
    let mut p = PushConfig {
        service,
        base_url: String::new(),
        token: None,
        auth: None,
        oauth: None,
        context: build_context("buildbot/"),
        status_name: None,
        target: None,
        username: None,
        headers: Vec::new(),
        verify: verify(cx, loc, r, class),
        warning_as_success: cx.boolean(r.field("warningAsSuccess"), false, "warningAsSuccess", loc),
        debug: cx.boolean(r.field("debug"), false, "debug", loc)
            || cx.boolean(r.field("verbose"), false, "verbose", loc),
    };
    let pair = |cx: &mut Cx, key: &str| match given_node(r.field(key)) {
        None => None,
        Some(Node::List(pair)) if pair.len() == 2 => Some((
            cx.renderable(&pair[0], key, loc),
            cx.renderable(&pair[1], key, loc),
        )),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "{class}: {key} must be a (user, password) pair, not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    let token_required = |cx: &mut Cx| {
        let t = renderable(cx, "token");
        if t.is_none() {
            cx.error(loc, format!("{class} needs token"));
        }
        t
    };
    use PushService::*;
    match service {
        GitHub | GitHubComment => {
            p.base_url = text(cx, "baseURL").unwrap_or_else(|| "https://api.github.com".into());
            p.token = token_required(cx);
        }
        GitLab => {
            p.base_url = text(cx, "baseURL").unwrap_or_else(|| "https://gitlab.com".into());
            p.token = token_required(cx);
        }
        Gitea => {
            p.base_url = required(cx, "baseURL", "the Gitea server's URL")?;
            p.token = token_required(cx);
        }
        Bitbucket => {
            p.base_url = text(cx, "base_url")
                .unwrap_or_else(|| "https://api.bitbucket.org/2.0/repositories".into());
            p.auth = pair(cx, "auth");
            let key = renderable(cx, "oauth_key");
            let secret = renderable(cx, "oauth_secret");
            let url = text(cx, "oauth_url")
                .unwrap_or_else(|| "https://bitbucket.org/site/oauth2/access_token".into());
            match (key, secret, &p.auth) {
                (Some(k), Some(s), None) => p.oauth = Some((k, s, url)),
                (None, None, Some(_)) => {}
                _ => cx.error(
                    loc,
                    "BitbucketStatusPush needs either auth=(user, app password) or oauth_key and oauth_secret",
                ),
            }
            p.context = renderable(cx, "status_key").unwrap_or_else(|| build_context(""));
            p.status_name =
                Some(renderable(cx, "status_name").unwrap_or_else(|| build_context("")));
        }
        BitbucketServer | BitbucketServerPRComment => {
            p.base_url = required(cx, "base_url", "the Bitbucket Server's URL")?;
            let user = renderable(cx, "user");
            let password = renderable(cx, "password");
            match (user, password) {
                (Some(u), Some(pw)) => p.auth = Some((u, pw)),
                _ => cx.error(loc, format!("{class} needs user and password")),
            }
            p.context = renderable(cx, "key").unwrap_or_else(|| build_context(""));
            p.status_name = renderable(cx, "statusName");
        }
        Zulip => {
            p.base_url = required(cx, "endpoint", "the Zulip server's URL")?;
            p.token = token_required(cx);
            p.target = text(cx, "stream");
        }
        Matrix => {
            p.base_url = required(cx, "homeserver", "the Matrix homeserver's URL")?;
            p.token = token_required(cx);
            p.target = Some(required(cx, "room", "the room's id (!id:server)")?);
        }
        Slack => {
            p.base_url = required(cx, "webhookUrl", "the incoming webhook's URL")?;
            p.target = text(cx, "channel");
            p.username = text(cx, "username");
        }
        Webhook => {
            p.base_url = required(cx, "url", "where to post")?;
            p.auth = pair(cx, "auth");
            p.headers = headers(cx, loc, r.field("headers"), "headers");
        }
    }
    if let Some(c) = renderable(cx, "context")
        && matches!(service, GitHub | GitHubComment | GitLab | Gitea)
    {
        p.context = c;
    }
    while p.base_url.ends_with('/') {
        p.base_url.pop();
    }
    if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
        cx.error(
            loc,
            format!(
                "{class}: {:?} is not an http:// or https:// URL",
                p.base_url
            ),
        );
    }
    Some((p, push_default_generators(service)))
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

/// Each service's generators when the configuration gives none, as Buildbot's reporters have
/// them.
fn push_default_generators(service: PushService) -> Vec<GeneratorConfig> {
    let generator = |kind| GeneratorConfig {
        kind,
        filter: ReportFilter::default(),
        add_patch: false,
        add_logs: LogSelection::None,
    };
    let start_end = |start: FormatterConfig, end: FormatterConfig| {
        generator(GeneratorKind::BuildStartEnd { start, end })
    };
    let status = |formatter| {
        generator(GeneratorKind::BuildStatus {
            mode: Mode::default_set(),
            report_new: false,
            formatter,
        })
    };
    use PushService::*;
    match service {
        GitHub | GitLab | Gitea => vec![
            generator(GeneratorKind::BuildRequest {
                formatter: FormatterConfig::text("Build pending."),
            }),
            start_end(
                FormatterConfig::text("Build started."),
                FormatterConfig::text("Build done."),
            ),
        ],
        GitHubComment => vec![start_end(
            FormatterConfig::Empty,
            FormatterConfig::text("Build done."),
        )],
        Bitbucket => vec![start_end(
            FormatterConfig::text(""),
            FormatterConfig::text(""),
        )],
        BitbucketServer | Zulip => vec![start_end(
            FormatterConfig::text("Build started."),
            FormatterConfig::text("Build done."),
        )],
        BitbucketServerPRComment => {
            vec![status(FormatterConfig::default_template(
                TemplateType::Plain,
            ))]
        }
        Matrix | Slack => vec![status(FormatterConfig::Template {
            template: Some(CHAT_TEMPLATE.into()),
            subject: None,
            template_type: TemplateType::Plain,
            want_properties: true,
            want_steps: false,
            want_logs: false,
            want_logs_content: LogSelection::None,
            ctx: Vec::new(),
        })],
        Webhook => vec![generator(GeneratorKind::BuildStatus {
            mode: Mode::default_set(),
            report_new: true,
            formatter: FormatterConfig::default_template(TemplateType::Plain),
        })],
    }
}

fn gerrit(cx: &mut Cx, loc: &Location, r: &Node) -> Option<GerritConfig> {
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
fn gerrit_default_generators(cx: &mut Cx, loc: &Location, r: &Node) -> Vec<GeneratorConfig> {
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
        lost_delay: seconds(cx, "lostDelay", 3),
        failed_delay: seconds(cx, "failedDelay", 50),
        tags: given_node(r.field("tags")).map(|n| cx.strings(Some(n), "tags", loc)),
        authz,
        nick,
    })
}
