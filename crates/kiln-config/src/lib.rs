//! kiln's configuration: a `master.star` file in Starlark, written with Buildbot's `master.cfg`
//! vocabulary, evaluated once into plain Rust structs.
//!
//! ```
//! let cfg = kiln_config::load_str("master.star", r#"
//! BuildmasterConfig = {}
//! c = BuildmasterConfig
//! c['workers'] = [worker.Worker('w1', 'secret')]
//! f = util.BuildFactory()
//! f.addStep(steps.ShellCommand(command=['make', 'test']))
//! c['builders'] = [util.BuilderConfig(name='unit', workernames=['w1'], factory=f)]
//! c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['unit'])]
//! "#).unwrap();
//! assert_eq!(cfg.builders[0].steps.len(), 1);
//! ```
//!
//! Evaluation (`eval.rs`) is the only place that sees Starlark; validation (`convert.rs`) works on
//! plain data and collects every problem it finds, each with its file, line and column, instead of
//! stopping at the first.

mod convert;
mod eval;
mod functions;
mod kinds;
pub mod model;
mod node;
mod python;

use std::path::Path;

pub use functions::{CALL_TIME_LIMIT, Data, Functions};
pub use model::*;
pub use node::Location;

/// The name of the configuration file in a master's base directory.
pub const CONFIG_FILE: &str = "master.star";

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Note,
}

/// One problem in a configuration, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub location: Location,
    pub message: String,
}

impl Diagnostic {
    pub fn error(location: Location, message: String) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location,
            message,
        }
    }
    pub fn warning(location: Location, message: String) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            location,
            message,
        }
    }
    pub fn note(location: Location, message: String) -> Self {
        Diagnostic {
            severity: Severity::Note,
            location,
            message,
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        write!(f, "{}: {what}: {}", self.location, self.message)
    }
}

/// Every problem found in a configuration that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl std::fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", render(&self.0))
    }
}

/// Diagnostics one per line, with identical warnings and notes (the same message at several
/// places) said once, where first met, with how many more there are and where.
pub fn render(diagnostics: &[Diagnostic]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut seen: Vec<(Severity, &str, usize, Vec<usize>)> = Vec::new();
    for d in diagnostics {
        if d.severity != Severity::Error
            && let Some((_, _, _, more)) = seen
                .iter_mut()
                .find(|(sev, msg, _, _)| *sev == d.severity && *msg == d.message)
        {
            more.push(d.location.line);
            continue;
        }
        seen.push((d.severity, &d.message, out.len(), Vec::new()));
        out.push(d.to_string());
    }
    for (_, _, at, more) in seen {
        if !more.is_empty() {
            let lines: Vec<String> = more.iter().take(10).map(usize::to_string).collect();
            let etc = if more.len() > 10 { ", …" } else { "" };
            out[at].push_str(&format!(
                " ({} more like this, at line {}{etc})",
                more.len(),
                lines.join(", ")
            ));
        }
    }
    out.join("\n")
}

impl std::error::Error for Diagnostics {}

/// Loads `master.star` from a master's base directory.
/// Buildbot's name for the configuration file, read when a master directory has no `master.star`.
pub const BUILDBOT_CONFIG_FILE: &str = "master.cfg";

/// The configuration file of a master directory: `master.star`, or Buildbot's `master.cfg` when
/// only that one is there.
pub fn config_path(basedir: &Path) -> std::path::PathBuf {
    let star = basedir.join(CONFIG_FILE);
    let cfg = basedir.join(BUILDBOT_CONFIG_FILE);
    if !star.exists() && cfg.exists() {
        cfg
    } else {
        star
    }
}

pub fn load(basedir: &Path) -> Result<MasterConfig, Diagnostics> {
    load_file(&config_path(basedir))
}

/// Loads a configuration file.
pub fn load_file(path: &Path) -> Result<MasterConfig, Diagnostics> {
    let name = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::error(
            Location {
                file: name.clone(),
                line: 0,
                column: 0,
            },
            format!("cannot read the configuration: {e}"),
        )])
    })?;
    load_in(&name, &source, path.parent())
}

/// Loads a configuration from text; `file` names it in diagnostics.
pub fn load_str(file: &str, source: &str) -> Result<MasterConfig, Diagnostics> {
    load_in(file, source, None)
}

/// Loads a configuration from text read in the master directory `dir`, whose own modules it may
/// import.
pub fn load_in(file: &str, source: &str, dir: Option<&Path>) -> Result<MasterConfig, Diagnostics> {
    let (node, functions) = eval::evaluate(file, source, dir)?;
    let mut config = convert::master_config(file, source, &node)?;
    config.functions = functions;
    Ok(config)
}

#[cfg(test)]
mod tests;
