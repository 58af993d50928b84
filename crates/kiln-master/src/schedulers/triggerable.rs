//! `Triggerable`: a scheduler that builds when a `Trigger` step asks, with the source stamps and
//! properties the step passes, as a child of the triggering build.

use kiln_config::TriggerableConfig;
use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{BuildId, BuildRequestId, BuildSetId, BuilderId, Properties};
use kiln_db::{json_to_property, property_to_json};
use serde_json::json;

use super::buildsets::{self, Target};
use crate::master::Master;

/// What the triggering step passes.
pub struct Trigger {
    pub sourcestamps: Vec<SourceStamp>,
    /// `set_properties` and `copy_properties`, with the source `Trigger`.
    pub properties: Properties,
    pub parent_buildid: BuildId,
    pub parent_relationship: String,
    /// The triggering step waits for the buildset (`waitForFinish`).
    pub waited_for: bool,
}

/// Submits the triggered buildset: the step's source stamps, plus the defaults of any of the
/// scheduler's codebases they lack; the scheduler's properties, overridden by the step's.
pub async fn trigger(
    master: &Master,
    config: &TriggerableConfig,
    trigger: Trigger,
) -> anyhow::Result<(BuildSetId, Vec<(BuilderId, BuildRequestId)>)> {
    let target = Target {
        scheduler: &config.name,
        reason: buildsets::reason(&config.reason, "Triggerable", &config.name),
        properties: &config.properties,
        builder_names: &config.builder_names,
        rendered_builder_names: config.rendered_builder_names.as_ref(),
        priority: config.priority,
        codebases: &config.codebases,
    };
    submit(master, &target, trigger).await
}

/// Submits a triggered buildset for a scheduler (`Triggerable`, or `NightlyTriggerable` at its
/// time).
pub async fn submit(
    master: &Master,
    config: &Target<'_>,
    trigger: Trigger,
) -> anyhow::Result<(BuildSetId, Vec<(BuilderId, BuildRequestId)>)> {
    let mut sourcestamps = trigger.sourcestamps;
    for cb in config.codebases {
        if !sourcestamps.iter().any(|ss| ss.codebase == cb.name) {
            sourcestamps.push(buildsets::default_stamp(cb));
        }
    }
    sourcestamps.sort_by(|a, b| a.codebase.cmp(&b.codebase));
    buildsets::submit(
        master,
        config,
        sourcestamps,
        Properties::new(),
        &trigger.properties,
        Some((
            trigger.parent_buildid,
            trigger.parent_relationship,
            trigger.waited_for,
        )),
    )
    .await
}

/// The state a `NightlyTriggerable` keeps its pending trigger under, as Buildbot names it.
const LAST_TRIGGER: &str = "lastTrigger";

/// Arms a `NightlyTriggerable`: the trigger is stored, replacing any earlier one, and built at
/// the scheduler's next time.
pub async fn arm_nightly(
    master: &Master,
    scheduler: &str,
    trigger: &Trigger,
) -> anyhow::Result<()> {
    let objectid = master
        .updates
        .object_id(scheduler, "NightlyTriggerable")
        .await?;
    let stamps: Vec<serde_json::Value> = trigger
        .sourcestamps
        .iter()
        .map(|ss| {
            json!({"codebase": ss.codebase, "repository": ss.repository, "branch": ss.branch,
                   "revision": ss.revision, "project": ss.project})
        })
        .collect();
    let props: serde_json::Map<String, serde_json::Value> = trigger
        .properties
        .iter()
        .map(|(k, p)| (k.clone(), json!([property_to_json(&p.value), p.source])))
        .collect();
    let state = json!([
        stamps,
        props,
        trigger.parent_buildid.0,
        trigger.parent_relationship
    ]);
    master
        .updates
        .set_state(objectid, LAST_TRIGGER, &state.to_string())
        .await?;
    Ok(())
}

/// Takes the pending trigger of a `NightlyTriggerable`, if one was armed; it is used once.
pub async fn take_nightly(master: &Master, objectid: i64) -> anyhow::Result<Option<Trigger>> {
    let Some(text) = master.db.get_state(objectid, LAST_TRIGGER).await? else {
        return Ok(None);
    };
    master
        .updates
        .set_state(objectid, LAST_TRIGGER, "null")
        .await?;
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(%e, "could not read the stored trigger; starting fresh");
            return Ok(None);
        }
    };
    let Some(parts) = v.as_array().filter(|p| p.len() == 4) else {
        if !v.is_null() {
            tracing::warn!(state = %v, "could not read the stored trigger; starting fresh");
        }
        return Ok(None);
    };
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().map(str::to_string);
    let sourcestamps = parts[0]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|ss| SourceStamp {
                    codebase: text(ss, "codebase").unwrap_or_default(),
                    repository: text(ss, "repository").unwrap_or_default(),
                    branch: text(ss, "branch"),
                    revision: text(ss, "revision"),
                    project: text(ss, "project").unwrap_or_default(),
                    patch: None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut properties = Properties::new();
    if let Some(map) = parts[1].as_object() {
        for (k, pair) in map {
            let source = pair[1].as_str().unwrap_or("Trigger");
            properties.set(k.clone(), json_to_property(&pair[0]), source);
        }
    }
    Ok(Some(Trigger {
        sourcestamps,
        properties,
        parent_buildid: BuildId(parts[2].as_i64().unwrap_or_default()),
        parent_relationship: parts[3].as_str().unwrap_or("Triggered from").to_string(),
        // A nightly build runs after its trigger is long done: nothing waits for it.
        waited_for: false,
    }))
}
