//! The API boundary as a component sees it: the read side, the control handle with its actor,
//! and the events, without the master.

use std::time::Duration;

use kiln_api::{Actor, ApiError, Shutdown, WorkerAction, WorkerRef};
use serde_json::json;

use crate::harness::{TestMaster, config};

const ONE_BUILDER: &str = r#"
c['title'] = 'Boundary'
f = util.BuildFactory([steps.ShellCommand(command='echo fine')])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_read_command_and_listen_through_the_boundary() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let services = kiln_master::boundary::services(m.master());
    let (read, control) = (&services.read, &services.control);
    let mut events = services.events.subscribe();

    assert_eq!(read.config().title, "Boundary");
    let b1 = read.builder_ids()["b1"];
    assert!(read.connected_workers().is_empty());
    assert!(read.poller_names().is_empty());
    m.start_worker("w1", "pass").await;
    assert_eq!(read.connected_workers(), vec!["w1".to_string()]);
    let page = kiln_db::listing::Page::eq("name", kiln_db::listing::SqlValue::Text("w1".into()));
    let w1 = read.db().list_workers(&page).await.unwrap().0.remove(0);
    assert_eq!(read.worker_name(w1.id).as_deref(), Some("w1"));

    // A force through the control handle builds, and its events reach the subscriber.
    let params = json!({"builderNames": ["b1"], "reason": "from a component"});
    let (bsid, brids) = control
        .force(&Actor::Anonymous, "force", params.as_object().unwrap())
        .await
        .expect("forced");
    assert_eq!(brids[0].0, b1);
    loop {
        let e = events.recv().await.expect("event");
        if e.completed_buildset().is_some_and(|(id, _)| id == bsid) {
            break;
        }
    }
    let users = read
        .build_users(kiln_core::BuildId(1))
        .await
        .expect("users");
    assert!(users.blamelist.is_empty());

    // Errors come back as the one error type, each of its kind.
    let unknown = control
        .force(&Actor::Anonymous, "nope", params.as_object().unwrap())
        .await;
    assert!(matches!(unknown, Err(ApiError::NotFound(_))), "{unknown:?}");
    let bad = json!({"builderNames": ["elsewhere"]});
    let refused = control
        .force(&Actor::Anonymous, "force", bad.as_object().unwrap())
        .await;
    assert!(
        matches!(refused, Err(ApiError::FormErrors(_))),
        "{refused:?}"
    );
    let missing = control
        .worker_action(
            &Actor::Anonymous,
            &WorkerRef::Name("ghost".into()),
            WorkerAction::Pause,
            "",
        )
        .await;
    assert_eq!(
        missing.map_err(|e| e.message()),
        Err("not found while getting from workers/ghost".to_string())
    );

    // A shutdown now is asked of whoever runs the master.
    assert!(
        control
            .shutdown(&Actor::Anonymous, Shutdown::Now)
            .await
            .expect("asked")
    );
    tokio::time::timeout(crate::harness::WAIT, m.master().stop_requested())
        .await
        .expect("the stop request is seen");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_waits_for_the_running_builds_and_can_be_called_off() {
    let slow = r#"
f = util.BuildFactory([steps.ShellCommand(command='sleep 300')])
c['builders'] = [util.BuilderConfig(name='slow', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['slow'])]
"#;
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", slow)).await;
    let services = kiln_master::boundary::services(m.master());
    let (read, control) = (&services.read, &services.control);
    let mut events = services.events.subscribe();
    m.start_worker("w1", "pass").await;
    let params = json!({"builderNames": ["slow"]});
    let force = || control.force(&Actor::Anonymous, "force", params.as_object().unwrap());
    force().await.expect("forced");
    // Its step has started: the build runs.
    loop {
        let e = events.recv().await.expect("event");
        if e.key().starts_with("steps.") && e.key().ends_with(".started") {
            break;
        }
    }
    let stopped = || async {
        tokio::time::timeout(Duration::ZERO, m.master().stop_requested())
            .await
            .is_ok()
    };

    let shutdown = |how| control.shutdown(&Actor::Anonymous, how);
    assert!(shutdown(Shutdown::Clean).await.unwrap());
    assert!(read.shutting_down());
    assert!(!shutdown(Shutdown::Clean).await.unwrap(), "already started");
    assert!(!stopped().await, "the running build holds the stop back");
    // Called off, then started again.
    assert!(shutdown(Shutdown::Cancel).await.unwrap());
    assert!(!read.shutting_down());
    assert!(
        !shutdown(Shutdown::Cancel).await.unwrap(),
        "nothing to call off"
    );
    assert!(shutdown(Shutdown::Clean).await.unwrap());

    // A request made during the shutdown waits; once the running build ends, the master asks
    // to stop, and the waiting request never started.
    force().await.expect("forced");
    let running = read.running_builds();
    assert_eq!(running.len(), 1);
    assert!(
        control
            .stop_build(&Actor::Anonymous, running[0], "done")
            .await
            .unwrap()
    );
    tokio::time::timeout(crate::harness::WAIT, m.master().stop_requested())
        .await
        .expect("a stop is requested once no build runs");
    let (builds, _) = read
        .db()
        .list_builds(&kiln_db::listing::Page::default())
        .await
        .unwrap();
    assert_eq!(builds.len(), 1, "{builds:?}");
}
