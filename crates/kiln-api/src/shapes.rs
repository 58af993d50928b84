//! The JSON shape of each resource, as Buildbot's data API returns it.

use kiln_db::{
    BuildRequestRow, BuildRow, BuildSetRow, BuilderRow, ChangeRow, LogRow, MasterRow,
    SourceStampRow, StepRow, WorkerRow,
};
use serde_json::{Value, json};

use kiln_db::property_to_json;

fn complete(at: Option<i64>) -> bool {
    at.is_some()
}

/// Properties as `{name: [value, source]}`, keeping those `wanted` accepts.
pub fn properties(props: &kiln_core::Properties, wanted: impl Fn(&str) -> bool) -> Value {
    Value::Object(
        props
            .iter()
            .filter(|(k, _)| wanted(k))
            .map(|(k, p)| (k.clone(), json!([property_to_json(&p.value), p.source])))
            .collect(),
    )
}

pub fn build(b: &BuildRow) -> Value {
    json!({
        "buildid": b.id.0,
        "number": b.number,
        "builderid": b.builderid.0,
        "buildrequestid": b.buildrequestid.0,
        "workerid": b.workerid,
        "masterid": b.masterid,
        "started_at": b.started_at,
        "complete": complete(b.complete_at),
        "complete_at": b.complete_at,
        "locks_duration_s": b.locks_duration_s,
        "state_string": b.state_string,
        "results": b.results,
        "properties": {},
    })
}

/// A step's links, stored as JSON text.
pub fn step_urls(urls_json: &str) -> Value {
    serde_json::from_str(urls_json).unwrap_or(json!([]))
}

pub fn step(s: &StepRow) -> Value {
    let urls = step_urls(&s.urls_json);
    json!({
        "stepid": s.id.0,
        "number": s.number,
        "name": s.name,
        "buildid": s.buildid.0,
        "started_at": s.started_at,
        "locks_acquired_at": s.locks_acquired_at,
        "complete": complete(s.complete_at),
        "complete_at": s.complete_at,
        "state_string": s.state_string,
        "results": s.results,
        "urls": urls,
        "hidden": s.hidden,
    })
}

pub fn test_result_set(t: &kiln_db::TestResultSetRow) -> Value {
    json!({
        "test_result_setid": t.id,
        "builderid": t.builderid,
        "buildid": t.buildid,
        "stepid": t.stepid,
        "description": t.description,
        "category": t.category,
        "value_unit": t.value_unit,
        "tests_passed": t.tests_passed,
        "tests_failed": t.tests_failed,
        "complete": t.complete,
    })
}

pub fn test_result(t: &kiln_db::TestResultRow) -> Value {
    json!({
        "test_resultid": t.id,
        "builderid": t.builderid,
        "test_result_setid": t.test_result_setid,
        "buildid": t.buildid,
        "test_name": t.test_name,
        "test_code_path": t.test_code_path,
        "line": t.line,
        "duration_ns": t.duration_ns,
        "value": t.value,
    })
}

pub fn log(l: &LogRow) -> Value {
    json!({
        "logid": l.id.0,
        "name": l.name,
        "slug": l.slug,
        "stepid": l.stepid.0,
        "complete": l.complete,
        "num_lines": l.num_lines,
        "type": l.log_type,
    })
}

pub fn buildrequest(r: &BuildRequestRow) -> Value {
    json!({
        "buildrequestid": r.id.0,
        "buildsetid": r.buildsetid.0,
        "builderid": r.builderid,
        "priority": r.priority,
        "claimed": r.claimed_by_masterid.is_some(),
        "claimed_at": r.claimed_at,
        "claimed_by_masterid": r.claimed_by_masterid,
        "complete": r.complete,
        "complete_at": r.complete_at,
        // -1 while pending, as Buildbot shows it.
        "results": r.results.unwrap_or(-1),
        "submitted_at": r.submitted_at,
        "waited_for": r.waited_for,
        "properties": null,
    })
}

pub fn sourcestamp(s: &SourceStampRow) -> Value {
    json!({
        "ssid": s.id.0,
        "branch": s.branch,
        "revision": s.revision,
        "project": s.project,
        "repository": s.repository,
        "codebase": s.codebase,
        "created_at": s.created_at,
        "patch": s.patch.as_ref().map(|p| json!({
            "patchid": p.id,
            "level": p.level,
            "subdir": p.subdir,
            "author": p.author,
            "comment": p.comment,
            "body": p.body_base64,
        })),
    })
}

pub fn buildset(b: &BuildSetRow, sourcestamps: Vec<Value>) -> Value {
    json!({
        "bsid": b.id.0,
        "external_idstring": b.external_idstring,
        "reason": b.reason,
        "submitted_at": b.submitted_at,
        "complete": b.complete,
        "complete_at": b.complete_at,
        "results": b.results.unwrap_or(-1),
        "sourcestamps": sourcestamps,
        "parent_buildid": b.parent_buildid,
        "parent_relationship": b.parent_relationship,
        "rebuilt_buildid": b.rebuilt_buildid,
    })
}

/// The keys of a worker's info that the API shows, as Buildbot does: the rest of what a worker
/// reports (its command versions, its environment) is kept for the master's own use only, and
/// Buildbot's front-end fails on values it does not expect there.
const WORKER_INFO_KEYS: [&str; 4] = ["admin", "host", "access_uri", "version"];

/// The part of a worker's stored info the API publishes.
pub fn worker_info(stored: &str) -> Value {
    let mut info = serde_json::Map::new();
    if let Ok(Value::Object(all)) = serde_json::from_str::<Value>(stored) {
        for (k, v) in all {
            if WORKER_INFO_KEYS.contains(&k.as_str()) {
                info.insert(k, v);
            }
        }
    }
    Value::Object(info)
}

pub fn worker(w: &WorkerRow) -> Value {
    let info = worker_info(&w.info);
    json!({
        "workerid": w.id.0,
        "name": w.name,
        "configured_on": w.configured_on.iter().map(|(b, m)| json!({"builderid": b, "masterid": m})).collect::<Vec<_>>(),
        "connected_to": w.connected_to.iter().map(|m| json!({"masterid": m})).collect::<Vec<_>>(),
        "paused": w.paused,
        "pause_reason": w.pause_reason,
        "graceful": w.graceful,
        "workerinfo": info,
    })
}

pub fn builder(b: &BuilderRow) -> Value {
    json!({
        "builderid": b.id.0,
        "name": b.name,
        "description": b.description,
        "description_format": b.description_format,
        "description_html": b.description_html,
        "masterids": b.masterids,
        "tags": b.tags,
        "projectid": b.projectid,
    })
}

pub fn master(m: &MasterRow) -> Value {
    json!({"masterid": m.id.0, "name": m.name, "active": m.active, "last_active": m.last_active})
}

/// A scheduler, with the master running it (Buildbot's `master` is the master's resource, or
/// null when no master runs it).
pub fn scheduler(s: &kiln_db::SchedulerRow, m: Option<&MasterRow>) -> Value {
    json!({"schedulerid": s.id.0, "name": s.name, "enabled": s.enabled, "master": m.map(master)})
}

pub fn change(c: &ChangeRow, sourcestamp: Value) -> Value {
    let props: serde_json::Map<String, Value> = c
        .properties
        .iter()
        .map(|(k, p)| (k.clone(), json!([property_to_json(&p.value), p.source])))
        .collect();
    json!({
        "changeid": c.id.0,
        "author": c.author,
        "committer": c.committer,
        "comments": c.comments,
        "branch": c.branch,
        "revision": c.revision,
        "revlink": c.revlink.clone().unwrap_or_default(),
        "when_timestamp": c.when_timestamp,
        "category": c.category,
        "repository": c.repository,
        "codebase": c.codebase,
        "project": c.project,
        "files": c.files,
        "properties": props,
        "sourcestamp": sourcestamp,
        "parent_changeids": c.parent_changeids,
    })
}

/// A reporter and how its deliveries stand (kiln's own resource, `/api/v2/reporters`).
pub fn reporter(r: &kiln_config::ReporterConfig, s: Option<&kiln_db::ReporterStatus>) -> Value {
    let s = s.cloned().unwrap_or_default();
    let (last_error, last_error_at) = match s.last_error {
        Some((e, at)) => (Some(e), Some(at)),
        None => (None, None),
    };
    json!({
        "name": r.name,
        "class": r.kind.class(),
        "generators": r.generators.iter().map(|g| g.kind.class()).collect::<Vec<_>>(),
        "pending": s.pending,
        "sent": s.sent,
        "failed": s.failed,
        "last_success_at": s.last_success_at,
        "last_error": last_error,
        "last_error_at": last_error_at,
    })
}

pub fn forcescheduler(
    f: &kiln_config::ForceSchedulerConfig,
    config: &kiln_config::MasterConfig,
) -> Value {
    let workers: Vec<String> = config
        .builders
        .iter()
        .filter(|b| f.builder_names.contains(&b.name))
        .flat_map(|b| b.workernames.iter().cloned())
        .collect();
    // Buildbot's layout: the name, reason and priority in one group, then each codebase's group,
    // then the properties.
    let first = vec![
        force_param(&f.username, "", config, f, &workers),
        force_param(&f.reason, "", config, f, &workers),
        force_param(&f.priority, "", config, f, &workers),
    ];
    let mut all_fields = vec![json!({
        "name": "",
        "fullName": null,
        "label": "",
        "tablabel": "",
        "type": "nested",
        "layout": "vertical",
        "columns": 1,
        "default": "",
        "autopopulate": null,
        "maxsize": null,
        "hide": false,
        "multiple": false,
        "regex": null,
        "required": false,
        "tooltip": "",
        "fields": first,
    })];
    all_fields.extend(
        f.codebases
            .iter()
            .map(|p| force_param(p, "", config, f, &workers)),
    );
    all_fields.extend(
        f.properties
            .iter()
            .map(|p| force_param(p, "", config, f, &workers)),
    );
    json!({
        "name": f.name,
        "label": f.label,
        "button_name": f.button_name,
        "builder_names": f.builder_names,
        "enabled": true,
        "all_fields": all_fields,
    })
}

/// One force-form field as Buildbot's REST API shows it, nested fields with their full names.
fn force_param(
    p: &kiln_config::ParameterConfig,
    prefix: &str,
    config: &kiln_config::MasterConfig,
    f: &kiln_config::ForceSchedulerConfig,
    workers: &[String],
) -> Value {
    use kiln_config::ParameterKind;
    let full = match (prefix.is_empty(), p.name.is_empty()) {
        (true, _) => p.name.clone(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}_{}", p.name),
    };
    let choices: Vec<String> = match p.kind {
        ParameterKind::WorkerChoice => std::iter::once("*".to_string())
            .chain(workers.iter().cloned())
            .collect(),
        ParameterKind::InheritBuild => p
            .compatible_builds
            .map(|cb| {
                f.builder_names
                    .iter()
                    .filter_map(|b| {
                        let args = [kiln_config::Data::None, kiln_config::Data::Str(b.clone())];
                        config.functions.call(cb, &args, &[]).ok()
                    })
                    .flat_map(|d| match d {
                        kiln_config::Data::List(items) => items,
                        _ => Vec::new(),
                    })
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        _ => p.choices.clone(),
    };
    // The sizes of Buildbot's fields: its name field 30, its reason 20, the others 10.
    let size = match (p.kind, p.name.as_str()) {
        (ParameterKind::UserName, _) => 30,
        (ParameterKind::String, "reason") if prefix.is_empty() => 20,
        _ => 10,
    };
    let mut v = json!({
        "name": p.name,
        "fullName": full,
        "label": p.label,
        "tablabel": p.label,
        "type": p.kind.type_name(),
        // A group's default is "", as Buildbot shows it.
        "default": match (&p.default, p.fields.is_empty()) {
            (kiln_core::PropertyValue::Null, false) => json!(""),
            (d, _) => property_to_json(d),
        },
        "required": p.required,
        "regex": p.regex,
        "hide": p.hide,
        "multiple": false,
        "choices": choices,
        "need_email": p.need_email,
        "autopopulate": null,
        "maxsize": null,
        "size": size,
        "tooltip": "",
    });
    if !p.fields.is_empty() {
        v["fields"] = Value::Array(
            p.fields
                .iter()
                .map(|c| force_param(c, &full, config, f, workers))
                .collect(),
        );
        v["layout"] = json!("vertical");
        // A codebase's fields go two to a row, as Buildbot lays them out.
        v["columns"] = json!(if p.kind == ParameterKind::Codebase {
            2
        } else {
            1
        });
        if p.kind == ParameterKind::Codebase && p.name.is_empty() {
            v["fullName"] = Value::Null;
        }
    }
    if p.kind == ParameterKind::Codebase {
        v["codebase"] = json!(p.name);
    }
    v
}
