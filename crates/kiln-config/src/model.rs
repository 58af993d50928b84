//! The validated configuration: plain data for the rest of kiln.

use std::collections::BTreeMap;

use kiln_core::PropertyValue;
use kiln_core::render::Renderable;
use kiln_core::step::StepFlags;

use crate::Diagnostic;

/// Everything a master is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterConfig {
    pub title: String,
    pub title_url: String,
    pub buildbot_url: String,
    /// The database URL as written (`sqlite:///state.sqlite`, `postgresql://…`).
    pub db_url: String,
    /// The TCP port of the `msgpack_experimental_v7` worker protocol.
    pub worker_port: Option<u16>,
    pub www: WwwConfig,
    pub workers: Vec<WorkerConfig>,
    pub builders: Vec<BuilderConfig>,
    pub schedulers: Vec<SchedulerConfig>,
    /// The pollers of `c['change_source']`.
    pub change_sources: Vec<ChangeSourceConfig>,
    /// Global properties (`c['properties']`).
    pub properties: BTreeMap<String, PropertyValue>,
    /// Whether requests waiting on a builder are collapsed (`c['collapseRequests']`).
    pub collapse_requests: Collapse,
    /// `c['prioritizeBuilders']`: orders the builders with waiting requests.
    pub prioritize_builders: Option<kiln_core::changefilter::FnRef>,
    /// `c['codebaseGenerator']`: gives each new change its codebase from its other attributes.
    pub codebase_generator: Option<kiln_core::changefilter::FnRef>,
    /// `util.OldBuildCanceller` services from `c['services']`.
    pub old_build_cancellers: Vec<OldBuildCancellerConfig>,
    /// `c['secretsProviders']`, asked in turn.
    pub secrets_providers: Vec<SecretProvider>,
    /// Warnings found while loading; the configuration is usable.
    pub warnings: Vec<Diagnostic>,
    /// The functions the configuration passes to kiln, callable by [`kiln_core::changefilter::FnRef`].
    pub functions: crate::Functions,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WwwConfig {
    pub port: Option<u16>,
    /// Bind address; loopback unless configured.
    pub host: String,
    /// The enabled change hook dialects (`c['www']['change_hook_dialects']`), with their options.
    pub change_hook_dialects: BTreeMap<String, BTreeMap<String, PropertyValue>>,
    /// HTTP Basic credentials the change hooks require (`change_hook_auth`); empty means open.
    pub change_hook_auth: Vec<HookCredentials>,
    /// The largest change hook body accepted, in bytes (`change_hook_max_body`, default 10 MB).
    pub change_hook_max_body: usize,
}

/// One codebase a scheduler builds (`codebases={'name': {'repository': …, 'branch': …}}`), with
/// the source used when no change of it is in a buildset.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CodebaseDefault {
    pub name: String,
    pub repository: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub project: String,
}

/// `Periodic` or `Nightly`: builds on a schedule, optionally only when changes came.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedSchedulerConfig {
    pub name: String,
    /// `Periodic` or `Nightly`, for the state kept in the database.
    pub class_name: String,
    pub builder_names: Vec<String>,
    pub schedule: kiln_core::schedulers::timed::Schedule,
    /// `force_at_*`: with `onlyIfChanged`, times at which a build runs even without changes.
    pub force_at: Option<kiln_core::cron::Cron>,
    /// The time zone of the cron fields (`timezone`); `None` is the master's own.
    pub timezone: Option<String>,
    /// `NightlyTriggerable`: at each time, builds what the last `Trigger` step asked for, if
    /// anything, instead of looking at changes.
    pub triggerable: bool,
    pub only_if_changed: bool,
    pub change_filter: kiln_core::changefilter::ChangeFilter,
    pub file_is_important: Option<kiln_core::changefilter::FnRef>,
    pub only_important: bool,
    pub codebases: Vec<CodebaseDefault>,
    pub properties: Vec<(String, PropertyValue)>,
    pub reason: String,
    pub priority: i64,
}

/// `Dependent`: builds the source stamps of each buildset of its upstream scheduler that
/// succeeds (SUCCESS or WARNINGS).
#[derive(Debug, Clone, PartialEq)]
pub struct DependentConfig {
    pub name: String,
    /// The upstream scheduler's name.
    pub upstream: String,
    pub builder_names: Vec<String>,
    pub properties: Vec<(String, PropertyValue)>,
    pub reason: String,
    pub priority: i64,
}

/// `Try_Userpass`: builds a patch sent by `kiln try` with one of its users' passwords.
#[derive(Debug, Clone, PartialEq)]
pub struct TryConfig {
    pub name: String,
    /// The builders a try job may ask for (all of them when it names none).
    pub builder_names: Vec<String>,
    pub userpass: Vec<(String, String)>,
    pub properties: Vec<(String, PropertyValue)>,
}

/// `Triggerable`: builds when a `Trigger` step asks.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerableConfig {
    pub name: String,
    pub builder_names: Vec<String>,
    pub codebases: Vec<CodebaseDefault>,
    pub properties: Vec<(String, PropertyValue)>,
    pub reason: String,
    pub priority: i64,
}

/// The `Trigger` step: starts buildsets on `Triggerable` schedulers, optionally waiting for them.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerConfig {
    pub scheduler_names: Vec<String>,
    /// Schedulers whose results do not count toward the step's.
    pub unimportant_scheduler_names: Vec<String>,
    pub wait_for_finish: bool,
    /// Pass the build's source stamps with `got_revision` as their revision.
    pub update_source_stamp: bool,
    /// Pass the build's source stamps without a revision: the latest.
    pub always_use_latest: bool,
    /// Explicit source stamps (`sourceStamps`), by codebase.
    pub source_stamps: Vec<CodebaseDefault>,
    pub set_properties: Vec<(String, Renderable)>,
    pub copy_properties: Vec<String>,
    pub parent_relationship: String,
}

/// A change source: a poller of a repository.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeSourceConfig {
    Git(Box<GitPollerConfig>),
    Hg(Box<HgPollerConfig>),
    Svn(Box<SvnPollerConfig>),
}

impl ChangeSourceConfig {
    pub fn common(&self) -> &PollerCommon {
        match self {
            ChangeSourceConfig::Git(g) => &g.common,
            ChangeSourceConfig::Hg(h) => &h.common,
            ChangeSourceConfig::Svn(s) => &s.common,
        }
    }
}

/// What every poller has.
#[derive(Debug, Clone, PartialEq)]
pub struct PollerCommon {
    /// Its name (`name`, by default the repository URL): the `poller` hook and its stored state
    /// use it.
    pub name: String,
    /// `GitPoller`, `HgPoller` or `SVNPoller`.
    pub class_name: String,
    /// Seconds between polls (`pollInterval`, default 600).
    pub poll_interval: i64,
    pub poll_at_launch: bool,
    pub category: Option<String>,
    pub project: String,
}

/// Which refs a `GitPoller` follows.
#[derive(Debug, Clone, PartialEq)]
pub enum GitBranches {
    /// Branch names (`main` or `refs/heads/main`), or other full ref names.
    Named(Vec<String>),
    /// `branches=True`: every branch.
    All,
    /// `only_tags=True`: every tag.
    Tags,
    /// A function of the full ref name.
    Function(kiln_core::changefilter::FnRef),
}

#[derive(Debug, Clone, PartialEq)]
pub struct GitPollerConfig {
    pub common: PollerCommon,
    pub repourl: String,
    pub branches: GitBranches,
    /// The poller's clone, relative to the master's base directory.
    pub workdir: String,
    pub gitbin: String,
    pub use_timestamps: bool,
    pub build_pushes_with_no_commits: bool,
    pub codebase: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HgPollerConfig {
    pub common: PollerCommon,
    pub repourl: String,
    pub branches: Vec<String>,
    pub bookmarks: Vec<String>,
    pub workdir: String,
    pub hgbin: String,
    pub use_timestamps: bool,
    /// A format with `%s` for the revision.
    pub revlink: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SvnPollerConfig {
    pub common: PollerCommon,
    pub repourl: String,
    /// `split_file`: maps a path to its branch and file; `None` is everything on the trunk.
    pub split_file: Option<kiln_core::changefilter::FnRef>,
    pub svnuser: Option<String>,
    pub svnpasswd: Option<String>,
    pub svnbin: String,
    /// How many log entries one poll reads.
    pub histmax: i64,
    /// A format with `%s` for the revision.
    pub revlinktmpl: Option<String>,
    pub extra_args: Vec<String>,
}

/// A lock: `util.MasterLock` (one for the master) or `util.WorkerLock` (one per worker).
#[derive(Debug, Clone, PartialEq)]
pub struct LockConfig {
    pub name: String,
    pub per_worker: bool,
    pub max_count: u32,
    /// A `WorkerLock`'s own count on some workers.
    pub max_count_for_worker: BTreeMap<String, u32>,
}

/// A builder's or step's use of a lock: exclusive, or counting `count` of its places.
#[derive(Debug, Clone, PartialEq)]
pub struct LockAccess {
    pub lock: LockConfig,
    pub exclusive: bool,
    pub count: u32,
}

/// `util.OldBuildCanceller`: a newer build request on a builder cancels the older requests and
/// builds of the same branch.
#[derive(Debug, Clone, PartialEq)]
pub struct OldBuildCancellerConfig {
    pub name: String,
    /// Builder names, and the source stamps they apply to (project, codebase, repository and
    /// branch tests).
    pub filters: Vec<(Vec<String>, kiln_core::changefilter::ChangeFilter)>,
}

/// Where secrets come from; each is read when a secret is used, so a changed secret needs no
/// restart.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretProvider {
    /// `secrets.SecretInAFile(dirname)`: one file per secret, named after it (with one of
    /// `suffixes`, if given), its trailing whitespace stripped unless `strip=False`.
    Directory {
        dir: String,
        strip: bool,
        suffixes: Vec<String>,
    },
    /// `secrets.SecretInEnvironment(prefix)`: the variable `prefix + name` of the master's
    /// environment.
    Environment { prefix: String },
    /// `secrets.SecretInKeyValueFile(path)`: a file of `name=value` lines.
    KeyValueFile { path: String },
}

/// How requests waiting on a builder are collapsed when a new one arrives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Collapse {
    /// `False`: never.
    Never,
    /// `True`: by Buildbot's default rule (`kiln_core::collapse`).
    Default,
    /// A function `(master, builder, new, old)` deciding for each older request.
    Function(kiln_core::changefilter::FnRef),
}

/// The default of `c['www']['change_hook_max_body']`.
pub const DEFAULT_HOOK_MAX_BODY: usize = 10_000_000;

/// Where the change hooks' users and passwords come from.
#[derive(Debug, Clone, PartialEq)]
pub enum HookCredentials {
    /// A file of `user:password` lines, relative to the master's base directory, read at each call
    /// so a change takes effect without a restart.
    File(String),
    /// Users and passwords written in the configuration.
    Users(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    pub name: String,
    pub password: String,
    pub max_builds: Option<u32>,
    pub properties: BTreeMap<String, PropertyValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuilderConfig {
    pub name: String,
    pub workernames: Vec<String>,
    /// The builder's directory on the master.
    pub builddir: String,
    /// The builder's directory on each worker, relative to the worker's base directory.
    pub workerbuilddir: String,
    pub steps: Vec<StepConfig>,
    pub properties: BTreeMap<String, PropertyValue>,
    pub tags: Vec<String>,
    pub env: Vec<(String, Renderable)>,
    pub description: Option<String>,
    /// The builder's own `collapseRequests`, over the global one.
    pub collapse_requests: Option<Collapse>,
    /// `nextWorker(builder, workers, request)`: the worker for a request.
    pub next_worker: Option<kiln_core::changefilter::FnRef>,
    /// `nextBuild(builder, requests)`: the request to start next.
    pub next_build: Option<kiln_core::changefilter::FnRef>,
    /// `canStartBuild(builder, worker, request)`: whether a request may start on a worker.
    pub can_start_build: Option<kiln_core::changefilter::FnRef>,
    /// Locks held for the whole build.
    pub locks: Vec<LockAccess>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepConfig {
    pub name: String,
    /// Locks held while the step runs.
    pub locks: Vec<LockAccess>,
    pub kind: StepKind,
    pub flags: StepFlags,
    /// Relative to the build directory (`build` by default).
    pub workdir: Option<Renderable>,
    pub description: Option<String>,
    pub description_done: Option<String>,
    /// `doStepIf`: the step runs only when this holds; otherwise it is SKIPPED.
    pub do_step_if: StepCondition,
    /// `hideStepIf`: the finished step is hidden from the web pages when this holds.
    pub hide_step_if: StepCondition,
}

/// A step's `doStepIf` or `hideStepIf`.
#[derive(Debug, Clone, PartialEq)]
pub enum StepCondition {
    Always(bool),
    /// A renderable, true when its value is truthy.
    Renderable(Renderable),
    /// A Starlark function of the step (`doStepIf`) or of the results and the step
    /// (`hideStepIf`), called through the prelude's `call`.
    Function {
        call: kiln_core::changefilter::FnRef,
        func: kiln_core::changefilter::FnRef,
    },
}

/// What a step does.
#[derive(Debug, Clone, PartialEq)]
pub enum StepKind {
    ShellCommand(ShellCommandConfig),
    FileUpload {
        workersrc: Renderable,
        masterdest: Renderable,
        mode: Option<u32>,
        maxsize: Option<u64>,
        blocksize: u64,
        keepstamp: bool,
        url: Option<String>,
        url_text: Option<String>,
    },
    DirectoryUpload {
        workersrc: Renderable,
        masterdest: Renderable,
        maxsize: Option<u64>,
        blocksize: u64,
        compress: Option<String>,
    },
    FileDownload {
        mastersrc: Renderable,
        workerdest: Renderable,
        mode: Option<u32>,
        maxsize: Option<u64>,
        blocksize: u64,
    },
    StringDownload {
        s: Renderable,
        workerdest: Renderable,
        mode: Option<u32>,
        maxsize: Option<u64>,
        blocksize: u64,
    },
    MakeDirectory {
        dir: Renderable,
    },
    RemoveDirectory {
        dir: Renderable,
    },
    /// Runs on the master: asks `Triggerable` schedulers for buildsets.
    Trigger(Box<TriggerConfig>),
    /// Sets one build property (runs on the master).
    SetProperty {
        property: String,
        value: Renderable,
    },
    /// Sets build properties from a dict or a renderer (runs on the master).
    SetProperties {
        properties: Renderable,
    },
    /// Whether a file exists on the worker (relative to the builder's directory).
    FileExists {
        file: Renderable,
    },
    /// Copies a directory on the worker (paths relative to the builder's directory).
    CopyDirectory {
        src: Renderable,
        dest: Renderable,
        timeout: Option<f64>,
        max_time: Option<f64>,
    },
    /// Uploads several files or directories into a master directory.
    MultipleFileUpload(Box<MultipleFileUploadConfig>),
    /// Writes JSON to a worker file: a value (`JSONStringDownload`), or the build's properties
    /// and source stamps (`JSONPropertiesDownload`, `value` None).
    JsonDownload {
        value: Option<Renderable>,
        workerdest: Renderable,
        mode: Option<u32>,
        maxsize: Option<u64>,
        blocksize: u64,
    },
    /// Runs a command on the master.
    MasterShellCommand(Box<MasterShellCommandConfig>),
    /// Sends an HTTP request from the master.
    Http(Box<HttpStepConfig>),
    /// A shell command whose output is searched for compiler warnings (`Compile`, `Test`,
    /// `WarningCountingShellCommand`).
    WarningCounting(Box<WarningCountingConfig>),
    /// Several shell commands in turn (`ShellSequence`).
    ShellSequence(Box<ShellSequenceConfig>),
    /// Checks out the build's source with its version-control tool.
    Source(Box<SourceConfig>),
    /// Runs a command and sets properties from its output: `property` to its stripped standard
    /// output, or `extract_fn(rc, stdout, stderr)`'s dict.
    SetPropertyFromCommand(Box<SetPropertyFromCommandConfig>),
}

/// A source step: what every version-control system's step shares, and the system's own options.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub vcs: Vcs,
    /// `incremental` or `full`.
    pub mode: String,
    /// With `full`: `clobber`, `fresh`, `clean` or `copy` (each system has its default).
    pub method: String,
    /// The codebase whose source stamp this step checks out.
    pub codebase: String,
    /// Build the branch's latest revision, not the source stamp's.
    pub always_use_latest: bool,
    /// Seconds without output before a command is killed.
    pub timeout: Option<f64>,
    /// `retry=(delay, repeats)`: a checkout that fails is removed and tried again after `delay`
    /// seconds, up to `repeats` more times.
    pub retry: Option<(f64, u32)>,
    /// Environment variables for the tool's commands.
    pub env: Vec<(String, Renderable)>,
}

/// The version-control system a source step uses, with its own options.
#[derive(Debug, Clone, PartialEq)]
pub enum Vcs {
    Git(Box<GitConfig>),
    Mercurial(HgConfig),
    Svn(SvnConfig),
    Cvs(CvsConfig),
    Darcs(RepoLocation),
    Bzr(RepoLocation),
    Arch(ArchConfig),
    P4(Box<P4Config>),
    Monotone(MonotoneConfig),
}

impl Vcs {
    /// The step's class name in master.star, used as the source of the properties it sets.
    pub fn step_name(&self) -> &'static str {
        match self {
            Vcs::Git(_) => "Git",
            Vcs::Mercurial(_) => "Mercurial",
            Vcs::Svn(_) => "SVN",
            Vcs::Cvs(_) => "CVS",
            Vcs::Darcs(_) => "Darcs",
            Vcs::Bzr(_) => "Bzr",
            Vcs::Arch(_) => "Arch",
            Vcs::P4(_) => "P4",
            Vcs::Monotone(_) => "Monotone",
        }
    }
}

/// Where a repository is, for the systems whose branches are separate repositories: a fixed
/// `repourl`, or `baseURL` with the branch (the source stamp's, or `defaultBranch`) appended.
#[derive(Debug, Clone, PartialEq)]
pub struct RepoLocation {
    pub repourl: Option<Renderable>,
    pub base_url: Option<Renderable>,
    pub default_branch: Option<Renderable>,
}

/// `steps.Git`.
#[derive(Debug, Clone, PartialEq)]
pub struct GitConfig {
    pub repourl: Renderable,
    /// The branch when the source stamp names none (`HEAD`: the remote's default).
    pub branch: Renderable,
    /// Clone and fetch this many commits deep; 0 for the whole history.
    pub shallow: u32,
    pub submodules: bool,
    /// Fetch the remote's tags too.
    pub tags: bool,
    /// A local repository whose objects a clone borrows (`git clone --reference`).
    pub reference: Option<Renderable>,
    /// A full checkout whose clone or fetch fails is removed and cloned again, once.
    pub clobber_on_failure: bool,
    /// `git describe` options; the result becomes the `commit-description` property.
    pub get_description: Option<Vec<String>>,
    /// `-c name=value` for every git command.
    pub config: Vec<(String, String)>,
    pub origin: Option<String>,
    pub ssh_private_key: Option<Renderable>,
    pub ssh_host_key: Option<Renderable>,
    pub ssh_known_hosts: Option<Renderable>,
}

/// `steps.Mercurial`.
#[derive(Debug, Clone, PartialEq)]
pub struct HgConfig {
    pub location: RepoLocation,
    /// `dirname`: each branch is its own repository (`baseURL` + branch); `inrepo`: named
    /// branches inside `repourl`.
    pub branch_type: String,
    /// With `inrepo`: a working copy on another branch is removed and cloned again.
    pub clobber_on_branch_change: bool,
}

/// `steps.SVN`.
#[derive(Debug, Clone, PartialEq)]
pub struct SvnConfig {
    pub location: RepoLocation,
    pub username: Option<Renderable>,
    pub password: Option<Renderable>,
    pub extra_args: Vec<String>,
    /// `got_revision` is the last revision that changed the tree, not the repository's.
    pub prefer_last_changed_rev: bool,
}

/// `steps.CVS`.
#[derive(Debug, Clone, PartialEq)]
pub struct CvsConfig {
    pub cvsroot: Renderable,
    pub cvsmodule: Renderable,
    /// The branch tag when the source stamp names none (the trunk when unset).
    pub branch: Option<Renderable>,
    pub global_options: Vec<String>,
    pub extra_options: Vec<String>,
    /// A password for `cvs login` (pserver repositories).
    pub login: Option<Renderable>,
}

/// `steps.Arch`: an archive at `url`, a version (`category--branch--version`) as the branch.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchConfig {
    pub url: Renderable,
    pub version: Renderable,
    /// The archive's name; read from the archive when unset.
    pub archive: Option<String>,
}

/// `steps.P4`.
#[derive(Debug, Clone, PartialEq)]
pub struct P4Config {
    pub p4base: Option<Renderable>,
    pub p4branch: Option<Renderable>,
    pub p4extra_views: Vec<(String, String)>,
    pub p4viewspec: Vec<(String, String)>,
    pub p4viewspec_suffix: String,
    pub p4port: Option<Renderable>,
    pub p4user: Option<Renderable>,
    pub p4passwd: Option<Renderable>,
    pub p4client: Renderable,
    pub p4line_end: String,
    pub p4client_spec_options: String,
    pub p4extra_args: Vec<String>,
    pub use_tickets: bool,
    pub stream: bool,
    pub p4bin: String,
}

/// `steps.Monotone`.
#[derive(Debug, Clone, PartialEq)]
pub struct MonotoneConfig {
    pub repourl: Renderable,
    pub branch: Renderable,
    pub progress: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SetPropertyFromCommandConfig {
    pub shell: ShellCommandConfig,
    pub property: Option<String>,
    pub extract_fn: Option<kiln_core::changefilter::FnRef>,
    pub strip: bool,
}

/// `MultipleFileUpload`.
#[derive(Debug, Clone, PartialEq)]
pub struct MultipleFileUploadConfig {
    pub workersrcs: Renderable,
    pub masterdest: Renderable,
    pub maxsize: Option<u64>,
    pub blocksize: u64,
    pub mode: Option<u32>,
    pub keepstamp: bool,
    /// Each source is a glob pattern, expanded on the worker.
    pub glob: bool,
    pub compress: Option<String>,
    pub url: Option<String>,
    pub url_text: Option<String>,
}

/// `MasterShellCommand`.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterShellCommandConfig {
    /// A list (run directly) or a string (run by `/bin/sh -c`).
    pub command: Renderable,
    pub env: Vec<(String, Renderable)>,
    /// Relative to the master's base directory; the base directory itself by default.
    pub workdir: Option<Renderable>,
    pub log_environ: bool,
}

/// `HTTPStep` and its `POST`, `GET`, … forms.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpStepConfig {
    pub method: String,
    pub url: Renderable,
    /// Query parameters, appended to the URL.
    pub params: Option<Renderable>,
    pub headers: Option<Renderable>,
    /// A string body, or a dict sent as a form.
    pub data: Option<Renderable>,
    /// A value sent as JSON.
    pub json: Option<Renderable>,
    /// `(user, password)` for HTTP Basic authentication.
    pub auth: Option<Renderable>,
    pub timeout: Option<f64>,
    /// How an `https` server's certificate is checked: `None` against the usual roots, `Some("")`
    /// not at all (`verify=False`), `Some(path)` against a PEM file of CA certificates on the
    /// master.
    pub verify: Option<String>,
    /// Header names whose values the log does not show.
    pub hide_request_headers: Vec<String>,
    pub hide_response_headers: Vec<String>,
}

/// `WarningCountingShellCommand` and its kin `Compile` and `Test`.
#[derive(Debug, Clone, PartialEq)]
pub struct WarningCountingConfig {
    pub shell: ShellCommandConfig,
    /// A regular expression searched for in each line of output.
    pub warning_pattern: String,
    /// Take file, line and text from the pattern's first three groups (Buildbot's
    /// `warnExtractFromRegexpGroups`) instead of the whole line.
    pub extract_groups: bool,
    pub directory_enter_pattern: String,
    pub directory_leave_pattern: String,
    /// A file on the worker, relative to the working directory, of `FILE-RE : WARNING-RE [: START[-END]]`
    /// lines naming warnings that do not count.
    pub suppression_file: Option<Renderable>,
    pub suppression_list: Vec<Suppression>,
    /// More warnings than this fail the step.
    pub max_warn_count: Option<u64>,
    /// How the `Test` step reads test results from its output, if it does.
    pub test_results: Option<TestResultsFormat>,
}

/// A warning that does not count: its file, its text, and the lines it may be on.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    pub file: Option<String>,
    pub warning: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
}

/// The test output formats kiln reads.
#[derive(Debug, Clone, PartialEq)]
pub enum TestResultsFormat {
    /// `cargo test` and other Rust libtest harnesses.
    LibTest,
    /// The Test Anything Protocol.
    Tap,
    /// JUnit XML files on the worker, matched by a glob relative to the working directory.
    JUnit(Renderable),
}

/// `ShellSequence`: commands run in turn, each with its own flags and log.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellSequenceConfig {
    /// The options the commands share (`env`, `timeout`, …); its `command` is unused.
    pub shell: ShellCommandConfig,
    pub commands: Vec<ShellArg>,
}

/// One command of a `ShellSequence`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellArg {
    pub command: Renderable,
    /// The log it writes to; `stdio` by default.
    pub logname: Option<String>,
    pub flags: kiln_core::step::StepFlags,
}

/// A file on the worker followed as a log of the step (`logfiles`).
#[derive(Debug, Clone, PartialEq)]
pub struct LogFile {
    pub name: String,
    pub filename: String,
    /// Only what is written after the command starts.
    pub follow: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShellCommandConfig {
    pub logfiles: Vec<LogFile>,
    /// Logs of files that were never written are not created.
    pub lazylogfiles: bool,
    /// A list (run directly) or a string (run by `/bin/sh -c`).
    pub command: Renderable,
    pub env: Vec<(String, Renderable)>,
    pub want_stdout: bool,
    pub want_stderr: bool,
    /// Seconds without output before the command is killed; Buildbot's default is 1200.
    pub timeout: Option<f64>,
    pub max_time: Option<f64>,
    pub max_lines: Option<i64>,
    pub sigterm_time: Option<f64>,
    pub use_pty: bool,
    pub log_environ: bool,
    pub interrupt_signal: String,
    pub initial_stdin: Option<Renderable>,
    /// Exit code → result; by default 0 is SUCCESS and anything else FAILURE.
    pub decode_rc: BTreeMap<i64, kiln_core::Results>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SchedulerConfig {
    Force(Box<ForceSchedulerConfig>),
    Basic(Box<BasicSchedulerConfig>),
    Timed(Box<TimedSchedulerConfig>),
    Triggerable(Box<TriggerableConfig>),
    Dependent(Box<DependentConfig>),
    Try(Box<TryConfig>),
}

impl SchedulerConfig {
    pub fn name(&self) -> &str {
        match self {
            SchedulerConfig::Force(f) => &f.name,
            SchedulerConfig::Basic(b) => &b.name,
            SchedulerConfig::Timed(t) => &t.name,
            SchedulerConfig::Triggerable(t) => &t.name,
            SchedulerConfig::Dependent(d) => &d.name,
            SchedulerConfig::Try(t) => &t.name,
        }
    }

    pub fn builder_names(&self) -> &[String] {
        match self {
            SchedulerConfig::Force(f) => &f.builder_names,
            SchedulerConfig::Basic(b) => &b.builder_names,
            SchedulerConfig::Timed(t) => &t.builder_names,
            SchedulerConfig::Triggerable(t) => &t.builder_names,
            SchedulerConfig::Dependent(d) => &d.builder_names,
            SchedulerConfig::Try(t) => &t.builder_names,
        }
    }
}

/// `SingleBranchScheduler` (alias `Scheduler`) or `AnyBranchScheduler`: builds changes that pass
/// its filter once their tree has been stable for a while.
#[derive(Debug, Clone, PartialEq)]
pub struct BasicSchedulerConfig {
    pub name: String,
    /// `SingleBranchScheduler` or `AnyBranchScheduler`, for the default reason.
    pub class_name: String,
    pub builder_names: Vec<String>,
    /// One tree-stable timer per codebase, project, repository and branch (`AnyBranchScheduler`).
    pub per_branch: bool,
    pub change_filter: kiln_core::changefilter::ChangeFilter,
    /// Seconds; `None` builds each important change at once.
    pub tree_stable_timer: Option<i64>,
    pub only_important: bool,
    /// `fileIsImportant`: decides whether a change that passed the filter starts the timer.
    pub file_is_important: Option<kiln_core::changefilter::FnRef>,
    /// The codebases the scheduler builds, with their defaults (`codebases`); changes of other
    /// codebases are not for it.
    pub codebases: Vec<CodebaseDefault>,
    pub properties: Vec<(String, PropertyValue)>,
    pub reason: String,
    pub priority: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForceSchedulerConfig {
    pub name: String,
    pub builder_names: Vec<String>,
    pub label: String,
    pub button_name: String,
    pub reason_string: String,
    pub username: ParameterConfig,
    pub reason: ParameterConfig,
    pub priority: ParameterConfig,
    pub properties: Vec<ParameterConfig>,
    /// One `CodebaseParameter` per codebase (by default one for the codebase `''`): each makes a
    /// source stamp from its `branch`, `revision`, `repository`, `project` and `patch` fields.
    pub codebases: Vec<ParameterConfig>,
}

/// The kinds of force-form parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParameterKind {
    String,
    Text,
    Int,
    Boolean,
    UserName,
    Fixed,
    ChoiceString,
    /// A group of fields; its value is a dict of theirs (flattened into the properties when the
    /// group has no name).
    Nested,
    /// A codebase's source stamp fields.
    Codebase,
    /// A property whose name and value are both typed in (`NAME_name`, `NAME_value`).
    AnyProperty,
    /// A patch to apply: `body`, `level`, `subdir`, `author`, `comment`.
    Patch,
    /// A choice among the builders' workers, or `*` for any; sets `workername`.
    WorkerChoice,
    /// `builder/number`: the properties set by that build's force form, and its source stamps.
    InheritBuild,
}

impl ParameterKind {
    /// Buildbot's `type` name for the REST API.
    pub fn type_name(self) -> &'static str {
        match self {
            ParameterKind::String => "text",
            ParameterKind::Text => "textarea",
            ParameterKind::Int => "int",
            ParameterKind::Boolean => "bool",
            ParameterKind::UserName => "username",
            ParameterKind::Fixed => "fixed",
            ParameterKind::ChoiceString | ParameterKind::WorkerChoice => "list",
            ParameterKind::Nested | ParameterKind::Codebase | ParameterKind::Patch => "nested",
            ParameterKind::AnyProperty => "anyproperty",
            ParameterKind::InheritBuild => "inherit",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParameterConfig {
    pub kind: ParameterKind,
    pub name: String,
    pub label: String,
    pub default: PropertyValue,
    pub required: bool,
    pub regex: Option<String>,
    pub need_email: bool,
    pub choices: Vec<String>,
    pub strict: bool,
    pub hide: bool,
    /// The fields of a nested, codebase or patch parameter.
    pub fields: Vec<ParameterConfig>,
    /// `InheritBuildParameter`'s `compatible_builds(master, buildername)`, listing the choices.
    pub compatible_builds: Option<kiln_core::changefilter::FnRef>,
}

impl ParameterConfig {
    /// A parameter of `kind` with Buildbot's defaults.
    pub fn new(kind: ParameterKind, name: &str, label: &str, default: PropertyValue) -> Self {
        ParameterConfig {
            kind,
            name: name.to_string(),
            label: label.to_string(),
            default,
            required: false,
            regex: None,
            need_email: kind == ParameterKind::UserName,
            choices: Vec::new(),
            strict: true,
            hide: false,
            fields: Vec::new(),
            compatible_builds: None,
        }
    }

    /// The field of a group called `name`.
    pub fn field(&self, name: &str) -> Option<&ParameterConfig> {
        self.fields.iter().find(|f| f.name == name)
    }
}
