//! kiln's REST API and JSON-RPC answers compared with Buildbot 4.3's, recorded from a real
//! Buildbot master running the same scenario (`buildbot_api/answers.json`, made by
//! `bench/record_api.py`; CI needs no Buildbot).
//!
//! The same `master.cfg` runs here, and the same builds, changes, stops and cancels happen; then
//! every recorded request is made again. An answer must have Buildbot's status, and every key of
//! Buildbot's answer with a value of the same JSON type; the values that carry meaning
//! (`state_string`, `results`, branches, owners, totals, error codes, …) must be equal. Ids,
//! times, paths and texts that depend on the machine are not compared. Where kiln answers
//! differently on purpose, `KNOWN` says so and why.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::harness::{TestMaster, http};

const ANSWERS: &str = include_str!("buildbot_api/answers.json");
const MASTER_CFG: &str = include_str!("buildbot_api/master.cfg");

/// Keys whose values are compared, not only their types.
const MEANINGFUL: &[&str] = &[
    "state_string",
    "results",
    "complete",
    "claimed",
    "branch",
    "revision",
    "repository",
    "project",
    "codebase",
    "owners",
    "total",
    "hidden",
    "slug",
    "type",
    "waited_for",
    "code",
    "button_name",
    "label",
    "enabled",
    "builder_names",
    "rootlinks",
    "connected_to",
    "paused",
    "graceful",
    "files",
    "comments",
    "author",
    "category",
    "parent_changeids",
];

/// Keys whose values depend on the run or the machine: ids, times, paths, hosts.
const VOLATILE: &[&str] = &[
    "started_at",
    "complete_at",
    "submitted_at",
    "claimed_at",
    "locks_acquired_at",
    "when_timestamp",
    "created_at",
    "last_active",
    "workerinfo",
    "content",
    "num_lines",
];

/// Where kiln answers differently on purpose: the recorded answer, the part of it (a JSON path
/// prefix, or `status`), and why.
const KNOWN: &[(&str, &str, &str)] = &[
    (
        "application.spec",
        "",
        "compared entry by entry by `application_spec_describes_what_kiln_serves` below",
    ),
    (
        "builds.limit2_offset1",
        ".meta.total",
        "Buildbot gives the page's size as the total; kiln gives the collection's, which is what \
         paging needs",
    ),
    (
        "builds.order_desc_limit1",
        ".meta.total",
        "as above: the collection's total, not the page's size",
    ),
    (
        "rpc.error.method_nosuch",
        "",
        "Buildbot answers 200 with a null result and does nothing; kiln says the action does not \
         exist (501, method not found), as Buildbot does on other resources",
    ),
    (
        "rpc.error.force_unknown_builder",
        "",
        "Buildbot fails with an internal error (500, a KeyError); kiln says which builder the \
         scheduler does not handle (400, invalid params)",
    ),
    (
        "build.slow.property_list",
        "._properties",
        "kiln records who stopped a build in its stopped_by property; Buildbot keeps it nowhere",
    ),
    (
        "build.slow.property_list",
        ".meta.total",
        "as above: the stopped_by property",
    ),
    (
        "rpc.error.nosuchpath",
        ".error.code",
        "kiln says a path it does not have is not found (invalid params, as for any missing \
         resource); Buildbot calls it an invalid request",
    ),
    (
        "rpc.error.force_builder_not_in_scheduler",
        "",
        "as above: a builder outside the scheduler is the caller's mistake, not the master's",
    ),
];

struct Recorded {
    key: String,
    method: String,
    path: String,
    request: Value,
    status: u16,
    body: Value,
}

fn recorded() -> Vec<Recorded> {
    let all: Value = serde_json::from_str(ANSWERS).expect("answers.json is JSON");
    all["answers"]
        .as_array()
        .expect("answers")
        .iter()
        .map(|a| Recorded {
            key: a["key"].as_str().unwrap().to_string(),
            method: a["method"].as_str().unwrap().to_string(),
            path: a["path"].as_str().unwrap().to_string(),
            request: a["request"].clone(),
            status: a["status"].as_u64().unwrap() as u16,
            body: a["body"].clone(),
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Where kiln's answer differs from Buildbot's, as lines naming the JSON path.
fn differences(at: &str, buildbot: &Value, kiln: &Value, out: &mut Vec<String>) {
    match (buildbot, kiln) {
        (Value::Object(b), Value::Object(k)) => {
            for (key, bv) in b {
                let path = format!("{at}.{key}");
                match k.get(key) {
                    None => out.push(format!("{path}: missing (Buildbot: {})", short(bv))),
                    Some(kv) => {
                        if VOLATILE.contains(&key.as_str()) {
                            continue;
                        }
                        if MEANINGFUL.contains(&key.as_str()) && bv != kv {
                            out.push(format!("{path}: {} (Buildbot: {})", short(kv), short(bv)));
                        } else {
                            differences(&path, bv, kv, out);
                        }
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(k)) => {
            // Items with names are matched by name (the order of workers, say, follows ids).
            let named = |v: &Vec<Value>| {
                let names: Vec<&str> = v
                    .iter()
                    .filter_map(|i| i.get("name").and_then(Value::as_str))
                    .collect();
                let mut unique = names.clone();
                unique.sort_unstable();
                unique.dedup();
                names.len() == v.len() && unique.len() == names.len()
            };
            if named(b) && named(k) && !b.is_empty() {
                for bv in b {
                    let name = bv["name"].as_str().unwrap_or_default();
                    match k.iter().find(|kv| kv["name"] == bv["name"]) {
                        Some(kv) => differences(&format!("{at}[{name}]"), bv, kv, out),
                        // A name that depends on the machine (a master's): the one there is.
                        None if b.len() == 1 && k.len() == 1 => {
                            differences(&format!("{at}[0]"), bv, &k[0], out)
                        }
                        None => out.push(format!("{at}[{name}]: missing")),
                    }
                }
            } else {
                for (i, (bv, kv)) in b.iter().zip(k.iter()).enumerate() {
                    differences(&format!("{at}[{i}]"), bv, kv, out);
                }
            }
            if b.len() != k.len() {
                out.push(format!("{at}: {} items (Buildbot: {})", k.len(), b.len()));
            }
        }
        (b, k) if kind(b) != kind(k) => {
            out.push(format!("{at}: {} (Buildbot: {})", short(k), short(b)))
        }
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

/// One request as it was made to Buildbot, made to kiln: its status and answer.
async fn send(www: &str, r: &Recorded, path: &str) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("http://{www}{path}");
    let request = match (r.method.as_str(), &r.request) {
        ("GET", _) => client.get(&url),
        // The change hook takes a form.
        (_, Value::Object(fields)) if path.starts_with("/change_hook") => {
            let form: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            client.post(&url).form(&form)
        }
        // A body recorded as text was sent as it is, with a text type when the case is about it.
        (_, Value::String(text)) => {
            let content_type = if r.key.ends_with("content_type_text") {
                "text/plain"
            } else {
                "application/json"
            };
            client
                .post(&url)
                .header("Content-Type", content_type)
                .body(text.clone())
        }
        (_, body) => client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body.to_string()),
    };
    let response = request.send().await.expect("kiln answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Buildbot's id of each resource, by the names the scenario gives, from the recording.
fn buildbot_ids(answers: &[Recorded]) -> Names {
    let body = |key: &str| {
        answers
            .iter()
            .find(|a| a.key == key)
            .map(|a| a.body.clone())
            .unwrap_or_else(|| panic!("no recorded answer {key}"))
    };
    let mut names = Names::default();
    for b in body("builders")["builders"].as_array().unwrap() {
        names.insert(
            "builders",
            b["builderid"].as_i64().unwrap(),
            b["name"].as_str().unwrap(),
        );
    }
    for build in BUILDS {
        let b = &body(&format!("build.{build}"))["builds"][0];
        names.insert("builds", b["buildid"].as_i64().unwrap(), build);
        names.insert(
            "buildrequests",
            b["buildrequestid"].as_i64().unwrap(),
            build,
        );
        for step in body(&format!("build.{build}.steps"))["steps"]
            .as_array()
            .unwrap()
        {
            let step_name = format!("{build}/{}", step["name"].as_str().unwrap());
            names.insert("steps", step["stepid"].as_i64().unwrap(), &step_name);
            if let Some(logs) = answers
                .iter()
                .find(|a| a.key == format!("step.{build}.{}.logs", step["name"].as_str().unwrap()))
            {
                for log in logs.body["logs"].as_array().unwrap() {
                    let log_name = format!("{step_name}/{}", log["slug"].as_str().unwrap());
                    names.insert("logs", log["logid"].as_i64().unwrap(), &log_name);
                }
            }
        }
    }
    names.requests_and_change(&body("buildrequests"), &body("change.1")["changes"][0]);
    for w in body("workers")["workers"].as_array().unwrap() {
        names.insert(
            "workers",
            w["workerid"].as_i64().unwrap(),
            w["name"].as_str().unwrap(),
        );
    }
    names
}

/// The scenario's builds by name, with their builder and number.
const BUILDS: &[&str] = &["ok1", "fail", "props", "parent", "child", "ok2", "slow"];

fn builder_and_number(build: &str) -> (&str, i64) {
    match build {
        "ok1" => ("ok", 1),
        "ok2" => ("ok", 2),
        other => (other, 1),
    }
}

/// Names of resources by kind and id, and back.
#[derive(Default)]
struct Names(BTreeMap<(&'static str, i64), String>);

impl Names {
    fn insert(&mut self, kind: &'static str, id: i64, name: &str) {
        self.0.insert((kind, id), name.to_string());
    }
    fn name(&self, kind: &'static str, id: i64) -> Option<String> {
        self.0.get(&(kind, id)).cloned()
    }
    /// The requests and buildsets, named after their builds (the pending one `nowhere`), and the
    /// change and its source stamp.
    fn requests_and_change(&mut self, requests: &Value, change: &Value) {
        for r in requests["buildrequests"].as_array().unwrap() {
            let brid = r["buildrequestid"].as_i64().unwrap();
            let name = self
                .name("buildrequests", brid)
                .unwrap_or_else(|| "nowhere".into());
            self.insert("buildrequests", brid, &name);
            self.insert("buildsets", r["buildsetid"].as_i64().unwrap(), &name);
        }
        self.insert("changes", change["changeid"].as_i64().unwrap(), "change");
        let ssid = change["sourcestamp"]["ssid"].as_i64().unwrap();
        self.insert("sourcestamps", ssid, "change");
    }

    fn id(&self, kind: &str, name: &str) -> Option<i64> {
        self.0
            .iter()
            .find(|((k, _), n)| *k == kind && n.as_str() == name)
            .map(|((_, id), _)| *id)
    }
}

/// kiln's ids of the same resources, found by name.
async fn kiln_ids(m: &TestMaster) -> Names {
    let mut names = Names::default();
    let (_, builders) = m.get("builders").await;
    for b in builders["builders"].as_array().unwrap() {
        names.insert(
            "builders",
            b["builderid"].as_i64().unwrap(),
            b["name"].as_str().unwrap(),
        );
    }
    for build in BUILDS {
        let (builder, number) = builder_and_number(build);
        let builderid = names.id("builders", builder).unwrap();
        let (_, b) = m
            .get(&format!("builders/{builderid}/builds/{number}"))
            .await;
        let b = &b["builds"][0];
        let buildid = b["buildid"]
            .as_i64()
            .unwrap_or_else(|| panic!("kiln has no build {build}"));
        names.insert("builds", buildid, build);
        names.insert(
            "buildrequests",
            b["buildrequestid"].as_i64().unwrap(),
            build,
        );
        let (_, steps) = m.get(&format!("builds/{buildid}/steps")).await;
        for step in steps["steps"].as_array().unwrap() {
            let step_name = format!("{build}/{}", step["name"].as_str().unwrap());
            let stepid = step["stepid"].as_i64().unwrap();
            names.insert("steps", stepid, &step_name);
            let (_, logs) = m.get(&format!("steps/{stepid}/logs")).await;
            for log in logs["logs"].as_array().cloned().unwrap_or_default() {
                let log_name = format!("{step_name}/{}", log["slug"].as_str().unwrap());
                names.insert("logs", log["logid"].as_i64().unwrap(), &log_name);
            }
        }
    }
    let (_, requests) = m.get("buildrequests").await;
    let (_, changes) = m.get("changes").await;
    names.requests_and_change(&requests, &changes["changes"][0]);
    let (_, workers) = m.get("workers").await;
    for w in workers["workers"].as_array().unwrap() {
        names.insert(
            "workers",
            w["workerid"].as_i64().unwrap(),
            w["name"].as_str().unwrap(),
        );
    }
    names
}

/// A path Buildbot was asked, with its ids made kiln's: each id after a collection's name is
/// looked up by the name it stands for (ids under a build are numbers, and stay).
fn kiln_path(path: &str, buildbot: &Names, kiln: &Names) -> String {
    let (path, query) = path
        .split_once('?')
        .map_or((path, None), |(p, q)| (p, Some(q)));
    let parts: Vec<&str> = path.split('/').collect();
    let mut out: Vec<String> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let collection = if i > 0 { parts[i - 1] } else { "" };
        let nested = i >= 3 && ["builds", "builders"].contains(&parts[i - 3]);
        let mapped = part.parse::<i64>().ok().and_then(|id| {
            let kind: &'static str = match collection {
                "builders" => "builders",
                "builds" if !nested => "builds",
                "steps" if !nested => "steps",
                "logs" => "logs",
                "buildrequests" => "buildrequests",
                "buildsets" => "buildsets",
                "changes" => "changes",
                "sourcestamps" => "sourcestamps",
                "workers" => "workers",
                _ => return None,
            };
            let name = buildbot.name(kind, id)?;
            kiln.id(kind, &name)
        });
        out.push(mapped.map_or_else(|| part.to_string(), |id| id.to_string()));
    }
    let path = out.join("/");
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// The scenario Buildbot ran, on kiln, keeping the answers of the requests that were part of
/// it (the change hook's, the stop's).
async fn scenario(m: &mut TestMaster, answers: &[Recorded]) -> BTreeMap<String, (u16, Value)> {
    let mut kept = BTreeMap::new();
    for name in ["ok", "fail", "props", "parent"] {
        let bsid = m.force(json!({"builderNames": [name]})).await;
        m.wait_buildset(bsid).await;
    }
    for key in ["hook.base.files_not_json", "hook.base"] {
        let r = answers.iter().find(|a| a.key == key).unwrap();
        kept.insert(key.to_string(), send(&m.www(), r, &r.path).await);
    }
    let www = m.www();
    m.wait_until("buildsets.*.complete", || {
        let www = www.clone();
        async move {
            let (_, b) = http(&www, "GET", "/api/v2/builds?complete=true", None).await;
            b["builds"].as_array().map_or(0, Vec::len) == 6
        }
    })
    .await;
    let bsid = m.force(json!({"builderNames": ["slow"]})).await;
    // Its `sleep` step, not the worker's preparation, is running when it is stopped.
    let www = m.www();
    m.wait_until("steps.*.started", || {
        let www = www.clone();
        async move {
            let (_, b) = http(&www, "GET", "/api/v2/steps?name=sleep&complete=false", None).await;
            b["meta"]["total"] == 1
        }
    })
    .await;
    let (_, running) = m.get("builds?complete=false").await;
    let slow = running["builds"][0]["buildid"].as_i64().unwrap();
    let r = answers
        .iter()
        .find(|a| a.key == "rpc.build.slow.stop")
        .unwrap();
    kept.insert(
        r.key.clone(),
        send(&m.www(), r, &format!("/api/v2/builds/{slow}")).await,
    );
    m.wait_buildset(bsid).await;
    m.force(json!({"builderNames": ["nowhere"]})).await;
    kept
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_json_rpc_answers_have_buildbot_4_3_s_shapes() {
    // The same configuration, its port also serving kiln's own worker.
    let source = MASTER_CFG
        .replace(
            "{'pb': {'port': 'tcp:42891:interface=127.0.0.1'}}",
            "{'pb': {'port': 9989}, 'msgpack_experimental_v7': {'port': 9989}}",
        )
        .replace(
            "tcp:55877:interface=127.0.0.1",
            "tcp:8010:interface=127.0.0.1",
        );
    let mut m = TestMaster::start(&source).await;
    m.start_worker("w1", "pass").await;
    let answers = recorded();
    let mut kept = scenario(&mut m, &answers).await;
    let buildbot = buildbot_ids(&answers);
    let kiln = kiln_ids(&m).await;
    let mut report = Vec::new();
    for r in &answers {
        let path = kiln_path(&r.path, &buildbot, &kiln);
        let (status, body) = match kept.remove(&r.key) {
            Some(answer) => answer,
            None => send(&m.www(), r, &path).await,
        };

        let mut found = Vec::new();
        if status != r.status {
            found.push(format!("status {status} (Buildbot: {})", r.status));
        }
        differences("", &r.body, &body, &mut found);
        found.retain(|d| {
            !KNOWN
                .iter()
                .any(|(key, at, _)| *key == r.key && (d.starts_with(at) || at.is_empty()))
        });
        if !found.is_empty() {
            report.push(format!(
                "{} {} {path}:\n    {}",
                r.key,
                r.method,
                found.join("\n    ")
            ));
        }
    }
    assert!(
        report.is_empty(),
        "{} answers differ:\n{}",
        report.len(),
        report.join("\n")
    );
    let spec = answers
        .iter()
        .find(|a| a.key == "application.spec")
        .expect("the recorded spec");
    application_spec_describes_what_kiln_serves(&m, &spec.body).await;
    m.stop().await;
}

/// Endpoints of Buildbot's spec that kiln does not have, and why.
const SPEC_LACKS: &[(&str, &str)] = &[
    (
        "branches/n:branchid",
        "Buildbot 4's experimental record of codebases, branches and commits, which kiln does not keep",
    ),
    ("codebases", "as above"),
    ("codebases/n:codebaseid", "as above"),
    ("codebases/n:codebaseid/branches", "as above"),
    (
        "codebases/n:codebaseid/commit_range/n:commitid1/n:commitid2/commits_common_parent",
        "as above",
    ),
    (
        "codebases/n:codebaseid/commit_range/n:commitid1/n:commitid2/test_result_sets",
        "as above",
    ),
    ("codebases/n:codebaseid/commits", "as above"),
    (
        "codebases/n:codebaseid/commits_by_revision/s:revision",
        "as above",
    ),
    ("commits/n:commitid", "as above"),
    ("projects/n:projectid/codebases/i:codebasename", "as above"),
    (
        "logchunks",
        "every log chunk of the master, which Buildbot lists but cannot answer either; a log's \
         chunks are under its own path",
    ),
];

/// Fields kiln's spec describes better than Buildbot's: the type, its field, and why.
const SPEC_CORRECTS: &[(&str, &str, &str)] = &[(
    "change",
    "committer",
    "Buildbot describes a string and answers null for a change without a committer, as kiln \
     does; kiln says it may be null",
)];

/// Buildbot's entry with the corrections of `SPEC_CORRECTS` made.
fn corrected(entry: &Value) -> Value {
    let mut entry = entry.clone();
    for (ty, field, _) in SPEC_CORRECTS {
        if entry["type"] != *ty {
            continue;
        }
        for f in entry["type_spec"]["fields"].as_array_mut().unwrap() {
            if f["name"] == *field {
                f["type"] = json!(format!("{} or None", f["type"].as_str().unwrap()));
                f["type_spec"]["can_be_null"] = json!(true);
            }
        }
    }
    entry
}

/// Endpoints kiln has beyond Buildbot's.
const SPEC_OWN: &[&str] = &[
    "builders/n:builderid/test_results",
    "builds/n:buildid/users",
    "reporters",
    "reporters/i:name",
    "test_results",
    "users",
    "users/i:identifier",
];

/// Endpoints that name something the scenario does not make, so they answer 404.
const SPEC_NOTHING_THERE: &[&str] = &[
    "changesources/n:changesourceid",
    "masters/n:masterid/changesources/n:changesourceid",
    "projects/i:projectname",
    "projects/n:projectid",
    "reporters/i:name",
    "test_result_sets/n:test_result_setid",
    "users/i:identifier",
];

/// kiln's `application.spec` has Buildbot's entry, equal in every part, for each endpoint both
/// have; and every endpoint it lists answers at that path with exactly the fields it describes,
/// each of the type it gives.
async fn application_spec_describes_what_kiln_serves(m: &TestMaster, recorded: &Value) {
    let (status, spec) = m.get("application.spec").await;
    assert_eq!(status, 200, "{spec}");
    let kiln: BTreeMap<&str, &Value> = spec["specs"]
        .as_array()
        .expect("specs")
        .iter()
        .map(|s| (s["path"].as_str().unwrap(), s))
        .collect();
    assert_eq!(spec["meta"]["total"], kiln.len());
    let mut report = Vec::new();
    for entry in recorded["specs"].as_array().expect("recorded specs") {
        let path = entry["path"].as_str().unwrap();
        match (kiln.get(path), SPEC_LACKS.iter().any(|(p, _)| *p == path)) {
            (Some(ours), false) if **ours != corrected(entry) => {
                report.push(format!("{path}: kiln {ours}\n  Buildbot {entry}"))
            }
            (Some(_), true) => report.push(format!("{path}: listed, yet in SPEC_LACKS")),
            (None, false) => report.push(format!("{path}: missing from kiln's spec")),
            _ => {}
        }
    }
    let theirs: Vec<&str> = recorded["specs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    for path in kiln.keys() {
        if !theirs.contains(path) && !SPEC_OWN.contains(path) {
            report.push(format!("{path}: kiln's own, yet not in SPEC_OWN"));
        }
    }

    let ids = spec_ids(m).await;
    for (path, entry) in &kiln {
        let url = spec_path(path, &ids);
        let (status, body) = m.get(&url).await;
        let nothing = SPEC_NOTHING_THERE.contains(path) || path.contains("/data/i:name");
        match (status, nothing) {
            (404, true) => continue,
            (200, false) => {}
            _ => {
                report.push(format!("{path} ({url}): {status} {body}"));
                continue;
            }
        }
        let plural = entry["plural"].as_str().unwrap();
        let fields = &entry["type_spec"]["fields"];
        let (Some(items), Some(fields)) = (body[plural].as_array(), fields.as_array()) else {
            // Raw log text, or a type without fields (a map of properties).
            continue;
        };
        for item in items {
            let keys: Vec<&str> = item
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let described: Vec<&str> = fields.iter().map(|f| f["name"].as_str().unwrap()).collect();
            let mut k = keys.clone();
            let mut d = described.clone();
            k.sort_unstable();
            d.sort_unstable();
            if k != d {
                report.push(format!("{path}: fields {keys:?}, described {described:?}"));
                continue;
            }
            for f in fields {
                let name = f["name"].as_str().unwrap();
                if !of_type(&item[name], &f["type_spec"]) {
                    report.push(format!(
                        "{path}: {name} = {} is not {}",
                        item[name], f["type"]
                    ));
                }
            }
        }
    }
    assert!(
        report.is_empty(),
        "application.spec:\n{}",
        report.join("\n")
    );
}

/// Whether a value is of the type a spec gives.
fn of_type(v: &Value, spec: &Value) -> bool {
    if v.is_null() {
        return spec["can_be_null"] == true;
    }
    if spec["type"] == "list" {
        return v
            .as_array()
            .is_some_and(|a| a.iter().all(|e| of_type(e, &spec["of"])));
    }
    if let Some(fields) = spec["fields"].as_array() {
        return fields.iter().all(|f| {
            let name = f["name"].as_str().unwrap();
            v.get(name).is_some() && of_type(&v[name], &f["type_spec"])
        });
    }
    match spec["name"].as_str().unwrap_or_default() {
        "integer" => v.is_i64(),
        // Buildbot's dates are seconds since the epoch.
        "datetime" => v.is_number(),
        "string" | "identifier" | "binary" => v.is_string(),
        "boolean" => v.is_boolean(),
        "jsonobject" | "sourcedproperties" => true,
        other => panic!("a type the spec does not define: {other}"),
    }
}

/// The ids and names this run made, for each placeholder of the spec's paths.
async fn spec_ids(m: &TestMaster) -> BTreeMap<&'static str, String> {
    let first = async |path: String, key: &str| -> Value {
        let (status, body) = m.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body[key][0].clone()
    };
    let builder = first("builders?name=ok".into(), "builders").await;
    let builderid = builder["builderid"].as_i64().unwrap();
    let build = first(format!("builders/{builderid}/builds?number=1"), "builds").await;
    let buildid = build["buildid"].as_i64().unwrap();
    let (_, steps) = m.get(&format!("builds/{buildid}/steps")).await;
    let mut step_and_log = None;
    for step in steps["steps"].as_array().unwrap() {
        let stepid = step["stepid"].as_i64().unwrap();
        let (_, logs) = m.get(&format!("steps/{stepid}/logs")).await;
        if let Some(log) = logs["logs"].as_array().and_then(|l| l.first()) {
            step_and_log = Some((step.clone(), log.clone()));
            break;
        }
    }
    let (step, log) = step_and_log.expect("a step of the build with a log");
    let request = first(
        format!("buildrequests/{}", build["buildrequestid"]),
        "buildrequests",
    )
    .await;
    let change = first("changes".into(), "changes").await;
    let worker = first("workers".into(), "workers").await;
    let master = first("masters".into(), "masters").await;
    let scheduler = first("schedulers".into(), "schedulers").await;
    let force = first("forceschedulers".into(), "forceschedulers").await;
    let ssid = first("sourcestamps".into(), "sourcestamps").await["ssid"].clone();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    BTreeMap::from([
        ("builderid", builderid.to_string()),
        ("buildername", text(&builder["name"])),
        ("build_number", text(&build["number"])),
        ("buildid", buildid.to_string()),
        ("step_name", text(&step["name"])),
        ("step_number", text(&step["number"])),
        ("stepid", text(&step["stepid"])),
        ("log_slug", text(&log["slug"])),
        ("logid", text(&log["logid"])),
        ("buildrequestid", text(&request["buildrequestid"])),
        ("buildsetid", text(&request["buildsetid"])),
        ("bsid", text(&request["buildsetid"])),
        ("changeid", text(&change["changeid"])),
        ("ssid", text(&ssid)),
        ("masterid", text(&master["masterid"])),
        ("workerid", text(&worker["workerid"])),
        ("name", text(&worker["name"])),
        ("schedulerid", text(&scheduler["schedulerid"])),
        ("schedulername", text(&force["name"])),
        ("changesourceid", "1".into()),
        ("projectid", "1".into()),
        ("projectname", "nosuchproject".into()),
        ("test_result_setid", "1".into()),
        ("identifier", "nobody".into()),
    ])
}

/// A spec path with each placeholder (`n:buildid`, `:builderid`, …) replaced by this run's value.
fn spec_path(path: &str, ids: &BTreeMap<&'static str, String>) -> String {
    path.split('/')
        .map(|part| match part.rsplit_once(':') {
            Some((_, name)) => ids
                .get(name)
                .unwrap_or_else(|| panic!("no value for {part} in {path}"))
                .clone(),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}
