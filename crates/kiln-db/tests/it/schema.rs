use kiln_db::testing;

#[tokio::test]
async fn both_backends_end_with_the_same_tables_and_columns() {
    let sqlite = testing::sqlite().await.expect("sqlite");
    let sqlite_schema = sqlite.db.schema_summary().await.expect("sqlite schema");
    assert!(
        sqlite_schema.iter().any(|(t, _)| t == "logchunks"),
        "{sqlite_schema:?}"
    );
    assert!(
        sqlite_schema.len() >= 40,
        "expected Buildbot's table families, got {}",
        sqlite_schema.len()
    );
    if let Some(pg) = testing::postgres().await.expect("postgres") {
        let pg_schema = pg.db.schema_summary().await.expect("postgres schema");
        assert_eq!(sqlite_schema, pg_schema);
    }
}

#[tokio::test]
async fn reopening_a_database_keeps_its_data_and_does_not_migrate_twice() {
    let t = testing::sqlite().await.expect("sqlite");
    let id =
        t.db.find_master_id("host:/srv/master")
            .await
            .expect("master");
    t.db.close().await;
    let again = kiln_db::Writer::connect(&t.url).await.expect("reopen");
    assert_eq!(
        again
            .find_master_id("host:/srv/master")
            .await
            .expect("master"),
        id
    );
}

#[tokio::test]
async fn unsupported_urls_are_refused_with_a_clear_error() {
    let err = kiln_db::Writer::connect("mysql://localhost/x")
        .await
        .err()
        .expect("must fail");
    assert!(
        err.to_string().contains("unsupported database URL"),
        "{err}"
    );
}
