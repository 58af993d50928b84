//! The reads that pages showing many builds make in one statement each: the latest builds per
//! builder, the logs and branches of many builds, the builds that carry changes, and the source
//! stamps built.

use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{BuildId, BuilderId, Results};
use kiln_db::{NewBuildSet, NewChange, Writer};

use crate::each_backend;

/// A change on `main` of `repo` with revision `rev`, and a build of it on `builder`.
async fn change_and_build(db: &Writer, builder: BuilderId, rev: &str) -> (i64, BuildId) {
    let m = db.find_master_id("m").await.unwrap();
    let w = db.find_worker_id("w").await.unwrap();
    let change = NewChange {
        author: "dev".into(),
        repository: "repo".into(),
        branch: Some("main".into()),
        revision: Some(rev.into()),
        ..Default::default()
    };
    let changeid = db
        .add_change(&change, 100, kiln_db::unrecorded)
        .await
        .unwrap();
    let (bsid, brs) = db
        .add_buildset(
            &NewBuildSet {
                sourcestamps: vec![SourceStamp {
                    repository: "repo".into(),
                    branch: Some("main".into()),
                    revision: Some(rev.into()),
                    ..Default::default()
                }],
                builders: vec![(builder, 0)],
                submitted_at: 1,
                ..Default::default()
            },
            kiln_db::unrecorded,
        )
        .await
        .unwrap();
    let build = db
        .claim_and_start_build(brs[0].1, bsid, builder, w, m, "", 1, kiln_db::unrecorded)
        .await
        .unwrap()
        .id;
    (changeid.0, build)
}

#[tokio::test]
async fn pages_read_many_builds_in_one_statement_each() {
    each_backend(|t| async move {
        let db = &t.db;
        let a = db.find_builder_id("a").await.unwrap();
        let b = db.find_builder_id("b").await.unwrap();
        let (c1, a1) = change_and_build(db, a, "r1").await;
        db.finish_build(a1, Results::Failure, "failed", 2, kiln_db::unrecorded)
            .await
            .unwrap();
        let a1_results = Some(Results::Failure as i64);
        let (c2, a2) = change_and_build(db, a, "r2").await;
        let (_, b1) = change_and_build(db, b, "r3").await;
        let step = db.add_step(a2, "shell", "", &[], None, 1).await.unwrap().0;
        db.add_log(step, "stdio", kiln_db::LogType::Stdio)
            .await
            .unwrap();

        // With planner statistics, as a master keeps them, the reads answer the same.
        db.refresh_statistics().await.unwrap();
        // The newest build of each builder, newest first within a builder.
        let latest: Vec<BuildId> = db
            .latest_builds(1)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(latest, vec![a2, b1], "{}", t.backend);
        let two: Vec<BuildId> = db
            .latest_builds(2)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(two, vec![a2, a1, b1], "{}", t.backend);

        let logs = db.logs_of_builds(&[a1, a2]).await.unwrap();
        assert_eq!(logs.len(), 1, "{}", t.backend);
        assert_eq!(logs[0].stepid, step);
        assert!(db.logs_of_builds(&[]).await.unwrap().is_empty());

        let branches = db.build_branches(&[a1, b1]).await.unwrap();
        assert_eq!(
            branches,
            vec![(a1, Some("main".into())), (b1, Some("main".into()))]
        );

        // Builds on `a` carrying the first change or later, with the newest change each carries
        // and the result of the build before it: a2 follows a1, which is the first.
        let carrying = db.builds_with_changes(&[a.0], c1).await.unwrap();
        let seen: Vec<_> = carrying
            .iter()
            .map(|c| {
                let at = (c.repository.as_str(), c.branch.as_deref());
                (c.build.id, at, c.newest_change, c.previous_results)
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                (a1, ("repo", Some("main")), c1, None),
                (a2, ("repo", Some("main")), c2, a1_results),
            ],
            "{}",
            t.backend
        );
        assert_eq!(db.builds_with_changes(&[a.0], c2).await.unwrap().len(), 1);

        // The source stamps built on `a`, newest first, at most `limit` of them.
        let stamps = db.sourcestamps_built(&[a.0], None, 5).await.unwrap();
        let revs: Vec<_> = stamps
            .iter()
            .map(|(s, _)| s.revision.clone().unwrap())
            .collect();
        assert_eq!(revs, ["r2", "r1"], "{}", t.backend);
        assert_eq!(stamps[0].1, vec![a2]);
        let one = db.sourcestamps_built(&[a.0, b.0], None, 1).await.unwrap();
        assert_eq!(one.len(), 1, "{}", t.backend);
        assert!(
            db.sourcestamps_built(&[a.0], Some("dev"), 5)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            db.sourcestamps_built(&[a.0], Some("main"), 5)
                .await
                .unwrap()
                .len(),
            2
        );
    })
    .await;
}
