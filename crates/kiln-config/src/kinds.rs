//! The vocabulary: every constructor a `master.star` may call, with Buildbot's argument names.
//!
//! A call is checked against this table when it is made, so a misspelt keyword is reported at its
//! call with a Starlark traceback, as Python would.

/// A constructor: its name, the names its positional arguments fill, and its keyword arguments.
pub struct Kind {
    pub name: &'static str,
    pub positional: &'static [&'static str],
    pub keywords: &'static [&'static str],
}

/// Keyword arguments every build step accepts.
pub const STEP_COMMON: &[&str] = &[
    "name",
    "description",
    "descriptionDone",
    "descriptionSuffix",
    "haltOnFailure",
    "flunkOnWarnings",
    "flunkOnFailure",
    "warnOnWarnings",
    "warnOnFailure",
    "alwaysRun",
    "doStepIf",
    "hideStepIf",
    "locks",
    "logEncoding",
    "updateBuildSummaryPolicy",
    "workdir",
];

/// The keywords of every source step, then each system's own.
macro_rules! source_keywords {
    ($($k:literal),* $(,)?) => {
        &[
            "mode",
            "method",
            "codebase",
            "alwaysUseLatest",
            "timeout",
            "retry",
            "env",
            "logEnviron",
            "progress",
            $($k),*
        ]
    };
}

const GIT: &[&str] = source_keywords!(
    "repourl",
    "branch",
    "shallow",
    "submodules",
    "retryFetch",
    "clobberOnFailure",
    "getDescription",
    "config",
    "origin",
    "tags",
    "filters",
    "reference",
    "sshPrivateKey",
    "sshHostKey",
    "sshKnownHosts",
);
const MERCURIAL: &[&str] = source_keywords!(
    "repourl",
    "baseURL",
    "defaultBranch",
    "branchType",
    "clobberOnBranchChange",
);
const SVN: &[&str] = source_keywords!(
    "repourl",
    "baseURL",
    "defaultBranch",
    "username",
    "password",
    "extra_args",
    "preferLastChangedRev",
);
const CVS: &[&str] = source_keywords!(
    "cvsroot",
    "cvsmodule",
    "branch",
    "global_options",
    "extra_options",
    "login",
);
const DARCS_BZR: &[&str] = source_keywords!("repourl", "baseURL", "defaultBranch");
const ARCH: &[&str] = source_keywords!("url", "version", "archive");
const P4: &[&str] = source_keywords!(
    "p4base",
    "p4branch",
    "p4extra_views",
    "p4viewspec",
    "p4viewspec_suffix",
    "p4port",
    "p4user",
    "p4passwd",
    "p4client",
    "p4line_end",
    "p4client_spec_options",
    "p4client_type",
    "p4extra_args",
    "p4bin",
    "use_tickets",
    "stream",
    "debug",
);
const MONOTONE: &[&str] = source_keywords!("repourl", "branch");

/// The keywords of every shell command, then each step's own.
macro_rules! shell_keywords {
    ($($k:literal),* $(,)?) => {
        &[
            "env",
            "want_stdout",
            "want_stderr",
            "logfiles",
            "lazylogfiles",
            "timeout",
            "maxTime",
            "max_lines",
            "sigtermTime",
            "usePTY",
            "logEnviron",
            "interruptSignal",
            "decodeRC",
            $($k),*
        ]
    };
}

const SHELL: &[&str] = shell_keywords!("command", "initialStdin");
const WARNING_COUNTING: &[&str] = shell_keywords!(
    "command",
    "initialStdin",
    "warningPattern",
    "warningExtractor",
    "directoryEnterPattern",
    "directoryLeavePattern",
    "suppressionFile",
    "suppressionList",
    "maxWarnCount",
    "testResults",
);
const SHELL_SEQUENCE: &[&str] = shell_keywords!("commands");

const HTTP_STEP: &[&str] = &[
    "verify",
    "url",
    "method",
    "params",
    "headers",
    "data",
    "json",
    "auth",
    "timeout",
    "hide_request_headers",
    "hide_response_headers",
];

const SET_PROPERTY_FROM_COMMAND: &[&str] = &[
    "command",
    "env",
    "want_stdout",
    "want_stderr",
    "timeout",
    "maxTime",
    "sigtermTime",
    "usePTY",
    "logEnviron",
    "interruptSignal",
    "initialStdin",
    "decodeRC",
    "property",
    "extract_fn",
    "strip",
];

const TRANSFER: &[&str] = &["maxsize", "blocksize", "mode"];

/// Keyword arguments of the change-driven schedulers.
const BASIC_SCHEDULER: &[&str] = &[
    "name",
    "builderNames",
    "change_filter",
    "treeStableTimer",
    "fileIsImportant",
    "onlyImportant",
    "properties",
    "codebases",
    "createAbsoluteSourceStamps",
    "reason",
    "priority",
    "categories",
];

/// Keyword arguments of `Periodic` and `Nightly` (each takes its own schedule arguments too).
const TIMED_SCHEDULER: &[&str] = &[
    "name",
    "builderNames",
    "periodicBuildTimer",
    "minute",
    "hour",
    "dayOfMonth",
    "month",
    "dayOfWeek",
    "force_at_minute",
    "force_at_hour",
    "force_at_day_of_month",
    "force_at_month",
    "force_at_day_of_week",
    "timezone",
    "onlyIfChanged",
    "branch",
    "change_filter",
    "fileIsImportant",
    "onlyImportant",
    "codebases",
    "createAbsoluteSourceStamps",
    "properties",
    "reason",
    "priority",
];

/// `ChangeFilter`'s keyword arguments: five tests on each of five attributes, and more.
const CHANGE_FILTER: &[&str] = &[
    "filter_fn",
    "project",
    "project_not_eq",
    "project_re",
    "project_not_re",
    "project_fn",
    "repository",
    "repository_not_eq",
    "repository_re",
    "repository_not_re",
    "repository_fn",
    "branch",
    "branch_not_eq",
    "branch_re",
    "branch_not_re",
    "branch_fn",
    "category",
    "category_not_eq",
    "category_re",
    "category_not_re",
    "category_fn",
    "codebase",
    "codebase_not_eq",
    "codebase_re",
    "codebase_not_re",
    "codebase_fn",
    "property_eq",
    "property_not_eq",
    "property_re",
    "property_not_re",
];

const PARAM: &[&str] = &[
    "name",
    "label",
    "tablabel",
    "default",
    "required",
    "regex",
    "hide",
    "maxsize",
    "autopopulate",
    "tooltip",
    "size",
    "need_email",
    "choices",
    "strict",
    "multiple",
    "cols",
    "rows",
];

/// Every constructor, by name.
pub const KINDS: &[Kind] = &[
    Kind {
        name: "Worker",
        positional: &["name", "password"],
        keywords: &[
            "max_builds",
            "properties",
            "defaultProperties",
            "notify_on_missing",
            "missing_timeout",
            "keepalive_interval",
            "locks",
            "machine_name",
        ],
    },
    Kind {
        name: "BuilderConfig",
        positional: &[],
        keywords: &[
            "name",
            "workername",
            "workernames",
            "builddir",
            "workerbuilddir",
            "factory",
            "tags",
            "nextWorker",
            "nextBuild",
            "locks",
            "env",
            "properties",
            "defaultProperties",
            "collapseRequests",
            "description",
            "description_format",
            "canStartBuild",
            "project",
            "do_build_if",
        ],
    },
    Kind {
        name: "ShellCommand",
        positional: &[],
        keywords: SHELL,
    },
    Kind {
        name: "Git",
        positional: &["repourl", "branch"],
        keywords: GIT,
    },
    Kind {
        name: "GitHub",
        positional: &["repourl", "branch"],
        keywords: GIT,
    },
    Kind {
        name: "Mercurial",
        positional: &["repourl"],
        keywords: MERCURIAL,
    },
    Kind {
        name: "SVN",
        positional: &["repourl"],
        keywords: SVN,
    },
    Kind {
        name: "CVS",
        positional: &["cvsroot", "cvsmodule"],
        keywords: CVS,
    },
    Kind {
        name: "Darcs",
        positional: &["repourl"],
        keywords: DARCS_BZR,
    },
    Kind {
        name: "Bzr",
        positional: &["repourl"],
        keywords: DARCS_BZR,
    },
    Kind {
        name: "Arch",
        positional: &["url", "version"],
        keywords: ARCH,
    },
    Kind {
        name: "P4",
        positional: &[],
        keywords: P4,
    },
    Kind {
        name: "Monotone",
        positional: &["repourl", "branch"],
        keywords: MONOTONE,
    },
    Kind {
        name: "Configure",
        positional: &[],
        keywords: SHELL,
    },
    Kind {
        name: "Compile",
        positional: &[],
        keywords: WARNING_COUNTING,
    },
    Kind {
        name: "Test",
        positional: &[],
        keywords: WARNING_COUNTING,
    },
    Kind {
        name: "WarningCountingShellCommand",
        positional: &[],
        keywords: WARNING_COUNTING,
    },
    Kind {
        name: "ShellSequence",
        positional: &["commands"],
        keywords: SHELL_SEQUENCE,
    },
    Kind {
        name: "ShellArg",
        positional: &[],
        keywords: &[
            "command",
            "logname",
            "haltOnFailure",
            "flunkOnFailure",
            "flunkOnWarnings",
            "warnOnFailure",
            "warnOnWarnings",
        ],
    },
    Kind {
        name: "StepPredicate",
        positional: &[],
        keywords: &["func", "call"],
    },
    Kind {
        name: "SetPropertyFromCommand",
        positional: &[],
        keywords: SET_PROPERTY_FROM_COMMAND,
    },
    Kind {
        name: "SetProperty",
        positional: &["property", "value"],
        keywords: &["property", "value"],
    },
    Kind {
        name: "SetProperties",
        positional: &["properties"],
        keywords: &["properties"],
    },
    Kind {
        name: "SetPropertiesFromEnv",
        positional: &["variables"],
        keywords: &["variables", "source"],
    },
    Kind {
        name: "FileUpload",
        positional: &["workersrc", "masterdest"],
        keywords: &[
            "maxsize",
            "blocksize",
            "mode",
            "keepstamp",
            "url",
            "urlText",
        ],
    },
    Kind {
        name: "DirectoryUpload",
        positional: &["workersrc", "masterdest"],
        keywords: &["maxsize", "blocksize", "compress", "url", "urlText"],
    },
    Kind {
        name: "FileDownload",
        positional: &["mastersrc", "workerdest"],
        keywords: TRANSFER,
    },
    Kind {
        name: "StringDownload",
        positional: &["s", "workerdest"],
        keywords: TRANSFER,
    },
    Kind {
        name: "FileExists",
        positional: &["file"],
        keywords: &["file"],
    },
    Kind {
        name: "CopyDirectory",
        positional: &["src", "dest"],
        keywords: &["src", "dest", "timeout", "maxTime"],
    },
    Kind {
        name: "MultipleFileUpload",
        positional: &["workersrcs", "masterdest"],
        keywords: &[
            "workersrcs",
            "masterdest",
            "maxsize",
            "blocksize",
            "mode",
            "keepstamp",
            "glob",
            "compress",
            "url",
            "urlText",
        ],
    },
    Kind {
        name: "JSONStringDownload",
        positional: &["o", "workerdest"],
        keywords: &["o", "workerdest", "maxsize", "blocksize", "mode"],
    },
    Kind {
        name: "JSONPropertiesDownload",
        positional: &["workerdest"],
        keywords: &["workerdest", "maxsize", "blocksize", "mode"],
    },
    Kind {
        name: "MasterShellCommand",
        positional: &["command"],
        keywords: &["command", "env", "workdir", "interruptSignal", "logEnviron"],
    },
    Kind {
        name: "HTTPStep",
        positional: &["url", "method"],
        keywords: HTTP_STEP,
    },
    Kind {
        name: "POST",
        positional: &["url"],
        keywords: HTTP_STEP,
    },
    Kind {
        name: "GET",
        positional: &["url"],
        keywords: HTTP_STEP,
    },
    Kind {
        name: "PUT",
        positional: &["url"],
        keywords: HTTP_STEP,
    },
    Kind {
        name: "DELETE",
        positional: &["url"],
        keywords: HTTP_STEP,
    },
    Kind {
        name: "HEAD",
        positional: &["url"],
        keywords: HTTP_STEP,
    },
    Kind {
        name: "OPTIONS",
        positional: &["url"],
        keywords: HTTP_STEP,
    },
    Kind {
        name: "MakeDirectory",
        positional: &["dir"],
        keywords: &[],
    },
    Kind {
        name: "RemoveDirectory",
        positional: &["dir"],
        keywords: &[],
    },
    Kind {
        name: "ForceScheduler",
        positional: &[],
        keywords: &[
            "name",
            "builderNames",
            "username",
            "reason",
            "reasonString",
            "buttonName",
            "label",
            "codebases",
            "properties",
            "priority",
        ],
    },
    Kind {
        name: "SingleBranchScheduler",
        positional: &[],
        keywords: BASIC_SCHEDULER,
    },
    Kind {
        name: "AnyBranchScheduler",
        positional: &[],
        keywords: BASIC_SCHEDULER,
    },
    Kind {
        name: "NightlyTriggerable",
        positional: &[
            "name",
            "builderNames",
            "minute",
            "hour",
            "dayOfMonth",
            "month",
            "dayOfWeek",
        ],
        keywords: &[
            "name",
            "builderNames",
            "minute",
            "hour",
            "dayOfMonth",
            "month",
            "dayOfWeek",
            "timezone",
            "properties",
            "reason",
            "priority",
            "codebases",
        ],
    },
    Kind {
        name: "Dependent",
        positional: &["name", "upstream", "builderNames"],
        keywords: &[
            "name",
            "upstream",
            "builderNames",
            "properties",
            "reason",
            "priority",
        ],
    },
    Kind {
        name: "GitPoller",
        positional: &["repourl"],
        keywords: &[
            "repourl",
            "branches",
            "branch",
            "only_tags",
            "workdir",
            "pollInterval",
            "pollAtLaunch",
            "gitbin",
            "usetimestamps",
            "category",
            "project",
            "codebase",
            "buildPushesWithNoCommits",
            "name",
        ],
    },
    Kind {
        name: "HgPoller",
        positional: &["repourl"],
        keywords: &[
            "repourl",
            "branches",
            "branch",
            "bookmarks",
            "workdir",
            "pollInterval",
            "pollAtLaunch",
            "hgbin",
            "usetimestamps",
            "category",
            "project",
            "revlink",
            "name",
        ],
    },
    Kind {
        name: "SVNPoller",
        positional: &["repourl"],
        keywords: &[
            "repourl",
            "split_file",
            "svnuser",
            "svnpasswd",
            "pollInterval",
            "pollAtLaunch",
            "histmax",
            "svnbin",
            "category",
            "project",
            "revlinktmpl",
            "extra_args",
            "name",
        ],
    },
    Kind {
        name: "MailNotifier",
        positional: &["fromaddr"],
        keywords: &[
            "fromaddr",
            "relayhost",
            "lookup",
            "extraRecipients",
            "sendToInterestedUsers",
            "extraHeaders",
            "useTls",
            "useSmtps",
            "smtpUser",
            "smtpPassword",
            "smtpPort",
            "dumpMailsToLog",
            "caFile",
            "watchedWorkers",
            // The 0.8 options, mapped onto generators with a warning.
            "mode",
            "builders",
            "categories",
            "tags",
            "addLogs",
            "addPatch",
            "buildSetSummary",
            "messageFormatter",
            "previousBuildGetter",
            "subject",
            "template",
        ],
    },
    Kind {
        name: "HttpStatusPush",
        positional: &["serverUrl"],
        keywords: &["serverUrl", "auth", "headers", "cert", "skip_encoding"],
    },
    Kind {
        name: "GerritStatusPush",
        positional: &["server", "username", "port"],
        keywords: &[
            "server",
            "username",
            "port",
            "identity_file",
            "notify",
            "sshCommand",
            "password",
            // The 0.8 callbacks, mapped onto generators with a warning.
            "reviewCB",
            "reviewArg",
            "startCB",
            "startArg",
            "summaryCB",
            "summaryArg",
        ],
    },
    Kind {
        name: "WebStatus",
        positional: &["http_port"],
        keywords: &[
            "http_port",
            "distrib_port",
            "allowForce",
            "public_html",
            "site",
            "numbuilds",
            "num_events",
            "num_events_max",
            "auth",
            "order_console_by_time",
            "changecommentlink",
            "revlink",
            "projects",
            "repositories",
            "authz",
            "logRotateLength",
            "maxRotatedFiles",
            "change_hook_dialects",
            "provide_feeds",
            "jinja_loaders",
            "change_hook_auth",
        ],
    },
    Kind {
        name: "Waterfall",
        positional: &["http_port"],
        keywords: &[
            "http_port",
            "distrib_port",
            "allowForce",
            "categories",
            "css",
            "favicon",
            "robots_txt",
        ],
    },
    Kind {
        name: "IRC",
        positional: &["host", "nick", "channels"],
        keywords: &[
            "host",
            "nick",
            "channels",
            "pm_to_nicks",
            "port",
            "allowForce",
            "allowShutdown",
            "categories",
            "tags",
            "password",
            "notify_events",
            "noticeOnChannel",
            "showBlameList",
            "useRevisions",
            "useSSL",
            "caFile",
            "useSASL",
            "lostDelay",
            "failedDelay",
            "useColors",
            "authz",
            "name",
        ],
    },
    Kind {
        name: "PBListener",
        positional: &["port", "user", "passwd"],
        keywords: &["port", "user", "passwd"],
    },
    Kind {
        name: "StatusPush",
        positional: &["serverPushCb"],
        keywords: &[
            "serverPushCb",
            "queue",
            "path",
            "filter",
            "bufferDelay",
            "retryDelay",
            "blackList",
            "whiteList",
        ],
    },
    Kind {
        name: "GerritCallback",
        positional: &[],
        keywords: &["func", "call"],
    },
    Kind {
        name: "GerritBuildSetStatusGenerator",
        positional: &[],
        keywords: &[
            "callback",
            "callback_arg",
            "builders",
            "want_steps",
            "want_logs",
        ],
    },
    Kind {
        name: "GerritBuildStartStatusGenerator",
        positional: &[],
        keywords: &[
            "callback",
            "callback_arg",
            "builders",
            "want_steps",
            "want_logs",
        ],
    },
    Kind {
        name: "GerritBuildEndStatusGenerator",
        positional: &[],
        keywords: &[
            "callback",
            "callback_arg",
            "builders",
            "want_steps",
            "want_logs",
        ],
    },
    Kind {
        name: "GitHubStatusPush",
        positional: &["token"],
        keywords: &["token", "context", "baseURL", "verbose"],
    },
    Kind {
        name: "GitHubCommentPush",
        positional: &["token"],
        keywords: &["token", "context", "baseURL", "verbose"],
    },
    Kind {
        name: "GitLabStatusPush",
        positional: &["token"],
        keywords: &["token", "context", "baseURL", "verbose"],
    },
    Kind {
        name: "GiteaStatusPush",
        positional: &["baseURL", "token"],
        keywords: &[
            "baseURL",
            "token",
            "context",
            "context_pr",
            "verbose",
            "warningAsSuccess",
        ],
    },
    Kind {
        name: "BitbucketStatusPush",
        positional: &[],
        keywords: &[
            "oauth_key",
            "oauth_secret",
            "auth",
            "base_url",
            "oauth_url",
            "status_key",
            "status_name",
        ],
    },
    Kind {
        name: "BitbucketServerStatusPush",
        positional: &["base_url", "user", "password"],
        keywords: &[
            "base_url",
            "user",
            "password",
            "key",
            "statusName",
            "verbose",
        ],
    },
    Kind {
        name: "BitbucketServerPRCommentPush",
        positional: &["base_url", "user", "password"],
        keywords: &["base_url", "user", "password", "verbose"],
    },
    Kind {
        name: "ZulipStatusPush",
        positional: &["endpoint", "token", "stream"],
        keywords: &["endpoint", "token", "stream"],
    },
    Kind {
        name: "MatrixStatusPush",
        positional: &["homeserver", "token", "room"],
        keywords: &["homeserver", "token", "room"],
    },
    Kind {
        name: "SlackStatusPush",
        positional: &["webhookUrl"],
        keywords: &["webhookUrl", "channel", "username"],
    },
    Kind {
        name: "WebhookPush",
        positional: &["url"],
        keywords: &["url", "auth", "headers"],
    },
    Kind {
        name: "BuildStatusGenerator",
        positional: &[],
        keywords: &[
            "mode",
            "tags",
            "builders",
            "schedulers",
            "branches",
            "subject",
            "add_logs",
            "add_patch",
            "report_new",
            "message_formatter",
        ],
    },
    Kind {
        name: "BuildStartEndStatusGenerator",
        positional: &[],
        keywords: &[
            "tags",
            "builders",
            "schedulers",
            "branches",
            "add_logs",
            "add_patch",
            "start_formatter",
            "end_formatter",
        ],
    },
    Kind {
        name: "BuildSetStatusGenerator",
        positional: &[],
        keywords: &[
            "mode",
            "tags",
            "builders",
            "schedulers",
            "branches",
            "subject",
            "add_logs",
            "add_patch",
            "message_formatter",
        ],
    },
    Kind {
        name: "BuildSetCombinedStatusGenerator",
        positional: &[],
        keywords: &["message_formatter"],
    },
    Kind {
        name: "BuildRequestGenerator",
        positional: &[],
        keywords: &[
            "tags",
            "builders",
            "schedulers",
            "branches",
            "add_patch",
            "formatter",
        ],
    },
    Kind {
        name: "WorkerMissingGenerator",
        positional: &[],
        keywords: &["workers", "message_formatter"],
    },
    Kind {
        name: "MessageFormatter",
        positional: &[],
        keywords: &[
            "template",
            "subject",
            "template_type",
            "want_properties",
            "want_steps",
            "want_logs",
            "want_logs_content",
            "extra_info_cb",
            "ctx",
        ],
    },
    Kind {
        name: "MessageFormatterRenderable",
        positional: &["template", "subject"],
        keywords: &["template", "subject"],
    },
    Kind {
        name: "MessageFormatterFunction",
        positional: &["function", "template_type"],
        keywords: &[
            "function",
            "template_type",
            "want_properties",
            "want_steps",
            "want_logs",
            "want_logs_content",
        ],
    },
    Kind {
        name: "MessageFormatterMissingWorker",
        positional: &[],
        keywords: &["template", "subject", "template_type"],
    },
    Kind {
        name: "MessageFormatterEmpty",
        positional: &[],
        keywords: &[],
    },
    Kind {
        name: "OldBuildCanceller",
        positional: &["name", "filters"],
        keywords: &["name", "filters"],
    },
    Kind {
        name: "SourceStampFilter",
        positional: &[],
        keywords: &[
            "project_eq",
            "project_not_eq",
            "project_re",
            "project_not_re",
            "codebase_eq",
            "codebase_not_eq",
            "codebase_re",
            "codebase_not_re",
            "repository_eq",
            "repository_not_eq",
            "repository_re",
            "repository_not_re",
            "branch_eq",
            "branch_not_eq",
            "branch_re",
            "branch_not_re",
        ],
    },
    Kind {
        name: "Try_Userpass",
        positional: &["name", "builderNames", "port", "userpass"],
        keywords: &["name", "builderNames", "port", "userpass", "properties"],
    },
    Kind {
        name: "Try_Jobdir",
        positional: &["name", "builderNames", "jobdir"],
        keywords: &["name", "builderNames", "jobdir", "properties"],
    },
    Kind {
        name: "Triggerable",
        positional: &["name", "builderNames"],
        keywords: &[
            "name",
            "builderNames",
            "properties",
            "reason",
            "priority",
            "codebases",
        ],
    },
    Kind {
        name: "Trigger",
        positional: &[],
        keywords: &[
            "schedulerNames",
            "unimportantSchedulerNames",
            "sourceStamps",
            "updateSourceStamp",
            "alwaysUseLatest",
            "waitForFinish",
            "set_properties",
            "copy_properties",
            "parent_relationship",
        ],
    },
    Kind {
        name: "Periodic",
        positional: &["name", "builderNames", "periodicBuildTimer"],
        keywords: TIMED_SCHEDULER,
    },
    Kind {
        name: "Nightly",
        positional: &[
            "name",
            "builderNames",
            "minute",
            "hour",
            "dayOfMonth",
            "month",
            "dayOfWeek",
        ],
        keywords: TIMED_SCHEDULER,
    },
    Kind {
        name: "NoAuth",
        positional: &[],
        keywords: &[],
    },
    Kind {
        name: "UserPasswordAuth",
        positional: &["users"],
        keywords: &[],
    },
    Kind {
        name: "HTPasswdAuth",
        positional: &["passwdFile"],
        keywords: &[],
    },
    Kind {
        name: "RemoteUserAuth",
        positional: &[],
        keywords: &["header", "headerRegex", "trustedProxies"],
    },
    Kind {
        name: "GitHubAuth",
        positional: &["clientId", "clientSecret"],
        keywords: &[
            "serverURL",
            "apiVersion",
            "getTeamsMembership",
            "debug",
            "scope",
        ],
    },
    Kind {
        name: "GitLabAuth",
        positional: &["instanceUri", "clientId", "clientSecret"],
        keywords: &["scope"],
    },
    Kind {
        name: "GoogleAuth",
        positional: &["clientId", "clientSecret"],
        keywords: &["scope"],
    },
    Kind {
        name: "GenericOAuth2Auth",
        positional: &["clientId", "clientSecret"],
        keywords: &[
            "name",
            "discoveryUri",
            "authUri",
            "tokenUri",
            "userinfoUri",
            "scope",
        ],
    },
    Kind {
        name: "Authz",
        positional: &[],
        keywords: &[
            "allowRules",
            "roleMatchers",
            "stringsMatcher",
            "forceBuild",
            "forceAllBuilds",
            "pingBuilder",
            "gracefulShutdown",
            "pauseSlave",
            "stopBuild",
            "stopAllBuilds",
            "cancelPendingBuild",
            "stopChange",
            "cleanShutdown",
            "showUsersPage",
            "auth",
            "useHttpHeader",
            "httpLoginLink",
        ],
    },
    Kind {
        name: "BasicAuth",
        positional: &["users"],
        keywords: &[],
    },
    Kind {
        name: "HTPasswdAprAuth",
        positional: &["passwdFile"],
        keywords: &[],
    },
    Kind {
        name: "UsersAuth",
        positional: &[],
        keywords: &[],
    },
    Kind {
        name: "AnyEndpointMatcher",
        positional: &[],
        keywords: &["role", "defaultDeny"],
    },
    Kind {
        name: "AnyControlEndpointMatcher",
        positional: &[],
        keywords: &["role", "defaultDeny"],
    },
    Kind {
        name: "ForceBuildEndpointMatcher",
        positional: &[],
        keywords: &["builder", "role", "defaultDeny"],
    },
    Kind {
        name: "StopBuildEndpointMatcher",
        positional: &[],
        keywords: &["builder", "role", "defaultDeny"],
    },
    Kind {
        name: "RebuildBuildEndpointMatcher",
        positional: &[],
        keywords: &["builder", "role", "defaultDeny"],
    },
    Kind {
        name: "EnableSchedulerEndpointMatcher",
        positional: &[],
        keywords: &["role", "defaultDeny"],
    },
    Kind {
        name: "ViewBuildsEndpointMatcher",
        positional: &[],
        keywords: &["branch", "project", "builder", "role", "defaultDeny"],
    },
    Kind {
        name: "BranchEndpointMatcher",
        positional: &["branch"],
        keywords: &["role", "defaultDeny"],
    },
    Kind {
        name: "RolesFromGroups",
        positional: &[],
        keywords: &["groupPrefix"],
    },
    Kind {
        name: "RolesFromEmails",
        positional: &[],
        keywords: &[],
    },
    Kind {
        name: "RolesFromDomain",
        positional: &[],
        keywords: &[],
    },
    Kind {
        name: "RolesFromUsername",
        positional: &[],
        keywords: &["roles", "usernames"],
    },
    Kind {
        name: "RolesFromOwner",
        positional: &["role"],
        keywords: &[],
    },
    Kind {
        name: "StringsMatcher",
        positional: &["how"],
        keywords: &[],
    },
    Kind {
        name: "RevlinkMatch",
        positional: &["repo_urls", "revlink"],
        keywords: &[],
    },
    Kind {
        name: "ChangeFilter",
        positional: &[],
        keywords: CHANGE_FILTER,
    },
    Kind {
        name: "Property",
        positional: &["key", "default"],
        keywords: &["defaultWhenFalse"],
    },
    Kind {
        name: "FlattenList",
        positional: &["nestedlist", "types"],
        keywords: &["nestedlist", "types"],
    },
    Kind {
        name: "SecretInAFile",
        positional: &["dirname"],
        keywords: &["dirname", "suffixes", "strip"],
    },
    Kind {
        name: "SecretInEnvironment",
        positional: &["prefix"],
        keywords: &["prefix"],
    },
    Kind {
        name: "SecretInKeyValueFile",
        positional: &["path"],
        keywords: &["path"],
    },
    Kind {
        name: "Interpolate",
        positional: &["fmtstring"],
        keywords: &[],
    },
    Kind {
        name: "StringParameter",
        positional: &["name"],
        keywords: PARAM,
    },
    Kind {
        name: "TextParameter",
        positional: &["name"],
        keywords: PARAM,
    },
    Kind {
        name: "FileParameter",
        positional: &["name"],
        keywords: PARAM,
    },
    Kind {
        name: "IntParameter",
        positional: &["name"],
        keywords: PARAM,
    },
    Kind {
        name: "BooleanParameter",
        positional: &["name"],
        keywords: PARAM,
    },
    Kind {
        name: "UserNameParameter",
        positional: &["name"],
        keywords: PARAM,
    },
    Kind {
        name: "FixedParameter",
        positional: &["name"],
        keywords: PARAM,
    },
    Kind {
        name: "ChoiceStringParameter",
        positional: &["name"],
        keywords: PARAM,
    },
    Kind {
        name: "NestedParameter",
        positional: &["name", "fields"],
        keywords: NESTED_PARAM,
    },
    Kind {
        name: "CodebaseParameter",
        positional: &["codebase"],
        keywords: &[
            "codebase",
            "name",
            "label",
            "branch",
            "revision",
            "repository",
            "project",
            "patch",
            "layout",
            "columns",
            "tablabel",
            "hide",
        ],
    },
    Kind {
        name: "AnyPropertyParameter",
        positional: &["name"],
        keywords: PARAM,
    },
    Kind {
        name: "PatchParameter",
        positional: &[],
        keywords: &["name", "label", "layout", "columns", "hide"],
    },
    Kind {
        name: "WorkerChoiceParameter",
        positional: &["name"],
        keywords: PARAM,
    },
    Kind {
        name: "InheritBuildParameter",
        positional: &["name", "label", "compatible_builds"],
        keywords: &[
            "name",
            "label",
            "compatible_builds",
            "default",
            "required",
            "hide",
            "tooltip",
        ],
    },
];

const NESTED_PARAM: &[&str] = &[
    "name", "label", "fields", "layout", "columns", "tablabel", "hide",
];

/// The step constructors, which also take [`STEP_COMMON`].
pub const STEP_KINDS: &[&str] = &[
    "ShellCommand",
    "FileUpload",
    "DirectoryUpload",
    "FileDownload",
    "StringDownload",
    "MakeDirectory",
    "RemoveDirectory",
    "Trigger",
    "SetProperty",
    "SetProperties",
    "SetPropertiesFromEnv",
    "SetPropertyFromCommand",
    "Configure",
    "Compile",
    "Test",
    "WarningCountingShellCommand",
    "ShellSequence",
    "FileExists",
    "CopyDirectory",
    "MultipleFileUpload",
    "JSONStringDownload",
    "JSONPropertiesDownload",
    "MasterShellCommand",
    "HTTPStep",
    "POST",
    "GET",
    "PUT",
    "DELETE",
    "HEAD",
    "OPTIONS",
    "Git",
    "GitHub",
    "Mercurial",
    "SVN",
    "CVS",
    "Darcs",
    "Bzr",
    "Arch",
    "P4",
    "Monotone",
];

/// The reporters, which also take [`REPORTER_COMMON`].
pub const REPORTER_KINDS: &[&str] = &[
    "MailNotifier",
    "HttpStatusPush",
    "GerritStatusPush",
    "GitHubStatusPush",
    "GitHubCommentPush",
    "GitLabStatusPush",
    "GiteaStatusPush",
    "BitbucketStatusPush",
    "BitbucketServerStatusPush",
    "BitbucketServerPRCommentPush",
    "ZulipStatusPush",
    "MatrixStatusPush",
    "SlackStatusPush",
    "WebhookPush",
];

/// Keywords every reporter takes: Buildbot's `name`, `generators`, `debug` and `verify`, and
/// kiln's delivery retries.
pub const REPORTER_COMMON: &[&str] = &[
    "name",
    "generators",
    "debug",
    "verify",
    "retries",
    "retryDelay",
    "maxRetryDelay",
];

/// Kinds that accept arbitrary extra keyword arguments (Interpolate's `kwargs`, and the roles
/// of `RolesFromEmails` and `RolesFromDomain`, each a keyword).
pub const OPEN_KINDS: &[&str] = &["Interpolate", "RolesFromEmails", "RolesFromDomain"];

pub fn find(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// Buildbot 0.8's keyword names and the names that replaced them: a configuration that uses
/// the old ones still loads, with a warning naming the new one.
const LEGACY_KEYWORDS: &[(&str, &str)] = &[
    ("slavename", "workername"),
    ("slavenames", "workernames"),
    ("slavebuilddir", "workerbuilddir"),
    ("nextSlave", "nextWorker"),
    ("mergeRequests", "collapseRequests"),
    ("slavesrc", "workersrc"),
    ("slavesrcs", "workersrcs"),
    ("slavedest", "workerdest"),
];

/// The modern name of an old keyword that `kind` accepts under its new name.
pub fn modern_keyword(kind: &Kind, arg: &str) -> Option<&'static str> {
    LEGACY_KEYWORDS
        .iter()
        .find(|(old, new)| *old == arg && accepts(kind, new))
        .map(|(_, new)| *new)
}

/// The name among `names` closest to `wrong`, when one is close enough to be what was meant.
pub fn closest<'a>(wrong: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wrong = wrong.to_lowercase();
    names
        .into_iter()
        .map(|n| (strsim::jaro_winkler(&wrong, &n.to_lowercase()), n))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| n)
}

/// `; did you mean 'x'?` for a misspelled name, or nothing.
pub fn did_you_mean<'a>(wrong: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    closest(wrong, names)
        .map(|n| format!("; did you mean '{n}'?"))
        .unwrap_or_default()
}

/// Every keyword `kind` takes.
pub fn keywords_of(kind: &Kind) -> Vec<&'static str> {
    let mut all: Vec<&'static str> = kind.positional.to_vec();
    all.extend(kind.keywords);
    if STEP_KINDS.contains(&kind.name) {
        all.extend(STEP_COMMON);
    }
    if REPORTER_KINDS.contains(&kind.name) {
        all.extend(REPORTER_COMMON);
    }
    match kind.name {
        "SingleBranchScheduler" => all.push("branch"),
        "AnyBranchScheduler" => all.push("branches"),
        _ => {}
    }
    all
}

/// Whether `kind` accepts the keyword `arg`.
pub fn accepts(kind: &Kind, arg: &str) -> bool {
    let scheduler_only = match kind.name {
        "SingleBranchScheduler" => arg == "branch",
        "AnyBranchScheduler" => arg == "branches",
        _ => false,
    };
    scheduler_only
        || kind.positional.contains(&arg)
        || kind.keywords.contains(&arg)
        || (STEP_KINDS.contains(&kind.name) && STEP_COMMON.contains(&arg))
        || (REPORTER_KINDS.contains(&kind.name) && REPORTER_COMMON.contains(&arg))
        || OPEN_KINDS.contains(&kind.name)
}
