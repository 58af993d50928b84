//! Change-driven schedulers: changes through the base hook, filtered, held by the tree-stable
//! timer on an injected clock, and built; classifications survive a restart.

use std::sync::Arc;
use std::time::Duration;

use kiln_core::{ChangeId, SchedulerId};
use kiln_master::clock::ManualClock;
use serde_json::{Value, json};

use crate::harness::{TestMaster, WAIT, config, http, rpc};

const START: i64 = 1_700_000_000;

fn body(timer: &str) -> String {
    format!(
        "c['www'] = {{'change_hook_dialects': {{'base': True}}}}\n\
         f = util.BuildFactory([steps.ShellCommand(name='t', command='true')])\n\
         c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]\n\
         c['schedulers'] = [schedulers.SingleBranchScheduler(name='sb', builderNames=['b1'], branch='main',\n\
             treeStableTimer={timer}, properties={{'kind': 'ci'}})]\n"
    )
}

async fn start(dir: tempfile::TempDir, source: &str, clock: &Arc<ManualClock>) -> TestMaster {
    let clock = clock.clone();
    TestMaster::start_with(dir, source, move |o| o.clock = clock).await
}

async fn post_change(m: &TestMaster, branch: &str, revision: &str) -> i64 {
    let form = format!(
        "author=dev&branch={branch}&revision={revision}&repository=https%3A%2F%2Fx%2Fr.git&project=p"
    );
    let (status, reply) = http(&m.www(), "POST", "/change_hook/base", Some(&form)).await;
    assert_eq!(status, 200, "{reply}");
    reply["changeids"][0].as_i64().expect("change id")
}

/// Waits until the scheduler has classified exactly `expected`, as each classification or
/// flush announces.
async fn wait_classified(m: &mut TestMaster, expected: &[i64]) -> SchedulerId {
    let db = m.master().db.clone();
    let want: Vec<ChangeId> = expected.iter().map(|i| ChangeId(*i)).collect();
    m.wait_until("schedulers.*.*", || async {
        let Some(id) = db.lookup_scheduler_id("sb").await.unwrap() else {
            return false;
        };
        let got: Vec<ChangeId> = db
            .change_classifications(id)
            .await
            .unwrap()
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        got == want
    })
    .await;
    db.lookup_scheduler_id("sb")
        .await
        .unwrap()
        .expect("registered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_stable_timer_builds_the_latest_change_of_its_branch() {
    let clock = ManualClock::new(START);
    let mut m = start(
        tempfile::tempdir().unwrap(),
        &config("sqlite:///state.sqlite", &body("60")),
        &clock,
    )
    .await;
    m.start_worker("w1", "pass").await;
    let first = post_change(&m, "main", "r1").await;
    let other = post_change(&m, "dev", "r-dev").await;
    wait_classified(&mut m, &[first]).await;
    clock.advance(30);
    let second = post_change(&m, "main", "r2").await;
    let sid = wait_classified(&mut m, &[first, second]).await;
    let (_, buildsets) = m.get("buildsets").await;
    assert_eq!(buildsets["meta"]["total"], 0, "the tree is not stable yet");

    // Sixty seconds after the last change the timer fires: one buildset with the latest revision.
    clock.advance(60);
    let new = m.wait_event("buildsets.*.new").await;
    let bsid = new["bsid"].as_i64().unwrap();
    assert_eq!(m.wait_buildset(bsid).await, 0);
    let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
    let bs = &bs["buildsets"][0];
    assert_eq!(
        bs["reason"],
        "The SingleBranchScheduler scheduler named 'sb' triggered this build"
    );
    assert_eq!(bs["sourcestamps"][0]["revision"], "r2");
    assert_eq!(bs["sourcestamps"][0]["branch"], "main");
    let (_, build) = m.get("builds/1?property=*").await;
    let props = &build["builds"][0]["properties"];
    assert_eq!(props["scheduler"], serde_json::json!(["sb", "Scheduler"]));
    assert_eq!(props["kind"], serde_json::json!(["ci", "Scheduler"]));
    assert_eq!(props["revision"][0], "r2");
    assert!(
        m.master()
            .db
            .change_classifications(sid)
            .await
            .unwrap()
            .is_empty(),
        "built changes are forgotten"
    );
    let (_, changes) = m.get(&format!("changes/{other}")).await;
    assert_eq!(
        changes["changes"][0]["branch"], "dev",
        "the dev change is stored"
    );
    let (_, all) = m.get("buildsets").await;
    assert_eq!(all["meta"]["total"], 1, "the dev change built nothing");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_timer_each_change_builds_at_once() {
    let clock = ManualClock::new(START);
    let mut m = start(
        tempfile::tempdir().unwrap(),
        &config("sqlite:///state.sqlite", &body("None")),
        &clock,
    )
    .await;
    m.start_worker("w1", "pass").await;
    post_change(&m, "main", "r1").await;
    let bsid = m.wait_event("buildsets.*.new").await["bsid"]
        .as_i64()
        .unwrap();
    assert_eq!(m.wait_buildset(bsid).await, 0);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classified_changes_survive_a_restart_and_rearm_the_timer() {
    let clock = ManualClock::new(START);
    let source = config("sqlite:///state.sqlite", &body("60"));
    let mut m = start(tempfile::tempdir().unwrap(), &source, &clock).await;
    let change = post_change(&m, "main", "r1").await;
    wait_classified(&mut m, &[change]).await;
    m.stop().await;
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    drop(m);

    // Much later the master starts again; the stored classification starts a fresh timer.
    clock.advance(3600);
    let mut m = start(dir, &source, &clock).await;
    m.start_worker("w1", "pass").await;
    clock.advance(60);
    let bsid = m.wait_event("buildsets.*.new").await["bsid"]
        .as_i64()
        .unwrap();
    assert_eq!(m.wait_buildset(bsid).await, 0);
    let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
    assert_eq!(bs["buildsets"][0]["sourcestamps"][0]["revision"], "r1");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_is_important_and_filter_functions_decide_and_errors_keep_the_change() {
    let clock = ManualClock::new(START);
    let body = "c['www'] = {'change_hook_dialects': {'base': True}}\n\
         f = util.BuildFactory([steps.ShellCommand(name='t', command='true')])\n\
         c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]\n\
         def code(change):\n\
         \x20   if change.who == 'crash':\n\
         \x20       fail('cannot decide')\n\
         \x20   return [f for f in change.files if not f.startswith('docs/')]\n\
         def not_bots(change):\n\
         \x20   return change.missing if change.who == 'oops' else change.who != 'bot'\n\
         c['schedulers'] = [schedulers.SingleBranchScheduler(name='sb', builderNames=['b1'], treeStableTimer=10,\n\
         \x20   change_filter=util.ChangeFilter(branch='main', filter_fn=not_bots), fileIsImportant=code)]\n";
    let mut m = start(
        tempfile::tempdir().unwrap(),
        &config("sqlite:///state.sqlite", body),
        &clock,
    )
    .await;
    let www = m.www();
    let post = |who: &'static str, file: &'static str, revision: &'static str| {
        let www = www.clone();
        async move {
            let form =
                format!("author={who}&branch=main&files=%5B%22{file}%22%5D&revision={revision}");
            let (status, reply) = http(&www, "POST", "/change_hook/base", Some(&form)).await;
            assert_eq!(status, 200, "{reply}");
            reply["changeids"][0].as_i64().expect("change id")
        }
    };
    // A bot's change does not pass the filter; a documentation change is classified unimportant
    // and starts no timer.
    post("bot", "src/a.rs", "r1").await;
    let docs = post("dev", "docs/a.md", "r2").await;
    let sid = wait_classified(&mut m, &[docs]).await;
    assert_eq!(
        m.master().db.change_classifications(sid).await.unwrap(),
        vec![(ChangeId(docs), false)]
    );
    clock.advance(60);
    m.start_worker("w1", "pass").await;
    let code = post("dev", "src/b.rs", "r3").await;
    wait_classified(&mut m, &[docs, code]).await;
    clock.advance(10);
    let bsid = m.wait_event("buildsets.*.new").await["bsid"]
        .as_i64()
        .unwrap();
    let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
    assert_eq!(bs["buildsets"][0]["sourcestamps"][0]["revision"], "r3");
    let (_, all) = m.get("buildsets").await;
    assert_eq!(all["meta"]["total"], 1, "the unimportant change waited");

    // fileIsImportant raising, and filter_fn raising: each change is kept, counted important,
    // and built.
    for (who, revision) in [("crash", "r4"), ("oops", "r5")] {
        let id = post(who, "src/c.rs", revision).await;
        wait_classified(&mut m, &[id]).await;
        clock.advance(10);
        let bsid = m.wait_event("buildsets.*.new").await["bsid"]
            .as_i64()
            .unwrap();
        let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
        assert_eq!(bs["buildsets"][0]["sourcestamps"][0]["revision"], revision);
    }
    m.stop().await;
}

/// Waits until the scheduler's stored state `name` is `value`, as each state write announces.
async fn wait_state(m: &mut TestMaster, scheduler: &str, class: &str, name: &str, value: &str) {
    let db = m.master().db.clone();
    m.wait_until("objects.*.state", || async {
        let Some(id) = db.lookup_object_id(scheduler, class).await.unwrap() else {
            return false;
        };
        db.get_state(id, name).await.unwrap().as_deref() == Some(value)
    })
    .await;
}

const PERIODIC: &str = "f = util.BuildFactory([steps.ShellCommand(name='t', command='true')])\n\
    c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]\n\
    c['schedulers'] = [schedulers.Periodic(name='p', builderNames=['b1'], periodicBuildTimer=600,\n\
        codebases={'app': {'repository': 'https://x/app.git', 'branch': 'main'}})]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_builds_at_start_then_every_interval_and_remembers_its_last_build() {
    let clock = ManualClock::new(START);
    let source = config("sqlite:///state.sqlite", PERIODIC);
    let mut m = start(tempfile::tempdir().unwrap(), &source, &clock).await;
    // The first build is at once, as the master starts (before this test listens to events).
    // The build time is stored just before the buildset is: wait for the buildset itself.
    wait_state(&mut m, "p", "Periodic", "last_build", &START.to_string()).await;
    let bsid = tokio::time::timeout(WAIT, async {
        loop {
            let (_, all) = m.get("buildsets").await;
            if let Some(id) = all["buildsets"][0]["bsid"].as_i64() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a buildset");
    m.start_worker("w1", "pass").await;
    assert_eq!(m.wait_buildset(bsid).await, 0);
    let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
    let bs = &bs["buildsets"][0];
    assert_eq!(
        bs["reason"],
        "The Periodic scheduler named 'p' triggered this build"
    );
    let ss = &bs["sourcestamps"][0];
    assert_eq!(
        (&ss["codebase"], &ss["repository"], &ss["branch"]),
        (&json!("app"), &json!("https://x/app.git"), &json!("main"))
    );
    clock.advance(600);
    m.wait_event("buildsets.*.new").await;
    wait_state(
        &mut m,
        "p",
        "Periodic",
        "last_build",
        &(START + 600).to_string(),
    )
    .await;
    m.stop().await;
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    drop(m);

    // Restarted 100 s later, it waits for the rest of its interval instead of building at once.
    clock.advance(100);
    let mut m = start(dir, &source, &clock).await;
    clock.advance(500);
    m.wait_event("buildsets.*.new").await;
    wait_state(
        &mut m,
        "p",
        "Periodic",
        "last_build",
        &(START + 1200).to_string(),
    )
    .await;
    let (_, all) = m.get("buildsets").await;
    assert_eq!(all["meta"]["total"], 3, "no extra build at the restart");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_with_only_if_changed_builds_the_first_night_then_only_after_changes() {
    // START is 2023-11-14 22:13:20 UTC; the next 03:00 is 17,200 s later.
    let clock = ManualClock::new(START);
    let body = "c['www'] = {'change_hook_dialects': {'base': True}}\n\
        f = util.BuildFactory([steps.ShellCommand(name='t', command='true')])\n\
        c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]\n\
        c['schedulers'] = [schedulers.Nightly(name='n', builderNames=['b1'], hour=3, minute=0,\n\
            branch='main', onlyIfChanged=True, timezone='UTC')]\n";
    let mut m = start(
        tempfile::tempdir().unwrap(),
        &config("sqlite:///state.sqlite", body),
        &clock,
    )
    .await;
    m.start_worker("w1", "pass").await;
    let night1 = START + 17_200;
    clock.advance(17_200);
    let bsid = m.wait_event("buildsets.*.new").await["bsid"]
        .as_i64()
        .unwrap();
    assert_eq!(
        m.wait_buildset(bsid).await,
        0,
        "the first night always builds"
    );
    wait_state(&mut m, "n", "Nightly", "last_build", &night1.to_string()).await;

    // A quiet night: skipped, but remembered.
    clock.advance(86_400);
    wait_state(
        &mut m,
        "n",
        "Nightly",
        "last_build",
        &(night1 + 86_400).to_string(),
    )
    .await;

    // A change on another branch does not count; one on main does.
    post_change(&m, "dev", "r-dev").await;
    let main = post_change(&m, "main", "r-main").await;
    let db = m.master().db.clone();
    m.wait_until("schedulers.*.classified", || async {
        let Some(sid) = db.lookup_scheduler_id("n").await.unwrap() else {
            return false;
        };
        db.change_classifications(sid).await.unwrap() == vec![(ChangeId(main), true)]
    })
    .await;
    clock.advance(86_400);
    let bsid = m.wait_event("buildsets.*.new").await["bsid"]
        .as_i64()
        .unwrap();
    let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
    assert_eq!(bs["buildsets"][0]["sourcestamps"][0]["revision"], "r-main");
    let (_, all) = m.get("buildsets").await;
    assert_eq!(all["meta"]["total"], 2, "the quiet night built nothing");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_codebase_scheduler_fills_unchanged_codebases_from_their_defaults() {
    let clock = ManualClock::new(START);
    let body = "c['www'] = {'change_hook_dialects': {'base': True}}\n\
        f = util.BuildFactory([steps.ShellCommand(name='t', command='true')])\n\
        c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]\n\
        c['schedulers'] = [schedulers.AnyBranchScheduler(name='multi', builderNames=['b1'],\n\
            codebases={'app': {'repository': 'https://x/app.git'},\n\
                       'lib': {'repository': 'https://x/lib.git', 'branch': 'stable', 'revision': 'v1'}})]\n";
    let mut m = start(
        tempfile::tempdir().unwrap(),
        &config("sqlite:///state.sqlite", body),
        &clock,
    )
    .await;
    m.start_worker("w1", "pass").await;
    for (codebase, revision) in [("other", "o1"), ("app", "a1")] {
        let form = format!(
            "author=dev&branch=main&revision={revision}&codebase={codebase}&repository=https%3A%2F%2Fx%2F{codebase}.git"
        );
        let (status, reply) = http(&m.www(), "POST", "/change_hook/base", Some(&form)).await;
        assert_eq!(status, 200, "{reply}");
    }
    let bsid = m.wait_event("buildsets.*.new").await["bsid"]
        .as_i64()
        .unwrap();
    let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
    let stamps: Vec<(String, String, String, String)> = bs["buildsets"][0]["sourcestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let f = |k: &str| s[k].as_str().unwrap_or("-").to_string();
            (f("codebase"), f("repository"), f("branch"), f("revision"))
        })
        .collect();
    let own = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
    assert_eq!(
        stamps,
        [
            own("app", "https://x/app.git", "main", "a1"),
            own("lib", "https://x/lib.git", "stable", "v1")
        ]
    );
    assert_eq!(m.wait_buildset(bsid).await, 0);
    let (_, all) = m.get("buildsets").await;
    assert_eq!(all["meta"]["total"], 1, "the 'other' codebase is not built");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dependent_scheduler_builds_after_each_successful_upstream_buildset() {
    let body = "c['builders'] = [\n\
            util.BuilderConfig(name='up', workernames=['w1'], factory=util.BuildFactory([\n\
                steps.ShellCommand(command=['sh', '-c', util.Interpolate('exit %(prop:code)s')])])),\n\
            util.BuilderConfig(name='down', workernames=['w1'],\n\
                factory=util.BuildFactory([steps.ShellCommand(command='true')]))]\n\
        up = schedulers.ForceScheduler(name='force', builderNames=['up'],\n\
            properties=[util.StringParameter(name='code', default='0')])\n\
        c['schedulers'] = [up, schedulers.Dependent(name='dep', upstream=up, builderNames=['down'],\n\
            properties={'stage': 'two'})]\n";
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let mut downstream = Vec::new();
    for (code, revision) in [("1", "r-bad"), ("0", "r-good")] {
        let bsid = m
            .force(json!({"builderNames": ["up"], "code": code, "revision": revision}))
            .await;
        let results = m.wait_buildset(bsid).await;
        assert_eq!(results, if code == "0" { 0 } else { 2 });
        if code == "0" {
            // The downstream buildset follows the upstream's completion.
            loop {
                let e = m.wait_event("buildsets.*.new").await;
                if e["reason"] == "downstream" {
                    downstream.push(e["bsid"].as_i64().unwrap());
                    break;
                }
            }
        }
    }
    assert_eq!(m.wait_buildset(downstream[0]).await, 0);
    let (_, bs) = m.get(&format!("buildsets/{}", downstream[0])).await;
    assert_eq!(bs["buildsets"][0]["sourcestamps"][0]["revision"], "r-good");
    let (_, all) = m.get("buildsets").await;
    assert_eq!(all["meta"]["total"], 3, "nothing after the failed upstream");
    let (_, builds) = m.get("builds?property=stage").await;
    let stages: Vec<&Value> = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["properties"]["stage"])
        .filter(|s| !s.is_null())
        .collect();
    assert_eq!(stages, [&json!(["two", "Scheduler"])]);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedulers_are_listed_and_can_be_disabled_and_enabled() {
    let body = "c['www'] = {'change_hook_dialects': {'base': True}}\n\
        f = util.BuildFactory([steps.ShellCommand(name='t', command='true')])\n\
        c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]\n\
        c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1']),\n\
            schedulers.SingleBranchScheduler(name='sb', builderNames=['b1'], branch='main'),\n\
            schedulers.SingleBranchScheduler(name='zz', builderNames=['b1'], branch='main')]\n";
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    let (_, list) = m.get("schedulers").await;
    let names: Vec<&str> = list["schedulers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["force", "sb", "zz"]);
    let sb = &list["schedulers"][1];
    assert_eq!(sb["enabled"], true);
    assert_eq!(sb["master"]["active"], true, "{sb}");
    let id = |name: &str| {
        list["schedulers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["schedulerid"]
            .as_i64()
            .unwrap()
    };
    let www = m.www();
    let enable = |id: i64, on: bool| {
        let www = www.clone();
        async move {
            let (status, reply) = rpc(
                &www,
                &format!("schedulers/{id}"),
                "enable",
                json!({"enabled": on}),
            )
            .await;
            assert_eq!(status, 200, "{reply}");
        }
    };
    enable(id("force"), false).await;
    enable(id("sb"), false).await;
    let (_, one) = m.get(&format!("schedulers/{}", id("sb"))).await;
    assert_eq!(one["schedulers"][0]["enabled"], false);
    let (status, reply) = rpc(
        &m.www(),
        "forceschedulers/force",
        "force",
        json!({"builderNames": ["b1"]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(reply.to_string().contains("is disabled"), "{reply}");

    // While sb is disabled a change is built by zz only (zz sees each change after sb does).
    let by = |bs: &Value| bs["reason"].as_str().unwrap_or_default().contains("'sb'");
    post_change(&m, "main", "r1").await;
    let e = m.wait_event("buildsets.*.new").await;
    assert!(!by(&e), "{e}");
    enable(id("sb"), true).await;
    enable(id("force"), true).await;
    post_change(&m, "main", "r2").await;
    let mut from_sb = Vec::new();
    for _ in 0..2 {
        let e = m.wait_event("buildsets.*.new").await;
        if by(&e) {
            from_sb.push(e["bsid"].as_i64().unwrap());
        }
    }
    assert_eq!(from_sb.len(), 1);
    let (_, bs) = m.get(&format!("buildsets/{}", from_sb[0])).await;
    assert_eq!(bs["buildsets"][0]["sourcestamps"][0]["revision"], "r2");
    m.force(json!({"builderNames": ["b1"]})).await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_remembers_its_last_run_across_a_restart() {
    // START is 2023-11-14 22:13:20 UTC; the next 03:00 is 17,200 s later.
    let clock = ManualClock::new(START);
    let body = "c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'],\n\
            factory=util.BuildFactory([steps.ShellCommand(command='true')]))]\n\
        c['schedulers'] = [schedulers.Nightly(name='n', builderNames=['b1'], hour=3, minute=0, timezone='UTC',\n\
            onlyIfChanged=True)]\n";
    let source = config("sqlite:///state.sqlite", body);
    let mut m = start(tempfile::tempdir().unwrap(), &source, &clock).await;
    let night1 = START + 17_200;
    clock.advance(17_200);
    wait_state(&mut m, "n", "Nightly", "last_build", &night1.to_string()).await;
    // The night's time is stored before its buildset: stopping between the two would lose it.
    let db = m.master().db.clone();
    m.wait_until("buildsets.*.new", || async {
        let first = kiln_core::BuildSetId(1);
        db.get_buildset(first).await.unwrap().is_some()
    })
    .await;
    m.stop().await;
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    drop(m);

    // Restarted an hour later, it knows its first night is past: the next, without changes, is
    // skipped (a scheduler that forgot would build it as its first).
    clock.advance(3600);
    let mut m = start(dir, &source, &clock).await;
    clock.advance(86_400 - 3600);
    wait_state(
        &mut m,
        "n",
        "Nightly",
        "last_build",
        &(night1 + 86_400).to_string(),
    )
    .await;
    let (_, all) = m.get("buildsets").await;
    assert_eq!(all["meta"]["total"], 1, "only the first night built");
    m.stop().await;
}
