//! The functions a configuration hands to kiln (`fileIsImportant`, a change filter's `filter_fn`
//! and `*_fn`, and the other hooks Buildbot lets `master.cfg` define), kept after evaluation so
//! the master can call them.
//!
//! Evaluation freezes the configuration's module and keeps the list of functions it found; a
//! [`FnRef`] is an index into that list. Calls take and return plain [`Data`], so nothing outside
//! this crate sees Starlark. A call that raises, or runs longer than [`CALL_TIME_LIMIT`], is an
//! error carrying the Starlark traceback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_core::PropertyValue;
use kiln_core::change::Change;
use kiln_core::changefilter::{Callbacks, FnRef};
use starlark::environment::{FrozenModule, Module};
use starlark::eval::Evaluator;
use starlark::values::dict::{AllocDict, DictRef};
use starlark::values::list::{AllocList, ListRef};
use starlark::values::structs::{AllocStruct, StructRef};
use starlark::values::tuple::TupleRef;
use starlark::values::{OwnedFrozenValue, Value, ValueLike};

/// A configuration function that runs longer than this is stopped with an error, so a mistaken
/// loop cannot hold up the scheduler that called it.
pub const CALL_TIME_LIMIT: Duration = Duration::from_secs(1);
/// Values nested deeper than this are not converted.
const MAX_DEPTH: usize = 64;

/// Plain data passed to and returned from configuration functions.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Data>),
    Dict(Vec<(Data, Data)>),
    /// An object with named attributes (a Starlark struct): `change.files`, `builder.name`.
    Object(Vec<(String, Data)>),
    /// One of the configuration's functions, passed to another (as `util.renderer` passes its
    /// function to the prelude's caller).
    Function(FnRef),
    /// A value of another type, described.
    Other(String),
    /// A value the prelude turns into one of Buildbot's objects, with its methods (`kiln_wrap`):
    /// `properties` (a dict, with `getProperty`, `hasProperty`, …) or `worker` (an object with
    /// `workername`, `isIdle()`, …).
    Wrapped(&'static str, Box<Data>),
}

impl Data {
    /// Python's truth value: what `if value:` decides.
    pub fn truthy(&self) -> bool {
        match self {
            Data::None => false,
            Data::Bool(b) => *b,
            Data::Int(i) => *i != 0,
            Data::Float(f) => *f != 0.0,
            Data::Str(s) => !s.is_empty(),
            Data::List(l) => !l.is_empty(),
            Data::Dict(d) => !d.is_empty(),
            Data::Object(_) | Data::Function(_) | Data::Other(_) | Data::Wrapped(..) => true,
        }
    }

    /// An attribute of an object.
    pub fn attr(&self, name: &str) -> Option<&Data> {
        match self {
            Data::Object(fields) => fields.iter().find(|(k, _)| k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Data::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a property: plain data only.
    pub fn to_property(&self) -> Result<PropertyValue, String> {
        Ok(match self {
            Data::None => PropertyValue::Null,
            Data::Bool(b) => PropertyValue::Bool(*b),
            Data::Int(i) => PropertyValue::Int(*i),
            Data::Float(f) => PropertyValue::Float(*f),
            Data::Str(s) => PropertyValue::Str(s.clone()),
            Data::List(l) => {
                PropertyValue::List(l.iter().map(Data::to_property).collect::<Result<_, _>>()?)
            }
            Data::Dict(d) => PropertyValue::Map(
                d.iter()
                    .map(|(k, v)| {
                        let k = match k {
                            Data::Str(s) => s.clone(),
                            other => {
                                return Err(format!("a dict key must be a string, not {other:?}"));
                            }
                        };
                        Ok((k, v.to_property()?))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            Data::Wrapped(_, inner) => return inner.to_property(),
            Data::Object(_) | Data::Function(_) | Data::Other(_) => {
                return Err(format!("{self:?} is not a plain value"));
            }
        })
    }

    fn opt_str(s: Option<&str>) -> Data {
        s.map_or(Data::None, |s| Data::Str(s.to_string()))
    }

    /// A change as Buildbot's `Change` object shows it to configuration functions.
    pub fn change(c: &Change) -> Data {
        let properties = c
            .properties
            .iter()
            .map(|(name, p)| (Data::Str(name.clone()), Data::from(&p.value)))
            .collect();
        Data::Object(vec![
            ("number".into(), Data::Int(c.id.0)),
            ("changeid".into(), Data::Int(c.id.0)),
            ("who".into(), Data::Str(c.author.clone())),
            ("author".into(), Data::Str(c.author.clone())),
            ("committer".into(), Data::opt_str(c.committer.as_deref())),
            (
                "files".into(),
                Data::List(c.files.iter().map(|f| Data::Str(f.clone())).collect()),
            ),
            ("comments".into(), Data::Str(c.comments.clone())),
            ("revision".into(), Data::opt_str(c.revision.as_deref())),
            ("when".into(), Data::Int(c.when)),
            ("when_timestamp".into(), Data::Int(c.when)),
            ("branch".into(), Data::opt_str(c.branch.as_deref())),
            ("category".into(), Data::opt_str(c.category.as_deref())),
            ("project".into(), Data::Str(c.project.clone())),
            ("repository".into(), Data::Str(c.repository.clone())),
            ("codebase".into(), Data::Str(c.codebase.clone())),
            ("revlink".into(), Data::opt_str(c.revlink.as_deref())),
            (
                "properties".into(),
                Data::Wrapped("properties", Box::new(Data::Dict(properties))),
            ),
        ])
    }
}

impl From<&PropertyValue> for Data {
    fn from(v: &PropertyValue) -> Data {
        match v {
            PropertyValue::Null => Data::None,
            PropertyValue::Bool(b) => Data::Bool(*b),
            PropertyValue::Int(i) => Data::Int(*i),
            PropertyValue::Float(f) => Data::Float(*f),
            PropertyValue::Str(s) => Data::Str(s.clone()),
            PropertyValue::List(l) => Data::List(l.iter().map(Data::from).collect()),
            PropertyValue::Map(m) => Data::Dict(
                m.iter()
                    .map(|(k, v)| (Data::Str(k.clone()), Data::from(v)))
                    .collect(),
            ),
        }
    }
}

/// The functions of one loaded configuration.
#[derive(Clone, Default)]
pub struct Functions {
    table: Option<Arc<Table>>,
}

struct Table {
    /// Keeps the frozen values alive.
    _module: FrozenModule,
    /// A frozen list of the functions, in the order of their [`FnRef`]s.
    list: OwnedFrozenValue,
    names: Vec<String>,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = self.table.as_ref().map(|t| t.names.as_slice());
        f.debug_struct("Functions").field("names", &names).finish()
    }
}

/// Two loads of a configuration are equal when their functions have the same names; a changed
/// body is picked up anyway, since callers always call through the current configuration.
impl PartialEq for Functions {
    fn eq(&self, other: &Functions) -> bool {
        let names = |f: &Functions| f.table.as_ref().map(|t| t.names.clone());
        names(self) == names(other)
    }
}

impl Functions {
    pub(crate) fn new(module: FrozenModule, list: OwnedFrozenValue, names: Vec<String>) -> Self {
        Functions {
            table: Some(Arc::new(Table {
                _module: module,
                list,
                names,
            })),
        }
    }

    /// The function's name as the configuration spelled it.
    pub fn name(&self, f: FnRef) -> &str {
        self.table
            .as_ref()
            .and_then(|t| t.names.get(f.0))
            .map_or("?", String::as_str)
    }

    /// Calls a configuration function. The error is the Starlark error with its traceback.
    pub fn call(&self, f: FnRef, args: &[Data], kwargs: &[(&str, Data)]) -> Result<Data, String> {
        let Some(table) = &self.table else {
            return Err("the configuration defines no functions".into());
        };
        Module::with_temp_heap(|module| {
            let list = module.heap().access_owned_frozen_value(&table.list);
            let function = ListRef::from_value(list)
                .and_then(|l| l.content().get(f.0).copied())
                .ok_or_else(|| format!("no configuration function number {}", f.0))?;
            let functions = ListRef::from_value(list);
            // The prelude's `kiln_wrap`, which makes Buildbot's objects of wrapped values.
            let wrap = table
                ._module
                .get("kiln_wrap")
                .ok()
                .map(|w| module.heap().access_owned_frozen_value(&w));
            let mut eval = Evaluator::new(&module);
            let mut make = Alloc { functions, wrap };
            let positional: Vec<Value> = args.iter().map(|a| make.value(&mut eval, a)).collect();
            let named: Vec<(&str, Value)> = kwargs
                .iter()
                .map(|(k, v)| (*k, make.value(&mut eval, v)))
                .collect();
            let started = Instant::now();
            eval.set_check_cancelled(Box::new(move || started.elapsed() > CALL_TIME_LIMIT));
            match eval.eval_function(function, &positional, &named) {
                Ok(v) => Ok(to_data(v, 0)),
                Err(e) if started.elapsed() > CALL_TIME_LIMIT => Err(format!(
                    "{} ran longer than {} s and was stopped: {e:#}",
                    self.name(f),
                    CALL_TIME_LIMIT.as_secs()
                )),
                Err(e) => Err(format!("{e:#}")),
            }
        })
    }
}

/// Change filters' functions: `*_fn` receive the attribute's value, `filter_fn` the change.
impl Callbacks for Functions {
    fn call_with_value(&self, f: FnRef, value: Option<&str>) -> Result<bool, String> {
        self.call(f, &[Data::opt_str(value)], &[])
            .map(|d| d.truthy())
    }

    fn call_with_change(&self, f: FnRef, change: &Change) -> Result<bool, String> {
        self.call(f, &[Data::change(change)], &[])
            .map(|d| d.truthy())
    }
}

/// Renderables' functions (`util.renderer`, `util.Transform`). Secrets are not the
/// configuration's to give: without a secret provider, `%(secret:…)s` is an error.
impl Functions {
    /// Calls a step's `doStepIf` (`results` None) or `hideStepIf` function through the prelude's
    /// `call`, with the build's properties and its results so far (`step.build.results`); its
    /// value's truth is the answer.
    pub fn call_step_condition(
        &self,
        call: FnRef,
        func: FnRef,
        results: Option<i64>,
        props: &kiln_core::Properties,
        build_results: i64,
    ) -> Result<bool, String> {
        let dict = Data::Dict(
            props
                .iter()
                .map(|(k, p)| (Data::Str(k.clone()), Data::from(&p.value)))
                .collect(),
        );
        let mut args = vec![Data::Function(func)];
        if let Some(r) = results {
            args.push(Data::Int(r));
        }
        args.push(dict);
        args.push(Data::Int(build_results));
        Ok(self.call(call, &args, &[])?.truthy())
    }
}

impl kiln_core::render::RenderHooks for Functions {
    fn secret(&self, name: &str) -> Result<String, String> {
        Err(format!("no secret provider is configured to give '{name}'"))
    }

    fn call(
        &self,
        f: FnRef,
        args: Vec<PropertyValue>,
        kwargs: Vec<(String, PropertyValue)>,
    ) -> Result<PropertyValue, String> {
        let args: Vec<Data> = args.iter().map(Data::from).collect();
        let kwargs: Vec<(&str, Data)> = kwargs
            .iter()
            .map(|(k, v)| (k.as_str(), Data::from(v)))
            .collect();
        self.call(f, &args, &kwargs)?.to_property()
    }

    fn call_renderer(
        &self,
        call: FnRef,
        func: FnRef,
        props: &kiln_core::Properties,
    ) -> Result<PropertyValue, String> {
        let dict = Data::Dict(
            props
                .iter()
                .map(|(k, p)| (Data::Str(k.clone()), Data::from(&p.value)))
                .collect(),
        );
        self.call(call, &[Data::Function(func), dict], &[])?
            .to_property()
    }
}

/// Makes Starlark values of data for a call.
struct Alloc<'v, 'l> {
    functions: Option<&'l ListRef<'v>>,
    wrap: Option<Value<'v>>,
}

impl<'v> Alloc<'v, '_> {
    fn value(&mut self, eval: &mut Evaluator<'v, '_, '_>, d: &Data) -> Value<'v> {
        let heap = eval.heap();
        match d {
            Data::Function(f) => self
                .functions
                .and_then(|l| l.content().get(f.0).copied())
                .unwrap_or_else(Value::new_none),
            Data::None => Value::new_none(),
            Data::Bool(b) => Value::new_bool(*b),
            Data::Int(i) => heap.alloc(*i),
            Data::Float(f) => heap.alloc(*f),
            Data::Str(s) | Data::Other(s) => heap.alloc(s.as_str()),
            Data::List(l) => {
                let items: Vec<Value> = l.iter().map(|x| self.value(eval, x)).collect();
                eval.heap().alloc(AllocList(items))
            }
            Data::Dict(d) => {
                let items: Vec<(Value, Value)> = d
                    .iter()
                    .map(|(k, v)| (self.value(eval, k), self.value(eval, v)))
                    .collect();
                eval.heap().alloc(AllocDict(items))
            }
            Data::Object(fields) => {
                let items: Vec<(&str, Value)> = fields
                    .iter()
                    .map(|(k, v)| (k.as_str(), self.value(eval, v)))
                    .collect();
                eval.heap().alloc(AllocStruct(items))
            }
            Data::Wrapped(kind, inner) => {
                let value = self.value(eval, inner);
                let Some(wrap) = self.wrap else { return value };
                let kind = eval.heap().alloc(*kind);
                eval.eval_function(wrap, &[kind, value], &[])
                    .unwrap_or(value)
            }
        }
    }
}

/// Converts a function's result into plain data.
pub(crate) fn to_data(v: Value, depth: usize) -> Data {
    if depth > MAX_DEPTH {
        return Data::Other("a value nested too deeply".into());
    }
    if v.is_none() {
        return Data::None;
    }
    if let Some(b) = v.unpack_bool() {
        return Data::Bool(b);
    }
    if let Some(i) = v.unpack_i32() {
        return Data::Int(i64::from(i));
    }
    if let Some(s) = v.unpack_str() {
        return Data::Str(s.to_string());
    }
    match v.get_type() {
        "int" => {
            return v
                .to_str()
                .parse::<i64>()
                .map(Data::Int)
                .unwrap_or(Data::Other("an integer too large".into()));
        }
        "float" => {
            return v
                .to_str()
                .parse::<f64>()
                .map(Data::Float)
                .unwrap_or(Data::Other("a float".into()));
        }
        _ => {}
    }
    if let Some(list) = ListRef::from_value(v) {
        return Data::List(list.iter().map(|x| to_data(x, depth + 1)).collect());
    }
    if let Some(t) = TupleRef::from_value(v) {
        return Data::List(t.iter().map(|x| to_data(x, depth + 1)).collect());
    }
    if let Some(d) = DictRef::from_value(v) {
        return Data::Dict(
            d.iter()
                .map(|(k, x)| (to_data(k, depth + 1), to_data(x, depth + 1)))
                .collect(),
        );
    }
    if let Some(s) = StructRef::from_value(v) {
        return Data::Object(
            s.iter()
                .map(|(k, x)| (k.as_str().to_string(), to_data(x, depth + 1)))
                .collect(),
        );
    }
    let _ = v.to_value();
    Data::Other(format!("a value of type {}", v.get_type()))
}
