use serde_json::json;

use crate::harness::{TestMaster, config, http_text};

const ALL_STEPS: &str = r#"
f = util.BuildFactory()
f.addStep(steps.ShellCommand(name='echo', command=['sh', '-c', 'echo out; echo err 1>&2; printf partial']))
f.addStep(steps.StringDownload('string content\n', workerdest='dl/str.txt'))
f.addStep(steps.FileDownload(mastersrc='tosend.bin', workerdest='dl/file.bin'))
f.addStep(steps.ShellCommand(name='check', command='echo "name=$BUILDNAME"; test "$(cat dl/str.txt)" = "string content" || exit 9; cmp dl/file.bin dl/str.txt', env={'BUILDNAME': util.Interpolate('%(prop:buildername)s-%(prop:buildnumber)s')}))
f.addStep(steps.FileUpload(workersrc='dl/file.bin', masterdest='uploads/file.bin', url='http://example.invalid/file.bin'))
f.addStep(steps.DirectoryUpload(workersrc='dl', masterdest='uploads/dir'))
f.addStep(steps.MakeDirectory(dir='build/made'))
f.addStep(steps.RemoveDirectory(dir='build/dl'))
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f, properties={'answer': 42})]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;

async fn all_steps_build(db_url: &str) {
    let mut m = TestMaster::start(&config(db_url, ALL_STEPS)).await;
    let payload: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(m.path("tosend.bin"), &payload).unwrap();
    m.start_worker("w1", "pass").await;
    let results = m
        .force_and_wait(
            json!({"builderid": 1, "username": "Me <me@example.com>", "reason": "test"}),
        )
        .await;

    let (_, steps) = m.get("builds/1/steps").await;
    let summary: Vec<(String, i64)> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["results"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        results, 2,
        "cmp fails because the two files differ; steps: {summary:?}"
    );
    let names: Vec<&str> = summary.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "worker_preparation",
            "echo",
            "string_download",
            "download",
            "check",
            "upload",
            "upload_2",
            "MakeDirectory",
            "RemoveDirectory"
        ]
    );
    assert_eq!(
        summary
            .iter()
            .filter(|(_, r)| *r != 0)
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["check"]
    );

    // The stdio log keeps Buildbot's stream prefixes, and the unterminated line comes last.
    let (_, contents) = m.get("builds/1/steps/echo/logs/stdio/contents").await;
    let text = contents["logchunks"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains("\nout\n") || text.contains("oout\n"),
        "{text}"
    );
    assert!(text.contains("eerr\n"), "{text}");
    assert!(text.contains("opartial\n"), "{text}");
    assert!(
        text.contains("hprogram finished with exit code 0\n"),
        "{text}"
    );
    // A short command's header, output and exit status are stored together, in one chunk.
    let (_, log) = m.get("builds/1/steps/echo/logs/stdio").await;
    let logid = kiln_core::LogId(log["logs"][0]["logid"].as_i64().unwrap());
    let chunks = m.master().db.log_chunks(logid, 0, 100).await.unwrap();
    assert_eq!(chunks.len(), 1, "{chunks:?}");
    assert_eq!(log["logs"][0]["num_lines"], text.lines().count());
    assert_eq!(log["logs"][0]["complete"], true);

    // Downloads carried the real bytes, and uploads brought them back.
    assert_eq!(std::fs::read(m.path("uploads/file.bin")).unwrap(), payload);
    assert_eq!(
        std::fs::read_to_string(m.path("uploads/dir/str.txt")).unwrap(),
        "string content\n"
    );
    assert_eq!(
        std::fs::read(m.path("uploads/dir/file.bin")).unwrap(),
        payload
    );
    let (_, step) = m.get("builds/1/steps/upload").await;
    assert_eq!(
        step["steps"][0]["urls"][0]["url"],
        "http://example.invalid/file.bin"
    );

    // Properties are layered with their sources, and rendered into the command's environment.
    let (_, build) = m.get("builds/1?property=*").await;
    let props = &build["builds"][0]["properties"];
    assert_eq!(props["answer"], json!([42, "Builder"]));
    assert_eq!(props["buildername"], json!(["b1", "Builder"]));
    assert_eq!(
        props["owner"],
        json!(["Me <me@example.com>", "Force Build Form"])
    );
    assert_eq!(props["workername"], json!(["w1", "Worker"]));
    // Buildbot's words: the result, then the summary of the step that failed it.
    assert_eq!(
        build["builds"][0]["state_string"],
        "failed 'echo \"name=$BUILDNAME\"; ...' (failure)"
    );
    let (_, raw) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/1/steps/check/logs/stdio/raw",
        None,
        &[],
    )
    .await;
    assert!(
        raw.starts_with("Builder: b1\nBuild number: 1\nWorker name: w1\n"),
        "{raw}"
    );
    assert!(raw.contains("differ"), "cmp says why: {raw}");
    assert!(
        raw.contains("\nname=b1-1\n"),
        "the environment was rendered: {raw}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_runs_every_step_kind_on_sqlite() {
    all_steps_build("sqlite:///state.sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_runs_every_step_kind_on_postgresql() {
    if let Some(pg) = kiln_db::testing::postgres().await.expect("postgres") {
        all_steps_build(&pg.url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_on_failure_skips_later_steps_except_always_run() {
    let body = r#"
f = util.BuildFactory()
f.addStep(steps.ShellCommand(name='fails', command='exit 3', haltOnFailure=True))
f.addStep(steps.ShellCommand(name='skipped', command='true'))
f.addStep(steps.ShellCommand(name='cleanup', command='true', alwaysRun=True))
f.addStep(steps.ShellCommand(name='decoded', command='exit 1', decodeRC={1: 1}, alwaysRun=True, warnOnWarnings=True))
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    assert_eq!(m.force_and_wait(json!({})).await, 2);
    let (_, steps) = m
        .get("builds/1/steps?field=name&field=results&order=number")
        .await;
    assert_eq!(
        steps["steps"],
        json!([
            {"name": "worker_preparation", "results": 0},
            {"name": "fails", "results": 2},
            {"name": "cleanup", "results": 0},
            {"name": "decoded", "results": 1}
        ])
    );
    let (_, request) = m.get("buildrequests/1").await;
    assert_eq!(request["buildrequests"][0]["results"], 2);
    assert_eq!(request["buildrequests"][0]["complete"], true);
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_run_by_priority_with_max_builds_and_several_workers() {
    let body = r#"
c['workers'] = [worker.Worker('w1', 'pass', max_builds=1), worker.Worker('w2', 'pass2', max_builds=1)]
f = util.BuildFactory([steps.ShellCommand(command='true')])
g = util.BuildFactory([steps.ShellCommand(command='while [ ! -f MARKER ]; do sleep 0.05; done')])
c['builders'] = [util.BuilderConfig(name='a', workernames=['w1', 'w2'], factory=f),
                 util.BuilderConfig(name='b', workernames=['w1', 'w2'], factory=f),
                 util.BuilderConfig(name='c', workernames=['w1', 'w2'], factory=g)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['a', 'b', 'c'])]
"#;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("go");
    let body = body.replace("MARKER", &marker.display().to_string());
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", &body)).await;
    // Queue requests before any worker is there, so that the order is decided by priority alone.
    let mut bsids = std::collections::BTreeSet::new();
    for (builder, priority) in [("a", 0), ("b", 0), ("a", 5), ("b", 0), ("b", 9)] {
        bsids.insert(
            m.force(json!({"builderNames": [builder], "priority": priority}))
                .await,
        );
    }
    m.start_worker("w1", "pass").await;
    wait_all(&mut m, &mut bsids).await;
    let (_, builds) = m.get("builds?order=buildid&field=buildrequestid").await;
    let order: Vec<i64> = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["buildrequestid"].as_i64().unwrap())
        .collect();
    assert_eq!(
        &order[..2],
        &[5, 3],
        "one build at a time, highest priority first: {order:?}"
    );

    // Two requests of one builder run at the same time on different workers: each build waits
    // for a marker that is only written once both have started.
    m.start_worker("w2", "pass2").await;
    let mut bsids = std::collections::BTreeSet::new();
    for _ in 0..2 {
        bsids.insert(m.force(json!({"builderNames": ["c"]})).await);
    }
    m.wait_event("builds.*.new").await;
    m.wait_event("builds.*.new").await;
    std::fs::write(m.path("go"), "").unwrap();
    wait_all(&mut m, &mut bsids).await;
    let (_, builds) = m.get("builds?order=-buildid&limit=2&field=workerid").await;
    let workers: std::collections::BTreeSet<i64> = builds["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["workerid"].as_i64().unwrap())
        .collect();
    assert_eq!(workers.len(), 2, "{builds}");
    m.stop().await;
}

async fn wait_all(m: &mut TestMaster, bsids: &mut std::collections::BTreeSet<i64>) {
    while !bsids.is_empty() {
        let data = m.wait_event("buildsets.*.complete").await;
        assert_eq!(data["results"], 0);
        bsids.remove(&data["bsid"].as_i64().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_build_cancels_it_and_kills_the_process() {
    let body = r#"
f = util.BuildFactory([steps.ShellCommand(name='sleep', command='echo started; sleep 600')])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let bsid = m.force(json!({})).await;
    // Output of a command that is still running is stored and readable.
    m.wait_event("logs.*.append").await;
    let (_, log) = m.get("builds/1/steps/sleep/logs/stdio/contents").await;
    assert!(
        log["logchunks"][0]["content"]
            .as_str()
            .unwrap()
            .contains("ostarted\n"),
        "{log}"
    );
    let (status, reply) = crate::harness::rpc(
        &m.www(),
        "builds/1",
        "stop",
        json!({"reason": "no longer needed"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(m.wait_buildset(bsid).await, 6, "CANCELLED");
    let (_, build) = m.get("builds/1").await;
    assert_eq!(build["builds"][0]["results"], 6);
    let (_, log) = m.get("builds/1/steps/sleep/logs/stdio/contents").await;
    assert!(
        log["logchunks"][0]["content"]
            .as_str()
            .unwrap()
            .contains("killing: no longer needed"),
        "{log}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_command_is_killed_at_its_timeout() {
    let body = r#"
f = util.BuildFactory([steps.ShellCommand(name='silent', command='echo begin; sleep 60', timeout=1)])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let started = std::time::Instant::now();
    assert_eq!(
        m.force_and_wait(json!({})).await,
        2,
        "a killed command fails its step"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the process group was killed, not waited for"
    );
    let (_, log) = m.get("builds/1/steps/silent/logs/stdio/contents").await;
    let text = log["logchunks"][0]["content"].as_str().unwrap();
    assert!(
        text.contains("command timed out: 1 seconds without output"),
        "{text}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_pty_gives_the_command_a_terminal() {
    let body = r#"
f = util.BuildFactory()
f.addStep(steps.ShellCommand(name='pty', command='test -t 1 && echo on-a-terminal; echo to-stderr 1>&2', usePTY=True))
f.addStep(steps.ShellCommand(name='pipes', command='test -t 1 || echo not-a-terminal'))
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    assert_eq!(m.force_and_wait(json!({})).await, 0);
    let (_, log) = m.get("builds/1/steps/pty/logs/stdio/contents").await;
    let text = log["logchunks"][0]["content"].as_str().unwrap();
    assert!(text.contains("oon-a-terminal\n"), "{text}");
    assert!(
        text.contains("oto-stderr\n"),
        "a terminal merges stderr into stdout: {text}"
    );
    assert!(text.contains("using PTY: True"), "{text}");
    let (_, log) = m.get("builds/1/steps/pipes/logs/stdio/contents").await;
    assert!(
        log["logchunks"][0]["content"]
            .as_str()
            .unwrap()
            .contains("onot-a-terminal\n")
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renderers_transforms_flattened_lists_and_source_stamps_render_in_commands() {
    let body = r#"
def bang(props):
    return props.getProperty('buildername') + '!' if props.hasProperty('buildername') else 'none'
echo = util.Interpolate('R=%(kw:r)s T=%(kw:t)s S=%(src::branch)s/%(src::revision:-head)s W=%(worker:version:?|has|none)s',
    r=util.renderer(bang), t=util.Transform(lambda a, n: a * n, 'x', 3))
f = util.BuildFactory([steps.ShellCommand(name='say', command=util.FlattenList(['sh', ['-c', [echo]]])),
    steps.ShellCommand(name='bad', command=util.renderer(lambda props: props.nope))])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let results = m
        .force_and_wait(serde_json::json!({"builderNames": ["b1"], "branch": "main"}))
        .await;
    assert_eq!(results, 4, "the second step cannot render its command");
    let (_, raw) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/1/steps/say/logs/stdio/raw",
        None,
        &[],
    )
    .await;
    // A force form's empty revision is "", which `:-` keeps, as Buildbot's does.
    assert!(raw.contains("R=b1! T=xxx S=main/ W=has"), "{raw}");
    let (_, err) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/1/steps/bad/logs/err_text/raw",
        None,
        &[],
    )
    .await;
    assert!(
        err.contains("util.renderer failed") && err.contains("nope"),
        "{err}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_read_when_used_and_hidden_in_logs() {
    let body = r#"
c['secretsProviders'] = [secrets.SecretInAFile('secrets'), secrets.SecretInKeyValueFile('more.txt')]
f = util.BuildFactory([
    steps.ShellCommand(name='use', command=['sh', '-c', util.Interpolate('echo token=%(secret:token)s; echo "pw=$PW"; echo len=$(printf %%s "$PW$TOK" | wc -c)')],
        env={'PW': util.Interpolate('%(secret:pw)s'), 'TOK': util.Interpolate('%(secret:token)s')}),
    steps.ShellCommand(name='missing', command=util.Interpolate('echo %(secret:nope)s'))])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/token"), "tok-4242\n").unwrap();
    std::fs::write(dir.path().join("more.txt"), "pw=hunter2\n").unwrap();
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let results = m
        .force_and_wait(serde_json::json!({"builderNames": ["b1"]}))
        .await;
    assert_eq!(results, 4, "the missing secret is an exception");
    let (_, raw) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/1/steps/use/logs/stdio/raw",
        None,
        &[],
    )
    .await;
    assert!(
        raw.contains("token=<token>") && raw.contains("pw=<pw>"),
        "{raw}"
    );
    assert!(
        !raw.contains("tok-4242") && !raw.contains("hunter2"),
        "{raw}"
    );
    let (_, err) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/1/steps/missing/logs/err_text/raw",
        None,
        &[],
    )
    .await;
    assert!(
        err.contains("no secret provider has a secret named 'nope'"),
        "{err}"
    );
    // A secret changed on disk is read anew by the next build.
    assert!(raw.contains("len=15"), "hunter2 and tok-4242: {raw}");
    std::fs::write(m.path("secrets/token"), "tok-999999\n").unwrap();
    m.force_and_wait(serde_json::json!({"builderNames": ["b1"]}))
        .await;
    let (_, raw) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/2/steps/use/logs/stdio/raw",
        None,
        &[],
    )
    .await;
    assert!(
        raw.contains("token=<token>") && !raw.contains("tok-999999"),
        "{raw}"
    );
    assert!(raw.contains("len=17"), "the new value was read: {raw}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_set_properties_that_later_steps_use() {
    let body = r#"
def parse(rc, stdout, stderr):
    return {'x': stdout.strip(), 'err': stderr.strip(), 'rc': rc}
f = util.BuildFactory([
    steps.SetProperty(property='color', value='blue'),
    steps.SetProperties(properties={'a': 1, 'b': util.Interpolate('%(prop:color)s!')}),
    steps.SetPropertyFromCommand(name='greet', command='echo "  hello  "', property='greeting'),
    steps.SetPropertyFromCommand(name='parse', command=['sh', '-c', 'echo one; echo two >&2'], extract_fn=parse),
    steps.SetPropertyFromCommand(name='fails', command=['sh', '-c', 'echo no; exit 3'], property='never', flunkOnFailure=False),
    steps.ShellCommand(name='say', command=['echo', util.Interpolate('%(prop:greeting)s %(prop:b)s %(prop:x)s')]),
])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    let results = m
        .force_and_wait(serde_json::json!({"builderNames": ["b1"]}))
        .await;
    assert_eq!(results, 0);
    let (_, b) = m.get("builds/1?property=*").await;
    let props = &b["builds"][0]["properties"];
    assert_eq!(props["color"], serde_json::json!(["blue", "SetProperty"]));
    assert_eq!(props["a"], serde_json::json!([1, "SetProperties"]));
    assert_eq!(props["b"], serde_json::json!(["blue!", "SetProperties"]));
    assert_eq!(
        props["greeting"],
        serde_json::json!(["hello", "SetPropertyFromCommand Step"])
    );
    assert_eq!(props["x"][0], "one");
    assert_eq!(props["err"][0], "two");
    assert_eq!(props["rc"][0], 0);
    assert!(props["never"].is_null(), "a failed command sets nothing");
    let (_, steps) = m.get("builds/1/steps").await;
    let states: Vec<&str> = steps["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state_string"].as_str().unwrap())
        .collect();
    assert!(states.contains(&"property 'greeting' set"), "{states:?}");
    assert!(states.contains(&"3 properties set"), "{states:?}");
    let (_, raw) = http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/1/steps/say/logs/stdio/raw",
        None,
        &[],
    )
    .await;
    assert!(raw.contains("\nhello blue! one\n"), "{raw}");
    m.stop().await;
}

/// The attributes Buildbot's configuration functions read: a change's properties through
/// `getProperty`, a request's `sources`, a worker's `isIdle()` and `worker.workername`, and a
/// step's `build.results` and `build.getProperties()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_functions_read_buildbot_s_attributes() {
    let body = r#"
c['www'] = {'change_hook_dialects': {'base': True}}
def wanted(change):
    return change.properties.getProperty('ci') == 'yes' and change.properties.hasProperty('ci')
def pick(builder, workers, request):
    if request.sources[''].branch != 'main':
        fail('request.sources has no main branch: %r' % request.sources)
    # Not the default's choice (w1, first in order): the build shows this function ran.
    idle = [w for w in workers if w.isIdle() and w.worker.workername == 'w2']
    return idle[0] if idle else None
def after_failure(step):
    return step.build.results == util.FAILURE and step.build.getProperties().getProperty('buildername') == 'b1'
@util.renderer
def described(props):
    return ['echo', '%s %s %s %s' % (props['buildername'], 'branch' in props, props.hasProperty('nope'), props.getProperty('nope', 'none'))]
f = util.BuildFactory([
    steps.ShellCommand(name='bad', command=['false']),
    steps.ShellCommand(name='after', command=['true'], doStepIf=after_failure),
    steps.ShellCommand(name='described', command=described),
])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1', 'w2'], factory=f, nextWorker=pick)]
c['schedulers'] = [schedulers.AnyBranchScheduler(name='ci', builderNames=['b1'], treeStableTimer=None,
    change_filter=util.ChangeFilter(filter_fn=wanted))]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    m.start_worker("w2", "pass2").await;
    for (ci, revision) in [("no", "r1"), ("yes", "r2")] {
        let form = format!(
            "author=a&branch=main&revision={revision}&properties=%7B%22ci%22%3A%22{ci}%22%7D"
        );
        let (status, _) = http_text(
            &m.www(),
            "POST",
            "/change_hook/base",
            Some(&form),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        )
        .await;
        assert_eq!(status, 200);
    }
    let done = m.wait_event("buildsets.*.complete").await;
    assert_eq!(done["results"], 2, "the first step fails the build");
    let (_, builds) = m.get("builds?field=buildid").await;
    assert_eq!(
        builds["builds"].as_array().unwrap().len(),
        1,
        "only the wanted change builds"
    );
    let (_, build) = m.get("builds/1?property=workername").await;
    assert_eq!(
        build["builds"][0]["properties"]["workername"][0], "w2",
        "nextWorker chose"
    );
    let (_, steps) = m.get("builds/1/steps?field=name&field=results").await;
    assert_eq!(
        steps["steps"][2],
        json!({"name": "after", "results": 0}),
        "doStepIf saw the failure: {steps}"
    );
    // A renderer reads `props[name]` and `name in props`, as Buildbot's IProperties allows.
    let (_, log) = m.get("builds/1/steps/described/logs/stdio/contents").await;
    let text = log["logchunks"][0]["content"].as_str().unwrap_or_default();
    assert!(text.contains("ob1 True False none\n"), "{text}");
    m.stop().await;
}

/// While a build runs, its state string says what its current step is doing, as its step's
/// does; at the end it is the build's summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_build_s_state_string_follows_its_current_step() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let body = format!(
        r#"
f = util.BuildFactory([
    steps.ShellCommand(name='first', command=['true']),
    steps.ShellCommand(name='wait', description='waiting for go', command=['sh', '-c',
        'while [ ! -e {go} ]; do sleep 0.05; done'])])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
"#,
        go = go.display()
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &body)).await;
    m.start_worker("w1", "pass").await;
    let bsid = m.force(json!({"builderNames": ["b"]})).await;
    let www = m.www();
    m.wait_until("steps.*.started", || {
        let www = www.clone();
        async move {
            let (_, steps) =
                crate::harness::http(&www, "GET", "/api/v2/steps?name=wait", None).await;
            steps["meta"]["total"] == 1
        }
    })
    .await;
    let (_, build) = m.get("builds/1").await;
    let (_, step) = m.get("builds/1/steps/wait").await;
    assert_eq!(step["steps"][0]["state_string"], "waiting for go");
    assert_eq!(
        build["builds"][0]["state_string"], "waiting for go",
        "{build}"
    );
    std::fs::write(&go, "").unwrap();
    assert_eq!(m.wait_buildset(bsid).await, 0);
    let (_, build) = m.get("builds/1").await;
    assert_eq!(build["builds"][0]["state_string"], "build successful");
}

/// A master stopped under a running build ends the build RETRY (its request runs again on the
/// next start) and finishes the step that was running, which says so after its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_finishes_the_running_step_of_the_build_it_interrupts() {
    let body = r#"
f = util.BuildFactory([steps.ShellCommand(name='forever', command=['sleep', '600'])])
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", body)).await;
    m.start_worker("w1", "pass").await;
    m.force(json!({"builderNames": ["b"]})).await;
    let www = m.www();
    m.wait_until("steps.*.started", || {
        let www = www.clone();
        async move {
            let (_, steps) =
                crate::harness::http(&www, "GET", "/api/v2/steps?name=forever", None).await;
            steps["meta"]["total"] == 1
        }
    })
    .await;
    m.stop().await;
    let db =
        kiln_master::master::open_database(m.dir.path(), &kiln_config::load(m.dir.path()).unwrap())
            .await
            .unwrap();
    let build = db.get_build(kiln_core::BuildId(1)).await.unwrap().unwrap();
    assert_eq!(build.results, Some(5), "RETRY");
    let page =
        kiln_db::listing::Page::eq("name", kiln_db::listing::SqlValue::Text("forever".into()));
    let (steps, _) = db.list_steps(&page).await.unwrap();
    assert!(steps[0].complete_at.is_some(), "{steps:?}");
    assert_eq!(steps[0].results, Some(5), "RETRY");
    assert_eq!(steps[0].state_string, "forever (retry)");
}

/// A step's header lists the worker's environment, as Buildbot's does, with the values of the
/// variables whose names say they are secret hidden; `c['hiddenEnvironment']` says which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_looking_environment_values_are_hidden_in_step_headers() {
    let steps = r#"
f = util.BuildFactory([steps.ShellCommand(name='env', command=['true'],
    env={'API_TOKEN': 'tok-value-1', 'db_password': 'pw-value-2', 'PATH_EXTRA': 'plain-value-3'})])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    for (extra, hidden, shown) in [
        (
            "",
            &["API_TOKEN", "db_password"][..],
            &["PATH_EXTRA=plain-value-3"][..],
        ),
        (
            "c['hiddenEnvironment'] = ['path_*']\n",
            &["PATH_EXTRA"][..],
            &["API_TOKEN=tok-value-1", "db_password=pw-value-2"][..],
        ),
    ] {
        let body = format!("{steps}{extra}");
        let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &body)).await;
        m.start_worker("w1", "pass").await;
        assert_eq!(m.force_and_wait(json!({"builderNames": ["b1"]})).await, 0);
        let (_, raw) = http_text(
            &m.www(),
            "GET",
            "/api/v2/builds/1/steps/env/logs/stdio/raw",
            None,
            &[],
        )
        .await;
        for name in hidden {
            assert!(
                raw.contains(&format!("\n  {name}=<hidden>\n")),
                "{name}: {raw}"
            );
        }
        for line in shown {
            assert!(raw.contains(&format!("\n  {line}\n")), "{line}: {raw}");
        }
        m.stop().await;
    }
}
