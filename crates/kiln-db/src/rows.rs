//! Reading columns out of rows with errors that name the column.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Result;

pub(crate) trait RowExt {
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn flag(&self, col: &str) -> Result<bool> {
        Ok(self.int(col)? != 0)
    }
}

impl RowExt for AnyRow {
    fn int(&self, col: &str) -> Result<i64> {
        Ok(self.try_get::<i64, _>(col)?)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        Ok(self.try_get::<Option<i64>, _>(col)?)
    }
    fn text(&self, col: &str) -> Result<String> {
        Ok(self.try_get::<String, _>(col)?)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        Ok(self.try_get::<Option<String>, _>(col)?)
    }
}

/// SHA-1 of a name, hex encoded: Buildbot's `*_hash` columns.
pub(crate) fn name_hash(name: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(name.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
