//! Keeping the builds a visitor may not see out of the REST API (see
//! `auth::read::Visibility`): a path through such a build, step, log, request or builder's
//! builds is not found, and listings of builds and requests leave them out.

use kiln_api::{ApiError, Services};
use kiln_core::{BuildId, BuildRequestId, LogId, StepId};
use kiln_db::listing::{Filter, FilterOp, SqlValue};

use super::fields::Ty;
use super::resolve::Target;
use crate::auth::read::Visibility;

/// Checks the path's build or builder, and narrows the target's listing.
pub(super) async fn confine(
    services: &Services,
    vis: &Visibility,
    path: &str,
    target: Target,
) -> Result<Target, ApiError> {
    if vis.everything() {
        return Ok(target);
    }
    let db = services.read.db();
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let id = |s: &str| s.parse::<i64>().ok();
    let hidden = || ApiError::not_found(path);
    let build_seen = async |b: Option<BuildId>| -> Result<bool, ApiError> {
        Ok(match b {
            Some(b) => vis.build(db, b).await?,
            None => true,
        })
    };
    let seen = match segs.as_slice() {
        ["builds", b, ..] => build_seen(id(b).map(BuildId)).await?,
        ["steps", s, ..] => {
            let step = match id(s) {
                Some(s) => db.get_step(StepId(s)).await?,
                None => None,
            };
            build_seen(step.map(|s| s.buildid)).await?
        }
        ["logs", l, ..] => {
            let log = match id(l) {
                Some(l) => db.get_log(LogId(l)).await?,
                None => None,
            };
            let step = match log {
                Some(l) => db.get_step(l.stepid).await?,
                None => None,
            };
            build_seen(step.map(|s| s.buildid)).await?
        }
        ["buildrequests", r, ..] => match id(r) {
            Some(r) => db
                .get_buildrequest(BuildRequestId(r))
                .await?
                .is_none_or(|r| vis.builder(r.builderid)),
            None => true,
        },
        ["builders", b, rest, ..]
            if *rest != "forceschedulers" && *rest != "workers" && *rest != "masters" =>
        {
            let builder = match id(b) {
                Some(b) => Some(b),
                None => services.read.builder_ids().get(*b).map(|i| i.0),
            };
            builder.is_none_or(|b| vis.builder(b))
        }
        _ => true,
    };
    if !seen {
        return Err(hidden());
    }
    let not_in = |column: &'static str| Filter {
        column,
        op: FilterOp::NotIn,
        values: vis.hidden().into_iter().map(SqlValue::Int).collect(),
    };
    Ok(match target {
        Target::Collection(Ty::Builds, mut f) => {
            f.push(not_in("builderid"));
            Target::Collection(Ty::Builds, f)
        }
        Target::Collection(Ty::BuildRequests, mut f) => {
            f.push(not_in("br.builderid"));
            Target::Collection(Ty::BuildRequests, f)
        }
        Target::Collection(ty @ (Ty::TestResultSets | Ty::TestResults), mut f) => {
            f.push(not_in("builderid"));
            Target::Collection(ty, f)
        }
        Target::Collection(Ty::Steps, f) if segs.first() == Some(&"steps") => {
            drop(f);
            return Err(ApiError::Forbidden(
                "some builds are hidden from you: list steps under their build".into(),
            ));
        }
        other => other,
    })
}

/// Leaves out of a listing of builds those whose branch or project the visitor may not see;
/// the listing's total still counts them, as it is counted before.
pub(super) async fn by_origin(
    services: &Services,
    vis: &Visibility,
    ty: Ty,
    items: &mut Vec<serde_json::Value>,
) -> Result<(), ApiError> {
    if ty != Ty::Builds || !vis.by_origin() {
        return Ok(());
    }
    let pairs: Vec<(BuildId, i64)> = items
        .iter()
        .filter_map(|b| Some((BuildId(b["buildid"].as_i64()?), b["builderid"].as_i64()?)))
        .collect();
    let seen = vis.seen(services.read.db(), &pairs).await?;
    items.retain(|b| {
        b["buildid"]
            .as_i64()
            .is_some_and(|id| seen.contains(&BuildId(id)))
    });
    Ok(())
}
