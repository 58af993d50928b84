//! `Triggerable`: a scheduler that builds when a `Trigger` step asks, with the source stamps and
//! properties the step passes, as a child of the triggering build.

use kiln_config::TriggerableConfig;
use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{BuildId, BuildRequestId, BuildSetId, BuilderId, Properties};
use kiln_db::NewBuildSet;

use super::buildsets;
use crate::master::Master;

/// What the triggering step passes.
pub struct Trigger {
    pub sourcestamps: Vec<SourceStamp>,
    /// `set_properties` and `copy_properties`, with the source `Trigger`.
    pub properties: Properties,
    pub parent_buildid: BuildId,
    pub parent_relationship: String,
}

/// Submits the triggered buildset: the step's source stamps, plus the defaults of any of the
/// scheduler's codebases they lack; the scheduler's properties, overridden by the step's.
pub async fn trigger(
    master: &Master,
    config: &TriggerableConfig,
    trigger: Trigger,
) -> anyhow::Result<(BuildSetId, Vec<(BuilderId, BuildRequestId)>)> {
    let mut sourcestamps = trigger.sourcestamps;
    for cb in &config.codebases {
        if !sourcestamps.iter().any(|ss| ss.codebase == cb.name) {
            sourcestamps.push(SourceStamp {
                codebase: cb.name.clone(),
                repository: cb.repository.clone(),
                branch: cb.branch.clone(),
                revision: cb.revision.clone(),
                project: cb.project.clone(),
                patch: None,
            });
        }
    }
    sourcestamps.sort_by(|a, b| a.codebase.cmp(&b.codebase));
    let mut properties = Properties::new();
    for (name, value) in &config.properties {
        properties.set(name.clone(), value.clone(), "Scheduler");
    }
    properties.update(&trigger.properties);
    properties.set("scheduler", config.name.as_str(), "Scheduler");
    let ids = master.builder_ids();
    let buildset = NewBuildSet {
        reason: buildsets::reason(&config.reason, "Triggerable", &config.name),
        sourcestamps,
        properties,
        builders: config
            .builder_names
            .iter()
            .filter_map(|b| ids.get(b).map(|id| (*id, config.priority)))
            .collect(),
        parent_buildid: Some(trigger.parent_buildid.0),
        parent_relationship: Some(trigger.parent_relationship),
        ..Default::default()
    };
    let added = master.updates.add_buildset(buildset).await?;
    master.wake_distributor();
    Ok(added)
}
