//! Pollers against real repositories made here with the real `git`, `hg` and `svn`: changes with
//! their attributes, state that survives a restart, the `poller` hook, the poll interval on the
//! injected clock, and an unreachable repository.

use std::path::Path;
use std::process::Command;

use kiln_master::clock::ManualClock;
use serde_json::{Value, json};

use crate::harness::{TestMaster, config, http};

const START: i64 = 1_700_000_000;

/// Runs a tool in `dir`; the test fails with its output if it does.
fn sh(dir: &Path, program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "Ann Author")
        .env("GIT_AUTHOR_EMAIL", "ann@example.org")
        .env("GIT_COMMITTER_NAME", "Carl Committer")
        .env("GIT_COMMITTER_EMAIL", "carl@example.org")
        .env("GIT_AUTHOR_DATE", "1700000100 +0000")
        .env("GIT_COMMITTER_DATE", "1700000200 +0000")
        .env("HGPLAIN", "1")
        .env("HGUSER", "Hank <hank@example.org>")
        .output()
        .unwrap_or_else(|e| panic!("{program} is needed for this test: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn commit_file(repo: &Path, file: &str, text: &str, message: &str) -> String {
    let path = repo.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    sh(repo, "git", &["add", file]);
    sh(repo, "git", &["commit", "-q", "-m", message]);
    sh(repo, "git", &["rev-parse", "HEAD"]).trim().to_string()
}

async fn poll(m: &TestMaster, query: &str) -> Value {
    let (status, reply) = http(
        &m.www(),
        "POST",
        &format!("/change_hook/poller?{query}"),
        Some(""),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    reply
}

fn ids(reply: &Value) -> Vec<i64> {
    reply["changeids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

async fn change(m: &TestMaster, id: i64) -> Value {
    let (_, c) = m.get(&format!("changes/{id}")).await;
    c["changes"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_poller_makes_one_change_per_new_commit_and_keeps_its_place() {
    // The test's future is large; on the heap it does not overflow the test thread's stack.
    Box::pin(git_poller_body()).await;
}

async fn git_poller_body() {
    let upstream = tempfile::tempdir().unwrap();
    let repo = upstream.path();
    sh(repo, "git", &["init", "-q", "-b", "main"]);
    commit_file(repo, "a.txt", "one\n", "first");
    let url = repo.display().to_string();
    let body = format!(
        "c['www'] = {{'change_hook_dialects': {{'poller': {{'allowed': ['gp', 'broken']}}}}}}\n\
         c['builders'] = []\n\
         c['change_source'] = [\n\
             changes.GitPoller(repourl={url:?}, branches=True, name='gp', pollInterval=60, project='kiln', category='git'),\n\
             changes.GitPoller(repourl={missing:?}, name='broken'),\n\
             changes.GitPoller(repourl={url:?}, name='hidden', workdir='other-work')]\n",
        missing = format!("{url}/nope")
    );
    let source = config("sqlite:///state.sqlite", &body);
    let clock = ManualClock::new(START);
    let c = clock.clone();
    let mut m =
        TestMaster::start_with(tempfile::tempdir().unwrap(), &source, move |o| o.clock = c).await;

    // The first poll records where the branches are.
    assert_eq!(ids(&poll(&m, "poller=gp").await), Vec::<i64>::new());
    let b = commit_file(repo, "src/b.rs", "fn b() {}\n", "add b\n\nwith a body");
    let c2 = commit_file(repo, "a.txt", "two\n", "change a");
    sh(repo, "git", &["checkout", "-q", "-b", "feature"]);
    let d = commit_file(repo, "d.txt", "d\n", "feature work");
    sh(repo, "git", &["checkout", "-q", "main"]);
    let found = ids(&poll(&m, "poller=gp").await);
    assert_eq!(found.len(), 3, "{found:?}");
    let mut by_rev = std::collections::BTreeMap::new();
    for id in &found {
        let c = change(&m, *id).await;
        by_rev.insert(c["revision"].as_str().unwrap().to_string(), c);
    }
    let cb = &by_rev[&b];
    assert_eq!(cb["author"], "Ann Author <ann@example.org>");
    assert_eq!(cb["committer"], "Carl Committer <carl@example.org>");
    assert_eq!(cb["comments"], "add b\n\nwith a body");
    assert_eq!(cb["files"], json!(["src/b.rs"]));
    assert_eq!(cb["when_timestamp"], 1_700_000_200);
    assert_eq!(cb["branch"], "main");
    assert_eq!(cb["repository"], url.as_str());
    assert_eq!(
        (&cb["project"], &cb["category"]),
        (&json!("kiln"), &json!("git"))
    );
    assert_eq!(by_rev[&c2]["files"], json!(["a.txt"]));
    assert_eq!(by_rev[&d]["branch"], "feature");
    // Oldest first on a branch.
    let pos = |r: &str| {
        found
            .iter()
            .position(|id| by_rev[r]["changeid"] == *id)
            .unwrap()
    };
    assert!(pos(&b) < pos(&c2));

    // An unreachable repository: the poll fails with the tool's message and nothing is lost.
    let reply = poll(&m, "poller=broken").await;
    assert!(
        reply["errors"]["broken"]
            .as_str()
            .unwrap()
            .contains("ls-remote"),
        "{reply}"
    );
    // A poller the hook may not poke, and one that does not exist.
    let (status, text) = http(
        &m.www(),
        "POST",
        "/change_hook/poller?poller=hidden&poller=nope",
        Some(""),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        text.as_str()
            .unwrap()
            .contains("Could not find pollers: hidden,nope"),
        "{text}"
    );

    // After a restart the poller knows where it was: only the new commit is a change.
    m.stop().await;
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    drop(m);
    let e = commit_file(repo, "e.txt", "e\n", "after the restart");
    let c = clock.clone();
    let mut m = TestMaster::start_with(dir, &source, move |o| o.clock = c).await;
    let found = ids(&poll(&m, "").await);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(change(&m, found[0]).await["revision"], e.as_str());

    // The poll interval runs on the master's clock.
    let f = commit_file(repo, "f.txt", "f\n", "found by the timer");
    clock.advance(60);
    // Skip the event of the change found by the hook above.
    loop {
        let new = m.wait_event("changes.*.new").await;
        if change(&m, new["changeid"].as_i64().unwrap()).await["revision"] == f.as_str() {
            break;
        }
    }
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hg_poller_follows_a_branch() {
    let upstream = tempfile::tempdir().unwrap();
    let repo = upstream.path();
    sh(repo, "hg", &["init", "."]);
    std::fs::write(repo.join("a.txt"), "one\n").unwrap();
    sh(
        repo,
        "hg",
        &["commit", "-q", "-A", "-m", "first", "-d", "1700000100 0"],
    );
    let url = repo.display().to_string();
    let body = format!(
        "c['www'] = {{'change_hook_dialects': {{'poller': True}}}}\nc['builders'] = []\n\
         c['change_source'] = changes.HgPoller(repourl={url:?}, branches=['default'], workdir='hg-work', name='hp')\n"
    );
    let m = TestMaster::start(&config("sqlite:///state.sqlite", &body)).await;
    // The poller is one of the master's change sources, as Buildbot lists them.
    let (_, sources) = m.get("changesources").await;
    assert_eq!(sources["changesources"][0]["name"], "hp", "{sources}");
    assert_eq!(
        sources["changesources"][0]["master"]["active"], true,
        "{sources}"
    );
    assert_eq!(ids(&poll(&m, "poller=hp").await), Vec::<i64>::new());
    std::fs::write(repo.join("b.txt"), "b\n").unwrap();
    sh(
        repo,
        "hg",
        &["commit", "-q", "-A", "-m", "add b", "-d", "1700000200 0"],
    );
    std::fs::write(repo.join("a.txt"), "two\n").unwrap();
    sh(
        repo,
        "hg",
        &["commit", "-q", "-m", "change a\nmore", "-d", "1700000300 0"],
    );
    let found = ids(&poll(&m, "poller=hp").await);
    assert_eq!(found.len(), 2);
    let first = change(&m, found[0]).await;
    assert_eq!(first["author"], "Hank <hank@example.org>");
    assert_eq!(first["comments"], "add b");
    assert_eq!(first["files"], json!(["b.txt"]));
    assert_eq!(first["when_timestamp"], 1_700_000_200);
    assert_eq!(first["branch"], "default");
    let second = change(&m, found[1]).await;
    assert_eq!(second["comments"], "change a\nmore");
    let tip = sh(repo, "hg", &["log", "-r", "tip", "--template", "{node}"]);
    assert_eq!(second["revision"], tip.as_str());
    assert_eq!(ids(&poll(&m, "poller=hp").await), Vec::<i64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svn_poller_splits_paths_into_branches() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    sh(root, "svnadmin", &["create", "repo"]);
    let url = format!("file://{}/repo", root.display());
    sh(
        root,
        "svn",
        &[
            "mkdir",
            "-q",
            "--parents",
            "-m",
            "layout",
            &format!("{url}/proj/trunk"),
            &format!("{url}/proj/branches/b1"),
            &format!("{url}/other"),
        ],
    );
    sh(root, "svn", &["checkout", "-q", &url, "wc"]);
    let wc = root.join("wc");
    let body = format!(
        "c['www'] = {{'change_hook_dialects': {{'poller': True}}}}\nc['builders'] = []\n\
         c['change_source'] = changes.SVNPoller(repourl={:?}, split_file=changes.split_file_branches, name='sp',\n\
             revlinktmpl='http://svn.example.org/r%s')\n",
        format!("{url}/proj")
    );
    let m = TestMaster::start(&config("sqlite:///state.sqlite", &body)).await;
    assert_eq!(ids(&poll(&m, "poller=sp").await), Vec::<i64>::new());
    std::fs::write(wc.join("proj/trunk/a.c"), "int a;\n").unwrap();
    std::fs::write(wc.join("proj/branches/b1/x.c"), "int x;\n").unwrap();
    std::fs::write(wc.join("other/o.c"), "int o;\n").unwrap();
    sh(
        &wc,
        "svn",
        &[
            "add",
            "-q",
            "proj/trunk/a.c",
            "proj/branches/b1/x.c",
            "other/o.c",
        ],
    );
    sh(
        &wc,
        "svn",
        &["commit", "-q", "--username", "sally", "-m", "two branches"],
    );
    let found = ids(&poll(&m, "poller=sp").await);
    assert_eq!(found.len(), 2, "one change per branch");
    let mut got = Vec::new();
    for id in found {
        let c = change(&m, id).await;
        got.push((
            c["branch"].clone(),
            c["files"].clone(),
            c["revision"].clone(),
            c["revlink"].clone(),
        ));
        assert_eq!(c["author"], "sally");
        assert_eq!(c["comments"], "two branches");
    }
    got.sort_by_key(|g| g.0.to_string());
    assert_eq!(
        got,
        [
            (
                json!("branches/b1"),
                json!(["x.c"]),
                json!("2"),
                json!("http://svn.example.org/r2")
            ),
            (
                Value::Null,
                json!(["a.c"]),
                json!("2"),
                json!("http://svn.example.org/r2")
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_poller_polls_at_launch_and_follows_the_refs_a_function_picks() {
    let upstream = tempfile::tempdir().unwrap();
    let repo = upstream.path();
    sh(repo, "git", &["init", "-q", "-b", "main"]);
    commit_file(repo, "a.txt", "one\n", "first");
    sh(repo, "git", &["branch", "rel-1"]);
    sh(repo, "git", &["branch", "dev"]);
    let url = repo.display().to_string();
    let body = format!(
        "c['builders'] = []\n\
         c['change_source'] = changes.GitPoller(repourl={url:?}, name='fn', pollAtLaunch=True, pollInterval=60,\n\
             branches=lambda ref: ref.startswith('refs/heads/rel'))\n"
    );
    let clock = ManualClock::new(START);
    let c = clock.clone();
    let mut m = TestMaster::start_with(
        tempfile::tempdir().unwrap(),
        &config("sqlite:///state.sqlite", &body),
        move |o| o.clock = c,
    )
    .await;
    // The poll at launch records where the chosen refs are, and only those.
    let db = m.master().db.clone();
    let stored = || async {
        let id = db.lookup_object_id("fn", "GitPoller").await.unwrap()?;
        db.get_state(id, "lastRev").await.unwrap()
    };
    m.wait_until("objects.*.state", || async { stored().await.is_some() })
        .await;
    let state = stored().await.expect("the poll at launch stored its state");
    let state: Value = serde_json::from_str(&state).unwrap();
    let refs: Vec<&String> = state.as_object().unwrap().keys().collect();
    assert_eq!(refs, ["refs/heads/rel-1"]);
    sh(repo, "git", &["checkout", "-q", "dev"]);
    commit_file(repo, "d.txt", "d\n", "on dev");
    sh(repo, "git", &["checkout", "-q", "rel-1"]);
    let rel = commit_file(repo, "r.txt", "r\n", "on rel-1");
    clock.advance(60);
    let new = m.wait_event("changes.*.new").await;
    let c = change(&m, new["changeid"].as_i64().unwrap()).await;
    assert_eq!(
        (&c["revision"], &c["branch"]),
        (&json!(rel), &json!("rel-1"))
    );
    let (_, all) = m.get("changes").await;
    assert_eq!(all["meta"]["total"], 1, "dev is not followed");
    m.stop().await;
}
