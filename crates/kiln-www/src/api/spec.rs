//! `application.spec`: every endpoint of the REST API and the fields of what it returns, in the
//! form Buildbot describes its own (its front-end's About page lists them).
//!
//! A field's type is written in a short notation here and spelled out as Buildbot does when the
//! spec is served: `integer`, `string?` (may be null, "string or None"), `[integer]` (a list of),
//! or the name of another type of [`TYPES`] whose fields are nested (`master?`, `[sourcestamp]`).

use serde_json::{Value, json};

/// Each type of resource and its fields, in the order the API gives them.
pub(super) const TYPES: &[(&str, &[(&str, &str)])] = &[
    ("rootlink", &[("name", "string")]),
    (
        "spec",
        &[
            ("path", "string"),
            ("type", "string"),
            ("plural", "string"),
            ("type_spec", "jsonobject"),
        ],
    ),
    (
        "builder",
        &[
            ("builderid", "integer"),
            ("name", "string"),
            ("masterids", "[integer]"),
            ("description", "string?"),
            ("description_format", "string?"),
            ("description_html", "string?"),
            ("projectid", "integer?"),
            ("tags", "[string]"),
        ],
    ),
    (
        "forcescheduler",
        &[
            ("name", "identifier"),
            ("button_name", "string"),
            ("label", "string"),
            ("builder_names", "[identifier]"),
            ("enabled", "boolean"),
            ("all_fields", "[jsonobject]"),
        ],
    ),
    (
        "buildrequest",
        &[
            ("buildrequestid", "integer"),
            ("buildsetid", "integer"),
            ("builderid", "integer"),
            ("priority", "integer"),
            ("claimed", "boolean"),
            ("claimed_at", "datetime?"),
            ("claimed_by_masterid", "integer?"),
            ("complete", "boolean"),
            ("results", "integer?"),
            ("submitted_at", "datetime"),
            ("complete_at", "datetime?"),
            ("waited_for", "boolean"),
            ("properties", "sourcedproperties?"),
        ],
    ),
    (
        "build",
        &[
            ("buildid", "integer"),
            ("number", "integer"),
            ("builderid", "integer"),
            ("buildrequestid", "integer"),
            ("workerid", "integer"),
            ("masterid", "integer"),
            ("started_at", "datetime"),
            ("complete", "boolean"),
            ("complete_at", "datetime?"),
            ("locks_duration_s", "integer"),
            ("results", "integer?"),
            ("state_string", "string"),
            ("properties", "sourcedproperties?"),
        ],
    ),
    (
        "change",
        &[
            ("changeid", "integer"),
            ("parent_changeids", "[integer]"),
            ("author", "string"),
            // Buildbot's spec says a string, and it answers null when a change has none.
            ("committer", "string?"),
            ("files", "[string]"),
            ("comments", "string"),
            ("revision", "string?"),
            ("when_timestamp", "integer"),
            ("branch", "string?"),
            ("category", "string?"),
            ("revlink", "string?"),
            ("properties", "sourcedproperties"),
            ("repository", "string"),
            ("project", "string"),
            ("codebase", "string"),
            ("sourcestamp", "sourcestamp"),
        ],
    ),
    (
        "build_data",
        &[
            ("buildid", "integer"),
            ("name", "string"),
            ("length", "integer"),
            ("value", "binary?"),
            ("source", "string"),
        ],
    ),
    (
        "step",
        &[
            ("stepid", "integer"),
            ("number", "integer"),
            ("name", "identifier"),
            ("buildid", "integer"),
            ("started_at", "datetime?"),
            ("locks_acquired_at", "datetime?"),
            ("complete", "boolean"),
            ("complete_at", "datetime?"),
            ("results", "integer?"),
            ("state_string", "string"),
            ("urls", "[Url]"),
            ("hidden", "boolean"),
        ],
    ),
    ("Url", &[("name", "string"), ("url", "string")]),
    (
        "log",
        &[
            ("logid", "integer"),
            ("name", "string"),
            ("slug", "identifier"),
            ("stepid", "integer"),
            ("complete", "boolean"),
            ("num_lines", "integer"),
            ("type", "identifier"),
        ],
    ),
    (
        "logchunk",
        &[
            ("logid", "integer"),
            ("firstline", "integer"),
            ("content", "string"),
        ],
    ),
    (
        "master",
        &[
            ("masterid", "integer"),
            ("name", "string"),
            ("active", "boolean"),
            ("last_active", "datetime"),
        ],
    ),
    (
        "test_result_set",
        &[
            ("test_result_setid", "integer"),
            ("builderid", "integer"),
            ("buildid", "integer"),
            ("stepid", "integer"),
            ("description", "string?"),
            ("category", "string"),
            ("value_unit", "string"),
            ("tests_passed", "integer?"),
            ("tests_failed", "integer?"),
            ("complete", "boolean"),
        ],
    ),
    (
        "worker",
        &[
            ("workerid", "integer"),
            ("name", "string"),
            ("connected_to", "[master_id]"),
            ("configured_on", "[master_builder]"),
            ("workerinfo", "jsonobject"),
            ("paused", "boolean"),
            ("pause_reason", "string?"),
            ("graceful", "boolean"),
        ],
    ),
    ("master_id", &[("masterid", "integer")]),
    (
        "master_builder",
        &[("masterid", "integer"), ("builderid", "integer")],
    ),
    (
        "_property",
        &[
            ("name", "string"),
            ("source", "string"),
            ("value", "jsonobject"),
        ],
    ),
    (
        "buildset",
        &[
            ("bsid", "integer"),
            ("external_idstring", "string?"),
            ("reason", "string"),
            ("rebuilt_buildid", "integer?"),
            ("submitted_at", "integer"),
            ("complete", "boolean"),
            ("complete_at", "integer?"),
            ("results", "integer?"),
            ("sourcestamps", "[sourcestamp]"),
            ("parent_buildid", "integer?"),
            ("parent_relationship", "string?"),
        ],
    ),
    (
        "sourcestamp",
        &[
            ("ssid", "integer"),
            ("revision", "string?"),
            ("branch", "string?"),
            ("repository", "string"),
            ("project", "string"),
            ("codebase", "string"),
            ("patch", "patch?"),
            ("created_at", "datetime"),
        ],
    ),
    (
        "patch",
        &[
            ("patchid", "integer"),
            ("body", "binary"),
            ("level", "integer"),
            ("subdir", "string"),
            ("author", "string"),
            ("comment", "string"),
        ],
    ),
    (
        "changesource",
        &[
            ("changesourceid", "integer"),
            ("name", "string"),
            ("master", "master?"),
        ],
    ),
    (
        "scheduler",
        &[
            ("schedulerid", "integer"),
            ("name", "string"),
            ("enabled", "boolean"),
            ("master", "master?"),
        ],
    ),
    (
        "project",
        &[
            ("projectid", "integer"),
            ("name", "identifier"),
            ("slug", "identifier"),
            ("active", "boolean?"),
            ("description", "string?"),
            ("description_format", "string?"),
            ("description_html", "string?"),
        ],
    ),
    (
        "test_result",
        &[
            ("test_resultid", "integer"),
            ("builderid", "integer"),
            ("test_result_setid", "integer"),
            ("test_name", "string?"),
            ("test_code_path", "string?"),
            ("line", "integer?"),
            ("duration_ns", "integer?"),
            ("value", "string"),
        ],
    ),
    // kiln's own resources.
    (
        "reporter",
        &[
            ("name", "string"),
            ("class", "string"),
            ("generators", "[string]"),
            ("pending", "integer"),
            ("sent", "integer"),
            ("failed", "integer"),
            ("last_success_at", "datetime?"),
            ("last_error", "string?"),
            ("last_error_at", "datetime?"),
        ],
    ),
    (
        "user",
        &[
            ("uid", "integer"),
            ("identifier", "string"),
            ("bb_username", "string?"),
            ("attributes", "jsonobject"),
        ],
    ),
    (
        "build_users",
        &[
            ("buildid", "integer"),
            ("blamelist", "[string]"),
            ("owners", "[string]"),
            ("interested_users", "[string]"),
        ],
    ),
];

/// Every endpoint: its path in Buildbot's notation (`n:` a number, `i:` an identifier, `s:` a
/// string), the type it returns, and the key its answer lists them under.
pub const ENDPOINTS: &[(&str, &str, &str)] = &[
    ("", "rootlink", "rootlinks"),
    ("application.spec", "spec", "specs"),
    ("builders", "builder", "builders"),
    (
        "builders/:builderid/forceschedulers",
        "forcescheduler",
        "forceschedulers",
    ),
    ("builders/n:builderid", "builder", "builders"),
    (
        "builders/n:builderid/buildrequests",
        "buildrequest",
        "buildrequests",
    ),
    ("builders/n:builderid/builds", "build", "builds"),
    (
        "builders/n:builderid/builds/n:build_number",
        "build",
        "builds",
    ),
    (
        "builders/n:builderid/builds/n:build_number/changes",
        "change",
        "changes",
    ),
    (
        "builders/n:builderid/builds/n:build_number/data",
        "build_data",
        "build_data",
    ),
    (
        "builders/n:builderid/builds/n:build_number/data/i:name",
        "build_data",
        "build_data",
    ),
    (
        "builders/n:builderid/builds/n:build_number/data/i:name/value",
        "build_data",
        "build_data",
    ),
    (
        "builders/n:builderid/builds/n:build_number/properties",
        "sourcedproperties",
        "properties",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps",
        "step",
        "steps",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/i:step_name",
        "step",
        "steps",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/i:step_name/logs",
        "log",
        "logs",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/i:step_name/logs/i:log_slug",
        "log",
        "logs",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/i:step_name/logs/i:log_slug/contents",
        "logchunk",
        "logchunks",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/i:step_name/logs/i:log_slug/raw",
        "logchunk",
        "logchunks",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/i:step_name/logs/i:log_slug/raw_inline",
        "logchunk",
        "logchunks",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/n:step_number",
        "step",
        "steps",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/n:step_number/logs",
        "log",
        "logs",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/n:step_number/logs/i:log_slug",
        "log",
        "logs",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/n:step_number/logs/i:log_slug/contents",
        "logchunk",
        "logchunks",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/n:step_number/logs/i:log_slug/raw",
        "logchunk",
        "logchunks",
    ),
    (
        "builders/n:builderid/builds/n:build_number/steps/n:step_number/logs/i:log_slug/raw_inline",
        "logchunk",
        "logchunks",
    ),
    ("builders/n:builderid/masters", "master", "masters"),
    (
        "builders/n:builderid/masters/n:masterid",
        "master",
        "masters",
    ),
    (
        "builders/n:builderid/test_result_sets",
        "test_result_set",
        "test_result_sets",
    ),
    (
        "builders/n:builderid/test_results",
        "test_result",
        "test_results",
    ),
    ("builders/n:builderid/workers", "worker", "workers"),
    ("builders/n:builderid/workers/i:name", "worker", "workers"),
    (
        "builders/n:builderid/workers/n:workerid",
        "worker",
        "workers",
    ),
    ("builders/s:buildername", "builder", "builders"),
    ("builders/s:buildername/builds", "build", "builds"),
    (
        "builders/s:buildername/builds/n:build_number",
        "build",
        "builds",
    ),
    (
        "builders/s:buildername/builds/n:build_number/data",
        "build_data",
        "build_data",
    ),
    (
        "builders/s:buildername/builds/n:build_number/data/i:name",
        "build_data",
        "build_data",
    ),
    (
        "builders/s:buildername/builds/n:build_number/data/i:name/value",
        "build_data",
        "build_data",
    ),
    (
        "builders/s:buildername/builds/n:build_number/steps",
        "step",
        "steps",
    ),
    (
        "builders/s:buildername/builds/n:build_number/steps/i:step_name",
        "step",
        "steps",
    ),
    (
        "builders/s:buildername/builds/n:build_number/steps/i:step_name/logs",
        "log",
        "logs",
    ),
    (
        "builders/s:buildername/builds/n:build_number/steps/i:step_name/logs/i:log_slug",
        "log",
        "logs",
    ),
    (
        "builders/s:buildername/builds/n:build_number/steps/n:step_number",
        "step",
        "steps",
    ),
    (
        "builders/s:buildername/builds/n:build_number/steps/n:step_number/logs",
        "log",
        "logs",
    ),
    (
        "builders/s:buildername/builds/n:build_number/steps/n:step_number/logs/i:log_slug",
        "log",
        "logs",
    ),
    (
        "builders/s:buildername/test_result_sets",
        "test_result_set",
        "test_result_sets",
    ),
    ("buildrequests", "buildrequest", "buildrequests"),
    (
        "buildrequests/n:buildrequestid",
        "buildrequest",
        "buildrequests",
    ),
    ("buildrequests/n:buildrequestid/builds", "build", "builds"),
    ("builds", "build", "builds"),
    ("builds/n:buildid", "build", "builds"),
    ("builds/n:buildid/changes", "change", "changes"),
    ("builds/n:buildid/data", "build_data", "build_data"),
    ("builds/n:buildid/data/i:name", "build_data", "build_data"),
    (
        "builds/n:buildid/data/i:name/value",
        "build_data",
        "build_data",
    ),
    (
        "builds/n:buildid/properties",
        "sourcedproperties",
        "properties",
    ),
    ("builds/n:buildid/property_list", "_property", "_properties"),
    ("builds/n:buildid/steps", "step", "steps"),
    ("builds/n:buildid/steps/i:step_name", "step", "steps"),
    ("builds/n:buildid/steps/i:step_name/logs", "log", "logs"),
    (
        "builds/n:buildid/steps/i:step_name/logs/i:log_slug",
        "log",
        "logs",
    ),
    (
        "builds/n:buildid/steps/i:step_name/logs/i:log_slug/contents",
        "logchunk",
        "logchunks",
    ),
    (
        "builds/n:buildid/steps/i:step_name/logs/i:log_slug/raw",
        "logchunk",
        "logchunks",
    ),
    (
        "builds/n:buildid/steps/i:step_name/logs/i:log_slug/raw_inline",
        "logchunk",
        "logchunks",
    ),
    ("builds/n:buildid/steps/n:step_number", "step", "steps"),
    ("builds/n:buildid/steps/n:step_number/logs", "log", "logs"),
    (
        "builds/n:buildid/steps/n:step_number/logs/i:log_slug",
        "log",
        "logs",
    ),
    (
        "builds/n:buildid/steps/n:step_number/logs/i:log_slug/contents",
        "logchunk",
        "logchunks",
    ),
    (
        "builds/n:buildid/steps/n:step_number/logs/i:log_slug/raw",
        "logchunk",
        "logchunks",
    ),
    (
        "builds/n:buildid/steps/n:step_number/logs/i:log_slug/raw_inline",
        "logchunk",
        "logchunks",
    ),
    (
        "builds/n:buildid/test_result_sets",
        "test_result_set",
        "test_result_sets",
    ),
    ("builds/n:buildid/triggered_builds", "build", "builds"),
    ("builds/n:buildid/users", "build_users", "users"),
    ("buildsets", "buildset", "buildsets"),
    (
        "buildsets/:buildsetid/sourcestamps",
        "sourcestamp",
        "sourcestamps",
    ),
    ("buildsets/n:bsid", "buildset", "buildsets"),
    (
        "buildsets/n:bsid/properties",
        "sourcedproperties",
        "properties",
    ),
    (
        "buildsets/n:bsid/properties_list",
        "_property",
        "_properties",
    ),
    ("changes", "change", "changes"),
    ("changes/n:changeid", "change", "changes"),
    ("changes/n:changeid/builds", "build", "builds"),
    (
        "changes/n:changeid/properties_list",
        "_property",
        "_properties",
    ),
    ("changesources", "changesource", "changesources"),
    (
        "changesources/n:changesourceid",
        "changesource",
        "changesources",
    ),
    ("forceschedulers", "forcescheduler", "forceschedulers"),
    (
        "forceschedulers/i:schedulername",
        "forcescheduler",
        "forceschedulers",
    ),
    ("logs/n:logid", "log", "logs"),
    ("logs/n:logid/contents", "logchunk", "logchunks"),
    ("logs/n:logid/raw", "logchunk", "logchunks"),
    ("logs/n:logid/raw_inline", "logchunk", "logchunks"),
    ("masters", "master", "masters"),
    ("masters/n:masterid", "master", "masters"),
    ("masters/n:masterid/builders", "builder", "builders"),
    (
        "masters/n:masterid/builders/n:builderid",
        "builder",
        "builders",
    ),
    (
        "masters/n:masterid/builders/n:builderid/workers",
        "worker",
        "workers",
    ),
    (
        "masters/n:masterid/builders/n:builderid/workers/i:name",
        "worker",
        "workers",
    ),
    (
        "masters/n:masterid/builders/n:builderid/workers/n:workerid",
        "worker",
        "workers",
    ),
    (
        "masters/n:masterid/changesources",
        "changesource",
        "changesources",
    ),
    (
        "masters/n:masterid/changesources/n:changesourceid",
        "changesource",
        "changesources",
    ),
    ("masters/n:masterid/schedulers", "scheduler", "schedulers"),
    (
        "masters/n:masterid/schedulers/n:schedulerid",
        "scheduler",
        "schedulers",
    ),
    ("masters/n:masterid/workers", "worker", "workers"),
    ("masters/n:masterid/workers/i:name", "worker", "workers"),
    ("masters/n:masterid/workers/n:workerid", "worker", "workers"),
    ("projects", "project", "projects"),
    ("projects/i:projectname", "project", "projects"),
    ("projects/n:projectid", "project", "projects"),
    ("projects/n:projectid/builders", "builder", "builders"),
    ("reporters", "reporter", "reporters"),
    ("reporters/i:name", "reporter", "reporters"),
    ("schedulers", "scheduler", "schedulers"),
    ("schedulers/n:schedulerid", "scheduler", "schedulers"),
    ("sourcestamps", "sourcestamp", "sourcestamps"),
    ("sourcestamps/n:ssid", "sourcestamp", "sourcestamps"),
    ("sourcestamps/n:ssid/changes", "change", "changes"),
    ("steps/n:stepid", "step", "steps"),
    ("steps/n:stepid/logs", "log", "logs"),
    ("steps/n:stepid/logs/i:log_slug", "log", "logs"),
    (
        "steps/n:stepid/logs/i:log_slug/contents",
        "logchunk",
        "logchunks",
    ),
    (
        "steps/n:stepid/logs/i:log_slug/raw",
        "logchunk",
        "logchunks",
    ),
    (
        "steps/n:stepid/logs/i:log_slug/raw_inline",
        "logchunk",
        "logchunks",
    ),
    (
        "steps/n:stepid/test_result_sets",
        "test_result_set",
        "test_result_sets",
    ),
    ("test_result_sets", "test_result_set", "test_result_sets"),
    (
        "test_result_sets/n:test_result_setid",
        "test_result_set",
        "test_result_sets",
    ),
    (
        "test_result_sets/n:test_result_setid/results",
        "test_result",
        "test_results",
    ),
    ("test_results", "test_result", "test_results"),
    ("users", "user", "users"),
    ("users/i:identifier", "user", "users"),
    ("workers", "worker", "workers"),
    ("workers/i:name", "worker", "workers"),
    ("workers/n:workerid", "worker", "workers"),
    ("workers/n:workerid/builders", "builder", "builders"),
    ("workers/n:workerid/builds", "build", "builds"),
];

/// The spec of every endpoint.
pub fn specs() -> Vec<Value> {
    ENDPOINTS
        .iter()
        .map(|(path, ty, plural)| {
            json!({"path": path, "plural": plural, "type": ty, "type_spec": type_spec(ty)})
        })
        .collect()
}

/// A type of resource as the spec of an endpoint gives it: its fields, each with its type.
fn type_spec(ty: &str) -> Value {
    match TYPES.iter().find(|(name, _)| *name == ty) {
        Some((_, fields)) => {
            let fields: Vec<Value> = fields
                .iter()
                .map(|(name, notation)| {
                    let (words, spec) = field_type(notation);
                    json!({"name": name, "type": words, "type_spec": spec})
                })
                .collect();
            json!({"type": ty, "fields": fields})
        }
        // A type without fields of its own, such as a map of properties.
        None => json!({"name": ty}),
    }
}

/// A field's type in words ("string or None", "list") and as a spec.
fn field_type(notation: &str) -> (String, Value) {
    if let Some(element) = notation.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        let (_, of) = field_type(element);
        return ("list".to_string(), json!({"type": "list", "of": of}));
    }
    let (name, nullable) = match notation.strip_suffix('?') {
        Some(name) => (name, true),
        None => (notation, false),
    };
    let mut spec = match TYPES.iter().any(|(t, _)| *t == name) {
        true => type_spec(name),
        false => json!({"name": name}),
    };
    if nullable {
        spec["can_be_null"] = json!(true);
    }
    let words = if nullable {
        format!("{name} or None")
    } else {
        name.to_string()
    };
    (words, spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_an_endpoint_or_field_names_is_described() {
        let known = |name: &str| {
            TYPES.iter().any(|(t, _)| *t == name)
                || [
                    "integer",
                    "string",
                    "boolean",
                    "identifier",
                    "datetime",
                    "jsonobject",
                    "binary",
                    "sourcedproperties",
                ]
                .contains(&name)
        };
        for (path, ty, _) in ENDPOINTS {
            assert!(known(ty), "{path}: {ty}");
        }
        for (ty, fields) in TYPES {
            for (field, notation) in *fields {
                let bare = notation.trim_matches(|c| c == '[' || c == ']' || c == '?');
                assert!(known(bare), "{ty}.{field}: {notation}");
            }
        }
    }

    #[test]
    fn nested_and_nullable_fields_are_spelled_as_buildbot_spells_them() {
        let (words, spec) = field_type("master?");
        assert_eq!(words, "master or None");
        assert_eq!(spec["can_be_null"], true);
        assert_eq!(spec["type"], "master");
        assert_eq!(spec["fields"][0]["name"], "masterid");
        let (words, spec) = field_type("[integer]");
        assert_eq!(words, "list");
        assert_eq!(spec, json!({"type": "list", "of": {"name": "integer"}}));
        assert_eq!(
            type_spec("sourcedproperties"),
            json!({"name": "sourcedproperties"})
        );
    }
}
