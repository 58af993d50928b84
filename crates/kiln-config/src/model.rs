//! The validated configuration: plain data for the rest of kiln.

use std::collections::BTreeMap;

use kiln_core::PropertyValue;
use kiln_core::render::Renderable;

use crate::Diagnostic;

mod auth;
mod changes;
mod reporters;
mod schedulers;
mod steps;

pub use auth::*;
pub use changes::*;
pub use reporters::*;
pub use schedulers::*;
pub use steps::*;

/// Where a port listens: its number, the address it binds when one is named, and the files of
/// its TLS key and certificate when it serves HTTPS.
#[derive(Debug, Clone, PartialEq)]
pub struct Listen {
    pub port: u16,
    pub interface: Option<String>,
    pub tls: Option<TlsFiles>,
}

impl Listen {
    /// A plain port on the default interface.
    pub fn port(port: u16) -> Listen {
        Listen {
            port,
            interface: None,
            tls: None,
        }
    }
}

/// A TLS key and certificate chain, as PEM files (relative to the master's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub key: std::path::PathBuf,
    pub cert: std::path::PathBuf,
}

/// Everything a master is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct MasterConfig {
    pub title: String,
    pub title_url: String,
    pub buildbot_url: String,
    /// The database URL as written (`sqlite:///state.sqlite`, `postgresql://…`).
    pub db_url: String,
    /// The ports workers connect to (`c['protocols']`); empty means the default, 9989 on every
    /// interface, serving both protocols.
    pub worker_ports: Vec<WorkerPort>,
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
    /// `c['multiMaster']`: other masters share the database, so schedulers may name builders that
    /// only other masters define, as in Buildbot.
    pub multi_master: bool,
    /// `c['hiddenEnvironment']`: the environment variables whose values a step's header, which
    /// lists the worker's whole environment as Buildbot's does, shows as `<hidden>`.
    pub hidden_environment: HiddenEnvironment,
    /// `c['prioritizeBuilders']`: orders the builders with waiting requests.
    pub prioritize_builders: Option<kiln_core::changefilter::FnRef>,
    /// `c['codebaseGenerator']`: gives each new change its codebase from its other attributes.
    pub codebase_generator: Option<kiln_core::changefilter::FnRef>,
    /// `c['revlink']`: how a revision of a repository becomes a link, when its change gives none.
    pub revlink: Option<Revlink>,
    /// `util.OldBuildCanceller` services from `c['services']`.
    pub old_build_cancellers: Vec<OldBuildCancellerConfig>,
    /// The reporters of `c['services']`.
    pub reporters: Vec<ReporterConfig>,
    /// `c['secretsProviders']`, asked in turn.
    pub secrets_providers: Vec<SecretProvider>,
    /// Warnings found while loading; the configuration is usable.
    pub warnings: Vec<Diagnostic>,
    /// The functions the configuration passes to kiln, callable by [`kiln_core::changefilter::FnRef`].
    pub functions: crate::Functions,
}

/// A port workers connect to, and the protocols it serves: a port named under both protocols in
/// `c['protocols']` serves both, telling them apart by who speaks first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerPort {
    pub port: u16,
    /// The address the port binds (`interface=` in its strport); every interface when not given,
    /// as in Buildbot.
    pub interface: Option<String>,
    /// Buildbot's `msgpack_experimental_v7`, which `kiln-worker` speaks.
    pub msgpack: bool,
    /// Twisted's Perspective Broker, the stock `buildbot-worker`'s default.
    pub pb: bool,
    /// The key and certificate the port serves TLS with (`ssl:` in its strport), for workers
    /// created with `--use-tls`.
    pub tls: Option<TlsFiles>,
}

impl WorkerPort {
    /// The port used when the configuration names none.
    pub fn default_port() -> WorkerPort {
        WorkerPort {
            port: 9989,
            interface: None,
            msgpack: true,
            pb: true,
            tls: None,
        }
    }
}

/// `changecommentlink`: what in a change's comments becomes a link, and to where.
#[derive(Debug, Clone, PartialEq)]
pub struct CommentLink {
    pub pattern: String,
    pub url: String,
    pub title: String,
}

/// How a revision becomes a link (`c['revlink']`).
#[derive(Debug, Clone, PartialEq)]
pub enum Revlink {
    /// `util.RevlinkMatch(repo_urls, revlink)`: the first pattern that matches the repository
    /// makes the link from `revlink`, its `\N` the pattern's groups and its `%s` the revision.
    Match {
        repo_urls: Vec<String>,
        template: String,
    },
    /// A function of the revision and the repository, giving the link or `None`.
    Function(kiln_core::changefilter::FnRef),
}

impl MasterConfig {
    /// The force schedulers, in the order they are configured.
    pub fn force_schedulers(&self) -> impl Iterator<Item = &ForceSchedulerConfig> {
        self.schedulers.iter().filter_map(|s| match s {
            SchedulerConfig::Force(f) => Some(f.as_ref()),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct WwwConfig {
    pub port: Option<u16>,
    /// Bind address; loopback unless configured.
    pub host: String,
    /// The key and certificate the web port serves HTTPS with (`ssl:` in its strport).
    pub tls: Option<TlsFiles>,
    /// The enabled change hook dialects (`c['www']['change_hook_dialects']`), with their options.
    pub change_hook_dialects: BTreeMap<String, BTreeMap<String, PropertyValue>>,
    /// How web users log in (`auth`); nobody does by default.
    pub auth: WebAuth,
    /// What each user may do (`authz`); without it, everyone may do everything.
    pub authz: Option<Authz>,
    /// Where anonymous visitors are sent to log in (the old `Authz(httpLoginLink=…)`), when a
    /// reverse proxy does the logging in.
    pub login_link: Option<String>,
    /// How long a login lasts, in seconds (`cookie_expiration_time`; a week by default).
    pub session_lifetime: i64,
    /// Other sites whose pages may send control requests with a user's cookie
    /// (`allowed_origins`, shell patterns such as `https://*.example.org`); the site's own is
    /// always allowed.
    pub allowed_origins: Vec<String>,
    /// Host names the web port answers to besides `buildbotURL`'s, `localhost` and IP addresses
    /// (`allowed_hosts`: exact names, `.example.org` for a domain and the names below it, `*`
    /// for any); a request for another name is refused, so a page of another site cannot reach
    /// the master through DNS rebinding.
    pub allowed_hosts: Vec<String>,
    /// HTTP Basic credentials the change hooks require (`change_hook_auth`); empty means open.
    pub change_hook_auth: Vec<HookCredentials>,
    /// The largest change hook body accepted, in bytes (`change_hook_max_body`, default 10 MB).
    pub change_hook_max_body: usize,
    /// The most changes one hook request stores (`change_hook_max_changes`, default 2,048); a
    /// push with more has the rest reported, not stored, so one request cannot queue thousands
    /// of builds.
    pub change_hook_max_changes: usize,
    /// How long each part of a REST API request may take, in seconds (`api_timeout`, default
    /// 30): finding what it asks for, and writing the answer; a large answer waits for its turn
    /// for twice as long.
    /// A request past it is answered 503, or its answer cut off, and its work stopped.
    pub api_timeout: u64,
    /// How many large REST API answers are read at once (`api_large_queries`, default 2): more
    /// wait for their turn, so that small requests keep their latency; read at start.
    pub api_large_queries: usize,
    /// Where Buildbot's own front-end was installed (`buildbot_www`): the directory holding the
    /// `buildbot_www` package and its plugins' packages, as pip puts them. Served at `/buildbot/`.
    pub buildbot_www: Option<std::path::PathBuf>,
    /// The front-end's plugins (`plugins`), by name, with their settings.
    pub plugins: BTreeMap<String, PropertyValue>,
    /// Extra lines for the front-end's About page (`versions`), as (name, version).
    pub versions: Vec<(String, String)>,
    /// The front-end's default settings (`ui_default_config`).
    pub ui_default_config: BTreeMap<String, PropertyValue>,
    /// The web port's access log (`logfileName`, relative to the master's directory); none when
    /// empty.
    pub logfile_name: String,
    /// The size at which the access log is rotated (`logRotateLength`, bytes).
    pub log_rotate_length: u64,
    /// How many rotated access logs are kept (`maxRotatedFiles`).
    pub max_rotated_files: usize,
    /// Links in change comments (`changecommentlink`, as the old WebStatus took it): each match of
    /// the pattern becomes a link to the URL, with the title; both may use the match's `\N` groups.
    pub change_comment_link: Option<CommentLink>,
    /// A directory of templates that replace kiln's own (`custom_templates_dir`, relative to the
    /// master's directory); `templates` when not given.
    pub custom_templates_dir: Option<String>,
    /// Settings Buildbot hands to its front-end as they are written (`default_page`, `debug`,
    /// `jsonp`, `project_widgets`), by name.
    pub frontend: BTreeMap<String, PropertyValue>,
    /// The front-end's colours (`theme`): CSS variable names without their `--`, and values.
    pub theme: BTreeMap<String, String>,
    /// Seconds between WebSocket pings on `/ws` (`ws_ping_interval`); none when 0.
    pub ws_ping_interval: u64,
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
/// The most changes one change hook request stores by default.
pub const DEFAULT_HOOK_MAX_CHANGES: usize = 2048;
/// How long a REST API request may take unless `c['www']['api_timeout']` says, in seconds.
pub const DEFAULT_API_TIMEOUT: u64 = 30;
/// How many large REST API answers are read at once unless `c['www']['api_large_queries']` says.
pub const DEFAULT_API_LARGE_QUERIES: usize = 2;

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
    /// Who is mailed when the worker is gone for `missing_timeout` seconds
    /// (`WorkerMissingGenerator`).
    pub notify_on_missing: Vec<String>,
    pub missing_timeout: i64,
    /// Seconds between the master's keepalives to this worker (`keepalive_interval`); a worker
    /// that does not answer one within as long is lost, and its builds are retried. `None`
    /// leaves it to the master's default.
    pub keepalive_interval: Option<u64>,
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

/// Names of environment variables whose values are hidden, as shell patterns matched without
/// regard to case (`*TOKEN*`).
#[derive(Debug, Clone)]
pub struct HiddenEnvironment {
    patterns: Vec<String>,
    matcher: regex::Regex,
}

/// The names that say a variable holds a secret, unless `c['hiddenEnvironment']` says otherwise.
pub const DEFAULT_HIDDEN_ENVIRONMENT: &[&str] = &[
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*KEY*",
    "*CREDENTIAL*",
];

impl HiddenEnvironment {
    /// The patterns, or `Err` with the one that is not a name pattern.
    pub fn new(patterns: Vec<String>) -> Result<Self, String> {
        if let Some(bad) = patterns.iter().find(|p| {
            p.is_empty()
                || !p
                    .chars()
                    .all(|c| c == '*' || c == '_' || c.is_ascii_alphanumeric())
        }) {
            return Err(format!(
                "{bad:?} is not a pattern of environment variable names (letters, digits, _ and *)"
            ));
        }
        let alternatives: Vec<String> = patterns
            .iter()
            .map(|p| {
                p.split('*')
                    .map(regex::escape)
                    .collect::<Vec<_>>()
                    .join(".*")
            })
            .collect();
        let matcher = regex::RegexBuilder::new(&format!("^(?:{})$", alternatives.join("|")))
            .case_insensitive(true)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HiddenEnvironment { patterns, matcher })
    }

    /// Whether the value of the variable `name` is hidden.
    pub fn hides(&self, name: &str) -> bool {
        !self.patterns.is_empty() && self.matcher.is_match(name)
    }
}

impl Default for HiddenEnvironment {
    fn default() -> Self {
        let patterns = DEFAULT_HIDDEN_ENVIRONMENT
            .iter()
            .map(|p| p.to_string())
            .collect();
        HiddenEnvironment::new(patterns).expect("the default patterns are valid")
    }
}

impl PartialEq for HiddenEnvironment {
    fn eq(&self, other: &Self) -> bool {
        self.patterns == other.patterns
    }
}
