//! Collapsing build requests: when a buildset adds requests, each older unclaimed request on the
//! same builder that the new one makes unnecessary completes as SKIPPED, as Buildbot does.
//!
//! The builder's `collapseRequests` (or else `c['collapseRequests']`, True by default) decides:
//! False never collapses, True applies Buildbot's rule (`kiln_core::collapse`), and a function is
//! called as `fn(master, builder, new, old)` with `master` None and the requests as dicts that
//! carry their buildset's source stamps and properties, so the function needs no data API.

use std::collections::BTreeMap;

use kiln_config::{Collapse, Data, MasterConfig};
use kiln_core::collapse::{Request, Stamp, can_be_collapsed};
use kiln_core::{BuildRequestId, BuildSetId, BuilderId, Properties};
use kiln_db::BuildRequestRow;

use crate::master::Master;

/// Collapses what the new requests make unnecessary.
pub async fn after_submit(
    master: &Master,
    requests: &[(BuilderId, BuildRequestId)],
) -> anyhow::Result<()> {
    let config = master.config();
    let mut cache: BTreeMap<BuildSetId, Described> = BTreeMap::new();
    let mut skip = Vec::new();
    for (builder, brid) in requests {
        let Some(name) = master.builder_name(*builder) else {
            continue;
        };
        let rule = rule(&config, &name);
        if rule == Collapse::Never {
            continue;
        }
        let older = master.db.older_unclaimed(*builder, *brid).await?;
        if older.is_empty() {
            continue;
        }
        let Some(new) = master.db.get_buildrequest(*brid).await? else {
            continue;
        };
        for old in &older {
            let yes = match rule {
                Collapse::Never => false,
                Collapse::Default => {
                    let a = describe(master, &mut cache, &new).await?.request(&new);
                    let b = describe(master, &mut cache, old).await?.request(old);
                    can_be_collapsed(&a, &b)
                }
                Collapse::Function(f) => {
                    let a = describe(master, &mut cache, &new).await?.data(&new);
                    let b = describe(master, &mut cache, old).await?.data(old);
                    let builder = Data::Object(vec![("name".into(), Data::Str(name.clone()))]);
                    match config.functions.call(f, &[Data::None, builder, a, b], &[]) {
                        Ok(d) => d.truthy(),
                        Err(error) => {
                            // A failing function collapses nothing: every request still builds.
                            tracing::error!(builder = %name, "collapseRequests failed; not collapsing:\n{error}");
                            false
                        }
                    }
                }
            };
            if yes {
                skip.push(old.id);
            }
        }
    }
    if !skip.is_empty() {
        skip.sort();
        skip.dedup();
        master.updates.skip_unclaimed(&skip).await?;
    }
    Ok(())
}

fn rule(config: &MasterConfig, builder: &str) -> Collapse {
    config
        .builders
        .iter()
        .find(|b| b.name == builder)
        .and_then(|b| b.collapse_requests)
        .unwrap_or(config.collapse_requests)
}

/// A buildset as the collapse rules look at it.
#[derive(Clone)]
struct Described {
    stamps: Vec<Stamp>,
    properties: Properties,
}

impl Described {
    fn request(&self, r: &BuildRequestRow) -> Request {
        Request {
            id: r.id,
            buildset: r.buildsetid,
            stamps: self.stamps.clone(),
            scheduler_properties: self
                .properties
                .iter()
                .filter(|(name, p)| p.source == "Scheduler" && name.as_str() != "scheduler")
                .map(|(name, p)| (name.clone(), p.value.clone()))
                .collect(),
        }
    }

    fn data(&self, r: &BuildRequestRow) -> Data {
        let opt = |s: &Option<String>| s.as_ref().map_or(Data::None, |s| Data::Str(s.clone()));
        let stamps = self
            .stamps
            .iter()
            .map(|s| {
                Data::Dict(vec![
                    (Data::Str("codebase".into()), Data::Str(s.codebase.clone())),
                    (
                        Data::Str("repository".into()),
                        Data::Str(s.repository.clone()),
                    ),
                    (Data::Str("branch".into()), opt(&s.branch)),
                    (Data::Str("revision".into()), opt(&s.revision)),
                    (Data::Str("project".into()), Data::Str(s.project.clone())),
                    (Data::Str("patched".into()), Data::Bool(s.patched)),
                    (Data::Str("has_changes".into()), Data::Bool(s.has_changes)),
                ])
            })
            .collect();
        let properties = self
            .properties
            .iter()
            .map(|(name, p)| (Data::Str(name.clone()), Data::from(&p.value)))
            .collect();
        Data::Dict(vec![
            (Data::Str("buildrequestid".into()), Data::Int(r.id.0)),
            (Data::Str("buildsetid".into()), Data::Int(r.buildsetid.0)),
            (Data::Str("builderid".into()), Data::Int(r.builderid)),
            (Data::Str("priority".into()), Data::Int(r.priority)),
            (Data::Str("submitted_at".into()), Data::Int(r.submitted_at)),
            (Data::Str("sourcestamps".into()), Data::List(stamps)),
            (Data::Str("properties".into()), Data::Dict(properties)),
        ])
    }
}

async fn describe<'c>(
    master: &Master,
    cache: &'c mut BTreeMap<BuildSetId, Described>,
    r: &BuildRequestRow,
) -> anyhow::Result<&'c Described> {
    if let std::collections::btree_map::Entry::Vacant(slot) = cache.entry(r.buildsetid) {
        let mut stamps = Vec::new();
        for ss in master.db.buildset_sourcestamps(r.buildsetid).await? {
            stamps.push(Stamp {
                has_changes: master.db.sourcestamp_has_changes(ss.id).await?,
                codebase: ss.codebase,
                repository: ss.repository,
                branch: ss.branch,
                project: ss.project,
                revision: ss.revision,
                patched: ss.patch.is_some(),
            });
        }
        let properties = master.db.buildset_properties(r.buildsetid).await?;
        slot.insert(Described { stamps, properties });
    }
    cache
        .get(&r.buildsetid)
        .ok_or_else(|| anyhow::anyhow!("buildset {} vanished", r.buildsetid))
}
