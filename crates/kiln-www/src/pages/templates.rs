//! The page templates: embedded in the binary, and overridable file by file from the master's
//! `templates/` directory, as Buildbot's `custom_templates_dir` allows.

use std::path::Path;

use kiln_core::Results;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Value};

/// Every template kiln ships, by name.
const EMBEDDED: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("macros.html", include_str!("../../templates/macros.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("home.html", include_str!("../../templates/home.html")),
    (
        "builders.html",
        include_str!("../../templates/builders.html"),
    ),
    ("builder.html", include_str!("../../templates/builder.html")),
    ("build.html", include_str!("../../templates/build.html")),
    ("log.html", include_str!("../../templates/log.html")),
    ("workers.html", include_str!("../../templates/workers.html")),
    ("worker.html", include_str!("../../templates/worker.html")),
    ("changes.html", include_str!("../../templates/changes.html")),
    ("change.html", include_str!("../../templates/change.html")),
    ("about.html", include_str!("../../templates/about.html")),
    ("login.html", include_str!("../../templates/login.html")),
    (
        "waterfall.html",
        include_str!("../../templates/waterfall.html"),
    ),
    ("grid.html", include_str!("../../templates/grid.html")),
    ("console.html", include_str!("../../templates/console.html")),
    ("rss.xml", include_str!("../../templates/rss.xml")),
    ("atom.xml", include_str!("../../templates/atom.xml")),
    ("badge.svg", include_str!("../../templates/badge.svg")),
    ("users.html", include_str!("../../templates/users.html")),
    (
        "reporters.html",
        include_str!("../../templates/reporters.html"),
    ),
    (
        "schedulers.html",
        include_str!("../../templates/schedulers.html"),
    ),
    ("user.html", include_str!("../../templates/user.html")),
    (
        "one_line_per_build.html",
        include_str!("../../templates/one_line_per_build.html"),
    ),
];

/// The directory under the master's base directory whose files replace the embedded ones, unless
/// `c['www']['custom_templates_dir']` names another.
pub const OVERRIDE_DIR: &str = "templates";

/// The templates a master renders its pages with.
pub struct Templates {
    env: Environment<'static>,
}

impl Templates {
    /// The embedded templates, each replaced by the file of the same name in `basedir/templates`
    /// when there is one. A file that does not parse is reported and the embedded template kept,
    /// so a typo in an override never takes the pages down.
    pub fn load(basedir: &Path, custom_dir: Option<&str>) -> Templates {
        let mut env = environment();
        for (name, source) in EMBEDDED {
            if let Err(e) = env.add_template(name, source) {
                tracing::error!(template = name, error = %e, "an embedded template does not parse");
            }
        }
        let dir = basedir.join(custom_dir.unwrap_or(OVERRIDE_DIR));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Templates { env };
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".html") && !name.ends_with(".svg") && !name.ends_with(".xml") {
                continue;
            }
            let source = match std::fs::read_to_string(entry.path()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(file = %entry.path().display(), error = %e, "cannot read a template");
                    continue;
                }
            };
            match env.add_template_owned(name.clone(), source) {
                Ok(()) => {
                    tracing::info!(template = %name, "using the template from {}", dir.display())
                }
                // A template that does not parse is not added: the embedded one stays.
                Err(e) => tracing::error!(
                    file = %entry.path().display(),
                    error = %e,
                    "a template override does not parse; the embedded one is used"
                ),
            }
        }
        Templates { env }
    }

    /// Renders `name` with `context`.
    pub fn render(&self, name: &str, context: Value) -> Result<String, Error> {
        self.env.get_template(name)?.render(context)
    }
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Every page, feed and badge is markup: all of them escape what they interpolate.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") || name.ends_with(".svg") || name.ends_with(".xml") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(escape);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env.add_filter("result", result_name);
    env.add_filter("duration", duration);
    env.add_filter("datetime", datetime);
    env.add_filter("rfc2822", rfc2822);
    env.add_filter("rfc3339", rfc3339);
    env
}

/// Escapes what a page interpolates: the five characters that matter in HTML text and quoted
/// attributes. Unlike the default, `/` is left alone, so that paths stay readable in links.
fn escape(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    if state.auto_escape() != AutoEscape::Html
        || value.is_safe()
        || value.is_undefined()
        || value.is_none()
    {
        return minijinja::escape_formatter(out, state, value);
    }
    out.write_str(&escape_html(&value.to_string()))
        .map_err(Error::from)
}

/// `text` made safe in HTML text and in quoted attributes.
pub fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A result code as Buildbot names it in lower case (`success`, `failure`, …), which is also the
/// CSS class of its colour; no code is a build or step still `running`.
fn result_name(code: Value) -> Result<String, Error> {
    if code.is_none() || code.is_undefined() {
        return Ok("running".into());
    }
    let n = i64::try_from(code.clone()).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("{code} is not a result code"),
        )
    })?;
    Ok(Results::from_code(n)
        .map_or("unknown", |r| r.name())
        .to_ascii_lowercase())
}

/// Seconds as people read them: `45 s`, `3 min 20 s`, `2 h 5 min`.
fn duration(secs: Value) -> String {
    let Ok(secs) = i64::try_from(secs) else {
        return String::new();
    };
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// Epoch seconds as a UTC date and time, `2026-12-03 10:45:06`.
fn datetime(secs: Value) -> String {
    let Ok(secs) = i64::try_from(secs) else {
        return String::new();
    };
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => String::new(),
    }
}

/// Epoch seconds as RSS dates them: `Thu, 03 Dec 2026 10:45:06 +0000`.
fn rfc2822(secs: Value) -> String {
    let Ok(t) = i64::try_from(secs).map(jiff::Timestamp::from_second) else {
        return String::new();
    };
    t.ok()
        .and_then(|t| {
            let utc = t.to_zoned(jiff::tz::TimeZone::UTC);
            jiff::fmt::rfc2822::DateTimePrinter::new()
                .zoned_to_string(&utc)
                .ok()
        })
        .unwrap_or_default()
}

/// Epoch seconds as Atom dates them: `2026-12-03T10:45:06Z`.
fn rfc3339(secs: Value) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_results_durations_and_times() {
        assert_eq!(result_name(Value::from(0)).unwrap(), "success");
        assert_eq!(result_name(Value::from(2)).unwrap(), "failure");
        assert_eq!(result_name(Value::from(())).unwrap(), "running");
        assert!(result_name(Value::from("x")).is_err());
        assert_eq!(duration(Value::from(45)), "45 s");
        assert_eq!(duration(Value::from(200)), "3 min 20 s");
        assert_eq!(duration(Value::from(7500)), "2 h 5 min");
        assert_eq!(datetime(Value::from(0)), "1970-01-01 00:00:00");
        assert_eq!(rfc2822(Value::from(0)), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc3339(Value::from(0)), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn every_embedded_template_parses() {
        let mut env = environment();
        for (name, source) in EMBEDDED {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        }
    }
}
