//! Locks at builder and step level: builds that would overlap in a shared directory take turns,
//! the time a step got its locks is recorded, and a build stopped while waiting is cancelled.

use serde_json::json;

use crate::harness::{TestMaster, config, rpc};

fn body(shared: &str) -> String {
    format!(
        r#"
guard = ['sh', '-c', 'if [ -e {shared}/held ]; then echo overlap; exit 1; fi; touch {shared}/held; sleep 0.3; rm {shared}/held']
db = util.MasterLock('db')
cpu = util.WorkerLock('cpu', maxCount=1)
whole = util.BuildFactory([steps.ShellCommand(name='guarded', command=guard)])
stepwise = util.BuildFactory([steps.ShellCommand(name='free', command='true'),
    steps.ShellCommand(name='guarded', command=guard, locks=[cpu.access('counting')])])
c['builders'] = [util.BuilderConfig(name=n, workernames=['w1'], factory=whole, locks=[db.access('exclusive')])
                 for n in ['a', 'b', 'c']] + \
                [util.BuilderConfig(name=n, workernames=['w1'], factory=stepwise) for n in ['s1', 's2']]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['a', 'b', 'c', 's1', 's2'])]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_and_steps_take_turns_on_their_locks() {
    let shared = tempfile::tempdir().unwrap();
    let source = config(
        "sqlite:///state.sqlite",
        &body(&shared.path().display().to_string()),
    );
    let mut m = TestMaster::start(&source).await;
    m.start_worker("w1", "pass").await;
    let mut forced = Vec::new();
    for b in ["a", "b", "c"] {
        forced.push(m.force(json!({"builderNames": [b]})).await);
    }
    for bsid in &forced {
        assert_eq!(m.wait_complete(*bsid).await, 0, "no overlap under the lock");
    }

    let s1 = m.force(json!({"builderNames": ["s1"]})).await;
    let s2 = m.force(json!({"builderNames": ["s2"]})).await;
    assert_eq!(m.wait_complete(s1).await, 0);
    assert_eq!(m.wait_complete(s2).await, 0);
    let (_, steps) = m.get("builds/4/steps/guarded").await;
    assert!(steps["steps"][0]["locks_acquired_at"].is_i64(), "{steps}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_stopped_while_waiting_for_a_lock_is_cancelled() {
    let shared = tempfile::tempdir().unwrap();
    let source = config(
        "sqlite:///state.sqlite",
        &body(&shared.path().display().to_string()),
    );
    let mut m = TestMaster::start(&source).await;
    // Hold the lock from outside, as another build would.
    let db = m.master().config().builders[0].locks.clone();
    let held = m.master().locks.acquire(&db, "w1").await;
    m.start_worker("w1", "pass").await;
    let bsid = m.force(json!({"builderNames": ["a"]})).await;
    let build = m.wait_event("builds.*.new").await["buildid"]
        .as_i64()
        .unwrap();
    while m.master().locks.waiting() == 0 {
        tokio::task::yield_now().await;
    }
    let (_, b) = m.get(&format!("builds/{build}")).await;
    assert_eq!(b["builds"][0]["state_string"], "acquiring locks");
    let (status, _) = rpc(&m.www(), &format!("builds/{build}"), "stop", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(m.wait_complete(bsid).await, 6);
    assert_eq!(m.master().locks.waiting(), 0, "the waiter left the queue");
    drop(held);
    m.stop().await;
}
