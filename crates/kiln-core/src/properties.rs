//! Build properties: named values that remember where they came from.
//!
//! Buildbot layers properties: global ones from the config, then the builder's, the buildset's
//! (scheduler and force form), the changes', the worker's and finally those a build or step sets.
//! A later layer overrides an earlier one. Each value keeps its source (`"Builder"`, `"Force Build
//! Form"`, …), which the REST API shows as `[value, source]`.

use std::collections::BTreeMap;

/// A property value: the JSON data model, kept free of any serialisation library.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<PropertyValue>),
    Map(BTreeMap<String, PropertyValue>),
}

impl PropertyValue {
    /// The value as a string, the way it is substituted into a command: strings verbatim, other
    /// scalars in their usual spelling.
    pub fn render(&self) -> String {
        match self {
            PropertyValue::Null => "None".to_string(),
            PropertyValue::Bool(true) => "True".to_string(),
            PropertyValue::Bool(false) => "False".to_string(),
            PropertyValue::Int(i) => i.to_string(),
            PropertyValue::Float(f) => f.to_string(),
            PropertyValue::Str(s) => s.clone(),
            PropertyValue::List(items) => {
                let inner: Vec<String> = items.iter().map(PropertyValue::repr).collect();
                format!("[{}]", inner.join(", "))
            }
            PropertyValue::Map(map) => {
                let inner: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("'{k}': {}", v.repr()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }

    fn repr(&self) -> String {
        match self {
            PropertyValue::Str(s) => format!("'{s}'"),
            other => other.render(),
        }
    }

    /// Whether the value counts as true, as Python would judge it.
    pub fn is_truthy(&self) -> bool {
        match self {
            PropertyValue::Null => false,
            PropertyValue::Bool(b) => *b,
            PropertyValue::Int(i) => *i != 0,
            PropertyValue::Float(f) => *f != 0.0,
            PropertyValue::Str(s) => !s.is_empty(),
            PropertyValue::List(l) => !l.is_empty(),
            PropertyValue::Map(m) => !m.is_empty(),
        }
    }
}

impl From<&str> for PropertyValue {
    fn from(s: &str) -> Self {
        PropertyValue::Str(s.to_string())
    }
}

impl From<String> for PropertyValue {
    fn from(s: String) -> Self {
        PropertyValue::Str(s)
    }
}

impl From<i64> for PropertyValue {
    fn from(i: i64) -> Self {
        PropertyValue::Int(i)
    }
}

impl From<bool> for PropertyValue {
    fn from(b: bool) -> Self {
        PropertyValue::Bool(b)
    }
}

/// One property: its value and the name of its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub value: PropertyValue,
    pub source: String,
}

/// A set of properties, ordered by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    map: BTreeMap<String, Property>,
}

impl Properties {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name`, replacing any earlier value and source.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<PropertyValue>, source: &str) {
        self.map.insert(
            name.into(),
            Property {
                value: value.into(),
                source: source.to_string(),
            },
        );
    }

    /// Lays `other` over `self`: every property of `other` wins.
    pub fn update(&mut self, other: &Properties) {
        for (name, prop) in &other.map {
            self.map.insert(name.clone(), prop.clone());
        }
    }

    /// Sets every value of `values` with one source, overriding earlier layers.
    pub fn update_from<'a>(
        &mut self,
        values: impl IntoIterator<Item = (&'a String, &'a PropertyValue)>,
        source: &str,
    ) {
        for (name, value) in values {
            self.set(name.clone(), value.clone(), source);
        }
    }

    pub fn get(&self, name: &str) -> Option<&PropertyValue> {
        self.map.get(name).map(|p| &p.value)
    }

    pub fn get_property(&self, name: &str) -> Option<&Property> {
        self.map.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Property)> {
        self.map.iter()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_override_earlier_ones_and_keep_their_source() {
        let mut global = Properties::new();
        global.set("branch", "main", "Global");
        global.set("owner", "nobody", "Global");
        let mut forced = Properties::new();
        forced.set("owner", "alice", "Force Build Form");

        let mut build = Properties::new();
        build.update(&global);
        build.update(&forced);

        assert_eq!(build.get("branch"), Some(&PropertyValue::from("main")));
        let owner = build
            .get_property("owner")
            .map(|p| (p.value.render(), p.source.clone()));
        assert_eq!(
            owner,
            Some(("alice".to_string(), "Force Build Form".to_string()))
        );
    }

    #[test]
    fn values_render_like_python() {
        assert_eq!(PropertyValue::Bool(true).render(), "True");
        assert_eq!(PropertyValue::Null.render(), "None");
        let list = PropertyValue::List(vec![PropertyValue::from("a"), PropertyValue::Int(2)]);
        assert_eq!(list.render(), "['a', 2]");
        assert!(!PropertyValue::Str(String::new()).is_truthy());
    }
}
