use kiln_core::{Properties, PropertyValue, Results};
use kiln_db::NewBuildSet;
use kiln_db::listing::{Page, SqlValue};
use kiln_db::{LogType, StepEnd};

use crate::each_backend;

#[tokio::test]
async fn builds_are_numbered_per_builder_and_steps_get_unique_names() {
    each_backend(|t| async move {
        let db = &t.db;
        let m = db.find_master_id("m").await.unwrap();
        let w = db.find_worker_id("w1").await.unwrap();
        let b1 = db.find_builder_id("b1").await.unwrap();
        let b2 = db.find_builder_id("b2").await.unwrap();
        let (bsid, brs) = db
            .add_buildset(
                &NewBuildSet {
                    builders: vec![(b1, 0), (b2, 0)],
                    submitted_at: 1,
                    ..Default::default()
                },
                kiln_db::unrecorded,
            )
            .await
            .unwrap();
        let start = |builder, request, now| {
            db.claim_and_start_build(
                request,
                bsid,
                builder,
                w,
                m,
                "starting",
                now,
                kiln_db::unrecorded,
            )
        };
        let first = start(b1, brs[0].1, 10).await.unwrap();
        let (id1, n1) = (first.id, first.number);
        // A request runs once at a time: a second build of it waits for the first to finish.
        assert!(
            matches!(
                start(b1, brs[0].1, 11).await,
                Err(kiln_db::DbError::AlreadyClaimed(_))
            ),
            "{}",
            t.backend
        );
        db.finish_build(id1, Results::Retry, "retry", 11, kiln_db::unrecorded)
            .await
            .unwrap();
        let n2 = start(b1, brs[0].1, 11).await.unwrap().number;
        let n3 = start(b2, brs[1].1, 12).await.unwrap().number;
        assert_eq!((n1, n2, n3), (1, 2, 1), "{}", t.backend);

        let (s0, num0, name0, _) = db
            .add_step(id1, "worker_preparation", "", &[], None, 10)
            .await
            .unwrap();
        // Starting the next step finishes the previous one in the same write; a repeated name gets
        // a suffix even then, and the previous step is finished once.
        let end = |id, state: &str| StepEnd {
            id,
            results: Results::Success,
            state: state.to_string(),
            hidden: false,
        };
        let (s1, num1, name1, logs1) = db
            .add_step(
                id1,
                "shell",
                "make",
                &[("stdio", LogType::Stdio), ("warnings (2)", LogType::Text)],
                Some(&end(s0, "done")),
                11,
            )
            .await
            .unwrap();
        // The step's first logs are made with it.
        let mut made = Vec::new();
        for l in &logs1 {
            let row = db.get_log(*l).await.unwrap().unwrap();
            made.push((row.stepid, row.name, row.slug));
        }
        assert_eq!(
            made,
            [
                (s1, "stdio".to_string(), "stdio".to_string()),
                (s1, "warnings (2)".to_string(), "warnings__2_".to_string())
            ],
            "{}",
            t.backend
        );
        let (s2, num2, name2, _) = db
            .add_step(id1, "shell", "", &[], Some(&end(s1, "made")), 12)
            .await
            .unwrap();
        assert_eq!((num0, num1, num2), (0, 1, 2));
        assert_eq!(
            (name0.as_str(), name1.as_str(), name2.as_str()),
            ("worker_preparation", "shell", "shell_2")
        );
        let step = db.get_step(s0).await.unwrap().unwrap();
        assert_eq!(
            (step.started_at, step.complete_at, step.results),
            (Some(10), Some(11), Some(0))
        );
        let step = db.get_step(s1).await.unwrap().unwrap();
        assert_eq!(
            (step.state_string.as_str(), step.complete_at),
            ("made", Some(12)),
            "{}",
            t.backend
        );
        db.finish_step(&end(s2, "last"), 13).await.unwrap();
        assert_eq!(
            db.get_step(s2).await.unwrap().unwrap().complete_at,
            Some(13)
        );

        let mut props = Properties::new();
        props.set("buildnumber", PropertyValue::Int(1), "Build");
        props.set(
            "nested",
            PropertyValue::List(vec![PropertyValue::Bool(true), PropertyValue::Null]),
            "Step",
        );
        db.set_build_properties(id1, &props).await.unwrap();
        props.set("buildnumber", PropertyValue::Int(7), "Build");
        db.set_build_properties(id1, &props).await.unwrap();
        assert_eq!(db.build_properties_set(id1).await.unwrap(), props);

        db.finish_build(id1, Results::Failure, "failed", 20, kiln_db::unrecorded)
            .await
            .unwrap();
        let b = db.get_build(id1).await.unwrap().unwrap();
        assert_eq!((b.results, b.complete_at), (Some(2), Some(20)));
        let unfinished = db
            .finish_master_builds(m, Results::Retry, "interrupted", 30, kiln_db::unrecorded)
            .await
            .unwrap();
        assert_eq!(unfinished.len(), 2, "{}", t.backend);
        let (rows, _) = db
            .list_builds(&Page::eq("builderid", SqlValue::Int(b1.0)))
            .await
            .unwrap();
        assert_eq!(
            rows.iter().map(|b| b.results).collect::<Vec<_>>(),
            vec![Some(2), Some(5)]
        );
    })
    .await;
}

#[tokio::test]
async fn workers_record_configuration_and_connections() {
    each_backend(|t| async move {
        let db = &t.db;
        let m = db.find_master_id("m").await.unwrap();
        let b = db.find_builder_id("b").await.unwrap();
        let w = db.find_worker_id("w1").await.unwrap();
        assert_eq!(db.find_worker_id("w1").await.unwrap(), w);
        let bm = db.set_master_builders(m, &[b]).await.unwrap();
        db.set_builder_workers(bm[&b], &[w]).await.unwrap();
        db.worker_connected(w, m, r#"{"host":"h"}"#, kiln_db::unrecorded)
            .await
            .unwrap();
        let (rows, _) = db.list_workers(&Page::default()).await.unwrap();
        assert_eq!(rows[0].configured_on, vec![(b.0, m.0)], "{}", t.backend);
        assert_eq!(rows[0].connected_to, vec![m.0]);
        assert_eq!(rows[0].info, r#"{"host":"h"}"#);
        db.worker_disconnected(w, m, kiln_db::unrecorded)
            .await
            .unwrap();
        assert!(
            db.list_workers(&Page::default()).await.unwrap().0[0]
                .connected_to
                .is_empty()
        );
        db.update_builder_info(b, Some("desc"), &["fast".into(), "linux".into()])
            .await
            .unwrap();
        let builders = db.list_builders(&Page::default()).await.unwrap().0;
        assert_eq!(
            builders[0].tags,
            vec!["fast".to_string(), "linux".to_string()]
        );
        assert_eq!(builders[0].masterids, vec![m.0]);
        // Reconfiguring without the builder drops it from this master.
        db.set_master_builders(m, &[]).await.unwrap();
        assert!(
            db.list_builders(&Page::default()).await.unwrap().0[0]
                .masterids
                .is_empty()
        );
    })
    .await;
}
