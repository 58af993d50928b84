//! A change: one commit (or a group of them) seen by a change source, as Buildbot models it.

use crate::{ChangeId, Properties};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    pub id: ChangeId,
    /// Who made the change (`who` in the oldest Buildbot vocabulary).
    pub author: String,
    pub committer: Option<String>,
    pub files: Vec<String>,
    pub comments: String,
    pub revision: Option<String>,
    /// When the change was made, in epoch seconds.
    pub when: i64,
    /// `None` is the repository's default branch.
    pub branch: Option<String>,
    pub category: Option<String>,
    pub project: String,
    pub repository: String,
    pub codebase: String,
    pub revlink: Option<String>,
    pub properties: Properties,
}

impl Change {
    /// The value of one of the attributes a change filter can test.
    pub fn attribute(&self, attr: Attribute) -> Option<&str> {
        match attr {
            Attribute::Project => Some(&self.project),
            Attribute::Repository => Some(&self.repository),
            Attribute::Branch => self.branch.as_deref(),
            Attribute::Category => self.category.as_deref(),
            Attribute::Codebase => Some(&self.codebase),
        }
    }
}

/// The attributes of a change that filters and per-branch timers look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Attribute {
    Project,
    Repository,
    Branch,
    Category,
    Codebase,
}

impl Attribute {
    pub const ALL: [Attribute; 5] = [
        Attribute::Project,
        Attribute::Repository,
        Attribute::Branch,
        Attribute::Category,
        Attribute::Codebase,
    ];

    /// The keyword Buildbot uses for it (`branch`, `branch_re`, …).
    pub fn name(self) -> &'static str {
        match self {
            Attribute::Project => "project",
            Attribute::Repository => "repository",
            Attribute::Branch => "branch",
            Attribute::Category => "category",
            Attribute::Codebase => "codebase",
        }
    }
}
