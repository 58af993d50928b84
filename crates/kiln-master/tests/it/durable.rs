//! The durable record of events: a consumer that stops and comes back, even after a master
//! restart, gets every event once acknowledged ones aside, in commit order, and is told what it
//! missed when the record was pruned past it.

use kiln_api::{Delivery, DurableConsumer};
use kiln_db::{NewChange, StoredEvent};
use serde_json::json;

use crate::harness::{TestMaster, config};

const ONE_BUILDER: &str = r#"
f = util.BuildFactory([steps.ShellCommand(command='echo fine')])
c['builders'] = [util.BuilderConfig(name='b1', workernames=['w1'], factory=f)]
c['schedulers'] = [schedulers.ForceScheduler(name='force', builderNames=['b1'])]
"#;

async fn add_changes(m: &TestMaster, first: usize, count: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for n in first..first + count {
        let change = NewChange {
            author: "alice".into(),
            revision: Some(format!("r{n}")),
            when_timestamp: 1,
            ..Default::default()
        };
        ids.push(m.master().updates.add_change(&change).await.unwrap().0);
    }
    ids
}

async fn next_event(consumer: &mut DurableConsumer) -> StoredEvent {
    match tokio::time::timeout(crate::harness::WAIT, consumer.next())
        .await
        .expect("an event in time")
        .expect("the record is readable")
    {
        Delivery::Event(e) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn change_id(e: &StoredEvent) -> i64 {
    let payload: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
    assert_eq!(e.key, format!("changes.{}.new", payload["changeid"]));
    payload["changeid"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_consumer_resumes_after_a_thousand_events_and_a_restart() {
    let source = config("sqlite:///state.sqlite", ONE_BUILDER);
    let mut m = TestMaster::start(&source).await;
    let services = kiln_master::boundary::services(m.master());
    // A new consumer starts at the end of the record; then it stops.
    drop(DurableConsumer::start(&services, "reporter").await.unwrap());

    let written = add_changes(&m, 0, 1_000).await;
    let mut consumer = DurableConsumer::start(&services, "reporter").await.unwrap();
    let mut seen = Vec::new();
    let mut acked_at = 0;
    for i in 0..1_000 {
        let e = next_event(&mut consumer).await;
        seen.push(change_id(&e));
        if i == 599 {
            consumer.acknowledge(e.id).await.unwrap();
            acked_at = e.id;
        }
    }
    assert_eq!(seen, written, "every change, in order, once");
    drop(consumer);

    // The master restarts; the consumer resumes after its acknowledgement: what it was given but
    // did not acknowledge comes again, what it acknowledged does not.
    m.stop().await;
    let dir = std::mem::replace(&mut m.dir, tempfile::tempdir().unwrap());
    let m = TestMaster::start_in(dir, &source).await;
    let services = kiln_master::boundary::services(m.master());
    let mut consumer = DurableConsumer::start(&services, "reporter").await.unwrap();
    assert_eq!(consumer.position(), acked_at);
    let more = add_changes(&m, 1_000, 1).await;
    let mut again = Vec::new();
    for _ in 0..401 {
        again.push(change_id(&next_event(&mut consumer).await));
    }
    let mut expected = written[600..].to_vec();
    expected.extend(more);
    assert_eq!(again, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builds_events_are_recorded_with_it_in_order() {
    let mut m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let services = kiln_master::boundary::services(m.master());
    let mut consumer = DurableConsumer::start(&services, "watcher").await.unwrap();
    m.start_worker("w1", "pass").await;
    assert_eq!(m.force_and_wait(json!({})).await, 0);
    let mut keys = Vec::new();
    while keys
        .last()
        .is_none_or(|k: &String| !k.starts_with("buildsets.") || !k.ends_with(".complete"))
    {
        keys.push(next_event(&mut consumer).await.key);
    }
    assert_eq!(
        keys,
        [
            "workers.1.connected",
            "buildsets.1.new",
            "buildrequests.1.new",
            "buildrequests.1.claimed",
            "builds.1.new",
            "builds.1.finished",
            "buildrequests.1.complete",
            "buildsets.1.complete",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_behind_the_pruned_record_is_told_what_it_missed() {
    let m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let services = kiln_master::boundary::services(m.master());
    let mut consumer = DurableConsumer::start(&services, "slow").await.unwrap();
    let start = consumer.position();
    let written = add_changes(&m, 0, 50).await;
    m.master().updates.prune_events(10).await.unwrap();
    let newest = m.master().db.newest_event().await.unwrap();
    let missed = consumer.next().await.unwrap();
    assert_eq!(
        missed,
        Delivery::Missed {
            after: start,
            through: newest - 10
        }
    );
    let mut rest = Vec::new();
    for _ in 0..10 {
        rest.push(change_id(&next_event(&mut consumer).await));
    }
    assert_eq!(rest, written[40..]);
}

/// A lingering consumer's read answers every wake-up queued while it lingered: the events of a
/// burst recorded one after another are read once, and no read follows that finds nothing; a
/// burst that comes after a quiet while is gathered too, not read from its first event on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_consumer_reads_a_burst_once() {
    let m = TestMaster::start(&config("sqlite:///state.sqlite", ONE_BUILDER)).await;
    let services = kiln_master::boundary::services(m.master());
    let linger = std::time::Duration::from_millis(300);
    let mut consumer = DurableConsumer::start(&services, "lingering")
        .await
        .unwrap()
        .with_linger(linger);
    for burst in 0..2 {
        // The first change wakes the consumer, which lingers while the others are recorded,
        // each in a write of its own.
        let mut batches: Vec<Vec<i64>> = Vec::new();
        let (written, ()) = tokio::join!(add_changes(&m, burst * 5, 5), async {
            while batches.iter().map(Vec::len).sum::<usize>() < 5 {
                let batch = tokio::time::timeout(crate::harness::WAIT, consumer.next_batch())
                    .await
                    .expect("events in time")
                    .unwrap();
                let ids = batch.iter().map(|d| match d {
                    Delivery::Event(e) => change_id(e),
                    other => panic!("expected an event, got {other:?}"),
                });
                batches.push(ids.collect());
            }
        });
        assert_eq!(batches, [written], "burst {burst}");
        // Nothing more is recorded: the consumer waits without reading again, though the
        // wake-ups of the events it read came while it lingered.
        let more = tokio::time::timeout(linger * 2, consumer.next_batch());
        assert!(more.await.is_err(), "no event was recorded since");
        assert_eq!(
            consumer.reads(),
            burst as u64 + 1,
            "every read found events"
        );
    }
}
