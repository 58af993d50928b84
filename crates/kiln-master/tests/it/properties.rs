//! Buildbot's property precedence: the same names set at every level, each build showing which
//! source won, with that source's name.

use serde_json::{Value, json};

use crate::harness::{TestMaster, config, http};

const CFG: &str = r#"
c['workers'] = [worker.Worker('w1', 'pass', properties={'p1': 'worker'})]
c['properties'] = {'p1': 'global', 'p2': 'global', 'p3': 'global', 'p4': 'global', 'g': 'global'}
c['www'] = {'change_hook_dialects': {'base': True}}
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'],
    properties={'p1': 'builder', 'p2': 'builder', 'p3': 'builder', 'p4': 'builder', 'buildername': 'mine'},
    factory=util.BuildFactory([
        steps.SetProperty(property='p5', value=util.Interpolate('%(prop:p2)s+step')),
        steps.ShellCommand(name='show', command=['echo', util.Interpolate('%(prop:p1)s %(prop:p2)s %(prop:p3)s %(prop:p4)s %(prop:p5)s')]),
    ]))]
c['schedulers'] = [
    schedulers.AnyBranchScheduler(name='changes', builderNames=['b'], treeStableTimer=None,
        properties={'p4': 'scheduler'}),
    schedulers.ForceScheduler(name='force', builderNames=['b'],
        properties=[util.StringParameter(name='p2', default='force')]),
]
"#;

fn prop(props: &Value, name: &str) -> Value {
    props[name].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_from_every_source_follow_buildbots_precedence() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", CFG)).await;
    m.start_worker("w1", "pass").await;
    // A forced build: the form's p2 over the builder's; the worker's p1 over the builder's and
    // the global one; the build's own buildername over the builder's property.
    let bsid = m.force(json!({"builderNames": ["b"], "p2": "force"})).await;
    assert_eq!(m.wait_complete(bsid).await, 0);
    let (_, b) = m.get("builds/1?property=*").await;
    let props = &b["builds"][0]["properties"];
    assert_eq!(prop(props, "g"), json!(["global", "Global"]));
    assert_eq!(prop(props, "p1"), json!(["worker", "Worker"]));
    assert_eq!(prop(props, "p2"), json!(["force", "Force Build Form"]));
    assert_eq!(prop(props, "p3"), json!(["builder", "Builder"]));
    assert_eq!(prop(props, "scheduler"), json!(["force", "Scheduler"]));
    assert_eq!(prop(props, "buildername"), json!(["b", "Builder"]));
    assert_eq!(prop(props, "p5"), json!(["force+step", "SetProperty"]));
    // A change's build: the change's p3, the scheduler's p4 over the change's.
    let form = "author=a&branch=main&revision=r1&properties=%7B%22p3%22%3A+%22change%22%2C+%22p4%22%3A+%22change%22%7D";
    let (status, reply) = http(&m.www(), "POST", "/change_hook/base", Some(form)).await;
    assert_eq!(status, 200, "{reply}");
    // The change's buildset is the second one.
    assert_eq!(m.wait_complete(2).await, 0);
    let (_, b) = m.get("builds/2?property=*").await;
    let props = &b["builds"][0]["properties"];
    assert_eq!(prop(props, "p3"), json!(["change", "Change"]));
    assert_eq!(prop(props, "p4"), json!(["scheduler", "Scheduler"]));
    assert_eq!(prop(props, "p2"), json!(["builder", "Builder"]));
    assert_eq!(prop(props, "branch"), json!(["main", "Build"]));
    assert_eq!(prop(props, "revision"), json!(["r1", "Build"]));
    m.stop().await;
}
