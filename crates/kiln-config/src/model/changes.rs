//! The change sources of `c['change_source']`: the pollers of Git, Mercurial and Subversion.

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
