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

/// Steps Buildbot configurations use that build on others: `SetPropertiesFromEnv` reads the
/// worker's environment, `CMake` makes its command line from its arguments, and `GitHub` is a
/// `Git` step; `builderNames` and a shell step's `env` take renderables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_properties_from_env_and_cmake_build_what_buildbot_builds() {
    let home = std::env::var("HOME").expect("HOME is set");
    let body = r#"
f = util.BuildFactory([
    steps.SetPropertiesFromEnv(variables=['HOME', 'KILN_TEST_NO_SUCH_VARIABLE']),
    steps.CMake(path='src', generator='Ninja', cmake='echo', options=['-Wdev'],
        definitions={'CMAKE_BUILD_TYPE': 'Release', 'WHERE': util.Property('HOME')}),
    steps.ShellCommand(name='env', command='echo "[$GREETING]"',
        env={'GREETING': util.Interpolate('hello %(prop:buildername)s')}),
])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    assert_eq!(m.force_and_wait(json!({})).await, 0);
    let (_, b) = m.get("builds/1?property=*").await;
    let props = &b["builds"][0]["properties"];
    assert_eq!(props["HOME"], json!([home, "WorkerEnvironment"]));
    assert!(props.get("KILN_TEST_NO_SUCH_VARIABLE").is_none(), "{props}");
    let (_, log) = m.get("builds/1/steps/1/logs/properties/contents").await;
    assert_eq!(
        log["logchunks"][0]["content"],
        format!("HOME = '{home}'\n"),
        "{log}"
    );
    let (_, steps) = m.get("builds/1/steps?field=name&field=results").await;
    assert_eq!(steps["steps"][2]["name"], "cmake", "{steps}");
    let (_, cmake) = m.get("builds/1/steps/cmake/logs/stdio/contents").await;
    let text = cmake["logchunks"][0]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains(&format!(
            "o-G Ninja -DCMAKE_BUILD_TYPE=Release -DWHERE={home} -Wdev src\n"
        )),
        "{text}"
    );
    let (_, env) = m.get("builds/1/steps/env/logs/stdio/contents").await;
    let text = env["logchunks"][0]["content"].as_str().unwrap_or_default();
    assert!(text.contains("o[hello b1]\n"), "{text}");
    m.stop().await;
}
