//! Jelly, the object layer of Perspective Broker: Python values as Banana s-expressions.
//!
//! Only the types Buildbot's traffic uses are read and written: `None`, booleans, integers, floats,
//! byte strings, text, lists, tuples, dictionaries, references to remote objects, and Twisted's
//! `CopyableFailure`. Sets and dates are read as lists and text; any other class is refused, as the
//! stock worker refuses it.

use super::banana::Sexp;

/// The class name under which Twisted sends a failure.
pub const COPYABLE_FAILURE: &str = "twisted.spread.pb.CopyableFailure";

/// A Python value as Jelly carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum Jelly {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    List(Vec<Jelly>),
    Tuple(Vec<Jelly>),
    Dict(Vec<(Jelly, Jelly)>),
    /// An object of the sender that the receiver may call, by the sender's id.
    Remote(u64),
    /// An object of the receiver's, passed back to it.
    Local(u64),
    Failure(Failure),
}

/// A remote exception: its class, message, class hierarchy and traceback text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Failure {
    /// The qualified class name, such as `twisted.cred.error.UnauthorizedLogin`.
    pub class: String,
    pub value: String,
    /// The qualified names of the class and its bases: the stock worker decides what a failure is
    /// by looking for a name here.
    pub parents: Vec<String>,
    pub traceback: String,
}

impl Failure {
    /// A failure of `class` (with these bases) saying `value`.
    pub fn new(class: &str, bases: &[&str], value: &str) -> Failure {
        let mut parents = vec![class.to_string()];
        parents.extend(bases.iter().map(|b| b.to_string()));
        Failure {
            class: class.to_string(),
            value: value.to_string(),
            parents,
            traceback: "Traceback unavailable\n".to_string(),
        }
    }

    /// `class: value`, as a log line says it.
    pub fn describe(&self) -> String {
        if self.value.is_empty() {
            self.class.clone()
        } else {
            format!("{}: {}", self.class, self.value)
        }
    }
}

impl Jelly {
    pub fn str(text: &str) -> Jelly {
        Jelly::Str(text.to_string())
    }

    /// The text of a `str` or a UTF-8 byte string.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Jelly::Str(s) => Some(s),
            Jelly::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value under `key` of a dictionary with text keys.
    pub fn get(&self, key: &str) -> Option<&Jelly> {
        match self {
            Jelly::Dict(entries) => entries
                .iter()
                .find(|(k, _)| k.as_text() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why an s-expression is not a value kiln reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JellyError {
    #[error("expected {0}")]
    Malformed(&'static str),
    #[error("values of class {0:?} are not accepted")]
    Insecure(String),
    #[error("text is not valid UTF-8")]
    NotUtf8,
    #[error("a dereference of {0}, which names no value seen before")]
    UnknownReference(i64),
}

/// Reads one serialization (a message's arguments, keyword arguments or an answer).
pub fn unjelly(sexp: Sexp) -> Result<Jelly, JellyError> {
    Unjellier::default().read(sexp)
}

#[derive(Default)]
struct Unjellier {
    /// Values marked with `reference`, by number, for the `dereference`s that follow.
    references: Vec<(i64, Jelly)>,
}

impl Unjellier {
    fn read(&mut self, sexp: Sexp) -> Result<Jelly, JellyError> {
        let items = match sexp {
            Sexp::Int(i) => return Ok(Jelly::Int(i)),
            Sexp::Float(f) => return Ok(Jelly::Float(f)),
            Sexp::Bytes(b) => return Ok(Jelly::Bytes(b)),
            Sexp::List(items) => items,
        };
        let mut items = items.into_iter();
        let Some(Sexp::Bytes(tag)) = items.next() else {
            return Err(JellyError::Malformed("a list that starts with a type name"));
        };
        let mut rest = items;
        match tag.as_slice() {
            b"None" => Ok(Jelly::None),
            b"boolean" => match rest.next() {
                Some(Sexp::Bytes(b)) if b == b"true" => Ok(Jelly::Bool(true)),
                Some(Sexp::Bytes(b)) if b == b"false" => Ok(Jelly::Bool(false)),
                _ => Err(JellyError::Malformed("\"true\" or \"false\" after boolean")),
            },
            b"unicode" => match rest.next() {
                Some(Sexp::Bytes(b)) => String::from_utf8(b)
                    .map(Jelly::Str)
                    .map_err(|_| JellyError::NotUtf8),
                _ => Err(JellyError::Malformed("bytes after unicode")),
            },
            b"list" | b"set" | b"frozenset" => Ok(Jelly::List(self.all(rest)?)),
            b"tuple" => Ok(Jelly::Tuple(self.all(rest)?)),
            b"dictionary" => {
                let mut entries = Vec::new();
                for pair in rest {
                    let Sexp::List(kv) = pair else {
                        return Err(JellyError::Malformed("[key, value] pairs in a dictionary"));
                    };
                    let [k, v]: [Sexp; 2] = kv
                        .try_into()
                        .map_err(|_| JellyError::Malformed("[key, value] pairs in a dictionary"))?;
                    entries.push((self.read(k)?, self.read(v)?));
                }
                Ok(Jelly::Dict(entries))
            }
            b"remote" => Ok(Jelly::Remote(id(rest.next())?)),
            b"local" => Ok(Jelly::Local(id(rest.next())?)),
            b"reference" => {
                let Some(Sexp::Int(n)) = rest.next() else {
                    return Err(JellyError::Malformed("a number after reference"));
                };
                let inner = rest
                    .next()
                    .ok_or(JellyError::Malformed("a value after reference"))?;
                let value = self.read(inner)?;
                self.references.push((n, value.clone()));
                Ok(value)
            }
            b"dereference" => {
                let Some(Sexp::Int(n)) = rest.next() else {
                    return Err(JellyError::Malformed("a number after dereference"));
                };
                self.references
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| v.clone())
                    .ok_or(JellyError::UnknownReference(n))
            }
            b"datetime" | b"date" | b"time" | b"timedelta" | b"decimal" => {
                // Shown as text: nothing Buildbot sends to a master carries them.
                let parts: Vec<String> = rest
                    .map(|s| match s {
                        Sexp::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                        Sexp::Int(i) => i.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                Ok(Jelly::Str(parts.join(" ")))
            }
            b"unpersistable" => Ok(Jelly::Str(match rest.next() {
                Some(Sexp::Bytes(b)) => format!("unpersistable: {}", String::from_utf8_lossy(&b)),
                _ => "unpersistable".to_string(),
            })),
            class if class == COPYABLE_FAILURE.as_bytes() => {
                let state = rest
                    .next()
                    .ok_or(JellyError::Malformed("a state after CopyableFailure"))?;
                Ok(Jelly::Failure(failure_of(&self.read(state)?)))
            }
            other => Err(JellyError::Insecure(
                String::from_utf8_lossy(other).into_owned(),
            )),
        }
    }

    fn all(&mut self, items: impl Iterator<Item = Sexp>) -> Result<Vec<Jelly>, JellyError> {
        items.map(|s| self.read(s)).collect()
    }
}

fn id(sexp: Option<Sexp>) -> Result<u64, JellyError> {
    match sexp {
        Some(Sexp::Int(i)) if i >= 0 => Ok(i as u64),
        _ => Err(JellyError::Malformed("an object id")),
    }
}

/// The fields of a failure's state that matter; the rest (frames, counters) is Twisted's own.
fn failure_of(state: &Jelly) -> Failure {
    let text = |k: &str| {
        state
            .get(k)
            .and_then(Jelly::as_text)
            .unwrap_or_default()
            .to_string()
    };
    let parents = match state.get("parents") {
        Some(Jelly::List(p) | Jelly::Tuple(p)) => p
            .iter()
            .filter_map(|p| p.as_text().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Failure {
        class: text("type"),
        value: text("value"),
        parents,
        traceback: text("traceback"),
    }
}

/// Writes a value as Jelly.
pub fn jelly(value: &Jelly) -> Sexp {
    let tagged = |tag: &str, rest: Vec<Sexp>| {
        let mut items = Vec::with_capacity(rest.len() + 1);
        items.push(Sexp::bytes(tag));
        items.extend(rest);
        Sexp::List(items)
    };
    match value {
        Jelly::None => tagged("None", vec![]),
        Jelly::Bool(b) => tagged(
            "boolean",
            vec![Sexp::bytes(if *b { "true" } else { "false" })],
        ),
        Jelly::Int(i) => Sexp::Int(*i),
        Jelly::Float(f) => Sexp::Float(*f),
        Jelly::Bytes(b) => Sexp::Bytes(b.clone()),
        Jelly::Str(s) => tagged("unicode", vec![Sexp::bytes(s)]),
        Jelly::List(items) => tagged("list", items.iter().map(jelly).collect()),
        Jelly::Tuple(items) => tagged("tuple", items.iter().map(jelly).collect()),
        Jelly::Dict(entries) => tagged(
            "dictionary",
            entries
                .iter()
                .map(|(k, v)| Sexp::List(vec![jelly(k), jelly(v)]))
                .collect(),
        ),
        Jelly::Remote(id) => tagged("remote", vec![Sexp::Int(*id as i64)]),
        Jelly::Local(id) => tagged("local", vec![Sexp::Int(*id as i64)]),
        Jelly::Failure(f) => {
            // The fields Twisted's own master sends for a plain failure; the stock worker needs
            // `parents` to read it at all.
            let entry = |k: &str, v: Jelly| (Jelly::str(k), v);
            let state = Jelly::Dict(vec![
                entry("count", Jelly::Int(0)),
                entry("type", Jelly::Bytes(f.class.as_bytes().to_vec())),
                entry("value", Jelly::Str(f.value.clone())),
                entry("captureVars", Jelly::Bool(false)),
                entry("tb", Jelly::None),
                entry("unsafeTracebacks", Jelly::Bool(false)),
                entry(
                    "parents",
                    Jelly::List(f.parents.iter().map(|p| Jelly::Str(p.clone())).collect()),
                ),
                entry("frames", Jelly::List(vec![])),
                entry("stack", Jelly::List(vec![])),
                entry("traceback", Jelly::Str(f.traceback.clone())),
            ]);
            Sexp::List(vec![Sexp::bytes(COPYABLE_FAILURE), jelly(&state)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_a_round_trip() {
        let value = Jelly::Tuple(vec![
            Jelly::None,
            Jelly::Bool(true),
            Jelly::Int(-3),
            Jelly::Float(1.5),
            Jelly::Bytes(b"raw".to_vec()),
            Jelly::str("text é"),
            Jelly::List(vec![Jelly::Remote(3)]),
            Jelly::Dict(vec![(Jelly::str("k"), Jelly::Local(2))]),
            Jelly::Failure(Failure::new(
                "builtins.RuntimeError",
                &["builtins.Exception"],
                "boom",
            )),
        ]);
        assert_eq!(unjelly(jelly(&value)).unwrap(), value);
    }

    #[test]
    fn references_inside_one_serialization_are_resolved() {
        let frame = Sexp::List(vec![
            Sexp::bytes("list"),
            Sexp::List(vec![
                Sexp::bytes("reference"),
                Sexp::Int(1),
                Sexp::List(vec![Sexp::bytes("tuple")]),
            ]),
            Sexp::List(vec![Sexp::bytes("dereference"), Sexp::Int(1)]),
        ]);
        assert_eq!(
            unjelly(frame).unwrap(),
            Jelly::List(vec![Jelly::Tuple(vec![]), Jelly::Tuple(vec![])])
        );
        let dangling = Sexp::List(vec![Sexp::bytes("dereference"), Sexp::Int(4)]);
        assert_eq!(unjelly(dangling), Err(JellyError::UnknownReference(4)));
    }

    #[test]
    fn other_classes_are_refused() {
        let pickle = Sexp::List(vec![Sexp::bytes("os.system"), Sexp::bytes("rm")]);
        assert_eq!(
            unjelly(pickle),
            Err(JellyError::Insecure("os.system".into()))
        );
        assert!(unjelly(Sexp::List(vec![])).is_err());
        let bad_text = Sexp::List(vec![Sexp::bytes("unicode"), Sexp::Bytes(vec![0xff])]);
        assert_eq!(unjelly(bad_text), Err(JellyError::NotUtf8));
    }
}
