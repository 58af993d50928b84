//! Who a web user is (`c['www']['auth']`) and what each user may do (`c['www']['authz']`), in
//! Buildbot's terms.

use std::path::PathBuf;

use kiln_core::changefilter::FnRef;

/// `c['www']['auth']`: how a web user proves who they are.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum WebAuth {
    /// `util.NoAuth()`, the default: nobody logs in, everyone is anonymous.
    #[default]
    None,
    /// `util.UserPasswordAuth(users)`: users and their passwords in the configuration, as a dict
    /// or a list of pairs.
    UserPassword(Vec<(String, String)>),
    /// `util.HTPasswdAuth(passwdFile)`: an Apache password file (bcrypt, apr1-MD5, SHA1 or crypt
    /// lines), read at each login so that a changed file needs no reconfiguration.
    HtPasswd(PathBuf),
    /// `util.RemoteUserAuth(header, headerRegex)`: a trusted reverse proxy authenticates and names
    /// the user in a header; the header is believed only from the `trustedProxies` addresses.
    RemoteUser {
        header: String,
        header_regex: String,
        trusted_proxies: Vec<String>,
    },
    /// An OAuth2 provider logs users in (`util.GitHubAuth`, `util.GitLabAuth`,
    /// `util.GoogleAuth`, and kiln's `util.GenericOAuth2Auth` for any provider, with OpenID
    /// Connect discovery).
    OAuth2(OAuth2),
}

/// An OAuth2 login: the provider, and the client the master is registered there as.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2 {
    pub provider: OAuthProvider,
    pub client_id: String,
    pub client_secret: String,
    /// The scopes asked for; each provider has its default.
    pub scope: Option<String>,
}

/// Where an OAuth2 login goes, and how the user is read there.
#[derive(Debug, Clone, PartialEq)]
pub enum OAuthProvider {
    /// GitHub, or GitHub Enterprise at `server`; organisations (and with `teams`, teams as
    /// `org/team`) become the user's groups.
    GitHub {
        server: Option<String>,
        teams: bool,
    },
    /// A GitLab instance; the user's groups become their groups.
    GitLab {
        instance: String,
    },
    Google,
    /// Any OAuth2 or OpenID Connect provider: its endpoints given, or found at `discovery`
    /// (`…/.well-known/openid-configuration`). `label` names it on the login link.
    Generic {
        label: String,
        discovery: Option<String>,
        auth_uri: Option<String>,
        token_uri: Option<String>,
        userinfo_uri: Option<String>,
    },
}

impl WebAuth {
    /// Whether users log in with a name and a password that kiln checks.
    pub fn takes_passwords(&self) -> bool {
        matches!(self, WebAuth::UserPassword(_) | WebAuth::HtPasswd(_))
    }
}

/// `util.Authz(allowRules=…, roleMatchers=…, stringsMatcher=…)`, or the old form's actions.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Authz {
    /// Tried in order: the first rule that matches a request and that the user has the role of
    /// allows it; a matching rule whose role the user lacks denies it unless `defaultDeny=False`.
    pub allow_rules: Vec<AllowRule>,
    pub role_matchers: Vec<RoleMatcher>,
    /// How role and builder patterns match: shell patterns (`util.fnmatchStrMatcher`, the
    /// default) or regular expressions anchored at the start (`util.reStrMatcher`).
    pub strings: StringsMatcher,
    /// The old WebStatus form, `Authz(forceBuild='auth', stopBuild=True, …)`: each action named
    /// there, and who may do it.
    pub actions: Vec<(Action, Permission)>,
}

/// How a rule's patterns are matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StringsMatcher {
    #[default]
    Fnmatch,
    Regex,
}

/// One of `allowRules`: which requests it concerns, and the role that may make them.
#[derive(Debug, Clone, PartialEq)]
pub struct AllowRule {
    pub endpoint: Endpoint,
    pub role: String,
    pub default_deny: bool,
}

/// Buildbot's endpoint matchers.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// `AnyEndpointMatcher`: every request, reading included.
    Any,
    /// `AnyControlEndpointMatcher`: every request that changes something.
    AnyControl,
    /// `ForceBuildEndpointMatcher(builder=…)`: forcing builds (on builders matching `builder`).
    ForceBuild { builder: Option<String> },
    /// `StopBuildEndpointMatcher(builder=…)`: stopping builds and cancelling requests.
    StopBuild { builder: Option<String> },
    /// `RebuildBuildEndpointMatcher(builder=…)`: rebuilding builds.
    RebuildBuild { builder: Option<String> },
    /// `EnableSchedulerEndpointMatcher`: enabling and disabling schedulers.
    EnableScheduler,
    /// `ViewBuildsEndpointMatcher(branch=…, project=…, builder=…)`: reading builds.
    ViewBuilds {
        branch: Option<String>,
        project: Option<String>,
        builder: Option<String>,
    },
    /// `BranchEndpointMatcher(branch)`: anything done to builds of a branch.
    Branch { branch: String },
}

/// Buildbot's role matchers: the roles a user has.
#[derive(Debug, Clone, PartialEq)]
pub enum RoleMatcher {
    /// `RolesFromGroups(groupPrefix=…)`: each group starting with the prefix, without it.
    Groups { prefix: String },
    /// `RolesFromEmails(role=[emails], …)`.
    Emails(Vec<(String, Vec<String>)>),
    /// `RolesFromDomain(role=[domains], …)`: by the domain of the user's email.
    Domain(Vec<(String, Vec<String>)>),
    /// `RolesFromUsername(roles=[…], usernames=[…])`.
    Username {
        roles: Vec<String>,
        usernames: Vec<String>,
    },
    /// `RolesFromOwner(role)`: the role, on the builds a user started.
    Owner { role: String },
}

/// The actions of the old WebStatus `Authz`, by their names there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ForceBuild,
    ForceAllBuilds,
    PingBuilder,
    GracefulShutdown,
    PauseWorker,
    StopBuild,
    StopAllBuilds,
    CancelPendingBuild,
    StopChange,
    CleanShutdown,
    ShowUsersPage,
}

impl Action {
    /// Every action with its keyword in the old `Authz(…)`.
    pub const ALL: [(Action, &'static str); 11] = [
        (Action::ForceBuild, "forceBuild"),
        (Action::ForceAllBuilds, "forceAllBuilds"),
        (Action::PingBuilder, "pingBuilder"),
        (Action::GracefulShutdown, "gracefulShutdown"),
        (Action::PauseWorker, "pauseSlave"),
        (Action::StopBuild, "stopBuild"),
        (Action::StopAllBuilds, "stopAllBuilds"),
        (Action::CancelPendingBuild, "cancelPendingBuild"),
        (Action::StopChange, "stopChange"),
        (Action::CleanShutdown, "cleanShutdown"),
        (Action::ShowUsersPage, "showUsersPage"),
    ];

    /// The action's keyword in the old `Authz(…)`.
    pub fn keyword(self) -> &'static str {
        Action::ALL
            .iter()
            .find(|(a, _)| *a == self)
            .map(|(_, k)| *k)
            .unwrap_or("?")
    }
}

/// Who may do an action of the old form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `False`: nobody.
    Nobody,
    /// `True`: everybody.
    Everybody,
    /// `'auth'`: any user who logged in.
    LoggedIn,
    /// A function of the user's name (and what the action concerns) that answers yes or no.
    Function(FnRef),
}
