//! Message formatters: how a report is worded. `MessageFormatter` renders Jinja templates
//! (minijinja, with Python's string and dict methods) in Buildbot's context;
//! `MessageFormatterRenderable` renders renderables against the build's properties;
//! `MessageFormatterFunction` calls a configuration function with the context;
//! `MessageFormatterMissingWorker` words a worker's absence.

use std::sync::Arc;

use kiln_config::Data;
use kiln_config::{FormatterConfig, LogSelection, MasterConfig, Mode, TemplateType};
use kiln_core::Results;
use kiln_core::render::{RenderContext, RenderHooks};
use minijinja::{AutoEscape, Environment};
use serde_json::{Value, json};

use crate::data::BuildInfo;
use crate::report::Body;

const BUILD_TXT: &str = include_str!("templates/build.txt");
const BUILD_HTML: &str = include_str!("templates/build.html");
const SUBJECT: &str = include_str!("templates/subject.txt");
const MISSING_TXT: &str = include_str!("templates/missing_worker.txt");
const MISSING_HTML: &str = include_str!("templates/missing_worker.html");
const MISSING_SUBJECT: &str = "Buildbot {{ buildbot_title }} worker {{ worker.name }} missing";

/// Buildbot's result names, indexed by result.
const RESULT_NAMES: [&str; 7] = [
    "success",
    "warnings",
    "failure",
    "skipped",
    "exception",
    "retry",
    "cancelled",
];

/// The style of a step's line in the built-in html message, indexed by result.
const RESULTS_STYLE: [&str; 7] = [
    "",
    "color: #f80;",
    "color: #f00; font-weight: bold;",
    "color: #4af;",
    "color: #f0f; font-weight: bold;",
    "color: #4af;",
    "color: #4af;",
];

/// A worded message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub body: Option<Body>,
    pub subject: Option<String>,
    pub kind: TemplateType,
}

impl Message {
    /// No message: what an empty formatter says.
    fn none() -> Message {
        Message {
            body: None,
            subject: None,
            kind: TemplateType::Plain,
        }
    }
}

/// What a formatter needs to be read for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Wants {
    pub properties: bool,
    pub steps: bool,
    pub logs: bool,
    pub logs_content: LogSelection,
}

/// A formatter, its templates compiled once.
pub struct Formatter {
    config: FormatterConfig,
    env: Environment<'static>,
}

impl std::fmt::Debug for Formatter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Formatter")
            .field("config", &self.config)
            .finish()
    }
}

/// Where the site is and what it is called, for every context.
#[derive(Debug, Clone)]
pub struct Site {
    pub title: String,
    pub url: String,
}

impl Formatter {
    /// Compiles a formatter's templates; an error names the template that does not compile.
    pub fn new(config: &FormatterConfig) -> Result<Formatter, String> {
        let mut env = Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_keep_trailing_newline(true);
        let html = |tt: TemplateType| tt == TemplateType::Html;
        let escape = match config {
            FormatterConfig::Template { template_type, .. }
            | FormatterConfig::MissingWorker { template_type, .. } => html(*template_type),
            _ => false,
        };
        // Only an html body escapes what it is given: a plain mail or a subject shows the text
        // as it is.
        env.set_auto_escape_callback(move |name| {
            if escape && name == "body" {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let mut add = |name: &'static str, source: String| {
            env.add_template_owned(name, source)
                .map_err(|e| format!("the {name} template: {e}"))
        };
        // A formatter without templates of its own uses the built-in ones of its kind.
        let builtin = |own: &Option<String>, tt: TemplateType, html_source: &str, text: &str| {
            own.clone()
                .unwrap_or_else(|| if html(tt) { html_source } else { text }.to_string())
        };
        match config {
            FormatterConfig::Template {
                template,
                subject,
                template_type,
                ..
            } => {
                // A json formatter without a template sends the build dict itself.
                if *template_type != TemplateType::Json || template.is_some() {
                    add(
                        "body",
                        builtin(template, *template_type, BUILD_HTML, BUILD_TXT),
                    )?;
                }
                let plain = SUBJECT.trim_end();
                add("subject", builtin(subject, *template_type, plain, plain))?;
            }
            FormatterConfig::MissingWorker {
                template,
                subject,
                template_type,
            } => {
                add(
                    "body",
                    builtin(template, *template_type, MISSING_HTML, MISSING_TXT),
                )?;
                add(
                    "subject",
                    builtin(subject, *template_type, MISSING_SUBJECT, MISSING_SUBJECT),
                )?;
            }
            FormatterConfig::Renderable { .. }
            | FormatterConfig::Function { .. }
            | FormatterConfig::Empty => {}
        }
        Ok(Formatter {
            config: config.clone(),
            env,
        })
    }

    pub fn config(&self) -> &FormatterConfig {
        &self.config
    }

    pub fn wants(&self) -> Wants {
        match &self.config {
            // The built-in templates list the steps and their logs.
            FormatterConfig::Template {
                template: None,
                template_type: TemplateType::Plain | TemplateType::Html,
                want_logs_content,
                ..
            } => Wants {
                properties: true,
                steps: true,
                logs: true,
                logs_content: want_logs_content.clone(),
            },
            FormatterConfig::Template {
                want_properties,
                want_steps,
                want_logs,
                want_logs_content,
                ..
            }
            | FormatterConfig::Function {
                want_properties,
                want_steps,
                want_logs,
                want_logs_content,
                ..
            } => Wants {
                properties: *want_properties || want_logs_content.any(),
                steps: *want_steps || *want_logs || want_logs_content.any(),
                logs: *want_logs || want_logs_content.any(),
                logs_content: want_logs_content.clone(),
            },
            FormatterConfig::Renderable { .. } => Wants {
                properties: true,
                ..Wants::default()
            },
            FormatterConfig::MissingWorker { .. } | FormatterConfig::Empty => Wants::default(),
        }
    }

    /// Words a report about one build.
    pub fn format_build(
        &self,
        build: &BuildInfo,
        mode: &[Mode],
        is_buildset: bool,
        site: &Site,
        config: &MasterConfig,
        hooks: &dyn RenderHooks,
    ) -> Result<Message, String> {
        let w = self.wants();
        let dict = build.dict(w.properties, w.steps, w.logs);
        match &self.config {
            FormatterConfig::Template {
                template_type,
                template,
                ctx: extra,
                ..
            } => {
                let mut cx = build_context(build, dict, mode, is_buildset, site);
                if template.is_none() {
                    cx["results_style"] = json!(RESULTS_STYLE);
                }
                for (k, v) in extra {
                    cx[k.as_str()] = kiln_db::property_to_json(v);
                }
                self.render_templates(cx, *template_type)
            }
            FormatterConfig::Renderable { template, subject } => {
                let sourcestamps: Vec<kiln_core::sourcestamp::SourceStamp> = build
                    .sourcestamps
                    .iter()
                    .map(|s| s.to_sourcestamp())
                    .collect();
                render_renderables(
                    template,
                    subject.as_ref(),
                    &RenderContext {
                        props: &build.properties,
                        sourcestamps: &sourcestamps,
                        worker: &Default::default(),
                        hooks,
                    },
                )
            }
            FormatterConfig::Function {
                function,
                template_type,
                ..
            } => {
                let cx = Value::Object([("build".to_string(), dict)].into_iter().collect());
                call_function(config, *function, &cx, *template_type)
            }
            FormatterConfig::MissingWorker { .. } => {
                Err("MessageFormatterMissingWorker words missing workers, not builds".into())
            }
            FormatterConfig::Empty => Ok(Message::none()),
        }
    }

    /// Words one report about a whole buildset (`BuildSetCombinedStatusGenerator`).
    pub fn format_buildset(
        &self,
        buildset: &Value,
        builds: &[BuildInfo],
        results: Option<i64>,
        site: &Site,
        config: &MasterConfig,
    ) -> Result<Message, String> {
        let w = self.wants();
        let dicts: Vec<Value> = builds
            .iter()
            .map(|b| b.dict(w.properties, w.steps, w.logs))
            .collect();
        match &self.config {
            FormatterConfig::Template {
                template_type,
                ctx: extra,
                ..
            } => {
                let mut blamelist: Vec<String> =
                    builds.iter().flat_map(|b| b.users.clone()).collect();
                blamelist.sort();
                blamelist.dedup();
                let mut cx = json!({
                    "results": results,
                    "result_names": RESULT_NAMES,
                    "mode": ["passing"],
                    "buildset": buildset,
                    "builds": dicts,
                    "is_buildset": true,
                    "projects": projects(builds.iter().flat_map(|b| &b.sourcestamps), site),
                    "status_detected": status_detected(results, &[Mode::Passing], None),
                    "buildbot_title": site.title,
                    "buildbot_url": site.url,
                    "blamelist": blamelist,
                    "sourcestamps": sourcestamps_text(builds.first().map_or(&[][..], |b| &b.sourcestamps[..])),
                });
                for (k, v) in extra {
                    cx[k.as_str()] = kiln_db::property_to_json(v);
                }
                self.render_templates(cx, *template_type)
            }
            FormatterConfig::Function {
                function,
                template_type,
                ..
            } => {
                let cx = json!({ "buildset": buildset, "builds": dicts });
                call_function(config, *function, &cx, *template_type)
            }
            FormatterConfig::Renderable { template, subject } => {
                render_without_build(template, subject.as_ref())
            }
            FormatterConfig::MissingWorker { .. } | FormatterConfig::Empty => Ok(Message::none()),
        }
    }

    /// Words a worker's absence.
    pub fn format_worker(&self, worker: &Value, site: &Site) -> Result<Message, String> {
        match &self.config {
            FormatterConfig::MissingWorker { template_type, .. }
            | FormatterConfig::Template { template_type, .. } => {
                let cx = json!({
                    "buildbot_title": site.title,
                    "buildbot_url": site.url,
                    "worker": worker,
                });
                self.render_templates(cx, *template_type)
            }
            FormatterConfig::Renderable { template, subject } => {
                render_without_build(template, subject.as_ref())
            }
            FormatterConfig::Function { .. } | FormatterConfig::Empty => Ok(Message::none()),
        }
    }

    /// Renders the body and subject templates in `cx`. The context is taken, not borrowed: a
    /// json formatter without a template sends the build dict itself, which is then moved out
    /// of it rather than copied.
    fn render_templates(&self, cx: Value, kind: TemplateType) -> Result<Message, String> {
        let cx = Arc::new(cx);
        let jinja_cx = crate::jinja::context(&cx);
        let render = |name: &str| -> Result<Option<String>, String> {
            match self.env.get_template(name) {
                Ok(t) => t
                    .render(&jinja_cx)
                    .map(Some)
                    .map_err(|e| format!("rendering the {name} template: {}", describe(&e))),
                Err(_) => Ok(None),
            }
        };
        let body = render("body")?;
        let subject = render("subject")?.map(|s| s.replace(['\r', '\n'], " ").trim().to_string());
        drop(jinja_cx);
        let body = match (kind, body) {
            (TemplateType::Json, Some(text)) => {
                Some(Body::Json(serde_json::from_str(&text).map_err(|e| {
                    format!("the json template did not give JSON: {e}")
                })?))
            }
            // A json formatter without a template sends the build dict itself. Rendering is
            // over, so the context is no longer shared and the dict moves out of it.
            (TemplateType::Json, None) => {
                let mut cx = Arc::try_unwrap(cx).unwrap_or_else(|shared| (*shared).clone());
                Some(Body::Json(
                    cx.get_mut("build").map(Value::take).unwrap_or(Value::Null),
                ))
            }
            (_, body) => body.map(Body::Text),
        };
        Ok(Message {
            body,
            subject,
            kind,
        })
    }
}

/// `MessageFormatterRenderable`'s message: its renderables rendered in `cx`, as plain text.
fn render_renderables(
    template: &kiln_core::render::Renderable,
    subject: Option<&kiln_core::render::Renderable>,
    cx: &RenderContext,
) -> Result<Message, String> {
    let render =
        |r: &kiln_core::render::Renderable| r.render_in(cx).map(|v| v.render()).map_err(|e| e.0);
    Ok(Message {
        body: Some(Body::Text(render(template)?)),
        subject: subject.map(render).transpose()?,
        kind: TemplateType::Plain,
    })
}

/// `MessageFormatterRenderable`'s message where there is no build: only literal values and
/// functions of nothing.
fn render_without_build(
    template: &kiln_core::render::Renderable,
    subject: Option<&kiln_core::render::Renderable>,
) -> Result<Message, String> {
    render_renderables(
        template,
        subject,
        &RenderContext {
            props: &Default::default(),
            sourcestamps: &[],
            worker: &Default::default(),
            hooks: &kiln_core::render::NoHooks,
        },
    )
}

/// A template error with where in the template it happened.
fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    if let Some(line) = e.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

/// Buildbot's context for a build.
fn build_context(
    build: &BuildInfo,
    dict: Value,
    mode: &[Mode],
    is_buildset: bool,
    site: &Site,
) -> Value {
    let results = build.results();
    let previous = build.previous.as_ref().and_then(|p| p.results);
    let workername = match build.properties.get("workername") {
        Some(v) => v.render(),
        None => "<unknown>".into(),
    };
    let mut cx = json!({
        "results": results,
        "result_names": RESULT_NAMES,
        "mode": mode.iter().map(|m| m.name()).collect::<Vec<_>>(),
        "buildername": build.builder.name,
        "workername": workername,
        "buildset": dict.get("buildset"),
        "is_buildset": is_buildset,
        "projects": projects(&build.sourcestamps, site),
        "previous_results": previous,
        "status_detected": status_detected(results, mode, build.previous.as_ref().map(|p| p.results)),
        "build_url": build.url,
        "buildbot_title": site.title,
        "buildbot_url": site.url,
        "blamelist": build.users,
        "summary": summary(results, &build.row.state_string),
        "sourcestamps": sourcestamps_text(&build.sourcestamps),
    });
    // Moved in, not copied: the dict is the largest part of the context.
    cx["build"] = dict;
    cx
}

/// The projects of the source stamps, or the site's title when none names one.
fn projects<'a>(
    sourcestamps: impl IntoIterator<Item = &'a kiln_db::SourceStampRow>,
    site: &Site,
) -> String {
    let mut names: Vec<&str> = Vec::new();
    for s in sourcestamps {
        if !s.project.is_empty() && !names.contains(&s.project.as_str()) {
            names.push(&s.project);
        }
    }
    if names.is_empty() {
        site.title.clone()
    } else {
        names.join(", ")
    }
}

/// How Buildbot names what a result means: `new failure`, `restored build`, `passing build`, …
/// `previous` is the previous build's result (its outer `None` when there is no previous build).
pub fn status_detected(
    results: Option<i64>,
    mode: &[Mode],
    previous: Option<Option<i64>>,
) -> String {
    let watches_change = mode.contains(&Mode::Change);
    let watches_problem = mode.contains(&Mode::Problem);
    let prev = previous.flatten();
    match results.map(Results::from_code) {
        Some(Some(Results::Failure)) => {
            if (watches_change || watches_problem)
                && previous.is_some()
                && prev != Some(Results::Failure.code())
            {
                "new failure".into()
            } else {
                "failed build".into()
            }
        }
        Some(Some(Results::Warnings)) => "problem in the build".into(),
        Some(Some(Results::Success)) => {
            if watches_change && previous.is_some() && prev != results {
                "restored build".into()
            } else {
                "passing build".into()
            }
        }
        Some(Some(Results::Exception)) => "build exception".into(),
        Some(Some(r)) => format!("{} build", RESULT_NAMES[r.code() as usize]),
        _ => "build".into(),
    }
}

/// Buildbot's one-line summary of a result.
fn summary(results: Option<i64>, state: &str) -> String {
    match results.and_then(Results::from_code) {
        Some(Results::Success) => "Build succeeded!".into(),
        Some(Results::Warnings) => format!("Build Had Warnings: {state}"),
        Some(Results::Cancelled) => "Build was cancelled".into(),
        _ => format!("BUILD FAILED: {state}"),
    }
}

/// One line per source stamp: `Build Source Stamp['codebase']: [branch b] revision (plus patch)`.
fn sourcestamps_text(sourcestamps: &[kiln_db::SourceStampRow]) -> String {
    let mut out = String::new();
    for s in sourcestamps {
        out.push_str("Build Source Stamp");
        if !s.codebase.is_empty() {
            out.push_str(&format!(" '{}'", s.codebase));
        }
        out.push_str(": ");
        if let Some(b) = s.branch.as_deref().filter(|b| !b.is_empty()) {
            out.push_str(&format!("[branch {b}] "));
        }
        out.push_str(
            s.revision
                .as_deref()
                .filter(|r| !r.is_empty())
                .unwrap_or("HEAD"),
        );
        if s.patch.is_some() {
            out.push_str(" (plus patch)");
        }
        out.push('\n');
    }
    out
}

/// Calls a `MessageFormatterFunction`'s function with the context, as plain data.
fn call_function(
    config: &MasterConfig,
    function: kiln_core::changefilter::FnRef,
    cx: &Value,
    kind: TemplateType,
) -> Result<Message, String> {
    let arg = Data::from(&kiln_db::json_to_property(cx));
    let out = config.functions.call(function, &[arg], &[])?;
    let body = match kind {
        TemplateType::Json => {
            let value = out
                .to_property()
                .map_err(|e| format!("the function's value is not plain data: {e}"))?;
            Body::Json(kiln_db::property_to_json(&value))
        }
        _ => Body::Text(match out {
            Data::Str(s) => s,
            Data::None => String::new(),
            other => other
                .to_property()
                .map(|v| v.render())
                .map_err(|e| format!("the function's value is not text: {e}"))?,
        }),
    };
    Ok(Message {
        body: Some(body),
        subject: None,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_subject_has_buildbot_glyphs() {
        let f = Formatter::new(&FormatterConfig::default_template(TemplateType::Plain)).unwrap();
        let cx = |results: i64, branch: &str| {
            json!({"results": results, "buildbot_title": "T", "buildername": "b", "is_buildset": false,
                   "build": {"state_string": "failed x", "properties": {"branch": [branch, "Build"]}}})
        };
        let subject = |cx| {
            f.render_templates(cx, TemplateType::Plain)
                .unwrap()
                .subject
                .unwrap()
        };
        assert_eq!(
            subject(cx(2, "main")),
            "☠ Buildbot (T): b - failed x (main)"
        );
        assert_eq!(
            subject(cx(0, "")),
            "☺ Buildbot (T): b - failed x ((unknown revision))"
        );
        assert_eq!(
            subject(cx(1, "")),
            "☝ Buildbot (T): b - failed x ((unknown revision))"
        );
    }

    /// A finished build of ten steps, each with a log, and three people to blame.
    fn sample_build() -> BuildInfo {
        use kiln_core::{BuildId, BuildRequestId, BuilderId, LogId, StepId};
        let mut properties = kiln_core::Properties::new();
        for (k, v) in [
            ("buildername", "fail"),
            ("workername", "w1"),
            ("reason", "forced"),
            ("branch", "main"),
        ] {
            properties.set(k, v, "Build");
        }
        let steps = (0..10)
            .map(|i| {
                let step = kiln_db::StepRow {
                    id: StepId(i),
                    number: i,
                    name: format!("step {i}"),
                    buildid: BuildId(1),
                    started_at: Some(1),
                    locks_acquired_at: None,
                    complete_at: Some(2),
                    state_string: "ran".into(),
                    results: Some(if i == 9 { 2 } else { 0 }),
                    urls_json: "[]".into(),
                    hidden: false,
                };
                let log = kiln_db::LogRow {
                    id: LogId(i),
                    name: "stdio".into(),
                    slug: "stdio".into(),
                    stepid: StepId(i),
                    complete: true,
                    num_lines: 10,
                    log_type: "s".into(),
                };
                (step, vec![log])
            })
            .collect();
        BuildInfo {
            row: kiln_db::BuildRow {
                id: BuildId(1),
                number: 7,
                builderid: BuilderId(1),
                buildrequestid: BuildRequestId(1),
                workerid: Some(1),
                masterid: 1,
                started_at: 1,
                complete_at: Some(2),
                locks_duration_s: 0,
                state_string: "failed step 9".into(),
                results: Some(2),
            },
            builder: kiln_db::BuilderRow {
                id: BuilderId(1),
                name: "fail".into(),
                description: None,
                description_format: None,
                description_html: None,
                projectid: None,
                masterids: vec![1],
                tags: vec![],
            },
            request: None,
            buildset: None,
            sourcestamps: Vec::new(),
            properties,
            steps,
            previous: None,
            users: vec!["Alice <a@example.org>".into(), "bob".into(), "carol".into()],
            url: "http://ci.example.org/builders/1/builds/7".into(),
        }
    }

    #[test]
    fn the_default_html_mail_escapes_what_builds_supply() {
        let f = Formatter::new(&FormatterConfig::default_template(TemplateType::Html)).unwrap();
        let mut build = sample_build();
        build.builder.name = "<script>x</script>".into();
        let site = Site {
            title: "T".into(),
            url: "http://ci.example.org/".into(),
        };
        let m = f
            .format_build(
                &build,
                &Mode::default_set(),
                false,
                &site,
                &kiln_config::load_str("master.star", "BuildmasterConfig = {}\n").unwrap(),
                &kiln_core::render::NoHooks,
            )
            .unwrap();
        let Some(Body::Text(body)) = m.body else {
            panic!()
        };
        assert!(body.contains("&lt;script&gt;x&lt;"), "{body}");
        assert!(!body.contains("<script>"), "{body}");
        assert!(
            body.contains("Alice &lt;a@example.org&gt;, bob, carol"),
            "{body}"
        );
        assert!(body.contains("9: step 9 ( failure )"), "{body}");
        // The subject is plain text: nothing to escape there.
        assert!(
            m.subject
                .unwrap()
                .contains("<script>x</script> - failed step 9")
        );
    }

    /// How long one default html mail (subject and body) takes to word: a measurement, run by
    /// hand (`cargo test -p kiln-reporters --release -- --ignored --nocapture render_time`), whose
    /// figure is in docs/benchmarks.md.
    #[test]
    #[ignore]
    fn render_time() {
        let f = Formatter::new(&FormatterConfig::default_template(TemplateType::Html)).unwrap();
        let build = sample_build();
        let site = Site {
            title: "T".into(),
            url: "http://ci.example.org/".into(),
        };
        let config = kiln_config::load_str("master.star", "BuildmasterConfig = {}\n").unwrap();
        let n = 5_000;
        let start = std::time::Instant::now();
        for _ in 0..n {
            let m = f
                .format_build(
                    &build,
                    &Mode::default_set(),
                    false,
                    &site,
                    &config,
                    &kiln_core::render::NoHooks,
                )
                .unwrap();
            std::hint::black_box(m);
        }
        let each = start.elapsed() / n;
        eprintln!("one default html mail of a 10-step build: {each:?}");
    }

    #[test]
    fn status_names_follow_buildbot() {
        let cp = [Mode::Change, Mode::Problem];
        assert_eq!(status_detected(Some(2), &cp, Some(Some(0))), "new failure");
        assert_eq!(status_detected(Some(2), &cp, Some(Some(2))), "failed build");
        assert_eq!(status_detected(Some(2), &cp, None), "failed build");
        assert_eq!(
            status_detected(Some(0), &cp, Some(Some(2))),
            "restored build"
        );
        assert_eq!(
            status_detected(Some(0), &[Mode::Passing], Some(Some(2))),
            "passing build"
        );
        assert_eq!(status_detected(Some(1), &cp, None), "problem in the build");
        assert_eq!(status_detected(Some(4), &cp, None), "build exception");
        assert_eq!(status_detected(Some(6), &cp, None), "cancelled build");
    }
}
