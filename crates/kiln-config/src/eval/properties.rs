//! Buildbot's `IProperties` as configuration functions see it: `props.getProperty('x')`,
//! `props.hasProperty('x')`, `'x' in props`, and `props['x']`, which no Starlark struct can do.
//!
//! The object holds plain data (a copy of the properties), so it is a simple value: it holds no
//! other Starlark value and lives on any heap.

use std::collections::BTreeMap;
use std::fmt;

use allocative::Allocative;
use kiln_core::PropertyValue;
use starlark::environment::{Methods, MethodsBuilder, MethodsStatic};
use starlark::values::dict::{AllocDict, DictRef};
use starlark::values::list::AllocList;
use starlark::values::none::NoneType;
use starlark::values::starlark_value;
use starlark::values::{Heap, NoSerialize, ProvidesStaticType, StarlarkValue, Value};
use starlark::{starlark_module, starlark_simple_value};

use crate::functions::to_data;

pub use object::PropertiesValue;

/// The type on its own: starlark's `ProvidesStaticType` derive, its way to give a type an
/// identity, writes an `unsafe impl`, allowed here and nowhere else.
#[allow(unsafe_code)]
mod object {
    use super::*;

    /// A build's (or a change's, or a request's) properties, by name.
    #[derive(Debug, ProvidesStaticType, NoSerialize, Allocative)]
    pub struct PropertiesValue {
        #[allocative(skip)]
        pub(super) map: BTreeMap<String, PropertyValue>,
    }
}

starlark_simple_value!(PropertiesValue);

impl fmt::Display for PropertiesValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Properties(")?;
        for (i, (k, v)) in self.map.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{k}={}", v.render())?;
        }
        write!(f, ")")
    }
}

/// A property as a Starlark value.
fn alloc<'v>(heap: Heap<'v>, v: &PropertyValue) -> Value<'v> {
    match v {
        PropertyValue::Null => Value::new_none(),
        PropertyValue::Bool(b) => Value::new_bool(*b),
        PropertyValue::Int(i) => heap.alloc(*i),
        PropertyValue::Float(f) => heap.alloc(*f),
        PropertyValue::Str(s) => heap.alloc(s.as_str()),
        PropertyValue::List(items) => heap.alloc(AllocList(
            items.iter().map(|i| alloc(heap, i)).collect::<Vec<_>>(),
        )),
        PropertyValue::Map(m) => heap.alloc(AllocDict(
            m.iter()
                .map(|(k, v)| (heap.alloc(k.as_str()), alloc(heap, v)))
                .collect::<Vec<_>>(),
        )),
    }
}

impl PropertiesValue {
    /// The property's value, or `default`.
    fn lookup<'v>(&self, name: &str, default: Value<'v>, heap: Heap<'v>) -> Value<'v> {
        self.map.get(name).map_or(default, |v| alloc(heap, v))
    }

    /// The properties of a Starlark dict of name to value.
    pub fn from_dict(d: Value) -> anyhow::Result<PropertiesValue> {
        let dict =
            DictRef::from_value(d).ok_or_else(|| anyhow::anyhow!("properties must be a dict"))?;
        let mut map = BTreeMap::new();
        for (k, v) in dict.iter() {
            let name = k
                .unpack_str()
                .ok_or_else(|| anyhow::anyhow!("a property's name must be a string"))?;
            let value = to_data(v, 0)
                .to_property()
                .map_err(|e| anyhow::anyhow!("property {name}: {e}"))?;
            map.insert(name.to_string(), value);
        }
        Ok(PropertiesValue { map })
    }
}

#[starlark_value(type = "Properties")]
impl<'v> StarlarkValue<'v> for PropertiesValue {
    fn at(&self, index: Value<'v>, heap: Heap<'v>) -> starlark::Result<Value<'v>> {
        let name = index.unpack_str().unwrap_or_default();
        match self.map.get(name) {
            Some(v) => Ok(alloc(heap, v)),
            None => Err(starlark::Error::new_other(anyhow::anyhow!(
                "property '{name}' not found"
            ))),
        }
    }

    fn is_in(&self, other: Value<'v>) -> starlark::Result<bool> {
        Ok(other
            .unpack_str()
            .is_some_and(|name| self.map.contains_key(name)))
    }

    fn get_methods() -> Option<&'static Methods> {
        static METHODS: MethodsStatic = MethodsStatic::new("Properties", properties_methods);
        Some(METHODS.methods())
    }
}

#[starlark_module]
#[allow(non_snake_case)]
fn properties_methods(builder: &mut MethodsBuilder) {
    /// The property's value, or `default`.
    fn getProperty<'v>(
        this: &PropertiesValue,
        name: &str,
        #[starlark(default = NoneType)] default: Value<'v>,
        heap: Heap<'v>,
    ) -> anyhow::Result<Value<'v>> {
        Ok(this.lookup(name, default, heap))
    }

    /// Like `getProperty`, as a dict's `get`.
    fn get<'v>(
        this: &PropertiesValue,
        name: &str,
        #[starlark(default = NoneType)] default: Value<'v>,
        heap: Heap<'v>,
    ) -> anyhow::Result<Value<'v>> {
        Ok(this.lookup(name, default, heap))
    }

    fn hasProperty(this: &PropertiesValue, name: &str) -> anyhow::Result<bool> {
        Ok(this.map.contains_key(name))
    }

    fn has_key(this: &PropertiesValue, name: &str) -> anyhow::Result<bool> {
        Ok(this.map.contains_key(name))
    }

    fn keys<'v>(this: &PropertiesValue, heap: Heap<'v>) -> anyhow::Result<Value<'v>> {
        Ok(heap.alloc(AllocList(
            this.map
                .keys()
                .map(|k| heap.alloc(k.as_str()))
                .collect::<Vec<_>>(),
        )))
    }

    /// The properties as a dict of name to value.
    fn asDict<'v>(this: &PropertiesValue, heap: Heap<'v>) -> anyhow::Result<Value<'v>> {
        Ok(heap.alloc(AllocDict(
            this.map
                .iter()
                .map(|(k, v)| (heap.alloc(k.as_str()), alloc(heap, v)))
                .collect::<Vec<_>>(),
        )))
    }

    fn items<'v>(this: &PropertiesValue, heap: Heap<'v>) -> anyhow::Result<Value<'v>> {
        let pairs: Vec<Value> = this
            .map
            .iter()
            .map(|(k, v)| heap.alloc((heap.alloc(k.as_str()), alloc(heap, v))))
            .collect();
        Ok(heap.alloc(AllocList(pairs)))
    }
}

#[starlark_module]
pub fn natives(builder: &mut starlark::environment::GlobalsBuilder) {
    /// Buildbot's properties object of a dict of name to value.
    fn _properties(d: Value) -> anyhow::Result<PropertiesValue> {
        PropertiesValue::from_dict(d)
    }
}
