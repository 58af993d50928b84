//! Links made from what changes carry: a revision becomes a link to the repository's page for it
//! (the change's own `revlink`, else `c['revlink']`, else the usual forges' patterns, as
//! Buildbot's default matcher does), and ticket numbers and the like in comments become links
//! (`c['www']['changecommentlink']`).
//!
//! A page makes one [`Links`] and shows all its changes with it, so each pattern is compiled once
//! per page, not once per change.

use std::sync::LazyLock;

use kiln_config::{CommentLink, Data, MasterConfig, Revlink};
use regex::{Captures, Regex};

use super::templates::escape_html;

/// The forges whose repository URLs make revision links when the configuration gives none.
const DEFAULT_MATCHERS: &[(&str, &str)] = &[
    (
        r"^(?:https?://|git://|ssh://git@)github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$",
        r"https://github.com/\1/\2/commit/%s",
    ),
    (
        r"^git@github\.com:([^/]+)/([^/]+?)(?:\.git)?$",
        r"https://github.com/\1/\2/commit/%s",
    ),
    (
        r"^(?:https?://|ssh://git@)gitlab\.com/(.+?)(?:\.git)?/?$",
        r"https://gitlab.com/\1/-/commit/%s",
    ),
    (
        r"^git@gitlab\.com:(.+?)(?:\.git)?$",
        r"https://gitlab.com/\1/-/commit/%s",
    ),
];

/// The default matchers, compiled once.
static DEFAULTS: LazyLock<Vec<(Regex, String)>> = LazyLock::new(|| {
    DEFAULT_MATCHERS
        .iter()
        .filter_map(|(p, t)| Regex::new(p).ok().map(|r| (r, (*t).to_string())))
        .collect()
});

/// Python's group references in a template: `\g<N>` or `\N`.
static REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\g<(\d+)>|\\(\d)").expect("a valid pattern"));

/// How one page makes its links: the configuration's patterns, compiled.
pub struct Links<'a> {
    config: &'a MasterConfig,
    /// `util.RevlinkMatch`'s patterns with its template; a configuration that does not parse was
    /// refused when it was loaded, so a pattern that fails here is left out.
    revlink_match: Vec<(Regex, String)>,
    comment_link: Option<(Regex, &'a CommentLink)>,
}

impl<'a> Links<'a> {
    pub fn new(config: &'a MasterConfig) -> Links<'a> {
        let revlink_match = match &config.revlink {
            Some(Revlink::Match {
                repo_urls,
                template,
            }) => repo_urls
                .iter()
                .filter_map(|p| Regex::new(p).ok().map(|r| (r, template.clone())))
                .collect(),
            _ => Vec::new(),
        };
        let comment_link = config
            .www
            .change_comment_link
            .as_ref()
            .and_then(|l| Regex::new(&l.pattern).ok().map(|r| (r, l)));
        Links {
            config,
            revlink_match,
            comment_link,
        }
    }

    /// The link of `revision` in `repository`: the change's own when it has one.
    pub fn revlink(
        &self,
        repository: &str,
        revision: Option<&str>,
        own: Option<&str>,
    ) -> Option<String> {
        if let Some(own) = own.filter(|o| !o.is_empty()) {
            return Some(own.to_string());
        }
        let revision = revision.filter(|r| !r.is_empty())?;
        let matchers = match &self.config.revlink {
            Some(Revlink::Function(f)) => {
                let args = [
                    Data::Str(revision.to_string()),
                    Data::Str(repository.to_string()),
                ];
                return match self.config.functions.call(*f, &args, &[]) {
                    Ok(Data::Str(url)) if !url.is_empty() => Some(url),
                    _ => None,
                };
            }
            Some(Revlink::Match { .. }) => &self.revlink_match,
            None => &*DEFAULTS,
        };
        matchers.iter().find_map(|(pattern, template)| {
            let caps = pattern.captures(repository)?;
            Some(groups(template, &caps).replace("%s", revision))
        })
    }

    /// A change's comments as HTML: escaped, with what `changecommentlink` names made links.
    pub fn comments_html(&self, text: &str) -> String {
        match &self.comment_link {
            Some((pattern, link)) => linked(pattern, link, text),
            None => escape_html(text),
        }
    }

    /// A change as the pages show it: its API shape, its revision's link, and its comments as
    /// HTML.
    pub fn change(&self, c: &kiln_db::ChangeRow) -> serde_json::Value {
        let mut v = kiln_api::shapes::change(c, serde_json::Value::Null);
        let revlink = self.revlink(&c.repository, c.revision.as_deref(), c.revlink.as_deref());
        v["revlink"] = serde_json::json!(revlink);
        v["comments_html"] = serde_json::json!(self.comments_html(&c.comments));
        v
    }
}

/// Python's group references (`\1`, `\g<1>`, `\g<0>`) in `template`, replaced by `caps`.
fn groups(template: &str, caps: &Captures) -> String {
    REFERENCE
        .replace_all(template, |r: &Captures| {
            let n: usize = r
                .get(1)
                .or_else(|| r.get(2))
                .and_then(|m| m.as_str().parse().ok())
                .unwrap_or(0);
            caps.get(n).map_or("", |m| m.as_str()).to_string()
        })
        .into_owned()
}

/// `text` escaped, with each match of `pattern` a link as `link` says.
fn linked(pattern: &Regex, link: &CommentLink, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in pattern.captures_iter(text) {
        let Some(whole) = caps.get(0) else { continue };
        out.push_str(&escape_html(&text[last..whole.start()]));
        let url = groups(&link.url, &caps);
        let title = groups(&link.title, &caps);
        // Only links to the web: a pattern must not make a `javascript:` link from a comment.
        if url.starts_with("http://") || url.starts_with("https://") || url.starts_with('/') {
            out.push_str(&format!(
                "<a href=\"{}\" title=\"{}\">{}</a>",
                escape_html(&url),
                escape_html(&title),
                escape_html(whole.as_str())
            ));
        } else {
            out.push_str(&escape_html(whole.as_str()));
        }
        last = whole.end();
    }
    out.push_str(&escape_html(&text[last..]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> MasterConfig {
        let source = format!("BuildmasterConfig = {{}}\nc = BuildmasterConfig\n{extra}\n");
        kiln_config::load_str("master.star", &source).expect("a valid configuration")
    }

    #[test]
    fn forge_repositories_make_revision_links() {
        let config = config("");
        let links = Links::new(&config);
        let link = |repo: &str| links.revlink(repo, Some("abc"), None);
        assert_eq!(
            link("https://github.com/o/r.git").as_deref(),
            Some("https://github.com/o/r/commit/abc")
        );
        assert_eq!(
            link("git@github.com:o/r.git").as_deref(),
            Some("https://github.com/o/r/commit/abc")
        );
        assert_eq!(
            link("https://gitlab.com/g/sub/r.git").as_deref(),
            Some("https://gitlab.com/g/sub/r/-/commit/abc")
        );
        assert_eq!(link("/srv/repo"), None);
        assert_eq!(
            Links::new(&config)
                .revlink("/srv/repo", Some("abc"), Some("http://own"))
                .as_deref(),
            Some("http://own")
        );
        assert_eq!(
            Links::new(&config).revlink("https://github.com/o/r", None, None),
            None
        );
    }

    #[test]
    fn revlink_match_expands_groups_and_the_revision() {
        let config = config(
            r"c['revlink'] = util.RevlinkMatch([r'^https://hg\.example\.org/(.*)$'], r'https://hg.example.org/\1/rev/%s')",
        );
        assert_eq!(
            Links::new(&config)
                .revlink("https://hg.example.org/proj", Some("42"), None)
                .as_deref(),
            Some("https://hg.example.org/proj/rev/42")
        );
        // Configured, the forges' defaults no longer apply.
        assert_eq!(
            Links::new(&config).revlink("https://github.com/o/r", Some("42"), None),
            None
        );
    }

    #[test]
    fn comment_links_are_made_and_everything_else_escaped() {
        let link = CommentLink {
            pattern: r"#(\d+)".into(),
            url: r"https://bugs.example.org/\1".into(),
            title: r"Ticket \g<0>".into(),
        };
        assert_eq!(
            linked(
                &Regex::new(&link.pattern).unwrap(),
                &link,
                "fixes #12 <b>&</b>"
            ),
            "fixes <a href=\"https://bugs.example.org/12\" title=\"Ticket #12\">#12</a> &lt;b&gt;&amp;&lt;/b&gt;"
        );
        assert_eq!(Links::new(&config("")).comments_html("<i>"), "&lt;i&gt;");
        let sneaky = CommentLink {
            pattern: r"run:(\S+)".into(),
            url: r"javascript:\1".into(),
            title: "x".into(),
        };
        assert_eq!(
            linked(
                &Regex::new(&sneaky.pattern).unwrap(),
                &sneaky,
                "run:alert(1)"
            ),
            "run:alert(1)"
        );
    }
}

#[cfg(test)]
mod function_tests {
    use super::*;

    #[test]
    fn a_revlink_function_is_called_with_the_revision_and_repository() {
        let source = "BuildmasterConfig = {}\nc = BuildmasterConfig\n\
                      def link(rev, repo):\n    return repo + '/r/' + rev if repo.startswith('https://') else None\n\
                      c['revlink'] = link\n";
        let config = kiln_config::load_str("master.star", source).expect("a valid configuration");
        assert_eq!(
            Links::new(&config)
                .revlink("https://x", Some("7"), None)
                .as_deref(),
            Some("https://x/r/7")
        );
        assert_eq!(Links::new(&config).revlink("/local", Some("7"), None), None);
    }
}
