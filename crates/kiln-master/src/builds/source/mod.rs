//! Source steps: checking out a build's source stamp on the worker with the version-control tool
//! there, through the worker's `shell`, `stat`, `rmdir` and `cpdir` commands, so the stock
//! `buildbot-worker` runs them too.
//!
//! What every system shares lives here: `mode='full'` with `method='clobber'` removes the working
//! directory first; `method='copy'` keeps the repository in a `source` directory beside it and
//! copies it over after the update; `retry=(delay, repeats)` removes a checkout that failed and
//! tries again; a source stamp's patch is applied after the checkout (checked first, so a patch
//! that does not apply leaves the tree untouched); and the revision checked out becomes
//! `got_revision`, a dict by codebase when the step names one. Each system's module knows its
//! own commands: how to update in place, how to clean (`fresh` also removes ignored files,
//! `clean` only the unknown ones), and how to read the revision back.

mod arch;
mod bzr;
mod cvs;
mod darcs;
mod git;
mod hg;
mod monotone;
mod p4;
mod svn;

use kiln_config::{SourceConfig, StepConfig, Vcs};
use kiln_core::{PropertyValue, Results};
use kiln_proto::{Args, Value};

use super::steps::{LogSink, StepContext, StepOutcome, WorkerLost};

/// The working directory the copy method keeps the repository in, beside the step's.
const COPY_SOURCE: &str = "source";

/// Why a checkout stopped early.
pub(super) enum Stop {
    /// The worker went away: the build is retried elsewhere.
    Lost,
    /// A command failed (its output is in the log).
    Failed(Results),
    /// Something the step was given cannot be used; the text says what.
    Exception(String),
    /// The source stamp's patch does not apply; the tree is left as checked out.
    PatchFailed,
}

impl From<WorkerLost> for Stop {
    fn from(_: WorkerLost) -> Self {
        Stop::Lost
    }
}

/// What the build asks for: the source stamp's branch and revision (no revision with
/// `alwaysUseLatest`).
pub(super) struct Target {
    pub branch: Option<String>,
    pub revision: Option<String>,
}

/// How the working copy is brought up to date.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Method {
    Incremental,
    Clobber,
    /// Unknown and ignored files are removed, local changes reverted.
    Fresh,
    /// Unknown files are removed, local changes reverted; ignored files stay.
    Clean,
    Copy,
}

/// One checkout in progress: the step's context, its log, and the options every command shares.
pub(super) struct Checkout<'c, 'a> {
    pub ctx: &'c StepContext<'a>,
    pub log: LogSink,
    pub timeout: Option<f64>,
    pub env: Vec<(String, String)>,
    /// Where the tool works, relative to the builder's directory: the step's working directory,
    /// or `source` with the copy method.
    pub dir: String,
    pub method: Method,
    pub target: Target,
}

/// What one remote command did.
pub(super) struct Ran {
    pub results: Results,
    pub stdout: String,
}

impl Checkout<'_, '_> {
    /// Runs `command` in `dir` (relative to the builder's directory) with `stdin`, logging it.
    pub async fn run_with(
        &mut self,
        dir: &str,
        command: &[String],
        stdin: Option<&str>,
    ) -> Result<Ran, WorkerLost> {
        let env = Value::Map(
            self.env
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
                .collect(),
        );
        let args = Args::build(vec![
            ("initial_stdin", stdin.map_or(Value::Nil, Value::from)),
            ("workdir", Value::from(self.ctx.builder_path(dir))),
            (
                "command",
                Value::Array(command.iter().map(|c| Value::from(c.as_str())).collect()),
            ),
            ("env", env),
            ("want_stdout", Value::Boolean(true)),
            ("want_stderr", Value::Boolean(true)),
            ("logfiles", Value::Map(vec![])),
            ("timeout", self.timeout.map_or(Value::Nil, Value::F64)),
            ("logEnviron", Value::Boolean(false)),
        ]);
        let (results, stdout) = self.log.run(self.ctx, "shell", args).await?;
        Ok(Ran { results, stdout })
    }

    /// Runs `command` in the tool's directory; a failure stops the checkout.
    pub async fn check(&mut self, command: &[String]) -> Result<String, Stop> {
        let dir = self.dir.clone();
        self.check_in(&dir, command, None).await
    }

    /// Runs `command` in `dir` with `stdin`; a failure stops the checkout.
    pub async fn check_in(
        &mut self,
        dir: &str,
        command: &[String],
        stdin: Option<&str>,
    ) -> Result<String, Stop> {
        let ran = self.run_with(dir, command, stdin).await?;
        if ran.results != Results::Success {
            return Err(Stop::Failed(ran.results));
        }
        Ok(ran.stdout)
    }

    /// Runs `command` in the tool's directory and returns what it did, failed or not.
    pub async fn try_run(&mut self, command: &[String]) -> Result<Ran, WorkerLost> {
        let dir = self.dir.clone();
        self.run_with(&dir, command, None).await
    }

    /// Whether `path` (relative to the builder's directory) exists on the worker.
    pub async fn exists(&mut self, path: &str) -> Result<bool, WorkerLost> {
        let args = Args::build(vec![("path", Value::from(self.ctx.builder_path(path)))]);
        Ok(self.log.run_quiet(self.ctx, "stat", args).await? == Results::Success)
    }

    /// Whether the tool's directory holds `marker` (`.git`, `.hg`, `CVS`, …).
    async fn has(&mut self, marker: &str) -> Result<bool, WorkerLost> {
        let path = format!("{}/{marker}", self.dir);
        self.exists(&path).await
    }

    /// Removes `paths` (relative to the builder's directory), files or directories.
    pub async fn remove(&mut self, paths: &[String]) -> Result<(), Stop> {
        if paths.is_empty() {
            return Ok(());
        }
        let args = Args::build(vec![
            (
                "paths",
                Value::Array(
                    paths
                        .iter()
                        .map(|p| Value::from(self.ctx.builder_path(p)))
                        .collect(),
                ),
            ),
            ("logEnviron", Value::Boolean(false)),
        ]);
        match self.log.run_quiet(self.ctx, "rmdir", args).await? {
            Results::Success => Ok(()),
            r => Err(Stop::Failed(r)),
        }
    }

    /// Removes the tool's directory, so the next command starts from nothing.
    pub async fn clobber(&mut self) -> Result<(), Stop> {
        let dir = self.dir.clone();
        self.remove(&[dir]).await
    }

    /// Whether the tool's directory holds a working copy (it has `marker`: `.hg`, `CVS`, …).
    /// Anything else there is removed, so the tool starts from nothing.
    pub async fn working_copy(&mut self, marker: &str) -> Result<bool, Stop> {
        if self.has(marker).await? {
            return Ok(true);
        }
        self.clobber().await?;
        Ok(false)
    }

    /// Removes a working copy that cannot be updated (of another repository or branch), saying
    /// why; the answer is the working copy's presence, now false.
    pub async fn start_again(&mut self, why: &str) -> Result<bool, Stop> {
        self.header(&format!("{why}: starting again\n")).await;
        self.clobber().await?;
        Ok(false)
    }

    /// Removes files a tool listed (paths relative to its directory) that must not be built.
    pub async fn remove_listed(&mut self, relative: &[String]) -> Result<(), Stop> {
        let paths: Vec<String> = relative
            .iter()
            .filter(|p| !p.is_empty() && safe_relative(p))
            .map(|p| format!("{}/{p}", self.dir))
            .collect();
        if !paths.is_empty() {
            let text = format!("removing {} file(s) the tool does not track\n", paths.len());
            self.log.header(&text).await;
        }
        self.remove(&paths).await
    }

    pub async fn header(&mut self, text: &str) {
        self.log.header(text).await;
    }

    /// Renders a renderable option of the step.
    pub fn render(&self, r: &kiln_core::render::Renderable, what: &str) -> Result<String, Stop> {
        self.ctx.render_string(r, what).map_err(Stop::Exception)
    }
}

/// A path a tool printed is used only if it stays inside the tree.
fn safe_relative(p: &str) -> bool {
    !p.starts_with('/') && !p.split('/').any(|s| s == "..")
}

/// The repository's URL: `repourl`, or `baseURL` with the branch (the source stamp's, or
/// `defaultBranch`) appended.
pub(super) fn location(
    co: &Checkout<'_, '_>,
    l: &kiln_config::RepoLocation,
) -> Result<String, Stop> {
    match (&l.repourl, &l.base_url) {
        (Some(url), _) => co.render(url, "repourl"),
        (None, Some(base)) => {
            let base = co.render(base, "baseURL")?;
            let branch = match (co.target.branch.clone(), &l.default_branch) {
                (Some(b), _) => b,
                (None, Some(d)) => co.render(d, "defaultBranch")?,
                (None, None) => {
                    return Err(Stop::Exception(
                        "the source stamp names no branch and the step has no defaultBranch".into(),
                    ));
                }
            };
            Ok(format!("{base}{branch}"))
        }
        (None, None) => Err(Stop::Exception("the step has no repourl or baseURL".into())),
    }
}

/// A directory split into its parent (`.` for none) and its last component, for the tools that
/// check out into a named directory from the one above it.
pub(super) fn split_dir(dir: &str) -> (String, String) {
    let dir = dir.trim_end_matches('/');
    match dir.rsplit_once('/') {
        Some((parent, name)) if !parent.is_empty() => (parent.to_string(), name.to_string()),
        _ => (".".to_string(), dir.to_string()),
    }
}

/// `["a", "b"]` as owned strings, for building commands.
pub(super) fn cmd(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

pub async fn run(
    ctx: &mut StepContext<'_>,
    step: &StepConfig,
    cfg: &SourceConfig,
    workdir: &str,
) -> Result<StepOutcome, WorkerLost> {
    let stamp = ctx
        .sourcestamps
        .iter()
        .find(|s| s.codebase == cfg.codebase)
        .map(kiln_db::SourceStampRow::to_sourcestamp);
    // A force form left empty gives "" (as Buildbot stores it): no branch, no revision.
    let target = Target {
        branch: stamp
            .as_ref()
            .and_then(|s| s.branch.clone())
            .filter(|b| !b.is_empty()),
        revision: stamp
            .as_ref()
            .filter(|_| !cfg.always_use_latest)
            .and_then(|s| s.revision.clone())
            .filter(|r| !r.is_empty()),
    };
    let method = match (cfg.mode.as_str(), cfg.method.as_str()) {
        ("full", "clobber") => Method::Clobber,
        ("full", "fresh") => Method::Fresh,
        ("full", "clean") => Method::Clean,
        ("full", "copy") => Method::Copy,
        _ => Method::Incremental,
    };
    let mut env = Vec::new();
    for (k, v) in &cfg.env {
        match ctx.render_string(v, &format!("env {k}")) {
            Ok(v) => env.push((k.clone(), v)),
            Err(e) => return Ok(super::steps::exception(ctx, step, &e).await),
        }
    }
    let log = match LogSink::open(ctx).await {
        Ok(l) => l,
        Err(e) => return Ok(super::steps::exception(ctx, step, &e).await),
    };
    let mut co = Checkout {
        ctx,
        log,
        timeout: cfg.timeout,
        env,
        dir: if method == Method::Copy {
            COPY_SOURCE.to_string()
        } else {
            workdir.to_string()
        },
        method,
        target,
    };
    let result = checkout(&mut co, cfg, workdir, stamp.as_ref()).await;
    let cleanup = match &cfg.vcs {
        Vcs::Git(g) => git::cleanup(&mut co, g).await,
        _ => Ok(()),
    };
    let mut log = co.log;
    let outcome = match result.and_then(|done| cleanup.map(|()| done)) {
        Ok(Done {
            properties,
            patched,
        }) => {
            for (name, value) in properties {
                let text = match &value {
                    PropertyValue::Str(s) if s.len() < 200 => s.clone(),
                    other => other.render(),
                };
                log.header(&format!("{name}: {text}\n")).await;
                let value = if cfg.codebase.is_empty() {
                    value
                } else {
                    // With codebases, each step's value is kept under its codebase.
                    let mut map = match ctx.props.get(&name) {
                        Some(PropertyValue::Map(m)) => m.clone(),
                        _ => Default::default(),
                    };
                    map.insert(cfg.codebase.clone(), value);
                    PropertyValue::Map(map)
                };
                ctx.set_properties
                    .push((name, value, cfg.vcs.step_name().to_string()));
            }
            let done = step
                .description_done
                .clone()
                .unwrap_or_else(|| "update".into());
            StepOutcome {
                results: Results::Success,
                state: if patched {
                    format!("{done} (patched)")
                } else {
                    done
                },
            }
        }
        Err(Stop::Lost) => {
            log.finish().await;
            return Err(WorkerLost);
        }
        Err(Stop::Failed(r)) => StepOutcome {
            results: r,
            state: format!("update ({})", r.name()),
        },
        Err(Stop::Exception(why)) => {
            log.finish().await;
            return Ok(super::steps::exception(ctx, step, &why).await);
        }
        Err(Stop::PatchFailed) => StepOutcome {
            results: Results::Failure,
            state: "patch failed".into(),
        },
    };
    log.finish().await;
    Ok(outcome)
}

/// A finished checkout: the properties it sets, and whether a patch was applied.
struct Done {
    properties: Vec<(String, PropertyValue)>,
    patched: bool,
}

async fn checkout(
    co: &mut Checkout<'_, '_>,
    cfg: &SourceConfig,
    workdir: &str,
    stamp: Option<&kiln_core::sourcestamp::SourceStamp>,
) -> Result<Done, Stop> {
    if co.method == Method::Clobber {
        co.clobber().await?;
    }
    if let Vcs::Git(g) = &cfg.vcs {
        git::prepare(co, g).await?;
    }
    let mut retries = cfg.retry.map_or(0, |(_, n)| n);
    loop {
        match update(co, cfg).await {
            Ok(()) => break,
            Err(Stop::Failed(r)) if retries > 0 && r != Results::Cancelled => {
                retries -= 1;
                let delay = cfg.retry.map_or(0.0, |(d, _)| d);
                co.header(&format!(
                    "the checkout failed; removing it and trying again in {delay} s ({retries} more {} after this)\n",
                    if retries == 1 { "try" } else { "tries" }
                ))
                .await;
                co.clobber().await?;
                let clock = &co.ctx.master.updates.clock;
                clock.sleep_until(clock.now() + delay.ceil() as i64).await;
            }
            Err(e) => return Err(e),
        }
    }
    if co.method == Method::Copy {
        co.remove(&[workdir.to_string()]).await?;
        let args = Args::build(vec![
            ("from_path", Value::from(co.ctx.builder_path(COPY_SOURCE))),
            ("to_path", Value::from(co.ctx.builder_path(workdir))),
            ("logEnviron", Value::Boolean(false)),
            ("timeout", co.timeout.map_or(Value::Nil, Value::F64)),
        ]);
        let r = co.log.run_quiet(co.ctx, "cpdir", args).await?;
        if r != Results::Success {
            return Err(Stop::Failed(r));
        }
    }
    // The revision is read from the repository, before a patch changes the tree.
    let mut properties = vec![("got_revision".to_string(), got_revision(co, cfg).await?)];
    if let Vcs::Git(g) = &cfg.vcs {
        properties.extend(git::describe(co, g).await?);
    }
    let mut patched = false;
    if let Some(patch) = stamp.and_then(|ss| ss.patch.as_ref()) {
        apply_patch(co, cfg, workdir, patch).await?;
        patched = true;
    }
    Ok(Done {
        properties,
        patched,
    })
}

async fn update(co: &mut Checkout<'_, '_>, cfg: &SourceConfig) -> Result<(), Stop> {
    match &cfg.vcs {
        Vcs::Git(g) => git::update(co, g).await,
        Vcs::Mercurial(h) => hg::update(co, h).await,
        Vcs::Svn(s) => svn::update(co, s).await,
        Vcs::Cvs(c) => cvs::update(co, c).await,
        Vcs::Darcs(d) => darcs::update(co, d).await,
        Vcs::Bzr(b) => bzr::update(co, b).await,
        Vcs::Arch(a) => arch::update(co, a).await,
        Vcs::P4(p) => p4::update(co, p).await,
        Vcs::Monotone(m) => monotone::update(co, m).await,
    }
}

async fn got_revision(
    co: &mut Checkout<'_, '_>,
    cfg: &SourceConfig,
) -> Result<PropertyValue, Stop> {
    match &cfg.vcs {
        Vcs::Git(g) => git::got_revision(co, g).await,
        Vcs::Mercurial(_) => hg::got_revision(co).await,
        Vcs::Svn(s) => svn::got_revision(co, s).await,
        Vcs::Cvs(_) => Ok(cvs::got_revision(co)),
        Vcs::Darcs(_) => darcs::got_revision(co).await,
        Vcs::Bzr(_) => bzr::got_revision(co).await,
        Vcs::Arch(_) => arch::got_revision(co).await,
        Vcs::P4(p) => p4::got_revision(co, p).await,
        Vcs::Monotone(_) => monotone::got_revision(co).await,
    }
}

/// Applies the source stamp's patch in the working directory, at its level and subdirectory,
/// checking it first: git's own `apply` for Git, `patch` for the others.
async fn apply_patch(
    co: &mut Checkout<'_, '_>,
    cfg: &SourceConfig,
    workdir: &str,
    patch: &kiln_core::sourcestamp::Patch,
) -> Result<(), Stop> {
    let dir = match patch
        .subdir
        .as_deref()
        .filter(|d| !d.is_empty() && *d != ".")
    {
        Some(sub) => format!("{workdir}/{sub}"),
        None => workdir.to_string(),
    };
    let body = String::from_utf8_lossy(&patch.body).into_owned();
    let level = format!("-p{}", patch.level);
    co.header(&format!(
        "applying the source stamp's patch at {level} in {dir}\n"
    ))
    .await;
    let commands = if matches!(cfg.vcs, Vcs::Git(_)) {
        vec![
            cmd(&["git", "apply", "--check", &level, "-"]),
            cmd(&["git", "apply", &level, "-"]),
        ]
    } else {
        let apply = [
            "patch",
            &level,
            "--forward",
            "--batch",
            "--remove-empty-files",
        ];
        let mut check = cmd(&apply);
        check.push("--dry-run".into());
        vec![check, cmd(&apply)]
    };
    for command in commands {
        let ran = co.run_with(&dir, &command, Some(&body)).await?;
        if ran.results != Results::Success {
            return Err(Stop::PatchFailed);
        }
    }
    Ok(())
}
