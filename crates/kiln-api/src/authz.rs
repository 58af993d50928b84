//! What a user may do: the configuration's `util.Authz` applied to one request, as Buildbot
//! applies it.
//!
//! The user's roles come from the role matchers; the allow rules are tried in order, and the
//! first that concerns the request and names one of the user's roles allows it, while one that
//! concerns it and names none denies it (unless `defaultDeny=False`, then the next is tried). A
//! request no rule denies is allowed. The old WebStatus form (`forceBuild='auth'`, …) is checked
//! as well when the configuration uses it; there, an action it does not name is nobody's.
//! Everything here is pure: the caller says who asks and what the request concerns.

use kiln_config::{Action, AllowRule, Authz, Endpoint, Permission, RoleMatcher, StringsMatcher};
use kiln_core::changefilter::FnRef;

/// Who a logged-in user is, as their login said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub groups: Vec<String>,
    /// Roles given outright, whatever the role matchers say: an API token's.
    pub roles: Vec<String>,
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Reading: a page, the REST API, a live stream.
    Read,
    Force,
    /// Stopping a build.
    Stop,
    /// Stopping every running build at once (the old "stop all builds").
    StopAll,
    /// Cancelling the pending requests built from a change (the old "stop change").
    CancelChange,
    /// Cancelling a build request.
    Cancel,
    Rebuild,
    /// Enabling or disabling a scheduler.
    EnableScheduler,
    /// Pinging a worker.
    PingWorker,
    /// Pausing or unpausing a worker.
    PauseWorker,
    /// Stopping or killing a worker.
    StopWorker,
    /// Shutting the master down.
    Shutdown,
    /// Reading the users table.
    ShowUsers,
    /// Any other change (a request's priority, a try job, a change sent in).
    OtherControl,
}

/// A request as the rules see it: what it does, and the builders, branch, project and owner of
/// what it concerns, where it has them.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub verb: Verb,
    pub builders: &'a [&'a str],
    pub branch: Option<&'a str>,
    pub project: Option<&'a str>,
    /// Who started the build or request concerned (its `owner` property).
    pub owner: Option<&'a str>,
}

impl<'a> Request<'a> {
    /// A request about nothing in particular.
    pub fn plain(verb: Verb) -> Request<'a> {
        Request {
            verb,
            builders: &[],
            branch: None,
            project: None,
            owner: None,
        }
    }
}

/// Why a request was refused, for the answer's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied(pub String);

/// Calls a configuration function of the old form with the user's name; `Err` if it failed.
pub type CallPermission<'c> = &'c dyn Fn(FnRef, Option<&str>) -> Result<bool, String>;

/// Whether `user` (`None` when anonymous) may make `request`.
pub fn check(
    authz: &Authz,
    user: Option<&UserInfo>,
    request: &Request,
    call: CallPermission,
) -> Result<(), Denied> {
    check_actions(authz, user, request, call)?;
    let mut roles = roles_of(authz, user);
    if let (Some(user), Some(owner)) = (user, request.owner) {
        roles.extend(owner_roles(authz, user, owner));
    }
    for rule in &authz.allow_rules {
        if !concerns(authz, rule, request) {
            continue;
        }
        if roles.iter().any(|r| same(authz.strings, r, &rule.role)) {
            return Ok(());
        }
        if rule.default_deny {
            return Err(Denied(format!("you need to have role '{}'", rule.role)));
        }
    }
    Ok(())
}

/// The roles the role matchers give `user`, but the owner's, which depend on the request.
pub fn roles_of(authz: &Authz, user: Option<&UserInfo>) -> Vec<String> {
    let Some(user) = user else {
        return Vec::new();
    };
    let email = user.email.as_deref().unwrap_or("");
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let mut roles = user.roles.clone();
    for matcher in &authz.role_matchers {
        match matcher {
            RoleMatcher::Groups { prefix } => roles.extend(
                user.groups
                    .iter()
                    .filter_map(|g| g.strip_prefix(prefix.as_str()))
                    .map(str::to_string),
            ),
            RoleMatcher::Emails(by_role) => roles.extend(
                by_role
                    .iter()
                    .filter(|(_, emails)| !email.is_empty() && emails.iter().any(|e| e == email))
                    .map(|(role, _)| role.clone()),
            ),
            RoleMatcher::Domain(by_role) => roles.extend(
                by_role
                    .iter()
                    .filter(|(_, domains)| {
                        !domain.is_empty() && domains.iter().any(|d| d == domain)
                    })
                    .map(|(role, _)| role.clone()),
            ),
            RoleMatcher::Username {
                roles: r,
                usernames,
            } => {
                if usernames.contains(&user.username) {
                    roles.extend(r.iter().cloned());
                }
            }
            RoleMatcher::Owner { .. } => {}
        }
    }
    roles
}

/// The owner roles `user` has on something `owner` started: when the owner is their email (or,
/// with no email, their name).
fn owner_roles(authz: &Authz, user: &UserInfo, owner: &str) -> Vec<String> {
    let is_owner = user.email.as_deref() == Some(owner) || user.username == owner;
    authz
        .role_matchers
        .iter()
        .filter_map(|m| match m {
            RoleMatcher::Owner { role } if is_owner => Some(role.clone()),
            _ => None,
        })
        .collect()
}

/// Whether `rule`'s endpoint matcher concerns `request`.
fn concerns(authz: &Authz, rule: &AllowRule, request: &Request) -> bool {
    let builder_ok = |pattern: &Option<String>| match pattern {
        None => true,
        Some(p) => request.builders.iter().any(|b| same(authz.strings, b, p)),
    };
    let field_ok = |pattern: &Option<String>, value: Option<&str>| match (pattern, value) {
        (None, _) => true,
        (Some(p), Some(v)) => same(authz.strings, v, p),
        (Some(_), None) => false,
    };
    match &rule.endpoint {
        Endpoint::Any => true,
        Endpoint::AnyControl => request.verb != Verb::Read && request.verb != Verb::ShowUsers,
        Endpoint::ForceBuild { builder } => request.verb == Verb::Force && builder_ok(builder),
        Endpoint::StopBuild { builder } => {
            matches!(
                request.verb,
                Verb::Stop | Verb::Cancel | Verb::StopAll | Verb::CancelChange
            ) && builder_ok(builder)
        }
        Endpoint::RebuildBuild { builder } => request.verb == Verb::Rebuild && builder_ok(builder),
        Endpoint::EnableScheduler => request.verb == Verb::EnableScheduler,
        Endpoint::ViewBuilds {
            branch,
            project,
            builder,
        } => {
            request.verb == Verb::Read
                && (builder.is_none() || builder_ok(builder))
                && field_ok(branch, request.branch)
                && field_ok(project, request.project)
        }
        // A branch's rule is about what is done to its builds, not about reading them.
        Endpoint::Branch { branch } => {
            request.verb != Verb::Read
                && request
                    .branch
                    .is_some_and(|b| same(authz.strings, b, branch))
        }
    }
}

/// Whether `value` matches `pattern` the way the configuration asked: a shell pattern, or a
/// regular expression that must match at the start (Python's `re.match`).
fn same(how: StringsMatcher, value: &str, pattern: &str) -> bool {
    match how {
        StringsMatcher::Fnmatch => glob::Pattern::new(pattern)
            .map(|p| p.matches(value))
            .unwrap_or(pattern == value),
        StringsMatcher::Regex => regex::Regex::new(&format!("^(?:{pattern})"))
            .map(|re| re.is_match(value))
            .unwrap_or(false),
    }
}

/// The old form's verdict, when the configuration uses it.
fn check_actions(
    authz: &Authz,
    user: Option<&UserInfo>,
    request: &Request,
    call: CallPermission,
) -> Result<(), Denied> {
    if authz.actions.is_empty() {
        return Ok(());
    }
    let Some(action) = old_action(request) else {
        return Ok(());
    };
    let name = user.map(|u| u.username.as_str());
    let allowed = match authz.actions.iter().find(|(a, _)| *a == action) {
        None | Some((_, Permission::Nobody)) => false,
        Some((_, Permission::Everybody)) => true,
        Some((_, Permission::LoggedIn)) => user.is_some(),
        Some((_, Permission::Function(f))) => call(*f, name)
            .map_err(|e| Denied(format!("{} could not decide: {e}", action.keyword())))?,
    };
    if allowed {
        Ok(())
    } else if user.is_none()
        && authz
            .actions
            .iter()
            .any(|(a, p)| *a == action && *p == Permission::LoggedIn)
    {
        Err(Denied(format!("{} needs you to log in", action.keyword())))
    } else {
        Err(Denied(format!(
            "{} is not allowed to you",
            action.keyword()
        )))
    }
}

/// The old form's action for a request, if it has one. Forcing several builders at once is the
/// old "force all builds".
fn old_action(request: &Request) -> Option<Action> {
    Some(match request.verb {
        Verb::Force if request.builders.len() > 1 => Action::ForceAllBuilds,
        Verb::Force | Verb::Rebuild => Action::ForceBuild,
        Verb::Stop => Action::StopBuild,
        Verb::StopAll => Action::StopAllBuilds,
        Verb::CancelChange => Action::StopChange,
        Verb::Cancel => Action::CancelPendingBuild,
        Verb::PingWorker => Action::PingBuilder,
        Verb::PauseWorker => Action::PauseWorker,
        Verb::StopWorker => Action::GracefulShutdown,
        Verb::Shutdown => Action::CleanShutdown,
        Verb::ShowUsers => Action::ShowUsersPage,
        Verb::Read | Verb::EnableScheduler | Verb::OtherControl => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, email: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: name.into(),
            email: Some(email.into()),
            full_name: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            roles: Vec::new(),
        }
    }

    fn rule(endpoint: Endpoint, role: &str, default_deny: bool) -> AllowRule {
        AllowRule {
            endpoint,
            role: role.into(),
            default_deny,
        }
    }

    fn no_functions(_: FnRef, _: Option<&str>) -> Result<bool, String> {
        Err("no functions here".into())
    }

    fn on<'a>(verb: Verb, builders: &'a [&'a str]) -> Request<'a> {
        Request {
            builders,
            ..Request::plain(verb)
        }
    }

    #[test]
    fn each_role_matcher_gives_its_roles() {
        let authz = Authz {
            role_matchers: vec![
                RoleMatcher::Groups {
                    prefix: "bb-".into(),
                },
                RoleMatcher::Emails(vec![("admins".into(), vec!["ann@x.org".into()])]),
                RoleMatcher::Domain(vec![("insiders".into(), vec!["x.org".into()])]),
                RoleMatcher::Username {
                    roles: vec!["release".into()],
                    usernames: vec!["ann".into()],
                },
            ],
            ..Authz::default()
        };
        let ann = user("ann", "ann@x.org", &["bb-devs", "other"]);
        assert_eq!(
            roles_of(&authz, Some(&ann)),
            ["devs", "admins", "insiders", "release"]
        );
        let eve = user("eve", "eve@y.org", &["other"]);
        assert!(roles_of(&authz, Some(&eve)).is_empty());
        assert!(roles_of(&authz, None).is_empty());
        // A token's roles come first, and the matchers add theirs.
        let script = UserInfo {
            roles: vec!["deployers".into()],
            ..user("ann", "", &[])
        };
        assert_eq!(roles_of(&authz, Some(&script)), ["deployers", "release"]);
    }

    #[test]
    fn the_first_rule_that_concerns_a_request_decides_it() {
        let authz = Authz {
            allow_rules: vec![
                rule(
                    Endpoint::ForceBuild {
                        builder: Some("rel-*".into()),
                    },
                    "release",
                    true,
                ),
                rule(Endpoint::AnyControl, "admins", true),
            ],
            role_matchers: vec![RoleMatcher::Groups {
                prefix: String::new(),
            }],
            ..Authz::default()
        };
        let admin = user("a", "a@x", &["admins"]);
        let releaser = user("r", "r@x", &["release"]);
        let force_rel = on(Verb::Force, &["rel-1"]);
        let force_dev = on(Verb::Force, &["dev"]);
        // The release rule concerns forcing rel-1 and denies anyone without its role, admins too.
        assert!(check(&authz, Some(&releaser), &force_rel, &no_functions).is_ok());
        assert_eq!(
            check(&authz, Some(&admin), &force_rel, &no_functions),
            Err(Denied("you need to have role 'release'".into()))
        );
        // Forcing dev is only the catch-all's business.
        assert!(check(&authz, Some(&admin), &force_dev, &no_functions).is_ok());
        assert!(check(&authz, Some(&releaser), &force_dev, &no_functions).is_err());
        assert!(check(&authz, None, &force_dev, &no_functions).is_err());
        // Reading is no control: nothing concerns it, so everyone may.
        assert!(check(&authz, None, &Request::plain(Verb::Read), &no_functions).is_ok());
    }

    #[test]
    fn a_rule_without_default_deny_lets_the_next_decide() {
        let authz = Authz {
            allow_rules: vec![
                rule(Endpoint::StopBuild { builder: None }, "owner", false),
                rule(Endpoint::AnyControl, "admins", true),
            ],
            role_matchers: vec![
                RoleMatcher::Owner {
                    role: "owner".into(),
                },
                RoleMatcher::Groups {
                    prefix: String::new(),
                },
            ],
            ..Authz::default()
        };
        let ann = user("ann", "ann@x", &[]);
        let admin = user("root", "root@x", &["admins"]);
        let stop_anns = Request {
            owner: Some("ann@x"),
            ..on(Verb::Stop, &["b"])
        };
        let stop_others = Request {
            owner: Some("bob@x"),
            ..on(Verb::Stop, &["b"])
        };
        assert!(check(&authz, Some(&ann), &stop_anns, &no_functions).is_ok());
        assert!(check(&authz, Some(&ann), &stop_others, &no_functions).is_err());
        assert!(check(&authz, Some(&admin), &stop_others, &no_functions).is_ok());
        // Cancelling a request is stopping it, as Buildbot's matcher has it.
        let cancel = Request {
            owner: Some("ann@x"),
            ..on(Verb::Cancel, &["b"])
        };
        assert!(check(&authz, Some(&ann), &cancel, &no_functions).is_ok());
    }

    #[test]
    fn every_endpoint_matcher_concerns_its_own_requests() {
        let cases: Vec<(Endpoint, Request, bool)> = vec![
            (Endpoint::Any, Request::plain(Verb::Read), true),
            (Endpoint::AnyControl, Request::plain(Verb::Read), false),
            (Endpoint::AnyControl, Request::plain(Verb::Shutdown), true),
            (
                Endpoint::ForceBuild { builder: None },
                Request::plain(Verb::Force),
                true,
            ),
            (
                Endpoint::ForceBuild { builder: None },
                Request::plain(Verb::Rebuild),
                false,
            ),
            (
                Endpoint::StopBuild {
                    builder: Some("a*".into()),
                },
                on(Verb::Stop, &["ab"]),
                true,
            ),
            (
                Endpoint::StopBuild {
                    builder: Some("a*".into()),
                },
                on(Verb::Stop, &["b"]),
                false,
            ),
            (
                Endpoint::RebuildBuild { builder: None },
                Request::plain(Verb::Rebuild),
                true,
            ),
            (
                Endpoint::EnableScheduler,
                Request::plain(Verb::EnableScheduler),
                true,
            ),
            (
                Endpoint::EnableScheduler,
                Request::plain(Verb::Force),
                false,
            ),
            (
                Endpoint::ViewBuilds {
                    branch: Some("main".into()),
                    project: None,
                    builder: None,
                },
                Request {
                    branch: Some("main"),
                    ..Request::plain(Verb::Read)
                },
                true,
            ),
            (
                Endpoint::ViewBuilds {
                    branch: Some("main".into()),
                    project: None,
                    builder: None,
                },
                Request {
                    branch: Some("dev"),
                    ..Request::plain(Verb::Read)
                },
                false,
            ),
            (
                Endpoint::ViewBuilds {
                    branch: None,
                    project: Some("p".into()),
                    builder: None,
                },
                Request::plain(Verb::Read),
                false,
            ),
            (
                Endpoint::Branch {
                    branch: "rel/*".into(),
                },
                Request {
                    branch: Some("rel/1"),
                    ..Request::plain(Verb::Stop)
                },
                true,
            ),
            (
                Endpoint::Branch {
                    branch: "rel/*".into(),
                },
                Request::plain(Verb::Stop),
                false,
            ),
            // Stopping all builds and cancelling a change's requests are stops too.
            (
                Endpoint::StopBuild { builder: None },
                Request::plain(Verb::StopAll),
                true,
            ),
            (
                Endpoint::StopBuild { builder: None },
                Request::plain(Verb::CancelChange),
                true,
            ),
            // A branch's rule is about controls, not about reading the branch's builds.
            (
                Endpoint::Branch {
                    branch: "rel/*".into(),
                },
                Request {
                    branch: Some("rel/1"),
                    ..Request::plain(Verb::Read)
                },
                false,
            ),
        ];
        for (endpoint, request, expected) in cases {
            let authz = Authz {
                allow_rules: vec![rule(endpoint.clone(), "nobody-has-this", true)],
                ..Authz::default()
            };
            let denied = check(&authz, None, &request, &no_functions).is_err();
            assert_eq!(denied, expected, "{endpoint:?} on {request:?}");
        }
    }

    #[test]
    fn patterns_are_shell_patterns_or_anchored_regular_expressions() {
        assert!(same(StringsMatcher::Fnmatch, "release-1", "release-*"));
        assert!(!same(StringsMatcher::Fnmatch, "prerelease-1", "release-*"));
        assert!(same(StringsMatcher::Regex, "release-1", "rel"));
        assert!(!same(StringsMatcher::Regex, "prerelease", "rel"));
    }

    #[test]
    fn the_old_form_names_who_may_do_each_action() {
        let authz = Authz {
            actions: vec![
                (Action::ForceBuild, Permission::LoggedIn),
                (Action::StopBuild, Permission::Everybody),
                (Action::CleanShutdown, Permission::Function(FnRef(3))),
            ],
            ..Authz::default()
        };
        let ann = user("ann", "ann@x", &[]);
        let only_ann = |f: FnRef, who: Option<&str>| {
            assert_eq!(f, FnRef(3));
            Ok(who == Some("ann"))
        };
        let force = Request::plain(Verb::Force);
        assert_eq!(
            check(&authz, None, &force, &only_ann),
            Err(Denied("forceBuild needs you to log in".into()))
        );
        assert!(check(&authz, Some(&ann), &force, &only_ann).is_ok());
        assert!(check(&authz, None, &Request::plain(Verb::Stop), &only_ann).is_ok());
        let shutdown = Request::plain(Verb::Shutdown);
        assert!(check(&authz, Some(&ann), &shutdown, &only_ann).is_ok());
        assert!(check(&authz, Some(&user("bob", "b@x", &[])), &shutdown, &only_ann).is_err());
        // An action the old form does not name is nobody's; reading is not one of its actions.
        assert!(
            check(
                &authz,
                Some(&ann),
                &Request::plain(Verb::PauseWorker),
                &only_ann
            )
            .is_err()
        );
        assert!(check(&authz, None, &Request::plain(Verb::Read), &only_ann).is_ok());
        // Forcing several builders at once is forceAllBuilds, which this form does not name.
        let several = Request {
            builders: &["a", "b"],
            ..Request::plain(Verb::Force)
        };
        assert_eq!(
            check(&authz, Some(&ann), &several, &only_ann),
            Err(Denied("forceAllBuilds is not allowed to you".into()))
        );
        // showUsersPage guards the users table.
        assert!(
            check(
                &authz,
                Some(&ann),
                &Request::plain(Verb::ShowUsers),
                &only_ann
            )
            .is_err()
        );
        // A function that fails denies, and says so.
        let failing = |_: FnRef, _: Option<&str>| Err("boom".to_string());
        assert_eq!(
            check(&authz, Some(&ann), &shutdown, &failing),
            Err(Denied("cleanShutdown could not decide: boom".into()))
        );
    }
}
