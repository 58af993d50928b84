//! Web change hooks: enabled dialects, the `base` form fields, and payloads that are refused.

use serde_json::json;

use crate::harness::{TestMaster, config, http};

const BODY: &str = "c['www'] = {'change_hook_dialects': {'base': True}}\nc['builders'] = []\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_base_hook_stores_a_change_with_every_attribute() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", BODY)).await;
    let form = "author=Alice+%3Calice%40example.org%3E&committer=Bob&comments=Fix+the+kiln%0Aand+more\
        &revision=abc123&when_timestamp=1700000000&branch=main&category=fix&revlink=http%3A%2F%2Fx%2Fc%2Fabc123\
        &repository=https%3A%2F%2Fexample.org%2Frepo.git&project=kiln&codebase=core\
        &files=%5B%22src%2Fa.rs%22%2C%22README%22%5D&properties=%7B%22ticket%22%3A+42%7D";
    let (status, reply) = http(&m.www(), "POST", "/change_hook/base", Some(form)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply, json!({"changeids": [1]}));
    m.wait_event("changes.1.new").await;

    let (_, changes) = m.get("changes/1").await;
    let c = &changes["changes"][0];
    assert_eq!(c["author"], "Alice <alice@example.org>");
    assert_eq!(c["committer"], "Bob");
    assert_eq!(c["comments"], "Fix the kiln\nand more");
    assert_eq!(c["revision"], "abc123");
    assert_eq!(c["when_timestamp"], 1_700_000_000);
    assert_eq!(c["branch"], "main");
    assert_eq!(c["category"], "fix");
    assert_eq!(c["revlink"], "http://x/c/abc123");
    assert_eq!(c["repository"], "https://example.org/repo.git");
    assert_eq!(c["project"], "kiln");
    assert_eq!(c["codebase"], "core");
    assert_eq!(c["files"], json!(["src/a.rs", "README"]));
    assert_eq!(c["properties"]["ticket"], json!([42, "Change"]));
    assert_eq!(c["sourcestamp"]["revision"], "abc123");

    // Fields may come in the query string too, `who` stands for `author`, and `/change_hook`
    // alone is the base dialect. The same source stamp is shared, not duplicated.
    let (status, reply) = http(
        &m.www(),
        "POST",
        "/change_hook?who=carol&revision=abc123&branch=main&repository=https%3A%2F%2Fexample.org%2Frepo.git&project=kiln&codebase=core",
        None,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let (_, second) = m.get("changes/2").await;
    assert_eq!(second["changes"][0]["author"], "carol");
    assert_eq!(
        second["changes"][0]["sourcestamp"]["ssid"],
        c["sourcestamp"]["ssid"]
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_and_disabled_dialects_are_refused_and_store_nothing() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", BODY)).await;
    for (path, body, status, says) in [
        ("/change_hook/base", "comments=no+author", 400, "no author"),
        (
            "/change_hook/base",
            "author=a&files=notjson",
            400,
            "files must be a JSON list",
        ),
        (
            "/change_hook/base",
            "author=a&properties=%5B1%5D",
            400,
            "properties must be a JSON object",
        ),
        (
            "/change_hook/base",
            "author=a&when_timestamp=soon",
            400,
            "not a number",
        ),
        ("/change_hook/github", "{}", 404, "'github' is not enabled"),
    ] {
        let (got, reply) = http(&m.www(), "POST", path, Some(body)).await;
        assert_eq!(got, status, "{path} {body}: {reply}");
        assert!(
            reply.as_str().unwrap_or("").contains(says),
            "{path} {body}: {reply}"
        );
    }
    let (_, changes) = m.get("changes").await;
    assert_eq!(changes["meta"]["total"], 0, "{changes}");
    m.stop().await;
}
