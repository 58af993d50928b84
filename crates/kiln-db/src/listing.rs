//! Collection queries pushed into SQL: the filters, order and paging of the REST API.
//!
//! The API layer maps each field of a resource to a column of its table (see the `*_COLUMNS`
//! tables of each family) and passes the filters it can push down in a [`Page`]. Anything it
//! cannot push down it evaluates in memory, as Buildbot does.

use std::sync::Arc;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Arguments};

use crate::connection::Backend;
use crate::rows::{ListedRow, PackedRow, column_names};

/// A comparison from the REST API's `{field}__{op}={value}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    In,
    NotIn,
    /// One of the values, for a list that most rows match (every builder shown on a page): the
    /// rows are read in the listing's order and tested, rather than gathered through an index
    /// on the column and sorted, which for most of a table is far slower.
    Among,
    /// The row's list, kept in a table of its own, has an element equal to one of the values:
    /// `files__contains` on changes. The filter's column is the row's id.
    Has(Elements),
}

/// A list kept in a table of its own, one row per element (a change's files in `change_files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elements {
    pub table: &'static str,
    /// The column of `table` that names the row the element belongs to.
    pub owner: &'static str,
    /// The column of `table` that holds the element.
    pub element: &'static str,
}

/// A value to compare a column with.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Null,
    Int(i64),
    Text(String),
    /// Binary data; only written, never compared in a filter.
    Bytes(Vec<u8>),
}

/// One pushed-down condition on a column.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub column: &'static str,
    pub op: FilterOp,
    pub values: Vec<SqlValue>,
}

/// What a listing returns: some rows, filtered, ordered and paged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    pub filters: Vec<Filter>,
    /// Columns to order by; `true` means descending. The id breaks ties.
    pub order: Vec<(&'static str, bool)>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// Whether a limited listing also counts every row that matches, as the API's `meta.total`
    /// reports; that costs a scan of them all, so only the API asks for it. Without it, the
    /// total is the number of rows returned.
    pub count_total: bool,
}

impl Page {
    /// A page with one equality filter.
    pub fn eq(column: &'static str, value: SqlValue) -> Page {
        Page::default().and(column, FilterOp::Eq, value)
    }

    /// A page of the rows whose integer `column` is one of `values`.
    pub fn among(column: &'static str, values: impl IntoIterator<Item = i64>) -> Page {
        Page {
            filters: vec![Filter {
                column,
                op: FilterOp::In,
                values: values.into_iter().map(SqlValue::Int).collect(),
            }],
            ..Page::default()
        }
    }

    pub fn and(mut self, column: &'static str, op: FilterOp, value: SqlValue) -> Page {
        self.filters.push(Filter {
            column,
            op,
            values: vec![value],
        });
        self
    }
}

/// A collection that grows with the history kept: what its statements select from, and its id
/// column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    Builds,
    Steps,
    Logs,
    BuildRequests,
    BuildSets,
    SourceStamps,
    Changes,
    TestResultSets,
    TestResults,
}

impl Listed {
    /// The `FROM` of the collection's listing statements.
    pub fn from(self) -> &'static str {
        match self {
            Listed::Builds => "builds",
            Listed::Steps => "steps",
            Listed::Logs => "logs",
            Listed::BuildRequests => crate::buildrequests::FROM,
            Listed::BuildSets => "buildsets",
            Listed::SourceStamps => "sourcestamps",
            Listed::Changes => "changes",
            Listed::TestResultSets => "test_result_sets",
            Listed::TestResults => crate::testresults::RESULTS_FROM,
        }
    }

    /// The column that identifies a row, which breaks ties in every order.
    pub fn id_column(self) -> &'static str {
        match self {
            Listed::BuildRequests => "br.id",
            Listed::Changes => "changeid",
            _ => "id",
        }
    }
}

/// The kind of a column, which decides how API strings convert to SQL values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    Int,
    Bool,
    Text,
}

/// `n` numbered placeholders from `$first` on, comma-separated, for an `IN (…)` list.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A subquery giving the ids `ids`, bound as one JSON array (`$1`), for `IN (…)`: a statement
/// that takes a list this way is the same text whatever the list's length, so the database
/// compiles it once, where a placeholder for each id made a new statement of every length.
pub(crate) fn json_ids(
    backend: Backend,
    ids: impl IntoIterator<Item = i64>,
) -> (&'static str, SqlValue) {
    let list: Vec<i64> = ids.into_iter().collect();
    let subquery = match backend {
        Backend::Sqlite => "SELECT value FROM json_each($1)",
        Backend::Postgres => {
            "SELECT CAST(value AS BIGINT) FROM json_array_elements_text(CAST($1 AS json))"
        }
    };
    (
        subquery,
        SqlValue::Text(serde_json::Value::from(list).to_string()),
    )
}

/// Values one statement binds at most in an `IN (…)` list: well under SQLite's limit.
pub(crate) const IN_LIST_MAX: usize = 5000;

/// The columns `columns` (a plain list, no expressions) read through the table alias `alias`.
pub(crate) fn qualified(alias: &str, columns: &str) -> String {
    columns
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Builds the `WHERE` clause for `page` with `$N` placeholders, appending the values to bind.
pub(crate) fn where_clause(page: &Page, backend: Backend, binds: &mut Vec<SqlValue>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for f in &page.filters {
        // A unary plus keeps both databases from using an index on the column.
        let column = if f.op == FilterOp::Among {
            format!("+{}", f.column)
        } else {
            f.column.to_string()
        };
        let each = |cmp: &str, v: &SqlValue, binds: &mut Vec<SqlValue>| -> String {
            if *v == SqlValue::Null {
                return match cmp {
                    "=" => format!("{column} IS NULL"),
                    "<>" => format!("{column} IS NOT NULL"),
                    _ => "1 = 0".to_string(),
                };
            }
            binds.push(v.clone());
            format!("{column} {cmp} ${}", binds.len())
        };
        // The values other than NULL are compared as one `IN` list: a chain of `OR`s costs
        // SQLite a comparison of each row with every value (eight times the time for 30
        // values), and past 1,000 values it is nested deeper than SQLite parses at all.
        let compared = |negated: bool, binds: &mut Vec<SqlValue>| -> Option<String> {
            let first = binds.len() + 1;
            binds.extend(f.values.iter().filter(|v| **v != SqlValue::Null).cloned());
            let (equal, within) = if negated {
                ("<>", "NOT IN")
            } else {
                ("=", "IN")
            };
            match binds.len() + 1 - first {
                0 => None,
                1 => Some(format!("{column} {equal} ${first}")),
                n => Some(format!("{column} {within} ({})", placeholders(first, n))),
            }
        };
        let has_null = f.values.contains(&SqlValue::Null);
        let part = match f.op {
            FilterOp::Eq | FilterOp::In | FilterOp::Among => {
                let mut alts: Vec<String> = compared(false, binds).into_iter().collect();
                if has_null {
                    alts.push(format!("{column} IS NULL"));
                }
                if alts.is_empty() {
                    "1 = 0".to_string()
                } else {
                    format!("({})", alts.join(" OR "))
                }
            }
            FilterOp::Ne | FilterOp::NotIn => {
                let mut alts: Vec<String> = compared(true, binds)
                    .into_iter()
                    // NULL is unequal to every value, as in Python.
                    .map(|c| format!("({c} OR {} IS NULL)", f.column))
                    .collect();
                if has_null {
                    alts.push(format!("{column} IS NOT NULL"));
                }
                if alts.is_empty() {
                    "1 = 1".to_string()
                } else {
                    format!("({})", alts.join(" AND "))
                }
            }
            FilterOp::Lt | FilterOp::Le | FilterOp::Gt | FilterOp::Ge => {
                let cmp = match f.op {
                    FilterOp::Lt => "<",
                    FilterOp::Le => "<=",
                    FilterOp::Gt => ">",
                    _ => ">=",
                };
                let alts: Vec<String> = f.values.iter().map(|v| each(cmp, v, binds)).collect();
                if alts.is_empty() {
                    "1 = 1".to_string()
                } else {
                    format!("({})", alts.join(" AND "))
                }
            }
            FilterOp::Has(list) => {
                if f.values.is_empty() {
                    "1 = 0".to_string()
                } else {
                    let alts: Vec<String> = f
                        .values
                        .iter()
                        .map(|v| {
                            binds.push(v.clone());
                            format!("{} = ${}", list.element, binds.len())
                        })
                        .collect();
                    format!(
                        "{} IN (SELECT {} FROM {} WHERE {})",
                        f.column,
                        list.owner,
                        list.table,
                        alts.join(" OR ")
                    )
                }
            }
            FilterOp::Contains => {
                let alts: Vec<String> = f
                    .values
                    .iter()
                    .map(|v| {
                        let text = match v {
                            SqlValue::Text(t) => t.clone(),
                            SqlValue::Int(i) => i.to_string(),
                            SqlValue::Null => String::new(),
                            SqlValue::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                        };
                        binds.push(SqlValue::Text(text));
                        // instr/strpos, unlike LIKE, are case-sensitive on both engines and have no
                        // wildcard characters to escape.
                        match backend {
                            Backend::Sqlite => format!("instr({}, ${}) > 0", f.column, binds.len()),
                            Backend::Postgres => {
                                format!("strpos({}, ${}) > 0", f.column, binds.len())
                            }
                        }
                    })
                    .collect();
                if alts.is_empty() {
                    "1 = 0".to_string()
                } else {
                    format!("({})", alts.join(" OR "))
                }
            }
        };
        parts.push(part);
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", parts.join(" AND "))
    }
}

/// `ORDER BY … LIMIT … OFFSET …` for `page`, with `id_column` as the final tie-breaker.
pub(crate) fn order_clause(page: &Page, id_column: &str) -> String {
    let mut keys: Vec<String> = page
        .order
        .iter()
        .map(|(c, desc)| format!("{c}{}", if *desc { " DESC" } else { "" }))
        .collect();
    if !page.order.iter().any(|(c, _)| *c == id_column) {
        keys.push(id_column.to_string());
    }
    let mut out = format!(" ORDER BY {}", keys.join(", "));
    match (page.limit, page.offset) {
        (Some(l), o) => out.push_str(&format!(
            " LIMIT {} OFFSET {}",
            l.max(0),
            o.unwrap_or(0).max(0)
        )),
        (None, Some(o)) => out.push_str(&format!(" LIMIT {} OFFSET {}", i64::MAX, o.max(0))),
        (None, None) => {}
    }
    out
}

pub(crate) fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments>,
    binds: &[SqlValue],
) -> Query<'q, Any, AnyArguments> {
    for b in binds {
        q = match b {
            SqlValue::Null => q.bind(None::<i64>),
            SqlValue::Int(i) => q.bind(*i),
            SqlValue::Text(t) => q.bind(t.clone()),
            SqlValue::Bytes(b) => q.bind(b.clone()),
        };
    }
    q
}

/// The binds as one set of arguments, for a query that is not a `Query` (`query_scalar_with`).
fn arguments(binds: &[SqlValue]) -> Result<AnyArguments, sqlx::Error> {
    let mut arguments = AnyArguments::default();
    for b in binds {
        match b {
            SqlValue::Null => arguments.add(None::<i64>),
            SqlValue::Int(i) => arguments.add(*i),
            SqlValue::Text(t) => arguments.add(t.clone()),
            SqlValue::Bytes(b) => arguments.add(b.clone()),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(arguments)
}

/// The rows one select packed into column `index` of `row`, as JSON arrays of its columns.
fn unpack(row: &AnyRow, index: usize, names: Arc<[String]>) -> crate::Result<Vec<ListedRow>> {
    let text: String = sqlx::Row::try_get(row, index)?;
    let rows: Vec<Vec<serde_json::Value>> =
        serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
            index: index.to_string(),
            source: Box::new(e),
        })?;
    Ok(rows
        .into_iter()
        .map(|values| {
            ListedRow::Packed(PackedRow {
                names: names.clone(),
                values,
            })
        })
        .collect())
}

/// A `SELECT {columns} {rest}` whose parameters are numbered from `$1`, to run with others
/// ([`crate::Db::select_each`]).
#[derive(Debug, Clone)]
pub(crate) struct Select {
    pub columns: String,
    pub rest: String,
    pub binds: Vec<SqlValue>,
}

impl crate::Db {
    /// Runs `SELECT {columns} {rest}` and returns its rows. On SQLite the rows come back packed
    /// into one (see [`crate::rows`]); the order of the statement is kept.
    pub(crate) async fn select(
        &self,
        columns: &str,
        rest: &str,
        binds: &[SqlValue],
    ) -> crate::Result<Vec<ListedRow>> {
        let select = Select {
            columns: columns.to_string(),
            rest: rest.to_string(),
            binds: binds.to_vec(),
        };
        Ok(self
            .select_each(vec![select])
            .await?
            .pop()
            .unwrap_or_default())
    }

    /// Runs each select and returns the rows of each, in order. On SQLite they go as one
    /// statement whose one row holds each select's rows packed into a column: one round trip to
    /// SQLite's thread for all of them, which costs far more than reading a few rows. One
    /// statement rather than one per select, because sqlx hands every statement's outcome across
    /// threads on its own, and each hand-over can wake the reading task again; selects with more
    /// parameters than one statement takes go as several statements of the same query.
    /// PostgreSQL takes one statement per query.
    pub(crate) async fn select_each(
        &self,
        selects: Vec<Select>,
    ) -> crate::Result<Vec<Vec<ListedRow>>> {
        if self.backend() == Backend::Postgres {
            let mut out = Vec::with_capacity(selects.len());
            let mut conn = self.reading().await?;
            for s in selects {
                let sql = format!("SELECT {} {}", s.columns, s.rest);
                let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &s.binds)
                    .fetch_all(&mut *conn)
                    .await?;
                out.push(rows.into_iter().map(ListedRow::Driver).collect());
            }
            return Ok(out);
        }
        if selects.is_empty() {
            return Ok(Vec::new());
        }
        let mut packs = Vec::with_capacity(selects.len());
        let mut names = Vec::with_capacity(selects.len());
        let mut binds = Vec::new();
        for s in &selects {
            let columns: Arc<[String]> = column_names(&s.columns).into();
            let packed: Vec<String> = columns.iter().map(|n| format!("listed.\"{n}\"")).collect();
            // An aggregate over a subquery with ORDER BY reads the subquery's rows in its
            // order: SQLite does not flatten such a subquery into the aggregate.
            let pack = format!(
                "(SELECT json_group_array(json_array({})) FROM (SELECT {} {}) AS listed)",
                packed.join(", "),
                s.columns,
                s.rest
            );
            packs.push(crate::batch::renumber(&pack, binds.len()));
            binds.extend(s.binds.iter().cloned());
            names.push(columns);
        }
        // Each statement gives one row, a column for each of its selects.
        let statements = crate::batch::parameter_groups(selects.iter().map(|s| s.binds.len()));
        let sql: String = statements
            .iter()
            .map(|group| format!("SELECT {};\n", packs[group.clone()].join(",\n")))
            .collect();
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &binds)
            .fetch_all(&mut *self.reading().await?)
            .await?;
        if rows.len() != statements.len() {
            return Err(crate::DbError::Corrupt(format!(
                "{} statements read together gave {} rows",
                statements.len(),
                rows.len()
            )));
        }
        let columns = rows
            .iter()
            .zip(&statements)
            .flat_map(|(row, group)| (0..group.len()).map(move |i| (row, i)));
        columns
            .zip(names)
            .map(|((row, i), names)| unpack(row, i, names))
            .collect()
    }

    /// The ids of the rows of `listed` that the page's filters keep, in its order and paged, and
    /// the number of rows that match before paging. A large answer is read as its ids first
    /// (eight bytes a row), then fetched and written out a batch of rows at a time.
    pub async fn list_ids(&self, listed: Listed, page: &Page) -> crate::Result<(Vec<i64>, i64)> {
        let id = listed.id_column();
        let mut binds = Vec::new();
        let where_ = where_clause(page, self.backend(), &mut binds);
        let rest = format!("FROM {}{where_}{}", listed.from(), order_clause(page, id));
        let ids = self.select_ids(id, &rest, &binds).await?;
        let total = self
            .total(listed.from(), &where_, page, &binds, ids.len())
            .await?;
        Ok((ids, total))
    }

    /// Runs `SELECT {id} {rest}` and returns the ids in its order. They are read as numbers
    /// alone, not as rows: on SQLite packed into one JSON array of numbers, on PostgreSQL each
    /// row dropped once its id is taken, so 100,000 ids cost their 800 KB and not a row each
    /// (which took 13 MB for every large answer being planned).
    async fn select_ids(
        &self,
        id: &str,
        rest: &str,
        binds: &[SqlValue],
    ) -> crate::Result<Vec<i64>> {
        let sql = format!("SELECT {id} AS id {rest}");
        if self.backend() == Backend::Postgres {
            let query =
                sqlx::query_scalar_with::<_, i64, _>(sqlx::AssertSqlSafe(sql), arguments(binds)?);
            return Ok(query.fetch_all(&mut *self.reading().await?).await?);
        }
        let sql = format!("SELECT json_group_array(listed.id) AS packed FROM ({sql}) AS listed");
        let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), binds)
            .fetch_one(&mut *self.reading().await?)
            .await?;
        let text: String = sqlx::Row::try_get(&row, "packed")?;
        let ids = serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
            index: "packed".to_string(),
            source: Box::new(e),
        })?;
        Ok(ids)
    }

    /// Runs `SELECT {columns} FROM {from}` with the page's filters, order and paging, and returns
    /// the rows and the number of rows that match before paging.
    pub(crate) async fn list_rows(
        &self,
        columns: &str,
        from: &str,
        id_column: &str,
        page: &Page,
    ) -> crate::Result<(Vec<ListedRow>, i64)> {
        let mut binds = Vec::new();
        let where_ = where_clause(page, self.backend(), &mut binds);
        let rest = format!("FROM {from}{where_}{}", order_clause(page, id_column));
        let rows = self.select(columns, &rest, &binds).await?;
        let total = self.total(from, &where_, page, &binds, rows.len()).await?;
        Ok((rows, total))
    }

    /// The number of rows of `from` that `where_` keeps: `read` when the page took them all,
    /// counted in the database when it was paged.
    async fn total(
        &self,
        from: &str,
        where_: &str,
        page: &Page,
        binds: &[SqlValue],
        read: usize,
    ) -> crate::Result<i64> {
        if !(page.count_total && (page.limit.is_some() || page.offset.is_some())) {
            return Ok(read as i64);
        }
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {}{where_}",
            count_from(from, page)
        );
        let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), binds)
            .fetch_one(&mut *self.reading().await?)
            .await?;
        Ok(sqlx::Row::try_get::<i64, _>(&row, "n")?)
    }
}

/// What to count the rows of `from` in: a join that keeps the rows of its first table, and that no
/// filter reads, is left out (SQLite would otherwise look up every joined row only to count it).
fn count_from<'a>(from: &'a str, page: &Page) -> &'a str {
    let reads_claims = page.filters.iter().any(|f| f.column.starts_with("c."));
    match from {
        crate::buildrequests::FROM if !reads_claims => crate::buildrequests::UNJOINED,
        _ => from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_without_their_claims_unless_a_filter_reads_them() {
        let from = crate::buildrequests::FROM;
        let page = Page::eq("br.complete", SqlValue::Int(0));
        assert_eq!(count_from(from, &page), crate::buildrequests::UNJOINED);
        let page = page.and("c.masterid", FilterOp::Eq, SqlValue::Int(1));
        assert_eq!(count_from(from, &page), from);
        assert_eq!(count_from("builds", &Page::default()), "builds");
    }
}
