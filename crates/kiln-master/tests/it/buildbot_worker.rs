//! The stock `buildbot-worker` from PyPI against a kiln master: the external conformance oracle.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::json;

use crate::harness::{TestMaster, config};

/// The environment variable naming the `buildbot-worker` executable (from a virtualenv).
const BUILDBOT_WORKER_VAR: &str = "KILN_TEST_BUILDBOT_WORKER";

pub(crate) fn buildbot_worker() -> Option<PathBuf> {
    match std::env::var_os(BUILDBOT_WORKER_VAR) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{BUILDBOT_WORKER_VAR} must name buildbot-worker when CI is set"
            );
            eprintln!(
                "warning: {BUILDBOT_WORKER_VAR} is not set; the buildbot-worker compatibility test does not run"
            );
            None
        }
    }
}

const TRANSFERS: &str = r#"
f = util.BuildFactory()
f.addStep(steps.ShellCommand(name='shell', command=['sh', '-c', 'echo out; echo err 1>&2; mkdir -p tree/sub; echo leaf > tree/sub/leaf.txt']))
f.addStep(steps.FileDownload(mastersrc='tosend.bin', workerdest='received.bin'))
f.addStep(steps.StringDownload('from a string\n', workerdest='tree/str.txt'))
f.addStep(steps.ShellCommand(name='verify', command='cmp received.bin ../../tosend.copy'))
f.addStep(steps.FileUpload(workersrc='received.bin', masterdest='uploads/back.bin'))
f.addStep(steps.DirectoryUpload(workersrc='tree', masterdest='uploads/tree'))
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;

/// The protocols a stock worker can be created with; every test here runs on both.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Protocol {
    /// Twisted's Perspective Broker, the stock worker's default.
    Pb,
    Msgpack,
}

impl From<Protocol> for kiln_master::workers::connection::Protocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Pb => Self::Pb,
            Protocol::Msgpack => Self::Msgpack,
        }
    }
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Pb => "pb",
            Protocol::Msgpack => "msgpack_experimental_v7",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_buildbot_worker_runs_shell_and_transfer_steps_over_pb() {
    shell_and_transfer_steps(Protocol::Pb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_buildbot_worker_runs_shell_and_transfer_steps_over_msgpack() {
    shell_and_transfer_steps(Protocol::Msgpack).await
}

async fn shell_and_transfer_steps(protocol: Protocol) {
    let Some(exe) = buildbot_worker() else { return };
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", TRANSFERS)).await;
    let payload: Vec<u8> = (0..100_000u32)
        .flat_map(|i| i.wrapping_mul(2654435761).to_le_bytes())
        .collect();
    std::fs::write(m.path("tosend.bin"), &payload).unwrap();
    let worker_dir = m.path("bbworker");
    // The verify step compares against this copy, two levels up from the build directory.
    std::fs::create_dir_all(&worker_dir).unwrap();
    std::fs::write(worker_dir.join("tosend.copy"), &payload).unwrap();
    let mut child = start_buildbot_worker(&m, &exe, &worker_dir, protocol);
    m.wait_attached("w1").await;
    assert_eq!(m.worker_protocol("w1"), protocol.into());
    let results = m.force_and_wait(json!({})).await;
    let log = std::fs::read_to_string(worker_dir.join("twistd.log")).unwrap_or_default();
    let _ = child.kill().await;
    check_transfers(&m, results, &log, &payload).await;
    m.stop().await;
}

/// Creates and starts a buildbot-worker named w1 in `worker_dir` for the master, speaking
/// `protocol`.
pub(crate) fn start_buildbot_worker(
    m: &TestMaster,
    exe: &std::path::Path,
    worker_dir: &std::path::Path,
    protocol: Protocol,
) -> tokio::process::Child {
    StockWorker {
        name: "w1",
        password: "pass",
        protocol,
        ca_file: None,
    }
    .start(m, exe, worker_dir)
}

/// A stock worker to create and start.
pub(crate) struct StockWorker<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub protocol: Protocol,
    /// Over TLS (`--use-tls`) to `localhost`, trusting the authorities of this file, when given.
    pub ca_file: Option<&'a std::path::Path>,
}

impl StockWorker<'_> {
    /// Creates the worker in `worker_dir` for the master, and starts it.
    pub(crate) fn start(
        &self,
        m: &TestMaster,
        exe: &std::path::Path,
        worker_dir: &std::path::Path,
    ) -> tokio::process::Child {
        let mut create = std::process::Command::new(exe);
        create.args([
            "create-worker",
            "--protocol",
            self.protocol.name(),
            "--umask",
            "0o22",
        ]);
        let host = match self.ca_file {
            Some(_) => {
                create.arg("--use-tls");
                "localhost"
            }
            None => "127.0.0.1",
        };
        let created = create
            .arg(worker_dir)
            .arg(format!("{host}:{}", m.worker_port()))
            .args([self.name, self.password])
            .output()
            .expect("run buildbot-worker create-worker");
        assert!(
            created.status.success(),
            "create-worker failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let mut start = tokio::process::Command::new(exe);
        // Twisted checks the master's certificate against OpenSSL's default authorities, which
        // this variable replaces.
        if let Some(ca) = self.ca_file {
            start.env("SSL_CERT_FILE", ca);
        }
        start
            .args(["start", "--nodaemon"])
            .arg(worker_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start buildbot-worker")
    }
}

async fn check_transfers(m: &TestMaster, results: i64, log: &str, payload: &[u8]) {
    let (_, steps) = m.get("builds/1/steps?field=name&field=results").await;
    assert_eq!(
        results,
        0,
        "steps: {steps}\nworker log tail:\n{}",
        log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(
        std::fs::read(m.path("uploads/back.bin")).unwrap(),
        payload,
        "the download carried the bytes"
    );
    assert_eq!(
        std::fs::read_to_string(m.path("uploads/tree/sub/leaf.txt")).unwrap(),
        "leaf\n"
    );
    assert_eq!(
        std::fs::read_to_string(m.path("uploads/tree/str.txt")).unwrap(),
        "from a string\n"
    );
    let (_, contents) = m.get("builds/1/steps/shell/logs/stdio/contents").await;
    let text = contents["logchunks"][0]["content"].as_str().unwrap();
    assert!(text.contains("oout\n") && text.contains("eerr\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_buildbot_worker_runs_the_git_step_over_pb() {
    git_step(Protocol::Pb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_buildbot_worker_runs_the_git_step_over_msgpack() {
    git_step(Protocol::Msgpack).await
}

async fn git_step(protocol: Protocol) {
    let Some(exe) = buildbot_worker() else { return };
    let upstream = tempfile::tempdir().unwrap();
    let repo = upstream.path();
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(repo)
            .env("GIT_AUTHOR_NAME", "A")
            .env("GIT_AUTHOR_EMAIL", "a@x")
            .env("GIT_COMMITTER_NAME", "A")
            .env("GIT_COMMITTER_EMAIL", "a@x")
            .output()
            .expect("git is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a.txt"), "one\n").unwrap();
    git(&["add", "a.txt"]);
    git(&["commit", "-q", "-m", "one"]);
    let head = git(&["rev-parse", "HEAD"]);
    let cfg = format!(
        "f = util.BuildFactory([steps.Git(repourl={:?}, mode='full', method='copy'),\n\
             steps.ShellCommand(name='show', command=['cat', 'a.txt'])])\n\
         c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]\n\
         c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]\n",
        repo.display().to_string()
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &cfg)).await;
    let worker_dir = m.path("bbworker");
    std::fs::create_dir_all(&worker_dir).unwrap();
    let mut child = start_buildbot_worker(&m, &exe, &worker_dir, protocol);
    m.wait_attached("w1").await;
    // Twice: a clone, then an update of the kept source directory.
    for build in [1, 2] {
        let results = m.force_and_wait(json!({"branch": "main"})).await;
        let log = std::fs::read_to_string(worker_dir.join("twistd.log")).unwrap_or_default();
        assert_eq!(
            results,
            0,
            "worker log tail:\n{}",
            log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
        let (_, b) = m
            .get(&format!("builds/{build}?property=got_revision"))
            .await;
        assert_eq!(
            b["builds"][0]["properties"]["got_revision"][0],
            head.as_str()
        );
    }
    let _ = child.kill().await;
    m.stop().await;
}

/// The newer steps on the stock worker: followed log files, warnings, JUnit reports (its `glob`
/// and `upload_file`), `MultipleFileUpload`, `FileExists`, `CopyDirectory`, `JSONPropertiesDownload`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_buildbot_worker_runs_file_steps_logfiles_and_test_reports_over_pb() {
    file_steps_logfiles_and_test_reports(Protocol::Pb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_buildbot_worker_runs_file_steps_logfiles_and_test_reports_over_msgpack() {
    file_steps_logfiles_and_test_reports(Protocol::Msgpack).await
}

async fn file_steps_logfiles_and_test_reports(protocol: Protocol) {
    let Some(exe) = buildbot_worker() else { return };
    let cfg = r#"
f = util.BuildFactory([
    steps.ShellCommand(name='make', command=['sh', '-c',
        'mkdir -p out reports && echo a > out/a.txt && echo b > out/b.txt && echo hello > app.log && echo "x.c:1: warning: w" && '
        + 'echo \'<testsuite><testcase name="ok"/><testcase name="bad"><failure/></testcase></testsuite>\' > reports/r.xml'],
        logfiles={'app': 'app.log'}),
    steps.Compile(name='compile', command=['echo', 'y.c:2: warning: v'], flunkOnWarnings=False),
    steps.Test(name='junit', command=['true'], testResults={'junit': 'reports/*.xml'}, flunkOnFailure=False),
    steps.FileExists(name='exists', file='out/a.txt'),
    steps.CopyDirectory(src='build/out', dest='copied'),
    steps.MultipleFileUpload(name='up', workersrcs=['out/*.txt'], glob=True, masterdest='up'),
    steps.JSONPropertiesDownload(name='props', workerdest='props.json'),
    steps.ShellCommand(name='show', command=['sh', '-c', 'cat props.json; ls ../copied']),
])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", cfg)).await;
    let worker_dir = m.path("bbworker");
    std::fs::create_dir_all(&worker_dir).unwrap();
    let mut child = start_buildbot_worker(&m, &exe, &worker_dir, protocol);
    m.wait_attached("w1").await;
    let results = m.force_and_wait(json!({})).await;
    let (_, steps) = m
        .get("builds/1/steps?field=name&field=results&field=state_string")
        .await;
    // WARNINGS from the compile step; the failed JUnit test does not flunk the build.
    assert_eq!(results, 1, "{steps}");
    let (_, app) = m.get("builds/1/steps/make/logs/app/contents").await;
    assert_eq!(app["logchunks"][0]["content"], "ohello\n", "{app}");
    let by_name = |n: &str| {
        steps["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        by_name("compile")["state_string"],
        "compile warnings=1 (warnings)"
    );
    assert_eq!(
        by_name("junit")["state_string"],
        "2 tests 1 passed 1 failed (failure)"
    );
    assert_eq!(by_name("exists")["state_string"], "File found.");
    assert_eq!(std::fs::read_to_string(m.path("up/a.txt")).unwrap(), "a\n");
    assert_eq!(std::fs::read_to_string(m.path("up/b.txt")).unwrap(), "b\n");
    let (_, show) = m.get("builds/1/steps/show/logs/stdio/contents").await;
    let text = show["logchunks"][0]["content"].as_str().unwrap_or_default();
    assert!(
        text.contains("\"buildername\":\"b1\"") && text.contains("ob.txt"),
        "{text}"
    );
    let _ = child.kill().await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_buildbot_worker_over_pb_is_stopped_and_given_new_builders() {
    stopped_and_reconfigured(Protocol::Pb).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stock_buildbot_worker_over_msgpack_is_stopped_and_given_new_builders() {
    stopped_and_reconfigured(Protocol::Msgpack).await
}

/// A stopped build interrupts the worker's command; a builder added by a reconfiguration runs on
/// the worker without a reconnection (a PB worker is given its builders again).
async fn stopped_and_reconfigured(protocol: Protocol) {
    let Some(exe) = buildbot_worker() else { return };
    let builder = |name: &str, command: &str| {
        format!(
            "util.BuilderConfig(name='{name}', workernames=['w1'], \
             factory=util.BuildFactory([steps.ShellCommand(command={command:?})]))"
        )
    };
    let body = |builders: &[String]| {
        let names: Vec<String> = ["slow", "late"]
            .iter()
            .take(builders.len())
            .map(|n| format!("'{n}'"))
            .collect();
        format!(
            "c['builders'] = [{}]\n\
             c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=[{}])]\n",
            builders.join(", "),
            names.join(", ")
        )
    };
    let slow = builder("slow", "sleep 60");
    let mut m = TestMaster::start(&config(
        "sqlite:///state.sqlite",
        &body(std::slice::from_ref(&slow)),
    ))
    .await;
    let worker_dir = m.path("bbworker");
    std::fs::create_dir_all(&worker_dir).unwrap();
    let mut child = start_buildbot_worker(&m, &exe, &worker_dir, protocol);
    m.wait_attached("w1").await;
    let bsid = m.force(json!({})).await;
    let build = m.wait_event("builds.*.new").await["buildid"]
        .as_i64()
        .unwrap();
    m.wait_event("steps.*.started").await;
    let (status, _) =
        crate::harness::rpc(&m.www(), &format!("builds/{build}"), "stop", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(m.wait_complete(bsid).await, 6, "CANCELLED");

    let late = builder("late", "echo late");
    let source = config("sqlite:///state.sqlite", &body(&[slow, late]));
    std::fs::write(m.path("master.star"), &source).unwrap();
    let reloaded = kiln_config::load(m.dir.path()).expect("the new configuration loads");
    m.master().apply_config(reloaded).await.unwrap();
    let results = m.force_and_wait(json!({"builderNames": ["late"]})).await;
    let log = std::fs::read_to_string(worker_dir.join("twistd.log")).unwrap_or_default();
    assert_eq!(
        results,
        0,
        "worker log tail:\n{}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    assert!(
        m.worker_protocol("w1") == protocol.into(),
        "no reconnection"
    );
    let _ = child.kill().await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_stock_worker_over_pb_is_lost_and_its_build_runs_elsewhere() {
    hung_worker(Protocol::Pb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_stock_worker_over_msgpack_is_lost_and_its_build_runs_elsewhere() {
    hung_worker(Protocol::Msgpack).await;
}

/// A stock worker busy with a step longer than several keepalive intervals keeps its build;
/// frozen with SIGSTOP, it is lost once a keepalive goes unanswered, and its build ends RETRY
/// and runs again on another worker.
async fn hung_worker(protocol: Protocol) {
    let Some(exe) = buildbot_worker() else { return };
    let marker = tempfile::tempdir().unwrap();
    let body = format!(
        r#"
c['workers'] = [worker.Worker('w1', 'pass', keepalive_interval=1), worker.Worker('w2', 'pass2')]
slow = util.BuildFactory([steps.ShellCommand(name='busy', command=['sleep', '3'])])
hang = util.BuildFactory([steps.ShellCommand(name='hang', command=['sh', '-c',
    'if [ -e {m}/again ]; then echo second run; else touch {m}/again; sleep 600; fi'])])
c['builders'] = [util.BuilderConfig(name='slow', workernames=['w1'], factory=slow),
                 util.BuilderConfig(name='hang', workernames=['w1', 'w2'], factory=hang)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['slow', 'hang'])]
"#,
        m = marker.path().display()
    );
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", &body)).await;
    let worker_dir = m.path("bbworker");
    std::fs::create_dir_all(&worker_dir).unwrap();
    let mut child = start_buildbot_worker(&m, &exe, &worker_dir, protocol);
    m.wait_attached("w1").await;

    // Slow but alive: three seconds of work across three keepalives.
    let slow = m.force(json!({"builderNames": ["slow"]})).await;
    assert_eq!(
        m.wait_buildset(slow).await,
        0,
        "a busy worker keeps its build"
    );

    let hang = m.force(json!({"builderNames": ["hang"]})).await;
    let www = m.www();
    m.wait_until("steps.*.started", || {
        let www = www.clone();
        async move {
            let (_, steps) =
                crate::harness::http(&www, "GET", "/api/v2/steps?name=hang", None).await;
            steps["meta"]["total"] == 1
        }
    })
    .await;
    // The step has started on the master; the worker's shell marks when it runs there.
    let again = marker.path().join("again");
    tokio::time::timeout(crate::harness::WAIT, async {
        while !again.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the worker runs the step");
    let pid = child.id().unwrap().to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    m.wait_event("workers.*.disconnected").await;
    m.wait_until("builds.*.finished", || {
        let www = www.clone();
        async move {
            let (_, builds) =
                crate::harness::http(&www, "GET", "/api/v2/builders/hang/builds", None).await;
            builds["builds"][0]["results"] == 5
        }
    })
    .await;
    // The request runs again, on the worker that answers.
    m.start_worker("w2", "pass2").await;
    assert_eq!(m.wait_buildset(hang).await, 0);
    let (_, builds) = m.get("builders/hang/builds").await;
    assert_eq!(builds["meta"]["total"], 2, "{builds}");
    signal("-CONT");
    let _ = child.kill().await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_across_a_cut_line_is_hidden_with_kiln_s_worker() {
    secret_across_the_cut(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_across_a_cut_line_is_hidden_with_the_stock_worker_over_pb() {
    secret_across_the_cut(Some(Protocol::Pb)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_across_a_cut_line_is_hidden_with_the_stock_worker_over_msgpack() {
    secret_across_the_cut(Some(Protocol::Msgpack)).await;
}

/// Workers cut output lines at 4,096 characters. A secret printed at every offset around the
/// cut, and one printed in two writes a moment apart, never shows, whole or in pieces.
async fn secret_across_the_cut(stock: Option<Protocol>) {
    let exe = match stock {
        Some(_) => match buildbot_worker() {
            Some(exe) => Some(exe),
            None => return,
        },
        None => None,
    };
    let body = r#"
c['secretsProviders'] = [secrets.SecretInAFile('secrets')]
script = '''for n in $(seq 4070 4100); do printf "%${n}s" x; printf '%s\n' "$TOK"; done
printf "%4090s" x; printf '%s' "$TOK" | cut -c1-7 | tr -d '\n'; sleep 0.3; printf '%s\n' "$TOK" | cut -c8-'''
f = util.BuildFactory([steps.ShellCommand(name='print', command=['sh', '-c', script],
    env={'TOK': util.Secret('tok')})])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/tok"), "s3cr3t-value-42").unwrap();
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", body)).await;
    let mut child = None;
    match (stock, &exe) {
        (Some(protocol), Some(exe)) => {
            let worker_dir = m.path("bbworker");
            child = Some(start_buildbot_worker(&m, exe, &worker_dir, protocol));
            m.wait_attached("w1").await;
        }
        _ => {
            m.start_worker("w1", "pass").await;
        }
    }
    assert_eq!(m.force_and_wait(json!({})).await, 0);
    let (_, raw) = crate::harness::http_text(
        &m.www(),
        "GET",
        "/api/v2/builds/1/steps/print/logs/stdio/raw",
        None,
        &[],
    )
    .await;
    // Joined again, the pieces of a secret the cut left would make it whole.
    let joined = raw.replace('\n', "");
    assert!(!joined.contains("s3cr3t"), "{raw}");
    assert!(!joined.contains("value-42"), "{raw}");
    // 32 printed, and the environment the header lists. Buildbot's worker over PB, which cuts
    // at 4,096 characters whatever the master says, repeats the end of some cut lines.
    let hidden = joined.matches("<tok>").count();
    match stock {
        Some(Protocol::Pb) => assert!(hidden >= 33, "{hidden}: {raw}"),
        _ => assert_eq!(hidden, 33, "{raw}"),
    }
    if let Some(mut child) = child {
        let _ = child.kill().await;
    }
    m.stop().await;
}

const OVER_TLS: &str = r#"
c['workers'].append(worker.Worker('w3', 'pass3'))
tls = 'ssl:9989:privateKey=key.pem:certKey=cert.pem'
c['protocols'] = {'pb': {'port': tls}, 'msgpack_experimental_v7': {'port': tls}}
f = util.BuildFactory([steps.ShellCommand(command=['echo', 'over TLS'])])
c['builders'] = [util.BuilderConfig(name=n, workernames=[w], factory=f)
                 for n, w in [('kiln', 'w1'), ('stock-pb', 'w2'), ('stock-msgpack', 'w3')]]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['kiln', 'stock-pb', 'stock-msgpack'])]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_both_kinds_and_protocols_build_over_tls_on_an_ssl_worker_port() {
    let Some(exe) = buildbot_worker() else { return };
    let dir = tempfile::tempdir().unwrap();
    crate::harness::make_certificate(dir.path());
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", OVER_TLS)).await;
    let ca = m.path("ca.pem");

    // A worker that speaks in the clear, or does not trust the master's certificate, is refused.
    let plain = m.worker_config("w1", "pass", None);
    let refused = kiln_worker::connection::run(plain).await.unwrap_err();
    assert!(format!("{refused:#}").contains("giving up"), "{refused:#}");
    let mut untrusting = m.worker_config("w1", "pass", Some(&ca));
    untrusting.ca_file = None;
    let refused = kiln_worker::connection::run(untrusting).await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("certificate"),
        "{refused:#}"
    );
    assert!(m.master().workers.connection("w1").is_none());

    let kiln = m.worker_config("w1", "pass", Some(&ca));
    let kiln = tokio::spawn(kiln_worker::connection::run(kiln));
    let mut stock = Vec::new();
    for (name, password, protocol) in [
        ("w2", "pass2", Protocol::Pb),
        ("w3", "pass3", Protocol::Msgpack),
    ] {
        let worker_dir = m.path(&format!("stock-{name}"));
        let worker = StockWorker {
            name,
            password,
            protocol,
            ca_file: Some(&ca),
        };
        stock.push((
            name,
            protocol,
            worker_dir.clone(),
            worker.start(&m, &exe, &worker_dir),
        ));
    }
    m.wait_attached("w1").await;
    for (name, protocol, worker_dir, _) in &stock {
        m.wait_attached(name).await;
        assert_eq!(
            m.worker_protocol(name),
            (*protocol).into(),
            "{}",
            std::fs::read_to_string(worker_dir.join("twistd.log")).unwrap_or_default()
        );
    }
    let results = m.force_and_wait(json!({})).await;
    let (_, builds) = m.get("builds?field=builderid&field=results").await;
    assert_eq!(results, 0, "{builds}");
    assert_eq!(
        builds["builds"].as_array().map(Vec::len),
        Some(3),
        "{builds}"
    );
    for (_, _, _, mut child) in stock {
        let _ = child.kill().await;
    }
    kiln.abort();
    m.stop().await;
}
