use kiln_db::listing::{Page, SqlValue};
use kiln_db::{NewTestResult, NewTestResultSet};

use crate::each_backend;
use crate::logs::step;

/// A set large enough that SQLite cannot take it as one query is still one transaction: every
/// result is there, named, and the set is complete with its counts.
#[tokio::test]
async fn a_large_test_result_set_is_recorded_whole() {
    each_backend(|t| async move {
        let db = &t.db;
        let stepid = step(db).await;
        let step = db.get_step(stepid).await.unwrap().unwrap();
        let results: Vec<NewTestResult> = (0..3_000)
            .map(|i| NewTestResult {
                test_name: Some(format!("suite::test_{i}")),
                test_code_path: Some(format!("src/t{}.rs", i % 7)),
                line: Some(i),
                duration_ns: None,
                value: if i % 10 == 0 { "0" } else { "1" }.into(),
            })
            .collect();
        let set = NewTestResultSet {
            builderid: 1,
            buildid: step.buildid.0,
            stepid: stepid.0,
            description: "test".into(),
            category: "pass_fail".into(),
            value_unit: "boolean".into(),
            tests_passed: 2_700,
            tests_failed: 300,
        };
        let id = db.add_test_result_set(&set, &results).await.unwrap();
        let (sets, _) = db
            .list_test_result_sets(&Page::eq("id", SqlValue::Int(id)))
            .await
            .unwrap();
        assert!(sets[0].complete, "{}", t.backend);
        assert_eq!(sets[0].tests_failed, Some(300), "{}", t.backend);
        let (rows, total) = db
            .list_test_results(&Page::eq("test_result_setid", SqlValue::Int(id)))
            .await
            .unwrap();
        assert_eq!(total, 3_000, "{}", t.backend);
        assert!(
            rows.iter()
                .any(|r| r.test_name.as_deref() == Some("suite::test_2999")
                    && r.test_code_path.as_deref() == Some("src/t3.rs")),
            "{}",
            t.backend
        );
    })
    .await;
}
