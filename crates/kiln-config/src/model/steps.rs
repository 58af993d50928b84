//! The build steps of a factory: what every step shares, and each kind's arguments.

use std::collections::BTreeMap;

use kiln_core::render::Renderable;
use kiln_core::step::StepFlags;

use super::*;

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
    /// Sets build properties from the worker's environment, each with `source`.
    SetPropertiesFromEnv {
        variables: Vec<String>,
        source: String,
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
    /// `steps.GitHub`: a branch ending in `/merge` (a pull request's merge ref) is built without
    /// the source stamp's revision.
    pub github: bool,
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
