//! The `Trigger` step: runs on the master, asks `Triggerable` schedulers for buildsets that are
//! children of this build, and with `waitForFinish` waits for them and takes their worst result.
//!
//! Stopping the build while it waits cancels the triggered requests (and stops their builds), as
//! Buildbot does.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_config::{SchedulerConfig, StepConfig, TriggerConfig};
use kiln_core::results::worst_status;
use kiln_core::sourcestamp::SourceStamp;
use kiln_core::{BuildRequestId, BuildSetId, Properties, PropertyValue, Results};
use kiln_db::listing::{Page, SqlValue};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::builds::steps::{StepContext, StepOutcome};
use crate::schedulers::triggerable::{self, Trigger};

/// Triggered buildsets are looked up in the database at least this often while waiting, so a
/// completion seen by another master, or an event lost, is noticed.
const RECHECK: Duration = Duration::from_secs(10);

/// One triggered buildset.
struct Triggered {
    scheduler: String,
    important: bool,
    requests: Vec<BuildRequestId>,
    results: Option<Results>,
}

pub async fn run(ctx: &StepContext<'_>, step: &StepConfig, t: &TriggerConfig) -> StepOutcome {
    let master = ctx.master;
    // Listen before submitting, so no completion is missed.
    let mut events = master.events.subscribe();
    let submitted = match properties(ctx, t) {
        Ok(properties) => submit(ctx, t, properties).await,
        Err(why) => Err(why),
    };
    let mut triggered = match submitted {
        Ok(triggered) => triggered,
        Err(why) => {
            ctx.error_log(&why).await;
            return StepOutcome {
                results: Results::Exception,
                state: format!("{} (exception)", step.name),
            };
        }
    };
    let done = format!("triggered {}", t.scheduler_names.join(", "));
    if !t.wait_for_finish {
        return StepOutcome {
            results: Results::Success,
            state: done,
        };
    }
    let cancelled = wait(ctx, &mut events, &mut triggered).await;
    let each = link_builds(ctx, &triggered).await;
    let mut results = Results::Success;
    for t in triggered.values().filter(|t| t.important) {
        let r = t.results.unwrap_or(Results::Exception);
        if t.results.is_none() {
            tracing::warn!(scheduler = %t.scheduler, "a triggered buildset's result is unknown");
        }
        results = worst_status(results, r);
    }
    if cancelled {
        results = worst_status(results, Results::Cancelled);
    }
    // Buildbot counts the requests' results after the names: `triggered tests, 2 successes`.
    let mut state = done;
    for kind in Results::ALL {
        let n = each.iter().filter(|r| **r == kind).count();
        if n > 0 {
            let word = if n > 1 { kind.plural() } else { kind.name() };
            state.push_str(&format!(", {n} {word}"));
        }
    }
    StepOutcome { state, results }
}

/// The link to a triggered request, as Buildbot names it: `scheduler #brid`.
fn request_url(buildbot_url: &str, scheduler: &str, brid: BuildRequestId) -> serde_json::Value {
    json!({
        "name": format!("{scheduler} #{}", brid.0),
        "url": format!("{buildbot_url}#/buildrequests/{}", brid.0),
    })
}

/// The properties the triggered buildsets get: `copy_properties` from this build, and
/// `set_properties` rendered in it.
fn properties(ctx: &StepContext<'_>, t: &TriggerConfig) -> Result<Properties, String> {
    let mut properties = Properties::new();
    for name in &t.copy_properties {
        if let Some(v) = ctx.props.get(name) {
            properties.set(name.clone(), v.clone(), "Trigger");
        }
    }
    for (name, r) in &t.set_properties {
        let v = crate::builds::steps::render_for_step(ctx, r)
            .map_err(|e| format!("cannot render set_properties['{name}']: {e}"))?;
        properties.set(name.clone(), v, "Trigger");
    }
    Ok(properties)
}

/// Triggers each named scheduler and links the requests made; a disabled scheduler is skipped
/// with a note in the log, and one that is not triggerable fails the step.
async fn submit(
    ctx: &StepContext<'_>,
    t: &TriggerConfig,
    properties: Properties,
) -> Result<BTreeMap<BuildSetId, Triggered>, String> {
    let master = ctx.master;
    let config = master.config();
    let sourcestamps = sourcestamps(ctx, t);
    let mut triggered: BTreeMap<BuildSetId, Triggered> = BTreeMap::new();
    let mut urls = Vec::new();
    let disabled = master.db.disabled_schedulers().await.unwrap_or_default();
    for name in &t.scheduler_names {
        if disabled.contains(name) {
            ctx.error_log(&format!("{name} is disabled: not triggered"))
                .await;
            continue;
        }
        let trigger = Trigger {
            sourcestamps: sourcestamps.clone(),
            properties: properties.clone(),
            parent_buildid: ctx.buildid,
            parent_relationship: t.parent_relationship.clone(),
            waited_for: t.wait_for_finish,
        };
        let failed = |e: String| format!("triggering {name} failed: {e}");
        let s = match config.schedulers.iter().find(|s| s.name() == name) {
            Some(SchedulerConfig::Triggerable(s)) => s,
            Some(SchedulerConfig::Timed(n)) if n.triggerable => {
                // A NightlyTriggerable builds at its next time; there is nothing to wait for.
                triggerable::arm_nightly(master, name, &trigger)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                continue;
            }
            _ => {
                return Err(format!(
                    "{name} is not a Triggerable scheduler of this configuration"
                ));
            }
        };
        let (bsid, brids) = triggerable::trigger(master, s, trigger)
            .await
            .map_err(|e| failed(e.to_string()))?;
        for (_, brid) in &brids {
            urls.push(request_url(&config.buildbot_url, name, *brid));
        }
        triggered.insert(
            bsid,
            Triggered {
                scheduler: name.clone(),
                important: !t.unimportant_scheduler_names.contains(name),
                requests: brids.into_iter().map(|(_, r)| r).collect(),
                results: None,
            },
        );
    }
    let _ = master.updates.set_step_urls(ctx.stepid, &json!(urls)).await;
    Ok(triggered)
}

/// Waits until every triggered buildset completed. Stopping the build cancels the requests
/// still open, and the answer says whether that happened.
async fn wait(
    ctx: &StepContext<'_>,
    events: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<kiln_api::Event>>,
    triggered: &mut BTreeMap<BuildSetId, Triggered>,
) -> bool {
    let mut interrupt = ctx.interrupt.clone();
    let mut cancelled = false;
    while triggered.values().any(|t| t.results.is_none()) {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) => {
                    if let Some((bsid, results)) = e.completed_buildset()
                        && let Some(entry) = triggered.get_mut(&bsid)
                    {
                        entry.results = Some(results);
                    }
                }
                Err(RecvError::Lagged(_)) => recheck(ctx, triggered).await,
                Err(RecvError::Closed) => break,
            },
            _ = tokio::time::sleep(RECHECK) => recheck(ctx, triggered).await,
            changed = interrupt.changed(), if !cancelled => {
                if changed.is_err() || interrupt.borrow().is_some() {
                    cancelled = true;
                    let reason = interrupt.borrow().clone().unwrap_or_default();
                    cancel_open(ctx, triggered, &reason).await;
                }
            }
        }
    }
    cancelled
}

/// Cancels the requests of the triggered buildsets that have not completed.
async fn cancel_open(
    ctx: &StepContext<'_>,
    triggered: &BTreeMap<BuildSetId, Triggered>,
    reason: &str,
) {
    for t in triggered.values().filter(|t| t.results.is_none()) {
        for brid in &t.requests {
            if let Err(e) = ctx.master.cancel_buildrequest(*brid, reason).await {
                tracing::warn!(%e, brid = brid.0, "cancelling a triggered request");
            }
        }
    }
}

/// Replaces the step's links to the triggered requests with links to the builds that ran.
async fn link_builds(
    ctx: &StepContext<'_>,
    triggered: &BTreeMap<BuildSetId, Triggered>,
) -> Vec<Results> {
    let master = ctx.master;
    let config = master.config();
    let mut urls = Vec::new();
    let mut each = Vec::new();
    for t in triggered.values() {
        for brid in &t.requests {
            urls.push(request_url(&config.buildbot_url, &t.scheduler, *brid));
        }
    }
    for t in triggered.values() {
        for brid in &t.requests {
            let page = Page::eq("buildrequestid", SqlValue::Int(brid.0));
            if let Ok((builds, _)) = master.db.list_builds(&page).await {
                for b in builds {
                    let results = b
                        .results
                        .and_then(Results::from_code)
                        .unwrap_or(Results::Exception);
                    urls.push(json!({
                        "name": format!("{}: {} #{}", results.name(), builder_name(ctx, b.builderid), b.number),
                        "url": format!("{}#/builders/{}/builds/{}", config.buildbot_url, b.builderid.0, b.number),
                    }));
                }
            }
            let request = Page::eq("id", SqlValue::Int(brid.0));
            if let Ok((requests, _)) = master.db.list_buildrequests(&request).await
                && let Some(r) = requests.first().and_then(|r| r.results)
            {
                each.push(Results::from_code(r).unwrap_or(Results::Exception));
            }
        }
    }
    let _ = master.updates.set_step_urls(ctx.stepid, &json!(urls)).await;
    each
}

/// The source stamps to pass: the explicit `sourceStamps`, or the build's own, with
/// `got_revision` as the revision (`updateSourceStamp`) or without a revision
/// (`alwaysUseLatest`).
fn sourcestamps(ctx: &StepContext<'_>, t: &TriggerConfig) -> Vec<SourceStamp> {
    if !t.source_stamps.is_empty() {
        return t
            .source_stamps
            .iter()
            .map(|s| SourceStamp {
                codebase: s.name.clone(),
                repository: s.repository.clone(),
                branch: s.branch.clone(),
                revision: s.revision.clone(),
                project: s.project.clone(),
                patch: None,
            })
            .collect();
    }
    let got = ctx.props.get("got_revision");
    ctx.sourcestamps
        .iter()
        .map(|row| {
            let mut ss = row.to_sourcestamp();
            if t.always_use_latest {
                ss.revision = None;
            } else if t.update_source_stamp {
                // got_revision is a string for one codebase, a dict by codebase for several.
                let revision = match got {
                    Some(PropertyValue::Map(m)) => m.get(&ss.codebase),
                    Some(v @ PropertyValue::Str(_)) => Some(v),
                    _ => None,
                };
                if let Some(PropertyValue::Str(r)) = revision {
                    ss.revision = Some(r.clone());
                }
            }
            ss
        })
        .collect()
}

async fn recheck(ctx: &StepContext<'_>, triggered: &mut BTreeMap<BuildSetId, Triggered>) {
    for (bsid, t) in triggered.iter_mut().filter(|(_, t)| t.results.is_none()) {
        if let Ok(Some(bs)) = ctx.master.db.get_buildset(*bsid).await
            && bs.complete
        {
            t.results = bs.results.and_then(Results::from_code);
        }
    }
}

fn builder_name(ctx: &StepContext<'_>, id: kiln_core::BuilderId) -> String {
    ctx.master
        .builder_name(id)
        .unwrap_or_else(|| format!("builder {}", id.0))
}
