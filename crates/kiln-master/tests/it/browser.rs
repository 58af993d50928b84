//! kiln's pages in a real browser: headless Chromium, driven by Playwright from
//! `tests/browser/pages.mjs`, against a master and worker started here.

use std::path::PathBuf;
use std::process::Stdio;

use crate::harness::{TestMaster, WAIT, config};

/// The directory holding `node_modules/playwright-core`, and the browser to drive.
const MODULES_VAR: &str = "KILN_TEST_NODE_MODULES";
const CHROMIUM_VAR: &str = "KILN_TEST_CHROMIUM";

fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    match (
        std::env::var_os(MODULES_VAR),
        std::env::var_os(CHROMIUM_VAR),
    ) {
        (Some(modules), Some(chromium)) => Some((modules.into(), chromium.into())),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{MODULES_VAR} and {CHROMIUM_VAR} must be set when CI is set"
            );
            eprintln!(
                "warning: {MODULES_VAR} or {CHROMIUM_VAR} is not set; the browser test does not run"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_work_in_a_browser() {
    let Some((modules, chromium)) = browser_tools() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    // The slow step waits for the browser script to create `go`, so that it sees the step
    // running and its log growing, without a sleep on either side.
    let cfg = format!(
        r#"
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(name='slow', command=['sh', '-c',
        'echo waiting for go; while [ ! -e {go} ]; do sleep 0.05; done; echo went'])]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
"#,
        go = go.display()
    );
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", &cfg)).await;
    m.start_worker("w1", "pass").await;
    run_script(&m, "pages.mjs", &modules, &chromium, &[("KILN_GO", &go)]).await;
}

/// Where `buildbot-www` and its plugins were installed (`pip install --target`).
const BUILDBOT_WWW_VAR: &str = "KILN_TEST_BUILDBOT_WWW";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buildbot_www_works_on_kiln() {
    let Some((modules, chromium)) = browser_tools() else {
        return;
    };
    let Some(www_dir) = std::env::var_os(BUILDBOT_WWW_VAR) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{BUILDBOT_WWW_VAR} must be set when CI is set"
        );
        eprintln!("warning: {BUILDBOT_WWW_VAR} is not set; the buildbot-www test does not run");
        return;
    };
    let cfg = format!(
        r#"
c['www'] = {{'change_hook_dialects': {{'base': True}}, 'buildbot_www': {www:?},
    'plugins': {{'waterfall_view': {{}}, 'console_view': {{}}, 'grid_view': {{}}}}}}
c['builders'] = [util.BuilderConfig(name='runtests', workernames=['w1'], tags=['sample'],
    factory=util.BuildFactory([steps.ShellCommand(name='hello', command=['echo', 'hello from', util.Property('workername')])]))]
c['schedulers'] = [
    schedulers.AnyBranchScheduler(name='all', builderNames=['runtests'], treeStableTimer=None),
    schedulers.ForceScheduler(name='force', buttonName='Go', label='Force it', builderNames=['runtests'],
        properties=[util.StringParameter(name='greeting', label='Greeting', required=True)]),
]
"#,
        www = www_dir.to_string_lossy()
    );
    // The master's clock moves only when told, so that the two builds below are a minute apart
    // and the waterfall plugin has a period to scale its axis to, without waiting a minute.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let clock = kiln_master::clock::ManualClock::new(now - 120);
    let master_clock = clock.clone();
    let dir = tempfile::tempdir().unwrap();
    let source = config("sqlite:///state.sqlite", &cfg);
    let mut m = TestMaster::start_with(dir, &source, move |o| o.clock = master_clock).await;
    m.start_worker("w1", "pass").await;
    let form = "author=Alice+%3Calice%40x%3E&comments=first+change&revision=r1&branch=main&repository=repo";
    let (status, reply) =
        crate::harness::http(&m.www(), "POST", "/change_hook/base", Some(form)).await;
    assert_eq!(status, 200, "{reply}");
    m.wait_event("buildsets.*.complete").await;
    clock.advance(60);
    let form =
        "author=Bob+%3Cbob%40x%3E&comments=second+change&revision=r2&branch=main&repository=repo";
    let (status, reply) =
        crate::harness::http(&m.www(), "POST", "/change_hook/base", Some(form)).await;
    assert_eq!(status, 200, "{reply}");
    m.wait_event("buildsets.*.complete").await;
    run_script(&m, "buildbot_www.mjs", &modules, &chromium, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_change_what_a_browser_can_do() {
    let Some((modules, chromium)) = browser_tools() else {
        return;
    };
    let front = std::env::var_os(BUILDBOT_WWW_VAR);
    let provider = crate::auth::oauth_provider().await;
    let logins = [
        (
            "form",
            "util.UserPasswordAuth({'alice': 'pw1', 'bob': 'pw2'})".to_string(),
        ),
        (
            "oauth2",
            format!(
                "util.GenericOAuth2Auth('kiln-client', 's3cret', name='Corp SSO', discoveryUri='{provider}/.well-known/openid-configuration')"
            ),
        ),
        (
            "proxy",
            "util.RemoteUserAuth(header='X-Remote-User', headerRegex='(?P<username>.+)')"
                .to_string(),
        ),
    ];
    for (mode, auth) in logins {
        let front_config = match (&front, mode) {
            (Some(dir), "form") => format!(", 'buildbot_www': {:?}", dir.to_string_lossy()),
            _ => String::new(),
        };
        // The provider sends the browser back to buildbotURL, so the web port is chosen first.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let cfg = format!(
            r#"
c['buildbotURL'] = 'http://127.0.0.1:{port}/'
c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'],
    factory=util.BuildFactory([steps.ShellCommand(name='hello', command=['echo', 'hello'])]))]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b'])]
c['www'] = {{'auth': {auth},
    'authz': util.Authz(allowRules=[util.AnyControlEndpointMatcher(role='admins')],
        roleMatchers=[util.RolesFromUsername(roles=['admins'], usernames=['alice']),
                      util.RolesFromGroups(groupPrefix='kiln-')]){front_config}}}
"#
        );
        let dir = tempfile::tempdir().unwrap();
        let source = config("sqlite:///state.sqlite", &cfg);
        let mut m = TestMaster::start_with(dir, &source, |o| o.www_port = Some(port)).await;
        m.start_worker("w1", "pass").await;
        let with_front = std::path::Path::new("1");
        let mode_path = std::path::Path::new(mode);
        let mut env: Vec<(&str, &std::path::Path)> = vec![("KILN_LOGIN", mode_path)];
        if front.is_some() && mode == "form" {
            env.push(("KILN_BUILDBOT_WWW", with_front));
        }
        run_script(&m, "login.mjs", &modules, &chromium, &env).await;
    }
}

/// Runs a browser script against the master; it prints OK when every check passed.
async fn run_script(
    m: &TestMaster,
    script: &str,
    modules: &std::path::Path,
    chromium: &std::path::Path,
    env: &[(&str, &std::path::Path)],
) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser")
        .join(script);
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .env("KILN_URL", format!("http://{}", m.www()))
        .env("KILN_CHROMIUM", chromium)
        .env("NODE_PATH", modules)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = tokio::time::timeout(WAIT * 2, command.output())
        .await
        .expect("the browser script finishes in time")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "{} failed:\n{stdout}\n{stderr}",
        script.display()
    );
}
