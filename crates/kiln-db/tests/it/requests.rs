use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{BuildSetId, Properties, Results};
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
            .add_buildset(&buildset(vec![(b1, 0), (b2, 5)], 100))
            .await
            .unwrap();
        assert_eq!(brs.len(), 2, "{}", t.backend);
        let (bs2, _) = db
            .add_buildset(&buildset(vec![(b1, 0)], 101))
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
        let (bsid, brs) = db.add_buildset(&buildset(vec![(b, 0)], 100)).await.unwrap();
        let brid = brs[0].1;
        assert_eq!(db.unclaimed_buildrequests().await.unwrap().len(), 1);
        db.claim_buildrequest(brid, m1, 101).await.unwrap();
        assert!(
            matches!(
                db.claim_buildrequest(brid, m2, 102).await,
                Err(DbError::AlreadyClaimed(_))
            ),
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
        assert_eq!(db.unclaim_master_requests(m1).await.unwrap(), vec![brid]);
        assert_eq!(db.unclaimed_buildrequests().await.unwrap().len(), 1);

        assert_eq!(db.buildset_request_results(bsid).await.unwrap(), None);
        let done = db
            .complete_buildrequests(&[brid], Results::Warnings, m2, 110)
            .await
            .unwrap();
        assert_eq!(done, vec![(brid, bsid)]);
        assert!(
            db.complete_buildrequests(&[brid], Results::Failure, m2, 111)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            db.buildset_request_results(bsid).await.unwrap(),
            Some(vec![Results::Warnings])
        );
        assert!(
            db.complete_buildset(bsid, Results::Warnings, 112)
                .await
                .unwrap()
        );
        assert!(
            !db.complete_buildset(bsid, Results::Warnings, 113)
                .await
                .unwrap()
        );
        assert!(matches!(
            db.claim_buildrequest(brid, m2, 114).await,
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
            db.add_buildset(&buildset(vec![(b, i)], 100 + i))
                .await
                .unwrap();
        }
        let page = Page {
            filters: vec![],
            order: vec![("br.priority", true)],
            limit: Some(2),
            offset: Some(1),
        };
        let queue = db.pending_for_builder(b, 3).await.unwrap();
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
        let mut page = Page::default().and("id", FilterOp::Ne, SqlValue::Int(1));
        page.filters[0].values.push(SqlValue::Int(2));
        assert_eq!(db.list_buildsets(&page).await.unwrap().1, 3);
        let page = Page::default().and("complete_at", FilterOp::Eq, SqlValue::Null);
        assert_eq!(db.list_buildsets(&page).await.unwrap().1, 5);
        assert!(db.get_buildset(BuildSetId(999)).await.unwrap().is_none());
    })
    .await;
}
