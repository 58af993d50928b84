//! Renderables: values in the configuration that are completed from a build's properties when a
//! step runs (`util.Property`, `util.Interpolate`, `util.renderer`, `util.Transform`,
//! `util.FlattenList`).
//!
//! Rendering sees a [`RenderContext`]: the properties, the build's source stamps (for
//! `%(src:codebase:attr)s`), the worker's information (`%(worker:attr)s`), and [`RenderHooks`]
//! through which the caller looks up secrets and calls configuration functions, so the core
//! never sees Starlark or a secret store.

use std::collections::BTreeMap;

use crate::changefilter::FnRef;
use crate::properties::{Properties, PropertyValue};
use crate::sourcestamp::SourceStamp;

/// What rendering asks of its caller.
pub trait RenderHooks {
    /// The value of a secret, read when it is used.
    fn secret(&self, name: &str) -> Result<String, String>;
    /// Calls a configuration function with rendered arguments.
    fn call(
        &self,
        f: FnRef,
        args: Vec<PropertyValue>,
        kwargs: Vec<(String, PropertyValue)>,
    ) -> Result<PropertyValue, String>;
    /// Calls a `util.renderer` function with the properties, through the prelude's `call`.
    fn call_renderer(
        &self,
        call: FnRef,
        func: FnRef,
        props: &Properties,
    ) -> Result<PropertyValue, String>;
}

/// Hooks for a context without secrets or functions: using either is an error.
pub struct NoHooks;

impl RenderHooks for NoHooks {
    fn secret(&self, name: &str) -> Result<String, String> {
        Err(format!("no secret provider is configured to give '{name}'"))
    }
    fn call(
        &self,
        _: FnRef,
        _: Vec<PropertyValue>,
        _: Vec<(String, PropertyValue)>,
    ) -> Result<PropertyValue, String> {
        Err("configuration functions cannot be called here".into())
    }
    fn call_renderer(&self, _: FnRef, _: FnRef, _: &Properties) -> Result<PropertyValue, String> {
        Err("configuration functions cannot be called here".into())
    }
}

/// Everything a renderable may look at.
pub struct RenderContext<'a> {
    pub props: &'a Properties,
    /// The build's source stamps, one per codebase.
    pub sourcestamps: &'a [SourceStamp],
    /// The worker's information (`os`, `host`, `version`, …).
    pub worker: &'a BTreeMap<String, PropertyValue>,
    pub hooks: &'a dyn RenderHooks,
}

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
    /// `util.renderer(fn)`: `fn(props)`, called through the prelude's `call`.
    Renderer {
        call: FnRef,
        func: FnRef,
    },
    /// `util.Transform(fn, *args, **kwargs)`: `fn` of the rendered arguments.
    Transform {
        func: FnRef,
        args: Vec<Renderable>,
        kwargs: Vec<(String, Renderable)>,
    },
    /// `util.FlattenList(list)`: nested lists (rendered) made one.
    FlattenList(Box<Renderable>),
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
            Renderable::FlattenList(inner) => inner.is_constant(),
            Renderable::Property { .. }
            | Renderable::Interpolate { .. }
            | Renderable::Renderer { .. }
            | Renderable::Transform { .. } => false,
        }
    }

    /// Renders the value with `props` alone: no source stamps, worker, secrets or functions.
    pub fn render(&self, props: &Properties) -> Result<PropertyValue, RenderError> {
        self.render_in(&RenderContext {
            props,
            sourcestamps: &[],
            worker: &BTreeMap::new(),
            hooks: &NoHooks,
        })
    }

    /// Renders the value in a context.
    pub fn render_in(&self, cx: &RenderContext) -> Result<PropertyValue, RenderError> {
        let props = cx.props;
        match self {
            Renderable::Literal(v) => Ok(v.clone()),
            Renderable::List(items) => Ok(PropertyValue::List(
                items
                    .iter()
                    .map(|i| i.render_in(cx))
                    .collect::<Result<_, _>>()?,
            )),
            Renderable::Map(items) => {
                let mut map = BTreeMap::new();
                for (k, v) in items {
                    map.insert(k.clone(), v.render_in(cx)?);
                }
                Ok(PropertyValue::Map(map))
            }
            Renderable::Property {
                name,
                default,
                default_when_false,
            } => match (props.get(name), default) {
                (Some(v), Some(d)) if *default_when_false && !v.is_truthy() => d.render_in(cx),
                (Some(v), _) => Ok(v.clone()),
                (None, Some(d)) => d.render_in(cx),
                (None, None) => Err(RenderError(format!(
                    "property '{name}' is not set and has no default"
                ))),
            },
            Renderable::Interpolate { format, kwargs } => {
                interpolate(format, cx, kwargs).map(PropertyValue::Str)
            }
            Renderable::Renderer { call, func } => cx
                .hooks
                .call_renderer(*call, *func, props)
                .map_err(|e| RenderError(format!("util.renderer failed: {e}"))),
            Renderable::Transform { func, args, kwargs } => {
                let args = args
                    .iter()
                    .map(|a| a.render_in(cx))
                    .collect::<Result<_, _>>()?;
                let kwargs = kwargs
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), v.render_in(cx)?)))
                    .collect::<Result<_, RenderError>>()?;
                cx.hooks
                    .call(*func, args, kwargs)
                    .map_err(|e| RenderError(format!("util.Transform failed: {e}")))
            }
            Renderable::FlattenList(inner) => {
                let mut out = Vec::new();
                flatten(inner.render_in(cx)?, &mut out, 0)?;
                Ok(PropertyValue::List(out))
            }
        }
    }

    /// Renders to a string, the way a value is used in a command line.
    pub fn render_string(&self, props: &Properties) -> Result<String, RenderError> {
        self.render(props).map(|v| v.render())
    }
}

/// Lists inside lists are not followed deeper than this.
const MAX_FLATTEN_DEPTH: usize = 32;

fn flatten(
    v: PropertyValue,
    out: &mut Vec<PropertyValue>,
    depth: usize,
) -> Result<(), RenderError> {
    if depth > MAX_FLATTEN_DEPTH {
        return Err(RenderError(
            "util.FlattenList: lists nested too deeply".into(),
        ));
    }
    match v {
        PropertyValue::List(items) => {
            for i in items {
                flatten(i, out, depth + 1)?;
            }
        }
        other => out.push(other),
    }
    Ok(())
}

/// Expands `%(prop:name)s`, `%(src:codebase:attr)s`, `%(kw:name)s`, `%(secret:name)s`,
/// `%(worker:attr)s` and `%%`, with Buildbot's modifiers: `:-default`, `:~default`,
/// `:+replacement`, `:?|if-set|if-not-set` and `:#?|if-true|if-false`.
fn interpolate(
    format: &str,
    cx: &RenderContext,
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
        out.push_str(&substitute(body, cx, kwargs, format)?);
        rest = &body_and_rest[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn substitute(
    body: &str,
    cx: &RenderContext,
    kwargs: &[(String, Renderable)],
    format: &str,
) -> Result<String, RenderError> {
    let bad = |why: String| RenderError(format!("Interpolate {format:?}: {why}"));
    let (source, spec) = body.split_once(':').ok_or_else(|| {
        bad(format!(
            "'{body}' needs a 'prop:', 'src:', 'kw:', 'secret:' or 'worker:' prefix"
        ))
    })?;
    // `src:` names a codebase first: `src:codebase:attr`.
    let (codebase, spec) = if source == "src" {
        let (cb, rest) = spec
            .split_once(':')
            .ok_or_else(|| bad(format!("'{body}' needs src:CODEBASE:ATTRIBUTE")))?;
        (Some(cb), rest)
    } else {
        (None, spec)
    };
    let (name, modifier) = match spec.find(':') {
        Some(i) => (&spec[..i], Some(&spec[i + 1..])),
        None => (spec, None),
    };
    let value: Option<PropertyValue> = match source {
        "prop" => cx.props.get(name).cloned(),
        "kw" => kwargs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.render_in(cx))
            .transpose()?,
        "src" => {
            let cb = codebase.unwrap_or_default();
            let ss = cx.sourcestamps.iter().find(|s| s.codebase == cb);
            ss.and_then(|ss| match name {
                "branch" => ss.branch.clone().map(PropertyValue::Str),
                "revision" => ss.revision.clone().map(PropertyValue::Str),
                "repository" => Some(PropertyValue::Str(ss.repository.clone())),
                "project" => Some(PropertyValue::Str(ss.project.clone())),
                "codebase" => Some(PropertyValue::Str(ss.codebase.clone())),
                _ => None,
            })
        }
        "worker" => cx.worker.get(name).cloned(),
        "secret" => Some(PropertyValue::Str(cx.hooks.secret(name).map_err(&bad)?)),
        other => return Err(bad(format!("unknown substitution source '{other}'"))),
    };
    let Some(m) = modifier else {
        return value.map(|v| v.render()).ok_or_else(|| {
            bad(format!(
                "{source} '{}' is not set",
                codebase.map_or(name.to_string(), |c| format!("{c}:{name}"))
            ))
        });
    };
    // `?` and `#?` take two alternatives after a delimiter: `?|if-set|if-not-set`.
    if let Some(rest) = m.strip_prefix("#?").or_else(|| m.strip_prefix('?')) {
        let truth = if m.starts_with('#') {
            value.as_ref().is_some_and(PropertyValue::is_truthy)
        } else {
            value.is_some()
        };
        let mut chars = rest.chars();
        let delim = chars
            .next()
            .ok_or_else(|| bad(format!("':{m}' needs a delimiter and two alternatives")))?;
        let parts: Vec<&str> = chars.as_str().split(delim).collect();
        let [yes, no] = parts.as_slice() else {
            return Err(bad(format!("':{m}' needs exactly two alternatives")));
        };
        return Ok(if truth {
            yes.to_string()
        } else {
            no.to_string()
        });
    }
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
        _ => Err(bad(format!("unknown modifier ':{m}'"))),
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

    struct Hooks;
    impl RenderHooks for Hooks {
        fn secret(&self, name: &str) -> Result<String, String> {
            match name {
                "token" => Ok("s3cret".into()),
                _ => Err(format!("no secret '{name}'")),
            }
        }
        fn call(
            &self,
            _: FnRef,
            args: Vec<PropertyValue>,
            _: Vec<(String, PropertyValue)>,
        ) -> Result<PropertyValue, String> {
            Ok(PropertyValue::Str(
                args.iter()
                    .map(PropertyValue::render)
                    .collect::<Vec<_>>()
                    .join("+"),
            ))
        }
        fn call_renderer(
            &self,
            _: FnRef,
            _: FnRef,
            props: &Properties,
        ) -> Result<PropertyValue, String> {
            Ok(props.get("branch").cloned().unwrap_or(PropertyValue::Null))
        }
    }

    #[test]
    fn sources_modifiers_functions_and_flattening() {
        let p = props();
        let stamps = [SourceStamp {
            codebase: "app".into(),
            branch: Some("dev".into()),
            revision: Some("abc".into()),
            repository: "https://x/app.git".into(),
            ..SourceStamp::default()
        }];
        let worker = BTreeMap::from([("os".to_string(), PropertyValue::from("linux"))]);
        let cx = RenderContext {
            props: &p,
            sourcestamps: &stamps,
            worker: &worker,
            hooks: &Hooks,
        };
        let i = |f: &str| Renderable::Interpolate {
            format: f.into(),
            kwargs: vec![],
        };
        let render = |r: Renderable| r.render_in(&cx).map(|v| v.render());
        assert_eq!(
            render(i(
                "%(src:app:revision)s on %(src:app:branch)s from %(src:app:repository)s"
            ))
            .unwrap(),
            "abc on dev from https://x/app.git"
        );
        assert_eq!(
            render(i("%(worker:os)s %(secret:token)s")).unwrap(),
            "linux s3cret"
        );
        assert_eq!(
            render(i("%(prop:branch:?|yes|no)s %(prop:nope:?|yes|no)s %(prop:empty:#?:T:F)s %(prop:branch:#?:T:F)s")).unwrap(),
            "yes no F T"
        );
        assert!(
            render(i("%(secret:other)s"))
                .unwrap_err()
                .0
                .contains("no secret 'other'")
        );
        assert!(
            render(i("%(src:lib:revision)s"))
                .unwrap_err()
                .0
                .contains("src 'lib:revision' is not set")
        );
        assert!(
            render(i("%(prop:branch:?|one)s"))
                .unwrap_err()
                .0
                .contains("exactly two alternatives")
        );
        let f = FnRef(0);
        assert_eq!(
            render(Renderable::Renderer { call: f, func: f }).unwrap(),
            "main"
        );
        let t = Renderable::Transform {
            func: f,
            args: vec!["a".into(), i("%(prop:branch)s")],
            kwargs: vec![],
        };
        assert_eq!(render(t).unwrap(), "a+main");
        let nested = Renderable::FlattenList(Box::new(Renderable::List(vec![
            "make".into(),
            Renderable::List(vec!["-j".into(), Renderable::List(vec!["2".into()])]),
        ])));
        assert_eq!(
            nested.render_in(&cx).unwrap(),
            PropertyValue::List(vec!["make".into(), "-j".into(), "2".into()])
        );
        // Without hooks, functions are an error rather than a panic.
        assert!(
            Renderable::Renderer { call: f, func: f }
                .render(&p)
                .is_err()
        );
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
