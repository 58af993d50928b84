//! Which builders and builds a page shows: the old WebStatus's `builder=`/`show=` and
//! `category=`/`tag=` arguments, the latest builds of those builders on some branches, and the
//! builders' names for links.

use std::collections::HashMap;

use kiln_core::BuildId;
use kiln_db::BuildRow;
use kiln_db::listing::{Filter, FilterOp, Page, SqlValue};

use minijinja::Value;

use super::args::Args;
use super::{PageError, Site};

/// The builders a page shows: those named by `builder=`/`show=`, those with a tag named by
/// `category=`/`tag=`, in the configuration's order; all of them when neither is given.
pub fn chosen_builders(
    site: &Site,
    visit: &super::Visit,
    args: &Args,
) -> Result<Vec<(i64, String, Vec<String>)>, PageError> {
    let vis = visit.visibility(site);
    let config = site.services.read.config();
    let ids = site.services.read.builder_ids();
    let mut names = args.all("builder");
    names.extend(args.all("show"));
    let mut tags = args.all("category");
    tags.extend(args.all("tag"));
    for n in &names {
        if !config.builders.iter().any(|b| b.name == *n) {
            return Err(PageError::bad_request(format!("there is no builder '{n}'")));
        }
    }
    Ok(config
        .builders
        .iter()
        .filter(|b| names.is_empty() || names.contains(&b.name.as_str()))
        .filter(|b| tags.is_empty() || b.tags.iter().any(|t| tags.contains(&t.as_str())))
        .filter_map(|b| {
            ids.get(&b.name)
                .map(|id| (id.0, b.name.clone(), b.tags.clone()))
        })
        // The builders whose builds the visitor may not see are not shown.
        .filter(|(id, _, _)| vis.builder(*id))
        .collect())
}

/// How many more builds are read when some will be left out for their branch.
const BRANCH_OVERREAD: i64 = 10;

/// The newest `limit` builds of `builders` that pass `filters`, on one of `branches` when any
/// are given, newest first, each with its branches.
pub async fn latest_on(
    site: &Site,
    builders: &[(i64, String, Vec<String>)],
    branches: &[&str],
    mut filters: Vec<Filter>,
    limit: i64,
) -> Result<Vec<(BuildRow, Vec<String>)>, PageError> {
    if builders.is_empty() {
        return Ok(Vec::new());
    }
    filters.push(Filter {
        column: "builderid",
        op: FilterOp::Among,
        values: builders.iter().map(|b| SqlValue::Int(b.0)).collect(),
    });
    let page = Page {
        filters,
        order: vec![("id", true)],
        limit: Some(if branches.is_empty() {
            limit
        } else {
            limit * BRANCH_OVERREAD
        }),
        offset: None,
        count_total: false,
    };
    let db = site.services.read.db();
    let builds = db.list_builds(&page).await?.0;
    let ids: Vec<BuildId> = builds.iter().map(|b| b.id).collect();
    let mut branch_of: HashMap<BuildId, Vec<String>> = HashMap::new();
    for (id, branch) in db.build_branches(&ids).await? {
        if let Some(b) = branch {
            branch_of.entry(id).or_default().push(b);
        }
    }
    Ok(builds
        .into_iter()
        .map(|b| {
            let on = branch_of.remove(&b.id).unwrap_or_default();
            (b, on)
        })
        .filter(|(_, on)| branches.is_empty() || on.iter().any(|b| branches.contains(&b.as_str())))
        .take(limit as usize)
        .collect())
}

/// Every builder's name by id, as a map with string keys the templates can index.
pub async fn builder_names(site: &Site) -> Result<Value, PageError> {
    let rows = site.services.read.db().builder_names().await?;
    Ok(rows
        .into_iter()
        .map(|(id, name)| (id.0.to_string(), name))
        .collect::<HashMap<_, _>>()
        .into())
}
