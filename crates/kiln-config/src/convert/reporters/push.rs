//! The pushes to forges and chats (`GitHubStatusPush`, …, `WebhookPush`): each service's keywords
//! and the generators Buildbot gives it by default.

use super::*;

/// The text chat reporters send by default: one line with the news and the build's page.
const CHAT_TEMPLATE: &str = "{{ buildername }} #{{ build.number }}: {{ status_detected }} ({{ build.state_string }}) {{ build_url }}";

/// A status push to a forge or a chat, with its service's keywords.
pub(super) fn push(
    cx: &mut Cx,
    loc: &Location,
    r: &Node,
    service: PushService,
) -> Option<(PushConfig, Vec<GeneratorConfig>)> {
    let class = service.class();
    let text = |cx: &mut Cx, key: &str| cx.opt_string(r.field(key), key, loc);
    let renderable =
        |cx: &mut Cx, key: &str| given_node(r.field(key)).map(|n| cx.renderable(n, key, loc));
    let required = |cx: &mut Cx, key: &str, what: &str| {
        let v = text(cx, key);
        if v.is_none() {
            cx.error(loc, format!("{class} needs {key}, {what}"));
        }
        v
    };
    let build_context = |name: &str| Renderable::Interpolate {
        format: format!("{name}%(prop:buildername)s"),
        kwargs: Vec::new(),
    };
    let mut p = PushConfig {
        service,
        base_url: String::new(),
        token: None,
        auth: None,
        oauth: None,
        context: build_context("buildbot/"),
        status_name: None,
        target: None,
        username: None,
        headers: Vec::new(),
        verify: verify(cx, loc, r, class),
        warning_as_success: cx.boolean(r.field("warningAsSuccess"), false, "warningAsSuccess", loc),
        debug: cx.boolean(r.field("debug"), false, "debug", loc)
            || cx.boolean(r.field("verbose"), false, "verbose", loc),
    };
    let pair = |cx: &mut Cx, key: &str| match given_node(r.field(key)) {
        None => None,
        Some(Node::List(pair)) if pair.len() == 2 => Some((
            cx.renderable(&pair[0], key, loc),
            cx.renderable(&pair[1], key, loc),
        )),
        Some(other) => {
            cx.error(
                loc,
                format!(
                    "{class}: {key} must be a (user, password) pair, not {}",
                    other.describe()
                ),
            );
            None
        }
    };
    let token_required = |cx: &mut Cx| {
        let t = renderable(cx, "token");
        if t.is_none() {
            cx.error(loc, format!("{class} needs token"));
        }
        t
    };
    use PushService::*;
    match service {
        GitHub | GitHubComment => {
            p.base_url = text(cx, "baseURL").unwrap_or_else(|| "https://api.github.com".into());
            p.token = token_required(cx);
        }
        GitLab => {
            p.base_url = text(cx, "baseURL").unwrap_or_else(|| "https://gitlab.com".into());
            p.token = token_required(cx);
        }
        Gitea => {
            p.base_url = required(cx, "baseURL", "the Gitea server's URL")?;
            p.token = token_required(cx);
        }
        Bitbucket => {
            p.base_url = text(cx, "base_url")
                .unwrap_or_else(|| "https://api.bitbucket.org/2.0/repositories".into());
            p.auth = pair(cx, "auth");
            let key = renderable(cx, "oauth_key");
            let secret = renderable(cx, "oauth_secret");
            let url = text(cx, "oauth_url")
                .unwrap_or_else(|| "https://bitbucket.org/site/oauth2/access_token".into());
            match (key, secret, &p.auth) {
                (Some(k), Some(s), None) => p.oauth = Some((k, s, url)),
                (None, None, Some(_)) => {}
                _ => cx.error(
                    loc,
                    "BitbucketStatusPush needs either auth=(user, app password) or oauth_key and oauth_secret",
                ),
            }
            p.context = renderable(cx, "status_key").unwrap_or_else(|| build_context(""));
            p.status_name =
                Some(renderable(cx, "status_name").unwrap_or_else(|| build_context("")));
        }
        BitbucketServer | BitbucketServerPRComment => {
            p.base_url = required(cx, "base_url", "the Bitbucket Server's URL")?;
            let user = renderable(cx, "user");
            let password = renderable(cx, "password");
            match (user, password) {
                (Some(u), Some(pw)) => p.auth = Some((u, pw)),
                _ => cx.error(loc, format!("{class} needs user and password")),
            }
            p.context = renderable(cx, "key").unwrap_or_else(|| build_context(""));
            p.status_name = renderable(cx, "statusName");
        }
        Zulip => {
            p.base_url = required(cx, "endpoint", "the Zulip server's URL")?;
            p.token = token_required(cx);
            p.target = text(cx, "stream");
        }
        Matrix => {
            p.base_url = required(cx, "homeserver", "the Matrix homeserver's URL")?;
            p.token = token_required(cx);
            p.target = Some(required(cx, "room", "the room's id (!id:server)")?);
        }
        Slack => {
            p.base_url = required(cx, "webhookUrl", "the incoming webhook's URL")?;
            p.target = text(cx, "channel");
            p.username = text(cx, "username");
        }
        Webhook => {
            p.base_url = required(cx, "url", "where to post")?;
            p.auth = pair(cx, "auth");
            p.headers = headers(cx, loc, r.field("headers"), "headers");
        }
    }
    if let Some(c) = renderable(cx, "context")
        && matches!(service, GitHub | GitHubComment | GitLab | Gitea)
    {
        p.context = c;
    }
    while p.base_url.ends_with('/') {
        p.base_url.pop();
    }
    if !(p.base_url.starts_with("http://") || p.base_url.starts_with("https://")) {
        cx.error(
            loc,
            format!(
                "{class}: {:?} is not an http:// or https:// URL",
                p.base_url
            ),
        );
    }
    Some((p, push_default_generators(service)))
}

/// Each service's generators when the configuration gives none, as Buildbot's reporters have
/// them.
pub(super) fn push_default_generators(service: PushService) -> Vec<GeneratorConfig> {
    let generator = |kind| GeneratorConfig {
        kind,
        filter: ReportFilter::default(),
        add_patch: false,
        add_logs: LogSelection::None,
    };
    let start_end = |start: FormatterConfig, end: FormatterConfig| {
        generator(GeneratorKind::BuildStartEnd { start, end })
    };
    let status = |formatter| {
        generator(GeneratorKind::BuildStatus {
            mode: Mode::default_set(),
            report_new: false,
            formatter,
        })
    };
    use PushService::*;
    match service {
        GitHub | GitLab | Gitea => vec![
            generator(GeneratorKind::BuildRequest {
                formatter: FormatterConfig::text("Build pending."),
            }),
            start_end(
                FormatterConfig::text("Build started."),
                FormatterConfig::text("Build done."),
            ),
        ],
        GitHubComment => vec![start_end(
            FormatterConfig::Empty,
            FormatterConfig::text("Build done."),
        )],
        Bitbucket => vec![start_end(
            FormatterConfig::text(""),
            FormatterConfig::text(""),
        )],
        BitbucketServer | Zulip => vec![start_end(
            FormatterConfig::text("Build started."),
            FormatterConfig::text("Build done."),
        )],
        BitbucketServerPRComment => {
            vec![status(FormatterConfig::default_template(
                TemplateType::Plain,
            ))]
        }
        Matrix | Slack => vec![status(FormatterConfig::Template {
            template: Some(CHAT_TEMPLATE.into()),
            subject: None,
            template_type: TemplateType::Plain,
            want_properties: true,
            want_steps: false,
            want_logs: false,
            want_logs_content: LogSelection::None,
            ctx: Vec::new(),
        })],
        Webhook => vec![generator(GeneratorKind::BuildStatus {
            mode: Mode::default_set(),
            report_new: true,
            formatter: FormatterConfig::default_template(TemplateType::Plain),
        })],
    }
}
