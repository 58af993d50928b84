//! The evaluated configuration as plain data, before validation.
//!
//! Evaluation turns every Starlark value into a [`Node`], so nothing past `eval.rs` sees Starlark.

/// Where something was written: `file:line:column`, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A configuration value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Node>),
    Dict(Vec<(Node, Node)>),
    /// An object made by a vocabulary call such as `worker.Worker(…)`: its kind, where it was made,
    /// and its arguments by name.
    Object {
        kind: String,
        loc: Location,
        fields: Vec<(String, Node)>,
    },
    /// A Starlark function: its number in the configuration's [`crate::Functions`], and its name.
    Function(kiln_core::changefilter::FnRef, String),
    /// Any other value, described.
    Other(String),
}

impl Node {
    /// What the value is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Node::None => "None".into(),
            Node::Bool(_) => "a bool".into(),
            Node::Int(_) => "an int".into(),
            Node::Float(_) => "a float".into(),
            Node::Str(_) => "a string".into(),
            Node::List(_) => "a list".into(),
            Node::Dict(_) => "a dict".into(),
            Node::Object { kind, .. } => format!("a {kind}"),
            Node::Function(_, name) => format!("the function {name}"),
            Node::Other(what) => what.clone(),
        }
    }

    /// An object's argument, or a dict's value, by name.
    pub fn field(&self, name: &str) -> Option<&Node> {
        match self {
            Node::Object { fields, .. } => fields.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            Node::Dict(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Node::Str(s) if s == name))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}
