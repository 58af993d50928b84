//! Entry points for the fuzz targets of `fuzz/`: the decoders of what the web port receives,
//! reachable without a running master. Compiled only when fuzzing (`--cfg fuzzing`).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// The change hook dialects whose requests carry a payload to decode.
pub const DIALECTS: &[&str] = crate::hooks::PARSED_DIALECTS;

/// A change hook request of `dialect`: its query string, headers and body, decoded as the hook
/// decodes them. The answer is dropped; what matters is that decoding never panics.
pub fn hook(dialect: &str, query: Option<&str>, headers: &[(&str, &[u8])], body: &[u8]) {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            map.append(name, value);
        }
    }
    let _ = crate::hooks::parse(dialect, &BTreeMap::new(), query, &map, body, 0);
}

/// A REST query string, parsed against the fields of every kind of resource.
pub fn rest_query(raw: &str) {
    for ty in crate::api::fields::Ty::ALL {
        let _ = crate::api::query::parse(raw, ty.fields(), &[]);
    }
}

/// A JSON-RPC request body, read as the control endpoints read it; its parameters when the
/// envelope is sound.
pub fn jsonrpc(body: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    crate::api::control::envelope(body)
        .ok()
        .map(|call| call.params)
}
