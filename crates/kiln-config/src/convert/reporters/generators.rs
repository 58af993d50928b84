//! Generators (`reporters.BuildStatusGenerator`, …) with their filters and modes, and message
//! formatters (`reporters.MessageFormatter`, …) with their templates checked.

use super::*;

pub(super) fn generator(cx: &mut Cx, outer: &Location, g: &Node) -> Option<GeneratorConfig> {
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
pub(super) fn report_filter(cx: &mut Cx, loc: &Location, g: &Node) -> ReportFilter {
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
pub(super) fn mode(cx: &mut Cx, loc: &Location, node: Option<&Node>) -> Option<Vec<Mode>> {
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
pub(super) fn log_selection(
    cx: &mut Cx,
    loc: &Location,
    node: Option<&Node>,
    what: &str,
) -> LogSelection {
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

pub(super) fn template_type(cx: &mut Cx, loc: &Location, node: Option<&Node>) -> TemplateType {
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

pub(super) fn describe(n: &Node) -> String {
    match n {
        Node::Str(s) => format!("{s:?}"),
        other => other.describe(),
    }
}

pub(super) fn formatter(cx: &mut Cx, outer: &Location, f: &Node) -> Option<FormatterConfig> {
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
pub(super) fn check_template(cx: &mut Cx, loc: &Location, what: &str, source: &str) {
    let env = minijinja::Environment::new();
    if let Err(e) = env.template_from_str(source) {
        cx.error(
            loc,
            format!("the message formatter's {what} is not a valid template: {e}"),
        );
    }
}
