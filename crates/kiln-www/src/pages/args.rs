//! A page's query arguments, as the old WebStatus took them: each may repeat (`builder=a&builder=b`),
//! and a bad value is a page that says what is wrong.

use super::PageError;

/// The query arguments of one request, in order.
#[derive(Debug, Default)]
pub struct Args(Vec<(String, String)>);

impl Args {
    pub fn parse(raw: Option<&str>) -> Result<Args, PageError> {
        match raw {
            None | Some("") => Ok(Args::default()),
            Some(q) => serde_urlencoded::from_str(q)
                .map(Args)
                .map_err(|e| PageError::bad_request(format!("the query string is malformed: {e}"))),
        }
    }

    /// Every value given for `name`, empty ones left out.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The last value given for `name`.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.all(name).pop()
    }

    /// A whole number from `min` to `max`, or `default` when not given.
    pub fn number(&self, name: &str, default: i64, min: i64, max: i64) -> Result<i64, PageError> {
        let Some(text) = self.one(name) else {
            return Ok(default);
        };
        match text.trim().parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(PageError::bad_request(format!(
                "{name} must be a whole number from {min} to {max}, not '{text}'"
            ))),
        }
    }

    /// A yes-or-no argument: `true`, `1`, `yes` or `on` say yes.
    pub fn flag(&self, name: &str) -> Result<bool, PageError> {
        match self.one(name) {
            None => Ok(false),
            Some("true" | "1" | "yes" | "on") => Ok(true),
            Some("false" | "0" | "no" | "off") => Ok(false),
            Some(other) => Err(PageError::bad_request(format!(
                "{name} must be true or false, not '{other}'"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_repeat_and_bad_values_say_what_is_wrong() {
        let a = Args::parse(Some(
            "builder=a&builder=b%20c&numbuilds=5&x=&failures_only=true",
        ))
        .unwrap();
        assert_eq!(a.all("builder"), ["a", "b c"]);
        assert_eq!(a.number("numbuilds", 20, 1, 100).unwrap(), 5);
        assert_eq!(a.number("other", 20, 1, 100).unwrap(), 20);
        assert!(a.flag("failures_only").unwrap());
        assert!(a.one("x").is_none());
        let bad = Args::parse(Some("numbuilds=lots")).unwrap();
        let e = bad.number("numbuilds", 20, 1, 100).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(
            e.message,
            "numbuilds must be a whole number from 1 to 100, not 'lots'"
        );
        assert!(bad.flag("numbuilds").is_err());
    }
}
