//! `util.OldBuildCanceller`: a new build request on a builder cancels that builder's older
//! requests (and stops their builds) for the same branch, when the builder and the source stamp
//! match one of the canceller's filters, as Buildbot's does: only the newest commit of a branch
//! is worth building.

use kiln_core::change::Change;
use kiln_core::changefilter::NoCallbacks;
use kiln_core::{BuildRequestId, BuilderId};
use kiln_db::listing::{FilterOp, Page, SqlValue};

use crate::master::Master;

/// What makes two source stamps "the same branch".
#[derive(PartialEq)]
struct BranchKey {
    codebase: String,
    project: String,
    repository: String,
    branch: Option<String>,
}

pub async fn after_submit(
    master: &Master,
    requests: &[(BuilderId, BuildRequestId)],
) -> anyhow::Result<()> {
    let config = master.config();
    if config.old_build_cancellers.is_empty() {
        return Ok(());
    }
    for (builder, brid) in requests {
        let Some(name) = master.builder_name(*builder) else {
            continue;
        };
        let Some(new) = master.db.get_buildrequest(*brid).await? else {
            continue;
        };
        let stamps = master.db.buildset_sourcestamps(new.buildsetid).await?;
        let mut keys = Vec::new();
        for c in &config.old_build_cancellers {
            for (builders, filter) in &c.filters {
                if !builders.contains(&name) {
                    continue;
                }
                for ss in &stamps {
                    let as_change = Change {
                        codebase: ss.codebase.clone(),
                        project: ss.project.clone(),
                        repository: ss.repository.clone(),
                        branch: ss.branch.clone(),
                        ..Change::default()
                    };
                    if filter.matches(&as_change, &NoCallbacks).unwrap_or(false) {
                        keys.push(BranchKey {
                            codebase: ss.codebase.clone(),
                            project: ss.project.clone(),
                            repository: ss.repository.clone(),
                            branch: ss.branch.clone(),
                        });
                    }
                }
            }
        }
        if keys.is_empty() {
            continue;
        }
        let page = Page {
            filters: vec![
                kiln_db::listing::Filter {
                    column: "br.builderid",
                    op: FilterOp::Eq,
                    values: vec![SqlValue::Int(builder.0)],
                },
                kiln_db::listing::Filter {
                    column: "br.complete",
                    op: FilterOp::Eq,
                    values: vec![SqlValue::Int(0)],
                },
                kiln_db::listing::Filter {
                    column: "br.id",
                    op: FilterOp::Lt,
                    values: vec![SqlValue::Int(brid.0)],
                },
            ],
            ..Page::default()
        };
        let (older, _) = master.db.list_buildrequests(&page).await?;
        for old in older {
            if old.buildsetid == new.buildsetid {
                continue;
            }
            let theirs = master.db.buildset_sourcestamps(old.buildsetid).await?;
            let same_branch = theirs.iter().any(|ss| {
                keys.contains(&BranchKey {
                    codebase: ss.codebase.clone(),
                    project: ss.project.clone(),
                    repository: ss.repository.clone(),
                    branch: ss.branch.clone(),
                })
            });
            if same_branch {
                tracing::info!(builder = %name, obsolete = old.id.0, newer = brid.0, "cancelling an obsolete build request");
                master
                    .cancel_buildrequest(old.id, "Build has been obsoleted by a newer commit")
                    .await?;
            }
        }
    }
    Ok(())
}
