//! Reading columns out of rows with errors that name the column.
//!
//! Rows come from the driver, or packed: on SQLite the driver hands each row from its database
//! thread to ours through a small channel, a thread wake-up per row (about 15 µs), so a listing of
//! 1,000 rows cost 15 ms before anything was done with them. A listing there asks SQLite for one
//! row holding every row as a JSON array instead, and reads the columns out of that.

use std::sync::Arc;

use serde_json::Value;
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

/// A row of a listing, however it was read.
pub(crate) enum ListedRow {
    Driver(AnyRow),
    Packed(PackedRow),
}

impl RowExt for ListedRow {
    fn int(&self, col: &str) -> Result<i64> {
        match self {
            ListedRow::Driver(r) => r.int(col),
            ListedRow::Packed(r) => r.int(col),
        }
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        match self {
            ListedRow::Driver(r) => r.opt_int(col),
            ListedRow::Packed(r) => r.opt_int(col),
        }
    }
    fn text(&self, col: &str) -> Result<String> {
        match self {
            ListedRow::Driver(r) => r.text(col),
            ListedRow::Packed(r) => r.text(col),
        }
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        match self {
            ListedRow::Driver(r) => r.opt_text(col),
            ListedRow::Packed(r) => r.opt_text(col),
        }
    }
}

/// One row of a packed result: the columns' names, shared by every row, and its values.
pub(crate) struct PackedRow {
    pub(crate) names: Arc<[String]>,
    pub(crate) values: Vec<Value>,
}

impl PackedRow {
    fn value(&self, col: &str) -> Result<&Value> {
        self.names
            .iter()
            .position(|n| n == col)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| sqlx::Error::ColumnNotFound(col.to_string()).into())
    }

    fn mismatch(col: &str, expected: &str, found: &Value) -> crate::DbError {
        sqlx::Error::ColumnDecode {
            index: col.to_string(),
            source: format!("expected {expected}, found {found}").into(),
        }
        .into()
    }
}

impl RowExt for PackedRow {
    fn int(&self, col: &str) -> Result<i64> {
        self.opt_int(col)?
            .ok_or_else(|| PackedRow::mismatch(col, "an integer", &Value::Null))
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>> {
        match self.value(col)? {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(i64::from(*b))),
            v => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| PackedRow::mismatch(col, "an integer", v)),
        }
    }
    fn text(&self, col: &str) -> Result<String> {
        self.opt_text(col)?
            .ok_or_else(|| PackedRow::mismatch(col, "text", &Value::Null))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>> {
        match self.value(col)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            v => Err(PackedRow::mismatch(col, "text", v)),
        }
    }
}

/// The names of a select list's columns: each one's alias after `AS`, or its column name.
pub(crate) fn column_names(columns: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    let mut push = |item: &str| {
        let item = item.trim();
        let lower = item.to_ascii_lowercase();
        let name = match lower.rfind(" as ") {
            Some(i) => &item[i + 4..],
            None => item.rsplit('.').next().unwrap_or(item),
        };
        names.push(name.trim().to_string());
    };
    for (i, c) in columns.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                push(&columns[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    push(&columns[start..]);
    names
}

/// SHA-1 of a name, hex encoded: Buildbot's `*_hash` columns.
pub(crate) fn name_hash(name: &str) -> String {
    use sha1::Digest;
    let digest = sha1::Sha1::digest(name.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_are_the_aliases_or_the_columns() {
        assert_eq!(
            column_names("br.id AS id, name, COALESCE(a, b) AS first, s.enabled"),
            ["id", "name", "first", "enabled"]
        );
    }

    #[test]
    fn packed_columns_are_read_by_name_and_checked() {
        let row = PackedRow {
            names: vec!["id".to_string(), "name".to_string(), "gone".to_string()].into(),
            values: vec![Value::from(7), Value::from("x"), Value::Null],
        };
        assert_eq!(row.int("id").unwrap(), 7);
        assert_eq!(row.text("name").unwrap(), "x");
        assert_eq!(row.opt_text("gone").unwrap(), None);
        assert!(row.int("name").unwrap_err().to_string().contains("name"));
        assert!(row.text("gone").is_err());
        assert!(
            row.int("missing")
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
    }
}
