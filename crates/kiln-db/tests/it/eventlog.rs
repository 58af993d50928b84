use kiln_core::BuilderId;
use kiln_db::{EventRecord, NewBuildSet};

use crate::each_backend;

fn record(key: &str) -> EventRecord {
    EventRecord {
        key: key.into(),
        payload: "{}".into(),
        at: 1,
    }
}

/// Events are kept with the write that makes them, in order; a write that does not happen keeps
/// none; consumers' positions only move forward; pruning says how far it went.
#[tokio::test]
async fn events_are_recorded_with_their_write_and_read_in_order() {
    each_backend(|t| async move {
        let db = &t.db;
        let b: BuilderId = db.find_builder_id("b").await.unwrap();
        let m = db.find_master_id("m").await.unwrap();
        let w = db.find_worker_id("w").await.unwrap();
        let (bsid, brs) = db
            .add_buildset(
                &NewBuildSet {
                    builders: vec![(b, 0)],
                    submitted_at: 1,
                    ..Default::default()
                },
                |(bsid, _): &(kiln_core::BuildSetId, _)| {
                    vec![record(&format!("buildsets.{bsid}.new"))]
                },
            )
            .await
            .unwrap();
        let started =
            |(id, _): &(kiln_core::BuildId, i64)| vec![record(&format!("builds.{id}.new"))];
        db.claim_and_start_build(brs[0].1, bsid, b, w, m, "", 1, started)
            .await
            .unwrap();
        // The request is running: a second claim fails, and records nothing.
        let again = db
            .claim_and_start_build(brs[0].1, bsid, b, w, m, "", 1, started)
            .await;
        assert!(again.is_err(), "{}", t.backend);
        let events = db.events_after(0, 10).await.unwrap();
        let keys: Vec<&str> = events.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["buildsets.1.new", "builds.1.new"], "{}", t.backend);
        assert!(events[0].id < events[1].id);

        db.acknowledge_events("r", events[1].id, 2).await.unwrap();
        db.acknowledge_events("r", events[0].id, 3).await.unwrap();
        assert_eq!(db.consumer_position("r").await.unwrap(), Some(events[1].id));

        assert_eq!(db.prune_events(1, 4).await.unwrap(), 1, "{}", t.backend);
        assert_eq!(db.pruned_through().await.unwrap(), events[0].id);
        assert_eq!(db.events_after(0, 10).await.unwrap().len(), 1);
    })
    .await;
}

/// The waterfall's worker events: connections and disconnections in a period, newest first.
#[tokio::test]
async fn worker_events_are_read_by_period() {
    each_backend(|t| async move {
        let db = &t.db;
        let m = db.find_master_id("m").await.unwrap();
        let w = db.find_worker_id("w").await.unwrap();
        for at in [10, 20] {
            let connected = |_: &()| {
                vec![EventRecord {
                    key: format!("workers.{}.connected", w.0),
                    payload: "{}".into(),
                    at,
                }]
            };
            db.worker_connected(w, m, "{}", connected).await.unwrap();
        }
        let all = db.worker_events(0, 100, 10).await.unwrap();
        assert_eq!(all.len(), 2, "{}", t.backend);
        assert_eq!(all[0].at, 20);
        let later = db.worker_events(15, 100, 10).await.unwrap();
        assert_eq!(later.len(), 1, "{}", t.backend);
        assert!(db.worker_events(0, 100, 0).await.unwrap().is_empty());
    })
    .await;
}
