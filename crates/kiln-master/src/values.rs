//! Conversions between the value types at kiln's edges: MessagePack (worker protocol), JSON (REST
//! and the database) and property values (the core).

use kiln_core::PropertyValue;
use kiln_proto::Value;

pub fn msgpack_to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil => serde_json::Value::Null,
        Value::Boolean(b) => serde_json::Value::Bool(*b),
        Value::Integer(i) => i
            .as_i64()
            .map(serde_json::Value::from)
            .or_else(|| i.as_u64().map(serde_json::Value::from))
            .unwrap_or(serde_json::Value::Null),
        Value::F32(f) => serde_json::Value::from(f64::from(*f)),
        Value::F64(f) => serde_json::Value::from(*f),
        Value::String(s) => serde_json::Value::String(
            s.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(s.as_bytes()).into_owned()),
        ),
        Value::Binary(b) => serde_json::Value::String(String::from_utf8_lossy(b).into_owned()),
        Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(msgpack_to_json).collect())
        }
        Value::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| k.to_string()),
                        msgpack_to_json(v),
                    )
                })
                .collect(),
        ),
        Value::Ext(_, _) => serde_json::Value::Null,
    }
}

pub fn property_to_msgpack(v: &PropertyValue) -> Value {
    match v {
        PropertyValue::Null => Value::Nil,
        PropertyValue::Bool(b) => Value::Boolean(*b),
        PropertyValue::Int(i) => Value::from(*i),
        PropertyValue::Float(f) => Value::F64(*f),
        PropertyValue::Str(s) => Value::from(s.as_str()),
        PropertyValue::List(items) => Value::Array(items.iter().map(property_to_msgpack).collect()),
        PropertyValue::Map(m) => Value::Map(
            m.iter()
                .map(|(k, v)| (Value::from(k.as_str()), property_to_msgpack(v)))
                .collect(),
        ),
    }
}

pub fn json_to_property(v: &serde_json::Value) -> PropertyValue {
    kiln_db::json_to_property(v)
}

pub fn property_to_json(v: &PropertyValue) -> serde_json::Value {
    kiln_db::property_to_json(v)
}
