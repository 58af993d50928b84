//! Change filters: which changes a scheduler looks at, with Buildbot's `ChangeFilter` criteria.
//!
//! Every criterion given must hold. For each of `project`, `repository`, `branch`, `category` and
//! `codebase` there is an equality test (one value or a list), its negation, a regular expression,
//! its negation and a function; changes can also be tested on their properties and by a function
//! of the whole change. Functions live in the configuration language, so they are named here by a
//! [`FnRef`] and called through the [`Callbacks`] the caller passes in.

use regex::Regex;

use crate::PropertyValue;
use crate::change::{Attribute, Change};

/// A function defined in the configuration, by its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FnRef(pub usize);

/// Calls configuration functions. An `Err` is the function's error, with its traceback.
pub trait Callbacks {
    /// Calls `f` with one attribute's value (`None` for an unset branch or category).
    fn call_with_value(&self, f: FnRef, value: Option<&str>) -> Result<bool, String>;
    /// Calls `f` with a change.
    fn call_with_change(&self, f: FnRef, change: &Change) -> Result<bool, String>;
}

/// Callbacks for configurations without functions: calling one is an error.
pub struct NoCallbacks;

impl Callbacks for NoCallbacks {
    fn call_with_value(&self, _: FnRef, _: Option<&str>) -> Result<bool, String> {
        Err("no configuration functions are available".into())
    }
    fn call_with_change(&self, _: FnRef, _: &Change) -> Result<bool, String> {
        Err("no configuration functions are available".into())
    }
}

/// The tests on one attribute. `None` inside a value list stands for "unset", which for a branch is
/// the default branch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Criterion {
    pub eq: Option<Vec<Option<String>>>,
    pub not_eq: Option<Vec<Option<String>>>,
    pub re: Option<Pattern>,
    pub not_re: Option<Pattern>,
    pub func: Option<FnRef>,
}

/// The tests on one property of the change.
#[derive(Debug, Clone, PartialEq)]
pub enum PropertyTest {
    Eq(String, Vec<PropertyValue>),
    NotEq(String, Vec<PropertyValue>),
    Re(String, Pattern),
    NotRe(String, Pattern),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeFilter {
    pub attributes: Vec<(Attribute, Criterion)>,
    pub properties: Vec<PropertyTest>,
    pub filter_fn: Option<FnRef>,
}

/// A regular expression with Python's `re.match` meaning: anchored at the start only. Two are
/// equal when they were written the same.
#[derive(Debug, Clone)]
pub struct Pattern {
    written: String,
    regex: Regex,
}

impl Pattern {
    pub fn python_match(pattern: &str) -> Result<Pattern, String> {
        Ok(Pattern {
            written: pattern.to_string(),
            regex: Regex::new(&format!("^(?:{pattern})")).map_err(|e| e.to_string())?,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.written
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.regex.is_match(text)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Pattern) -> bool {
        self.written == other.written
    }
}

impl ChangeFilter {
    /// A filter that accepts only changes on `branch` (`None`: the default branch).
    pub fn branch(branch: Option<String>) -> ChangeFilter {
        ChangeFilter {
            attributes: vec![(
                Attribute::Branch,
                Criterion {
                    eq: Some(vec![branch]),
                    ..Criterion::default()
                },
            )],
            ..ChangeFilter::default()
        }
    }

    /// Whether `change` passes every criterion. A function's error is returned, not treated as a
    /// verdict, so the caller can report it and keep the change.
    pub fn matches(&self, change: &Change, callbacks: &dyn Callbacks) -> Result<bool, String> {
        for (attr, c) in &self.attributes {
            if !c.matches(change.attribute(*attr), callbacks)? {
                return Ok(false);
            }
        }
        for test in &self.properties {
            if !test.matches(change) {
                return Ok(false);
            }
        }
        match self.filter_fn {
            Some(f) => callbacks.call_with_change(f, change),
            None => Ok(true),
        }
    }
}

impl Criterion {
    fn matches(&self, value: Option<&str>, callbacks: &dyn Callbacks) -> Result<bool, String> {
        let listed = |values: &Vec<Option<String>>| values.iter().any(|v| v.as_deref() == value);
        if self.eq.as_ref().is_some_and(|v| !listed(v)) {
            return Ok(false);
        }
        if self.not_eq.as_ref().is_some_and(listed) {
            return Ok(false);
        }
        // An unset value never matches an expression, so it fails `_re` and passes `_not_re`.
        if let Some(re) = &self.re
            && !value.is_some_and(|v| re.is_match(v))
        {
            return Ok(false);
        }
        if let Some(re) = &self.not_re
            && value.is_some_and(|v| re.is_match(v))
        {
            return Ok(false);
        }
        match self.func {
            Some(f) => callbacks.call_with_value(f, value),
            None => Ok(true),
        }
    }
}

impl PropertyTest {
    fn matches(&self, change: &Change) -> bool {
        let value = |name: &str| change.properties.get(name);
        let text = |name: &str| {
            value(name).map(|v| match v {
                PropertyValue::Str(s) => s.clone(),
                other => other.render(),
            })
        };
        match self {
            PropertyTest::Eq(name, values) => value(name).is_some_and(|v| values.contains(v)),
            PropertyTest::NotEq(name, values) => !value(name).is_some_and(|v| values.contains(v)),
            PropertyTest::Re(name, re) => text(name).is_some_and(|t: String| re.is_match(&t)),
            PropertyTest::NotRe(name, re) => !text(name).is_some_and(|t: String| re.is_match(&t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(branch: Option<&str>, project: &str) -> Change {
        Change {
            branch: branch.map(str::to_string),
            project: project.to_string(),
            repository: "https://example.org/repo.git".into(),
            ..Change::default()
        }
    }

    fn criterion(f: impl FnOnce(&mut Criterion)) -> Criterion {
        let mut c = Criterion::default();
        f(&mut c);
        c
    }

    fn filter(attr: Attribute, c: Criterion) -> ChangeFilter {
        ChangeFilter {
            attributes: vec![(attr, c)],
            ..ChangeFilter::default()
        }
    }

    fn accepts(f: &ChangeFilter, c: &Change) -> bool {
        f.matches(c, &NoCallbacks).unwrap()
    }

    #[test]
    fn equality_takes_a_value_or_a_list_and_none_is_the_default_branch() {
        let main = ChangeFilter::branch(Some("main".into()));
        assert!(accepts(&main, &change(Some("main"), "p")));
        assert!(!accepts(&main, &change(Some("dev"), "p")));
        assert!(!accepts(&main, &change(None, "p")));
        let default = ChangeFilter::branch(None);
        assert!(accepts(&default, &change(None, "p")));
        assert!(!accepts(&default, &change(Some("main"), "p")));
        let either = filter(
            Attribute::Branch,
            criterion(|c| c.eq = Some(vec![Some("a".into()), Some("b".into())])),
        );
        assert!(accepts(&either, &change(Some("b"), "p")));
        assert!(!accepts(&either, &change(Some("c"), "p")));
        let not_b = filter(
            Attribute::Branch,
            criterion(|c| c.not_eq = Some(vec![Some("b".into())])),
        );
        assert!(accepts(&not_b, &change(Some("a"), "p")));
        assert!(accepts(&not_b, &change(None, "p")));
        assert!(!accepts(&not_b, &change(Some("b"), "p")));
    }

    #[test]
    fn expressions_match_at_the_start_like_python() {
        let re = Pattern::python_match("release/").unwrap();
        let f = filter(Attribute::Branch, criterion(|c| c.re = Some(re.clone())));
        assert!(accepts(&f, &change(Some("release/1.0"), "p")));
        assert!(!accepts(&f, &change(Some("x-release/1.0"), "p")));
        assert!(!accepts(&f, &change(None, "p")), "unset fails _re");
        let f = filter(Attribute::Branch, criterion(|c| c.not_re = Some(re)));
        assert!(!accepts(&f, &change(Some("release/1.0"), "p")));
        assert!(accepts(&f, &change(None, "p")), "unset passes _not_re");
    }

    #[test]
    fn every_criterion_must_hold() {
        let f = ChangeFilter {
            attributes: vec![
                (
                    Attribute::Branch,
                    criterion(|c| c.eq = Some(vec![Some("main".into())])),
                ),
                (
                    Attribute::Project,
                    criterion(|c| c.eq = Some(vec![Some("kiln".into())])),
                ),
            ],
            ..ChangeFilter::default()
        };
        assert!(accepts(&f, &change(Some("main"), "kiln")));
        assert!(!accepts(&f, &change(Some("main"), "other")));
        assert!(!accepts(&f, &change(Some("dev"), "kiln")));
    }

    #[test]
    fn properties_are_tested_by_value_and_expression() {
        let mut c = change(Some("main"), "p");
        c.properties.set("event", "push", "Change");
        c.properties.set("count", PropertyValue::Int(3), "Change");
        let test = |t: PropertyTest| ChangeFilter {
            properties: vec![t],
            ..ChangeFilter::default()
        };
        assert!(accepts(
            &test(PropertyTest::Eq("event".into(), vec!["push".into()])),
            &c
        ));
        assert!(!accepts(
            &test(PropertyTest::Eq("event".into(), vec!["tag".into()])),
            &c
        ));
        assert!(!accepts(
            &test(PropertyTest::Eq("missing".into(), vec!["x".into()])),
            &c
        ));
        assert!(accepts(
            &test(PropertyTest::NotEq("missing".into(), vec!["x".into()])),
            &c
        ));
        let re = Pattern::python_match("[0-9]+").unwrap();
        assert!(accepts(
            &test(PropertyTest::Re("count".into(), re.clone())),
            &c
        ));
        assert!(!accepts(&test(PropertyTest::NotRe("count".into(), re)), &c));
    }

    struct Recorder;
    impl Callbacks for Recorder {
        fn call_with_value(&self, f: FnRef, value: Option<&str>) -> Result<bool, String> {
            match f.0 {
                0 => Ok(value.is_some_and(|v| v.ends_with("-ok"))),
                _ => Err("Traceback: boom".into()),
            }
        }
        fn call_with_change(&self, _: FnRef, change: &Change) -> Result<bool, String> {
            Ok(change.project == "kiln")
        }
    }

    #[test]
    fn functions_are_called_through_the_callbacks_and_their_errors_returned() {
        let f = filter(Attribute::Branch, criterion(|c| c.func = Some(FnRef(0))));
        assert!(f.matches(&change(Some("a-ok"), "p"), &Recorder).unwrap());
        assert!(!f.matches(&change(Some("a"), "p"), &Recorder).unwrap());
        let f = filter(Attribute::Branch, criterion(|c| c.func = Some(FnRef(1))));
        assert_eq!(
            f.matches(&change(Some("a"), "p"), &Recorder),
            Err("Traceback: boom".into())
        );
        let f = ChangeFilter {
            filter_fn: Some(FnRef(0)),
            ..ChangeFilter::default()
        };
        assert!(f.matches(&change(None, "kiln"), &Recorder).unwrap());
        assert!(!f.matches(&change(None, "other"), &Recorder).unwrap());
    }
}
