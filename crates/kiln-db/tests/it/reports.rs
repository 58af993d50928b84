//! The reporters' outbox: a report is stored once with its consumer's position, taken by one
//! master at a time in the order it was decided, retried when its attempt fails, and kept a while
//! after it is done.

use kiln_db::{NewReport, NextReport, ReportState};

use crate::each_backend;

fn report(dedup: &str) -> NewReport {
    NewReport {
        reporter: "mail".into(),
        dedup: dedup.into(),
        summary: format!("about {dedup}"),
        payload: format!("{{\"about\": \"{dedup}\"}}"),
    }
}

fn due(next: NextReport) -> kiln_db::ReportRow {
    match next {
        NextReport::Due(mut r) if r.len() == 1 => r.remove(0),
        other => panic!("expected a due report, got {other:?}"),
    }
}

#[tokio::test]
async fn reports_are_stored_once_leased_to_one_master_and_retried_in_order() {
    each_backend(|t| async move {
        let db = &t.db;
        let b = &t.backend;
        db.enqueue_reports("reporter:mail", 7, &[report("event:7")], 100, None)
            .await
            .unwrap();
        // Deciding the same event again (after a restart) stores nothing more, and keeps
        // what was decided first.
        let again = NewReport {
            payload: "{\"worded\": \"otherwise\"}".into(),
            ..report("event:7")
        };
        let stored = db
            .enqueue_reports("reporter:mail", 7, &[again], 101, None)
            .await
            .unwrap();
        assert!(stored.is_empty(), "{b}");
        db.enqueue_reports("reporter:mail", 9, &[report("event:9")], 102, None)
            .await
            .unwrap();
        assert_eq!(
            db.consumer_position("reporter:mail").await.unwrap(),
            Some(9),
            "{b}"
        );

        // Master 1 takes the oldest; master 2 must wait for its lease.
        let first = due(db.next_reports("mail", 1, 200, 300, 1).await.unwrap());
        assert_eq!(first.dedup, "event:7", "{b}");
        assert_eq!(first.payload, report("event:7").payload, "{b}");
        assert_eq!(
            db.next_reports("mail", 2, 200, 300, 1).await.unwrap(),
            NextReport::At(500),
            "{b}"
        );
        // Its attempt fails: it is tried again at 210, and holds back the one after it.
        db.report_failed(first.id, "connection refused", Some(210), 201)
            .await
            .unwrap();
        assert_eq!(
            db.next_reports("mail", 2, 205, 300, 1).await.unwrap(),
            NextReport::At(210),
            "{b}"
        );
        let again = due(db.next_reports("mail", 2, 210, 300, 1).await.unwrap());
        assert_eq!((again.id, again.attempts), (first.id, 1), "{b}");
        db.reports_delivered(&[again.id], 211).await.unwrap();
        let second = due(db.next_reports("mail", 2, 212, 300, 1).await.unwrap());
        assert_eq!(second.dedup, "event:9", "{b}");
        db.report_failed(second.id, "550 refused", None, 213)
            .await
            .unwrap();
        assert_eq!(
            db.next_reports("mail", 2, 214, 300, 1).await.unwrap(),
            NextReport::Empty,
            "{b}"
        );

        let statuses = db.reporter_statuses().await.unwrap();
        assert_eq!(statuses.len(), 1, "{b}");
        let s = &statuses[0];
        assert_eq!((s.pending, s.sent, s.failed), (0, 1, 1), "{b}");
        assert_eq!(s.last_success_at, Some(211), "{b}");
        assert_eq!(s.last_error, Some(("550 refused".into(), 213)), "{b}");
        let rows = db.reports("mail", 10).await.unwrap();
        assert_eq!(rows[0].state, ReportState::Failed, "{b}");
        assert_eq!(rows[1].state, ReportState::Sent, "{b}");

        // Only the newest finished reports are kept; pending ones always are.
        db.enqueue_reports("", 0, &[report("missing:w1:1")], 300, None)
            .await
            .unwrap();
        assert_eq!(db.prune_reports("mail", 1).await.unwrap(), 1, "{b}");
        let left = db.reports("mail", 10).await.unwrap();
        let dedups: Vec<&str> = left.iter().map(|r| r.dedup.as_str()).collect();
        assert_eq!(dedups, ["missing:w1:1", "event:9"], "{b}");
        let payloads: Vec<&str> = left.iter().map(|r| r.payload.as_str()).collect();
        assert_eq!(
            payloads,
            [report("missing:w1:1").payload, report("event:9").payload],
            "{b}"
        );
    })
    .await;
}

#[tokio::test]
async fn due_reports_are_leased_together_up_to_the_first_that_must_wait() {
    each_backend(|t| async move {
        let db = &t.db;
        let b = &t.backend;
        let news: Vec<NewReport> = ["a", "b", "c", "d"].iter().map(|d| report(d)).collect();
        db.enqueue_reports("reporter:mail", 4, &news, 100, None)
            .await
            .unwrap();
        let dedups = |next: NextReport| match next {
            NextReport::Due(rows) => rows.into_iter().map(|r| r.dedup).collect::<Vec<_>>(),
            other => panic!("expected due reports, got {other:?}"),
        };
        let ids: Vec<i64> = db
            .reports("mail", 10)
            .await
            .unwrap()
            .into_iter()
            .rev()
            .map(|r| r.id)
            .collect();
        // The limit is kept, in order.
        assert_eq!(
            dedups(db.next_reports("mail", 1, 200, 300, 2).await.unwrap()),
            ["a", "b"],
            "{b}"
        );
        // "b" failed and waits until 400: "a" went out, "c" and "d" wait behind "b".
        db.reports_delivered(&[ids[0]], 201).await.unwrap();
        db.report_failed(ids[1], "refused", Some(400), 201)
            .await
            .unwrap();
        assert_eq!(
            db.next_reports("mail", 1, 202, 300, 10).await.unwrap(),
            NextReport::At(400),
            "{b}"
        );
        assert_eq!(
            dedups(db.next_reports("mail", 1, 400, 300, 10).await.unwrap()),
            ["b", "c", "d"],
            "{b}"
        );
        // Another master gets none of those this master holds.
        assert_eq!(
            db.next_reports("mail", 2, 401, 300, 10).await.unwrap(),
            NextReport::At(700),
            "{b}"
        );
        db.reports_delivered(&ids[1..], 402).await.unwrap();
        let s = &db.reporter_statuses().await.unwrap()[0];
        assert_eq!((s.pending, s.sent, s.failed), (0, 4, 0), "{b}");
    })
    .await;
}

#[tokio::test]
async fn reports_stored_for_a_master_come_back_leased_to_it() {
    each_backend(|t| async move {
        let db = &t.db;
        let b = &t.backend;
        let stored = db
            .enqueue_reports(
                "reporter:mail",
                3,
                &[report("event:2"), report("event:3")],
                100,
                Some((1, 400)),
            )
            .await
            .unwrap();
        let dedups: Vec<&str> = stored.iter().map(|r| r.dedup.as_str()).collect();
        assert_eq!(dedups, ["event:2", "event:3"], "{b}");
        assert!(stored[0].id < stored[1].id, "{b}");
        assert_eq!(stored[1].payload, report("event:3").payload, "{b}");
        assert_eq!(
            (stored[0].state, stored[0].attempts),
            (ReportState::Pending, 0)
        );
        // Several reporters' decisions go in one transaction, each report back to its own
        // reporter though they are about the same event.
        let irc = NewReport {
            reporter: "irc".into(),
            payload: "{\"line\": \"event:3\"}".into(),
            ..report("event:3")
        };
        let decided = |consumer: &str, position, reports| kiln_db::Decided {
            consumer: consumer.into(),
            position,
            reports,
        };
        let update = kiln_db::OutboxUpdate {
            decided: vec![
                decided("reporter:irc", 3, vec![irc.clone()]),
                decided("reporter:mail", 3, vec![report("event:3")]),
            ],
            delivered: Vec::new(),
        };
        let both = db
            .update_outbox(&update, 100, Some((1, 400)))
            .await
            .unwrap();
        assert_eq!(both.len(), 1, "{b}");
        assert_eq!(
            (both[0].reporter.as_str(), both[0].dedup.as_str()),
            ("irc", "event:3")
        );
        let kept = |reporter: &'static str| async move {
            db.reports(reporter, 1).await.unwrap().remove(0).payload
        };
        assert_eq!(kept("irc").await, irc.payload, "{b}");
        assert_eq!(kept("mail").await, report("event:3").payload, "{b}");
        assert_eq!(
            db.consumer_position("reporter:irc").await.unwrap(),
            Some(3),
            "{b}"
        );
        // Stored again, as after a restart, they are not handed over twice.
        let again = db
            .enqueue_reports(
                "reporter:mail",
                3,
                &[report("event:3")],
                101,
                Some((1, 400)),
            )
            .await
            .unwrap();
        assert!(again.is_empty(), "{b}");
        // Another master waits for the lease; the master that stored them may take them.
        assert_eq!(
            db.next_reports("mail", 2, 200, 300, 8).await.unwrap(),
            NextReport::At(400),
            "{b}"
        );
        let ids: Vec<i64> = match db.next_reports("mail", 1, 200, 300, 8).await.unwrap() {
            NextReport::Due(rows) => rows.iter().map(|r| r.id).collect(),
            other => panic!("{other:?} ({b})"),
        };
        assert_eq!(ids, [stored[0].id, stored[1].id], "{b}");
        // Once the leases ran out, so may any master.
        db.enqueue_reports(
            "reporter:mail",
            4,
            &[report("event:4")],
            500,
            Some((1, 600)),
        )
        .await
        .unwrap();
        let taken: Vec<i64> = match db.next_reports("mail", 2, 900, 300, 8).await.unwrap() {
            NextReport::Due(rows) => rows.iter().map(|r| r.id).collect(),
            other => panic!("{other:?} ({b})"),
        };
        assert_eq!(taken.len(), 3, "{b}");
        // Deliveries are recorded in the transaction that stores what was decided next.
        let update = kiln_db::OutboxUpdate {
            decided: vec![decided("reporter:mail", 5, vec![report("event:5")])],
            delivered: taken,
        };
        let next = db
            .update_outbox(&update, 901, Some((2, 1200)))
            .await
            .unwrap();
        assert_eq!(next.len(), 1, "{b}");
        let statuses = db.reporter_statuses().await.unwrap();
        let mail = statuses.iter().find(|s| s.reporter == "mail").unwrap();
        assert_eq!((mail.pending, mail.sent, mail.failed), (1, 3, 0), "{b}");
        assert_eq!(
            db.consumer_position("reporter:mail").await.unwrap(),
            Some(5),
            "{b}"
        );
    })
    .await;
}
