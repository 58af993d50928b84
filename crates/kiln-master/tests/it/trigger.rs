//! The Trigger step and Triggerable schedulers: child buildsets linked to their parent build,
//! properties passed down, results waited for, and a stop cancelling the children.

use serde_json::{Value, json};

use crate::harness::{TestMaster, config, rpc};

const BODY: &str = r#"
child_ok = util.BuildFactory([steps.ShellCommand(name='check', command=['true'])])
child_bad = util.BuildFactory([steps.ShellCommand(name='fail', command=['sh', '-c', 'exit 1'])])
child_slow = util.BuildFactory([steps.ShellCommand(name='slow', command=['sleep', '60'])])
def parent(**kwargs):
    return util.BuildFactory([steps.Trigger(name='trig', **kwargs)])
c['builders'] = [
    util.BuilderConfig(name='c-ok', workernames=['w1'], factory=child_ok),
    util.BuilderConfig(name='c-bad', workernames=['w1'], factory=child_bad),
    util.BuilderConfig(name='c-slow', workernames=['w1'], factory=child_slow),
    util.BuilderConfig(name='p-wait', workernames=['w1'], properties={'kind': 'nightly'},
        factory=parent(schedulerNames=['t-ok', 't-bad'], waitForFinish=True, copy_properties=['kind'],
            set_properties={'from': util.Interpolate('%(prop:buildername)s')})),
    util.BuilderConfig(name='p-unimportant', workernames=['w1'],
        factory=parent(schedulerNames=['t-ok', 't-bad'], unimportantSchedulerNames=['t-bad'], waitForFinish=True)),
    util.BuilderConfig(name='p-nowait', workernames=['w1'], factory=parent(schedulerNames=['t-bad'])),
    util.BuilderConfig(name='p-stop', workernames=['w1'], factory=parent(schedulerNames=['t-slow'], waitForFinish=True)),
    util.BuilderConfig(name='p-latest', workernames=['w1'], factory=parent(schedulerNames=['t-ok'], waitForFinish=True,
        alwaysUseLatest=True)),
]
c['schedulers'] = [
    schedulers.ForceScheduler(name='force', builderNames=['p-wait', 'p-unimportant', 'p-nowait', 'p-stop', 'p-latest']),
    schedulers.Triggerable(name='t-ok', builderNames=['c-ok'], properties={'level': 'child'}),
    schedulers.Triggerable(name='t-bad', builderNames=['c-bad']),
    schedulers.Triggerable(name='t-slow', builderNames=['c-slow']),
]
"#;

async fn children(m: &TestMaster, parent_build: i64) -> Vec<Value> {
    let (_, all) = m
        .get(&format!("buildsets?parent_buildid={parent_build}"))
        .await;
    all["buildsets"].as_array().cloned().unwrap_or_default()
}

async fn parent_build_of(m: &TestMaster, bsid: i64) -> i64 {
    let (_, reqs) = m.get(&format!("buildrequests?buildsetid={bsid}")).await;
    let brid = reqs["buildrequests"][0]["buildrequestid"].as_i64().unwrap();
    let (_, builds) = m.get(&format!("builds?buildrequestid={brid}")).await;
    builds["builds"][0]["buildid"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_waits_for_children_and_takes_their_worst_result() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", BODY)).await;
    m.start_worker("w1", "pass").await;

    let bsid = m
        .force(json!({"builderNames": ["p-wait"], "revision": "abc", "branch": "main"}))
        .await;
    assert_eq!(
        m.wait_buildset(bsid).await,
        2,
        "the failing child fails the parent"
    );
    let parent = parent_build_of(&m, bsid).await;
    let kids = children(&m, parent).await;
    assert_eq!(kids.len(), 2, "{kids:?}");
    for k in &kids {
        assert_eq!(k["parent_relationship"], "Triggered from");
        assert_eq!(k["complete"], true);
    }
    // The child got the parent's properties, with the source Trigger, and its scheduler's.
    let (_, builds) = m.get("builds?builderid__ne=0&property=*").await;
    let ok = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["properties"]["scheduler"][0] == "t-ok")
        .expect("the t-ok child build")
        .clone();
    assert_eq!(ok["results"], 0);
    assert_eq!(ok["properties"]["from"], json!(["p-wait", "Trigger"]));
    assert_eq!(ok["properties"]["kind"], json!(["nightly", "Trigger"]));
    assert_eq!(ok["properties"]["level"], json!(["child", "Scheduler"]));
    // The step says what it triggered and links the builds.
    let (_, steps) = m.get(&format!("builds/{parent}/steps/trig")).await;
    let step = &steps["steps"][0];
    assert_eq!(
        step["state_string"],
        "triggered t-ok, t-bad, 1 success, 1 failure"
    );
    let names: Vec<&str> = step["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    // Each request by its scheduler, then each build with its result, as Buildbot links them.
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("t-ok #")), "{names:?}");
    assert!(names.contains(&"success: c-ok #1"), "{names:?}");
    assert!(names.contains(&"failure: c-bad #1"), "{names:?}");

    // The child builds the parent's source stamp (its revision, there being no got_revision)...
    for k in &kids {
        assert_eq!(k["sourcestamps"][0]["revision"], "abc", "{k}");
    }
    // ...or, with alwaysUseLatest, the latest.
    let bsid = m
        .force(json!({"builderNames": ["p-latest"], "revision": "abc", "branch": "main"}))
        .await;
    assert_eq!(m.wait_buildset(bsid).await, 0);
    let latest_parent = parent_build_of(&m, bsid).await;
    let kids = children(&m, latest_parent).await;
    assert_eq!(
        kids[0]["sourcestamps"][0]["revision"],
        Value::Null,
        "{kids:?}"
    );
    assert_eq!(kids[0]["sourcestamps"][0]["branch"], "main");

    let bsid = m.force(json!({"builderNames": ["p-unimportant"]})).await;
    assert_eq!(
        m.wait_buildset(bsid).await,
        0,
        "an unimportant failure does not count"
    );

    let bsid = m.force(json!({"builderNames": ["p-nowait"]})).await;
    assert_eq!(
        m.wait_buildset(bsid).await,
        0,
        "not waiting: success at once"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_waiting_trigger_cancels_its_children() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", BODY)).await;
    m.start_worker("w1", "pass").await;
    let bsid = m.force(json!({"builderNames": ["p-stop"]})).await;
    // Wait until the slow child runs.
    loop {
        let e = m.wait_event("builds.*.new").await;
        let (_, b) = m.get(&format!("builds/{}", e["buildid"])).await;
        let (_, builder) = m
            .get(&format!("builders/{}", b["builds"][0]["builderid"]))
            .await;
        if builder["builders"][0]["name"] == "c-slow" {
            break;
        }
    }
    let parent = parent_build_of(&m, bsid).await;
    let (status, _) = rpc(
        &m.www(),
        &format!("builds/{parent}"),
        "stop",
        json!({"reason": "enough"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(m.wait_buildset(bsid).await, 6, "the parent is cancelled");
    let kids = children(&m, parent).await;
    assert_eq!(kids.len(), 1);
    let child_bsid = kids[0]["bsid"].as_i64().unwrap();
    let (_, bs) = m.get(&format!("buildsets/{child_bsid}")).await;
    assert_eq!(bs["buildsets"][0]["complete"], true);
    assert_eq!(
        bs["buildsets"][0]["results"], 6,
        "the child was stopped too"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nightly_triggerable_builds_the_last_trigger_once_at_its_time() {
    use kiln_master::clock::ManualClock;
    // 2023-11-14 22:13:20 UTC; the next 03:00 is 17,200 s later.
    const START: i64 = 1_700_000_000;
    let clock = ManualClock::new(START);
    let body = "c['builders'] = [\n\
            util.BuilderConfig(name='parent', workernames=['w1'], factory=util.BuildFactory([\n\
                steps.Trigger(schedulerNames=['nt'], waitForFinish=True,\n\
                    set_properties={'n': util.Property('n')})])),\n\
            util.BuilderConfig(name='nightly', workernames=['w1'],\n\
                factory=util.BuildFactory([steps.ShellCommand(command='true')]))]\n\
        c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['parent'],\n\
                properties=[util.StringParameter(name='n')]),\n\
            schedulers.NightlyTriggerable(name='nt', builderNames=['nightly'], hour=3, minute=0, timezone='UTC')]\n";
    let source = config("sqlite:///state.sqlite", body);
    let c = clock.clone();
    let mut m =
        TestMaster::start_with(tempfile::tempdir().unwrap(), &source, move |o| o.clock = c).await;
    m.start_worker("w1", "pass").await;
    // Two triggers before the night: the second replaces the first; waitForFinish does not wait.
    for n in ["1", "2"] {
        let bsid = m.force(json!({"builderNames": ["parent"], "n": n})).await;
        assert_eq!(m.wait_buildset(bsid).await, 0);
    }
    let parent2 = parent_build_of(&m, 2).await;
    clock.advance(17_200);
    let bsid = m.wait_event("buildsets.*.new").await["bsid"]
        .as_i64()
        .unwrap();
    assert_eq!(m.wait_buildset(bsid).await, 0);
    let (_, bs) = m.get(&format!("buildsets/{bsid}")).await;
    let bs = &bs["buildsets"][0];
    assert_eq!(
        bs["reason"],
        "The NightlyTriggerable scheduler named 'nt' triggered this build"
    );
    assert_eq!(bs["parent_buildid"], parent2);
    let (_, builds) = m.get("builds?property=n&builderid__ne=0").await;
    let nightly: Vec<&Value> = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| {
            b["buildrequestid"].as_i64() != Some(1) && b["buildrequestid"].as_i64() != Some(2)
        })
        .collect();
    assert_eq!(nightly.len(), 1);
    assert_eq!(nightly[0]["properties"]["n"], json!(["2", "Trigger"]));

    // The next night has no trigger: nothing is built, but the time is remembered.
    clock.advance(86_400);
    let db = m.master().db.clone();
    let want = (START + 17_200 + 86_400).to_string();
    m.wait_until("objects.*.state", || async {
        let Some(id) = db
            .lookup_object_id("nt", "NightlyTriggerable")
            .await
            .unwrap()
        else {
            return false;
        };
        db.get_state(id, "last_build").await.unwrap().as_deref() == Some(want.as_str())
    })
    .await;
    let (_, all) = m.get("buildsets").await;
    assert_eq!(all["meta"]["total"], 3);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nightly_triggerable_keeps_its_trigger_across_a_restart() {
    use kiln_master::clock::ManualClock;
    const START: i64 = 1_700_000_000;
    let clock = ManualClock::new(START);
    let body = "c['builders'] = [\n\
            util.BuilderConfig(name='parent', workernames=['w1'], factory=util.BuildFactory([\n\
                steps.Trigger(schedulerNames=['nt'], set_properties={'from': 'parent'})])),\n\
            util.BuilderConfig(name='nightly', workernames=['w1'],\n\
                factory=util.BuildFactory([steps.ShellCommand(command='true')]))]\n\
        c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['parent']),\n\
            schedulers.NightlyTriggerable(name='nt', builderNames=['nightly'], hour=3, minute=0, timezone='UTC')]\n";
    let source = config("sqlite:///state.sqlite", body);
    let c = clock.clone();
    let mut m =
        TestMaster::start_with(tempfile::tempdir().unwrap(), &source, move |o| o.clock = c).await;
    m.start_worker("w1", "pass").await;
    let bsid = m.force(json!({"builderNames": ["parent"]})).await;
    assert_eq!(m.wait_buildset(bsid).await, 0);
    m.stop().await;
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    drop(m);

    let c = clock.clone();
    let mut m = TestMaster::start_with(dir, &source, move |o| o.clock = c).await;
    clock.advance(17_200);
    let bsid = m.wait_event("buildsets.*.new").await["bsid"]
        .as_i64()
        .unwrap();
    let (_, props) = m.get(&format!("buildsets/{bsid}/properties")).await;
    assert_eq!(
        props["properties"][0]["from"],
        json!(["parent", "Trigger"]),
        "{props}"
    );
    m.stop().await;
}

/// A Triggerable whose `builderNames` is a renderable builds the builders it renders to with the
/// trigger's properties, as Buildbot renders them for each buildset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renderable_builder_names_picks_the_builders_from_the_buildset_s_properties() {
    let body = r#"
ok = util.BuildFactory([steps.ShellCommand(name='check', command=['true'])])
@util.renderer
def platforms(props):
    return ['c-' + p for p in props.getProperty('platforms', [])]
c['builders'] = [
    util.BuilderConfig(name='c-linux', workernames=['w1'], factory=ok),
    util.BuilderConfig(name='c-mac', workernames=['w1'], factory=ok),
    util.BuilderConfig(name='c-win', workernames=['w1'], factory=ok),
    util.BuilderConfig(name='parent', workernames=['w1'], factory=util.BuildFactory([
        steps.Trigger(schedulerNames=['by-property'], waitForFinish=True,
            set_properties={'targets': ['c-linux', 'c-win']}),
        steps.Trigger(schedulerNames=['by-function'], waitForFinish=True,
            set_properties={'platforms': ['mac']}),
    ])),
]
c['schedulers'] = [
    schedulers.ForceScheduler(name='force', builderNames=['parent']),
    schedulers.Triggerable(name='by-property', builderNames=util.Property('targets')),
    schedulers.Triggerable(name='by-function', builderNames=platforms),
]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    assert_eq!(m.force_and_wait(json!({})).await, 0);
    let (_, builds) = m.get("builds?field=builderid&order=builderid").await;
    let (_, builders) = m.get("builders?field=builderid&field=name").await;
    let name_of = |id: &Value| {
        builders["builders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| &b["builderid"] == id)
            .map(|b| b["name"].as_str().unwrap().to_string())
            .unwrap()
    };
    let mut built: Vec<String> = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| name_of(&b["builderid"]))
        .collect();
    built.sort();
    assert_eq!(built, ["c-linux", "c-mac", "c-win", "parent"]);
    m.stop().await;
}
