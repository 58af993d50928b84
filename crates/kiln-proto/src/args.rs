//! Reading the argument map of a remote command.

use rmpv::Value;

/// The `args` map of a `start_command`, with typed getters that say which argument was wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    command: String,
    entries: Vec<(Value, Value)>,
}

/// A command argument that is missing or of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command}: argument \"{name}\" {problem}")]
pub struct ArgError {
    pub command: String,
    pub name: String,
    pub problem: String,
}

impl Args {
    /// Wraps the `args` value of command `command`. Anything but a map (or nil) is an error.
    pub fn new(command: &str, value: Value) -> Result<Args, ArgError> {
        let entries = match value {
            Value::Map(entries) => entries,
            Value::Nil => Vec::new(),
            _ => {
                return Err(ArgError {
                    command: command.to_string(),
                    name: "args".into(),
                    problem: "is not a map".into(),
                });
            }
        };
        Ok(Args {
            command: command.to_string(),
            entries,
        })
    }

    /// Builds an argument map from pairs, for the sending side.
    pub fn build(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    }

    fn error(&self, name: &str, problem: &str) -> ArgError {
        ArgError {
            command: self.command.clone(),
            name: name.to_string(),
            problem: problem.to_string(),
        }
    }

    /// The raw value of `name`; a nil value counts as absent.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
            .filter(|v| !v.is_nil())
    }

    pub fn str(&self, name: &str) -> Result<String, ArgError> {
        self.opt_str(name)?
            .ok_or_else(|| self.error(name, "is missing"))
    }

    pub fn opt_str(&self, name: &str) -> Result<Option<String>, ArgError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => s
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.error(name, "is not UTF-8")),
            Some(_) => Err(self.error(name, "is not a string")),
        }
    }

    pub fn opt_f64(&self, name: &str) -> Result<Option<f64>, ArgError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .or_else(|| v.as_i64().map(|i| i as f64))
                .map(Some)
                .ok_or_else(|| self.error(name, "is not a number")),
        }
    }

    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>, ArgError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| self.error(name, "is not an integer")),
        }
    }

    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ArgError> {
        match self.get(name) {
            None => Ok(default),
            Some(Value::Boolean(b)) => Ok(*b),
            Some(v) => v
                .as_i64()
                .map(|i| i != 0)
                .ok_or_else(|| self.error(name, "is not a boolean")),
        }
    }

    /// A list of strings; a single string is taken as a one-element list.
    pub fn str_list(&self, name: &str) -> Result<Vec<String>, ArgError> {
        match self.get(name) {
            None => Err(self.error(name, "is missing")),
            Some(Value::String(s)) => Ok(vec![s.as_str().unwrap_or_default().to_string()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.error(name, "holds a non-string"))
                })
                .collect(),
            Some(_) => Err(self.error(name, "is not a list of strings")),
        }
    }

    /// A map of string keys to values.
    pub fn map(&self, name: &str) -> Result<Vec<(String, Value)>, ArgError> {
        match self.get(name) {
            None => Ok(Vec::new()),
            Some(Value::Map(entries)) => entries
                .iter()
                .map(|(k, v)| {
                    k.as_str()
                        .map(|k| (k.to_string(), v.clone()))
                        .ok_or_else(|| self.error(name, "has a non-string key"))
                })
                .collect(),
            Some(_) => Err(self.error(name, "is not a map")),
        }
    }
}
