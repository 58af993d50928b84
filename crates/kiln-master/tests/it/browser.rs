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
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser/pages.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .env("KILN_URL", format!("http://{}", m.www()))
        .env("KILN_GO", &go)
        .env("KILN_CHROMIUM", chromium)
        .env("NODE_PATH", modules)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT * 2, run)
        .await
        .expect("the browser script finishes in time")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("OK"),
        "the browser script failed:\n{stdout}\n{stderr}"
    );
}
