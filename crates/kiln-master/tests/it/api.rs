use serde_json::{Value, json};

use crate::harness::{TestMaster, config, http, http_text, rpc};

const TWO_BUILDERS: &str = r#"
f = util.BuildFactory([steps.ShellCommand(name='say', command=['echo', util.Property('word', default='nothing')])])
c['builders'] = [util.BuilderConfig(name='alpha', workernames=['w1'], factory=f, tags=['fast'], description='first'),
                 util.BuilderConfig(name='beta', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['alpha', 'beta'],
    properties=[util.StringParameter(name='word', default='hi'), util.IntParameter(name='count', default=1)])]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collections_filter_order_page_and_select_fields() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", TWO_BUILDERS)).await;
    m.start_worker("w1", "pass").await;
    for (builder, word) in [("alpha", "one"), ("beta", "two"), ("alpha", "three")] {
        assert_eq!(
            m.force_and_wait(json!({"builderNames": [builder], "word": word}))
                .await,
            0
        );
    }
    let (_, b) = m.get("builders?field=name&field=tags&order=-name").await;
    assert_eq!(
        b["builders"],
        json!([{"name": "beta", "tags": []}, {"name": "alpha", "tags": ["fast"]}])
    );
    let (_, b) = m.get("builders/alpha").await;
    assert_eq!(b["builders"][0]["description"], "first");

    let (_, builds) = m
        .get("builders/alpha/builds?field=number&order=-number")
        .await;
    assert_eq!(builds["builds"], json!([{"number": 2}, {"number": 1}]));
    let (_, builds) = m
        .get("builds?builderid=1&complete=true&limit=1&offset=1&order=buildid&field=buildid")
        .await;
    assert_eq!(
        builds,
        json!({"builds": [{"buildid": 3}], "meta": {"total": 2}})
    );
    let (_, builds) = m.get("builds?buildid__in=1,3&field=buildid").await;
    assert_eq!(builds["meta"]["total"], 2);
    let (_, builds) = m
        .get("builds?buildid__ne=1&buildid__ne=2&field=buildid")
        .await;
    assert_eq!(builds["builds"], json!([{"buildid": 3}]));
    let (_, builds) = m
        .get("builds?state_string__contains=success&results__le=0&field=buildid")
        .await;
    assert_eq!(builds["meta"]["total"], 3);
    let (_, reqs) = m
        .get("buildrequests?claimed=true&field=buildrequestid&order=-buildrequestid&limit=2")
        .await;
    assert_eq!(
        reqs["buildrequests"],
        json!([{"buildrequestid": 3}, {"buildrequestid": 2}])
    );
    let (_, props) = m
        .get("builders/alpha/builds/2?property=word&property=count")
        .await;
    assert_eq!(
        props["builds"][0]["properties"],
        json!({"word": ["three", "Force Build Form"], "count": [1, "Force Build Form"]})
    );
    let (_, props) = m.get("builds/2/properties").await;
    assert_eq!(
        props["properties"][0]["word"],
        json!(["two", "Force Build Form"])
    );

    let (_, log) = m
        .get("builders/alpha/builds/2/steps/say/logs/stdio/contents?offset=0&limit=1")
        .await;
    assert_eq!(log["logchunks"][0]["firstline"], 0);
    assert_eq!(
        log["logchunks"][0]["content"]
            .as_str()
            .unwrap()
            .lines()
            .count(),
        1
    );
    let (_, text) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/3/steps/1/logs/stdio/raw_inline",
        None,
        &[],
    )
    .await;
    assert!(text.contains("\nthree\n"), "{text}");

    let (_, ws) = m.get("workers/w1").await;
    assert_eq!(ws["workers"][0]["connected_to"], json!([{"masterid": 1}]));
    // Only the keys Buildbot shows: its front-end fails on the command table, and the
    // worker's environment is not the API's to publish.
    let info = ws["workers"][0]["workerinfo"].as_object().unwrap();
    assert!(info["version"].as_str().unwrap().starts_with("kiln-worker"));
    assert!(
        info.keys()
            .all(|k| ["admin", "host", "access_uri", "version"].contains(&k.as_str())),
        "{info:?}"
    );
    assert_eq!(
        ws["workers"][0]["configured_on"].as_array().unwrap().len(),
        2
    );
    let (_, bs) = m.get("buildsets/1").await;
    assert_eq!(bs["buildsets"][0]["complete"], true);
    assert_eq!(bs["buildsets"][0]["sourcestamps"][0]["codebase"], "");
    let (_, fs) = m.get("forceschedulers/force").await;
    assert_eq!(
        fs["forceschedulers"][0]["builder_names"],
        json!(["alpha", "beta"])
    );
    let (_, fs) = m.get("builders/2/forceschedulers").await;
    assert_eq!(fs["meta"]["total"], 1);
    let (_, masters) = m.get("masters").await;
    assert_eq!(masters["masters"][0]["active"], true);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_400_and_unknown_resources_404_with_json_errors() {
    let m = TestMaster::start(&config("sqlite:///state.sqlite", TWO_BUILDERS)).await;
    for (path, status) in [
        ("builds?frobnicate=1", 400),
        ("builds?buildid__like=1", 400),
        ("builds?buildid=abc", 400),
        ("builds?limit=ten", 400),
        ("builds?order=nope", 400),
        ("builds?field=nope", 400),
        ("builds/999", 404),
        ("builders/nosuch", 404),
        ("builders/alpha/builds/7", 404),
        ("nothing/here", 404),
        ("logs/5/raw", 404),
    ] {
        let (got, body) = m.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let (status, body) = http(&m.www(), "GET", "/api/v2/builds?frobnicate=1", None).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unrecognized query parameter"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_rpc_errors_name_the_problem() {
    let m = TestMaster::start(&config("sqlite:///state.sqlite", TWO_BUILDERS)).await;
    let www = m.www();
    let (status, body) = rpc(
        &www,
        "forceschedulers/force",
        "force",
        json!({"builderid": 1, "username": "me"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], -32602);
    // An object of each field's error, which Buildbot's front-end shows next to the field.
    assert!(
        body["error"]["message"]["username"]
            .as_str()
            .unwrap()
            .contains("please fill in email address in the form 'User <email@email.com>'"),
        "{body}"
    );
    let (_, body) = rpc(
        &www,
        "forceschedulers/force",
        "force",
        json!({"count": "many"}),
    )
    .await;
    assert!(
        body["error"]["message"]["count"]
            .as_str()
            .unwrap()
            .contains("not an integer"),
        "{body}"
    );
    let (_, body) = rpc(&www, "forceschedulers/force", "explode", json!({})).await;
    assert_eq!(body["error"]["code"], -32601);
    let (status, _) = rpc(&www, "forceschedulers/nosuch", "force", json!({})).await;
    assert_eq!(status, 404);
    let (status, body) = http(
        &www,
        "POST",
        "/api/v2/forceschedulers/force",
        Some("{not json"),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_i64()),
        (400, Some(-32700))
    );
    let (_, body) = http(
        &www,
        "POST",
        "/api/v2/forceschedulers/force",
        Some(r#"{"jsonrpc":"2.0","method":"force","params":[1],"id":3}"#),
    )
    .await;
    // An invalid request, as Buildbot calls params that are not an object.
    assert_eq!(body["error"]["code"], -32600);
    assert_eq!(body["id"], 3);
    // Nothing was submitted by any of these.
    let (_, bs) = m.get("buildsets").await;
    assert_eq!(bs["meta"]["total"], 0);
}

/// A force naming a builder twice asks for one build of it, as Buildbot's set of names does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_naming_a_builder_twice_makes_one_request_for_it() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", TWO_BUILDERS)).await;
    let bsid = m
        .force(json!({"builderNames": ["alpha", "alpha", "beta", "alpha"]}))
        .await;
    let (_, requests) = m.get(&format!("buildrequests?buildsetid={bsid}")).await;
    let mut builders: Vec<i64> = requests["buildrequests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["builderid"].as_i64().unwrap())
        .collect();
    builders.sort_unstable();
    assert_eq!(builders.len(), 2, "{requests}");
    builders.dedup();
    assert_eq!(builders.len(), 2, "{requests}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_rebuild_and_priority_controls() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", TWO_BUILDERS)).await;
    let www = m.www();
    // No worker yet: the requests wait.
    let first = m.force(json!({"builderNames": ["alpha"]})).await;
    let second = m
        .force(json!({"builderNames": ["alpha"], "word": "again"}))
        .await;
    let (status, _) = rpc(
        &www,
        "buildrequests/1",
        "cancel",
        json!({"reason": "not needed"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(m.wait_buildset(first).await, 6);
    let (_, body) = rpc(
        &www,
        "buildrequests/2",
        "set_priority",
        json!({"priority": 7}),
    )
    .await;
    assert!(body["error"].is_null(), "{body}");
    let (_, req) = m.get("buildrequests/2").await;
    assert_eq!(req["buildrequests"][0]["priority"], 7);
    m.start_worker("w1", "pass").await;
    assert_eq!(m.wait_buildset(second).await, 0);
    let (_, reply) = rpc(&www, "builders/alpha/builds/1", "rebuild", json!({})).await;
    let bsid = reply["result"][0]
        .as_i64()
        .expect("rebuild gives a buildset");
    assert_eq!(m.wait_buildset(bsid).await, 0);
    let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
    assert_eq!(bs["buildsets"][0]["rebuilt_buildid"], 1);
    let (_, props) = m.get("builds/2?property=word").await;
    assert_eq!(
        props["builds"][0]["properties"]["word"],
        json!(["again", "Force Build Form"])
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_and_builds_link_through_their_source_stamp() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", TWO_BUILDERS)).await;
    let now = m.master().updates.now();
    let mut properties = kiln_core::Properties::new();
    properties.set("ticket", "T-1", "Change");
    let change = kiln_db::NewChange {
        vcs: None,
        author: "Alice <alice@example.com>".into(),
        comments: "fix the thing".into(),
        when_timestamp: now,
        files: vec!["src/lib.rs".into()],
        properties,
        // As an empty force form gives them.
        branch: Some(String::new()),
        revision: Some(String::new()),
        ..Default::default()
    };
    // A forced build of the default codebase uses the same (empty) source stamp as this change.
    let changeid = m.master().updates.add_change(&change).await.unwrap();
    m.start_worker("w1", "pass").await;
    assert_eq!(
        m.force_and_wait(json!({"builderNames": ["alpha"]})).await,
        0
    );
    let (_, builds) = m
        .get(&format!("changes/{changeid}/builds?field=buildid"))
        .await;
    assert_eq!(builds["builds"], json!([{"buildid": 1}]));
    let (_, changes) = m.get("builds/1/changes").await;
    assert_eq!(changes["changes"][0]["author"], "Alice <alice@example.com>");
    assert_eq!(changes["changes"][0]["files"], json!(["src/lib.rs"]));
    assert_eq!(
        changes["changes"][0]["properties"]["ticket"],
        json!(["T-1", "Change"])
    );
    let (_, none) = m.get("changes/999/builds").await;
    assert_eq!(none["meta"]["total"], 0);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_can_be_paused_unpaused_and_killed() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", TWO_BUILDERS)).await;
    let www = m.www();
    m.start_worker("w1", "pass").await;
    let (status, _) = rpc(
        &www,
        "workers/w1",
        "pause",
        json!({"reason": "maintenance"}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, w) = m.get("workers/w1").await;
    assert_eq!(
        (
            w["workers"][0]["paused"].clone(),
            w["workers"][0]["pause_reason"].clone()
        ),
        (json!(true), json!("maintenance"))
    );
    assert!(
        !m.master()
            .workers
            .availability(["w1"])
            .iter()
            .any(|w| w.available),
        "a paused worker takes no builds"
    );
    rpc(&www, "workers/w1", "unpause", json!({})).await;
    assert_eq!(
        m.force_and_wait(json!({"builderNames": ["alpha"]})).await,
        0
    );
    let (status, _) = rpc(&www, "workers/1", "kill", json!({})).await;
    assert_eq!(status, 200);
    m.wait_event("workers.*.disconnected").await;
    let (_, body) = rpc(&www, "workers/nosuch", "pause", json!({})).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not found"),
        "{body}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_are_collapsed_by_newer_ones_as_skipped() {
    let body = "f = util.BuildFactory([steps.ShellCommand(command='true')])\n\
        def same_n(master, builder, new, old):\n\
        \x20   return builder.name == 'fn' and new['properties']['n'] == old['properties']['n']\n\
        c['builders'] = [\n\
            util.BuilderConfig(name='default', workernames=['w1'], factory=f, collapseRequests=True),\n\
            util.BuilderConfig(name='never', workernames=['w1'], factory=f),\n\
            util.BuilderConfig(name='fn', workernames=['w1'], factory=f, collapseRequests=same_n)]\n\
        c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['default', 'never', 'fn'],\n\
            properties=[util.StringParameter(name='n', default='1')])]\n";
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    // No worker yet: every request waits.
    let mut forced = Vec::new();
    for (builder, revision, n) in [
        ("default", "r1", "1"),
        ("default", "r1", "1"),
        ("default", "r2", "1"),
        ("default", "r2", "1"),
        ("never", "r1", "1"),
        ("never", "r1", "1"),
        ("fn", "r1", "1"),
        ("fn", "r9", "2"),
        ("fn", "r8", "1"),
    ] {
        let bsid = m
            .force(json!({"builderNames": [builder], "revision": revision, "n": n}))
            .await;
        forced.push(bsid);
    }
    m.start_worker("w1", "pass").await;
    let mut results = Vec::new();
    for bsid in &forced {
        // Some completed before anything ran, so their events are not waited for.
        m.wait_complete(*bsid).await;
        let (_, reqs) = m.get(&format!("buildrequests?buildsetid={bsid}")).await;
        results.push(reqs["buildrequests"][0]["results"].as_i64().unwrap());
    }
    // The same revision collapses; a different one does not. False never collapses. The function
    // collapses requests with the same 'n'.
    assert_eq!(results, [3, 0, 3, 0, 0, 0, 3, 0, 0]);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_functions_choose_builders_requests_and_workers() {
    let body = "f = util.BuildFactory([steps.ShellCommand(command='true')])\n\
        def only_w2(builder, workers, request):\n\
        \x20   ws = [w for w in workers if w.worker.workername == 'w2']\n\
        \x20   return ws[0] if ws else None\n\
        def newest(builder, requests):\n\
        \x20   return requests[-1]\n\
        c['prioritizeBuilders'] = lambda master, builders: [b for b in builders if b.name != 'never']\n\
        c['builders'] = [\n\
            util.BuilderConfig(name='pick', workernames=['w1', 'w2'], factory=f, nextWorker=only_w2),\n\
            util.BuilderConfig(name='refuse', workernames=['w1', 'w2'], factory=f,\n\
                canStartBuild=lambda builder, wfb, request: wfb.worker.workername != 'w1'),\n\
            util.BuilderConfig(name='newest', workernames=['w1'], factory=f, nextBuild=newest),\n\
            util.BuilderConfig(name='never', workernames=['w1'], factory=f)]\n\
        c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['pick', 'refuse', 'newest', 'never'])]\n";
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    let mut newest = Vec::new();
    for _ in 0..3 {
        newest.push(m.force(json!({"builderNames": ["newest"]})).await);
    }
    let pick = m.force(json!({"builderNames": ["pick"]})).await;
    let refuse = m.force(json!({"builderNames": ["refuse"]})).await;
    let never = m.force(json!({"builderNames": ["never"]})).await;
    m.start_worker("w1", "pass").await;
    m.start_worker("w2", "pass2").await;
    for bsid in [pick, refuse, newest[0], newest[1], newest[2]] {
        assert_eq!(m.wait_complete(bsid).await, 0);
    }
    let (_, workers) = m.get("workers").await;
    let worker_name = |id: &Value| {
        workers["workers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["workerid"] == *id)
            .unwrap()["name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let build_of = |bsid: i64| {
        let www = m.www();
        async move {
            let (_, reqs) = crate::harness::http(
                &www,
                "GET",
                &format!("/api/v2/buildrequests?buildsetid={bsid}"),
                None,
            )
            .await;
            let brid = reqs["buildrequests"][0]["buildrequestid"].as_i64().unwrap();
            let (_, builds) = crate::harness::http(
                &www,
                "GET",
                &format!("/api/v2/builds?buildrequestid={brid}"),
                None,
            )
            .await;
            builds["builds"][0].clone()
        }
    };
    assert_eq!(worker_name(&build_of(pick).await["workerid"]), "w2");
    assert_eq!(worker_name(&build_of(refuse).await["workerid"]), "w2");
    // nextBuild took the newest request first: build numbers run backwards.
    let mut numbers = Vec::new();
    for bsid in &newest {
        numbers.push(build_of(*bsid).await["number"].as_i64().unwrap());
    }
    assert_eq!(numbers, [3, 2, 1]);
    // prioritizeBuilders left 'never' out: its request still waits.
    let (_, reqs) = m.get(&format!("buildrequests?buildsetid={never}")).await;
    assert_eq!(reqs["buildrequests"][0]["claimed"], false, "{reqs}");
    // It is the one request waiting, as Buildbot's pages ask for them.
    let (_, waiting) = m.get("buildrequests?claimed=false&field=buildsetid").await;
    assert_eq!(waiting["buildrequests"], json!([{"buildsetid": never}]));
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buildset_announces_its_first_failure_before_it_completes() {
    let body = "c['builders'] = [\n\
            util.BuilderConfig(name='bad', workernames=['w1'], factory=util.BuildFactory([steps.ShellCommand(command=['sh', '-c', 'exit 1'])])),\n\
            util.BuilderConfig(name='slow', workernames=['w1'], factory=util.BuildFactory([steps.ShellCommand(command=['sleep', '0.5'])]))]\n\
        c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['bad', 'slow'])]\n";
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let bsid = m.force(json!({"builderNames": ["bad", "slow"]})).await;
    let first = m
        .wait_event(&format!("buildsets.{bsid}.first_failure"))
        .await;
    assert_eq!(first["results"], 2);
    let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
    assert_eq!(bs["buildsets"][0]["complete"], false, "announced early");
    assert_eq!(m.wait_complete(bsid).await, 2);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_codebase_generator_names_each_new_change_codebase() {
    let body = "c['www'] = {'change_hook_dialects': {'base': True}}\nc['builders'] = []\n\
        c['codebaseGenerator'] = lambda ch: {'https://x/app.git': 'app'}.get(ch['repository'], 'other')\n";
    let m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    for (repo, want) in [
        ("https%3A%2F%2Fx%2Fapp.git", "app"),
        ("https%3A%2F%2Fy%2Flib.git", "other"),
    ] {
        let form = format!("author=a&repository={repo}&codebase=given");
        let (status, reply) = http(&m.www(), "POST", "/change_hook/base", Some(&form)).await;
        assert_eq!(status, 200, "{reply}");
        let id = reply["changeids"][0].as_i64().unwrap();
        let (_, c) = m.get(&format!("changes/{id}")).await;
        assert_eq!(c["changes"][0]["codebase"], want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_build_canceller_cancels_older_work_on_the_same_branch() {
    let body = "f = util.BuildFactory([steps.ShellCommand(command=['sh', '-c',\n\
            util.Interpolate('if [ \"%(prop:revision)s\" = r2 ]; then sleep 30; fi')])])\n\
        c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]\n\
        c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]\n\
        c['services'] = [util.OldBuildCanceller('cancel', [(['b1'], util.SourceStampFilter(branch_eq=['main', 'dev']))])]\n";
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    let www = m.www();
    let force = |branch: &'static str, revision: &'static str| {
        let www = www.clone();
        async move {
            let (status, body) = rpc(
                &www,
                "forceschedulers/force",
                "force",
                json!({"builderNames": ["b1"], "branch": branch, "revision": revision}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["result"][0].as_i64().unwrap()
        }
    };
    let r1 = force("main", "r1").await;
    let r2 = force("main", "r2").await;
    let dev = force("dev", "d1").await;
    assert_eq!(
        m.wait_complete(r1).await,
        6,
        "waiting work on main is cancelled"
    );
    m.start_worker("w1", "pass").await;
    // r2 runs (and sleeps); a newer main commit stops it, but not the dev build.
    let build = m.wait_event("builds.*.new").await["buildid"]
        .as_i64()
        .unwrap();
    // The build's properties are stored just after it starts: wait for them.
    let revision = tokio::time::timeout(crate::harness::WAIT, async {
        loop {
            let (_, b) = m.get(&format!("builds/{build}?property=revision")).await;
            let r = &b["builds"][0]["properties"]["revision"][0];
            if !r.is_null() {
                return r.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the build's properties");
    assert_eq!(revision, "r2");
    let r3 = force("main", "r3").await;
    assert_eq!(
        m.wait_complete(r2).await,
        6,
        "the running build on main is stopped"
    );
    assert_eq!(m.wait_complete(dev).await, 0);
    assert_eq!(m.wait_complete(r3).await, 0);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_parameters_of_every_kind() {
    let body = r#"
f = util.BuildFactory([steps.ShellCommand(command='true')])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1', 'w2'], factory=f, canStartBuild=util.enforceChosenWorker)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'],
    codebases=[util.CodebaseParameter('', branch=util.FixedParameter(name='branch', default='main'), patch=util.PatchParameter()),
               util.CodebaseParameter('lib', repository=util.FixedParameter(name='repository', default='https://x/lib.git'), project=None)],
    properties=[util.NestedParameter(name='opts', fields=[util.IntParameter(name='jobs', default=2),
                    util.StringParameter(name='mode', default='slow', regex='(fast|slow)$')]),
                util.AnyPropertyParameter(name='extra'),
                util.WorkerChoiceParameter(),
                util.InheritBuildParameter(name='inherit', compatible_builds=lambda master, builder: [builder + '/1'])])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    let (_, fs) = m.get("forceschedulers/force").await;
    let text = fs.to_string();
    for expected in [
        "\"fullName\":\"opts_jobs\"",
        "\"fullName\":\"patch_body\"",
        "\"fullName\":\"lib_revision\"",
        "\"choices\":[\"*\",\"w1\",\"w2\"]",
        "\"choices\":[\"b1/1\"]",
    ] {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
    // A value that does not match its pattern is refused with the field's full name.
    let (status, reply) = rpc(
        &m.www(),
        "forceschedulers/force",
        "force",
        json!({"builderNames": ["b1"], "opts_mode": "medium"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        reply
            .to_string()
            .contains("opts_mode: value 'medium' does not match"),
        "{reply}"
    );

    m.start_worker("w1", "pass").await;
    m.start_worker("w2", "pass2").await;
    let bsid = m
        .force(json!({"builderNames": ["b1"], "revision": "abc", "patch_body": "--- a\n+++ b\n",
            "patch_level": 0, "lib_revision": "v1", "opts_jobs": 4, "opts_mode": "fast",
            "extra_name": "color", "extra_value": "blue", "workername": "w2", "username": "Me <me@x.org>"}))
        .await;
    assert_eq!(m.wait_complete(bsid).await, 0);
    let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
    let stamps = &bs["buildsets"][0]["sourcestamps"];
    assert_eq!(stamps[0]["codebase"], "");
    assert_eq!(stamps[0]["branch"], "main");
    assert_eq!(stamps[0]["revision"], "abc");
    assert_eq!(stamps[0]["patch"]["level"], 0);
    assert_eq!(stamps[1]["codebase"], "lib");
    assert_eq!(stamps[1]["repository"], "https://x/lib.git");
    assert_eq!(stamps[1]["revision"], "v1");
    let (_, b) = m.get("builds/1?property=*").await;
    let build = &b["builds"][0];
    let props = &build["properties"];
    assert_eq!(props["opts"][0], json!({"jobs": 4, "mode": "fast"}));
    assert_eq!(props["color"][0], "blue");
    assert_eq!(props["workername"][0], "w2", "the worker it ran on");

    // Inheriting build 1: its form's properties (owner as orig_owner) and its source stamps.
    let again = m
        .force(json!({"builderNames": ["b1"], "inherit": "b1/1 once more"}))
        .await;
    assert_eq!(m.wait_complete(again).await, 0);
    let (_, b) = m.get("builds/2?property=*").await;
    let props = &b["builds"][0]["properties"];
    assert_eq!(props["orig_owner"][0], "Me <me@x.org>");
    assert_eq!(props["color"][0], "blue");
    assert_eq!(props["inherit"][0], "once more");
    let (_, bs) = m.get(&format!("buildsets/{again}")).await;
    assert_eq!(bs["buildsets"][0]["sourcestamps"][0]["revision"], "abc");
    let (status, reply) = rpc(
        &m.www(),
        "forceschedulers/force",
        "force",
        json!({"builderNames": ["b1"], "inherit": "b1/99"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        reply.to_string().contains("unknown build: b1 in b1/99"),
        "{reply}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_try_jobs_are_refused_and_build_nothing() {
    use base64::Engine;
    let body = "c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'],\n\
            factory=util.BuildFactory([steps.ShellCommand(command='true')]))]\n\
        c['schedulers'] = [schedulers.Try_Userpass(name='try', builderNames=['b1'], port=8031, userpass=[('u', 'p')])]\n";
    let m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:p")
    );
    for (job, says) in [
        ("not json", "the try job is not JSON"),
        ("[1]", "must be a JSON object"),
        (r#"{"builderNames": "b1"}"#, "builderNames must be a list"),
        (
            r#"{"patch_level": -3, "patch_body": "x"}"#,
            "patch_level must be a small number",
        ),
        (
            r#"{"patch_body_base64": "%%%"}"#,
            "patch_body_base64 is not base64",
        ),
        (r#"{"properties": [1]}"#, "properties must be an object"),
    ] {
        let (status, text) = http_text(
            &m.www(),
            "POST",
            "/try",
            Some(job),
            &[("Authorization", auth.as_str())],
        )
        .await;
        assert_eq!(status, 400, "{job}: {text}");
        assert!(text.contains(says), "{job}: {text}");
    }
    let (_, all) = m.get("buildsets").await;
    assert_eq!(all["meta"]["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authz_rules_decide_every_control_in_one_place() {
    let rules = format!(
        "{TWO_BUILDERS}\nc['www'] = {{'authz': util.Authz(allowRules=[\n\
         util.ForceBuildEndpointMatcher(builder='be*', role='admins'),\n\
         util.StopBuildEndpointMatcher(role='admins'),\n\
         util.AnyControlEndpointMatcher(role='admins', defaultDeny=False)],\n\
         roleMatchers=[util.RolesFromGroups()])}}\n"
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &rules)).await;
    m.start_worker("w1", "pass").await;
    let www = m.www();
    // No rule that concerns forcing alpha denies it: the catch-all lets the next rule decide.
    assert_eq!(
        m.force_and_wait(json!({"builderNames": ["alpha"]})).await,
        0
    );
    // Forcing beta is the first rule's, and an anonymous user has no role.
    let (status, body) = rpc(
        &www,
        "forceschedulers/force",
        "force",
        json!({"builderNames": ["beta"]}),
    )
    .await;
    refused(status, &body, "you need to have role 'admins'");
    // Stopping is the second rule's: refused, whatever the build.
    let (status, body) = rpc(&www, "builds/1", "stop", json!({"reason": "no"})).await;
    assert_eq!(status, 403, "{body}");
    // Rebuilding is only the catch-all's, which does not deny.
    let (status, body) = rpc(&www, "builds/1", "rebuild", json!({})).await;
    assert_eq!(status, 200, "{body}");
    // The refused force submitted nothing: one buildset forced, one rebuilt.
    let (_, bs) = m.get("buildsets").await;
    assert_eq!(bs["meta"]["total"], 2, "{bs}");

    // The old WebStatus form: forcing is for nobody, and stopping is not named, so nobody's too.
    let old = format!(
        "{TWO_BUILDERS}\nc['www'] = {{'authz': util.Authz(forceBuild=False, pingBuilder=True)}}\n"
    );
    let m = TestMaster::start(&config("sqlite:///state.sqlite", &old)).await;
    let (status, body) = rpc(
        &m.www(),
        "forceschedulers/force",
        "force",
        json!({"builderNames": ["alpha"]}),
    )
    .await;
    refused(status, &body, "forceBuild is not allowed to you");
}

/// A JSON-RPC answer that is a 403 saying `why`.
pub(crate) fn refused(status: u16, body: &serde_json::Value, why: &str) {
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(why), "{body}");
}

/// A `GET` of a collection that grows with history is written out a batch at a time, filtered
/// in the database (`files__contains`) or on a bounded scan, and large answers take turns: a
/// client that stops reading holds its turn only until the request's deadline, and small
/// requests never wait for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_are_streamed_take_turns_and_end_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = "c['www'] = {'api_timeout': 3, 'api_large_queries': 1}\nc['builders'] = []\n";
    let m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    const N: usize = 5_000;
    // Long comments make the indented answer several times what socket buffers hold.
    let changes = (1..=N)
        .map(|i| kiln_db::NewChange {
            author: format!("dev{}", i % 7),
            comments: format!("change {i} {}", "x".repeat(1500)),
            repository: "https://example.org/repo".into(),
            files: if i % 1000 == 0 {
                vec![format!("f{i:05}.c"), "hot.c".into()]
            } else {
                vec![format!("f{i:05}.c")]
            },
            properties: {
                let mut p = kiln_core::Properties::new();
                if i % 2500 == 0 {
                    p.set("reviewer", "ann", "Change");
                }
                p
            },
            when_timestamp: i as i64,
            ..Default::default()
        })
        .collect();
    m.master()
        .add_changes(changes)
        .await
        .expect("changes stored");

    // Filters, order and paging, pushed down or finished on the way out.
    let (s, hot) = m.get("changes?files__contains=hot.c&field=changeid").await;
    assert_eq!(s, 200, "{hot}");
    let ids: Vec<i64> = (1..=5).map(|k| k * 1000).collect();
    assert_eq!(
        hot,
        json!({"changes": ids.iter().map(|i| json!({"changeid": i})).collect::<Vec<_>>(), "meta": {"total": 5}})
    );
    let (_, reviewed) = m
        .get("changes?properties__contains=reviewer&field=changeid")
        .await;
    assert_eq!(
        reviewed,
        json!({"changes": [{"changeid": 2500}, {"changeid": 5000}], "meta": {"total": 2}})
    );
    let (_, page) = m
        .get("changes?files__ne=none.c&offset=2&limit=3&field=changeid")
        .await;
    assert_eq!(
        page,
        json!({"changes": [{"changeid": 3}, {"changeid": 4}, {"changeid": 5}], "meta": {"total": N}})
    );
    let (_, sorted) = m.get("changes?order=-files&limit=2&field=changeid").await;
    assert_eq!(
        sorted,
        json!({"changes": [{"changeid": N}, {"changeid": N - 1}], "meta": {"total": N}})
    );
    let (_, all) = m.get("changes?field=changeid&field=files").await;
    let listed = all["changes"].as_array().expect("changes");
    assert_eq!((listed.len(), &all["meta"]["total"]), (N, &json!(N)));
    assert!(
        listed
            .iter()
            .enumerate()
            .all(|(i, c)| c["changeid"] == json!(i + 1))
    );
    // The indented text a browser gets is the same document.
    let (_, text) = http_text(&m.www(), "GET", "/api/v2/changes?limit=1200", None, &[]).await;
    let text: Value = serde_json::from_str(&text).expect("indented JSON");
    assert_eq!(text["changes"].as_array().map(Vec::len), Some(1200));
    assert_eq!(
        text["changes"][1199]["sourcestamp"]["repository"],
        "https://example.org/repo"
    );

    // A client that asks for everything and stops reading holds the one large turn.
    let mut stalled = crate::harness::small_buffered(&m.www()).await;
    let stalled_at = tokio::time::Instant::now();
    stalled
        .write_all(format!("GET /api/v2/changes HTTP/1.1\r\nHost: {}\r\n\r\n", m.www()).as_bytes())
        .await
        .expect("send");
    let mut head = [0u8; 12];
    stalled.read_exact(&mut head).await.expect("status line");
    assert_eq!(&head, b"HTTP/1.1 200");

    // Another large answer waits for the turn; a small one does not.
    let www = m.www();
    let large =
        tokio::spawn(
            async move { http(&www, "GET", "/api/v2/changes?field=changeid", None).await },
        );
    let (s, small) = m.get("changes?limit=10&field=changeid").await;
    assert_eq!((s, small["meta"]["total"].clone()), (200, json!(N)));
    assert!(
        !large.is_finished(),
        "the large answer did not wait for its turn"
    );

    // At its deadline the stalled answer is cut off, which gives its turn to the waiting one.
    let (s, waited) = large.await.expect("large request");
    assert_eq!(s, 200, "{waited}");
    assert_eq!(waited["changes"].as_array().map(Vec::len), Some(N));
    assert!(stalled_at.elapsed() >= std::time::Duration::from_secs(3));
    let mut rest = Vec::new();
    let _ = stalled.read_to_end(&mut rest).await;
    assert!(
        !rest.ends_with(b"0\r\n\r\n"),
        "the stalled answer was not cut off"
    );
}

/// schemathesis (from PyPI) drives every endpoint of the OpenAPI description with generated
/// paths and query strings, against a master with a little history: no answer may be a 5xx,
/// differ from the description in status, content type or shape, and nothing may change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_described_endpoint_holds_up_to_generated_requests() {
    let Some(schemathesis) =
        crate::harness::optional_tool("KILN_TEST_SCHEMATHESIS", "schemathesis")
    else {
        return;
    };
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", TWO_BUILDERS)).await;
    m.start_worker("w1", "pass").await;
    for builder in ["alpha", "beta"] {
        let params = json!({"builderNames": [builder], "word": "x"});
        assert_eq!(m.force_and_wait(params).await, 0);
    }
    let (status, doc) = m.get("openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let (_, before) = m.get("buildsets?field=bsid").await;

    let www = m.www();
    let run = tokio::process::Command::new(schemathesis)
        .args(["run", &format!("http://{www}/api/v2/openapi.json")])
        .args(["--url", &format!("http://{www}/api/v2")])
        .args(["--checks", "not_a_server_error,status_code_conformance"])
        .args([
            "--checks",
            "content_type_conformance,response_schema_conformance",
        ])
        .args([
            "--max-examples",
            "8",
            "--seed",
            "1",
            "--generation-deterministic",
        ])
        .args(["--request-timeout", "10", "--no-color", "--workers", "2"])
        .args(["--header", "Accept: application/json"])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its caches go to the master's directory, not the source tree.
        .current_dir(m.path(""))
        .kill_on_drop(true)
        .output()
        .await
        .expect("schemathesis runs");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "schemathesis found failures:\n{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let (_, after) = m.get("buildsets?field=bsid").await;
    assert_eq!(before, after, "a generated request changed something");
}
