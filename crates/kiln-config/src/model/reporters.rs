//! `c['services']` reporters: who is told what, in Buildbot 4's terms of reporters, generators
//! and message formatters.

use kiln_core::changefilter::FnRef;
use kiln_core::render::Renderable;

/// One reporter: where its reports go, and the generators that decide them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReporterConfig {
    /// The service's name (`name=`, or the class's name with its generators'): it names the
    /// reporter's queue, so two reporters need different names.
    pub name: String,
    pub kind: ReporterKind,
    pub generators: Vec<GeneratorConfig>,
    /// How often and how long an undelivered report is retried.
    pub retry: RetryPolicy,
}

/// Where a reporter's reports go.
#[derive(Debug, Clone, PartialEq)]
pub enum ReporterKind {
    Mail(MailConfig),
    HttpPush(HttpPushConfig),
    /// The forges' commit statuses and comments, and chat rooms.
    Push(Box<PushConfig>),
    /// Reviews on Gerrit changes.
    Gerrit(Box<GerritConfig>),
    /// A bot on IRC that announces builds and takes commands.
    Irc(Box<IrcConfig>),
}

impl ReporterKind {
    /// The class name a configuration spells.
    pub fn class(&self) -> &'static str {
        match self {
            ReporterKind::Mail(_) => "MailNotifier",
            ReporterKind::HttpPush(_) => "HttpStatusPush",
            ReporterKind::Push(p) => p.service.class(),
            ReporterKind::Gerrit(_) => "GerritStatusPush",
            ReporterKind::Irc(_) => "IRC",
        }
    }
}

/// Retries of a report that could not be delivered: the first after `initial_delay` seconds, each
/// later one after twice the delay before it, at most `max_delay` apart, and no more than
/// `max_attempts` attempts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_delay: i64,
    pub max_delay: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 20,
            initial_delay: 2,
            max_delay: 600,
        }
    }
}

impl RetryPolicy {
    /// How long to wait after the `attempt`th failed attempt (counted from 1).
    pub fn delay_after(&self, attempt: u32) -> i64 {
        let doublings = attempt.saturating_sub(1).min(30);
        self.initial_delay
            .saturating_mul(1i64 << doublings)
            .min(self.max_delay)
    }
}

/// `reporters.MailNotifier`.
#[derive(Debug, Clone, PartialEq)]
pub struct MailConfig {
    pub fromaddr: String,
    pub relayhost: String,
    pub smtp_port: u16,
    /// STARTTLS, required of the server.
    pub use_tls: bool,
    /// TLS from the first byte (SMTPS).
    pub use_smtps: bool,
    pub smtp_user: Option<Renderable>,
    pub smtp_password: Option<Renderable>,
    pub lookup: Option<MailLookup>,
    pub extra_recipients: Vec<String>,
    pub send_to_interested_users: bool,
    /// Headers added to every mail, rendered against the build's properties when the report is
    /// about one build.
    pub extra_headers: Vec<(String, Renderable)>,
    pub dump_mails_to_log: bool,
    /// kiln's `caFile`: the certificates STARTTLS checks the server against (a private CA),
    /// relative to the master's directory; the Mozilla roots, or `SSL_CERT_FILE`, otherwise.
    pub ca_file: Option<String>,
}

/// How a blamelist entry becomes an address (`lookup=`).
#[derive(Debug, Clone, PartialEq)]
pub enum MailLookup {
    /// `lookup='example.org'`: a name without `@` gets `@example.org`.
    Domain(String),
    /// kiln's `lookup='users'`: the address recorded for the user in the users table.
    Users,
}

/// `reporters.HttpStatusPush`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpPushConfig {
    pub server_url: String,
    /// HTTP Basic credentials (`auth=(user, password)`), which may be secrets.
    pub auth: Option<(Renderable, Renderable)>,
    pub headers: Vec<(String, Renderable)>,
    pub verify: HttpVerify,
    /// Log each request and answer, credentials redacted.
    pub debug: bool,
}

/// `reporters.GerritStatusPush`: reviews over ssh (`gerrit review`), or over Gerrit's REST API
/// when `server` is an `http(s)://` URL.
#[derive(Debug, Clone, PartialEq)]
pub struct GerritConfig {
    pub server: String,
    pub username: String,
    pub port: u16,
    pub identity_file: Option<String>,
    /// `--notify` (NONE, OWNER, OWNER_REVIEWERS, ALL).
    pub notify: Option<String>,
    /// kiln's `sshCommand`: the ssh client to run (`ssh` by default).
    pub ssh_command: String,
    /// kiln's `password`: the HTTP password for the REST API.
    pub password: Option<Renderable>,
    pub verify: HttpVerify,
}

/// `reporters.IRC`: a bot in channels and private conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct IrcConfig {
    pub host: String,
    pub port: u16,
    pub nick: String,
    /// Sent to NickServ once registered.
    pub password: Option<Renderable>,
    /// Channels and their keys.
    pub channels: Vec<(String, Option<String>)>,
    /// Nicks told about builds in private from the start.
    pub pm_to_nicks: Vec<String>,
    /// The events every channel and `pm_to_nicks` contact is told about from the start.
    pub notify_events: Vec<String>,
    pub notice_on_channel: bool,
    pub use_colors: bool,
    pub use_ssl: bool,
    /// kiln's `caFile`: a PEM file of certificates, relative to the master's directory, that
    /// the server's certificate may be signed by besides the Mozilla roots (`SSL_CERT_FILE`
    /// when not given).
    pub ca_file: Option<String>,
    /// Seconds before reconnecting after a lost connection, and after a failed attempt.
    pub lost_delay: u64,
    pub failed_delay: u64,
    /// Only builds of builders with one of these tags are announced.
    pub tags: Option<Vec<String>>,
    /// Who may run which command: Buildbot's `authz` dict, with `allowForce` and
    /// `allowShutdown` folded in.
    pub authz: Vec<(String, IrcAllow)>,
}

/// Who an IRC `authz` entry lets run a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IrcAllow {
    Everyone,
    Nobody,
    Nicks(Vec<String>),
}

/// The IRC events a channel or contact can be told about.
pub const IRC_EVENTS: &[&str] = &[
    "started",
    "finished",
    "success",
    "warnings",
    "failure",
    "exception",
    "cancelled",
    "problem",
    "recovery",
    "worse",
    "better",
    "worker",
];

/// Whether `event` is an IRC notification event: one of [`IRC_EVENTS`], or a transition such as
/// `failureToSuccess`.
pub fn irc_event_valid(event: &str) -> bool {
    if IRC_EVENTS.contains(&event) {
        return true;
    }
    let results = ["success", "warnings", "failure", "exception", "cancelled"];
    let Some((from, to)) = event.split_once("To") else {
        return false;
    };
    let capitalized = |r: &str| format!("{}{}", r[..1].to_ascii_uppercase(), &r[1..]);
    results.contains(&from) && results.iter().any(|r| *r != from && to == capitalized(r))
}

/// A Gerrit review callback: the configuration's function, and for the old `reviewCB`,
/// `startCB` and `summaryCB` the prelude's function that calls it with their arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GerritCallback {
    pub func: FnRef,
    pub call: Option<FnRef>,
}

/// When a Gerrit generator reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GerritStage {
    /// Once the buildset is complete, all its builds in one review.
    BuildSet,
    Start,
    End,
}

/// A push to a forge or a chat: which service, where it is, and how kiln proves who it is.
#[derive(Debug, Clone, PartialEq)]
pub struct PushConfig {
    pub service: PushService,
    /// The service's base URL, without a final `/` (the API's, a webhook's, a homeserver's).
    pub base_url: String,
    /// A token: GitHub's and Gitea's `token`, GitLab's private token, Zulip's API key, a
    /// Matrix access token.
    pub token: Option<Renderable>,
    /// HTTP Basic credentials (`auth=(user, password)`, or Bitbucket Server's `user` and
    /// `password`).
    pub auth: Option<(Renderable, Renderable)>,
    /// Bitbucket Cloud's OAuth consumer key and secret, and where to trade them for a token.
    pub oauth: Option<(Renderable, Renderable, String)>,
    /// The status's context (GitHub, GitLab, Gitea) or key (Bitbucket), rendered with the
    /// build's properties.
    pub context: Renderable,
    /// Bitbucket's `status_name`, Bitbucket Server's `statusName`.
    pub status_name: Option<Renderable>,
    /// Zulip's stream, a Matrix room, a Slack channel.
    pub target: Option<String>,
    /// Slack's `username`.
    pub username: Option<String>,
    pub headers: Vec<(String, Renderable)>,
    pub verify: HttpVerify,
    /// Gitea's `warningAsSuccess`.
    pub warning_as_success: bool,
    pub debug: bool,
}

/// The services a push reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushService {
    GitHub,
    GitHubComment,
    GitLab,
    Gitea,
    Bitbucket,
    BitbucketServer,
    BitbucketServerPRComment,
    Zulip,
    /// kiln's: a message in a Matrix room.
    Matrix,
    /// kiln's: a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat).
    Slack,
    /// kiln's: a JSON document of the report to any URL.
    Webhook,
}

impl PushService {
    pub const ALL: [PushService; 11] = [
        PushService::GitHub,
        PushService::GitHubComment,
        PushService::GitLab,
        PushService::Gitea,
        PushService::Bitbucket,
        PushService::BitbucketServer,
        PushService::BitbucketServerPRComment,
        PushService::Zulip,
        PushService::Matrix,
        PushService::Slack,
        PushService::Webhook,
    ];

    pub fn class(self) -> &'static str {
        match self {
            PushService::GitHub => "GitHubStatusPush",
            PushService::GitHubComment => "GitHubCommentPush",
            PushService::GitLab => "GitLabStatusPush",
            PushService::Gitea => "GiteaStatusPush",
            PushService::Bitbucket => "BitbucketStatusPush",
            PushService::BitbucketServer => "BitbucketServerStatusPush",
            PushService::BitbucketServerPRComment => "BitbucketServerPRCommentPush",
            PushService::Zulip => "ZulipStatusPush",
            PushService::Matrix => "MatrixStatusPush",
            PushService::Slack => "SlackStatusPush",
            PushService::Webhook => "WebhookPush",
        }
    }

    pub fn from_class(class: &str) -> Option<PushService> {
        PushService::ALL.into_iter().find(|s| s.class() == class)
    }
}

/// `verify=`: how an `https` server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HttpVerify {
    #[default]
    Roots,
    CaFile(String),
    Off,
}

/// One generator: which events become reports, and how they are worded.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub kind: GeneratorKind,
    pub filter: ReportFilter,
    pub add_patch: bool,
    /// `add_logs`: the logs attached (deprecated in Buildbot for `want_logs_content`).
    pub add_logs: LogSelection,
}

/// The generators of Buildbot 4.
#[derive(Debug, Clone, PartialEq)]
pub enum GeneratorKind {
    /// `BuildStatusGenerator`: a finished build whose result the mode wants, and with
    /// `report_new` each new build.
    BuildStatus {
        mode: Vec<Mode>,
        report_new: bool,
        formatter: FormatterConfig,
    },
    /// `BuildStartEndStatusGenerator`: every build's start and end.
    BuildStartEnd {
        start: FormatterConfig,
        end: FormatterConfig,
    },
    /// `BuildSetStatusGenerator`: a completed buildset, with its builds that the mode wants.
    BuildSet {
        mode: Vec<Mode>,
        formatter: FormatterConfig,
    },
    /// `BuildSetCombinedStatusGenerator`: a completed buildset, formatted as one.
    BuildSetCombined { formatter: FormatterConfig },
    /// `BuildRequestGenerator`: a new or cancelled build request.
    BuildRequest { formatter: FormatterConfig },
    /// `GerritBuildSetStatusGenerator`, `GerritBuildStartStatusGenerator`,
    /// `GerritBuildEndStatusGenerator`: a review made by a callback (Buildbot's default review
    /// or summary without one).
    Gerrit {
        stage: GerritStage,
        callback: Option<GerritCallback>,
        arg: kiln_core::PropertyValue,
    },
    /// `WorkerMissingGenerator`: a worker gone for its `missing_timeout`.
    WorkerMissing {
        /// `None` for `'all'`.
        workers: Option<Vec<String>>,
        formatter: FormatterConfig,
    },
}

impl GeneratorKind {
    pub fn class(&self) -> &'static str {
        match self {
            GeneratorKind::BuildStatus { .. } => "BuildStatusGenerator",
            GeneratorKind::BuildStartEnd { .. } => "BuildStartEndStatusGenerator",
            GeneratorKind::BuildSet { .. } => "BuildSetStatusGenerator",
            GeneratorKind::BuildSetCombined { .. } => "BuildSetCombinedStatusGenerator",
            GeneratorKind::BuildRequest { .. } => "BuildRequestGenerator",
            GeneratorKind::WorkerMissing { .. } => "WorkerMissingGenerator",
            GeneratorKind::Gerrit { stage, .. } => match stage {
                GerritStage::BuildSet => "GerritBuildSetStatusGenerator",
                GerritStage::Start => "GerritBuildStartStatusGenerator",
                GerritStage::End => "GerritBuildEndStatusGenerator",
            },
        }
    }
}

/// A generator's `mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Change,
    Failing,
    Passing,
    Problem,
    Warnings,
    Exception,
    Cancelled,
}

impl Mode {
    pub const ALL: [Mode; 7] = [
        Mode::Change,
        Mode::Failing,
        Mode::Passing,
        Mode::Problem,
        Mode::Warnings,
        Mode::Exception,
        Mode::Cancelled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Change => "change",
            Mode::Failing => "failing",
            Mode::Passing => "passing",
            Mode::Problem => "problem",
            Mode::Warnings => "warnings",
            Mode::Exception => "exception",
            Mode::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Buildbot's default: failing, passing and warnings.
    pub fn default_set() -> Vec<Mode> {
        vec![Mode::Failing, Mode::Passing, Mode::Warnings]
    }
}

/// Which builds a generator looks at; every list that is given must match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReportFilter {
    pub builders: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
    pub schedulers: Option<Vec<String>>,
    pub branches: Option<Vec<String>>,
}

/// Which logs a message carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LogSelection {
    #[default]
    None,
    All,
    /// Log names (`stdio`) or step and log names (`compile.stdio`).
    Named(Vec<String>),
}

impl LogSelection {
    pub fn wants(&self, step: &str, log: &str) -> bool {
        match self {
            LogSelection::None => false,
            LogSelection::All => true,
            LogSelection::Named(names) => names
                .iter()
                .any(|n| n == log || *n == format!("{step}.{log}")),
        }
    }

    pub fn any(&self) -> bool {
        *self != LogSelection::None
    }
}

/// `template_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TemplateType {
    #[default]
    Plain,
    Html,
    Json,
}

impl TemplateType {
    pub fn name(self) -> &'static str {
        match self {
            TemplateType::Plain => "plain",
            TemplateType::Html => "html",
            TemplateType::Json => "json",
        }
    }
}

/// How a report is worded.
#[derive(Debug, Clone, PartialEq)]
pub enum FormatterConfig {
    /// `MessageFormatter`: Jinja templates for body and subject; `None` is the built-in one.
    Template {
        template: Option<String>,
        subject: Option<String>,
        template_type: TemplateType,
        want_properties: bool,
        want_steps: bool,
        want_logs: bool,
        want_logs_content: LogSelection,
        /// `ctx`: more values for the templates.
        ctx: Vec<(String, kiln_core::PropertyValue)>,
    },
    /// `MessageFormatterRenderable`: renderables against the build's properties.
    Renderable {
        template: Renderable,
        subject: Option<Renderable>,
    },
    /// `MessageFormatterFunction`: a configuration function of the context gives the body.
    Function {
        function: FnRef,
        template_type: TemplateType,
        want_properties: bool,
        want_steps: bool,
        want_logs: bool,
        want_logs_content: LogSelection,
    },
    /// `MessageFormatterMissingWorker`.
    MissingWorker {
        template: Option<String>,
        subject: Option<String>,
        template_type: TemplateType,
    },
    /// `MessageFormatterEmpty`: no body.
    Empty,
}

impl FormatterConfig {
    /// `MessageFormatter()` with its defaults.
    pub fn default_template(template_type: TemplateType) -> FormatterConfig {
        FormatterConfig::Template {
            template: None,
            subject: None,
            template_type,
            want_properties: true,
            want_steps: false,
            want_logs: false,
            want_logs_content: LogSelection::None,
            ctx: Vec::new(),
        }
    }

    /// A `MessageFormatterRenderable` of a fixed text ('Build started.').
    pub fn text(text: &str) -> FormatterConfig {
        FormatterConfig::Renderable {
            template: Renderable::Literal(kiln_core::PropertyValue::Str(text.to_string())),
            subject: None,
        }
    }
}

/// The bare address of `Name <a@b>` or `a@b`, if it is one: something before and after one `@`,
/// without spaces or angle brackets.
pub fn bare_address(text: &str) -> Option<&str> {
    let text = text.trim();
    let addr = match (text.rfind('<'), text.ends_with('>')) {
        (Some(open), true) => &text[open + 1..text.len() - 1],
        _ => text,
    };
    let (user, domain) = addr.rsplit_once('@')?;
    let ok = |s: &str| !s.is_empty() && !s.contains([' ', '<', '>', '@', ',', '"', '\r', '\n']);
    (ok(user) && ok(domain)).then_some(addr)
}
