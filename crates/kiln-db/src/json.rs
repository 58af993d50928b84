//! Property values as the JSON stored in the database.

use kiln_core::PropertyValue;
use serde_json::Value;

pub fn property_to_json(v: &PropertyValue) -> Value {
    match v {
        PropertyValue::Null => Value::Null,
        PropertyValue::Bool(b) => Value::Bool(*b),
        PropertyValue::Int(i) => Value::from(*i),
        PropertyValue::Float(f) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        PropertyValue::Str(s) => Value::String(s.clone()),
        PropertyValue::List(l) => Value::Array(l.iter().map(property_to_json).collect()),
        PropertyValue::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), property_to_json(v)))
                .collect(),
        ),
    }
}

pub fn json_to_property(v: &Value) -> PropertyValue {
    match v {
        Value::Null => PropertyValue::Null,
        Value::Bool(b) => PropertyValue::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(PropertyValue::Int)
            .unwrap_or_else(|| PropertyValue::Float(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => PropertyValue::Str(s.clone()),
        Value::Array(a) => PropertyValue::List(a.iter().map(json_to_property).collect()),
        Value::Object(o) => PropertyValue::Map(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_property(v)))
                .collect(),
        ),
    }
}
