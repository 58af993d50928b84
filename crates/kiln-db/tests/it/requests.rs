use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{BuildSetId, Properties, Results};
use kiln_db::Completion;
use kiln_db::listing::{FilterOp, Page, SqlValue};
use kiln_db::{DbError, NewBuildSet};

use crate::each_backend;

fn buildset(builders: Vec<(kiln_core::BuilderId, i64)>, at: i64) -> NewBuildSet {
    let mut properties = Properties::new();
    properties.set("owner", "alice", "Force Build Form");
    NewBuildSet {
        reason: "forced".into(),
        sourcestamps: vec![SourceStamp {
            codebase: String::new(),
            repository: "https://x/r.git".into(),
            branch: Some("main".into()),
            ..Default::default()
        }],
        properties,
        builders,
        submitted_at: at,
        ..Default::default()
    }
}

#[tokio::test]
async fn buildsets_make_one_request_per_builder_and_share_sourcestamps() {
    each_backend(|t| async move {
        let db = &t.db;
        let b1 = db.find_builder_id("b1").await.unwrap();
        let b2 = db.find_builder_id("b2").await.unwrap();
        let (bs1, brs) = db
            .add_buildset(&buildset(vec![(b1, 0), (b2, 5)], 100), kiln_db::unrecorded)
            .await
            .unwrap();
        assert_eq!(brs.len(), 2, "{}", t.backend);
        let (bs2, _) = db
            .add_buildset(&buildset(vec![(b1, 0)], 101), kiln_db::unrecorded)
            .await
            .unwrap();
        let rows = db.list_buildsets(&Page::default()).await.unwrap().0;
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].sourcestamps, rows[1].sourcestamps,
            "identical source stamps are stored once"
        );
        let props = db.buildset_properties(bs1).await.unwrap();
        assert_eq!(
            props.get_property("owner").map(|p| p.source.as_str()),
            Some("Force Build Form")
        );
        assert_ne!(bs1, bs2);
        // A request with siblings says so when it completes.
        let m = db.find_master_id("m").await.unwrap();
        let done = db
            .complete_buildrequests(&[brs[0].1], Results::Skipped, m, 120, kiln_db::unrecorded)
            .await
            .unwrap();
        assert_eq!(done.requests, vec![(brs[0].1, bs1)], "{}", t.backend);
        assert!(done.buildsets.is_empty(), "a request is still incomplete");
        // The buildset completes with its last request, with the worst result of all (a skipped
        // request is better than a successful one).
        let done = db
            .complete_buildrequests(&[brs[1].1], Results::Success, m, 121, kiln_db::unrecorded)
            .await
            .unwrap();
        assert_eq!(
            done.buildsets,
            vec![(bs1, Results::Success)],
            "{}",
            t.backend
        );
    })
    .await;
}

#[tokio::test]
async fn a_request_is_claimed_once_and_completing_it_completes_nothing_twice() {
    each_backend(|t| async move {
        let db = &t.db;
        let m1 = db.find_master_id("m1").await.unwrap();
        let m2 = db.find_master_id("m2").await.unwrap();
        let b = db.find_builder_id("b").await.unwrap();
        let (bsid, brs) = db
            .add_buildset(&buildset(vec![(b, 0)], 100), kiln_db::unrecorded)
            .await
            .unwrap();
        let brid = brs[0].1;
        let w = db.find_worker_id("w").await.unwrap();
        let claim = |m, now| {
            db.claim_and_start_build(brid, bsid, b, w, m, "starting", now, kiln_db::unrecorded)
        };
        assert_eq!(db.unclaimed_buildrequests().await.unwrap().len(), 1);
        claim(m1, 101).await.unwrap();
        assert!(
            matches!(claim(m2, 102).await, Err(DbError::AlreadyClaimed(_))),
            "{}",
            t.backend
        );
        assert!(db.unclaimed_buildrequests().await.unwrap().is_empty());
        let row = db.get_buildrequest(brid).await.unwrap().unwrap();
        assert_eq!(
            (row.claimed_by_masterid, row.claimed_at),
            (Some(m1.0), Some(101))
        );

        // A master that went away gives its claims back.
        assert_eq!(
            db.unclaim_master_requests(m1, kiln_db::unrecorded)
                .await
                .unwrap(),
            vec![brid]
        );
        assert_eq!(db.unclaimed_buildrequests().await.unwrap().len(), 1);

        let done = db
            .complete_buildrequests(&[brid], Results::Warnings, m2, 110, kiln_db::unrecorded)
            .await
            .unwrap();
        assert_eq!(
            done,
            Completion {
                requests: vec![(brid, bsid)],
                buildsets: vec![(bsid, Results::Warnings)],
            },
            "{}",
            t.backend
        );
        // Completing again changes nothing.
        assert_eq!(
            db.complete_buildrequests(&[brid], Results::Failure, m2, 111, kiln_db::unrecorded)
                .await
                .unwrap(),
            Completion::default()
        );
        let bs = db.get_buildset(bsid).await.unwrap().unwrap();
        assert_eq!(
            (bs.complete, bs.results),
            (true, Some(Results::Warnings.code()))
        );
        assert!(matches!(
            claim(m2, 114).await,
            Err(DbError::AlreadyClaimed(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn listings_filter_order_and_page_in_sql() {
    each_backend(|t| async move {
        let db = &t.db;
        let b = db.find_builder_id("b").await.unwrap();
        for i in 0..5 {
            db.add_buildset(&buildset(vec![(b, i)], 100 + i), kiln_db::unrecorded)
                .await
                .unwrap();
        }
        let page = Page {
            filters: vec![],
            order: vec![("br.priority", true)],
            limit: Some(2),
            offset: Some(1),
            count_total: true,
        };
        let queue = db.pending_for_builders(&[(b, 3)]).await.unwrap();
        assert_eq!(
            queue.iter().map(|r| r.priority).collect::<Vec<_>>(),
            vec![4, 3, 2],
            "{}",
            t.backend
        );
        let (rows, total) = db.list_buildrequests(&page).await.unwrap();
        assert_eq!(total, 5, "{}", t.backend);
        assert_eq!(
            rows.iter().map(|r| r.priority).collect::<Vec<_>>(),
            vec![3, 2]
        );
        // The ids alone, as a streamed answer reads them first: same order, page and total.
        let (ids, total) = db
            .list_ids(kiln_db::listing::Listed::BuildRequests, &page)
            .await
            .unwrap();
        assert_eq!((ids.len(), total), (2, 5), "{}: {ids:?}", t.backend);
        assert_eq!(ids, rows.iter().map(|r| r.id.0).collect::<Vec<_>>());
        let (all, total) = db
            .list_ids(kiln_db::listing::Listed::BuildSets, &Page::default())
            .await
            .unwrap();
        assert_eq!((all, total), (vec![1, 2, 3, 4, 5], 5), "{}", t.backend);
        // Without asking for it, the total is what was returned: no scan of every match.
        let uncounted = Page {
            count_total: false,
            ..page.clone()
        };
        assert_eq!(db.list_buildrequests(&uncounted).await.unwrap().1, 2);
        let page = Page::default().and("br.priority", FilterOp::Ge, SqlValue::Int(3));
        assert_eq!(db.list_buildrequests(&page).await.unwrap().1, 2);
        let page = Page::default().and("reason", FilterOp::Contains, SqlValue::Text("orc".into()));
        assert_eq!(db.list_buildsets(&page).await.unwrap().1, 5);
        let page = Page::default().and("reason", FilterOp::Contains, SqlValue::Text("ORC".into()));
        assert_eq!(
            db.list_buildsets(&page).await.unwrap().1,
            0,
            "contains is case-sensitive"
        );
        // Among selects what In selects, only read another way.
        let mut among = Page::default().and("id", FilterOp::Among, SqlValue::Int(1));
        among.filters[0].values.push(SqlValue::Int(3));
        among.order = vec![("id", true)];
        let ids: Vec<i64> = db
            .list_buildsets(&among)
            .await
            .unwrap()
            .0
            .iter()
            .map(|b| b.id.0)
            .collect();
        assert_eq!(ids, vec![3, 1], "{}", t.backend);
        let mut page = Page::default().and("id", FilterOp::Ne, SqlValue::Int(1));
        page.filters[0].values.push(SqlValue::Int(2));
        assert_eq!(db.list_buildsets(&page).await.unwrap().1, 3);
        let page = Page::default().and("complete_at", FilterOp::Eq, SqlValue::Null);
        assert_eq!(db.list_buildsets(&page).await.unwrap().1, 5);
        // NULL among other values, equal or not.
        let mut page = Page::default().and("complete_at", FilterOp::In, SqlValue::Null);
        page.filters[0]
            .values
            .extend([SqlValue::Int(7), SqlValue::Int(8)]);
        assert_eq!(db.list_buildsets(&page).await.unwrap().1, 5);
        page.filters[0].op = FilterOp::NotIn;
        assert_eq!(db.list_buildsets(&page).await.unwrap().1, 0);
        // Thousands of values, as a burst of builds or a long query string has: SQLite parses
        // no expression nested 1,000 deep, so they cannot be a chain of ORs.
        let many = |op, first: i64, second: i64| {
            let mut page = Page::default().and("id", op, SqlValue::Int(first));
            let values = &mut page.filters[0].values;
            values.push(SqlValue::Int(second));
            values.extend((1000..3000).map(SqlValue::Int));
            page
        };
        let (rows, total) = db.list_buildsets(&many(FilterOp::In, 1, 3)).await.unwrap();
        assert_eq!(total, 2, "{}", t.backend);
        assert_eq!(rows.iter().map(|b| b.id.0).collect::<Vec<_>>(), vec![1, 3]);
        let (_, total) = db
            .list_buildsets(&many(FilterOp::NotIn, 1, 3))
            .await
            .unwrap();
        assert_eq!(total, 3, "{}", t.backend);
        assert!(db.get_buildset(BuildSetId(999)).await.unwrap().is_none());
        // One query reads several builders' queues, each up to its own limit.
        let other = db.find_builder_id("other").await.unwrap();
        db.add_buildset(
            &buildset(vec![(other, 7), (b, 9)], 200),
            kiln_db::unrecorded,
        )
        .await
        .unwrap();
        let queues = db
            .pending_for_builders(&[(b, 2), (other, 5)])
            .await
            .unwrap();
        assert_eq!(
            queues
                .iter()
                .map(|r| (r.builderid, r.priority))
                .collect::<Vec<_>>(),
            vec![(b.0, 9), (b.0, 4), (other.0, 7)],
            "{}",
            t.backend
        );
        assert!(db.pending_for_builders(&[]).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn schedulers_belong_to_one_master_and_can_be_disabled() {
    each_backend(|t| async move {
        let db = &t.db;
        let (m1, m2) = (
            db.find_master_id("a:/x").await.unwrap(),
            db.find_master_id("b:/y").await.unwrap(),
        );
        let s1 = db.find_scheduler_id("nightly").await.unwrap();
        let s2 = db.find_scheduler_id("force").await.unwrap();
        db.set_master_schedulers(m1, &[s1, s2]).await.unwrap();
        // The second master takes one over; the first keeps the other.
        db.set_master_schedulers(m2, &[s1]).await.unwrap();
        let (rows, total) = db.list_schedulers(&Page::default()).await.unwrap();
        assert_eq!(total, 2);
        let owners: Vec<(&str, Option<kiln_core::MasterId>, bool)> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.masterid, r.enabled))
            .collect();
        assert_eq!(
            owners,
            [("nightly", Some(m2), true), ("force", Some(m1), true)]
        );
        assert!(db.set_scheduler_enabled(s1, false).await.unwrap());
        assert!(
            !db.set_scheduler_enabled(kiln_core::SchedulerId(99), false)
                .await
                .unwrap()
        );
        assert_eq!(db.disabled_schedulers().await.unwrap(), ["nightly"]);
        let page = Page::eq("enabled", SqlValue::Int(0));
        let (rows, _) = db.list_schedulers(&page).await.unwrap();
        assert_eq!(rows.len(), 1);
        let page = Page::eq("masterid", SqlValue::Int(m1.0));
        let (rows, _) = db.list_schedulers(&page).await.unwrap();
        assert_eq!(rows[0].name, "force");
    })
    .await;
}

#[tokio::test]
async fn collapsing_skips_only_requests_no_build_has() {
    each_backend(|t| async move {
        let db = &t.db;
        let m1 = db.find_master_id("m1").await.unwrap();
        let b = db.find_builder_id("b").await.unwrap();
        let w = db.find_worker_id("w").await.unwrap();
        let mut ids = Vec::new();
        for at in [100, 101, 102] {
            let (bsid, brs) = db
                .add_buildset(&buildset(vec![(b, 0)], at), kiln_db::unrecorded)
                .await
                .unwrap();
            ids.push((bsid, brs[0].1));
        }
        // The second one has started meanwhile.
        db.claim_and_start_build(
            ids[1].1,
            ids[1].0,
            b,
            w,
            m1,
            "starting",
            103,
            kiln_db::unrecorded,
        )
        .await
        .unwrap();
        let older: Vec<_> = db
            .older_unclaimed(b, ids[2].1)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(older, [ids[0].1], "{}", t.backend);
        let done = db
            .skip_unclaimed(&[ids[0].1, ids[1].1], m1, 104, kiln_db::unrecorded)
            .await
            .unwrap();
        assert_eq!(done.requests, [(ids[0].1, ids[0].0)], "{}", t.backend);
        assert_eq!(done.buildsets, [(ids[0].0, Results::Success)]);
        let skipped = db.get_buildrequest(ids[0].1).await.unwrap().unwrap();
        assert_eq!(skipped.results, Some(Results::Skipped.code()));
        let running = db.get_buildrequest(ids[1].1).await.unwrap().unwrap();
        assert!(!running.complete, "a started request is not skipped");
    })
    .await;
}

#[tokio::test]
async fn schedulers_read_changes_after_the_last_seen() {
    each_backend(|t| async move {
        let db = &t.db;
        let mut ids = Vec::new();
        for r in ["a", "b", "c"] {
            let change = kiln_db::NewChange {
                vcs: None,
                author: "dev".into(),
                revision: Some(r.into()),
                files: vec![format!("{r}.txt")],
                ..Default::default()
            };
            ids.push(
                db.add_change(&change, 100, kiln_db::unrecorded)
                    .await
                    .unwrap(),
            );
        }
        let got = db.changes_after(ids[0], 10).await.unwrap();
        let revs: Vec<_> = got.iter().map(|c| c.revision.clone().unwrap()).collect();
        assert_eq!(revs, ["b", "c"], "{}", t.backend);
        assert_eq!(got[0].files, ["b.txt"]);
        assert_eq!(db.changes_after(ids[0], 1).await.unwrap().len(), 1);
    })
    .await;
}
