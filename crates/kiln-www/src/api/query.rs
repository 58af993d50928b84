//! The query options of collection GETs (`field`, filters, `order`, `limit`, `offset`,
//! `property`), their push-down into SQL, and their in-memory evaluation for what cannot be pushed.

use std::cmp::Ordering;

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};
use serde_json::Value;

use super::ApiError;

/// How a field of a resource is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    /// A 0/1 column.
    Bool,
    /// True when the named column is not NULL (`complete` from `complete_at`).
    NotNull,
    /// A build request's `claimed`: true when its claim's column is not NULL. As in Buildbot, a
    /// filter that asks with one value for the unclaimed requests (`claimed=false`,
    /// `claimed__ne=true`) keeps only the incomplete ones, whose completeness is the named
    /// column: those are the requests waiting for a worker.
    Claim(&'static str),
    /// Not in a column: evaluated in memory.
    Computed,
    /// A list kept in a table of its own, whose `contains` filter runs in the database; the
    /// field's column is the row's id.
    Elements(kiln_db::listing::Elements),
    /// A list of integers with at most one element, held in the named column, NULL when empty (a
    /// change's `parent_changeids`): its `contains` filter is a test of the column in the
    /// database; other operators compare whole lists, in memory.
    ListOfOne,
}

/// A field of a resource and the SQL column behind it.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub column: &'static str,
    pub kind: Kind,
}

pub const fn f(name: &'static str, column: &'static str, kind: Kind) -> Field {
    Field { name, column, kind }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiFilter {
    pub field: String,
    pub op: FilterOp,
    pub values: Vec<String>,
}

/// A parsed query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub fields: Vec<String>,
    pub filters: Vec<ApiFilter>,
    pub order: Vec<(String, bool)>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub properties: Vec<String>,
}

/// Collections larger than this are not filtered in memory; the client is asked to narrow its query.
pub const MAX_SCAN: i64 = 200_000;

/// Parses a query string. Filters must name a field of the resource; anything unknown is a 400.
pub fn parse(raw: &str, fields: &[Field], extra: &[&str]) -> Result<Query, ApiError> {
    let mut q = Query::default();
    // Form decoding (`+` is a space, `%XX` a byte, invalid UTF-8 replaced) by the crate made for it.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|e| ApiError::BadRequest(format!("malformed query string: {e}")))?;
    for (k, v) in pairs {
        let int = |what: &str| {
            v.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("{what} must be an integer, not '{v}'")))
        };
        match k.as_str() {
            "field" => q.fields.push(v.clone()),
            "order" => {
                let (name, desc) = match v.strip_prefix('-') {
                    Some(n) => (n.to_string(), true),
                    None => (v.clone(), false),
                };
                if !fields.iter().any(|f| f.name == name) {
                    return Err(ApiError::BadRequest(format!(
                        "invalid order field '{name}'"
                    )));
                }
                q.order.push((name, desc));
            }
            // A negative limit is no limit, as in Buildbot (`limit=-1`).
            "limit" => q.limit = Some(int("limit")?).filter(|l| *l >= 0),
            "offset" => q.offset = Some(int("offset")?.max(0)),
            "property" => q.properties.push(v.clone()),
            _ if extra.contains(&k.as_str()) => {}
            _ => {
                let (name, op) = match k.rsplit_once("__") {
                    Some((n, op)) => (
                        n.to_string(),
                        match op {
                            "eq" => FilterOp::Eq,
                            "ne" => FilterOp::Ne,
                            "lt" => FilterOp::Lt,
                            "le" => FilterOp::Le,
                            "gt" => FilterOp::Gt,
                            "ge" => FilterOp::Ge,
                            "contains" => FilterOp::Contains,
                            "in" => FilterOp::In,
                            "notin" => FilterOp::NotIn,
                            other => {
                                return Err(ApiError::BadRequest(format!(
                                    "unrecognized query parameter '{k}': unknown operator '{other}'"
                                )));
                            }
                        },
                    ),
                    None => (k.clone(), FilterOp::Eq),
                };
                if !fields.iter().any(|f| f.name == name) {
                    return Err(ApiError::BadRequest(format!(
                        "unrecognized query parameter '{k}'"
                    )));
                }
                let values: Vec<String> = if matches!(op, FilterOp::In | FilterOp::NotIn) {
                    v.split(',').map(str::to_string).collect()
                } else {
                    vec![v.clone()]
                };
                match q.filters.iter_mut().find(|f| f.field == name && f.op == op) {
                    Some(existing) => existing.values.extend(values),
                    None => q.filters.push(ApiFilter {
                        field: name,
                        op,
                        values,
                    }),
                }
            }
        }
    }
    for name in &q.fields {
        if !fields.iter().any(|f| f.name == name) && name != "properties" {
            return Err(ApiError::BadRequest(format!("unknown field '{name}'")));
        }
    }
    Ok(q)
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

fn sql_value(field: &Field, v: &str) -> Result<SqlValue, ApiError> {
    if v == "null" || v == "None" {
        return Ok(SqlValue::Null);
    }
    match field.kind {
        Kind::Int => v.parse::<i64>().map(SqlValue::Int).map_err(|_| {
            ApiError::BadRequest(format!(
                "invalid filter value for {}: '{v}' is not an integer",
                field.name
            ))
        }),
        Kind::Bool => parse_bool(v)
            .map(|b| SqlValue::Int(i64::from(b)))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "invalid filter value for {}: '{v}' is not a boolean",
                    field.name
                ))
            }),
        _ => Ok(SqlValue::Text(v.to_string())),
    }
}

/// The part of the query that SQL can do, and whether all of it could.
pub fn push_down(
    q: &Query,
    fields: &[Field],
    base: Vec<Filter>,
) -> Result<(Page, Vec<ApiFilter>, bool), ApiError> {
    let mut page = Page {
        filters: base,
        // The API reports how many rows match in all, as Buildbot's meta.total does.
        count_total: true,
        ..Page::default()
    };
    let mut rest = Vec::new();
    for af in &q.filters {
        let Some(field) = fields.iter().find(|f| f.name == af.field) else {
            continue;
        };
        match field.kind {
            Kind::Computed => rest.push(af.clone()),
            Kind::Elements(list) if af.op == FilterOp::Contains => page.filters.push(Filter {
                column: field.column,
                op: FilterOp::Has(list),
                values: af.values.iter().cloned().map(SqlValue::Text).collect(),
            }),
            Kind::Elements(_) => rest.push(af.clone()),
            Kind::ListOfOne if af.op == FilterOp::Contains => {
                // A value that is not an integer is in no list of integers.
                let values = af
                    .values
                    .iter()
                    .filter_map(|v| v.parse::<i64>().ok())
                    .map(SqlValue::Int)
                    .collect();
                page.filters.push(Filter {
                    column: field.column,
                    op: FilterOp::Eq,
                    values,
                });
            }
            Kind::ListOfOne => rest.push(af.clone()),
            Kind::NotNull | Kind::Claim(_) => {
                // `complete` is whether the column is set: equality tests, with one value or
                // several, become IS NULL or IS NOT NULL; an order comparison is done in memory.
                let wanted: Vec<Option<bool>> = af.values.iter().map(|v| parse_bool(v)).collect();
                if wanted.iter().any(Option::is_none) {
                    return Err(ApiError::BadRequest(format!(
                        "invalid filter value for {}",
                        field.name
                    )));
                }
                let named = |b: bool| wanted.contains(&Some(b));
                let (set, unset) = match af.op {
                    FilterOp::Eq | FilterOp::In => (named(true), named(false)),
                    FilterOp::Ne | FilterOp::NotIn => (!named(true), !named(false)),
                    _ => {
                        rest.push(af.clone());
                        continue;
                    }
                };
                let (op, values) = match (set, unset) {
                    (true, true) => continue,
                    (true, false) => (FilterOp::Ne, vec![SqlValue::Null]),
                    (false, true) => (FilterOp::Eq, vec![SqlValue::Null]),
                    // No value is allowed: an equality with none matches no row.
                    (false, false) => (FilterOp::Eq, Vec::new()),
                };
                if let Kind::Claim(complete) = field.kind
                    && matches!(af.op, FilterOp::Eq | FilterOp::Ne)
                    && af.values.len() == 1
                    && (set, unset) == (false, true)
                {
                    page.filters.push(Filter {
                        column: complete,
                        op: FilterOp::Eq,
                        values: vec![SqlValue::Int(0)],
                    });
                }
                page.filters.push(Filter {
                    column: field.column,
                    op,
                    values,
                });
            }
            _ => {
                let values = af
                    .values
                    .iter()
                    .map(|v| sql_value(field, v))
                    .collect::<Result<Vec<_>, _>>()?;
                page.filters.push(Filter {
                    column: field.column,
                    op: af.op,
                    values,
                });
            }
        }
    }
    let order_pushable = order_pushable(q, fields);
    if order_pushable {
        page.order = q
            .order
            .iter()
            .filter_map(|(n, d)| fields.iter().find(|f| f.name == n).map(|f| (f.column, *d)))
            .collect();
    }
    let all = rest.is_empty() && order_pushable;
    if all {
        page.limit = q.limit;
        page.offset = q.offset;
    } else {
        // The rows are finished in memory, which pages them and counts them itself.
        page.limit = Some(MAX_SCAN + 1);
        page.count_total = false;
    }
    Ok((page, rest, all))
}

/// Whether SQL can give the query's order: every field of it is a column.
fn order_pushable(q: &Query, fields: &[Field]) -> bool {
    q.order.iter().all(|(n, _)| {
        fields.iter().any(|f| {
            f.name == n
                && !matches!(
                    f.kind,
                    Kind::Computed
                        | Kind::NotNull
                        | Kind::Claim(_)
                        | Kind::Elements(_)
                        | Kind::ListOfOne
                )
        })
    })
}

/// Compares two items' values of the order's fields, in the order's directions.
pub fn compare_keys(a: &[Value], b: &[Value], order: &[(String, bool)]) -> Ordering {
    for ((x, y), (_, desc)) in a.iter().zip(b).zip(order) {
        let o = compare(x, y);
        let o = if *desc { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .partial_cmp(&y.as_f64().unwrap_or(0.0))
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// The filter value as a JSON value of the same kind as `sample`.
fn typed(sample: &Value, v: &str) -> Value {
    if v == "null" || v == "None" {
        return Value::Null;
    }
    match sample {
        Value::Bool(_) => parse_bool(v).map_or(Value::String(v.to_string()), Value::Bool),
        Value::Number(_) => v
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| v.parse::<f64>().map(Value::from))
            .unwrap_or(Value::String(v.to_string())),
        _ => Value::String(v.to_string()),
    }
}

/// Whether an item passes a filter, as Buildbot tests a field's value in memory.
pub fn holds(item: &Value, f: &ApiFilter) -> bool {
    let value = item.get(&f.field).cloned().unwrap_or(Value::Null);
    let each = |v: &String| {
        let t = typed(&value, v);
        match f.op {
            FilterOp::Eq | FilterOp::In | FilterOp::Among => {
                compare(&value, &t) == Ordering::Equal && value.is_null() == t.is_null()
            }
            FilterOp::Ne | FilterOp::NotIn => {
                !(compare(&value, &t) == Ordering::Equal && value.is_null() == t.is_null())
            }
            FilterOp::Lt => !value.is_null() && compare(&value, &t) == Ordering::Less,
            FilterOp::Le => !value.is_null() && compare(&value, &t) != Ordering::Greater,
            FilterOp::Gt => !value.is_null() && compare(&value, &t) == Ordering::Greater,
            FilterOp::Ge => !value.is_null() && compare(&value, &t) != Ordering::Less,
            FilterOp::Contains | FilterOp::Has(_) => match &value {
                Value::String(s) => s.contains(v.as_str()),
                Value::Array(items) => items
                    .iter()
                    .any(|i| i.as_str() == Some(v.as_str()) || typed(i, v) == *i),
                // As Python's `in` on a dictionary: whether the value is one of its keys.
                Value::Object(map) => map.contains_key(v.as_str()),
                _ => false,
            },
        }
    };
    match f.op {
        FilterOp::Eq | FilterOp::In | FilterOp::Contains | FilterOp::Has(_) => {
            f.values.iter().any(each)
        }
        _ => f.values.iter().all(each),
    }
}

/// Applies what SQL could not: filters, order and paging, in memory.
pub fn finish_in_memory(
    mut items: Vec<Value>,
    q: &Query,
    rest: &[ApiFilter],
) -> Result<(Vec<Value>, i64), ApiError> {
    if items.len() as i64 > MAX_SCAN {
        return Err(ApiError::BadRequest(format!(
            "this query needs more than {MAX_SCAN} rows filtered in memory; narrow it with filters on stored fields"
        )));
    }
    items.retain(|i| rest.iter().all(|f| holds(i, f)));
    if !q.order.is_empty() {
        let keys = |item: &Value| -> Vec<Value> {
            q.order
                .iter()
                .map(|(name, _)| item.get(name).cloned().unwrap_or(Value::Null))
                .collect()
        };
        let mut keyed: Vec<(Vec<Value>, Value)> =
            items.into_iter().map(|i| (keys(&i), i)).collect();
        keyed.sort_by(|(a, _), (b, _)| compare_keys(a, b, &q.order));
        items = keyed.into_iter().map(|(_, i)| i).collect();
    }
    let total = items.len() as i64;
    let offset = q.offset.unwrap_or(0).max(0) as usize;
    let items: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(q.limit.map_or(usize::MAX, |l| l.max(0) as usize))
        .collect();
    Ok((items, total))
}

/// Keeps only the requested fields.
pub fn select_fields(items: &mut [Value], q: &Query) {
    if q.fields.is_empty() {
        return;
    }
    for item in items {
        if let Value::Object(map) = item {
            map.retain(|k, _| q.fields.iter().any(|f| f == k));
        }
    }
}

/// Whether the client accepts JSON, which it is then sent compact; others get indented text.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

/// A JSON response: compact when the client accepts JSON, pretty text otherwise, as Buildbot does.
pub fn respond(headers: &HeaderMap, body: Value) -> Response {
    if wants_json(headers) {
        axum::Json(body).into_response()
    } else {
        let text = serde_json::to_string_pretty(&body).unwrap_or_default();
        ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filters SQL gets for `raw`, which must go to SQL whole.
    fn pushed(raw: &str, fields: &[Field]) -> Vec<(&'static str, FilterOp, Vec<SqlValue>)> {
        let q = parse(raw, fields, &[]).unwrap();
        let (page, rest, all) = push_down(&q, fields, vec![]).unwrap();
        assert!(all && rest.is_empty(), "{raw} was not pushed down");
        page.filters
            .iter()
            .map(|f| (f.column, f.op, f.values.clone()))
            .collect()
    }

    const FIELDS: &[Field] = &[
        f("buildid", "id", Kind::Int),
        f("complete", "complete_at", Kind::NotNull),
        f("state_string", "state_string", Kind::Text),
        f("claimed", "", Kind::Computed),
    ];

    #[test]
    fn parses_buildbot_query_options() {
        let q = parse("field=buildid&buildid__gt=3&buildid__gt=4&order=-buildid&limit=5&offset=1&complete=true&property=*", FIELDS, &[]).unwrap();
        assert_eq!(q.fields, vec!["buildid"]);
        assert_eq!(q.filters.len(), 2);
        assert_eq!(q.filters[0].values, vec!["3", "4"]);
        assert_eq!(q.order, vec![("buildid".to_string(), true)]);
        assert_eq!((q.limit, q.offset), (Some(5), Some(1)));
        assert_eq!(q.properties, vec!["*"]);
    }

    #[test]
    fn unknown_parameters_and_bad_values_are_400() {
        assert!(
            matches!(parse("nope=1", FIELDS, &[]), Err(ApiError::BadRequest(m)) if m.contains("unrecognized query parameter 'nope'"))
        );
        assert!(matches!(
            parse("buildid__like=1", FIELDS, &[]),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse("limit=x", FIELDS, &[]),
            Err(ApiError::BadRequest(_))
        ));
        let q = parse("buildid=abc", FIELDS, &[]).unwrap();
        assert!(push_down(&q, FIELDS, vec![]).is_err());
    }

    #[test]
    fn in_memory_filters_for_computed_fields() {
        let items = vec![
            serde_json::json!({"buildid": 1, "claimed": true}),
            serde_json::json!({"buildid": 2, "claimed": false}),
        ];
        let q = parse("claimed=false&order=-buildid", FIELDS, &[]).unwrap();
        let (_, rest, all) = push_down(&q, FIELDS, vec![]).unwrap();
        assert!(!all);
        let (items, total) = finish_in_memory(items, &q, &rest).unwrap();
        assert_eq!(total, 1);
        assert_eq!(items[0]["buildid"], 2);
    }

    /// Every equality test of `complete`, with one value or several, runs in SQL.
    #[test]
    fn complete_filters_become_null_tests() {
        let pushed = |raw: &str| {
            pushed(raw, FIELDS)
                .into_iter()
                .map(|(_, op, values)| (op, values))
                .collect::<Vec<_>>()
        };
        let not_null = vec![(FilterOp::Ne, vec![SqlValue::Null])];
        let null = vec![(FilterOp::Eq, vec![SqlValue::Null])];
        assert_eq!(pushed("complete=true"), not_null);
        assert_eq!(pushed("complete__in=true"), not_null);
        assert_eq!(pushed("complete__ne=false"), not_null);
        assert_eq!(pushed("complete__notin=false"), not_null);
        assert_eq!(pushed("complete=0"), null);
        assert_eq!(pushed("complete__in=true,false"), vec![]);
        assert_eq!(
            pushed("complete__notin=true,false"),
            vec![(FilterOp::Eq, vec![])]
        );
        let q = parse("complete__gt=false", FIELDS, &[]).unwrap();
        assert!(!push_down(&q, FIELDS, vec![]).unwrap().2);
        assert!(
            push_down(
                &parse("complete=maybe", FIELDS, &[]).unwrap(),
                FIELDS,
                vec![]
            )
            .is_err()
        );
    }

    /// Buildbot's `claimed=false` is the waiting requests: unclaimed and incomplete.
    #[test]
    fn asking_for_unclaimed_requests_keeps_the_incomplete_ones() {
        const REQUESTS: &[Field] = &[
            f("claimed", "c.masterid", Kind::Claim("br.complete")),
            f("complete", "br.complete", Kind::Bool),
        ];
        let pushed = |raw: &str| pushed(raw, REQUESTS);
        let waiting = vec![
            ("br.complete", FilterOp::Eq, vec![SqlValue::Int(0)]),
            ("c.masterid", FilterOp::Eq, vec![SqlValue::Null]),
        ];
        assert_eq!(pushed("claimed=false"), waiting);
        assert_eq!(pushed("claimed__ne=true"), waiting);
        // Other forms test the claim alone, as Buildbot's filters on the field do.
        assert_eq!(
            pushed("claimed__in=false"),
            vec![("c.masterid", FilterOp::Eq, vec![SqlValue::Null])]
        );
        assert_eq!(
            pushed("claimed=true"),
            vec![("c.masterid", FilterOp::Ne, vec![SqlValue::Null])]
        );
    }

    /// A change's one parent is a column, so asking which changes have a parent runs in SQL,
    /// where it took a scan of every change in memory.
    #[test]
    fn a_list_of_one_is_tested_in_the_database() {
        const CHANGES: &[Field] = &[f("parent_changeids", "parent_changeids", Kind::ListOfOne)];
        let raw = "parent_changeids__contains=1&parent_changeids__contains=x\
                   &parent_changeids__contains=7&limit=10";
        assert_eq!(
            pushed(raw, CHANGES),
            vec![(
                "parent_changeids",
                FilterOp::Eq,
                vec![SqlValue::Int(1), SqlValue::Int(7)]
            )]
        );
        let q = parse(raw, CHANGES, &[]).unwrap();
        assert_eq!(push_down(&q, CHANGES, vec![]).unwrap().0.limit, Some(10));
        // Comparing whole lists stays in memory.
        let q = parse("parent_changeids=1", CHANGES, &[]).unwrap();
        assert!(!push_down(&q, CHANGES, vec![]).unwrap().2);
    }

    /// `contains` on an object asks for a key, as Python's `in` on a dictionary does.
    #[test]
    fn an_object_contains_its_keys() {
        let item = serde_json::json!({"properties": {"owner": ["me", "Change"]}});
        let filter = |v: &str| ApiFilter {
            field: "properties".into(),
            op: FilterOp::Contains,
            values: vec![v.into()],
        };
        assert!(holds(&item, &filter("owner")));
        assert!(!holds(&item, &filter("me")));
    }

    #[test]
    fn values_are_form_decoded() {
        let err = parse("field=a%20b+c%2Fd%", FIELDS, &[]).unwrap_err();
        assert_eq!(err, ApiError::BadRequest("unknown field 'a b c/d%'".into()));
        let q = parse("build%69d__gt=1+0", FIELDS, &[]).unwrap();
        assert_eq!(q.filters[0].values, vec!["1 0"]);
    }
}
