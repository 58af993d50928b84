//! `application.spec`: the endpoints of the REST API and the fields of what each returns, as
//! Buildbot describes its own (its front-end's About page lists them).

use serde_json::{Value, json};

use super::fields::Ty;
use super::query::Kind;

/// Every kind of resource, with the name of one of them.
const TYPES: &[(Ty, &str)] = &[
    (Ty::Builders, "builder"),
    (Ty::Builds, "build"),
    (Ty::Steps, "step"),
    (Ty::Logs, "log"),
    (Ty::BuildRequests, "buildrequest"),
    (Ty::BuildSets, "buildset"),
    (Ty::SourceStamps, "sourcestamp"),
    (Ty::Changes, "change"),
    (Ty::Workers, "worker"),
    (Ty::Masters, "master"),
    (Ty::ForceSchedulers, "forcescheduler"),
    (Ty::Schedulers, "scheduler"),
    (Ty::ChangeSources, "changesource"),
    (Ty::Projects, "project"),
    (Ty::Reporters, "reporter"),
    (Ty::TestResultSets, "test_result_set"),
    (Ty::TestResults, "test_result"),
];

/// One spec per collection and one per single resource, by its id field.
pub fn specs() -> Vec<Value> {
    let mut out = vec![
        json!({"path": "", "plural": "", "type": "rootlink", "type_spec": {"type": "rootlink", "fields": [{"name": "name", "type": "string", "type_spec": {"name": "string"}}]}}),
        json!({"path": "application.spec", "plural": "", "type": "spec", "type_spec": {"type": "spec", "fields": []}}),
    ];
    for (ty, name) in TYPES {
        let fields: Vec<Value> = ty
            .fields()
            .iter()
            .map(|f| {
                let kind = match f.kind {
                    Kind::Int => "integer",
                    Kind::Text => "string",
                    Kind::Bool | Kind::NotNull => "boolean",
                    Kind::Computed => "object",
                };
                json!({"name": f.name, "type": kind, "type_spec": {"name": kind}})
            })
            .collect();
        let type_spec = json!({"type": name, "fields": fields});
        let id = ty.fields().first().map_or("id", |f| f.name);
        let key = if *ty == Ty::ForceSchedulers {
            "i:name"
        } else {
            "n:"
        };
        let single = if key == "n:" {
            format!("{}/n:{id}", ty.plural())
        } else {
            format!("{}/{key}", ty.plural())
        };
        out.push(json!({"path": ty.plural(), "plural": ty.plural(), "type": name, "type_spec": type_spec}));
        out.push(
            json!({"path": single, "plural": ty.plural(), "type": name, "type_spec": type_spec}),
        );
    }
    out
}
