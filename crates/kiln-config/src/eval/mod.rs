//! Evaluating `master.star` with Starlark. This module (with `functions.rs`) is the only one that
//! sees Starlark types: it returns the `BuildmasterConfig` dict as a [`Node`] tree.
//!
//! The file is first read as Python would write it (`python.rs` turns its import lines into
//! Starlark); `loader.rs` loads the master directory's own modules, and `stdlib.rs` has the natives
//! of the standard modules a configuration may import.

mod loader;
mod properties;
mod stdlib;

use std::path::Path;
use std::time::{Duration, Instant};

use kiln_core::changefilter::FnRef;
use starlark::environment::{FrozenModule, GlobalsBuilder, LibraryExtension, Module};
use starlark::eval::Evaluator;
use starlark::syntax::{AstModule, Dialect};
use starlark::values::dict::DictRef;
use starlark::values::list::{AllocList, ListRef};
use starlark::values::structs::{AllocStruct, StructRef};
use starlark::values::tuple::TupleRef;
use starlark::values::{Value, ValueLike};

use crate::functions::Functions;
use crate::kinds;
use crate::node::{Location, Node};
use crate::{Diagnostic, Diagnostics};

/// The module variable that holds the configuration's functions once it is frozen.
const FUNCTIONS: &str = "__kiln_functions__";
/// Evaluating a configuration that runs longer than this is stopped with an error.
const EVAL_TIME_LIMIT: Duration = Duration::from_secs(30);
const PRELUDE_FILE: &str = "<kiln prelude>";
const PRELUDE: &str = include_str!("../prelude.star");
/// Nesting deeper than this in the configuration is refused rather than recursed into.
const MAX_DEPTH: usize = 64;

#[starlark::starlark_module]
fn natives(builder: &mut GlobalsBuilder) {
    /// Records a vocabulary call: checks its arguments and returns it as a struct.
    fn _make<'v>(
        kind: &str,
        args: Value<'v>,
        kwargs: Value<'v>,
        #[starlark(default = "")] alias: &str,
        eval: &mut Evaluator<'v, '_, '_>,
    ) -> anyhow::Result<Value<'v>> {
        // Buildbot 0.8's names are noted, for a warning that names the modern ones.
        let mut legacy: Vec<String> = Vec::new();
        if !alias.is_empty() {
            legacy.push(format!("{alias} is Buildbot 0.8's name: write {kind}"));
        }
        let spec =
            kinds::find(kind).ok_or_else(|| anyhow::anyhow!("unknown constructor {kind}"))?;
        let positional = TupleRef::from_value(args)
            .map(|t| t.content().to_vec())
            .unwrap_or_default();
        if positional.len() > spec.positional.len() {
            anyhow::bail!(
                "{kind}() takes at most {} positional argument(s) ({}), got {}",
                spec.positional.len(),
                spec.positional.join(", "),
                positional.len()
            );
        }
        let mut fields: Vec<(String, Value<'v>)> = Vec::new();
        for (name, value) in spec.positional.iter().zip(positional) {
            fields.push((name.to_string(), value));
        }
        if let Some(dict) = DictRef::from_value(kwargs) {
            for (k, v) in dict.iter() {
                let mut key = k.unpack_str().unwrap_or_default().to_string();
                if !kinds::accepts(spec, &key) {
                    let Some(modern) = kinds::modern_keyword(spec, &key) else {
                        let hint = kinds::did_you_mean(&key, kinds::keywords_of(spec));
                        anyhow::bail!("{kind}() got an unexpected keyword argument '{key}'{hint}");
                    };
                    legacy.push(format!(
                        "{kind}(): '{key}' is Buildbot 0.8's name: write '{modern}'"
                    ));
                    key = modern.to_string();
                }
                if fields.iter().any(|(n, _)| *n == key) {
                    anyhow::bail!("{kind}() got multiple values for argument '{key}'");
                }
                fields.push((key, v));
            }
        }
        let heap = eval.heap();
        let loc = caller_location(eval);
        let mut all: Vec<(String, Value<'v>)> = vec![
            ("_kind".to_string(), heap.alloc(kind)),
            ("_loc".to_string(), heap.alloc(loc)),
        ];
        all.extend(fields);
        if !legacy.is_empty() {
            all.push(("_legacy".to_string(), heap.alloc(legacy)));
        }
        Ok(heap.alloc(AllocStruct(all)))
    }

    /// The location in the user's file of the call being evaluated.
    fn _here<'v>(eval: &mut Evaluator<'v, '_, '_>) -> anyhow::Result<String> {
        Ok(caller_location(eval))
    }
}

/// The innermost call-stack location that is in the user's configuration, as `file:line:col`.
fn caller_location(eval: &Evaluator) -> String {
    let stack = eval.call_stack();
    stack
        .frames
        .iter()
        .rev()
        .filter_map(|f| f.location.as_ref())
        .find(|l| l.filename() != PRELUDE_FILE)
        .map(|l| {
            let span = l.resolve_span();
            format!(
                "{}:{}:{}",
                l.filename(),
                span.begin.line + 1,
                span.begin.column + 1
            )
        })
        .unwrap_or_default()
}

pub(crate) fn dialect() -> Dialect {
    Dialect {
        enable_f_strings: true,
        enable_top_level_stmt: true,
        ..Dialect::Extended
    }
}

pub(crate) fn globals() -> starlark::environment::Globals {
    GlobalsBuilder::extended_by(&[
        LibraryExtension::StructType,
        LibraryExtension::Print,
        LibraryExtension::Json,
        LibraryExtension::Map,
        LibraryExtension::Filter,
        LibraryExtension::Partial,
    ])
    .with(natives)
    .with(stdlib::natives)
    .with(properties::natives)
    .build()
}

fn prelude(globals: &starlark::environment::Globals) -> Result<FrozenModule, String> {
    let ast = AstModule::parse(PRELUDE_FILE, PRELUDE.to_owned(), &dialect())
        .map_err(|e| e.to_string())?;
    Module::with_temp_heap(|module| {
        {
            let mut eval = Evaluator::new(&module);
            eval.eval_module(ast, globals).map_err(|e| e.to_string())?;
        }
        module.freeze().map_err(|e| format!("{e:?}"))
    })
}

/// Evaluates `source` (read from `file`, in the master directory `dir` when there is one) and
/// returns its `BuildmasterConfig`, with the functions it holds kept for calling later.
pub fn evaluate(
    file: &str,
    source: &str,
    dir: Option<&Path>,
) -> Result<(Node, Functions), Diagnostics> {
    let translated = crate::python::translate(source, &|module| loader::local_module(dir, module));
    let hints: Vec<Diagnostic> = translated
        .notes
        .iter()
        .map(|n| Diagnostic::note(line_location(file, n), n.message.clone()))
        .collect();
    if !translated.errors.is_empty() {
        let mut d: Vec<Diagnostic> = translated
            .errors
            .iter()
            .map(|e| Diagnostic::error(line_location(file, e), e.message.clone()))
            .collect();
        d.extend(hints);
        return Err(Diagnostics(d));
    }
    let ast = match AstModule::parse(file, translated.source, &dialect()) {
        Ok(ast) => ast,
        Err(e) => {
            let mut d = vec![starlark_error(file, &e)];
            d.extend(hints);
            return Err(Diagnostics(d));
        }
    };
    let globals = globals();
    let prelude = prelude(&globals)
        .map_err(|e| Diagnostics(vec![Diagnostic::error(Location::default(), e)]))?;
    let basedir = dir.map(Path::to_path_buf).unwrap_or_else(|| ".".into());
    let _context = stdlib::EvalContext::enter(basedir);
    let started = Instant::now();
    let loader = loader::DirLoader::new(dir, &globals, &prelude, started);
    Module::with_temp_heap(|module| {
        module.import_public_symbols(&prelude);
        let mut eval = Evaluator::new(&module);
        eval.set_check_cancelled(Box::new(move || started.elapsed() > EVAL_TIME_LIMIT));
        eval.set_loader(&loader);
        if let Err(e) = eval.eval_module(ast, &globals) {
            let mut d = vec![starlark_error(file, &e)];
            d.extend(hints);
            return Err(Diagnostics(d));
        }
        drop(eval);
        let config = module.get("BuildmasterConfig").or_else(|| module.get("c"));
        let Some(config) = config else {
            return Err(Diagnostics(vec![Diagnostic::error(
                Location { file: file.to_string(), line: 1, column: 1 },
                "the configuration does not define BuildmasterConfig; write `BuildmasterConfig = {}` and then \
                 `c = BuildmasterConfig` (Starlark has no chained assignment `c = BuildmasterConfig = {}`)"
                    .to_string(),
            )]));
        };
        let mut found = Vec::new();
        let node = to_node(config, 0, &mut found);
        // Starlark names a function `file.name`; the name alone is what users wrote.
        let names = found
            .iter()
            .map(|f| {
                let full = f.to_str();
                full.rsplit('.').next().unwrap_or_default().to_string()
            })
            .collect();
        let heap = module.heap();
        module.set(FUNCTIONS, heap.alloc(AllocList(found)));
        // Bound again in the configuration's own module (imported names are private to it), so
        // that calls made later find the prelude's maker of Buildbot's objects.
        if let Ok(wrap) = prelude.get("kiln_wrap") {
            module.set("kiln_wrap", heap.access_owned_frozen_value(&wrap));
        }
        let frozen = module.freeze().map_err(|e| {
            Diagnostics(vec![Diagnostic::error(
                Location {
                    file: file.to_string(),
                    line: 1,
                    column: 1,
                },
                format!("the configuration cannot be frozen: {e:?}"),
            )])
        })?;
        let list = frozen.get(FUNCTIONS).map_err(|e| {
            Diagnostics(vec![Diagnostic::error(Location::default(), e.to_string())])
        })?;
        Ok((node, Functions::new(frozen, list, names)))
    })
}

/// Converts a Starlark value into plain data; functions are numbered in the order met and
/// collected into `found`.
fn to_node<'v>(v: Value<'v>, depth: usize, found: &mut Vec<Value<'v>>) -> Node {
    if depth > MAX_DEPTH {
        return Node::Other("a value nested too deeply".into());
    }
    if v.is_none() {
        return Node::None;
    }
    if let Some(b) = v.unpack_bool() {
        return Node::Bool(b);
    }
    if let Some(i) = v.unpack_i32() {
        return Node::Int(i64::from(i));
    }
    if let Some(s) = v.unpack_str() {
        return Node::Str(s.to_string());
    }
    match v.get_type() {
        "int" => {
            // Larger than 32 bits: go through its decimal form.
            return v
                .to_str()
                .parse::<i64>()
                .map(Node::Int)
                .unwrap_or(Node::Other("an integer too large".into()));
        }
        "float" => {
            return v
                .to_str()
                .parse::<f64>()
                .map(Node::Float)
                .unwrap_or(Node::Other("a float".into()));
        }
        "function" => {
            found.push(v);
            return Node::Function(FnRef(found.len() - 1), v.to_str());
        }
        _ => {}
    }
    if let Some(list) = ListRef::from_value(v) {
        return Node::List(list.iter().map(|x| to_node(x, depth + 1, found)).collect());
    }
    if let Some(t) = TupleRef::from_value(v) {
        return Node::List(t.iter().map(|x| to_node(x, depth + 1, found)).collect());
    }
    if let Some(d) = DictRef::from_value(v) {
        return Node::Dict(
            d.iter()
                .map(|(k, x)| (to_node(k, depth + 1, found), to_node(x, depth + 1, found)))
                .collect(),
        );
    }
    if let Some(s) = StructRef::from_value(v) {
        let mut kind = None;
        let mut loc = Location::default();
        let mut fields = Vec::new();
        for (k, x) in s.iter() {
            match k.as_str() {
                "_kind" => kind = x.unpack_str().map(str::to_string),
                "_loc" => loc = parse_location(x.unpack_str().unwrap_or_default()),
                "addStep" | "addSteps" | "access" => {}
                name => fields.push((name.to_string(), to_node(x, depth + 1, found))),
            }
        }
        return match kind {
            Some(kind) => Node::Object { kind, loc, fields },
            None => Node::Dict(fields.into_iter().map(|(k, v)| (Node::Str(k), v)).collect()),
        };
    }
    let _ = v.to_value();
    Node::Other(format!("a value of type {}", v.get_type()))
}

fn line_location(file: &str, m: &crate::python::LineMessage) -> Location {
    Location {
        file: file.to_string(),
        line: m.line,
        column: m.column,
    }
}

fn parse_location(s: &str) -> Location {
    let mut parts = s.rsplitn(3, ':');
    let column = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let line = parts.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    let file = parts.next().unwrap_or_default().to_string();
    Location { file, line, column }
}

/// The longest line a diagnostic shows of a value or of the source; longer ones are cut.
const MAX_SHOWN: usize = 160;

/// A Starlark error as the user should read it: located at the innermost place in the user's own
/// files (an error raised inside kiln's prelude is reported where the user called into it), with
/// the message said once, the user's frames of the traceback, and the user's line.
pub(crate) fn starlark_error(file: &str, e: &starlark::Error) -> Diagnostic {
    let user_frames: Vec<&starlark::codemap::FileSpan> = e
        .call_stack()
        .frames
        .iter()
        .filter_map(|f| f.location.as_ref())
        .filter(|l| l.filename() != PRELUDE_FILE)
        .collect();
    let span = match e.span() {
        Some(s) if s.filename() != PRELUDE_FILE => Some(s),
        _ => user_frames.last().copied().or(e.span()),
    };
    let (file, line, column) = span
        .map(|s| {
            let r = s.resolve_span();
            (
                s.filename().to_string(),
                r.begin.line + 1,
                r.begin.column + 1,
            )
        })
        .unwrap_or_else(|| (file.to_string(), 1, 1));
    let mut message = core_message(e, span);
    // The calls that led there, when the error is inside a function of the user's.
    let callers: Vec<String> = user_frames
        .iter()
        .map(|f| {
            let r = f.resolve_span();
            format!("{}:{}", f.filename(), r.begin.line + 1)
        })
        .filter(|at| *at != format!("{file}:{line}"))
        .collect();
    if !callers.is_empty() {
        message.push_str(&format!("\n  called from {}", callers.join(", from ")));
    }
    if let Some(s) = span.filter(|s| s.filename() != PRELUDE_FILE) {
        let r = s.resolve_span();
        let text = s.file.source_line(r.begin.line);
        message.push_str(&format!(
            "\n  {} | {}",
            r.begin.line + 1,
            shorten(text.trim_end())
        ));
    }
    Diagnostic::error(Location { file, line, column }, message)
}

/// The error's own message: once, without Starlark's `error:` and traceback, a missing attribute
/// of one of kiln's namespaces said to be missing from kiln, and no line longer than
/// [`MAX_SHOWN`].
fn core_message(e: &starlark::Error, span: Option<&starlark::codemap::FileSpan>) -> String {
    let raw = e.kind().to_string();
    let raw = raw.strip_prefix("fail:").unwrap_or(&raw).trim();
    let raw = raw.strip_prefix("error: ").unwrap_or(raw);
    // `steps.NoSuchStep`: the namespace is the name the source writes before the attribute.
    let missing = raw
        .strip_prefix("Object of type `struct` has no attribute `")
        .and_then(|rest| rest.split_once('`'));
    let message = match (missing, span) {
        (Some((name, rest)), Some(s)) => {
            let written = s.file.source_span(s.span);
            let namespace = written
                .split_once(&format!(".{name}"))
                .map(|(before, _)| {
                    before
                        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
                .unwrap_or_default();
            let hint = rest
                .strip_prefix(", did you mean `")
                .and_then(|h| h.split_once('`'))
                .map(|(h, _)| format!("; did you mean {namespace}.{h}?"))
                .unwrap_or_default();
            if namespace.is_empty() {
                format!("{name} is missing from kiln{hint}")
            } else {
                format!("{namespace}.{name} is missing from kiln{hint}")
            }
        }
        _ => raw.to_string(),
    };
    message.lines().map(shorten).collect::<Vec<_>>().join("\n")
}

/// `text` cut to [`MAX_SHOWN`] characters.
fn shorten(text: &str) -> String {
    match text.char_indices().nth(MAX_SHOWN) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
