//! Buildsets submitted by the schedulers that build changes or run on a schedule.

use std::collections::BTreeMap;

use kiln_config::CodebaseDefault;
use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{BuildRequestId, BuildSetId, BuilderId, ChangeId, Properties, PropertyValue};
use kiln_db::listing::{Page, SqlValue};
use kiln_db::{ChangeRow, NewBuildSet};

use crate::master::Master;

/// What a scheduler puts into each of its buildsets.
pub struct Target<'a> {
    pub scheduler: &'a str,
    /// The reason, with `%(name)s` (and `%(classname)s`) already filled in.
    pub reason: String,
    pub properties: &'a [(String, PropertyValue)],
    pub builder_names: &'a [String],
    /// `builderNames` given as a renderable, rendered with each buildset's properties.
    pub rendered_builder_names: Option<&'a kiln_core::render::Renderable>,
    pub priority: i64,
    pub codebases: &'a [CodebaseDefault],
}

/// Fills in Buildbot's reason placeholders.
pub fn reason(template: &str, class_name: &str, name: &str) -> String {
    template
        .replace("%(classname)s", class_name)
        .replace("%(name)s", name)
}

/// Submits a buildset for `changes`: for each of the scheduler's codebases, the source stamp of
/// its latest change, or the codebase's defaults when no change is of it, as Buildbot does. The
/// changes' properties come along for the builds. Nothing is submitted when none of the changes
/// is stored any more. `known` is a change already read, if the caller has one.
pub async fn for_changes(
    master: &Master,
    target: &Target<'_>,
    changes: &[ChangeId],
    known: Option<&ChangeRow>,
) -> anyhow::Result<()> {
    let mut latest: BTreeMap<String, ChangeRow> = BTreeMap::new();
    let mut properties = Properties::new();
    for id in changes {
        // The change just read need not be read again.
        let row = match known.filter(|k| k.id == *id) {
            Some(k) => Some(k.clone()),
            None => get_change(master, *id).await?,
        };
        if let Some(row) = row {
            properties.update(&row.properties);
            let newer = latest
                .get(&row.codebase)
                .is_none_or(|known| known.id < row.id);
            if newer {
                latest.insert(row.codebase.clone(), row);
            }
        }
    }
    if latest.is_empty() {
        return Ok(());
    }
    let sourcestamps = target
        .codebases
        .iter()
        .map(|cb| match latest.get(&cb.name) {
            Some(c) => SourceStamp {
                codebase: c.codebase.clone(),
                repository: c.repository.clone(),
                branch: c.branch.clone(),
                revision: c.revision.clone(),
                project: c.project.clone(),
                patch: None,
            },
            None => default_stamp(cb),
        })
        .collect();
    submit(
        master,
        target,
        sourcestamps,
        properties,
        &Properties::new(),
        None,
    )
    .await?;
    Ok(())
}

/// Submits a buildset of the scheduler's codebases at their defaults: a timed build without
/// changes.
pub async fn for_defaults(master: &Master, target: &Target<'_>) -> anyhow::Result<()> {
    let sourcestamps = target.codebases.iter().map(default_stamp).collect();
    submit(
        master,
        target,
        sourcestamps,
        Properties::new(),
        &Properties::new(),
        None,
    )
    .await?;
    Ok(())
}

pub fn default_stamp(cb: &CodebaseDefault) -> SourceStamp {
    SourceStamp {
        codebase: cb.name.clone(),
        repository: cb.repository.clone(),
        branch: cb.branch.clone(),
        revision: cb.revision.clone(),
        project: cb.project.clone(),
        patch: None,
    }
}

/// Submits a buildset for a scheduler. The properties are layered: `below` (the changes'), then
/// the scheduler's own, then `above` (a trigger's), then `scheduler`.
pub async fn submit(
    master: &Master,
    target: &Target<'_>,
    sourcestamps: Vec<SourceStamp>,
    below: Properties,
    above: &Properties,
    parent: Option<(kiln_core::BuildId, String, bool)>,
) -> anyhow::Result<(BuildSetId, Vec<(BuilderId, BuildRequestId)>)> {
    let mut properties = below;
    for (name, value) in target.properties {
        properties.set(name.clone(), value.clone(), "Scheduler");
    }
    properties.update(above);
    properties.set("scheduler", target.scheduler, "Scheduler");
    let names = builder_names(master, target, &properties, &sourcestamps);
    let ids = master.builder_ids();
    let (parent_buildid, parent_relationship, waited_for) = match parent {
        Some((id, relationship, waited_for)) => (Some(id.0), Some(relationship), waited_for),
        None => (None, None, false),
    };
    let buildset = NewBuildSet {
        reason: target.reason.clone(),
        sourcestamps,
        properties,
        builders: names
            .iter()
            .filter_map(|b| ids.get(b).map(|id| (*id, target.priority)))
            .collect(),
        parent_buildid,
        parent_relationship,
        waited_for,
        ..Default::default()
    };
    Ok(master.add_buildset(buildset).await?)
}

/// The builders of a buildset: the scheduler's list, or what its renderable `builderNames` give
/// with the buildset's properties (a name or a list of names). A renderable that fails is logged
/// and builds nothing, as in Buildbot.
fn builder_names(
    master: &Master,
    target: &Target<'_>,
    properties: &Properties,
    sourcestamps: &[SourceStamp],
) -> Vec<String> {
    let Some(renderable) = target.rendered_builder_names else {
        return target.builder_names.to_vec();
    };
    let config = master.config();
    let rendered = renderable.render_in(&kiln_core::render::RenderContext {
        props: properties,
        sourcestamps,
        worker: &BTreeMap::new(),
        hooks: &config.functions,
    });
    match rendered {
        Ok(PropertyValue::List(items)) => items
            .into_iter()
            .filter_map(|i| match i {
                PropertyValue::Str(s) => Some(s),
                _ => None,
            })
            .collect(),
        Ok(PropertyValue::Str(name)) => vec![name],
        Ok(other) => {
            tracing::warn!(scheduler = target.scheduler, value = ?other, "builderNames rendered to no list of names");
            Vec::new()
        }
        Err(error) => {
            tracing::warn!(scheduler = target.scheduler, %error, "builderNames could not be rendered");
            Vec::new()
        }
    }
}

pub async fn get_change(master: &Master, id: ChangeId) -> anyhow::Result<Option<ChangeRow>> {
    let page = Page::eq("changeid", SqlValue::Int(id.0));
    Ok(master.db.list_changes(&page).await?.0.into_iter().next())
}
