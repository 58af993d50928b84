use kiln_db::UserUpdate;

use crate::each_backend;

/// Hashes of an older kind are found by their prefix, taken literally, and replaced only while
/// they are still what was read.
#[tokio::test]
async fn password_hashes_are_found_by_prefix_and_replaced_only_if_unchanged() {
    each_backend(|t| async move {
        let db = &t.db;
        for (name, hash) in [
            ("a", "sha256i$1$s$00"),
            ("b", "$2b$12$xyz"),
            ("c", "sha256iX1$s$00"),
            ("d", "sha256i$2$t$11"),
        ] {
            let update = UserUpdate {
                bb_username: Some(name.into()),
                bb_password: Some(hash.into()),
                ..Default::default()
            };
            db.add_user(name, &update).await.unwrap();
        }
        // A `_` or `%` in the prefix is not a wildcard.
        let found = db.password_hashes_starting("sha256i$").await.unwrap();
        assert_eq!(
            found,
            vec![(1, "sha256i$1$s$00".into()), (4, "sha256i$2$t$11".into())]
        );
        assert!(
            db.password_hashes_starting("sha256_")
                .await
                .unwrap()
                .is_empty()
        );

        assert!(
            db.replace_password_hash(1, "sha256i$1$s$00", "new")
                .await
                .unwrap()
        );
        // Changed meanwhile: left alone.
        assert!(
            !db.replace_password_hash(4, "sha256i$9$t$11", "new")
                .await
                .unwrap()
        );
        assert_eq!(
            db.user_password_hash("a").await.unwrap().as_deref(),
            Some("new")
        );
        assert_eq!(
            db.user_password_hash("d").await.unwrap().as_deref(),
            Some("sha256i$2$t$11")
        );
    })
    .await;
}
