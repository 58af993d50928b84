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

/// A burst of builds read together, in one round trip, gives what the listings of each kind of
/// row give one after another, and each build's previous build: the newest below it on its
/// builder that is complete and was not retried.
#[tokio::test]
async fn builds_read_together_match_the_listings_of_each_kind_of_row() {
    each_backend(|t| async move {
        let db = &t.db;
        let b = t.backend;
        let m = db.find_master_id("m").await.unwrap();
        let w = db.find_worker_id("w1").await.unwrap();
        let b1 = db.find_builder_id("b1").await.unwrap();
        let stamp = |revision: &str, patch| kiln_core::sourcestamp::SourceStamp {
            codebase: String::new(),
            repository: "https://example.org/repo.git".into(),
            branch: Some("main".into()),
            revision: Some(revision.into()),
            project: "p".into(),
            patch,
        };
        let change = kiln_db::NewChange {
            author: "alice <alice@example.org>".into(),
            comments: "fix".into(),
            branch: Some("main".into()),
            revision: Some("r2".into()),
            repository: "https://example.org/repo.git".into(),
            project: "p".into(),
            when_timestamp: 1,
            ..Default::default()
        };
        db.add_change(&change, 1, kiln_db::unrecorded)
            .await
            .unwrap();
        let patch = kiln_core::sourcestamp::Patch {
            level: 1,
            body: b"--- a\n+++ b\n".to_vec(),
            subdir: None,
            author: Some("bob".into()),
            comment: Some("try".into()),
        };
        let mut properties = Properties::default();
        properties.set("reason", PropertyValue::Str("tried".into()), "Force");
        // Four builds of one builder, each of a buildset of its own: the second is retried,
        // the third is made of a change and the fourth of a patch.
        let mut ids = Vec::new();
        for (i, ss) in [
            stamp("r1", None),
            stamp("r1", None),
            stamp("r2", None),
            stamp("r3", Some(patch)),
        ]
        .into_iter()
        .enumerate()
        {
            let (bsid, brs) = db
                .add_buildset(
                    &NewBuildSet {
                        builders: vec![(b1, 0)],
                        sourcestamps: vec![ss],
                        properties: properties.clone(),
                        submitted_at: 1,
                        ..Default::default()
                    },
                    kiln_db::unrecorded,
                )
                .await
                .unwrap();
            let now = 10 + i as i64;
            let build = db
                .claim_and_start_build(brs[0].1, bsid, b1, w, m, "", now, kiln_db::unrecorded)
                .await
                .unwrap();
            ids.push(build.id);
        }
        let finish = |id, results| db.finish_build(id, results, "done", 20, kiln_db::unrecorded);
        finish(ids[0], Results::Success).await.unwrap();
        finish(ids[1], Results::Retry).await.unwrap();
        finish(ids[2], Results::Failure).await.unwrap();
        let mut own = Properties::default();
        own.set("got_revision", PropertyValue::Str("r3".into()), "Git");
        db.set_build_properties(ids[3], &own).await.unwrap();
        let (step, _, _, _) = db
            .add_step(
                ids[3],
                "compile",
                "",
                &[("stdio", LogType::Stdio)],
                None,
                21,
            )
            .await
            .unwrap();

        let asked = [ids[3], ids[2], ids[1]];
        let all = kiln_db::BuildsWanted {
            steps: true,
            previous: true,
            changed: true,
        };
        let read = db.read_builds(&asked, all).await.unwrap();
        let among = |column, ids: Vec<i64>| Page::among(column, ids);
        let mut sorted: Vec<i64> = asked.iter().map(|i| i.0).collect();
        sorted.sort_unstable();
        let builds = db
            .list_builds(&among("id", sorted.clone()))
            .await
            .unwrap()
            .0;
        assert_eq!(read.builds, builds, "{b}");
        let requests: Vec<i64> = builds.iter().map(|r| r.buildrequestid.0).collect();
        let requests = db
            .list_buildrequests(&among("br.id", requests))
            .await
            .unwrap()
            .0;
        assert_eq!(read.requests, requests, "{b}");
        let buildsets: Vec<i64> = requests.iter().map(|r| r.buildsetid.0).collect();
        let buildsets = db.list_buildsets(&among("id", buildsets)).await.unwrap().0;
        assert_eq!(read.buildsets, buildsets, "{b}");
        let mut stamps: Vec<i64> = buildsets
            .iter()
            .flat_map(|s| s.sourcestamps.clone())
            .collect();
        stamps.sort_unstable();
        stamps.dedup();
        let sourcestamps = db
            .list_sourcestamps(&among("id", stamps.clone()))
            .await
            .unwrap()
            .0;
        assert_eq!(read.sourcestamps, sourcestamps, "{b}");
        assert!(read.sourcestamps.iter().any(|s| s.patch.is_some()), "{b}");
        for id in asked {
            let properties = db.build_properties_set(id).await.unwrap();
            assert_eq!(
                read.properties.get(&id).cloned().unwrap_or_default(),
                properties
            );
        }
        assert_eq!(
            read.properties[&ids[3]].get("got_revision"),
            Some(&PropertyValue::Str("r3".into())),
            "{b}"
        );
        let steps = Page {
            order: vec![("buildid", false), ("number", false)],
            ..among("buildid", sorted.clone())
        };
        assert_eq!(read.steps, db.list_steps(&steps).await.unwrap().0, "{b}");
        assert_eq!(read.steps.len(), 1, "{b}");
        assert_eq!(read.logs, db.logs_of_builds(&asked).await.unwrap(), "{b}");
        assert_eq!(read.logs[0].stepid, step, "{b}");
        // Only the third build's source stamp was made by a change.
        let third = requests
            .iter()
            .find(|r| r.id == builds[1].buildrequestid)
            .unwrap();
        let third = buildsets.iter().find(|s| s.id == third.buildsetid).unwrap();
        assert_eq!(
            read.changed,
            third.sourcestamps.iter().copied().collect(),
            "{b}"
        );
        // The fourth build's previous is the third; the third's and the retried second's, the
        // first, passing over the retried one.
        let previous: Vec<_> = read.previous.iter().map(|p| p.id).collect();
        assert_eq!(previous, [ids[0], ids[2]], "{b}");
        // What is not asked for is not read.
        let bare = db
            .read_builds(&asked, kiln_db::BuildsWanted::default())
            .await
            .unwrap();
        assert!(bare.steps.is_empty() && bare.logs.is_empty(), "{b}");
        assert!(bare.previous.is_empty() && bare.changed.is_empty(), "{b}");
        assert_eq!(bare.builds, read.builds, "{b}");
        // More builds than one round trip takes are read in several.
        let many: Vec<kiln_core::BuildId> = (1..=6_000).map(kiln_core::BuildId).collect();
        let all_of_them = db.read_builds(&many, all).await.unwrap();
        assert_eq!(all_of_them.builds.len(), 4, "{b}");
        assert_eq!(all_of_them.previous, read.previous, "{b}");
    })
    .await;
}
