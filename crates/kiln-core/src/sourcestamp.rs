//! Source stamps: which source a build uses.

/// A patch carried by a source stamp (from `try` or the force form).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patch {
    pub level: i64,
    pub body: Vec<u8>,
    pub subdir: Option<String>,
    pub author: Option<String>,
    pub comment: Option<String>,
}

/// The source of one codebase: Buildbot's SourceStamp.
///
/// A buildset holds one source stamp per codebase; together they are the seed's "aggregate
/// SourceStamp" of a multi-repository build.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SourceStamp {
    pub codebase: String,
    pub repository: String,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub project: String,
    pub patch: Option<Patch>,
}
