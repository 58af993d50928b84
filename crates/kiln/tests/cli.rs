//! The `kiln` binary as users run it: creating, checking, starting, stopping and killing masters.

// Tests stop at the first unexpected value; unwrapping is how they say so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod soak;

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
/// Every wait gives up after this long.
const WAIT: Duration = Duration::from_secs(60);

fn kiln(args: &[&str]) -> std::process::Output {
    Command::new(KILN).args(args).output().expect("run kiln")
}

/// Runs `kiln COMMAND BASEDIR ARGS…`: whether it succeeded, and its output and errors.
fn run_on(command: &str, basedir: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec![command, basedir];
    all.extend_from_slice(args);
    let out = kiln(&all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn curl(args: &[&str]) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "30"])
        .args(args)
        .output()
        .expect("curl is installed");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// Polls the REST API until `check` holds; the master's state is the thing waited for.
fn wait_api(url: &str, check: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = curl(&[url]);
        if check(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on {url}; last answer {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the worker w1 is connected to the master on web port `www`.
fn wait_worker(www: u16) {
    wait_api(&format!("http://127.0.0.1:{www}/api/v2/workers/w1"), |v| {
        v["workers"][0]["connected_to"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
}

fn force(www: u16, builder: &str) {
    let body = format!(
        r#"{{"jsonrpc":"2.0","method":"force","params":{{"builderNames":["{builder}"]}},"id":1}}"#
    );
    let reply = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        &body,
        &format!("http://127.0.0.1:{www}/api/v2/forceschedulers/force"),
    ]);
    assert!(reply["result"].is_array(), "force failed: {reply}");
}

/// Waits until `path` exists: a build or a master made it; `never` says what did not happen.
fn wait_file(path: &Path, never: &str) {
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "{never}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_master(dir: &Path, worker_port: u16, www_port: u16, command: &str) {
    let cfg = format!(
        "BuildmasterConfig = {{}}\nc = BuildmasterConfig\n\
         c['protocols'] = {{'msgpack_experimental_v7': {{'port': {worker_port}}}}}\nc['www'] = {{'port': {www_port}}}\n\
         c['workers'] = [worker.Worker('w1', 'pass')]\n\
         f = util.BuildFactory([steps.ShellCommand(name='run', command={command:?})])\n\
         c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]\n\
         c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]\n"
    );
    std::fs::write(dir.join("master.star"), cfg).expect("write config");
}

fn start_master(dir: &Path) -> Child {
    Command::new(KILN)
        .args(["start", "--nodaemon"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start master")
}

fn start_worker(dir: &Path, port: u16) -> std::thread::JoinHandle<()> {
    let config = kiln_worker_config(dir, port);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _ = rt.block_on(kiln_worker::connection::run(config));
    })
}

fn kiln_worker_config(dir: &Path, port: u16) -> kiln_worker::config::WorkerConfig {
    let config = kiln_worker::config::WorkerConfig {
        basedir: dir.join("worker"),
        master_host: "127.0.0.1".into(),
        master_port: port,
        name: "w1".into(),
        password: "pass".into(),
        max_retries: None,
        use_tls: false,
        ca_file: None,
    };
    config.create().expect("create worker");
    config
}

#[test]
fn create_master_writes_a_sample_that_checkconfig_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = kiln(&["create-master", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kiln(&["checkconfig", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Config file is good!"));
    let again = kiln(&["create-master", dir.path().to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "an existing master.star is never overwritten"
    );
}

#[test]
fn checkconfig_reports_every_error_with_its_location_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("master.star"),
        "BuildmasterConfig = {}\nc = BuildmasterConfig\nc['workers'] = []\nc['builders'] = [util.BuilderConfig(name='b', workernames=['ghost'], factory=util.BuildFactory())]\nc['titel'] = 'x'\n",
    )
    .unwrap();
    let out = kiln(&["checkconfig", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("master.star:4:") && err.contains("uses unknown worker 'ghost'"),
        "{err}"
    );
    assert!(
        err.contains("master.star:5:2: error: unknown configuration key c['titel']"),
        "{err}"
    );
    assert!(err.contains("2 error(s)"), "{err}");
}

#[test]
fn a_master_killed_mid_build_loses_no_request_and_stop_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www) = (free_port(), free_port());
    let marker = dir.path().join("first-run-started");
    let command = format!(
        "if [ -f {0} ]; then echo second run; else touch {0}; sleep 600; fi",
        marker.display()
    );
    write_master(dir.path(), worker_port, www, &command);
    let mut master = start_master(dir.path());
    let _worker = start_worker(dir.path(), worker_port);
    wait_worker(www);
    force(www, "b1");
    wait_file(&marker, "the first build never started");
    // A crash: no chance to clean up.
    master.kill().expect("kill");
    master.wait().expect("reap");

    let log = dir.path().join("second.log");
    let mut master = Command::new(KILN)
        .args(["start", "--nodaemon"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start master");
    let builds = wait_api(
        &format!("http://127.0.0.1:{www}/api/v2/builds?order=buildid"),
        |v| {
            v["builds"]
                .as_array()
                .is_some_and(|b| b.len() == 2 && b[1]["complete"] == true)
        },
    );
    assert_eq!(
        builds["builds"][0]["results"], 5,
        "the interrupted build is RETRY: {builds}"
    );
    assert_eq!(builds["builds"][1]["results"], 0);
    assert_eq!(
        builds["builds"][0]["buildrequestid"],
        builds["builds"][1]["buildrequestid"]
    );
    // The step the crash interrupted is finished too, and says how it ended.
    let steps = curl(&[&format!(
        "http://127.0.0.1:{www}/api/v2/builds/{}/steps",
        builds["builds"][0]["buildid"]
    )]);
    let last = steps["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["complete"], true, "{steps}");
    assert_eq!(last["results"], 5, "{steps}");
    assert_eq!(
        last["state_string"],
        format!("{} (retry)", last["name"].as_str().unwrap()),
        "{steps}"
    );

    let out = kiln(&["stop", dir.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = master.wait().expect("master exits");
    assert!(status.success(), "a stopped master exits cleanly: {status}");
    assert!(!dir.path().join("kiln.pid").exists());
    // The log says what happened, without colours in a file, and with its worker still
    // attached the stop logs no error.
    let log = std::fs::read_to_string(&log).unwrap();
    for said in [
        "worker attached",
        "build started",
        "build finished",
        "result=\"success\"",
        "worker disconnected",
    ] {
        assert!(log.contains(said), "{said}: {log}");
    }
    assert!(!log.contains('\x1b'), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

/// An HTTP receiver on `port` that answers 200 and keeps each request body it gets.
fn http_receiver(port: u16) -> std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> {
    use std::io::{Read, Write};
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("receiver port");
    let kept = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                kept.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or_default());
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    bodies
}

#[test]
fn reports_pending_when_the_master_is_killed_are_sent_once_after_it_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www, receiver_port) = (free_port(), free_port(), free_port());
    write_master(dir.path(), worker_port, www, "echo fine");
    let config = dir.path().join("master.star");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "c['services'] = [reporters.HttpStatusPush(name='push', \
         serverUrl='http://127.0.0.1:{receiver_port}/status', retryDelay=1, maxRetryDelay=1)]\n"
    ));
    std::fs::write(&config, text).unwrap();
    let mut master = start_master(dir.path());
    let _worker = start_worker(dir.path(), worker_port);
    wait_worker(www);
    for _ in 0..3 {
        force(www, "b1");
    }
    // The receiver is down: each build's start and end are decided, stored and tried.
    let reporter = format!("http://127.0.0.1:{www}/api/v2/reporters/push");
    wait_api(&reporter, |v| {
        v["reporters"][0]["pending"] == 6 && v["reporters"][0]["last_error"].is_string()
    });
    // A crash: no chance to clean up.
    master.kill().expect("kill");
    master.wait().expect("reap");

    let bodies = http_receiver(receiver_port);
    let mut master = start_master(dir.path());
    wait_api(&reporter, |v| {
        v["reporters"][0]["pending"] == 0 && v["reporters"][0]["sent"] == 6
    });
    master.kill().unwrap();
    master.wait().unwrap();
    let mut seen: Vec<(i64, bool)> = bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| (b["buildid"].as_i64().unwrap_or(0), b["complete"] == true))
        .collect();
    seen.sort();
    let want: Vec<(i64, bool)> = (1..=3).flat_map(|b| [(b, false), (b, true)]).collect();
    assert_eq!(seen, want, "each report once, none lost");
}

#[test]
fn stop_clean_waits_for_the_running_build_and_starts_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www) = (free_port(), free_port());
    let (started, go) = (dir.path().join("started"), dir.path().join("go"));
    // The build runs until the test lets it finish.
    let command = format!(
        "touch {0}; while [ ! -f {1} ]; do sleep 0.05; done; echo finished",
        started.display(),
        go.display()
    );
    write_master(dir.path(), worker_port, www, &command);
    let mut master = start_master(dir.path());
    let _worker = start_worker(dir.path(), worker_port);
    wait_worker(www);
    force(www, "b1");
    wait_file(&started, "the build never started");
    let mut stopper = Command::new(KILN)
        .args(["stop", "--clean", dir.path().to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    let mut told = BufReader::new(stopper.stderr.take().unwrap());
    told.read_line(&mut said).unwrap();
    assert!(said.contains("waiting for the running builds"), "{said}");
    // A request made now waits; the master keeps running while the build does.
    force(www, "b1");
    assert!(
        master.try_wait().unwrap().is_none(),
        "the master stopped too early"
    );

    std::fs::write(&go, "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut told, &mut rest).unwrap();
    assert!(stopper.wait().unwrap().success(), "{said}{rest}");
    assert!(rest.contains("master stopped"), "{rest}");
    assert!(
        master.wait().unwrap().success(),
        "a clean stop exits cleanly"
    );

    // After a restart: the build that ran finished as it would have, and the request made
    // during the shutdown is still to be built (its build waits for the test again).
    std::fs::remove_file(&go).unwrap();
    let mut master = start_master(dir.path());
    let builds = wait_api(
        &format!("http://127.0.0.1:{www}/api/v2/builds?order=buildid"),
        |v| v["builds"].as_array().is_some_and(|b| !b.is_empty()),
    );
    assert_eq!(builds["builds"][0]["results"], 0, "{builds}");
    assert_eq!(builds["builds"][0]["complete"], true, "{builds}");
    let waiting = wait_api(
        &format!("http://127.0.0.1:{www}/api/v2/buildrequests?order=buildrequestid"),
        |v| v["buildrequests"].as_array().is_some_and(|r| r.len() == 2),
    );
    assert_eq!(waiting["buildrequests"][0]["complete"], true, "{waiting}");
    assert_eq!(waiting["buildrequests"][1]["complete"], false, "{waiting}");
    master.kill().unwrap();
    master.wait().unwrap();
}

#[test]
fn start_refuses_a_running_master_and_restart_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www) = (free_port(), free_port());
    write_master(dir.path(), worker_port, www, "true");
    let mut first = start_master(dir.path());
    let pid_file = dir.path().join("kiln.pid");
    wait_file(&pid_file, "the master never wrote its pid");
    let (ok, _, err) = run_on("start", dir.path().to_str().unwrap(), &[]);
    assert!(!ok);
    assert!(
        err.contains(&format!("already running (process {})", first.id())),
        "{err}"
    );

    let mut second = Command::new(KILN)
        .args(["restart", "--nodaemon", dir.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        first.wait().unwrap().success(),
        "the first master stops cleanly"
    );
    // The new master writes its own pid and serves.
    let deadline = Instant::now() + WAIT;
    while std::fs::read_to_string(&pid_file).map_or(true, |p| p.trim() != second.id().to_string()) {
        assert!(
            Instant::now() < deadline,
            "the restarted master never wrote its pid"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_api(&format!("http://127.0.0.1:{www}/api/v2/builders"), |v| {
        v["builders"][0]["name"] == "b1"
    });
    let (ok, _, err) = run_on("stop", dir.path().to_str().unwrap(), &[]);
    assert!(ok, "{err}");
    assert!(second.wait().unwrap().success());
}

#[test]
fn quickstart_runs_a_sample_build_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("qs");
    let (worker_port, www) = (free_port(), free_port());
    let mut child = Command::new(KILN)
        .args([
            "quickstart",
            base.to_str().unwrap(),
            "--www-port",
            &www.to_string(),
            "--worker-port",
            &worker_port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("quickstart");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("quickstart reports its sample build");
    assert_eq!(first, "sample build finished: success");
    let builders = curl(&[&format!("http://127.0.0.1:{www}/api/v2/builders")]);
    assert_eq!(builders["builders"][0]["name"], "runtests");
    assert!(
        base.join("uploads/note.txt").exists(),
        "the sample build uploaded a file"
    );
    nix_kill(&child);
    let status = child.wait().expect("exit");
    assert!(status.success(), "{status}");
}

fn nix_kill(child: &Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
}

#[test]
fn sighup_reloads_a_good_configuration_and_keeps_the_old_one_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www) = (free_port(), free_port());
    write_master(dir.path(), worker_port, www, "true");
    let mut master = Command::new(KILN)
        .args(["start", "--nodaemon"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start master");
    let rx = stderr_lines(&mut master);
    let builders_url = format!("http://127.0.0.1:{www}/api/v2/builders?field=name");
    wait_api(&builders_url, |v| {
        v["builders"] == serde_json::json!([{"name": "b1"}])
    });
    let hup = || {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(master.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    };
    let wait_log = |needle: &str| wait_line(&rx, needle);

    // A broken configuration is reported, with its location, and the running one kept.
    let good = std::fs::read_to_string(dir.path().join("master.star")).unwrap();
    std::fs::write(
        dir.path().join("master.star"),
        format!("{good}c['frobnicate'] = 1\n"),
    )
    .unwrap();
    hup();
    wait_log("keeping the running one");
    wait_log("unknown configuration key c['frobnicate']");
    let v = curl(&[&builders_url]);
    assert_eq!(v["builders"], serde_json::json!([{"name": "b1"}]));

    // A good one that adds a builder is applied.
    let added = good.replace(
        "c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]",
        "c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f), util.BuilderConfig(name='b2', workernames=['w1'], factory=f)]",
    );
    assert_ne!(added, good);
    std::fs::write(dir.path().join("master.star"), added).unwrap();
    hup();
    wait_log("configuration reloaded");
    wait_api(&builders_url, |v| {
        v["builders"] == serde_json::json!([{"name": "b1"}, {"name": "b2"}])
    });
    nix_kill(&master);
    assert!(master.wait().expect("exit").success());
}

#[test]
fn sendchange_delivers_every_field_through_the_base_hook() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www) = (free_port(), free_port());
    write_master(dir.path(), worker_port, www, "true");
    let cfg = std::fs::read_to_string(dir.path().join("master.star")).unwrap();
    std::fs::write(
        dir.path().join("master.star"),
        format!("{cfg}c['www']['change_hook_dialects'] = {{'base': True}}\n"),
    )
    .unwrap();
    let mut master = start_master(dir.path());
    wait_api(&format!("http://127.0.0.1:{www}/api/v2/builders"), |v| {
        v["builders"].is_array()
    });
    std::fs::write(
        dir.path().join("comments.txt"),
        "Long comments\nfrom a file\n",
    )
    .unwrap();
    let url = format!("http://127.0.0.1:{www}/");
    let comments = dir.path().join("comments.txt");
    let out = kiln(&[
        "sendchange",
        "--master",
        &url,
        "--who",
        "Alice <alice@example.org>",
        "--repository",
        "https://example.org/r.git",
        "--project",
        "kiln",
        "--branch",
        "main",
        "--category",
        "feature",
        "--codebase",
        "core",
        "--revision",
        "r42",
        "--property",
        "ticket:7",
        "--logfile",
        comments.to_str().unwrap(),
        "--when",
        "1700000000",
        "--revlink",
        "https://example.org/r/r42",
        "src/a.rs",
        "docs/b.md",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "change sent successfully: change 1");
    let c = &curl(&[&format!("http://127.0.0.1:{www}/api/v2/changes/1")])["changes"][0];
    assert_eq!(c["author"], "Alice <alice@example.org>");
    assert_eq!(c["comments"], "Long comments\nfrom a file\n");
    assert_eq!(c["files"], serde_json::json!(["src/a.rs", "docs/b.md"]));
    assert_eq!(
        c["properties"]["ticket"],
        serde_json::json!(["7", "Change"])
    );
    assert_eq!(
        (
            c["branch"].as_str(),
            c["revision"].as_str(),
            c["category"].as_str()
        ),
        (Some("main"), Some("r42"), Some("feature"))
    );
    assert_eq!(
        (
            c["project"].as_str(),
            c["codebase"].as_str(),
            c["when_timestamp"].as_i64()
        ),
        (Some("kiln"), Some("core"), Some(1_700_000_000))
    );
    assert_eq!(c["revlink"], "https://example.org/r/r42");
    // The master's log says it received the change, at INFO.
    let log = dir.path().join("kiln.log");
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("change received")) {
            assert!(line.contains("INFO") && line.contains("r42"), "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the master never logged the change:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A refused change is an error with the master's reason.
    let out = kiln(&["sendchange", "--master", &url, "--who", "", "x"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no author"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nix_kill(&master);
    assert!(master.wait().expect("exit").success());
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@x")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@x")
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn try_sends_the_working_copy_diff_and_waits_for_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www) = (free_port(), free_port());
    write_master(dir.path(), worker_port, www, "true");
    let cfg = std::fs::read_to_string(dir.path().join("master.star")).unwrap();
    std::fs::write(
        dir.path().join("master.star"),
        format!(
            "{cfg}f2 = util.BuildFactory([steps.ShellCommand(command=['sh', '-c', 'exit 1'])])\n\
             c['builders'].append(util.BuilderConfig(name='b2', workernames=['w1'], factory=f2))\n\
             c['schedulers'].append(schedulers.Try_Userpass(name='try', builderNames=['b1', 'b2'], port=8031,\n\
                 userpass=[('alice', 'pw')]))\n"
        ),
    )
    .unwrap();
    let mut master = start_master(dir.path());
    wait_api(&format!("http://127.0.0.1:{www}/api/v2/builders"), |v| {
        v["builders"].is_array()
    });
    let _worker = start_worker(dir.path(), worker_port);
    // A working copy with an uncommitted change.
    let wc = dir.path().join("wc");
    std::fs::create_dir(&wc).unwrap();
    git(&wc, &["init", "-q", "-b", "main"]);
    std::fs::write(wc.join("a.txt"), "one\n").unwrap();
    git(&wc, &["add", "a.txt"]);
    git(&wc, &["commit", "-q", "-m", "base"]);
    std::fs::write(wc.join("a.txt"), "two\n").unwrap();
    let url = format!("http://127.0.0.1:{www}/");
    let wc_arg = wc.display().to_string();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "try", "--master", &url, "-u", "alice", "--passwd", "pw", "--topdir", &wc_arg,
        ];
        args.extend_from_slice(extra);
        kiln(&args)
    };
    let out = run(&[
        "-b",
        "b1",
        "--property",
        "ticket=7",
        "--comment",
        "please",
        "--wait",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("try job submitted: buildset 1"), "{stdout}");
    assert!(stdout.contains("b1 #1: started"), "{stdout}");
    assert!(stdout.contains("b1 #1: success"), "{stdout}");
    assert!(stdout.contains("buildset 1: success"), "{stdout}");
    let ss = &curl(&[&format!("http://127.0.0.1:{www}/api/v2/buildsets/1")])["buildsets"][0];
    assert_eq!(ss["reason"], "'try' job by user alice (please)");
    let stamp = &ss["sourcestamps"][0];
    assert_eq!(stamp["branch"], "main");
    assert_eq!(stamp["patch"]["level"], 1);
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD
        .decode(stamp["patch"]["body"].as_str().unwrap())
        .unwrap();
    let body = String::from_utf8(body).unwrap();
    assert!(
        body.contains("-one\n+two\n") && body.contains("a/a.txt"),
        "{body}"
    );
    let b = &curl(&[&format!(
        "http://127.0.0.1:{www}/api/v2/builds/1?property=*"
    )])["builds"][0];
    assert_eq!(
        b["properties"]["ticket"],
        serde_json::json!(["7", "try build"])
    );
    assert_eq!(
        b["properties"]["owner"],
        serde_json::json!(["alice", "try build"])
    );

    // A failing build makes `--wait` fail; a wrong password and an unknown builder are refused.
    let out = run(&["-b", "b2", "--wait"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("b2 #1: failure"));
    let out = kiln(&[
        "try", "--master", &url, "-u", "alice", "--passwd", "no", "--topdir", &wc_arg,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["-b", "b9"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not build b9"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nix_kill(&master);
    assert!(master.wait().expect("exit").success());
}

#[test]
fn try_takes_its_diff_from_mercurial_subversion_or_a_patch_file() {
    let dir = tempfile::tempdir().unwrap();
    let sh = |cwd: &Path, program: &str, args: &[&str]| {
        let out = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env("HGUSER", "T <t@x>")
            .env("HGPLAIN", "1")
            .output()
            .unwrap_or_else(|e| panic!("{program} is needed: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let dry = |topdir: &Path, extra: &[&str]| -> serde_json::Value {
        let top = topdir.display().to_string();
        let mut args = vec![
            "try",
            "--master",
            "http://127.0.0.1:1/",
            "-u",
            "u",
            "--passwd",
            "p",
            "--topdir",
            &top,
            "--dryrun",
        ];
        args.extend_from_slice(extra);
        let out = kiln(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the job as JSON")
    };
    // Mercurial.
    let hg = dir.path().join("hg");
    std::fs::create_dir(&hg).unwrap();
    sh(&hg, "hg", &["init", "."]);
    std::fs::write(hg.join("a.txt"), "one\n").unwrap();
    sh(&hg, "hg", &["commit", "-q", "-A", "-m", "base"]);
    std::fs::write(hg.join("a.txt"), "two\n").unwrap();
    let job = dry(&hg, &[]);
    assert!(
        job["patch_body"].as_str().unwrap().contains("+two"),
        "{job}"
    );
    assert_eq!(job["branch"], "default");
    assert_eq!(job["revision"].as_str().unwrap().len(), 40);
    assert_eq!(job["patch_level"], 1);
    // Subversion.
    sh(dir.path(), "svnadmin", &["create", "repo"]);
    let url = format!("file://{}/repo", dir.path().display());
    sh(dir.path(), "svn", &["checkout", "-q", &url, "svnwc"]);
    let wc = dir.path().join("svnwc");
    std::fs::write(wc.join("a.txt"), "one\n").unwrap();
    sh(&wc, "svn", &["add", "-q", "a.txt"]);
    sh(&wc, "svn", &["commit", "-q", "-m", "base"]);
    sh(&wc, "svn", &["update", "-q"]);
    std::fs::write(wc.join("a.txt"), "two\n").unwrap();
    let job = dry(&wc, &[]);
    assert!(
        job["patch_body"].as_str().unwrap().contains("+two"),
        "{job}"
    );
    assert_eq!(job["revision"], "1");
    assert_eq!(job["patch_level"], 0);
    // A patch file, with its level given.
    std::fs::write(dir.path().join("fix.diff"), "--- a/x\n+++ b/x\n").unwrap();
    let patch = dir.path().join("fix.diff").display().to_string();
    let job = dry(
        dir.path(),
        &[
            "--diff",
            &patch,
            "-p",
            "1",
            "--branch",
            "dev",
            "--baserev",
            "abc",
        ],
    );
    assert_eq!(job["patch_body"], "--- a/x\n+++ b/x\n");
    assert_eq!(
        (&job["branch"], &job["revision"], &job["patch_level"]),
        (
            &serde_json::json!("dev"),
            &serde_json::json!("abc"),
            &serde_json::json!(1)
        )
    );
}

#[test]
fn user_adds_updates_shows_and_removes_users_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("m");
    let base_s = base.to_str().unwrap();
    assert!(kiln(&["create-master", base_s]).status.success());
    let run = |args: &[&str]| run_on("user", base_s, args);
    let (ok, out, err) = run(&[
        "add",
        "--info",
        "git=Alice <alice@example.com>",
        "--info",
        "email=alice@example.com",
        "--username",
        "alice",
        "--password",
        "pw",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "user added: uid 1\n");
    let (ok, out, _) = run(&["show", "alice"]);
    assert!(ok);
    assert_eq!(
        out,
        "uid: 1\nidentifier: Alice <alice@example.com>\nusername: alice\npassword: set\n\
         email: alice@example.com\ngit: Alice <alice@example.com>\n"
    );
    // Found by an attribute's value too; an empty value removes the attribute.
    let (ok, _, err) = run(&[
        "update",
        "alice@example.com",
        "--info",
        "irc=alice_",
        "--info",
        "email=",
    ]);
    assert!(ok, "{err}");
    let (_, out, _) = run(&["show", "1"]);
    assert!(
        out.contains("irc: alice_\n") && !out.contains("email:"),
        "{out}"
    );
    // Mistakes are named and change nothing.
    let (ok, _, err) = run(&["add", "--info", "noequals"]);
    assert!(!ok && err.contains("expected TYPE=VALUE"), "{err}");
    let (ok, _, err) = run(&["add", "--identifier", "Alice <alice@example.com>"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(&["update", "nobody", "--info", "irc=x"]);
    assert!(!ok && err.contains("no user \"nobody\""), "{err}");
    let (ok, out, _) = run(&["remove", "alice"]);
    assert!(ok && out.contains("uid 1"), "{out}");
    let (ok, _, err) = run(&["show", "alice"]);
    assert!(!ok && err.contains("no user"), "{err}");
}

#[test]
fn token_creates_lists_and_revokes_tokens_a_running_master_checks() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www) = (free_port(), free_port());
    write_master(dir.path(), worker_port, www, "true");
    let base = dir.path().to_str().unwrap();
    let run = |args: &[&str]| run_on("token", base, args);
    let (ok, out, err) = run(&[
        "create", "--user", "alice", "--role", "deploy", "--name", "ci",
    ]);
    assert!(ok, "{err}");
    assert!(out.starts_with("token 1 for alice (expires: "), "{out}");
    let token = out.lines().last().unwrap().to_string();
    assert!(token.starts_with("kiln_") && token.len() == 69, "{token}");
    let (ok, out, _) = run(&["list"]);
    assert!(ok);
    assert!(
        out.starts_with("1\tci\tuser=alice roles=deploy\tcreated "),
        "{out}"
    );
    assert!(!out.contains(&token), "a list never shows a token: {out}");

    // The running master takes the token, until it is revoked.
    let mut master = start_master(dir.path());
    let url = format!("http://127.0.0.1:{www}/api/v2/builders");
    let bearer = format!("Authorization: Bearer {token}");
    let status = |url: &str| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "30",
                "-H",
                &bearer,
                url,
            ])
            .output()
            .expect("curl is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_api(&url, |v| v["builders"].is_array());
    assert_eq!(status(&url), "200");
    let (ok, out, _) = run(&["revoke", "1"]);
    assert!(ok && out == "token 1 revoked\n", "{out}");
    assert_eq!(status(&url), "401");
    let (_, out, _) = run(&["list"]);
    assert!(out.contains("\trevoked"), "{out}");

    // Mistakes are named.
    let (ok, _, err) = run(&["revoke", "1"]);
    assert!(!ok && err.contains("no token 1"), "{err}");
    let (ok, _, err) = run(&["create", "--user", "alice", "--expires-in", "3w"]);
    assert!(!ok && err.contains("--expires-in \"3w\""), "{err}");
    master.kill().unwrap();
    master.wait().unwrap();
}

#[test]
fn status_prints_each_builders_last_build_and_what_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www) = (free_port(), free_port());
    write_master(dir.path(), worker_port, www, "true");
    let mut master = start_master(dir.path());
    let _worker = start_worker(dir.path(), worker_port);
    let url = format!("http://127.0.0.1:{www}/");
    wait_worker(www);
    let status = || {
        let out = kiln(&["status", "--master", &url]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = status();
    assert!(
        before.contains("b1") && before.contains("0 running, 0 waiting"),
        "{before}"
    );
    force(www, "b1");
    wait_api(&format!("{url}api/v2/builds"), |v| {
        v["builds"][0]["complete"] == true
    });
    let after = status();
    let line = after.lines().find(|l| l.starts_with("b1")).unwrap();
    assert!(line.contains("#1") && line.contains("success"), "{after}");
    // A master that is not there is named.
    let out = kiln(&[
        "status",
        "--master",
        &format!("http://127.0.0.1:{}/", free_port()),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("talking to the master"));
    master.kill().unwrap();
    master.wait().unwrap();
}

#[test]
fn watch_follows_a_build_to_its_end_and_exits_with_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www) = (free_port(), free_port());
    let go = dir.path().join("go");
    // The build prints a line, waits until the test lets it go, prints another, and fails.
    let command = format!(
        "echo first line; while [ ! -e {0} ]; do sleep 0.05; done; echo second line; exit 3",
        go.display()
    );
    write_master(dir.path(), worker_port, www, &command);
    let mut master = start_master(dir.path());
    let _worker = start_worker(dir.path(), worker_port);
    let url = format!("http://127.0.0.1:{www}/");
    wait_worker(www);
    // Watching every build: it prints the build's start, and its end.
    let mut all = Command::new(KILN)
        .args(["watch", "--master", &url, "--builder", "b1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let all_lines = lines_of(&mut all);
    // The build is forced once the watcher listens, or it could start unseen.
    let mut listening = String::new();
    BufReader::new(all.stderr.take().unwrap())
        .read_line(&mut listening)
        .unwrap();
    assert_eq!(listening.trim(), "watching the builds of b1");
    force(www, "b1");
    let started = all_lines.recv_timeout(WAIT).expect("a line in time");
    assert!(started.starts_with("b1 #1 started"), "{started}");
    wait_api(&format!("{url}api/v2/builds/1/steps"), |v| {
        v["steps"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["started_at"].is_number() && s["name"] == "run")
        })
    });
    // Following the running build: its log so far, then what comes, then its end.
    let mut one = Command::new(KILN)
        .args(["watch", "--master", &url, "--build", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let one_lines = lines_of(&mut one);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains("first line")) {
        seen.push(one_lines.recv_timeout(WAIT).expect("a line in time"));
    }
    std::fs::write(&go, "").unwrap();
    loop {
        let line = one_lines.recv_timeout(WAIT).expect("a line in time");
        let end = line.starts_with("finished:");
        seen.push(line);
        if end {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(text.starts_with("b1 #1 (build 1)"), "{text}");
    assert!(text.contains("second line"), "{text}");
    assert!(text.contains("finished: failure"), "{text}");
    let status = one.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(2),
        "the exit status is the result, failure: {text}"
    );
    let finished = all_lines.recv_timeout(WAIT).expect("a line in time");
    assert!(finished.starts_with("b1 #1 failure"), "{finished}");
    all.kill().unwrap();
    all.wait().unwrap();
    master.kill().unwrap();
    master.wait().unwrap();
}

/// The lines a child prints, as they come, read by a thread of their own so that a wait for one
/// can give up.
fn lines_of(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    read_lines(child.stdout.take().expect("piped stdout"))
}

/// The lines a child logs on stderr, as [`lines_of`].
fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    read_lines(child.stderr.take().expect("piped stderr"))
}

/// The first line from `lines` that contains `needle`, within the suite's wait.
fn wait_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("never printed {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn read_lines(out: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Each protocol has its port here; a worker that speaks the other one on a port is named in the
/// log with what to change, and the port goes on serving.
#[test]
fn a_client_speaking_the_wrong_protocol_on_a_worker_port_is_told_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (msgpack_port, pb_port, www) = (free_port(), free_port(), free_port());
    write_master(dir.path(), msgpack_port, www, "true");
    let cfg = std::fs::read_to_string(dir.path().join("master.star")).unwrap();
    let cfg = cfg.replace(
        "c['protocols'] = {",
        &format!("c['protocols'] = {{'pb': {{'port': {pb_port}}}, "),
    );
    std::fs::write(dir.path().join("master.star"), cfg).unwrap();
    let mut master = Command::new(KILN)
        .args(["start", "--nodaemon"])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start master");
    let rx = stderr_lines(&mut master);
    let wait_log = |needle: &str| wait_line(&rx, needle);
    wait_log("master started");
    // A PB worker waits for the master to speak first.
    let silent = std::net::TcpStream::connect(("127.0.0.1", msgpack_port)).unwrap();
    let line = wait_log("waiting for the master to speak first, as a PB worker does");
    assert!(
        line.contains(&format!(
            "add 'pb': {{'port': {msgpack_port}}} to c['protocols']"
        )),
        "{line}"
    );
    drop(silent);
    // A msgpack worker opens a WebSocket.
    let mut http = std::net::TcpStream::connect(("127.0.0.1", pb_port)).unwrap();
    std::io::Write::write_all(&mut http, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let line = wait_log("a client spoke HTTP");
    assert!(
        line.contains(&format!("on worker port {pb_port}, which serves pb"))
            && line.contains(&format!("'msgpack_experimental_v7': {{'port': {pb_port}}}")),
        "{line}"
    );
    // Both ports still serve their own workers.
    let worker = start_worker(dir.path(), msgpack_port);
    wait_worker(www);
    nix_kill(&master);
    master.wait().unwrap();
    drop(worker);
}

/// The `kiln-worker` program built beside `kiln`.
fn kiln_worker_program() -> std::path::PathBuf {
    let path = Path::new(KILN).with_file_name("kiln-worker");
    assert!(
        path.exists(),
        "{} is missing: build the workspace's binaries first",
        path.display()
    );
    path
}

/// The operations a Buildbot admin knows: `start` detaches and reports once the master serves,
/// `reconfig` prints what a reconfiguration changed or why it failed, `upgrade-master` and
/// `cleanupdb` look after the database, and the worker starts in the background and stops.
#[test]
fn start_detaches_and_reconfig_upgrade_cleanupdb_and_the_worker_do_what_buildbot_s_do() {
    let dir = tempfile::tempdir().unwrap();
    let (worker_port, www) = (free_port(), free_port());
    write_master(dir.path(), worker_port, www, "true");
    let base = dir.path().to_str().unwrap();
    let (ok, _, err) = run_on("start", base, &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("The kiln master appears to have started correctly."),
        "{err}"
    );
    let log = std::fs::read_to_string(dir.path().join("kiln.log")).unwrap();
    assert!(log.contains("master started"), "{log}");
    wait_api(&format!("http://127.0.0.1:{www}/api/v2/builders"), |v| {
        v["builders"][0]["name"] == "b1"
    });

    // A reconfiguration that adds a builder says so; one with an error says where it is.
    let good = std::fs::read_to_string(dir.path().join("master.star")).unwrap();
    let added = good.replace(
        "c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]",
        "c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f), \
         util.BuilderConfig(name='b2', workernames=['w1'], factory=f)]",
    );
    std::fs::write(dir.path().join("master.star"), &added).unwrap();
    let (ok, _, err) = run_on("reconfig", base, &[]);
    assert!(ok, "{err}");
    assert!(
        err.contains("builders added: b2; no builder removed; no builder changed"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("master.star"),
        format!("{added}c['nope'] = 1\n"),
    )
    .unwrap();
    let (ok, _, err) = run_on("reconfig", base, &[]);
    assert!(!ok);
    assert!(
        err.contains("master.star:9:2: error: unknown configuration key c['nope']")
            && err.contains("Reconfiguration failed"),
        "{err}"
    );
    std::fs::write(dir.path().join("master.star"), &added).unwrap();

    // A worker in the background connects, and stops when told.
    let worker_dir = dir.path().join("worker");
    let worker = kiln_worker_program();
    let created = Command::new(&worker)
        .args(["create-worker"])
        .arg(&worker_dir)
        .args([
            format!("127.0.0.1:{worker_port}"),
            "w1".into(),
            "pass".into(),
        ])
        .output()
        .unwrap();
    assert!(created.status.success());
    let started = Command::new(&worker)
        .arg("start")
        .arg(&worker_dir)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&started.stderr);
    assert!(started.status.success(), "{said}");
    assert!(
        said.contains("appears to have started and connected"),
        "{said}"
    );
    wait_worker(www);
    let stopped = Command::new(&worker)
        .arg("stop")
        .arg(&worker_dir)
        .output()
        .unwrap();
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert!(!worker_dir.join("kiln-worker.pid").exists());

    let (ok, _, err) = run_on("stop", base, &[]);
    assert!(ok, "{err}");
    let (ok, _, err) = run_on("upgrade-master", base, &[]);
    assert!(ok && err.contains("upgrade complete"), "{err}");
    let (ok, _, err) = run_on("cleanupdb", base, &[]);
    assert!(ok && err.contains("is compacted"), "{err}");
}
