//! The shell-command steps beyond `ShellCommand`, on kiln's worker: warning counting with
//! suppressions, test results read from output and reports, `ShellSequence`, `logfiles`,
//! `Configure`, `doStepIf` and `hideStepIf`.

use serde_json::{Value, json};

use crate::harness::{TestMaster, config, http_text};

const CFG: &str = r##"
warn = "echo 'make[1]: Entering directory '\"'\"'gen'\"'\"''; " + \
       "echo 'x.c:3: warning: unused variable'; " + \
       "echo 'make[1]: Leaving directory '\"'\"'gen'\"'\"''; " + \
       "echo 'x.c:3: warning: unused variable'; " + \
       "echo 'y.c:9: warning: deprecated call'; " + \
       "echo 'z.c:1: warning: shadowed'"
pattern = r'^(.*?):(\d+): warning: (.*)$'
c['builders'] = [
    util.BuilderConfig(name='compile', workernames=['w1'], factory=util.BuildFactory([
        steps.ShellCommand(name='write', command=['sh', '-c', 'printf "z\\.c : shadowed\\n" > supp.txt']),
        steps.Compile(command=['sh', '-c', warn], warningPattern=pattern,
            warningExtractor='warnExtractFromRegexpGroups',
            suppressionList=[(r'gen/x\.c', 'unused', 1, 5)], suppressionFile='supp.txt'),
        steps.Compile(name='strict', command=['sh', '-c', warn], maxWarnCount=3),
    ])),
    util.BuilderConfig(name='tests', workernames=['w1'], factory=util.BuildFactory([
        steps.Test(name='unit', command=['sh', '-c', util.Interpolate(
            'echo "test a::one ... ok"; echo "test a::two ... %(prop:two:-ok)s"; echo "test a::skip ... ignored"')],
            testResults='libtest'),
        steps.Test(name='tap', command=['printf', 'ok 1 - parses\nnot ok 2 - formats # TODO later\n'],
            testResults='tap'),
        steps.ShellCommand(name='report', command=['sh', '-c',
            'mkdir -p reports && echo \'<testsuite><testcase classname="k" name="x" time="0.25"/><testcase classname="k" name="y"><failure/></testcase></testsuite>\' > reports/r.xml']),
        steps.Test(name='junit', command=['true'], testResults={'junit': 'reports/*.xml'}),
    ])),
    util.BuilderConfig(name='misc', workernames=['w1'], factory=util.BuildFactory([
        steps.ShellCommand(name='prepare', command=['sh', '-c', 'printf "#!/bin/sh\\necho configured\\n" > configure; chmod +x configure']),
        steps.Configure(),
        steps.ShellSequence(name='seq', commands=[
            util.ShellArg(command=['echo', 'first'], logname='one'),
            util.ShellArg(command=['sh', '-c', 'echo second; exit 1'], logname='two', warnOnFailure=True, flunkOnFailure=False),
            util.ShellArg(command=['sh', '-c', 'exit 3'], haltOnFailure=True),
            util.ShellArg(command=['echo', 'never'], logname='three'),
        ]),
        steps.ShellCommand(name='files', command=['sh', '-c', 'echo hello > app.log; echo out'],
            logfiles={'app': 'app.log', 'never': {'filename': 'never.log', 'follow': True}},
            lazylogfiles=True, alwaysRun=True),
        steps.ShellCommand(name='skipped', command=['false'], doStepIf=False, alwaysRun=True),
        steps.ShellCommand(name='by_function', command=['true'], alwaysRun=True,
            doStepIf=lambda step: step.getProperty('run_it') == 'yes'),
        steps.ShellCommand(name='hidden', command=['true'], alwaysRun=True,
            hideStepIf=lambda results, step: results == util.SUCCESS),
    ])),
]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['compile', 'tests', 'misc'],
    properties=[util.StringParameter(name='two', default='ok'), util.StringParameter(name='run_it', default='no')])]
"##;

async fn step(m: &TestMaster, build: i64, name: &str) -> Value {
    let (_, s) = m.get(&format!("builds/{build}/steps/{name}")).await;
    s["steps"][0].clone()
}

async fn raw(m: &TestMaster, build: i64, step: &str, log: &str) -> (u16, String) {
    http_text(
        &m.www(),
        "GET",
        &format!("/api/v2/builds/{build}/steps/{step}/logs/{log}/raw"),
        None,
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warnings_are_counted_with_suppressions_and_limits() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", CFG)).await;
    m.start_worker("w1", "pass").await;
    // WARNINGS from the first Compile, FAILURE from the strict one (4 > maxWarnCount 3).
    assert_eq!(
        m.force_and_wait(json!({"builderNames": ["compile"]})).await,
        2
    );
    let compile = step(&m, 1, "compile").await;
    assert_eq!(compile["results"], 1, "{compile}");
    assert_eq!(compile["state_string"], "compile warnings=2 (warnings)");
    // gen/x.c:3 is suppressed by the list, z.c by the file; x.c:3 outside gen/ and y.c count.
    let (status, warnings) = raw(&m, 1, "compile", "warnings__2_").await;
    assert_eq!(status, 200, "{warnings}");
    assert!(
        warnings.ends_with(
            "Worker name: w1\nx.c:3: warning: unused variable\ny.c:9: warning: deprecated call\n"
        ),
        "{warnings}"
    );
    let strict = step(&m, 1, "strict").await;
    assert_eq!(strict["results"], 2, "{strict}");
    let (_, b) = m.get("builds/1?property=warnings-count").await;
    assert_eq!(
        b["builds"][0]["properties"]["warnings-count"],
        json!([6, "WarningCountingShellCommand"])
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_results_are_recorded_and_each_tests_history_queried() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", CFG)).await;
    m.start_worker("w1", "pass").await;
    // The first build passes its unit tests, the second fails a::two; the JUnit report fails y.
    assert_eq!(
        m.force_and_wait(json!({"builderNames": ["tests"]})).await,
        2
    );
    assert_eq!(
        m.force_and_wait(json!({"builderNames": ["tests"], "two": "FAILED"}))
            .await,
        2
    );
    let unit = step(&m, 1, "unit").await;
    assert_eq!(unit["results"], 0, "{unit}");
    assert_eq!(unit["state_string"], "3 tests 2 passed 1 skipped");
    let unit2 = step(&m, 2, "unit").await;
    assert_eq!(unit2["results"], 2, "{unit2}");
    assert_eq!(
        unit2["state_string"],
        "3 tests 1 passed 1 failed 1 skipped (failure)"
    );
    // A TODO failure does not fail the step.
    let tap = step(&m, 1, "tap").await;
    assert_eq!(tap["results"], 0, "{tap}");
    let (_, sets) = m.get("builds/1/test_result_sets").await;
    let sets = sets["test_result_sets"].as_array().unwrap().clone();
    assert_eq!(sets.len(), 3, "{sets:?}");
    assert_eq!(sets[0]["description"], "unit");
    assert_eq!(sets[0]["category"], "pass_fail");
    assert_eq!(sets[0]["tests_passed"], 2);
    assert_eq!(sets[0]["tests_failed"], 0);
    assert_eq!(sets[0]["complete"], true);
    let junit = sets[2]["test_result_setid"].as_i64().unwrap();
    let (_, results) = m.get(&format!("test_result_sets/{junit}/results")).await;
    let results = &results["test_results"];
    assert_eq!(results[0]["test_name"], "k.x");
    assert_eq!(results[0]["value"], "1");
    assert_eq!(results[0]["duration_ns"], 250_000_000);
    assert_eq!(results[1]["test_name"], "k.y");
    assert_eq!(results[1]["value"], "0");
    // One test's history across builds.
    let (_, history) = m
        .get("builders/tests/test_results?test_name=a::two&order=buildid")
        .await;
    let history: Vec<(i64, String)> = history["test_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["buildid"].as_i64().unwrap(),
                r["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(history, vec![(1, "1".to_string()), (2, "0".to_string())]);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequences_logfiles_configure_and_step_conditions() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", CFG)).await;
    m.start_worker("w1", "pass").await;
    assert_eq!(
        m.force_and_wait(json!({"builderNames": ["misc"], "run_it": "yes"}))
            .await,
        2
    );
    let configure = step(&m, 1, "configure").await;
    assert_eq!(configure["results"], 0, "{configure}");
    assert!(
        raw(&m, 1, "configure", "stdio")
            .await
            .1
            .contains("configured")
    );
    // The sequence: its own logs, the second command only warns, the third halts it.
    let seq = step(&m, 1, "seq").await;
    assert_eq!(seq["results"], 2, "{seq}");
    assert!(raw(&m, 1, "seq", "one").await.1.contains("first"));
    assert!(raw(&m, 1, "seq", "two").await.1.contains("second"));
    assert!(raw(&m, 1, "seq", "stdio").await.1.contains("exit code 3"));
    assert_eq!(raw(&m, 1, "seq", "three").await.0, 404);
    // The followed file is a log of its own; the file never written has none (lazylogfiles).
    let (status, app) = raw(&m, 1, "files", "app").await;
    assert_eq!(status, 200);
    assert!(app.ends_with("Worker name: w1\nhello\n"), "{app}");
    let (_, logs) = m.get("builds/1/steps/files/logs").await;
    let names: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stdio", "app"]);
    // doStepIf: False skips; a function of the step decides from the properties.
    let skipped = step(&m, 1, "skipped").await;
    assert_eq!(skipped["results"], 3, "{skipped}");
    assert_eq!(skipped["state_string"], "skipped");
    assert_eq!(step(&m, 1, "by_function").await["results"], 0);
    // hideStepIf: a function of the results and the step.
    assert_eq!(step(&m, 1, "hidden").await["hidden"], true);
    assert_eq!(step(&m, 1, "files").await["hidden"], false);
    assert_eq!(m.force_and_wait(json!({"builderNames": ["misc"]})).await, 2);
    assert_eq!(step(&m, 2, "by_function").await["results"], 3);
    m.stop().await;
}
