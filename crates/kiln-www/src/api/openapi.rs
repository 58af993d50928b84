//! `openapi.json`: the REST API described as an OpenAPI 3.0 document, made from the same table
//! of endpoints and types as `application.spec`, so that generic tools (schemathesis, client
//! generators) can drive it. Every path is a `GET` (the ways Buildbot names one place of a path,
//! by number or by name, share one path) whose answer is the endpoint's plural
//! holding a list of its type, and `meta` (as JSON when asked for, else as indented text); the
//! logs' `raw` forms are plain text.

use serde_json::{Map, Value, json};

use super::spec::{ENDPOINTS, TYPES};

/// The whole document.
pub fn document() -> Value {
    let mut paths = Map::new();
    // Buildbot names a resource several ways at one place of a path (`builders/n:builderid` and
    // `builders/s:buildername`); OpenAPI takes one path per shape, so the later ways widen the
    // first one's parameters rather than add paths of their own.
    let mut shapes: Vec<(String, String)> = Vec::new();
    for (path, ty, plural) in ENDPOINTS {
        let (template, parameters) = path_template(path);
        let shape = shape_of(path);
        match shapes.iter().find(|(s, _)| *s == shape) {
            Some((_, first)) => {
                let op = &mut paths[first.as_str()]["get"];
                widen(&mut op["parameters"], &parameters);
            }
            None => {
                let op = operation(path, ty, plural, parameters);
                paths.insert(template.clone(), json!({ "get": op }));
                shapes.push((shape, template));
            }
        }
    }
    let schemas: Map<String, Value> = TYPES
        .iter()
        .map(|(name, fields)| (name.to_string(), object_schema(fields)))
        .collect();
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "kiln REST API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Buildbot's data API, version 2, as kiln serves it.",
        },
        "servers": [{ "url": "/api/v2" }],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "What was wrong with the request.",
                    "content": { "application/json": { "schema": {
                        "type": "object",
                        "properties": { "error": { "type": "string" } },
                        "required": ["error"],
                    } } },
                },
            },
        },
    })
}

/// An endpoint's path in OpenAPI's form (`/builders/{builderid}`) and its path parameters.
/// Buildbot's path patterns mark a number `n:`, an identifier `i:` and anything else `:`.
fn path_template(path: &str) -> (String, Vec<Value>) {
    let mut parameters = Vec::new();
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|segment| match segment.split_once(':') {
            Some((kind, name)) => {
                let schema = match kind {
                    "n" => json!({ "type": "integer" }),
                    "i" => json!({ "type": "string", "pattern": "^[a-zA-Z_-][a-zA-Z0-9_-]*$" }),
                    _ => json!({ "type": "string" }),
                };
                parameters.push(json!({
                    "name": name, "in": "path", "required": true, "schema": schema,
                }));
                format!("{{{name}}}")
            }
            None => segment.to_string(),
        })
        .collect();
    (format!("/{}", segments.join("/")), parameters)
}

/// A path with each parameter's place marked alike: `builders/{}/builds`.
fn shape_of(path: &str) -> String {
    path.split('/')
        .map(|segment| if segment.contains(':') { "{}" } else { segment })
        .collect::<Vec<_>>()
        .join("/")
}

/// Widens the path parameters of an operation to take another way of naming the same places:
/// a place named both by number and by name takes any string.
fn widen(parameters: &mut Value, other: &[Value]) {
    let Some(parameters) = parameters.as_array_mut() else {
        return;
    };
    let path_params = parameters.iter_mut().filter(|p| p["in"] == "path");
    for (mine, theirs) in path_params.zip(other) {
        if mine["schema"] != theirs["schema"] {
            mine["schema"] = json!({ "type": "string" });
        }
        if mine["name"] != theirs["name"] {
            let also = format!("or its {}", theirs["name"].as_str().unwrap_or_default());
            let description = match mine["description"].as_str() {
                Some(d) => format!("{d}, {also}"),
                None => also,
            };
            mine["description"] = json!(description);
        }
    }
}

/// The `GET` of one endpoint.
fn operation(path: &str, ty: &str, plural: &str, mut parameters: Vec<Value>) -> Value {
    let raw = path.ends_with("/raw") || path.ends_with("/raw_inline");
    let ok = if raw {
        json!({
            "description": "The log's text.",
            "content": { "text/plain": { "schema": { "type": "string" } } },
        })
    } else {
        parameters.extend(query_parameters());
        let schema = json!({
            "type": "object",
            "properties": {
                (plural): { "type": "array", "items": reference(ty) },
                "meta": { "type": "object" },
            },
            "required": [plural, "meta"],
        });
        // A client that does not ask for JSON (a browser) gets the same document indented, as
        // text, as Buildbot answers it.
        json!({
            "description": format!("The {plural}."),
            "content": {
                "application/json": { "schema": schema },
                "text/plain": { "schema": { "type": "string" } },
            },
        })
    };
    json!({
        "operationId": format!("get {path}"),
        "parameters": parameters,
        "responses": {
            "200": ok,
            "400": { "$ref": "#/components/responses/Error" },
            "404": { "$ref": "#/components/responses/Error" },
        },
    })
}

/// The query arguments every listing takes; filters on fields (`name__contains=…`) are taken
/// too, but are not enumerated here.
fn query_parameters() -> Vec<Value> {
    let param = |name: &str, schema: Value, what: &str| json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": what });
    vec![
        param(
            "limit",
            json!({ "type": "integer", "minimum": 0 }),
            "at most this many",
        ),
        param(
            "offset",
            json!({ "type": "integer", "minimum": 0 }),
            "skip this many first",
        ),
        param(
            "order",
            json!({ "type": "string" }),
            "a field to order by, `-` first for descending",
        ),
        param(
            "field",
            json!({ "type": "string" }),
            "a field to include (all when none is named)",
        ),
        param(
            "property",
            json!({ "type": "string" }),
            "a build property to include, `*` for all",
        ),
    ]
}

/// A type of [`TYPES`], or a schema for a type without fields of its own.
fn reference(ty: &str) -> Value {
    if TYPES.iter().any(|(name, _)| *name == ty) {
        json!({ "$ref": format!("#/components/schemas/{ty}") })
    } else {
        scalar(ty)
    }
}

/// An object of `fields`. None is required: `field=` chooses which a client gets.
fn object_schema(fields: &[(&str, &str)]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|(name, notation)| (name.to_string(), field_schema(notation)))
        .collect();
    json!({ "type": "object", "properties": properties })
}

/// A field's schema from the notation of [`TYPES`] (`integer`, `string?`, `[master]`).
fn field_schema(notation: &str) -> Value {
    if let Some(element) = notation.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return json!({ "type": "array", "items": field_schema(element) });
    }
    let Some(name) = notation.strip_suffix('?') else {
        return reference(notation);
    };
    match reference(name) {
        // OpenAPI 3.0 takes `nullable` beside a `$ref` only through `allOf`.
        r if r.get("$ref").is_some() => json!({ "allOf": [r], "nullable": true }),
        // A value of any type may already be null.
        r if r.as_object().is_some_and(Map::is_empty) => r,
        mut r => {
            r["nullable"] = json!(true);
            r
        }
    }
}

/// A type without fields of its own.
fn scalar(name: &str) -> Value {
    match name {
        "integer" | "datetime" => json!({ "type": "integer" }),
        "boolean" => json!({ "type": "boolean" }),
        "string" | "identifier" | "binary" => json!({ "type": "string" }),
        "sourcedproperties" => json!({ "type": "object" }),
        // `jsonobject` and anything else: any JSON value.
        _ => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parameters_and_types_are_described() {
        let doc = document();
        let builds = &doc["paths"]["/builders/{builderid}/builds/{build_number}"]["get"];
        let names: Vec<&str> = builds["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "builderid",
                "build_number",
                "limit",
                "offset",
                "order",
                "field",
                "property"
            ]
        );
        // A build's number is a number; its builder may be named either way.
        assert_eq!(builds["parameters"][1]["schema"]["type"], "integer");
        assert_eq!(builds["parameters"][0]["schema"]["type"], "string");
        let schema = &builds["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(
            schema["properties"]["builds"]["items"]["$ref"],
            "#/components/schemas/build"
        );
        let raw = &doc["paths"]["/logs/{logid}/raw"]["get"]["responses"]["200"]["content"];
        assert!(raw.get("text/plain").is_some(), "{raw}");
        assert!(doc["paths"].get("/").is_some());
        // One path per shape: a builder by number or by name is one place taking any string.
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.get("/builders/{buildername}").is_none());
        let builder = &paths["/builders/{builderid}"]["get"]["parameters"][0];
        assert_eq!(builder["schema"], json!({"type": "string"}));
        assert_eq!(builder["description"], "or its buildername");
        let shapes: std::collections::BTreeSet<String> = paths
            .keys()
            .map(|p| {
                p.split('/')
                    .map(|s| if s.starts_with('{') { "{}" } else { s })
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        assert_eq!(shapes.len(), paths.len(), "two paths of one shape");
        assert_eq!(
            field_schema("string?"),
            json!({"type": "string", "nullable": true})
        );
        assert_eq!(
            field_schema("master?"),
            json!({"allOf": [{"$ref": "#/components/schemas/master"}], "nullable": true})
        );
        assert_eq!(
            field_schema("[integer]"),
            json!({"type": "array", "items": {"type": "integer"}})
        );
        // Every reference names a described schema.
        let text = doc.to_string();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(doc["components"]["schemas"].get(name).is_some(), "{name}");
        }
    }
}
