//! `c['www']['auth']` and `c['www']['authz']`: who logs in, and what each user may do.

use super::Cx;
use super::schedulers::function;
use crate::model::*;
use crate::node::{Location, Node};

/// The addresses a `RemoteUserAuth` header is believed from unless `trustedProxies` says.
const LOCAL_PROXIES: [&str; 2] = ["127.0.0.1", "::1"];

/// `c['www']['auth']`.
pub(super) fn auth(cx: &mut Cx, node: &Node) -> WebAuth {
    let Node::Object { kind, loc, .. } = node else {
        let loc = cx.key_loc("www");
        cx.error(
            &loc,
            format!(
                "c['www']['auth'] must be an authentication such as util.UserPasswordAuth(…), not {}",
                node.describe()
            ),
        );
        return WebAuth::None;
    };
    let loc = loc.clone();
    match kind.as_str() {
        "NoAuth" => WebAuth::None,
        // The old WebStatus's BasicAuth is a list of (user, password), as UserPasswordAuth's.
        "UserPasswordAuth" | "BasicAuth" => {
            WebAuth::UserPassword(users(cx, node.field("users"), &loc))
        }
        // The old UsersAuth checks the users table only, which every password login consults.
        "UsersAuth" => WebAuth::UserPassword(Vec::new()),
        "HTPasswdAuth" | "HTPasswdAprAuth" => {
            match cx.opt_string(node.field("passwdFile"), "passwdFile", &loc) {
                Some(file) => WebAuth::HtPasswd(file.into()),
                None => {
                    cx.error(
                        &loc,
                        "util.HTPasswdAuth needs passwdFile, the htpasswd file",
                    );
                    WebAuth::None
                }
            }
        }
        "RemoteUserAuth" => remote_user(cx, node, &loc),
        "GitHubAuth" | "GitLabAuth" | "GoogleAuth" | "GenericOAuth2Auth" => {
            oauth2(cx, node, kind, &loc).map_or(WebAuth::None, WebAuth::OAuth2)
        }
        other => {
            cx.error(
                &loc,
                format!("c['www']['auth'] cannot be {other}; kiln knows util.NoAuth, util.UserPasswordAuth, util.HTPasswdAuth, util.RemoteUserAuth, util.GitHubAuth, util.GitLabAuth, util.GoogleAuth and util.GenericOAuth2Auth"),
            );
            WebAuth::None
        }
    }
}

/// `UserPasswordAuth`'s users: `{user: password}` or `[(user, password)]`.
fn users(cx: &mut Cx, node: Option<&Node>, loc: &Location) -> Vec<(String, String)> {
    let pairs: Vec<(&Node, &Node)> = match node {
        Some(Node::Dict(entries)) => entries.iter().map(|(k, v)| (k, v)).collect(),
        Some(Node::List(items)) => {
            let mut pairs = Vec::new();
            for item in items {
                match item {
                    Node::List(pair) if pair.len() == 2 => pairs.push((&pair[0], &pair[1])),
                    other => cx.error(
                        loc,
                        format!(
                            "UserPasswordAuth's users must be (user, password) pairs, not {}",
                            other.describe()
                        ),
                    ),
                }
            }
            pairs
        }
        other => {
            let what = other
                .map(Node::describe)
                .unwrap_or_else(|| "nothing".into());
            cx.error(
                loc,
                format!(
                    "UserPasswordAuth needs users, a dict or a list of (user, password), not {what}"
                ),
            );
            Vec::new()
        }
    };
    pairs
        .into_iter()
        .filter_map(|(u, p)| {
            let user = cx.string(u, "a UserPasswordAuth user", loc)?;
            let password = cx.string(p, "a UserPasswordAuth password", loc)?;
            Some((user, password))
        })
        .collect()
}

/// An OAuth2 login's settings.
fn oauth2(cx: &mut Cx, node: &Node, kind: &str, loc: &Location) -> Option<OAuth2> {
    let required = |cx: &mut Cx, key: &str| {
        let value = cx.opt_string(node.field(key), &format!("{kind}'s {key}"), loc);
        if value.as_deref().is_none_or(str::is_empty) {
            cx.error(loc, format!("util.{kind} needs {key}"));
        }
        value
    };
    let client_id = required(cx, "clientId");
    let client_secret = required(cx, "clientSecret");
    let optional =
        |cx: &mut Cx, key: &str| cx.opt_string(node.field(key), &format!("{kind}'s {key}"), loc);
    let url = |cx: &mut Cx, key: &str, value: Option<String>| {
        if let Some(v) = &value
            && !(v.starts_with("https://") || v.starts_with("http://"))
        {
            cx.error(
                loc,
                format!("{kind}'s {key} must be an http:// or https:// URL, not {v:?}"),
            );
        }
        value
    };
    let provider = match kind {
        "GitHubAuth" => {
            let server = optional(cx, "serverURL");
            let teams = matches!(node.field("getTeamsMembership"), Some(Node::Bool(true)));
            OAuthProvider::GitHub {
                server: url(cx, "serverURL", server),
                teams,
            }
        }
        "GitLabAuth" => {
            let instance = required(cx, "instanceUri");
            OAuthProvider::GitLab {
                instance: url(cx, "instanceUri", instance)?,
            }
        }
        "GoogleAuth" => OAuthProvider::Google,
        _ => {
            let discovery = optional(cx, "discoveryUri");
            let auth_uri = optional(cx, "authUri");
            let token_uri = optional(cx, "tokenUri");
            let userinfo_uri = optional(cx, "userinfoUri");
            let explicit = auth_uri.is_some() && token_uri.is_some() && userinfo_uri.is_some();
            if discovery.is_none() && !explicit {
                cx.error(loc, "util.GenericOAuth2Auth needs discoveryUri, or authUri, tokenUri and userinfoUri");
            }
            OAuthProvider::Generic {
                label: optional(cx, "name").unwrap_or_else(|| "OAuth2".into()),
                discovery: url(cx, "discoveryUri", discovery),
                auth_uri: url(cx, "authUri", auth_uri),
                token_uri: url(cx, "tokenUri", token_uri),
                userinfo_uri: url(cx, "userinfoUri", userinfo_uri),
            }
        }
    };
    Some(OAuth2 {
        provider,
        client_id: client_id?,
        client_secret: client_secret?,
        scope: optional(cx, "scope"),
    })
}

/// `RemoteUserAuth(header=…, headerRegex=…, trustedProxies=…)`.
fn remote_user(cx: &mut Cx, node: &Node, loc: &Location) -> WebAuth {
    let header = cx
        .opt_string(node.field("header"), "RemoteUserAuth's header", loc)
        .unwrap_or_else(|| "REMOTE_USER".into());
    let header_regex = cx
        .opt_string(
            node.field("headerRegex"),
            "RemoteUserAuth's headerRegex",
            loc,
        )
        .unwrap_or_else(|| r"(?P<username>[^ @]+)@(?P<realm>[^ @]+)".into());
    match regex::Regex::new(&header_regex) {
        Ok(re) if re.capture_names().flatten().any(|n| n == "username") => {}
        Ok(_) => cx.error(
            loc,
            format!("RemoteUserAuth's headerRegex {header_regex:?} has no (?P<username>…) group"),
        ),
        Err(e) => cx.error(
            loc,
            format!(
                "RemoteUserAuth's headerRegex {header_regex:?} is not a regular expression: {e}"
            ),
        ),
    }
    let mut trusted_proxies = cx.strings(
        node.field("trustedProxies"),
        "RemoteUserAuth's trustedProxies",
        loc,
    );
    if node.field("trustedProxies").is_none() {
        trusted_proxies = LOCAL_PROXIES.iter().map(|s| s.to_string()).collect();
    }
    for p in &trusted_proxies {
        if p.parse::<std::net::IpAddr>().is_err() {
            cx.error(
                loc,
                format!("RemoteUserAuth's trustedProxies entry {p:?} is not an IP address"),
            );
        }
    }
    WebAuth::RemoteUser {
        header,
        header_regex,
        trusted_proxies,
    }
}

/// `c['www']['authz']`.
/// What the old WebStatus `Authz` says about logging in, beside what each user may do:
/// `auth=`, `useHttpHeader=True` and `httpLoginLink=`.
#[derive(Debug, Default)]
pub(super) struct OldLogin {
    pub auth: Option<WebAuth>,
    pub use_http_header: bool,
    pub login_link: Option<String>,
}

/// The old form's login settings of `c['www']['authz']`.
pub(super) fn old_login(cx: &mut Cx, node: &Node) -> OldLogin {
    let Node::Object { kind, loc, .. } = node else {
        return OldLogin::default();
    };
    if kind != "Authz" {
        return OldLogin::default();
    }
    let loc = loc.clone();
    OldLogin {
        auth: node.field("auth").map(|a| auth(cx, a)),
        use_http_header: match node.field("useHttpHeader") {
            None | Some(Node::Bool(false)) | Some(Node::None) => false,
            Some(Node::Bool(true)) => true,
            Some(other) => {
                cx.error(
                    &loc,
                    format!(
                        "Authz's useHttpHeader must be True or False, not {}",
                        other.describe()
                    ),
                );
                false
            }
        },
        login_link: cx.opt_string(node.field("httpLoginLink"), "Authz's httpLoginLink", &loc),
    }
}

pub(super) fn authz(cx: &mut Cx, node: &Node) -> Option<Authz> {
    let Node::Object { kind, loc, .. } = node else {
        let loc = cx.key_loc("www");
        cx.error(
            &loc,
            format!(
                "c['www']['authz'] must be util.Authz(…), not {}",
                node.describe()
            ),
        );
        return None;
    };
    let loc = loc.clone();
    if kind != "Authz" {
        cx.error(
            &loc,
            format!("c['www']['authz'] must be util.Authz(…), not {kind}"),
        );
        return None;
    }
    let mut authz = Authz::default();
    if let Some(rules) = list(cx, node.field("allowRules"), "allowRules", &loc) {
        authz.allow_rules = rules.iter().filter_map(|r| allow_rule(cx, r)).collect();
    }
    if let Some(matchers) = list(cx, node.field("roleMatchers"), "roleMatchers", &loc) {
        authz.role_matchers = matchers
            .iter()
            .filter_map(|m| role_matcher(cx, m))
            .collect();
    }
    authz.strings = match node.field("stringsMatcher") {
        None | Some(Node::None) => StringsMatcher::Fnmatch,
        Some(Node::Object { kind, fields, .. }) if kind == "StringsMatcher" => {
            match fields.first().map(|(_, v)| v) {
                Some(Node::Str(s)) if s == "re" => StringsMatcher::Regex,
                _ => StringsMatcher::Fnmatch,
            }
        }
        Some(other) => {
            cx.error(
                &loc,
                format!("Authz's stringsMatcher must be util.fnmatchStrMatcher or util.reStrMatcher, not {}", other.describe()),
            );
            StringsMatcher::Fnmatch
        }
    };
    for (action, keyword) in Action::ALL {
        match node.field(keyword) {
            None => {}
            Some(Node::Bool(false)) => authz.actions.push((action, Permission::Nobody)),
            Some(Node::Bool(true)) => authz.actions.push((action, Permission::Everybody)),
            Some(Node::Str(s)) if s == "auth" => authz.actions.push((action, Permission::LoggedIn)),
            Some(f @ Node::Function(..)) => {
                if let Some(f) = function(cx, f, keyword, &loc) {
                    authz.actions.push((action, Permission::Function(f)));
                }
            }
            Some(other) => cx.error(
                &loc,
                format!(
                    "Authz's {keyword} must be True, False, 'auth' or a function, not {}",
                    other.describe()
                ),
            ),
        }
    }
    Some(authz)
}

/// A list argument, or an error saying what it must be.
fn list<'n>(cx: &mut Cx, node: Option<&'n Node>, what: &str, loc: &Location) -> Option<&'n [Node]> {
    match node {
        None | Some(Node::None) => None,
        Some(Node::List(items)) => Some(items),
        Some(other) => {
            cx.error(
                loc,
                format!("Authz's {what} must be a list, not {}", other.describe()),
            );
            None
        }
    }
}

/// One of `allowRules`: an endpoint matcher.
fn allow_rule(cx: &mut Cx, node: &Node) -> Option<AllowRule> {
    let Node::Object { kind, loc, .. } = node else {
        let loc = cx.key_loc("www");
        cx.error(&loc, format!("allowRules entries must be endpoint matchers such as util.AnyControlEndpointMatcher(role='admins'), not {}", node.describe()));
        return None;
    };
    let builder = |cx: &mut Cx| cx.opt_string(node.field("builder"), "the matcher's builder", loc);
    let endpoint = match kind.as_str() {
        "AnyEndpointMatcher" => Endpoint::Any,
        "AnyControlEndpointMatcher" => Endpoint::AnyControl,
        "ForceBuildEndpointMatcher" => Endpoint::ForceBuild {
            builder: builder(cx),
        },
        "StopBuildEndpointMatcher" => Endpoint::StopBuild {
            builder: builder(cx),
        },
        "RebuildBuildEndpointMatcher" => Endpoint::RebuildBuild {
            builder: builder(cx),
        },
        "EnableSchedulerEndpointMatcher" => Endpoint::EnableScheduler,
        "ViewBuildsEndpointMatcher" => Endpoint::ViewBuilds {
            branch: cx.opt_string(node.field("branch"), "the matcher's branch", loc),
            project: cx.opt_string(node.field("project"), "the matcher's project", loc),
            builder: builder(cx),
        },
        "BranchEndpointMatcher" => Endpoint::Branch {
            branch: cx.opt_string(node.field("branch"), "the matcher's branch", loc)?,
        },
        other => {
            cx.error(
                loc,
                format!("{other} is not an endpoint matcher kiln knows"),
            );
            return None;
        }
    };
    let Some(role) = cx.opt_string(node.field("role"), "the matcher's role", loc) else {
        cx.error(loc, format!("{kind} needs role=, the role it allows"));
        return None;
    };
    let default_deny = cx.boolean(node.field("defaultDeny"), true, "defaultDeny", loc);
    Some(AllowRule {
        endpoint,
        role,
        default_deny,
    })
}

/// One of `roleMatchers`.
fn role_matcher(cx: &mut Cx, node: &Node) -> Option<RoleMatcher> {
    let Node::Object { kind, loc, fields } = node else {
        let loc = cx.key_loc("www");
        cx.error(
            &loc,
            format!(
                "roleMatchers entries must be role matchers such as util.RolesFromGroups(), not {}",
                node.describe()
            ),
        );
        return None;
    };
    Some(match kind.as_str() {
        "RolesFromGroups" => RoleMatcher::Groups {
            prefix: cx
                .opt_string(node.field("groupPrefix"), "groupPrefix", loc)
                .unwrap_or_default(),
        },
        "RolesFromEmails" | "RolesFromDomain" => {
            let by_role = fields
                .iter()
                .map(|(role, v)| (role.clone(), cx.strings(Some(v), kind, loc)))
                .collect();
            if kind == "RolesFromEmails" {
                RoleMatcher::Emails(by_role)
            } else {
                RoleMatcher::Domain(by_role)
            }
        }
        "RolesFromUsername" => RoleMatcher::Username {
            roles: cx.strings(node.field("roles"), "RolesFromUsername's roles", loc),
            usernames: cx.strings(
                node.field("usernames"),
                "RolesFromUsername's usernames",
                loc,
            ),
        },
        "RolesFromOwner" => RoleMatcher::Owner {
            role: cx.opt_string(node.field("role"), "RolesFromOwner's role", loc)?,
        },
        other => {
            cx.error(loc, format!("{other} is not a role matcher kiln knows"));
            return None;
        }
    })
}
