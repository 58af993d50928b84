use kiln_core::BuilderId;
use kiln_db::{LogType, MAX_CHUNK_BYTES, NewBuildSet, Writer};

use crate::each_backend;

pub async fn step(db: &Writer) -> kiln_core::StepId {
    let m = db.find_master_id("m").await.unwrap();
    let w = db.find_worker_id("w").await.unwrap();
    let b: BuilderId = db.find_builder_id("b").await.unwrap();
    let (bsid, brs) = db
        .add_buildset(
            &NewBuildSet {
                builders: vec![(b, 0)],
                submitted_at: 1,
                ..Default::default()
            },
            kiln_db::unrecorded,
        )
        .await
        .unwrap();
    let build = db
        .claim_and_start_build(brs[0].1, bsid, b, w, m, "", 1, kiln_db::unrecorded)
        .await
        .unwrap()
        .id;
    db.add_step(build, "shell", "", &[], None, 1)
        .await
        .unwrap()
        .0
}

#[tokio::test]
async fn log_lines_are_numbered_compressed_and_readable_while_running() {
    each_backend(|t| async move {
        let db = &t.db;
        let s = step(db).await;
        let log = db.add_log(s, "stdio", LogType::Stdio).await.unwrap();
        let dup = db.add_log(s, "stdio", LogType::Text).await.unwrap();
        assert_eq!(
            db.get_log(dup).await.unwrap().unwrap().slug,
            "stdio_2",
            "{}",
            t.backend
        );

        assert_eq!(
            db.append_log(log, 0, "hls -l\noout\n", false)
                .await
                .unwrap(),
            Some((0, 1))
        );
        assert_eq!(
            db.append_log(log, 2, "eerr\n", false).await.unwrap(),
            Some((2, 2))
        );
        assert_eq!(
            db.log_lines(log, 0, 100).await.unwrap(),
            vec!["hls -l", "oout", "eerr"]
        );
        assert_eq!(db.log_lines(log, 1, 1).await.unwrap(), vec!["oout"]);
        let row = db.get_log(log).await.unwrap().unwrap();
        assert_eq!((row.num_lines, row.complete), (3, false));

        // A large append is split into several chunks, each compressed, and reads back intact.
        let big: String = (0..20_000)
            .map(|i| format!("oline number {i} of a long and repetitive log\n"))
            .collect();
        assert_eq!(
            db.append_log(log, 3, &big, false).await.unwrap(),
            Some((3, 20_002))
        );
        let chunks = db.log_chunks(log, 0, 1000).await.unwrap();
        assert!(chunks.len() > 10, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.text.len() <= MAX_CHUNK_BYTES));
        let lines = db.log_lines(log, 19_000, 19_001).await.unwrap();
        assert_eq!(
            lines,
            vec![
                "oline number 18997 of a long and repetitive log",
                "oline number 18998 of a long and repetitive log"
            ]
        );
        // Finishing with nothing more to add only completes the log.
        assert_eq!(db.append_log(log, 20_003, "", true).await.unwrap(), None);
        let row = db.get_log(log).await.unwrap().unwrap();
        assert_eq!((row.num_lines, row.complete), (20_003, true));
    })
    .await;
}
