use serde_json::json;

use crate::harness::{TestMaster, config};

const SLOW: &str = r#"
f = util.BuildFactory([steps.ShellCommand(name='slow', command='echo begin; sleep 600')])
g = util.BuildFactory([steps.ShellCommand(name='quick', command='true')])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f),
                 util.BuilderConfig(name='b2', workernames=['w1'], factory=g)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1', 'b2'])]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_lost_mid_build_gives_retry_and_the_request_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("second-run");
    let body = SLOW.replace(
        "sleep 600",
        &format!(
            "test -f {0} && exit 0; touch {0}; sleep 600",
            marker.display()
        ),
    );
    let mut m = TestMaster::start_in(dir, &config("sqlite:///state.sqlite", &body)).await;
    let w = m.start_worker("w1", "pass").await;
    let bsid = m.force(json!({"builderNames": ["b1"]})).await;
    m.wait_event("logs.*.append").await;
    m.kill_worker(w);
    let finished = m.wait_event("builds.*.finished").await;
    assert_eq!(finished["results"], 5, "RETRY");
    m.wait_event("buildrequests.*.unclaimed").await;
    // The same request is built again by the next worker that comes.
    m.start_worker("w1", "pass").await;
    assert_eq!(m.wait_buildset(bsid).await, 0);
    let (_, builds) = m
        .get("builds?field=buildrequestid&field=results&order=buildid")
        .await;
    assert_eq!(
        builds["builds"],
        json!([{"buildrequestid": 1, "results": 5}, {"buildrequestid": 1, "results": 0}])
    );
    m.stop().await;
}
