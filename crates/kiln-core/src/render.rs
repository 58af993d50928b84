//! Renderables: values in the configuration that are completed from a build's properties when a
//! step runs (`util.Property`, `util.Interpolate`).

use std::collections::BTreeMap;

use crate::properties::{Properties, PropertyValue};

/// A configuration value that may need a build's properties to become a plain value.
#[derive(Debug, Clone, PartialEq)]
pub enum Renderable {
    /// A plain value.
    Literal(PropertyValue),
    List(Vec<Renderable>),
    Map(Vec<(String, Renderable)>),
    /// `util.Property(name, default=…, defaultWhenFalse=…)`.
    Property {
        name: String,
        default: Option<Box<Renderable>>,
        default_when_false: bool,
    },
    /// `util.Interpolate(format, **kwargs)`.
    Interpolate {
        format: String,
        kwargs: Vec<(String, Renderable)>,
    },
}

/// Why a value could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderError(pub String);

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RenderError {}

impl From<PropertyValue> for Renderable {
    fn from(v: PropertyValue) -> Self {
        Renderable::Literal(v)
    }
}

impl From<&str> for Renderable {
    fn from(s: &str) -> Self {
        Renderable::Literal(PropertyValue::from(s))
    }
}

impl Renderable {
    /// Whether rendering can change the value.
    pub fn is_constant(&self) -> bool {
        match self {
            Renderable::Literal(_) => true,
            Renderable::List(items) => items.iter().all(Renderable::is_constant),
            Renderable::Map(items) => items.iter().all(|(_, v)| v.is_constant()),
            Renderable::Property { .. } | Renderable::Interpolate { .. } => false,
        }
    }

    /// Renders the value with `props`.
    pub fn render(&self, props: &Properties) -> Result<PropertyValue, RenderError> {
        match self {
            Renderable::Literal(v) => Ok(v.clone()),
            Renderable::List(items) => Ok(PropertyValue::List(
                items
                    .iter()
                    .map(|i| i.render(props))
                    .collect::<Result<_, _>>()?,
            )),
            Renderable::Map(items) => {
                let mut map = BTreeMap::new();
                for (k, v) in items {
                    map.insert(k.clone(), v.render(props)?);
                }
                Ok(PropertyValue::Map(map))
            }
            Renderable::Property {
                name,
                default,
                default_when_false,
            } => match (props.get(name), default) {
                (Some(v), Some(d)) if *default_when_false && !v.is_truthy() => d.render(props),
                (Some(v), _) => Ok(v.clone()),
                (None, Some(d)) => d.render(props),
                (None, None) => Err(RenderError(format!(
                    "property '{name}' is not set and has no default"
                ))),
            },
            Renderable::Interpolate { format, kwargs } => {
                interpolate(format, props, kwargs).map(PropertyValue::Str)
            }
        }
    }

    /// Renders to a string, the way a value is used in a command line.
    pub fn render_string(&self, props: &Properties) -> Result<String, RenderError> {
        self.render(props).map(|v| v.render())
    }
}

/// Expands `%(prop:name)s`, `%(kw:name)s` and `%%`, with the `:-default`, `:~default`,
/// `:+replacement` modifiers.
fn interpolate(
    format: &str,
    props: &Properties,
    kwargs: &[(String, Renderable)],
) -> Result<String, RenderError> {
    let mut out = String::with_capacity(format.len());
    let mut rest = format;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('%') {
            out.push('%');
            rest = stripped;
            continue;
        }
        let Some(body_and_rest) = after.strip_prefix('(') else {
            return Err(RenderError(format!(
                "Interpolate {format:?}: '%' must be followed by '(' or '%'"
            )));
        };
        let Some(close) = body_and_rest.find(")s") else {
            return Err(RenderError(format!(
                "Interpolate {format:?}: unterminated '%(' substitution"
            )));
        };
        let body = &body_and_rest[..close];
        out.push_str(&substitute(body, props, kwargs, format)?);
        rest = &body_and_rest[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute(
    body: &str,
    props: &Properties,
    kwargs: &[(String, Renderable)],
    format: &str,
) -> Result<String, RenderError> {
    let (source, spec) = body.split_once(':').ok_or_else(|| {
        RenderError(format!(
            "Interpolate {format:?}: '{body}' needs a 'prop:' or 'kw:' prefix"
        ))
    })?;
    let (name, modifier) = match spec.find([':']) {
        Some(i) => (&spec[..i], Some(&spec[i + 1..])),
        None => (spec, None),
    };
    let value: Option<PropertyValue> = match source {
        "prop" => props.get(name).cloned(),
        "kw" => kwargs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.render(props))
            .transpose()?,
        other => {
            return Err(RenderError(format!(
                "Interpolate {format:?}: unknown substitution source '{other}'"
            )));
        }
    };
    match modifier {
        None => value.map(|v| v.render()).ok_or_else(|| {
            RenderError(format!(
                "Interpolate {format:?}: {source} '{name}' is not set"
            ))
        }),
        Some(m) => {
            let (op, arg) = m.split_at(m.char_indices().nth(1).map_or(m.len(), |(i, _)| i));
            match op {
                "-" => Ok(value.map_or_else(|| arg.to_string(), |v| v.render())),
                "~" => Ok(value
                    .filter(PropertyValue::is_truthy)
                    .map_or_else(|| arg.to_string(), |v| v.render())),
                "+" => Ok(if value.is_some() {
                    arg.to_string()
                } else {
                    String::new()
                }),
                _ => Err(RenderError(format!(
                    "Interpolate {format:?}: unknown modifier ':{m}'"
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props() -> Properties {
        let mut p = Properties::new();
        p.set("branch", "main", "Build");
        p.set("empty", "", "Build");
        p
    }

    #[test]
    fn properties_and_interpolation() {
        let p = props();
        let r = Renderable::Interpolate {
            format: "b=%(prop:branch)s x=%(prop:nope:-dflt)s %%".into(),
            kwargs: vec![],
        };
        assert_eq!(r.render_string(&p).unwrap(), "b=main x=dflt %");
        let r = Renderable::Interpolate {
            format: "%(prop:empty:~falsy)s%(prop:branch:+set)s%(kw:k)s".into(),
            kwargs: vec![("k".into(), "K".into())],
        };
        assert_eq!(r.render_string(&p).unwrap(), "falsyset".to_string() + "K");
        let missing = Renderable::Property {
            name: "nope".into(),
            default: None,
            default_when_false: false,
        };
        assert!(missing.render(&p).unwrap_err().0.contains("'nope'"));
        let list = Renderable::List(vec![
            "make".into(),
            Renderable::Property {
                name: "branch".into(),
                default: None,
                default_when_false: false,
            },
        ]);
        assert_eq!(
            list.render(&p).unwrap(),
            PropertyValue::List(vec!["make".into(), "main".into()])
        );
        assert!(!list.is_constant());
    }

    #[test]
    fn bad_formats_are_errors_not_panics() {
        let p = props();
        for f in [
            "%(prop:x",
            "%d",
            "%(nope)s",
            "%(src:x)s",
            "%(prop:branch:?x)s",
        ] {
            let r = Renderable::Interpolate {
                format: f.into(),
                kwargs: vec![],
            };
            assert!(r.render(&p).is_err(), "{f}");
        }
    }
}
