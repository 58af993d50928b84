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
    // A body over the default limit (10 MB) is refused before it is read whole.
    let big = format!("author=a&comments={}", "x".repeat(11 << 20));
    let (status, _) = http(&m.www(), "POST", "/change_hook/base", Some(&big)).await;
    assert_eq!(status, 413);
    let (_, changes) = m.get("changes").await;
    assert_eq!(changes["meta"]["total"], 0, "{changes}");
    m.stop().await;
}

const GITHUB: &str = "c['www'] = {'change_hook_dialects': {'github': {'secret': 's3cret', 'codebase': 'core', \
    'github_property_whitelist': ['draft']}}}\nc['builders'] = []\n";

fn sign256(body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    m.update(body.as_bytes());
    let bytes = m.finalize().into_bytes();
    format!(
        "sha256={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

fn sign1(body: &str) -> String {
    use hmac::{KeyInit, Mac};
    let mut m = hmac::Hmac::<sha1::Sha1>::new_from_slice(b"s3cret").unwrap();
    m.update(body.as_bytes());
    let bytes = m.finalize().into_bytes();
    format!(
        "sha1={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

async fn github(
    m: &TestMaster,
    event: &str,
    body: &str,
    signature: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut headers = vec![("X-GitHub-Event", event)];
    if let Some(s) = signature {
        headers.push(if s.starts_with("sha1=") {
            ("X-Hub-Signature", s)
        } else {
            ("X-Hub-Signature-256", s)
        });
    }
    let (status, text) = crate::harness::http_text(
        &m.www(),
        "POST",
        "/change_hook/github",
        Some(body),
        &headers,
    )
    .await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

fn push_payload(reference: &str, message: &str) -> String {
    json!({
        "ref": reference,
        "repository": {"html_url": "https://github.com/o/r", "full_name": "o/r"},
        "head_commit": {"message": message},
        "commits": [
            {"id": "c1", "message": "first", "timestamp": "2024-01-02T03:04:05+01:00", "url": "https://github.com/o/r/commit/c1",
             "author": {"name": "A", "email": "a@x"}, "committer": {"name": "C", "email": "c@x"},
             "added": ["new.rs"], "modified": ["lib.rs"], "removed": ["old.rs"], "distinct": true},
            {"id": "c2", "message": message, "timestamp": "2024-01-02T02:05:00Z", "url": "https://github.com/o/r/commit/c2",
             "author": {"name": "B", "email": "b@x"}, "committer": {"name": "C", "email": "c@x"},
             "modified": ["lib.rs"], "distinct": false}
        ]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_pushes_and_pull_requests_make_changes_when_signed() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", GITHUB)).await;
    let body = push_payload("refs/heads/main", "second");
    let (status, reply) = github(&m, "push", &body, Some(&sign256(&body))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["changeids"], json!([1, 2]));
    let (_, c) = m.get("changes/1").await;
    let c = &c["changes"][0];
    assert_eq!(c["author"], "A <a@x>");
    assert_eq!(c["committer"], "C <c@x>");
    assert_eq!(c["files"], json!(["new.rs", "lib.rs", "old.rs"]));
    assert_eq!(c["revision"], "c1");
    assert_eq!(c["branch"], "main");
    assert_eq!(c["when_timestamp"], 1_704_161_045);
    assert_eq!(c["repository"], "https://github.com/o/r");
    assert_eq!(c["project"], "o/r");
    assert_eq!(c["codebase"], "core");
    assert_eq!(c["category"], serde_json::Value::Null);
    assert_eq!(c["properties"]["event"], json!(["push", "Change"]));
    let (_, c2) = m.get("changes/2").await;
    assert_eq!(
        c2["changes"][0]["properties"]["github_distinct"],
        json!([false, "Change"])
    );

    // Tags get the category "tag"; the legacy SHA-1 signature is accepted too.
    let body = push_payload("refs/tags/v1.0", "release");
    let (status, reply) = github(&m, "push", &body, Some(&sign1(&body))).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["changeids"][0].as_i64().unwrap();
    let (_, t) = m.get(&format!("changes/{id}")).await;
    assert_eq!(
        (
            t["changes"][0]["branch"].as_str(),
            t["changes"][0]["category"].as_str()
        ),
        (Some("v1.0"), Some("tag"))
    );

    // A pull request becomes one change on its merge ref.
    let pr = json!({
        "action": "opened", "number": 7,
        "sender": {"login": "octocat"},
        "pull_request": {"title": "Add kiln", "body": "Please", "commits": 2, "draft": false,
            "html_url": "https://github.com/o/r/pull/7", "updated_at": "2024-01-02T00:00:00Z",
            "head": {"sha": "feed"}, "base": {"ref": "main", "repo": {"html_url": "https://github.com/o/r", "full_name": "o/r"}}}
    })
    .to_string();
    let (status, reply) = github(&m, "pull_request", &pr, Some(&sign256(&pr))).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["changeids"][0].as_i64().unwrap();
    let (_, p) = m.get(&format!("changes/{id}")).await;
    let p = &p["changes"][0];
    assert_eq!(p["branch"], "refs/pull/7/merge");
    assert_eq!(p["revision"], "feed");
    assert_eq!(p["category"], "pull");
    assert_eq!(p["author"], "octocat");
    assert_eq!(
        p["comments"],
        "GitHub Pull Request #7 (2 commits)\nAdd kiln\nPlease"
    );
    assert_eq!(p["properties"]["basename"], json!(["main", "Change"]));
    assert_eq!(p["properties"]["github.draft"], json!([false, "Change"]));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_refuses_bad_signatures_and_ignores_what_it_does_not_build() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", GITHUB)).await;
    let body = push_payload("refs/heads/main", "x");
    for (signature, says) in [
        (None, "not signed"),
        (Some("sha256=00ff".to_string()), "does not match"),
        (Some("sha256=zz".to_string()), "malformed"),
        (Some(sign256(&format!("{body} "))), "does not match"),
    ] {
        let (status, reply) = github(&m, "push", &body, signature.as_deref()).await;
        assert_eq!(status, 403, "{signature:?}: {reply}");
        assert!(
            reply.as_str().unwrap_or("").contains(says),
            "{signature:?}: {reply}"
        );
    }
    for (event, body, says) in [
        ("ping", json!({"zen": "hi"}).to_string(), "pong"),
        (
            "push",
            push_payload("refs/heads/main", "docs [ci skip]"),
            "skip CI",
        ),
        (
            "push",
            push_payload("refs/notes/x", "x"),
            "only branches and tags",
        ),
        (
            "pull_request",
            json!({"action": "closed", "pull_request": {}}).to_string(),
            "action 'closed'",
        ),
        ("issues", json!({}).to_string(), "does not handle 'issues'"),
    ] {
        let (status, reply) = github(&m, event, &body, Some(&sign256(&body))).await;
        assert_eq!(status, 200, "{event}: {reply}");
        assert!(
            reply["ignored"].as_str().unwrap_or("").contains(says),
            "{event}: {reply}"
        );
    }
    let bad = "{not json";
    let (status, _) = github(&m, "push", bad, Some(&sign256(bad))).await;
    assert_eq!(status, 400);
    let (_, changes) = m.get("changes").await;
    assert_eq!(changes["meta"]["total"], 0, "{changes}");
    m.stop().await;
}

const GITLAB: &str =
    "c['www'] = {'change_hook_dialects': {'gitlab': {'secret': 'tok'}}}\nc['builders'] = []\n";

async fn gitlab(
    m: &TestMaster,
    path: &str,
    event: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut headers = vec![("X-Gitlab-Event", event)];
    if let Some(t) = token {
        headers.push(("X-Gitlab-Token", t));
    }
    let (status, text) =
        crate::harness::http_text(&m.www(), "POST", path, Some(body), &headers).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_pushes_and_merge_requests_make_changes_with_the_right_token() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", GITLAB)).await;
    let push = json!({
        "object_kind": "push", "ref": "refs/heads/main", "user_name": "ann",
        "repository": {"name": "kiln", "url": "https://gitlab.example/g/kiln.git"},
        "commits": [
            {"id": "a1", "message": "one", "timestamp": "2024-05-01T10:00:00Z", "url": "https://gitlab.example/c/a1",
             "author": {"name": "Ann", "email": "ann@x"}, "added": ["x.rs"], "modified": [], "removed": ["y.rs"]},
            {"id": "a0", "message": "seen", "timestamp": "2024-05-01T09:00:00Z", "distinct": false,
             "author": {"name": "Ann", "email": "ann@x"}}
        ]
    })
    .to_string();
    let (status, reply) = gitlab(
        &m,
        "/change_hook/gitlab?codebase=main-cb",
        "Push Hook",
        &push,
        Some("tok"),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        reply["changeids"],
        json!([1]),
        "the commit that is not distinct is skipped"
    );
    let (_, c) = m.get("changes/1").await;
    let c = &c["changes"][0];
    assert_eq!(c["author"], "Ann <ann@x>");
    assert_eq!(c["files"], json!(["x.rs", "y.rs"]));
    assert_eq!(
        (c["branch"].as_str(), c["category"].as_str()),
        (Some("main"), Some("push"))
    );
    assert_eq!(
        (c["project"].as_str(), c["codebase"].as_str()),
        (Some("kiln"), Some("main-cb"))
    );
    assert_eq!(c["repository"], "https://gitlab.example/g/kiln.git");

    let mr = json!({
        "object_kind": "merge_request",
        "object_attributes": {
            "iid": 3, "title": "Faster", "description": "Much", "state": "opened", "action": "open",
            "target_branch": "main", "source_branch": "fast", "source_project_id": 9, "target_project_id": 8,
            "url": "https://gitlab.example/mr/3",
            "source": {"git_http_url": "https://gitlab.example/f/kiln.git", "git_ssh_url": "git@f"},
            "target": {"git_http_url": "https://gitlab.example/g/kiln.git", "git_ssh_url": "git@g", "name": "kiln"},
            "last_commit": {"id": "b2", "timestamp": "2024-05-02T00:00:00Z", "author": {"name": "Bo", "email": "bo@x"}}
        }
    })
    .to_string();
    let (status, reply) = gitlab(
        &m,
        "/change_hook/gitlab",
        "Merge Request Hook",
        &mr,
        Some("tok"),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["changeids"][0].as_i64().unwrap();
    let (_, c) = m.get(&format!("changes/{id}")).await;
    let c = &c["changes"][0];
    assert_eq!(c["comments"], "MR#3: Faster\n\nMuch");
    assert_eq!(
        (c["branch"].as_str(), c["revision"].as_str()),
        (Some("main"), Some("b2"))
    );
    assert_eq!(c["properties"]["source_branch"], json!(["fast", "Change"]));
    assert_eq!(c["properties"]["source_project_id"], json!([9, "Change"]));
    assert_eq!(c["category"], "merge_request");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_refuses_a_wrong_token_and_ignores_closed_merge_requests() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", GITLAB)).await;
    let body = json!({"object_kind": "push", "ref": "refs/heads/main", "commits": []}).to_string();
    for token in [None, Some("nope"), Some("to")] {
        let (status, reply) = gitlab(&m, "/change_hook/gitlab", "Push Hook", &body, token).await;
        assert_eq!(status, 403, "{token:?}: {reply}");
    }
    let closed = json!({"object_kind": "merge_request", "object_attributes": {"state": "merged"}})
        .to_string();
    let (status, reply) = gitlab(
        &m,
        "/change_hook/gitlab",
        "Merge Request Hook",
        &closed,
        Some("tok"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        reply["ignored"]
            .as_str()
            .unwrap()
            .contains("state 'merged'"),
        "{reply}"
    );
    let (status, _) = gitlab(&m, "/change_hook/gitlab", "Push Hook", "[", Some("tok")).await;
    assert_eq!(status, 400);
    let (_, changes) = m.get("changes").await;
    assert_eq!(changes["meta"]["total"], 0);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_pushes_and_pull_requests_are_signed_with_hmac_sha256() {
    let mut m = TestMaster::start(&config(
        "sqlite:///state.sqlite",
        "c['www'] = {'change_hook_dialects': {'gitea': {'secret': 's3cret'}}}\nc['builders'] = []\n",
    ))
    .await;
    let send = |event: &'static str, body: String, signature: Option<String>| {
        let www = m.www();
        async move {
            let mut headers = vec![("X-Gitea-Event", event.to_string())];
            if let Some(s) = signature {
                headers.push(("X-Gitea-Signature", s));
            }
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let (status, text) = crate::harness::http_text(
                &www,
                "POST",
                "/change_hook/gitea",
                Some(&body),
                &headers,
            )
            .await;
            (
                status,
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or(serde_json::Value::String(text)),
            )
        }
    };
    let hex = |body: &str| sign256(body).trim_start_matches("sha256=").to_string();
    let push = json!({
        "ref": "refs/heads/main",
        "repository": {"html_url": "https://gitea.example/o/r", "full_name": "o/r"},
        "commits": [{"id": "g1", "message": "gitea", "timestamp": "2024-06-01T00:00:00Z", "url": "https://gitea.example/o/r/commit/g1",
            "author": {"name": "G", "email": "g@x"}, "committer": {"name": "G", "email": "g@x"}, "added": ["a"], "modified": [], "removed": []}]
    })
    .to_string();
    let (status, reply) = send("push", push.clone(), Some(hex(&push))).await;
    assert_eq!(status, 200, "{reply}");
    let (_, c) = m.get("changes/1").await;
    assert_eq!(c["changes"][0]["revision"], "g1");
    assert_eq!(c["changes"][0]["files"], json!(["a"]));
    let (status, _) = send("push", push.clone(), Some(hex("other"))).await;
    assert_eq!(status, 403);
    let (status, _) = send("push", push.clone(), None).await;
    assert_eq!(status, 403);

    let pr = json!({"action": "synchronized", "number": 5, "sender": {"login": "gu"},
        "pull_request": {"title": "T", "body": "B", "html_url": "https://gitea.example/o/r/pulls/5",
            "head": {"sha": "h5", "ref": "topic"}, "base": {"ref": "main", "repo": {"html_url": "https://gitea.example/o/r", "full_name": "o/r"}}}})
    .to_string();
    let (status, reply) = send("pull_request", pr.clone(), Some(hex(&pr))).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["changeids"][0].as_i64().unwrap();
    let (_, c) = m.get(&format!("changes/{id}")).await;
    assert_eq!(c["changes"][0]["branch"], "refs/pull/5/head");
    assert_eq!(
        c["changes"][0]["properties"]["head_branch"],
        json!(["topic", "Change"])
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitbucket_cloud_and_server_pushes_and_pull_requests() {
    let mut m = TestMaster::start(&config(
        "sqlite:///state.sqlite",
        "c['www'] = {'change_hook_dialects': {'bitbucketcloud': True, 'bitbucketserver': {'codebase': 'srv'}}}\nc['builders'] = []\n",
    ))
    .await;
    let post = |dialect: &'static str, key: &'static str, body: String| {
        let www = m.www();
        async move {
            let (status, text) = crate::harness::http_text(
                &www,
                "POST",
                &format!("/change_hook/{dialect}"),
                Some(&body),
                &[("X-Event-Key", key)],
            )
            .await;
            (
                status,
                serde_json::from_str::<serde_json::Value>(&text)
                    .unwrap_or(serde_json::Value::String(text)),
            )
        }
    };
    let repo = json!({"links": {"self": {"href": "https://bitbucket.org/o/r"}, "html": {"href": "https://bitbucket.org/o/r"}},
        "project": {"name": "P"}, "scm": "git"});
    let push = json!({"actor": {"display_name": "Dee", "nickname": "dee"}, "repository": repo,
    "push": {"changes": [
        {"new": {"type": "branch", "name": "main", "target": {"hash": "b1"}}, "old": null},
        {"new": {"type": "tag", "name": "v2", "target": {"hash": "b2"}}, "old": null},
        {"new": null, "old": {"type": "branch", "name": "gone", "target": {"hash": "b0"}}}
    ]}})
    .to_string();
    let (status, reply) = post("bitbucketcloud", "repo:push", push).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["changeids"], json!([1, 2, 3]));
    let mut seen = Vec::new();
    for id in 1..=3 {
        let (_, c) = m.get(&format!("changes/{id}")).await;
        let c = &c["changes"][0];
        seen.push((
            c["branch"].as_str().unwrap().to_string(),
            c["category"].as_str().unwrap().to_string(),
            c["revision"].as_str().unwrap().to_string(),
        ));
        assert_eq!(c["author"], "Dee <dee>");
        assert_eq!(c["project"], "P");
        assert_eq!(c["repository"], "https://bitbucket.org/o/r");
    }
    assert_eq!(
        seen,
        [
            ("refs/heads/main".into(), "push".into(), "b1".into()),
            ("refs/tags/v2".into(), "push".into(), "b2".into()),
            ("refs/heads/gone".into(), "ref-deleted".into(), "b0".into()),
        ]
    );

    let pr = json!({"actor": {"display_name": "Dee", "nickname": "dee"}, "repository": repo,
        "pullrequest": {"id": 12, "title": "Speed", "links": {"html": {"href": "https://bitbucket.org/o/r/pull-requests/12"}},
            "source": {"commit": {"hash": "p12"}, "branch": {"name": "fast"}},
            "destination": {"branch": {"name": "main"}}}})
    .to_string();
    let (status, reply) = post("bitbucketcloud", "pullrequest:created", pr.clone()).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["changeids"][0].as_i64().unwrap();
    let (_, c) = m.get(&format!("changes/{id}")).await;
    let c = &c["changes"][0];
    assert_eq!(c["branch"], "refs/pull-requests/12/merge");
    assert_eq!(c["revision"], "p12");
    assert_eq!(c["category"], "pull-created");
    assert_eq!(
        c["comments"],
        "pull-request #12: Speed\nhttps://bitbucket.org/o/r/pull-requests/12"
    );
    let (_, reply) = post("bitbucketcloud", "pullrequest:fulfilled", pr).await;
    let id = reply["changeids"][0].as_i64().unwrap();
    let (_, c) = m.get(&format!("changes/{id}")).await;
    assert_eq!(c["changes"][0]["branch"], "refs/heads/main");

    let server = json!({"actor": {"displayName": "Sam", "emailAddress": "sam@x"},
        "repository": {"links": {"self": [{"href": "https://bb.example/projects/P/repos/r/browse"}]}, "project": {"name": "P"}},
        "changes": [{"ref": {"displayId": "main", "type": "BRANCH"}, "toHash": "s1", "fromHash": "s0", "type": "UPDATE"}]})
    .to_string();
    let (status, reply) = post("bitbucketserver", "repo:refs_changed", server).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["changeids"][0].as_i64().unwrap();
    let (_, c) = m.get(&format!("changes/{id}")).await;
    let c = &c["changes"][0];
    assert_eq!(
        (
            c["author"].as_str(),
            c["revision"].as_str(),
            c["codebase"].as_str()
        ),
        (Some("Sam <sam@x>"), Some("s1"), Some("srv"))
    );
    assert_eq!(
        c["repository"],
        "https://bb.example/projects/P/repos/r/browse"
    );

    let (status, reply) = post("bitbucketcloud", "issue:created", "{}".into()).await;
    assert_eq!(status, 200);
    assert!(reply["ignored"].is_string(), "{reply}");
    let (status, _) = post(
        "bitbucketcloud",
        "repo:push",
        json!({"push": {"changes": [{"new": {"type": "branch"}}]}, "repository": repo}).to_string(),
    )
    .await;
    assert_eq!(status, 400, "a ref without its name or commit");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_auth_and_the_configured_body_limit_are_enforced() {
    use base64::Engine;
    let body = "c['www'] = {'change_hook_dialects': {'base': True},\n\
        'change_hook_auth': ['memory:alice:pw1', 'file:hooks.passwd'], 'change_hook_max_body': 1000}\n\
        c['builders'] = []\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hooks.passwd"), "# users\nbob:pw2\n").unwrap();
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", body)).await;
    let basic = |cred: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(cred)
        )
    };
    let post = |auth: Option<String>, form: String| {
        let www = m.www();
        async move {
            let headers: Vec<(&str, &str)> = match &auth {
                Some(a) => vec![("Authorization", a.as_str())],
                None => vec![],
            };
            crate::harness::http_text(&www, "POST", "/change_hook/base", Some(&form), &headers)
                .await
        }
    };
    let form = || "author=a&comments=x".to_string();
    for auth in [None, Some(basic("alice:wrong")), Some(basic("carol:pw2"))] {
        let (status, text) = post(auth.clone(), form()).await;
        assert_eq!(status, 401, "{auth:?}: {text}");
    }
    assert_eq!(post(Some(basic("alice:pw1")), form()).await.0, 200);
    assert_eq!(post(Some(basic("bob:pw2")), form()).await.0, 200);
    // The file is read at each call: bob's removal takes effect at once.
    std::fs::write(m.path("hooks.passwd"), "carol:pw3\n").unwrap();
    assert_eq!(post(Some(basic("bob:pw2")), form()).await.0, 401);
    assert_eq!(post(Some(basic("carol:pw3")), form()).await.0, 200);

    // The configured limit: 1000 bytes.
    let big = format!("author=a&comments={}", "x".repeat(1000));
    let (status, text) = post(Some(basic("alice:pw1")), big).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("limit of 1000 bytes"), "{text}");
    let (_, changes) = m.get("changes").await;
    assert_eq!(changes["meta"]["total"], 3, "{changes}");
    m.stop().await;
}

/// A hook cannot multiply: one request stores at most `change_hook_max_changes` changes and says
/// how many it left; a post from another site's page is refused; and an open hook is warned about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_request_stores_a_bounded_number_of_changes_and_refuses_other_sites() {
    let body = "c['www'] = {'change_hook_dialects': {'github': {}}, 'change_hook_max_changes': 3}\n\
        c['builders'] = []\n";
    let config_text = config("sqlite:///state.sqlite", body);
    let loaded = kiln_config::load_str("master.star", &config_text).unwrap();
    assert!(
        loaded.warnings.iter().any(|w| w.message.contains(
            "the change hook 'github' takes changes from anyone who can reach the web port: give it a 'secret'"
        )),
        "{:?}",
        loaded.warnings
    );
    let m = TestMaster::start(&config_text).await;
    let commits: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            json!({"id": format!("c{i}"), "message": format!("commit {i}"), "timestamp": "2024-01-02T03:04:05Z",
                   "url": "https://github.com/o/r/commit", "author": {"name": "A", "email": "a@x"},
                   "modified": ["lib.rs"], "distinct": true})
        })
        .collect();
    let push = json!({"ref": "refs/heads/main", "repository": {"html_url": "https://github.com/o/r", "full_name": "o/r"},
                      "head_commit": {"message": "commit 4"}, "commits": commits})
    .to_string();
    let (status, reply) = github(&m, "push", &push, None).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["changeids"], json!([1, 2, 3]));
    assert_eq!(reply["not_stored"], 2);
    let (_, changes) = m.get("changes").await;
    assert_eq!(changes["meta"]["total"], 3);

    // A page of another site cannot post to a hook, by its Origin or, without one, its Referer.
    for header in [
        ("Origin", "http://evil.example"),
        ("Referer", "http://evil.example/page"),
    ] {
        let (status, text) = crate::harness::http_text(
            &m.www(),
            "POST",
            "/change_hook/github",
            Some(&push),
            &[("X-GitHub-Event", "push"), header],
        )
        .await;
        assert_eq!(status, 403, "{header:?}: {text}");
        assert!(text.contains("pages of another site"), "{text}");
    }
    let (_, changes) = m.get("changes").await;
    assert_eq!(changes["meta"]["total"], 3, "nothing more was stored");
}
